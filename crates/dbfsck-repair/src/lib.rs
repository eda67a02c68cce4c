//! # dbfsck-repair
//!
//! Repair for dbfsck: the native page journal's writer, planning one action per finding, applying
//! it behind a sealed undo log, quarantine, and byte-exact undo. The rules it is built on
//! (`docs/format.md` §9–§11):
//!
//! - **Default only reports.** [`RepairOptions::dry_run`] is true unless the caller turns it off.
//! - **Never make it worse.** The original bytes of every range are durable in an undo log (and
//!   damaged bytes in the quarantine) before the first write; after a failed write or fsync,
//!   nothing more is written; every changed range is re-verified.
//! - **Never launder a checksum.** A page is only ever written from a committed journal image
//!   whose own checksum verifies, or as a quarantine marker built from the file's parameters;
//!   no checksum is computed over damaged bytes.
//!
//! The main types: [`JournaledStore`] (the journaled writer), [`repair`] with [`RepairOptions`],
//! [`undo()`], and the [`Storage`] trait with [`FsStorage`] and the crash-testing
//! [`storage::crash::CrashStorage`].
//!
//! ```
//! use dbfsck_core::native::{CreateOptions, PageType};
//! use dbfsck_core::{FindingKind, RepairResult, Scanner};
//! use dbfsck_repair::{repair, FsStorage, JournalOptions, JournaledStore, PageWrite, RepairOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut store =
//!     JournaledStore::create(FsStorage, &dir.path().join("wal.dbfj"), JournalOptions::default())
//!         .unwrap();
//! let table = store.create_file(&dir.path().join("t.dbfp"), CreateOptions::default()).unwrap();
//! let rows = b"some rows";
//! let writes: Vec<PageWrite<'_>> = (1..=8)
//!     .map(|page_no| PageWrite {
//!         file: table, page_no, page_type: PageType::App(0x100), flags: 0, lsn: 1, body: rows,
//!     })
//!     .collect();
//! store.commit(&writes).unwrap();
//! drop(store);
//!
//! // A power cut tears page 3: its first sector is from another write.
//! let path = dir.path().join("t.dbfp");
//! let mut bytes = std::fs::read(&path).unwrap();
//! bytes[3 * 8192 + 24] = 9; // the header LSN
//! std::fs::write(&path, &bytes).unwrap();
//!
//! let mut report = Scanner::new().scan(&[dir.path()]).unwrap();
//! assert_eq!(report.findings[0].kind, FindingKind::ChecksumMismatch);
//! let options = RepairOptions { dry_run: false, ..RepairOptions::in_dir(dir.path()) };
//! repair(&mut report, &FsStorage, &options);
//! assert_eq!(report.repairs[0].result, RepairResult::Applied);
//! assert_eq!(report.exit_code(), 1); // all damage restored from a verified source
//! assert!(Scanner::new().scan(&[dir.path()]).unwrap().findings.is_empty());
//! ```
#![deny(missing_docs)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used))]

mod apply;
mod journal;
pub mod lsm;
pub mod plan;
pub mod postgres;
pub mod sqlite;
pub mod storage;
pub mod undo;

pub use apply::{default_dir, repair, RepairOptions};
pub use journal::{FileHandle, JournalOptions, JournalWriteError, JournaledStore, PageWrite};
pub use storage::{FileMeta, FsStorage, Storage, StorageFile};
pub use undo::{undo, UndoError, UndoOutcome};

/// A path as one word for a POSIX-style shell (bash, zsh, ksh; `$'…'` quoting), so a printed
/// command works whatever bytes the name holds: plain as it is, else single-quoted, else (bytes
/// that are not printable UTF-8) ANSI-C quoted with `\xNN` escapes.
pub fn shell_word(s: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    // A word starting with '-' would be read as an option: the same path, from here.
    if s.as_bytes().first() == Some(&b'-') {
        let mut dotted = std::ffi::OsString::from("./");
        dotted.push(s);
        return shell_word(&dotted);
    }
    let bytes = s.as_bytes();
    if !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => {
            format!("'{}'", text.replace('\'', "'\\''"))
        }
        _ => {
            let mut out = String::from("$'");
            for &b in bytes {
                match b {
                    b'\'' => out.push_str("\\'"),
                    b'\\' => out.push_str("\\\\"),
                    0x20..=0x7e => out.push(char::from(b)),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
            out.push('\'');
            out
        }
    }
}
