//! The bounds of MariaDB's redo log (`ib_logfile0`, the 10.8+ format): the latest checkpoint
//! LSN and the LSN where the log ends. A doublewrite slot is a source for a repair only when its
//! LSN lies between them (`docs/innodb.md` §7): older, the redo log no longer holds what came
//! after it (`buf_dblwr_t::recover()` ignores such a slot too); newer, it is not this server's.
//!
//! Layout (`log0log.h`, `log0recv.cc`; `docs/innodb.md` §7): a 512-byte header (format
//! `0x50687973` at 0, zero at 4, first LSN at 8, creator at 16, encryption info at 48, CRC-32C
//! at 508); checkpoint blocks at 4096 and 8192 (checkpoint LSN, end LSN, 44 zero bytes, CRC-32C
//! of the 60 bytes before it); then, from offset 12288, a ring of mini-transactions. Each is a
//! sequence of records (a first byte whose low 4 bits are the length after it, or 0 for a
//! variable-length length + 15), a termination byte equal to the "sequence bit" of its LSN (it
//! flips at every wrap of the ring, so a stale mini-transaction from the previous pass ends the
//! log), and the CRC-32C of the records. All fields are big-endian.

use crate::format::FileSource;

/// The 10.8+ redo log format identifier ("Phys").
pub const FORMAT_10_8: u32 = 0x5068_7973;
/// The offset of the first checkpoint block; the second is at twice it.
pub const CHECKPOINT_1: u64 = 4096;
/// Where the ring of mini-transactions starts.
pub const START_OFFSET: u64 = 12288;
/// The largest mini-transaction the server writes.
const MTR_SIZE_MAX: u64 = 1 << 20;

/// What the redo log says about the LSNs a page image may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedoBounds {
    /// The latest valid checkpoint: recovery replays the log from here.
    pub checkpoint_lsn: u64,
    /// The end of the last complete mini-transaction: no page can be newer.
    pub end_lsn: u64,
}

/// Why the redo log's bounds cannot be known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedoError {
    /// The log file could not be read.
    #[error("it cannot be read: {0}")]
    Io(String),
    /// The file is shorter than its header, checkpoints and one record.
    #[error("it is {} long, too short for a redo log", crate::bytes(*.0))]
    TooShort(u64),
    /// Another format (MariaDB before 10.8, MySQL), which this reader does not parse.
    #[error("its format 0x{0:08x} is not MariaDB 10.8+'s (0x50687973); older logs are not read")]
    Format(u32),
    /// The header fails its checksum or its fields are inconsistent.
    #[error("its header is damaged ({0})")]
    Header(&'static str),
    /// The log is encrypted (`innodb_encrypt_log`): its records are not read.
    #[error("it is encrypted (innodb_encrypt_log): its records are not read")]
    Encrypted,
    /// Neither checkpoint block is valid.
    #[error("neither checkpoint block verifies")]
    NoCheckpoint,
}

fn be32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn be64(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Reads the header and checkpoints of a redo log, then walks the mini-transactions after the
/// checkpoint to find where the log ends.
pub fn read_bounds(log: &dyn FileSource) -> Result<RedoBounds, RedoError> {
    let len = log.len();
    let head = read_head(log)?;
    if len < START_OFFSET + 16 {
        return Err(RedoError::TooShort(len));
    }
    let ring = Ring {
        log,
        first_lsn: head.first_lsn,
        capacity: len - START_OFFSET,
        cache: std::cell::RefCell::new((u64::MAX, Vec::new())),
    };
    let end = ring.walk(head.checkpoint_lsn);
    Ok(RedoBounds {
        checkpoint_lsn: head.checkpoint_lsn,
        end_lsn: end.max(head.checkpoint_end),
    })
}

/// Reads only the header and the latest valid checkpoint: the LSN up to which every page the
/// server modified has been written to its file (a checkpoint is written only after that).
pub fn read_checkpoint(log: &dyn FileSource) -> Result<u64, RedoError> {
    read_head(log).map(|h| h.checkpoint_lsn)
}

/// What the first [`START_OFFSET`] bytes of a redo log say.
struct Head {
    first_lsn: u64,
    checkpoint_lsn: u64,
    /// The end LSN the checkpoint block records.
    checkpoint_end: u64,
}

fn read_head(log: &dyn FileSource) -> Result<Head, RedoError> {
    let mut head = vec![0u8; START_OFFSET as usize];
    let n = log
        .read_full_at(0, &mut head)
        .map_err(|e| RedoError::Io(e.to_string()))?;
    if n < head.len() {
        return Err(RedoError::TooShort(n as u64));
    }
    let format = be32(&head, 0);
    if format & 0x7fff_ffff != FORMAT_10_8 {
        return Err(RedoError::Format(format));
    }
    let header = head.get(..512).unwrap_or_default();
    if crc32c::crc32c(header.get(..508).unwrap_or_default()) != be32(header, 508) {
        return Err(RedoError::Header("its CRC-32C does not match"));
    }
    let first_lsn = be64(header, 8);
    if be32(header, 4) != 0 || first_lsn < START_OFFSET {
        return Err(RedoError::Header(
            "its first LSN or reserved field is invalid",
        ));
    }
    if format & 0x8000_0000 != 0 || be32(header, 48) != 0 {
        return Err(RedoError::Encrypted);
    }
    let mut best: Option<(u64, u64)> = None;
    for field in [CHECKPOINT_1, 2 * CHECKPOINT_1] {
        let b = head
            .get(field as usize..field as usize + 64)
            .unwrap_or_default();
        let (checkpoint, end) = (be64(b, 0), be64(b, 8));
        let valid = checkpoint >= first_lsn
            && end >= checkpoint
            && b.get(16..60).is_some_and(|z| z.iter().all(|&x| x == 0))
            && crc32c::crc32c(b.get(..60).unwrap_or_default()) == be32(b, 60);
        if valid && best.is_none_or(|(c, _)| checkpoint >= c) {
            best = Some((checkpoint, end));
        }
    }
    let (checkpoint_lsn, checkpoint_end) = best.ok_or(RedoError::NoCheckpoint)?;
    Ok(Head {
        first_lsn,
        checkpoint_lsn,
        checkpoint_end,
    })
}

/// The ring of mini-transactions, read through a small cache of 1 MiB windows.
struct Ring<'a> {
    log: &'a dyn FileSource,
    first_lsn: u64,
    capacity: u64,
    cache: std::cell::RefCell<(u64, Vec<u8>)>,
}

const WINDOW: u64 = 1 << 20;

impl Ring<'_> {
    fn offset(&self, lsn: u64) -> u64 {
        START_OFFSET + (lsn - self.first_lsn) % self.capacity
    }

    /// The termination byte a mini-transaction ending at `lsn` carries in this pass.
    fn sequence_bit(&self, lsn: u64) -> u8 {
        u8::from(((lsn - self.first_lsn) / self.capacity) & 1 == 0)
    }

    fn byte(&self, lsn: u64) -> Option<u8> {
        let off = self.offset(lsn);
        let base = off - off % WINDOW;
        let mut cache = self.cache.borrow_mut();
        if cache.0 != base {
            let want = WINDOW.min(self.log.len().saturating_sub(base)) as usize;
            let mut buf = vec![0u8; want];
            let n = self.log.read_full_at(base, &mut buf).ok()?;
            buf.truncate(n);
            *cache = (base, buf);
        }
        cache.1.get((off - base) as usize).copied()
    }

    /// `n` bytes from `lsn`, in at most two reads (the ring may wrap inside them).
    fn bytes(&self, lsn: u64, n: u64) -> Option<Vec<u8>> {
        let mut out = vec![0u8; n as usize];
        let off = self.offset(lsn);
        let first = n.min(START_OFFSET + self.capacity - off) as usize;
        let (a, b) = out.split_at_mut(first);
        let got = self.log.read_full_at(off, a).ok()?;
        let got2 = if b.is_empty() {
            0
        } else {
            self.log.read_full_at(START_OFFSET, b).ok()?
        };
        (got + got2 == n as usize).then_some(out)
    }

    /// A variable-length integer (`mlog_decode_varint`) at `lsn`: its value and length.
    fn varint(&self, lsn: u64) -> Option<(u64, u64)> {
        let b = u64::from(self.byte(lsn)?);
        let (len, base, mask) = match b {
            0..=0x7f => return Some((b, 1)),
            0x80..=0xbf => (2, 0x80, 0x3f),
            0xc0..=0xdf => (3, 0x4080, 0x1f),
            0xe0..=0xef => (4, 0x20_4080, 0x0f),
            0xf0..=0xf7 => (5, 0x1020_4080, 0x00),
            _ => return None,
        };
        let mut v = b & mask;
        for i in 1..len {
            v = (v << 8) | u64::from(self.byte(lsn + i)?);
        }
        Some((v + base, len))
    }

    /// Follows complete mini-transactions from `lsn` (a mini-transaction boundary) and returns
    /// the LSN after the last one: where recovery would stop.
    fn walk(&self, mut lsn: u64) -> u64 {
        let limit = lsn + self.capacity;
        while lsn < limit {
            match self.mtr_end(lsn) {
                Some(next) => lsn = next,
                None => break,
            }
        }
        lsn
    }

    /// The LSN after the mini-transaction starting at `start`, if it is complete and verifies.
    fn mtr_end(&self, start: u64) -> Option<u64> {
        let mut p = start;
        loop {
            let b = self.byte(p)?;
            if b <= 1 {
                break;
            }
            let mut rlen = u64::from(b & 0xf);
            p += 1;
            if rlen == 0 {
                rlen = self.varint(p)?.0 + 15;
            }
            p += rlen;
            if p - start > MTR_SIZE_MAX {
                return None;
            }
        }
        if p == start || self.byte(p)? != self.sequence_bit(p) {
            return None;
        }
        let records = self.bytes(start, p - start)?;
        let stored = self.bytes(p + 1, 4)?;
        (crc32c::crc32c(&records) == be32(&stored, 0)).then_some(p + 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::BytesSource;

    /// A log with its header, one checkpoint block at `checkpoint`, and `mtrs` written from
    /// the checkpoint on (each a list of records' payloads after their first byte).
    pub(crate) fn log(capacity: usize, checkpoint: u64, mtrs: &[Vec<u8>]) -> Vec<u8> {
        let first = START_OFFSET;
        let mut f = vec![0u8; START_OFFSET as usize + capacity];
        f[..4].copy_from_slice(&FORMAT_10_8.to_be_bytes());
        f[8..16].copy_from_slice(&first.to_be_bytes());
        f[16..30].copy_from_slice(b"MariaDB 10.11 ");
        let crc = crc32c::crc32c(&f[..508]);
        f[508..512].copy_from_slice(&crc.to_be_bytes());
        let c = CHECKPOINT_1 as usize;
        f[c..c + 8].copy_from_slice(&checkpoint.to_be_bytes());
        f[c + 8..c + 16].copy_from_slice(&checkpoint.to_be_bytes());
        let crc = crc32c::crc32c(&f[c..c + 60]);
        f[c + 60..c + 64].copy_from_slice(&crc.to_be_bytes());
        let mut lsn = checkpoint;
        for m in mtrs {
            let mut bytes = m.clone();
            let marker_lsn = lsn + bytes.len() as u64;
            let seq = u8::from(((marker_lsn - first) / capacity as u64) & 1 == 0);
            let crc = crc32c::crc32c(&bytes);
            bytes.push(seq);
            bytes.extend_from_slice(&crc.to_be_bytes());
            for b in bytes {
                let off = START_OFFSET + (lsn - first) % capacity as u64;
                f[off as usize] = b;
                lsn += 1;
            }
        }
        f
    }

    fn record(len: usize) -> Vec<u8> {
        // A WRITE record (0x30) of `len` bytes after its first byte.
        if len <= 15 {
            let mut r = vec![0x30 | len as u8];
            r.extend(std::iter::repeat_n(0x55, len));
            r
        } else {
            // Length 0 in the first byte: a varint of len - 15 follows, counted in len.
            let add = len - 15;
            assert!(add < 0x80);
            let mut r = vec![0x30, add as u8];
            r.extend(std::iter::repeat_n(0x66, len - 1));
            r
        }
    }

    #[test]
    fn the_end_is_after_the_last_complete_mini_transaction() {
        let mtrs = vec![record(10), [record(3), record(40)].concat(), record(7)];
        let f = log(1 << 16, 20_000, &mtrs);
        let b = read_bounds(&BytesSource(&f)).unwrap();
        let total: usize = mtrs.iter().map(|m| m.len() + 5).sum();
        assert_eq!(b.checkpoint_lsn, 20_000);
        assert_eq!(b.end_lsn, 20_000 + total as u64);
    }

    #[test]
    fn a_damaged_mini_transaction_ends_the_log() {
        let mtrs = vec![record(10), record(12), record(9)];
        let mut f = log(1 << 16, 20_000, &mtrs);
        // Flip a byte inside the second mini-transaction's payload.
        let off = START_OFFSET as usize + (20_000 - START_OFFSET as usize) + 16 + 5;
        f[off] ^= 0xff;
        let b = read_bounds(&BytesSource(&f)).unwrap();
        assert_eq!(b.end_lsn, 20_000 + 16);
    }

    #[test]
    fn a_wrapped_log_reads_across_the_ring_and_stops_at_the_previous_pass() {
        // Capacity 4096: the checkpoint near the end of the second pass, records wrapping.
        let cap = 4096u64;
        let checkpoint = START_OFFSET + cap + cap - 20;
        let mtrs = vec![record(10), record(30), record(15)];
        let f = log(cap as usize, checkpoint, &mtrs);
        let b = read_bounds(&BytesSource(&f)).unwrap();
        let total: u64 = mtrs.iter().map(|m| m.len() as u64 + 5).sum();
        assert_eq!(b.end_lsn, checkpoint + total);
    }

    #[test]
    fn damaged_or_foreign_headers_are_errors() {
        let f = log(1 << 16, 20_000, &[record(4)]);
        let mut bad = f.clone();
        bad[9] ^= 1;
        assert!(matches!(
            read_bounds(&BytesSource(&bad)),
            Err(RedoError::Header(_))
        ));
        let mut old = f.clone();
        old[..4].copy_from_slice(&0x5048_5953u32.to_be_bytes());
        assert!(matches!(
            read_bounds(&BytesSource(&old)),
            Err(RedoError::Format(_))
        ));
        let mut nocp = f.clone();
        nocp[CHECKPOINT_1 as usize] ^= 1;
        assert_eq!(
            read_bounds(&BytesSource(&nocp)),
            Err(RedoError::NoCheckpoint)
        );
        assert!(matches!(
            read_bounds(&BytesSource(&f[..100])),
            Err(RedoError::TooShort(_))
        ));
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut f = log(8192, 20_000, &[record(4)]);
        for (i, b) in f.iter_mut().enumerate().skip(START_OFFSET as usize) {
            *b = (i * 7 + 3) as u8;
        }
        let _ = read_bounds(&BytesSource(&f));
    }
}
