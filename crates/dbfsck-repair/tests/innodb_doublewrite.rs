//! The doublewrite repair rules (`docs/innodb.md` §7), on a synthetic data directory whose
//! table is a real MariaDB tablespace (`testdata/innodb/fixtures/full_crc32.ibd`) and whose
//! `ibdata1` holds a doublewrite buffer filled by the test: a damaged page is restored from the
//! newest slot whose header names it, whose checksum verifies in the table's format and whose
//! LSN is not older than the damaged page's own; otherwise its bytes are quarantined and the
//! page is left as it is. A slot counts only when its LSN lies between the checkpoint and the
//! end of the data directory's redo log (`ib_logfile0`), the damaged page's trailer shows no
//! newer write, its tablespace was not imported since (page 0's LSN is not 0) and no other
//! file claims its space id. The end-to-end test with a real server is in
//! `crates/dbfsck/tests/innodb_oracle.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use dbfsck_core::innodb::{space_params, stamp_page, SpaceFormat};
use dbfsck_core::{FindingKind, RepairAction, RepairResult, Scanner};
use dbfsck_repair::{repair, FsStorage, RepairOptions};
use dbfsck_testkit::mariadb::redo_log;

const PS: usize = 16384;

struct Datadir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    table: PathBuf,
    space: u32,
    fmt: SpaceFormat,
    original: Vec<u8>,
    next_slot: usize,
}

fn set_lsn(p: &mut [u8], lsn: u64) {
    p[16..24].copy_from_slice(&lsn.to_be_bytes());
}

fn lsn(p: &[u8]) -> u64 {
    u64::from_be_bytes(p[16..24].try_into().unwrap())
}

impl Datadir {
    fn new() -> Datadir {
        Datadir::with("full_crc32.ibd")
    }

    /// A data directory whose `shop/t.ibd` is the fixture `name`.
    fn with(name: &str) -> Datadir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        fs::create_dir_all(root.join("shop")).unwrap();
        let original = fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../testdata/innodb/fixtures")
                .join(name),
        )
        .unwrap();
        let params = space_params(&original).unwrap();
        let table = root.join("shop/t.ibd");
        fs::write(&table, &original).unwrap();
        // The system tablespace: page 0 (full_crc32, 16 KiB), TRX_SYS with the doublewrite
        // header (blocks at 64 and 128), empty slots.
        let fmt = SpaceFormat::from_flags(0x15).unwrap();
        let mut sys = vec![0u8; 192 * PS];
        {
            let p0 = &mut sys[..PS];
            p0[24..26].copy_from_slice(&8u16.to_be_bytes());
            p0[54..58].copy_from_slice(&0x15u32.to_be_bytes());
            set_lsn(p0, 1000);
            stamp_page(p0, &fmt);
        }
        {
            let p5 = &mut sys[5 * PS..6 * PS];
            p5[4..8].copy_from_slice(&5u32.to_be_bytes());
            p5[24..26].copy_from_slice(&7u16.to_be_bytes());
            set_lsn(p5, 1000);
            let h = PS - 200;
            for (i, v) in [536_853_855u32, 64, 128, 536_853_855, 64, 128]
                .iter()
                .enumerate()
            {
                p5[h + 10 + 4 * i..h + 14 + 4 * i].copy_from_slice(&v.to_be_bytes());
            }
            stamp_page(p5, &fmt);
        }
        fs::write(root.join("ibdata1"), &sys).unwrap();
        // A redo log whose checkpoint is older than every page and whose end is far ahead:
        // every slot is current unless a test says otherwise.
        fs::write(root.join("ib_logfile0"), redo_log(12288, 1 << 40)).unwrap();
        Datadir {
            _tmp: tmp,
            root,
            table,
            space: params.space_id,
            fmt: params.format,
            original,
            next_slot: 64,
        }
    }

    fn page(&self, n: usize) -> Vec<u8> {
        self.original[n * PS..(n + 1) * PS].to_vec()
    }

    /// Page `n` as a newer write would leave it: a changed row and a higher LSN.
    fn newer(&self, n: usize, by: u64) -> Vec<u8> {
        let mut p = self.page(n);
        p[9000] ^= 0x55;
        let l = lsn(&p) + by;
        set_lsn(&mut p, l);
        stamp_page(&mut p, &self.fmt);
        p
    }

    fn add_slot(&mut self, image: &[u8]) -> usize {
        let slot = self.next_slot;
        self.next_slot += 1;
        let path = self.root.join("ibdata1");
        let mut sys = fs::read(&path).unwrap();
        sys[slot * PS..(slot + 1) * PS].copy_from_slice(image);
        fs::write(&path, sys).unwrap();
        slot
    }

    fn write_page(&self, n: usize, bytes: &[u8]) {
        let mut t = fs::read(&self.table).unwrap();
        t[n * PS..(n + 1) * PS].copy_from_slice(bytes);
        fs::write(&self.table, t).unwrap();
    }

    fn table_page(&self, n: usize) -> Vec<u8> {
        fs::read(&self.table).unwrap()[n * PS..(n + 1) * PS].to_vec()
    }

    fn repair(&self, dry_run: bool) -> dbfsck_core::Report {
        let mut report = Scanner::new().scan(&[&self.root]).unwrap();
        let options = RepairOptions {
            dry_run,
            ..RepairOptions::in_dir(&self.root)
        };
        repair(&mut report, &FsStorage, &options);
        report
    }
}

/// A torn write: the first 4 KiB of `new`, the rest of `old`.
fn torn(new: &[u8], old: &[u8]) -> Vec<u8> {
    let mut p = old.to_vec();
    p[..4096].copy_from_slice(&new[..4096]);
    p
}

const N: usize = 3; // a written page of the fixture

#[test]
fn newest_verified_slot_not_older_than_the_page_is_used() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&old); // an older flush of the page: LSN below the torn page's
    d.add_slot(&new);
    d.write_page(N, &torn(&new, &old));
    let report = d.repair(false);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].kind, FindingKind::TornWrite);
    assert_eq!(report.repairs.len(), 1);
    let r = &report.repairs[0];
    assert_eq!(
        (r.action, r.result),
        (RepairAction::RestoreFromDoublewrite, RepairResult::Applied),
        "{r:?}"
    );
    assert!(
        r.source.as_deref().unwrap().contains("slot at page 65"),
        "{r:?}"
    );
    assert_eq!(d.table_page(N), new);
    assert_eq!(report.exit_code(), 1);
    assert!(Scanner::new().scan(&[&d.root]).unwrap().findings.is_empty());
}

#[test]
fn a_slot_older_than_the_damaged_page_is_not_used() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&old);
    let damaged = torn(&new, &old);
    d.write_page(N, &damaged);
    let report = d.repair(false);
    let r = &report.repairs[0];
    assert_eq!(
        (r.action, r.result),
        (RepairAction::Quarantine, RepairResult::Applied),
        "{r:?}"
    );
    assert!(r.detail.contains("older than the LSN"), "{r:?}");
    assert_eq!(
        d.table_page(N),
        damaged,
        "a quarantined InnoDB page is left as it is"
    );
    assert_eq!(report.exit_code(), 4);
    // The damaged bytes are in the quarantine.
    let q = PathBuf::from(report.quarantine_dir.as_deref().unwrap());
    let manifest = fs::read_to_string(q.join("manifest.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    assert_eq!(
        fs::read(q.join(entry["copy"].as_str().unwrap())).unwrap(),
        damaged
    );
}

#[test]
fn a_slot_failing_its_own_checksum_is_not_used() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    let mut bad = new.clone();
    bad[12000] ^= 1;
    d.add_slot(&bad);
    d.write_page(N, &torn(&new, &old));
    let report = d.repair(false);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message.contains("does not verify")),
        "the scan notes the unusable slot: {:?}",
        report.warnings
    );
    let r = &report.repairs[0];
    assert_eq!(r.action, RepairAction::Quarantine, "{r:?}");
    assert!(
        r.detail
            .contains("no doublewrite image of this page verifies"),
        "{r:?}"
    );
}

#[test]
fn a_slot_of_another_page_or_space_is_not_used() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    let mut other_space = new.clone();
    other_space[34..38].copy_from_slice(&(d.space + 1).to_be_bytes());
    stamp_page(&mut other_space, &d.fmt);
    d.add_slot(&other_space);
    d.add_slot(&d.newer(N + 1, 5));
    d.write_page(N, &torn(&new, &old));
    let report = d.repair(true);
    let r = &report.repairs[0];
    assert_eq!(
        (r.action, r.result),
        (RepairAction::Quarantine, RepairResult::Planned),
        "{r:?}"
    );
    assert!(
        r.detail.contains("no doublewrite slot holds this page"),
        "{r:?}"
    );
}

#[test]
fn a_misdirected_page_is_restored_whatever_lsn_it_shows() {
    let mut d = Datadir::new();
    let here = d.page(N);
    d.add_slot(&here);
    // A valid page of the table with a much higher LSN written over page N.
    let stray = d.newer(N + 1, 1_000_000);
    d.write_page(N, &stray);
    let report = d.repair(false);
    assert_eq!(report.findings[0].kind, FindingKind::MisdirectedWrite);
    let r = &report.repairs[0];
    assert_eq!(
        (r.action, r.result),
        (RepairAction::RestoreFromDoublewrite, RepairResult::Applied),
        "{r:?}"
    );
    assert_eq!(d.table_page(N), here);
}

/// The page's only slot is older than the redo log's checkpoint: the server would not use it
/// (recovery replays the log from the checkpoint, so changes between the slot and the
/// checkpoint would be lost), and neither does a repair — even though the damaged page shows no
/// LSN of its own (its first sector is zeroed, so the header is gone).
#[test]
fn a_slot_older_than_the_redo_checkpoint_is_not_used() {
    let mut d = Datadir::new();
    let new = d.newer(N, 5);
    d.add_slot(&new);
    fs::write(d.root.join("ib_logfile0"), redo_log(lsn(&new) + 1, 1 << 40)).unwrap();
    let mut damaged = new.clone();
    damaged[..512].fill(0);
    d.write_page(N, &damaged);
    let report = d.repair(false);
    let r = &report.repairs[0];
    assert_eq!(r.action, RepairAction::Quarantine, "{r:?}");
    assert!(
        r.detail.contains("older than the redo log's checkpoint"),
        "{r:?}"
    );
    assert_eq!(d.table_page(N), damaged);
    assert_eq!(report.exit_code(), 4);
}

/// A slot newer than the end of the redo log (a doublewrite buffer of another server, an
/// ibdata1 copied from elsewhere) is not this data directory's.
#[test]
fn a_slot_newer_than_the_end_of_the_redo_log_is_not_used() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&new);
    fs::write(d.root.join("ib_logfile0"), redo_log(12288, lsn(&new) - 1)).unwrap();
    d.write_page(N, &torn(&new, &old));
    let report = d.repair(true);
    let r = &report.repairs[0];
    assert_eq!(r.action, RepairAction::Quarantine, "{r:?}");
    assert!(r.detail.contains("newer than the end of"), "{r:?}");
}

/// Without a redo log to bound them (missing, damaged, another format) no slot is proven
/// current: quarantine, saying why.
#[test]
fn without_a_readable_redo_log_no_slot_is_used() {
    for log in [
        None,
        Some(vec![7u8; 20000]),
        Some(redo_log(12288, 1 << 40)[..5000].to_vec()),
    ] {
        let mut d = Datadir::new();
        let old = d.page(N);
        let new = d.newer(N, 5);
        d.add_slot(&new);
        let path = d.root.join("ib_logfile0");
        match &log {
            None => fs::remove_file(&path).unwrap(),
            Some(b) => fs::write(&path, b).unwrap(),
        }
        d.write_page(N, &torn(&new, &old));
        let report = d.repair(true);
        let r = &report.repairs[0];
        assert_eq!(r.action, RepairAction::Quarantine, "{r:?}");
        assert!(r.detail.contains("ib_logfile0"), "{r:?}");
        assert!(
            r.detail
                .contains("no doublewrite image can be proven current"),
            "{r:?}"
        );
    }
}

/// The damaged page's header is gone but its trailer still holds the low bits of a write newer
/// than the slot: the slot would roll the page back.
#[test]
fn a_trailer_newer_than_the_slot_refuses_it() {
    let mut d = Datadir::new();
    let old = d.page(N);
    d.add_slot(&old);
    let mut damaged = d.newer(N, 5);
    damaged[..512].fill(0);
    d.write_page(N, &damaged);
    let report = d.repair(false);
    let r = &report.repairs[0];
    assert_eq!(r.action, RepairAction::Quarantine, "{r:?}");
    assert!(r.detail.contains("its trailer still shows"), "{r:?}");
    assert_eq!(d.table_page(N), damaged);
}

/// A tablespace imported and not written since (page 0's LSN is 0): the slots of its space id
/// are of the incarnation before the import.
#[test]
fn an_imported_tablespace_gets_no_slot() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&new);
    let mut p0 = d.page(0);
    set_lsn(&mut p0, 0);
    stamp_page(&mut p0, &d.fmt);
    d.write_page(0, &p0);
    d.write_page(N, &torn(&new, &old));
    let report = d.repair(true);
    let r = &report.repairs[0];
    assert_eq!(r.action, RepairAction::Quarantine, "{r:?}");
    assert!(r.detail.contains("LSN 0 (imported"), "{r:?}");
}

/// Two files claim the table's space id (an .ibd copied in for an import, a stray copy): the
/// scan warns, and no slot of that space id is used for either.
#[test]
fn a_space_id_claimed_twice_gets_no_slot() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&new);
    fs::create_dir_all(d.root.join("other")).unwrap();
    fs::write(d.root.join("other/copy.ibd"), &d.original).unwrap();
    d.write_page(N, &torn(&new, &old));
    let report = d.repair(true);
    assert!(
        report.warnings.iter().any(|w| w
            .message
            .contains(&format!("space id {} is claimed by", d.space))),
        "{:?}",
        report.warnings
    );
    let r = &report.repairs[0];
    assert_eq!(r.action, RepairAction::Quarantine, "{r:?}");
    assert!(
        r.detail
            .contains("claimed by more than one tablespace file"),
        "{r:?}"
    );
}

#[test]
fn a_dry_run_changes_nothing() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&new);
    let damaged = torn(&new, &old);
    d.write_page(N, &damaged);
    let before_sys = fs::read(d.root.join("ibdata1")).unwrap();
    let report = d.repair(true);
    assert_eq!(report.repairs[0].result, RepairResult::Planned);
    assert_eq!(d.table_page(N), damaged);
    assert_eq!(fs::read(d.root.join("ibdata1")).unwrap(), before_sys);
    assert!(!d.root.join(".dbfsck").exists());
}

/// The data files (ibdata1 and the table), relative to the data directory.
fn data_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["ibdata1", "shop/t.ibd"]
        .iter()
        .map(|p| (PathBuf::from(p), fs::read(root.join(p)).unwrap()))
        .collect()
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), to).unwrap();
        }
    }
}

#[test]
fn an_innodb_repair_crashed_anywhere_converges_and_undo_restores_it_exactly() {
    use dbfsck_repair::storage::crash::{CrashPolicy, CrashStorage};
    use dbfsck_repair::{undo, UndoError};
    let mut d = Datadir::new();
    for n in [N, N + 2] {
        let old = d.page(n);
        let new = d.newer(n, 5);
        d.add_slot(&new);
        d.write_page(n, &torn(&new, &old));
    }
    // A rotted page with no slot: quarantined (copied, left as it is).
    let mut rotted = d.page(N + 4);
    rotted[700] ^= 1;
    d.write_page(N + 4, &rotted);
    let pre = data_files(&d.root);
    let opts = |root: &Path, name: &str| RepairOptions {
        dry_run: false,
        undo_log: root.join(".dbfsck").join(name),
        quarantine_dir: root.join(".dbfsck/quarantine"),
        force: false,
        cancel: None,
    };
    let fresh = || {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap().join("data");
        copy_dir(&d.root, &root);
        (t, root)
    };
    // The uninterrupted repair.
    let (_r, reference) = fresh();
    let mut report = Scanner::new().scan(&[&reference]).unwrap();
    repair(&mut report, &FsStorage, &opts(&reference, "u.log"));
    let actions: Vec<_> = report.repairs.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        [
            RepairAction::RestoreFromDoublewrite,
            RepairAction::RestoreFromDoublewrite,
            RepairAction::Quarantine
        ]
    );
    let want = data_files(&reference);
    let total = {
        let (_t, root) = fresh();
        let storage = CrashStorage::load_dir(&root).unwrap();
        let mut report = Scanner::new().scan(&[&root]).unwrap();
        repair(&mut report, &storage, &opts(&root, "u.log"));
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        storage.ops()
    };
    assert!(total > 5, "{total} operations");
    for k in 1..=total {
        for policy in [CrashPolicy::TearInFlight, CrashPolicy::Chaos] {
            let (_t, root) = fresh();
            let storage = CrashStorage::load_dir(&root).unwrap();
            storage.crash_at(k);
            let mut report = Scanner::new().scan(&[&root]).unwrap();
            repair(&mut report, &storage, &opts(&root, "u.log"));
            assert!(
                storage.has_crashed() && report.exit_code() & 8 != 0,
                "k={k}"
            );
            storage.write_after_crash(policy, k).unwrap();
            // Run again on a copy (the undo log names the files of `root`).
            let t2 = tempfile::tempdir().unwrap();
            let rerun = t2.path().canonicalize().unwrap().join("data");
            copy_dir(&root, &rerun);
            let mut again = Scanner::new().scan(&[&rerun]).unwrap();
            repair(&mut again, &FsStorage, &opts(&rerun, "u2.log"));
            assert!(
                again.errors.is_empty(),
                "k={k} {policy:?}: {:?}",
                again.errors
            );
            assert!(data_files(&rerun) == want, "k={k} {policy:?}: converges");
            match undo(&FsStorage, &root.join(".dbfsck/u.log"), false) {
                Ok(_)
                | Err(
                    UndoError::Io { .. } | UndoError::NotAnUndoLog(_) | UndoError::Unsealed { .. },
                ) => {}
                Err(e) => panic!("k={k} {policy:?}: {e}"),
            }
            assert!(
                data_files(&root) == pre,
                "k={k} {policy:?}: undo restores the pre-repair bytes"
            );
        }
    }
}

/// While another open file description holds the lock on `ibdata1` (as `mariadbd` does), an
/// undo of `report`'s repair fails with `Locked(ibdata1)` and page `N` keeps `repaired`; once
/// it is released the undo puts back `original`.
fn undo_waits_for_ibdata1(
    d: &Datadir,
    report: &dbfsck_core::Report,
    repaired: &[u8],
    original: &[u8],
) {
    let log = PathBuf::from(report.undo_log.as_deref().unwrap());
    let server = fs::File::open(d.root.join("ibdata1")).unwrap();
    server.try_lock().unwrap();
    let err = dbfsck_repair::undo(&FsStorage, &log, false).unwrap_err();
    assert!(
        matches!(&err, dbfsck_repair::UndoError::Locked(p) if p.ends_with("ibdata1")),
        "{err}"
    );
    assert_eq!(
        d.table_page(N),
        repaired,
        "undo wrote while ibdata1 was locked"
    );
    drop(server);
    dbfsck_repair::undo(&FsStorage, &log, false).unwrap();
    assert_eq!(d.table_page(N), original);
}

/// Case 3 of the review: undo locks what a repair locks. A running server holds its lock on
/// the data directory's `ibdata1` and none on the table files; an undo of a repair of a table
/// must see that lock and write nothing (here another open file description holds it, as
/// `mariadbd` would).
#[test]
fn undo_takes_the_servers_lock_on_ibdata1() {
    let mut d = Datadir::new();
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&new);
    d.write_page(N, &torn(&new, &old));
    let report = d.repair(false);
    assert_eq!(report.repairs[0].result, RepairResult::Applied);
    undo_waits_for_ibdata1(&d, &report, &new, &torn(&new, &old));
}

/// Case 7 and 3 of the review together: a table created with `DATA DIRECTORY` (its file
/// outside the data directory, named by `<db>/<table>.isl`) belongs to its data directory in
/// undo too — an undo of its repair takes the lock on that data directory's `ibdata1`, found
/// from the undo log's place beside or inside the data directory.
#[test]
fn undo_of_a_data_directory_table_takes_its_data_directorys_lock() {
    let mut d = Datadir::new();
    let ext = d._tmp.path().join("ext/shop");
    fs::create_dir_all(&ext).unwrap();
    let outside = ext.join("t.ibd");
    fs::rename(&d.table, &outside).unwrap();
    fs::write(d.root.join("shop/t.isl"), outside.to_str().unwrap()).unwrap();
    d.table = outside;
    let old = d.page(N);
    let new = d.newer(N, 5);
    d.add_slot(&new);
    d.write_page(N, &torn(&new, &old));
    // Scanned with its data directory, as an operator scans both.
    let mut report = Scanner::new().scan(&[&d.root, &ext]).unwrap();
    let options = RepairOptions {
        dry_run: false,
        ..RepairOptions::in_dir(&d.root)
    };
    repair(&mut report, &FsStorage, &options);
    assert_eq!(report.repairs.len(), 1, "{report:?}");
    assert_eq!(
        report.repairs[0].result,
        RepairResult::Applied,
        "{report:?}"
    );
    assert_eq!(d.table_page(N), new);
    undo_waits_for_ibdata1(&d, &report, &new, &torn(&new, &old));
}

/// Case 9 of the review: `innodb_data_file_path=ibdata1:…;ibdata2:…`. A torn page of `ibdata2`
/// (space 0, numbered after ibdata1's pages) with a valid slot is restored: the planner knows,
/// as the scan does, that ibdata2 has no header of its own and continues ibdata1.
#[test]
fn a_torn_page_of_ibdata2_is_restored_from_its_slot() {
    let mut d = Datadir::new();
    let sys_fmt = SpaceFormat::from_flags(0x15).unwrap();
    let first = 192u32; // ibdata1 holds pages 0..192
    let page = |page_no: u32, lsn_: u64, fill: u8| {
        let mut p = vec![fill; PS];
        p[..38].fill(0);
        p[4..8].copy_from_slice(&page_no.to_be_bytes());
        set_lsn(&mut p, lsn_);
        p[24..26].copy_from_slice(&17855u16.to_be_bytes());
        stamp_page(&mut p, &sys_fmt);
        p
    };
    let mut ibdata2 = Vec::new();
    for i in 0..8u32 {
        ibdata2.extend(page(first + i, 20_000, 0x11));
    }
    let n = 3usize;
    let old = page(first + n as u32, 20_000, 0x11);
    let new = page(first + n as u32, 30_000, 0x22);
    d.add_slot(&new);
    ibdata2[n * PS..(n + 1) * PS].copy_from_slice(&torn(&new, &old));
    let path = d.root.join("ibdata2");
    fs::write(&path, &ibdata2).unwrap();
    let report = d.repair(false);
    let f: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.path.clone(), f.unit, f.kind))
        .collect();
    assert_eq!(
        f,
        [(
            path.display().to_string(),
            Some(n as u64),
            FindingKind::TornWrite
        )],
        "{:?}",
        report.findings
    );
    let r = &report.repairs[0];
    assert_eq!(
        (r.action, r.result),
        (RepairAction::RestoreFromDoublewrite, RepairResult::Applied),
        "{r:?}"
    );
    assert_eq!(&fs::read(&path).unwrap()[n * PS..(n + 1) * PS], &new[..]);
    assert!(Scanner::new().scan(&[&d.root]).unwrap().findings.is_empty());
}

/// Issue 16 case 8: page 0 of a full_crc32 page_compressed tablespace, damaged, is restored
/// from its doublewrite slot: the space id that finds the slot comes from inside the
/// decompressed pages, not from bytes of a compressed stream.
#[test]
fn page_zero_of_a_page_compressed_tablespace_is_restored_from_its_slot() {
    let mut d = Datadir::with("page_compressed.ibd");
    assert!(d.fmt.page_compression);
    let p0 = d.page(0);
    d.add_slot(&p0);
    let mut damaged = p0.clone();
    damaged[54..58].copy_from_slice(&0xdead_0000u32.to_be_bytes());
    d.write_page(0, &damaged);
    let report = d.repair(false);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert_eq!(report.findings[0].unit, Some(0));
    let r = &report.repairs[0];
    assert_eq!(
        (r.action, r.result),
        (RepairAction::RestoreFromDoublewrite, RepairResult::Applied),
        "{r:?}"
    );
    assert_eq!(d.table_page(0), p0);
    assert!(Scanner::new().scan(&[&d.root]).unwrap().findings.is_empty());
}
