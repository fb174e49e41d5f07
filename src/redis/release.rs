//! Rounds about one held hold: extend and release (docs/algorithm.md,
//! sections 4 and 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::fanout::{FanOut, Reply};
use super::requests::Call;
use super::scripts::{self, Keys};
use super::{RedisNode, Redlock, lease_ms};
use crate::backend::Hold;
use crate::backend::{Verdict, validity, verdict};
use crate::error::{Error, NodeFailure, Result};
use crate::options::LockOptions;

/// The nodes' answers to a request about one hold: present (yes) or not (no).
#[derive(Default)]
pub(super) struct Tally {
    yes: usize,
    no: usize,
    failures: Vec<NodeFailure>,
}

impl Tally {
    pub(super) fn add(&mut self, nodes: &[RedisNode], (i, reply): Reply<bool>) {
        match reply {
            Ok(true) => self.yes += 1,
            Ok(false) => self.no += 1,
            Err(fault) => self.failures.push(nodes[i].failure(fault)),
        }
    }

    fn verdict(&self, nodes: usize, quorum: usize) -> Verdict {
        verdict(self.yes, self.no, nodes, quorum)
    }

    /// Whether a quorum had the hold: `NotHeld` when so many did not that a
    /// quorum was impossible, `QuorumUnavailable` when too few answered.
    pub(super) fn held(self, key: &str, nodes: usize, quorum: usize) -> Result<()> {
        match self.verdict(nodes, quorum) {
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

impl Redlock {
    /// Makes `hold` live for `ttl` from now on a quorum (see
    /// [`Backend::extend`](crate::Backend::extend)).
    pub(super) async fn extend_hold(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> Result<Instant> {
        self.note_lease(ttl, options);
        let keys = Keys::new(&options.key_prefix, hold.key());
        let quorum = self.quorum;
        let timeout = options.node_timeout;
        let started = Instant::now();
        // The nodes keep it for the lock-delay too; the validity below
        // counts the ttl alone.
        let request = Call::new(
            scripts::extend(&keys, hold, lease_ms(ttl, options)),
            self.clock_rule(ttl, options),
        );
        let replies = join_all(self.nodes.iter().map(|n| n.extend(&request, Some(timeout)))).await;
        let mut tally = Tally::default();
        for reply in replies.into_iter().enumerate() {
            tally.add(&self.nodes, reply);
        }
        tally.held(hold.key(), self.nodes.len(), quorum)?;
        validity(hold.key(), started, ttl, options.drift_factor)
    }

    /// Turns the write hold `hold` into a read hold on every node (see
    /// [`Backend::downgrade`](crate::Backend::downgrade)). A node that
    /// missed it still counts the hold as the writer there; the next extend
    /// of the (now read) hold finishes the downgrade on it.
    pub(super) async fn downgrade_hold(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        let keys = Keys::new(&options.key_prefix, hold.key());
        let timeout = options.node_timeout;
        // It lengthens nothing: the node's clock is not in question.
        let request = Call::Plain(scripts::downgrade(&keys, hold));
        let replies = join_all(self.nodes.iter().map(|n| n.extend(&request, Some(timeout)))).await;
        let mut tally = Tally::default();
        for reply in replies.into_iter().enumerate() {
            tally.add(&self.nodes, reply);
        }
        tally.held(hold.key(), self.nodes.len(), self.quorum)
    }

    /// Removes `hold` from every node (see
    /// [`Backend::release`](crate::Backend::release)).
    pub(super) async fn release_hold(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        let _running = self.rounds.start();
        let started = Instant::now();
        let n = self.nodes.len();
        let quorum = self.quorum;
        let timeout = options.node_timeout;
        let keys = Keys::new(&options.key_prefix, hold.key());
        let request = Arc::new(scripts::release(&keys, hold, true));
        // Never ahead of the acquire on any node.
        let before = [self.before_release(hold)];
        let mut release = FanOut::new(&self.nodes, "release", timeout, &before, |nodes, i| {
            let request = Arc::clone(&request);
            async move { nodes[i].release(&request, None).await }
        });
        // This process's next acquire of the key reaches each node only
        // after this release has answered there (see `releasing`).
        let releasing = self.releasing(&mut release, &keys.lock);
        // Answer once the replies settle it; every node still gets the
        // release, however long it waits behind the acquire (the rest
        // finish in the background).
        let mut tally = Tally::default();
        while let Some(reply) = release.next().await {
            tally.add(&self.nodes, reply);
            if tally.verdict(n, quorum) != Verdict::Undecided {
                break;
            }
        }
        if !self.settle_when_busy(&mut release, started, timeout).await {
            self.settle_release(release, &keys.lock, None);
            if let Some(releasing) = releasing {
                releasing.hand_over();
            }
        }
        tally.held(hold.key(), n, quorum)
    }
}
