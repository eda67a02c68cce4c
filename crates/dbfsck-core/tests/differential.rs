//! Differential tests across code paths: memory maps vs positional reads, one thread vs many,
//! small chunks vs large — every combination must produce the identical report.

use dbfsck_core::native::ChecksumAlgo;
use dbfsck_core::{ReadStrategy, Report, Scanner};
use dbfsck_testkit::{prefix_tear, Dataset, Fault, Spec};

fn damaged_dataset(dir: &std::path::Path) -> Dataset {
    let spec = Spec {
        files: 5,
        pages: 300,
        page_size: 4096,
        checksum: ChecksumAlgo::Xxh3,
        seed: 42,
    };
    let mut ds = Dataset::generate(dir, spec).unwrap();
    let mut rng = dbfsck_testkit::rng(5);
    for (i, page) in (1..300).step_by(7).enumerate() {
        let file = i % 5;
        let fault = match i % 4 {
            0 => Fault::BitFlip {
                byte: (i * 37) % 4096,
                bit: (i % 8) as u8,
            },
            1 => Fault::Torn {
                from_new: prefix_tear(8, 1 + i % 7),
            },
            2 => Fault::Misdirected {
                file: (file + 1) % 5,
                page: 1 + (page % 299),
            },
            _ => Fault::Zeroed,
        };
        ds.inject(file, page, &fault, &mut rng);
    }
    ds.truncate_mid_page(3, 250, 100);
    ds.damage_header(4, 36);
    ds.write_back().unwrap();
    ds
}

/// The report without wall-clock time, which legitimately differs.
fn comparable(mut r: Report) -> Report {
    r.summary.elapsed_s = 0.0;
    r.scan_state.cycle.started = 0;
    if let Some(c) = r.cycle.as_mut() {
        c.started = 0;
    }
    r
}

#[test]
fn mmap_pread_threads_and_chunk_sizes_agree() {
    let dir = tempfile::tempdir().unwrap();
    damaged_dataset(dir.path());
    let baseline = comparable(
        Scanner::new()
            .threads(1)
            .read_strategy(ReadStrategy::Pread)
            .scan(&[dir.path()])
            .unwrap(),
    );
    assert!(baseline.findings.len() > 40, "{}", baseline.findings.len());
    for strategy in [ReadStrategy::Auto, ReadStrategy::Mmap, ReadStrategy::Pread] {
        for threads in [1, 2, 3, 8] {
            for chunk in [4096, 3 * 4096, 64 * 1024, 4 << 20] {
                let r = Scanner::new()
                    .threads(threads)
                    .read_strategy(strategy)
                    .chunk_size(chunk)
                    .scan(&[dir.path()])
                    .unwrap();
                assert_eq!(
                    comparable(r),
                    baseline,
                    "{strategy:?} threads={threads} chunk={chunk}"
                );
            }
        }
    }
}

/// The default strategy maps some 16 MiB pieces and reads others 4 MiB at a time (it tries
/// both before it chooses): damage on either side of a window's edge, and a file cut short in a
/// later window, are reported exactly as by one path alone.
#[test]
fn auto_reads_large_pieces_in_windows_and_agrees_with_each_path() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        files: 4,
        pages: 3000,
        page_size: 8192,
        checksum: ChecksumAlgo::Xxh3,
        seed: 7,
    };
    let mut ds = Dataset::generate(dir.path(), spec).unwrap();
    let mut rng = dbfsck_testkit::rng(9);
    // 512 pages of 8 KiB are one 4 MiB window; 2048 are one 16 MiB piece.
    for file in 0..4 {
        for page in [511u64, 512, 1023, 1024, 2047, 2048, 2560] {
            let fault = Fault::BitFlip {
                byte: (page as usize * 13) % 8192,
                bit: (page % 8) as u8,
            };
            ds.inject(file, page, &fault, &mut rng);
        }
    }
    ds.truncate_mid_page(2, 2600, 100);
    ds.write_back().unwrap();
    let baseline = comparable(
        Scanner::new()
            .threads(1)
            .read_strategy(ReadStrategy::Pread)
            .scan(&[dir.path()])
            .unwrap(),
    );
    assert!(baseline.findings.len() >= 4 * 7, "{:#?}", baseline.findings);
    for strategy in [ReadStrategy::Auto, ReadStrategy::Mmap] {
        for threads in [1, 2] {
            let r = Scanner::new()
                .threads(threads)
                .read_strategy(strategy)
                .scan(&[dir.path()])
                .unwrap();
            assert_eq!(comparable(r), baseline, "{strategy:?} threads={threads}");
        }
    }
}

#[test]
fn findings_are_sorted_by_path_then_offset() {
    let dir = tempfile::tempdir().unwrap();
    damaged_dataset(dir.path());
    let r = Scanner::new()
        .threads(4)
        .chunk_size(8192)
        .scan(&[dir.path()])
        .unwrap();
    let keys: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.path.clone(), f.offset))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}

#[test]
fn progress_reaches_the_total_and_cancel_stops_early() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    damaged_dataset(dir.path());
    let last = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let (l, t) = (last.clone(), total.clone());
    let r = Scanner::new()
        .threads(2)
        .chunk_size(8192)
        .on_progress(move |p| {
            l.fetch_max(p.bytes_done, Ordering::Relaxed);
            t.store(p.bytes_total, Ordering::Relaxed);
        })
        .scan(&[dir.path()])
        .unwrap();
    assert!(r.summary.complete);
    assert_eq!(last.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
    assert!(total.load(Ordering::Relaxed) > 0);

    // Cancel from the progress callback after the first chunk: the report is partial.
    let flag = Arc::new(AtomicBool::new(false));
    let f2 = flag.clone();
    let r = Scanner::new()
        .threads(1)
        .chunk_size(4096)
        .cancel_flag(flag)
        .on_progress(move |_| f2.store(true, Ordering::Relaxed))
        .scan(&[dir.path()])
        .unwrap();
    assert!(!r.summary.complete);
    assert!(r.cancelled);
    assert_eq!(r.exit_code() & 32, 32);
    assert!(r.summary.units < 5 * 300);
}
