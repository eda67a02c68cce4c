//! The journaled writer: the whole torn-write protection protocol for datastore code in one API
//! (`docs/format.md` §9.3).
//!
//! [`JournaledStore::commit`] takes a batch of page writes and
//! 1. appends every page image, then a commit record, to the journal, and fsyncs it;
//! 2. writes the pages in place, and fsyncs every file it wrote;
//! 3. recycles the journal (a new generation) when it has grown past its capacity, at the start
//!    of a later batch, never while the images of a batch are still needed.
//!
//! A power cut during step 2 can tear pages in place; their committed images are in the
//! journal, so `dbfsck scan --repair` rebuilds them byte-exact. A cut during step 1 leaves a torn
//! or uncommitted journal tail, which readers ignore: no page was written in place yet.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use dbfsck_core::native::journal::{
    batch_digest, encode_header, encode_record, read_journal, record_len, JournalError,
    JournalHeader, RecordFields, COMMIT_PAYLOAD_LEN, JOURNAL_HEADER_LEN, RECORD_COMMIT,
    RECORD_IMAGE,
};
use dbfsck_core::native::layout::{body_len, is_valid_page_size, MAX_PAGE_SIZE};
use dbfsck_core::native::{
    encode_page, header_page, parse_header, random_file_id, verify_page, CreateOptions,
    EncodeError, FileParams, HeaderError, PageMeta, PageType, PageVerdict,
};

use crate::storage::{Source, Storage, StorageFile};

/// Options of a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Recycle the journal when a batch would take it past this many bytes; `None` never
    /// recycles. Default 64 MiB. A batch larger than the capacity is still written whole.
    pub capacity: Option<u64>,
    /// The journal id; default `None`, which draws a random one.
    pub journal_id: Option<u64>,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            capacity: Some(64 << 20),
            journal_id: None,
        }
    }
}

/// Why a journaled write failed. After an I/O failure the store is poisoned and refuses all
/// later writes: a failed write or fsync leaves the files in an unknown state, and retrying an
/// fsync proves nothing. Recover with `dbfsck scan --repair`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalWriteError {
    /// The operating system (or the storage) reported an error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A page could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The journal's header is not valid.
    #[error("{path} is not a usable journal: {source}")]
    Journal {
        /// The journal.
        path: PathBuf,
        /// Why.
        source: JournalError,
    },
    /// A data file's header page is not valid.
    #[error("{path} is not a valid native page file: {source}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HeaderError,
    },
    /// A data file's length is not a whole number of pages.
    #[error(
        "{path} is {}, not a whole number of pages; run `dbfsck scan --repair` first", dbfsck_core::bytes(*len)
    )]
    PartialPage {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Another process holds the file's lock.
    #[error("{0} is locked by another process")]
    Locked(PathBuf),
    /// Page 0 is the header page.
    #[error("page 0 is the header page and cannot be written as a data page")]
    HeaderPage,
    /// A reserved page type.
    #[error(
        "page type {0} is reserved; use PageType::Free or an application type (0x0100 and above)"
    )]
    ReservedType(u16),
    /// A handle from another store.
    #[error("file handle {0} does not belong to this store")]
    BadHandle(usize),
    /// A data file outside the journal's directory: a journal serves the page files beside it,
    /// the only pairing a repair can prove.
    #[error("{file} is not in the directory of its journal {journal}; a journal serves only the page files beside it")]
    OutsideStore {
        /// The data file.
        file: PathBuf,
        /// The journal.
        journal: PathBuf,
    },
    /// An earlier failure poisoned the store.
    #[error("an earlier write or fsync failed; this store refuses further writes")]
    Poisoned,
}

/// A data file of a [`JournaledStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileHandle(usize);

/// One page write of a batch.
#[derive(Debug, Clone, Copy)]
pub struct PageWrite<'a> {
    /// The file.
    pub file: FileHandle,
    /// The page number, 1 or above.
    pub page_no: u64,
    /// Free or an application type.
    pub page_type: PageType,
    /// Application flags.
    pub flags: u16,
    /// The LSN of this write; it should increase with each write of a page.
    pub lsn: u64,
    /// The page body (at most `page size − 48` bytes; zero-padded).
    pub body: &'a [u8],
}

struct DataFile<F> {
    path: PathBuf,
    file: F,
    params: FileParams,
    pages: u64,
}

/// Native page files written through a page journal. See the module docs for the protocol.
pub struct JournaledStore<S: Storage> {
    storage: S,
    journal_path: PathBuf,
    journal: S::File,
    header: JournalHeader,
    end: u64,
    next_batch: u64,
    capacity: Option<u64>,
    files: Vec<DataFile<S::File>>,
    poisoned: bool,
}

impl<S: Storage> std::fmt::Debug for JournaledStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournaledStore")
            .field("journal", &self.journal_path)
            .field("header", &self.header)
            .field("end", &self.end)
            .field("files", &self.files.len())
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalWriteError + '_ {
    move |source| JournalWriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl<S: Storage> JournaledStore<S> {
    /// Creates a new, empty journal at `journal_path` (failing if it exists) and makes it and its
    /// directory entry durable.
    pub fn create(
        storage: S,
        journal_path: &Path,
        options: JournalOptions,
    ) -> Result<Self, JournalWriteError> {
        let journal_path = &storage.resolve(journal_path);
        let mut journal = storage
            .create_new(journal_path)
            .map_err(io_err(journal_path))?;
        lock(&journal, journal_path)?;
        let header = JournalHeader {
            journal_id: options.journal_id.unwrap_or_else(random_file_id),
            generation: 0,
        };
        journal
            .write_all_at(&encode_header(&header), 0)
            .and_then(|()| journal.sync())
            .map_err(io_err(journal_path))?;
        sync_parent(&storage, journal_path)?;
        Ok(JournaledStore {
            storage,
            journal_path: journal_path.to_path_buf(),
            journal,
            header,
            end: JOURNAL_HEADER_LEN as u64,
            next_batch: 1,
            capacity: options.capacity,
            files: Vec::new(),
            poisoned: false,
        })
    }

    /// Opens an existing journal, keeping its committed batches (a repair may still need them)
    /// and cutting off a torn or uncommitted tail, so new batches follow the last committed one.
    pub fn open(
        storage: S,
        journal_path: &Path,
        options: JournalOptions,
    ) -> Result<Self, JournalWriteError> {
        let journal_path = &storage.resolve(journal_path);
        let mut journal = storage
            .open_rw(journal_path)
            .map_err(io_err(journal_path))?;
        lock(&journal, journal_path)?;
        let len = journal.len().map_err(io_err(journal_path))?;
        let index = read_journal(&Source {
            file: &journal,
            len,
        })
        .map_err(|source| JournalWriteError::Journal {
            path: journal_path.to_path_buf(),
            source,
        })?;
        if index.ignored_tail > 0 {
            journal
                .set_len(index.committed_end)
                .and_then(|()| journal.sync())
                .map_err(io_err(journal_path))?;
        }
        Ok(JournaledStore {
            storage,
            journal_path: journal_path.to_path_buf(),
            journal,
            header: index.header,
            end: index.committed_end,
            next_batch: index.last_batch.map_or(1, |b| b + 1),
            capacity: options.capacity,
            files: Vec::new(),
            poisoned: false,
        })
    }

    /// Creates a native page file (failing if it exists): its header page is written, the file
    /// and its directory entry fsynced. Its pages are then written with [`JournaledStore::commit`].
    pub fn create_file(
        &mut self,
        path: &Path,
        options: CreateOptions,
    ) -> Result<FileHandle, JournalWriteError> {
        self.check_poison()?;
        let path = &self.in_store(path)?;
        if !is_valid_page_size(options.page_size as u64) {
            return Err(EncodeError::BadPageSize(options.page_size).into());
        }
        let params = FileParams {
            page_size: options.page_size,
            algo: options.checksum,
            file_id: options.file_id.unwrap_or_else(random_file_id),
        };
        let header = header_page(&params)?;
        let mut file = self.storage.create_new(path).map_err(io_err(path))?;
        lock(&file, path)?;
        let written = file
            .write_all_at(&header, 0)
            .and_then(|()| file.sync())
            .map_err(io_err(path));
        self.poison_on(written)?;
        let dir = sync_parent(&self.storage, path);
        self.poison_on(dir)?;
        self.files.push(DataFile {
            path: path.to_path_buf(),
            file,
            params,
            pages: 1,
        });
        Ok(FileHandle(self.files.len() - 1))
    }

    /// Opens an existing native page file; its header page must verify and its length must be
    /// a whole number of pages.
    pub fn open_file(&mut self, path: &Path) -> Result<FileHandle, JournalWriteError> {
        self.check_poison()?;
        let path = &self.in_store(path)?;
        let file = self.storage.open_rw(path).map_err(io_err(path))?;
        lock(&file, path)?;
        let len = file.len().map_err(io_err(path))?;
        let mut head = vec![0u8; len.min(MAX_PAGE_SIZE as u64) as usize];
        let n = file.read_full_at(&mut head, 0).map_err(io_err(path))?;
        head.truncate(n);
        let header = parse_header(&head).map_err(|source| JournalWriteError::BadHeader {
            path: path.to_path_buf(),
            source,
        })?;
        let ps = header.params.page_size as u64;
        if len % ps != 0 {
            return Err(JournalWriteError::PartialPage {
                path: path.to_path_buf(),
                len,
            });
        }
        self.files.push(DataFile {
            path: path.to_path_buf(),
            file,
            params: header.params,
            pages: len / ps,
        });
        Ok(FileHandle(self.files.len() - 1))
    }

    /// The data file's resolved path, when it lies in the journal's directory.
    fn in_store(&self, path: &Path) -> Result<PathBuf, JournalWriteError> {
        let real = self.storage.resolve(path);
        if real.parent() == self.journal_path.parent() {
            Ok(real)
        } else {
            Err(JournalWriteError::OutsideStore {
                file: real,
                journal: self.journal_path.clone(),
            })
        }
    }

    /// The parameters of a file.
    pub fn params(&self, file: FileHandle) -> Result<FileParams, JournalWriteError> {
        Ok(self.file(file)?.params)
    }

    /// The number of pages of a file, the header page included.
    pub fn page_count(&self, file: FileHandle) -> Result<u64, JournalWriteError> {
        Ok(self.file(file)?.pages)
    }

    /// The path of the journal.
    pub fn journal_path(&self) -> &Path {
        &self.journal_path
    }

    /// Reads and verifies page `page_no` of a file: `Ok(Some(body))` when it verifies,
    /// `Ok(None)` past the end, and the verdict as `Err` otherwise.
    pub fn read_page(
        &self,
        file: FileHandle,
        page_no: u64,
    ) -> Result<Option<Vec<u8>>, Result<PageVerdict, JournalWriteError>> {
        let f = self.file(file).map_err(Err)?;
        if page_no >= f.pages {
            return Ok(None);
        }
        let ps = f.params.page_size;
        let mut page = vec![0u8; ps];
        f.file
            .read_full_at(&mut page, page_no * ps as u64)
            .map_err(io_err(&f.path))
            .map_err(Err)?;
        match verify_page(&page, &f.params, page_no) {
            PageVerdict::Ok { .. } => Ok(Some(page.get(32..ps - 16).unwrap_or_default().to_vec())),
            v => Err(Ok(v)),
        }
    }

    /// Writes a batch durably through the journal (see the module docs) and returns its batch
    /// number. Pages past a file's end are preceded by free pages filling the gap, journaled
    /// like the others. Nothing is written when a write is invalid.
    pub fn commit(&mut self, writes: &[PageWrite<'_>]) -> Result<u64, JournalWriteError> {
        self.check_poison()?;
        let images = self.build_images(writes)?;
        let batch = self.next_batch;
        // Recycle before the batch, when every earlier batch is already in place and synced,
        // and before its records are encoded: they carry the generation they are written in.
        let len: u64 = images
            .iter()
            .map(|(_, _, img)| record_len(img.len()) as u64)
            .sum::<u64>()
            + record_len(COMMIT_PAYLOAD_LEN) as u64;
        if let Some(cap) = self.capacity {
            if self.end > JOURNAL_HEADER_LEN as u64 && self.end + len > cap {
                let r = self.recycle();
                self.poison_on(r)?;
            }
        }
        let mut records = Vec::with_capacity(len as usize);
        let mut sums = Vec::with_capacity(images.len());
        for (h, meta, image) in &images {
            let f = RecordFields {
                kind: RECORD_IMAGE,
                batch,
                file_id: self.files.get(*h).map_or(0, |d| d.params.file_id),
                page_no: meta.page_no,
                lsn: meta.lsn,
            };
            sums.push(encode_record(&mut records, &self.header, &f, image));
        }
        let commit = RecordFields {
            kind: RECORD_COMMIT,
            batch,
            file_id: 0,
            page_no: images.len() as u64,
            lsn: 0,
        };
        encode_record(
            &mut records,
            &self.header,
            &commit,
            &batch_digest(&sums).to_le_bytes(),
        );

        // 1. The journal first, durably.
        let path = self.journal_path.clone();
        let r = self
            .journal
            .write_all_at(&records, self.end)
            .and_then(|()| self.journal.sync())
            .map_err(io_err(&path));
        self.poison_on(r)?;
        self.end += records.len() as u64;
        self.next_batch += 1;

        // 2. Then in place, and every touched file synced.
        let mut touched = Vec::new();
        for (h, meta, image) in &images {
            let r = match self.files.get_mut(*h) {
                Some(f) => {
                    let ps = f.params.page_size as u64;
                    f.pages = f.pages.max(meta.page_no + 1);
                    f.file
                        .write_all_at(image, meta.page_no * ps)
                        .map_err(io_err(&f.path))
                }
                None => Err(JournalWriteError::BadHandle(*h)),
            };
            self.poison_on(r)?;
            if !touched.contains(h) {
                touched.push(*h);
            }
        }
        for h in touched {
            let r = match self.files.get_mut(h) {
                Some(f) => f.file.sync().map_err(io_err(&f.path)),
                None => Err(JournalWriteError::BadHandle(h)),
            };
            self.poison_on(r)?;
        }
        Ok(batch)
    }

    /// Starts a new generation: the header is rewritten and the records cut off. Records of the
    /// old generation that survive a crash in between never count (they carry the old one).
    fn recycle(&mut self) -> Result<(), JournalWriteError> {
        let header = JournalHeader {
            generation: self.header.generation + 1,
            ..self.header
        };
        let path = self.journal_path.clone();
        self.journal
            .write_all_at(&encode_header(&header), 0)
            .and_then(|()| self.journal.set_len(JOURNAL_HEADER_LEN as u64))
            .and_then(|()| self.journal.sync())
            .map_err(io_err(&path))?;
        self.header = header;
        self.end = JOURNAL_HEADER_LEN as u64;
        Ok(())
    }

    /// Validates the batch and builds its page images, gap pages included, in write order.
    fn build_images(
        &self,
        writes: &[PageWrite<'_>],
    ) -> Result<Vec<(usize, PageMeta, Vec<u8>)>, JournalWriteError> {
        let mut pages: HashMap<usize, u64> = HashMap::new();
        let mut out = Vec::new();
        for w in writes {
            let f = self.file(w.file)?;
            if w.page_no == 0 {
                return Err(JournalWriteError::HeaderPage);
            }
            let code = w.page_type.code();
            if matches!(w.page_type, PageType::Header | PageType::Quarantined)
                || PageType::from_code(code).is_none()
            {
                return Err(JournalWriteError::ReservedType(code));
            }
            let ps = f.params.page_size;
            if w.body.len() > body_len(ps) {
                return Err(EncodeError::BodyTooLarge {
                    len: w.body.len(),
                    max: body_len(ps),
                }
                .into());
            }
            let count = pages.entry(w.file.0).or_insert(f.pages);
            let mut add = |page_no: u64, page_type: u16, flags: u16, body: &[u8]| {
                let meta = PageMeta {
                    page_type,
                    flags,
                    file_id: f.params.file_id,
                    page_no,
                    lsn: w.lsn,
                };
                let mut image = vec![0u8; ps];
                encode_page(&mut image, &meta, body, f.params.algo)?;
                out.push((w.file.0, meta, image));
                Ok::<(), JournalWriteError>(())
            };
            while *count < w.page_no {
                add(*count, PageType::FREE, 0, &[])?;
                *count += 1;
            }
            add(w.page_no, code, w.flags, w.body)?;
            *count = (*count).max(w.page_no + 1);
        }
        // One image per page: the last one. An earlier image of the same page (a gap fill, or a
        // page written twice) must never reach the disk, or a crash could leave a version of the
        // page that no batch meant.
        let mut seen = std::collections::HashSet::new();
        let mut last: Vec<_> = out
            .into_iter()
            .rev()
            .filter(|(h, meta, _)| seen.insert((*h, meta.page_no)))
            .collect();
        last.reverse();
        Ok(last)
    }

    fn file(&self, h: FileHandle) -> Result<&DataFile<S::File>, JournalWriteError> {
        self.files.get(h.0).ok_or(JournalWriteError::BadHandle(h.0))
    }

    fn check_poison(&self) -> Result<(), JournalWriteError> {
        if self.poisoned {
            Err(JournalWriteError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison_on<T>(&mut self, r: Result<T, JournalWriteError>) -> Result<T, JournalWriteError> {
        if r.is_err() {
            self.poisoned = true;
        }
        r
    }
}

fn lock<F: StorageFile>(file: &F, path: &Path) -> Result<(), JournalWriteError> {
    match file.try_lock() {
        Ok(true) => Ok(()),
        Ok(false) => Err(JournalWriteError::Locked(path.to_path_buf())),
        Err(source) => Err(JournalWriteError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn sync_parent<S: Storage>(storage: &S, path: &Path) -> Result<(), JournalWriteError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => storage.sync_dir(dir).map_err(io_err(dir)),
        None => storage.sync_dir(Path::new(".")).map_err(io_err(path)),
    }
}
