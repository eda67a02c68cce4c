//! Oracle tests against a real MariaDB 10.11 server (`scripts/test` installs `mariadb-server`):
//! tables in full_crc32, crc32, ROW_FORMAT=COMPRESSED and page_compressed formats, thousands of
//! pages, damage of every kind injected after a clean shutdown, and dbfsck's verdicts compared
//! page for page with `innochecksum`'s, and with the server's where innochecksum is wrong
//! (legacy and "none" checksums, which the server reads; doublewrite slots).
//!
//! Needs root (the server runs as `mysql` through runuser). Skipped where MariaDB is missing,
//! except when the run must be complete (`CI` or `DBFSCK_TEST_REQUIRE_ALL`), where that fails
//! the test.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dbfsck_core::innodb::{
    self, doublewrite, legacy_new, legacy_old, PageVerdict, NO_CHECKSUM_MAGIC,
};
use dbfsck_core::BytesSource;
use dbfsck_testkit::mariadb::{available, innochecksum_failures, MariaDb};
use serde_json::Value;

const PS: usize = 16384;

mod common;
use common::json_run as dbfsck;

/// (file name relative to the data directory, page) → kind, for every finding.
fn findings(v: &Value, data: &Path) -> BTreeMap<(String, u64), String> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let rel = Path::new(path)
                .strip_prefix(data)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                (rel, f["unit"].as_u64().unwrap()),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn page(bytes: &[u8], n: usize) -> &[u8] {
    &bytes[n * PS..(n + 1) * PS]
}

/// Non-zero pages of a file, except page 0 (innochecksum gives up on a file whose page 0 fails).
fn written_pages(bytes: &[u8]) -> Vec<usize> {
    (1..bytes.len() / PS)
        .filter(|&n| page(bytes, n).iter().any(|&b| b != 0))
        .collect()
}

fn create_tables(db: &MariaDb, rows: u32) {
    let table = |name: &str, extra: &str| {
        format!(
            "create table shop.{name} (id int primary key, a varchar(200), b int, key(b)) \
             engine=innodb {extra}; insert into shop.{name} select seq, repeat(md5(seq), 6), \
             seq * 7 from seq_1_to_{rows};"
        )
    };
    let sql = [
        "create database shop; use shop;".to_owned(),
        table("fc", ""),
        table("pc", "page_compressed=1"),
        table("cmp", "row_format=compressed key_block_size=8"),
        "set global innodb_checksum_algorithm=crc32;".into(),
        table("c32", ""),
        table("leg", ""),
        "set global innodb_checksum_algorithm=full_crc32;".into(),
    ]
    .concat();
    db.sql(&sql).unwrap();
}

fn sums(db: &MariaDb, table: &str) -> String {
    db.sql(&format!(
        "select count(*), sum(b), sum(crc32(a)) from shop.{table} force index(primary); \
         select count(*), sum(b) from shop.{table} force index(b)"
    ))
    .unwrap_or_else(|e| panic!("reading shop.{table} failed: {e}"))
}

fn innochecksum_all(data: &Path, files: &[&str], log_dir: &Path) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    for f in files {
        let log = log_dir.join(format!("{}.log", f.replace('/', "_")));
        let pages = innochecksum_failures(&data.join(f), &log)
            .unwrap_or_else(|e| panic!("innochecksum could not check {f}: {e}"));
        out.extend(pages.into_iter().map(|p| (f.to_string(), p)));
    }
    out
}

#[test]
fn verdicts_agree_with_innochecksum_and_the_server() {
    if !available("the InnoDB oracle test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    db.start(&[]).unwrap();
    create_tables(&db, 40_000);
    let leg_sums = sums(&db, "leg");
    // A running server: a warning, and the scan still works.
    let (code, v) = dbfsck(&["scan", db.data.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert!(
        v["warnings"].to_string().contains("the server is running"),
        "{v}"
    );
    db.stop().unwrap();
    let data = db.data.clone();
    let files = [
        "ibdata1",
        "shop/fc.ibd",
        "shop/pc.ibd",
        "shop/cmp.ibd",
        "shop/c32.ibd",
        "shop/leg.ibd",
    ];
    for f in &files[1..] {
        let pages = fs::metadata(data.join(f)).unwrap().len() as usize / PS;
        assert!(pages >= 100, "{f} has only {pages} pages");
    }

    // Clean: dbfsck finds nothing; innochecksum finds nothing but (in some versions) the
    // populated doublewrite slots of ibdata1, which are images of other pages, not damage.
    let (code, v) = dbfsck(&["scan", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert!(v["summary"]["units"].as_u64().unwrap() > 5_000, "{v}");
    let sys = fs::read(data.join("ibdata1")).unwrap();
    let (dw, slots) = doublewrite::read_slots(&BytesSource(&sys), PS)
        .unwrap()
        .unwrap();
    let clean_ic = innochecksum_all(&data, &files, tmp.path());
    for (f, p) in &clean_ic {
        assert!(
            f == "ibdata1" && dw.contains(*p),
            "innochecksum flags {f} page {p} of a clean datadir"
        );
    }
    eprintln!(
        "clean datadir: innochecksum flags {} of {} populated doublewrite slots; dbfsck none",
        clean_ic.len(),
        slots.len()
    );

    // Damage.
    let pristine: BTreeMap<&str, Vec<u8>> = files
        .iter()
        .map(|f| (*f, fs::read(data.join(f)).unwrap()))
        .collect();
    let mut images = pristine.clone();
    let mut expect: BTreeMap<(String, u64), &str> = BTreeMap::new();
    let mut legacy: BTreeSet<(String, u64)> = BTreeSet::new();
    {
        let mut hit =
            |f: &'static str, n: usize, kind: &'static str, edit: &dyn Fn(&mut [u8], &[u8])| {
                let src = pristine[f].clone();
                let img = images.get_mut(f).unwrap();
                edit(&mut img[n * PS..(n + 1) * PS], &src);
                expect.insert((f.to_owned(), n as u64), kind);
            };
        for f in ["shop/fc.ibd", "shop/c32.ibd"] {
            let w = written_pages(&pristine[f]);
            let (a, b, c, d, e) = (w[10], w[40], w[80], w[120], *w.last().unwrap());
            hit(f, a, "checksum_mismatch", &|p, _| p[5000] ^= 0x20);
            // Torn: the header's sectors from a newer write (LSN changed), the rest old.
            hit(f, b, "torn_write", &|p, _| p[23] = p[23].wrapping_add(9));
            // Misdirected: a whole valid page written at the wrong place.
            let from = c + 1;
            hit(f, c, "misdirected_write", &|p, src| {
                p.copy_from_slice(page(src, from))
            });
            // Garbage.
            hit(f, d, "checksum_mismatch", &|p, _| p[200..4000].fill(0xff));
            // The tail of the file's last written page torn off (trailer from another write).
            hit(f, e, "torn_write", &|p, _| {
                let n = p.len();
                p[n - 4] ^= 1;
                p[n - 8] ^= 1;
            });
        }
        let w = written_pages(&pristine["shop/cmp.ibd"]);
        // ROW_FORMAT=COMPRESSED pages are 8 KiB: edit inside page 2n's 16 KiB window.
        let zp = w[3];
        hit("shop/cmp.ibd", zp, "checksum_mismatch", &|p, _| {
            p[3000] ^= 1
        });
        let w = written_pages(&pristine["shop/pc.ibd"]);
        hit("shop/pc.ibd", w[5], "checksum_mismatch", &|p, _| {
            p[100] ^= 0x80
        });
    }
    // cmp.ibd findings are in 8 KiB pages: translate.
    let cmp_fix: Vec<_> = expect
        .keys()
        .filter(|(f, _)| f == "shop/cmp.ibd")
        .cloned()
        .collect();
    for k in cmp_fix {
        let kind = expect.remove(&k).unwrap();
        // Byte 3000 of a 16 KiB window at n: 8 KiB page 2n.
        expect.insert((k.0, k.1 * 2), kind);
    }
    // leg.ibd: every written page re-stamped with the legacy innodb checksum (and one with
    // "none"): valid to the server, invalid to innochecksum.
    {
        let img = images.get_mut("shop/leg.ibd").unwrap();
        let w = written_pages(&pristine["shop/leg.ibd"]);
        for (i, &n) in w.iter().enumerate() {
            let p = &mut img[n * PS..(n + 1) * PS];
            if i == 3 {
                p[0..4].copy_from_slice(&NO_CHECKSUM_MAGIC.to_be_bytes());
                p[PS - 8..PS - 4].copy_from_slice(&NO_CHECKSUM_MAGIC.to_be_bytes());
            } else {
                let new = legacy_new(p);
                p[0..4].copy_from_slice(&new.to_be_bytes());
                let old = legacy_old(p);
                p[PS - 8..PS - 4].copy_from_slice(&old.to_be_bytes());
            }
            legacy.insert(("shop/leg.ibd".to_owned(), n as u64));
        }
    }
    for (f, img) in &images {
        fs::write(data.join(f), img).unwrap();
    }

    let (code, v) = dbfsck(&["scan", data.to_str().unwrap()]);
    assert_eq!(code, 4, "{v}");
    let got = findings(&v, &data);
    let want: BTreeMap<(String, u64), String> = expect
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(
        got, want,
        "dbfsck's findings differ from the injected damage"
    );

    let ic = innochecksum_all(&data, &files, tmp.path());
    let ic_damage: BTreeSet<_> = ic
        .iter()
        .filter(|(f, p)| !(f == "ibdata1" && dw.contains(*p)))
        .filter(|k| !legacy.contains(k))
        .cloned()
        .collect();
    let ours: BTreeSet<_> = got.keys().cloned().collect();
    assert_eq!(
        ours, ic_damage,
        "dbfsck and innochecksum disagree on damaged pages"
    );
    let ic_legacy = ic.iter().filter(|k| legacy.contains(k)).count();
    eprintln!(
        "damaged datadir: {} pages damaged, both agree; innochecksum also flags {ic_legacy} of {} \
         legacy/none pages the server reads",
        ours.len(),
        legacy.len()
    );

    // The server's verdict where innochecksum is wrong: with the other damage undone, the
    // server reads every row of the legacy-checksummed table, through both indexes.
    for (f, img) in &pristine {
        if *f != "shop/leg.ibd" && *f != "shop/fc.ibd" {
            fs::write(data.join(f), img).unwrap();
        }
    }
    db.start(&[]).unwrap();
    assert_eq!(sums(&db, "leg"), leg_sums, "the server read different rows");
    assert!(db.sql("check table shop.leg").unwrap().contains("OK"));
    // And where both tools flag a page, so does the server.
    let err = db
        .sql("select count(*), sum(crc32(a)) from shop.fc force index(primary)")
        .expect_err("the server read a table with damaged pages");
    assert!(
        err.contains("corrupt") || db.error_log().contains("corrupted"),
        "unexpected error: {err}"
    );
    db.stop().unwrap();
}

/// Server options that flush dirty pages as soon as they can, each batch through the
/// doublewrite buffer: under a write-heavy workload the slots then always hold the pages most
/// recently written, as on a busy production server.
const AGGRESSIVE_FLUSHING: [&str; 5] = [
    "--innodb-max-dirty-pages-pct=0",
    "--innodb-max-dirty-pages-pct-lwm=0.001",
    "--innodb-adaptive-flushing-lwm=0",
    "--innodb-io-capacity=20000",
    "--innodb-flush-log-at-trx-commit=1",
];

/// A page of a tablespace that a doublewrite slot can rebuild: the newest slot image of the
/// page verifies as that page, and it is at least as new as the page on disk.
struct Rebuildable {
    file: PathBuf,
    page: usize,
    image: Vec<u8>,
}

/// A rebuildable page the test tore, and the torn bytes it wrote.
struct Torn {
    page: Rebuildable,
    bytes: Vec<u8>,
}

/// The pages of `file` whose newest doublewrite image (in `sys`) verifies as the page, is
/// not older than the page on disk and lies within the redo log (`log`): at or after its
/// checkpoint, not beyond its end.
fn rebuildable(sys: &[u8], log: &[u8], file: &Path) -> Vec<Rebuildable> {
    let redo = innodb::redo::read_bounds(&BytesSource(log)).unwrap();
    let bytes = fs::read(file).unwrap();
    let params = innodb::space_params(&bytes).unwrap();
    let fmt = params.format;
    let ps = fmt.physical_size;
    let (_, slots) = doublewrite::read_slots(&BytesSource(sys), PS)
        .unwrap()
        .unwrap();
    let mut newest: BTreeMap<usize, (u64, Vec<u8>)> = BTreeMap::new();
    for s in slots.iter().filter(|s| s.space_id == params.space_id) {
        let n = s.page_no as usize;
        let image = &sys[s.offset as usize..s.offset as usize + ps];
        let verifies = matches!(
            innodb::judge_page(image, &fmt, params.space_id, n as u64),
            PageVerdict::Ok { lsn, .. } if lsn == s.lsn
        );
        let current = (redo.checkpoint_lsn..=redo.end_lsn).contains(&s.lsn);
        if verifies && current && newest.get(&n).is_none_or(|(l, _)| s.lsn > *l) {
            newest.insert(n, (s.lsn, image.to_vec()));
        }
    }
    newest
        .into_iter()
        .filter(|(n, (lsn, _))| {
            bytes
                .get(n * ps..(n + 1) * ps)
                .is_some_and(|p| be64(p, 16) <= *lsn)
        })
        .map(|(page, (_, image))| Rebuildable {
            file: file.to_path_buf(),
            page,
            image,
        })
        .collect()
}

fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(b[off..off + 8].try_into().unwrap())
}

/// Torn writes as a power cut makes them, on a server killed (SIGKILL) during a write-heavy
/// workload with aggressive flushing, so the doublewrite slots hold what production leaves
/// there: each torn page has its first 4 KiB from its newest write and the rest from an older
/// version of the same page. dbfsck finds exactly them, plans, rebuilds them from their slots
/// (exit 1), undoes exactly and repairs again; the server then recovers the repaired datadir to
/// the same rows as an untouched copy of the crashed one. While the server runs, a repair
/// refuses to write.
#[test]
fn torn_pages_rebuilt_from_the_doublewrite_buffer() {
    if !available("the InnoDB doublewrite repair test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::install(tmp.path()).unwrap();
    db.start(&[]).unwrap();
    db.sql(
        "create database shop; use shop; \
         create table shop.fc (id int primary key, a varchar(200), b int, key(b)) engine=innodb; \
         insert into shop.fc select seq, repeat(md5(seq), 6), seq from seq_1_to_20000; \
         set global innodb_checksum_algorithm=crc32; \
         create table shop.c32 (id int primary key, a varchar(200), b int, key(b)) engine=innodb; \
         insert into shop.c32 select seq, repeat(md5(seq), 6), seq from seq_1_to_20000; \
         create table shop.idle (id int primary key, a varchar(200)) engine=innodb; \
         insert into shop.idle select seq, repeat(md5(seq), 6) from seq_1_to_3000;",
    )
    .unwrap();
    // The workload: one client per table, each commit updating rows on every leaf page, so
    // the pages of both tables are dirtied side by side and flush batches hold some of each.
    for table in ["fc", "c32"] {
        db.sql(&format!(
            "delimiter //\n\
             create procedure shop.work_{table}() begin declare i int default 0; while true do \
               update shop.{table} set b = b + 1 where id % 61 = i % 61; \
               set i = i + 1; end while; end//"
        ))
        .unwrap();
    }
    db.stop().unwrap();
    let data = db.data.clone();
    let tables = [data.join("shop/fc.ibd"), data.join("shop/c32.ibd")];
    // Every page as of the clean shutdown: the older versions the tears are made of.
    let before: Vec<Vec<u8>> = tables.iter().map(|f| fs::read(f).unwrap()).collect();

    // Crash under the workload until the slots hold pages of both tables (each crash is
    // recovered by the next start): which pages the last batches hold is up to the server.
    let root = data.to_str().unwrap();
    let mut candidates: Vec<Vec<Rebuildable>> = Vec::new();
    for crash in 1..=5 {
        db.start(&AGGRESSIVE_FLUSHING).unwrap();
        let workload: Vec<_> = ["fc", "c32"]
            .iter()
            .map(|t| db.spawn_sql(&format!("call shop.work_{t}()")).unwrap())
            .collect();
        std::thread::sleep(std::time::Duration::from_secs(3));
        db.kill().unwrap();
        for mut client in workload {
            client.wait().unwrap();
        }
        // The crash itself leaves whole pages (the server writes each page in one request).
        let (code, v) = dbfsck(&["scan", root]);
        assert_eq!(code, 0, "the crashed datadir already holds damage: {v}");
        let sys = fs::read(data.join("ibdata1")).unwrap();
        let log = fs::read(data.join("ib_logfile0")).unwrap();
        candidates = tables
            .iter()
            .zip(&before)
            .map(|(f, old)| {
                rebuildable(&sys, &log, f)
                    .into_iter()
                    .filter(|r| {
                        // An older version of the page, with an LSN that differs in the bits
                        // the trailer keeps.
                        old.get(r.page * PS..(r.page + 1) * PS).is_some_and(|o| {
                            o[20..24] != r.image[20..24] && o.iter().any(|&b| b != 0)
                        })
                    })
                    .collect()
            })
            .collect();
        let counts: Vec<usize> = candidates.iter().map(Vec::len).collect();
        eprintln!(
            "crash {crash}: pages rebuildable from the doublewrite buffer (fc, c32): {counts:?}"
        );
        if counts.iter().all(|&n| n >= 2) {
            break;
        }
    }
    assert!(
        candidates.iter().all(|c| c.len() >= 2),
        "after 5 crashes the slots still hold too few pages of each table"
    );
    let untouched = tempfile::tempdir().unwrap();
    let mut crashed = db.copy_to(untouched.path()).unwrap();

    // Tear up to 4 rebuildable pages of each table (full_crc32 and crc32): the first 4 KiB
    // from the newest write, the rest from the page's version at the clean shutdown.
    let mut torn: Vec<Torn> = Vec::new();
    for ((f, old), pages) in tables.iter().zip(&before).zip(candidates) {
        let mut bytes = fs::read(f).unwrap();
        let step = (pages.len() / 4).max(1);
        for r in pages.into_iter().step_by(step).take(4) {
            let range = r.page * PS..(r.page + 1) * PS;
            let mut page = r.image.clone();
            page[4096..].copy_from_slice(&old[range.clone()][4096..]);
            bytes[range].copy_from_slice(&page);
            torn.push(Torn {
                page: r,
                bytes: page,
            });
        }
        fs::write(f, &bytes).unwrap();
    }
    let expect: BTreeSet<(String, u64)> = torn
        .iter()
        .map(|t| {
            let rel = t.page.file.strip_prefix(&data).unwrap();
            (rel.to_string_lossy().into_owned(), t.page.page as u64)
        })
        .collect();
    let (code, v) = dbfsck(&["scan", root]);
    assert_eq!(code, 4, "{v}");
    let got = findings(&v, &data);
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), expect, "{v}");
    assert!(got.values().all(|k| k == "torn_write"), "{v}");
    let check_pages = |want: fn(&Torn) -> &[u8], what: &str| {
        for t in &torn {
            let r = &t.page;
            let now = fs::read(&r.file).unwrap();
            assert!(
                page(&now, r.page) == want(t),
                "{} page {}: {what}",
                r.file.display(),
                r.page
            );
        }
    };

    // Dry run: the plan, nothing changed.
    let (code, v) = dbfsck(&["scan", root, "--repair", "--dry-run"]);
    assert_eq!(code, 4, "{v}");
    let repairs = v["repairs"].as_array().unwrap();
    assert_eq!(repairs.len(), torn.len(), "{v}");
    for r in repairs {
        assert_eq!(r["action"], "restore_from_doublewrite", "{r}");
        assert_eq!(r["result"], "planned", "{r}");
    }
    check_pages(|t| &t.bytes, "the dry run changed it");

    // Repair: every torn page rebuilt from its newest slot, verified, exit 1; then clean.
    let repair = || {
        let (code, v) = dbfsck(&["scan", root, "--repair"]);
        assert_eq!(code, 1, "{v}");
        let repairs = v["repairs"].as_array().unwrap();
        assert_eq!(repairs.len(), torn.len(), "{v}");
        for r in repairs {
            assert_eq!(r["action"], "restore_from_doublewrite", "{r}");
            assert_eq!(r["result"], "applied", "{r}");
        }
        check_pages(|t| &t.page.image, "not its slot image after the repair");
        assert_eq!(dbfsck(&["scan", root]).0, 0);
        v["undo_log"].as_str().unwrap().to_owned()
    };
    let undo_log = repair();

    // Undo puts the torn bytes back exactly; a second repair converges again.
    let o = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args(["undo", &undo_log])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_pages(|t| &t.bytes, "undo left it different");
    let second_undo = repair();

    // The server recovers the repaired datadir to the rows of the untouched crashed copy.
    crashed.start(&[]).unwrap();
    let want = (sums(&crashed, "fc"), sums(&crashed, "c32"));
    crashed.stop().unwrap();
    db.start(&[]).unwrap();
    assert_eq!((sums(&db, "fc"), sums(&db, "c32")), want);
    let check = db.sql("check table shop.fc, shop.c32").unwrap();
    assert_eq!(check.matches("\tOK").count(), 2, "{check}");

    // Nor does an undo (it takes the server's lock on ibdata1 too): the repaired pages stay.
    let o = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args(["undo", &second_undo])
        .output()
        .unwrap();
    assert!(!o.status.success(), "an undo wrote while the server ran");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ibdata1 is locked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    check_pages(
        |t| &t.page.image,
        "an undo under the running server changed it",
    );

    // While the server runs, a repair refuses to write (it holds its lock on ibdata1).
    let idle = data.join("shop/idle.ibd");
    let clean = fs::read(&idle).unwrap();
    let mut bad = clean.clone();
    let n = written_pages(&clean)[2];
    bad[n * PS + 3000] ^= 1;
    fs::write(&idle, &bad).unwrap();
    let (code, v) = dbfsck(&["scan", root, "--repair"]);
    assert_eq!(code & 8, 8, "{v}");
    assert!(
        v["errors"]
            .to_string()
            .contains("locked by another process"),
        "{v}"
    );
    assert_eq!(
        fs::read(&idle).unwrap(),
        bad,
        "a repair wrote while the server ran"
    );
    fs::write(&idle, &clean).unwrap();
    db.stop().unwrap();
}
