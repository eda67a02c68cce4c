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

#[test]
fn a_log_naming_an_unsafe_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["relative/file", "/tmp/../etc/passwd", "/tmp/./x"] {
        let log = dir.path().join(format!("{}.log", bad.len()));
        let mut w = UndoWriter::create(&FsStorage, &log).unwrap();
        w.append(&UndoEntry::Bytes {
            path: bad.into(),
            offset: 0,
            data: b"owned".to_vec(),
            written: None,
        })
        .unwrap();
        w.seal().unwrap();
        let r = read_undo_log(&FsStorage, &log);
        assert!(matches!(r, Err(UndoError::UnsafePath(_))), "{bad}: {r:?}");
        assert!(matches!(
            undo(&FsStorage, &log, false),
            Err(UndoError::UnsafePath(_))
        ));
    }
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
