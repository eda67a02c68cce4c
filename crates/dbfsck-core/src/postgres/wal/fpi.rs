//! Full-page images in PostgreSQL WAL (`docs/postgres-wal.md` §6; `../shared/formats-pgwal.md`
//! §3.8, §8): the WAL read record by record from pg_control's redo point to its end, the newest
//! image of each wanted block found (and whether anything changed the block after it), and the
//! page rebuilt from such an image — hole zero-filled, pglz / lz4 / zstd decompressed, `pd_lsn`
//! set to the record's end, the checksum computed over these bytes alone.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::conclude::describe;
use super::record::{self, BlockRef, HEADER};
use super::segment::{check_page, SegParams, Stop, XLP_FIRST_IS_CONTRECORD};
use super::{major_of_magic, segment_name, u16_at, u32_at, Lsn, MAX_RECORD};
use crate::postgres::control::ControlWal;

/// A block of a relation fork, as WAL names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelBlock {
    /// Tablespace OID (1663 `pg_default`, 1664 `pg_global`).
    pub tablespace: u32,
    /// Database OID (0 for shared relations).
    pub database: u32,
    /// The relfilenode.
    pub relfilenode: u32,
    /// Fork number: 0 main, 1 fsm, 2 vm, 3 init.
    pub fork: u8,
    /// Block number in the fork (across its 1 GiB segment files).
    pub block: u32,
}

/// Where a data directory's WAL is and how it is laid out (from `pg_control`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSettings {
    /// `pg_wal/`.
    pub wal_dir: PathBuf,
    /// The timeline to read (pg_control's); segments of earlier timelines serve where it has none.
    pub timeline: u32,
    /// `wal_segment_size`.
    pub seg_size: u64,
    /// `XLOG_BLCKSZ`.
    pub page_size: u64,
    /// Every segment's long header must carry this system identifier.
    pub system_id: u64,
    /// The checkpoint's redo point: where the index starts.
    pub redo: u64,
    /// `minRecoveryPoint` (0: none).
    pub min_recovery_point: u64,
}

impl WalSettings {
    /// The settings of the data directory `data_dir`, from its `global/pg_control`, with
    /// pg_control as parsed.
    pub fn of_data_dir(
        data_dir: &Path,
    ) -> Result<(WalSettings, crate::postgres::Control), FpiError> {
        let path = data_dir.join("global").join("pg_control");
        let bytes = std::fs::read(&path).map_err(|e| FpiError::Control(e.to_string()))?;
        let control = crate::postgres::parse_control(&bytes)
            .ok_or_else(|| FpiError::Control("too short to hold its fields".into()))?;
        if !matches!(control.crc, crate::postgres::ControlCrc::Ok(_)) {
            return Err(FpiError::Control("its CRC does not match".into()));
        }
        if !control.sizes_plausible() {
            return Err(FpiError::Control("its block sizes are impossible".into()));
        }
        let wal: ControlWal = control.wal.ok_or_else(|| {
            FpiError::Control(
                "its WAL fields are not in a layout dbfsck knows (PostgreSQL 13–16)".into(),
            )
        })?;
        let seg_size = u64::from(wal.wal_segment_size);
        let page_size = u64::from(wal.wal_page_size);
        let plausible = seg_size.is_power_of_two()
            && (1 << 20..=1 << 30).contains(&seg_size)
            && page_size.is_power_of_two()
            && (1024..=65536).contains(&page_size);
        if !plausible {
            return Err(FpiError::Control(format!(
                "its WAL sizes are impossible ({seg_size}-byte segments of {page_size}-byte pages)"
            )));
        }
        Ok((
            WalSettings {
                wal_dir: data_dir.join("pg_wal"),
                timeline: wal.timeline,
                seg_size,
                page_size,
                system_id: wal.system_id,
                redo: wal.redo,
                min_recovery_point: wal.min_recovery_point,
            },
            control,
        ))
    }
}

/// A full-page image found in WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef {
    /// The start LSN of the record that carries it.
    pub record: u64,
    /// That record's end (`EndRecPtr`, MAXALIGN'd): the LSN the rebuilt page carries.
    pub end: u64,
    /// The block reference's `block_id` in the record.
    pub block_id: u8,
    /// `BKPIMAGE_APPLY`: replay restores it (else it was logged for consistency checking).
    pub apply: bool,
}

/// What the WAL says of one block after the redo point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Newest {
    /// No record after the redo point touches it.
    Untouched,
    /// Its newest change is this image: the page as it was after that record.
    Image(ImageRef),
    /// A later change has no image (or changed the whole relation): no image is the page now.
    ChangedAfter {
        /// The newest image before that change, if any.
        image: Option<ImageRef>,
        /// The start LSN of the change.
        change: u64,
        /// What changed it, in words.
        what: String,
    },
}

/// The wanted blocks' history in the WAL from the redo point to where it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalIndex {
    /// Where reading started (the redo point).
    pub start: u64,
    /// The end of the last record read: where the WAL ends, as far as this reading goes.
    pub end: u64,
    /// Records read.
    pub records: u64,
    /// Why reading stopped there, in words.
    pub stop: String,
    blocks: HashMap<RelBlock, Newest>,
}

impl WalIndex {
    /// What the WAL says of `block` (untouched when it was not asked for).
    pub fn newest(&self, block: &RelBlock) -> &Newest {
        self.blocks.get(block).unwrap_or(&Newest::Untouched)
    }
}

/// Why an image could not be found or turned into a page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FpiError {
    /// `pg_control` cannot be used.
    #[error("pg_control cannot be used: {0}")]
    Control(String),
    /// The record that carried the image cannot be read again as it was.
    #[error("the WAL record at {lsn} cannot be read again: {why}")]
    Record {
        /// Its LSN, as PostgreSQL prints it.
        lsn: String,
        /// Why.
        why: String,
    },
    /// The record no longer holds an image of the block.
    #[error("the WAL record at {0} holds no image of this block")]
    NoImage(String),
    /// The image cannot be decompressed or does not make a page.
    #[error("the image in the WAL record at {lsn} is unusable: {why}")]
    BadImage {
        /// The record's LSN.
        lsn: String,
        /// Why.
        why: String,
    },
}

const RM_XACT: u8 = 1;
const RM_SMGR: u8 = 2;
const RM_DBASE: u8 = 4;
const XLR_SPECIAL_REL_UPDATE: u8 = 0x01;

/// Reads `settings`' WAL from its redo point to its end and records, for each of `wanted`, its
/// newest image and any change after it. Memory: one record and one page at a time, plus one
/// entry per wanted block, whatever the WAL's size.
pub fn index_images(settings: &WalSettings, wanted: &[RelBlock]) -> WalIndex {
    let mut blocks: HashMap<RelBlock, Newest> =
        wanted.iter().map(|b| (*b, Newest::Untouched)).collect();
    let wanted_rels: std::collections::HashSet<[u32; 3]> = blocks.keys().map(rel_of).collect();
    let mut reader = SeqReader::new(settings);
    let mut pos = settings.redo;
    let mut prev = None;
    let mut end = settings.redo;
    let mut records = 0;
    let stop = loop {
        let rec = match reader.read_record(pos, prev) {
            Ok(r) => r,
            Err(why) => break describe(&why),
        };
        records += 1;
        let v15 = reader.v15();
        note_record(&rec, rec.start, v15, &mut blocks, &wanted_rels);
        prev = Some(rec.start);
        end = rec.end;
        // A switch uses the rest of the segment its record ends in (it may cross into the next).
        pos = if rec.switch {
            rec.end.div_ceil(settings.seg_size) * settings.seg_size
        } else {
            rec.end
        };
    };
    WalIndex {
        start: settings.redo,
        end,
        records,
        stop,
        blocks,
    }
}

/// Records what one record does to the wanted blocks.
fn note_record(
    rec: &Record,
    pos: u64,
    v15: bool,
    blocks: &mut HashMap<RelBlock, Newest>,
    wanted: &std::collections::HashSet<[u32; 3]>,
) {
    let bytes = rec.bytes.as_slice();
    let info = bytes.get(16).copied().unwrap_or_default();
    let rmid = bytes.get(17).copied().unwrap_or_default();
    let refs = record::block_refs(bytes, v15).unwrap_or_default();
    for r in &refs {
        let key = key_of(r);
        let Some(entry) = blocks.get_mut(&key) else {
            continue;
        };
        *entry = match r.image {
            Some(img) => Newest::Image(ImageRef {
                record: pos,
                end: rec.end,
                block_id: r.id,
                apply: img.info & if v15 { 0x02 } else { 0x04 } != 0,
            }),
            None => changed(
                entry,
                pos,
                format!(
                    "the {} record at {} changes the block without an image",
                    record::rmgr_name(rmid),
                    Lsn(pos)
                ),
            ),
        };
    }
    // Changes to whole relations or databases, outside block references.
    let main = record::main_data_of(bytes, v15).and_then(|(at, len)| bytes.get(at..at + len));
    let mut touch = |affects: &dyn Fn(&RelBlock) -> bool, what: String| {
        for (k, e) in blocks.iter_mut() {
            if affects(k) {
                *e = changed(e, pos, what.clone());
            }
        }
    };
    match rmid {
        RM_SMGR => {
            let op = info & 0xF0;
            let rel = |at: usize| -> Option<[u32; 3]> {
                let m = main?;
                Some([u32_at(m, at)?, u32_at(m, at + 4)?, u32_at(m, at + 8)?])
            };
            match (op, main) {
                // xl_smgr_create { RelFileNode rnode; ForkNumber forkNum; }
                (0x10, Some(m)) => match (rel(0), u32_at(m, 12)) {
                    (Some(r), Some(fork)) => touch(
                        &|k| rel_of(k) == r && u32::from(k.fork) == fork,
                        format!("the relation fork was created anew at {}", Lsn(pos)),
                    ),
                    _ => touch(&|_| true, unreadable(pos)),
                },
                // xl_smgr_truncate { BlockNumber blkno; RelFileNode rnode; int flags; }
                (0x20, Some(m)) => match (u32_at(m, 0), rel(4)) {
                    (Some(blkno), Some(r)) => touch(
                        &|k| rel_of(k) == r && k.block >= blkno,
                        format!(
                            "the relation was truncated below this block at {}",
                            Lsn(pos)
                        ),
                    ),
                    _ => touch(&|_| true, unreadable(pos)),
                },
                _ => touch(&|_| true, unreadable(pos)),
            }
        }
        // Every database record starts with the database's OID (create, drop).
        RM_DBASE => match main.and_then(|m| u32_at(m, 0)) {
            Some(db) => touch(
                &|k| k.database == db,
                format!("the database was created or dropped at {}", Lsn(pos)),
            ),
            None => touch(&|_| true, unreadable(pos)),
        },
        RM_XACT if matches!(info & 0x70, 0x00 | 0x20 | 0x30 | 0x40) => {
            // Only the wanted relations are kept from the list (it may name millions).
            let mut hit = std::collections::HashSet::new();
            let read = for_each_dropped(main, info, |r| {
                if wanted.contains(&r) {
                    hit.insert(r);
                }
            });
            match read {
                Some(()) if hit.is_empty() => {}
                Some(()) => touch(
                    &|k| hit.contains(&rel_of(k)),
                    format!("the relation was dropped at {}", Lsn(pos)),
                ),
                None => touch(&|_| true, unreadable(pos)),
            }
        }
        _ if info & XLR_SPECIAL_REL_UPDATE != 0 => touch(
            &|_| true,
            format!(
                "the {} record at {} changes relations outside block references",
                record::rmgr_name(rmid),
                Lsn(pos)
            ),
        ),
        _ => {}
    }
}

fn unreadable(pos: u64) -> String {
    format!(
        "a relation-wide change at {} could not be read: every later block is treated as changed",
        Lsn(pos)
    )
}

fn changed(entry: &Newest, pos: u64, what: String) -> Newest {
    let image = match entry {
        Newest::Image(i) => Some(*i),
        Newest::ChangedAfter { image, .. } => *image,
        Newest::Untouched => None,
    };
    Newest::ChangedAfter {
        image,
        change: pos,
        what,
    }
}

fn key_of(r: &BlockRef) -> RelBlock {
    let [tablespace, database, relfilenode] = r.rel;
    RelBlock {
        tablespace,
        database,
        relfilenode,
        fork: r.fork,
        block: r.blk,
    }
}

fn rel_of(k: &RelBlock) -> [u32; 3] {
    [k.tablespace, k.database, k.relfilenode]
}

/// Calls `f` with each relation a commit or abort record drops (`xl_xact_commit` /
/// `xl_xact_abort`, then `xl_xact_xinfo`, `_dbinfo`, `_subxacts`, `_relfilenodes` as `xinfo`
/// says); `None` when the main data cannot be read.
fn for_each_dropped(main: Option<&[u8]>, info: u8, mut f: impl FnMut([u32; 3])) -> Option<()> {
    const XLOG_XACT_HAS_INFO: u8 = 0x80;
    let m = main?;
    if info & XLOG_XACT_HAS_INFO == 0 {
        return Some(());
    }
    let xinfo = u32_at(m, 8)?;
    let mut at: usize = 12;
    if xinfo & 0x01 != 0 {
        at += 8; // xl_xact_dbinfo
    }
    if xinfo & 0x02 != 0 {
        let n = usize::try_from(u32_at(m, at)?).ok()?;
        at = at.checked_add(4)?.checked_add(n.checked_mul(4)?)?;
    }
    if xinfo & 0x04 == 0 {
        return Some(());
    }
    let n = usize::try_from(u32_at(m, at)?).ok()?;
    at += 4;
    // The whole list must be there before any of it is believed.
    if at.checked_add(n.checked_mul(12)?)? > m.len() {
        return None;
    }
    for i in 0..n {
        let o = at + i * 12;
        f([u32_at(m, o)?, u32_at(m, o + 4)?, u32_at(m, o + 8)?]);
    }
    Some(())
}

/// Rebuilds `block` from the image `image` names: reads its record again (its CRC must
/// verify, its end must be the same), decompresses the image, fills the hole with zeros, sets
/// `pd_lsn` to the record's end (unless the page is new), and, with `checksums`, computes the
/// data checksum for the block number. `blcksz` is the cluster's block size.
pub fn rebuild_page(
    settings: &WalSettings,
    image: &ImageRef,
    block: &RelBlock,
    blcksz: usize,
    checksums: bool,
) -> Result<Vec<u8>, FpiError> {
    let lsn = Lsn(image.record).to_string();
    let record_err = |why: String| FpiError::Record {
        lsn: lsn.clone(),
        why,
    };
    let mut reader = SeqReader::new(settings);
    let rec = reader
        .read_record(image.record, None)
        .map_err(|s| record_err(describe(&s)))?;
    if rec.start != image.record || rec.end != image.end {
        return Err(record_err(format!(
            "it now ends at {}, not {}",
            Lsn(rec.end),
            Lsn(image.end)
        )));
    }
    let v15 = reader.v15();
    let bytes = rec.bytes.as_slice();
    let r = record::block_refs(bytes, v15)
        .map_err(record_err)?
        .into_iter()
        .find(|r| r.id == image.block_id && key_of(r) == *block)
        .ok_or_else(|| FpiError::NoImage(lsn.clone()))?;
    let img = r.image.ok_or_else(|| FpiError::NoImage(lsn.clone()))?;
    let bad = |why: String| FpiError::BadImage {
        lsn: lsn.clone(),
        why,
    };
    let stored = bytes
        .get(r.image_at..r.image_at + usize::from(img.len))
        .ok_or_else(|| bad("it runs past the record".into()))?;
    let page = image_to_page(stored, img, v15, blcksz).map_err(bad)?;
    Ok(finish_page(page, image.end, block.block, checksums))
}

/// The page an image stands for, hole filled, before its LSN and checksum are set.
fn image_to_page(
    stored: &[u8],
    img: record::ImageHeader,
    v15: bool,
    blcksz: usize,
) -> Result<Vec<u8>, String> {
    let has_hole = img.info & 0x01 != 0;
    let compressed = record::compressed(img.info, v15);
    let hole_len = match (has_hole, compressed) {
        (false, _) => 0,
        (true, true) => usize::from(img.hole_len.unwrap_or_default()),
        (true, false) => blcksz
            .checked_sub(stored.len())
            .ok_or("the image is longer than a block")?,
    };
    let hole_off = usize::from(img.hole_offset);
    let raw_len = blcksz
        .checked_sub(hole_len)
        .ok_or("the hole is longer than a block")?;
    if hole_off > raw_len || (has_hole && hole_len == 0) || (!has_hole && hole_off != 0) {
        return Err(format!(
            "hole at {hole_off} of {hole_len} bytes does not fit a {blcksz}-byte block"
        ));
    }
    let raw = if !compressed {
        stored.to_vec()
    } else if !v15 || img.info & 0x04 != 0 {
        pglz_decompress(stored, raw_len)?
    } else if img.info & 0x08 != 0 {
        let mut out = vec![0u8; raw_len];
        let n =
            lz4_flex::block::decompress_into(stored, &mut out).map_err(|e| format!("lz4: {e}"))?;
        out.truncate(n);
        out
    } else {
        zstd_decompress(stored, raw_len)?
    };
    if raw.len() != raw_len {
        return Err(format!(
            "it holds {} bytes, not the {raw_len} a block less its hole needs",
            raw.len()
        ));
    }
    let (head, tail) = raw.split_at(hole_off);
    let mut page = Vec::with_capacity(blcksz);
    page.extend_from_slice(head);
    page.resize(hole_off + hole_len, 0);
    page.extend_from_slice(tail);
    Ok(page)
}

/// Sets `pd_lsn` (unless the page is new: redo leaves it) and the checksum.
fn finish_page(mut page: Vec<u8>, end: u64, block: u32, checksums: bool) -> Vec<u8> {
    let is_new = u16_at(&page, 14) == Some(0);
    if !is_new {
        let (hi, lo) = ((end >> 32) as u32, end as u32);
        if let Some(b) = page.get_mut(0..4) {
            b.copy_from_slice(&hi.to_le_bytes());
        }
        if let Some(b) = page.get_mut(4..8) {
            b.copy_from_slice(&lo.to_le_bytes());
        }
    }
    if checksums && !is_new {
        let sum = crate::postgres::pg_checksum_page(&page, block);
        if let Some(b) = page.get_mut(8..10) {
            b.copy_from_slice(&sum.to_le_bytes());
        }
    }
    page
}

/// PostgreSQL's pglz decompression (`src/common/pg_lzcompress.c`, `pglz_decompress` with
/// `check_complete`): control bytes of 8 items, each a literal byte or a 2–3 byte tag (length
/// 3–273, offset 1–4095 back into the output).
fn pglz_decompress(src: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(raw_len);
    let mut sp = src.iter().copied();
    'outer: while out.len() < raw_len {
        let Some(mut ctrl) = sp.next() else { break };
        for _ in 0..8 {
            if out.len() >= raw_len {
                break 'outer;
            }
            if ctrl & 1 != 0 {
                let (Some(a), Some(b)) = (sp.next(), sp.next()) else {
                    return Err("pglz: a tag runs past the data".into());
                };
                let mut len = usize::from(a & 0x0F) + 3;
                let off = (usize::from(a & 0xF0) << 4) | usize::from(b);
                if len == 18 {
                    len += usize::from(sp.next().ok_or("pglz: a tag runs past the data")?);
                }
                if off == 0 || off > out.len() {
                    return Err(format!("pglz: offset {off} before the start of the output"));
                }
                let len = len.min(raw_len - out.len());
                let from = out.len() - off;
                // Byte by byte: a copy may overlap what it writes (a run).
                for i in 0..len {
                    let byte = out.get(from + i).copied().unwrap_or_default();
                    out.push(byte);
                }
            } else {
                match sp.next() {
                    Some(lit) => out.push(lit),
                    None => break 'outer,
                }
            }
            ctrl >>= 1;
        }
    }
    if out.len() != raw_len || sp.next().is_some() {
        return Err(format!(
            "pglz: the data does not decompress to exactly {raw_len} bytes"
        ));
    }
    Ok(out)
}

/// A zstd frame decompressed, at most `raw_len` bytes.
fn zstd_decompress(src: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut input = src;
    let mut dec =
        ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::with_capacity(raw_len);
    // One byte more than a block can hold tells an over-long frame from an exact one.
    (&mut dec)
        .take(raw_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    drop(dec);
    // PostgreSQL decompresses all of the image (ZSTD_decompress): bytes after the frame are
    // not part of a block it would restore.
    if !input.is_empty() {
        return Err(format!("zstd: {} bytes after the frame", input.len()));
    }
    Ok(out)
}

/// The timelines of `s`'s history, newest first, each with its first and last segment: the
/// target timeline from its last switch point on, each parent from the switch before up to the
/// segment of its own switch point (never past it: what a parent wrote after it is an abandoned
/// branch). Without a history file (timeline 1, or one missing), the target timeline alone.
/// Like PostgreSQL's `XLogFileReadAnyTLI`, the newest timeline that has a segment serves it.
fn timelines(s: &WalSettings) -> Vec<(u32, u64, u64)> {
    let history = (s.timeline > 1)
        .then(|| std::fs::read(s.wal_dir.join(format!("{:08X}.history", s.timeline))).ok())
        .flatten()
        .map(|b| super::history::parse_history(&b, s.timeline).0.entries)
        .unwrap_or_default();
    let seg = |lsn: u64| lsn / s.seg_size.max(1);
    let mut out = Vec::with_capacity(history.len() + 1);
    out.push((
        s.timeline,
        history.last().map_or(0, |&(_, at)| seg(at)),
        u64::MAX,
    ));
    for (i, &(parent, switch)) in history.iter().enumerate().rev() {
        let begins = i
            .checked_sub(1)
            .and_then(|j| history.get(j))
            .map_or(0, |&(_, at)| seg(at));
        out.push((parent, begins, seg(switch)));
    }
    out
}

/// A record read whole.
struct Record {
    /// Its LSN (past the page header when the position asked for was a page's start).
    start: u64,
    bytes: Vec<u8>,
    /// `EndRecPtr`: MAXALIGN'd end (a page boundary when it ends on one).
    end: u64,
    /// `XLOG_SWITCH`: the rest of the segment is unused.
    switch: bool,
}

/// Reads records one after another across pages and segments, checking every page header and
/// every record's header, `xl_prev` and CRC as PostgreSQL's reader does.
struct SeqReader<'a> {
    s: &'a WalSettings,
    /// The timelines whose segments may be read, newest first, each with the first and last
    /// segment it holds (from the target timeline's history file).
    timelines: Vec<(u32, u64, u64)>,
    file: Option<(u64, u32, File)>,
    page: Vec<u8>,
    page_at: Option<u64>,
    magic: Option<u16>,
    last_tli: u32,
}

impl<'a> SeqReader<'a> {
    fn new(s: &'a WalSettings) -> Self {
        SeqReader {
            s,
            timelines: timelines(s),
            file: None,
            page: Vec::new(),
            page_at: None,
            magic: None,
            last_tli: 0,
        }
    }

    /// The WAL's image flags are numbered as from PostgreSQL 15 on.
    fn v15(&self) -> bool {
        self.magic.and_then(major_of_magic).is_some_and(|m| m >= 15)
    }

    /// The segment file for `segno`: of the newest timeline of the history that began at or
    /// before it and has the file.
    fn open_segment(&self, segno: u64) -> Result<(u32, File), Stop> {
        for &(tli, _, _) in self
            .timelines
            .iter()
            .filter(|(_, first, last)| (*first..=*last).contains(&segno))
        {
            let path = self
                .s
                .wal_dir
                .join(segment_name(tli, segno, self.s.seg_size));
            match File::open(&path) {
                Ok(f) => return Ok((tli, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Stop::Missing(format!(
                        "{} cannot be read: {e}",
                        path.display()
                    )))
                }
            }
        }
        Err(Stop::Missing(format!(
            "segment {} is not in {}",
            segment_name(self.s.timeline, segno, self.s.seg_size),
            self.s.wal_dir.display()
        )))
    }

    /// Loads and checks the page that starts at `at`.
    fn load_page(&mut self, at: u64) -> Result<super::segment::PageHeader, Stop> {
        let segno = at / self.s.seg_size;
        if self.file.as_ref().is_none_or(|(n, _, _)| *n != segno) {
            let (tli, f) = self.open_segment(segno)?;
            self.file = Some((segno, tli, f));
        }
        let Some((_, tli, f)) = &self.file else {
            return Err(Stop::Short);
        };
        let tli = *tli;
        self.page.resize(self.s.page_size as usize, 0);
        let n = crate::access::pread_fully(f, at % self.s.seg_size, &mut self.page)
            .map_err(|e| Stop::Missing(format!("the segment cannot be read: {e}")))?;
        self.page_at = None;
        if n < self.page.len() {
            return Err(Stop::Short);
        }
        let params = SegParams {
            start: segno * self.s.seg_size,
            seg_size: self.s.seg_size,
            page_size: self.s.page_size,
            tli,
            system_id: Some(self.s.system_id),
        };
        let h = check_page(&self.page, at, &params, &mut self.magic, &mut self.last_tli)?;
        self.page_at = Some(at);
        Ok(h)
    }

    /// Reads the record that starts at `pos` (its previous record at `want_prev`, when known).
    fn read_record(&mut self, pos: u64, want_prev: Option<u64>) -> Result<Record, Stop> {
        let ps = self.s.page_size;
        if !pos.is_multiple_of(8) {
            return Err(Stop::BadHeader(format!(
                "a record cannot start at {}",
                Lsn(pos)
            )));
        }
        let mut out: Vec<u8> = Vec::new();
        let mut total: Option<usize> = None;
        // A continuation page's `xlp_rem_len`, checked once the length is known.
        let mut rem_checks: Vec<(u32, usize)> = Vec::new();
        let mut at = pos;
        let mut start = pos;
        loop {
            let page_start = at - at % ps;
            if at == page_start {
                let h = self.load_page(page_start)?;
                let cont = h.info & XLP_FIRST_IS_CONTRECORD != 0;
                if out.is_empty() {
                    if cont {
                        return Err(Stop::Contrecord(format!(
                            "a continuation where a record should start at {}",
                            Lsn(at)
                        )));
                    }
                    start = page_start + h.size;
                } else {
                    if !cont || h.rem_len == 0 {
                        return Err(Stop::Contrecord(format!(
                            "there is no continuation record at {}",
                            Lsn(at)
                        )));
                    }
                    match total {
                        // Checked at once: a wrong length must not gather pages for nothing.
                        Some(t) if h.rem_len as usize + out.len() != t => {
                            return Err(Stop::Contrecord(format!(
                                "invalid contrecord length {} in the record at {}",
                                h.rem_len,
                                Lsn(start)
                            )))
                        }
                        Some(_) => {}
                        None => rem_checks.push((h.rem_len, out.len())),
                    }
                }
                at = page_start + h.size;
            } else if self.page_at != Some(page_start) {
                self.load_page(page_start)?;
            }
            let want = total.unwrap_or(HEADER);
            let off = (at - page_start) as usize;
            let room = ps as usize - off;
            let take = room.min(want - out.len());
            let bytes = self.page.get(off..off + take).ok_or(Stop::Short)?;
            out.extend_from_slice(bytes);
            at += take as u64;
            if total.is_none() && out.len() >= HEADER {
                record::check_header(out.as_slice(), start, want_prev)?;
                let tot = u32_at(&out, 0).unwrap_or_default();
                if u64::from(tot) > MAX_RECORD {
                    return Err(Stop::BadHeader(format!(
                        "record length {tot} at {} too long",
                        Lsn(start)
                    )));
                }
                total = Some(tot as usize);
            }
            if let Some(t) = total {
                if out.len() >= t {
                    break;
                }
            }
        }
        let total = out.len();
        for (rem, got) in rem_checks {
            if rem as usize + got != total {
                return Err(Stop::Contrecord(format!(
                    "invalid contrecord length {rem} in the record at {}",
                    Lsn(start)
                )));
            }
        }
        let dec = record::check(out.as_slice(), start, want_prev, self.v15())?;
        Ok(Record {
            start,
            bytes: out,
            end: Lsn(at).align8(),
            switch: dec.is_switch(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pglz as PostgreSQL writes it: literals, a back-reference, a run that overlaps itself.
    #[test]
    fn pglz_literals_references_and_runs() {
        // ctrl 0b0000_1000: three literals 'a' 'b' 'c', then a tag (len 3+3=6, offset 3).
        let src = [0x08, b'a', b'b', b'c', 0x03, 0x03];
        assert_eq!(pglz_decompress(&src, 9).unwrap(), b"abcabcabc");
        // One literal then a run of 17 + 3 + extra: len 18 + 2 = 20, offset 1.
        let src = [0x02, b'z', 0x0F, 0x01, 0x02];
        assert_eq!(pglz_decompress(&src, 21).unwrap(), vec![b'z'; 21]);
    }

    #[test]
    fn pglz_rejects_what_postgresql_rejects() {
        // An offset before the output's start.
        assert!(pglz_decompress(&[0x01, 0x00, 0x05], 3).is_err());
        // Too short for the block, or bytes left over.
        assert!(pglz_decompress(&[0x00, b'a'], 2).is_err());
        assert!(pglz_decompress(&[0x00, b'a', b'b'], 1).is_err());
        // A tag cut short.
        assert!(pglz_decompress(&[0x01, 0x00], 3).is_err());
    }

    fn header(len: u16, hole_offset: u16, info: u8, hole_len: Option<u16>) -> record::ImageHeader {
        record::ImageHeader {
            len,
            hole_offset,
            info,
            hole_len,
        }
    }

    #[test]
    fn an_uncompressed_image_gets_its_hole_back() {
        let stored: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
        let page = image_to_page(&stored, header(4096, 1000, 0x01, None), true, 8192).unwrap();
        assert_eq!(page.len(), 8192);
        assert_eq!(&page[..1000], &stored[..1000]);
        assert!(page[1000..5096].iter().all(|&b| b == 0));
        assert_eq!(&page[5096..], &stored[1000..]);
        // A hole past the end, or a hole flag with nothing missing, is refused.
        assert!(image_to_page(&stored, header(4096, 5000, 0x01, None), true, 8192).is_err());
        assert!(image_to_page(&[0; 8192], header(8192, 0, 0x01, None), true, 8192).is_err());
    }

    #[test]
    fn compressed_images_of_each_method() {
        let raw: Vec<u8> = (0..6000u32).map(|i| (i / 7) as u8).collect();
        let lz4 = lz4_flex::block::compress(&raw);
        let page = image_to_page(&lz4, header(0, 24, 0x01 | 0x08, Some(2192)), true, 8192).unwrap();
        assert_eq!(&page[..24], &raw[..24]);
        assert!(page[24..24 + 2192].iter().all(|&b| b == 0));
        assert_eq!(&page[24 + 2192..], &raw[24..]);
        // A wrong hole length cannot make a block.
        assert!(image_to_page(&lz4, header(0, 24, 0x09, Some(2000)), true, 8192).is_err());
        let zstd = ruzstd::encoding::compress_to_vec(
            raw.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let page =
            image_to_page(&zstd, header(0, 24, 0x01 | 0x10, Some(2192)), true, 8192).unwrap();
        assert_eq!(&page[24 + 2192..], &raw[24..]);
        // Bytes after the frame are refused, as PostgreSQL refuses them.
        let mut trailing = zstd.clone();
        trailing.push(0);
        assert!(image_to_page(&trailing, header(0, 24, 0x11, Some(2192)), true, 8192).is_err());
        // A frame that holds more than the block less its hole is refused.
        assert!(image_to_page(&zstd, header(0, 24, 0x11, Some(2300)), true, 8192).is_err());
        // pglz, as PostgreSQL 14 numbers the flags (0x02 compressed, no hole).
        let src = [0x02, b'q', 0x0F, 0x01, 0xFF];
        let page = image_to_page(&src, header(5, 0, 0x02, None), false, 274).unwrap();
        assert_eq!(page, vec![b'q'; 274]);
    }

    #[test]
    fn the_rebuilt_page_carries_the_record_end_and_a_checksum_over_its_bytes() {
        let mut page = vec![0u8; 8192];
        page[12..14].copy_from_slice(&40u16.to_le_bytes()); // pd_lower
        page[14..16].copy_from_slice(&8000u16.to_le_bytes()); // pd_upper
        page[16..18].copy_from_slice(&8192u16.to_le_bytes()); // pd_special
        page[18..20].copy_from_slice(&0x2004u16.to_le_bytes());
        let end = 0x0000_0001_0550_E7F0;
        let done = finish_page(page.clone(), end, 77, true);
        assert_eq!(&done[0..4], &1u32.to_le_bytes());
        assert_eq!(&done[4..8], &0x0550_E7F0u32.to_le_bytes());
        assert_eq!(crate::postgres::judge_block(&done, 77), None);
        assert!(crate::postgres::judge_block(&done, 78).is_some());
        // A new (all-zero) page keeps its zeros: redo sets no LSN on it.
        assert_eq!(finish_page(vec![0; 8192], end, 77, true), vec![0; 8192]);
    }

    fn settings(dir: &Path, timeline: u32) -> WalSettings {
        WalSettings {
            wal_dir: dir.to_path_buf(),
            timeline,
            seg_size: 16 << 20,
            page_size: 8192,
            system_id: 1,
            redo: 0,
            min_recovery_point: 0,
        }
    }

    /// Segments are read from the timeline the history says holds them, newest first, never
    /// from a timeline outside it; the target timeline alone without a history.
    #[test]
    fn segments_follow_the_timeline_history() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(timelines(&settings(dir.path(), 1)), vec![(1, 0, u64::MAX)]);
        assert_eq!(timelines(&settings(dir.path(), 3)), vec![(3, 0, u64::MAX)]);
        std::fs::write(
            dir.path().join("00000003.history"),
            "1\t0/3000000\tno recovery target specified\n2\t0/5800028\tbefore 2026\n",
        )
        .unwrap();
        assert_eq!(
            timelines(&settings(dir.path(), 3)),
            vec![(3, 5, u64::MAX), (2, 3, 5), (1, 0, 3)]
        );
        // A missing segment is looked for on those timelines only (no scan of every lower one).
        let s3 = settings(dir.path(), 3);
        let r = SeqReader::new(&s3);
        assert!(matches!(r.open_segment(4), Err(Stop::Missing(_))));
        std::fs::write(dir.path().join(segment_name(1, 4, 16 << 20)), b"").unwrap();
        std::fs::write(dir.path().join(segment_name(2, 4, 16 << 20)), b"").unwrap();
        assert_eq!(r.open_segment(4).map(|(t, _)| t).ok(), Some(2));
        std::fs::write(dir.path().join(segment_name(1, 6, 16 << 20)), b"").unwrap();
        assert!(
            r.open_segment(6).is_err(),
            "segment 6 is timeline 3's, not an ancestor's"
        );
    }

    #[test]
    fn dropped_relations_are_read_from_commit_records() {
        let dropped_relations = |m: Option<&[u8]>, info: u8| {
            let mut v = Vec::new();
            for_each_dropped(m, info, |r| v.push(r)).map(|()| v)
        };
        let mut m = vec![0u8; 8];
        m.extend_from_slice(&(0x01u32 | 0x02 | 0x04).to_le_bytes());
        m.extend_from_slice(&[0; 8]); // dbinfo
        m.extend_from_slice(&2u32.to_le_bytes()); // two subxacts
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&1u32.to_le_bytes()); // one relation
        for v in [1663u32, 5, 16384] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            dropped_relations(Some(&m), 0x80),
            Some(vec![[1663, 5, 16384]])
        );
        assert_eq!(dropped_relations(Some(&m[..8]), 0x00), Some(vec![]));
        assert_eq!(dropped_relations(Some(&m[..30]), 0x80), None);
    }
}
