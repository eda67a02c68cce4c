//! The header page (page 0) of a native file, and recovering a file's parameters when it is
//! damaged (`docs/format.md` §4).

use super::checksum::ChecksumAlgo;
use super::layout::*;
use super::page::{le_u32, le_u64, verify_page, FileParams, PageType, PageVerdict};
use crate::format::FileSource;

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
/// algorithm, counts the pages in `head` (page 1 onwards) that verify at their own position
/// with the file id they carry, and picks the identity with the most.
pub fn probe_params(head: &[u8]) -> Option<FileParams> {
    let votes = identity_votes(&[(0, head)]);
    best_vote(&votes).map(|(p, _)| p)
}

/// How many pages (page 1 onwards) in `windows` (byte offset in the file, bytes) verify on their
/// own checksum at their own position, per identity (page size, algorithm, file id). A page is
/// read at each page size whose magic and page number fit, so the cost is about one checksum
/// per real page.
pub fn identity_votes(windows: &[(u64, &[u8])]) -> Vec<(FileParams, usize)> {
    let mut votes: Vec<(FileParams, usize)> = Vec::new();
    let mut page_size = MIN_PAGE_SIZE;
    while page_size <= MAX_PAGE_SIZE {
        for &(offset, bytes) in windows {
            // The first page boundary inside the window.
            let skip = (page_size as u64 - offset % page_size as u64) % page_size as u64;
            let Some(aligned) = bytes.get(skip as usize..) else {
                continue;
            };
            let first = (offset + skip) / page_size as u64;
            for (i, page) in aligned.chunks_exact(page_size).enumerate() {
                let page_no = first + i as u64;
                if page_no == 0
                    || page.get(MAGIC_OFF..MAGIC_OFF + 4) != Some(&PAGE_MAGIC[..])
                    || le_u64(page, PAGE_NO_OFF) != Some(page_no)
                {
                    continue;
                }
                let Some(file_id) = le_u64(page, FILE_ID_OFF) else {
                    continue;
                };
                for algo in [ChecksumAlgo::Crc32, ChecksumAlgo::Xxh3] {
                    let params = FileParams {
                        page_size,
                        algo,
                        file_id,
                    };
                    if let PageVerdict::Ok { .. } | PageVerdict::Quarantined { .. } =
                        verify_page(page, &params, page_no)
                    {
                        match votes.iter_mut().find(|(p, _)| *p == params) {
                            Some((_, n)) => *n += 1,
                            None => votes.push((params, 1)),
                        }
                        break;
                    }
                }
            }
        }
        page_size *= 2;
    }
    votes
}

/// The identity with the most votes (the first met on a tie: smaller pages, crc32 first).
fn best_vote(votes: &[(FileParams, usize)]) -> Option<(FileParams, usize)> {
    votes
        .iter()
        .fold(None::<(FileParams, usize)>, |best, &(p, n)| match best {
            Some((_, b)) if b >= n => best,
            _ => Some((p, n)),
        })
}

/// Sample windows of a file beyond its head: up to this many, spread evenly.
const SAMPLE_WINDOWS: u64 = 16;

/// A file's identity as its pages tell it: the header's parameters are trusted only when the
/// pages that verify on their own do not, by majority, belong to another identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The parameters to judge the pages with, when any are known.
    pub params: Option<FileParams>,
    /// The header page's verdict.
    pub header: Result<FileParams, HeaderError>,
    /// When the header verifies but the pages disagree with it: how many sampled pages belong
    /// to `params`, and how many to the header's identity (the header page itself included).
    pub outvoted: Option<(usize, usize)>,
}

/// Decides a file's identity from its header page and its pages: `head` is the file's first
/// bytes (at least the header page when the file has one); up to 16 more 64 KiB windows are
/// read through `source` when the cheap look at the head (page numbers and file ids, no
/// checksum) does not already agree with the header.
pub fn identify(source: &dyn FileSource, head: &[u8]) -> std::io::Result<Identity> {
    let header = parse_header(head).map(|h| h.params);
    if let Ok(h) = header {
        if agrees_cheaply(head, &h) {
            return Ok(Identity {
                params: Some(h),
                header,
                outvoted: None,
            });
        }
    }
    // Windows beyond the head, 64 KiB each, spread evenly over the rest of the file.
    let w = MAX_PAGE_SIZE as u64;
    let len = source.len();
    let first = (head.len() as u64).div_ceil(w) * w;
    let mut owned: Vec<(u64, Vec<u8>)> = Vec::new();
    if len > first {
        let step = (len - first) / SAMPLE_WINDOWS;
        for k in 0..SAMPLE_WINDOWS {
            let at = first + step * k / w * w;
            if owned.last().is_some_and(|(o, _)| *o == at) {
                continue;
            }
            let mut buf = vec![0u8; (len - at).min(w) as usize];
            let n = source.read_full_at(at, &mut buf)?;
            buf.truncate(n);
            owned.push((at, buf));
        }
    }
    let mut windows: Vec<(u64, &[u8])> = vec![(0, head)];
    windows.extend(owned.iter().map(|(o, b)| (*o, b.as_slice())));
    let votes = identity_votes(&windows);
    let best = best_vote(&votes);
    Ok(match header {
        Ok(h) => {
            // The header page is one vote for its own identity.
            let own = votes.iter().find(|(p, _)| *p == h).map_or(0, |v| v.1) + 1;
            match best {
                Some((p, n)) if p != h && n > own => Identity {
                    params: Some(p),
                    header,
                    outvoted: Some((n, own)),
                },
                _ => Identity {
                    params: Some(h),
                    header,
                    outvoted: None,
                },
            }
        }
        Err(_) => Identity {
            params: best.map(|(p, _)| p),
            header,
            outvoted: None,
        },
    })
}

/// Whether the pages in `head` agree with the header's identity without computing a checksum:
/// at the header's page size, at least half of the page slots after the header hold a page
/// with its own page number, and no more of those carry another file id than this one.
fn agrees_cheaply(head: &[u8], h: &FileParams) -> bool {
    let (mut slots, mut numbered, mut other) = (0usize, 0usize, 0usize);
    for (i, page) in head.chunks_exact(h.page_size).enumerate().skip(1) {
        slots += 1;
        if page.get(MAGIC_OFF..MAGIC_OFF + 4) == Some(&PAGE_MAGIC[..])
            && le_u64(page, PAGE_NO_OFF) == Some(i as u64)
        {
            numbered += 1;
            if le_u64(page, FILE_ID_OFF) != Some(h.file_id) {
                other += 1;
            }
        }
    }
    slots == 0 || (2 * numbered >= slots && 2 * other <= numbered)
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
