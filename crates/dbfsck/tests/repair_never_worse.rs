//! Repair and undo can never make things worse: each test is one case an adversarial review
//! broke (a careful operator or a hostile local user, from outside, with the binary), named
//! after what it proves. The rules behind them are in docs/format.md §10–§11 ("Trust model").

mod common;

use common::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dbfsck_core::native::{
    verify_page, ChecksumAlgo, CreateOptions, FileParams, PageFile, PageType, PageVerdict,
};
use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite};
use serde_json::Value;

const PS: usize = 4096;

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

/// A store with 7 whole pages and a torn 1000-byte piece of page 7 that no journal holds: the
/// repair quarantines the piece and cuts it off. Returns (data file, undo log).
fn cut_tail(dir: &Path) -> (PathBuf, PathBuf) {
    let data = store(dir, os("t.dbfp"), 8, &[]);
    let mut b = std::fs::read(&data).unwrap();
    b.truncate(7 * PS + 1000);
    std::fs::write(&data, b).unwrap();
    let (code, v) = scan_json(&[os("scan"), os("--repair"), dir.as_os_str()]);
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["repairs"][0]["action"], "truncate_tail", "{v}");
    assert_eq!(std::fs::metadata(&data).unwrap().len(), 7 * PS as u64);
    (data, PathBuf::from(v["undo_log"].as_str().unwrap()))
}

/// Case 4. Undo never writes over what the datastore wrote after the repair: the repair cut a
/// torn tail, then the datastore wrote pages 7 and 8 (the scan is clean). `undo` must write
/// nothing (exit 8) and say which range changed; `undo --force` is the operator's explicit
/// choice to write the old bytes anyway.
#[test]
fn undo_refuses_ranges_the_datastore_wrote_after_the_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (data, log) = cut_tail(dir.path());
    let mut pf = PageFile::open(&data).unwrap();
    pf.write_page(7, PageType::App(0x100), 9, b"new row")
        .unwrap();
    pf.write_page(8, PageType::App(0x100), 9, b"newer row")
        .unwrap();
    pf.sync().unwrap();
    drop(pf);
    assert_eq!(scan_json(&[os("scan"), dir.path().as_os_str()]).0, 0);
    let newer = std::fs::read(&data).unwrap();
    let o = dbfsck(&[os("undo"), log.as_os_str()]);
    assert_eq!(rc(&o), 8);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("changed since the repair"), "{err}");
    assert!(err.contains("t.dbfp"), "{err}");
    assert_eq!(std::fs::read(&data).unwrap(), newer, "undo wrote");
    let o = dbfsck(&[os("undo"), os("--force"), log.as_os_str()]);
    assert_eq!(rc(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::metadata(&data).unwrap().len(),
        7 * PS as u64 + 1000
    );
}

/// Case 4, the other half. With the data folder replaced by a symbolic link (to a copy, or to
/// the very folder moved away), undo writes nothing through it: every path component is
/// opened without following a link.
#[test]
fn undo_never_follows_a_symlinked_data_folder() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("db");
    let (data, log) = cut_tail(&dir);
    let moved = top.path().join("db.real");
    std::fs::rename(&dir, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &dir).unwrap();
    let before = std::fs::read(moved.join("t.dbfp")).unwrap();
    let o = dbfsck(&[os("undo"), log.as_os_str()]);
    // The log itself now lies behind the link too: name it by its real path.
    assert_eq!(rc(&o), 8);
    let real_log = moved.join(log.strip_prefix(&dir).unwrap());
    let o = dbfsck(&[os("undo"), real_log.as_os_str()]);
    assert_eq!(rc(&o), 8);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(moved.join("t.dbfp")).unwrap(), before);
    // A copy of the folder in its place holds other files (other inodes): not written, even
    // with --force.
    std::fs::remove_file(&dir).unwrap();
    cp_a(&moved, &dir);
    let o = dbfsck(&[os("undo"), os("--force"), log.as_os_str()]);
    assert_eq!(rc(&o), 8);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("another file than the one the repair changed"),
        "{err}"
    );
    assert_eq!(std::fs::read(&data).unwrap(), before);
}

fn nobody() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, "nobody"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

fn chown_r(p: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_r(&e.unwrap().path(), (uid, gid));
        }
    }
}

/// Case 3. Undo is no privilege escalation: the datastore's service user (`nobody`) owns the
/// data directory and pre-creates `.dbfsck` mode 0777; root's repair refuses to keep its undo
/// log there (exit 8, nothing written). A sealed, well-formed log that `nobody` wrote, naming a
/// root-owned file, is refused by root's `undo` (not the invoking user's), and so is a log
/// owned by root that names a file no repair changed (no identity recorded for it).
#[test]
fn undo_trusts_only_the_invoking_users_own_log_for_the_files_its_repair_changed() {
    let root = dbfsck_testkit::is_root()
        .then_some(())
        .ok_or_else(|| "needs root to hand the data directory to nobody".to_owned());
    if !dbfsck_testkit::can_run("the undo privilege test", root) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = top.path().join("db");
    let data = store(&dir, os("t.dbfp"), 12, &[2, 4, 6]);
    zero_pages(&data, &[4]);
    let dot = dir.join(".dbfsck");
    std::fs::create_dir(&dot).unwrap();
    std::fs::set_permissions(&dot, std::fs::Permissions::from_mode(0o777)).unwrap();
    chown_r(&dir, nobody());
    let damaged = std::fs::read(&data).unwrap();
    let (code, v) = scan_json(&[os("scan"), os("--repair"), dir.as_os_str()]);
    assert_eq!(code & 8, 8, "{v}");
    assert!(v["errors"].to_string().contains("owned by uid"), "{v}");
    assert_eq!(std::fs::read(&data).unwrap(), damaged, "a repair wrote");

    // A forged log, as nobody could write it, naming a root-owned file.
    let victim = top.path().join("victim");
    std::fs::write(&victim, b"root's file").unwrap();
    let forged = dot.join("undo-forged.log");
    {
        use dbfsck_repair::undo::{UndoEntry, UndoWriter};
        let mut w = UndoWriter::create(&FsStorage, &forged).unwrap();
        w.append(&UndoEntry::Bytes {
            path: victim.canonicalize().unwrap(),
            offset: 0,
            data: b"owned!".to_vec(),
            written: None,
        })
        .unwrap();
        w.seal().unwrap();
    }
    std::os::unix::fs::chown(&forged, Some(nobody().0), Some(nobody().1)).unwrap();
    let o = dbfsck(&[os("undo"), forged.as_os_str()]);
    assert_eq!(rc(&o), 8);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("owned by uid"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's file");
    // The same log owned by root: it names no identity for the file, as no repair's log does;
    // `--force` does not lift that.
    std::os::unix::fs::chown(&forged, Some(0), Some(0)).unwrap();
    for args in [&[os("undo")][..], &[os("undo"), os("--force")]] {
        let mut a = args.to_vec();
        a.push(forged.as_os_str());
        let o = dbfsck(&a);
        assert_eq!(rc(&o), 8);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("does not record which file"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"root's file");
    }
}

/// Case 6. A quarantine directory that is, or contains, a scanned root is refused before
/// anything happens (exit 16): its marker would hide the data from every later scan. And a
/// marker planted among data files hides nothing: the folder is still scanned.
#[test]
fn a_quarantine_inside_the_data_is_refused_and_a_stray_marker_hides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q/db");
    let data = store(&db, os("t.dbfp"), 12, &[]);
    zero_pages(&data, &[5]);
    let damaged = std::fs::read(&data).unwrap();
    for q in [db.clone(), dir.path().join("q")] {
        let o = dbfsck(&[
            os("scan"),
            os("--repair"),
            os("--quarantine"),
            q.as_os_str(),
            db.as_os_str(),
        ]);
        assert_eq!(rc(&o), 16, "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("would hide that data"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(std::fs::read(&data).unwrap(), damaged);
    assert!(!db.join(dbfsck_core::QUARANTINE_MARKER).exists());
    // A marker dropped into the data folder by hand: the damage is still found.
    std::fs::write(db.join(dbfsck_core::QUARANTINE_MARKER), b"x").unwrap();
    let (code, v) = scan_json(&[os("scan"), dir.path().as_os_str()]);
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["findings"][0]["unit"], 5, "{v}");
}

/// Case 9. SIGINT during a repair stops it at the next safe point — between ranges, after the
/// undo log is sealed — reports what was done (every action `applied` or `cancelled`, none
/// half-done), exits with bit 32, and the undo log puts back exactly the bytes before it.
#[test]
fn sigint_during_a_repair_stops_between_ranges_and_the_undo_log_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..4 {
        let name = format!("t{i}.dbfp");
        let data = store(dir.path(), os(&name), 3000, &[]);
        let zeroed: Vec<usize> = (1..3000).step_by(3).collect();
        zero_pages(&data, &zeroed);
        files.push(data);
    }
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let log = dir.path().join("undo.log");
    let child = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args([
            os("scan"),
            os("--repair"),
            os("--undo-log"),
            log.as_os_str(),
        ])
        .arg(dir.path())
        .args(["--output", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the undo log exists, the repair is under way.
    let started = std::time::Instant::now();
    while !log.exists() && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    let v = json(&o);
    let code = rc(&o);
    assert_eq!(code & 32, 32, "exit {code}: {}", v["summary"]);
    let repairs = v["repairs"].as_array().unwrap();
    let count = |r: &str| repairs.iter().filter(|x| x["result"] == r).count();
    assert!(
        count("cancelled") > 0,
        "the repair finished before the signal"
    );
    assert_eq!(count("applied") + count("cancelled"), repairs.len(), "{v}");
    let u = dbfsck(&[os("undo"), log.as_os_str()]);
    assert_eq!(rc(&u), 0, "{}", String::from_utf8_lossy(&u.stderr));
    for (f, b) in files.iter().zip(&before) {
        assert!(
            std::fs::read(f).unwrap() == *b,
            "{} differs after undo",
            f.display()
        );
    }
}

/// Case 10. A root whose name is not UTF-8: the printed undo command works as printed (the
/// bytes shell-quoted), and the JSON keeps every path lossless (`*_bytes`: raw bytes, base64).
#[test]
fn the_undo_command_for_a_non_utf8_root_works_as_printed() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(OsStr::from_bytes(b"db\xff 'x'"));
    let data = store(&db, os("t.dbfp"), 12, &[2, 4, 6]);
    zero_pages(&data, &[4]);
    let damaged = std::fs::read(&data).unwrap();
    let o = dbfsck(&[os("scan"), os("--repair"), db.as_os_str()]);
    assert_eq!(rc(&o), 1);
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("undo: `"))
        .expect(&text);
    let cmd = line.split('`').nth(1).unwrap();
    let cmd = cmd.replacen("dbfsck", env!("CARGO_BIN_EXE_dbfsck"), 1);
    let st = Command::new("bash").args(["-c", &cmd]).output().unwrap();
    assert!(
        st.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(
        std::fs::read(&data).unwrap(),
        damaged,
        "the printed undo did not undo"
    );

    let (code, v) = scan_json(&[os("scan"), os("--repair"), db.as_os_str()]);
    assert_eq!(code, 1, "{v}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let log = b64.decode(v["undo_log_bytes"].as_str().unwrap()).unwrap();
    assert!(Path::new(OsStr::from_bytes(&log)).is_file(), "{v}");
    let file = b64
        .decode(v["findings"][0]["path_bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        std::fs::canonicalize(OsStr::from_bytes(&file)).unwrap(),
        std::fs::canonicalize(&data).unwrap()
    );
    assert!(v["repairs"][0]["path_bytes"].is_string(), "{v}");
}

/// Case 12. Messages say what happened: a real repair with nothing to do does not call itself
/// a dry run; a root that is a symbolic link is refused with a sentence, not a raw ELOOP; a
/// one-byte file is "1 byte".
#[test]
fn repair_messages_say_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[2, 4, 6]);
    let o = dbfsck(&[os("scan"), os("--repair"), dir.path().as_os_str()]);
    assert_eq!(rc(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("dry run"), "{text}");
    assert!(text.contains("nothing to do"), "{text}");

    zero_pages(&data, &[4]);
    let link = dir.path().join("link.dbfp");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let (code, v) = scan_json(&[os("scan"), os("--repair"), link.as_os_str()]);
    assert_eq!(code & 8, 8, "{v}");
    let errors = v["errors"].to_string();
    assert!(errors.contains("symbolic link"), "{errors}");
    assert!(!errors.contains("os error 40"), "{errors}");

    let tiny = dir.path().join("tiny.dbfp");
    std::fs::write(&tiny, b"D").unwrap();
    let (_, v) = scan_json(&[os("scan"), os("--format"), os("native"), tiny.as_os_str()]);
    let detail = v["findings"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("1 byte,"), "{detail}");
}

/// A second native file (file id 7, 8 pages), whose pages 0–1 are copied over the first two
/// pages of `victim`, as a `dd` to the wrong file would.
fn foreign_header_over(victim: &Path, dir: &Path) {
    let other = dir.join("other.dbfp");
    let opts = CreateOptions {
        page_size: PS,
        checksum: ChecksumAlgo::Crc32,
        file_id: Some(7),
    };
    let mut pf = PageFile::create(&other, opts).unwrap();
    for p in 1..8 {
        pf.write_page(p, PageType::App(0x100), 1, b"other").unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    let foreign = std::fs::read(&other).unwrap();
    std::fs::remove_file(&other).unwrap();
    let mut b = std::fs::read(victim).unwrap();
    b[..2 * PS].copy_from_slice(&foreign[..2 * PS]);
    std::fs::write(victim, b).unwrap();
}

/// Case 2. A file's identity is what most of its verifying pages say: with pages 0–1 of
/// another file copied over a 64-page file, the damage is pages 0 and 1 (not the 62 healthy
/// pages the foreign header disowns), and the repair replaces no page that verifies on its own.
/// With page 0 destroyed and page 1 foreign, the 62 pages outvote the one.
#[test]
fn a_foreign_header_is_the_damage_not_the_pages_it_disowns() {
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 64, &[]);
    foreign_header_over(&data, dir.path());
    let copied = std::fs::read(&data).unwrap();
    let (code, v) = scan_json(&[os("scan"), data.as_os_str()]);
    assert_eq!(code, 4, "{v}");
    let units: Vec<(u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["unit"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        units,
        [
            (0, "misdirected_write".to_owned()),
            (1, "misdirected_write".to_owned())
        ],
        "{v}"
    );
    assert!(v["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("header page of another file"));
    let (code, v) = scan_json(&[os("scan"), os("--repair"), data.as_os_str()]);
    assert_eq!(code, 4, "{v}");
    assert!(v["repairs"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(std::fs::read(&data).unwrap(), copied, "a page was replaced");

    // Page 0 destroyed, page 1 foreign: the probe follows the 62, not the first voter.
    let mut b = copied.clone();
    b[..PS].fill(0xa5);
    std::fs::write(&data, &b).unwrap();
    let (_, v) = scan_json(&[os("scan"), data.as_os_str()]);
    let units: Vec<(u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["unit"].as_u64().unwrap(),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        units,
        [
            (0, "bad_header".to_owned()),
            (1, "misdirected_write".to_owned())
        ],
        "{v}"
    );
    assert_eq!(
        v["findings"][1]["owner"]["file_id"], "0x0000000000000003",
        "{v}"
    );
}

/// Case 2, the guard. A plan that would replace most of a file with quarantine markers is
/// refused (exit 8, nothing written) unless `--force`, which applies it.
#[test]
fn a_plan_that_replaces_most_of_a_file_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 16, &[]);
    zero_pages(&data, &(3..16).collect::<Vec<_>>());
    let damaged = std::fs::read(&data).unwrap();
    let (code, v) = scan_json(&[os("scan"), os("--repair"), dir.path().as_os_str()]);
    assert_eq!(code, 12, "{v}");
    assert!(
        v["errors"].to_string().contains("replaces most of a file"),
        "{v}"
    );
    assert_eq!(
        std::fs::read(&data).unwrap(),
        damaged,
        "a refused plan wrote"
    );
    assert!(v.get("undo_log").is_none(), "{v}");
    let (code, v) = scan_json(&[
        os("scan"),
        os("--repair"),
        os("--force"),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code, 4, "{v}");
    // The zeroed hole is one action over its 13 pages.
    assert_eq!(v["repairs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["repairs"][0]["units"], 13, "{v}");
    assert!(v["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["result"] == "applied"));
}

/// A data directory for the InnoDB cases: `ibdata1` (full_crc32, no doublewrite slot filled)
/// and nothing else; returns its path.
fn innodb_datadir(top: &Path) -> PathBuf {
    use dbfsck_core::innodb::{stamp_page, SpaceFormat};
    const IPS: usize = 16384;
    let data = top.join("data");
    std::fs::create_dir_all(data.join("shop")).unwrap();
    let fmt = SpaceFormat::from_flags(0x15).unwrap();
    let mut sys = vec![0u8; 192 * IPS];
    {
        let p0 = &mut sys[..IPS];
        p0[24..26].copy_from_slice(&8u16.to_be_bytes());
        p0[54..58].copy_from_slice(&0x15u32.to_be_bytes());
        p0[16..24].copy_from_slice(&1000u64.to_be_bytes());
        stamp_page(p0, &fmt);
    }
    {
        let p5 = &mut sys[5 * IPS..6 * IPS];
        p5[4..8].copy_from_slice(&5u32.to_be_bytes());
        p5[24..26].copy_from_slice(&7u16.to_be_bytes());
        p5[16..24].copy_from_slice(&1000u64.to_be_bytes());
        let h = IPS - 200;
        for (i, v) in [536_853_855u32, 64, 128, 536_853_855, 64, 128]
            .iter()
            .enumerate()
        {
            p5[h + 10 + 4 * i..h + 14 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        stamp_page(p5, &fmt);
    }
    std::fs::write(data.join("ibdata1"), &sys).unwrap();
    data
}

/// Case 11. An InnoDB `.isl` link is read as the server reads it: a relative path is relative
/// to the data directory (not to dbfsck's working directory), and it must name `<table>.ibd`
/// holding a tablespace — a link to `/etc/passwd`, or to a file that is no tablespace, is an
/// error and is not scanned. A tablespace reached through a link outside the scanned paths is
/// reported but never written by a repair.
#[test]
fn innodb_link_files_are_resolved_in_the_datadir_and_never_lead_a_repair_outside() {
    let top = tempfile::tempdir().unwrap();
    let data = innodb_datadir(top.path());
    let ext = top.path().join("ext/shop");
    std::fs::create_dir_all(&ext).unwrap();
    let table = ext.join("t.ibd");
    let mut t = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/innodb/fixtures/full_crc32.ibd"
    ))
    .unwrap();
    t[3 * 16384 + 5000] ^= 0x20;
    std::fs::write(&table, &t).unwrap();
    std::fs::write(data.join("shop/t.isl"), "../ext/shop/t.ibd\n").unwrap();
    std::fs::write(data.join("shop/passwd.isl"), "/etc/passwd\n").unwrap();
    std::fs::write(top.path().join("junk.ibd"), vec![0x5a; 65536]).unwrap();
    std::fs::write(data.join("shop/junk.isl"), "../junk.ibd").unwrap();

    let (code, v) = scan_json(&[os("scan"), data.as_os_str()]);
    assert_eq!(code, 12, "{v}");
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v}");
    assert!(
        findings[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("ext/shop/t.ibd"),
        "{v}"
    );
    assert_eq!(findings[0]["unit"], 3, "{v}");
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("passwd.isl") && errors.contains("<table>.ibd"),
        "{errors}"
    );
    assert!(
        errors.contains("junk.isl") && errors.contains("not an InnoDB tablespace"),
        "{errors}"
    );
    assert!(!v.to_string().contains("\"path\":\"/etc/passwd\""), "{v}");

    let (_, v) = scan_json(&[os("scan"), os("--repair"), data.as_os_str()]);
    assert!(v["repairs"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(
        std::fs::read(&table).unwrap(),
        t,
        "a file outside the roots changed"
    );
    assert!(!top.path().join("ext/shop/.dbfsck").exists());
    let o = dbfsck(&[os("scan"), os("--repair"), data.as_os_str()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("outside the scanned paths"), "{text}");
}

// Cases found by a second adversarial review (the release binary, from outside).

/// Scans `dir`, returns the report (with the real files behind it), as `scan --repair` does
/// before it plans: the library path lets a test change the files between scan and repair.
fn scan_lib(dir: &Path) -> dbfsck_core::Report {
    dbfsck_core::Scanner::new().scan(&[dir]).unwrap()
}

fn repair_lib(report: &mut dbfsck_core::Report, dir: &Path) -> dbfsck_repair::plan::Plan {
    let options = dbfsck_repair::RepairOptions {
        dry_run: false,
        ..dbfsck_repair::RepairOptions::in_dir(dir)
    };
    dbfsck_repair::repair(report, &FsStorage, &options)
}

/// Review 1. A journal someone else could have written is no source: one writable by other
/// users (mode 0666) leaves the page quarantined, with the reason.
#[test]
fn a_journal_others_can_write_is_not_a_source() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[2, 4, 6]);
    zero_pages(&data, &[4]);
    std::fs::set_permissions(
        dir.path().join("wal.dbfj"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let mut report = scan_lib(dir.path());
    let plan = repair_lib(&mut report, dir.path());
    assert_eq!(report.repairs.len(), 1, "{:?}", report.repairs);
    assert_eq!(
        report.repairs[0].action,
        dbfsck_core::RepairAction::Quarantine
    );
    assert!(report.repairs[0]
        .detail
        .contains("writable by users other than its owner"));
    assert!(plan.left.is_empty());
}

/// Review 2 and 5. A torn tail found by the scan is cut only if the file is still what the
/// scan saw: one that grew (the datastore appended pages) or shrank since is not touched.
#[test]
fn a_torn_tail_is_not_cut_from_a_file_that_changed_since_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 13, &[]);
    let mut b = std::fs::read(&data).unwrap();
    b.truncate(12 * PS + 1000);
    std::fs::write(&data, &b).unwrap();
    for change in [20 * PS, 8 * PS] {
        let mut report = scan_lib(dir.path());
        assert_eq!(
            report.findings[0].kind,
            dbfsck_core::FindingKind::PartialPage
        );
        let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
        f.set_len(change as u64).unwrap();
        drop(f);
        let changed = std::fs::read(&data).unwrap();
        let plan = repair_lib(&mut report, dir.path());
        assert!(report.repairs.is_empty(), "{:?}", report.repairs);
        assert!(
            plan.left[0].reason.contains("changed since the scan"),
            "{:?}",
            plan.left
        );
        assert_eq!(
            std::fs::read(&data).unwrap(),
            changed,
            "the file was written"
        );
        std::fs::write(&data, &b).unwrap();
    }
}

/// Review 3. Within a store only the current copy of a journal counts: an older generation of
/// the same journal (a `.bak` copy beside it) is stale, and two current copies cannot be told
/// apart, so neither is used.
#[test]
fn a_stale_or_twin_copy_of_the_journal_is_not_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[2, 4]);
    let wal = dir.path().join("wal.dbfj");
    std::fs::copy(&wal, dir.path().join("wal.dbfj.bak")).unwrap();
    {
        // The live journal is recycled (generation 1) after page 2 is rewritten at LSN 50000.
        let options = JournalOptions {
            capacity: Some(1),
            journal_id: None,
        };
        let mut s = JournaledStore::open(FsStorage, &wal, options).unwrap();
        let h = s.open_file(&data).unwrap();
        commit(&mut s, h, &[2], 50_000, b"newest");
        commit(&mut s, h, &[9], 50_001, b"later");
    }
    zero_pages(&data, &[2]);
    let mut report = scan_lib(dir.path());
    repair_lib(&mut report, dir.path());
    assert_eq!(
        report.repairs[0].action,
        dbfsck_core::RepairAction::Quarantine,
        "{:?}",
        report.repairs
    );
    assert!(
        report.repairs[0].detail.contains("older copy"),
        "{}",
        report.repairs[0].detail
    );

    // Two copies of the current journal: which is current cannot be told.
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[2, 4]);
    std::fs::copy(dir.path().join("wal.dbfj"), dir.path().join("copy.dbfj")).unwrap();
    zero_pages(&data, &[4]);
    let mut report = scan_lib(dir.path());
    repair_lib(&mut report, dir.path());
    assert_eq!(
        report.repairs[0].action,
        dbfsck_core::RepairAction::Quarantine
    );
    assert!(
        report.repairs[0].detail.contains("copies of one journal"),
        "{}",
        report.repairs[0].detail
    );
}

/// Review 4. A path the undo log cannot hold (over 4096 bytes: reachable only step by step,
/// relative to a deep working directory) stops the repair before it writes anything, instead
/// of applying it with an undo log that cannot be read back.
#[test]
fn a_path_too_long_for_the_undo_log_stops_the_repair_before_any_write() {
    let top = tempfile::tempdir().unwrap();
    let data = store(&top.path().join("db"), os("t.dbfp"), 12, &[2, 4, 6]);
    zero_pages(&data, &[4]);
    let damaged = std::fs::read(&data).unwrap();
    // Move the store 22 levels of 200-byte names down, then repair it from there.
    let name = "d".repeat(200);
    let script = format!(
        "set -e; cd {top}; for i in $(seq 22); do mkdir {name}; cd {name}; done; \
         mv {top}/db .; cd db; {bin} scan --repair --output json . > {top}/out.json || true; \
         cmp t.dbfp {top}/damaged",
        top = top.path().display(),
        bin = env!("CARGO_BIN_EXE_dbfsck"),
    );
    std::fs::write(top.path().join("damaged"), &damaged).unwrap();
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        o.status.success(),
        "the file changed (or the set-up failed): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value =
        serde_json::from_slice(&std::fs::read(top.path().join("out.json")).unwrap()).unwrap();
    assert_eq!(v["exit_code"].as_i64().unwrap() & 8, 8, "{v}");
    assert!(v["errors"].to_string().contains("undo log"), "{v}");
}

/// Review 6. A quarantine copy a crash left short (or empty) under its content name is
/// replaced, not trusted because the name exists.
#[test]
fn a_short_quarantine_copy_left_by_a_crash_is_rewritten() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[]);
    let mut b = std::fs::read(&data).unwrap();
    b[5 * PS + 300] ^= 0x40;
    std::fs::write(&data, &b).unwrap();
    let bytes = b[5 * PS..6 * PS].to_vec();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    let q = dir.path().join(".dbfsck/quarantine");
    std::fs::create_dir_all(&q).unwrap();
    std::fs::write(q.join(format!("{sha}.bin")), b"").unwrap();
    let (code, v) = scan_json(&[os("scan"), os("--repair"), dir.path().as_os_str()]);
    assert_eq!(code, 4, "{v}");
    assert_eq!(std::fs::read(q.join(format!("{sha}.bin"))).unwrap(), bytes);
}

/// Review 7. A file with several hard links (a `cp -al` snapshot shares the live inode) is
/// never written: repairing it through one name would change the other.
#[test]
fn a_hard_linked_file_is_never_written() {
    let top = tempfile::tempdir().unwrap();
    let live = top.path().join("live");
    let data = store(&live, os("t.dbfp"), 12, &[2, 4, 6]);
    let snap = top.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    std::fs::hard_link(&data, snap.join("t.dbfp")).unwrap();
    std::fs::copy(live.join("wal.dbfj"), snap.join("wal.dbfj")).unwrap();
    zero_pages(&data, &[4]);
    let before = std::fs::read(&data).unwrap();
    let o = dbfsck(&[os("scan"), os("--repair"), snap.as_os_str()]);
    assert_eq!(rc(&o), 4);
    assert!(String::from_utf8_lossy(&o.stdout).contains("hard links"));
    assert_eq!(std::fs::read(&data).unwrap(), before);
}

/// Review 8 and 9. The reason a page is quarantined is true: a journal reached only through a
/// symbolic link is said to be unfollowed (not "no journal"), and two page files of a store
/// sharing a file id get no image (an image cannot tell which file it belongs to).
#[test]
fn the_reason_names_a_symlinked_journal_and_a_shared_file_id() {
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("db");
    let data = store(&dir, os("t.dbfp"), 12, &[2, 4, 6]);
    let elsewhere = top.path().join("wal.dbfj");
    std::fs::rename(dir.join("wal.dbfj"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("wal.dbfj")).unwrap();
    zero_pages(&data, &[4]);
    let mut report = scan_lib(&dir);
    repair_lib(&mut report, &dir);
    assert!(
        report.repairs[0].detail.contains("symbolic link"),
        "{}",
        report.repairs[0].detail
    );

    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[2, 4, 6]);
    std::fs::copy(&data, dir.path().join("t.dbfp.yesterday")).unwrap();
    zero_pages(&data, &[4]);
    let mut report = scan_lib(dir.path());
    repair_lib(&mut report, dir.path());
    let r = report.repairs.iter().find(|r| r.unit == Some(4)).unwrap();
    assert_eq!(r.action, dbfsck_core::RepairAction::Quarantine, "{r:?}");
    assert!(r.detail.contains("carry file id"), "{}", r.detail);
}

/// Review 10. A repair that cannot write its undo log (the named file exists) leaves the
/// quarantine as it was: no manifest line for a quarantine that never happened.
#[test]
fn a_repair_that_fails_before_writing_leaves_no_quarantine_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = store(dir.path(), os("t.dbfp"), 12, &[]);
    zero_pages(&data, &[5]);
    let log = dir.path().join("exists.log");
    std::fs::write(&log, b"x").unwrap();
    let q = dir.path().join("q");
    let (code, v) = scan_json(&[
        os("scan"),
        os("--repair"),
        os("--undo-log"),
        log.as_os_str(),
        os("--quarantine"),
        q.as_os_str(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(code & 8, 8, "{v}");
    assert!(
        !q.join("manifest.jsonl").exists(),
        "a manifest line for nothing"
    );
}

/// Review 12. The printed undo command works for a root whose name starts with `-`.
#[test]
fn the_undo_command_works_for_a_root_starting_with_a_dash() {
    let top = tempfile::tempdir().unwrap();
    let data = store(&top.path().join("-x"), os("t.dbfp"), 12, &[2, 4, 6]);
    zero_pages(&data, &[4]);
    let damaged = std::fs::read(&data).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args(["scan", "--repair", "--", "-x"])
        .current_dir(top.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(rc(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("undo: `"))
        .expect(&text);
    let cmd = line.split('`').nth(1).unwrap();
    let cmd = cmd.replacen("dbfsck", env!("CARGO_BIN_EXE_dbfsck"), 1);
    let st = Command::new("bash")
        .args(["-c", &cmd])
        .current_dir(top.path())
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(std::fs::read(&data).unwrap(), damaged);
}
