//! A base backup's `backup_manifest` (PostgreSQL 13+; `../shared/formats-pgwal.md` §5.5–§5.6):
//! its own SHA-256, then every file of the backup against it — present, the same size, the same
//! checksum (CRC32C or SHA-224/256/384/512) —, and no file it does not list, with the paths
//! `pg_verifybackup` ignores ignored. The checksums are computed on every core: a CRC32C file is
//! cut into pieces whose CRCs are combined, a SHA file is hashed whole by one thread.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::Digest;

use super::wal::parse_lsn;
use crate::finding::{Finding, FindingKind, Owner};

/// The file's name in a backup directory.
pub(crate) const NAME: &str = "backup_manifest";

/// Paths `pg_verifybackup` never compares (relative to the backup; `pg_wal` with all below it).
const IGNORED: [&str; 5] = [
    "backup_manifest",
    "pg_wal",
    "postgresql.auto.conf",
    "recovery.signal",
    "standby.signal",
];

/// Whether `pg_verifybackup` leaves `rel` out, on disk and in the manifest alike.
fn ignored(rel: &[u8]) -> bool {
    IGNORED.iter().any(|i| {
        rel.strip_prefix(i.as_bytes())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
    })
}

/// The longest WAL range a manifest may give: 1 TiB.
const MAX_WAL_RANGE: u64 = 1 << 40;

/// A CRC32C file is checksummed in pieces of this size, on every core.
const PIECE: u64 = 16 << 20;

/// The checksum a manifest gives a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Crc32c,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        Some(match s {
            "CRC32C" => Algorithm::Crc32c,
            "SHA224" => Algorithm::Sha224,
            "SHA256" => Algorithm::Sha256,
            "SHA384" => Algorithm::Sha384,
            "SHA512" => Algorithm::Sha512,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Sha224 => "SHA224",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha384 => "SHA384",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// One file the manifest lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub size: u64,
    /// The algorithm and the checksum as the manifest writes it (lower-case hex); none when the
    /// backup was taken with `--manifest-checksums=NONE`.
    pub checksum: Option<(Algorithm, String)>,
}

/// A WAL range the backup needs (`WAL-Ranges`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalRange {
    pub timeline: u32,
    pub start: u64,
    pub end: u64,
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub version: u32,
    /// `System-Identifier` (version 2, PostgreSQL 17+).
    pub system_identifier: Option<u64>,
    /// By raw relative path.
    pub files: BTreeMap<Vec<u8>, Entry>,
    pub wal_ranges: Vec<WalRange>,
    /// Whether `Manifest-Checksum` matched the SHA-256 of what precedes its line; the stored and
    /// computed values when it did not.
    pub checksum_failed: Option<(String, String)>,
}

/// Why a manifest could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ManifestError {
    /// Not JSON of the manifest's shape.
    #[error("backup_manifest cannot be parsed: {0}")]
    Parse(String),
}

#[derive(serde::Deserialize)]
struct RawManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u32,
    #[serde(rename = "System-Identifier")]
    system_identifier: Option<u64>,
    #[serde(rename = "Files")]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges", default)]
    wal_ranges: Vec<RawRange>,
    #[serde(rename = "Manifest-Checksum")]
    checksum: String,
}

#[derive(serde::Deserialize)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm")]
    algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start: String,
    #[serde(rename = "End-LSN")]
    end: String,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a manifest and checks its own checksum: the SHA-256 of every byte up to and including
/// the newline before its last line (`parse_manifest.c` `verify_manifest_checksum`).
pub(crate) fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
    if !(1..=2).contains(&raw.version) {
        return Err(ManifestError::Parse(format!(
            "manifest version {} is not one this reader knows (1 or 2)",
            raw.version
        )));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let computed = body
        .iter()
        .rposition(|&b| b == b'\n')
        .and_then(|nl| bytes.get(..=nl))
        .map(|prefix| hex(&sha2::Sha256::digest(prefix)));
    let checksum_failed = match computed {
        Some(c) if c.eq_ignore_ascii_case(&raw.checksum) => None,
        Some(c) => Some((raw.checksum.clone(), c)),
        None => Some((raw.checksum.clone(), "(the file has a single line)".into())),
    };
    let mut files = BTreeMap::new();
    for f in raw.files {
        let path = match (f.path, f.encoded_path) {
            (Some(p), None) => p.into_bytes(),
            (None, Some(e)) => unhex(&e).ok_or_else(|| {
                ManifestError::Parse(format!("Encoded-Path {e:?} is not hexadecimal"))
            })?,
            _ => {
                return Err(ManifestError::Parse(
                    "a file entry needs exactly one of Path and Encoded-Path".into(),
                ))
            }
        };
        let checksum = match (f.algorithm.as_deref(), f.checksum) {
            (None | Some("NONE"), None) => None,
            (a, Some(c)) => {
                let alg = Algorithm::parse(a.unwrap_or("CRC32C")).ok_or_else(|| {
                    ManifestError::Parse(format!("unknown Checksum-Algorithm {a:?}"))
                })?;
                if unhex(&c).is_none() {
                    return Err(ManifestError::Parse(format!(
                        "the checksum {c:?} is not hexadecimal"
                    )));
                }
                Some((alg, c.to_ascii_lowercase()))
            }
            (Some(a), None) => {
                return Err(ManifestError::Parse(format!(
                    "Checksum-Algorithm {a} without a Checksum"
                )))
            }
        };
        let shown = String::from_utf8_lossy(&path).into_owned();
        // Every path is relative and stays inside the backup: a hostile manifest must not make
        // the scan name (or read) files elsewhere.
        if path.is_empty()
            || path.starts_with(b"/")
            || path
                .split(|&b| b == b'/')
                .any(|c| c.is_empty() || c == b"." || c == b"..")
        {
            return Err(ManifestError::Parse(format!(
                "the path {shown:?} is not a plain path inside the backup"
            )));
        }
        if files
            .insert(
                path,
                Entry {
                    size: f.size,
                    checksum,
                },
            )
            .is_some()
        {
            return Err(ManifestError::Parse(format!(
                "the file {shown:?} is listed twice"
            )));
        }
    }
    let wal_ranges = raw
        .wal_ranges
        .iter()
        .map(|r| {
            Ok(WalRange {
                timeline: r.timeline,
                start: parse_lsn(&r.start)
                    .ok_or_else(|| ManifestError::Parse(format!("bad Start-LSN {:?}", r.start)))?,
                end: parse_lsn(&r.end)
                    .ok_or_else(|| ManifestError::Parse(format!("bad End-LSN {:?}", r.end)))?,
            })
        })
        .collect::<Result<Vec<_>, ManifestError>>()?;
    // A backup's WAL spans what was written while it ran: one that claims more (a hostile
    // manifest) would have the scan list millions of segments.
    if let Some(r) = wal_ranges
        .iter()
        .find(|r| r.timeline == 0 || r.end < r.start || r.end - r.start > MAX_WAL_RANGE)
    {
        return Err(ManifestError::Parse(format!(
            "the WAL range {:X}/{:X}–{:X}/{:X} on timeline {} is not a backup's (timeline 0, backwards, or more than 1 TiB)",
            r.start >> 32,
            r.start & 0xFFFF_FFFF,
            r.end >> 32,
            r.end & 0xFFFF_FFFF,
            r.timeline
        )));
    }
    Ok(Manifest {
        version: raw.version,
        system_identifier: raw.system_identifier,
        files,
        wal_ranges,
        checksum_failed,
    })
}

/// The regular files of a backup directory by raw relative path, with their sizes; what
/// `pg_verifybackup` ignores left out, symbolic links followed only where a backup has them
/// (the tablespaces under `pg_tblspc/`). Entries that cannot be listed come back as warnings.
pub(crate) fn list_plain(dir: &Path) -> Listing {
    let mut files = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(dir.to_path_buf(), Vec::new())];
    while let Some((abs, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&abs) {
            Ok(e) => e,
            Err(e) => {
                warnings.push((
                    abs.clone(),
                    format!("this folder of the backup cannot be listed ({e}): files in it are not compared with backup_manifest"),
                ));
                continue;
            }
        };
        for e in entries.flatten() {
            let name = e.file_name().into_vec();
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(&name);
            if ignored(&r) {
                continue;
            }
            let path = e.path();
            let Ok(meta) = e.file_type() else { continue };
            let in_tblspc = rel.as_slice() == b"pg_tblspc";
            let meta = if meta.is_symlink() && in_tblspc {
                match std::fs::metadata(&path) {
                    Ok(m) => m.file_type(),
                    Err(_) => meta,
                }
            } else {
                meta
            };
            if meta.is_dir() {
                stack.push((path, r));
            } else if meta.is_file() {
                let size = e.metadata().map(|m| m.len()).unwrap_or_default();
                files.insert(
                    r,
                    Present {
                        size,
                        file: path,
                        at: 0,
                        member: None,
                        digest: None,
                    },
                );
            } else {
                warnings.push((
                    path,
                    "not a regular file or folder: not compared with backup_manifest".into(),
                ));
            }
        }
    }
    let root = dir.to_path_buf();
    Listing {
        files,
        warnings,
        missing_at: Box::new(move |rel| root.join(std::ffi::OsStr::from_bytes(rel))),
        cut: Vec::new(),
    }
}

/// The members of a tar-format backup (`pg_basebackup -Ft`): `base.tar`'s as they are named,
/// each `<oid>.tar`'s under `pg_tblspc/<oid>/`, as the manifest names them. A missing file is
/// named in the archive that should hold it.
pub(crate) fn list_tar(dir: &Path) -> Listing {
    let mut files = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut archives: Vec<(PathBuf, String)> = vec![(dir.join("base.tar"), String::new())];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(oid) = name
                .strip_suffix(".tar")
                .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
            {
                archives.push((e.path(), format!("pg_tblspc/{oid}/")));
            }
        }
    }
    for (archive, prefix) in &archives {
        let members = crate::access::open_for_scan(archive, true)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let len = f.metadata().map_err(|e| e.to_string())?.len();
                super::tar::members(&crate::access::PreadSource {
                    file: &f,
                    len,
                    throttle: None,
                })
            });
        match members {
            Ok(members) => {
                for m in members {
                    let mut rel = prefix.clone().into_bytes();
                    rel.extend_from_slice(m.name.as_bytes());
                    if ignored(&rel) {
                        continue;
                    }
                    files.insert(
                        rel,
                        Present {
                            size: m.size,
                            file: archive.clone(),
                            at: m.data,
                            member: Some(m.name),
                            digest: None,
                        },
                    );
                }
            }
            Err(e) => warnings.push((
                archive.clone(),
                format!("its members cannot be listed ({e}): they are not compared with backup_manifest"),
            )),
        }
    }
    let base = dir.join("base.tar");
    let root = dir.to_path_buf();
    Listing {
        files,
        warnings,
        missing_at: Box::new(move |rel| {
            let tablespace = rel
                .strip_prefix(b"pg_tblspc/")
                .and_then(|r| r.split(|&b| b == b'/').next())
                .map(|oid| root.join(format!("{}.tar", String::from_utf8_lossy(oid))));
            tablespace.unwrap_or_else(|| base.clone())
        }),
        cut: Vec::new(),
    }
}

/// The members of a compressed tar-format backup as they streamed past (`tarstream`): each
/// archive's members, their digests computed already.
pub(crate) fn list_streamed(
    dir: &Path,
    archives: Vec<(PathBuf, bool, Vec<super::tarstream::Streamed>)>,
) -> Listing {
    let mut files = BTreeMap::new();
    let mut cut = Vec::new();
    // Each archive by the name it has uncompressed (`base.tar`), for the files it lacks.
    let mut by_stem: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (archive, was_cut, _) in &archives {
        if let Some((stem, _)) = super::tarstream::compressed_archive(archive) {
            by_stem.insert(stem, archive.clone());
        }
        if *was_cut {
            cut.push(archive.clone());
        }
    }
    for (archive, _, members) in archives {
        for m in members {
            if ignored(&m.rel) {
                continue;
            }
            files.insert(
                m.rel,
                Present {
                    size: m.size,
                    file: archive.clone(),
                    at: m.at,
                    member: Some(m.member),
                    digest: m.digest,
                },
            );
        }
    }
    let root = dir.to_path_buf();
    Listing {
        files,
        warnings: Vec::new(),
        missing_at: Box::new(move |rel| {
            let stem = rel
                .strip_prefix(b"pg_tblspc/")
                .and_then(|r| r.split(|&b| b == b'/').next())
                .map_or_else(
                    || "base.tar".to_owned(),
                    |oid| format!("{}.tar", String::from_utf8_lossy(oid)),
                );
            by_stem
                .get(&stem)
                .cloned()
                .unwrap_or_else(|| root.join(stem))
        }),
        cut,
    }
}

/// Each file's checksum algorithm in the manifest `bytes` (by its path), for digests computed
/// while the files stream past; empty when it cannot be parsed.
pub(crate) fn algorithms(bytes: &[u8]) -> BTreeMap<Vec<u8>, Algorithm> {
    parse(bytes)
        .map(|m| {
            m.files
                .into_iter()
                .filter_map(|(rel, e)| Some((rel, e.checksum?.0)))
                .collect()
        })
        .unwrap_or_default()
}

/// A file of a backup: its size, and where its bytes are (a file of its own, or a member of an
/// archive at `at`).
pub(crate) struct Present {
    size: u64,
    file: PathBuf,
    at: u64,
    member: Option<String>,
    /// Its digest, computed already as it streamed past (a compressed archive's member).
    digest: Option<Digested>,
}

/// Where a file the manifest lists but the backup lacks would be.
type MissingAt = Box<dyn Fn(&[u8]) -> PathBuf + Send + Sync>;

/// What a backup holds, to compare with its manifest.
pub(crate) struct Listing {
    files: BTreeMap<Vec<u8>, Present>,
    warnings: Warnings,
    /// Where a file the manifest lists but the backup lacks would be.
    missing_at: MissingAt,
    /// Archives that could not be read to their end: a file missing from one of them is not
    /// known to be missing (it may lie after the damage).
    cut: Vec<PathBuf>,
}

/// Paths with notes for the operator (not damage).
type Warnings = Vec<(PathBuf, String)>;

/// A piece's digest, or why it could not be computed.
type Digested = Result<Vec<u8>, String>;

/// One piece of checksum work.
struct Job<'a> {
    rel: &'a [u8],
    alg: Algorithm,
    offset: u64,
    len: u64,
}

/// The digest of `[offset, offset + len)` of `file`: a CRC32C (as a u32 in the low bytes) or a
/// SHA digest; `None` with the I/O error's text.
fn digest(file: &File, alg: Algorithm, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    enum H {
        Crc(u32),
        S224(sha2::Sha224),
        S256(sha2::Sha256),
        S384(sha2::Sha384),
        S512(sha2::Sha512),
    }
    let mut h = match alg {
        Algorithm::Crc32c => H::Crc(0),
        Algorithm::Sha224 => H::S224(sha2::Sha224::new()),
        Algorithm::Sha256 => H::S256(sha2::Sha256::new()),
        Algorithm::Sha384 => H::S384(sha2::Sha384::new()),
        Algorithm::Sha512 => H::S512(sha2::Sha512::new()),
    };
    let mut buf = vec![0u8; (1 << 20).min(len.max(1) as usize)];
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let want = ((end - at) as usize).min(buf.len());
        let slice = buf.get_mut(..want).unwrap_or_default();
        let n = crate::access::pread_fully(file, at, slice).map_err(|e| e.to_string())?;
        let got = slice.get(..n).unwrap_or_default();
        match &mut h {
            H::Crc(c) => *c = crc32c::crc32c_append(*c, got),
            H::S224(s) => s.update(got),
            H::S256(s) => s.update(got),
            H::S384(s) => s.update(got),
            H::S512(s) => s.update(got),
        }
        if n < want {
            return Err(format!("the file ends at byte {}", at + n as u64));
        }
        at += n as u64;
    }
    Ok(match h {
        H::Crc(c) => c.to_le_bytes().to_vec(),
        H::S224(s) => s.finalize().to_vec(),
        H::S256(s) => s.finalize().to_vec(),
        H::S384(s) => s.finalize().to_vec(),
        H::S512(s) => s.finalize().to_vec(),
    })
}

/// Compares the backup in `dir` with its manifest (already read as `bytes`): the findings, each
/// with [`Finding::file`] set, and warnings. Runs on the current rayon pool.
pub(crate) fn verify(
    dir: &Path,
    bytes: &[u8],
    system_id: Option<u64>,
    listing: Listing,
) -> (Vec<Finding>, Warnings, Vec<WalRange>) {
    let manifest_path = dir.join(NAME);
    let mut findings = Vec::new();
    let manifest = match parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            let mut f = Finding::new(
                FindingKind::BadHeader,
                0,
                bytes.len() as u64,
                format!("{e}: no file of the backup could be compared with it"),
            );
            f.file = Some(manifest_path);
            return (vec![f], Vec::new(), Vec::new());
        }
    };
    let damaged = manifest.checksum_failed.is_some();
    if let Some((stored, computed)) = &manifest.checksum_failed {
        let mut f = Finding::new(
            FindingKind::ChecksumMismatch,
            0,
            bytes.len() as u64,
            "backup_manifest fails its own Manifest-Checksum (SHA-256): it was changed or damaged since the backup wrote it; the files are still compared with it, but its entries cannot be trusted",
        );
        f.expected = Some(stored.clone());
        f.actual = Some(computed.clone());
        f.file = Some(manifest_path.clone());
        findings.push(f);
    }
    let caveat = if damaged {
        " (backup_manifest itself is damaged: this entry may be what is wrong)"
    } else {
        ""
    };
    if let (Some(m), Some(c)) = (manifest.system_identifier, system_id) {
        if m != c {
            let mut f = Finding::new(
                FindingKind::BadHeader,
                0,
                bytes.len() as u64,
                format!("backup_manifest is for system {m}, but global/pg_control says {c}: it is another cluster's manifest"),
            );
            f.file = Some(manifest_path.clone());
            findings.push(f);
        }
    }
    let owner = |rel: &[u8], alg: Option<Algorithm>, member: Option<&str>| {
        let mut o = Owner::new();
        o.insert("backup".into(), dir.to_string_lossy().into_owned().into());
        o.insert(
            "entry".into(),
            String::from_utf8_lossy(rel).into_owned().into(),
        );
        if let Some(a) = alg {
            o.insert("algorithm".into(), a.name().into());
        }
        if let Some(m) = member {
            o.insert("member".into(), m.into());
        }
        o
    };
    let Listing {
        files: on_disk,
        mut warnings,
        missing_at,
        cut,
    } = listing;
    let mut unknown: BTreeMap<PathBuf, u64> = BTreeMap::new();
    let mut jobs = Vec::new();
    for (rel, entry) in manifest.files.iter().filter(|(r, _)| !ignored(r)) {
        let alg = entry.checksum.as_ref().map(|c| c.0);
        match on_disk.get(rel) {
            None if cut.contains(&missing_at(rel)) => {
                *unknown.entry(missing_at(rel)).or_default() += 1;
            }
            None => {
                let mut f = Finding::new(
                    FindingKind::MissingFile,
                    0,
                    entry.size,
                    format!(
                        "backup_manifest lists this file ({} bytes), but it is not in the backup{caveat}",
                        entry.size
                    ),
                );
                f.owner = Some(owner(rel, alg, None));
                f.file = Some(missing_at(rel));
                findings.push(f);
            }
            Some(p) if p.size != entry.size => {
                let size = p.size;
                let (lo, hi) = (size.min(entry.size), size.max(entry.size));
                let mut f = Finding::new(
                    FindingKind::SizeMismatch,
                    p.at + lo,
                    hi - lo,
                    format!(
                        "{} bytes on disk, {} in backup_manifest: the file is {}{caveat}",
                        size,
                        entry.size,
                        if size < entry.size {
                            "cut short"
                        } else {
                            "longer than the backup wrote it"
                        }
                    ),
                );
                f.expected = Some(entry.size.to_string());
                f.actual = Some(size.to_string());
                f.owner = Some(owner(rel, alg, p.member.as_deref()));
                f.file = Some(p.file.clone());
                findings.push(f);
            }
            Some(p) if p.digest.is_some() => {}
            Some(_) => {
                if let Some((alg, _)) = &entry.checksum {
                    let step = if *alg == Algorithm::Crc32c {
                        PIECE
                    } else {
                        entry.size.max(1)
                    };
                    let mut off = 0;
                    loop {
                        let len = step.min(entry.size - off);
                        jobs.push(Job {
                            rel: rel.as_slice(),
                            alg: *alg,
                            offset: off,
                            len,
                        });
                        off += len;
                        if off >= entry.size {
                            break;
                        }
                    }
                }
            }
        }
    }
    for (archive, n) in unknown {
        warnings.push((
            archive,
            format!("{n} files backup_manifest places in this archive lie after the point where it cannot be read: they are not compared with it"),
        ));
    }
    for (rel, p) in &on_disk {
        if !manifest.files.contains_key(rel) {
            let mut f = Finding::new(
                FindingKind::UnexpectedFile,
                p.at,
                p.size,
                format!("this file is in the backup, but backup_manifest does not list it{caveat}"),
            );
            f.owner = Some(owner(rel, None, p.member.as_deref()));
            f.file = Some(p.file.clone());
            findings.push(f);
        }
    }
    // Largest first, so that one big file does not start last.
    jobs.sort_by(|a, b| b.len.cmp(&a.len).then(a.rel.cmp(b.rel)));
    let results: Vec<(&[u8], u64, u64, Digested)> = jobs
        .par_iter()
        .with_max_len(1)
        .map(|j| {
            // Opened without following a link: a file replaced by one since the listing is not
            // read through it.
            let r = match on_disk.get(j.rel) {
                Some(p) => crate::access::open_for_scan(&p.file, true)
                    .map_err(|e| e.to_string())
                    .and_then(|f| digest(&f, j.alg, p.at + j.offset, j.len)),
                None => Err("it is no longer listed".into()),
            };
            (j.rel, j.offset, j.len, r)
        })
        .collect();
    // Per file, its pieces in order; a streamed file's digest is its one piece.
    let mut per_file: BTreeMap<&[u8], Vec<(u64, u64, Digested)>> = BTreeMap::new();
    for (rel, off, len, r) in results {
        per_file.entry(rel).or_default().push((off, len, r));
    }
    for (rel, p) in &on_disk {
        if let (Some(d), Some(e)) = (&p.digest, manifest.files.get(rel)) {
            if e.size == p.size {
                per_file
                    .entry(rel.as_slice())
                    .or_default()
                    .push((0, p.size, d.clone()));
            }
        }
    }
    for (rel, mut pieces) in per_file {
        pieces.sort_by_key(|p| p.0);
        let Some(entry) = manifest.files.get(rel) else {
            continue;
        };
        let Some((alg, want)) = &entry.checksum else {
            continue;
        };
        let Some(present) = on_disk.get(rel) else {
            continue;
        };
        let mut crc: Option<u32> = None;
        let mut got: Digested = Ok(Vec::new());
        for (_, len, r) in pieces {
            match r {
                Err(e) => {
                    got = Err(e);
                    break;
                }
                Ok(d) if *alg == Algorithm::Crc32c => {
                    let c = <[u8; 4]>::try_from(d.as_slice())
                        .map(u32::from_le_bytes)
                        .unwrap_or_default();
                    crc = Some(match crc {
                        None => c,
                        Some(a) => crc32c::crc32c_combine(a, c, len as usize),
                    });
                }
                Ok(d) => got = Ok(d),
            }
        }
        if let (Ok(_), Some(c)) = (&got, crc) {
            got = Ok(c.to_le_bytes().to_vec());
        }
        let mut f = match got {
            Ok(d) if hex(&d) == *want => continue,
            Ok(d) => {
                let mut f = Finding::new(
                    FindingKind::ChecksumMismatch,
                    present.at,
                    entry.size,
                    format!(
                        "the file's {} differs from backup_manifest's: its bytes changed since the backup was taken{caveat}",
                        alg.name()
                    ),
                );
                f.expected = Some(want.clone());
                f.actual = Some(hex(&d));
                f
            }
            Err(e) => Finding::new(
                FindingKind::IoError,
                present.at,
                entry.size,
                format!(
                    "the file could not be read to compare its {} with backup_manifest: {e}",
                    alg.name()
                ),
            ),
        };
        f.owner = Some(owner(rel, Some(*alg), present.member.as_deref()));
        f.file = Some(present.file.clone());
        findings.push(f);
    }
    (findings, warnings, manifest.wal_ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &str) -> Vec<u8> {
        let body = format!(
            "{{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n{files}\n],\n\"WAL-Ranges\": [\n{{ \"Timeline\": 1, \"Start-LSN\": \"0/6000028\", \"End-LSN\": \"0/6000100\" }}\n],\n"
        );
        let sum = hex(&sha2::Sha256::digest(body.as_bytes()));
        format!("{body}\"Manifest-Checksum\": \"{sum}\"}}\n").into_bytes()
    }

    #[test]
    fn crc32c_checksum_is_the_little_endian_bytes() {
        // formats-pgwal.md §5.5: PG_VERSION "15\n" has CRC-32C 0x2247748A, written "8a744722".
        let d = tempdir();
        std::fs::write(d.join("PG_VERSION"), "15\n").unwrap();
        let m = manifest(
            r#"{ "Path": "PG_VERSION", "Size": 3, "Last-Modified": "2026-12-03 17:20:42 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "8a744722" }"#,
        );
        let parsed = parse(&m).unwrap();
        assert_eq!(parsed.checksum_failed, None);
        assert_eq!(
            parsed.wal_ranges,
            vec![WalRange {
                timeline: 1,
                start: 0x600_0028,
                end: 0x600_0100
            }]
        );
        let (f, w, _) = verify(&d, &m, None, list_plain(&d));
        assert!(f.is_empty(), "{f:?}");
        assert!(w.is_empty());
        std::fs::write(d.join("PG_VERSION"), "16\n").unwrap();
        let (f, _, _) = verify(&d, &m, None, list_plain(&d));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, FindingKind::ChecksumMismatch);
        assert_eq!(f[0].expected.as_deref(), Some("8a744722"));
    }

    #[test]
    fn a_crc32c_file_cut_into_pieces_combines_to_the_whole_files_crc() {
        let d = tempdir();
        let data: Vec<u8> = (0..(PIECE as usize * 2 + 12345))
            .map(|i| (i * 31 + 7) as u8)
            .collect();
        std::fs::write(d.join("big"), &data).unwrap();
        let want = hex(&crc32c::crc32c(&data).to_le_bytes());
        let m = manifest(&format!(
            r#"{{ "Path": "big", "Size": {}, "Checksum-Algorithm": "CRC32C", "Checksum": "{want}" }}"#,
            data.len()
        ));
        let (f, _, _) = verify(&d, &m, None, list_plain(&d));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn missing_extra_short_and_ignored_files() {
        let d = tempdir();
        std::fs::write(d.join("extra"), "x").unwrap();
        std::fs::write(d.join("short"), "ab").unwrap();
        std::fs::write(d.join("postgresql.auto.conf"), "ignored").unwrap();
        std::fs::create_dir(d.join("pg_wal")).unwrap();
        std::fs::write(d.join("pg_wal").join("000000010000000000000001"), "w").unwrap();
        let m = manifest(
            r#"{ "Path": "gone", "Size": 5, "Checksum-Algorithm": "CRC32C", "Checksum": "00000000" },
{ "Path": "short", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "00000000" }"#,
        );
        std::fs::write(d.join(NAME), &m).unwrap();
        let (f, _, _) = verify(&d, &m, None, list_plain(&d));
        let kinds: Vec<_> = f
            .iter()
            .map(|f| (f.kind, f.file.clone().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (FindingKind::MissingFile, d.join("gone")),
                (FindingKind::SizeMismatch, d.join("short")),
                (FindingKind::UnexpectedFile, d.join("extra")),
            ]
        );
        assert_eq!((f[1].offset, f[1].length), (2, 1));
    }

    #[test]
    fn sha256_entries_and_a_damaged_manifest() {
        let d = tempdir();
        std::fs::write(d.join("a"), "hello").unwrap();
        let sum = hex(&sha2::Sha256::digest(b"hello"));
        let mut m = manifest(&format!(
            r#"{{ "Path": "a", "Size": 5, "Checksum-Algorithm": "SHA256", "Checksum": "{sum}" }}"#
        ));
        assert!(verify(&d, &m, None, list_plain(&d)).0.is_empty());
        // One byte of the manifest changed (the size's digit stays a number): its own checksum
        // fails, and the entry it now gives is reported with the caveat.
        let at = m.windows(9).position(|w| w == b"\"Size\": 5").unwrap() + 8;
        m[at] = b'6';
        let (f, _, _) = verify(&d, &m, None, list_plain(&d));
        assert_eq!(f[0].kind, FindingKind::ChecksumMismatch);
        assert_eq!(f[0].file.as_deref(), Some(d.join(NAME).as_path()));
        assert_eq!(f[1].kind, FindingKind::SizeMismatch);
        assert!(f[1].detail.contains("damaged"), "{}", f[1].detail);
    }

    #[test]
    fn hostile_manifests_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"{",
            b"{}",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 9, \"Files\": [], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Size\": 1}], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"a\", \"Size\": 1}, {\"Path\": \"a\", \"Size\": 1}], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Encoded-Path\": \"zz\", \"Size\": 1}], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"../../etc/passwd\", \"Size\": 1}], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"/etc/passwd\", \"Size\": 1}], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"base//1\", \"Size\": 1}], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [], \"WAL-Ranges\": [{ \"Timeline\": 1, \"Start-LSN\": \"0/0\", \"End-LSN\": \"FFFFFFFF/FFFFFFFF\" }], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [], \"WAL-Ranges\": [{ \"Timeline\": 0, \"Start-LSN\": \"0/1\", \"End-LSN\": \"0/2\" }], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [], \"WAL-Ranges\": [{ \"Timeline\": 1, \"Start-LSN\": \"0/9\", \"End-LSN\": \"0/2\" }], \"Manifest-Checksum\": \"\" }",
            b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"a\", \"Size\": 1, \"Checksum-Algorithm\": \"MD5\", \"Checksum\": \"00\"}], \"Manifest-Checksum\": \"\" }",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn encoded_paths_name_files_that_are_not_utf8() {
        let d = tempdir();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
        std::fs::write(d.join(name), "x").unwrap();
        let crc = hex(&crc32c::crc32c(b"x").to_le_bytes());
        let m = manifest(&format!(
            r#"{{ "Encoded-Path": "636166e9", "Size": 1, "Checksum-Algorithm": "CRC32C", "Checksum": "{crc}" }}"#
        ));
        assert_eq!(
            parse(&m).unwrap().files.keys().next(),
            Some(&b"caf\xe9".to_vec())
        );
        let (f, _, _) = verify(&d, &m, None, list_plain(&d));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A listed file replaced by a symbolic link (outside `pg_tblspc/`) is not followed: it is
    /// missing, with a warning, and what the link points to is never compared or read.
    #[test]
    fn a_listed_file_replaced_by_a_link_is_not_followed() {
        let d = tempdir();
        let outside = tempdir().join("secret");
        std::fs::write(&outside, "x").unwrap();
        std::os::unix::fs::symlink(&outside, d.join("pg_hba.conf")).unwrap();
        let crc = hex(&crc32c::crc32c(b"x").to_le_bytes());
        let m = manifest(&format!(
            r#"{{ "Path": "pg_hba.conf", "Size": 1, "Checksum-Algorithm": "CRC32C", "Checksum": "{crc}" }}"#
        ));
        let (f, w, _) = verify(&d, &m, None, list_plain(&d));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::MissingFile);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].0, d.join("pg_hba.conf"));
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "dbfsck-manifest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
