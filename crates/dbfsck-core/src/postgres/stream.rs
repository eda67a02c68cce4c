//! Checks of a file's bytes as they stream past once (a decompressing backup reader): its digest
//! and length, and, for a relation file, every page judged with its absolute block number —
//! without the file ever being whole in memory.

use std::io::{self, Write};

use sha1::Digest;

use crate::finding::{Finding, Owner};

use super::manifest::Algorithm;

/// A running digest of the bytes.
pub(crate) enum Hasher {
    /// No digest wanted.
    None,
    Sha1(sha1::Sha1),
    /// CRC-32C, as `backup_manifest` takes it.
    Crc32c(u32),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// The hasher of a manifest's algorithm.
    pub fn of(alg: Option<Algorithm>) -> Hasher {
        match alg {
            None => Hasher::None,
            Some(Algorithm::Crc32c) => Hasher::Crc32c(0),
            Some(Algorithm::Sha224) => Hasher::Sha224(sha2::Sha224::new()),
            Some(Algorithm::Sha256) => Hasher::Sha256(sha2::Sha256::new()),
            Some(Algorithm::Sha384) => Hasher::Sha384(sha2::Sha384::new()),
            Some(Algorithm::Sha512) => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::None => {}
            Hasher::Sha1(h) => h.update(b),
            Hasher::Crc32c(c) => *c = crc32c::crc32c_append(*c, b),
            Hasher::Sha224(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha384(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    /// The digest (a CRC-32C as its little-endian bytes, as the manifest writes it).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::None => Vec::new(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Crc32c(c) => c.to_le_bytes().to_vec(),
            Hasher::Sha224(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha384(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// The pages of a relation file as they stream past.
pub(crate) struct Pages {
    pub blcksz: usize,
    /// The absolute block number of the file's first page.
    pub first_block: u64,
    /// Failing pages whose LSN is at or after this were written while a backup read them
    /// (skipped, as pgBackRest and pg_basebackup skip them); `u64::MAX`: none skipped.
    pub skip_from_lsn: u64,
    /// Added to each finding's offset (where the file's bytes begin in what is reported on).
    pub base: u64,
    /// Each finding's owner.
    pub owner: Owner,
    partial: Vec<u8>,
    block: u64,
    /// Pages judged, and pages skipped by `skip_from_lsn`.
    pub checked: u64,
    pub skipped: u64,
    pub findings: Vec<Finding>,
}

impl Pages {
    pub fn new(
        blcksz: u32,
        first_block: u64,
        skip_from_lsn: u64,
        base: u64,
        owner: Owner,
    ) -> Pages {
        Pages {
            blcksz: blcksz as usize,
            first_block,
            skip_from_lsn,
            base,
            owner,
            partial: Vec::new(),
            block: 0,
            checked: 0,
            skipped: 0,
            findings: Vec::new(),
        }
    }

    fn page(&mut self, page: &[u8]) {
        let block = self.block;
        self.block += 1;
        self.checked += 1;
        let Some((kind, detail, sums)) = super::judge_block(page, self.first_block + block) else {
            return;
        };
        let word = |o: usize| {
            page.get(o..o + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let lsn = (u64::from(word(0)) << 32) | u64::from(word(4));
        if lsn >= self.skip_from_lsn {
            self.skipped += 1;
            return;
        }
        let bs = self.blcksz as u64;
        let mut f = Finding::new(kind, self.base + block * bs, bs, detail).unit(block);
        if let Some((stored, computed)) = sums {
            f = f.checksums(format!("0x{stored:04x}"), format!("0x{computed:04x}"));
        }
        f.owner = Some(self.owner.clone());
        self.findings.push(f);
    }

    fn feed(&mut self, buf: &[u8]) {
        let mut rest = buf;
        if !self.partial.is_empty() {
            let need = self.blcksz - self.partial.len();
            let (a, b) = rest.split_at(need.min(rest.len()));
            self.partial.extend_from_slice(a);
            rest = b;
            if self.partial.len() == self.blcksz {
                let page = std::mem::take(&mut self.partial);
                self.page(&page);
            }
        }
        let mut whole = rest.chunks_exact(self.blcksz);
        for page in &mut whole {
            self.page(page);
        }
        self.partial.extend_from_slice(whole.remainder());
    }

    /// Bytes left over that are not a whole page.
    pub fn leftover(&self) -> usize {
        self.partial.len()
    }
}

/// Where a streamed file's bytes go: its digest, its length, its pages.
pub(crate) struct Sink {
    pub hasher: Hasher,
    pub n: u64,
    pub pages: Option<Pages>,
    /// Bytes past this are refused (the write fails): `n` then ends one past it.
    pub limit: Option<u64>,
}

impl Sink {
    pub fn new(hasher: Hasher, pages: Option<Pages>) -> Sink {
        Sink {
            hasher,
            n: 0,
            pages,
            limit: None,
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.limit {
            if self.n + buf.len() as u64 > limit {
                self.n = limit + 1;
                return Err(io::Error::other("more bytes than the file should hold"));
            }
        }
        self.hasher.update(buf);
        self.n += buf.len() as u64;
        if let Some(p) = self.pages.as_mut() {
            p.feed(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
