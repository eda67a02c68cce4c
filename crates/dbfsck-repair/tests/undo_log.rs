//! `dbfsck undo` puts back exactly the bytes and lengths a repair changed, and checks the log
//! before it writes anything: a flipped bit, a truncated log, a forged path or a file in use
//! make it refuse with nothing changed.

mod common;

use common::*;
use dbfsck_core::{FindingKind, RepairAction};
use dbfsck_repair::undo::{read_undo_log, UndoEntry, UndoWriter};
use dbfsck_repair::{repair, undo, FsStorage, UndoError};

fn repaired(fx: &Fixture) -> std::path::PathBuf {
    let mut report = scan(&fx.root);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    fx.root.join(".dbfsck/u.log")
}

#[test]
fn undo_of_a_restore_that_extended_the_file_shrinks_it_back() {
    // The file ends 1000 bytes into page 7, whose committed image is in the journal: the repair
    // writes the whole page (the file grows), and undo must cut it back to the exact length.
    let fx = fixture(8, &[7]);
    edit(&fx.data, |b| b.truncate(7 * PS + 1000));
    let before = std::fs::read(&fx.data).unwrap();
    let mut report = scan(&fx.root);
    assert_eq!(report.findings[0].kind, FindingKind::PartialPage);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    assert_eq!(report.repairs[0].action, RepairAction::RestoreFromJournal);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(std::fs::metadata(&fx.data).unwrap().len(), 8 * PS as u64);
    let o = undo(&FsStorage, &fx.root.join(".dbfsck/u.log"), false).unwrap();
    assert_eq!((o.ranges, o.lengths), (1, 1));
    assert_eq!(std::fs::read(&fx.data).unwrap(), before);
}

#[test]
fn a_flipped_bit_anywhere_in_the_log_refuses_with_nothing_changed() {
    let fx = fixture(8, &[3]);
    edit(&fx.data, |b| b[page_range(3)].fill(0));
    let log = repaired(&fx);
    let after = std::fs::read(&fx.data).unwrap();
    let pristine_log = std::fs::read(&log).unwrap();
    for i in (0..pristine_log.len()).step_by(97) {
        let mut bad = pristine_log.clone();
        bad[i] ^= 0x10;
        std::fs::write(&log, &bad).unwrap();
        let r = undo(&FsStorage, &log, false);
        assert!(
            matches!(
                r,
                Err(UndoError::NotAnUndoLog(_)
                    | UndoError::Unsealed { .. }
                    | UndoError::BadSeal(_))
            ),
            "byte {i}: {r:?}"
        );
        assert_eq!(
            std::fs::read(&fx.data).unwrap(),
            after,
            "byte {i}: nothing was written"
        );
    }
    // A log cut short, or with an entry dropped, is refused too.
    std::fs::write(&log, &pristine_log[..pristine_log.len() - 1]).unwrap();
    assert!(matches!(
        undo(&FsStorage, &log, false),
        Err(UndoError::Unsealed { .. })
    ));
    std::fs::write(&log, &pristine_log).unwrap();
    undo(&FsStorage, &log, false).unwrap();
}

/// A sealed version 2 log of byte entries, written by hand (the writer refuses such paths):
/// each (path, offset, original bytes), nothing recorded as written.
fn forged_log(entries: &[(&[u8], u64, &[u8])]) -> Vec<u8> {
    use xxhash_rust::xxh3::xxh3_64;
    let mut out = Vec::new();
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(b"DBFU");
    h[4..8].copy_from_slice(&2u32.to_le_bytes());
    let s = xxh3_64(&h[..24]);
    h[24..].copy_from_slice(&s.to_le_bytes());
    out.extend_from_slice(&h);
    let mut sums = Vec::new();
    for (path, offset, data) in entries {
        let mut e = vec![0u8; 48];
        e[..4].copy_from_slice(b"DBUE");
        e[4] = 1;
        e[8..12].copy_from_slice(&(path.len() as u32).to_le_bytes());
        e[16..24].copy_from_slice(&offset.to_le_bytes());
        e[24..32].copy_from_slice(&(data.len() as u64).to_le_bytes());
        e.extend_from_slice(path);
        e.extend_from_slice(data);
        let s = xxh3_64(&e);
        e.extend_from_slice(&s.to_le_bytes());
        sums.push(s);
        out.extend_from_slice(&e);
    }
    let digest: Vec<u8> = sums.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut seal = [0u8; 32];
    seal[..4].copy_from_slice(b"DBUS");
    seal[8..16].copy_from_slice(&(sums.len() as u64).to_le_bytes());
    seal[16..24].copy_from_slice(&xxh3_64(&digest).to_le_bytes());
    let s = xxh3_64(&seal[..24]);
    seal[24..].copy_from_slice(&s.to_le_bytes());
    out.extend_from_slice(&seal);
    out
}

#[test]
fn a_log_naming_an_unsafe_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("/{}", "d/".repeat(2100));
    for bad in [
        "relative/file",
        "/tmp/../etc/passwd",
        "/tmp/./x",
        long.as_str(),
    ] {
        // The writer never writes what the reader would refuse (a repair would then have no
        // undo): it refuses the entry.
        let log = dir.path().join(format!("w{}.log", bad.len()));
        let mut w = UndoWriter::create(&FsStorage, &log).unwrap();
        let r = w.append(&UndoEntry::Bytes {
            path: bad.into(),
            offset: 0,
            data: b"owned".to_vec(),
            written: None,
        });
        assert!(matches!(r, Err(UndoError::UnsafePath(_))), "{r:?}");
        // A log forged with such a path is refused by the reader and by undo.
        let log = dir.path().join(format!("{}.log", bad.len()));
        std::fs::write(&log, forged_log(&[(bad.as_bytes(), 0, b"owned")])).unwrap();
        let r = read_undo_log(&FsStorage, &log);
        assert!(
            matches!(
                r,
                Err(UndoError::UnsafePath(_) | UndoError::Unsealed { .. })
            ),
            "{}: {r:?}",
            &bad[..bad.len().min(20)]
        );
        assert!(undo(&FsStorage, &log, false).is_err());
    }
    // The forger itself is right: a plain path reads back.
    let log = dir.path().join("ok.log");
    std::fs::write(&log, forged_log(&[(b"/tmp/x", 0, b"owned")])).unwrap();
    assert_eq!(read_undo_log(&FsStorage, &log).unwrap().len(), 1);
}

#[test]
fn undo_refuses_a_file_in_use_unless_forced() {
    let fx = fixture(8, &[3]);
    edit(&fx.data, |b| b[page_range(3)].fill(0));
    let before = std::fs::read(&fx.data).unwrap();
    let log = repaired(&fx);
    let holder = dbfsck_core::native::PageFile::open(&fx.data).unwrap();
    let r = undo(&FsStorage, &log, false);
    assert!(matches!(r, Err(UndoError::Locked(_))), "{r:?}");
    assert_ne!(std::fs::read(&fx.data).unwrap(), before);
    undo(&FsStorage, &log, true).unwrap();
    drop(holder);
    assert_eq!(std::fs::read(&fx.data).unwrap(), before);
}

#[test]
fn undo_never_writes_through_a_symlink() {
    let fx = fixture(8, &[3]);
    edit(&fx.data, |b| b[page_range(3)].fill(0));
    let log = repaired(&fx);
    // Replace the data file by a link to another file: undo must not write through it.
    let victim = fx.root.join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    std::fs::remove_file(&fx.data).unwrap();
    std::os::unix::fs::symlink(&victim, &fx.data).unwrap();
    let r = undo(&FsStorage, &log, false);
    assert!(matches!(r, Err(UndoError::Io { .. })), "{r:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
}

/// Regression (found by the RocksDB salvage, whose undo entry was a whole 3 MB table): the
/// writer sealed an entry larger than the reader accepts, so `dbfsck undo` called the log
/// damaged. The writer now refuses such an entry (the repair splits ranges into pieces).
#[test]
fn an_entry_larger_than_the_reader_accepts_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("big.log");
    let mut w = UndoWriter::create(&FsStorage, &log).unwrap();
    let too_big = vec![7u8; dbfsck_repair::undo::MAX_ENTRY_DATA as usize + 1];
    let r = w.append(&UndoEntry::Bytes {
        path: dir.path().join("t"),
        offset: 0,
        data: too_big,
        written: None,
    });
    assert!(matches!(r, Err(UndoError::Io { .. })), "{r:?}");
    // At the limit it is written and reads back.
    let at_limit = vec![7u8; dbfsck_repair::undo::MAX_ENTRY_DATA as usize];
    w.append(&UndoEntry::Bytes {
        path: dir.path().join("t"),
        offset: 0,
        data: at_limit,
        written: None,
    })
    .unwrap();
    w.seal().unwrap();
    assert_eq!(read_undo_log(&FsStorage, &log).unwrap().len(), 1);
}
