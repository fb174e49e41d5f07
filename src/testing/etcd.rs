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
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
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
/// How many fresh sets of ports a new cluster tries when a port was taken.
const FRESH_PORT_ATTEMPTS: usize = 5;
/// How long a restart keeps retrying its (fixed) ports when they are in use.
const SAME_PORT_RETRY: Duration = Duration::from_secs(1);
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
        let mut attempt = 1;
        loop {
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
                    binary: binary.clone(),
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
            let ready = wait_ready(&mut members.iter_mut().collect::<Vec<_>>(), None);
            match ready {
                Ok(()) => return Ok(EtcdCluster { token, members }),
                // Another process took one of the ports between free_ports
                // and the spawn: start over with a new cluster on new ports
                // (dropping the members kills them and removes their dirs).
                Err(ReadyError::AddrInUse(_)) if attempt < FRESH_PORT_ATTEMPTS => attempt += 1,
                Err(ReadyError::AddrInUse(e) | ReadyError::Other(e)) => return Err(e),
            }
        }
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
    child: Mutex<Option<Child>>,
    paused: bool,
    /// Size of the log file when the current process was spawned.
    log_offset: usize,
    // Declared last so it is removed after the process is gone.
    dir: TempDir,
}

impl fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdServer")
            .field("name", &self.config.name)
            .field("client_port", &self.config.client_port)
            .field("peer_port", &self.config.peer_port)
            .field("pid", &self.pid())
            .field("paused", &self.paused)
            .field("dir", &self.dir.path())
            .field("binary", &self.config.binary)
            .finish()
    }
}

/// Outcome of waiting for spawned members.
enum ReadyError {
    /// A member exited because one of its ports was taken.
    AddrInUse(FixtureError),
    /// Any other failure.
    Other(FixtureError),
}

impl ReadyError {
    fn into_inner(self) -> FixtureError {
        match self {
            ReadyError::AddrInUse(e) | ReadyError::Other(e) => e,
        }
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
        self.dir.path()
    }

    /// The member's data directory (`--data-dir`), kept across restarts.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(DATA_DIR)
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

    /// One probe: whether the process is running and answers `GET /health`
    /// with `"health":"true"`, i.e. it sees a leader and a quorum read
    /// through it succeeds. Takes up to about 2 s when the member is hung or
    /// the cluster has just lost its quorum; a paused member is reported
    /// unhealthy without probing.
    pub fn is_healthy(&self) -> bool {
        !self.paused && self.is_running() && probe_health(self.client_addr())
    }

    /// Probes until [`is_healthy`](Self::is_healthy) or until `timeout` has
    /// passed (plus at most one probe), and returns the last answer.
    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.is_healthy())
    }

    /// Kills the process with SIGKILL and reaps it. Works while paused.
    /// No-op if it is not running. The data directory is kept.
    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = child.take() {
            kill_and_reap(&mut child, "etcd", self.config.client_port);
        }
        self.paused = false;
    }

    /// Pauses the process with SIGSTOP: it keeps its sockets open but answers
    /// nothing (neither clients nor peers) until [`resume`](Self::resume).
    /// No-op if not running.
    pub fn pause(&mut self) {
        if let Some(pid) = self.raw_pid_if_running()
            && signal::kill(pid, Signal::SIGSTOP).is_ok()
        {
            self.paused = true;
        }
    }

    /// Resumes a paused process with SIGCONT, without waiting for it to be
    /// healthy again (see [`wait_healthy`](Self::wait_healthy)). No-op if
    /// not running.
    pub fn resume(&mut self) {
        if let Some(pid) = self.raw_pid_if_running() {
            // Ignoring the error: the process may have died in the meantime.
            let _ = signal::kill(pid, Signal::SIGCONT);
        }
        self.paused = false;
    }

    /// Kills the process if it is running, then starts it again on the same
    /// ports with the same data directory (`--initial-cluster-state
    /// existing`), and waits until it reports healthy.
    ///
    /// A member only becomes healthy with a quorum: in a cluster that has
    /// lost a majority, restart several members at once with
    /// [`EtcdCluster::restart_members`]. On error the process is killed.
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        restart_batch(&mut [self])
    }

    /// The whole log (etcd's output; read from disk, empty if unreadable).
    /// It is appended to across restarts.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// What the current process has logged so far.
    fn log_since_spawn(&self) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(log.get(self.log_offset..).unwrap_or(&[])).into_owned()
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn raw_pid_if_running(&self) -> Option<Pid> {
        let pid = self.pid()?;
        Some(Pid::from_raw(i32::try_from(pid).ok()?))
    }

    /// Creates the directory and spawns a new member (without waiting).
    fn spawn_new(config: Config) -> Result<Self, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("fencelock-etcd-")
            .tempdir()
            .map_err(|e| FixtureError::io("creating the temp dir for etcd", e))?;
        let mut member = EtcdServer {
            config,
            child: Mutex::new(None),
            paused: false,
            log_offset: 0,
            dir,
        };
        member.spawn(ClusterState::New)?;
        Ok(member)
    }

    /// Spawns the process on the member's ports (the previous one must be
    /// gone), with its output appended to the log file.
    fn spawn(&mut self, state: ClusterState) -> Result<(), FixtureError> {
        let config = &self.config;
        let dir = self.dir.path();
        let log_path = dir.join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| FixtureError::io(format!("opening {}", log_path.display()), e))?;
        let log_offset = log.metadata().map_or(0, |m| m.len() as usize);
        let log_for_stderr = log
            .try_clone()
            .map_err(|e| FixtureError::io(format!("opening {}", log_path.display()), e))?;
        let client_url = self.endpoint();
        let peer_url = self.peer_url();
        let mut cmd = Command::new(&config.binary);
        cmd.arg("--name")
            .arg(&config.name)
            .arg("--data-dir")
            .arg(dir.join(DATA_DIR))
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
        cmd.current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr);
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                FixtureError::EtcdBinaryNotFound {
                    binary: config.binary.display().to_string(),
                }
            } else {
                FixtureError::io(format!("spawning {}", config.binary.display()), e)
            }
        })?;
        *self.child.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.log_offset = log_offset;
        self.paused = false;
        Ok(())
    }

    /// Whether the spawned process is ready: healthy, and the member list it
    /// serves names this member. The second check makes sure the answer
    /// came from this fixture's process and not from another etcd that took
    /// the port meanwhile (the names are unique); it is asked only once
    /// healthy because etcd 3.5+ serves the list through raft.
    fn probe_ready(&self) -> bool {
        probe_health(self.client_addr()) && probe_identity(self.client_addr(), &self.config.name)
    }

    /// If the process has exited, reaps it and says how; `None` while it
    /// runs.
    fn exit_status(&mut self) -> Option<String> {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => {
                *child = None;
                Some(status.to_string())
            }
            Some(Err(e)) => Some(format!("waiting for the process failed: {e}")),
            None => Some("the process is gone".to_owned()),
        }
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

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- etcd {} 127.0.0.1:{} log (last {PANIC_LOG_LINES} lines) ----\n{}\n\
                 ---- end of etcd {} 127.0.0.1:{} log ----",
                self.config.name,
                self.config.client_port,
                self.log_tail(PANIC_LOG_LINES).trim_end(),
                self.config.name,
                self.config.client_port,
            );
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
        restart_batch(&mut batch)
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

/// Kills every member of `batch`, respawns them all with their data, and
/// waits until all are healthy; kills them again on failure.
fn restart_batch(batch: &mut [&mut EtcdServer]) -> Result<(), FixtureError> {
    // Starts before the kills: the ports a killed member held are free at
    // once (SIGKILL closes its listeners), so a conflict means another
    // process took them, which is worth retrying only briefly.
    let respawn_until = Instant::now() + SAME_PORT_RETRY;
    for member in batch.iter_mut() {
        member.kill();
    }
    let result = batch
        .iter_mut()
        .try_for_each(|member| member.spawn(ClusterState::Existing))
        .and_then(|()| wait_ready(batch, Some(respawn_until)).map_err(ReadyError::into_inner));
    if result.is_err() {
        for member in batch.iter_mut() {
            member.kill();
        }
    }
    result
}

/// Waits until every spawned member of `members` is ready, with one
/// deadline for all: a member of a forming cluster is healthy only once a
/// quorum of them is up, so they are polled in turn rather than one after
/// the other. A member that exits fails the wait at once. If its port was
/// taken and `respawn_until` is given and not yet passed, it is respawned
/// on the same ports instead.
fn wait_ready(
    members: &mut [&mut EtcdServer],
    respawn_until: Option<Instant>,
) -> Result<(), ReadyError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut ready = vec![false; members.len()];
    loop {
        for i in 0..members.len() {
            if ready[i] {
                continue;
            }
            if members[i].probe_ready() {
                ready[i] = true;
                continue;
            }
            let Some(status) = members[i].exit_status() else {
                continue;
            };
            // The log is appended to across restarts: only this start's
            // part matters.
            let addr_in_use = members[i].log_since_spawn().contains(ADDR_IN_USE);
            if addr_in_use && respawn_until.is_some_and(|until| Instant::now() < until) {
                thread::sleep(Duration::from_millis(20));
                members[i]
                    .spawn(ClusterState::Existing)
                    .map_err(ReadyError::Other)?;
                continue;
            }
            let error = start_failed(members, i, &format!("the process exited ({status})"));
            return Err(if addr_in_use {
                ReadyError::AddrInUse(error)
            } else {
                ReadyError::Other(error)
            });
        }
        let Some(waiting) = ready.iter().position(|&r| !r) else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(ReadyError::Other(start_failed(
                members,
                waiting,
                &format!("not healthy within {READY_TIMEOUT:?}"),
            )));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The error for member `i` of a batch, with every batch member's log tail
/// (the cause of a cluster that does not form may be in any of them).
fn start_failed(members: &[&mut EtcdServer], i: usize, reason: &str) -> FixtureError {
    FixtureError::EtcdStartFailed {
        name: members[i].config.name.clone(),
        client_port: members[i].config.client_port,
        reason: reason.to_owned(),
        log_tail: members.iter().map(|m| m.labelled_log_tail()).collect(),
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
