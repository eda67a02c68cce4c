//! The human report: findings grouped by file, errors, skipped paths, then a summary.

use std::io::{self, IsTerminal, Write};

use std::path::PathBuf;

use dbfsck_core::{exit, Finding, FindingKind, RepairResult, Report};
use dbfsck_repair::plan::Plan;
use dbfsck_repair::shell_word;

/// Colour only on a terminal, and never when `NO_COLOR` is set (no-color.org).
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && io::stdout().is_terminal()
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// What the human report needs besides the report.
pub struct Context<'a> {
    /// Worker threads used.
    pub threads: usize,
    /// `--quiet`.
    pub quiet: bool,
    /// Colour on.
    pub color: bool,
    /// The repair plan, with `--repair`.
    pub plan: Option<&'a Plan>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// The paths given, for the suggested next command.
    pub paths: &'a [PathBuf],
}

/// Writes the human report.
pub fn render(out: &mut impl Write, report: &Report, ctx: &Context<'_>) -> io::Result<()> {
    let (threads, quiet) = (ctx.threads, ctx.quiet);
    let style = Style { color: ctx.color };
    // --quiet: the findings, the errors and, after a repair, the undo line; nothing else.
    let warnings: &[dbfsck_core::PathError] = if quiet { &[] } else { &report.warnings };
    for w in warnings {
        writeln!(
            out,
            "{} {}: {}",
            style.paint("1;33", "warning:"),
            safe(&w.path),
            safe(&w.message)
        )?;
    }
    // Grouped by file (in report order), then by kind (in the order of the kinds' table).
    let mut start = 0;
    while let Some(first) = report.findings.get(start) {
        let end = report.findings[start..]
            .iter()
            .position(|f| f.path != first.path)
            .map_or(report.findings.len(), |n| start + n);
        let file = &report.findings[start..end];
        writeln!(out, "{}", style.paint("1", &safe(&first.path)))?;
        for kind in FindingKind::ALL {
            let of_kind: Vec<&Finding> = file.iter().filter(|f| f.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            writeln!(
                out,
                "  {} ({})",
                style.paint("31", kind.as_str()),
                of_kind.len()
            )?;
            for f in of_kind {
                writeln!(out, "    {}", finding_line(f))?;
            }
        }
        start = end;
    }
    if let Some(plan) = ctx.plan.filter(|_| !quiet) {
        render_repairs(out, report, plan, ctx.dry_run, &style)?;
    }
    if !report.errors.is_empty() {
        writeln!(out, "{}", style.paint("1;31", "errors"))?;
        for e in &report.errors {
            writeln!(out, "  {}: {}", safe(&e.path), safe(&e.message))?;
        }
    }
    // Where the engine's start-up replay would stop: said before anyone starts the server.
    for r in &report.summary.recovery {
        let usable = r.consistent != Some(false);
        if quiet && r.reaches_end && usable {
            continue;
        }
        let (code, head) = if !usable {
            ("1;31", "backup cannot be restored:")
        } else if r.reaches_end {
            ("32", "recovery:")
        } else {
            ("1;31", "recovery would lose data:")
        };
        writeln!(
            out,
            "{} {}: {}",
            style.paint(code, head),
            safe(&r.path),
            safe(&r.detail)
        )?;
    }
    // How far a restore from the WAL archive gets, and what stops it.
    for r in &report.summary.restores {
        let whole = r.consistent && r.reaches_archive_end;
        if quiet && whole {
            continue;
        }
        let (code, head) = if !r.consistent {
            ("1;31", "backup cannot be restored:")
        } else if whole {
            ("32", "restore:")
        } else {
            ("1;31", "restore stops early:")
        };
        writeln!(
            out,
            "{} {} from {}: {}",
            style.paint(code, head),
            safe(&r.backup),
            safe(&r.archive),
            safe(&r.detail)
        )?;
    }
    if quiet {
        return undo_line(out, report);
    }
    if !report.skipped.is_empty() {
        writeln!(out, "skipped (not scanned)")?;
        for s in &report.skipped {
            writeln!(out, "  {}: {}", safe(&s.path), safe(&s.reason))?;
        }
    }
    let s = &report.summary;
    if !report.findings.is_empty() || !report.errors.is_empty() || !report.skipped.is_empty() {
        writeln!(out)?;
    }
    writeln!(out, "summary")?;
    writeln!(out, "  files     {}", s.files)?;
    writeln!(out, "  bytes     {} ({})", human_bytes(s.bytes), s.bytes)?;
    writeln!(out, "  units     {}", s.units)?;
    if s.by_kind.is_empty() {
        writeln!(out, "  findings  0")?;
    } else {
        writeln!(out, "  findings  {}", s.findings)?;
        writeln!(out, "    {:<22}{:>8}", "kind", "count")?;
        for (k, n) in &s.by_kind {
            writeln!(out, "    {:<22}{n:>8}", k.as_str())?;
        }
    }
    if !report.errors.is_empty() {
        writeln!(out, "  errors    {}", report.errors.len())?;
    }
    if s.skipped > 0 {
        writeln!(out, "  skipped   {}", s.skipped)?;
    }
    let rate = if s.elapsed_s > 0.0 {
        s.bytes as f64 / s.elapsed_s / 1e9
    } else {
        0.0
    };
    writeln!(
        out,
        "  elapsed   {:.3} s, {rate:.2} GB/s on {threads} thread{}",
        s.elapsed_s,
        if threads == 1 { "" } else { "s" }
    )?;
    if !s.complete {
        let why = if report.timed_out {
            "incomplete: the scan stopped at its time limit"
        } else {
            "incomplete: the scan was stopped before the end"
        };
        writeln!(out, "  {}", style.paint("33", why))?;
    }
    let rc = report.exit_code();
    let verdict = if rc == exit::OK {
        style.paint("32", "clean: no damage found")
    } else if rc == exit::REPAIRED {
        style.paint("32", "all damage was rebuilt from verified sources")
    } else {
        let mut parts = Vec::new();
        if rc & exit::DAMAGE_LEFT != 0 {
            parts.push(
                if report
                    .repairs
                    .iter()
                    .any(|r| r.result == RepairResult::Applied)
                {
                    "damage left: quarantined or unrepairable ranges must come from a backup"
                } else {
                    "damage found"
                },
            );
        }
        if rc & exit::OPERATIONAL != 0 {
            parts.push("some paths could not be read");
        }
        if rc & exit::CANCELLED != 0 {
            parts.push("cancelled");
        }
        style.paint("1;31", &parts.join("; "))
    };
    writeln!(out, "result: {verdict} (exit {rc})")?;
    next_step(out, report, ctx)
}

/// Says what to do next, as a command to copy.
fn next_step(out: &mut impl Write, report: &Report, ctx: &Context<'_>) -> io::Result<()> {
    let paths: Vec<String> = ctx
        .paths
        .iter()
        .map(|p| shell_word(p.as_os_str()))
        .collect();
    let paths = paths.join(" ");
    let damage = report.findings.iter().any(|f| f.kind.is_damage());
    if ctx.plan.is_none() && damage {
        writeln!(
            out,
            "next: run `dbfsck scan --repair --dry-run {paths}` to see the repair plan"
        )?;
    } else if let Some(plan) = ctx
        .plan
        .filter(|_| ctx.dry_run && !report.repairs.is_empty())
    {
        if plan.sweeping.is_empty() {
            writeln!(out, "next: run `dbfsck scan --repair {paths}` to apply this plan (an undo log is written first)")?;
        } else {
            writeln!(out, "next: the plan replaces most of a file (see the warnings): check it with `dbfsck inspect`; to apply it anyway, run `dbfsck scan --repair --force {paths}`")?;
        }
    }
    undo_line(out, report)
}

/// After a repair wrote an undo log: the command that puts every byte back, as it can be run.
fn undo_line(out: &mut impl Write, report: &Report) -> io::Result<()> {
    if let Some(log) = &report.undo_log {
        writeln!(
            out,
            "undo: `dbfsck undo {}` restores every byte this repair changed",
            shell_word(log.as_os_str())
        )?;
    }
    Ok(())
}

fn render_repairs(
    out: &mut impl Write,
    report: &Report,
    plan: &Plan,
    dry_run: bool,
    style: &Style,
) -> io::Result<()> {
    let title = if dry_run {
        "repair plan (dry run: nothing changed)"
    } else {
        "repairs"
    };
    writeln!(out, "{}", style.paint("1", title))?;
    if report.repairs.is_empty() {
        writeln!(out, "  nothing to do")?;
    }
    for r in &report.repairs {
        let result = match r.result {
            RepairResult::Applied => style.paint("32", r.result.as_str()),
            RepairResult::Planned => style.paint("36", r.result.as_str()),
            _ => style.paint("1;31", r.result.as_str()),
        };
        let unit = match (r.unit, r.units) {
            (Some(u), Some(n)) => format!(" pages {u}-{}", u + n - 1),
            (Some(u), None) => format!(" page {u}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {}{unit}: {} {result}  {}",
            safe(&r.path),
            r.action.as_str(),
            safe(&r.detail)
        )?;
        if let Some(src) = &r.source {
            writeln!(out, "      from {}", safe(src))?;
        }
    }
    if !plan.left.is_empty() {
        writeln!(
            out,
            "{}",
            style.paint("1", "left as is (restore from a backup)")
        )?;
        for l in &plan.left {
            if let Some(f) = report.findings.get(l.finding) {
                let unit = match (l.unit, l.units) {
                    (Some(u), Some(n)) => format!(" pages {u}-{}", u + n - 1),
                    (Some(u), None) => format!(" page {u}"),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "  {}{unit}: {}: {}",
                    safe(&f.path),
                    f.kind,
                    safe(&l.reason)
                )?;
            }
        }
    }
    if let Some(q) = &report.quarantine_dir {
        if report.repairs.iter().any(|r| !r.action.is_restore()) {
            writeln!(
                out,
                "  quarantine: {} (manifest.jsonl lists every range cut out)",
                safe(&q.to_string_lossy())
            )?;
        }
    }
    Ok(())
}

/// Text from names and messages, made safe for a terminal: control characters (which could
/// move the cursor, recolour, hide lines or print a fake verdict) are shown escaped, as `\x1b`,
/// `\n`… JSON output keeps every byte.
fn safe(s: &str) -> std::borrow::Cow<'_, str> {
    let risky = |c: char| {
        c.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !s.chars().any(risky) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            // Bidirectional overrides reorder what follows on screen.
            c @ ('\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn finding_line(f: &Finding) -> String {
    let mut line = String::new();
    match (f.unit, f.units) {
        (Some(u), Some(n)) => line.push_str(&format!("units {u}-{} ({n}) ", u + n - 1)),
        (Some(u), None) => line.push_str(&format!("unit {u:<6} ")),
        _ => {}
    }
    line.push_str(&format!("@{} +{}", f.offset, f.length));
    line.push_str("  ");
    line.push_str(&safe(&f.detail));
    if let (Some(e), Some(a)) = (&f.expected, &f.actual) {
        line.push_str(&format!(" (stored {e}, computed {a})"));
    }
    line
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(unit).unwrap_or(&"B"))
    }
}
