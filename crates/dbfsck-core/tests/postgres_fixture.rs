//! The PostgreSQL format on a small real cluster made by initdb (testdata/postgres): a clean scan
//! agrees with pg_checksums' recorded counts, and each kind of damage injected into a copy is
//! reported with the right kind and the owner an operator needs (tablespace, database, relfilenode,
//! fork, segment, block, absolute block). Runs anywhere; the oracle tests against the real
//! pg_checksums are in crates/dbfsck/tests/postgres_oracle.rs.

use std::fs;
use std::path::{Path, PathBuf};

use dbfsck_core::postgres::pg_checksum_page;
use dbfsck_core::{FindingKind, Report, Scanner};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/postgres/cluster")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("pgdata");
    copy_dir(&fixture(), &d);
    (t, d)
}

fn scan(p: &Path) -> Report {
    Scanner::new().scan(&[p]).unwrap()
}

fn patch(path: &Path, offset: usize, f: impl FnOnce(&mut [u8])) {
    let mut b = fs::read(path).unwrap();
    f(&mut b[offset..]);
    fs::write(path, b).unwrap();
}

#[test]
fn clean_cluster_agrees_with_pg_checksums_counts() {
    let r = scan(&fixture());
    assert!(
        r.findings.is_empty() && r.errors.is_empty() && r.skipped.is_empty(),
        "{r:#?}"
    );
    // pg_checksums: 367 files, 1462 blocks (testdata/postgres/README.md), plus pg_control.
    assert_eq!((r.summary.files, r.summary.units), (368, 1463));
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn flipped_bit_is_checksum_mismatch_with_full_owner() {
    let (_t, d) = copy();
    patch(&d.join("base/5/16384"), 10 * 8192 + 4000, |b| b[0] ^= 0x20);
    let r = scan(&d);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(
        (f.kind, f.unit, f.offset, f.length),
        (FindingKind::ChecksumMismatch, Some(10), 81920, 8192)
    );
    assert_eq!(f.format, "postgres");
    assert!(f.path.ends_with("base/5/16384"));
    let o = f.owner.as_ref().unwrap();
    assert_eq!(o["tablespace"], "pg_default");
    assert_eq!(o["database_oid"], 5);
    assert_eq!(o["relfilenode"], 16384);
    assert_eq!(o["fork"], "main");
    assert_eq!(o["segment"], 0);
    assert_eq!(
        (o["block"].as_u64(), o["absolute_block"].as_u64()),
        (Some(10), Some(10))
    );
    assert_eq!(f.expected.as_ref().unwrap().len(), 6, "0x + 4 hex digits");
    assert_eq!(r.exit_code(), 4);
}

#[test]
fn damage_in_fsm_vm_toast_index_and_global_is_found_per_fork() {
    let (_t, d) = copy();
    for (file, block) in [
        ("base/5/16384_fsm", 1),
        ("base/5/16384_vm", 0),
        ("base/5/16394", 3),
        ("base/5/16389", 2),
        ("global/1262", 0),
    ] {
        patch(&d.join(file), block * 8192 + 100, |b| b[0] ^= 0xff);
    }
    let r = scan(&d);
    let got: Vec<(&str, &str, u64, &str)> = r
        .findings
        .iter()
        .map(|f| {
            let o = f.owner.as_ref().unwrap();
            let file = f.path.rsplit_once("pgdata/").unwrap().1;
            (
                file,
                o["fork"].as_str().unwrap(),
                f.unit.unwrap(),
                o["tablespace"].as_str().unwrap(),
            )
        })
        .collect();
    let want = [
        ("base/5/16384_fsm", "fsm", 1, "pg_default"),
        ("base/5/16384_vm", "vm", 0, "pg_default"),
        ("base/5/16389", "main", 2, "pg_default"),
        ("base/5/16394", "main", 3, "pg_default"),
        ("global/1262", "main", 0, "pg_global"),
    ];
    assert_eq!(got, want);
    assert!(r
        .findings
        .iter()
        .all(|f| f.kind == FindingKind::ChecksumMismatch));
}

#[test]
fn all_zero_block_is_new_but_pd_upper_zero_with_garbage_is_damage() {
    let (_t, d) = copy();
    let rel = d.join("base/5/16384");
    patch(&rel, 4 * 8192, |b| b[..8192].fill(0)); // a new page: the server accepts it
    patch(&rel, 7 * 8192 + 14, |b| b[..2].fill(0)); // pd_upper = 0, rest intact
    let r = scan(&d);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert_eq!((f.kind, f.unit), (FindingKind::BadHeader, Some(7)));
    assert!(f.detail.contains("pd_upper is 0"), "{}", f.detail);
}

#[test]
fn checksum_matching_block_with_insane_header_is_bad_header() {
    let (_t, d) = copy();
    let rel = d.join("base/5/16384");
    patch(&rel, 2 * 8192, |b| {
        b[16..18].copy_from_slice(&9000u16.to_ne_bytes()); // pd_special > BLCKSZ
        let c = pg_checksum_page(&b[..8192], 2);
        b[8..10].copy_from_slice(&c.to_ne_bytes());
    });
    let r = scan(&d);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    assert_eq!(
        (r.findings[0].kind, r.findings[0].unit),
        (FindingKind::BadHeader, Some(2))
    );
    assert!(
        r.findings[0].detail.contains("sanity"),
        "{}",
        r.findings[0].detail
    );
}

#[test]
fn segment_files_use_the_absolute_block_number() {
    let (_t, d) = copy();
    // formats.md §1.6: the pattern page (7i+3)&0xFF carries 0xAA4A as block 0 of segment 1
    // (absolute block 131072), 0xAA4C as block 0 of segment 0.
    let mut page: Vec<u8> = (0..8192).map(|i| ((7 * i + 3) & 0xFF) as u8).collect();
    page[8..10].copy_from_slice(&0xAA4Au16.to_ne_bytes());
    fs::write(d.join("base/5/99999.1"), &page).unwrap();
    let r = scan(&d);
    // Its checksum matches as absolute block 131072 (pg_checksums accepts it); its header is the
    // pattern's garbage, which the server rejects, so the one finding is the header, not the sum.
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    assert_eq!(r.findings[0].kind, FindingKind::BadHeader);
    assert!(
        r.findings[0].detail.contains("checksum matches"),
        "{}",
        r.findings[0].detail
    );
    // The same bytes as segment 0 fail: the checksum is bound to the block's position.
    fs::write(d.join("base/5/99999"), &page).unwrap();
    let r = scan(&d);
    assert_eq!(r.findings.len(), 2);
    let f = &r.findings[0];
    assert!(f.path.ends_with("99999"));
    assert_eq!(f.kind, FindingKind::ChecksumMismatch);
    assert_eq!(f.actual.as_deref(), Some("0xaa4c"));
    assert_eq!(f.expected.as_deref(), Some("0xaa4a"));
    let o = f.owner.as_ref().unwrap();
    assert_eq!(
        (o["segment"].as_u64(), o["absolute_block"].as_u64()),
        (Some(0), Some(0))
    );
    // And a damaged segment-1 block reports its absolute block.
    page[500] ^= 1;
    fs::write(d.join("base/5/99999.1"), &page).unwrap();
    fs::remove_file(d.join("base/5/99999")).unwrap();
    let r = scan(&d);
    let o = r.findings[0].owner.as_ref().unwrap();
    assert_eq!(
        (
            o["segment"].as_u64(),
            o["block"].as_u64(),
            o["absolute_block"].as_u64()
        ),
        (Some(1), Some(0), Some(131072))
    );
}

#[test]
fn stray_file_and_short_last_block_never_abort_the_run() {
    let (_t, d) = copy();
    fs::write(d.join("base/5/garbage.txt"), "not a relation").unwrap();
    let rel = d.join("base/5/16384");
    let len = fs::metadata(&rel).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&rel)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    patch(&d.join("base/5/16391"), 100, |b| b[0] ^= 1);
    let r = scan(&d);
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0].path.ends_with("garbage.txt")
            && r.skipped[0].reason.contains("not a relation file")
    );
    let kinds: Vec<_> = r.findings.iter().map(|f| (f.kind, f.unit)).collect();
    let last = len / 8192 - 1;
    assert_eq!(
        kinds,
        [
            (FindingKind::PartialPage, Some(last)),
            (FindingKind::ChecksumMismatch, Some(0))
        ]
    );
    assert_eq!(r.findings[0].length, 8192 - 100);
    assert_eq!(r.summary.files, 368, "every other file is still scanned");
}

#[test]
fn damaged_pg_control_is_reported() {
    let (_t, d) = copy();
    patch(&d.join("global/pg_control"), 100, |b| b[0] ^= 1);
    let r = scan(&d);
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let f = &r.findings[0];
    assert!(f.path.ends_with("global/pg_control"));
    assert_eq!(f.kind, FindingKind::ChecksumMismatch);
    assert!(f.detail.contains("CRC-32C"));
}

#[test]
fn checksums_disabled_is_an_error_that_says_so() {
    let (_t, d) = copy();
    patch(&d.join("global/pg_control"), 0, |b| {
        b[252..256].copy_from_slice(&0u32.to_ne_bytes());
        let crc = crc32c::crc32c(&b[..288]);
        b[288..292].copy_from_slice(&crc.to_ne_bytes());
    });
    let r = scan(&d);
    assert!(r.findings.is_empty());
    assert_eq!(r.errors.len(), 1, "{:#?}", r.errors);
    assert!(
        r.errors[0].message.contains("data checksums are disabled"),
        "{}",
        r.errors[0].message
    );
    assert_eq!(r.exit_code(), 8);
}

#[test]
fn single_relation_file_and_database_directory_are_recognised() {
    let (_t, d) = copy();
    patch(&d.join("base/5/16384"), 3 * 8192 + 9, |b| b[0] ^= 4);
    let r = scan(&d.join("base/5/16384"));
    assert_eq!((r.summary.files, r.findings.len()), (1, 1), "{r:#?}");
    assert_eq!(r.findings[0].format, "postgres");
    let r = scan(&d.join("base/5"));
    assert_eq!(r.findings.len(), 1);
    assert!(
        r.skipped.is_empty(),
        "pg_filenode.map and PG_VERSION are excluded silently: {:?}",
        r.skipped
    );
    let r = Scanner::new()
        .format(Some("postgres"))
        .unwrap()
        .scan(&[d.join("base/5/16384")])
        .unwrap();
    assert_eq!(r.findings.len(), 1);
}

#[test]
fn forced_postgres_format_lists_the_data_directory_like_auto() {
    // Regression: with --format postgres the engine walked PGDATA generically and opened
    // postgresql.conf & co. as relation files (errors, exit 8).
    let (_t, d) = copy();
    fs::write(d.join("postgresql.conf"), "shared_buffers = 128MB\n").unwrap();
    let forced = Scanner::new()
        .format(Some("postgres"))
        .unwrap()
        .scan(&[&d])
        .unwrap();
    assert!(forced.errors.is_empty(), "{:#?}", forced.errors);
    assert_eq!((forced.summary.files, forced.summary.units), (368, 1463));
    assert_eq!(forced.exit_code(), 0);
}
