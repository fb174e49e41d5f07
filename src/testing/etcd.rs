//! Real etcd fixtures (see [`super`] for the overview).
//!
//! Every member is a separate `etcd` process with its own client port, peer
//! port and temporary directory (`data/` for `--data-dir`, `etcd.log` for its
//! output). The members of a cluster are bootstrapped together with a static
//! `--initial-cluster` and an `--initial-cluster-token` unique to the cluster,
//! so members of two clusters running at the same time (parallel tests) can
//! never join each other.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::process::{self, Capture, PANIC_LOG_LINES, Process, Server};
use super::{FixtureError, free_ports, resolve_binary};

/// Environment variable that overrides the `etcd` binary to use.
pub const ETCD_ENV: &str = "FENCELOCK_ETCD";

/// How long members may take to report healthy after being spawned. A lone
/// member is healthy in well under a second and a cluster needs one election
/// on top; the margin is for loaded machines running tests in parallel.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Poll interval while waiting for readiness or health.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Connect timeout of a probe (on loopback a listener accepts at once, and
/// a closed port refuses at once).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// Upper bound of one whole HTTP exchange of a probe. When a member still
/// knows a leader but the cluster has lost its quorum, `/health` waits for a
/// quorum read with a 1 s timeout of its own before answering `false`; this
/// must be longer than that, so that such a member is reported unhealthy
/// rather than timing out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest HTTP response a probe reads (a member list of a few members is
/// well under a kilobyte).
const MAX_RESPONSE: usize = 64 * 1024;
/// Default `--heartbeat-interval`. etcd's own default is 100 ms.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Default `--election-timeout`. etcd's own default is 1000 ms.
const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(500);
/// Name of the log file (etcd's stdout and stderr) in the member's directory.
const LOG_FILE: &str = "etcd.log";
/// Name of the data directory (`--data-dir`) in the member's directory. etcd
/// creates it itself, with the 0700 permissions it insists on.
const DATA_DIR: &str = "data";
/// What etcd logs when a listener's port is taken (Go's error text).
const ADDR_IN_USE: &str = "address already in use";
/// etcd reads every flag from an `ETCD_<FLAG>` environment variable too; the
/// fixtures clear them so that a developer's environment cannot change the
/// members (flags given here win anyway, but the others would apply).
const ETCD_ENV_PREFIX: &str = "ETCD_";
/// The exception, passed through: etcd refuses to run on platforms it does
/// not list as supported (arm64 for 3.4, riscv64, ...) unless it is set.
const ETCD_ENV_KEPT: &[&str] = &["ETCD_UNSUPPORTED_ARCH"];

/// Numbers the clusters started by this process, for unique cluster tokens.
static NEXT_CLUSTER: AtomicU64 = AtomicU64::new(0);

/// `--initial-cluster-state` of a spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClusterState {
    /// First start: bootstrap the cluster from `--initial-cluster`.
    New,
    /// Restart: the data dir already holds the membership, rejoin with it.
    Existing,
}

impl ClusterState {
    fn flag(self) -> &'static str {
        match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        }
    }
}

/// Configures and starts an [`EtcdServer`] (or an [`EtcdCluster`]).
///
/// The defaults make failover fast enough for tests: a heartbeat every
/// 50 ms and an election timeout of 500 ms (etcd's defaults are 100 ms and
/// 1 s), so a killed or paused leader is replaced within about a second.
///
/// ```no_run
/// use std::time::Duration;
///
/// use fencelock::testing::EtcdServer;
///
/// let cluster = EtcdServer::builder()
///     .binary("/usr/bin/etcd")
///     .election_timeout(Duration::from_millis(1000))
///     .start_cluster(3)?;
/// # Ok::<(), fencelock::testing::FixtureError>(())
/// ```
#[derive(Debug, Clone)]
pub struct EtcdServerBuilder {
    binary: Option<PathBuf>,
    heartbeat_interval: Duration,
    election_timeout: Duration,
    args: Vec<OsString>,
}

impl Default for EtcdServerBuilder {
    fn default() -> Self {
        EtcdServerBuilder {
            binary: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
            args: Vec::new(),
        }
    }
}

impl EtcdServerBuilder {
    /// Creates a builder with the defaults: binary from the environment,
    /// 50 ms heartbeat interval, 500 ms election timeout, no extra arguments.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this `etcd` binary instead of `FENCELOCK_ETCD` / `PATH`. A bare
    /// name (no `/`) is looked up on `PATH`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Sets `--heartbeat-interval` (whole milliseconds; default 50 ms): how
    /// often the leader tells the followers it is alive.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets `--election-timeout` (whole milliseconds; default 500 ms): how
    /// long followers go without a heartbeat before electing a new leader,
    /// hence how long a cluster is unavailable after its leader is killed
    /// or paused. etcd refuses to start unless it is at least 5 times the
    /// heartbeat interval.
    pub fn election_timeout(mut self, timeout: Duration) -> Self {
        self.election_timeout = timeout;
        self
    }

    /// Appends an extra command-line argument for every `etcd` member
    /// (e.g. `.arg("--quota-backend-bytes=1048576")`). Arguments come after
    /// the fixture's own; overriding `--name`, `--data-dir`, the URL flags,
    /// the `--initial-cluster*` flags, `--logger` or `--log-outputs` breaks
    /// the fixture.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts a one-member cluster and waits until it reports healthy.
    pub fn start(self) -> Result<EtcdServer, FixtureError> {
        let mut cluster = self.start_cluster(1)?;
        Ok(cluster.members.remove(0))
    }

    /// Starts an `n`-member cluster: all members are spawned first (a quorum
    /// has to form before any of them is healthy), then every one is awaited
    /// until it reports healthy.
    pub fn start_cluster(self, n: usize) -> Result<EtcdCluster, FixtureError> {
        let binary = resolve_etcd(self.binary.as_deref())?;
        // When another process took one of the ports between free_ports and
        // the spawn, this starts over with a new cluster on new ports
        // (dropping the members kills them and removes their dirs).
        process::start_on_fresh_ports(|| {
            let mut cluster = self.spawn_cluster(&binary, n)?;
            process::wait_ready(&mut cluster.members.iter_mut().collect::<Vec<_>>(), None)?;
            Ok(cluster)
        })
    }

    /// Spawns the members of a new `n`-member cluster on fresh ports,
    /// without waiting for them.
    fn spawn_cluster(&self, binary: &Path, n: usize) -> Result<EtcdCluster, FixtureError> {
        // A fresh token per attempt: a failed attempt's members are gone,
        // but nothing should ever mistake the next one for them.
        let token = format!(
            "fencelock-{}-{}",
            std::process::id(),
            NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
        );
        // Every port up front: the initial cluster lists all peer URLs.
        let ports = free_ports(2 * n)?;
        let (client_ports, peer_ports) = ports.split_at(n);
        // The names embed the token, which makes them unique; the
        // readiness probe relies on that to recognise its own member.
        let names: Vec<String> = (0..n).map(|i| format!("{token}-m{i}")).collect();
        let initial_cluster = names
            .iter()
            .zip(peer_ports)
            .map(|(name, port)| format!("{name}=http://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(n);
        for ((name, &client_port), &peer_port) in
            names.into_iter().zip(client_ports).zip(peer_ports)
        {
            // On error, the members spawned so far are dropped: killed.
            members.push(EtcdServer::spawn_new(Config {
                binary: binary.to_owned(),
                name,
                token: token.clone(),
                client_port,
                peer_port,
                initial_cluster: initial_cluster.clone(),
                heartbeat_interval: self.heartbeat_interval,
                election_timeout: self.election_timeout,
                args: self.args.clone(),
            })?);
        }
        Ok(EtcdCluster { token, members })
    }
}

/// What a member is started with; fixed for its lifetime.
struct Config {
    binary: PathBuf,
    name: String,
    token: String,
    client_port: u16,
    peer_port: u16,
    initial_cluster: String,
    heartbeat_interval: Duration,
    election_timeout: Duration,
    args: Vec<OsString>,
}

/// One etcd process on 127.0.0.1: a one-member cluster of its own
/// ([`EtcdServer::start`]) or a member of an [`EtcdCluster`].
///
/// Dropping it kills the process (also while paused), reaps it and removes
/// its temporary directory. If the drop happens while the thread is
/// panicking (a failing test), the last 30 lines of its log are printed to
/// stderr.
pub struct EtcdServer {
    config: Config,
    process: Process,
}

impl fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdServer")
            .field("name", &self.config.name)
            .field("client_port", &self.config.client_port)
            .field("peer_port", &self.config.peer_port)
            .field("pid", &self.pid())
            .field("paused", &self.process.pause_requested())
            .field("dir", &self.dir())
            .field("binary", &self.config.binary)
            .finish()
    }
}

impl EtcdServer {
    /// Starts a one-member cluster with the default settings.
    pub fn start() -> Result<Self, FixtureError> {
        Self::builder().start()
    }

    /// Returns a builder for more control (explicit binary, timings, extra
    /// arguments, clusters).
    pub fn builder() -> EtcdServerBuilder {
        EtcdServerBuilder::new()
    }

    /// The member's name (`--name`), unique to this fixture.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.config.client_port)
    }

    /// The client URLs of the cluster this server is alone in: its
    /// [`endpoint`](Self::endpoint). For code that takes an endpoint list.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    /// The client port. It stays the same across restarts.
    pub fn client_port(&self) -> u16 {
        self.config.client_port
    }

    /// The client socket address, `127.0.0.1:PORT`.
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            self.config.client_port,
        ))
    }

    /// The peer (raft) port. It stays the same across restarts.
    pub fn peer_port(&self) -> u16 {
        self.config.peer_port
    }

    /// The peer URL, `http://127.0.0.1:PEER_PORT`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.config.peer_port)
    }

    /// The member's directory (`data/` and `etcd.log`).
    pub fn dir(&self) -> &Path {
        self.process.dir()
    }

    /// The member's data directory (`--data-dir`), kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join(DATA_DIR)
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

    /// One probe: whether the process is running and answers `GET /health`
    /// with `"health":"true"`, i.e. it sees a leader and a quorum read
    /// through it succeeds. Takes up to about 2 s when the member is hung or
    /// the cluster has just lost its quorum; a paused member is reported
    /// unhealthy without probing.
    pub fn is_healthy(&self) -> bool {
        !self.process.pause_requested() && self.is_running() && probe_health(self.client_addr())
    }

    /// Probes until [`is_healthy`](Self::is_healthy) or until `timeout` has
    /// passed (plus at most one probe), and returns the last answer.
    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.is_healthy())
    }

    /// Kills the process with SIGKILL and reaps it. Works while paused.
    /// No-op if it is not running. The data directory is kept.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Pauses the process with SIGSTOP: it keeps its sockets open but answers
    /// nothing (neither clients nor peers) until [`resume`](Self::resume).
    /// No-op if not running.
    pub fn pause(&mut self) {
        self.process.pause();
    }

    /// Resumes a paused process with SIGCONT, without waiting for it to be
    /// healthy again (see [`wait_healthy`](Self::wait_healthy)). No-op if
    /// not running.
    pub fn resume(&mut self) {
        self.process.resume();
    }

    /// Kills the process if it is running, then starts it again on the same
    /// ports with the same data directory (`--initial-cluster-state
    /// existing`), and waits until it reports healthy.
    ///
    /// A member only becomes healthy with a quorum: in a cluster that has
    /// lost a majority, restart several members at once with
    /// [`EtcdCluster::restart_members`]. On error the process is killed.
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        process::restart(&mut [self])
    }

    /// The whole log (etcd's output; read from disk, empty if unreadable).
    /// It is appended to across restarts.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Creates the directory and spawns a new member (without waiting).
    fn spawn_new(config: Config) -> Result<Self, FixtureError> {
        let label = format!("etcd {} 127.0.0.1:{}", config.name, config.client_port);
        let mut member = EtcdServer {
            config,
            process: Process::new(label, "fencelock-etcd-", LOG_FILE)?,
        };
        member.spawn(ClusterState::New)?;
        Ok(member)
    }

    /// Spawns the process on the member's ports (the previous one must be
    /// gone), with its output appended to the log file.
    fn spawn(&mut self, state: ClusterState) -> Result<(), FixtureError> {
        let mut cmd = self.command(state);
        self.process.spawn(&mut cmd, Capture::All, |binary| {
            FixtureError::EtcdBinaryNotFound { binary }
        })
    }

    /// The command line: the member's identity, URLs and cluster, its
    /// timings, then the builder's arguments; without `ETCD_*` variables.
    fn command(&self, state: ClusterState) -> Command {
        let config = &self.config;
        let client_url = self.endpoint();
        let peer_url = self.peer_url();
        let mut cmd = Command::new(&config.binary);
        cmd.arg("--name")
            .arg(&config.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(&config.initial_cluster)
            .arg("--initial-cluster-state")
            .arg(state.flag())
            .arg("--initial-cluster-token")
            .arg(&config.token)
            .arg("--heartbeat-interval")
            .arg(config.heartbeat_interval.as_millis().to_string())
            .arg("--election-timeout")
            .arg(config.election_timeout.as_millis().to_string())
            // Structured logs to stderr, which goes to the log file: the
            // form etcd recommends from 3.4 on (3.4's default, capnslog, may
            // log to journald instead).
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(&config.args);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|key| {
                key.starts_with(ETCD_ENV_PREFIX) && !ETCD_ENV_KEPT.contains(&key)
            }) {
                cmd.env_remove(&key);
            }
        }
        cmd
    }

    /// The log tail labelled with the member's name and ports.
    fn labelled_log_tail(&self) -> String {
        format!(
            "---- member {} (client 127.0.0.1:{}, peer 127.0.0.1:{}) log tail ----\n{}\n",
            self.config.name,
            self.config.client_port,
            self.config.peer_port,
            self.log_tail(PANIC_LOG_LINES).trim_end(),
        )
    }
}

impl Server for EtcdServer {
    const ADDR_IN_USE: &'static str = ADDR_IN_USE;
    const READY_TIMEOUT: Duration = READY_TIMEOUT;
    const POLL_INTERVAL: Duration = POLL_INTERVAL;
    const NOT_READY: &'static str = "not healthy";

    fn process(&self) -> &Process {
        &self.process
    }

    fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    fn respawn(&mut self) -> Result<(), FixtureError> {
        self.spawn(ClusterState::Existing)
    }

    /// Whether the spawned process is ready: healthy, and the member list it
    /// serves names this member. The second check makes sure the answer
    /// came from this fixture's process and not from another etcd that took
    /// the port meanwhile (the names are unique); it is asked only once
    /// healthy because etcd 3.5+ serves the list through raft.
    fn probe_ready(&self, _pid: u32) -> bool {
        probe_health(self.client_addr()) && probe_identity(self.client_addr(), &self.config.name)
    }

    /// The error for member `i` of a batch, with every batch member's log
    /// tail (the cause of a cluster that does not form may be in any of
    /// them).
    fn start_failed(members: &[&mut Self], i: usize, reason: &str) -> FixtureError {
        FixtureError::EtcdStartFailed {
            name: members[i].config.name.clone(),
            client_port: members[i].config.client_port,
            reason: reason.to_owned(),
            log_tail: members.iter().map(|m| m.labelled_log_tail()).collect(),
        }
    }
}

/// An etcd cluster of N members on 127.0.0.1: one raft group, one keyspace,
/// available while a majority of its members runs.
///
/// Members are addressed by index (`0..len()`), and killed, paused, resumed
/// and restarted through [`member_mut`](Self::member_mut). Dropping the
/// cluster drops every member.
///
/// ```no_run
/// use std::time::Duration;
///
/// use fencelock::testing::EtcdCluster;
///
/// let mut cluster = EtcdCluster::start(3)?;
/// cluster.member_mut(1).kill();
/// cluster.member_mut(2).kill();
/// // No quorum: the survivor cannot serve.
/// assert!(!cluster.member(0).wait_healthy(Duration::from_secs(5)));
/// cluster.restart_members(&[1, 2])?;
/// assert!(cluster.wait_healthy(Duration::from_secs(10)));
/// # Ok::<(), fencelock::testing::FixtureError>(())
/// ```
#[derive(Debug)]
pub struct EtcdCluster {
    token: String,
    members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts an `n`-member cluster with the default settings and waits
    /// until every member reports healthy.
    pub fn start(n: usize) -> Result<Self, FixtureError> {
        EtcdServer::builder().start_cluster(n)
    }

    /// The client URL of every member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// The cluster's `--initial-cluster-token`, unique to this fixture.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn member(&self, i: usize) -> &EtcdServer {
        &self.members[i]
    }

    /// Member `i`, mutably (to kill, pause, resume or restart it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn member_mut(&mut self, i: usize) -> &mut EtcdServer {
        &mut self.members[i]
    }

    /// Iterates over the members.
    pub fn iter(&self) -> impl Iterator<Item = &EtcdServer> {
        self.members.iter()
    }

    /// Iterates mutably over the members.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut EtcdServer> {
        self.members.iter_mut()
    }

    /// Restarts the given members together, like
    /// [`EtcdServer::restart`] but spawning all of them before waiting for
    /// any: needed to bring back a majority (e.g. every member of a killed
    /// cluster). Duplicate indices count once. On error the given members
    /// are killed.
    ///
    /// # Panics
    /// If an index is `>= self.len()`.
    pub fn restart_members(&mut self, indices: &[usize]) -> Result<(), FixtureError> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.members.len()) {
            panic!(
                "member index {i} out of range for a cluster of {}",
                self.members.len()
            );
        }
        let mut batch: Vec<&mut EtcdServer> = self
            .members
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| indices.contains(i))
            .map(|(_, member)| member)
            .collect();
        process::restart(&mut batch)
    }

    /// Probes until every member is healthy in the same round, or until
    /// `timeout` has passed (plus at most one round), and returns the last
    /// answer. A killed or paused member is never healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.members.iter().all(EtcdServer::is_healthy))
    }

    /// The tail (last 30 lines) of every member's log, labelled with the
    /// member index, name and ports, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, member) in self.members.iter().enumerate() {
            out.push_str(&format!("[member {i}] "));
            out.push_str(&member.labelled_log_tail());
        }
        out
    }
}

impl<'a> IntoIterator for &'a EtcdCluster {
    type Item = &'a EtcdServer;
    type IntoIter = std::slice::Iter<'a, EtcdServer>;

    fn into_iter(self) -> Self::IntoIter {
        self.members.iter()
    }
}

/// Calls `probe` until it returns true or `timeout` has passed (checked
/// after each call), and returns its last answer.
fn poll_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// `GET /health` answers 200 with `"health":"true"` (503 with `"false"`
/// when the member has no leader or the quorum read fails).
fn probe_health(addr: SocketAddr) -> bool {
    matches!(
        http(addr, "GET", "/health", ""),
        Ok((200, body)) if body.contains(r#""health":"true""#)
    )
}

/// The member list served at `addr` (through the v3 JSON gateway) names the
/// member `name`.
fn probe_identity(addr: SocketAddr, name: &str) -> bool {
    matches!(
        http(addr, "POST", "/v3/cluster/member/list", "{}"),
        Ok((200, body)) if body.contains(&format!(r#""name":"{name}""#))
    )
}

/// One HTTP/1.0 exchange, bounded by [`PROBE_TIMEOUT`] as a whole: the
/// status code and the body. HTTP/1.0 because the server then closes the
/// connection after the response, so the response is simply everything up
/// to EOF (no keep-alive, no chunked encoding).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> io::Result<(u16, String)> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut response = Vec::new();
    let mut buf = [0; 4096];
    loop {
        // Per-read timeouts alone would let a trickling server go on for
        // ever; the remaining time bounds the whole exchange.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf)? {
            0 => break,
            n => response.extend_from_slice(&buf[..n]),
        }
        if response.len() > MAX_RESPONSE {
            return Err(invalid("HTTP response too large"));
        }
    }
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of the HTTP headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP status"))?;
    Ok((status, body.to_owned()))
}

/// Finds the binary: explicit path, else `FENCELOCK_ETCD`, else `etcd` on
/// `PATH`.
fn resolve_etcd(explicit: Option<&Path>) -> Result<PathBuf, FixtureError> {
    resolve_binary(explicit, ETCD_ENV, "etcd")
        .map_err(|binary| FixtureError::EtcdBinaryNotFound { binary })
}
