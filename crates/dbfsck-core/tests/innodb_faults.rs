//! InnoDB fault classes on real tablespaces made by MariaDB 10.11 (`testdata/innodb/fixtures`:
//! full_crc32, crc32, ROW_FORMAT=COMPRESSED with 4 KiB pages, page_compressed), one named test
//! per class. The oracle tests in `crates/dbfsck/tests/innodb_oracle.rs` compare the same
//! verdicts with innochecksum and the server.

use std::fs;
use std::path::{Path, PathBuf};

use dbfsck_core::innodb::{
    judge_page, legacy_new, legacy_old, space_params, stamp_page, PageVerdict, SpaceFormat,
    NO_CHECKSUM_MAGIC,
};
use dbfsck_core::{Finding, FindingKind, Format, Scanner};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/innodb/fixtures")
        .join(name);
    fs::read(p).unwrap()
}

/// Writes `bytes` as `<tmp>/fixtures/<name>` and scans it; the findings.
fn scan_one(name: &str, bytes: &[u8]) -> (Vec<Finding>, u64, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fixtures");
    fs::create_dir(&db).unwrap();
    let path: PathBuf = db.join(name);
    fs::write(&path, bytes).unwrap();
    let report = Scanner::new().scan(&[&path]).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    (report.findings, report.summary.units, dir)
}

fn fmt_of(bytes: &[u8]) -> SpaceFormat {
    space_params(bytes).unwrap().format
}

const TABLES: [&str; 5] = [
    "full_crc32.ibd",
    "crc32.ibd",
    "compressed.ibd",
    "page_compressed.ibd",
    "old_page_compressed.ibd",
];

#[test]
fn real_tablespaces_are_clean_and_every_page_verifies() {
    for name in TABLES {
        let bytes = fixture(name);
        let p = space_params(&bytes).unwrap();
        let ps = p.format.physical_size;
        assert_eq!(bytes.len() % ps, 0);
        let mut valid = 0;
        for (n, page) in bytes.chunks(ps).enumerate() {
            match judge_page(page, &p.format, p.space_id, n as u64) {
                PageVerdict::Ok { .. } => valid += 1,
                PageVerdict::Zero => {}
                v => panic!("{name} page {n}: {v:?}"),
            }
        }
        assert!(valid >= 4, "{name}: {valid} written pages");
        let (findings, units, _d) = scan_one(name, &bytes);
        assert!(findings.is_empty(), "{name}: {findings:?}");
        assert_eq!(units, (bytes.len() / ps) as u64, "{name}");
    }
    // The formats the fixtures stand for.
    assert!(fmt_of(&fixture("full_crc32.ibd")).full_crc32);
    assert!(!fmt_of(&fixture("crc32.ibd")).full_crc32);
    assert_eq!(fmt_of(&fixture("compressed.ibd")).physical_size, 4096);
    assert!(fmt_of(&fixture("page_compressed.ibd")).page_compression);
}

fn one(findings: &[Finding]) -> &Finding {
    assert_eq!(findings.len(), 1, "{findings:?}");
    &findings[0]
}

fn written(bytes: &[u8], ps: usize) -> Vec<usize> {
    (1..bytes.len() / ps)
        .filter(|&n| bytes[n * ps..(n + 1) * ps].iter().any(|&b| b != 0))
        .collect()
}

#[test]
fn flipped_bit_is_a_checksum_mismatch_in_every_format() {
    for name in TABLES {
        let mut bytes = fixture(name);
        let ps = fmt_of(&bytes).physical_size;
        let n = written(&bytes, ps)[2];
        bytes[n * ps + 100] ^= 0x08; // inside even a page_compressed page's payload
        let (f, _, _d) = scan_one(name, &bytes);
        let f = one(&f);
        assert_eq!(
            (f.kind, f.unit),
            (FindingKind::ChecksumMismatch, Some(n as u64)),
            "{name}"
        );
        assert_eq!(
            f.owner.as_ref().unwrap()["table"],
            name.trim_end_matches(".ibd")
        );
        assert_eq!(f.owner.as_ref().unwrap()["database"], "fixtures");
        // An old-format page_compressed page stores no checksum: its stream fails to inflate.
        let stored = !name.starts_with("old_page_compressed");
        assert_eq!(f.expected.is_some() && f.actual.is_some(), stored, "{f:?}");
    }
}

#[test]
fn lsn_trailer_disagreeing_is_a_torn_write() {
    for name in ["full_crc32.ibd", "crc32.ibd"] {
        let mut bytes = fixture(name);
        let ps = fmt_of(&bytes).physical_size;
        let n = written(&bytes, ps)[1];
        bytes[n * ps + 23] ^= 0x40; // the header's LSN, from a newer write
        let (f, _, _d) = scan_one(name, &bytes);
        assert_eq!(one(&f).kind, FindingKind::TornWrite, "{name}");
    }
}

#[test]
fn a_valid_page_in_the_wrong_place_is_a_misdirected_write() {
    for name in TABLES {
        let mut bytes = fixture(name);
        let ps = fmt_of(&bytes).physical_size;
        let w = written(&bytes, ps);
        let (to, from) = (w[1], w[2]);
        let src = bytes[from * ps..(from + 1) * ps].to_vec();
        bytes[to * ps..(to + 1) * ps].copy_from_slice(&src);
        let (f, _, _d) = scan_one(name, &bytes);
        let f = one(&f);
        assert_eq!(
            (f.kind, f.unit),
            (FindingKind::MisdirectedWrite, Some(to as u64)),
            "{name}"
        );
    }
}

#[test]
fn all_zero_pages_are_valid_as_the_server_says() {
    for name in TABLES {
        let mut bytes = fixture(name);
        let ps = fmt_of(&bytes).physical_size;
        let n = written(&bytes, ps)[1];
        bytes[n * ps..(n + 1) * ps].fill(0);
        let (f, _, _d) = scan_one(name, &bytes);
        assert!(f.is_empty(), "{name}: {f:?}");
    }
}

#[test]
fn legacy_and_none_checksums_are_valid_as_the_server_says() {
    let mut bytes = fixture("crc32.ibd");
    let ps = 16384;
    let w = written(&bytes, ps);
    for (i, &n) in w.iter().enumerate() {
        let p = &mut bytes[n * ps..(n + 1) * ps];
        if i % 2 == 0 {
            let new = legacy_new(p);
            p[0..4].copy_from_slice(&new.to_be_bytes());
            let old = legacy_old(p);
            p[ps - 8..ps - 4].copy_from_slice(&old.to_be_bytes());
        } else {
            p[0..4].copy_from_slice(&NO_CHECKSUM_MAGIC.to_be_bytes());
            p[ps - 8..ps - 4].copy_from_slice(&NO_CHECKSUM_MAGIC.to_be_bytes());
        }
    }
    let (f, _, _d) = scan_one("crc32.ibd", &bytes);
    assert!(f.is_empty(), "{f:?}");
    // A legacy page whose body then changes fails.
    let n = w[0];
    bytes[n * ps + 7000] ^= 1;
    let (f, _, _d) = scan_one("crc32.ibd", &bytes);
    assert_eq!(one(&f).kind, FindingKind::ChecksumMismatch);
}

#[test]
fn damaged_page_zero_is_reported_and_the_rest_still_checked() {
    // innochecksum stops at a bad page 0; dbfsck recovers the format from the next pages.
    for name in ["full_crc32.ibd", "crc32.ibd"] {
        let mut bytes = fixture(name);
        bytes[54..58].copy_from_slice(&0xdead_0000u32.to_be_bytes()); // flags garbage
        let n = written(&bytes, 16384)[3];
        bytes[n * 16384 + 500] ^= 1;
        let (f, units, _d) = scan_one(name, &bytes);
        let units_expected = (bytes.len() / 16384) as u64;
        assert_eq!(units, units_expected, "{name}");
        let got: Vec<_> = f.iter().map(|f| (f.unit, f.kind)).collect();
        assert_eq!(
            got,
            [
                (Some(0), FindingKind::ChecksumMismatch),
                (Some(n as u64), FindingKind::ChecksumMismatch)
            ],
            "{name}"
        );
    }
}

/// Case 4 of the second review: the first 64 KiB (pages 0-3) zeroed in a fully written
/// tablespace. The format is found further in the file (the probe no longer stops at page 3),
/// page 0 is reported as the lost header, and further damage is not hidden — while a file in
/// which no page verifies anywhere is still one never written.
#[test]
fn a_lost_header_with_the_pages_after_it_hides_nothing() {
    for name in ["full_crc32.ibd", "crc32.ibd"] {
        let mut bytes = fixture(name);
        bytes[..65536].fill(0);
        let n = *written(&bytes, 16384).last().unwrap();
        assert!(n >= 5, "{name}");
        bytes[n * 16384 + 700] ^= 1;
        let (f, _, _d) = scan_one(name, &bytes);
        let got: Vec<_> = f.iter().map(|f| (f.unit, f.kind)).collect();
        assert_eq!(
            got,
            [
                (Some(0), FindingKind::ZeroedPage),
                (Some(n as u64), FindingKind::ChecksumMismatch)
            ],
            "{name}: {f:?}"
        );
    }
}

/// Case 8 of the second review: a ROW_FORMAT=COMPRESSED tablespace whose page 0 is damaged
/// is identified from its other pages (the probe tries the zip page sizes too), so page 0 is
/// reported and a second damaged page is not hidden behind "nothing can be checked".
#[test]
fn a_compressed_tablespace_with_a_damaged_page_zero_is_still_checked() {
    let mut bytes = fixture("compressed.ibd");
    let ps = fmt_of(&bytes).physical_size;
    assert_eq!(ps, 4096);
    let n = *written(&bytes, ps).last().unwrap();
    bytes[54..58].copy_from_slice(&0xdead_0000u32.to_be_bytes());
    bytes[n * ps + 700] ^= 1;
    let (f, _, _d) = scan_one("compressed.ibd", &bytes);
    let got: Vec<_> = f.iter().map(|f| (f.unit, f.kind)).collect();
    assert_eq!(
        got,
        [
            (Some(0), FindingKind::ChecksumMismatch),
            (Some(n as u64), FindingKind::ChecksumMismatch)
        ],
        "{f:?}"
    );
}

#[test]
fn nothing_verifiable_is_a_bad_header_not_a_panic() {
    let mut bytes = fixture("full_crc32.ibd");
    for b in bytes.iter_mut() {
        *b ^= 0x5a;
    }
    let (f, _, _d) = scan_one("full_crc32.ibd", &bytes);
    assert_eq!(one(&f).kind, FindingKind::BadHeader);
    // All zero: never written.
    let (f, _, _d) = scan_one("full_crc32.ibd", &vec![0u8; 65536]);
    assert_eq!(one(&f).kind, FindingKind::ZeroedPage);
    // Shorter than a page.
    let (f, _, _d) = scan_one("full_crc32.ibd", &fixture("full_crc32.ibd")[..1000]);
    assert_eq!(one(&f).kind, FindingKind::Truncated);
}

#[test]
fn a_partial_last_page_is_reported() {
    let mut bytes = fixture("full_crc32.ibd");
    bytes.extend_from_slice(&[7u8; 1000]);
    let (f, _, _d) = scan_one("full_crc32.ibd", &bytes);
    let f = one(&f);
    assert_eq!((f.kind, f.length), (FindingKind::PartialPage, 1000));
}

#[test]
fn restamped_pattern_pages_verify() {
    // The procedure of formats.md §2.6: the synthetic body placed in a real page and the
    // checksum recomputed with the published formula verifies (innochecksum accepted the same).
    for name in ["full_crc32.ibd", "crc32.ibd"] {
        let mut bytes = fixture(name);
        let fmt = fmt_of(&bytes);
        let ps = fmt.physical_size;
        let n = written(&bytes, ps)[1];
        let p = &mut bytes[n * ps..(n + 1) * ps];
        for (i, b) in p.iter_mut().enumerate().take(ps - 8).skip(38) {
            *b = ((7 * i + 3) & 0xff) as u8;
        }
        stamp_page(p, &fmt);
        let (f, _, _d) = scan_one(name, &bytes);
        assert!(f.is_empty(), "{name}: {f:?}");
    }
}

#[test]
fn format_is_detected_by_name_and_by_content() {
    let f = dbfsck_core::innodb::InnodbFormat::default();
    let bytes = fixture("full_crc32.ibd");
    let probe = |p: &str, head: &[u8]| {
        f.detect_file(&dbfsck_core::Probe {
            path: Path::new(p),
            len: head.len() as u64,
            head,
        })
    };
    assert!(probe("/x/t.ibd", &[]));
    assert!(probe("/x/ibdata1", &[]));
    assert!(probe("/x/undo001", &[]));
    assert!(
        probe("/x/copy.bin", &bytes),
        "a tablespace under another name"
    );
    assert!(!probe("/x/other.bin", &vec![0u8; 65536]));
    assert!(!probe("/x/other.bin", b"hello"));
}

#[test]
fn bytes_past_a_page_compressed_payload_are_not_checked_as_the_server_says() {
    let mut bytes = fixture("page_compressed.ibd");
    let ps = 16384;
    let n = written(&bytes, ps)
        .into_iter()
        .find(|&n| u16::from_be_bytes([bytes[n * ps + 24], bytes[n * ps + 25]]) & 0x8000 != 0)
        .expect("a page_compressed page");
    let t = u16::from_be_bytes([bytes[n * ps + 24], bytes[n * ps + 25]]);
    let size = usize::from(t & 0x7fff) << 8;
    bytes[n * ps + size + 10] ^= 1;
    let (f, _, _d) = scan_one("page_compressed.ibd", &bytes);
    assert!(f.is_empty(), "{f:?}");
    bytes[n * ps + size - 10] ^= 1;
    let (f, _, _d) = scan_one("page_compressed.ibd", &bytes);
    assert_eq!(one(&f).kind, FindingKind::ChecksumMismatch);
}

/// A data directory holding `shop/t.ibd` (the full_crc32 fixture with pages 0-3 zeroed), a
/// one-page system tablespace and a redo log whose checkpoint is at `checkpoint`; with `live`,
/// `ibdata1` is locked as a running server locks it. The findings for `shop/t.ibd`, and the
/// exit code.
fn scan_zero_header(checkpoint: impl Fn(u64) -> u64, live: bool) -> (Vec<Finding>, i32) {
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    fs::create_dir_all(root.join("shop")).unwrap();
    let mut table = fixture("full_crc32.ibd");
    table[..65536].fill(0);
    let fmt = fmt_of(&fixture("full_crc32.ibd"));
    let space = space_params(&fixture("full_crc32.ibd")).unwrap().space_id;
    let first_lsn = table
        .chunks_exact(16384)
        .enumerate()
        .find_map(|(n, p)| match judge_page(p, &fmt, space, n as u64) {
            PageVerdict::Ok { lsn, .. } if n > 0 => Some(lsn),
            _ => None,
        })
        .unwrap();
    fs::write(root.join("shop/t.ibd"), &table).unwrap();
    let sys_fmt = SpaceFormat::from_flags(0x15).unwrap();
    let mut sys = vec![0u8; 8 * 16384];
    let p0 = &mut sys[..16384];
    p0[24..26].copy_from_slice(&8u16.to_be_bytes());
    p0[54..58].copy_from_slice(&0x15u32.to_be_bytes());
    p0[16..24].copy_from_slice(&1000u64.to_be_bytes());
    stamp_page(p0, &sys_fmt);
    fs::write(root.join("ibdata1"), &sys).unwrap();
    fs::write(
        root.join("ib_logfile0"),
        dbfsck_testkit::mariadb::redo_log(checkpoint(first_lsn), 1 << 40),
    )
    .unwrap();
    // A lock on its own open file description is what the running server holds on ibdata1.
    let _held = live.then(|| {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(root.join("ibdata1"))
            .unwrap();
        // SAFETY: flock is plain data; all-zero is a valid value that is then filled in.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        // SAFETY: F_OFD_SETLK only reads the flock struct we pass.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        assert_eq!(r, 0);
        f
    });
    let report = Scanner::new().scan(&[&root]).unwrap();
    let code = report.exit_code();
    let f = report
        .findings
        .into_iter()
        .filter(|f| f.path.ends_with("shop/t.ibd"))
        .collect();
    (f, code)
}

/// Issue 16, live DDL on a real server: MariaDB 10.6+ writes page 0 of a new tablespace through
/// the buffer pool, so a scan can see page 0 all zero while later pages are written. A
/// checkpoint is written only after every page modified before it: so page 0 is lost when a
/// page that verifies is older than the redo log's checkpoint (stopped or running), and on a
/// running server a tablespace whose pages are all newer is `changed_during_scan`, not damage;
/// stopped, it is still reported, saying crash recovery may rebuild it.
#[test]
fn an_all_zero_header_is_judged_by_the_redo_logs_checkpoint() {
    for live in [false, true] {
        let (f, code) = scan_zero_header(|lsn| lsn, live);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].unit, f[0].kind), (Some(0), FindingKind::ZeroedPage));
        assert!(
            f[0].detail.contains("before the redo log's checkpoint"),
            "{f:?}"
        );
        assert_eq!(code & 4, 4);
    }
    let (f, code) = scan_zero_header(|lsn| lsn - 1, false);
    assert_eq!((f[0].unit, f[0].kind), (Some(0), FindingKind::ZeroedPage));
    assert!(f[0].detail.contains("unless crash recovery"), "{f:?}");
    assert_eq!(code & 4, 4);
    let (f, code) = scan_zero_header(|lsn| lsn - 1, true);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].unit, f[0].kind),
        (Some(0), FindingKind::ChangedDuringScan)
    );
    assert!(f[0].detail.contains("next checkpoint"), "{f:?}");
    assert_eq!(code, 0, "{f:?}");
}

/// Issue 16 case 5: old-format (crc32) page_compressed pages carry no checksum of their own;
/// the server judges the page they decompress to. So does dbfsck: the real zlib tablespace is
/// clean with every page verified (decompressed), 64 bytes flipped in one page's compressed
/// stream are one `checksum_mismatch` on that page, and a damaged container header is a
/// `bad_header` — innochecksum calls all of these clean.
#[test]
fn old_format_page_compressed_pages_are_judged_after_decompression() {
    let clean = fixture("old_page_compressed.ibd");
    let p = space_params(&clean).unwrap();
    assert!(p.format.page_compression && !p.format.full_crc32);
    let compressed: Vec<usize> = clean
        .chunks(16384)
        .enumerate()
        .filter(|(_, pg)| pg[24..26] == 34354u16.to_be_bytes())
        .map(|(n, _)| n)
        .collect();
    assert!(compressed.len() >= 5, "{compressed:?}");
    for (n, page) in clean.chunks(16384).enumerate() {
        if let PageVerdict::Ok { checksum, .. } = judge_page(page, &p.format, p.space_id, n as u64)
        {
            if compressed.contains(&n) {
                assert!(
                    checksum.contains("after page_compressed decompression"),
                    "{checksum}"
                );
            }
        }
    }
    let n = compressed[3];
    let mut bytes = clean.clone();
    for b in &mut bytes[n * 16384 + 200..n * 16384 + 264] {
        *b ^= 0x5a;
    }
    let m = compressed[4];
    bytes[m * 16384] ^= 1; // DEADBEEF no more
    let (f, _, _d) = scan_one("old_page_compressed.ibd", &bytes);
    let got: Vec<_> = f.iter().map(|f| (f.unit, f.kind)).collect();
    assert_eq!(
        got,
        [
            (Some(n as u64), FindingKind::ChecksumMismatch),
            (Some(m as u64), FindingKind::BadHeader)
        ],
        "{f:?}"
    );
    assert!(f[0].detail.contains("page_compressed"), "{f:?}");
}

/// Issue 16 case 5: a page compressed with an algorithm dbfsck does not decompress (LZO) is
/// neither damage nor verified: the scan warns how many pages were not checked, and the
/// summary's units leave them out.
#[test]
fn pages_that_cannot_be_decompressed_are_reported_not_verified() {
    let bytes = fixture("old_page_compressed_lzo.ibd");
    let lzo = bytes
        .chunks(16384)
        .filter(|pg| pg[24..26] == 34354u16.to_be_bytes())
        .count() as u64;
    assert!(lzo >= 5);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.ibd");
    fs::write(&path, &bytes).unwrap();
    let report = Scanner::new().scan(&[&path]).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.summary.units, (bytes.len() / 16384) as u64 - lzo);
    let w: Vec<_> = report.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        w.iter().any(
            |m| m.starts_with(&format!("{lzo} page(s) could not be checked")) && m.contains("lzo")
        ),
        "{w:?}"
    );
}

/// Issue 16 case 8: a full_crc32 page_compressed tablespace with a damaged page 0 keeps its
/// real space id — read from inside the decompressed pages, not from bytes of the compressed
/// stream — so page 0 is reported with the right owner and a second damaged page is found.
#[test]
fn a_page_compressed_tablespace_with_a_damaged_page_zero_keeps_its_space_id() {
    let clean = fixture("page_compressed.ibd");
    let real = space_params(&clean).unwrap().space_id;
    for damage in [0usize, 1] {
        let mut bytes = clean.clone();
        if damage == 0 {
            bytes[..16384].fill(0);
        } else {
            bytes[54..58].copy_from_slice(&0xdead_0000u32.to_be_bytes());
        }
        let p = space_params(&bytes).unwrap();
        assert_eq!(p.space_id, real);
        assert!(p.format.page_compression, "{:?}", p.format);
        let n = written(&bytes, 16384)[2];
        bytes[n * 16384 + 100] ^= 1;
        let (f, _, _d) = scan_one("page_compressed.ibd", &bytes);
        let got: Vec<_> = f.iter().map(|f| (f.unit, f.kind)).collect();
        let first = if damage == 0 {
            FindingKind::ZeroedPage
        } else {
            FindingKind::ChecksumMismatch
        };
        assert_eq!(
            got,
            [
                (Some(0), first),
                (Some(n as u64), FindingKind::ChecksumMismatch)
            ],
            "{f:?}"
        );
        let owner = f[0].owner.as_ref().unwrap();
        assert_eq!(owner["space_id"], real, "{f:?}");
    }
}
