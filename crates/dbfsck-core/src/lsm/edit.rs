//! MANIFEST contents: VersionEdits, and the live set they add up to (docs/rocksdb.md §4), as
//! RocksDB's `VersionBuilder` and LevelDB's `VersionSet` apply them.

use std::collections::{BTreeMap, BTreeSet};

use crate::lsm::{log, Cursor};

/// A table the MANIFEST lists as live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// Its column family id (0: `default`).
    pub cf: u32,
    /// Its level.
    pub level: u32,
    /// Its size in bytes, as recorded.
    pub size: u64,
    /// Smallest internal key.
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
    /// Offset of the MANIFEST record that added it.
    pub added_at: u64,
    /// The tag of the record that added it (7 LevelDB, 100/102/103 RocksDB).
    pub tag: u32,
    /// Smallest and largest sequence numbers (RocksDB's forms).
    pub seqnos: Option<(u64, u64)>,
    /// `path_id` (tag 102).
    pub path_id: Option<u32>,
    /// NewFile4's custom fields as stored, the closing tag 1 included.
    pub custom: Vec<u8>,
    /// NewFile4's whole-file checksum (custom field 7), when one is recorded.
    pub file_checksum: Vec<u8>,
}

/// A WAL the MANIFEST tracks (`track_and_verify_wals_in_manifest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalMeta {
    /// The synced size recorded, when one is.
    pub synced: Option<u64>,
}

/// What a MANIFEST says, applied edit by edit.
#[derive(Debug, Clone, Default)]
pub struct Version {
    /// The comparator's name.
    pub comparator: Option<String>,
    /// Column families by id: name and log number.
    pub cfs: BTreeMap<u32, (String, u64)>,
    /// Live tables by file number.
    pub tables: BTreeMap<u64, TableMeta>,
    /// Live blob files by number: (total blob count, garbage count).
    pub blobs: BTreeMap<u64, (u64, u64)>,
    /// Tracked WALs by number.
    pub wals: BTreeMap<u64, WalMeta>,
    /// WALs below this number are obsolete (`WalDeletion2`).
    pub wals_deleted_below: u64,
    /// The next file number the engine would use.
    pub next_file: u64,
    /// The last sequence number flushed.
    pub last_sequence: u64,

    /// `MinLogNumberToKeep`.
    pub min_log_to_keep: u64,
    /// `PrevLogNumber` (LevelDB).
    pub prev_log: u64,
    /// Whether an edit used a RocksDB-only tag.
    pub rocksdb: bool,
    /// Whether edits gave the log number, the next file number and the last sequence, without
    /// which the engines refuse to open ("no meta-nextfile entry in descriptor").
    pub complete: (bool, bool, bool),
    /// Edits applied.
    pub edits: u64,
}

/// Why an edit could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The record ends inside a field.
    #[error("the edit ends inside the field of tag {0}")]
    Short(u32),
    /// A tag the engines would refuse.
    #[error("unknown tag {0}")]
    UnknownTag(u32),
    /// A NewFile4 custom field the engines would refuse.
    #[error("unknown custom field {0} of a new file")]
    UnknownCustom(u32),
    /// A NewFile4 custom field whose value does not decode.
    #[error("custom field {0} of a new file does not decode")]
    BadCustom(u32),
    /// An edit RocksDB's version builder refuses (it then refuses to open the database).
    #[error("{0}")]
    Inconsistent(String),
}

/// One decoded edit.
#[derive(Debug, Default)]
struct Edit {
    cf: u32,
    cf_add: Option<String>,
    cf_drop: bool,
    comparator: Option<String>,
    log_number: Option<u64>,
    next_file: Option<u64>,
    last_sequence: Option<u64>,
    min_log: Option<u64>,
    prev_log: Option<u64>,
    deleted: Vec<(u32, u64)>,
    added: Vec<(u64, TableMeta)>,
    blob_add: Vec<(u64, u64)>,
    blob_garbage: Vec<(u64, u64)>,
    wal_add: Vec<(u64, WalMeta)>,
    wal_delete: Option<u64>,
    atomic: Option<u32>,
    rocksdb: bool,
}

fn decode(payload: &[u8], at: u64) -> Result<Edit, EditError> {
    let mut c = Cursor::new(payload);
    let mut e = Edit::default();
    while !c.is_empty() {
        let tag = c.varint32().ok_or(EditError::Short(0))?;
        let short = EditError::Short(tag);
        match tag {
            1 => e.comparator = Some(String::from_utf8_lossy(c.slice().ok_or(short)?).into_owned()),
            2 => e.log_number = Some(c.varint64().ok_or(short)?),
            3 => e.next_file = Some(c.varint64().ok_or(short)?),
            4 => e.last_sequence = Some(c.varint64().ok_or(short)?),
            5 => {
                c.varint32().ok_or(short.clone())?;
                c.slice().ok_or(short)?;
            }
            6 => {
                let level = c.varint32().ok_or(short.clone())?;
                e.deleted.push((level, c.varint64().ok_or(short)?));
            }
            7 | 100 | 102 | 103 => {
                let level = c.varint32().ok_or(short.clone())?;
                let number = c.varint64().ok_or(short.clone())?;
                let path_id = if tag == 102 {
                    Some(c.varint32().ok_or(short.clone())?)
                } else {
                    None
                };
                let size = c.varint64().ok_or(short.clone())?;
                let smallest = c.slice().ok_or(short.clone())?.to_vec();
                let largest = c.slice().ok_or(short.clone())?.to_vec();
                let mut seqnos = None;
                if tag != 7 {
                    e.rocksdb = true;
                    let a = c.varint64().ok_or(short.clone())?;
                    let b = c.varint64().ok_or(short.clone())?;
                    seqnos = Some((a, b));
                }
                let mut custom_bytes = Vec::new();
                let mut file_checksum = Vec::new();
                if tag == 103 {
                    let from = c.pos();
                    loop {
                        let custom = c.varint32().ok_or(short.clone())?;
                        if custom == 1 {
                            break;
                        }
                        let v = c.slice().ok_or(short.clone())?;
                        if custom == 7 {
                            file_checksum = v.to_vec();
                        }
                        // Times and the oldest blob file are varints, the unique id 16 bytes:
                        // RocksDB refuses an edit where they do not decode.
                        let whole_varint = |v: &[u8]| {
                            let mut vc = Cursor::new(v);
                            vc.varint64().is_some() && vc.is_empty()
                        };
                        let fine = match custom {
                            4..=6 => whole_varint(v),
                            12 => v.len() == 16,
                            _ => true,
                        };
                        if !fine {
                            return Err(EditError::BadCustom(custom));
                        }
                        // Tags 2–17 and 65 are known; an unknown one with bit 6 set is refused.
                        if custom & 64 != 0 && custom != 65 {
                            return Err(EditError::UnknownCustom(custom));
                        }
                    }
                    custom_bytes = payload.get(from..c.pos()).unwrap_or_default().to_vec();
                }
                e.added.push((
                    number,
                    TableMeta {
                        cf: 0,
                        level,
                        size,
                        smallest,
                        largest,
                        added_at: at,
                        tag,
                        seqnos,
                        path_id,
                        custom: custom_bytes,
                        file_checksum,
                    },
                ));
            }
            9 => e.prev_log = Some(c.varint64().ok_or(short)?),
            10 => {
                e.rocksdb = true;
                e.min_log = Some(c.varint64().ok_or(short)?);
            }
            200 => e.cf = c.varint32().ok_or(short)?,
            201 => e.cf_add = Some(String::from_utf8_lossy(c.slice().ok_or(short)?).into_owned()),
            202 => e.cf_drop = true,
            203 => {
                c.varint32().ok_or(short)?;
            }
            300 => e.atomic = Some(c.varint32().ok_or(short)?),
            400 => {
                let number = c.varint64().ok_or(short.clone())?;
                let count = c.varint64().ok_or(short.clone())?;
                c.varint64().ok_or(short.clone())?;
                c.slice().ok_or(short.clone())?;
                c.slice().ok_or(short.clone())?;
                skip_custom(&mut c, tag)?;
                e.blob_add.push((number, count));
            }
            401 => {
                let number = c.varint64().ok_or(short.clone())?;
                let garbage = c.varint64().ok_or(short.clone())?;
                c.varint64().ok_or(short.clone())?;
                skip_custom(&mut c, tag)?;
                e.blob_garbage.push((number, garbage));
            }
            8199 => {
                let body = c.slice().ok_or(short.clone())?;
                let mut b = Cursor::new(body);
                let number = b.varint64().ok_or(short.clone())?;
                let mut meta = WalMeta::default();
                loop {
                    match b.varint32().ok_or(short.clone())? {
                        1 => break,
                        2 => meta.synced = Some(b.varint64().ok_or(short.clone())?),
                        _ => {
                            b.slice().ok_or(short.clone())?;
                        }
                    }
                }
                e.wal_add.push((number, meta));
            }
            8200 => {
                let body = c.slice().ok_or(short.clone())?;
                e.wal_delete = Some(Cursor::new(body).varint64().ok_or(short)?);
            }
            // DbId, old inline WAL forms, full_history_ts_low, and any tag marked safe to
            // ignore: one length-prefixed body.
            t if t & 0x2000 != 0 => {
                c.slice().ok_or(short)?;
            }
            t => return Err(EditError::UnknownTag(t)),
        }
        if tag >= 100 {
            e.rocksdb = true;
        }
    }
    Ok(e)
}

fn skip_custom(c: &mut Cursor<'_>, tag: u32) -> Result<(), EditError> {
    loop {
        match c.varint32().ok_or(EditError::Short(tag))? {
            0 => return Ok(()),
            _ => {
                c.slice().ok_or(EditError::Short(tag))?;
            }
        }
    }
}

/// A MANIFEST record that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Offset of the record (or damaged stretch).
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
    /// What is wrong.
    pub what: ProblemKind,
}

/// What is wrong with a stretch of a MANIFEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The log layer failed (a checksum, a length).
    Log(log::Bad),
    /// Fragments whose record is lost.
    Orphan,
    /// A record the writer had not finished at the end of the file.
    Unfinished,
    /// The record is intact but its edit does not decode.
    Edit(EditError),
    /// An atomic group still open at the end: the engines drop it.
    OpenGroup,
    /// A zeroed block before valid records: the edits it held are lost (the engines skip it).
    Zeroed,
}

/// What reading a whole MANIFEST gives.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// The live set after every edit that could be applied.
    pub version: Version,
    /// What could not be read, in order.
    pub problems: Vec<Problem>,
    /// End of the last record applied.
    pub applied_end: u64,
}

/// Reads a MANIFEST and applies its edits, stopping (as the engines' readers do) at the first
/// record that fails its checksum or does not decode; what lies after is still checked for
/// records, so that damage in the middle is told from a cut tail.
pub fn read_manifest(bytes: &[u8]) -> Manifest {
    let mut m = Manifest::default();
    let mut stopped = false;
    let mut group: Vec<Edit> = Vec::new();
    let mut group_start = 0;
    let mut zeros: Option<(u64, u64)> = None;
    log::read(bytes, None, usize::MAX, |ev| match ev {
        log::Event::Record {
            start,
            end,
            payload,
            ..
        } => {
            // Zeros with a record after them were written edits.
            if let Some((zs, ze)) = zeros.take() {
                m.problems.push(Problem {
                    offset: zs,
                    length: ze - zs,
                    what: ProblemKind::Zeroed,
                });
            }
            if stopped {
                return;
            }
            match decode(&payload, start) {
                Ok(edit) => {
                    if let Some(left) = edit.atomic {
                        if group.is_empty() {
                            group_start = start;
                        }
                        group.push(edit);
                        if left == 0 {
                            let mut refused = None;
                            for e in group.drain(..) {
                                if let Err(e) = apply(&mut m.version, e) {
                                    refused.get_or_insert(e);
                                }
                            }
                            settle(
                                &mut m,
                                &mut stopped,
                                refused.map_or(Ok(()), Err),
                                group_start,
                                end,
                            );
                        }
                    } else {
                        let r = apply(&mut m.version, edit);
                        settle(&mut m, &mut stopped, r, start, end);
                    }
                }
                Err(e) => {
                    m.problems.push(Problem {
                        offset: start,
                        length: end - start,
                        what: ProblemKind::Edit(e),
                    });
                    stopped = true;
                }
            }
        }
        log::Event::Bad { start, end, why } => {
            m.problems.push(Problem {
                offset: start,
                length: end - start,
                what: ProblemKind::Log(why),
            });
            stopped = true;
        }
        log::Event::Orphan { start, end } => m.problems.push(Problem {
            offset: start,
            length: end - start,
            what: ProblemKind::Orphan,
        }),
        log::Event::Unfinished { start, end } => m.problems.push(Problem {
            offset: start,
            length: end - start,
            what: ProblemKind::Unfinished,
        }),
        log::Event::Zeros { start, end } => {
            let s = zeros.map_or(start, |z| z.0);
            zeros = Some((s, end));
        }
        log::Event::Recycled { .. } | log::Event::Compression { .. } => {}
    });
    if !group.is_empty() {
        m.problems.push(Problem {
            offset: group_start,
            length: m.applied_end.max(group_start) - group_start,
            what: ProblemKind::OpenGroup,
        });
    }
    m
}

/// Records the outcome of applying the edits of `[start, end)`: applied up to `end`, or a
/// problem there that stops the reading, as the engine's open stops.
fn settle(m: &mut Manifest, stopped: &mut bool, r: Result<(), EditError>, start: u64, end: u64) {
    match r {
        Ok(()) => m.applied_end = end,
        Err(e) => {
            m.problems.push(Problem {
                offset: start,
                length: end - start,
                what: ProblemKind::Edit(e),
            });
            *stopped = true;
        }
    }
}

/// Applies one edit; `Err` when RocksDB's version builder would refuse it (LevelDB's does not
/// check).
fn apply(v: &mut Version, e: Edit) -> Result<(), EditError> {
    if v.rocksdb || e.rocksdb {
        for &(level, number) in &e.deleted {
            if v.tables
                .get(&number)
                .is_none_or(|t| t.level != level || t.cf != e.cf)
            {
                return Err(EditError::Inconsistent(format!(
                    "the edit deletes table {number:06} from level {level}, where it is not (RocksDB: \"Cannot delete table file #{number} from level {level} since it is not in the LSM tree\")"
                )));
            }
        }
        for (number, t) in &e.added {
            let moved = e.deleted.iter().any(|&(_, n)| n == *number);
            if let Some(old) = v.tables.get(number).filter(|_| !moved) {
                return Err(EditError::Inconsistent(format!(
                    "the edit adds table {number:06} to level {}, but it is already on level {} (RocksDB: \"Cannot add table file #{number} … since it is already in the LSM tree\")",
                    t.level, old.level
                )));
            }
        }
    }
    v.edits += 1;
    v.rocksdb |= e.rocksdb;
    if let Some(c) = e.comparator {
        v.comparator = Some(c);
    }
    if let Some(name) = e.cf_add {
        v.cfs.insert(e.cf, (name, 0));
    }
    if e.cf_drop {
        v.cfs.remove(&e.cf);
        v.tables.retain(|_, t| t.cf != e.cf);
        return Ok(());
    }
    let cf = v
        .cfs
        .entry(e.cf)
        .or_insert_with(|| ("default".to_owned(), 0));
    if let Some(l) = e.log_number {
        cf.1 = cf.1.max(l);
        v.complete.0 = true;
    }
    if let Some(n) = e.next_file {
        v.next_file = v.next_file.max(n);
        v.complete.1 = true;
    }
    if let Some(s) = e.last_sequence {
        v.last_sequence = v.last_sequence.max(s);
        v.complete.2 = true;
    }
    if let Some(l) = e.min_log {
        v.min_log_to_keep = v.min_log_to_keep.max(l);
    }
    if let Some(l) = e.prev_log {
        v.prev_log = l;
    }
    for (number, count) in e.blob_add {
        v.blobs.insert(number, (count, 0));
    }
    for (number, garbage) in e.blob_garbage {
        if let Some(b) = v.blobs.get_mut(&number) {
            b.1 = b.1.saturating_add(garbage);
        }
    }
    // Deletions before additions: a trivial move deletes at L and adds at L+1, same number.
    for (_, number) in e.deleted {
        v.tables.remove(&number);
    }
    for (number, mut t) in e.added {
        t.cf = e.cf;
        v.tables.insert(number, t);
    }
    for (number, meta) in e.wal_add {
        v.wals.insert(number, meta);
    }
    if let Some(below) = e.wal_delete {
        v.wals_deleted_below = v.wals_deleted_below.max(below);
        v.wals.retain(|&n, _| n >= below);
    }
    // A blob file whose every blob is garbage holds nothing a live table reads: RocksDB drops
    // it from the version once no table links to it.
    v.blobs.retain(|_, (count, garbage)| garbage < count);
    Ok(())
}

impl Version {
    /// Whether the engines can open a database from these edits: they gave the log number, the
    /// next file number and the last sequence.
    pub fn usable(&self) -> bool {
        self.complete == (true, true, true)
    }

    /// WALs numbered below this hold nothing unflushed: RocksDB and LevelDB skip them.
    pub fn min_live_log(&self) -> u64 {
        let cf_min = self.cfs.values().map(|&(_, l)| l).min().unwrap_or(0);
        if self.rocksdb {
            cf_min.max(self.min_log_to_keep)
        } else {
            // LevelDB keeps the previous log too while a compaction of its memtable runs.
            match self.prev_log {
                0 => cf_min,
                p => cf_min.min(p),
            }
        }
    }

    /// The names of the column families, by id.
    pub fn cf_name(&self, cf: u32) -> String {
        self.cfs
            .get(&cf)
            .map_or_else(|| format!("cf {cf}"), |(n, _)| n.clone())
    }

    /// Live table numbers.
    pub fn table_numbers(&self) -> BTreeSet<u64> {
        self.tables.keys().copied().collect()
    }
}

/// The edit that replaces live table `number` (described by `meta`) with a rewritten file of
/// `size` bytes whose keys run from `smallest` to `largest` (internal keys), in the form the
/// MANIFEST used for it: deleted and added again in one edit, as a trivial move is (deletions
/// apply before additions). Every other field — sequence numbers, the custom fields (unique id,
/// times) — is the original's.
pub fn replace_table(
    number: u64,
    meta: &TableMeta,
    size: u64,
    smallest: &[u8],
    largest: &[u8],
) -> Vec<u8> {
    use crate::lsm::put_varint as v;
    let slice = |out: &mut Vec<u8>, b: &[u8]| {
        v(out, b.len() as u64);
        out.extend_from_slice(b);
    };
    let mut e = Vec::new();
    if meta.cf != 0 {
        v(&mut e, 200);
        v(&mut e, u64::from(meta.cf));
    }
    v(&mut e, 6);
    v(&mut e, u64::from(meta.level));
    v(&mut e, number);
    v(&mut e, u64::from(meta.tag));
    v(&mut e, u64::from(meta.level));
    v(&mut e, number);
    if let Some(p) = meta.path_id {
        v(&mut e, u64::from(p));
    }
    v(&mut e, size);
    slice(&mut e, smallest);
    slice(&mut e, largest);
    if let Some((a, b)) = meta.seqnos {
        v(&mut e, a);
        v(&mut e, b);
    }
    if meta.tag == 103 {
        e.extend_from_slice(&meta.custom);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn slice(b: &[u8], out: &mut Vec<u8>) {
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn new_file(level: u64, number: u64, size: u64) -> Vec<u8> {
        let mut e = Vec::new();
        varint(2, &mut e);
        varint(9, &mut e);
        varint(3, &mut e);
        varint(number + 1, &mut e);
        varint(7, &mut e);
        varint(level, &mut e);
        varint(number, &mut e);
        varint(size, &mut e);
        slice(b"a\x01\0\0\0\0\0\0\0", &mut e);
        slice(b"z\x01\0\0\0\0\0\0\0", &mut e);
        e
    }

    #[test]
    fn live_set_from_edits() {
        let mut first = Vec::new();
        varint(1, &mut first);
        slice(b"leveldb.BytewiseComparator", &mut first);
        let a = new_file(0, 5, 100);
        let b = new_file(0, 7, 200);
        let mut del = Vec::new();
        varint(6, &mut del);
        varint(0, &mut del);
        varint(5, &mut del);
        let log = log::write(&[&first, &a, &b, &del]);
        let m = read_manifest(&log);
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        assert_eq!(m.version.table_numbers(), BTreeSet::from([7]));
        assert_eq!(m.version.next_file, 8);
        assert_eq!(m.version.min_live_log(), 9);
        assert!(!m.version.rocksdb);
        assert_eq!(m.applied_end, log.len() as u64);
    }

    #[test]
    fn a_cut_manifest_stops_at_the_last_whole_edit() {
        let a = new_file(0, 5, 100);
        let b = new_file(1, 7, 200);
        let log = log::write(&[&a, &b]);
        let m = read_manifest(&log[..log.len() - 3]);
        assert_eq!(m.version.table_numbers(), BTreeSet::from([5]));
        assert!(matches!(
            m.problems[..],
            [Problem {
                what: ProblemKind::Log(log::Bad::CutBody),
                ..
            }]
        ));
    }

    #[test]
    fn unknown_tags_are_refused_unless_safe_to_ignore() {
        let mut e = Vec::new();
        varint(0x2001, &mut e);
        slice(b"whatever", &mut e);
        assert!(decode(&e, 0).is_ok());
        let mut e = Vec::new();
        varint(77, &mut e);
        assert_eq!(decode(&e, 0).unwrap_err(), EditError::UnknownTag(77));
    }
}
