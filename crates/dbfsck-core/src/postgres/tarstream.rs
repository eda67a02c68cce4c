//! Compressed tar-format base backups (`pg_basebackup -Ft -z`, `--compress=lz4|zstd`:
//! `base.tar.gz`, `<oid>.tar.lz4`, `pg_wal.tar.zst`, …): each archive decompressed once as a
//! stream and read member by member — every page of every relation member judged as it passes,
//! the digest `backup_manifest` gives each member computed on the way, each WAL segment member
//! walked and kept for the join — so memory is the decoder's window and one WAL segment, never
//! the archive. Offsets in findings are in the decompressed archive.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::codec::Codec;
use crate::finding::{Finding, FindingKind, Owner};

use super::manifest::Algorithm;
use super::path::{is_skipped_name, parse_relfile_name, placement};
use super::stream::{Hasher, Pages, Sink};

/// The codec of a compressed archive of a tar-format backup, and the archive's name without
/// it (`base.tar`, `16385.tar`, `pg_wal.tar`); `None` for anything else.
pub(crate) fn compressed_archive(path: &Path) -> Option<(String, Codec)> {
    let name = path.file_name()?.to_str()?;
    let (stem, codec) = Codec::strip(name)?;
    let oid = stem.strip_suffix(".tar")?;
    let ok = oid == "base"
        || oid == "pg_wal"
        || (!oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| (stem.to_owned(), codec))
}

/// A member as the stream showed it, for the comparison with `backup_manifest`.
#[derive(Debug)]
pub(crate) struct Streamed {
    /// Its path as the manifest names it (`base/5/16384`, `pg_tblspc/16385/PG_15_…/…`).
    pub rel: Vec<u8>,
    pub size: u64,
    /// Offset of its data in the decompressed archive.
    pub at: u64,
    pub member: String,
    /// Its digest by the manifest's algorithm for it (none when the manifest gives none), or
    /// why it could not be read to its end.
    pub digest: Option<Result<Vec<u8>, String>>,
}

/// What streaming one archive found.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    pub findings: Vec<Finding>,
    pub warnings: Vec<(PathBuf, String)>,
    pub units: u64,
    pub members: Vec<Streamed>,
    /// The archive could not be read to its end (its later members are unknown).
    pub cut: bool,
}

/// What one archive's check needs.
pub(crate) struct Setting<'a> {
    /// The manifest's algorithm per file (by its manifest path).
    pub algorithms: &'a BTreeMap<Vec<u8>, Algorithm>,
    pub blcksz: u32,
    pub relseg: u32,
    /// Where the archive's WAL segments go (for `pg_wal.tar.*`).
    pub wal: &'a super::wal::Registry,
    /// Members whose bytes are not pages (WAL-G's incremented files), by manifest path.
    pub not_pages: &'a std::collections::BTreeSet<Vec<u8>>,
}

/// A WAL segment member larger than this is not read into memory (no segment is).
const MAX_SEGMENT: u64 = 1 << 30;

/// Streams the compressed archive `path` of a `pg_basebackup -Ft` backup (see the module's
/// comment); `stem`: its name uncompressed (`base.tar`, `16385.tar`, `pg_wal.tar`).
pub(crate) fn check(path: &Path, codec: Codec, stem: &str, s: &Setting<'_>) -> Checked {
    let wal = stem == "pg_wal.tar";
    // A tablespace archive's members are `pg_tblspc/<oid>/…` in the data directory.
    let prefix = match stem.strip_suffix(".tar") {
        Some("base") | Some("pg_wal") | None => String::new(),
        Some(oid) => format!("pg_tblspc/{oid}/"),
    };
    check_archive(path, Some(codec), &prefix, wal, s)
}

/// Streams the tar archive `path`, compressed by `codec` or not: its members' paths in the data
/// directory are `prefix` and their names; `wal`: its members are WAL (`pg_wal.tar`).
pub(crate) fn check_archive(
    path: &Path,
    codec: Option<Codec>,
    prefix: &str,
    wal: bool,
    s: &Setting<'_>,
) -> Checked {
    let mut out = Checked::default();
    let file = match crate::access::open_for_scan(path, true) {
        Ok(f) => f,
        Err(e) => {
            let mut f = Finding::new(
                FindingKind::IoError,
                0,
                0,
                format!("the archive could not be opened: {e}"),
            );
            f.file = Some(path.to_path_buf());
            out.findings.push(f);
            return out;
        }
    };
    let input = BufReader::with_capacity(1 << 20, file);
    let reader: Box<dyn Read> = match codec {
        None => Box::new(input),
        Some(c) => match c.reader(input) {
            Some(r) => r,
            None => {
                out.warnings.push((
                    path.to_path_buf(),
                    format!(
                        "a {}-compressed archive is not read as a stream: not checked",
                        c.name()
                    ),
                ));
                return out;
            }
        },
    };
    let codec_name = codec.map_or("tar", Codec::name);
    let mut archive = tar::Archive::new(reader);
    let fail = |out: &mut Checked, at: u64, e: io::Error| {
        let kind = if e.kind() == io::ErrorKind::UnexpectedEof {
            FindingKind::Truncated
        } else {
            FindingKind::BadHeader
        };
        let mut f = Finding::new(
            kind,
            at,
            0,
            format!(
                "the archive ({codec_name}) cannot be read past this offset of its decompressed bytes ({e}): the members from here on are not checked"
            ),
        );
        f.file = Some(path.to_path_buf());
        out.findings.push(f);
        out.cut = true;
    };
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            fail(&mut out, 0, e);
            return out;
        }
    };
    let mut last_end = 0u64;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                fail(&mut out, last_end, e);
                return out;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let at = entry.raw_file_position();
        let size = entry.size();
        let name = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(_) => continue,
        };
        // `tar -cf base.tar .` names its members `./base/…`, WAL-G `/base/…`: the same files.
        let mut name = name.as_str();
        while let Some(rest) = name.strip_prefix("./").or_else(|| name.strip_prefix('/')) {
            name = rest;
        }
        let name = name.to_owned();
        let mut rel = prefix.as_bytes().to_vec();
        rel.extend_from_slice(name.as_bytes());
        let mut owner = Owner::new();
        owner.insert("member".into(), name.clone().into());
        // WAL: pg_wal.tar's members, or base.tar's pg_wal/ (-X fetch).
        let wal_member = (wal || name.starts_with("pg_wal/"))
            && (super::wal::WalName::is_segment(name.rsplit('/').next().unwrap_or(&name))
                || name.ends_with(".history"));
        let read = if wal_member && size <= MAX_SEGMENT {
            // A segment is walked whole, as a segment file is.
            let mut bytes = Vec::new();
            let r = (&mut entry).take(size).read_to_end(&mut bytes);
            if r.is_ok() {
                let (units, bad) = super::wal::add_streamed(s.wal, path, &name, &bytes, at);
                out.units += units;
                out.findings.extend(bad.into_iter().map(|mut f| {
                    f.file = Some(path.to_path_buf());
                    f
                }));
            }
            r.map(|_| ())
        } else {
            let data_path = if prefix.is_empty() {
                PathBuf::from(&name)
            } else {
                PathBuf::from(String::from_utf8_lossy(&rel).into_owned())
            };
            let file_name = data_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let relation = (!wal)
                .then(|| parse_relfile_name(file_name))
                .flatten()
                .filter(|r| r.temp_backend.is_none())
                .filter(|_| placement(&data_path).is_some() && !is_skipped_name(file_name))
                .filter(|_| !s.not_pages.contains(&rel));
            let pages = relation.map(|r| {
                Pages::new(
                    s.blcksz,
                    u64::from(r.segment) * u64::from(s.relseg),
                    u64::MAX,
                    at,
                    owner.clone(),
                )
            });
            let alg = s.algorithms.get(&rel).copied();
            let mut sink = Sink::new(Hasher::of(alg), pages);
            let r = io::copy(&mut entry, &mut sink).map(|_| ());
            if let Some(p) = sink.pages.take() {
                out.units += p.checked;
                if p.leftover() > 0 {
                    let tail = p.leftover() as u64;
                    let mut f = Finding::new(
                        FindingKind::PartialPage,
                        at + sink.n - tail,
                        tail,
                        format!("the relation file's last {tail} bytes are not a whole block"),
                    );
                    f.owner = Some(owner.clone());
                    f.file = Some(path.to_path_buf());
                    out.findings.push(f);
                }
                out.findings.extend(p.findings.into_iter().map(|mut f| {
                    f.file = Some(path.to_path_buf());
                    f
                }));
            }
            let digest = alg.map(|_| match &r {
                Ok(()) if sink.n == size => Ok(sink.hasher.finish()),
                Ok(()) => Err(format!(
                    "the member ends after {} of its {size} bytes",
                    sink.n
                )),
                Err(e) => Err(e.to_string()),
            });
            if !wal {
                out.members.push(Streamed {
                    rel,
                    size,
                    at,
                    member: name,
                    digest,
                });
            }
            r
        };
        last_end = at + size;
        if let Err(e) = read {
            fail(&mut out, at, e);
            return out;
        }
    }
    out
}
