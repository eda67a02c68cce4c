//! RocksDB and LevelDB (docs/rocksdb.md): one module, two formats (`rocksdb`, `leveldb`) that
//! differ in their compression codes and directory markers.
//!
//! A database directory (`CURRENT`, `MANIFEST-*`) is listed from its MANIFEST: the live
//! tables, the WALs that still hold unflushed writes, the MANIFEST itself; everything else is
//! skipped with its reason. Tables are verified block by block, in parallel from their own
//! index ([`sst`]); logs record by record ([`wal`]), with a cut tail of the newest WAL told
//! apart from damage to synced data.

pub mod blob;
pub mod edit;
pub mod log;
pub mod salvage;
pub mod sst;
pub mod table;
pub mod wal;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::finding::{Finding, FindingKind, Owner};
use crate::format::{Conclusion, DirListing, FileSource, Format, OpenError, Opened, Probe};
use table::Engine;

/// A little-endian u32 at `at`, 0 where the bytes run out (callers check lengths first).
pub(crate) fn fixed32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// A little-endian u64 at `at`, 0 where the bytes run out.
pub(crate) fn fixed64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Appends `v` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A reader of varints and length-prefixed slices that never reads past its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn varint64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn varint32(&mut self) -> Option<u32> {
        u32::try_from(self.varint64()?).ok()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    pub(crate) fn slice(&mut self) -> Option<&'a [u8]> {
        let n = self.varint32()? as usize;
        self.take(n)
    }
}

/// The number in a file name `NNNNNN.ext` or `MANIFEST-NNNNNN`.
pub fn file_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name
        .strip_prefix("MANIFEST-")
        .or_else(|| name.rsplit_once('.').map(|(n, _)| n))?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What a file of a LevelDB/RocksDB directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `NNNNNN.sst` or `NNNNNN.ldb`.
    Table,
    /// `NNNNNN.log`.
    Wal,
    /// `MANIFEST-NNNNNN`.
    Manifest,
    /// `NNNNNN.blob`.
    Blob,
}

/// The role a file name gives (`*.sst`, `*.ldb`, `*.log`, `*.blob`, `MANIFEST-*`; a database
/// names them by number, a copy named alone may be called anything with that ending).
pub fn role(path: &Path) -> Option<Role> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with("MANIFEST-") {
        return Some(Role::Manifest);
    }
    match name.rsplit_once('.')?.1 {
        "sst" | "ldb" => Some(Role::Table),
        "log" => Some(Role::Wal),
        "blob" => Some(Role::Blob),
        _ => None,
    }
}

/// A key shown both ways: printable (bytes outside ASCII graphics escaped as `\xNN`) and hex.
pub(crate) fn key_json(
    map: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    key: &[u8],
) {
    map.insert(name.into(), printable(key).into());
    map.insert(format!("{name}_hex"), hex(key).into());
}

/// A key with every byte that is not a printable ASCII character escaped as `\xNN`.
pub fn printable(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_graphic() || b == b' ' {
            if b == b'\\' {
                s.push('\\');
            }
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// " from K1 to K2" for a detail sentence.
pub(crate) fn range_phrase(from: Option<&[u8]>, to: Option<&[u8]>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!(
            " (from {} to {}, both included as bounds)",
            printable(a),
            printable(b)
        ),
        (Some(a), None) => format!(" (from {} on)", printable(a)),
        (None, Some(b)) => format!(" (up to {})", printable(b)),
        (None, None) => String::new(),
    }
}

/// What was learnt about one database directory from its CURRENT and MANIFEST.
#[derive(Debug, Default)]
struct Db {
    engine: Option<Engine>,
    /// The MANIFEST CURRENT names (or the newest present when CURRENT is unusable).
    manifest: Option<PathBuf>,
    /// Its edits applied.
    version: Option<edit::Manifest>,
    /// Live tables by number.
    tables: BTreeMap<u64, sst::TableLive>,
    /// Tables on disk, not live, numbered at or beyond the MANIFEST's next file number, whose
    /// footer is intact (finished tables the MANIFEST does not know).
    ahead: Vec<u64>,
    /// Such tables without a footer: outputs a crash interrupted.
    unfinished: Vec<u64>,
    /// Obsolete tables (not live, numbered below the next file number) whose keys lie outside
    /// every live table's key range: keys the live set lacks, deleted at the next open.
    lonely: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    /// Whether the MANIFEST ends in a cut record.
    manifest_cut: bool,
    /// The newest live WAL on disk.
    newest_wal: Option<u64>,
    /// Findings about the directory as a whole (CURRENT, missing live files), emitted once.
    findings: Vec<Finding>,
    /// The live WALs' sequence ranges, as they are verified.
    wal_seqs: wal::SeqLog,
}

/// The shared implementation of the `rocksdb` and `leveldb` formats.
#[derive(Debug)]
struct Lsm {
    engine: Engine,
    dbs: Mutex<HashMap<PathBuf, Arc<Db>>>,
}

impl Lsm {
    fn new(engine: Engine) -> Self {
        Lsm {
            engine,
            dbs: Mutex::new(HashMap::new()),
        }
    }

    fn name(&self) -> &'static str {
        match self.engine {
            Engine::Rocksdb => "rocksdb",
            Engine::Leveldb => "leveldb",
        }
    }

    /// The directory's facts, read once per scan (a file named alone in a database directory
    /// is judged with them too).
    fn db(&self, dir: &Path) -> Option<Arc<Db>> {
        if !is_db_dir(dir) {
            return None;
        }
        let mut dbs = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            dbs.entry(dir.to_path_buf())
                .or_insert_with(|| Arc::new(load(dir)))
                .clone(),
        )
    }

    fn detect_dir(&self, dir: &Path) -> bool {
        is_db_dir(dir) && flavour(dir) == self.engine
    }

    fn list_dir(&self, dir: &Path) -> DirListing {
        let db = self.db(dir).unwrap_or_default();
        let mut l = DirListing::default();
        // A MANIFEST the engines cannot open a database from names no live set: every table
        // and WAL is checked (its own finding says why).
        let version = db
            .version
            .as_ref()
            .map(|m| &m.version)
            .filter(|v| v.usable());
        let min_log = version.map_or(0, edit::Version::min_live_log);
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                l.errors
                    .push((dir.to_path_buf(), format!("cannot list the directory: {e}")));
                return l;
            }
        };
        let mut names: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_dir = fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
            let skip = |why: String, l: &mut DirListing| l.skipped.push((p.clone(), why));
            if is_dir {
                let why = match name.as_str() {
                    "lost" => "files RepairDB moved aside: not part of the database".to_owned(),
                    "archive" => "archived WALs (WAL TTL / size limit): their writes are in tables"
                        .to_owned(),
                    _ => "a directory inside the database directory: not a file of the database"
                        .to_owned(),
                };
                skip(why, &mut l);
                continue;
            }
            let number = file_number(&p);
            match (role(&p), number) {
                (Some(Role::Table), Some(n)) => {
                    if version.is_none() || db.tables.contains_key(&n) {
                        l.files.push(p);
                    } else if db.unfinished.contains(&n) {
                        skip(format!("an unfinished table (no footer) numbered at or beyond the MANIFEST's next file number ({}): the output of a flush or compaction a crash interrupted, never part of the database; the engine deletes it on the next open", version.map_or(0, |v| v.next_file)), &mut l);
                    } else if db.ahead.contains(&n) {
                        let next = version.map_or(0, |v| v.next_file);
                        let why = if db.manifest_cut {
                            format!("table {n:06} is not in the MANIFEST, its number is at or beyond the MANIFEST's next file number ({next}), and the MANIFEST ends in a cut record: the edit that added it is likely the one lost. RocksDB and LevelDB delete it on the next read-write open, with every key only it holds. It is checked; save it before any read-write open")
                        } else {
                            format!("table {n:06} is finished but not in the MANIFEST, numbered at or beyond its next file number ({next}): the output of a flush or compaction whose MANIFEST edit was never written (a crash), whose keys are still in the WALs or the compaction's inputs; the engine deletes it on the next read-write open. It is checked")
                        };
                        l.warnings.push((p.clone(), why));
                        l.files.push(p);
                    } else {
                        if let Some((lo, hi)) = db.lonely.get(&n) {
                            l.warnings.push((p.clone(), format!("table {n:06} is not in the MANIFEST, yet its keys ({} to {}) lie outside every live table's key range: the live set lacks them, and RocksDB and LevelDB delete this table on the next read-write open — save it before any read-write open (a lost MANIFEST edit, or a table copied in by hand)", printable(lo), printable(hi))));
                        }
                        skip("obsolete: not in the MANIFEST (a compaction's input or an unfinished output); RocksDB and LevelDB delete it on the next read-write open".into(), &mut l);
                    }
                }
                (Some(Role::Wal), Some(n)) => {
                    if n >= min_log || version.is_none() {
                        l.files.push(p);
                    } else {
                        skip(format!("obsolete WAL: numbered below the MANIFEST's log number {min_log}, so every write in it is in tables; the engine deletes it"), &mut l);
                    }
                }
                (Some(Role::Manifest), _) => {
                    if db.manifest.as_deref() == Some(p.as_path()) {
                        l.files.push(p);
                    } else {
                        skip("a MANIFEST that CURRENT does not name: an older one, not read by the engine".into(), &mut l);
                    }
                }
                (Some(Role::Blob), n) => {
                    if version.is_none()
                        || n.is_some_and(|n| version.is_some_and(|v| v.blobs.contains_key(&n)))
                    {
                        l.files.push(p);
                    } else {
                        skip("obsolete blob file: not live in the MANIFEST (all its blobs are garbage, or it was never recorded); the engine deletes it".into(), &mut l);
                    }
                }
                _ => {
                    let why = match name.as_str() {
                        "CURRENT" => "names the live MANIFEST (read to list the database; it has no checksum)",
                        "LOCK" => "the engine's lock file (empty)",
                        "IDENTITY" => "the database's id (text, no checksum)",
                        n if n.starts_with("OPTIONS-") || n.starts_with("OPTIONS") => "the options the database was opened with (text, no checksum)",
                        n if n == "LOG" || n.starts_with("LOG.old") => "the engine's info log (text for people)",
                        n if n.ends_with(".dbtmp") => "a temporary file (a CURRENT being replaced)",
                        _ => "not a file of the database",
                    };
                    skip(why.into(), &mut l);
                }
            }
        }
        if crate::innodb::path::locked_by_another_process(&dir.join("LOCK")) {
            l.live = true;
            l.warnings.push((dir.join("LOCK"), "the database is open (a process holds its LOCK): files being written can look damaged; stop it for a verdict that holds".into()));
        }
        l
    }

    fn open(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let db = self.db(dir);
        let engine = db.as_ref().and_then(|d| d.engine).unwrap_or(
            match path.extension().and_then(|e| e.to_str()) {
                Some("ldb") => Engine::Leveldb,
                _ => self.engine,
            },
        );
        let number = file_number(path);
        match role(path) {
            Some(Role::Table) => {
                let live = db
                    .as_ref()
                    .and_then(|d| number.and_then(|n| d.tables.get(&n)));
                let mut opened = sst::open(path, source, engine, live)?;
                if let Some(l) = live {
                    if l.size != 0 && l.size != source.len() {
                        let (a, b) = (l.size.min(source.len()), l.size.max(source.len()));
                        opened.findings.push(
                            Finding::new(FindingKind::SizeMismatch, a, b - a, format!("the MANIFEST records table {:06} as {} long, it is {}: the engine refuses to open it (\"Sst file size mismatch\")", l.number, crate::bytes(l.size), crate::bytes(source.len())))
                                .checksums(l.size.to_string(), source.len().to_string()),
                        );
                    }
                }
                Ok(opened)
            }
            Some(Role::Wal) => {
                let n = number.unwrap_or(0);
                let live = wal::WalLive {
                    number: n,
                    newest: db
                        .as_ref()
                        .is_none_or(|d| d.newest_wal.is_none_or(|w| w == n)),
                    synced: db
                        .as_ref()
                        .and_then(|d| d.version.as_ref())
                        .and_then(|m| m.version.wals.get(&n))
                        .and_then(|w| w.synced),
                    in_db: db.is_some(),
                };
                Ok(Opened {
                    findings: Vec::new(),
                    check: Some(Box::new(wal::WalCheck::new(
                        path,
                        source.len(),
                        live,
                        db.as_ref().map(|d| d.wal_seqs.clone()),
                    ))),
                    units: 0,
                    recheck_after: None,
                    notes: Vec::new(),
                })
            }
            Some(Role::Blob) => {
                let n = number.unwrap_or(0);
                let recorded = db
                    .as_ref()
                    .and_then(|d| d.version.as_ref())
                    .and_then(|m| m.version.blobs.get(&n).copied());
                let live = blob::BlobLive {
                    number: n,
                    live: recorded.is_some(),
                    count: recorded.map(|(count, _)| count),
                };
                Ok(Opened {
                    findings: Vec::new(),
                    check: Some(Box::new(blob::BlobCheck::new(source.len(), live))),
                    units: 0,
                    recheck_after: None,
                    notes: Vec::new(),
                })
            }
            Some(Role::Manifest) => {
                let len = source.len();
                if len > MAX_MANIFEST {
                    return Ok(Opened::note(format!(
                        "the MANIFEST is {}, more than dbfsck reads ({}): not checked",
                        crate::bytes(len),
                        crate::bytes(MAX_MANIFEST)
                    )));
                }
                let bytes = table::read_exact(source, 0, len)
                    .map_err(|e| OpenError::Io(std::io::Error::other(e.to_string())))?;
                let m = edit::read_manifest(&bytes);
                let ahead = db
                    .as_ref()
                    .filter(|d| d.manifest.as_deref() == Some(path))
                    .map(|d| d.ahead.clone())
                    .unwrap_or_default();
                let mut findings = wal::manifest_findings(&m, len, &ahead);
                let live_tables: Vec<u64> = m.version.tables.keys().copied().collect();
                for f in &mut findings {
                    if f.kind.is_damage() && f.kind != FindingKind::Truncated {
                        let mut o = Owner::new();
                        o.insert("live_tables_before".into(), live_tables.clone().into());
                        f.owner = Some(o);
                    }
                }
                Ok(Opened {
                    findings,
                    check: None,
                    units: m.version.edits,
                    recheck_after: None,
                    notes: Vec::new(),
                })
            }
            _ => Err(OpenError::NotThisFormat {
                format: self.name(),
                reason: "not a table, WAL or MANIFEST by its name".into(),
            }),
        }
    }

    fn conclude(&self) -> Conclusion {
        let dbs = std::mem::take(&mut *self.dbs.lock().unwrap_or_else(|e| e.into_inner()));
        let mut c = Conclusion::default();
        let mut all: Vec<(PathBuf, Arc<Db>)> = dbs.into_iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, db) in all {
            c.findings.extend(db.findings.iter().cloned());
            let seqs = db
                .wal_seqs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let last_flushed = db.version.as_ref().map(|m| m.version.last_sequence);
            // The writes after the last flushed sequence must be in the live WALs, one after
            // the other: a gap is writes in no WAL.
            let mut prev: Option<(u64, u64)> = last_flushed.map(|s| (0, s + 1));
            for (&n, (path, sq)) in &seqs {
                let Some(first) = sq.first else { continue };
                if let Some((p, end)) = prev {
                    if end > 0 && first > end {
                        let after = if p == 0 {
                            "the MANIFEST's last flushed sequence".to_owned()
                        } else {
                            format!("WAL {p:06}")
                        };
                        c.warnings.push((path.clone(), format!(
                            "sequence numbers {end}..={} are in no WAL: WAL {n:06} starts at {first}, after {after} ends at {}; writes made with the WAL disabled (WriteOptions::disableWAL), or WAL records lost (a WAL cut exactly on a record boundary, or deleted) — RocksDB's point-in-time recovery stops at such a gap",
                            first - 1,
                            end - 1
                        )));
                    }
                }
                prev = Some((n, sq.end.max(prev.map_or(0, |p| p.1))));
            }
        }
        c
    }
}

/// Whether another process holds the database's `LOCK` (the engine has it open).
pub fn db_is_open(dir: &Path) -> bool {
    crate::innodb::path::locked_by_another_process(&dir.join("LOCK"))
}

/// The MANIFEST a database directory's `CURRENT` names, when it names one of the directory.
pub fn current_manifest(dir: &Path) -> Option<PathBuf> {
    let b = fs::read(dir.join("CURRENT")).ok()?;
    let name = std::str::from_utf8(&b).ok()?.strip_suffix('\n')?;
    (name.starts_with("MANIFEST-") && !name.contains('/')).then(|| dir.join(name))
}

/// MANIFESTs larger than this are not read (a MANIFEST is rewritten when it grows past
/// `max_manifest_file_size`, 1 GiB by default).
const MAX_MANIFEST: u64 = 1 << 30;

fn is_db_dir(dir: &Path) -> bool {
    dir.join("CURRENT").is_file()
        && fs::read_dir(dir).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
        })
}

/// RocksDB writes `OPTIONS-*` and `IDENTITY`; LevelDB never does.
fn flavour(dir: &Path) -> Engine {
    let rocks = dir.join("IDENTITY").exists()
        || fs::read_dir(dir).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("OPTIONS-"))
        });
    if rocks {
        Engine::Rocksdb
    } else {
        Engine::Leveldb
    }
}

fn load(dir: &Path) -> Db {
    let mut db = Db {
        engine: Some(flavour(dir)),
        ..Db::default()
    };
    let current = dir.join("CURRENT");
    let named = match fs::read(&current) {
        Ok(b) => {
            let text = String::from_utf8_lossy(&b);
            match text.strip_suffix('\n') {
                Some(n)
                    if n.starts_with("MANIFEST-") && !n.contains('/') && dir.join(n).is_file() =>
                {
                    Some(dir.join(n))
                }
                _ => {
                    db.findings.push(
                        Finding::new(FindingKind::BadHeader, 0, b.len() as u64, format!("CURRENT does not name a MANIFEST of this directory followed by a newline ({:?}): the engine refuses to open the database; the newest MANIFEST present is read instead", printable(&b)))
                            .with_file(&current),
                    );
                    None
                }
            }
        }
        Err(e) => {
            db.findings.push(
                Finding::new(
                    FindingKind::IoError,
                    0,
                    0,
                    format!("CURRENT cannot be read: {e}"),
                )
                .with_file(&current),
            );
            None
        }
    };
    let manifest = named.or_else(|| {
        fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| role(p) == Some(Role::Manifest))
            .max_by_key(|p| file_number(p))
    });
    let Some(manifest) = manifest else { return db };
    let m = match fs::metadata(&manifest) {
        Ok(md) if md.len() <= MAX_MANIFEST => {
            fs::read(&manifest).ok().map(|b| edit::read_manifest(&b))
        }
        _ => None,
    };
    db.manifest = Some(manifest);
    let Some(m) = m else { return db };
    if m.version.rocksdb {
        db.engine = Some(Engine::Rocksdb);
    }
    let ext = if db.engine == Some(Engine::Leveldb) {
        "ldb"
    } else {
        "sst"
    };
    let mut on_disk: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut wals = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            match (role(&p), file_number(&p)) {
                (Some(Role::Table), Some(n)) => {
                    on_disk.insert(n, p);
                }
                (Some(Role::Wal), Some(n)) => wals.push(n),
                _ => {}
            }
        }
    }
    let v = &m.version;
    for (&n, t) in &v.tables {
        db.tables.insert(
            n,
            sst::TableLive {
                number: n,
                level: t.level,
                cf: v.cf_name(t.cf),
                size: t.size,
                smallest: table::user_key(&t.smallest).to_vec(),
                largest: table::user_key(&t.largest).to_vec(),
            },
        );
        if !on_disk.contains_key(&n) {
            // LevelDB's older tables are `.sst`; both names are looked for.
            let path = dir.join(format!("{n:06}.{ext}"));
            db.findings.push(
                Finding::new(FindingKind::MissingFile, 0, t.size, format!("table {n:06} (level {}, column family {}) is live in the MANIFEST but not in the directory: the engine refuses to open the database, and the keys it held ({} to {}) are lost", t.level, v.cf_name(t.cf), printable(table::user_key(&t.smallest)), printable(table::user_key(&t.largest))))
                    .with_file(&path),
            );
        }
    }
    if v.next_file > 0 {
        for (&n, p) in &on_disk {
            if v.tables.contains_key(&n) || n < v.next_file {
                continue;
            }
            if has_footer(p) {
                db.ahead.push(n);
            } else {
                db.unfinished.push(n);
            }
        }
        // Obsolete tables normally hold a compaction's inputs, whose keys its outputs hold
        // too; one whose keys no live table's range covers holds keys the live set lacks.
        let ranges: Vec<(&[u8], &[u8])> = db
            .tables
            .values()
            .map(|t| (t.smallest.as_slice(), t.largest.as_slice()))
            .collect();
        for (&n, p) in &on_disk {
            if v.tables.contains_key(&n) || n >= v.next_file {
                continue;
            }
            let engine = db.engine.unwrap_or(Engine::Rocksdb);
            if let Some((lo, hi)) = key_bounds(p, engine) {
                let covered = ranges
                    .iter()
                    .any(|&(a, b)| a <= hi.as_slice() && lo.as_slice() <= b);
                if !covered {
                    db.lonely.insert(n, (lo, hi));
                }
            }
        }
    }
    db.manifest_cut = m.problems.last().is_some_and(|p| {
        p.offset >= m.applied_end
            && (matches!(&p.what, edit::ProblemKind::Log(b) if b.is_cut())
                || matches!(p.what, edit::ProblemKind::Unfinished))
    });
    let min_log = v.min_live_log();
    db.newest_wal = wals.into_iter().filter(|&n| n >= min_log).max();
    db.version = Some(m);
    db
}

/// A table's first user key and an upper bound of its last (its index's last separator), read
/// from its footer, index and first data block; `None` when any of them does not verify.
fn key_bounds(p: &Path, engine: Engine) -> Option<(Vec<u8>, Vec<u8>)> {
    let file = fs::File::open(p).ok()?;
    let len = file.metadata().ok()?.len();
    let source = crate::access::PreadSource {
        file: &file,
        len,
        throttle: None,
    };
    let tail = table::read_exact(
        &source,
        len.checked_sub(len.min(table::FOOTER))?,
        len.min(table::FOOTER),
    )
    .ok()?;
    let f = table::footer(&tail, len).ok()?;
    let read = |h: table::Handle| -> Option<Vec<u8>> {
        if h.size > 64 << 20 {
            return None;
        }
        let b = table::read_exact(&source, h.offset, h.size + table::TRAILER).ok()?;
        table::verify(f.checksum, &b).ok()?;
        let n = h.size as usize;
        table::decompress(engine, f.format_version, *b.get(n)?, b.get(..n)?, 64 << 20).ok()
    };
    let mut props = table::Properties::default();
    if let Some(mi) = read(f.metaindex) {
        for e in table::entries(&mi, table::Values::Sized).ok()? {
            if e.key == b"rocksdb.properties" {
                let h = table::Handle::decode_value(e.value)?;
                props = table::properties(&read(h)?).ok()?;
            }
        }
    }
    let handles = |h: table::Handle| -> Option<Vec<(Vec<u8>, table::Handle)>> {
        table::index_handles(&read(h)?, props.index_delta, props.index_type == 3).ok()
    };
    let mut top = handles(f.index)?;
    let (first, hi) = if props.index_type == 2 {
        // Two-level: the first partition's first block, the last partition's last separator.
        let (_, p0) = top.first()?.clone();
        let (_, pn) = top.pop()?;
        (handles(p0)?.first()?.1, handles(pn)?.pop()?.0)
    } else {
        (top.first()?.1, top.pop()?.0)
    };
    let hi = if props.index_user_keys {
        hi
    } else {
        table::user_key(&hi).to_vec()
    };
    let block = read(first)?;
    let es = table::entries(&block, table::Values::Sized).ok()?;
    let lo = table::user_key(&es.first()?.key).to_vec();
    Some((lo, hi))
}

/// Whether a table file ends in a footer with a known magic (a finished table).
fn has_footer(p: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(p) else {
        return false;
    };
    let mut magic = [0u8; 8];
    f.seek(SeekFrom::End(-8)).is_ok()
        && f.read_exact(&mut magic).is_ok()
        && matches!(
            u64::from_le_bytes(magic),
            table::MAGIC | table::LEGACY_MAGIC
        )
}

impl Finding {
    fn with_file(mut self, p: &Path) -> Self {
        self.file = Some(p.to_path_buf());
        self
    }
}

/// Whether a file's first bytes start with a log record whose checksum verifies.
fn starts_with_record(head: &[u8]) -> bool {
    let mut ok = false;
    let mut first = true;
    log::read(
        head.get(..head.len().min(log::BLOCK)).unwrap_or_default(),
        None,
        0,
        |e| {
            if first {
                ok = matches!(
                    e,
                    log::Event::Record { .. }
                        | log::Event::Compression { .. }
                        | log::Event::Recycled { .. }
                        | log::Event::Unfinished { .. }
                );
                first = false;
            }
        },
    );
    ok
}

fn detect_file(engine: Engine, probe: &Probe<'_>) -> bool {
    let dir = probe.path.parent().unwrap_or(Path::new("."));
    let in_db = is_db_dir(dir);
    if in_db && flavour(dir) != engine {
        return false;
    }
    match role(probe.path) {
        Some(Role::Table) => {
            let ldb = probe.path.extension().is_some_and(|e| e == "ldb");
            in_db || (ldb == (engine == Engine::Leveldb))
        }
        Some(Role::Blob) => {
            engine == Engine::Rocksdb && crate::lsm::fixed32(probe.head, 0) == blob::MAGIC
        }
        Some(Role::Wal) | Some(Role::Manifest) => {
            (in_db || engine == Engine::Rocksdb)
                && (probe.len == 0 || starts_with_record(probe.head))
        }
        _ => false,
    }
}

macro_rules! lsm_format {
    ($name:ident, $engine:expr, $label:literal, $desc:literal) => {
        #[doc = concat!("The `", $label, "` format: ", $desc)]
        #[derive(Debug)]
        pub struct $name(Lsm);

        impl Default for $name {
            fn default() -> Self {
                $name(Lsm::new($engine))
            }
        }

        impl $name {
            /// The format's name.
            pub const NAME: &'static str = $label;
        }

        impl Format for $name {
            fn name(&self) -> &'static str {
                $label
            }

            fn description(&self) -> &'static str {
                $desc
            }

            fn detect_file(&self, probe: &Probe<'_>) -> bool {
                detect_file($engine, probe)
            }

            fn detect_dir(&self, dir: &Path) -> bool {
                self.0.detect_dir(dir)
            }

            fn list_dir(&self, dir: &Path) -> Option<DirListing> {
                Some(self.0.list_dir(dir))
            }

            fn open(&self, path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
                self.0.open(path, source)
            }

            fn conclude(&self, _complete: bool) -> Conclusion {
                self.0.conclude()
            }
        }
    };
}

lsm_format!(
    RocksdbFormat,
    Engine::Rocksdb,
    "rocksdb",
    "RocksDB: the live set from the MANIFEST; every block of every live table (.sst, format_version 0-5, \
     checksum types CRC32c/xxHash/xxHash64/XXH3, partitioned indexes) verified in parallel from its own \
     index, with the key range a damaged data block held; WAL and MANIFEST records (masked CRC-32C), \
     a torn WAL tail told from damage to synced data"
);

lsm_format!(
    LeveldbFormat,
    Engine::Leveldb,
    "leveldb",
    "LevelDB: the live set from the MANIFEST; every block of every live table (.ldb/.sst, masked \
     CRC-32C) verified in parallel from its own index, with the key range a damaged data block held; \
     WAL and MANIFEST records, a torn WAL tail told from damage to synced data"
);
