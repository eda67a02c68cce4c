//! Any bytes as PostgreSQL's pg_control, as a relation file name, as a data block (at every
//! block size PostgreSQL allows), and as a base backup's `base.tar` opened and verified member
//! by member: no panic; a verdict with checksums carries both.
#![no_main]

use std::path::Path;

use dbfsck_core::postgres::{judge_block, parse_control, parse_relfile_name, PostgresFormat};
use dbfsck_core::{BytesSource, Chunk, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_control(data);
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = parse_relfile_name(name);
    }
    for bs in [1024usize, 2048, 4096, 8192, 16384, 32768] {
        if data.len() >= bs {
            let blk = data.first().copied().unwrap_or(0) as u64;
            let _ = judge_block(&data[..bs], blk);
        }
    }
    let _ = judge_block(data, 0);
    let format = PostgresFormat::default();
    if let Ok(opened) = format.open(Path::new("/nonexistent/base.tar"), &BytesSource(data)) {
        if let Some(check) = opened.check {
            let mut out = Vec::new();
            for e in check.extents() {
                let bytes = data
                    .get(e.start as usize..e.end as usize)
                    .unwrap_or_default();
                check.verify(
                    &Chunk {
                        offset: e.start,
                        bytes,
                    },
                    &mut out,
                );
            }
            let _ = check.notes();
        }
    }
});
