//! The position of a scan, for nightly windows: which byte ranges of which files are verified,
//! saved with `--state FILE` and continued with `--resume`. The findings of the pieces of a
//! stopped-and-resumed scan add up to exactly those of one full scan: a range is verified in
//! exactly one piece, and a file's open-time findings are reported by the first piece only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The state file's version.
pub const STATE_VERSION: u32 = 1;

/// What a scan has verified so far.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScanState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The roots, as given; a resume must name the same ones.
    pub roots: Vec<String>,
    /// True when the scan reached the end: a resume then starts a new full scan.
    pub complete: bool,
    /// Per file (as reports name it), what is done.
    pub files: BTreeMap<String, FileState>,
}

/// What is done in one file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileState {
    /// The file's length when it was opened; a file whose length changed is scanned afresh.
    pub len: u64,
    /// Its open-time findings (header, partial page…) were reported.
    pub opened: bool,
    /// Verified byte ranges `[start, end)`, sorted and merged.
    pub done: Vec<[u64; 2]>,
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
}

/// Why a state file cannot be used. One sentence each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not JSON of the right shape.
    #[error("the state file is not a dbfsck scan state: {0}")]
    Malformed(String),
    /// Another version.
    #[error("the state file has version {0}; this dbfsck reads version 1")]
    Version(u32),
    /// Other roots.
    #[error("the state file is for {saved:?}, not {given:?}")]
    OtherRoots {
        /// Roots in the state.
        saved: Vec<String>,
        /// Roots given now.
        given: Vec<String>,
    },
}

impl ScanState {
    /// Parses a state file and checks it belongs to a scan of `roots`.
    pub fn parse(text: &str, roots: &[String]) -> Result<Self, StateError> {
        let state: ScanState =
            serde_json::from_str(text).map_err(|e| StateError::Malformed(e.to_string()))?;
        if state.version != STATE_VERSION {
            return Err(StateError::Version(state.version));
        }
        if state.roots != roots {
            return Err(StateError::OtherRoots {
                saved: state.roots,
                given: roots.to_vec(),
            });
        }
        Ok(state)
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
    fn a_state_for_other_roots_or_versions_is_refused() {
        let s = ScanState {
            version: 1,
            roots: vec!["/a".into()],
            ..ScanState::default()
        };
        let text = s.to_json();
        assert!(ScanState::parse(&text, &["/a".into()]).is_ok());
        assert!(matches!(
            ScanState::parse(&text, &["/b".into()]),
            Err(StateError::OtherRoots { .. })
        ));
        assert!(matches!(
            ScanState::parse(
                &text.replace("\"version\": 1", "\"version\": 9"),
                &["/a".into()]
            ),
            Err(StateError::Version(9))
        ));
        assert!(matches!(
            ScanState::parse("{", &[]),
            Err(StateError::Malformed(_))
        ));
    }
}
