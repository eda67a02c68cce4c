//! Use 1 — verify a page on read. A datastore that keeps its pages in the native format reads
//! through `PageFile::read_page` (or calls `verify_page` on bytes it read itself): a damaged page
//! is an error with the verdict, never silently handed to the caller.
//!
//! `cargo run -p dbfsck-core --example verify_on_read`

use dbfsck_core::native::{
    verify_page, CreateOptions, PageFile, PageType, PageVerdict, ReadPageError,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("accounts.dbfp");
    let mut file = PageFile::create(&path, CreateOptions::default())?;
    file.write_page(1, PageType::App(0x100), 1, b"alice=100")?;
    file.write_page(2, PageType::App(0x100), 1, b"bob=42")?;
    file.sync()?;

    // A bit rots on disk under page 2.
    let mut bytes = std::fs::read(&path)?;
    bytes[2 * 8192 + 40] ^= 0x01;
    std::fs::write(&path, &bytes)?;

    let body = file.read_page(1)?;
    println!("page 1: {:?}", String::from_utf8_lossy(&body[..9]));
    match file.read_page(2) {
        Err(ReadPageError::Corrupt { page_no, verdict }) => {
            println!("page {page_no} refused: {verdict:?}");
        }
        other => return Err(format!("expected a corrupt page, got {other:?}").into()),
    }

    // The same check over bytes the datastore read itself.
    let params = file.params();
    let page = &bytes[8192..2 * 8192];
    assert!(matches!(
        verify_page(page, &params, 1),
        PageVerdict::Ok { .. }
    ));
    println!("verify_page on page 1: ok");
    Ok(())
}
