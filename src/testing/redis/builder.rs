//! Configuring and starting redis-server fixtures.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{LOG_FILE, REDIS_SERVER_ENV, RedisNodes, RedisServer, fake_clock};
use crate::testing::process::{self, Process};
use crate::testing::{FixtureError, free_ports, resolve_binary};

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
    fake_clock: bool,
}

/// The PEM files of a TLS node (see [`RedisServerBuilder::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsFiles {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
    pub(super) ca: PathBuf,
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

    /// Runs the server with a wall clock of its own, which
    /// [`RedisServer::set_clock_offset`] moves ahead or back while it runs
    /// (and which keeps its offset across restarts, as a machine's clock
    /// does): keys then expire, and `TIME` answers, by that clock. Uses
    /// libfaketime (Debian's package `libfaketime`, or
    /// [`LIBFAKETIME_ENV`](super::LIBFAKETIME_ENV)), preloaded into the
    /// server.
    ///
    /// Needs a server built with libc's malloc: libfaketime cannot start
    /// inside one built with jemalloc, such as Debian's redis-server. The
    /// start fails with [`FixtureError::FakeClock`] then, and when the
    /// library is missing.
    pub fn fake_clock(mut self) -> Self {
        self.fake_clock = true;
        self
    }

    /// Starts one server and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start(self) -> Result<RedisServer, FixtureError> {
        let mut nodes = self.start_nodes(1)?;
        Ok(nodes.nodes.remove(0))
    }

    /// Starts `n` independent servers in parallel (all spawned first, then
    /// all awaited) and waits until every one answers `PING`.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start_nodes(self, n: usize) -> Result<RedisNodes, FixtureError> {
        let binary = resolve_redis_server(self.binary.as_deref())?;
        let clock = match self.fake_clock {
            true => {
                fake_clock::check_binary(&binary)?;
                Some(fake_clock::library()?)
            }
            false => None,
        };
        process::start_on_fresh_ports(|| {
            let mut nodes = Vec::with_capacity(n);
            for port in free_ports(n)? {
                nodes.push(self.spawn_node(binary.clone(), port, clock.clone())?);
            }
            process::wait_ready(&mut nodes.iter_mut().collect::<Vec<_>>(), None)?;
            Ok(RedisNodes { nodes })
        })
    }

    /// Creates a node's directory and spawns its process (without waiting).
    fn spawn_node(
        &self,
        binary: PathBuf,
        port: u16,
        fake_clock: Option<PathBuf>,
    ) -> Result<RedisServer, FixtureError> {
        let label = format!("redis-server 127.0.0.1:{port}");
        let mut server = RedisServer {
            binary,
            persistence: self.persistence,
            args: self.args.clone(),
            tls: self.tls.clone(),
            port,
            process: Process::new(label, "fencelock-redis-", LOG_FILE)?,
            fake_clock,
            clock_offset_ms: 0,
        };
        if server.fake_clock.is_some() {
            server.set_clock_offset(0)?;
        }
        server.spawn()?;
        Ok(server)
    }
}

/// Finds the binary: explicit path, else `FENCELOCK_REDIS_SERVER`, else
/// `redis-server` on `PATH`.
fn resolve_redis_server(explicit: Option<&Path>) -> Result<PathBuf, FixtureError> {
    resolve_binary(explicit, REDIS_SERVER_ENV, "redis-server")
        .map_err(|binary| FixtureError::BinaryNotFound { binary })
}
