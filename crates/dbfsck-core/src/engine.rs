//! The scan engine: walk the roots, recognise each file, cut the work into page-aligned chunks,
//! verify them on a rayon pool, and merge the findings in a deterministic order.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use crate::access::{
    open_for_scan, pread_fully, Chooser, HeadSource, PreadSource, ReadPath, ReadStrategy, Reader,
};
use crate::finding::{Finding, FindingKind};
use crate::format::{Chunk, Format, Layout, Opened, Probe, UnitCheck};
use crate::report::{FileId, PathError, Report, ScannedFile, Skipped};
use crate::resume::{FileState, ScanState, STATE_VERSION};

/// How many descriptors a scan may keep open for the files it still has to read (each is read
/// through the descriptor it was judged by): the soft limit on open files, raised to the hard
/// one, less room for everything else. Files past the budget are reopened, and their identity
/// checked.
fn descriptor_budget() -> isize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let soft = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    // Never more than a million at once, and a quarter of the limit left for the rest.
    let soft = isize::try_from(soft.min(1 << 20)).unwrap_or(1 << 20);
    (soft - soft / 4 - 64).max(0)
}
use crate::throttle::RateLimiter;

/// The folder dbfsck keeps its undo logs and quarantine in, at a scan root; walks skip it.
pub const DBFSCK_DIR: &str = ".dbfsck";
/// A file repair puts in every quarantine directory, wherever it is; walks skip a directory
/// that holds it and nothing but quarantine files ([`is_quarantine_dir`]), so quarantined bytes
/// are never scanned as data.
pub const QUARANTINE_MARKER: &str = ".dbfsck-quarantine";
/// The quarantine's manifest: one JSON line per range copied into it.
pub const QUARANTINE_MANIFEST: &str = "manifest.jsonl";

/// Progress of a running scan, handed to the callback of [`Scanner::on_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes verified so far.
    pub bytes_done: u64,
    /// Bytes to verify in all (known once every file is opened).
    pub bytes_total: u64,
    /// Findings so far.
    pub findings: u64,
}

/// Why a scan could not start. One clear sentence each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanConfigError {
    /// `--format` named a format that does not exist.
    #[error("unknown format {name:?}; known formats: {known}")]
    UnknownFormat {
        /// The name given.
        name: String,
        /// The names available, comma-separated.
        known: String,
    },
    /// The thread pool could not be built.
    #[error("could not start {threads} worker threads: {source}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// The cause.
        source: rayon::ThreadPoolBuildError,
    },
}

type ProgressFn = dyn Fn(&Progress) + Send + Sync;
type FileDoneFn = dyn Fn(&[Finding]) + Send + Sync;
type CheckpointFn = dyn Fn(&ScanState) + Send + Sync;

/// When to stop early: the cancellation flag, or the end of the time limit.
struct Stop<'a> {
    cancel: &'a AtomicBool,
    deadline: Option<Instant>,
    /// Descriptors still allowed to be kept open for later pieces.
    fds: std::sync::atomic::AtomicIsize,
}

impl Stop<'_> {
    fn now(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Configures and runs scans. Every setter states its default.
///
/// ```
/// use dbfsck_core::Scanner;
/// let dir = tempfile::tempdir().unwrap();
/// let report = Scanner::new().threads(2).scan(&[dir.path()]).unwrap();
/// // An empty folder: nothing was verified, which is never "clean" (exit 8).
/// assert_eq!(report.exit_code(), 8);
/// ```
#[derive(Clone)]
pub struct Scanner {
    formats: Vec<Arc<dyn Format>>,
    forced: Option<Arc<dyn Format>>,
    threads: usize,
    strategy: ReadStrategy,
    chunk_size: Option<u64>,
    progress: Option<Arc<ProgressFn>>,
    cancel: Arc<AtomicBool>,
    limiter: Option<Arc<RateLimiter>>,
    file_done: Option<Arc<FileDoneFn>>,
    time_limit: Option<std::time::Duration>,
    resume: Option<Arc<ScanState>>,
    checkpoint: Option<(std::time::Duration, Arc<CheckpointFn>)>,
    online: bool,
    /// Whether the report's scan state records every file (`Scanner::file_states`).
    file_states: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field(
                "formats",
                &self.formats.iter().map(|f| f.name()).collect::<Vec<_>>(),
            )
            .field("forced", &self.forced.as_ref().map(|f| f.name()))
            .field("threads", &self.threads)
            .field("strategy", &self.strategy)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// The default chunk size for positional reads: 4 MiB, large enough to amortise a read, small
/// enough that the reused buffer stays in cache while it is hashed (16 MiB measured 30 % slower)
/// and that one file of a few hundred MiB keeps every core busy.
pub const DEFAULT_CHUNK_SIZE: u64 = 4 << 20;

/// The default chunk (map window) size for memory maps: 16 MiB. Mapped bytes are not copied, so
/// cache size does not matter; fewer, larger windows mean fewer `munmap` TLB shootdowns across
/// threads (4 GiB warm, 2 CPUs: 0.36 s → 0.29 s, and 1 → 2 threads 1.74× → 1.84×).
pub const MMAP_CHUNK_SIZE: u64 = 16 << 20;

impl Scanner {
    /// A scanner with the built-in formats ([`crate::builtin_formats`]), format detection,
    /// all CPUs, memory maps and 16 MiB chunks.
    pub fn new() -> Self {
        Self::with_formats(crate::builtin_formats())
    }

    /// A scanner that knows only `formats` (for example a user's own), tried in order.
    pub fn with_formats(formats: Vec<Arc<dyn Format>>) -> Self {
        Scanner {
            formats,
            forced: None,
            threads: 0,
            strategy: ReadStrategy::Auto,
            chunk_size: None,
            progress: None,
            cancel: Arc::new(AtomicBool::new(false)),
            limiter: None,
            file_done: None,
            time_limit: None,
            resume: None,
            checkpoint: None,
            online: false,
            file_states: true,
        }
    }

    /// Treats every file as format `name` instead of detecting it; `None` or `"auto"` detects
    /// (the default).
    pub fn format(mut self, name: Option<&str>) -> Result<Self, ScanConfigError> {
        self.forced = match name {
            None | Some("auto") => None,
            Some(name) => Some(
                self.formats
                    .iter()
                    .find(|f| f.name() == name)
                    .cloned()
                    .ok_or_else(|| ScanConfigError::UnknownFormat {
                        name: name.to_owned(),
                        known: self
                            .formats
                            .iter()
                            .map(|f| f.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?,
            ),
        };
        Ok(self)
    }

    /// Worker threads; 0 (the default) uses every CPU.
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// How bytes are read; default [`ReadStrategy::Auto`].
    #[must_use]
    pub fn read_strategy(mut self, strategy: ReadStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Target chunk size in bytes (rounded to each file's alignment); default
    /// [`MMAP_CHUNK_SIZE`] (16 MiB) with memory maps and with [`ReadStrategy::Auto`] (which reads
    /// such a piece [`DEFAULT_CHUNK_SIZE`] at a time when it reads), [`DEFAULT_CHUNK_SIZE`]
    /// (4 MiB) with reads.
    #[must_use]
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = Some(bytes.max(1));
        self
    }

    /// Calls `f` as chunks complete, from worker threads; default none.
    #[must_use]
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Limits reading to `bytes_per_sec` across all threads (`--max-rate`); default `None`, no
    /// limit. Chunks shrink to about a twentieth of a second's worth of bytes (never below
    /// 64 KiB), so the limit holds within a few percent over any few seconds.
    #[must_use]
    pub fn max_rate(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.limiter = bytes_per_sec.map(|r| Arc::new(RateLimiter::new(r)));
        self
    }

    /// Calls `f` with findings as soon as every range of their file before them is verified
    /// (so a huge file streams as it is read), from worker threads: one file's calls come in
    /// offset order, and together they are exactly its findings as the report holds them (a run
    /// still growing at the verified frontier is held back until it ends). What a stopped scan
    /// did not hand over is in the report only. Default none. For streaming output.
    #[must_use]
    pub fn on_file_findings(mut self, f: impl Fn(&[Finding]) + Send + Sync + 'static) -> Self {
        self.file_done = Some(Arc::new(f));
        self
    }

    /// Stops cleanly when `limit` has passed since the scan started: no new chunk starts, the
    /// report says `complete: false` and `timed_out`, and its [`Report::scan_state`] can be
    /// resumed. Default `None`, no limit.
    #[must_use]
    pub fn time_limit(mut self, limit: Option<std::time::Duration>) -> Self {
        self.time_limit = limit;
        self
    }

    /// Continues a stopped scan: ranges `state` marks verified are skipped, and the open-time
    /// findings of files it marks opened are not reported again, so the pieces' findings add up
    /// to one full scan's. A file whose length changed is scanned afresh. Default `None`.
    #[must_use]
    pub fn resume(mut self, state: Option<ScanState>) -> Self {
        self.resume = state.filter(|s| !s.complete).map(Arc::new);
        self
    }

    /// Calls `f` with the scan's state at most every `every` (from a worker thread, after a
    /// chunk completes), so a caller can save it regularly. Default none.
    #[must_use]
    pub fn on_checkpoint(
        mut self,
        every: std::time::Duration,
        f: impl Fn(&ScanState) + Send + Sync + 'static,
    ) -> Self {
        self.checkpoint = Some((every, Arc::new(f)));
        self
    }

    /// Whether [`Report::scan_state`] records every file scanned (what `--state` saves and
    /// `--resume` continues). Default on; off saves memory on a scan of many files whose state
    /// nobody saves (about 200 bytes a file). A scan that resumes keeps it on.
    #[must_use]
    pub fn file_states(mut self, on: bool) -> Self {
        self.file_states = on;
        self
    }

    /// Online mode, for a datastore that is running (`--online`): every page that fails is read
    /// again at once and once more after [`ONLINE_PAUSE`]; when the later read verifies, or
    /// differs from the earlier one, the page was being written, and it is reported as
    /// `changed_during_scan` (not damage). Only a page that fails identically twice is damage.
    /// Files of formats with a lock protocol are read under a shared advisory lock when one can
    /// be had without waiting. Default off.
    #[must_use]
    pub fn online(mut self, online: bool) -> Self {
        self.online = online;
        self
    }

    /// Shares a cancellation flag: once it is set, no new chunk starts and the report says
    /// `complete: false`; default a private flag that is never set.
    #[must_use]
    pub fn cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = flag;
        self
    }

    /// The formats this scanner knows.
    pub fn formats(&self) -> &[Arc<dyn Format>] {
        &self.formats
    }

    /// Scans `roots` (files and directories) and returns the sorted report. Paths that cannot be
    /// read are reported in [`Report::errors`] while the rest is scanned.
    pub fn scan<P: AsRef<Path>>(&self, roots: &[P]) -> Result<Report, ScanConfigError> {
        let started = Instant::now();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("dbfsck-worker-{i}"))
            .build()
            .map_err(|source| ScanConfigError::ThreadPool {
                threads: self.threads,
                source,
            })?;
        let mut report = Report {
            roots: roots
                .iter()
                .map(|r| r.as_ref().to_string_lossy().into_owned())
                .collect(),
            ..Report::default()
        };
        // The roots are resolved first: what a saved state is for is known before any file is
        // opened.
        let resolved: Vec<Root> = roots
            .iter()
            .filter_map(|root| self.resolve_root(root.as_ref(), &mut report))
            .collect();
        let root_ids: Vec<[u64; 2]> = report
            .root_paths
            .iter()
            .map(|p| fs::metadata(p).map_or([0, 0], |m| FileId::of(&m).pair()))
            .collect();
        // A saved state is used only for the very roots it was saved for (the same inodes,
        // not only the same names): anything else starts a new scan, saying so.
        let resume = self.resume.as_deref().filter(|s| {
            let same = s.roots == report.roots && s.root_ids == root_ids;
            if !same {
                report.warnings.push(PathError {
                    path: report.roots.join(" "),
                    message: "the saved scan state is for other roots (other paths, or other directories at these paths): it is not used, and a new scan starts".into(),
                });
            }
            same
        });
        let stop = Stop {
            cancel: &self.cancel,
            deadline: self.time_limit.map(|l| started + l),
            fds: std::sync::atomic::AtomicIsize::new(descriptor_budget()),
        };
        let resumed = resume.is_some();
        // Phase 1: walk the roots on this thread while the pool opens what the walk has listed
        // so far (every file's head read, its format's header parsed), a batch at a time: the
        // walk of a directory of 100 000 files no longer runs before the first open.
        let batches = std::sync::Mutex::new(Vec::new());
        pool.in_place_scope(|scope| {
            let stop = &stop;
            let batches = &batches;
            let open_batch = |i: usize, batch: Vec<Target>| {
                scope.spawn(move |_| {
                    // One head buffer per worker thread: no allocation or zeroing per file.
                    let mut buf = HEAD_BUF.with(std::cell::Cell::take);
                    if buf.len() < Probe::HEAD_LEN {
                        buf = vec![0u8; Probe::HEAD_LEN];
                    }
                    let out: Vec<OpenOutcome> = batch
                        .into_iter()
                        .map(|t| self.open(t, &mut buf, stop, resume))
                        .collect();
                    HEAD_BUF.with(|c| c.set(buf));
                    batches
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, out));
                });
            };
            let mut batch = Vec::new();
            let mut spawned = 0;
            let mut push = |t: Target| {
                batch.push(t);
                if batch.len() >= OPEN_BATCH {
                    open_batch(spawned, std::mem::take(&mut batch));
                    spawned += 1;
                }
            };
            for root in resolved {
                self.walk_resolved(root, &mut push, &mut report);
            }
            if !batch.is_empty() {
                open_batch(spawned, batch);
            }
        });
        let mut batches = batches.into_inner().unwrap_or_else(|p| p.into_inner());
        batches.sort_unstable_by_key(|(i, _)| *i);
        // Handed over batch by batch: no second list of every file's outcome.
        let count = batches.iter().map(|(_, b)| b.len()).sum();
        let opened = batches.into_iter().flat_map(|(_, b)| b);
        pool.install(|| self.run(opened, count, &mut report, &stop, resume, root_ids));
        // A path that yielded no file to verify (everything skipped, a format not recognised,
        // an empty folder) was not checked: never "clean". A resumed piece may have verified
        // its files in earlier pieces of the cycle, so only a fresh, complete scan says so.
        if !resumed && report.summary.complete && !report.cancelled {
            for root in report.root_paths.clone() {
                // A path whose own error already says why nothing was checked needs no second.
                let explained = report.errors.iter().any(|e| {
                    let p = Path::new(&e.path);
                    p.starts_with(&root) || fs::canonicalize(p).is_ok_and(|p| p.starts_with(&root))
                });
                if !explained && !report.files.iter().any(|f| f.path.starts_with(&root)) {
                    report.errors.push(PathError {
                        path: root.to_string_lossy().into_owned(),
                        message: "nothing here was verified (the skipped entries say what was found and why): a scan that checks nothing cannot call it clean".into(),
                    });
                }
            }
        }
        report.summary.elapsed_s = started.elapsed().as_secs_f64();
        report.normalize();
        // This piece reported what it found: the cycle adds it, and what it had recorded as
        // pending is no longer pending.
        let own = report.own_exit_code();
        report.scan_state.cycle.add(&report.findings, own);
        report.scan_state.pending.clear();
        report.cycle = Some(report.scan_state.cycle.clone());
        Ok(report)
    }

    /// Resolves a root to its real path (recorded in `report.root_paths`), or records why it
    /// cannot be scanned.
    fn resolve_root(&self, root: &Path, report: &mut Report) -> Option<Root> {
        let display = root.to_string_lossy().into_owned();
        let meta = match fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                report.errors.push(PathError {
                    path: display,
                    message: io_message(&e),
                });
                return None;
            }
        };
        // Files are opened by their real path: the root's directories resolved once, here, so
        // what runs after the scan (repair) opens the same files without following a link.
        // Reports keep showing the path as given.
        if meta.is_file() {
            let parent = root
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let real = match (fs::canonicalize(parent), root.file_name()) {
                (Ok(dir), Some(name)) => usable(dir.join(name), root),
                _ => root.to_path_buf(),
            };
            report.root_paths.push(real.clone());
            Some(Root::File(Target {
                path: real,
                display,
                format: self.forced.clone(),
                explicit: true,
                live: false,
            }))
        } else if meta.is_dir() {
            let real = fs::canonicalize(root)
                .map(|r| usable(r, root))
                .unwrap_or_else(|_| root.to_path_buf());
            report.root_paths.push(real.clone());
            Some(Root::Dir {
                real,
                shown: root.to_path_buf(),
            })
        } else {
            report.errors.push(PathError {
                path: display,
                message: format!(
                    "not a regular file or directory ({}); not opened",
                    kind_of(&meta)
                ),
            });
            None
        }
    }

    /// Lists the files of a resolved root, handing each to `out` in walk order.
    fn walk_resolved(&self, root: Root, out: &mut dyn FnMut(Target), report: &mut Report) {
        match root {
            Root::File(t) => out(t),
            Root::Dir { real, shown } => self.walk_dir(&real, &shown, out, report),
        }
    }

    /// Walks directory `dir` (its real path), shown in reports as `shown`.
    fn walk_dir(&self, dir: &Path, shown: &Path, out: &mut dyn FnMut(Target), report: &mut Report) {
        // How a path under `dir` is shown: below `shown`; a path elsewhere (a tablespace a
        // link file points to) as it is.
        let s = |p: &Path| match p.strip_prefix(dir) {
            Ok(rel) if rel.as_os_str().is_empty() => shown.to_string_lossy().into_owned(),
            Ok(rel) => shown.join(rel).to_string_lossy().into_owned(),
            Err(_) => p.to_string_lossy().into_owned(),
        };
        // A directory a format claims (a PostgreSQL data directory, say) is listed by it.
        // A forced format lists the directories it claims; detection asks every format.
        let claimant = match &self.forced {
            Some(f) => f.detect_dir(dir).then(|| f.clone()),
            None => self.formats.iter().find(|f| f.detect_dir(dir)).cloned(),
        };
        {
            if let Some(format) = claimant {
                if let Some(listing) = format.list_dir(dir) {
                    let live = listing.live;
                    for path in listing.files {
                        out(Target {
                            display: s(&path),
                            path,
                            format: Some(format.clone()),
                            explicit: false,
                            live,
                        });
                    }
                    report
                        .skipped
                        .extend(listing.skipped.into_iter().map(|(p, reason)| Skipped {
                            path: s(&p),
                            reason,
                        }));
                    report
                        .errors
                        .extend(listing.errors.into_iter().map(|(p, message)| PathError {
                            path: s(&p),
                            message,
                        }));
                    report
                        .warnings
                        .extend(listing.warnings.into_iter().map(|(p, message)| PathError {
                            path: s(&p),
                            message,
                        }));
                    return;
                }
            }
        }
        // Each name fetched once: sorting by `DirEntry::file_name` would allocate two names per
        // comparison (millions for a directory of 100 000 files).
        let listed = fs::read_dir(dir).and_then(|rd| {
            rd.map(|e| e.map(|e| (e.file_name(), e)))
                .collect::<io::Result<Vec<_>>>()
        });
        let mut entries = match listed {
            Ok(entries) => entries,
            Err(e) => {
                report.errors.push(PathError {
                    path: s(dir),
                    message: io_message(&e),
                });
                return;
            }
        };
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // What `shown.join(name).to_string_lossy()` gives, one allocation per entry: the
        // separator is ASCII, so no invalid sequence spans it.
        let mut prefix = shown.to_string_lossy().into_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        for (name, entry) in entries {
            let path = entry.path();
            let lossy = name.to_string_lossy();
            let mut display = String::with_capacity(prefix.len() + lossy.len());
            display.push_str(&prefix);
            display.push_str(&lossy);
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    report.errors.push(PathError {
                        path: display,
                        message: io_message(&e),
                    });
                    continue;
                }
            };
            if file_type.is_symlink() {
                report.skipped.push(Skipped {
                    path: display,
                    reason: "symbolic link, not followed".into(),
                });
            } else if file_type.is_dir() && is_dbfsck_dir(&path) {
                report.skipped.push(Skipped {
                    path: display,
                    reason: DBFSCK_DIR_REASON.into(),
                });
            } else if file_type.is_dir() {
                self.walk_dir(&path, &shown.join(&name), out, report);
            } else if let Some(reason) = file_type
                .is_file()
                .then(|| self.formats.iter().find_map(|f| f.ignore_file(&path)))
                .flatten()
            {
                report.skipped.push(Skipped {
                    path: display,
                    reason,
                });
            } else if file_type.is_file() {
                out(Target {
                    path,
                    display,
                    format: self.forced.clone(),
                    explicit: false,
                    live: false,
                });
            } else {
                let reason = match entry.metadata() {
                    Ok(m) => format!("{}, not opened", kind_of(&m)),
                    Err(_) => "not a regular file, not opened".into(),
                };
                report.skipped.push(Skipped {
                    path: display,
                    reason,
                });
            }
        }
    }

    fn run(
        &self,
        opened: impl Iterator<Item = OpenOutcome>,
        count: usize,
        report: &mut Report,
        stop: &Stop<'_>,
        resume: Option<&ScanState>,
        root_ids: Vec<[u64; 2]>,
    ) {
        let mut files = Vec::new();
        // Each file once, however many roots or links reach it: the same device and inode is
        // the same file (a root named twice, a file inside a root also named, a hard link).
        let mut seen: std::collections::HashMap<FileId, FirstSight> = Default::default();
        // Files this piece does not read, with what earlier pieces did in them.
        let mut not_reached: Vec<(PathBuf, String, Option<FileState>)> = Vec::new();
        let mut verified: Vec<VerifiedFile> = Vec::new();
        // Files judged whole while opening: their state, then built into the map in one go.
        let mut done_states: Vec<(String, FileState)> = Vec::new();
        let mut done_pending: Vec<crate::resume::StateFinding> = Vec::new();
        report.files.reserve(count);
        for outcome in opened {
            match outcome {
                OpenOutcome::Error(e) => report.errors.push(e),
                OpenOutcome::Skipped(s) => report.skipped.push(s),
                OpenOutcome::NotReached(t) => {
                    let key = crate::resume::file_key(&t.path);
                    let prev = resume.and_then(|s| s.files.get(&key)).cloned();
                    not_reached.push((t.path, key, prev));
                }
                OpenOutcome::Verified(v) => {
                    let first = FirstSight::Verified(verified.len());
                    if !first_sight(&mut seen, v.id, &v.display, first, report, &verified) {
                        continue;
                    }
                    verified.push(*v);
                }
                OpenOutcome::Done(done) => {
                    let DoneFile {
                        scanned,
                        key,
                        mut findings,
                        notes,
                        units,
                        bytes,
                        state,
                    } = *done;
                    let first = FirstSight::Scanned(report.files.len());
                    if !first_sight(
                        &mut seen,
                        scanned.id,
                        &scanned.display,
                        first,
                        report,
                        &verified,
                    ) {
                        continue;
                    }
                    report.summary.files += 1;
                    report.summary.units += units;
                    report.summary.bytes += bytes;
                    report
                        .warnings
                        .extend(notes.into_iter().map(|message| PathError {
                            path: scanned.display.clone(),
                            message,
                        }));
                    if !findings.is_empty() {
                        crate::report::normalize_file(&mut findings);
                        done_pending.extend(findings.iter().map(crate::resume::StateFinding::keep));
                        if let Some(cb) = &self.file_done {
                            cb(&findings);
                        }
                        report.findings.append(&mut findings);
                    }
                    if let Some(state) = state {
                        done_states.push((key, *state));
                    }
                    report.files.push(scanned);
                }
                OpenOutcome::Opened(file) => {
                    let file = *file;
                    let first = FirstSight::Scanned(report.files.len());
                    if !first_sight(&mut seen, file.id, &file.display, first, report, &verified) {
                        continue;
                    }
                    if let Some(note) = &file.resume_note {
                        report.warnings.push(PathError {
                            path: file.display.clone(),
                            message: note.clone(),
                        });
                    }
                    report.files.push(ScannedFile {
                        path: file.path.clone(),
                        display: file.display.clone(),
                        format: file.format,
                        id: file.id,
                        len: file.len,
                    });
                    report.summary.files += 1;
                    report.summary.units += file.units_at_open;
                    report.summary.bytes += file.bytes_at_open + file.verified_at_open;
                    report.findings.extend(file.findings.iter().cloned());
                    report.warnings.extend(file.notes.iter().map(|n| PathError {
                        path: file.display.clone(),
                        message: n.clone(),
                    }));
                    files.push(file);
                }
            }
        }

        // Phase 2: cut into page-aligned chunks, batch small files, verify on every core.
        // Auto plans map-sized pieces and reads one in windows when it reads.
        let chunk_size = self.chunk_size.unwrap_or(match self.strategy {
            ReadStrategy::Mmap | ReadStrategy::Auto => MMAP_CHUNK_SIZE,
            ReadStrategy::Pread => DEFAULT_CHUNK_SIZE,
        });
        let chunk_size = match &self.limiter {
            Some(l) => chunk_size.min((l.bytes_per_sec() / 20).max(64 << 10)),
            None => chunk_size,
        };
        let mut tasks = plan(&files, chunk_size);
        // Resuming: only the parts no earlier piece verified.
        if resume.is_some() {
            for task in &mut tasks {
                let pieces = std::mem::take(task);
                for p in pieces {
                    match files.get(p.file).and_then(|f| f.resumed.as_ref()) {
                        Some(prev) => {
                            task.extend(prev.uncovered(p.offset, p.offset + p.len).into_iter().map(
                                |(a, b)| Piece {
                                    offset: a,
                                    len: b - a,
                                    ..p
                                },
                            ))
                        }
                        None => task.push(p),
                    }
                }
            }
            tasks.retain(|t| !t.is_empty());
        }
        // What is verified, for --state: earlier pieces, this one's open phase, then each chunk,
        // each range with the findings in it. Findings an earlier piece recorded but never
        // reported (it was killed) are reported by this one, for the files still the same.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut scan_state = ScanState {
            version: STATE_VERSION,
            roots: report.roots.clone(),
            root_ids,
            complete: false,
            files: Default::default(),
            pending: Vec::new(),
            cycle: resume.map_or_else(
                || crate::resume::Cycle {
                    started: now,
                    ..Default::default()
                },
                |s| s.cycle.clone(),
            ),
        };
        let mut carried: Vec<Finding> = Vec::new();
        if let Some(prev) = resume {
            carried = prev
                .pending
                .iter()
                .map(crate::resume::StateFinding::restore)
                .filter(|f| {
                    files
                        .iter()
                        .any(|o| f.file.as_ref() == Some(&o.path) && o.resumed.is_some())
                        || verified.iter().any(|v| f.file.as_ref() == Some(&v.path))
                })
                .collect();
            scan_state
                .pending
                .extend(carried.iter().map(crate::resume::StateFinding::keep));
            report.findings.extend(carried.iter().cloned());
            // A file not reached keeps its pending findings for the piece that reaches it.
            scan_state.pending.extend(
                prev.pending
                    .iter()
                    .filter(|p| {
                        let f = p.restore();
                        not_reached
                            .iter()
                            .any(|(path, _, st)| st.is_some() && f.file.as_ref() == Some(path))
                    })
                    .cloned(),
            );
        }
        scan_state.pending.append(&mut done_pending);
        // Built from one list (sorted once, then bulk-loaded): inserting 100 000 keys one by
        // one costs a tree walk and a string comparison per level each. As inserting in this
        // order would, a later entry for the same key wins.
        let mut states = done_states;
        states.extend(verified.iter().map(|v| (v.key.clone(), v.state.clone())));
        states.extend(
            not_reached
                .iter()
                .filter_map(|(_, key, st)| st.as_ref().map(|st| (key.clone(), st.clone()))),
        );
        scan_state.files = states.into_iter().collect();
        for f in &files {
            let mut fs = f.resumed.clone().unwrap_or_default();
            fs.len = f.len;
            fs.id = f.id.pair();
            fs.mtime = f.mtime;
            fs.ctime = f.ctime;
            if !fs.opened {
                scan_state
                    .pending
                    .extend(f.findings.iter().map(crate::resume::StateFinding::keep));
            }
            fs.opened = true;
            if f.verified_at_open > 0 {
                fs.add(0, f.len);
            }
            if self.file_states || resume.is_some() {
                scan_state.files.insert(f.key.clone(), fs);
            }
        }
        let at_open: u64 = files.iter().map(|f| f.verified_at_open).sum();
        let total: u64 = tasks.iter().flatten().map(|p| p.len).sum::<u64>() + at_open;
        // Per file: its pieces in order and the findings not yet handed to on_file_findings.
        let mut pieces_of: Vec<Vec<(u64, u64)>> = vec![Vec::new(); files.len()];
        for p in tasks.iter().flatten() {
            if let Some(v) = pieces_of.get_mut(p.file) {
                v.push((p.offset, p.offset + p.len));
            }
        }
        let per_file: Vec<FileProgress> = files
            .iter()
            .zip(pieces_of)
            .map(|(f, mut pieces)| {
                pieces.sort_unstable();
                // Carried findings stream with the file's own: a run the killed piece
                // recorded up to its checkpoint is continued by this piece's, never printed
                // twice.
                let mut queue = f.findings.clone();
                queue.extend(
                    carried
                        .iter()
                        .filter(|c| c.file.as_ref() == Some(&f.path))
                        .cloned(),
                );
                crate::report::normalize_file(&mut queue);
                FileProgress {
                    inner: std::sync::Mutex::new(FileStream {
                        pieces,
                        next: 0,
                        done: Default::default(),
                        queue,
                    }),
                }
            })
            .collect();
        if let Some(cb) = &self.file_done {
            for fp in &per_file {
                fp.flush(cb.as_ref());
            }
        }
        let state = RunState {
            done: AtomicU64::new(at_open),
            findings: AtomicU64::new(report.findings.len() as u64),
            total,
            per_file,
            scan_state: std::sync::Mutex::new(scan_state),
            last_checkpoint: std::sync::Mutex::new(Instant::now()),
            stop,
        };
        let chooser = Arc::new(Chooser::default());
        let results: Vec<TaskResult> = tasks
            .par_iter()
            .with_max_len(1)
            .map_init(
                || Reader::shared(self.strategy, chooser.clone()),
                |reader, task| self.run_task(reader, &files, task, &state),
            )
            .collect();
        let mut stopped = !not_reached.is_empty();
        for r in results {
            report.findings.extend(r.findings);
            report.summary.units += r.units;
            report.summary.bytes += r.bytes;
            stopped |= r.cancelled;
        }
        for f in &files {
            if let Some(c) = f.check.as_deref() {
                report
                    .warnings
                    .extend(c.notes().into_iter().map(|message| PathError {
                        path: f.display.clone(),
                        message,
                    }));
            }
        }
        if stopped {
            if self.cancel.load(Ordering::Relaxed) {
                report.cancelled = true;
            } else {
                report.timed_out = true;
            }
        }
        report.summary.complete = !stopped;
        self.conclude(report, !stopped);
        let mut final_state = state
            .scan_state
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        final_state.complete = !stopped;
        // A file whose every range is verified need not be read again in this cycle.
        for f in &files {
            if let Some(st) = final_state.files.get_mut(&f.key) {
                st.verified = match f.check.as_deref() {
                    Some(c) => c
                        .extents()
                        .iter()
                        .all(|l| st.uncovered(l.start, l.end).is_empty()),
                    None => true,
                };
            }
        }
        report.scan_state = final_state;
    }

    /// Each format's conclusion over the files it verified (a log whose records cross files):
    /// its findings named as the scan reached their files, streamed like any file's.
    fn conclude(&self, report: &mut Report, complete: bool) {
        let conclusions: Vec<(&'static str, crate::format::Conclusion)> = self
            .formats
            .iter()
            .map(|f| (f.name(), f.conclude(complete)))
            .collect();
        let mut findings = Vec::new();
        let mut warnings = Vec::new();
        let mut recovery = Vec::new();
        let mut backups = Vec::new();
        let mut restores = Vec::new();
        let mut errors = Vec::new();
        {
            // Files named as the scan reached them: looked up by real path, borrowed (no copy
            // of every name of a scan of 100 000 files).
            let display: std::collections::HashMap<&Path, &str> = if conclusions
                .iter()
                .any(|(_, c)| !c.findings.is_empty() || !c.warnings.is_empty())
            {
                report
                    .files
                    .iter()
                    .map(|f| (f.path.as_path(), f.display.as_str()))
                    .collect()
            } else {
                Default::default()
            };
            let name = |p: &Path| {
                display
                    .get(p)
                    .map_or_else(|| p.to_string_lossy().into_owned(), |d| (*d).to_owned())
            };
            for (format, c) in conclusions {
                for mut f in c.findings {
                    f.path = name(f.file.as_deref().unwrap_or(Path::new("")));
                    f.format = format.to_owned();
                    findings.push(f);
                }
                warnings.extend(c.warnings.into_iter().map(|(p, message)| PathError {
                    path: name(&p),
                    message,
                }));
                errors.extend(c.errors.into_iter().map(|(p, message)| PathError {
                    path: name(&p),
                    message,
                }));
                recovery.extend(c.recovery);
                backups.extend(c.backups);
                for mut r in c.restores {
                    if let Some(o) = r.obstacle.as_mut() {
                        o.file = o.real.as_deref().map(name);
                    }
                    restores.push(r);
                }
                report.summary.units += c.units;
            }
        }
        crate::report::normalize_file(&mut findings);
        if !findings.is_empty() {
            if let Some(cb) = &self.file_done {
                cb(&findings);
            }
        }
        report.findings.append(&mut findings);
        report.warnings.append(&mut warnings);
        report.errors.append(&mut errors);
        report.errors.sort_by(|a, b| a.path.cmp(&b.path));
        recovery.sort_by(|a, b| a.path.cmp(&b.path));
        report.summary.recovery = recovery;
        // A backup is restorable when its WAL reaches its end and no damage lies in it (its
        // pages' findings came from the scan, its manifest's from the conclusion).
        for b in &mut backups {
            let also: std::collections::HashSet<&Path> =
                b.also.iter().map(PathBuf::as_path).collect();
            b.damaged_findings = report
                .findings
                .iter()
                .filter(|f| f.kind.is_damage())
                .filter(|f| {
                    f.file
                        .as_deref()
                        .is_some_and(|p| p.starts_with(&b.real) || also.contains(p))
                })
                .count() as u64;
            b.restorable = b.consistent == Some(true) && b.damaged_findings == 0;
        }
        // A backup that cannot be restored is damage (exit bit 4), whatever showed it: when
        // nothing in it is a damage finding (its WAL simply stops short, in an archive where
        // that is no damage of its own), the verdict is one.
        let mut added = Vec::new();
        for b in backups
            .iter_mut()
            .filter(|b| b.consistent == Some(false) && b.damaged_findings == 0)
        {
            let why = restores.iter().find(|r| r.backup == b.path).map_or(
                "its WAL does not reach the point where it becomes consistent",
                |r| r.detail.as_str(),
            );
            let mut f = Finding::new(
                FindingKind::Truncated,
                0,
                0,
                format!("the backup cannot be restored: {why}"),
            );
            f.path = b.path.clone();
            f.format = b.format.clone();
            f.file = Some(b.real.clone());
            b.damaged_findings = 1;
            added.push(f);
        }
        // The same for a backup known only from an archive's backup history file.
        for r in restores.iter().filter(|r| !r.consistent) {
            let listed = backups.iter().any(|b| b.path == r.backup);
            let file = std::path::PathBuf::from(&r.backup);
            let reported = report
                .findings
                .iter()
                .any(|f| f.kind.is_damage() && f.file.as_deref() == Some(file.as_path()));
            if listed || reported {
                continue;
            }
            let mut f = Finding::new(
                FindingKind::Truncated,
                0,
                0,
                format!(
                    "the backup this file names cannot be restored from the archive: {}",
                    r.detail
                ),
            );
            f.path = r.backup.clone();
            f.format = r.format.clone();
            f.file = Some(file);
            added.push(f);
        }
        if !added.is_empty() {
            if let Some(cb) = &self.file_done {
                cb(&added);
            }
            report.findings.append(&mut added);
            report
                .findings
                .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        }
        backups.sort_by(|a, b| a.path.cmp(&b.path));
        report.summary.backups = backups;
        restores.sort_by(|a, b| (&a.backup, &a.archive).cmp(&(&b.backup, &b.archive)));
        report.summary.restores = restores;
    }

    fn open(
        &self,
        t: Target,
        buf: &mut [u8],
        stop: &Stop<'_>,
        resume: Option<&ScanState>,
    ) -> OpenOutcome {
        let err = |message: String| {
            OpenOutcome::Error(PathError {
                path: t.display.clone(),
                message,
            })
        };
        // The open phase reads every file's head: it stops at the time limit like the rest.
        if stop.now() {
            return OpenOutcome::NotReached(t);
        }
        let file = match open_for_scan(&t.path, !t.explicit) {
            Ok(f) => f,
            // A running datastore drops files (DROP, TRUNCATE): one listed and gone since is
            // its doing, not an error.
            Err(e) if e.kind() == io::ErrorKind::NotFound && (self.online || t.live) => {
                return OpenOutcome::Skipped(Skipped {
                    path: t.display.clone(),
                    reason: "removed after it was listed: the running datastore dropped it (not checked)".into(),
                })
            }
            Err(e) => return err(io_message(&e)),
        };
        let (len, id, mtime, ctime) = match file.metadata() {
            Ok(m) if m.is_file() => {
                use std::os::unix::fs::MetadataExt;
                (
                    m.len(),
                    FileId::of(&m),
                    [m.mtime(), m.mtime_nsec()],
                    [m.ctime(), m.ctime_nsec()],
                )
            }
            Ok(m) => return err(format!("not a regular file ({}); not read", kind_of(&m))),
            Err(e) => return err(io_message(&e)),
        };
        let keep = self.file_states || resume.is_some();
        let key = if keep {
            crate::resume::file_key(&t.path)
        } else {
            String::new()
        };
        let prev = resume.and_then(|s| s.files.get(&key));
        if let Some(prev) = prev.filter(|p| {
            p.verified
                && p.opened
                && p.id == id.pair()
                && p.len == len
                && p.mtime == mtime
                && p.ctime == ctime
        }) {
            return OpenOutcome::Verified(Box::new(VerifiedFile {
                path: t.path,
                key,
                display: t.display,
                id,
                state: prev.clone(),
            }));
        }
        // One read of the head serves detection, the format's header parsing and, for a file
        // that fits in it, the whole verification: a small file costs one open and one read.
        let want = len.min(Probe::HEAD_LEN as u64) as usize;
        // Gentle mode counts the head too: every byte read waits its turn.
        if let Some(l) = &self.limiter {
            l.acquire(want as u64, &self.cancel);
        }
        let head: &[u8] = match buf.get_mut(..want).map(|b| pread_fully(&file, 0, b)) {
            Some(Ok(n)) => buf.get(..n).unwrap_or_default(),
            Some(Err(e)) => return err(io_message(&e)),
            None => &[],
        };
        let format = match &t.format {
            Some(f) => f.clone(),
            None => {
                let probe = Probe {
                    path: &t.path,
                    len,
                    head,
                };
                match self.formats.iter().find(|f| f.detect_file(&probe)) {
                    Some(f) => f.clone(),
                    None if t.explicit => {
                        return err(format!(
                            "not a recognised format ({}); name one with --format",
                            if len == 0 {
                                "empty file"
                            } else {
                                "no known magic"
                            }
                        ))
                    }
                    None => {
                        return OpenOutcome::Skipped(Skipped {
                            path: t.display,
                            reason: "not a recognised format".into(),
                        })
                    }
                }
            }
        };
        let source = HeadSource {
            head,
            rest: PreadSource {
                file: &file,
                len,
                throttle: self.limiter.as_deref().map(|l| (l, &*self.cancel)),
            },
        };
        let opened = match format.open(&t.path, &source) {
            Ok(o) => o,
            Err(e) => return err(e.to_string()),
        };
        let Opened {
            mut findings,
            check,
            units,
            recheck_after,
            mut notes,
        } = opened;
        for f in &mut findings {
            f.path.clone_from(&t.display);
            f.file = Some(t.path.clone());
            f.format = format.name().to_owned();
        }
        // Bytes examined while opening: everything outside the layout or, when nothing past
        // the header could be checked, only the ranges the findings cover.
        let bytes_at_open = match &check {
            Some(c) => len.saturating_sub(c.extents().iter().map(Layout::len).sum()),
            // A file judged whole while opening (a journal): all of it, unless the findings say
            // only their ranges could be looked at.
            None if findings.is_empty() => len,
            None => findings.iter().map(|f| f.length).sum::<u64>().min(len),
        };
        let mut check = check;
        let mut units = units;
        let mut verified_at_open = 0;
        // Resuming: what an earlier piece of this scan did in this file — if it is the same file
        // (device, inode, size, mtime, ctime) and every range fits its layout. Otherwise the
        // file is scanned afresh, and the report says why.
        let mut resume_note = None;
        let mut resumed = prev.cloned();
        if let Some(prev) = &resumed {
            let same = prev.id == id.pair()
                && prev.len == len
                && prev.mtime == mtime
                && prev.ctime == ctime;
            let fits = match check.as_deref().map(|c| c.layout()) {
                Some(l) => prev.fits(len, l.start, l.end, l.align),
                None => prev.fits(len, len, len, 1),
            };
            if !same {
                resume_note = Some("the file changed since the saved scan state (device, inode, size, mtime or ctime): scanned afresh, and its earlier findings are not carried over".into());
                resumed = None;
            } else if !fits {
                resume_note = Some("the saved scan state names ranges that do not fit this file's pages: the state is not used for it, and it is scanned afresh".into());
                resumed = None;
            }
        }
        if let Some(prev) = &resumed {
            if prev.opened {
                findings.clear(); // reported by the piece that opened it first
            }
            if let Some(c) = check.as_deref() {
                if c.extents()
                    .iter()
                    .all(|l| prev.uncovered(l.start, l.end).is_empty())
                {
                    check = None;
                }
            }
        }
        if let Some(c) = check.as_deref() {
            let layout = c.layout();
            let fits = recheck_after.is_none()
                && layout.end > layout.start
                && layout.end <= head.len() as u64
                && resumed.as_ref().is_none_or(|p| p.done.is_empty())
                && !self.online;
            // Already read with the head (and throttled then).
            let go = fits && !stop.now();
            if go {
                let before = findings.len();
                for e in c.extents() {
                    let bytes = head
                        .get(e.start as usize..e.end as usize)
                        .unwrap_or_default();
                    let chunk = Chunk {
                        offset: e.start,
                        bytes,
                    };
                    units += c.verify(&chunk, &mut findings);
                    verified_at_open += e.len();
                }
                for f in findings.get_mut(before..).unwrap_or_default() {
                    f.path.clone_from(&t.display);
                    f.file = Some(t.path.clone());
                    f.format = format.name().to_owned();
                }
                notes.extend(c.notes());
                check = None;
            }
        }
        // Nothing left for the pieces, and nothing to fold into an earlier piece's state: what
        // the report and the state keep of it is all there is.
        if check.is_none() && resumed.is_none() && resume_note.is_none() {
            let state = keep.then(|| {
                let mut state = FileState {
                    len,
                    opened: true,
                    id: id.pair(),
                    mtime,
                    ctime,
                    verified: true,
                    ..FileState::default()
                };
                if verified_at_open > 0 {
                    state.add(0, len);
                }
                Box::new(state)
            });
            return OpenOutcome::Done(Box::new(DoneFile {
                scanned: ScannedFile {
                    path: t.path,
                    display: t.display,
                    format: format.name(),
                    id,
                    len,
                },
                key,
                findings,
                notes,
                units,
                bytes: bytes_at_open + verified_at_open,
                state,
            }));
        }
        // Keep the descriptor for the pieces to come, within the budget.
        let keep = check.is_some() && stop.fds.fetch_sub(1, Ordering::Relaxed) > 0;
        let handle = keep.then(|| Arc::new(file));
        OpenOutcome::Opened(Box::new(OpenFile {
            handle,
            id,
            path: t.path,
            key,
            explicit: t.explicit,
            display: t.display,
            format: format.name(),
            findings,
            check: check.map(Arc::from),
            units_at_open: units,
            recheck_after,
            notes,
            bytes_at_open,
            verified_at_open,
            len,
            mtime,
            ctime,
            resumed,
            resume_note,
        }))
    }

    fn run_task(
        &self,
        reader: &mut Reader,
        files: &[OpenFile],
        task: &[Piece],
        state: &RunState<'_>,
    ) -> TaskResult {
        let mut result = TaskResult::default();
        let mut current: Option<(usize, io::Result<Arc<File>>)> = None;
        for piece in task {
            if state.stop.now() {
                result.cancelled = true;
                return result;
            }
            let Some(file) = files.get(piece.file) else {
                continue;
            };
            let Some(check) = file.check.as_deref() else {
                continue;
            };
            if let Some(limiter) = &self.limiter {
                if !limiter.acquire(piece.len, &self.cancel) {
                    result.cancelled = true;
                    return result;
                }
            }
            if current.as_ref().is_none_or(|(i, _)| *i != piece.file) {
                // Every read goes through the descriptor the file was opened and judged by: a
                // file renamed over it or replaced since is not what this scan reads. Past the
                // descriptor budget a file is reopened, and must be the same inode.
                // No lock is ever taken, not even a shared one: a datastore's own exclusive
                // non-blocking lock must never fail because a scan runs (online mode relies
                // on re-reading instead).
                let handle = match &file.handle {
                    Some(h) => Ok(h.clone()),
                    None => reopen_same(file),
                };
                current = Some((piece.file, handle));
            }
            let before = result.findings.len();
            match current.as_ref().map(|(_, f)| f) {
                Some(Ok(handle)) => {
                    verify_piece(reader, handle, check, piece, &mut result);
                    if let Some(pause) = file.recheck_after {
                        recheck(handle, check, pause, before, &mut result.findings);
                    }
                    if self.online {
                        recheck_online(handle, check, before, &mut result.findings);
                    }
                }
                Some(Err(e)) => result.findings.push(Finding::new(
                    FindingKind::IoError,
                    piece.offset,
                    piece.len,
                    format!(
                        "could not read the file as it was opened: {}",
                        io_message(e)
                    ),
                )),
                None => {}
            }
            // A running datastore shrinks and drops files (TRUNCATE, DROP): bytes gone from under
            // the scan were changed during it, not damaged.
            if self.online || file.recheck_after.is_some() {
                for f in result.findings.iter_mut().skip(before) {
                    let gone = f.kind == FindingKind::Truncated
                        || (f.kind == FindingKind::IoError
                            && f.detail
                                .starts_with("could not read the file as it was opened"));
                    if gone {
                        f.kind = FindingKind::ChangedDuringScan;
                        f.detail = format!(
                            "{} (the running datastore truncated or dropped the file)",
                            f.detail
                        );
                    }
                }
            }
            // This piece's findings, named, and folded into runs first: a run of like findings
            // (a zeroed hole) stays one finding however many pages and chunks it spans, so
            // memory is bounded by the runs, not by the damaged pages.
            let mut new = result.findings.split_off(before);
            for f in &mut new {
                f.path.clone_from(&file.display);
                f.file = Some(file.path.clone());
                f.format = file.format.to_owned();
            }
            crate::report::coalesce_from(&mut new, 0);
            result.bytes += piece.len;
            // The range is recorded as verified together with what was found in it.
            state.piece_done(&file.key, piece, &new, self.checkpoint.as_ref());
            if let (Some(cb), Some(fp)) = (&self.file_done, state.per_file.get(piece.file)) {
                fp.add(piece.offset, &new, cb.as_ref());
            }
            let count = new.len() as u64;
            result.findings.extend(new);
            crate::report::coalesce_from(&mut result.findings, before);
            // The room the piece's page findings took is not kept: a task holds its runs only.
            result.findings.shrink_to_fit();
            let found = state.findings.fetch_add(count, Ordering::Relaxed) + count;
            let done = state.done.fetch_add(piece.len, Ordering::Relaxed) + piece.len;
            if let Some(cb) = &self.progress {
                cb(&Progress {
                    bytes_done: done,
                    bytes_total: state.total,
                    findings: found,
                });
            }
        }
        result
    }
}

/// Opens a file again by its path, for a file whose descriptor was not kept: it must still be
/// the file first opened (same device and inode).
fn reopen_same(file: &OpenFile) -> io::Result<Arc<File>> {
    let h = open_for_scan(&file.path, !file.explicit)?;
    if FileId::of(&h.metadata()?) != file.id {
        return Err(io::Error::other(
            "another file is at its path now (it was replaced during the scan)",
        ));
    }
    Ok(Arc::new(h))
}

/// Re-reads every unit that failed in `findings[from..]` after `pause` and judges it again: a
/// live datastore may have been writing it. Only what fails twice is kept, as found the second
/// time; a unit that cannot be re-read keeps its first finding.
fn recheck(
    handle: &File,
    check: &dyn UnitCheck,
    pause: std::time::Duration,
    from: usize,
    findings: &mut Vec<Finding>,
) {
    if findings.len() <= from {
        return;
    }
    std::thread::sleep(pause);
    let suspects = findings.split_off(from);
    for f in suspects {
        if f.unit.is_none() || f.length == 0 || f.length > 1 << 20 {
            findings.push(f);
            continue;
        }
        let mut buf = vec![0u8; f.length as usize];
        match pread_fully(handle, f.offset, &mut buf) {
            Ok(n) if n == buf.len() => {
                check.verify(
                    &Chunk {
                        offset: f.offset,
                        bytes: &buf,
                    },
                    findings,
                );
            }
            _ => findings.push(f),
        }
    }
}

/// How long online mode waits before the second re-read of a failing page.
pub const ONLINE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Online mode: a failing unit is read again now and after [`ONLINE_PAUSE`]. A unit whose
/// second read verifies, or differs from the first, was being written: `changed_during_scan`.
/// One that fails the same way on identical bytes stays as found.
fn recheck_online(handle: &File, check: &dyn UnitCheck, from: usize, findings: &mut Vec<Finding>) {
    let suspect =
        |f: &Finding| f.kind.is_damage() && f.unit.is_some() && f.length > 0 && f.length <= 1 << 20;
    if !findings.get(from..).unwrap_or_default().iter().any(suspect) {
        return;
    }
    let read = |f: &Finding| {
        let mut buf = vec![0u8; f.length as usize];
        match pread_fully(handle, f.offset, &mut buf) {
            Ok(n) if n == buf.len() => Some(buf),
            _ => None,
        }
    };
    let suspects = findings.split_off(from);
    let first: Vec<Option<Vec<u8>>> = suspects
        .iter()
        .map(|f| if suspect(f) { read(f) } else { None })
        .collect();
    std::thread::sleep(ONLINE_PAUSE);
    for (f, first) in suspects.into_iter().zip(first) {
        let Some(first) = first else {
            findings.push(f);
            continue;
        };
        let Some(second) = read(&f) else {
            findings.push(f);
            continue;
        };
        let mut again = Vec::new();
        check.verify(
            &Chunk {
                offset: f.offset,
                bytes: &second,
            },
            &mut again,
        );
        let why = if again.is_empty() {
            Some("the page verifies when read again: it was being written while it was scanned")
        } else if second != first {
            Some("the page's bytes changed between two reads: it is being written")
        } else {
            None
        };
        match why {
            Some(why) => {
                let mut changed = f;
                changed.kind = FindingKind::ChangedDuringScan;
                changed.detail = format!("{why} (online mode)");
                changed.expected = None;
                changed.actual = None;
                findings.push(changed);
            }
            None => findings.push(f),
        }
    }
}

fn verify_piece(
    reader: &mut Reader,
    handle: &File,
    check: &dyn UnitCheck,
    piece: &Piece,
    result: &mut TaskResult,
) {
    let before = result.findings.len();
    let (path, window) = reader.path_for(piece.len, piece.align);
    match verify_piece_with(reader, path, window, handle, check, piece, result) {
        Ok(false) => {}
        Ok(true) => {
            // A mapped page could not be read (SIGBUS): what was judged from the zeros put in
            // its place is discarded, and the range is read again with positional reads, which
            // report a truncation or an I/O error as such.
            result.findings.truncate(before);
            let mut pread = Reader::new(ReadStrategy::Pread);
            let retried = verify_piece_with(
                &mut pread,
                ReadPath::Read,
                Some(DEFAULT_CHUNK_SIZE),
                handle,
                check,
                piece,
                result,
            );
            if let Err(e) = retried {
                result
                    .findings
                    .push(read_error(piece.offset, piece.len, &e));
            }
        }
        Err(e) => result
            .findings
            .push(read_error(piece.offset, piece.len, &e)),
    }
}

/// Records that the file `id` was reached as `display`; false (and a skipped entry naming the
/// first path) when it was reached before under another path: every file is scanned once.
/// Where the first path that reached a file is kept: `seen` holds only an index, so a scan
/// of many files copies no name for it.
#[derive(Clone, Copy)]
enum FirstSight {
    /// In `report.files`.
    Scanned(usize),
    /// In the files an earlier piece verified.
    Verified(usize),
}

/// True the first time file `id` is seen (reached by `display`, to be kept at `first`); after
/// that, records it as skipped, naming the path that reached it first.
fn first_sight(
    seen: &mut std::collections::HashMap<FileId, FirstSight>,
    id: FileId,
    display: &str,
    first: FirstSight,
    report: &mut Report,
    verified: &[VerifiedFile],
) -> bool {
    let Some(&was) = seen.get(&id) else {
        seen.insert(id, first);
        return true;
    };
    let first = match was {
        FirstSight::Scanned(i) => report.files.get(i).map(|f| f.display.as_str()),
        FirstSight::Verified(i) => verified.get(i).map(|v| v.display.as_str()),
    };
    report.skipped.push(Skipped {
        path: display.to_owned(),
        reason: format!(
            "the same file as {} (same device and inode): scanned once",
            first.unwrap_or("another path")
        ),
    });
    false
}

fn read_error(offset: u64, len: u64, e: &io::Error) -> Finding {
    Finding::new(
        FindingKind::IoError,
        offset,
        len,
        format!("could not read these bytes: {}", io_message(e)),
    )
}

/// Verifies one piece through `reader` by `path`, at most `window` bytes (rounded down to the
/// piece's alignment) at a time; `Ok(true)` when a mapped page faulted (nothing counted).
fn verify_piece_with(
    reader: &mut Reader,
    path: ReadPath,
    window: Option<u64>,
    handle: &File,
    check: &dyn UnitCheck,
    piece: &Piece,
    result: &mut TaskResult,
) -> io::Result<bool> {
    let align = piece.align.max(1);
    let step = window.map_or(piece.len, |w| (w / align).max(1).saturating_mul(align));
    let mut units = 0;
    let mut done = 0;
    while done < piece.len {
        let offset = piece.offset + done;
        let len = step.min(piece.len - done);
        let outcome = reader.with_bytes(path, handle, offset, len, |bytes| {
            // Only whole aligned units are handed over; a shortfall means the file shrank.
            let usable = if (bytes.len() as u64) < len {
                let rel = bytes.len() as u64;
                (rel - rel % align) as usize
            } else {
                bytes.len()
            };
            let chunk = Chunk {
                offset,
                bytes: bytes.get(..usable).unwrap_or_default(),
            };
            let n = check.verify(&chunk, &mut result.findings);
            (n, usable as u64)
        });
        let ((n, got), faulted) = match outcome {
            Ok(o) => o,
            // A later window failed: what the earlier ones verified stands, and the error
            // covers only the rest of the piece.
            Err(e) if done > 0 => {
                result.units += units;
                result
                    .findings
                    .push(read_error(offset, piece.len - done, &e));
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if faulted {
            return Ok(true);
        }
        units += n;
        done += got;
        if got < len {
            // One finding for all the piece the file no longer holds.
            result.findings.push(Finding::new(
                FindingKind::Truncated,
                piece.offset + done,
                piece.len - done,
                "the file became shorter during the scan; these bytes could not be checked",
            ));
            break;
        }
    }
    result.units += units;
    Ok(false)
}

/// Cuts every file's extents into chunk-sized pieces on alignment boundaries; extents smaller than a
/// chunk are batched together so that many small files make tasks of a useful size.
fn plan(files: &[OpenFile], chunk_size: u64) -> Vec<Vec<Piece>> {
    let mut planner = Planner {
        tasks: Vec::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        chunk_size,
    };
    for (i, file) in files.iter().enumerate() {
        let Some(check) = &file.check else { continue };
        for extent in check.extents() {
            planner.add(i, extent);
        }
    }
    if !planner.batch.is_empty() {
        planner.tasks.push(planner.batch);
    }
    planner.tasks
}

/// The tasks planned so far, and the batch of small extents being filled.
struct Planner {
    tasks: Vec<Vec<Piece>>,
    batch: Vec<Piece>,
    batch_bytes: u64,
    chunk_size: u64,
}

impl Planner {
    /// Cuts one extent of file `file` into pieces, or adds it whole to the batch.
    fn add(&mut self, file: usize, Layout { start, end, align }: Layout) {
        if end <= start {
            return;
        }
        let align = align.max(1);
        let step = (self.chunk_size / align).max(1).saturating_mul(align);
        if end - start < self.chunk_size {
            self.batch.push(Piece {
                file,
                offset: start,
                len: end - start,
                align,
            });
            self.batch_bytes += end - start;
            if self.batch_bytes >= self.chunk_size {
                self.tasks.push(std::mem::take(&mut self.batch));
                self.batch_bytes = 0;
            }
            return;
        }
        let mut offset = start;
        while offset < end {
            let len = step.min(end - offset);
            self.tasks.push(vec![Piece {
                file,
                offset,
                len,
                align,
            }]);
            offset += len;
        }
    }
}

/// Files listed per batch handed to the pool while the walk goes on: large enough that a
/// batch costs far more than its spawn, small enough that both threads start at once.
const OPEN_BATCH: usize = 64;

thread_local! {
    /// Each worker's head buffer, kept from batch to batch.
    static HEAD_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A root, resolved.
enum Root {
    /// A file named on the command line.
    File(Target),
    /// A directory: its real path, and the path reports show.
    Dir { real: PathBuf, shown: PathBuf },
}

struct Target {
    path: PathBuf,
    display: String,
    format: Option<Arc<dyn Format>>,
    explicit: bool,
    /// Listed from a datastore whose server runs ([`crate::format::DirListing::live`]).
    live: bool,
}

struct OpenFile {
    /// Device and inode, as opened.
    id: FileId,
    /// The descriptor it was opened and judged by, kept while pieces of it remain to be read
    /// (within the descriptor budget).
    handle: Option<Arc<File>>,
    path: PathBuf,
    /// Its key in the scan state ([`crate::resume::file_key`] of `path`).
    key: String,
    explicit: bool,
    display: String,
    format: &'static str,
    findings: Vec<Finding>,
    check: Option<Arc<dyn UnitCheck>>,
    units_at_open: u64,
    recheck_after: Option<std::time::Duration>,
    /// The format's notes about the file (reported as warnings).
    notes: Vec<String>,
    bytes_at_open: u64,
    /// Bytes verified from the head while opening (a file that fits in it); not in any piece.
    verified_at_open: u64,
    /// The file's length when opened.
    len: u64,
    /// Its modification and status change times, `[seconds, nanoseconds]`.
    mtime: [i64; 2],
    ctime: [i64; 2],
    /// What an earlier piece of a resumed scan did in this file.
    resumed: Option<FileState>,
    /// Why the saved state was not used for this file.
    resume_note: Option<String>,
}

enum OpenOutcome {
    Opened(Box<OpenFile>),
    /// Judged whole while opening (it fits in the head, or its format reads it whole): nothing
    /// is left for the pieces, so only what the report and the state keep of it.
    Done(Box<DoneFile>),
    Skipped(Skipped),
    Error(PathError),
    /// The scan stopped (time limit, cancel) before this file was opened: what an earlier
    /// piece did in it is kept as it is.
    NotReached(Target),
    /// An earlier piece verified all of it, and it is unchanged: not read again.
    Verified(Box<VerifiedFile>),
}

/// A file judged whole while it was opened, as the report and the scan state keep it.
struct DoneFile {
    scanned: ScannedFile,
    key: String,
    findings: Vec<Finding>,
    notes: Vec<String>,
    units: u64,
    bytes: u64,
    /// Its state, when file states are kept (boxed: most scans keep none).
    state: Option<Box<FileState>>,
}

/// A file an earlier piece of a resumed scan verified whole.
struct VerifiedFile {
    path: PathBuf,
    key: String,
    display: String,
    id: FileId,
    state: FileState,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    file: usize,
    offset: u64,
    len: u64,
    /// Its extent's alignment: a piece may be cut only at multiples of it from `offset`.
    align: u64,
}

struct RunState<'a> {
    done: AtomicU64,
    findings: AtomicU64,
    total: u64,
    per_file: Vec<FileProgress>,
    scan_state: std::sync::Mutex<ScanState>,
    last_checkpoint: std::sync::Mutex<Instant>,
    stop: &'a Stop<'a>,
}

impl RunState<'_> {
    /// Marks a piece verified, with the findings it holds, and, when a checkpoint is due, hands
    /// the state over: what a checkpoint says is done always comes with what was found there.
    fn piece_done(
        &self,
        key: &str,
        piece: &Piece,
        found: &[Finding],
        checkpoint: Option<&(std::time::Duration, Arc<CheckpointFn>)>,
    ) {
        let mut st = self.scan_state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = st.files.get_mut(key) {
            f.add(piece.offset, piece.offset + piece.len);
        }
        // Kept only when someone saves the state; folded into the run before where it
        // continues it.
        if checkpoint.is_some() {
            for f in found {
                let joined = st
                    .pending
                    .last_mut()
                    .is_some_and(|last| last.finding.try_extend(f));
                if !joined {
                    st.pending.push(crate::resume::StateFinding::keep(f));
                }
            }
        }
        if let Some((every, cb)) = checkpoint {
            let mut last = self
                .last_checkpoint
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.elapsed() >= *every {
                *last = Instant::now();
                cb(&st);
            }
        }
    }
}

/// One file's findings on their way to `on_file_findings`: handed over in offset order as
/// soon as every range before them is verified (pieces may finish out of order), except a run
/// that reaches the verified frontier and may go on in the next piece.
struct FileProgress {
    inner: std::sync::Mutex<FileStream>,
}

struct FileStream {
    /// The file's pieces, `(offset, end)`, sorted.
    pieces: Vec<(u64, u64)>,
    /// The first piece not yet folded into `queue`.
    next: usize,
    /// Findings of pieces done ahead of the frontier, by piece offset.
    done: std::collections::HashMap<u64, Vec<Finding>>,
    /// Findings in offset order not yet handed over.
    queue: Vec<Finding>,
}

impl FileProgress {
    /// Records piece `offset` done with `found`, and hands over what is now final.
    fn add(&self, offset: u64, found: &[Finding], cb: &FileDoneFn) {
        {
            let mut s = self.lock();
            s.done.insert(offset, found.to_vec());
            while let Some(&(o, _)) = s.pieces.get(s.next) {
                let Some(f) = s.done.remove(&o) else {
                    break;
                };
                s.queue.extend(f);
                s.next += 1;
            }
            // Sorted, then merged: an open-time finding further on (a partial last page)
            // sits in the queue after the run a new piece continues, and must not split it.
            crate::report::normalize_file(&mut s.queue);
        }
        self.flush(cb);
    }

    /// Hands over the findings before the verified frontier (all of them once every piece is
    /// done), holding back a run that touches the frontier.
    fn flush(&self, cb: &FileDoneFn) {
        // Under the file's lock: one file's batches reach the callback in offset order.
        let mut s = self.lock();
        let out: Vec<Finding> = match s.pieces.get(s.next) {
            None => std::mem::take(&mut s.queue),
            Some(&(frontier, _)) => {
                let ready = s
                    .queue
                    .iter()
                    .take_while(|f| f.offset.saturating_add(f.length) < frontier)
                    .count();
                s.queue.drain(..ready).collect()
            }
        };
        if !out.is_empty() {
            cb(&out);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FileStream> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct TaskResult {
    findings: Vec<Finding>,
    units: u64,
    bytes: u64,
    cancelled: bool,
}

/// One sentence for an I/O error, without Rust's debug formatting.
pub(crate) fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            // "Input/output error (os error 5)" → "Input/output error (os error 5)"; keep as is
            // but start lower-case so it reads as part of a sentence.
            let mut chars = s.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => s,
            }
        }
    }
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// The resolved path of `root`, when the system can open it by that path (a path longer
/// than `PATH_MAX`, reachable only relative to a deep working directory, cannot be): else the
/// path as given.
fn usable(real: PathBuf, root: &Path) -> PathBuf {
    if fs::symlink_metadata(&real).is_ok() {
        real
    } else {
        root.to_path_buf()
    }
}

/// Why a dbfsck folder is skipped, for every walk (the engine's and a format's listing).
pub(crate) const DBFSCK_DIR_REASON: &str =
    "dbfsck's own folder (undo logs, quarantine), not scanned";

/// Whether a directory is dbfsck's own: a `.dbfsck` folder, or a quarantine a repair made.
/// Walks skip it so quarantined bytes are never scanned as data.
pub(crate) fn is_dbfsck_dir(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == DBFSCK_DIR) || is_quarantine_dir(dir)
}

/// Whether `dir` is a quarantine: it holds the marker and nothing but what a repair puts there
/// (the manifest and content-addressed copies). A marker among other files hides nothing: a
/// folder of data with a marker planted in it is still scanned.
pub fn is_quarantine_dir(dir: &Path) -> bool {
    if !dir.join(QUARANTINE_MARKER).exists() {
        return false;
    }
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.into_iter().all(|e| {
            e.is_ok_and(|e| {
                e.file_type().is_ok_and(|t| t.is_file()) && is_quarantine_entry(&e.file_name())
            })
        })
    })
}

/// Whether a file name is one a quarantine holds: the marker, the manifest, or a copy named by
/// the SHA-256 of its bytes.
pub fn is_quarantine_entry(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name == QUARANTINE_MARKER
        || name == QUARANTINE_MANIFEST
        || name.strip_suffix(".bin").is_some_and(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}
