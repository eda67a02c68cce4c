//! Oracle test of pgBackRest repositories against pgBackRest itself (from apt) and a real
//! PostgreSQL 15: a pgbench cluster archives its WAL with `pgbackrest archive-push` (lz4), takes
//! a full backup (zst; the incremental one after it keeps its compression); dbfsck calls the
//! clean repository clean and both backups restorable to the archive's end, as `pgbackrest
//! verify` finds nothing. On damaged copies — a flipped byte in a compressed data file, a
//! removed archived segment, a truncated backup file, a flipped byte in a compressed archived
//! segment — dbfsck reports each, with the restore verdict it implies; what `pgbackrest verify`
//! says of the same copy is printed beside it (it checks no WAL continuity and, in 2.45, exits 0
//! after reporting errors). The predicted horizon of the full backup over the cut archive is
//! what a real `pgbackrest restore` and archive recovery then reach ("redo done at").
//!
//! Needs root, the `postgres` user, PostgreSQL 15 and pgBackRest (`common::pg`, `scripts/test`
//! installs them); skipped where they are missing unless the run must be complete (`CI`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

fn have_pgbackrest() -> bool {
    let found = Command::new("pgbackrest")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    dbfsck_testkit::can_run(
        "the pgBackRest oracle test",
        if found {
            Ok(())
        } else {
            Err("pgbackrest is not installed".into())
        },
    )
}

/// `pgbackrest` as the postgres user, with the test's configuration and `args`.
fn pgbackrest(conf: &Path, repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "pgbackrest"])
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--repo1-path={}", repo.display()))
        .arg("--stanza=main")
        .args(args)
        .output()
        .unwrap()
}

fn chown(p: &Path) {
    chown_postgres(p);
}

/// `pgbackrest verify` of `repo`: its exit code and what it printed.
fn verify(conf: &Path, repo: &Path) -> (i32, String) {
    let o = pgbackrest(conf, repo, &["--log-level-console=info", "verify"]);
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The backups' directories, oldest first.
fn backups(repo: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo.join("backup/main"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("backup.manifest").is_file() && !p.is_symlink())
        .collect();
    v.sort();
    v
}

fn verdict<'v>(v: &'v Value, list: &str, key: &str, backup: &Path) -> &'v Value {
    let name = backup.file_name().unwrap().to_str().unwrap();
    v["summary"][list]
        .as_array()
        .unwrap_or_else(|| panic!("no summary.{list}: {}", v["summary"]))
        .iter()
        .find(|b| b[key].as_str().is_some_and(|p| p.ends_with(name)))
        .unwrap_or_else(|| panic!("no {list} entry for {name}: {}", v["summary"]))
}

/// The findings whose path ends with `suffix`: their kinds.
fn kinds_at(v: &Value, suffix: &str) -> Vec<String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"].as_str().is_some_and(|p| p.ends_with(suffix)))
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn copy_repo(repo: &Path, to: &Path) -> PathBuf {
    copy_tree(repo.to_str().unwrap(), to);
    chown(to);
    to.to_path_buf()
}

fn flip(p: &Path, at: usize) {
    let mut b = fs::read(p).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x01;
    fs::write(p, b).unwrap();
}

/// The largest file under `dir` whose name ends with `ext`.
fn largest(dir: &Path, ext: &str) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if p.to_str().unwrap().ends_with(ext) {
                let n = e.metadata().unwrap().len();
                if best.as_ref().is_none_or(|(m, _)| n > *m) {
                    best = Some((n, p));
                }
            }
        }
    }
    best.unwrap().1
}

/// The archived segments, by name order.
fn archived(repo: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in fs::read_dir(repo.join("archive/main/15-1")).unwrap() {
        let d = d.unwrap().path();
        if d.is_dir() {
            for f in fs::read_dir(&d).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "lz4") {
                    v.push(f);
                }
            }
        }
    }
    v.sort();
    v
}

#[test]
fn pgbackrest_repositories_clean_and_damaged() {
    let Some(bin) = prerequisites() else { return };
    if !have_pgbackrest() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("dbfsck-pgbr-")
        .tempdir_in("/tmp")
        .unwrap();
    let top = tmp.path();
    let repo = top.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let conf = top.join("pgbackrest.conf");
    let (cluster, data, sock) = new_cluster(&bin);
    fs::write(
        &conf,
        format!(
            "[global]\ncompress-type=lz4\nstart-fast=y\nlog-path={t}/pgbr-log\nlock-path={t}/lock\nspool-path={t}/spool\nlog-level-console=warn\nrepo1-retention-full=9\n[main]\npg1-path={data}\npg1-socket-path={sock}\n",
            t = top.display()
        ),
    )
    .unwrap();
    chown(top);
    let archive_command = format!(
        "pgbackrest --config={} --repo1-path={} --stanza=main archive-push %p",
        conf.display(),
        repo.display()
    );
    start_cluster(
        &bin,
        &data,
        &sock,
        &format!("-c archive_mode=on -c archive_command='{archive_command}'"),
    );
    let mut server = Server {
        bin: &bin,
        data: data.clone(),
        running: true,
    };
    pgbench_init(&bin, &sock, 2);
    psql(&bin, &sock, "create table t(id serial primary key)");
    ok(
        pgbackrest(&conf, &repo, &["stanza-create"]),
        "stanza-create",
    );
    ok(
        pgbackrest(
            &conf,
            &repo,
            &["--type=full", "--compress-type=zst", "backup"],
        ),
        "full backup",
    );
    let batch = || {
        psql(
            &bin,
            &sock,
            "insert into t(id) select nextval('t_id_seq') from generate_series(1, 20000)",
        );
        psql(&bin, &sock, "select pg_switch_wal()");
    };
    for _ in 0..3 {
        batch();
    }
    ok(
        pgbackrest(&conf, &repo, &["--type=incr", "backup"]),
        "incremental backup",
    );
    batch();
    // A second full backup, gzip-compressed (pgBackRest's default).
    ok(
        pgbackrest(
            &conf,
            &repo,
            &["--type=full", "--compress-type=gz", "backup"],
        ),
        "full gz backup",
    );
    batch();
    // Every switched segment archived before the server stops.
    wait_archived(&bin, &sock);
    server.stop();
    let [full, incr, full_gz] = <[PathBuf; 3]>::try_from(backups(&repo)).unwrap();

    // Clean: every backup restorable to the archive's end; pgBackRest agrees.
    let (code, v) = dbfsck(&["scan", repo.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    let gz_files = fs::read_dir(full_gz.join("pg_data/base/1"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "gz")
        })
        .count();
    assert!(gz_files > 100, "the second full backup is gzip-compressed");
    for b in [&full, &incr, &full_gz] {
        assert_eq!(
            verdict(&v, "backups", "path", b)["restorable"],
            true,
            "{}",
            v["summary"]
        );
        let r = verdict(&v, "restores", "backup", b);
        assert_eq!(r["consistent"], true, "{r}");
        assert_eq!(r["reaches_archive_end"], true, "{r}");
    }
    let clean_end = verdict(&v, "restores", "backup", &full)["last_replayed"].clone();
    let (vcode, vout) = verify(&conf, &repo);
    assert_eq!(
        vcode, 0,
        "pgbackrest verify of the clean repository: {vout}"
    );
    assert!(!vout.contains("invalid"), "{vout}");

    // A flipped byte in the full backup's largest (zst) data file.
    let bad = copy_repo(&repo, &top.join("flipped-data"));
    let rel = largest(
        &bad.join("backup/main").join(full.file_name().unwrap()),
        ".zst",
    );
    flip(&rel, fs::metadata(&rel).unwrap().len() as usize / 2);
    let (code, v) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_ne!(code & 4, 0, "{v}");
    let name = rel.strip_prefix(&bad).unwrap().to_str().unwrap().to_owned();
    let kinds = kinds_at(&v, &name);
    assert!(
        kinds.contains(&"checksum_mismatch".to_owned()),
        "{name}: {kinds:?}"
    );
    assert_eq!(verdict(&v, "backups", "path", &full)["restorable"], false);
    // Regression (review): a file both backups need is read once, its findings not doubled.
    let mut places: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{} {} {}", f["path"], f["offset"], f["kind"]))
        .collect();
    let n = places.len();
    places.sort();
    places.dedup();
    assert_eq!(places.len(), n, "{}", v["findings"]);
    let (vcode, vout) = verify(&conf, &bad);
    eprintln!(
        "pgbackrest verify, flipped data byte: exit {vcode}, reports it: {}",
        vout.contains("invalid")
    );

    // A removed archived segment between the two backups: the full backup's restore stops
    // there; the incremental one, taken after it, is untouched.
    let segs = archived(&repo);
    let incr_start = verdict(&v, "restores", "backup", &incr)["start"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad = copy_repo(&repo, &top.join("cut"));
    // The first segment after the full backup's end, before the incremental one's start.
    let seg_of = |lsn: &str| {
        let (hi, lo) = lsn.split_once('/').unwrap();
        let lsn =
            (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
        format!("00000001{:08X}{:08X}", lsn >> 32, (lsn >> 24) & 0xff)
    };
    let full_end = seg_of(
        verdict(&v, "restores", "backup", &full)["backup_end"]
            .as_str()
            .unwrap(),
    );
    let incr_first = seg_of(&incr_start);
    let gone = segs
        .iter()
        .map(|p| p.strip_prefix(&repo).unwrap().to_path_buf())
        .find(|p| {
            let n = &p.file_name().unwrap().to_str().unwrap()[..24];
            n > full_end.as_str() && n < incr_first.as_str()
        })
        .expect("a segment between the two backups");
    fs::remove_file(bad.join(&gone)).unwrap();
    let gone_name = gone.file_name().unwrap().to_str().unwrap()[..24].to_owned();
    let (code, v) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_ne!(code & 4, 0, "{v}");
    let r = verdict(&v, "restores", "backup", &full);
    assert_eq!(r["obstacle"]["reason"], "missing", "{r}");
    assert_eq!(
        r["obstacle"]["segment"].as_str(),
        Some(gone_name.as_str()),
        "{r}"
    );
    assert_eq!(
        r["consistent"], true,
        "the gap lies after the full backup's end: {r}"
    );
    let ri = verdict(&v, "restores", "backup", &incr);
    assert_eq!(ri["start"].as_str(), Some(incr_start.as_str()));
    assert_eq!(ri["reaches_archive_end"], true, "{ri}");
    assert_ne!(r["last_replayed"], clean_end);
    let (vcode, vout) = verify(&conf, &bad);
    eprintln!(
        "pgbackrest verify, removed segment {gone_name}: exit {vcode}, names it: {}",
        vout.contains(&gone_name)
    );
    // The real restore of the full backup from the cut repository ends where predicted.
    let target = top.join("restored");
    fs::create_dir(&target).unwrap();
    chown(&target);
    ok(
        pgbackrest(
            &conf,
            &bad,
            &[
                &format!("--pg1-path={}", target.display()),
                &format!("--set={}", full.file_name().unwrap().to_str().unwrap()),
                "restore",
            ],
        ),
        "pgbackrest restore",
    );
    let tsock = top.to_str().unwrap().to_owned();
    start_cluster(
        &bin,
        target.to_str().unwrap(),
        &tsock,
        "-c archive_mode=off -p 5499",
    );
    let mut restored = Server {
        bin: &bin,
        data: target.to_str().unwrap().to_owned(),
        running: true,
    };
    let redo_done = redo_done(&top.join("log"));
    restored.stop();
    assert_eq!(r["last_replayed"].as_str(), Some(redo_done.as_str()), "{r}");

    // Regression (review): the incremental backup's last segment never archived. Nothing in
    // the archive is damaged, but the backup cannot be restored: that is damage (exit 4).
    let bad = copy_repo(&repo, &top.join("no-stop"));
    let incr_end = seg_of(
        verdict(&v, "restores", "backup", &incr)["backup_end"]
            .as_str()
            .unwrap(),
    );
    for p in archived(&bad) {
        let n = p.file_name().unwrap().to_str().unwrap()[..24].to_owned();
        if n.as_str() >= incr_end.as_str() {
            fs::remove_file(p).unwrap();
        }
    }
    let (code, v2) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v2}");
    assert_eq!(
        verdict(&v2, "backups", "path", &incr)["restorable"],
        false,
        "{}",
        v2["summary"]
    );
    assert_eq!(
        verdict(&v2, "backups", "path", &full)["restorable"],
        true,
        "{}",
        v2["summary"]
    );

    // Regression (review): a file of the full backup that the incremental one references is
    // lost: neither backup can be restored.
    let bad = copy_repo(&repo, &top.join("lost-ref"));
    let manifest = fs::read_to_string(incr.join("backup.manifest")).unwrap();
    let referenced = manifest
        .lines()
        .find(|l| l.starts_with("pg_data/base/") && l.contains("\"reference\""))
        .and_then(|l| l.split('=').next())
        .expect("a referenced file")
        .to_owned();
    let stored = bad
        .join("backup/main")
        .join(full.file_name().unwrap())
        .join(format!("{referenced}.zst"));
    fs::remove_file(&stored).unwrap();
    let (code, v2) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v2}");
    for b in [&full, &incr] {
        assert_eq!(
            verdict(&v2, "backups", "path", b)["restorable"],
            false,
            "{}",
            v2["summary"]
        );
    }

    // A truncated file of the incremental backup.
    let bad = copy_repo(&repo, &top.join("truncated"));
    let cut = largest(
        &bad.join("backup/main").join(incr.file_name().unwrap()),
        ".zst",
    );
    let f = fs::OpenOptions::new().write(true).open(&cut).unwrap();
    f.set_len(f.metadata().unwrap().len() / 2).unwrap();
    let (code, v) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_ne!(code & 4, 0, "{v}");
    let name = cut.strip_prefix(&bad).unwrap().to_str().unwrap().to_owned();
    assert!(!kinds_at(&v, &name).is_empty(), "{name}: {}", v["findings"]);
    assert_eq!(verdict(&v, "backups", "path", &incr)["restorable"], false);
    assert_eq!(verdict(&v, "backups", "path", &full)["restorable"], true);
    let (vcode, vout) = verify(&conf, &bad);
    eprintln!(
        "pgbackrest verify, truncated backup file: exit {vcode}, reports it: {}",
        vout.contains("invalid")
    );

    // A flipped byte in a compressed archived segment after the incremental backup.
    let bad = copy_repo(&repo, &top.join("flipped-wal"));
    let seg = bad.join(segs.last().unwrap().strip_prefix(&repo).unwrap());
    flip(&seg, 200);
    let (code, v) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_ne!(code & 4, 0, "{v}");
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        kinds_at(&v, &name).contains(&"checksum_mismatch".to_owned()),
        "{}",
        v["findings"]
    );
    let ri = verdict(&v, "restores", "backup", &incr);
    assert_eq!(ri["reaches_archive_end"], false, "{ri}");
    let (vcode, vout) = verify(&conf, &bad);
    eprintln!(
        "pgbackrest verify, flipped WAL byte: exit {vcode}, reports it: {}",
        vout.contains("invalid")
    );
    drop(cluster);
}
