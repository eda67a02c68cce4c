//! RocksDB's integrated blob files (`NNNNNN.blob`; docs/rocksdb.md §3b, formats-lsm.md §5): a
//! 30-byte header, records back to back — each with a masked CRC-32C over its 24-byte header and
//! another over its key and (as stored) value — and, once the file was closed, a 32-byte footer
//! with its own CRC and the record count.
//!
//! A record whose header fails ends what can be read (its lengths are not trusted: nothing after
//! it can be found); a record whose blob fails is reported with its key and the reading goes on.

use crate::finding::{Finding, FindingKind, Owner};
use crate::format::{Chunk, Layout, UnitCheck};
use crate::lsm::log::unmask;
use crate::lsm::{fixed32, fixed64, key_json};

/// The header's (and footer's) magic.
pub const MAGIC: u32 = 0x0024_8F37;
/// Header bytes.
pub const HEADER: usize = 30;
/// Bytes of a record's header.
pub const RECORD_HEADER: usize = 32;
/// Footer bytes.
pub const FOOTER: usize = 32;

/// What the directory says about a blob file.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlobLive {
    /// Its number.
    pub number: u64,
    /// Whether the MANIFEST lists it as live (a live blob file was closed: it has its footer).
    pub live: bool,
    /// The blob count the MANIFEST records.
    pub count: Option<u64>,
}

/// Checks a blob file read whole (one chunk).
pub struct BlobCheck {
    len: u64,
    live: BlobLive,
}

impl BlobCheck {
    /// A check of a blob file `len` bytes long.
    pub fn new(len: u64, live: BlobLive) -> Self {
        BlobCheck { len, live }
    }
}

fn crc_ok(stored: u32, bytes: &[u8]) -> Result<(), (u32, u32)> {
    let computed = crc32c::crc32c(bytes);
    if unmask(stored) == computed {
        Ok(())
    } else {
        Err((unmask(stored), computed))
    }
}

impl UnitCheck for BlobCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.len,
            align: self.len.max(1),
        }
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let b = chunk.bytes;
        let mut owner = Owner::new();
        owner.insert("blob_file".into(), self.live.number.into());
        let find = |kind, offset: usize, length: usize, detail: String| {
            Finding::new(kind, offset as u64, length as u64, detail).owner(owner.clone())
        };
        if b.len() < HEADER || fixed32(b, 0) != MAGIC || fixed32(b, 4) != 1 {
            out.push(find(
                if b.len() < HEADER { FindingKind::Truncated } else { FindingKind::BadHeader },
                0,
                b.len().min(HEADER),
                "the blob file's header is not RocksDB's (magic 0x00248f37, version 1): its records cannot be read".into(),
            ));
            return 0;
        }
        // The footer, when the file was closed: its magic at `len - 32`.
        let footer_at = b
            .len()
            .checked_sub(FOOTER)
            .filter(|&f| f >= HEADER && fixed32(b, f) == MAGIC);
        let mut p = HEADER;
        let end = footer_at.unwrap_or(b.len());
        let mut records = 0u64;
        while p < end {
            let Some(h) = b
                .get(p..p + RECORD_HEADER)
                .filter(|_| p + RECORD_HEADER <= end)
            else {
                out.push(find(
                    FindingKind::Truncated,
                    p,
                    end - p,
                    format!(
                        "the blob file ends inside a record header ({})",
                        crate::bytes((end - p) as u64)
                    ),
                ));
                break;
            };
            if let Err((s, c)) = crc_ok(fixed32(h, 24), h.get(..24).unwrap_or_default()) {
                out.push(
                    find(FindingKind::ChecksumMismatch, p, end - p, format!("record {records}'s header fails its CRC-32C: its lengths are not trusted, so the {} after it cannot be read", crate::bytes((end - p) as u64)))
                        .checksums(format!("{s:#010x}"), format!("{c:#010x}")),
                );
                break;
            }
            let (klen, vlen) = (fixed64(h, 0), fixed64(h, 8));
            let body = klen.checked_add(vlen).and_then(|n| usize::try_from(n).ok());
            let Some(kv) = body
                .and_then(|n| b.get(p + RECORD_HEADER..(p + RECORD_HEADER).checked_add(n)?))
                .filter(|kv| p + RECORD_HEADER + kv.len() <= end)
            else {
                out.push(find(
                    FindingKind::Truncated,
                    p,
                    end - p,
                    format!("record {records} runs past the end of the blob records"),
                ));
                break;
            };
            if let Err((s, c)) = crc_ok(fixed32(h, 28), kv) {
                let mut o = owner.clone();
                let mut key = serde_json::Map::new();
                key_json(&mut key, "key", kv.get(..klen as usize).unwrap_or_default());
                o.insert("record".into(), records.into());
                o.extend(key);
                out.push(
                    Finding::new(FindingKind::ChecksumMismatch, p as u64, (RECORD_HEADER + kv.len()) as u64, format!("blob record {records} fails its CRC-32C: the value of key {} is unreadable", crate::lsm::printable(kv.get(..klen as usize).unwrap_or_default())))
                        .unit(records)
                        .checksums(format!("{s:#010x}"), format!("{c:#010x}"))
                        .owner(o),
                );
            }
            records += 1;
            p += RECORD_HEADER + kv.len();
        }
        match footer_at {
            Some(f) => {
                let foot = b.get(f..).unwrap_or_default();
                if let Err((s, c)) = crc_ok(fixed32(foot, 28), foot.get(..28).unwrap_or_default()) {
                    out.push(find(FindingKind::ChecksumMismatch, f, FOOTER, "the blob file's footer fails its CRC-32C".into()).checksums(format!("{s:#010x}"), format!("{c:#010x}")));
                } else if fixed64(foot, 4) != records && p == end {
                    out.push(find(FindingKind::BadHeader, f, FOOTER, format!("the footer counts {} blobs, the file holds {records}", fixed64(foot, 4))));
                }
            }
            None if self.live.live => out.push(find(FindingKind::Truncated, b.len(), 0, "the blob file has no footer, though the MANIFEST lists it as live (a live blob file was closed): it was cut".into())),
            None => {}
        }
        if let (Some(n), true) = (self.live.count, p == end && footer_at.is_some()) {
            if n != records {
                out.push(find(
                    FindingKind::BadHeader,
                    0,
                    HEADER,
                    format!("the MANIFEST records {n} blobs in this file, it holds {records}"),
                ));
            }
        }
        records.max(1)
    }
}
