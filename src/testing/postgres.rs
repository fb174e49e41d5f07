//! Real PostgreSQL fixtures (see [`super`] for the overview).
//!
//! Each [`PostgresServer`] is a private cluster: `initdb` into a temporary
//! directory, then `postgres` on a free loopback port, its Unix socket in
//! that directory too, so it shares nothing with a system cluster. The
//! server trusts every local connection (user `postgres`, no password):
//! it is a test fixture, reachable from this machine only.
//!
//! PostgreSQL refuses to run as root. Run as root (containers, CI), the
//! fixture runs `initdb` and `postgres` as an unprivileged user that
//! `scripts/setup` creates, [`DEFAULT_OS_USER`] (or the one named by
//! [`POSTGRES_USER_ENV`]), and hands it the directory.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::unistd::{Gid, Uid, User, chown};

use super::FixtureError;
use super::process::{self, Capture, PANIC_LOG_LINES, Process, Server};

/// Environment variable naming the directory with PostgreSQL's server
/// programs (`initdb`, `postgres`, `pg_isready`). By default the newest
/// `/usr/lib/postgresql/<version>/bin`, where Debian puts them.
pub const POSTGRES_BIN_ENV: &str = "FENCELOCK_POSTGRES_BIN";
/// Environment variable naming the unprivileged user that runs the server
/// when the tests run as root.
pub const POSTGRES_USER_ENV: &str = "FENCELOCK_POSTGRES_USER";
/// The user `scripts/setup` creates for that.
pub const DEFAULT_OS_USER: &str = "fencelock-pg";
/// The database user the fixture's clients log in as (trusted, no password).
pub const DB_USER: &str = "postgres";

const DEBIAN_BIN_ROOT: &str = "/usr/lib/postgresql";
const LOG_FILE: &str = "postgres.log";
const DATA_DIR: &str = "data";
/// A fresh cluster starts in about a second; the margin is for loaded
/// machines running tests in parallel.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// What the postmaster logs when its port is taken.
const ADDR_IN_USE: &str = "Address already in use";

/// One PostgreSQL server on 127.0.0.1 with a cluster of its own.
///
/// Dropping it kills the server (also while paused), reaps it and removes
/// its directory. If the drop happens while the thread is panicking (a
/// failing test), the last 30 lines of its log are printed to stderr.
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    run_as: Option<(Uid, Gid)>,
    process: Process,
}

impl fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("paused", &self.process.pause_requested())
            .field("dir", &self.dir())
            .field("bin", &self.bin)
            .finish()
    }
}

impl PostgresServer {
    /// Makes a cluster with `initdb` and starts a server on it.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server programs or (as root) the
    /// unprivileged user are missing, or the server cannot start or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start() -> Result<Self, FixtureError> {
        let bin = bin_dir()?;
        let run_as = unprivileged_user()?;
        process::start_on_fresh_ports(|| {
            let port = super::free_ports(1)?[0];
            let label = format!("postgres 127.0.0.1:{port}");
            let mut server = PostgresServer {
                port,
                bin: bin.clone(),
                run_as,
                process: Process::new(label, "fencelock-postgres-", LOG_FILE)?,
            };
            server.init()?;
            server.respawn()?;
            process::wait_ready(&mut [&mut server], None)?;
            Ok(server)
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// A connection string for tokio-postgres (and libpq): the database
    /// `postgres` as user [`DB_USER`].
    pub fn config(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={DB_USER} dbname=postgres",
            self.port
        )
    }

    /// The same as a URL, `postgresql://postgres@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://{DB_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// A connection pool on the server (deadpool-postgres, no TLS), for
    /// [`crate::postgres`].
    ///
    /// # Panics
    ///
    /// Never with this fixture's URL: deadpool only fails to build a pool
    /// from a configuration it cannot parse.
    #[cfg(feature = "postgres")]
    pub fn pool(&self) -> deadpool_postgres::Pool {
        let config = deadpool_postgres::Config {
            url: Some(self.url()),
            ..Default::default()
        };
        config
            .create_pool(
                Some(deadpool_postgres::Runtime::Tokio1),
                tokio_postgres::NoTls,
            )
            .expect("a pool from the fixture's URL")
    }

    /// The fixture's directory (the cluster is in `data/`, the log in
    /// `postgres.log`).
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// The postmaster's process id, or `None` when it is not running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the server process is running (also while paused).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Kills the server with SIGKILL, as a crash would: what was committed
    /// is in the WAL and comes back with [`restart`](Self::restart).
    pub fn kill(&mut self) {
        // A backend serves its connection on its own and would notice the
        // postmaster's death only later, committing meanwhile: a crash
        // takes every process of the server at once.
        if let Some(pid) = self.pid() {
            signal_children(pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.process.kill();
    }

    /// Pauses the whole server with SIGSTOP, as a stopped VM would: the
    /// postmaster first (so it forks no new backend), then every process
    /// it started. New connections and statements in flight on open ones
    /// hang until [`resume`](Self::resume). No-op if not running.
    pub fn pause(&mut self) {
        self.process.pause();
        if let Some(pid) = self.pid() {
            signal_children(pid, nix::sys::signal::Signal::SIGSTOP);
        }
    }

    /// Resumes a paused server with SIGCONT: its backends, then the
    /// postmaster. No-op if not running.
    pub fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            signal_children(pid, nix::sys::signal::Signal::SIGCONT);
        }
        self.process.resume();
    }

    /// Kills the server if it runs, starts it again on the same port with
    /// the same cluster (crash recovery replays the WAL) and waits until it
    /// accepts connections.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when it cannot start or does not answer in time.
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.kill();
        process::restart(&mut [self])
    }

    /// The whole log (the server's stderr, and initdb's output first).
    pub fn log(&self) -> String {
        self.process.log()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir().join(DATA_DIR)
    }

    fn program(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        // libpq's variables would point the readiness probe elsewhere.
        for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSERVICE"] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Runs `initdb`: a cluster that trusts local connections, with fsync
    /// off (a fixture need not survive the machine, only its process).
    fn init(&mut self) -> Result<(), FixtureError> {
        if let Some((uid, gid)) = self.run_as {
            chown(self.dir(), Some(uid), Some(gid)).map_err(|e| {
                FixtureError::io(
                    format!("handing {} to the postgres user", self.dir().display()),
                    e.into(),
                )
            })?;
        }
        let data = self.data_dir();
        let mut cmd = self.program("initdb");
        cmd.arg("-D")
            .arg(&data)
            .args(["-U", DB_USER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync");
        self.process.spawn(&mut cmd, Capture::All, |binary| {
            FixtureError::PostgresBinaryNotFound { binary }
        })?;
        let status = self
            .process
            .wait()
            .map_err(|e| FixtureError::io("running initdb", e))?;
        if !status.success() {
            return Err(self.failed(&format!("initdb failed ({status})")));
        }
        Ok(())
    }

    fn failed(&self, reason: &str) -> FixtureError {
        FixtureError::PostgresStartFailed {
            port: self.port,
            reason: reason.to_owned(),
            log_tail: self.process.log_tail(PANIC_LOG_LINES),
        }
    }
}

impl Server for PostgresServer {
    const ADDR_IN_USE: &'static str = ADDR_IN_USE;
    const READY_TIMEOUT: Duration = READY_TIMEOUT;
    const POLL_INTERVAL: Duration = POLL_INTERVAL;
    const NOT_READY: &'static str = "did not accept connections";

    fn process(&self) -> &Process {
        &self.process
    }

    fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    fn respawn(&mut self) -> Result<(), FixtureError> {
        let mut cmd = self.program("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg("listen_addresses=127.0.0.1")
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir().display()))
            .args(["-c", "fsync=off", "-c", "logging_collector=off"]);
        self.process.spawn(&mut cmd, Capture::All, |binary| {
            FixtureError::PostgresBinaryNotFound { binary }
        })
    }

    /// Ready when `pg_isready` says the server accepts connections and the
    /// cluster's `postmaster.pid` names `pid`: this fixture's server, not
    /// another that took the port.
    fn probe_ready(&self, pid: u32) -> bool {
        let ours = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .is_ok_and(|text| text.lines().next() == Some(pid.to_string().as_str()));
        ours && self
            .program("pg_isready")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
            .args(["-U", DB_USER])
            .output()
            .is_ok_and(|out| out.status.success())
    }

    fn start_failed(batch: &[&mut Self], i: usize, reason: &str) -> FixtureError {
        batch[i].failed(reason)
    }
}

/// The directory with the server programs: [`POSTGRES_BIN_ENV`], or the
/// newest Debian version's.
fn bin_dir() -> Result<PathBuf, FixtureError> {
    if let Some(dir) = std::env::var_os(POSTGRES_BIN_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let not_found = || FixtureError::PostgresBinaryNotFound {
        binary: format!("{DEBIAN_BIN_ROOT}/<version>/bin/postgres"),
    };
    let newest = std::fs::read_dir(DEBIAN_BIN_ROOT)
        .map_err(|_| not_found())?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|&(version, _)| version);
    newest.map(|(_, bin)| bin).ok_or_else(not_found)
}

/// As root, the user to run the server as; otherwise none.
fn unprivileged_user() -> Result<Option<(Uid, Gid)>, FixtureError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let name = std::env::var(POSTGRES_USER_ENV)
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_OS_USER.to_owned());
    match User::from_name(&name) {
        Ok(Some(user)) => Ok(Some((user.uid, user.gid))),
        _ => Err(FixtureError::PostgresUserMissing { user: name }),
    }
}

/// SIGKILLs every process whose parent is `parent` (the postmaster's
/// backends and helpers), found in `/proc`.
fn signal_children(parent: u32, signal: nix::sys::signal::Signal) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`: the comm may hold spaces, so read
        // after its closing parenthesis.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }
}
