//! The report model: findings, errors, skipped paths and the summary of one scan, and the exit
//! code a script can trust.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, FindingKind};

/// The version of the JSON output contract (`docs/output.md`).
pub const SCHEMA_VERSION: u32 = 1;

/// Exit-code bits, as e2fsck defines them.
pub mod exit {
    /// Nothing wrong.
    pub const OK: i32 = 0;
    /// Damage was found and all of it was repaired from verified sources.
    pub const REPAIRED: i32 = 1;
    /// Damage is left: found without repair, quarantined, or not repairable.
    pub const DAMAGE_LEFT: i32 = 4;
    /// Operational error: a path could not be opened or read, or an internal error.
    pub const OPERATIONAL: i32 = 8;
    /// Usage error.
    pub const USAGE: i32 = 16;
    /// Cancelled (SIGINT); the partial report is still printed.
    pub const CANCELLED: i32 = 32;
}

/// A path that could not be scanned (opened, read, or recognised when named explicitly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathError {
    /// The path as given or reached from a root.
    pub path: String,
    /// One sentence saying what went wrong.
    pub message: String,
}

/// A path found while walking a directory that was deliberately not scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The path as reached from a root.
    pub path: String,
    /// Why it was not scanned (for example "not a recognised format").
    pub reason: String,
}

/// A file a format checked; kept for what runs after the scan (repair), not printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// The path to open.
    pub path: std::path::PathBuf,
    /// The path as reports show it (root joined with the relative path).
    pub display: String,
    /// The name of the format that judged it.
    pub format: &'static str,
    /// The device and inode it had when the scan opened it: what a repair checks before it
    /// writes, so a file replaced since the scan is never written.
    pub id: FileId,
    /// Its length when the scan opened it: a file that grew or shrank since is not repaired
    /// from findings that no longer describe it.
    pub len: u64,
}

/// A file's identity on its file system: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// `[dev, ino]`, as state files keep it.
    pub fn pair(&self) -> [u64; 2] {
        [self.dev, self.ino]
    }

    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// What a repair does about one finding (`docs/output.md`, `repairs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RepairAction {
    /// Write the newest committed journal image of the page whose own checksum verifies.
    RestoreFromJournal,
    /// Write the newest image of the page from the InnoDB doublewrite buffer whose own
    /// checksum verifies in the target tablespace's format.
    RestoreFromDoublewrite,
    /// Rebuild a PostgreSQL block from the newest full-page image of it in the data
    /// directory's own WAL, proven to be its newest state (`docs/postgres-wal.md` §6).
    RestoreFromWal,
    /// Copy the damaged bytes into the quarantine and put a quarantine marker in their place
    /// (native files), or copy them and leave the page as it is (formats without a marker).
    Quarantine,
    /// Copy a torn trailing piece into the quarantine and cut it off the file.
    TruncateTail,
    /// Rewrite a RocksDB/LevelDB table from its verifying blocks and record it in the MANIFEST
    /// (`docs/rocksdb.md` §8): the damaged blocks' key ranges are lost, the rest kept.
    Salvage,
}

impl RepairAction {
    /// The snake_case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            RepairAction::RestoreFromJournal => "restore_from_journal",
            RepairAction::RestoreFromDoublewrite => "restore_from_doublewrite",
            RepairAction::RestoreFromWal => "restore_from_wal",
            RepairAction::Quarantine => "quarantine",
            RepairAction::TruncateTail => "truncate_tail",
            RepairAction::Salvage => "salvage",
        }
    }

    /// Whether the action rebuilds the damaged range from a verified copy (so nothing is lost).
    pub fn is_restore(self) -> bool {
        matches!(
            self,
            RepairAction::RestoreFromJournal
                | RepairAction::RestoreFromDoublewrite
                | RepairAction::RestoreFromWal
        )
    }
}

/// How a repair action went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RepairResult {
    /// Dry run: what would be done.
    Planned,
    /// Written, synced and re-verified.
    Applied,
    /// Not done, or done but not verified afterwards; `detail` says which and the file's state.
    Failed,
    /// Not attempted: the repair was stopped (SIGINT, SIGTERM) at a safe point before it.
    Cancelled,
}

impl RepairResult {
    /// The snake_case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            RepairResult::Planned => "planned",
            RepairResult::Applied => "applied",
            RepairResult::Failed => "failed",
            RepairResult::Cancelled => "cancelled",
        }
    }
}

/// One repair action on one damaged range, and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repair {
    /// The file, as in the finding it repairs.
    pub path: String,
    /// Offset of the range changed (the finding's offset).
    pub offset: u64,
    /// Length of the range changed.
    pub length: u64,
    /// The page or record index, when the finding has one (the first, for a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<u64>,
    /// For a run of pages acted on together (a zeroed hole quarantined): how many from `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u64>,
    /// What is done.
    pub action: RepairAction,
    /// Where the new bytes come from (a journal image), or where the old bytes went (quarantine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How it went.
    pub result: RepairResult,
    /// One sentence for people; for a failure, the state the file is left in.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The file itself (its real path), as in [`Finding::file`]; not serialized.
    #[serde(skip)]
    pub file: Option<std::path::PathBuf>,
}

/// Totals of one scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    /// Files checked by a format.
    pub files: u64,
    /// Bytes of those files that were verified.
    pub bytes: u64,
    /// Units (pages or records) verified.
    pub units: u64,
    /// Number of findings.
    pub findings: u64,
    /// Findings counted by kind (only kinds that occurred).
    pub by_kind: BTreeMap<FindingKind, u64>,
    /// Units covered by findings of a damage kind: a run of zeroed pages is one finding and
    /// all its pages.
    #[serde(default)]
    pub damaged_units: u64,
    /// Paths found while walking that were not scanned.
    pub skipped: u64,
    /// Wall time of the scan in seconds.
    pub elapsed_s: f64,
    /// False when the scan stopped before the end (cancelled or out of time).
    pub complete: bool,
    /// The replay verdict for each log an engine replays at start-up (`docs/output.md` §5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery: Vec<RecoveryVerdict>,
    /// The restore verdict for each backup checked against its manifest (`docs/output.md` §5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupVerdict>,
    /// How far each restore from a WAL archive gets (`docs/output.md` §5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restores: Vec<RestoreVerdict>,
}

/// Whether a backup would restore: its WAL reaches the point where it becomes consistent, and
/// nothing in it is damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupVerdict {
    /// The format that judged it.
    pub format: String,
    /// The backup directory, as reached from a root.
    pub path: String,
    /// Its real path (findings under it count against it).
    #[serde(skip)]
    pub real: std::path::PathBuf,
    /// Files outside it that it needs (an incremental pgBackRest backup's files stored by the
    /// earlier backups it references): findings on them count against it too.
    #[serde(skip)]
    pub also: Vec<std::path::PathBuf>,
    /// Where the restored cluster becomes consistent (the manifest's last End-LSN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_end: Option<String>,
    /// Whether the WAL at hand reaches `backup_end`; absent when it was not judged (a tar-format
    /// backup's `pg_wal.tar` is not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent: Option<bool>,
    /// WAL segments the backup needs that are not in it.
    pub missing_wal_segments: u64,
    /// Damage findings on the backup's files (manifest and page checks).
    pub damaged_findings: u64,
    /// `consistent` is true and there is no damage finding in the backup.
    pub restorable: bool,
}

/// How far a restore of a base backup from a WAL archive gets (archive recovery with
/// `recovery_target` unset and `recovery_target_timeline = 'latest'`): its restore horizon and
/// the first obstacle (`docs/output.md` §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreVerdict {
    /// The format that judged it.
    pub format: String,
    /// The backup: its directory, or the archive's backup history file for a backup that is
    /// known only from it.
    pub backup: String,
    /// The backup's label (`LABEL` of its history file), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The WAL archive.
    pub archive: String,
    /// Where replay starts: the backup's `START WAL LOCATION`.
    pub start: String,
    /// Where the restored cluster becomes consistent (its end), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_end: Option<String>,
    /// Replay reaches `backup_end`: the server can start from the restore. False when the end
    /// is not known.
    pub consistent: bool,
    /// The timeline replay follows (the newest the archive's history files lead to).
    pub timeline: u32,
    /// The restore horizon: where replay stops (the end of the last record it applies).
    pub reaches: String,
    /// The start of the last record applied (the server's "redo done at").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replayed: Option<String>,
    /// The last commit applied (RFC 3339, UTC): the newest data the restore holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaches_time: Option<String>,
    /// `reaches_time` as Unix time (seconds), for monitoring; not printed in JSON.
    #[serde(skip)]
    pub reaches_unix: Option<f64>,
    /// Replay reaches the end of the WAL at hand: nothing valid in the archive lies beyond.
    pub reaches_archive_end: bool,
    /// What stops replay before the archive's end: absent when nothing does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obstacle: Option<RestoreObstacle>,
    /// One sentence for a person.
    pub detail: String,
}

/// The first thing a restore cannot get past.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreObstacle {
    /// The WAL segment (its name).
    pub segment: String,
    /// `missing` (in neither the archive nor the backup) or `damaged`.
    pub reason: String,
    /// The damaged file, as reached from a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its real path (the engine names it as the scan reached it).
    #[serde(skip)]
    pub real: Option<std::path::PathBuf>,
    /// The damage's offset in that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// Where an engine's start-up replay of a log would stop, and what it would silently discard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryVerdict {
    /// The format that judged the log.
    pub format: String,
    /// The log directory.
    pub path: String,
    /// Where replay starts (PostgreSQL: pg_control's checkpoint redo LSN).
    pub start: String,
    /// Where replay would stop: the first record that fails, or the end of the log.
    pub stops_at: String,
    /// The start of the last record replay applies (PostgreSQL's "redo done at").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replayed: Option<String>,
    /// The end of the last valid record of the log.
    pub end: String,
    /// Replay reaches the real end of the log: nothing valid follows `stops_at`.
    pub reaches_end: bool,
    /// Valid records after `stops_at` that replay would silently discard.
    pub lost_records: u64,
    /// Commit records among them.
    pub lost_commits: u64,
    /// The first discarded commit's time (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_lost_commit: Option<String>,
    /// The last discarded commit's time (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_lost_commit: Option<String>,
    /// For a base backup's `pg_wal/`: where the backup becomes consistent (its manifest's last
    /// `WAL-Ranges` End-LSN), which replay must reach before the server can start from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_end: Option<String>,
    /// With `backup_end`: whether replay reaches it (`stops_at` ≥ `backup_end`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent: Option<bool>,
    /// The time of the last commit replay applies (RFC 3339, UTC): the newest data recovery
    /// keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replayed_commit: Option<String>,
    /// One sentence for a person.
    pub detail: String,
}

/// Everything one scan found, sorted by path then offset whatever the thread count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// The roots as given.
    pub roots: Vec<String>,
    /// Findings, sorted by path, then offset.
    pub findings: Vec<Finding>,
    /// Paths that could not be scanned, sorted by path.
    pub errors: Vec<PathError>,
    /// Paths deliberately not scanned, sorted by path.
    pub skipped: Vec<Skipped>,
    /// Conditions the operator must know about (a running server, say), sorted by path.
    pub warnings: Vec<PathError>,
    /// Totals.
    pub summary: Summary,
    /// True when the scan was cancelled (for example by SIGINT).
    pub cancelled: bool,
    /// True when the scan stopped at its time limit (`--time-limit`); no exit bit.
    pub timed_out: bool,
    /// What the scan verified, for `--state` / `--resume` (not part of the printed report).
    pub scan_state: crate::resume::ScanState,
    /// Every file a format checked, sorted by path (not part of the printed report).
    pub files: Vec<ScannedFile>,
    /// The roots as opened: their real paths, directories resolved (not printed). A repair
    /// writes only files under them.
    pub root_paths: Vec<std::path::PathBuf>,
    /// Repair actions, planned or applied, in the order of the findings they address.
    pub repairs: Vec<Repair>,
    /// The undo log a repair wrote.
    pub undo_log: Option<std::path::PathBuf>,
    /// The quarantine directory a repair used.
    pub quarantine_dir: Option<std::path::PathBuf>,
    /// What the pieces of this scan's cycle reported, this one included (`--state`): the exit
    /// code carries the bits of earlier pieces, so a cycle is clean only if every piece was.
    pub cycle: Option<crate::resume::Cycle>,
}

impl Report {
    /// Whether `path` is one of the roots as opened, or lies under one.
    pub fn under_roots(&self, path: &std::path::Path) -> bool {
        self.root_paths.iter().any(|r| path.starts_with(r))
    }

    /// The scanned file a finding is about, found by its real path (never by the lossy
    /// display string).
    pub fn scanned_file(&self, finding: &Finding) -> Option<&ScannedFile> {
        let file = finding.file.as_deref()?;
        self.files.iter().find(|s| s.path == file)
    }

    /// Sorts every list into the report order and recomputes the finding counts.
    pub fn normalize(&mut self) {
        self.findings
            .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        coalesce_ranges(&mut self.findings);
        self.errors
            .sort_by(|a, b| (&a.path, &a.message).cmp(&(&b.path, &b.message)));
        self.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        self.files
            .sort_by(|a, b| (&a.display, &a.path).cmp(&(&b.display, &b.path)));
        self.warnings
            .sort_by(|a, b| (&a.path, &a.message).cmp(&(&b.path, &b.message)));
        self.summary.findings = self.findings.len() as u64;
        self.summary.skipped = self.skipped.len() as u64;
        self.summary.by_kind.clear();
        self.summary.damaged_units = 0;
        for f in &self.findings {
            *self.summary.by_kind.entry(f.kind).or_insert(0) += 1;
            if f.kind.is_damage() {
                self.summary.damaged_units += f.unit_count();
            }
        }
    }

    /// The e2fsck-style exit code: 4 when damage is left (found without repair, planned in a
    /// dry run, quarantined, truncated or not repairable), 1 instead when every damaged range was
    /// restored from a verified source, 8 on an operational error (an error, an `io_error`
    /// finding, a failed repair), 32 when cancelled; bits combine. A piece of a resumed scan
    /// (`--state`) also carries the damage and error bits of the earlier pieces of its cycle:
    /// a cycle is clean only if no piece found anything.
    pub fn exit_code(&self) -> i32 {
        let mut code = self.own_exit_code();
        if let Some(c) = self.cycle.as_ref().filter(|c| c.pieces > 1) {
            code |= c.exit_bits & (exit::DAMAGE_LEFT | exit::OPERATIONAL);
            if code & exit::DAMAGE_LEFT != 0 {
                code &= !exit::REPAIRED;
            }
        }
        code
    }

    /// The exit code of this piece alone ([`Report::exit_code`] without the cycle's bits).
    pub fn own_exit_code(&self) -> i32 {
        let mut code = exit::OK;
        // Pages rebuilt from a verified source: a finding (a run: every page of it) counts as
        // repaired only when each of its pages is.
        let rebuilt: std::collections::HashSet<(&str, Option<&std::path::Path>, u64)> = self
            .repairs
            .iter()
            .filter(|r| r.action.is_restore() && r.result == RepairResult::Applied)
            .map(|r| (r.path.as_str(), r.file.as_deref(), r.offset))
            .collect();
        let restored = |f: &Finding| {
            let n = f.unit_count().max(1);
            let per = f.length / n;
            (0..n).all(|k| {
                rebuilt.contains(&(f.path.as_str(), f.file.as_deref(), f.offset + k * per))
            })
        };
        let damaged: Vec<&Finding> = self
            .findings
            .iter()
            .filter(|f| f.kind.is_damage())
            .collect();
        if damaged.iter().any(|f| !restored(f)) {
            code |= exit::DAMAGE_LEFT;
        } else if !damaged.is_empty() {
            code |= exit::REPAIRED;
        }
        if !self.errors.is_empty()
            || self.findings.iter().any(|f| f.kind == FindingKind::IoError)
            || self
                .repairs
                .iter()
                .any(|r| r.result == RepairResult::Failed)
        {
            code |= exit::OPERATIONAL;
        }
        if self.cancelled {
            code |= exit::CANCELLED;
        }
        code
    }

    /// The JSON document of the output contract (schema_version 1), `--output json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(JsonDoc(self)).unwrap_or(serde_json::Value::Null)
    }

    /// Writes the JSON document (pretty-printed) to `out` as it is serialized, finding by
    /// finding: no copy of the report is built in memory, whatever its size.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &JsonDoc(self)).map_err(std::io::Error::from)
    }

    /// The `cycle` object of the summary, for a piece that continued earlier ones.
    fn cycle_json(&self) -> Option<serde_json::Value> {
        let c = self.cycle.as_ref().filter(|c| c.pieces > 1)?;
        Some(serde_json::json!({
            "pieces": c.pieces,
            "started": c.started,
            "findings": c.findings,
            "damaged_units": c.damaged_units,
            "by_kind": c.by_kind,
            "exit_bits": c.exit_bits,
        }))
    }

    /// `cycle` in the summary, for a piece that continued earlier ones (`--resume`).
    fn insert_cycle(&self, summary: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(c) = self.cycle_json() {
            summary.insert("cycle".into(), c);
        }
    }

    /// `undo_log` and `quarantine_dir`, each with its `_bytes` twin when not UTF-8.
    fn insert_repair_paths(&self, obj: &mut serde_json::Map<String, serde_json::Value>) {
        for (key, path) in [
            ("undo_log", &self.undo_log),
            ("quarantine_dir", &self.quarantine_dir),
        ] {
            if let Some(p) = path {
                obj.insert(key.into(), p.to_string_lossy().into());
                insert_path_bytes(obj, &format!("{key}_bytes"), p);
            }
        }
    }

    /// The JSON Lines of the output contract, `--output jsonl`: one object per line with a
    /// `type` of `finding`, `error`, `skipped`, then a final `summary` line carrying `exit_code`.
    pub fn to_json_lines(&self) -> Vec<serde_json::Value> {
        let mut lines: Vec<serde_json::Value> =
            self.findings.iter().map(finding_json_line).collect();
        lines.extend(self.json_lines_after_findings());
        lines
    }

    /// The JSON Lines that follow the findings: errors, skipped paths, warnings, repairs, then
    /// the summary line (for a writer that streamed the findings already).
    pub fn json_lines_after_findings(&self) -> Vec<serde_json::Value> {
        let mut lines = Vec::with_capacity(self.errors.len() + self.skipped.len() + 1);
        for e in &self.errors {
            lines.push(typed("error", e));
        }
        for s in &self.skipped {
            lines.push(typed("skipped", s));
        }
        for w in &self.warnings {
            lines.push(typed("warning", w));
        }
        for r in &self.repairs {
            let mut line = typed("repair", r);
            if let (Some(o), Some(file)) = (line.as_object_mut(), &r.file) {
                insert_path_bytes(o, "path_bytes", file);
            }
            lines.push(line);
        }
        let mut summary = typed("summary", &self.summary);
        if let Some(obj) = summary.as_object_mut() {
            self.insert_cycle(obj);
            obj.insert("schema_version".into(), SCHEMA_VERSION.into());
            obj.insert("tool".into(), tool());
            obj.insert("roots".into(), serde_json::json!(self.roots));
            self.insert_repair_paths(obj);
            obj.insert("exit_code".into(), self.exit_code().into());
        }
        lines.push(summary);
        lines
    }
}

/// Puts one file's findings in report order (by offset) and merges adjacent range findings, as
/// [`Report::normalize`] does for the whole report.
pub(crate) fn normalize_file(findings: &mut Vec<Finding>) {
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    coalesce_ranges(findings);
}

/// The JSON Lines object of one finding (`"type": "finding"` first), as `--output jsonl`
/// streams it.
pub fn finding_json_line(f: &Finding) -> serde_json::Value {
    let mut line = typed("finding", f);
    if let (Some(o), Some(file)) = (line.as_object_mut(), &f.file) {
        insert_path_bytes(o, "path_bytes", file);
    }
    line
}

/// JSON strings are Unicode: a path that is not valid UTF-8 also gets `key` with its raw bytes
/// in base64, so nothing is lost (`docs/output.md`, "Paths that are not UTF-8").
fn insert_path_bytes(
    obj: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    path: &std::path::Path,
) {
    use base64::Engine as _;
    use std::os::unix::ffi::OsStrExt;
    if path.to_str().is_none() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(path.as_os_str().as_bytes());
        obj.insert(key.into(), b64.into());
    }
}

/// Merges neighbouring findings that continue each other and say the same thing
/// ([`Finding::try_extend`]): runs of like findings on consecutive units, and adjacent byte
/// ranges. `findings` must be sorted.
fn coalesce_ranges(findings: &mut Vec<Finding>) {
    coalesce_from(findings, 0);
}

/// Merges the findings from `from` on into the run before them where they continue it: what a
/// chunk adds is folded as it is added.
pub(crate) fn coalesce_from(findings: &mut Vec<Finding>, from: usize) {
    let start = from.saturating_sub(1).min(findings.len());
    let tail = findings.split_off(start);
    for f in tail {
        let joined = findings.last_mut().is_some_and(|last| last.try_extend(&f));
        if !joined {
            findings.push(f);
        }
    }
}

/// The JSON document, serialized as it is written (`Report::write_json`).
struct JsonDoc<'a>(&'a Report);

/// A finding or repair with its `path_bytes` twin.
#[derive(Serialize)]
struct WithPath<'a, T: Serialize> {
    #[serde(flatten)]
    item: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<String>,
}

fn path_bytes(path: Option<&std::path::Path>) -> Option<String> {
    use base64::Engine as _;
    use std::os::unix::ffi::OsStrExt;
    let p = path?;
    p.to_str()
        .is_none()
        .then(|| base64::engine::general_purpose::STANDARD.encode(p.as_os_str().as_bytes()))
}

/// A sequence serialized element by element from an iterator.
struct Seq<I>(std::cell::RefCell<Option<I>>);

impl<I: Iterator<Item = T>, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        if let Some(it) = self.0.borrow_mut().take() {
            for x in it {
                seq.serialize_element(&x)?;
            }
        }
        seq.end()
    }
}

fn seq<I: Iterator>(it: I) -> Seq<I> {
    Seq(std::cell::RefCell::new(Some(it)))
}

#[derive(Serialize)]
struct SummaryOut<'a> {
    #[serde(flatten)]
    s: &'a Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    cycle: Option<serde_json::Value>,
}

impl Serialize for JsonDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema_version", &SCHEMA_VERSION)?;
        m.serialize_entry("tool", &tool())?;
        m.serialize_entry("roots", &r.roots)?;
        m.serialize_entry(
            "findings",
            &seq(r.findings.iter().map(|f| WithPath {
                item: f,
                path_bytes: path_bytes(f.file.as_deref()),
            })),
        )?;
        m.serialize_entry("errors", &r.errors)?;
        m.serialize_entry("skipped", &r.skipped)?;
        m.serialize_entry("warnings", &r.warnings)?;
        m.serialize_entry(
            "repairs",
            &seq(r.repairs.iter().map(|x| WithPath {
                item: x,
                path_bytes: path_bytes(x.file.as_deref()),
            })),
        )?;
        m.serialize_entry(
            "summary",
            &SummaryOut {
                s: &r.summary,
                cycle: r.cycle_json(),
            },
        )?;
        m.serialize_entry("exit_code", &r.exit_code())?;
        for (key, path) in [
            ("undo_log", &r.undo_log),
            ("quarantine_dir", &r.quarantine_dir),
        ] {
            if let Some(p) = path {
                m.serialize_entry(key, &p.to_string_lossy())?;
                if let Some(b) = path_bytes(Some(p)) {
                    m.serialize_entry(&format!("{key}_bytes"), &b)?;
                }
            }
        }
        m.end()
    }
}

fn tool() -> serde_json::Value {
    serde_json::json!({ "name": "dbfsck", "version": env!("CARGO_PKG_VERSION") })
}

fn typed<T: Serialize>(kind: &str, value: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = v.as_object_mut() {
        // "type" goes first so a reader can dispatch on it at a glance.
        let mut out = serde_json::Map::with_capacity(obj.len() + 1);
        out.insert("type".into(), kind.into());
        out.append(obj);
        return serde_json::Value::Object(out);
    }
    v
}

impl Report {
    /// The report as Prometheus text exposition (for node_exporter's textfile collector):
    /// bytes, units and files verified, findings by kind and format, errors, duration, exit code,
    /// completeness, and the time of this scan and of the last complete clean scan. `now` is Unix
    /// seconds; `last_clean` is the previous file's `dbfsck_last_clean_scan_timestamp_seconds`,
    /// replaced by `now` when this scan is complete and clean.
    pub fn to_prometheus(&self, now: f64, last_clean: Option<f64>) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        let s = &self.summary;
        metric(
            "dbfsck_bytes_verified",
            "Bytes verified by the last scan.",
            &one(s.bytes as f64),
        );
        metric(
            "dbfsck_units_verified",
            "Pages or records verified by the last scan.",
            &one(s.units as f64),
        );
        metric(
            "dbfsck_files_scanned",
            "Files checked by a format in the last scan.",
            &one(s.files as f64),
        );
        let mut by: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for f in &self.findings {
            *by.entry((f.format.as_str(), f.kind.as_str())).or_insert(0) += 1;
        }
        let findings: Vec<(String, f64)> = by
            .iter()
            .map(|((format, kind), n)| {
                (
                    format!("{{format=\"{}\",kind=\"{}\"}}", escape(format), kind),
                    *n as f64,
                )
            })
            .collect();
        metric(
            "dbfsck_findings",
            "Findings of the last scan by format and kind.",
            &findings,
        );
        metric(
            "dbfsck_findings_all",
            "All findings of the last scan.",
            &one(self.findings.len() as f64),
        );
        metric(
            "dbfsck_damaged_units",
            "Pages or records covered by damage findings of the last scan.",
            &one(s.damaged_units as f64),
        );
        if let Some(c) = &self.cycle {
            metric(
                "dbfsck_cycle_pieces",
                "Scans (pieces) of the current cycle of resumed scans, the last one included.",
                &one(c.pieces as f64),
            );
            metric(
                "dbfsck_cycle_findings_all",
                "All findings of the current cycle's pieces: a damage found on an earlier night stays counted until the cycle completes.",
                &one(c.findings as f64),
            );
            metric(
                "dbfsck_cycle_damaged_units",
                "Pages or records covered by damage findings of the current cycle's pieces.",
                &one(c.damaged_units as f64),
            );
            metric(
                "dbfsck_cycle_started_timestamp_seconds",
                "When the current cycle's first piece started (Unix time).",
                &one(c.started as f64),
            );
        }
        if !s.recovery.is_empty() {
            let per = |f: &dyn Fn(&RecoveryVerdict) -> f64| -> Vec<(String, f64)> {
                s.recovery
                    .iter()
                    .map(|r| {
                        (
                            format!(
                                "{{format=\"{}\",path=\"{}\"}}",
                                escape(&r.format),
                                escape(&r.path)
                            ),
                            f(r),
                        )
                    })
                    .collect()
            };
            metric(
                "dbfsck_recovery_reaches_end",
                "1 when the engine's start-up replay of this log would reach its real end; 0 when it would stop early and silently discard what follows.",
                &per(&|r| f64::from(u8::from(r.reaches_end))),
            );
            metric(
                "dbfsck_recovery_lost_records",
                "Valid log records the start-up replay would silently discard.",
                &per(&|r| r.lost_records as f64),
            );
            metric(
                "dbfsck_recovery_lost_commits",
                "Commit records the start-up replay would silently discard.",
                &per(&|r| r.lost_commits as f64),
            );
        }
        if !s.backups.is_empty() {
            let per = |f: &dyn Fn(&BackupVerdict) -> f64| -> Vec<(String, f64)> {
                s.backups
                    .iter()
                    .map(|b| {
                        (
                            format!(
                                "{{format=\"{}\",path=\"{}\"}}",
                                escape(&b.format),
                                escape(&b.path)
                            ),
                            f(b),
                        )
                    })
                    .collect()
            };
            metric(
                "dbfsck_backup_restorable",
                "1 when the backup's WAL reaches the point where it becomes consistent and nothing in it is damaged; 0 otherwise.",
                &per(&|b| f64::from(u8::from(b.restorable))),
            );
            metric(
                "dbfsck_backup_damaged_findings",
                "Damage findings on the backup's files (manifest and page checks).",
                &per(&|b| b.damaged_findings as f64),
            );
            metric(
                "dbfsck_backup_missing_wal_segments",
                "WAL segments the backup needs that are not in it.",
                &per(&|b| b.missing_wal_segments as f64),
            );
        }
        if !s.restores.is_empty() {
            let per = |f: &dyn Fn(&RestoreVerdict) -> Option<f64>| -> Vec<(String, f64)> {
                s.restores
                    .iter()
                    .filter_map(|r| {
                        let v = f(r)?;
                        Some((
                            format!(
                                "{{format=\"{}\",path=\"{}\",archive=\"{}\"}}",
                                escape(&r.format),
                                escape(&r.backup),
                                escape(&r.archive)
                            ),
                            v,
                        ))
                    })
                    .collect()
            };
            metric(
                "dbfsck_backup_restore_consistent",
                "1 when a restore of the backup from the WAL archive reaches the point where it becomes consistent (the server can start from it); 0 otherwise.",
                &per(&|r| Some(f64::from(u8::from(r.consistent)))),
            );
            metric(
                "dbfsck_backup_restore_horizon_seconds",
                "The restore horizon: the time (Unix seconds) of the last commit a restore of the backup from the WAL archive applies. Absent when it applies none.",
                &per(&|r| r.reaches_unix),
            );
            metric(
                "dbfsck_backup_restore_reaches_archive_end",
                "1 when a restore of the backup replays to the end of the WAL archive; 0 when a missing or damaged segment stops it first.",
                &per(&|r| Some(f64::from(u8::from(r.reaches_archive_end)))),
            );
        }
        let error_files: std::collections::BTreeSet<&str> =
            self.errors.iter().map(|e| e.path.as_str()).collect();
        metric(
            "dbfsck_files_with_errors",
            "Paths the last scan could not open or read.",
            &one(error_files.len() as f64),
        );
        metric(
            "dbfsck_scan_duration_seconds",
            "Wall time of the last scan.",
            &one(s.elapsed_s),
        );
        metric(
            "dbfsck_exit_code",
            "Exit code of the last scan (e2fsck bits), with the damage and error bits of the earlier pieces of its cycle.",
            &one(f64::from(self.exit_code())),
        );
        metric(
            "dbfsck_scan_complete",
            "1 when the last scan reached the end, 0 when it was stopped.",
            &one(if s.complete { 1.0 } else { 0.0 }),
        );
        metric(
            "dbfsck_last_scan_timestamp_seconds",
            "When the last scan ended (Unix time).",
            &one(now),
        );
        // Clean only when the whole cycle is: complete, and no piece of it found anything.
        let clean = s.complete && self.exit_code() == exit::OK;
        if let Some(t) = if clean { Some(now) } else { last_clean } {
            metric(
                "dbfsck_last_clean_scan_timestamp_seconds",
                "When the last complete scan that found nothing wrong ended (Unix time).",
                &one(t),
            );
        }
        out
    }
}

/// Escapes a Prometheus label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of `dbfsck_last_clean_scan_timestamp_seconds` in an earlier metrics file, if any.
pub fn previous_clean_timestamp(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("dbfsck_last_clean_scan_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
}
