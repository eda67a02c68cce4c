//! Any bytes as a base backup's `backup_manifest`, compared with a small backup directory
//! (`dbfsck_core::postgres::check_backup_manifest`): no panic, and every finding names a file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dbfsck_core::postgres::check_backup_manifest;
use libfuzzer_sys::fuzz_target;

/// This process's scratch backup: two files the manifest may or may not list.
fn backup() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("dbfsck-fuzz-manifest-{}", std::process::id()));
        std::fs::create_dir_all(d.join("global")).unwrap();
        std::fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(d.join("global").join("1262"), [0u8; 8192]).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let (findings, _) = check_backup_manifest(backup(), data);
    assert!(findings.iter().all(|f| f.file.is_some()));
});
