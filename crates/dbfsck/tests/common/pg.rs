//! PostgreSQL 15 harness shared by the real-engine tests: the server's programs, run as the
//! `postgres` user (initdb refuses root), clusters in temporary directories with unix sockets,
//! and a guard that stops what a test started, on failure too.
#![allow(dead_code, reason = "each test binary uses some of the helpers")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bindir() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    // Debian's pg_config may come from libpq-dev alone; the server's programs live here.
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    [from_pg_config, Some(debian)]
        .into_iter()
        .flatten()
        .find(|d| d.join("initdb").is_file())
}

pub fn prerequisites() -> Option<PathBuf> {
    let root = dbfsck_testkit::is_root();
    let bin = bindir();
    let have_user = Command::new("id")
        .arg("postgres")
        .output()
        .is_ok_and(|o| o.status.success());
    let found = if root && have_user && bin.is_some() {
        Ok(())
    } else {
        Err(format!(
            "needs root, the postgres user and PostgreSQL 15: root={root}, postgres user={have_user}, PostgreSQL bindir={bin:?}"
        ))
    };
    dbfsck_testkit::can_run("the PostgreSQL oracle test", found)
        .then_some(bin)
        .flatten()
}

pub fn as_postgres(bin: &Path, prog: &str, args: &[&str]) -> Output {
    let o = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(prog))
        .args(args)
        .output()
        .unwrap();
    o
}

pub fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Stops the server when the test ends, however it ends.
pub struct Server<'a> {
    pub bin: &'a Path,
    pub data: String,
    pub running: bool,
}

impl Server<'_> {
    /// Stops the server (fast shutdown).
    pub fn stop(&mut self) {
        if self.running {
            ok(
                as_postgres(
                    self.bin,
                    "pg_ctl",
                    &["-D", &self.data, "-m", "fast", "-w", "stop"],
                ),
                "pg_ctl stop",
            );
            self.running = false;
        }
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres(
                self.bin,
                "pg_ctl",
                &["-D", &self.data, "-m", "immediate", "stop"],
            );
        }
    }
}

pub fn psql(bin: &Path, sock: &str, sql: &str) -> String {
    let o = ok(
        as_postgres(
            bin,
            "psql",
            &[
                "-h",
                sock,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        ),
        sql,
    );
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// A fresh cluster made by `initdb -k` in a temporary directory owned by `postgres` (its unix
/// socket in the same directory): (the directory, the data directory, the socket directory).
pub fn new_cluster(bin: &Path) -> (tempfile::TempDir, String, String) {
    let tmp = tempfile::Builder::new()
        .prefix("dbfsck-pg-")
        .tempdir_in("/tmp")
        .unwrap();
    let top = tmp.path();
    ok(
        Command::new("chown")
            .args(["postgres", top.to_str().unwrap()])
            .output()
            .unwrap(),
        "chown",
    );
    let data = top.join("data").to_str().unwrap().to_owned();
    let sock = top.to_str().unwrap().to_owned();
    ok(
        as_postgres(
            bin,
            "initdb",
            &["-k", "-D", &data, "-A", "trust", "-U", "postgres"],
        ),
        "initdb -k",
    );
    (tmp, data, sock)
}

/// Starts the cluster's server on its socket, with `extra` server options.
pub fn start_cluster(bin: &Path, data: &str, sock: &str, extra: &str) {
    let opts = format!("-k {sock} -c listen_addresses='' -c fsync=off {extra}");
    ok(
        as_postgres(
            bin,
            "pg_ctl",
            &[
                "-D",
                data,
                "-o",
                &opts,
                "-l",
                &format!("{sock}/log"),
                "-w",
                "start",
            ],
        ),
        "pg_ctl start",
    );
}

/// A fresh cluster started with server options `opts`, given to `work` (with the socket
/// directory), then crashed (`pg_ctl stop -m immediate`), the server stopped on failure too:
/// (the directory, the data directory, the socket directory, what `work` returned).
pub fn crashed_cluster<T>(
    bin: &Path,
    opts: &str,
    work: impl FnOnce(&str) -> T,
) -> (tempfile::TempDir, String, String, T) {
    let (tmp, data, sock) = new_cluster(bin);
    start_cluster(bin, &data, &sock, opts);
    let mut server = Server {
        bin,
        data: data.clone(),
        running: true,
    };
    let out = work(&sock);
    ok(
        as_postgres(
            bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        ),
        "pg_ctl stop -m immediate",
    );
    server.running = false;
    (tmp, data, sock, out)
}

/// `cp -a FROM TO`.
pub fn copy_tree(from: &str, to: &Path) {
    ok(
        Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .output()
            .unwrap(),
        "cp -a",
    );
}

/// A fresh cluster started with server options `opts`, and the guard that stops it: (the
/// directory, the data directory, the socket directory, the guard).
pub fn running_cluster<'a>(
    bin: &'a Path,
    opts: &str,
) -> (tempfile::TempDir, String, String, Server<'a>) {
    let (tmp, data, sock) = new_cluster(bin);
    start_cluster(bin, &data, &sock, opts);
    let server = Server {
        bin,
        data: data.clone(),
        running: true,
    };
    (tmp, data, sock, server)
}

/// `pgbench -i -q -s SCALE` on the server at `sock`.
pub fn pgbench_init(bin: &Path, sock: &str, scale: u32) {
    let scale = scale.to_string();
    ok(
        as_postgres(
            bin,
            "pgbench",
            &[
                "-h", sock, "-U", "postgres", "-i", "-q", "-s", &scale, "postgres",
            ],
        ),
        "pgbench -i",
    );
}

/// `pg_basebackup -c fast -D DIR` of the server at `sock`, with `extra` arguments.
pub fn base_backup(bin: &Path, sock: &str, dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "-h",
        sock,
        "-U",
        "postgres",
        "-D",
        dir.to_str().unwrap(),
        "-c",
        "fast",
    ];
    args.extend_from_slice(extra);
    ok(as_postgres(bin, "pg_basebackup", &args), "pg_basebackup");
}

/// `chown -R postgres PATH`: the servers run as `postgres`, and read and write there.
pub fn chown_postgres(path: &Path) {
    ok(
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(path)
            .output()
            .unwrap(),
        "chown -R postgres",
    );
}

/// Waits (up to 30 s) until the server at `sock` has archived the last segment it switched
/// away from (`archive_command` runs in the background).
pub fn wait_archived(bin: &Path, sock: &str) {
    let last = psql(
        bin,
        sock,
        "select pg_walfile_name(pg_current_wal_lsn() - 1)",
    );
    for _ in 0..300 {
        let done = psql(
            bin,
            sock,
            "select coalesce(last_archived_wal, '') from pg_stat_archiver",
        );
        if done.as_str() >= last.as_str() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The LSN of the server log's "redo done at" once it appears in `log` (up to 30 s): where an
/// archive recovery ended.
pub fn redo_done(log: &Path) -> String {
    let mut text = String::new();
    for _ in 0..300 {
        text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(lsn) = text
            .lines()
            .find_map(|l| l.split("redo done at ").nth(1))
            .and_then(|r| r.split_whitespace().next())
        {
            return lsn.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no \"redo done at\" in the server's log:\n{text}");
}

/// A scratch directory (`prefix…` in /tmp, owned by `postgres`) holding `archive/`, and a fresh
/// cluster archiving its WAL there with `archive_command = 'cp'`, started: (the scratch
/// directory, the archive, the cluster's directory, its socket, the guard).
pub fn archiving_cluster<'a>(
    bin: &'a Path,
    prefix: &str,
) -> (
    tempfile::TempDir,
    PathBuf,
    tempfile::TempDir,
    String,
    Server<'a>,
) {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    let archive = tmp.path().join("archive");
    std::fs::create_dir(&archive).unwrap();
    chown_postgres(tmp.path());
    let opts = format!(
        "-c archive_mode=on -c archive_command='cp %p {}/%f'",
        archive.display()
    );
    let (cluster, _data, sock, server) = running_cluster(bin, &opts);
    (tmp, archive, cluster, sock, server)
}
