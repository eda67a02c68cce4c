//! Oracle test of WAL-G layouts. WAL-G has no Debian package, so the layout is built by hand from
//! real PostgreSQL 15 files, as WAL-G's documentation and source describe it
//! (`formats-pgwal.md` §6.3): a real `pg_basebackup -Ft -X none` backup's `base.tar` becomes
//! `basebackups_005/base_<start segment>/tar_partitions/part_1.tar.lz4` (LZ4 frame, WAL-G's
//! default), its stop sentinel is written from the backup's own manifest (`LSN`, `FinishLSN`,
//! `Files`), and the real archived WAL becomes `wal_005/<name>.<ext>`, its segments compressed
//! with lz4, zstd and lzma-alone in turn (history and backup files too). dbfsck calls the store
//! restorable to its end, and predicts the last record a restore replays — which a real archive
//! recovery of the same backup over the same (uncompressed) WAL then reports as "redo done at".
//! A removed WAL object, a flipped byte in the partition and a lost sentinel are each reported
//! with the verdict they imply.
//!
//! Needs root, the `postgres` user and PostgreSQL 15 (`common::pg`); skipped where they are
//! missing unless the run must be complete (`CI`), where it fails.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

fn lz4(data: &[u8]) -> Vec<u8> {
    let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

fn lzma(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lzma_rs::lzma_compress(&mut &data[..], &mut out).unwrap();
    out
}

/// LSN text (`X/Y`) as a number.
fn lsn(s: &str) -> u64 {
    let (hi, lo) = s.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// The offset of the data of member `want` in the tar archive `tar` (its 512-byte headers).
fn member_data(tar: &[u8], want: &str) -> usize {
    let mut at = 0;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_owned();
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&h[124..136]).trim_matches(|c: char| c == '\0' || c == ' '),
            8,
        )
        .unwrap_or(0);
        if name.trim_start_matches("./") == want {
            return at + 512;
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("no member {want}");
}

/// Builds the WAL-G store at `store` from a tar backup and an archive; returns the backup's
/// folder.
fn build_store(backup: &Path, archive: &Path, store: &Path) -> PathBuf {
    build_store_with(backup, archive, store, |_| {})
}

/// [`build_store`], `damage` applied to `base.tar` before it is compressed.
fn build_store_with(
    backup: &Path,
    archive: &Path,
    store: &Path,
    damage: impl FnOnce(&mut Vec<u8>),
) -> PathBuf {
    let manifest: Value =
        serde_json::from_slice(&fs::read(backup.join("backup_manifest")).unwrap()).unwrap();
    let range = &manifest["WAL-Ranges"][0];
    let start = lsn(range["Start-LSN"].as_str().unwrap());
    let finish = lsn(range["End-LSN"].as_str().unwrap());
    let tli = range["Timeline"].as_u64().unwrap();
    let name = format!(
        "base_{tli:08X}{:08X}{:08X}",
        start >> 32,
        (start >> 24) & 0xff
    );
    let dir = store.join("basebackups_005").join(&name);
    fs::create_dir_all(dir.join("tar_partitions")).unwrap();
    let mut base = fs::read(backup.join("base.tar")).unwrap();
    damage(&mut base);
    fs::write(dir.join("tar_partitions/part_1.tar.lz4"), lz4(&base)).unwrap();
    let files: serde_json::Map<String, Value> = manifest["Files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                format!("/{}", f["Path"].as_str().unwrap()),
                serde_json::json!({"IsIncremented": false, "IsSkipped": false, "MTime": "2026-12-04T00:00:00Z"}),
            )
        })
        .collect();
    let sentinel = serde_json::json!({
        "LSN": start,
        "FinishLSN": finish,
        "PgVersion": 150000,
        "UncompressedSize": base.len(),
        "Files": files,
    });
    fs::write(
        store
            .join("basebackups_005")
            .join(format!("{name}_backup_stop_sentinel.json")),
        serde_json::to_vec(&sentinel).unwrap(),
    )
    .unwrap();
    fs::write(dir.join("metadata.json"), b"{}").unwrap();
    let wal = store.join("wal_005");
    fs::create_dir_all(&wal).unwrap();
    let mut names: Vec<String> = fs::read_dir(archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for (i, n) in names.iter().enumerate() {
        let bytes = fs::read(archive.join(n)).unwrap();
        let (ext, packed) = match i % 3 {
            0 => ("lz4", lz4(&bytes)),
            1 => ("zst", zstd(&bytes)),
            _ => ("lzma", lzma(&bytes)),
        };
        fs::write(wal.join(format!("{n}.{ext}")), packed).unwrap();
    }
    dir
}

fn copy_store(store: &Path, to: &Path) -> PathBuf {
    copy_tree(store.to_str().unwrap(), to);
    to.to_path_buf()
}

fn restore_of(v: &Value) -> &Value {
    &v["summary"]["restores"][0]
}

#[test]
fn walg_layouts_clean_and_damaged() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, archive, _cluster, sock, mut server) = archiving_cluster(&bin, "dbfsck-walg-");
    let top = tmp.path();
    pgbench_init(&bin, &sock, 1);
    psql(&bin, &sock, "create table t(id serial primary key)");
    let backup = top.join("tar");
    base_backup(&bin, &sock, &backup, &["-Ft", "-X", "none"]);
    for _ in 0..4 {
        psql(
            &bin,
            &sock,
            "insert into t(id) select nextval('t_id_seq') from generate_series(1, 20000)",
        );
        psql(&bin, &sock, "select pg_switch_wal()");
    }
    wait_archived(&bin, &sock);
    server.stop();
    let store = top.join("store");
    let dir = build_store(&backup, &archive, &store);

    // Clean: restorable, to the end of wal_005/.
    let (code, v) = dbfsck(&["scan", store.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    let b = &v["summary"]["backups"][0];
    assert_eq!(b["restorable"], true, "{b}");
    let r = restore_of(&v);
    assert_eq!(r["consistent"], true, "{r}");
    assert_eq!(r["reaches_archive_end"], true, "{r}");
    assert!(
        v["summary"]["units"].as_u64().unwrap() > 1000,
        "pages verified"
    );

    // A real archive recovery of the same backup over the same WAL ends where predicted.
    let restored = top.join("restored");
    fs::create_dir(&restored).unwrap();
    ok(
        Command::new("tar")
            .arg("-xf")
            .arg(backup.join("base.tar"))
            .arg("-C")
            .arg(&restored)
            .output()
            .unwrap(),
        "tar -xf",
    );
    fs::create_dir_all(restored.join("pg_wal")).unwrap();
    fs::write(restored.join("recovery.signal"), "").unwrap();
    chown_postgres(&restored);
    ok(
        Command::new("chmod")
            .args(["700"])
            .arg(&restored)
            .output()
            .unwrap(),
        "chmod",
    );
    let rsock = top.to_str().unwrap().to_owned();
    start_cluster(
        &bin,
        restored.to_str().unwrap(),
        &rsock,
        &format!(
            "-p 5498 -c archive_mode=off -c restore_command='cp {}/%f %p'",
            archive.display()
        ),
    );
    let mut guard = Server {
        bin: &bin,
        data: restored.to_str().unwrap().to_owned(),
        running: true,
    };
    let redo_done = redo_done(&top.join("log"));
    guard.stop();
    assert_eq!(r["last_replayed"].as_str(), Some(redo_done.as_str()), "{r}");

    // A WAL object removed after the backup's end: the restore stops there.
    let cut = copy_store(&store, &top.join("cut"));
    let mut segs: Vec<PathBuf> = fs::read_dir(cut.join("wal_005"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.len() > 24 && !n.contains(".backup") && !n.contains(".history")
        })
        .collect();
    segs.sort();
    let gone = segs[segs.len() - 2].clone();
    fs::remove_file(&gone).unwrap();
    let (code, v) = dbfsck(&["scan", cut.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v}");
    let r = restore_of(&v);
    assert_eq!(r["obstacle"]["reason"], "missing", "{r}");
    let gone_name = &gone.file_name().unwrap().to_str().unwrap()[..24];
    assert_eq!(r["obstacle"]["segment"].as_str(), Some(gone_name), "{r}");

    // A flipped byte in a page of a relation file inside the partition (flipped before it was
    // compressed: WAL-G keeps no checksum of a file, so only a page can show it): the page is
    // reported, in the partition at its offset in the decompressed tar, and the backup is not
    // restorable. (A flip in a non-relation file would go unseen: WAL-G records no file
    // checksums, which docs/postgres-backups.md §6 says.)
    let flipped = top.join("flipped");
    let mut page_at = 0;
    build_store_with(&backup, &archive, &flipped, |tar| {
        page_at = member_data(tar, "base/1/1259") + 8192;
        tar[page_at + 4000] ^= 0x10;
    });
    let (code, v) = dbfsck(&["scan", flipped.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v}");
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "checksum_mismatch")
        .unwrap_or_else(|| panic!("{}", v["findings"]));
    assert_eq!(f["owner"]["member"], "base/1/1259", "{f}");
    assert_eq!(f["offset"].as_u64(), Some(page_at as u64), "{f}");
    assert!(
        f["path"].as_str().unwrap().ends_with("part_1.tar.lz4"),
        "{f}"
    );
    assert_eq!(
        v["summary"]["backups"][0]["restorable"], false,
        "{}",
        v["summary"]
    );

    // The sentinel lost: the backup never finished, as far as WAL-G knows.
    let lost = copy_store(&store, &top.join("lost"));
    let sentinel = lost.join("basebackups_005").join(format!(
        "{}_backup_stop_sentinel.json",
        dir.file_name().unwrap().to_str().unwrap()
    ));
    fs::remove_file(sentinel).unwrap();
    let (code, v) = dbfsck(&["scan", lost.to_str().unwrap()]);
    assert_eq!(code & 4, 4, "{v}");
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "missing_file"
                && f["path"]
                    .as_str()
                    .unwrap()
                    .ends_with("_backup_stop_sentinel.json")),
        "{}",
        v["findings"]
    );
    assert_eq!(v["summary"]["backups"][0]["restorable"], false);
}
