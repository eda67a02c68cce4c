//! The header page (page 0) of a native file, and recovering a file's parameters when it is
//! damaged (`docs/format.md` §4).

use super::checksum::ChecksumAlgo;
use super::layout::*;
use super::page::{le_u32, le_u64, verify_page, FileParams, PageType, PageVerdict};

/// The decoded header page of a native file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version (1).
    pub version: u32,
    /// Parameters every page is verified with.
    pub params: FileParams,
}

/// Why a header page is not valid. One clear sentence each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer bytes than the header fields need.
    #[error("the file is {}, too short to hold a header page", crate::bytes(*len as u64))]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The first four bytes are not `DBFP`.
    #[error("the header magic is {found:02x?}, not \"DBFP\"")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// Page 0 is not of the header type.
    #[error("page 0 has type {0}, not the header type 1")]
    NotHeaderPage(u16),
    /// A version this code does not read.
    #[error("format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u32),
    /// The page size field is not a power of two from 4 KiB to 64 KiB.
    #[error("the header claims a page size of {0} bytes, which is not a power of two from 4 KiB to 64 KiB")]
    BadPageSize(u32),
    /// The checksum algorithm code is unknown.
    #[error("the header names checksum algorithm {0}, which is neither 1 (crc32) nor 2 (xxh3)")]
    BadChecksumAlgo(u8),
    /// The file ends inside the header page.
    #[error("the file is {}, shorter than its {page_size}-byte header page", crate::bytes(*len as u64))]
    PartialHeaderPage {
        /// Bytes available.
        len: usize,
        /// The claimed page size.
        page_size: usize,
    },
    /// The header page's own checksum fails.
    #[error("the header page checksum does not match (stored {stored}, computed {computed})")]
    ChecksumMismatch {
        /// Stored value, hex.
        stored: String,
        /// Computed value, hex.
        computed: String,
    },
    /// The header page's checksum verifies but its identity or LSN fields are impossible.
    #[error("the header page is not valid: {0}")]
    Invalid(String),
}

/// Parses and verifies the header page from the first bytes of a file (at least one page of
/// them, or the whole file if shorter). Never panics and never allocates by a size read from disk.
pub fn parse_header(head: &[u8]) -> Result<FileHeader, HeaderError> {
    if head.len() < HDR_END {
        return Err(HeaderError::TooShort { len: head.len() });
    }
    let mut magic = [0u8; 4];
    if let Some(m) = head.get(MAGIC_OFF..MAGIC_OFF + 4) {
        magic.copy_from_slice(m);
    }
    if magic != PAGE_MAGIC {
        return Err(HeaderError::BadMagic { found: magic });
    }
    let page_type = super::page::le_u16(head, TYPE_OFF).unwrap_or(0);
    if page_type != PageType::HEADER {
        return Err(HeaderError::NotHeaderPage(page_type));
    }
    let page_size = le_u32(head, HDR_PAGE_SIZE_OFF).unwrap_or(0);
    if !is_valid_page_size(u64::from(page_size)) {
        return Err(HeaderError::BadPageSize(page_size));
    }
    let page_size = page_size as usize;
    let code = head.get(HDR_CHECKSUM_OFF).copied().unwrap_or(0);
    let algo = ChecksumAlgo::from_code(code).ok_or(HeaderError::BadChecksumAlgo(code))?;
    let Some(page) = head.get(..page_size) else {
        return Err(HeaderError::PartialHeaderPage {
            len: head.len(),
            page_size,
        });
    };
    let file_id = le_u64(page, FILE_ID_OFF).unwrap_or(0);
    let params = FileParams {
        page_size,
        algo,
        file_id,
    };
    // The checksum is checked before the version, so rot in the version field reads as what it
    // is (a checksum mismatch); a verified header with another version is a real future file.
    let version = le_u32(head, HDR_VERSION_OFF).unwrap_or(0);
    match verify_page(page, &params, 0) {
        PageVerdict::Ok { .. } if version != FORMAT_VERSION => {
            Err(HeaderError::UnsupportedVersion(version))
        }
        PageVerdict::Ok { .. } => Ok(FileHeader { version, params }),
        PageVerdict::ChecksumMismatch {
            stored, computed, ..
        }
        | PageVerdict::Torn {
            stored, computed, ..
        } => Err(HeaderError::ChecksumMismatch {
            stored: algo.hex(stored),
            computed: algo.hex(computed),
        }),
        PageVerdict::Misdirected { page_no, .. } => Err(HeaderError::Invalid(format!(
            "it carries page number {page_no}, not 0"
        ))),
        PageVerdict::Invalid { reason } => Err(HeaderError::Invalid(reason)),
        PageVerdict::Quarantined { .. } | PageVerdict::Zeroed => {
            Err(HeaderError::Invalid("it is not a header page".into()))
        }
    }
}

/// Recovers a file's parameters from the pages after a damaged header: for each page size and
/// algorithm, counts the pages in `head` (page 1 onwards) that verify at their own position, and
/// picks the combination with the most. The file id is the one those pages carry.
pub fn probe_params(head: &[u8]) -> Option<FileParams> {
    let mut best: Option<(usize, FileParams)> = None;
    let mut page_size = MIN_PAGE_SIZE;
    while page_size <= MAX_PAGE_SIZE {
        for algo in [ChecksumAlgo::Crc32, ChecksumAlgo::Xxh3] {
            let mut votes = 0usize;
            let mut file_id = None;
            for (i, page) in head.chunks_exact(page_size).enumerate().skip(1) {
                let Some(id) = le_u64(page, FILE_ID_OFF) else {
                    continue;
                };
                let params = FileParams {
                    page_size,
                    algo,
                    file_id: id,
                };
                if let PageVerdict::Ok { .. } | PageVerdict::Quarantined { .. } =
                    verify_page(page, &params, i as u64)
                {
                    votes += 1;
                    file_id.get_or_insert(id);
                }
            }
            if let Some(file_id) = file_id {
                if best.as_ref().is_none_or(|(v, _)| votes > *v) {
                    best = Some((
                        votes,
                        FileParams {
                            page_size,
                            algo,
                            file_id,
                        },
                    ));
                }
            }
        }
        page_size *= 2;
    }
    best.map(|(_, p)| p)
}

/// Whether `head` starts like a native file whose header may be damaged: some page after the
/// first carries the page magic and its own page number at a valid page size.
pub fn looks_like_pages(head: &[u8]) -> bool {
    let mut page_size = MIN_PAGE_SIZE;
    while page_size <= MAX_PAGE_SIZE {
        if let Some(page) = head.get(page_size..2 * page_size) {
            if page.get(MAGIC_OFF..MAGIC_OFF + 4) == Some(&PAGE_MAGIC[..])
                && le_u64(page, PAGE_NO_OFF) == Some(1)
            {
                return true;
            }
        }
        page_size *= 2;
    }
    false
}
