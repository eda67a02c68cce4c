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
    assert_eq!(v["journals"], serde_json::json!([]));
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
