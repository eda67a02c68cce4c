//! What the CLI tests share: running the binary and reading what it printed.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::{Command, Output};

use serde_json::Value;

pub mod lsm;
pub mod pg;

/// The `dbfsck` binary, colour off.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dbfsck"));
    c.env("NO_COLOR", "1");
    c
}

/// Runs `dbfsck ARGS…` to completion.
pub fn dbfsck(args: &[&OsStr]) -> Output {
    bin().args(args).output().unwrap()
}

/// A `&str` as an argument.
pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// The exit code (the process must have exited, not been killed).
pub fn rc(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// stdout as one JSON document.
pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Runs `dbfsck ARGS… --output json`: its exit code and the JSON report.
pub fn json_run(args: &[&str]) -> (i32, Value) {
    let o = bin()
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), json(&o))
}

/// Scans `root` `n` times, every other time with `--online`; each scan that set the damage or
/// error bit, with what it reported (for tests of a datastore changing under the scans).
pub fn failing_scans(root: &str, n: usize) -> Vec<String> {
    let mut bad = Vec::new();
    for i in 0..n {
        let args: Vec<&str> = if i % 2 == 0 {
            vec!["scan", root]
        } else {
            vec!["scan", "--online", root]
        };
        let (code, v) = json_run(&args);
        if code & 12 != 0 {
            bad.push(format!(
                "{args:?} exit {code}: {} {}",
                v["findings"], v["errors"]
            ));
        }
    }
    bad
}
