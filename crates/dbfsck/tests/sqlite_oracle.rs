//! Oracle test of the `sqlite` format against SQLite itself (Debian's sqlite3, from apt, and
//! Python's sqlite3 module linked to the same library): real databases the library made — page
//! sizes 512 to 65536, auto_vacuum none/full/incremental, rollback and WAL modes, UTF-16,
//! WITHOUT ROWID tables, indexes, overflow chains, freelists — are clean for both; on damaged
//! copies of each class every page `PRAGMA integrity_check` names is a page dbfsck names (exit
//! 4), with the table or index it belongs to. A WAL crash snapshot is judged as SQLite reads it:
//! a flipped byte mid-WAL is damage that loses exactly the commits SQLite then silently drops, a
//! torn last frame is `torn_tail` (exit 0), a database page a committed frame supersedes is
//! healed, not damage. A hot journal left by a writer killed mid-transaction is judged rolled
//! back. cksumvfs databases (the extension built from Debian's source by `scripts/cksumvfs`) are
//! verified page by page, as the extension itself reads them.
//!
//! Needs sqlite3 and python3 (`scripts/test` installs sqlite3); skipped where they are missing
//! unless the run must be complete (`CI`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::json_run as dbfsck;

fn have_sqlite() -> bool {
    let cli = Command::new("sqlite3")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    let py = Command::new("python3")
        .args(["-c", "import sqlite3"])
        .output()
        .is_ok_and(|o| o.status.success());
    dbfsck_testkit::can_run(
        "the SQLite oracle test",
        if cli && py {
            Ok(())
        } else {
            Err("sqlite3 (the CLI) or python3 with its sqlite3 module is not installed".into())
        },
    )
}

fn scratch() -> Option<tempfile::TempDir> {
    have_sqlite().then(|| tempfile::tempdir().unwrap())
}

/// Runs a Python script with `args`; its stdout.
fn py(script: &str, args: &[&str]) -> String {
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Makes a database: `make.py PATH PAGE_SIZE AUTO_VACUUM MODE` (MODE: delete, wal, utf16);
/// prints dbstat's `[name, pageno, pagetype]` rows as JSON.
const MAKE: &str = r#"
import sqlite3, sys, random, json
path, ps, av, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = sqlite3.connect(path, isolation_level=None)
if mode == "utf16":
    c.execute("pragma encoding='UTF-16le'")
c.execute(f"pragma page_size={ps}")
c.execute(f"pragma auto_vacuum={av}")
if mode == "wal":
    c.execute("pragma journal_mode=wal")
c.execute("create table t1(a integer primary key, b text, c blob)")
c.execute("create index t1b on t1(b)")
c.execute("create table w(k text primary key, v) without rowid")
c.execute("create table big(x)")
r = random.Random(ps * 10 + av)
n = 3000 if ps <= 8192 else 600
c.execute("begin")
c.executemany("insert into t1(b, c) values(?, ?)", [(str(r.random()), b"x" * r.randint(0, ps)) for _ in range(n)])
c.executemany("insert into w values(?, ?)", [(str(i) * 7, "v" * r.randint(0, ps // 2)) for i in range(n // 4)])
c.execute("insert into big values(?)", (b"y" * (ps * 40 + 17),))
c.execute("commit")
c.execute("delete from t1 where a % 7 = 0")
ok = c.execute("pragma integrity_check").fetchall()
assert ok == [("ok",)], ok
print(json.dumps({"pages": c.execute("pragma page_count").fetchone()[0],
                  "freelist": c.execute("pragma freelist_count").fetchone()[0],
                  "dbstat": c.execute("select name, pageno, pagetype from dbstat").fetchall()}))
c.close()
"#;

struct Made {
    pages: u64,
    freelist: u64,
    /// (object, page, dbstat page type: internal, leaf, overflow).
    dbstat: Vec<(String, u32, String)>,
}

fn make(path: &Path, page_size: u32, auto_vacuum: u32, mode: &str) -> Made {
    let out = py(
        MAKE,
        &[
            path.to_str().unwrap(),
            &page_size.to_string(),
            &auto_vacuum.to_string(),
            mode,
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    Made {
        pages: v["pages"].as_u64().unwrap(),
        freelist: v["freelist"].as_u64().unwrap(),
        dbstat: v["dbstat"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_owned(),
                    r[1].as_u64().unwrap() as u32,
                    r[2].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
    }
}

impl Made {
    fn pages_of(&self, name: &str, ty: &str) -> Vec<u32> {
        self.dbstat
            .iter()
            .filter(|r| r.0 == name && r.2 == ty)
            .map(|r| r.1)
            .collect()
    }
}

/// `PRAGMA integrity_check` by the sqlite3 CLI on a copy (with its -wal and -journal: the
/// CLI checkpoints and deletes a WAL it opens, rolls back a hot journal): its exit code and
/// output.
fn integrity_check(db: &Path) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("copy.db");
    fs::copy(db, &copy).unwrap();
    for s in ["-wal", "-journal"] {
        let side = PathBuf::from(format!("{}{s}", db.display()));
        if side.exists() {
            fs::copy(&side, format!("{}{s}", copy.display())).unwrap();
        }
    }
    let o = Command::new("sqlite3")
        .arg(&copy)
        .arg("PRAGMA integrity_check(100000)")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A query's output, by the CLI on a copy as [`integrity_check`] makes it.
fn query(db: &Path, sql: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("copy.db");
    fs::copy(db, &copy).unwrap();
    for s in ["-wal", "-journal"] {
        let side = PathBuf::from(format!("{}{s}", db.display()));
        if side.exists() {
            fs::copy(&side, format!("{}{s}", copy.display())).unwrap();
        }
    }
    let o = Command::new("sqlite3")
        .arg(&copy)
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Every page number integrity_check's messages name (both message styles, docs/sqlite.md §6):
/// "Page N", "On tree page N", "2nd reference to page N", "Tree X page N"; a wrong freelist
/// count is about the header, page 1.
fn pages_named(out: &str) -> BTreeSet<u32> {
    messages(out).into_iter().flatten().collect()
}

/// The pages each of integrity_check's messages names (a message may name two: the page
/// holding a pointer and the page it points at twice).
fn messages(out: &str) -> Vec<BTreeSet<u32>> {
    let mut all = Vec::new();
    for line in out.lines() {
        let mut pages = BTreeSet::new();
        if line.contains("freelist: size is") || line.contains("Freelist: size is") {
            pages.insert(1);
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ':')
            .collect();
        for w in words.windows(2) {
            if w[0].eq_ignore_ascii_case("page") {
                if let Ok(n) = w[1].parse::<u32>() {
                    pages.insert(n);
                }
            }
        }
        if !pages.is_empty() {
            all.push(pages);
        }
    }
    all
}

/// The pages dbfsck's findings cover (runs expanded) in the database file.
fn pages_found(report: &Value, file: &str) -> BTreeSet<u32> {
    let mut pages = BTreeSet::new();
    for f in report["findings"].as_array().unwrap() {
        if !f["path"].as_str().unwrap().ends_with(file) {
            continue;
        }
        if let Some(u) = f["unit"].as_u64() {
            let n = f["units"].as_u64().unwrap_or(1);
            pages.extend((u..u + n).map(|p| p as u32));
        }
    }
    pages
}

fn findings(report: &Value) -> Vec<Value> {
    report["findings"].as_array().unwrap().clone()
}

fn kinds(report: &Value) -> Vec<String> {
    findings(report)
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut b = fs::read(path).unwrap();
    b[offset as usize..offset as usize + bytes.len()].copy_from_slice(bytes);
    fs::write(path, b).unwrap();
}

fn read_be32(path: &Path, offset: u64) -> u32 {
    let b = fs::read(path).unwrap();
    u32::from_be_bytes(b[offset as usize..offset as usize + 4].try_into().unwrap())
}

#[test]
fn real_databases_of_every_shape_are_clean() {
    let Some(tmp) = scratch() else { return };
    for (ps, av, mode) in [
        (512, 0, "delete"),
        (1024, 1, "delete"),
        (4096, 2, "wal"),
        (8192, 0, "wal"),
        (4096, 1, "utf16"),
        (65536, 1, "delete"),
        (65536, 2, "delete"),
    ] {
        let db = tmp.path().join(format!("clean-{ps}-{av}-{mode}.db"));
        let made = make(&db, ps, av, mode);
        assert!(
            made.freelist > 0 || av == 1,
            "{db:?}: the workload leaves a freelist"
        );
        let (code, r) = dbfsck(&["scan", db.to_str().unwrap()]);
        assert_eq!(
            (code, kinds(&r)),
            (0, vec![]),
            "{db:?} ({ps}, auto_vacuum {av}, {mode}): {r:#}"
        );
        assert_eq!(r["summary"]["units"].as_u64(), Some(made.pages), "{db:?}");
    }
}

/// A named way to damage a database file.
type Damage = (&'static str, Box<dyn Fn(&Path)>);

/// One damage of each class, on a database with `page_size` and `auto_vacuum`.
fn damages(made: &Made, db: &Path, ps: u64) -> Vec<Damage> {
    let off = move |pg: u32| (u64::from(pg) - 1) * ps;
    let leaves = made.pages_of("t1", "leaf");
    let leaf = leaves[leaves.len() / 2];
    let interior = *made.pages_of("t1", "internal").last().unwrap();
    let index_leaves = made.pages_of("t1b", "leaf");
    let index_leaf = index_leaves[1.min(index_leaves.len() - 1)];
    let w_leaf = made.pages_of("w", "leaf")[0];
    let ovfl = made.pages_of("big", "overflow");
    let (o0, o1) = (ovfl[0], ovfl[1]);
    let trunk = read_be32(db, 32);
    let freelist = read_be32(db, 36);
    let mut v: Vec<Damage> = vec![
        (
            "page type",
            Box::new(move |p: &Path| write_at(p, off(leaf), &[0x07])),
        ),
        (
            "cell pointer",
            Box::new(move |p: &Path| write_at(p, off(leaf) + 8, &[0, 2])),
        ),
        (
            "freeblock loop",
            Box::new(move |p: &Path| {
                let b = fs::read(p).unwrap();
                let o = off(leaf) as usize;
                let top = u16::from_be_bytes([b[o + 5], b[o + 6]]) + 10;
                write_at(p, off(leaf) + 1, &top.to_be_bytes());
                let mut fb = top.to_be_bytes().to_vec();
                fb.extend_from_slice(&8u16.to_be_bytes());
                write_at(p, off(leaf) + u64::from(top), &fb);
            }),
        ),
        (
            "cell count",
            Box::new(move |p: &Path| write_at(p, off(index_leaf) + 3, &[0xff, 0xff])),
        ),
        (
            "without rowid leaf cell pointer",
            Box::new(move |p: &Path| write_at(p, off(w_leaf) + 8, &[0xff, 0xf0])),
        ),
        (
            "overflow loop",
            Box::new(move |p: &Path| write_at(p, off(o1), &o0.to_be_bytes())),
        ),
        (
            "overflow cut",
            Box::new(move |p: &Path| write_at(p, off(o1), &[0, 0, 0, 0])),
        ),
        (
            "zeroed interior page",
            Box::new(move |p: &Path| write_at(p, off(interior), &vec![0; ps as usize])),
        ),
        (
            "zeroed leaf",
            Box::new(move |p: &Path| write_at(p, off(leaf), &vec![0; ps as usize])),
        ),
        (
            "header page size",
            Box::new(|p: &Path| write_at(p, 16, &[0x00, 0xff])),
        ),
        (
            "header payload fraction",
            Box::new(|p: &Path| write_at(p, 21, &[0x41])),
        ),
        (
            "truncated",
            Box::new(move |p: &Path| {
                let b = fs::read(p).unwrap();
                fs::write(p, &b[..b.len() - 3 * ps as usize]).unwrap();
            }),
        ),
    ];
    if trunk != 0 {
        v.push((
            "freelist loop",
            Box::new(move |p: &Path| write_at(p, off(trunk), &trunk.to_be_bytes())),
        ));
    }
    if freelist >= 2 {
        v.push((
            "freelist count",
            Box::new(move |p: &Path| write_at(p, 36, &(freelist - 2).to_be_bytes())),
        ));
    }
    v
}

/// The pages one "Bad ptr map entry key=K expected=(T,P) got=(T,Q)" line of integrity_check
/// is about: the page K, both parents, and the pointer-map page holding K's entry (`usable`
/// bytes a page) — the damage may be in the entry, or in the pointer that made SQLite expect
/// another parent.
fn ptrmap_line_pages(line: &str, usable: u32) -> BTreeSet<u32> {
    let per = usable / 5 + 1;
    let after = |tag: &str| line.split(tag).nth(1).unwrap_or("");
    let mut pages = BTreeSet::new();
    if let Ok(k) = after("key=").split(' ').next().unwrap_or("").parse::<u32>() {
        pages.insert(k);
        if k >= 2 {
            pages.insert((k - 2) / per * per + 2);
        }
    }
    for tag in ["expected=(", "got=("] {
        let parent = after(tag)
            .split(')')
            .next()
            .and_then(|r| r.split(',').nth(1));
        if let Some(p) = parent.and_then(|p| p.parse().ok()) {
            pages.insert(p);
        }
    }
    pages
}

#[test]
fn damage_of_each_class_is_found_where_integrity_check_finds_it() {
    let Some(tmp) = scratch() else { return };
    for (ps, av) in [(4096u32, 0u32), (1024, 1), (512, 2), (65536, 0)] {
        let base = tmp.path().join(format!("base-{ps}-{av}.db"));
        let made = make(&base, ps, av, "delete");
        for (name, damage) in damages(&made, &base, u64::from(ps)) {
            let db = tmp
                .path()
                .join(format!("{}-{ps}-{av}.db", name.replace(' ', "_")));
            fs::copy(&base, &db).unwrap();
            damage(&db);
            let (ic_code, ic) = integrity_check(&db);
            assert!(
                ic.trim() != "ok",
                "{name} ({ps}, {av}): the damage must be damage to SQLite (exit {ic_code})"
            );
            let (code, r) = dbfsck(&["scan", db.to_str().unwrap()]);
            assert_eq!(code, 4, "{name} ({ps}, {av}): {r:#}\nintegrity_check: {ic}");
            let found = pages_found(&r, &db.file_name().unwrap().to_string_lossy());
            let mut named = messages(&ic);
            for (line, set) in ic
                .lines()
                .filter(|l| messages(l).len() == 1)
                .zip(named.iter_mut())
            {
                if line.contains("key=") {
                    set.extend(ptrmap_line_pages(line, ps));
                }
            }
            let missed: Vec<_> = named.iter().filter(|m| m.is_disjoint(&found)).collect();
            assert!(
                missed.is_empty(),
                "{name} ({ps}, {av}): integrity_check names pages {missed:?} that dbfsck does not\nintegrity_check: {ic}\ndbfsck: {:#}",
                r["findings"]
            );
        }
    }
}

#[test]
fn damaged_pages_are_named_by_their_table_or_index() {
    let Some(tmp) = scratch() else { return };
    let base = tmp.path().join("base.db");
    let made = make(&base, 4096, 0, "delete");
    let p = 4096u64;
    let cases = [
        (
            made.pages_of("t1", "leaf")[3],
            "t1",
            "table",
            "t1",
            "table_leaf",
        ),
        (
            made.pages_of("t1b", "leaf")[2],
            "t1b",
            "index",
            "t1",
            "index_leaf",
        ),
        (
            made.pages_of("w", "leaf")[1],
            "w",
            "table",
            "w",
            "index_leaf",
        ),
        (
            *made.pages_of("t1", "internal").last().unwrap(),
            "t1",
            "table",
            "t1",
            "table_interior",
        ),
    ];
    for (pg, object, object_type, table, role) in cases {
        let db = tmp.path().join(format!("owner-{pg}.db"));
        fs::copy(&base, &db).unwrap();
        // A cell pointer before the content area: the page stays a b-tree page of its kind.
        write_at(
            &db,
            (u64::from(pg) - 1) * p + if role.ends_with("interior") { 12 } else { 8 },
            &[0, 3],
        );
        let (code, r) = dbfsck(&["scan", db.to_str().unwrap()]);
        assert_eq!(code, 4, "{r:#}");
        let f = findings(&r)
            .into_iter()
            .find(|f| f["unit"].as_u64() == Some(u64::from(pg)))
            .unwrap_or_else(|| panic!("page {pg} not named: {r:#}"));
        assert_eq!(f["kind"], "bad_structure", "{f:#}");
        let o = &f["owner"];
        assert_eq!(
            (
                o["object"].as_str(),
                o["object_type"].as_str(),
                o["table"].as_str(),
                o["page_role"].as_str()
            ),
            (Some(object), Some(object_type), Some(table), Some(role)),
            "{f:#}"
        );
        assert!(
            f["detail"]
                .as_str()
                .unwrap()
                .starts_with("cell 0: offset 3 out of range"),
            "{f:#}"
        );
    }
    // An overflow chain's page: its owner is the table, its role overflow.
    let ovfl = made.pages_of("big", "overflow");
    let db = tmp.path().join("owner-overflow.db");
    fs::copy(&base, &db).unwrap();
    write_at(&db, (u64::from(ovfl[2]) - 1) * p, &ovfl[0].to_be_bytes());
    let (code, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!(code, 4);
    let f = findings(&r)
        .into_iter()
        .find(|f| f["kind"] == "double_reference")
        .unwrap();
    assert_eq!(f["unit"].as_u64(), Some(u64::from(ovfl[0])), "{f:#}");
    assert_eq!(f["owner"]["object"], "big");
    assert_eq!(f["owner"]["page_role"], "overflow");
}

/// A WAL crash snapshot: `wal.py DIR` makes DIR/w.db with 2000 rows checkpointed, then five
/// transactions of 300 rows each in the WAL, and copies db and WAL while the writer is open.
const WAL_SNAPSHOT: &str = r#"
import sqlite3, shutil, sys
d = sys.argv[1]
c = sqlite3.connect(f"{d}/live.db", isolation_level=None)
c.execute("pragma page_size=4096"); c.execute("pragma journal_mode=wal"); c.execute("pragma wal_autocheckpoint=0")
c.execute("create table t(a integer primary key, b)")
c.execute("begin"); c.executemany("insert into t(b) values(?)", [("x" * 100,)] * 2000); c.execute("commit")
c.execute("pragma wal_checkpoint(truncate)")
for i in range(5):
    c.execute("begin"); c.executemany("insert into t(b) values(?)", [("y%d" % i * 50,)] * 300); c.execute("commit")
shutil.copy(f"{d}/live.db", f"{d}/w.db"); shutil.copy(f"{d}/live.db-wal", f"{d}/w.db-wal")
c.close()
"#;

fn wal_frames(wal: &Path) -> Vec<(u64, u32, u32)> {
    let b = fs::read(wal).unwrap();
    let ps = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut off = 32;
    while off + 24 + ps <= b.len() {
        let pg = u32::from_be_bytes(b[off..off + 4].try_into().unwrap());
        let commit = u32::from_be_bytes(b[off + 4..off + 8].try_into().unwrap());
        out.push((off as u64, pg, commit));
        off += 24 + ps;
    }
    out
}

/// A directory `name` under `d` holding a copy of the WAL snapshot's database as `w.db` and
/// `wal` (a file under `d`) as its `w.db-wal`; the directory and the database.
fn db_with_wal(d: &Path, name: &str, wal: &str) -> (PathBuf, PathBuf) {
    let dir = d.join(name);
    fs::create_dir(&dir).unwrap();
    let db = dir.join("w.db");
    fs::copy(d.join("w.db"), &db).unwrap();
    fs::copy(d.join(wal), dir.join("w.db-wal")).unwrap();
    (dir, db)
}

/// Runs dbfsck with `args`, human output: its exit code and stdout.
fn human(args: &[&str]) -> (i32, String) {
    let o = common::bin().args(args).output().unwrap();
    (
        common::rc(&o),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn a_wal_snapshot_is_judged_as_sqlite_reads_it() {
    let Some(tmp) = scratch() else { return };
    let d = tmp.path();
    py(WAL_SNAPSHOT, &[d.to_str().unwrap()]);
    let db = d.join("w.db");
    let wal = d.join("w.db-wal");
    let clean_rows: u64 = query(&db, "select count(*) from t").parse().unwrap();
    assert_eq!(clean_rows, 3500);
    let (code, r) = dbfsck(&["scan", d.to_str().unwrap()]);
    assert_eq!((code, kinds(&r)), (0, vec![]), "{r:#}");
    let frames = wal_frames(&wal);
    let commits: Vec<usize> = (0..frames.len()).filter(|&i| frames[i].2 != 0).collect();
    assert_eq!(commits.len(), 5);

    // A flipped byte in a frame of the second transaction: SQLite stops there and silently
    // loses the four transactions from it on; dbfsck says so, with their count.
    let case = |name: &str| {
        let dir = d.join(name);
        fs::create_dir(&dir).unwrap();
        fs::copy(&db, dir.join("w.db")).unwrap();
        fs::copy(&wal, dir.join("w.db-wal")).unwrap();
        dir
    };
    let mid = case("mid");
    let victim = commits[0] + 2;
    write_at(&mid.join("w.db-wal"), frames[victim].0 + 24 + 100, &[0xee]);
    let rows: u64 = query(&mid.join("w.db"), "select count(*) from t")
        .parse()
        .unwrap();
    assert_eq!(
        integrity_check(&mid.join("w.db")).1.trim(),
        "ok",
        "SQLite sees nothing wrong"
    );
    let (code, r) = dbfsck(&["scan", mid.to_str().unwrap()]);
    assert_eq!(code, 4, "{r:#}");
    let f = findings(&r)
        .into_iter()
        .find(|f| f["kind"] == "checksum_mismatch")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(f["unit"].as_u64(), Some(victim as u64 + 1), "{f:#}");
    let lost = f["owner"]["commits_lost"].as_u64().unwrap();
    assert_eq!(
        lost * 300,
        clean_rows - rows,
        "commits lost = the rows SQLite lacks: {f:#}"
    );
    // `inspect` shows the frame where the chain breaks, and its verdict.
    let frame = (victim + 1).to_string();
    let wal_path = mid.join("w.db-wal");
    let (rc, out) = human(&["inspect", wal_path.to_str().unwrap(), "--page", &frame]);
    assert_eq!(rc, 4, "{out}");
    assert!(
        out.contains(&format!("broken: SQLite's recovery stops at frame {frame}")),
        "{out}"
    );
    assert!(out.contains("checksum_mismatch"), "{out}");
    let (rc, out) = human(&["inspect", wal_path.to_str().unwrap(), "--page", "1"]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("verifies from the header to this frame"),
        "{out}"
    );

    // The last frame cut short: the unfinished write of the crash; SQLite drops that one
    // transaction, by design, and so does dbfsck's verdict.
    let torn = case("torn");
    let w = torn.join("w.db-wal");
    let len = fs::metadata(&w).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&w)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let rows: u64 = query(&torn.join("w.db"), "select count(*) from t")
        .parse()
        .unwrap();
    assert_eq!(rows, clean_rows - 300);
    let (code, r) = dbfsck(&["scan", torn.to_str().unwrap()]);
    assert_eq!(
        (code, kinds(&r)),
        (0, vec!["torn_tail".to_owned()]),
        "{r:#}"
    );

    // A database page the WAL supersedes, zeroed in the file: SQLite reads the frame, the next
    // checkpoint rewrites the page; not damage.
    let file_pages = fs::metadata(&db).unwrap().len() / 4096;
    let (_, in_wal, _) = *frames
        .iter()
        .find(|f| u64::from(f.1) <= file_pages && f.1 > 1)
        .unwrap();
    let healed = case("healed");
    // (its cell count impossible: the stale copy is still a b-tree page, a damaged one)
    write_at(
        &healed.join("w.db"),
        (u64::from(in_wal) - 1) * 4096 + 3,
        &[0xff, 0xff],
    );
    assert_eq!(integrity_check(&healed.join("w.db")).1.trim(), "ok");
    let (code, r) = dbfsck(&["scan", healed.to_str().unwrap()]);
    assert_eq!(
        (code, kinds(&r)),
        (0, vec!["superseded_page".to_owned()]),
        "{r:#}"
    );
    let f = &findings(&r)[0];
    let newest = frames.iter().rposition(|f| f.1 == in_wal).unwrap() as u64 + 1;
    assert_eq!(f["unit"].as_u64(), Some(u64::from(in_wal)), "{f:#}");
    assert_eq!(f["owner"]["source"], "wal", "{f:#}");
    assert_eq!(f["owner"]["frame"].as_u64(), Some(newest), "{f:#}");
    assert_eq!(f["owner"]["object"], "t", "{f:#}");

    // A page no frame supersedes, damaged in the file: damage, as integrity_check says.
    let wal_pages: BTreeSet<u32> = frames.iter().map(|f| f.1).collect();
    let victim = (2..file_pages as u32)
        .rev()
        .find(|p| !wal_pages.contains(p))
        .unwrap();
    let bad = case("bad");
    write_at(&bad.join("w.db"), (u64::from(victim) - 1) * 4096, &[0x07]);
    let (_, ic) = integrity_check(&bad.join("w.db"));
    assert!(pages_named(&ic).contains(&victim), "{ic}");
    let (code, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_eq!(code, 4, "{r:#}");
    assert!(pages_found(&r, "w.db").contains(&victim), "{r:#}");
}

/// Keeps a process holding a database open (a read transaction: SQLite's SHARED lock) until
/// dropped.
struct Holder(std::process::Child);

impl Holder {
    fn open(db: &Path) -> Holder {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new("python3")
            .arg("-c")
            .arg("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('begin')\nc.execute('select count(*) from t').fetchone()\nprint('ready', flush=True)\nsys.stdin.read()\n")
            .arg(db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_superseded_page_is_rewritten_from_its_frame_as_sqlites_checkpoint_writes_it() {
    let Some(tmp) = scratch() else { return };
    let d = tmp.path();
    py(WAL_SNAPSHOT, &[d.to_str().unwrap()]);
    let frames = wal_frames(&d.join("w.db-wal"));
    let file_pages = fs::metadata(d.join("w.db")).unwrap().len() / 4096;
    let pg = frames
        .iter()
        .find(|f| u64::from(f.1) <= file_pages && f.1 > 1)
        .unwrap()
        .1;
    let (dir, db) = db_with_wal(d, "db", "w.db-wal");
    let at = (u64::from(pg) - 1) * 4096;
    write_at(&db, at + 3, &[0xff, 0xff]);
    let damaged = fs::read(&db).unwrap();
    // What SQLite's own checkpoint writes, on a copy.
    let ck = d.join("ck");
    fs::create_dir(&ck).unwrap();
    fs::copy(&db, ck.join("w.db")).unwrap();
    fs::copy(dir.join("w.db-wal"), ck.join("w.db-wal")).unwrap();
    let o = Command::new("sqlite3")
        .arg(ck.join("w.db"))
        .arg("pragma wal_checkpoint(truncate)")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let checkpointed = fs::read(ck.join("w.db")).unwrap();
    let page = |b: &[u8]| b[at as usize..at as usize + 4096].to_vec();

    // The dry run plans the restore and writes nothing.
    let (code, r) = dbfsck(&["scan", "--repair", "--dry-run", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["repairs"][0]["action"], "restore_from_wal", "{r:#}");
    assert_eq!(r["repairs"][0]["result"], "planned", "{r:#}");
    assert_eq!(fs::read(&db).unwrap(), damaged);

    // Refused while another process has the database open: nothing written.
    {
        let _open = Holder::open(&db);
        let (code, r) = dbfsck(&["scan", "--repair", dir.to_str().unwrap()]);
        assert_ne!(code & 8, 0, "{r:#}");
        assert!(
            r["errors"]
                .to_string()
                .contains("locked by another process"),
            "{r:#}"
        );
        assert_eq!(fs::read(&db).unwrap(), damaged);
    }

    // A WAL other users can write is no source: the page is left, nothing written.
    {
        use std::os::unix::fs::PermissionsExt;
        let wal = dir.join("w.db-wal");
        let mode = fs::metadata(&wal).unwrap().permissions().mode();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o666)).unwrap();
        let (_, out) = human(&["scan", "--repair", dir.to_str().unwrap()]);
        fs::set_permissions(&wal, fs::Permissions::from_mode(mode)).unwrap();
        assert!(out.contains("writable by other users"), "{out}");
        assert_eq!(fs::read(&db).unwrap(), damaged);
    }

    let (code, r) = dbfsck(&["scan", "--repair", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{r:#}");
    let rep = &r["repairs"][0];
    assert_eq!(
        (
            rep["action"].as_str(),
            rep["result"].as_str(),
            rep["unit"].as_u64()
        ),
        (
            Some("restore_from_wal"),
            Some("applied"),
            Some(u64::from(pg))
        ),
        "{r:#}"
    );
    let newest = frames.iter().rposition(|f| f.1 == pg).unwrap() + 1;
    assert!(
        rep["source"]
            .as_str()
            .unwrap()
            .contains(&format!("frame {newest}")),
        "{rep:#}"
    );
    let repaired = fs::read(&db).unwrap();
    assert_eq!(
        page(&repaired),
        page(&checkpointed),
        "the page SQLite's checkpoint writes"
    );
    assert_ne!(page(&repaired), page(&damaged));
    let mut rest = repaired.clone();
    rest[at as usize..at as usize + 4096].copy_from_slice(&page(&damaged));
    assert_eq!(rest, damaged, "no other byte changed");
    let (code, r2) = dbfsck(&["scan", dir.to_str().unwrap()]);
    assert_eq!((code, kinds(&r2)), (0, vec![]), "{r2:#}");
    assert_eq!(query(&db, "select count(*) from t"), "3500");

    // Undo puts every byte back.
    let undo = r["undo_log"].as_str().unwrap();
    let u = common::bin().args(["undo", undo]).output().unwrap();
    assert_eq!(common::rc(&u), 0, "{u:?}");
    assert_eq!(fs::read(&db).unwrap(), damaged);
}

/// Another database's WAL, left beside this one: `foreign.py DIR` makes DIR/b.db (an
/// indexed table, checkpointed) and DIR/b.db-wal holding one small committed transaction.
const FOREIGN: &str = r#"
import sqlite3, shutil, sys, random
d = sys.argv[1]
c = sqlite3.connect(f"{d}/live-b.db", isolation_level=None)
c.execute("pragma page_size=4096"); c.execute("pragma journal_mode=wal"); c.execute("pragma wal_autocheckpoint=0")
c.execute("create table u(k text, v)"); c.execute("create index ui on u(k)")
r = random.Random(7)
c.execute("begin"); c.executemany("insert into u values(?, ?)", [(str(r.random()), "z" * 300) for _ in range(3000)]); c.execute("commit")
c.execute("pragma wal_checkpoint(truncate)")
c.execute("begin"); c.executemany("insert into u values(?, ?)", [(str(r.random()), "q" * 300) for _ in range(40)]); c.execute("commit")
shutil.copy(f"{d}/live-b.db-wal", f"{d}/b.db-wal")
c.close()
"#;

#[test]
fn a_foreign_wal_beside_a_database_is_never_a_repair_source() {
    let Some(tmp) = scratch() else { return };
    let d = tmp.path();
    py(WAL_SNAPSHOT, &[d.to_str().unwrap()]);
    py(FOREIGN, &[d.to_str().unwrap()]);
    let (dir, db) = db_with_wal(d, "db", "b.db-wal");
    let file_pages = fs::metadata(&db).unwrap().len() / 4096;
    let pg = wal_frames(&dir.join("w.db-wal"))
        .iter()
        .map(|f| f.1)
        .find(|&p| p > 1 && u64::from(p) <= file_pages)
        .unwrap();
    write_at(&db, (u64::from(pg) - 1) * 4096 + 3, &[0xff, 0xff]);
    let before = fs::read(&db).unwrap();
    let (code, r) = dbfsck(&["scan", dir.to_str().unwrap()]);
    assert_eq!(code, 4, "the foreign WAL makes a damaged database: {r:#}");
    assert!(kinds(&r).contains(&"superseded_page".to_owned()), "{r:#}");
    let (_, out) = human(&["scan", "--repair", dir.to_str().unwrap()]);
    assert!(
        out.contains("nothing shows the WAL belongs to this database"),
        "{out}"
    );
    assert!(!out.contains("restore_from_wal"), "{out}");
    assert_eq!(fs::read(&db).unwrap(), before, "no byte written");
}

/// Rewrites the checksum chain of the WAL at `path` (after its fields were edited), as SQLite
/// writes it.
const RECHAIN: &str = r#"
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
fmt = ">II" if struct.unpack(">I", b[0:4])[0] & 1 else "<II"
ps = struct.unpack(">I", b[8:12])[0]
def s(data, s0, s1):
    for i in range(0, len(data), 8):
        x0, x1 = struct.unpack(fmt, data[i:i + 8])
        s0 = (s0 + x0 + s1) & 0xffffffff
        s1 = (s1 + x1 + s0) & 0xffffffff
    return s0, s1
s0, s1 = s(b[0:24], 0, 0)
b[24:32] = struct.pack(">II", s0, s1)
off = 32
while off + 24 + ps <= len(b):
    s0, s1 = s(b[off:off + 8], s0, s1)
    s0, s1 = s(b[off + 24:off + 24 + ps], s0, s1)
    b[off + 16:off + 24] = struct.pack(">II", s0, s1)
    off += 24 + ps
open(p, "wb").write(b)
"#;

#[test]
fn a_page_count_beyond_the_data_is_truncated_and_never_allocated() {
    let Some(tmp) = scratch() else { return };
    let d = tmp.path();
    py(WAL_SNAPSHOT, &[d.to_str().unwrap()]);
    // The header's page count (valid for its change counter) claims 2³² − 1 pages.
    let alone = d.join("alone.db");
    fs::copy(d.join("w.db"), &alone).unwrap();
    let counter = read_be32(&alone, 24);
    write_at(&alone, 92, &counter.to_be_bytes());
    write_at(&alone, 28, &u32::MAX.to_be_bytes());
    let (code, r) = dbfsck(&["scan", alone.to_str().unwrap()]);
    assert_eq!(code, 4, "{r:#}");
    assert!(kinds(&r).contains(&"truncated".to_owned()), "{r:#}");
    // `inspect` of a page number no file can have: an error, not a panic.
    let o = common::bin()
        .args([
            "inspect",
            alone.to_str().unwrap(),
            "--page",
            &u64::MAX.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(common::rc(&o), 8, "{o:?}");

    // The WAL's last commit claims 2³² − 1 pages (its checksum chain rewritten to match).
    let (dir, _) = db_with_wal(d, "walsize", "w.db-wal");
    let wal = dir.join("w.db-wal");
    let last = *wal_frames(&wal).iter().rfind(|f| f.2 != 0).unwrap();
    write_at(&wal, last.0 + 4, &u32::MAX.to_be_bytes());
    py(RECHAIN, &[wal.to_str().unwrap()]);
    let (code, r) = dbfsck(&["scan", dir.to_str().unwrap()]);
    assert_eq!(code, 4, "{r:#}");
    let f = findings(&r)
        .into_iter()
        .find(|f| f["kind"] == "truncated")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("its WAL's last commit"),
        "{f:#}"
    );

    // A hot journal whose header says the rollback restores 2³² − 1 pages.
    let hot = d.join("hot");
    fs::create_dir(&hot).unwrap();
    let hdb = hot.join("hot.db");
    py(HOT, &[hdb.to_str().unwrap()]);
    write_at(&hot.join("hot.db-journal"), 16, &u32::MAX.to_be_bytes());
    let (code, r) = dbfsck(&["scan", hot.to_str().unwrap()]);
    assert_eq!(code, 4, "{r:#}");
    assert!(
        findings(&r).iter().any(|f| f["kind"] == "truncated"
            && f["detail"].as_str().unwrap().contains("its hot journal")),
        "{r:#}"
    );
}

#[test]
fn a_damaged_page_nothing_supersedes_is_copied_to_the_quarantine_and_left() {
    let Some(tmp) = scratch() else { return };
    let d = tmp.path();
    py(WAL_SNAPSHOT, &[d.to_str().unwrap()]);
    let frames = wal_frames(&d.join("w.db-wal"));
    let wal_pages: BTreeSet<u32> = frames.iter().map(|f| f.1).collect();
    let file_pages = fs::metadata(d.join("w.db")).unwrap().len() / 4096;
    let victim = (2..file_pages as u32)
        .rev()
        .find(|p| !wal_pages.contains(p))
        .unwrap();
    let (dir, db) = db_with_wal(d, "db", "w.db-wal");
    let at = (u64::from(victim) - 1) * 4096;
    write_at(&db, at + 3, &[0xff, 0xff]);
    let damaged = fs::read(&db).unwrap();
    let (code, r) = dbfsck(&["scan", "--repair", dir.to_str().unwrap()]);
    assert_eq!(code, 4, "the damage stays: {r:#}");
    let rep = r["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["unit"].as_u64() == Some(u64::from(victim)))
        .unwrap_or_else(|| panic!("{r:#}"))
        .clone();
    assert_eq!(
        (rep["action"].as_str(), rep["result"].as_str()),
        (Some("quarantine"), Some("applied")),
        "{rep:#}"
    );
    assert!(
        rep["detail"].as_str().unwrap().contains("table t"),
        "{rep:#}"
    );
    assert_eq!(fs::read(&db).unwrap(), damaged, "the file is left as it is");
    let q = PathBuf::from(r["quarantine_dir"].as_str().unwrap());
    let manifest = fs::read_to_string(q.join("manifest.jsonl")).unwrap();
    let entry: Value = manifest
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["page"].as_u64() == Some(u64::from(victim)))
        .unwrap_or_else(|| panic!("{manifest}"));
    let copy = fs::read(q.join(entry["copy"].as_str().unwrap())).unwrap();
    assert_eq!(copy, damaged[at as usize..at as usize + 4096].to_vec());
}

/// A writer killed mid-transaction after its cache spilled to the database file: `hot.py
/// PATH` leaves PATH and a hot PATH-journal.
const HOT: &str = r#"
import sqlite3, sys, os
path = sys.argv[1]
c = sqlite3.connect(path, isolation_level=None)
c.execute("pragma page_size=1024")
c.execute("create table t(a integer primary key, b)")
c.execute("begin"); c.executemany("insert into t(b) values(?)", [("x" * 200,)] * 3000); c.execute("commit")
print(c.execute("select count(*), sum(length(b)) from t").fetchone())
sys.stdout.flush()
c.execute("pragma cache_size=5")
c.execute("begin")
c.execute("update t set b = 'changed' || b")
c.execute("delete from t where a % 3 = 0")
os._exit(0)
"#;

#[test]
fn a_hot_journal_is_judged_rolled_back() {
    let Some(tmp) = scratch() else { return };
    let db = tmp.path().join("hot.db");
    let before = py(HOT, &[db.to_str().unwrap()]);
    let journal = tmp.path().join("hot.db-journal");
    assert!(journal.exists(), "the killed writer left its journal");
    // What SQLite reads after rolling it back: the rows before the transaction, intact.
    assert_eq!(
        query(&db, "select count(*), sum(length(b)) from t"),
        before
            .trim()
            .trim_matches(|c| c == '(' || c == ')')
            .replace(", ", "|")
    );
    assert_eq!(integrity_check(&db).1.trim(), "ok");
    let (code, r) = dbfsck(&["scan", tmp.path().to_str().unwrap()]);
    assert_eq!((code, kinds(&r)), (0, vec![]), "{r:#}");
    assert!(
        r["warnings"].to_string().contains("hot journal"),
        "{:#}",
        r["warnings"]
    );

    // A record the header counts, damaged: the rollback stops there — damage.
    let bad = tmp.path().join("bad");
    fs::create_dir(&bad).unwrap();
    fs::copy(&db, bad.join("hot.db")).unwrap();
    fs::copy(&journal, bad.join("hot.db-journal")).unwrap();
    // The first record starts at the sector size (512); its page image 4 bytes in.
    write_at(&bad.join("hot.db-journal"), 512 + 4 + 1024 - 200, &[0x5a]);
    let (code, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
    assert_eq!(code, 4, "{r:#}");
    assert!(kinds(&r).contains(&"checksum_mismatch".to_owned()), "{r:#}");

    // A database page the rollback replaces, damaged in the file: superseded, not damage, and
    // left to SQLite's own rollback by --repair.
    let sup = tmp.path().join("superseded");
    fs::create_dir(&sup).unwrap();
    fs::copy(&db, sup.join("hot.db")).unwrap();
    fs::copy(&journal, sup.join("hot.db-journal")).unwrap();
    let pgno = [512u64, 512 + 1032]
        .into_iter()
        .map(|at| read_be32(&journal, at))
        .find(|&p| p > 1)
        .unwrap();
    write_at(
        &sup.join("hot.db"),
        (u64::from(pgno) - 1) * 1024 + 3,
        &[0xff, 0xff],
    );
    let (code, r) = dbfsck(&["scan", sup.to_str().unwrap()]);
    assert_eq!(code, 0, "{r:#}");
    let f = findings(&r)
        .into_iter()
        .find(|f| f["kind"] == "superseded_page")
        .unwrap_or_else(|| panic!("{r:#}"));
    assert_eq!(f["unit"].as_u64(), Some(u64::from(pgno)), "{f:#}");
    assert_eq!(f["owner"]["source"], "journal", "{f:#}");
    let before = fs::read(sup.join("hot.db")).unwrap();
    let (_, out) = human(&["scan", "--repair", sup.to_str().unwrap()]);
    assert!(
        out.contains("SQLite's rollback restores this page"),
        "{out}"
    );
    assert_eq!(fs::read(sup.join("hot.db")).unwrap(), before);
}

#[test]
fn the_shm_file_is_never_read_and_an_open_database_is_said() {
    let Some(tmp) = scratch() else { return };
    let db = tmp.path().join("live.db");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("pragma journal_mode=wal"); c.execute("pragma wal_autocheckpoint=0")
c.execute("create table t(a)"); c.execute("insert into t values(1)")
c.execute("begin"); c.execute("select * from t").fetchall()
print("ready"); sys.stdout.flush()
sys.stdin.read()
"#,
        )
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    let shm = tmp.path().join("live.db-shm");
    assert!(shm.exists());
    let (code, r) = dbfsck(&["scan", tmp.path().to_str().unwrap()]);
    drop(child.stdin.take());
    child.wait().unwrap();
    assert_eq!(code, 0, "{r:#}");
    let skipped = r["skipped"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["path"].as_str().unwrap().ends_with("live.db-shm")
                && s["reason"].as_str().unwrap().contains("never read")),
        "{skipped:#?}"
    );
    assert!(
        r["warnings"]
            .to_string()
            .contains("another process has the database open"),
        "{:#}",
        r["warnings"]
    );
}

#[test]
fn inspect_decodes_a_page_and_judges_it_alone() {
    let Some(tmp) = scratch() else { return };
    let db = tmp.path().join("i.db");
    let made = make(&db, 4096, 0, "delete");
    let leaf = made.pages_of("t1", "leaf")[0];
    let (rc, out) = human(&["inspect", db.to_str().unwrap(), "--page", &leaf.to_string()]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("13 (table leaf)") && out.contains("rowid"),
        "{out}"
    );
    write_at(&db, (u64::from(leaf) - 1) * 4096 + 8, &[0, 2]);
    let (rc, out) = human(&["inspect", db.to_str().unwrap(), "--page", &leaf.to_string()]);
    assert_eq!(rc, 4, "{out}");
    assert!(out.contains("offset 2 out of range"), "{out}");
}

/// cksumvfs, built from Debian's SQLite source by `scripts/cksumvfs` (its path in
/// `DBFSCK_CKSUMVFS`, which `scripts/test` sets).
fn cksumvfs() -> Option<PathBuf> {
    let p = std::env::var_os("DBFSCK_CKSUMVFS").map(PathBuf::from);
    let ok = p.as_ref().is_some_and(|p| p.exists());
    dbfsck_testkit::can_run(
        "the cksumvfs oracle test",
        if ok {
            Ok(())
        } else {
            Err("DBFSCK_CKSUMVFS does not name cksumvfs.so (scripts/cksumvfs builds it)".into())
        },
    )
    .then(|| p.unwrap())
}

#[test]
fn cksumvfs_pages_are_verified_as_the_extension_reads_them() {
    let Some(tmp) = scratch() else { return };
    let Some(ext) = cksumvfs() else { return };
    let ext = ext.with_extension("");
    let db = tmp.path().join("ck.db");
    let sql = |db: &Path, stmts: &[&str]| {
        let mut c = Command::new("sqlite3");
        c.arg(":memory:")
            .arg(format!(".load {}", ext.display()))
            .arg(format!(".open {}", db.display()));
        c.args(stmts);
        let o = c.output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (code, out) = sql(
        &db,
        &[
            ".filectrl reserve_bytes 8",
            "pragma page_size=1024",
            "create table t(a, b)",
            "insert into t select value, randomblob(300) from generate_series(1, 500)",
            "create index ti on t(a)",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        fs::read(&db).unwrap()[20],
        8,
        "reserved bytes for the checksum"
    );
    let (code, r) = dbfsck(&["scan", db.to_str().unwrap()]);
    assert_eq!((code, kinds(&r)), (0, vec![]), "{r:#}");
    for page in [3u64, 40, 120] {
        let bad = tmp.path().join(format!("ck-{page}.db"));
        fs::copy(&db, &bad).unwrap();
        let mut b = fs::read(&bad).unwrap();
        b[((page - 1) * 1024 + 600) as usize] ^= 0x20;
        fs::write(&bad, b).unwrap();
        let (code, out) = sql(&bad, &["pragma quick_check"]);
        assert_ne!(code, 0, "{out}");
        let named = pages_named(&out);
        let (dcode, r) = dbfsck(&["scan", bad.to_str().unwrap()]);
        assert_eq!(dcode, 4, "{r:#}");
        let f = &findings(&r)[0];
        assert_eq!(f["kind"], "checksum_mismatch", "{r:#}");
        assert_eq!(f["unit"].as_u64(), Some(page));
        assert!(
            named.contains(&(page as u32)),
            "the extension names page {page}: {out}"
        );
    }
}
