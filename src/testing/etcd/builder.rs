//! Configuring and starting etcd fixtures: the builder, and the bootstrap
//! of a new cluster's members.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ETCD_ENV, EtcdCluster, EtcdServer};
use crate::testing::process;
use crate::testing::{FixtureError, free_ports, resolve_binary};

/// Default `--heartbeat-interval`. etcd's own default is 100 ms.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Default `--election-timeout`. etcd's own default is 1000 ms.
const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// Numbers the clusters started by this process, for unique cluster tokens.
static NEXT_CLUSTER: AtomicU64 = AtomicU64::new(0);

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
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start(self) -> Result<EtcdServer, FixtureError> {
        let mut cluster = self.start_cluster(1)?;
        Ok(cluster.members.remove(0))
    }

    /// Starts an `n`-member cluster: all members are spawned first (a quorum
    /// has to form before any of them is healthy), then every one is awaited
    /// until it reports healthy.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
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
pub(super) struct Config {
    pub(super) binary: PathBuf,
    pub(super) name: String,
    pub(super) token: String,
    pub(super) client_port: u16,
    pub(super) peer_port: u16,
    pub(super) initial_cluster: String,
    pub(super) heartbeat_interval: Duration,
    pub(super) election_timeout: Duration,
    pub(super) args: Vec<OsString>,
}

/// Finds the binary: explicit path, else `FENCELOCK_ETCD`, else `etcd` on
/// `PATH`.
fn resolve_etcd(explicit: Option<&Path>) -> Result<PathBuf, FixtureError> {
    resolve_binary(explicit, ETCD_ENV, "etcd")
        .map_err(|binary| FixtureError::EtcdBinaryNotFound { binary })
}
