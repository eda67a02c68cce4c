//! The progress bar as people and scripts meet it: in a real terminal (a tmux pane) it shows
//! bytes done of the total, the rate, the ETA and the findings so far; when stderr is a pipe
//! there is nothing at all on it — no `\r`, no escape codes — unless `--progress always`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dbfsck_core::native::ChecksumAlgo;
use dbfsck_testkit::{Dataset, Spec};

fn dataset(dir: &Path) {
    let spec = Spec {
        files: 3,
        pages: 1024,
        page_size: 8192,
        checksum: ChecksumAlgo::Xxh3,
        seed: 5,
    };
    Dataset::generate(dir, spec).unwrap();
}

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_bar_is_drawn_in_a_terminal() {
    let tmux = have_tmux()
        .then_some(())
        .ok_or_else(|| "needs tmux for a real terminal".to_owned());
    if !dbfsck_testkit::can_run("the terminal test", tmux) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let socket = format!("dbfsck-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .unwrap()
    };
    // 24 MiB at 6 MiB/s: the bar is on screen for about four seconds.
    let cmd = format!(
        "{} scan --max-rate 6MiB/s {}; sleep 30",
        env!("CARGO_BIN_EXE_dbfsck"),
        dir.path().display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "160",
        "-y",
        "10",
        &cmd,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    std::thread::sleep(Duration::from_millis(2000));
    let pane = tmux(&["capture-pane", "-p", "-t", "t"]);
    let shown = String::from_utf8_lossy(&pane.stdout).into_owned();
    std::thread::sleep(Duration::from_millis(4000));
    let after =
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned();
    tmux(&["kill-server"]);
    assert!(
        shown.contains("/23.98 MiB"),
        "bytes done of the total: {shown}"
    );
    assert!(
        shown.contains("MiB/s") && shown.contains("ETA"),
        "rate and ETA: {shown}"
    );
    assert!(shown.contains("0 findings"), "findings so far: {shown}");
    assert!(
        after.contains("result: clean"),
        "the report follows: {after}"
    );
    assert!(
        !after.contains("ETA"),
        "the bar is cleared when the scan ends: {after}"
    );
}

#[test]
fn nothing_on_a_piped_stderr_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    dataset(dir.path());
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dbfsck"))
            .args(["scan", "--max-rate", "48MiB/s"])
            .args(extra)
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let piped = run(&[]);
    assert_eq!(piped.status.code(), Some(0));
    assert!(
        piped.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(!piped.stdout.contains(&b'\r') && !piped.stdout.contains(&0x1b));
    let forced = run(&["--progress", "always", "--quiet"]);
    assert!(String::from_utf8_lossy(&forced.stderr).contains("ETA"));
    let never = run(&["--progress", "never"]);
    assert!(never.stderr.is_empty());
}
