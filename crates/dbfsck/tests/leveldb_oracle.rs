//! Oracle test of the `leveldb` format against LevelDB itself (Debian's libleveldb-dev, driven
//! through its C API by `tests/data/leveldb_tool.c`, built here with `cc`): a database written
//! in two sessions — the second one ended without a close, as a crash ends it, so its last
//! writes are only in the WAL and a compaction may be left unfinished — is clean to dbfsck,
//! and LevelDB opens it with `paranoid_checks` and reads every key with `verify_checksums`.
//! On damaged copies dbfsck agrees with LevelDB's own reader:
//!
//! - a flipped byte in a data block of a live table: one `checksum_mismatch` on that block,
//!   with the key range it held; LevelDB's verifying read fails with "block checksum mismatch";
//! - the WAL cut inside its last record: `torn_tail` (exit 0); LevelDB opens it and has every
//!   key but that last write's;
//! - a flipped byte in the middle of the WAL: damage (exit 4); LevelDB's paranoid open fails
//!   with "checksum mismatch".
//!
//! Needs libleveldb-dev and a C compiler (`scripts/test` installs them); skipped where they are
//! missing unless the run must be complete (`CI`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::json_run as dbfsck;
use common::lsm::*;

/// Builds the LevelDB tool into `dir`, or says why it cannot.
fn build_tool(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/leveldb_tool.c");
    let out = dir.join("leveldb_tool");
    let built = Path::new("/usr/include/leveldb/c.h").exists()
        && Command::new("cc")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .arg("-lleveldb")
            .status()
            .is_ok_and(|s| s.success());
    dbfsck_testkit::can_run(
        "the LevelDB oracle test",
        if built {
            Ok(())
        } else {
            Err("libleveldb-dev or a C compiler is not installed".into())
        },
    )
    .then_some(out)
}

fn tool(t: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(t).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

fn keys(said: &str) -> u64 {
    said.lines()
        .find_map(|l| l.strip_prefix("keys="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn leveldb_databases_are_judged_as_leveldb_reads_them() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(t) = build_tool(tmp.path()) else {
        return;
    };
    let db = tmp.path().join("db");
    let (ok, said) = tool(&t, &["write", db.to_str().unwrap(), "20000", "1000"]);
    assert!(ok, "{said}");
    // Scanned before LevelDB opens it again (an open compacts and deletes files).
    let (rc, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    assert!(findings(&r).is_empty(), "{r:#}");
    assert!(
        !r["warnings"].as_array().unwrap().iter().any(|w| {
            let m = w["message"].as_str().unwrap();
            // No sequence gap, and the orphan tables LevelDB leaves hold no keys the live
            // set lacks (formats-lsm.md §3.3: they are compaction inputs).
            m.contains("are in no WAL") || m.contains("lie outside every live table")
        }),
        "{r:#}"
    );
    println!(
        "clean: {} files, {} units; skipped: {}",
        r["summary"]["files"], r["summary"]["units"], r["skipped"]
    );
    let check = tmp.path().join("check");
    copy_dir(&db, &check);
    let (ok, said) = tool(&t, &["verify", check.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert_eq!(keys(&said), 21000);

    // A flipped byte in the middle of the largest live table's data blocks.
    let live: Vec<PathBuf> = files(&db, "ldb")
        .into_iter()
        .filter(|p| {
            !r["skipped"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["path"].as_str() == p.to_str())
        })
        .collect();
    let table = live
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let bad = tmp.path().join("bad");
    copy_dir(&db, &bad);
    let bad_table = bad.join(table.file_name().unwrap());
    flip(&bad_table, fs::metadata(table).unwrap().len() / 3);
    let (rc, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let f = findings(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["kind"], "checksum_mismatch");
    assert_eq!(f[0]["format"], "leveldb");
    assert_eq!(f[0]["owner"]["block_type"], "data");
    assert!(f[0]["owner"]["key_range"]["from"]
        .as_str()
        .unwrap()
        .starts_with("key"));
    let (ok, said) = tool(&t, &["verify", bad.to_str().unwrap()]);
    assert!(!ok && said.contains("block checksum mismatch"), "{said}");
    println!(
        "data block: dbfsck {}; LevelDB: {}",
        f[0]["detail"],
        said.trim().replace('\n', "; ")
    );

    // Salvage: LevelDB then opens the database (paranoid) and reads every key with its
    // checksums verified, all but the damaged block's.
    let fixed = tmp.path().join("fixed");
    copy_dir(&bad, &fixed);
    let (rc, r) = dbfsck(&["scan", "--repair", fixed.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let repairs = r["repairs"].as_array().unwrap();
    assert!(
        !repairs.is_empty()
            && repairs
                .iter()
                .all(|x| x["action"] == "salvage" && x["result"] == "applied"),
        "{r:#}"
    );
    let (ok, said) = tool(&t, &["verify", fixed.to_str().unwrap()]);
    assert!(ok, "{said}");
    let kept = keys(&said);
    assert!(kept < 21000 && kept > 21000 - 200, "{said}");
    println!("salvaged: LevelDB reads {kept} of 21000 keys, every checksum verified");

    // The WAL cut inside its last record: the crash's unsynced write.
    let wal = files(&db, "log").pop().unwrap();
    let len = fs::metadata(&wal).unwrap().len();
    let cut = tmp.path().join("cut");
    copy_dir(&db, &cut);
    let cut_wal = cut.join(wal.file_name().unwrap());
    cut_to(&cut_wal, len - 5);
    let (rc, r) = dbfsck(&["scan", cut.to_str().unwrap()]);
    assert_eq!(rc, 0, "{r:#}");
    let f = findings(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["kind"], "torn_tail");
    let (ok, said) = tool(&t, &["verify", cut.to_str().unwrap()]);
    assert!(ok, "{said}");
    assert_eq!(keys(&said), 20999, "{said}");

    // A flipped byte in the WAL's first block, with more blocks after it: damage.
    assert!(len > 2 * 32768, "the WAL is {len} bytes");
    let mid = tmp.path().join("mid");
    copy_dir(&db, &mid);
    flip(&mid.join(wal.file_name().unwrap()), 5000);
    let (rc, r) = dbfsck(&["scan", mid.to_str().unwrap()]);
    assert_eq!(rc, 4, "{r:#}");
    let f = findings(&r);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0]["kind"], "checksum_mismatch");
    let (ok, said) = tool(&t, &["verify", mid.to_str().unwrap()]);
    assert!(!ok && said.contains("checksum mismatch"), "{said}");
    println!(
        "mid-WAL: dbfsck {}; LevelDB: {}",
        f[0]["detail"],
        said.trim().replace('\n', "; ")
    );
}
