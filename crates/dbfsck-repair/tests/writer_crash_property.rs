//! The journaled writer's promise, checked against a crashing disk. Random workloads of batches
//! go through `JournaledStore` on a `CrashStorage`; the power goes at a random write, truncate or
//! fsync; what survives (under both crash policies: only the in-flight write torn, or every
//! unsynced write dropped, kept or torn at sectors) goes to a real directory, and
//! `repair` runs on it. Then:
//! - every page equals its last committed version, or the version of the batch that was in
//!   flight — never a mix, never garbage;
//! - the re-scan is clean (nothing had to be quarantined);
//! - nothing whose `commit` returned is lost.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use dbfsck_core::native::{encode_page, ChecksumAlgo, CreateOptions, PageMeta, PageType};
use dbfsck_repair::storage::crash::{CrashPolicy, CrashStorage};
use dbfsck_repair::{repair, FileHandle, FsStorage, JournalOptions, JournaledStore, PageWrite};
use proptest::prelude::*;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

const PS: usize = 4096;
const FILES: usize = 2;

/// One page version: (type code, lsn, body).
type Version = (u16, u64, Vec<u8>);

/// A batch: (file index, page, body).
type Batch = Vec<(usize, u64, Vec<u8>)>;

fn workload(seed: u64, batches: usize) -> Vec<Batch> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..batches)
        .map(|_| {
            let n = 1 + rng.next_u64() % 6;
            (0..n)
                .map(|_| {
                    let file = (rng.next_u64() % FILES as u64) as usize;
                    let page = 1 + rng.next_u64() % 24;
                    let len = (rng.next_u64() % 4000) as usize;
                    let fill = rng.next_u64() as u8;
                    (file, page, vec![fill; len])
                })
                .collect()
        })
        .collect()
}

struct Setup {
    store: JournaledStore<CrashStorage>,
    handles: Vec<FileHandle>,
}

fn setup(storage: &CrashStorage, root: &Path) -> Setup {
    let options = JournalOptions {
        // Small, so the workloads recycle the journal and crash while doing so.
        capacity: Some(48 * 1024),
        journal_id: Some(7),
    };
    let mut store =
        JournaledStore::create(storage.clone(), &root.join("wal.dbfj"), options).unwrap();
    let mut handles = Vec::new();
    for i in 0..FILES {
        let h = store
            .create_file(
                &root.join(format!("f{i}.dbfp")),
                CreateOptions {
                    page_size: PS,
                    checksum: if i == 0 {
                        ChecksumAlgo::Xxh3
                    } else {
                        ChecksumAlgo::Crc32
                    },
                    file_id: Some(100 + i as u64),
                },
            )
            .unwrap();
        handles.push(h);
    }
    Setup { store, handles }
}

/// Runs batches until one fails; returns the index of the failed (in-flight) batch, if any.
fn run(s: &mut Setup, work: &[Batch]) -> Option<usize> {
    for (i, batch) in work.iter().enumerate() {
        let lsn = i as u64 + 1;
        let writes: Vec<PageWrite<'_>> = batch
            .iter()
            .map(|(f, page, body)| PageWrite {
                file: s.handles[*f],
                page_no: *page,
                page_type: PageType::App(0x100),
                flags: 0,
                lsn,
                body,
            })
            .collect();
        if s.store.commit(&writes).is_err() {
            return Some(i);
        }
    }
    None
}

/// The versions each batch leaves, gap pages included: per (file, page), per batch.
fn apply_model(
    model: &mut BTreeMap<(usize, u64), Version>,
    counts: &mut [u64],
    batch: &Batch,
    lsn: u64,
) {
    for (f, page, body) in batch {
        while counts[*f] < *page {
            model.insert((*f, counts[*f]), (PageType::FREE, lsn, Vec::new()));
            counts[*f] += 1;
        }
        model.insert((*f, *page), (0x100, lsn, body.clone()));
        counts[*f] = counts[*f].max(page + 1);
    }
}

fn image(file_id: u64, algo: ChecksumAlgo, page: u64, v: &Version) -> Vec<u8> {
    let mut out = vec![0u8; PS];
    let meta = PageMeta {
        page_type: v.0,
        flags: 0,
        file_id,
        page_no: page,
        lsn: v.1,
    };
    encode_page(&mut out, &meta, &v.2, algo).unwrap();
    out
}

fn check(seed: u64, batches: usize, crash_pick: u64, policy: CrashPolicy) {
    let work = workload(seed, batches);
    // Count the operations of the workload on a disk that does not crash.
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let storage = CrashStorage::new();
        let mut s = setup(&storage, dir.path());
        let before = storage.ops();
        assert_eq!(run(&mut s, &work), None);
        storage.ops() - before
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let storage = CrashStorage::new();
    let mut s = setup(&storage, &root);
    storage.crash_at(1 + crash_pick % total);
    let failed = run(&mut s, &work);
    let Some(in_flight) = failed else {
        panic!("the crash point was inside the workload")
    };
    drop(s);
    storage.write_after_crash(policy, seed).unwrap();

    // Before: the last committed state; after: with the in-flight batch.
    let mut committed = BTreeMap::new();
    let mut counts = vec![1u64; FILES];
    for (i, b) in work[..in_flight].iter().enumerate() {
        apply_model(&mut committed, &mut counts, b, i as u64 + 1);
    }
    let mut next = committed.clone();
    let mut next_counts = counts.clone();
    apply_model(
        &mut next,
        &mut next_counts,
        &work[in_flight],
        in_flight as u64 + 1,
    );

    let mut report = common::scan(&root);
    let plan = repair(&mut report, &FsStorage, &common::options(&root, "undo.log"));
    assert!(
        plan.left.is_empty()
            && report.repairs.iter().all(|r| r.action
                == dbfsck_core::RepairAction::RestoreFromJournal
                && r.result == dbfsck_core::RepairResult::Applied),
        "every damaged page is rebuilt from the journal: {:#?} {:#?} {:#?}",
        report.findings,
        report.repairs,
        plan.left
    );
    let rescan = common::scan(&root);
    assert!(
        rescan.findings.is_empty(),
        "re-scan is clean: {:#?}",
        rescan.findings
    );
    assert!(rescan.errors.is_empty(), "{:#?}", rescan.errors);

    for f in 0..FILES {
        let algo = if f == 0 {
            ChecksumAlgo::Xxh3
        } else {
            ChecksumAlgo::Crc32
        };
        let bytes = std::fs::read(root.join(format!("f{f}.dbfp"))).unwrap();
        let pages = (bytes.len() / PS) as u64;
        assert!(
            pages >= counts[f],
            "committed pages lost: file {f} has {pages} < {}",
            counts[f]
        );
        assert!(
            pages <= next_counts[f],
            "file {f} grew past the in-flight batch"
        );
        for p in 1..pages {
            let got = &bytes[p as usize * PS..(p as usize + 1) * PS];
            let old = committed
                .get(&(f, p))
                .map(|v| image(100 + f as u64, algo, p, v));
            let new = next.get(&(f, p)).map(|v| image(100 + f as u64, algo, p, v));
            assert!(
                old.as_deref() == Some(got) || new.as_deref() == Some(got),
                "file {f} page {p}: neither the last committed version nor the in-flight one \
                 (in-flight batch {in_flight}, policy {policy:?})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_anywhere_in_the_writer_is_repaired_to_committed_or_in_flight_pages(
        seed in any::<u64>(),
        batches in 1usize..14,
        crash_pick in any::<u64>(),
        chaos in any::<bool>(),
    ) {
        let policy = if chaos { CrashPolicy::Chaos } else { CrashPolicy::TearInFlight };
        check(seed, batches, crash_pick, policy);
    }
}

/// Every crash point of one fixed workload, under both policies (the exhaustive companion of
/// the property test).
#[test]
fn every_crash_point_of_a_fixed_workload() {
    let work_seed = 11;
    let batches = 6;
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let storage = CrashStorage::new();
        let mut s = setup(&storage, dir.path());
        let before = storage.ops();
        run(&mut s, &workload(work_seed, batches));
        storage.ops() - before
    };
    for k in 0..total {
        for policy in [CrashPolicy::TearInFlight, CrashPolicy::Chaos] {
            check(work_seed, batches, k, policy);
        }
    }
}
