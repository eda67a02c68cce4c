//! Any bytes as the first WAL segment of a data directory, read by the full-page-image reader
//! (`dbfsck_core::postgres::fpi`) from the segment's first record: the index and a rebuild of
//! a block named by the input's last bytes never panic, and a rebuilt page is exactly a block.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dbfsck_core::postgres::fpi::{
    index_images, rebuild_page, ImageRef, Newest, RelBlock, WalSettings,
};
use libfuzzer_sys::fuzz_target;

const SEG: u64 = 16 << 20;

/// This process's scratch `pg_wal/`.
fn wal_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("dbfsck-fuzz-fpi-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let dir = wal_dir();
    std::fs::write(dir.join("000000010000000000000001"), data).unwrap();
    let system_id = data
        .get(24..32)
        .map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap()));
    let settings = WalSettings {
        wal_dir: dir.clone(),
        timeline: 1,
        seg_size: SEG,
        page_size: 8192,
        system_id,
        redo: SEG + 40,
        min_recovery_point: 0,
    };
    // A block named by the last 17 bytes (the fuzzer can copy a block reference there).
    let tail = data
        .get(data.len().saturating_sub(17)..)
        .unwrap_or_default();
    let block = RelBlock {
        tablespace: u32_at(tail, 0),
        database: u32_at(tail, 4),
        relfilenode: u32_at(tail, 8),
        fork: tail.get(12).copied().unwrap_or_default() & 3,
        block: u32_at(tail, 13),
    };
    let index = index_images(&settings, &[block]);
    assert!(index.end >= index.start || index.records == 0);
    // The image the index found, else one the input names at the first record.
    let image = match index.newest(&block) {
        Newest::Image(i) => *i,
        _ => ImageRef {
            record: settings.redo,
            end: index.end,
            block_id: data.last().copied().unwrap_or_default() & 31,
            apply: true,
        },
    };
    if let Ok(page) = rebuild_page(&settings, &image, &block, 8192, true) {
        assert_eq!(page.len(), 8192);
    }
});
