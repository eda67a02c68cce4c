//! The native page journal (`docs/format.md` §9): a doublewrite-style log of committed batches
//! of full page images, written and fsynced before the pages are written in place, so that a
//! torn page can be rebuilt from a verified image.
//!
//! This module holds the byte layout, the encoders the journaled writer (in `dbfsck-repair`) uses,
//! and the reader that returns only what was committed: a batch counts when its commit record is
//! intact and agrees with every image before it; whatever follows the last such commit (a torn or
//! uncommitted tail, or the records after a damaged one) is ignored, never used.

use xxhash_rust::xxh3::xxh3_64;

use super::layout::is_valid_page_size;
use super::page::{le_u32, le_u64};
use crate::format::FileSource;

/// Magic at the start of a journal file: `b"DBFJ"`.
pub const JOURNAL_MAGIC: [u8; 4] = *b"DBFJ";
/// Magic at the start of every journal record: `b"DBJR"`.
pub const RECORD_MAGIC: [u8; 4] = *b"DBJR";
/// The journal format version this code reads and writes.
pub const JOURNAL_VERSION: u32 = 1;

/// Journal header `[0,4)` magic.
pub const JH_MAGIC_OFF: usize = 0;
/// `[4,8)` version, u32.
pub const JH_VERSION_OFF: usize = JH_MAGIC_OFF + 4;
/// `[8,16)` journal id, u64: every record repeats it.
pub const JH_ID_OFF: usize = JH_VERSION_OFF + 4;
/// `[16,24)` generation, u64: incremented each time the journal is recycled; every record
/// repeats it, so records left over from before a recycle never count.
pub const JH_GENERATION_OFF: usize = JH_ID_OFF + 8;
/// `[24,56)` reserved, zero.
pub const JH_RESERVED_OFF: usize = JH_GENERATION_OFF + 8;
/// `[56,64)` xxh3-64 of `[0,56)`.
pub const JH_CHECKSUM_OFF: usize = JH_RESERVED_OFF + 32;
/// Length of the journal header; the first record starts here.
pub const JOURNAL_HEADER_LEN: usize = JH_CHECKSUM_OFF + 8;

/// Record `[0,4)` magic.
pub const JR_MAGIC_OFF: usize = 0;
/// `[4,5)` record kind, u8 ([`RECORD_IMAGE`] or [`RECORD_COMMIT`]).
pub const JR_KIND_OFF: usize = JR_MAGIC_OFF + 4;
/// `[5,8)` reserved, zero.
pub const JR_RESERVED1_OFF: usize = JR_KIND_OFF + 1;
/// `[8,16)` journal id, u64.
pub const JR_JOURNAL_ID_OFF: usize = JR_RESERVED1_OFF + 3;
/// `[16,24)` generation, u64.
pub const JR_GENERATION_OFF: usize = JR_JOURNAL_ID_OFF + 8;
/// `[24,32)` batch sequence number, u64.
pub const JR_BATCH_OFF: usize = JR_GENERATION_OFF + 8;
/// `[32,40)` image: file id of the target page file; commit: 0.
pub const JR_FILE_ID_OFF: usize = JR_BATCH_OFF + 8;
/// `[40,48)` image: target page number; commit: number of images in the batch.
pub const JR_PAGE_NO_OFF: usize = JR_FILE_ID_OFF + 8;
/// `[48,56)` image: the LSN in the image; commit: 0.
pub const JR_LSN_OFF: usize = JR_PAGE_NO_OFF + 8;
/// `[56,60)` payload length, u32: the page size (image) or 8 (commit).
pub const JR_LEN_OFF: usize = JR_LSN_OFF + 8;
/// `[60,64)` reserved, zero.
pub const JR_RESERVED2_OFF: usize = JR_LEN_OFF + 4;
/// Length of a record header; the payload follows, then the record's u64 checksum.
pub const RECORD_HEADER_LEN: usize = JR_RESERVED2_OFF + 4;

/// Record kind: a full page image.
pub const RECORD_IMAGE: u8 = 1;
/// Record kind: the commit of a batch.
pub const RECORD_COMMIT: u8 = 2;
/// Payload length of a commit record: the batch digest.
pub const COMMIT_PAYLOAD_LEN: usize = 8;

/// Total length of a record with a payload of `payload_len` bytes.
pub const fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len + 8
}

/// The identity every record of a journal repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalHeader {
    /// Random id chosen when the journal was created.
    pub journal_id: u64,
    /// Incremented at each recycle.
    pub generation: u64,
}

/// Why a journal's header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The file is shorter than the journal header.
    #[error("the journal is {}, shorter than its {JOURNAL_HEADER_LEN}-byte header", crate::bytes(*len))]
    TooShort {
        /// File length.
        len: u64,
    },
    /// The magic is not `DBFJ`.
    #[error("not a dbfsck journal: the magic is not DBFJ")]
    BadMagic,
    /// The header checksum does not match.
    #[error("the journal header checksum does not match its bytes")]
    HeaderChecksum,
    /// An unknown version.
    #[error("journal format version {0} is not supported")]
    BadVersion(u32),
    /// Reading the journal failed.
    #[error("reading the journal failed: {0}")]
    Io(String),
}

/// Encodes a journal header.
pub fn encode_header(h: &JournalHeader) -> [u8; JOURNAL_HEADER_LEN] {
    let mut b = [0u8; JOURNAL_HEADER_LEN];
    put(&mut b, JH_MAGIC_OFF, &JOURNAL_MAGIC);
    put(&mut b, JH_VERSION_OFF, &JOURNAL_VERSION.to_le_bytes());
    put(&mut b, JH_ID_OFF, &h.journal_id.to_le_bytes());
    put(&mut b, JH_GENERATION_OFF, &h.generation.to_le_bytes());
    let sum = xxh3_64(b.get(..JH_CHECKSUM_OFF).unwrap_or_default());
    put(&mut b, JH_CHECKSUM_OFF, &sum.to_le_bytes());
    b
}

/// Parses a journal header from the first bytes of a file.
pub fn parse_header(b: &[u8]) -> Result<JournalHeader, JournalError> {
    let Some(head) = b.get(..JOURNAL_HEADER_LEN) else {
        return Err(JournalError::TooShort {
            len: b.len() as u64,
        });
    };
    if head.get(..4) != Some(&JOURNAL_MAGIC[..]) {
        return Err(JournalError::BadMagic);
    }
    let stored = le_u64(head, JH_CHECKSUM_OFF).unwrap_or(0);
    if xxh3_64(head.get(..JH_CHECKSUM_OFF).unwrap_or_default()) != stored {
        return Err(JournalError::HeaderChecksum);
    }
    let version = le_u32(head, JH_VERSION_OFF).unwrap_or(0);
    if version != JOURNAL_VERSION {
        return Err(JournalError::BadVersion(version));
    }
    Ok(JournalHeader {
        journal_id: le_u64(head, JH_ID_OFF).unwrap_or(0),
        generation: le_u64(head, JH_GENERATION_OFF).unwrap_or(0),
    })
}

/// Whether `head` starts like a journal (magic only; for detection).
pub fn looks_like_journal(head: &[u8]) -> bool {
    head.get(..4) == Some(&JOURNAL_MAGIC[..])
}

/// What a record identifies, beyond the journal's own identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields {
    /// Record kind.
    pub kind: u8,
    /// Batch sequence number.
    pub batch: u64,
    /// Image: target file id.
    pub file_id: u64,
    /// Image: target page; commit: image count.
    pub page_no: u64,
    /// Image: LSN.
    pub lsn: u64,
}

/// Appends one record to `out` and returns its checksum.
pub fn encode_record(
    out: &mut Vec<u8>,
    journal: &JournalHeader,
    fields: &RecordFields,
    payload: &[u8],
) -> u64 {
    let start = out.len();
    let mut h = [0u8; RECORD_HEADER_LEN];
    put(&mut h, JR_MAGIC_OFF, &RECORD_MAGIC);
    put(&mut h, JR_KIND_OFF, &[fields.kind]);
    put(&mut h, JR_JOURNAL_ID_OFF, &journal.journal_id.to_le_bytes());
    put(&mut h, JR_GENERATION_OFF, &journal.generation.to_le_bytes());
    put(&mut h, JR_BATCH_OFF, &fields.batch.to_le_bytes());
    put(&mut h, JR_FILE_ID_OFF, &fields.file_id.to_le_bytes());
    put(&mut h, JR_PAGE_NO_OFF, &fields.page_no.to_le_bytes());
    put(&mut h, JR_LSN_OFF, &fields.lsn.to_le_bytes());
    put(&mut h, JR_LEN_OFF, &(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let sum = xxh3_64(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&sum.to_le_bytes());
    sum
}

/// The digest a commit record carries: xxh3-64 of the batch's image record checksums, in order,
/// as little-endian u64s.
pub fn batch_digest(image_checksums: &[u64]) -> u64 {
    let bytes: Vec<u8> = image_checksums
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    xxh3_64(&bytes)
}

/// One committed page image in a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalImage {
    /// The batch that committed it.
    pub batch: u64,
    /// Target file id.
    pub file_id: u64,
    /// Target page number.
    pub page_no: u64,
    /// LSN the record names (the image's own header must agree).
    pub lsn: u64,
    /// Offset of the page image in the journal file.
    pub offset: u64,
    /// Length of the image (the page size).
    pub len: usize,
}

/// What a journal holds that may be used: its committed images, in journal order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalIndex {
    /// The journal's identity.
    pub header: JournalHeader,
    /// Every image of every committed batch, in the order written.
    pub images: Vec<JournalImage>,
    /// Number of committed batches.
    pub batches: u64,
    /// The last committed batch number, if any.
    pub last_batch: Option<u64>,
    /// End of the last committed batch: where the next batch is appended.
    pub committed_end: u64,
    /// Bytes after `committed_end` that are ignored (torn, uncommitted, or after a damaged record).
    pub ignored_tail: u64,
}

/// Reads a journal and returns its committed images. Reads one record at a time, so memory
/// stays bounded by the largest page whatever the journal's length; never panics.
pub fn read_journal(source: &dyn FileSource) -> Result<JournalIndex, JournalError> {
    let len = source.len();
    let mut head = [0u8; JOURNAL_HEADER_LEN];
    let n = source
        .read_full_at(0, &mut head)
        .map_err(|e| JournalError::Io(e.to_string()))?;
    let header = parse_header(head.get(..n).unwrap_or_default())?;
    let mut index = JournalIndex {
        header,
        images: Vec::new(),
        batches: 0,
        last_batch: None,
        committed_end: JOURNAL_HEADER_LEN as u64,
        ignored_tail: 0,
    };
    let mut pending: Vec<JournalImage> = Vec::new();
    let mut pending_sums: Vec<u64> = Vec::new();
    let mut pos = JOURNAL_HEADER_LEN as u64;
    let mut buf = Vec::new();
    loop {
        let mut rh = [0u8; RECORD_HEADER_LEN];
        let got = source
            .read_full_at(pos, &mut rh)
            .map_err(|e| JournalError::Io(e.to_string()))?;
        if got < RECORD_HEADER_LEN {
            break;
        }
        let Some(f) = check_record_header(&rh, &header) else {
            break;
        };
        let payload_len = le_u32(&rh, JR_LEN_OFF).unwrap_or(0) as usize;
        let total = record_len(payload_len);
        buf.clear();
        buf.resize(total, 0);
        let got = source
            .read_full_at(pos, &mut buf)
            .map_err(|e| JournalError::Io(e.to_string()))?;
        if got < total {
            break;
        }
        let sum_off = total - 8;
        let stored = le_u64(&buf, sum_off).unwrap_or(0);
        if xxh3_64(buf.get(..sum_off).unwrap_or_default()) != stored {
            break;
        }
        match f.kind {
            RECORD_IMAGE => {
                // A batch's images carry one batch number, above every committed batch.
                let continues = pending.first().is_none_or(|p| p.batch == f.batch);
                let fresh = index.last_batch.is_none_or(|b| f.batch > b);
                if !continues || !fresh {
                    break;
                }
                pending.push(JournalImage {
                    batch: f.batch,
                    file_id: f.file_id,
                    page_no: f.page_no,
                    lsn: f.lsn,
                    offset: pos + RECORD_HEADER_LEN as u64,
                    len: payload_len,
                });
                pending_sums.push(stored);
            }
            _ => {
                let digest = le_u64(&buf, RECORD_HEADER_LEN).unwrap_or(0);
                let agrees = pending.first().is_some_and(|p| p.batch == f.batch)
                    && f.page_no == pending.len() as u64
                    && digest == batch_digest(&pending_sums);
                if !agrees {
                    break;
                }
                index.images.append(&mut pending);
                pending_sums.clear();
                index.batches += 1;
                index.last_batch = Some(f.batch);
                index.committed_end = pos + total as u64;
            }
        }
        pos += total as u64;
    }
    index.ignored_tail = len.saturating_sub(index.committed_end);
    Ok(index)
}

/// The fields of a record header if it is well-formed and belongs to this journal.
fn check_record_header(rh: &[u8], journal: &JournalHeader) -> Option<RecordFields> {
    if rh.get(..4) != Some(&RECORD_MAGIC[..]) {
        return None;
    }
    let kind = *rh.get(JR_KIND_OFF)?;
    let reserved_zero = rh
        .get(JR_RESERVED1_OFF..JR_JOURNAL_ID_OFF)?
        .iter()
        .all(|&b| b == 0)
        && rh
            .get(JR_RESERVED2_OFF..RECORD_HEADER_LEN)?
            .iter()
            .all(|&b| b == 0);
    if !reserved_zero
        || le_u64(rh, JR_JOURNAL_ID_OFF)? != journal.journal_id
        || le_u64(rh, JR_GENERATION_OFF)? != journal.generation
    {
        return None;
    }
    let len = le_u32(rh, JR_LEN_OFF)? as usize;
    let len_ok = match kind {
        RECORD_IMAGE => is_valid_page_size(len as u64),
        RECORD_COMMIT => len == COMMIT_PAYLOAD_LEN,
        _ => false,
    };
    len_ok.then_some(RecordFields {
        kind,
        batch: le_u64(rh, JR_BATCH_OFF)?,
        file_id: le_u64(rh, JR_FILE_ID_OFF)?,
        page_no: le_u64(rh, JR_PAGE_NO_OFF)?,
        lsn: le_u64(rh, JR_LSN_OFF)?,
    })
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

/// The committed images of page `page_no` of file `file_id` in the journals found directly in
/// `dir` (files starting with the `DBFJ` magic), with their bytes, oldest first. Unreadable
/// files and journals are passed over: this serves `dbfsck inspect`, which shows what it finds.
pub fn images_in_dir(
    dir: &std::path::Path,
    file_id: u64,
    page_no: u64,
) -> Vec<(std::path::PathBuf, JournalImage, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Ok(file) = crate::access::open_for_scan(&path, true) else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let src = crate::access::PreadSource {
            file: &file,
            len: meta.len(),
            throttle: None,
        };
        let mut magic = [0u8; 4];
        if src.read_full_at(0, &mut magic).ok() != Some(4) || !looks_like_journal(&magic) {
            continue;
        }
        let Ok(index) = read_journal(&src) else {
            continue;
        };
        for img in index.images {
            if img.file_id != file_id || img.page_no != page_no {
                continue;
            }
            let mut bytes = vec![0u8; img.len];
            if src.read_full_at(img.offset, &mut bytes).ok() == Some(img.len) {
                out.push((path.clone(), img, bytes));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::format::BytesSource;

    fn batch(out: &mut Vec<u8>, h: &JournalHeader, batch: u64, pages: &[(u64, u64)]) {
        let mut sums = Vec::new();
        for &(page_no, lsn) in pages {
            let f = RecordFields {
                kind: RECORD_IMAGE,
                batch,
                file_id: 7,
                page_no,
                lsn,
            };
            sums.push(encode_record(out, h, &f, &vec![page_no as u8; 4096]));
        }
        let f = RecordFields {
            kind: RECORD_COMMIT,
            batch,
            file_id: 0,
            page_no: pages.len() as u64,
            lsn: 0,
        };
        encode_record(out, h, &f, &batch_digest(&sums).to_le_bytes());
    }

    #[test]
    fn committed_batches_count_and_a_torn_tail_is_ignored() {
        let h = JournalHeader {
            journal_id: 1,
            generation: 3,
        };
        let mut j = encode_header(&h).to_vec();
        batch(&mut j, &h, 1, &[(1, 10), (2, 10)]);
        batch(&mut j, &h, 2, &[(3, 11)]);
        let end = j.len() as u64;
        batch(&mut j, &h, 3, &[(4, 12)]);
        j.truncate(j.len() - 5); // commit record of batch 3 torn
        let idx = read_journal(&BytesSource(&j)).unwrap();
        assert_eq!(idx.batches, 2);
        assert_eq!(
            idx.images.iter().map(|i| i.page_no).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(idx.committed_end, end);
        assert_eq!(idx.ignored_tail, j.len() as u64 - end);
    }

    #[test]
    fn records_of_another_generation_never_count() {
        let old = JournalHeader {
            journal_id: 1,
            generation: 3,
        };
        let new = JournalHeader {
            journal_id: 1,
            generation: 4,
        };
        let mut j = encode_header(&new).to_vec();
        batch(&mut j, &old, 1, &[(1, 10)]);
        let idx = read_journal(&BytesSource(&j)).unwrap();
        assert!(idx.images.is_empty());
    }

    #[test]
    fn a_commit_that_disagrees_with_its_images_stops_the_journal() {
        let h = JournalHeader {
            journal_id: 1,
            generation: 0,
        };
        let mut j = encode_header(&h).to_vec();
        let f = RecordFields {
            kind: RECORD_IMAGE,
            batch: 1,
            file_id: 7,
            page_no: 1,
            lsn: 1,
        };
        encode_record(&mut j, &h, &f, &[0u8; 4096]);
        let c = RecordFields {
            kind: RECORD_COMMIT,
            batch: 1,
            file_id: 0,
            page_no: 2,
            lsn: 0,
        };
        encode_record(&mut j, &h, &c, &0u64.to_le_bytes());
        let idx = read_journal(&BytesSource(&j)).unwrap();
        assert!(idx.images.is_empty());
        assert_eq!(idx.batches, 0);
    }

    #[test]
    fn header_errors_are_typed() {
        assert_eq!(
            read_journal(&BytesSource(&[1, 2])),
            Err(JournalError::TooShort { len: 2 })
        );
        let mut h = encode_header(&JournalHeader {
            journal_id: 1,
            generation: 0,
        });
        h[20] ^= 1;
        assert_eq!(
            read_journal(&BytesSource(&h)),
            Err(JournalError::HeaderChecksum)
        );
        h[0] = b'X';
        assert_eq!(read_journal(&BytesSource(&h)), Err(JournalError::BadMagic));
    }
}
