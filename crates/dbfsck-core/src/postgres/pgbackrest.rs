//! pgBackRest backups (posix repositories, `docs/postgres-backups.md` §5): a backup directory
//! `backup/<stanza>/<label>/` with its `backup.manifest` (an INI file whose values are JSON) and
//! the backed-up files under `pg_data/` (and `pg_tblspc/<oid>/`), each compressed as the backup's
//! `option-compress-type` says. Every file the manifest lists is found (in this backup, or in
//! the earlier one it `reference`s), its stored bytes checked against `rck` (the SHA-1 pgBackRest
//! recorded of the repository file), decompressed as a stream, its size and SHA-1 (`checksum`)
//! compared, and every page of a relation file verified with PostgreSQL's page checksum — pages
//! newer than the backup's start skipped, as pgBackRest skips them (a concurrent write may tear
//! them, and replay rewrites them). The manifest's own `backrest-checksum` is verified too.

use std::collections::BTreeSet;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha1::{Digest, Sha1};

use super::manifest::hex;
use crate::codec::Codec;
use crate::finding::{Finding, FindingKind, Owner};

/// The manifest's file name in a backup directory.
pub(crate) const MANIFEST: &str = "backup.manifest";

/// A manifest larger than this is refused (about 300 bytes per file listed).
const MAX_MANIFEST: u64 = 1 << 30;

/// Whether `dir` is a pgBackRest backup directory: its `backup.manifest` and `pg_data/`.
pub(crate) fn is_backup_dir(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file() && dir.join("pg_data").is_dir()
}

/// An INI file as pgBackRest writes it: sections in order, each with its `key=value` lines in
/// order (the values JSON), a section name possibly repeated.
#[derive(Debug, Default)]
struct Ini {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Ini {
    fn parse(text: &str) -> Result<Ini, String> {
        let mut ini = Ini::default();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                ini.sections.push((name.to_owned(), Vec::new()));
                continue;
            }
            let (Some((key, value)), Some(section)) =
                (line.split_once('='), ini.sections.last_mut())
            else {
                return Err(format!(
                    "line {} is neither a [section] nor key=value in one",
                    n + 1
                ));
            };
            section.1.push((key.to_owned(), value.to_owned()));
        }
        Ok(ini)
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .iter()
            .filter(|(s, _)| s == section)
            .flat_map(|(_, kv)| kv)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A value as JSON.
    fn json(&self, section: &str, key: &str) -> Option<serde_json::Value> {
        serde_json::from_str(self.get(section, key)?).ok()
    }

    fn string(&self, section: &str, key: &str) -> Option<String> {
        match self.json(section, key)? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// `backrest-checksum` as stored, and as computed: the SHA-1 of the file rendered as one
    /// JSON object `{"section":{"key":value,…},…}` in file order, without the checksum itself
    /// (pgBackRest's info checksum).
    fn checksum(&self) -> (Option<String>, String) {
        let mut stored = None;
        let mut h = Sha1::new();
        h.update(b"{");
        let mut first = true;
        for (name, kv) in &self.sections {
            let keep: Vec<&(String, String)> = kv
                .iter()
                .filter(|(k, v)| {
                    let sum = name == "backrest" && k == "backrest-checksum";
                    if sum {
                        stored = serde_json::from_str::<String>(v).ok();
                    }
                    !sum
                })
                .collect();
            if keep.is_empty() {
                continue;
            }
            if !first {
                h.update(b",");
            }
            first = false;
            h.update(json_str(name).as_bytes());
            h.update(b":{");
            for (i, (k, v)) in keep.iter().enumerate() {
                if i > 0 {
                    h.update(b",");
                }
                h.update(json_str(k).as_bytes());
                h.update(b":");
                h.update(v.as_bytes());
            }
            h.update(b"}");
        }
        h.update(b"}");
        (stored, hex(&h.finalize()))
    }
}

/// A string as JSON writes it (what pgBackRest's renderer escapes: quote, backslash, controls).
fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// SHA-1 of nothing: a zero-length file's checksum, which the manifest leaves out.
const EMPTY_SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";

/// One file the manifest lists.
#[derive(Debug, Clone)]
struct Entry {
    /// Its name in the manifest (`pg_data/base/5/16407`): the path under the backup directory.
    key: String,
    size: u64,
    /// SHA-1 of its bytes.
    checksum: String,
    /// SHA-1 of the file as stored in the repository (compressed), when recorded.
    rck: Option<String>,
    /// The backup whose directory stores it, when not this one.
    reference: Option<String>,
    /// Stored inside a bundle file (`repo-bundle`).
    bundled: bool,
}

/// What a backup's manifest says.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    /// The backup's label (its directory's name).
    pub label: String,
    /// `backup-lsn-start` and `backup-lsn-stop`.
    pub lsn_start: u64,
    pub lsn_stop: u64,
    /// `backup-archive-start`: the first WAL segment it needs (its timeline is the backup's).
    pub archive_start: String,
    /// `db-system-id`, `db-version` and `db-id`: which cluster, and its archive's folder
    /// (`archive/<stanza>/<db-version>-<db-id>/`).
    pub system_id: Option<u64>,
    pub db_version: String,
    pub db_id: u64,
    codec: Option<Codec>,
    files: Vec<Entry>,
}

impl Manifest {
    fn parse(ini: &Ini) -> Result<Manifest, String> {
        let lsn = |key: &str| {
            ini.string("backup", key)
                .and_then(|s| super::wal::parse_lsn(&s))
                .ok_or_else(|| format!("[backup] {key} is missing or not an LSN"))
        };
        let need = |section: &str, key: &str| {
            ini.string(section, key)
                .ok_or_else(|| format!("[{section}] {key} is missing"))
        };
        let codec = match ini
            .string("backup:option", "option-compress-type")
            .as_deref()
        {
            Some("none") => None,
            Some(t) => Some(Codec::from_extension(t).ok_or_else(|| {
                format!("option-compress-type {t:?} is not one this scan decodes")
            })?),
            // Before compress-type (pgBackRest < 2.27): option-compress=true is gzip.
            None => ini
                .json("backup:option", "option-compress")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
                .then_some(Codec::Gzip),
        };
        let mut files = Vec::new();
        for (_, kv) in ini.sections.iter().filter(|(s, _)| s == "target:file") {
            for (key, value) in kv {
                let v: serde_json::Value = serde_json::from_str(value)
                    .map_err(|e| format!("the entry of {key} is not JSON: {e}"))?;
                let size = v
                    .get("size")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| format!("the entry of {key} has no size"))?;
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                // A name that climbs out of the backup directory is refused.
                let safe = Path::new(key)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !safe {
                    return Err(format!("the file name {key:?} leaves the backup directory"));
                }
                let checksum = match text("checksum") {
                    Some(c) => c,
                    None if size == 0 => EMPTY_SHA1.to_owned(),
                    None => return Err(format!("the entry of {key} has no checksum")),
                };
                let reference = text("reference");
                if reference
                    .as_deref()
                    .is_some_and(|r| r.is_empty() || r.contains('/') || r.starts_with('.'))
                {
                    return Err(format!(
                        "the entry of {key} references an impossible backup label"
                    ));
                }
                files.push(Entry {
                    key: key.clone(),
                    size,
                    checksum,
                    rck: text("rck"),
                    reference,
                    bundled: v.get("bundle-id").is_some(),
                });
            }
        }
        let (lsn_start, lsn_stop) = (lsn("backup-lsn-start")?, lsn("backup-lsn-stop")?);
        if lsn_stop < lsn_start {
            return Err(format!(
                "backup-lsn-stop {} lies before backup-lsn-start {}",
                super::wal::Lsn(lsn_stop),
                super::wal::Lsn(lsn_start)
            ));
        }
        Ok(Manifest {
            label: need("backup", "backup-label")?,
            lsn_start,
            lsn_stop,
            archive_start: need("backup", "backup-archive-start")?,
            system_id: ini
                .json("backup:db", "db-system-id")
                .and_then(|v| v.as_u64()),
            db_version: need("backup:db", "db-version")?,
            db_id: ini
                .json("backup:db", "db-id")
                .and_then(|v| v.as_u64())
                .unwrap_or(1),
            codec,
            files,
        })
    }

    /// The timeline the backup began on (the first 8 hex digits of its first segment).
    pub fn timeline(&self) -> u32 {
        self.archive_start
            .get(..8)
            .and_then(|t| u32::from_str_radix(t, 16).ok())
            .unwrap_or(1)
    }
}

/// What checking one backup found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub findings: Vec<Finding>,
    pub warnings: Vec<(PathBuf, String)>,
    /// Units verified (pages, and each file whole).
    pub units: u64,
    /// The manifest, when it parsed.
    pub manifest: Option<Manifest>,
    /// Files of earlier backups this one needs (its `reference`d files), found where stored.
    pub referenced: Vec<PathBuf>,
}

/// Reads `backup.manifest` of `dir`, bounded.
fn read_manifest(path: &Path) -> io::Result<Vec<u8>> {
    let f = crate::access::open_for_scan(path, true)?;
    let mut b = Vec::new();
    f.take(MAX_MANIFEST + 1).read_to_end(&mut b)?;
    if b.len() as u64 > MAX_MANIFEST {
        return Err(io::Error::other(format!(
            "it is larger than {} MiB",
            MAX_MANIFEST >> 20
        )));
    }
    Ok(b)
}

/// The owner of a finding on a backed-up file.
fn owner(dir: &Path, key: &str) -> Owner {
    let mut o = Owner::new();
    o.insert("backup".into(), dir.to_string_lossy().into_owned().into());
    o.insert("entry".into(), key.into());
    o.insert("algorithm".into(), "SHA1".into());
    o
}

/// Checks the pgBackRest backup in `dir` (see the module's comment) on the current rayon pool.
/// `seen`: stored files an earlier backup of this scan checked (an incremental backup's files
/// of its full one): they are not read twice, their findings stand for both.
pub(crate) fn check(dir: &Path, seen: &mut std::collections::HashSet<PathBuf>) -> Checked {
    let mut out = Checked::default();
    let path = dir.join(MANIFEST);
    let bytes = match read_manifest(&path) {
        Ok(b) => b,
        Err(e) => {
            out.warnings.push((
                path,
                format!("backup.manifest cannot be read ({e}): the backup is not checked"),
            ));
            return out;
        }
    };
    let bad = |why: String| {
        let mut f = Finding::new(FindingKind::BadHeader, 0, bytes.len() as u64, why);
        f.file = Some(path.clone());
        f
    };
    let ini = match std::str::from_utf8(&bytes)
        .map_err(|e| format!("not UTF-8 ({e})"))
        .and_then(Ini::parse)
    {
        Ok(i) => i,
        Err(e) => {
            out.findings.push(bad(format!(
                "backup.manifest cannot be parsed: {e}; no file of the backup is checked"
            )));
            return out;
        }
    };
    if ini.sections.iter().any(|(s, _)| s == "cipher") || ini.get("cipher", "cipher-pass").is_some()
    {
        out.warnings.push((
            path,
            "the backup is encrypted (repo cipher): encrypted pgBackRest repositories are not checked"
                .into(),
        ));
        return out;
    }
    let (stored, computed) = ini.checksum();
    if stored.as_deref() != Some(computed.as_str()) {
        let mut f = Finding::new(
            FindingKind::ChecksumMismatch,
            0,
            bytes.len() as u64,
            "backup.manifest fails its own backrest-checksum (SHA-1): it was changed or damaged since pgBackRest wrote it; the files are still compared with it, but its entries cannot be trusted",
        );
        f.expected = stored.or_else(|| Some(String::new()));
        f.actual = Some(computed);
        f.file = Some(path.clone());
        out.findings.push(f);
    }
    let manifest = match Manifest::parse(&ini) {
        Ok(m) => m,
        Err(e) => {
            out.findings.push(bad(format!(
                "backup.manifest is not a backup's manifest: {e}; no file of the backup is checked"
            )));
            return out;
        }
    };
    let Some(repo) = dir.parent() else {
        return out;
    };
    let bundled = manifest.files.iter().filter(|e| e.bundled).count();
    if bundled > 0 {
        out.warnings.push((
            dir.to_path_buf(),
            format!("{bundled} files are stored in bundles (repo-bundle): bundled files are not checked yet"),
        ));
    }
    // Where each file is stored: its backup's directory, with the codec's extension (a
    // referenced backup may have used another compression: each is tried).
    let exts: Vec<Option<Codec>> = std::iter::once(manifest.codec)
        .chain(
            [Codec::Gzip, Codec::Lz4, Codec::Zstd, Codec::Bzip2]
                .into_iter()
                .map(Some),
        )
        .chain(std::iter::once(None))
        .collect();
    let locate = |e: &Entry| -> Option<(PathBuf, Option<Codec>)> {
        let base = repo
            .join(e.reference.as_deref().unwrap_or(&manifest.label))
            .join(&e.key);
        exts.iter().find_map(|c| {
            let mut p = base.clone().into_os_string();
            if let Some(c) = c {
                p.push(".");
                p.push(c.extension());
            }
            let p = PathBuf::from(p);
            std::fs::symlink_metadata(&p)
                .is_ok_and(|m| m.is_file())
                .then_some((p, *c))
        })
    };
    // The cluster's block and segment sizes, from its backed-up pg_control.
    let control = manifest
        .files
        .iter()
        .find(|e| e.key == "pg_data/global/pg_control")
        .and_then(&locate)
        .and_then(|(p, c)| {
            let raw = std::fs::read(&p).ok()?;
            let bytes = match c {
                Some(c) => c.decode_bounded(&raw, 1 << 16).0,
                None => raw,
            };
            super::parse_control(&bytes)
        })
        .filter(super::Control::sizes_plausible);
    let blcksz = control.map_or(super::DEFAULT_BLCKSZ, |c| c.blcksz);
    let relseg = control.map_or(super::DEFAULT_RELSEG, |c| c.relseg_size);
    let mut work: Vec<(&Entry, PathBuf, Option<Codec>)> = Vec::new();
    for e in manifest.files.iter().filter(|e| !e.bundled) {
        match locate(e) {
            Some((p, c)) => {
                if e.reference.is_some() {
                    out.referenced.push(p.clone());
                }
                if seen.insert(p.clone()) {
                    work.push((e, p, c));
                }
            }
            None => {
                let mut p = repo
                    .join(e.reference.as_deref().unwrap_or(&manifest.label))
                    .join(&e.key)
                    .into_os_string();
                if let Some(c) = manifest.codec {
                    p.push(".");
                    p.push(c.extension());
                }
                let mut f = Finding::new(
                    FindingKind::MissingFile,
                    0,
                    e.size,
                    format!(
                        "backup.manifest lists this file{}, and it is not in the repository: the backup cannot be restored without it",
                        e.reference
                            .as_deref()
                            .map_or(String::new(), |r| format!(" (stored by the earlier backup {r})"))
                    ),
                );
                f.owner = Some(owner(dir, &e.key));
                let p = PathBuf::from(p);
                if e.reference.is_some() {
                    // It counts against this backup, which needs it.
                    out.referenced.push(p.clone());
                }
                f.file = Some(p);
                out.findings.push(f);
            }
        }
    }
    // Files stored here that the manifest does not list.
    let listed: BTreeSet<&str> = manifest
        .files
        .iter()
        .filter(|e| e.reference.is_none())
        .map(|e| e.key.as_str())
        .collect();
    for p in stored_files(dir) {
        let Ok(rel) = p.strip_prefix(dir) else {
            continue;
        };
        let rel = rel.to_string_lossy();
        let key = Codec::strip(&rel).map_or(&*rel, |(stem, _)| stem);
        if !listed.contains(key) {
            let len = std::fs::symlink_metadata(&p).map_or(0, |m| m.len());
            let mut f = Finding::new(
                FindingKind::UnexpectedFile,
                0,
                len,
                "a file in the backup that backup.manifest does not list: pgBackRest never restores it",
            );
            f.owner = Some(owner(dir, key));
            f.file = Some(p);
            out.findings.push(f);
        }
    }
    // Largest first, on every core; each file streamed (memory: the decoder's window).
    work.sort_by_key(|(e, _, _)| std::cmp::Reverse(e.size));
    let results: Vec<(Vec<Finding>, u64, Option<String>)> = work
        .par_iter()
        .map(|(e, p, c)| check_file(dir, e, p, *c, blcksz, relseg, manifest.lsn_start))
        .collect();
    for (findings, units, note) in results {
        out.findings.extend(findings);
        out.units += units;
        if let Some(n) = note {
            out.warnings.push((dir.to_path_buf(), n));
        }
    }
    out.manifest = Some(manifest);
    out
}

/// Checks a stanza's info files: `backup/<stanza>/backup.info` (its `backrest-checksum`, and
/// every backup it lists present: `pgbackrest restore --set` fails on one that is not) and
/// `archive/<stanza>/archive.info` (its checksum). pgBackRest falls back to an info file's
/// `.copy` when the file fails: a failing file whose copy verifies is a warning, both failing a
/// finding. `stanza`: the stanza's backup folder.
pub(crate) fn check_stanza(stanza: &Path) -> Checked {
    let mut out = Checked::default();
    let archive_info = stanza
        .file_name()
        .zip(stanza.parent().and_then(Path::parent))
        .map(|(name, repo)| repo.join("archive").join(name).join("archive.info"))
        // No archive folder at all: the restore verdict says the archive was not scanned.
        .filter(|p| p.parent().is_some_and(Path::is_dir));
    let backup_info = stanza.join("backup.info");
    for info in std::iter::once(backup_info.clone()).chain(archive_info) {
        let verify = |p: &Path| -> Result<Ini, String> {
            let bytes = read_manifest(p).map_err(|e| format!("it cannot be read ({e})"))?;
            let text = std::str::from_utf8(&bytes).map_err(|_| "it is not UTF-8".to_owned())?;
            let ini = Ini::parse(text)?;
            let (stored, computed) = ini.checksum();
            if stored.as_deref() != Some(computed.as_str()) {
                return Err(format!(
                    "its backrest-checksum is {}, its content's {computed}",
                    stored.unwrap_or_default()
                ));
            }
            Ok(ini)
        };
        let mut copy = info.clone().into_os_string();
        copy.push(".copy");
        let copy = PathBuf::from(copy);
        let name = info
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ini = match (verify(&info), verify(&copy)) {
            (Ok(ini), _) => Some(ini),
            (Err(e), Ok(ini)) => {
                out.warnings.push((
                    info.clone(),
                    format!("{name} fails ({e}); pgBackRest uses its .copy, which verifies"),
                ));
                Some(ini)
            }
            (Err(e), Err(c)) => {
                let len = std::fs::symlink_metadata(&info).map_or(0, |m| m.len());
                let mut f = Finding::new(
                    FindingKind::BadHeader,
                    0,
                    len,
                    format!("{name} fails ({e}), and so does its .copy ({c}): pgBackRest cannot use the stanza's {}", if name == "archive.info" { "archive" } else { "backups" }),
                );
                f.file = Some(info.clone());
                out.findings.push(f);
                None
            }
        };
        if info != backup_info {
            continue;
        }
        let Some(ini) = ini else { continue };
        for (_, kv) in ini.sections.iter().filter(|(s, _)| s == "backup:current") {
            for (label, _) in kv {
                let ok = !label.contains('/') && !label.starts_with('.');
                if ok && stanza.join(label).join(MANIFEST).is_file() {
                    continue;
                }
                let mut f = Finding::new(
                    FindingKind::MissingFile,
                    0,
                    0,
                    format!("backup.info lists the backup {label:?}, which is not in the repository: pgbackrest restore --set={label} fails"),
                );
                f.file = Some(if ok {
                    stanza.join(label)
                } else {
                    backup_info.clone()
                });
                out.findings.push(f);
            }
        }
    }
    out
}

/// The regular files under a backup directory's `pg_data/` and `pg_tblspc/` (symbolic links
/// not followed), sorted.
fn stored_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["pg_data", "pg_tblspc"]
        .iter()
        .map(|d| dir.join(d))
        .collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Hashes the bytes read through it (the file as stored).
struct Tee<R> {
    inner: R,
    sha: Sha1,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Checks one stored file: its repository SHA-1, its decoding, size and SHA-1, its pages.
/// (findings, units verified, a note).
fn check_file(
    dir: &Path,
    e: &Entry,
    path: &Path,
    codec: Option<Codec>,
    blcksz: u32,
    relseg: u32,
    start_lsn: u64,
) -> (Vec<Finding>, u64, Option<String>) {
    let mut findings = Vec::new();
    let stored_len = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    let with = |mut f: Finding| {
        f.owner = Some(owner(dir, &e.key));
        f.file = Some(path.to_path_buf());
        f
    };
    let file = match crate::access::open_for_scan(path, true) {
        Ok(f) => f,
        Err(err) => {
            return (
                vec![with(Finding::new(
                    FindingKind::IoError,
                    0,
                    stored_len,
                    format!("the backed-up file could not be opened: {err}"),
                ))],
                0,
                None,
            )
        }
    };
    // A relation file (base/, global/, pg_tblspc/): its pages are verified as they decode.
    let name = Path::new(&e.key)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let in_relation_dir = e.key.starts_with("pg_data/base/")
        || e.key.starts_with("pg_data/global/")
        || e.key.starts_with("pg_tblspc/");
    let rel =
        super::parse_relfile_name(name).filter(|r| in_relation_dir && r.temp_backend.is_none());
    let pages = rel.map(|r| {
        super::stream::Pages::new(
            blcksz,
            u64::from(r.segment) * u64::from(relseg),
            start_lsn,
            0,
            owner(dir, &e.key),
        )
    });
    let mut checker = super::stream::Sink::new(super::stream::Hasher::Sha1(Sha1::new()), pages);
    // A stream that inflates past the manifest's size is not read on (a decompression bomb).
    checker.limit = Some(e.size);
    let mut tee = Tee {
        inner: file,
        sha: Sha1::new(),
    };
    let decoded = {
        let input = BufReader::with_capacity(1 << 20, &mut tee);
        match codec {
            Some(c) => c.decode(input, &mut checker).map(|_| ()),
            None => {
                let mut input = input;
                io::copy(&mut input, &mut checker)
                    .map(|_| ())
                    .map_err(|err| crate::codec::DecodeError::Output(err.to_string()))
            }
        }
    };
    // The rest of the stored bytes, for their SHA-1 (a stream that failed stopped early).
    let rest = io::copy(&mut tee, &mut io::sink());
    let mut units = 1;
    let mut note = None;
    let pages = checker.pages.take();
    if let Some(p) = pages {
        units += p.checked;
        findings.extend(p.findings.into_iter().map(|mut f| {
            f.file = Some(path.to_path_buf());
            f
        }));
        if p.skipped > 0 {
            note = Some(format!(
                "{}: {} pages newer than the backup's start fail their checksum — written while the backup read them; replay of the backup's WAL rewrites them (full-page writes), as pgBackRest and pg_basebackup accept",
                path.display(),
                p.skipped
            ));
        }
    }
    let stored_sha = hex(&tee.sha.finalize());
    if let (Some(want), Ok(_)) = (&e.rck, &rest) {
        if *want != stored_sha {
            let mut f = Finding::new(
                FindingKind::ChecksumMismatch,
                0,
                stored_len,
                "the stored file's SHA-1 differs from backup.manifest's repository checksum (rck): the file in the repository changed or was damaged after the backup wrote it",
            );
            f.expected = Some(want.clone());
            f.actual = Some(stored_sha);
            findings.push(with(f));
        }
    }
    if checker.n > e.size {
        let mut f = Finding::new(
            FindingKind::SizeMismatch,
            e.size,
            checker.n - e.size,
            format!(
                "the file decompresses to more than the {} bytes backup.manifest gives: it is not the file backed up (read no further)",
                e.size
            ),
        );
        f.expected = Some(e.size.to_string());
        f.actual = Some(format!("more than {}", e.size));
        findings.push(with(f));
        return (findings, units, note);
    }
    match decoded {
        Err(crate::codec::DecodeError::Output(why)) => {
            findings.push(with(Finding::new(
                FindingKind::IoError,
                0,
                stored_len,
                format!("the backed-up file could not be read: {why}"),
            )));
            return (findings, units, note);
        }
        Err(err) => {
            let kind = match err {
                crate::codec::DecodeError::Truncated { .. } => FindingKind::Truncated,
                _ => FindingKind::BadHeader,
            };
            findings.push(with(Finding::new(
                kind,
                checker.n,
                e.size.saturating_sub(checker.n),
                format!(
                    "{err}: the file's bytes from offset {} on are lost",
                    checker.n
                ),
            )));
            return (findings, units, note);
        }
        Ok(()) => {}
    }
    if checker.n != e.size {
        let (a, b) = (checker.n.min(e.size), checker.n.max(e.size));
        let mut f = Finding::new(
            FindingKind::SizeMismatch,
            a,
            b - a,
            format!(
                "the file decompresses to {} bytes; backup.manifest says {}",
                checker.n, e.size
            ),
        );
        f.expected = Some(e.size.to_string());
        f.actual = Some(checker.n.to_string());
        findings.push(with(f));
        return (findings, units, note);
    }
    let got = hex(&checker.hasher.finish());
    if got != e.checksum {
        let mut f = Finding::new(
            FindingKind::ChecksumMismatch,
            0,
            e.size,
            "the file's SHA-1 differs from backup.manifest's: its bytes are not the ones backed up",
        );
        f.expected = Some(e.checksum.clone());
        f.actual = Some(got);
        findings.push(with(f));
    }
    (findings, units, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST_TEXT: &str = "[backrest]\nbackrest-format=5\nbackrest-version=\"2.45\"\n\n[backup]\nbackup-archive-start=\"000000010000000000000004\"\nbackup-archive-stop=\"000000010000000000000004\"\nbackup-label=\"20261204-012622F\"\nbackup-lsn-start=\"0/4000028\"\nbackup-lsn-stop=\"0/4000100\"\nbackup-type=\"full\"\n\n[backup:db]\ndb-id=1\ndb-system-id=7715254110915429003\ndb-version=\"15\"\n\n[backup:option]\noption-compress-type=\"gz\"\n\n[target:file]\npg_data/PG_VERSION={\"checksum\":\"587b596f04f7db9c2cad3d6b87dd2b3a05de4f35\",\"size\":3,\"timestamp\":1}\npg_data/base/1/13394={\"size\":0,\"timestamp\":1}\n";

    fn with_checksum(text: &str) -> String {
        let ini = Ini::parse(text).unwrap();
        let (_, sum) = ini.checksum();
        format!("{text}\n[backrest]\nbackrest-checksum=\"{sum}\"\n")
    }

    #[test]
    fn a_manifest_parses_and_its_checksum_verifies() {
        let text = with_checksum(MANIFEST_TEXT);
        let ini = Ini::parse(&text).unwrap();
        let (stored, computed) = ini.checksum();
        assert_eq!(stored.as_deref(), Some(computed.as_str()));
        let m = Manifest::parse(&ini).unwrap();
        assert_eq!(
            (m.lsn_start, m.lsn_stop, m.timeline()),
            (0x4000028, 0x4000100, 1)
        );
        assert_eq!(m.codec, Some(Codec::Gzip));
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.files[1].checksum, EMPTY_SHA1);
        assert_eq!(m.system_id, Some(7715254110915429003));
        // One changed value: the checksum fails.
        let edited = text.replace("\"size\":3", "\"size\":4");
        let (stored, computed) = Ini::parse(&edited).unwrap().checksum();
        assert_ne!(stored.as_deref(), Some(computed.as_str()));
    }

    /// backup.info: a backup it lists that is gone is missing; a failing info file whose copy
    /// verifies is only a warning (pgBackRest uses the copy); both failing is a finding.
    #[test]
    fn stanza_info_files_are_checked() {
        let t = tempfile::tempdir().unwrap();
        let stanza = t.path().join("backup/main");
        std::fs::create_dir_all(stanza.join("20261204-000000F")).unwrap();
        std::fs::write(stanza.join("20261204-000000F").join(MANIFEST), "x").unwrap();
        let info = with_checksum("[backup:current]\n20261204-000000F={\"backup-type\":\"full\"}\n20261204-000001F={\"backup-type\":\"full\"}\n");
        std::fs::write(stanza.join("backup.info"), &info).unwrap();
        std::fs::write(stanza.join("backup.info.copy"), &info).unwrap();
        let c = check_stanza(&stanza);
        let missing: Vec<_> = c
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::MissingFile)
            .collect();
        assert_eq!(missing.len(), 1, "{:?}", c.findings);
        assert!(missing[0]
            .file
            .as_deref()
            .unwrap()
            .ends_with("20261204-000001F"));
        std::fs::write(stanza.join("backup.info"), info.replace("full", "diff")).unwrap();
        let c = check_stanza(&stanza);
        assert!(c.findings.iter().all(|f| f.kind != FindingKind::BadHeader));
        assert!(c.warnings.iter().any(|w| w.1.contains(".copy")));
        std::fs::write(stanza.join("backup.info.copy"), "garbage").unwrap();
        let c = check_stanza(&stanza);
        assert!(c.findings.iter().any(|f| f.kind == FindingKind::BadHeader));
    }

    /// Regression (review): a stored file that inflates past the size the manifest gives (a
    /// decompression bomb) is read no further than that size, and reported.
    #[test]
    fn a_stream_past_its_size_is_cut_short() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("backup/main/20261204-012622F");
        let rel = dir.join("pg_data/base/1");
        std::fs::create_dir_all(&rel).unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, &vec![0u8; 64 << 20]).unwrap();
        std::fs::write(rel.join("13394.gz"), e.finish().unwrap()).unwrap();
        std::fs::write(dir.join(MANIFEST), with_checksum(MANIFEST_TEXT)).unwrap();
        let c = check(&dir, &mut Default::default());
        let f = c
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::SizeMismatch)
            .unwrap_or_else(|| panic!("{:?}", c.findings));
        assert!(f.detail.contains("more than the 0 bytes"), "{}", f.detail);
    }

    /// Hostile manifests: names that leave the backup, impossible references, garbage.
    #[test]
    fn hostile_manifests_are_refused() {
        for bad in [
            MANIFEST_TEXT.replace("pg_data/PG_VERSION", "pg_data/../../etc/passwd"),
            MANIFEST_TEXT.replace("pg_data/PG_VERSION", "/etc/passwd"),
            MANIFEST_TEXT.replace("\"size\":3,", "\"size\":3,\"reference\":\"../x\","),
            MANIFEST_TEXT.replace("backup-lsn-start=\"0/4000028\"", "backup-lsn-start=7"),
            MANIFEST_TEXT.replace("\"size\":3", "\"size\":-3"),
            MANIFEST_TEXT.replace(
                "option-compress-type=\"gz\"",
                "option-compress-type=\"rar\"",
            ),
            // Regression (review): a stop before the start.
            MANIFEST_TEXT.replace(
                "backup-lsn-stop=\"0/4000100\"",
                "backup-lsn-stop=\"0/3000000\"",
            ),
        ] {
            let ini = Ini::parse(&bad).unwrap();
            assert!(Manifest::parse(&ini).is_err(), "{bad}");
        }
        assert!(Ini::parse("no section\n").is_err());
        assert!(Ini::parse("[s]\nno equals sign\n").is_err());
    }
}
