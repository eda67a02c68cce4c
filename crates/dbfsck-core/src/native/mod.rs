//! The native page-file format v1: the project's own format for datastore code, specified byte by
//! byte in `docs/format.md`.
//!
//! Every page carries a magic, its type, the file id, its page number, an LSN, a trailer copy of
//! the LSN and a checksum (crc32 or xxh3-64, chosen per file) over everything but the checksum.
//! The scan tells apart bit rot ([`FindingKind::ChecksumMismatch`]), torn writes (LSNs disagree),
//! misdirected writes (a valid page of another page number or file), zeroed pages, partial pages
//! and damaged headers. [`PageFile`] is the writer datastore code can adopt.

mod checksum;
mod header;
pub mod journal;
pub mod layout;
mod page;
mod writer;

use std::borrow::Cow;
use std::path::Path;

pub use checksum::{ChecksumAlgo, UnknownChecksum};
pub use header::{
    identify, identity_votes, looks_like_pages, parse_header, probe_params, FileHeader,
    HeaderError, Identity,
};
pub use page::{
    decode_meta, encode_page, verify_page, EncodeError, FileParams, MismatchCause, PageMeta,
    PageType, PageVerdict,
};
pub use writer::{header_page, random_file_id, CreateOptions, PageFile, ReadPageError, WriteError};

use crate::finding::{Finding, FindingKind, Owner};
use crate::format::{Chunk, FileSource, Format, Layout, OpenError, Opened, Probe, UnitCheck};

/// The native format, for [`Scanner`](crate::Scanner) and `--format native`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeFormat;

impl NativeFormat {
    /// The format's name.
    pub const NAME: &'static str = "native";
}

impl Format for NativeFormat {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn description(&self) -> &'static str {
        "dbfsck native page files (DBFP): header page, per-page crc32/xxh3-64 checksum bound to \
         file id and page number, torn-write trailer LSN, misdirected, zeroed and partial pages; \
         page journals (DBFJ): header and committed batches"
    }

    fn detect_file(&self, probe: &Probe<'_>) -> bool {
        let head = probe.head;
        let header_magic = head.get(layout::MAGIC_OFF..layout::MAGIC_OFF + 4)
            == Some(&layout::PAGE_MAGIC[..])
            && page::le_u16(head, layout::TYPE_OFF) == Some(PageType::HEADER);
        header_magic || looks_like_pages(head) || journal::looks_like_journal(head)
    }

    fn open(&self, _path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let len = source.len();
        if len == 0 {
            let f = Finding::new(
                FindingKind::Truncated,
                0,
                0,
                "the file is empty; a page file always holds its header page",
            );
            return Ok(Opened {
                findings: vec![f],
                check: None,
                units: 0,
                recheck_after: None,
                notes: Vec::new(),
            });
        }
        // The engine usually has the head already: borrow it rather than read it again.
        let want = len.min(Probe::HEAD_LEN as u64) as usize;
        let head: Cow<'_, [u8]> = match source.cached_head().get(..want) {
            Some(cached) => Cow::Borrowed(cached),
            None => {
                let mut buf = vec![0u8; want];
                let n = source.read_full_at(0, &mut buf)?;
                buf.truncate(n);
                Cow::Owned(buf)
            }
        };
        if journal::looks_like_journal(&head) {
            return Ok(open_journal(source));
        }

        let mut findings = Vec::new();
        let mut units = 0;
        // The identity the pages themselves vote for: a header that verifies but belongs to
        // another file (copied over this one's) is the damage, not the pages it disowns.
        let identity = header::identify(source, &head)?;
        let params = match (identity.header, identity.params, identity.outvoted) {
            (Ok(h), Some(p), None) if h == p => {
                units = 1;
                p
            }
            (Ok(h), Some(p), Some((theirs, ours))) => {
                units = 1;
                findings.push(
                    Finding::new(
                        FindingKind::MisdirectedWrite,
                        0,
                        len.min(h.page_size as u64),
                        format!(
                            "a valid header page of another file (file id 0x{:016x}, {}-byte {} pages): {theirs} of the pages sampled verify as file id 0x{:016x} ({}-byte {} pages), {ours} as the header's; the file is judged by its pages",
                            h.file_id, h.page_size, h.algo, p.file_id, p.page_size, p.algo
                        ),
                    )
                    .unit(0),
                );
                p
            }
            (Ok(h), _, _) => {
                units = 1;
                h
            }
            (Err(err), recovered, _) => {
                let ps = recovered.map_or(layout::MIN_PAGE_SIZE as u64, |p| p.page_size as u64);
                let (kind, length) = match err {
                    // The file ends inside its header page: all of it is the partial page.
                    HeaderError::TooShort { .. } | HeaderError::PartialHeaderPage { .. } => {
                        (FindingKind::PartialPage, len)
                    }
                    _ => (FindingKind::BadHeader, len.min(ps)),
                };
                let mut f = match &err {
                    HeaderError::ChecksumMismatch { stored, computed } => Finding::new(
                        kind,
                        0,
                        length,
                        "the header page checksum does not match its bytes",
                    )
                    .checksums(stored.clone(), computed.clone()),
                    _ => Finding::new(kind, 0, length, err.to_string()),
                }
                .unit(0);
                match recovered {
                    Some(p) => {
                        f.detail.push_str(&format!(
                            "; page size {} and {} recovered from the pages that follow",
                            p.page_size, p.algo
                        ));
                        findings.push(f);
                        p
                    }
                    None => {
                        if len > length {
                            f.detail.push_str(&format!(
                                "; the other {} of the file could not be checked",
                                crate::bytes(len - length)
                            ));
                        }
                        findings.push(f);
                        return Ok(Opened {
                            findings,
                            check: None,
                            units,
                            recheck_after: None,
                            notes: Vec::new(),
                        });
                    }
                }
            }
        };
        let ps = params.page_size as u64;
        let whole = len / ps;
        let rest = len % ps;
        if rest != 0 && whole > 0 {
            findings.push(
                Finding::new(
                    FindingKind::PartialPage,
                    whole * ps,
                    rest,
                    format!(
                        "the file ends {} into page {whole} ({ps}-byte pages)",
                        crate::bytes(rest)
                    ),
                )
                .unit(whole),
            );
        }
        let layout = Layout {
            start: ps.min(whole * ps),
            end: whole * ps,
            align: ps,
        };
        Ok(Opened {
            findings,
            check: Some(Box::new(NativeCheck { params, layout })),
            units,
            recheck_after: None,
            notes: Vec::new(),
        })
    }
}

/// A journal is checked whole while it is opened: its header, then each record's checksum up to
/// the last committed batch. A torn or uncommitted tail is what a crash leaves, not damage, so it
/// is not a finding; the committed images count as units.
fn open_journal(source: &dyn FileSource) -> Opened {
    let len = source.len();
    let (findings, units) = match journal::read_journal(source) {
        Ok(index) => (Vec::new(), index.images.len() as u64),
        Err(e) => {
            let length = len.min(journal::JOURNAL_HEADER_LEN as u64);
            let kind = match e {
                journal::JournalError::TooShort { .. } => FindingKind::Truncated,
                journal::JournalError::Io(_) => FindingKind::IoError,
                _ => FindingKind::BadHeader,
            };
            let mut f = Finding::new(kind, 0, length, e.to_string());
            if len > length {
                f.detail.push_str(&format!(
                    "; the journal's other {} bytes cannot be used",
                    len - length
                ));
            }
            (vec![f], 0)
        }
    };
    Opened {
        findings,
        check: None,
        units,
        recheck_after: None,
        notes: Vec::new(),
    }
}

/// Verifies the pages after the header page.
struct NativeCheck {
    params: FileParams,
    layout: Layout,
}

impl NativeCheck {
    fn owner(&self) -> Owner {
        let mut o = Owner::new();
        o.insert(
            "file_id".into(),
            format!("0x{:016x}", self.params.file_id).into(),
        );
        o
    }
}

impl UnitCheck for NativeCheck {
    fn layout(&self) -> Layout {
        self.layout
    }

    fn describe(&self, chunk: &Chunk<'_>) -> Vec<(String, String)> {
        describe_page(chunk.bytes, &self.params)
    }

    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let ps = self.params.page_size;
        let first = chunk.offset / ps as u64;
        let mut n = 0;
        for (i, page) in chunk.bytes.chunks_exact(ps).enumerate() {
            let page_no = first + i as u64;
            let offset = page_no * ps as u64;
            n += 1;
            if let Some(f) = verdict_finding(verify_page(page, &self.params, page_no), &self.params)
            {
                out.push(f.unit(page_no).owner(self.owner()).at(offset, ps as u64));
            }
        }
        n
    }
}

/// The fields of a native page, decoded for people: header, trailer LSN, stored and computed
/// checksum.
pub fn describe_page(page: &[u8], params: &FileParams) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let ps = page.len();
    let mut add = |k: &str, v: String| out.push((k.to_owned(), v));
    if let Some(magic) = page.get(..4) {
        add(
            "magic",
            String::from_utf8_lossy(magic).escape_debug().to_string(),
        );
    }
    if let Some(m) = decode_meta(page) {
        let name = match PageType::from_code(m.page_type) {
            Some(PageType::Header) => "header",
            Some(PageType::Free) => "free",
            Some(PageType::Quarantined) => "quarantined",
            Some(PageType::App(_)) => "application",
            None => "reserved",
        };
        add("page_type", format!("0x{:04x} ({name})", m.page_type));
        add("flags", format!("0x{:04x}", m.flags));
        add("file_id", format!("0x{:016x}", m.file_id));
        add("page_no", m.page_no.to_string());
        add("lsn (header)", m.lsn.to_string());
    }
    if ps >= layout::PAGE_HEADER_LEN + layout::PAGE_TRAILER_LEN {
        if let Some(t) = page::le_u64(page, layout::trailer_lsn_off(ps)) {
            add("lsn (trailer)", t.to_string());
        }
        let off = layout::checksum_off(ps);
        if let (Some(stored), Some(covered)) = (page::le_u64(page, off), page.get(..off)) {
            add("checksum (stored)", params.algo.hex(stored));
            add(
                "checksum (computed)",
                params.algo.hex(params.algo.compute(covered)),
            );
        }
    }
    out
}

/// The finding for a page verdict, or `None` when the page is fine. Offset and length are set by
/// the caller.
pub fn verdict_finding(verdict: PageVerdict, params: &FileParams) -> Option<Finding> {
    let algo = params.algo;
    let f = |kind, detail: String| Finding::new(kind, 0, 0, detail);
    Some(match verdict {
        PageVerdict::Ok { .. } => return None,
        PageVerdict::Quarantined { lsn } => f(
            FindingKind::Quarantined,
            format!("a quarantine marker (LSN {lsn}): this page's data was cut out by a repair"),
        ),
        PageVerdict::Zeroed => f(FindingKind::ZeroedPage, "every byte of the page is zero".into()),
        PageVerdict::ChecksumMismatch { stored, computed, cause } => {
            let detail = match cause {
                MismatchCause::Unknown => "stored checksum does not match the page bytes",
                MismatchCause::HeaderLsn => {
                    "stored checksum does not match; the header LSN field alone is damaged"
                }
                MismatchCause::TrailerLsn => {
                    "stored checksum does not match; the trailer LSN copy alone is damaged"
                }
            };
            f(FindingKind::ChecksumMismatch, detail.into())
                .checksums(algo.hex(stored), algo.hex(computed))
        }
        PageVerdict::Torn { stored, computed, header_lsn, trailer_lsn } => f(
            FindingKind::TornWrite,
            format!(
                "header LSN {header_lsn} and trailer LSN {trailer_lsn} disagree: the page mixes two writes"
            ),
        )
        .checksums(algo.hex(stored), algo.hex(computed)),
        PageVerdict::Misdirected { file_id, page_no } => {
            let whose = if file_id == params.file_id {
                format!("page {page_no} of this file")
            } else {
                format!("page {page_no} of another file (file id 0x{file_id:016x})")
            };
            f(FindingKind::MisdirectedWrite, format!("a valid page that belongs to {whose}"))
        }
        PageVerdict::Invalid { reason } => f(FindingKind::BadHeader, reason),
    })
}

impl Finding {
    /// Sets offset and length (used where the range is known only after the verdict).
    #[must_use]
    pub(crate) fn at(mut self, offset: u64, length: u64) -> Self {
        self.offset = offset;
        self.length = length;
        self
    }
}
