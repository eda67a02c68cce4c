//! The compressions backup tools store files with (pgBackRest, WAL-G, an `archive_command`
//! that gzips), named by the file's extension, decoded as a stream into any writer: a bounded
//! buffer for a WAL segment, a hashing page checker for a backed-up relation file. Pure-Rust
//! decoders, safe on hostile input; memory is the decoder's window, never the file.

use std::io::{self, BufRead, Read, Write};

/// A compression, as a file's extension names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `.gz`: gzip (RFC 1952), members concatenated as `gzip` writes them.
    Gzip,
    /// `.lz4`: the LZ4 frame format.
    Lz4,
    /// `.zst`: Zstandard frames.
    Zstd,
    /// `.bz2`: bzip2 streams.
    Bzip2,
    /// `.xz`: xz streams.
    Xz,
    /// `.lzma`: the legacy LZMA ("lzma-alone") format WAL-G writes.
    Lzma,
    /// `.br`: Brotli (WAL-G built with brotli).
    Brotli,
}

/// Why a stream could not be decoded to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The stream ends before its end marker: the file was cut.
    #[error(
        "the {codec} stream ends early, after {decoded} decompressed bytes: the file is cut short"
    )]
    Truncated {
        /// The codec's name.
        codec: &'static str,
        /// Bytes decoded before the end.
        decoded: u64,
    },
    /// The stream is not valid (a bad block, a failed checksum of the codec's own).
    #[error("the {codec} stream is damaged after {decoded} decompressed bytes: {why}")]
    Corrupt {
        /// The codec's name.
        codec: &'static str,
        /// Bytes decoded before the damage.
        decoded: u64,
        /// The decoder's message.
        why: String,
    },
    /// It decompresses to more than the writer takes (more than a WAL segment, say).
    #[error("the {codec} stream decompresses to more than {limit} bytes")]
    TooLong {
        /// The codec's name.
        codec: &'static str,
        /// The bound.
        limit: u64,
    },
    /// The writer failed (not the stream's fault).
    #[error("{0}")]
    Output(String),
}

/// The error a bounded writer returns past its bound (told from real I/O errors by its text).
const OVER_LIMIT: &str = "dbfsck: decoded output over its bound";

impl Codec {
    /// The codec a file extension (without the dot) names.
    pub fn from_extension(ext: &str) -> Option<Codec> {
        Some(match ext {
            "gz" => Codec::Gzip,
            "lz4" => Codec::Lz4,
            "zst" => Codec::Zstd,
            "bz2" => Codec::Bzip2,
            "xz" => Codec::Xz,
            "lzma" => Codec::Lzma,
            "br" => Codec::Brotli,
            _ => return None,
        })
    }

    /// The file-name extension (without the dot) that names the codec: the inverse of
    /// [`Codec::from_extension`].
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zst",
            Codec::Bzip2 => "bz2",
            Codec::Xz => "xz",
            Codec::Lzma => "lzma",
            Codec::Brotli => "br",
        }
    }

    /// Splits `name` into the name before a codec's extension and the codec, when it ends in one.
    pub fn strip(name: &str) -> Option<(&str, Codec)> {
        let (stem, ext) = name.rsplit_once('.')?;
        Some((stem, Codec::from_extension(ext)?))
    }

    /// The codec's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::Lzma => "lzma",
            Codec::Brotli => "brotli",
        }
    }

    /// Decodes all of `input` into `out`; the bytes written to `out` before an error are what
    /// decoded cleanly. `Ok`: the stream decoded to its end marker.
    pub fn decode(self, input: impl BufRead, out: &mut dyn Write) -> Result<u64, DecodeError> {
        let mut counted = Counting { out, n: 0 };
        let result = match self {
            Codec::Gzip => copy(flate2::bufread::MultiGzDecoder::new(input), &mut counted),
            Codec::Lz4 => copy(lz4_flex::frame::FrameDecoder::new(input), &mut counted),
            Codec::Bzip2 => copy(bzip2::bufread::MultiBzDecoder::new(input), &mut counted),
            Codec::Brotli => copy(
                brotli_decompressor::Decompressor::new(input, 1 << 16),
                &mut counted,
            ),
            Codec::Zstd => zstd(input, &mut counted),
            Codec::Xz => {
                let mut input = input;
                lzma_rs::xz_decompress(&mut input, &mut counted).map_err(lzma_error)
            }
            Codec::Lzma => {
                let mut input = input;
                lzma_rs::lzma_decompress(&mut input, &mut counted).map_err(lzma_error)
            }
        };
        let decoded = counted.n;
        result
            .map(|()| decoded)
            .map_err(|e| self.classify(e, decoded))
    }

    /// A reader of the decoded bytes, for the codecs that decode as a stream a reader can pull
    /// (all but xz and lzma, which decode only into a writer: `None`).
    pub fn reader<'a>(self, input: impl BufRead + 'a) -> Option<Box<dyn Read + 'a>> {
        Some(match self {
            Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Codec::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
            Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
            Codec::Brotli => Box::new(brotli_decompressor::Decompressor::new(input, 1 << 16)),
            Codec::Zstd => Box::new(ZstdReader {
                input: Some(input),
                decoder: None,
            }),
            Codec::Xz | Codec::Lzma => return None,
        })
    }

    /// Decodes `input` whole into memory, up to `limit` bytes: the bytes that decoded (all of
    /// them, or those before the error) and the error.
    pub fn decode_bounded(self, input: &[u8], limit: u64) -> (Vec<u8>, Option<DecodeError>) {
        let mut w = Bounded {
            out: Vec::new(),
            limit,
        };
        let err = self.decode(input, &mut w).err().map(|e| match e {
            DecodeError::Output(m) if m == OVER_LIMIT => DecodeError::TooLong {
                codec: self.name(),
                limit,
            },
            e => e,
        });
        (w.out, err)
    }

    fn classify(self, e: io::Error, decoded: u64) -> DecodeError {
        let codec = self.name();
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return DecodeError::Truncated { codec, decoded };
        }
        let why = e.to_string();
        if why == OVER_LIMIT {
            return DecodeError::Output(why);
        }
        if e.kind() == io::ErrorKind::Other && why.starts_with("dbfsck: write: ") {
            return DecodeError::Output(why);
        }
        DecodeError::Corrupt {
            codec,
            decoded,
            why,
        }
    }
}

fn copy(mut r: impl Read, w: &mut Counting<'_>) -> io::Result<()> {
    io::copy(&mut r, w).map(|_| ())
}

fn zstd(input: impl BufRead, w: &mut Counting<'_>) -> io::Result<()> {
    // Frames one after another, as `zstd` may write them; at least one.
    let mut input = input;
    let mut first = true;
    loop {
        if !first && input.fill_buf()?.is_empty() {
            return Ok(());
        }
        first = false;
        let d = ruzstd::decoding::StreamingDecoder::new(&mut input).map_err(|e| {
            let eof = matches!(
                e,
                ruzstd::decoding::errors::FrameDecoderError::ReadFrameHeaderError(_)
            ) && w.n > 0;
            io::Error::new(
                if eof {
                    io::ErrorKind::UnexpectedEof
                } else {
                    io::ErrorKind::InvalidData
                },
                e.to_string(),
            )
        })?;
        copy(d, w)?;
    }
}

/// Zstandard frames one after another, pulled: the next frame's decoder is made when the
/// last one ends.
struct ZstdReader<R: BufRead> {
    input: Option<R>,
    decoder: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(d) = self.decoder.as_mut() {
                let n = d.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                // This frame is done: the input goes on to the next one, if any.
                self.input = self.decoder.take().map(|d| d.into_inner());
            }
            let Some(mut input) = self.input.take() else {
                return Ok(0);
            };
            if input.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let d = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            self.decoder = Some(d);
        }
    }
}

fn lzma_error(e: lzma_rs::error::Error) -> io::Error {
    match e {
        lzma_rs::error::Error::IoError(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// Counts what passes to the writer; marks the writer's own errors.
struct Counting<'a> {
    out: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf).map_err(|e| {
            if e.to_string() == OVER_LIMIT {
                e
            } else {
                io::Error::other(format!("dbfsck: write: {e}"))
            }
        })?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A writer into memory that refuses more than `limit` bytes (keeping the first `limit`).
struct Bounded {
    out: Vec<u8>,
    limit: u64,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.out.len() as u64);
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::other(OVER_LIMIT));
        }
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        self.out
            .extend_from_slice(buf.get(..take).unwrap_or_default());
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn data() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn streams_decode_whole_and_bounded() {
        let d = data();
        for (codec, bytes) in [(Codec::Gzip, gzip(&d)), (Codec::Lz4, lz4(&d))] {
            let mut pulled = Vec::new();
            codec
                .reader(bytes.as_slice())
                .unwrap()
                .read_to_end(&mut pulled)
                .unwrap();
            assert_eq!(pulled, d, "{codec:?} pulled");
            let (out, err) = codec.decode_bounded(&bytes, 1 << 30);
            assert_eq!(err, None, "{codec:?}");
            assert_eq!(out, d);
            let (out, err) = codec.decode_bounded(&bytes, 1000);
            assert_eq!(out.len(), 1000);
            assert!(matches!(err, Some(DecodeError::TooLong { .. })), "{err:?}");
        }
    }

    /// A cut stream keeps what decoded before the cut and says it is cut; a damaged one says
    /// it is damaged; neither panics.
    #[test]
    fn cut_and_damaged_streams_are_told_apart() {
        let d = data();
        let g = gzip(&d);
        let (out, err) = Codec::Gzip.decode_bounded(g.get(..g.len() / 2).unwrap(), 1 << 30);
        assert!(
            matches!(err, Some(DecodeError::Truncated { .. })),
            "{err:?}"
        );
        assert!(!out.is_empty() && d.starts_with(&out));
        let mut bad = g.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff; // the gzip trailer's CRC-32
        let (_, err) = Codec::Gzip.decode_bounded(&bad, 1 << 30);
        assert!(matches!(err, Some(DecodeError::Corrupt { .. })), "{err:?}");
        let l = lz4(&d);
        let (_, err) = Codec::Lz4.decode_bounded(l.get(..l.len() - 9).unwrap(), 1 << 30);
        assert!(err.is_some());
        for codec in [
            Codec::Zstd,
            Codec::Bzip2,
            Codec::Xz,
            Codec::Lzma,
            Codec::Lz4,
            Codec::Brotli,
        ] {
            let (_, err) = codec.decode_bounded(b"not a compressed stream at all", 1 << 20);
            assert!(err.is_some(), "{codec:?}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(
            Codec::strip("000000010000000000000003.zst"),
            Some(("000000010000000000000003", Codec::Zstd))
        );
        assert_eq!(Codec::strip("000000010000000000000003"), None);
        for c in [
            Codec::Gzip,
            Codec::Lz4,
            Codec::Zstd,
            Codec::Bzip2,
            Codec::Xz,
            Codec::Lzma,
            Codec::Brotli,
        ] {
            assert_eq!(Codec::from_extension(c.extension()), Some(c));
        }
        assert_eq!(Codec::strip("x.partial"), None);
    }
}
