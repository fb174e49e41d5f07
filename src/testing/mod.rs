//! Real-server fixtures for tests: redis-server and etcd.
//!
//! Everything here starts **real** processes (no mocks) on free loopback
//! ports, each in its own temporary directory. Tests can then kill, pause
//! (SIGSTOP), resume (SIGCONT) and restart them.
//!
//! The fixtures are fully synchronous (`std::process`, `std::net`), so they
//! can be used from plain `#[test]` functions as well as from inside tokio
//! tests.
//!
//! # Redis
//!
//! [`RedisServer`] is one `redis-server`, [`RedisNodes`] N independent ones
//! (as Redlock needs). Tests can [kill](RedisServer::kill),
//! [pause](RedisServer::pause), [resume](RedisServer::resume) and
//! [restart](RedisServer::restart) them, with or without their data.
//!
//! The binary is taken from the `FENCELOCK_REDIS_SERVER` environment variable
//! if it is set, otherwise `redis-server` is looked up on `PATH`. A missing
//! binary is an error, never a silent skip.
//!
//! ```no_run
//! use fencelock::testing::{Persistence, RedisNodes, RedisServer, Restart};
//!
//! let mut server = RedisServer::start_with(Persistence::Aof)?;
//! println!("connect to {}", server.url());
//! server.kill();
//! server.restart(Restart::KeepData)?;
//!
//! let nodes = RedisNodes::start(5)?;
//! assert_eq!(nodes.urls().len(), 5);
//! # Ok::<(), fencelock::testing::FixtureError>(())
//! ```
//!
//! # Network faults
//!
//! [`TcpProxy`] sits between clients and a server: it adds latency, holds
//! everything (both ways, or one [`Direction`] only) as a partition does,
//! or cuts open connections, while both ends run.
//!
//! # etcd
//!
//! [`EtcdServer`] is a one-member etcd cluster, [`EtcdCluster`] an N-member
//! one (one raft group, one keyspace). Members can be
//! [killed](EtcdServer::kill), [paused](EtcdServer::pause),
//! [resumed](EtcdServer::resume) and [restarted](EtcdServer::restart) with
//! their data, to test quorum loss and recovery.
//!
//! The binary is taken from the `FENCELOCK_ETCD` environment variable if it
//! is set, otherwise `etcd` is looked up on `PATH`. Again, a missing binary is
//! an error.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use fencelock::testing::EtcdCluster;
//!
//! let mut cluster = EtcdCluster::start(3)?;
//! println!("connect to {:?}", cluster.endpoints());
//! cluster.member_mut(0).kill();
//! // The other two still form a quorum.
//! assert!(cluster.member(1).wait_healthy(Duration::from_secs(10)));
//! cluster.member_mut(0).restart()?;
//! # Ok::<(), fencelock::testing::FixtureError>(())
//! ```

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};

mod etcd;
mod postgres;
mod process;
mod proxy;
mod redis;

pub use etcd::{ETCD_ENV, EtcdCluster, EtcdServer, EtcdServerBuilder};
pub use postgres::{DB_USER, DEFAULT_OS_USER, POSTGRES_BIN_ENV, POSTGRES_USER_ENV, PostgresServer};
pub use proxy::{Direction, TcpProxy};
pub use redis::{
    LIBFAKETIME_ENV, Persistence, REDIS_SERVER_ENV, RedisNodes, RedisServer, RedisServerBuilder,
    Restart,
};

/// Error from the fixtures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The `redis-server` binary could not be found.
    #[error(
        "redis-server binary not found ({binary}): install it with scripts/setup \
         or set {REDIS_SERVER_ENV}"
    )]
    BinaryNotFound {
        /// The path or name that was looked for.
        binary: String,
    },
    /// The server was spawned but did not become ready.
    #[error(
        "redis-server on 127.0.0.1:{port} failed to start: {reason}\n--- log tail ---\n{log_tail}"
    )]
    StartFailed {
        /// The port the server was started on.
        port: u16,
        /// Why the start is considered failed.
        reason: String,
        /// The last lines of the server's log file.
        log_tail: String,
    },
    /// An I/O error while preparing or spawning a server.
    #[error("{context}: {source}")]
    Io {
        /// What the fixture was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The `etcd` binary could not be found.
    #[error(
        "etcd binary not found ({binary}): install it with scripts/setup \
         (Debian package etcd-server) or set {ETCD_ENV}"
    )]
    EtcdBinaryNotFound {
        /// The path or name that was looked for.
        binary: String,
    },
    /// One or more etcd members were spawned (or restarted) but did not
    /// become healthy.
    #[error(
        "etcd member {name} on 127.0.0.1:{client_port} failed to start: {reason}\n\
         --- log tail ---\n{log_tail}"
    )]
    EtcdStartFailed {
        /// The member's name (`--name`).
        name: String,
        /// The member's client port.
        client_port: u16,
        /// Why the start is considered failed.
        reason: String,
        /// The last lines of the log of every member that was being started
        /// together (one member unless a cluster was starting), labelled.
        log_tail: String,
    },
    /// PostgreSQL's server programs are not where they were looked for.
    #[error(
        "PostgreSQL server program not found ({binary}): install it with scripts/setup \
         (Debian package postgresql) or set {POSTGRES_BIN_ENV}"
    )]
    PostgresBinaryNotFound {
        /// What was looked for.
        binary: String,
    },
    /// Run as root, with no unprivileged user to run PostgreSQL as.
    #[error(
        "PostgreSQL refuses to run as root and user {user:?} does not exist: \
         create it with scripts/setup or name another in {POSTGRES_USER_ENV}"
    )]
    PostgresUserMissing {
        /// The user looked for.
        user: String,
    },
    /// A PostgreSQL server (or its initdb) failed.
    #[error("postgres on 127.0.0.1:{port} failed to start: {reason}\n--- log tail ---\n{log_tail}")]
    PostgresStartFailed {
        /// The port it was to listen on.
        port: u16,
        /// What went wrong.
        reason: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A node cannot run with a clock of its own (see
    /// [`RedisServerBuilder::fake_clock`]).
    #[error("fake clock: {0}")]
    FakeClock(String),
}

impl FixtureError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        FixtureError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Finds a server binary: `explicit`, else the value of the environment
/// variable `env`, else `default` on `PATH`. A bare name (no `/`) is looked
/// up on `PATH`. The error is the path or name that was looked for, for the
/// caller's `BinaryNotFound`-style error.
fn resolve_binary(explicit: Option<&Path>, env: &str, default: &str) -> Result<PathBuf, String> {
    let wanted: PathBuf = match explicit {
        Some(path) => path.to_owned(),
        None => match std::env::var_os(env) {
            Some(value) if !value.is_empty() => PathBuf::from(value),
            _ => PathBuf::from(default),
        },
    };
    let not_found = || wanted.display().to_string();
    if wanted.components().count() > 1 || wanted.is_absolute() {
        return if wanted.is_file() {
            Ok(wanted)
        } else {
            Err(not_found())
        };
    }
    let path = std::env::var_os("PATH").ok_or_else(not_found)?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(&wanted))
        .find(|candidate| candidate.is_file())
        .ok_or_else(not_found)
}

/// Picks `n` distinct free loopback ports (all listeners are held until every
/// port is picked, so they differ).
fn free_ports(n: usize) -> Result<Vec<u16>, FixtureError> {
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| FixtureError::io("binding 127.0.0.1:0 to find a free port", e))?;
        listeners.push(listener);
    }
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| FixtureError::io("reading a free port", e))
        })
        .collect()
}
