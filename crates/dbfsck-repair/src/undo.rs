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

use crate::storage::{Storage, StorageFile};

/// Magic of an undo log: `b"DBFU"`.
pub const UNDO_MAGIC: [u8; 4] = *b"DBFU";
/// Magic of an entry: `b"DBUE"`.
pub const ENTRY_MAGIC: [u8; 4] = *b"DBUE";
/// Magic of the seal: `b"DBUS"`.
pub const SEAL_MAGIC: [u8; 4] = *b"DBUS";
/// The undo log version.
pub const UNDO_VERSION: u32 = 1;
/// Length of the log header.
pub const UNDO_HEADER_LEN: usize = 32;
/// Length of an entry's fixed part (before the path and data).
pub const ENTRY_HEADER_LEN: usize = 32;
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

/// One thing to put back.
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
    },
    /// The file was this long.
    Length {
        /// The file (absolute).
        path: PathBuf,
        /// Its original length.
        len: u64,
    },
}

impl UndoEntry {
    /// The file the entry is about.
    pub fn path(&self) -> &Path {
        match self {
            UndoEntry::Bytes { path, .. } | UndoEntry::Length { path, .. } => path,
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
    /// A path in the log is not absolute and plain.
    #[error("the undo log names an unsafe path {0:?} (not absolute, or with . or .. parts); nothing was restored")]
    UnsafePath(PathBuf),
    /// A file named by the log is locked.
    #[error("{0} is locked by another process (is the datastore running?); nothing was restored")]
    Locked(PathBuf),
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
        let (kind, path, a, data): (u8, &Path, u64, &[u8]) = match entry {
            UndoEntry::Bytes { path, offset, data } => (ENTRY_BYTES, path, *offset, data),
            UndoEntry::Length { path, len } => (ENTRY_LENGTH, path, *len, &[]),
        };
        let pb = path.as_os_str().as_bytes();
        let mut b = vec![0u8; ENTRY_HEADER_LEN];
        put(&mut b, 0, &ENTRY_MAGIC);
        put(&mut b, 4, &[kind]);
        put(&mut b, 8, &(pb.len() as u32).to_le_bytes());
        put(&mut b, 16, &a.to_le_bytes());
        put(&mut b, 24, &(data.len() as u64).to_le_bytes());
        b.extend_from_slice(pb);
        b.extend_from_slice(data);
        let sum = xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        self.file
            .write_all_at(&b, self.end)
            .map_err(io_err(&self.path))?;
        self.end += b.len() as u64;
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

/// Reads and checks a whole undo log: header, every entry's checksum, the seal, and that every
/// path is absolute and plain. Entries are returned in the order written.
pub fn read_undo_log<S: Storage>(storage: &S, path: &Path) -> Result<Vec<UndoEntry>, UndoError> {
    let file = storage.open_read(path).map_err(io_err(path))?;
    let len = file.len().map_err(io_err(path))?;
    let mut h = [0u8; UNDO_HEADER_LEN];
    let n = file.read_full_at(&mut h, 0).map_err(io_err(path))?;
    let header_ok = n == UNDO_HEADER_LEN
        && h.get(..4) == Some(&UNDO_MAGIC[..])
        && le_u32(&h, 4) == Some(UNDO_VERSION)
        && le_u64(&h, 24) == Some(xxh3_64(h.get(..24).unwrap_or_default()));
    if !header_ok {
        return Err(UndoError::NotAnUndoLog(path.to_path_buf()));
    }
    let mut pos = UNDO_HEADER_LEN as u64;
    let mut entries = Vec::new();
    let mut sums = Vec::new();
    let unsealed = |offset| UndoError::Unsealed {
        path: path.to_path_buf(),
        offset,
    };
    loop {
        let mut fixed = [0u8; ENTRY_HEADER_LEN];
        if file.read_full_at(&mut fixed, pos).map_err(io_err(path))? < ENTRY_HEADER_LEN {
            return Err(unsealed(pos));
        }
        if fixed.get(..4) == Some(&SEAL_MAGIC[..]) {
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
            return Ok(entries);
        }
        if fixed.get(..4) != Some(&ENTRY_MAGIC[..]) {
            return Err(unsealed(pos));
        }
        let kind = fixed.get(4).copied().unwrap_or(0);
        let path_len = le_u32(&fixed, 8).unwrap_or(u32::MAX);
        let a = le_u64(&fixed, 16).unwrap_or(0);
        let data_len = le_u64(&fixed, 24).unwrap_or(u64::MAX);
        let sane = matches!(kind, ENTRY_BYTES | ENTRY_LENGTH)
            && path_len <= MAX_PATH_LEN
            && data_len <= MAX_ENTRY_DATA
            && (kind == ENTRY_BYTES || data_len == 0);
        if !sane {
            return Err(unsealed(pos));
        }
        let total = ENTRY_HEADER_LEN + path_len as usize + data_len as usize + 8;
        let mut b = vec![0u8; total];
        if file.read_full_at(&mut b, pos).map_err(io_err(path))? < total {
            return Err(unsealed(pos));
        }
        let sum_off = total - 8;
        let sum = le_u64(&b, sum_off).unwrap_or(0);
        if xxh3_64(b.get(..sum_off).unwrap_or_default()) != sum {
            return Err(unsealed(pos));
        }
        let p_end = ENTRY_HEADER_LEN + path_len as usize;
        let p = PathBuf::from(std::ffi::OsStr::from_bytes(
            b.get(ENTRY_HEADER_LEN..p_end).unwrap_or_default(),
        ));
        if !is_plain_absolute(&p) {
            return Err(UndoError::UnsafePath(p));
        }
        entries.push(match kind {
            ENTRY_BYTES => UndoEntry::Bytes {
                path: p,
                offset: a,
                data: b.get(p_end..sum_off).unwrap_or_default().to_vec(),
            },
            _ => UndoEntry::Length { path: p, len: a },
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
/// file. Checks the whole log first; idempotent. Refuses a file another process has locked unless
/// `force`.
pub fn undo<S: Storage>(storage: &S, log: &Path, force: bool) -> Result<UndoOutcome, UndoError> {
    let entries = read_undo_log(storage, log)?;
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
            UndoEntry::Bytes { path, offset, data } => {
                f.write_all_at(data, *offset).map_err(io_err(path))?;
                outcome.ranges += 1;
            }
            UndoEntry::Length { path, len } => {
                f.set_len(*len).map_err(io_err(path))?;
                outcome.lengths += 1;
            }
        }
    }
    for (f, p) in handles.iter_mut().zip(&outcome.files) {
        f.sync().map_err(io_err(p))?;
    }
    Ok(outcome)
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
