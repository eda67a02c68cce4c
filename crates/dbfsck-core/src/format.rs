//! The format trait: how a storage engine's files are recognised, cut into units and verified.
//!
//! One module per format implements [`Format`]; users implement it for their own formats and hand
//! it to the same [`Scanner`](crate::Scanner). A format is asked three things:
//!
//! 1. **Recognise**: [`Format::detect_file`] looks at a file's first bytes;
//!    [`Format::detect_dir`] looks for markers in a directory (for example `PG_VERSION`), and a
//!    directory a format claims is listed by [`Format::list_dir`].
//! 2. **Open**: [`Format::open`] reads what it needs (a header page, a control file) through
//!    [`FileSource`] and returns an [`Opened`] file: findings about the file as a whole (bad
//!    header, partial page) and a [`UnitCheck`] for the rest.
//! 3. **Verify**: the engine cuts the checked range ([`Layout`]) into chunks that start on
//!    multiples of [`Layout::align`] and calls [`UnitCheck::verify`] on each, from many threads.
//!
//! Fixed-size pages set `align` to the page size, so any run of pages is a chunk. Record logs
//! whose records are found by parsing set `align` to the block at which parsing can restart (for
//! example LevelDB's 32 KiB log blocks), or to the whole range when only a sequential parse works.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::finding::Finding;

/// What the engine knows about a file before any format has looked at it.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The path of the file.
    pub path: &'a Path,
    /// The file's length in bytes.
    pub len: u64,
    /// The file's first bytes: [`Probe::HEAD_LEN`] bytes, or the whole file if it is shorter.
    pub head: &'a [u8],
}

impl Probe<'_> {
    /// How many leading bytes the engine reads for detection (128 KiB: twice the largest page
    /// size, so a format can look at its second page when the first is damaged).
    pub const HEAD_LEN: usize = 128 * 1024;
}

/// Random access to the bytes of the file being opened.
pub trait FileSource {
    /// The file's length in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (fewer only at the
    /// end of the file).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;

    /// The file's first bytes when the engine has already read them (possibly fewer than the
    /// file's length, or none): a format may parse its header from them without another read.
    fn cached_head(&self) -> &[u8] {
        &[]
    }

    /// Reads up to `buf.len()` bytes at `offset` from the file itself, never from a copy read
    /// earlier (such as the cached head): what a running datastore has written since.
    fn read_again_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read_at(offset, buf)
    }

    /// Reads until `buf` is full or the file ends; returns how many bytes were read.
    fn read_full_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            match self.read_at(offset + done as u64, rest)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }
}

/// A [`FileSource`] over bytes in memory (tests, fuzzing, a file already read).
#[derive(Debug, Clone, Copy)]
pub struct BytesSource<'a>(pub &'a [u8]);

impl FileSource for BytesSource<'_> {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = usize::try_from(offset).map_or(self.0.len(), |o| o.min(self.0.len()));
        let src = self.0.get(start..).unwrap_or_default();
        let n = buf.len().min(src.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
}

/// The byte range of a file that is cut into chunks, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// First byte of the checked range.
    pub start: u64,
    /// End of the checked range (exclusive).
    pub end: u64,
    /// Chunks start at `start + k * align`; a page size for pages, a restart block for logs.
    pub align: u64,
}

impl Layout {
    /// The length of the checked range.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the checked range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A piece of a file handed to [`UnitCheck::verify`].
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// Offset of `bytes[0]` in the file; a multiple of the layout's `align` from its `start`.
    pub offset: u64,
    /// The bytes; whole multiples of `align` except possibly at the end of the layout.
    pub bytes: &'a [u8],
}

/// Verifies the units of one opened file. Called from many threads at once, on disjoint chunks.
pub trait UnitCheck: Send + Sync {
    /// The range to check and how it may be cut.
    fn layout(&self) -> Layout;

    /// The ranges actually checked, in order and disjoint, each inside [`UnitCheck::layout`]
    /// and cut on its own `align` (the members of an archive, say, each starting where its
    /// header ends). Default: the layout.
    fn extents(&self) -> Vec<Layout> {
        vec![self.layout()]
    }

    /// Verifies every unit in `chunk`, pushes a finding for each damaged one, and returns the
    /// number of units verified. Must not panic on any input.
    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64;

    /// Conditions met while verifying that are not damage (units that could not be checked,
    /// say), reported as warnings on the file once every piece of it is verified. Default: none.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// How many units `dbfsck inspect --page N` can show when units are not `align`-sized (a
    /// table's blocks, listed by its index); with [`UnitCheck::unit_range`]. Default: none.
    fn unit_count(&self) -> Option<u64> {
        None
    }

    /// Where unit `unit` lies when units are not `align`-sized: `inspect` reads that range,
    /// decodes it with [`UnitCheck::describe`] and judges it with [`UnitCheck::verify`] (which
    /// then verifies the units wholly inside the chunk). Default: none.
    fn unit_range(&self, _unit: u64) -> Option<std::ops::Range<u64>> {
        None
    }

    /// The size of the unit `dbfsck inspect --page N` shows when the checked range is verified as
    /// one larger chunk (a WAL segment is read whole and shown a page at a time). Default: none,
    /// a unit is `align` bytes.
    fn inspect_unit(&self) -> Option<u64> {
        None
    }

    /// The fields of unit `unit` (of [`UnitCheck::inspect_unit`] bytes), given the whole checked
    /// range as `chunk`, judged by the code a scan uses. Default: none.
    fn inspect_in(&self, _chunk: &Chunk<'_>, _unit: u64) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The header fields of the one unit in `chunk`, decoded for people (`dbfsck inspect`):
    /// `(name, value)` pairs, stored and computed checksums included. Default: none.
    fn describe(&self, _chunk: &Chunk<'_>) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A file a format has opened: what it found about the file as a whole, and how to check the rest.
pub struct Opened {
    /// Findings about the file as a whole (damaged header, partial trailing page…).
    pub findings: Vec<Finding>,
    /// The check of the units, or `None` when nothing more can be checked.
    pub check: Option<Box<dyn UnitCheck>>,
    /// Units already verified while opening (a header page, say), counted in the summary.
    pub units: u64,
    /// When set, a unit that fails is re-read after this pause and judged again before it is
    /// reported (a live datastore may be writing it); `None` judges once.
    pub recheck_after: Option<std::time::Duration>,
    /// Conditions the operator should know about that are not damage (a doublewrite slot the
    /// server would ignore, say); reported as warnings on the file.
    pub notes: Vec<String>,
}

impl Opened {
    /// A file that is not checked, with the reason as a note (a file the running server is
    /// still creating, say): no finding, no unit.
    pub fn note(why: String) -> Opened {
        Opened {
            findings: Vec::new(),
            check: None,
            units: 0,
            recheck_after: None,
            notes: vec![why],
        }
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("findings", &self.findings)
            .field("layout", &self.check.as_ref().map(|c| c.layout()))
            .finish()
    }
}

/// What a format found in a directory it claims.
#[derive(Debug, Default, Clone)]
pub struct DirListing {
    /// Files to scan with this format.
    pub files: Vec<PathBuf>,
    /// Paths deliberately not scanned, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Paths that could not be listed or stop the scan of this directory, and why (exit bit 8).
    pub errors: Vec<(PathBuf, String)>,
    /// Conditions the operator must know about (a running server, say), and why.
    pub warnings: Vec<(PathBuf, String)>,
    /// The datastore is running (its server holds its lock): a listed file that disappears or
    /// shrinks before the scan reads it was dropped or truncated by the server, not damaged.
    pub live: bool,
}

/// What a format concludes once every file of a scan is verified: findings and verdicts that
/// need several files at once (a log whose records cross files, whose end is told from damage
/// only by what follows it).
#[derive(Debug, Default)]
pub struct Conclusion {
    /// Findings, each with [`Finding::file`] set to the real path of the file it is about (the
    /// engine names it as the scan reached it).
    pub findings: Vec<Finding>,
    /// Conditions the operator should know about, by path.
    pub warnings: Vec<(PathBuf, String)>,
    /// Paths that could not be used as asked (`--wal-archive` naming no archive): errors,
    /// exit bit 8.
    pub errors: Vec<(PathBuf, String)>,
    /// Replay verdicts (`summary.recovery`).
    pub recovery: Vec<crate::report::RecoveryVerdict>,
    /// Backup verdicts (`summary.backups`); `restorable` and `damaged_findings` are filled in by
    /// the engine from every finding of the scan.
    pub backups: Vec<crate::report::BackupVerdict>,
    /// Restore verdicts over a WAL archive (`summary.restores`).
    pub restores: Vec<crate::report::RestoreVerdict>,
    /// Units verified while concluding (records that cross files), counted in the summary.
    pub units: u64,
}

/// Why a format could not open a file (the file is reported as an error, exit bit 8).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Reading the file failed.
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not of this format and nothing about it can be checked.
    #[error("not a {format} file: {reason}")]
    NotThisFormat {
        /// The format's name.
        format: &'static str,
        /// Why, in a few words.
        reason: String,
    },
}

/// A storage engine's file format.
pub trait Format: Send + Sync {
    /// Short name used by `--format` and in every finding (for example `native`, `postgres`).
    fn name(&self) -> &'static str;

    /// One line saying what the format is and what it checks.
    fn description(&self) -> &'static str;

    /// Whether a file looks like one of this format's files (by magic, usually).
    fn detect_file(&self, probe: &Probe<'_>) -> bool;

    /// Whether a directory is a datastore of this format (by markers such as `PG_VERSION`).
    fn detect_dir(&self, _dir: &Path) -> bool {
        false
    }

    /// The files to scan in a directory this format claims; `None` walks every regular file
    /// under it. A format with a skip list (PostgreSQL's) overrides this.
    fn list_dir(&self, _dir: &Path) -> Option<DirListing> {
        None
    }

    /// Whether a file met while walking a directory must not even be read, and why (SQLite's
    /// `-shm` wal-index, shared memory other processes map). Default: none.
    fn ignore_file(&self, _path: &Path) -> Option<String> {
        None
    }

    /// Opens a file: reads its header and returns the file-level findings and the unit check.
    fn open(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError>;

    /// Called once after every file of a scan is verified: what needs several files at once.
    /// `complete` is false when the scan stopped early (time limit, cancel): a format then judges
    /// only what it saw whole, or says why it does not. Default: nothing.
    fn conclude(&self, _complete: bool) -> Conclusion {
        Conclusion::default()
    }
}
