//! Any bytes as a whole native file, through the format's open and unit check as the engine
//! drives them: no panic, findings inside the file, units within the layout.
#![no_main]

use std::path::Path;

use dbfsck_core::native::NativeFormat;
use dbfsck_core::{Chunk, FileSource, Format};
use libfuzzer_sys::fuzz_target;

struct Mem<'a>(&'a [u8]);

impl FileSource for Mem<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(opened) = NativeFormat.open(Path::new("fuzz"), &Mem(data)) else { return };
    for f in &opened.findings {
        assert!(f.offset + f.length <= data.len() as u64 || f.length == 0);
    }
    if let Some(check) = opened.check {
        let layout = check.layout();
        assert!(layout.end <= data.len() as u64 && layout.start <= layout.end);
        let bytes = &data[layout.start as usize..layout.end as usize];
        let mut out = Vec::new();
        let units = check.verify(&Chunk { offset: layout.start, bytes }, &mut out);
        assert!(units <= bytes.len() as u64);
        for f in &out {
            assert!(f.offset >= layout.start && f.offset + f.length <= layout.end);
        }
    }
});
