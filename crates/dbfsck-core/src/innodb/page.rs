//! InnoDB pages: tablespace flags, the FIL header, and the verdict the server reaches on read
//! (`buf_page_is_corrupted`, non-strict mode, plus the page-identity check).

use super::checksum::{
    full_crc32, legacy_new, legacy_old, page_crc32, zip_adler32, zip_crc32, NO_CHECKSUM_MAGIC,
};
use super::compress;
use crate::finding::FindingKind;

/// FIL header offsets (all fields big-endian).
pub mod fil {
    /// Checksum (crc32, innodb) or key version (full_crc32).
    pub const SPACE_OR_CHKSUM: usize = 0;
    /// Page number.
    pub const PAGE_NO: usize = 4;
    /// LSN of the last change (8 bytes).
    pub const LSN: usize = 16;
    /// Page type.
    pub const TYPE: usize = 24;
    /// Flush LSN (page 0 of the system tablespace) or key version (old-format encryption).
    pub const FLUSH_LSN_OR_KEY_VERSION: usize = 26;
    /// Space id.
    pub const SPACE_ID: usize = 34;
    /// Start of the page body (the FSP header on page 0).
    pub const DATA: usize = 38;
    /// Tablespace flags on page 0 (FSP header + 16).
    pub const FSP_SPACE_FLAGS: usize = 54;
}

/// Page types the scan names in findings (`FIL_PAGE_TYPE`).
pub fn page_type_name(t: u16) -> Option<&'static str> {
    Some(match t {
        0 => "ALLOCATED",
        2 => "UNDO_LOG",
        3 => "INODE",
        4 => "IBUF_FREE_LIST",
        5 => "IBUF_BITMAP",
        6 => "SYS",
        7 => "TRX_SYS",
        8 => "FSP_HDR",
        9 => "XDES",
        10 => "BLOB",
        11 => "ZBLOB",
        12 => "ZBLOB2",
        13 => "UNKNOWN",
        14 => "COMPRESSED",
        15 => "ENCRYPTED",
        16 => "COMPRESSED_AND_ENCRYPTED",
        17 => "ENCRYPTED_RTREE",
        18 => "INSTANT",
        17853 => "RTREE",
        17854 => "SDI",
        17855 => "INDEX",
        34354 => "PAGE_COMPRESSED",
        37401 => "PAGE_COMPRESSED_ENCRYPTED",
        t if t & 0x8000 != 0 => "PAGE_COMPRESSED (full_crc32)",
        _ => return None,
    })
}

pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// How a tablespace's pages are laid out and checksummed, decoded from `FSP_SPACE_FLAGS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpaceFormat {
    /// The raw flags.
    pub flags: u32,
    /// Bytes per page in the file (the compressed size for ROW_FORMAT=COMPRESSED).
    pub physical_size: usize,
    /// Bytes per page in memory (`innodb_page_size`).
    pub logical_size: usize,
    /// MariaDB's full_crc32 format (flags bit 4).
    pub full_crc32: bool,
    /// ROW_FORMAT=COMPRESSED (old format, ZIP_SSIZE ≠ 0).
    pub zip: bool,
    /// Old-format PAGE_COMPRESSION (its compressed pages carry no checksum).
    pub page_compression: bool,
}

/// Why tablespace flags cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tablespace flags 0x{flags:x} are invalid: {reason}")]
pub struct FlagsError {
    /// The flags.
    pub flags: u32,
    /// What is wrong with them.
    pub reason: &'static str,
}

impl SpaceFormat {
    /// Decodes `FSP_SPACE_FLAGS` (`fsp0types.h`; `docs/innodb.md` §2).
    pub fn from_flags(flags: u32) -> Result<Self, FlagsError> {
        let err = |reason| Err(FlagsError { flags, reason });
        if flags & (1 << 4) != 0 {
            // full_crc32: bits 0-3 page ssize, 5-7 page_compressed algorithm; nothing above.
            let ssize = flags & 0xf;
            if !(3..=7).contains(&ssize) {
                return err("the full_crc32 page size is not 4, 8, 16, 32 or 64 KiB");
            }
            if flags & !0x1ff != 0 {
                return err("bits above the full_crc32 fields are set");
            }
            let size = 512usize << ssize;
            return Ok(SpaceFormat {
                flags,
                physical_size: size,
                logical_size: size,
                full_crc32: true,
                zip: false,
                page_compression: flags >> 5 & 7 != 0,
            });
        }
        let zip_ssize = flags >> 1 & 0xf;
        let page_ssize = flags >> 6 & 0xf;
        let logical = match page_ssize {
            0 => 16384,
            3..=7 => 512usize << page_ssize,
            _ => return err("the page size is not 4, 8, 16, 32 or 64 KiB"),
        };
        if zip_ssize > 5 || (zip_ssize != 0 && 512usize << zip_ssize > logical.min(16384)) {
            return err("the compressed page size is larger than the page");
        }
        // Bits 0, 5 and 10-18 are known in the old format (POST_ANTELOPE, ATOMIC_BLOBS,
        // DATA_DIR, PAGE_COMPRESSION, its level, ATOMIC_WRITES); nothing above bit 18.
        if flags >> 19 != 0 {
            return err("unknown high bits are set");
        }
        Ok(SpaceFormat {
            flags,
            physical_size: if zip_ssize == 0 {
                logical
            } else {
                512 << zip_ssize
            },
            logical_size: logical,
            full_crc32: false,
            zip: zip_ssize != 0,
            page_compression: flags & (1 << 16) != 0,
        })
    }

    /// A short name of the checksum scheme, for reports.
    pub fn scheme(&self) -> &'static str {
        if self.full_crc32 {
            "full_crc32"
        } else if self.zip {
            "ROW_FORMAT=COMPRESSED (crc32)"
        } else {
            "crc32 (innodb and none accepted on read)"
        }
    }
}

/// The server's verdict on one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageVerdict {
    /// The page is valid; its LSN.
    Ok {
        /// FIL_PAGE_LSN.
        lsn: u64,
        /// Which checksum matched (`full_crc32`, `crc32`, `innodb`, `none`…).
        checksum: &'static str,
    },
    /// All zero: a page never written (valid to the server and to innochecksum).
    Zero,
    /// The server rejects the page.
    Bad(PageFailure),
    /// The page cannot be checked without what dbfsck does not have (a key, a decompressor):
    /// neither damage nor verified; why.
    Unchecked(String),
}

/// Why the server rejects a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageFailure {
    /// The finding kind.
    pub kind: FindingKind,
    /// One sentence.
    pub detail: String,
    /// The stored and computed checksums, where they apply.
    pub checksums: Option<(u32, u32)>,
}

fn fail(kind: FindingKind, detail: String, checksums: Option<(u32, u32)>) -> PageVerdict {
    PageVerdict::Bad(PageFailure {
        kind,
        detail,
        checksums,
    })
}

/// Judges one page (exactly `fmt.physical_size` bytes) of tablespace `space_id` as page
/// `page_no`, the way MariaDB 10.11 does on read: checksum first (full_crc32, or for the old
/// format any of crc32, innodb and none; `docs/innodb.md` §4), then the page number and space
/// id in the header. Never panics.
pub fn judge_page(page: &[u8], fmt: &SpaceFormat, space_id: u32, page_no: u64) -> PageVerdict {
    if page.len() != fmt.physical_size {
        return fail(
            FindingKind::PartialPage,
            format!(
                "{} where a {}-byte page is expected",
                crate::bytes(page.len() as u64),
                fmt.physical_size
            ),
            None,
        );
    }
    if page.iter().all(|&b| b == 0) {
        return PageVerdict::Zero;
    }
    let t = be16(page, fil::TYPE);
    if !fmt.full_crc32 && !fmt.zip && fmt.page_compression && (t == 34354 || t == 37401) {
        return judge_old_compressed(page, fmt, space_id, page_no);
    }
    let checksum = if fmt.full_crc32 {
        match judge_full_crc32(page) {
            Ok(c) => c,
            Err(v) => return v,
        }
    } else if fmt.zip {
        match judge_zip(page) {
            Ok(c) => c,
            Err(v) => return v,
        }
    } else {
        match judge_old(page, page_no) {
            Ok(c) => c,
            Err(v) => return v,
        }
    };
    let (stored_page, stored_space) = (be32(page, fil::PAGE_NO), be32(page, fil::SPACE_ID));
    // A full_crc32 page_compressed page keeps its header only up to byte 26: the space id
    // is inside the compressed payload (the server checks it after decompressing).
    let fcrc_compressed = fmt.full_crc32 && be16(page, fil::TYPE) & 0x8000 != 0;
    // An encrypted full_crc32 page (key version at 0) keeps its page number and LSN in the
    // clear, but its space id is encrypted: the CRC, computed over the encrypted bytes, is
    // what can be checked.
    let fcrc_encrypted = fmt.full_crc32 && be32(page, fil::SPACE_OR_CHKSUM) != 0;
    // Its space id is checked once it is decompressed, as the server checks it (an encrypted
    // one is decrypted first, which needs the key).
    let inflate = fcrc_compressed && !fcrc_encrypted;
    let stored_space = match inflate.then(|| full_crc32_inflate(page, fmt)) {
        Some(Ok(inner)) => be32(&inner, fil::SPACE_ID),
        Some(Err(compress::Inflate::Bad(why))) => {
            return fail(
                FindingKind::BadHeader,
                format!("the checksum matches but {why}: the server rejects the page"),
                None,
            )
        }
        Some(Err(compress::Inflate::Unsupported(_))) | None => stored_space,
    };
    let space_hidden =
        fcrc_encrypted || (fcrc_compressed && compress::algorithm_name(fcrc_algo(fmt)) == "lzo");
    if u64::from(stored_page) != page_no || (stored_space != space_id && !space_hidden) {
        return fail(
            FindingKind::MisdirectedWrite,
            format!(
                "a valid page that belongs elsewhere: its header says space {stored_space} page \
                 {stored_page}, but it sits at space {space_id} page {page_no}"
            ),
            None,
        );
    }
    PageVerdict::Ok {
        lsn: be64(page, fil::LSN),
        checksum,
    }
}

/// The space id a page claims: for a full_crc32 page_compressed page, the one inside it once
/// decompressed (`None` when it does not decompress under `fmt`).
pub(crate) fn claimed_space_id(page: &[u8], fmt: &SpaceFormat) -> Option<u32> {
    if fmt.full_crc32 && be16(page, fil::TYPE) & 0x8000 != 0 {
        return full_crc32_inflate(page, fmt)
            .ok()
            .map(|inner| be32(&inner, fil::SPACE_ID));
    }
    Some(be32(page, fil::SPACE_ID))
}

/// The page_compressed algorithm of a full_crc32 tablespace (flags bits 5-7).
fn fcrc_algo(fmt: &SpaceFormat) -> u16 {
    (fmt.flags >> 5 & 7) as u16
}

/// The page a full_crc32 page_compressed page inflates to (`docs/innodb.md` §4): the stream
/// from byte 26 to the size in the type field; for LZ4, LZO and Snappy the byte before the
/// CRC gives the exact length.
pub(crate) fn full_crc32_inflate(
    page: &[u8],
    fmt: &SpaceFormat,
) -> Result<Vec<u8>, compress::Inflate> {
    let algo = fcrc_algo(fmt);
    let mut size = usize::from(be16(page, fil::TYPE) & 0x7fff) << 8;
    if matches!(algo, 2 | 3 | 6) {
        let lsb = usize::from(page.get(size.wrapping_sub(5)).copied().unwrap_or(0));
        if lsb != 0 {
            size = (size + lsb).saturating_sub(0x100);
        }
        size = size.saturating_sub(5);
    }
    let input = page
        .get(fil::FLUSH_LSN_OR_KEY_VERSION..size.min(page.len()))
        .unwrap_or_default();
    compress::inflate(algo, input, page.len())
}

/// An old-format page_compressed page: its container checked as the server does
/// (`fil_page_decompress_for_non_full_crc32`), then the page it inflates to judged as any
/// page of the tablespace, its identity included. Type 37401 is encrypted after compression:
/// without the key it cannot be checked.
fn judge_old_compressed(
    page: &[u8],
    fmt: &SpaceFormat,
    space_id: u32,
    page_no: u64,
) -> PageVerdict {
    let n = page.len();
    if be16(page, fil::TYPE) == 37401 {
        return PageVerdict::Unchecked(
            "page_compressed and encrypted (PAGE_COMPRESSED_ENCRYPTED): its checksum is checked only after decryption, which needs the key".into(),
        );
    }
    let header = |why: String| fail(FindingKind::BadHeader, why, None);
    let field1 = be32(page, fil::SPACE_OR_CHKSUM);
    if field1 != NO_CHECKSUM_MAGIC {
        return header(format!(
            "a page_compressed page whose checksum field is 0x{field1:08x}, not DEADBEEF: the server rejects it"
        ));
    }
    if page.get(26..32).is_some_and(|z| z.iter().any(|&b| b != 0)) {
        return header("a page_compressed page whose bytes 26-31, before its algorithm, are not zero: the server rejects it".into());
    }
    let algo = be16(page, 32);
    let len = usize::from(be16(page, fil::DATA));
    if len == 0 || len > n - (fil::DATA + 2) {
        return header(format!(
            "a page_compressed page that claims {len} compressed bytes in a {n}-byte page"
        ));
    }
    let input = page
        .get(fil::DATA + 2..fil::DATA + 2 + len)
        .unwrap_or_default();
    let inner = match compress::inflate(algo, input, n) {
        Ok(p) => p,
        Err(compress::Inflate::Bad(why)) => {
            return fail(
                FindingKind::ChecksumMismatch,
                format!("a page_compressed page: {why}"),
                None,
            )
        }
        Err(compress::Inflate::Unsupported(name)) => {
            return PageVerdict::Unchecked(format!(
                "page_compressed with {name}, which dbfsck does not decompress"
            ))
        }
    };
    let t = be16(&inner, fil::TYPE);
    if t == 34354 || t == 37401 {
        return header(
            "a page_compressed page that decompresses to another compressed page".into(),
        );
    }
    let plain = SpaceFormat {
        page_compression: false,
        ..*fmt
    };
    match judge_page(&inner, &plain, space_id, page_no) {
        PageVerdict::Ok { lsn, checksum } => PageVerdict::Ok {
            lsn,
            checksum: match checksum {
                "crc32" => "crc32 (after page_compressed decompression)",
                "innodb" => "innodb (after page_compressed decompression)",
                _ => "none (after page_compressed decompression)",
            },
        },
        PageVerdict::Zero => PageVerdict::Ok {
            lsn: 0,
            checksum: "none (page_compressed: decompresses to an all-zero page)",
        },
        PageVerdict::Bad(mut f) => {
            f.detail = format!(
                "after page_compressed decompression ({}): {}",
                compress::algorithm_name(algo),
                f.detail
            );
            PageVerdict::Bad(f)
        }
        u @ PageVerdict::Unchecked(_) => u,
    }
}

fn judge_full_crc32(page: &[u8]) -> Result<&'static str, PageVerdict> {
    let n = page.len();
    let t = be16(page, fil::TYPE);
    let (size, compressed) = if t & 0x8000 != 0 {
        let size = usize::from(t & 0x7fff) << 8;
        if size >= n || size < fil::DATA + 4 {
            return Err(fail(
                FindingKind::BadHeader,
                format!(
                    "the page_compressed type field 0x{t:04x} claims {size} bytes of data in a \
                     {n}-byte page"
                ),
                None,
            ));
        }
        (size, true)
    } else {
        (n, false)
    };
    let stored = be32(page, size - 4);
    let computed = full_crc32(page.get(..size - 4).unwrap_or_default());
    let lsn_ok = compressed
        || be32(page, fil::SPACE_OR_CHKSUM) != 0
        || page.get(20..24) == page.get(n - 8..n - 4);
    if stored != computed {
        if !lsn_ok {
            return Err(fail(
                FindingKind::TornWrite,
                "torn write: the checksum fails and the LSN in the trailer differs from the \
                 header's (the page mixes two writes)"
                    .into(),
                Some((stored, computed)),
            ));
        }
        return Err(fail(
            FindingKind::ChecksumMismatch,
            "full_crc32 checksum mismatch (CRC-32C of the page)".into(),
            Some((stored, computed)),
        ));
    }
    if !lsn_ok {
        return Err(fail(
            FindingKind::BadHeader,
            "the checksum matches but the LSN in the trailer differs from the header's: the \
             server rejects the page"
                .into(),
            None,
        ));
    }
    Ok(if compressed {
        "full_crc32 (page_compressed)"
    } else {
        "full_crc32"
    })
}

fn judge_zip(page: &[u8]) -> Result<&'static str, PageVerdict> {
    let stored = be32(page, fil::SPACE_OR_CHKSUM);
    let computed = zip_crc32(page);
    if stored == computed {
        return Ok("crc32");
    }
    if stored == NO_CHECKSUM_MAGIC {
        return Ok("none");
    }
    if stored != 0 && stored == zip_adler32(page) {
        return Ok("innodb (Adler-32)");
    }
    Err(fail(
        FindingKind::ChecksumMismatch,
        "ROW_FORMAT=COMPRESSED page checksum mismatch".into(),
        Some((stored, computed)),
    ))
}

fn judge_old(page: &[u8], page_no: u64) -> Result<&'static str, PageVerdict> {
    let n = page.len();
    let t = be16(page, fil::TYPE);
    let field1 = be32(page, fil::SPACE_OR_CHKSUM);
    let field2 = be32(page, n - 8);
    let crc = page_crc32(page);
    if page.get(20..24) != page.get(n - 4..n) {
        return Err(fail(
            FindingKind::TornWrite,
            "torn write: the low 32 bits of the LSN in the trailer differ from the header's (the \
             page mixes two writes)"
                .into(),
            Some((field1, crc)),
        ));
    }
    if field1 == crc && field2 == crc {
        return Ok("crc32");
    }
    if field1 == 0
        && field2 == 0
        && page
            .iter()
            .enumerate()
            .all(|(i, &b)| b == 0 || (26..34).contains(&i))
    {
        return Ok("none (empty page)");
    }
    // An encrypted page (file_key_management, old format): key version at 26, and at 30 the
    // checksum of the encrypted bytes (`fil_space_verify_crypt_checksum`); fields 1 and 2 hold
    // the checksum from before encryption, which cannot be checked without the key. Page 0 is
    // never encrypted (ibdata1's keeps its flush LSN there).
    // MySQL's own compressed and encrypted page types (14, 15, 16) use these bytes otherwise.
    let key_version = be32(page, 26);
    if page_no != 0 && key_version != 0 && !(14..=16).contains(&t) {
        let post = be32(page, 30);
        if post == crc || post == legacy_new(page) {
            return Ok("crc32 (encrypted: the checksum of the encrypted page)");
        }
        return Err(fail(
            FindingKind::ChecksumMismatch,
            format!(
                "encrypted page (key version {key_version}): the checksum of the encrypted bytes does not match"
            ),
            Some((post, crc)),
        ));
    }
    if field1 == NO_CHECKSUM_MAGIC && field2 == NO_CHECKSUM_MAGIC {
        return Ok("none");
    }
    let mismatch = || {
        fail(
            FindingKind::ChecksumMismatch,
            "page checksum mismatch (none of crc32, innodb or none matches)".into(),
            Some((field1, crc)),
        )
    };
    let crc_both = field1 == crc && field2 == crc;
    // The trailer field: the old fold, or (very old files) the LSN's high word.
    if field2 != be32(page, fil::LSN)
        && field2 != NO_CHECKSUM_MAGIC
        && !crc_both
        && field2 != legacy_old(page)
    {
        return Err(mismatch());
    }
    if field1 == 0 || field1 == NO_CHECKSUM_MAGIC {
        return Ok("none");
    }
    if !crc_both && field1 != legacy_new(page) {
        return Err(mismatch());
    }
    Ok("innodb")
}

/// Writes a page's LSN trailer and checksum fields the way the server does for `fmt`
/// (full_crc32; crc32 for the old format; the XOR of three CRC-32C for ROW_FORMAT=COMPRESSED).
/// For building test tablespaces and fixtures: a repair never computes a checksum, it only
/// writes images that verify on their own.
pub fn stamp_page(page: &mut [u8], fmt: &SpaceFormat) {
    let n = page.len();
    if n < fil::DATA + 8 {
        return;
    }
    let lsn_lo: [u8; 4] = page
        .get(20..24)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_default();
    let put = |page: &mut [u8], off: usize, v: [u8; 4]| {
        if let Some(d) = page.get_mut(off..off + 4) {
            d.copy_from_slice(&v);
        }
    };
    if fmt.full_crc32 {
        let t = be16(page, fil::TYPE);
        let size = if t & 0x8000 != 0 {
            (usize::from(t & 0x7fff) << 8).clamp(fil::DATA + 4, n)
        } else {
            put(page, n - 8, lsn_lo);
            n
        };
        let c = full_crc32(page.get(..size - 4).unwrap_or_default());
        put(page, size - 4, c.to_be_bytes());
    } else if fmt.zip {
        let c = zip_crc32(page);
        put(page, 0, c.to_be_bytes());
    } else {
        put(page, n - 4, lsn_lo);
        let c = page_crc32(page);
        put(page, 0, c.to_be_bytes());
        put(page, n - 8, c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 16384;

    fn fcrc() -> SpaceFormat {
        SpaceFormat::from_flags(0x15).unwrap()
    }
    fn c32() -> SpaceFormat {
        SpaceFormat::from_flags(0x21).unwrap()
    }

    fn body(page_no: u32, space: u32, lsn: u64) -> Vec<u8> {
        let mut p: Vec<u8> = (0..PS).map(|i| ((7 * i + 3) & 0xff) as u8).collect();
        p[4..8].copy_from_slice(&page_no.to_be_bytes());
        p[16..24].copy_from_slice(&lsn.to_be_bytes());
        p[24..26].copy_from_slice(&17855u16.to_be_bytes());
        // FIL_PAGE_FILE_FLUSH_LSN_OR_KEY_VERSION: zero on an unencrypted page other than 0.
        p[26..34].fill(0);
        p[34..38].copy_from_slice(&space.to_be_bytes());
        p
    }

    pub(crate) fn stamp_full_crc32(p: &mut [u8]) {
        let n = p.len();
        p[0..4].fill(0);
        let lsn_lo: [u8; 4] = p[20..24].try_into().unwrap();
        p[n - 8..n - 4].copy_from_slice(&lsn_lo);
        let c = full_crc32(&p[..n - 4]);
        p[n - 4..].copy_from_slice(&c.to_be_bytes());
    }

    pub(crate) fn stamp_crc32(p: &mut [u8]) {
        let n = p.len();
        let lsn_lo: [u8; 4] = p[20..24].try_into().unwrap();
        p[n - 4..].copy_from_slice(&lsn_lo);
        let c = page_crc32(p);
        p[0..4].copy_from_slice(&c.to_be_bytes());
        p[n - 8..n - 4].copy_from_slice(&c.to_be_bytes());
    }

    fn stamp_legacy(p: &mut [u8]) {
        let n = p.len();
        let lsn_lo: [u8; 4] = p[20..24].try_into().unwrap();
        p[n - 4..].copy_from_slice(&lsn_lo);
        let new = legacy_new(p);
        p[0..4].copy_from_slice(&new.to_be_bytes());
        let old = legacy_old(p);
        p[n - 8..n - 4].copy_from_slice(&old.to_be_bytes());
    }

    #[test]
    fn flags_decode() {
        let f = fcrc();
        assert!(f.full_crc32 && f.physical_size == PS && !f.page_compression);
        let f = SpaceFormat::from_flags(0x35).unwrap();
        assert!(f.full_crc32 && f.page_compression);
        let f = c32();
        assert!(!f.full_crc32 && !f.zip && f.physical_size == PS);
        let f = SpaceFormat::from_flags(0x29).unwrap();
        assert!(f.zip && f.physical_size == 8192 && f.logical_size == PS);
        assert_eq!(SpaceFormat::from_flags(0).unwrap().physical_size, PS);
        assert!(SpaceFormat::from_flags(0x10).is_err());
        assert!(SpaceFormat::from_flags(0x18).is_err());
        assert!(SpaceFormat::from_flags(0xffff_ffff).is_err());
    }

    #[test]
    fn full_crc32_verdicts() {
        let mut p = body(3, 5, 0x1_0000_0042);
        stamp_full_crc32(&mut p);
        assert!(matches!(
            judge_page(&p, &fcrc(), 5, 3),
            PageVerdict::Ok {
                lsn: 0x1_0000_0042,
                ..
            }
        ));
        // Misdirected: valid page, wrong place.
        assert!(
            matches!(judge_page(&p, &fcrc(), 5, 4), PageVerdict::Bad(f) if f.kind == FindingKind::MisdirectedWrite)
        );
        assert!(
            matches!(judge_page(&p, &fcrc(), 6, 3), PageVerdict::Bad(f) if f.kind == FindingKind::MisdirectedWrite)
        );
        // A flipped bit.
        let mut q = p.clone();
        q[9000] ^= 1;
        assert!(
            matches!(judge_page(&q, &fcrc(), 5, 3), PageVerdict::Bad(f) if f.kind == FindingKind::ChecksumMismatch)
        );
        // Torn: the first sectors from a newer write.
        let mut t = p.clone();
        t[16..24].copy_from_slice(&0x1_0000_0099u64.to_be_bytes());
        assert!(
            matches!(judge_page(&t, &fcrc(), 5, 3), PageVerdict::Bad(f) if f.kind == FindingKind::TornWrite)
        );
        // All zero is a never-written page.
        assert_eq!(judge_page(&vec![0; PS], &fcrc(), 5, 3), PageVerdict::Zero);
    }

    /// A full_crc32 zlib page_compressed page (flags 0x35) made the server's way: the page's
    /// first 26 bytes, the stream, zeros up to the 256-byte size in the type, the CRC.
    fn fcrc_compressed(page_no: u32, space: u32) -> Vec<u8> {
        use std::io::Write as _;
        let inner = body(page_no, space, 7);
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&inner).unwrap();
        let stream = e.finish().unwrap();
        let size = (26 + stream.len() + 4 + 255) & !255;
        let mut p = vec![0u8; PS];
        p[4..26].copy_from_slice(&inner[4..26]); // 0..4: key version 0, not encrypted
        p[24..26].copy_from_slice(&(0x8000u16 | (size >> 8) as u16).to_be_bytes());
        p[26..26 + stream.len()].copy_from_slice(&stream);
        let c = full_crc32(&p[..size - 4]);
        p[size - 4..size].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn full_crc32_page_compressed() {
        let zlib = SpaceFormat::from_flags(0x35).unwrap();
        let mut p = fcrc_compressed(3, 5);
        assert!(matches!(
            judge_page(&p, &zlib, 5, 3),
            PageVerdict::Ok { .. }
        ));
        // The space id is the one inside the page once decompressed.
        assert_eq!(claimed_space_id(&p, &zlib), Some(5));
        let other = fcrc_compressed(3, 6);
        assert!(
            matches!(judge_page(&other, &zlib, 5, 3), PageVerdict::Bad(f) if f.kind == FindingKind::MisdirectedWrite)
        );
        // In a tablespace without page compression, a compressed page is rejected.
        assert!(
            matches!(judge_page(&p, &fcrc(), 5, 3), PageVerdict::Bad(f) if f.kind == FindingKind::BadHeader)
        );
        // The size field claims more than the page.
        p[24..26].copy_from_slice(&(0x8000u16 | 0x40).to_be_bytes());
        assert!(
            matches!(judge_page(&p, &zlib, 5, 3), PageVerdict::Bad(f) if f.kind == FindingKind::ChecksumMismatch || f.kind == FindingKind::BadHeader)
        );
        p[24..26].copy_from_slice(&(0x8000u16 | 0x7fff).to_be_bytes());
        assert!(
            matches!(judge_page(&p, &zlib, 5, 3), PageVerdict::Bad(f) if f.kind == FindingKind::BadHeader)
        );
    }

    #[test]
    fn encrypted_pages_are_judged_by_their_encrypted_checksum() {
        // Old format: key version at 26, the checksum of the encrypted bytes at 30.
        let mut p = body(9, 6, 1234);
        p[26..30].copy_from_slice(&1u32.to_be_bytes());
        p[PS - 4..].copy_from_slice(&1234u32.to_be_bytes());
        let crc = page_crc32(&p);
        p[30..34].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            judge_page(&p, &c32(), 6, 9),
            PageVerdict::Ok { .. }
        ));
        p[9000] ^= 1;
        assert!(
            matches!(judge_page(&p, &c32(), 6, 9), PageVerdict::Bad(f) if f.kind == FindingKind::ChecksumMismatch)
        );
        // full_crc32: key version at 0, space id encrypted; the CRC covers the encrypted page.
        let mut f = body(9, 0x5a5a_5a5a, 1234);
        f[0..4].copy_from_slice(&1u32.to_be_bytes());
        let c = full_crc32(&f[..PS - 4]);
        f[PS - 4..].copy_from_slice(&c.to_be_bytes());
        assert!(matches!(
            judge_page(&f, &fcrc(), 6, 9),
            PageVerdict::Ok { .. }
        ));
        assert!(
            matches!(judge_page(&f, &fcrc(), 6, 10), PageVerdict::Bad(b) if b.kind == FindingKind::MisdirectedWrite),
            "the page number is in the clear and still checked"
        );
    }

    #[test]
    fn old_format_accepts_crc32_legacy_and_none() {
        let mut p = body(9, 6, 1234);
        stamp_crc32(&mut p);
        assert!(matches!(
            judge_page(&p, &c32(), 6, 9),
            PageVerdict::Ok {
                checksum: "crc32",
                ..
            }
        ));
        let mut l = body(9, 6, 1234);
        stamp_legacy(&mut l);
        assert!(matches!(
            judge_page(&l, &c32(), 6, 9),
            PageVerdict::Ok {
                checksum: "innodb",
                ..
            }
        ));
        let mut n = body(9, 6, 1234);
        n[0..4].copy_from_slice(&NO_CHECKSUM_MAGIC.to_be_bytes());
        n[PS - 8..PS - 4].copy_from_slice(&NO_CHECKSUM_MAGIC.to_be_bytes());
        n[PS - 4..].copy_from_slice(&1234u32.to_be_bytes());
        assert!(matches!(
            judge_page(&n, &c32(), 6, 9),
            PageVerdict::Ok {
                checksum: "none",
                ..
            }
        ));
        // A flipped body bit fails every scheme.
        for mut q in [p.clone(), l.clone()] {
            q[5000] ^= 4;
            assert!(
                matches!(judge_page(&q, &c32(), 6, 9), PageVerdict::Bad(f) if f.kind == FindingKind::ChecksumMismatch)
            );
        }
        // Header LSN from another write: torn.
        let mut t = p.clone();
        t[23] ^= 1;
        assert!(
            matches!(judge_page(&t, &c32(), 6, 9), PageVerdict::Bad(f) if f.kind == FindingKind::TornWrite)
        );
    }

    #[test]
    fn zip_pages() {
        let fmt = SpaceFormat::from_flags(0x29).unwrap();
        let mut p = body(4, 7, 55);
        p.truncate(8192);
        let c = zip_crc32(&p);
        p[0..4].copy_from_slice(&c.to_be_bytes());
        assert!(matches!(judge_page(&p, &fmt, 7, 4), PageVerdict::Ok { .. }));
        // LSN and flush-LSN bytes are outside the checksum; the body is inside.
        let mut q = p.clone();
        q[17] ^= 1;
        assert!(matches!(judge_page(&q, &fmt, 7, 4), PageVerdict::Ok { .. }));
        q[4000] ^= 1;
        assert!(matches!(judge_page(&q, &fmt, 7, 4), PageVerdict::Bad(_)));
        let a = zip_adler32(&p);
        p[0..4].copy_from_slice(&a.to_be_bytes());
        assert!(matches!(judge_page(&p, &fmt, 7, 4), PageVerdict::Ok { .. }));
    }

    #[test]
    fn never_panics_on_short_or_garbage() {
        for fmt in [fcrc(), c32(), SpaceFormat::from_flags(0x29).unwrap()] {
            for n in [0, 1, 37, 100, fmt.physical_size - 1] {
                let _ = judge_page(&vec![0xa5; n], &fmt, 1, 1);
            }
            let mut g = vec![0xffu8; fmt.physical_size];
            let _ = judge_page(&g, &fmt, 1, 1);
            g[24] = 0x80; // page_compressed with a tiny size
            g[25] = 0;
            let _ = judge_page(&g, &fmt, 1, 1);
        }
    }
}
