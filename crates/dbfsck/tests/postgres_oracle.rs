//! Oracle test against the real thing: PostgreSQL 15 makes a cluster (initdb -k, pgbench with a
//! relation over 1 GiB so a second segment exists, indexes, TOAST, fsm and vm forks), the server
//! is stopped, damage of many kinds is injected across files, forks and segments, and dbfsck must
//! report exactly the (file, block) set that `pg_checksums --check` reports, plus the pd_upper = 0
//! garbage blocks that only dbfsck reports; all-zero blocks are reported by neither. A base backup
//! made by pg_basebackup (which pg_checksums refuses) is scanned too, and a running server gets a
//! warning.
//!
//! Needs root (initdb refuses root, so PostgreSQL runs as `postgres` through runuser) and
//! PostgreSQL 15's programs (`pg_config --bindir`). Where they are missing the test is skipped,
//! except when the run must be complete (`CI` or `DBFSCK_TEST_REQUIRE_ALL`, set by
//! `scripts/test` once it has installed them), where it fails.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::json_run as dbfsck;
use common::pg::*;

fn pg_checksums_bad_blocks(bin: &Path, data: &str) -> (i32, BTreeSet<(String, u64)>, String) {
    let o = as_postgres(bin, "pg_checksums", &["--check", "-D", data]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let mut set = BTreeSet::new();
    for line in err.lines() {
        // pg_checksums: error: checksum verification failed in file "<path>", block <N>: ...
        if let Some(rest) = line.split("checksum verification failed in file \"").nth(1) {
            let (path, tail) = rest.split_once("\", block ").unwrap();
            let block: u64 = tail.split(':').next().unwrap().parse().unwrap();
            set.insert((path.to_owned(), block));
        }
    }
    (
        o.status.code().unwrap(),
        set,
        format!("{}{err}", String::from_utf8_lossy(&o.stdout)),
    )
}

/// A relation member of `archive` with at least two blocks (the one whose file name is `name`,
/// when given), and the offset of its bytes, as GNU tar lists them (`tar -tvR`: the block
/// number of each member's header; its bytes start at the next 512-byte block).
fn gnu_tar_member(archive: &Path, name: Option<&str>) -> (String, u64) {
    let o = ok(
        Command::new("tar")
            .args(["-tvRf"])
            .arg(archive)
            .output()
            .unwrap(),
        "tar -tvR",
    );
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        // block 12: -rw------- postgres/postgres 16384 2026-12-02 06:00 base/5/1259
        let Some(rest) = line.strip_prefix("block ") else {
            continue;
        };
        let (block, rest) = rest.split_once(": ").unwrap();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if !fields[0].starts_with('-') || fields.len() < 6 {
            continue;
        }
        let size: u64 = fields[2].parse().unwrap();
        let member = fields[5..].join(" ");
        let file = member.rsplit('/').next().unwrap();
        let relation = file.bytes().all(|b| b.is_ascii_digit())
            && (member.starts_with("base/") || member.starts_with("PG_"));
        if relation && size >= 16384 && name.is_none_or(|n| n == file) {
            return (member, (block.parse::<u64>().unwrap() + 1) * 512);
        }
    }
    panic!("no relation member in {}", archive.display());
}

fn findings(v: &Value, kind: &str) -> BTreeSet<(String, u64)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        // Block verdicts only: a base backup's manifest also fails a changed file as a whole.
        .filter(|f| f["kind"] == kind && f["owner"].get("entry").is_none())
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["unit"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Reads the 8 KiB block at `offset`, lets `f` change it, writes it back.
fn patch(path: &str, offset: u64, f: impl FnOnce(&mut [u8])) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = vec![0u8; 8192];
    file.read_exact_at(&mut b, offset)
        .unwrap_or_else(|e| panic!("{path} @{offset}: {e}"));
    f(&mut b);
    file.write_all_at(&b, offset).unwrap();
}

#[test]
fn verdicts_match_pg_checksums_on_a_real_cluster() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, data, sock) = new_cluster(&bin);
    let top = tmp.path();
    start_cluster(&bin, &data, &sock, "-c max_wal_size=4GB");
    let mut server = Server {
        bin: &bin,
        data: data.clone(),
        running: true,
    };

    // pgbench scale 85: pgbench_accounts is over 1 GiB, so it has a segment .1.
    ok(
        as_postgres(
            &bin,
            "pgbench",
            &[
                "-h", &sock, "-U", "postgres", "-i", "-q", "-s", "85", "postgres",
            ],
        ),
        "pgbench -i",
    );
    psql(&bin, &sock, "create table docs(id int, body text); insert into docs select g, string_agg(md5((g*i)::text), '') from generate_series(1,20) g, generate_series(1,3000) i group by g");
    psql(&bin, &sock, "vacuum");
    psql(&bin, &sock, "checkpoint");
    let path_of = |rel: &str| {
        format!(
            "{data}/{}",
            psql(
                &bin,
                &sock,
                &format!("select pg_relation_filepath('{rel}')")
            )
        )
    };
    let accounts = path_of("pgbench_accounts");
    let accounts_pkey = path_of("pgbench_accounts_pkey");
    let branches = path_of("pgbench_branches");
    let toast = path_of(&psql(
        &bin,
        &sock,
        "select reltoastrelid::regclass from pg_class where relname = 'docs'",
    ));
    assert!(
        Path::new(&format!("{accounts}.1")).is_file(),
        "pgbench_accounts must have a second segment"
    );

    // A base backup of the running cluster; and the live cluster gets a warning.
    let backup = top.join("backup").to_str().unwrap().to_owned();
    ok(
        as_postgres(
            &bin,
            "pg_basebackup",
            &[
                "-h", &sock, "-U", "postgres", "-D", &backup, "-X", "fetch", "-c", "fast",
            ],
        ),
        "pg_basebackup",
    );
    let (_, live) = dbfsck(&["scan", &data]);
    assert!(
        live["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["message"].as_str().unwrap().contains("server is running")),
        "{}",
        live["warnings"]
    );
    server.stop();

    // Clean: the same files and blocks as pg_checksums (plus pg_control, which dbfsck checks too).
    let o = ok(
        as_postgres(&bin, "pg_checksums", &["--check", "-D", &data]),
        "pg_checksums on the clean cluster",
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let count = |label: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(label))
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (rc, clean) = dbfsck(&["scan", &data]);
    assert_eq!(rc, 0, "{}", clean["findings"]);
    // The data directory's scan is pg_checksums' files and blocks, pg_control, and the WAL
    // (counted by a scan of pg_wal/ alone: its files, and its records as units).
    let (rc, wal) = dbfsck(&["scan", &format!("{data}/pg_wal")]);
    assert_eq!(rc, 0, "{wal}");
    let (wal_files, wal_units) = (
        wal["summary"]["files"].as_u64().unwrap(),
        wal["summary"]["units"].as_u64().unwrap(),
    );
    assert!(wal_files > 0 && wal_units > 0, "{wal}");
    assert_eq!(
        clean["summary"]["files"].as_u64(),
        Some(count("Files scanned") + 1 + wal_files)
    );
    assert_eq!(
        clean["summary"]["units"].as_u64(),
        Some(count("Blocks scanned") + 1 + wal_units)
    );

    // Damage of many kinds across files, forks and segments.
    let seg1 = format!("{accounts}.1");
    let flips = [
        (accounts.clone(), 5u64),
        (accounts.clone(), 131_000),
        (seg1.clone(), 7),
        (format!("{accounts}_fsm"), 0),
        (format!("{accounts}_vm"), 0),
        (accounts_pkey.clone(), 100),
        (branches.clone(), 0),
        (toast.clone(), 2),
        (format!("{data}/global/1262"), 0),
    ];
    for (i, (file, block)) in flips.iter().enumerate() {
        patch(file, block * 8192, |b| b[200 + i * 500] ^= 1 << (i % 8));
    }
    // A block written to the wrong place (its checksum is bound to its position).
    let mut moved = vec![0u8; 8192];
    patch(&accounts, 40 * 8192, |b| moved.copy_from_slice(b));
    patch(&accounts, 41 * 8192, |b| b.copy_from_slice(&moved));
    // A torn block: its first half from another block.
    patch(&seg1, 12 * 8192, |b| {
        b[..4096].copy_from_slice(&moved[..4096])
    });
    // An all-zero block: new to the server, skipped by pg_checksums; reported by neither.
    patch(&accounts, 60 * 8192, |b| b.fill(0));
    // pd_upper = 0 over a non-zero block: pg_checksums skips it, the server rejects it.
    patch(&accounts_pkey, 50 * 8192, |b| b[14..16].fill(0));
    patch(&seg1, 20 * 8192, |b| b[14..16].fill(0));

    let (pg_rc, pg_bad, pg_out) = pg_checksums_bad_blocks(&bin, &data);
    assert_eq!(pg_rc, 1, "{pg_out}");
    let mut expected: BTreeSet<(String, u64)> = flips.iter().cloned().collect();
    expected.insert((accounts.clone(), 41));
    expected.insert((seg1.clone(), 12));
    assert_eq!(
        pg_bad, expected,
        "pg_checksums itself must see what was injected: {pg_out}"
    );
    let (rc, v) = dbfsck(&["scan", &data]);
    assert_eq!(rc, 4);
    assert_eq!(
        findings(&v, "checksum_mismatch"),
        pg_bad,
        "dbfsck and pg_checksums agree block for block"
    );
    let only_dbfsck: BTreeSet<(String, u64)> = [(accounts_pkey.clone(), 50), (seg1.clone(), 20)]
        .into_iter()
        .collect();
    assert_eq!(findings(&v, "bad_header"), only_dbfsck);
    assert_eq!(
        v["findings"].as_array().unwrap().len(),
        pg_bad.len() + 2,
        "nothing else, the zero block included"
    );
    // The finding in segment 1 names its absolute block.
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == seg1.as_str() && f["unit"] == 7)
        .unwrap();
    assert_eq!(f["owner"]["absolute_block"], 131072 + 7);
    assert_eq!(f["owner"]["segment"], 1);

    // The base backup: pg_checksums refuses it; dbfsck scans it, clean, then finds damage in it.
    let (bk_rc, _, bk_out) = pg_checksums_bad_blocks(&bin, &backup);
    assert_ne!(bk_rc, 0, "pg_checksums refuses a base backup: {bk_out}");
    let (rc, v) = dbfsck(&["scan", &backup]);
    assert_eq!(rc, 0, "{}", v["findings"]);
    assert!(v["summary"]["units"].as_u64().unwrap() > 131072);
    let bk_accounts = accounts.replacen(&data, &backup, 1);
    patch(&bk_accounts, 9 * 8192, |b| b[300] ^= 0x80);
    let (rc, v) = dbfsck(&["scan", &backup]);
    assert_eq!(rc, 4);
    assert_eq!(
        findings(&v, "checksum_mismatch"),
        [(bk_accounts.clone(), 9)].into_iter().collect()
    );
    // The backup's manifest fails the file as a whole too.
    assert!(
        v["findings"].as_array().unwrap().iter().any(|f| {
            f["kind"] == "checksum_mismatch"
                && f["owner"]["entry"]
                    .as_str()
                    .is_some_and(|e| bk_accounts.ends_with(&format!("/{e}")))
        }),
        "{v}"
    );
}

/// Issue 16, cases 12 and 13, on a real cluster: a tablespace location scanned on its own is
/// recognised and verified (its damaged block reported, not "files 0, clean"); a base backup in
/// tar format has its relation members verified in place, a flipped block in base.tar and in
/// the tablespace's archive found at the offsets GNU tar gives and as on the extracted files;
/// and a damaged block of an UNLOGGED table in a crashed cluster is a note, not damage — the
/// server's crash recovery then resets the table from its init fork, as the note says, while the
/// logged table's damaged block is still there for the server to refuse.
#[test]
fn tablespaces_tar_backups_and_unlogged_tables_are_judged_as_postgresql_does() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, data, sock) = new_cluster(&bin);
    let top = tmp.path();
    let ts = top.join("ts");
    fs::create_dir_all(&ts).unwrap();
    ok(
        Command::new("chown")
            .args(["postgres", ts.to_str().unwrap()])
            .output()
            .unwrap(),
        "chown",
    );
    let start = || start_cluster(&bin, &data, &sock, "");
    start();
    let mut server = Server {
        bin: &bin,
        data: data.clone(),
        running: true,
    };
    psql(
        &bin,
        &sock,
        &format!("create tablespace ts location '{}'", ts.display()),
    );
    psql(&bin, &sock, "create table spaced (id int, a text) tablespace ts; insert into spaced select g, md5(g::text) from generate_series(1, 20000) g");
    psql(&bin, &sock, "create unlogged table scratch (id int, a text); insert into scratch select g, md5(g::text) from generate_series(1, 20000) g");
    psql(&bin, &sock, "checkpoint");
    let rel = |name: &str| {
        let p = format!(
            "{data}/{}",
            psql(
                &bin,
                &sock,
                &format!("select pg_relation_filepath('{name}')")
            )
        );
        fs::canonicalize(p).unwrap()
    };
    let spaced = rel("spaced");
    let scratch = rel("scratch");
    assert!(
        spaced.starts_with(fs::canonicalize(&ts).unwrap()),
        "{}",
        spaced.display()
    );
    assert!(Path::new(&format!("{}_init", scratch.display())).is_file());
    let tar = top.join("tarbackup").to_str().unwrap().to_owned();
    ok(
        as_postgres(
            &bin,
            "pg_basebackup",
            &[
                "-h", &sock, "-U", "postgres", "-D", &tar, "-Ft", "-X", "fetch", "-c", "fast",
            ],
        ),
        "pg_basebackup -Ft",
    );
    // A crash: the next start runs recovery.
    ok(
        as_postgres(&bin, "pg_ctl", &["-D", &data, "-m", "immediate", "stop"]),
        "pg_ctl stop -m immediate",
    );
    server.running = false;
    let controldata = ok(
        as_postgres(&bin, "pg_controldata", &["-D", &data]),
        "pg_controldata",
    );
    let state = String::from_utf8_lossy(&controldata.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("Database cluster state:")
                .map(|s| s.trim().to_owned())
        })
        .unwrap();
    let control = dbfsck_core::postgres::parse_control(
        &fs::read(format!("{data}/global/pg_control")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (state.as_str(), control.shut_down_cleanly()),
        ("in production", false),
        "pg_control's state as dbfsck reads it: {}",
        control.state
    );
    let spaced_s = spaced.to_str().unwrap();
    let scratch_s = scratch.to_str().unwrap();
    patch(spaced_s, 8192, |b| b[4000] ^= 1);
    patch(scratch_s, 8192, |b| b[4000] ^= 1);

    // The tablespace location alone.
    let (rc, v) = dbfsck(&["scan", ts.to_str().unwrap()]);
    assert_eq!(rc, 4, "{v}");
    assert_eq!(
        findings(&v, "checksum_mismatch"),
        BTreeSet::from([(spaced_s.to_owned(), 1)]),
        "{v}"
    );
    assert!(
        v["warnings"]
            .to_string()
            .contains("tablespace location scanned without its data directory"),
        "{v}"
    );

    // The data directory: the tablespace's block is damage, the unlogged table's a note.
    let (rc, v) = dbfsck(&["scan", &data]);
    assert_eq!(rc, 4, "{v}");
    let damaged: Vec<_> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(damaged.len(), 1, "{v}");
    assert!(fs::canonicalize(&damaged[0]).unwrap() == spaced, "{v}");
    assert!(
        v["warnings"].as_array().unwrap().iter().any(|w| {
            w["message"].as_str().unwrap().contains("UNLOGGED relation")
                && fs::canonicalize(w["path"].as_str().unwrap()).is_ok_and(|p| p == scratch)
        }),
        "{v}"
    );

    // A tar-format base backup: its relation members are verified in place, clean.
    let (rc, v) = dbfsck(&["scan", &tar]);
    assert_eq!(rc, 0, "{v}");
    assert!(v["summary"]["units"].as_u64().unwrap() > 100, "{v}");
    // One block flipped in a member of base.tar and one in the tablespace's archive, found
    // where GNU tar says the members' bytes are (`-R`: the header's block number).
    let ts_tar = fs::read_dir(&tar)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_stem()
                .is_some_and(|s| s.to_str().unwrap().bytes().all(|b| b.is_ascii_digit()))
        })
        .expect("the tablespace's <oid>.tar");
    let spaced_node = spaced.file_name().unwrap().to_str().unwrap().to_owned();
    let mut damaged = BTreeSet::new();
    for (archive, pick) in [
        (Path::new(&tar).join("base.tar"), None),
        (ts_tar.clone(), Some(spaced_node.as_str())),
    ] {
        let (member, data) = gnu_tar_member(&archive, pick);
        let text = archive.to_str().unwrap().to_owned();
        patch(&text, data + 8192, |b| b[4000] ^= 1);
        damaged.insert((text, member, data + 8192));
    }
    let (rc, v) = dbfsck(&["scan", &tar]);
    assert_eq!(rc, 4, "{v}");
    // The page findings; the backup's manifest also fails each member as a whole.
    let (pages, whole): (Vec<&Value>, Vec<&Value>) = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|f| f["owner"].get("entry").is_none());
    let got: BTreeSet<(String, String, u64)> = pages
        .iter()
        .map(|f| {
            assert_eq!(f["unit"], 1, "{f}");
            (
                f["path"].as_str().unwrap().to_owned(),
                f["owner"]["member"].as_str().unwrap().to_owned(),
                f["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, damaged, "{v}");
    let by_manifest: BTreeSet<(String, String, u64)> = whole
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "checksum_mismatch", "{f}");
            (
                f["path"].as_str().unwrap().to_owned(),
                f["owner"]["member"].as_str().unwrap().to_owned(),
                f["offset"].as_u64().unwrap() + 8192,
            )
        })
        .collect();
    assert_eq!(by_manifest, damaged, "{v}");
    // The same verdict as on the files GNU tar extracts: the data directory, and the
    // tablespace location.
    let mut roots = Vec::new();
    for (i, (archive, _, _)) in damaged.iter().enumerate() {
        let x = top.join(format!("extracted{i}"));
        fs::create_dir_all(&x).unwrap();
        ok(
            Command::new("tar")
                .args(["-xf", archive, "-C"])
                .arg(&x)
                .output()
                .unwrap(),
            "tar -x",
        );
        roots.push(x.to_str().unwrap().to_owned());
    }
    let mut args = vec!["scan"];
    args.extend(roots.iter().map(String::as_str));
    let (rc, v) = dbfsck(&args);
    assert_eq!(rc, 4, "{v}");
    let extracted: BTreeSet<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            roots
                .iter()
                .find_map(|r| p.strip_prefix(&format!("{r}/")))
                .unwrap()
                .to_owned()
        })
        .collect();
    let members: BTreeSet<String> = damaged.iter().map(|(_, m, _)| m.clone()).collect();
    assert_eq!(extracted, members, "{v}");
    let human = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args(["scan", &tar])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&human.stdout).contains("clean: no damage found"),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );

    // The server agrees: recovery resets the unlogged table; the logged block is refused.
    start();
    server.running = true;
    assert_eq!(psql(&bin, &sock, "select count(*) from scratch"), "0");
    let o = as_postgres(
        &bin,
        "psql",
        &[
            "-h",
            &sock,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atq",
            "-c",
            "select count(*) from spaced",
        ],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("invalid page"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    server.stop();
}

/// Issue 16, case 11: live DDL on a running PostgreSQL. While pgbench creates, fills,
/// truncates and drops tables, scans of the data directory (with and without `--online`) never
/// report a file the server removed or shrank as an error or damage: it is
/// `changed_during_scan` or skipped, so no scan exits with bit 4 or 8.
#[test]
fn live_ddl_is_never_an_error_or_damage() {
    let Some(bin) = prerequisites() else { return };
    let (tmp, data, sock) = new_cluster(&bin);
    let top = tmp.path();
    start_cluster(&bin, &data, &sock, "");
    let mut server = Server {
        bin: &bin,
        data: data.clone(),
        running: true,
    };
    let script = top.join("churn.sql");
    fs::write(
        &script,
        "create table c_:client_id (id int, a text);\n\
         insert into c_:client_id select g, md5(g::text) from generate_series(1, 5000) g;\n\
         truncate c_:client_id;\n\
         insert into c_:client_id values (1, 'x');\n\
         drop table c_:client_id;\n",
    )
    .unwrap();
    let mut churn = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join("pgbench"))
        .args([
            "-h", &sock, "-U", "postgres", "-n", "-c", "2", "-T", "30", "-f",
        ])
        .arg(&script)
        .arg("postgres")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let bad = common::failing_scans(&data, 30);
    let _ = churn.kill();
    let _ = churn.wait();
    server.stop();
    assert!(
        bad.is_empty(),
        "{} of 30 scans failed:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
