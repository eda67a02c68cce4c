//! The `sqlite` format: an SQLite database read as SQLite reads it — its hot rollback journal
//! rolled back, its WAL's committed frames overlaid — judged page by page in parallel, then
//! walked from `sqlite_schema`'s roots (`docs/sqlite.md`).
//!
//! - [`page`]: the rules one page obeys alone (b-tree header, cells, freeblocks, pointer-map
//!   entries, cksumvfs trailers);
//! - [`wal`]: the `-wal` file's header, checksum chain, last commit and newest frame per page;
//! - [`journal`]: a hot `-journal`'s original pages and the size a rollback restores;
//! - [`walk`]: the whole-file rules (every page used once, overflow chains, the freelist,
//!   pointer maps, the schema) and each damaged page's owner.

pub(crate) mod journal;
pub(crate) mod page;
pub(crate) mod wal;
mod walk;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use page::{be16, be32, Edge, Geometry};

use crate::finding::{Finding, FindingKind};
use crate::format::{
    Chunk, Conclusion, FileSource, Format, Layout, OpenError, Opened, Probe, UnitCheck,
};

/// The 16 bytes every database file starts with.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The sibling of `db` named `db` + `suffix` (`-wal`, `-journal`, `-shm`), byte for byte.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The database a `-wal`, `-journal` or `-shm` file belongs to, when its name says so.
fn owner_db(path: &Path, suffix: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let b = path.as_os_str().as_bytes();
    let stem = b.strip_suffix(suffix.as_bytes())?;
    (!stem.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(stem)))
}

/// Whether the file at `p` starts with the database magic.
fn is_db_file(p: &Path) -> bool {
    let mut m = [0u8; 16];
    File::open(p).is_ok_and(|f| f.read_exact_at(&mut m, 0).is_ok() && &m == MAGIC)
}

/// Whether another process holds a POSIX lock that conflicts with a write lock on
/// `len` bytes from `start` of the file (SQLite's locks live at 2³⁰ in the database).
fn locked(f: &File, start: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock is plain data; all-zero is a valid value that is then filled in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // SAFETY: F_OFD_GETLK only reads and writes the flock struct we pass.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
}

/// Slot bits: what the per-page pass learnt of each page (8 bytes a page).
const CHECKED: u64 = 1 << 8;
const FAILED: u64 = 1 << 9;
const ZERO: u64 = 1 << 10;
const CKSUM_BAD: u64 = 1 << 11;
/// The page's header is unusable (`btreeInitPage()` fails): SQLite follows none of its pointers.
const HDR_BAD: u64 = 1 << 12;

/// Where the bytes SQLite reads for a page come from, when not from the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A committed WAL frame (1-based).
    Wal(u64),
    /// A hot journal's original image, at this offset of the journal.
    Journal(u64),
}

/// One database as this scan judges it.
struct Db {
    file: File,
    geo: Geometry,
    file_pages: u32,
    /// The logical page 1's first 100 bytes.
    header: [u8; 100],
    wal: Option<(PathBuf, File, Arc<wal::Wal>)>,
    journal: Option<(PathBuf, File, Arc<journal::Journal>)>,
    slots: Box<[AtomicU64]>,
    edges: Mutex<Vec<Edge>>,
    /// Database-file pages that fail while what SQLite reads for them comes from the WAL or
    /// the journal: (page, why, source).
    healed: Mutex<Vec<(u32, String, Source)>>,
    /// cksumvfs failures: (page, stored, computed).
    cksum_bad: Mutex<Vec<CksumBad>>,
}

/// A cksumvfs failure: (page, stored, computed).
type CksumBad = (u32, [u8; 8], [u8; 8]);

impl Db {
    fn source(&self, pgno: u32) -> Option<Source> {
        if let Some((_, _, w)) = &self.wal {
            if let Some(&f) = w.newest.get(&pgno) {
                return Some(Source::Wal(f));
            }
        }
        if let Some((_, _, j)) = &self.journal {
            if let Some(&off) = j.images.get(&pgno) {
                return Some(Source::Journal(off));
            }
        }
        None
    }

    fn read_source(&self, s: Source) -> std::io::Result<Vec<u8>> {
        let mut b = vec![0u8; self.geo.page_size as usize];
        match s {
            Source::Wal(f) => {
                if let Some((_, file, w)) = &self.wal {
                    file.read_exact_at(&mut b, w.image_offset(f))?;
                }
            }
            Source::Journal(off) => {
                if let Some((_, file, _)) = &self.journal {
                    file.read_exact_at(&mut b, off)?;
                }
            }
        }
        Ok(b)
    }

    /// The page as SQLite reads it (zeros past the end of the file).
    fn read_page(&self, pgno: u32) -> std::io::Result<Vec<u8>> {
        if let Some(s) = self.source(pgno) {
            return self.read_source(s);
        }
        let p = u64::from(self.geo.page_size);
        let mut b = vec![0u8; p as usize];
        let mut done = 0;
        while done < b.len() {
            let Some(rest) = b.get_mut(done..) else {
                break;
            };
            let n = self
                .file
                .read_at(rest, (u64::from(pgno) - 1) * p + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(b)
    }

    fn slot(&self, pgno: u32) -> u64 {
        self.slots
            .get(pgno as usize)
            .map_or(0, |s| s.load(Ordering::Relaxed))
    }

    /// Judges page `pgno` from its database-file bytes `file_page` (none past the file's end).
    fn check_page(&self, pgno: u32, file_page: Option<&[u8]>, edges: &mut Vec<Edge>) {
        let geo = &self.geo;
        let mut slot = CHECKED;
        let source = self.source(pgno);
        if let Some(fp) = file_page.filter(|_| geo.cksum && pgno != geo.lock_page()) {
            if let Some((stored, computed)) = page::cksumvfs(fp).filter(|(s, c)| s != c) {
                match source {
                    Some(s) => self.note_healed(pgno, "its cksumvfs checksum fails".into(), s),
                    None => {
                        slot |= CKSUM_BAD;
                        self.cksum_bad
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((pgno, stored, computed));
                    }
                }
            }
        }
        let owned;
        let img: &[u8] = match source {
            Some(s) => match self.read_source(s) {
                Ok(b) => {
                    owned = b;
                    // The file's own copy, stale or torn, is healed by the next checkpoint
                    // (or the rollback): worth a note when it is damaged.
                    if let Some(fp) = file_page {
                        if !crate::all_zero(fp) && pgno != geo.lock_page() && !geo.is_ptrmap(pgno) {
                            if let Err(f) = page::check_btree(fp, pgno, geo, &mut Vec::new()) {
                                if f.header
                                    && page::is_btree_type(
                                        fp.get(page::header_at(pgno)).copied().unwrap_or(0),
                                    )
                                {
                                    self.note_healed(pgno, f.detail(), s);
                                }
                            }
                        }
                    }
                    &owned
                }
                Err(_) => return,
            },
            None => match file_page {
                Some(fp) => fp,
                None => return,
            },
        };
        let ty = img.get(page::header_at(pgno)).copied().unwrap_or(0);
        slot |= u64::from(ty) | (u64::from(be32(img, 0)) << 32);
        if pgno == geo.lock_page() {
        } else if geo.is_ptrmap(pgno) {
            if page::check_ptrmap(img, pgno, geo).is_err() {
                slot |= FAILED;
            }
        } else if crate::all_zero(img) {
            slot |= ZERO | FAILED | HDR_BAD;
        } else if let Err(f) = page::check_btree(img, pgno, geo, edges) {
            slot |= FAILED | if f.header { HDR_BAD } else { 0 };
        }
        if let Some(s) = self.slots.get(pgno as usize) {
            s.store(slot, Ordering::Relaxed);
        }
    }

    fn note_healed(&self, pgno: u32, why: String, from: Source) {
        self.healed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((pgno, why, from));
    }
}

/// The per-page pass over a database file.
struct DbCheck {
    db: Arc<Db>,
    end: u64,
    /// `dbfsck inspect` asked for one page ([`UnitCheck::unit_range`] is asked only then): it
    /// is judged alone, its failure a finding at once (a scan reports after the walk).
    alone: std::sync::atomic::AtomicBool,
}

impl UnitCheck for DbCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.end,
            align: u64::from(self.db.geo.page_size),
        }
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let p = self.db.geo.page_size as usize;
        let mut edges = Vec::new();
        let mut n = 0;
        for (i, fp) in chunk.bytes.chunks_exact(p).enumerate() {
            let pgno = (chunk.offset / p as u64) as u32 + i as u32 + 1;
            self.db.check_page(pgno, Some(fp), &mut edges);
            if self.alone.load(Ordering::Relaxed) {
                out.extend(walk::alone(&self.db, pgno, fp));
            }
            n += 1;
        }
        if !edges.is_empty() {
            self.db
                .edges
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .append(&mut edges);
        }
        n
    }

    fn describe(&self, chunk: &Chunk<'_>) -> Vec<(String, String)> {
        walk::describe(&self.db, chunk)
    }

    /// Pages are numbered from 1, as SQLite and every finding's `unit` number them.
    fn unit_count(&self) -> Option<u64> {
        Some(self.end / u64::from(self.db.geo.page_size) + 1)
    }

    fn unit_range(&self, unit: u64) -> Option<std::ops::Range<u64>> {
        let p = u64::from(self.db.geo.page_size);
        self.alone.store(true, Ordering::Relaxed);
        Some(unit.checked_sub(1)?.checked_mul(p)?..unit.checked_mul(p)?)
    }
}

/// The `sqlite` format.
#[derive(Default)]
pub struct SqliteFormat {
    dbs: Mutex<HashMap<PathBuf, Arc<Db>>>,
    /// `-wal` and `-journal` files the scan opened itself (their findings are theirs).
    logs: Mutex<HashSet<PathBuf>>,
}

impl std::fmt::Debug for SqliteFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteFormat")
    }
}

/// A database whose header cannot be read: its findings, nothing more to check (one unit, the
/// header).
fn unreadable(findings: Vec<Finding>, notes: Vec<String>) -> Opened {
    Opened {
        findings,
        check: None,
        units: 1,
        recheck_after: None,
        notes,
    }
}

/// The page size and usable size the header of page 1 gives, or the finding that it cannot
/// be read as a database's header.
fn header_findings(h: &[u8], len: u64) -> Result<(u32, u32), Box<Finding>> {
    let raw = be16(h, 16);
    let page_size = if raw == 1 { 65536 } else { raw };
    let bad = |what: String| {
        Err(Box::new(
            Finding::new(FindingKind::BadHeader, 0, 100.min(len), what).unit(1),
        ))
    };
    if !page_size.is_power_of_two() || !(512..=65536).contains(&page_size) {
        return bad(format!("the header's page size ({raw:#06x} at offset 16) is not a power of two in 512..=65536: SQLite says \"file is not a database\""));
    }
    let reserved = u32::from(h.get(20).copied().unwrap_or(0));
    if page_size - reserved < 480 {
        return bad(format!("{reserved} reserved bytes leave fewer than 480 usable bytes of a {page_size}-byte page: SQLite says \"file is not a database\""));
    }
    if h.get(21..24) != Some(&[64, 32, 32]) {
        return bad("the header's payload fractions (offsets 21–23) are not 64, 32, 32: SQLite says \"file is not a database\"".into());
    }
    let read_version = h.get(19).copied().unwrap_or(0);
    if read_version > 2 {
        return bad(format!(
            "the header's read version is {read_version}: SQLite says \"file is not a database\""
        ));
    }
    Ok((page_size, page_size - reserved))
}

impl SqliteFormat {
    /// The format's name.
    pub const NAME: &'static str = "sqlite";

    fn open_db(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let len = source.len();
        let mut head = [0u8; 100];
        source.read_full_at(0, &mut head)?;
        let mut findings = Vec::new();
        let mut notes = Vec::new();
        let (page_size, _) = match header_findings(&head, len) {
            Ok(v) => v,
            Err(f) => return Ok(unreadable(vec![*f], notes)),
        };
        let file = File::open(path)?;
        let p = u64::from(page_size);
        let file_pages = (len / p).min(u64::from(u32::MAX - 1)) as u32;
        if !len.is_multiple_of(p) {
            findings.push(Finding::new(FindingKind::PartialPage, u64::from(file_pages) * p, len % p, format!("the file ends {} into page {}: not a whole number of {page_size}-byte pages (SQLite ignores the piece)", crate::bytes(len % p), file_pages + 1)).unit(u64::from(file_pages) + 1));
        }
        if locked(&file, page::PENDING_BYTE, 512) {
            notes.push("another process has the database open (it holds SQLite's locks): pages it is writing can look damaged; close it for a verdict that holds".into());
        }
        let lock_page = (page::PENDING_BYTE / p) as u32 + 1;
        // A hot journal is rolled back before anything is read (`hasHotJournal()`).
        let jpath = sibling(path, "-journal");
        let mut journal = None;
        if let Ok(jf) = File::open(&jpath) {
            let jsrc = FileRef(&jf);
            match journal::read(&jsrc, lock_page) {
                Ok(j) if j.rollback && len > 0 => {
                    if locked(&file, page::PENDING_BYTE + 1, 1) {
                        notes.push("a process holds the RESERVED lock: its journal is not hot but the transaction it is writing; the file is mid-transaction, so stop that process for a verdict".into());
                    } else if j.page_size != page_size {
                        notes.push(format!("the journal beside it was written with {}-byte pages, the database has {page_size}: SQLite will not roll it back", j.page_size));
                    } else {
                        notes.push(format!("a hot journal is beside it: SQLite rolls it back on the next open (restoring {} page(s), the database back to {} pages), so the file is judged as that rollback leaves it", j.images.len(), j.initial_pages));
                        journal = Some((jpath, jf, Arc::new(j)));
                    }
                }
                Ok(_) => {}
                Err(e) => notes.push(format!(
                    "the journal beside it could not be read ({e}): the file is judged without it"
                )),
            }
        }
        let wpath = sibling(path, "-wal");
        let mut wal_used = None;
        if let Ok(wf) = File::open(&wpath) {
            match wal::read(&FileRef(&wf)) {
                Ok(w) if len > 0 && w.page_size == page_size => {
                    wal_used = Some((wpath, wf, Arc::new(w)));
                }
                Ok(w) if w.page_size != 0 && len > 0 => notes.push(format!(
                    "its WAL has {}-byte pages, the database {page_size}: SQLite cannot use it",
                    w.page_size
                )),
                Ok(_) => {}
                Err(e) => notes.push(format!(
                    "its WAL could not be read ({e}): the file is judged without it"
                )),
            }
        }
        let mut db = Db {
            file,
            geo: Geometry {
                page_size,
                usable: 0,
                pages: 0,
                auto_vacuum: false,
                cksum: false,
            },
            file_pages,
            header: head,
            wal: wal_used,
            journal,
            slots: Box::new([]),
            edges: Mutex::new(Vec::new()),
            healed: Mutex::new(Vec::new()),
            cksum_bad: Mutex::new(Vec::new()),
        };
        // Page 1 as SQLite reads it decides the rest.
        let p1 = db.read_page(1)?;
        if db.source(1).is_some() {
            let (ps, _) = match header_findings(&p1, len) {
                Ok(v) => v,
                Err(f) => return Ok(unreadable(vec![*f], notes)),
            };
            if ps != page_size {
                findings.push(Finding::new(FindingKind::BadHeader, 0, 100, format!("page 1 as SQLite reads it (from the WAL or the journal) gives {ps}-byte pages, the file's own header {page_size}")).unit(1));
                return Ok(unreadable(findings, notes));
            }
            if let Some(h) = p1.get(..100) {
                db.header.copy_from_slice(h);
            }
        }
        let h = db.header;
        let usable = page_size - u32::from(h[20]);
        let header_pages = be32(&h, 28);
        let header_valid = header_pages != 0 && h[24..28] == h[92..96];
        let mut pages = if let Some((_, size)) = db.wal.as_ref().and_then(|w| w.2.commit) {
            size
        } else if let Some((_, _, j)) = &db.journal {
            j.initial_pages
        } else if header_valid {
            header_pages
        } else {
            file_pages
        };
        if pages == 0 && len > 0 {
            pages = file_pages;
        }
        // The pages that exist somewhere: in the file, as a WAL frame, as a journal image. A size
        // beyond them (a header, a commit frame or a journal claiming 2³² pages) is reported and
        // never allocated for: memory follows the data, not what a header says.
        let held = file_pages
            .max(
                db.wal
                    .as_ref()
                    .and_then(|w| w.2.newest.keys().max().copied())
                    .unwrap_or(0),
            )
            .max(
                db.journal
                    .as_ref()
                    .and_then(|j| j.2.images.keys().max().copied())
                    .unwrap_or(0),
            );
        if pages > held {
            let by = if db.wal.as_ref().is_some_and(|w| w.2.commit.is_some()) {
                "its WAL's last commit"
            } else if db.journal.is_some() {
                "its hot journal (the size a rollback restores)"
            } else {
                "its header"
            };
            let missing = u64::from(pages - held) * p;
            findings.push(Finding::new(FindingKind::Truncated, u64::from(held) * p, missing, format!("the database is {pages} pages by {by}, but the file and its logs hold {held}: {} are missing (SQLite: \"database disk image is malformed\")", crate::bytes(missing))).unit(u64::from(held) + 1));
            pages = held;
        }
        if pages < file_pages && db.journal.is_none() {
            notes.push(format!("the file holds {} page(s) past the database's {pages} (left by a checkpoint or a shrink not yet truncated): SQLite ignores them", file_pages - pages));
        }
        let cksum = h[20] == 8
            && db
                .file_page(1)
                .ok()
                .and_then(|b| page::cksumvfs(&b))
                .is_some_and(|(s, c)| s == c);
        if h[18] > 2 {
            notes.push(format!(
                "the header's write version is {}: SQLite opens the database read-only",
                h[18]
            ));
        }
        let encoding = be32(&h, 56);
        if !(1..=3).contains(&encoding) {
            findings.push(Finding::new(FindingKind::BadHeader, 56, 4, format!("the header's text encoding is {encoding}, none of 1 (UTF-8), 2 (UTF-16le), 3 (UTF-16be)")).unit(1));
        }
        let schema_format = be32(&h, 44);
        if schema_format > 4 {
            findings.push(Finding::new(FindingKind::BadHeader, 44, 4, format!("the header's schema format number is {schema_format}, above 4: SQLite says \"unsupported file format\"")).unit(1));
        }
        db.geo = Geometry {
            page_size,
            usable,
            pages,
            auto_vacuum: be32(&h, 52) != 0,
            cksum,
        };
        db.slots = (0..=pages).map(|_| AtomicU64::new(0)).collect();
        let end = u64::from(pages.min(file_pages)) * p;
        let db = Arc::new(db);
        self.dbs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf(), db.clone());
        Ok(Opened {
            findings,
            check: Some(Box::new(DbCheck {
                db,
                end,
                alone: Default::default(),
            })),
            units: 0,
            recheck_after: None,
            notes,
        })
    }

    fn open_log(
        &self,
        path: &Path,
        source: &dyn FileSource,
        head: &[u8],
    ) -> Result<Opened, OpenError> {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_path_buf());
        let is_wal = head.len() >= 4 && be32(head, 0) & !1 == wal::MAGIC_LE
            || (head.get(..8) != Some(&journal::MAGIC[..]) && owner_db(path, "-wal").is_some());
        if is_wal {
            let w = wal::read(source)?;
            let (findings, notes, units) = (w.findings.clone(), w.notes.clone(), w.valid);
            let check: Option<Box<dyn UnitCheck>> = (w.page_size > 0).then(|| {
                Box::new(wal::WalInspect {
                    wal: w,
                    len: source.len(),
                }) as Box<dyn UnitCheck>
            });
            return Ok(Opened {
                findings,
                check,
                units,
                recheck_after: None,
                notes,
            });
        }
        let (findings, notes, units) = {
            let lock_page = owner_db(path, "-journal")
                .and_then(|d| File::open(d).ok())
                .and_then(|f| {
                    let mut h = [0u8; 18];
                    f.read_exact_at(&mut h, 0).ok()?;
                    let raw = be16(&h, 16);
                    let ps = if raw == 1 { 65536 } else { raw };
                    (ps >= 512).then(|| (page::PENDING_BYTE / u64::from(ps)) as u32 + 1)
                })
                .unwrap_or(0);
            let j = journal::read(source, lock_page)?;
            let mut notes = j.notes;
            if j.rollback {
                notes.push(format!("a rollback journal with {} intact record(s): if it is hot (no process holds the database's RESERVED lock), SQLite rolls the database back to {} pages on the next open", j.records, j.initial_pages));
            }
            (j.findings, notes, j.records)
        };
        Ok(Opened {
            findings,
            check: None,
            units,
            recheck_after: None,
            notes,
        })
    }
}

impl Db {
    /// The database file's own bytes of page `pgno`.
    fn file_page(&self, pgno: u32) -> std::io::Result<Vec<u8>> {
        let mut b = vec![0u8; self.geo.page_size as usize];
        self.file.read_exact_at(
            &mut b,
            (u64::from(pgno) - 1) * u64::from(self.geo.page_size),
        )?;
        Ok(b)
    }
}

/// The rules a page of one database obeys alone: what a repair checks an image against before
/// it writes it, and the page against after (`docs/sqlite.md` §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRules {
    geo: Geometry,
}

impl PageRules {
    /// Bytes per page.
    pub fn page_size(&self) -> usize {
        self.geo.page_size as usize
    }

    /// Whether `page` passes, as page `pgno` (from 1), every rule a page can be judged by
    /// alone: its cksumvfs checksum when the database has them, and its b-tree or pointer-map
    /// rules. An overflow or freelist page has no rule of its own, so it verifies only by its
    /// cksumvfs checksum; an all-zero page and the lock-byte page never do.
    pub fn verifies(&self, pgno: u32, page: &[u8]) -> bool {
        let geo = &self.geo;
        if page.len() != self.page_size()
            || pgno == 0
            || pgno == geo.lock_page()
            || crate::all_zero(page)
        {
            return false;
        }
        if geo.cksum && page::cksumvfs(page).is_none_or(|(s, c)| s != c) {
            return false;
        }
        if geo.is_ptrmap(pgno) {
            return page::check_ptrmap(page, pgno, geo).is_ok();
        }
        let ty = page.get(page::header_at(pgno)).copied().unwrap_or(0);
        if page::is_btree_type(ty) {
            return page::check_btree(page, pgno, geo, &mut Vec::new()).is_ok();
        }
        geo.cksum
    }
}

/// The image SQLite reads for a page of a database in place of the file's own copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogImage {
    /// The `-wal` file.
    pub log: PathBuf,
    /// The committed frame (from 1): the newest of the page up to the WAL's last commit.
    pub frame: u64,
    /// Where the page's bytes start in the WAL.
    pub offset: u64,
}

/// A database as SQLite would read it at the moment it was opened: what a repair plans from.
pub struct DbView {
    db: Arc<Db>,
}

impl std::fmt::Debug for DbView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbView").field("geo", &self.db.geo).finish()
    }
}

impl DbView {
    /// Opens database `db` (its header, its WAL's committed frames, a hot journal); `None`
    /// when its header cannot be read as a database's.
    pub fn open(db: &Path) -> Result<Option<DbView>, OpenError> {
        let format = SqliteFormat::default();
        let file = File::open(db)?;
        format.open_db(db, &FileRef(&file))?;
        let dbs = format.dbs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(dbs.get(db).map(|d| DbView { db: d.clone() }))
    }

    /// The page rules of the database.
    pub fn rules(&self) -> PageRules {
        PageRules { geo: self.db.geo }
    }

    /// The committed WAL frame SQLite reads for page `pgno` (from 1), if any: the source a
    /// repair restores a `superseded_page` from. A hot journal's images are not offered
    /// (SQLite's own rollback restores them).
    pub fn wal_image(&self, pgno: u32) -> Option<LogImage> {
        let (Some(Source::Wal(frame)), Some((log, _, w))) = (self.db.source(pgno), &self.db.wal)
        else {
            return None;
        };
        Some(LogImage {
            log: log.clone(),
            frame,
            offset: w.image_offset(frame),
        })
    }
}

/// A [`FileSource`] over an open file.
struct FileRef<'a>(&'a File);

impl FileSource for FileRef<'_> {
    fn len(&self) -> u64 {
        self.0.metadata().map_or(0, |m| m.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

impl Format for SqliteFormat {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn description(&self) -> &'static str {
        "SQLite databases with their -wal and -journal: every page's b-tree rules in parallel, then page ownership, overflow chains, freelist and pointer maps walked from sqlite_schema; the WAL's checksum chain and the hot journal's records; cksumvfs checksums"
    }

    fn detect_file(&self, probe: &Probe<'_>) -> bool {
        let h = probe.head;
        if h.starts_with(MAGIC) || h.starts_with(&journal::MAGIC) {
            return true;
        }
        if h.len() >= 8 && be32(h, 0) & !1 == wal::MAGIC_LE && be32(h, 4) == wal::VERSION {
            return true;
        }
        // A zeroed journal or a torn WAL is known by its name beside its database.
        ["-wal", "-journal"]
            .iter()
            .any(|s| owner_db(probe.path, s).is_some_and(|d| is_db_file(&d)))
    }

    fn ignore_file(&self, path: &Path) -> Option<String> {
        owner_db(path, "-shm")
            .filter(|d| is_db_file(d))
            .map(|_| "SQLite's wal-index (-shm): transient shared memory that SQLite rebuilds from the WAL; never read".to_owned())
    }

    fn open(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let mut head = [0u8; 32];
        let n = source.read_full_at(0, &mut head)?;
        let head = head.get(..n).unwrap_or_default();
        if head.starts_with(MAGIC) {
            return self.open_db(path, source);
        }
        let log = head.starts_with(&journal::MAGIC)
            || (head.len() >= 4 && be32(head, 0) & !1 == wal::MAGIC_LE)
            || owner_db(path, "-wal").is_some()
            || owner_db(path, "-journal").is_some();
        if log {
            return self.open_log(path, source, head);
        }
        Err(OpenError::NotThisFormat {
            format: "sqlite",
            reason: "no SQLite database, WAL or journal header".into(),
        })
    }

    fn conclude(&self, complete: bool) -> Conclusion {
        let dbs = std::mem::take(&mut *self.dbs.lock().unwrap_or_else(|e| e.into_inner()));
        let logs = std::mem::take(&mut *self.logs.lock().unwrap_or_else(|e| e.into_inner()));
        let mut all: Vec<(PathBuf, Arc<Db>)> = dbs.into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut c = Conclusion::default();
        for (path, db) in all {
            let r = walk::conclude(&db, complete);
            c.findings.extend(r.findings.into_iter().map(|mut f| {
                f.file.get_or_insert_with(|| path.clone());
                f
            }));
            c.warnings
                .extend(r.warnings.into_iter().map(|w| (path.clone(), w)));
            c.units += r.units;
            // A WAL or journal the scan did not reach itself (the database named alone):
            // what it says is still part of the verdict.
            if let Some((wp, _, w)) = &db.wal {
                if !logs.contains(wp) {
                    c.findings.extend(w.findings.iter().cloned().map(|mut f| {
                        f.file = Some(wp.clone());
                        f
                    }));
                }
            }
            if let Some((jp, _, j)) = &db.journal {
                if !logs.contains(jp) {
                    c.findings.extend(j.findings.iter().cloned().map(|mut f| {
                        f.file = Some(jp.clone());
                        f
                    }));
                }
            }
        }
        c
    }
}
