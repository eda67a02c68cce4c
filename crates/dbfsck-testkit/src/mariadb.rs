//! A real MariaDB server for oracle tests: a data directory made by `mariadb-install-db` in a
//! temporary directory, `mariadbd` run as the `mysql` user on a unix socket (no network), SQL
//! through the `mariadb` client, and a stop that waits for the server to exit. Dropping a
//! running server kills it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MARIADBD: &str = "/usr/sbin/mariadbd";

/// Whether this machine can run the MariaDB oracle tests: `Ok(())`, or what is missing.
pub fn prerequisites() -> Result<(), String> {
    let root = crate::is_root();
    let user = Command::new("id")
        .args(["-u", "mysql"])
        .output()
        .is_ok_and(|o| o.status.success());
    let progs = [MARIADBD, "mariadb-install-db", "mariadb", "innochecksum"]
        .iter()
        .filter(|p| !on_path(p))
        .copied()
        .collect::<Vec<_>>();
    if root && user && progs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "needs root, the mysql user and MariaDB's programs: root={root}, mysql user={user}, missing programs={progs:?}"
        ))
    }
}

/// The compression providers MariaDB packages separately (`mariadb-plugin-provider-*`), for
/// page_compressed tables with `innodb_compression_algorithm` other than zlib.
pub const PROVIDERS: [&str; 5] = ["lz4", "lzo", "lzma", "bzip2", "snappy"];

/// Where `mariadbd` looks for plugins by default.
const PLUGIN_DIR: &str = "/usr/lib/mysql/plugin";

/// The server arguments that load every provider of [`PROVIDERS`].
pub fn provider_args() -> Vec<String> {
    PROVIDERS
        .iter()
        .map(|p| format!("--plugin-load-add=provider_{p}.so"))
        .collect()
}

/// Like [`available`], for a test that also needs every compression provider plugin.
pub fn available_with_providers(test: &str) -> bool {
    let missing: Vec<&str> = PROVIDERS
        .iter()
        .filter(|p| {
            !Path::new(PLUGIN_DIR)
                .join(format!("provider_{p}.so"))
                .is_file()
        })
        .copied()
        .collect();
    let providers = if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "needs MariaDB's compression providers (mariadb-plugin-provider-*): missing {missing:?}"
        ))
    };
    crate::can_run(test, prerequisites().and(providers))
}

/// Returns true when the test can run; otherwise skips it or fails it ([`crate::can_run`]).
pub fn available(test: &str) -> bool {
    crate::can_run(test, prerequisites())
}

fn on_path(prog: &str) -> bool {
    if prog.starts_with('/') {
        return Path::new(prog).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

fn mysql_ids() -> io::Result<(u32, u32)> {
    let id = |flag: &str| -> io::Result<u32> {
        let o = Command::new("id").args([flag, "mysql"]).output()?;
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .map_err(|_| io::Error::other("no mysql user"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// A MariaDB data directory and, while started, its server.
#[derive(Debug)]
pub struct MariaDb {
    /// The directory holding `data/`, the socket, the pid file and the error log.
    pub root: PathBuf,
    /// The data directory.
    pub data: PathBuf,
    server: Option<Child>,
}

impl MariaDb {
    /// Makes a data directory in `root/data` (root is made reachable by `mysql`).
    pub fn install(root: &Path) -> io::Result<MariaDb> {
        let (uid, gid) = mysql_ids()?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(root, Some(uid), Some(gid))?;
        let data = root.join("data");
        // Its own temporary directory: servers bootstrapping at once in /tmp collide.
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)?;
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        let o = Command::new("runuser")
            .args(["-u", "mysql", "--", "mariadb-install-db", "--no-defaults"])
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .env("TMPDIR", &tmp)
            .current_dir(root)
            .output()?;
        if !o.status.success() {
            return Err(io::Error::other(format!(
                "mariadb-install-db failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )));
        }
        Ok(MariaDb {
            root: root.to_path_buf(),
            data,
            server: None,
        })
    }

    /// A second instance over a copy of this data directory (owners and modes kept) in
    /// `root/data`, e.g. an untouched copy of a crashed server to compare against. The server
    /// must not be running.
    pub fn copy_to(&self, root: &Path) -> io::Result<MariaDb> {
        let (uid, gid) = mysql_ids()?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        std::os::unix::fs::chown(root, Some(uid), Some(gid))?;
        let tmp = root.join("tmp");
        fs::create_dir_all(&tmp)?;
        std::os::unix::fs::chown(&tmp, Some(uid), Some(gid))?;
        let data = root.join("data");
        let o = Command::new("cp")
            .arg("-a")
            .arg(&self.data)
            .arg(&data)
            .output()?;
        if !o.status.success() {
            return Err(io::Error::other(format!(
                "copying the data directory failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )));
        }
        Ok(MariaDb {
            root: root.to_path_buf(),
            data,
            server: None,
        })
    }

    fn socket(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// The server's error log.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.root.join("err.log")).unwrap_or_default()
    }

    /// Gives every file under the data directory back to `mysql` (after a test wrote as root).
    pub fn chown_data(&self) -> io::Result<()> {
        let (uid, gid) = mysql_ids()?;
        fn walk(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
            if fs::symlink_metadata(p)?.is_dir() {
                for e in fs::read_dir(p)? {
                    walk(&e?.path(), uid, gid)?;
                }
            }
            Ok(())
        }
        walk(&self.data, uid, gid)
    }

    /// Starts the server (no buffer-pool dump or load, so it reads only what SQL asks for) and
    /// waits until it answers.
    pub fn start(&mut self, extra: &[&str]) -> io::Result<()> {
        self.chown_data()?;
        let _ = fs::remove_file(self.socket());
        let child = Command::new("runuser")
            .args(["-u", "mysql", "--", MARIADBD, "--no-defaults"])
            .arg(format!("--datadir={}", self.data.display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", self.root.join("pid").display()))
            .arg(format!(
                "--log-error={}",
                self.root.join("err.log").display()
            ))
            .args([
                "--skip-networking",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=32M",
                "--innodb-buffer-pool-load-at-startup=0",
                "--innodb-buffer-pool-dump-at-shutdown=0",
            ])
            .arg(format!("--tmpdir={}", self.root.join("tmp").display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.server = Some(child);
        let started = Instant::now();
        loop {
            if self.socket().exists() && self.sql("select 1").is_ok() {
                return Ok(());
            }
            if let Some(c) = self.server.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.server = None;
                    return Err(io::Error::other(format!(
                        "mariadbd exited ({status}) while starting:\n{}",
                        self.error_log()
                    )));
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(io::Error::other(format!(
                    "mariadbd did not answer within 60 s:\n{}",
                    self.error_log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs SQL through the client; the output (tab-separated, no column names) or the error.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let o = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }

    /// Runs SQL through the client in the background (a workload to crash the server under);
    /// the client's process, to wait for once the server is gone.
    pub fn spawn_sql(&self, sql: &str) -> io::Result<Child> {
        Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", sql])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    /// Kills the server with SIGKILL, as a power cut or the OOM killer ends it (no flush, no
    /// shutdown checkpoint), and waits until it is gone.
    pub fn kill(&mut self) -> io::Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        let pid = fs::read_to_string(self.root.join("pid"))?;
        let status = Command::new("kill").args(["-9", pid.trim()]).status()?;
        if !status.success() {
            let _ = child.kill();
        }
        // runuser exits when mariadbd does; the pid file stays behind after a kill.
        child.wait()?;
        let _ = fs::remove_file(self.root.join("pid"));
        Ok(())
    }

    /// Whether the server is running.
    pub fn running(&self) -> bool {
        self.server.is_some()
    }

    /// Shuts the server down cleanly and waits for it to exit.
    pub fn stop(&mut self) -> io::Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        if let Err(e) = self.sql("shutdown") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!("shutdown failed: {e}")));
        }
        let started = Instant::now();
        while child.try_wait()?.is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other("mariadbd did not stop within 120 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // runuser has exited; wait for mariadbd itself to release its files.
        let pid_file = self.root.join("pid");
        while pid_file.exists() && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            if let Ok(pid) = fs::read_to_string(self.root.join("pid")) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `innochecksum -a <many> -l <log>` on one file (the server must be stopped) and returns
/// the page numbers it reports invalid, parsed from its `Fail: page::<P> invalid` lines, since
/// its exit code alone cannot tell damage from a file it could not check. `Err` when it could
/// not check the file.
pub fn innochecksum_failures(file: &Path, log: &Path) -> Result<Vec<u64>, String> {
    let o = Command::new("innochecksum")
        .args(["-a", "1000000", "-l"])
        .arg(log)
        .arg(file)
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    let mut pages = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("Fail: page::") {
            let n = rest.split_whitespace().next().unwrap_or_default();
            pages.push(n.parse().map_err(|_| format!("unparsable line: {line}"))?);
        } else if line.starts_with("Error") {
            return Err(stderr.into_owned());
        }
    }
    if !o.status.success() && pages.is_empty() {
        return Err(format!("innochecksum exited {}: {stderr}", o.status));
    }
    Ok(pages)
}

/// A MariaDB 10.8+ redo log (`ib_logfile0`) with no records: a valid header and one checkpoint
/// block saying the checkpoint is at `checkpoint_lsn` and the log ended at `end_lsn` — for a
/// synthetic data directory whose doublewrite slots should (or should not) count as current.
pub fn redo_log(checkpoint_lsn: u64, end_lsn: u64) -> Vec<u8> {
    let first: u64 = 12288;
    let mut f = vec![0u8; 12288 + 65536];
    f[..4].copy_from_slice(&0x5068_7973u32.to_be_bytes());
    f[8..16].copy_from_slice(&first.to_be_bytes());
    f[16..29].copy_from_slice(b"dbfsck tests\0");
    let crc = crc32c::crc32c(&f[..508]);
    f[508..512].copy_from_slice(&crc.to_be_bytes());
    let c = 4096;
    f[c..c + 8].copy_from_slice(&checkpoint_lsn.max(first).to_be_bytes());
    f[c + 8..c + 16].copy_from_slice(&end_lsn.max(checkpoint_lsn).to_be_bytes());
    let crc = crc32c::crc32c(&f[c..c + 60]);
    f[c + 60..c + 64].copy_from_slice(&crc.to_be_bytes());
    f
}
