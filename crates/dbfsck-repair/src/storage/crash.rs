//! A crashable in-memory [`Storage`] for tests, after redb's `CrashBackend`: it keeps each file's
//! live image (what reads see) and its durable image (what an fsync made safe), counts every
//! write, truncate, create and fsync, and at a chosen operation "loses power". The image that
//! survives is the durable one plus, depending on the [`CrashPolicy`], pieces of the writes that
//! were not yet synced, torn at 512-byte sector granularity.
//!
//! Files created here exist at once (directory entries are not modelled as volatile): the
//! protocols under test fsync the directory after creating a file anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::{Storage, StorageFile};
use dbfsck_core::FileId;

/// The unit a write can tear at: one disk sector.
pub const SECTOR: u64 = 512;

/// What survives of the writes that were not synced when the power went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPolicy {
    /// Unsynced writes are dropped, except the one in flight, of which a random subset of its
    /// sectors reaches the disk.
    TearInFlight,
    /// Every unsynced write is independently dropped, kept whole, or torn at sectors: the disk
    /// may persist pending writes in any order and any part.
    Chaos,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct MemFile {
    /// The identity of the real file it was loaded from; none for files made here.
    id: Option<FileId>,
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Operations since the last sync; the bool marks the one in flight at the crash.
    pending: Vec<(Pending, bool)>,
}

#[derive(Debug, Default)]
struct Disk {
    files: BTreeMap<PathBuf, MemFile>,
    dirs: BTreeSet<PathBuf>,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    locked: BTreeSet<PathBuf>,
}

impl Disk {
    /// Counts one mutating operation: `Ok(true)` when it is the crash point (the operation is
    /// in flight when the power goes), `Err` after the crash.
    fn tick(&mut self) -> io::Result<bool> {
        if self.crashed {
            return Err(crashed());
        }
        self.ops += 1;
        if self.crash_at == Some(self.ops) {
            self.crashed = true;
            return Ok(true);
        }
        Ok(false)
    }
}

fn crashed() -> io::Error {
    io::Error::other("simulated power loss")
}

/// An in-memory disk that can crash. Clones share the same disk.
#[derive(Debug, Clone, Default)]
pub struct CrashStorage {
    disk: Arc<Mutex<Disk>>,
}

impl CrashStorage {
    /// An empty disk that does not crash until [`CrashStorage::crash_at`] is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every regular file under `root` (recursively) as durable content.
    pub fn load_dir(root: &Path) -> io::Result<Self> {
        let storage = Self::new();
        {
            let mut disk = storage.lock();
            let mut stack = vec![root.to_path_buf()];
            while let Some(dir) = stack.pop() {
                disk.dirs.insert(dir.clone());
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?;
                    let t = entry.file_type()?;
                    if t.is_dir() {
                        stack.push(entry.path());
                    } else if t.is_file() {
                        let bytes = std::fs::read(entry.path())?;
                        let id = Some(FileId::of(&entry.metadata()?));
                        disk.files.insert(
                            entry.path(),
                            MemFile {
                                id,
                                live: bytes.clone(),
                                durable: bytes,
                                pending: Vec::new(),
                            },
                        );
                    }
                }
            }
        }
        Ok(storage)
    }

    /// Crash at the `n`th mutating operation from now (1 = the next one): that operation is in
    /// flight when the power goes, and it and every later operation fail.
    pub fn crash_at(&self, n: u64) {
        let mut disk = self.lock();
        disk.crash_at = Some(disk.ops + n);
    }

    /// Mutating operations (writes, truncates, creates, syncs) so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether the crash point was reached.
    pub fn has_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Marks a file as locked by another process, so `try_lock` reports it busy.
    pub fn lock_by_other(&self, path: &Path) {
        self.lock().locked.insert(path.to_path_buf());
    }

    /// The live bytes of a file (what reads see now).
    pub fn live(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|f| f.live.clone())
    }

    /// The files after a power loss now: the durable image plus what `policy` lets survive of
    /// the unsynced writes, drawn with `seed`.
    pub fn after_crash(&self, policy: CrashPolicy, seed: u64) -> BTreeMap<PathBuf, Vec<u8>> {
        let disk = self.lock();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut out = BTreeMap::new();
        for (path, f) in &disk.files {
            let mut image = f.durable.clone();
            for (op, in_flight) in &f.pending {
                let fate = match policy {
                    CrashPolicy::TearInFlight if *in_flight => Fate::Torn,
                    CrashPolicy::TearInFlight => Fate::Dropped,
                    CrashPolicy::Chaos => match rng.next_u32() % 3 {
                        0 => Fate::Dropped,
                        1 => Fate::Whole,
                        _ => Fate::Torn,
                    },
                };
                apply(&mut image, op, fate, &mut rng);
            }
            out.insert(path.clone(), image);
        }
        out
    }

    /// Writes [`CrashStorage::after_crash`] to the real file system (the paths as loaded),
    /// creating missing directories.
    pub fn write_after_crash(&self, policy: CrashPolicy, seed: u64) -> io::Result<()> {
        for (path, bytes) in self.after_crash(policy, seed) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Dropped,
    Whole,
    Torn,
}

fn apply(image: &mut Vec<u8>, op: &Pending, fate: Fate, rng: &mut Xoshiro256PlusPlus) {
    match (op, fate) {
        (_, Fate::Dropped) => {}
        (Pending::SetLen(len), _) => image.resize(*len as usize, 0),
        (Pending::Write { offset, data }, Fate::Whole) => put(image, *offset, data),
        (Pending::Write { offset, data }, Fate::Torn) => {
            // Each sector the write covers persists, or not, on its own.
            let end = offset + data.len() as u64;
            let mut at = *offset;
            while at < end {
                let stop = ((at / SECTOR + 1) * SECTOR).min(end);
                if rng.next_u32().is_multiple_of(2) {
                    let lo = (at - offset) as usize;
                    let hi = (stop - offset) as usize;
                    put(image, at, data.get(lo..hi).unwrap_or_default());
                }
                at = stop;
            }
        }
    }
}

fn put(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    if let Some(dst) = image.get_mut(offset as usize..end) {
        dst.copy_from_slice(data);
    }
}

/// An open file of a [`CrashStorage`].
#[derive(Debug)]
pub struct CrashFile {
    storage: CrashStorage,
    path: PathBuf,
}

impl CrashFile {
    fn with<T>(&self, f: impl FnOnce(&mut Disk, &Path) -> io::Result<T>) -> io::Result<T> {
        let mut disk = self.storage.lock();
        f(&mut disk, &self.path)
    }
}

fn file_mut<'a>(disk: &'a mut Disk, path: &Path) -> io::Result<&'a mut MemFile> {
    disk.files
        .get_mut(path)
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
}

impl StorageFile for CrashFile {
    fn len(&self) -> io::Result<u64> {
        self.with(|d, p| {
            if d.crashed {
                return Err(crashed());
            }
            Ok(file_mut(d, p)?.live.len() as u64)
        })
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|d, p| {
            if d.crashed {
                return Err(crashed());
            }
            let f = file_mut(d, p)?;
            let start = (offset as usize).min(f.live.len());
            let n = buf.len().min(f.live.len() - start);
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), f.live.get(start..start + n)) {
                dst.copy_from_slice(src);
            }
            Ok(n)
        })
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|d, p| {
            let in_flight = d.tick()?;
            let f = file_mut(d, p)?;
            let op = Pending::Write {
                offset,
                data: buf.to_vec(),
            };
            f.pending.push((op, in_flight));
            if in_flight {
                return Err(crashed());
            }
            put(&mut f.live, offset, buf);
            Ok(())
        })
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.with(|d, p| {
            let in_flight = d.tick()?;
            let f = file_mut(d, p)?;
            f.pending.push((Pending::SetLen(len), in_flight));
            if in_flight {
                return Err(crashed());
            }
            f.live.resize(len as usize, 0);
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        self.with(|d, p| {
            if d.tick()? {
                return Err(crashed());
            }
            let f = file_mut(d, p)?;
            f.durable = f.live.clone();
            f.pending.clear();
            Ok(())
        })
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.with(|d, p| Ok(!d.locked.contains(p)))
    }

    fn id(&self) -> io::Result<Option<FileId>> {
        self.with(|d, p| Ok(file_mut(d, p)?.id))
    }

    fn meta(&self) -> io::Result<Option<super::FileMeta>> {
        Ok(None)
    }
}

impl Storage for CrashStorage {
    type File = CrashFile;

    fn open_read(&self, path: &Path) -> io::Result<CrashFile> {
        self.open_rw(path)
    }

    fn open_rw(&self, path: &Path) -> io::Result<CrashFile> {
        let disk = self.lock();
        if disk.crashed {
            return Err(crashed());
        }
        if !disk.files.contains_key(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(CrashFile {
            storage: self.clone(),
            path: path.to_path_buf(),
        })
    }

    fn create_new(&self, path: &Path) -> io::Result<CrashFile> {
        let mut disk = self.lock();
        if disk.files.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        if disk.tick()? {
            return Err(crashed());
        }
        disk.files.insert(path.to_path_buf(), MemFile::default());
        Ok(CrashFile {
            storage: self.clone(),
            path: path.to_path_buf(),
        })
    }

    fn create_dir_private(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        if disk.crashed {
            return Err(crashed());
        }
        disk.dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        if self.lock().tick()? {
            return Err(crashed());
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        if disk.tick()? {
            return Err(crashed());
        }
        let f = disk
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let disk = self.lock();
        disk.files.contains_key(path) || disk.dirs.contains(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<(Vec<PathBuf>, usize)> {
        let disk = self.lock();
        if disk.crashed {
            return Err(crashed());
        }
        let files = disk
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect();
        Ok((files, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_writes_survive_and_the_in_flight_write_tears_at_sectors() {
        let s = CrashStorage::new();
        let p = Path::new("/x");
        let mut f = s.create_new(p).unwrap();
        f.write_all_at(&[1u8; 2048], 0).unwrap();
        f.sync().unwrap();
        f.write_all_at(&[2u8; 2048], 0).unwrap(); // unsynced: dropped under TearInFlight
        s.crash_at(1);
        assert!(f.write_all_at(&[3u8; 2048], 0).is_err());
        assert!(f.sync().is_err(), "everything fails after the crash");
        let mut seen_torn = false;
        for seed in 0..32 {
            let img = &s.after_crash(CrashPolicy::TearInFlight, seed)[p];
            assert_eq!(img.len(), 2048);
            for sector in img.chunks(512) {
                assert!(sector.iter().all(|&b| b == sector[0]), "a sector is atomic");
                assert!(
                    sector[0] == 1 || sector[0] == 3,
                    "unsynced write 2 is dropped"
                );
            }
            seen_torn |= img.chunks(512).any(|s| s[0] == 1) && img.chunks(512).any(|s| s[0] == 3);
        }
        assert!(seen_torn);
    }
}
