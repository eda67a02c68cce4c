//! SQLite repairs (`docs/sqlite.md` §7). A `superseded_page` — a database-file page that fails
//! while SQLite reads a committed WAL frame in its place — is rewritten from that frame: the
//! bytes SQLite's next checkpoint writes, proven by the WAL's checksum chain and the page's own
//! rules. A damaged page nothing supersedes is copied to the quarantine and left as it is (an
//! SQLite page has no marker SQLite would read as a hole). Findings on the WAL or a journal,
//! and on header fields, are left with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dbfsck_core::sqlite::{DbView, PageRules};
use dbfsck_core::{Finding, FindingKind, RepairAction, Report};

use crate::plan::{Action, PageSpec, Source};
use crate::storage::{Storage, StorageFile};

/// A committed WAL frame chosen to rebuild a database page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSource {
    /// The `-wal` file.
    pub wal: PathBuf,
    /// The frame (from 1).
    pub frame: u64,
    /// Where the page's bytes start in the WAL.
    pub offset: u64,
    /// The xxh3-64 of the image as planned: the bytes written must be these bytes.
    pub digest: u64,
}

/// The databases read while planning, by path: each read once, however many findings.
#[derive(Default)]
pub(crate) struct SqlitePlanner {
    views: HashMap<PathBuf, Result<DbView, String>>,
}

impl SqlitePlanner {
    /// The actions for finding `i` (`run`, on a database, WAL or journal file), or why it is
    /// left.
    pub(crate) fn plan<S: Storage>(
        &mut self,
        storage: &S,
        report: &Report,
        i: usize,
        run: &Finding,
    ) -> Result<Action, String> {
        let Some(file) = report.scanned_file(run) else {
            return Err("the file was not scanned as a whole; not repaired".into());
        };
        let owner_has = |k: &str| run.owner.as_ref().is_some_and(|o| o.contains_key(k));
        let superseded = run.kind == FindingKind::SupersededPage;
        if is_log(&file.path) || !superseded && (owner_has("frame") || owner_has("journal_offset"))
        {
            return Err("damage in the WAL or journal itself: what it cuts off is lost to SQLite (the finding says how much); dbfsck does not rewrite logs — keep a copy of it, and restore the database from a backup if those transactions matter".into());
        }
        if !owner_has("page") {
            return Err("a header field or the file's size, not a page: there is no page image to restore it from; restore the database from a backup (or rebuild it with VACUUM INTO once SQLite reads it)".into());
        }
        let Some(pgno) = run
            .unit
            .and_then(|u| u32::try_from(u).ok())
            .filter(|&u| u > 0)
        else {
            return Err("no page number: not repaired".into());
        };
        let view = match self.views.entry(file.path.clone()).or_insert_with(|| {
            match DbView::open(&file.path) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err("its header can no longer be read as a database's".into()),
                Err(e) => Err(format!("the database cannot be read again: {e}")),
            }
        }) {
            Ok(v) => v,
            Err(e) => return Err(e.clone()),
        };
        let rules = view.rules();
        let p = rules.page_size() as u64;
        let base = Action {
            finding: i,
            path: file.path.clone(),
            display: run.path.clone(),
            offset: run.offset,
            length: run.length,
            unit: Some(u64::from(pgno)),
            units: run.units,
            action: RepairAction::Quarantine,
            spec: PageSpec::Sqlite(rules),
            source: None,
            zero_run: false,
            detail: String::new(),
        };
        if run.kind == FindingKind::SupersededPage {
            if owner_has("journal_offset") {
                return Err("SQLite's rollback restores this page from the hot journal on the next open of the database; dbfsck does not roll journals back".into());
            }
            // Nothing in the format ties a WAL to its database: a stray or foreign WAL beside
            // it is read too (by SQLite as well). Its frames are trusted only when the database
            // as SQLite reads it with them shows no damage at all; a foreign WAL shows plenty.
            let wal_display = format!("{}-wal", run.path);
            let other = report
                .findings
                .iter()
                .filter(|f| f.kind.is_damage() && (f.path == run.path || f.path == wal_display))
                .count();
            if other > 0 {
                return Err(format!("the database as SQLite reads it with this WAL is damaged ({other} finding(s)), so nothing shows the WAL belongs to this database: its frames are not used; deal with that damage, then repair again"));
            }
            let Some(img) = view.wal_image(pgno) else {
                return Err("no committed WAL frame holds this page now (the WAL changed since the scan); scan again".into());
            };
            let planned = run
                .owner
                .as_ref()
                .and_then(|o| o.get("frame"))
                .and_then(|v| v.as_u64());
            if planned != Some(img.frame) {
                return Err(format!("the WAL changed since the scan (the page's newest committed frame is {} now); scan again", img.frame));
            }
            trust(storage, &img.log, &file.path)?;
            let mut bytes = vec![0u8; rules.page_size()];
            let n = storage
                .open_read(&img.log)
                .and_then(|f| f.read_full_at(&mut bytes, img.offset))
                .map_err(|e| format!("the WAL frame cannot be read: {e}"))?;
            if n < bytes.len() || !rules.verifies(pgno, &bytes) {
                return Err(format!("the image in committed WAL frame {} fails the page's rules too: nothing verified to restore it from; SQLite reads that frame, so restore the database from a backup", img.frame));
            }
            return Ok(Action {
                offset: (u64::from(pgno) - 1) * p,
                length: p,
                units: None,
                action: RepairAction::RestoreFromWal,
                source: Some(Source::Sqlite(FrameSource {
                    wal: img.log.clone(),
                    frame: img.frame,
                    offset: img.offset,
                    digest: xxhash_rust::xxh3::xxh3_64(&bytes),
                })),
                detail: format!("rewritten from committed WAL frame {}, the image SQLite reads for this page (what its next checkpoint writes): the frame's checksum chain verifies and the image passes the page's rules", img.frame),
                ..base
            });
        }
        if !run.offset.is_multiple_of(p) || run.length == 0 || !run.length.is_multiple_of(p) {
            return Err("not a whole page: not repaired".into());
        }
        let what = match (
            run.owner
                .as_ref()
                .and_then(|o| o.get("object_type"))
                .and_then(|v| v.as_str()),
            run.owner
                .as_ref()
                .and_then(|o| o.get("object"))
                .and_then(|v| v.as_str()),
        ) {
            (Some(t), Some(o)) => {
                format!("what it holds of {t} {o} is lost to SQLite: restore {t} {o} from a backup")
            }
            _ => "what it holds is lost to SQLite: restore the database from a backup".into(),
        };
        Ok(Action {
            zero_run: run.kind == FindingKind::ZeroedPage,
            detail: format!("no committed WAL frame supersedes this page: its bytes are copied to the quarantine and left as they are (SQLite has no marker for a lost page); {what}"),
            ..base
        })
    }
}

/// For an SQLite database: whether `page` passes page `unit`'s rules and is byte for byte the
/// image planned (`digest`, its xxh3-64).
pub(crate) fn verifies(rules: &PageRules, page: &[u8], unit: u64, digest: u64) -> bool {
    u32::try_from(unit).is_ok_and(|pgno| rules.verifies(pgno, page))
        && xxhash_rust::xxh3::xxh3_64(page) == digest
}

/// Why the WAL beside a database is not a source, if it is not: another user could have
/// written it (it is writable by others, or not owned by the database's owner).
fn trust<S: Storage>(storage: &S, wal: &Path, db: &Path) -> Result<(), String> {
    let meta = |p: &Path| storage.open_read(p).and_then(|f| f.meta());
    match (meta(wal), meta(db)) {
        (Ok(Some(w)), _) if w.writable_by_others() => Err(format!(
            "{} is writable by other users, so its frames are not trusted as a source",
            wal.display()
        )),
        (Ok(Some(w)), Ok(Some(d))) if w.uid != d.uid => Err(format!(
            "{} belongs to another user (uid {}) than the database (uid {}), so its frames are not trusted as a source",
            wal.display(),
            w.uid,
            d.uid
        )),
        (Err(e), _) | (_, Err(e)) => Err(format!("cannot check who owns the WAL: {e}")),
        _ => Ok(()),
    }
}

/// Whether `path` is named as a database's `-wal` or `-journal`.
fn is_log(path: &Path) -> bool {
    let s = path.as_os_str().as_encoded_bytes();
    s.ends_with(b"-wal") || s.ends_with(b"-journal")
}
