//! Real redis-server fixtures (see [`super`] for the overview).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{
    FixtureError, PANIC_LOG_LINES, alive, free_ports, kill_and_reap, read_lossy, resolve_binary,
    tail,
};

/// Environment variable that overrides the `redis-server` binary to use.
pub const REDIS_SERVER_ENV: &str = "FENCELOCK_REDIS_SERVER";

/// How long a server may take to answer `PING` after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval while waiting for readiness.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Socket timeouts used by the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// How many fresh ports a new server tries when its port was taken.
const FRESH_PORT_ATTEMPTS: usize = 5;
/// How long a restart keeps retrying its (fixed) port when it is in use.
const SAME_PORT_RETRY: Duration = Duration::from_secs(1);
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
        let binary = resolve_redis_server(self.binary.as_deref())?;
        let port = free_ports(1)?[0];
        let mut server =
            RedisServer::spawn_new(binary, self.persistence, self.args, self.tls, port)?;
        server.wait_ready_fresh()?;
        Ok(server)
    }

    /// Starts `n` independent servers in parallel (all spawned first, then
    /// all awaited) and waits until every one answers `PING`.
    pub fn start_nodes(self, n: usize) -> Result<RedisNodes, FixtureError> {
        let binary = resolve_redis_server(self.binary.as_deref())?;
        let ports = free_ports(n)?;
        let mut nodes = Vec::with_capacity(n);
        for port in ports {
            nodes.push(RedisServer::spawn_new(
                binary.clone(),
                self.persistence,
                self.args.clone(),
                self.tls.clone(),
                port,
            )?);
        }
        for node in &mut nodes {
            node.wait_ready_fresh()?;
        }
        Ok(RedisNodes { nodes })
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
    child: Mutex<Option<Child>>,
    paused: bool,
    /// Size of the log file when the current process was spawned.
    log_offset: usize,
    // Declared last so it is removed after the process is gone.
    dir: TempDir,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("pid", &self.pid())
            .field("paused", &self.paused)
            .field("persistence", &self.persistence)
            .field("dir", &self.dir.path())
            .field("binary", &self.binary)
            .finish()
    }
}

/// Outcome of waiting for a spawned server.
enum ReadyError {
    /// The server exited because its port was taken.
    AddrInUse(FixtureError),
    /// Any other failure.
    Other(FixtureError),
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
        self.tls.as_ref().map(|_| self.dir.path().join(SOCKET_FILE))
    }

    /// The socket address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port))
    }

    /// The node's directory (data files and `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The persistence mode the server was started with.
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// The process id, or `None` when the process is not running (killed or
    /// exited on its own).
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.lock_child();
        alive(&mut child)
            .then(|| child.as_ref().map(Child::id))
            .flatten()
    }

    /// Whether the process is alive. A paused process counts as running.
    pub fn is_running(&self) -> bool {
        alive(&mut self.lock_child())
    }

    /// Whether the process is alive and paused by [`pause`](Self::pause).
    pub fn is_paused(&self) -> bool {
        self.paused && self.is_running()
    }

    /// Kills the process with SIGKILL and reaps it. Works while paused.
    /// No-op if it is not running.
    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = child.take() {
            kill_and_reap(&mut child, "redis-server", self.port);
        }
        self.paused = false;
    }

    /// Pauses the process with SIGSTOP: it keeps its sockets open but answers
    /// nothing until [`resume`](Self::resume). No-op if not running.
    pub fn pause(&mut self) {
        if let Some(pid) = self.raw_pid_if_running()
            && signal::kill(pid, Signal::SIGSTOP).is_ok()
        {
            self.paused = true;
        }
    }

    /// Resumes a paused process with SIGCONT. No-op if not running.
    pub fn resume(&mut self) {
        if let Some(pid) = self.raw_pid_if_running() {
            // Ignoring the error: the process may have died in the meantime.
            let _ = signal::kill(pid, Signal::SIGCONT);
        }
        self.paused = false;
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
        let deadline = Instant::now() + SAME_PORT_RETRY;
        loop {
            self.spawn()?;
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(ReadyError::AddrInUse(_)) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(ReadyError::AddrInUse(e) | ReadyError::Other(e)) => {
                    self.kill();
                    return Err(e);
                }
            }
        }
    }

    /// The whole server log file (read from disk; empty if unreadable).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn raw_pid_if_running(&self) -> Option<Pid> {
        let pid = self.pid()?;
        Some(Pid::from_raw(i32::try_from(pid).ok()?))
    }

    /// Creates the directory and spawns the process (without waiting).
    fn spawn_new(
        binary: PathBuf,
        persistence: Persistence,
        args: Vec<OsString>,
        tls: Option<TlsFiles>,
        port: u16,
    ) -> Result<Self, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("fencelock-redis-")
            .tempdir()
            .map_err(|e| FixtureError::io("creating the temp dir for redis-server", e))?;
        let mut server = RedisServer {
            binary,
            persistence,
            args,
            tls,
            port,
            child: Mutex::new(None),
            paused: false,
            log_offset: 0,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Waits for a freshly created server; if its port was taken, retries
    /// on new ports a few times.
    fn wait_ready_fresh(&mut self) -> Result<(), FixtureError> {
        let mut attempt = 1;
        loop {
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(ReadyError::AddrInUse(_)) if attempt < FRESH_PORT_ATTEMPTS => {
                    attempt += 1;
                    self.kill();
                    self.port = free_ports(1)?[0];
                    self.spawn()?;
                }
                Err(ReadyError::AddrInUse(e) | ReadyError::Other(e)) => {
                    self.kill();
                    return Err(e);
                }
            }
        }
    }

    /// Spawns the process on `self.port` (the previous one must be gone).
    fn spawn(&mut self) -> Result<(), FixtureError> {
        let dir = self.dir.path();
        let mut cmd = Command::new(&self.binary);
        match &self.tls {
            None => {
                cmd.arg("--port").arg(self.port.to_string());
            }
            Some(tls) => {
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
                    .arg(dir.join(SOCKET_FILE))
                    .args(["--unixsocketperm", "700"]);
            }
        }
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
        cmd.args(&self.args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A server that refuses its arguments says why on stderr
            // before it opens its log: kept in the log for the panic.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(LOG_FILE))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            );
        let log_offset = fs::metadata(dir.join(LOG_FILE)).map_or(0, |m| m.len() as usize);
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                FixtureError::BinaryNotFound {
                    binary: self.binary.display().to_string(),
                }
            } else {
                FixtureError::io(format!("spawning {}", self.binary.display()), e)
            }
        })?;
        *self.child.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.log_offset = log_offset;
        self.paused = false;
        Ok(())
    }

    /// Waits until the spawned process answers `PING` itself (verified with
    /// its process id, in case another server grabbed the port).
    fn wait_ready(&mut self) -> Result<(), ReadyError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let Some(pid) = self.lock_child().as_ref().map(Child::id) else {
            return Err(ReadyError::Other(
                self.start_failed("the process is not running"),
            ));
        };
        loop {
            let ready = match self.socket() {
                Some(socket) => probe_unix(&socket, pid),
                None => probe(self.addr(), pid),
            };
            if ready {
                return Ok(());
            }
            let exited = {
                let mut child = self.lock_child();
                match child.as_mut().map(Child::try_wait) {
                    Some(Ok(None)) => None,
                    Some(Ok(Some(status))) => {
                        *child = None;
                        Some(status.to_string())
                    }
                    Some(Err(e)) => Some(format!("waiting for the process failed: {e}")),
                    None => Some("the process is gone".to_owned()),
                }
            };
            if let Some(status) = exited {
                let log = fs::read(self.log_path()).unwrap_or_default();
                // The log is appended to across restarts: only this start's
                // part matters.
                let this_start = String::from_utf8_lossy(log.get(self.log_offset..).unwrap_or(&[]));
                let error = self.start_failed(&format!("the process exited ({status})"));
                return if this_start.contains("Address already in use") {
                    Err(ReadyError::AddrInUse(error))
                } else {
                    Err(ReadyError::Other(error))
                };
            }
            if Instant::now() >= deadline {
                return Err(ReadyError::Other(
                    self.start_failed(&format!("no +PONG within {READY_TIMEOUT:?}")),
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn start_failed(&self, reason: &str) -> FixtureError {
        FixtureError::StartFailed {
            port: self.port,
            reason: reason.to_owned(),
            log_tail: self.log_tail(PANIC_LOG_LINES),
        }
    }

    /// Deletes everything in the node's directory except the log file.
    fn wipe_data(&self) -> Result<(), FixtureError> {
        let dir = self.dir.path();
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- redis-server 127.0.0.1:{} log (last {PANIC_LOG_LINES} lines) ----\n{}\n\
                 ---- end of redis-server 127.0.0.1:{} log ----",
                self.port,
                self.log_tail(PANIC_LOG_LINES).trim_end(),
                self.port,
            );
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
