//! The journaled writer's API contract and the regressions found by the crash property test:
//! what a batch puts in the journal and in place, poisoning after a failure, locks, reserved
//! types, reopening after a crash.

use dbfsck_core::native::journal::read_journal;
use dbfsck_core::native::{ChecksumAlgo, CreateOptions, PageType};
use dbfsck_repair::storage::crash::CrashStorage;
use dbfsck_repair::storage::{Storage, StorageFile};
use dbfsck_repair::{FsStorage, JournalOptions, JournalWriteError, JournaledStore, PageWrite};

struct Src<'a>(&'a dbfsck_repair::storage::crash::CrashFile, u64);
impl dbfsck_core::FileSource for Src<'_> {
    fn len(&self) -> u64 {
        self.1
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        StorageFile::read_at(self.0, buf, offset)
    }
}

fn journal_index(
    s: &CrashStorage,
    path: &std::path::Path,
) -> dbfsck_core::native::journal::JournalIndex {
    let f = s.open_read(path).unwrap();
    let len = f.len().unwrap();
    read_journal(&Src(&f, len)).unwrap()
}

fn opts(page_size: usize) -> CreateOptions {
    CreateOptions {
        page_size,
        checksum: ChecksumAlgo::Crc32,
        file_id: Some(5),
    }
}

fn w(file: dbfsck_repair::FileHandle, page_no: u64, lsn: u64, body: &[u8]) -> PageWrite<'_> {
    PageWrite {
        file,
        page_no,
        page_type: PageType::App(0x100),
        flags: 0,
        lsn,
        body,
    }
}

/// Regression: the records of a batch that recycles the journal were encoded with the old
/// generation, so the reader ignored them and a torn page of that batch could not be rebuilt.
#[test]
fn a_batch_that_recycles_the_journal_is_readable_in_the_new_generation() {
    let s = CrashStorage::new();
    let j = std::path::Path::new("/d/wal.dbfj");
    let options = JournalOptions {
        capacity: Some(10_000),
        journal_id: Some(1),
    };
    let mut store = JournaledStore::create(s.clone(), j, options).unwrap();
    let h = store
        .create_file(std::path::Path::new("/d/t.dbfp"), opts(4096))
        .unwrap();
    store.commit(&[w(h, 1, 1, b"a")]).unwrap();
    store.commit(&[w(h, 2, 2, b"b"), w(h, 3, 2, b"c")]).unwrap(); // past 10 000 bytes: recycles
    let idx = journal_index(&s, j);
    assert_eq!(idx.header.generation, 1);
    assert_eq!(idx.batches, 1);
    assert_eq!(
        idx.images
            .iter()
            .map(|i| (i.page_no, i.lsn))
            .collect::<Vec<_>>(),
        [(2, 2), (3, 2)]
    );
}

/// Regression: a page written twice in one batch (or filled as a gap, then written) reached the
/// disk twice, so a crash between the two left a version no batch meant.
#[test]
fn a_page_written_twice_in_a_batch_is_journaled_and_written_once() {
    let s = CrashStorage::new();
    let j = std::path::Path::new("/d/wal.dbfj");
    let mut store = JournaledStore::create(s.clone(), j, JournalOptions::default()).unwrap();
    let h = store
        .create_file(std::path::Path::new("/d/t.dbfp"), opts(4096))
        .unwrap();
    let before = s.ops();
    // Page 5 first: pages 1–4 are gap fills; page 3 is then written in the same batch.
    store
        .commit(&[
            w(h, 5, 1, b"five"),
            w(h, 3, 1, b"three"),
            w(h, 5, 1, b"five again"),
        ])
        .unwrap();
    let idx = journal_index(&s, j);
    let pages: Vec<u64> = idx.images.iter().map(|i| i.page_no).collect();
    assert_eq!(
        pages,
        [1, 2, 4, 3, 5],
        "one image per page, the last one, in write order"
    );
    // journal write + sync, 5 page writes, 1 data sync
    assert_eq!(s.ops() - before, 2 + 5 + 1);
    assert_eq!(
        store.read_page(h, 5).unwrap().unwrap()[..10],
        *b"five again"
    );
    assert_eq!(store.read_page(h, 3).unwrap().unwrap()[..5], *b"three");
}

#[test]
fn after_a_failed_write_the_store_is_poisoned() {
    let s = CrashStorage::new();
    let mut store = JournaledStore::create(
        s.clone(),
        std::path::Path::new("/wal"),
        JournalOptions::default(),
    )
    .unwrap();
    let h = store
        .create_file(std::path::Path::new("/t"), opts(4096))
        .unwrap();
    s.crash_at(3); // the journal write and sync pass; the first in-place write fails
    let r = store.commit(&[w(h, 1, 1, b"x")]);
    assert!(matches!(r, Err(JournalWriteError::Io { .. })), "{r:?}");
    let r = store.commit(&[w(h, 1, 2, b"y")]);
    assert!(matches!(r, Err(JournalWriteError::Poisoned)), "{r:?}");
}

#[test]
fn invalid_writes_are_refused_before_any_io() {
    let s = CrashStorage::new();
    let mut store = JournaledStore::create(
        s.clone(),
        std::path::Path::new("/wal"),
        JournalOptions::default(),
    )
    .unwrap();
    let h = store
        .create_file(std::path::Path::new("/t"), opts(4096))
        .unwrap();
    let before = s.ops();
    let r = store.commit(&[w(h, 0, 1, b"x")]);
    assert!(matches!(r, Err(JournalWriteError::HeaderPage)), "{r:?}");
    let mut q = w(h, 1, 1, b"x");
    q.page_type = PageType::Quarantined;
    let r = store.commit(&[q]);
    assert!(
        matches!(r, Err(JournalWriteError::ReservedType(3))),
        "{r:?}"
    );
    let big = vec![0u8; 4096];
    let r = store.commit(&[w(h, 1, 1, &big)]);
    assert!(matches!(r, Err(JournalWriteError::Encode(_))), "{r:?}");
    assert_eq!(s.ops(), before, "nothing was written");
    store.commit(&[w(h, 1, 1, b"ok")]).unwrap();
}

#[test]
fn reopening_cuts_a_torn_tail_and_continues_after_the_last_committed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("wal.dbfj");
    let t = dir.path().join("t.dbfp");
    {
        let mut store = JournaledStore::create(FsStorage, &j, JournalOptions::default()).unwrap();
        let h = store.create_file(&t, opts(8192)).unwrap();
        store.commit(&[w(h, 1, 1, b"one")]).unwrap();
    }
    let committed = std::fs::metadata(&j).unwrap().len();
    let mut bytes = std::fs::read(&j).unwrap();
    bytes.extend_from_slice(&[0xAB; 300]); // a torn tail
    std::fs::write(&j, &bytes).unwrap();
    let mut store = JournaledStore::open(FsStorage, &j, JournalOptions::default()).unwrap();
    assert_eq!(std::fs::metadata(&j).unwrap().len(), committed);
    let h = store.open_file(&t).unwrap();
    assert_eq!(
        store.commit(&[w(h, 2, 2, b"two")]).unwrap(),
        2,
        "batch numbers go on"
    );
    assert_eq!(store.page_count(h).unwrap(), 3);
}

#[test]
fn a_file_in_use_by_a_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.dbfp");
    let mut store = JournaledStore::create(
        FsStorage,
        &dir.path().join("wal"),
        JournalOptions::default(),
    )
    .unwrap();
    store.create_file(&t, opts(4096)).unwrap();
    let other = FsStorage.open_rw(&t).unwrap();
    assert!(
        !StorageFile::try_lock(&other).unwrap(),
        "another open file description sees the lock"
    );
    let r = dbfsck_core::native::PageFile::open(&t);
    assert!(
        matches!(r, Err(dbfsck_core::native::WriteError::Locked)),
        "{r:?}"
    );
}
