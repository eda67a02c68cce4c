//! Byte layout of the native page-file format v1, mirroring `docs/format.md` §2–§3.
//! All integers are little-endian. Offsets are chained from the previous field.

/// Magic at the start of every page: `b"DBFP"`.
pub const PAGE_MAGIC: [u8; 4] = *b"DBFP";

/// `[0,4)` magic.
pub const MAGIC_OFF: usize = 0;
/// `[4,6)` page type, u16.
pub const TYPE_OFF: usize = MAGIC_OFF + 4;
/// `[6,8)` flags, u16, application-defined.
pub const FLAGS_OFF: usize = TYPE_OFF + 2;
/// `[8,16)` file id, u64.
pub const FILE_ID_OFF: usize = FLAGS_OFF + 2;
/// `[16,24)` page number, u64.
pub const PAGE_NO_OFF: usize = FILE_ID_OFF + 8;
/// `[24,32)` LSN, u64.
pub const LSN_OFF: usize = PAGE_NO_OFF + 8;
/// Size of the page header; the body starts here.
pub const PAGE_HEADER_LEN: usize = LSN_OFF + 8;

/// Size of the page trailer: the LSN copy then the checksum.
pub const PAGE_TRAILER_LEN: usize = 16;

/// Offset of the trailer's LSN copy in a page of `page_size` bytes.
pub const fn trailer_lsn_off(page_size: usize) -> usize {
    page_size - PAGE_TRAILER_LEN
}

/// Offset of the checksum in a page of `page_size` bytes; the checksum covers `[0, this)`.
pub const fn checksum_off(page_size: usize) -> usize {
    page_size - 8
}

/// Bytes of application payload in a page of `page_size` bytes.
pub const fn body_len(page_size: usize) -> usize {
    page_size - PAGE_HEADER_LEN - PAGE_TRAILER_LEN
}

/// Header page (page 0) body: `[32,36)` format version, u32.
pub const HDR_VERSION_OFF: usize = PAGE_HEADER_LEN;
/// `[36,40)` page size in bytes, u32.
pub const HDR_PAGE_SIZE_OFF: usize = HDR_VERSION_OFF + 4;
/// `[40,41)` checksum algorithm, u8.
pub const HDR_CHECKSUM_OFF: usize = HDR_PAGE_SIZE_OFF + 4;
/// `[41,48)` reserved, zero.
pub const HDR_RESERVED_OFF: usize = HDR_CHECKSUM_OFF + 1;
/// End of the defined header fields; the rest of page 0's body is zero.
pub const HDR_END: usize = HDR_RESERVED_OFF + 7;

/// The format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Smallest page size: 4 KiB.
pub const MIN_PAGE_SIZE: usize = 4 * 1024;
/// Largest page size: 64 KiB.
pub const MAX_PAGE_SIZE: usize = 64 * 1024;

/// Whether `size` is a valid page size: a power of two from 4 KiB to 64 KiB.
pub const fn is_valid_page_size(size: u64) -> bool {
    size.is_power_of_two() && size >= MIN_PAGE_SIZE as u64 && size <= MAX_PAGE_SIZE as u64
}
