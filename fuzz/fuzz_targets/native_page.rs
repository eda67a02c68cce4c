//! Any bytes handed to the native page verifier and header parser: no panic, no huge allocation,
//! and a page that verifies must re-encode to exactly itself.
#![no_main]

use dbfsck_core::native::{
    decode_meta, encode_page, parse_header, probe_params, verify_page, ChecksumAlgo, FileParams,
    PageVerdict,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data);
    let _ = probe_params(data);
    let Some((&sel, page)) = data.split_first() else {
        return;
    };
    let algo = if sel & 1 == 0 {
        ChecksumAlgo::Crc32
    } else {
        ChecksumAlgo::Xxh3
    };
    let file_id = decode_meta(page).map_or(0, |m| m.file_id);
    let params = FileParams {
        page_size: page.len(),
        algo,
        file_id,
    };
    let page_no = u64::from(sel >> 1);
    let verdict = verify_page(page, &params, page_no);
    if let PageVerdict::Ok { .. } = verdict {
        // A page that verifies is exactly what the encoder makes from its fields and body.
        let meta = decode_meta(page).expect("a verified page has a header");
        let body = &page[32..page.len() - 16];
        let mut again = vec![0u8; page.len()];
        if encode_page(&mut again, &meta, body, algo).is_ok() {
            assert_eq!(again, page);
        }
    }
});
