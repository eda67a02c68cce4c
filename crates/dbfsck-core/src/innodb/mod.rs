//! InnoDB (MariaDB, MySQL, Percona) data directories and tablespaces: every page of the system
//! tablespace (`ibdata*`), undo tablespaces and `.ibd` files judged the way the server judges it
//! on read (`docs/innodb.md`): the checksum scheme from each tablespace's own flags
//! (full_crc32 incl. page_compressed, crc32, legacy innodb, none, ROW_FORMAT=COMPRESSED), the
//! LSN trailer, and the page number and space id in the header. Doublewrite slots are verified
//! against their target tablespace's format instead of being flagged, and are what
//! `dbfsck-repair` rebuilds torn pages from.
//!
//! Where `innochecksum` disagrees with the server, the server wins: pages with legacy or no
//! checksums are valid (the server reads them), and populated doublewrite slots are not damage.

mod checksum;
mod compress;
pub mod doublewrite;
mod page;
pub(crate) mod path;
pub mod redo;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use checksum::{
    adler32, fold, full_crc32, legacy_new, legacy_old, page_crc32, zip_adler32, zip_crc32,
    NO_CHECKSUM_MAGIC,
};
pub use doublewrite::{Doublewrite, Slot};
pub use page::{
    fil, judge_page, page_type_name, stamp_page, FlagsError, PageFailure, PageVerdict, SpaceFormat,
};
pub use path::{data_dir_of, decode_name, is_data_dir, is_system_name, is_undo_name, TableName};

use crate::finding::{Finding, FindingKind};
use crate::format::{
    Chunk, DirListing, FileSource, Format, Layout, OpenError, Opened, Probe, UnitCheck,
};
use page::{be16, be32, be64};

/// How long to wait before re-reading a failing page while the server runs.
const RECHECK_PAUSE: Duration = Duration::from_millis(100);

/// What a tablespace file is: its space id and format, and where its pages start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceParams {
    /// The space id (FIL_PAGE_SPACE_ID of every page).
    pub space_id: u32,
    /// The page layout and checksum scheme.
    pub format: SpaceFormat,
    /// The page number of the file's first page (non-zero for `ibdata2`…).
    pub first_page: u64,
}

/// Why a tablespace's parameters cannot be known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpaceError {
    /// The file is shorter than one page.
    #[error("the file is {} long, shorter than any InnoDB page", crate::bytes(*.0))]
    TooShort(u64),
    /// Page 0 is all zero and no other page verifies under any format.
    #[error("page 0 is all zero and no page verifies under any InnoDB format")]
    NeverWritten,
    /// Page 0 fails and no other page verifies under any format.
    #[error(
        "page 0 (the tablespace header) fails ({0}) and no page verifies under any InnoDB format"
    )]
    Unrecognised(String),
}

/// Formats tried, in order, when page 0 cannot be trusted: full_crc32 then the old format,
/// 16 KiB first (the default), then the other page sizes, then ROW_FORMAT=COMPRESSED with
/// 8, 4, 2 and 1 KiB physical pages (16 KiB logical), then full_crc32 16 KiB page_compressed
/// with zlib, LZ4, LZMA, bzip2 and Snappy (whose pages are judged after decompression).
const PROBE_FLAGS: [u32; 19] = [
    0x15, 0x00, 0x13, 0x14, 0x16, 0x17, 0xC0, 0x100, 0x180, 0x1C0, 0x29, 0x27, 0x25, 0x23, 0x35,
    0x55, 0x95, 0xB5, 0xD5,
];

/// The space id and format of a tablespace from its first bytes (page 0, and pages 1-3 when
/// page 0 is damaged): page 0's flags when page 0 verifies under them, else the first format
/// under which one of the next pages verifies as itself. `head` holds at least page 0.
pub fn space_params(head: &[u8]) -> Result<SpaceParams, SpaceError> {
    let space_id = be32(head, fil::SPACE_ID);
    let own = SpaceFormat::from_flags(be32(head, fil::FSP_SPACE_FLAGS));
    let page0_fail = match own {
        Ok(fmt) => match head.get(..fmt.physical_size) {
            Some(p0) => match judge_page(p0, &fmt, space_id, 0) {
                PageVerdict::Ok { .. } => {
                    return Ok(SpaceParams {
                        space_id,
                        format: fmt,
                        first_page: 0,
                    })
                }
                PageVerdict::Zero => None,
                PageVerdict::Bad(f) => Some(f.detail),
                PageVerdict::Unchecked(why) => Some(why),
            },
            None => Some("it is cut short".into()),
        },
        Err(e) => Some(e.to_string()),
    };
    for flags in PROBE_FLAGS {
        let Ok(fmt) = SpaceFormat::from_flags(flags) else {
            continue;
        };
        for page_no in 1..4u64 {
            let start = page_no as usize * fmt.physical_size;
            let Some(p) = head.get(start..start + fmt.physical_size) else {
                break;
            };
            let Some(claimed) = page::claimed_space_id(p, &fmt) else {
                continue;
            };
            if let PageVerdict::Ok { .. } = judge_page(p, &fmt, claimed, page_no) {
                return Ok(SpaceParams {
                    space_id: claimed,
                    format: fmt,
                    first_page: 0,
                });
            }
        }
    }
    if head.len() < 4096 {
        return Err(SpaceError::TooShort(head.len() as u64));
    }
    Err(match page0_fail {
        None => SpaceError::NeverWritten,
        Some(why) => SpaceError::Unrecognised(why),
    })
}

/// When page 0 and the pages in the head do not say what a tablespace is, the rest of the file
/// is searched, chunk by chunk, for the first page that verifies as itself under one of the
/// probed formats (a header lost with the pages after it, say the first 64 KiB zeroed). A
/// full_crc32 page_compressed page names its space id only once decompressed. `None` when no
/// page verifies.
fn probe_further(source: &dyn FileSource, from: u64) -> Option<SpaceParams> {
    const CHUNK: usize = 1 << 20; // a multiple of every page size
    let len = source.len();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = from - from % CHUNK as u64;
    while offset < len {
        let n = source.read_full_at(offset, &mut buf).ok()?;
        let chunk = buf.get(..n)?;
        for flags in PROBE_FLAGS {
            let Ok(fmt) = SpaceFormat::from_flags(flags) else {
                continue;
            };
            for (i, p) in chunk.chunks_exact(fmt.physical_size).enumerate() {
                let page_no = (offset / fmt.physical_size as u64) + i as u64;
                if page_no == 0 || p.iter().all(|&b| b == 0) {
                    continue;
                }
                let Some(claimed) = page::claimed_space_id(p, &fmt) else {
                    continue;
                };
                if matches!(
                    judge_page(p, &fmt, claimed, page_no),
                    PageVerdict::Ok { .. }
                ) {
                    return Some(SpaceParams {
                        space_id: claimed,
                        format: fmt,
                        first_page: 0,
                    });
                }
            }
        }
        if n < CHUNK {
            break;
        }
        offset += CHUNK as u64;
    }
    None
}

/// The InnoDB format, for `--format innodb` and detection of data directories.
#[derive(Debug, Default)]
pub struct InnodbFormat {
    /// What each data directory met says about its tablespaces, read once.
    datadirs: Mutex<HashMap<PathBuf, Arc<DataDir>>>,
    /// Tablespaces outside their data directory (`DATA DIRECTORY`, through a `.isl`), as
    /// listed: the data directory each belongs to.
    external: Mutex<HashMap<PathBuf, PathBuf>>,
}

/// What one data directory says about its tablespaces.
#[derive(Debug, Default)]
struct DataDir {
    /// Space id → format, from page 0 of every tablespace file (for doublewrite slots).
    spaces: HashMap<u32, SpaceFormat>,
    /// The system tablespace's files in order, with the page number each starts at.
    system: Vec<(PathBuf, u64)>,
    /// Whether the server holds its lock on `ibdata1`.
    live: bool,
    /// Space ids claimed by more than one tablespace file, with the files.
    shared_ids: Vec<(u32, Vec<PathBuf>)>,
}

impl InnodbFormat {
    /// The format's name.
    pub const NAME: &'static str = "innodb";

    fn datadir(&self, dir: &Path) -> Arc<DataDir> {
        let mut map = self.datadirs.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(dir.to_path_buf())
            .or_insert_with(|| Arc::new(DataDir::read(dir)))
            .clone()
    }
}

impl DataDir {
    fn read(dir: &Path) -> DataDir {
        let mut d = DataDir {
            live: path::locked_by_another_process(&dir.join("ibdata1")),
            ..DataDir::default()
        };
        let listing = list(dir);
        let mut system_next = 0u64;
        let mut system_fmt = None;
        let mut systems: Vec<&PathBuf> = listing
            .files
            .iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_system_name)
            })
            .collect();
        systems.sort_by_key(|p| path::system_index(p));
        for p in systems {
            let len = fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            if system_fmt.is_none() {
                // The system tablespace's format decides how its files are cut: verified.
                if let Some(params) = read_prefix(p, 4 * 65536).and_then(|h| space_params(&h).ok())
                {
                    system_fmt = Some(params.format);
                    d.spaces.insert(0, params.format);
                }
            }
            d.system.push((p.clone(), system_next));
            let ps = system_fmt.map_or(16384, |f| f.physical_size) as u64;
            system_next += len / ps;
        }
        let mut claims: HashMap<u32, Vec<PathBuf>> = HashMap::new();
        for p in &listing.files {
            let is_system = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_system_name);
            if is_system {
                continue;
            }
            // Only the header fields, unverified: they only tell how to verify doublewrite
            // slots (a wrong format fails a slot, which is a warning); one small read per table
            // keeps the walk cheap in a data directory of many thousands of tables.
            let Some(h) = read_prefix(p, fil::FSP_SPACE_FLAGS as u64 + 4) else {
                continue;
            };
            let id = be32(&h, fil::SPACE_ID);
            if let Ok(format) = SpaceFormat::from_flags(be32(&h, fil::FSP_SPACE_FLAGS)) {
                d.spaces.insert(id, format);
            }
            // An all-zero header (a table not written yet) claims nothing.
            if h.iter().any(|&b| b != 0) {
                claims.entry(id).or_default().push(p.clone());
            }
        }
        d.shared_ids = claims.into_iter().filter(|(_, v)| v.len() > 1).collect();
        d.shared_ids.sort();
        d
    }
}

/// Up to `len` first bytes of a file.
fn read_prefix(p: &Path, len: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    fs::File::open(p)
        .ok()?
        .take(len)
        .read_to_end(&mut head)
        .ok()?;
    Some(head)
}

/// Lists a data directory: the tablespaces to scan, and what is skipped.
fn list(dir: &Path) -> DirListing {
    let mut listing = DirListing::default();
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => {
            listing.errors.push((
                dir.to_path_buf(),
                format!("could not list the directory: {e}"),
            ));
            return listing;
        }
    };
    let mut other = 0usize;
    for (name, path, ty) in entries {
        if ty.is_dir() {
            if crate::engine::is_dbfsck_dir(&path) {
                listing
                    .skipped
                    .push((path, crate::engine::DBFSCK_DIR_REASON.into()));
            } else if name.starts_with('#') {
                listing.skipped.push((
                    path,
                    "the server's own folder (redo log or temporary tablespaces): no tablespace to keep".into(),
                ));
            } else {
                list_database(&path, &mut listing);
            }
        } else if !ty.is_file() {
            if !ty.is_symlink() || !name.ends_with(".ibd") {
                other += 1;
                continue;
            }
            listing
                .skipped
                .push((path, "symbolic link, not followed".into()));
        } else if is_system_name(&name) || is_undo_name(&name) || name.ends_with(".ibd") {
            listing.files.push(path);
        } else if name == "ibtmp1" {
            listing.skipped.push((
                path,
                "the temporary tablespace: recreated at every start, nothing in it to keep".into(),
            ));
        } else if name.starts_with("ib_logfile") {
            listing.skipped.push((
                path,
                "the redo log: not a page file, not checked by this version".into(),
            ));
        } else {
            other += 1;
        }
    }
    skip_others(&mut listing, dir, other, "logs, Aria control files…");
    listing
}

/// One skipped entry for the files of `dir` that are not tablespaces, rather than one each.
fn skip_others(listing: &mut DirListing, dir: &Path, count: usize, examples: &str) {
    if count > 0 {
        listing.skipped.push((
            dir.to_path_buf(),
            format!("{count} file(s) here are not InnoDB tablespaces ({examples}): not checked"),
        ));
    }
}

fn list_database(dir: &Path, listing: &mut DirListing) {
    let entries = match sorted_entries(dir) {
        Ok(e) => e,
        Err(e) => {
            listing.errors.push((
                dir.to_path_buf(),
                format!("could not list the directory: {e}"),
            ));
            return;
        }
    };
    let mut other = 0usize;
    for (name, path, ty) in entries {
        if ty.is_file() && name.ends_with(".ibd") {
            listing.files.push(path);
        } else if ty.is_file() && name.ends_with(".isl") {
            // A table created with DATA DIRECTORY: the .isl file names its .ibd elsewhere.
            match isl_target(&path, dir) {
                Ok(target) => listing.files.push(target),
                Err(why) => listing.errors.push((path, why)),
            }
        } else if ty.is_dir() {
            listing.skipped.push((
                path,
                "a folder inside a database folder: not scanned".into(),
            ));
        } else {
            other += 1;
        }
    }
    skip_others(listing, dir, other, ".frm, Aria, MyISAM, CSV…");
}

/// The tablespace a `.isl` link file names: its path, read as the server reads it (a relative
/// path is relative to the data directory, the server's working directory), checked to be what
/// such a link may name — a regular file called `<table>.ibd` whose first pages are an InnoDB
/// tablespace. Anything else (a link pointing at `/etc/passwd`, say) is an error, never scanned.
fn isl_target(isl: &Path, db_dir: &Path) -> Result<PathBuf, String> {
    let text = fs::read(isl).map_err(|e| format!("could not read the link file: {e}"))?;
    let text = text
        .strip_suffix(b"\0")
        .unwrap_or(&text)
        .trim_ascii_end()
        .to_vec();
    use std::os::unix::ffi::OsStrExt;
    let named = Path::new(std::ffi::OsStr::from_bytes(&text));
    let datadir = db_dir.parent().unwrap_or(db_dir);
    let target = datadir.join(named);
    let table = isl.file_stem().unwrap_or_default();
    let mut want = table.to_os_string();
    want.push(".ibd");
    if target.file_name() != Some(want.as_os_str()) {
        return Err(format!(
            "names {} as its table's data file; a link file names <table>.ibd ({}), so it is not followed",
            target.display(),
            want.to_string_lossy()
        ));
    }
    if !fs::symlink_metadata(&target).is_ok_and(|m| m.is_file()) {
        return Err(format!(
            "names {} as its table's data file, which is not a regular file",
            target.display()
        ));
    }
    let mut head = vec![0u8; 4 * 65536];
    let n = fs::File::open(&target)
        .and_then(|f| {
            use std::os::unix::fs::FileExt;
            let mut done = 0;
            while done < head.len() {
                match f.read_at(head.get_mut(done..).unwrap_or_default(), done as u64)? {
                    0 => break,
                    k => done += k,
                }
            }
            Ok(done)
        })
        .map_err(|e| format!("could not read {}: {e}", target.display()))?;
    head.truncate(n);
    match space_params(&head) {
        // A table the server has just created has no page written yet (a note when scanned).
        Ok(_) | Err(SpaceError::NeverWritten) => {}
        Err(e) => {
            return Err(format!(
                "names {}, which is not an InnoDB tablespace ({e}); not scanned",
                target.display()
            ))
        }
    }
    Ok(target)
}

type Entry = (String, PathBuf, fs::FileType);

/// The data directory a tablespace file belongs to: [`data_dir_of`], or — for a table created
/// with `DATA DIRECTORY` (its file at `DIR/<db>/<table>.ibd`) — the data directory among
/// `known` whose `<db>/<table>.isl` names this very file. Its rules (live server, doublewrite
/// slots, the lock on `ibdata1`) are that data directory's.
pub fn owning_data_dir(file: &Path, known: &[PathBuf]) -> Option<PathBuf> {
    if let Some(d) = data_dir_of(file) {
        return Some(d);
    }
    let table = file.file_stem()?.to_str()?;
    let db = file.parent()?.file_name()?;
    let real = fs::canonicalize(file).ok()?;
    known
        .iter()
        .find(|d| {
            let isl = d.join(db).join(format!("{table}.isl"));
            isl_target(&isl, &d.join(db))
                .ok()
                .and_then(|t| fs::canonicalize(t).ok())
                .is_some_and(|t| t == real)
        })
        .cloned()
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            e.path(),
            e.file_type()?,
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Format for InnodbFormat {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn description(&self) -> &'static str {
        "InnoDB (MariaDB, MySQL, Percona): every page of ibdata*, undo tablespaces and .ibd files \
         with the checksum the tablespace's flags select (full_crc32, crc32, innodb, none, \
         ROW_FORMAT=COMPRESSED), LSN trailer, page number and space id; doublewrite slots \
         verified against their target tablespace"
    }

    fn detect_file(&self, probe: &Probe<'_>) -> bool {
        let name = probe
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".ibd") || is_system_name(name) || is_undo_name(name) {
            return true;
        }
        // A tablespace under another name: page 0 is a valid FSP_HDR page.
        be16(probe.head, fil::TYPE) == 8
            && be32(probe.head, fil::PAGE_NO) == 0
            && space_params(probe.head).is_ok_and(|p| {
                probe.head.get(..p.format.physical_size).is_some_and(|p0| {
                    matches!(
                        judge_page(p0, &p.format, p.space_id, 0),
                        PageVerdict::Ok { .. }
                    )
                })
            })
    }

    fn detect_dir(&self, dir: &Path) -> bool {
        is_data_dir(dir)
    }

    fn list_dir(&self, dir: &Path) -> Option<DirListing> {
        let mut listing = list(dir);
        {
            let real_dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            let mut external = self.external.lock().unwrap_or_else(|e| e.into_inner());
            for f in &listing.files {
                let inside = fs::canonicalize(f).is_ok_and(|r| r.starts_with(&real_dir));
                if !inside {
                    external.insert(f.clone(), dir.to_path_buf());
                    listing.warnings.push((
                        f.clone(),
                        format!(
                            "a table created with DATA DIRECTORY: its .isl in {} names this file, outside the data directory; it is checked as that directory's table, but a copy of the directory (a backup) does not hold its data, and a repair writes it only when it lies inside the scanned paths",
                            dir.display()
                        ),
                    ));
                }
            }
        }
        let d = self.datadir(dir);
        listing.live = d.live;
        if d.live {
            listing.warnings.push((
                dir.join("ibdata1"),
                "the server is running (it holds its lock on ibdata1): pages being written can \
                 look torn, so each failing page is re-read once after a short pause before it \
                 is reported; stop the server before a repair"
                    .into(),
            ));
        }
        for (id, files) in &d.shared_ids {
            let names: Vec<String> = files
                .iter()
                .map(|f| f.strip_prefix(dir).unwrap_or(f).display().to_string())
                .collect();
            listing.warnings.push((
                dir.to_path_buf(),
                format!(
                    "space id {id} is claimed by {}: the server opens only one file per space id (a copy left for an import?), and a repair restores no page of them from the doublewrite buffer",
                    names.join(" and ")
                ),
            ));
        }
        listing.files.sort();
        Some(listing)
    }

    fn open(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let external = self
            .external
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned();
        let dir = data_dir_of(path).or(external);
        let datadir = dir.as_ref().map(|d| self.datadir(d));
        let live = datadir.as_ref().is_some_and(|d| d.live);
        let len = source.len();
        let mut head_buf = Vec::new();
        let head = if source.cached_head().len() as u64 >= len.min(4 * 16384) {
            source.cached_head()
        } else {
            head_buf.resize(len.min(Probe::HEAD_LEN as u64) as usize, 0);
            let n = source.read_full_at(0, &mut head_buf)?;
            head_buf.truncate(n);
            &head_buf
        };
        let system_index = is_system_name(&name).then(|| path::system_index(path));
        let params = match system_index {
            Some(i) if i > 1 => {
                // ibdata2…: no header of its own; the format and first page come from ibdata1.
                let d = datadir.as_ref();
                let first =
                    d.and_then(|d| d.system.iter().find(|(p, _)| p == path).map(|(_, f)| *f));
                match (d.and_then(|d| d.spaces.get(&0).copied()), first) {
                    (Some(format), Some(first_page)) => SpaceParams { space_id: 0, format, first_page },
                    _ => {
                        return Err(OpenError::NotThisFormat {
                            format: Self::NAME,
                            reason: "a continuation of the system tablespace: scan its data directory, whose ibdata1 says how to read it".into(),
                        })
                    }
                }
            }
            _ => match space_params(head).or_else(|e| match e {
                SpaceError::NeverWritten | SpaceError::Unrecognised(_)
                    if len > head.len() as u64 =>
                {
                    probe_further(source, head.len() as u64).ok_or(e)
                }
                e => Err(e),
            }) {
                Ok(p) => p,
                Err(SpaceError::NeverWritten) if live => {
                    // A table just created: its pages are still only in the buffer pool.
                    return Ok(Opened::note(
                        "page 0 is all zero and no page verifies: the running server \
                                     has not written this tablespace yet; not checked"
                            .into(),
                    ));
                }
                Err(SpaceError::TooShort(n)) if live => {
                    // A table being created: the server makes the file empty, then extends it
                    // to its first pages (CREATE TABLE, ALTER TABLE's copy, TRUNCATE).
                    return Ok(Opened::note(format!(
                        "the file is {} long, shorter than one page, while the server runs: \
                             it is being created (a new file is extended to its first pages \
                             after it is made); not checked",
                        crate::bytes(n)
                    )));
                }
                Err(e) => {
                    let kind = match e {
                        SpaceError::NeverWritten => FindingKind::ZeroedPage,
                        SpaceError::TooShort(_) => FindingKind::Truncated,
                        _ => FindingKind::BadHeader,
                    };
                    let length = len.min(16384);
                    return Ok(Opened {
                        findings: vec![Finding::new(
                            kind,
                            0,
                            length,
                            format!("{e}: nothing in the file can be checked"),
                        )
                        .unit(0)
                        .owner(path::owner(path, None, 0, None))],
                        check: None,
                        units: 0,
                        recheck_after: None,
                        notes: Vec::new(),
                    });
                }
            },
        };
        let ps = params.format.physical_size as u64;
        let whole = len / ps;
        let rest = len % ps;
        let mut findings = Vec::new();
        if rest != 0 {
            findings.push(
                Finding::new(
                    FindingKind::PartialPage,
                    whole * ps,
                    rest,
                    format!(
                        "the file ends {} into page {whole}; InnoDB reads whole {ps}-byte pages",
                        crate::bytes(rest)
                    ),
                )
                .unit(whole)
                .owner(path::owner(
                    path,
                    Some(params.space_id),
                    params.first_page + whole,
                    None,
                )),
            );
        }
        let mut notes = Vec::new();
        // Page 0 all zero in a tablespace whose other pages verify: the header was lost, unless
        // the server has not written it yet (an all-zero page elsewhere is one never written).
        if system_index.is_none_or(|i| i == 1)
            && head
                .get(..ps as usize)
                .is_some_and(|p0| p0.len() as u64 == ps && p0.iter().all(|&b| b == 0))
        {
            let zeroed = |kind, detail: String| {
                Finding::new(kind, 0, ps, detail).unit(0).owner(path::owner(
                    path,
                    Some(params.space_id),
                    0,
                    Some(0),
                ))
            };
            match zero_header(source, &params, dir.as_deref()) {
                ZeroHeader::WrittenSince => {}
                ZeroHeader::Unproven(why) if live => {
                    findings.push(zeroed(FindingKind::ChangedDuringScan, format!(
                        "page 0 (the tablespace header) is all zero while other pages verify, and the running server may not have written it yet: {why}; scan again after the server's next checkpoint, and if page 0 is still zero then, it was lost"
                    )));
                }
                ZeroHeader::Unproven(why) => {
                    findings.push(zeroed(FindingKind::ZeroedPage, format!(
                        "page 0 (the tablespace header) is all zero, but other pages of the tablespace verify: the header was lost, unless crash recovery rebuilds it from the redo log ({why})"
                    )));
                }
                ZeroHeader::Lost(why) => {
                    findings.push(zeroed(FindingKind::ZeroedPage, format!(
                        "page 0 (the tablespace header) is all zero, but other pages of the tablespace verify: the header was lost{why}"
                    )));
                }
            }
        }
        let mut units = 0;
        let mut dblwr = None;
        if system_index == Some(1) {
            match doublewrite::read_slots(source, params.format.physical_size) {
                Ok(Some((dw, slots))) => {
                    units = dw.slots().filter(|&p| p < whole).count() as u64;
                    dblwr = Some(dw);
                    let spaces = datadir.as_ref().map(|d| &d.spaces);
                    notes.extend(check_slots(source, &slots, spaces, &params));
                }
                Ok(None) => {}
                Err(e) => notes.push(format!("the doublewrite buffer could not be read: {e}")),
            }
        }
        let check = InnodbCheck {
            params,
            end: whole * ps,
            path: path.to_path_buf(),
            dblwr,
            unchecked: Mutex::new((0, None)),
        };
        Ok(Opened {
            findings,
            check: Some(Box::new(check)),
            units,
            recheck_after: live.then_some(RECHECK_PAUSE),
            notes,
        })
    }
}

/// What an all-zero page 0 of a tablespace whose other pages verify means.
enum ZeroHeader {
    /// Read again, page 0 is no longer all zero: the server wrote it since (the page checks
    /// judge it as they read it).
    WrittenSince,
    /// Page 0 was written before the redo log's checkpoint and is gone (with why, as a clause
    /// after "the header was lost", or empty when the log could not tell).
    Lost(String),
    /// Nothing proves page 0 was ever written: the tablespace may have been created after the
    /// checkpoint, its header still in the server's memory and in its redo log (why, as a
    /// clause).
    Unproven(String),
}

/// Judges an all-zero page 0 (`docs/innodb.md` §4). A checkpoint is written only once every
/// page modified before it is in its file, and page 0 is modified when the tablespace is
/// created, before any other page. So the checkpoint is read first and page 0 again after it:
/// if a page that verifies was written at or before that checkpoint, page 0 had been written
/// and is lost; if every page is newer, the tablespace may have been created after it
/// (MariaDB 10.6+ writes page 0 through the buffer pool, not at creation).
fn zero_header(source: &dyn FileSource, params: &SpaceParams, dir: Option<&Path>) -> ZeroHeader {
    let log = dir.map(|d| d.join("ib_logfile0"));
    let checkpoint = log
        .as_deref()
        .and_then(|p| read_prefix(p, redo::START_OFFSET))
        .map(|b| redo::read_checkpoint(&crate::format::BytesSource(&b)));
    let ps = params.format.physical_size;
    let mut p0 = vec![0u8; ps];
    let mut n = 0;
    while let Some(rest) = p0.get_mut(n..).filter(|r| !r.is_empty()) {
        match source.read_again_at(n as u64, rest) {
            Ok(k) if k > 0 => n += k,
            _ => break,
        }
    }
    if p0.iter().any(|&b| b != 0) {
        return ZeroHeader::WrittenSince;
    }
    let Some((page, lsn)) = first_written(source, params) else {
        return ZeroHeader::Lost(String::new());
    };
    match checkpoint {
        Some(Ok(c)) if lsn <= c => ZeroHeader::Lost(format!(
            ": page {page} was written at LSN {lsn}, before the redo log's checkpoint at LSN {c}, by which the server had written page 0"
        )),
        Some(Ok(c)) => ZeroHeader::Unproven(format!(
            "every page that verifies from page {page} on may be newer than the redo log's checkpoint at LSN {c} (page {page} has LSN {lsn}), so the tablespace may have been created after it"
        )),
        Some(Err(e)) => ZeroHeader::Lost(format!(
            " (the redo log, which could tell a header not written yet, is unreadable: {e})"
        )),
        None => ZeroHeader::Lost(String::new()),
    }
}

/// The first page after page 0 that verifies, with its LSN.
fn first_written(source: &dyn FileSource, params: &SpaceParams) -> Option<(u64, u64)> {
    const CHUNK: usize = 1 << 20;
    let ps = params.format.physical_size;
    let mut buf = vec![0u8; CHUNK - CHUNK % ps];
    let mut offset = 0u64;
    while offset < source.len() {
        let n = source.read_full_at(offset, &mut buf).ok()?;
        for (i, p) in buf.get(..n)?.chunks_exact(ps).enumerate() {
            let page_no = offset / ps as u64 + i as u64;
            if page_no == 0 {
                continue;
            }
            let page = params.first_page + page_no;
            if let PageVerdict::Ok { lsn, .. } =
                judge_page(p, &params.format, params.space_id, page)
            {
                return Some((page_no, lsn));
            }
        }
        if n < buf.len() {
            break;
        }
        offset += n as u64;
    }
    None
}

/// Verifies each populated doublewrite slot against its target tablespace's format; returns a
/// note for each slot that is not usable (not damage: the server ignores such a slot too).
fn check_slots(
    source: &dyn FileSource,
    slots: &[Slot],
    spaces: Option<&HashMap<u32, SpaceFormat>>,
    system: &SpaceParams,
) -> Vec<String> {
    let mut notes = Vec::new();
    let mut unknown = 0usize;
    let mut buf = vec![0u8; system.format.physical_size];
    for s in slots {
        let fmt = if s.space_id == 0 {
            Some(system.format)
        } else {
            spaces.and_then(|m| m.get(&s.space_id).copied())
        };
        let Some(fmt) = fmt else {
            unknown += 1;
            continue;
        };
        let ok = match source.read_full_at(s.offset, &mut buf) {
            Ok(n) if n == buf.len() => doublewrite::slot_image(&buf, &fmt).is_some_and(|img| {
                matches!(
                    judge_page(img, &fmt, s.space_id, u64::from(s.page_no)),
                    PageVerdict::Ok { .. }
                )
            }),
            _ => false,
        };
        if !ok {
            notes.push(format!(
                "doublewrite slot at page {} (space {} page {}, LSN {}) does not verify: the server ignores it at recovery, and so does a repair",
                s.slot_page, s.space_id, s.page_no, s.lsn
            ));
        }
    }
    if unknown > 0 {
        notes.push(format!(
            "{unknown} doublewrite slot(s) hold pages of tablespaces not in this data directory (dropped tables, or a scan of ibdata1 alone): not verified"
        ));
    }
    notes
}

/// Verifies the pages of one tablespace file.
struct InnodbCheck {
    params: SpaceParams,
    end: u64,
    path: PathBuf,
    dblwr: Option<Doublewrite>,
    /// Pages that could not be checked (neither damage nor verified): how many, and the
    /// first by page number with why.
    unchecked: Mutex<(u64, Option<(u64, String)>)>,
}

impl UnitCheck for InnodbCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.end,
            align: self.params.format.physical_size as u64,
        }
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let ps = self.params.format.physical_size;
        let first = chunk.offset / ps as u64;
        let mut n = 0;
        for (i, page) in chunk.bytes.chunks_exact(ps).enumerate() {
            let index = first + i as u64;
            let page_no = self.params.first_page + index;
            if self.dblwr.is_some_and(|d| d.contains(page_no)) {
                continue; // a doublewrite slot, verified at open against its own tablespace
            }
            let verdict = judge_page(page, &self.params.format, self.params.space_id, page_no);
            if let PageVerdict::Unchecked(why) = verdict {
                let mut u = self.unchecked.lock().unwrap_or_else(|e| e.into_inner());
                u.0 += 1;
                if u.1.as_ref().is_none_or(|(p, _)| page_no < *p) {
                    u.1 = Some((page_no, why));
                }
                continue;
            }
            n += 1;
            if let PageVerdict::Bad(f) = verdict {
                let mut finding = Finding::new(f.kind, index * ps as u64, ps as u64, f.detail)
                    .unit(index)
                    .owner(path::owner(
                        &self.path,
                        Some(self.params.space_id),
                        page_no,
                        Some(be16(page, fil::TYPE)),
                    ));
                if let Some((stored, computed)) = f.checksums {
                    finding =
                        finding.checksums(format!("0x{stored:08x}"), format!("0x{computed:08x}"));
                }
                out.push(finding);
            }
        }
        n
    }

    fn describe(&self, chunk: &Chunk<'_>) -> Vec<(String, String)> {
        let p = chunk.bytes;
        let ps = self.params.format.physical_size;
        let page_no = self.params.first_page + chunk.offset / ps as u64;
        let t = be16(p, fil::TYPE);
        let n = p.len();
        let mut rows = vec![
            ("scheme".into(), self.params.format.scheme().into()),
            (
                "tablespace flags".into(),
                format!("0x{:x}", self.params.format.flags),
            ),
            (
                "space id (stored / expected)".into(),
                format!("{} / {}", be32(p, fil::SPACE_ID), self.params.space_id),
            ),
            (
                "page number (stored / expected)".into(),
                format!("{} / {page_no}", be32(p, fil::PAGE_NO)),
            ),
            (
                "page type".into(),
                format!("{t} ({})", page_type_name(t).unwrap_or("unknown")),
            ),
            ("LSN".into(), be64(p, fil::LSN).to_string()),
        ];
        if self.dblwr.is_some_and(|d| d.contains(page_no)) {
            rows.push((
                "doublewrite slot".into(),
                "yes: an image of another page, verified against its own tablespace".into(),
            ));
        }
        if n >= 8 {
            if self.params.format.full_crc32 {
                rows.push((
                    "trailer LSN (low 32 bits)".into(),
                    be32(p, n - 8).to_string(),
                ));
                rows.push((
                    "checksum (stored)".into(),
                    format!("0x{:08x}", be32(p, n - 4)),
                ));
                rows.push((
                    "checksum (computed)".into(),
                    format!("0x{:08x}", full_crc32(p.get(..n - 4).unwrap_or_default())),
                ));
            } else if self.params.format.zip {
                rows.push(("checksum (stored)".into(), format!("0x{:08x}", be32(p, 0))));
                rows.push((
                    "checksum crc32 (computed)".into(),
                    format!("0x{:08x}", zip_crc32(p)),
                ));
            } else {
                rows.push((
                    "trailer LSN (low 32 bits)".into(),
                    be32(p, n - 4).to_string(),
                ));
                rows.push((
                    "checksum field 1 / field 2 (stored)".into(),
                    format!("0x{:08x} / 0x{:08x}", be32(p, 0), be32(p, n - 8)),
                ));
                rows.push((
                    "crc32 (computed)".into(),
                    format!("0x{:08x}", page_crc32(p)),
                ));
                rows.push((
                    "innodb new / old (computed)".into(),
                    format!("0x{:08x} / 0x{:08x}", legacy_new(p), legacy_old(p)),
                ));
            }
        }
        let verdict = match judge_page(p, &self.params.format, self.params.space_id, page_no) {
            PageVerdict::Ok { checksum, .. } => format!("valid ({checksum})"),
            PageVerdict::Zero => "all zero: a page never written (valid)".into(),
            PageVerdict::Bad(f) => format!("{}: {}", f.kind, f.detail),
            PageVerdict::Unchecked(why) => format!("not checked: {why}"),
        };
        rows.push(("server's verdict".into(), verdict));
        rows
    }

    fn notes(&self) -> Vec<String> {
        let u = self.unchecked.lock().unwrap_or_else(|e| e.into_inner());
        match &u.1 {
            Some((first, why)) => vec![format!(
                "{} page(s) could not be checked and are not counted as verified (the first, page {first}: {why})",
                u.0
            )],
            None => Vec::new(),
        }
    }
}
