//! A made-up format verified through dbfsck's own engine, in a few dozen lines.
//!
//! "TOYL" is a record log: 4 KiB blocks; each block holds records `[len u32 LE][payload][crc32 of
//! payload, u32 LE]`, a `len` of 0 ends the block (the rest is padding). Records never straddle a
//! block, so the engine may cut the file at any block: `align` = 4096, units found by parsing.
//!
//! Run: `cargo run -p dbfsck-core --example custom_format`
use std::path::Path;
use std::sync::Arc;

use dbfsck_core::{
    Chunk, FileSource, Finding, FindingKind, Format, Layout, OpenError, Opened, Probe, Scanner,
    UnitCheck,
};

const BLOCK: usize = 4096;
const MAGIC: &[u8; 4] = b"TOYL"; // the first block starts with it, then records

struct ToyLog;

impl Format for ToyLog {
    fn name(&self) -> &'static str {
        "toylog"
    }
    fn description(&self) -> &'static str {
        "toy record log: crc32 per record in 4 KiB blocks"
    }
    fn detect_file(&self, probe: &Probe<'_>) -> bool {
        probe.head.starts_with(MAGIC)
    }
    fn open(&self, _path: &Path, source: &dyn FileSource) -> Result<Opened, OpenError> {
        let end = source.len() - source.len() % BLOCK as u64; // a partial tail block is ignored here
        Ok(Opened {
            findings: vec![],
            check: Some(Box::new(ToyCheck { end })),
            units: 0,
            recheck_after: None,
            notes: Vec::new(),
        })
    }
}

struct ToyCheck {
    end: u64,
}

impl UnitCheck for ToyCheck {
    fn layout(&self) -> Layout {
        Layout {
            start: 0,
            end: self.end,
            align: BLOCK as u64,
        }
    }
    fn verify(&self, chunk: &Chunk<'_>, out: &mut Vec<Finding>) -> u64 {
        let mut records = 0;
        for (b, block) in chunk.bytes.chunks(BLOCK).enumerate() {
            let base = chunk.offset + (b * BLOCK) as u64;
            let mut pos = if base == 0 { MAGIC.len() } else { 0 };
            while let Some(len) = block
                .get(pos..pos + 4)
                .map(|l| u32::from_le_bytes(l.try_into().unwrap()) as usize)
            {
                if len == 0 {
                    break;
                }
                let (Some(payload), Some(stored)) = (
                    block.get(pos + 4..pos + 4 + len),
                    block.get(pos + 4 + len..pos + 8 + len),
                ) else {
                    out.push(Finding::new(
                        FindingKind::Truncated,
                        base + pos as u64,
                        (BLOCK - pos) as u64,
                        "record runs past its block",
                    ));
                    break;
                };
                let (stored, computed) = (
                    u32::from_le_bytes(stored.try_into().unwrap()),
                    crc32fast::hash(payload),
                );
                if stored != computed {
                    out.push(
                        Finding::new(
                            FindingKind::ChecksumMismatch,
                            base + pos as u64,
                            (len + 8) as u64,
                            "record crc32 mismatch",
                        )
                        .unit(records)
                        .checksums(format!("0x{stored:08x}"), format!("0x{computed:08x}")),
                    );
                }
                records += 1;
                pos += len + 8;
            }
        }
        records
    }
}

fn main() {
    // Write a small log: 3 blocks of records, then damage one record.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.toylog");
    let mut bytes = MAGIC.to_vec();
    for i in 0..300u32 {
        let payload = format!("event {i}: something happened").into_bytes();
        if bytes.len() % BLOCK + payload.len() + 12 > BLOCK {
            bytes.resize(bytes.len().next_multiple_of(BLOCK), 0); // pad to the next block
        }
        bytes.extend((payload.len() as u32).to_le_bytes());
        bytes.extend(&payload);
        bytes.extend(crc32fast::hash(&payload).to_le_bytes());
    }
    bytes.resize(bytes.len().next_multiple_of(BLOCK), 0);
    bytes[BLOCK + 100] ^= 1; // rot a bit in the second block
    std::fs::write(&path, &bytes).unwrap();

    let report = Scanner::with_formats(vec![Arc::new(ToyLog)])
        .scan(&[dir.path()])
        .unwrap();
    for f in &report.findings {
        println!("{} @{} {}: {}", f.path, f.offset, f.kind, f.detail);
    }
    println!(
        "{} records in {} bytes verified; exit code {}",
        report.summary.units,
        report.summary.bytes,
        report.exit_code()
    );
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.summary.units, 300);
    assert_eq!(report.exit_code(), 4);
}
