//! `dbfsck-gen`: writes a reproducible native dataset through the library's writer and prints a
//! JSON summary (DESIGN.md, "Dataset generator"). Same seed, same bytes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dbfsck_core::native::ChecksumAlgo;
use dbfsck_testkit::{write_dataset, Spec};

#[derive(Parser, Debug)]
#[command(
    name = "dbfsck-gen",
    version,
    about = "Write a reproducible native dataset for tests and benchmarks"
)]
struct Args {
    /// Directory to write into (created if missing; must not hold the files already).
    #[arg(long)]
    out: PathBuf,
    /// Total size, about (4096, 64MiB, 1GiB, 500M).
    #[arg(long, value_parser = parse_size)]
    size: u64,
    /// Number of files.
    #[arg(long, default_value_t = 1)]
    files: usize,
    /// Page size in bytes (a power of two from 4096 to 65536).
    #[arg(long, default_value_t = 8192)]
    page_size: usize,
    /// Checksum algorithm: crc32 or xxh3.
    #[arg(long, default_value = "xxh3")]
    checksum: ChecksumAlgo,
    /// Seed of the contents and file ids.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_size(s: &str) -> Result<u64, String> {
    dbfsck_core::units::parse_size(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !dbfsck_core::native::layout::is_valid_page_size(args.page_size as u64) {
        eprintln!(
            "dbfsck-gen: --page-size {} is not a power of two from 4096 to 65536",
            args.page_size
        );
        return ExitCode::from(16);
    }
    if args.files == 0 {
        eprintln!("dbfsck-gen: --files must be at least 1");
        return ExitCode::from(16);
    }
    let per_file = args.size / args.files as u64;
    let pages = (per_file / args.page_size as u64).max(2);
    let spec = Spec {
        files: args.files,
        pages,
        page_size: args.page_size,
        checksum: args.checksum,
        seed: args.seed,
    };
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("dbfsck-gen: could not create {}: {e}", args.out.display());
        return ExitCode::from(8);
    }
    let files = match write_dataset(&args.out, &spec) {
        Ok((files, _)) => files,
        Err(e) => {
            eprintln!("dbfsck-gen: could not write the dataset: {e}");
            return ExitCode::from(8);
        }
    };
    let summary = serde_json::json!({
        "page_size": args.page_size,
        "checksum": args.checksum.name(),
        "files": files.iter().map(|f| serde_json::json!({
            "path": f.path.to_string_lossy(),
            "pages": f.pages,
        })).collect::<Vec<_>>(),
        "journals": [],
        "journaled_pages": {},
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    ExitCode::SUCCESS
}
