//! Planning: one action per finding (`docs/format.md` §10.1). A damaged native page is restored
//! from the newest committed journal image of that page whose own checksum verifies and whose
//! LSN is not older than any LSN evidence surviving in the damaged page; otherwise it is
//! quarantined. A torn trailing piece with no image is cut off. A damaged InnoDB page is
//! restored the same way from the doublewrite buffer (`docs/innodb.md` §7), or its bytes are copied to the
//! quarantine and left in place. Everything else is left, with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dbfsck_core::innodb::redo::{self, RedoBounds};
use dbfsck_core::innodb::{
    self, InnodbFormat, PageVerdict as InnodbVerdict, Slot, SpaceFormat, SpaceParams,
};
use dbfsck_core::native::journal::{looks_like_journal, read_journal, JournalImage};
use dbfsck_core::native::layout::{
    FILE_ID_OFF, LSN_OFF, MAGIC_OFF, PAGE_HEADER_LEN, PAGE_MAGIC, PAGE_NO_OFF, TYPE_OFF,
};
use dbfsck_core::native::{
    identify, verify_page, FileParams, MismatchCause, NativeFormat, PageType, PageVerdict,
};
use dbfsck_core::{Finding, FindingKind, RepairAction, Report, ScannedFile};

use crate::postgres::lsn_text;
use crate::storage::{FileMeta, Source as StorageSource, Storage, StorageFile};

/// A committed journal image chosen to rebuild a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The journal file.
    pub journal: PathBuf,
    /// Where the image is in it.
    pub image: JournalImage,
}

/// A doublewrite slot chosen to rebuild an InnoDB page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSource {
    /// The system tablespace file that holds the slot (`ibdata1`).
    pub file: PathBuf,
    /// The slot.
    pub slot: Slot,
}

/// Where a restored page comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A committed native journal image.
    Journal(ImageSource),
    /// An InnoDB doublewrite slot.
    Doublewrite(SlotSource),
    /// A PostgreSQL full-page image in WAL.
    Wal(crate::postgres::WalSource),
    /// Bytes the repair built from verified blocks (a salvaged table, a MANIFEST edit).
    Rebuilt(crate::lsm::Rebuilt),
    /// A committed SQLite WAL frame.
    Sqlite(crate::sqlite::FrameSource),
}

impl Source {
    /// The file the image is read from.
    pub fn path(&self) -> &Path {
        match self {
            Source::Journal(s) => &s.journal,
            Source::Doublewrite(s) => &s.file,
            Source::Wal(s) => &s.settings.wal_dir,
            Source::Rebuilt(r) => &r.from,
            Source::Sqlite(s) => &s.wal,
        }
    }

    /// The image's byte offset in that file.
    pub fn offset(&self) -> u64 {
        match self {
            Source::Journal(s) => s.image.offset,
            Source::Doublewrite(s) => s.slot.offset,
            // The record's LSN: its position in the WAL.
            Source::Wal(s) => s.image.record,
            Source::Rebuilt(_) => 0,
            Source::Sqlite(s) => s.offset,
        }
    }

    /// The LSN the image must carry (for an SQLite frame: the xxh3-64 of its bytes).
    pub fn lsn(&self) -> u64 {
        match self {
            Source::Journal(s) => s.image.lsn,
            Source::Doublewrite(s) => s.slot.lsn,
            Source::Wal(s) => s.image.end,
            Source::Rebuilt(_) => 0,
            Source::Sqlite(s) => s.digest,
        }
    }
}

/// How the pages of a file to repair are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSpec {
    /// A native page file.
    Native(FileParams),
    /// An InnoDB tablespace file.
    Innodb(SpaceParams),
    /// A PostgreSQL relation segment file.
    Postgres(crate::postgres::PgSpec),
    /// A RocksDB or LevelDB table, MANIFEST or log.
    Lsm(crate::lsm::LsmSpec),
    /// An SQLite database file.
    Sqlite(dbfsck_core::sqlite::PageRules),
}

impl PageSpec {
    /// Bytes per page in the file.
    pub fn page_size(&self) -> usize {
        match self {
            PageSpec::Native(p) => p.page_size,
            PageSpec::Innodb(p) => p.format.physical_size,
            PageSpec::Postgres(p) => p.blcksz,
            PageSpec::Lsm(_) => 1,
            PageSpec::Sqlite(r) => r.page_size(),
        }
    }

    /// Whether `page` verifies, on its own checksum, as page `unit` of the file (the file's
    /// `unit`-th page) carrying exactly `lsn`.
    pub fn verifies(&self, page: &[u8], unit: u64, lsn: u64) -> bool {
        match self {
            PageSpec::Native(p) => {
                matches!(verify_page(page, p, unit), PageVerdict::Ok { lsn: l, .. } if l == lsn)
            }
            PageSpec::Innodb(p) => matches!(
                innodb::judge_page(page, &p.format, p.space_id, p.first_page + unit),
                InnodbVerdict::Ok { lsn: l, .. } if l == lsn
            ),
            PageSpec::Postgres(p) => p.verifies(page, unit, lsn),
            PageSpec::Lsm(_) => false,
            PageSpec::Sqlite(r) => crate::sqlite::verifies(r, page, unit, lsn),
        }
    }
}

/// One planned action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Index of the finding in the report.
    pub finding: usize,
    /// The file to change.
    pub path: PathBuf,
    /// The path as the report shows it.
    pub display: String,
    /// First byte changed.
    pub offset: u64,
    /// Bytes changed (a page, or the piece cut off).
    pub length: u64,
    /// The page (the first, for a run).
    pub unit: Option<u64>,
    /// For a run: how many consecutive all-zero pages from `unit` are quarantined together
    /// (nothing to copy, one marker each); `None` for one page.
    pub units: Option<u64>,
    /// What is done.
    pub action: RepairAction,
    /// How the file's pages verify.
    pub spec: PageSpec,
    /// For a restore, the image.
    pub source: Option<Source>,
    /// The pages are all zero (a zeroed hole): quarantined without a copy, undone as zeros.
    pub zero_run: bool,
    /// Why this action, in words.
    pub detail: String,
}

impl Action {
    /// The `source` field of the report: the journal image or doublewrite slot, or `None`.
    pub fn source_text(&self) -> Option<String> {
        self.source.as_ref().map(|s| match s {
            Source::Journal(s) => format!(
                "{} (batch {}, LSN {}, image at byte {})",
                s.journal.display(),
                s.image.batch,
                s.image.lsn,
                s.image.offset
            ),
            Source::Doublewrite(s) => format!(
                "{} (doublewrite slot at page {}, LSN {}, image at byte {})",
                s.file.display(),
                s.slot.slot_page,
                s.slot.lsn,
                s.slot.offset
            ),
            Source::Wal(s) => format!(
                "{} (full-page image in the WAL record at {}, block {}; page LSN {})",
                s.settings.wal_dir.display(),
                lsn_text(s.image.record),
                s.image.block_id,
                lsn_text(s.image.end)
            ),
            Source::Rebuilt(r) => format!("{} ({})", r.from.display(), r.what),
            Source::Sqlite(s) => format!(
                "{} (committed frame {}, image at byte {})",
                s.wal.display(),
                s.frame,
                s.offset
            ),
        })
    }
}

/// A finding (or part of a run) no action addresses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// Index of the finding in the report.
    pub finding: usize,
    /// The first page left (the finding's, or one inside its run).
    pub unit: Option<u64>,
    /// How many pages from `unit`, when more than one.
    pub units: Option<u64>,
    /// Why it is left, in words.
    pub reason: String,
}

/// The plan: actions in report order, and what is left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The actions.
    pub actions: Vec<Action>,
    /// Damage findings no action addresses.
    pub left: Vec<Left>,
    /// The journals read, with the committed images each holds.
    pub journals: Vec<(PathBuf, usize)>,
    /// The InnoDB system tablespaces read, with the populated doublewrite slots each holds.
    pub doublewrite: Vec<(PathBuf, usize)>,
    /// Problems reading files or journals while planning: (path, message).
    pub errors: Vec<(String, String)>,
    /// Files the plan would replace most of with markers: refused unless forced.
    pub sweeping: Vec<PathBuf>,
}

/// Committed journal images of one store, by (file id, page number).
type Images = HashMap<(u64, u64), Vec<ImageSource>>;

/// One store — the page files and journals of one directory — as far as a repair needs it.
#[derive(Default)]
struct Store {
    images: Images,
    /// Each journal's trust: `None` when usable, else why not (for a file of owner `uid`).
    journals: HashMap<PathBuf, JournalTrust>,
    /// Page files per file id: an id two files share identifies neither.
    file_ids: HashMap<u64, usize>,
    /// Symbolic links in the directory (never followed).
    links: usize,
}

struct JournalTrust {
    meta: Option<FileMeta>,
    /// Why the journal is not a source whoever owns the data: a stale copy.
    stale: Option<String>,
}

impl Store {
    /// Why `journal` is not a source for a page file with `data` ownership, if it is not.
    fn distrust(&self, journal: &Path, data: Option<FileMeta>) -> Option<String> {
        let t = self.journals.get(journal)?;
        if let Some(why) = &t.stale {
            return Some(why.clone());
        }
        match (t.meta, data) {
            (Some(j), _) if j.writable_by_others() => Some(format!(
                "{} is writable by users other than its owner (mode {:o}), so anyone could have written its images",
                journal.display(),
                j.mode & 0o7777
            )),
            (Some(j), Some(d)) if j.uid != d.uid => Some(format!(
                "{} is owned by uid {}, not by the page file's owner (uid {})",
                journal.display(),
                j.uid,
                d.uid
            )),
            _ => None,
        }
    }
}

/// The stores read so far, by directory. A page is rebuilt only from a journal of its own
/// store — a journal beside it, in the same directory, which is where
/// [`JournaledStore`](crate::JournaledStore) keeps the files it serves — never from a journal of
/// another root, a backup or a replica, whose images may be older than what the page last held;
/// and within the store only from the current copy of a journal, owned like the page file and
/// writable by no one else.
#[derive(Default)]
struct Stores {
    by_dir: HashMap<PathBuf, Store>,
}

impl Stores {
    /// The store in `dir`, read once: every journal (found by its magic) and every page file's id.
    fn store<S: Storage>(&mut self, storage: &S, dir: &Path, plan: &mut Plan) -> &Store {
        if !self.by_dir.contains_key(dir) {
            let store = read_store(storage, dir, plan);
            self.by_dir.insert(dir.to_path_buf(), store);
        }
        self.by_dir.entry(dir.to_path_buf()).or_default()
    }
}

fn read_store<S: Storage>(storage: &S, dir: &Path, plan: &mut Plan) -> Store {
    let mut store = Store::default();
    let (files, links) = match storage.list_dir(dir) {
        Ok(l) => l,
        Err(e) => {
            plan.errors.push((
                dir.display().to_string(),
                format!(
                    "the directory could not be listed, so no journal of its store is used: {e}"
                ),
            ));
            return store;
        }
    };
    store.links = links;
    // (journal id, generation) of each readable journal.
    let mut headers: Vec<(PathBuf, u64, u64)> = Vec::new();
    for path in files {
        let Ok(head) = read_head(storage, &path, PAGE_HEADER_LEN) else {
            continue;
        };
        if !looks_like_journal(&head) {
            let is_page_file = head.get(MAGIC_OFF..MAGIC_OFF + 4) == Some(&PAGE_MAGIC[..])
                && head.get(TYPE_OFF..TYPE_OFF + 2) == Some(&PageType::HEADER.to_le_bytes()[..]);
            if let (true, Some(id)) = (is_page_file, le64(&head, FILE_ID_OFF)) {
                *store.file_ids.entry(id).or_default() += 1;
            }
            continue;
        }
        let index = storage.open_read(&path).and_then(|file| {
            let len = file.len()?;
            let meta = file.meta()?;
            let index =
                read_journal(&StorageSource { file: &file, len }).map_err(std::io::Error::other)?;
            Ok((index, meta))
        });
        match index {
            Ok((index, meta)) => {
                plan.journals.push((path.clone(), index.images.len()));
                headers.push((
                    path.clone(),
                    index.header.journal_id,
                    index.header.generation,
                ));
                store
                    .journals
                    .insert(path.clone(), JournalTrust { meta, stale: None });
                for image in index.images {
                    store
                        .images
                        .entry((image.file_id, image.page_no))
                        .or_default()
                        .push(ImageSource {
                            journal: path.clone(),
                            image,
                        });
                }
            }
            Err(e) => plan
                .errors
                .push((path.display().to_string(), format!("journal not used: {e}"))),
        }
    }
    // Copies of one journal (same id): only the newest generation is current, and two current
    // copies cannot be told apart.
    for (path, id, generation) in &headers {
        let newest = headers
            .iter()
            .filter(|h| h.1 == *id)
            .map(|h| h.2)
            .max()
            .unwrap_or(*generation);
        let twins: Vec<&PathBuf> = headers
            .iter()
            .filter(|h| h.1 == *id && h.2 == newest && h.0 != *path)
            .map(|h| &h.0)
            .collect();
        let stale = if *generation < newest {
            Some(format!(
                "{} is an older copy (generation {generation}) of a journal whose generation {newest} is in the same store",
                path.display()
            ))
        } else {
            twins.first().map(|twin| {
                format!(
                    "{} and {} are copies of one journal (same id and generation): which is current cannot be told",
                    path.display(),
                    twin.display()
                )
            })
        };
        if let (Some(why), Some(t)) = (stale, store.journals.get_mut(path)) {
            t.stale = Some(why);
        }
    }
    store
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Plans the repair of a report's findings, reading the files and journals through `storage`.
pub fn plan<S: Storage>(report: &Report, storage: &S) -> Plan {
    let mut plan = Plan::default();
    let mut stores = Stores::default();
    let mut is_journal: HashMap<PathBuf, bool> = HashMap::new();
    let mut innodb = InnodbPlanner::read(report, storage, &mut plan);
    let mut pg = crate::postgres::PostgresPlanner::default();
    let mut sqlite = crate::sqlite::SqlitePlanner::default();
    let mut params_cache: HashMap<PathBuf, Result<FileParams, String>> = HashMap::new();
    let mut left: Vec<Left> = Vec::new();
    let mut lsm_done: Vec<usize> = Vec::new();
    for (i, run) in report.findings.iter().enumerate() {
        // A RocksDB/LevelDB torn log tail is cut (what recovery does, made explicit).
        let lsm_tail = run.kind == FindingKind::TornTail && crate::lsm::handles(run);
        let superseded = run.kind == FindingKind::SupersededPage
            && run.format == dbfsck_core::sqlite::SqliteFormat::NAME;
        if !run.kind.is_damage() && !lsm_tail && !superseded {
            continue;
        }
        // What holds for the whole finding (a run of pages included) is decided once.
        let mut leave_all = |reason: String| {
            left.push(Left {
                finding: i,
                unit: run.unit,
                units: run.units,
                reason,
            })
        };
        // A file the scan reached outside its roots (through an InnoDB .isl link, say) is
        // reported, never written: the operator named what may be repaired.
        if let Some(file) = report
            .scanned_file(run)
            .filter(|f| !report.root_paths.is_empty() && !report.under_roots(&f.path))
        {
            leave_all(format!(
                "{} lies outside the scanned paths, so it is not repaired; scan its own directory to repair it",
                file.path.display()
            ));
            continue;
        }
        // The findings describe the file as the scan saw it: one that was replaced, grew or
        // shrank since (a datastore writing, a restore) is left for a new scan.
        if let Some(file) = report.scanned_file(run) {
            if let Some(why) = changed_since_scan(storage, file) {
                leave_all(why);
                continue;
            }
        }
        if run.kind == FindingKind::Quarantined {
            leave_all("a quarantine marker from an earlier repair: this page's data is lost; restore it from a backup".into());
            continue;
        }
        let innodb_file = run.format == InnodbFormat::NAME;
        if run.format == dbfsck_core::postgres::PostgresFormat::NAME {
            for finding in unit_views(run) {
                match pg.plan(storage, report, i, &finding) {
                    Ok(action) => plan.actions.push(action),
                    Err(reason) => push_left(&mut left, i, finding.unit, reason),
                }
            }
            continue;
        }
        if crate::lsm::handles(run) {
            match crate::lsm::plan(storage, report, i, &mut lsm_done) {
                Ok(actions) => plan.actions.extend(actions),
                Err(reason) => leave_all(reason),
            }
            continue;
        }
        if run.format == dbfsck_core::sqlite::SqliteFormat::NAME {
            match sqlite.plan(storage, report, i, run) {
                Ok(action) => plan.actions.push(action),
                Err(reason) => leave_all(reason),
            }
            continue;
        }
        if !innodb_file && run.format != NativeFormat::NAME {
            leave_all(format!(
                "dbfsck does not repair {} files; restore this range from a backup",
                run.format
            ));
            continue;
        }
        let Some(file) = report.scanned_file(run) else {
            leave_all("the file was not scanned as a whole; not repaired".into());
            continue;
        };
        let mut native = None;
        if !innodb_file {
            let journal = *is_journal.entry(file.path.clone()).or_insert_with(|| {
                read_head(storage, &file.path, 4).is_ok_and(|h| looks_like_journal(&h))
            });
            if journal {
                leave_all(
                    "a damaged journal is only read, never repaired; its damaged part is not used"
                        .into(),
                );
                continue;
            }
            if run.unit.is_none() {
                leave_all("no page to act on; restore the file from a backup".into());
                continue;
            }
            let params = params_cache
                .entry(file.path.clone())
                .or_insert_with(|| file_params(storage, &file.path))
                .clone();
            match params {
                Ok(p) => native = Some(p),
                Err(e) => {
                    leave_all(format!("the file's parameters cannot be read: {e}"));
                    continue;
                }
            }
        }
        // Then each page of it.
        for finding in unit_views(run) {
            let mut leave = |reason: String| {
                push_left(&mut left, i, finding.unit, reason);
            };
            if innodb_file {
                match innodb.plan(storage, report, i, &finding) {
                    Ok(action) => plan.actions.push(action),
                    Err(reason) => leave(reason),
                }
                continue;
            }
            let Some(params) = native else {
                continue;
            };
            let Some(unit) = finding.unit.filter(|&u| u > 0) else {
                leave(
                    "the header page is not rebuilt by this version; restore the file from a backup"
                        .into(),
                );
                continue;
            };
            let dir = file
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let store = stores.store(storage, dir, &mut plan);
            match plan_page(storage, store, &finding, &file.path, unit, &params) {
                Ok(Decision::Act(action, source, detail, zeroed)) => push_action(
                    &mut plan.actions,
                    Action {
                        finding: i,
                        path: file.path.clone(),
                        display: finding.path.clone(),
                        offset: unit * params.page_size as u64,
                        length: match action {
                            RepairAction::TruncateTail => finding.length,
                            _ => params.page_size as u64,
                        },
                        unit: Some(unit),
                        units: None,
                        action,
                        spec: PageSpec::Native(params),
                        source,
                        detail,
                        zero_run: false,
                    },
                    zeroed,
                ),
                Ok(Decision::Leave(reason)) => leave(reason),
                Err(e) => leave(format!("reading the page failed: {e}")),
            }
        }
    }
    left.sort_by_key(|l| (l.finding, l.unit));
    plan.left = left;
    plan
}

/// Adds `a` to the plan, folding it into the previous action when both quarantine all-zero
/// pages of one file, one after the other: a hole of any size is one action (a few bytes of
/// memory, one undo entry, no copy), not one per page.
fn push_action(actions: &mut Vec<Action>, a: Action, zeroed: bool) {
    if zeroed && a.action == RepairAction::Quarantine && matches!(a.spec, PageSpec::Native(_)) {
        if let Some(last) = actions.last_mut() {
            let next = last
                .unit
                .zip(a.unit)
                .is_some_and(|(l, u)| l + last.units.unwrap_or(1) == u);
            if next
                && last.zero_run
                && last.path == a.path
                && last.finding == a.finding
                && last.action == RepairAction::Quarantine
                && last.offset + last.length == a.offset
            {
                last.units = Some(last.units.unwrap_or(1) + 1);
                last.length += a.length;
                return;
            }
        }
        actions.push(Action {
            zero_run: true,
            ..a
        });
        return;
    }
    actions.push(a);
}

/// The pages of a finding, one finding each: itself, or each page of a run.
fn unit_views(run: &Finding) -> impl Iterator<Item = std::borrow::Cow<'_, Finding>> + '_ {
    let n = run.unit_count().max(1);
    let per = run.length / n;
    (0..n).map(move |k| {
        if n == 1 {
            return std::borrow::Cow::Borrowed(run);
        }
        let mut f = run.clone();
        f.unit = run.unit.map(|u| u + k);
        f.units = None;
        f.offset = run.offset + k * per;
        f.length = per;
        std::borrow::Cow::Owned(f)
    })
}

/// Records that page `unit` of finding `finding` is left, joining it to the previous entry
/// when that is the page before with the same reason (a run stays one entry).
fn push_left(left: &mut Vec<Left>, finding: usize, unit: Option<u64>, reason: String) {
    if let Some(last) = left.last_mut() {
        let next = last
            .unit
            .zip(unit)
            .is_some_and(|(a, b)| a + last.units.unwrap_or(1) == b);
        if last.finding == finding && last.reason == reason && next {
            last.units = Some(last.units.unwrap_or(1) + 1);
            return;
        }
    }
    left.push(Left {
        finding,
        unit,
        units: None,
        reason,
    });
}

enum Decision {
    /// The action, its source, why, and whether the page is all zero now.
    Act(RepairAction, Option<Source>, String, bool),
    Leave(String),
}

fn plan_page<S: Storage>(
    storage: &S,
    store: &Store,
    finding: &Finding,
    path: &Path,
    unit: u64,
    params: &FileParams,
) -> std::io::Result<Decision> {
    let ps = params.page_size as u64;
    let file = storage.open_read(path)?;
    let data_meta = file.meta()?;
    let mut page = vec![0u8; params.page_size];
    let n = file.read_full_at(&mut page, unit * ps)?;
    let partial = n < params.page_size;
    page.truncate(n);
    let verdict = (!partial).then(|| verify_page(&page, params, unit));
    if matches!(verdict, Some(PageVerdict::Ok { .. })) {
        return Ok(Decision::Leave(
            "the page verifies now; it changed since the scan and is left alone".into(),
        ));
    }
    let evidence = lsn_evidence(&page, params, unit, verdict.as_ref());
    let mut unusable = 0;
    let mut older = None::<u64>;
    let mut best: Option<(u64, usize, &ImageSource)> = None;
    let shared_id = store.file_ids.get(&params.file_id).copied().unwrap_or(0) > 1;
    let all = store
        .images
        .get(&(params.file_id, unit))
        .map_or(&[][..], |v| &v[..]);
    // Images of journals the page file cannot trust are no candidates; why, in words.
    let mut distrusted: Vec<String> = Vec::new();
    let candidates: Vec<&ImageSource> = if shared_id {
        Vec::new()
    } else {
        all.iter()
            .filter(|c| match store.distrust(&c.journal, data_meta) {
                Some(why) => {
                    if !distrusted.contains(&why) {
                        distrusted.push(why);
                    }
                    false
                }
                None => true,
            })
            .collect()
    };
    for (order, c) in candidates.iter().copied().enumerate() {
        match verified_image(storage, c, params, unit) {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                unusable += 1;
                continue;
            }
        }
        if evidence.is_some_and(|e| c.image.lsn < e) {
            older = Some(older.map_or(c.image.lsn, |o| o.max(c.image.lsn)));
            continue;
        }
        if best.is_none_or(|(lsn, o, _)| (c.image.lsn, order) > (lsn, o)) {
            best = Some((c.image.lsn, order, c));
        }
    }
    if let Some((lsn, _, c)) = best {
        return Ok(Decision::Act(
            RepairAction::RestoreFromJournal,
            Some(Source::Journal(c.clone())),
            format!("rebuilt from a committed journal image (LSN {lsn}) whose checksum verifies"),
            false,
        ));
    }
    let mut why = match (candidates.len(), older, evidence) {
        (0, _, _) if shared_id => format!(
            "{} page files in this store carry file id 0x{:016x}, so a journal image cannot tell which it belongs to",
            store.file_ids.get(&params.file_id).copied().unwrap_or(0),
            params.file_id
        ),
        (0, _, _) if !distrusted.is_empty() => format!(
            "no trusted journal holds an image of this page ({})",
            distrusted.join("; ")
        ),
        (0, _, _) if store.links > 0 => format!(
            "no journal in this directory holds an image of this page ({} symbolic link(s) here were not followed: a journal is used only where it is)",
            store.links
        ),
        (0, _, _) => "no journal holds an image of this page".to_owned(),
        (_, Some(o), Some(e)) => format!(
            "the newest usable journal image (LSN {o}) is older than the LSN {e} the damaged page still shows"
        ),
        _ => "no journal image of this page verifies".to_owned(),
    };
    if unusable > 0 && !candidates.is_empty() && older.is_some() {
        why.push_str(&format!(
            "; {unusable} other image(s) fail their own checksum"
        ));
    }
    if finding.kind == FindingKind::PartialPage || partial {
        return Ok(Decision::Act(
            RepairAction::TruncateTail,
            None,
            format!("{why}: the torn trailing piece is copied to the quarantine and cut off"),
            false,
        ));
    }
    // A page that verifies on its own is a whole page of somewhere: never replaced by a marker
    // (when the file's identity is in doubt, it may be this file's data that is misjudged).
    if let Some(PageVerdict::Misdirected { file_id, page_no }) = verdict {
        return Ok(Decision::Leave(format!(
            "{why}; the page verifies on its own (page {page_no} of file id 0x{file_id:016x}), so it is left as it is; restore this page from a backup"
        )));
    }
    if let Some(PageVerdict::Zeroed) = verdict {
        return Ok(Decision::Act(
            RepairAction::Quarantine,
            None,
            format!("{why}: the page is all zero, so there is nothing to copy; it is replaced by a quarantine marker"),
            true,
        ));
    }
    Ok(Decision::Act(
        RepairAction::Quarantine,
        None,
        format!("{why}: the page is copied to the quarantine and replaced by a quarantine marker"),
        false,
    ))
}

/// The highest LSN the damaged page still shows for itself, or `None` when it shows none:
/// a zeroed page, a page that belongs elsewhere, a field the verdict names as the damaged one.
/// Garbage in the trailer counts as evidence: it can only make the choice more careful.
fn lsn_evidence(
    page: &[u8],
    params: &FileParams,
    unit: u64,
    verdict: Option<&PageVerdict>,
) -> Option<u64> {
    let le = |off: usize| {
        page.get(off..off + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let ps = params.page_size;
    let header = le(LSN_OFF);
    let trailer = (page.len() == ps).then(|| le(ps - 16)).flatten();
    let identity = page.get(MAGIC_OFF..MAGIC_OFF + 4) == Some(&PAGE_MAGIC[..])
        && le(FILE_ID_OFF) == Some(params.file_id)
        && le(PAGE_NO_OFF) == Some(unit);
    match verdict {
        Some(PageVerdict::Zeroed | PageVerdict::Misdirected { .. }) => None,
        Some(PageVerdict::ChecksumMismatch {
            cause: MismatchCause::HeaderLsn,
            ..
        }) => trailer,
        Some(PageVerdict::ChecksumMismatch {
            cause: MismatchCause::TrailerLsn,
            ..
        }) => header,
        _ => {
            let h = if identity && page.len() >= PAGE_HEADER_LEN {
                header
            } else {
                None
            };
            match (h, trailer) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        }
    }
}

/// Whether a journal image verifies as page `unit` of the file on its own checksum, with the
/// LSN its record names.
fn verified_image<S: Storage>(
    storage: &S,
    c: &ImageSource,
    params: &FileParams,
    unit: u64,
) -> std::io::Result<bool> {
    let spec = PageSpec::Native(*params);
    let source = Source::Journal(c.clone());
    Ok(read_source(storage, &source, &spec)?
        .is_some_and(|img| spec.verifies(&img, unit, c.image.lsn)))
}

/// The bytes of an image, if it has the file's page size: a journal image, or the start of a
/// doublewrite slot (a ROW_FORMAT=COMPRESSED page fills only the start of its slot).
pub(crate) fn read_source<S: Storage>(
    storage: &S,
    source: &Source,
    spec: &PageSpec,
) -> std::io::Result<Option<Vec<u8>>> {
    let len = spec.page_size();
    if let (Source::Wal(w), PageSpec::Postgres(p)) = (source, spec) {
        // Rebuilt from its record, read and verified again; `None` when it no longer can be.
        return Ok(w.rebuild(p).ok().filter(|img| img.len() == len));
    }
    if let Source::Journal(c) = source {
        if c.image.len != len {
            return Ok(None);
        }
    }
    let f = storage.open_read(source.path())?;
    let mut img = vec![0u8; len];
    let n = f.read_full_at(&mut img, source.offset())?;
    Ok((n == img.len()).then_some(img))
}

/// Plans InnoDB findings from the doublewrite buffers of the scanned system tablespaces.
struct InnodbPlanner {
    buffers: Vec<Buffer>,
    params: HashMap<PathBuf, Result<SpaceParams, String>>,
    /// Per data directory: how many scanned tablespace files claim each space id.
    claims: HashMap<Option<PathBuf>, HashMap<u32, usize>>,
}

/// One data directory's doublewrite buffer and what its redo log says about the slots' LSNs.
struct Buffer {
    dir: Option<PathBuf>,
    /// The system tablespace file that holds the slots (`ibdata1`).
    sys: PathBuf,
    slots: Vec<Slot>,
    /// The checkpoint and end LSNs of `ib_logfile0`, or why they cannot be known.
    redo: Result<RedoBounds, String>,
}

impl InnodbPlanner {
    fn read<S: Storage>(report: &Report, storage: &S, plan: &mut Plan) -> Self {
        let mut buffers = Vec::new();
        for f in report
            .files
            .iter()
            .filter(|f| f.format == InnodbFormat::NAME)
        {
            if f.path.file_name().is_none_or(|n| n != "ibdata1") {
                continue;
            }
            let slots = (|| {
                let head = read_head(storage, &f.path, 4 * 65536)?;
                let params = innodb::space_params(&head).map_err(std::io::Error::other)?;
                let file = storage.open_read(&f.path)?;
                let len = file.len()?;
                innodb::doublewrite::read_slots(
                    &StorageSource { file: &file, len },
                    params.format.physical_size,
                )
            })();
            match slots {
                Ok(Some((_, slots))) => {
                    plan.doublewrite.push((f.path.clone(), slots.len()));
                    let dir = innodb::data_dir_of(&f.path);
                    let redo = read_redo(storage, dir.as_deref().unwrap_or(Path::new(".")));
                    buffers.push(Buffer {
                        dir,
                        sys: f.path.clone(),
                        slots,
                        redo,
                    });
                }
                Ok(None) => {}
                Err(e) => plan.errors.push((
                    f.display.clone(),
                    format!("the doublewrite buffer could not be read, so no page is restored from it: {e}"),
                )),
            }
        }
        InnodbPlanner {
            buffers,
            params: HashMap::new(),
            claims: HashMap::new(),
        }
    }

    fn plan<S: Storage>(
        &mut self,
        storage: &S,
        report: &Report,
        index: usize,
        finding: &Finding,
    ) -> Result<Action, String> {
        let (file, unit) = file_and_unit(
            report,
            finding,
            "InnoDB files grow in whole pages: a partial last page is left; restore the file from a backup",
        )?;
        let params = self
            .params
            .entry(file.path.clone())
            .or_insert_with(|| innodb_params(storage, &file.path))
            .clone()
            .map_err(|e| format!("the tablespace's parameters cannot be read: {e}"))?;
        let spec = PageSpec::Innodb(params);
        let ps = params.format.physical_size;
        let page_no = params.first_page + unit;
        let page = read_unit(storage, &file.path, unit, ps)?;
        let verdict = innodb::judge_page(&page, &params.format, params.space_id, page_no);
        if matches!(verdict, InnodbVerdict::Ok { .. } | InnodbVerdict::Zero) {
            return Err(
                "the page verifies now; it changed since the scan and is left alone".into(),
            );
        }
        if let InnodbVerdict::Unchecked(why) = verdict {
            return Err(format!(
                "the page cannot be checked now ({why}); it changed since the scan and is left alone"
            ));
        }
        // The LSN the damaged page still shows for itself, when its header says it is this page.
        let identity = innodb::fil::PAGE_NO;
        let says_itself = page.get(identity..identity + 4)
            == Some(&(page_no as u32).to_be_bytes()[..])
            && page.get(34..38) == Some(&params.space_id.to_be_bytes()[..])
            && finding.kind != FindingKind::MisdirectedWrite;
        let evidence = says_itself.then(|| {
            u64::from_be_bytes(
                page.get(16..24)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 8]),
            )
        });
        // The trailer keeps the low 32 bits of the LSN of the page's last write; it survives
        // damage to the header (a zeroed first sector, say).
        // A misdirected page is another page, trailer included: no evidence about this one.
        let trailer = (finding.kind != FindingKind::MisdirectedWrite)
            .then(|| innodb_trailer_lsn(&page, &params.format))
            .flatten();
        let known: Vec<PathBuf> = self.buffers.iter().filter_map(|b| b.dir.clone()).collect();
        let dir = innodb::owning_data_dir(&file.path, &known);
        let claims = self
            .claims
            .entry(dir.clone())
            .or_insert_with(|| space_claims(storage, report, dir.as_deref(), &known));
        let shared_id = claims.get(&params.space_id).copied().unwrap_or(0) > 1;
        // Page 0's LSN 0: a tablespace imported and not written since; slots of that space id
        // are of the incarnation before the import (or of another file).
        let imported = unit != 0 && page0_lsn(storage, &file.path, &params) == Some(0);
        let mut candidates = 0;
        let mut older = None::<(u64, String)>;
        let mut refused: Option<String> = None;
        let mut best: Option<Source> = None;
        for b in self.buffers.iter().filter(|b| b.dir == dir) {
            for slot in b
                .slots
                .iter()
                .filter(|s| s.space_id == params.space_id && u64::from(s.page_no) == page_no)
            {
                candidates += 1;
                let source = Source::Doublewrite(SlotSource {
                    file: b.sys.clone(),
                    slot: *slot,
                });
                let ok = read_source(storage, &source, &spec)
                    .ok()
                    .flatten()
                    .is_some_and(|img| spec.verifies(&img, unit, slot.lsn));
                if !ok {
                    continue;
                }
                let stale = match (evidence, trailer) {
                    (Some(e), _) if slot.lsn < e => Some(format!("the LSN {e} the damaged page still shows")),
                    (_, Some(t)) if trailer_is_newer(t, slot.lsn) => Some(format!(
                        "the page's last write, whose LSN its trailer still shows (low 32 bits {t}; a damaged trailer counts too)"
                    )),
                    _ => None,
                };
                if let Some(what) = stale {
                    if older.as_ref().is_none_or(|(o, _)| slot.lsn > *o) {
                        older = Some((slot.lsn, what));
                    }
                    continue;
                }
                let why = match &b.redo {
                    Err(e) => Some(format!("the redo log {e}, so no doublewrite image can be proven current")),
                    Ok(r) if slot.lsn < r.checkpoint_lsn => Some(format!(
                        "the doublewrite image (LSN {}) is older than the redo log's checkpoint (LSN {}): changes after it may be lost, and the server ignores such a slot too",
                        slot.lsn, r.checkpoint_lsn
                    )),
                    Ok(r) if slot.lsn > r.end_lsn => Some(format!(
                        "the doublewrite image (LSN {}) is newer than the end of this data directory's redo log (LSN {}): it is not this server's",
                        slot.lsn, r.end_lsn
                    )),
                    Ok(_) if shared_id => Some(format!(
                        "space id {} is claimed by more than one tablespace file in this data directory, so the image cannot be proven to be this file's",
                        params.space_id
                    )),
                    Ok(_) if imported => Some("page 0 of the tablespace has LSN 0 (imported and not written since): the image may be of the tablespace before the import".into()),
                    Ok(_) => None,
                };
                if let Some(why) = why {
                    refused.get_or_insert(why);
                    continue;
                }
                if best.as_ref().is_none_or(|b| slot.lsn > b.lsn()) {
                    best = Some(source);
                }
            }
        }
        let base = Action {
            units: None,
            zero_run: false,
            finding: index,
            path: file.path.clone(),
            display: finding.path.clone(),
            offset: unit * ps as u64,
            length: ps as u64,
            unit: Some(unit),
            action: RepairAction::Quarantine,
            spec,
            source: None,
            detail: String::new(),
        };
        if let Some(source) = best {
            let lsn = source.lsn();
            return Ok(Action {
                action: RepairAction::RestoreFromDoublewrite,
                source: Some(source),
                detail: format!("rebuilt from the doublewrite buffer (LSN {lsn}): the slot's header names this page and its checksum verifies in the tablespace's format"),
                ..base
            });
        }
        let why = match (candidates, refused, older) {
            (0, _, _) => "no doublewrite slot holds this page".to_owned(),
            (_, Some(r), _) => r,
            (_, None, Some((o, what))) => {
                format!("the newest doublewrite image (LSN {o}) is older than {what}")
            }
            _ => "no doublewrite image of this page verifies".to_owned(),
        };
        Ok(Action {
            detail: format!("{why}: the page is copied to the quarantine and left as it is (InnoDB has no page the server reads as a known hole); restore the table from a backup"),
            ..base
        })
    }
}

/// Page `unit` of `path` (`size` bytes each) as it is now, or why it cannot be read.
pub(crate) fn read_unit<S: Storage>(
    storage: &S,
    path: &Path,
    unit: u64,
    size: usize,
) -> Result<Vec<u8>, String> {
    let f = storage
        .open_read(path)
        .map_err(|e| format!("reading the page failed: {e}"))?;
    let mut page = vec![0u8; size];
    let n = f
        .read_full_at(&mut page, unit * size as u64)
        .map_err(|e| format!("reading the page failed: {e}"))?;
    if n < size {
        return Err("the page is short: the file changed since the scan; not repaired".into());
    }
    Ok(page)
}

/// The scanned file and page of a finding in a page format, or why it is left (`partial`: the
/// reason for a partial last page, which such formats never write).
pub(crate) fn file_and_unit<'r>(
    report: &'r Report,
    finding: &Finding,
    partial: &str,
) -> Result<(&'r ScannedFile, u64), String> {
    let file = report
        .scanned_file(finding)
        .ok_or("the file was not scanned as a whole; not repaired")?;
    if finding.kind == FindingKind::PartialPage {
        return Err(partial.into());
    }
    let unit = finding
        .unit
        .ok_or("no page to act on; restore the file from a backup")?;
    Ok((file, unit))
}

/// The checkpoint and end LSNs of a data directory's redo log, read through `storage`.
fn read_redo<S: Storage>(storage: &S, dir: &Path) -> Result<RedoBounds, String> {
    let path = dir.join("ib_logfile0");
    let file = storage
        .open_read(&path)
        .map_err(|e| format!("{} cannot be opened ({e})", path.display()))?;
    let len = file
        .len()
        .map_err(|e| format!("{} cannot be read ({e})", path.display()))?;
    redo::read_bounds(&StorageSource { file: &file, len })
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The low 32 bits of the LSN in an InnoDB page's trailer, where its format keeps one.
fn innodb_trailer_lsn(page: &[u8], fmt: &SpaceFormat) -> Option<u32> {
    let n = page.len();
    // Compressed pages keep no LSN at the end (full_crc32 flags bits 5-7: page_compressed).
    let compressed =
        fmt.zip || fmt.page_compression || (fmt.full_crc32 && (fmt.flags >> 5) & 7 != 0);
    if compressed || n < 8 {
        return None;
    }
    let off = if fmt.full_crc32 { n - 8 } else { n - 4 };
    page.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
}

/// Whether a trailer's low 32 LSN bits name a write newer than `slot_lsn`: the nearest LSN
/// with those low bits at or below `slot_lsn` + 2^32, taken in `slot_lsn`'s 4 GiB epoch.
/// Ambiguous cases count as newer: they can only make a repair more careful.
fn trailer_is_newer(trailer: u32, slot_lsn: u64) -> bool {
    let candidate = (slot_lsn & !0xffff_ffff) | u64::from(trailer);
    candidate > slot_lsn
}

/// Page 0's LSN when page 0 verifies, else `None`.
fn page0_lsn<S: Storage>(storage: &S, path: &Path, params: &SpaceParams) -> Option<u64> {
    if params.first_page != 0 {
        return None;
    }
    let head = read_head(storage, path, params.format.physical_size).ok()?;
    match innodb::judge_page(&head, &params.format, params.space_id, 0) {
        InnodbVerdict::Ok { lsn, .. } => Some(lsn),
        _ => None,
    }
}

/// How many scanned tablespace files of data directory `dir` claim each space id.
fn space_claims<S: Storage>(
    storage: &S,
    report: &Report,
    dir: Option<&Path>,
    known: &[PathBuf],
) -> HashMap<u32, usize> {
    let mut claims = HashMap::new();
    for f in report.files.iter().filter(|f| {
        f.format == InnodbFormat::NAME && innodb::owning_data_dir(&f.path, known).as_deref() == dir
    }) {
        let name = f.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if innodb::is_system_name(name) && name != "ibdata1" {
            continue; // continues ibdata1's space 0
        }
        if let Ok(p) = innodb_params(storage, &f.path) {
            *claims.entry(p.space_id).or_insert(0) += 1;
        }
    }
    claims
}

/// A tablespace file's parameters, as the scan decides them: `ibdataN` (N > 1) continues
/// `ibdata1`, whose header gives the format, its pages numbered after those of the files
/// before it.
fn innodb_params<S: Storage>(storage: &S, path: &Path) -> Result<SpaceParams, String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let index = name
        .strip_prefix("ibdata")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|_| innodb::is_system_name(name));
    let Some(index) = index.filter(|&i| i > 1) else {
        let head = read_head(storage, path, 4 * 65536).map_err(|e| e.to_string())?;
        return innodb::space_params(&head).map_err(|e| e.to_string());
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let head = read_head(storage, &dir.join("ibdata1"), 4 * 65536)
        .map_err(|e| format!("ibdata1, which says how to read {name}, cannot be read: {e}"))?;
    let first = innodb::space_params(&head).map_err(|e| format!("ibdata1: {e}"))?;
    let ps = first.format.physical_size as u64;
    let mut first_page = 0;
    for i in 1..index {
        let len = storage
            .open_read(&dir.join(format!("ibdata{i}")))
            .and_then(|f| f.len())
            .map_err(|e| format!("ibdata{i}, which comes before {name}, cannot be read: {e}"))?;
        first_page += len / ps;
    }
    Ok(SpaceParams {
        first_page,
        ..first
    })
}

/// Why the file is no longer the one the scan judged, if it is not: another file at its path,
/// or another length.
fn changed_since_scan<S: Storage>(storage: &S, file: &ScannedFile) -> Option<String> {
    let f = match storage.open_read(&file.path) {
        Ok(f) => f,
        Err(e) => return Some(format!("the file cannot be opened now ({e}); not repaired")),
    };
    if let Ok(Some(id)) = f.id() {
        if id != file.id {
            return Some("the file was replaced since the scan (another device or inode); not repaired; scan again".into());
        }
    }
    // A file with several hard links is also another store's file (a snapshot made with
    // `cp -al`, say): writing it through one name changes the other.
    if let Ok(Some(m)) = f.meta() {
        if m.nlink > 1 {
            return Some(format!(
                "the file has {} hard links, so it is also another path's file (a hard-linked snapshot?); repair never writes a shared inode: copy the file to break the link, then repair",
                m.nlink
            ));
        }
    }
    match f.len() {
        Ok(len) if len != file.len => Some(format!(
            "the file changed since the scan (it is {} now, {} then); not repaired; scan again",
            dbfsck_core::bytes(len),
            dbfsck_core::bytes(file.len)
        )),
        Ok(_) => None,
        Err(e) => Some(format!(
            "the file's length cannot be read ({e}); not repaired"
        )),
    }
}

/// The parameters of a native file, decided as the scan decides them (`native::identify`): its
/// header's, unless its pages by majority belong to another identity, or recovered from its
/// pages when the header is damaged.
pub(crate) fn file_params<S: Storage>(storage: &S, path: &Path) -> Result<FileParams, String> {
    let file = storage.open_read(path).map_err(|e| e.to_string())?;
    let len = file.len().map_err(|e| e.to_string())?;
    let source = StorageSource { file: &file, len };
    let mut head = vec![0u8; len.min(dbfsck_core::Probe::HEAD_LEN as u64) as usize];
    let n = file.read_full_at(&mut head, 0).map_err(|e| e.to_string())?;
    head.truncate(n);
    let id = identify(&source, &head).map_err(|e| e.to_string())?;
    match (id.params, id.header) {
        (Some(p), _) => Ok(p),
        (None, Err(e)) => Err(e.to_string()),
        (None, Ok(h)) => Ok(h),
    }
}

fn read_head<S: Storage>(storage: &S, path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    let f = storage.open_read(path)?;
    let len = f.len()?;
    let mut head = vec![0u8; len.min(max as u64) as usize];
    let n = f.read_full_at(&mut head, 0)?;
    head.truncate(n);
    Ok(head)
}
