//! A file truncated while it is mapped and being read: under mmap, touching the lost pages
//! raises SIGBUS, which would kill the process. This test truncates the file from inside the
//! verification of a mapped chunk — deterministically, between the map and the read — and
//! proves the scan survives: the faulted range is re-read with pread and reported as
//! `truncated`, the pages before the cut are verified and other files are scanned. (Without the
//! SIGBUS guard this test dies of signal 7.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dbfsck_core::{
    Chunk, FileSource, Finding, FindingKind, Format, Layout, OpenError, Opened, Probe,
    ReadStrategy, Scanner, UnitCheck,
};

const PAGE: u64 = 4096;

/// Pages of any bytes; the first verification of `victim` cuts it to `cut` bytes, then reads
/// every byte of its chunk.
struct Cutter {
    victim: PathBuf,
    cut: u64,
    done: Arc<AtomicBool>,
}

struct CutterCheck {
    path: PathBuf,
    len: u64,
    victim: PathBuf,
    cut: u64,
    done: Arc<AtomicBool>,
}

impl Format for Cutter {
    fn name(&self) -> &'static str {
        "cutter"
    }
    fn description(&self) -> &'static str {
        "test format that truncates a file under the scan"
    }
    fn detect_file(&self, probe: &Probe<'_>) -> bool {
        probe.path.extension().is_some_and(|e| e == "pages")
    }
    fn open(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        Ok(Opened {
            findings: Vec::new(),
            check: Some(Box::new(CutterCheck {
                path: path.to_path_buf(),
                len: source.len(),
                victim: self.victim.clone(),
                cut: self.cut,
                done: self.done.clone(),
            })),
            units: 0,
            recheck_after: None,
            notes: Vec::new(),
        })
    }
}

impl UnitCheck for CutterCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.len,
            align: PAGE,
        }
    }
    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        if self.path == self.victim && !self.done.swap(true, Ordering::SeqCst) {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .unwrap();
            f.set_len(self.cut).unwrap();
        }
        // Touch every byte, as a checksum does; a page that is not 0x5A is "damaged".
        let mut n = 0;
        for (i, page) in chunk.bytes.chunks(PAGE as usize).enumerate() {
            n += 1;
            if page.iter().any(|&b| b != 0x5A) {
                let off = chunk.offset + i as u64 * PAGE;
                out.push(
                    Finding::new(FindingKind::ChecksumMismatch, off, PAGE, "not 0x5A")
                        .unit(off / PAGE),
                );
            }
        }
        n
    }
}

fn scan(strategy: ReadStrategy) -> dbfsck_core::Report {
    // Positional reads read the bytes before the cut; only a map can fault.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("a.pages");
    std::fs::write(&victim, vec![0x5Au8; 64 * PAGE as usize]).unwrap();
    std::fs::write(dir.path().join("b.pages"), vec![0x5Au8; 16 * PAGE as usize]).unwrap();
    let format = Cutter {
        victim,
        cut: 20 * PAGE + 100,
        done: Arc::new(AtomicBool::new(false)),
    };
    let mut report = Scanner::with_formats(vec![Arc::new(format)])
        .threads(1)
        .read_strategy(strategy)
        .chunk_size(64 * PAGE) // the whole file in one map
        .scan(&[dir.path()])
        .unwrap();
    for f in &mut report.findings {
        f.path = Path::new(&f.path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
    }
    report
}

#[test]
fn a_file_truncated_under_the_map_becomes_a_truncated_finding_not_a_crash() {
    let r = scan(ReadStrategy::Mmap);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(f.path, "a.pages");
    assert_eq!(f.kind, FindingKind::Truncated);
    assert_eq!(
        (f.offset, f.length),
        (20 * PAGE, 44 * PAGE),
        "from the last whole page on"
    );
    assert_eq!(
        r.summary.units,
        20 + 16,
        "pages before the cut and the other file are verified"
    );
    assert!(r.summary.complete);
    assert_eq!(r.exit_code(), 4);
}
