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
use dbfsck_core::{Finding, FindingKind, RepairAction, Report};

use crate::plan::{Action, PageSpec, Source};
use crate::storage::{Storage, StorageFile};

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

/// The relation block a page of a relation file is, and its data directory.
fn block_of(path: &Path, unit: u64, relseg: u64) -> Result<(PathBuf, RelBlock), String> {
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
        other => other
            .parse()
            .map_err(|_| "the file's tablespace cannot be told from its path")?,
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
        let file = report
            .scanned_file(finding)
            .ok_or("the file was not scanned as a whole; not repaired")?;
        if finding.kind == FindingKind::PartialPage {
            return Err("PostgreSQL files grow in whole blocks: a partial last block is left; restore the relation from a backup".into());
        }
        let unit = finding
            .unit
            .ok_or("no block to act on; restore the file from a backup")?;
        // The relation's position, with the default segment size until pg_control is read.
        let (data_dir, _) = block_of(&file.path, unit, 1)?;
        let dir = match self.dir(storage, report, &data_dir) {
            Ok(d) => d,
            Err(e) => return Err(e.clone()),
        };
        let (_, block) = block_of(&file.path, unit, dir.relseg)?;
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
        let page = read_page(storage, &file.path, unit, dir.blcksz)?;
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

fn read_page<S: Storage>(
    storage: &S,
    path: &Path,
    unit: u64,
    blcksz: usize,
) -> Result<Vec<u8>, String> {
    let f = storage
        .open_read(path)
        .map_err(|e| format!("reading the block failed: {e}"))?;
    let mut page = vec![0u8; blcksz];
    let n = f
        .read_full_at(&mut page, unit * blcksz as u64)
        .map_err(|e| format!("reading the block failed: {e}"))?;
    if n < blcksz {
        return Err("the block is short: the file changed since the scan; not repaired".into());
    }
    Ok(page)
}

/// Reads what a repair needs of the data directory `dir`: refuses while its server runs, and
/// indexes its WAL for the blocks of `report`'s findings in it, only when the scan found that
/// crash recovery reaches the real end of that WAL.
fn read_dir<S: Storage>(storage: &S, report: &Report, dir: &Path) -> Result<Dir, String> {
    if postgres::server_running(dir) {
        return Err("the PostgreSQL server is running (postmaster.pid names a live process): its shared buffers may hold newer blocks; stop it before repairing".into());
    }
    let (settings, control) = WalSettings::of_data_dir(dir)
        .map_err(|e| format!("{e}; nothing in this data directory is rebuilt from WAL"))?;
    let relseg = u64::from(control.relseg_size);
    let mut d = Dir {
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
    let wanted = wanted_blocks(report, dir, d.relseg);
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
fn wanted_blocks(report: &Report, dir: &Path, relseg: u64) -> Vec<RelBlock> {
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
            if let Ok((d, b)) = block_of(path, unit, relseg) {
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
