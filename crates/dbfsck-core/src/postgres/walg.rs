//! WAL-G backups (`docs/postgres-backups.md` §6; `formats-pgwal.md` §6.3): under a storage
//! prefix, `basebackups_005/base_<segment>[_D_<segment>]/tar_partitions/part_N.tar[.lz4|.zst|
//! .lzma|.br|.gz]` and `pg_control.tar[…]`, the backup's stop sentinel
//! `basebackups_005/<name>_backup_stop_sentinel.json` (written last: its start and finish LSN,
//! system identifier, and optionally every file), and the WAL in `wal_005/`. Each partition is
//! streamed once (`tarstream`): every page of every relation member verified — not those of
//! files the sentinel marks incremented, which hold WAL-G's page deltas, not pages — and the
//! members compared with the sentinel's file list.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::codec::Codec;
use crate::finding::{Finding, FindingKind, Owner};

/// The folder of WAL-G's base backups under a storage prefix.
pub(crate) const BASEBACKUPS: &str = "basebackups_005";

/// A sentinel larger than this is refused (its file list: about 100 bytes per file).
const MAX_SENTINEL: u64 = 1 << 30;

/// Whether `dir` is a WAL-G base backup's folder: `basebackups_005/base_…/` with its
/// `tar_partitions/`.
pub(crate) fn is_backup_dir(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("base_"))
        && dir
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == BASEBACKUPS)
        && dir.join("tar_partitions").is_dir()
}

/// The backup's stop sentinel, beside its folder.
pub(crate) fn sentinel_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.with_file_name(format!("{name}_backup_stop_sentinel.json"))
}

/// The tar archives of a backup (`tar_partitions/*.tar[.<ext>]`), sorted, with their codecs.
pub(crate) fn archives(dir: &Path) -> Vec<(PathBuf, Option<Codec>)> {
    let Ok(rd) = std::fs::read_dir(dir.join("tar_partitions")) else {
        return Vec::new();
    };
    let mut v: Vec<(PathBuf, Option<Codec>)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            match Codec::strip(&name) {
                Some((stem, c)) if stem.ends_with(".tar") => Some((e.path(), Some(c))),
                None if name.ends_with(".tar") => Some((e.path(), None)),
                _ => None,
            }
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// One file the sentinel lists.
#[derive(Debug, Clone, Copy, Default)]
struct FileDesc {
    /// Unchanged since the base of a delta backup: stored there, not here.
    skipped: bool,
    /// Stored as WAL-G's increment of changed pages, not as pages.
    incremented: bool,
}

/// What the stop sentinel says.
#[derive(Debug, Clone)]
pub(crate) struct Sentinel {
    /// `LSN`: where the backup starts (replay begins).
    pub start: u64,
    /// `FinishLSN`: where it becomes consistent.
    pub finish: u64,
    pub system_id: Option<u64>,
    /// `DeltaFrom`: the backup a delta backup builds on.
    pub delta_from: Option<String>,
    files: Option<BTreeMap<String, FileDesc>>,
}

impl Sentinel {
    fn parse(bytes: &[u8]) -> Result<Sentinel, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("it is not JSON: {e}"))?;
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
        let start = num("LSN").ok_or("it has no LSN (the backup's start)")?;
        let finish = num("FinishLSN").ok_or("it has no FinishLSN (the backup's end)")?;
        if finish < start {
            return Err(format!(
                "its FinishLSN {} lies before its LSN {}",
                super::wal::Lsn(finish),
                super::wal::Lsn(start)
            ));
        }
        let files = match v.get("Files") {
            Some(serde_json::Value::Object(m)) => Some(
                m.iter()
                    .map(|(k, d)| {
                        let flag =
                            |f: &str| d.get(f).and_then(serde_json::Value::as_bool) == Some(true);
                        (
                            k.trim_start_matches('/').to_owned(),
                            FileDesc {
                                skipped: flag("IsSkipped"),
                                incremented: flag("IsIncremented"),
                            },
                        )
                    })
                    .collect(),
            ),
            _ => None,
        };
        let delta_from = v
            .get("DeltaFrom")
            .and_then(|d| d.as_str())
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        if delta_from
            .as_deref()
            .is_some_and(|d| d.contains('/') || d.starts_with('.'))
        {
            return Err("its DeltaFrom is not a backup's name".into());
        }
        Ok(Sentinel {
            start,
            finish,
            system_id: num("SystemIdentifier"),
            delta_from,
            files,
        })
    }
}

/// What checking one backup found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub findings: Vec<Finding>,
    pub warnings: Vec<(PathBuf, String)>,
    pub units: u64,
    pub sentinel: Option<Sentinel>,
}

/// The timeline a backup began on: the first 8 hex digits of the segment in its name.
pub(crate) fn timeline(dir: &Path) -> u32 {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("base_"))
        .and_then(|n| n.get(..8))
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .unwrap_or(1)
}

/// Checks the WAL-G backup in `dir` on the current rayon pool.
pub(crate) fn check(dir: &Path, blcksz: u32, relseg: u32, wal: &super::wal::Registry) -> Checked {
    let mut out = Checked::default();
    let sentinel_file = sentinel_path(dir);
    let read = crate::access::open_for_scan(&sentinel_file, true).and_then(|f| {
        let mut b = Vec::new();
        f.take(MAX_SENTINEL).read_to_end(&mut b)?;
        Ok(b)
    });
    let sentinel = match read {
        Ok(b) => match Sentinel::parse(&b) {
            Ok(s) => Some(s),
            Err(e) => {
                let mut f = Finding::new(
                    FindingKind::BadHeader,
                    0,
                    b.len() as u64,
                    format!("the backup's stop sentinel cannot be used: {e}; WAL-G cannot restore the backup without it"),
                );
                f.file = Some(sentinel_file.clone());
                out.findings.push(f);
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut f = Finding::new(
                FindingKind::MissingFile,
                0,
                0,
                "the backup has no stop sentinel: WAL-G writes it last, so the backup never finished (or the sentinel was lost); WAL-G neither lists nor restores it",
            );
            f.file = Some(sentinel_file.clone());
            out.findings.push(f);
            None
        }
        Err(e) => {
            out.warnings.push((
                sentinel_file.clone(),
                format!("the stop sentinel cannot be read ({e}): the backup's end is not known"),
            ));
            None
        }
    };
    let not_pages: BTreeSet<Vec<u8>> = sentinel
        .as_ref()
        .and_then(|s| s.files.as_ref())
        .map(|f| {
            f.iter()
                .filter(|(_, d)| d.incremented)
                .map(|(k, _)| k.as_bytes().to_vec())
                .collect()
        })
        .unwrap_or_default();
    let algorithms = BTreeMap::new();
    let setting = super::tarstream::Setting {
        algorithms: &algorithms,
        blcksz,
        relseg,
        wal,
        not_pages: &not_pages,
    };
    let parts = archives(dir);
    if parts.is_empty() {
        let mut f = Finding::new(
            FindingKind::MissingFile,
            0,
            0,
            "the backup's tar_partitions/ holds no tar archive: nothing of it can be restored",
        );
        f.file = Some(dir.join("tar_partitions"));
        out.findings.push(f);
    }
    let results: Vec<super::tarstream::Checked> = parts
        .par_iter()
        .with_max_len(1)
        .map(|(p, c)| super::tarstream::check_archive(p, *c, "", false, &setting))
        .collect();
    let mut members: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut cut = false;
    for r in results {
        out.findings.extend(r.findings);
        out.warnings.extend(r.warnings);
        out.units += r.units;
        cut |= r.cut;
        members.extend(r.members.into_iter().map(|m| m.rel));
    }
    if let Some(files) = sentinel.as_ref().and_then(|s| s.files.as_ref()) {
        let absent: Vec<&String> = files
            .iter()
            .filter(|(k, d)| !d.skipped && !members.contains(k.as_bytes()))
            .map(|(k, _)| k)
            .collect();
        if cut && !absent.is_empty() {
            out.warnings.push((
                dir.to_path_buf(),
                format!("{} files the sentinel lists are in no partition read to its end: they may lie after the damage, and are not compared", absent.len()),
            ));
        } else {
            for k in absent {
                let mut f = Finding::new(
                    FindingKind::MissingFile,
                    0,
                    0,
                    "the backup's stop sentinel lists this file, and no tar partition of the backup holds it: it cannot be restored",
                );
                let mut o = Owner::new();
                o.insert("backup".into(), dir.to_string_lossy().into_owned().into());
                o.insert("entry".into(), k.clone().into());
                f.owner = Some(o);
                f.file = Some(dir.join("tar_partitions"));
                out.findings.push(f);
            }
        }
    }
    if let Some(base) = sentinel.as_ref().and_then(|s| s.delta_from.as_ref()) {
        let base_dir = dir.with_file_name(base);
        if !base_dir.is_dir() {
            let mut f = Finding::new(
                FindingKind::MissingFile,
                0,
                0,
                format!("this delta backup builds on {base} (DeltaFrom), which is not in basebackups_005/: it cannot be restored"),
            );
            f.file = Some(base_dir);
            out.findings.push(f);
        }
    }
    out.sentinel = sentinel;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_parse_and_hostile_ones_are_refused() {
        let s = Sentinel::parse(
            br#"{"LSN":100663336,"FinishLSN":100663552,"SystemIdentifier":7715254110915429003,"PgVersion":150018,"Files":{"/base/1/112":{"IsIncremented":true,"IsSkipped":false},"/PG_VERSION":{"IsSkipped":true}},"DeltaFrom":"base_000000010000000000000004"}"#,
        )
        .unwrap();
        assert_eq!((s.start, s.finish), (0x6000028, 0x6000100));
        assert_eq!(s.system_id, Some(7715254110915429003));
        let files = s.files.unwrap();
        assert!(files["base/1/112"].incremented && files["PG_VERSION"].skipped);
        assert_eq!(
            s.delta_from.as_deref(),
            Some("base_000000010000000000000004")
        );
        for bad in [
            &b"{}"[..],
            br#"{"LSN":5,"FinishLSN":4}"#,
            br#"{"LSN":"0/5","FinishLSN":6}"#,
            br#"{"LSN":5,"FinishLSN":6,"DeltaFrom":"../../etc"}"#,
            b"not json",
        ] {
            assert!(
                Sentinel::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn backup_folders_are_told_by_their_place() {
        let t = tempfile::tempdir().unwrap();
        let d = t
            .path()
            .join(BASEBACKUPS)
            .join("base_000000010000000000000004");
        std::fs::create_dir_all(d.join("tar_partitions")).unwrap();
        assert!(is_backup_dir(&d));
        assert_eq!(timeline(&d), 1);
        assert!(
            sentinel_path(&d).ends_with("base_000000010000000000000004_backup_stop_sentinel.json")
        );
        let elsewhere = t.path().join("base_000000010000000000000004");
        std::fs::create_dir_all(elsewhere.join("tar_partitions")).unwrap();
        assert!(!is_backup_dir(&elsewhere));
    }
}
