//! Real redis-server fixtures (see [`super`] for the overview).
//!
//! Here one node ([`RedisServer`]); in `builder` how nodes are configured
//! and started, in `nodes` a set of independent nodes ([`RedisNodes`]), in
//! `probe` how a node is found ready. The process itself, and waiting for
//! nodes to be ready, is [`super::process`]'s.

mod builder;
mod fake_clock;
mod nodes;
mod probe;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::FixtureError;
use super::process::{self, Capture, PANIC_LOG_LINES, Process, Server};
use builder::TlsFiles;
pub use builder::{Persistence, RedisServerBuilder};
pub use fake_clock::LIBFAKETIME_ENV;
pub use nodes::RedisNodes;
use probe::{Endpoint, probe, send};

/// Environment variable that overrides the `redis-server` binary to use.
pub const REDIS_SERVER_ENV: &str = "FENCELOCK_REDIS_SERVER";

/// Name of the server log file inside the node's directory.
const LOG_FILE: &str = "redis.log";
/// Name of the unix socket a TLS node also listens on, inside its
/// directory (see [`RedisServerBuilder::tls`]).
const SOCKET_FILE: &str = "redis.sock";

/// What [`RedisServer::restart`] does with the node's data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Keep the data files: with [`Persistence::Aof`] the data comes back.
    KeepData,
    /// Delete the data files (AOF directory, `dump.rdb`, ...) before starting:
    /// the node comes back empty. The log file is kept.
    WipeData,
}

/// One redis-server process on 127.0.0.1.
///
/// Dropping it kills the process (also while paused), reaps it and removes
/// its temporary directory. If the drop happens while the thread is
/// panicking (a failing test), the last 30 lines of the server log are
/// printed to stderr.
pub struct RedisServer {
    binary: PathBuf,
    persistence: Persistence,
    args: Vec<OsString>,
    tls: Option<TlsFiles>,
    port: u16,
    process: Process,
    /// The libfaketime library the server runs under, if it has a clock of
    /// its own ([`RedisServerBuilder::fake_clock`]).
    fake_clock: Option<PathBuf>,
    clock_offset_ms: i64,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("pid", &self.pid())
            .field("paused", &self.process.pause_requested())
            .field("persistence", &self.persistence)
            .field("dir", &self.dir())
            .field("binary", &self.binary)
            .field("fake_clock", &self.fake_clock.is_some())
            .field("clock_offset_ms", &self.clock_offset_ms)
            .finish()
    }
}

impl RedisServer {
    /// Starts a server with [`Persistence::None`].
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start() -> Result<Self, FixtureError> {
        Self::builder().start()
    }

    /// Starts a server with the given persistence.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start_with(persistence: Persistence) -> Result<Self, FixtureError> {
        Self::builder().persistence(persistence).start()
    }

    /// Returns a builder for more control (explicit binary, extra arguments).
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::new()
    }

    /// The connection URL, `redis://127.0.0.1:PORT`, or
    /// `rediss://127.0.0.1:PORT` for a TLS node.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The TCP port (the TLS port of a TLS node). It stays the same across
    /// restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the node serves TLS only (see [`RedisServerBuilder::tls`]).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The unix socket a TLS node also listens on (plain RESP, for the
    /// fixture's readiness check and for tests that look at the data);
    /// `None` for a node without TLS. Connect with `unix://` and this path.
    pub fn socket(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|_| self.dir().join(SOCKET_FILE))
    }

    /// The socket address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// Where the fixture itself talks to the node: the unix socket of a
    /// TLS node, the port of any other.
    fn endpoint(&self) -> Endpoint {
        match self.socket() {
            Some(socket) => Endpoint::Unix(socket),
            None => Endpoint::Tcp(self.addr()),
        }
    }

    /// The node's directory (data files and `redis.log`).
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// The persistence mode the server was started with.
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// The process id, or `None` when the process is not running (killed or
    /// exited on its own).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Whether the process is alive. A paused process counts as running.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Whether the process is alive and paused by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.process.is_paused()
    }

    /// Kills the process with SIGKILL and reaps it. Works while paused.
    /// No-op if it is not running.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Pauses the process with SIGSTOP: it keeps its sockets open but answers
    /// nothing until [`resume`](Self::resume). No-op if not running.
    pub fn pause(&mut self) {
        self.process.pause();
    }

    /// Resumes a paused process with SIGCONT. No-op if not running.
    pub fn resume(&mut self) {
        self.process.resume();
    }

    /// Kills the process if it is running, then starts it again on the same
    /// port and in the same directory, and waits until it answers `PING`
    /// (with [`Persistence::Aof`] and [`Restart::KeepData`], after the data
    /// is loaded).
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn restart(&mut self, data: Restart) -> Result<(), FixtureError> {
        self.kill();
        if data == Restart::WipeData {
            self.wipe_data()?;
        }
        process::restart(&mut [self])?;
        if self.persistence == Persistence::Aof {
            self.rewrite_aof();
        }
        Ok(())
    }

    /// Starts a rewrite of the append-only file. Redis measures the growth
    /// that triggers its own rewrite from the size it loaded at start, so
    /// a node restarted more often than its file doubles never rewrites
    /// it: each restart loads a longer file. Half an hour into an
    /// hour-long checker run a node under libfaketime took 26 s to load
    /// its file, and then more than the 30 s the fixture waits. After
    /// this rewrite the file starts again from the data's own size, and
    /// the threshold (`--auto-aof-rewrite-min-size 4mb`) bounds it.
    ///
    /// Best effort: a rewrite already running (Redis may start one as it
    /// loads) does the same, and a failed one only leaves the file as
    /// long as it was. A kill during the rewrite keeps the old file, which
    /// has every write (`appendfsync always`).
    fn rewrite_aof(&self) {
        let _ = send(&self.endpoint(), "BGREWRITEAOF");
    }

    /// Moves the server's wall clock to `offset_ms` ahead of the machine's
    /// (behind, if negative), at once and while it runs: keys expire by it,
    /// and `TIME` answers by it. The offset stays across restarts.
    ///
    /// # Errors
    ///
    /// [`FixtureError::FakeClock`] for a server started without
    /// [`RedisServerBuilder::fake_clock`]; [`FixtureError::Io`] when the
    /// offset cannot be written.
    pub fn set_clock_offset(&mut self, offset_ms: i64) -> Result<(), FixtureError> {
        if self.fake_clock.is_none() {
            return Err(FixtureError::FakeClock(format!(
                "{} was started without a clock of its own (RedisServerBuilder::fake_clock)",
                self.url()
            )));
        }
        fake_clock::write_offset(&self.dir().join(fake_clock::CLOCK_FILE), offset_ms)?;
        self.clock_offset_ms = offset_ms;
        Ok(())
    }

    /// How far the server's clock runs ahead of the machine's, in ms
    /// (`None` without [`RedisServerBuilder::fake_clock`]).
    pub fn clock_offset(&self) -> Option<i64> {
        self.fake_clock.as_ref().map(|_| self.clock_offset_ms)
    }

    /// The whole server log file (read from disk; empty if unreadable).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Spawns the process on `self.port` (the previous one must be gone).
    fn spawn(&mut self) -> Result<(), FixtureError> {
        let mut cmd = self.command();
        self.process.spawn(&mut cmd, Capture::Stderr, |binary| {
            FixtureError::BinaryNotFound { binary }
        })
    }

    /// The command line: where to listen, where the files go, how the data
    /// is kept, then the builder's arguments.
    fn command(&self) -> Command {
        let dir = self.dir();
        let mut cmd = Command::new(&self.binary);
        self.listen_args(&mut cmd);
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join(LOG_FILE))
            .args(["--daemonize", "no"])
            .args(["--save", ""])
            .args(["--protected-mode", "no"])
            .args(["--loglevel", "notice"])
            .args(["--databases", "1"]);
        match self.persistence {
            Persistence::None => {
                cmd.args(["--appendonly", "no"]);
            }
            Persistence::Aof => {
                // The append-only files' folder keeps its default name:
                // `--appenddirname` exists from Redis 7.0 on, and 6.2
                // refuses to start with it.
                // A small rewrite threshold keeps the file, and a restart's
                // load, short in hour-long runs: at the default 64 MB a
                // restart of a busy node took over 10 s to load on a loaded
                // machine.
                cmd.args(["--appendonly", "yes"])
                    .args(["--appendfsync", "always"])
                    .args(["--auto-aof-rewrite-min-size", "4mb"]);
            }
        }
        cmd.args(&self.args);
        if let Some(library) = &self.fake_clock {
            cmd.env("LD_PRELOAD", library)
                .env("FAKETIME_TIMESTAMP_FILE", dir.join(fake_clock::CLOCK_FILE))
                .env("FAKETIME_NO_CACHE", "1")
                .env("DONT_FAKE_MONOTONIC", "1");
        }
        cmd
    }

    /// The port arguments: plain TCP, or TLS only plus the unix socket
    /// the readiness probe uses.
    fn listen_args(&self, cmd: &mut Command) {
        let Some(tls) = &self.tls else {
            cmd.arg("--port").arg(self.port.to_string());
            return;
        };
        cmd.args(["--port", "0"])
            .arg("--tls-port")
            .arg(self.port.to_string())
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca)
            .args(["--tls-auth-clients", "no"])
            .arg("--unixsocket")
            .arg(self.dir().join(SOCKET_FILE))
            .args(["--unixsocketperm", "700"]);
    }

    /// Deletes everything in the node's directory except the log file.
    fn wipe_data(&self) -> Result<(), FixtureError> {
        let dir = self.dir();
        let entries =
            fs::read_dir(dir).map_err(|e| FixtureError::io("listing the redis data dir", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| FixtureError::io("listing the redis data dir", e))?;
            if entry.file_name() == LOG_FILE || entry.file_name() == fake_clock::CLOCK_FILE {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            let result = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            result.map_err(|e| FixtureError::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
    }
}

impl Server for RedisServer {
    const ADDR_IN_USE: &'static str = "Address already in use";
    /// Generous: a node restarted with its AOF on a machine also running
    /// a checker's clients can take seconds to load it.
    const READY_TIMEOUT: Duration = Duration::from_secs(30);
    const POLL_INTERVAL: Duration = Duration::from_millis(5);
    const NOT_READY: &'static str = "no +PONG";

    fn process(&self) -> &Process {
        &self.process
    }

    fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    fn respawn(&mut self) -> Result<(), FixtureError> {
        self.spawn()
    }

    /// `PING` answered by the process itself (its `INFO` names its pid).
    fn probe_ready(&self, pid: u32) -> bool {
        probe(&self.endpoint(), pid)
    }

    /// The error of node `i` alone: nodes are independent.
    fn start_failed(batch: &[&mut Self], i: usize, reason: &str) -> FixtureError {
        FixtureError::StartFailed {
            port: batch[i].port,
            reason: reason.to_owned(),
            log_tail: batch[i].log_tail(PANIC_LOG_LINES),
        }
    }
}
