//! Any bytes as an undo log: the reader never panics and accepts only sealed logs whose every
//! path is absolute and plain.
#![no_main]

use std::path::Path;

use dbfsck_repair::storage::crash::CrashStorage;
use dbfsck_repair::storage::{Storage, StorageFile};
use dbfsck_repair::undo::{is_plain_absolute, read_undo_log};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let storage = CrashStorage::new();
    let path = Path::new("/undo.log");
    let mut f = storage.create_new(path).unwrap();
    f.write_all_at(data, 0).unwrap();
    if let Ok(entries) = read_undo_log(&storage, path) {
        for e in &entries {
            assert!(is_plain_absolute(e.path()));
        }
    }
});
