//! `global/pg_control`: the cluster's block size, segment size and checksum setting, protected
//! by its own CRC-32C (`formats.md` §1.1).

/// Offsets in PostgreSQL 15's `ControlFileData` (pg_control_version 1300; also PG 16).
const VERSION_OFF: usize = 8;
const CATALOG_VERSION_OFF: usize = 12;
const STATE_OFF: usize = 16;
const BLCKSZ_OFF: usize = 216;
const RELSEG_OFF: usize = 220;
const CHECKSUM_VERSION_OFF: usize = 252;
/// Where PG 15's CRC sits; other majors are found by searching for the CRC by its definition
/// (the CRC-32C of every byte before it).
const PG15_CRC_OFF: usize = 288;

/// What dbfsck needs from `pg_control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// `pg_control_version` (1300 for PostgreSQL 15 and 16).
    pub version: u32,
    /// `catalog_version_no`: the `YYYYMMDDN` in a tablespace's `PG_<major>_<catversion>` folder.
    pub catalog_version: u32,
    /// Block size in bytes (`BLCKSZ`).
    pub blcksz: u32,
    /// Blocks per segment file (`RELSEG_SIZE`).
    pub relseg_size: u32,
    /// 0 when data checksums are disabled.
    pub data_checksum_version: u32,
    /// The cluster's state (`DBState`): 1 shut down, 2 shut down in recovery, 6 in
    /// production (also what a crashed cluster says)…
    pub state: u32,
    /// The WAL fields (PostgreSQL 13–16 layout, `pg_control_version` 1300); `None` for other
    /// layouts, whose offsets differ.
    pub wal: Option<ControlWal>,
    /// Where the CRC was found, and whether it matched.
    pub crc: ControlCrc,
}

/// The outcome of checking pg_control's own CRC-32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlCrc {
    /// The CRC at this offset matches the bytes before it.
    Ok(usize),
    /// No offset holds a matching CRC; at PG 15's offset the stored and computed values differ.
    Mismatch {
        /// The CRC stored at PG 15's offset.
        stored: u32,
        /// The CRC-32C of the bytes before it.
        computed: u32,
    },
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Parses `pg_control`; `None` when the file is too short to hold the fields.
pub fn parse_control(bytes: &[u8]) -> Option<Control> {
    let crc_at = |off: usize| {
        let covered = bytes.get(..off)?;
        (crc32c::crc32c(covered) == u32_at(bytes, off)?).then_some(off)
    };
    let crc = match crc_at(PG15_CRC_OFF).or_else(|| (16..=1024).step_by(4).find_map(crc_at)) {
        Some(off) => ControlCrc::Ok(off),
        None => ControlCrc::Mismatch {
            stored: u32_at(bytes, PG15_CRC_OFF)?,
            computed: crc32c::crc32c(bytes.get(..PG15_CRC_OFF)?),
        },
    };
    Some(Control {
        version: u32_at(bytes, VERSION_OFF)?,
        catalog_version: u32_at(bytes, CATALOG_VERSION_OFF)?,
        blcksz: u32_at(bytes, BLCKSZ_OFF)?,
        relseg_size: u32_at(bytes, RELSEG_OFF)?,
        data_checksum_version: u32_at(bytes, CHECKSUM_VERSION_OFF)?,
        state: u32_at(bytes, STATE_OFF)?,
        wal: (u32_at(bytes, VERSION_OFF)? == 1300)
            .then(|| ControlWal::parse(bytes))
            .flatten(),
        crc,
    })
}

/// What pg_control says about the WAL (`src/include/catalog/pg_control.h`, PostgreSQL 13–16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlWal {
    /// `system_identifier`: every WAL segment's long header carries it.
    pub system_id: u64,
    /// `checkPoint`: the start LSN of the latest checkpoint record.
    pub checkpoint: u64,
    /// `checkPointCopy.redo`: where crash recovery starts replaying.
    pub redo: u64,
    /// `checkPointCopy.ThisTimeLineID`.
    pub timeline: u32,
    /// `minRecoveryPoint`: WAL a recovering server must reach before it is consistent (0: none).
    pub min_recovery_point: u64,
    /// `xlog_blcksz`: the WAL page size.
    pub wal_page_size: u32,
    /// `xlog_seg_size`: `wal_segment_size`.
    pub wal_segment_size: u32,
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

impl ControlWal {
    fn parse(b: &[u8]) -> Option<ControlWal> {
        Some(ControlWal {
            system_id: u64_at(b, 0)?,
            checkpoint: u64_at(b, 32)?,
            redo: u64_at(b, 40)?,
            timeline: u32_at(b, 48)?,
            min_recovery_point: u64_at(b, 136)?,
            wal_page_size: u32_at(b, 224)?,
            wal_segment_size: u32_at(b, 228)?,
        })
    }
}

impl Control {
    /// Whether the cluster was shut down cleanly (`DB_SHUTDOWNED`, `DB_SHUTDOWNED_IN_RECOVERY`):
    /// otherwise the next start runs crash recovery.
    pub fn shut_down_cleanly(&self) -> bool {
        matches!(self.state, 1 | 2)
    }

    /// Whether block and segment sizes are ones PostgreSQL can be built with.
    pub fn sizes_plausible(&self) -> bool {
        self.blcksz.is_power_of_two()
            && (1024..=32768).contains(&self.blcksz)
            && self.relseg_size > 0
    }
}
