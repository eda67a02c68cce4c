//! Files that change between the moment the engine opens them and the moment it reads their
//! pages: one truncated (the lost range is a `truncated` finding, the rest is verified) and one
//! deleted (an `io_error` finding, exit bit 8), under memory maps and positional reads, while
//! the other files are still scanned. (A file that fits in the engine's 128 KiB head read is
//! verified from that one read, so it has no such window.) Adjacent range findings are merged, so the report does not
//! depend on how the work was cut.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dbfsck_core::native::ChecksumAlgo;
use dbfsck_core::{FindingKind, ReadStrategy, Scanner};
use dbfsck_testkit::{Dataset, Spec};

fn run(
    strategy: ReadStrategy,
    change: impl Fn(&Dataset) + Send + Sync + 'static,
) -> dbfsck_core::Report {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        files: 3,
        // 40 pages of 4 KiB: larger than the head the engine reads at open (128 KiB), so
        // these files are verified in the second phase, after the change.
        pages: 40,
        page_size: 4096,
        checksum: ChecksumAlgo::Crc32,
        seed: 4,
    };
    let ds = Arc::new(Dataset::generate(dir.path(), spec).unwrap());
    let once = AtomicBool::new(false);
    let ds2 = ds.clone();
    // One thread and one-page chunks: the first chunk of the first file completes before any
    // chunk of the second file starts, so the change lands between open and read.
    Scanner::new()
        .threads(1)
        .chunk_size(4096)
        .read_strategy(strategy)
        .on_progress(move |_| {
            if !once.swap(true, Ordering::SeqCst) {
                change(&ds2);
            }
        })
        .scan(&[dir.path()])
        .unwrap()
}

#[test]
fn file_truncated_after_open_reports_the_lost_range_as_truncated() {
    for strategy in [ReadStrategy::Auto, ReadStrategy::Mmap, ReadStrategy::Pread] {
        let r = run(strategy, |ds| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&ds.files[1].path)
                .unwrap();
            f.set_len(8 * 4096 + 100).unwrap();
        });
        assert_eq!(r.findings.len(), 1, "{strategy:?}: {:#?}", r.findings);
        let f = &r.findings[0];
        assert_eq!(f.kind, FindingKind::Truncated);
        assert!(f.path.ends_with("data-0001.dbfp"));
        assert_eq!(
            (f.offset, f.length),
            (8 * 4096, 32 * 4096),
            "one merged range"
        );
        assert_eq!(
            r.summary.units,
            40 + 8 + 40,
            "pages before the cut are still verified"
        );
        assert_eq!(r.exit_code(), 4);
    }
}

/// Every read of a file goes through the descriptor it was opened and judged by: a file
/// removed (or renamed over) after it was opened is still the file this scan reads, to the end.
#[test]
fn a_file_deleted_after_open_is_read_to_the_end_through_its_descriptor() {
    for strategy in [ReadStrategy::Auto, ReadStrategy::Mmap, ReadStrategy::Pread] {
        let r = run(strategy, |ds| {
            std::fs::remove_file(&ds.files[2].path).unwrap()
        });
        assert!(r.findings.is_empty(), "{strategy:?}: {:#?}", r.findings);
        assert_eq!(r.summary.units, 3 * 40);
        assert_eq!(r.exit_code(), 0);
    }
}
