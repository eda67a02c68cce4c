//! Any bytes as a RocksDB or LevelDB table: the footer (and its magic-less salvage), block
//! entries in every value form, index handles, properties and decompression of every
//! compression code; then the whole file opened through both formats and every extent verified.
//! No panic, and every extent inside the file.
#![no_main]

use std::path::Path;

use dbfsck_core::lsm::table::{self, Engine, Values};
use dbfsck_core::lsm::{LeveldbFormat, RocksdbFormat};
use dbfsck_core::{BytesSource, Chunk, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let tail = &data[data.len().saturating_sub(53)..];
    let _ = table::footer(tail, len);
    let _ = table::footer_ignoring_magic(tail, len);
    for v in [Values::Sized, Values::Handles, Values::HandlesWithFirstKey] {
        let _ = table::entries(data, v);
    }
    for (delta, first) in [(false, false), (true, false), (true, true)] {
        let _ = table::index_handles(data, delta, first);
    }
    let _ = table::properties(data);
    let _ = table::global_seqno_value(data);
    if let Some((&kind, rest)) = data.split_first() {
        for engine in [Engine::Rocksdb, Engine::Leveldb] {
            for fv in [0, 2, 5] {
                if let Ok(out) = table::decompress(engine, fv, kind % 9, rest, 1 << 20) {
                    assert!(out.len() <= (1 << 20) + 1);
                }
            }
        }
    }
    for ck in 0..5 {
        if let Some(ck) = table::ChecksumType::from_byte(ck) {
            let _ = table::verify(ck, data);
            let _ = table::find_block_end(ck, data);
        }
    }
    let formats: [(&dyn Format, &str); 2] = [
        (&RocksdbFormat::default(), "/nonexistent/db/000007.sst"),
        (&LeveldbFormat::default(), "/nonexistent/db/000007.ldb"),
    ];
    for (format, name) in formats {
        if let Ok(opened) = format.open(Path::new(name), &BytesSource(data)) {
            if let Some(check) = opened.check {
                let mut out = Vec::new();
                for e in check.extents() {
                    assert!(e.start <= e.end && e.end <= len, "{e:?} outside {len}");
                    let chunk = Chunk {
                        offset: e.start,
                        bytes: &data[e.start as usize..e.end as usize],
                    };
                    check.verify(&chunk, &mut out);
                }
            }
        }
    }
});
