//! WALs and MANIFESTs judged (docs/rocksdb.md §3): every physical record's checksum, the
//! batches' sequence ranges, and what a failure means — the crash's unsynced last write
//! (`torn_tail`, no exit bit) only at the very end of the newest live WAL with nothing valid
//! after it and no record of it having been synced; damage (exit bit 4) anywhere else.

use std::path::Path;

use crate::finding::{Finding, FindingKind, Owner};
use crate::format::{Chunk, Layout, UnitCheck};
use crate::lsm::log::{self, Event};

/// What the directory says about a WAL.
#[derive(Debug, Clone, Default)]
pub struct WalLive {
    /// Its file number.
    pub number: u64,
    /// Whether it is the newest live WAL (a cut tail there is what a crash leaves).
    pub newest: bool,
    /// The size the MANIFEST records as synced, when it tracks WALs.
    pub synced: Option<u64>,
    /// Whether the file was found in a database directory (else it was named alone).
    pub in_db: bool,
}

/// A stretch of the log that is not used, built from the reader's events.
#[derive(Debug, Clone)]
struct Stretch {
    start: u64,
    end: u64,
    why: String,
    cut: bool,
    /// The batch header of the record cut (sequence, count), when its first bytes survive.
    batch: Option<(u64, u32)>,
    /// One past the last sequence of the batch before it.
    before: Option<u64>,
    /// The first sequence of the batch after it.
    after: Option<u64>,
    /// All zero (preallocated space at the end; zeroed data before valid records).
    zeroed: bool,
}

impl Stretch {
    /// A stretch not yet placed among the batches around it, not zeroed.
    fn new(start: u64, end: u64, why: String, cut: bool, batch: Option<(u64, u32)>) -> Self {
        Stretch {
            start,
            end,
            why,
            cut,
            batch,
            before: None,
            after: None,
            zeroed: false,
        }
    }
}

/// The sequence range of the batches in a log, and how many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sequences {
    /// First sequence of the first batch.
    pub first: Option<u64>,
    /// One past the last batch's last sequence.
    pub end: u64,
    /// Batches read.
    pub batches: u64,
}

/// Checks a WAL read whole (one chunk).
pub struct WalCheck {
    len: u64,
    live: WalLive,
    owner: Owner,
    path: std::path::PathBuf,
    /// Where the sequence range found goes, for the directory's cross-WAL check.
    seen: Option<SeqLog>,
}

/// The sequence ranges of a directory's WALs, by number, with their paths.
pub type SeqLog = std::sync::Arc<
    std::sync::Mutex<std::collections::BTreeMap<u64, (std::path::PathBuf, Sequences)>>,
>;

impl WalCheck {
    /// A check of the WAL at `path`, `len` bytes long; its sequence range goes to `seen`.
    pub fn new(path: &Path, len: u64, live: WalLive, seen: Option<SeqLog>) -> WalCheck {
        let mut owner = Owner::new();
        owner.insert("wal".into(), live.number.into());
        WalCheck {
            len,
            live,
            owner,
            path: path.to_path_buf(),
            seen,
        }
    }
}

fn batch_at(bytes: &[u8], start: u64) -> Option<(u64, u32)> {
    let s = usize::try_from(start).ok()?;
    let kind = *bytes.get(s + 6)?;
    let h = if matches!(kind, 5..=8) {
        log::RECYCLABLE_HEADER
    } else {
        log::HEADER
    };
    log::batch_header(bytes.get(s + h..s + h + 12)?)
}

/// Reads a log and gathers its unused stretches (a failing record and the fragments orphaned
/// by it merged into one) and the batches around them.
fn stretches(bytes: &[u8], number: u64, wal: bool) -> (Vec<Stretch>, Sequences, u64) {
    let mut out: Vec<Stretch> = Vec::new();
    let mut seq = Sequences::default();
    let mut last_good_end = 0u64;
    let mut prev_end_seq: Option<u64> = None;
    let mut compressed = false;
    log::read(
        bytes,
        Some(number),
        if wal { 12 } else { 0 },
        |ev| match ev {
            Event::Record { end, payload, .. } => {
                last_good_end = end;
                if wal && !compressed {
                    if let Some((s, c)) = log::batch_header(&payload) {
                        seq.first.get_or_insert(s);
                        seq.end = seq.end.max(s.saturating_add(u64::from(c)));
                        seq.batches += 1;
                        if let Some(last) = out.last_mut() {
                            if last.after.is_none() && last.end <= end {
                                last.after = Some(s);
                            }
                        }
                        prev_end_seq = Some(s.saturating_add(u64::from(c)));
                    }
                }
            }
            Event::Compression { .. } => compressed = true,
            Event::Bad { start, end, why } => {
                let batch = why.is_cut().then(|| batch_at(bytes, start)).flatten();
                let stretch = Stretch::new(start, end, why.describe(), why.is_cut(), batch);
                push(&mut out, stretch, prev_end_seq);
            }
            Event::Orphan { start, end } => {
                let why = "fragments of a record whose other fragments are lost";
                push(
                    &mut out,
                    Stretch::new(start, end, why.into(), false, None),
                    prev_end_seq,
                );
            }
            Event::Unfinished { start, end } => {
                let why = "the file ends inside a fragmented record";
                let stretch = Stretch::new(start, end, why.into(), true, batch_at(bytes, start));
                push(&mut out, stretch, prev_end_seq);
            }
            Event::Zeros { start, end } => {
                let why = "all zero (written records zeroed; RocksDB and LevelDB skip such a block without a word)";
                let stretch = Stretch {
                    zeroed: true,
                    ..Stretch::new(start, end, why.into(), false, None)
                };
                push(&mut out, stretch, prev_end_seq);
            }
            // The old contents of a reused file: where the engine's reader stops, not damage.
            Event::Recycled { .. } => {}
        },
    );
    (out, seq, last_good_end)
}

fn push(out: &mut Vec<Stretch>, mut s: Stretch, before: Option<u64>) {
    if let Some(last) = out.last_mut() {
        if last.end == s.start && last.after.is_none() {
            last.end = s.end;
            last.cut |= s.cut;
            last.zeroed |= s.zeroed;
            return;
        }
    }
    s.before = before;
    out.push(s);
}

fn seq_phrase(from: Option<u64>, to: Option<u64>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if b > a => format!("sequence numbers {a}..={}", b - 1),
        (Some(a), Some(_)) => {
            format!("no sequence number (the batches before and after are contiguous from {a})")
        }
        (Some(a), None) => format!("sequence numbers from {a} on"),
        (None, Some(b)) if b > 0 => format!("sequence numbers below {b}"),
        _ => "an unknown sequence range".into(),
    }
}

impl UnitCheck for WalCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.len,
            align: self.len.max(1),
        }
    }

    fn inspect_unit(&self) -> Option<u64> {
        Some(log::BLOCK as u64)
    }

    /// The physical records that start in 32 KiB block `unit`: type, length, checksum, and a
    /// batch's sequence range.
    fn inspect_in(&self, chunk: &Chunk<'_>, unit: u64) -> Vec<(String, String)> {
        let base = unit * log::BLOCK as u64;
        let Some(block) = usize::try_from(base.saturating_sub(chunk.offset))
            .ok()
            .and_then(|s| chunk.bytes.get(s..(s + log::BLOCK).min(chunk.bytes.len())))
        else {
            return Vec::new();
        };
        let mut f = vec![(
            "block".to_owned(),
            format!("{unit} (bytes {base}..{})", base + block.len() as u64),
        )];
        let mut p = 0usize;
        while let Some(&[_, _, _, _, l0, l1, kind]) = block.get(p..p + log::HEADER) {
            let len = usize::from(u16::from_le_bytes([l0, l1]));
            if kind == 0 && len == 0 {
                f.push((
                    format!("@{}", base + p as u64),
                    "zero header: the rest of the block is padding".into(),
                ));
                break;
            }
            let hl = if matches!(kind, 5..=8) {
                log::RECYCLABLE_HEADER
            } else {
                log::HEADER
            };
            let Some(rec) = block.get(p..p + hl + len) else {
                f.push((
                    format!("@{}", base + p as u64),
                    format!("type {kind}, length {len}: runs past the block"),
                ));
                break;
            };
            let stored = log::unmask(crate::lsm::fixed32(rec, 0));
            let computed = crc32c::crc32c(rec.get(6..).unwrap_or_default());
            let name = match kind {
                1 | 5 => "FULL",
                2 | 6 => "FIRST",
                3 | 7 => "MIDDLE",
                4 | 8 => "LAST",
                9 => "SET_COMPRESSION",
                _ => "other",
            };
            let mut what = format!(
                "{name} (type {kind}), {len} bytes, checksum {}",
                if stored == computed {
                    "ok".to_owned()
                } else {
                    format!("MISMATCH (stored {stored:#010x}, computed {computed:#010x})")
                }
            );
            if matches!(kind, 1 | 2 | 5 | 6) {
                if let Some((sq, n)) = log::batch_header(rec.get(hl..).unwrap_or_default()) {
                    what.push_str(&format!("; batch at sequence {sq}, {n} entries"));
                }
            }
            f.push((format!("@{}", base + p as u64), what));
            if stored != computed {
                break;
            }
            p += rec.len();
            if log::BLOCK - p < log::HEADER {
                break;
            }
        }
        f
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let (bad, seq, last_good_end) = stretches(chunk.bytes, self.live.number, true);
        if let Some(log) = &self.seen {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(self.live.number, (self.path.clone(), seq));
        }
        let count = bad.len();
        for (i, s) in bad.into_iter().enumerate() {
            let (before, after) = (s.before, s.after);
            let at_tail = i + 1 == count && s.start >= last_good_end;
            // Zeros after the last record are preallocated space: the normal end of a log.
            if s.zeroed && at_tail && !s.cut {
                continue;
            }
            let synced = self.live.synced.is_some_and(|n| n > s.start);
            let mut owner = self.owner.clone();
            let mut range = serde_json::Map::new();
            if let Some(b) = before {
                range.insert("from".into(), b.into());
            }
            if let Some(a) = after {
                range.insert("to".into(), a.saturating_sub(1).into());
            }
            let torn = at_tail && (self.live.newest || !self.live.in_db) && !synced;
            if torn {
                if let Some((sq, n)) = s.batch {
                    range.insert("from".into(), sq.into());
                    range.insert(
                        "to".into(),
                        sq.saturating_add(u64::from(n)).saturating_sub(1).into(),
                    );
                }
            }
            // How many writes (key-value entries) the range holds, when both ends are known.
            if let (Some(a), Some(b)) = (
                range.get("from").and_then(serde_json::Value::as_u64),
                range.get("to").and_then(serde_json::Value::as_u64),
            ) {
                range.insert("count".into(), (b + 1).saturating_sub(a).into());
            }
            owner.insert("sequence_range".into(), range.into());
            let (kind, detail) = if torn {
                let cut = match s.batch {
                    Some((sq, n)) => format!("the batch at sequence {sq} ({n} entries)"),
                    None => "its last record".into(),
                };
                (
                    FindingKind::TornTail,
                    format!(
                        "the newest WAL ends in an unfinished write ({}): {cut}, which the crash cut before it was synced; recovery discards it{}",
                        s.why,
                        if self.live.in_db { "" } else { " (named alone: whether a newer WAL follows is not known)" }
                    ),
                )
            } else {
                let why_damage = if !at_tail {
                    "valid records follow it, so it was written and synced".to_owned()
                } else if synced {
                    format!(
                        "the MANIFEST records {} of this WAL as synced",
                        crate::bytes(self.live.synced.unwrap_or(0))
                    )
                } else {
                    "a newer WAL follows this one, so it was complete".to_owned()
                };
                let kind = if s.why.starts_with("checksum") {
                    FindingKind::ChecksumMismatch
                } else if s.zeroed {
                    FindingKind::ZeroedPage
                } else if s.cut {
                    FindingKind::Truncated
                } else {
                    FindingKind::BadHeader
                };
                (
                    kind,
                    format!(
                        "{} ({}): {}; {} lost ({} not replayed by point-in-time recovery)",
                        s.why,
                        crate::bytes(s.end - s.start),
                        why_damage,
                        seq_phrase(before, after),
                        if at_tail {
                            "the rest of the WAL is"
                        } else {
                            "everything after it is"
                        }
                    ),
                )
            };
            out.push(Finding::new(kind, s.start, s.end - s.start, detail).owner(owner));
        }
        seq.batches.max(1)
    }
}

/// Findings about a MANIFEST read whole at open. `ahead` lists table files on disk whose
/// number the MANIFEST never reached (evidence that edits after its end were lost).
pub fn manifest_findings(m: &crate::lsm::edit::Manifest, len: u64, ahead: &[u64]) -> Vec<Finding> {
    use crate::lsm::edit::ProblemKind;
    let mut out = Vec::new();
    let last_problem = m.problems.len();
    for (i, p) in m.problems.iter().enumerate() {
        let tail = i + 1 == last_problem && p.offset >= m.applied_end;
        let cut = matches!(&p.what, ProblemKind::Log(b) if b.is_cut())
            || matches!(p.what, ProblemKind::Unfinished);
        let what = match &p.what {
            ProblemKind::Log(b) => b.describe(),
            ProblemKind::Orphan => "fragments of a record whose start is lost".into(),
            ProblemKind::Unfinished => "the file ends inside a fragmented record".into(),
            ProblemKind::Edit(e) => format!("a record verifies but its edit does not decode: {e}"),
            ProblemKind::OpenGroup => "an atomic group of edits is not complete at the end".into(),
            ProblemKind::Zeroed => "a zeroed block before later edits: the edits it held are lost, and the engines skip it without a word".into(),
        };
        let (kind, detail) = if tail && cut && ahead.is_empty() && m.version.usable() {
            (FindingKind::TornTail, format!("the MANIFEST ends in an unfinished record ({what}): the last edit was cut before it was synced, and the engines ignore it"))
        } else if tail && cut {
            (FindingKind::Truncated, format!("the MANIFEST ends in a cut record ({what}), and tables {} on disk are numbered beyond its last file number: the edits that added them were lost, and RocksDB deletes those tables on the next read-write open (scan before any open; restore the MANIFEST or salvage those tables)", list(ahead)))
        } else {
            let kind = match &p.what {
                ProblemKind::Log(log::Bad::Checksum { .. }) => FindingKind::ChecksumMismatch,
                ProblemKind::Zeroed => FindingKind::ZeroedPage,
                _ if cut => FindingKind::Truncated,
                _ => FindingKind::BadHeader,
            };
            (kind, format!("{what}: every edit from here on is not applied; RocksDB refuses to open the database (Corruption), and the live set after this point is unknown"))
        };
        out.push(Finding::new(
            kind,
            p.offset,
            p.length.max(1).min(len.saturating_sub(p.offset).max(1)),
            detail,
        ));
    }
    // Without the log number, next file number and last sequence the engines refuse to open,
    // and no live set can be told: every table of the directory is checked.
    if !m.version.usable() {
        out.push(Finding::new(
            FindingKind::BadHeader,
            m.applied_end.min(len),
            len.saturating_sub(m.applied_end).max(1).min(len.max(1)),
            "the MANIFEST holds no complete edits giving the log number, the next file number and the last sequence: RocksDB and LevelDB refuse to open the database (\"no meta-nextfile entry\"), and the live set is unknown, so every table in the directory is checked".to_owned(),
        ));
    }
    out
}

fn list(v: &[u64]) -> String {
    v.iter()
        .map(|n| format!("{n:06}"))
        .collect::<Vec<_>>()
        .join(", ")
}
