//! Use 2 — a background scrubber: a thread that re-verifies the store's files every so often at
//! a gentle rate (shared by its worker threads), at idle I/O priority, and can be stopped at any
//! moment through the cancellation flag.
//!
//! `cargo run -p dbfsck-core --example scrubber`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dbfsck_core::native::{CreateOptions, PageFile, PageType};
use dbfsck_core::Scanner;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut file = PageFile::create(&dir.path().join("t.dbfp"), CreateOptions::default())?;
    for page in 1..=256 {
        file.write_page(page, PageType::App(0x100), page, b"row")?;
    }
    file.sync()?;
    drop(file);

    let stop = Arc::new(AtomicBool::new(false));
    let root = dir.path().to_path_buf();
    let flag = stop.clone();
    let scrubber = std::thread::spawn(move || {
        // Idle I/O class and nice 19 for this thread and the pool it starts.
        let _ = dbfsck_core::set_idle_priority();
        let scanner = Scanner::new()
            .threads(1)
            .max_rate(Some(8 << 20)) // 8 MiB/s: the datastore's own I/O comes first
            .cancel_flag(flag.clone());
        let mut passes = 0;
        while !flag.load(Ordering::Relaxed) {
            match scanner.scan(&[&root]) {
                Ok(report) if report.summary.complete => {
                    passes += 1;
                    println!(
                        "pass {passes}: {} pages, {} findings",
                        report.summary.units,
                        report.findings.len()
                    );
                    for f in &report.findings {
                        eprintln!("scrubber: {} page {:?}: {}", f.path, f.unit, f.kind);
                    }
                }
                Ok(_) => break, // stopped mid-pass
                Err(e) => eprintln!("scrubber: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        passes
    });
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let passes = scrubber.join().map_err(|_| "the scrubber panicked")?;
    println!("scrubber stopped after {passes} complete passes");
    Ok(())
}
