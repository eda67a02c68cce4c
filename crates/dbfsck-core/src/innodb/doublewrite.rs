//! The doublewrite buffer (`docs/innodb.md` §6): two blocks of pages in the system
//! tablespace, each slot a verbatim image of a page recently written to its own tablespace.
//! The server writes and syncs the slots before it writes the pages in place, so after a torn
//! write the slot holds a whole copy.

use super::page::{be32, be64, fil, SpaceFormat};
use crate::format::FileSource;

/// `TRX_SYS_DOUBLEWRITE_MAGIC_N`.
pub const MAGIC: u32 = 536_853_855;
/// The TRX_SYS page of the system tablespace, which holds the doublewrite header.
pub const TRX_SYS_PAGE: u64 = 5;
/// Offset of the header from the end of the TRX_SYS page (`TRX_SYS_DOUBLEWRITE`).
const FROM_END: usize = 200;

/// Where the doublewrite blocks are (page numbers in the system tablespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doublewrite {
    /// First page of block 1.
    pub block1: u32,
    /// First page of block 2.
    pub block2: u32,
    /// Pages per block (`FSP_EXTENT_SIZE`).
    pub block_size: u32,
}

impl Doublewrite {
    /// Whether page `page_no` of the system tablespace is a doublewrite slot.
    pub fn contains(&self, page_no: u64) -> bool {
        let in_block =
            |b: u32| (u64::from(b)..u64::from(b) + u64::from(self.block_size)).contains(&page_no);
        in_block(self.block1) || in_block(self.block2)
    }

    /// Every slot's page number, block 1 then block 2.
    pub fn slots(&self) -> impl Iterator<Item = u64> + '_ {
        let b = |start: u32| u64::from(start)..u64::from(start) + u64::from(self.block_size);
        b(self.block1).chain(b(self.block2))
    }
}

/// Pages per extent (`FSP_EXTENT_SIZE`): 1 MiB of pages up to 16 KiB pages, 64 pages above.
pub fn extent_pages(page_size: usize) -> u32 {
    if page_size <= 16384 {
        (1_048_576 / page_size.max(1)) as u32
    } else {
        64
    }
}

/// Reads the doublewrite header from the TRX_SYS page, if the buffer was ever created.
pub fn parse_header(trx_sys: &[u8]) -> Option<Doublewrite> {
    let h = trx_sys.len().checked_sub(FROM_END)?;
    let page_size = trx_sys.len();
    if be32(trx_sys, h + 10) != MAGIC {
        return None;
    }
    let (block1, block2) = (be32(trx_sys, h + 14), be32(trx_sys, h + 18));
    let block_size = extent_pages(page_size);
    // Both blocks lie after the TRX_SYS page, apart, and inside a plausible file.
    let plausible = block1 > TRX_SYS_PAGE as u32
        && block2 >= block1.saturating_add(block_size)
        && block2 < 1 << 24;
    plausible.then_some(Doublewrite {
        block1,
        block2,
        block_size,
    })
}

/// One populated slot, as its header describes it (not yet verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The slot's page number in the system tablespace.
    pub slot_page: u64,
    /// Byte offset of the image in the system tablespace's first file.
    pub offset: u64,
    /// The space id the image says it belongs to.
    pub space_id: u32,
    /// The page number the image says it is.
    pub page_no: u32,
    /// The image's LSN.
    pub lsn: u64,
}

/// The populated slots of a system tablespace file (`ibdata1`) with `page_size`-byte pages:
/// reads the TRX_SYS page and every slot through `source`. A slot's image is as long as its
/// target tablespace's physical page, which starts the slot; an all-zero slot is empty.
/// Returns `Ok(None)` when there is no doublewrite buffer.
pub fn read_slots(
    source: &dyn FileSource,
    page_size: usize,
) -> std::io::Result<Option<(Doublewrite, Vec<Slot>)>> {
    let ps = page_size as u64;
    let mut page = vec![0u8; page_size];
    if source.read_full_at(TRX_SYS_PAGE * ps, &mut page)? < page_size {
        return Ok(None);
    }
    let Some(dw) = parse_header(&page) else {
        return Ok(None);
    };
    let mut slots = Vec::new();
    for slot_page in dw.slots() {
        let offset = slot_page * ps;
        if source.read_full_at(offset, &mut page)? < page_size {
            break;
        }
        if page.iter().all(|&b| b == 0) {
            continue;
        }
        slots.push(Slot {
            slot_page,
            offset,
            space_id: be32(&page, fil::SPACE_ID),
            page_no: be32(&page, fil::PAGE_NO),
            lsn: be64(&page, fil::LSN),
        });
    }
    Ok(Some((dw, slots)))
}

/// The bytes of a slot's image for a tablespace of format `fmt` (its physical page size).
pub fn slot_image<'a>(slot_bytes: &'a [u8], fmt: &SpaceFormat) -> Option<&'a [u8]> {
    slot_bytes.get(..fmt.physical_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut p = vec![0u8; 16384];
        let h = 16384 - 200;
        p[h + 10..h + 14].copy_from_slice(&MAGIC.to_be_bytes());
        p[h + 14..h + 18].copy_from_slice(&64u32.to_be_bytes());
        p[h + 18..h + 22].copy_from_slice(&128u32.to_be_bytes());
        let dw = parse_header(&p).unwrap();
        assert_eq!((dw.block1, dw.block2, dw.block_size), (64, 128, 64));
        assert!(dw.contains(64) && dw.contains(191) && !dw.contains(63) && !dw.contains(192));
        assert_eq!(dw.slots().count(), 128);
        // Overlapping blocks, a block before TRX_SYS, no magic: no doublewrite buffer.
        p[h + 18..h + 22].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(parse_header(&p), None);
        p[h + 10] = 0;
        assert_eq!(parse_header(&p), None);
        assert_eq!(parse_header(&[0u8; 10]), None);
    }

    #[test]
    fn extent_sizes() {
        assert_eq!(extent_pages(4096), 256);
        assert_eq!(extent_pages(8192), 128);
        assert_eq!(extent_pages(16384), 64);
        assert_eq!(extent_pages(65536), 64);
    }
}
