//! Repair and undo can never make things worse: each test is one case an adversarial review
//! broke (a careful operator or a hostile local user, from outside, with the binary), named
//! after what it proves. The rules behind them are in docs/format.md §10–§11 ("Trust model").

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dbfsck_core::native::{
    verify_page, ChecksumAlgo, CreateOptions, FileParams, PageFile, PageType, PageVerdict,
};
use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite};
use serde_json::Value;

const PS: usize = 4096;

fn dbfsck(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn rc(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// `dbfsck ARGS… --output json`: (exit code, report).
fn scan_json(args: &[&OsStr]) -> (i32, Value) {
    let mut a = args.to_vec();
    a.extend([os("--output"), os("json")]);
    let o = dbfsck(&a);
    (rc(&o), json(&o))
}

/// A page file `name` of `pages` pages (file id 3) in `dir`, every page written at LSN 1, then
/// pages `journaled` rewritten at LSN 2 through the journal `dir/wal.dbfj`.
fn store(dir: &Path, name: &OsStr, pages: u64, journaled: &[u64]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let data = dir.join(name);
    let opts = CreateOptions {
        page_size: PS,
        checksum: ChecksumAlgo::Crc32,
        file_id: Some(3),
    };
    let mut pf = PageFile::create(&data, opts).unwrap();
    for p in 1..pages {
        pf.write_page(p, PageType::App(0x100), 1, b"first").unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    if !journaled.is_empty() {
        let j = dir.join("wal.dbfj");
        let mut s = JournaledStore::create(FsStorage, &j, JournalOptions::default()).unwrap();
        let h = s.open_file(&data).unwrap();
        commit(&mut s, h, journaled, 2, b"second");
    }
    data
}

fn commit(
    s: &mut JournaledStore<FsStorage>,
    h: dbfsck_repair::FileHandle,
    pages: &[u64],
    lsn: u64,
    body: &[u8],
) {
    let writes: Vec<PageWrite<'_>> = pages
        .iter()
        .map(|&page_no| PageWrite {
            file: h,
            page_no,
            page_type: PageType::App(0x100),
            flags: 0,
            lsn,
            body,
        })
        .collect();
    s.commit(&writes).unwrap();
}

fn zero_pages(path: &Path, pages: &[usize]) {
    let mut b = std::fs::read(path).unwrap();
    for p in pages {
        b[p * PS..(p + 1) * PS].fill(0);
    }
    std::fs::write(path, b).unwrap();
}

fn page(path: &Path, n: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[n * PS..(n + 1) * PS].to_vec()
}

fn params() -> FileParams {
    FileParams {
        page_size: PS,
        algo: ChecksumAlgo::Crc32,
        file_id: 3,
    }
}

fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Case 1. A backup copy of a store, scanned with the live store, is never a source: its
/// journal has the same journal id and file ids, but older images. Live page 10 was rewritten
/// at LSN 50000 and its journal recycled since; page 10 is then zeroed. The repair of
/// `live bak` together must quarantine page 10, exactly as the repair of `live` alone does,
/// and never write the backup's LSN-2 image.
#[test]
fn a_backup_journal_is_never_a_source_for_the_live_store() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let bak = dir.path().join("bak");
    let data = store(&live, os("t.dbfp"), 16, &[2, 4, 10]);
    cp_a(&live, &bak);
    {
        let options = JournalOptions {
            capacity: Some(1),
            journal_id: None,
        };
        let mut s = JournaledStore::open(FsStorage, &live.join("wal.dbfj"), options).unwrap();
        let h = s.open_file(&data).unwrap();
        commit(&mut s, h, &[10], 50_000, b"newest");
        // Recycles the journal: page 10's LSN-50000 image is gone from it.
        commit(&mut s, h, &[3], 50_001, b"later");
    }
    zero_pages(&data, &[10]);
    let (code, v) = scan_json(&[
        os("scan"),
        os("--repair"),
        live.as_os_str(),
        bak.as_os_str(),
    ]);
    assert_eq!(code, 4, "{v}");
    let repairs = v["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), 1, "{v}");
    assert_eq!(repairs[0]["action"], "quarantine", "{v}");
    assert_eq!(repairs[0]["result"], "applied", "{v}");
    match verify_page(&page(&data, 10), &params(), 10) {
        PageVerdict::Quarantined { .. } => {}
        other => panic!("page 10 is {other:?}, not a quarantine marker"),
    }
    // The backup is untouched and still clean.
    assert_eq!(scan_json(&[os("scan"), bak.as_os_str()]).0, 0);
}

/// Case 8. Naming a single file finds its own store's journal: `scan --repair dir/file`
/// restores what `scan --repair dir` restores.
#[test]
fn a_file_named_alone_is_repaired_from_its_own_journal() {
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[2, 4, 6]);
    zero_pages(&data, &[4]);
    let (code, v) = scan_json(&[os("scan"), os("--repair"), data.as_os_str()]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["repairs"][0]["action"], "restore_from_journal", "{v}");
    assert_eq!(scan_json(&[os("scan"), data.as_os_str()]).0, 0);
}

/// Case 7. The same file reached twice (a directory and a file in it, or a root named twice)
/// is scanned, counted, locked and repaired once: no doubled finding, no refusal on its own
/// earlier lock.
#[test]
fn the_same_file_named_twice_is_scanned_and_repaired_once() {
    let dir = tempfile::tempdir().unwrap();
    let dup = dir.path().join("dup");
    let data = store(&dup, os("bad.dbfp"), 12, &[2, 4, 6]);
    zero_pages(&data, &[4]);
    let (code, v) = scan_json(&[os("scan"), dup.as_os_str(), data.as_os_str()]);
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["findings"].as_array().unwrap().len(), 1, "{v}");
    // The page file and its journal, once each.
    assert_eq!(v["summary"]["files"], 2, "{v}");
    let dot = dir.path().join("./dup");
    let (code, v) = scan_json(&[
        os("scan"),
        os("--repair"),
        dot.as_os_str(),
        data.as_os_str(),
        dup.as_os_str(),
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["repairs"].as_array().unwrap().len(), 1, "{v}");
}

/// Case 5. Files are identified by their real path (bytes), never by the display string:
/// `a\xfe.dbfp` (healthy) and `a\xff.dbfp` (page 4 zeroed) show alike as `a\u{fffd}.dbfp`; the
/// repair must change only the damaged one.
#[test]
fn two_names_that_display_alike_are_repaired_as_the_files_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    let healthy = store(&c, OsStr::from_bytes(b"a\xfe.dbfp"), 2, &[]);
    let damaged = store(&c, OsStr::from_bytes(b"a\xff.dbfp"), 6, &[]);
    zero_pages(&damaged, &[4]);
    let before = std::fs::read(&healthy).unwrap();
    let (code, v) = scan_json(&[os("scan"), os("--repair"), c.as_os_str()]);
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["repairs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["repairs"][0]["action"], "quarantine", "{v}");
    assert_eq!(
        std::fs::read(&healthy).unwrap(),
        before,
        "the healthy file changed"
    );
    match verify_page(&page(&damaged, 4), &params(), 4) {
        PageVerdict::Quarantined { .. } => {}
        other => panic!("page 4 of the damaged file is {other:?}"),
    }
}
