//! A damaged or hostile directory: a symlink loop, a link to /etc, a link to a file outside the
//! tree, a FIFO (which would block a reader forever), a file the scanning user cannot read, a
//! file whose header page is garbage, and one good file. Run as an unprivileged user
//! (`runuser -u nobody`, as root can read anything), dbfsck finishes, reports each correctly —
//! the unreadable file as an error (exit bit 8), links and the FIFO as skipped, the garbage as
//! unrecognised — scans the good file, and names nothing outside the tree.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;

use dbfsck_core::native::{CreateOptions, PageFile, PageType};
use serde_json::Value;

#[test]
fn a_hostile_tree_is_scanned_as_nobody_without_leaving_it() {
    let root = dbfsck_testkit::is_root()
        .then_some(())
        .ok_or_else(|| "needs root to run dbfsck as nobody".to_owned());
    if !dbfsck_testkit::can_run("the hostile tree test", root) {
        return;
    }
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The binary where nobody can run it.
    let bin = top.path().join("dbfsck");
    std::fs::copy(env!("CARGO_BIN_EXE_dbfsck"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let tree = top.path().join("tree");
    let sub = tree.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let good = tree.join("good.dbfp");
    let mut pf = PageFile::create(&good, CreateOptions::default()).unwrap();
    for p in 1..=8 {
        pf.write_page(p, PageType::App(0x100), p, b"row").unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    let secret = tree.join("secret.dbfp");
    std::fs::copy(&good, &secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::write(tree.join("garbage.dbfp"), vec![0xA5u8; 3 * 8192]).unwrap();
    symlink(&tree, sub.join("loop")).unwrap();
    symlink("/etc", tree.join("etc")).unwrap();
    symlink("/etc/passwd", tree.join("passwd.dbfp")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(tree.join("fifo"))
        .status()
        .unwrap()
        .success());
    for d in [&tree, &sub] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();

    let o = Command::new("timeout")
        .args(["60", "runuser", "-u", "nobody", "--"])
        .arg(&bin)
        .args(["scan", "--output", "json"])
        .arg(&tree)
        .output()
        .unwrap();
    assert_ne!(
        o.status.code(),
        Some(124),
        "finished (the FIFO was not read)"
    );
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.code(), Some(8), "{v:#}");
    let p = |name: &str| tree.join(name).to_string_lossy().into_owned();
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["path"], p("secret.dbfp"));
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("permission denied"));
    let skipped: Vec<(String, String)> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reason = |path: &str| {
        skipped
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    assert!(reason(&p("etc")).contains("symbolic link"), "{skipped:?}");
    assert!(
        reason(&p("passwd.dbfp")).contains("symbolic link"),
        "{skipped:?}"
    );
    assert!(
        reason(&p("sub/loop")).contains("symbolic link"),
        "{skipped:?}"
    );
    assert!(reason(&p("fifo")).contains("not opened"), "{skipped:?}");
    assert!(
        reason(&p("garbage.dbfp")).contains("not a recognised format"),
        "{skipped:?}"
    );
    assert_eq!(v["summary"]["files"], 1, "the good file is scanned");
    assert_eq!(v["summary"]["units"], 9);
    assert!(v["findings"].as_array().unwrap().is_empty());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        !text.contains("/etc/passwd") && !text.contains("\"/etc"),
        "nothing outside the tree"
    );
}

/// A file truncated while a throttled scan is reading it, under memory maps and positional reads:
/// no crash, a finding for that file, a valid report, exit bit 4 or 8.
#[test]
fn a_file_truncated_during_a_throttled_scan() {
    use dbfsck_core::native::ChecksumAlgo;
    use dbfsck_testkit::{Dataset, Spec};
    for no_mmap in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec {
            files: 3,
            pages: 1024,
            page_size: 4096,
            checksum: ChecksumAlgo::Crc32,
            seed: 13,
        };
        let ds = Dataset::generate(dir.path(), spec).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbfsck"));
        cmd.args([
            "scan",
            "--output",
            "json",
            "--threads",
            "1",
            "--max-rate",
            "6MiB/s",
        ]);
        if no_mmap {
            cmd.arg("--no-mmap");
        }
        let child = cmd
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(900));
        // The second file, most likely being read now: cut in the middle of a page.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&ds.files[1].path)
            .unwrap();
        f.set_len(300 * 4096 + 123).unwrap();
        let o = child.wait_with_output().unwrap();
        let code = o.status.code().expect("exited, not killed by a signal");
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(code & 12 != 0 && code & !12 == 0, "exit {code}");
        let name = ds.files[1].path.to_string_lossy().into_owned();
        let kinds: Vec<&str> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["path"] == name.as_str())
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds
                .iter()
                .any(|k| ["truncated", "partial_page", "io_error"].contains(k)),
            "no_mmap={no_mmap}: {kinds:?}"
        );
    }
}

/// A sparse file (a header page, a few pages, then a hole to 256 MiB, as a file extended without
/// its data being written): scanned quickly in bounded memory, every page of the hole reported
/// as zeroed, the written pages verified.
#[test]
fn a_sparse_file_is_scanned_and_its_hole_reported_as_zeroed_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.dbfp");
    let mut pf = PageFile::create(&path, CreateOptions::default()).unwrap();
    for p in 1..=3 {
        pf.write_page(p, PageType::App(0x100), p, b"row").unwrap();
    }
    pf.sync().unwrap();
    drop(pf);
    let len = 256u64 << 20;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_dbfsck"))
        .args(["scan", "--output", "jsonl", "--quiet"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap();
    let pages = len / 8192;
    assert_eq!(summary["units"], pages);
    // The hole is one run: one finding covering every zeroed page, however it was chunked.
    assert_eq!(summary["findings"], 1);
    assert_eq!(summary["by_kind"]["zeroed_page"], 1);
    assert_eq!(summary["damaged_units"], pages - 4);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0]["unit"], 4,
        "the hole starts after the written pages"
    );
    assert_eq!(lines[0]["units"], pages - 4);
    assert_eq!(lines[0]["offset"], 4 * 8192);
    assert_eq!(lines[0]["length"], (pages - 4) * 8192);
}
