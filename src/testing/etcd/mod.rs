//! Real etcd fixtures (see [`super`] for the overview).
//!
//! Every member is a separate `etcd` process with its own client port, peer
//! port and temporary directory (`data/` for `--data-dir`, `etcd.log` for its
//! output). The members of a cluster are bootstrapped together with a static
//! `--initial-cluster` and an `--initial-cluster-token` unique to the cluster,
//! so members of two clusters running at the same time (parallel tests) can
//! never join each other.
//!
//! Here one member ([`EtcdServer`]); in `builder` how members are configured
//! and a cluster bootstrapped, in `cluster` a cluster ([`EtcdCluster`]), in
//! `probe` how a member is found healthy. The process itself, and waiting
//! for members to be ready, is [`super::process`]'s.

mod builder;
mod cluster;
mod probe;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::FixtureError;
use super::process::{self, Capture, PANIC_LOG_LINES, Process, Server};
use builder::Config;
pub use builder::EtcdServerBuilder;
pub use cluster::EtcdCluster;
use probe::{POLL_INTERVAL, poll_until, probe_health, probe_identity};

/// Environment variable that overrides the `etcd` binary to use.
pub const ETCD_ENV: &str = "FENCELOCK_ETCD";

/// How long members may take to report healthy after being spawned. A lone
/// member is healthy in well under a second and a cluster needs one election
/// on top; the margin is for loaded machines running tests in parallel.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
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
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
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
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
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
