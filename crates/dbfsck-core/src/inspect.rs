//! One unit of one file, looked at closely (`dbfsck inspect FILE --page N`): its header fields,
//! stored and computed checksums, the verdict — judged by exactly the code a scan uses — and its
//! bytes for a hexdump.

use std::path::Path;
use std::sync::Arc;

use crate::access::{open_for_scan, pread_fully, PreadSource};
use crate::finding::Finding;
use crate::format::{Chunk, Format, Probe};

/// What `inspect` found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The format that judged the file.
    pub format: &'static str,
    /// The unit (page) number.
    pub unit: u64,
    /// Its offset in the file.
    pub offset: u64,
    /// Its bytes (fewer at a short end of file).
    pub bytes: Vec<u8>,
    /// Header fields, decoded.
    pub fields: Vec<(String, String)>,
    /// The verdict: what a scan reports for this unit; empty when it verifies.
    pub findings: Vec<Finding>,
}

/// Why a unit could not be inspected. One sentence each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// Opening or reading failed.
    #[error("could not read the file: {0}")]
    Io(#[from] std::io::Error),
    /// No format recognises the file.
    #[error("no known format recognises this file; name one with --format")]
    Unrecognised,
    /// The format found nothing it can check unit by unit (a destroyed header, say).
    #[error("the file has no checkable pages: {0}")]
    NotCheckable(String),
    /// The unit is past the end of the file.
    #[error("page {unit} is past the end of the file ({units} pages)")]
    OutOfRange {
        /// Asked for.
        unit: u64,
        /// Units in the file.
        units: u64,
    },
    /// The format could not open the file.
    #[error("{0}")]
    Open(String),
}

/// Inspects unit `unit` of `path`, with `format` or the first of `formats` that recognises it.
pub fn inspect(
    path: &Path,
    unit: u64,
    formats: &[Arc<dyn Format>],
    format: Option<&Arc<dyn Format>>,
) -> Result<Inspection, InspectError> {
    let file = open_for_scan(path, false)?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; len.min(Probe::HEAD_LEN as u64) as usize];
    let n = pread_fully(&file, 0, &mut head)?;
    head.truncate(n);
    let format = match format {
        Some(f) => f.clone(),
        None => {
            let probe = Probe {
                path,
                len,
                head: &head,
            };
            formats
                .iter()
                .find(|f| f.detect_file(&probe))
                .cloned()
                .ok_or(InspectError::Unrecognised)?
        }
    };
    let opened = format
        .open(
            path,
            &PreadSource {
                file: &file,
                len,
                throttle: None,
            },
        )
        .map_err(|e| InspectError::Open(e.to_string()))?;
    let Some(check) = opened.check else {
        let why = opened
            .findings
            .first()
            .map_or_else(|| "nothing to check".to_owned(), |f| f.detail.clone());
        return Err(InspectError::NotCheckable(why));
    };
    let layout = check.layout();
    if let Some(units) = check.unit_count() {
        // Units of their own sizes (a table's blocks).
        let range = check
            .unit_range(unit)
            .filter(|_| unit < units)
            .ok_or(InspectError::OutOfRange { unit, units })?;
        let mut bytes = vec![0u8; (range.end - range.start) as usize];
        let n = pread_fully(&file, range.start, &mut bytes)?;
        bytes.truncate(n);
        let chunk = Chunk {
            offset: range.start,
            bytes: &bytes,
        };
        let fields = check.describe(&chunk);
        let mut findings = Vec::new();
        check.verify(&chunk, &mut findings);
        for f in &mut findings {
            f.path = path.to_string_lossy().into_owned();
            f.format = format.name().to_owned();
        }
        return Ok(Inspection {
            format: format.name(),
            unit,
            offset: range.start,
            bytes,
            fields,
            findings,
        });
    }
    if let Some(size) = check.inspect_unit().filter(|&s| s > 0) {
        // The range is verified as one chunk (a WAL segment) and shown a smaller unit at a time.
        let units = layout.end.div_ceil(size);
        if unit >= units {
            return Err(InspectError::OutOfRange { unit, units });
        }
        let mut whole = vec![0u8; layout.len() as usize];
        let n = pread_fully(&file, layout.start, &mut whole)?;
        whole.truncate(n);
        let chunk = Chunk {
            offset: layout.start,
            bytes: &whole,
        };
        let fields = check.inspect_in(&chunk, unit);
        let offset = unit.saturating_mul(size);
        let at = offset.saturating_sub(layout.start) as usize;
        let bytes = whole
            .get(at..at.saturating_add(size as usize).min(whole.len()))
            .unwrap_or_default()
            .to_vec();
        return Ok(Inspection {
            format: format.name(),
            unit,
            offset,
            bytes,
            fields,
            findings: Vec::new(),
        });
    }
    let align = layout.align.max(1);
    let units = layout.end.div_ceil(align);
    let offset = unit.saturating_mul(align);
    if unit >= units {
        return Err(InspectError::OutOfRange { unit, units });
    }
    let mut bytes = vec![0u8; align as usize];
    let n = pread_fully(&file, offset, &mut bytes)?;
    bytes.truncate(n);
    let chunk = Chunk {
        offset,
        bytes: &bytes,
    };
    let fields = check.describe(&chunk);
    let mut findings = Vec::new();
    if offset >= layout.start {
        check.verify(&chunk, &mut findings);
    } else {
        // Judged while opening (a header page).
        findings.extend(opened.findings.into_iter().filter(|f| f.unit == Some(unit)));
    }
    for f in &mut findings {
        f.path = path.to_string_lossy().into_owned();
        f.format = format.name().to_owned();
    }
    Ok(Inspection {
        format: format.name(),
        unit,
        offset,
        bytes,
        fields,
        findings,
    })
}
