//! The page checksum algorithms of the native format.

use std::fmt;
use std::str::FromStr;

/// The checksum algorithm of a native page file, chosen per file at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgo {
    /// CRC-32 (IEEE, as zlib) through crc32fast; stored zero-extended to 64 bits.
    Crc32,
    /// XXH3-64 (seed 0) through twox-hash (run-time SIMD dispatch).
    Xxh3,
}

impl ChecksumAlgo {
    /// The code stored in the header page.
    pub const fn code(self) -> u8 {
        match self {
            ChecksumAlgo::Crc32 => 1,
            ChecksumAlgo::Xxh3 => 2,
        }
    }

    /// The algorithm for a header code, if it is one.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ChecksumAlgo::Crc32),
            2 => Some(ChecksumAlgo::Xxh3),
            _ => None,
        }
    }

    /// The name used on the command line and in the generator's summary.
    pub const fn name(self) -> &'static str {
        match self {
            ChecksumAlgo::Crc32 => "crc32",
            ChecksumAlgo::Xxh3 => "xxh3",
        }
    }

    /// The checksum of `bytes`, as stored in the page's 64-bit checksum field.
    #[inline]
    pub fn compute(self, bytes: &[u8]) -> u64 {
        match self {
            ChecksumAlgo::Crc32 => u64::from(crc32fast::hash(bytes)),
            // Run-time dispatch to AVX2 where the CPU has it (the build targets generic x86-64).
            ChecksumAlgo::Xxh3 => twox_hash::XxHash3_64::oneshot(bytes),
        }
    }

    /// A stored or computed value as it appears in reports: `0x` and 8 (crc32) or 16 (xxh3) hex
    /// digits. A crc32 field whose upper half is not zero is shown in full.
    pub fn hex(self, value: u64) -> String {
        match self {
            ChecksumAlgo::Crc32 if value <= u64::from(u32::MAX) => format!("0x{value:08x}"),
            _ => format!("0x{value:016x}"),
        }
    }
}

impl fmt::Display for ChecksumAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a checksum algorithm name.
#[derive(Debug, thiserror::Error)]
#[error("unknown checksum algorithm {0:?}; expected crc32 or xxh3")]
pub struct UnknownChecksum(String);

impl FromStr for ChecksumAlgo {
    type Err = UnknownChecksum;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crc32" => Ok(ChecksumAlgo::Crc32),
            "xxh3" | "xxh3-64" => Ok(ChecksumAlgo::Xxh3),
            _ => Err(UnknownChecksum(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32 (IEEE, reflected, init and final xor all ones) bit by bit: the slow reference that
    /// crc32fast's run-time dispatched kernels (PCLMULQDQ, or its table fallback) must match.
    fn crc32_bitwise(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn xxh3_kernel_matches_an_independent_implementation_on_random_data_and_alignments() {
        // twox-hash dispatches at run time (AVX2 here); xxhash-rust, built for the x86-64
        // baseline, is a separate implementation of the same function.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut buf = vec![0u8; 65536 + 64];
        for _ in 0..4 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            for (len, align) in [(4088, 0), (8184, 3), (65528, 17), (240, 1), (16, 5), (0, 0)] {
                let bytes = &buf[align..align + len];
                assert_eq!(
                    ChecksumAlgo::Xxh3.compute(bytes),
                    xxhash_rust::xxh3::xxh3_64(bytes),
                    "{len} bytes at +{align}"
                );
            }
        }
    }

    #[test]
    fn crc32_kernel_matches_a_bitwise_reference_on_random_data_and_alignments() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut buf = vec![0u8; 65536 + 64];
        for _ in 0..4 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            for (len, align) in [(4088, 0), (8184, 3), (65528, 17), (1, 1), (63, 62), (0, 0)] {
                let bytes = &buf[align..align + len];
                assert_eq!(
                    ChecksumAlgo::Crc32.compute(bytes),
                    u64::from(crc32_bitwise(bytes)),
                    "{len} bytes at +{align}"
                );
            }
        }
    }
}
