//! Full-page-image repair against PostgreSQL 15 itself (`docs/postgres-wal.md` §6): a table is
//! checkpointed, then changed (every block's first change after the checkpoint carries a
//! full-page image; one block is changed again, without one), and the server is crashed. On a
//! copy, blocks are damaged and `dbfsck scan --repair` run: the block whose image is its newest
//! state is rebuilt byte for byte as the server's own crash recovery rebuilds it (an untouched
//! copy recovered by the server is the oracle), the block changed after its image is refused
//! (quarantined, left as it is), a dry run changes nothing, the undo log restores the damaged
//! bytes exactly, and the repaired copy starts with the same rows as the untouched one and a
//! clean `pg_amcheck`. With `wal_compression` off, pglz, lz4 and zstd.
//!
//! Needs root, the `postgres` user and PostgreSQL 15 (`common::pg`); skipped where they are
//! missing unless the run must be complete (`CI`), where it fails.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

const BLCKSZ: u64 = 8192;

fn block(path: &Path, n: u64) -> Vec<u8> {
    let f = fs::File::open(path).unwrap();
    let mut b = vec![0u8; BLCKSZ as usize];
    f.read_exact_at(&mut b, n * BLCKSZ).unwrap();
    b
}

/// Overwrites 64 bytes in the middle of block `n` (tuple data or the free hole): a rotted or
/// torn block whose checksum fails.
fn damage(path: &Path, n: u64) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&[0xAB; 64], n * BLCKSZ + 4000).unwrap();
}

/// Starts the server on `data` (crash recovery runs), runs `sql` unless empty, stops it.
fn run_server(bin: &Path, data: &Path, sock: &str, sql: &str) -> String {
    let d = data.to_str().unwrap().to_owned();
    let mut server = Server {
        bin,
        data: d.clone(),
        running: false,
    };
    let opts = format!("-k {sock} -c listen_addresses='' -c port=5498 -c autovacuum=off");
    ok(
        as_postgres(
            bin,
            "pg_ctl",
            &[
                "-D",
                &d,
                "-o",
                &opts,
                "-l",
                &format!("{d}.log"),
                "-w",
                "start",
            ],
        ),
        "pg_ctl start on a copy",
    );
    server.running = true;
    let mut out = String::new();
    if !sql.is_empty() {
        let o = ok(
            as_postgres(
                bin,
                "psql",
                &[
                    "-h", sock, "-p", "5498", "-U", "postgres", "-d", "postgres", "-Atq", "-c", sql,
                ],
            ),
            sql,
        );
        out = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        let amcheck = as_postgres(
            bin,
            "pg_amcheck",
            &[
                "-h",
                sock,
                "-p",
                "5498",
                "-U",
                "postgres",
                "--install-missing",
                "--heapallindexed",
                "postgres",
            ],
        );
        assert!(
            amcheck.status.success(),
            "pg_amcheck on {d}: {}{}",
            String::from_utf8_lossy(&amcheck.stdout),
            String::from_utf8_lossy(&amcheck.stderr)
        );
    }
    server.stop();
    out
}

fn repair_of(v: &Value, unit: u64) -> &Value {
    v["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unit"] == unit)
        .unwrap_or_else(|| panic!("no repair of block {unit}: {v}"))
}

fn one_cluster(bin: &Path, compression: &str) {
    let opts = format!(
        "-c wal_compression={compression} -c autovacuum=off -c checkpoint_timeout=1h -c max_wal_size=4GB"
    );
    let (tmp, data, sock, rel) = crashed_cluster(bin, &opts, |sock| {
        psql(
            bin,
            sock,
            "CREATE TABLE t (id int PRIMARY KEY, v int) WITH (fillfactor = 50); \
             INSERT INTO t SELECT g, g FROM generate_series(1, 20000) g;",
        );
        psql(bin, sock, "VACUUM t");
        psql(bin, sock, "CHECKPOINT");
        // A block's first change after the checkpoint logs its image (one row each, by TID;
        // HOT updates stay in the block; VACUUM set the hint bits before, so reading a block
        // logs nothing); block 0 is changed once more, without one. Nothing scans the table
        // after that: a scan would prune its blocks, a change without an image.
        psql(
            bin,
            sock,
            "UPDATE t SET v = v + 1 WHERE ctid IN ('(0,1)', '(3,1)', '(5,1)')",
        );
        psql(bin, sock, "UPDATE t SET v = v + 7 WHERE ctid = '(0,2)'");
        psql(bin, sock, "SELECT pg_relation_filepath('t')")
    });
    let rows = format!("20000|{}", 20000 * 20001 / 2 + 3 + 7);

    let oracle = tmp.path().join("oracle");
    let damaged = tmp.path().join("damaged");
    copy_tree(&data, &oracle);
    copy_tree(&data, &damaged);
    // The images are compressed as configured (what the rebuild must undo).
    let dump = as_postgres(
        bin,
        "pg_waldump",
        &[
            "-b",
            Path::new(&data)
                .join("pg_wal/000000010000000000000001")
                .to_str()
                .unwrap(),
        ],
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("FPW"), "{compression}: no image in the WAL");
    assert_eq!(
        dump.contains("compression saved"),
        compression != "off",
        "{compression}"
    );
    let file = damaged.join(&rel);
    damage(&file, 3);
    damage(&file, 0);
    // Block 5 claims an LSN newer than its image, still inside the WAL: a change the WAL does
    // not show may exist, so its image must not be used.
    let (_, v) = dbfsck(&["scan", damaged.to_str().unwrap()]);
    let end = v["summary"]["recovery"][0]["end"]
        .as_str()
        .unwrap()
        .to_owned();
    let (hi, lo) = end.split_once('/').unwrap();
    let (hi, lo) = (
        u32::from_str_radix(hi, 16).unwrap(),
        u32::from_str_radix(lo, 16).unwrap(),
    );
    let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.write_all_at(&hi.to_le_bytes(), 5 * BLCKSZ).unwrap();
    f.write_all_at(&lo.to_le_bytes(), 5 * BLCKSZ + 4).unwrap();
    let before = fs::read(&file).unwrap();
    let root = damaged.to_str().unwrap();

    // A dry run plans, and changes nothing.
    let (code, v) = dbfsck(&["scan", root, "--repair", "--dry-run"]);
    assert_eq!(code & 4, 4, "{compression}: {v}");
    assert_eq!(
        repair_of(&v, 3)["action"],
        "restore_from_wal",
        "{compression}: {v}"
    );
    assert_eq!(repair_of(&v, 3)["result"], "planned", "{compression}: {v}");
    assert_eq!(
        fs::read(&file).unwrap(),
        before,
        "{compression}: the dry run wrote"
    );

    let (_, v) = dbfsck(&["scan", root, "--repair"]);
    let r3 = repair_of(&v, 3);
    assert_eq!(r3["action"], "restore_from_wal", "{compression}: {v}");
    assert_eq!(r3["result"], "applied", "{compression}: {v}");
    let r0 = repair_of(&v, 0);
    assert_eq!(r0["action"], "quarantine", "{compression}: {v}");
    assert!(
        r0["detail"].as_str().unwrap().contains("without an image"),
        "{compression}: {r0}"
    );
    let r5 = repair_of(&v, 5);
    assert_eq!(r5["action"], "quarantine", "{compression}: {v}");
    assert!(
        r5["detail"]
            .as_str()
            .unwrap()
            .contains("newer than the newest image"),
        "{compression}: {r5}"
    );
    let repaired = block(&file, 3);
    assert_eq!(
        block(&file, 0),
        before[..BLCKSZ as usize],
        "{compression}: block 0 was written"
    );

    // The oracle: the server's own recovery of the untouched copy, checkpointed at shutdown,
    // before any query could set a hint bit.
    run_server(bin, &oracle, &sock, "");
    assert_eq!(
        block(&oracle.join(&rel), 3),
        repaired,
        "{compression}: the rebuilt block differs from what recovery rebuilds"
    );

    // Undo puts back exactly the damaged bytes; a second repair does it again.
    let undo = v["undo_log"].as_str().unwrap().to_owned();
    let o = common::bin().args(["undo", &undo]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        fs::read(&file).unwrap(),
        before,
        "{compression}: undo is not exact"
    );
    let (_, v) = dbfsck(&["scan", root, "--repair"]);
    assert_eq!(repair_of(&v, 3)["result"], "applied", "{compression}: {v}");
    let (code, v) = dbfsck(&["scan", root]);
    let left: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["format"] == "postgres" && f["unit"].is_u64())
        .collect();
    let units: Vec<&Value> = left.iter().map(|f| &f["unit"]).collect();
    assert_eq!(
        units,
        [0, 5],
        "{compression}: only blocks 0 and 5 are left: {v}"
    );
    assert_eq!(code & 4, 4);

    // The repaired copy starts and reads what the untouched one reads (replay rebuilds block 0
    // itself: its image and its later change are both after the redo point).
    // Block 5 is rebuilt by replay too (its image follows the redo point).
    let got = run_server(bin, &damaged, &sock, "SELECT count(*), sum(v) FROM t");
    assert_eq!(got, rows, "{compression}");
    let (code, v) = dbfsck(&["scan", root]);
    assert_eq!(code & 4, 0, "{compression}: damage after recovery: {v}");
}

#[test]
fn damaged_blocks_are_rebuilt_from_full_page_images_as_crash_recovery_rebuilds_them() {
    let Some(bin) = prerequisites() else {
        return;
    };
    for compression in ["off", "pglz", "lz4", "zstd"] {
        one_cluster(&bin, compression);
    }
}

/// While the server runs, no block is rebuilt from WAL (its shared buffers may hold newer
/// versions).
#[test]
fn no_block_is_rebuilt_while_the_server_runs() {
    let Some(bin) = prerequisites() else {
        return;
    };
    let (_tmp, data, sock) = new_cluster(&bin);
    start_cluster(&bin, &data, &sock, "-c autovacuum=off");
    let mut server = Server {
        bin: &bin,
        data: data.clone(),
        running: true,
    };
    psql(
        &bin,
        &sock,
        "CREATE TABLE t (id int, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 5000) g; CHECKPOINT; UPDATE t SET v = v + 1;",
    );
    let rel = psql(&bin, &sock, "SELECT pg_relation_filepath('t')");
    let file = Path::new(&data).join(&rel);
    damage(&file, 2);
    let before = fs::read(&file).unwrap();
    let (_, v) = dbfsck(&["scan", &data, "--repair"]);
    let all = v["repairs"].as_array().cloned().unwrap_or_default();
    assert!(
        all.iter().all(|r| r["action"] != "restore_from_wal"),
        "a block was rebuilt while the server ran: {v}"
    );
    assert_eq!(fs::read(&file).unwrap(), before, "the file was written");
    // The operator is told why (the human report's "left as is").
    let o = common::bin()
        .args(["scan", &data, "--repair"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("postmaster.pid names a live process"),
        "no reason given: {text}"
    );
    server.stop();
}
