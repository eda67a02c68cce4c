//! Findings: what a scan found wrong, one per damaged range.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The class of a finding. Serialized in snake_case in every output (the names are a contract).
///
/// A format uses the kinds that apply to it. Classification is honest: when the evidence does not
/// say that a unit is torn or misdirected, it is a [`FindingKind::ChecksumMismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// The stored checksum differs from the one computed over the unit's bytes.
    ChecksumMismatch,
    /// The unit mixes two writes (for example its header and trailer LSN disagree).
    TornWrite,
    /// A valid unit that belongs to another unit number or another file.
    MisdirectedWrite,
    /// All zero where a written unit is expected.
    ZeroedPage,
    /// The file length is not a whole number of pages; the range is the trailing piece.
    PartialPage,
    /// A magic, version or size field is impossible.
    BadHeader,
    /// A record or a file is cut short.
    Truncated,
    /// The bytes could not be read.
    IoError,
    /// Online mode: a re-read of the unit differed from the first read.
    ChangedDuringScan,
    /// A page that a repair replaced with a quarantine marker: a known hole, its data is lost.
    Quarantined,
    /// The end of a log is cut inside a record: the crash's last, unflushed write, which the
    /// engine's recovery discards by design (no exit bit; `docs/output.md` §7).
    TornTail,
    /// A page breaks a structural rule of its format (SQLite: a cell pointer out of range, an
    /// overflow chain of the wrong length); `detail` names the rule and the cell.
    BadStructure,
    /// A page no structure of the file reaches (SQLite's "never used").
    OrphanPage,
    /// A page two structures of the file claim (two parents, a loop in a chain).
    DoubleReference,
    /// A damaged page of a file that the engine does not read, because a committed log image
    /// supersedes it (SQLite: a committed WAL frame, a hot journal's original): the next
    /// checkpoint or rollback overwrites it (no exit bit; `docs/output.md` §7).
    SupersededPage,
    /// A file a backup's manifest lists is not in the backup.
    MissingFile,
    /// A file in a backup that its manifest does not list.
    UnexpectedFile,
    /// A backed-up file's size differs from its manifest's.
    SizeMismatch,
}

impl FindingKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [FindingKind; 18] = [
        FindingKind::ChecksumMismatch,
        FindingKind::TornWrite,
        FindingKind::MisdirectedWrite,
        FindingKind::ZeroedPage,
        FindingKind::PartialPage,
        FindingKind::BadHeader,
        FindingKind::Truncated,
        FindingKind::IoError,
        FindingKind::ChangedDuringScan,
        FindingKind::Quarantined,
        FindingKind::TornTail,
        FindingKind::BadStructure,
        FindingKind::OrphanPage,
        FindingKind::DoubleReference,
        FindingKind::SupersededPage,
        FindingKind::MissingFile,
        FindingKind::UnexpectedFile,
        FindingKind::SizeMismatch,
    ];

    /// The snake_case name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ChecksumMismatch => "checksum_mismatch",
            FindingKind::TornWrite => "torn_write",
            FindingKind::MisdirectedWrite => "misdirected_write",
            FindingKind::ZeroedPage => "zeroed_page",
            FindingKind::PartialPage => "partial_page",
            FindingKind::BadHeader => "bad_header",
            FindingKind::Truncated => "truncated",
            FindingKind::IoError => "io_error",
            FindingKind::ChangedDuringScan => "changed_during_scan",
            FindingKind::Quarantined => "quarantined",
            FindingKind::TornTail => "torn_tail",
            FindingKind::BadStructure => "bad_structure",
            FindingKind::OrphanPage => "orphan_page",
            FindingKind::DoubleReference => "double_reference",
            FindingKind::SupersededPage => "superseded_page",
            FindingKind::MissingFile => "missing_file",
            FindingKind::UnexpectedFile => "unexpected_file",
            FindingKind::SizeMismatch => "size_mismatch",
        }
    }

    /// Whether this kind means data is damaged (exit bit 4), as opposed to an operational problem
    /// (`io_error`, exit bit 8), a live-system effect (`changed_during_scan`) or damage the
    /// engine never reads (`torn_tail`, `superseded_page`).
    pub fn is_damage(self) -> bool {
        !matches!(
            self,
            FindingKind::IoError
                | FindingKind::ChangedDuringScan
                | FindingKind::TornTail
                | FindingKind::SupersededPage
        )
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Format-specific description of what a damaged unit belongs to (relation, table, file id…).
pub type Owner = serde_json::Map<String, serde_json::Value>;

/// One damaged range of one file.
///
/// Formats create findings with [`Finding::new`] and the builder methods; the engine fills in
/// `path` and `format`. Fields that do not apply are `None` and are omitted from JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The file as reached from the scan root (root joined with the relative path).
    pub path: String,
    /// Byte offset of the damaged range in the file.
    pub offset: u64,
    /// Length of the damaged range in bytes.
    pub length: u64,
    /// Name of the format that judged the file.
    pub format: String,
    /// Index of the page or record in the file (the first, for a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<u64>,
    /// For a run of like findings on consecutive units (all zero pages, say): how many units
    /// from `unit` it covers; `offset` and `length` cover them all. Absent for one unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u64>,
    /// What is wrong.
    pub kind: FindingKind,
    /// The checksum stored in the unit (what the writer recorded), as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The checksum computed over the unit's bytes as they are now, as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// One sentence for the operator.
    pub detail: String,
    /// What the unit belongs to, format-specific.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The file itself, as opened (its real path, bytes and all); set by the engine. What
    /// runs after the scan (repair) finds the file by this, never by the lossy `path`.
    #[serde(skip)]
    pub file: Option<std::path::PathBuf>,
}

impl Finding {
    /// A finding of `kind` over `length` bytes at `offset`; the engine sets `path` and `format`.
    pub fn new(kind: FindingKind, offset: u64, length: u64, detail: impl Into<String>) -> Self {
        Finding {
            path: String::new(),
            offset,
            length,
            format: String::new(),
            unit: None,
            units: None,
            kind,
            expected: None,
            actual: None,
            detail: detail.into(),
            owner: None,
            file: None,
        }
    }

    /// Sets the unit (page or record) index.
    #[must_use]
    pub fn unit(mut self, unit: u64) -> Self {
        self.unit = Some(unit);
        self
    }

    /// Sets the stored (`expected`) and computed (`actual`) checksums.
    #[must_use]
    pub fn checksums(mut self, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self.actual = Some(actual.into());
        self
    }

    /// Sets the owner description.
    #[must_use]
    pub fn owner(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// How many units the finding covers: `units`, or 1 for a finding about one unit, 0 for
    /// one about a byte range.
    pub fn unit_count(&self) -> u64 {
        match (self.unit, self.units) {
            (Some(_), Some(n)) => n,
            (Some(_), None) => 1,
            (None, _) => 0,
        }
    }

    /// Extends `self` by `next` when `next` continues it and says the same thing: a run of
    /// like findings on consecutive units (same kind, format, detail and owner, no checksums),
    /// or adjacent `io_error` / `truncated` byte ranges. Returns whether it did. How the work
    /// was cut into chunks never shows in a report, and memory stays bounded whatever the
    /// size of a damaged run.
    pub fn try_extend(&mut self, next: &Finding) -> bool {
        let alike = next.kind == self.kind
            && next.path == self.path
            && next.file == self.file
            && next.format == self.format
            && next.detail == self.detail
            && next.owner == self.owner
            && self.expected.is_none()
            && next.expected.is_none()
            && self.actual.is_none()
            && next.actual.is_none()
            && self.offset.checked_add(self.length) == Some(next.offset);
        if !alike {
            return false;
        }
        match (self.unit, next.unit) {
            (Some(u), Some(n)) if u.checked_add(self.unit_count()) == Some(n) => {
                self.units = Some(self.unit_count() + next.unit_count());
            }
            (None, None) if matches!(self.kind, FindingKind::IoError | FindingKind::Truncated) => {}
            _ => return false,
        }
        self.length += next.length;
        true
    }

    /// The order of every report: path, then offset, then kind (two files whose paths show
    /// alike, non-UTF-8 names, stay apart by their real paths).
    pub fn sort_key(&self) -> (&str, Option<&std::path::Path>, u64, FindingKind, u64) {
        (
            &self.path,
            self.file.as_deref(),
            self.offset,
            self.kind,
            self.length,
        )
    }
}
