//! InnoDB repair rules checked against a real MariaDB server (`docs/innodb.md` §7): a
//! doublewrite slot is a source only when the redo log still covers it (its LSN between the
//! checkpoint and the end of `ib_logfile0`), when the damaged page shows no newer write, and
//! when it belongs to the tablespace incarnation on disk. Each test makes the history with the
//! server itself — clean shutdowns, crashes, doublewrite switched off, DISCARD/IMPORT — so the
//! slots and pages are what production leaves.
//!
//! Needs root (the server runs as `mysql` through runuser). Skipped where MariaDB is missing,
//! except when the run must be complete (`CI` or `DBFSCK_TEST_REQUIRE_ALL`).

use std::fs;
use std::path::Path;
use std::process::Command;

use dbfsck_core::innodb::{self, doublewrite, redo, PageVerdict, Slot};
use dbfsck_core::BytesSource;
use dbfsck_testkit::mariadb::{available, available_with_providers, provider_args, MariaDb};
use serde_json::Value;

const PS: usize = 16384;

mod common;
use common::json_run as dbfsck;

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

fn bounds(data: &Path) -> redo::RedoBounds {
    let log = fs::read(data.join("ib_logfile0")).unwrap();
    redo::read_bounds(&BytesSource(&log)).unwrap()
}

/// The last number after `prefix` in the server's error log.
fn logged(db: &MariaDb, prefix: &str) -> Option<u64> {
    let log = db.error_log();
    let at = log.rfind(prefix)? + prefix.len();
    log[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Slots of `file`'s tablespace that verify as their page: (page number, slot).
fn verifying_slots(data: &Path, file: &Path) -> Vec<(usize, Slot)> {
    let sys = fs::read(data.join("ibdata1")).unwrap();
    let bytes = fs::read(file).unwrap();
    let params = innodb::space_params(&bytes).unwrap();
    let (_, slots) = doublewrite::read_slots(&BytesSource(&sys), PS)
        .unwrap()
        .unwrap();
    slots
        .into_iter()
        .filter(|s| s.space_id == params.space_id)
        .filter(|s| {
            let image = &sys[s.offset as usize..s.offset as usize + PS];
            matches!(
                innodb::judge_page(image, &params.format, params.space_id, u64::from(s.page_no)),
                PageVerdict::Ok { lsn, .. } if lsn == s.lsn
            )
        })
        .map(|s| (s.page_no as usize, s))
        .collect()
}

fn create_table(db: &MariaDb, rows: u32) {
    db.sql(&format!(
        "create database if not exists shop; use shop; \
         create table shop.t (id int primary key, a varchar(200), b int) engine=innodb; \
         insert into shop.t select seq, repeat(md5(seq), 6), seq from seq_1_to_{rows};"
    ))
    .unwrap();
}

/// Flushing as eagerly as the server can, so every batch goes through the doublewrite buffer.
const AGGRESSIVE_FLUSHING: [&str; 4] = [
    "--innodb-max-dirty-pages-pct=0",
    "--innodb-max-dirty-pages-pct-lwm=0.001",
    "--innodb-adaptive-flushing-lwm=0",
    "--innodb-io-capacity=20000",
];

/// Runs an update workload on `shop.t` for `ms` milliseconds with eager flushing, then kills
/// the server (SIGKILL): the doublewrite buffer holds the table's last flushed pages.
fn work_then_crash(db: &mut MariaDb, ms: u64) {
    db.sql(
        "delimiter //\n\
         create procedure if not exists shop.work() begin declare i int default 0; \
           while true do update shop.t set b = b + 1 where id % 97 = i % 97; set i = i + 1; \
           end while; end//",
    )
    .unwrap();
    db.stop().unwrap();
    db.start(&AGGRESSIVE_FLUSHING).unwrap();
    let client = db.spawn_sql("call shop.work()").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    db.kill().unwrap();
    let _ = { client }.wait();
}

/// The checkpoint and end LSNs dbfsck reads from `ib_logfile0` of a crashed server are the
/// ones the server's own crash recovery then reports ("Starting crash recovery from
/// checkpoint LSN=…", "End of log at LSN=…"), and after a clean shutdown both are the LSN the
/// server logged at shutdown.
#[test]
fn redo_bounds_agree_with_the_servers_recovery() {
    if !available("the redo log bounds test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    db.start(&[]).unwrap();
    create_table(&db, 20000);
    db.sql(
        "delimiter //\n\
         create procedure shop.work() begin declare i int default 0; while true do \
           update shop.t set b = b + 1 where id % 97 = i % 97; set i = i + 1; end while; end//",
    )
    .unwrap();
    for round in 0..2 {
        let client = db.spawn_sql("call shop.work()").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500 + 1000 * round));
        db.kill().unwrap();
        let _ = { client }.wait();
        let b = bounds(&db.data);
        db.start(&[]).unwrap();
        let checkpoint = logged(&db, "Starting crash recovery from checkpoint LSN=");
        let end = logged(&db, "End of log at LSN=");
        assert_eq!(
            (Some(b.checkpoint_lsn), Some(b.end_lsn)),
            (checkpoint, end),
            "round {round}: dbfsck's bounds differ from the server's recovery"
        );
        assert!(b.end_lsn > b.checkpoint_lsn, "{b:?}");
    }
    db.stop().unwrap();
    let b = bounds(&db.data);
    let shutdown = logged(&db, "Shutdown completed; log sequence number ").unwrap();
    assert_eq!(b.end_lsn, shutdown, "{b:?}");
    assert!(b.checkpoint_lsn <= shutdown, "{b:?}");
}

/// Case 1 of the review: the page's only slot holds an image older than the page's last
/// write (made here as production makes it: slots filled with doublewrite on, then every page
/// rewritten with it off, clean shutdown). The damaged page — its first 512 bytes zeroed, or a
/// valid copy of another page written over it — must be quarantined, not rolled back: the
/// slot is older than the redo log's checkpoint and, for the zeroed header, than the LSN the
/// trailer still shows. The server then still has every committed row of the other pages.
#[test]
fn a_doublewrite_slot_older_than_the_pages_last_write_is_never_restored() {
    if !available("the stale doublewrite slot test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    db.start(&[]).unwrap();
    create_table(&db, 20000);
    // Slots of the table: flushes under a write workload, ended by a crash.
    work_then_crash(&mut db, 3000);
    db.start(&["--innodb-doublewrite=0"]).unwrap();
    db.sql("update shop.t set b = b * 1001").unwrap();
    let want = db.sql("select sum(b) from shop.t").unwrap();
    db.stop().unwrap();
    let data = db.data.clone();
    let table = data.join("shop/t.ibd");
    let clean = fs::read(&table).unwrap();
    // Pages whose newest verifying slot is older than the page (in the trailer's bits too).
    let mut newest: std::collections::BTreeMap<usize, Slot> = Default::default();
    for (n, s) in verifying_slots(&data, &table) {
        if newest.get(&n).is_none_or(|o| s.lsn > o.lsn) {
            newest.insert(n, s);
        }
    }
    let stale: Vec<(usize, Slot)> = newest
        .into_iter()
        .filter(|(n, s)| {
            let p = &clean[n * PS..(n + 1) * PS];
            be64(p, 16) > s.lsn && p[PS - 8..PS - 4] != s.lsn.to_be_bytes()[4..]
        })
        .collect();
    assert!(
        !stale.is_empty(),
        "no slot of shop.t older than its page: the history did not leave one"
    );
    let (n, slot) = stale[0];
    let other = (1..clean.len() / PS)
        .find(|&m| m != n && clean[m * PS..(m + 1) * PS].iter().any(|&b| b != 0))
        .unwrap();
    let root = data.to_str().unwrap();
    for variant in ["first 512 bytes zeroed", "a valid copy of another page"] {
        let mut bytes = clean.clone();
        if variant.starts_with("first") {
            bytes[n * PS..n * PS + 512].fill(0);
        } else {
            let copy = clean[other * PS..(other + 1) * PS].to_vec();
            bytes[n * PS..(n + 1) * PS].copy_from_slice(&copy);
        }
        fs::write(&table, &bytes).unwrap();
        let (code, v) = dbfsck(&["scan", root, "--repair"]);
        assert_eq!(code, 4, "{variant}: {v}");
        let repairs = v["repairs"].as_array().unwrap();
        assert_eq!(repairs.len(), 1, "{variant}: {v}");
        assert_eq!(repairs[0]["action"], "quarantine", "{variant}: {v}");
        let detail = repairs[0]["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("LSN {}", slot.lsn)) && detail.contains("older than"),
            "{variant}: {detail}"
        );
        assert_eq!(
            fs::read(&table).unwrap(),
            bytes,
            "{variant}: the repair wrote the old image"
        );
        // Case 10: dbfsck's own folder is beside the data directory, never in it.
        let beside = fs::canonicalize(tmp.path()).unwrap().join(".dbfsck/data");
        assert_eq!(
            v["quarantine_dir"].as_str().map(Path::new),
            Some(beside.join("quarantine").as_path()),
            "{v}"
        );
        assert!(!data.join(".dbfsck").exists());
    }
    // Put the page back: the server reads every row as committed.
    fs::write(&table, &clean).unwrap();
    db.start(&[]).unwrap();
    assert_eq!(db.sql("select sum(b) from shop.t").unwrap(), want);
    // The server sees no stray database after the repairs (it would with .dbfsck inside).
    let check = Command::new("mariadb-check")
        .arg("--no-defaults")
        .arg(format!("--socket={}", tmp.path().join("sock").display()))
        .args(["-uroot", "--all-databases"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!db.sql("show databases").unwrap().contains("dbfsck"));
    db.stop().unwrap();
}

/// Case 2 of the review: after DISCARD TABLESPACE + IMPORT TABLESPACE the slots of the table's
/// space id hold pages of the discarded data. A torn page of the imported table is
/// quarantined, never rebuilt from them; and an .ibd copied into the data directory for an
/// import, sharing a local table's space id, is warned about.
#[test]
fn a_slot_of_the_tablespace_before_an_import_is_never_restored() {
    if !available("the import incarnation test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    db.start(&[]).unwrap();
    create_table(&db, 20000);
    discard_and_import(&mut db, tmp.path(), &[]);
    let data = db.data.clone();
    db.stop().unwrap();
    let table = data.join("shop/t.ibd");
    let clean = fs::read(&table).unwrap();
    let slots = verifying_slots(&data, &table);
    assert!(
        !slots.is_empty(),
        "no slot of the discarded incarnation left: the history did not make the case"
    );
    let (n, _) = slots[0];
    let mut bytes = clean.clone();
    bytes[n * PS..n * PS + 4096].fill(0);
    fs::write(&table, &bytes).unwrap();
    let root = data.to_str().unwrap();
    let (code, v) = dbfsck(&["scan", root, "--repair"]);
    assert_eq!(code, 4, "{v}");
    let repairs = v["repairs"].as_array().unwrap();
    assert!(
        repairs.iter().all(|r| r["action"] == "quarantine"),
        "a page was rebuilt from another incarnation's slot: {v}"
    );
    assert_eq!(fs::read(&table).unwrap(), bytes);
    fs::write(&table, &clean).unwrap();

    // A copy of the table's file left in another database folder claims the same space id.
    fs::create_dir_all(data.join("spare")).unwrap();
    fs::copy(&table, data.join("spare/t_copy.ibd")).unwrap();
    let (_, v) = dbfsck(&["scan", root]);
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("is claimed by shop/t.ibd and spare/t_copy.ibd"),
        "{warnings}"
    );
}

/// Case 4 of the review: a fully written tablespace whose first 64 KiB are zeroed, scanned
/// while the server runs (with and without `--online`) and stopped, is damage — page 0
/// reported, and a second damaged page (100) not hidden — never the "not written yet" note,
/// which needs a file in which no page verifies anywhere.
#[test]
fn a_lost_header_on_a_running_server_is_damage_not_a_new_table() {
    if !available("the lost header test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    db.start(&[]).unwrap();
    create_table(&db, 20000);
    db.stop().unwrap();
    let table = db.data.join("shop/t.ibd");
    let mut bytes = fs::read(&table).unwrap();
    assert!(bytes.len() > 101 * PS);
    assert!(bytes[100 * PS..101 * PS].iter().any(|&b| b != 0));
    bytes[..65536].fill(0);
    bytes[100 * PS + 5000] ^= 0x10;
    fs::write(&table, &bytes).unwrap();
    let root = db.data.to_str().unwrap().to_owned();
    let check = |v: &Value, code: i32, what: &str| {
        assert_eq!(code, 4, "{what}: {v}");
        let units: Vec<u64> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["path"].as_str().unwrap().ends_with("shop/t.ibd"))
            .map(|f| f["unit"].as_u64().unwrap())
            .collect();
        assert_eq!(units, [0, 100], "{what}: {v}");
        assert!(
            !v.to_string()
                .contains("has not written this tablespace yet"),
            "{what}: {v}"
        );
    };
    let (code, v) = dbfsck(&["scan", &root]);
    check(&v, code, "stopped");
    db.start(&[]).unwrap();
    for args in [vec!["scan", &root], vec!["scan", "--online", &root]] {
        let (code, v) = dbfsck(&args);
        check(&v, code, &format!("running, {args:?}"));
    }
    db.stop().unwrap();
}

/// Case 11 of the review: live DDL. While a client creates, fills, truncates and drops tables
/// in a loop, scans of the running server's data directory (with and without `--online`) never
/// call a file the server dropped or shrank an error or damage: it is `changed_during_scan` or
/// a skipped entry, so no scan exits with bit 4 or 8.
#[test]
fn live_ddl_is_never_an_error_or_damage() {
    if !available("the live DDL test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    db.start(&[]).unwrap();
    create_table(&db, 2000);
    db.sql(
        "delimiter //\n\
         create procedure shop.churn() begin declare i int default 0; while i < 1000000 do \
           create table shop.c (id int primary key, a varchar(200)) engine=innodb; \
           insert into shop.c select seq, repeat(md5(seq), 6) from seq_1_to_3000; \
           truncate table shop.c; insert into shop.c values (1, 'x'); \
           drop table shop.c; set i = i + 1; end while; end//",
    )
    .unwrap();
    let mut churn = db.spawn_sql("call shop.churn()").unwrap();
    let root = db.data.to_str().unwrap().to_owned();
    let bad = common::failing_scans(&root, 24);
    let _ = churn.kill();
    let _ = churn.wait();
    db.stop().unwrap();
    assert!(
        bad.is_empty(),
        "{} of 24 scans failed:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Case 7 of the review: a table created with `DATA DIRECTORY` belongs to its data directory
/// in every rule. Just created on a running server it is judged as an internal table is (no
/// `zeroed_page`); a torn page with a current slot is restored from the data directory's
/// doublewrite buffer (when the external folder is scanned too); a repair refuses while the
/// server runs (it holds ibdata1); and a copy of the data directory warns that the table's data
/// is not in it.
#[test]
fn data_directory_tables_follow_their_data_directorys_rules() {
    if !available("the DATA DIRECTORY test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    let ext = tmp.path().join("ext");
    fs::create_dir_all(&ext).unwrap();
    let o = Command::new("chown")
        .args(["mysql:mysql"])
        .arg(&ext)
        .output()
        .unwrap();
    assert!(o.status.success());
    db.start(&[]).unwrap();
    let e = ext.display();
    db.sql(&format!(
        "create database shop; use shop; \
         create table shop.t (id int primary key, a varchar(200), b int) engine=innodb data directory='{e}'; \
         insert into shop.t select seq, repeat(md5(seq), 6), seq from seq_1_to_20000; \
         create table shop.fresh (id int primary key) engine=innodb data directory='{e}';"
    ))
    .unwrap();
    let root = db.data.to_str().unwrap().to_owned();
    let ext_s = ext.to_str().unwrap().to_owned();
    let (code, v) = dbfsck(&["scan", &root]);
    assert_eq!(
        code & 4,
        0,
        "a just-created DATA DIRECTORY table is not damage: {v}"
    );
    assert!(v["warnings"].to_string().contains("DATA DIRECTORY"), "{v}");

    // Slots of the external table, then a tear of a page whose newest slot is current.
    work_then_crash(&mut db, 3000);
    let table = ext.join("shop/t.ibd");
    let b = bounds(&db.data);
    let bytes = fs::read(&table).unwrap();
    let mut newest: std::collections::BTreeMap<usize, Slot> = Default::default();
    for (n, s) in verifying_slots(&db.data, &table) {
        if (b.checkpoint_lsn..=b.end_lsn).contains(&s.lsn)
            && newest.get(&n).is_none_or(|o| s.lsn > o.lsn)
        {
            newest.insert(n, s);
        }
    }
    let (n, slot) = newest
        .into_iter()
        .find(|(n, s)| be64(&bytes[n * PS..(n + 1) * PS], 16) <= s.lsn)
        .expect("no current slot of the external table after the crash");
    let sys = fs::read(db.data.join("ibdata1")).unwrap();
    let image = sys[slot.offset as usize..slot.offset as usize + PS].to_vec();
    let mut torn = bytes.clone();
    torn[n * PS + 4096..n * PS + 8192].fill(0x5a); // a lost sector in the middle
    fs::write(&table, &torn).unwrap();
    let (code, v) = dbfsck(&["scan", "--repair", &root, &ext_s]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["repairs"][0]["action"], "restore_from_doublewrite", "{v}");
    assert_eq!(&fs::read(&table).unwrap()[n * PS..(n + 1) * PS], &image[..]);

    // While the server runs, a repair of the external table refuses (it holds ibdata1).
    db.start(&[]).unwrap();
    db.sql("select count(*) from shop.t").unwrap();
    let now = fs::read(&table).unwrap();
    let mut bad = now.clone();
    bad[n * PS + 9000] ^= 1;
    fs::write(&table, &bad).unwrap();
    let (code, v) = dbfsck(&["scan", "--repair", &root, &ext_s]);
    assert_eq!(code & 8, 8, "{v}");
    assert_eq!(
        fs::read(&table).unwrap(),
        bad,
        "a repair wrote while the server ran"
    );
    fs::write(&table, &now).unwrap();
    db.stop().unwrap();

    // A copy of the data directory: the external table's data is not in it, and it says so.
    let copy = tempfile::tempdir().unwrap();
    let backup = db.copy_to(copy.path()).unwrap();
    let (_, v) = dbfsck(&["scan", backup.data.to_str().unwrap()]);
    assert!(
        v["warnings"]
            .to_string()
            .contains("a copy of the directory (a backup) does not hold its data"),
        "{v}"
    );
}

/// Case 6 of the review: encrypted tables (file_key_management). Their pages are checked by
/// what the format keeps in the clear — the full_crc32 CRC over the encrypted page (whose
/// space id is encrypted, so not compared), the old format's checksum of the encrypted bytes
/// at offset 30 — so a clean encrypted table is clean (the server reads every row), and a
/// flipped byte in one page is that page's `checksum_mismatch`, nothing more.
#[test]
fn encrypted_tables_are_judged_by_their_encrypted_checksums() {
    if !available("the encrypted tables test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    let keys = tmp.path().join("keys.txt");
    fs::write(
        &keys,
        "1;a7addd9adea9978fda19f21e6be987880e68ac92632ca052e5bb42b1a506939a\n",
    )
    .unwrap();
    let o = Command::new("chown")
        .arg("mysql")
        .arg(&keys)
        .output()
        .unwrap();
    assert!(o.status.success());
    let key_opt = format!("--file-key-management-filename={}", keys.display());
    let opts = ["--plugin-load-add=file_key_management", key_opt.as_str()];
    db.start(&opts).unwrap();
    db.sql(
        "create database shop; use shop; \
         create table shop.fc (id int primary key, a varchar(200)) engine=innodb encrypted=yes; \
         insert into shop.fc select seq, repeat(md5(seq), 6) from seq_1_to_5000; \
         set global innodb_checksum_algorithm=crc32; \
         create table shop.c32 (id int primary key, a varchar(200)) engine=innodb encrypted=yes; \
         insert into shop.c32 select seq, repeat(md5(seq), 6) from seq_1_to_5000;",
    )
    .unwrap();
    let want = db.sql("select count(*), sum(crc32(a)) from shop.fc; select count(*), sum(crc32(a)) from shop.c32").unwrap();
    db.stop().unwrap();
    let root = db.data.to_str().unwrap().to_owned();
    let (code, v) = dbfsck(&["scan", &root]);
    assert_eq!(code, 0, "{v}");
    assert!(v["findings"].as_array().unwrap().is_empty(), "{v}");
    let mut expect = Vec::new();
    for t in ["fc", "c32"] {
        let f = db.data.join(format!("shop/{t}.ibd"));
        let mut bytes = fs::read(&f).unwrap();
        assert_ne!(
            &bytes[4 * PS + 26..4 * PS + 30],
            &[0u8; 4][..],
            "{t}: page 4 is not encrypted"
        );
        bytes[4 * PS + 9000] ^= 0x20;
        fs::write(&f, &bytes).unwrap();
        expect.push((
            format!("shop/{t}.ibd"),
            4u64,
            "checksum_mismatch".to_owned(),
        ));
    }
    let (code, v) = dbfsck(&["scan", &root]);
    assert_eq!(code, 4, "{v}");
    let got: Vec<(String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            let rel = Path::new(p)
                .strip_prefix(&db.data)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                rel,
                f["unit"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expect_sorted = expect.clone();
    expect_sorted.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, expect_sorted, "{v}");
    // Undamaged again, the server reads every row: the verdict "clean" was the server's.
    for t in ["fc", "c32"] {
        let f = db.data.join(format!("shop/{t}.ibd"));
        let mut bytes = fs::read(&f).unwrap();
        bytes[4 * PS + 9000] ^= 0x20;
        fs::write(&f, &bytes).unwrap();
    }
    db.start(&opts).unwrap();
    assert_eq!(
        db.sql("select count(*), sum(crc32(a)) from shop.fc; select count(*), sum(crc32(a)) from shop.c32").unwrap(),
        want
    );
    db.stop().unwrap();
}

/// Case 5 of the review: page_compressed tables, old format (`innodb_checksum_algorithm=crc32`
/// at creation, pages of type 34354 with no checksum of their own) and full_crc32, with every
/// algorithm the server offers. Clean, they scan clean with every page counted; an old-format
/// LZO table (which dbfsck does not decompress) gets a warning and its compressed pages are
/// not counted. With 64 bytes of one compressed page's stream flipped in each table, every
/// table but the LZO one has exactly that page reported — and the server fails to read every
/// damaged table (innochecksum calls the old-format ones clean).
#[test]
fn page_compressed_tables_are_judged_as_the_server_reads_them() {
    if !available_with_providers("the page_compressed test") {
        return;
    }
    const ALGOS: [&str; 6] = ["zlib", "lz4", "lzma", "bzip2", "snappy", "lzo"];
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    let mut args = provider_args();
    args.push("--innodb-checksum-algorithm=crc32".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut tables = Vec::new();
    // A page is compressed when it is written, with the algorithm of that moment: one server
    // run per algorithm, started with it, so that however late the server writes a table's
    // pages (at shutdown, on MariaDB 10.11.14) they carry the table's algorithm.
    for a in ALGOS {
        let algo = format!("--innodb-compression-algorithm={a}");
        let mut with_algo = args.clone();
        with_algo.push(&algo);
        db.start(&with_algo).unwrap();
        for checksum in ["crc32", "full_crc32"] {
            let t = format!("{}_{a}", &checksum[..1]);
            db.sql(&format!(
                "create database if not exists shop; use shop; \
                 set global innodb_checksum_algorithm={checksum}; \
                 create table shop.{t} (id int primary key, a varchar(200), b int) \
                   engine=innodb page_compressed=1; \
                 insert into shop.{t} select seq, repeat(md5(seq), 5), seq from seq_1_to_600; \
                 flush tables shop.{t} for export; unlock tables;"
            ))
            .unwrap();
            tables.push(t);
        }
        db.stop().unwrap();
    }
    let root = db.data.to_str().unwrap().to_owned();
    let (code, v) = dbfsck(&["scan", &root]);
    assert_eq!(code, 0, "{v}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("c_lzo.ibd"), "{warnings}");
    assert!(warnings.contains("could not be checked"), "{warnings}");
    assert_eq!(
        warnings.matches("could not be checked").count(),
        1,
        "only the old-format LZO table: {warnings}"
    );
    let mut damaged = Vec::new();
    for t in &tables {
        let path = db.data.join(format!("shop/{t}.ibd"));
        let mut bytes = fs::read(&path).unwrap();
        let n = (3..bytes.len() / PS)
            .find(|&n| {
                let ty = u16::from_be_bytes([bytes[n * PS + 24], bytes[n * PS + 25]]);
                ty == 34354 || ty & 0x8000 != 0
            })
            .unwrap_or_else(|| panic!("{t}: no compressed page"));
        for b in &mut bytes[n * PS + 200..n * PS + 264] {
            *b ^= 0x5a;
        }
        fs::write(&path, &bytes).unwrap();
        damaged.push((t.clone(), n as u64));
    }
    let (code, v) = dbfsck(&["scan", &root]);
    assert_eq!(code, 4, "{v}");
    let mut found: Vec<(String, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            let name = Path::new(p)
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            (name, f["unit"].as_u64().unwrap())
        })
        .collect();
    found.sort();
    let mut want: Vec<(String, u64)> = damaged
        .iter()
        .filter(|(t, _)| t != "c_lzo")
        .cloned()
        .collect();
    want.sort();
    assert_eq!(found, want, "{v}");
    // The server agrees: not one damaged table can be read.
    db.start(&args).unwrap();
    for (t, _) in &damaged {
        let r = db.sql(&format!("select sum(b) from shop.{t}"));
        assert!(r.is_err(), "the server read the damaged {t}: {r:?}");
    }
    db.stop().unwrap();
}

/// SplitMix64: a small seeded generator, so a failing history can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Exports `shop.t` (FLUSH TABLES FOR EXPORT, copy, UNLOCK) while the table is locked for it
/// (the client holds the lock until it is told to unlock, so the files copied are a consistent
/// image), changes the table so that its discarded incarnation's pages reach the doublewrite
/// buffer (a restart with `args` flushes them), discards its tablespace and imports the copy:
/// a new incarnation of the same space id.
fn discard_and_import(db: &mut MariaDb, dir: &Path, args: &[&str]) {
    let export = dir.join("export");
    fs::create_dir_all(&export).unwrap();
    let mut lock = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", db.root.join("sock").display()))
        .args(["-uroot", "--batch"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = lock.stdin.take().unwrap();
    use std::io::Write;
    writeln!(stdin, "flush tables shop.t for export;").unwrap();
    stdin.flush().unwrap();
    let cfg = db.data.join("shop/t.cfg");
    let started = std::time::Instant::now();
    while !cfg.exists() {
        assert!(started.elapsed().as_secs() < 30, "no t.cfg");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    for f in ["t.ibd", "t.cfg"] {
        fs::copy(db.data.join("shop").join(f), export.join(f)).unwrap();
    }
    writeln!(stdin, "unlock tables;").unwrap();
    drop(stdin);
    assert!(lock.wait().unwrap().success());
    db.sql("update shop.t set b = b + 7").unwrap();
    db.stop().unwrap();
    db.start(args).unwrap();
    db.sql("alter table shop.t discard tablespace").unwrap();
    for f in ["t.ibd", "t.cfg"] {
        fs::copy(export.join(f), db.data.join("shop").join(f)).unwrap();
    }
    db.chown_data().unwrap();
    db.sql("alter table shop.t import tablespace").unwrap();
    let _ = fs::remove_dir_all(&export);
}

/// One random history of `shop.t`, ended by a crash; then pages torn anywhere, a repair, and
/// the server's recovery of the repaired directory against an untouched copy's. Returns how
/// many pages were restored.
fn one_random_history(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(&mkdir(tmp.path().join("a"))).unwrap();
    db.start(&AGGRESSIVE_FLUSHING).unwrap();
    create_table(&db, 20000);
    let mut history = Vec::new();
    for _ in 0..3 + rng.below(3) {
        match rng.below(4) {
            0 => {
                history.push("updates");
                for k in 0..3 + rng.below(5) {
                    db.sql(&format!("update shop.t set b = b + 1 where id % 11 = {k}"))
                        .unwrap();
                }
            }
            1 => {
                history.push("clean restart");
                db.stop().unwrap();
                db.start(&AGGRESSIVE_FLUSHING).unwrap();
            }
            2 => {
                history.push("crash");
                work_then_crash(&mut db, 500 + rng.below(1500));
                db.start(&AGGRESSIVE_FLUSHING).unwrap();
            }
            _ => {
                history.push("discard/import");
                discard_and_import(&mut db, tmp.path(), &AGGRESSIVE_FLUSHING);
            }
        }
    }
    history.push("crash");
    work_then_crash(&mut db, 1000 + rng.below(1500));
    let reference = db.copy_to(&mkdir(tmp.path().join("b"))).unwrap();
    let table = db.data.join("shop/t.ibd");
    let before = fs::read(&table).unwrap();
    let written: Vec<usize> = (1..before.len() / PS)
        .filter(|&n| before[n * PS..(n + 1) * PS].iter().any(|&b| b != 0))
        .collect();
    // Pages with a doublewrite slot, most of the time: where a repair has a source to judge.
    let slotted: Vec<usize> = verifying_slots(&db.data, &table)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|&n| n > 0 && n < before.len() / PS)
        .collect();
    let mut bytes = before.clone();
    let mut torn = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let n = if !slotted.is_empty() && rng.below(3) > 0 {
            slotted[rng.below(slotted.len() as u64) as usize]
        } else {
            written[rng.below(written.len() as u64) as usize]
        };
        let at = n * PS;
        match rng.below(3) {
            0 => bytes[at..at + 4096].fill(0),
            1 => {
                let m = written[rng.below(written.len() as u64) as usize] * PS;
                let other = before[m..m + 4096].to_vec();
                bytes[at..at + 4096].copy_from_slice(&other);
            }
            _ => bytes[at + PS - 8192..at + PS].fill(0),
        }
        torn.push(n);
    }
    fs::write(&table, &bytes).unwrap();
    let what = format!("seed {seed}: {history:?}, torn pages {torn:?}");
    let (code, v) = dbfsck(&["scan", db.data.to_str().unwrap(), "--repair"]);
    assert!(code == 1 || code == 4 || code == 0, "{what}: {v}");
    let after = fs::read(&table).unwrap();
    let actions: Vec<&str> = v["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    eprintln!("{what}: exit {code}, repairs {actions:?}");
    for r in v["repairs"].as_array().unwrap() {
        if r["action"] != "restore_from_doublewrite" || r["result"] != "applied" {
            continue;
        }
        let n = r["unit"].as_u64().unwrap() as usize;
        let restored = &after[n * PS..(n + 1) * PS];
        let old = &before[n * PS..(n + 1) * PS];
        assert!(
            be64(restored, 16) >= be64(old, 16),
            "{what}: page {n} restored to LSN {} older than its last write at LSN {}: {r}",
            be64(restored, 16),
            be64(old, 16)
        );
        assert_eq!(
            restored[34..38],
            old[34..38],
            "{what}: page {n} restored from another space: {r}"
        );
    }
    // The server's own recovery of both: what the repaired one reads, the untouched one reads.
    let mut reference = reference;
    reference.start(&[]).unwrap();
    let want = reference
        .sql("select count(*), sum(b) from shop.t")
        .unwrap();
    reference.stop().unwrap();
    // Pages left damaged (quarantined) may keep the server from starting or reading the
    // table — a refusal, never other rows.
    let left = v["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "quarantine");
    match db.start(&[]) {
        Ok(()) => {
            let got = db.sql("select count(*), sum(b) from shop.t");
            let _ = db.stop();
            match got {
                Ok(got) => assert_eq!(got, want, "{what}: {v}"),
                Err(e) => assert!(left, "{what}: every page was restored, yet: {e}\n{v}"),
            }
        }
        Err(e) => {
            let e = e.to_string();
            let tail = &e[e.len().saturating_sub(3000)..];
            assert!(
                left,
                "{what}: every page was restored, yet the server fails: {tail}\n{v}"
            );
        }
    }
    actions
        .iter()
        .filter(|a| **a == "restore_from_doublewrite")
        .count()
}

/// `p`, made.
fn mkdir(p: std::path::PathBuf) -> std::path::PathBuf {
    fs::create_dir_all(&p).unwrap();
    p
}

/// The review's property: over random histories of one table — updates, clean restarts,
/// crashes (SIGKILL under eager flushing), DISCARD/IMPORT — ended by a crash, with pages torn
/// anywhere (first 4 KiB zeroed or from another page, last 8 KiB zeroed), a repair never
/// writes an image older than the page's last write nor one of another space, and the server
/// recovering the repaired directory reads what it reads from an untouched copy of the crash.
/// `DBFSCK_HISTORY_SEEDS` (comma-separated) replays given seeds.
#[test]
fn repairs_over_random_histories_never_write_a_stale_or_foreign_image() {
    if !available("the random history test") {
        return;
    }
    let given: Option<Vec<u64>> = std::env::var("DBFSCK_HISTORY_SEEDS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().parse().unwrap()).collect());
    let seeds = given.clone().unwrap_or_else(|| vec![1, 4, 8]);
    let restored: usize = seeds.into_iter().map(one_random_history).sum();
    // The default histories include restores (seed 1 an import, whose slots are all refused):
    // a planner that only ever quarantined would prove nothing here.
    assert!(
        given.is_some() || restored > 0,
        "no page was restored in any history"
    );
}
