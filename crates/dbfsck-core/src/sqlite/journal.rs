//! An SQLite rollback journal (`-journal`) read as `pager_playback()` reads a hot journal
//! (`docs/sqlite.md` §5): segment headers, page records checked by their nonce checksum, the
//! original page images a rollback writes back, and the size it truncates the database to.

use std::collections::HashMap;

use super::page::be32;
use crate::finding::{Finding, FindingKind, Owner};
use crate::format::FileSource;

/// The journal magic (`aJournalMagic`).
pub(crate) const MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// `pager_cksum()`: the nonce plus every 200th byte of the page from P−200 down.
pub(crate) fn record_sum(nonce: u32, page: &[u8]) -> u32 {
    let mut sum = nonce;
    let mut i = page.len() as i64 - 200;
    while i > 0 {
        sum = sum.wrapping_add(u32::from(page.get(i as usize).copied().unwrap_or(0)));
        i -= 200;
    }
    sum
}

/// What a rollback of the journal would do.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// The first byte is not zero and a whole header is there: SQLite would roll it back
    /// (when no process holds the database's RESERVED lock and the database is not empty).
    pub rollback: bool,
    /// The database size, in pages, before the transaction (the rollback truncates to it).
    pub initial_pages: u32,
    /// The page size the journal was written with.
    pub page_size: u32,
    /// Each page's original image: the offset of its bytes in the journal (the first record
    /// of the page, as playback writes them in order and each page is journalled once).
    pub images: HashMap<u32, u64>,
    /// Records that verified.
    pub records: u64,
    /// Findings about the journal file.
    pub findings: Vec<Finding>,
    /// What is not damage but worth knowing.
    pub notes: Vec<String>,
}

/// Reads a journal through `src`. `db_page_size` is the database's page size; `lock_page` its
/// lock-byte page.
pub(crate) fn read(src: &dyn FileSource, lock_page: u32) -> std::io::Result<Journal> {
    let len = src.len();
    let mut j = Journal::default();
    let mut hdr = [0u8; 28];
    let n = src.read_full_at(0, &mut hdr)?;
    if n == 0 || hdr[0] == 0 {
        j.notes.push("the journal's header is zeroed (journal_mode=PERSIST after a commit, or an empty journal): not hot, SQLite ignores it".into());
        return Ok(j);
    }
    if n < 28 || hdr[..8] != MAGIC {
        j.notes.push("the journal has no valid header (a journal whose creation the crash cut): SQLite rolls nothing back from it".into());
        return Ok(j);
    }
    let sector = be32(&hdr, 20);
    let page_size = be32(&hdr, 24);
    let sane = |v: u32, lo: u32| v.is_power_of_two() && (lo..=65536).contains(&v);
    if !sane(sector, 32) || !sane(page_size, 512) {
        j.findings.push(Finding::new(FindingKind::BadHeader, 0, 28, format!("the journal header is impossible (sector size {sector}, page size {page_size}): SQLite rolls nothing back, and the database keeps the transaction's half-written pages")).unit(0));
        return Ok(j);
    }
    if u64::from(sector) > len {
        j.notes.push(
            "the journal is shorter than its header sector: SQLite rolls nothing back from it"
                .into(),
        );
        return Ok(j);
    }
    j.rollback = true;
    j.page_size = page_size;
    j.initial_pages = be32(&hdr, 16);
    let rec_len = u64::from(page_size) + 8;
    let mut buf = vec![0u8; rec_len as usize];
    let mut off = 0u64;
    let mut first = true;
    'segments: loop {
        let mut h = [0u8; 28];
        if src.read_full_at(off, &mut h)? < 28 || h[..8] != MAGIC {
            break;
        }
        if !first && (be32(&h, 20) != sector || be32(&h, 24) != page_size) {
            break;
        }
        first = false;
        let n_rec = be32(&h, 8);
        let nonce = be32(&h, 12);
        let mut at = off + u64::from(sector);
        let count = if n_rec == u32::MAX {
            len.saturating_sub(at) / rec_len
        } else {
            u64::from(n_rec)
        };
        let to_end = n_rec == u32::MAX;
        for r in 0..count {
            if src.read_full_at(at, &mut buf)? < buf.len() {
                let (kind, why) = if to_end {
                    (FindingKind::TornTail, "the last record is cut: the crash's unfinished write (this journal is not synced, journal_mode or synchronous=OFF)")
                } else {
                    (FindingKind::Truncated, "the journal ends inside the records its header counts: the original pages after this point are gone, and a rollback leaves the database half-written")
                };
                j.findings
                    .push(Finding::new(kind, at, len - at, why).unit(j.records + r + 1));
                break 'segments;
            }
            let pgno = be32(&buf, 0);
            if pgno == 0 || pgno == lock_page {
                break 'segments;
            }
            let image = buf.get(4..4 + page_size as usize).unwrap_or_default();
            let stored = be32(&buf, 4 + page_size as usize);
            let computed = record_sum(nonce, image);
            if stored != computed {
                let mut o = Owner::new();
                o.insert("page".into(), pgno.into());
                let f = if to_end {
                    Finding::new(FindingKind::TornTail, at, len - at, format!("journal record for page {pgno} fails its checksum: the crash's unfinished write (an unsynced journal), where SQLite's rollback stops"))
                } else {
                    Finding::new(FindingKind::ChecksumMismatch, at, rec_len, format!("journal record for page {pgno} fails its checksum although the header counts it as written: SQLite's rollback stops here, so this page and the ones after it keep the interrupted transaction's bytes"))
                        .checksums(format!("0x{stored:08x}"), format!("0x{computed:08x}"))
                };
                j.findings.push(f.unit(j.records + 1).owner(o));
                break 'segments;
            }
            j.records += 1;
            if pgno <= j.initial_pages {
                j.images.entry(pgno).or_insert(at + 4);
            }
            at += rec_len;
        }
        if to_end {
            break;
        }
        // The next header starts on a sector boundary after the records.
        let s = u64::from(sector);
        off = at.div_ceil(s) * s;
        if off >= len {
            break;
        }
    }
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_samples() {
        // formats-sqlite.md §11.4: P=512 samples bytes 312 and 112.
        let mut p = vec![0u8; 512];
        p[312] = 0x62;
        p[112] = 0x62;
        assert_eq!(record_sum(0xb5fb_ce50, &p), 0xb5fb_cf14);
        p[312] = 0x54;
        p[112] = 0;
        assert_eq!(record_sum(0xb5fb_ce50, &p), 0xb5fb_cea4);
    }
}
