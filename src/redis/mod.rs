//! Redlock over N independent Redis nodes. One node is the N = 1 case of the
//! same coordinator.
//!
//! Every request fans out to all nodes at once, each bounded by the per-node
//! timeout, so one dead or stopped node costs at most that timeout. See
//! `docs/algorithm.md` for the steps and the argument behind them.

mod acquire;
mod admin;
mod amnesia;
mod clock;
mod fanout;
mod faults;
mod fence;
mod fenced;
mod node;
mod order;
mod release;
mod renew;
mod replies;
mod requests;
mod scripts;
mod subscriber;
mod votes;

/// What the fuzz targets reach (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    pub(crate) use super::replies::decode_any;
    pub(crate) use super::scripts::{Keys, resource_of, scan_pattern};
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use fenced::{Fenced, FencedRead, FencedStore, FencedWrite};
pub use node::RedisNode;

use crate::backend::Background;
use crate::backend::ReleaseWatch;
use crate::backend::{Backend, Grant, Hold};
use crate::backend::{ForceReleased, ListCursor, ListPage, LockInfo};
use crate::error::{Error, Result};
use crate::options::LockOptions;
use order::{InflightTable, Releases, Rounds};
use scripts::Keys;
use subscriber::Subscriptions;

/// The Redlock backend: a quorum coordinator over independent Redis nodes.
///
/// ```no_run
/// # async fn demo() -> fencelock::Result<()> {
/// use fencelock::{Locker, LockOptions, Redlock};
///
/// let redlock = Redlock::from_urls([
///     "redis://10.0.0.1:6379",
///     "redis://10.0.0.2:6379",
///     "redis://10.0.0.3:6379",
/// ])?;
/// let locker = Locker::new(redlock, LockOptions::default())?;
/// let guard = locker.lock("nightly-billing").await?;
/// println!("fencing token {}", guard.token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Redlock {
    nodes: Arc<[RedisNode]>,
    subscriptions: Subscriptions,
    /// Fan-outs still out that later requests must not overtake.
    inflight: Arc<InflightTable>,
    /// Rounds under way, which decide how a round settles its slowest nodes.
    rounds: Rounds,
    /// Releases per key, which decide when one yields to other processes.
    releases: Releases,
    background: Background,
    /// How many nodes must agree: a majority of them.
    quorum: usize,
    /// How long a node that lost its data waits before it grants again, as
    /// set; see [`quarantine`](Self::quarantine).
    quarantine: Duration,
    /// The longest lease (ms, drift included) this coordinator was asked
    /// for: the quarantine it marks nodes with is never shorter.
    longest_lease: AtomicU64,
    /// Whether acquires and extends judge the nodes' clocks.
    clock_checks: bool,
}

impl Redlock {
    /// The most nodes one coordinator takes (deployments use 3, 5 or 7).
    pub const MAX_NODES: usize = 64;

    /// A coordinator over `nodes`: at least one and at most
    /// [`MAX_NODES`](Self::MAX_NODES), each a different server.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for no nodes, more than
    /// [`MAX_NODES`](Self::MAX_NODES), or one server listed twice (it would vote
    /// twice).
    pub fn new(nodes: Vec<RedisNode>) -> Result<Self> {
        if nodes.is_empty() {
            return Err(Error::InvalidOptions("no nodes given".into()));
        }
        if nodes.len() > Self::MAX_NODES {
            return Err(Error::InvalidOptions(format!(
                "{} nodes given; at most {} are supported",
                nodes.len(),
                Self::MAX_NODES
            )));
        }
        // One server listed twice would vote twice: a false quorum.
        for (i, node) in nodes.iter().enumerate() {
            if nodes[..i].iter().any(|n| n.name() == node.name()) {
                return Err(Error::InvalidOptions(format!(
                    "node {} is listed twice; every node must be an independent server",
                    node.name()
                )));
            }
        }
        let subscriptions = Subscriptions::new(
            nodes
                .iter()
                .filter_map(|n| n.notifications().cloned())
                .collect(),
        );
        Ok(Self {
            quorum: nodes.len() / 2 + 1,
            nodes: nodes.into(),
            subscriptions,
            inflight: Arc::default(),
            rounds: Rounds::default(),
            releases: Releases::default(),
            background: Background::default(),
            quarantine: Self::DEFAULT_QUARANTINE,
            longest_lease: AtomicU64::new(0),
            clock_checks: true,
        })
    }

    /// The same coordinator with the nodes' clocks judged or not (judged
    /// by default). Every acquire and extend then also asks each node its
    /// time, in the same round trip, and a node whose clock moved further
    /// between two answers than this client's monotonic clock could have,
    /// beyond the drift allowance, is taken for one that jumped forward or
    /// runs fast: locks there may end early, so its votes do not count
    /// until every lock it may have dropped has run out anyway, for a
    /// [`quarantine`](Self::quarantine). It is reported as
    /// [`NodeFault::Clock`](crate::NodeFault::Clock), by the metric
    /// [`NODE_CLOCK_JUMP`](crate::metrics::NODE_CLOCK_JUMP) and by a WARN
    /// event (docs/algorithm.md, section 16).
    ///
    /// Turned off, a node's clock is trusted as Redlock trusts it, and a
    /// jump forward beyond the drift allowance can let two owners hold at
    /// once; the fencing token still refuses the older one's writes where
    /// the resource checks it.
    pub fn with_clock_checks(mut self, on: bool) -> Self {
        self.clock_checks = on;
        self
    }

    /// How requests for leases of `ttl` judge the nodes' clocks, if they do.
    fn clock_rule(&self, ttl: Duration, options: &LockOptions) -> Option<clock::ClockRule> {
        self.clock_checks.then(|| clock::ClockRule {
            drift_factor: options.drift_factor,
            ttl,
            hold_off: self.quarantine(),
        })
    }

    /// The default [`with_quarantine`](Self::with_quarantine): 10 minutes.
    pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(600);

    /// The same coordinator with another quarantine: how long, by its own
    /// clock, a node that lost its data (found without the marker each node
    /// keeps) grants nothing before it votes again (docs/algorithm.md,
    /// section 15). Whatever lock it forgot has run out everywhere by then,
    /// so the quarantine must outlast every lease taken on these nodes:
    /// `ttl + lock_delay`, stretched by the drift factor. This coordinator
    /// lengthens it by itself to cover the leases it is asked for; leases
    /// of other processes it cannot know, so give every client of the same
    /// nodes a quarantine that covers the longest lease any of them takes.
    /// Default: [`DEFAULT_QUARANTINE`](Self::DEFAULT_QUARANTINE), which
    /// covers leases of up to about 9.9 minutes; a node that lost its data
    /// is rare, and only that node waits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a quarantine under 1 ms or over 48 h
    /// (the longest ttl with the longest lock-delay).
    pub fn with_quarantine(mut self, quarantine: Duration) -> Result<Self> {
        check_quarantine(quarantine)?;
        self.quarantine = quarantine;
        Ok(self)
    }

    /// How long a node that lost its data grants nothing, when this
    /// coordinator finds it: the quarantine set, or the longest lease it
    /// was asked for so far (drift included) if that is longer.
    pub fn quarantine(&self) -> Duration {
        Duration::from_millis(self.quarantine_ms())
    }

    fn quarantine_ms(&self) -> u64 {
        ttl_ms(self.quarantine).max(self.longest_lease.load(Ordering::Relaxed))
    }

    /// Notes a lease for `ttl`, so that the quarantine outlasts it: a node
    /// that lost its data must not grant while a lock it forgot may be
    /// valid elsewhere.
    fn note_lease(&self, ttl: Duration, options: &LockOptions) {
        let lease = Duration::from_millis(lease_ms(ttl, options));
        let needed = lease + crate::backend::drift(lease, options.drift_factor);
        self.longest_lease
            .fetch_max(ttl_ms(needed), Ordering::Relaxed);
    }

    /// The same coordinator with another quorum: how many nodes must agree
    /// to grant, extend or release a lock. Default: a majority, `N / 2 + 1`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] unless `quorum` is a majority of the nodes
    /// and at most their number: with less, two owners could each reach a
    /// quorum at once.
    pub fn with_quorum(mut self, quorum: usize) -> Result<Self> {
        let nodes = self.nodes.len();
        if quorum == 0 {
            return Err(Error::InvalidOptions("quorum must be at least 1".into()));
        }
        if quorum > nodes {
            return Err(Error::InvalidOptions(format!(
                "quorum {quorum} exceeds the {nodes} nodes"
            )));
        }
        if quorum * 2 <= nodes {
            return Err(Error::InvalidOptions(format!(
                "quorum {quorum} of {nodes} nodes is not a majority: two owners could each reach it"
            )));
        }
        self.quorum = quorum;
        Ok(self)
    }

    /// How many nodes must agree.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// A coordinator over nodes given by URL (see [`RedisNode::from_url`]).
    ///
    /// # Errors
    ///
    /// As [`RedisNode::from_url`] for each URL, then as [`new`](Self::new).
    pub fn from_urls<I, S>(urls: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes = urls
            .into_iter()
            .map(|url| RedisNode::from_url(url.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Self::new(nodes)
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// Waits until the requests this coordinator left running in the
    /// background have finished: the slowest nodes' replies to acquires and
    /// releases that returned as soon as a quorum decided, and the undoing
    /// of failed acquires. Every such request is bounded by the node
    /// timeout. Tests await it before looking at all nodes; before shutting
    /// a runtime down, release guards explicitly and then await it. A guard
    /// that was dropped instead releases from a task of its own, which this
    /// waits for only once that task has sent its requests.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits, and dropping it stops no work.
    pub async fn settled(&self) {
        self.background.idle().await;
    }
}

/// A quarantine in range: from 1 ms to 48 h (the longest ttl with the
/// longest lock-delay).
pub(crate) fn check_quarantine(quarantine: Duration) -> Result<()> {
    if quarantine < Duration::from_millis(1) || quarantine > Duration::from_secs(48 * 3600) {
        return Err(Error::InvalidOptions(format!(
            "quarantine {quarantine:?} is out of range: from 1 ms to 48 h"
        )));
    }
    Ok(())
}

pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    // Options validation caps the ttl far below u64::MAX ms.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How long a hold granted or renewed for `ttl` lives on a node, in ms:
/// the ttl and the lock-delay (`LockOptions::lock_delay`), so that a
/// holder that vanishes keeps the name taken for the delay after its
/// validity (computed from `ttl` alone) ended. A release deletes it at once.
pub(crate) fn lease_ms(ttl: Duration, options: &LockOptions) -> u64 {
    ttl_ms(ttl.saturating_add(options.lock_delay))
}

impl Backend for Redlock {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check_options(&self, options: &LockOptions) -> Result<()> {
        options.validate()?;
        self.note_lease(options.ttl, options);
        Ok(())
    }

    async fn try_acquire(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> Result<Grant> {
        self.acquire(hold, ttl, options).await
    }

    async fn extend(&self, hold: &Hold, ttl: Duration, options: &LockOptions) -> Result<Instant> {
        self.extend_hold(hold, ttl, options).await
    }

    async fn extend_many(
        &self,
        holds: &[(&Hold, Duration)],
        options: &LockOptions,
    ) -> Vec<Result<Instant>> {
        self.extend_holds(holds, options).await
    }

    async fn inspect(&self, key: &str, options: &LockOptions) -> Result<LockInfo> {
        self.inspect_lock(key, options).await
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> Result<ListPage> {
        self.list_page(prefix, cursor, options).await
    }

    async fn force_release(&self, key: &str, options: &LockOptions) -> Result<ForceReleased> {
        self.force_release_lock(key, options).await
    }

    fn waiting(&self) -> crate::backend::Waiting {
        crate::backend::Waiting::Notified
    }

    async fn downgrade(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        self.downgrade_hold(hold, options).await
    }

    fn watch_releases(
        &self,
        key: &str,
        _owner: &str,
        _mode: crate::backend::Mode,
        options: &LockOptions,
    ) -> Option<ReleaseWatch> {
        let lock = Keys::lock_key(&options.key_prefix, key);
        // A release is announced by the nodes that held the lock, at least a
        // quorum: listening on n - quorum + 1 nodes hears one of them.
        let n = self.nodes.len();
        let enough = n + 1 - self.quorum.min(n);
        self.subscriptions
            .watch(subscriber::channel_of(&lock), enough)
    }

    async fn release(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        self.release_hold(hold, options).await
    }

    async fn settled(&self) {
        Redlock::settled(self).await;
    }
}
