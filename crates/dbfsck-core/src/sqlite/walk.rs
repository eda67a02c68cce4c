//! The whole-file rules (`checkTreePage()`'s recursion, `checkList()`, `checkPtrmap()`,
//! `sqlite3BtreeIntegrityCheck()` in `src/btree.c`): every page used exactly once — by a
//! b-tree reached from `sqlite_schema`, an overflow chain, the freelist, a pointer map or the
//! lock-byte page — overflow chain lengths, the freelist count, pointer-map contents, and each
//! damaged page named by its table or index. It runs over the per-page pass's summaries (8
//! bytes a page, the pointers of b-tree pages), reading only freelist trunks, pointer maps and
//! the schema's own pages again.

use super::page::{self, be16, be32, Edge, Fail, OVERFLOW};
use super::{Db, Source, CHECKED, CKSUM_BAD, FAILED, HDR_BAD, ZERO};
use crate::finding::{Finding, FindingKind, Owner};
use crate::format::Chunk;

/// What the walk concluded about one database.
pub(super) struct Outcome {
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
    pub units: u64,
}

const NONE: u8 = 0;
const TREE: u8 = 1;
const OVF_FIRST: u8 = 2;
const OVF_NEXT: u8 = 3;
const FREE_TRUNK: u8 = 4;
const FREE_LEAF: u8 = 5;
const PTRMAP: u8 = 6;
const LOCK: u8 = 7;

/// A table or index named in `sqlite_schema`.
#[derive(Debug, Clone)]
struct Object {
    kind: String,
    name: String,
    table: String,
    root: u32,
}

/// What a b-tree walk carries from its root.
struct TreeCtx {
    obj: u32,
    /// The root is an index page (else a table page).
    index_tree: bool,
    /// The root has a b-tree page type at all (else no page of the tree is judged by type).
    typed: bool,
}

/// One b-tree page being walked: the pointers still to follow, popped from the end.
struct Frame {
    pg: u32,
    /// The cell whose child is being walked (`u16::MAX`: the right-most child).
    cell: u16,
    items: Vec<Edge>,
    /// The height of the subtrees walked so far (`checkTreePage()`'s `depth`).
    depth: Option<u32>,
}

struct Walk<'a> {
    db: &'a Db,
    edges: Vec<Edge>,
    role: Vec<u8>,
    owner: Vec<u32>,
    parent: Vec<u32>,
    objects: Vec<Object>,
    findings: Vec<Finding>,
    /// B-tree pages whose per-page rules fail, with their object.
    failed: Vec<u32>,
}

pub(super) fn conclude(db: &Db, complete: bool) -> Outcome {
    let geo = db.geo;
    let n = geo.pages;
    let mut edges = std::mem::take(&mut *db.edges.lock().unwrap_or_else(|e| e.into_inner()));
    let mut units = 0;
    // Pages only the WAL holds (the database grew since the last checkpoint).
    for pgno in db.file_pages.saturating_add(1)..=n {
        if db.source(pgno).is_some() {
            db.check_page(pgno, None, &mut edges);
            units += 1;
        }
    }
    let mut healed = std::mem::take(&mut *db.healed.lock().unwrap_or_else(|e| e.into_inner()));
    // One finding a page (a page can fail its checksum and its rules).
    healed.sort_by_key(|h| h.0);
    healed.dedup_by_key(|h| h.0);
    let mut warnings: Vec<String> = Vec::new();
    let unchecked = (1..=n.min(db.file_pages))
        .filter(|&p| db.slot(p) & CHECKED == 0)
        .count();
    let mut w = Walk {
        db,
        edges,
        role: vec![NONE; n as usize + 1],
        owner: vec![u32::MAX; n as usize + 1],
        parent: vec![0; n as usize + 1],
        objects: vec![Object {
            kind: "table".into(),
            name: "sqlite_schema".into(),
            table: "sqlite_schema".into(),
            root: 1,
        }],
        findings: Vec::new(),
        failed: Vec::new(),
    };
    if !complete || unchecked > 0 {
        warnings.push(format!("the whole-file checks (page ownership, overflow chains, freelist, pointer maps) need every page, and {unchecked} page(s) were not verified in this run: not run"));
        w.cksum_findings();
        w.superseded(&healed);
        return Outcome {
            findings: w.findings,
            warnings,
            units,
        };
    }
    w.edges.sort_unstable();
    if n >= geo.lock_page() {
        w.set(geo.lock_page(), LOCK, u32::MAX, 0);
    }
    if geo.auto_vacuum {
        for p in 2..=n {
            if geo.is_ptrmap(p) {
                w.set(p, PTRMAP, u32::MAX, 0);
                if db.slot(p) & FAILED != 0 {
                    w.failed.push(p);
                }
            }
        }
    }
    if n >= 1 {
        w.tree(0);
        w.read_schema();
        let mut order: Vec<usize> = (1..w.objects.len()).collect();
        order.sort_by_key(|&i| w.objects.get(i).map_or(0, |o| o.root));
        for i in order {
            w.tree(i);
        }
        w.freelist();
        if geo.auto_vacuum {
            w.ptrmaps();
        }
        w.header_roots();
        w.orphans();
        w.report_failed();
    }
    w.cksum_findings();
    w.superseded(&healed);
    Outcome {
        findings: w.findings,
        warnings,
        units,
    }
}

fn role_name(role: u8, ty: u8) -> &'static str {
    match (role, ty) {
        (TREE, 2) => "index_interior",
        (TREE, 5) => "table_interior",
        (TREE, 10) => "index_leaf",
        (TREE, 13) => "table_leaf",
        (TREE, _) => "b-tree",
        (OVF_FIRST | OVF_NEXT, _) => "overflow",
        (FREE_TRUNK, _) => "freelist_trunk",
        (FREE_LEAF, _) => "freelist_leaf",
        (PTRMAP, _) => "pointer_map",
        (LOCK, _) => "lock_byte",
        _ => "unused",
    }
}

impl Walk<'_> {
    fn p(&self) -> u64 {
        u64::from(self.db.geo.page_size)
    }

    fn finding(&self, kind: FindingKind, pg: u32, detail: String) -> Finding {
        Finding::new(kind, (u64::from(pg) - 1) * self.p(), self.p(), detail)
            .unit(u64::from(pg))
            .owner(self.owner_of(pg))
    }

    fn owner_of(&self, pg: u32) -> Owner {
        let mut o = Owner::new();
        o.insert("page".into(), pg.into());
        let role = self.role.get(pg as usize).copied().unwrap_or(NONE);
        let ty = (self.db.slot(pg) & 0xff) as u8;
        o.insert("page_role".into(), role_name(role, ty).into());
        if let Some(obj) = self
            .owner
            .get(pg as usize)
            .and_then(|&i| self.objects.get(i as usize))
        {
            o.insert("object".into(), obj.name.clone().into());
            o.insert("object_type".into(), obj.kind.clone().into());
            o.insert("table".into(), obj.table.clone().into());
            o.insert("root".into(), obj.root.into());
        }
        o
    }

    fn object_name(&self, pg: u32) -> String {
        self.owner
            .get(pg as usize)
            .and_then(|&i| self.objects.get(i as usize))
            .map_or_else(
                || match self.role.get(pg as usize).copied().unwrap_or(NONE) {
                    FREE_TRUNK | FREE_LEAF => "the freelist".to_owned(),
                    PTRMAP => "the pointer map".to_owned(),
                    LOCK => "the lock-byte page".to_owned(),
                    _ => "nothing".to_owned(),
                },
                |o| format!("{} {}", o.kind, o.name),
            )
    }

    /// Claims page `pg` for `role` of object `obj`, reached from `from`; a page already
    /// claimed is a double reference.
    fn claim(&mut self, pg: u32, from: u32, role: u8, obj: u32) -> bool {
        let Some(&prev) = self.role.get(pg as usize) else {
            return false;
        };
        if prev != NONE {
            let by = if from == 0 {
                "the database header".to_owned()
            } else {
                format!("page {from} ({})", self.object_name(from))
            };
            let detail = format!(
                "2nd reference to page {pg}: {by} points at it, but it is already in use ({} page of {})",
                role_name(prev, (self.db.slot(pg) & 0xff) as u8).replace('_', " "),
                self.object_name(pg)
            );
            let f = self.finding(FindingKind::DoubleReference, pg, detail);
            self.findings.push(f);
            return false;
        }
        self.set(pg, role, obj, from);
        true
    }

    fn role_of(&self, pg: u32) -> u8 {
        self.role.get(pg as usize).copied().unwrap_or(NONE)
    }

    /// Records page `pg` as used for `role` of object `obj` (`u32::MAX`: none), reached from
    /// page `from`.
    fn set(&mut self, pg: u32, role: u8, obj: u32, from: u32) {
        let i = pg as usize;
        if let (Some(r), Some(o), Some(p)) = (
            self.role.get_mut(i),
            self.owner.get_mut(i),
            self.parent.get_mut(i),
        ) {
            (*r, *o, *p) = (role, obj, from);
        }
    }

    /// Database-file pages that fail while SQLite reads them from a committed WAL frame or the
    /// hot journal: `superseded_page`, naming the image (what `--repair` restores them from).
    fn superseded(&mut self, healed: &[(u32, String, Source)]) {
        for (pg, why, src) in healed {
            let mut owner = self.owner_of(*pg);
            let (from, by, log) = match *src {
                Source::Wal(frame) => {
                    owner.insert("source".into(), "wal".into());
                    owner.insert("frame".into(), frame.into());
                    (format!("committed WAL frame {frame}"), "checkpoint", "WAL")
                }
                Source::Journal(at) => {
                    owner.insert("source".into(), "journal".into());
                    owner.insert("journal_offset".into(), at.into());
                    (
                        format!("the hot journal's original image (at byte {at} of the journal)"),
                        "rollback",
                        "journal",
                    )
                }
            };
            let detail = format!("page {pg} in the database file fails ({why}), but SQLite reads it from {from}: the next {by} overwrites it, so nothing is lost while the {log} survives; a copy of the database file without its {log} would be damaged");
            let f = Finding::new(
                FindingKind::SupersededPage,
                (u64::from(*pg) - 1) * self.p(),
                self.p(),
                detail,
            )
            .unit(u64::from(*pg))
            .owner(owner);
            self.findings.push(f);
        }
    }

    fn edges_from(&self, pg: u32) -> &[Edge] {
        let lo = self.edges.partition_point(|e| e.from < pg);
        let hi = self.edges.partition_point(|e| e.from <= pg);
        self.edges.get(lo..hi).unwrap_or_default()
    }

    /// Walks the b-tree of object `i` from its root, in `checkTreePage()`'s order (right-most
    /// child first, then the cells from last to first, each cell's overflow chain before its
    /// child), so that a page reached twice is reported where SQLite reports it and subtree
    /// depths compare as SQLite compares them. An explicit stack keeps a hostile tree's depth
    /// off the thread's stack.
    fn tree(&mut self, i: usize) {
        let Some(o) = self.objects.get(i) else {
            return;
        };
        let (root, is_index, name) = (o.root, o.kind == "index", o.name.clone());
        let n = self.db.geo.pages;
        if root == 0 || root > n || (root != 1 && !self.db.geo.pointable(root)) {
            return;
        }
        let obj = i as u32;
        let root_ty = (self.db.slot(root) & 0xff) as u8;
        if is_index && matches!(root_ty, 5 | 13) {
            let f = self.finding(
                FindingKind::BadStructure,
                root,
                format!("the root page of index {name} is a table b-tree page"),
            );
            self.findings.push(f);
        }
        let t = TreeCtx {
            obj,
            index_tree: matches!(root_ty, 2 | 10),
            typed: page::is_btree_type(root_ty),
        };
        let mut stack: Vec<Frame> = Vec::new();
        // The height of the subtree just finished, for the frame below it.
        let mut done = self.enter(root, 0, &t, &mut stack);
        while let Some(top) = stack.last_mut() {
            if let Some(h) = done.take() {
                match top.depth {
                    Some(d) if d != h => {
                        let (pg, cell) = (top.pg, top.cell);
                        top.depth = Some(h);
                        let what = if cell == u16::MAX {
                            "right-most child".to_owned()
                        } else {
                            format!("cell {cell}")
                        };
                        let f = self.finding(
                            FindingKind::BadStructure,
                            pg,
                            format!("{what}: child page depth differs (its subtree is {h} level(s) deep, the ones before it {d})"),
                        );
                        self.findings.push(f);
                    }
                    _ => top.depth = Some(h),
                }
                continue;
            }
            let Some(e) = top.items.pop() else {
                done = Some(top.depth.map_or(0, |d| d + 1));
                stack.pop();
                continue;
            };
            if e.kind == OVERFLOW {
                self.chain(&e, obj);
            } else {
                top.cell = e.cell;
                done = self.enter(e.to, e.from, &t, &mut stack);
            }
        }
    }

    /// Visits b-tree page `pg`, reached from `from` (0: the root), as `checkTreePage()` does
    /// on entry: claims it and checks its type; returns its height when it has no children
    /// to visit (a page already used, out of range or unreadable counts 0, as a leaf does),
    /// else pushes its frame.
    fn enter(&mut self, pg: u32, from: u32, t: &TreeCtx, stack: &mut Vec<Frame>) -> Option<u32> {
        if from != 0 && (!self.db.geo.pointable(pg) || pg == from) {
            return Some(0);
        }
        if !self.claim(pg, from, TREE, t.obj) {
            return Some(0);
        }
        let slot = self.db.slot(pg);
        let ty = (slot & 0xff) as u8;
        if slot & FAILED != 0 {
            self.failed.push(pg);
        }
        if page::is_btree_type(ty) && matches!(ty, 2 | 10) != t.index_tree && t.typed {
            let f = self.finding(
                FindingKind::BadStructure,
                pg,
                format!(
                    "a {} page inside the {} b-tree of {}",
                    if t.index_tree { "table" } else { "index" },
                    if t.index_tree { "index" } else { "table" },
                    self.object_name(pg)
                ),
            );
            self.findings.push(f);
        }
        if slot & HDR_BAD != 0 {
            return Some(0);
        }
        // Sorted by (cell, kind): popping from the end yields the right-most child first,
        // then each cell from last to first with its overflow chain before its child.
        let items: Vec<Edge> = self.edges_from(pg).to_vec();
        stack.push(Frame {
            pg,
            cell: 0,
            items,
            depth: None,
        });
        None
    }

    /// Follows the overflow chain edge `e` names.
    fn chain(&mut self, e: &Edge, obj: u32) {
        let mut pg = e.to;
        let mut prev = e.from;
        for k in 0..e.count {
            if pg == 0 || !self.db.geo.pointable(pg) {
                let what = if pg == 0 {
                    format!("overflow list length is {k} but should be {}", e.count)
                } else {
                    format!("its overflow chain names page {pg}, outside 2..={} (after {k} of {} pages)", self.db.geo.pages, e.count)
                };
                let f = self.finding(
                    FindingKind::BadStructure,
                    e.from,
                    format!("cell {}: {what}", e.cell),
                );
                self.findings.push(f);
                return;
            }
            let role = if k == 0 { OVF_FIRST } else { OVF_NEXT };
            if !self.claim(pg, prev, role, obj) {
                return;
            }
            prev = pg;
            pg = (self.db.slot(pg) >> 32) as u32;
        }
    }

    /// Reads `sqlite_schema`'s rows from the pages its walk claimed.
    fn read_schema(&mut self) {
        let leaves: Vec<u32> = (1..=self.db.geo.pages)
            .filter(|&p| self.owner.get(p as usize) == Some(&0) && self.role_of(p) == TREE)
            .filter(|&p| self.db.slot(p) & 0xff == 13 && self.db.slot(p) & FAILED == 0)
            .collect();
        let encoding = be32(&self.db.header, 56);
        let mut rows = Vec::new();
        for pg in leaves {
            let Ok(b) = self.db.read_page(pg) else {
                continue;
            };
            let hdr = page::header_at(pg);
            for i in 0..be16(&b, hdr + 3) as usize {
                let pc = be16(&b, hdr + 8 + 2 * i) as usize;
                let Some(c) = page::parse_cell(&b, pc, 13, &self.db.geo) else {
                    continue;
                };
                let payload = self.payload(&b, &c);
                match decode_row(&payload, encoding) {
                    Some(o) => rows.push((pg, o)),
                    None => {
                        let f = self.finding(FindingKind::BadStructure, pg, format!("cell {i}: this sqlite_schema row does not parse as a record (SQLite: \"malformed database schema\")"));
                        self.findings.push(f);
                    }
                }
            }
        }
        let mut roots = std::collections::HashSet::new();
        for (pg, o) in rows {
            if o.root == 0 {
                continue;
            }
            if o.root == 1 || o.root > self.db.geo.pages || !roots.insert(o.root) {
                let f = self.finding(FindingKind::BadStructure, pg, format!("{} {} names root page {}: outside 2..={} or another object's root (SQLite: \"malformed database schema ({}) - invalid rootpage\")", o.kind, o.name, o.root, self.db.geo.pages, o.name));
                self.findings.push(f);
                continue;
            }
            self.objects.push(o);
        }
    }

    /// A cell's whole payload (at most 1 MiB: a schema row's SQL), its overflow followed.
    fn payload(&self, b: &[u8], c: &page::Cell) -> Vec<u8> {
        let mut out = b
            .get(c.payload_at..c.payload_at + c.local as usize)
            .unwrap_or_default()
            .to_vec();
        let want = (c.payload as usize).min(1 << 20);
        let mut next = c.overflow.unwrap_or(0);
        let u = self.db.geo.usable as usize;
        let mut hops = 0;
        while next != 0 && out.len() < want && hops <= self.db.geo.pages {
            let Ok(o) = self.db.read_page(next) else {
                break;
            };
            let take = (want - out.len()).min(u - 4);
            out.extend_from_slice(o.get(4..4 + take).unwrap_or_default());
            next = be32(&o, 0);
            hops += 1;
        }
        out
    }

    fn freelist(&mut self) {
        let h = self.db.header;
        let expected = i64::from(be32(&h, 36));
        let mut left = expected;
        let mut trunk = be32(&h, 32);
        let mut prev = 0;
        let errs = self.findings.len();
        let u = self.db.geo.usable;
        while trunk != 0 {
            if !self.db.geo.pointable(trunk) {
                let f = self.finding(
                    FindingKind::BadStructure,
                    prev.max(1),
                    format!(
                        "the freelist names trunk page {trunk}, outside 2..={}",
                        self.db.geo.pages
                    ),
                );
                self.findings.push(f);
                break;
            }
            if !self.claim(trunk, prev, FREE_TRUNK, u32::MAX) {
                break;
            }
            left -= 1;
            let Ok(b) = self.db.read_page(trunk) else {
                break;
            };
            let leaves = be32(&b, 4);
            if leaves > u / 4 - 2 {
                let f = self.finding(
                    FindingKind::BadStructure,
                    trunk,
                    format!(
                        "freelist leaf count too big: {leaves}, at most {}",
                        u / 4 - 2
                    ),
                );
                self.findings.push(f);
            } else {
                for i in 0..leaves {
                    let leaf = be32(&b, 8 + 4 * i as usize);
                    if !self.db.geo.pointable(leaf) {
                        let f = self.finding(
                            FindingKind::BadStructure,
                            trunk,
                            format!(
                                "freelist leaf {i} names page {leaf}, outside 2..={}",
                                self.db.geo.pages
                            ),
                        );
                        self.findings.push(f);
                        continue;
                    }
                    self.claim(leaf, trunk, FREE_LEAF, u32::MAX);
                }
                left -= i64::from(leaves);
            }
            prev = trunk;
            trunk = be32(&b, 0);
        }
        if left != 0 && self.findings.len() == errs {
            self.findings.push(
                Finding::new(FindingKind::BadHeader, 36, 4, format!("the header counts {expected} freelist pages, the freelist holds {} (integrity_check: \"freelist size is {} but should be {expected}\")", expected - left, expected - left))
                    .unit(1),
            );
        }
    }

    /// Pointer-map entries against the parent relation the walk found.
    fn ptrmaps(&mut self) {
        let geo = self.db.geo;
        let mut cur: Option<(u32, Vec<u8>)> = None;
        let mut bad: std::collections::BTreeMap<u32, (String, u32)> = Default::default();
        for pg in 3..=geo.pages {
            let role = self.role_of(pg);
            let parent = self.parent.get(pg as usize).copied().unwrap_or(0);
            let want = match role {
                TREE if parent == 0 => (1, 0),
                TREE => (5, parent),
                OVF_FIRST => (3, parent),
                OVF_NEXT => (4, parent),
                FREE_TRUNK | FREE_LEAF => (2, 0),
                _ => continue,
            };
            let map = geo.ptrmap_page_of(pg);
            if cur.as_ref().is_none_or(|c| c.0 != map) {
                let Ok(b) = self.db.read_page(map) else {
                    continue;
                };
                cur = Some((map, b));
            }
            let Some((_, b)) = &cur else { continue };
            let at = 5 * (pg - map - 1) as usize;
            let got = (b.get(at).copied().unwrap_or(0), be32(b, at + 1));
            if got != want {
                let e = bad.entry(map).or_insert_with(|| {
                    (
                        format!(
                            "bad pointer-map entry for page {pg}: expected ({}, {}), got ({}, {})",
                            want.0, want.1, got.0, got.1
                        ),
                        0,
                    )
                });
                e.1 += 1;
            }
        }
        for (map, (first, count)) in bad {
            let more = if count > 1 {
                format!(" ({} more entries of this page are wrong)", count - 1)
            } else {
                String::new()
            };
            let f = self.finding(FindingKind::BadStructure, map, format!("{first}{more}"));
            self.findings.push(f);
        }
    }

    fn header_roots(&mut self) {
        let h = self.db.header;
        let largest = be32(&h, 52);
        let incremental = be32(&h, 64);
        if largest == 0 && incremental != 0 {
            self.findings.push(Finding::new(FindingKind::BadHeader, 64, 4, "incremental_vacuum is enabled with a largest root page of zero (integrity_check: \"incremental_vacuum enabled with a max rootpage of zero\")").unit(1));
        }
        if largest != 0 {
            let max = self.objects.iter().map(|o| o.root).max().unwrap_or(1);
            if max != largest {
                self.findings.push(Finding::new(FindingKind::BadHeader, 52, 4, format!("the header's largest root page is {largest}, the schema's is {max} (integrity_check: \"max rootpage disagrees with header\")")).unit(1));
            }
        }
    }

    fn orphans(&mut self) {
        let db = self.db;
        for pg in 2..=db.geo.pages {
            if self.role_of(pg) != NONE {
                continue;
            }
            if pg > db.file_pages && db.source(pg).is_none() {
                continue;
            }
            let f = Finding::new(FindingKind::OrphanPage, (u64::from(pg) - 1) * self.p(), self.p(), "page never used: no b-tree, overflow chain, freelist or pointer map reaches it (integrity_check: \"Page N is never used\"); SQLite cannot read what it holds").unit(u64::from(pg));
            self.findings.push(f);
        }
    }

    fn report_failed(&mut self) {
        let mut failed = std::mem::take(&mut self.failed);
        failed.sort_unstable();
        failed.dedup();
        for pg in failed {
            let slot = self.db.slot(pg);
            let from = match self.db.source(pg) {
                Some(Source::Wal(f)) => format!(" (as SQLite reads it, from WAL frame {f})"),
                Some(Source::Journal(_)) => " (as the hot journal's rollback leaves it)".into(),
                None => String::new(),
            };
            let f = if slot & ZERO != 0 {
                self.finding(
                    FindingKind::ZeroedPage,
                    pg,
                    format!(
                        "page is all zero where a {} page of {} belongs{from}",
                        role_name(self.role_of(pg), 0).replace('_', " "),
                        self.object_name(pg)
                    ),
                )
            } else {
                let fail = self
                    .db
                    .read_page(pg)
                    .ok()
                    .and_then(|b| judge(self.db, pg, &b).err());
                let detail = fail.map_or_else(
                    || {
                        "the page failed its rules during the scan and verifies now: it changed"
                            .to_owned()
                    },
                    |f| f.detail(),
                );
                self.finding(FindingKind::BadStructure, pg, format!("{detail}{from}"))
            };
            self.findings.push(f);
        }
    }

    fn cksum_findings(&mut self) {
        let mut bad = self
            .db
            .cksum_bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        bad.sort_unstable();
        for (pg, stored, computed) in bad {
            let hex = |b: [u8; 8]| {
                format!(
                    "0x{}",
                    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                )
            };
            let mut f = self.finding(FindingKind::ChecksumMismatch, pg, "the page's cksumvfs checksum fails: SQLite with cksumvfs refuses to read it (SQLITE_IOERR_DATA)".into()).checksums(hex(stored), hex(computed));
            if self.role.is_empty() {
                f.owner = None;
            }
            self.findings.push(f);
        }
        let _ = CKSUM_BAD;
    }
}

/// Judges one page as the per-page pass does (for its detail and for `inspect`).
fn judge(db: &Db, pg: u32, b: &[u8]) -> Result<(), Fail> {
    let geo = &db.geo;
    if pg == geo.lock_page() {
        Ok(())
    } else if geo.is_ptrmap(pg) {
        page::check_ptrmap(b, pg, geo)
    } else {
        page::check_btree(b, pg, geo, &mut Vec::new())
    }
}

/// One page judged alone, as `dbfsck inspect` shows it: its cksumvfs checksum and the rules it
/// obeys by itself (a page that is not a b-tree page — overflow, freelist — fails those only if
/// the walk says it is one, which `inspect` does not run).
pub(super) fn alone(db: &Db, pg: u32, file_page: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    let p = u64::from(db.geo.page_size);
    let at = |kind, detail: String| {
        Finding::new(kind, (u64::from(pg) - 1) * p, p, detail).unit(u64::from(pg))
    };
    if db.geo.cksum && pg != db.geo.lock_page() {
        if let Some((s, c)) = page::cksumvfs(file_page).filter(|(s, c)| s != c) {
            let hex = |b: [u8; 8]| {
                format!(
                    "0x{}",
                    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                )
            };
            out.push(
                at(
                    FindingKind::ChecksumMismatch,
                    "the page's cksumvfs checksum fails".into(),
                )
                .checksums(hex(s), hex(c)),
            );
        }
    }
    let b = db.read_page(pg).unwrap_or_else(|_| file_page.to_vec());
    let ty = b.get(page::header_at(pg)).copied().unwrap_or(0);
    if page::is_btree_type(ty) || db.geo.is_ptrmap(pg) {
        if let Err(f) = judge(db, pg, &b) {
            out.push(at(FindingKind::BadStructure, f.detail()));
        }
    }
    out
}

/// A `sqlite_schema` row: type, name, tbl_name, rootpage (FF §2.6).
fn decode_row(rec: &[u8], encoding: u32) -> Option<Object> {
    let (hsize, mut at) = page::varint(rec, 0)?;
    let mut types = Vec::new();
    while (at as u64) < hsize && types.len() < 5 {
        let (t, n) = page::varint(rec, at)?;
        types.push(t);
        at += n;
    }
    let mut body = hsize as usize;
    let mut cols: Vec<&[u8]> = Vec::new();
    let mut ints: Vec<i64> = Vec::new();
    for &t in &types {
        let len = match t {
            0 | 8 | 9 => 0,
            1..=4 => t as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return None,
            t => ((t - 12) / 2) as usize,
        };
        let v = rec.get(body..body.checked_add(len)?)?;
        let int = match t {
            1..=6 => v.iter().fold(
                if v.first().is_some_and(|b| b & 0x80 != 0) {
                    -1i64
                } else {
                    0
                },
                |a, &b| (a << 8) | i64::from(b),
            ),
            9 => 1,
            _ => 0,
        };
        cols.push(v);
        ints.push(int);
        body += len;
    }
    let text = |i: usize| -> String {
        let b = cols.get(i).copied().unwrap_or_default();
        match encoding {
            2 | 3 => {
                let units: Vec<u16> = b
                    .chunks_exact(2)
                    .map(|c| {
                        let c: [u8; 2] = c.try_into().unwrap_or([0; 2]);
                        if encoding == 2 {
                            u16::from_le_bytes(c)
                        } else {
                            u16::from_be_bytes(c)
                        }
                    })
                    .collect();
                String::from_utf16_lossy(&units)
            }
            _ => String::from_utf8_lossy(b).into_owned(),
        }
    };
    if types.len() < 4 {
        return None;
    }
    let root = ints.get(3).copied().unwrap_or(0);
    Some(Object {
        kind: text(0),
        name: text(1),
        table: text(2),
        root: u32::try_from(root).unwrap_or(u32::MAX),
    })
}

/// `dbfsck inspect` on one page: its b-tree header, its first cells, its verdict.
pub(super) fn describe(db: &Db, chunk: &Chunk<'_>) -> Vec<(String, String)> {
    let geo = &db.geo;
    let pg = (chunk.offset / u64::from(geo.page_size)) as u32 + 1;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| out.push((k.to_owned(), v));
    put("page", pg.to_string());
    let (b, from) = match db.source(pg) {
        Some(s) => (
            db.read_source(s).unwrap_or_default(),
            match s {
                Source::Wal(f) => {
                    format!("WAL frame {f} (committed; the database file's copy is stale)")
                }
                Source::Journal(o) => {
                    format!("the hot journal, offset {o} (the rollback's original)")
                }
            },
        ),
        None => (chunk.bytes.to_vec(), "the database file".into()),
    };
    put("read from", from);
    if pg == geo.lock_page() {
        put(
            "role",
            "lock-byte page (never read or written by SQLite)".into(),
        );
        return out;
    }
    if geo.is_ptrmap(pg) {
        put("role", "pointer-map page".into());
    }
    let hdr = page::header_at(pg);
    let ty = b.get(hdr).copied().unwrap_or(0);
    put(
        "page type",
        format!(
            "{ty} ({})",
            match ty {
                2 => "index interior",
                5 => "table interior",
                10 => "index leaf",
                13 => "table leaf",
                _ => "not a b-tree page: overflow, freelist, or damaged",
            }
        ),
    );
    if page::is_btree_type(ty) {
        put("first freeblock", be16(&b, hdr + 1).to_string());
        let k = be16(&b, hdr + 3);
        put("cells", k.to_string());
        put("cell content area", be16(&b, hdr + 5).to_string());
        put(
            "fragmented bytes",
            b.get(hdr + 7).copied().unwrap_or(0).to_string(),
        );
        let hsize = if ty & 8 == 0 {
            put("right-most child", be32(&b, hdr + 8).to_string());
            12
        } else {
            8
        };
        for i in 0..(k as usize).min(8) {
            let pc = be16(&b, hdr + hsize + 2 * i) as usize;
            let v = match page::parse_cell(&b, pc, ty, geo) {
                Some(c) => {
                    let mut s = format!("offset {pc}, {} bytes", c.size);
                    if let Some(ch) = c.child {
                        s.push_str(&format!(", left child {ch}"));
                    }
                    if let Some(r) = c.rowid {
                        s.push_str(&format!(", rowid {r}"));
                    }
                    if c.payload > 0 {
                        s.push_str(&format!(", payload {} ({} local)", c.payload, c.local));
                    }
                    if let Some(o) = c.overflow {
                        s.push_str(&format!(", overflow page {o}"));
                    }
                    s
                }
                None => format!("offset {pc}: does not parse"),
            };
            put(&format!("cell {i}"), v);
        }
    } else {
        put(
            "first word (next overflow / trunk page)",
            be32(&b, 0).to_string(),
        );
    }
    if geo.cksum {
        if let Some((s, c)) = page::cksumvfs(chunk.bytes) {
            let hex = |b: [u8; 8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            put("cksumvfs stored", hex(s));
            put("cksumvfs computed", hex(c));
        }
    }
    out
}
