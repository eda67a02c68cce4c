//! The command line as scripts use it: the real `dbfsck` binary, its exit codes (0/4/8/12/16),
//! and JSON / JSON Lines output that parses and follows the schema_version 1 contract.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use dbfsck_core::native::ChecksumAlgo;
use dbfsck_testkit::{Dataset, Fault, Spec};
use serde_json::Value;

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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn clean(dir: &Path) -> Dataset {
    let spec = Spec {
        files: 2,
        pages: 20,
        page_size: 4096,
        checksum: ChecksumAlgo::Crc32,
        seed: 11,
    };
    Dataset::generate(dir, spec).unwrap()
}

fn damaged(dir: &Path) -> Dataset {
    let mut ds = clean(dir);
    let mut rng = dbfsck_testkit::rng(1);
    ds.inject(0, 3, &Fault::BitFlip { byte: 100, bit: 1 }, &mut rng);
    ds.inject(1, 8, &Fault::Zeroed, &mut rng);
    ds.write_back().unwrap();
    ds
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[test]
fn clean_scan_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    clean(dir.path());
    let o = dbfsck(&["scan", s(dir.path())]);
    assert_eq!(rc(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("result: clean"), "{out}");
    assert!(out.contains("files     2"), "{out}");
}

#[test]
fn damage_exits_4_and_human_report_groups_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let ds = damaged(dir.path());
    let o = dbfsck(&["scan", s(dir.path())]);
    assert_eq!(rc(&o), 4);
    let out = String::from_utf8(o.stdout).unwrap();
    let a = out.find(s(&ds.files[0].path)).unwrap();
    let b = out.find(s(&ds.files[1].path)).unwrap();
    let mismatch = out.find("checksum_mismatch").unwrap();
    let zeroed = out.find("zeroed_page").unwrap();
    assert!(a < mismatch && mismatch < b && b < zeroed, "{out}");
    assert!(
        out.contains("  checksum_mismatch (1)\n    unit 3"),
        "grouped by kind: {out}"
    );
    assert!(
        out.contains("    checksum_mismatch            1\n    zeroed_page                  1"),
        "summary table: {out}"
    );
    assert!(!out.contains('\x1b'), "NO_COLOR is honoured: {out:?}");
}

#[test]
fn missing_path_beside_a_valid_one_exits_8_or_12() {
    let dir = tempfile::tempdir().unwrap();
    clean(dir.path());
    let missing = dir.path().join("does-not-exist");
    let o = dbfsck(&["scan", s(&missing), s(dir.path()), "--output", "json"]);
    assert_eq!(rc(&o), 8);
    let v = json(&o);
    assert_eq!(v["errors"][0]["path"], s(&missing));
    assert_eq!(v["summary"]["files"], 2, "the valid path is still scanned");

    let dir2 = tempfile::tempdir().unwrap();
    damaged(dir2.path());
    let o = dbfsck(&["scan", s(&missing), s(dir2.path())]);
    assert_eq!(rc(&o), 12);
}

#[test]
fn usage_errors_exit_16() {
    assert_eq!(rc(&dbfsck(&["scan"])), 16);
    assert_eq!(rc(&dbfsck(&["scan", ".", "--output", "xml"])), 16);
    assert_eq!(rc(&dbfsck(&["scan", ".", "--threads", "many"])), 16);
    assert_eq!(rc(&dbfsck(&["frobnicate"])), 16);
    let o = dbfsck(&["scan", ".", "--format", "oracle"]);
    assert_eq!(rc(&o), 16);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown format"));
    assert_eq!(rc(&dbfsck(&["--help"])), 0);
    assert_eq!(rc(&dbfsck(&["--version"])), 0);
}

#[test]
fn json_document_follows_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let ds = damaged(dir.path());
    let o = dbfsck(&["scan", s(dir.path()), "--output", "json"]);
    assert_eq!(rc(&o), 4);
    let v = json(&o);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["tool"]["name"], "dbfsck");
    assert!(v["tool"]["version"].is_string());
    assert_eq!(v["roots"], serde_json::json!([s(dir.path())]));
    assert_eq!(v["exit_code"], 4);
    assert_eq!(v["repairs"], serde_json::json!([]));
    assert_eq!(v["errors"], serde_json::json!([]));
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2);
    let f = &findings[0];
    assert_eq!(f["path"], s(&ds.files[0].path));
    assert_eq!(f["offset"], 3 * 4096);
    assert_eq!(f["length"], 4096);
    assert_eq!(f["format"], "native");
    assert_eq!(f["unit"], 3);
    assert_eq!(f["kind"], "checksum_mismatch");
    assert!(f["expected"].as_str().unwrap().starts_with("0x"));
    assert!(f["actual"].as_str().unwrap().starts_with("0x"));
    assert!(f["detail"].is_string());
    assert!(f["owner"]["file_id"].is_string());
    let z = &findings[1];
    assert_eq!(z["kind"], "zeroed_page");
    assert!(
        z.get("expected").is_none(),
        "fields that do not apply are omitted: {z}"
    );
    let sum = &v["summary"];
    assert_eq!(sum["files"], 2);
    assert_eq!(sum["units"], 40);
    assert_eq!(sum["bytes"], 2 * 20 * 4096);
    assert_eq!(sum["findings"], 2);
    assert_eq!(sum["by_kind"]["checksum_mismatch"], 1);
    assert_eq!(sum["by_kind"]["zeroed_page"], 1);
    assert!(sum["elapsed_s"].is_number());
    assert_eq!(sum["complete"], true);
}

#[test]
fn json_lines_stream_one_object_per_line_and_end_with_summary() {
    let dir = tempfile::tempdir().unwrap();
    damaged(dir.path());
    fs::write(dir.path().join("README.txt"), "not a page file").unwrap();
    let missing = dir.path().join("gone");
    let o = dbfsck(&["scan", s(dir.path()), s(&missing), "--output", "jsonl"]);
    assert_eq!(rc(&o), 12);
    let text = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["finding", "finding", "error", "skipped", "summary"]);
    let last = lines.last().unwrap();
    assert_eq!(last["exit_code"], 12);
    assert_eq!(last["schema_version"], 1);
    assert_eq!(last["findings"], 2);
    assert_eq!(lines[3]["reason"], "not a recognised format");
}

#[test]
fn empty_file_named_explicitly_is_an_error_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty");
    fs::write(&p, "").unwrap();
    let o = dbfsck(&["scan", s(&p), "--output", "json"]);
    assert_eq!(rc(&o), 8);
    let v = json(&o);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("empty file"),
        "{v}"
    );
    // Named as native, an empty page file is a truncated file: damage.
    let o = dbfsck(&["scan", s(&p), "--format", "native", "--output", "json"]);
    assert_eq!(rc(&o), 4);
    assert_eq!(json(&o)["findings"][0]["kind"], "truncated");
}

#[test]
fn file_not_a_multiple_of_the_page_size_reports_partial_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = clean(dir.path());
    ds.truncate_mid_page(1, 12, 300);
    ds.write_back().unwrap();
    let o = dbfsck(&["scan", s(dir.path()), "--output", "json"]);
    assert_eq!(rc(&o), 4);
    let v = json(&o);
    let f = &v["findings"][0];
    assert_eq!(
        (
            f["kind"].as_str(),
            f["offset"].as_u64(),
            f["length"].as_u64()
        ),
        (Some("partial_page"), Some(12 * 4096), Some(300))
    );
}

#[test]
fn directory_of_unrelated_files_is_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.txt"), "hello").unwrap();
    fs::write(dir.path().join("b.bin"), vec![1u8; 10000]).unwrap();
    let o = dbfsck(&["scan", s(dir.path())]);
    // Not corruption (no damage bit), but not clean either: nothing there was verified.
    assert_eq!(rc(&o), 8);
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("not a recognised format"), "{out}");
    assert!(out.contains("skipped   2"), "{out}");
    assert!(out.contains("nothing here was verified"), "{out}");
    assert!(!out.contains("clean: no damage found"), "{out}");
}

#[test]
fn mmap_and_pread_and_thread_counts_print_identical_json() {
    let dir = tempfile::tempdir().unwrap();
    damaged(dir.path());
    let strip = |o: Output| {
        let mut v = json(&o);
        v["summary"]["elapsed_s"] = Value::Null;
        v
    };
    let base = strip(dbfsck(&[
        "scan",
        s(dir.path()),
        "--output",
        "json",
        "--threads",
        "1",
    ]));
    let other = strip(dbfsck(&[
        "scan",
        s(dir.path()),
        "--output",
        "json",
        "--threads",
        "4",
        "--no-mmap",
    ]));
    assert_eq!(base, other);
}

#[test]
fn quiet_prints_nothing_on_clean_data() {
    let dir = tempfile::tempdir().unwrap();
    clean(dir.path());
    let o = dbfsck(&["scan", "--quiet", s(dir.path())]);
    assert_eq!(rc(&o), 0);
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn bundled_demo_shows_findings_and_exits_4() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/demo");
    let o = dbfsck(&["scan", s(&demo), "--output", "json"]);
    assert_eq!(rc(&o), 4);
    let v = json(&o);
    let kinds: std::collections::BTreeSet<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    for k in [
        "checksum_mismatch",
        "torn_write",
        "misdirected_write",
        "zeroed_page",
        "partial_page",
    ] {
        assert!(kinds.contains(k), "demo lacks {k}: {kinds:?}");
    }
}

/// `--max-rate` holds the read rate: 12 MiB at 4 MiB/s cannot take less than 3 s less 10 %.
/// (The upper bound is loose: a loaded machine may be slower, never faster.)
#[test]
fn max_rate_limits_the_read_rate() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        files: 3,
        pages: 1024,
        page_size: 4096,
        checksum: ChecksumAlgo::Xxh3,
        seed: 3,
    };
    Dataset::generate(dir.path(), spec).unwrap();
    let t = std::time::Instant::now();
    let o = dbfsck(&[
        "scan",
        "--quiet",
        "--max-rate",
        "4MiB/s",
        "--idle",
        s(dir.path()),
    ]);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(rc(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = 3.0 * 1023.0 * 4096.0; // the header pages are read at open, unthrottled
    let expected = bytes / (4.0 * 1048576.0);
    assert!(
        secs >= expected * 0.9,
        "{secs:.2} s for {expected:.2} s of bytes: too fast"
    );
    assert!(
        secs <= expected * 1.5 + 1.0,
        "{secs:.2} s for {expected:.2} s of bytes: too slow"
    );
    assert_eq!(rc(&dbfsck(&["scan", "--max-rate", "0", s(dir.path())])), 16);
    assert_eq!(
        rc(&dbfsck(&["scan", "--max-rate", "fast", s(dir.path())])),
        16
    );
}

#[test]
fn formats_completions_and_man_page() {
    let o = dbfsck(&["formats"]);
    assert_eq!(rc(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    for name in ["native", "postgres", "auto"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let o = dbfsck(&["completions", shell]);
        assert_eq!(rc(&o), 0);
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(
            script.contains("max-rate") && script.contains("undo"),
            "{shell}"
        );
    }
    assert_eq!(rc(&dbfsck(&["completions", "tcsh"])), 16);
    let o = dbfsck(&["man"]);
    assert_eq!(rc(&o), 0);
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH dbfsck"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(page.contains("scan"));
}

/// Parses a Prometheus text file with a reference parser independent of our code
/// (`openmetrics-parser`, a grammar of the text exposition format, which rejects malformed
/// lines, duplicate HELP/TYPE and samples outside their family) into `{name: [[labels, value]]}`.
fn parse_prometheus(path: &Path) -> Value {
    use openmetrics_parser::{prometheus::parse_prometheus, PrometheusValue};
    let text = std::fs::read_to_string(path).unwrap();
    let exposition = parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("not valid Prometheus text ({e:?}):\n{text}"));
    let mut out = serde_json::Map::new();
    for (name, family) in &exposition.families {
        let mut samples = Vec::new();
        for sample in family.iter_samples() {
            let set = sample.get_labelset().unwrap();
            let labels: serde_json::Map<String, Value> = set
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            let value = match &sample.value {
                PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
                PrometheusValue::Counter(c) => c.value.as_f64(),
                other => panic!("{name}: unexpected value {other:?}"),
            };
            samples.push(serde_json::json!([labels, value]));
        }
        out.insert(name.clone(), Value::Array(samples));
    }
    Value::Object(out)
}

#[test]
fn prometheus_metrics_parse_and_remember_the_last_clean_scan() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut ds = clean(&data);
    let prom = dir.path().join("dbfsck.prom");
    assert_eq!(
        rc(&dbfsck(&["scan", "--prometheus", s(&prom), s(&data)])),
        0
    );
    let m = parse_prometheus(&prom);
    let v = |m: &Value, name: &str| m[name][0][1].as_f64().unwrap();
    assert_eq!(v(&m, "dbfsck_exit_code"), 0.0);
    assert_eq!(v(&m, "dbfsck_files_scanned"), 2.0);
    assert_eq!(v(&m, "dbfsck_units_verified"), 40.0);
    assert_eq!(v(&m, "dbfsck_scan_complete"), 1.0);
    let clean_at = v(&m, "dbfsck_last_clean_scan_timestamp_seconds");
    assert_eq!(clean_at, v(&m, "dbfsck_last_scan_timestamp_seconds"));

    let mut rng = dbfsck_testkit::rng(3);
    ds.inject(1, 4, &Fault::Zeroed, &mut rng);
    ds.write_back().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        rc(&dbfsck(&["scan", "--prometheus", s(&prom), s(&data)])),
        4
    );
    let m = parse_prometheus(&prom);
    assert_eq!(v(&m, "dbfsck_exit_code"), 4.0);
    assert_eq!(v(&m, "dbfsck_findings_all"), 1.0);
    let by_kind = &m["dbfsck_findings"][0];
    assert_eq!(by_kind[0]["kind"], "zeroed_page");
    assert_eq!(by_kind[0]["format"], "native");
    assert_eq!(by_kind[1], 1.0);
    assert_eq!(
        v(&m, "dbfsck_last_clean_scan_timestamp_seconds"),
        clean_at,
        "a damaged scan keeps the time of the last clean one"
    );
    assert!(v(&m, "dbfsck_last_scan_timestamp_seconds") > clean_at);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp."))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );
}

#[test]
fn inspect_decodes_a_page_with_the_scan_verdict() {
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/demo/orders.dbfp"
    );
    let o = dbfsck(&["inspect", demo, "--page", "17"]);
    assert_eq!(rc(&o), 4);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("lsn (header)             171"), "{text}");
    assert!(text.contains("lsn (trailer)            73"), "{text}");
    assert!(
        text.contains("checksum (stored)        0xdf690960"),
        "{text}"
    );
    assert!(
        text.contains("verdict                  torn_write"),
        "{text}"
    );
    assert!(
        text.contains("00000000  44 42 46 50"),
        "the hexdump starts with the magic: {text}"
    );
    let o = dbfsck(&["inspect", demo, "--page", "3"]);
    assert_eq!(rc(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("verdict                  valid"));
    let o = dbfsck(&["inspect", demo, "--page", "9999"]);
    assert_eq!(rc(&o), 8);
    assert!(String::from_utf8_lossy(&o.stderr).contains("past the end"));

    let pg = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/postgres/cluster/global/1262"
    );
    let o = dbfsck(&["inspect", pg, "--page", "0"]);
    assert_eq!(rc(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("pd_checksum (stored)") && text.contains("verdict                  valid")
    );
}

#[test]
fn inspect_shows_the_journal_image_beside_a_damaged_page() {
    use dbfsck_core::native::{CreateOptions, PageType};
    use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.dbfp");
    let mut store = JournaledStore::create(
        FsStorage,
        &dir.path().join("wal.dbfj"),
        JournalOptions::default(),
    )
    .unwrap();
    let h = store.create_file(&data, CreateOptions::default()).unwrap();
    let write = |page_no| PageWrite {
        file: h,
        page_no,
        page_type: PageType::App(0x100),
        flags: 0,
        lsn: 5,
        body: b"row",
    };
    store.commit(&[write(1), write(2)]).unwrap();
    drop(store);
    let mut b = fs::read(&data).unwrap();
    b[2 * 8192 + 40] ^= 0xff;
    fs::write(&data, b).unwrap();
    let o = dbfsck(&["inspect", s(&data), "--page", "2"]);
    assert_eq!(rc(&o), 4);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("journal image") && text.contains("LSN 5"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.ends_with(" journal")).count(),
        1,
        "{text}"
    );
}

/// `--output jsonl` streams: a damaged small file's finding arrives while a big file is still
/// being read (here slowly, under --max-rate), long before the summary.
#[test]
fn jsonl_streams_findings_as_files_are_verified() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        files: 2,
        pages: 768,
        page_size: 4096,
        checksum: ChecksumAlgo::Crc32,
        seed: 12,
    };
    let mut ds = Dataset::generate(dir.path(), spec).unwrap();
    ds.truncate_mid_page(0, 20, 100); // data-0000 becomes small, verified as soon as it is opened
    ds.write_back().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args([
            "scan",
            "--output",
            "jsonl",
            "--threads",
            "1",
            "--max-rate",
            "1MiB/s",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    assert_eq!(first["type"], "finding");
    assert_eq!(first["kind"], "partial_page");
    assert!(still_running, "the finding came before the scan ended");
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(child.wait().unwrap().code(), Some(4));
    assert_eq!(rest.last().unwrap()["type"], "summary");
    assert_eq!(rest.last().unwrap()["findings"], 1);
    assert_eq!(
        rest.iter().filter(|l| l["type"] == "finding").count(),
        0,
        "no finding twice"
    );
}

fn sorted_findings(v: &Value) -> Vec<Value> {
    let mut f = v["findings"].as_array().unwrap().clone();
    f.sort_by_key(|x| {
        (
            x["path"].as_str().unwrap().to_owned(),
            x["offset"].as_u64().unwrap(),
        )
    });
    f
}

fn resumable(dir: &Path) {
    let spec = Spec {
        files: 3,
        pages: 512,
        page_size: 4096,
        checksum: ChecksumAlgo::Crc32,
        seed: 31,
    };
    let mut ds = Dataset::generate(dir, spec).unwrap();
    let mut rng = dbfsck_testkit::rng(4);
    for (f, p) in [(0, 5), (0, 400), (1, 200), (2, 30), (2, 511)] {
        ds.inject(f, p, &Fault::Zeroed, &mut rng);
    }
    ds.write_back().unwrap();
}

/// A nightly window: `--time-limit` stops cleanly (complete: false, no exit bit 32), `--state`
/// saves the position, `--resume` finishes, and the two runs' findings are one full scan's.
#[test]
fn time_limited_scan_resumes_to_exactly_one_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    resumable(&data);
    let state = dir.path().join("scan.state");
    let full = json(&dbfsck(&["scan", "--output", "json", s(&data)]));
    let o = dbfsck(&[
        "scan",
        "--output",
        "json",
        "--threads",
        "1",
        "--max-rate",
        "2MiB/s",
        "--time-limit",
        "1s",
        "--state",
        s(&state),
        s(&data),
    ]);
    let first = json(&o);
    assert_eq!(first["summary"]["complete"], false);
    assert_eq!(rc(&o) & 32, 0, "a time limit is not a cancellation");
    assert!(state.exists());
    let o = dbfsck(&[
        "scan",
        "--output",
        "json",
        "--state",
        s(&state),
        "--resume",
        s(&data),
    ]);
    let second = json(&o);
    assert_eq!(second["summary"]["complete"], true);
    let mut both: Vec<Value> = sorted_findings(&first);
    both.extend(sorted_findings(&second));
    both.sort_by_key(|x| {
        (
            x["path"].as_str().unwrap().to_owned(),
            x["offset"].as_u64().unwrap(),
        )
    });
    assert_eq!(both, sorted_findings(&full));
    // Resuming a complete state is a new full scan; a state of other roots is not used: a new
    // scan starts, with a warning.
    let third = json(&dbfsck(&[
        "scan",
        "--output",
        "json",
        "--state",
        s(&state),
        "--resume",
        s(&data),
    ]));
    assert_eq!(sorted_findings(&third), sorted_findings(&full));
    let unfinished = fs::read_to_string(&state)
        .unwrap()
        .replace("\"complete\": true", "\"complete\": false");
    fs::write(&state, unfinished).unwrap();
    let o = dbfsck(&[
        "scan",
        "--output",
        "json",
        "--state",
        s(&state),
        "--resume",
        s(dir.path()),
    ]);
    let other = json(&o);
    assert_eq!(rc(&o), 4);
    assert!(
        other["warnings"].to_string().contains("other roots"),
        "{other}"
    );
    assert_eq!(sorted_findings(&other), sorted_findings(&full));
    assert_eq!(
        rc(&dbfsck(&["scan", "--resume", s(&data)])),
        16,
        "--resume needs --state"
    );
}

/// SIGINT stops like the time limit does, with exit bit 32, and leaves a resumable state.
#[test]
fn sigint_leaves_a_resumable_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    resumable(&data);
    let state = dir.path().join("scan.state");
    let full = json(&dbfsck(&["scan", "--output", "json", s(&data)]));
    let child = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args([
            "scan",
            "--output",
            "json",
            "--threads",
            "1",
            "--max-rate",
            "2MiB/s",
        ])
        .args(["--state", s(&state), s(&data)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code().unwrap() & 32, 32);
    let first = json(&o);
    assert_eq!(first["summary"]["complete"], false);
    let saved: Value = serde_json::from_str(&fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["complete"], false);
    let second = json(&dbfsck(&[
        "scan",
        "--output",
        "json",
        "--state",
        s(&state),
        "--resume",
        s(&data),
    ]));
    assert_eq!(second["summary"]["complete"], true);
    let mut both = sorted_findings(&first);
    both.extend(sorted_findings(&second));
    both.sort_by_key(|x| {
        (
            x["path"].as_str().unwrap().to_owned(),
            x["offset"].as_u64().unwrap(),
        )
    });
    assert_eq!(both, sorted_findings(&full));
}

fn innodb_fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/innodb/fixtures")
}

#[test]
fn innodb_tablespaces_are_detected_and_damage_names_the_table() {
    let o = dbfsck(&["scan", s(&innodb_fixtures()), "--output", "json"]);
    assert_eq!(rc(&o), 0);
    let v = json(&o);
    assert_eq!(v["summary"]["files"], 6, "{v}");
    // The LZO fixture's compressed pages are not decompressed: said, not counted as verified.
    assert!(
        v["warnings"].to_string().contains("could not be checked"),
        "{v}"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop");
    fs::create_dir(&db).unwrap();
    let mut bytes = fs::read(innodb_fixtures().join("crc32.ibd")).unwrap();
    bytes[3 * 16384 + 100] ^= 1;
    fs::write(db.join("orders.ibd"), &bytes).unwrap();
    for format in ["auto", "innodb"] {
        let o = dbfsck(&[
            "scan",
            s(dir.path()),
            "--format",
            format,
            "--output",
            "json",
        ]);
        assert_eq!(rc(&o), 4);
        let v = json(&o);
        let f = &v["findings"][0];
        assert_eq!(f["format"], "innodb");
        assert_eq!(f["kind"], "checksum_mismatch");
        assert_eq!(f["unit"], 3);
        assert_eq!(f["owner"]["database"], "shop");
        assert_eq!(f["owner"]["table"], "orders");
        assert_eq!(f["owner"]["page_type"], "INDEX");
    }
    let o = dbfsck(&["inspect", s(&db.join("orders.ibd")), "--page", "3"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("crc32 (computed)") && text.contains("checksum_mismatch"),
        "{text}"
    );
}

/// The Prometheus test proves something only if its reference parser is strict: it rejects what
/// node_exporter's textfile collector rejects.
#[test]
fn the_reference_prometheus_parser_rejects_malformed_text() {
    use openmetrics_parser::prometheus::parse_prometheus;
    for bad in [
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",
        "a{x=\"1\" 1\n",
        "a one\n",
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",
        "# TYPE a gaug\na 1\n",
    ] {
        assert!(parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
    assert!(parse_prometheus("# TYPE a gauge\na{x=\"1\"} 1.5\n").is_ok());
}
