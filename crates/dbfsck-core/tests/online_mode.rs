//! `--online`: on a running datastore a page read while it is being written fails its checksum
//! once; online mode reads it again and reports `changed_during_scan` (no exit bit) when it
//! then verifies or keeps changing, while a page damaged for good — identical bytes failing
//! twice — is still damage.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dbfsck_core::native::{ChecksumAlgo, CreateOptions, PageFile, PageType};
use dbfsck_core::{
    Chunk, FileSource, Finding, FindingKind, Format, Layout, OpenError, Opened, Probe, Scanner,
    UnitCheck,
};

/// A format whose page 3 fails the first time it is judged and verifies afterwards: the
/// deterministic picture of a page caught mid-write.
struct Flicker(Arc<AtomicBool>);
struct FlickerCheck(u64, Arc<AtomicBool>);

impl Format for Flicker {
    fn name(&self) -> &'static str {
        "flicker"
    }
    fn description(&self) -> &'static str {
        "test format: page 3 is caught mid-write once"
    }
    fn detect_file(&self, _: &Probe<'_>) -> bool {
        true
    }
    fn open(&self, _: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        Ok(Opened {
            findings: Vec::new(),
            check: Some(Box::new(FlickerCheck(source.len(), self.0.clone()))),
            units: 0,
            recheck_after: None,
            notes: Vec::new(),
        })
    }
}

impl UnitCheck for FlickerCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.0,
            align: 4096,
        }
    }
    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let mut n = 0;
        for i in 0..chunk.bytes.len() as u64 / 4096 {
            let unit = chunk.offset / 4096 + i;
            n += 1;
            let bad_for_good = unit == 7;
            let caught_mid_write = unit == 3 && !self.1.swap(true, Ordering::SeqCst);
            if bad_for_good || caught_mid_write {
                out.push(
                    Finding::new(FindingKind::ChecksumMismatch, unit * 4096, 4096, "bad")
                        .unit(unit),
                );
            }
        }
        n
    }
}

#[test]
fn a_page_caught_mid_write_is_changed_during_scan_and_real_damage_stays_damage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), vec![7u8; 16 * 4096]).unwrap();
    let run = |online: bool| {
        Scanner::with_formats(vec![Arc::new(Flicker(Arc::new(AtomicBool::new(false))))])
            .online(online)
            .scan(&[dir.path()])
            .unwrap()
    };
    let offline = run(false);
    let kinds: Vec<_> = offline.findings.iter().map(|f| (f.unit, f.kind)).collect();
    assert_eq!(
        kinds,
        [
            (Some(3), FindingKind::ChecksumMismatch),
            (Some(7), FindingKind::ChecksumMismatch)
        ]
    );

    let online = run(true);
    let kinds: Vec<_> = online.findings.iter().map(|f| (f.unit, f.kind)).collect();
    assert_eq!(
        kinds,
        [
            (Some(3), FindingKind::ChangedDuringScan),
            (Some(7), FindingKind::ChecksumMismatch)
        ]
    );
    assert!(online.findings[0].detail.contains("online mode"));
    assert_eq!(
        online.exit_code(),
        4,
        "page 7 is damage; page 3 sets no bit"
    );
}

#[test]
fn a_page_that_keeps_changing_under_a_live_writer_is_not_reported_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.dbfp");
    let opts = CreateOptions {
        page_size: 4096,
        checksum: ChecksumAlgo::Crc32,
        file_id: Some(1),
    };
    let mut pf = PageFile::create(&path, opts).unwrap();
    for p in 1..64 {
        pf.write_page(p, PageType::App(0x100), 1, b"row").unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    // A "writer" that keeps tearing and rewriting page 5 with new LSNs (raw writes: it holds no
    // lock, like a datastore with its own protocol).
    let stop = Arc::new(AtomicBool::new(false));
    let (p2, s2) = (path.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&p2).unwrap();
        let mut lsn = 2u64;
        while !s2.load(Ordering::Relaxed) {
            // Header sector of a new write, the rest still old: torn, with a fresh LSN each time.
            let mut sector = [0u8; 512];
            sector[..4].copy_from_slice(b"DBFP");
            sector[4..6].copy_from_slice(&0x100u16.to_le_bytes());
            sector[8..16].copy_from_slice(&1u64.to_le_bytes());
            sector[16..24].copy_from_slice(&5u64.to_le_bytes());
            sector[24..32].copy_from_slice(&lsn.to_le_bytes());
            sector[100] = lsn as u8;
            f.write_all_at(&sector, 5 * 4096).unwrap();
            lsn += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    let offline = Scanner::new().scan(&[dir.path()]).unwrap();
    let report = Scanner::new()
        .online(true)
        .chunk_size(4096)
        .scan(&[dir.path()])
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let kinds = |r: &dbfsck_core::Report| -> Vec<_> {
        r.findings.iter().map(|f| (f.unit, f.kind)).collect()
    };
    assert_eq!(
        kinds(&offline),
        [(Some(5), FindingKind::TornWrite)],
        "offline, the torn page is damage"
    );
    assert_eq!(kinds(&report), [(Some(5), FindingKind::ChangedDuringScan)]);
    assert_eq!(report.exit_code(), 0);
    // Once the writer is gone the page stays torn: identical bytes failing twice are damage.
    let after = Scanner::new().online(true).scan(&[dir.path()]).unwrap();
    assert_eq!(kinds(&after), [(Some(5), FindingKind::TornWrite)]);
}
