//! Whole scans through the engine on a generated native dataset (16 files, 8 KiB pages):
//! 1 thread vs all, memory maps vs positional reads, crc32 vs xxh3, one huge file vs many.
//! Size: `DBFSCK_BENCH_BYTES` (default 2GiB); data lives in a temp dir (or `DBFSCK_BENCH_DIR`)
//! and is read warm from the page cache after the first pass.
//! `cargo bench -p dbfsck-bench --bench scan`

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dbfsck_core::native::ChecksumAlgo;
use dbfsck_core::{ReadStrategy, Scanner};
use dbfsck_testkit::{write_dataset, Spec};

fn dataset(root: &Path, name: &str, bytes: u64, files: usize, checksum: ChecksumAlgo) -> PathBuf {
    let dir = root.join(name);
    if !dir.exists() {
        std::fs::create_dir_all(&dir).expect("create dataset dir");
        let pages = bytes / files as u64 / 8192;
        let spec = Spec {
            files,
            pages,
            page_size: 8192,
            checksum,
            seed: 1,
        };
        write_dataset(&dir, &spec).expect("write dataset");
    }
    dir
}

fn scan(c: &mut Criterion) {
    let bytes = std::env::var("DBFSCK_BENCH_BYTES")
        .ok()
        .and_then(|s| dbfsck_core::units::parse_size(&s).ok())
        .unwrap_or(2 << 30);
    let tmp;
    let root = match std::env::var_os("DBFSCK_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("temp dir");
            tmp.path().to_path_buf()
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut g = c.benchmark_group("scan");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(bytes));
    for (name, files, algo) in [
        ("16files-xxh3", 16, ChecksumAlgo::Xxh3),
        ("16files-crc32", 16, ChecksumAlgo::Crc32),
        ("1file-xxh3", 1, ChecksumAlgo::Xxh3),
    ] {
        let dir = dataset(&root, name, bytes, files, algo);
        for (strategy, sname) in [(ReadStrategy::Mmap, "mmap"), (ReadStrategy::Pread, "pread")] {
            for threads in [1, cpus] {
                let scanner = Scanner::new().threads(threads).read_strategy(strategy);
                let id = BenchmarkId::new(format!("{name}/{sname}"), format!("{threads}t"));
                g.bench_function(id, |b| {
                    b.iter(|| {
                        let r = scanner.scan(&[&dir]).expect("scan");
                        assert!(r.findings.is_empty());
                        r.summary.bytes
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
