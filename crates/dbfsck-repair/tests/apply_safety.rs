//! What makes a repair unable to make things worse: a dry run changes nothing; a datastore
//! that holds its files' locks is not written under; a failed write stops the repair, which says
//! what state each file is in; the quarantine keeps the exact damaged bytes (0700, manifest with
//! sha256) before a marker built from the file's parameters alone replaces them.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use dbfsck_core::native::{verify_page, FileParams, PageVerdict};
use dbfsck_core::{RepairAction, RepairResult};
use dbfsck_repair::storage::crash::CrashStorage;
use dbfsck_repair::{repair, FsStorage, RepairOptions};
use sha2::Digest;

fn tree(root: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn two_damaged_pages() -> Fixture {
    let fx = fixture(8, &[3]);
    edit(&fx.data, |b| {
        b[page_range(3)].fill(0);
        b[page_range(6).start + 77] ^= 0x02;
    });
    fx
}

#[test]
fn a_dry_run_changes_nothing_and_plans_every_action() {
    let fx = two_damaged_pages();
    let before = tree(&fx.root);
    let mut report = scan(&fx.root);
    let options = RepairOptions::in_dir(&fx.root);
    assert!(options.dry_run, "the default only reports");
    repair(&mut report, &FsStorage, &options);
    assert_eq!(
        tree(&fx.root),
        before,
        "not a byte changed, no folder created"
    );
    let planned: Vec<_> = report
        .repairs
        .iter()
        .map(|r| (r.unit, r.action, r.result))
        .collect();
    assert_eq!(
        planned,
        [
            (
                Some(3),
                RepairAction::RestoreFromJournal,
                RepairResult::Planned
            ),
            (Some(6), RepairAction::Quarantine, RepairResult::Planned)
        ]
    );
    assert_eq!(report.undo_log, None);
    assert_eq!(report.exit_code(), 4);
}

#[test]
fn a_running_datastore_is_not_written_under_unless_forced() {
    let fx = two_damaged_pages();
    let before = tree(&fx.root);
    let holder = dbfsck_core::native::PageFile::open(&fx.data).unwrap();
    let mut report = scan(&fx.root);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    assert_eq!(tree(&fx.root), before);
    assert!(report
        .errors
        .iter()
        .any(|e| e.message.contains("appears to be running")));
    assert!(report
        .repairs
        .iter()
        .all(|r| r.result == RepairResult::Failed));
    assert_eq!(report.exit_code(), 12);

    let mut report = scan(&fx.root);
    let forced = RepairOptions {
        force: true,
        ..options(&fx.root, "u.log")
    };
    repair(&mut report, &FsStorage, &forced);
    drop(holder);
    assert!(report
        .warnings
        .iter()
        .any(|w| w.message.contains("--force")));
    assert!(report
        .repairs
        .iter()
        .all(|r| r.result == RepairResult::Applied));
}

#[test]
fn a_failed_write_stops_the_repair_and_says_what_state_the_file_is_in() {
    // Two restores in one file. Operations: undo log create, header, the file's identity entry,
    // 2 entries, seal, sync, dir sync, then the 2 page writes and the file sync. The first page
    // write fails.
    let fx = fixture(8, &[3, 5]);
    edit(&fx.data, |b| {
        b[page_range(3)].fill(0);
        b[page_range(5)].fill(0);
    });
    let storage = CrashStorage::load_dir(&fx.root).unwrap();
    storage.crash_at(9);
    let mut report = scan(&fx.root);
    repair(&mut report, &storage, &options(&fx.root, "u.log"));
    assert_eq!(report.repairs[0].result, RepairResult::Failed);
    assert!(
        report.repairs[0].detail.contains("the write failed"),
        "{}",
        report.repairs[0].detail
    );
    assert!(
        report.repairs[1].detail.contains("not attempted"),
        "{}",
        report.repairs[1].detail
    );
    let state = &report.errors[0].message;
    assert!(
        state.contains("state is unknown") && state.contains("dbfsck undo"),
        "{state}"
    );
    assert_eq!(report.exit_code(), 12);
    let live = storage.live(&fx.data).unwrap();
    assert!(
        live[page_range(5)].iter().all(|&b| b == 0),
        "nothing written after the failure"
    );
}

#[test]
fn never_launders_the_quarantine_keeps_the_exact_bytes_and_the_marker_holds_none_of_them() {
    let fx = two_damaged_pages();
    let damaged = std::fs::read(&fx.data).unwrap()[page_range(6)].to_vec();
    let mut report = scan(&fx.root);
    repair(&mut report, &FsStorage, &options(&fx.root, "u.log"));
    let q = fx.root.join(".dbfsck/quarantine");
    assert_eq!(
        std::fs::metadata(&q).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let manifest = std::fs::read_to_string(q.join("manifest.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let m = &lines[0];
    let sha: String = sha2::Sha256::digest(&damaged)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(m["sha256"], sha);
    assert_eq!(m["page"], 6);
    assert_eq!(m["offset"], 6 * PS);
    assert_eq!(m["length"], PS);
    assert_eq!(m["kind"], "checksum_mismatch");
    assert!(m["expected"].is_string() && m["actual"].is_string() && m["time"].is_string());
    assert_eq!(
        std::fs::read(q.join(m["copy"].as_str().unwrap())).unwrap(),
        damaged
    );

    // The marker: a valid quarantined page of this file, LSN 0, empty body — nothing from the
    // damaged bytes.
    let now = std::fs::read(&fx.data).unwrap();
    let params = FileParams {
        page_size: PS,
        algo: dbfsck_core::native::ChecksumAlgo::Xxh3,
        file_id: 0xfeed,
    };
    assert_eq!(
        verify_page(&now[page_range(6)], &params, 6),
        PageVerdict::Quarantined { lsn: 0 }
    );
    assert!(now[page_range(6)][32..PS - 16].iter().all(|&b| b == 0));
    let rescan = scan(&fx.root);
    assert_eq!(rescan.findings.len(), 1);
    assert_eq!(
        rescan.findings[0].kind,
        dbfsck_core::FindingKind::Quarantined
    );
}

#[test]
fn a_failed_fsync_is_not_retried_and_the_file_state_is_reported_unknown() {
    // Operations: undo log create, header, the file's identity entry, 2 entries, seal, sync, dir
    // sync, 2 page writes, and the data file's fsync (the 11th), which fails.
    let fx = fixture(8, &[3, 5]);
    edit(&fx.data, |b| {
        b[page_range(3)].fill(0);
        b[page_range(5)].fill(0);
    });
    let storage = CrashStorage::load_dir(&fx.root).unwrap();
    storage.crash_at(11);
    let mut report = scan(&fx.root);
    repair(&mut report, &storage, &options(&fx.root, "u.log"));
    assert!(storage.has_crashed());
    for r in &report.repairs {
        assert_eq!(r.result, RepairResult::Failed);
        assert!(r.detail.contains("fsync failed"), "{}", r.detail);
    }
    assert_eq!(report.errors.len(), 1);
    assert!(report.errors[0].message.contains("state is unknown"));
    assert_eq!(
        report.exit_code(),
        12,
        "damage not known to be repaired, and a failure"
    );
}
