//! One test per fault class of the native format: each injects one kind of damage the way storage
//! suffers it and asserts the exact finding (page, kind, range) — and nothing else — is reported.

use std::fs;
use std::path::Path;

use dbfsck_core::native::{layout, ChecksumAlgo};
use dbfsck_core::{Finding, FindingKind, Report, Scanner};
use dbfsck_testkit::{prefix_tear, Dataset, Fault, Spec};

fn dataset(dir: &Path, checksum: ChecksumAlgo, page_size: usize) -> Dataset {
    let spec = Spec {
        files: 2,
        pages: 24,
        page_size,
        checksum,
        seed: 7,
    };
    Dataset::generate(dir, spec).unwrap()
}

fn scan(dir: &Path) -> Report {
    Scanner::new().threads(2).scan(&[dir]).unwrap()
}

fn only(report: &Report) -> &Finding {
    assert_eq!(
        report.findings.len(),
        1,
        "expected exactly one finding: {:#?}",
        report.findings
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    &report.findings[0]
}

fn inject_one(checksum: ChecksumAlgo, page: u64, fault: Fault) -> (Report, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(dir.path(), checksum, 8192);
    let mut rng = dbfsck_testkit::rng(99);
    ds.inject(1, page, &fault, &mut rng);
    ds.write_back().unwrap();
    let report = scan(dir.path());
    (report, ds)
}

fn assert_page(f: &Finding, ds: &Dataset, page: u64, kind: FindingKind) {
    assert_eq!(f.kind, kind, "{f:#?}");
    assert_eq!(f.unit, Some(page));
    assert_eq!(f.offset, page * 8192);
    assert_eq!(f.length, 8192);
    assert_eq!(f.path, ds.files[1].path.to_string_lossy());
    assert_eq!(f.format, "native");
}

#[test]
fn clean_dataset_has_no_findings() {
    for algo in [ChecksumAlgo::Crc32, ChecksumAlgo::Xxh3] {
        let dir = tempfile::tempdir().unwrap();
        dataset(dir.path(), algo, 4096);
        let r = scan(dir.path());
        assert!(r.findings.is_empty() && r.errors.is_empty(), "{r:#?}");
        assert_eq!(r.summary.files, 2);
        assert_eq!(r.summary.units, 48);
        assert_eq!(r.summary.bytes, 2 * 24 * 4096);
        assert!(r.summary.complete);
        assert_eq!(r.exit_code(), 0);
    }
}

#[test]
fn bit_flip_in_body_is_checksum_mismatch_with_both_checksums() {
    for algo in [ChecksumAlgo::Crc32, ChecksumAlgo::Xxh3] {
        let (r, ds) = inject_one(algo, 9, Fault::BitFlip { byte: 4000, bit: 3 });
        let f = only(&r);
        assert_page(f, &ds, 9, FindingKind::ChecksumMismatch);
        let (e, a) = (f.expected.as_ref().unwrap(), f.actual.as_ref().unwrap());
        assert_ne!(e, a);
        let digits = if algo == ChecksumAlgo::Crc32 { 8 } else { 16 };
        assert_eq!(e.len(), 2 + digits, "{e}");
        assert_eq!(r.exit_code(), 4);
    }
}

#[test]
fn bit_flip_in_checksum_field_is_checksum_mismatch() {
    let (r, ds) = inject_one(
        ChecksumAlgo::Xxh3,
        3,
        Fault::BitFlip {
            byte: 8192 - 3,
            bit: 0,
        },
    );
    assert_page(only(&r), &ds, 3, FindingKind::ChecksumMismatch);
}

#[test]
fn bit_flip_in_crc32_checksum_upper_half_is_checksum_mismatch() {
    // crc32 is stored zero-extended; a flip in the unused half must not go unnoticed.
    let (r, ds) = inject_one(
        ChecksumAlgo::Crc32,
        3,
        Fault::BitFlip {
            byte: 8192 - 1,
            bit: 7,
        },
    );
    let f = only(&r);
    assert_page(f, &ds, 3, FindingKind::ChecksumMismatch);
    assert_eq!(
        f.expected.as_ref().unwrap().len(),
        18,
        "a non-zero upper half is shown in full"
    );
}

#[test]
fn bit_flip_in_either_lsn_copy_is_bit_rot_not_a_tear() {
    // Header LSN at [24,32), trailer copy at [P-16,P-8): a single damaged field explains the
    // disagreement, so this is a checksum mismatch, and the detail names the field.
    let (r, ds) = inject_one(ChecksumAlgo::Crc32, 4, Fault::BitFlip { byte: 25, bit: 1 });
    let f = only(&r);
    assert_page(f, &ds, 4, FindingKind::ChecksumMismatch);
    assert!(f.detail.contains("header LSN"), "{}", f.detail);
    let (r, ds) = inject_one(
        ChecksumAlgo::Xxh3,
        4,
        Fault::BitFlip {
            byte: 8192 - 16,
            bit: 6,
        },
    );
    let f = only(&r);
    assert_page(f, &ds, 4, FindingKind::ChecksumMismatch);
    assert!(f.detail.contains("trailer LSN"), "{}", f.detail);
}

#[test]
fn bit_flip_in_identity_fields_is_checksum_mismatch() {
    for byte in [0, 4, 8, 16] {
        let (r, ds) = inject_one(ChecksumAlgo::Xxh3, 6, Fault::BitFlip { byte, bit: 0 });
        assert_page(only(&r), &ds, 6, FindingKind::ChecksumMismatch);
    }
}

#[test]
fn torn_write_new_prefix_old_suffix_is_torn() {
    for n in [1, 8, 15] {
        let (r, ds) = inject_one(
            ChecksumAlgo::Crc32,
            11,
            Fault::Torn {
                from_new: prefix_tear(16, n),
            },
        );
        let f = only(&r);
        assert_page(f, &ds, 11, FindingKind::TornWrite);
        assert!(f.expected.is_some() && f.actual.is_some());
    }
}

#[test]
fn torn_write_out_of_order_old_prefix_new_suffix_is_torn() {
    let from_new: Vec<bool> = (0..16).map(|i| i >= 10).collect();
    let (r, ds) = inject_one(ChecksumAlgo::Xxh3, 2, Fault::Torn { from_new });
    assert_page(only(&r), &ds, 2, FindingKind::TornWrite);
}

#[test]
fn torn_middle_sectors_without_lsn_evidence_is_checksum_mismatch() {
    // First and last sectors from the same version: the evidence does not say torn.
    let from_new: Vec<bool> = (0..16).map(|i| (5..9).contains(&i)).collect();
    let (r, ds) = inject_one(ChecksumAlgo::Xxh3, 2, Fault::Torn { from_new });
    assert_page(only(&r), &ds, 2, FindingKind::ChecksumMismatch);
}

#[test]
fn complete_new_version_is_not_damage() {
    let (r, _) = inject_one(
        ChecksumAlgo::Xxh3,
        2,
        Fault::Torn {
            from_new: vec![true; 16],
        },
    );
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn page_copied_within_the_file_is_misdirected() {
    let (r, ds) = inject_one(
        ChecksumAlgo::Crc32,
        7,
        Fault::Misdirected { file: 1, page: 19 },
    );
    let f = only(&r);
    assert_page(f, &ds, 7, FindingKind::MisdirectedWrite);
    assert!(f.detail.contains("page 19 of this file"), "{}", f.detail);
}

#[test]
fn page_copied_from_another_file_is_misdirected() {
    let (r, ds) = inject_one(
        ChecksumAlgo::Xxh3,
        7,
        Fault::Misdirected { file: 0, page: 7 },
    );
    let f = only(&r);
    assert_page(f, &ds, 7, FindingKind::MisdirectedWrite);
    assert!(f.detail.contains("another file"), "{}", f.detail);
}

#[test]
fn zeroed_page_is_zeroed() {
    let (r, ds) = inject_one(ChecksumAlgo::Crc32, 23, Fault::Zeroed);
    let f = only(&r);
    assert_page(f, &ds, 23, FindingKind::ZeroedPage);
    assert!(f.expected.is_none());
}

#[test]
fn truncation_mid_page_is_partial_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(dir.path(), ChecksumAlgo::Xxh3, 8192);
    ds.truncate_mid_page(0, 10, 777);
    ds.write_back().unwrap();
    let r = scan(dir.path());
    let f = only(&r);
    assert_eq!(
        (f.kind, f.unit, f.offset, f.length),
        (FindingKind::PartialPage, Some(10), 81920, 777)
    );
    // The 10 whole pages before it (header included) are still verified.
    assert_eq!(r.summary.units, 10 + 24);
}

#[test]
fn damaged_header_is_bad_header_and_the_rest_is_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(dir.path(), ChecksumAlgo::Crc32, 8192);
    let mut rng = dbfsck_testkit::rng(1);
    ds.damage_header(0, 37); // inside the page-size field
    ds.inject(0, 5, &Fault::Zeroed, &mut rng);
    ds.write_back().unwrap();
    let r = scan(dir.path());
    assert_eq!(r.findings.len(), 2, "{:#?}", r.findings);
    let (h, z) = (&r.findings[0], &r.findings[1]);
    assert_eq!(
        (h.kind, h.unit, h.offset),
        (FindingKind::BadHeader, Some(0), 0)
    );
    assert!(h.detail.contains("recovered"), "{}", h.detail);
    assert!(
        !h.detail.contains("0x"),
        "checksums are fields, not in the detail: {}",
        h.detail
    );
    assert_eq!((z.kind, z.unit), (FindingKind::ZeroedPage, Some(5)));
}

#[test]
fn header_checksum_mismatch_carries_both_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(dir.path(), ChecksumAlgo::Xxh3, 8192);
    ds.damage_header(1, 2000); // in the zero part of the header page body
    ds.write_back().unwrap();
    let r = scan(dir.path());
    let f = only(&r);
    assert_eq!(f.kind, FindingKind::BadHeader);
    assert!(f.expected.is_some() && f.actual.is_some(), "{f:#?}");
}

fn write_header(path: &Path, page_size: u32, code: u8, extra_len: usize) {
    let mut b = vec![0u8; 48 + extra_len];
    b[0..4].copy_from_slice(&layout::PAGE_MAGIC);
    b[4..6].copy_from_slice(&1u16.to_le_bytes());
    b[32..36].copy_from_slice(&1u32.to_le_bytes());
    b[36..40].copy_from_slice(&page_size.to_le_bytes());
    b[40] = code;
    fs::write(path, b).unwrap();
}

#[test]
fn absurd_page_size_is_bad_header_not_a_panic_or_huge_allocation() {
    let dir = tempfile::tempdir().unwrap();
    for (i, ps) in [u32::MAX, 0, 3, 1 << 30, 2048, 131072]
        .into_iter()
        .enumerate()
    {
        write_header(&dir.path().join(format!("f{i}.dbfp")), ps, 1, 100);
    }
    let r = scan(dir.path());
    assert_eq!(r.findings.len(), 6, "{:#?}", r.findings);
    for f in &r.findings {
        assert_eq!(f.kind, FindingKind::BadHeader);
        assert!(f.detail.contains("page size"), "{}", f.detail);
        assert!(f.length <= 148);
    }
}

#[test]
fn unknown_checksum_algorithm_and_version_are_bad_header() {
    let dir = tempfile::tempdir().unwrap();
    write_header(&dir.path().join("a.dbfp"), 4096, 9, 4096);
    // Version 2 with a valid checksum: a real file of a newer version.
    let mut b = fs::read(dir.path().join("a.dbfp")).unwrap();
    b[40] = 1;
    b[32] = 2;
    b.truncate(4096);
    let sum = crc32fast::hash(&b[..4088]) as u64;
    b[4088..].copy_from_slice(&sum.to_le_bytes());
    fs::write(dir.path().join("b.dbfp"), &b).unwrap();
    // Version 2 whose checksum fails: rot in the version field is a checksum mismatch.
    b[4000] ^= 1;
    fs::write(dir.path().join("c.dbfp"), &b).unwrap();
    let r = scan(dir.path());
    let details: Vec<&str> = r.findings.iter().map(|f| f.detail.as_str()).collect();
    assert_eq!(details.len(), 3, "{details:#?}");
    assert!(
        details[0].contains("checksum algorithm 9"),
        "{}",
        details[0]
    );
    assert!(details[1].contains("version 2"), "{}", details[1]);
    assert!(
        details[2].contains("checksum does not match"),
        "{}",
        details[2]
    );
    assert!(r.findings[2].expected.is_some());
}

#[test]
fn file_shorter_than_its_header_page_is_partial_page() {
    let dir = tempfile::tempdir().unwrap();
    write_header(&dir.path().join("short.dbfp"), 8192, 1, 1000);
    let r = scan(dir.path());
    let f = only(&r);
    assert_eq!(
        (f.kind, f.offset, f.length),
        (FindingKind::PartialPage, 0, 1048)
    );
    // A file that ends inside a large header page: the whole file is the partial page.
    write_header(&dir.path().join("short.dbfp"), 65536, 2, 6000);
    let r = scan(dir.path());
    assert_eq!(only(&r).length, 6048);
}

#[test]
fn garbage_page_with_random_lsns_is_checksum_mismatch_not_torn() {
    // Random bytes over a page: its LSN fields disagree, but nothing says two writes mixed.
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(dir.path(), ChecksumAlgo::Xxh3, 8192);
    let mut rng = dbfsck_testkit::rng(8);
    dbfsck_testkit::fill_random(&mut rng, &mut ds.images[0][5 * 8192..6 * 8192]);
    ds.write_back().unwrap();
    let r = scan(dir.path());
    let f = only(&r);
    assert_eq!((f.kind, f.unit), (FindingKind::ChecksumMismatch, Some(5)));
}

#[test]
fn empty_file_named_as_native_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.dbfp");
    fs::write(&p, b"").unwrap();
    let r = Scanner::new()
        .format(Some("native"))
        .unwrap()
        .scan(&[&p])
        .unwrap();
    let f = only(&r);
    assert_eq!((f.kind, f.length), (FindingKind::Truncated, 0));
    assert_eq!(r.exit_code(), 4);
}

#[test]
fn garbage_forced_as_native_is_bad_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("garbage.bin");
    fs::write(&p, vec![0xA5u8; 100_000]).unwrap();
    let r = Scanner::new()
        .format(Some("native"))
        .unwrap()
        .scan(&[&p])
        .unwrap();
    let f = only(&r);
    assert_eq!(f.kind, FindingKind::BadHeader);
    assert!(f.detail.contains("could not be checked"), "{}", f.detail);
}

#[test]
fn unrelated_files_in_a_directory_are_skipped_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    fs::write(dir.path().join("empty"), "").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/blob.bin"), vec![7u8; 70_000]).unwrap();
    let r = scan(dir.path());
    // Not corrupt, but not clean either: nothing there was verified (exit 8, one error).
    assert!(r.findings.is_empty(), "{r:#?}");
    assert_eq!(r.errors.len(), 1, "{r:#?}");
    assert!(
        r.errors[0].message.contains("nothing here was verified"),
        "{r:#?}"
    );
    assert_eq!(r.exit_code(), 8);
    assert_eq!(r.skipped.len(), 3);
    assert!(r
        .skipped
        .iter()
        .all(|s| s.reason == "not a recognised format"));
}

#[test]
fn missing_path_is_an_error_and_the_rest_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(dir.path(), ChecksumAlgo::Xxh3, 4096);
    let mut rng = dbfsck_testkit::rng(3);
    ds.inject(0, 2, &Fault::Zeroed, &mut rng);
    ds.write_back().unwrap();
    let missing = dir.path().join("nope");
    let r = Scanner::new()
        .scan(&[missing.as_path(), dir.path()])
        .unwrap();
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].path, missing.to_string_lossy());
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.exit_code(), 12);
}

#[test]
fn quarantine_marker_page_is_reported_as_quarantined() {
    use dbfsck_core::native::{encode_page, PageMeta, PageType};
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(dir.path(), ChecksumAlgo::Crc32, 8192);
    let meta = PageMeta {
        page_type: PageType::QUARANTINED,
        flags: 0,
        file_id: ds.files[0].file_id,
        page_no: 3,
        lsn: 5,
    };
    encode_page(
        &mut ds.images[0][3 * 8192..4 * 8192],
        &meta,
        b"cut out",
        ChecksumAlgo::Crc32,
    )
    .unwrap();
    ds.write_back().unwrap();
    let r = scan(dir.path());
    let f = only(&r);
    assert_eq!((f.kind, f.unit), (FindingKind::Quarantined, Some(3)));
    assert_eq!(r.exit_code(), 4);
}
