//! Repair of RocksDB and LevelDB databases (docs/rocksdb.md §8):
//!
//! - **A torn tail** of the newest WAL (or of the MANIFEST) is cut off at the end of its last
//!   whole record (`truncate_tail`): what recovery discards anyway, made explicit and undoable;
//!   the piece is copied to the quarantine first.
//! - **A table with damaged data blocks is salvaged** (`salvage`): rewritten in place from every
//!   data block that verifies (`dbfsck_core::lsm::salvage`), and the MANIFEST gets one edit that
//!   replaces the table's entry (same number and level, the new size and key bounds, every other
//!   field the original's) — so the engine opens the database with every salvaged key readable
//!   and only the damaged blocks' key ranges lost. The original table goes to the quarantine
//!   whole, and the undo log holds it and the MANIFEST's length.
//!
//! Refused, with the reason, while the database is open (another process holds `LOCK`), when the
//! MANIFEST does not end cleanly or does not list the table, when it records a whole-file
//! checksum for it, and whenever the table's structure cannot be trusted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dbfsck_core::lsm::table::Engine;
use dbfsck_core::lsm::{self, edit, salvage};
use dbfsck_core::{Finding, FindingKind, RepairAction, Report};

use crate::plan::{Action, PageSpec, Source};
use crate::storage::{Storage, StorageFile};

/// What a RocksDB/LevelDB action changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LsmRole {
    /// A table rewritten in place from its verifying blocks.
    Table,
    /// An edit appended to the MANIFEST.
    Manifest,
    /// Another damaged block of a table salvaged by its first finding's action.
    Covered,
    /// A torn log tail cut off.
    Tail,
    /// Damaged bytes of a table that cannot be salvaged, copied to the quarantine.
    Quarantine,
}

/// How a RocksDB/LevelDB file to repair is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsmSpec {
    /// What the action changes.
    pub role: LsmRole,
    /// Which engine's codes.
    pub engine: Engine,
    /// xxh3-64 of the file's bytes the plan was made from (table and MANIFEST): the write is
    /// refused if they changed.
    pub planned: u64,
}

/// Bytes a repair writes that it built itself (a salvaged table, a MANIFEST edit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// What to write.
    pub bytes: Arc<Vec<u8>>,
    /// The table they are built from.
    pub from: PathBuf,
    /// In words, for the report.
    pub what: String,
}

fn engine_of(format: &str) -> Option<Engine> {
    match format {
        "rocksdb" => Some(Engine::Rocksdb),
        "leveldb" => Some(Engine::Leveldb),
        _ => None,
    }
}

/// The database's LOCK, which an action on `path` is only written under (when it exists).
pub fn lock_of(path: &Path) -> Option<PathBuf> {
    path.parent().map(|d| d.join("LOCK")).filter(|l| l.exists())
}

/// Whether a finding is one this module plans for (its format's, damage or a torn tail).
pub fn handles(f: &Finding) -> bool {
    engine_of(&f.format).is_some()
}

/// The files a repair of this finding's file must also lock: the database's MANIFEST and LOCK.
pub fn extra_locks(path: &Path, format: &str) -> Vec<PathBuf> {
    if engine_of(format).is_none() {
        return Vec::new();
    }
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    // A copy without LOCK is open in no engine (one that opens it creates LOCK first).
    let mut v: Vec<PathBuf> = Some(dir.join("LOCK"))
        .filter(|l| l.exists())
        .into_iter()
        .collect();
    v.extend(lsm::current_manifest(dir));
    v
}

fn xxh(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

fn read_all<S: Storage>(storage: &S, p: &Path) -> Result<Vec<u8>, String> {
    let f = storage
        .open_read(p)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let len = f.len().map_err(|e| e.to_string())?;
    let mut b = vec![0u8; usize::try_from(len).map_err(|e| e.to_string())?];
    let n = f.read_full_at(&mut b, 0).map_err(|e| e.to_string())?;
    b.truncate(n);
    Ok(b)
}

/// Plans the actions for finding `i` (and, for the first damaged block of a table, every other
/// one of the same table). `done` lists the findings already covered.
pub fn plan<S: Storage>(
    storage: &S,
    report: &Report,
    i: usize,
    done: &mut Vec<usize>,
) -> Result<Vec<Action>, String> {
    if done.contains(&i) {
        return Ok(Vec::new());
    }
    let f = report.findings.get(i).ok_or("no such finding")?;
    let engine = engine_of(&f.format).ok_or("not a RocksDB or LevelDB finding")?;
    let file = report
        .scanned_file(f)
        .ok_or("the file was not scanned as a whole; not repaired")?;
    let path = file.path.clone();
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    // Whether the engine has it open is settled by the repair taking the database's LOCK
    // (`extra_locks`): an action is written only under it.
    let spec = |role, planned| {
        PageSpec::Lsm(LsmSpec {
            role,
            engine,
            planned,
        })
    };
    if f.kind == FindingKind::TornTail {
        let len = storage
            .open_read(&path)
            .and_then(|h| h.len())
            .map_err(|e| e.to_string())?;
        if f.offset + f.length != len {
            return Err("the torn piece does not reach the end of the file: not cut".into());
        }
        // A MANIFEST is cut only when what stays is one the engine opens a database from.
        if lsm::role(&path) == Some(lsm::Role::Manifest) {
            let bytes = read_all(storage, &path)?;
            let kept = edit::read_manifest(bytes.get(..f.offset as usize).unwrap_or_default());
            if !kept.version.usable() || !kept.problems.is_empty() {
                return Err("cutting this tail would leave a MANIFEST the engine cannot open a database from: not cut; restore the MANIFEST".into());
            }
        }
        return Ok(vec![Action {
            finding: i,
            path,
            display: f.path.clone(),
            offset: f.offset,
            length: f.length,
            unit: None,
            units: None,
            action: RepairAction::TruncateTail,
            spec: spec(LsmRole::Tail, 0),
            source: None,
            zero_run: false,
            detail: "the unfinished last write is copied to the quarantine and cut off at the end of the last whole record, as the engine's recovery would discard it".into(),
        }]);
    }
    // A table's damage that cannot be salvaged is quarantined: its bytes copied, the table left
    // as it is, the key range reported (the finding's owner) for re-replication.
    if lsm::role(&path) == Some(lsm::Role::Table) {
        return match salvage_plan(storage, report, i, done, f, engine, &path, &dir) {
            Ok(actions) => Ok(actions),
            Err(why) => Ok(vec![Action {
                finding: i,
                path,
                display: f.path.clone(),
                offset: f.offset,
                length: f.length,
                unit: f.unit,
                units: None,
                action: RepairAction::Quarantine,
                spec: PageSpec::Lsm(LsmSpec {
                    role: LsmRole::Quarantine,
                    engine,
                    planned: 0,
                }),
                source: None,
                zero_run: false,
                detail: format!(
                    "not salvaged ({why}); the damaged bytes are copied to the quarantine and the table is left as it is: restore its key range from a replica or a backup"
                ),
            }]),
        };
    }
    Err(format!(
        "dbfsck repairs {} tables (salvage) and torn log tails; restore this range from a backup or a replica",
        f.format
    ))
}

/// The salvage of the table finding `i` is in, with every other damaged block of that table.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the plan's context, passed through"
)]
fn salvage_plan<S: Storage>(
    storage: &S,
    report: &Report,
    i: usize,
    done: &mut Vec<usize>,
    f: &Finding,
    engine: Engine,
    path: &Path,
    dir: &Path,
) -> Result<Vec<Action>, String> {
    let path = path.to_path_buf();
    let spec = |role, planned| {
        PageSpec::Lsm(LsmSpec {
            role,
            engine,
            planned,
        })
    };
    let owner = f.owner.as_ref();
    let is_data = owner
        .and_then(|o| o.get("block_type"))
        .and_then(|v| v.as_str())
        == Some("data");
    if !(f.kind == FindingKind::ChecksumMismatch && is_data) {
        return Err(format!(
            "only damaged data blocks are salvaged, and this is the table's {}",
            owner
                .and_then(|o| o.get("block_type"))
                .and_then(|v| v.as_str())
                .unwrap_or("structure")
        ));
    }
    let number = owner
        .and_then(|o| o.get("table"))
        .and_then(serde_json::Value::as_u64)
        .ok_or("the table's number is not known (not a live table of a database directory)")?;
    let manifest_path = lsm::current_manifest(dir)
        .ok_or("the database's CURRENT does not name a MANIFEST: nothing can record a salvage")?;
    let manifest_bytes = read_all(storage, &manifest_path)?;
    let m = edit::read_manifest(&manifest_bytes);
    // Damage in the MANIFEST before the table's entry leaves its record in doubt; a cut tail
    // matters only when the salvage appends an edit (checked below).
    let manifest_clean = m.problems.is_empty() && m.applied_end == manifest_bytes.len() as u64;
    if !m.version.usable() || m.problems.iter().any(|p| p.offset < m.applied_end) {
        return Err("the MANIFEST is damaged before its end: the table's record in it is in doubt; repair or restore the MANIFEST first".into());
    }
    let meta = m
        .version
        .tables
        .get(&number)
        .ok_or("the table is not live in the MANIFEST")?;
    if !meta.file_checksum.is_empty() {
        return Err("the MANIFEST records a whole-file checksum for this table, which a salvaged table would not match: not salvaged".into());
    }
    // Every damaged data block of the table, salvaged at once.
    let mine: Vec<usize> = report
        .findings
        .iter()
        .enumerate()
        .filter(|(_, g)| g.file == f.file && g.kind.is_damage())
        .map(|(j, _)| j)
        .collect();
    let ranges: Vec<serde_json::Value> = mine
        .iter()
        .filter_map(|&j| report.findings.get(j))
        .map(|g| {
            let o = g.owner.as_ref();
            serde_json::json!({
                "block": o.and_then(|o| o.get("block")).cloned(),
                "offset": g.offset,
                "key_range": o.and_then(|o| o.get("key_range")).cloned(),
            })
        })
        .collect();
    let note = serde_json::json!({ "lost_blocks": ranges }).to_string();
    let original = read_all(storage, &path)?;
    // The original's length kept when the rewrite fits in it (always, unless the new index is
    // larger than the dropped blocks and filters): the MANIFEST then stays as it is. Otherwise
    // RocksDB gets an edit replacing the table's entry; LevelDB, whose recovery cannot replace a
    // table at the same level in one edit, is refused.
    let s =
        salvage::rebuild(&original, engine, &note, Some(original.len() as u64)).map_err(|e| {
            format!("the table is not salvaged: {e}; restore it from a backup or a replica")
        })?;
    if !s.padded && !manifest_clean {
        return Err("the salvaged table does not fit in the original's length, so its new size must be recorded in the MANIFEST, which does not end in whole, valid records (a torn tail: cut it first, then repair again)".into());
    }
    if !s.padded && engine == Engine::Leveldb {
        return Err("the salvaged table would be larger than the original, which LevelDB's MANIFEST cannot record in place: not salvaged".into());
    }
    if s.dropped.len() != mine.len() {
        return Err(format!(
            "the salvage would drop {} data blocks where the scan found {} damaged: the table changed or its structure is in doubt; scan again",
            s.dropped.len(),
            mine.len()
        ));
    }
    if let Some(why) = salvage::check_whole(&s.bytes, engine) {
        return Err(format!(
            "the salvaged table would not verify ({why}): not written"
        ));
    }
    let record = edit::replace_table(number, meta, s.bytes.len() as u64, &s.smallest, &s.largest);
    let append = lsm::log::append(manifest_bytes.len() as u64, &[&record]);
    let what = format!(
        "{} of {} data blocks kept ({} entries), {} dropped",
        s.kept,
        s.kept + s.dropped.len() as u64,
        s.entries,
        s.dropped.len()
    );
    let table_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let padded = s.padded;
    let mut actions = vec![
        Action {
            finding: i,
            path: path.clone(),
            display: f.path.clone(),
            offset: 0,
            length: original.len() as u64,
            unit: None,
            units: None,
            action: RepairAction::Salvage,
            spec: spec(LsmRole::Table, xxh(&original)),
            source: Some(Source::Rebuilt(Rebuilt {
                bytes: Arc::new(s.bytes),
                from: path.clone(),
                what: what.clone(),
            })),
            zero_run: false,
            detail: format!(
                "table {table_name} rewritten from its verifying data blocks ({what}){}; the original is copied whole to the quarantine, and only the dropped blocks' key ranges are lost",
                if padded { ", at its original length (the MANIFEST's record of it stays true)" } else { "" }
            ),
        }];
    if !padded {
        actions.push(
        Action {
            finding: i,
            path: manifest_path.clone(),
            display: manifest_path.display().to_string(),
            offset: manifest_bytes.len() as u64,
            length: 0,
            unit: None,
            units: None,
            action: RepairAction::Salvage,
            spec: spec(LsmRole::Manifest, xxh(&manifest_bytes)),
            source: Some(Source::Rebuilt(Rebuilt {
                bytes: Arc::new(append),
                from: path.clone(),
                what: format!("one edit replacing table {number:06}'s entry"),
            })),
            zero_run: false,
            detail: format!(
                "one edit appended: table {number:06} (level {}) replaced by its salvaged rewrite, same number, its new size and key bounds",
                meta.level
            ),
        });
    }
    for &j in &mine {
        done.push(j);
        if j == i {
            continue;
        }
        let g = report.findings.get(j).ok_or("no such finding")?;
        actions.push(Action {
            finding: j,
            path: path.clone(),
            display: g.path.clone(),
            offset: g.offset,
            length: g.length,
            unit: g.unit,
            units: None,
            action: RepairAction::Salvage,
            spec: spec(LsmRole::Covered, 0),
            source: None,
            zero_run: false,
            detail: "dropped by the salvage of its table (the action on the table's first damaged block); this block's key range is lost".into(),
        });
    }
    Ok(actions)
}

/// The bytes a salvage action writes, if the file is still exactly what the plan was made from.
pub fn replacement<F: StorageFile>(
    a: &Action,
    spec: &LsmSpec,
    f: &F,
) -> std::io::Result<Option<Vec<u8>>> {
    let Some(Source::Rebuilt(r)) = &a.source else {
        return Ok(None);
    };
    let len = f.len()?;
    let mut now = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    let n = f.read_full_at(&mut now, 0)?;
    now.truncate(n);
    if xxh(&now) != spec.planned || (spec.role == LsmRole::Manifest && len != a.offset) {
        return Err(std::io::Error::other(format!(
            "{} changed since the plan was made; nothing is written",
            a.display
        )));
    }
    Ok(Some(r.bytes.as_ref().clone()))
}

/// `None` when the file now holds what the action meant; else what is wrong.
pub fn verify_after<F: StorageFile>(
    a: &Action,
    spec: &LsmSpec,
    f: &F,
) -> std::io::Result<Option<String>> {
    let len = f.len()?;
    let mut now = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    let n = f.read_full_at(&mut now, 0)?;
    now.truncate(n);
    Ok(match spec.role {
        LsmRole::Table => salvage::check_whole(&now, spec.engine)
            .map(|w| format!("the salvaged table does not verify: {w}")),
        LsmRole::Manifest => {
            let m = edit::read_manifest(&now);
            (!m.problems.is_empty() || m.applied_end != len)
                .then(|| "the MANIFEST does not read to its end after the edit".to_owned())
        }
        LsmRole::Tail => (len != a.offset)
            .then(|| format!("the file is {len} bytes after cutting it to {}", a.offset)),
        LsmRole::Covered | LsmRole::Quarantine => None,
    })
}
