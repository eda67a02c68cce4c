//! The segments of one WAL directory joined in LSN order: the records that cross segment
//! boundaries verified (once, from the bytes both segments hold), each stop judged — the real end
//! of WAL, the crash's torn last write, or damage with valid WAL after it — and the verdict on
//! where crash recovery would stop (`docs/postgres-wal.md` §3–§4; `formats-pgwal.md` §4.4).

use std::path::{Path, PathBuf};

use crate::finding::{Finding, FindingKind, Owner};
use crate::format::Conclusion;
use crate::report::RecoveryVerdict;

use super::record;
use super::segment::{Break, Part, Span, Stop};
use super::{segment_name, Lsn, SegEntry, WalDir, WalDirKind};

/// One event of the joined stream.
#[derive(Debug, Clone)]
enum Ev {
    Span { seg: usize, span: Span },
    Break { seg: usize, brk: Break },
}

impl Ev {
    fn lsn(&self) -> u64 {
        match self {
            Ev::Span { span, .. } => span.first,
            Ev::Break { brk, .. } => brk.lsn,
        }
    }
}

/// What a break turns out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Nothing was written past it: the end of WAL.
    End,
    /// The crash's last, unflushed write.
    Torn,
    /// Valid WAL follows: damage.
    Damage,
}

/// How to replay a directory other than as its data directory's crash recovery: a restore of a
/// base backup from an archive starts at the backup's redo point, on the timeline
/// `recovery_target_timeline = 'latest'` picks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Replay {
    /// Where replay starts (an archive's own verdict otherwise starts at its first record).
    pub start: Option<u64>,
    /// The timeline replay follows (otherwise pg_control's, or the newest one here).
    pub target: Option<u32>,
}

/// What a replay reached, beyond its recovery verdict: a restore's horizon.
#[derive(Debug, Clone, Default)]
pub(crate) struct Replayed {
    /// The timeline it followed.
    pub timeline: u32,
    /// The last commit it applies (µs since 2000-01-01).
    pub last_commit: Option<i64>,
    /// What stopped it before the real end of the WAL here, when something did.
    pub obstacle: Option<Obstacle>,
}

/// The first thing a replay cannot get past: a segment missing from the chain, or damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Obstacle {
    /// The segment's name.
    pub segment: String,
    /// The file holding the damage (none for a missing segment).
    pub file: Option<PathBuf>,
    /// The damage's offset in that file.
    pub offset: Option<u64>,
    /// The segment is missing (else damaged).
    pub missing: bool,
}

/// The timeline whose file holds segment `segno` on the way to `target` (its history's entry
/// for that position; `target` itself past the last switch).
fn timeline_of(dir: &WalDir, target: u32, segno: u64, seg_size: u64) -> u32 {
    dir.histories
        .get(&target)
        .and_then(|h| {
            h.entries
                .iter()
                .find(|&&(_, switch)| segno <= switch.saturating_sub(1) / seg_size)
                .map(|&(tli, _)| tli)
        })
        .unwrap_or(target)
}

/// The segments replay reads, in order: for each segment number, the file of the newest timeline
/// of the target's history that had begun by then and not yet ended (as PostgreSQL's
/// XLogFileReadAnyTLI picks); without a history file, the target timeline's files alone.
fn chain(dir: &WalDir, target: u32, seg_size: u64) -> Vec<&SegEntry> {
    // (timeline, first and last segment numbers it can hold): an ancestor only up to the
    // segment holding the last byte before its child began (XLByteToPrevSeg).
    let mut allowed: Vec<(u32, u64, u64)> = Vec::new();
    match dir.histories.get(&target) {
        Some(h) if target > 1 => {
            let mut begin = 0u64;
            for &(tli, switch) in &h.entries {
                allowed.push((tli, begin, switch.saturating_sub(1) / seg_size));
                begin = switch / seg_size;
            }
            allowed.push((target, begin, u64::MAX));
        }
        // No history: the target timeline alone, as PostgreSQL reads it without one.
        _ => allowed.push((target, 0, u64::MAX)),
    }
    let mut by_segno: std::collections::BTreeMap<u64, &SegEntry> = Default::default();
    for e in dir.segments.values() {
        let Some(&(_, begin, end)) = allowed.iter().find(|(t, _, _)| *t == e.tli) else {
            continue;
        };
        if e.segno < begin || e.segno > end {
            continue;
        }
        // A `.partial` file is the old timeline's last, incomplete segment: recovery never reads
        // it (formats-pgwal.md §1.1); it stands in only where nothing else does.
        let better = |old: &SegEntry| {
            (e.partial, std::cmp::Reverse(e.tli)) < (old.partial, std::cmp::Reverse(old.tli))
        };
        match by_segno.get(&e.segno) {
            Some(old) if !better(old) => {}
            _ => {
                by_segno.insert(e.segno, e);
            }
        }
    }
    by_segno.into_values().collect()
}

/// The bytes of parts, joined: the 24-byte header and the CRC-32C of the body after it.
fn joined_crc(parts: &[&Part], total: u64) -> Option<([u8; record::HEADER], u32)> {
    let mut header = Vec::with_capacity(record::HEADER);
    let mut crc: Option<u32> = None;
    let mut body_len = 0u64;
    for p in parts {
        let need = record::HEADER
            .saturating_sub(header.len())
            .min(p.prefix.len());
        let (h, rest) = p.prefix.split_at(need);
        header.extend_from_slice(h);
        if !rest.is_empty() {
            crc = Some(match crc {
                None => crc32c::crc32c(rest),
                Some(c) => crc32c::crc32c_append(c, rest),
            });
            body_len += rest.len() as u64;
        }
        if p.rest_len > 0 {
            // Bytes kept only as a CRC: the header must be whole by then.
            if header.len() < record::HEADER {
                return None;
            }
            crc = Some(match crc {
                None => p.rest_crc,
                Some(c) => crc32c::crc32c_combine(c, p.rest_crc, p.rest_len as usize),
            });
            body_len += p.rest_len;
        }
    }
    if body_len + record::HEADER as u64 != total {
        return None;
    }
    let header: [u8; record::HEADER] = header.try_into().ok()?;
    let body_crc = crc.unwrap_or_else(|| crc32c::crc32c(&[]));
    Some((header, crc32c::crc32c_append(body_crc, header.get(..20)?)))
}

/// A record that started in an earlier segment and still goes on: its parts so far.
struct Pending {
    /// The index (in the chain) of the segment it starts in.
    seg: usize,
    start: u64,
    prev: Option<u64>,
    tot_len: u32,
    parts: Vec<Part>,
    /// Bytes of it the parts hold.
    have: u64,
    v15: bool,
}

impl Pending {
    fn cut(&self, why: Stop) -> Break {
        Break {
            lsn: self.start,
            record: Some(self.start),
            record_len: Some(self.tot_len),
            written: self.have,
            why,
            after: self.prev,
        }
    }
}

/// Parts of one record, in order, as one part: its first [`PREFIX`](super::segment::PREFIX)
/// bytes and the CRC-32C of the rest.
fn fold(parts: &[Part]) -> Part {
    let mut prefix = Vec::with_capacity(super::segment::PREFIX);
    let mut crc: Option<u32> = None;
    let mut len = 0u64;
    for p in parts {
        let mut bytes = p.prefix.as_slice();
        if len == 0 {
            let take = super::segment::PREFIX
                .saturating_sub(prefix.len())
                .min(bytes.len());
            let (head, rest) = bytes.split_at(take);
            prefix.extend_from_slice(head);
            bytes = rest;
        }
        if !bytes.is_empty() {
            crc = Some(crc.map_or_else(
                || crc32c::crc32c(bytes),
                |c| crc32c::crc32c_append(c, bytes),
            ));
            len += bytes.len() as u64;
        }
        if p.rest_len > 0 {
            crc = Some(crc.map_or(p.rest_crc, |c| {
                crc32c::crc32c_combine(c, p.rest_crc, p.rest_len as usize)
            }));
            len += p.rest_len;
        }
    }
    Part {
        prefix,
        rest_crc: crc.unwrap_or_default(),
        rest_len: len,
    }
}

/// What joining a segment to the record before it gives.
enum Joined {
    /// The record ends in this segment: a span of that one record.
    Done(Span),
    /// The record fills this segment and goes on into the next.
    Continues(Pending),
}

/// Starts the join of the record that segment `a` (the chain's `seg`-th) ends with, and
/// continues it into `b`.
fn join(seg: usize, a: &SegEntry, b: &SegEntry) -> Result<Joined, Break> {
    let Some(tail) = &a.summary.tail else {
        // Nothing crosses: `b` must not start with a continuation.
        return Err(Break {
            lsn: b.params.start,
            record: None,
            record_len: None,
            written: 0,
            why: Stop::Contrecord(
                "the segment starts with the continuation of a record the previous segment does not begin".into(),
            ),
            after: None,
        });
    };
    let tot_len = tail
        .part
        .prefix
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    let pending = Pending {
        seg,
        start: tail.start,
        prev: tail.prev,
        tot_len,
        have: tail.part.len(),
        parts: vec![tail.part.clone()],
        v15: a
            .summary
            .magic
            .and_then(super::major_of_magic)
            .is_some_and(|m| m >= 15),
    };
    join_more(pending, b)
}

/// Continues a record into segment `b`: its first page must continue it with exactly the bytes
/// still to come; when it ends there, its CRC is verified over every part (a record longer than
/// a segment included).
fn join_more(mut pd: Pending, b: &SegEntry) -> Result<Joined, Break> {
    let Some(lead) = &b.summary.lead else {
        return Err(pd.cut(Stop::Cut(format!(
            "it continues into segment {}, whose first page does not continue it",
            file_name(&b.path)
        ))));
    };
    let need = u64::from(pd.tot_len).saturating_sub(pd.have);
    if u64::from(lead.rem_len) != need {
        return Err(pd.cut(Stop::Contrecord(format!(
            "invalid contrecord length {} (expected {need}) at the start of segment {}",
            lead.rem_len,
            file_name(&b.path)
        ))));
    }
    if lead.cut {
        return Err(pd.cut(Stop::Cut(format!(
            "its continuation in segment {} is cut",
            file_name(&b.path)
        ))));
    }
    pd.have += lead.part.len();
    pd.parts.push(lead.part.clone());
    // Past what is kept whole, the parts become one (a prefix and a CRC): memory stays bounded
    // whatever the record's length and however small the segments.
    if pd.parts.len() > 1 && pd.have > super::segment::KEEP_WHOLE as u64 {
        pd.parts = vec![fold(&pd.parts)];
    }
    let Some(end) = lead.end else {
        return Ok(Joined::Continues(pd));
    };
    let parts: Vec<&Part> = pd.parts.iter().collect();
    let decoded = if parts.iter().all(|p| p.full()) {
        let bytes: Vec<u8> = parts
            .iter()
            .flat_map(|p| p.prefix.iter().copied())
            .collect();
        record::check(&bytes[..], pd.start, pd.prev, pd.v15)
    } else {
        match joined_crc(&parts, u64::from(pd.tot_len)) {
            None => Err(Stop::BadBody(
                "the record's parts do not add up to its length".into(),
            )),
            Some((header, computed)) => record::check_header(&header[..], pd.start, pd.prev)
                .and_then(|()| {
                    let stored = record::stored_crc(&header[..]);
                    if stored == computed {
                        Ok(record::Decoded {
                            prev: u64::from_le_bytes(
                                header
                                    .get(8..16)
                                    .and_then(|b| b.try_into().ok())
                                    .unwrap_or_default(),
                            ),
                            rmid: header.get(17).copied().unwrap_or_default(),
                            info: header.get(16).copied().unwrap_or_default(),
                            commit_time: None,
                            overwritten: None,
                        })
                    } else {
                        Err(Stop::Crc { stored, computed })
                    }
                }),
        }
    };
    match decoded {
        Ok(d) => Ok(Joined::Done(Span {
            first: pd.start,
            first_prev: d.prev,
            last: pd.start,
            end,
            records: 1,
            commits: u64::from(d.commit_time.is_some()),
            first_commit: d.commit_time,
            last_commit: d.commit_time,
            last_commit_lsn: d.commit_time.map(|_| pd.start),
            linked_from: None,
            switch: d.is_switch(),
        })),
        Err(why) => Err(pd.cut(why)),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Joins and judges one directory's segments.
pub(crate) fn conclude_dir(
    path: &Path,
    dir: &WalDir,
    complete: bool,
    data_lsn: Option<u64>,
    replay: Replay,
    out: &mut Conclusion,
) -> Option<Replayed> {
    let unverified = dir
        .listed
        .iter()
        .filter(|p| !dir.segments.contains_key(*p))
        .count();
    if dir.segments.is_empty() {
        return None;
    }
    if let WalDirKind::DataDir { live: true, .. } = dir.kind {
        // The running server writes, recycles (renames and overwrites) and removes segments
        // while they are read: what the scan saw is no verdict on the WAL.
        out.warnings.push((
            path.to_path_buf(),
            format!(
                "the server is running: its WAL is written and recycled while it is read, so the WAL's {} segments are read but not judged and no recovery verdict is given; scan it with the server stopped, or scan a copy (pg_basebackup, the archive)",
                dir.segments.len()
            ),
        ));
        return None;
    }
    if !complete || unverified > 0 {
        out.warnings.push((
            path.to_path_buf(),
            format!(
                "the WAL here is not judged as a whole in this piece ({unverified} of its {} segments were not verified in it): where the WAL ends, whether damage lies before its end and where recovery would stop are said only by a scan that reads every segment",
                dir.listed.len().max(dir.segments.len())
            ),
        ));
        return None;
    }
    let control = match dir.kind {
        WalDirKind::DataDir { control, .. } => control,
        WalDirKind::Archive => None,
    };
    let seg_size = dir.segments.values().next().map(|e| e.params.seg_size)?;
    let mut warnings = Vec::new();
    let target = replay
        .target
        .or(control.map(|c| c.timeline))
        .filter(|&t| dir.segments.values().any(|e| e.tli == t))
        .or_else(|| dir.segments.values().map(|e| e.tli).max())
        .unwrap_or(1);
    for e in dir.segments.values().filter(|e| e.summary.gave_up) {
        warnings.push((
            e.path.clone(),
            format!(
                "the segment stops {} times: its walk ended there (the first {} are reported); what follows in it is not verified",
                super::segment::MAX_BREAKS,
                super::segment::MAX_BREAKS
            ),
        ));
    }
    let segs = chain(dir, target, seg_size);
    let mut events: Vec<Ev> = Vec::new();
    let mut pending: Option<Pending> = None;
    for (i, e) in segs.iter().enumerate() {
        let prev_seg = i.checked_sub(1).and_then(|p| segs.get(p));
        let mut items: Vec<Ev> = Vec::new();
        // A switch record that ends in this segment uses the rest of it: what the walk of the
        // segment found after the continuation is not WAL.
        let mut consumed = false;
        match prev_seg {
            Some(p) if p.segno + 1 == e.segno => {
                // The stream of `p` ended cleanly at its end (its last event is a span): the join
                // continues it; after a break, `e` starts afresh.
                let clean = matches!(events.last(), Some(Ev::Span { .. }));
                let crossing = p.summary.tail.is_some() || e.summary.lead.is_some();
                let mut expect_prev = match events.last() {
                    Some(Ev::Span { span, .. }) => Some(span.last),
                    _ => None,
                };
                let abandoned = p
                    .summary
                    .tail
                    .as_ref()
                    .filter(|_| e.summary.overwrite_first);
                if let (true, Some(t)) = (clean, abandoned) {
                    // Crash recovery abandoned the record `p` ends with and wrote an
                    // XLOG_OVERWRITE_CONTRECORD at the start of `e`, which must name it.
                    if e.summary.overwrites == Some(t.start) {
                        expect_prev = t.prev;
                    } else {
                        expect_prev = None;
                        items.push(Ev::Break {
                            seg: i,
                            brk: Break {
                                lsn: e.params.start,
                                record: None,
                                record_len: None,
                                written: 0,
                                why: Stop::BadHeader(format!(
                                    "the segment's first page says the record at {} was abandoned, but its first record is not the XLOG_OVERWRITE_CONTRECORD that names it",
                                    Lsn(t.start)
                                )),
                                after: t.prev,
                            },
                        });
                    }
                } else if let Some(pd) = pending.take() {
                    // `p` was all continuation of a record begun before it.
                    let seg = pd.seg;
                    if e.summary.overwrite_first && e.summary.overwrites == Some(pd.start) {
                        // Crash recovery abandoned that record here, as PostgreSQL does.
                        expect_prev = pd.prev;
                    } else {
                        match join_more(pd, e) {
                            Ok(Joined::Done(span)) => {
                                out.units += span.records;
                                expect_prev = Some(span.first);
                                consumed = span.switch;
                                items.push(Ev::Span { seg, span });
                            }
                            Ok(Joined::Continues(pd)) => pending = Some(pd),
                            Err(brk) => {
                                expect_prev = None;
                                items.push(Ev::Break { seg, brk });
                            }
                        }
                    }
                } else if clean && crossing {
                    match join(i - 1, p, e) {
                        Ok(Joined::Done(span)) => {
                            out.units += span.records;
                            expect_prev = Some(span.first);
                            consumed = span.switch;
                            items.push(Ev::Span { seg: i - 1, span });
                        }
                        Ok(Joined::Continues(pd)) => pending = Some(pd),
                        Err(brk) => {
                            let seg = if brk.lsn < e.params.start { i - 1 } else { i };
                            expect_prev = None;
                            items.push(Ev::Break { seg, brk });
                        }
                    }
                }
                // The first record of `e` must point back at the last one before it.
                let first = e.summary.spans.first();
                let starts_clean = e
                    .summary
                    .breaks
                    .first()
                    .is_none_or(|b| first.is_some_and(|s| s.first < b.lsn));
                if let (Some(want), Some(s), false) = (expect_prev, first, consumed) {
                    if starts_clean && s.first_prev != want && clean {
                        items.push(Ev::Break {
                            seg: i,
                            brk: Break {
                                lsn: s.first,
                                record: Some(s.first),
                                record_len: None,
                                written: 0,
                                why: Stop::BadPrev {
                                    got: s.first_prev,
                                    want,
                                },
                                after: Some(want),
                            },
                        });
                    }
                }
            }
            Some(p) => {
                // Segments missing between `p` and `e`.
                let missing = p.segno + 1;
                let name = segment_name(e.tli, missing, seg_size);
                let why = Stop::Missing(format!(
                    "segment {name} is missing{}",
                    if e.segno - p.segno > 2 {
                        format!(" (and {} after it)", e.segno - p.segno - 2)
                    } else {
                        String::new()
                    }
                ));
                let begun = pending.take();
                let brk = Break {
                    lsn: missing * seg_size,
                    record: begun
                        .as_ref()
                        .map(|pd| pd.start)
                        .or_else(|| p.summary.tail.as_ref().map(|t| t.start)),
                    record_len: None,
                    written: 0,
                    why,
                    after: None,
                };
                items.push(Ev::Break {
                    seg: begun.map_or(i - 1, |pd| pd.seg),
                    brk,
                });
            }
            None => {}
        }
        // A segment a switch consumed holds no WAL of its own after the continuation.
        let mut own: Vec<Ev> = Vec::new();
        if !consumed {
            own.extend(e.summary.spans.iter().map(|s| Ev::Span {
                seg: i,
                span: s.clone(),
            }));
            own.extend(e.summary.breaks.iter().map(|b| Ev::Break {
                seg: i,
                brk: b.clone(),
            }));
        }
        own.sort_by_key(Ev::lsn);
        items.extend(own);
        events.extend(items);
        // The newest segment's last record runs off its end into a segment that is not here.
        if i + 1 == segs.len() {
            if let Some(pd) = pending.take() {
                let name = segment_name(e.tli, e.segno + 1, seg_size);
                let seg = pd.seg;
                // Reported in the file the record starts in; seen where it runs off, at the end
                // of the newest segment (an archive's newest segment may end mid-record).
                let mut brk = pd.cut(Stop::Cut(format!(
                    "it continues into segment {name}, which is not here"
                )));
                brk.lsn = e.params.start + seg_size;
                events.push(Ev::Break { seg, brk });
            } else if let Some(t) = e.summary.tail.as_ref().filter(|_| !consumed) {
                let name = segment_name(e.tli, e.segno + 1, seg_size);
                let tot_len = t
                    .part
                    .prefix
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_le_bytes);
                events.push(Ev::Break {
                    seg: i,
                    brk: Break {
                        lsn: t.start,
                        record: Some(t.start),
                        record_len: Some(tot_len),
                        written: t.part.len(),
                        why: Stop::Cut(format!(
                            "it continues into segment {name}, which is not here"
                        )),
                        after: t.prev,
                    },
                });
            }
        }
    }
    // The WAL ends with a segment used to its end (full, or closed by a switch) and no next one:
    // replay then looks for the next segment and ends there, with no break to judge. When
    // pg_control or a data block shows WAL went on, that segment is lost.
    if let Some(Ev::Span { span, .. }) = events.last() {
        // Where the next record would be: the next segment boundary after a switch, else the
        // last record's MAXALIGN'd end, when that is a boundary. A joined span is labelled with
        // the segment its record starts in: the segment it ends in is found by position.
        let aligned = Lsn(span.end).align8();
        let next = if span.switch {
            Some(aligned.div_ceil(seg_size) * seg_size)
        } else {
            Some(aligned).filter(|a| a.is_multiple_of(seg_size))
        }
        .filter(|&n| !segs.iter().any(|e| e.params.start == n));
        let last = segs
            .iter()
            .rposition(|e| next.is_some_and(|n| e.params.start < n));
        let beyond = |l: u64| next.is_some_and(|n| l > n);
        let evidence = control
            .is_some_and(|c| beyond(c.checkpoint) || beyond(c.min_recovery_point))
            || data_lsn.is_some_and(beyond);
        if let (Some(n), Some(seg), true) = (next, last, evidence) {
            let tli = segs.get(seg).map_or(target, |e| e.tli);
            events.push(Ev::Break {
                seg,
                brk: Break {
                    lsn: n,
                    record: None,
                    record_len: None,
                    written: 0,
                    why: Stop::Missing(format!(
                        "segment {}, where the WAL goes on, is not here",
                        super::segment_name(tli, n / seg_size, seg_size)
                    )),
                    after: Some(span.last),
                },
            });
        }
    }
    out.warnings.extend(warnings);
    let newest = segs.len().saturating_sub(1);
    // Judge each break by what follows it.
    let verdicts: Vec<Option<(Verdict, String)>> = events
        .iter()
        .enumerate()
        .map(|(i, ev)| {
            let Ev::Break { seg, brk } = ev else {
                return None;
            };
            // The segment the stop is seen in: a record that runs off the newest segment is
            // seen there, whatever segment it began in.
            let seen = segs
                .iter()
                .rposition(|e| e.params.start <= brk.lsn)
                .unwrap_or(*seg)
                .max(*seg);
            let followed = events.iter().skip(i + 1).any(|later| match later {
                Ev::Span { seg: s, span } => {
                    *s > *seg
                        || (brk.record.is_some()
                            && (span.linked_from == brk.record
                                || Some(span.first_prev) == brk.record))
                }
                Ev::Break { .. } => false,
            });
            let evidence = if followed {
                Some("valid WAL follows it".to_owned())
            } else if control.is_some_and(|c| c.checkpoint > brk.lsn) {
                Some("pg_control's checkpoint lies beyond it, so it had been flushed".into())
            } else if control.is_some_and(|c| c.min_recovery_point > brk.lsn) {
                Some("pg_control's minimum recovery point lies beyond it, so it had been flushed".into())
            } else if let Some(l) = data_lsn.filter(|&l| l > brk.lsn) {
                Some(format!(
                    "a data block carries LSN {}, beyond it, and WAL is flushed before the blocks it describes, so it had been flushed",
                    Lsn(l)
                ))
            } else if dir.kind == WalDirKind::Archive
                && seen < newest
                && !segs.get(seen).is_some_and(|e| e.partial)
            {
                Some("an archived segment that is not the newest is complete by definition".into())
            } else {
                None
            };
            Some(match evidence {
                Some(why) => (Verdict::Damage, why),
                None if brk.why.is_clean_end() && brk.written == 0 => (Verdict::End, String::new()),
                None => (Verdict::Torn, String::new()),
            })
        })
        .collect();
    for (ev, v) in events.iter().zip(&verdicts) {
        let (Ev::Break { seg, brk }, Some(v)) = (ev, v) else {
            continue;
        };
        let Some(e) = segs.get(*seg) else { continue };
        if let Some(f) = finding(e, brk, v.0, &events, &v.1, seg_size) {
            out.findings.push(f);
        }
    }
    // The recovery verdict.
    let start = match (dir.kind, control) {
        (WalDirKind::DataDir { .. }, Some(c)) => c.redo,
        (WalDirKind::DataDir { .. }, None) => return None,
        (WalDirKind::Archive, _) => match (replay.start, events.first()) {
            (Some(s), _) => s,
            (None, Some(Ev::Span { span, .. })) => span.first,
            _ => segs.first().map_or(0, |e| e.params.start),
        },
    };
    let mut replayed = Replayed {
        timeline: target,
        ..Replayed::default()
    };
    let covered = events.iter().any(|ev| match ev {
        Ev::Span { span, .. } => span.first <= start && start < span.end.max(span.first + 1),
        Ev::Break { .. } => false,
    }) || events
        .iter()
        .any(|ev| matches!(ev, Ev::Span { span, .. } if span.first == start));
    let stop = events.iter().enumerate().find(|(_, ev)| match ev {
        Ev::Break { brk, .. } => brk.record.unwrap_or(brk.lsn) >= start,
        Ev::Span { .. } => false,
    });
    let last_end = |from: usize| {
        events
            .iter()
            .skip(from)
            .filter_map(|ev| match ev {
                Ev::Span { span, .. } => Some(span.end),
                Ev::Break { .. } => None,
            })
            .max()
    };
    let name = path.to_string_lossy().into_owned();
    let mut v = RecoveryVerdict {
        format: super::super::PostgresFormat::NAME.into(),
        path: name,
        start: Lsn(start).to_string(),
        stops_at: String::new(),
        last_replayed: None,
        end: String::new(),
        reaches_end: true,
        lost_records: 0,
        lost_commits: 0,
        first_lost_commit: None,
        last_lost_commit: None,
        backup_end: None,
        consistent: None,
        last_replayed_commit: None,
        detail: String::new(),
    };
    if !covered {
        v.reaches_end = false;
        v.stops_at = Lsn(start).to_string();
        v.end = last_end(0).map_or_else(|| Lsn(start).to_string(), |e| Lsn(e).to_string());
        v.detail = format!(
            "recovery must start at {}, which no valid record here holds: the server will refuse to start (\"could not locate required checkpoint record\")",
            Lsn(start)
        );
        if let (WalDirKind::DataDir { .. }, Some(_)) = (dir.kind, control) {
            if let Some(e) = segs.first() {
                let mut f = Finding::new(
                    FindingKind::Truncated,
                    0,
                    0,
                    format!(
                        "pg_control's checkpoint redo point {} is not in this WAL: the server will refuse to start",
                        Lsn(start)
                    ),
                );
                f.file = Some(e.file().0.to_path_buf());
                f.offset += e.file().1;
                out.findings.push(f);
            }
        }
        out.recovery.push(v);
        // The start's segment is missing, or holds no valid record there.
        let segno = start / seg_size;
        replayed.obstacle = Some(match segs.iter().find(|e| e.segno == segno) {
            Some(e) => Obstacle {
                segment: segment_name(e.tli, e.segno, seg_size),
                file: Some(e.file().0.to_path_buf()),
                offset: Some(start - e.params.start + e.file().1),
                missing: false,
            },
            None => Obstacle {
                segment: segment_name(timeline_of(dir, target, segno, seg_size), segno, seg_size),
                file: None,
                offset: None,
                missing: true,
            },
        });
        return Some(replayed);
    }
    // The last record replay applies: the last one before the stop.
    let upto = stop.as_ref().map_or(events.len(), |(i, _)| *i);
    v.last_replayed = events
        .iter()
        .take(upto)
        .filter_map(|ev| match ev {
            Ev::Span { span, .. } if span.records > 0 => Some(span.last),
            _ => None,
        })
        .max()
        .map(|l| Lsn(l).to_string());
    // The last commit replay applies: in a span before the stop, at or after the start (a
    // span's last commit is its newest; none after the start, none of it is replayed).
    replayed.last_commit = events
        .iter()
        .take(upto)
        .filter_map(|ev| match ev {
            Ev::Span { span, .. } if span.last_commit_lsn.is_some_and(|l| l >= start) => {
                span.last_commit
            }
            _ => None,
        })
        .max();
    v.last_replayed_commit = replayed.last_commit.map(pg_time);
    match stop {
        None => {
            let end = last_end(0).unwrap_or(start);
            v.stops_at = Lsn(end).to_string();
            v.end = Lsn(end).to_string();
            v.detail = format!(
                "recovery from {} replays to the end of the WAL at {}",
                Lsn(start),
                Lsn(end)
            );
        }
        Some((i, Ev::Break { seg, brk })) => {
            let at = brk.record.unwrap_or(brk.lsn);
            v.stops_at = Lsn(at).to_string();
            let verdict_of = |i: usize| verdicts.get(i).and_then(|v| v.as_ref()).map(|v| v.0);
            let damage = verdict_of(i) == Some(Verdict::Damage);
            if !damage {
                let end = events
                    .iter()
                    .take(i)
                    .filter_map(|ev| match ev {
                        Ev::Span { span, .. } => Some(span.end),
                        Ev::Break { .. } => None,
                    })
                    .max()
                    .unwrap_or(start);
                v.end = Lsn(end).to_string();
                v.detail = format!(
                    "recovery from {} replays to the end of the WAL at {}{}",
                    Lsn(start),
                    Lsn(at),
                    if verdict_of(i) == Some(Verdict::Torn) {
                        " (the record there is the crash's torn last write, which recovery discards by design)"
                    } else {
                        ""
                    }
                );
            } else {
                let seen = segs
                    .iter()
                    .rposition(|e| e.params.start <= brk.lsn)
                    .unwrap_or(*seg)
                    .max(*seg);
                // The damaged record's own segment, else the one the stop is seen in.
                let holder = segs
                    .iter()
                    .find(|e| (e.params.start..e.params.start + seg_size).contains(&at))
                    .or(segs.get(seen));
                replayed.obstacle = Some(match (&brk.why, holder) {
                    (Stop::Missing(_), _) | (_, None) => {
                        let segno = brk.lsn / seg_size;
                        Obstacle {
                            segment: segment_name(
                                timeline_of(dir, target, segno, seg_size),
                                segno,
                                seg_size,
                            ),
                            file: None,
                            offset: None,
                            missing: true,
                        }
                    }
                    (_, Some(e)) => Obstacle {
                        segment: segment_name(e.tli, e.segno, seg_size),
                        file: Some(e.file().0.to_path_buf()),
                        offset: Some(at.saturating_sub(e.params.start).min(seg_size) + e.file().1),
                        missing: false,
                    },
                });
                // The valid WAL that replay would never reach: later segments, and records that
                // link back past the failure, and everything after them.
                let mut counting = false;
                let mut end = at;
                for later in events.iter().skip(i + 1) {
                    if let Ev::Span { seg: s, span } = later {
                        counting |= *s > *seg
                            || span.linked_from == brk.record
                            || (brk.record.is_some() && Some(span.first_prev) == brk.record);
                        if counting {
                            v.lost_records += span.records;
                            v.lost_commits += span.commits;
                            if let Some(t) = span.first_commit {
                                v.first_lost_commit.get_or_insert_with(|| pg_time(t));
                            }
                            if let Some(t) = span.last_commit {
                                v.last_lost_commit = Some(pg_time(t));
                            }
                            end = end.max(span.end);
                        }
                    }
                }
                v.reaches_end = false;
                v.end = Lsn(end).to_string();
                let commits = match (&v.first_lost_commit, &v.last_lost_commit) {
                    (Some(a), Some(b)) if a != b => {
                        format!("{} commits, from {a} to {b}", v.lost_commits)
                    }
                    (Some(a), _) => format!("{} commit, at {a}", v.lost_commits),
                    _ => "no commit".into(),
                };
                let evidence = verdicts
                    .get(i)
                    .and_then(|v| v.as_ref())
                    .map(|v| v.1.clone())
                    .unwrap_or_default();
                v.detail = if v.lost_records == 0 {
                    format!(
                        "recovery would stop at LSN {}, but the WAL after it had been flushed ({evidence}): that WAL is lost, and starting now leaves data newer than the WAL",
                        Lsn(at)
                    )
                } else {
                    format!(
                        "recovery would stop at LSN {}; the WAL continues to {}: starting now silently discards {} records ({commits})",
                        Lsn(at),
                        Lsn(end),
                        v.lost_records
                    )
                };
            }
        }
        Some((_, Ev::Span { .. })) => {}
    }
    out.recovery.push(v);
    Some(replayed)
}

/// The finding for a break, or none for the real end of WAL.
fn finding(
    e: &SegEntry,
    brk: &Break,
    v: Verdict,
    events: &[Ev],
    evidence: &str,
    seg_size: u64,
) -> Option<Finding> {
    // The end of WAL is no finding; a refused segment was reported as such already.
    if v == Verdict::End || matches!(brk.why, Stop::Refused(_)) {
        return None;
    }
    let at = brk
        .record
        .filter(|&r| r >= e.params.start)
        .unwrap_or(brk.lsn);
    let offset = at.saturating_sub(e.params.start).min(e.summary.len);
    // The bad range: the record as written, else up to where valid WAL resumes in the file.
    let resumes = events
        .iter()
        .filter_map(|ev| match ev {
            Ev::Span { span, .. } if span.first > at && span.first < e.params.start + seg_size => {
                Some(span.first - e.params.start)
            }
            _ => None,
        })
        .min();
    let length = if brk.written > 0 {
        // A record may run on into later files: the range is what this file holds of it.
        brk.written.min(e.summary.len.saturating_sub(offset)).max(1)
    } else {
        resumes
            .unwrap_or(e.summary.len)
            .max(offset)
            .saturating_sub(offset)
            .max(u64::from(
                brk.why != Stop::Short && !matches!(brk.why, Stop::Missing(_)),
            ))
    };
    let mut owner = Owner::new();
    owner.insert("timeline".into(), e.tli.into());
    owner.insert("segment".into(), file_name(&e.path).into());
    owner.insert("lsn".into(), Lsn(brk.lsn).to_string().into());
    if let Some(r) = brk.record {
        owner.insert("record".into(), Lsn(r).to_string().into());
    }
    let what = describe(&brk.why);
    let record = match (brk.record, brk.record_len) {
        (Some(r), Some(len)) if brk.written > 0 && u64::from(len) > brk.written => format!(
            "the record at {} ({len} bytes, {} of them written)",
            Lsn(r),
            brk.written
        ),
        (Some(r), Some(len)) => format!("the record at {} ({len} bytes)", Lsn(r)),
        (Some(r), None) => format!("the record at {}", Lsn(r)),
        (None, _) => format!("the WAL at {}", Lsn(brk.lsn)),
    };
    let (kind, detail) = match v {
        Verdict::Torn => (
            FindingKind::TornTail,
            format!(
                "{record} is the last and is cut ({what}): the crash's unflushed last write, which crash recovery discards by design; nothing valid follows it"
            ),
        ),
        _ => {
            let why = evidence;
            let kind = match brk.why {
                Stop::Crc { .. } => FindingKind::ChecksumMismatch,
                Stop::Misdirected { .. } => FindingKind::MisdirectedWrite,
                Stop::Zero | Stop::ZeroPage => FindingKind::ZeroedPage,
                Stop::Short | Stop::Cut(_) | Stop::Missing(_) => FindingKind::Truncated,
                _ => FindingKind::BadHeader,
            };
            (
                kind,
                format!(
                    "{record}: {what}; {why}: PostgreSQL's recovery stops here and starts without everything after it"
                ),
            )
        }
    };
    let detail = match brk.after {
        Some(a) => format!(
            "{detail} (the last valid record before it is at {})",
            Lsn(a)
        ),
        None => detail,
    };
    if let Some(w) = &e.within {
        owner.insert("member".into(), w.member.clone().into());
    }
    let (file, base) = e.file();
    let mut f = Finding::new(kind, base + offset, length, detail).owner(owner);
    if let (Stop::Crc { stored, computed }, FindingKind::ChecksumMismatch) = (&brk.why, kind) {
        f = f.checksums(format!("0x{stored:08x}"), format!("0x{computed:08x}"));
    }
    f.file = Some(file.to_path_buf());
    Some(f)
}

/// What stopped the stream, in PostgreSQL's words where it has them.
pub(crate) fn describe(why: &Stop) -> String {
    match why {
        Stop::Zero => "zeros where a record should start".into(),
        Stop::ZeroPage => "an all-zero page".into(),
        Stop::PageHeader(s) | Stop::BadHeader(s) | Stop::BadBody(s) | Stop::Contrecord(s) => {
            s.clone()
        }
        Stop::Cut(s) | Stop::Missing(s) | Stop::Refused(s) => s.clone(),
        Stop::Misdirected { pageaddr } => format!(
            "unexpected pageaddr {}: a page of an older, recycled segment",
            Lsn(*pageaddr)
        ),
        Stop::BadPrev { got, want } if *want == 0 => {
            format!("record with incorrect prev-link {}", Lsn(*got))
        }
        Stop::BadPrev { got, want } => format!(
            "record with incorrect prev-link {} (it should be {})",
            Lsn(*got),
            Lsn(*want)
        ),
        Stop::Crc { .. } => "incorrect resource manager data checksum".into(),
        Stop::Short => "the file ends before the segment does".into(),
    }
}

/// A PostgreSQL timestamp (µs since 2000-01-01 UTC) in RFC 3339.
pub(crate) fn pg_time(us: i64) -> String {
    let secs = us.div_euclid(1_000_000) + 946_684_800;
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_of(segs: &[(u32, u64)], history: Option<(u32, Vec<(u32, u64)>)>) -> WalDir {
        let seg_size = 16u64 << 20;
        let mut d = WalDir {
            kind: WalDirKind::Archive,
            listed: Vec::new(),
            segments: Default::default(),
            histories: Default::default(),
            backups: Vec::new(),
        };
        for &(tli, segno) in segs {
            let path = std::path::PathBuf::from(segment_name(tli, segno, seg_size));
            let params = super::super::segment::SegParams {
                start: segno * seg_size,
                seg_size,
                page_size: 8192,
                tli,
                system_id: None,
            };
            d.segments.insert(
                path.clone(),
                SegEntry {
                    path,
                    tli,
                    segno,
                    partial: false,
                    params,
                    summary: Default::default(),
                    within: None,
                    size: seg_size,
                },
            );
        }
        if let Some((tli, entries)) = history {
            d.histories.insert(tli, super::super::History { entries });
        }
        d
    }

    /// Replay's path across timelines: an ancestor's files only up to its switch point (an old
    /// primary that kept archiving on timeline 1 past the switch is not read), the newest
    /// timeline from where it began; without a history file, the target timeline alone.
    #[test]
    fn the_chain_follows_the_history_and_stops_ancestors_at_their_switch() {
        let seg = 16u64 << 20;
        let files = [(1, 9), (1, 10), (1, 11), (1, 12), (2, 10), (2, 11)];
        let d = dir_of(&files, Some((2, vec![(1, 10 * seg + 0x100)])));
        let got: Vec<(u32, u64)> = chain(&d, 2, seg).iter().map(|e| (e.tli, e.segno)).collect();
        assert_eq!(got, vec![(1, 9), (2, 10), (2, 11)]);
        let d = dir_of(&files, None);
        let got: Vec<(u32, u64)> = chain(&d, 2, seg).iter().map(|e| (e.tli, e.segno)).collect();
        assert_eq!(got, vec![(2, 10), (2, 11)]);
        // A switch on a segment boundary: the parent ends with the segment before it.
        let d = dir_of(&files, Some((2, vec![(1, 10 * seg)])));
        let got: Vec<(u32, u64)> = chain(&d, 2, seg).iter().map(|e| (e.tli, e.segno)).collect();
        assert_eq!(got, vec![(1, 9), (2, 10), (2, 11)]);
    }

    /// A record running into the next segment whose continuation is cut there is an incomplete
    /// record — the crash's torn last write here — not one "longer than a segment" (regression:
    /// the cut was taken for a continuation that fills the segment).
    #[test]
    fn a_continuation_cut_in_the_next_segment_cuts_the_record() {
        use super::super::segment::{Break, Lead, Part, Span, Stop, Tail};
        let seg = 16u64 << 20;
        let mut d = dir_of(&[(1, 9), (1, 10)], None);
        d.kind = WalDirKind::DataDir {
            control: None,
            live: false,
        };
        let r = 10 * seg - 16;
        let mut head = vec![0u8; 16];
        head[..4].copy_from_slice(&100u32.to_le_bytes());
        for e in d.segments.values_mut() {
            if e.segno == 9 {
                e.summary.len = seg;
                e.summary.spans.push(Span {
                    first: 9 * seg + 40,
                    first_prev: 0,
                    last: r - 64,
                    end: r - 8,
                    records: 10,
                    commits: 0,
                    first_commit: None,
                    last_commit: None,
                    last_commit_lsn: None,
                    linked_from: None,
                    switch: false,
                });
                e.summary.tail = Some(Tail {
                    start: r,
                    prev: Some(r - 64),
                    part: Part {
                        prefix: head.clone(),
                        rest_crc: 0,
                        rest_len: 0,
                    },
                });
            } else {
                e.summary.len = seg;
                e.summary.lead = Some(Lead {
                    rem_len: 84,
                    part: Part::default(),
                    end: None,
                    cut: true,
                });
                e.summary.breaks.push(Break {
                    lsn: 10 * seg,
                    record: None,
                    record_len: None,
                    written: 0,
                    why: Stop::ZeroPage,
                    after: None,
                });
            }
        }
        let mut out = Conclusion::default();
        conclude_dir(
            Path::new("/x/pg_wal"),
            &d,
            true,
            None,
            Replay::default(),
            &mut out,
        );
        let torn: Vec<_> = out
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::TornTail)
            .collect();
        assert_eq!(torn.len(), 1, "{:?}", out.findings);
        assert_eq!(
            torn[0]
                .owner
                .as_ref()
                .and_then(|o| o.get("record"))
                .and_then(|v| v.as_str()),
            Some(Lsn(r).to_string().as_str())
        );
        assert!(
            out.warnings
                .iter()
                .all(|(_, w)| !w.contains("more than one segment")),
            "{:?}",
            out.warnings
        );
    }

    /// Regression (review of 2026-12-02): an `XLOG_SWITCH` whose header crosses into the next
    /// segment uses the rest of that segment; the zeros after it there are not an end of WAL
    /// in the middle, and the segment after it continues the chain.
    #[test]
    fn a_switch_crossing_a_segment_boundary_uses_the_next_segment() {
        use super::super::segment::{Break, Lead, Part, Span, Stop, Tail};
        let seg = 16u64 << 20;
        let mut d = dir_of(&[(1, 9), (1, 10), (1, 11)], None);
        let r = 10 * seg - 16; // the switch starts 16 bytes before the boundary
        let mut rec = [0u8; 24];
        rec[..4].copy_from_slice(&24u32.to_le_bytes());
        rec[8..16].copy_from_slice(&(r - 64).to_le_bytes());
        rec[16] = 0x40; // XLOG_SWITCH
        let crc = crc32c::crc32c(&rec[..20]);
        rec[20..24].copy_from_slice(&crc.to_le_bytes());
        let span = |first: u64, prev: u64, last: u64, end: u64| Span {
            first_prev: prev,
            ..plain_span(first, last, end)
        };
        for e in d.segments.values_mut() {
            e.summary.len = seg;
            match e.segno {
                9 => {
                    e.summary.spans.push(span(9 * seg + 40, 0, r - 64, r - 8));
                    e.summary.tail = Some(Tail {
                        start: r,
                        prev: Some(r - 64),
                        part: Part {
                            prefix: rec[..16].to_vec(),
                            rest_crc: 0,
                            rest_len: 0,
                        },
                    });
                }
                10 => {
                    e.summary.lead = Some(Lead {
                        rem_len: 8,
                        part: Part {
                            prefix: rec[16..].to_vec(),
                            rest_crc: 0,
                            rest_len: 0,
                        },
                        end: Some(10 * seg + 48),
                        cut: false,
                    });
                    // What the walk of segment 10 saw after it: the switch's unused rest.
                    e.summary.breaks.push(Break {
                        lsn: 10 * seg + 48,
                        record: None,
                        record_len: None,
                        written: 0,
                        why: Stop::Zero,
                        after: None,
                    });
                }
                _ => e
                    .summary
                    .spans
                    .push(span(11 * seg + 40, r, 11 * seg + 400, 11 * seg + 500)),
            }
        }
        let mut out = Conclusion::default();
        conclude_dir(
            Path::new("/x/archive"),
            &d,
            true,
            None,
            Replay::default(),
            &mut out,
        );
        assert!(out.findings.is_empty(), "{:#?}", out.findings);
        let v = out.recovery.first().expect("a verdict");
        assert!(v.reaches_end, "{v:?}");
        assert_eq!(v.end, Lsn(11 * seg + 500).to_string(), "{v:?}");
    }

    fn plain_span(first: u64, last: u64, end: u64) -> super::super::segment::Span {
        super::super::segment::Span {
            first,
            first_prev: 0,
            last,
            end,
            records: 10,
            commits: 0,
            first_commit: None,
            last_commit: None,
            last_commit_lsn: None,
            linked_from: None,
            switch: false,
        }
    }

    /// Regression (review of 2026-12-03): the last segment is used to its end by a record that
    /// ends a few bytes before the boundary (its MAXALIGN'd end is the boundary) and pg_control's
    /// checkpoint lies beyond: the next segment is lost.
    #[test]
    fn a_full_last_segment_with_a_checkpoint_beyond_it_has_lost_the_next() {
        let seg = 16u64 << 20;
        let mut d = dir_of(&[(1, 9)], None);
        let control = crate::postgres::control::ControlWal {
            system_id: 1,
            checkpoint: 10 * seg + 0x28,
            redo: 9 * seg + 40,
            timeline: 1,
            min_recovery_point: 0,
            wal_page_size: 8192,
            wal_segment_size: seg as u32,
        };
        d.kind = WalDirKind::DataDir {
            control: Some(control),
            live: false,
        };
        for e in d.segments.values_mut() {
            e.summary.len = seg;
            e.summary
                .spans
                .push(plain_span(9 * seg + 40, 10 * seg - 60, 10 * seg - 4));
        }
        let mut out = Conclusion::default();
        conclude_dir(
            Path::new("/x/pg_wal"),
            &d,
            true,
            None,
            Replay::default(),
            &mut out,
        );
        let v = out.recovery.first().expect("a verdict");
        assert!(!v.reaches_end, "{v:?}");
        assert!(
            out.findings.iter().any(|f| f.kind == FindingKind::Truncated
                && f.detail
                    .contains("segment 00000001000000000000000A, where the WAL goes on")),
            "{:#?}",
            out.findings
        );
    }

    /// Regression (review of 2026-12-03): an archive whose newest segment ends in the middle of
    /// a record longer than a segment (begun in the segment before) is an archive still being
    /// filled, not damage.
    #[test]
    fn a_long_record_running_off_an_archives_newest_segment_is_not_damage() {
        use super::super::segment::{Lead, Part, Tail};
        let seg = 16u64 << 20;
        let mut d = dir_of(&[(1, 1), (1, 2)], None);
        let start = 2 * seg - 4096;
        let tot_len: u32 = 40_000_000;
        let mut head = vec![0u8; 64];
        head[..4].copy_from_slice(&tot_len.to_le_bytes());
        head[8..16].copy_from_slice(&(start - 100).to_le_bytes());
        let tail = Part {
            prefix: head,
            rest_crc: 0,
            rest_len: 4096 - 64,
        };
        let lead = Part {
            prefix: vec![0; 64],
            rest_crc: 0,
            rest_len: seg - 64 - 2048 * 24,
        };
        for e in d.segments.values_mut() {
            e.summary.len = seg;
            if e.segno == 1 {
                e.summary
                    .spans
                    .push(plain_span(seg + 40, start - 100, start - 50));
                e.summary.tail = Some(Tail {
                    start,
                    prev: Some(start - 100),
                    part: tail.clone(),
                });
            } else {
                e.summary.lead = Some(Lead {
                    rem_len: tot_len - 4096,
                    part: lead.clone(),
                    end: None,
                    cut: false,
                });
            }
        }
        let mut out = Conclusion::default();
        conclude_dir(
            Path::new("/x/archive"),
            &d,
            true,
            None,
            Replay::default(),
            &mut out,
        );
        assert!(
            out.findings.iter().all(|f| f.kind == FindingKind::TornTail),
            "{:#?}",
            out.findings
        );
        assert!(out.recovery.first().is_some_and(|v| v.reaches_end));
    }

    /// Folded parts stand for the same bytes: the same header and CRC when joined.
    #[test]
    fn folded_parts_join_as_the_parts_do() {
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        for cuts in [[100usize, 2_000_000], [64, 65], [1_500_000, 2_999_999]] {
            let parts = [
                Part::new(&bytes[..cuts[0]]),
                Part::new(&bytes[cuts[0]..cuts[1]]),
                Part::new(&bytes[cuts[1]..]),
            ];
            let refs: Vec<&Part> = parts.iter().collect();
            let folded = fold(&parts);
            assert_eq!(folded.len(), bytes.len() as u64);
            assert_eq!(
                joined_crc(&[&folded], bytes.len() as u64),
                joined_crc(&refs, bytes.len() as u64),
                "{cuts:?}"
            );
            assert_eq!(folded, Part::new(&bytes), "{cuts:?}");
        }
    }

    #[test]
    fn pg_time_is_rfc3339() {
        assert_eq!(pg_time(0), "2000-01-01T00:00:00.000000Z");
        // 2026-12-01 20:14:57.5 UTC
        let unix = 1_796_156_097i64;
        let us = (unix - 946_684_800) * 1_000_000 + 500_000;
        assert_eq!(pg_time(us), "2026-12-01T20:14:57.500000Z");
        assert_eq!(pg_time(-1), "1999-12-31T23:59:59.999999Z");
    }
}
