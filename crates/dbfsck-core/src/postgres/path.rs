//! Where PostgreSQL files live and what their names mean (`formats.md` §1.1).

use std::path::{Path, PathBuf};

/// A relation fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// The main fork (no suffix).
    Main,
    /// Free space map (`_fsm`).
    Fsm,
    /// Visibility map (`_vm`).
    Vm,
    /// Init fork of an unlogged relation (`_init`).
    Init,
}

impl Fork {
    /// The name PostgreSQL uses.
    pub fn name(self) -> &'static str {
        match self {
            Fork::Main => "main",
            Fork::Fsm => "fsm",
            Fork::Vm => "vm",
            Fork::Init => "init",
        }
    }
}

/// A relation segment file's name, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelFileName {
    /// Backend id of a temporary relation (`t<backend>_<relfilenode>`).
    pub temp_backend: Option<u32>,
    /// The relfilenode.
    pub relfilenode: u32,
    /// The fork.
    pub fork: Fork,
    /// Segment number (0 when there is no `.N` suffix).
    pub segment: u32,
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Decodes `[t<backend>_]<relfilenode>[_fsm|_vm|_init][.<segment>]`; `None` for anything else.
pub fn parse_relfile_name(name: &str) -> Option<RelFileName> {
    let (base, segment) = match name.split_once('.') {
        Some((b, s)) => {
            let seg = number(s)?;
            if seg == 0 {
                return None; // PostgreSQL never names segment 0 with a suffix
            }
            (b, seg)
        }
        None => (name, 0),
    };
    let (temp_backend, rest) = match base.strip_prefix('t') {
        Some(r) => {
            let (backend, rest) = r.split_once('_')?;
            (Some(number(backend)?), rest)
        }
        None => (None, base),
    };
    let (node, fork) = match rest.split_once('_') {
        Some((n, "fsm")) => (n, Fork::Fsm),
        Some((n, "vm")) => (n, Fork::Vm),
        Some((n, "init")) => (n, Fork::Init),
        Some(_) => return None,
        None => (rest, Fork::Main),
    };
    Some(RelFileName {
        temp_backend,
        relfilenode: number(node)?,
        fork,
        segment,
    })
}

/// Whether `dir` is a data directory: `PG_VERSION` and `global/pg_control` are there.
pub fn is_data_dir(dir: &Path) -> bool {
    // pg_control may be missing (an interrupted base backup): the markers are PG_VERSION and
    // the global and base folders; the listing then says pg_control is missing.
    dir.join("PG_VERSION").is_file() && dir.join("global").is_dir() && dir.join("base").is_dir()
}

/// The data directory a file or directory belongs to, looking up to four levels above it.
pub fn data_dir_of(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .take(5)
        .find(|d| is_data_dir(d))
        .map(Path::to_path_buf)
}

/// Names pg_checksums never checksums: exact names, and the temporary-file prefix.
pub fn is_skipped_name(name: &str) -> bool {
    matches!(
        name,
        "pg_control" | "pg_filenode.map" | "PG_VERSION" | ".DS_Store"
    ) || name.starts_with("pg_internal.init")
        || name.starts_with("config_exec_params")
        || name.starts_with("pgsql_tmp")
}

/// Where a relation file sits: its tablespace and database, from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `pg_default`, `pg_global`, or the tablespace OID under `pg_tblspc`.
    pub tablespace: String,
    /// The database OID (absent for `global/`).
    pub database_oid: Option<u32>,
}

/// The placement of the file at `path` (`.../global/F`, `.../base/DB/F`,
/// `.../pg_tblspc/TS/PG_x_y/DB/F`); `None` when the path has none of these shapes.
pub fn placement(path: &Path) -> Option<Placement> {
    let names: Vec<&str> = path
        .iter()
        .rev()
        .skip(1)
        .take(4)
        .filter_map(|c| c.to_str())
        .collect();
    match names.as_slice() {
        ["global", ..] => Some(Placement {
            tablespace: "pg_global".into(),
            database_oid: None,
        }),
        [db, "base", ..] => Some(Placement {
            tablespace: "pg_default".into(),
            database_oid: Some(number(db)?),
        }),
        [db, ver, ts, "pg_tblspc", ..] if ver.starts_with("PG_") => Some(Placement {
            tablespace: number(ts)?.to_string(),
            database_oid: Some(number(db)?),
        }),
        [db, ver, ..] if ver.starts_with("PG_") => Some(Placement {
            tablespace: "unknown".into(),
            database_oid: Some(number(db)?),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_file_names() {
        let p = parse_relfile_name;
        assert_eq!(
            p("16384"),
            Some(RelFileName {
                temp_backend: None,
                relfilenode: 16384,
                fork: Fork::Main,
                segment: 0
            })
        );
        assert_eq!(p("16384.2").map(|r| r.segment), Some(2));
        assert_eq!(p("16384_fsm").map(|r| r.fork), Some(Fork::Fsm));
        assert_eq!(
            p("16384_vm.1").map(|r| (r.fork, r.segment)),
            Some((Fork::Vm, 1))
        );
        assert_eq!(p("16384_init").map(|r| r.fork), Some(Fork::Init));
        assert_eq!(p("t3_16384").map(|r| r.temp_backend), Some(Some(3)));
        for bad in [
            "garbage.txt",
            "16384.0",
            "16384_foo",
            "",
            "pg_control",
            "16384.",
            "0123",
            "t_1",
            "16384.x",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn placements() {
        let pl = |s: &str| placement(Path::new(s));
        assert_eq!(pl("/d/global/1262").unwrap().tablespace, "pg_global");
        assert_eq!(pl("/d/base/5/16384").unwrap().database_oid, Some(5));
        let t = pl("/d/pg_tblspc/16390/PG_15_202209061/5/16391").unwrap();
        assert_eq!((t.tablespace.as_str(), t.database_oid), ("16390", Some(5)));
        assert_eq!(pl("/tmp/x/16384"), None);
    }
}
