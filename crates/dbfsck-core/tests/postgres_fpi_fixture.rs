//! The full-page-image reader on real WAL: the start of a segment written by PostgreSQL 15's
//! `initdb` (testdata/postgres/README.md), as `pg_waldump -b` describes it.

use std::path::Path;

use dbfsck_core::postgres::fpi::{index_images, rebuild_page, Newest, RelBlock, WalSettings};

fn settings(dir: &Path, system_id: u64) -> WalSettings {
    WalSettings {
        wal_dir: dir.to_path_buf(),
        timeline: 1,
        seg_size: 16 << 20,
        page_size: 8192,
        system_id,
        redo: 0x0100_0028,
        min_recovery_point: 0,
    }
}

fn fsm(relfilenode: u32) -> RelBlock {
    RelBlock {
        tablespace: 1663,
        database: 1,
        relfilenode,
        fork: 1,
        block: 2,
    }
}

#[test]
fn the_first_image_of_initdbs_wal_rebuilds_its_block() {
    let head = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/postgres/wal/000000010000000000000001.head"),
    )
    .unwrap();
    let system_id = u64::from_le_bytes(head[24..32].try_into().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("000000010000000000000001"), &head).unwrap();
    let s = settings(dir.path(), system_id);
    let index = index_images(&s, &[fsm(1255), fsm(1247)]);
    // The checkpoint and the first image verify; the second image is cut by the 16 KiB.
    assert_eq!(index.records, 2, "{index:?}");
    assert_eq!(index.end, 0x0100_20F0, "pg_waldump's next record");
    let Newest::Image(image) = *index.newest(&fsm(1255)) else {
        panic!("no image of 1255_fsm block 2: {index:?}");
    };
    assert_eq!(
        (image.record, image.end, image.block_id),
        (0x0100_00A0, 0x0100_20F0, 0)
    );
    assert!(image.apply, "FPI_FOR_HINT images are applied by replay");
    assert_eq!(*index.newest(&fsm(1247)), Newest::Untouched);
    let page = rebuild_page(&s, &image, &fsm(1255), 8192, true).unwrap();
    assert_eq!(dbfsck_core::postgres::judge_block(&page, 2), None);
    assert_eq!(
        &page[0..8],
        &[0, 0, 0, 0, 0xF0, 0x20, 0, 1],
        "pd_lsn 0/10020F0"
    );
    // Another block, or the same record read as another cluster's, rebuilds nothing.
    assert!(rebuild_page(&s, &image, &fsm(1247), 8192, true).is_err());
    let foreign = settings(dir.path(), system_id ^ 1);
    assert!(rebuild_page(&foreign, &image, &fsm(1255), 8192, true).is_err());
    assert_eq!(index_images(&foreign, &[fsm(1255)]).records, 0);
}
