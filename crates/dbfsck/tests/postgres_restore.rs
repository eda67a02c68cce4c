//! Oracle test of the restore verdict (`--wal-archive`, `summary.restores`) against real archive
//! recoveries by PostgreSQL 15: a pgbench cluster archives its WAL with `archive_command`; its
//! base backups (`-X stream`, `-X none`, `-Ft`) are then restored by a real server from the
//! archive (`restore_command`, `recovery_target` unset) — clean, with a middle segment removed,
//! with a byte flipped in an archived segment, and without the segment a backup starts in — and
//! what dbfsck predicted (the last record replayed, the last commit, whether the server can start)
//! is what the server did ("redo done at", `pg_last_xact_replay_timestamp()`, the rows it
//! returns, or its refusal to start).
//!
//! Needs root, the `postgres` user and PostgreSQL 15 (`common::pg`); skipped where they are
//! missing unless the run must be complete (`CI`), where it fails.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

/// Rows each batch inserts; a WAL switch follows each batch.
const BATCH: u32 = 20_000;
const BATCHES: u32 = 5;

/// What a real archive recovery of a backup did.
#[derive(Debug)]
enum Restored {
    /// It ended and the server opened: "redo done at", the last replayed commit's time (as
    /// dbfsck writes it) and Unix time, and the rows of `t`.
    Opened {
        redo_done: String,
        last_commit: String,
        unix: f64,
        rows: u64,
    },
    /// The server did not start: its log.
    Refused(String),
}

/// Restores a copy of `backup` at `to` from `archive` with a real server (recovery.signal,
/// `restore_command = 'cp ARCHIVE/%f %p'`), waits for recovery to end, reads what it did, and
/// stops it.
fn restore(bin: &Path, backup: &Path, archive: &Path, to: &Path) -> Restored {
    restore_then(bin, backup, archive, to, None)
}

/// [`restore`]; with `fork`, the restored server then archives into `fork` (its new timeline's
/// history file and segments), writes a batch of rows and switches WAL, before it is stopped.
fn restore_then(
    bin: &Path,
    backup: &Path,
    archive: &Path,
    to: &Path,
    fork: Option<&Path>,
) -> Restored {
    copy_tree(backup.to_str().unwrap(), to);
    chown_postgres(to);
    fs::write(to.join("recovery.signal"), "").unwrap();
    let sock = to.parent().unwrap().to_str().unwrap().to_owned();
    let log = to.with_extension("log");
    let data = to.to_str().unwrap().to_owned();
    let archiving = match fork {
        Some(f) => format!(
            "-c archive_mode=on -c archive_command='cp %p {}/%f'",
            f.display()
        ),
        None => "-c archive_mode=off".into(),
    };
    let opts = format!(
        "-k {sock} -c listen_addresses='' {archiving} -c restore_command='cp {}/%f %p'",
        archive.display()
    );
    let started = as_postgres(
        bin,
        "pg_ctl",
        &[
            "-D",
            &data,
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "-t",
            "60",
            "start",
        ],
    );
    let text = || fs::read_to_string(&log).unwrap_or_default();
    if !started.status.success() {
        // A server that exited leaves nothing to stop; one still trying is stopped.
        let _ = as_postgres(bin, "pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        return Restored::Refused(text());
    }
    let mut server = Server {
        bin,
        data: data.clone(),
        running: true,
    };
    // pg_ctl returns once the server accepts (read-only) connections; recovery may go on, and
    // may still stop the server (FATAL on a segment it refuses).
    let mut opened = false;
    for _ in 0..300 {
        let o = as_postgres(
            bin,
            "psql",
            &[
                "-h",
                &sock,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atqc",
                "select pg_is_in_recovery()",
            ],
        );
        if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "f" {
            opened = true;
            break;
        }
        let alive = as_postgres(bin, "pg_ctl", &["-D", &data, "status"])
            .status
            .success();
        if !alive {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !opened {
        let _ = as_postgres(bin, "pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
        server.running = false;
        return Restored::Refused(text());
    }
    if fork.is_some() {
        psql(
            bin,
            &sock,
            &format!(
                "insert into t(id) select nextval('t_id_seq') from generate_series(1, {BATCH})"
            ),
        );
        let last = psql(bin, &sock, "select pg_walfile_name(pg_current_wal_lsn())");
        psql(bin, &sock, "select pg_switch_wal()");
        for _ in 0..300 {
            let done = psql(
                bin,
                &sock,
                "select coalesce(last_archived_wal, '') from pg_stat_archiver",
            );
            if done.as_str() >= last.as_str() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let row = psql(
        bin,
        &sock,
        "select to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), extract(epoch from pg_last_xact_replay_timestamp()), (select count(*) from t)",
    );
    server.stop();
    let log = text();
    let redo_done = log
        .lines()
        .find_map(|l| l.split("redo done at ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no \"redo done at\" in the server's log:\n{log}"))
        .to_owned();
    let mut cols = row.split('|');
    let last_commit = cols.next().unwrap().to_owned();
    let unix = cols.next().unwrap().parse().unwrap();
    let rows = cols.next().unwrap().parse().unwrap();
    Restored::Opened {
        redo_done,
        last_commit,
        unix,
        rows,
    }
}

/// The restore verdict of `backup` in a scan's report.
fn restore_of<'v>(v: &'v Value, backup: &str) -> &'v Value {
    v["summary"]["restores"]
        .as_array()
        .unwrap_or_else(|| panic!("no summary.restores: {}", v["summary"]))
        .iter()
        .find(|r| r["backup"].as_str().is_some_and(|b| b.ends_with(backup)))
        .unwrap_or_else(|| panic!("no restore verdict for {backup}: {}", v["summary"]))
}

/// Asserts that the predicted restore `r` is what the real one did.
fn agrees(r: &Value, real: &Restored, what: &str) {
    let Restored::Opened {
        redo_done,
        last_commit,
        ..
    } = real
    else {
        panic!("{what}: the real restore refused to start, dbfsck predicted {r}: {real:?}");
    };
    assert_eq!(r["consistent"], true, "{what}: {r}");
    assert_eq!(
        r["last_replayed"].as_str(),
        Some(redo_done.as_str()),
        "{what}: the last record replayed ({r})"
    );
    assert_eq!(
        r["reaches_time"].as_str(),
        Some(last_commit.as_str()),
        "{what}: the last commit replayed ({r})"
    );
}

fn rows(real: &Restored) -> u64 {
    match real {
        Restored::Opened { rows, .. } => *rows,
        Restored::Refused(log) => panic!("the restore refused to start: {log}"),
    }
}

/// A copy of the archive at `to`, `change` applied to it.
fn archive_copy(archive: &Path, to: &Path, change: impl FnOnce(&Path)) -> PathBuf {
    copy_tree(archive.to_str().unwrap(), to);
    change(to);
    to.to_path_buf()
}

/// The archive's segment files, in name order.
fn segments(archive: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.len() == 24)
        .collect();
    names.sort();
    names
}

#[test]
fn restore_verdicts_agree_with_real_archive_recovery() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, archive, _cluster, sock, mut server) = archiving_cluster(&bin, "dbfsck-restore-");
    let top = tmp.path();
    pgbench_init(&bin, &sock, 1);
    psql(
        &bin,
        &sock,
        "create table t(id serial primary key, at timestamptz default clock_timestamp())",
    );
    base_backup(&bin, &sock, &top.join("stream"), &[]);
    base_backup(&bin, &sock, &top.join("none"), &["-X", "none"]);
    base_backup(&bin, &sock, &top.join("tar"), &["-Ft"]);
    for _ in 0..BATCHES {
        psql(
            &bin,
            &sock,
            &format!(
                "insert into t(id) select nextval('t_id_seq') from generate_series(1, {BATCH})"
            ),
        );
        psql(&bin, &sock, "select pg_switch_wal()");
    }
    wait_archived(&bin, &sock);
    server.stop();
    let total = u64::from(BATCH * BATCHES);
    let a = archive.to_str().unwrap();

    // Clean: every backup restores to the archive's end, with every row.
    let stream = top.join("stream");
    let (code, v) = dbfsck(&["scan", stream.to_str().unwrap(), "--wal-archive", a]);
    assert_eq!(code, 0, "{v}");
    let r = restore_of(&v, "/stream");
    assert_eq!(r["reaches_archive_end"], true, "{r}");
    assert!(r.get("obstacle").is_none(), "{r}");
    assert_eq!(
        v["summary"]["backups"][0]["restorable"], true,
        "{}",
        v["summary"]
    );
    let real = restore(&bin, &stream, &archive, &top.join("r-clean"));
    agrees(r, &real, "clean archive");
    assert_eq!(rows(&real), total);
    // The horizon for monitoring: the last commit's Unix time.
    let prom = top.join("restore.prom");
    let (code, _) = dbfsck(&[
        "scan",
        stream.to_str().unwrap(),
        "--wal-archive",
        a,
        "--prometheus",
        prom.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let text = fs::read_to_string(&prom).unwrap();
    let horizon: f64 = text
        .lines()
        .find(|l| l.starts_with("dbfsck_backup_restore_horizon_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_else(|| panic!("no horizon metric:\n{text}"))
        .parse()
        .unwrap();
    let Restored::Opened { unix, .. } = real else {
        unreachable!()
    };
    assert!((horizon - unix).abs() < 1e-3, "{horizon} vs {unix}");

    // A backup without its own WAL (-X none) restores from the archive alone.
    let none = top.join("none");
    let (code, v) = dbfsck(&["scan", none.to_str().unwrap(), "--wal-archive", a]);
    assert_eq!(code, 0, "{v}");
    let r = restore_of(&v, "/none");
    assert_eq!(
        v["summary"]["backups"][0]["consistent"], true,
        "{}",
        v["summary"]
    );
    assert_eq!(v["summary"]["backups"][0]["missing_wal_segments"], 0);
    agrees(
        r,
        &restore(&bin, &none, &archive, &top.join("r-none")),
        "-X none",
    );

    // A tar-format backup: the archive says whether its WAL is complete.
    let (_, v) = dbfsck(&[
        "scan",
        top.join("tar").to_str().unwrap(),
        "--wal-archive",
        a,
    ]);
    assert_eq!(
        restore_of(&v, "/tar")["consistent"],
        true,
        "{}",
        v["summary"]
    );
    assert_eq!(
        v["summary"]["backups"][0]["consistent"], true,
        "{}",
        v["summary"]
    );

    // Its own pg_wal.tar, without the archive: it reaches the backup's end; a byte flipped in
    // its first record: it does not, and the damage is named inside the archive.
    let tar = top.join("tar");
    let (code, v) = dbfsck(&["scan", tar.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["summary"]["backups"][0]["consistent"], true,
        "{}",
        v["summary"]
    );
    let tar_flipped = top.join("tar-flipped");
    copy_tree(tar.to_str().unwrap(), &tar_flipped);
    let wal_tar = tar_flipped.join("pg_wal.tar");
    let mut b = fs::read(&wal_tar).unwrap();
    b[512 + 0x40] ^= 0xff;
    fs::write(&wal_tar, b).unwrap();
    let (code, v) = dbfsck(&["scan", tar_flipped.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v}");
    assert_eq!(
        v["summary"]["backups"][0]["consistent"], false,
        "{}",
        v["summary"]
    );
    let bad = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "checksum_mismatch")
        .unwrap_or_else(|| panic!("{}", v["findings"]));
    assert!(
        bad["path"].as_str().unwrap().ends_with("pg_wal.tar"),
        "{bad}"
    );
    assert_eq!(
        bad["owner"]["member"].as_str().map(str::len),
        Some(24),
        "{bad}"
    );

    // The archive alone: each backup its history files name gets a verdict.
    let (code, v) = dbfsck(&["scan", a]);
    assert_eq!(code, 0, "{v}");
    let alone = v["summary"]["restores"].as_array().unwrap();
    assert_eq!(alone.len(), 3, "one per base backup: {alone:?}");
    for r in alone {
        assert!(r["backup"].as_str().unwrap().ends_with(".backup"), "{r}");
        assert_eq!(r["consistent"], true, "{r}");
        assert_eq!(r["reaches_archive_end"], true, "{r}");
    }

    let segs = segments(&archive);
    // A middle segment removed (one of the batches'): the restore stops before it.
    let gone = segs[segs.len() - 3].clone();
    let cut = archive_copy(&archive, &top.join("cut"), |d| {
        fs::remove_file(d.join(&gone)).unwrap()
    });
    let (code, v) = dbfsck(&[
        "scan",
        stream.to_str().unwrap(),
        "--wal-archive",
        cut.to_str().unwrap(),
    ]);
    assert_eq!(code & 4, 4, "the gap is damage: {v}");
    let r = restore_of(&v, "/stream");
    assert_eq!(r["reaches_archive_end"], false, "{r}");
    assert_eq!(r["obstacle"]["reason"], "missing", "{r}");
    assert_eq!(
        r["obstacle"]["segment"].as_str(),
        Some(gone.as_str()),
        "{r}"
    );
    // The human report says it in one line, naming the segment.
    let human = common::bin()
        .args([
            "scan",
            stream.to_str().unwrap(),
            "--wal-archive",
            cut.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("restore stops early:") && l.contains(&gone)),
        "{text}"
    );
    let real = restore(&bin, &stream, &cut, &top.join("r-cut"));
    agrees(r, &real, "a middle segment removed");
    assert!(rows(&real) < total, "{real:?}");

    // A timeline fork: a restore over the cut archive ends at the gap, promotes to timeline 2
    // and, archiving into a copy of that archive, writes more. A later restore of the backup
    // from it follows timeline 2 (recovery_target_timeline = 'latest') to its end, as the
    // real server does.
    let forked = archive_copy(&cut, &top.join("forked"), |_| {});
    chown_postgres(&forked);
    restore_then(&bin, &stream, &cut, &top.join("r-fork"), Some(&forked));
    assert!(
        forked.join("00000002.history").is_file(),
        "the fork archived its history"
    );
    let (code, v) = dbfsck(&[
        "scan",
        stream.to_str().unwrap(),
        "--wal-archive",
        forked.to_str().unwrap(),
    ]);
    let r = restore_of(&v, "/stream");
    assert_eq!(r["timeline"], 2, "{r}");
    assert_eq!(r["reaches_archive_end"], true, "{r}");
    let real = restore(&bin, &stream, &forked, &top.join("r-forked"));
    agrees(r, &real, "the forked archive");
    // Timeline 1's segments after the fork point are not on timeline 2's path: the gap
    // among them is no damage of what a restore reads.
    assert_eq!(code, 0, "{v}");

    // A byte flipped in an archived segment's records: the restore stops at that record.
    let hit = segs[segs.len() - 4].clone();
    let flipped = archive_copy(&archive, &top.join("flipped"), |d| {
        let p = d.join(&hit);
        let mut b = fs::read(&p).unwrap();
        b[0x10000] ^= 0xff;
        fs::write(&p, b).unwrap();
    });
    let (code, v) = dbfsck(&[
        "scan",
        stream.to_str().unwrap(),
        "--wal-archive",
        flipped.to_str().unwrap(),
    ]);
    assert_eq!(code & 4, 4, "{v}");
    let r = restore_of(&v, "/stream");
    assert_eq!(r["obstacle"]["reason"], "damaged", "{r}");
    assert_eq!(r["obstacle"]["segment"].as_str(), Some(hit.as_str()), "{r}");
    let at = r["obstacle"]["offset"].as_u64().unwrap();
    assert!(at <= 0x10000 && 0x10000 - at < 1 << 16, "{r}");
    let real = restore(&bin, &stream, &flipped, &top.join("r-flipped"));
    agrees(r, &real, "a flipped byte");
    assert!(rows(&real) < total, "{real:?}");

    // Regression (review): an archived segment of the wrong size — the empty file a failed
    // archive_command leaves — stops archive recovery with FATAL ("archive file has wrong
    // size"): the restore cannot start; dbfsck says so on the file and in the verdict.
    let empty = archive_copy(&archive, &top.join("empty-seg"), |d| {
        fs::write(d.join(&hit), b"").unwrap();
    });
    let (code, v) = dbfsck(&[
        "scan",
        stream.to_str().unwrap(),
        "--wal-archive",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code & 4, 4, "{v}");
    let r = restore_of(&v, "/stream");
    assert_eq!(r["obstacle"]["reason"], "wrong_size", "{r}");
    assert_eq!(r["consistent"], false, "{r}");
    match restore(&bin, &stream, &empty, &top.join("r-empty")) {
        Restored::Refused(log) => assert!(log.contains("wrong size"), "{log}"),
        opened => {
            panic!("dbfsck said the server stops on the empty segment, it opened: {opened:?}")
        }
    }
    // Regression (review): --wal-archive naming something that is not an archive is an error.
    let (code, v) = dbfsck(&[
        "scan",
        stream.to_str().unwrap(),
        "--wal-archive",
        archive.join(&hit).to_str().unwrap(),
    ]);
    assert_eq!(code & 8, 8, "{v}");

    // The segment the -X none backup starts in removed: it cannot be restored, and the server
    // refuses to start.
    let (_, v) = dbfsck(&["scan", none.to_str().unwrap(), "--wal-archive", a]);
    let start = restore_of(&v, "/none")["start"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = segs
        .iter()
        .find(|s| {
            let (hi, lo) = start.split_once('/').unwrap();
            let lsn =
                (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
            s[16..] == format!("{:08X}", (lsn >> 24) & 0xff)
                && s[8..16] == format!("{:08X}", lsn >> 32)
        })
        .unwrap()
        .clone();
    let headless = archive_copy(&archive, &top.join("headless"), |d| {
        fs::remove_file(d.join(&first)).unwrap()
    });
    let (code, v) = dbfsck(&[
        "scan",
        none.to_str().unwrap(),
        "--wal-archive",
        headless.to_str().unwrap(),
    ]);
    assert_ne!(code & 4, 0, "{v}");
    let r = restore_of(&v, "/none");
    assert_eq!(r["consistent"], false, "{r}");
    assert_eq!(
        r["obstacle"]["segment"].as_str(),
        Some(first.as_str()),
        "{r}"
    );
    assert_eq!(
        v["summary"]["backups"][0]["restorable"], false,
        "{}",
        v["summary"]
    );
    match restore(&bin, &none, &headless, &top.join("r-headless")) {
        Restored::Refused(_) => {}
        opened => panic!("dbfsck said the restore cannot start, the server opened: {opened:?}"),
    }
}
