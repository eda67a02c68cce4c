//! `dbfsck scan --repair` and `dbfsck undo` as scripts use them: the dry run changes nothing and
//! lists `planned` repairs; exit 1 when every finding was restored from a verified source, 4 when
//! anything was quarantined or left; the JSON names the undo log and the quarantine; `undo`
//! restores the exact bytes (exit 0) and refuses a damaged log (exit 8).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dbfsck_core::native::{ChecksumAlgo, CreateOptions, PageFile, PageType};
use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite};
use serde_json::Value;

const PS: usize = 4096;

fn dbfsck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn rc(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

/// A file of 12 pages; pages 2, 4 and 6 rewritten through the journal.
fn store(root: &Path) -> PathBuf {
    let data = root.join("t.dbfp");
    let opts = CreateOptions {
        page_size: PS,
        checksum: ChecksumAlgo::Crc32,
        file_id: Some(3),
    };
    let mut pf = PageFile::create(&data, opts).unwrap();
    for p in 1..12 {
        pf.write_page(p, PageType::App(0x100), 1, b"first").unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    let mut s =
        JournaledStore::create(FsStorage, &root.join("wal.dbfj"), JournalOptions::default())
            .unwrap();
    let h = s.open_file(&data).unwrap();
    let writes: Vec<PageWrite<'_>> = [2u64, 4, 6]
        .iter()
        .map(|&page_no| PageWrite {
            file: h,
            page_no,
            page_type: PageType::App(0x100),
            flags: 0,
            lsn: 2,
            body: b"second",
        })
        .collect();
    s.commit(&writes).unwrap();
    data
}

fn zero_pages(path: &Path, pages: &[usize]) {
    let mut b = std::fs::read(path).unwrap();
    for p in pages {
        b[p * PS..(p + 1) * PS].fill(0);
    }
    std::fs::write(path, b).unwrap();
}

fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = walk(root)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    out
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            v.extend(walk(&e.path()));
        } else {
            v.push(e.path());
        }
    }
    v
}

#[test]
fn a_dry_run_changes_nothing_and_lists_planned_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = store(root);
    zero_pages(&data, &[4, 9]);
    let before = tree(root);
    let o = dbfsck(&[
        "scan",
        "--repair",
        "--dry-run",
        "--output",
        "json",
        root.to_str().unwrap(),
    ]);
    assert_eq!(rc(&o), 4);
    assert_eq!(tree(root), before);
    let v = json(&o);
    let repairs = v["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), 2);
    assert_eq!(repairs[0]["action"], "restore_from_journal");
    assert_eq!(repairs[0]["offset"], 4 * PS);
    assert_eq!(repairs[0]["length"], PS);
    assert_eq!(repairs[0]["path"], data.to_str().unwrap());
    assert!(repairs[0]["source"].as_str().unwrap().contains("wal.dbfj"));
    assert_eq!(repairs[1]["action"], "quarantine");
    assert!(repairs.iter().all(|r| r["result"] == "planned"));
    assert!(v.get("undo_log").is_none(), "a dry run writes no undo log");

    let human = dbfsck(&["scan", "--repair", "--dry-run", root.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("repair plan (dry run: nothing changed)"),
        "{text}"
    );
    assert!(text.contains("next: run `dbfsck scan --repair "), "{text}");
    assert_eq!(tree(root), before);
}

#[test]
fn restoring_every_finding_exits_1_and_undo_puts_the_bytes_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = store(root);
    zero_pages(&data, &[2, 6]);
    let damaged = std::fs::read(&data).unwrap();
    let log = root.join("my-undo.log");
    let o = dbfsck(&[
        "scan",
        "--repair",
        "--undo-log",
        log.to_str().unwrap(),
        "--output",
        "jsonl",
        root.to_str().unwrap(),
    ]);
    assert_eq!(rc(&o), 1, "{}", String::from_utf8_lossy(&o.stdout));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let repairs: Vec<&Value> = lines.iter().filter(|l| l["type"] == "repair").collect();
    assert_eq!(repairs.len(), 2);
    assert!(repairs.iter().all(|r| r["result"] == "applied"));
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["undo_log"], log.to_str().unwrap());
    assert_eq!(
        rc(&dbfsck(&["scan", root.to_str().unwrap()])),
        0,
        "the re-scan is clean"
    );

    let u = dbfsck(&["undo", log.to_str().unwrap()]);
    assert_eq!(rc(&u), 0, "{}", String::from_utf8_lossy(&u.stderr));
    assert_eq!(std::fs::read(&data).unwrap(), damaged, "byte-exact");
    assert_eq!(
        rc(&dbfsck(&["undo", log.to_str().unwrap()])),
        0,
        "idempotent"
    );
    assert_eq!(std::fs::read(&data).unwrap(), damaged);
}

#[test]
fn a_quarantine_exits_4_and_later_scans_report_the_hole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = store(root);
    // A rotted bit: the quarantined copy looks like a native page, and must still not be scanned.
    let mut b = std::fs::read(&data).unwrap();
    b[9 * PS + 300] ^= 0x40;
    std::fs::write(&data, b).unwrap();
    let q = root.join("q");
    let o = dbfsck(&[
        "scan",
        "--repair",
        "--quarantine",
        q.to_str().unwrap(),
        "--output",
        "json",
        root.to_str().unwrap(),
    ]);
    assert_eq!(rc(&o), 4);
    let v = json(&o);
    assert_eq!(v["quarantine_dir"], q.to_str().unwrap());
    let undo_log = v["undo_log"].as_str().unwrap();
    assert!(
        undo_log.starts_with(root.join(".dbfsck/undo-").to_str().unwrap()),
        "{undo_log}"
    );
    assert_eq!(v["repairs"][0]["action"], "quarantine");
    assert_eq!(v["repairs"][0]["result"], "applied");
    assert!(q.join("manifest.jsonl").exists());

    let again = dbfsck(&["scan", "--output", "json", root.to_str().unwrap()]);
    assert_eq!(
        rc(&again),
        4,
        "the data is missing until restored from a backup"
    );
    let v = json(&again);
    assert_eq!(v["findings"][0]["kind"], "quarantined");
    assert_eq!(v["findings"][0]["unit"], 9);
    // The quarantine, here inside the tree, is never scanned as data.
    assert_eq!(v["findings"].as_array().unwrap().len(), 1);
    let skipped = v["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["path"] == q.to_str().unwrap()),
        "{skipped:?}"
    );
}

#[test]
fn undo_of_a_damaged_log_exits_8_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = store(root);
    zero_pages(&data, &[2]);
    let log = root.join("u.log");
    assert_eq!(
        rc(&dbfsck(&[
            "scan",
            "--repair",
            "--undo-log",
            log.to_str().unwrap(),
            root.to_str().unwrap()
        ])),
        1
    );
    let repaired = std::fs::read(&data).unwrap();
    let mut b = std::fs::read(&log).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    std::fs::write(&log, b).unwrap();
    let o = dbfsck(&["undo", log.to_str().unwrap()]);
    assert_eq!(rc(&o), 8);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was restored"));
    assert_eq!(std::fs::read(&data).unwrap(), repaired);
}

#[test]
fn repair_options_without_repair_are_usage_errors() {
    for flag in [
        &["--dry-run"][..],
        &["--force"],
        &["--undo-log", "x"],
        &["--quarantine", "x"],
    ] {
        let mut args = vec!["scan"];
        args.extend_from_slice(flag);
        args.push(".");
        assert_eq!(rc(&dbfsck(&args)), 16, "{flag:?}");
    }
}
