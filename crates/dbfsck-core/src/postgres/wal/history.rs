//! Timeline history files (`TTTTTTTT.history`) and backup history files (`….backup`), parsed the
//! way the server reads them (`formats-pgwal.md` §5.1, §5.4).

use crate::finding::{Finding, FindingKind};

/// A timeline's ancestry: each parent and the LSN where its child began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// `(parent timeline, switch point)`, oldest first.
    pub entries: Vec<(u32, u64)>,
}

/// Parses `X/Y`.
pub(crate) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some(u64::from(hi) << 32 | u64::from(lo))
}

/// Parses a history file of timeline `tli`: lines `<parent>\t<switch point>\t<reason>`, `#`
/// comments and blank lines ignored; parents must increase and stay below `tli`, switch points
/// must not go back. A line that breaks this is a `bad_header` finding at its offset.
pub(crate) fn parse_history(bytes: &[u8], tli: u32) -> (History, Vec<Finding>) {
    let mut h = History::default();
    let mut findings = Vec::new();
    let mut offset = 0u64;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let at = offset;
        offset += line.len() as u64;
        let text = String::from_utf8_lossy(line);
        let t = text.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut fields = t.split_whitespace();
        let parent = fields.next().and_then(|f| f.parse::<u32>().ok());
        let switch = fields.next().and_then(parse_lsn);
        let bad = |why: String| Finding::new(FindingKind::BadHeader, at, line.len() as u64, why);
        match (parent, switch) {
            (Some(p), Some(lsn)) => {
                if p >= tli {
                    findings.push(bad(format!(
                        "timeline history of timeline {tli}: parent timeline {p} is not below it"
                    )));
                } else if let Some(&(lp, llsn)) = h.entries.last() {
                    if p <= lp || lsn < llsn {
                        findings.push(bad(format!(
                            "timeline history of timeline {tli}: entry {p} at {} does not follow {lp} at {}",
                            super::Lsn(lsn),
                            super::Lsn(llsn)
                        )));
                    } else {
                        h.entries.push((p, lsn));
                    }
                } else {
                    h.entries.push((p, lsn));
                }
            }
            _ => findings.push(bad(format!(
                "timeline history of timeline {tli}: a line that is not \"<parent timeline>\\t<switch LSN>\\t<reason>\""
            ))),
        }
    }
    if h.entries.is_empty() && findings.is_empty() {
        findings.push(Finding::new(
            FindingKind::Truncated,
            0,
            bytes.len() as u64,
            format!("timeline history of timeline {tli} lists no parent timeline"),
        ));
    }
    (h, findings)
}

/// What a backup history file (`<segment>.<offset>.backup`, archived at the end of each base
/// backup) says: the WAL a restore of that backup replays before it is consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackupFile {
    /// The file.
    pub path: std::path::PathBuf,
    /// `START WAL LOCATION`: where the restore's replay begins.
    pub start: u64,
    /// `STOP WAL LOCATION`: where the restored cluster becomes consistent.
    pub stop: u64,
    /// The timeline the backup began on (`START TIMELINE`, else the file's name).
    pub timeline: u32,
    /// `LABEL`, as written.
    pub label: String,
}

/// Reads a backup history file's fields, when it is sound (see [`check_backup_file`]);
/// `name_tli`: the timeline in the file's name.
pub(crate) fn read_backup_file(
    path: &std::path::Path,
    bytes: &[u8],
    name_tli: u32,
) -> Option<BackupFile> {
    let text = String::from_utf8_lossy(bytes);
    let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key));
    let lsn = |key: &str| {
        value(key)
            .and_then(|v| v.split_whitespace().next())
            .and_then(parse_lsn)
    };
    Some(BackupFile {
        path: path.to_path_buf(),
        start: lsn("START WAL LOCATION: ")?,
        stop: lsn("STOP WAL LOCATION: ")?,
        timeline: value("START TIMELINE: ")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(name_tli),
        label: value("LABEL: ").unwrap_or_default().to_owned(),
    })
}

/// Checks a backup history file: its `START WAL LOCATION`, `STOP WAL LOCATION` and
/// `CHECKPOINT LOCATION` lines parse, the start agrees with the offset in the file's name, and
/// start ≤ checkpoint ≤ stop.
pub(crate) fn check_backup_file(bytes: &[u8], name_offset: u32) -> Vec<Finding> {
    let text = String::from_utf8_lossy(bytes);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(parse_lsn)
    };
    let start = field("START WAL LOCATION: ");
    let stop = field("STOP WAL LOCATION: ");
    let checkpoint = field("CHECKPOINT LOCATION: ");
    let bad = |why: String| {
        vec![Finding::new(
            FindingKind::BadHeader,
            0,
            bytes.len() as u64,
            why,
        )]
    };
    let (Some(start), Some(stop), Some(checkpoint)) = (start, stop, checkpoint) else {
        return bad(
            "backup history file: START WAL LOCATION, STOP WAL LOCATION or CHECKPOINT LOCATION is missing or unreadable".into(),
        );
    };
    // The name's offset is the start LSN's offset in its segment: whatever the segment size
    // (1 MiB at least), their low 20 bits agree.
    if start % (1 << 20) != u64::from(name_offset % (1 << 20)) {
        return bad(format!(
            "backup history file: START WAL LOCATION {} disagrees with the offset {name_offset:08X} in the file's name",
            super::Lsn(start)
        ));
    }
    if !(start <= checkpoint && checkpoint <= stop) {
        return bad(format!(
            "backup history file: start {}, checkpoint {} and stop {} are out of order",
            super::Lsn(start),
            super::Lsn(checkpoint),
            super::Lsn(stop)
        ));
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_parses_and_rejects() {
        let (h, f) = parse_history(b"1\t0/B000000\tno recovery target specified\n", 2);
        assert!(f.is_empty());
        assert_eq!(h.entries, vec![(1, 0xB000000)]);
        let (h, f) = parse_history(
            b"# comment\n1\t0/7000100\treached consistency\n\n2\t0/9000000\tx\n",
            3,
        );
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(h.entries, vec![(1, 0x7000100), (2, 0x9000000)]);
        let (_, f) = parse_history(b"3\t0/7000100\tx\n", 2);
        assert_eq!(f.len(), 1);
        let (_, f) = parse_history(b"1\tgarbage\n", 2);
        assert_eq!(f.len(), 1);
        let (_, f) = parse_history(b"", 2);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn backup_file_checks() {
        let ok = b"START WAL LOCATION: 0/7000028 (file 000000010000000000000007)\nSTOP WAL LOCATION: 0/7000100 (file 000000010000000000000007)\nCHECKPOINT LOCATION: 0/7000060\n";
        assert!(check_backup_file(ok, 0x28).is_empty());
        let b = read_backup_file(std::path::Path::new("x"), ok, 3).unwrap();
        assert_eq!((b.start, b.stop, b.timeline), (0x7000028, 0x7000100, 3));
        let with_tli = b"START WAL LOCATION: 0/7000028 (file 000000010000000000000007)\nSTOP WAL LOCATION: 0/7000100 (file 000000010000000000000007)\nSTART TIMELINE: 2\nLABEL: nightly\n";
        let b = read_backup_file(std::path::Path::new("x"), with_tli, 3).unwrap();
        assert_eq!((b.timeline, b.label.as_str()), (2, "nightly"));
        assert_eq!(check_backup_file(ok, 0x30).len(), 1);
        assert_eq!(
            check_backup_file(b"START WAL LOCATION: 0/7000028\n", 0x28).len(),
            1
        );
    }
}
