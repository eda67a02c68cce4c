//! Base backups in tar format (`pg_basebackup -Ft`, `docs/postgres.md`): `base.tar` holds the
//! data directory and each `<oid>.tar` one tablespace (`PG_<major>_<catversion>/<db>/<file>`).
//! The relation files inside are verified in place, in the archive: each member's data is one
//! extent of the archive, cut on block boundaries from where its header ends, and every block is
//! judged with its absolute block number as in the data directory. Findings give the offset in
//! the archive and the member (`owner.member`).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::control::{parse_control, Control};
use super::path::{is_skipped_name, parse_relfile_name, placement};
use super::PgCheck;
use crate::finding::Finding;
use crate::format::{Chunk, FileSource, Layout, UnitCheck};

/// A regular file in the archive: its name and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The name as stored (`base/16384/16385`).
    pub(crate) name: String,
    /// Offset of its first byte in the archive.
    pub(crate) data: u64,
    /// Its length.
    pub(crate) size: u64,
}

/// Whether `dir` is a `pg_basebackup -Ft` output directory (it holds `base.tar`, or one
/// compressed: `base.tar.gz`, `.lz4`, `.zst`, `.bz2`).
pub(crate) fn is_tar_backup(dir: &Path) -> bool {
    BASE_NAMES
        .iter()
        .any(|n| std::fs::symlink_metadata(dir.join(n)).is_ok_and(|m| m.is_file()))
}

/// A tar-format backup's `base.tar`, uncompressed or as `pg_basebackup --compress` names it.
pub(crate) const BASE_NAMES: [&str; 5] = [
    "base.tar",
    "base.tar.gz",
    "base.tar.lz4",
    "base.tar.zst",
    "base.tar.bz2",
];

/// Whether `path` is an archive of such a directory: `base.tar`, or `<oid>.tar` beside one.
pub(crate) fn is_backup_archive(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tablespace = name
        .strip_suffix(".tar")
        .is_some_and(|oid| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()));
    name == "base.tar" || (tablespace && is_tar_backup(dir))
}

/// Reads a [`FileSource`] as a stream, for the tar reader.
struct SourceReader<'a> {
    src: &'a dyn FileSource,
    pos: u64,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.src.len().checked_add_signed(d),
        };
        self.pos =
            base.ok_or_else(|| io::Error::other("a seek before the start of the archive"))?;
        Ok(self.pos)
    }
}

/// The regular files of a tar archive, in archive order, by reading only the headers.
pub(crate) fn members(src: &dyn FileSource) -> Result<Vec<Member>, String> {
    let mut archive = tar::Archive::new(SourceReader { src, pos: 0 });
    let entries = archive
        .entries_with_seek()
        .map_err(|e| format!("its tar headers cannot be read: {e}"))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("a tar header is damaged: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| format!("a member's name cannot be read: {e}"))?
            .to_string_lossy()
            .into_owned();
        // `tar -cf base.tar .` names its members `./base/…`: the same files.
        let mut name = name.as_str();
        while let Some(rest) = name.strip_prefix("./") {
            name = rest;
        }
        let name = name.to_owned();
        let (data, size) = (entry.raw_file_position(), entry.size());
        if data.checked_add(size).is_none_or(|end| end > src.len()) {
            return Err(format!(
                "member {name} claims {size} bytes at {data}, past the end of the archive: it is cut short"
            ));
        }
        out.push(Member { name, data, size });
    }
    Ok(out)
}

/// The cluster's `pg_control` as the backup holds it (`global/pg_control` in `base.tar`).
pub(crate) fn control_of(archive: &Path, src: &dyn FileSource) -> Option<Control> {
    let read = |src: &dyn FileSource| -> Option<Control> {
        let m = members(src)
            .ok()?
            .into_iter()
            .find(|m| m.name == "global/pg_control")?;
        let mut buf = vec![0u8; m.size.min(8192) as usize];
        let n = src.read_full_at(m.data, &mut buf).ok()?;
        parse_control(buf.get(..n)?)
    };
    if archive.file_name().is_some_and(|n| n == "base.tar") {
        return read(src);
    }
    let base = archive.with_file_name("base.tar");
    let bytes = std::fs::read(base).ok()?;
    read(&crate::format::BytesSource(&bytes))
}

/// The path a member would have in a data directory, for its placement: `base/…` and
/// `global/…` as they are; a tablespace archive's `PG_x_y/…` under `pg_tblspc/<oid>/`.
fn member_path(archive: &Path, name: &str) -> PathBuf {
    let stem = archive
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem == "base" {
        PathBuf::from(name)
    } else {
        Path::new("pg_tblspc").join(stem).join(name)
    }
}

/// The relation members of an archive, each checked in its own extent.
pub(crate) struct TarCheck {
    /// (extent, the member's check), by offset.
    pub(crate) members: Vec<(Layout, PgCheck)>,
}

impl TarCheck {
    /// The checks of the relation files among `members` (the other members are not checked,
    /// as pg_checksums skips them in a data directory), and a finding per partial last block.
    pub(crate) fn new(
        archive: &Path,
        members: &[Member],
        blcksz: u64,
        relseg: u32,
    ) -> (TarCheck, Vec<Finding>) {
        let mut checks = Vec::new();
        let mut findings = Vec::new();
        for m in members {
            let path = member_path(archive, &m.name);
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let rel = parse_relfile_name(file);
            let place = placement(&path);
            let (Some(rel), Some(place)) = (rel, place) else {
                continue;
            };
            if is_skipped_name(file) || path.iter().any(|c| c == "pgsql_tmp") {
                continue;
            }
            let (check, partial) = PgCheck::segment(
                rel,
                Some(place),
                blcksz,
                relseg,
                (m.data, m.size),
                Some(m.name.clone()),
            );
            findings.extend(partial);
            if check.end > m.data {
                let extent = Layout {
                    start: m.data,
                    end: check.end,
                    align: blcksz,
                };
                checks.push((extent, check));
            }
        }
        (TarCheck { members: checks }, findings)
    }

    fn member_at(&self, offset: u64) -> Option<&PgCheck> {
        let i = self
            .members
            .partition_point(|(l, _)| l.start <= offset)
            .checked_sub(1)?;
        self.members
            .get(i)
            .filter(|(l, _)| offset < l.end)
            .map(|(_, c)| c)
    }
}

impl UnitCheck for TarCheck {
    fn layout(&self) -> Layout {
        let start = self.members.first().map_or(0, |(l, _)| l.start);
        let end = self.members.last().map_or(0, |(l, _)| l.end);
        // Members start on 512-byte tar blocks.
        Layout {
            start,
            end,
            align: 512,
        }
    }

    fn extents(&self) -> Vec<Layout> {
        self.members.iter().map(|(l, _)| *l).collect()
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        // The engine cuts each extent on its own: a chunk lies inside one member.
        match self.member_at(chunk.offset) {
            Some(c) => c.verify(chunk, out),
            None => 0,
        }
    }

    fn describe(&self, chunk: &Chunk<'_>) -> Vec<(String, String)> {
        match self.member_at(chunk.offset) {
            Some(c) => {
                let mut rows = vec![("member".to_owned(), c.member.clone().unwrap_or_default())];
                rows.extend(c.describe(chunk));
                rows
            }
            None => vec![("member".into(), "none: a tar header or padding".into())],
        }
    }
}

/// A `base.tar`'s relation members and its WAL members (`pg_wal/`, written by `-X fetch`): two
/// checks of disjoint extents of one archive, each chunk handed to the one whose extent holds it.
pub(crate) struct WithWal {
    rel: TarCheck,
    wal: Box<dyn UnitCheck>,
    wal_extents: Vec<Layout>,
}

impl WithWal {
    pub(crate) fn new(rel: TarCheck, wal: Box<dyn UnitCheck>) -> WithWal {
        let wal_extents = wal.extents();
        WithWal {
            rel,
            wal,
            wal_extents,
        }
    }

    fn is_wal(&self, offset: u64) -> bool {
        self.wal_extents
            .iter()
            .any(|l| l.start <= offset && offset < l.end)
    }
}

impl UnitCheck for WithWal {
    fn layout(&self) -> Layout {
        let (a, b) = (self.rel.layout(), self.wal.layout());
        let start = if self.rel.members.is_empty() {
            b.start
        } else {
            a.start.min(b.start)
        };
        let end = if self.rel.members.is_empty() {
            b.end
        } else {
            a.end.max(b.end)
        };
        Layout {
            start,
            end,
            align: 512,
        }
    }

    fn extents(&self) -> Vec<Layout> {
        let mut v = self.rel.extents();
        if self.rel.members.is_empty() {
            v.clear();
        }
        v.extend(self.wal_extents.iter().copied());
        v.sort_by_key(|l| l.start);
        v
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        if self.is_wal(chunk.offset) {
            self.wal.verify(chunk, out)
        } else {
            self.rel.verify(chunk, out)
        }
    }

    fn describe(&self, chunk: &Chunk<'_>) -> Vec<(String, String)> {
        if self.is_wal(chunk.offset) {
            self.wal.describe(chunk)
        } else {
            self.rel.describe(chunk)
        }
    }
}
