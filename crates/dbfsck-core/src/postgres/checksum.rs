//! PostgreSQL's data page checksum (`src/include/storage/checksum_impl.h`; `docs/formats` §1.3):
//! 32 FNV-1a-like lanes over the page as native-endian u32 words, with `pd_checksum` taken as 0,
//! two extra rounds of zeros, the lanes xor-ed together, xor-ed with the absolute block number,
//! reduced `% 65535 + 1`.
//!
//! The 32 lanes are independent, so the loop vectorises; the generic x86-64 build only has SSE2,
//! so AVX-512 and AVX2 copies of the same code are picked at run time where the CPU has them.

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;

const BASE: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

/// Offset of `pd_checksum` in the page header.
pub const CHECKSUM_OFF: usize = 8;

#[inline(always)]
fn round(sums: &mut [u32; N_SUMS], words: &[u32; N_SUMS]) {
    for (s, &w) in sums.iter_mut().zip(words) {
        let t = *s ^ w;
        *s = t.wrapping_mul(FNV_PRIME) ^ (t >> 17);
    }
}

#[inline(always)]
#[expect(
    clippy::indexing_slicing,
    reason = "constant indices into fixed-size arrays: checked at compile time, and free of the bounds checks that stop vectorisation"
)]
fn lanes(page: &[u8]) -> u32 {
    let mut sums = BASE;
    let mut words = [0u32; N_SUMS];
    for (row, block) in page.chunks_exact(N_SUMS * 4).enumerate() {
        let Ok(block) = <&[u8; N_SUMS * 4]>::try_from(block) else {
            break;
        };
        for j in 0..N_SUMS {
            words[j] = u32::from_ne_bytes([
                block[4 * j],
                block[4 * j + 1],
                block[4 * j + 2],
                block[4 * j + 3],
            ]);
        }
        if row == 0 {
            // pd_checksum (bytes 8..10) counts as zero: the first half of word 2 in memory order.
            let mut b = words[2].to_ne_bytes();
            b[0] = 0;
            b[1] = 0;
            words[2] = u32::from_ne_bytes(b);
        }
        round(&mut sums, &words);
    }
    let zeros = [0u32; N_SUMS];
    round(&mut sums, &zeros);
    round(&mut sums, &zeros);
    sums.iter().fold(0, |acc, s| acc ^ s)
}

/// How many pages [`pg_checksum_pages`] computes in one pass.
pub const PAGES_PER_PASS: usize = 4;

/// [`lanes`] of several pages of the same length at once, row by row: one page's 32 lanes are
/// bound by the multiply's latency (each round depends on the one before), so interleaving the
/// rounds of independent pages keeps the multiplier busy.
#[inline(always)]
#[expect(
    clippy::indexing_slicing,
    reason = "constant indices into fixed-size arrays: checked at compile time, and free of the bounds checks that stop vectorisation"
)]
fn lanes_multi(pages: &[&[u8]; PAGES_PER_PASS]) -> [u32; PAGES_PER_PASS] {
    let mut sums = [BASE; PAGES_PER_PASS];
    let rows = pages[0].len() / (N_SUMS * 4);
    let mut words = [[0u32; N_SUMS]; PAGES_PER_PASS];
    for row in 0..rows {
        for k in 0..PAGES_PER_PASS {
            let Some(block) = pages[k].get(row * N_SUMS * 4..(row + 1) * N_SUMS * 4) else {
                continue;
            };
            let Ok(block) = <&[u8; N_SUMS * 4]>::try_from(block) else {
                continue;
            };
            for j in 0..N_SUMS {
                words[k][j] = u32::from_ne_bytes([
                    block[4 * j],
                    block[4 * j + 1],
                    block[4 * j + 2],
                    block[4 * j + 3],
                ]);
            }
            if row == 0 {
                let mut b = words[k][2].to_ne_bytes();
                b[0] = 0;
                b[1] = 0;
                words[k][2] = u32::from_ne_bytes(b);
            }
        }
        for k in 0..PAGES_PER_PASS {
            round(&mut sums[k], &words[k]);
        }
    }
    let zeros = [0u32; N_SUMS];
    let mut out = [0u32; PAGES_PER_PASS];
    for k in 0..PAGES_PER_PASS {
        round(&mut sums[k], &zeros);
        round(&mut sums[k], &zeros);
        out[k] = sums[k].iter().fold(0, |acc, s| acc ^ s);
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_multi_avx2(pages: &[&[u8]; PAGES_PER_PASS]) -> [u32; PAGES_PER_PASS] {
    lanes_multi(pages)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn lanes_multi_avx512(pages: &[&[u8]; PAGES_PER_PASS]) -> [u32; PAGES_PER_PASS] {
    lanes_multi(pages)
}

fn lanes_multi_dispatch(pages: &[&[u8]; PAGES_PER_PASS]) -> [u32; PAGES_PER_PASS] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { lanes_multi_avx512(pages) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { lanes_multi_avx2(pages) };
        }
    }
    lanes_multi(pages)
}

/// [`pg_checksum_page`] of [`PAGES_PER_PASS`] pages of one length at once (the same values).
pub fn pg_checksum_pages(
    pages: &[&[u8]; PAGES_PER_PASS],
    blknos: [u32; PAGES_PER_PASS],
) -> [u16; PAGES_PER_PASS] {
    let mut out = [0u16; PAGES_PER_PASS];
    let same = pages
        .windows(2)
        .all(|w| matches!(w, [a, b] if a.len() == b.len()));
    if same {
        let c = lanes_multi_dispatch(pages);
        for ((o, c), b) in out.iter_mut().zip(c).zip(blknos) {
            *o = finish(c, b);
        }
    } else {
        for ((o, p), b) in out.iter_mut().zip(pages).zip(blknos) {
            *o = pg_checksum_page(p, b);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_avx2(page: &[u8]) -> u32 {
    lanes(page)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn lanes_avx512(page: &[u8]) -> u32 {
    lanes(page)
}

fn lanes_dispatch(page: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { lanes_avx512(page) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { lanes_avx2(page) };
        }
    }
    lanes(page)
}

/// The checksum PostgreSQL stores in `pd_checksum` for `page` at absolute block `blkno` of its
/// fork. `page.len()` must be a multiple of 128 (every PostgreSQL block size is).
pub fn pg_checksum_page(page: &[u8], blkno: u32) -> u16 {
    finish(lanes_dispatch(page), blkno)
}

/// The same checksum by the plain (non-dispatched) code, as the reference for tests.
pub fn pg_checksum_page_scalar(page: &[u8], blkno: u32) -> u16 {
    finish(lanes(page), blkno)
}

fn finish(c: u32, blkno: u32) -> u16 {
    ((c ^ blkno) % 65535 + 1) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| ((7 * i + 3) & 0xFF) as u8).collect()
    }

    #[test]
    fn test_vectors_from_formats_md() {
        // formats.md §1.6, confirmed against pg_checksums on this machine.
        let p = pattern(8192);
        assert_eq!(pg_checksum_page(&p, 0), 0xAA4C);
        assert_eq!(pg_checksum_page(&p, 1), 0xAA4B);
        assert_eq!(pg_checksum_page(&p, 131072), 0xAA4A);
    }

    #[test]
    fn checksum_field_is_ignored() {
        let mut p = pattern(8192);
        p[8] = 0x12;
        p[9] = 0x34;
        assert_eq!(pg_checksum_page(&p, 0), 0xAA4C);
    }

    /// Several pages per pass give each page's own checksum, on every path this CPU has.
    #[test]
    fn pages_per_pass_match_one_page_at_a_time() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in [1024usize, 8192, 32768] {
            let pages: Vec<Vec<u8>> = (0..PAGES_PER_PASS)
                .map(|_| {
                    (0..len)
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            x as u8
                        })
                        .collect()
                })
                .collect();
            let refs: [&[u8]; PAGES_PER_PASS] = std::array::from_fn(|k| pages[k].as_slice());
            let blk = [0u32, 1, 131072, u32::MAX];
            let want: [u16; PAGES_PER_PASS] =
                std::array::from_fn(|k| pg_checksum_page_scalar(refs[k], blk[k]));
            assert_eq!(pg_checksum_pages(&refs, blk), want, "{len}");
            assert_eq!(lanes_multi(&refs), std::array::from_fn(|k| lanes(refs[k])));
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is present, checked just above.
                    let got = unsafe { lanes_multi_avx2(&refs) };
                    assert_eq!(got, std::array::from_fn(|k| lanes(refs[k])));
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F is present, checked just above.
                    let got = unsafe { lanes_multi_avx512(&refs) };
                    assert_eq!(got, std::array::from_fn(|k| lanes(refs[k])));
                }
            }
        }
    }

    /// Each fast path this CPU has, tested on its own against the plain code (the dispatcher
    /// only ever runs the best one, so testing through it would leave the others untested).
    #[test]
    fn every_fast_path_the_cpu_has_matches_the_scalar_reference() {
        type Path = fn(&[u8]) -> u32;
        let mut paths: Vec<(&str, Path)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present, checked just above.
                paths.push(("avx2", |p| unsafe { lanes_avx2(p) }));
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is present, checked just above.
                paths.push(("avx512f", |p| unsafe { lanes_avx512(p) }));
            }
        }
        let mut x: u64 = 0x2545F4914F6CDD1D;
        let mut buf = vec![0u8; 32768 + 64];
        for (name, path) in &paths {
            for _ in 0..32 {
                for b in buf.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                for (size, align) in [(8192, 0), (8192, 5), (1024, 1), (32768, 31), (4096, 63)] {
                    let page = &buf[align..align + size];
                    assert_eq!(path(page), lanes(page), "{name}, {size} bytes at +{align}");
                }
            }
        }
        eprintln!(
            "fast paths tested: {:?}",
            paths.iter().map(|p| p.0).collect::<Vec<_>>()
        );
    }

    #[test]
    fn dispatched_path_matches_scalar_on_random_pages_and_alignments() {
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut buf = vec![0u8; 32768 + 64];
        for _ in 0..64 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            for (size, align) in [(8192, 0), (8192, 3), (1024, 1), (32768, 7), (16384, 63)] {
                let page = &buf[align..align + size];
                let blk = (x >> 32) as u32;
                assert_eq!(
                    pg_checksum_page(page, blk),
                    pg_checksum_page_scalar(page, blk)
                );
            }
        }
    }
}
