//! Oracle test of compressed tar-format backups (`pg_basebackup -Ft -z`, `--compress=lz4`,
//! `--compress=zstd`, and `-z -X fetch`, whose WAL is inside `base.tar.gz`): real backups of a pgbench cluster are read as streams — every page, each
//! member against `backup_manifest`, the WAL in `pg_wal.tar.gz` — and called clean and
//! restorable; the gzip one, extracted with GNU tar, passes PostgreSQL's own `pg_verifybackup`.
//! A flipped byte inside the zstd archive is reported on the member it garbles, and a gzip
//! archive cut in half (which `gzip -t` also fails) is reported where it ends, the files after
//! it said to be unchecked rather than missing.
//!
//! Needs root, the `postgres` user and PostgreSQL 15 (`common::pg`); skipped where they are
//! missing unless the run must be complete (`CI`), where it fails.

use std::fs;
use std::path::Path;
use std::process::Command;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

fn scan(dir: &Path) -> (i32, serde_json::Value) {
    dbfsck(&["scan", dir.to_str().unwrap()])
}

#[test]
fn compressed_tar_backups_are_streamed() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, _data, sock, mut server) = running_cluster(&bin, "");
    pgbench_init(&bin, &sock, 1);
    let top = tmp.path();
    for (name, extra) in [
        ("gz", &["-Ft", "-z"][..]),
        ("lz4", &["-Ft", "--compress=lz4"][..]),
        (
            "zst",
            &["-Ft", "--compress=zstd", "--manifest-checksums=SHA256"][..],
        ),
        // -X fetch: the WAL inside base.tar.gz's pg_wal/.
        ("gz-fetch", &["-Ft", "-z", "-X", "fetch"][..]),
    ] {
        base_backup(&bin, &sock, &top.join(name), extra);
    }
    server.stop();

    for name in ["gz", "lz4", "zst", "gz-fetch"] {
        let (code, v) = scan(&top.join(name));
        assert_eq!(code, 0, "{name}: {v}");
        let b = &v["summary"]["backups"][0];
        assert_eq!(b["restorable"], true, "{name}: {b}");
        assert_eq!(b["consistent"], true, "{name}: {b}");
        assert!(
            v["summary"]["units"].as_u64().unwrap() > 1000,
            "{name}: pages verified"
        );
    }
    // The gzip backup extracted: PostgreSQL's verifier agrees it is whole.
    let gz = top.join("gz");
    let x = top.join("gz-extracted");
    fs::create_dir_all(x.join("pg_wal")).unwrap();
    for (archive, into) in [
        ("base.tar.gz", x.clone()),
        ("pg_wal.tar.gz", x.join("pg_wal")),
    ] {
        ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(gz.join(archive))
                .arg("-C")
                .arg(&into)
                .output()
                .unwrap(),
            "tar -xzf",
        );
    }
    fs::copy(gz.join("backup_manifest"), x.join("backup_manifest")).unwrap();
    ok(
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&x)
            .output()
            .unwrap(),
        "chown",
    );
    ok(
        as_postgres(&bin, "pg_verifybackup", &[x.to_str().unwrap()]),
        "pg_verifybackup of the extracted gzip backup",
    );

    // A flipped byte inside the zstd archive: reported on a member, as damage.
    let zst = top.join("zst-flipped");
    copy_tree(top.join("zst").to_str().unwrap(), &zst);
    let archive = zst.join("base.tar.zst");
    let mut b = fs::read(&archive).unwrap();
    let at = b.len() / 3;
    b[at] ^= 0x10;
    fs::write(&archive, b).unwrap();
    let (code, v) = scan(&zst);
    assert_eq!(code & 4, 4, "{v}");
    let on_member = v["findings"].as_array().unwrap().iter().any(|f| {
        f["path"].as_str().unwrap().ends_with("base.tar.zst") && f["owner"]["member"].is_string()
            || f["kind"] == "bad_header"
    });
    assert!(on_member, "{}", v["findings"]);
    assert_eq!(v["summary"]["backups"][0]["restorable"], false);

    // A gzip archive cut in half: gzip itself fails it; dbfsck says where it ends and that the
    // files after it are not checked (not that they are missing).
    let cut = top.join("gz-cut");
    copy_tree(gz.to_str().unwrap(), &cut);
    let archive = cut.join("base.tar.gz");
    let f = fs::OpenOptions::new().write(true).open(&archive).unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    let gzip = Command::new("gzip")
        .arg("-t")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(!gzip.status.success(), "gzip -t accepts the cut archive");
    let (code, v) = scan(&cut);
    assert_eq!(code & 4, 4, "{v}");
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"truncated"), "{kinds:?}");
    assert!(!kinds.contains(&"missing_file"), "{kinds:?}");
    let unchecked = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["message"].as_str().unwrap().contains("not compared"));
    assert!(unchecked, "{}", v["warnings"]);
    assert_eq!(v["summary"]["backups"][0]["restorable"], false);
}
