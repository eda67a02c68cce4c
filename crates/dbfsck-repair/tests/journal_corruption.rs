//! A journal image is used only when it is committed, intact, verifies as the very page it is
//! meant for, and is not older than what the damaged page still shows. This file damages the
//! journal every way the issue names — a torn tail, an uncommitted batch, a flipped bit in an
//! image (with and without a forged record checksum), an image older than the page — and proves
//! the image is never used: the page is quarantined instead, and never overwritten with it.

mod common;

use common::*;
use dbfsck_core::native::journal::{read_journal, JOURNAL_HEADER_LEN, RECORD_HEADER_LEN};
use dbfsck_core::{FindingKind, RepairAction, RepairResult};
use dbfsck_repair::{plan::plan, repair, FsStorage};

/// Damages journaled page 3 in the data file (a torn first sector) and returns the action planned.
fn plan_for_page_3(fx: &Fixture) -> RepairAction {
    tear_first_sector(&fx.data, 3, &lsn1_image(3)[..512]);
    let report = scan(&fx.root);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].kind, FindingKind::TornWrite);
    let p = plan(&report, &FsStorage);
    assert_eq!(p.actions.len(), 1);
    p.actions[0].action
}

/// Offset of the first image in the journal.
const IMAGE0: usize = JOURNAL_HEADER_LEN + RECORD_HEADER_LEN;

#[test]
fn an_intact_journal_rebuilds_the_torn_page_byte_exact() {
    let fx = fixture(8, &[3, 5]);
    let before = std::fs::read(&fx.data).unwrap();
    assert_eq!(plan_for_page_3(&fx), RepairAction::RestoreFromJournal);
    let mut report = scan(&fx.root);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    assert_eq!(report.repairs[0].result, RepairResult::Applied);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(std::fs::read(&fx.data).unwrap(), before, "byte-exact");
}

#[test]
fn a_torn_journal_tail_is_never_used() {
    let fx = fixture(8, &[3]);
    // Cut the commit record short: the only batch is no longer committed.
    edit(&fx.journal, |j| j.truncate(j.len() - 3));
    assert_eq!(plan_for_page_3(&fx), RepairAction::Quarantine);
}

#[test]
fn an_uncommitted_batch_is_never_used() {
    let fx = fixture(8, &[3]);
    // Drop the commit record whole: images without their commit.
    let commit_len = RECORD_HEADER_LEN + 8 + 8;
    edit(&fx.journal, |j| j.truncate(j.len() - commit_len));
    assert_eq!(plan_for_page_3(&fx), RepairAction::Quarantine);
}

#[test]
fn a_flipped_bit_in_a_journal_image_is_never_used() {
    let fx = fixture(8, &[3]);
    edit(&fx.journal, |j| j[IMAGE0 + 2000] ^= 0x04);
    assert_eq!(plan_for_page_3(&fx), RepairAction::Quarantine);
}

#[test]
fn an_image_whose_own_checksum_fails_is_never_used_even_when_its_record_checksum_is_forged() {
    let fx = fixture(8, &[3]);
    // Flip a bit in the image and re-stamp the record checksum and the batch digest, as a buggy
    // journal writer would: the record and the commit verify, the page image does not.
    edit(&fx.journal, |j| {
        j[IMAGE0 + 2000] ^= 0x04;
        let rec_end = IMAGE0 + PS;
        let sum = xxhash_rust::xxh3::xxh3_64(&j[JOURNAL_HEADER_LEN..rec_end]);
        j[rec_end..rec_end + 8].copy_from_slice(&sum.to_le_bytes());
        let commit = rec_end + 8;
        let digest = xxhash_rust::xxh3::xxh3_64(&sum.to_le_bytes());
        j[commit + RECORD_HEADER_LEN..commit + RECORD_HEADER_LEN + 8]
            .copy_from_slice(&digest.to_le_bytes());
        let c_end = commit + RECORD_HEADER_LEN + 8;
        let csum = xxhash_rust::xxh3::xxh3_64(&j[commit..c_end]);
        j[c_end..c_end + 8].copy_from_slice(&csum.to_le_bytes());
    });
    let idx = read_journal(&dbfsck_core::BytesSource(
        &std::fs::read(&fx.journal).unwrap(),
    ))
    .unwrap();
    assert_eq!(idx.images.len(), 1, "the forged batch reads as committed");
    assert_eq!(plan_for_page_3(&fx), RepairAction::Quarantine);
}

#[test]
fn an_image_older_than_the_damaged_page_is_never_used() {
    // The journal holds page 3 at LSN 2; the page is later rewritten in place at LSN 9 (not
    // journaled), then torn. Its header still shows LSN 9: the LSN-2 image would lose data.
    let fx = fixture(8, &[3]);
    let mut pf = dbfsck_core::native::PageFile::open(&fx.data).unwrap();
    pf.write_page(3, APP, 9, &body(3, 9)).unwrap();
    pf.sync().unwrap();
    drop(pf);
    edit(&fx.data, |b| {
        let r = page_range(3);
        b[r.start + 1000..r.end].fill(0x5a); // tear: the header sector of the LSN-9 write survives
    });
    let report = scan(&fx.root);
    assert_eq!(report.findings.len(), 1);
    let p = plan(&report, &FsStorage);
    assert_eq!(
        p.actions[0].action,
        RepairAction::Quarantine,
        "{:?}",
        p.actions[0]
    );
    assert!(
        p.actions[0].detail.contains("older"),
        "{}",
        p.actions[0].detail
    );
}

#[test]
fn an_image_for_another_page_or_file_is_never_used() {
    // Page 5 is journaled, page 3 is not: page 5's image must not rebuild page 3.
    let fx = fixture(8, &[5]);
    edit(&fx.data, |b| b[page_range(3)].fill(0));
    let report = scan(&fx.root);
    assert_eq!(report.findings[0].kind, FindingKind::ZeroedPage);
    let p = plan(&report, &FsStorage);
    assert_eq!(p.actions[0].action, RepairAction::Quarantine);
}

#[test]
fn the_newest_of_several_committed_images_is_chosen() {
    let fx = fixture(8, &[3]);
    // A second batch rewrites page 3 at LSN 7.
    let mut store = dbfsck_repair::JournaledStore::open(
        FsStorage,
        &fx.journal,
        dbfsck_repair::JournalOptions {
            capacity: None,
            journal_id: None,
        },
    )
    .unwrap();
    let h = store.open_file(&fx.data).unwrap();
    let b = body(3, 7);
    store
        .commit(&[dbfsck_repair::PageWrite {
            file: h,
            page_no: 3,
            page_type: APP,
            flags: 0,
            lsn: 7,
            body: &b,
        }])
        .unwrap();
    drop(store);
    let want = std::fs::read(&fx.data).unwrap();
    edit(&fx.data, |b| b[page_range(3)].fill(0));
    let mut report = scan(&fx.root);
    assert_eq!(report.findings[0].kind, FindingKind::ZeroedPage);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    assert_eq!(report.repairs[0].action, RepairAction::RestoreFromJournal);
    assert!(report.repairs[0]
        .source
        .as_deref()
        .unwrap()
        .contains("LSN 7"));
    assert_eq!(std::fs::read(&fx.data).unwrap(), want);
}
