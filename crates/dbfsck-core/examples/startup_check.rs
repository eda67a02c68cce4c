//! Use 3 — a start-up check: before a datastore opens its files it scans them on every core
//! and refuses to start on damage, naming every damaged page (and, when its pages were written
//! through the journaled writer, it can run `dbfsck scan --repair` first).
//!
//! `cargo run -p dbfsck-core --example startup_check`

use dbfsck_core::native::{CreateOptions, PageFile, PageType};
use dbfsck_core::{exit, Scanner};

fn check_before_start(data_dir: &std::path::Path) -> Result<(), String> {
    let report = Scanner::new()
        .scan(&[data_dir])
        .map_err(|e| e.to_string())?;
    match report.exit_code() {
        exit::OK => Ok(()),
        code => {
            let mut msg = format!("refusing to start (dbfsck exit {code}):");
            for f in &report.findings {
                msg.push_str(&format!(
                    "\n  {} page {:?}: {} ({})",
                    f.path, f.unit, f.kind, f.detail
                ));
            }
            for e in &report.errors {
                msg.push_str(&format!("\n  {}: {}", e.path, e.message));
            }
            Err(msg)
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("t.dbfp");
    let mut file = PageFile::create(&path, CreateOptions::default())?;
    for page in 1..=64 {
        file.write_page(page, PageType::App(0x100), page, b"row")?;
    }
    file.sync()?;
    drop(file);
    check_before_start(dir.path())?;
    println!("clean: starting");

    // A power cut zeroes page 9.
    let mut bytes = std::fs::read(&path)?;
    bytes[9 * 8192..10 * 8192].fill(0);
    std::fs::write(&path, &bytes)?;
    match check_before_start(dir.path()) {
        Err(msg) => println!("{msg}"),
        Ok(()) => return Err("the damage went unnoticed".into()),
    }
    Ok(())
}
