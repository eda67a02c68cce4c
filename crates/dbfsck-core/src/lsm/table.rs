//! Block-based tables (RocksDB `.sst`, LevelDB `.ldb`/`.sst`; docs/rocksdb.md §5): the footer,
//! block handles and trailers, the five checksum types, block entries, and the list of every
//! block of a table read from its metaindex and index (two-level partitioned indexes included).
//!
//! Every block is verified as stored — its checksum covers the stored (compressed) bytes and the
//! compression type byte — so no data block is decompressed to be verified. The index, metaindex
//! and properties are decompressed to be read.

use std::io::Read;

use crate::lsm::{fixed32, Cursor};

/// A block's trailer: compression type byte, then the checksum.
pub const TRAILER: u64 = 5;
/// LevelDB's and RocksDB format_version 0's footer.
pub const LEGACY_FOOTER: u64 = 48;
/// RocksDB format_version ≥ 1's footer.
pub const FOOTER: u64 = 53;
/// Magic of LevelDB and RocksDB format_version 0 tables.
pub const LEGACY_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Magic of RocksDB block-based tables, format_version ≥ 1.
pub const MAGIC: u64 = 0x88e2_41b7_85f4_cff7;
/// Magics of RocksDB's other table kinds (plain, legacy plain, cuckoo): not block-based.
pub const OTHER_MAGICS: [(u64, &str); 3] = [
    (0x8242_2296_63bf_9564, "plain table"),
    (0x4f34_18eb_7a8f_13b8, "legacy plain table"),
    (0x9267_89d0_c5f1_7873, "cuckoo table"),
];

/// A block's checksum type (the footer's byte 0 from format_version 1 on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumType {
    /// 0: not checked.
    None,
    /// 1: masked CRC-32C (LevelDB's only type).
    Crc32c,
    /// 2: XXH32, seed 0.
    XxHash,
    /// 3: low 32 bits of XXH64, seed 0.
    XxHash64,
    /// 4: XXH3-64 of the block, low 32 bits, XOR the type byte times 0x6B9083D9.
    Xxh3,
}

impl ChecksumType {
    /// From the footer's byte.
    pub fn from_byte(b: u8) -> Option<ChecksumType> {
        Some(match b {
            0 => ChecksumType::None,
            1 => ChecksumType::Crc32c,
            2 => ChecksumType::XxHash,
            3 => ChecksumType::XxHash64,
            4 => ChecksumType::Xxh3,
            _ => return None,
        })
    }

    /// RocksDB's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumType::None => "kNoChecksum",
            ChecksumType::Crc32c => "kCRC32c",
            ChecksumType::XxHash => "kxxHash",
            ChecksumType::XxHash64 => "kxxHash64",
            ChecksumType::Xxh3 => "kXXH3",
        }
    }

    /// The value stored for `block` followed by its compression type byte `kind`.
    pub fn compute(self, block: &[u8], kind: u8) -> u32 {
        match self {
            ChecksumType::None => 0,
            ChecksumType::Crc32c => {
                crate::lsm::log::mask(crc32c::crc32c_append(crc32c::crc32c(block), &[kind]))
            }
            ChecksumType::XxHash => {
                let mut h = xxhash_rust::xxh32::Xxh32::new(0);
                h.update(block);
                h.update(&[kind]);
                h.digest()
            }
            ChecksumType::XxHash64 => {
                let mut h = xxhash_rust::xxh64::Xxh64::new(0);
                h.update(block);
                h.update(&[kind]);
                h.digest() as u32
            }
            ChecksumType::Xxh3 => {
                if block.is_empty() && kind == 0 {
                    return 0;
                }
                (xxhash_rust::xxh3::xxh3_64(block) as u32)
                    ^ u32::from(kind).wrapping_mul(0x6B90_83D9)
            }
        }
    }

    /// How RocksDB prints a stored or computed value (CRC-32C unmasked).
    pub fn shown(self, v: u32) -> u32 {
        match self {
            ChecksumType::Crc32c => crate::lsm::log::unmask(v),
            _ => v,
        }
    }
}

/// Where a block lies: offset and size (the trailer not included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Handle {
    /// Offset of the block.
    pub offset: u64,
    /// Its size without the 5-byte trailer.
    pub size: u64,
}

impl Handle {
    /// The end of the block's trailer.
    pub fn end(self) -> u64 {
        self.offset
            .saturating_add(self.size)
            .saturating_add(TRAILER)
    }

    fn decode(c: &mut Cursor<'_>) -> Option<Handle> {
        Some(Handle {
            offset: c.varint64()?,
            size: c.varint64()?,
        })
    }
}

/// A table's footer, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Its offset in the file.
    pub offset: u64,
    /// Checksum type of every block.
    pub checksum: ChecksumType,
    /// RocksDB's format_version (0 for LevelDB and the legacy footer).
    pub format_version: u32,
    /// The metaindex block.
    pub metaindex: Handle,
    /// The index block.
    pub index: Handle,
    /// Whether the magic is the legacy (LevelDB) one.
    pub legacy: bool,
    /// Whether the zero padding after the handles is zero (the engines ignore it).
    pub padding_clean: bool,
}

/// Why a footer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FooterError {
    /// Shorter than any footer.
    #[error("the file is {0} bytes long, shorter than a table footer (48 bytes)")]
    Short(u64),
    /// The magic is no table's.
    #[error(
        "the footer's magic number {0:#018x} is no table's: the file is cut, or its end is damaged"
    )]
    Magic(u64),
    /// A RocksDB table of another kind.
    #[error("a RocksDB {0}, not a block-based table: not checked")]
    OtherKind(&'static str),
    /// A format_version this reader does not know.
    #[error("format_version {0} is not supported (RocksDB 8.6+ writes 6 and 7): not checked")]
    Unsupported(u32),
    /// A format_version no RocksDB writes (what a cut file's bytes read as).
    #[error("format_version {0} is impossible: the footer is damaged, or the file is cut")]
    BadVersion(u32),
    /// An unknown checksum type.
    #[error("checksum type {0} is unknown")]
    Checksum(u8),
    /// The handles do not decode or point outside the file.
    #[error("the footer's block handles do not decode or point outside the file")]
    Handles,
}

impl FooterError {
    /// Whether this is a table of a kind or version not checked, rather than damage.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            FooterError::OtherKind(_) | FooterError::Unsupported(_)
        )
    }
}

/// Decodes the footer from the file's last bytes (`tail`, at least 53 unless the file is
/// shorter) of a file `len` long.
pub fn footer(tail: &[u8], len: u64) -> Result<Footer, FooterError> {
    if len < LEGACY_FOOTER || (tail.len() as u64) < LEGACY_FOOTER {
        return Err(FooterError::Short(len));
    }
    let magic = crate::lsm::fixed64(tail, tail.len() - 8);
    let (offset, body, checksum, format_version, legacy) = if magic == LEGACY_MAGIC {
        let body = tail.get(tail.len() - 48..).unwrap_or_default();
        (len - LEGACY_FOOTER, body, ChecksumType::Crc32c, 0, true)
    } else if magic == MAGIC {
        if len < FOOTER || (tail.len() as u64) < FOOTER {
            return Err(FooterError::Short(len));
        }
        let f = tail.get(tail.len() - 53..).unwrap_or_default();
        let version = fixed32(f, 41);
        if (6..1000).contains(&version) {
            return Err(FooterError::Unsupported(version));
        }
        if version == 0 || version > 5 {
            return Err(FooterError::BadVersion(version));
        }
        let byte = f.first().copied().unwrap_or(0);
        let ck = ChecksumType::from_byte(byte).ok_or(FooterError::Checksum(byte))?;
        (
            len - FOOTER,
            f.get(1..).unwrap_or_default(),
            ck,
            version,
            false,
        )
    } else if let Some((_, kind)) = OTHER_MAGICS.iter().find(|(m, _)| *m == magic) {
        return Err(FooterError::OtherKind(kind));
    } else {
        return Err(FooterError::Magic(magic));
    };
    let mut c = Cursor::new(body);
    let metaindex = Handle::decode(&mut c).ok_or(FooterError::Handles)?;
    let index = Handle::decode(&mut c).ok_or(FooterError::Handles)?;
    if metaindex.end() > offset || index.end() > offset {
        return Err(FooterError::Handles);
    }
    // The handles are padded with zeros to 40 bytes; the engines never read the padding.
    let padding_clean = body.get(c.pos()..40).is_none_or(crate::all_zero);
    Ok(Footer {
        offset,
        checksum,
        format_version,
        metaindex,
        index,
        legacy,
        padding_clean,
    })
}

/// The footer of a table whose magic is damaged, read as if the magic were intact: the 53-byte
/// form when its format_version, checksum type and handles are plausible, else the legacy one
/// when its handles are. `None` when neither reads.
pub fn footer_ignoring_magic(tail: &[u8], len: u64) -> Option<Footer> {
    let mut fixed = tail.to_vec();
    let n = fixed.len();
    if n >= 53 {
        let mut t = fixed.clone();
        t.get_mut(n - 8..)?.copy_from_slice(&MAGIC.to_le_bytes());
        if let Ok(f) = footer(&t, len) {
            return Some(f);
        }
    }
    fixed
        .get_mut(n.checked_sub(8)?..)?
        .copy_from_slice(&LEGACY_MAGIC.to_le_bytes());
    footer(&fixed, len).ok()
}

/// Where the block starting at `buf[0]` ends, found without an index: the smallest `size` at
/// which the trailer after `buf[..size]` holds a plausible compression type and the checksum of
/// the bytes before it. The hash runs once over the bytes (incrementally), so a miss over the
/// whole window costs one pass.
pub fn find_block_end(ck: ChecksumType, buf: &[u8]) -> Option<usize> {
    let last = buf.len().checked_sub(TRAILER as usize)?;
    let mut crc = 0u32;
    let mut x32 = xxhash_rust::xxh32::Xxh32::new(0);
    let mut x64 = xxhash_rust::xxh64::Xxh64::new(0);
    let mut x3 = xxhash_rust::xxh3::Xxh3::new();
    let mut done = 0usize;
    for e in 0..=last {
        let kind = *buf.get(e)?;
        if kind > 7 {
            continue;
        }
        let piece = buf.get(done..e)?;
        done = e;
        let want = fixed32(buf, e + 1);
        let got = match ck {
            ChecksumType::None => return None,
            ChecksumType::Crc32c => {
                crc = crc32c::crc32c_append(crc, piece);
                crate::lsm::log::mask(crc32c::crc32c_append(crc, &[kind]))
            }
            ChecksumType::XxHash => {
                x32.update(piece);
                let mut h = x32.clone();
                h.update(&[kind]);
                h.digest()
            }
            ChecksumType::XxHash64 => {
                x64.update(piece);
                let mut h = x64.clone();
                h.update(&[kind]);
                h.digest() as u32
            }
            ChecksumType::Xxh3 => {
                x3.update(piece);
                (x3.digest() as u32) ^ u32::from(kind).wrapping_mul(0x6B90_83D9)
            }
        };
        if got == want && e > 0 {
            return Some(e);
        }
    }
    None
}

/// What a block is, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BlockKind {
    /// Key-value entries.
    Data,
    /// The index (the top level of a partitioned one).
    Index,
    /// A partition of a two-level index.
    IndexPartition,
    /// A filter (full, or a partition) or a partitioned filter's index.
    Filter,
    /// Table properties.
    Properties,
    /// Range deletions.
    RangeDel,
    /// A compression dictionary.
    CompressionDict,
    /// The metaindex.
    Metaindex,
    /// Another meta block (hash index prefixes, …).
    Meta,
}

impl BlockKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Data => "data",
            BlockKind::Index => "index",
            BlockKind::IndexPartition => "index_partition",
            BlockKind::Filter => "filter",
            BlockKind::Properties => "properties",
            BlockKind::RangeDel => "range_del",
            BlockKind::CompressionDict => "compression_dict",
            BlockKind::Metaindex => "metaindex",
            BlockKind::Meta => "meta",
        }
    }
}

/// Which engine wrote the table: the compression codes differ (2 is zlib in RocksDB, zstd in
/// LevelDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// RocksDB.
    Rocksdb,
    /// LevelDB.
    Leveldb,
}

/// Why a block could not be read (beyond its checksum).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Reading failed.
    #[error("could not be read: {0}")]
    Io(String),
    /// It lies outside the file.
    #[error("lies outside the file")]
    Outside,
    /// The checksum fails.
    #[error("fails its checksum (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// As RocksDB prints it.
        stored: u32,
        /// As RocksDB prints it.
        computed: u32,
    },
    /// Decompression failed or the codec is not supported.
    #[error("cannot be decompressed: {0}")]
    Decompress(String),
    /// Its entries do not parse.
    #[error("its entries do not parse: {0}")]
    Entries(&'static str),
}

/// Verifies a block as stored: `stored` holds the block and its trailer.
pub fn verify(ck: ChecksumType, stored: &[u8]) -> Result<(), (u32, u32)> {
    let n = stored.len().saturating_sub(TRAILER as usize);
    let (Some(block), Some(kind), true) = (
        stored.get(..n),
        stored.get(n).copied(),
        stored.len() >= n + 5,
    ) else {
        return Err((0, 0));
    };
    if ck == ChecksumType::None {
        return Ok(());
    }
    let want = fixed32(stored, n + 1);
    let got = ck.compute(block, kind);
    if want == got {
        Ok(())
    } else {
        Err((ck.shown(want), ck.shown(got)))
    }
}

/// Decompresses a verified block (`stored` without its trailer; `kind` the trailer's type).
pub fn decompress(
    engine: Engine,
    format_version: u32,
    kind: u8,
    stored: &[u8],
    limit: usize,
) -> Result<Vec<u8>, BlockError> {
    let err = |e: String| BlockError::Decompress(e);
    let sized = |c: &mut Cursor<'_>| -> Result<usize, BlockError> {
        let n = c.varint32().ok_or_else(|| err("no size prefix".into()))? as usize;
        if n > limit {
            return Err(err(format!("claims {n} bytes, more than any block")));
        }
        Ok(n)
    };
    match (engine, kind) {
        (_, 0) => Ok(stored.to_vec()),
        (_, 1) => {
            let n = snap::raw::decompress_len(stored).map_err(|e| err(e.to_string()))?;
            if n > limit {
                return Err(err(format!("claims {n} bytes, more than any block")));
            }
            snap::raw::Decoder::new()
                .decompress_vec(stored)
                .map_err(|e| err(e.to_string()))
        }
        (Engine::Leveldb, 2) | (Engine::Rocksdb, 7) | (Engine::Rocksdb, 0x40) => {
            let mut c = Cursor::new(stored);
            let body = if engine == Engine::Rocksdb {
                let n = sized(&mut c)?;
                (c.rest(), n)
            } else {
                (stored, limit)
            };
            let mut out = Vec::new();
            let dec =
                ruzstd::decoding::StreamingDecoder::new(body.0).map_err(|e| err(e.to_string()))?;
            dec.take(body.1 as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| err(e.to_string()))?;
            Ok(out)
        }
        (Engine::Rocksdb, 2) | (Engine::Rocksdb, 3) => {
            let mut c = Cursor::new(stored);
            let (n, body) = if format_version >= 2 {
                (sized(&mut c)?, c.rest())
            } else {
                (limit, stored)
            };
            let mut out = Vec::new();
            let r: Box<dyn Read> = if kind == 2 {
                // RocksDB's zlib: raw deflate (window bits −14).
                Box::new(flate2::read::DeflateDecoder::new(body))
            } else {
                Box::new(bzip2::read::BzDecoder::new(body))
            };
            r.take(n as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| err(e.to_string()))?;
            Ok(out)
        }
        (Engine::Rocksdb, 4) | (Engine::Rocksdb, 5) => {
            let (n, body) = if format_version >= 2 {
                let mut c = Cursor::new(stored);
                (sized(&mut c)?, c.rest())
            } else {
                // Before format_version 2: an 8-byte native-endian size.
                let n = crate::lsm::fixed64(stored, 0) as usize;
                if n > limit {
                    return Err(err(format!("claims {n} bytes, more than any block")));
                }
                (n, stored.get(8..).unwrap_or_default())
            };
            lz4_flex::block::decompress(body, n).map_err(|e| err(e.to_string()))
        }
        (_, k) => Err(err(format!("compression type {k} is not supported"))),
    }
}

/// One entry of a block: the key (rebuilt from its shared prefix) and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The key.
    pub key: Vec<u8>,
    /// The value bytes (for a delta-encoded index entry, the encoded handle or delta).
    pub value: &'a [u8],
    /// Whether the key shares a prefix with the one before (delta-encoded index values then
    /// hold a size delta instead of a full handle).
    pub shared: bool,
}

/// How a block's entries store their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// A length, then the value (every block but delta-encoded indexes).
    Sized,
    /// No length: a handle, or a size delta when the key shares a prefix (index blocks of
    /// format_version ≥ 4, `index.value.is.delta.encoded`).
    Handles,
    /// As [`Values::Handles`], each followed by the block's first key, length-prefixed
    /// (`kBinarySearchWithFirstKey`).
    HandlesWithFirstKey,
}

/// The entries of a decompressed block, in order.
pub fn entries(block: &[u8], values: Values) -> Result<Vec<Entry<'_>>, BlockError> {
    let n = block.len();
    if n < 4 {
        return Err(BlockError::Entries("shorter than its restart count"));
    }
    let mut word = fixed32(block, n - 4);
    if n <= 65536 && word & 0x8000_0000 != 0 {
        // A data block hash index (RocksDB ≥ 5.17): buckets and their count sit before the
        // footer; the restarts end where they begin.
        word &= 0x7FFF_FFFF;
        let buckets = u16::from_le_bytes([
            block.get(n - 6).copied().unwrap_or(0),
            block.get(n - 5).copied().unwrap_or(0),
        ]) as usize;
        let end = (n - 6)
            .checked_sub(buckets)
            .ok_or(BlockError::Entries("hash index larger than the block"))?;
        return entries_in(block, end + 4, word, values);
    }
    entries_in(block, n, word, values)
}

fn entries_in(
    block: &[u8],
    end: usize,
    restarts: u32,
    values: Values,
) -> Result<Vec<Entry<'_>>, BlockError> {
    let restarts = restarts as usize;
    let array = restarts
        .checked_mul(4)
        .and_then(|r| r.checked_add(4))
        .and_then(|r| end.checked_sub(r))
        .ok_or(BlockError::Entries(
            "the restart array is larger than the block",
        ))?;
    let body = block.get(..array).unwrap_or_default();
    let mut c = Cursor::new(body);
    let mut out: Vec<Entry<'_>> = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    while !c.is_empty() {
        let shared = c.varint32().ok_or(BlockError::Entries("entry header"))? as usize;
        let own = c.varint32().ok_or(BlockError::Entries("entry header"))? as usize;
        let vlen = if values != Values::Sized {
            None
        } else {
            Some(c.varint32().ok_or(BlockError::Entries("entry header"))? as usize)
        };
        if shared > key.len() {
            return Err(BlockError::Entries(
                "shares more of the key than the key before has",
            ));
        }
        key.truncate(shared);
        key.extend_from_slice(
            c.take(own)
                .ok_or(BlockError::Entries("key runs past the entries"))?,
        );
        let value = match vlen {
            Some(v) => c
                .take(v)
                .ok_or(BlockError::Entries("value runs past the entries"))?,
            None => {
                let start = c.pos();
                c.varint64().ok_or(BlockError::Entries("index value"))?;
                if shared == 0 {
                    c.varint64().ok_or(BlockError::Entries("index value"))?;
                }
                let value = body.get(start..c.pos()).unwrap_or_default();
                if values == Values::HandlesWithFirstKey {
                    c.slice()
                        .ok_or(BlockError::Entries("index entry's first key"))?;
                }
                value
            }
        };
        out.push(Entry {
            key: key.clone(),
            value,
            shared: shared != 0,
        });
    }
    Ok(out)
}

/// The user key of an internal key (its last 8 bytes are sequence and type).
pub fn user_key(internal: &[u8]) -> &[u8] {
    internal
        .get(..internal.len().saturating_sub(8))
        .unwrap_or_default()
}

/// The handles an index block's entries hold, with their separators (user keys when
/// `user_keys`, else internal keys as stored).
pub fn index_handles(
    block: &[u8],
    delta: bool,
    first_key: bool,
) -> Result<Vec<(Vec<u8>, Handle)>, BlockError> {
    let mut out: Vec<(Vec<u8>, Handle)> = Vec::new();
    let values = match (delta, first_key) {
        (false, _) => Values::Sized,
        (true, false) => Values::Handles,
        (true, true) => Values::HandlesWithFirstKey,
    };
    for e in entries(block, values)? {
        let mut c = Cursor::new(e.value);
        let h = if delta && e.shared {
            let prev = out
                .last()
                .map(|(_, h)| *h)
                .ok_or(BlockError::Entries("delta without a full handle before it"))?;
            let raw = c.varint64().ok_or(BlockError::Entries("index value"))?;
            let d = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            Handle {
                offset: prev.end(),
                size: prev
                    .size
                    .checked_add_signed(d)
                    .ok_or(BlockError::Entries("size delta out of range"))?,
            }
        } else {
            Handle::decode(&mut c).ok_or(BlockError::Entries("index value"))?
        };
        out.push((e.key, h));
    }
    Ok(out)
}

/// Table properties that matter to the scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// `rocksdb.num.data.blocks`.
    pub data_blocks: Option<u64>,
    /// `rocksdb.num.entries`.
    pub entries: Option<u64>,
    /// `rocksdb.index.key.is.user.key`.
    pub index_user_keys: bool,
    /// `rocksdb.index.value.is.delta.encoded`.
    pub index_delta: bool,
    /// `rocksdb.block.based.table.index.type`.
    pub index_type: u32,
    /// `rocksdb.column.family.name`.
    pub cf_name: Option<String>,
    /// Whether the block needed the global-seqno quirk to verify.
    pub global_seqno_quirk: bool,
    /// `dbfsck.salvaged`: what a salvage by dbfsck lost from this table.
    pub salvaged: Option<String>,
}

/// Parses a properties block's entries.
pub fn properties(block: &[u8]) -> Result<Properties, BlockError> {
    let mut p = Properties::default();
    for e in entries(block, Values::Sized)? {
        let num = || Cursor::new(e.value).varint64();
        match e.key.as_slice() {
            b"rocksdb.num.data.blocks" => p.data_blocks = num(),
            b"rocksdb.num.entries" => p.entries = num(),
            b"rocksdb.index.key.is.user.key" => p.index_user_keys = num().is_some_and(|v| v != 0),
            b"rocksdb.index.value.is.delta.encoded" => {
                p.index_delta = num().is_some_and(|v| v != 0)
            }
            b"rocksdb.block.based.table.index.type" => p.index_type = fixed32(e.value, 0),
            b"dbfsck.salvaged" => p.salvaged = Some(String::from_utf8_lossy(e.value).into_owned()),
            b"rocksdb.column.family.name" => {
                p.cf_name = Some(String::from_utf8_lossy(e.value).into_owned());
            }
            _ => {}
        }
    }
    Ok(p)
}

/// The global sequence number property's value position in a properties block, for RocksDB's
/// quirk: ingestion rewrites those 8 bytes without rewriting the checksum.
pub fn global_seqno_value(block: &[u8]) -> Option<std::ops::Range<usize>> {
    let base = block.as_ptr() as usize;
    entries(block, Values::Sized)
        .ok()?
        .into_iter()
        .find(|e| e.key == b"rocksdb.external_sst_file.global_seqno" && e.value.len() == 8)
        .map(|e| {
            let at = e.value.as_ptr() as usize - base;
            at..at + 8
        })
}

/// Reads exactly `len` bytes at `offset` through `read`.
pub fn read_exact(
    source: &dyn crate::format::FileSource,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, BlockError> {
    if offset.checked_add(len).is_none_or(|e| e > source.len()) {
        return Err(BlockError::Outside);
    }
    let mut buf = vec![0u8; len as usize];
    let n = source
        .read_full_at(offset, &mut buf)
        .map_err(|e| BlockError::Io(e.to_string()))?;
    if n as u64 != len {
        return Err(BlockError::Outside);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_vectors_for_abc() {
        // The vectors are the stored u32 values, as formats-lsm.md §9 writes them.
        let v = |t, k| ChecksumType::compute(t, b"abc", k).to_be_bytes();
        assert_eq!(v(ChecksumType::Crc32c, 0), [0xbf, 0x1b, 0x54, 0x00]);
        assert_eq!(v(ChecksumType::Crc32c, 1), [0xbd, 0x22, 0x78, 0xd7]);
        assert_eq!(v(ChecksumType::XxHash, 0), [0x2c, 0x20, 0x20, 0xe2]);
        assert_eq!(v(ChecksumType::XxHash, 1), [0x49, 0x2a, 0xae, 0x5e]);
        assert_eq!(v(ChecksumType::XxHash64, 0), [0x9f, 0xa8, 0x5b, 0xff]);
        assert_eq!(v(ChecksumType::XxHash64, 1), [0x69, 0x7c, 0x07, 0xe2]);
        assert_eq!(v(ChecksumType::Xxh3, 0), [0x89, 0x2f, 0x39, 0x50]);
        assert_eq!(v(ChecksumType::Xxh3, 1), [0xe2, 0xbf, 0xba, 0x89]);
    }

    #[test]
    fn real_footers_decode() {
        let mut f = vec![0u8; 53];
        let bytes = [
            0x04, 0x85, 0xc6, 0xc2, 0x01, 0x23, 0xca, 0xc7, 0xc1, 0x01, 0xc7, 0x77,
        ];
        f[..bytes.len()].copy_from_slice(&bytes);
        f[41..45].copy_from_slice(&5u32.to_le_bytes());
        f[45..].copy_from_slice(&MAGIC.to_le_bytes());
        let ft = footer(&f, 3_187_554).unwrap();
        assert_eq!(ft.offset, 3_187_501);
        assert_eq!(ft.checksum, ChecksumType::Xxh3);
        assert_eq!(
            ft.metaindex,
            Handle {
                offset: 3_187_461,
                size: 35
            }
        );
        assert_eq!(
            ft.index,
            Handle {
                offset: 3_171_274,
                size: 15_303
            }
        );
        f[41..45].copy_from_slice(&6u32.to_le_bytes());
        assert!(footer(&f, 3_187_554).unwrap_err().is_unsupported());
        f[41..45].copy_from_slice(&1_953_068_142u32.to_le_bytes());
        assert_eq!(
            footer(&f, 3_187_554),
            Err(FooterError::BadVersion(1_953_068_142))
        );
        f[50] ^= 1;
        assert!(matches!(footer(&f, 3_187_554), Err(FooterError::Magic(_))));
    }

    #[test]
    fn block_entries_and_delta_index() {
        // Two index entries: a full handle, then (shared) a size delta of −1.
        let mut b = vec![0, 1, b'a', 0, 10];
        b.extend_from_slice(&[1, 1, b'b', 1]);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        let hs = index_handles(&b, true, false).unwrap();
        assert_eq!(
            hs[0].1,
            Handle {
                offset: 0,
                size: 10
            }
        );
        assert_eq!(
            hs[1],
            (
                b"ab".to_vec(),
                Handle {
                    offset: 15,
                    size: 9
                }
            )
        );
        assert!(entries(&b[..3], Values::Sized).is_err());
    }
}
