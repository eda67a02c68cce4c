//! How bytes are read: memory maps (memmap2, private to this crate, one bounded window per
//! thread at a time) or positional reads into a reused buffer.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::format::FileSource;

/// How the engine reads file bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadStrategy {
    /// Chooses between maps and positional reads as the scan goes (default): which is faster
    /// depends on the page cache's folio sizes and on memory pressure, so the engine times both
    /// on the scan's own pieces and keeps to the cheaper, trying the other now and then.
    #[default]
    Auto,
    /// Map each chunk read-only (`--mmap`). Memory stays bounded because each thread maps one
    /// chunk at a time and unmaps it when done.
    Mmap,
    /// Positional reads (`pread`) into one reused buffer per thread (`--no-mmap`).
    Pread,
}

/// The way one piece is actually read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadPath {
    /// A read-only map of the piece.
    Map,
    /// Positional reads into the thread's buffer, at most [`READ_WINDOW`] at a time.
    Read,
}

impl ReadPath {
    fn index(self) -> usize {
        match self {
            ReadPath::Map => 0,
            ReadPath::Read => 1,
        }
    }

    fn other(self) -> ReadPath {
        match self {
            ReadPath::Map => ReadPath::Read,
            ReadPath::Read => ReadPath::Map,
        }
    }
}

/// The most one positional read of [`ReadStrategy::Auto`] brings in: small enough that the
/// buffer stays in the CPU's cache while it is hashed (16 MiB reads measured 2–3× slower).
pub(crate) const READ_WINDOW: u64 = crate::engine::DEFAULT_CHUNK_SIZE;

/// Pieces smaller than this are always read, never mapped: a map's set-up and tear-down cost
/// more than copying so few bytes.
pub(crate) const MIN_MAPPED: u64 = 1 << 20;

/// Pieces handed out per epoch while a path is tried.
const TRY_PIECES: u32 = 4;

/// Maps are preferred only when they cost less than this fraction of reads.
const MAP_MARGIN: f64 = 0.9;

/// Epochs of each path tried before the cheaper one is trusted.
const WARMUP: u32 = 2;

/// Pieces handed out per epoch on the cheaper path between two tries of the other, at first:
/// a change (memory pressure starting, the page cache's folios growing) is noticed within
/// 1 GiB. Each try that confirms the choice doubles it, up to [`MAX_KEEP_PIECES`] (4 GiB), so
/// that a long scan spends little on tries; a try that changes the choice starts over.
const KEEP_PIECES: u32 = 64;
const MAX_KEEP_PIECES: u32 = 256;

/// Which path [`ReadStrategy::Auto`] uses, chosen by epochs: every thread reads one way for a
/// number of pieces, and the epoch's cost is the wall time from its first piece handed out to
/// the next epoch's, per byte handed out. Wall time across all threads, not each piece's own
/// time: a map's unmapping interrupts the other threads (TLB shootdowns), which only a scan
/// that reads one way on every thread at once pays or avoids (timing each piece alone favoured
/// maps where reads were 15 % faster).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Epochs {
    /// The path of the current epoch.
    path: Option<ReadPath>,
    /// Pieces left to hand out in it, of how many.
    left: u32,
    pieces: u32,
    /// When its first piece was handed out, in nanoseconds on the chooser's clock.
    started: Option<u64>,
    /// Bytes handed out in it (small pieces, always read, included: their time is in it too).
    bytes: u64,
    /// Whether it keeps to the cheaper path (rather than trying one).
    keeping: bool,
    /// The length of the next keeping epoch (0: [`KEEP_PIECES`]).
    keep: u32,
    /// The cheaper path when the current try began.
    before_try: Option<ReadPath>,
    /// Nanoseconds per byte, a moving average, per [`ReadPath::index`].
    ns_per_byte: [f64; 2],
    /// Epochs measured, per path.
    measured: [u32; 2],
}

impl Epochs {
    /// The path for the next piece of `len` bytes, handed out at `now` (nanoseconds).
    pub(crate) fn pick(&mut self, now: u64, len: u64) -> ReadPath {
        if len < MIN_MAPPED {
            self.bytes = self.bytes.saturating_add(len);
            return ReadPath::Read;
        }
        if self.left == 0 || self.path.is_none() {
            self.next_epoch(now);
        }
        if self.started.is_none() {
            self.started = Some(now);
        }
        self.left = self.left.saturating_sub(1);
        self.bytes = self.bytes.saturating_add(len);
        self.path.unwrap_or(ReadPath::Map)
    }

    /// Closes the current epoch (recording its cost) and opens the next.
    fn next_epoch(&mut self, now: u64) {
        if let (Some(path), Some(t0)) = (self.path, self.started.take()) {
            if self.bytes > 0 {
                let cost = now.saturating_sub(t0) as f64 / self.bytes as f64;
                let i = path.index();
                if let (Some(avg), Some(n)) =
                    (self.ns_per_byte.get_mut(i), self.measured.get_mut(i))
                {
                    // Weighted by the epoch's length: a long epoch on the kept path is itself
                    // an average and nearly replaces what was known (so a change is followed
                    // at once); a short try counts half, so one slowed by other work does not
                    // flip the choice on its own.
                    let w = f64::from(self.pieces) / f64::from(self.pieces + TRY_PIECES);
                    *avg = if *n == 0 {
                        cost
                    } else {
                        *avg * (1.0 - w) + cost * w
                    };
                    *n = n.saturating_add(1);
                }
            }
        }
        self.bytes = 0;
        let [maps, reads] = self.measured;
        let (path, left, keeping) = if maps < WARMUP || reads < WARMUP {
            // Reads first: a short scan reads, the path that is never far from the floor.
            let path = if maps < reads {
                ReadPath::Map
            } else {
                ReadPath::Read
            };
            (path, TRY_PIECES, false)
        } else {
            let best = self.preferred().unwrap_or(ReadPath::Map);
            if self.keeping {
                self.before_try = Some(best);
                (best.other(), TRY_PIECES, false)
            } else {
                // After the warm-up or a try: keep, longer each time the try confirmed.
                self.keep = match self.before_try.take() {
                    Some(b) if b == best => self.keep.max(KEEP_PIECES / 2) * 2,
                    _ => KEEP_PIECES,
                }
                .min(MAX_KEEP_PIECES);
                (best, self.keep, true)
            }
        };
        self.path = Some(path);
        self.left = left;
        self.pieces = left;
        self.keeping = keeping;
    }

    /// The cheaper path, once each was measured [`WARMUP`] times. Maps must be clearly cheaper:
    /// part of their cost (small folios faulted in 4 KiB at a time, page tables torn down)
    /// falls outside the epochs that pay it, and reads are never far from the floor.
    pub(crate) fn preferred(&self) -> Option<ReadPath> {
        let warm = self.measured.iter().all(|&n| n >= WARMUP);
        let [m, r] = self.ns_per_byte;
        warm.then_some(if m < r * MAP_MARGIN {
            ReadPath::Map
        } else {
            ReadPath::Read
        })
    }
}

/// The epochs of one scan, shared by its threads.
#[derive(Debug)]
pub(crate) struct Chooser {
    origin: std::time::Instant,
    epochs: std::sync::Mutex<Epochs>,
}

impl Default for Chooser {
    fn default() -> Self {
        Chooser {
            origin: std::time::Instant::now(),
            epochs: std::sync::Mutex::new(Epochs::default()),
        }
    }
}

impl Chooser {
    /// Counts `len` bytes read outside the choice (a piece that must be mapped) in the epoch.
    fn count(&self, len: u64) {
        let mut e = self
            .epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        e.bytes = e.bytes.saturating_add(len);
    }

    fn pick(&self, len: u64) -> ReadPath {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // A poisoned lock only means another thread panicked mid-update of plain numbers.
        self.epochs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pick(now, len)
    }
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

/// One thread's reader: the strategy, its reused buffer, and the scan's shared costs.
pub(crate) struct Reader {
    strategy: ReadStrategy,
    buf: Vec<u8>,
    chooser: Option<std::sync::Arc<Chooser>>,
}

impl Reader {
    pub(crate) fn new(strategy: ReadStrategy) -> Self {
        Reader {
            strategy,
            buf: Vec::new(),
            chooser: None,
        }
    }

    /// A reader whose [`ReadStrategy::Auto`] choices are learned with every other reader of
    /// the same `chooser`.
    pub(crate) fn shared(strategy: ReadStrategy, chooser: std::sync::Arc<Chooser>) -> Self {
        Reader {
            chooser: Some(chooser),
            ..Reader::new(strategy)
        }
    }

    /// How to read a piece of `len` bytes that may be cut only every `align` bytes, and the
    /// most to read at once (`None`: the whole piece in one go).
    pub(crate) fn path_for(&self, len: u64, align: u64) -> (ReadPath, Option<u64>) {
        match self.strategy {
            ReadStrategy::Mmap => (ReadPath::Map, None),
            ReadStrategy::Pread => (ReadPath::Read, None),
            // Units larger than a read window (a WAL segment, judged whole) cannot be read in
            // windows: a buffer that large leaves the CPU's cache, so they are mapped.
            ReadStrategy::Auto if align > READ_WINDOW && len >= MIN_MAPPED => {
                // Its time falls in the current epoch whatever it is: its bytes count too.
                if let Some(c) = &self.chooser {
                    c.count(len);
                }
                (ReadPath::Map, None)
            }
            ReadStrategy::Auto => {
                let path = match &self.chooser {
                    Some(c) => c.pick(len),
                    None if len < MIN_MAPPED => ReadPath::Read,
                    None => ReadPath::Map,
                };
                (path, (path == ReadPath::Read).then_some(READ_WINDOW))
            }
        }
    }

    /// Calls `f` with the bytes of `[offset, offset + len)` of `file` read by `path`, or with
    /// fewer when the file is now shorter (it shrank since it was opened). The slice never
    /// outlives the call. The flag is true when a page of a map could not be read while `f` ran
    /// (SIGBUS: the file was truncated under the map, or a media error): `f` then saw zeros
    /// there, and the caller must discard what it computed and read the range again with
    /// positional reads.
    pub(crate) fn with_bytes<R>(
        &mut self,
        path: ReadPath,
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
        match path {
            ReadPath::Map => {
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
            ReadPath::Read => {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    /// Hands out `pieces` 16 MiB pieces, one after another on one clock, each costing `map` or
    /// `read` nanoseconds per byte by path; returns the paths.
    fn run(e: &mut Epochs, clock: &mut u64, pieces: usize, map: u64, read: u64) -> Vec<ReadPath> {
        (0..pieces)
            .map(|_| {
                let p = e.pick(*clock, MIB16);
                *clock += MIB16 * if p == ReadPath::Map { map } else { read };
                p
            })
            .collect()
    }

    #[test]
    fn auto_tries_both_paths_then_keeps_the_cheaper() {
        for (map, read, best) in [(1, 3, ReadPath::Map), (3, 1, ReadPath::Read)] {
            let (mut e, mut clock) = (Epochs::default(), 0);
            let paths = run(&mut e, &mut clock, 1000, map, read);
            let warmup = (2 * WARMUP * TRY_PIECES) as usize;
            let (first, rest) = paths.split_at(warmup);
            // Warm-up: epochs alternate, reads first.
            assert!(first
                .chunks(TRY_PIECES as usize)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&p| p
                    == if i % 2 == 0 {
                        ReadPath::Read
                    } else {
                        ReadPath::Map
                    })));
            let other = rest.iter().filter(|&&p| p != best).count();
            // Only the tries go the other way, after keeping 64, 128, 256, 256… pieces.
            let tries = [64, 128, 256, 256, 256].len();
            assert_eq!(other, tries * TRY_PIECES as usize, "{map} {read}");
            assert_eq!(e.preferred(), Some(best));
        }
    }

    #[test]
    fn auto_follows_a_change_in_costs() {
        let (mut e, mut clock) = (Epochs::default(), 0);
        run(&mut e, &mut clock, 300, 1, 3);
        assert_eq!(e.preferred(), Some(ReadPath::Map));
        // Maps become slow (memory pressure, small folios): after the next try, reads.
        let paths = run(&mut e, &mut clock, 600, 5, 3);
        let first_read = paths
            .iter()
            .position(|&p| p == ReadPath::Read)
            .unwrap_or(600);
        assert!(first_read <= MAX_KEEP_PIECES as usize, "{first_read}");
        assert_eq!(e.preferred(), Some(ReadPath::Read));
        let tail = paths.get(paths.len() - 300..).unwrap_or_default();
        assert!(tail.iter().filter(|&&p| p == ReadPath::Read).count() >= 300 * 8 / 10);
    }

    #[test]
    fn maps_must_be_clearly_cheaper() {
        let (mut e, mut clock) = (Epochs::default(), 0);
        run(&mut e, &mut clock, 300, 19, 20);
        assert_eq!(
            e.preferred(),
            Some(ReadPath::Read),
            "5 % cheaper is not enough"
        );
        run(&mut e, &mut clock, 600, 15, 20);
        assert_eq!(e.preferred(), Some(ReadPath::Map), "25 % cheaper is");
    }

    #[test]
    fn one_slow_epoch_does_not_flip_the_choice_for_long() {
        let (mut e, mut clock) = (Epochs::default(), 0);
        run(&mut e, &mut clock, 300, 10, 13);
        assert_eq!(e.preferred(), Some(ReadPath::Map));
        // Something else ran for one epoch of maps: it may try reads; it comes back.
        run(&mut e, &mut clock, KEEP_PIECES as usize, 30, 13);
        let paths = run(&mut e, &mut clock, 600, 10, 13);
        assert_eq!(e.preferred(), Some(ReadPath::Map));
        let tail = paths.get(400..).unwrap_or_default();
        assert!(tail.iter().filter(|&&p| p == ReadPath::Map).count() >= 200 * 8 / 10);
    }

    #[test]
    fn small_pieces_are_read_and_counted_in_the_epoch() {
        let mut e = Epochs::default();
        assert_eq!(e.pick(0, MIN_MAPPED - 1), ReadPath::Read);
        assert_eq!(e.path, None, "a small piece opens no epoch");
        assert_eq!(e.pick(0, MIB16), ReadPath::Read);
        e.pick(0, MIN_MAPPED - 1);
        assert_eq!(e.bytes, MIB16 + MIN_MAPPED - 1);
        assert_eq!(
            e.left,
            TRY_PIECES - 1,
            "only large pieces count toward the epoch"
        );
    }

    #[test]
    fn forced_strategies_never_consult_the_chooser() {
        let chooser = std::sync::Arc::new(Chooser::default());
        for (strategy, path) in [
            (ReadStrategy::Mmap, ReadPath::Map),
            (ReadStrategy::Pread, ReadPath::Read),
        ] {
            let reader = Reader::shared(strategy, chooser.clone());
            assert_eq!(reader.path_for(MIB16, 8192), (path, None));
            assert_eq!(reader.path_for(4096, 8192), (path, None));
        }
        let untouched = chooser
            .epochs
            .lock()
            .map(|e| *e == Epochs::default())
            .unwrap_or(false);
        assert!(untouched);
        let auto = Reader::shared(ReadStrategy::Auto, chooser);
        assert_eq!(
            auto.path_for(MIB16, 8192),
            (ReadPath::Read, Some(READ_WINDOW))
        );
        assert_eq!(
            auto.path_for(4096, 8192),
            (ReadPath::Read, Some(READ_WINDOW))
        );
        // A unit larger than a read window (a whole WAL segment) is mapped, and its bytes count
        // in the epoch its time falls in.
        let bytes = |c: &Chooser| c.epochs.lock().map(|e| e.bytes).unwrap_or_default();
        let before = auto.chooser.as_deref().map_or(0, bytes);
        assert_eq!(auto.path_for(MIB16, MIB16), (ReadPath::Map, None));
        assert_eq!(auto.chooser.as_deref().map_or(0, bytes), before + MIB16);
    }
}
