//! `dbfsck`: fsck for storage engines. A thin command line over `dbfsck-core`: argument parsing,
//! printing and exit codes; every decision a library user would also need lives in the library.

mod human;
mod inspect;
mod progress;

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use dbfsck_core::{exit, ReadStrategy, Report, Scanner};
use dbfsck_repair::plan::Plan;
use dbfsck_repair::{repair, FsStorage, RepairOptions};

#[derive(Parser, Debug)]
#[command(
    name = "dbfsck",
    version,
    about = "fsck for storage engines: verify every page checksum of a datastore, on every core",
    after_help = "Exit codes (bits combine, as e2fsck): 0 nothing wrong, 1 all damage repaired, \
                  4 damage left, 8 operational error, 16 usage error, 32 cancelled."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify every page of the files under PATH… and report what is damaged; with --repair,
    /// rebuild what a journal can and quarantine the rest.
    Scan(ScanArgs),
    /// Restore every byte a repair changed, exactly, from its undo log.
    Undo(UndoArgs),
    /// Decode one page: header fields, stored vs computed checksum, verdict, hexdump (and the
    /// newest committed journal image of the page beside it, when one exists).
    Inspect(InspectArgs),
    /// List the formats dbfsck knows and what each checks.
    Formats,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `dbfsck man > dbfsck.1`.
    Man,
}

#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// The file.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// The page (unit) number.
    #[arg(long, value_name = "N", required_unless_present_any = ["lsn", "blocks"])]
    pub(crate) page: Option<u64>,
    /// A RocksDB or LevelDB table: list every block (kind, offset, size, checksum verdict)
    /// instead of one.
    #[arg(long, conflicts_with_all = ["page", "lsn"])]
    pub(crate) blocks: bool,
    /// A PostgreSQL WAL segment: the page holding this LSN (`X/Y`), instead of `--page`.
    #[arg(long, value_name = "LSN", conflicts_with = "page")]
    pub(crate) lsn: Option<String>,
    /// File format: `auto` detects it by magic.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub(crate) format: String,
}

#[derive(clap::Args, Debug)]
struct UndoArgs {
    /// The undo log a `scan --repair` wrote (its report names it).
    #[arg(value_name = "UNDO_LOG")]
    log: PathBuf,
    /// Write even when another process holds a file's lock.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args, Debug)]
struct ScanArgs {
    /// Files and directories to scan.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// File format: `auto` detects it per file (by magic) and per directory (by markers).
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    format: String,
    /// Worker threads; 0 uses every CPU.
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
    /// Read with positional reads only (default: maps or reads, whichever the scan measures
    /// faster).
    #[arg(long)]
    no_mmap: bool,
    /// Read with memory maps only.
    #[arg(long, conflicts_with = "no_mmap")]
    mmap: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Print nothing but findings and errors (human output); JSON outputs are unchanged.
    /// Also hides the progress bar unless --progress always.
    #[arg(long, short)]
    quiet: bool,
    /// Progress bar on stderr: `auto` when stderr is a terminal and not --quiet.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Read at most this many bytes per second, all threads together (e.g. 200MiB/s, 1G);
    /// for live systems and cron windows. Default: no limit.
    #[arg(long, value_name = "BYTES/s", value_parser = parse_rate)]
    max_rate: Option<u64>,
    /// Run at idle I/O priority (ioprio class idle) and the lowest CPU priority (nice 19), so the
    /// datastore's own I/O always goes first.
    #[arg(long)]
    idle: bool,
    /// The datastore is running: a failing page is read twice more (at once and after 100 ms);
    /// one that verifies or changes is reported as changed_during_scan, not damage.
    #[arg(long)]
    online: bool,
    /// PostgreSQL: the block size to assume where no usable pg_control says (1024 to 32768,
    /// a power of two) [default: 8192].
    #[arg(long, value_name = "BYTES", value_parser = parse_pg_block_size)]
    pg_block_size: Option<u32>,
    /// PostgreSQL: the WAL archive (archive_command's directory) base backups are restored
    /// from. It is scanned too; each backup of the scan, and each backup the archive's backup
    /// history files name, gets a restore verdict (`summary.restores`): how far a restore gets,
    /// and the first obstacle.
    #[arg(long, value_name = "DIR")]
    wal_archive: Option<PathBuf>,
    /// Stop cleanly after DURATION (30s, 5m, 2h): the report says `complete: false`; with
    /// --state, --resume continues where it stopped.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    time_limit: Option<std::time::Duration>,
    /// Save the scan's position to FILE, with the findings of every range it marks verified
    /// (atomically, every --state-every and at the end), for --resume.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Continue the scan saved in --state FILE (a missing, complete or unusable state starts a
    /// new scan; an unusable one with a warning).
    #[arg(long, requires = "state")]
    resume: bool,
    /// How often --state FILE is saved while the scan runs.
    #[arg(long, requires = "state", value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    state_every: std::time::Duration,
    /// Write Prometheus metrics of this scan to FILE (atomically: a temporary file, fsync,
    /// rename), for node_exporter's textfile collector.
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
    /// Repair: restore damaged pages from verified journal images, quarantine the rest.
    /// Every byte changed is first saved to an undo log.
    #[arg(long)]
    repair: bool,
    /// With --repair: print the plan and change nothing.
    #[arg(long, requires = "repair")]
    dry_run: bool,
    /// With --repair: the undo log to write [default: ROOT/.dbfsck/undo-TIME-PID.log; for an
    /// InnoDB data directory PARENT/.dbfsck/NAME/undo-TIME-PID.log, beside it].
    #[arg(long, requires = "repair", value_name = "FILE")]
    undo_log: Option<PathBuf>,
    /// With --repair: where damaged bytes are copied [default: ROOT/.dbfsck/quarantine; for an
    /// InnoDB data directory PARENT/.dbfsck/NAME/quarantine].
    #[arg(long, requires = "repair", value_name = "DIR")]
    quarantine: Option<PathBuf>,
    /// With --repair: repair even if the datastore appears to be running (its files are locked).
    #[arg(long, requires = "repair")]
    force: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ProgressMode {
    /// When stderr is a terminal and --quiet is not given.
    Auto,
    /// Always, even when stderr is not a terminal.
    Always,
    /// Never.
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Findings grouped by file, then a summary.
    Human,
    /// One JSON document (schema_version 1).
    Json,
    /// JSON Lines: one finding, error or skipped path per line, then a summary line.
    Jsonl,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; anything else is a usage error (16).
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => code(exit::USAGE),
            };
        }
    };
    match cli.command {
        Command::Scan(args) => scan(&args),
        Command::Undo(args) => undo(&args),
        Command::Formats => formats(),
        Command::Inspect(args) => inspect::run(&args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "dbfsck", &mut io::stdout());
            code(exit::OK)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut io::stdout()) {
                Ok(()) => code(exit::OK),
                Err(e) => {
                    eprintln!("dbfsck: could not write the man page: {e}");
                    code(exit::OPERATIONAL)
                }
            }
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    dbfsck_core::units::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_pg_block_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && (1024..=32768).contains(&n) => Ok(n),
        _ => Err("a PostgreSQL block size is a power of two from 1024 to 32768".into()),
    }
}

fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.strip_suffix("/s").unwrap_or(s);
    match dbfsck_core::units::parse_size(s) {
        Ok(0) => Err("the rate must be above 0".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(u8::MAX))
}

/// Why the quarantine directory cannot be used, if it cannot: it is, or contains, a scanned root
/// (its marker would hide the data from every later scan), or it holds files no repair put
/// there.
fn quarantine_conflict(q: &std::path::Path, roots: &[PathBuf]) -> Option<String> {
    let real = real_path(q);
    for root in roots {
        let Ok(r) = std::fs::canonicalize(root) else {
            continue;
        };
        if r.starts_with(&real) {
            return Some(format!(
                "the quarantine directory {} is or contains the scanned path {}: its marker would hide that data from every later scan; name a directory outside the data",
                q.display(),
                root.display()
            ));
        }
    }
    let stray = std::fs::read_dir(q).ok()?.find_map(|e| {
        let e = e.ok()?;
        (!dbfsck_core::is_quarantine_entry(&e.file_name())).then(|| e.path())
    })?;
    Some(format!(
        "the quarantine directory {} already holds {}, which no repair put there; name an empty directory or an earlier quarantine",
        q.display(),
        stray.display()
    ))
}

/// `p` with every existing part resolved (symbolic links followed), the rest appended.
fn real_path(p: &std::path::Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(r) = std::fs::canonicalize(cur) {
            return rest.iter().rev().fold(r, |acc: PathBuf, c| acc.join(c));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

fn scan(args: &ScanArgs) -> ExitCode {
    if let Some(q) = args.quarantine.as_deref().filter(|_| args.repair) {
        if let Some(why) = quarantine_conflict(q, &args.paths) {
            eprintln!("dbfsck: {why}");
            return code(exit::USAGE);
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    // First Ctrl-C (or SIGTERM, as systemd and timeout send): stop starting new chunks and
    // print the partial report (exit bit 32). A second one during the scan: exit at once.
    let mut hard_stops = Vec::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Ok(id) =
            signal_hook::flag::register_conditional_shutdown(sig, exit::CANCELLED, cancel.clone())
        {
            hard_stops.push(id);
        }
        let _ = signal_hook::flag::register(sig, cancel.clone());
    }

    if args.idle {
        // Before the worker pool exists: its threads inherit the priority.
        if let Err(e) = dbfsck_core::set_idle_priority() {
            eprintln!(
                "dbfsck: could not lower the I/O priority ({e}); scanning at normal priority"
            );
        }
    }
    // --mmap and --no-mmap conflict (clap); without either, the engine chooses as it goes.
    let strategy = match (args.mmap, args.no_mmap) {
        (true, _) => ReadStrategy::Mmap,
        (false, true) => ReadStrategy::Pread,
        (false, false) => ReadStrategy::Auto,
    };
    let show = match args.progress {
        ProgressMode::Always => true,
        ProgressMode::Never => false,
        ProgressMode::Auto => !args.quiet && io::stderr().is_terminal(),
    };
    let bar = show.then(|| progress::bar(args.progress == ProgressMode::Always));
    let mut formats = dbfsck_core::builtin_formats();
    if args.pg_block_size.is_some() || args.wal_archive.is_some() {
        for f in &mut formats {
            if f.name() == dbfsck_core::postgres::PostgresFormat::NAME {
                *f = Arc::new(
                    dbfsck_core::postgres::PostgresFormat::with_block_size(args.pg_block_size)
                        .with_wal_archive(args.wal_archive.clone()),
                );
            }
        }
    }
    // The archive is verified with the rest: a root of its own unless a root holds it.
    let mut paths = args.paths.clone();
    if let Some(a) = &args.wal_archive {
        let real = std::fs::canonicalize(a).ok();
        let held = real.as_ref().is_some_and(|r| {
            paths
                .iter()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .any(|p| r.starts_with(p))
        });
        if !held {
            paths.push(a.clone());
        }
    }
    let scanner = match Scanner::with_formats(formats).format(Some(&args.format)) {
        Ok(s) => s
            .threads(args.threads)
            .read_strategy(strategy)
            .max_rate(args.max_rate)
            .cancel_flag(cancel.clone()),
        Err(e) => {
            eprintln!("dbfsck: {e}");
            return code(exit::USAGE);
        }
    };
    // A missing, unreadable or unusable state starts a new scan, saying so: a nightly job that
    // always passes --resume must never stop scanning because of its own state file.
    let mut state_warning = None;
    let resume = match (&args.state, args.resume) {
        (Some(path), true) => match std::fs::read_to_string(path) {
            Ok(text) => match dbfsck_core::ScanState::parse(&text) {
                Ok(s) => Some(s),
                Err(e) => {
                    state_warning = Some(format!("cannot resume from it ({e}); a new scan starts"));
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                state_warning = Some(format!("cannot read it ({e}); a new scan starts"));
                None
            }
        },
        _ => None,
    };
    if let (Some(w), Some(path)) = (&state_warning, &args.state) {
        eprintln!("dbfsck: {}: {w}", path.display());
    }
    let scanner = scanner
        .time_limit(args.time_limit)
        .resume(resume)
        .online(args.online)
        // Every file's state is kept only for a state file to save.
        .file_states(args.state.is_some());
    let scanner = match &args.state {
        Some(path) => {
            let path = path.clone();
            scanner.on_checkpoint(args.state_every, move |s| {
                let _ = write_atomically(&path, s.to_json().as_bytes());
            })
        }
        None => scanner,
    };
    let scanner = match &bar {
        Some(bar) => {
            let bar = bar.clone();
            scanner.on_progress(move |p| progress::update(&bar, p))
        }
        None => scanner,
    };
    // JSON Lines stream findings as soon as the ranges before them are verified; each one is
    // remembered (by file, offset and kind) so the end of the report does not repeat it.
    let streamed: Arc<std::sync::Mutex<Streamed>> = Arc::default();
    let scanner = if args.output == Output::Jsonl {
        let streamed = streamed.clone();
        scanner.on_file_findings(move |findings| {
            let mut out = io::stdout().lock();
            let mut seen = streamed.lock().unwrap_or_else(|p| p.into_inner());
            for f in findings {
                let _ = serde_json::to_writer(&mut out, &dbfsck_core::finding_json_line(f));
                let _ = writeln!(out);
                seen.insert(streamed_key(f));
            }
            let _ = out.flush();
        })
    } else {
        scanner
    };
    let scanned = scanner.scan(&paths);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let mut report = match scanned {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbfsck: {e}");
            return code(exit::OPERATIONAL);
        }
    };
    if let (Some(w), Some(path)) = (state_warning, &args.state) {
        report.warnings.insert(
            0,
            dbfsck_core::PathError {
                path: path.to_string_lossy().into_owned(),
                message: w,
            },
        );
    }
    let plan = (args.repair && !report.cancelled).then(|| {
        let base = args
            .paths
            .first()
            .map(|p| {
                if p.is_dir() {
                    p.clone()
                } else {
                    p.parent().map(PathBuf::from).unwrap_or_default()
                }
            })
            .unwrap_or_default();
        let defaults = RepairOptions::for_root(&base);
        // A repair is never killed by a second signal: it stops at its next safe point (between
        // ranges, after the undo log is sealed) and reports what it did.
        for id in hard_stops.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        let options = RepairOptions {
            dry_run: args.dry_run,
            undo_log: args.undo_log.clone().unwrap_or(defaults.undo_log),
            quarantine_dir: args.quarantine.clone().unwrap_or(defaults.quarantine_dir),
            force: args.force,
            cancel: Some(cancel.clone()),
        };
        repair(&mut report, &FsStorage, &options)
    });
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let streamed = std::mem::take(&mut *streamed.lock().unwrap_or_else(|p| p.into_inner()));
    let printed = print_report(&report, plan.as_ref(), args, threads, &streamed);
    let mut rc = report.exit_code();
    if let Some(path) = &args.state {
        if let Err(e) = write_atomically(path, report.scan_state.to_json().as_bytes()) {
            eprintln!(
                "dbfsck: could not save the scan state to {}: {e}",
                path.display()
            );
            rc |= exit::OPERATIONAL;
        }
    }
    if let Some(path) = &args.prometheus {
        if let Err(e) = write_metrics(path, &report) {
            eprintln!(
                "dbfsck: could not write the metrics to {}: {e}",
                path.display()
            );
            rc |= exit::OPERATIONAL;
        }
    }
    if let Err(e) = printed {
        // A closed pipe is the reader's choice; anything else means the report was lost.
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("dbfsck: could not write the report: {e}");
            rc |= exit::OPERATIONAL;
        }
    }
    code(rc)
}

/// The findings JSON Lines already printed while the scan ran.
type Streamed = std::collections::HashSet<(Option<PathBuf>, String, u64, dbfsck_core::FindingKind)>;

fn streamed_key(
    f: &dbfsck_core::Finding,
) -> (Option<PathBuf>, String, u64, dbfsck_core::FindingKind) {
    (f.file.clone(), f.path.clone(), f.offset, f.kind)
}

fn print_report(
    report: &Report,
    plan: Option<&Plan>,
    args: &ScanArgs,
    threads: usize,
    streamed: &Streamed,
) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match args.output {
        Output::Human => {
            let color = human::use_color();
            let ctx = human::Context {
                threads,
                quiet: args.quiet,
                color,
                plan,
                dry_run: args.dry_run,
                paths: &args.paths,
            };
            human::render(&mut out, report, &ctx)?;
        }
        Output::Json => {
            report.write_json(&mut out)?;
            writeln!(out)?;
        }
        Output::Jsonl => {
            // Findings of files not streamed during the scan (a cancelled scan's), then the rest.
            let rest = report
                .findings
                .iter()
                .filter(|f| !streamed.contains(&streamed_key(f)));
            for line in rest
                .map(dbfsck_core::finding_json_line)
                .chain(report.json_lines_after_findings())
            {
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()
}

fn undo(args: &UndoArgs) -> ExitCode {
    match dbfsck_repair::undo(&FsStorage, &args.log, args.force) {
        Ok(o) => {
            println!(
                "restored {} range{} and {} file length{} in {} file{} from {}",
                o.ranges,
                if o.ranges == 1 { "" } else { "s" },
                o.lengths,
                if o.lengths == 1 { "" } else { "s" },
                o.files.len(),
                if o.files.len() == 1 { "" } else { "s" },
                args.log.display()
            );
            for f in &o.files {
                println!("  {}", f.display());
            }
            code(exit::OK)
        }
        Err(e) => {
            eprintln!("dbfsck: {e}");
            code(exit::OPERATIONAL)
        }
    }
}

fn formats() -> ExitCode {
    for f in dbfsck_core::builtin_formats() {
        println!("{:<10} {}", f.name(), f.description());
    }
    println!(
        "{:<10} detect each file by its magic and each directory by its markers (the default)",
        "auto"
    );
    code(exit::OK)
}

/// Writes the metrics file atomically: a temporary file beside it, fsync, rename, fsync the
/// directory. The last clean scan's time carries over from the file being replaced.
fn write_metrics(path: &std::path::Path, report: &Report) -> io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let previous = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| dbfsck_core::previous_clean_timestamp(&t));
    write_atomically(path, report.to_prometheus(now, previous).as_bytes())
}

/// Replaces `path` with `bytes` atomically: a temporary file beside it, fsync, rename, fsync the
/// directory. A reader sees the old file or the new one, never half of one.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
