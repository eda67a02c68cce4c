//! The progress bar: bytes done of the total, rate, ETA and findings so far, on stderr. The
//! library reports progress through its callback; only the CLI draws.

use std::fmt::Write as _;
use std::io::Write;

use dbfsck_core::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

/// A bar on stderr. `forced` draws even when stderr is not a terminal (`--progress always`);
/// otherwise indicatif's terminal target draws only on a terminal.
pub fn bar(forced: bool) -> ProgressBar {
    let target = if forced {
        ProgressDrawTarget::term_like_with_hz(Box::new(Stderr), 4)
    } else {
        ProgressDrawTarget::stderr_with_hz(4)
    };
    let bar = ProgressBar::with_draw_target(Some(0), target);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {rate} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let secs = s.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            s.pos() as f64 / secs
        } else {
            0.0
        };
        let _ = write!(w, "{}/s", indicatif::HumanBytes(rate as u64));
    });
    bar.set_style(style);
    bar
}

/// Called from the worker threads as chunks complete.
pub fn update(bar: &ProgressBar, p: &Progress) {
    if bar.length() != Some(p.bytes_total) {
        bar.set_length(p.bytes_total);
    }
    bar.set_position(p.bytes_done);
    let mut msg = String::new();
    let _ = write!(
        msg,
        "{} finding{}",
        p.findings,
        if p.findings == 1 { "" } else { "s" }
    );
    bar.set_message(msg);
}

/// stderr as a plain 80-column terminal, for `--progress always` when it is not one.
#[derive(Debug)]
struct Stderr;

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        80
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        write!(std::io::stderr(), "\x1b[{n}A")
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        write!(std::io::stderr(), "\x1b[{n}B")
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        write!(std::io::stderr(), "\x1b[{n}C")
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        write!(std::io::stderr(), "\x1b[{n}D")
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        writeln!(std::io::stderr(), "{s}")
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        write!(std::io::stderr(), "{s}")
    }
    fn clear_line(&self) -> std::io::Result<()> {
        write!(std::io::stderr(), "\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
