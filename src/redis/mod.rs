//! Redlock over N independent Redis nodes. One node is the N = 1 case of the
//! same coordinator.
//!
//! Every request fans out to all nodes at once, each bounded by the per-node
//! timeout, so one dead or stopped node costs at most that timeout. See
//! `docs/algorithm.md` for the steps and the argument behind them.

mod admin;
mod fanout;
mod faults;
mod fence;
mod fenced;
mod node;
mod quorum;
mod replies;
mod scripts;
mod subscriber;

/// What the fuzz targets reach (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    pub(crate) use super::replies::decode_any;
    pub(crate) use super::scripts::{Keys, resource_of, scan_pattern};
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use redis::Cmd;

pub use fenced::{Fenced, FencedStore, FencedWrite};
pub use node::RedisNode;

use crate::admin::{ForceReleased, ListCursor, ListPage, LockInfo};
use crate::backend::{Backend, Grant, Hold};
use crate::error::{Error, NodeFailure, Result};
use crate::notify::ReleaseWatch;
use crate::options::LockOptions;
use fanout::{Answers, Background, FanOut};
use quorum::{Verdict, valid_until, verdict};
use replies::AcquireReply;
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
    background: Background,
}

/// Requests of this coordinator that returned before every node answered,
/// with the nodes that have answered since. A later request that must not
/// overtake one of them on a node waits, node by node, for its answer.
#[derive(Default)]
struct Inflight {
    /// Acquires, by hold id, with their resource: the hold's release and
    /// acquires nested in it must reach each node after the acquire, and so
    /// must a forced release of the resource.
    acquires: HashMap<String, (String, Answers)>,
    /// Releases, by lock key: an acquire of the key from this process right
    /// after a release would otherwise find the released hold still on the
    /// slowest nodes and be refused there.
    releases: HashMap<String, Answers>,
}

#[derive(Default)]
struct InflightTable(Mutex<Inflight>);

impl InflightTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inflight> {
        crate::sync::lock(&self.0)
    }
}

impl std::fmt::Debug for InflightTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inflight = self.lock();
        f.debug_struct("Inflight")
            .field("acquires", &inflight.acquires.len())
            .field("releases", &inflight.releases.len())
            .finish()
    }
}

impl Redlock {
    /// The most nodes one coordinator takes (deployments use 3, 5 or 7).
    pub const MAX_NODES: usize = 64;

    /// A coordinator over `nodes`: at least one and at most
    /// [`MAX_NODES`](Self::MAX_NODES), each a different server.
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
            nodes: nodes.into(),
            subscriptions,
            inflight: Arc::default(),
            background: Background::default(),
        })
    }

    /// A coordinator over nodes given by URL (see [`RedisNode::from_url`]).
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
    pub async fn settled(&self) {
        self.background.idle().await;
    }

    /// Sends a prepared release to every node (also those that failed or
    /// timed out: any of them may have applied the acquire) and waits for
    /// all.
    async fn release_everywhere(nodes: &[RedisNode], release: &Cmd, timeout: Duration) {
        join_all(nodes.iter().map(|n| n.release(release, Some(timeout)))).await;
    }

    /// Undoes a failed acquire on every node with `release`: at once when
    /// every node has answered. Otherwise in the background, so the caller
    /// is not held up by the slowest node: each node gets the release once
    /// it answered the acquire, and the next acquire of the key from this
    /// process waits for it node by node, as after any release.
    async fn undo(
        &self,
        mut acquire: FanOut<AcquireReply>,
        release: Cmd,
        lock_key: &str,
        timeout: Duration,
    ) {
        if acquire.is_done() {
            return Self::release_everywhere(&self.nodes, &release, timeout).await;
        }
        let late = acquire.answers();
        acquire.finish_in_background(&self.background, |_| async {});
        let release = Arc::new(release);
        let undo = FanOut::new(&self.nodes, timeout, &[Some(late)], |nodes, i| {
            let release = Arc::clone(&release);
            async move { nodes[i].release(&release, None).await }
        });
        self.settle_release(undo, lock_key);
    }

    /// Lets the acquire of a granted hold finish in the background; until
    /// it has, later requests about the hold wait, node by node, for the
    /// node's answer (see [`Inflight`]). `then` runs on the late replies.
    fn settle_late<F, Fut>(&self, mut acquire: FanOut<AcquireReply>, hold: &Hold, then: F)
    where
        F: FnOnce(Vec<fanout::Reply<AcquireReply>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let id = hold.id().to_owned();
        self.inflight
            .lock()
            .acquires
            .insert(id.clone(), (hold.key().to_owned(), acquire.answers()));
        let inflight = Arc::clone(&self.inflight);
        acquire.finish_in_background(&self.background, move |late| async move {
            then(late).await;
            inflight.lock().acquires.remove(&id);
        });
    }

    /// Lets a release finish in the background; until it has, acquires of
    /// the key wait, node by node, for the node's answer.
    fn settle_release(&self, mut release: FanOut<bool>, lock_key: &str) {
        let mine = release.answers();
        let key = lock_key.to_owned();
        self.inflight
            .lock()
            .releases
            .insert(key.clone(), mine.clone());
        let inflight = Arc::clone(&self.inflight);
        release.finish_in_background(&self.background, move |_| async move {
            let mut inflight = inflight.lock();
            // A later release of the key may have taken the slot.
            if inflight
                .releases
                .get(&key)
                .is_some_and(|a| a.same_channel(&mine))
            {
                inflight.releases.remove(&key);
            }
        });
    }
}

/// The nodes' answers to an acquire so far.
#[derive(Default)]
struct Votes {
    /// (node, fence value) of the nodes that granted.
    granted: Vec<(usize, u64)>,
    held: usize,
    /// The longest remaining ttl the refusing nodes reported.
    held_ttl: Option<Duration>,
    too_deep: usize,
    parent_missing: usize,
    failures: Vec<NodeFailure>,
}

impl Votes {
    fn add(&mut self, nodes: &[RedisNode], (i, reply): fanout::Reply<AcquireReply>) {
        match reply {
            Ok(AcquireReply::Granted { token }) => self.granted.push((i, token)),
            Ok(AcquireReply::Held { ttl }) => {
                self.held += 1;
                // The last copy to run out frees the lock everywhere.
                self.held_ttl = self.held_ttl.max(ttl);
            }
            Ok(AcquireReply::TooDeep) => self.too_deep += 1,
            Ok(AcquireReply::ParentMissing) => self.parent_missing += 1,
            Err(fault) => self.failures.push(nodes[i].failure(fault)),
        }
    }

    fn refused(&self) -> usize {
        self.held + self.too_deep + self.parent_missing
    }

    fn verdict(&self, nodes: usize, quorum: usize) -> Verdict {
        verdict(self.granted.len(), self.refused(), nodes, quorum)
    }
}

/// The nodes' answers to a request about one hold: present (yes) or not (no).
#[derive(Default)]
struct Tally {
    yes: usize,
    no: usize,
    failures: Vec<NodeFailure>,
}

impl Tally {
    fn add(&mut self, nodes: &[RedisNode], (i, reply): fanout::Reply<bool>) {
        match reply {
            Ok(true) => self.yes += 1,
            Ok(false) => self.no += 1,
            Err(fault) => self.failures.push(nodes[i].failure(fault)),
        }
    }

    /// Whether a quorum had the hold: `NotHeld` when so many did not that a
    /// quorum was impossible, `QuorumUnavailable` when too few answered.
    fn held(self, key: &str, nodes: usize, quorum: usize) -> Result<()> {
        match verdict(self.yes, self.no, nodes, quorum) {
            Verdict::Quorum => Ok(()),
            Verdict::Refused => Err(Error::NotHeld {
                key: key.to_owned(),
            }),
            Verdict::Undecided => Err(Error::QuorumUnavailable {
                confirmed: self.yes,
                refused: self.no,
                needed: quorum,
                failures: self.failures,
            }),
        }
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    // Options validation caps the ttl far below u64::MAX ms.
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Backend for Redlock {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn check_options(&self, options: &LockOptions) -> Result<()> {
        options.validate_for(self.nodes.len())
    }

    async fn try_acquire(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> Result<Grant> {
        let n = self.nodes.len();
        let quorum = options.quorum_for(n);
        let timeout = options.get_node_timeout();
        let started = Instant::now();
        let keys = Keys::new(options.get_key_prefix(), hold.key());
        let before = {
            let inflight = self.inflight.lock();
            [
                // A nested hold is granted only where its parent already is.
                hold.parent()
                    .and_then(|p| inflight.acquires.get(&p.id))
                    .map(|(_, answers)| answers.clone()),
                inflight.releases.get(&keys.lock).cloned(),
            ]
        };
        let request = Arc::new(scripts::acquire(
            &keys,
            hold,
            ttl_ms(ttl),
            options.get_max_reentrancy(),
        ));
        let mut acquire = FanOut::new(&self.nodes, timeout, &before, |nodes, i| {
            let request = Arc::clone(&request);
            async move { nodes[i].acquire(&request, None).await }
        });
        // Decide as soon as the replies so far settle it; the slowest nodes
        // finish in the background.
        let mut votes = Votes::default();
        while let Some(reply) = acquire.next().await {
            votes.add(&self.nodes, reply);
            if votes.verdict(n, quorum) != Verdict::Undecided {
                break;
            }
        }

        let outcome = match votes.verdict(n, quorum) {
            Verdict::Quorum => {
                let token = match hold.parent() {
                    // A nested hold shares its parent's token; no counting.
                    Some(parent) => Ok(parent.token),
                    None => {
                        let answered = acquire.answered().to_vec();
                        self.final_token(
                            &keys,
                            hold.owner(),
                            &votes.granted,
                            &answered,
                            quorum,
                            timeout,
                        )
                        .await
                    }
                };
                let valid_until = valid_until(started, ttl, options.get_drift_factor());
                match token {
                    Ok(_) if Instant::now() >= valid_until => Err(Error::ValidityExhausted {
                        key: hold.key().to_owned(),
                        elapsed: started.elapsed(),
                        ttl,
                    }),
                    Ok(token) => {
                        let first = hold.parent().is_none();
                        let values: Vec<u64> = votes.granted.iter().map(|&(_, v)| v).collect();
                        if acquire.is_done() {
                            if first {
                                fence::report_fresh_counters(&values, token.get());
                            }
                        } else {
                            // A late grant is part of this lock: released
                            // with it (after it, see `Inflight`) and
                            // renewed with it. A late refusal changes nothing.
                            let (nodes, keys) = (Arc::clone(&self.nodes), keys.clone());
                            self.settle_late(acquire, hold, move |late| async move {
                                if first {
                                    let target = token.get();
                                    fence::after_late_replies(
                                        nodes, keys, target, values, late, timeout,
                                    )
                                    .await;
                                }
                            });
                        }
                        return Ok(Grant { token, valid_until });
                    }
                    Err(e) => Err(e),
                }
            }
            Verdict::Refused if votes.too_deep > 0 => Err(Error::ReentrancyLimit {
                key: hold.key().to_owned(),
                limit: options.get_max_reentrancy(),
            }),
            // The outer hold this one nests in is gone from a quorum.
            Verdict::Refused if votes.parent_missing > 0 => Err(Error::NotHeld {
                key: hold.key().to_owned(),
            }),
            Verdict::Refused => Err(Error::NotObtained {
                key: hold.key().to_owned(),
                expires_in: votes.held_ttl,
            }),
            Verdict::Undecided => Err(Error::QuorumUnavailable {
                confirmed: votes.granted.len(),
                refused: votes.refused(),
                needed: quorum,
                failures: votes.failures,
            }),
        };
        // Whatever we got is undone on every node.
        // Not announced: no lock was freed, and waiters elsewhere woken by
        // it would only try, fail and undo in turn.
        self.undo(
            acquire,
            scripts::release(&keys, hold, false),
            &keys.lock,
            timeout,
        )
        .await;
        outcome
    }

    async fn extend(&self, hold: &Hold, ttl: Duration, options: &LockOptions) -> Result<Instant> {
        let keys = Keys::new(options.get_key_prefix(), hold.key());
        let quorum = options.quorum_for(self.nodes.len());
        let timeout = options.get_node_timeout();
        let started = Instant::now();
        let request = scripts::extend(&keys, hold, ttl_ms(ttl));
        let replies = join_all(self.nodes.iter().map(|n| n.extend(&request, Some(timeout)))).await;
        let mut tally = Tally::default();
        for reply in replies.into_iter().enumerate() {
            tally.add(&self.nodes, reply);
        }
        tally.held(hold.key(), self.nodes.len(), quorum)?;
        let valid_until = valid_until(started, ttl, options.get_drift_factor());
        if Instant::now() >= valid_until {
            return Err(Error::ValidityExhausted {
                key: hold.key().to_owned(),
                elapsed: started.elapsed(),
                ttl,
            });
        }
        Ok(valid_until)
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

    fn watch_releases(
        &self,
        key: &str,
        _owner: &str,
        options: &LockOptions,
    ) -> Option<ReleaseWatch> {
        let lock = Keys::lock_key(options.get_key_prefix(), key);
        // A release is announced by the nodes that held the lock, at least a
        // quorum: listening on n - quorum + 1 nodes hears one of them.
        let n = self.nodes.len();
        let enough = n + 1 - options.quorum_for(n).min(n);
        self.subscriptions
            .watch(subscriber::channel_of(&lock), enough)
    }

    async fn release(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        let late = self
            .inflight
            .lock()
            .acquires
            .get(hold.id())
            .map(|(_, answers)| answers.clone());
        let n = self.nodes.len();
        let quorum = options.quorum_for(n);
        let timeout = options.get_node_timeout();
        let keys = Keys::new(options.get_key_prefix(), hold.key());
        let request = Arc::new(scripts::release(&keys, hold, true));
        // Never ahead of the acquire on any node.
        let mut release = FanOut::new(&self.nodes, timeout, &[late], |nodes, i| {
            let request = Arc::clone(&request);
            async move { nodes[i].release(&request, None).await }
        });
        // Answer once the replies settle it; every node still gets the
        // release, however long it waits behind the acquire (the rest
        // finish in the background).
        let mut tally = Tally::default();
        while let Some(reply) = release.next().await {
            tally.add(&self.nodes, reply);
            if verdict(tally.yes, tally.no, n, quorum) != Verdict::Undecided {
                break;
            }
        }
        if !release.is_done() {
            self.settle_release(release, &keys.lock);
        }
        tally.held(hold.key(), n, quorum)
    }
}
