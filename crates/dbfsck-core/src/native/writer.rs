//! The native page-file writer: what datastore code adopts to produce files dbfsck can verify.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::checksum::ChecksumAlgo;
use super::header::{parse_header, HeaderError};
use super::layout::*;
use super::page::PageVerdict;
use super::page::{encode_page, verify_page, EncodeError, FileParams, PageMeta, PageType};

/// Options for [`PageFile::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateOptions {
    /// Page size in bytes: a power of two from 4 KiB to 64 KiB. Default 8192.
    pub page_size: usize,
    /// Checksum algorithm. Default [`ChecksumAlgo::Xxh3`].
    pub checksum: ChecksumAlgo,
    /// The file id; default `None`, which draws a random one. Give one for reproducible bytes.
    pub file_id: Option<u64>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            page_size: 8192,
            checksum: ChecksumAlgo::Xxh3,
            file_id: None,
        }
    }
}

/// Why a write failed. After an I/O failure the file is poisoned: every later call fails with
/// [`WriteError::Poisoned`], because a failed write or fsync leaves the file in an unknown state
/// and retrying an fsync proves nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The operating system reported an error.
    #[error("I/O error on the page file: {0}")]
    Io(#[from] io::Error),
    /// A page could not be encoded (bad page size, body too large).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Page 0 holds the header and is written only by [`PageFile::create`].
    #[error("page 0 is the header page and cannot be written as a data page")]
    HeaderPage,
    /// The header and quarantine types are reserved to the format and to repair.
    #[error(
        "page type {0} is reserved; use PageType::Free or an application type (0x0100 and above)"
    )]
    ReservedType(u16),
    /// The file is not a valid native file.
    #[error("not a valid native page file: {0}")]
    BadHeader(#[from] HeaderError),
    /// The file length is not a whole number of pages.
    #[error("the file is {}, not a whole number of {page_size}-byte pages", crate::bytes(*len))]
    PartialPage {
        /// File length.
        len: u64,
        /// Page size.
        page_size: usize,
    },
    /// Another process holds the file's lock: a datastore or a repair is using it.
    #[error("the file is locked by another process (a datastore or a repair is using it)")]
    Locked,
    /// An earlier I/O failure poisoned this handle.
    #[error("an earlier write or fsync failed; this handle refuses further I/O")]
    Poisoned,
}

/// Why [`PageFile::read_page`] did not return a page body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadPageError {
    /// The operating system reported an error.
    #[error("I/O error reading the page: {0}")]
    Io(#[from] io::Error),
    /// The page number is past the end of the file.
    #[error("page {page_no} is past the end of the file ({pages} pages)")]
    OutOfRange {
        /// Page asked for.
        page_no: u64,
        /// Pages in the file.
        pages: u64,
    },
    /// The page failed verification; the verdict says how.
    #[error("page {page_no} failed verification: {verdict:?}")]
    Corrupt {
        /// Page asked for.
        page_no: u64,
        /// What verification found.
        verdict: PageVerdict,
    },
}

/// A native page file open for writing: create a file, write or overwrite pages, sync.
///
/// Each [`PageFile::write_page`] writes one whole page image in place with one positional write;
/// [`PageFile::sync`] makes everything written so far durable. A power cut between the two can
/// tear a page: dbfsck finds it (`torn_write`), and the journaled writer of the repair crate
/// rebuilds it.
#[derive(Debug)]
pub struct PageFile {
    file: File,
    params: FileParams,
    pages: u64,
    buf: Vec<u8>,
    poisoned: bool,
}

impl PageFile {
    /// Creates a new file (failing if it exists), writes its header page, and makes the file
    /// and its directory entry durable (fsync of both).
    pub fn create(path: &Path, options: CreateOptions) -> Result<PageFile, WriteError> {
        let ps = options.page_size;
        if !is_valid_page_size(ps as u64) {
            return Err(EncodeError::BadPageSize(ps).into());
        }
        let file_id = options.file_id.unwrap_or_else(random_file_id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let params = FileParams {
            page_size: ps,
            algo: options.checksum,
            file_id,
        };
        lock_exclusive(&file)?;
        let mut pf = PageFile {
            file,
            params,
            pages: 0,
            buf: vec![0; ps],
            poisoned: false,
        };
        let header = header_page(&params)?;
        pf.file.write_all_at(&header, 0).map_err(|e| pf.poison(e))?;
        pf.pages = 1;
        // The new file and its directory entry are durable before anyone relies on them.
        pf.sync()?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| pf.poison(e))?;
        }
        Ok(pf)
    }

    /// Opens an existing file for writing; its header page must verify and its length must be a
    /// whole number of pages.
    pub fn open(path: &Path) -> Result<PageFile, WriteError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        lock_exclusive(&file)?;
        let len = file.metadata()?.len();
        let mut head = vec![0u8; len.min(MAX_PAGE_SIZE as u64) as usize];
        file.read_exact_at(&mut head, 0)?;
        let header = parse_header(&head)?;
        let ps = header.params.page_size;
        if len % ps as u64 != 0 {
            return Err(WriteError::PartialPage { len, page_size: ps });
        }
        Ok(PageFile {
            file,
            params: header.params,
            pages: len / ps as u64,
            buf: vec![0; ps],
            poisoned: false,
        })
    }

    /// The parameters of this file (page size, checksum, file id).
    pub fn params(&self) -> FileParams {
        self.params
    }

    /// Number of pages in the file, the header page included.
    pub fn page_count(&self) -> u64 {
        self.pages
    }

    /// Bytes of body each page holds.
    pub fn body_len(&self) -> usize {
        body_len(self.params.page_size)
    }

    /// Writes `body` as page `page_no` (1 or above) with `page_type` and `lsn`. Writing past the
    /// end first fills the gap with [`PageType::Free`] pages, so every page of the file is valid.
    pub fn write_page(
        &mut self,
        page_no: u64,
        page_type: PageType,
        lsn: u64,
        body: &[u8],
    ) -> Result<(), WriteError> {
        self.write_page_with_flags(page_no, page_type, 0, lsn, body)
    }

    /// [`PageFile::write_page`] with application `flags`.
    pub fn write_page_with_flags(
        &mut self,
        page_no: u64,
        page_type: PageType,
        flags: u16,
        lsn: u64,
        body: &[u8],
    ) -> Result<(), WriteError> {
        if page_no == 0 {
            return Err(WriteError::HeaderPage);
        }
        if matches!(page_type, PageType::Header | PageType::Quarantined)
            || PageType::from_code(page_type.code()).is_none()
        {
            return Err(WriteError::ReservedType(page_type.code()));
        }
        let file_id = self.params.file_id;
        while self.pages < page_no {
            let gap = self.pages;
            let meta = PageMeta {
                page_type: PageType::FREE,
                flags: 0,
                file_id,
                page_no: gap,
                lsn,
            };
            self.write_image(gap, &meta, &[])?;
            self.pages += 1;
        }
        let meta = PageMeta {
            page_type: page_type.code(),
            flags,
            file_id,
            page_no,
            lsn,
        };
        self.write_image(page_no, &meta, body)?;
        self.pages = self.pages.max(page_no + 1);
        Ok(())
    }

    /// Reads page `page_no`, verifies it, and returns its body; a page that fails verification
    /// is an error carrying the verdict (the "verify a page on read" use).
    pub fn read_page(&self, page_no: u64) -> Result<Vec<u8>, ReadPageError> {
        if page_no >= self.pages {
            return Err(ReadPageError::OutOfRange {
                page_no,
                pages: self.pages,
            });
        }
        let ps = self.params.page_size;
        let mut page = vec![0u8; ps];
        self.file.read_exact_at(&mut page, page_no * ps as u64)?;
        match verify_page(&page, &self.params, page_no) {
            PageVerdict::Ok { .. } => Ok(page
                .get(PAGE_HEADER_LEN..trailer_lsn_off(ps))
                .unwrap_or_default()
                .to_vec()),
            verdict => Err(ReadPageError::Corrupt { page_no, verdict }),
        }
    }

    /// Makes every page written so far durable (`fsync`).
    pub fn sync(&mut self) -> Result<(), WriteError> {
        self.check_poison()?;
        self.file.sync_all().map_err(|e| self.poison(e))
    }

    fn write_image(
        &mut self,
        page_no: u64,
        meta: &PageMeta,
        body: &[u8],
    ) -> Result<(), WriteError> {
        self.check_poison()?;
        encode_page(&mut self.buf, meta, body, self.params.algo)?;
        let offset = page_no * self.params.page_size as u64;
        self.file
            .write_all_at(&self.buf, offset)
            .map_err(|e| self.poison(e))
    }

    fn check_poison(&self) -> Result<(), WriteError> {
        if self.poisoned {
            Err(WriteError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn poison(&mut self, e: io::Error) -> WriteError {
        self.poisoned = true;
        WriteError::Io(e)
    }
}

/// The header page (page 0) of a file with `params` (`docs/format.md` §4).
pub fn header_page(params: &FileParams) -> Result<Vec<u8>, EncodeError> {
    let ps = params.page_size;
    let mut page = vec![0u8; ps];
    let mut body = [0u8; HDR_END - PAGE_HEADER_LEN];
    let fields = [
        &FORMAT_VERSION.to_le_bytes()[..],
        &(ps as u32).to_le_bytes()[..],
        &[params.algo.code()][..],
    ]
    .concat();
    if let Some(dst) = body.get_mut(..fields.len()) {
        dst.copy_from_slice(&fields);
    }
    let meta = PageMeta {
        page_type: PageType::HEADER,
        flags: 0,
        file_id: params.file_id,
        page_no: 0,
        lsn: 0,
    };
    encode_page(&mut page, &meta, &body, params.algo)?;
    Ok(page)
}

/// Takes the exclusive advisory lock (`flock`) that tells a repair the file is in use; it is
/// released when the file is closed.
fn lock_exclusive(file: &File) -> Result<(), WriteError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(WriteError::Locked),
        Err(std::fs::TryLockError::Error(e)) => Err(WriteError::Io(e)),
    }
}

/// A random 64-bit id. Not cryptographic: it only has to differ between files.
pub fn random_file_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}
