//! Real redis-server fixtures (see [`super`] for the overview).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{self, Capture, PANIC_LOG_LINES, Process, Server};
use super::{FixtureError, free_ports, resolve_binary};

/// Environment variable that overrides the `redis-server` binary to use.
pub const REDIS_SERVER_ENV: &str = "FENCELOCK_REDIS_SERVER";

/// Socket timeouts used by the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Name of the server log file inside the node's directory.
const LOG_FILE: &str = "redis.log";
/// Name of the unix socket a TLS node also listens on, inside its
/// directory (see [`RedisServerBuilder::tls`]).
const SOCKET_FILE: &str = "redis.sock";

/// How a node keeps its data across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// Nothing on disk (`--save "" --appendonly no`): a restart always comes
    /// back empty. Default.
    #[default]
    None,
    /// Append-only file with `appendfsync always`: every acknowledged write
    /// survives SIGKILL.
    Aof,
}

/// What [`RedisServer::restart`] does with the node's data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Keep the data files: with [`Persistence::Aof`] the data comes back.
    KeepData,
    /// Delete the data files (AOF directory, `dump.rdb`, ...) before starting:
    /// the node comes back empty. The log file is kept.
    WipeData,
}

/// Configures and starts a [`RedisServer`] (or [`RedisNodes`]).
///
/// ```no_run
/// use fencelock::testing::{Persistence, RedisServer};
///
/// let server = RedisServer::builder()
///     .binary("/usr/bin/redis-server")
///     .persistence(Persistence::Aof)
///     .start()?;
/// # Ok::<(), fencelock::testing::FixtureError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    binary: Option<PathBuf>,
    persistence: Persistence,
    args: Vec<OsString>,
    tls: Option<TlsFiles>,
}

/// The PEM files of a TLS node (see [`RedisServerBuilder::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl RedisServerBuilder {
    /// Creates a builder with the defaults: binary from the environment,
    /// [`Persistence::None`], no extra arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this `redis-server` binary instead of `FENCELOCK_REDIS_SERVER` /
    /// `PATH`. A bare name (no `/`) is looked up on `PATH`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Sets how the server keeps its data across restarts.
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Appends an extra command-line argument for `redis-server`
    /// (e.g. `.arg("--maxmemory").arg("10mb")`). Arguments come after the
    /// fixture's own, so they can override them; overriding `--port`,
    /// `--bind`, `--dir`, `--logfile` or `--daemonize` breaks the fixture.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Serves TLS only: the TCP port speaks TLS (`--tls-port`, with
    /// `--port 0`), with the server certificate `cert` and its private key
    /// `key` (PEM files, the certificate valid for `127.0.0.1`), and `ca`
    /// (PEM) as the roots for client certificates. Clients are not asked
    /// for a certificate (`--tls-auth-clients no`); `.arg("--tls-auth-clients")
    /// .arg("yes")` asks them.
    ///
    /// [`url`](RedisServer::url) is then `rediss://127.0.0.1:PORT`, and
    /// [`port`](RedisServer::port) the TLS port. The fixture itself checks
    /// that a server is up (after a start, a restart) over a unix socket in
    /// the node's directory, [`socket`](RedisServer::socket): that needs no
    /// TLS client in the fixture, and no plain TCP port that a test could
    /// reach by mistake. Tests may use the socket too, to look at the data
    /// without TLS. Kill, pause, resume and restart work as without TLS.
    ///
    /// Needs a `redis-server` built with TLS (Debian's is).
    pub fn tls(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca: impl Into<PathBuf>,
    ) -> Self {
        self.tls = Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
        });
        self
    }

    /// Starts one server and waits until it answers `PING`.
    pub fn start(self) -> Result<RedisServer, FixtureError> {
        let mut nodes = self.start_nodes(1)?;
        Ok(nodes.nodes.remove(0))
    }

    /// Starts `n` independent servers in parallel (all spawned first, then
    /// all awaited) and waits until every one answers `PING`.
    pub fn start_nodes(self, n: usize) -> Result<RedisNodes, FixtureError> {
        let binary = resolve_redis_server(self.binary.as_deref())?;
        process::start_on_fresh_ports(|| {
            let mut nodes = Vec::with_capacity(n);
            for port in free_ports(n)? {
                nodes.push(RedisServer::spawn_new(&self, binary.clone(), port)?);
            }
            process::wait_ready(&mut nodes.iter_mut().collect::<Vec<_>>(), None)?;
            Ok(RedisNodes { nodes })
        })
    }
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
            .finish()
    }
}

impl RedisServer {
    /// Starts a server with [`Persistence::None`].
    pub fn start() -> Result<Self, FixtureError> {
        Self::builder().start()
    }

    /// Starts a server with the given persistence.
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
    pub fn restart(&mut self, data: Restart) -> Result<(), FixtureError> {
        self.kill();
        if data == Restart::WipeData {
            self.wipe_data()?;
        }
        process::restart(&mut [self])
    }

    /// The whole server log file (read from disk; empty if unreadable).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Creates the directory and spawns the process (without waiting).
    fn spawn_new(
        builder: &RedisServerBuilder,
        binary: PathBuf,
        port: u16,
    ) -> Result<Self, FixtureError> {
        let label = format!("redis-server 127.0.0.1:{port}");
        let mut server = RedisServer {
            binary,
            persistence: builder.persistence,
            args: builder.args.clone(),
            tls: builder.tls.clone(),
            port,
            process: Process::new(label, "fencelock-redis-", LOG_FILE)?,
        };
        server.spawn()?;
        Ok(server)
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
                cmd.args(["--appendonly", "yes"])
                    .args(["--appendfsync", "always"]);
            }
        }
        cmd.args(&self.args);
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
            if entry.file_name() == LOG_FILE {
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
    const READY_TIMEOUT: Duration = Duration::from_secs(10);
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
        match self.socket() {
            Some(socket) => probe_unix(&socket, pid),
            None => probe(self.addr(), pid),
        }
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

/// N independent redis-server nodes.
///
/// This is **not** a Redis Cluster: every node is a separate master with its
/// own data, as Redlock needs. Dropping it drops every node.
#[derive(Debug)]
pub struct RedisNodes {
    nodes: Vec<RedisServer>,
}

impl RedisNodes {
    /// Starts `n` nodes with [`Persistence::None`], in parallel.
    pub fn start(n: usize) -> Result<Self, FixtureError> {
        RedisServer::builder().start_nodes(n)
    }

    /// Starts `n` nodes with the given persistence, in parallel.
    pub fn start_with(n: usize, persistence: Persistence) -> Result<Self, FixtureError> {
        RedisServer::builder()
            .persistence(persistence)
            .start_nodes(n)
    }

    /// The URL of every node, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// Node `i`, mutably (to kill, pause or restart it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// Iterates over the nodes.
    pub fn iter(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter()
    }

    /// Iterates mutably over the nodes.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut RedisServer> {
        self.nodes.iter_mut()
    }

    /// The tail (last 30 lines) of every node's log, labelled with the node
    /// index and port, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!(
                "---- node {i} (127.0.0.1:{}) log tail ----\n",
                node.port
            ));
            let tail = node.log_tail(PANIC_LOG_LINES);
            out.push_str(tail.trim_end());
            out.push('\n');
        }
        out
    }
}

impl<'a> IntoIterator for &'a RedisNodes {
    type Item = &'a RedisServer;
    type IntoIter = std::slice::Iter<'a, RedisServer>;

    fn into_iter(self) -> Self::IntoIter {
        self.nodes.iter()
    }
}

/// One readiness probe: `PING` must answer `+PONG` and `INFO server` must
/// report our process id. `-LOADING` (AOF being loaded) counts as not ready.
fn probe(addr: SocketAddr, pid: u32) -> bool {
    probe_io(addr, pid).unwrap_or(false)
}

/// The same probe over a TLS node's unix socket (a TLS port would need a
/// TLS client here).
fn probe_unix(socket: &Path, pid: u32) -> bool {
    let probe = || -> io::Result<bool> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        let writer = stream.try_clone()?;
        ping_and_check_pid(writer, BufReader::new(stream), pid)
    };
    probe().unwrap_or(false)
}

fn probe_io(addr: SocketAddr, pid: u32) -> io::Result<bool> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let writer = stream.try_clone()?;
    ping_and_check_pid(writer, BufReader::new(stream), pid)
}

/// `PING` must answer `+PONG`, and `INFO server` report `pid`.
fn ping_and_check_pid(
    mut writer: impl Write,
    mut reader: BufReader<impl Read>,
    pid: u32,
) -> io::Result<bool> {
    writer.write_all(b"PING\r\n")?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("+PONG") {
        return Ok(false);
    }

    writer.write_all(b"INFO server\r\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    let Some(len) = line
        .strip_prefix('$')
        .and_then(|n| n.trim_end().parse::<usize>().ok())
    else {
        return Ok(false);
    };
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body);
    let reported = body
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse::<u32>().ok());
    Ok(reported == Some(pid))
}

/// Finds the binary: explicit path, else `FENCELOCK_REDIS_SERVER`, else
/// `redis-server` on `PATH`.
fn resolve_redis_server(explicit: Option<&Path>) -> Result<PathBuf, FixtureError> {
    resolve_binary(explicit, REDIS_SERVER_ENV, "redis-server")
        .map_err(|binary| FixtureError::BinaryNotFound { binary })
}
