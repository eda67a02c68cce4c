//! Test support for dbfsck: a reproducible native dataset generator and a fault kit that injects
//! the damage real storage suffers, each fault returning the finding it must produce.
//!
//! Faults are applied to file images in memory, taking any page they copy from a pristine
//! snapshot, so that two faults never interfere; [`Dataset::write_back`] puts the images on disk.
//!
//! ```
//! use dbfsck_core::native::ChecksumAlgo;
//! use dbfsck_core::Scanner;
//! use dbfsck_testkit::{rng, Dataset, Fault, Spec};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let spec = Spec { files: 2, pages: 16, page_size: 4096, checksum: ChecksumAlgo::Xxh3, seed: 1 };
//! let mut ds = Dataset::generate(dir.path(), spec).unwrap();
//! let injected = ds.inject(1, 9, &Fault::Zeroed, &mut rng(2));
//! ds.write_back().unwrap();
//!
//! let report = Scanner::new().scan(&[dir.path()]).unwrap();
//! assert_eq!(report.findings.len(), 1);
//! assert_eq!(Some(report.findings[0].kind), injected.expect);
//! assert_eq!(report.findings[0].unit, Some(9));
//! ```

pub mod mariadb;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dbfsck_core::native::{encode_page, ChecksumAlgo, CreateOptions, PageFile, PageMeta, PageType};
use dbfsck_core::FindingKind;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The variable `scripts/test` sets once it has installed what the tests need: with it (or
/// `CI`) set, a test that cannot run fails instead of skipping.
pub const REQUIRE_ALL: &str = "DBFSCK_TEST_REQUIRE_ALL";

/// Whether a test that needs something outside Rust (a real engine, root, tmux) can run:
/// `Ok(())` from `prerequisites` runs it. Otherwise the test fails when the run must be
/// complete (`CI` or [`REQUIRE_ALL`] set), and else prints one line saying why it is skipped
/// and returns false.
pub fn can_run(test: &str, prerequisites: Result<(), String>) -> bool {
    let why = match prerequisites {
        Ok(()) => return true,
        Err(why) => why,
    };
    if std::env::var_os("CI").is_some() || std::env::var_os(REQUIRE_ALL).is_some() {
        panic!("{test} cannot run ({why}), and this run must be complete (CI or {REQUIRE_ALL} is set): scripts/test installs what it needs");
    }
    // Straight to the process's stderr, past the test harness's capture: the line shows in a
    // plain `cargo test` run.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipping {test}: {why} (scripts/test, as root, installs it and runs every test)"
    );
    false
}

/// Whether the tests run as root (the real-engine tests run servers as their own users).
pub fn is_root() -> bool {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

/// A seeded, reproducible random number generator.
pub type TestRng = Xoshiro256PlusPlus;

/// A generator seeded with `seed`.
pub fn rng(seed: u64) -> TestRng {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// The application page type the generator writes.
pub const DATA_PAGE: PageType = PageType::App(0x0100);

/// The sector size torn writes are cut at.
pub const SECTOR: usize = 512;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Number of files.
    pub files: usize,
    /// Pages per file, the header page included (at least 2).
    pub pages: u64,
    /// Page size.
    pub page_size: usize,
    /// Checksum algorithm.
    pub checksum: ChecksumAlgo,
    /// Seed: same seed, same bytes.
    pub seed: u64,
}

/// One generated file.
#[derive(Debug, Clone)]
pub struct GenFile {
    /// Where it is.
    pub path: PathBuf,
    /// Pages in it, the header page included.
    pub pages: u64,
    /// Its file id.
    pub file_id: u64,
}

/// A generated dataset with pristine copies of its files, for injecting faults.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The spec it was made from.
    pub spec: Spec,
    /// The files, in name order.
    pub files: Vec<GenFile>,
    /// Pristine images of the files, as written.
    pub pristine: Vec<Vec<u8>>,
    /// Current (possibly damaged) images of the files.
    pub images: Vec<Vec<u8>>,
    /// The LSN the next write will use.
    pub next_lsn: u64,
}

/// Fills `buf` with a page body: a random-length run of random bytes, zeros after it (pages of a
/// real store are rarely full).
pub fn fill_body(rng: &mut TestRng, buf: &mut [u8]) {
    let used = if buf.is_empty() {
        0
    } else {
        (rng.next_u64() as usize % buf.len()).max(buf.len() / 4)
    };
    let (data, rest) = buf.split_at_mut(used);
    rng.fill_bytes(data);
    rest.fill(0);
}

/// Fills `buf` with random bytes.
pub fn fill_random(rng: &mut TestRng, buf: &mut [u8]) {
    rng.fill_bytes(buf);
}

/// The file name of file `i` of a dataset.
pub fn file_name(i: usize) -> String {
    format!("data-{i:04}.dbfp")
}

/// Writes a dataset into `dir` through the library's writer ([`PageFile`]), without reading it
/// back: for the large datasets of benchmarks. Returns the files and the next free LSN.
pub fn write_dataset(dir: &Path, spec: &Spec) -> io::Result<(Vec<GenFile>, u64)> {
    let mut rng = rng(spec.seed);
    let mut lsn = 1u64;
    let mut files = Vec::with_capacity(spec.files);
    let mut body = Vec::new();
    for i in 0..spec.files {
        let path = dir.join(file_name(i));
        let file_id = rng.next_u64();
        let options = CreateOptions {
            page_size: spec.page_size,
            checksum: spec.checksum,
            file_id: Some(file_id),
        };
        let mut pf = PageFile::create(&path, options).map_err(io::Error::other)?;
        body.resize(pf.body_len(), 0);
        for page in 1..spec.pages.max(2) {
            fill_body(&mut rng, &mut body);
            pf.write_page(page, DATA_PAGE, lsn, &body)
                .map_err(io::Error::other)?;
            lsn += 1 + rng.next_u64() % 7;
        }
        pf.sync().map_err(io::Error::other)?;
        files.push(GenFile {
            path,
            pages: pf.page_count(),
            file_id,
        });
    }
    Ok((files, lsn))
}

impl Dataset {
    /// Generates a dataset in `dir` and keeps pristine images of its files.
    pub fn generate(dir: &Path, spec: Spec) -> io::Result<Dataset> {
        let (files, next_lsn) = write_dataset(dir, &spec)?;
        let pristine = files
            .iter()
            .map(|f| fs::read(&f.path))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Dataset {
            images: pristine.clone(),
            pristine,
            files,
            spec,
            next_lsn,
        })
    }

    /// Writes the current images over the files (shortening them where a fault truncated).
    pub fn write_back(&self) -> io::Result<()> {
        for (f, img) in self.files.iter().zip(&self.images) {
            fs::write(&f.path, img)?;
        }
        Ok(())
    }

    fn page_range(&self, page: u64) -> std::ops::Range<usize> {
        let ps = self.spec.page_size;
        page as usize * ps..(page as usize + 1) * ps
    }

    /// A new valid version of page `page` of file `file`: same identity, a newer LSN, a new body.
    pub fn new_version(&mut self, file: usize, page: u64, rng: &mut TestRng) -> Vec<u8> {
        let ps = self.spec.page_size;
        let mut body = vec![0u8; ps - 48];
        // A full random body, so every sector differs from the old version.
        rng.fill_bytes(&mut body);
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        let meta = PageMeta {
            page_type: DATA_PAGE.code(),
            flags: 0,
            file_id: self.files[file].file_id,
            page_no: page,
            lsn,
        };
        let mut img = vec![0u8; ps];
        encode_page(&mut img, &meta, &body, self.spec.checksum).expect("valid page size");
        img
    }
}

/// One injected fault and the finding it must produce (`None`: the bytes are a valid page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// File index in the dataset.
    pub file: usize,
    /// Page number.
    pub page: u64,
    /// The finding kind dbfsck must report for it, if any.
    pub expect: Option<FindingKind>,
}

/// The faults the kit injects.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Flip one bit at `byte` (anywhere in the page, the checksum field included).
    BitFlip {
        /// Byte offset in the page.
        byte: usize,
        /// Bit index 0–7.
        bit: u8,
    },
    /// A torn write: sector `i` of the page comes from a new version where `from_new[i]`.
    Torn {
        /// One flag per 512-byte sector.
        from_new: Vec<bool>,
    },
    /// A valid page copied over this one: page `page` of file `file` (pristine).
    Misdirected {
        /// Source file index.
        file: usize,
        /// Source page (1 or above, different from the target when the file is the same).
        page: u64,
    },
    /// Every byte of the page set to zero.
    Zeroed,
}

impl Dataset {
    /// Applies `fault` to page `page` (1 or above) of file `file`; returns what must be found.
    pub fn inject(&mut self, file: usize, page: u64, fault: &Fault, rng: &mut TestRng) -> Injected {
        let range = self.page_range(page);
        let expect = match fault {
            Fault::BitFlip { byte, bit } => {
                self.images[file][range.start + byte] ^= 1 << bit;
                Some(FindingKind::ChecksumMismatch)
            }
            Fault::Torn { from_new } => {
                let new = self.new_version(file, page, rng);
                let img = &mut self.images[file][range];
                for (i, &take) in from_new.iter().enumerate() {
                    if take {
                        img[i * SECTOR..(i + 1) * SECTOR]
                            .copy_from_slice(&new[i * SECTOR..(i + 1) * SECTOR]);
                    }
                }
                torn_expectation(from_new)
            }
            Fault::Misdirected {
                file: src,
                page: src_page,
            } => {
                let src_range = self.page_range(*src_page);
                let bytes = self.pristine[*src][src_range].to_vec();
                self.images[file][range].copy_from_slice(&bytes);
                Some(FindingKind::MisdirectedWrite)
            }
            Fault::Zeroed => {
                self.images[file][range].fill(0);
                Some(FindingKind::ZeroedPage)
            }
        };
        Injected { file, page, expect }
    }

    /// Cuts file `file` to end `rest` bytes (1 ≤ rest < page size) into page `page`; pages after
    /// it vanish. The finding is a `partial_page` at `page`.
    pub fn truncate_mid_page(&mut self, file: usize, page: u64, rest: usize) -> Injected {
        let len = page as usize * self.spec.page_size + rest;
        self.images[file].truncate(len);
        Injected {
            file,
            page,
            expect: Some(FindingKind::PartialPage),
        }
    }

    /// Damages the header page of file `file` by flipping one bit at `byte` of page 0.
    pub fn damage_header(&mut self, file: usize, byte: usize) -> Injected {
        self.images[file][byte] ^= 0x40;
        Injected {
            file,
            page: 0,
            expect: Some(FindingKind::BadHeader),
        }
    }
}

/// What a torn write of sectors `from_new` must be reported as. The evidence of a tear is header
/// and trailer disagreeing, so a mix whose first and last sectors come from the same version is
/// only a checksum mismatch; a mix of one version alone is a valid page.
pub fn torn_expectation(from_new: &[bool]) -> Option<FindingKind> {
    let (first, last) = (from_new.first().copied(), from_new.last().copied());
    if from_new.iter().all(|&b| b) || from_new.iter().all(|&b| !b) {
        None
    } else if first != last {
        Some(FindingKind::TornWrite)
    } else {
        Some(FindingKind::ChecksumMismatch)
    }
}

/// A torn write as a crash makes it: the first `n` sectors are new, the rest old.
pub fn prefix_tear(sectors: usize, n: usize) -> Vec<bool> {
    (0..sectors).map(|i| i < n).collect()
}

/// Builds the bundled demo dataset (`testdata/demo`) in `dir`: small native files holding a few
/// kinds of damage. Same bytes every time.
pub fn build_demo(dir: &Path) -> io::Result<()> {
    let specs = [
        ("orders.dbfp", 8192, ChecksumAlgo::Crc32, 40u64),
        ("customers.dbfp", 4096, ChecksumAlgo::Xxh3, 64),
        ("inventory.dbfp", 16384, ChecksumAlgo::Xxh3, 24),
        ("ledger.dbfp", 8192, ChecksumAlgo::Xxh3, 32),
    ];
    let mut images = Vec::new();
    let mut rng = rng(20261122);
    for (i, (name, ps, algo, pages)) in specs.iter().enumerate() {
        let sub = Spec {
            files: 1,
            pages: *pages,
            page_size: *ps,
            checksum: *algo,
            seed: 1000 + i as u64,
        };
        let tmp = tempdir_in(dir)?;
        let ds = Dataset::generate(&tmp, sub)?;
        images.push((name, ds));
        fs::remove_dir_all(&tmp)?;
    }
    // orders: one rotten bit in page 5, a torn write of page 17 (first 6 of 16 sectors new).
    {
        let ds = &mut images[0].1;
        ds.inject(0, 5, &Fault::BitFlip { byte: 3000, bit: 2 }, &mut rng);
        ds.inject(
            0,
            17,
            &Fault::Torn {
                from_new: prefix_tear(16, 6),
            },
            &mut rng,
        );
    }
    // customers: page 12 overwritten by a copy of page 30, page 40 zeroed.
    {
        let ds = &mut images[1].1;
        ds.inject(0, 12, &Fault::Misdirected { file: 0, page: 30 }, &mut rng);
        ds.inject(0, 40, &Fault::Zeroed, &mut rng);
    }
    // inventory: clean.
    // ledger: cut short 1000 bytes into page 31.
    {
        let ds = &mut images[3].1;
        ds.truncate_mid_page(0, 31, 1000);
    }
    for (name, ds) in &images {
        fs::write(dir.join(name), &ds.images[0])?;
    }
    Ok(())
}

fn tempdir_in(dir: &Path) -> io::Result<PathBuf> {
    for n in 0..1000u32 {
        let p = dir.join(format!(".dbfsck-demo-{}-{n}", std::process::id()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("could not create a temporary directory"))
}
