//! PostgreSQL write-ahead log: every segment verified on its own (one task per segment, every
//! page header and record), then the segments joined in LSN order (records crossing a segment
//! boundary verified exactly once, by the segment they start in, with the bytes both hold) to
//! tell the real end of WAL from damage and to say where crash recovery would stop.
//! `docs/postgres-wal.md`; the byte-level facts are in `../shared/formats-pgwal.md`.

pub(crate) mod conclude;
pub mod fpi;
pub(crate) mod history;
mod record;
pub(crate) mod restore;
mod segment;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::finding::{Finding, FindingKind};
use crate::format::{Chunk, Conclusion, FileSource, Layout, OpenError, Opened, UnitCheck};

use super::control::ControlWal;

pub(crate) use history::{parse_lsn, History};

/// Little-endian fields (WAL is in host order; every supported host is little-endian).
pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// The largest record accepted (PostgreSQL's own allocation limit is 1 GiB).
const MAX_RECORD: u64 = 1 << 30;

/// An LSN, printed as PostgreSQL prints it (`X/Y`, upper-case hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Lsn(pub u64);

impl Lsn {
    /// The next multiple of 8 (`MAXALIGN`): where the record after one ending here starts.
    pub fn align8(self) -> u64 {
        self.0.saturating_add(7) & !7
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The major version whose WAL pages carry `magic` (`formats-pgwal.md` §1.4).
pub(crate) fn major_of_magic(magic: u16) -> Option<u32> {
    match magic {
        0xD106 => Some(13),
        0xD10D => Some(14),
        0xD110 => Some(15),
        0xD113 => Some(16),
        0xD116 => Some(17),
        _ => None,
    }
}

/// What a name in `pg_wal/` or an archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalName {
    /// `TTTTTTTTLLLLLLLLSSSSSSSS`, or with `.partial`.
    Segment {
        tli: u32,
        log: u32,
        seg: u32,
        partial: bool,
    },
    /// `TTTTTTTT.history`.
    History { tli: u32 },
    /// `<segment>.<offset>.backup`.
    Backup {
        tli: u32,
        log: u32,
        seg: u32,
        offset: u32,
    },
}

/// How an archived WAL file is stored: compressed (its extension), and with the SHA-1 of its
/// bytes in its name (pgBackRest's `<segment>-<sha1>[.<ext>]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    pub codec: Option<crate::codec::Codec>,
    pub sha1: Option<[u8; 20]>,
}

/// Parses a stored WAL file name: a plain one (as [`WalName::parse`]), or a segment archived
/// compressed (`.gz`, `.lz4`, `.zst`, `.bz2`, `.xz`, `.lzma`) and/or with pgBackRest's
/// `-<sha1>` after its name.
pub(crate) fn parse_stored(name: &str) -> Option<(WalName, Stored)> {
    if let Some(w) = WalName::parse(name) {
        return Some((w, Stored::default()));
    }
    let (stem, codec) = match crate::codec::Codec::strip(name) {
        Some((stem, c)) => (stem, Some(c)),
        None => (name, None),
    };
    let (stem, sha1) = match stem.rsplit_once('-') {
        Some((s, h)) if h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let mut d = [0u8; 20];
            for (i, b) in d.iter_mut().enumerate() {
                *b = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            (s, Some(d))
        }
        _ => (stem, None),
    };
    if codec.is_none() && sha1.is_none() {
        return None;
    }
    match WalName::parse(stem)? {
        w @ WalName::Segment { .. } => Some((w, Stored { codec, sha1 })),
        // History and backup-history files: compressed by WAL-G, never named by SHA-1.
        w if sha1.is_none() => Some((w, Stored { codec, sha1 })),
        _ => None,
    }
}

/// pgBackRest keeps an archive's segments in one folder per 4 GiB of WAL, named by the first
/// 16 hex digits of their names (`<timeline><log>`): such a folder's files belong to the
/// archive above it.
pub(crate) fn is_log_folder(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The WAL directory a file in `dir` belongs to: `dir`, or the archive above a pgBackRest log
/// folder.
pub(crate) fn wal_dir_of(dir: &Path) -> &Path {
    match (dir.file_name().and_then(|n| n.to_str()), dir.parent()) {
        (Some(n), Some(p)) if is_log_folder(n) => p,
        _ => dir,
    }
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

impl WalName {
    /// Parses a file name; `None` for anything else.
    pub fn parse(name: &str) -> Option<WalName> {
        let seg = |s: &str| -> Option<(u32, u32, u32)> {
            (s.len() == 24).then_some(())?;
            Some((
                hex8(s.get(..8)?)?,
                hex8(s.get(8..16)?)?,
                hex8(s.get(16..)?)?,
            ))
        };
        if let Some(s) = name.strip_suffix(".partial") {
            let (tli, log, seg) = seg(s)?;
            return Some(WalName::Segment {
                tli,
                log,
                seg,
                partial: true,
            });
        }
        if let Some(s) = name.strip_suffix(".history") {
            return Some(WalName::History { tli: hex8(s)? });
        }
        if let Some(s) = name.strip_suffix(".backup") {
            let (segname, off) = s.split_once('.')?;
            let (tli, log, seg) = seg(segname)?;
            return Some(WalName::Backup {
                tli,
                log,
                seg,
                offset: hex8(off)?,
            });
        }
        let (tli, log, seg) = seg(name)?;
        Some(WalName::Segment {
            tli,
            log,
            seg,
            partial: false,
        })
    }

    /// Whether a file name is a WAL segment's (plain or `.partial`, stored compressed or
    /// under pgBackRest's name too).
    pub fn is_segment(name: &str) -> bool {
        matches!(parse_stored(name), Some((WalName::Segment { .. }, _)))
    }
}

/// The segment number of `log`/`seg` with `seg_size`-byte segments.
fn segno(log: u32, seg: u32, seg_size: u64) -> u64 {
    let per_log = 0x1_0000_0000u64 / seg_size.max(1);
    u64::from(log) * per_log + u64::from(seg)
}

/// The name of segment `segno` on timeline `tli`.
pub(crate) fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let per_log = 0x1_0000_0000u64 / seg_size.max(1);
    format!("{tli:08X}{:08X}{:08X}", segno / per_log, segno % per_log)
}

/// What kind of place a WAL directory is: it decides what an incomplete segment means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalDirKind {
    /// `pg_wal/` of a data directory: the last segment may end anywhere.
    DataDir {
        control: Option<ControlWal>,
        /// The server runs: the newest segment is being written.
        live: bool,
    },
    /// A directory of archived segments (or one named on its own): each is complete.
    Archive,
}

/// One segment's result.
#[derive(Debug, Clone)]
pub(crate) struct SegEntry {
    /// The segment's file; for a member of an archive, the archive's path joined with the
    /// member's name (a name for it, not a file: `within` says where its bytes are).
    pub path: PathBuf,
    pub tli: u32,
    pub segno: u64,
    pub partial: bool,
    pub params: segment::SegParams,
    pub summary: segment::Summary,
    /// The segment is a member of a tar archive (`pg_wal.tar`).
    pub within: Option<Within>,
    /// Its size as restore_command would hand it over: the file's, the member's, or decompressed
    /// (at most a byte more than a segment). Archive recovery refuses one that is not
    /// wal_segment_size.
    pub size: u64,
}

/// Where a segment that is a member of an archive lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Within {
    /// The archive file.
    pub archive: PathBuf,
    /// Offset of the segment's first byte in it.
    pub base: u64,
    /// The member's name.
    pub member: String,
}

impl SegEntry {
    /// The file holding the segment's bytes, and the offset of its first byte in it.
    pub fn file(&self) -> (&Path, u64) {
        match &self.within {
            Some(w) => (&w.archive, w.base),
            None => (&self.path, 0),
        }
    }
}

/// Everything known about one WAL directory.
#[derive(Debug, Clone)]
pub(crate) struct WalDir {
    pub kind: WalDirKind,
    /// Segments the listing named (a segment listed and not verified leaves no verdict).
    pub listed: Vec<PathBuf>,
    pub segments: BTreeMap<PathBuf, SegEntry>,
    pub histories: BTreeMap<u32, History>,
    /// The sound backup history files here (an archive's record of each base backup).
    pub backups: Vec<history::BackupFile>,
}

/// What the WAL checks of one scan gather, for [`conclude`].
#[derive(Debug, Default)]
pub(crate) struct Registry {
    dirs: Mutex<BTreeMap<PathBuf, WalDir>>,
}

impl Registry {
    fn with<R>(&self, dir: &Path, kind: WalDirKind, f: impl FnOnce(&mut WalDir) -> R) -> R {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let d = dirs.entry(dir.to_path_buf()).or_insert_with(|| WalDir {
            kind,
            listed: Vec::new(),
            segments: BTreeMap::new(),
            histories: BTreeMap::new(),
            backups: Vec::new(),
        });
        f(d)
    }

    /// A listing named these segments of `dir`.
    pub fn listed(&self, dir: &Path, kind: WalDirKind, files: &[PathBuf]) {
        self.with(dir, kind, |d| {
            d.kind = kind;
            d.listed.extend(files.iter().cloned());
        });
    }

    fn add_segment(&self, dir: &Path, kind: WalDirKind, e: SegEntry) {
        self.with(dir, kind, |d| {
            d.segments.insert(e.path.clone(), e);
        });
    }

    fn add_history(&self, dir: &Path, kind: WalDirKind, tli: u32, h: History) {
        self.with(dir, kind, |d| {
            d.histories.insert(tli, h);
        });
    }

    fn add_backup(&self, dir: &Path, kind: WalDirKind, b: history::BackupFile) {
        self.with(dir, kind, |d| d.backups.push(b));
    }

    /// Joins the segments of each directory and judges them; empties the registry, handing
    /// back what it held (for restores joined across directories, [`restore::judge`]).
    /// `page_lsn`: the highest LSN of the data blocks verified in a data directory.
    pub fn conclude(
        &self,
        complete: bool,
        page_lsn: &dyn Fn(&Path) -> Option<u64>,
    ) -> (Conclusion, BTreeMap<PathBuf, WalDir>) {
        let mut dirs = std::mem::take(&mut *self.dirs.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Conclusion::default();
        for dir in dirs.values_mut() {
            if dir.kind == WalDirKind::Archive {
                screen_archive(dir, &mut out);
            }
        }
        for (path, dir) in &dirs {
            let data_lsn = match dir.kind {
                WalDirKind::DataDir { .. } => path.parent().and_then(page_lsn),
                WalDirKind::Archive => None,
            };
            conclude::conclude_dir(
                path,
                dir,
                complete,
                data_lsn,
                conclude::Replay::default(),
                &mut out,
            );
        }
        (out, dirs)
    }
}

/// Archive recovery takes each archived segment as restore_command hands it over, and refuses one
/// that is not `wal_segment_size` bytes (FATAL "archive file has wrong size": the server stops)
/// or that comes from another cluster ("WAL file is from different database system"): each is
/// reported, and stands in the archive as a segment that stops at its start.
fn screen_archive(dir: &mut WalDir, out: &mut Conclusion) {
    // Two copies of one segment (plain and compressed, say): which one a restore reads is
    // restore_command's choice; say so.
    let mut copies: BTreeMap<(u32, u64, bool), Vec<&Path>> = BTreeMap::new();
    for e in dir.segments.values() {
        copies
            .entry((e.tli, e.segno, e.partial))
            .or_default()
            .push(e.file().0);
    }
    for files in copies.values().filter(|f| f.len() > 1) {
        if let Some(first) = files.first() {
            out.warnings.push((
                first.to_path_buf(),
                format!(
                    "{} copies of this segment are in the archive ({}): the records of only one of them are judged, as the restore verdict follows one; a restore reads whichever restore_command fetches",
                    files.len(),
                    files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    // The archive's cluster: the system identifier of its oldest segment that gives one.
    let id = dir
        .segments
        .values()
        .filter(|e| e.summary.system_id.is_some())
        .min_by_key(|e| (e.segno, e.tli))
        .and_then(|e| e.summary.system_id);
    for e in dir.segments.values_mut() {
        let seg_size = e.params.seg_size;
        let (kind, why) = match (id, e.summary.system_id) {
            (Some(id), Some(other)) if other != id => (
                FindingKind::BadHeader,
                format!(
                    "WAL from another database system: this segment's system identifier is {other}, the archive's oldest segment's is {id}; recovery refuses it (\"WAL file is from different database system\")"
                ),
            ),
            _ if !e.partial && e.size != seg_size => (
                if e.size < seg_size {
                    FindingKind::Truncated
                } else {
                    FindingKind::BadHeader
                },
                format!(
                    "the archived segment is {} bytes, not wal_segment_size ({seg_size}): archive recovery stops with FATAL (\"archive file has wrong size\") when restore_command returns it, and the server does not start (if archive_command is still writing it, scan again)",
                    e.size
                ),
            ),
            _ => continue,
        };
        let (file, base) = e.file();
        let mut f = Finding::new(kind, base, e.size.min(seg_size), why.clone());
        f.file = Some(file.to_path_buf());
        out.findings.push(f);
        e.summary = segment::Summary {
            len: e.summary.len,
            breaks: vec![segment::Break {
                lsn: e.params.start,
                record: None,
                record_len: None,
                written: 0,
                why: segment::Stop::Refused(why),
                after: None,
            }],
            system_id: e.summary.system_id,
            ..segment::Summary::default()
        };
    }
}

/// The check of one segment: the whole file is one unit of work (records are found by
/// parsing from the segment's start), its result kept for the join.
struct SegmentCheck {
    entry: Mutex<Option<SegEntry>>,
    registry: Arc<Registry>,
    dir: PathBuf,
    kind: WalDirKind,
    len: u64,
    /// Compressed, or named with its SHA-1: the segment's bytes are decoded (one segment in
    /// memory per thread at most) and hashed before they are walked.
    stored: Stored,
}

impl SegmentCheck {
    fn params(&self) -> Option<segment::SegParams> {
        self.entry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|e| e.params)
    }
}

impl UnitCheck for SegmentCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.len,
            align: self.len.max(1),
        }
    }

    fn inspect_unit(&self) -> Option<u64> {
        // A compressed file's pages are not at their offsets in it.
        self.params()
            .filter(|_| self.stored.codec.is_none())
            .map(|p| p.page_size)
    }

    fn inspect_in(&self, chunk: &Chunk<'_>, unit: u64) -> Vec<(String, String)> {
        self.params()
            .map(|p| segment::inspect_page(chunk.bytes, p, unit))
            .unwrap_or_default()
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let Some(mut e) = self.entry.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return 0;
        };
        if chunk.offset != 0 {
            return 0;
        }
        let decoded;
        let bytes = match self.stored.codec {
            None => chunk.bytes,
            Some(codec) => {
                // A segment decompresses to wal_segment_size bytes; a byte more is kept to
                // tell a longer stream.
                let (d, err) = codec.decode_bounded(chunk.bytes, e.params.seg_size + 1);
                decoded = d;
                // A longer stream is said once, below.
                if let Some(err) =
                    err.filter(|e| !matches!(e, crate::codec::DecodeError::TooLong { .. }))
                {
                    let kind = match err {
                        crate::codec::DecodeError::Truncated { .. } => FindingKind::Truncated,
                        _ => FindingKind::BadHeader,
                    };
                    out.push(Finding::new(
                        kind,
                        0,
                        self.len,
                        format!("{err}: the WAL past the bytes that decoded is lost"),
                    ));
                }
                if decoded.len() as u64 > e.params.seg_size {
                    out.push(Finding::new(
                        FindingKind::BadHeader,
                        0,
                        self.len,
                        format!(
                            "the file decompresses to more than wal_segment_size ({} bytes): it is not one WAL segment",
                            e.params.seg_size
                        ),
                    ));
                }
                decoded.get(..).unwrap_or_default()
            }
        };
        if let Some(want) = self.stored.sha1 {
            let got: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(bytes).into();
            if got != want {
                let mut f = Finding::new(
                    FindingKind::ChecksumMismatch,
                    0,
                    self.len,
                    "the segment's SHA-1 differs from the one in its name (pgBackRest's archive checksum): its bytes are not the ones archived",
                );
                f.expected = Some(super::manifest::hex(&want));
                f.actual = Some(super::manifest::hex(&got));
                out.push(f);
            }
        }
        if self.stored.codec.is_some() {
            e.size = bytes.len() as u64;
        }
        let bytes = bytes
            .get(..usize::try_from(e.params.seg_size).unwrap_or(usize::MAX))
            .unwrap_or(bytes);
        e.summary = segment::walk(bytes, e.params);
        let records = e.summary.records();
        self.registry.add_segment(&self.dir, self.kind, e);
        records
    }
}

/// Where a WAL file's directory stands: `pg_wal/` of a data directory, or an archive.
pub(crate) fn dir_kind(dir: &Path, control: Option<ControlWal>, live: bool) -> WalDirKind {
    let in_data_dir = dir.file_name().is_some_and(|n| n == "pg_wal")
        && dir.parent().is_some_and(super::is_data_dir);
    if in_data_dir {
        WalDirKind::DataDir { control, live }
    } else {
        WalDirKind::Archive
    }
}

/// Opens a WAL file: a segment's check, or a history or backup-history file judged whole.
pub(crate) fn open(
    registry: &Arc<Registry>,
    path: &Path,
    (name, stored): (WalName, Stored),
    source: &dyn FileSource,
    kind: WalDirKind,
) -> Result<Opened, OpenError> {
    let dir = wal_dir_of(path.parent().unwrap_or(Path::new(""))).to_path_buf();
    match name {
        WalName::Segment {
            tli,
            log,
            seg,
            partial,
        } => {
            let control = match kind {
                WalDirKind::DataDir { control, .. } => control,
                WalDirKind::Archive => None,
            };
            // The segment size: pg_control's, else the long header's (as pg_waldump does).
            let mut head = [0u8; 40];
            let n = source.read_full_at(0, &mut head)?;
            let mut long = head.get(..n).unwrap_or_default().to_vec();
            if let Some(codec) = stored.codec {
                // The long header of the decompressed segment, from the file's first bytes.
                let mut first = vec![0u8; usize::try_from(source.len().min(1 << 16)).unwrap_or(0)];
                let n = source.read_full_at(0, &mut first)?;
                first.truncate(n);
                long = codec.decode_bounded(&first, 40).0;
            }
            let header_seg = long
                .get(32..36)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes);
            let header_page = long
                .get(36..40)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes);
            let valid = |s: u32| s.is_power_of_two() && (1 << 20..=1 << 30).contains(&s);
            let seg_size = control
                .map(|c| c.wal_segment_size)
                .filter(|&s| valid(s))
                .or(header_seg.filter(|&s| valid(s)))
                .unwrap_or(16 << 20);
            let page_size = control
                .map(|c| c.wal_page_size)
                .or(header_page)
                .filter(|p| p.is_power_of_two() && (1024..=65536).contains(p))
                .unwrap_or(8192);
            let seg_size = u64::from(seg_size);
            // A name whose segment number is impossible for this segment size (its low part
            // past the segments per log id) or whose position overflows: not a segment.
            let per_log = 0x1_0000_0000u64 / seg_size;
            let segno = segno(log, seg, seg_size);
            let fits = segno
                .checked_mul(seg_size)
                .and_then(|s| s.checked_add(seg_size))
                .is_some();
            if u64::from(seg) >= per_log || !fits {
                return Err(OpenError::NotThisFormat {
                    format: super::PostgresFormat::NAME,
                    reason: format!(
                        "the name is not a WAL segment's with {seg_size}-byte segments (its segment part {seg:08X} must be below {per_log:X}, and its position within 64 bits)"
                    ),
                });
            }
            let params = segment::SegParams {
                start: segno * seg_size,
                seg_size,
                page_size: u64::from(page_size),
                tli,
                system_id: control.map(|c| c.system_id),
            };
            let entry = SegEntry {
                path: path.to_path_buf(),
                tli,
                segno,
                partial,
                params,
                summary: segment::Summary::default(),
                within: None,
                size: source.len(),
            };
            if source.is_empty() {
                // Nothing to verify, so no check would ever report it: it is judged now, as a
                // segment that ends at its start.
                let mut e = entry;
                e.summary.breaks.push(segment::Break {
                    lsn: e.params.start,
                    record: None,
                    record_len: None,
                    written: 0,
                    why: segment::Stop::Short,
                    after: None,
                });
                registry.add_segment(&dir, kind, e);
                return Ok(Opened::note("the segment is empty (0 bytes)".into()));
            }
            // PostgreSQL reads a segment's first wal_segment_size bytes; a longer file's rest is
            // never WAL, and is not read.
            let mut notes = Vec::new();
            if source.len() > seg_size && stored.codec.is_none() {
                notes.push(format!(
                    "the file is {} bytes longer than wal_segment_size ({seg_size}): PostgreSQL never reads past the segment's size, so neither does this scan",
                    source.len() - seg_size
                ));
            }
            Ok(Opened {
                findings: Vec::new(),
                check: Some(Box::new(SegmentCheck {
                    entry: Mutex::new(Some(entry)),
                    registry: registry.clone(),
                    dir,
                    kind,
                    len: if stored.codec.is_some() {
                        source.len()
                    } else {
                        source.len().min(seg_size)
                    },
                    stored,
                })),
                units: 0,
                recheck_after: None,
                notes,
            })
        }
        WalName::History { tli } => {
            let text = read_stored(source, stored)?;
            let (h, findings) = history::parse_history(&text, tli);
            let units = h.entries.len() as u64;
            registry.add_history(&dir, kind, tli, h);
            Ok(Opened {
                findings,
                check: None,
                units,
                recheck_after: None,
                notes: Vec::new(),
            })
        }
        WalName::Backup { offset, tli, .. } => {
            let text = read_stored(source, stored)?;
            let findings = history::check_backup_file(&text, offset);
            if findings.is_empty() {
                if let Some(b) = history::read_backup_file(path, &text, tli) {
                    registry.add_backup(&dir, kind, b);
                }
            }
            Ok(Opened {
                findings,
                check: None,
                units: 1,
                recheck_after: None,
                notes: Vec::new(),
            })
        }
    }
}

/// The segments of a tar archive (`pg_wal.tar` of a `pg_basebackup -Ft` backup): each member's
/// bytes are one extent, walked as a segment file is; the archive is their WAL directory (an
/// archive's kind: every segment in it complete but the newest). `members`: (name, offset of its
/// data, size), in archive order.
pub(crate) fn open_tar(
    registry: &Arc<Registry>,
    archive: &Path,
    members: &[(String, u64, u64)],
    source: &dyn FileSource,
) -> Result<Opened, OpenError> {
    let (check, units, findings) = tar_segments(registry, archive, members, source)?;
    Ok(Opened {
        findings,
        check,
        units,
        recheck_after: None,
        notes: Vec::new(),
    })
}

/// What [`tar_segments`] gives: the check, units verified opening, findings.
pub(crate) type TarWal = (Option<Box<dyn UnitCheck>>, u64, Vec<Finding>);

/// The check of the WAL members of a tar archive (see [`open_tar`]; for `base.tar`, its
/// `pg_wal/` members, which `-X fetch` puts there): the check (none without a segment), the
/// units verified opening it (history entries) and its findings.
pub(crate) fn tar_segments(
    registry: &Arc<Registry>,
    archive: &Path,
    members: &[(String, u64, u64)],
    source: &dyn FileSource,
) -> Result<TarWal, OpenError> {
    let kind = WalDirKind::Archive;
    let mut segs = Vec::new();
    let mut listed = Vec::new();
    let mut units = 0;
    let mut findings = Vec::new();
    for (name, data, size) in members {
        let Some((w, stored)) = parse_stored(name.rsplit('/').next().unwrap_or(name)) else {
            continue;
        };
        match w {
            WalName::Segment { .. } if stored == Stored::default() => {
                let mut head = [0u8; 40];
                let n = source.read_full_at(*data, &mut head)?;
                let long = head
                    .get(..n.min(usize::try_from(*size).unwrap_or(0)))
                    .unwrap_or_default();
                let Some(e) = member_entry(archive, name, *data, *size, long) else {
                    continue;
                };
                listed.push(e.path.clone());
                let len = (*size).min(e.params.seg_size);
                segs.push((
                    Layout {
                        start: *data,
                        end: data + len,
                        align: len.max(1),
                    },
                    e,
                ));
            }
            WalName::History { tli } => {
                let mut text = vec![0u8; usize::try_from((*size).min(1 << 20)).unwrap_or(0)];
                let n = source.read_full_at(*data, &mut text)?;
                text.truncate(n);
                let (h, bad) = history::parse_history(&text, tli);
                units += h.entries.len() as u64;
                findings.extend(bad.into_iter().map(|mut f| {
                    f.offset += data;
                    f
                }));
                registry.add_history(archive, kind, tli, h);
            }
            _ => {}
        }
    }
    if !listed.is_empty() {
        registry.listed(archive, kind, &listed);
    }
    segs.retain(|(l, _)| l.end > l.start);
    let check = (!segs.is_empty()).then(|| {
        Box::new(TarSegments {
            members: segs,
            registry: registry.clone(),
            dir: archive.to_path_buf(),
        }) as Box<dyn UnitCheck>
    });
    Ok((check, units, findings))
}

/// The entry of a segment that is member `name` of `archive`, its bytes at `data`, from its long
/// header `long` (its first 40 bytes): `None` when the name is not a plain segment's or not one
/// for the segment size its header gives.
fn member_entry(archive: &Path, name: &str, data: u64, size: u64, long: &[u8]) -> Option<SegEntry> {
    // A member may lie in a folder (`pg_wal/…` of base.tar with -X fetch).
    let file = name.rsplit('/').next().unwrap_or(name);
    let WalName::Segment {
        tli,
        log,
        seg,
        partial,
    } = WalName::parse(file)?
    else {
        return None;
    };
    let field = |at: usize| {
        long.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let seg_size = field(32)
        .filter(|s| s.is_power_of_two() && (1 << 20..=1 << 30).contains(s))
        .map_or(16 << 20, u64::from);
    let page_size = field(36)
        .filter(|p| p.is_power_of_two() && (1024..=65536).contains(p))
        .map_or(8192, u64::from);
    let per_log = 0x1_0000_0000u64 / seg_size;
    let segno = segno(log, seg, seg_size);
    if u64::from(seg) >= per_log
        || segno
            .checked_mul(seg_size)
            .and_then(|s| s.checked_add(seg_size))
            .is_none()
    {
        return None;
    }
    Some(SegEntry {
        path: archive.join(name),
        tli,
        segno,
        partial,
        params: segment::SegParams {
            start: segno * seg_size,
            seg_size,
            page_size,
            tli,
            system_id: None,
        },
        summary: segment::Summary::default(),
        within: Some(Within {
            archive: archive.to_path_buf(),
            base: data,
            member: name.to_owned(),
        }),
        size,
    })
}

/// A member of a tar archive read as it streamed past (a compressed `pg_wal.tar.gz`): a segment
/// (`bytes` its whole content, at offset `at` of the decompressed archive) walked and kept for
/// the join, or a history file parsed; (units verified, findings). The archive is the WAL
/// directory.
pub(crate) fn add_streamed(
    registry: &Registry,
    archive: &Path,
    name: &str,
    bytes: &[u8],
    at: u64,
) -> (u64, Vec<Finding>) {
    let kind = WalDirKind::Archive;
    match WalName::parse(name.rsplit('/').next().unwrap_or(name)) {
        Some(WalName::Segment { .. }) => {
            let Some(mut e) = member_entry(
                archive,
                name,
                at,
                bytes.len() as u64,
                bytes.get(..40).unwrap_or(bytes),
            ) else {
                return (0, Vec::new());
            };
            let len = usize::try_from(e.params.seg_size).unwrap_or(usize::MAX);
            e.summary = segment::walk(bytes.get(..len).unwrap_or(bytes), e.params);
            let records = e.summary.records();
            registry.listed(archive, kind, std::slice::from_ref(&e.path));
            registry.add_segment(archive, kind, e);
            (records, Vec::new())
        }
        Some(WalName::History { tli }) => {
            let (h, bad) = history::parse_history(bytes, tli);
            let units = h.entries.len() as u64;
            registry.add_history(archive, kind, tli, h);
            let bad = bad
                .into_iter()
                .map(|mut f| {
                    f.offset += at;
                    f
                })
                .collect();
            (units, bad)
        }
        _ => (0, Vec::new()),
    }
}

/// The segments inside one tar archive, each in its own extent.
struct TarSegments {
    members: Vec<(Layout, SegEntry)>,
    registry: Arc<Registry>,
    dir: PathBuf,
}

impl UnitCheck for TarSegments {
    fn layout(&self) -> Layout {
        Layout {
            start: self.members.first().map_or(0, |(l, _)| l.start),
            end: self.members.last().map_or(0, |(l, _)| l.end),
            align: 512,
        }
    }

    fn extents(&self) -> Vec<Layout> {
        self.members.iter().map(|(l, _)| *l).collect()
    }

    fn verify(&self, chunk: &Chunk<'_>, _out: &mut Vec<Finding>) -> u64 {
        // Each extent is one chunk (its alignment is its length).
        let Some((_, e)) = self.members.iter().find(|(l, _)| l.start == chunk.offset) else {
            return 0;
        };
        let mut e = e.clone();
        e.summary = segment::walk(chunk.bytes, e.params);
        let records = e.summary.records();
        self.registry.add_segment(&self.dir, WalDirKind::Archive, e);
        records
    }
}

/// The page of WAL segment `path` (by its name, and its long header's segment and page sizes)
/// that holds `lsn` (`X/Y`), for `dbfsck inspect --lsn`.
pub fn page_of_lsn(path: &Path, lsn: &str) -> Result<u64, String> {
    let l = history::parse_lsn(lsn).ok_or_else(|| format!("{lsn} is not an LSN (X/Y, hex)"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(WalName::Segment { log, seg, .. }) = WalName::parse(name) else {
        return Err("--lsn needs a WAL segment (its name says where it lies in the WAL)".into());
    };
    let mut head = [0u8; 40];
    let f = std::fs::File::open(path).map_err(|e| format!("could not read the file: {e}"))?;
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0)
        .map_err(|e| format!("could not read the segment's long header: {e}"))?;
    let seg_size = u64::from(u32_at(&head, 32).unwrap_or_default());
    let page = u64::from(u32_at(&head, 36).unwrap_or_default());
    if !seg_size.is_power_of_two() || seg_size < 1 << 20 || page == 0 {
        return Err("the segment's long header does not give its sizes".into());
    }
    let start = segno(log, seg, seg_size)
        .checked_mul(seg_size)
        .filter(|s| s.checked_add(seg_size).is_some())
        .ok_or("the segment's name puts it past the end of the WAL's 64-bit positions")?;
    if !(start..start + seg_size).contains(&l) {
        return Err(format!(
            "{lsn} is not in this segment ({} to {})",
            Lsn(start),
            Lsn(start + seg_size)
        ));
    }
    Ok((l - start) / page)
}

/// A history or backup file's bytes, decompressed when it is stored compressed (at most 1 MiB
/// either way: no such file is larger).
fn read_stored(source: &dyn FileSource, stored: Stored) -> Result<Vec<u8>, OpenError> {
    let raw = read_small(source)?;
    Ok(match stored.codec {
        Some(c) => c.decode_bounded(&raw, 1 << 20).0,
        None => raw,
    })
}

/// A history or backup file's bytes (they are small; more than 1 MiB is not one).
fn read_small(source: &dyn FileSource) -> Result<Vec<u8>, OpenError> {
    let len = source.len().min(1 << 20) as usize;
    let mut buf = vec![0u8; len];
    let n = source.read_full_at(0, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (review): archive recovery refuses a segment of the wrong size (an empty file
    /// left by a failed archive_command, a longer one) and another cluster's: each is damage
    /// on its file, whatever follows it.
    #[test]
    fn an_archive_screens_wrong_sizes_and_foreign_segments() {
        let seg = 16u64 << 20;
        let reg = Registry::default();
        let dir = Path::new("/a");
        for (segno, size, id) in [(2u64, seg, 7u64), (3, 0, 7), (4, seg + 1, 7), (5, seg, 8)] {
            let path = dir.join(segment_name(1, segno, seg));
            reg.listed(dir, WalDirKind::Archive, std::slice::from_ref(&path));
            reg.add_segment(
                dir,
                WalDirKind::Archive,
                SegEntry {
                    path,
                    tli: 1,
                    segno,
                    partial: false,
                    params: segment::SegParams {
                        start: segno * seg,
                        seg_size: seg,
                        page_size: 8192,
                        tli: 1,
                        system_id: None,
                    },
                    summary: segment::Summary {
                        system_id: Some(id),
                        ..segment::Summary::default()
                    },
                    within: None,
                    size,
                },
            );
        }
        let (out, dirs) = reg.conclude(true, &|_| None);
        let bad: Vec<(String, FindingKind)> = out
            .findings
            .iter()
            .filter(|f| {
                f.detail.contains("wrong size") || f.detail.contains("another database system")
            })
            .map(|f| (file_name_of(f), f.kind))
            .collect();
        assert_eq!(
            bad,
            vec![
                ("000000010000000000000003".into(), FindingKind::Truncated),
                ("000000010000000000000004".into(), FindingKind::BadHeader),
                ("000000010000000000000005".into(), FindingKind::BadHeader),
            ],
            "{:?}",
            out.findings
        );
        // Each stands as a segment that stops at its start.
        let d = dirs.get(dir).unwrap();
        let refused = d
            .segments
            .values()
            .filter(|e| {
                matches!(
                    e.summary.breaks.first().map(|b| &b.why),
                    Some(segment::Stop::Refused(_))
                )
            })
            .count();
        assert_eq!(refused, 3);
    }

    fn file_name_of(f: &Finding) -> String {
        f.file
            .as_deref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Archived names: compressed (archive_command with gzip, WAL-G), pgBackRest's
    /// `<segment>-<sha1>[.<ext>]`, its `.partial-<sha1>`; history and backup files stay plain.
    #[test]
    fn stored_names_parse() {
        use crate::codec::Codec;
        let seg = WalName::Segment {
            tli: 1,
            log: 0,
            seg: 3,
            partial: false,
        };
        assert_eq!(
            parse_stored("000000010000000000000003.zst"),
            Some((
                seg,
                Stored {
                    codec: Some(Codec::Zstd),
                    sha1: None
                }
            ))
        );
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let (w, s) = parse_stored(&format!("000000010000000000000003-{sha}.gz")).unwrap();
        assert_eq!((w, s.codec), (seg, Some(Codec::Gzip)));
        assert_eq!(s.sha1.unwrap()[..2], [0x01, 0x23]);
        let (w, s) = parse_stored(&format!("000000010000000000000003-{sha}")).unwrap();
        assert_eq!((w, s.codec, s.sha1.is_some()), (seg, None, true));
        let (w, _) = parse_stored(&format!("000000010000000000000003.partial-{sha}.lz4")).unwrap();
        assert!(matches!(w, WalName::Segment { partial: true, .. }));
        assert_eq!(
            parse_stored("000000010000000000000003"),
            Some((seg, Stored::default()))
        );
        // WAL-G compresses history and backup files too.
        assert_eq!(
            parse_stored("00000002.history.lz4").map(|(w, s)| (w, s.codec)),
            Some((WalName::History { tli: 2 }, Some(Codec::Lz4)))
        );
        for bad in [
            "000000010000000000000003.rar",
            "00000002.history-0123456789abcdef0123456789abcdef01234567",
            "000000010000000000000003-0123.gz",
            "00000001000000000000003.gz",
            "000000010000000000000003-zz23456789abcdef0123456789abcdef01234567",
        ] {
            assert_eq!(parse_stored(bad), None, "{bad}");
        }
        assert!(is_log_folder("0000000100000000"));
        assert_eq!(
            wal_dir_of(Path::new("/r/archive/main/15-1/0000000100000000")),
            Path::new("/r/archive/main/15-1")
        );
        assert_eq!(wal_dir_of(Path::new("/r/wal")), Path::new("/r/wal"));
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            WalName::parse("000000010000000000000003"),
            Some(WalName::Segment {
                tli: 1,
                log: 0,
                seg: 3,
                partial: false
            })
        );
        assert!(matches!(
            WalName::parse("000000020000000A000000FF.partial"),
            Some(WalName::Segment {
                tli: 2,
                log: 10,
                seg: 255,
                partial: true
            })
        ));
        assert_eq!(
            WalName::parse("00000002.history"),
            Some(WalName::History { tli: 2 })
        );
        assert_eq!(
            WalName::parse("000000010000000000000007.00000028.backup"),
            Some(WalName::Backup {
                tli: 1,
                log: 0,
                seg: 7,
                offset: 0x28
            })
        );
        for bad in [
            "00000001000000000000000",
            "0000000100000000000000GG",
            "x.history",
            "",
        ] {
            assert_eq!(WalName::parse(bad), None, "{bad}");
        }
        assert_eq!(segno(0, 3, 16 << 20), 3);
        assert_eq!(segno(1, 0, 16 << 20), 256);
        assert_eq!(segment_name(1, 256, 16 << 20), "000000010000000100000000");
        assert_eq!(Lsn(0x3800170).to_string(), "0/3800170");
        assert_eq!(Lsn(0x1_0000_0028).to_string(), "1/28");
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use crate::format::{BytesSource, Format};
    use crate::postgres::PostgresFormat;

    /// A 1 MiB segment whose page headers are valid (so the record parser is reached) and whose
    /// payload is pseudo-random, cut to `len`.
    fn segment(seed: u64, len: usize, segno: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut b = vec![0u8; 1 << 20];
        for byte in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
        for (i, page) in b.chunks_mut(8192).enumerate() {
            let long = i == 0;
            page[..2].copy_from_slice(&0xD110u16.to_le_bytes());
            let info: u16 = if long { 2 } else { 0 } | (x as u16 & 1);
            page[2..4].copy_from_slice(&info.to_le_bytes());
            page[4..8].copy_from_slice(&1u32.to_le_bytes());
            let addr = segno * (1 << 20) + (i as u64) * 8192;
            page[8..16].copy_from_slice(&addr.to_le_bytes());
            if long {
                page[32..36].copy_from_slice(&(1u32 << 20).to_le_bytes());
                page[36..40].copy_from_slice(&8192u32.to_le_bytes());
            }
            // Small record lengths now and then, so records start and end.
            let at = if long { 40 } else { 24 };
            page[at..at + 4].copy_from_slice(&((x as u32 % 300) + 24).to_le_bytes());
        }
        b.truncate(len);
        b
    }

    fn scan(format: &PostgresFormat, name: &str, bytes: &[u8]) {
        let path = PathBuf::from(format!("/nonexistent/dbfsck-wal-test/{name}"));
        if let Ok(opened) = format.open(&path, &BytesSource(bytes)) {
            if let Some(check) = opened.check {
                let mut out = Vec::new();
                check.verify(&Chunk { offset: 0, bytes }, &mut out);
            }
        }
    }

    /// Bad input never panics: garbage records behind valid page headers, cut anywhere, joined
    /// with a neighbour, history and backup files of any bytes.
    #[test]
    fn garbage_wal_never_panics() {
        for seed in 1..40u64 {
            let format = PostgresFormat::default();
            let len = [1 << 20, 8192 * 3 + 17, 40, 0, 100_000][seed as usize % 5];
            let a = segment(seed, len, 1);
            let b = segment(seed * 7919, 1 << 20, 2);
            scan(&format, "000000010000000000000001", &a);
            scan(&format, "000000010000000000000002", &b);
            scan(&format, "00000002.history", &a[..a.len().min(300)]);
            scan(
                &format,
                "000000010000000000000001.00000028.backup",
                &b[..200],
            );
            let c = format.conclude(seed % 2 == 0);
            for f in &c.findings {
                assert!(f.file.is_some(), "{f:?}");
            }
        }
    }

    /// A segment file longer than wal_segment_size: only the segment is read (PostgreSQL never
    /// reads the rest), and a note says so.
    #[test]
    fn a_segment_longer_than_its_size_is_read_to_its_size() {
        let format = PostgresFormat::default();
        let mut b = segment(3, 1 << 20, 1);
        b.extend_from_slice(&[7u8; 100]);
        let path = PathBuf::from("/nonexistent/dbfsck-wal-test/000000010000000000000001");
        let opened = format.open(&path, &BytesSource(&b)).unwrap();
        assert_eq!(opened.notes.len(), 1, "{:?}", opened.notes);
        let layout = opened.check.unwrap().layout();
        assert_eq!((layout.start, layout.end), (0, 1 << 20));
    }

    /// Names whose position overflows or whose segment part is impossible for the segment size
    /// are not segments (an error that says so), never an overflow.
    #[test]
    fn impossible_segment_names_are_refused() {
        let format = PostgresFormat::default();
        let b = segment(5, 1 << 20, 1);
        for name in [
            "FFFFFFFFFFFFFFFFFFFFFFFF",
            "00000001FFFFFFFF00000FFF",
            "000000010000000000001000",
        ] {
            let path = PathBuf::from(format!("/nonexistent/dbfsck-wal-test/{name}"));
            assert!(format.open(&path, &BytesSource(&b)).is_err(), "{name}");
        }
    }
}
