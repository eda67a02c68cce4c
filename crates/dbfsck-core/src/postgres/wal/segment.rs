//! One WAL segment walked on its own (one task per segment): every page header, every record
//! that starts and ends in it, and what the segment hands to its neighbours — the record that
//! runs off its end, the continuation it starts with. `docs/postgres-wal.md` §2;
//! `../shared/formats-pgwal.md` §1–§3.

use super::record::{self, Decoded, Pieces, RecBytes};
use super::{u16_at, u32_at, u64_at, Lsn, MAX_RECORD};

/// What a segment must agree with: its position and the cluster's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegParams {
    /// LSN of the segment's first byte.
    pub start: u64,
    /// `wal_segment_size`.
    pub seg_size: u64,
    /// `XLOG_BLCKSZ`.
    pub page_size: u64,
    /// The timeline in the file's name: no page may carry a later one.
    pub tli: u32,
    /// pg_control's system identifier, when known.
    pub system_id: Option<u64>,
}

/// Why the record stream stops at a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `xl_tot_len` is 0 where a record starts: PostgreSQL's end-of-WAL signature.
    Zero,
    /// An all-zero page where a page header was expected.
    ZeroPage,
    /// A page header fails: magic, flags, long-header fields, timeline.
    PageHeader(String),
    /// A page whose `xlp_pageaddr` is not its own position (a recycled segment's old page).
    Misdirected { pageaddr: u64 },
    /// The record header is impossible (length, resource manager).
    BadHeader(String),
    /// `xl_prev` does not point at the previous record.
    BadPrev { got: u64, want: u64 },
    /// The record's CRC-32C fails.
    Crc { stored: u32, computed: u32 },
    /// The record verifies but its fragments do not add up to its length.
    BadBody(String),
    /// A continuation page lacks its continuation flag or length.
    Contrecord(String),
    /// The file ends before the segment does.
    Short,
    /// A record is cut where it crosses into the next segment (said how).
    Cut(String),
    /// A whole segment is missing where the WAL goes on.
    Missing(String),
    /// Recovery refuses the segment as a whole (the wrong size, another cluster's): already
    /// reported on the file, it stops replay at its start.
    Refused(String),
}

impl Stop {
    /// A clean end: nothing written here (zeros) or an old page of a recycled file.
    pub fn is_clean_end(&self) -> bool {
        matches!(
            self,
            Stop::Zero | Stop::ZeroPage | Stop::Misdirected { .. } | Stop::Short
        )
    }
}

/// A point where the record stream of a segment stops.
#[derive(Debug, Clone)]
pub(crate) struct Break {
    /// LSN where the failure was seen.
    pub lsn: u64,
    /// The start LSN of the record that fails (or that a bad page cut), when one does.
    pub record: Option<u64>,
    /// That record's `xl_tot_len`, when it was read.
    pub record_len: Option<u32>,
    /// The bytes of it the segment holds (from its start; for a cut record, what was written).
    pub written: u64,
    /// Why.
    pub why: Stop,
    /// The valid record just before it in this segment.
    pub after: Option<u64>,
}

/// A run of valid records, each linked to the one before by `xl_prev`.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    /// Start LSN of its first record.
    pub first: u64,
    /// That record's `xl_prev`.
    pub first_prev: u64,
    /// Start LSN of its last record.
    pub last: u64,
    /// End LSN of its last record (what PostgreSQL calls its end pointer).
    pub end: u64,
    /// Records in it.
    pub records: u64,
    /// Commit records among them, and the first and last commit times (µs since 2000-01-01).
    pub commits: u64,
    pub first_commit: Option<i64>,
    pub last_commit: Option<i64>,
    /// The start of the last commit record: whether a replay from a later point applies it.
    pub last_commit_lsn: Option<u64>,
    /// Its first record follows a record that failed (the chain test): the start of that one.
    pub linked_from: Option<u64>,
    /// It ends with an `XLOG_SWITCH`: the rest of the segment belongs to it.
    pub switch: bool,
}

/// Part of a record that crosses the segment boundary: the bytes on this side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Part {
    /// The first bytes (all of them when `full`).
    pub prefix: Vec<u8>,
    /// CRC-32C of the bytes after `prefix`, and how many they are.
    pub rest_crc: u32,
    pub rest_len: u64,
}

/// A prefix this long is kept of a boundary part; a part up to [`KEEP_WHOLE`] is kept whole
/// (so a commit record crossing the boundary is still decoded).
pub(crate) const PREFIX: usize = 64;
pub(crate) const KEEP_WHOLE: usize = 1 << 20;

impl Part {
    pub(crate) fn new(bytes: &[u8]) -> Part {
        if bytes.len() <= KEEP_WHOLE {
            return Part {
                prefix: bytes.to_vec(),
                rest_crc: 0,
                rest_len: 0,
            };
        }
        let (head, rest) = bytes.split_at(PREFIX);
        Part {
            prefix: head.to_vec(),
            rest_crc: crc32c::crc32c(rest),
            rest_len: rest.len() as u64,
        }
    }

    /// How many bytes the part stands for.
    pub fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.rest_len
    }

    /// Whether every byte is kept.
    pub fn full(&self) -> bool {
        self.rest_len == 0
    }
}

/// Builds the [`Part`] of bytes that come in pieces (a continuation, page by page) holding at
/// most [`KEEP_WHOLE`] of them: past that, the first [`PREFIX`] and a running CRC.
#[derive(Debug, Default)]
struct PartBuilder {
    bytes: Vec<u8>,
    spilled: bool,
    rest_crc: u32,
    rest_len: u64,
}

impl PartBuilder {
    fn len(&self) -> u64 {
        self.bytes.len() as u64 + self.rest_len
    }

    fn push(&mut self, mut s: &[u8]) {
        if !self.spilled {
            if self.bytes.len() + s.len() <= KEEP_WHOLE {
                self.bytes.extend_from_slice(s);
                return;
            }
            let fill = PREFIX.saturating_sub(self.bytes.len()).min(s.len());
            let (head, rest) = s.split_at(fill);
            self.bytes.extend_from_slice(head);
            s = rest;
            let held = self.bytes.split_off(PREFIX.min(self.bytes.len()));
            self.bytes.shrink_to_fit();
            self.rest_crc = crc32c::crc32c(&held);
            self.rest_len = held.len() as u64;
            self.spilled = true;
        }
        self.rest_crc = crc32c::crc32c_append(self.rest_crc, s);
        self.rest_len += s.len() as u64;
    }

    fn part(&self) -> Part {
        Part {
            prefix: self.bytes.clone(),
            rest_crc: self.rest_crc,
            rest_len: self.rest_len,
        }
    }
}

/// The record that runs off the end of the segment.
#[derive(Debug, Clone)]
pub(crate) struct Tail {
    /// Its start LSN.
    pub start: u64,
    /// The record before it (its `xl_prev` must name it).
    pub prev: Option<u64>,
    /// Its bytes in this segment.
    pub part: Part,
}

/// The continuation a segment starts with (its first page has `XLP_FIRST_IS_CONTRECORD`).
#[derive(Debug, Clone)]
pub(crate) struct Lead {
    /// `xlp_rem_len` of the first page: the bytes of the record still to come.
    pub rem_len: u32,
    /// The continuation bytes in this segment (the whole remainder, or what the segment holds).
    pub part: Part,
    /// Where the continuation ends (the record's end pointer), when it ends in this segment.
    pub end: Option<u64>,
    /// The continuation is cut in this segment (a bad page, the file's end): the record it
    /// continues is incomplete, not longer than the segment.
    pub cut: bool,
}

/// What one segment says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// The file's length.
    pub len: u64,
    /// Valid records, in runs.
    pub spans: Vec<Span>,
    /// Points where the stream stops, in LSN order.
    pub breaks: Vec<Break>,
    /// The record that continues into the next segment.
    pub tail: Option<Tail>,
    /// The continuation this segment starts with.
    pub lead: Option<Lead>,
    /// The magic of the first page (the WAL format version).
    pub magic: Option<u16>,
    /// Pages whose header verified.
    pub pages: u64,
    /// The walk stopped after [`MAX_BREAKS`] stops (garbage behind valid page headers): memory
    /// stays bounded whatever the damage.
    pub gave_up: bool,
    /// The first page has `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: the record the previous segment
    /// ends with was abandoned by crash recovery; `overwrites` is the LSN the segment's first
    /// record (an `XLOG_OVERWRITE_CONTRECORD`) names.
    pub overwrite_first: bool,
    pub overwrites: Option<u64>,
    /// The system identifier of the first page's long header, when that page verified: whose
    /// cluster's WAL this is.
    pub system_id: Option<u64>,
}

/// Stops kept per segment; past them the segment's walk ends, saying so.
pub(crate) const MAX_BREAKS: usize = 256;

impl Summary {
    /// Records verified.
    pub fn records(&self) -> u64 {
        self.spans.iter().map(|s| s.records).sum()
    }
}

/// `XLogPageHeaderData` fields a walker uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageHeader {
    pub info: u16,
    pub rem_len: u32,
    pub size: u64,
}

pub(crate) const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// The page replaces a continuation that was never written: crash recovery abandoned the record
/// it continued and wrote an `XLOG_OVERWRITE_CONTRECORD` there (PostgreSQL 13–17's number).
const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
const XLP_LONG_HEADER: u16 = 0x0002;
const XLP_ALL_FLAGS: u16 = 0x000F;
const SHORT_HEADER: u64 = 24;
const LONG_HEADER: u64 = 40;

/// Whether `magic` is a WAL page magic of a supported major version (13–17).
pub(crate) fn known_magic(magic: u16) -> bool {
    super::major_of_magic(magic).is_some()
}

/// The start of the page after the one holding `off`. WAL page sizes are powers of two
/// (checked when a segment is opened): a mask, not a division, on every record.
fn next_page(off: u64, ps: u64) -> u64 {
    (off & !(ps - 1)) + ps
}

/// Checks the header of the WAL page `b` that belongs at LSN `addr` of a segment with `p`'s
/// settings, as PostgreSQL does (`XLogReaderValidatePageHeader`); `magic` and `last_tli` carry
/// what earlier pages of the same stream said.
pub(crate) fn check_page(
    b: &[u8],
    addr: u64,
    p: &SegParams,
    magic: &mut Option<u16>,
    last_tli: &mut u32,
) -> Result<PageHeader, Stop> {
    let page_magic = u16_at(b, 0).unwrap_or_default();
    let info = u16_at(b, 2).unwrap_or_default();
    let tli = u32_at(b, 4).unwrap_or_default();
    let pageaddr = u64_at(b, 8).unwrap_or_default();
    let rem_len = u32_at(b, 16).unwrap_or_default();
    if pageaddr != addr {
        // Only a page that is not where it belongs can be all zero: checked only then.
        if crate::all_zero(b) {
            return Err(Stop::ZeroPage);
        }
        return Err(Stop::Misdirected { pageaddr });
    }
    if !known_magic(page_magic) {
        return Err(Stop::PageHeader(format!(
            "invalid magic number {page_magic:04X} (not a PostgreSQL 13–17 WAL page)"
        )));
    }
    match *magic {
        Some(m) if m != page_magic => {
            return Err(Stop::PageHeader(format!(
                "magic number {page_magic:04X} differs from the segment's {m:04X}"
            )))
        }
        _ => *magic = Some(page_magic),
    }
    if info & !XLP_ALL_FLAGS != 0 {
        return Err(Stop::PageHeader(format!("invalid info bits {info:04X}")));
    }
    let long = info & XLP_LONG_HEADER != 0;
    let first = addr.is_multiple_of(p.seg_size);
    if first != long {
        return Err(Stop::PageHeader(if first {
            "the segment's first page lacks its long header".into()
        } else {
            "a long header on a page that does not start a segment".into()
        }));
    }
    if tli == 0 || tli > p.tli {
        return Err(Stop::PageHeader(format!(
            "timeline {tli} on a page of a timeline-{} segment",
            p.tli
        )));
    }
    if tli < *last_tli {
        return Err(Stop::PageHeader(format!(
            "out-of-sequence timeline ID {tli} (after {})",
            *last_tli
        )));
    }
    if long {
        let sysid = u64_at(b, 24).unwrap_or_default();
        let seg = u32_at(b, 32).unwrap_or_default();
        let blck = u32_at(b, 36).unwrap_or_default();
        if u64::from(seg) != p.seg_size {
            return Err(Stop::PageHeader(format!(
                "the long header says {seg}-byte segments, not {}",
                p.seg_size
            )));
        }
        if u64::from(blck) != p.page_size {
            return Err(Stop::PageHeader(format!(
                "the long header says {blck}-byte WAL pages, not {}",
                p.page_size
            )));
        }
        if let Some(id) = p.system_id.filter(|&id| id != sysid) {
            return Err(Stop::PageHeader(format!(
                "WAL from another database system: system identifier {sysid}, pg_control says {id}"
            )));
        }
    }
    *last_tli = tli;
    Ok(PageHeader {
        info,
        rem_len,
        size: if long { LONG_HEADER } else { SHORT_HEADER },
    })
}

/// The walker of one segment.
struct Walker<'a> {
    bytes: &'a [u8],
    p: SegParams,
    magic: Option<u16>,
    out: Summary,
    /// The highest page timeline so far (pages may not go back).
    tli: u32,
    span: Option<Span>,
    /// For `dbfsck inspect`: the records starting in `[lo, hi)`, described.
    trace: Option<Trace>,
    /// The pieces of the last record, kept for the next (no allocation per record).
    scratch: Vec<&'a [u8]>,
}

/// What `dbfsck inspect` shows of the records starting on one page.
struct Trace {
    lo: u64,
    hi: u64,
    lines: Vec<(String, String)>,
}

/// Walks a segment: `bytes` is the whole file.
pub(crate) fn walk(bytes: &[u8], p: SegParams) -> Summary {
    let mut w = Walker::new(bytes, p, None);
    w.run();
    w.out.magic = w.magic;
    if w.out.pages > 0 {
        w.out.system_id = bytes
            .get(24..32)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
    }
    w.out
}

/// `dbfsck inspect` of page `page` (an index) of a segment: its header fields, whether it
/// verifies, and every record that starts on it, judged as the walk of the segment judges it.
pub(crate) fn inspect_page(bytes: &[u8], p: SegParams, page: u64) -> Vec<(String, String)> {
    let ps = p.page_size;
    let off = page * ps;
    let mut fields = Vec::new();
    let b = usize::try_from(off)
        .ok()
        .and_then(|o| bytes.get(o..))
        .unwrap_or_default();
    let f = |k: &str, v: String| (k.to_owned(), v);
    fields.push(f("page LSN", Lsn(p.start + off).to_string()));
    if let (Some(magic), Some(info), Some(tli), Some(addr), Some(rem)) = (
        u16_at(b, 0),
        u16_at(b, 2),
        u32_at(b, 4),
        u64_at(b, 8),
        u32_at(b, 16),
    ) {
        let major =
            super::major_of_magic(magic).map_or("unknown".into(), |m| format!("PostgreSQL {m}"));
        fields.push(f("xlp_magic", format!("0x{magic:04X} ({major})")));
        fields.push(f("xlp_info", format!("0x{info:04X}")));
        fields.push(f("xlp_tli", tli.to_string()));
        fields.push(f("xlp_pageaddr", Lsn(addr).to_string()));
        fields.push(f("xlp_rem_len", rem.to_string()));
        if info & XLP_LONG_HEADER != 0 {
            if let (Some(sysid), Some(seg), Some(blck)) =
                (u64_at(b, 24), u32_at(b, 32), u32_at(b, 36))
            {
                fields.push(f("xlp_sysid", sysid.to_string()));
                fields.push(f("xlp_seg_size", seg.to_string()));
                fields.push(f("xlp_xlog_blcksz", blck.to_string()));
            }
        }
    }
    let mut w = Walker::new(bytes, p, None);
    // The page on its own (the magic and timeline of the pages before it taken as they are).
    if page > 0 {
        let _ = w.page(0);
    }
    let header = match w.page(off) {
        Ok(_) => "valid".to_owned(),
        Err(why) => format!("fails: {}", super::conclude::describe(&why)),
    };
    fields.push(f("page header", header));
    let mut w = Walker::new(
        bytes,
        p,
        Some(Trace {
            lo: p.start + off,
            hi: p.start + off + ps,
            lines: Vec::new(),
        }),
    );
    w.run();
    let lines = w.trace.map(|t| t.lines).unwrap_or_default();
    if lines.is_empty() {
        fields.push(f("records", "none start on this page".into()));
    }
    fields.extend(lines);
    let fails = fields.iter().any(|(_, v)| v.contains("fails: "));
    fields.push(f(
        "verdict",
        if fails {
            "fails (above); whether that is the end of WAL, the crash's torn last write or damage is decided by a scan of the whole WAL directory".into()
        } else {
            "valid".into()
        },
    ));
    fields
}

/// Where reading a record's bytes ended.
enum Gathered<'a> {
    /// All of it.
    Whole(Rec<'a>),
    /// The segment ends first: the record continues in the next one.
    RunsOff(Vec<u8>),
    /// Something stopped it.
    Cut(Vec<u8>, Stop, u64),
    /// A continuation page says the record was abandoned by crash recovery: the stream goes on
    /// at this LSN, with the record that replaces it.
    Overwritten(u64),
}

/// A whole record's bytes: one slice when it lies on one page (most records: judged without
/// building a list of pieces), else the pieces on its pages.
enum Rec<'a> {
    One(&'a [u8]),
    Many(Pieces<'a>),
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8], p: SegParams, trace: Option<Trace>) -> Walker<'a> {
        Walker {
            bytes,
            p,
            magic: None,
            out: Summary {
                len: bytes.len() as u64,
                ..Summary::default()
            },
            tli: 0,
            span: None,
            trace,
            scratch: Vec::new(),
        }
    }

    fn seg_end(&self) -> u64 {
        self.p.start + self.p.seg_size
    }

    fn off(&self, lsn: u64) -> u64 {
        lsn - self.p.start
    }

    /// Validates the page at `page` (an offset in the file, a multiple of the page size).
    fn page(&mut self, page: u64) -> Result<PageHeader, Stop> {
        let size = self.p.page_size;
        let Some(b) = usize::try_from(page)
            .ok()
            .and_then(|o| self.bytes.get(o..o + size as usize))
        else {
            return Err(Stop::Short);
        };
        let h = check_page(
            b,
            self.p.start + page,
            &self.p,
            &mut self.magic,
            &mut self.tli,
        )?;
        self.out.pages += 1;
        Ok(h)
    }

    fn record_break(&mut self, b: Break) {
        self.close_span();
        if self.out.breaks.len() >= MAX_BREAKS {
            self.out.gave_up = true;
            return;
        }
        self.out.breaks.push(b);
    }

    fn close_span(&mut self) {
        if let Some(s) = self.span.take() {
            self.out.spans.push(s);
        }
    }

    fn run(&mut self) {
        let ps = self.p.page_size;
        if ps == 0 || self.p.seg_size < ps {
            return;
        }
        // The first page: its header, then the continuation of a record from the last segment.
        let mut pos = match self.page(0) {
            Ok(h) if h.info & XLP_FIRST_IS_CONTRECORD != 0 => match self.lead(h) {
                Some(next) => next,
                None => return,
            },
            Ok(h) => {
                self.out.overwrite_first = h.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0;
                self.p.start + h.size
            }
            Err(why) => {
                self.record_break(Break {
                    lsn: self.p.start,
                    record: None,
                    record_len: None,
                    written: 0,
                    why,
                    after: None,
                });
                match self.resync(ps) {
                    Some(p) => p,
                    None => return,
                }
            }
        };
        let mut prev: Option<u64> = None;
        // After a failing record whose length is known, the next record is tried where it
        // would start (the chain test); `link` is the failing record's start.
        let mut link: Option<u64> = None;
        // The record crash recovery abandoned: the next record must be the
        // XLOG_OVERWRITE_CONTRECORD that names it.
        let mut overwritten: Option<u64> = None;
        loop {
            if self.out.gave_up {
                self.close_span();
                return;
            }
            if pos >= self.seg_end() {
                self.close_span();
                return;
            }
            let off = self.off(pos);
            if off >= self.out.len {
                // The file ends before the segment does.
                self.close_span();
                if link.is_none() {
                    self.out.breaks.push(Break {
                        lsn: pos,
                        record: None,
                        record_len: None,
                        written: 0,
                        why: Stop::Short,
                        after: prev,
                    });
                }
                return;
            }
            if off & (ps - 1) == 0 {
                let why = match self.page(off) {
                    Ok(h) if h.info & XLP_FIRST_IS_CONTRECORD != 0 => Stop::Contrecord(format!(
                        "the page continues a record (contrecord flag, {} bytes) where a new record was expected",
                        h.rem_len
                    )),
                    Ok(h) => {
                        pos += h.size;
                        continue;
                    }
                    Err(why) => why,
                };
                self.fail(pos, None, None, 0, why, prev, link);
                match self.resync(off + ps) {
                    Some(p) => pos = p,
                    None => return,
                }
                prev = None;
                link = None;
                continue;
            }
            let tot_len = usize::try_from(off)
                .ok()
                .and_then(|o| u32_at(self.bytes, o))
                .unwrap_or_default();
            let header_bad = if tot_len == 0 {
                Some(Stop::Zero)
            } else if (tot_len as usize) < record::HEADER {
                Some(Stop::BadHeader(format!(
                    "invalid record length: wanted 24, got {tot_len}"
                )))
            } else if u64::from(tot_len) > MAX_RECORD {
                Some(Stop::BadHeader(format!(
                    "invalid record length {tot_len} (more than 1 GiB)"
                )))
            } else {
                None
            };
            if let Some(why) = header_bad {
                self.trace_line(pos, format!("fails: {}", super::conclude::describe(&why)));
                self.fail(pos, Some(pos), Some(tot_len), 0, why, prev, link);
                match self.resync(next_page(off, ps)) {
                    Some(p) => pos = p,
                    None => return,
                }
                prev = None;
                link = None;
                continue;
            }
            let want_prev = link.or(prev);
            match self.gather(pos, tot_len, want_prev) {
                Gathered::Overwritten(next) => {
                    self.trace_line(
                        pos,
                        format!("{tot_len} bytes, abandoned by crash recovery (its continuation page was overwritten)"),
                    );
                    overwritten = Some(pos);
                    pos = next;
                    continue;
                }
                Gathered::RunsOff(bytes) => {
                    self.close_span();
                    self.out.tail = Some(Tail {
                        start: pos,
                        prev: want_prev,
                        part: Part::new(&bytes),
                    });
                    return;
                }
                Gathered::Cut(bytes, why, at) => {
                    let written = bytes.len() as u64;
                    self.trace_line(
                        pos,
                        format!(
                            "{tot_len} bytes, {written} of them here: fails: {}",
                            super::conclude::describe(&why)
                        ),
                    );
                    // A record whose only fault is its prev-link still has a trusted length: try
                    // the record after it (the chain test), as after a CRC failure.
                    let chained = matches!(why, Stop::BadPrev { .. }) && link.is_none();
                    self.fail(at, Some(pos), Some(tot_len), written, why, prev, link);
                    prev = None;
                    if chained {
                        link = Some(pos);
                        pos = Lsn(record::end_lsn(
                            pos,
                            u64::from(tot_len),
                            self.p.page_size,
                            self.p.seg_size,
                        ))
                        .align8();
                        continue;
                    }
                    match self.resync(next_page(self.off(at), ps)) {
                        Some(p) => pos = p,
                        None => return,
                    }
                    link = None;
                }
                Gathered::Whole(rec) => {
                    let written = match &rec {
                        Rec::One(one) => one.len(),
                        Rec::Many(parts) => parts.total(),
                    } as u64;
                    let end = record::end_lsn(pos, written, self.p.page_size, self.p.seg_size);
                    self.trace_record(pos, &rec, want_prev);
                    let v15 = self
                        .magic
                        .and_then(super::major_of_magic)
                        .is_some_and(|m| m >= 15);
                    // The header was checked as it was gathered.
                    let checked = match rec {
                        Rec::One(one) => record::check_body(one, v15),
                        Rec::Many(parts) => {
                            let checked = record::check_body(&parts, v15);
                            let mut spare = parts.0;
                            spare.clear();
                            self.scratch = spare;
                            checked
                        }
                    };
                    match checked {
                        Ok(dec) if overwritten.is_some_and(|r| dec.overwritten != Some(r)) => {
                            let r = overwritten.take().unwrap_or_default();
                            let why = Stop::BadHeader(format!(
                                "the page says the record at {} was abandoned, but the record here is not the XLOG_OVERWRITE_CONTRECORD that names it",
                                Lsn(r)
                            ));
                            self.fail(pos, Some(pos), Some(tot_len), 0, why, prev, link);
                            match self.resync(next_page(self.off(pos), ps)) {
                                Some(p) => pos = p,
                                None => return,
                            }
                            prev = None;
                            link = None;
                            continue;
                        }
                        Ok(dec) => {
                            overwritten = None;
                            self.add_record(pos, end, &dec, link.take());
                            if dec.is_switch() {
                                if let Some(s) = self.span.as_mut() {
                                    s.switch = true;
                                }
                                self.close_span();
                                return;
                            }
                            prev = Some(pos);
                        }
                        Err(why) => {
                            let chained = matches!(
                                why,
                                Stop::Crc { .. } | Stop::BadPrev { .. } | Stop::BadBody(_)
                            );
                            self.fail(pos, Some(pos), Some(tot_len), written, why, prev, link);
                            prev = None;
                            if chained {
                                // The chain test: is there a record where the next would start,
                                // pointing back at this one?
                                link = Some(pos);
                            } else {
                                link = None;
                                match self.resync(next_page(self.off(end), ps)) {
                                    Some(p) => {
                                        pos = p;
                                        continue;
                                    }
                                    None => return,
                                }
                            }
                        }
                    }
                    pos = Lsn(end).align8();
                }
            }
        }
    }

    /// Records a failure. A failure right after a
    /// failing record (the chain test found no record linking back) is not a second finding:
    /// the walk resynchronises at the next valid page instead.
    #[expect(
        clippy::too_many_arguments,
        reason = "one break's fields, named at each call"
    )]
    fn fail(
        &mut self,
        lsn: u64,
        record: Option<u64>,
        record_len: Option<u32>,
        written: u64,
        why: Stop,
        prev: Option<u64>,
        link: Option<u64>,
    ) {
        if link.is_none() {
            self.record_break(Break {
                lsn,
                record,
                record_len,
                written,
                why,
                after: prev,
            });
        } else {
            self.close_span();
        }
    }

    /// The first record start on a valid page at or after `from` (a page offset), the way
    /// PostgreSQL's XLogFindNextRecord resynchronises: past the page's continuation.
    fn resync(&mut self, from: u64) -> Option<u64> {
        if self.out.breaks.len() >= MAX_BREAKS {
            self.out.gave_up = true;
            return None;
        }
        let ps = self.p.page_size;
        let mut page = from.div_ceil(ps) * ps;
        let limit = self.out.len.min(self.p.seg_size);
        while page + ps <= limit {
            // A page that fails its header is skipped here: it was reported where the stream
            // stopped, or lies beyond the end.
            let saved_tli = self.tli;
            let saved_magic = self.magic;
            let saved_pages = self.out.pages;
            match self.page(page) {
                Ok(h) => {
                    let payload = ps - h.size;
                    let rem = Lsn(u64::from(h.rem_len)).align8();
                    if h.info & XLP_FIRST_IS_CONTRECORD == 0 {
                        return Some(self.p.start + page + h.size);
                    }
                    if rem < payload {
                        return Some(self.p.start + page + h.size + rem);
                    }
                }
                Err(_) => {
                    self.tli = saved_tli;
                    self.magic = saved_magic;
                    self.out.pages = saved_pages;
                }
            }
            page += ps;
        }
        None
    }

    /// The continuation on the first page (and those after it); returns where the next record
    /// starts, or `None` when the continuation fills the segment.
    fn lead(&mut self, first: PageHeader) -> Option<u64> {
        let ps = self.p.page_size;
        let rem_total = u64::from(first.rem_len);
        // Page by page, holding at most KEEP_WHOLE bytes whatever the record's length.
        let mut bytes = PartBuilder::default();
        let mut page = 0u64;
        let mut hdr = first;
        loop {
            let left = rem_total - bytes.len();
            if u64::from(hdr.rem_len) != left || hdr.rem_len == 0 {
                let why = Stop::Contrecord(format!(
                    "invalid contrecord length {} (expected {left})",
                    hdr.rem_len
                ));
                self.lead_cut(first.rem_len, bytes.part(), self.p.start + page, why);
                return self.resync(page + ps);
            }
            let start = page + hdr.size;
            let take = left.min(ps - hdr.size);
            let slice = usize::try_from(start)
                .ok()
                .and_then(|s| self.bytes.get(s..s + take as usize));
            let Some(slice) = slice else {
                self.lead_cut(
                    first.rem_len,
                    bytes.part(),
                    self.p.start + start,
                    Stop::Short,
                );
                return None;
            };
            bytes.push(slice);
            if bytes.len() == rem_total {
                let end = self.p.start + start + take;
                self.out.lead = Some(Lead {
                    rem_len: first.rem_len,
                    part: bytes.part(),
                    end: Some(end),
                    cut: false,
                });
                return Some(Lsn(end).align8());
            }
            page += ps;
            if page >= self.p.seg_size {
                // The continuation fills this segment and goes on into the next.
                self.out.lead = Some(Lead {
                    rem_len: first.rem_len,
                    part: bytes.part(),
                    end: None,
                    cut: false,
                });
                return None;
            }
            match self.page(page) {
                Ok(h) if h.info & XLP_FIRST_IS_CONTRECORD != 0 => hdr = h,
                Ok(h) if h.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 => {
                    // Crash recovery abandoned the record this continues and wrote an
                    // XLOG_OVERWRITE_CONTRECORD here, where its continuation stopped: the
                    // stream goes on with it (the join checks that it names that record).
                    self.out.lead = Some(Lead {
                        rem_len: first.rem_len,
                        part: bytes.part(),
                        end: None,
                        cut: true,
                    });
                    self.out.overwrite_first = true;
                    return Some(self.p.start + page + h.size);
                }
                other => {
                    let why = match other {
                        Err(why) => why,
                        Ok(_) => Stop::Contrecord("there is no contrecord flag".into()),
                    };
                    self.lead_cut(first.rem_len, bytes.part(), self.p.start + page, why);
                    return self.resync(page + ps);
                }
            }
        }
    }

    /// The continuation this segment starts with is cut at `lsn`: what it holds of it, and
    /// the stop.
    fn lead_cut(&mut self, rem_len: u32, part: Part, lsn: u64, why: Stop) {
        self.out.lead = Some(Lead {
            rem_len,
            part,
            end: None,
            cut: true,
        });
        self.record_break(Break {
            lsn,
            record: None,
            record_len: None,
            written: 0,
            why,
            after: None,
        });
    }

    /// Reads the `tot_len` bytes of the record at `pos`, across page headers. The header is
    /// checked as soon as it is whole, as PostgreSQL does (a bad `xl_prev` is reported before a
    /// missing continuation).
    fn gather(&mut self, pos: u64, tot_len: u32, want_prev: Option<u64>) -> Gathered<'a> {
        let ps = self.p.page_size;
        let total = u64::from(tot_len);
        // The record is judged where it lies: one slice, or the pieces on its pages.
        let all: &'a [u8] = self.bytes;
        // A record on one page is a slice of it.
        let first = self.off(pos);
        if total <= next_page(first, ps) - first {
            if let Some(one) = usize::try_from(first)
                .ok()
                .and_then(|o| all.get(o..o.checked_add(total as usize)?))
            {
                return match record::check_header(one, pos, want_prev) {
                    Ok(()) => Gathered::Whole(Rec::One(one)),
                    Err(why) => Gathered::Cut(one.to_vec(), why, pos),
                };
            }
        }
        let mut parts = Pieces(std::mem::take(&mut self.scratch));
        parts.0.clear();
        let mut have = 0u64;
        let mut at = pos;
        let mut header_checked = false;
        let owned = |parts: &Pieces<'a>| parts.0.concat();
        loop {
            let off = self.off(at);
            let page_end = next_page(off, ps);
            let take = (total - have).min(page_end - off);
            let slice = usize::try_from(off)
                .ok()
                .and_then(|o| all.get(o..o + take as usize));
            let Some(slice) = slice else {
                // The file ends inside the record.
                parts.0.push(all.get(off as usize..).unwrap_or_default());
                return Gathered::Cut(owned(&parts), Stop::Short, at);
            };
            parts.0.push(slice);
            have += take;
            if !header_checked && have >= record::HEADER as u64 {
                header_checked = true;
                if let Err(why) = record::check_header(&parts, pos, want_prev) {
                    return Gathered::Cut(owned(&parts), why, pos);
                }
            }
            if have == total {
                return Gathered::Whole(Rec::Many(parts));
            }
            at = self.p.start + page_end;
            if page_end >= self.p.seg_size {
                return Gathered::RunsOff(owned(&parts));
            }
            match self.page(page_end) {
                Ok(h) if h.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 => {
                    return Gathered::Overwritten(at + h.size)
                }
                Ok(h) if h.info & XLP_FIRST_IS_CONTRECORD == 0 => {
                    return Gathered::Cut(
                        owned(&parts),
                        Stop::Contrecord("there is no contrecord flag".into()),
                        at,
                    )
                }
                Ok(h) if u64::from(h.rem_len) != total - have => {
                    let why = Stop::Contrecord(format!(
                        "invalid contrecord length {} (expected {})",
                        h.rem_len,
                        total - have
                    ));
                    return Gathered::Cut(owned(&parts), why, at);
                }
                Ok(h) => at += h.size,
                Err(why) => return Gathered::Cut(owned(&parts), why, at),
            }
        }
    }

    /// For `dbfsck inspect`: a line about the record at `pos`, when it is on the traced page.
    fn trace_line(&mut self, pos: u64, text: String) {
        if let Some(t) = self.trace.as_mut().filter(|t| (t.lo..t.hi).contains(&pos)) {
            t.lines.push((format!("record {}", Lsn(pos)), text));
        }
    }

    fn trace_record(&mut self, pos: u64, rec: &Rec<'_>, want_prev: Option<u64>) {
        if !self
            .trace
            .as_ref()
            .is_some_and(|t| (t.lo..t.hi).contains(&pos))
        {
            return;
        }
        let joined = match rec {
            Rec::One(one) => one.to_vec(),
            Rec::Many(parts) => parts.0.concat(),
        };
        let bytes = joined.as_slice();
        let v15 = self
            .magic
            .and_then(super::major_of_magic)
            .is_some_and(|m| m >= 15);
        let prev = u64_at(bytes, 8).unwrap_or_default();
        let text = format!(
            "{} bytes, rmgr {}, info 0x{:02X}, xid {}, prev {}, crc stored 0x{:08x} computed 0x{:08x}: {}",
            bytes.len(),
            record::rmgr_name(bytes.get(17).copied().unwrap_or_default()),
            bytes.get(16).copied().unwrap_or_default(),
            u32_at(bytes, 4).unwrap_or_default(),
            Lsn(prev),
            record::stored_crc(bytes),
            record::crc(bytes),
            match record::check(bytes, pos, want_prev, v15) {
                Ok(d) => match d.commit_time {
                    Some(t) => format!("valid (commit at {})", super::conclude::pg_time(t)),
                    None => "valid".into(),
                },
                Err(why) => format!("fails: {}", super::conclude::describe(&why)),
            }
        );
        self.trace_line(pos, text);
    }

    fn add_record(&mut self, start: u64, end: u64, dec: &Decoded, linked_from: Option<u64>) {
        if self.out.spans.is_empty() && self.span.is_none() && self.out.breaks.is_empty() {
            self.out.overwrites = dec.overwritten;
        }
        if linked_from.is_some() {
            self.close_span();
        }
        let s = self.span.get_or_insert(Span {
            first: start,
            first_prev: dec.prev,
            last: start,
            end,
            records: 0,
            commits: 0,
            first_commit: None,
            last_commit: None,
            last_commit_lsn: None,
            linked_from,
            switch: false,
        });
        s.last = start;
        s.end = end;
        s.records += 1;
        if let Some(t) = dec.commit_time {
            s.commits += 1;
            s.first_commit.get_or_insert(t);
            s.last_commit = Some(t);
            s.last_commit_lsn = Some(start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment of `pages` valid page headers, each page starting with a 32-byte record whose
    /// CRC fails, then zeros.
    fn failing_pages(pages: u64) -> (Vec<u8>, SegParams) {
        let ps = 8192u64;
        let p = SegParams {
            start: 0x100_0000,
            seg_size: pages * ps,
            page_size: ps,
            tli: 1,
            system_id: None,
        };
        let mut b = vec![0u8; (pages * ps) as usize];
        for (i, page) in b.chunks_mut(ps as usize).enumerate() {
            page[..2].copy_from_slice(&0xD110u16.to_le_bytes());
            let long = i == 0;
            page[2..4].copy_from_slice(&(if long { 2u16 } else { 0 }).to_le_bytes());
            page[4..8].copy_from_slice(&1u32.to_le_bytes());
            page[8..16].copy_from_slice(&(p.start + i as u64 * ps).to_le_bytes());
            let at = if long {
                page[32..36].copy_from_slice(&(p.seg_size as u32).to_le_bytes());
                page[36..40].copy_from_slice(&(ps as u32).to_le_bytes());
                40
            } else {
                24
            };
            page[at..at + 4].copy_from_slice(&32u32.to_le_bytes());
            page[at + 20..at + 24].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        }
        (b, p)
    }

    /// A continuation built page by page is the same part as built from its bytes at once,
    /// below, at and above the size kept whole (regression: it held a whole segment).
    #[test]
    fn parts_built_piece_by_piece_equal_parts_built_at_once() {
        for total in [
            0usize,
            10,
            64,
            65,
            KEEP_WHOLE - 1,
            KEEP_WHOLE,
            KEEP_WHOLE + 1,
            3 * KEEP_WHOLE + 7,
        ] {
            let bytes: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
            for piece in [1usize, 30, 8168, KEEP_WHOLE + 3] {
                let mut b = PartBuilder::default();
                for c in bytes.chunks(piece) {
                    b.push(c);
                }
                assert_eq!(
                    b.part(),
                    Part::new(&bytes),
                    "total {total}, pieces of {piece}"
                );
                assert_eq!(b.len(), total as u64);
            }
        }
    }

    /// Garbage behind valid page headers stops the stream on every page: the stops kept are
    /// bounded, and the walk says it gave up (memory bounded whatever the damage).
    #[test]
    fn stops_per_segment_are_bounded() {
        let (b, p) = failing_pages(512);
        let s = walk(&b, p);
        assert_eq!(s.breaks.len(), MAX_BREAKS);
        assert!(s.gave_up);
        assert!(s.breaks.iter().all(|b| matches!(b.why, Stop::Crc { .. })));
        let (b, p) = failing_pages(16);
        let s = walk(&b, p);
        assert_eq!(s.breaks.len(), 16, "{:?}", s.breaks);
        assert!(!s.gave_up);
    }

    /// Writes a record (header fields, body) at `at` in `b` with its CRC; returns its length.
    fn put_record(b: &mut [u8], at: usize, prev: u64, rmid: u8, info: u8, body: &[u8]) -> usize {
        let len = 24 + body.len();
        let mut r = vec![0u8; len];
        r[..4].copy_from_slice(&(len as u32).to_le_bytes());
        r[8..16].copy_from_slice(&prev.to_le_bytes());
        r[16] = info;
        r[17] = rmid;
        r[24..].copy_from_slice(body);
        let crc = record::crc(&r[..]);
        r[20..24].copy_from_slice(&crc.to_le_bytes());
        b[at..at + len].copy_from_slice(&r);
        len
    }

    /// Crash recovery's XLOG_OVERWRITE_CONTRECORD (formats-pgwal.md §4.1): a record cut at a
    /// page boundary, the next page flagged as overwriting its continuation and starting with a
    /// record that names it — the normal pattern after a crash, not damage; a record there that
    /// names another LSN is damage.
    #[test]
    fn an_overwritten_continuation_is_accepted_as_postgresql_does() {
        for names_it in [true, false] {
            let (mut b, p) = failing_pages(4);
            // Clear the failing records the helper wrote (keeping the first two pages' headers);
            // the pages after are unwritten, all zero.
            for page in 0..2usize {
                let hdr = if page == 0 { 40 } else { 24 };
                b[page * 8192 + hdr..(page + 1) * 8192].fill(0);
            }
            b[2 * 8192..].fill(0);
            let a = p.start + 40;
            put_record(&mut b, 40, 0, 0, 0x20, &[255, 0]);
            // R: 9000 bytes announced, only its first page written.
            let r_at = 72usize;
            let r = p.start + r_at as u64;
            b[r_at..r_at + 4].copy_from_slice(&9000u32.to_le_bytes());
            b[r_at + 8..r_at + 16].copy_from_slice(&a.to_le_bytes());
            b[r_at + 24..8192].fill(0x5A);
            // Page 1 overwrites the continuation.
            b[8192 + 2..8192 + 4].copy_from_slice(&0x0008u16.to_le_bytes());
            let mut body = vec![255u8, 16];
            let named = if names_it { r } else { r + 8 };
            body.extend_from_slice(&named.to_le_bytes());
            body.extend_from_slice(&0i64.to_le_bytes());
            put_record(&mut b, 8192 + 24, a, 0, 0xD0, &body);
            let s = walk(&b, p);
            assert_eq!(s.breaks.len(), 1, "{:?}", s.breaks);
            if names_it {
                // Only the real end, after the record that replaced R.
                assert_eq!(s.breaks[0].why, Stop::Zero, "{:?}", s.breaks);
                assert_eq!(s.records(), 2, "{:?}", s.spans);
            } else {
                assert!(
                    matches!(s.breaks[0].why, Stop::BadHeader(_)),
                    "{:?}",
                    s.breaks
                );
            }
        }
    }

    /// Regression (review of 2026-12-03): crash recovery abandoned a record that crossed into
    /// this segment part-way through its continuation (two continuation pages, then a page
    /// flagged as overwriting it, holding the XLOG_OVERWRITE_CONTRECORD): the walk goes on
    /// there, and the segment says which record was abandoned, for the join to check.
    #[test]
    fn an_overwrite_inside_the_leading_continuation_restarts_the_stream_there() {
        let (mut b, p) = failing_pages(4);
        let rem: u32 = 30_000;
        b[2..4].copy_from_slice(&(0x0001u16 | 0x0002).to_le_bytes());
        b[16..20].copy_from_slice(&rem.to_le_bytes());
        b[40..8192].fill(0x5A);
        b[8192 + 2..8192 + 4].copy_from_slice(&0x0001u16.to_le_bytes());
        b[8192 + 16..8192 + 20].copy_from_slice(&(rem - (8192 - 40)).to_le_bytes());
        b[8192 + 24..2 * 8192].fill(0x5A);
        // Page 2 overwrites the rest of the continuation.
        b[2 * 8192 + 2..2 * 8192 + 4].copy_from_slice(&0x0008u16.to_le_bytes());
        b[2 * 8192 + 16..2 * 8192 + 20].fill(0);
        b[2 * 8192 + 24..].fill(0);
        b[3 * 8192 + 24..].fill(0);
        let abandoned = p.start - 4096;
        let mut body = vec![255u8, 16];
        body.extend_from_slice(&abandoned.to_le_bytes());
        body.extend_from_slice(&0i64.to_le_bytes());
        put_record(&mut b, 2 * 8192 + 24, abandoned - 64, 0, 0xD0, &body);
        let s = walk(&b, p);
        let lead = s.lead.as_ref().expect("the continuation");
        assert!(lead.cut && lead.end.is_none(), "{lead:?}");
        assert!(s.overwrite_first);
        assert_eq!(s.overwrites, Some(abandoned));
        assert_eq!(s.records(), 1, "{:?}", s.spans);
        assert!(
            s.breaks.iter().all(|b| b.why == Stop::Zero),
            "only the real end after it: {:?}",
            s.breaks
        );
    }

    /// A record whose only fault is its prev-link keeps a trusted length: the record after it
    /// is tried (the chain test) and, linking back to it, proves the WAL went on — damage even
    /// in the newest segment, never a torn tail (regression: it used to resynchronise at the
    /// next page and lose the link).
    #[test]
    fn a_bad_prev_link_is_followed_by_the_chain_test() {
        let (mut b, p) = failing_pages(2);
        b[40..8192].fill(0);
        b[8192..].fill(0);
        let a = p.start + 40;
        let n = put_record(&mut b, 40, 0, 0, 0x20, &[255, 0]);
        let bad = 40 + n.div_ceil(8) * 8;
        let n = put_record(&mut b, bad, 0x1234, 0, 0x20, &[255, 0]);
        let c = bad + n.div_ceil(8) * 8;
        let bad_lsn = p.start + bad as u64;
        put_record(&mut b, c, bad_lsn, 0, 0x20, &[255, 0]);
        let s = walk(&b, p);
        assert!(
            matches!(s.breaks[0].why, Stop::BadPrev { got: 0x1234, want } if want == a),
            "{:?}",
            s.breaks
        );
        assert!(
            s.spans.iter().any(|sp| sp.linked_from == Some(bad_lsn)),
            "{:?}",
            s.spans
        );
    }
}
