//! Salvage of a table with damaged data blocks (docs/rocksdb.md §8): a new table holding every
//! data block that verifies and parses, copied as stored (their own checksums unchanged), with a
//! new index over them, the original properties (updated to what the new table holds, and a
//! `dbfsck.salvaged` entry naming what was lost), the original range deletions and compression
//! dictionary, and a footer of the original's form. Filters are dropped (a table without one is
//! read in full). The only checksums computed are those of the blocks built here — index,
//! properties, metaindex — over bytes taken from blocks that verify.
//!
//! Refused (the table is left as it is) when what it would rewrite cannot be trusted: the
//! footer, metaindex, properties, index or range-deletion block failing, or no data block left.

use crate::lsm::table::{self, ChecksumType, Engine, Handle, Values};
use crate::lsm::{put_varint, Cursor};

/// A table rebuilt from its verifying blocks.
#[derive(Debug, Clone)]
pub struct Salvaged {
    /// The new table's bytes.
    pub bytes: Vec<u8>,
    /// Its smallest and largest internal keys (for the MANIFEST).
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
    /// Data blocks kept.
    pub kept: u64,
    /// Data blocks dropped, by ordinal.
    pub dropped: Vec<u64>,
    /// Entries in the blocks kept.
    pub entries: u64,
    /// Whether the new table has the original's length (zero padding after its data blocks), so
    /// the MANIFEST's record of it needs no change.
    pub padded: bool,
}

/// Why a table is not salvaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SalvageError {
    /// The footer does not decode.
    #[error("its footer is unusable ({0})")]
    Footer(String),
    /// A block the new table is built from fails.
    #[error("its {0} block fails or does not parse, so the table's structure cannot be trusted")]
    Structure(&'static str),
    /// Nothing is left.
    #[error("no data block verifies: nothing to salvage")]
    Nothing,
    /// Nothing is damaged.
    #[error("every data block verifies: nothing to salvage")]
    Whole,
}

struct Builder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
}

impl Builder {
    fn new() -> Self {
        Builder {
            buf: Vec::new(),
            restarts: Vec::new(),
        }
    }

    /// One entry, its key stored whole (a restart at every entry: any reader accepts it).
    fn add(&mut self, key: &[u8], value: &[u8]) {
        self.restarts.push(self.buf.len() as u32);
        put_varint(&mut self.buf, 0);
        put_varint(&mut self.buf, key.len() as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(value);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.restarts.is_empty() {
            self.restarts.push(0);
        }
        for r in &self.restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.buf
            .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.buf
    }
}

fn handle_value(h: Handle) -> Vec<u8> {
    let mut v = Vec::new();
    put_varint(&mut v, h.offset);
    put_varint(&mut v, h.size);
    v
}

/// Appends `block` uncompressed with its trailer; its handle.
fn push_block(out: &mut Vec<u8>, ck: ChecksumType, block: &[u8]) -> Handle {
    let h = Handle {
        offset: out.len() as u64,
        size: block.len() as u64,
    };
    out.extend_from_slice(block);
    out.push(0);
    let sum = match ck {
        // A table without checksums gets CRC-32C-free trailers too: zero, as RocksDB writes.
        ChecksumType::None => 0,
        ck => ck.compute(block, 0),
    };
    out.extend_from_slice(&sum.to_le_bytes());
    h
}

fn stored(bytes: &[u8], h: Handle) -> Option<&[u8]> {
    bytes.get(h.offset as usize..h.end() as usize)
}

/// Reads, verifies and decompresses a structural block.
fn read(
    bytes: &[u8],
    engine: Engine,
    fv: u32,
    ck: ChecksumType,
    h: Handle,
    what: &'static str,
) -> Result<Vec<u8>, SalvageError> {
    let s = stored(bytes, h).ok_or(SalvageError::Structure(what))?;
    table::verify(ck, s).map_err(|_| SalvageError::Structure(what))?;
    let n = h.size as usize;
    table::decompress(
        engine,
        fv,
        *s.get(n).unwrap_or(&0),
        s.get(..n).unwrap_or_default(),
        64 << 20,
    )
    .map_err(|_| SalvageError::Structure(what))
}

/// Rebuilds the table `bytes` (a whole file) without its damaged data blocks. `note` is the
/// text of the `dbfsck.salvaged` property (what was lost, for later scans and people).
/// With `pad_to`, the new table is given that length when it fits ([`Salvaged::padded`]).
pub fn rebuild(
    bytes: &[u8],
    engine: Engine,
    note: &str,
    pad_to: Option<u64>,
) -> Result<Salvaged, SalvageError> {
    let len = bytes.len() as u64;
    let tail = bytes
        .get(bytes.len().saturating_sub(53)..)
        .unwrap_or_default();
    let f = table::footer(tail, len).map_err(|e| SalvageError::Footer(e.to_string()))?;
    let (ck, fv) = (f.checksum, f.format_version);
    let mi = read(bytes, engine, fv, ck, f.metaindex, "metaindex")?;
    let mut props_raw: Option<Vec<u8>> = None;
    let mut keep_meta: Vec<(Vec<u8>, Handle)> = Vec::new();
    for e in table::entries(&mi, Values::Sized).map_err(|_| SalvageError::Structure("metaindex"))? {
        let h = Handle::decode_value(e.value).ok_or(SalvageError::Structure("metaindex"))?;
        let name = String::from_utf8_lossy(&e.key).into_owned();
        match name.as_str() {
            "rocksdb.properties" | "rocksdb.stats" => {
                props_raw = Some(read(bytes, engine, fv, ck, h, "properties")?);
            }
            // Range deletions must survive (dropping them would resurrect deleted keys), and the
            // dictionary is needed to read the data blocks: both copied as they are.
            "rocksdb.range_del" | "rocksdb.compression_dict" => {
                let s = stored(bytes, h).ok_or(SalvageError::Structure("range deletion"))?;
                table::verify(ck, s).map_err(|_| {
                    SalvageError::Structure(if name == "rocksdb.range_del" {
                        "range deletion"
                    } else {
                        "compression dictionary"
                    })
                })?;
                keep_meta.push((e.key.clone(), h));
            }
            // Filters and hash-index metadata describe the old layout: dropped.
            _ => {}
        }
    }
    let props = match &props_raw {
        Some(p) => table::properties(p).map_err(|_| SalvageError::Structure("properties"))?,
        None => table::Properties::default(),
    };
    let ib = read(bytes, engine, fv, ck, f.index, "index")?;
    let first_key = props.index_type == 3;
    let top = table::index_handles(&ib, props.index_delta, first_key)
        .map_err(|_| SalvageError::Structure("index"))?;
    let data: Vec<(Vec<u8>, Handle)> = if props.index_type == 2 {
        let mut all = Vec::new();
        for (_, ph) in top {
            let pb = read(bytes, engine, fv, ck, ph, "index partition")?;
            all.extend(
                table::index_handles(&pb, props.index_delta, false)
                    .map_err(|_| SalvageError::Structure("index partition"))?,
            );
        }
        all
    } else {
        top
    };
    // The new table: the data blocks that verify and parse, back to back.
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = Builder::new();
    let mut dropped = Vec::new();
    let (mut smallest, mut largest) = (None::<Vec<u8>>, Vec::new());
    let mut entries = 0u64;
    let mut kept = 0u64;
    for (i, (sep, h)) in data.iter().enumerate() {
        let parsed = stored(bytes, *h)
            .filter(|s| table::verify(ck, s).is_ok())
            .and_then(|s| {
                let n = h.size as usize;
                let b = table::decompress(engine, fv, *s.get(n)?, s.get(..n)?, 64 << 20).ok()?;
                let es = table::entries(&b, Values::Sized).ok()?;
                let first = es.first()?.key.clone();
                let last = es.last()?.key.clone();
                Some((s, first, last, es.len() as u64))
            });
        let Some((s, first, last, n)) = parsed else {
            dropped.push(i as u64);
            continue;
        };
        let nh = Handle {
            offset: out.len() as u64,
            size: h.size,
        };
        out.extend_from_slice(s);
        index.add(sep, &handle_value(nh));
        smallest.get_or_insert(first);
        largest = last;
        entries += n;
        kept += 1;
    }
    if dropped.is_empty() {
        return Err(SalvageError::Whole);
    }
    let Some(smallest) = smallest else {
        return Err(SalvageError::Nothing);
    };
    let data_size = out.len() as u64;
    let index_block = index.finish();
    // The original properties, parsed once (the tail below is built more than once).
    let prop_entries: Option<Vec<(Vec<u8>, Vec<u8>)>> = match &props_raw {
        Some(raw) => Some(
            table::entries(raw, Values::Sized)
                .map_err(|_| SalvageError::Structure("properties"))?
                .into_iter()
                .map(|e| (e.key, e.value.to_vec()))
                .collect(),
        ),
        None => None,
    };
    let metas_in: Vec<(Vec<u8>, &[u8])> = keep_meta
        .iter()
        .map(|(name, h)| (name.clone(), stored(bytes, *h).unwrap_or_default()))
        .collect();
    let first_byte = tail.first().copied().unwrap_or(1);
    // Index, kept meta blocks, properties, metaindex and footer after `out` (the data blocks,
    // and any padding after them).
    let build_tail = |mut out: Vec<u8>| -> Vec<u8> {
        let index_h = push_block(&mut out, ck, &index_block);
        let mut metas: Vec<(Vec<u8>, Handle)> = Vec::new();
        for (name, s) in &metas_in {
            let nh = Handle {
                offset: out.len() as u64,
                size: (s.len() as u64).saturating_sub(table::TRAILER),
            };
            out.extend_from_slice(s);
            metas.push((name.clone(), nh));
        }
        if let Some(entries_in) = &prop_entries {
            let varint = |n: u64| {
                let mut v = Vec::new();
                put_varint(&mut v, n);
                v
            };
            let range_dels = entries_in
                .iter()
                .find(|(k, _)| k == b"rocksdb.num.range-deletions")
                .and_then(|(_, v)| Cursor::new(v).varint64())
                .unwrap_or(0);
            let mut items: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for (k, v) in entries_in {
                let value: Option<Vec<u8>> = match k.as_slice() {
                    b"rocksdb.num.data.blocks" => Some(varint(kept)),
                    b"rocksdb.num.entries" => Some(varint(entries + range_dels)),
                    b"rocksdb.data.size" => Some(varint(data_size)),
                    b"rocksdb.index.size" => {
                        Some(varint(index_block.len() as u64 + table::TRAILER))
                    }
                    b"rocksdb.index.partitions" | b"rocksdb.top-level.index.size" => {
                        Some(varint(0))
                    }
                    b"rocksdb.filter.size" | b"rocksdb.num.filter_entries" => Some(varint(0)),
                    b"rocksdb.filter.policy" | b"dbfsck.salvaged" => None,
                    b"rocksdb.index.value.is.delta.encoded" => Some(varint(0)),
                    b"rocksdb.block.based.table.index.type" => Some(0u32.to_le_bytes().to_vec()),
                    _ => Some(v.clone()),
                };
                if let Some(v) = value {
                    items.push((k.clone(), v));
                }
            }
            items.push((b"dbfsck.salvaged".to_vec(), note.as_bytes().to_vec()));
            items.sort();
            let mut p = Builder::new();
            for (k, v) in &items {
                p.add(k, v);
            }
            let ph = push_block(&mut out, ck, &p.finish());
            metas.push((b"rocksdb.properties".to_vec(), ph));
        }
        metas.sort();
        let mut m = Builder::new();
        for (name, h) in &metas {
            m.add(name, &handle_value(*h));
        }
        let mi_h = push_block(&mut out, ck, &m.finish());
        // The footer, in the original's form.
        let mut handles = Vec::new();
        handles.extend_from_slice(&handle_value(mi_h));
        handles.extend_from_slice(&handle_value(index_h));
        handles.resize(40, 0);
        if f.legacy {
            out.extend_from_slice(&handles);
            out.extend_from_slice(&table::LEGACY_MAGIC.to_le_bytes());
        } else {
            out.push(first_byte);
            out.extend_from_slice(&handles);
            out.extend_from_slice(&fv.to_le_bytes());
            out.extend_from_slice(&table::MAGIC.to_le_bytes());
        }
        out
    };
    let data_len = out.len();
    let mut built = build_tail(out.clone());
    let mut padded = false;
    // The original's length kept, when the new table fits in it: zeros after the data blocks
    // (no block references them), so the MANIFEST's record of the table stays true.
    if let Some(target) = pad_to.map(|t| t as usize).filter(|&t| built.len() <= t) {
        let mut pad = target - built.len();
        for _ in 0..4 {
            let mut d = out.clone();
            d.resize(data_len + pad, 0);
            let t = build_tail(d);
            if t.len() == target {
                built = t;
                padded = true;
                break;
            }
            // A handle's varint grew or shrank with the offsets: adjust and build again.
            pad = (pad + target).saturating_sub(t.len());
        }
    }
    let out = built;
    Ok(Salvaged {
        bytes: out,
        smallest,
        largest,
        kept,
        dropped,
        entries,
        padded,
    })
}

/// Whether every block of a table verifies and its structure reads (the re-verification after a
/// salvage): `None`, or what is wrong.
pub fn check_whole(bytes: &[u8], engine: Engine) -> Option<String> {
    let path = std::path::Path::new("/salvaged.sst");
    let opened = match crate::lsm::sst::open(path, &crate::format::BytesSource(bytes), engine, None)
    {
        Ok(o) => o,
        Err(e) => return Some(e.to_string()),
    };
    // The salvage's own mark (`quarantined`: what was lost) is expected; anything else is not.
    if let Some(f) = opened
        .findings
        .iter()
        .find(|f| f.kind != crate::finding::FindingKind::Quarantined)
    {
        return Some(f.detail.clone());
    }
    let check = opened.check?;
    let mut out = Vec::new();
    for e in check.extents() {
        let chunk = crate::format::Chunk {
            offset: e.start,
            bytes: bytes
                .get(e.start as usize..e.end as usize)
                .unwrap_or_default(),
        };
        check.verify(&chunk, &mut out);
    }
    out.first().map(|f| f.detail.clone())
}
