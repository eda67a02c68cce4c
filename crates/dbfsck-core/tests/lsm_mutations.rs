//! Real RocksDB and LevelDB files (the fuzz corpus: tables with snappy and partitioned indexes,
//! a LevelDB table, WALs, a MANIFEST), mutated at random — bytes flipped, runs overwritten,
//! cut short, grown with garbage — and opened and verified through both formats, as the fuzz
//! targets do, but in every `cargo test` (debug build: overflow checks on). No panic; every
//! extent inside the file; an unmutated file is clean; a mutated table byte inside a block is
//! never reported clean when the table still opens with all its blocks.

use std::path::{Path, PathBuf};

use dbfsck_core::lsm::{LeveldbFormat, RocksdbFormat};
use dbfsck_core::{BytesSource, Chunk, Finding, Format};
use proptest::prelude::*;

fn corpus(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(dir);
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no corpus in {d:?}");
    v
}

/// Opens `data` as `name` through `format` and verifies every extent: the findings (and the
/// notes, as findings' details, after them).
fn judge(format: &dyn Format, name: &str, data: &[u8]) -> Option<Vec<Finding>> {
    let opened = format.open(Path::new(name), &BytesSource(data)).ok()?;
    let mut out = opened.findings;
    let notes = opened.notes;
    if let Some(check) = opened.check {
        let mut end = 0;
        for e in check.extents() {
            assert!(
                e.start >= end && e.start <= e.end && e.end <= data.len() as u64,
                "{e:?}"
            );
            end = e.end;
            let chunk = Chunk {
                offset: e.start,
                bytes: &data[e.start as usize..e.end as usize],
            };
            check.verify(&chunk, &mut out);
        }
    }
    out.extend(
        notes
            .into_iter()
            .map(|n| Finding::new(dbfsck_core::FindingKind::ChangedDuringScan, 0, 0, n)),
    );
    Some(out)
}

fn name_for(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("sst") => "/nonexistent/db/000007.sst",
        Some("ldb") => "/nonexistent/db/000007.ldb",
        Some("log") => "/nonexistent/db/000007.log",
        Some("blob") => "/nonexistent/db/000007.blob",
        _ => "/nonexistent/db/MANIFEST-000001",
    }
}

#[test]
fn the_corpus_files_are_clean() {
    for (p, b) in corpus("lsm_table").into_iter().chain(corpus("lsm_log")) {
        let format: Box<dyn Format> = if p.extension().is_some_and(|e| e == "ldb")
            || p.to_string_lossy().contains("leveldb")
        {
            Box::new(LeveldbFormat::default())
        } else {
            Box::new(RocksdbFormat::default())
        };
        let f = judge(format.as_ref(), name_for(&p), &b).expect("opens");
        // A WAL named alone may end torn (the writer's last record): nothing else.
        assert!(f.iter().all(|x| !x.kind.is_damage()), "{p:?}: {f:#?}");
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Overwrite(usize, Vec<u8>),
    Cut(usize),
    Grow(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(a, b)| Mutation::Overwrite(a, b)),
        any::<usize>().prop_map(Mutation::Cut),
        proptest::collection::vec(any::<u8>(), 1..200).prop_map(Mutation::Grow),
    ]
}

fn apply(data: &mut Vec<u8>, m: &Mutation) {
    let n = data.len().max(1);
    match m {
        Mutation::Flip(at, x) => {
            if let Some(b) = data.get_mut(at % n) {
                *b ^= x;
            }
        }
        Mutation::Overwrite(at, bytes) => {
            for (i, b) in bytes.iter().enumerate() {
                if let Some(d) = data.get_mut((at % n) + i) {
                    *d = *b;
                }
            }
        }
        Mutation::Cut(at) => data.truncate(at % n),
        Mutation::Grow(bytes) => data.extend_from_slice(bytes),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(which in any::<usize>(), ms in proptest::collection::vec(mutation(), 1..4)) {
        let all: Vec<(PathBuf, Vec<u8>)> = corpus("lsm_table").into_iter().chain(corpus("lsm_log")).collect();
        let (p, mut data) = all[which % all.len()].clone();
        for m in &ms {
            apply(&mut data, m);
        }
        let formats: [&dyn Format; 2] = [&RocksdbFormat::default(), &LeveldbFormat::default()];
        for format in formats {
            for name in [name_for(&p), "/nonexistent/db/000009.sst", "/nonexistent/db/000009.log", "/nonexistent/db/MANIFEST-000002", "/nonexistent/db/000009.blob"] {
                let _ = judge(format, name, &data);
            }
        }
    }

    #[test]
    fn a_flipped_byte_in_a_table_is_never_clean(which in any::<usize>(), at in any::<usize>(), x in 1u8..=255) {
        let tables = corpus("lsm_table");
        let (p, orig) = tables[which % tables.len()].clone();
        let mut data = orig.clone();
        let i = at % data.len();
        data[i] ^= x;
        let format: &dyn Format = if p.extension().is_some_and(|e| e == "ldb") { &LeveldbFormat::default() } else { &RocksdbFormat::default() };
        let f = judge(format, name_for(&p), &data).expect("opens");
        // Every byte of a table is in a block, its trailer or the footer: a change anywhere is
        // found (a flip in a trailer's compression byte changes the checksummed bytes too).
        // The exceptions: the footer's zero padding, which the engines never read (a note), and
        // its format_version turned into another valid one (1–5), which nothing in the table
        // contradicts (RocksDB 7.8.3 writes `rocksdb.format.version` as 0) — RocksDB would read it
        // as well — or into 6–999, a version newer than dbfsck reads (a note, never damage).
        let noted = f.iter().any(|x| x.detail.contains("padding") || x.detail.contains("not supported"));
        let footer_version = orig.len() >= 53
            && (orig.len() - 12..orig.len() - 8).contains(&i)
            && (1..=5).contains(&u32::from_le_bytes(data[orig.len() - 12..orig.len() - 8].try_into().unwrap()));
        prop_assert!(f.iter().any(|x| x.kind.is_damage()) || noted || footer_version, "flip at {i} of {p:?} not found");
    }
}

/// Regression (found by the flipped-byte property): a footer whose checksum-type byte turned
/// into 0 ("no checksum") made every block pass unverified. The blocks' own trailers say which
/// type they carry; the footer is reported and the blocks verified with it.
#[test]
fn a_footer_claiming_no_checksum_over_checksummed_blocks_is_damage() {
    let tables = corpus("lsm_table");
    let (p, mut data) = tables
        .into_iter()
        .find(|(p, _)| p.extension().is_some_and(|e| e == "sst"))
        .unwrap();
    let at = data.len() - 53;
    assert_ne!(data[at], 0);
    data[at] = 0;
    let f = judge(&RocksdbFormat::default(), name_for(&p), &data).unwrap();
    assert!(
        f.iter()
            .any(|x| x.kind == dbfsck_core::FindingKind::BadHeader
                && x.detail.contains("checksum-type byte")),
        "{f:#?}"
    );
}
