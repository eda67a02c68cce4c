//! Gentle mode keeps the report and the progress figures true: a throttled scan finds exactly
//! what an unthrottled one finds, its progress callbacks climb steadily to the total (so a rate
//! and an ETA computed from them are right), and cancelling a throttled scan returns promptly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dbfsck_core::native::ChecksumAlgo;
use dbfsck_core::Scanner;
use dbfsck_testkit::{Dataset, Fault, Spec};

fn dataset(dir: &std::path::Path) {
    let spec = Spec {
        files: 2,
        pages: 512,
        page_size: 4096,
        checksum: ChecksumAlgo::Crc32,
        seed: 8,
    };
    let mut ds = Dataset::generate(dir, spec).unwrap();
    let mut rng = dbfsck_testkit::rng(2);
    ds.inject(1, 300, &Fault::Zeroed, &mut rng);
    ds.write_back().unwrap();
}

#[test]
fn a_throttled_scan_reports_the_same_findings_and_true_progress() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let plain = Scanner::new().scan(&[dir.path()]).unwrap();
    let seen: Arc<Mutex<Vec<(Instant, u64, u64)>>> = Arc::default();
    let s2 = seen.clone();
    let throttled = Scanner::new()
        .max_rate(Some(4 << 20))
        .on_progress(move |p| {
            s2.lock()
                .unwrap()
                .push((Instant::now(), p.bytes_done, p.bytes_total))
        })
        .scan(&[dir.path()])
        .unwrap();
    assert_eq!(throttled.findings, plain.findings);
    assert_eq!(throttled.summary.units, plain.summary.units);
    let seen = seen.lock().unwrap();
    assert!(
        seen.len() >= 10,
        "small chunks under a limit: {} callbacks",
        seen.len()
    );
    let total = seen[0].2;
    assert!(seen.iter().all(|s| s.2 == total), "the total never changes");
    assert_eq!(
        seen.iter().map(|s| s.1).max(),
        Some(total),
        "progress reaches the total"
    );
    // The rate seen through the callbacks is the limit (the figure an ETA is computed from).
    let first = seen.iter().min_by_key(|s| s.0).unwrap();
    let last = seen.iter().max_by_key(|s| s.0).unwrap();
    let rate = (last.1 - first.1) as f64 / (last.0 - first.0).as_secs_f64();
    assert!(
        rate <= 4.0 * 1048576.0 * 1.1,
        "{rate:.0} B/s over a 4 MiB/s limit"
    );
}

#[test]
fn cancelling_a_throttled_scan_returns_promptly() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let cancel = Arc::new(AtomicBool::new(false));
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.store(true, Ordering::Relaxed);
    });
    let t = Instant::now();
    let r = Scanner::new()
        .max_rate(Some(64 << 10)) // 4 MiB would take a minute
        .cancel_flag(cancel)
        .scan(&[dir.path()])
        .unwrap();
    assert!(r.cancelled && !r.summary.complete);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// `on_file_findings` hands over every finding once, each file's in offset order, exactly as
/// the report holds them, whatever the thread count and chunk size — as ranges finish, so a
/// file with damage in several chunks streams in several calls.
#[test]
fn per_file_findings_add_up_to_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        files: 5,
        pages: 64,
        page_size: 4096,
        checksum: ChecksumAlgo::Xxh3,
        seed: 21,
    };
    let mut ds = Dataset::generate(dir.path(), spec).unwrap();
    let mut rng = dbfsck_testkit::rng(9);
    for (file, page) in [(0, 3), (0, 40), (2, 7), (4, 1), (4, 63)] {
        ds.inject(file, page, &Fault::Zeroed, &mut rng);
    }
    ds.write_back().unwrap();
    for (threads, chunk) in [(1, 4096), (2, 8192), (3, 1 << 20)] {
        let got: Arc<Mutex<Vec<Vec<dbfsck_core::Finding>>>> = Arc::default();
        let g2 = got.clone();
        let report = Scanner::new()
            .threads(threads)
            .chunk_size(chunk)
            .on_file_findings(move |f| g2.lock().unwrap().push(f.to_vec()))
            .scan(&[dir.path()])
            .unwrap();
        let calls = got.lock().unwrap().clone();
        assert!(calls.len() >= 3, "at least one call per damaged file");
        // Calls of one file come in offset order: a stable sort by path keeps it.
        let mut streamed: Vec<_> = calls.into_iter().flatten().collect();
        streamed.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            streamed, report.findings,
            "threads {threads}, chunk {chunk}"
        );
    }
}
