//! MariaDB `PAGE_COMPRESSED` pages (`fil0pagecompress.cc`; `docs/innodb.md` §4): the server
//! compresses a page when it writes it and judges it after decompressing it, so dbfsck does the
//! same. Every decoder is bounded to one page of output, whatever the input claims.
//!
//! - **Old format** (page type 34354): `DEADBEEF` at 0, six zero bytes at 26 then the algorithm
//!   (BE16) at 32, the compressed length (BE16) at 38, the stream from 40. The page it inflates
//!   to carries its own checksum and is judged like any page. Type 37401 (compressed, then
//!   encrypted) cannot be decompressed without the key.
//! - **full_crc32** (type bit 15 set): the CRC-32C covers the compressed bytes; the stream
//!   starts at 26 and the algorithm is in the tablespace flags. For LZ4, LZO and Snappy, which
//!   need the exact length, the byte before the CRC holds its low bits.

use std::io::{Read, Write};

/// `innodb_compression_algorithm` values as stored (`PAGE_ZLIB_ALGORITHM` = 1 …).
pub(crate) fn algorithm_name(algo: u16) -> &'static str {
    match algo {
        0 => "none",
        1 => "zlib",
        2 => "lz4",
        3 => "lzo",
        4 => "lzma",
        5 => "bzip2",
        6 => "snappy",
        _ => "unknown",
    }
}

/// Why a page did not inflate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inflate {
    /// The stream is damaged or does not make exactly one page: the server rejects the page.
    Bad(String),
    /// An algorithm dbfsck does not decompress (LZO): the page cannot be checked.
    Unsupported(&'static str),
}

/// Inflates `input` (compressed with `algo`) to exactly `page_size` bytes.
pub(crate) fn inflate(algo: u16, input: &[u8], page_size: usize) -> Result<Vec<u8>, Inflate> {
    let bad = |e: &dyn std::fmt::Display| {
        Inflate::Bad(format!(
            "its {} stream does not decompress: {e}",
            algorithm_name(algo)
        ))
    };
    let limit = page_size as u64 + 1;
    let out = match algo {
        1 => read_bounded(flate2::read::ZlibDecoder::new(input), limit).map_err(|e| bad(&e))?,
        2 => {
            let mut out = vec![0u8; page_size];
            let n = lz4_flex::block::decompress_into(input, &mut out).map_err(|e| bad(&e))?;
            out.truncate(n);
            out
        }
        4 => xz(input, limit as usize).map_err(|e| bad(&e))?,
        5 => read_bounded(bzip2::read::BzDecoder::new(input), limit).map_err(|e| bad(&e))?,
        6 => {
            let claimed = snap::raw::decompress_len(input).map_err(|e| bad(&e))?;
            if claimed != page_size {
                return Err(Inflate::Bad(format!(
                    "its snappy stream claims {claimed} bytes, not one {page_size}-byte page"
                )));
            }
            let mut out = vec![0u8; page_size];
            let n = snap::raw::Decoder::new()
                .decompress(input, &mut out)
                .map_err(|e| bad(&e))?;
            out.truncate(n);
            out
        }
        3 => return Err(Inflate::Unsupported("lzo")),
        a => {
            return Err(Inflate::Bad(format!(
                "it names compression algorithm {a}, which the server does not have"
            )))
        }
    };
    if out.len() != page_size {
        return Err(Inflate::Bad(format!(
            "its {} stream makes {} bytes, not one {page_size}-byte page",
            algorithm_name(algo),
            if out.len() > page_size {
                "more than a page of".to_owned()
            } else {
                out.len().to_string()
            }
        )));
    }
    Ok(out)
}

/// Decodes one xz stream at the start of `input`. A full_crc32 page gives the stream with its
/// padding and CRC after it, which liblzma (the server's decoder) ignores and lzma-rs refuses:
/// so the stream is tried up to each place it may end (its footer ends with "YZ" at a multiple
/// of 4 bytes), first to last, a few at most.
fn xz(input: &[u8], limit: usize) -> Result<Vec<u8>, lzma_rs::error::Error> {
    let ends = (12..=input.len())
        .step_by(4)
        .filter(|&k| input.get(k - 2..k) == Some(b"YZ"))
        .take(8)
        .chain(std::iter::once(input.len()));
    let mut last = None;
    for end in ends {
        let mut w = Bounded {
            out: Vec::new(),
            limit,
        };
        match lzma_rs::xz_decompress(&mut input.get(..end).unwrap_or_default(), &mut w) {
            Ok(()) => return Ok(w.out),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| lzma_rs::error::Error::XzError("no stream".into())))
}

/// Reads at most `limit` bytes from a decoder (a stream that would inflate further is cut).
fn read_bounded(r: impl Read, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// A writer that refuses more than `limit` bytes.
struct Bounded {
    out: Vec<u8>,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("more than a page"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_that_inflates_past_one_page_is_bad_not_a_big_allocation() {
        use std::io::Write as _;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 64 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        match inflate(1, &bomb, 16384) {
            Err(Inflate::Bad(why)) => assert!(why.contains("more than a page"), "{why}"),
            r => panic!("{r:?}"),
        }
        assert_eq!(inflate(3, &bomb, 16384), Err(Inflate::Unsupported("lzo")));
        for algo in [1, 2, 4, 5, 6, 7, 0xffff] {
            assert!(inflate(algo, &[0xff; 100], 16384).is_err());
            assert!(inflate(algo, &[], 16384).is_err());
        }
    }
}
