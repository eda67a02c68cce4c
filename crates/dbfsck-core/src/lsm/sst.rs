//! Opening a table and verifying its blocks in parallel (docs/rocksdb.md §5).
//!
//! The footer, metaindex, properties and index (with every partition of a two-level index) are
//! read and verified while the table is opened: they say where every other block is. The data
//! blocks and the remaining meta blocks (filters, range deletions, dictionaries) become the
//! file's extents — runs of consecutive data blocks of about [`GROUP_BYTES`], each one chunk —
//! so the engine verifies one huge table on every core. A data block that fails is reported
//! with the key range it held: bounded by its neighbours' keys when they verify, else by the
//! index separators around its run.

use std::path::Path;

use crate::finding::{Finding, FindingKind, Owner};
use crate::format::{Chunk, FileSource, Layout, OpenError, Opened, UnitCheck};
use crate::lsm::table::{self, BlockKind, ChecksumType, Engine, Handle};
use crate::lsm::{key_json, Cursor};

/// About how many bytes of data blocks one extent (one task) holds.
pub const GROUP_BYTES: u64 = 1 << 20;
/// The largest block the reader accepts (RocksDB's blocks are a few KiB; a block claiming more
/// is damage, and memory stays bounded).
const MAX_BLOCK: u64 = 64 << 20;
/// The largest block the fallback walk (an unusable index) looks for.
const MAX_WALKED_BLOCK: u64 = 4 << 20;

/// What the directory's MANIFEST says about a live table.
#[derive(Debug, Clone, Default)]
pub struct TableLive {
    /// Its file number.
    pub number: u64,
    /// Its level.
    pub level: u32,
    /// Its column family's name.
    pub cf: String,
    /// Its size as recorded.
    pub size: u64,
    /// Smallest and largest user keys.
    pub smallest: Vec<u8>,
    /// Largest user key.
    pub largest: Vec<u8>,
}

/// Opens a table: the footer and the blocks that list the others, verified now; the rest
/// handed to the engine as extents.
pub fn open(
    path: &Path,
    source: &dyn FileSource,
    engine: Engine,
    live: Option<&TableLive>,
) -> Result<Opened, OpenError> {
    let t = open_table(path, source, engine, live)?;
    Ok(match t.check {
        Some(check) => Opened {
            findings: t.findings,
            check: Some(Box::new(check)),
            units: t.units,
            recheck_after: None,
            notes: t.notes,
        },
        None => Opened::note(t.notes.join("; ")),
    })
}

/// A table as opened: what [`open`] hands the engine, with the blocks read while opening.
struct OpenTable {
    findings: Vec<Finding>,
    notes: Vec<String>,
    units: u64,
    check: Option<TableCheck>,
    /// The blocks read and verified while opening (metaindex, properties, index, partitions).
    structural: Vec<(Handle, BlockKind)>,
}

fn open_table(
    path: &Path,
    source: &dyn FileSource,
    engine: Engine,
    live: Option<&TableLive>,
) -> Result<OpenTable, OpenError> {
    let len = source.len();
    let mut base = Owner::new();
    if let Some(l) = live {
        base.insert("table".into(), l.number.into());
        base.insert("level".into(), l.level.into());
        base.insert("column_family".into(), l.cf.clone().into());
    } else if let Some(n) = crate::lsm::file_number(path) {
        base.insert("table".into(), n.into());
    }
    let owner = |kind: BlockKind, extra: &[(&str, serde_json::Value)]| {
        let mut o = base.clone();
        o.insert("block_type".into(), kind.name().into());
        for (k, v) in extra {
            o.insert((*k).into(), v.clone());
        }
        o
    };
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let mut units = 0u64;
    let tail_len = len.min(table::FOOTER);
    let tail = table::read_exact(source, len - tail_len, tail_len).unwrap_or_default();
    let footer = match table::footer(&tail, len) {
        Ok(f) => Some(f),
        Err(e) if e.is_unsupported() => {
            return Ok(OpenTable {
                findings: Vec::new(),
                notes: vec![e.to_string()],
                units: 0,
                check: None,
                structural: Vec::new(),
            })
        }
        Err(e) => {
            let kind = if matches!(e, table::FooterError::Short(_)) {
                FindingKind::Truncated
            } else {
                FindingKind::BadHeader
            };
            // A footer whose magic alone is damaged still says where the blocks are.
            // Only when the metaindex it points to verifies: garbage can decode as handles.
            let salvaged = matches!(e, table::FooterError::Magic(_))
                .then(|| table::footer_ignoring_magic(&tail, len))
                .flatten()
                .filter(|f| {
                    table::read_exact(
                        source,
                        f.metaindex.offset,
                        f.metaindex.size + table::TRAILER,
                    )
                    .is_ok_and(|b| {
                        f.checksum != ChecksumType::None && table::verify(f.checksum, &b).is_ok()
                    })
                });
            let then = if salvaged.is_some() {
                "its other fields are read as if the magic were intact"
            } else {
                "the data blocks are looked for from offset 0"
            };
            let mut o = base.clone();
            o.insert("block_type".into(), "footer".into());
            findings.push(
                Finding::new(
                    kind,
                    len - len.min(table::LEGACY_FOOTER),
                    len.min(table::LEGACY_FOOTER),
                    format!("table footer: {e}; {then}"),
                )
                .owner(o),
            );
            salvaged
        }
    };
    if footer.is_some_and(|f| !f.padding_clean) {
        notes.push("the footer's padding after its block handles is not zero: bytes the engine never reads have changed (media damage, or a writer that is not RocksDB's or LevelDB's)".into());
    }
    // A footer saying "no checksum" over blocks that carry one: its checksum byte is damaged
    // (RocksDB would then verify nothing).
    let footer = footer.map(|mut f| {
        if f.checksum == ChecksumType::None {
            let real = table::read_exact(source, f.metaindex.offset, f.metaindex.size + table::TRAILER)
                .ok()
                .and_then(|b| {
                    [ChecksumType::Xxh3, ChecksumType::Crc32c, ChecksumType::XxHash64, ChecksumType::XxHash]
                        .into_iter()
                        .find(|&ck| table::verify(ck, &b).is_ok() && crate::lsm::fixed32(&b, b.len() - 4) != 0)
                });
            if let Some(ck) = real {
                let mut o = base.clone();
                o.insert("block_type".into(), "footer".into());
                findings.push(
                    Finding::new(FindingKind::BadHeader, f.offset, len - f.offset, format!("the footer says the blocks carry no checksum, but they carry {} checksums: its checksum-type byte is damaged (RocksDB would verify nothing); verified as {}", ck.name(), ck.name()))
                        .owner(o),
                );
                f.checksum = ck;
            }
        }
        f
    });
    let ck = match footer {
        Some(f) => f.checksum,
        // No footer at all: the checksum type is the one the first block verifies with.
        None => first_block_checksum(source, len),
    };
    let fv = footer.map_or(0, |f| f.format_version);
    // Reads, verifies and decompresses one block the table's structure hangs on.
    let mut structural: Vec<(Handle, BlockKind)> = Vec::new();
    let mut read_block =
        |h: Handle, kind: BlockKind, findings: &mut Vec<Finding>| -> Option<Vec<u8>> {
            structural.push((h, kind));
            if h.size > MAX_BLOCK || h.end() > footer.map_or(len, |f| f.offset) {
                findings.push(
                    Finding::new(
                        FindingKind::BadHeader,
                        h.offset.min(len),
                        0,
                        format!(
                            "the {} block's handle ({}, {}) points outside the table",
                            kind.name(),
                            h.offset,
                            h.size
                        ),
                    )
                    .owner(owner(kind, &[])),
                );
                return None;
            }
            let stored = match table::read_exact(source, h.offset, h.size + table::TRAILER) {
                Ok(b) => b,
                Err(e) => {
                    findings.push(
                        Finding::new(
                            FindingKind::IoError,
                            h.offset,
                            h.size + table::TRAILER,
                            format!("the {} block {e}", kind.name()),
                        )
                        .owner(owner(kind, &[])),
                    );
                    return None;
                }
            };
            units += 1;
            let n = h.size as usize;
            let mut result = table::verify(ck, &stored);
            if result.is_err() && kind == BlockKind::Properties {
                // RocksDB's ingestion quirk: the global sequence number is rewritten in place
                // without the checksum; verify with those 8 bytes zeroed, as RocksDB does.
                if let Some(r) = stored.get(..n).and_then(table::global_seqno_value) {
                    let mut copy = stored.clone();
                    if let Some(v) = copy.get_mut(r) {
                        v.fill(0);
                    }
                    if table::verify(ck, &copy).is_ok() {
                        result = Ok(());
                    }
                }
            }
            if let Err((stored_sum, computed)) = result {
                findings.push(
                    Finding::new(
                        FindingKind::ChecksumMismatch,
                        h.offset,
                        h.size + table::TRAILER,
                        format!("{} block fails its {} checksum", kind.name(), ck.name()),
                    )
                    .checksums(format!("{stored_sum:#010x}"), format!("{computed:#010x}"))
                    .owner(owner(kind, &[])),
                );
                return None;
            }
            let kind_byte = stored.get(n).copied().unwrap_or(0);
            match table::decompress(
                engine,
                fv,
                kind_byte,
                stored.get(..n).unwrap_or_default(),
                MAX_BLOCK as usize,
            ) {
                Ok(b) => Some(b),
                Err(e) => {
                    findings.push(
                        Finding::new(
                            FindingKind::BadHeader,
                            h.offset,
                            h.size + table::TRAILER,
                            format!("the {} block verifies but {e}", kind.name()),
                        )
                        .owner(owner(kind, &[])),
                    );
                    None
                }
            }
        };
    let mut metas: Vec<(Handle, BlockKind)> = Vec::new();
    let mut props = table::Properties::default();
    let mut index = None;
    let mut filter_index = None;
    if let Some(f) = footer {
        if let Some(mi) = read_block(f.metaindex, BlockKind::Metaindex, &mut findings) {
            match table::entries(&mi, table::Values::Sized) {
                Ok(es) => {
                    for e in es {
                        let Some(h) = Handle::decode_value(e.value) else {
                            continue;
                        };
                        let name = String::from_utf8_lossy(&e.key).into_owned();
                        let kind = meta_kind(&name);
                        match kind {
                            BlockKind::Properties => {
                                if let Some(b) = read_block(h, kind, &mut findings) {
                                    match table::properties(&b) {
                                        Ok(p) => {
                                            if let Some(lost) = &p.salvaged {
                                                // A known hole, reported until the table is
                                                // restored, as a native quarantine marker is.
                                                findings.push(
                                                    Finding::new(FindingKind::Quarantined, 0, 0, format!("this table was salvaged by dbfsck: the keys of its damaged data blocks are lost ({lost}); restore them from a replica or a backup"))
                                                        .owner(owner(BlockKind::Properties, &[])),
                                                );
                                            }
                                            props = p
                                        }
                                        Err(e) => notes
                                            .push(format!("the properties block verifies but {e}")),
                                    }
                                }
                            }
                            _ if name.starts_with("partitionedfilter.") => {
                                filter_index = Some(h);
                            }
                            _ => metas.push((h, kind)),
                        }
                    }
                }
                Err(e) => findings.push(
                    Finding::new(
                        FindingKind::BadHeader,
                        f.metaindex.offset,
                        f.metaindex.size + table::TRAILER,
                        format!("the metaindex block verifies but {e}"),
                    )
                    .owner(owner(BlockKind::Metaindex, &[])),
                ),
            }
        }
        let delta = props.index_delta;
        let first_key = props.index_type == 3;
        if let Some(b) = read_block(f.index, BlockKind::Index, &mut findings) {
            match table::index_handles(&b, delta, first_key) {
                Ok(top) if props.index_type == 2 => {
                    // Two-level: the top level lists partitions, each listing data blocks.
                    let mut all = Vec::new();
                    let mut whole = true;
                    for (_, ph) in top {
                        match read_block(ph, BlockKind::IndexPartition, &mut findings) {
                            Some(pb) => match table::index_handles(&pb, delta, first_key) {
                                Ok(hs) => all.extend(hs),
                                Err(e) => {
                                    whole = false;
                                    findings.push(
                                        Finding::new(
                                            FindingKind::BadHeader,
                                            ph.offset,
                                            ph.size + table::TRAILER,
                                            format!("an index partition verifies but {e}"),
                                        )
                                        .owner(owner(BlockKind::IndexPartition, &[])),
                                    );
                                }
                            },
                            None => whole = false,
                        }
                    }
                    index = whole.then_some(all);
                }
                Ok(hs) => index = Some(hs),
                Err(e) => findings.push(
                    Finding::new(
                        FindingKind::BadHeader,
                        f.index.offset,
                        f.index.size + table::TRAILER,
                        format!("the index block verifies but {e}"),
                    )
                    .owner(owner(BlockKind::Index, &[])),
                ),
            }
        }
        if let Some(h) = filter_index {
            if let Some(b) = read_block(h, BlockKind::Filter, &mut findings) {
                let parsed = table::index_handles(&b, delta, false)
                    .or_else(|_| table::index_handles(&b, !delta, false));
                match parsed {
                    Ok(hs) => metas.extend(hs.into_iter().map(|(_, h)| (h, BlockKind::Filter))),
                    Err(e) => notes.push(format!("the partitioned filter's index verifies but {e}: its partitions are not checked")),
                }
            }
        }
    }
    let data_end = footer.map_or(len, |f| {
        metas
            .iter()
            .map(|(h, _)| h.offset)
            .chain([f.metaindex.offset, f.index.offset])
            .min()
            .unwrap_or(f.offset)
    });
    let user_keys = props.index_user_keys;
    let sep_user = |k: Vec<u8>| {
        if user_keys {
            k
        } else {
            table::user_key(&k).to_vec()
        }
    };
    let mut data: Vec<(Vec<u8>, Handle)> = match index {
        Some(hs) => {
            let bad = hs
                .iter()
                .find(|(_, h)| h.size > MAX_BLOCK || h.end() > data_end.max(1).min(len));
            if let Some((_, h)) = bad {
                findings.push(
                    Finding::new(FindingKind::BadHeader, 0, 0, format!("the index lists a data block ({}, {}) outside the data area: the data blocks are looked for from offset 0 instead", h.offset, h.size))
                        .owner(owner(BlockKind::Index, &[])),
                );
                walk(source, ck, data_end, &mut findings, &base, &mut notes)
            } else {
                hs.into_iter().map(|(k, h)| (sep_user(k), h)).collect()
            }
        }
        None => walk(source, ck, data_end, &mut findings, &base, &mut notes),
    };
    data.sort_by_key(|(_, h)| h.offset);

    if let (Some(n), false) = (props.data_blocks, data.is_empty()) {
        if n != data.len() as u64 && findings.is_empty() {
            notes.push(format!(
                "the index lists {} data blocks, the properties say {n}",
                data.len()
            ));
        }
    }
    let check = TableCheck::new(ck, engine, fv, data, metas, base, live);
    Ok(OpenTable {
        findings,
        notes,
        units,
        check: Some(check),
        structural,
    })
}

/// One block of a table, as `dbfsck inspect TABLE --blocks` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlock {
    /// What it is (`data`, `index`, `metaindex`, …).
    pub kind: &'static str,
    /// For a data block, its ordinal (from 0).
    pub ordinal: Option<u64>,
    /// Its offset.
    pub offset: u64,
    /// Its size, trailer excluded.
    pub size: u64,
    /// `None` when it verifies; else the stored and computed checksums (as RocksDB prints them).
    pub mismatch: Option<(u32, u32)>,
}

/// Every block of the table at `path` that its footer and index list, in file order, each
/// judged on its own checksum: the table's block list.
pub fn block_list(path: &Path, engine: Engine) -> Result<Vec<ListedBlock>, OpenError> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let source = crate::access::PreadSource {
        file: &file,
        len,
        throttle: None,
    };
    let t = open_table(path, &source, engine, None)?;
    let Some(check) = t.check else {
        return Err(OpenError::NotThisFormat {
            format: "rocksdb",
            reason: t.notes.join("; "),
        });
    };
    let mut handles: Vec<(Handle, BlockKind, Option<u64>)> =
        t.structural.iter().map(|&(h, k)| (h, k, None)).collect();
    for e in &check.extents {
        if let Blocks::Meta(k) = e.what {
            handles.push((
                Handle {
                    offset: e.start,
                    size: (e.end - e.start).saturating_sub(table::TRAILER),
                },
                k,
                None,
            ));
        }
    }
    for u in 0..check.blocks {
        if let Some(h) = check.data_block(u) {
            handles.push((h, BlockKind::Data, Some(u)));
        }
    }
    handles.sort_by_key(|(h, _, _)| h.offset);
    handles.dedup_by_key(|(h, _, _)| h.offset);
    if handles.is_empty() {
        let why = t
            .findings
            .first()
            .map_or_else(|| "no block found".to_owned(), |f| f.detail.clone());
        return Err(OpenError::NotThisFormat {
            format: "rocksdb",
            reason: format!("no block of a table is found ({why})"),
        });
    }
    let mut out = Vec::with_capacity(handles.len());
    for (h, kind, ordinal) in handles {
        let mismatch = match table::read_exact(&source, h.offset, h.size + table::TRAILER) {
            Ok(b) => table::verify(check.ck, &b).err(),
            Err(_) => Some((0, 0)),
        };
        out.push(ListedBlock {
            kind: kind.name(),
            ordinal,
            offset: h.offset,
            size: h.size,
            mismatch,
        });
    }
    Ok(out)
}

impl Handle {
    /// A handle stored as a block entry's value.
    pub fn decode_value(v: &[u8]) -> Option<Handle> {
        let mut c = Cursor::new(v);
        Some(Handle {
            offset: c.varint64()?,
            size: c.varint64()?,
        })
    }
}

fn meta_kind(name: &str) -> BlockKind {
    match name {
        "rocksdb.properties" | "rocksdb.stats" => BlockKind::Properties,
        "rocksdb.range_del" => BlockKind::RangeDel,
        "rocksdb.compression_dict" => BlockKind::CompressionDict,
        n if n.starts_with("fullfilter.")
            || n.starts_with("filter.")
            || n.starts_with("partitionedfilter.") =>
        {
            BlockKind::Filter
        }
        _ => BlockKind::Meta,
    }
}

/// The data blocks found by walking from offset 0 when the index cannot say where they are:
/// each block ends where its trailer's checksum matches the bytes before it. Stops at the first
/// stretch where no block is found, which is reported whole.
fn walk(
    source: &dyn FileSource,
    ck: ChecksumType,
    end: u64,
    findings: &mut Vec<Finding>,
    base: &Owner,
    notes: &mut Vec<String>,
) -> Vec<(Vec<u8>, Handle)> {
    let mut out = Vec::new();
    let mut s = 0u64;
    if ck == ChecksumType::None {
        notes.push("the table's blocks carry no checksum and its index is unusable: its data blocks cannot be found".into());
        return out;
    }
    // Read in large windows, each block searched from where the last one ended: every byte is
    // read once (a window per block would read the table thousands of times over).
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = 0u64;
    while s + table::TRAILER < end {
        let want = (end - s).min(MAX_WALKED_BLOCK + table::TRAILER);
        if s + want > buf_at + buf.len() as u64 {
            let window = (end - s).min(4 * (MAX_WALKED_BLOCK + table::TRAILER));
            let Ok(b) = table::read_exact(source, s, window) else {
                break;
            };
            buf = b;
            buf_at = s;
        }
        let from = (s - buf_at) as usize;
        let found =
            table::find_block_end(ck, buf.get(from..from + want as usize).unwrap_or_default());
        match found {
            Some(e) => {
                out.push((
                    Vec::new(),
                    Handle {
                        offset: s,
                        size: e as u64,
                    },
                ));
                s += e as u64 + table::TRAILER;
            }
            None => {
                let mut o = base.clone();
                o.insert("block_type".into(), "data".into());
                o.insert("block".into(), (out.len() as u64).into());
                findings.push(
                    Finding::new(
                        FindingKind::ChecksumMismatch,
                        s,
                        end - s,
                        format!("no block verifies from here to the end of the data blocks ({}): with the index unusable, where the blocks after this point begin is unknown", crate::bytes(end - s)),
                    )
                    .owner(o),
                );
                break;
            }
        }
    }
    out
}

/// The checksum type the table's first block verifies with (the footer that names it being
/// unusable); CRC-32C, LevelDB's only type, when none does.
fn first_block_checksum(source: &dyn FileSource, len: u64) -> ChecksumType {
    let window = len.min(MAX_WALKED_BLOCK + table::TRAILER);
    let Ok(buf) = table::read_exact(source, 0, window) else {
        return ChecksumType::Crc32c;
    };
    [
        ChecksumType::Xxh3,
        ChecksumType::Crc32c,
        ChecksumType::XxHash64,
        ChecksumType::XxHash,
    ]
    .into_iter()
    .find(|&ck| table::find_block_end(ck, &buf).is_some())
    .unwrap_or(ChecksumType::Crc32c)
}

/// One extent: a run of consecutive data blocks, or one meta block.
#[derive(Debug)]
struct Extent {
    start: u64,
    end: u64,
    what: Blocks,
}

#[derive(Debug)]
enum Blocks {
    Data {
        /// Ordinal of the first data block.
        first: u64,
        /// How many.
        count: u32,
        /// Where their sizes start in [`TableCheck::sizes`].
        sizes_at: usize,
        /// The separator before the run (user key): every key of the run is at or after it.
        lower: Option<Vec<u8>>,
        /// The separator of its last block: every key of the run is at or before it.
        upper: Option<Vec<u8>>,
    },
    Meta(BlockKind),
}

struct TableCheck {
    ck: ChecksumType,
    engine: Engine,
    format_version: u32,
    extents: Vec<Extent>,
    /// The sizes of the data blocks, varint-coded in order (their offsets follow from the run).
    sizes: Vec<u8>,
    base: Owner,
    /// The table's smallest and largest user keys from the MANIFEST.
    bounds: Option<(Vec<u8>, Vec<u8>)>,
    blocks: u64,
}

impl TableCheck {
    fn new(
        ck: ChecksumType,
        engine: Engine,
        format_version: u32,
        data: Vec<(Vec<u8>, Handle)>,
        metas: Vec<(Handle, BlockKind)>,
        base: Owner,
        live: Option<&TableLive>,
    ) -> TableCheck {
        let mut extents = Vec::new();
        let mut sizes = Vec::new();
        let blocks = data.len() as u64;
        let mut prev_sep: Option<Vec<u8>> = None;
        // The run of contiguous data blocks being gathered into one extent.
        let mut run: Option<Extent> = None;
        let mut last_sep = None;
        let close = |run: Option<Extent>, upper: Option<Vec<u8>>, extents: &mut Vec<Extent>| {
            if let Some(mut e) = run {
                if let Blocks::Data { upper: u, .. } = &mut e.what {
                    *u = upper;
                }
                extents.push(e);
            }
        };
        for (i, (sep, h)) in data.into_iter().enumerate() {
            let contiguous = run
                .as_ref()
                .is_some_and(|r| r.end == h.offset && r.end - r.start < GROUP_BYTES);
            if !contiguous {
                close(run.take(), last_sep.take(), &mut extents);
                run = Some(Extent {
                    start: h.offset,
                    end: h.offset,
                    what: Blocks::Data {
                        first: i as u64,
                        count: 0,
                        sizes_at: sizes.len(),
                        lower: prev_sep.clone(),
                        upper: None,
                    },
                });
            }
            if let Some(r) = run.as_mut() {
                r.end = h.end();
                if let Blocks::Data { count, .. } = &mut r.what {
                    *count += 1;
                }
            }
            crate::lsm::put_varint(&mut sizes, h.size);
            let sep = (!sep.is_empty()).then_some(sep);
            last_sep.clone_from(&sep);
            prev_sep = sep;
        }
        close(run.take(), last_sep.take(), &mut extents);
        for (h, kind) in metas {
            extents.push(Extent {
                start: h.offset,
                end: h.end(),
                what: Blocks::Meta(kind),
            });
        }
        extents.sort_by_key(|e| e.start);
        // Overlapping extents (a damaged index listing blocks twice) would be verified twice and
        // break the engine's contract of disjoint ranges: later ones are dropped.
        let mut kept: Vec<Extent> = Vec::with_capacity(extents.len());
        for e in extents {
            if kept.last().is_none_or(|k| k.end <= e.start) {
                kept.push(e);
            }
        }
        TableCheck {
            ck,
            engine,
            format_version,
            extents: kept,
            sizes,
            base,
            bounds: live.map(|l| (l.smallest.clone(), l.largest.clone())),
            blocks,
        }
    }

    /// Where data block `unit` lies.
    fn data_block(&self, unit: u64) -> Option<Handle> {
        self.extents.iter().find_map(|e| match &e.what {
            Blocks::Data {
                first,
                count,
                sizes_at,
                ..
            } if (*first..*first + u64::from(*count)).contains(&unit) => {
                let mut c = Cursor::new(self.sizes.get(*sizes_at..).unwrap_or_default());
                let mut o = e.start;
                for _ in *first..unit {
                    o += c.varint64()? + table::TRAILER;
                }
                Some(Handle {
                    offset: o,
                    size: c.varint64()?,
                })
            }
            _ => None,
        })
    }

    /// First and last user keys of a data block that verifies, when it parses.
    fn keys_of(&self, stored: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        table::verify(self.ck, stored).ok()?;
        let n = stored.len().checked_sub(table::TRAILER as usize)?;
        let block = table::decompress(
            self.engine,
            self.format_version,
            *stored.get(n)?,
            stored.get(..n)?,
            MAX_BLOCK as usize,
        )
        .ok()?;
        let es = table::entries(&block, table::Values::Sized).ok()?;
        let first = table::user_key(&es.first()?.key).to_vec();
        let last = table::user_key(&es.last()?.key).to_vec();
        Some((first, last))
    }
}

impl UnitCheck for TableCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: self.extents.first().map_or(0, |e| e.start),
            end: self.extents.last().map_or(0, |e| e.end),
            align: 1,
        }
    }

    fn unit_count(&self) -> Option<u64> {
        Some(self.blocks)
    }

    fn unit_range(&self, unit: u64) -> Option<std::ops::Range<u64>> {
        let h = self.data_block(unit)?;
        Some(h.offset..h.end())
    }

    fn describe(&self, chunk: &Chunk<'_>) -> Vec<(String, String)> {
        let Some(unit) = (0..self.blocks)
            .find(|&u| self.data_block(u).is_some_and(|h| h.offset == chunk.offset))
        else {
            return Vec::new();
        };
        let mut f = vec![
            (
                "block".to_owned(),
                format!(
                    "data block {unit} of {} (sst_dump's # {})",
                    self.blocks,
                    unit + 1
                ),
            ),
            ("offset".to_owned(), chunk.offset.to_string()),
            (
                "size".to_owned(),
                format!("{} + 5-byte trailer", chunk.bytes.len().saturating_sub(5)),
            ),
            ("checksum type".to_owned(), self.ck.name().to_owned()),
        ];
        let n = chunk.bytes.len().saturating_sub(table::TRAILER as usize);
        let kind = chunk.bytes.get(n).copied().unwrap_or(0);
        f.push(("compression type".to_owned(), kind.to_string()));
        let stored = crate::lsm::fixed32(chunk.bytes, n + 1);
        let computed = self
            .ck
            .compute(chunk.bytes.get(..n).unwrap_or_default(), kind);
        f.push((
            "stored checksum".to_owned(),
            format!("{:#010x}", self.ck.shown(stored)),
        ));
        f.push((
            "computed checksum".to_owned(),
            format!("{:#010x}", self.ck.shown(computed)),
        ));
        if stored == computed || self.ck == ChecksumType::None {
            if let Ok(b) = table::decompress(
                self.engine,
                self.format_version,
                kind,
                chunk.bytes.get(..n).unwrap_or_default(),
                MAX_BLOCK as usize,
            ) {
                match table::entries(&b, table::Values::Sized) {
                    Ok(es) => {
                        f.push(("entries".to_owned(), es.len().to_string()));
                        for (i, e) in es.iter().enumerate().take(8) {
                            let (user, trailer) = (
                                table::user_key(&e.key),
                                crate::lsm::fixed64(&e.key, e.key.len().saturating_sub(8)),
                            );
                            f.push((
                                format!("entry {i}"),
                                format!(
                                    "{} seq {} type {} ({} value bytes)",
                                    crate::lsm::printable(user),
                                    trailer >> 8,
                                    trailer & 0xff,
                                    e.value.len()
                                ),
                            ));
                        }
                        if let Some(last) = es.last() {
                            f.push((
                                "last key".to_owned(),
                                crate::lsm::printable(table::user_key(&last.key)),
                            ));
                        }
                    }
                    Err(e) => f.push(("entries".to_owned(), format!("do not parse: {e}"))),
                }
            }
        }
        f
    }

    fn extents(&self) -> Vec<Layout> {
        self.extents
            .iter()
            .map(|e| Layout {
                start: e.start,
                end: e.end,
                align: (e.end - e.start).max(1),
            })
            .collect()
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        // The engine hands whole extents; `dbfsck inspect` one data block of one: every block
        // wholly inside the chunk is verified.
        let from = self.extents.partition_point(|e| e.end <= chunk.offset);
        let chunk_end = chunk.offset + chunk.bytes.len() as u64;
        let mut units = 0;
        let at = |o: u64, n: u64| {
            let s = usize::try_from(o.checked_sub(chunk.offset)?).ok()?;
            chunk.bytes.get(s..s.checked_add(usize::try_from(n).ok()?)?)
        };
        for e in self.extents.get(from..).unwrap_or_default() {
            if e.start >= chunk_end {
                break;
            }
            match &e.what {
                Blocks::Meta(kind) => {
                    let Some(stored) = at(e.start, e.end - e.start) else {
                        continue;
                    };
                    units += 1;
                    if let Err((s, c)) = table::verify(self.ck, stored) {
                        let mut o = self.base.clone();
                        o.insert("block_type".into(), kind.name().into());
                        out.push(
                            Finding::new(
                                FindingKind::ChecksumMismatch,
                                e.start,
                                e.end - e.start,
                                format!(
                                    "{} block fails its {} checksum",
                                    kind.name(),
                                    self.ck.name()
                                ),
                            )
                            .checksums(format!("{s:#010x}"), format!("{c:#010x}"))
                            .owner(o),
                        );
                    }
                }
                Blocks::Data {
                    first,
                    count,
                    sizes_at,
                    lower,
                    upper,
                } => {
                    let mut c = Cursor::new(self.sizes.get(*sizes_at..).unwrap_or_default());
                    let mut blocks = Vec::with_capacity(*count as usize);
                    let mut o = e.start;
                    for _ in 0..*count {
                        let size = c.varint64().unwrap_or(0);
                        blocks.push(Handle { offset: o, size });
                        o = o + size + table::TRAILER;
                    }
                    for (j, h) in blocks.iter().enumerate() {
                        let Some(stored) = at(h.offset, h.size + table::TRAILER) else {
                            continue;
                        };
                        units += 1;
                        let Err((s, cmp)) = table::verify(self.ck, stored) else {
                            continue;
                        };
                        let ordinal = first + j as u64;
                        // The keys it held: after its neighbours' keys when they verify, else
                        // within the separators around the run, else the table's bounds.
                        let prev = j
                            .checked_sub(1)
                            .and_then(|p| blocks.get(p))
                            .and_then(|p| at(p.offset, p.size + table::TRAILER))
                            .and_then(|b| self.keys_of(b))
                            .map(|k| k.1);
                        let next = blocks
                            .get(j + 1)
                            .and_then(|n| at(n.offset, n.size + table::TRAILER))
                            .and_then(|b| self.keys_of(b))
                            .map(|k| k.0);
                        let from_key = prev.or_else(|| lower.clone()).or_else(|| {
                            (ordinal == 0)
                                .then(|| self.bounds.as_ref().map(|b| b.0.clone()))
                                .flatten()
                        });
                        let to_key = next
                            .or_else(|| {
                                if j + 1 == blocks.len() {
                                    upper.clone()
                                } else {
                                    None
                                }
                            })
                            .or_else(|| {
                                (ordinal + 1 == self.blocks)
                                    .then(|| self.bounds.as_ref().map(|b| b.1.clone()))
                                    .flatten()
                            });
                        let mut owner = self.base.clone();
                        owner.insert("block_type".into(), "data".into());
                        owner.insert("block".into(), ordinal.into());
                        let mut range = serde_json::Map::new();
                        if let Some(k) = &from_key {
                            key_json(&mut range, "from", k);
                        }
                        if let Some(k) = &to_key {
                            key_json(&mut range, "to", k);
                        }
                        owner.insert("key_range".into(), range.into());
                        out.push(
                            Finding::new(
                                FindingKind::ChecksumMismatch,
                                h.offset,
                                h.size + table::TRAILER,
                                format!(
                                    "data block {ordinal} fails its {} checksum: its keys{} are unreadable",
                                    self.ck.name(),
                                    crate::lsm::range_phrase(from_key.as_deref(), to_key.as_deref())
                                ),
                            )
                            .unit(ordinal)
                            .checksums(format!("{s:#010x}"), format!("{cmp:#010x}"))
                            .owner(owner),
                        );
                    }
                }
            }
        }
        units
    }
}
