//! An SQLite `-wal` file read as `walIndexRecover()` reads it (`docs/sqlite.md` §4): the
//! header, the cumulative checksum chain frame by frame, the last commit, and the newest
//! committed frame of each page — and what SQLite would silently drop.

use std::collections::HashMap;

use super::page::be32;
use crate::finding::{Finding, FindingKind, Owner};
use crate::format::FileSource;

/// WAL magic, checksums over little-endian words.
pub(crate) const MAGIC_LE: u32 = 0x377f_0682;
/// WAL magic, checksums over big-endian words.
pub(crate) const MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version.
pub(crate) const VERSION: u32 = 3_007_000;
/// Header bytes.
pub(crate) const HEADER: u64 = 32;
/// Frame header bytes.
pub(crate) const FRAME_HEADER: u64 = 24;

/// The WAL checksum recurrence (`walChecksumBytes()`) over `data` (a multiple of 8 bytes).
pub(crate) fn sum(data: &[u8], seed: (u32, u32), big_endian: bool) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    let word = |b: &[u8]| {
        let w: [u8; 4] = b.try_into().unwrap_or([0; 4]);
        if big_endian {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    for pair in data.chunks_exact(8) {
        let (a, b) = pair.split_at(4);
        s0 = s0.wrapping_add(word(a)).wrapping_add(s1);
        s1 = s1.wrapping_add(word(b)).wrapping_add(s0);
    }
    (s0, s1)
}

/// The WAL as SQLite's recovery reads it.
#[derive(Debug, Default)]
pub(crate) struct Wal {
    /// Page size from the header (0 when the header is unusable).
    pub page_size: u32,
    /// Whole frames in the file.
    pub frames: u64,
    /// Frames SQLite accepts (salts match, chain verifies), from 1.
    pub valid: u64,
    /// The last commit frame SQLite accepts, and the database size it commits.
    pub commit: Option<(u64, u32)>,
    /// Each page's newest committed frame (1-based), for pages within the committed size.
    pub newest: HashMap<u32, u64>,
    /// Findings about the WAL file.
    pub findings: Vec<Finding>,
    /// What is not damage but worth knowing.
    pub notes: Vec<String>,
}

impl Wal {
    /// Where frame `i` (1-based) starts.
    pub(crate) fn frame_offset(&self, i: u64) -> u64 {
        HEADER + (i - 1) * (u64::from(self.page_size) + FRAME_HEADER)
    }

    /// Where frame `i`'s page image starts.
    pub(crate) fn image_offset(&self, i: u64) -> u64 {
        self.frame_offset(i) + FRAME_HEADER
    }
}

struct Frame {
    pgno: u32,
    commit: u32,
    salts: [u32; 2],
    stored: (u32, u32),
}

fn frame_header(b: &[u8]) -> Frame {
    Frame {
        pgno: be32(b, 0),
        commit: be32(b, 4),
        salts: [be32(b, 8), be32(b, 12)],
        stored: (be32(b, 16), be32(b, 20)),
    }
}

/// A WAL opened for `dbfsck inspect WAL --page N`: unit 0 is the header, unit N frame N. A scan
/// verifies nothing through it (its layout is empty: the WAL is judged whole at open).
pub(crate) struct WalInspect {
    pub wal: Wal,
    pub len: u64,
}

impl WalInspect {
    fn frame_len(&self) -> u64 {
        u64::from(self.wal.page_size) + FRAME_HEADER
    }
}

impl crate::format::UnitCheck for WalInspect {
    fn layout(&self) -> crate::format::Layout {
        crate::format::Layout {
            start: 0,
            end: 0,
            align: 1,
        }
    }

    fn verify(&self, chunk: &crate::format::Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let end = chunk.offset + chunk.bytes.len() as u64;
        out.extend(
            self.wal
                .findings
                .iter()
                .filter(|f| f.offset < end && chunk.offset < f.offset + f.length.max(1))
                .cloned(),
        );
        0
    }

    fn unit_count(&self) -> Option<u64> {
        Some(self.wal.frames + 1)
    }

    fn unit_range(&self, unit: u64) -> Option<std::ops::Range<u64>> {
        match unit {
            0 => Some(0..HEADER.min(self.len)),
            n if n <= self.wal.frames => {
                let at = self.wal.frame_offset(n);
                Some(at..at + self.frame_len())
            }
            _ => None,
        }
    }

    fn describe(&self, chunk: &crate::format::Chunk<'_>) -> Vec<(String, String)> {
        let b = chunk.bytes;
        let mut out = Vec::new();
        let mut put = |k: &str, v: String| out.push((k.to_owned(), v));
        if chunk.offset == 0 {
            put("unit", "the WAL header".into());
            put("magic", format!("{:#010x}", be32(b, 0)));
            put("version", be32(b, 4).to_string());
            put("page size", be32(b, 8).to_string());
            put("checkpoint sequence", be32(b, 12).to_string());
            put(
                "salts",
                format!("{:#010x} {:#010x}", be32(b, 16), be32(b, 20)),
            );
            put(
                "checksum",
                format!("{:#010x} {:#010x}", be32(b, 24), be32(b, 28)),
            );
            put("frames", self.wal.frames.to_string());
            put("frames SQLite accepts", self.wal.valid.to_string());
            put(
                "last commit",
                self.wal.commit.map_or_else(
                    || "none: SQLite reads nothing from this WAL".into(),
                    |(f, n)| format!("frame {f} (database of {n} pages)"),
                ),
            );
            return out;
        }
        let n = (chunk.offset - HEADER) / self.frame_len() + 1;
        let fh = frame_header(b);
        let committed = self.wal.commit.is_some_and(|(c, _)| n <= c);
        put("frame", n.to_string());
        put("page", fh.pgno.to_string());
        put(
            "commit",
            if fh.commit == 0 {
                "no (a frame inside a transaction)".into()
            } else {
                format!("yes: the database is {} pages after it", fh.commit)
            },
        );
        put(
            "salts",
            format!("{:#010x} {:#010x}", fh.salts[0], fh.salts[1]),
        );
        put(
            "stored checksum",
            format!("{:#010x} {:#010x}", fh.stored.0, fh.stored.1),
        );
        put(
            "checksum chain",
            if n <= self.wal.valid {
                "verifies from the header to this frame".into()
            } else {
                format!(
                    "broken: SQLite's recovery stops at frame {}",
                    self.wal.valid + 1
                )
            },
        );
        put(
            "SQLite reads it",
            if !committed {
                "no: not committed (after the last commit SQLite accepts)".into()
            } else if self.wal.newest.get(&fh.pgno) == Some(&n) {
                format!("yes: the newest committed image of page {}", fh.pgno)
            } else {
                format!(
                    "no: a later committed frame holds page {} (or the page is past the database's end)",
                    fh.pgno
                )
            },
        );
        out
    }
}

/// Reads a WAL through `src` (its bytes are read once, a frame at a time).
pub(crate) fn read(src: &dyn FileSource) -> std::io::Result<Wal> {
    let len = src.len();
    let mut w = Wal::default();
    let mut hdr = [0u8; 32];
    if src.read_full_at(0, &mut hdr)? < 32 {
        if len > 0 {
            w.findings.push(Finding::new(FindingKind::TornTail, 0, len, format!("the WAL is {}, shorter than its 32-byte header: SQLite reads it as empty (a WAL being created when the crash came); nothing committed is in it", crate::bytes(len))));
        }
        return Ok(w);
    }
    let magic = be32(&hdr, 0);
    let version = be32(&hdr, 4);
    let page_size = be32(&hdr, 8);
    let big_endian = magic == MAGIC_BE;
    let stored = (be32(&hdr, 24), be32(&hdr, 28));
    let computed = sum(&hdr[..24], (0, 0), big_endian);
    let size_ok = page_size.is_power_of_two() && (512..=65536).contains(&page_size);
    if magic & !1 != MAGIC_LE || !size_ok {
        w.findings.push(Finding::new(FindingKind::BadHeader, 0, 32, format!("the WAL header is impossible (magic {magic:#010x}, page size {page_size}): SQLite ignores the whole WAL, and every transaction committed in it is lost")).unit(0));
        return Ok(w);
    }
    w.page_size = page_size;
    let frame_len = u64::from(page_size) + FRAME_HEADER;
    w.frames = len.saturating_sub(HEADER) / frame_len;
    let salts = [be32(&hdr, 16), be32(&hdr, 20)];
    let mut buf = vec![0u8; frame_len as usize];
    // What the frames say, read with each frame's checksum seeded from the one stored before
    // it: frames that link to each other after a failure are evidence the failure is damage.
    let header_bad = stored != computed;
    if header_bad || version != VERSION {
        let (lost, _) = relinked(src, &w, 1, stored, salts, big_endian, &mut buf)?;
        let why = if header_bad {
            format!(
                "its header checksum fails (stored {:08x}{:08x}, computed {:08x}{:08x})",
                stored.0, stored.1, computed.0, computed.1
            )
        } else {
            format!("its format version is {version}, not {VERSION} (SQLite refuses to open the database)")
        };
        if lost > 0 || version != VERSION {
            let mut f = Finding::new(FindingKind::BadHeader, 0, 32, format!("the WAL header is damaged — {why}: SQLite ignores the whole WAL, and its frames hold {lost} committed transaction(s) that are lost")).unit(0);
            if header_bad {
                f = f.checksums(
                    format!("0x{:08x}{:08x}", stored.0, stored.1),
                    format!("0x{:08x}{:08x}", computed.0, computed.1),
                );
            }
            w.findings.push(f);
        } else {
            w.findings.push(Finding::new(FindingKind::TornTail, 0, len, format!("the WAL header is torn — {why} — and no committed transaction follows it: SQLite reads the WAL as empty (a WAL being reset when the crash came)")));
        }
        return Ok(w);
    }
    let mut running = stored;
    let mut uncommitted_from: Option<u64> = None;
    let mut pending: Vec<(u32, u64)> = Vec::new();
    for i in 1..=w.frames {
        let off = w.frame_offset(i);
        src.read_full_at(off, &mut buf)?;
        let fh = frame_header(&buf);
        let (head, image) = buf.split_at(FRAME_HEADER as usize);
        let head8 = head.get(..8).unwrap_or_default();
        let after = sum(image, sum(head8, running, big_endian), big_endian);
        let ok = fh.salts == salts && fh.pgno != 0 && after == fh.stored;
        if !ok {
            if judge_stop(src, &mut w, i, &fh, salts, after, big_endian, &mut buf)? {
                uncommitted_from = None;
            }
            break;
        }
        running = after;
        w.valid = i;
        pending.push((fh.pgno, i));
        uncommitted_from.get_or_insert(i);
        if fh.commit != 0 {
            w.commit = Some((i, fh.commit));
            for (p, f) in pending.drain(..) {
                w.newest.insert(p, f);
            }
            uncommitted_from = None;
        }
    }
    if let Some((_, size)) = w.commit {
        w.newest.retain(|&p, _| p <= size);
    }
    if let Some(from) = uncommitted_from {
        w.notes.push(format!("WAL frames {from}..={} are intact but no commit frame follows them: a transaction that had not committed (or was rolled back), which SQLite ignores", w.valid));
    }
    let tail = len.saturating_sub(HEADER) % frame_len;
    if w.valid == w.frames && tail > 0 {
        let off = HEADER + w.frames * frame_len;
        let mut h = [0u8; 16];
        let n = src.read_full_at(off, &mut h)?;
        let same_gen = n >= 16 && [be32(&h, 8), be32(&h, 12)] == salts;
        if same_gen || n < 16 {
            w.notes.retain(|n| !n.contains("no commit frame follows"));
            w.findings.push(Finding::new(FindingKind::TornTail, off, tail, format!("the WAL ends in a frame cut after {} of its {frame_len} bytes: the crash's unfinished write, which SQLite discards", crate::bytes(tail))).unit(w.frames + 1));
        } else {
            w.notes.push(format!(
                "the WAL ends in {} of an older frame (not of this WAL generation), ignored",
                crate::bytes(tail)
            ));
        }
    }
    Ok(w)
}

/// Frames from `from` on that link to the stored checksum before them and carry the header's
/// salts: how many commits they hold, and the last frame that links.
fn relinked(
    src: &dyn FileSource,
    w: &Wal,
    from: u64,
    mut seed: (u32, u32),
    salts: [u32; 2],
    big_endian: bool,
    buf: &mut [u8],
) -> std::io::Result<(u64, u64)> {
    let (mut commits, mut last) = (0, 0);
    for j in from..=w.frames {
        if src.read_full_at(w.frame_offset(j), buf)? < buf.len() {
            break;
        }
        let fh = frame_header(buf);
        let img = buf.get(FRAME_HEADER as usize..).unwrap_or_default();
        let after = sum(
            img,
            sum(buf.get(..8).unwrap_or_default(), seed, big_endian),
            big_endian,
        );
        if fh.salts != salts || fh.pgno == 0 {
            break;
        }
        if after != fh.stored {
            break;
        }
        last = j;
        if fh.commit != 0 {
            commits += 1;
        }
        seed = fh.stored;
    }
    Ok((commits, last))
}

/// The first frame SQLite rejects: the normal end of the WAL (an older generation's frame, a
/// torn last transaction) or damage that silently loses the commits after it.
#[expect(
    clippy::too_many_arguments,
    reason = "one private helper of the reader"
)]
fn judge_stop(
    src: &dyn FileSource,
    w: &mut Wal,
    i: u64,
    fh: &Frame,
    salts: [u32; 2],
    computed: (u32, u32),
    big_endian: bool,
    buf: &mut [u8],
) -> std::io::Result<bool> {
    let len = src.len();
    let off = w.frame_offset(i);
    if fh.salts != salts {
        if i <= w.frames {
            w.notes.push(format!("WAL frames {i}..={} carry another generation's salts (frames left from before the last checkpoint reset the WAL): SQLite ignores them, as it should", w.frames));
        }
        return Ok(false);
    }
    // Frames after it that link to its stored checksum: written after it, in order.
    let (commits, last) = relinked(src, w, i + 1, fh.stored, salts, big_endian, buf)?;
    let mut owner = Owner::new();
    owner.insert("frame".into(), i.into());
    owner.insert("page".into(), fh.pgno.into());
    let why = if fh.pgno == 0 {
        "names page 0"
    } else {
        "fails the WAL's checksum chain"
    };
    if commits > 0 {
        owner.insert("commits_lost".into(), commits.into());
        let mut f = Finding::new(FindingKind::ChecksumMismatch, off, w.frame_offset(last + 1) - off, format!("WAL frame {i} (page {}) {why}, yet frames {}..={last} after it link to it and hold {commits} committed transaction(s): SQLite stops reading the WAL at frame {i} and silently discards every one of them", fh.pgno, i + 1)).unit(i).owner(owner);
        if fh.pgno != 0 {
            f = f.checksums(
                format!("0x{:08x}{:08x}", fh.stored.0, fh.stored.1),
                format!("0x{:08x}{:08x}", computed.0, computed.1),
            );
        }
        w.findings.push(f);
    } else {
        w.findings.push(Finding::new(FindingKind::TornTail, off, len - off, format!("WAL frame {i} (page {}) {why} and no commit follows it: the crash's unfinished transaction, which SQLite discards", fh.pgno)).unit(i).owner(owner));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_vector() {
        // formats-sqlite.md §11.1.
        let words = [
            0x377f_0682u32,
            0x002d_e218,
            0x0000_1000,
            0,
            0x3530_e9c2,
            0x99bf_2948,
        ];
        let b: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(sum(&b, (0, 0), false), (0x97d0_3348, 0x97e1_ca86));
    }
}
