//! Any bytes as MariaDB's redo log: once as the whole file (header, checkpoints), and once as
//! the ring of mini-transactions behind a valid header and checkpoint (so the fuzzer reaches
//! the record walk: lengths, varints, sequence bits, CRCs, wrap-around). No panic, and an end
//! never before the checkpoint.
#![no_main]

use dbfsck_core::innodb::redo::{read_bounds, CHECKPOINT_1, FORMAT_10_8, START_OFFSET};
use dbfsck_core::BytesSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = read_bounds(&BytesSource(data));
    let Some((&skip, ring)) = data.split_first() else {
        return;
    };
    if ring.len() < 16 {
        return;
    }
    let first = START_OFFSET;
    let mut f = vec![0u8; START_OFFSET as usize];
    f[..4].copy_from_slice(&FORMAT_10_8.to_be_bytes());
    f[8..16].copy_from_slice(&first.to_be_bytes());
    let crc = crc32c::crc32c(&f[..508]);
    f[508..512].copy_from_slice(&crc.to_be_bytes());
    // The checkpoint somewhere in the first or second pass of the ring.
    let checkpoint = first + u64::from(skip) * 7 % (2 * ring.len() as u64);
    let c = CHECKPOINT_1 as usize;
    f[c..c + 8].copy_from_slice(&checkpoint.to_be_bytes());
    f[c + 8..c + 16].copy_from_slice(&checkpoint.to_be_bytes());
    let crc = crc32c::crc32c(&f[c..c + 60]);
    f[c + 60..c + 64].copy_from_slice(&crc.to_be_bytes());
    f.extend_from_slice(ring);
    if let Ok(b) = read_bounds(&BytesSource(&f)) {
        assert!(b.end_lsn >= b.checkpoint_lsn);
        assert!(b.end_lsn - b.checkpoint_lsn <= ring.len() as u64);
    }
});
