//! How bytes are read: memory maps (memmap2, private to this crate, one bounded window per
//! thread at a time) or positional reads into a reused buffer.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::format::FileSource;

/// How the engine reads file bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadStrategy {
    /// Map each chunk read-only (default). Fastest on a warm cache; memory stays bounded because
    /// each thread maps one chunk at a time and unmaps it when done.
    #[default]
    Mmap,
    /// Positional reads (`pread`) into one reused buffer per thread (`--no-mmap`).
    Pread,
}

/// `FileSource` over an open file, by positional reads.
pub(crate) struct PreadSource<'a> {
    pub(crate) file: &'a File,
    pub(crate) len: u64,
    /// Gentle mode: every read waits for its bytes on the scan's schedule (stopping the wait
    /// when the flag is set), so what a format reads while opening a file (a journal, recovery
    /// windows) is throttled like the chunks.
    pub(crate) throttle: Option<(
        &'a crate::throttle::RateLimiter,
        &'a std::sync::atomic::AtomicBool,
    )>,
}

impl FileSource for PreadSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((limiter, cancel)) = self.throttle {
            let want = (buf.len() as u64).min(self.len.saturating_sub(offset));
            limiter.acquire(want, cancel);
        }
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
}

/// `FileSource` that serves reads inside the already-read head from memory, and the rest by
/// positional reads: formats re-read their header without a second system call.
pub(crate) struct HeadSource<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) rest: PreadSource<'a>,
}

impl FileSource for HeadSource<'_> {
    fn len(&self) -> u64 {
        self.rest.len
    }

    fn cached_head(&self) -> &[u8] {
        self.head
    }

    fn read_again_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.rest.read_at(offset, buf)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let in_head = start
            .checked_add(buf.len())
            .and_then(|end| self.head.get(start..end));
        match in_head {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(bytes.len())
            }
            None => self.rest.read_at(offset, buf),
        }
    }
}

/// Reads `buf.len()` bytes at `offset` unless the file ends first; returns the count read.
pub(crate) fn pread_fully(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..) {
        if rest.is_empty() {
            break;
        }
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// One thread's reader: the strategy and its reused buffer.
pub(crate) struct Reader {
    strategy: ReadStrategy,
    buf: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(strategy: ReadStrategy) -> Self {
        Reader {
            strategy,
            buf: Vec::new(),
        }
    }

    /// Calls `f` with the bytes of `[offset, offset + len)` of `file`, or with fewer when the
    /// file is now shorter (it shrank since it was opened). The slice never outlives the call.
    /// The flag is true when a page of a map could not be read while `f` ran (SIGBUS: the file
    /// was truncated under the map, or a media error): `f` then saw zeros there, and the caller
    /// must discard what it computed and read the range again with positional reads.
    pub(crate) fn with_bytes<R>(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<(R, bool)> {
        // The length now, not at open: mapping past the end of a file faults (SIGBUS).
        let now = file.metadata()?.len();
        let avail = len.min(now.saturating_sub(offset));
        if avail == 0 {
            return Ok((f(&[]), false));
        }
        match self.strategy {
            ReadStrategy::Mmap => {
                // SAFETY: the map is read-only and private to this call; the bytes are only read,
                // never kept. If another process truncates the file while it is mapped, touching
                // the lost pages raises SIGBUS, which `sigbus::guard` turns into a flag (the
                // page reads as zeros) instead of a dead process; concurrent writes can only
                // change the bytes we read, which verification then reports, exactly as a
                // read() racing a write would.
                let map = unsafe {
                    memmap2::MmapOptions::new()
                        .offset(offset)
                        .len(avail as usize)
                        .map(file)?
                };
                // Sequential read-ahead; the kernel may ignore it, which is harmless.
                let _ = map.advise(memmap2::Advice::Sequential);
                Ok(crate::sigbus::guard(map.as_ptr(), map.len(), || f(&map)))
            }
            ReadStrategy::Pread => {
                let want = avail as usize;
                if self.buf.len() < want {
                    self.buf.resize(want, 0);
                }
                let buf = self.buf.get_mut(..want).unwrap_or_default();
                let n = pread_fully(file, offset, buf)?;
                Ok((f(buf.get(..n).unwrap_or_default()), false))
            }
        }
    }
}

/// Opens a file for reading without blocking on a FIFO that replaced it since the walk, and,
/// when `nofollow`, without following a symbolic link that replaced it.
pub(crate) fn open_for_scan(path: &std::path::Path, nofollow: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
}
