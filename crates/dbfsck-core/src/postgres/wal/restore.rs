//! A restore of a base backup from a WAL archive: where archive recovery from the backup's
//! start would stop (`recovery_target` unset, `recovery_target_timeline = 'latest'`), the last
//! commit it applies, and the first obstacle (`docs/postgres-backups.md` §4).

use std::collections::BTreeSet;
use std::path::Path;

use crate::format::Conclusion;
use crate::report::{RestoreObstacle, RestoreVerdict};

use super::conclude::{self, Replay};
use super::{Lsn, WalDir, WalDirKind};

/// What a restore needs: where replay begins, where the backup becomes consistent, and the
/// timeline the backup was taken on.
#[derive(Debug, Clone)]
pub(crate) struct Need {
    /// The backup directory, or the backup history file naming it.
    pub backup: String,
    /// Its label, when known.
    pub label: Option<String>,
    /// `START WAL LOCATION`.
    pub start: u64,
    /// Where it becomes consistent (manifest's last End-LSN, or `STOP WAL LOCATION`).
    pub end: Option<u64>,
    /// The timeline it was taken on.
    pub timeline: u32,
    /// The cluster's system identifier (its pg_control's), when known: WAL of another cluster
    /// in the archive is not this backup's.
    pub system_id: Option<u64>,
}

/// The newest timeline `recovery_target_timeline = 'latest'` reaches from `from`: PostgreSQL
/// probes the history files of `from + 1`, `from + 2`, … and takes the last one found
/// (findNewestTimeLine).
fn newest_timeline(histories: &std::collections::BTreeMap<u32, super::History>, from: u32) -> u32 {
    let mut t = from;
    while t < u32::MAX && histories.contains_key(&(t + 1)) {
        t += 1;
    }
    t
}

/// Judges the restore of `need` from the segments of `archive` (at `archive_path`), with the
/// backup's own `pg_wal/` (`own`) where the archive lacks a segment — as archive recovery asks
/// `restore_command` first and falls back to `pg_wal/`. `Err`: why no verdict can be given.
pub(crate) fn judge(
    own: Option<&WalDir>,
    archive: &WalDir,
    archive_path: &Path,
    need: &Need,
) -> Result<RestoreVerdict, String> {
    let mut merged = WalDir {
        kind: WalDirKind::Archive,
        listed: archive.listed.clone(),
        segments: archive.segments.clone(),
        histories: archive.histories.clone(),
        backups: Vec::new(),
    };
    if let Some(own) = own {
        let have: BTreeSet<(u32, u64, bool)> = archive
            .segments
            .values()
            .map(|e| (e.tli, e.segno, e.partial))
            .collect();
        for (p, e) in &own.segments {
            if !have.contains(&(e.tli, e.segno, e.partial)) {
                merged.segments.insert(p.clone(), e.clone());
            }
        }
        let unverified = own.listed.iter().filter(|p| !own.segments.contains_key(*p));
        merged.listed.extend(unverified.cloned());
        for (t, h) in &own.histories {
            merged.histories.entry(*t).or_insert_with(|| h.clone());
        }
    }
    // A segment of another cluster (the archives of two clusters mixed, or the wrong archive
    // named) fails PostgreSQL's long-header check when it is read: replay stops at its start.
    if let Some(id) = need.system_id {
        for e in merged.segments.values_mut() {
            let Some(other) = e.summary.system_id.filter(|&s| s != id) else {
                continue;
            };
            e.summary = super::segment::Summary {
                breaks: vec![super::segment::Break {
                    lsn: e.params.start,
                    record: None,
                    record_len: None,
                    written: 0,
                    why: super::segment::Stop::PageHeader(format!(
                        "WAL from another database system: system identifier {other}, the backup's is {id}"
                    )),
                    after: None,
                }],
                system_id: Some(other),
                ..super::segment::Summary::default()
            };
        }
    }
    let target = newest_timeline(&merged.histories, need.timeline);
    let mut verdict = RestoreVerdict {
        format: super::super::PostgresFormat::NAME.into(),
        backup: need.backup.clone(),
        label: need.label.clone(),
        archive: archive_path.to_string_lossy().into_owned(),
        start: Lsn(need.start).to_string(),
        backup_end: need.end.map(|e| Lsn(e).to_string()),
        consistent: false,
        timeline: target,
        reaches: Lsn(need.start).to_string(),
        last_replayed: None,
        reaches_time: None,
        reaches_unix: None,
        reaches_archive_end: false,
        obstacle: None,
        detail: String::new(),
    };
    // The target must descend from the backup's timeline after the backup began, or the
    // server refuses ("requested timeline N is not a child of this server's history").
    if target != need.timeline {
        let branch = merged.histories.get(&target).and_then(|h| {
            h.entries
                .iter()
                .find(|&&(t, _)| t == need.timeline)
                .map(|&(_, switch)| switch)
        });
        if branch.is_none_or(|switch| switch < need.start) {
            verdict.detail = format!(
                "the newest timeline in the archive, {target}, does not branch from timeline {} after the backup's start at {}: the server refuses to restore it (\"requested timeline {target} is not a child of this server's history\")",
                need.timeline,
                Lsn(need.start)
            );
            verdict.obstacle = Some(RestoreObstacle {
                segment: format!("{target:08X}.history"),
                reason: "timeline".into(),
                file: None,
                real: None,
                offset: None,
            });
            return Ok(verdict);
        }
    }
    let mut scratch = Conclusion::default();
    let replay = Replay {
        start: Some(need.start),
        target: Some(target),
    };
    // Its findings are the archive's and the backup's own, reported by their own verdicts.
    let replayed = conclude::conclude_dir(archive_path, &merged, true, None, replay, &mut scratch);
    let (Some(replayed), Some(v)) = (replayed, scratch.recovery.pop()) else {
        return Err(scratch.warnings.pop().map_or_else(
            || "the archive holds no segment of the WAL the backup needs".to_owned(),
            |w| w.1,
        ));
    };
    let reaches = super::history::parse_lsn(&v.stops_at).unwrap_or(need.start);
    verdict.reaches = v.stops_at.clone();
    verdict.last_replayed = v.last_replayed.clone();
    verdict.timeline = replayed.timeline;
    verdict.reaches_time = replayed.last_commit.map(conclude::pg_time);
    // PostgreSQL's epoch is 2000-01-01, 946 684 800 s after Unix's.
    verdict.reaches_unix = replayed
        .last_commit
        .map(|us| us as f64 / 1e6 + 946_684_800.0);
    verdict.consistent = need.end.is_some_and(|e| reaches >= e);
    verdict.reaches_archive_end = replayed.obstacle.is_none() && v.reaches_end;
    // A segment restore_command hands over at the wrong size stops the server (FATAL).
    let wrong_size = replayed.obstacle.as_ref().is_some_and(|o| {
        !o.missing
            && merged.segments.values().any(|e| {
                super::segment_name(e.tli, e.segno, e.params.seg_size) == o.segment
                    && !e.partial
                    && e.size != e.params.seg_size
            })
    });
    if wrong_size {
        verdict.consistent = false;
    }
    verdict.obstacle = replayed.obstacle.map(|o| RestoreObstacle {
        segment: o.segment,
        reason: if o.missing {
            "missing"
        } else if wrong_size {
            "wrong_size"
        } else {
            "damaged"
        }
        .into(),
        file: o.file.as_ref().map(|p| p.to_string_lossy().into_owned()),
        real: o.file,
        offset: o.offset,
    });
    let last = verdict
        .last_replayed
        .as_ref()
        .map_or_else(String::new, |l| format!("last record at {l}, "));
    let upto = match &verdict.reaches_time {
        Some(t) => format!("{} ({last}last commit {t})", verdict.reaches),
        None => format!("{} ({last}no commit replayed)", verdict.reaches),
    };
    let obstacle = match &verdict.obstacle {
        None => "the end of the archived WAL".to_owned(),
        Some(o) if o.reason == "missing" => format!("segment {}, which is missing", o.segment),
        Some(o) => format!(
            "damage in segment {} at offset {}",
            o.segment,
            o.offset.unwrap_or_default()
        ),
    };
    verdict.detail = match (need.end, verdict.consistent) {
        _ if wrong_size => format!(
            "a restore replays from {} to {upto} on timeline {}, then restore_command hands over {obstacle} at the wrong size: PostgreSQL stops with FATAL (\"archive file has wrong size\") and the server does not start; replace or remove that file",
            verdict.start, verdict.timeline
        ),
        (Some(end), false) => format!(
            "a restore replays from {} to {upto} on timeline {} and stops at {obstacle}, before the backup's end at {}: the server refuses to start from it (\"WAL ends before end of online backup\")",
            verdict.start,
            verdict.timeline,
            Lsn(end)
        ),
        (None, _) => format!(
            "a restore replays from {} to {upto} on timeline {}, stopping at {obstacle}; where the backup becomes consistent is not known (no backup_manifest, and no backup history file in the archive names its start)",
            verdict.start, verdict.timeline
        ),
        (Some(_), true) => format!(
            "a restore replays from {} to {upto} on timeline {}, stopping at {obstacle}",
            verdict.start, verdict.timeline
        ),
    };
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::segment::{Break, SegParams, Span, Stop, Summary};
    use super::super::{segment_name, History, SegEntry};
    use super::*;

    const SEG: u64 = 16 << 20;

    /// Segment `segno` of timeline `tli` in `dir`: one run of records linked to the previous
    /// segment's last, one commit at time `segno`, its last record ending at the segment's end.
    fn seg(dir: &str, tli: u32, segno: u64) -> SegEntry {
        let start = segno * SEG;
        let path = PathBuf::from(dir).join(segment_name(tli, segno, SEG));
        SegEntry {
            path,
            tli,
            segno,
            partial: false,
            params: SegParams {
                start,
                seg_size: SEG,
                page_size: 8192,
                tli,
                system_id: None,
            },
            summary: Summary {
                spans: vec![Span {
                    first: start + 40,
                    first_prev: start - SEG + 0x1000,
                    last: start + 0x1000,
                    end: start + SEG,
                    records: 2,
                    commits: 1,
                    first_commit: Some(segno as i64),
                    last_commit: Some(segno as i64),
                    last_commit_lsn: Some(start + 0x1000),
                    linked_from: None,
                    switch: true,
                }],
                ..Summary::default()
            },
            within: None,
            size: SEG,
        }
    }

    fn dir(entries: Vec<SegEntry>, histories: &[(u32, Vec<(u32, u64)>)]) -> WalDir {
        WalDir {
            kind: WalDirKind::Archive,
            listed: entries.iter().map(|e| e.path.clone()).collect(),
            segments: entries.into_iter().map(|e| (e.path.clone(), e)).collect(),
            histories: histories
                .iter()
                .map(|(t, e)| (*t, History { entries: e.clone() }))
                .collect(),
            backups: Vec::new(),
        }
    }

    fn need(start_seg: u64, end_seg: u64, timeline: u32) -> Need {
        Need {
            backup: "b".into(),
            label: None,
            start: start_seg * SEG + 40,
            end: Some(end_seg * SEG + 0x100),
            timeline,
            system_id: Some(7),
        }
    }

    /// Segments of another cluster in the archive (two clusters archiving to one place) are
    /// not this backup's WAL: PostgreSQL refuses them when it reads them, and so here.
    #[test]
    fn another_cluster_s_segments_stop_the_restore() {
        let mut foreign = seg("a", 1, 3);
        foreign.summary.system_id = Some(8);
        let mut own2 = seg("a", 1, 2);
        own2.summary.system_id = Some(7);
        let archive = dir(vec![own2, foreign, seg("a", 1, 4)], &[]);
        let v = judge(None, &archive, Path::new("a"), &need(2, 2, 1)).unwrap();
        let o = v.obstacle.as_ref().unwrap();
        assert_eq!((o.reason.as_str(), o.offset), ("damaged", Some(0)), "{v:?}");
        assert_eq!(o.segment, "000000010000000000000003");
        // Of unknown system: judged as the archive's.
        let mut n = need(2, 2, 1);
        n.system_id = None;
        assert!(
            judge(None, &archive, Path::new("a"), &n)
                .unwrap()
                .reaches_archive_end
        );
    }

    /// Archive recovery asks the archive first and falls back to the backup's pg_wal/: a
    /// segment only the backup holds fills the archive's gap.
    #[test]
    fn the_backup_s_own_wal_fills_a_gap_in_the_archive() {
        let archive = dir(vec![seg("a", 1, 2), seg("a", 1, 3), seg("a", 1, 5)], &[]);
        let own = dir(vec![seg("b/pg_wal", 1, 4)], &[]);
        let v = judge(None, &archive, Path::new("a"), &need(2, 2, 1)).unwrap();
        assert!(v.consistent, "{v:?}");
        let o = v.obstacle.as_ref().unwrap();
        assert_eq!(
            (o.reason.as_str(), o.segment.as_str()),
            ("missing", "000000010000000000000004")
        );
        assert_eq!(v.reaches_time, Some(conclude::pg_time(3)));
        let v = judge(Some(&own), &archive, Path::new("a"), &need(2, 2, 1)).unwrap();
        assert!(v.reaches_archive_end && v.obstacle.is_none(), "{v:?}");
        assert_eq!(v.reaches_time, Some(conclude::pg_time(5)));
    }

    /// The archive's copy is the one replayed: damage in it stops the restore even where the
    /// backup's own copy is sound, as PostgreSQL does not retry pg_wal/ outside standby mode.
    #[test]
    fn the_archive_s_copy_is_the_one_replayed() {
        let mut bad = seg("a", 1, 3);
        bad.summary.spans[0].end = 3 * SEG + 0x800;
        bad.summary.spans[0].last = 3 * SEG + 0x700;
        bad.summary.spans[0].switch = false;
        bad.summary.breaks.push(Break {
            lsn: 3 * SEG + 0x800,
            record: Some(3 * SEG + 0x800),
            record_len: Some(100),
            written: 100,
            why: Stop::Crc {
                stored: 1,
                computed: 2,
            },
            after: Some(3 * SEG + 0x700),
        });
        let archive = dir(vec![seg("a", 1, 2), bad, seg("a", 1, 4)], &[]);
        let own = dir(vec![seg("b/pg_wal", 1, 2), seg("b/pg_wal", 1, 3)], &[]);
        let v = judge(Some(&own), &archive, Path::new("a"), &need(2, 2, 1)).unwrap();
        let o = v.obstacle.as_ref().unwrap();
        assert_eq!(o.reason, "damaged");
        assert_eq!(
            o.real.as_deref(),
            Some(Path::new("a/000000010000000000000003"))
        );
        assert_eq!(o.offset, Some(0x800));
        assert_eq!(v.reaches, Lsn(3 * SEG + 0x800).to_string());
    }

    /// Commits before the backup's start are not what a restore applies (the archive holds WAL
    /// from long before the backup): a replay with no commit after its start has no horizon time.
    #[test]
    fn commits_before_the_start_are_not_the_horizon() {
        let archive = dir(vec![seg("a", 1, 2), seg("a", 1, 3)], &[]);
        let mut n = need(3, 3, 1);
        n.start = 3 * SEG + 0x2000;
        let v = judge(None, &archive, Path::new("a"), &n).unwrap();
        assert_eq!(v.reaches_time, None, "{v:?}");
        assert_eq!(v.reaches_unix, None);
        n.start = 3 * SEG + 0x800;
        let v = judge(None, &archive, Path::new("a"), &n).unwrap();
        assert_eq!(v.reaches_time, Some(conclude::pg_time(3)));
    }

    /// A backup that ends in a segment the archive lacks cannot be restored.
    #[test]
    fn a_restore_short_of_the_backup_s_end_is_not_consistent() {
        let archive = dir(vec![seg("a", 1, 2), seg("a", 1, 4)], &[]);
        let v = judge(None, &archive, Path::new("a"), &need(2, 3, 1)).unwrap();
        assert!(!v.consistent, "{v:?}");
        assert!(
            v.detail.contains("WAL ends before end of online backup"),
            "{}",
            v.detail
        );
        // The start's own segment missing: nothing replays.
        let v = judge(None, &archive, Path::new("a"), &need(3, 3, 1)).unwrap();
        assert!(!v.consistent);
        assert_eq!(v.obstacle.unwrap().segment, "000000010000000000000003");
    }

    /// recovery_target_timeline = 'latest': the newest timeline whose history files follow one
    /// another from the backup's; one that branched before the backup began is refused.
    #[test]
    fn the_latest_timeline_is_followed_when_it_branches_after_the_start() {
        let archive = dir(
            vec![
                seg("a", 1, 2),
                seg("a", 1, 3),
                seg("a", 2, 4),
                seg("a", 2, 5),
            ],
            &[(2, vec![(1, 4 * SEG)])],
        );
        let v = judge(None, &archive, Path::new("a"), &need(2, 2, 1)).unwrap();
        assert_eq!(v.timeline, 2);
        assert!(v.reaches_archive_end, "{v:?}");
        assert_eq!(v.reaches_time, Some(conclude::pg_time(5)));
        // Timeline 2 branched at segment 1, before a backup taken in segment 2 on timeline 1.
        let early = dir(vec![seg("a", 1, 2), seg("a", 2, 2)], &[(2, vec![(1, SEG)])]);
        let v = judge(None, &early, Path::new("a"), &need(2, 2, 1)).unwrap();
        assert!(!v.consistent);
        assert_eq!(v.obstacle.unwrap().reason, "timeline");
        assert_eq!(newest_timeline(&early.histories, 2), 2);
    }
}
