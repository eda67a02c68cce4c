//! Two copies of one store scanned and repaired together — the nightly job's case: a live store
//! and a backup copied from it at some point, whose histories then diverged (the backup kept
//! being written too, with higher LSNs than the live store's). The live journal may have been
//! recycled since. Pages of the live store are then damaged at random, and `live` and `bak` are
//! repaired in one run. Whatever the history:
//! - a damaged page is restored exactly when its own store's journal holds its last committed
//!   image, and it then holds that image (never an older one, never the backup's);
//! - every other damaged page is quarantined;
//! - the exit code is 1 exactly when every damaged page was restored, else 4;
//! - the backup is not touched.

use std::collections::BTreeMap;
use std::path::Path;

use dbfsck_core::native::{
    verify_page, ChecksumAlgo, CreateOptions, FileParams, PageFile, PageType, PageVerdict,
};
use dbfsck_core::{RepairAction, RepairResult, Scanner};
use dbfsck_repair::{repair, FsStorage, JournalOptions, JournaledStore, PageWrite, RepairOptions};
use proptest::prelude::*;

const PS: usize = 4096;
const FILE_ID: u64 = 0x51;

fn params() -> FileParams {
    FileParams {
        page_size: PS,
        algo: ChecksumAlgo::Xxh3,
        file_id: FILE_ID,
    }
}

/// Commits `pages` at `lsn` through the journal of `dir` (recycling it first when `recycle`).
fn commit(dir: &Path, pages: &[u64], lsn: u64, recycle: bool) {
    let options = JournalOptions {
        capacity: Some(if recycle { 1 } else { 64 << 20 }),
        journal_id: None,
    };
    let mut s = JournaledStore::open(FsStorage, &dir.join("wal.dbfj"), options).unwrap();
    let h = s.open_file(&dir.join("t.dbfp")).unwrap();
    let body = lsn.to_le_bytes();
    let writes: Vec<PageWrite<'_>> = pages
        .iter()
        .map(|&page_no| PageWrite {
            file: h,
            page_no,
            page_type: PageType::App(0x100),
            flags: 0,
            lsn,
            body: &body,
        })
        .collect();
    s.commit(&writes).unwrap();
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// A history: batches before the copy, batches after it in the live store (one of which may
/// recycle the journal), batches in the backup after the copy, and the damaged live pages.
#[derive(Debug, Clone)]
struct History {
    pages: u64,
    before: Vec<Vec<u64>>,
    live_after: Vec<Vec<u64>>,
    recycle_at: Option<usize>,
    bak_after: Vec<Vec<u64>>,
    damage: Vec<(u64, bool)>,
}

fn history() -> impl Strategy<Value = History> {
    (8u64..20).prop_flat_map(|pages| {
        let batch = prop::collection::vec(1..pages, 1..5);
        (
            prop::collection::vec(batch.clone(), 0..4),
            prop::collection::vec(batch.clone(), 0..5),
            prop::option::of(0usize..5),
            prop::collection::vec(batch, 0..4),
            prop::collection::btree_map(1..pages, any::<bool>(), 1..6),
        )
            .prop_map(
                move |(before, live_after, recycle_at, bak_after, damage)| History {
                    pages,
                    before,
                    live_after,
                    recycle_at,
                    bak_after,
                    damage: damage.into_iter().collect(),
                },
            )
    })
}

fn run(h: &History) {
    let top = tempfile::tempdir().unwrap();
    let live = top.path().join("live");
    let bak = top.path().join("bak");
    std::fs::create_dir_all(&live).unwrap();
    let data = live.join("t.dbfp");
    let opts = CreateOptions {
        page_size: PS,
        checksum: ChecksumAlgo::Xxh3,
        file_id: Some(FILE_ID),
    };
    let mut pf = PageFile::create(&data, opts).unwrap();
    for p in 1..h.pages {
        pf.write_page(p, PageType::App(0x100), 1, b"initial")
            .unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    JournaledStore::create(FsStorage, &live.join("wal.dbfj"), JournalOptions::default()).unwrap();

    // The model: each page's last committed LSN, and what the live journal holds now.
    let mut lsn = 1u64;
    let mut committed: BTreeMap<u64, u64> = (1..h.pages).map(|p| (p, 1)).collect();
    let mut in_journal: BTreeMap<u64, u64> = BTreeMap::new();
    for b in &h.before {
        lsn += 1;
        commit(&live, b, lsn, false);
        for &p in b {
            committed.insert(p, lsn);
            in_journal.insert(p, lsn);
        }
    }
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&live)
        .arg(&bak)
        .status()
        .unwrap();
    assert!(st.success());
    let mut bak_lsn = lsn + 1_000_000;
    for (i, b) in h.live_after.iter().enumerate() {
        lsn += 1;
        let recycle = h.recycle_at == Some(i);
        commit(&live, b, lsn, recycle);
        if recycle {
            in_journal.clear();
        }
        for &p in b {
            committed.insert(p, lsn);
            in_journal.insert(p, lsn);
        }
    }
    // The backup diverges, with newer LSNs than anything live: never a source for live.
    for b in &h.bak_after {
        bak_lsn += 1;
        commit(&bak, b, bak_lsn, false);
    }
    let bak_before = tree(&bak);

    let mut bytes = std::fs::read(&data).unwrap();
    for &(p, zero) in &h.damage {
        let page = &mut bytes[p as usize * PS..(p as usize + 1) * PS];
        if zero {
            page.fill(0);
        } else {
            page[100] ^= 0x08;
        }
    }
    std::fs::write(&data, &bytes).unwrap();

    let mut report = Scanner::new().threads(1).scan(&[&live, &bak]).unwrap();
    let pages: u64 = report.findings.iter().map(|f| f.unit_count()).sum();
    assert_eq!(pages, h.damage.len() as u64, "{:?}", report.findings);
    let options = RepairOptions {
        dry_run: false,
        force: true,
        ..RepairOptions::in_dir(top.path())
    };
    repair(&mut report, &FsStorage, &options);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let after = std::fs::read(&data).unwrap();
    let mut all_restored = true;
    for &(p, _) in &h.damage {
        // The repair covering page p (a zeroed run is one action over its pages).
        let r = report
            .repairs
            .iter()
            .find(|r| {
                r.unit
                    .is_some_and(|u| u <= p && p < u + r.units.unwrap_or(1))
            })
            .unwrap_or_else(|| panic!("page {p} has no repair: {:?}", report.repairs));
        assert_eq!(r.result, RepairResult::Applied, "{r:?}");
        let page = &after[p as usize * PS..(p as usize + 1) * PS];
        match in_journal.get(&p) {
            Some(&want) => {
                assert_eq!(
                    r.action,
                    RepairAction::RestoreFromJournal,
                    "page {p}: {r:?}"
                );
                assert_eq!(want, committed[&p], "model");
                let src = r.source.as_deref().unwrap_or_default();
                assert!(
                    src.starts_with(live.to_str().unwrap()),
                    "page {p} from {src}"
                );
                match verify_page(page, &params(), p) {
                    PageVerdict::Ok { lsn, .. } => assert_eq!(lsn, want, "page {p}"),
                    v => panic!("page {p} after the restore: {v:?}"),
                }
            }
            None => {
                all_restored = false;
                assert_eq!(r.action, RepairAction::Quarantine, "page {p}: {r:?}");
                assert!(
                    matches!(
                        verify_page(page, &params(), p),
                        PageVerdict::Quarantined { .. }
                    ),
                    "page {p}"
                );
            }
        }
    }
    assert_eq!(report.exit_code(), if all_restored { 1 } else { 4 });
    assert_eq!(tree(&bak), bak_before, "the backup was written");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn with_a_diverged_backup_a_page_is_rebuilt_only_from_its_own_journal(h in history()) {
        run(&h);
    }
}
