//! Any bytes as a RocksDB or LevelDB log: every record event read (recyclable numbers
//! included), the MANIFEST's edits applied to a live set, and the file opened as a WAL and as a
//! MANIFEST and as a blob file through both formats, its whole range verified. No panic, every event inside the file.
#![no_main]

use std::path::Path;

use dbfsck_core::lsm::{edit, log, LeveldbFormat, RocksdbFormat};
use dbfsck_core::{BytesSource, Chunk, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut last = 0u64;
    log::read(data, Some(7), 64, |e| {
        let start = match e {
            log::Event::Record { start, end, .. }
            | log::Event::Bad { start, end, .. }
            | log::Event::Orphan { start, end }
            | log::Event::Unfinished { start, end }
            | log::Event::Zeros { start, end } => {
                assert!(start <= end && end <= data.len() as u64);
                start
            }
            log::Event::Recycled { start, .. } | log::Event::Compression { start, .. } => start,
        };
        assert!(start <= data.len() as u64);
        last = last.max(start);
    });
    let m = edit::read_manifest(data);
    let _ = m.version.min_live_log();
    let formats: [&dyn Format; 2] = [&RocksdbFormat::default(), &LeveldbFormat::default()];
    for format in formats {
        for name in [
            "/nonexistent/db/000007.log",
            "/nonexistent/db/MANIFEST-000001",
        ] {
            if let Ok(opened) = format.open(Path::new(name), &BytesSource(data)) {
                if let Some(check) = opened.check {
                    let mut out = Vec::new();
                    let l = check.layout();
                    let chunk = Chunk {
                        offset: l.start,
                        bytes: &data[l.start as usize..l.end as usize],
                    };
                    check.verify(&chunk, &mut out);
                }
            }
        }
    }
});
