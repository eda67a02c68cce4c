//! # dbfsck-core
//!
//! *fsck for storage engines*: verify every page and record checksum of a datastore's files, in
//! parallel on every CPU, and report exactly what is damaged.
//!
//! The main types:
//! - [`Scanner`] walks paths, recognises each file's [`Format`], cuts the work into page-aligned
//!   chunks, verifies them on a rayon pool and returns a [`Report`] whose [`Finding`]s are sorted
//!   by path then offset whatever the thread count.
//! - [`Format`] and [`UnitCheck`] are the one trait pair every format implements: the built-in
//!   [`native`] format, and your own (see `examples/custom_format.rs`).
//! - [`native::PageFile`] writes the native page format, for datastore code that adopts it.
//!
//! ```
//! use dbfsck_core::native::{CreateOptions, PageFile, PageType};
//! use dbfsck_core::{FindingKind, Scanner};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("table.dbfp");
//! let mut file = PageFile::create(&path, CreateOptions::default()).unwrap();
//! for page in 1..=64 {
//!     file.write_page(page, PageType::App(0x100), page, b"row data").unwrap();
//! }
//! file.sync().unwrap();
//!
//! // Rot one bit of page 7 on disk.
//! let mut bytes = std::fs::read(&path).unwrap();
//! bytes[7 * 8192 + 100] ^= 0x10;
//! std::fs::write(&path, &bytes).unwrap();
//!
//! let report = Scanner::new().scan(&[dir.path()]).unwrap();
//! assert_eq!(report.findings.len(), 1);
//! assert_eq!(report.findings[0].kind, FindingKind::ChecksumMismatch);
//! assert_eq!(report.findings[0].unit, Some(7));
//! assert_eq!(report.exit_code(), 4);
//! ```
#![deny(missing_docs)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used))]

mod access;
pub mod codec;
mod engine;
mod finding;
mod format;
pub mod innodb;
mod inspect;
pub mod lsm;
pub mod native;
pub mod postgres;
mod report;
mod resume;
mod sigbus;
pub mod sqlite;
mod throttle;
pub mod units;

use std::sync::Arc;

pub use access::ReadStrategy;
pub use engine::{
    is_quarantine_dir, is_quarantine_entry, Progress, ScanConfigError, Scanner, DBFSCK_DIR,
    DEFAULT_CHUNK_SIZE, MMAP_CHUNK_SIZE, ONLINE_PAUSE, QUARANTINE_MANIFEST, QUARANTINE_MARKER,
};
pub use finding::{Finding, FindingKind, Owner};
pub use format::{
    BytesSource, Chunk, Conclusion, DirListing, FileSource, Format, Layout, OpenError, Opened,
    Probe, UnitCheck,
};
pub use inspect::{inspect, InspectError, Inspection};
pub use report::{
    exit, finding_json_line, previous_clean_timestamp, FileId, PathError, RecoveryVerdict, Repair,
    RepairAction, RepairResult, Report, ScannedFile, Skipped, Summary, SCHEMA_VERSION,
};
pub use resume::{FileState, ScanState, StateError, STATE_VERSION};
pub use throttle::{io_priority, set_idle_priority, RateLimiter};

/// Whether every byte is zero; 64 bytes at a time, so the compiler vectorises it (a bytewise
/// `all` with its early exit does not, and zero pages are checked by the million).
pub(crate) fn all_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// `n` bytes in words: "1 byte", "2 bytes".
pub fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// The formats dbfsck knows, in the order detection tries them.
pub fn builtin_formats() -> Vec<Arc<dyn Format>> {
    vec![
        Arc::new(native::NativeFormat),
        Arc::new(postgres::PostgresFormat::default()),
        Arc::new(innodb::InnodbFormat::default()),
        Arc::new(lsm::RocksdbFormat::default()),
        Arc::new(lsm::LeveldbFormat::default()),
        Arc::new(sqlite::SqliteFormat::default()),
    ]
}
