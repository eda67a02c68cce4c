//! Oracle test of the WAL verifier against PostgreSQL 15 itself: a pgbench cluster (WAL with and
//! without `wal_compression`) is crashed (`pg_ctl stop -m immediate` after the load), and copies
//! of it are damaged the ways a power cut or a bad disk damages WAL. On each copy dbfsck's verdict
//! must agree with `pg_waldump` (the record it stops at) and with the server's own crash recovery
//! ("redo done at", the rows it then returns) — and only dbfsck says whether commits follow.
//!
//! Needs root, the `postgres` user and PostgreSQL 15 (`common::pg`); skipped where they are
//! missing unless the run must be complete (`CI`), where it fails.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

const SEG: u64 = 16 << 20;

/// A way to damage the WAL directory of a copy.
type Damage = Box<dyn Fn(&Path)>;

fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.trim().split_once('/').unwrap();
    u64::from_str_radix(hi, 16).unwrap() << 32 | u64::from_str_radix(lo, 16).unwrap()
}

fn lsn(l: u64) -> String {
    format!("{:X}/{:X}", l >> 32, l & 0xFFFF_FFFF)
}

/// The segment file holding `l` on timeline 1, and the offset in it.
fn at(wal: &Path, l: u64) -> (std::path::PathBuf, u64) {
    let segno = l / SEG;
    (
        wal.join(format!("00000001{:08X}{:08X}", segno / 256, segno % 256)),
        l % SEG,
    )
}

fn controldata(bin: &Path, data: &str, field: &str) -> String {
    let o = ok(
        as_postgres(bin, "pg_controldata", &[data]),
        "pg_controldata",
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in pg_controldata"))
        .trim_start_matches(':')
        .trim()
        .to_owned()
}

/// `pg_waldump -p WAL -s START`: the last good record it names ("error in WAL record at A:"),
/// and the message after it.
fn waldump_stop(bin: &Path, wal: &Path, start: &str) -> (Option<String>, String) {
    let o = as_postgres(
        bin,
        "pg_waldump",
        &["-q", "-p", wal.to_str().unwrap(), "-s", start],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let last = err
        .split("error in WAL record at ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .map(str::to_owned);
    (last, err)
}

/// The first record at or after `l`, as pg_waldump finds it: (its LSN, its length).
fn record_after(bin: &Path, wal: &Path, l: u64) -> (u64, u64) {
    let o = as_postgres(
        bin,
        "pg_waldump",
        &["-p", wal.to_str().unwrap(), "-s", &lsn(l), "-n", "50"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    // rmgr: Heap2 len (rec/tot): 59/ 59, tx: 0, lsn: 0/0503A1B8, prev 0/0503A180, desc: ...
    for line in out.lines() {
        let (Some(len), Some(l)) = (
            line.split("len (rec/tot):")
                .nth(1)
                .and_then(|r| r.split('/').nth(1)),
            line.split("lsn: ").nth(1).and_then(|r| r.split(',').next()),
        ) else {
            continue;
        };
        let len: u64 = len.split(',').next().unwrap().trim().parse().unwrap();
        let l = parse_lsn(l);
        // One whose header lies on one page, so a byte of it can be changed in place.
        if l % 8192 + 24 <= 8192 && len >= 24 {
            return (l, len);
        }
    }
    panic!("no record after {}: {out}", lsn(l));
}

fn patch_at(path: &Path, offset: u64, f: impl FnOnce(&mut [u8])) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = vec![0u8; 8];
    file.read_exact_at(&mut b, offset).unwrap();
    f(&mut b);
    file.write_all_at(&b, offset).unwrap();
}

fn verdict(v: &Value) -> &Value {
    let r = v["summary"]["recovery"]
        .as_array()
        .expect("a recovery verdict");
    assert_eq!(r.len(), 1, "{v}");
    &r[0]
}

/// Starts the server on a copy, lets crash recovery run, returns (its "redo done at" LSN, the
/// count of `sql`), and stops it.
fn recover(bin: &Path, data: &Path, sock: &str, sql: &str) -> (Option<String>, String) {
    let d = data.to_str().unwrap().to_owned();
    let mut server = Server {
        bin,
        data: d.clone(),
        running: false,
    };
    let log = format!("{d}.log");
    let opts = format!("-k {sock} -c listen_addresses='' -c port=5499");
    ok(
        as_postgres(
            bin,
            "pg_ctl",
            &["-D", &d, "-o", &opts, "-l", &log, "-w", "start"],
        ),
        "pg_ctl start on the damaged copy",
    );
    server.running = true;
    let o = ok(
        as_postgres(
            bin,
            "psql",
            &[
                "-h", sock, "-p", "5499", "-U", "postgres", "-d", "postgres", "-Atq", "-c", sql,
            ],
        ),
        sql,
    );
    let rows = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    server.stop();
    let log = fs::read_to_string(&log).unwrap();
    let redo_done = log
        .split("redo done at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_owned);
    (redo_done, rows)
}

#[test]
fn wal_verdicts_match_pg_waldump_and_crash_recovery() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, data, sock) = new_cluster(&bin);
    let mut server = Server {
        bin: &bin,
        data: data.clone(),
        running: false,
    };
    start_cluster(
        &bin,
        &data,
        &sock,
        "-c max_wal_size=1GB -c wal_compression=lz4",
    );
    server.running = true;
    let pgbench = |args: &[&str]| {
        let mut a = vec!["-h", sock.as_str(), "-U", "postgres"];
        a.extend_from_slice(args);
        a.push("postgres");
        ok(as_postgres(&bin, "pgbench", &a), "pgbench");
    };
    pgbench(&["-i", "-s", "4", "-q"]);
    // The load after the checkpoint is written without compression.
    psql(&bin, &sock, "ALTER SYSTEM SET wal_compression = off");
    psql(&bin, &sock, "SELECT pg_reload_conf()");
    psql(&bin, &sock, "CHECKPOINT");
    // A fixed amount of WAL after the checkpoint (several segments, whatever the machine's
    // speed), then commits after it.
    psql(
        &bin,
        &sock,
        "CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 600000) g",
    );
    pgbench(&["-t", "1500", "-c", "2", "-n"]);
    psql(
        &bin,
        &sock,
        "CREATE TABLE later AS SELECT generate_series(1, 5000) AS n",
    );
    let all = psql(&bin, &sock, "SELECT count(*) FROM pgbench_history");
    // The crash.
    ok(
        as_postgres(
            &bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        ),
        "pg_ctl stop -m immediate",
    );
    server.running = false;
    let top = tmp.path();
    let redo = controldata(&bin, &data, "Latest checkpoint's REDO location");

    // The crash copy itself: clean, recovery reaches the end, where pg_waldump stops too.
    let wal = Path::new(&data).join("pg_wal");
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code, 0, "{v}");
    let r = verdict(&v);
    assert_eq!(r["reaches_end"], true, "{r}");
    assert_eq!(r["start"], redo, "{r}");
    let (last, err) = waldump_stop(&bin, &wal, &redo);
    assert_eq!(r["last_replayed"].as_str(), last.as_deref(), "{r}\n{err}");
    assert!(
        err.contains(&format!(
            "invalid record length at {}",
            r["stops_at"].as_str().unwrap()
        )),
        "{r}\n{err}"
    );
    let end_record = parse_lsn(last.as_deref().unwrap());

    // Every record pg_waldump decodes from the first segment on is verified.
    let first_seg = fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.len() == 24)
        .min()
        .unwrap();
    let first = u64::from_str_radix(&first_seg[16..], 16).unwrap() * SEG;
    let o = as_postgres(
        &bin,
        "pg_waldump",
        &["--stats", "-p", wal.to_str().unwrap(), "-s", &lsn(first)],
    );
    let stats = String::from_utf8_lossy(&o.stdout);
    let total: u64 = stats
        .lines()
        .find(|l| l.starts_with("Total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    let (code, v) = dbfsck(&["scan", wal.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["summary"]["units"].as_u64(),
        Some(total),
        "records verified vs pg_waldump --stats"
    );

    // A record in a completed segment after the redo point (recovery reads it), before the last.
    let redo_l = parse_lsn(&redo);
    let mid_seg = redo_l / SEG + 1;
    assert!(
        mid_seg < end_record / SEG,
        "the WAL after the checkpoint spans too few segments"
    );
    let (victim, victim_len) = record_after(&bin, &wal, mid_seg * SEG + 0x3000);
    let cases: Vec<(&str, Damage)> = vec![
        (
            "flipped byte",
            Box::new(move |w: &Path| {
                let (f, off) = at(w, victim);
                patch_at(&f, off + 4, |b| b[0] ^= 0x40);
            }),
        ),
        (
            "zeroed tail of a completed segment",
            Box::new(move |w: &Path| {
                let (f, off) = at(w, victim);
                let len = fs::metadata(&f).unwrap().len();
                use std::os::unix::fs::FileExt;
                let file = fs::OpenOptions::new().write(true).open(&f).unwrap();
                file.write_all_at(&vec![0u8; (len - off) as usize], off)
                    .unwrap();
            }),
        ),
        (
            "prev-link rewritten",
            Box::new(move |w: &Path| {
                let (f, off) = at(w, victim);
                patch_at(&f, off + 8, |b| b.copy_from_slice(&0x1234u64.to_le_bytes()));
            }),
        ),
        (
            "recycled segment in the middle",
            Box::new(move |w: &Path| {
                let (f, _) = at(w, victim);
                let (older, _) = at(w, victim - SEG);
                fs::copy(older, f).unwrap();
            }),
        ),
        (
            "truncated segment",
            Box::new(move |w: &Path| {
                let (f, off) = at(w, victim);
                let file = fs::OpenOptions::new().write(true).open(&f).unwrap();
                file.set_len(off - off % 8192).unwrap();
            }),
        ),
    ];
    for (i, (name, damage)) in cases.iter().enumerate() {
        let copy = top.join(format!("case{i}"));
        copy_tree(&data, &copy);
        let w = copy.join("pg_wal");
        damage(&w);
        let (code, v) = dbfsck(&["scan", copy.to_str().unwrap()]);
        assert_eq!(code & 4, 4, "{name}: {v}");
        let r = verdict(&v);
        assert_eq!(r["reaches_end"], false, "{name}: {r}");
        assert!(r["lost_commits"].as_u64().unwrap() > 0, "{name}: {r}");
        assert!(
            r["detail"].as_str().unwrap().contains("silently discards"),
            "{name}: {r}"
        );
        let stops = parse_lsn(r["stops_at"].as_str().unwrap());
        assert!(
            stops <= victim + victim_len && stops + SEG > victim,
            "{name}: stops at {} for damage at {}",
            lsn(stops),
            lsn(victim)
        );
        let (last, err) = waldump_stop(&bin, &w, &redo);
        if let Some(last) = last {
            // pg_waldump names the last good record; dbfsck's last replayed record is it.
            assert_eq!(
                r["last_replayed"].as_str(),
                Some(last.as_str()),
                "{name}: {r}\n{err}"
            );
        } else {
            assert!(err.contains("could not read from file"), "{name}: {err}");
        }
        let stop_finding =
            v["findings"].as_array().unwrap().iter().find(|f| {
                f["owner"]["record"] == r["stops_at"] || f["owner"]["lsn"] == r["stops_at"]
            });
        assert!(
            stop_finding.is_some(),
            "{name}: no finding at the stop: {v}"
        );
        if i == 0 {
            // The textfile metrics say it too, for the nightly alert.
            let prom = copy.with_extension("prom");
            let o = common::bin()
                .args(["scan", "--quiet", "--prometheus"])
                .arg(&prom)
                .arg(&copy)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(4));
            let text = fs::read_to_string(&prom).unwrap();
            let reaches = text
                .lines()
                .find(|l| l.starts_with("dbfsck_recovery_reaches_end{"))
                .unwrap_or_else(|| panic!("{text}"));
            assert!(reaches.ends_with(" 0"), "{reaches}");
            assert!(
                text.lines()
                    .any(|l| l.starts_with("dbfsck_recovery_lost_commits{")
                        && l.split(' ')
                            .nth(1)
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(|v| v > 0.0)),
                "{text}"
            );
            // `inspect --lsn` shows the failing record on its page, with both CRCs.
            let (f, _) = at(&w, victim);
            let o = common::bin()
                .args(["inspect", f.to_str().unwrap(), "--lsn", &lsn(victim)])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            let line = text
                .lines()
                .find(|l| l.contains(&format!("record {}", lsn(victim))))
                .unwrap_or_else(|| panic!("inspect shows no record {}: {text}", lsn(victim)));
            assert!(
                line.contains("fails: incorrect resource manager data checksum"),
                "{line}"
            );
            assert!(text.contains("xlp_magic                0xD110"), "{text}");
            // The server agrees, and loses exactly what dbfsck said it would: it starts, redo
            // stops where dbfsck said, and the rows of the later commits are gone.
            let (done, rows) = recover(&bin, &copy, &sock, "SELECT count(*) FROM pgbench_history");
            assert_eq!(done.as_deref(), r["last_replayed"].as_str(), "{name}: {r}");
            let (rows, all): (u64, u64) = (rows.parse().unwrap(), all.parse().unwrap());
            assert!(rows < all, "{name}: {rows} of {all} rows after recovery");
        }
    }

    // The crash's torn last write: the last record's bytes damaged, nothing after it. Not
    // damage (exit 0): recovery discards it by design, and the server agrees where it stops.
    let copy = top.join("torn");
    copy_tree(&data, &copy);
    let (f, off) = at(&copy.join("pg_wal"), end_record);
    patch_at(&f, off + 4, |b| b[0] ^= 0x40);
    let (code, v) = dbfsck(&["scan", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    let torn: Vec<&Value> = v["findings"].as_array().unwrap().iter().collect();
    assert_eq!(torn.len(), 1, "{v}");
    assert_eq!(torn[0]["kind"], "torn_tail", "{v}");
    assert_eq!(torn[0]["owner"]["record"], lsn(end_record), "{v}");
    let r = verdict(&v);
    assert_eq!(r["reaches_end"], true, "{r}");
    let (done, _) = recover(&bin, &copy, &sock, "SELECT 1");
    assert_eq!(done.as_deref(), r["last_replayed"].as_str(), "torn: {r}");
}

/// A timeline switch (archive recovery ends and picks timeline 2 in the middle of a segment):
/// the WAL of both timelines, the `.history` file and the segment that holds pages of both are
/// read along the timeline replay follows — clean, and recovery reaches the end where
/// `pg_waldump` on timeline 2 stops.
#[test]
fn a_timeline_switch_is_followed_as_replay_follows_it() {
    let Some(bin) = prerequisites() else { return };
    let (_tmp, data, sock) = new_cluster(&bin);
    let mut server = Server {
        bin: &bin,
        data: data.clone(),
        running: false,
    };
    start_cluster(&bin, &data, &sock, "");
    server.running = true;
    psql(
        &bin,
        &sock,
        "CREATE TABLE t AS SELECT generate_series(1, 20000) AS n",
    );
    server.stop();
    // Archive recovery from pg_wal alone (restore_command fails): it ends, and a new timeline
    // begins where the WAL ended.
    fs::write(Path::new(&data).join("recovery.signal"), "").unwrap();
    ok(
        Command::new("chown")
            .args(["postgres", &format!("{data}/recovery.signal")])
            .output()
            .unwrap(),
        "chown",
    );
    start_cluster(&bin, &data, &sock, "-c restore_command=false");
    server.running = true;
    for _ in 0..50 {
        if psql(&bin, &sock, "SELECT pg_is_in_recovery()") == "f" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    psql(
        &bin,
        &sock,
        "INSERT INTO t SELECT generate_series(1, 20000)",
    );
    ok(
        as_postgres(
            &bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        ),
        "pg_ctl stop -m immediate",
    );
    server.running = false;
    let wal = Path::new(&data).join("pg_wal");
    assert!(
        wal.join("00000002.history").is_file(),
        "no timeline switch happened"
    );
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code, 0, "{v}");
    let r = verdict(&v);
    assert_eq!(r["reaches_end"], true, "{r}");
    let redo = controldata(&bin, &data, "Latest checkpoint's REDO location");
    let tli = controldata(&bin, &data, "Latest checkpoint's TimeLineID");
    assert_eq!(tli, "2");
    let o = as_postgres(
        &bin,
        "pg_waldump",
        &["-q", "-p", wal.to_str().unwrap(), "-t", "2", "-s", &redo],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err
        .split("error in WAL record at ")
        .nth(1)
        .and_then(|r| r.split(':').next());
    assert_eq!(r["last_replayed"].as_str(), last, "{r}\n{err}");
}

/// WAL is flushed before the data blocks it describes: when the tail of the WAL is gone (zeros,
/// a clean-looking end) but data blocks on disk carry LSNs beyond it, the tail had been flushed
/// and is lost — damage, not the end. Tiny shared buffers make the load write blocks with LSNs
/// close to the end of WAL; the last stretch of the WAL is then zeroed.
#[test]
fn data_blocks_newer_than_the_wal_end_prove_the_tail_was_flushed() {
    let Some(bin) = prerequisites() else { return };
    let (_tmp, data, _, ()) = crashed_cluster(
        &bin,
        "-c shared_buffers=128kB -c max_wal_size=1GB",
        |sock| {
            psql(&bin, sock, "CHECKPOINT");
            psql(
                &bin,
                sock,
                "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g",
            );
            psql(&bin, sock, "UPDATE t SET h = md5(h)");
        },
    );
    let wal = Path::new(&data).join("pg_wal");
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code, 0, "{v}");
    let end = parse_lsn(verdict(&v)["end"].as_str().unwrap());
    // Zero the last 4 MiB of WAL (or to the start of the last segment), from a record start.
    let from = end.saturating_sub(4 << 20).max(end - end % SEG);
    let (victim, _) = record_after(&bin, &wal, from);
    let (f, off) = at(&wal, victim);
    let len = fs::metadata(&f).unwrap().len();
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().write(true).open(&f).unwrap();
    file.write_all_at(&vec![0u8; (len - off) as usize], off)
        .unwrap();
    // The WAL alone looks like a clean end there ...
    let (code, alone) = dbfsck(&["scan", wal.to_str().unwrap()]);
    assert_eq!(code, 0, "{alone}");
    assert_eq!(verdict(&alone)["reaches_end"], true, "{alone}");
    // ... but the data directory's blocks say it was flushed.
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code & 4, 4, "{v}");
    let r = verdict(&v);
    assert_eq!(r["reaches_end"], false, "{r}");
    assert_eq!(r["stops_at"], lsn(victim), "{r}");
    assert!(
        r["detail"].as_str().unwrap().contains("had been flushed"),
        "{r}"
    );
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["owner"]["lsn"] == lsn(victim))
        .unwrap_or_else(|| panic!("no finding at {}: {v}", lsn(victim)));
    assert_eq!(f["kind"], "zeroed_page", "{f}");
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("a data block carries LSN"),
        "{f}"
    );
}

/// Regression (review of 2026-12-03): the WAL ends exactly at a segment's end (closed by a
/// switch) and the segments after it are lost. No record is cut, so nothing breaks; the data
/// blocks written from that later WAL say it existed: damage, and replay would lose it.
#[test]
fn segments_lost_after_a_switch_are_damage_when_blocks_are_newer() {
    let Some(bin) = prerequisites() else { return };
    let (_tmp, data, _, closed) = crashed_cluster(
        &bin,
        "-c shared_buffers=128kB -c max_wal_size=1GB",
        |sock| {
            psql(
                &bin,
                sock,
                "CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 100000) g",
            );
            psql(&bin, sock, "CHECKPOINT");
            let closed = psql(&bin, sock, "SELECT pg_walfile_name(pg_switch_wal())");
            psql(&bin, sock, "UPDATE t SET h = md5(h)");
            closed
        },
    );
    let wal = Path::new(&data).join("pg_wal");
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code, 0, "{v}");
    // Every segment after the one the switch closed is lost.
    for e in fs::read_dir(&wal).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.len() == 24 && name > closed {
            fs::remove_file(wal.join(&name)).unwrap();
        }
    }
    let (code, alone) = dbfsck(&["scan", wal.to_str().unwrap()]);
    assert_eq!(code, 0, "the WAL alone ends cleanly: {alone}");
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code & 4, 4, "{v}");
    let r = verdict(&v);
    assert_eq!(r["reaches_end"], false, "{r}");
    assert!(
        r["detail"].as_str().unwrap().contains("had been flushed"),
        "{r}"
    );
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "truncated" && f["detail"].as_str().unwrap().contains("is not here"))
        .unwrap_or_else(|| panic!("no finding for the lost segment: {v}"));
    assert!(f["path"].as_str().unwrap().ends_with(&closed), "{f}");
}

/// A record longer than two segments (a 40 MB logical message: one segment all continuation) is joined
/// across every segment it spans and its CRC verified (it used to be accepted unchecked and the
/// segment after it reported as a continuation nobody began); a byte flipped in its middle is
/// damage at that record, where `pg_waldump` stops too.
#[test]
fn a_record_longer_than_a_segment_is_verified_across_all_of_them() {
    let Some(bin) = prerequisites() else { return };
    let (_tmp, data, _, before) = crashed_cluster(&bin, "-c max_wal_size=1GB", |sock| {
        psql(&bin, sock, "CHECKPOINT");
        let before = parse_lsn(&psql(&bin, sock, "SELECT pg_current_wal_insert_lsn()"));
        psql(
            &bin,
            sock,
            "SELECT pg_logical_emit_message(false, 'dbfsck', repeat('x', 40000000))",
        );
        psql(
            &bin,
            sock,
            "CREATE TABLE after_it AS SELECT g FROM generate_series(1, 1000) g",
        );
        before
    });
    let wal = Path::new(&data).join("pg_wal");
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(verdict(&v)["reaches_end"], true, "{v}");
    assert!(
        v["warnings"].as_array().unwrap().is_empty(),
        "no warning about the long record: {v}"
    );
    let (long, len) = record_after(&bin, &wal, before);
    // Longer than two segments: one of them is all continuation.
    assert!(
        len > 2 * SEG,
        "the message record: {len} bytes at {}",
        lsn(long)
    );
    // A byte in the middle of it, away from any page header.
    let mid = long + len / 2;
    let mid = mid - mid % 8192 + 4000;
    let (f, off) = at(&wal, mid);
    patch_at(&f, off, |b| b[0] ^= 0x20);
    let redo = controldata(&bin, &data, "Latest checkpoint's REDO location");
    let (last_good, err) = waldump_stop(&bin, &wal, &redo);
    let (code, v) = dbfsck(&["scan", &data]);
    assert_eq!(code & 4, 4, "{v}");
    let r = verdict(&v);
    assert_eq!(r["stops_at"], lsn(long), "{r}");
    assert_eq!(
        r["last_replayed"].as_str(),
        last_good.as_deref(),
        "{r} / {err}"
    );
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["owner"]["record"] == lsn(long))
        .unwrap_or_else(|| panic!("no finding at the long record {}: {v}", lsn(long)));
    assert_eq!(f["kind"], "checksum_mismatch", "{f}");
}
