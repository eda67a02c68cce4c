//! PostgreSQL data directories (`initdb -k`): every block of every fork and segment verified with
//! PostgreSQL's own checksum, with verdicts that agree with `pg_checksums` block for block where
//! it is right, and are right where it is not (a block whose `pd_upper` is 0 is new only if it is
//! entirely zero; a stray file or a short last block never aborts the run).

mod checksum;
mod control;
mod manifest;
mod path;
mod pgbackrest;
mod stream;
mod tar;
mod tarstream;
mod wal;
mod walg;

pub use wal::{fpi, page_of_lsn};

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use checksum::{pg_checksum_page, pg_checksum_page_scalar, pg_checksum_pages, PAGES_PER_PASS};
pub use control::{parse_control, Control, ControlCrc};
pub use path::{
    data_dir_of, is_data_dir, parse_relfile_name, placement, Fork, Placement, RelFileName,
};

use crate::finding::{Finding, FindingKind, Owner};
use crate::format::{
    Chunk, DirListing, FileSource, Format, Layout, OpenError, Opened, Probe, UnitCheck,
};

/// Block size and segment size when no `pg_control` can be found (PostgreSQL's defaults).
const DEFAULT_BLCKSZ: u32 = 8192;
const DEFAULT_RELSEG: u32 = 131072;
/// The largest `backup_manifest` read: about 7 million files' entries.
const MAX_MANIFEST: u64 = 1 << 30;
/// How long to wait before re-reading a mismatching block while the server runs.
const RECHECK_PAUSE: Duration = Duration::from_millis(100);

/// The PostgreSQL format, for `--format postgres` and detection of data directories.
#[derive(Debug, Default)]
pub struct PostgresFormat {
    /// pg_control of each data directory met, read once.
    clusters: Mutex<HashMap<PathBuf, Arc<Cluster>>>,
    /// The block size to assume where no usable pg_control says (default 8192).
    block_size: Option<u32>,
    /// What the WAL segments of this scan said, joined once all are verified.
    wal: Arc<wal::Registry>,
    /// Tar-format backup directories listed, for their `backup_manifest`.
    tar_backups: Mutex<Vec<PathBuf>>,
    /// The WAL archive base backups are restored from (`--wal-archive`).
    wal_archive: Option<PathBuf>,
    /// pgBackRest backup directories listed, checked once every file is verified.
    pgbackrest: Mutex<Vec<PathBuf>>,
    /// Compressed archives of tar-format backups listed, streamed in the conclusion.
    compressed_tars: Mutex<Vec<PathBuf>>,
    /// WAL-G backup folders listed, checked in the conclusion.
    walg: Mutex<Vec<PathBuf>>,
}

/// What one data directory says about how to read its files.
#[derive(Debug, Clone)]
struct Cluster {
    control: Option<Control>,
    live: bool,
    /// The highest LSN of a data block that verifies (`PgCheck::lsn`).
    max_page_lsn: Arc<std::sync::atomic::AtomicU64>,
    /// A `backup_label` is present: the blocks of a base backup may be newer than its WAL.
    backup: bool,
    /// The data directory itself was listed (not only a folder below it): its
    /// `backup_manifest`, when it has one, is compared with the whole backup.
    whole: Arc<std::sync::atomic::AtomicBool>,
}

impl PostgresFormat {
    /// The format's name.
    pub const NAME: &'static str = "postgres";

    /// The format, assuming `block_size`-byte blocks where no usable `pg_control` says
    /// (PostgreSQL builds with 1, 2, 4, 8, 16 or 32 KiB blocks); `None`: 8192.
    pub fn with_block_size(block_size: Option<u32>) -> Self {
        PostgresFormat {
            block_size,
            ..Self::default()
        }
    }

    /// The format, restoring each base backup of the scan from the WAL archive `dir` (which the
    /// scan must also verify: a root, or under one): the WAL a backup needs is looked for there
    /// too, and each backup gets a restore verdict (`summary.restores`).
    #[must_use]
    pub fn with_wal_archive(mut self, dir: Option<PathBuf>) -> Self {
        self.wal_archive = dir;
        self
    }

    /// Streams each compressed archive of a tar-format backup listed (`tarstream`), in parallel
    /// (each archive is one stream): its findings, and its members for the manifest.
    fn stream_tars(&self, complete: bool) -> Vec<(PathBuf, tarstream::Checked)> {
        use rayon::prelude::*;
        let archives = std::mem::take(
            &mut *self
                .compressed_tars
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if !complete {
            return archives
                .into_iter()
                .map(|a| {
                    let mut c = tarstream::Checked::default();
                    c.warnings.push((
                        a.clone(),
                        "the scan stopped early: the compressed archive was not read".into(),
                    ));
                    (a, c)
                })
                .collect();
        }
        archives
            .into_par_iter()
            .with_max_len(1)
            .map(|a| {
                let dir = a.parent().unwrap_or(Path::new(""));
                let algorithms = crate::access::open_for_scan(&dir.join(manifest::NAME), true)
                    .ok()
                    .and_then(|f| {
                        let mut b = Vec::new();
                        std::io::Read::read_to_end(
                            &mut std::io::Read::take(f, MAX_MANIFEST),
                            &mut b,
                        )
                        .ok()?;
                        Some(manifest::algorithms(&b))
                    })
                    .unwrap_or_default();
                let checked = match tarstream::compressed_archive(&a) {
                    Some((stem, codec)) => tarstream::check(
                        &a,
                        codec,
                        &stem,
                        &tarstream::Setting {
                            algorithms: &algorithms,
                            blcksz: self.blcksz(),
                            relseg: DEFAULT_RELSEG,
                            wal: &self.wal,
                            not_pages: &Default::default(),
                        },
                    ),
                    None => tarstream::Checked::default(),
                };
                (a, checked)
            })
            .collect()
    }

    /// The WAL archive of `--wal-archive`, as this scan verified it; a warning when it
    /// verified no segment there.
    fn archive<'d>(
        &self,
        dirs: &'d std::collections::BTreeMap<PathBuf, wal::WalDir>,
        out: &mut crate::format::Conclusion,
    ) -> Option<(&'d Path, &'d wal::WalDir)> {
        let want = self.wal_archive.as_ref()?;
        let real = fs::canonicalize(want).ok();
        let found = dirs.iter().find(|(p, d)| {
            d.kind == wal::WalDirKind::Archive && real.is_some() && fs::canonicalize(p).ok() == real
        });
        if found.is_none() {
            out.errors.push((
                want.clone(),
                "--wal-archive names no directory of archived WAL segments that this scan verified (a missing or empty directory, or a data directory's own pg_wal/): no backup is restored from it".into(),
            ));
        }
        found.map(|(p, d)| (p.as_path(), d))
    }

    fn blcksz(&self) -> u32 {
        self.block_size.unwrap_or(DEFAULT_BLCKSZ)
    }

    fn cluster(&self, data_dir: &Path) -> Arc<Cluster> {
        let mut map = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(data_dir.to_path_buf())
            .or_insert_with(|| {
                let mut control = fs::read(data_dir.join("global").join("pg_control"))
                    .ok()
                    .and_then(|b| parse_control(&b));
                // A base backup is restored from its backup_label's checkpoint, not from the
                // (later) one pg_control was copied with.
                if let (Some(w), Some(redo)) = (
                    control.as_mut().and_then(|c| c.wal.as_mut()),
                    backup_label(data_dir),
                ) {
                    w.redo = redo.0;
                    w.checkpoint = redo.1;
                }
                Arc::new(Cluster {
                    control,
                    live: server_running(data_dir),
                    max_page_lsn: Arc::default(),
                    backup: data_dir.join("backup_label").exists(),
                    whole: Arc::default(),
                })
            })
            .clone()
    }
}

/// `START WAL LOCATION`, `CHECKPOINT LOCATION` and the start's timeline of the `backup_label`
/// in `data_dir`, when it has one that parses (formats-pgwal.md §5.4).
fn backup_label(data_dir: &Path) -> Option<(u64, u64, u32)> {
    let f = crate::access::open_for_scan(&data_dir.join("backup_label"), true).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, 64 << 10), &mut text).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(wal::parse_lsn)
    };
    // `START TIMELINE` (PostgreSQL 11+), else the timeline of the segment the start names.
    let timeline = text
        .lines()
        .find_map(|l| l.strip_prefix("START TIMELINE: "))
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| {
            let line = text
                .lines()
                .find(|l| l.starts_with("START WAL LOCATION: "))?;
            let file = line.split("(file ").nth(1)?;
            u32::from_str_radix(file.get(..8)?, 16).ok()
        })
        .unwrap_or(1);
    Some((
        field("START WAL LOCATION: ")?,
        field("CHECKPOINT LOCATION: ")?,
        timeline,
    ))
}

/// Findings about the WAL a base backup needs (its manifest's `WAL-Ranges`): each segment of
/// the ranges that `pg_wal/` (and the WAL archive, when one is given) lacks, and whether the
/// WAL reaches the backup's end — the recovery verdict on `pg_wal/` alone, or the restore from
/// the archive — which the recovery verdict then carries (`backup_end`, `consistent`).
fn backup_wal(
    dir: &Path,
    cluster: &Cluster,
    ranges: &[manifest::WalRange],
    archive: Option<(&wal::WalDir, &crate::report::RestoreVerdict)>,
    out: &mut crate::format::Conclusion,
) -> crate::report::BackupVerdict {
    let seg_size = cluster
        .control
        .and_then(|c| c.wal)
        .map_or(16 << 20, |w| u64::from(w.wal_segment_size))
        .max(1 << 20);
    let pg_wal = dir.join("pg_wal");
    let mut missing = 0;
    for r in ranges.iter().filter(|r| r.end > r.start) {
        for segno in r.start / seg_size..=(r.end - 1) / seg_size {
            let name = wal::segment_name(r.timeline, segno, seg_size);
            let path = pg_wal.join(&name);
            let archived = archive.is_some_and(|(a, _)| {
                a.segments
                    .values()
                    .any(|e| e.tli == r.timeline && e.segno == segno && !e.partial)
            });
            if path.is_file() || archived {
                continue;
            }
            missing += 1;
            let mut f = needed_segment(
                r,
                seg_size,
                if archive.is_some() {
                    "this segment of it is not in pg_wal/ nor in the WAL archive"
                } else {
                    "this segment of it is not in pg_wal/ (restore_command must fetch it from the WAL archive)"
                },
            );
            f.file = Some(path);
            out.findings.push(f);
        }
    }
    let mut verdict = backup_verdict(dir, ranges);
    verdict.missing_wal_segments = missing;
    verdict.consistent = Some(false);
    let Some(last) = ranges.last() else {
        // No WAL range: nothing says where the backup becomes consistent.
        verdict.consistent = None;
        return verdict;
    };
    let shown = pg_wal.to_string_lossy();
    let own = out.recovery.iter_mut().find(|v| v.path == shown);
    if let Some((_, restore)) = archive {
        // The archive completes what pg_wal/ lacks: the restore's verdict is the backup's.
        let consistent = missing == 0 && restore.consistent;
        verdict.consistent = Some(consistent);
        if let Some(v) = own {
            v.backup_end = Some(wal::Lsn(last.end).to_string());
            v.consistent = Some(consistent);
            if !consistent {
                v.detail = format!("{}; with the WAL archive: {}", v.detail, restore.detail);
            }
        }
        return verdict;
    }
    let Some(v) = own else {
        return verdict;
    };
    let stops = wal::parse_lsn(&v.stops_at).unwrap_or_default();
    let consistent = missing == 0 && stops >= last.end;
    v.backup_end = Some(wal::Lsn(last.end).to_string());
    v.consistent = Some(consistent);
    verdict.consistent = Some(consistent);
    if consistent || missing > 0 {
        return verdict;
    }
    v.detail = format!(
        "{}; the backup becomes consistent only at {} (backup_manifest WAL-Ranges): the server refuses to start from it (\"WAL ends before end of online backup\")",
        v.detail,
        wal::Lsn(last.end)
    );
    let segno = stops / seg_size;
    let mut f = Finding::new(
        FindingKind::Truncated,
        stops % seg_size,
        0,
        format!(
            "recovery of this backup stops at {}, before the backup's end at {} (backup_manifest WAL-Ranges): PostgreSQL refuses to start from it (\"WAL ends before end of online backup\"); the WAL from {} on must come from the WAL archive",
            wal::Lsn(stops),
            wal::Lsn(last.end),
            wal::Lsn(stops)
        ),
    );
    f.file = Some(pg_wal.join(wal::segment_name(last.timeline, segno, seg_size)));
    out.findings.push(f);
    verdict
}

/// The `backup_manifest` of the backup in `dir`, read whole (about 150 bytes per file listed)
/// up to a bound a hostile one cannot push memory past; `None` (with a warning unless there
/// is none) when it cannot be compared.
fn read_manifest(
    dir: &Path,
    complete: bool,
    out: &mut crate::format::Conclusion,
) -> Option<Vec<u8>> {
    let path = dir.join(manifest::NAME);
    let bytes = match crate::access::open_for_scan(&path, true).and_then(|f| {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_MANIFEST + 1), &mut b)?;
        Ok(b)
    }) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            out.warnings.push((
                path,
                format!("backup_manifest cannot be read ({e}): the backup's files are not compared with it"),
            ));
            return None;
        }
    };
    if bytes.len() as u64 > MAX_MANIFEST {
        out.warnings.push((
            path,
            format!("backup_manifest is larger than {} MiB: it is not read, and the backup's files are not compared with it", MAX_MANIFEST >> 20),
        ));
        return None;
    }
    if !complete {
        out.warnings.push((
            path,
            "the scan stopped early: the backup's files were not compared with backup_manifest"
                .into(),
        ));
        return None;
    }
    Some(bytes)
}

/// The verdict of a tar-format backup: the segments of its manifest's `WAL-Ranges` that neither
/// its `pg_wal.tar` nor the WAL archive holds, and whether its WAL reaches its end — the
/// restore from the archive when one is given, else a replay of `pg_wal.tar` alone.
fn tar_backup_wal(
    dir: &Path,
    ranges: &[manifest::WalRange],
    own: Option<(&Path, &wal::WalDir)>,
    archive: Option<&wal::WalDir>,
    restore: Option<&crate::report::RestoreVerdict>,
    need: Option<&wal::restore::Need>,
    out: &mut crate::format::Conclusion,
) -> crate::report::BackupVerdict {
    let mut verdict = backup_verdict(dir, ranges);
    let has = |d: &wal::WalDir, tli: u32, segno: u64| {
        d.segments
            .values()
            .any(|e| e.tli == tli && e.segno == segno && !e.partial)
    };
    let seg_size = own
        .and_then(|(_, d)| d.segments.values().next())
        .or_else(|| archive.and_then(|a| a.segments.values().next()))
        .map_or(16 << 20, |e| e.params.seg_size);
    let tar = dir.join("pg_wal.tar");
    let mut missing = 0;
    for r in ranges.iter().filter(|r| r.end > r.start) {
        for segno in r.start / seg_size..=(r.end - 1) / seg_size {
            if own.is_some_and(|(_, d)| has(d, r.timeline, segno))
                || archive.is_some_and(|a| has(a, r.timeline, segno))
            {
                continue;
            }
            missing += 1;
            let name = wal::segment_name(r.timeline, segno, seg_size);
            let mut f = needed_segment(
                r,
                seg_size,
                &if archive.is_some() {
                    format!("segment {name} is not in pg_wal.tar nor in the WAL archive")
                } else {
                    format!("segment {name} is not in pg_wal.tar (taken with -X none? name the archive with --wal-archive)")
                },
            );
            let mut owner = Owner::new();
            owner.insert("member".into(), name.into());
            f.owner = Some(owner);
            f.file = Some(tar.clone());
            out.findings.push(f);
        }
    }
    verdict.missing_wal_segments = missing;
    // The backup's own WAL alone: damage in it is the backup's, even where an archive has a
    // sound copy (a plain backup's pg_wal/ is judged the same way).
    let own_reaches = match (own, need) {
        (Some((path, d)), Some(need)) => wal::restore::judge(None, d, path, need)
            .ok()
            .map(|r| r.consistent),
        _ => None,
    };
    let reaches = match restore {
        Some(r) => Some(r.consistent),
        None => own_reaches.or(Some(false)),
    };
    verdict.consistent = reaches.map(|c| c && missing == 0);
    if own_reaches == Some(false) && missing == 0 {
        let mut f = Finding::new(
            FindingKind::Truncated,
            0,
            0,
            format!(
                "replay of the backup's own WAL (pg_wal.tar) stops before the backup's end at {} (backup_manifest WAL-Ranges): alone, PostgreSQL refuses to start from it (\"WAL ends before end of online backup\"){}",
                ranges.last().map_or_else(String::new, |r| wal::Lsn(r.end).to_string()),
                if restore.is_some_and(|r| r.consistent) {
                    "; the WAL archive holds what it lacks"
                } else {
                    "; the rest must come from the WAL archive"
                }
            ),
        );
        f.file = Some(tar);
        out.findings.push(f);
    }
    verdict
}

/// The verdict and restore of a backup in a repository (pgBackRest, WAL-G) whose WAL is its
/// repository's archive (`repo_archive`) or the one `--wal-archive` names (`archive`): the
/// segments of `[need.start, need.end)` neither holds, and the restore from it. `also`: files
/// outside `dir` the backup needs.
fn repo_backup(
    out: &mut crate::format::Conclusion,
    archive: Option<(&Path, &wal::WalDir)>,
    wal_dirs: &std::collections::BTreeMap<PathBuf, wal::WalDir>,
    dir: &Path,
    need: &wal::restore::Need,
    repo_archive: Option<PathBuf>,
    also: Vec<PathBuf>,
) {
    let found = archive.or_else(|| {
        let want = fs::canonicalize(repo_archive.as_ref()?).ok()?;
        wal_dirs
            .iter()
            .find(|(p, d)| {
                d.kind == wal::WalDirKind::Archive
                    && fs::canonicalize(p).ok().as_ref() == Some(&want)
            })
            .map(|(p, d)| (p.as_path(), d))
    });
    let restore = match found {
        Some((apath, adir)) => match wal::restore::judge(None, adir, apath, need) {
            Ok(v) => Some(v),
            Err(why) => {
                out.warnings.push((
                    dir.to_path_buf(),
                    format!("the restore of this backup from its WAL archive is not judged: {why}"),
                ));
                None
            }
        },
        None => {
            out.warnings.push((
                dir.to_path_buf(),
                format!(
                    "the backup's WAL archive ({}) was not scanned: scan the whole repository, or name the archive with --wal-archive, to judge whether the backup restores",
                    repo_archive.map_or_else(|| "its archive".into(), |p| p.display().to_string())
                ),
            ));
            None
        }
    };
    // The segments from the start to the end the archive lacks.
    let missing = match (found, need.end) {
        (Some((_, adir)), Some(end)) if end > need.start => {
            let seg_size = adir
                .segments
                .values()
                .next()
                .map_or(16 << 20, |e| e.params.seg_size);
            let (a, b) = (need.start / seg_size, (end - 1) / seg_size);
            if b - a > 1 << 20 {
                0
            } else {
                let have: std::collections::BTreeSet<(u32, u64)> = adir
                    .segments
                    .values()
                    .filter(|e| !e.partial)
                    .map(|e| (e.tli, e.segno))
                    .collect();
                (a..=b)
                    .filter(|s| !have.contains(&(need.timeline, *s)))
                    .count() as u64
            }
        }
        _ => 0,
    };
    out.backups.push(crate::report::BackupVerdict {
        format: PostgresFormat::NAME.into(),
        path: dir.to_string_lossy().into_owned(),
        real: dir.to_path_buf(),
        also,
        backup_end: need.end.map(|e| wal::Lsn(e).to_string()),
        consistent: restore.as_ref().map(|r| r.consistent && missing == 0),
        missing_wal_segments: missing,
        damaged_findings: 0,
        restorable: false,
    });
    out.restores.extend(restore);
}

/// The finding for a segment of the manifest's WAL range `r` that the backup lacks, `missing`
/// saying where it is not.
fn needed_segment(r: &manifest::WalRange, seg_size: u64, missing: &str) -> Finding {
    Finding::new(
        FindingKind::MissingFile,
        0,
        seg_size,
        format!(
            "the backup needs the WAL from {} to {} on timeline {} (backup_manifest WAL-Ranges) to become consistent, and {missing}: the backup cannot be restored without it",
            wal::Lsn(r.start),
            wal::Lsn(r.end),
            r.timeline,
        ),
    )
}

/// A backup's verdict before its WAL is judged (`consistent` unknown).
fn backup_verdict(dir: &Path, ranges: &[manifest::WalRange]) -> crate::report::BackupVerdict {
    crate::report::BackupVerdict {
        format: PostgresFormat::NAME.into(),
        path: dir.to_string_lossy().into_owned(),
        real: dir.to_path_buf(),
        also: Vec::new(),
        backup_end: ranges.last().map(|r| wal::Lsn(r.end).to_string()),
        consistent: None,
        missing_wal_segments: 0,
        damaged_findings: 0,
        restorable: false,
    }
}

/// Compares the plain base backup in `dir` with a `backup_manifest`'s bytes, as a scan of the
/// backup does (`docs/postgres-backups.md`): the manifest's own checksum, every file present,
/// of its size and checksum, none unlisted. The findings (each with [`Finding::file`] set) and
/// warnings; the checksums are computed on the current rayon pool.
pub fn check_backup_manifest(dir: &Path, bytes: &[u8]) -> (Vec<Finding>, Vec<(PathBuf, String)>) {
    let (findings, warnings, _) = manifest::verify(dir, bytes, None, manifest::list_plain(dir));
    (findings, warnings)
}

/// Checks the pgBackRest backup in `dir` (`backup/<stanza>/<label>/`, `docs/postgres-backups.md`
/// §5) as a scan of its repository does, without its WAL: the manifest's own checksum, every
/// file it lists (stored SHA-1, decompressed size and SHA-1, pages). The findings (each with
/// [`Finding::file`] set) and warnings; on the current rayon pool.
pub fn check_pgbackrest_backup(dir: &Path) -> (Vec<Finding>, Vec<(PathBuf, String)>) {
    let c = pgbackrest::check(dir, &mut Default::default());
    (c.findings, c.warnings)
}

/// Checks the WAL-G backup in `dir` (`basebackups_005/base_…/`, `docs/postgres-backups.md` §6)
/// as a scan of its storage does, without its WAL: its stop sentinel, every tar partition's
/// pages, the sentinel's file list. The findings (each with [`Finding::file`] set) and warnings.
pub fn check_walg_backup(dir: &Path) -> (Vec<Finding>, Vec<(PathBuf, String)>) {
    let registry = wal::Registry::default();
    let c = walg::check(dir, DEFAULT_BLCKSZ, DEFAULT_RELSEG, &registry);
    (c.findings, c.warnings)
}

/// Whether `postmaster.pid` in `data_dir` names a live process: the server runs.
pub fn server_running(data_dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return false;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only asks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Format for PostgresFormat {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn conclude(&self, complete: bool) -> crate::format::Conclusion {
        // The highest LSN of the data blocks verified in this scan, per data directory.
        let clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
        let page_lsn = |data_dir: &Path| {
            clusters
                .get(data_dir)
                .map(|c| c.max_page_lsn.load(std::sync::atomic::Ordering::Relaxed))
                .filter(|&l| l > 0)
        };
        // Compressed tar archives first: their WAL segments join the WAL registry.
        let streamed = self.stream_tars(complete);
        let (mut out, wal_dirs) = self.wal.conclude(complete, &page_lsn);
        let mut streamed_members: HashMap<PathBuf, Vec<(PathBuf, bool, Vec<tarstream::Streamed>)>> =
            HashMap::new();
        for (archive, checked) in streamed {
            out.findings.extend(checked.findings);
            out.warnings.extend(checked.warnings);
            out.units += checked.units;
            if let Some(dir) = archive.parent() {
                streamed_members
                    .entry(dir.to_path_buf())
                    .or_default()
                    .push((archive.clone(), checked.cut, checked.members));
            }
        }
        let archive = self.archive(&wal_dirs, &mut out);
        // Backups restored from the archive, by (start, timeline): its backup history file of
        // the same backup then adds no verdict of its own.
        let mut restored: Vec<(u64, u32)> = Vec::new();
        // Each whole backup against its manifest, in path order.
        let mut dirs: Vec<(&PathBuf, Option<&Arc<Cluster>>)> = clusters
            .iter()
            .filter(|(_, c)| c.whole.load(std::sync::atomic::Ordering::Relaxed))
            .map(|(d, c)| (d, Some(c)))
            .collect();
        let tars = self.tar_backups.lock().unwrap_or_else(|e| e.into_inner());
        dirs.extend(tars.iter().map(|d| (d, None)));
        dirs.sort_by(|a, b| a.0.cmp(b.0));
        dirs.dedup_by(|a, b| a.0 == b.0);
        for (dir, cluster) in dirs {
            let ranges = read_manifest(dir, complete, &mut out).map(|bytes| {
                let (list, system_id) = match cluster {
                    Some(c) => (
                        manifest::list_plain(dir),
                        c.control.and_then(|c| c.wal).map(|w| w.system_id),
                    ),
                    // A tar-format backup: its archives' members, as they streamed past when
                    // they are compressed.
                    None => match streamed_members.remove(dir.as_path()) {
                        Some(archives) => (manifest::list_streamed(dir, archives), None),
                        None => (manifest::list_tar(dir), None),
                    },
                };
                let (findings, warnings, ranges) = manifest::verify(dir, &bytes, system_id, list);
                out.findings.extend(findings);
                out.warnings.extend(warnings);
                ranges
            });
            // The restore from the archive: from the label's start (else the manifest's first
            // range), to the manifest's end (else the archive's history file of this start).
            // The restore: from the label's start (else the manifest's first range), to the
            // manifest's end (else the archive's history file of this start).
            let label = cluster.and_then(|_| backup_label(dir));
            let first = ranges.as_ref().and_then(|r| r.first());
            let begin = label
                .map(|(s, _, t)| (s, t))
                .or(first.map(|r| (r.start, r.timeline)));
            // The backup's own WAL: pg_wal/, or a tar-format backup's pg_wal.tar.
            let own_path = match cluster {
                Some(_) => dir.join("pg_wal"),
                // pg_wal.tar (-X stream), or base.tar's pg_wal/ (-X fetch).
                None => tar::BASE_NAMES
                    .iter()
                    .map(|n| dir.join(n.replace("base", "pg_wal")))
                    .chain(tar::BASE_NAMES.iter().map(|n| dir.join(n)))
                    .find(|p| wal_dirs.contains_key(p))
                    .unwrap_or_else(|| dir.join("pg_wal.tar")),
            };
            let own = wal_dirs.get(&own_path);
            let need = begin.map(|(start, timeline)| {
                let history = archive.and_then(|(_, adir)| {
                    adir.backups
                        .iter()
                        .find(|b| b.start == start && b.timeline == timeline)
                });
                wal::restore::Need {
                    backup: dir.to_string_lossy().into_owned(),
                    label: history.map(|b| b.label.clone()),
                    start,
                    end: ranges
                        .as_ref()
                        .and_then(|r| r.last())
                        .map(|r| r.end)
                        .or(history.map(|b| b.stop)),
                    timeline,
                    system_id: cluster
                        .and_then(|c| c.control)
                        .and_then(|c| c.wal)
                        .map(|w| w.system_id),
                }
            });
            let restore = match (archive, &need) {
                (Some((apath, adir)), Some(need)) => {
                    restored.push((need.start, need.timeline));
                    match wal::restore::judge(own, adir, apath, need) {
                        Ok(v) => Some(v),
                        Err(why) => {
                            out.warnings.push((
                                dir.clone(),
                                format!("the restore of this backup from the WAL archive is not judged: {why}"),
                            ));
                            None
                        }
                    }
                }
                _ => None,
            };
            if let Some(ranges) = &ranges {
                let verdict = match cluster {
                    Some(c) => backup_wal(
                        dir,
                        c,
                        ranges,
                        archive.map(|a| a.1).zip(restore.as_ref()),
                        &mut out,
                    ),
                    None => tar_backup_wal(
                        dir,
                        ranges,
                        own.map(|o| (own_path.as_path(), o)),
                        archive.map(|a| a.1),
                        restore.as_ref(),
                        need.as_ref(),
                        &mut out,
                    ),
                };
                out.backups.push(verdict);
            }
            out.restores.extend(restore);
        }
        // pgBackRest backups: every file, then the restore from the repository's archive.
        let mut pgbr =
            std::mem::take(&mut *self.pgbackrest.lock().unwrap_or_else(|e| e.into_inner()));
        // Oldest first: a full backup's files are read once, before the incremental ones
        // that reference them.
        pgbr.sort();
        let mut seen = std::collections::HashSet::new();
        // Each stanza's backup.info and archive.info, once.
        let mut stanzas: Vec<&Path> = pgbr.iter().filter_map(|d| d.parent()).collect();
        stanzas.dedup();
        if complete {
            for stanza in stanzas {
                let c = pgbackrest::check_stanza(stanza);
                out.findings.extend(c.findings);
                out.warnings.extend(c.warnings);
            }
        }
        for dir in pgbr {
            if !complete {
                out.warnings.push((
                    dir.clone(),
                    "the scan stopped early: the pgBackRest backup was not checked".into(),
                ));
                continue;
            }
            let checked = pgbackrest::check(&dir, &mut seen);
            out.findings.extend(checked.findings);
            out.warnings.extend(checked.warnings);
            out.units += checked.units;
            let Some(m) = checked.manifest else {
                // A backup whose manifest cannot be used is listed, and not restorable.
                out.backups.push(crate::report::BackupVerdict {
                    format: Self::NAME.into(),
                    path: dir.to_string_lossy().into_owned(),
                    real: dir.clone(),
                    also: checked.referenced,
                    backup_end: None,
                    consistent: None,
                    missing_wal_segments: 0,
                    damaged_findings: 0,
                    restorable: false,
                });
                continue;
            };
            // Its archive: the repository's archive/<stanza>/<version>-<id>/.
            let repo_archive = dir.parent().and_then(|stanza| {
                let name = stanza.file_name()?;
                let repo = stanza.parent()?.parent()?;
                Some(
                    repo.join("archive")
                        .join(name)
                        .join(format!("{}-{}", m.db_version, m.db_id)),
                )
            });
            let need = wal::restore::Need {
                backup: dir.to_string_lossy().into_owned(),
                label: Some(m.label.clone()),
                start: m.lsn_start,
                end: Some(m.lsn_stop),
                timeline: m.timeline(),
                system_id: m.system_id,
            };
            restored.push((need.start, need.timeline));
            repo_backup(
                &mut out,
                archive,
                &wal_dirs,
                &dir,
                &need,
                repo_archive,
                checked.referenced,
            );
        }
        // WAL-G backups: every partition, then the restore from the storage's wal_005/.
        let walg_dirs = std::mem::take(&mut *self.walg.lock().unwrap_or_else(|e| e.into_inner()));
        for dir in walg_dirs {
            if !complete {
                out.warnings.push((
                    dir.clone(),
                    "the scan stopped early: the WAL-G backup was not checked".into(),
                ));
                continue;
            }
            let checked = walg::check(&dir, self.blcksz(), DEFAULT_RELSEG, &self.wal);
            out.findings.extend(checked.findings);
            out.warnings.extend(checked.warnings);
            out.units += checked.units;
            let sentinel = walg::sentinel_path(&dir);
            let Some(s) = checked.sentinel else {
                // No end known: not restorable, whatever its files.
                out.backups.push(crate::report::BackupVerdict {
                    format: Self::NAME.into(),
                    path: dir.to_string_lossy().into_owned(),
                    real: dir.clone(),
                    also: vec![sentinel],
                    backup_end: None,
                    consistent: Some(false),
                    missing_wal_segments: 0,
                    damaged_findings: 0,
                    restorable: false,
                });
                continue;
            };
            let need = wal::restore::Need {
                backup: dir.to_string_lossy().into_owned(),
                label: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
                start: s.start,
                end: Some(s.finish),
                timeline: walg::timeline(&dir),
                system_id: s.system_id,
            };
            restored.push((need.start, need.timeline));
            let storage_wal = dir
                .parent()
                .and_then(Path::parent)
                .map(|p| p.join("wal_005"));
            repo_backup(
                &mut out,
                archive,
                &wal_dirs,
                &dir,
                &need,
                storage_wal,
                vec![sentinel],
            );
        }
        // The archives' own backup history files: each backup they name, restored from them.
        for (apath, adir) in wal_dirs
            .iter()
            .filter(|(_, d)| d.kind == wal::WalDirKind::Archive)
        {
            for b in &adir.backups {
                if restored.contains(&(b.start, b.timeline)) {
                    continue;
                }
                let need = wal::restore::Need {
                    backup: b.path.to_string_lossy().into_owned(),
                    label: Some(b.label.clone()),
                    start: b.start,
                    end: Some(b.stop),
                    timeline: b.timeline,
                    system_id: None,
                };
                match wal::restore::judge(None, adir, apath, &need) {
                    Ok(v) => out.restores.push(v),
                    Err(why) => out.warnings.push((
                        b.path.clone(),
                        format!("the restore of the backup this file names is not judged: {why}"),
                    )),
                }
            }
        }
        out
    }

    fn description(&self) -> &'static str {
        "PostgreSQL data directories (initdb -k): every block of every fork and segment under \
         base/, global/ and pg_tblspc/ with PostgreSQL's page checksum (absolute block number), \
         new-page rule, header sanity, pg_control CRC-32C"
    }

    fn detect_file(&self, probe: &Probe<'_>) -> bool {
        // Relation files have no magic: a relation file name inside a data directory.
        let name_ok = probe
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| parse_relfile_name(n).is_some() || n == "pg_control");
        (name_ok && data_dir_of(probe.path).is_some())
            || tar::is_backup_archive(probe.path)
            || is_wal_file(probe)
    }

    fn detect_dir(&self, dir: &Path) -> bool {
        is_data_dir(dir)
            || is_database_dir(dir)
            || !version_dirs(dir).is_empty()
            || tar::is_tar_backup(dir)
            || is_wal_dir(dir)
            || pgbackrest::is_backup_dir(dir)
            || walg::is_backup_dir(dir)
    }

    fn list_dir(&self, dir: &Path) -> Option<DirListing> {
        let mut listing = DirListing::default();
        if !is_data_dir(dir) && is_wal_dir(dir) {
            self.list_wal(dir, &mut listing);
            return Some(listing);
        }
        if walg::is_backup_dir(dir) {
            // Its partitions are streamed in the conclusion; they are the files listed.
            remember(&self.walg, [dir.to_path_buf()]);
            listing
                .files
                .extend(walg::archives(dir).into_iter().map(|(p, _)| p));
            return Some(listing);
        }
        if pgbackrest::is_backup_dir(dir) && !is_data_dir(dir) {
            // Its files are compressed: they are checked whole, streamed, once the scan's
            // other files are (the conclusion); the manifest is the file listed.
            remember(&self.pgbackrest, [dir.to_path_buf()]);
            listing.files.push(dir.join(pgbackrest::MANIFEST));
            return Some(listing);
        }
        if tar::is_tar_backup(dir) && !is_data_dir(dir) {
            remember(&self.tar_backups, [dir.to_path_buf()]);
            let mut compressed = Vec::new();
            list_tar_backup(dir, &mut listing, &mut compressed);
            remember(&self.compressed_tars, compressed);
            return Some(listing);
        }
        if !is_data_dir(dir) && data_dir_of(dir).is_none() {
            // A tablespace location (`CREATE TABLESPACE … LOCATION`), scanned without the data
            // directory whose pg_tblspc links to it: its `PG_<major>_<catversion>` folders.
            let versions = version_dirs(dir);
            if versions.is_empty() {
                return None;
            }
            listing.warnings.push((
                dir.to_path_buf(),
                format!(
                    "a tablespace location scanned without its data directory: the cluster's \
                     pg_control is not here, so data checksums are taken to be enabled and blocks \
                     to be {}-byte (name another size with --pg-block-size); scan the data \
                     directory too for its own settings",
                    self.blcksz()
                ),
            ));
            for v in versions {
                walk(&v, &mut listing);
            }
            listing.files.sort();
            return Some(listing);
        }
        let data_dir = if is_data_dir(dir) {
            dir.to_path_buf()
        } else {
            data_dir_of(dir)?
        };
        let cluster = self.cluster(&data_dir);
        let control_path = data_dir.join("global").join("pg_control");
        match &cluster.control {
            Some(c) if c.data_checksum_version == 0 => {
                listing.errors.push((
                    control_path,
                    "data checksums are disabled in this cluster (pg_control \
                     data_checksum_version is 0): there is nothing to verify; enable them with \
                     pg_checksums --enable"
                        .into(),
                ));
                return Some(listing);
            }
            Some(_) => {}
            // Without a usable pg_control the cluster's block and segment sizes are unknown:
            // an error (nothing here can be called clean), and the relation files are still
            // verified with the sizes the user named or PostgreSQL's defaults.
            None if !control_path.exists() => listing.errors.push((
                control_path.clone(),
                format!(
                    "global/pg_control is missing (an interrupted base backup, or a damaged \
                     copy): the cluster's block size is unknown, so its relation files are \
                     verified with {}-byte blocks and {DEFAULT_RELSEG}-block segments; name \
                     another block size with --pg-block-size",
                    self.blcksz()
                ),
            )),
            None => listing.errors.push((
                control_path.clone(),
                format!(
                    "pg_control could not be read or fails its CRC: its relation files are \
                     verified with {}-byte blocks and {DEFAULT_RELSEG}-block segments; name \
                     another block size with --pg-block-size",
                    self.blcksz()
                ),
            )),
        }
        listing.live = cluster.live;
        if cluster.live {
            listing.warnings.push((
                data_dir.join("postmaster.pid"),
                "the server is running: blocks being written can look torn, so each mismatching \
                 block is re-read once after a short pause before it is reported"
                    .into(),
            ));
        }
        if dir == data_dir {
            cluster
                .whole
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if control_path.exists() {
                listing.files.push(control_path);
            }
            for sub in ["global", "base"] {
                walk(&dir.join(sub), &mut listing);
            }
            walk_tablespaces(&dir.join("pg_tblspc"), &mut listing);
            let pg_wal = dir.join("pg_wal");
            if pg_wal.is_dir() {
                self.list_wal(&pg_wal, &mut listing);
            }
        } else {
            walk(dir, &mut listing);
        }
        listing.files.sort();
        Some(listing)
    }

    fn open(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if tar::is_backup_archive(path) {
            return self.open_tar(path, source);
        }
        if name == "pg_wal.tar" && path.parent().is_some_and(tar::is_tar_backup) {
            let members = tar::members(source).map_err(|reason| OpenError::NotThisFormat {
                format: Self::NAME,
                reason,
            })?;
            let members: Vec<(String, u64, u64)> = members
                .into_iter()
                .map(|m| (m.name, m.data, m.size))
                .collect();
            return wal::open_tar(&self.wal, path, &members, source);
        }
        let streamed = (tarstream::compressed_archive(path).is_some()
            && path.parent().is_some_and(tar::is_tar_backup))
            || path
                .parent()
                .filter(|p| p.file_name().is_some_and(|n| n == "tar_partitions"))
                .and_then(Path::parent)
                .is_some_and(walg::is_backup_dir);
        if streamed
            || (name == pgbackrest::MANIFEST
                && path.parent().is_some_and(pgbackrest::is_backup_dir))
        {
            // Judged with the backup's files, in the conclusion.
            return Ok(Opened {
                findings: Vec::new(),
                check: None,
                units: 0,
                recheck_after: None,
                notes: Vec::new(),
            });
        }
        let cluster = data_dir_of(path).map(|d| self.cluster(&d));
        if let Some(w) = wal::parse_stored(name) {
            let dir = wal::wal_dir_of(path.parent().unwrap_or(Path::new("")));
            let control = cluster.as_ref().and_then(|c| c.control).and_then(|c| c.wal);
            let live = cluster.as_ref().is_some_and(|c| c.live);
            return wal::open(
                &self.wal,
                path,
                w,
                source,
                wal::dir_kind(dir, control, live),
            );
        }
        if name == "pg_control" {
            return open_control(source);
        }
        let rel = parse_relfile_name(name).ok_or_else(|| OpenError::NotThisFormat {
            format: Self::NAME,
            reason: "not a relation file name ([t<backend>_]<relfilenode>[_fork][.<segment>])"
                .into(),
        })?;
        let control = cluster
            .as_ref()
            .and_then(|c| c.control)
            .filter(Control::sizes_plausible);
        if control.is_some_and(|c| c.data_checksum_version == 0) {
            return Err(OpenError::NotThisFormat {
                format: Self::NAME,
                reason: "data checksums are disabled in this cluster (pg_control data_checksum_version is 0)".into(),
            });
        }
        // An UNLOGGED relation (it has an init fork) of a stopped cluster that was not shut down
        // cleanly: the next start's recovery replaces its other forks with the init fork, so
        // what they hold now — damage included — is gone then, not something to restore.
        let crashed = cluster
            .as_ref()
            .is_some_and(|c| !c.live && c.control.is_some_and(|c| !c.shut_down_cleanly()));
        if crashed && rel.fork != Fork::Init && rel.temp_backend.is_none() {
            let init = path.with_file_name(format!("{}_init", rel.relfilenode));
            if init.is_file() {
                return Ok(Opened::note(format!(
                        "the {} fork of an UNLOGGED relation in a cluster that was not shut down cleanly: PostgreSQL's crash recovery resets it from its init fork at the next start, so its contents are not checked (any damage in it is discarded with them)",
                        rel.fork.name()
                    )));
            }
        }
        let blcksz = u64::from(control.map_or(self.blcksz(), |c| c.blcksz));
        let relseg = control.map_or(DEFAULT_RELSEG, |c| c.relseg_size);
        let (mut check, partial) = PgCheck::segment(
            rel,
            placement(path),
            blcksz,
            relseg,
            (0, source.len()),
            None,
        );
        // Blocks whose LSN is a WAL position: not UNLOGGED (an init fork beside it) or temporary.
        let logged = rel.temp_backend.is_none()
            && !path
                .with_file_name(format!("{}_init", rel.relfilenode))
                .exists();
        check.lsn = cluster
            .as_ref()
            .filter(|c| logged && !c.backup)
            .map(|c| c.max_page_lsn.clone());
        let findings: Vec<Finding> = partial.into_iter().collect();
        Ok(Opened {
            findings,
            check: Some(Box::new(check)),
            units: 0,
            recheck_after: cluster.filter(|c| c.live).map(|_| RECHECK_PAUSE),
            notes: Vec::new(),
        })
    }
}

impl PostgresFormat {
    /// Lists a WAL directory (`pg_wal/`, or a directory of archived segments): segments,
    /// `.partial`, `.history` and `.backup` files; the rest skipped, saying why.
    fn list_wal(&self, dir: &Path, listing: &mut DirListing) {
        let entries = match sorted_entries(dir) {
            Ok(e) => e,
            Err(e) => {
                listing.errors.push((
                    dir.to_path_buf(),
                    format!("could not list the WAL directory: {e}"),
                ));
                return;
            }
        };
        let mut segments = Vec::new();
        let mut entries = entries;
        let mut i = 0;
        while let Some(e) = entries.get(i) {
            i += 1;
            let path = e.path();
            let name = e.file_name();
            let parsed = name.to_str().and_then(wal::parse_stored);
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            match parsed {
                Some((w, _)) if is_file => {
                    if matches!(w, wal::WalName::Segment { .. }) {
                        segments.push(path.clone());
                    }
                    listing.files.push(path);
                }
                // A pgBackRest log folder at the archive's top: its files are the archive's.
                None if is_dir
                    && wal::wal_dir_of(dir) == dir
                    && name.to_str().is_some_and(wal::is_log_folder) =>
                {
                    match sorted_entries(&path) {
                        Ok(more) => entries.extend(more),
                        Err(err) => listing.errors.push((
                            path,
                            format!("could not list the WAL archive's folder: {err}"),
                        )),
                    }
                }
                _ if name == "archive_status" => listing.skipped.push((
                    path,
                    "the archiver's bookkeeping (.ready and .done markers), not WAL".into(),
                )),
                _ if e.file_type().is_ok_and(|t| t.is_dir()) => listing
                    .skipped
                    .push((path, "a directory inside a WAL directory: not WAL".into())),
                Some(_) => listing
                    .skipped
                    .push((path, "not a regular file, not opened".into())),
                None => listing.skipped.push((
                    path,
                    "not a WAL segment, history or backup-history file name: PostgreSQL never reads it as WAL".into(),
                )),
            }
        }
        let data_dir = dir
            .parent()
            .filter(|p| dir.file_name().is_some_and(|n| n == "pg_wal") && is_data_dir(p));
        let cluster = data_dir.map(|d| self.cluster(d));
        let control = cluster.as_ref().and_then(|c| c.control).and_then(|c| c.wal);
        let live = cluster.as_ref().is_some_and(|c| c.live);
        self.wal.listed(
            wal::wal_dir_of(dir),
            wal::dir_kind(dir, control, live),
            &segments,
        );
        listing.files.sort();
    }

    /// A base backup archive (`docs/postgres.md`): its relation members verified in place.
    fn open_tar(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let members = tar::members(source).map_err(|reason| OpenError::NotThisFormat {
            format: Self::NAME,
            reason,
        })?;
        let control = tar::control_of(path, source);
        let mut notes = Vec::new();
        let usable = control.filter(Control::sizes_plausible);
        match usable {
            Some(c) if c.data_checksum_version == 0 => {
                return Err(OpenError::NotThisFormat {
                    format: Self::NAME,
                    reason: "data checksums are disabled in the backed-up cluster (its pg_control data_checksum_version is 0)".into(),
                })
            }
            Some(_) => {}
            None => notes.push(format!(
                "the backup's global/pg_control (in base.tar) is missing or unreadable: its members are verified with {}-byte blocks and {DEFAULT_RELSEG}-block segments",
                self.blcksz()
            )),
        }
        let blcksz = u64::from(usable.map_or(self.blcksz(), |c| c.blcksz));
        let relseg = usable.map_or(DEFAULT_RELSEG, |c| c.relseg_size);
        let (check, mut findings) = tar::TarCheck::new(path, &members, blcksz, relseg);
        // The WAL `-X fetch` puts in base.tar's pg_wal/: the backup's own WAL, as pg_wal.tar's.
        let wal_members: Vec<(String, u64, u64)> = members
            .iter()
            .filter(|m| m.name.starts_with("pg_wal/"))
            .map(|m| (m.name.clone(), m.data, m.size))
            .collect();
        let (wal_check, wal_units, wal_findings) = if wal_members.is_empty() {
            (None, 0, Vec::new())
        } else {
            wal::tar_segments(&self.wal, path, &wal_members, source)?
        };
        findings.extend(wal_findings);
        if check.members.is_empty() && findings.is_empty() && wal_check.is_none() {
            return Err(OpenError::NotThisFormat {
                format: Self::NAME,
                reason: format!(
                    "the archive holds no relation file ({} members, none under base/, global/ or PG_<major>_<catversion>/)",
                    members.len()
                ),
            });
        }
        let check: Box<dyn UnitCheck> = match wal_check {
            None => Box::new(check),
            Some(w) => Box::new(tar::WithWal::new(check, w)),
        };
        Ok(Opened {
            findings,
            check: Some(check),
            units: wal_units,
            recheck_after: None,
            notes,
        })
    }
}

/// A WAL file named on its own: a segment whose first page carries a known WAL magic, or a
/// history or backup-history file by name.
fn is_wal_file(probe: &Probe<'_>) -> bool {
    let Some(name) = probe.path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    match wal::parse_stored(name) {
        // Compressed: its codec's stream is judged when it is decoded.
        Some((wal::WalName::Segment { .. }, s)) if s.codec.is_some() => true,
        Some((wal::WalName::Segment { .. }, _)) => probe
            .head
            .get(..2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
            .and_then(wal::major_of_magic)
            .is_some(),
        Some(_) => true,
        None => false,
    }
}

/// A directory holding WAL segments by name (`pg_wal/`, an archive).
fn is_wal_dir(dir: &Path) -> bool {
    let Ok(rd) = fs::read_dir(dir) else {
        return false;
    };
    rd.filter_map(Result::ok).any(|e| {
        let name = e.file_name();
        let name = name.to_str().unwrap_or_default();
        let kind = e.file_type();
        (wal::WalName::is_segment(name) && kind.as_ref().is_ok_and(|t| t.is_file()))
            // pgBackRest's archive: its segments in log folders below it.
            || (wal::is_log_folder(name)
                && kind.is_ok_and(|t| t.is_dir())
                && fs::read_dir(e.path()).is_ok_and(|rd| {
                    rd.filter_map(Result::ok).any(|e| {
                        e.file_name().to_str().is_some_and(wal::WalName::is_segment)
                    })
                }))
    })
}

/// Lists a `pg_basebackup -Ft` directory: `base.tar` and each tablespace's `<oid>.tar`.
fn list_tar_backup(dir: &Path, listing: &mut DirListing, compressed: &mut Vec<PathBuf>) {
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => {
            listing.errors.push((
                dir.to_path_buf(),
                format!("could not list the directory: {e}"),
            ));
            return;
        }
    };
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        // The relation archives, and the WAL's (pg_wal.tar).
        if (tar::is_backup_archive(&path) || name == "pg_wal.tar")
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            listing.files.push(path);
        } else if tarstream::compressed_archive(&path).is_some()
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            // Streamed once, in the conclusion.
            compressed.push(path.clone());
            listing.files.push(path);
        } else {
            listing
                .skipped
                .push((path, "not a relation archive of the backup".into()));
        }
    }
}

/// Adds paths a listing found to one of the lists the conclusion works through.
fn remember(list: &Mutex<Vec<PathBuf>>, paths: impl IntoIterator<Item = PathBuf>) {
    list.lock().unwrap_or_else(|e| e.into_inner()).extend(paths);
}

/// The entries of `dir`, by name.
fn sorted_entries(dir: &Path) -> std::io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

fn is_database_dir(dir: &Path) -> bool {
    let parent = dir.parent();
    let under_base = parent.is_some_and(|p| p.file_name().is_some_and(|n| n == "base"));
    let is_global = dir.file_name().is_some_and(|n| n == "global");
    (under_base || is_global) && data_dir_of(dir).is_some()
}

/// Lists the files pg_checksums would check under `dir` (recursively, pgsql_tmp excluded);
/// names that are not relation files are skipped with a note instead of aborting the run.
fn walk(dir: &Path, listing: &mut DirListing) {
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            listing.errors.push((
                dir.to_path_buf(),
                format!("could not list the directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if is_skipped_name(&name) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, listing),
            Ok(t) if t.is_file() => {
                if parse_relfile_name(&name).is_some() {
                    listing.files.push(path);
                } else {
                    listing.skipped.push((
                        path,
                        "not a relation file: PostgreSQL never reads it as one (pg_checksums aborts on it)".into(),
                    ));
                }
            }
            Ok(_) => listing
                .skipped
                .push((path, "not a regular file, not opened".into())),
            Err(e) => listing.errors.push((path, e.to_string())),
        }
    }
}

use path::is_skipped_name;

/// `pg_tblspc/<oid>` are links to tablespace locations; only their `PG_<major>_<catversion>`
/// directory belongs to this cluster, as pg_checksums assumes.
fn walk_tablespaces(dir: &Path, listing: &mut DirListing) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut links: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    links.sort();
    let major = dir
        .parent()
        .and_then(|d| fs::read_to_string(d.join("PG_VERSION")).ok())
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    for link in links {
        let Ok(rd) = fs::read_dir(&link) else {
            listing
                .errors
                .push((link, "could not open the tablespace location".into()));
            continue;
        };
        let mut versions: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("PG_{major}_"))
            })
            .map(|e| e.path())
            .collect();
        versions.sort();
        for v in versions {
            walk(&v, listing);
        }
    }
}

/// The `PG_<major>_<catversion>` folders of a tablespace location: `dir` itself when it is
/// one, else those in it.
fn version_dirs(dir: &Path) -> Vec<PathBuf> {
    let is_version = |name: &std::ffi::OsStr| {
        name.to_str()
            .and_then(|n| n.strip_prefix("PG_"))
            .and_then(|n| n.split_once('_'))
            .is_some_and(|(major, cat)| {
                !major.is_empty()
                    && !cat.is_empty()
                    && major.bytes().all(|b| b.is_ascii_digit())
                    && cat.bytes().all(|b| b.is_ascii_digit())
            })
    };
    if dir.file_name().is_some_and(is_version) {
        return vec![dir.to_path_buf()];
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && is_version(&e.file_name()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn open_control(source: &dyn FileSource) -> Result<Opened, OpenError> {
    let mut buf = vec![0u8; source.len().min(8192) as usize];
    let done = source.read_full_at(0, &mut buf)?;
    buf.truncate(done);
    let mut findings = Vec::new();
    match parse_control(&buf) {
        None => findings.push(Finding::new(
            FindingKind::Truncated,
            0,
            buf.len() as u64,
            "pg_control is too short to hold its fields",
        )),
        Some(c) => {
            if let ControlCrc::Mismatch { stored, computed } = c.crc {
                findings.push(
                    Finding::new(
                        FindingKind::ChecksumMismatch,
                        0,
                        buf.len() as u64,
                        "pg_control's CRC-32C does not match: block size, segment size and checksum \
                         setting cannot be trusted",
                    )
                    .checksums(format!("0x{stored:08x}"), format!("0x{computed:08x}")),
                );
            }
            if !c.sizes_plausible() {
                findings.push(Finding::new(
                    FindingKind::BadHeader,
                    0,
                    buf.len() as u64,
                    format!(
                        "pg_control claims {}-byte blocks and {}-block segments, which PostgreSQL cannot be built with",
                        c.blcksz, c.relseg_size
                    ),
                ));
            }
        }
    }
    Ok(Opened {
        findings,
        check: None,
        units: 1,
        recheck_after: None,
        notes: Vec::new(),
    })
}

fn owner(rel: &RelFileName, placement: Option<&Placement>, block: u64, relseg: u32) -> Owner {
    let mut o = Owner::new();
    if let Some(p) = placement {
        o.insert("tablespace".into(), p.tablespace.clone().into());
        if let Some(db) = p.database_oid {
            o.insert("database_oid".into(), db.into());
        }
    }
    o.insert("relfilenode".into(), rel.relfilenode.into());
    if let Some(b) = rel.temp_backend {
        o.insert("temp_backend".into(), b.into());
    }
    o.insert("fork".into(), rel.fork.name().into());
    o.insert("segment".into(), rel.segment.into());
    o.insert("block".into(), block.into());
    o.insert(
        "absolute_block".into(),
        (u64::from(rel.segment) * u64::from(relseg) + block).into(),
    );
    o
}

/// Verifies the blocks of one relation segment file.
struct PgCheck {
    blcksz: usize,
    first_block: u64,
    rel: RelFileName,
    placement: Option<Placement>,
    relseg: u32,
    end: u64,
    /// Where block 0 of the segment is in the file: 0, or a tar member's data offset.
    base: u64,
    /// The tar member holding the segment, when it is one (`owner.member`).
    member: Option<String>,
    /// Where the highest LSN of a block that verifies goes, for the WAL's verdict: WAL is
    /// flushed before the data page it describes, so a page with LSN L proves the WAL up to L
    /// was flushed. `None` for relations whose LSNs are not WAL positions (UNLOGGED, temporary)
    /// and outside a plain data directory.
    lsn: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl PgCheck {
    /// The check of a segment of `len` bytes whose block 0 is at `base` in its file, and the
    /// finding for a partial last block, if it has one.
    fn segment(
        rel: RelFileName,
        placement: Option<Placement>,
        blcksz: u64,
        relseg: u32,
        (base, len): (u64, u64),
        member: Option<String>,
    ) -> (PgCheck, Option<Finding>) {
        let whole = len / blcksz;
        let rest = len % blcksz;
        let check = PgCheck {
            blcksz: blcksz as usize,
            first_block: u64::from(rel.segment) * u64::from(relseg),
            rel,
            placement,
            relseg,
            end: base + whole * blcksz,
            base,
            member,
            lsn: None,
        };
        let partial = (rest != 0).then(|| check.partial_page(whole, rest));
        (check, partial)
    }

    fn owner(&self, block: u64) -> Owner {
        let mut o = owner(&self.rel, self.placement.as_ref(), block, self.relseg);
        if let Some(m) = &self.member {
            o.insert("member".into(), m.clone().into());
        }
        o
    }

    /// The finding for a segment that ends `rest` bytes into block `whole`.
    fn partial_page(&self, whole: u64, rest: u64) -> Finding {
        let bs = self.blcksz as u64;
        Finding::new(
            FindingKind::PartialPage,
            self.base + whole * bs,
            rest,
            format!(
                "the file ends {} into block {whole}; PostgreSQL reads whole {bs}-byte blocks",
                crate::bytes(rest)
            ),
        )
        .unit(whole)
        .owner(self.owner(whole))
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_ne_bytes)
}

/// A block's failure: its kind, one sentence, and (stored, computed) checksums where they apply.
pub type BlockVerdict = (FindingKind, String, Option<(u16, u16)>);

/// The verdict on one block, as the server judges it on read (`PageIsVerifiedExtended`):
/// `None` for a valid or new (all-zero) block, else the finding kind, one sentence and the
/// stored and computed checksums where they apply. Never panics, whatever the bytes.
pub fn judge_block(page: &[u8], absolute_block: u64) -> Option<BlockVerdict> {
    judge(page, absolute_block)
}

fn judge(page: &[u8], absolute_block: u64) -> Option<BlockVerdict> {
    judge_with(page, pg_checksum_page(page, absolute_block as u32))
}

/// [`judge`] with the page's checksum already computed (several pages per pass).
fn judge_with(page: &[u8], computed: u16) -> Option<BlockVerdict> {
    let stored = u16_at(page, checksum::CHECKSUM_OFF);
    let pd_upper = u16_at(page, 14);
    if pd_upper == 0 {
        if crate::all_zero(page) {
            return None; // a new page: accepted by the server and skipped by pg_checksums
        }
        return Some((
            FindingKind::BadHeader,
            "pd_upper is 0 but the block is not all zero: the server rejects it as an invalid \
             page (pg_checksums skips it unchecked)"
                .into(),
            Some((stored, computed)),
        ));
    }
    if computed != stored {
        return Some((
            FindingKind::ChecksumMismatch,
            format!("data page checksum mismatch (pg_checksums: calculated checksum {computed:X} but block contains {stored:X})"),
            Some((stored, computed)),
        ));
    }
    let (flags, lower, special) = (u16_at(page, 10), u16_at(page, 12), u16_at(page, 16));
    let sane = flags & !0x7 == 0
        && lower <= pd_upper
        && pd_upper <= special
        && usize::from(special) <= page.len()
        && special % 8 == 0;
    if !sane {
        return Some((
            FindingKind::BadHeader,
            format!(
                "the checksum matches but the header fails the server's sanity check \
                 (pd_flags 0x{flags:x}, pd_lower {lower}, pd_upper {pd_upper}, pd_special {special})"
            ),
            None,
        ));
    }
    None
}

impl UnitCheck for PgCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.end,
            align: self.blcksz as u64,
        }
    }

    fn describe(&self, chunk: &Chunk<'_>) -> Vec<(String, String)> {
        let page = chunk.bytes;
        let block = chunk.offset.saturating_sub(self.base) / self.blcksz as u64;
        let absolute = self.first_block + block;
        let u32_at = |off: usize| {
            page.get(off..off + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u32::from_ne_bytes)
        };
        let lsn = (u64::from(u32_at(0)) << 32) | u64::from(u32_at(4));
        vec![
            (
                "pd_lsn".into(),
                format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff),
            ),
            (
                "pd_checksum (stored)".into(),
                format!("0x{:04x}", u16_at(page, checksum::CHECKSUM_OFF)),
            ),
            (
                "pd_checksum (computed)".into(),
                format!("0x{:04x}", pg_checksum_page(page, absolute as u32)),
            ),
            ("absolute block".into(), absolute.to_string()),
            ("pd_flags".into(), format!("0x{:04x}", u16_at(page, 10))),
            ("pd_lower".into(), u16_at(page, 12).to_string()),
            ("pd_upper".into(), u16_at(page, 14).to_string()),
            ("pd_special".into(), u16_at(page, 16).to_string()),
            (
                "pd_pagesize_version".into(),
                format!("0x{:04x}", u16_at(page, 18)),
            ),
            ("pd_prune_xid".into(), u32_at(20).to_string()),
        ]
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let bs = self.blcksz;
        let first = chunk.offset.saturating_sub(self.base) / bs as u64;
        let pages: Vec<&[u8]> = chunk.bytes.chunks_exact(bs).collect();
        // Checksums several pages per pass (the kernel is latency-bound one page at a time).
        let mut sums = Vec::with_capacity(pages.len());
        for group in pages.chunks(PAGES_PER_PASS) {
            let at = (first + sums.len() as u64 + self.first_block) as u32;
            match <&[&[u8]; PAGES_PER_PASS]>::try_from(group) {
                Ok(four) => sums.extend(pg_checksum_pages(
                    four,
                    std::array::from_fn(|k| at.wrapping_add(k as u32)),
                )),
                Err(_) => sums.extend(
                    group
                        .iter()
                        .enumerate()
                        .map(|(k, p)| pg_checksum_page(p, at.wrapping_add(k as u32))),
                ),
            }
        }
        let mut n = 0;
        let mut max_lsn = 0u64;
        for (i, (page, &computed)) in pages.iter().zip(&sums).enumerate() {
            n += 1;
            let block = first + i as u64;
            let verdict = judge_with(page, computed);
            if verdict.is_none() && self.lsn.is_some() && u16_at(page, 14) != 0 {
                let hi = u64::from(u16_at(page, 0)) | u64::from(u16_at(page, 2)) << 16;
                let lo = u64::from(u16_at(page, 4)) | u64::from(u16_at(page, 6)) << 16;
                max_lsn = max_lsn.max(hi << 32 | lo);
            }
            if let Some((kind, detail, sums)) = verdict {
                let mut f = Finding::new(kind, self.base + block * bs as u64, bs as u64, detail)
                    .unit(block)
                    .owner(self.owner(block));
                if let Some((stored, computed)) = sums {
                    f = f.checksums(format!("0x{stored:04x}"), format!("0x{computed:04x}"));
                }
                out.push(f);
            }
        }
        if let Some(sink) = &self.lsn {
            sink.fetch_max(max_lsn, std::sync::atomic::Ordering::Relaxed);
        }
        n
    }
}
