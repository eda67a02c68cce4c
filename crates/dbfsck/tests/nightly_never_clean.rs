//! A nightly run never says "clean" over damage, and never gets in the datastore's way: each
//! test is one case an adversarial review broke in the scan side (cron jobs, monitoring,
//! resumable windows, live datastores), named after what it proves. The rules behind them are
//! in docs/output.md and docs/nightly.md.

mod common;

use common::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dbfsck_core::native::{ChecksumAlgo, CreateOptions, PageFile, PageType};
use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite};
use serde_json::Value;

const PS: usize = 4096;

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

fn prom_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

fn lines(o: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Case 1. A scan killed after a checkpoint loses none of its findings: the state records a
/// range as done only together with what was found in it, JSON Lines print findings as their
/// ranges finish, and the resumed piece reports what the killed one never printed — its exit
/// code and metrics say damage, never "clean". SIGTERM is handled like SIGINT.
#[test]
fn a_scan_killed_after_a_checkpoint_loses_none_of_its_findings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("big.dbfp");
    page_file(&data, 8192); // 32 MiB
    zero_pages(&data, &[10, 20]);
    let state = dir.path().join("s.json");
    let prom = dir.path().join("m.prom");
    let args = |extra: &[&str]| {
        let mut c = bin();
        c.args(["scan", "--output", "jsonl", "--state"])
            .arg(&state)
            .args(["--state-every", "100ms", "--prometheus"])
            .arg(&prom)
            .args(extra)
            .arg(&data)
            .stdout(Stdio::piped());
        c
    };
    for signal in ["-KILL", "-TERM"] {
        let _ = std::fs::remove_file(&state);
        let child = args(&["--max-rate", "8MiB/s", "--threads", "1"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        let o = child.wait_with_output().unwrap();
        let printed = lines(&o.stdout);
        let found: Vec<u64> = printed
            .iter()
            .filter(|l| l["type"] == "finding")
            .map(|l| l["unit"].as_u64().unwrap())
            .collect();
        // Both damaged pages lie in the first megabytes: their lines were printed at once.
        assert_eq!(found, [10, 20], "{signal}: {printed:?}");
        if signal == "-TERM" {
            assert_eq!(o.status.code(), Some(36), "SIGTERM stops like SIGINT");
        }
        let saved = std::fs::read_to_string(&state).unwrap();
        assert!(
            saved.contains("zeroed_page"),
            "{signal}: the state lost the findings"
        );
        let o = args(&["--resume"]).output().unwrap();
        let rest = lines(&o.stdout);
        let summary = rest.last().unwrap();
        assert_eq!(summary["complete"], true, "{signal}");
        assert_eq!(o.status.code(), Some(4), "{signal}: {summary}");
        let metrics = std::fs::read_to_string(&prom).unwrap();
        assert_eq!(
            prom_value(&metrics, "dbfsck_exit_code"),
            Some(4.0),
            "{signal}"
        );
        if signal == "-KILL" {
            // The killed piece printed no summary; the resumed one reports its findings again.
            let units: Vec<u64> = rest
                .iter()
                .filter(|l| l["type"] == "finding")
                .map(|l| l["unit"].as_u64().unwrap())
                .collect();
            assert_eq!(units, [10, 20], "{rest:?}");
        }
    }
}

/// Case 2. A cycle is clean only if no piece of it found damage: the night that completes a
/// cycle exits 4 and leaves `dbfsck_exit_code 4` (and no new last-clean time) when an earlier
/// night of it found a zeroed page, as the docs/nightly.md command runs it.
#[test]
fn a_cycle_with_damage_in_an_earlier_night_never_ends_clean() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.dbfp");
    page_file(&data, 4096); // 16 MiB
    zero_pages(&data, &[5]);
    let state = dir.path().join("nightly.state");
    let prom = dir.path().join("dbfsck.prom");
    let night = |limit: &str| {
        bin()
            .args([
                "scan",
                "--quiet",
                "--max-rate",
                "8MiB/s",
                "--time-limit",
                limit,
            ])
            .arg("--state")
            .arg(&state)
            .arg("--resume")
            .arg("--prometheus")
            .arg(&prom)
            .args(["--output", "jsonl"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let first = night("500ms");
    assert_eq!(first.status.code(), Some(4));
    let second = night("1h");
    let summary = lines(&second.stdout).pop().unwrap();
    assert_eq!(summary["complete"], true);
    assert_eq!(
        summary["findings"], 0,
        "the second night itself found nothing"
    );
    assert_eq!(second.status.code(), Some(4), "{summary}");
    assert_eq!(summary["cycle"]["findings"], 1, "{summary}");
    let metrics = std::fs::read_to_string(&prom).unwrap();
    assert_eq!(prom_value(&metrics, "dbfsck_exit_code"), Some(4.0));
    assert_eq!(prom_value(&metrics, "dbfsck_cycle_findings_all"), Some(1.0));
    assert_eq!(
        prom_value(&metrics, "dbfsck_last_clean_scan_timestamp_seconds"),
        None,
        "{metrics}"
    );
}

/// Case 3. A state saved for one dataset is never taken for another at the same relative path:
/// the roots are bound by identity, so `db` under another directory starts a new scan (with a
/// warning) and its damage is found.
#[test]
fn a_state_of_another_dataset_with_the_same_path_is_not_used() {
    let top = tempfile::tempdir().unwrap();
    let (a, b) = (top.path().join("A"), top.path().join("B"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d.join("db")).unwrap();
        page_file(&d.join("db/t.dbfp"), 512);
    }
    zero_pages(&b.join("db/t.dbfp"), &[7, 9]);
    let state = top.path().join("s.json");
    let run = |cwd: &Path, extra: &[&str]| {
        bin()
            .args(["scan", "--output", "json", "--state"])
            .arg(&state)
            .args(extra)
            .arg("db")
            .current_dir(cwd)
            .output()
            .unwrap()
    };
    let o = run(&a, &["--time-limit", "300ms", "--max-rate", "1MiB/s"]);
    assert_eq!(json(&o)["summary"]["complete"], false);
    let o = run(&b, &["--resume"]);
    let v = json(&o);
    assert_eq!(rc(&o), 4, "{v}");
    assert_eq!(v["summary"]["damaged_units"], 2, "{v}");
    assert!(v["warnings"].to_string().contains("other roots"), "{v}");
}

/// Case 4. A corrupt state never turns into false findings nor stops the nightly job: a range
/// off the page grid makes that file's state unused (the file is scanned afresh, with a
/// warning); an empty or truncated state starts a new scan with a warning.
#[test]
fn a_corrupt_state_is_not_used_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.dbfp");
    page_file(&data, 2048);
    let state = dir.path().join("s.json");
    let scan = |extra: &[&str]| {
        bin()
            .args(["scan", "--output", "json", "--state"])
            .arg(&state)
            .args(extra)
            .arg(&data)
            .output()
            .unwrap()
    };
    // Long enough for the file to be opened (its state recorded), far too short to verify it.
    let o = scan(&["--time-limit", "300ms", "--max-rate", "1MiB/s"]);
    assert_eq!(json(&o)["summary"]["complete"], false);
    let mut s: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let key = s["files"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    s["files"][&key]["done"] = serde_json::json!([[4096, 12345]]);
    std::fs::write(&state, s.to_string()).unwrap();
    let o = scan(&["--resume"]);
    let v = json(&o);
    assert_eq!(rc(&o), 0, "a pristine file: {v}");
    assert!(v["findings"].as_array().unwrap().is_empty(), "{v}");
    assert!(v["warnings"].to_string().contains("do not fit"), "{v}");
    for bad in ["", "{\"version\": 2, \"roots\": [", "not json"] {
        std::fs::write(&state, bad).unwrap();
        let o = scan(&["--resume"]);
        assert_eq!(rc(&o), 0, "{bad:?}");
        let v = json(&o);
        assert_eq!(v["summary"]["complete"], true);
        assert!(
            v["warnings"].to_string().contains("a new scan starts"),
            "{v}"
        );
    }
}

/// Case 5. A file replaced during the scan (a healthy file renamed over it) is not what the
/// scan reads: every read goes through the descriptor opened and judged at the start, so no
/// page of the other file is taken for a misdirected write.
#[test]
fn a_file_renamed_over_during_the_scan_is_not_what_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.dbfp");
    page_file(&data, 4096);
    let other = dir.path().join("other.dbfp");
    let opts = CreateOptions {
        page_size: PS,
        checksum: ChecksumAlgo::Xxh3,
        file_id: Some(6),
    };
    let mut pf = PageFile::create(&other, opts).unwrap();
    for p in 1..4096 {
        pf.write_page(p, PageType::App(0x100), 1, b"other").unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    for online in [false, true] {
        let mut c = bin();
        c.args(["scan", "--output", "json", "--max-rate", "8MiB/s"]);
        if online {
            c.arg("--online");
        }
        let child = c.arg(&data).stdout(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let copy = dir.path().join("copy.dbfp");
        std::fs::copy(&other, &copy).unwrap();
        std::fs::rename(&copy, &data).unwrap();
        let o = child.wait_with_output().unwrap();
        let v = json(&o);
        assert_eq!(rc(&o), 0, "online={online}: {}", v["summary"]);
        assert!(v["findings"].as_array().unwrap().is_empty());
        page_file_fresh(&data);
    }
}

fn page_file_fresh(path: &Path) {
    let _ = std::fs::remove_file(path);
    page_file(path, 4096);
}

/// Case 6. A PostgreSQL data directory without `global/pg_control` (what an interrupted base
/// backup looks like) is never "clean": it is recognised by its markers, the missing
/// pg_control is an error (exit 8), and its relation files are still verified with the default
/// block size (or the one `--pg-block-size` names), so a zeroed block is still found.
#[test]
fn a_postgres_directory_without_pg_control_is_an_error_and_still_verified() {
    let dir = tempfile::tempdir().unwrap();
    let pg = dir.path().join("pg");
    let st = Command::new("cp")
        .arg("-a")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/postgres/cluster"
        ))
        .arg(&pg)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_file(pg.join("global/pg_control")).unwrap();
    let rel = pg.join("base/5/16384");
    let mut b = std::fs::read(&rel).unwrap();
    b[8192 * 3 + 100..8192 * 3 + 200].fill(0x5a);
    std::fs::write(&rel, &b).unwrap();
    let o = dbfsck(&[os("scan"), os("--output"), os("json"), pg.as_os_str()]);
    let v = json(&o);
    assert_eq!(rc(&o), 12, "{v}");
    assert!(
        v["errors"].to_string().contains("pg_control is missing"),
        "{v}"
    );
    let hit: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"].as_str().unwrap().ends_with("base/5/16384"))
        .collect();
    assert_eq!(hit.len(), 1, "{v}");
    assert_eq!(hit[0]["unit"], 3);
    assert_eq!(hit[0]["format"], "postgres");
    // Another block size, named: the same file read in 16 KiB blocks.
    let o = dbfsck(&[
        os("scan"),
        os("--output"),
        os("json"),
        os("--pg-block-size"),
        os("16384"),
        rel.as_os_str(),
    ]);
    assert_eq!(rc(&o) & 4, 4, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        rc(&dbfsck(&[
            os("scan"),
            os("--pg-block-size"),
            os("3000"),
            pg.as_os_str()
        ])),
        16
    );
}

/// Case 7. Memory and output grow with the runs of damage, not with the damaged pages: a
/// valid header followed by a 16 MiB sparse tail (4 088 zeroed pages) is one finding (with
/// `units`), one repair action, one constant-size undo entry and one manifest line without a
/// copy; undo puts the zeros back exactly. (Peak memory against size: benches/memory.sh.)
#[test]
fn a_zeroed_hole_is_one_finding_one_action_and_one_undo_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.dbfp");
    page_file(&data, 8);
    let len = 16u64 << 20;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len)
        .unwrap();
    let before = std::fs::read(&data).unwrap();
    let o = dbfsck(&[os("scan"), os("--output"), os("json"), data.as_os_str()]);
    let v = json(&o);
    let pages = len / PS as u64 - 8;
    assert_eq!(
        v["findings"].as_array().unwrap().len(),
        1,
        "{}",
        v["summary"]
    );
    assert_eq!(v["findings"][0]["units"], pages);
    assert_eq!(v["summary"]["damaged_units"], pages);
    let log = dir.path().join("undo.log");
    let o = dbfsck(&[
        os("scan"),
        os("--repair"),
        os("--force"),
        os("--undo-log"),
        log.as_os_str(),
        os("--output"),
        os("json"),
        data.as_os_str(),
    ]);
    let v = json(&o);
    assert_eq!(rc(&o), 4, "{v}");
    assert_eq!(v["repairs"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["repairs"][0]["units"], pages);
    assert!(
        std::fs::metadata(&log).unwrap().len() < 1024,
        "the undo log grows with pages"
    );
    let manifest =
        std::fs::read_to_string(dir.path().join(".dbfsck/quarantine/manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 1, "{manifest}");
    assert!(manifest.contains("\"zero\":true"), "{manifest}");
    let copies = std::fs::read_dir(dir.path().join(".dbfsck/quarantine"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".bin")
        })
        .count();
    assert_eq!(copies, 0, "zeros are not copied");
    let again = json(&dbfsck(&[
        os("scan"),
        os("--output"),
        os("json"),
        data.as_os_str(),
    ]));
    assert_eq!(again["findings"][0]["kind"], "quarantined");
    assert_eq!(
        again["findings"][0]["units"], pages,
        "the markers are one run too"
    );
    let u = dbfsck(&[os("undo"), log.as_os_str()]);
    assert_eq!(rc(&u), 0, "{}", String::from_utf8_lossy(&u.stderr));
    assert!(std::fs::read(&data).unwrap() == before, "undo is not exact");
}

/// Review 2, break 1. Two files whose names differ only in bytes that are not UTF-8 print alike
/// (`a\xfe` and `a\xff` both show as `a\u{FFFD}`); the scan state keys files losslessly, so the
/// ranges verified in one are never credited to the other: a cycle split over two pieces finds
/// the zeroed last page of the file scanned second.
#[test]
fn two_names_that_print_alike_keep_separate_scan_states() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    std::fs::create_dir(&d).unwrap();
    let a = d.join(OsStr::from_bytes(b"a\xfe.dbfp"));
    let b = d.join(OsStr::from_bytes(b"a\xff.dbfp"));
    page_file(&a, 2048); // 8 MiB each
    page_file(&b, 2048);
    zero_pages(&b, &[2047]);
    let state = dir.path().join("s.json");
    let piece = |extra: &[&str]| {
        bin()
            .args(["scan", "--output", "json", "--threads", "1", "--state"])
            .arg(&state)
            .arg("--resume")
            .args(extra)
            .arg(&d)
            .output()
            .unwrap()
    };
    // First piece: all of the first file and part of the second (8 MiB/s for 1.5 s).
    let first = piece(&["--max-rate", "8MiB/s", "--time-limit", "1500ms"]);
    let v: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(v["summary"]["complete"], false, "{v}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        saved["files"].as_object().unwrap().len(),
        2,
        "one state per file: {saved}"
    );
    let second = piece(&[]);
    let v: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(v["summary"]["complete"], true, "{v}");
    let units: Vec<(u64, &str)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["unit"].as_u64().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(units, [(2047, "zeroed_page")], "{v}");
    assert_eq!(second.status.code(), Some(4), "{v}");
}

/// Review 2, break 2. A piece killed after a checkpoint in the middle of a zeroed run leaves
/// the run's first part pending; the resumed piece continues that run in its stream, so its
/// JSON Lines hold the run once (no two finding lines cover the same page).
#[test]
fn a_run_continued_after_a_kill_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("big.dbfp");
    page_file(&data, 8192); // 32 MiB
    let hole: Vec<u64> = (256..7936).collect(); // 1 MiB .. 31 MiB
    zero_pages(&data, &hole);
    let state = dir.path().join("s.json");
    let piece = |extra: &[&str]| {
        let mut c = bin();
        c.args(["scan", "--output", "jsonl", "--threads", "1", "--state"])
            .arg(&state)
            .args(["--state-every", "100ms"])
            .args(extra)
            .arg(&data)
            .stdout(Stdio::piped());
        c
    };
    let mut child = piece(&["--max-rate", "8MiB/s"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let _ = child.wait();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let pending = saved["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "killed inside the run: {saved}");
    assert_eq!(pending[0]["finding"]["unit"], 256);
    let o = piece(&["--resume"]).output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    let found: Vec<(u64, u64)> = lines(&o.stdout)
        .iter()
        .filter(|l| l["type"] == "finding")
        .map(|l| {
            (
                l["unit"].as_u64().unwrap(),
                l["units"].as_u64().unwrap_or(1),
            )
        })
        .collect();
    assert_eq!(found, [(256, 7680)], "one line for the whole run");
}

/// Review 2, break 3. A file that grew by a partial page (a sparse tail of 3 MiB + 1000 bytes):
/// the open-time `partial_page` finding lies after the zeroed run in the stream, and must not
/// split it at a chunk boundary — JSON Lines hold exactly the JSON document's findings, on one
/// thread or two.
#[test]
fn a_partial_last_page_never_splits_a_streamed_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("grown.dbfp");
    page_file(&data, 4096); // 16 MiB
    let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    f.set_len(16 * 1024 * 1024 + 3 * 1024 * 1024 + 1000)
        .unwrap();
    drop(f);
    let doc = bin()
        .args(["scan", "--output", "json"])
        .arg(&data)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&doc.stdout).unwrap();
    let want: Vec<Value> = v["findings"].as_array().unwrap().clone();
    let kinds: Vec<&str> = want.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["zeroed_page", "partial_page"], "{v}");
    for threads in ["1", "2"] {
        let o = bin()
            .args(["scan", "--output", "jsonl", "--threads", threads])
            .arg(&data)
            .output()
            .unwrap();
        let got: Vec<(Value, Value, Value)> = lines(&o.stdout)
            .into_iter()
            .filter(|l| l["type"] == "finding")
            .map(|l| (l["offset"].clone(), l["length"].clone(), l["kind"].clone()))
            .collect();
        let want: Vec<(Value, Value, Value)> = want
            .iter()
            .map(|l| (l["offset"].clone(), l["length"].clone(), l["kind"].clone()))
            .collect();
        assert_eq!(got, want, "--threads {threads}");
    }
}

/// Review 2, break 4. Many small files under `--max-rate` and `--time-limit` (the docs/nightly.md
/// recipe): the open phase, which reads every file's head, stops at the time limit too, and a
/// resumed night does not read the files earlier nights verified — so every night verifies new
/// files, the cycle completes, and the zeroed page in the last file is found exactly once. Files
/// are opened in parallel batches, so the night that reaches the last file is not fixed: a night
/// exits 4 exactly when it (or an earlier piece of its cycle) found the page.
#[test]
fn short_nights_over_many_small_files_complete_the_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    std::fs::create_dir(&d).unwrap();
    for i in 0..100 {
        page_file(&d.join(format!("f{i:03}.dbfp")), 16); // 64 KiB each, 6.4 MiB in all
    }
    zero_pages(&d.join("f099.dbfp"), &[5]);
    let state = dir.path().join("s.json");
    let mut nights = 0;
    let mut found: Vec<(String, u64)> = Vec::new();
    let last = loop {
        nights += 1;
        assert!(nights <= 8, "the cycle never completes");
        let started = Instant::now();
        let o = bin()
            .args(["scan", "--output", "json", "--max-rate", "8MiB/s"])
            .args(["--time-limit", "300ms", "--resume", "--state"])
            .arg(&state)
            .arg(&d)
            .output()
            .unwrap();
        // The limit bounds the night, open phase included (generously: a loaded machine).
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "night {nights} ran {:?} with a 300 ms limit",
            started.elapsed()
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        found.extend(v["findings"].as_array().unwrap().iter().map(|f| {
            let path = f["path"].as_str().unwrap().to_owned();
            (path, f["unit"].as_u64().unwrap())
        }));
        let want = if found.is_empty() { 0 } else { 4 };
        assert_eq!(o.status.code(), Some(want), "night {nights}: {v}");
        if v["summary"]["complete"] == true {
            break v;
        }
    };
    assert!(nights >= 2, "one night read all: the test proves nothing");
    assert_eq!(found.len(), 1, "found over the cycle: {found:?}");
    assert!(
        found[0].0.ends_with("f099.dbfp") && found[0].1 == 5,
        "{found:?}"
    );
    assert_eq!(last["summary"]["cycle"]["findings"], 1, "{last}");
}
