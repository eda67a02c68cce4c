//! A nightly run never says "clean" over damage, and never gets in the datastore's way: each
//! test is one case an adversarial review broke in the scan side (cron jobs, monitoring,
//! resumable windows, live datastores), named after what it proves. The rules behind them are
//! in docs/output.md and docs/nightly.md.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dbfsck_core::native::{ChecksumAlgo, CreateOptions, PageFile, PageType};
use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite};
use serde_json::Value;

const PS: usize = 4096;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbfsck"));
    c.env("NO_COLOR", "1");
    c
}

fn dbfsck(args: &[&OsStr]) -> Output {
    bin().args(args).output().unwrap()
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

/// A native page file of `pages` pages (file id 5) at `path`, every page at LSN 1.
fn page_file(path: &Path, pages: u64) {
    let opts = CreateOptions {
        page_size: PS,
        checksum: ChecksumAlgo::Xxh3,
        file_id: Some(5),
    };
    let mut pf = PageFile::create(path, opts).unwrap();
    for p in 1..pages {
        pf.write_page(p, PageType::App(0x100), 1, b"row").unwrap();
    }
    pf.sync().unwrap();
}

fn zero_pages(path: &Path, pages: &[u64]) {
    let mut b = std::fs::read(path).unwrap();
    for &p in pages {
        b[p as usize * PS..(p as usize + 1) * PS].fill(0);
    }
    std::fs::write(path, b).unwrap();
}

/// Case 8. An online scan never makes the datastore's own lock fail: while a throttled
/// `--online` scan reads a file, the writer's exclusive non-blocking lock (`PageFile::open`)
/// succeeds every time.
#[test]
fn an_online_scan_never_makes_the_datastores_lock_fail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("live.dbfp");
    page_file(&data, 8192);
    let scan = bin()
        .args([
            "scan",
            "--online",
            "--max-rate",
            "16MiB/s",
            "--output",
            "json",
        ])
        .arg(&data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let (mut tries, mut locked) = (0, 0);
    while started.elapsed() < Duration::from_millis(1500) {
        tries += 1;
        match PageFile::open(&data) {
            Ok(pf) => drop(pf),
            Err(_) => locked += 1,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = scan.wait_with_output().unwrap();
    assert_eq!(rc(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(tries > 20, "{tries} tries");
    assert_eq!(locked, 0, "{locked} of {tries} opens found the file locked");
}

/// Case 9. The human report prints names with control characters escaped: a crafted file
/// name cannot hide the real findings (`ESC[8m`) or print a fake "result: clean" line.
#[test]
fn a_crafted_file_name_cannot_forge_the_human_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let name = b"x\x1b[8m\nresult: clean: no damage found (exit 0)\n\x1b[2K.dbfp";
    let data = dir.path().join(OsStr::from_bytes(name));
    page_file(&data, 8);
    zero_pages(&data, &[3]);
    let o = dbfsck(&[os("scan"), dir.path().as_os_str()]);
    assert_eq!(rc(&o), 4);
    assert!(!o.stdout.contains(&0x1b), "a raw ESC reached the terminal");
    let text = String::from_utf8_lossy(&o.stdout);
    let verdicts: Vec<&str> = text.lines().filter(|l| l.starts_with("result:")).collect();
    assert_eq!(verdicts.len(), 1, "{text}");
    assert!(verdicts[0].contains("damage found"), "{text}");
    assert!(text.contains("\\x1b[8m\\nresult: clean"), "{text}");
}

/// Case 10. `--quiet` prints the findings, the errors and, after a repair, the undo command —
/// and nothing else (no warnings, no repair section, no summary), so a quiet repair still
/// names its undo log.
#[test]
fn a_quiet_repair_names_its_undo_log_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.dbfp");
    page_file(&data, 8);
    zero_pages(&data, &[2, 3, 4, 5, 6]);
    // Replacing most of the file needs --force, which warns.
    let o = dbfsck(&[
        os("scan"),
        os("--repair"),
        os("--force"),
        os("--quiet"),
        dir.path().as_os_str(),
    ]);
    assert_eq!(rc(&o), 4);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("units 2-6 (5)"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("undo: `dbfsck undo ")),
        "{text}"
    );
    for absent in ["warning:", "repairs", "summary", "result:"] {
        assert!(!text.contains(absent), "{absent} in a quiet report: {text}");
    }
}

/// A native store in `dir` (file id 5, 4096 pages) whose pages 1..=512 were rewritten through
/// its journal: the journal is about 2 MiB. Returns the journal's path.
fn journaled(dir: &Path) -> PathBuf {
    let data = dir.join("t.dbfp");
    page_file(&data, 4096);
    let j = dir.join("wal.dbfj");
    let mut s = JournaledStore::create(FsStorage, &j, JournalOptions::default()).unwrap();
    let h = s.open_file(&data).unwrap();
    let writes: Vec<PageWrite<'_>> = (1..=512)
        .map(|page_no| PageWrite {
            file: h,
            page_no,
            page_type: PageType::App(0x100),
            flags: 0,
            lsn: 2,
            body: b"again",
        })
        .collect();
    s.commit(&writes).unwrap();
    j
}

/// Case 11. `--max-rate` holds for every byte read, the journal and the head of each file
/// included, and a journal's bytes count in `summary.bytes`: a 2 MiB journal at 1 MiB/s takes
/// about two seconds, and is counted whole.
#[test]
fn every_byte_read_is_throttled_and_counted_journals_included() {
    let dir = tempfile::tempdir().unwrap();
    let j = journaled(dir.path());
    let len = std::fs::metadata(&j).unwrap().len();
    assert!(len > 2_000_000, "{len}");
    let started = Instant::now();
    let o = dbfsck(&[
        os("scan"),
        os("--max-rate"),
        os("1MiB/s"),
        os("--output"),
        os("json"),
        j.as_os_str(),
    ]);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(rc(&o), 0);
    let v = json(&o);
    assert_eq!(v["summary"]["bytes"], len, "{v}");
    let expected = len as f64 / 1048576.0;
    assert!(
        secs >= expected * 0.85,
        "{secs:.2} s for {expected:.2} s of bytes"
    );
}
