//! Any bytes as a pgBackRest `backup.manifest` and as a WAL-G stop sentinel, beside a small
//! backup of each layout (`dbfsck_core::postgres::check_pgbackrest_backup`, `check_walg_backup`):
//! no panic, every finding names a file, nothing outside the backup is read.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dbfsck_core::postgres::{check_pgbackrest_backup, check_walg_backup};
use libfuzzer_sys::fuzz_target;

/// This process's scratch repository and storage.
fn root() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("dbfsck-fuzz-repos-{}", std::process::id()));
        let pgbr = d.join("backup/main/20261204-000000F/pg_data/base/1");
        std::fs::create_dir_all(&pgbr).unwrap();
        std::fs::write(pgbr.join("1259"), [0u8; 8192]).unwrap();
        let walg = d.join("basebackups_005/base_000000010000000000000002/tar_partitions");
        std::fs::create_dir_all(&walg).unwrap();
        std::fs::write(walg.join("part_1.tar"), [0u8; 1024]).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let pgbr = root().join("backup/main/20261204-000000F");
    std::fs::write(pgbr.join("backup.manifest"), data).unwrap();
    let (findings, _) = check_pgbackrest_backup(&pgbr);
    assert!(findings.iter().all(|f| f.file.is_some()));
    let walg = root().join("basebackups_005/base_000000010000000000000002");
    std::fs::write(
        root().join("basebackups_005/base_000000010000000000000002_backup_stop_sentinel.json"),
        data,
    )
    .unwrap();
    let (findings, _) = check_walg_backup(&walg);
    assert!(findings.iter().all(|f| f.file.is_some()));
});
