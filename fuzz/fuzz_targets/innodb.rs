//! Any bytes as an InnoDB tablespace: space_params (flags, page-0 probe), every page judged at
//! the format found and at every flags value the first bytes name, the doublewrite slots read,
//! and the whole file opened and verified through the format. No panic.
#![no_main]

use std::path::Path;

use dbfsck_core::innodb::{doublewrite, judge_page, space_params, InnodbFormat, SpaceFormat};
use dbfsck_core::{BytesSource, Chunk, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = space_params(data) {
        for (n, page) in data.chunks(p.format.physical_size).enumerate() {
            let _ = judge_page(page, &p.format, p.space_id, n as u64);
        }
        let _ = doublewrite::read_slots(&BytesSource(data), p.format.physical_size);
    }
    if let Some(flags) = data
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap_or([0; 4])))
    {
        if let Ok(fmt) = SpaceFormat::from_flags(flags) {
            if let Some(page) = data.get(4..4 + fmt.physical_size) {
                let _ = judge_page(page, &fmt, 1, 1);
            }
        }
    }
    let _ = doublewrite::parse_header(data);
    let format = InnodbFormat::default();
    for name in [
        "/nonexistent/db/t.ibd",
        "/nonexistent/ibdata1",
        "/nonexistent/ibdata2",
    ] {
        if let Ok(opened) = format.open(Path::new(name), &BytesSource(data)) {
            if let Some(check) = opened.check {
                let l = check.layout();
                let bytes = data
                    .get(l.start as usize..l.end as usize)
                    .unwrap_or_default();
                let mut out = Vec::new();
                check.verify(
                    &Chunk {
                        offset: l.start,
                        bytes,
                    },
                    &mut out,
                );
                let _ = check.describe(&Chunk {
                    offset: l.start,
                    bytes: bytes.get(..l.align as usize).unwrap_or_default(),
                });
            }
        }
    }
});
