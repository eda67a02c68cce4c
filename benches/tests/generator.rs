//! `dbfsck-gen` follows DESIGN.md's generator contract: the JSON summary's shape, about `--size`
//! bytes in `--files` files of `--page-size` pages, same seed → same bytes, and the dataset scans
//! clean.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn gen(out: &Path, seed: &str) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_dbfsck-gen"))
        .args([
            "--out",
            out.to_str().unwrap(),
            "--size",
            "2MiB",
            "--files",
            "3",
        ])
        .args(["--page-size", "4096", "--checksum", "crc32", "--seed", seed])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn summary_shape_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let v = gen(dir.path(), "9");
    assert_eq!(v["page_size"], 4096);
    assert_eq!(v["checksum"], "crc32");
    assert_eq!(
        v["journals"],
        serde_json::json!([]),
        "no journal without --journal"
    );
    assert!(v["journaled_pages"].is_object());
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let mut total = 0;
    for f in files {
        let path = f["path"].as_str().unwrap();
        let len = std::fs::metadata(path).unwrap().len();
        assert_eq!(len, f["pages"].as_u64().unwrap() * 4096);
        total += len;
    }
    assert!(((2 << 20) - 3 * 4096..=2 << 20).contains(&total), "{total}");
    let r = dbfsck_core::Scanner::new().scan(&[dir.path()]).unwrap();
    assert!(r.findings.is_empty() && r.summary.files == 3, "{r:#?}");
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    gen(a.path(), "5");
    gen(b.path(), "5");
    gen(c.path(), "6");
    for name in ["data-0000.dbfp", "data-0001.dbfp", "data-0002.dbfp"] {
        let (x, y, z) = (
            std::fs::read(a.path().join(name)).unwrap(),
            std::fs::read(b.path().join(name)).unwrap(),
            std::fs::read(c.path().join(name)).unwrap(),
        );
        assert!(x == y, "{name} differs between runs with the same seed");
        assert!(x != z, "{name} is the same under another seed");
    }
}

fn gen_journal(out: &Path) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_dbfsck-gen"))
        .args([
            "--out",
            out.to_str().unwrap(),
            "--size",
            "4MiB",
            "--files",
            "2",
        ])
        .args(["--page-size", "8192", "--seed", "5", "--journal"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn journal_covers_a_tenth_of_the_pages_is_reproducible_and_repairs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let v = gen_journal(a.path());
    gen_journal(b.path());
    let journals = v["journals"].as_array().unwrap();
    assert_eq!(journals.len(), 1);
    let journal = Path::new(journals[0].as_str().unwrap());
    let name = journal.file_name().unwrap();
    assert_eq!(
        std::fs::read(journal).unwrap(),
        std::fs::read(b.path().join(name)).unwrap(),
        "same seed, same journal"
    );
    for f in v["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let pages = f["pages"].as_u64().unwrap();
        let listed = v["journaled_pages"][path].as_array().unwrap();
        assert!(
            listed.len() as u64 * 10 >= pages,
            "{path}: {} of {pages}",
            listed.len()
        );
    }
    let report = dbfsck_core::Scanner::new().scan(&[a.path()]).unwrap();
    assert!(report.findings.is_empty());

    // Zero every journaled page of the first file: repair rebuilds all of them (exit 1).
    let first = v["files"][0]["path"].as_str().unwrap();
    let pristine = std::fs::read(first).unwrap();
    let mut bytes = pristine.clone();
    for p in v["journaled_pages"][first].as_array().unwrap() {
        let p = p.as_u64().unwrap() as usize;
        bytes[p * 8192..(p + 1) * 8192].fill(0);
    }
    std::fs::write(first, &bytes).unwrap();
    let mut report = dbfsck_core::Scanner::new().scan(&[a.path()]).unwrap();
    let options = dbfsck_repair::RepairOptions {
        dry_run: false,
        ..dbfsck_repair::RepairOptions::in_dir(a.path())
    };
    dbfsck_repair::repair(&mut report, &dbfsck_repair::FsStorage, &options);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(std::fs::read(first).unwrap(), pristine);
}
