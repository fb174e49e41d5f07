//! Which backend the commands talk to: the one place that knows the
//! backends (Redis nodes, or with the feature `etcd` an etcd cluster).
//! Every command is generic over [`Backend`], so a new backend is one
//! option in [`BackendArgs`] and one arm in [`run`].

use std::future::Future;
use std::time::Duration;

use clap::Args;
use fencelock::{Backend, LockOptions, Locker, Redlock};

use crate::output::Output;
use crate::{exit, parse_duration};

/// Where the locks live, and the options every command shares.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    #[command(flatten)]
    target: Target,

    /// How long one node may take to answer before it counts as failed.
    #[arg(
        long,
        value_name = "DURATION",
        env = "FENCELOCK_NODE_TIMEOUT",
        default_value = "200ms",
        value_parser = parse_duration
    )]
    node_timeout: Duration,

    /// Prepended to every resource name to form the Redis key; must match
    /// the prefix of the programs that take the same locks.
    #[arg(
        long,
        value_name = "PREFIX",
        env = "FENCELOCK_KEY_PREFIX",
        default_value = "fencelock:"
    )]
    key_prefix: String,

    /// Redis only: how long a node found to have lost its data grants
    /// nothing (default 10m); it must cover the longest lease of every
    /// program that takes locks on the same nodes.
    #[arg(
        long,
        value_name = "DURATION",
        env = "FENCELOCK_QUARANTINE",
        value_parser = parse_duration
    )]
    quarantine: Option<Duration>,
}

/// Exactly one backend must be given.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// The Redis nodes, comma-separated redis://, rediss:// or unix:// URLs
    /// (one node, or several independent ones for a Redlock quorum).
    #[arg(
        long,
        value_name = "URLS",
        env = "FENCELOCK_NODES",
        value_delimiter = ','
    )]
    nodes: Option<Vec<String>>,

    /// Instead of Redis: the endpoints of an etcd cluster, comma-separated
    /// http:// (or https://) URLs of its members.
    #[cfg(feature = "etcd")]
    #[arg(
        long,
        value_name = "ENDPOINTS",
        env = "FENCELOCK_ETCD",
        value_delimiter = ','
    )]
    etcd: Option<Vec<String>>,
}

impl BackendArgs {
    /// The shared options on top of `options`.
    pub fn options(&self, options: LockOptions) -> LockOptions {
        options
            .node_timeout(self.node_timeout)
            .key_prefix(self.key_prefix.clone())
    }
}

/// The URLs of a comma-separated list, trimmed; `None` (reported) when
/// one is empty.
fn trimmed<'a>(urls: &'a [String], from: &str, output: &Output) -> Option<Vec<&'a str>> {
    let urls: Vec<&str> = urls.iter().map(|u| u.trim()).collect();
    if urls.iter().any(|u| u.is_empty()) {
        output.error(
            "usage",
            &format!("empty URL in {from} (expected comma-separated URLs)"),
        );
        return None;
    }
    Some(urls)
}

/// Work to do with a Locker, whatever its backend.
pub trait Job {
    /// Runs the job; returns the exit code.
    fn run<B: Backend>(self, locker: Locker<B>) -> impl Future<Output = u8>;
}

/// Connects to the backend `args` names, with `options` (plus the shared
/// ones), and runs `job` there. Bad URLs and options are reported here,
/// before any I/O, as usage errors.
pub async fn run(args: &BackendArgs, options: LockOptions, job: impl Job, output: &Output) -> u8 {
    let options = args.options(options);
    let node_timeout = options.node_timeout;
    #[cfg(feature = "etcd")]
    if let Some(endpoints) = &args.target.etcd {
        if args.quarantine.is_some() {
            output.error(
                "usage",
                "--quarantine applies to Redis nodes, not to an etcd cluster",
            );
            return exit::USAGE;
        }
        let Some(endpoints) = trimmed(endpoints, "--etcd / FENCELOCK_ETCD", output) else {
            return exit::USAGE;
        };
        let etcd = match fencelock::Etcd::connect(&endpoints, None).await {
            Ok(etcd) => etcd,
            Err(e @ fencelock::Error::InvalidOptions(_)) => {
                output.error("usage", &e.to_string());
                return exit::USAGE;
            }
            Err(e) => {
                output.error("unavailable", &e.to_string());
                return exit::UNAVAILABLE;
            }
        };
        return match Locker::new(etcd, options) {
            Ok(locker) => run_and_settle(locker, job, node_timeout).await,
            Err(e) => {
                output.error("usage", &e.to_string());
                exit::USAGE
            }
        };
    }
    let Some(urls) = &args.target.nodes else {
        // The argument group makes clap refuse this case.
        output.error("usage", "no nodes given: use --nodes or FENCELOCK_NODES");
        return exit::USAGE;
    };
    let Some(urls) = trimmed(urls, "--nodes / FENCELOCK_NODES", output) else {
        return exit::USAGE;
    };
    let redlock = Redlock::from_urls(&urls).and_then(|redlock| match args.quarantine {
        Some(quarantine) => redlock.with_quarantine(quarantine),
        None => Ok(redlock),
    });
    let locker = match redlock.and_then(|nodes| Locker::new(nodes, options)) {
        Ok(locker) => locker,
        Err(e) => {
            output.error("usage", &e.to_string());
            return exit::USAGE;
        }
    };
    run_and_settle(locker, job, node_timeout).await
}

/// Runs `job`, then waits until the work it left in the background is
/// done ([`Locker::settled`]): once `main` returns, the runtime's shutdown
/// would drop it unsent, and what it would have removed (a Redis node's
/// late grant, an etcd waiter's queue ticket, a dropped guard's lock) would
/// stay on the servers until its ttl, refusing other runs meanwhile.
async fn run_and_settle<B: Backend>(
    locker: Locker<B>,
    job: impl Job,
    node_timeout: Duration,
) -> u8 {
    let settle = locker.clone();
    let code = job.run(locker).await;
    // `settled` is bounded by a few node timeouts; this bound is only a
    // last resort, with a margin for a busy machine.
    let _ = tokio::time::timeout(node_timeout * 4 + Duration::from_secs(1), settle.settled()).await;
    code
}
