//! Encoding and verifying single native pages (`docs/format.md` §3–§5).

use super::checksum::ChecksumAlgo;
use super::layout::*;

/// The type of a native page (u16 at offset 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageType {
    /// Page 0: the file header.
    Header,
    /// An allocated page with no content (written to fill gaps).
    Free,
    /// A page that repair cut out: readers treat it as a known hole; its data is lost.
    Quarantined,
    /// An application page; the code is 0x0100 or above.
    App(u16),
}

impl PageType {
    /// Code of [`PageType::Header`].
    pub const HEADER: u16 = 1;
    /// Code of [`PageType::Free`].
    pub const FREE: u16 = 2;
    /// Code of [`PageType::Quarantined`].
    pub const QUARANTINED: u16 = 3;
    /// First code available to applications.
    pub const FIRST_APP: u16 = 0x0100;

    /// The code stored in the page.
    pub const fn code(self) -> u16 {
        match self {
            PageType::Header => Self::HEADER,
            PageType::Free => Self::FREE,
            PageType::Quarantined => Self::QUARANTINED,
            PageType::App(c) => c,
        }
    }

    /// The type of a stored code; `None` for the reserved codes (0, 4–0xFF).
    pub const fn from_code(code: u16) -> Option<Self> {
        match code {
            Self::HEADER => Some(PageType::Header),
            Self::FREE => Some(PageType::Free),
            Self::QUARANTINED => Some(PageType::Quarantined),
            c if c >= Self::FIRST_APP => Some(PageType::App(c)),
            _ => None,
        }
    }
}

/// The parameters every page of a file is verified with, from its header page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileParams {
    /// Page size in bytes.
    pub page_size: usize,
    /// Checksum algorithm.
    pub algo: ChecksumAlgo,
    /// The file's id, which every page repeats.
    pub file_id: u64,
}

/// The header fields of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageMeta {
    /// Page type code.
    pub page_type: u16,
    /// Application flags.
    pub flags: u16,
    /// File id.
    pub file_id: u64,
    /// Page number.
    pub page_no: u64,
    /// LSN of the write that produced this page.
    pub lsn: u64,
}

/// Reads a little-endian u64 at `off`, or `None` past the end.
#[inline]
pub(crate) fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    let bytes = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Reads a little-endian u32 at `off`, or `None` past the end.
#[inline]
pub(crate) fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Reads a little-endian u16 at `off`, or `None` past the end.
#[inline]
pub(crate) fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    let bytes = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

/// Decodes the header fields of a page (no verification); `None` if `page` is too short.
pub fn decode_meta(page: &[u8]) -> Option<PageMeta> {
    Some(PageMeta {
        page_type: le_u16(page, TYPE_OFF)?,
        flags: le_u16(page, FLAGS_OFF)?,
        file_id: le_u64(page, FILE_ID_OFF)?,
        page_no: le_u64(page, PAGE_NO_OFF)?,
        lsn: le_u64(page, LSN_OFF)?,
    })
}

/// Why a page could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The buffer is not a valid page size.
    #[error("page buffer of {0} bytes is not a power of two from 4 KiB to 64 KiB")]
    BadPageSize(usize),
    /// The body does not fit.
    #[error("page body of {len} bytes exceeds the {max} bytes a page holds")]
    BodyTooLarge {
        /// Body length given.
        len: usize,
        /// Largest body for this page size.
        max: usize,
    },
}

/// Builds a complete page image in `page` (whose length is the page size): header, `body`
/// zero-padded, trailer LSN copy and checksum.
pub fn encode_page(
    page: &mut [u8],
    meta: &PageMeta,
    body: &[u8],
    algo: ChecksumAlgo,
) -> Result<(), EncodeError> {
    let ps = page.len();
    if !is_valid_page_size(ps as u64) {
        return Err(EncodeError::BadPageSize(ps));
    }
    if body.len() > body_len(ps) {
        return Err(EncodeError::BodyTooLarge {
            len: body.len(),
            max: body_len(ps),
        });
    }
    page.fill(0);
    put(page, MAGIC_OFF, &PAGE_MAGIC);
    put(page, TYPE_OFF, &meta.page_type.to_le_bytes());
    put(page, FLAGS_OFF, &meta.flags.to_le_bytes());
    put(page, FILE_ID_OFF, &meta.file_id.to_le_bytes());
    put(page, PAGE_NO_OFF, &meta.page_no.to_le_bytes());
    put(page, LSN_OFF, &meta.lsn.to_le_bytes());
    put(page, PAGE_HEADER_LEN, body);
    put(page, trailer_lsn_off(ps), &meta.lsn.to_le_bytes());
    seal_page(page, algo);
    Ok(())
}

/// Stamps the checksum of `page[..size-8]` into its last 8 bytes. Only for bytes that were just
/// built from a verified source: never over bytes read from a damaged page.
pub(crate) fn seal_page(page: &mut [u8], algo: ChecksumAlgo) {
    let off = checksum_off(page.len());
    let sum = page.get(..off).map_or(0, |covered| algo.compute(covered));
    put(page, off, &sum.to_le_bytes());
}

/// The verdict on one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageVerdict {
    /// The page verifies and is where it belongs.
    Ok {
        /// Page type code.
        page_type: u16,
        /// LSN.
        lsn: u64,
    },
    /// A valid quarantine marker page: a known hole.
    Quarantined {
        /// LSN of the marker.
        lsn: u64,
    },
    /// Every byte is zero.
    Zeroed,
    /// The checksum does not match and nothing says torn.
    ChecksumMismatch {
        /// Stored checksum field.
        stored: u64,
        /// Checksum of the bytes as they are.
        computed: u64,
        /// What the evidence says about where the damage is.
        cause: MismatchCause,
    },
    /// The checksum does not match and header and trailer LSN disagree in a way a single damaged
    /// field does not explain: the page mixes two writes.
    Torn {
        /// Stored checksum field.
        stored: u64,
        /// Checksum of the bytes as they are.
        computed: u64,
        /// LSN in the header.
        header_lsn: u64,
        /// LSN copy in the trailer.
        trailer_lsn: u64,
    },
    /// A page whose checksum verifies but which belongs to another page number or file.
    Misdirected {
        /// The file id the page carries.
        file_id: u64,
        /// The page number the page carries.
        page_no: u64,
    },
    /// The checksum verifies but a field is impossible (reserved type, header page out of place,
    /// LSN copies that differ).
    Invalid {
        /// Which field, in words.
        reason: String,
    },
}

/// Where the evidence places the damage of a checksum mismatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MismatchCause {
    /// Somewhere in the covered bytes or the checksum field; no more is known.
    Unknown,
    /// Only the header LSN is damaged: the page verifies with the trailer's LSN in its place.
    HeaderLsn,
    /// Only the trailer LSN copy is damaged: the page verifies with the header's LSN in its place.
    TrailerLsn,
}

/// Verifies one page that sits at `page_no` of a file with `params`. `page` must be exactly
/// one page long; never panics.
pub fn verify_page(page: &[u8], params: &FileParams, page_no: u64) -> PageVerdict {
    let ps = page.len();
    let algo = params.algo;
    let off = checksum_off(ps.max(PAGE_HEADER_LEN + PAGE_TRAILER_LEN));
    let (Some(covered), Some(stored)) = (page.get(..off), le_u64(page, off)) else {
        return PageVerdict::Invalid {
            reason: format!("page of {ps} bytes is too short"),
        };
    };
    let computed = algo.compute(covered);
    let header_lsn = le_u64(page, LSN_OFF).unwrap_or(0);
    let trailer_lsn = le_u64(page, trailer_lsn_off(ps)).unwrap_or(0);
    if computed != stored {
        let seen = Mismatch {
            stored,
            computed,
            header_lsn,
            trailer_lsn,
        };
        return classify_mismatch(page, params, page_no, seen);
    }
    let Some(meta) = decode_meta(page) else {
        return PageVerdict::Invalid {
            reason: "page header is cut short".into(),
        };
    };
    if page.get(MAGIC_OFF..MAGIC_OFF + 4) != Some(&PAGE_MAGIC[..]) {
        return PageVerdict::Invalid {
            reason: "the page magic is not DBFP".into(),
        };
    }
    if meta.file_id != params.file_id || meta.page_no != page_no {
        return PageVerdict::Misdirected {
            file_id: meta.file_id,
            page_no: meta.page_no,
        };
    }
    if header_lsn != trailer_lsn {
        return PageVerdict::Invalid {
            reason: format!(
                "header LSN {header_lsn} and trailer LSN {trailer_lsn} differ in a page whose checksum verifies"
            ),
        };
    }
    match PageType::from_code(meta.page_type) {
        Some(PageType::Header) if page_no != 0 => PageVerdict::Invalid {
            reason: "a header page outside page 0".into(),
        },
        Some(PageType::Quarantined) => PageVerdict::Quarantined { lsn: meta.lsn },
        Some(_) => PageVerdict::Ok {
            page_type: meta.page_type,
            lsn: meta.lsn,
        },
        None => PageVerdict::Invalid {
            reason: format!("page type {} is reserved", meta.page_type),
        },
    }
}

/// What was read from a page whose checksum does not match.
struct Mismatch {
    stored: u64,
    computed: u64,
    header_lsn: u64,
    trailer_lsn: u64,
}

fn classify_mismatch(
    page: &[u8],
    params: &FileParams,
    page_no: u64,
    seen: Mismatch,
) -> PageVerdict {
    let Mismatch {
        stored,
        computed,
        header_lsn,
        trailer_lsn,
    } = seen;
    let algo = params.algo;
    if page.iter().all(|&b| b == 0) {
        return PageVerdict::Zeroed;
    }
    // A tear is claimed only when the header sector is an intact header of this very page
    // (magic and identity) and the LSNs disagree: garbage with random LSN fields is no tear.
    let header_intact = page.get(MAGIC_OFF..MAGIC_OFF + 4) == Some(&PAGE_MAGIC[..])
        && le_u64(page, FILE_ID_OFF) == Some(params.file_id)
        && le_u64(page, PAGE_NO_OFF) == Some(page_no);
    if header_lsn == trailer_lsn || !header_intact {
        return PageVerdict::ChecksumMismatch {
            stored,
            computed,
            cause: MismatchCause::Unknown,
        };
    }
    // The LSNs disagree. If putting one LSN in the other's place makes the page verify, a single
    // damaged field explains everything: that is bit rot, not a torn write.
    let ps = page.len();
    let off = checksum_off(ps);
    let verifies_with = |lsn_off: usize, lsn: u64| {
        let mut copy = page.to_vec();
        put(&mut copy, lsn_off, &lsn.to_le_bytes());
        copy.get(..off).map(|c| algo.compute(c)) == Some(stored)
    };
    if verifies_with(trailer_lsn_off(ps), header_lsn) {
        return PageVerdict::ChecksumMismatch {
            stored,
            computed,
            cause: MismatchCause::TrailerLsn,
        };
    }
    if verifies_with(LSN_OFF, trailer_lsn) {
        return PageVerdict::ChecksumMismatch {
            stored,
            computed,
            cause: MismatchCause::HeaderLsn,
        };
    }
    PageVerdict::Torn {
        stored,
        computed,
        header_lsn,
        trailer_lsn,
    }
}
