//! The log format LevelDB and RocksDB share for their WALs and MANIFESTs (docs/rocksdb.md §3):
//! 32 KiB blocks of physical records, each `checksum u32 (masked CRC-32C) | length u16 | type u8
//! [| log number u32, recyclable types]` and its payload, fragments (FULL, or FIRST MIDDLE* LAST)
//! reassembled into logical records.
//!
//! The reader follows the engines' readers: a record that fails drops the rest of its block
//! (its length is not trusted), fragments that lost their start are dropped with it, zero
//! padding (the block trailer, preallocated space) is skipped. What it reports is for the caller
//! to classify: a failure at the very end of the newest log with nothing valid after it is a
//! torn tail, anything else is damage.

use crate::lsm::{fixed32, fixed64};

/// The log's block size: a physical record never crosses a multiple of it.
pub const BLOCK: usize = 32 * 1024;
/// Header of a legacy record: checksum, length, type.
pub const HEADER: usize = 7;
/// Header of a recyclable record: also the low 32 bits of the log's file number.
pub const RECYCLABLE_HEADER: usize = 11;
/// `mask(crc) = rotr(crc, 15) + MASK_DELTA`, so that a CRC over bytes holding CRCs stays strong.
const MASK_DELTA: u32 = 0xA282_EAD8;

/// The masked form of a CRC-32C, as the engines store it.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// The CRC-32C a masked value stands for (what the engines' messages print).
pub fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// Which piece of a logical record a physical record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// The whole logical record.
    Full,
    /// Its first piece.
    First,
    /// A piece in the middle.
    Middle,
    /// Its last piece.
    Last,
}

/// Why a physical record (and the rest of its block) is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bad {
    /// The stored checksum (unmasked) differs from the computed one.
    Checksum {
        /// Unmasked stored value.
        stored: u32,
        /// Computed CRC-32C.
        computed: u32,
    },
    /// The length runs past the end of the block, not at the end of the file.
    Length(u16),
    /// The file ends inside a record's header.
    CutHeader,
    /// The file ends inside a record's payload.
    CutBody,
    /// A record type neither engine writes.
    UnknownType(u8),
    /// The bytes after the last record of a block (fewer than a header) are not zero.
    Trailer,
    /// A zero header (preallocated space) followed by bytes that are not zero in its block:
    /// the engines skip the rest of the block without a word.
    ZeroThenData,
}

impl Bad {
    /// One phrase for the operator.
    pub fn describe(&self) -> String {
        match self {
            Bad::Checksum { stored, computed } => format!(
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}, unmasked as the engines print them)"
            ),
            Bad::Length(n) => format!("bad record length: {n} bytes run past the end of the 32 KiB block"),
            Bad::CutHeader => "the file ends inside a record header".into(),
            Bad::CutBody => "the file ends inside a record's payload".into(),
            Bad::UnknownType(t) => format!("unknown record type {t}"),
            Bad::Trailer => "the block trailer after the last record is not zero".into(),
            Bad::ZeroThenData => "a zero header (preallocated space) is followed by data in its block, which the engines skip silently".into(),
        }
    }

    /// Whether the failure is the file ending mid-record (what a crash during an append leaves).
    pub fn is_cut(&self) -> bool {
        matches!(self, Bad::CutHeader | Bad::CutBody)
    }
}

/// What the reader met, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete logical record: `[start, end)` spans its fragments; `payload` holds its first
    /// `keep` bytes (the reader's limit) and `len` is its full length.
    Record {
        /// Offset of its first fragment's header.
        start: u64,
        /// End of its last fragment.
        end: u64,
        /// Its first bytes (all of them up to the reader's limit).
        payload: Vec<u8>,
        /// Its full length.
        len: u64,
    },
    /// A physical record that fails, and the rest of its block, dropped: `[start, end)`.
    Bad {
        /// Offset of the failing header.
        start: u64,
        /// Where reading resumes (the next block, or the end of the file).
        end: u64,
        /// Why.
        why: Bad,
    },
    /// Fragments of a logical record whose other fragments are missing (its start was dropped
    /// with a failing record, or a new record began before it ended): `[start, end)`.
    Orphan {
        /// Offset of the first such fragment.
        start: u64,
        /// End of the last.
        end: u64,
    },
    /// A recyclable record carrying another log's number: the tail of the file this log
    /// reuses, where the engine's reader stops (RocksDB's `kOldRecord`).
    Recycled {
        /// Offset of the old record.
        start: u64,
        /// The log number it carries.
        number: u32,
    },
    /// The log's compression record (RocksDB `wal_compression`): later payloads are streamed
    /// compressed, so their contents are not parsed.
    Compression {
        /// Its offset.
        start: u64,
        /// The compression type.
        codec: u32,
    },
    /// All zero from a zero header to the end of its block: preallocated space at the end of a
    /// log, but where valid records follow, written data that was zeroed (the engines skip it
    /// without a word). The caller tells the two apart.
    Zeros {
        /// Offset of the zero header.
        start: u64,
        /// End of the block.
        end: u64,
    },
    /// A fragmented record still open at the end of the file: the writer died inside it.
    Unfinished {
        /// Offset of its first fragment.
        start: u64,
        /// End of its last fragment.
        end: u64,
    },
}

/// Reads a whole log, in order, and hands each [`Event`] to `f`. `number` is the log's file
/// number (recyclable records carry its low 32 bits); `keep` caps the payload bytes kept per
/// record (a WAL's batch header needs 12, a MANIFEST's edits all).
pub fn read(bytes: &[u8], number: Option<u64>, keep: usize, mut f: impl FnMut(Event)) {
    let mut open: Option<(u64, u64, Vec<u8>, u64)> = None; // start, end, payload, len
    let mut orphan: Option<(u64, u64)> = None;
    let flush_orphan = |orphan: &mut Option<(u64, u64)>, f: &mut dyn FnMut(Event)| {
        if let Some((start, end)) = orphan.take() {
            f(Event::Orphan { start, end });
        }
    };
    let total = bytes.len() as u64;
    for (b, block) in bytes.chunks(BLOCK).enumerate() {
        let base = (b * BLOCK) as u64;
        let last = base + block.len() as u64 == total;
        let mut p = 0usize;
        let mut failed = None;
        while p < block.len() {
            let at = base + p as u64;
            let rest = block.get(p..).unwrap_or_default();
            if rest.len() < HEADER {
                if !crate::all_zero(rest) {
                    let why = if last && block.len() < BLOCK {
                        Bad::CutHeader
                    } else {
                        Bad::Trailer
                    };
                    failed = Some((at, why));
                }
                break;
            }
            let stored = fixed32(rest, 0);
            let length = u16::from_le_bytes([
                rest.get(4).copied().unwrap_or(0),
                rest.get(5).copied().unwrap_or(0),
            ]);
            let kind = rest.get(6).copied().unwrap_or(0);
            if kind == 0 && length == 0 {
                // Preallocated or mmap-extended space: both readers drop the rest of the block
                // (and a fragmented record open across it: "error in middle of record").
                if !crate::all_zero(rest) {
                    failed = Some((at, Bad::ZeroThenData));
                } else {
                    flush_orphan(&mut orphan, &mut f);
                    if let Some((s, e, ..)) = open.take() {
                        f(Event::Orphan { start: s, end: e });
                    }
                    f(Event::Zeros {
                        start: at,
                        end: base + block.len() as u64,
                    });
                }
                break;
            }
            let header = if matches!(kind, 5..=8 | 11 | 131) {
                RECYCLABLE_HEADER
            } else {
                HEADER
            };
            if rest.len() < header {
                let why = if last && block.len() < BLOCK {
                    Bad::CutHeader
                } else {
                    Bad::Length(length)
                };
                failed = Some((at, why));
                break;
            }
            let Some(record) = rest.get(..header + usize::from(length)) else {
                let why = if last && block.len() < BLOCK {
                    Bad::CutBody
                } else {
                    Bad::Length(length)
                };
                failed = Some((at, why));
                break;
            };
            let computed = crc32c::crc32c(record.get(6..).unwrap_or_default());
            if unmask(stored) != computed {
                failed = Some((
                    at,
                    Bad::Checksum {
                        stored: unmask(stored),
                        computed,
                    },
                ));
                break;
            }
            let payload = record.get(header..).unwrap_or_default();
            let end = at + record.len() as u64;
            p += record.len();
            if header == RECYCLABLE_HEADER {
                let carried = fixed32(record, 7);
                if number.is_some_and(|n| n as u32 != carried) {
                    flush_orphan(&mut orphan, &mut f);
                    if let Some((start, end, ..)) = open.take() {
                        f(Event::Unfinished { start, end });
                    }
                    f(Event::Recycled {
                        start: at,
                        number: carried,
                    });
                    return;
                }
            }
            let frag = match kind {
                1 | 5 => Frag::Full,
                2 | 6 => Frag::First,
                3 | 7 => Frag::Middle,
                4 | 8 => Frag::Last,
                9 => {
                    f(Event::Compression {
                        start: at,
                        codec: fixed32(payload, 0),
                    });
                    continue;
                }
                // RocksDB's metadata records (timestamp sizes, predecessor WAL) and, from
                // RocksDB 9 on, any type with bit 7 set: safe to ignore.
                10 | 11 | 128.. => continue,
                t => {
                    failed = Some((at, Bad::UnknownType(t)));
                    break;
                }
            };
            let take = |buf: &mut Vec<u8>| {
                let room = keep.saturating_sub(buf.len());
                buf.extend_from_slice(payload.get(..room.min(payload.len())).unwrap_or_default());
            };
            match frag {
                Frag::Full | Frag::First => {
                    flush_orphan(&mut orphan, &mut f);
                    if let Some((start, end, ..)) = open.take() {
                        // "partial record without end": a new record began before it ended.
                        f(Event::Orphan { start, end });
                    }
                    let mut buf = Vec::new();
                    take(&mut buf);
                    if frag == Frag::Full {
                        f(Event::Record {
                            start: at,
                            end,
                            payload: buf,
                            len: payload.len() as u64,
                        });
                    } else {
                        open = Some((at, end, buf, payload.len() as u64));
                    }
                }
                Frag::Middle | Frag::Last => match open.as_mut() {
                    Some((_, e, buf, len)) => {
                        *e = end;
                        *len += payload.len() as u64;
                        take(buf);
                        if frag == Frag::Last {
                            if let Some((start, end, payload, len)) = open.take() {
                                f(Event::Record {
                                    start,
                                    end,
                                    payload,
                                    len,
                                });
                            }
                        }
                    }
                    None => match orphan.as_mut() {
                        Some((_, e)) => *e = end,
                        None => orphan = Some((at, end)),
                    },
                },
            }
        }
        if let Some((start, why)) = failed {
            // What was open of a fragmented record is lost with the failing record.
            flush_orphan(&mut orphan, &mut f);
            if let Some((s, e, ..)) = open.take() {
                f(Event::Orphan { start: s, end: e });
            }
            f(Event::Bad {
                start,
                end: base + block.len() as u64,
                why,
            });
        }
    }
    flush_orphan(&mut orphan, &mut f);
    if let Some((start, end, ..)) = open.take() {
        f(Event::Unfinished { start, end });
    }
}

/// A WriteBatch's header: its first sequence number and how many entries it holds.
pub fn batch_header(payload: &[u8]) -> Option<(u64, u32)> {
    (payload.len() >= 12).then(|| (fixed64(payload, 0), fixed32(payload, 8)))
}

/// Builds one log from logical records, as the engines' writers do (tests, fuzz seeds, repair).
pub fn write(records: &[&[u8]]) -> Vec<u8> {
    append(0, records)
}

/// The bytes that append `records` to a log now `len` bytes long, as the engines' writers
/// append them: the block's trailer padded first when it has no room for a header.
pub fn append(len: u64, records: &[&[u8]]) -> Vec<u8> {
    // Built as if the log's last block were this buffer's first, then that part dropped.
    let skip = (len % BLOCK as u64) as usize;
    let mut out = vec![0u8; skip];
    for rec in records {
        let mut rest: &[u8] = rec;
        let mut first = true;
        loop {
            let left = BLOCK - out.len() % BLOCK;
            if left < HEADER {
                out.resize(out.len() + left, 0);
                continue;
            }
            let room = left - HEADER;
            let n = rest.len().min(room);
            let (piece, tail) = rest.split_at(n);
            let kind: u8 = match (first, tail.is_empty()) {
                (true, true) => 1,
                (true, false) => 2,
                (false, false) => 3,
                (false, true) => 4,
            };
            let mut covered = vec![kind];
            covered.extend_from_slice(piece);
            out.extend_from_slice(&mask(crc32c::crc32c(&covered)).to_le_bytes());
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.push(kind);
            out.extend_from_slice(piece);
            rest = tail;
            first = false;
            if rest.is_empty() {
                break;
            }
        }
    }
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<Event> {
        let mut v = Vec::new();
        read(bytes, None, usize::MAX, |e| v.push(e));
        v
    }

    #[test]
    fn mask_vectors() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(mask(0xE306_9283), 0xC78A_B0E5);
        assert_eq!(unmask(0xC78A_B0E5), 0xE306_9283);
        assert_eq!(mask(0), 0xA282_EAD8);
    }

    #[test]
    fn full_record_vector() {
        let log = write(&[b"hello"]);
        assert_eq!(&log[..7], &[0x0b, 0xb9, 0x57, 0x58, 0x05, 0x00, 0x01]);
        assert_eq!(
            events(&log),
            vec![Event::Record {
                start: 0,
                end: 12,
                payload: b"hello".to_vec(),
                len: 5
            }]
        );
    }

    #[test]
    fn recyclable_vector_and_old_record() {
        let mut rec = vec![0xe3, 0x11, 0xd7, 0x9c, 0x05, 0x00, 0x05, 0x07, 0, 0, 0];
        rec.extend_from_slice(b"hello");
        let mut v = Vec::new();
        read(&rec, Some(7), usize::MAX, |e| v.push(e));
        assert!(matches!(&v[..], [Event::Record { len: 5, .. }]), "{v:?}");
        let mut v = Vec::new();
        read(&rec, Some(8), usize::MAX, |e| v.push(e));
        assert_eq!(
            v,
            vec![Event::Recycled {
                start: 0,
                number: 7
            }]
        );
    }

    #[test]
    fn fragments_across_blocks_reassemble() {
        let big = vec![7u8; 100_000];
        let log = write(&[b"a", &big, b"b"]);
        let ev = events(&log);
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(matches!(&ev[1], Event::Record { len: 100_000, payload, .. } if payload == &big));
    }

    #[test]
    fn checksum_failure_drops_rest_of_block_and_orphans() {
        let big = vec![7u8; 40_000];
        let mut log = write(&[b"first", &big, b"after"]);
        log[12 + 7 + 3] ^= 1; // inside the FIRST fragment of the big record
        let ev = events(&log);
        assert!(matches!(ev[0], Event::Record { start: 0, .. }));
        assert!(
            matches!(
                ev[1],
                Event::Bad {
                    start: 12,
                    end: 32768,
                    why: Bad::Checksum { .. }
                }
            ),
            "{ev:?}"
        );
        assert!(
            matches!(ev[2], Event::Orphan { start: 32768, .. }),
            "{ev:?}"
        );
        assert!(matches!(ev[3], Event::Record { len: 5, .. }), "{ev:?}");
    }

    #[test]
    fn cut_tail_and_zero_padding() {
        let log = write(&[b"one", b"two"]);
        let cut = &log[..log.len() - 1];
        let ev = events(cut);
        assert!(
            matches!(
                ev[1],
                Event::Bad {
                    why: Bad::CutBody,
                    ..
                }
            ),
            "{ev:?}"
        );
        let cut = &log[..log.len() - 8];
        let ev = events(cut);
        assert!(
            matches!(
                ev[1],
                Event::Bad {
                    why: Bad::CutHeader,
                    ..
                }
            ),
            "{ev:?}"
        );
        // Zero padding is one `Zeros` event after the records (the caller tells preallocated
        // space at the end from zeroed data before valid records).
        let mut padded = log.clone();
        padded.extend_from_slice(&[0; 100]);
        let ev = events(&padded);
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert!(matches!(ev[2], Event::Zeros { start: 20, .. }), "{ev:?}");
        // Garbage whose length runs past the end reads as a cut body, as the engines read it…
        let mut junk = log.clone();
        junk.extend_from_slice(&[0x55; 100]);
        let ev = events(&junk);
        assert!(
            matches!(
                ev[2],
                Event::Bad {
                    why: Bad::CutBody,
                    ..
                }
            ),
            "{ev:?}"
        );
        // …and garbage whose length fits, as a checksum mismatch (formats-lsm.md §6.3, W5).
        let mut junk = log.clone();
        junk.extend_from_slice(&[0x55, 0x55, 0x55, 0x55, 10, 0, 1]);
        junk.extend_from_slice(&[0x55; 93]);
        let ev = events(&junk);
        assert!(
            matches!(
                ev[2],
                Event::Bad {
                    why: Bad::Checksum { .. },
                    ..
                }
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn writer_pads_trailers_and_batch_header_parses() {
        let fill = vec![1u8; BLOCK - 7 - 7 - 3];
        let log = write(&[&fill, b"xyz"]);
        assert_eq!(events(&log).len(), 2);
        let batch = [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, b'k', 1, b'v'];
        let log = write(&[&batch]);
        assert_eq!(&log[..7], &[0xe7, 0x5a, 0x4d, 0x00, 0x11, 0x00, 0x01]);
        assert_eq!(batch_header(&batch), Some((1, 1)));
    }
}
