//! `dbfsck-gen`: writes a reproducible native dataset through the library's writer and prints a
//! JSON summary (DESIGN.md, "Dataset generator"). Same seed, same bytes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dbfsck_core::native::ChecksumAlgo;
use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite};
use dbfsck_testkit::{fill_body, rng, write_dataset, GenFile, Spec, DATA_PAGE};
use rand_xoshiro::rand_core::Rng;

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
    /// Then rewrite at least a tenth of every file's pages through the journaled writer, so the
    /// journal (`journal.dbfj`) holds committed images of the most recent writes.
    #[arg(long)]
    journal: bool,
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
    let (files, next_lsn) = match write_dataset(&args.out, &spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dbfsck-gen: could not write the dataset: {e}");
            return ExitCode::from(8);
        }
    };
    let mut journals = Vec::new();
    let mut journaled = serde_json::Map::new();
    if args.journal {
        match write_journaled(&args.out, &files, args.seed, next_lsn) {
            Ok((journal, pages)) => {
                journals.push(journal.to_string_lossy().into_owned());
                for (path, list) in pages {
                    journaled.insert(path.to_string_lossy().into_owned(), list.into());
                }
            }
            Err(e) => {
                eprintln!("dbfsck-gen: could not write through the journal: {e}");
                return ExitCode::from(8);
            }
        }
    }
    let summary = serde_json::json!({
        "page_size": args.page_size,
        "checksum": args.checksum.name(),
        "files": files.iter().map(|f| serde_json::json!({
            "path": f.path.to_string_lossy(),
            "pages": f.pages,
        })).collect::<Vec<_>>(),
        "journals": journals,
        "journaled_pages": journaled,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    ExitCode::SUCCESS
}

/// Per data file, the pages whose latest committed image is in the journal.
type JournaledPages = Vec<(PathBuf, Vec<u64>)>;

/// Pages written per journal batch.
const BATCH: usize = 64;

/// Rewrites every eighth page of each file (at least a tenth of its pages) with a new body and a
/// newer LSN through the journaled writer, in batches of 64 pages; the journal is never recycled,
/// so it keeps the latest committed image of each of those pages.
fn write_journaled(
    dir: &std::path::Path,
    files: &[GenFile],
    seed: u64,
    mut lsn: u64,
) -> Result<(PathBuf, JournaledPages), Box<dyn std::error::Error>> {
    let mut rng = rng(seed ^ 0x006a_6f75_726e_616c);
    let journal = dir.join("journal.dbfj");
    let options = JournalOptions {
        capacity: None,
        journal_id: Some(rng.next_u64()),
    };
    let mut store = JournaledStore::create(FsStorage, &journal, options)?;
    let mut out = Vec::new();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for f in files {
        let h = store.open_file(&f.path)?;
        let body_len = store.params(h)?.page_size - 48;
        let offset = rng.next_u64() % 8;
        let mut pages: Vec<u64> = (1..f.pages)
            .filter(|p| (p + offset).is_multiple_of(8))
            .collect();
        let mut extra = 1;
        while (pages.len() as u64) * 10 < f.pages && extra < f.pages {
            if !pages.contains(&extra) {
                pages.push(extra);
            }
            extra += 1;
        }
        pages.sort_unstable();
        for chunk in pages.chunks(BATCH) {
            bodies.clear();
            for _ in chunk {
                let mut body = vec![0u8; body_len];
                fill_body(&mut rng, &mut body);
                bodies.push(body);
            }
            let mut writes = Vec::with_capacity(chunk.len());
            for (page_no, body) in chunk.iter().zip(&bodies) {
                writes.push(PageWrite {
                    file: h,
                    page_no: *page_no,
                    page_type: DATA_PAGE,
                    flags: 0,
                    lsn,
                    body,
                });
            }
            store.commit(&writes)?;
            lsn += 1;
        }
        out.push((f.path.clone(), pages));
    }
    Ok((journal, out))
}
