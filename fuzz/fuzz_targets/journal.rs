//! Any bytes as a page journal — as they are, and after a valid header so the record parser is
//! reached: no panic; only what lies inside the file is ever named as committed.
#![no_main]

use dbfsck_core::native::journal::{encode_header, read_journal, JournalHeader};
use dbfsck_core::BytesSource;
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok(index) = read_journal(&BytesSource(bytes)) {
        assert!(index.committed_end <= bytes.len() as u64);
        assert_eq!(index.committed_end + index.ignored_tail, bytes.len() as u64);
        for img in &index.images {
            assert!(img.offset + img.len as u64 <= index.committed_end);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut framed = encode_header(&JournalHeader {
        journal_id: 1,
        generation: 0,
    })
    .to_vec();
    framed.extend_from_slice(data);
    check(&framed);
});
