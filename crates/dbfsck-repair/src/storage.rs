//! Storage behind a small trait, so every write and fsync of the journaled writer, the repair
//! and the undo can be crashed in tests ([`crash::CrashStorage`]).

pub mod crash;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;

/// A place files live: the real file system ([`FsStorage`]) or a crashable model of it.
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
    fn create_dir_private(&self, path: &Path) -> io::Result<()>;
    /// Makes a directory's entries durable (fsync of the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a file exists (without following a final symbolic link).
    fn exists(&self, path: &Path) -> bool;
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
        regular(
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(path)?,
        )
    }

    fn open_rw(&self, path: &Path) -> io::Result<File> {
        regular(
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(path)?,
        )
    }

    fn create_new(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    }

    fn create_dir_private(&self, path: &Path) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o700).create(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.symlink_metadata().is_ok()
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
