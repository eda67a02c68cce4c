//! Property tests: over random datasets (file count, page count, page size, checksum) and random
//! faults (one per page, of every class), the scan reports exactly the damaged pages, each with
//! the kind the fault kit says it must have; clean data yields nothing and exit 0.

use std::collections::BTreeSet;

use dbfsck_core::native::ChecksumAlgo;
use dbfsck_core::{FindingKind, Scanner};
use dbfsck_testkit::{Dataset, Fault, Spec, SECTOR};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum FaultChoice {
    BitFlip(usize, u8),
    Torn(Vec<bool>),
    Misdirected(usize, u64),
    Zeroed,
}

fn fault_choice() -> impl Strategy<Value = FaultChoice> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(b, bit)| FaultChoice::BitFlip(b, bit)),
        proptest::collection::vec(any::<bool>(), 128).prop_map(FaultChoice::Torn),
        (any::<usize>(), any::<u64>()).prop_map(|(f, p)| FaultChoice::Misdirected(f, p)),
        Just(FaultChoice::Zeroed),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        1usize..4,
        2u64..40,
        prop_oneof![Just(4096usize), Just(8192), Just(16384)],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(files, pages, page_size, xxh, seed)| Spec {
            files,
            pages,
            page_size,
            checksum: if xxh {
                ChecksumAlgo::Xxh3
            } else {
                ChecksumAlgo::Crc32
            },
            seed,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn exactly_the_damaged_pages_are_reported_with_their_kind(
        spec in spec(),
        faults in proptest::collection::vec((any::<usize>(), any::<u64>(), fault_choice()), 0..12),
        threads in 1usize..4,
        pread in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut ds = Dataset::generate(dir.path(), spec.clone()).unwrap();
        let mut rng = dbfsck_testkit::rng(spec.seed ^ 0x5eed);
        let sectors = spec.page_size / SECTOR;
        let mut used = BTreeSet::new();
        let mut expected = BTreeSet::new();
        for (f, p, choice) in faults {
            let file = f % spec.files;
            let page = 1 + p % (spec.pages - 1);
            if !used.insert((file, page)) {
                continue; // one fault per page: two faults on one page have no single truth
            }
            let fault = match choice {
                FaultChoice::BitFlip(b, bit) => Fault::BitFlip { byte: b % spec.page_size, bit },
                FaultChoice::Torn(mask) => Fault::Torn { from_new: mask[..sectors].to_vec() },
                FaultChoice::Misdirected(sf, sp) => {
                    let src_file = sf % spec.files;
                    let mut src_page = 1 + sp % (spec.pages - 1);
                    if src_file == file && src_page == page {
                        if spec.pages < 3 { continue; }
                        src_page = 1 + (src_page % (spec.pages - 1));
                    }
                    Fault::Misdirected { file: src_file, page: src_page }
                }
                FaultChoice::Zeroed => Fault::Zeroed,
            };
            let injected = ds.inject(file, page, &fault, &mut rng);
            if let Some(kind) = injected.expect {
                expected.insert((ds.files[file].path.to_string_lossy().into_owned(), page, kind));
            }
        }
        ds.write_back().unwrap();
        let strategy = if pread { dbfsck_core::ReadStrategy::Pread } else { dbfsck_core::ReadStrategy::Mmap };
        let report = Scanner::new()
            .threads(threads)
            .read_strategy(strategy)
            .chunk_size(3 * spec.page_size as u64)
            .scan(&[dir.path()])
            .unwrap();
        // A run of like findings on consecutive pages is one finding: count its pages.
        let found: BTreeSet<(String, u64, FindingKind)> = report
            .findings
            .iter()
            .flat_map(|f| {
                let u = f.unit.unwrap();
                (u..u + f.unit_count()).map(move |p| (f.path.clone(), p, f.kind))
            })
            .collect();
        prop_assert_eq!(&found, &expected);
        let pages: u64 = report.findings.iter().map(|f| f.unit_count()).sum();
        prop_assert_eq!(pages, expected.len() as u64, "each damaged page once");
        // And runs are whole: no two neighbours that one finding could say.
        for w in report.findings.windows(2) {
            prop_assert!(!w[0].clone().try_extend(&w[1]), "{:?} / {:?}", w[0], w[1]);
        }
        prop_assert!(report.errors.is_empty());
        prop_assert_eq!(report.summary.units, spec.files as u64 * spec.pages);
        prop_assert_eq!(report.exit_code(), if expected.is_empty() { 0 } else { 4 });
    }

    #[test]
    fn clean_data_yields_nothing(spec in spec(), threads in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        Dataset::generate(dir.path(), spec.clone()).unwrap();
        let report = Scanner::new().threads(threads).scan(&[dir.path()]).unwrap();
        prop_assert!(report.findings.is_empty(), "{:#?}", report.findings);
        prop_assert_eq!(report.exit_code(), 0);
        prop_assert_eq!(report.summary.bytes, spec.files as u64 * spec.pages * spec.page_size as u64);
    }
}
