//! One SQLite page judged alone: the b-tree page rules of `btreeInitPage()`,
//! `btreeComputeFreeSpace()` and the single-page part of `checkTreePage()` (`src/btree.c`),
//! pointer-map entries, and cksumvfs trailers (`docs/sqlite.md` §3.1).

/// Reads a big-endian u16 at `at`; 0 when the bytes are not there (callers bound-check first).
pub(crate) fn be16(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, |a| u32::from(u16::from_be_bytes(a)))
}

/// Reads a big-endian u32 at `at`; 0 when the bytes are not there.
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// SQLite's varint (1–9 bytes, big-endian 7-bit groups, the ninth byte whole) at `at`:
/// the value and its length, or `None` when it runs past `b`.
pub(crate) fn varint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(at + i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(byte), 9));
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// What a database's header fixes for every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Page size P.
    pub page_size: u32,
    /// Usable size U = P − reserved bytes.
    pub usable: u32,
    /// Pages in the database (its logical size, WAL and journal applied).
    pub pages: u32,
    /// auto_vacuum or incremental_vacuum: pointer-map pages exist.
    pub auto_vacuum: bool,
    /// cksumvfs trailers on every page.
    pub cksum: bool,
}

/// The first byte of the lock-byte page (`PENDING_BYTE`).
pub(crate) const PENDING_BYTE: u64 = 0x4000_0000;

impl Geometry {
    /// The lock-byte page: the page holding file offset 2³⁰ (never written by SQLite).
    pub(crate) fn lock_page(&self) -> u32 {
        (PENDING_BYTE / u64::from(self.page_size)) as u32 + 1
    }

    /// The pointer-map page that holds page `n`'s entry (`ptrmapPageno()`).
    pub(crate) fn ptrmap_page_of(&self, n: u32) -> u32 {
        if n < 2 {
            return 0;
        }
        let per = self.usable / 5 + 1;
        let mut ret = (n - 2) / per * per + 2;
        if ret == self.lock_page() {
            ret += 1;
        }
        ret
    }

    /// Whether page `n` is a pointer-map page.
    pub(crate) fn is_ptrmap(&self, n: u32) -> bool {
        self.auto_vacuum && n >= 2 && self.ptrmap_page_of(n) == n
    }

    /// Whether `n` may be a b-tree or overflow page that a pointer names: in 2..=N, neither
    /// the lock-byte page nor a pointer-map page.
    pub(crate) fn pointable(&self, n: u32) -> bool {
        n >= 2 && n <= self.pages && n != self.lock_page() && !self.is_ptrmap(n)
    }

    fn max_local(&self, intkey_leaf: bool) -> u32 {
        if intkey_leaf {
            self.usable - 35
        } else {
            (self.usable - 12) * 64 / 255 - 23
        }
    }

    fn min_local(&self) -> u32 {
        (self.usable - 12) * 32 / 255 - 23
    }

    /// The bytes of a `payload`-byte payload kept on the b-tree page (L, `docs/sqlite.md` §3.1).
    pub(crate) fn local(&self, payload: u32, intkey_leaf: bool) -> u32 {
        let max = self.max_local(intkey_leaf);
        if payload <= max {
            return payload;
        }
        let min = self.min_local();
        let surplus = min + (payload - min) % (self.usable - 4);
        if surplus <= max {
            surplus
        } else {
            min
        }
    }

    /// Overflow pages a cell of `payload` bytes keeping `local` on its page needs.
    pub(crate) fn overflow_pages(&self, payload: u32, local: u32) -> u32 {
        ((u64::from(payload - local) + u64::from(self.usable) - 5) / u64::from(self.usable - 4))
            as u32
    }
}

/// A pointer a b-tree page holds: to a child page, or to the first page of an overflow chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Edge {
    /// The page holding the pointer.
    pub from: u32,
    /// The cell holding it, in cell-pointer order; `u16::MAX` for the right-most child.
    pub cell: u16,
    /// 0: a child b-tree page; 1: an overflow chain's first page.
    pub kind: u8,
    /// The page pointed at.
    pub to: u32,
    /// For an overflow chain, how many pages it must have.
    pub count: u32,
}

/// Edge kinds.
pub(crate) const CHILD: u8 = 0;
/// Edge kinds.
pub(crate) const OVERFLOW: u8 = 1;

/// Why a page fails: the rule, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    /// The cell (in cell-pointer order) the rule failed on, when it is about one.
    pub cell: Option<u32>,
    /// What is wrong, in words.
    pub what: String,
    /// The page header itself is unusable (SQLite's `btreeInitPage()` or free-space check
    /// fails): the page's pointers are not followed.
    pub header: bool,
}

impl Fail {
    fn page(what: String) -> Fail {
        Fail {
            cell: None,
            what,
            header: true,
        }
    }

    fn cell(i: usize, what: String) -> Fail {
        Fail {
            cell: Some(i as u32),
            what,
            header: false,
        }
    }

    /// The finding's detail.
    pub(crate) fn detail(&self) -> String {
        match self.cell {
            Some(c) => format!("cell {c}: {}", self.what),
            None => self.what.clone(),
        }
    }
}

/// The b-tree page types (`decodeFlags()`).
pub(crate) fn is_btree_type(t: u8) -> bool {
    matches!(t, 2 | 5 | 10 | 13)
}

/// The b-tree header's offset on page `pgno` (page 1 starts with the 100-byte file header).
pub(crate) fn header_at(pgno: u32) -> usize {
    if pgno == 1 {
        100
    } else {
        0
    }
}

/// One parsed cell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    /// Offset on the page.
    pub pc: usize,
    /// Bytes on the page (SQLite's `nSize`, at least 4).
    pub size: usize,
    /// Left child (interior pages).
    pub child: Option<u32>,
    /// Rowid (table pages).
    pub rowid: Option<i64>,
    /// Payload size (leaf and index cells).
    pub payload: u32,
    /// Payload bytes kept on the page.
    pub local: u32,
    /// Offset of the payload on the page.
    pub payload_at: usize,
    /// First overflow page, when the payload spills.
    pub overflow: Option<u32>,
}

/// Parses the cell at `pc` of a page of type `ty` (`btreeParseCellPtr*()`); `None` when its
/// varints run past the page.
pub(crate) fn parse_cell(p: &[u8], pc: usize, ty: u8, geo: &Geometry) -> Option<Cell> {
    let leaf = ty & 8 != 0;
    let intkey = ty & 1 != 0;
    let mut at = pc;
    let mut child = None;
    if !leaf {
        child = Some(be32(p, at));
        if p.len() < at + 4 {
            return None;
        }
        at += 4;
    }
    if intkey && !leaf {
        let (key, n) = varint(p, at)?;
        return Some(Cell {
            pc,
            size: 4 + n,
            child,
            rowid: Some(key as i64),
            payload: 0,
            local: 0,
            payload_at: at + n,
            overflow: None,
        });
    }
    let (payload, n) = varint(p, at)?;
    // SQLite keeps the payload size as a u32 (`nPayload`).
    let payload = payload as u32;
    at += n;
    let mut rowid = None;
    if intkey {
        let (key, n) = varint(p, at)?;
        rowid = Some(key as i64);
        at += n;
    }
    let local = geo.local(payload, intkey);
    let mut size = at - pc + local as usize;
    let mut overflow = None;
    if local < payload {
        overflow = Some(be32(p, at + local as usize));
        size += 4;
    }
    Some(Cell {
        pc,
        size: size.max(4),
        child,
        rowid,
        payload,
        local,
        payload_at: at,
        overflow,
    })
}

/// Checks a record whose payload is wholly on the page: its header parses, names no
/// reserved serial type (10, 11), and header plus content fill the payload exactly (FF §2.1).
fn record_ok(rec: &[u8]) -> Result<(), String> {
    let (hsize, n) = varint(rec, 0).ok_or("the record header's size runs past the payload")?;
    if hsize > rec.len() as u64 || hsize < n as u64 {
        return Err(format!(
            "the record header claims {hsize} bytes of a {}-byte payload",
            rec.len()
        ));
    }
    let mut at = n;
    let mut body: u64 = 0;
    while (at as u64) < hsize {
        let (t, n) = varint(rec, at).ok_or("a serial type runs past the record header")?;
        at += n;
        // Saturating: a hostile serial type claims up to 2⁶³ bytes.
        body = body.saturating_add(match t {
            0 | 8 | 9 => 0,
            1..=4 => t,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return Err(format!("serial type {t} is reserved")),
            t => (t - 12) / 2,
        });
    }
    if at as u64 != hsize || hsize.saturating_add(body) != rec.len() as u64 {
        return Err(format!(
            "the record's header and content take {} bytes, its payload is {}",
            hsize.saturating_add(body),
            rec.len()
        ));
    }
    Ok(())
}

/// One thread's buffers for [`check_btree`] (a page's freeblocks and byte ranges), reused from
/// page to page: a scan judges millions of pages, and two allocations each showed in profiles.
#[derive(Default)]
struct Scratch {
    free: Vec<(usize, usize)>,
    ranges: Vec<(usize, usize)>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

impl Scratch {
    fn take() -> Scratch {
        let mut s = SCRATCH.take();
        s.free.clear();
        s.ranges.clear();
        s
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (free, ranges) = (
            std::mem::take(&mut self.free),
            std::mem::take(&mut self.ranges),
        );
        // `try_with`: at thread exit the slot itself is being destroyed (and drops this).
        if free.capacity() + ranges.capacity() > 0 {
            let _ = SCRATCH.try_with(|c| c.set(Scratch { free, ranges }));
        }
    }
}

/// Judges page `pgno` as a b-tree page, pushing its child and overflow pointers to `edges`
/// (none when its header is unusable, as SQLite then follows none).
pub(crate) fn check_btree(
    p: &[u8],
    pgno: u32,
    geo: &Geometry,
    edges: &mut Vec<Edge>,
) -> Result<(), Fail> {
    let u = geo.usable as usize;
    let hdr = header_at(pgno);
    let Some(&ty) = p.get(hdr) else {
        return Err(Fail::page("the page is shorter than its header".into()));
    };
    if !is_btree_type(ty) {
        return Err(Fail::page(format!(
            "page type {ty:#04x} is none of SQLite's b-tree page types (2, 5, 10, 13)"
        )));
    }
    let leaf = ty & 8 != 0;
    let intkey = ty & 1 != 0;
    let hsize = if leaf { 8 } else { 12 };
    let k = be16(p, hdr + 3) as usize;
    let max_cells = (geo.page_size as usize - 8) / 6;
    if k > max_cells {
        return Err(Fail::page(format!(
            "its cell count {k} exceeds the most a page can hold ({max_cells})"
        )));
    }
    let cell_first = hdr + hsize + 2 * k;
    if cell_first > u {
        return Err(Fail::page(format!(
            "its cell pointer array ends at byte {cell_first}, past the usable size {u}"
        )));
    }
    let top = match be16(p, hdr + 5) {
        0 => 65536,
        t => t as usize,
    };
    let frag = usize::from(p.get(hdr + 7).copied().unwrap_or(0));
    // btreeComputeFreeSpace(): the freeblock chain and the free-space total.
    let first_free = be16(p, hdr + 1) as usize;
    let mut nfree = frag + top;
    let mut scratch = Scratch::take();
    let Scratch {
        free: freeblocks,
        ranges,
    } = &mut scratch;
    if first_free > 0 {
        if first_free < top {
            return Err(Fail::page(format!("free space corruption: the first freeblock (at {first_free}) lies before the cell content area (at {top})")));
        }
        let mut pc = first_free;
        let (next, size) = loop {
            if pc > u - 4 {
                return Err(Fail::page(format!(
                    "free space corruption: a freeblock at {pc} lies past the usable size {u}"
                )));
            }
            let next = be16(p, pc) as usize;
            let size = be16(p, pc + 2) as usize;
            nfree += size;
            freeblocks.push((pc, size));
            if next <= pc + size + 3 {
                break (next, size);
            }
            pc = next;
        };
        if next > 0 {
            return Err(Fail::page(format!("free space corruption: the freeblock chain is not in ascending order (a freeblock at {pc} links to {next})")));
        }
        if pc + size > u {
            return Err(Fail::page(format!("free space corruption: the last freeblock (at {pc}, {size} bytes) extends past the usable size {u}")));
        }
    }
    if nfree > u || nfree < cell_first {
        return Err(Fail::page(format!("free space corruption: content start {top}, {frag} fragmented bytes and {} bytes of freeblocks add up to {nfree}, outside {cell_first}..={u}", nfree - frag - top)));
    }
    // checkTreePage(): each cell within the content area and the page, rowids in order, the
    // bytes covered exactly once, pointers in range.
    let mut coverage = true;
    let mut first_fail: Option<Fail> = None;
    let mut fail = |f: Fail| {
        if first_fail.is_none() {
            first_fail = Some(f);
        }
    };
    let mut prev_rowid: Option<i64> = None;
    for i in 0..k {
        let pc = be16(p, hdr + hsize + 2 * i) as usize;
        if pc < top || pc > u - 4 {
            fail(Fail::cell(
                i,
                format!("offset {pc} out of range {top}..{}", u - 4),
            ));
            coverage = false;
            continue;
        }
        let Some(c) = parse_cell(p, pc, ty, geo).filter(|c| c.pc + c.size <= u) else {
            fail(Fail::cell(
                i,
                format!("the cell at {pc} extends off the end of the page"),
            ));
            coverage = false;
            continue;
        };
        ranges.push((pc, pc + c.size - 1));
        if let Some(r) = c.rowid {
            if prev_rowid.is_some_and(|p| r <= p) {
                fail(Fail::cell(i, format!("rowid {r} out of order")));
            }
            prev_rowid = Some(r);
        }
        if let Some(child) = c.child {
            // Kept even when out of range: the walk counts such a child 0 levels deep, as
            // SQLite does when it compares subtree depths.
            edges.push(Edge {
                from: pgno,
                cell: i as u16,
                kind: CHILD,
                to: child,
                count: 0,
            });
            if !geo.pointable(child) || child == pgno {
                fail(Fail::cell(i, pointer_problem("child", child, pgno, geo)));
            }
        }
        if let Some(ov) = c.overflow {
            if geo.pointable(ov) && ov != pgno {
                edges.push(Edge {
                    from: pgno,
                    cell: i as u16,
                    kind: OVERFLOW,
                    to: ov,
                    count: geo.overflow_pages(c.payload, c.local),
                });
            } else {
                fail(Fail::cell(i, pointer_problem("overflow", ov, pgno, geo)));
            }
        } else if !intkey || leaf {
            let rec = p.get(c.payload_at..c.payload_at + c.local as usize);
            if let Err(why) = rec.map_or(Err("the payload runs past the page".into()), record_ok) {
                fail(Fail::cell(i, why));
            }
        }
    }
    if !leaf {
        let right = be32(p, hdr + 8);
        edges.push(Edge {
            from: pgno,
            cell: u16::MAX,
            kind: CHILD,
            to: right,
            count: 0,
        });
        if !geo.pointable(right) || right == pgno {
            fail(Fail {
                cell: None,
                what: pointer_problem("right-most child", right, pgno, geo),
                header: false,
            });
        }
    }
    if coverage {
        ranges.extend(
            freeblocks
                .iter()
                .map(|&(pc, size)| (pc, pc + size.max(1) - 1)),
        );
        ranges.sort_unstable();
        let mut prev = top as i64 - 1;
        let mut nfrag: i64 = 0;
        for &(s, e) in ranges.iter() {
            if prev >= s as i64 {
                fail(Fail {
                    cell: None,
                    what: format!("multiple uses for byte {s} of the page"),
                    header: false,
                });
                coverage = false;
                break;
            }
            nfrag += s as i64 - prev - 1;
            prev = e as i64;
        }
        nfrag += u as i64 - prev - 1;
        if coverage && nfrag != frag as i64 {
            fail(Fail {
                cell: None,
                what: format!("fragmentation of {nfrag} bytes reported as {frag}"),
                header: false,
            });
        }
    }
    match first_fail {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

fn pointer_problem(what: &str, to: u32, pgno: u32, geo: &Geometry) -> String {
    if to == pgno {
        format!("its {what} pointer names the page itself")
    } else if to == geo.lock_page() && to <= geo.pages {
        format!("its {what} pointer names page {to}, the lock-byte page")
    } else if geo.is_ptrmap(to) && to <= geo.pages {
        format!("its {what} pointer names page {to}, a pointer-map page")
    } else {
        format!(
            "its {what} pointer names page {to}, outside 2..={}",
            geo.pages
        )
    }
}

/// Judges pointer-map page `pgno`: every entry for a page of the database has type 1–5,
/// parent 0 for types 1 and 2, a parent within the file (FF §1.8).
pub(crate) fn check_ptrmap(p: &[u8], pgno: u32, geo: &Geometry) -> Result<(), Fail> {
    let per = geo.usable / 5;
    for i in 0..per {
        let n = pgno + 1 + i;
        if n > geo.pages {
            break;
        }
        let at = 5 * i as usize;
        let ty = p.get(at).copied().unwrap_or(0);
        let parent = be32(p, at + 1);
        let bad = match ty {
            1 | 2 => parent != 0,
            3..=5 => parent == 0 || parent > geo.pages,
            _ => true,
        };
        if bad && n != geo.lock_page() {
            return Err(Fail::page(format!(
                "pointer-map entry for page {n} is impossible: type {ty}, parent {parent}"
            )));
        }
    }
    Ok(())
}

/// cksumvfs's checksum of a page (`cksmCompute()`): the WAL recurrence over bytes 0..P−8 as
/// little-endian words, from zero; stored little-endian in the last 8 bytes.
pub(crate) fn cksumvfs(p: &[u8]) -> Option<([u8; 8], [u8; 8])> {
    let body = p.get(..p.len().checked_sub(8)?)?;
    let (s1, s2) = super::wal::sum(body, (0, 0), false);
    let mut computed = [0u8; 8];
    computed[..4].copy_from_slice(&s1.to_le_bytes());
    computed[4..].copy_from_slice(&s2.to_le_bytes());
    let mut stored = [0u8; 8];
    stored.copy_from_slice(p.get(p.len() - 8..)?);
    Some((stored, computed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_whose_serial_types_overflow_is_refused_not_a_panic() {
        // Two serial types of 2⁶³ bytes each, then a header size that covers them.
        let mut rec = vec![19u8];
        for _ in 0..2 {
            rec.extend_from_slice(&[0xff; 9]);
        }
        assert!(record_ok(&rec).is_err());
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x81, 0x00], 0), Some((0x80, 2)));
        assert_eq!(
            varint(&[0x81, 0x91, 0xd1, 0xac, 0x78], 0),
            Some((0x1234_5678, 5))
        );
        assert_eq!(varint(&[0xff; 9], 0), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81], 0), None);
    }

    #[test]
    fn local_payload_vectors() {
        // docs/sqlite.md §11.5 (formats-sqlite.md test vectors).
        let g = Geometry {
            page_size: 4096,
            usable: 4096,
            pages: 100,
            auto_vacuum: false,
            cksum: false,
        };
        assert_eq!(g.local(20004, true), 3636);
        assert_eq!(g.overflow_pages(20004, 3636), 4);
        let g = Geometry {
            page_size: 65536,
            usable: 65536,
            ..g
        };
        assert_eq!(g.local(600_000_006, true), 54546);
        assert_eq!(g.overflow_pages(600_000_006, 54546), 9155);
        assert_eq!(g.lock_page(), 16385);
    }

    #[test]
    fn ptrmap_positions() {
        let g = Geometry {
            page_size: 1024,
            usable: 1024,
            pages: 1000,
            auto_vacuum: true,
            cksum: false,
        };
        assert!(g.is_ptrmap(2) && g.is_ptrmap(207) && g.is_ptrmap(412));
        assert!(!g.is_ptrmap(3) && !g.is_ptrmap(206));
        assert_eq!(g.ptrmap_page_of(5), 2);
    }

    #[test]
    fn cksumvfs_vector() {
        // formats-sqlite.md §11.3: page 2 of a 512-byte cksumvfs database.
        let mut p = vec![0u8; 512];
        p[..16].copy_from_slice(&[
            0x0d, 0, 0, 0, 0x02, 0x01, 0xe5, 0, 0x01, 0xee, 0x01, 0xe5, 0, 0, 0, 0,
        ]);
        p[480..512].copy_from_slice(&[
            0, 0, 0, 0, 0, 0x07, 0x02, 0x03, 0, 0x15, 0x62, 0x65, 0x74, 0x61, 0x08, 0x01, 0x03, 0,
            0x17, 0x61, 0x6c, 0x70, 0x68, 0x61, 0x10, 0xd1, 0xc2, 0xd6, 0xfc, 0x1e, 0x65, 0xd4,
        ]);
        let (stored, computed) = cksumvfs(&p).unwrap();
        assert_eq!(stored, computed);
        let g = Geometry {
            page_size: 512,
            usable: 504,
            pages: 2,
            auto_vacuum: false,
            cksum: true,
        };
        let mut e = Vec::new();
        assert_eq!(check_btree(&p, 2, &g, &mut e), Ok(()));
        p[0x1ee + 3] ^= 1;
        assert_ne!(cksumvfs(&p).unwrap().0, cksumvfs(&p).unwrap().1);
    }
}
