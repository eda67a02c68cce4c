//! InnoDB's page checksums (`docs/innodb.md` §3): full_crc32, crc32, the legacy "innodb"
//! fold, and ROW_FORMAT=COMPRESSED's XOR of three CRC-32C values (Adler-32 for legacy files).
//! All are big-endian when stored.

/// `BUF_NO_CHECKSUM_MAGIC`: written in both checksum fields when checksums were off ("none").
pub const NO_CHECKSUM_MAGIC: u32 = 0xDEAD_BEEF;

/// full_crc32: CRC-32C of the page's first `size - 4` bytes (stored in its last 4 bytes).
pub fn full_crc32(covered: &[u8]) -> u32 {
    crc32c::crc32c(covered)
}

/// crc32 (`buf_calc_page_crc32`): CRC-32C of bytes `[4, 26)` XOR CRC-32C of `[38, n-8)`; the
/// checksum fields, the flush LSN / key version and the space id are excluded.
pub fn page_crc32(page: &[u8]) -> u32 {
    let n = page.len();
    match (page.get(4..26), page.get(38..n.saturating_sub(8))) {
        (Some(a), Some(b)) => crc32c::crc32c(a) ^ crc32c::crc32c(b),
        _ => 0,
    }
}

const FOLD_MASK_1: u64 = 1_653_893_711;
const FOLD_MASK_2: u64 = 1_463_735_687;

/// `ut_fold_binary`: the legacy fold over bytes (mod 2^64).
pub fn fold(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |f, &b| {
        let b = u64::from(b);
        (((f ^ b ^ FOLD_MASK_1) << 8).wrapping_add(f) ^ FOLD_MASK_2).wrapping_add(b)
    })
}

/// The legacy "new" checksum (`buf_calc_page_new_checksum`), stored at offset 0: the fold of
/// `[4, 26)` plus the fold of `[38, n-8)`, low 32 bits.
pub fn legacy_new(page: &[u8]) -> u32 {
    let n = page.len();
    match (page.get(4..26), page.get(38..n.saturating_sub(8))) {
        (Some(a), Some(b)) => fold(a).wrapping_add(fold(b)) as u32,
        _ => 0,
    }
}

/// The legacy "old" checksum (`buf_calc_page_old_checksum`), stored at `n-8`: the fold of the
/// first 26 bytes as they are (the new checksum included), low 32 bits.
pub fn legacy_old(page: &[u8]) -> u32 {
    page.get(..26).map_or(0, |a| fold(a) as u32)
}

/// ROW_FORMAT=COMPRESSED (`page_zip_calc_checksum`, crc32): CRC-32C of `[4, 16)` XOR CRC-32C of
/// `[24, 26)` XOR CRC-32C of `[34, size)`; the checksum, LSN and flush-LSN fields are excluded.
pub fn zip_crc32(page: &[u8]) -> u32 {
    match (page.get(4..16), page.get(24..26), page.get(34..)) {
        (Some(a), Some(b), Some(c)) => crc32c::crc32c(a) ^ crc32c::crc32c(b) ^ crc32c::crc32c(c),
        _ => 0,
    }
}

/// ROW_FORMAT=COMPRESSED, legacy (`innodb` algorithm): Adler-32 over the same three ranges,
/// chained.
pub fn zip_adler32(page: &[u8]) -> u32 {
    match (page.get(4..16), page.get(24..26), page.get(34..)) {
        (Some(a), Some(b), Some(c)) => adler32(adler32(adler32(1, a), b), c),
        _ => 0,
    }
}

/// zlib's Adler-32, continued from `adler` (start with 1).
pub fn adler32(adler: u32, bytes: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    // 5552 is the largest run for which the sums cannot overflow u32 (zlib's NMAX).
    let (mut a, mut b) = (adler & 0xffff, adler >> 16);
    for block in bytes.chunks(5552) {
        for &x in block {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The synthetic page of `../shared/formats.md` §2.6: `P[i] = (7i + 3) & 0xFF`.
    fn pattern() -> Vec<u8> {
        (0..16384usize)
            .map(|i| ((7 * i + 3) & 0xff) as u8)
            .collect()
    }

    #[test]
    fn formats_md_test_vectors() {
        let p = pattern();
        assert_eq!(full_crc32(&p[..16380]), 0xa448_aa9e);
        assert_eq!(page_crc32(&p), 0x9273_50e4);
        assert_eq!(legacy_new(&p), 0x695b_ae2c);
        assert_eq!(legacy_old(&p), 0xd243_4c2b);
    }

    #[test]
    fn fold_check_value() {
        // mysql-server unittest ut0rnd-t.cc, hash_binary_ib_basic.
        assert_eq!(fold(b"innodb") as u32, 58_956_420);
    }

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn adler32_check_values() {
        assert_eq!(adler32(1, b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(1, b""), 1);
        // Long runs of 0xff exercise the modulo between blocks.
        let ones = vec![0xffu8; 100_000];
        let mut a: u64 = 1;
        let mut b: u64 = 0;
        for &x in &ones {
            a = (a + u64::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(1, &ones), ((b << 16) | a) as u32);
        // Chaining equals one pass.
        assert_eq!(
            adler32(adler32(1, &ones[..7]), &ones[7..]),
            adler32(1, &ones)
        );
    }

    #[test]
    fn short_pages_do_not_panic() {
        for n in 0..64 {
            let p = vec![1u8; n];
            let _ = (
                page_crc32(&p),
                legacy_new(&p),
                legacy_old(&p),
                zip_crc32(&p),
                zip_adler32(&p),
            );
        }
    }
}
