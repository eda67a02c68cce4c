//! The undo log (`docs/format.md` §11): the original bytes of every range a repair is about to
//! change, written and fsynced before the first change, and [`undo`], which puts them back.
//!
//! A log counts only when its seal record is intact: a repair writes no data before its log is
//! sealed and synced, so an unsealed log means that repair changed nothing. Every record has its
//! own checksum, and [`undo`] checks the whole log before it writes a byte.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use dbfsck_core::FileId;

use crate::storage::{Storage, StorageFile};

/// Magic of an undo log: `b"DBFU"`.
pub const UNDO_MAGIC: [u8; 4] = *b"DBFU";
/// Magic of an entry: `b"DBUE"`.
pub const ENTRY_MAGIC: [u8; 4] = *b"DBUE";
/// Magic of the seal: `b"DBUS"`.
pub const SEAL_MAGIC: [u8; 4] = *b"DBUS";
/// The undo log version written: 2 binds the log to the files it changed (identity, and a
/// digest of what the repair wrote). Version 1 logs are still read.
pub const UNDO_VERSION: u32 = 2;
/// Length of the log header.
pub const UNDO_HEADER_LEN: usize = 32;
/// Length of an entry's fixed part (before the path and data) in a version 2 log.
pub const ENTRY_HEADER_LEN: usize = 48;
/// Length of an entry's fixed part in a version 1 log.
pub const ENTRY_HEADER_LEN_V1: usize = 32;
/// Length of the seal.
pub const SEAL_LEN: usize = 32;
/// Largest data an entry may carry; a page is at most 64 KiB. Bounds what a damaged log can
/// make us allocate.
pub const MAX_ENTRY_DATA: u64 = 1 << 20;
/// Longest path an entry may carry.
pub const MAX_PATH_LEN: u32 = 4096;

/// Entry kind: original bytes at an offset.
pub const ENTRY_BYTES: u8 = 1;
/// Entry kind: the original length of a file.
pub const ENTRY_LENGTH: u8 = 2;
/// Entry kind: the identity (device, inode) of a file the repair changed (version 2).
pub const ENTRY_FILE: u8 = 3;
/// Entry kind: a run of all-zero pages the repair replaced by quarantine markers (version 2).
pub const ENTRY_ZERO_PAGES: u8 = 4;

/// One thing to put back, or to check before putting anything back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UndoEntry {
    /// These bytes were at this offset.
    Bytes {
        /// The file (absolute).
        path: PathBuf,
        /// Where.
        offset: u64,
        /// The original bytes.
        data: Vec<u8>,
        /// What the repair wrote there; `None` in a version 1 log.
        written: Option<Written>,
    },
    /// The file was this long.
    Length {
        /// The file (absolute).
        path: PathBuf,
        /// Its original length.
        len: u64,
        /// Its length after the repair; `None` in a version 1 log.
        after: Option<u64>,
    },
    /// A run of pages that were all zero, replaced by the quarantine markers of a native file
    /// with `params`: what to put back (zeros) and what to find first (the markers) both
    /// follow from these fields, so a hole of any size is one entry.
    ZeroPages {
        /// The file (absolute).
        path: PathBuf,
        /// The first page's offset.
        offset: u64,
        /// Pages in the run.
        pages: u64,
        /// The file's page parameters (page size, algorithm, file id).
        params: dbfsck_core::native::FileParams,
    },
    /// The file the repair changed, as it was then (version 2 logs name every file once,
    /// before its other entries).
    File {
        /// The file (absolute).
        path: PathBuf,
        /// Its device and inode.
        id: FileId,
    },
}

/// What a repair wrote over a range: enough to recognise it later, sector by sector, without
/// keeping the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written (0 when the range was cut off the file).
    pub len: u64,
    /// xxh3-64 of each [`SECTOR`]-byte piece of them (the last one may be shorter): a range
    /// whose every sector is the original's or the repair's is what a repair (or an undo)
    /// interrupted by a crash leaves, and is restored; anything else was written since.
    pub sectors: Vec<u64>,
}

/// The granularity a write can tear at, and at which an undo log recognises what a repair wrote.
pub const SECTOR: usize = 512;

impl Written {
    /// The record of writing `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Written {
            len: bytes.len() as u64,
            sectors: bytes.chunks(SECTOR).map(xxh3_64).collect(),
        }
    }
}

impl UndoEntry {
    /// The file the entry is about.
    pub fn path(&self) -> &Path {
        match self {
            UndoEntry::Bytes { path, .. }
            | UndoEntry::Length { path, .. }
            | UndoEntry::ZeroPages { path, .. }
            | UndoEntry::File { path, .. } => path,
        }
    }
}

/// Why an undo log cannot be used. One sentence each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UndoError {
    /// Reading or writing failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The header is not an undo log header.
    #[error("{0} is not a dbfsck undo log (bad magic, version or header checksum)")]
    NotAnUndoLog(PathBuf),
    /// An entry fails its checksum, or the log ends before its seal.
    #[error(
        "the undo log {path} is not sealed or is damaged at byte {offset}; nothing was restored \
         (a repair changes no data before its undo log is sealed, so a log that was never sealed \
         means its repair changed nothing)"
    )]
    Unsealed {
        /// The log.
        path: PathBuf,
        /// Where reading stopped.
        offset: u64,
    },
    /// The seal disagrees with the entries.
    #[error("the undo log {0} fails its seal check (entry count or digest); nothing was restored")]
    BadSeal(PathBuf),
    /// A path in the log is not absolute and plain, or longer than a log may hold.
    #[error("the undo log names an unusable path {0:?} (not absolute, with . or .. parts, or longer than 4096 bytes); nothing was restored")]
    UnsafePath(PathBuf),
    /// A file named by the log is locked.
    #[error("{0} is locked by another process (is the datastore running?); nothing was restored")]
    Locked(PathBuf),
    /// The log is not the invoking user's own: someone else could have written it.
    #[error("the undo log {path} is owned by uid {owner} with mode {mode:o}; undo uses only a log owned by the user running it (uid {me}) and writable by no one else; nothing was restored")]
    Untrusted {
        /// The log.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// The running user.
        me: u32,
    },
    /// A file no longer holds what the repair left (the datastore wrote since, or it is another
    /// file): writing the old bytes back would destroy newer data.
    #[error("{path}: {what}; the file changed since the repair, so nothing was restored (`--force` writes the old bytes anyway)")]
    Changed {
        /// The file.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// A file the log names is not the one its repair changed (or the log does not say which
    /// it was): undo writes only the files its repair changed, whatever the options.
    #[error(
        "{path}: {what}; undo writes only the files its repair changed, so nothing was restored"
    )]
    NotTheFile {
        /// The file.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// A version 1 log has nothing to check the files against.
    #[error("the undo log {0} is version 1, which records nothing to check the files against; nothing was restored (`--force` applies it as it is)")]
    Unchecked(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UndoError + '_ {
    move |source| UndoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes an undo log: create, [`UndoWriter::append`] each entry, [`UndoWriter::seal`].
pub struct UndoWriter<F: StorageFile> {
    path: PathBuf,
    file: F,
    end: u64,
    sums: Vec<u64>,
}

impl<F: StorageFile> UndoWriter<F> {
    /// Creates the log (failing if it exists) and writes its header.
    pub fn create<S: Storage<File = F>>(storage: &S, path: &Path) -> Result<Self, UndoError> {
        let mut file = storage.create_new(path).map_err(io_err(path))?;
        let mut h = [0u8; UNDO_HEADER_LEN];
        put(&mut h, 0, &UNDO_MAGIC);
        put(&mut h, 4, &UNDO_VERSION.to_le_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        put(&mut h, 8, &now.to_le_bytes());
        let sum = xxh3_64(h.get(..24).unwrap_or_default());
        put(&mut h, 24, &sum.to_le_bytes());
        file.write_all_at(&h, 0).map_err(io_err(path))?;
        Ok(UndoWriter {
            path: path.to_path_buf(),
            file,
            end: UNDO_HEADER_LEN as u64,
            sums: Vec::new(),
        })
    }

    /// Appends one entry.
    pub fn append(&mut self, entry: &UndoEntry) -> Result<(), UndoError> {
        let mut zp = [0u8; 16];
        let (kind, path, a, data, b, c): (u8, &Path, u64, &[u8], u64, u64) = match entry {
            UndoEntry::Bytes {
                path,
                offset,
                data,
                written,
            } => {
                let len = written.as_ref().map_or(0, |w| w.len);
                // What the reader refuses is never sealed: larger ranges go in pieces.
                if data.len() as u64 > MAX_ENTRY_DATA || len > MAX_ENTRY_DATA {
                    return Err(UndoError::Io {
                        path: path.clone(),
                        source: std::io::Error::other(format!(
                            "an undo entry of more than {MAX_ENTRY_DATA} bytes (the range is split by its caller)"
                        )),
                    });
                }
                (ENTRY_BYTES, path, *offset, data, len, 0)
            }
            UndoEntry::Length { path, len, after } => {
                (ENTRY_LENGTH, path, *len, &[], after.unwrap_or(*len), 0)
            }
            UndoEntry::File { path, id } => (ENTRY_FILE, path, id.dev, &[], id.ino, 0),
            UndoEntry::ZeroPages {
                path,
                offset,
                pages,
                params,
            } => {
                put(&mut zp, 0, &params.file_id.to_le_bytes());
                put(&mut zp, 8, &[params.algo.code()]);
                (
                    ENTRY_ZERO_PAGES,
                    path,
                    *offset,
                    &zp[..],
                    *pages,
                    params.page_size as u64,
                )
            }
        };
        let pb = path.as_os_str().as_bytes();
        // What the reader accepts, the writer enforces: a log it could not read back would
        // leave a repair without its undo.
        if pb.len() > MAX_PATH_LEN as usize || !is_plain_absolute(path) {
            return Err(UndoError::UnsafePath(path.to_path_buf()));
        }
        let mut e = vec![0u8; ENTRY_HEADER_LEN];
        put(&mut e, 0, &ENTRY_MAGIC);
        put(&mut e, 4, &[kind]);
        put(&mut e, 8, &(pb.len() as u32).to_le_bytes());
        put(&mut e, 16, &a.to_le_bytes());
        put(&mut e, 24, &(data.len() as u64).to_le_bytes());
        put(&mut e, 32, &b.to_le_bytes());
        put(&mut e, 40, &c.to_le_bytes());
        e.extend_from_slice(pb);
        e.extend_from_slice(data);
        if let UndoEntry::Bytes {
            written: Some(w), ..
        } = entry
        {
            for s in &w.sectors {
                e.extend_from_slice(&s.to_le_bytes());
            }
        }
        let sum = xxh3_64(&e);
        e.extend_from_slice(&sum.to_le_bytes());
        self.file
            .write_all_at(&e, self.end)
            .map_err(io_err(&self.path))?;
        self.end += e.len() as u64;
        self.sums.push(sum);
        Ok(())
    }

    /// Writes the seal and fsyncs the log (the caller then syncs its directory). Only after this
    /// returns may the repair change a byte.
    pub fn seal(mut self) -> Result<(), UndoError> {
        let mut s = [0u8; SEAL_LEN];
        put(&mut s, 0, &SEAL_MAGIC);
        put(&mut s, 8, &(self.sums.len() as u64).to_le_bytes());
        put(&mut s, 16, &digest(&self.sums).to_le_bytes());
        let sum = xxh3_64(s.get(..24).unwrap_or_default());
        put(&mut s, 24, &sum.to_le_bytes());
        self.file
            .write_all_at(&s, self.end)
            .and_then(|()| self.file.sync())
            .map_err(io_err(&self.path))
    }
}

fn digest(sums: &[u64]) -> u64 {
    let bytes: Vec<u8> = sums.iter().flat_map(|s| s.to_le_bytes()).collect();
    xxh3_64(&bytes)
}

/// A read undo log: its version and entries, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoLog {
    /// 1 or 2.
    pub version: u32,
    /// The entries.
    pub entries: Vec<UndoEntry>,
}

/// Reads and checks a whole undo log: header, every entry's checksum, the seal, and that every
/// path is absolute and plain. Entries are returned in the order written.
pub fn read_undo_log<S: Storage>(storage: &S, path: &Path) -> Result<Vec<UndoEntry>, UndoError> {
    let file = storage.open_read(path).map_err(io_err(path))?;
    Ok(read_log_from(&file, path)?.entries)
}

fn read_log_from<F: StorageFile>(file: &F, path: &Path) -> Result<UndoLog, UndoError> {
    let len = file.len().map_err(io_err(path))?;
    let mut h = [0u8; UNDO_HEADER_LEN];
    let n = file.read_full_at(&mut h, 0).map_err(io_err(path))?;
    let version = le_u32(&h, 4).unwrap_or(0);
    let header_ok = n == UNDO_HEADER_LEN
        && h.get(..4) == Some(&UNDO_MAGIC[..])
        && (version == 1 || version == UNDO_VERSION)
        && le_u64(&h, 24) == Some(xxh3_64(h.get(..24).unwrap_or_default()));
    if !header_ok {
        return Err(UndoError::NotAnUndoLog(path.to_path_buf()));
    }
    let fixed_len = if version == 1 {
        ENTRY_HEADER_LEN_V1
    } else {
        ENTRY_HEADER_LEN
    };
    let mut pos = UNDO_HEADER_LEN as u64;
    let mut entries = Vec::new();
    let mut sums = Vec::new();
    let unsealed = |offset| UndoError::Unsealed {
        path: path.to_path_buf(),
        offset,
    };
    loop {
        let mut fixed = [0u8; ENTRY_HEADER_LEN];
        let got = file.read_full_at(&mut fixed, pos).map_err(io_err(path))?;
        if got >= SEAL_LEN && fixed.get(..4) == Some(&SEAL_MAGIC[..]) {
            let sealed = le_u64(&fixed, 24) == Some(xxh3_64(fixed.get(..24).unwrap_or_default()));
            if !sealed {
                return Err(unsealed(pos));
            }
            if le_u64(&fixed, 8) != Some(sums.len() as u64)
                || le_u64(&fixed, 16) != Some(digest(&sums))
                || pos + SEAL_LEN as u64 != len
            {
                return Err(UndoError::BadSeal(path.to_path_buf()));
            }
            return Ok(UndoLog { version, entries });
        }
        if got < fixed_len || fixed.get(..4) != Some(&ENTRY_MAGIC[..]) {
            return Err(unsealed(pos));
        }
        let kind = fixed.get(4).copied().unwrap_or(0);
        let path_len = le_u32(&fixed, 8).unwrap_or(u32::MAX);
        let a = le_u64(&fixed, 16).unwrap_or(0);
        let data_len = le_u64(&fixed, 24).unwrap_or(u64::MAX);
        let (b, c) = if version == 1 {
            (None, None)
        } else {
            (le_u64(&fixed, 32), le_u64(&fixed, 40))
        };
        let known = match version {
            1 => matches!(kind, ENTRY_BYTES | ENTRY_LENGTH),
            _ => matches!(
                kind,
                ENTRY_BYTES | ENTRY_LENGTH | ENTRY_FILE | ENTRY_ZERO_PAGES
            ),
        };
        let written_len = if kind == ENTRY_BYTES {
            b.unwrap_or(0)
        } else {
            0
        };
        let sane = known
            && path_len <= MAX_PATH_LEN
            && data_len <= MAX_ENTRY_DATA
            && written_len <= MAX_ENTRY_DATA
            && match kind {
                ENTRY_BYTES => c.is_none_or(|c| c == 0),
                // A valid page size, and 16 bytes of parameters.
                ENTRY_ZERO_PAGES => {
                    data_len == 16 && c.is_some_and(dbfsck_core::native::layout::is_valid_page_size)
                }
                _ => data_len == 0 && c.is_none_or(|c| c == 0),
            };
        if !sane {
            return Err(unsealed(pos));
        }
        let digests = (written_len as usize).div_ceil(SECTOR) * 8;
        let total = fixed_len + path_len as usize + data_len as usize + digests + 8;
        let mut e = vec![0u8; total];
        if file.read_full_at(&mut e, pos).map_err(io_err(path))? < total {
            return Err(unsealed(pos));
        }
        let sum_off = total - 8;
        let sum = le_u64(&e, sum_off).unwrap_or(0);
        if xxh3_64(e.get(..sum_off).unwrap_or_default()) != sum {
            return Err(unsealed(pos));
        }
        let p_end = fixed_len + path_len as usize;
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(
            e.get(fixed_len..p_end).unwrap_or_default(),
        ));
        if !is_plain_absolute(&p) {
            return Err(UndoError::UnsafePath(p));
        }
        let d_end = p_end + data_len as usize;
        entries.push(match kind {
            ENTRY_BYTES => UndoEntry::Bytes {
                path: p,
                offset: a,
                data: e.get(p_end..d_end).unwrap_or_default().to_vec(),
                written: (version != 1).then(|| Written {
                    len: written_len,
                    sectors: e
                        .get(d_end..sum_off)
                        .unwrap_or_default()
                        .chunks_exact(8)
                        .filter_map(|s| s.try_into().ok().map(u64::from_le_bytes))
                        .collect(),
                }),
            },
            ENTRY_LENGTH => UndoEntry::Length {
                path: p,
                len: a,
                after: b,
            },
            ENTRY_ZERO_PAGES => {
                let d = e.get(p_end..d_end).unwrap_or_default();
                let algo = d
                    .get(8)
                    .and_then(|&code| dbfsck_core::native::ChecksumAlgo::from_code(code));
                let (Some(algo), Some(file_id)) = (algo, le_u64(d, 0)) else {
                    return Err(unsealed(pos));
                };
                UndoEntry::ZeroPages {
                    path: p,
                    offset: a,
                    pages: b.unwrap_or(0),
                    params: dbfsck_core::native::FileParams {
                        page_size: c.unwrap_or(0) as usize,
                        algo,
                        file_id,
                    },
                }
            }
            _ => UndoEntry::File {
                path: p,
                id: FileId {
                    dev: a,
                    ino: b.unwrap_or(0),
                },
            },
        });
        sums.push(sum);
        pos += total as u64;
    }
}

/// Whether a path is absolute with only normal components (no `.`, `..`, no NUL).
pub fn is_plain_absolute(p: &Path) -> bool {
    let bytes = p.as_os_str().as_bytes();
    let mut comps = p.components();
    // `components` quietly drops interior `.` parts, so the raw segments are checked too.
    let raw_plain = bytes
        .split(|&b| b == b'/')
        .skip(1)
        .all(|seg| !seg.is_empty() && seg != b"." && seg != b"..");
    bytes.first() == Some(&b'/')
        && raw_plain
        && comps.next() == Some(Component::RootDir)
        && comps.all(|c| matches!(c, Component::Normal(_)))
        && !bytes.contains(&0)
}

/// What [`undo`] restored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UndoOutcome {
    /// Ranges written back.
    pub ranges: usize,
    /// Files whose length was set back.
    pub lengths: usize,
    /// The files touched, in the order first met.
    pub files: Vec<PathBuf>,
}

/// Restores the exact bytes (and lengths) an undo log saved, in reverse order, and fsyncs every
/// file. Before it writes a byte it checks: the whole log; that the log is the invoking user's
/// own (owned by them, writable by no one else); that every file is the one the repair changed
/// (same device and inode) and opens without passing a symbolic link; that no other process
/// holds it (unless `force`); and that every range still holds what the repair wrote, or
/// already the original bytes (an undo run before, or interrupted) — anything else means the
/// datastore wrote since, and nothing is restored unless `force`. Idempotent.
pub fn undo<S: Storage>(storage: &S, log: &Path, force: bool) -> Result<UndoOutcome, UndoError> {
    let log_file = storage.open_read(log).map_err(io_err(log))?;
    if let Some(m) = log_file.meta().map_err(io_err(log))? {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if m.uid != me || m.writable_by_others() {
            return Err(UndoError::Untrusted {
                path: log.to_path_buf(),
                owner: m.uid,
                mode: m.mode & 0o7777,
                me,
            });
        }
    }
    // Read from the descriptor that was checked, not the path again.
    let UndoLog { version, entries } = read_log_from(&log_file, log)?;
    if version == 1 && !force {
        return Err(UndoError::Unchecked(log.to_path_buf()));
    }
    let mut outcome = UndoOutcome::default();
    for e in &entries {
        if !outcome.files.iter().any(|f| f == e.path()) {
            outcome.files.push(e.path().to_path_buf());
        }
    }
    let mut handles = Vec::with_capacity(outcome.files.len());
    for p in &outcome.files {
        let f = storage.open_rw(p).map_err(io_err(p))?;
        if !f.try_lock().map_err(io_err(p))? && !force {
            return Err(UndoError::Locked(p.clone()));
        }
        handles.push(f);
    }
    // InnoDB: a running server holds its fcntl lock on its data directory's ibdata1 and none on
    // the table files, so an undo takes that lock too, as a repair does; held until the end.
    let mut system_locks = Vec::new();
    let known = known_data_dirs(log, &outcome.files);
    for p in &outcome.files {
        let Some(sys) = innodb_system_file(p, &known) else {
            continue;
        };
        if outcome.files.contains(&sys) || system_locks.iter().any(|(q, _)| *q == sys) {
            continue;
        }
        let f = storage.open_rw(&sys).map_err(io_err(&sys))?;
        if !f.try_lock().map_err(io_err(&sys))? && !force {
            return Err(UndoError::Locked(sys));
        }
        system_locks.push((sys, f));
    }
    let handle = |p: &Path| {
        outcome
            .files
            .iter()
            .position(|f| f == p)
            .and_then(|i| handles.get(i))
    };
    // Every file the log would write must be the one its repair changed: named with its
    // identity, as a repair names it, and that very file now. `--force` never lifts this.
    if version != 1 {
        for (p, f) in outcome.files.iter().zip(&handles) {
            let recorded = entries.iter().find_map(|e| match e {
                UndoEntry::File { path, id } if path == p => Some(*id),
                _ => None,
            });
            let foreign = |what: String| UndoError::NotTheFile {
                path: p.clone(),
                what,
            };
            match (recorded, f.id().map_err(io_err(p))?) {
                (None, Some(_)) => return Err(foreign("the log does not record which file the repair changed (its device and inode), as every log a repair writes does".into())),
                (Some(want), Some(now)) if want != now => return Err(foreign(format!(
                    "it is another file than the one the repair changed (device {} inode {}, not device {} inode {})",
                    now.dev, now.ino, want.dev, want.ino
                ))),
                _ => {}
            }
        }
    }
    if !force {
        for e in &entries {
            let Some(f) = handle(e.path()) else {
                continue;
            };
            if let Some(what) = changed_since_repair(f, e).map_err(io_err(e.path()))? {
                return Err(UndoError::Changed {
                    path: e.path().to_path_buf(),
                    what,
                });
            }
        }
    }
    for e in entries.iter().rev() {
        let i = outcome
            .files
            .iter()
            .position(|f| f == e.path())
            .unwrap_or(0);
        let Some(f) = handles.get_mut(i) else {
            continue;
        };
        match e {
            UndoEntry::Bytes {
                path, offset, data, ..
            } => {
                f.write_all_at(data, *offset).map_err(io_err(path))?;
                outcome.ranges += 1;
            }
            UndoEntry::Length { path, len, .. } => {
                f.set_len(*len).map_err(io_err(path))?;
                outcome.lengths += 1;
            }
            UndoEntry::ZeroPages {
                path,
                offset,
                pages,
                params,
            } => {
                let zeros = vec![0u8; params.page_size];
                for k in 0..*pages {
                    let at = offset + k * params.page_size as u64;
                    f.write_all_at(&zeros, at).map_err(io_err(path))?;
                }
                outcome.ranges += 1;
            }
            UndoEntry::File { .. } => {}
        }
    }
    for (f, p) in handles.iter_mut().zip(&outcome.files) {
        f.sync().map_err(io_err(p))?;
    }
    Ok(outcome)
}

/// Whether the file no longer holds what the repair left for this entry, nor what was there
/// before it (an undo already done): `Some(what differs)`.
fn changed_since_repair<F: StorageFile>(f: &F, e: &UndoEntry) -> io::Result<Option<String>> {
    Ok(match e {
        // Checked by `undo` itself, always.
        UndoEntry::File { .. } => None,
        UndoEntry::ZeroPages {
            offset,
            pages,
            params,
            ..
        } => {
            let ps = params.page_size;
            let mut page = vec![0u8; ps];
            let mut changed = None;
            for k in 0..*pages {
                let at = offset + k * ps as u64;
                let n = f.read_full_at(&mut page, at)?;
                let unit = at / ps as u64;
                let marker = crate::apply::quarantine_marker(params, unit)?;
                if n != ps || (page != marker && page.iter().any(|&b| b != 0)) {
                    changed = Some(format!(
                        "page {unit} (bytes {at}..{}) holds neither the quarantine marker the repair wrote nor the zeros that were there",
                        at + ps as u64
                    ));
                    break;
                }
            }
            changed
        }
        UndoEntry::Length { len, after, .. } => {
            let now = f.len()?;
            let after = after.unwrap_or(*len);
            (now != after && now != *len).then(|| {
                format!(
                    "it is {} long; the repair left it {after} (it was {len})",
                    dbfsck_core::bytes(now)
                )
            })
        }
        UndoEntry::Bytes {
            offset,
            data,
            written,
            ..
        } => {
            let wlen = written.as_ref().map_or(0, |w| w.len) as usize;
            let len = f.len()?;
            let mut now = vec![0u8; data.len().max(wlen)];
            let n = f.read_full_at(&mut now, *offset)?;
            now.truncate(n);
            // Sector by sector: the original's bytes, or the repair's (a crash may have torn
            // either the repair's write or an earlier undo's).
            let sectors = now.len().max(data.len()).max(wlen).div_ceil(SECTOR);
            let ok = (0..sectors).all(|i| {
                let r = i * SECTOR..(i + 1) * SECTOR;
                let cur = now.get(r.start..r.end.min(now.len())).unwrap_or_default();
                let orig = data.get(r.start..r.end.min(data.len())).unwrap_or_default();
                // Past the file's original end (a short last sector) anything may follow: the
                // length entry cuts it off again.
                let is_original = cur.get(..orig.len()) == Some(orig);
                let is_repaired = match written {
                    Some(w) if r.start < wlen => {
                        cur.len() == (r.end.min(wlen) - r.start)
                            && w.sectors.get(i).is_some_and(|&s| s == xxh3_64(cur))
                    }
                    // Past what the repair wrote: a cut-off range is gone from the file, or
                    // zero where an interrupted undo set the length back before the bytes.
                    _ => {
                        (cur.is_empty() && len <= *offset + r.start as u64)
                            || (!cur.is_empty() && cur.iter().all(|&b| b == 0))
                    }
                };
                is_original || is_repaired
            });
            (!ok).then(|| {
                format!(
                    "bytes {offset}..{} hold neither what the repair wrote nor what was there before",
                    *offset + wlen.max(data.len()) as u64
                )
            })
        }
    })
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The InnoDB data directories an undo may concern, for tables created with `DATA DIRECTORY`
/// (outside theirs): those of the log's other files, and the one the log's own place implies —
/// `D/.dbfsck/` inside it, or `PARENT/.dbfsck/NAME/` beside it (`docs/innodb.md` §7).
fn known_data_dirs(log: &Path, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut known: Vec<PathBuf> = files
        .iter()
        .filter_map(|p| dbfsck_core::innodb::data_dir_of(p))
        .collect();
    let dir = log.parent();
    let is_ours = |d: &Path| d.file_name().is_some_and(|n| n == dbfsck_core::DBFSCK_DIR);
    if let Some(d) = dir.filter(|d| is_ours(d)).and_then(Path::parent) {
        known.push(d.to_path_buf()); // D/.dbfsck/<log>
    }
    if let (Some(name), Some(ours)) = (dir.and_then(Path::file_name), dir.and_then(Path::parent)) {
        if is_ours(ours) {
            if let Some(parent) = ours.parent() {
                known.push(parent.join(name)); // PARENT/.dbfsck/NAME/<log>
            }
        }
    }
    known.retain(|d| dbfsck_core::innodb::is_data_dir(d));
    known.sort();
    known.dedup();
    known
}

/// The `ibdata1` of the InnoDB data directory an InnoDB file (`*.ibd`, `ibdataN`, `undoNNN`)
/// belongs to, when it has one (`known`: data directories for a `DATA DIRECTORY` table).
fn innodb_system_file(path: &Path, known: &[PathBuf]) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let innodb = name.ends_with(".ibd")
        || dbfsck_core::innodb::is_system_name(name)
        || dbfsck_core::innodb::is_undo_name(name);
    innodb
        .then(|| dbfsck_core::innodb::owning_data_dir(path, known))
        .flatten()
        .map(|d| d.join("ibdata1"))
}
