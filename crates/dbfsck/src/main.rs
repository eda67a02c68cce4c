//! `dbfsck`: fsck for storage engines. A thin command line over `dbfsck-core`: argument parsing,
//! printing and exit codes; every decision a library user would also need lives in the library.

mod human;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use dbfsck_core::{exit, ReadStrategy, Report, Scanner};

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
    /// Verify every page of the files under PATH… and report what is damaged.
    Scan(ScanArgs),
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
    /// Read with positional reads instead of memory maps.
    #[arg(long)]
    no_mmap: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Print nothing but findings and errors (human output); JSON outputs are unchanged.
    #[arg(long, short)]
    quiet: bool,
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
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(u8::MAX))
}

fn scan(args: &ScanArgs) -> ExitCode {
    let cancel = Arc::new(AtomicBool::new(false));
    // First Ctrl-C: stop starting new chunks and print the partial report (exit bit 32).
    // Second Ctrl-C: exit at once.
    let _ = signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        exit::CANCELLED,
        cancel.clone(),
    );
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, cancel.clone());

    let strategy = if args.no_mmap {
        ReadStrategy::Pread
    } else {
        ReadStrategy::Mmap
    };
    let scanner = match Scanner::new().format(Some(&args.format)) {
        Ok(s) => s
            .threads(args.threads)
            .read_strategy(strategy)
            .cancel_flag(cancel),
        Err(e) => {
            eprintln!("dbfsck: {e}");
            return code(exit::USAGE);
        }
    };
    let report = match scanner.scan(&args.paths) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbfsck: {e}");
            return code(exit::OPERATIONAL);
        }
    };
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    let printed = print_report(&report, args, threads);
    let mut rc = report.exit_code();
    if let Err(e) = printed {
        // A closed pipe is the reader's choice; anything else means the report was lost.
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("dbfsck: could not write the report: {e}");
            rc |= exit::OPERATIONAL;
        }
    }
    code(rc)
}

fn print_report(report: &Report, args: &ScanArgs, threads: usize) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match args.output {
        Output::Human => {
            let color = human::use_color();
            human::render(&mut out, report, threads, args.quiet, color)?;
        }
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &report.to_json())?;
            writeln!(out)?;
        }
        Output::Jsonl => {
            for line in report.to_json_lines() {
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()
}
