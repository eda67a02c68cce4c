//! A repair that loses power at any write, truncate, create or fsync can be finished by running
//! it again, or taken back byte-exact with `undo`. A damaged file (torn, zeroed and rotted
//! journaled pages; a rotted page with no image; a torn trailing piece) is repaired on a
//! `CrashStorage` that crashes at operation k, for every k and both crash policies. From what
//! survives:
//! - `undo` with the undo log restores the pre-repair bytes exactly (or, when the crash came
//!   before the log was sealed, refuses and finds the data untouched);
//! - running the repair again converges to the bytes of an uninterrupted repair;
//! - an interrupted `undo`, run again, still restores the pre-repair bytes;
//! - repairing twice is repairing once.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use dbfsck_core::{FindingKind, RepairAction};
use dbfsck_repair::storage::crash::{CrashPolicy, CrashStorage};
use dbfsck_repair::{repair, undo, FsStorage, UndoError};

fn damaged() -> Fixture {
    let fx = fixture(16, &[2, 3, 5, 9]);
    tear_first_sector(&fx.data, 2, &lsn1_image(2)[..512]);
    edit(&fx.data, |b| {
        b[page_range(3)].fill(0);
        b[page_range(5).start + 2000] ^= 0x80;
        b[page_range(7).start + 100] ^= 0x01; // not journaled: quarantine
                                              // Page 9's last two sectors are still those of the older write (LSN 1).
        let r = page_range(9);
        b[r.end - 1024..r.end].copy_from_slice(&lsn1_image(9)[PS - 1024..]);
        b.extend_from_slice(&[0x77; 300]); // a torn trailing piece
    });
    fx
}

fn copy_to(src: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    copy_tree(src, &root);
    (dir, root)
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// The data files, with paths relative to the root.
fn data(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    snapshot(root)
        .into_iter()
        .map(|(p, b)| (p.strip_prefix(root).unwrap().to_path_buf(), b))
        .collect()
}

#[test]
fn the_fixture_exercises_every_action() {
    let fx = damaged();
    let mut report = scan(&fx.root);
    let kinds: Vec<_> = report.findings.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FindingKind::TornWrite,
            FindingKind::ZeroedPage,
            FindingKind::ChecksumMismatch,
            FindingKind::ChecksumMismatch,
            FindingKind::TornWrite,
            FindingKind::PartialPage
        ]
    );
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    let actions: Vec<_> = report.repairs.iter().map(|r| (r.unit, r.action)).collect();
    use RepairAction::*;
    assert_eq!(
        actions,
        [
            (Some(2), RestoreFromJournal),
            (Some(3), RestoreFromJournal),
            (Some(5), RestoreFromJournal),
            (Some(7), Quarantine),
            (Some(9), RestoreFromJournal),
            (Some(16), TruncateTail)
        ]
    );
    assert_eq!(
        report.exit_code(),
        4,
        "a page was quarantined: data is missing"
    );
}

#[test]
fn a_repair_crashed_anywhere_converges_when_run_again_and_undo_restores_it_exactly() {
    let fx = damaged();
    let pre = data(&fx.root);

    // The uninterrupted repair, and its operation count.
    let (_d, reference) = copy_to(&fx.root);
    let mut report = scan(&reference);
    repair(&mut report, &FsStorage, &options(&reference, "u.log"));
    let want = data(&reference);
    let want_rescan: Vec<_> = scan(&reference)
        .findings
        .iter()
        .map(|f| (f.unit, f.kind))
        .collect();
    assert_eq!(want_rescan, [(Some(7), FindingKind::Quarantined)]);
    let total = {
        let (_d, root) = copy_to(&fx.root);
        let storage = CrashStorage::load_dir(&root).unwrap();
        let mut report = scan(&root);
        repair(&mut report, &storage, &options(&root, "u.log"));
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        storage.ops()
    };
    assert!(total > 10, "{total} operations");

    let mut sealed_undos = 0;
    for k in 1..=total {
        for policy in [CrashPolicy::TearInFlight, CrashPolicy::Chaos] {
            let (_d, root) = copy_to(&fx.root);
            let storage = CrashStorage::load_dir(&root).unwrap();
            storage.crash_at(k);
            let mut report = scan(&root);
            repair(&mut report, &storage, &options(&root, "u.log"));
            assert!(storage.has_crashed());
            assert!(
                report.exit_code() & 8 != 0,
                "a crashed repair says so: k={k}"
            );
            storage.write_after_crash(policy, k).unwrap();

            // Run the repair again (on a copy: the undo log names the files of `root`).
            let (_d2, rerun) = copy_to(&root);
            let mut again = scan(&rerun);
            repair(&mut again, &FsStorage, &options(&rerun, "u2.log"));
            assert!(
                again.errors.is_empty(),
                "k={k} {policy:?}: {:?}",
                again.errors
            );
            assert!(
                data(&rerun) == want,
                "k={k} {policy:?}: converges to the uninterrupted result"
            );

            // Undo from the crashed state.
            match undo(&FsStorage, &root.join(".dbfsck/u.log"), false) {
                Ok(_) => sealed_undos += 1,
                Err(
                    UndoError::Io { .. } | UndoError::NotAnUndoLog(_) | UndoError::Unsealed { .. },
                ) => {}
                Err(e) => panic!("k={k} {policy:?}: {e}"),
            }
            assert!(
                data(&root) == pre,
                "k={k} {policy:?}: undo restores the pre-repair bytes"
            );
        }
    }
    // Both sides of the seal were crashed into.
    assert!(
        sealed_undos > 0 && sealed_undos < 2 * total,
        "{sealed_undos} of {} crashed repairs left a sealed log",
        2 * total
    );
}

#[test]
fn an_undo_crashed_anywhere_restores_exactly_when_run_again() {
    let fx = damaged();
    let pre = data(&fx.root);
    // A repaired copy (its undo log names the copy's files).
    let repaired_copy = || {
        let (d, root) = copy_to(&fx.root);
        let mut report = scan(&root);
        repair(&mut report, &FsStorage, &options(&root, "u.log"));
        (d, root)
    };
    let total = {
        let (_d, root) = repaired_copy();
        let storage = CrashStorage::load_dir(&root).unwrap();
        undo(&storage, &root.join(".dbfsck/u.log"), false).unwrap();
        storage.ops()
    };
    for k in 1..=total {
        let (_d, root) = repaired_copy();
        let storage = CrashStorage::load_dir(&root).unwrap();
        storage.crash_at(k);
        assert!(undo(&storage, &root.join(".dbfsck/u.log"), false).is_err());
        storage.write_after_crash(CrashPolicy::Chaos, k).unwrap();
        undo(&FsStorage, &root.join(".dbfsck/u.log"), false).unwrap();
        assert!(data(&root) == pre, "k={k}");
    }
    // Undo is idempotent, and the repair can be applied again after it.
    let mut report = scan(&fx.root);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    let repaired = data(&fx.root);
    let log = fx.root.join(".dbfsck/u.log");
    undo(&FsStorage, &log, false).unwrap();
    undo(&FsStorage, &log, false).unwrap();
    assert!(data(&fx.root) == pre);
    let mut report = scan(&fx.root);
    repair(&mut report, &FsStorage, &options(&fx.root, "u2.log"));
    assert!(data(&fx.root) == repaired);
}

#[test]
fn repairing_twice_is_repairing_once() {
    let fx = damaged();
    let mut report = scan(&fx.root);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    let once = data(&fx.root);
    let mut again = scan(&fx.root);
    let plan = repair(&mut again, &FsStorage, &options(&fx.root, "u2.log"));
    assert!(again.repairs.is_empty(), "{:?}", again.repairs);
    assert_eq!(
        plan.left.len(),
        1,
        "the quarantined page is left, with its reason"
    );
    assert!(
        !fx.root.join(".dbfsck/u2.log").exists(),
        "no undo log when nothing changes"
    );
    assert!(data(&fx.root) == once);
    assert_eq!(again.exit_code(), 4);
}
