//! The fencing rule on the nodes (docs/algorithm.md, section 8): the token
//! of a first hold, the raise that makes it final, and the lift that keeps
//! lagging counters from weakening later quorums. Its pure part, with the
//! models that check it, is [`rule`].

#[cfg(test)]
mod amnesia_interleavings;
#[cfg(test)]
mod interleavings;
#[cfg(test)]
mod model_kit;
#[cfg(test)]
mod permit_interleavings;
mod rule;
#[cfg(test)]
mod rw_interleavings;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

pub(crate) use rule::Raised;
use rule::{fence_candidate, fence_confirmed};

use super::fanout::Reply;
use super::replies::AcquireReply;
use super::scripts::Keys;
use super::{RedisNode, Redlock};
use crate::backend::Hold;
use crate::error::{Error, Result};
use crate::fencing::FencingToken;
use crate::metrics::FENCE_COUNTER_RESET;

impl Redlock {
    /// The fencing rule for the first hold `hold` granted by `granted`
    /// (node, value):
    /// `T = max v`, final at once when a quorum returned `T`; otherwise every
    /// node not known to hold `T` is raised to it (all of them, not just
    /// enough: a node left behind weakens later acquires if others lose
    /// their data), and `T` is final once a quorum of nodes that hold our
    /// lock have a counter >= `T`.
    pub(super) async fn final_token(
        &self,
        keys: &Keys,
        hold: &Hold,
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
                .map(|n| n.raise_fence(keys, hold.owner(), hold.id(), target, timeout)),
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
        count_forgetful(target, raised.iter().filter(|r| r.was_missing).count());
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

    /// On the fast path `T` is final without the nodes that answered below
    /// it; their counters are lifted to `T` all the same, off the caller's
    /// path (see [`lift`]).
    pub(super) fn lift_in_background(
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

/// What a first hold's late replies (those in after it was granted with
/// `target`) still need: counted if they show forgetful nodes, and their
/// nodes lifted to `target` when they answered below it or refused.
/// `granted` holds the values of the grants the caller counted.
pub(super) async fn after_late_replies(
    nodes: Arc<[RedisNode]>,
    keys: Keys,
    target: u64,
    granted: Vec<u64>,
    late: Vec<Reply<AcquireReply>>,
    timeout: Duration,
) {
    let behind: Vec<RedisNode> = late_behind(granted, &late, target)
        .into_iter()
        .map(|i| nodes[i].clone())
        .collect();
    lift(&behind, &keys, target, timeout).await;
}

/// The first half of [`after_late_replies`], which needs no request:
/// counts forgetful nodes among all the grants, and returns the nodes
/// whose late reply leaves them below `target` (to be lifted).
pub(super) fn late_behind(
    mut granted: Vec<u64>,
    late: &[Reply<AcquireReply>],
    target: u64,
) -> Vec<usize> {
    granted.extend(late.iter().filter_map(|(_, r)| match r {
        Ok(AcquireReply::Granted { token, .. }) => Some(*token),
        _ => None,
    }));
    report_fresh_counters(&granted, target);
    late.iter()
        .filter(|(_, r)| match r {
            Ok(AcquireReply::Granted { token, .. }) => *token < target,
            Ok(_) => true,
            Err(_) => false,
        })
        .map(|&(i, _)| i)
        .collect()
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
        .map(|n| n.raise_fence(keys, "", "", target, timeout));
    let replies = join_all(raises).await;
    let forgot = replies
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.was_missing))
        .count();
    count_forgetful(target, forgot);
    let failed: Vec<&str> = nodes
        .iter()
        .zip(&replies)
        .filter(|(_, reply)| reply.is_err())
        .map(|(node, _)| node.name())
        .collect();
    if !failed.is_empty() {
        // Runs after the caller has its token: nobody else hears of it.
        tracing::warn!(
            lock_key = keys.lock.as_str(),
            token = target,
            failed = failed.len(),
            nodes = failed.join(", "),
            "fence counters not lifted to the token handed out: \
             those nodes lag until a later acquire lifts them"
        );
    }
}

/// Counts nodes whose counter for a first hold started over at 1 while the
/// token is higher: they lost their data (restart without persistence) or
/// never saw the resource. The rule still hands out a safe token while a
/// quorum remembers; operators should know their nodes forget. Called once
/// per acquire, with every node's value (late ones included).
pub(super) fn report_fresh_counters(granted: &[u64], target: u64) {
    count_forgetful(target, granted.iter().filter(|&&v| v == 1).count());
}

/// Counts `nodes` found without the counter of a resource whose token is
/// `target`. At token 1 a missing counter is just a new resource.
fn count_forgetful(target: u64, nodes: usize) {
    if target > 1 && nodes > 0 {
        metrics::counter!(FENCE_COUNTER_RESET, "backend" => "redis").increment(nodes as u64);
    }
}
