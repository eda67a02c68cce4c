//! Shared fixtures: a native file whose pages were written directly, some of them rewritten
//! through the journaled writer, so the journal holds their newest committed images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dbfsck_core::native::{ChecksumAlgo, CreateOptions, PageFile, PageType};
use dbfsck_core::{Report, Scanner};
use dbfsck_repair::{FsStorage, JournalOptions, JournaledStore, PageWrite, RepairOptions};

pub const PS: usize = 4096;
pub const APP: PageType = PageType::App(0x0100);

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    /// Canonical root (the undo log stores canonical paths).
    pub root: PathBuf,
    pub data: PathBuf,
    pub journal: PathBuf,
    pub pages: u64,
    pub journaled: Vec<u64>,
}

/// `pages` pages (LSN 1, body = page number), then `journaled` rewritten through the journal
/// with LSN 2 (body = page number + 1000).
pub fn fixture(pages: u64, journaled: &[u64]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = root.join("t.dbfp");
    let journal = root.join("wal.dbfj");
    let opts = CreateOptions {
        page_size: PS,
        checksum: ChecksumAlgo::Xxh3,
        file_id: Some(0xfeed),
    };
    let mut pf = PageFile::create(&data, opts).unwrap();
    for p in 1..pages {
        pf.write_page(p, APP, 1, &body(p, 1)).unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    let options = JournalOptions {
        capacity: None,
        journal_id: Some(42),
    };
    let mut store = JournaledStore::create(FsStorage, &journal, options).unwrap();
    let h = store.open_file(&data).unwrap();
    let bodies: Vec<Vec<u8>> = journaled.iter().map(|&p| body(p, 2)).collect();
    let writes: Vec<PageWrite<'_>> = journaled
        .iter()
        .zip(&bodies)
        .map(|(&page_no, b)| PageWrite {
            file: h,
            page_no,
            page_type: APP,
            flags: 0,
            lsn: 2,
            body: b,
        })
        .collect();
    if !writes.is_empty() {
        store.commit(&writes).unwrap();
    }
    Fixture {
        _dir: dir,
        root,
        data,
        journal,
        pages,
        journaled: journaled.to_vec(),
    }
}

/// The body of page `p` written at `lsn`.
pub fn body(p: u64, lsn: u64) -> Vec<u8> {
    format!("page {p} version {lsn} ").repeat(20).into_bytes()
}

pub fn scan(root: &Path) -> Report {
    Scanner::new().scan(&[root]).unwrap()
}

pub fn options(root: &Path, name: &str) -> RepairOptions {
    RepairOptions {
        dry_run: false,
        undo_log: root.join(".dbfsck").join(name),
        quarantine_dir: root.join(".dbfsck").join("quarantine"),
        force: false,
        cancel: None,
    }
}

pub fn page_range(p: u64) -> std::ops::Range<usize> {
    p as usize * PS..(p as usize + 1) * PS
}

/// Applies `f` to the bytes of a file.
pub fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

/// Tears page `p` the way a power cut does: its first sector from an older write (here: the
/// LSN-1 image), the rest as it is.
pub fn tear_first_sector(path: &Path, p: u64, old_sector: &[u8]) {
    edit(path, |b| {
        b[p as usize * PS..p as usize * PS + 512].copy_from_slice(old_sector);
    });
}

/// The LSN-1 image of page `p`, as `PageFile` wrote it.
pub fn lsn1_image(p: u64) -> Vec<u8> {
    let mut page = vec![0u8; PS];
    let meta = dbfsck_core::native::PageMeta {
        page_type: APP.code(),
        flags: 0,
        file_id: 0xfeed,
        page_no: p,
        lsn: 1,
    };
    dbfsck_core::native::encode_page(&mut page, &meta, &body(p, 1), ChecksumAlgo::Xxh3).unwrap();
    page
}

/// Every regular file under `root` except dbfsck's own folder, with its bytes.
pub fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            out.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    out.sort();
    out
}
