//! The position of a scan, for nightly windows: which byte ranges of which files are verified,
//! saved with `--state FILE` and continued with `--resume`. The findings of the pieces of a
//! stopped-and-resumed scan add up to exactly those of one full scan: a range is verified in
//! exactly one piece, and recorded as verified only together with the findings it holds, so a
//! piece killed after a checkpoint loses nothing — the next piece reports what it had found.
//! Each file is bound to its identity (device, inode, size, mtime, ctime) and the roots to
//! theirs: a file that changed is scanned afresh, a state of other roots starts a new scan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, FindingKind};

/// The state file's version.
pub const STATE_VERSION: u32 = 2;

/// What a scan has verified so far.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScanState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The roots, as given.
    pub roots: Vec<String>,
    /// Device and inode of each root as opened: a resume must name the very same roots.
    #[serde(default)]
    pub root_ids: Vec<[u64; 2]>,
    /// True when the scan reached the end: a resume then starts a new full scan.
    pub complete: bool,
    /// Per file, keyed by [`file_key`] of its real path (lossless: two names that print alike
    /// are two keys), what is done.
    pub files: BTreeMap<String, FileState>,
    /// Findings recorded with the ranges they were found in and not yet reported by a piece
    /// that reached its end (one killed after a checkpoint): the next piece reports them.
    #[serde(default)]
    pub pending: Vec<StateFinding>,
    /// What the pieces of this cycle (since the last complete scan) reported.
    #[serde(default)]
    pub cycle: Cycle,
}

/// The key of a file in [`ScanState::files`]: its real path when that is UTF-8, otherwise a
/// NUL (which no path holds, so no UTF-8 path collides with it), `b64:` and the path's bytes in
/// base64. Reports print non-UTF-8 bytes as U+FFFD, so `a\xfe` and `a\xff` look alike there;
/// a key by that printed name would credit one file's verified ranges to the other.
pub fn file_key(path: &std::path::Path) -> String {
    use base64::Engine as _;
    use std::os::unix::ffi::OsStrExt;
    match path.to_str() {
        Some(s) => s.to_owned(),
        None => format!(
            "\0b64:{}",
            base64::engine::general_purpose::STANDARD.encode(path.as_os_str().as_bytes())
        ),
    }
}

/// What is done in one file, and which file it is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileState {
    /// The file's length when it was opened.
    pub len: u64,
    /// Its open-time findings (header, partial page…) were recorded.
    pub opened: bool,
    /// Verified byte ranges `[start, end)`, sorted and merged.
    pub done: Vec<[u64; 2]>,
    /// Device and inode.
    #[serde(default)]
    pub id: [u64; 2],
    /// Modification time, `[seconds, nanoseconds]`.
    #[serde(default)]
    pub mtime: [i64; 2],
    /// Status change time, `[seconds, nanoseconds]`.
    #[serde(default)]
    pub ctime: [i64; 2],
    /// Every range of the file is verified: a resumed piece that finds the file unchanged
    /// (by `fstat`) does not read it again, not even its head.
    #[serde(default)]
    pub verified: bool,
}

/// A finding kept in the state, with its file's real path (base64 of its bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFinding {
    /// The finding.
    pub finding: Finding,
    /// `finding.file`, raw bytes in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl StateFinding {
    /// The finding as kept.
    pub fn keep(f: &Finding) -> Self {
        use base64::Engine as _;
        use std::os::unix::ffi::OsStrExt;
        StateFinding {
            finding: f.clone(),
            file: f.file.as_ref().map(|p| {
                base64::engine::general_purpose::STANDARD.encode(p.as_os_str().as_bytes())
            }),
        }
    }

    /// The finding back, with its file.
    pub fn restore(&self) -> Finding {
        use base64::Engine as _;
        use std::os::unix::ffi::OsStrExt;
        let mut f = self.finding.clone();
        f.file = self.file.as_ref().and_then(|b| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
            Some(std::ffi::OsStr::from_bytes(&bytes).into())
        });
        f
    }
}

/// What the pieces of one cycle reported, so that the piece that completes it can say whether
/// the cycle — not only the last night — found damage.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cycle {
    /// Pieces that reported (this one included, in a report).
    pub pieces: u64,
    /// When the cycle's first piece started (Unix seconds).
    pub started: u64,
    /// Findings reported.
    pub findings: u64,
    /// Units covered by damage findings.
    pub damaged_units: u64,
    /// Findings by kind.
    pub by_kind: BTreeMap<FindingKind, u64>,
    /// The exit bits the pieces' findings and errors set: 4 damage left, 8 operational.
    pub exit_bits: i32,
}

impl Cycle {
    /// Adds one piece's reported findings and exit bits.
    pub fn add(&mut self, findings: &[Finding], exit_bits: i32) {
        self.pieces += 1;
        for f in findings {
            self.findings += 1;
            *self.by_kind.entry(f.kind).or_insert(0) += 1;
            if f.kind.is_damage() {
                self.damaged_units += f.unit_count();
            }
        }
        self.exit_bits |= exit_bits & (crate::exit::DAMAGE_LEFT | crate::exit::OPERATIONAL);
    }
}

impl FileState {
    /// Marks `[start, end)` verified.
    pub fn add(&mut self, start: u64, end: u64) {
        if end <= start {
            return;
        }
        self.done.push([start, end]);
        self.done.sort_unstable();
        let mut merged: Vec<[u64; 2]> = Vec::with_capacity(self.done.len());
        for r in self.done.drain(..) {
            match merged.last_mut() {
                Some(last) if r[0] <= last[1] => last[1] = last[1].max(r[1]),
                _ => merged.push(r),
            }
        }
        self.done = merged;
    }

    /// The parts of `[start, end)` not yet verified.
    pub fn uncovered(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = start;
        for r in &self.done {
            if r[1] <= at {
                continue;
            }
            if r[0] >= end {
                break;
            }
            if r[0] > at {
                out.push((at, r[0].min(end)));
            }
            at = at.max(r[1]);
            if at >= end {
                break;
            }
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    /// Whether every range is one a scan of this file can have recorded: the whole file (it
    /// was verified while opening), or whole units of its layout (`start`, `end`, `align`).
    pub fn fits(&self, len: u64, start: u64, end: u64, align: u64) -> bool {
        let align = align.max(1);
        self.done.iter().all(|&[a, b]| {
            let whole = a == 0 && b == len;
            let on_unit = |x: u64| x == end || (x >= start && (x - start).is_multiple_of(align));
            whole || (a < b && a >= start && b <= end && on_unit(a) && on_unit(b))
        })
    }
}

/// Why a state file cannot be used. One sentence each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not JSON of the right shape.
    #[error("the state file is not a dbfsck scan state: {0}")]
    Malformed(String),
    /// Another version.
    #[error("the state file has version {0}; this dbfsck reads version {STATE_VERSION}")]
    Version(u32),
}

impl ScanState {
    /// Parses a state file. Whether it belongs to this scan (its roots, its files) is for the
    /// scan to decide, file by file.
    pub fn parse(text: &str) -> Result<Self, StateError> {
        #[derive(Deserialize)]
        struct Head {
            version: u32,
        }
        let head: Head =
            serde_json::from_str(text).map_err(|e| StateError::Malformed(e.to_string()))?;
        if head.version != STATE_VERSION {
            return Err(StateError::Version(head.version));
        }
        serde_json::from_str(text).map_err(|e| StateError::Malformed(e.to_string()))
    }

    /// The state as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_uncovered_parts_are_exact() {
        let mut f = FileState::default();
        f.add(100, 200);
        f.add(300, 400);
        f.add(200, 250);
        assert_eq!(f.done, [[100, 250], [300, 400]]);
        assert_eq!(f.uncovered(0, 500), [(0, 100), (250, 300), (400, 500)]);
        assert_eq!(f.uncovered(120, 240), []);
        assert_eq!(f.uncovered(240, 310), [(250, 300)]);
        f.add(0, 1000);
        assert_eq!(f.done, [[0, 1000]]);
    }

    #[test]
    fn a_state_of_another_version_or_shape_is_refused() {
        let s = ScanState {
            version: STATE_VERSION,
            roots: vec!["/a".into()],
            ..ScanState::default()
        };
        let text = s.to_json();
        assert!(ScanState::parse(&text).is_ok());
        assert!(matches!(
            ScanState::parse(&text.replace("\"version\": 2", "\"version\": 9")),
            Err(StateError::Version(9))
        ));
        assert!(matches!(
            ScanState::parse("{"),
            Err(StateError::Malformed(_))
        ));
        assert!(matches!(
            ScanState::parse(""),
            Err(StateError::Malformed(_))
        ));
    }

    #[test]
    fn ranges_fit_only_the_files_layout() {
        let mut f = FileState::default();
        f.add(4096, 3 * 4096);
        assert!(f.fits(10 * 4096, 4096, 10 * 4096, 4096));
        f.add(20000, 21000);
        assert!(!f.fits(10 * 4096, 4096, 10 * 4096, 4096));
        let mut whole = FileState::default();
        whole.add(0, 777);
        assert!(whole.fits(777, 4096, 0, 4096));
        assert!(!whole.fits(778, 4096, 0, 4096));
    }
}
