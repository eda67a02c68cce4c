//! A scan stopped anywhere and resumed, as often as it takes, reports exactly the findings of one
//! full scan: nothing twice, nothing lost. Proven over random datasets (small files verified at
//! open, large ones in chunks, damaged headers, partial pages) and random stop points, with one
//! and two threads, stopped by cancellation (as SIGINT does) and by a time limit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dbfsck_core::native::ChecksumAlgo;
use dbfsck_core::{Finding, ScanState, Scanner};
use dbfsck_testkit::{Dataset, Fault, Spec};
use proptest::prelude::*;

fn dataset(dir: &std::path::Path, seed: u64, files: usize, pages: u64) -> Vec<Finding> {
    let spec = Spec {
        files,
        pages,
        page_size: 4096,
        checksum: ChecksumAlgo::Crc32,
        seed,
    };
    let mut ds = Dataset::generate(dir, spec).unwrap();
    let mut rng = dbfsck_testkit::rng(seed);
    for f in 0..files {
        ds.inject(f, 1 + seed % (pages - 2), &Fault::Zeroed, &mut rng);
        ds.inject(f, pages - 1, &Fault::BitFlip { byte: 77, bit: 3 }, &mut rng);
    }
    ds.damage_header(0, 40);
    ds.truncate_mid_page(files - 1, pages - 1, 300);
    ds.write_back().unwrap();
    Scanner::new().scan(&[dir]).unwrap().findings
}

/// How a piece ends before the cycle is complete.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Cancelled (SIGINT, SIGTERM): its report is printed, its final state saved.
    Stopped,
    /// Killed (SIGKILL, the OOM killer): nothing printed; the state file is what the last
    /// checkpoint wrote, or what the piece started from.
    Killed,
}

/// Runs pieces, each stopped after `stops[i].0` progress callbacks as `stops[i].1` says, until
/// one completes. Returns the findings the pieces printed, how many ran, and the last report.
fn pieces(
    dir: &std::path::Path,
    threads: usize,
    stops: &[(u64, End)],
) -> (Vec<Finding>, usize, dbfsck_core::Report) {
    let mut state: Option<ScanState> = None;
    let mut all = Vec::new();
    for n in 0.. {
        let cancel = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let (limit, end) = stops.get(n).copied().unwrap_or((u64::MAX, End::Stopped));
        let (c2, s2) = (cancel.clone(), seen.clone());
        let saved: Arc<Mutex<Option<String>>> = Arc::default();
        let s3 = saved.clone();
        let report = Scanner::new()
            .threads(threads)
            .chunk_size(8192)
            .cancel_flag(cancel)
            .resume(state.clone())
            .on_checkpoint(std::time::Duration::ZERO, move |s| {
                *s3.lock().unwrap() = Some(s.to_json());
            })
            .on_progress(move |_| {
                if s2.fetch_add(1, Ordering::SeqCst) + 1 >= limit {
                    c2.store(true, Ordering::SeqCst);
                }
            })
            .scan(&[dir])
            .unwrap();
        if report.summary.complete {
            all.extend(report.findings.iter().cloned());
            return (all, n + 1, report);
        }
        assert!(report.cancelled);
        // The state goes through its file format, as --state does.
        match end {
            End::Stopped => {
                all.extend(report.findings.iter().cloned());
                state = Some(ScanState::parse(&report.scan_state.to_json()).unwrap());
            }
            End::Killed => {
                if let Some(text) = saved.lock().unwrap().take() {
                    state = Some(ScanState::parse(&text).unwrap());
                }
            }
        }
    }
    unreachable!()
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![Just(End::Stopped), Just(End::Killed)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn stopped_killed_and_resumed_pieces_add_up_to_one_full_scan(
        seed in 1u64..1000,
        big in any::<bool>(),
        threads in 1usize..3,
        stops in proptest::collection::vec((1u64..12, end()), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Small files fit in the head read and are verified while opening; big ones in chunks.
        let pages = if big { 80 } else { 12 };
        let full = dataset(dir.path(), seed, 3, pages);
        let (got, runs, last) = pieces(dir.path(), threads, &stops);
        // What the printed pieces reported, merged as one report merges it.
        let mut merged = dbfsck_core::Report { findings: got, ..Default::default() };
        merged.normalize();
        prop_assert_eq!(&merged.findings, &full, "{} runs", runs);
        prop_assert!(!big || runs > 1, "a big dataset is stopped at least once");
        // The cycle's verdict is the full scan's: the last piece's exit code says damage.
        prop_assert_eq!(last.exit_code() & 4, if full.iter().any(|f| f.kind.is_damage()) { 4 } else { 0 });
        let cycle = last.cycle.clone().unwrap();
        let units: u64 = full.iter().filter(|f| f.kind.is_damage()).map(|f| f.unit_count()).sum();
        prop_assert_eq!(cycle.damaged_units, units, "{:?}", cycle);
    }
}

#[test]
fn a_time_limit_stops_cleanly_and_the_rest_follows_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let full = dataset(dir.path(), 7, 3, 256);
    let first = Scanner::new()
        .threads(1)
        .chunk_size(8192)
        .max_rate(Some(2 << 20)) // 3 MiB at 2 MiB/s: stopped by the limit
        .time_limit(Some(std::time::Duration::from_millis(400)))
        .scan(&[dir.path()])
        .unwrap();
    assert!(first.timed_out && !first.cancelled && !first.summary.complete);
    assert_eq!(
        first.exit_code() & 32,
        0,
        "a time limit is not a cancellation"
    );
    let rest = Scanner::new()
        .resume(Some(first.scan_state.clone()))
        .scan(&[dir.path()])
        .unwrap();
    assert!(rest.summary.complete && rest.scan_state.complete);
    let mut got: Vec<Finding> = first.findings.into_iter().chain(rest.findings).collect();
    got.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    assert_eq!(got, full);
    // A complete state resumes as a new full scan.
    let again = Scanner::new()
        .resume(Some(rest.scan_state))
        .scan(&[dir.path()])
        .unwrap();
    assert_eq!(again.findings, full);
}

/// A scan whose state nobody saves keeps no file states (`Scanner::file_states(false)`, what
/// the CLI does without `--state`: memory for 100 000 small files), and finds exactly the same;
/// a scan that keeps them records every file, small ones judged at open included.
#[test]
fn file_states_are_kept_only_when_asked_and_change_no_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let all = dataset(dir.path(), 11, 6, 16);
    let kept = Scanner::new().scan(&[dir.path()]).unwrap();
    let none = Scanner::new()
        .file_states(false)
        .scan(&[dir.path()])
        .unwrap();
    assert_eq!(kept.findings, all);
    assert_eq!(none.findings, all);
    assert_eq!(kept.scan_state.files.len(), 6);
    assert!(none.scan_state.files.is_empty());
    assert_eq!(none.summary.files, kept.summary.files);
    assert_eq!(none.summary.units, kept.summary.units);
}
