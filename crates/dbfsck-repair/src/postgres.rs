//! PostgreSQL data pages (`docs/postgres-wal.md` §6): a damaged block is rebuilt from the newest
//! full-page image of it in the data directory's own WAL, only when that WAL proves the image
//! is the block's newest state — read from pg_control's redo point to the real end of WAL with
//! nothing after the image touching the block or its relation, the rebuilt LSN not older than
//! what the damaged page still shows — and never while the server runs. Otherwise the page is
//! copied to the quarantine and left as it is (the server goes on reporting it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dbfsck_core::postgres::fpi::{
    index_images, rebuild_page, ImageRef, Newest, RelBlock, WalIndex, WalSettings,
};
use dbfsck_core::postgres::{self, Fork};
use dbfsck_core::{Finding, RepairAction, Report};

use crate::plan::{Action, PageSpec, Source};
use crate::storage::Storage;

/// How a PostgreSQL relation segment file's blocks verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgSpec {
    /// `BLCKSZ`.
    pub blcksz: usize,
    /// The fork's block number of the file's first block (segment × `RELSEG_SIZE`).
    pub first_block: u64,
    /// Data checksums are on (pg_control's `data_checksum_version`).
    pub checksums: bool,
}

impl PgSpec {
    /// Whether `page` is a valid block `unit` of the file, as the server judges it on read, and
    /// carries exactly `lsn`.
    pub fn verifies(&self, page: &[u8], unit: u64, lsn: u64) -> bool {
        page.len() == self.blcksz
            && !page.iter().all(|&b| b == 0)
            && postgres::judge_block(page, self.first_block + unit).is_none()
            && page_lsn(page) == Some(lsn)
    }
}

/// A full-page image in WAL chosen to rebuild a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSource {
    /// The data directory's WAL, as pg_control describes it.
    pub settings: WalSettings,
    /// The image.
    pub image: ImageRef,
    /// The block it is an image of.
    pub block: RelBlock,
}

impl WalSource {
    /// The page rebuilt from the image now (its record read and verified again), or why not.
    pub fn rebuild(&self, spec: &PgSpec) -> Result<Vec<u8>, String> {
        // Asked again when the block is written: a server started since the plan may hold
        // newer versions in its buffers.
        if let Some(dir) = self.settings.wal_dir.parent() {
            if postgres::server_running(dir) {
                return Err(RUNNING.into());
            }
        }
        rebuild_page(
            &self.settings,
            &self.image,
            &self.block,
            spec.blcksz,
            spec.checksums,
        )
        .map_err(|e| e.to_string())
    }
}

const RUNNING: &str = "the PostgreSQL server is running (postmaster.pid names a live process): its shared buffers may hold newer blocks; stop it before repairing";

/// `pd_lsn` of a page.
fn page_lsn(page: &[u8]) -> Option<u64> {
    let hi = u32::from_le_bytes(page.get(0..4)?.try_into().ok()?);
    let lo = u32::from_le_bytes(page.get(4..8)?.try_into().ok()?);
    Some(u64::from(hi) << 32 | u64::from(lo))
}

/// An LSN as PostgreSQL prints it (`X/Y`), read back.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some(
        u64::from(u32::from_str_radix(hi, 16).ok()?) << 32
            | u64::from(u32::from_str_radix(lo, 16).ok()?),
    )
}

/// An LSN as PostgreSQL prints it.
pub(crate) fn lsn_text(l: u64) -> String {
    format!("{:X}/{:X}", l >> 32, l & 0xFFFF_FFFF)
}

/// What one data directory offers a repair.
struct Dir {
    settings: WalSettings,
    /// `PG_<major>_<catversion>`: the folder this cluster's files have in a tablespace.
    version_dir: String,
    blcksz: usize,
    relseg: u64,
    checksums: bool,
    /// The WAL index, or why no image can be trusted.
    index: Result<WalIndex, String>,
}

/// Plans the PostgreSQL findings of a report, one data directory at a time.
#[derive(Default)]
pub(crate) struct PostgresPlanner {
    dirs: HashMap<PathBuf, Result<Dir, String>>,
}

/// The relation block a page of a relation file is, and its data directory. `version_dir`: the
/// cluster's own folder in a tablespace, when known (a file in another version's folder — left
/// by `pg_upgrade` — is not this cluster's, whatever its numbers).
fn block_of(
    path: &Path,
    unit: u64,
    relseg: u64,
    version_dir: Option<&str>,
) -> Result<(PathBuf, RelBlock), String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("not a relation file")?;
    let rel = postgres::parse_relfile_name(name).ok_or_else(|| {
        format!("{name} is not a relation file; only relation pages are rebuilt from WAL")
    })?;
    if rel.temp_backend.is_some() {
        return Err("a temporary relation has no WAL".into());
    }
    let dir = postgres::data_dir_of(path).ok_or("the file is not inside a data directory")?;
    let place = postgres::placement(path).ok_or("the file is not where relations are kept")?;
    let tablespace = match place.tablespace.as_str() {
        "pg_default" => 1663,
        "pg_global" => 1664,
        other => {
            let folder = path
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .and_then(|n| n.to_str());
            if let Some(want) = version_dir.filter(|w| folder != Some(*w)) {
                return Err(format!(
                    "the file is in tablespace folder {}, not this cluster's {want}: it is not this cluster's",
                    folder.unwrap_or("?")
                ));
            }
            other
                .parse()
                .map_err(|_| "the file's tablespace cannot be told from its path")?
        }
    };
    let fork = match rel.fork {
        Fork::Main => 0,
        Fork::Fsm => 1,
        Fork::Vm => 2,
        Fork::Init => 3,
    };
    let block = u64::from(rel.segment) * relseg + unit;
    Ok((
        dir,
        RelBlock {
            tablespace,
            database: place.database_oid.unwrap_or(0),
            relfilenode: rel.relfilenode,
            fork,
            block: u32::try_from(block).map_err(|_| "block number out of range")?,
        },
    ))
}

impl PostgresPlanner {
    /// The data directory `dir` as a repair sees it, read once.
    fn dir<S: Storage>(
        &mut self,
        storage: &S,
        report: &Report,
        dir: &Path,
    ) -> &Result<Dir, String> {
        self.dirs
            .entry(dir.to_path_buf())
            .or_insert_with(|| read_dir(storage, report, dir))
    }

    /// The action for one damaged page of a PostgreSQL file.
    pub(crate) fn plan<S: Storage>(
        &mut self,
        storage: &S,
        report: &Report,
        index: usize,
        finding: &Finding,
    ) -> Result<Action, String> {
        let (file, unit) = crate::plan::file_and_unit(
            report,
            finding,
            "PostgreSQL files grow in whole blocks: a partial last block is left; restore the relation from a backup",
        )?;
        // The relation's data directory first; its block number once pg_control is read.
        let (data_dir, _) = block_of(&file.path, unit, 1, None)?;
        let dir = match self.dir(storage, report, &data_dir) {
            Ok(d) => d,
            Err(e) => return Err(e.clone()),
        };
        if unit >= dir.relseg {
            return Err(format!(
                "block {unit} lies past the {} blocks of a segment file, where PostgreSQL never reads",
                dir.relseg
            ));
        }
        let (_, block) = block_of(&file.path, unit, dir.relseg, Some(&dir.version_dir))?;
        let spec = PgSpec {
            blcksz: dir.blcksz,
            first_block: u64::from(block.block) - unit,
            checksums: dir.checksums,
        };
        let base = Action {
            units: None,
            zero_run: false,
            finding: index,
            path: file.path.clone(),
            display: finding.path.clone(),
            offset: unit * dir.blcksz as u64,
            length: dir.blcksz as u64,
            unit: Some(unit),
            action: RepairAction::Quarantine,
            spec: PageSpec::Postgres(spec),
            source: None,
            detail: String::new(),
        };
        let quarantine = |why: String| {
            Action {
            detail: format!("{why}: the block is copied to the quarantine and left as it is (the server goes on reporting it); restore the relation from a backup"),
            ..base.clone()
        }
        };
        let page = crate::plan::read_unit(storage, &file.path, unit, dir.blcksz)?;
        if postgres::judge_block(&page, spec.first_block + unit).is_none() {
            return Err(
                "the block verifies now; it changed since the scan and is left alone".into(),
            );
        }
        if !matches!(block.fork, 0 | 3) {
            return Ok(quarantine(
                "free-space-map and visibility-map blocks change without WAL, so no image of one can be proven current (PostgreSQL rebuilds them; VACUUM)".into(),
            ));
        }
        let wal = match &dir.index {
            Ok(w) => w,
            Err(why) => return Ok(quarantine(why.clone())),
        };
        let image = match wal.newest(&block) {
            Newest::Image(i) => *i,
            Newest::Untouched => {
                return Ok(quarantine(format!(
                    "no WAL record from the checkpoint's redo point ({}) to the end of WAL ({}) touches this block, so the WAL holds no image of it",
                    lsn_text(wal.start),
                    lsn_text(wal.end)
                )))
            }
            Newest::ChangedAfter { image, what, .. } => {
                return Ok(quarantine(match image {
                    Some(i) => format!(
                        "the newest image of the block (in the record at {}) is not its newest state: {what}",
                        lsn_text(i.record)
                    ),
                    None => format!("the WAL holds no image of the block, and {what}"),
                }))
            }
        };
        if image.end < dir.settings.min_recovery_point {
            return Ok(quarantine(format!(
                "the image (LSN {}) is older than pg_control's minimum recovery point ({})",
                lsn_text(image.end),
                lsn_text(dir.settings.min_recovery_point)
            )));
        }
        // The LSN the damaged page still shows: past the end of WAL, in a header that is
        // otherwise sane, it says WAL is missing (a lost segment after a switch leaves no break).
        if let Some(shown) = page_lsn(&page).filter(|&l| l > wal.end && header_sane(&page)) {
            return Ok(quarantine(format!(
                "the damaged block shows LSN {}, past the end of WAL ({}): WAL after the end may be lost, so the newest image (LSN {}) cannot be proven current",
                lsn_text(shown),
                lsn_text(wal.end),
                lsn_text(image.end)
            )));
        }
        // The LSN the damaged page still shows, when it is one the WAL reaches.
        if let Some(shown) = page_lsn(&page).filter(|&l| l <= wal.end && l > image.end) {
            return Ok(quarantine(format!(
                "the damaged block shows LSN {}, newer than the newest image (LSN {}): changes after the image exist that the WAL does not show",
                lsn_text(shown),
                lsn_text(image.end)
            )));
        }
        let source = WalSource {
            settings: dir.settings.clone(),
            image,
            block,
        };
        match source.rebuild(&spec) {
            Ok(p) if spec.verifies(&p, unit, image.end) => {}
            Ok(_) => {
                return Ok(quarantine(
                    "the page rebuilt from the image does not verify".into(),
                ))
            }
            Err(e) => return Ok(quarantine(e)),
        }
        Ok(Action {
            action: RepairAction::RestoreFromWal,
            detail: format!(
                "rebuilt from the full-page image in the WAL record at {} (page LSN {}): the newest change to the block from the checkpoint's redo point to the end of WAL, whose record's CRC verifies",
                lsn_text(image.record),
                lsn_text(image.end)
            ),
            source: Some(Source::Wal(source)),
            ..base
        })
    }
}

/// Whether a block's header (apart from the checksum) is one the server would accept:
/// `pd_lower`, `pd_upper`, `pd_special` in order and in the block, the layout version 4 and
/// the block size. Then its `pd_lsn` is evidence, not noise.
fn header_sane(page: &[u8]) -> bool {
    let at = |o: usize| {
        page.get(o..o + 2)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u16::from_le_bytes)
    };
    let (lower, upper, special, version) = (at(12), at(14), at(16), at(18));
    let size = page.len();
    lower >= 24
        && lower <= upper
        && upper <= special
        && usize::from(special) <= size
        && usize::from(version & 0xFF00) == size
        && version & 0x00FF == 4
}

/// Reads what a repair needs of the data directory `dir`: refuses while its server runs, and
/// indexes its WAL for the blocks of `report`'s findings in it, only when the scan found that
/// crash recovery reaches the real end of that WAL.
fn read_dir<S: Storage>(storage: &S, report: &Report, dir: &Path) -> Result<Dir, String> {
    if postgres::server_running(dir) {
        return Err(RUNNING.into());
    }
    let (settings, control) = WalSettings::of_data_dir(dir)
        .map_err(|e| format!("{e}; nothing in this data directory is rebuilt from WAL"))?;
    let relseg = u64::from(control.relseg_size);
    let major = std::fs::read_to_string(dir.join("PG_VERSION"))
        .map_err(|e| format!("PG_VERSION cannot be read: {e}"))?;
    let mut d = Dir {
        version_dir: format!("PG_{}_{}", major.trim(), control.catalog_version),
        blcksz: control.blcksz as usize,
        relseg,
        checksums: control.data_checksum_version != 0,
        index: Err(String::new()),
        settings,
    };
    d.index = wal_index(storage, report, dir, &d);
    Ok(d)
}

fn wal_index<S: Storage>(
    _storage: &S,
    report: &Report,
    dir: &Path,
    d: &Dir,
) -> Result<WalIndex, String> {
    let wal_dir = dir.join("pg_wal");
    // The scan's own verdict on this WAL: the chain from the redo point is unbroken to the real
    // end (no valid record beyond where replay would stop).
    let verdict = report
        .summary
        .recovery
        .iter()
        .find(|v| v.format == postgres::PostgresFormat::NAME && same_dir(Path::new(&v.path), &wal_dir))
        .ok_or("the scan gave no recovery verdict on this data directory's WAL (scan the whole data directory with the server stopped), so no image can be proven to be a block's newest state")?;
    if !verdict.reaches_end {
        return Err(format!(
            "crash recovery would stop at {} before the end of WAL ({}): what follows cannot be proven not to change a block, so no image is used",
            verdict.stops_at, verdict.end
        ));
    }
    let wanted = wanted_blocks(report, dir, d.relseg, &d.version_dir);
    let index = index_images(&d.settings, &wanted);
    // The verdict's `end` is the last valid record's end byte; the index's is MAXALIGN'd.
    let ends_alike = parse_lsn(&verdict.end).is_some_and(|e| (e + 7) & !7 == index.end);
    if lsn_text(index.start) != verdict.start || !ends_alike {
        return Err(format!(
            "reading the WAL again from {} ended at {} ({}), not where the scan found its end ({}): it changed since the scan, so no image is used",
            lsn_text(index.start),
            lsn_text(index.end),
            index.stop,
            verdict.end
        ));
    }
    Ok(index)
}

/// Whether two paths name the same directory (as resolved now).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The blocks of the report's damage findings in PostgreSQL relation files of `dir`.
fn wanted_blocks(report: &Report, dir: &Path, relseg: u64, version_dir: &str) -> Vec<RelBlock> {
    let mut out = Vec::new();
    for f in report
        .findings
        .iter()
        .filter(|f| f.kind.is_damage() && f.format == postgres::PostgresFormat::NAME)
    {
        let Some(path) = f.file.as_deref() else {
            continue;
        };
        let (Some(first), n) = (f.unit, f.units.unwrap_or(1)) else {
            continue;
        };
        // A run of blocks is bounded by the file (1 GiB segments): at most RELSEG_SIZE each.
        for unit in first..first.saturating_add(n.min(relseg)) {
            if let Ok((d, b)) = block_of(path, unit, relseg, Some(version_dir)) {
                if d == dir {
                    out.push(b);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir(top: &Path) -> PathBuf {
        let d = top.join("data");
        for sub in ["global", "base/5", "pg_tblspc/16390/PG_15_202209061/5"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        d
    }

    #[test]
    fn blocks_are_named_as_wal_names_them() {
        let tmp = tempfile::tempdir().unwrap();
        let d = data_dir(tmp.path());
        let (dir, b) = block_of(&d.join("base/5/16384.2"), 7, 131072, None).unwrap();
        assert_eq!(dir, d);
        assert_eq!(
            b,
            RelBlock {
                tablespace: 1663,
                database: 5,
                relfilenode: 16384,
                fork: 0,
                block: 2 * 131072 + 7
            }
        );
        let (_, b) = block_of(&d.join("global/1262_vm"), 0, 131072, None).unwrap();
        assert_eq!((b.tablespace, b.database, b.fork), (1664, 0, 2));
        let ts = d.join("pg_tblspc/16390/PG_15_202209061/5/16391");
        let (_, b) = block_of(&ts, 1, 131072, Some("PG_15_202209061")).unwrap();
        assert_eq!((b.tablespace, b.database, b.relfilenode), (16390, 5, 16391));
        assert!(block_of(&d.join("base/5/t3_16384"), 0, 131072, None).is_err());
        assert!(block_of(&d.join("base/5/pg_filenode.map"), 0, 131072, None).is_err());
    }

    /// Regression (review of 2026-12-03): after `pg_upgrade` an old version's folder keeps files
    /// with the very numbers of this cluster's; they are not this cluster's blocks.
    #[test]
    fn another_versions_tablespace_folder_is_not_this_clusters() {
        let tmp = tempfile::tempdir().unwrap();
        let d = data_dir(tmp.path());
        std::fs::create_dir_all(d.join("pg_tblspc/16390/PG_14_202107181/5")).unwrap();
        let old = d.join("pg_tblspc/16390/PG_14_202107181/5/16391");
        let err = block_of(&old, 1, 131072, Some("PG_15_202209061")).unwrap_err();
        assert!(err.contains("not this cluster's"), "{err}");
    }

    #[test]
    fn a_sane_header_makes_its_lsn_evidence() {
        let mut page = vec![0u8; 8192];
        page[12..14].copy_from_slice(&40u16.to_le_bytes());
        page[14..16].copy_from_slice(&8000u16.to_le_bytes());
        page[16..18].copy_from_slice(&8192u16.to_le_bytes());
        page[18..20].copy_from_slice(&0x2004u16.to_le_bytes());
        assert!(header_sane(&page));
        page[18..20].copy_from_slice(&0x2003u16.to_le_bytes());
        assert!(!header_sane(&page), "layout version");
        page[18..20].copy_from_slice(&0x2004u16.to_le_bytes());
        page[14..16].copy_from_slice(&20u16.to_le_bytes());
        assert!(!header_sane(&page), "pd_upper below pd_lower");
        assert!(!header_sane(&[0xAB; 8192]), "noise");
    }
}
