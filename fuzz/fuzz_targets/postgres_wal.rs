//! Any bytes as PostgreSQL WAL: a segment (split in two at the first byte's choice, so the join
//! of a record crossing segments runs too), a timeline history file and a backup history file,
//! then the scan's conclusion: no panic, and every finding names its file.
#![no_main]

use std::path::Path;

use dbfsck_core::postgres::PostgresFormat;
use dbfsck_core::{BytesSource, Chunk, Format};
use libfuzzer_sys::fuzz_target;

fn scan(format: &PostgresFormat, name: &str, bytes: &[u8]) {
    let path = Path::new("/nonexistent/dbfsck-fuzz-wal").join(name);
    if let Ok(opened) = format.open(&path, &BytesSource(bytes)) {
        if let Some(check) = opened.check {
            let mut out = Vec::new();
            check.verify(&Chunk { offset: 0, bytes }, &mut out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let format = PostgresFormat::default();
    let cut = data.first().map_or(0, |&b| b as usize * data.len() / 256);
    let (a, b) = data.split_at(cut.min(data.len()));
    scan(&format, "000000010000000000000001", a);
    scan(&format, "000000010000000000000002", b);
    scan(&format, "00000002.history", data);
    scan(&format, "000000010000000000000001.00000028.backup", data);
    let c = format.conclude(true);
    assert!(c.findings.iter().all(|f| f.file.is_some()));
});
