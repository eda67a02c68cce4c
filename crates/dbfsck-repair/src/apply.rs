//! Applying a plan (`docs/format.md` §10.2): lock, quarantine copies, sealed undo log, writes,
//! fsync, re-verify. The order is what makes a repair unable to make things worse: nothing is
//! written before the original bytes are durable in the undo log (and, for a quarantine, in the
//! quarantine); after a failed write or fsync nothing more is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dbfsck_core::innodb::{self, InnodbFormat};
use dbfsck_core::native::{encode_page, verify_page, FileParams, PageMeta, PageType, PageVerdict};
use dbfsck_core::{FileId, PathError, Repair, RepairAction, RepairResult, Report};
use sha2::{Digest, Sha256};

use crate::plan::{plan, read_source, Action, PageSpec, Plan};
use crate::storage::{Storage, StorageFile};
use crate::undo::{UndoEntry, UndoWriter, Written};

/// How to repair.
#[derive(Debug, Clone)]
pub struct RepairOptions {
    /// Plan only: report every action as `planned` and change nothing. Default true: repair
    /// runs under an explicit mode whose default only reports.
    pub dry_run: bool,
    /// The undo log to create (it must not exist).
    pub undo_log: PathBuf,
    /// The quarantine directory (created 0700 if missing).
    pub quarantine_dir: PathBuf,
    /// Write even when another process holds a file's lock (the datastore appears to run).
    pub force: bool,
    /// When set (by SIGINT, say), the repair stops at the next safe point: never inside a
    /// range, always after its undo log is sealed; what was not attempted is `cancelled`.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl RepairOptions {
    /// Options that keep dbfsck's files in `DIR/.dbfsck/`: the undo log
    /// `undo-<UTC time>-<pid>.log` and the quarantine `quarantine/`. Dry run.
    pub fn in_dir(dir: &Path) -> Self {
        Self::in_base(dir.join(dbfsck_core::DBFSCK_DIR))
    }

    /// The defaults for a scan whose first root is `root` (a directory, or a file's folder):
    /// `ROOT/.dbfsck/`, except for an InnoDB data directory (`root` is one, or a folder in
    /// one), which takes every folder in it for a database: there `PARENT/.dbfsck/NAME/`,
    /// beside the data directory. Dry run.
    pub fn for_root(root: &Path) -> Self {
        Self::in_base(default_dir(root))
    }

    fn in_base(base: PathBuf) -> Self {
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], "");
        RepairOptions {
            dry_run: true,
            undo_log: base.join(format!("undo-{stamp}-{}.log", std::process::id())),
            quarantine_dir: base.join("quarantine"),
            force: false,
            cancel: None,
        }
    }
}

/// Plans and (unless a dry run) applies the repair of `report`'s findings through `storage`,
/// recording every action in `report.repairs` and any failure in `report.errors`. Returns the
/// plan, whose `left` says why each remaining finding was not acted on.
pub fn repair<S: Storage>(report: &mut Report, storage: &S, options: &RepairOptions) -> Plan {
    resolve_paths(report, storage);
    // Lock first, so the plan is made from bytes no one else is changing.
    let mut locked: BTreeMap<PathBuf, S::File> = BTreeMap::new();
    // The InnoDB data directories scanned (where an ibdata1 was), for tables outside theirs.
    let known_dirs: Vec<PathBuf> = report
        .files
        .iter()
        .filter(|f| {
            f.format == InnodbFormat::NAME && f.path.file_name().is_some_and(|n| n == "ibdata1")
        })
        .filter_map(|f| f.path.parent().map(Path::to_path_buf))
        .collect();
    if !options.dry_run {
        let mut targets: Vec<(PathBuf, Option<FileId>)> = Vec::new();
        for s in report
            .findings
            .iter()
            .filter(|f| {
                f.kind.is_damage()
                    || f.kind == dbfsck_core::FindingKind::TornTail && crate::lsm::handles(f)
                    || f.kind == dbfsck_core::FindingKind::SupersededPage
            })
            .filter_map(|f| report.scanned_file(f))
        {
            targets.push((s.path.clone(), Some(s.id)));
            // RocksDB/LevelDB: the MANIFEST a salvage appends to, and the engine's LOCK.
            for p in crate::lsm::extra_locks(&s.path, s.format) {
                let id = report.files.iter().find(|f| f.path == p).map(|f| f.id);
                targets.push((p, id));
            }
            // InnoDB: a running server always holds its lock on ibdata1 (it opens table files
            // lazily), and the doublewrite images are read from it.
            if let Some(sys) = innodb_system_file(&s.path, s.format, &known_dirs) {
                let id = report.files.iter().find(|f| f.path == sys).map(|f| f.id);
                targets.push((sys, id));
            }
        }
        for (path, scanned) in targets {
            if locked.contains_key(&path) {
                continue;
            }
            let file = match storage.open_rw(&path) {
                Ok(file) => file,
                Err(e) => {
                    report.errors.push(PathError {
                        path: path.display().to_string(),
                        message: format!("cannot open for repair: {e}"),
                    });
                    continue;
                }
            };
            // The very file the scan judged: one replaced since (renamed over, restored from
            // a backup) is never written.
            match (scanned, file.id()) {
                (Some(want), Ok(Some(got))) if want != got => {
                    report.errors.push(PathError {
                        path: path.display().to_string(),
                        message: "the file was replaced since the scan (another device or inode): not repaired; scan again".into(),
                    });
                    continue;
                }
                (_, Err(e)) => {
                    report.errors.push(PathError {
                        path: path.display().to_string(),
                        message: format!("cannot check the file's identity: {e}"),
                    });
                    continue;
                }
                _ => {}
            }
            {
                match file.try_lock() {
                    Ok(true) => {
                        locked.insert(path, file);
                    }
                    Ok(false) if options.force => {
                        report.warnings.push(PathError {
                            path: path.display().to_string(),
                            message: "locked by another process; repairing anyway (--force)".into(),
                        });
                        locked.insert(path, file);
                    }
                    Ok(false) => {
                        report.errors.push(PathError {
                            path: path.display().to_string(),
                            message: "locked by another process: the datastore appears to be running; stop it before repairing, or pass --force".into(),
                        });
                    }
                    Err(e) => report.errors.push(PathError {
                        path: path.display().to_string(),
                        message: format!("cannot lock for repair: {e}"),
                    }),
                }
            }
        }
    }
    let mut plan = plan(report, storage);
    for (path, message) in &plan.errors {
        report.errors.push(PathError {
            path: path.clone(),
            message: message.clone(),
        });
    }
    // A plan that would replace most of a file with markers says more about how the file was
    // judged (a foreign header, a wrong identity) than about its pages: refused unless forced.
    let sweeping = sweeping_files(&plan, storage);
    plan.sweeping = sweeping.iter().map(|s| s.0.clone()).collect();
    for (path, cut, pages) in &sweeping {
        let message = format!(
            "the plan would replace {cut} of this file's {pages} pages with quarantine markers; a repair that replaces most of a file is refused (nothing is written) unless --force: check the file's identity first (`dbfsck inspect`)"
        );
        let entry = PathError {
            path: path.display().to_string(),
            message,
        };
        if options.force || options.dry_run {
            report.warnings.push(entry);
        } else {
            report.errors.push(entry);
        }
    }
    if !options.dry_run && !options.force && !sweeping.is_empty() {
        report.repairs = all_failed(
            &plan,
            "the plan would replace most of a file (see the errors); nothing was changed",
        );
        return plan;
    }
    if options.dry_run || plan.actions.is_empty() {
        report.repairs = plan
            .actions
            .iter()
            .map(|a| repair_entry(a, RepairResult::Planned, a.detail.clone()))
            .collect();
        if plan.actions.iter().any(|a| !a.action.is_restore()) {
            report.quarantine_dir = Some(options.quarantine_dir.clone());
        }
        return plan;
    }
    let refused: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| {
            !locked.contains_key(&a.path)
                || matches!(a.spec, PageSpec::Lsm(_))
                    && crate::lsm::lock_of(&a.path).is_some_and(|l| !locked.contains_key(&l))
                || matches!(a.spec, PageSpec::Innodb(_))
                    && innodb_system_file(&a.path, InnodbFormat::NAME, &known_dirs)
                        .is_some_and(|sys| !locked.contains_key(&sys))
        })
        .collect();
    if !refused.is_empty() {
        report.repairs = all_failed(
            &plan,
            "a file to repair could not be locked, so nothing was changed",
        );
        return plan;
    }
    let mut run = Run {
        storage,
        options,
        files: locked,
        report,
    };
    run.apply(&plan);
    plan
}

/// The files of which the plan would replace more than half the pages with quarantine markers
/// (or cut off): (path, pages replaced, pages in the file).
fn sweeping_files<S: Storage>(plan: &Plan, storage: &S) -> Vec<(PathBuf, u64, u64)> {
    let mut per_file: BTreeMap<&Path, (u64, usize)> = BTreeMap::new();
    for a in &plan.actions {
        let replaces = matches!(a.spec, PageSpec::Native(_))
            && matches!(
                a.action,
                RepairAction::Quarantine | RepairAction::TruncateTail
            );
        if replaces {
            let e = per_file.entry(&a.path).or_insert((0, a.spec.page_size()));
            e.0 += a.units.unwrap_or(1);
        }
    }
    per_file
        .into_iter()
        .filter_map(|(path, (cut, ps))| {
            let len = storage.open_read(path).and_then(|f| f.len()).ok()?;
            let pages = len.div_ceil(ps as u64);
            (2 * cut > pages).then(|| (path.to_path_buf(), cut, pages))
        })
        .collect()
}

/// Resolves every scanned file's directory once, now (`Storage::resolve`), so the repair opens
/// each file by its real path without following any symbolic link afterwards; the findings
/// follow their files.
fn resolve_paths<S: Storage>(report: &mut Report, storage: &S) {
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    for f in &mut report.files {
        let real = storage.resolve(&f.path);
        if real != f.path {
            moved.push((std::mem::replace(&mut f.path, real.clone()), real));
        }
    }
    if moved.is_empty() {
        return;
    }
    let moved: std::collections::HashMap<PathBuf, PathBuf> = moved.into_iter().collect();
    for finding in &mut report.findings {
        if let Some(real) = finding.file.as_ref().and_then(|p| moved.get(p)) {
            finding.file = Some(real.clone());
        }
    }
}

struct Run<'a, S: Storage> {
    storage: &'a S,
    options: &'a RepairOptions,
    files: BTreeMap<PathBuf, S::File>,
    report: &'a mut Report,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Written,
    Failed,
    Cancelled,
}

impl<S: Storage> Run<'_, S> {
    fn apply(&mut self, plan: &Plan) {
        let fail_all = |report: &mut Report, why: String| {
            report.repairs = all_failed(plan, &why);
            report.errors.push(PathError {
                path: self.options.undo_log.display().to_string(),
                message: format!("nothing was repaired: {why}"),
            });
        };
        // The bytes each action replaces and the bytes it writes, read under the lock: the
        // undo log records both (what to put back, and what to find there before doing so).
        let mut originals = Vec::with_capacity(plan.actions.len());
        let mut replacements = Vec::with_capacity(plan.actions.len());
        for a in &plan.actions {
            match self.original(a).and_then(|o| Ok((o, self.replacement(a)?))) {
                Ok((o, r)) => {
                    originals.push(o);
                    replacements.push(r);
                }
                Err(e) => {
                    fail_all(self.report, format!("reading {} failed: {e}", a.display));
                    return;
                }
            }
        }
        // The undo log's directory first: a place someone else controls refuses the repair
        // before anything is copied or written.
        if let Err(e) = self
            .storage
            .create_dir_private(undo_dir(&self.options.undo_log))
        {
            fail_all(
                self.report,
                format!("the undo log could not be written: {e}"),
            );
            return;
        }
        // 1. The undo log, sealed and synced before the first write. First, so that a repair
        // that cannot keep its undo log leaves no trace in the quarantine either.
        if let Err(e) = self.write_undo_log(plan, &originals, &replacements) {
            fail_all(
                self.report,
                format!("the undo log could not be written: {e}"),
            );
            return;
        }
        let undo = crate::shell_word(self.options.undo_log.as_os_str());
        self.report.undo_log = Some(self.options.undo_log.clone());
        // 2. Quarantine copies, durable before anything changes.
        if plan.actions.iter().any(|a| !a.action.is_restore()) {
            self.report.quarantine_dir = Some(self.options.quarantine_dir.clone());
            if let Err(e) = self.quarantine(plan, &originals) {
                fail_all(
                    self.report,
                    format!("the quarantine could not be written: {e}; the undo log {undo} records nothing that was changed"),
                );
                return;
            }
        }

        // 3. Write; stop at the first failure.
        let mut outcomes: Vec<(State, String)> = Vec::with_capacity(plan.actions.len());
        let mut poisoned = false;
        let cancelled = || {
            self.options
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        };
        for (a, replacement) in plan.actions.iter().zip(&replacements) {
            outcomes.push(if poisoned {
                (
                    State::Failed,
                    "not attempted: an earlier write failed, and dbfsck writes nothing after a failure".into(),
                )
            } else if cancelled() {
                (
                    State::Cancelled,
                    "not attempted: the repair was stopped (SIGINT or SIGTERM) before this range; the ranges before it were written, synced and verified".into(),
                )
            } else {
                match self.write(a, replacement) {
                    Ok(true) => (State::Written, a.detail.clone()),
                    Ok(false) => (
                        State::Failed,
                        "not written: the journal image no longer verifies".into(),
                    ),
                    Err(e) => {
                        poisoned = true;
                        (
                            State::Failed,
                            format!("the write failed ({e}); the page's state is unknown"),
                        )
                    }
                }
            });
        }
        // 4. fsync every file written to (never retried).
        let mut written_files: Vec<&PathBuf> = Vec::new();
        for (a, (s, _)) in plan.actions.iter().zip(&outcomes) {
            if *s != State::Cancelled && !written_files.contains(&&a.path) {
                written_files.push(&a.path);
            }
        }
        let mut sync_failed: Vec<PathBuf> = Vec::new();
        for path in written_files {
            let r = match self.files.get_mut(path) {
                Some(f) => f.sync(),
                None => Ok(()),
            };
            if let Err(e) = r {
                sync_failed.push(path.clone());
                for (a, o) in plan.actions.iter().zip(outcomes.iter_mut()) {
                    if &a.path == path && o.0 == State::Written {
                        *o = (
                            State::Failed,
                            format!("fsync failed ({e}); the page's state is unknown"),
                        );
                    }
                }
            }
        }
        // 5. Re-verify every changed range.
        for (a, o) in plan.actions.iter().zip(outcomes.iter_mut()) {
            if o.0 != State::Written {
                continue;
            }
            match self.verify_after(a) {
                Ok(None) => {}
                Ok(Some(problem)) => *o = (State::Failed, format!("regression: {problem}")),
                Err(e) => {
                    *o = (
                        State::Failed,
                        format!("re-reading after the write failed: {e}"),
                    )
                }
            }
        }
        self.report.repairs = plan
            .actions
            .iter()
            .zip(&outcomes)
            .map(|(a, (s, d))| {
                let result = match s {
                    State::Written => RepairResult::Applied,
                    State::Cancelled => RepairResult::Cancelled,
                    _ => RepairResult::Failed,
                };
                repair_entry(a, result, d.clone())
            })
            .collect();
        if outcomes.iter().any(|(s, _)| *s == State::Cancelled) {
            self.report.cancelled = true;
        }
        // Say what state each file with a failure is in.
        let mut per_file: BTreeMap<&PathBuf, (String, usize, usize)> = BTreeMap::new();
        for (a, (s, _)) in plan.actions.iter().zip(&outcomes) {
            let e = per_file.entry(&a.path).or_insert((a.display.clone(), 0, 0));
            e.1 += 1;
            if *s == State::Failed {
                e.2 += 1;
            }
        }
        for (path, (display, total, failed)) in per_file {
            if failed == 0 {
                continue;
            }
            let state = if sync_failed.contains(path) || poisoned {
                format!(
                    "repair stopped after a failed write or fsync; {failed} of {total} changes to this file failed and its state is unknown: run `dbfsck undo {undo}` to restore it exactly as it was, or run the repair again"
                )
            } else {
                format!(
                    "{failed} of {total} changes to this file failed; the others were applied and verified; `dbfsck undo {undo}` restores the file exactly as it was"
                )
            };
            self.report.errors.push(PathError {
                path: display,
                message: state,
            });
        }
    }

    /// The file's length and the bytes in the action's range (shorter at the end of the file).
    fn original(&self, a: &Action) -> std::io::Result<(u64, Vec<u8>)> {
        let f = self.file(&a.path)?;
        let len = f.len()?;
        // A run of zero pages is checked page by page and kept nowhere: its bytes are zeros.
        if a.zero_run {
            let ps = a.spec.page_size();
            let mut page = vec![0u8; ps];
            let mut at = a.offset;
            while at < a.offset + a.length {
                let n = f.read_full_at(&mut page, at)?;
                if n < ps || page.iter().any(|&b| b != 0) {
                    return Err(std::io::Error::other(format!(
                        "page {} of {} is no longer all zero; nothing is changed",
                        at / ps as u64,
                        a.display
                    )));
                }
                at += ps as u64;
            }
            return Ok((len, Vec::new()));
        }
        // A cut never grows a file, nor cuts more than the torn piece the scan found.
        if a.action == RepairAction::TruncateTail && (len <= a.offset || len > a.offset + a.length)
        {
            return Err(std::io::Error::other(format!(
                "{} is {} now, which is not the torn piece the scan found; nothing is cut",
                a.display,
                dbfsck_core::bytes(len)
            )));
        }
        let want = a.length.min(len.saturating_sub(a.offset)) as usize;
        let mut b = vec![0u8; want];
        let n = f.read_full_at(&mut b, a.offset)?;
        b.truncate(n);
        Ok((len, b))
    }

    fn file(&self, path: &Path) -> std::io::Result<&S::File> {
        self.files
            .get(path)
            .ok_or_else(|| std::io::Error::other("file not locked for repair"))
    }

    fn quarantine(&self, plan: &Plan, originals: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
        let dir = &self.options.quarantine_dir;
        self.storage.create_dir_private(dir)?;
        let marker = dir.join(dbfsck_core::QUARANTINE_MARKER);
        if !self.storage.exists(&marker) {
            let mut m = self.storage.create_new(&marker)?;
            m.write_all_at(
                b"dbfsck quarantine: damaged bytes cut out by a repair; scans skip this folder\n",
                0,
            )?;
            m.sync()?;
        }
        let mut lines = String::new();
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        for (a, (_, bytes)) in plan.actions.iter().zip(originals) {
            // A MANIFEST edit only appends: there is nothing of it to keep; a block a salvage
            // drops is in its table's whole copy.
            if a.action.is_restore()
                || matches!(a.spec, PageSpec::Lsm(s)
                    if bytes.is_empty() || s.role == crate::lsm::LsmRole::Covered)
            {
                continue;
            }
            if a.zero_run {
                // Zeros: nothing to keep, no copy; the line says what was cut out.
                let mut h = Sha256::new();
                let zeros = vec![0u8; 1 << 16];
                let mut left = a.length;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    h.update(zeros.get(..n).unwrap_or_default());
                    left -= n as u64;
                }
                let sha: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                let finding = self.report.findings.get(a.finding);
                let entry = serde_json::json!({
                    "path": absolute(&a.path).to_string_lossy(),
                    "offset": a.offset,
                    "length": a.length,
                    "page": a.unit,
                    "pages": a.units.unwrap_or(1),
                    "kind": finding.map(|f| f.kind.as_str()),
                    "action": a.action.as_str(),
                    "sha256": sha,
                    "zero": true,
                    "time": now,
                });
                lines.push_str(&entry.to_string());
                lines.push('\n');
                continue;
            }
            let sha: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let copy = format!("{sha}.bin");
            let copy_path = dir.join(&copy);
            // Content-addressed: the same bytes quarantined twice are one copy — once it holds
            // them. A copy a crash left short (or anything else under that name) is replaced.
            if !self.holds(&copy_path, &sha, bytes.len())? {
                // Written aside, then renamed: a crash leaves no short copy under the name. A
                // leftover from such a crash is reused.
                let tmp = dir.join(format!(".{sha}.tmp"));
                let mut f = match self.storage.create_new(&tmp) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let mut f = self.storage.open_rw(&tmp)?;
                        f.set_len(0)?;
                        f
                    }
                    r => r?,
                };
                f.write_all_at(bytes, 0)?;
                f.sync()?;
                drop(f);
                self.storage.rename(&tmp, &copy_path)?;
            }
            let finding = self.report.findings.get(a.finding);
            let mut entry = serde_json::json!({
                "path": absolute(&a.path).to_string_lossy(),
                "offset": a.offset,
                "length": bytes.len(),
                "page": a.unit,
                "kind": finding.map(|f| f.kind.as_str()),
                "action": a.action.as_str(),
                "sha256": sha,
                "copy": copy,
                "time": now,
            });
            if let (Some(obj), Some(f)) = (entry.as_object_mut(), finding) {
                if let Some(e) = &f.expected {
                    obj.insert("expected".into(), e.as_str().into());
                }
                if let Some(e) = &f.actual {
                    obj.insert("actual".into(), e.as_str().into());
                }
            }
            lines.push_str(&entry.to_string());
            lines.push('\n');
        }
        let manifest = dir.join(dbfsck_core::QUARANTINE_MANIFEST);
        let mut m = match self.storage.open_rw(&manifest) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.storage.create_new(&manifest)?
            }
            Err(e) => return Err(e),
        };
        let end = m.len()?;
        m.write_all_at(lines.as_bytes(), end)?;
        m.sync()?;
        self.storage.sync_dir(dir)
    }

    /// What the action writes: a source image that verifies now (`Ok(None)` when it no longer
    /// does), a quarantine marker, or nothing (a truncation, or a copy-only quarantine).
    fn replacement(&self, a: &Action) -> std::io::Result<Option<Vec<u8>>> {
        if changes_nothing(a) {
            return Ok(None);
        }
        if let (RepairAction::Salvage, PageSpec::Lsm(spec)) = (a.action, a.spec) {
            return crate::lsm::replacement(a, &spec, self.file(&a.path)?);
        }
        match a.action {
            RepairAction::RestoreFromJournal
            | RepairAction::RestoreFromDoublewrite
            | RepairAction::RestoreFromWal => {
                let Some(src) = &a.source else {
                    return Ok(None);
                };
                // Only bytes from a source that verifies as this very page are written.
                Ok(read_source(self.storage, src, &a.spec)?
                    .filter(|img| a.spec.verifies(img, a.unit.unwrap_or(0), src.lsn())))
            }
            // A run's markers are made page by page as they are written.
            RepairAction::Quarantine if a.zero_run => Ok(None),
            RepairAction::Quarantine => Ok(Some(marker(a)?)),
            _ => Ok(None),
        }
    }

    /// Whether the quarantine copy at `path` exists and holds exactly `len` bytes whose
    /// SHA-256 is `sha`.
    fn holds(&self, path: &Path, sha: &str, len: usize) -> std::io::Result<bool> {
        if !self.storage.exists(path) {
            return Ok(false);
        }
        let Ok(f) = self.storage.open_read(path) else {
            return Ok(false);
        };
        if f.len()? != len as u64 {
            return Ok(false);
        }
        let mut b = vec![0u8; len];
        let n = f.read_full_at(&mut b, 0)?;
        let got: String = Sha256::digest(b.get(..n).unwrap_or_default())
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        Ok(n == len && got == sha)
    }

    fn write_undo_log(
        &self,
        plan: &Plan,
        originals: &[(u64, Vec<u8>)],
        replacements: &[Option<Vec<u8>>],
    ) -> Result<(), crate::undo::UndoError> {
        let log = &self.options.undo_log;
        let io = |source| crate::undo::UndoError::Io {
            path: log.clone(),
            source,
        };
        let mut w = UndoWriter::create(self.storage, log)?;
        let mut named: Vec<&Path> = Vec::new();
        for ((a, (len, bytes)), new) in plan.actions.iter().zip(originals).zip(replacements) {
            if changes_nothing(a) || (a.action.is_restore() && new.is_none()) {
                continue;
            }
            let abs = absolute(&a.path);
            // Each file once, as it is now: undo writes only into this very file.
            if !named.contains(&a.path.as_path()) {
                named.push(&a.path);
                if let Some(id) = self.file(&a.path).and_then(|f| f.id()).map_err(io)? {
                    w.append(&UndoEntry::File {
                        path: abs.clone(),
                        id,
                    })?;
                }
            }
            if a.zero_run {
                if let PageSpec::Native(params) = a.spec {
                    w.append(&UndoEntry::ZeroPages {
                        path: abs,
                        offset: a.offset,
                        pages: a.units.unwrap_or(1),
                        params,
                    })?;
                }
                continue;
            }
            let written = new.as_deref().unwrap_or_default();
            // Only an action that changes the file's length needs it put back.
            if a.offset + written.len() as u64 > *len || a.action == RepairAction::TruncateTail {
                let after = if a.action == RepairAction::TruncateTail {
                    a.offset
                } else {
                    (*len).max(a.offset + written.len() as u64)
                };
                w.append(&UndoEntry::Length {
                    path: abs.clone(),
                    len: *len,
                    after: Some(after),
                })?;
            }
            // In pieces the undo reader accepts (a salvaged table's original is megabytes): each
            // piece its share of the original and of what is written over it.
            let piece = crate::undo::MAX_ENTRY_DATA as usize;
            let span = bytes.len().max(written.len()).max(1);
            for start in (0..span).step_by(piece) {
                let part = |b: &[u8]| {
                    b.get(start.min(b.len())..(start + piece).min(b.len()))
                        .unwrap_or_default()
                        .to_vec()
                };
                w.append(&UndoEntry::Bytes {
                    path: abs.clone(),
                    offset: a.offset + start as u64,
                    data: part(bytes),
                    written: Some(Written::of(&part(written))),
                })?;
            }
        }
        w.seal()?;
        self.storage.sync_dir(undo_dir(log)).map_err(io)
    }

    /// Performs one action with the bytes prepared for it; `Ok(false)` when a restore's source
    /// did not verify (nothing written).
    fn write(&mut self, a: &Action, replacement: &Option<Vec<u8>>) -> std::io::Result<bool> {
        if changes_nothing(a) {
            return Ok(true);
        }
        if a.action.is_restore() && replacement.is_none() {
            return Ok(false);
        }
        let f = self
            .files
            .get_mut(&a.path)
            .ok_or_else(|| std::io::Error::other("file not locked for repair"))?;
        if a.zero_run {
            let PageSpec::Native(params) = a.spec else {
                return Ok(false);
            };
            let ps = params.page_size as u64;
            for k in 0..a.units.unwrap_or(1) {
                let at = a.offset + k * ps;
                f.write_all_at(&quarantine_marker(&params, at / ps)?, at)?;
            }
            return Ok(true);
        }
        match replacement {
            Some(b) => {
                f.write_all_at(b, a.offset)?;
                // A salvaged table is shorter than the original: what is left of it goes.
                if let PageSpec::Lsm(s) = a.spec {
                    if s.role == crate::lsm::LsmRole::Table {
                        f.set_len(b.len() as u64)?;
                    }
                }
            }
            None if a.action == RepairAction::Salvage => return Ok(false),
            None => f.set_len(a.offset)?,
        }
        Ok(true)
    }

    /// `None` when the range now holds what the action meant; else what is wrong.
    fn verify_after(&self, a: &Action) -> std::io::Result<Option<String>> {
        // Through the locked handle that was written, not the path again.
        let f = self.file(&a.path)?;
        if let PageSpec::Lsm(spec) = a.spec {
            return crate::lsm::verify_after(a, &spec, f);
        }
        if a.action == RepairAction::TruncateTail {
            let len = f.len()?;
            return Ok((len != a.offset).then(|| {
                format!(
                    "the file is {} after cutting it to {}",
                    dbfsck_core::bytes(len),
                    a.offset
                )
            }));
        }
        if changes_nothing(a) {
            return Ok(None);
        }
        if let (true, PageSpec::Native(params)) = (a.zero_run, a.spec) {
            let ps = params.page_size as u64;
            let mut page = vec![0u8; params.page_size];
            for k in 0..a.units.unwrap_or(1) {
                let at = a.offset + k * ps;
                let n = f.read_full_at(&mut page, at)?;
                let ok = n == page.len()
                    && matches!(
                        verify_page(&page, &params, at / ps),
                        PageVerdict::Quarantined { .. }
                    );
                if !ok {
                    return Ok(Some(format!(
                        "page {} does not verify as a quarantine marker after the write",
                        at / ps
                    )));
                }
            }
            return Ok(None);
        }
        let mut page = vec![0u8; a.spec.page_size()];
        let n = f.read_full_at(&mut page, a.offset)?;
        if n < page.len() {
            return Ok(Some("the page is short after the write".into()));
        }
        let unit = a.unit.unwrap_or(0);
        if a.action.is_restore() {
            return Ok(match &a.source {
                Some(s) if a.spec.verifies(&page, unit, s.lsn()) => None,
                _ => Some("the page does not verify after the write".into()),
            });
        }
        Ok(match (a.action, a.spec) {
            (RepairAction::Quarantine, PageSpec::Native(p)) => match verify_page(&page, &p, unit) {
                PageVerdict::Quarantined { .. } => None,
                v => Some(format!("the page does not verify after the write ({v:?})")),
            },
            _ => Some("the page does not verify after the write".into()),
        })
    }
}

/// The directory an undo log goes in.
fn undo_dir(log: &Path) -> &Path {
    log.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether an action copies to the quarantine only: a format with no marker page (InnoDB)
/// keeps the damaged page as it is, so the server goes on reporting it.
fn changes_nothing(a: &Action) -> bool {
    a.action == RepairAction::Quarantine && !matches!(a.spec, PageSpec::Native(_))
        || matches!(a.spec, PageSpec::Lsm(s) if s.role == crate::lsm::LsmRole::Covered)
}

/// The quarantine marker for the action's page: built from the file's parameters and the page
/// number alone (never from the damaged bytes), with LSN 0 so that it never raises the LSN
/// evidence a later repair weighs, and identical however often it is written.
fn marker(a: &Action) -> std::io::Result<Vec<u8>> {
    let PageSpec::Native(params) = a.spec else {
        return Err(std::io::Error::other(
            "no quarantine marker exists in this format",
        ));
    };
    quarantine_marker(&params, a.unit.unwrap_or(0))
}

/// The quarantine marker of page `page_no` of a native file with `params` (`docs/format.md`
/// §10.2): what a repair writes over a page it quarantines, and what undo expects there.
pub(crate) fn quarantine_marker(params: &FileParams, page_no: u64) -> std::io::Result<Vec<u8>> {
    let mut page = vec![0u8; params.page_size];
    let meta = PageMeta {
        page_type: PageType::QUARANTINED,
        flags: 0,
        file_id: params.file_id,
        page_no,
        lsn: 0,
    };
    encode_page(&mut page, &meta, &[], params.algo).map_err(std::io::Error::other)?;
    Ok(page)
}

/// Where dbfsck keeps its undo logs and quarantine by default for a scan of `root`
/// ([`RepairOptions::for_root`]).
pub fn default_dir(root: &Path) -> PathBuf {
    let datadir = if innodb::is_data_dir(root) {
        Some(root.to_path_buf())
    } else {
        root.parent()
            .filter(|p| {
                innodb::is_data_dir(if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                })
            })
            .map(Path::to_path_buf)
    };
    let beside = datadir
        .and_then(|d| {
            std::fs::canonicalize(if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &d
            })
            .ok()
        })
        .and_then(|d| {
            Some(
                d.parent()?
                    .join(dbfsck_core::DBFSCK_DIR)
                    .join(d.file_name()?),
            )
        });
    beside.unwrap_or_else(|| root.join(dbfsck_core::DBFSCK_DIR))
}

/// The system tablespace file (`ibdata1`) of an InnoDB file's data directory, when it has one
/// (`known`: the data directories scanned, for tables outside theirs).
fn innodb_system_file(path: &Path, format: &str, known: &[PathBuf]) -> Option<PathBuf> {
    if format != InnodbFormat::NAME {
        return None;
    }
    innodb::owning_data_dir(path, known)
        .map(|d| d.join("ibdata1"))
        .filter(|p| p.as_path() != path)
}

/// Every action of the plan as `failed`, "not applied: `why`".
fn all_failed(plan: &Plan, why: &str) -> Vec<Repair> {
    plan.actions
        .iter()
        .map(|a| repair_entry(a, RepairResult::Failed, format!("not applied: {why}")))
        .collect()
}

fn repair_entry(a: &Action, result: RepairResult, detail: String) -> Repair {
    Repair {
        path: a.display.clone(),
        offset: a.offset,
        length: a.length,
        unit: a.unit,
        units: a.units,
        action: a.action,
        source: a.source_text(),
        result,
        detail,
        file: Some(a.path.clone()),
    }
}

/// The absolute, plain form of a path, for the undo log (which works from any directory and
/// accepts no `.` or `..`): the parent resolved by the file system when it can be, else lexically.
fn absolute(p: &Path) -> PathBuf {
    let resolved = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(std::env::current_dir, std::fs::canonicalize)
        .ok()
        .zip(p.file_name())
        .map(|(dir, name)| dir.join(name));
    if let Some(r) = resolved {
        return r;
    }
    let mut out = PathBuf::new();
    for c in std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .components()
    {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}
