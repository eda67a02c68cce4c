//! Storage behind a small trait, so every write and fsync of the journaled writer, the repair
//! and the undo can be crashed in tests ([`crash::CrashStorage`]).

pub mod crash;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use dbfsck_core::FileId;

/// A place files live: the real file system ([`FsStorage`]) or a crashable model of it.
///
/// Paths are opened without following a symbolic link in any component: callers first
/// [`Storage::resolve`] a path they were given (once, to its real directory), so a link
/// planted later is refused instead of followed.
pub trait Storage {
    /// An open file.
    type File: StorageFile;
    /// Opens an existing regular file for reading, never through a symbolic link.
    fn open_read(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing regular file for reading and writing, never through a symbolic link.
    fn open_rw(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates a new file (failing if it exists), mode 0600, never through a symbolic link.
    fn create_new(&self, path: &Path) -> io::Result<Self::File>;
    /// Creates a directory and its missing parents; the directories it creates are mode 0700.
    /// The directory must then be private to the running user: owned by it and writable by no
    /// one else (another user able to write there could swap the files put in it).
    fn create_dir_private(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to` (replacing `to`) within one directory, following no link.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Whether a file exists (without following a final symbolic link).
    fn exists(&self, path: &Path) -> bool;
    /// The regular files directly in `dir` (no directories), sorted, and how many symbolic
    /// links it holds (never followed).
    fn list_dir(&self, dir: &Path) -> io::Result<(Vec<std::path::PathBuf>, usize)>;
    /// The path with its directory resolved to where it really is (symbolic links in the
    /// directories followed once, now), absolute and plain; the last component is kept as it
    /// is. A path that cannot be resolved is returned as given.
    fn resolve(&self, path: &Path) -> std::path::PathBuf {
        path.to_path_buf()
    }
}

/// What a storage knows of a file's ownership: its owner, permission bits and hard links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    /// The owner's uid.
    pub uid: u32,
    /// `st_mode`.
    pub mode: u32,
    /// Hard links to the inode.
    pub nlink: u64,
}

impl FileMeta {
    /// Whether someone other than the owner may write the file.
    pub fn writable_by_others(&self) -> bool {
        self.mode & 0o022 != 0
    }
}

/// An open file of a [`Storage`].
#[expect(
    clippy::len_without_is_empty,
    reason = "a fallible length; emptiness is never asked"
)]
pub trait StorageFile {
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Sets the file's length.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes everything written durable (fsync).
    fn sync(&mut self) -> io::Result<()>;
    /// Takes the exclusive advisory lock without waiting; `Ok(false)` when another process
    /// holds it (the datastore is running).
    fn try_lock(&self) -> io::Result<bool>;
    /// The file's device and inode, where the storage has them.
    fn id(&self) -> io::Result<Option<FileId>>;
    /// The file's owner, permission bits and link count, where the storage has them.
    fn meta(&self) -> io::Result<Option<FileMeta>>;

    /// Reads until `buf` is full or the file ends; returns how many bytes were read.
    fn read_full_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            match self.read_at(rest, offset + done as u64)? {
                0 => break,
                n => done += n,
            }
        }
        Ok(done)
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

impl Storage for FsStorage {
    type File = File;

    fn open_read(&self, path: &Path) -> io::Result<File> {
        regular(open_no_links(path, libc::O_RDONLY | libc::O_NONBLOCK, 0)?)
    }

    fn open_rw(&self, path: &Path) -> io::Result<File> {
        regular(open_no_links(path, libc::O_RDWR | libc::O_NONBLOCK, 0)?)
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        open_no_links(path, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600)
    }

    fn create_dir_private(&self, path: &Path) -> io::Result<()> {
        let dir = walk_dirs(path, true)?;
        let meta = dir.metadata()?;
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        // Writable by others only with the sticky bit (as /tmp): then no one else can remove or
        // rename what is put there.
        let others_write = meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0;
        if meta.uid() != me || others_write {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is owned by uid {} with mode {:o}: dbfsck keeps its undo logs and quarantine only in a directory owned by the running user (uid {me}) that no one else can write; remove it or name another place",
                    path.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ));
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        walk_dirs(path, false)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        use std::ffi::CString;
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let (Some(dir), Some(a), Some(b)) = (from.parent(), from.file_name(), to.file_name())
        else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        if to.parent() != Some(dir) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let d = walk_dirs(dir, false)?;
        let c = |s: &std::ffi::OsStr| {
            CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        };
        let (a, b) = (c(a)?, c(b)?);
        // SAFETY: both names are valid NUL-terminated strings relative to an open directory.
        let r = unsafe { libc::renameat(d.as_raw_fd(), a.as_ptr(), d.as_raw_fd(), b.as_ptr()) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<(Vec<std::path::PathBuf>, usize)> {
        let mut out = Vec::new();
        let mut links = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let t = entry.file_type()?;
            if t.is_file() {
                out.push(entry.path());
            } else if t.is_symlink() {
                links += 1;
            }
        }
        out.sort();
        Ok((out, links))
    }

    fn resolve(&self, path: &Path) -> std::path::PathBuf {
        let parent = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match (std::fs::canonicalize(parent), path.file_name()) {
            // Only a path the system can open by its name (not one past PATH_MAX).
            (Ok(dir), Some(name)) if dir.symlink_metadata().is_ok() => dir.join(name),
            _ => path.to_path_buf(),
        }
    }
}

/// Opens the directories of `path` one component at a time, each without following a
/// symbolic link (`O_NOFOLLOW` on every `openat`), creating missing ones (mode 0700) when
/// `create`; returns the last directory.
fn walk_dirs(path: &Path, create: bool) -> io::Result<File> {
    use std::ffi::CString;
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    let open_dir = |at: libc::c_int, name: &CString| {
        // SAFETY: name is a valid NUL-terminated string; the fd returned is owned below.
        let fd = unsafe {
            libc::openat(
                at,
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            // SAFETY: fd is a fresh descriptor nothing else owns.
            Ok(unsafe { File::from_raw_fd(fd) })
        }
    };
    let c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let mut dir: Option<File> = None;
    for comp in path.components() {
        use std::os::fd::AsRawFd;
        let at = dir.as_ref().map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
        let name = match comp {
            Component::RootDir => c(b"/")?,
            Component::CurDir => c(b".")?,
            Component::ParentDir => c(b"..")?,
            Component::Normal(n) => c(n.as_bytes())?,
            Component::Prefix(_) => return Err(io::ErrorKind::InvalidInput.into()),
        };
        let next = match open_dir(at, &name) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                // SAFETY: name is a valid NUL-terminated string.
                if unsafe { libc::mkdirat(at, name.as_ptr(), 0o700) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                }
                open_dir(at, &name)
            }
            r => r,
        };
        dir = Some(next.map_err(|e| link_error(path, e))?);
    }
    match dir {
        Some(d) => Ok(d),
        None => open_dir(libc::AT_FDCWD, &c(b".")?),
    }
}

/// Opens `path` with `flags`, following no symbolic link in any component.
fn open_no_links(path: &Path, flags: libc::c_int, mode: libc::c_uint) -> io::Result<File> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = match parent {
        Some(p) => Some(walk_dirs(p, false)?),
        None => None,
    };
    let at = dir.as_ref().map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let cname =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: cname is a valid NUL-terminated string; the fd returned is owned below.
    let fd = unsafe {
        libc::openat(
            at,
            cname.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode,
        )
    };
    if fd < 0 {
        return Err(link_error(path, io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// ELOOP / ENOTDIR from an `O_NOFOLLOW` open mean a symbolic link was met: say so.
fn link_error(path: &Path, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} passes through a symbolic link (or a non-directory), which repair and undo never follow; name the real path",
                path.display()
            ),
        ),
        _ => e,
    }
}

/// Refuses anything but a regular file (a FIFO or device is never read or written).
fn regular(file: File) -> io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

impl StorageFile for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match FileExt::read_at(self, buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
    fn try_lock(&self) -> io::Result<bool> {
        match File::try_lock(self) {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        // Engines that lock with fcntl (InnoDB, SQLite) do not see flock locks, nor flock
        // theirs: take an open-file-description write lock too, which conflicts with both.
        posix_write_lock(self)
    }
    fn id(&self) -> io::Result<Option<FileId>> {
        Ok(Some(FileId::of(&self.metadata()?)))
    }
    fn meta(&self) -> io::Result<Option<FileMeta>> {
        use std::os::unix::fs::MetadataExt;
        let m = self.metadata()?;
        Ok(Some(FileMeta {
            uid: m.uid(),
            mode: m.mode(),
            nlink: m.nlink(),
        }))
    }
}

/// A [`StorageFile`] read through the core's [`FileSource`](dbfsck_core::FileSource), so the
/// core's parsers (journal, header) read through the same storage.
pub(crate) struct Source<'a, F: StorageFile> {
    pub(crate) file: &'a F,
    pub(crate) len: u64,
}

impl<F: StorageFile> dbfsck_core::FileSource for Source<'_, F> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

/// Takes a non-blocking fcntl write lock on the whole file, tied to this open file description
/// (so closing another descriptor of the file does not drop it); `Ok(false)` when another
/// process holds a conflicting lock.
fn posix_write_lock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock is plain data; all-zero (whole file from offset 0, pid 0) is what
    // F_OFD_SETLK requires, then the type is set.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_OFD_SETLK only reads the flock struct we pass.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}
