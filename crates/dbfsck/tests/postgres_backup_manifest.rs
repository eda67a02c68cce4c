//! Oracle test of the backup-manifest check against PostgreSQL 15's own `pg_verifybackup`: real
//! `pg_basebackup` backups of a pgbench cluster (the default CRC32C manifest and
//! `--manifest-checksums=SHA256`) verify clean with both tools; copies damaged the ways backups
//! are damaged (a flipped byte in a data file, a file missing, an extra file, a truncated file,
//! an edited manifest) make both fail, on the same files — and dbfsck alone also names the
//! damaged page where the flipped byte lies.
//!
//! Needs root, the `postgres` user and PostgreSQL 15 (`common::pg`); skipped where they are
//! missing unless the run must be complete (`CI`), where it fails.

use std::fs;
use std::path::Path;

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

/// `pg_verifybackup -n` (WAL parsing is not what is compared here): its exit code and stderr.
fn verifybackup(bin: &Path, backup: &Path) -> (i32, String) {
    let o = as_postgres(bin, "pg_verifybackup", &["-n", backup.to_str().unwrap()]);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The (kind, path relative to `backup`) of each finding.
fn findings(v: &Value, backup: &Path) -> Vec<(String, String)> {
    let prefix = format!("{}/", backup.display());
    let mut out: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            (
                f["kind"].as_str().unwrap().to_owned(),
                p.strip_prefix(&prefix).unwrap_or(p).to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn base_backups_agree_with_pg_verifybackup_clean_and_damaged() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, _data, sock, mut server) = running_cluster(&bin, "");
    pgbench_init(&bin, &sock, 2);
    let top = tmp.path();
    for (name, extra) in [
        ("crc", &[][..]),
        ("sha256", &["--manifest-checksums=SHA256"][..]),
    ] {
        base_backup(&bin, &sock, &top.join(format!("backup-{name}")), extra);
    }
    server.stop();

    for name in ["crc", "sha256"] {
        let backup = top.join(format!("backup-{name}"));
        let (rc, err) = verifybackup(&bin, &backup);
        assert_eq!(rc, 0, "pg_verifybackup on the clean {name} backup: {err}");
        let (code, v) = dbfsck(&["scan", backup.to_str().unwrap()]);
        assert_eq!(code, 0, "clean {name} backup: {v:#}");

        // The pgbench_accounts heap: the largest file under base/.
        let heap = largest_under(&backup.join("base"));
        let heap_rel = heap
            .strip_prefix(&backup)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();

        // A flipped byte in the middle of a data page: the manifest checksum and the page checksum
        // both catch it.
        let copy = top.join(format!("flip-{name}"));
        copy_tree(backup.to_str().unwrap(), &copy);
        let target = copy.join(&heap_rel);
        let mut bytes = fs::read(&target).unwrap();
        bytes[3 * 8192 + 4000] ^= 0x10;
        fs::write(&target, &bytes).unwrap();
        let (rc, err) = verifybackup(&bin, &copy);
        assert_eq!(rc, 1);
        assert!(
            err.contains(&format!("checksum mismatch for file \"{heap_rel}\"")),
            "{err}"
        );
        let (code, v) = dbfsck(&["scan", copy.to_str().unwrap()]);
        assert_eq!(code & 4, 4, "{v:#}");
        assert_eq!(
            findings(&v, &copy),
            vec![
                ("checksum_mismatch".to_owned(), heap_rel.clone()),
                ("checksum_mismatch".to_owned(), heap_rel.clone()),
            ],
            "{v:#}"
        );
        let by_manifest = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["owner"]["entry"] == heap_rel.as_str())
            .expect("the manifest's finding");
        let alg = if name == "crc" { "CRC32C" } else { "SHA256" };
        assert_eq!(by_manifest["owner"]["algorithm"], alg);
        assert!(v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["unit"] == 3 && f["owner"]["block"] == 3));

        // A file missing, an extra file, a truncated file: each reported by both, by name.
        let copy = top.join(format!("files-{name}"));
        copy_tree(backup.to_str().unwrap(), &copy);
        fs::remove_file(copy.join("pg_hba.conf")).unwrap();
        fs::write(copy.join("global").join("stray"), b"not a relation").unwrap();
        let f = fs::OpenOptions::new()
            .write(true)
            .open(copy.join("pg_ident.conf"))
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 5).unwrap();
        let (rc, err) = verifybackup(&bin, &copy);
        assert_eq!(rc, 1);
        for want in [
            "\"pg_hba.conf\" is present in the manifest but not on disk",
            "\"global/stray\" is present on disk but not in the manifest",
            "\"pg_ident.conf\" has size",
        ] {
            assert!(err.contains(want), "pg_verifybackup: {want}: {err}");
        }
        let (code, v) = dbfsck(&["scan", copy.to_str().unwrap()]);
        assert_eq!(code & 4, 4, "{v:#}");
        assert_eq!(
            findings(&v, &copy),
            vec![
                ("missing_file".to_owned(), "pg_hba.conf".to_owned()),
                ("size_mismatch".to_owned(), "pg_ident.conf".to_owned()),
                ("unexpected_file".to_owned(), "global/stray".to_owned()),
            ],
            "{v:#}"
        );

        // An edited manifest: its own checksum fails, for both.
        let copy = top.join(format!("manifest-{name}"));
        copy_tree(backup.to_str().unwrap(), &copy);
        let m = copy.join("backup_manifest");
        let text = fs::read_to_string(&m).unwrap();
        let edited = text.replacen("\"Size\": 3,", "\"Size\": 4,", 1);
        assert_ne!(edited, text, "PG_VERSION's entry");
        fs::write(&m, edited).unwrap();
        let (rc, err) = verifybackup(&bin, &copy);
        assert_eq!(rc, 1);
        assert!(err.contains("manifest checksum mismatch"), "{err}");
        let (code, v) = dbfsck(&["scan", copy.to_str().unwrap()]);
        assert_eq!(code & 4, 4, "{v:#}");
        assert_eq!(
            findings(&v, &copy),
            vec![
                ("checksum_mismatch".to_owned(), "backup_manifest".to_owned()),
                ("size_mismatch".to_owned(), "PG_VERSION".to_owned()),
            ],
            "{v:#}"
        );
    }
}

/// The largest regular file under `dir`.
fn largest_under(dir: &Path) -> std::path::PathBuf {
    let mut best = (0, dir.to_path_buf());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.len() > best.0 {
                best = (m.len(), e.path());
            }
        }
    }
    best.1
}

/// The WAL a backup needs (its manifest's `WAL-Ranges`), against the real server: the clean
/// backup is consistent and the server starts from a copy of it; with its WAL removed every
/// needed segment is `missing_file` (pg_verifybackup fails too); with the WAL cut before the
/// backup's end, dbfsck says the backup never becomes consistent — and the server, started on
/// that copy, refuses ("WAL ends before end of online backup").
#[test]
fn the_wal_a_backup_needs_agrees_with_the_server() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, _data, sock, mut server) = running_cluster(&bin, "");
    pgbench_init(&bin, &sock, 1);
    let top = tmp.path();
    let backup = top.join("backup");
    base_backup(&bin, &sock, &backup, &[]);
    server.stop();
    let verdict = |v: &Value| v["summary"]["recovery"][0].clone();

    // Clean: consistent, and the server starts from a copy of it.
    let (code, v) = dbfsck(&["scan", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(verdict(&v)["consistent"], true, "{v:#}");
    let backup_verdict = |v: &Value| v["summary"]["backups"][0].clone();
    assert_eq!(backup_verdict(&v)["restorable"], true, "{v:#}");
    assert_eq!(backup_verdict(&v)["backup_end"], verdict(&v)["backup_end"]);
    let end = verdict(&v)["backup_end"].as_str().unwrap().to_owned();
    let start = verdict(&v)["start"].as_str().unwrap().to_owned();
    let copy = top.join("restored");
    copy_tree(backup.to_str().unwrap(), &copy);
    let log = starts(&bin, &copy, top);
    assert!(
        log.contains(&format!("consistent recovery state reached at {end}")),
        "{log}"
    );

    // The WAL removed: every segment the ranges need is missing, for pg_verifybackup too.
    let copy = top.join("nowal");
    copy_tree(backup.to_str().unwrap(), &copy);
    let mut removed = Vec::new();
    for e in fs::read_dir(copy.join("pg_wal")).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            removed.push(format!("pg_wal/{}", e.file_name().to_str().unwrap()));
            fs::remove_file(e.path()).unwrap();
        }
    }
    removed.sort();
    let o = as_postgres(&bin, "pg_verifybackup", &[copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("WAL parsing failed"));
    let (code, v) = dbfsck(&["scan", copy.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v:#}");
    let missing: Vec<String> = findings(&v, &copy)
        .into_iter()
        .filter(|(k, _)| k == "missing_file")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(missing, removed, "{v:#}");
    assert_eq!(
        backup_verdict(&v)["missing_wal_segments"],
        removed.len() as u64
    );
    assert_eq!(backup_verdict(&v)["restorable"], false);

    // The WAL cut just before the backup's end (its BACKUP_END record zeroed and all after it).
    let copy = top.join("cut");
    copy_tree(backup.to_str().unwrap(), &copy);
    let end_lsn = parse_lsn(&end);
    // The BACKUP_END record, as pg_waldump shows it.
    let dump = ok(
        as_postgres(
            &bin,
            "pg_waldump",
            &[
                "-p",
                copy.join("pg_wal").to_str().unwrap(),
                "-s",
                &start,
                "-e",
                &end,
                "-r",
                "XLOG",
            ],
        ),
        "pg_waldump",
    );
    let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
    let line = dump
        .lines()
        .find(|l| l.contains("BACKUP_END"))
        .unwrap_or_else(|| panic!("{dump}"));
    let backup_end_record = parse_lsn(
        line.split("lsn: ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap(),
    );
    assert!(backup_end_record < end_lsn);
    let seg = 16u64 << 20;
    let name = format!(
        "00000001{:08X}{:08X}",
        (end_lsn - 1) / seg / 256,
        (end_lsn - 1) / seg % 256
    );
    let path = copy.join("pg_wal").join(name);
    let mut bytes = fs::read(&path).unwrap();
    let from = (backup_end_record % seg) as usize;
    bytes[from..].fill(0);
    fs::write(&path, &bytes).unwrap();
    let (code, v) = dbfsck(&["scan", copy.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v:#}");
    assert_eq!(verdict(&v)["consistent"], false, "{v:#}");
    assert_eq!(backup_verdict(&v)["consistent"], false, "{v:#}");
    assert_eq!(backup_verdict(&v)["restorable"], false, "{v:#}");
    // The metric a nightly alert reads.
    let prom = top.join("cut.prom");
    common::bin()
        .args([
            "scan",
            "--quiet",
            "--prometheus",
            prom.to_str().unwrap(),
            copy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let metrics = fs::read_to_string(&prom).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dbfsck_backup_restorable{") && l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["kind"] == "truncated"));
    let human = common::bin()
        .args(["scan", copy.to_str().unwrap()])
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(human.contains("backup cannot be restored:"), "{human}");
    let log = starts(&bin, &copy, top);
    assert!(
        log.contains("WAL ends before end of online backup"),
        "{log}"
    );
}

/// Starts a server on `dir` (a backup copy) and stops it: its log, which says how recovery went.
fn starts(bin: &Path, dir: &Path, top: &Path) -> String {
    let log = dir.with_extension("log");
    let sock = top.to_str().unwrap();
    let opts = format!("-k {sock} -c listen_addresses='' -c port=5499");
    let o = as_postgres(
        bin,
        "pg_ctl",
        &[
            "-D",
            dir.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ],
    );
    if o.status.success() {
        let mut s = Server {
            bin,
            data: dir.to_str().unwrap().to_owned(),
            running: true,
        };
        s.stop();
    }
    fs::read_to_string(&log).unwrap_or_default()
}

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.trim().split_once('/').unwrap();
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

/// A tar-format backup (`pg_basebackup -Ft`) against its manifest, member by member, without
/// extracting it (PostgreSQL 15's pg_verifybackup cannot read one): clean, then a flipped byte
/// in a member no page check covers (`pg_hba.conf`) — found at the member's offset in
/// `base.tar`, and the same file `pg_verifybackup` fails once the archive is extracted.
#[test]
fn tar_backups_are_checked_against_their_manifest_in_place() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, _data, sock, mut server) = running_cluster(&bin, "");
    let top = tmp.path();
    let backup = top.join("tar");
    base_backup(&bin, &sock, &backup, &["-Ft"]);
    server.stop();
    let (code, v) = dbfsck(&["scan", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "{v:#}");

    // Where pg_hba.conf's bytes are in base.tar, by GNU tar's own listing (block numbers).
    let base = backup.join("base.tar");
    let o = ok(
        std::process::Command::new("tar")
            .args(["-tvRf", base.to_str().unwrap(), "pg_hba.conf"])
            .output()
            .unwrap(),
        "tar -tvR",
    );
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    let block: u64 = listing
        .split("block ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{listing}"));
    let data_at = (block + 1) * 512;
    let mut bytes = fs::read(&base).unwrap();
    bytes[data_at as usize + 10] ^= 0x01;
    fs::write(&base, &bytes).unwrap();

    let (code, v) = dbfsck(&["scan", backup.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v:#}");
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["kind"], "checksum_mismatch");
    assert_eq!(f[0]["offset"], data_at);
    assert_eq!(f[0]["owner"]["member"], "pg_hba.conf");
    assert_eq!(f[0]["owner"]["entry"], "pg_hba.conf");

    // The oracle: the archive extracted, pg_verifybackup names the same file.
    let out = top.join("extracted");
    fs::create_dir(&out).unwrap();
    ok(
        std::process::Command::new("tar")
            .args(["-xf", base.to_str().unwrap(), "-C", out.to_str().unwrap()])
            .output()
            .unwrap(),
        "tar -x",
    );
    fs::copy(backup.join("backup_manifest"), out.join("backup_manifest")).unwrap();
    ok(
        std::process::Command::new("chown")
            .args(["-R", "postgres", out.to_str().unwrap()])
            .output()
            .unwrap(),
        "chown",
    );
    let (rc, err) = verifybackup(&bin, &out);
    assert_eq!(rc, 1);
    assert!(
        err.contains("checksum mismatch for file \"pg_hba.conf\""),
        "{err}"
    );
}
