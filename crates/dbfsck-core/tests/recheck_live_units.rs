//! A format may ask for failing units to be re-read after a pause before they are reported (the
//! rule pg_basebackup uses on a running server): a unit that verifies on the second read was
//! being written and is not reported; one that fails twice is reported as found the second time.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dbfsck_core::{
    Chunk, FileSource, Finding, FindingKind, Format, Layout, OpenError, Opened, Probe, Scanner,
    UnitCheck,
};

/// 1 KiB units; a unit is bad while its first byte is 0xFF. `heal_after` reads, the file is
/// "fixed" (the writer finished): unit 1 reads as good from then on.
struct Flaky {
    reads: Arc<AtomicU32>,
    heal_after: u32,
}

struct FlakyCheck {
    len: u64,
    reads: Arc<AtomicU32>,
    heal_after: u32,
}

impl Format for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn description(&self) -> &'static str {
        "test"
    }
    fn detect_file(&self, _: &Probe<'_>) -> bool {
        true
    }
    fn open(&self, _: &Path, src: &dyn FileSource) -> Result<Opened, OpenError> {
        let check = FlakyCheck {
            len: src.len(),
            reads: self.reads.clone(),
            heal_after: self.heal_after,
        };
        Ok(Opened {
            findings: vec![],
            check: Some(Box::new(check)),
            units: 0,
            recheck_after: Some(Duration::from_millis(20)),
            notes: Vec::new(),
        })
    }
}

impl UnitCheck for FlakyCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.len,
            align: 1024,
        }
    }
    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let read = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        for (i, unit) in chunk.bytes.chunks(1024).enumerate() {
            let offset = chunk.offset + 1024 * i as u64;
            let healed = offset == 1024 && read > self.heal_after;
            if unit[0] == 0xFF && !healed {
                out.push(
                    Finding::new(
                        FindingKind::ChecksumMismatch,
                        offset,
                        1024,
                        format!("read {read}"),
                    )
                    .unit(offset / 1024),
                );
            }
        }
        (chunk.bytes.len() / 1024) as u64
    }
}

fn run(heal_after: u32) -> (dbfsck_core::Report, u32) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; 4096];
    bytes[1024] = 0xFF; // unit 1: being written
    bytes[3072] = 0xFF; // unit 3: really damaged
    std::fs::write(dir.path().join("f"), &bytes).unwrap();
    let reads = Arc::new(AtomicU32::new(0));
    let format = Flaky {
        reads: reads.clone(),
        heal_after,
    };
    let r = Scanner::with_formats(vec![Arc::new(format)])
        .threads(1)
        .scan(&[dir.path()])
        .unwrap();
    (r, reads.load(Ordering::SeqCst))
}

#[test]
fn unit_that_verifies_when_reread_is_not_reported() {
    let (r, reads) = run(1);
    let units: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.unit, f.detail.as_str()))
        .collect();
    assert_eq!(
        units,
        [(Some(3), "read 3")],
        "unit 1 healed on re-read; unit 3 reported from its second read"
    );
    assert_eq!(reads, 3, "one full read, then one re-read per suspect unit");
}

#[test]
fn unit_that_fails_twice_is_reported() {
    let (r, _) = run(u32::MAX);
    let units: Vec<_> = r.findings.iter().map(|f| f.unit).collect();
    assert_eq!(units, [Some(1), Some(3)]);
}
