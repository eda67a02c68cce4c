//! Where an InnoDB file sits: its data directory, and the database and table its name encodes.

use std::path::{Path, PathBuf};

use super::page::page_type_name;
use crate::finding::Owner;

/// Whether `dir` is an InnoDB data directory: it holds the system tablespace `ibdata1`.
pub fn is_data_dir(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join("ibdata1")).is_ok_and(|m| m.is_file())
}

/// The data directory of a tablespace file: its own directory (ibdata, undo, a general
/// tablespace) or its database directory's parent.
pub fn data_dir_of(file: &Path) -> Option<PathBuf> {
    let parent = file.parent()?;
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    if is_data_dir(parent) {
        return Some(parent.to_path_buf());
    }
    let grand = parent.parent()?;
    let grand = if grand.as_os_str().is_empty() {
        Path::new(".")
    } else {
        grand
    };
    is_data_dir(grand).then(|| grand.to_path_buf())
}

/// `ibdata1`, `ibdata2`…: files of the system tablespace.
pub fn is_system_name(name: &str) -> bool {
    name.strip_prefix("ibdata")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `undo001` (MariaDB) or `undo_001` (MySQL 8): undo tablespaces.
pub fn is_undo_name(name: &str) -> bool {
    name.strip_prefix("undo")
        .map(|n| n.strip_prefix('_').unwrap_or(n))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The number in `ibdataN` (1 for anything else).
pub(crate) fn system_index(p: &Path) -> u32 {
    p.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("ibdata"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Decodes the server's file-name encoding (`@XXXX` = the character with that hex code).
pub fn decode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('@') {
        out.push_str(rest.get(..at).unwrap_or_default());
        let code = rest.get(at + 1..at + 5);
        match code
            .filter(|c| c.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .and_then(char::from_u32)
        {
            Some(c) => {
                out.push(c);
                rest = rest.get(at + 5..).unwrap_or_default();
            }
            None => {
                out.push('@');
                rest = rest.get(at + 1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// The database, table and partition a `.ibd` file's path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// The database (the directory's name, decoded).
    pub database: String,
    /// The table.
    pub table: String,
    /// The partition (`t#P#p0`), if any.
    pub partition: Option<String>,
    /// The subpartition (`#SP#`), if any.
    pub subpartition: Option<String>,
}

impl TableName {
    /// Parses `<db>/<table>[#P#<partition>[#SP#<sub>]].ibd`; `None` for other names.
    pub fn from_path(p: &Path) -> Option<TableName> {
        let stem = p.file_name()?.to_str()?.strip_suffix(".ibd")?;
        let database = decode_name(p.parent()?.file_name()?.to_str()?);
        let (table, part) = match stem.find("#P#").or_else(|| stem.find("#p#")) {
            Some(i) => (stem.get(..i)?, stem.get(i + 3..)),
            None => (stem, None),
        };
        let (partition, subpartition) = match part {
            Some(pt) => match pt.find("#SP#").or_else(|| pt.find("#sp#")) {
                Some(i) => (pt.get(..i), pt.get(i + 4..)),
                None => (Some(pt), None),
            },
            None => (None, None),
        };
        Some(TableName {
            database,
            table: decode_name(table),
            partition: partition.map(decode_name),
            subpartition: subpartition.map(decode_name),
        })
    }
}

/// What a page belongs to, for findings.
pub(crate) fn owner(
    path: &Path,
    space_id: Option<u32>,
    page_no: u64,
    page_type: Option<u16>,
) -> Owner {
    let mut o = Owner::new();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if super::is_system_name(name) {
        o.insert("tablespace".into(), "system".into());
    } else if super::is_undo_name(name) {
        o.insert("tablespace".into(), name.into());
    } else if let Some(t) =
        TableName::from_path(path).filter(|_| super::data_dir_of(path).as_deref() != path.parent())
    {
        o.insert("database".into(), t.database.into());
        o.insert("table".into(), t.table.into());
        if let Some(p) = t.partition {
            o.insert("partition".into(), p.into());
        }
        if let Some(s) = t.subpartition {
            o.insert("subpartition".into(), s.into());
        }
    } else if let Some(stem) = name.strip_suffix(".ibd") {
        o.insert("tablespace".into(), decode_name(stem).into());
    }
    if let Some(s) = space_id {
        o.insert("space_id".into(), s.into());
    }
    o.insert("page".into(), page_no.into());
    if let Some(t) = page_type {
        o.insert(
            "page_type".into(),
            page_type_name(t)
                .map_or_else(|| format!("unknown ({t})"), str::to_owned)
                .into(),
        );
    }
    o
}

/// Whether another process holds a POSIX (fcntl) lock on the file, as a running `mariadbd`
/// does on its data files. False when the file cannot be opened.
pub(crate) fn locked_by_another_process(p: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    // SAFETY: flock is plain data; all-zero is a valid value that is then filled in.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: F_OFD_GETLK only reads and writes the flock struct we pass.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_system_name("ibdata1") && is_system_name("ibdata12"));
        assert!(!is_system_name("ibdata") && !is_system_name("ibdata1.bak"));
        assert!(is_undo_name("undo001") && is_undo_name("undo_002"));
        assert!(!is_undo_name("undo") && !is_undo_name("undolog"));
        assert_eq!(decode_name("my@002dtable"), "my-table");
        assert_eq!(decode_name("a@zz@0024"), "a@zz$");
        assert_eq!(decode_name("trailing@"), "trailing@");
    }

    #[test]
    fn table_names() {
        let t = TableName::from_path(Path::new("/d/shop/orders#P#p2020#SP#s1.ibd")).unwrap();
        assert_eq!(t.database, "shop");
        assert_eq!(t.table, "orders");
        assert_eq!(t.partition.as_deref(), Some("p2020"));
        assert_eq!(t.subpartition.as_deref(), Some("s1"));
        let t = TableName::from_path(Path::new("/d/my@002ddb/t1.ibd")).unwrap();
        assert_eq!(
            (t.database.as_str(), t.table.as_str(), t.partition),
            ("my-db", "t1", None)
        );
        assert_eq!(TableName::from_path(Path::new("/d/shop/t.frm")), None);
    }
}
