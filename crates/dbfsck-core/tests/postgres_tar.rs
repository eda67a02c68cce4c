//! Base backups in tar format (`pg_basebackup -Ft`): the relation members of `base.tar` are
//! verified in place, block for block as the same files are in a data directory, and a damaged
//! archive is an error naming what is wrong, never a panic. The archives are built from the
//! real initdb cluster in testdata/postgres; the oracle test with a real pg_basebackup and GNU
//! tar is in crates/dbfsck/tests/postgres_oracle.rs.

use std::fs;
use std::path::{Path, PathBuf};

use dbfsck_core::{Report, Scanner};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/postgres/cluster")
}

/// Every regular file under `dir`, relative, sorted.
fn files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir.join(rel))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            files(dir, &r, out);
        } else {
            out.push(r);
        }
    }
}

/// `base.tar` of the fixture cluster, in `<tmp>/backup/`, with `edit` applied to each file's
/// bytes first (by relative path).
fn backup(edit: impl Fn(&Path, &mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    backup_named(edit, Path::new(""))
}

/// The same, each member named `prefix` + its relative path.
fn backup_named(edit: impl Fn(&Path, &mut Vec<u8>), prefix: &Path) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("backup");
    fs::create_dir_all(&dir).unwrap();
    let mut b = tar::Builder::new(fs::File::create(dir.join("base.tar")).unwrap());
    let mut all = Vec::new();
    files(&fixture(), Path::new(""), &mut all);
    for rel in all {
        let mut bytes = fs::read(fixture().join(&rel)).unwrap();
        edit(&rel, &mut bytes);
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        // The name as raw bytes: the builder's own path setter would drop a leading "./".
        let name = prefix.join(&rel);
        let name = name.to_str().unwrap().as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &bytes[..]).unwrap();
    }
    b.into_inner().unwrap();
    (t, dir)
}

fn scan(p: &Path) -> Report {
    Scanner::new().scan(&[p]).unwrap()
}

/// The first relation file of the fixture with at least two blocks.
fn a_relation() -> PathBuf {
    let mut all = Vec::new();
    files(&fixture(), Path::new(""), &mut all);
    all.into_iter()
        .find(|r| {
            r.starts_with("base")
                && r.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                && fs::metadata(fixture().join(r)).unwrap().len() >= 16384
        })
        .unwrap()
}

#[test]
fn a_tar_base_backup_is_verified_block_for_block_as_its_data_directory() {
    let plain = scan(&fixture());
    assert!(plain.findings.is_empty(), "{:?}", plain.findings);
    let (_t, dir) = backup(|_, _| {});
    let report = scan(&dir);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.exit_code(), 0);
    // Every relation block the data directory has, less pg_control (a unit of its own there).
    assert_eq!(report.summary.units, plain.summary.units - 1);
}

#[test]
fn a_damaged_block_in_base_tar_is_reported_at_its_offset_in_the_archive() {
    let rel = a_relation();
    let (_t, dir) = backup(|r, b| {
        if r == rel {
            b[8192 + 4000] ^= 1;
        }
    });
    let report = scan(&dir);
    assert_eq!(report.exit_code(), 4);
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(f.unit, Some(1));
    let owner = f.owner.as_ref().unwrap();
    assert_eq!(owner["member"], rel.to_str().unwrap());
    // The finding's bytes are the damaged block: the member's data, read from the archive.
    let archive = fs::read(dir.join("base.tar")).unwrap();
    let mut block = fs::read(fixture().join(&rel)).unwrap()[8192..16384].to_vec();
    block[4000] ^= 1;
    assert_eq!(
        &archive[f.offset as usize..(f.offset + f.length) as usize],
        &block[..]
    );
}

#[test]
fn a_cut_or_garbage_archive_is_an_error_not_a_panic() {
    let (_t, dir) = backup(|_, _| {});
    let path = dir.join("base.tar");
    let full = fs::read(&path).unwrap();
    for cut in [100usize, 512 + 300, full.len() / 2] {
        fs::write(&path, &full[..cut]).unwrap();
        let report = scan(&dir);
        assert_eq!(report.exit_code() & 8, 8, "cut at {cut}: {report:?}");
        assert!(report
            .findings
            .iter()
            .all(|f| !f.kind.is_damage() || f.offset < cut as u64));
    }
    fs::write(&path, vec![0xA5u8; 64 * 1024]).unwrap();
    let report = scan(&dir);
    assert_eq!(report.exit_code() & 8, 8);
    assert!(
        report.errors.iter().any(|e| e.message.contains("tar")),
        "{:?}",
        report.errors
    );
}

/// `tar -cf base.tar .` names the members `./base/…`: they are the same files, and the
/// backup's `./global/pg_control` is its control file (no warning that it is missing).
#[test]
fn members_named_from_dot_are_the_same_files() {
    let (_t, dir) = backup_named(|_, _| {}, Path::new("./"));
    let report = scan(&dir);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.summary.units, scan(&fixture()).summary.units - 1);
}
