//! Any bytes as a whole native file, through the format's open and unit check as the engine
//! drives them: no panic, findings inside the file, units within the layout.
#![no_main]

use std::path::Path;

use dbfsck_core::native::NativeFormat;
use dbfsck_core::{BytesSource, Chunk, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(opened) = NativeFormat.open(Path::new("fuzz"), &BytesSource(data)) else {
        return;
    };
    for f in &opened.findings {
        assert!(f.offset + f.length <= data.len() as u64 || f.length == 0);
    }
    if let Some(check) = opened.check {
        let layout = check.layout();
        assert!(layout.end <= data.len() as u64 && layout.start <= layout.end);
        let bytes = &data[layout.start as usize..layout.end as usize];
        let mut out = Vec::new();
        let units = check.verify(
            &Chunk {
                offset: layout.start,
                bytes,
            },
            &mut out,
        );
        assert!(units <= bytes.len() as u64);
        for f in &out {
            assert!(f.offset >= layout.start && f.offset + f.length <= layout.end);
        }
    }
});
