//! Redlock over N independent Redis nodes. One node is the N = 1 case of the
//! same coordinator.
//!
//! Every request fans out to all nodes at once, each bounded by the per-node
//! timeout, so one dead or stopped node costs at most that timeout. See
//! `docs/algorithm.md` for the steps and the argument behind them.

mod admin;
mod fanout;
mod fenced;
mod node;
mod quorum;
mod scripts;
mod subscriber;

/// What the fuzz targets reach (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    pub(crate) use super::node::decode_any;
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
use crate::fencing::FencingToken;
use crate::metrics::FENCE_COUNTER_RESET;
use crate::notify::ReleaseWatch;
use crate::options::LockOptions;
use fanout::{Answers, Background, FanOut};
use node::AcquireReply;
use quorum::{Verdict, fence_candidate, fence_confirmed, valid_until, verdict};
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

/// Waits until every fan-out in `before` has node `i`'s answer.
async fn after(before: &mut [Option<Answers>], i: usize) {
    for answers in before.iter_mut().flatten() {
        fanout::answered(answers, i).await;
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
        // Twice the node timeout: a node may take one to answer the acquire
        // and one more for the release.
        let undo = FanOut::new(&self.nodes, 2 * timeout, |nodes, i| {
            let (release, mut before) = (Arc::clone(&release), [Some(late.clone())]);
            async move {
                after(&mut before, i).await;
                nodes[i].release(&release, None).await
            }
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

    /// The fencing rule for a first hold granted by `granted` (node, value):
    /// `T = max v`, final at once when a quorum returned `T`; otherwise every
    /// node not known to hold `T` is raised to it (all of them, not just
    /// enough: a node left behind weakens later acquires if others lose
    /// their data), and `T` is final once a quorum of nodes that hold our
    /// lock have a counter >= `T`.
    async fn final_token(
        &self,
        keys: &Keys,
        owner: &str,
        granted: &[(usize, u64)],
        answered: &[bool],
        quorum: usize,
        timeout: Duration,
    ) -> Result<FencingToken> {
        let values: Vec<u64> = granted.iter().map(|&(_, v)| v).collect();
        let (target, fast) = fence_candidate(&values, quorum);
        let lagging: Vec<&RedisNode> = self
            .nodes
            .iter()
            .enumerate()
            // Nodes still out are left alone: a raise could reach one ahead
            // of this acquire, which would then store a token above T there.
            .filter(|&(i, _)| answered[i] && !granted.contains(&(i, target)))
            .map(|(_, n)| n)
            .collect();
        if fast {
            self.lift_in_background(keys, target, &lagging, timeout);
            return Ok(FencingToken::new(target));
        }
        let replies = join_all(
            lagging
                .iter()
                .map(|n| n.raise_fence(keys, owner, target, timeout)),
        )
        .await;
        let mut raised = Vec::new();
        let mut failures = Vec::new();
        for (node, reply) in lagging.into_iter().zip(replies) {
            match reply {
                Ok(r) => raised.push(r),
                Err(fault) => failures.push(node.failure(fault)),
            }
        }
        // A raise can reach a node that forgot the resource before this
        // acquire does; its grant then looks normal, so count it here.
        let forgot = raised.iter().filter(|r| r.was_missing).count();
        if target > 1 && forgot > 0 {
            metrics::counter!(FENCE_COUNTER_RESET, "backend" => "redis").increment(forgot as u64);
        }
        if fence_confirmed(target, &values, &raised, quorum) {
            Ok(FencingToken::new(target))
        } else {
            let raised_confirming = raised
                .iter()
                .filter(|r| r.holds_lock && r.counter >= target)
                .count();
            Err(Error::QuorumUnavailable {
                confirmed: values.iter().filter(|&&v| v == target).count() + raised_confirming,
                refused: raised.len() - raised_confirming,
                needed: quorum,
                failures,
            })
        }
    }
}

impl Redlock {
    /// On the fast path `T` is final without the nodes that answered below
    /// it; their counters are lifted to `T` all the same, off the caller's
    /// path (see [`lift`]).
    fn lift_in_background(
        &self,
        keys: &Keys,
        target: u64,
        lagging: &[&RedisNode],
        timeout: Duration,
    ) {
        if lagging.is_empty() {
            return;
        }
        let running = self.background.start();
        let keys = keys.clone();
        let lagging: Vec<RedisNode> = lagging.iter().map(|&n| n.clone()).collect();
        tokio::spawn(async move {
            lift(&lagging, &keys, target, timeout).await;
            drop(running);
        });
    }
}

/// Lifts the fence counters of `nodes`, which answered this acquire below
/// the token `target` handed out (or refused it), to `target`. A node left
/// behind adds nothing to a later quorum: were the remembering node of that
/// quorum to lose its data, lagging and wiped nodes together could hand out
/// a token below `target`. Reports the nodes found without a counter.
///
/// Only the counter is lifted (the owner given to the script is empty,
/// which no lock's owner is): by the time the raise lands, this owner may
/// hold a newer lock on the node, whose token must stay its own. A node
/// that has not answered the acquire is never lifted, as in the raise step.
///
/// Nodes that failed (timed out) are lifted too, on purpose: a paused node
/// or one behind a silent link runs the lift after the requests queued
/// before it, so it comes back lifted. A 20-minute checker run on
/// forgetful nodes with only granting nodes lifted found 95 tokens out of
/// order (docs/safety.md).
async fn lift(nodes: &[RedisNode], keys: &Keys, target: u64, timeout: Duration) {
    let raises = nodes
        .iter()
        .map(|n| n.raise_fence(keys, "", target, timeout));
    let forgot = join_all(raises)
        .await
        .into_iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.was_missing))
        .count();
    if target > 1 && forgot > 0 {
        metrics::counter!(FENCE_COUNTER_RESET, "backend" => "redis").increment(forgot as u64);
    }
}

/// Counts nodes whose counter for a first hold started over at 1 while the
/// token is higher: they lost their data (restart without persistence) or
/// never saw the resource. The rule still hands out a safe token while a
/// quorum remembers; operators should know their nodes forget. Called once
/// per acquire, with every node's value (late ones included).
fn report_fresh_counters(granted: &[u64], target: u64) {
    let fresh = granted.iter().filter(|&&v| v == 1).count();
    if target > 1 && fresh > 0 {
        metrics::counter!(FENCE_COUNTER_RESET, "backend" => "redis").increment(fresh as u64);
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
        let mut acquire = FanOut::new(&self.nodes, timeout, |nodes, i| {
            let (request, mut before) = (Arc::clone(&request), before.clone());
            async move {
                after(&mut before, i).await;
                nodes[i].acquire(&request, None).await
            }
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
                        let mut values: Vec<u64> = votes.granted.iter().map(|&(_, v)| v).collect();
                        if acquire.is_done() {
                            if first {
                                report_fresh_counters(&values, token.get());
                            }
                        } else {
                            // A late grant is part of this lock: released
                            // with it (after it, see `Inflight`) and
                            // renewed with it. A late refusal changes nothing.
                            let (nodes, keys) = (Arc::clone(&self.nodes), keys.clone());
                            self.settle_late(acquire, hold, move |late| async move {
                                if first {
                                    let target = token.get();
                                    values.extend(late.iter().filter_map(|(_, r)| match r {
                                        Ok(AcquireReply::Granted { token }) => Some(*token),
                                        _ => None,
                                    }));
                                    report_fresh_counters(&values, target);
                                    let behind: Vec<RedisNode> = late
                                        .iter()
                                        .filter(|(_, r)| match r {
                                            Ok(AcquireReply::Granted { token }) => *token < target,
                                            Ok(_) => true,
                                            Err(_) => false,
                                        })
                                        .map(|&(i, _)| nodes[i].clone())
                                        .collect();
                                    lift(&behind, &keys, target, timeout).await;
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
        let mut release = FanOut::new(&self.nodes, timeout, |nodes, i| {
            let (request, mut before) = (Arc::clone(&request), [late.clone()]);
            async move {
                // Never ahead of the acquire on this node.
                after(&mut before, i).await;
                nodes[i].release(&request, None).await
            }
        });
        // Answer once the replies settle it; every node still gets the
        // release (the rest finish in the background).
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

    async fn settled(&self) {
        Redlock::settled(self).await;
    }
}
