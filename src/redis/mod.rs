//! Redlock over N independent Redis nodes. One node is the N = 1 case of the
//! same coordinator.
//!
//! Every request fans out to all nodes at once, each bounded by the per-node
//! timeout, so one dead or stopped node costs at most that timeout. See
//! `docs/algorithm.md` for the steps and the argument behind them.

mod admin;
mod node;
mod quorum;
mod scripts;
mod subscriber;

use std::time::{Duration, Instant};

use futures::future::join_all;

pub use node::RedisNode;

use crate::admin::{ForceReleased, ListCursor, ListPage, LockInfo};
use crate::backend::{Backend, Grant, Hold};
use crate::error::{Error, NodeFailure, NodeFault, Result};
use crate::fencing::FencingToken;
use crate::metrics::FENCE_COUNTER_RESET;
use crate::notify::ReleaseWatch;
use crate::options::LockOptions;
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
    nodes: Vec<RedisNode>,
    subscriptions: Subscriptions,
}

impl Redlock {
    /// A coordinator over `nodes`: at least one, each a different server.
    pub fn new(nodes: Vec<RedisNode>) -> Result<Self> {
        if nodes.is_empty() {
            return Err(Error::InvalidOptions("no nodes given".into()));
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
                .filter_map(|n| Some((n.name().to_owned(), n.notifications()?.clone())))
                .collect(),
        );
        Ok(Self {
            nodes,
            subscriptions,
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

    /// Releases `hold` on every node (also those that failed or timed out:
    /// any of them may have applied the acquire).
    async fn release_everywhere(&self, keys: &Keys, hold: &Hold, timeout: Duration) -> Tally {
        self.tally(join_all(self.nodes.iter().map(|n| n.release(keys, hold, timeout))).await)
    }

    /// Counts the nodes' yes / no answers (hold present or not) in node order.
    fn tally(&self, replies: Vec<Result<bool, NodeFault>>) -> Tally {
        let mut tally = Tally {
            yes: 0,
            no: 0,
            failures: Vec::new(),
        };
        for (node, reply) in self.nodes.iter().zip(replies) {
            match reply {
                Ok(true) => tally.yes += 1,
                Ok(false) => tally.no += 1,
                Err(fault) => tally.failures.push(node.failure(fault)),
            }
        }
        tally
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
        quorum: usize,
        timeout: Duration,
    ) -> Result<FencingToken> {
        let values: Vec<u64> = granted.iter().map(|&(_, v)| v).collect();
        let (target, fast) = fence_candidate(&values, quorum);
        self.report_fresh_counters(&values, target);
        if fast {
            return Ok(FencingToken::new(target));
        }
        let lagging: Vec<&RedisNode> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(i, _)| !granted.contains(&(i, target)))
            .map(|(_, n)| n)
            .collect();
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
        if fence_confirmed(target, &values, &raised, quorum) {
            Ok(FencingToken::new(target))
        } else {
            let confirming = values.iter().filter(|&&v| v == target).count()
                + raised
                    .iter()
                    .filter(|r| r.holds_lock && r.counter >= target)
                    .count();
            Err(Error::QuorumUnavailable {
                reached: confirming,
                needed: quorum,
                failures,
            })
        }
    }

    /// Counts nodes whose counter for a first hold started over at 1 while
    /// the token is higher: they lost their data (restart without
    /// persistence) or never saw the resource. The rule still hands out a
    /// safe token while a quorum remembers; operators should know their
    /// nodes forget.
    fn report_fresh_counters(&self, granted: &[u64], target: u64) {
        let fresh = granted.iter().filter(|&&v| v == 1).count();
        if target > 1 && fresh > 0 {
            metrics::counter!(FENCE_COUNTER_RESET, "backend" => self.name())
                .increment(fresh as u64);
        }
    }
}

/// The nodes' answers to a request about one hold: present (yes) or not (no).
struct Tally {
    yes: usize,
    no: usize,
    failures: Vec<NodeFailure>,
}

impl Tally {
    /// Whether a quorum had the hold: `NotHeld` when so many did not that a
    /// quorum was impossible, `QuorumUnavailable` when too few answered.
    fn held(self, key: &str, nodes: usize, quorum: usize) -> Result<()> {
        match verdict(self.yes, self.no, nodes, quorum) {
            Verdict::Quorum => Ok(()),
            Verdict::Refused => Err(Error::NotHeld {
                key: key.to_owned(),
            }),
            Verdict::Undecided => Err(Error::QuorumUnavailable {
                reached: self.yes + self.no,
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
        let keys = Keys::new(options.get_key_prefix(), hold.key());
        let quorum = options.quorum_for(self.nodes.len());
        let timeout = options.get_node_timeout();
        let started = Instant::now();

        let replies = join_all(self.nodes.iter().map(|n| {
            n.acquire(
                &keys,
                hold,
                ttl_ms(ttl),
                options.get_max_reentrancy(),
                timeout,
            )
        }))
        .await;

        let mut granted: Vec<(usize, u64)> = Vec::new();
        let (mut held, mut too_deep, mut parent_missing) = (0, 0, 0);
        let mut failures = Vec::new();
        for (i, (node, reply)) in self.nodes.iter().zip(replies).enumerate() {
            match reply {
                Ok(AcquireReply::Granted { token }) => granted.push((i, token)),
                Ok(AcquireReply::Held) => held += 1,
                Ok(AcquireReply::TooDeep) => too_deep += 1,
                Ok(AcquireReply::ParentMissing) => parent_missing += 1,
                Err(fault) => failures.push(node.failure(fault)),
            }
        }
        let refused = held + too_deep + parent_missing;

        let outcome = match verdict(granted.len(), refused, self.nodes.len(), quorum) {
            Verdict::Quorum => {
                let token = match hold.parent() {
                    // A nested hold shares its parent's token; no counting.
                    Some(parent) => Ok(parent.token),
                    None => {
                        self.final_token(&keys, hold.owner(), &granted, quorum, timeout)
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
                    Ok(token) => return Ok(Grant { token, valid_until }),
                    Err(e) => Err(e),
                }
            }
            Verdict::Refused if too_deep > 0 => Err(Error::ReentrancyLimit {
                key: hold.key().to_owned(),
                limit: options.get_max_reentrancy(),
            }),
            // The outer hold this one nests in is gone from a quorum.
            Verdict::Refused if parent_missing > 0 => Err(Error::NotHeld {
                key: hold.key().to_owned(),
            }),
            Verdict::Refused => Err(Error::NotObtained {
                key: hold.key().to_owned(),
            }),
            Verdict::Undecided => Err(Error::QuorumUnavailable {
                reached: granted.len() + refused,
                needed: quorum,
                failures,
            }),
        };
        // Whatever we got is undone on every node before the caller may retry.
        self.release_everywhere(&keys, hold, timeout).await;
        outcome
    }

    async fn extend(&self, hold: &Hold, ttl: Duration, options: &LockOptions) -> Result<Instant> {
        let keys = Keys::new(options.get_key_prefix(), hold.key());
        let quorum = options.quorum_for(self.nodes.len());
        let timeout = options.get_node_timeout();
        let started = Instant::now();
        let replies = join_all(
            self.nodes
                .iter()
                .map(|n| n.extend(&keys, hold, ttl_ms(ttl), timeout)),
        )
        .await;
        self.tally(replies)
            .held(hold.key(), self.nodes.len(), quorum)?;
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

    fn watch_releases(&self, key: &str, options: &LockOptions) -> Option<ReleaseWatch> {
        let lock = Keys::lock_key(options.get_key_prefix(), key);
        self.subscriptions.watch(subscriber::channel_of(&lock))
    }

    async fn release(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        let keys = Keys::new(options.get_key_prefix(), hold.key());
        let quorum = options.quorum_for(self.nodes.len());
        self.release_everywhere(&keys, hold, options.get_node_timeout())
            .await
            .held(hold.key(), self.nodes.len(), quorum)
    }
}
