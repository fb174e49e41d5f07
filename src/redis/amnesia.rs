//! Nodes that lost their data (docs/algorithm.md, section 15), as an
//! acquire meets them: the nodes still in quarantine, reported; a counter
//! missing on a node back from it, repaired from a quorum of the nodes that
//! remember; and a new cluster, whose nodes one acquire marked together,
//! let in at once.

use std::time::Duration;

use futures::future::join_all;

use super::fanout::Reply;
use super::replies::AcquireReply;
use super::scripts::{Keys, Marking};
use super::{RedisNode, Redlock};
use crate::error::NodeFault;
use crate::metrics::NODE_DATA_LOST;

/// What the nodes of one acquire round said of their standing.
#[derive(Debug, Default)]
pub(super) struct Standings {
    /// (node, whether this round marked it, incarnation) of the nodes in
    /// quarantine.
    recovering: Vec<(usize, bool, u64)>,
    /// (node, incarnation) of the nodes without a trusted counter.
    unrepaired: Vec<(usize, u64)>,
}

impl Standings {
    /// Notes `reply` of node `i` if it is about the node's standing, and
    /// returns the fault that names it among the round's failures.
    pub(super) fn note(&mut self, i: usize, reply: &AcquireReply) -> Option<NodeFault> {
        match *reply {
            AcquireReply::Recovering {
                left,
                marked,
                incarnation,
            } => {
                self.recovering.push((i, marked, incarnation));
                Some(NodeFault::Recovering(format!(
                    "found without its marker; grants nothing for {left:.1?} more"
                )))
            }
            AcquireReply::Unrepaired { incarnation } => {
                self.unrepaired.push((i, incarnation));
                Some(NodeFault::Recovering(
                    "no fencing counter for this resource since it lost its data; \
                     repairing it from the nodes that remember"
                        .into(),
                ))
            }
            _ => None,
        }
    }

    /// How many nodes said they lost their data.
    pub(super) fn len(&self) -> usize {
        self.recovering.len() + self.unrepaired.len()
    }

    /// Whether every node that answered this round (`answered` counts
    /// every script reply) is in quarantine, and those are a quorum:
    /// nothing it reached remembers anything. A new cluster, perhaps with
    /// nodes still down and clients starting together; or a quorum that
    /// lost its data within one quarantine, which no rule can repair
    /// (docs/algorithm.md, section 15).
    fn all_new(&self, answered: usize, quorum: usize) -> bool {
        answered >= quorum && self.recovering.len() == answered
    }
}

impl Redlock {
    /// Acts on what a round's nodes said of their standing (`answered`:
    /// how many gave a script reply): reports the nodes it marked, repairs
    /// missing counters in the background, and lets a new cluster in.
    /// Returns whether it did the last, after which the round is worth
    /// trying again at once.
    pub(super) async fn after_standings(
        &self,
        keys: &Keys,
        standings: Standings,
        answered: usize,
        marking: Marking,
        timeout: Duration,
    ) -> bool {
        if standings.all_new(answered, self.quorum) {
            // Every node or none: a caller cancelled between two of these
            // would leave the rest quarantined beside nodes that remember,
            // and no later round would find a new cluster again. So the
            // requests go from a task of their own, which the caller only
            // waits for.
            let running = self.background.start();
            let (nodes, keys) = (std::sync::Arc::clone(&self.nodes), keys.clone());
            let trusts = tokio::spawn(async move {
                let trusted = join_all(standings.recovering.iter().map(|&(i, _, incarnation)| {
                    nodes[i].trust_marker(&keys, incarnation, timeout)
                }))
                .await;
                drop(running);
                trusted
            });
            let Ok(trusted) = trusts.await else {
                return false;
            };
            tracing::info!(
                nodes = trusted.len(),
                "every node that answered was new or lost its data: \
                 a new cluster, let in at once"
            );
            return trusted.iter().filter(|t| matches!(t, Ok(true))).count() >= self.quorum;
        }
        for &(i, marked, _) in &standings.recovering {
            if marked {
                report_marked(&self.nodes[i], marking.quarantine_ms);
            }
        }
        self.repair_in_background(keys, standings.unrepaired, timeout);
        false
    }

    /// Repairs the counter of `keys` on each of `unrepaired` (node,
    /// incarnation) from a task of its own, which `settled` waits for.
    pub(super) fn repair_in_background(
        &self,
        keys: &Keys,
        unrepaired: Vec<(usize, u64)>,
        timeout: Duration,
    ) {
        if unrepaired.is_empty() {
            return;
        }
        let running = self.background.start();
        let nodes = std::sync::Arc::clone(&self.nodes);
        let keys = keys.clone();
        tokio::spawn(async move {
            repair(&nodes, &keys, &unrepaired, timeout).await;
            drop(running);
        });
    }
}

/// Repairs the counter of `keys` on each of `unrepaired` (node,
/// incarnation): the highest counter a quorum of nodes that trust theirs
/// answered, read after those nodes answered that they have none. When
/// every node answers and none trusts its counter, every node lost it and
/// nothing remembers: the counter starts over at 0.
pub(super) async fn repair(
    nodes: &[RedisNode],
    keys: &Keys,
    unrepaired: &[(usize, u64)],
    timeout: Duration,
) {
    if unrepaired.is_empty() {
        return;
    }
    let reads = join_all(nodes.iter().map(|n| n.read_fence(keys, timeout))).await;
    let trusted: Vec<u64> = reads.iter().filter_map(|r| *r.as_ref().ok()?).collect();
    let quorum = nodes.len() / 2 + 1;
    let value = if trusted.len() >= quorum {
        trusted.iter().copied().max().unwrap_or(0)
    } else if reads.iter().all(|r| matches!(r, Ok(None))) {
        tracing::warn!(
            lock_key = keys.lock.as_str(),
            "every node lost the fencing counter of this resource: its tokens start over"
        );
        0
    } else {
        tracing::warn!(
            lock_key = keys.lock.as_str(),
            trusted = trusted.len(),
            needed = quorum,
            "fencing counter not repaired: too few nodes that remember it answered"
        );
        return;
    };
    join_all(
        unrepaired
            .iter()
            .map(|&(i, incarnation)| nodes[i].repair_fence(keys, incarnation, value, timeout)),
    )
    .await;
}

/// Reports a node this client found without its marker and marked: it lost
/// its data.
fn report_marked(node: &RedisNode, quarantine_ms: u64) {
    metrics::counter!(NODE_DATA_LOST, "backend" => "redis").increment(1);
    tracing::warn!(
        node = node.name(),
        quarantine_ms,
        "node found without its marker: it lost its data, and grants nothing \
         until its quarantine ends"
    );
}

/// Reports the nodes that replies in after the round was decided (`late`)
/// show this round marked, and returns (node, incarnation) of those that
/// answered without a trusted counter: they are repaired as an in-time
/// reply's node is, or a node that is always slowest (a far zone, say)
/// would stay out of every quorum that needs it.
#[must_use]
pub(super) fn note_late(
    nodes: &[RedisNode],
    late: &[Reply<AcquireReply>],
    quarantine_ms: u64,
) -> Vec<(usize, u64)> {
    let mut unrepaired = Vec::new();
    for (i, reply) in late {
        match *reply {
            Ok(AcquireReply::Recovering { marked: true, .. }) => {
                report_marked(&nodes[*i], quarantine_ms);
            }
            Ok(AcquireReply::Unrepaired { incarnation }) => unrepaired.push((*i, incarnation)),
            _ => {}
        }
    }
    unrepaired
}
