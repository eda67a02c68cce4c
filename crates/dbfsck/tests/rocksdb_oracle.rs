//! Oracle test of the `rocksdb` format against RocksDB itself (Debian's rocksdb-tools, from apt):
//! `db_bench` makes real databases — every checksum type, format_version 0–5, every
//! compression, partitioned and first-key indexes, hash indexes, filters, range tombstones, blob
//! files, aligned blocks — and dbfsck calls each clean, as `sst_dump --verify_checksum` does.
//! On damaged copies it reports what RocksDB's own readers report, at the same place:
//!
//! - a flipped byte in a data block: the block `sst_dump --command=verify --verify_checksum`
//!   names (offset, size, stored and computed checksum as it prints them), and the key range it
//!   held is bounded by exactly the last key of the block before and the first key of the block
//!   after (`sst_dump --command=raw` of the undamaged table lists every block's keys);
//! - a flipped byte in the index: the index block sst_dump names, and every data block still
//!   verified (walked from offset 0); a damaged footer likewise;
//! - the newest WAL cut inside its last record: `torn_tail` (exit 0), where `ldb dump_wal`
//!   prints no error either; a flipped byte mid-WAL: damage, and the sequence range lost is the
//!   gap in the batches `ldb dump_wal` prints;
//! - a MANIFEST cut inside its last edit, leaving a live table unreferenced: damage naming that
//!   table, where `ldb checkconsistency` says OK; a flipped MANIFEST byte: damage, where RocksDB
//!   refuses to open.
//!
//! Needs rocksdb-tools (`scripts/test` installs it); skipped where it is missing unless the run
//! must be complete (`CI`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::lsm::*;

fn have_rocksdb() -> bool {
    let found = ["db_bench", "ldb", "sst_dump"].iter().all(|t| {
        Command::new(t)
            .arg("--help")
            .output()
            .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
    });
    dbfsck_testkit::can_run(
        "the RocksDB oracle test",
        if found {
            Ok(())
        } else {
            Err("db_bench, ldb or sst_dump (rocksdb-tools) is not installed".into())
        },
    )
}

/// A scratch directory for a test that needs RocksDB's tools; `None` (the test skips, or fails
/// when the run must be complete) when they are missing.
fn scratch() -> Option<tempfile::TempDir> {
    have_rocksdb().then(|| tempfile::tempdir().unwrap())
}

/// A scratch directory holding `db`, made by `make_db(num, args)`; `None` as for [`scratch`].
fn fresh_db(num: u32, args: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    let tmp = scratch()?;
    let db = tmp.path().join("db");
    make_db(&db, num, args);
    Some((tmp, db))
}

/// A database made by `db_bench fillrandom` with `args`.
fn make_db(dir: &Path, num: u32, args: &[&str]) {
    let o = Command::new("db_bench")
        .arg("--benchmarks=fillrandom")
        .arg(format!("--num={num}"))
        .arg("--write_buffer_size=1048576")
        .arg(format!("--db={}", dir.display()))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "db_bench {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What `sst_dump --command=verify --verify_checksum` says of a table: its first block
/// checksum mismatch as (offset, size, stored, computed), if any.
fn sst_dump_mismatch(file: &Path) -> Option<(u64, u64, u64, u64)> {
    let o = Command::new("sst_dump")
        .arg(format!("--file={}", file.display()))
        .args(["--command=verify", "--verify_checksum"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("block checksum mismatch"))?;
    let num = |after: &str| -> u64 {
        let i = line.find(after).unwrap() + after.len();
        line[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    Some((
        num(" offset "),
        num(" size "),
        num("stored = "),
        num("computed = "),
    ))
}

/// `sst_dump --command=raw` of a table: per data block, its offset and its user keys (hex).
fn raw_blocks(file: &Path, scratch: &Path) -> Vec<(u64, Vec<String>)> {
    let copy = scratch.join("raw.sst");
    fs::copy(file, &copy).unwrap();
    let o = Command::new("sst_dump")
        .arg(format!("--file={}", copy.display()))
        .args(["--command=raw", "--output_hex"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let dump = fs::read(scratch.join("raw_dump.txt")).unwrap();
    let text = String::from_utf8_lossy(&dump);
    let mut blocks: Vec<(u64, Vec<String>)> = Vec::new();
    let mut in_data = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Data Block # ") {
            // "N @ HEX": the handle's varints, offset first.
            let hex = rest.split(" @ ").nth(1).unwrap().trim();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let mut offset = 0u64;
            for (i, b) in bytes.iter().enumerate() {
                offset |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    break;
                }
            }
            blocks.push((offset, Vec::new()));
            in_data = true;
        } else if line.ends_with("Details:") || line.starts_with("Range deletions") {
            in_data = false;
        } else if in_data {
            if let Some(rest) = line.trim_start().strip_prefix("HEX") {
                let key = rest
                    .trim_start()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_ascii_lowercase();
                blocks.last_mut().unwrap().1.push(key);
            }
        }
    }
    blocks
}

fn data_size(file: &Path) -> u64 {
    let o = Command::new("sst_dump")
        .arg(format!("--file={}", file.display()))
        .arg("--show_properties")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .find_map(|l| l.trim().strip_prefix("data block size: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The index block's handle (offset, size) from a format_version 1–5 footer (after its
/// checksum-type byte and the metaindex handle).
fn index_handle(table: &Path) -> (u64, u64) {
    let bytes = fs::read(table).unwrap();
    let footer = &bytes[bytes.len() - 53..];
    let mut c = 1;
    let mut varint = || {
        let mut v = 0u64;
        let mut s = 0;
        loop {
            let b = footer[c];
            c += 1;
            v |= u64::from(b & 0x7f) << s;
            s += 7;
            if b & 0x80 == 0 {
                return v;
            }
        }
    };
    let (_meta_offset, _meta_size) = (varint(), varint());
    (varint(), varint())
}

/// Databases of every checksum type, format_version, compression and index shape are clean,
/// as `sst_dump --verify_checksum` finds them.
#[test]
fn every_kind_of_table_is_clean() {
    let Some(tmp) = scratch() else {
        return;
    };
    let configs: &[&[&str]] = &[
        &["--checksum_type=0"],
        &["--checksum_type=1"],
        &["--checksum_type=2"],
        &["--checksum_type=3"],
        &["--checksum_type=4"],
        &["--format_version=0", "--checksum_type=1"],
        &["--format_version=1"],
        &["--format_version=2", "--compression_type=lz4"],
        &["--format_version=3"],
        &["--format_version=4"],
        &["--compression_type=none"],
        &["--compression_type=snappy"],
        &["--compression_type=lz4"],
        &["--compression_type=zstd"],
        &["--compression_type=zlib"],
        &["--compression_type=bzip2"],
        &["--partition_index_and_filters=1", "--bloom_bits=10"],
        &["--index_with_first_key=1"],
        &["--use_data_block_hash_index=1"],
        &["--use_hash_search=1", "--prefix_size=8"],
        &[
            "--writes_per_range_tombstone=100",
            "--max_num_range_tombstones=100",
        ],
        &["--enable_blob_files=1", "--min_blob_size=50"],
        &["--block_align=1", "--compression_type=none"],
    ];
    for (i, args) in configs.iter().enumerate() {
        let db = tmp.path().join(format!("db{i}"));
        make_db(&db, 20_000, args);
        let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
        assert_eq!(rc, 0, "{args:?}: {r:#}");
        assert!(findings(&r).is_empty(), "{args:?}: {r:#}");
        // No sequence gap between the WALs of a database RocksDB wrote whole.
        assert!(
            !r["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["message"].as_str().unwrap().contains("are in no WAL")),
            "{args:?}: {r:#}"
        );
        let tables = files(&db, "sst");
        assert!(!tables.is_empty());
        for t in &tables {
            assert_eq!(sst_dump_mismatch(t), None, "sst_dump on {t:?} ({args:?})");
        }
        // Every table was verified, not skipped.
        let skipped: Vec<&str> = r["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["path"].as_str())
            .filter(|p| p.ends_with(".sst"))
            .collect();
        let live = tables.len() - skipped.len();
        assert!(live > 0, "{args:?}: {r:#}");
        println!(
            "{args:?}: {} tables ({live} live), {} units verified, clean",
            tables.len(),
            r["summary"]["units"]
        );
    }
}

/// A flipped byte in a data block: dbfsck names the block sst_dump names, with the same
/// checksums, and bounds the keys it held by its neighbours' keys exactly.
#[test]
fn a_damaged_data_block_is_the_one_sst_dump_names_with_its_key_range() {
    let Some(tmp) = scratch() else {
        return;
    };
    let configs: &[&[&str]] = &[
        &["--checksum_type=1", "--compression_type=none"],
        &["--checksum_type=2", "--compression_type=snappy"],
        &["--checksum_type=3", "--compression_type=lz4"],
        &["--checksum_type=4", "--compression_type=zstd"],
        &[
            "--format_version=0",
            "--checksum_type=1",
            "--compression_type=snappy",
        ],
        &["--partition_index_and_filters=1", "--bloom_bits=10"],
        &["--index_with_first_key=1", "--format_version=4"],
    ];
    for (i, args) in configs.iter().enumerate() {
        let db = tmp.path().join(format!("db{i}"));
        make_db(&db, 20_000, args);
        // The largest table, flipped in the middle of its data blocks.
        let table = largest(&db, "sst");
        let blocks = raw_blocks(&table, tmp.path());
        assert!(blocks.len() > 4, "{args:?}: {} blocks", blocks.len());
        let at = data_size(&table) / 2;
        let bad = tmp.path().join(format!("bad{i}"));
        copy_dir(&db, &bad);
        let bad_table = bad.join(table.file_name().unwrap());
        flip(&bad_table, at);
        let (off, size, stored, computed) =
            sst_dump_mismatch(&bad_table).expect("sst_dump finds the flipped block");
        let (rc, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
        assert_eq!(rc, 4, "{r:#}");
        let f = findings(&r);
        assert_eq!(f.len(), 1, "{args:?}: {f:#?}");
        let f = &f[0];
        assert_eq!(f["kind"], "checksum_mismatch");
        assert_eq!(f["offset"], off, "{args:?}: {f:#}");
        assert_eq!(f["length"], size + 5);
        assert_eq!(f["expected"], format!("{stored:#010x}"));
        assert_eq!(f["actual"], format!("{computed:#010x}"));
        let o = &f["owner"];
        assert_eq!(o["block_type"], "data");
        assert_eq!(
            o["table"].as_u64(),
            table
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .parse::<u64>()
                .ok()
        );
        // sst_dump numbers data blocks from 1; dbfsck's `block` (and `unit`) from 0.
        let n = blocks
            .iter()
            .position(|b| b.0 == off)
            .expect("the block is in the raw dump");
        assert_eq!(o["block"], n as u64);
        let range = &o["key_range"];
        assert_eq!(
            range["from_hex"],
            blocks[n - 1].1.last().unwrap().as_str(),
            "{args:?}"
        );
        assert_eq!(
            range["to_hex"],
            blocks[n + 1].1.first().unwrap().as_str(),
            "{args:?}"
        );
        for k in &blocks[n].1 {
            assert!(k.as_str() > range["from_hex"].as_str().unwrap());
            assert!(k.as_str() < range["to_hex"].as_str().unwrap());
        }
        // `dbfsck inspect --blocks` lists every block, that one failing.
        let o = common::bin()
            .args(["inspect", bad_table.to_str().unwrap(), "--blocks"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(4));
        let listed = String::from_utf8_lossy(&o.stdout);
        let failing: Vec<&str> = listed
            .lines()
            .filter(|l| l.contains("checksum_mismatch"))
            .collect();
        assert_eq!(failing.len(), 1, "{listed}");
        assert!(
            failing[0].contains(&format!("data {n} ")) && failing[0].contains(&format!("@{off} ")),
            "{listed}"
        );
        assert_eq!(
            listed
                .lines()
                .filter(|l| l.trim_start().starts_with("data "))
                .count(),
            blocks.len(),
            "{listed}"
        );
        // `dbfsck inspect` shows that block, judged as the scan judges it.
        let o = common::bin()
            .args([
                "inspect",
                bad_table.to_str().unwrap(),
                "--page",
                &n.to_string(),
            ])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&o.stdout);
        assert!(
            shown.contains(&format!("sst_dump's # {}", n + 1)),
            "{shown}"
        );
        assert!(shown.contains("checksum_mismatch"), "{shown}");
        assert!(shown.contains(&format!("{stored:#010x}")), "{shown}");
        let o = common::bin()
            .args([
                "inspect",
                table.to_str().unwrap(),
                "--page",
                &(n + 1).to_string(),
            ])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&o.stdout);
        assert!(
            shown.contains("entries") && !shown.contains("checksum_mismatch"),
            "{shown}"
        );
        println!(
            "{args:?}: block {n} of {} at {off} (+{size}): {} keys, from {} to {} — sst_dump: stored {stored}, computed {computed}",
            blocks.len(),
            blocks[n].1.len(),
            range["from"],
            range["to"]
        );
    }
}

/// Two damaged blocks in one table: sst_dump stops at the first, dbfsck reports both.
#[test]
fn every_damaged_block_is_reported_not_only_the_first() {
    let Some((tmp, db)) = fresh_db(20_000, &["--compression_type=none"]) else {
        return;
    };
    let table = largest(&db, "sst");
    let blocks = raw_blocks(&table, tmp.path());
    let size = data_size(&table);
    flip(&table, size / 4);
    flip(&table, size * 3 / 4);
    let (rc, r) = dbfsck(&["scan", table.to_str().unwrap()]);
    assert_eq!(rc, 4);
    let f = findings(&r);
    assert_eq!(f.len(), 2, "{f:#?}");
    let first = sst_dump_mismatch(&table).unwrap();
    assert_eq!(f[0]["offset"], first.0);
    for x in &f {
        assert!(blocks.iter().any(|b| b.0 == x["offset"].as_u64().unwrap()));
    }
    println!(
        "sst_dump reports the block at {}; dbfsck both, at {} and {}",
        first.0, f[0]["offset"], f[1]["offset"]
    );
}

/// A damaged index or footer: sst_dump refuses the file; dbfsck reports that block and still
/// verifies every data block, found by walking from offset 0.
#[test]
fn a_damaged_index_or_footer_still_gets_every_data_block_verified() {
    let Some((tmp, db)) = fresh_db(20_000, &["--compression_type=none"]) else {
        return;
    };
    let table = largest(&db, "sst");
    let blocks = raw_blocks(&table, tmp.path()).len() as u64;
    let len = fs::metadata(&table).unwrap().len();
    let (_, clean) = dbfsck(&["scan", table.to_str().unwrap()]);
    let clean_units = clean["summary"]["units"].as_u64().unwrap();
    let (index_off, index_size) = index_handle(&table);
    for (what, at) in [
        ("index", index_off + index_size / 2),
        ("footer", len - 3),
        ("cut", len - 554),
    ] {
        let bad = tmp.path().join(format!("bad-{what}.sst"));
        fs::copy(&table, &bad).unwrap();
        if what == "cut" {
            // A table cut short (RocksDB reads garbage as its format_version): no footer at all.
            cut_to(&bad, at);
        } else {
            flip(&bad, at);
        }
        let o = Command::new("sst_dump")
            .arg(format!("--file={}", bad.display()))
            .args(["--command=verify", "--verify_checksum"])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(said.contains("not a valid SST file"), "{said}");
        let (rc, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
        assert_eq!(rc, 4, "{r:#}");
        let f = findings(&r);
        if what == "cut" {
            // The footer, and the block the cut went through (the blocks before it all found).
            assert_eq!(f.len(), 2, "{what}: {f:#?}");
            assert_eq!(f[0]["owner"]["block_type"], "data");
            assert_eq!(f[1]["owner"]["block_type"], "footer");
        } else {
            assert_eq!(f.len(), 1, "{what}: {f:#?}");
        }
        if what == "cut" {
        } else if what == "index" {
            assert_eq!(f[0]["kind"], "checksum_mismatch");
            assert_eq!(f[0]["offset"], index_off);
            assert_eq!(f[0]["owner"]["block_type"], "index");
        } else {
            assert_eq!(f[0]["kind"], "bad_header");
            assert_eq!(f[0]["owner"]["block_type"], "footer");
        }
        // Every data block verified although the index (or the footer) is unusable.
        let units = r["summary"]["units"].as_u64().unwrap();
        assert!(
            units >= blocks,
            "{what}: {units} units for {blocks} data blocks"
        );
        println!("{what} damaged: sst_dump: {}; dbfsck verified {units} blocks ({clean_units} when clean, {blocks} data blocks)", said.lines().last().unwrap_or_default());
    }
}

fn dump_wal(db: &Path, wal: &Path) -> (Vec<(u64, u64)>, String) {
    let o = Command::new("ldb")
        .arg(format!("--db={}", db.display()))
        .arg("dump_wal")
        .arg(format!("--walfile={}", wal.display()))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let batches = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            let seq = it.next()?.trim().parse().ok()?;
            let count = it.next()?.trim().parse().ok()?;
            Some((seq, count))
        })
        .collect();
    (batches, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The newest WAL cut inside its last record is the crash's unsynced write (`torn_tail`, exit
/// 0), as RocksDB's recovery and `ldb dump_wal` treat it; a flipped byte in the middle is
/// damage, with the sequence range `ldb dump_wal` cannot print.
#[test]
fn wal_tail_cut_is_torn_tail_and_mid_file_damage_names_the_lost_sequences() {
    let Some(tmp) = scratch() else {
        return;
    };
    let db = tmp.path().join("db");
    // A newest WAL of a few blocks: how much of it was written after the last memtable switch
    // is timing, so a few sizes are tried.
    let mut wals = Vec::new();
    for num in [30_000, 33_000, 27_000, 36_000, 24_000] {
        let _ = fs::remove_dir_all(&db);
        make_db(&db, num, &["--compression_type=none"]);
        wals = files(&db, "log");
        if fs::metadata(wals.last().unwrap()).unwrap().len() > 3 * 32768 {
            break;
        }
    }
    let newest = wals.last().unwrap().clone();
    let len = fs::metadata(&newest).unwrap().len();
    assert!(len > 3 * 32768, "the newest WAL is {len} bytes");
    let (batches, _) = dump_wal(&db, &newest);
    // `--blocks` is for tables: on a WAL it is an error (exit 8), never an empty clean list.
    let o = common::bin()
        .args(["inspect", newest.to_str().unwrap(), "--blocks"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // `dbfsck inspect` on the WAL lists a block's records with their batches' sequences.
    let o = common::bin()
        .args(["inspect", newest.to_str().unwrap(), "--page", "0"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains(&format!("batch at sequence {}", batches[0].0)),
        "{shown}"
    );

    // Cut inside the last record.
    let cut = tmp.path().join("cut");
    copy_dir(&db, &cut);
    let cut_wal = cut.join(newest.file_name().unwrap());
    let f = fs::OpenOptions::new().write(true).open(&cut_wal).unwrap();
    f.set_len(len - 3).unwrap();
    let (rc, r) = dbfsck(&["scan", cut.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    let fs_ = findings(&r);
    assert_eq!(fs_.len(), 1, "{fs_:#?}");
    assert_eq!(fs_[0]["kind"], "torn_tail");
    let (after_cut, said) = dump_wal(&cut, &cut_wal);
    assert!(!said.contains("Corruption"), "{said}");
    let last = batches.last().unwrap();
    assert_eq!(after_cut.len(), batches.len() - 1);
    assert_eq!(fs_[0]["owner"]["sequence_range"]["from"], last.0);
    assert_eq!(fs_[0]["owner"]["sequence_range"]["to"], last.0 + last.1 - 1);
    assert_eq!(fs_[0]["owner"]["sequence_range"]["count"], last.1);

    // A flipped byte in the second block.
    let mid = tmp.path().join("mid");
    copy_dir(&db, &mid);
    let mid_wal = mid.join(newest.file_name().unwrap());
    flip(&mid_wal, 32768 + 1000);
    let (rc, r) = dbfsck(&["scan", mid.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let fs_ = findings(&r);
    assert_eq!(fs_.len(), 1, "{fs_:#?}");
    assert_eq!(fs_[0]["kind"], "checksum_mismatch");
    let (survived, said) = dump_wal(&mid, &mid_wal);
    assert!(said.contains("checksum mismatch"), "{said}");
    // The gap in what ldb can still read is the range dbfsck names.
    let gap = survived
        .windows(2)
        .find(|w| w[1].0 != w[0].0 + w[0].1)
        .map(|w| (w[0].0 + w[0].1, w[1].0 - 1))
        .expect("ldb dump_wal shows a gap");
    let range = &fs_[0]["owner"]["sequence_range"];
    assert_eq!(
        (
            range["from"].as_u64().unwrap(),
            range["to"].as_u64().unwrap()
        ),
        gap,
        "{range}"
    );
    assert_eq!(range["count"].as_u64().unwrap(), gap.1 - gap.0 + 1);
    println!(
        "mid-WAL flip: ldb dump_wal reads {} of {} batches, sequences {}..={} lost — dbfsck: {}",
        survived.len(),
        batches.len(),
        gap.0,
        gap.1,
        fs_[0]["detail"]
    );

    // A flipped byte in an older WAL (a newer one follows): damage even at its end.
    if wals.len() > 1 {
        let old = tmp.path().join("old");
        copy_dir(&db, &old);
        let old_wal = old.join(wals[0].file_name().unwrap());
        let l = fs::metadata(&old_wal).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&old_wal).unwrap();
        f.set_len(l - 3).unwrap();
        let (rc, r) = dbfsck(&["scan", old.to_str().unwrap()]);
        assert_eq!(rc, 4, "{r:#}");
        assert_eq!(findings(&r)[0]["kind"], "truncated");
    }
}

/// A MANIFEST cut inside its last edit orphans a live table silently (`ldb checkconsistency`
/// says OK); dbfsck reports the cut as damage and names the table. A flipped byte in a
/// MANIFEST record: damage, as RocksDB's open fails.
#[test]
fn manifest_damage_is_reported_with_the_tables_it_affects() {
    let Some(tmp) = scratch() else {
        return;
    };
    let db = tmp.path().join("db");
    // No compaction: the MANIFEST ends with the last flush's edit and its MinLogNumberToKeep one.
    make_db(
        &db,
        30_000,
        &["--compression_type=none", "--disable_auto_compactions=1"],
    );
    let manifest = fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("MANIFEST-")
        })
        .unwrap();
    let bytes = fs::read(&manifest).unwrap();
    // The last record's header starts where the previous record ends: find it by reading
    // record lengths from the start (one block, no fragments, in a small MANIFEST).
    assert!(bytes.len() < 32768);
    let mut at = 0;
    let mut starts = Vec::new();
    while at + 7 <= bytes.len() {
        starts.push(at);
        at += 7 + u16::from_le_bytes([bytes[at + 4], bytes[at + 5]]) as usize;
    }
    // db_bench's MANIFEST ends with each flush's edit (the new table) followed by one raising
    // MinLogNumberToKeep: cut inside the second-to-last record, the last flush's.
    let add = starts[starts.len() - 2];
    let newest_table = files(&db, "sst").last().unwrap().clone();
    let cut = tmp.path().join("cut");
    copy_dir(&db, &cut);
    let cut_manifest = cut.join(manifest.file_name().unwrap());
    fs::write(&cut_manifest, &bytes[..add + 20]).unwrap();
    let ldb = Command::new("ldb")
        .arg(format!("--db={}", cut.display()))
        .arg("checkconsistency")
        .output()
        .unwrap();
    let (rc, r) = dbfsck(&["scan", cut.to_str().unwrap()]);
    let f = findings(&r);
    let name = newest_table.file_name().unwrap().to_str().unwrap();
    let warned = r["warnings"].as_array().unwrap().iter().any(|w| {
        w["path"].as_str().unwrap().ends_with(name)
            && w["message"]
                .as_str()
                .unwrap()
                .contains("not in the MANIFEST")
    });
    println!(
        "MANIFEST cut at {}: ldb checkconsistency: {} (exit {:?}); dbfsck exit {rc}: {:?}",
        add + 20,
        String::from_utf8_lossy(&ldb.stdout).trim(),
        ldb.status.code(),
        f.iter()
            .map(|x| x["detail"].as_str().unwrap())
            .collect::<Vec<_>>(),
    );
    assert!(
        ldb.status.success(),
        "ldb checkconsistency refused the cut MANIFEST"
    );
    assert_eq!(rc, 4, "{r:#}");
    assert!(warned, "{name} not flagged: {r:#}");
    assert!(
        f.iter().any(|x| x["kind"] == "truncated"
            && x["path"].as_str().unwrap().contains("MANIFEST-")
            && x["detail"].as_str().unwrap().contains(&name[..6])),
        "{f:#?}"
    );

    let flipped = tmp.path().join("flipped");
    copy_dir(&db, &flipped);
    let fm = flipped.join(manifest.file_name().unwrap());
    flip(&fm, starts[1] as u64 + 9);
    let ldb = Command::new("ldb")
        .arg(format!("--db={}", flipped.display()))
        .arg("checkconsistency")
        .output()
        .unwrap();
    assert!(
        !ldb.status.success(),
        "RocksDB opens a MANIFEST with a flipped byte"
    );
    let (rc, r) = dbfsck(&["scan", flipped.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let f = findings(&r);
    assert!(
        f.iter().any(|x| x["kind"] == "checksum_mismatch"
            && x["path"].as_str().unwrap().contains("MANIFEST-")),
        "{f:#?}"
    );
}

fn scan_keys(db: &Path) -> std::collections::BTreeSet<String> {
    let o = Command::new("ldb")
        .arg(format!("--db={}", db.display()))
        .args(["scan", "--hex", "--no_value"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ldb scan: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("0x"))
        .map(str::to_ascii_lowercase)
        .collect()
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    fs::read(a).unwrap() == fs::read(b).unwrap()
}

/// Salvage: the damaged table is rewritten from its verifying blocks and the MANIFEST records
/// it, so RocksDB opens the database and `ldb scan` returns every key but exactly those of the
/// damaged block's range — where `ldb repair` on the same damage drops the whole table. A later
/// scan still reports the hole (`quarantined`); `dbfsck undo` puts every byte back.
///
/// Both forms are exercised: uncompressed, the rewrite fits in the original's length (zero
/// padding after the data blocks; the MANIFEST untouched); with snappy, whose index the rewrite
/// stores uncompressed, it does not, and one MANIFEST edit replaces the table's entry (same
/// number and level, new size and key bounds) — which RocksDB's debug build checks with its
/// version builder's consistency checks at `ldb checkconsistency`.
#[test]
fn salvage_keeps_every_key_but_the_damaged_blocks_and_undo_restores_it() {
    if !have_rocksdb() {
        return;
    }
    for (compression, actions) in [("none", 1), ("snappy", 2)] {
        salvage_case(compression, actions);
    }
}

fn salvage_case(compression: &str, actions: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    make_db(&db, 60_000, &[&format!("--compression_type={compression}")]);
    let original = scan_keys(&db);
    let table = largest(&db, "sst");
    let name = table.file_name().unwrap().to_owned();
    let bad = tmp.path().join("bad");
    copy_dir(&db, &bad);
    flip(&bad.join(&name), data_size(&table) / 2);
    let (rc, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_eq!(rc, 4);
    let f = findings(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    let range = f[0]["owner"]["key_range"].clone();
    let (from, to) = (
        range["from_hex"].as_str().unwrap().to_owned(),
        range["to_hex"].as_str().unwrap().to_owned(),
    );

    // What RocksDB's own repairer does with the same damage.
    let by_ldb = tmp.path().join("by-ldb");
    copy_dir(&bad, &by_ldb);
    let o = Command::new("ldb")
        .arg(format!("--db={}", by_ldb.display()))
        .arg("repair")
        .output()
        .unwrap();
    assert!(o.status.success());
    let after_ldb = scan_keys(&by_ldb);

    let fixed = tmp.path().join("fixed");
    copy_dir(&bad, &fixed);
    let (rc, r) = dbfsck(&["scan", "--repair", fixed.to_str().unwrap()]);
    assert_eq!(rc, 4, "data was lost, so the damage bit stays: {r:#}");
    let repairs = r["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), actions, "{repairs:#?}");
    // One action: the table keeps its length; two: it does not, and the MANIFEST says so.
    let same_len =
        fs::metadata(fixed.join(&name)).unwrap().len() == fs::metadata(&table).unwrap().len();
    assert_eq!(same_len, actions == 1, "{compression}");
    assert!(
        repairs
            .iter()
            .all(|x| x["action"] == "salvage" && x["result"] == "applied"),
        "{repairs:#?}"
    );
    let undo_log = r["undo_log"].as_str().unwrap().to_owned();
    let check = Command::new("ldb")
        .arg(format!("--db={}", fixed.display()))
        .arg("checkconsistency")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let after = scan_keys(&fixed);
    let lost: Vec<&String> = original.difference(&after).collect();
    assert!(after.is_subset(&original));
    assert!(!lost.is_empty());
    for k in &lost {
        assert!(
            k.as_str() >= from.as_str() && k.as_str() <= to.as_str(),
            "lost key {k} outside the reported range {from}..={to}"
        );
    }
    println!(
        "{compression}: {} keys; salvage keeps {} (loses {}, all in {from}..={to}); ldb repair keeps {} (loses {})",
        original.len(),
        after.len(),
        lost.len(),
        after_ldb.len(),
        original.len() - after_ldb.len()
    );
    assert!(
        after.len() > after_ldb.len(),
        "ldb repair lost no more than the salvage"
    );

    // The hole stays on the record.
    let (rc, r) = dbfsck(&["scan", fixed.to_str().unwrap()]);
    assert_eq!(rc, 4);
    let f = findings(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["kind"], "quarantined");

    // Undo: byte for byte what the scan saw.
    let o = common::bin().args(["undo", &undo_log]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for e in fs::read_dir(&bad).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && p.file_name().unwrap() != "LOG" {
            assert!(
                same_bytes(&p, &fixed.join(p.file_name().unwrap())),
                "{p:?} differs after undo"
            );
        }
    }
}

/// A torn WAL tail is cut at the end of its last whole record (`truncate_tail`), after which the
/// scan is clean and `ldb dump_wal` reads the same batches; undo puts the piece back.
#[test]
fn repair_cuts_a_torn_wal_tail_and_undo_puts_it_back() {
    let Some(tmp) = scratch() else {
        return;
    };
    let db = tmp.path().join("db");
    // A newest WAL with records in it (one just switched to can be empty): sizes are tried.
    let mut wal = PathBuf::new();
    for num in [20_000, 23_000, 17_000, 26_000] {
        let _ = fs::remove_dir_all(&db);
        make_db(&db, num, &["--compression_type=none"]);
        wal = files(&db, "log").pop().unwrap();
        if fs::metadata(&wal).unwrap().len() > 1000 {
            break;
        }
    }
    let name = wal.file_name().unwrap().to_owned();
    let len = fs::metadata(&wal).unwrap().len();
    assert!(len > 1000, "the newest WAL is {len} bytes");
    cut_to(&wal, len - 3);
    let torn = tmp.path().join("torn");
    copy_dir(&db, &torn);
    let (before, _) = dump_wal(&db, &wal);
    let (rc, r) = dbfsck(&["scan", "--repair", db.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    let f = findings(&r);
    let repairs = r["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), 1, "{r:#}");
    assert_eq!(repairs[0]["action"], "truncate_tail");
    assert_eq!(repairs[0]["result"], "applied");
    assert_eq!(
        fs::metadata(&wal).unwrap().len(),
        f[0]["offset"].as_u64().unwrap()
    );
    let (after, said) = dump_wal(&db, &wal);
    assert_eq!(after, before, "{said}");
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 0);
    assert!(findings(&r).is_empty(), "{r:#}");
    let undo_log = r["undo_log"].as_str().map(str::to_owned);
    assert!(undo_log.is_none());
    let logs: Vec<PathBuf> = fs::read_dir(db.join(".dbfsck"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    let o = common::bin().arg("undo").arg(&logs[0]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(same_bytes(&wal, &torn.join(&name)));
}

/// While RocksDB has the database open (`ldb load` waiting for input holds its LOCK), a repair writes
/// nothing: the scan warns that the database is open and the repair is refused.
#[test]
fn no_repair_while_rocksdb_holds_the_lock() {
    let Some((_tmp, db)) = fresh_db(20_000, &["--compression_type=none"]) else {
        return;
    };
    let table = largest(&db, "sst");
    flip(&table, data_size(&table) / 2);
    let before = fs::read(&table).unwrap();
    // `ldb load` holds the database open while it waits for keys on its standard input.
    let mut reader = Command::new("ldb")
        .arg(format!("--db={}", db.display()))
        .arg("load")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it holds the LOCK (the scan's warning says so).
    let mut open = false;
    for _ in 0..100 {
        let (_, r) = dbfsck(&["scan", db.to_str().unwrap()]);
        if r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["message"].as_str().unwrap().contains("database is open"))
        {
            open = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (rc, r) = dbfsck(&["scan", "--repair", db.to_str().unwrap()]);
    reader.kill().unwrap();
    reader.wait().unwrap();
    assert!(open, "ldb load never held the LOCK");
    assert_eq!(rc & 8, 8, "{r:#}");
    assert!(
        r["repairs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["result"] != "applied"),
        "{r:#}"
    );
    assert_eq!(
        fs::read(&table).unwrap(),
        before,
        "the table was written while RocksDB had it open"
    );
}

/// Blob files (integrated BlobDB): verified record by record, clean as RocksDB writes them; a
/// flipped byte in a blob is one `checksum_mismatch` naming its key, which RocksDB's own read of
/// the database then fails on.
#[test]
fn blob_files_are_verified_record_by_record() {
    let Some(tmp) = scratch() else {
        return;
    };
    let db = tmp.path().join("db");
    // fillseq: every key written once, so every blob is the live value of its key (RocksDB
    // reads it); a later flag overrides make_db's fillrandom.
    make_db(
        &db,
        20_000,
        &[
            "--benchmarks=fillseq",
            "--enable_blob_files=1",
            "--min_blob_size=50",
            "--compression_type=none",
        ],
    );
    let blobs = files(&db, "blob");
    assert!(!blobs.is_empty());
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    let skipped: Vec<&str> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["path"].as_str())
        .collect();
    assert!(
        blobs
            .iter()
            .any(|b| !skipped.contains(&b.to_str().unwrap())),
        "no blob file scanned: {skipped:?}"
    );
    let blob = blobs
        .iter()
        .filter(|b| !skipped.contains(&b.to_str().unwrap()))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let len = fs::metadata(blob).unwrap().len();
    // Inside a value: past the record header (32 bytes) and the 16-byte key of some record in
    // the middle, found by walking the records from the 30-byte header.
    let bytes = fs::read(blob).unwrap();
    let mut p = 30usize;
    let mut target = None;
    while p + 32 <= bytes.len() - 32 {
        let k = u64::from_le_bytes(bytes[p..p + 8].try_into().unwrap()) as usize;
        let v = u64::from_le_bytes(bytes[p + 8..p + 16].try_into().unwrap()) as usize;
        if p as u64 > len / 2 {
            target = Some((p + 32 + k + v / 2, bytes[p + 32..p + 32 + k].to_vec()));
            break;
        }
        p += 32 + k + v;
    }
    let (at, key) = target.unwrap();
    flip(blob, at as u64);
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let f = findings(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["kind"], "checksum_mismatch");
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(f[0]["owner"]["key_hex"], hex.as_str());
    let o = Command::new("ldb")
        .arg(format!("--db={}", db.display()))
        .args(["scan", "--hex"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "ldb scan read the damaged blob");
    println!(
        "blob: dbfsck {}; ldb scan: {}",
        f[0]["detail"],
        String::from_utf8_lossy(&o.stderr).trim()
    );
}

/// An older WAL cut exactly on a record boundary leaves nothing torn to see — the hole RocksDB's
/// point-in-time recovery cannot detect (PR #7701) — but the sequence numbers then jump between
/// it and the next WAL: a warning names the missing range, which `ldb dump_wal` confirms.
#[test]
fn a_wal_cut_on_a_record_boundary_shows_as_a_sequence_gap() {
    let Some(tmp) = scratch() else {
        return;
    };
    let db = tmp.path().join("db");
    // Two live WALs: whether the flush of the memtable before the last one ends before db_bench
    // closes the database is timing, so a few sizes are tried.
    let mut wals = Vec::new();
    for num in [200_000, 230_000, 170_000, 260_000, 140_000] {
        let _ = fs::remove_dir_all(&db);
        make_db(
            &db,
            num,
            &["--compression_type=none", "--write_buffer_size=4194304"],
        );
        wals = files(&db, "log");
        if wals.len() >= 2 {
            break;
        }
    }
    assert!(wals.len() >= 2, "{wals:?}");
    let (_, clean) = dbfsck(&["scan", db.to_str().unwrap()]);
    let gap_warnings = |r: &Value| {
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["message"].as_str().unwrap().contains("are in no WAL"))
            .count()
    };
    assert_eq!(gap_warnings(&clean), 0, "{clean:#}");
    // Cut the older live WAL at the start of a batch in its middle.
    let older = &wals[wals.len() - 2];
    let o = Command::new("ldb")
        .arg(format!("--db={}", db.display()))
        .arg("dump_wal")
        .arg(format!("--walfile={}", older.display()))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<Vec<u64>> = out
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split(',')
                .take(4)
                .filter_map(|x| x.trim().parse().ok())
                .collect();
            (v.len() == 4).then_some(v)
        })
        .collect();
    let mid = &rows[rows.len() / 2];
    let (seq, offset) = (mid[0], mid[3]);
    cut_to(older, offset);
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 0, "nothing torn, nothing damaged to see: {r:#}");
    assert_eq!(gap_warnings(&r), 1, "{r:#}");
    let w = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["message"].as_str().unwrap().contains("are in no WAL"))
        .unwrap();
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains(&format!("sequence numbers {seq}..=")),
        "{w}"
    );
    println!("cut at {offset} (batch {seq}): {}", w["message"]);
}

/// Several column families: each table's damage is owned by the column family the MANIFEST
/// puts it in, which is the one its own properties name (`sst_dump --show_properties`).
#[test]
fn damage_names_the_column_family_of_its_table() {
    let Some((tmp, db)) = fresh_db(
        // Each family gets about 2 MB: each flushes at least once (1 MiB write buffers).
        60_000,
        &["--num_column_families=3", "--compression_type=none"],
    ) else {
        return;
    };
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    assert!(
        findings(&r).is_empty() && r["warnings"].as_array().unwrap().is_empty(),
        "{r:#}"
    );
    let tables = files(&db, "sst");
    let mut seen = std::collections::BTreeSet::new();
    for t in &tables {
        let o = Command::new("sst_dump")
            .arg(format!("--file={}", t.display()))
            .arg("--show_properties")
            .output()
            .unwrap();
        let props = String::from_utf8_lossy(&o.stdout).into_owned();
        let Some(cf) = props
            .lines()
            .find_map(|l| l.trim().strip_prefix("column family name: "))
        else {
            continue;
        };
        let bad = tmp
            .path()
            .join(format!("bad-{}", t.file_name().unwrap().to_str().unwrap()));
        copy_dir(&db, &bad);
        flip(&bad.join(t.file_name().unwrap()), data_size(t) / 2);
        let (rc, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
        assert_eq!(rc, 4);
        let f = findings(&r);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0]["owner"]["column_family"], cf.trim(), "{t:?}");
        seen.insert(cf.trim().to_owned());
    }
    assert!(seen.len() >= 2, "tables of only {seen:?}");
}

/// Regression (adversarial review): a whole 32 KiB WAL block zeroed in the middle of the newest
/// WAL was taken for preallocated space, and the fragmented record open across it was glued to
/// the fragment after it — reported clean, while RocksDB's recovery stops there ("error in
/// middle of record"). Zeros before valid records are damage; zeros at the end stay the normal
/// end of a log (100 zero bytes appended: clean, as RocksDB takes it).
#[test]
fn a_zeroed_wal_block_before_valid_records_is_damage() {
    let Some(tmp) = scratch() else {
        return;
    };
    let db = tmp.path().join("db");
    let mut wal = PathBuf::new();
    for num in [30_000, 33_000, 27_000, 36_000, 24_000] {
        let _ = fs::remove_dir_all(&db);
        make_db(&db, num, &["--compression_type=none"]);
        wal = files(&db, "log").pop().unwrap();
        if fs::metadata(&wal).unwrap().len() > 5 * 32768 {
            break;
        }
    }
    let len = fs::metadata(&wal).unwrap().len();
    assert!(len > 5 * 32768, "the newest WAL is {len} bytes");
    let zeroed = tmp.path().join("zeroed");
    copy_dir(&db, &zeroed);
    let zwal = zeroed.join(wal.file_name().unwrap());
    let mut b = fs::read(&zwal).unwrap();
    b[3 * 32768..4 * 32768].fill(0);
    fs::write(&zwal, &b).unwrap();
    let (rc, r) = dbfsck(&["scan", zeroed.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let f = findings(&r);
    assert!(
        f.iter()
            .any(|x| x["kind"] == "zeroed_page" && x["offset"].as_u64().unwrap() <= 3 * 32768),
        "{f:#?}"
    );
    let (_, said) = dump_wal(&zeroed, &zwal);
    assert!(said.contains("Corruption"), "{said}");

    let padded = tmp.path().join("padded");
    copy_dir(&db, &padded);
    let pwal = padded.join(wal.file_name().unwrap());
    let mut b = fs::read(&pwal).unwrap();
    b.extend_from_slice(&[0u8; 100]);
    fs::write(&pwal, &b).unwrap();
    let (rc, r) = dbfsck(&["scan", padded.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    assert!(findings(&r).is_empty(), "{r:#}");
}

/// Regression (adversarial review): an empty, zeroed or first-record-cut MANIFEST gave no live
/// set, so every table was skipped as obsolete and the scan said clean (exit 0) — and a repair
/// then cut the MANIFEST to nothing. Such a MANIFEST is damage (RocksDB refuses to open), every
/// table is checked, and no repair cuts it.
#[test]
fn a_manifest_without_a_live_set_is_damage_and_never_cut_to_nothing() {
    let Some((tmp, db)) = fresh_db(30_000, &["--compression_type=none"]) else {
        return;
    };
    let manifest = dbfsck_core::lsm::current_manifest(&db).unwrap();
    let name = manifest.file_name().unwrap().to_owned();
    let len = fs::metadata(&manifest).unwrap().len();
    let tables = files(&db, "sst").len();
    for (what, bytes) in [
        ("zeroed", vec![0u8; len as usize]),
        ("empty", Vec::new()),
        ("cut to 5 bytes", fs::read(&manifest).unwrap()[..5].to_vec()),
    ] {
        let copy = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&db, &copy);
        fs::write(copy.join(&name), &bytes).unwrap();
        let ldb = Command::new("ldb")
            .arg(format!("--db={}", copy.display()))
            .arg("checkconsistency")
            .output()
            .unwrap();
        assert!(!ldb.status.success(), "{what}: RocksDB opened it");
        let (rc, r) = dbfsck(&["scan", copy.to_str().unwrap()]);
        assert_eq!(rc, 4, "{what}: {r:#}");
        let skipped_tables = r["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["path"].as_str().unwrap().ends_with(".sst"))
            .count();
        assert_eq!(
            skipped_tables, 0,
            "{what}: tables skipped as obsolete: {r:#}"
        );
        assert!(
            r["summary"]["files"].as_u64().unwrap() as usize > tables,
            "{what}: {r:#}"
        );
        let (_, r) = dbfsck(&["scan", "--repair", copy.to_str().unwrap()]);
        assert!(
            r["repairs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["result"] != "applied"),
            "{what}: {r:#}"
        );
        assert_eq!(
            fs::read(copy.join(&name)).unwrap(),
            bytes,
            "{what}: the MANIFEST was changed"
        );
    }
}

/// A copy of a database without its LOCK file (RocksDB creates it when it opens one) is
/// repaired like the original: no engine has it open.
#[test]
fn a_copy_without_lock_is_repaired() {
    let Some((_tmp, db)) = fresh_db(20_000, &["--compression_type=none"]) else {
        return;
    };
    fs::remove_file(db.join("LOCK")).unwrap();
    let table = largest(&db, "sst");
    flip(&table, data_size(&table) / 2);
    let (rc, r) = dbfsck(&["scan", "--repair", db.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let repairs = r["repairs"].as_array().unwrap();
    assert!(
        !repairs.is_empty() && repairs.iter().all(|x| x["result"] == "applied"),
        "{r:#}"
    );
}

/// Regression (adversarial review): a MANIFEST edit whose checksum verifies but which RocksDB's
/// version builder refuses (deleting a table that is not in the LSM tree) was applied silently;
/// RocksDB refuses to open such a database, and so the scan calls it damage.
#[test]
fn a_manifest_edit_rocksdb_refuses_is_damage() {
    let Some((_tmp, db)) = fresh_db(20_000, &["--compression_type=none"]) else {
        return;
    };
    let manifest = dbfsck_core::lsm::current_manifest(&db).unwrap();
    let mut bytes = fs::read(&manifest).unwrap();
    // DeletedFile (tag 6): level 4, table 0.
    let edit = [6u8, 4, 0];
    bytes.extend_from_slice(&dbfsck_core::lsm::log::append(bytes.len() as u64, &[&edit]));
    fs::write(&manifest, &bytes).unwrap();
    let ldb = Command::new("ldb")
        .arg(format!("--db={}", db.display()))
        .arg("checkconsistency")
        .output()
        .unwrap();
    assert!(!ldb.status.success(), "RocksDB opened it");
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let f = findings(&r);
    assert!(
        f.iter()
            .any(|x| x["path"].as_str().unwrap().contains("MANIFEST-")
                && x["detail"]
                    .as_str()
                    .unwrap()
                    .contains("not in the LSM tree")),
        "{f:#?}"
    );
}

/// A table whose damage cannot be salvaged (its index fails) is quarantined: its damaged bytes
/// copied to the quarantine, the table left as it is, the damage bit kept.
#[test]
fn an_unsalvageable_table_is_quarantined_not_rewritten() {
    let Some((_tmp, db)) = fresh_db(20_000, &["--compression_type=none"]) else {
        return;
    };
    let table = largest(&db, "sst");
    let (index_off, index_size) = index_handle(&table);
    flip(&table, index_off + index_size / 2);
    let before = fs::read(&table).unwrap();
    let (rc, r) = dbfsck(&["scan", "--repair", db.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let repairs = r["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), 1, "{r:#}");
    assert_eq!(repairs[0]["action"], "quarantine");
    assert_eq!(repairs[0]["result"], "applied");
    assert_eq!(fs::read(&table).unwrap(), before, "the table was written");
    let q = fs::read_to_string(db.join(".dbfsck/quarantine/manifest.jsonl")).unwrap();
    assert!(q.contains(&format!("\"offset\":{index_off}")), "{q}");
}

/// An obsolete table (not in the MANIFEST, numbered below its next file number) is normally a
/// compaction's input, whose keys live tables hold too: skipped quietly. One whose keys lie
/// outside every live table's range holds keys the live set lacks: skipped, and said loudly,
/// since RocksDB deletes it on the next read-write open.
#[test]
fn an_obsolete_table_with_keys_the_live_set_lacks_is_said_loudly() {
    let Some((tmp, db)) = fresh_db(20_000, &["--compression_type=none"]) else {
        return;
    };
    // Another database whose keys sort after every db_bench key.
    let other = tmp.path().join("other");
    for i in 0..50 {
        let o = Command::new("ldb")
            .arg(format!("--db={}", other.display()))
            .arg("--create_if_missing")
            .args(["put", &format!("zzz{i:04}"), "value"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new("ldb")
        .arg(format!("--db={}", other.display()))
        .arg("compact")
        .output()
        .unwrap();
    assert!(o.status.success());
    let foreign = files(&other, "sst")
        .pop()
        .expect("ldb compact wrote a table");
    fs::copy(&foreign, db.join("000003.sst")).unwrap();
    // And a copy of a live table under another obsolete number: its keys are live.
    fs::copy(largest(&db, "sst"), db.join("000004.sst")).unwrap();
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    let loud: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            w["message"]
                .as_str()
                .unwrap()
                .contains("lie outside every live table")
        })
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    assert_eq!(loud.len(), 1, "{r:#}");
    assert!(loud[0].ends_with("000003.sst"), "{loud:?}");
    let skipped: Vec<&str> = r["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["path"].as_str())
        .collect();
    assert!(
        skipped.iter().any(|p| p.ends_with("000003.sst"))
            && skipped.iter().any(|p| p.ends_with("000004.sst"))
    );
}
