//! Any bytes decoded by every codec backups are stored with (`dbfsck_core::codec`), bounded as a
//! WAL segment's decoding is: no panic, never more than the bound.
#![no_main]

use dbfsck_core::codec::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for codec in [
        Codec::Gzip,
        Codec::Lz4,
        Codec::Zstd,
        Codec::Bzip2,
        Codec::Xz,
        Codec::Lzma,
        Codec::Brotli,
    ] {
        let (out, _) = codec.decode_bounded(data, 1 << 20);
        assert!(out.len() <= 1 << 20);
        if let Some(mut r) = codec.reader(data) {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut r, 1 << 20), &mut buf);
        }
    }
});
