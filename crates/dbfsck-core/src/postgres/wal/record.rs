//! One WAL record, reassembled: header sanity, CRC-32C over what PostgreSQL covers, and its
//! fragments decoded far enough to know that they add up, whether it is a commit (and when), and
//! whether it switches segments. `../shared/formats-pgwal.md` §2–§3.

use super::segment::Stop;

/// `SizeOfXLogRecord`.
pub(crate) const HEADER: usize = 24;

const RM_XLOG: u8 = 0;
const RM_XACT: u8 = 1;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
/// Built-in resource managers run 0..=21 in PostgreSQL 13–17; 128..=255 are custom.
const RM_MAX_BUILTIN: u8 = 21;
const RM_MIN_CUSTOM: u8 = 128;

/// A resource manager's name (`src/include/access/rmgrlist.h`, PostgreSQL 15).
pub(crate) fn rmgr_name(id: u8) -> String {
    const NAMES: [&str; 22] = [
        "XLOG",
        "Transaction",
        "Storage",
        "CLOG",
        "Database",
        "Tablespace",
        "MultiXact",
        "RelMap",
        "Standby",
        "Heap2",
        "Heap",
        "Btree",
        "Hash",
        "Gin",
        "Gist",
        "Sequence",
        "SPGist",
        "BRIN",
        "CommitTs",
        "ReplicationOrigin",
        "Generic",
        "LogicalMessage",
    ];
    NAMES
        .get(usize::from(id))
        .map_or_else(|| format!("{id} (custom)"), |n| (*n).to_owned())
}

/// What a record that verifies says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decoded {
    /// `xl_prev`.
    pub prev: u64,
    /// `xl_rmid` and `xl_info`.
    pub rmid: u8,
    pub info: u8,
    /// The commit time of a commit record (µs since 2000-01-01 UTC).
    pub commit_time: Option<i64>,
    /// `XLOG_OVERWRITE_CONTRECORD`: the start of the record it replaces.
    pub overwritten: Option<u64>,
}

impl Decoded {
    /// `XLOG_SWITCH`: the rest of the segment is unused.
    pub fn is_switch(&self) -> bool {
        self.rmid == RM_XLOG && self.info & 0xF0 == XLOG_SWITCH
    }
}

/// A record's bytes: contiguous, or in pieces as they lie on the WAL pages (a record that
/// spans pages is judged where it lies, never copied together).
pub(crate) trait RecBytes {
    /// How many bytes.
    fn total(&self) -> usize;
    /// Copies `out.len()` bytes from `at`; false past the end.
    fn read(&self, at: usize, out: &mut [u8]) -> bool;
    /// CRC-32C of the bytes from `at` to the end.
    fn crc_from(&self, at: usize) -> u32;
}

impl RecBytes for [u8] {
    fn total(&self) -> usize {
        self.len()
    }
    fn read(&self, at: usize, out: &mut [u8]) -> bool {
        match self.get(at..at + out.len()) {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
    fn crc_from(&self, at: usize) -> u32 {
        crc32c::crc32c(self.get(at..).unwrap_or_default())
    }
}

/// A record in the pieces the pages hold.
pub(crate) struct Pieces<'a>(pub Vec<&'a [u8]>);

impl RecBytes for Pieces<'_> {
    fn total(&self) -> usize {
        self.0.iter().map(|p| p.len()).sum()
    }
    fn read(&self, at: usize, out: &mut [u8]) -> bool {
        let mut skip = at;
        let mut done = 0;
        for p in &self.0 {
            if done == out.len() {
                break;
            }
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            let src = p.get(skip..).unwrap_or_default();
            let n = src.len().min(out.len() - done);
            if let (Some(d), Some(s)) = (out.get_mut(done..done + n), src.get(..n)) {
                d.copy_from_slice(s);
            }
            done += n;
            skip = 0;
        }
        done == out.len()
    }
    fn crc_from(&self, at: usize) -> u32 {
        let mut skip = at;
        let mut crc = 0u32;
        let mut first = true;
        for p in &self.0 {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            let part = p.get(skip..).unwrap_or_default();
            skip = 0;
            crc = if first {
                crc32c::crc32c(part)
            } else {
                crc32c::crc32c_append(crc, part)
            };
            first = false;
        }
        crc
    }
}

fn rd<const N: usize, B: RecBytes + ?Sized>(b: &B, at: usize) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    b.read(at, &mut out).then_some(out)
}
fn u16_at<B: RecBytes + ?Sized>(b: &B, at: usize) -> Option<u16> {
    rd::<2, B>(b, at).map(u16::from_le_bytes)
}
fn u32_at<B: RecBytes + ?Sized>(b: &B, at: usize) -> Option<u32> {
    rd::<4, B>(b, at).map(u32::from_le_bytes)
}
fn u64_at<B: RecBytes + ?Sized>(b: &B, at: usize) -> Option<u64> {
    rd::<8, B>(b, at).map(u64::from_le_bytes)
}
fn u8_at<B: RecBytes + ?Sized>(b: &B, at: usize) -> Option<u8> {
    rd::<1, B>(b, at).map(|[x]| x)
}

/// The end pointer of a record of `len` bytes that starts at `pos`: its last byte's successor,
/// page headers skipped (a record ending exactly on a page boundary ends at the boundary).
/// Both sizes are powers of two (checked when a segment is opened): masks, not divisions, on
/// every record.
pub(crate) fn end_lsn(pos: u64, len: u64, page_size: u64, seg_size: u64) -> u64 {
    debug_assert!(page_size.is_power_of_two() && seg_size.is_power_of_two());
    let mut at = pos;
    let mut left = len;
    loop {
        let room = page_size - (at & (page_size - 1));
        if left <= room {
            return at + left;
        }
        left -= room;
        at += room;
        at += if at & (seg_size - 1) == 0 { 40 } else { 24 };
    }
}

/// The header checks PostgreSQL makes as soon as the 24 header bytes are in: length, resource
/// manager, and `xl_prev` (equal to the previous record's start when reading on from it, or
/// merely before the record when there is none).
pub(crate) fn check_header<B: RecBytes + ?Sized>(
    b: &B,
    pos: u64,
    want_prev: Option<u64>,
) -> Result<(), Stop> {
    let tot_len = u32_at(b, 0).unwrap_or_default();
    let prev = u64_at(b, 8).unwrap_or_default();
    let rmid = u8_at(b, 17).unwrap_or_default();
    if (tot_len as usize) < HEADER {
        return Err(Stop::BadHeader(format!(
            "invalid record length: wanted 24, got {tot_len}"
        )));
    }
    if rmid > RM_MAX_BUILTIN && rmid < RM_MIN_CUSTOM {
        return Err(Stop::BadHeader(format!(
            "invalid resource manager ID {rmid}"
        )));
    }
    match want_prev {
        Some(want) if prev != want => return Err(Stop::BadPrev { got: prev, want }),
        None if prev >= pos => return Err(Stop::BadPrev { got: prev, want: 0 }),
        _ => {}
    }
    Ok(())
}

/// The CRC-32C PostgreSQL stores: over the bytes after the header, then the header's first 20.
pub(crate) fn crc<B: RecBytes + ?Sized>(b: &B) -> u32 {
    let head = rd::<20, B>(b, 0).unwrap_or_default();
    crc32c::crc32c_append(b.crc_from(HEADER), &head)
}

/// The stored CRC.
pub(crate) fn stored_crc<B: RecBytes + ?Sized>(b: &B) -> u32 {
    u32_at(b, 20).unwrap_or_default()
}

/// Checks a whole record (its `xl_tot_len` bytes, page headers removed).
pub(crate) fn check<B: RecBytes + ?Sized>(
    b: &B,
    pos: u64,
    want_prev: Option<u64>,
    v15: bool,
) -> Result<Decoded, Stop> {
    check_header(b, pos, want_prev)?;
    let (stored, computed) = (stored_crc(b), crc(b));
    if stored != computed {
        return Err(Stop::Crc { stored, computed });
    }
    decode(b, v15)
}

/// Checks a whole record whose header already passed [`check_header`]: its CRC, then its
/// fragments.
pub(crate) fn check_body<B: RecBytes + ?Sized>(b: &B, v15: bool) -> Result<Decoded, Stop> {
    let (stored, computed) = (stored_crc(b), crc(b));
    if stored != computed {
        return Err(Stop::Crc { stored, computed });
    }
    decode(b, v15)
}

/// Checks a record whose CRC is already known to match (one reassembled across segments).
pub(crate) fn decode<B: RecBytes + ?Sized>(b: &B, v15: bool) -> Result<Decoded, Stop> {
    let prev = u64_at(b, 8).unwrap_or_default();
    let info = u8_at(b, 16).unwrap_or_default();
    let rmid = u8_at(b, 17).unwrap_or_default();
    let main = main_data(b, v15).map_err(Stop::BadBody)?;
    let commit_time = (rmid == RM_XACT
        && matches!(
            info & XLOG_XACT_OPMASK,
            XLOG_XACT_COMMIT | XLOG_XACT_COMMIT_PREPARED
        ))
    .then(|| (main.1 >= 8).then(|| rd::<8, B>(b, main.0)).flatten())
    .flatten()
    .map(i64::from_le_bytes);
    let overwritten = (rmid == RM_XLOG && info & 0xF0 == XLOG_OVERWRITE_CONTRECORD && main.1 >= 8)
        .then(|| rd::<8, B>(b, main.0))
        .flatten()
        .map(u64::from_le_bytes);
    Ok(Decoded {
        prev,
        rmid,
        info,
        commit_time,
        overwritten,
    })
}

/// Walks the fragment headers (block references, origin, top-level xid, main-data length) and
/// returns where the main data lies (offset, length): the lengths must add up to the record's exactly, as PostgreSQL
/// requires (`DecodeXLogRecord`). `v15`: the image flags are numbered as from PostgreSQL 15 on.
fn main_data<B: RecBytes + ?Sized>(b: &B, v15: bool) -> Result<(usize, usize), String> {
    fragments(b, v15, None)
}

/// Where a whole record's main data lies (offset, length).
pub(crate) fn main_data_of(b: &[u8], v15: bool) -> Option<(usize, usize)> {
    fragments(b, v15, None).ok()
}

/// A block reference of a record (`XLogRecordBlockHeader` and what follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRef {
    /// `block_id`.
    pub id: u8,
    /// The fork number (0 main, 1 fsm, 2 vm, 3 init).
    pub fork: u8,
    /// Tablespace, database and relfilenode.
    pub rel: [u32; 3],
    /// The block number in the fork.
    pub blk: u32,
    /// The image, when the reference carries one.
    pub image: Option<ImageHeader>,
    /// Where the image's bytes start in the record (valid when `image` is some).
    pub image_at: usize,
}

/// `XLogRecordBlockImageHeader`, with the compressed hole length when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ImageHeader {
    /// Bytes of the image as stored (compressed or not, hole removed).
    pub len: u16,
    /// `hole_offset`.
    pub hole_offset: u16,
    /// `bimg_info`.
    pub info: u8,
    /// The hole's length from `XLogRecordBlockCompressHeader`, for a compressed image with one.
    pub hole_len: Option<u16>,
}

/// The block references of a whole record (one whose CRC verified).
pub(crate) fn block_refs(b: &[u8], v15: bool) -> Result<Vec<BlockRef>, String> {
    let mut refs = Vec::new();
    fragments(b, v15, Some(&mut refs))?;
    Ok(refs)
}

/// Walks the fragment headers; with `refs`, also collects the block references with where each
/// image's bytes lie (after the headers, each block's image then its data, in order).
fn fragments<B: RecBytes + ?Sized>(
    b: &B,
    v15: bool,
    mut refs: Option<&mut Vec<BlockRef>>,
) -> Result<(usize, usize), String> {
    let total = b.total();
    // Per block: the bytes its image and data take after the headers.
    let mut payload: Vec<(usize, usize)> = Vec::new();
    let mut p = HEADER;
    let mut remaining = total - HEADER;
    let mut datatotal: usize = 0;
    let mut main_len: usize = 0;
    let mut last_id: Option<u8> = None;
    let mut have_rel = false;
    let mut rel = [0u32; 3];
    let byte = |at: usize| u8_at(b, at).ok_or("record fragments run past its length");
    while remaining > datatotal {
        let id = byte(p)?;
        p += 1;
        remaining -= 1;
        match id {
            255 => {
                main_len = usize::from(byte(p)?);
                remaining = remaining.checked_sub(1).ok_or("short main-data header")?;
                datatotal += main_len;
                break;
            }
            254 => {
                main_len = u32_at(b, p).ok_or("short main-data header")? as usize;
                remaining = remaining.checked_sub(4).ok_or("short main-data header")?;
                datatotal += main_len;
                break;
            }
            253 => {
                p += 2;
                remaining = remaining.checked_sub(2).ok_or("short origin header")?;
            }
            252 => {
                p += 4;
                remaining = remaining
                    .checked_sub(4)
                    .ok_or("short top-level xid header")?;
            }
            0..=32 => {
                if last_id.is_some_and(|l| id <= l) {
                    return Err(format!("out-of-order block_id {id}"));
                }
                last_id = Some(id);
                let fork_flags = byte(p)?;
                let data_len = usize::from(u16_at(b, p + 1).ok_or("short block header")?);
                p += 3;
                remaining = remaining.checked_sub(3).ok_or("short block header")?;
                let has_image = fork_flags & 0x10 != 0;
                let has_data = fork_flags & 0x20 != 0;
                let same_rel = fork_flags & 0x80 != 0;
                if has_data != (data_len > 0) {
                    return Err(format!(
                        "block {id}: the has-data flag and data length {data_len} disagree"
                    ));
                }
                datatotal += data_len;
                let mut image = None;
                if has_image {
                    let len = u16_at(b, p).ok_or("short image header")?;
                    let hole_offset = u16_at(b, p + 2).ok_or("short image header")?;
                    let bimg_info = byte(p + 4)?;
                    p += 5;
                    remaining = remaining.checked_sub(5).ok_or("short image header")?;
                    // A compressed image with a hole carries a 2-byte hole length.
                    let mut hole_len = None;
                    if bimg_info & 0x01 != 0 && compressed(bimg_info, v15) {
                        hole_len = u16_at(b, p);
                        p += 2;
                        remaining = remaining.checked_sub(2).ok_or("short compression header")?;
                    }
                    datatotal += usize::from(len);
                    image = Some(ImageHeader {
                        len,
                        hole_offset,
                        info: bimg_info,
                        hole_len,
                    });
                }
                if !same_rel {
                    for (k, r) in rel.iter_mut().enumerate() {
                        *r = u32_at(b, p + 4 * k).ok_or("short relation header")?;
                    }
                    p += 12;
                    remaining = remaining.checked_sub(12).ok_or("short relation header")?;
                    have_rel = true;
                } else if !have_rel {
                    return Err("BKPBLOCK_SAME_REL set but no previous rel".into());
                }
                let blk = u32_at(b, p).ok_or("short block number")?;
                p += 4;
                remaining = remaining.checked_sub(4).ok_or("short block number")?;
                if let Some(refs) = refs.as_deref_mut() {
                    refs.push(BlockRef {
                        id,
                        fork: fork_flags & 0x0F,
                        rel,
                        blk,
                        image,
                        image_at: 0,
                    });
                    payload.push((image.map_or(0, |i| usize::from(i.len)), data_len));
                }
            }
            other => return Err(format!("invalid block_id {other}")),
        }
    }
    if remaining != datatotal {
        return Err(format!(
            "record with invalid length: fragments announce {datatotal} bytes, {remaining} remain"
        ));
    }
    if let Some(refs) = refs {
        // The headers end at `total - remaining`; the payloads follow in block order.
        let mut at = total - remaining;
        for (r, (image, data)) in refs.iter_mut().zip(payload) {
            r.image_at = at;
            at += image + data;
        }
    }
    Ok((total - main_len, main_len))
}

/// Whether an image header's flags say "compressed": 0x04/0x08/0x10 (pglz, lz4, zstd) from
/// PostgreSQL 15 on, where 0x02 is APPLY; 0x02 in 13 and 14, where 0x04 is APPLY.
pub(crate) fn compressed(bimg_info: u8, v15: bool) -> bool {
    if v15 {
        bimg_info & 0x1C != 0
    } else {
        bimg_info & 0x02 != 0
    }
}
