//! Renewing many holds at once: one script call per node (per
//! [`BATCH_KEYS`](scripts::BATCH_KEYS) keys) carrying them all, and each
//! hold decided on its own quorum (docs/algorithm.md, section 4).

use std::time::{Duration, Instant};

use futures::future::join_all;

use super::release::Tally;
use super::requests::Call;
use super::scripts;
use super::{Redlock, lease_ms};
use crate::backend::{Hold, validity};
use crate::error::Result;
use crate::options::LockOptions;

impl Redlock {
    /// Makes each of `holds` live for its ttl from now on a quorum (see
    /// [`Backend::extend_many`](crate::Backend::extend_many)).
    ///
    /// A batch is as many extends, one per hold, that share their requests:
    /// node `i` answers for each hold exactly what `extend` would have
    /// answered (the script does per hold what the single-kind script
    /// does), a node's failure or timeout is a failure for every hold its
    /// call carried, and an error one hold's extend met on a node is that
    /// hold's failure alone. Each hold's votes are then counted on their own,
    /// and its validity runs from `started`, taken before the first
    /// request, as an extend's does: one hold's verdict never depends on
    /// another's.
    pub(super) async fn extend_holds(
        &self,
        holds: &[(&Hold, Duration)],
        options: &LockOptions,
    ) -> Vec<Result<Instant>> {
        let timeout = options.node_timeout;
        let started = Instant::now();
        // The nodes keep each for the lock-delay too; the validity below
        // counts the ttl alone.
        let leases: Vec<(&Hold, u64)> = holds
            .iter()
            .map(|&(hold, ttl)| (hold, lease_ms(ttl, options)))
            .collect();
        // The shortest lease has the least room for a node clock's gain.
        let shortest = holds.iter().map(|&(_, ttl)| ttl).min();
        let rule = shortest.and_then(|ttl| self.clock_rule(ttl, options));
        let calls: Vec<_> = scripts::extend_batch(&options.key_prefix, &leases)
            .into_iter()
            .map(|(range, cmd)| (range, Call::new(cmd, rule)))
            .collect();
        // Every call to every node at once, each bounded by the node
        // timeout: the calls to one node share its connection, in order.
        let replies = join_all(self.nodes.iter().map(|node| {
            join_all(
                calls
                    .iter()
                    .map(|(range, call)| node.extend_batch(call, range.len(), Some(timeout))),
            )
        }))
        .await;
        let mut tallies: Vec<Tally> = holds.iter().map(|_| Tally::default()).collect();
        for (i, node_replies) in replies.into_iter().enumerate() {
            for ((range, _), reply) in calls.iter().zip(node_replies) {
                let tallies = &mut tallies[range.clone()];
                match reply {
                    Ok(present) => {
                        for (tally, present) in tallies.iter_mut().zip(present) {
                            tally.add(&self.nodes, (i, present));
                        }
                    }
                    Err(fault) => {
                        for tally in tallies {
                            tally.add(&self.nodes, (i, Err(fault.clone())));
                        }
                    }
                }
            }
        }
        let (n, quorum) = (self.nodes.len(), self.quorum);
        tallies
            .into_iter()
            .zip(holds)
            .map(|(tally, &(hold, ttl))| {
                tally.held(hold.key(), n, quorum)?;
                validity(hold.key(), started, ttl, options.drift_factor)
            })
            .collect()
    }
}
