//! The votes of one acquire round: the nodes' answers as they come, the
//! verdict they make, and the error of a round that did not grant.

use std::time::Duration;

use super::RedisNode;
use super::amnesia::Standings;
use super::fanout::Reply;
use super::replies::AcquireReply;
use crate::backend::{Hold, Mode, Verdict, verdict};
use crate::error::{Error, NodeFailure};
use crate::options::LockOptions;

/// The nodes' answers to an acquire so far.
#[derive(Default)]
pub(super) struct Votes {
    /// (node, fence value, slot) of the nodes that granted; the slot is
    /// `None` but for a permit.
    pub(super) granted: Vec<(usize, u64, Option<u32>)>,
    held: usize,
    /// The longest remaining ttl the refusing nodes reported.
    held_ttl: Option<Duration>,
    too_deep: usize,
    parent_missing: usize,
    /// What the name is in use as, where a node said it is another kind.
    wrong_kind: Option<&'static str>,
    /// The other count of permits a node's semaphore was taken with.
    mismatch: Option<u32>,
    failures: Vec<NodeFailure>,
    /// The nodes that lost their data, among the failures.
    pub(super) standings: Standings,
}

impl Votes {
    pub(super) fn add(&mut self, nodes: &[RedisNode], (i, reply): Reply<AcquireReply>) {
        match reply {
            Ok(AcquireReply::Granted { token, slot }) => self.granted.push((i, token, slot)),
            Ok(AcquireReply::Held { ttl }) => {
                self.held += 1;
                // The last copy to run out frees the lock everywhere.
                self.held_ttl = self.held_ttl.max(ttl);
            }
            Ok(AcquireReply::TooDeep) => self.too_deep += 1,
            Ok(AcquireReply::ParentMissing) => self.parent_missing += 1,
            Ok(AcquireReply::WrongKind { kind }) => {
                self.held += 1;
                self.wrong_kind = Some(kind);
            }
            Ok(AcquireReply::PermitsMismatch { theirs }) => {
                self.held += 1;
                self.mismatch = Some(theirs);
            }
            Ok(standing @ (AcquireReply::Recovering { .. } | AcquireReply::Unrepaired { .. })) => {
                if let Some(fault) = self.standings.note(i, &standing) {
                    self.failures.push(nodes[i].failure(fault));
                }
            }
            Err(fault) => self.failures.push(nodes[i].failure(fault)),
        }
    }

    /// How many nodes gave a script reply.
    pub(super) fn answered(&self) -> usize {
        self.granted.len() + self.held + self.too_deep + self.parent_missing + self.standings.len()
    }

    /// The slot most nodes granted and how many did (`None` for holds
    /// that are not permits): only grants of one slot make a permit, as
    /// each slot is a lock of its own.
    pub(super) fn best(&self) -> (Option<u32>, usize) {
        let mut best = (None, 0);
        for &(_, _, slot) in &self.granted {
            let count = self.granted.iter().filter(|g| g.2 == slot).count();
            if count > best.1 {
                best = (slot, count);
            }
        }
        best
    }

    /// Refusals, counting the grants of other slots than the best: they
    /// cannot join its quorum.
    pub(super) fn refused(&self) -> usize {
        self.held + self.too_deep + self.parent_missing + self.granted.len() - self.best().1
    }

    pub(super) fn verdict(&self, nodes: usize, quorum: usize) -> Verdict {
        verdict(self.best().1, self.refused(), nodes, quorum)
    }

    /// Every grant's fence value (all slots share the counter).
    pub(super) fn values(&self) -> Vec<u64> {
        self.granted.iter().map(|&(_, v, _)| v).collect()
    }

    /// (node, fence value) of the grants of `slot`.
    pub(super) fn granted_in(&self, slot: Option<u32>) -> Vec<(usize, u64)> {
        self.granted
            .iter()
            .filter(|g| g.2 == slot)
            .map(|&(i, v, _)| (i, v))
            .collect()
    }

    /// The error of a round that did not grant.
    pub(super) fn failure(
        self,
        hold: &Hold,
        nodes: usize,
        quorum: usize,
        options: &LockOptions,
    ) -> Error {
        let key = hold.key().to_owned();
        match self.verdict(nodes, quorum) {
            Verdict::Refused if self.too_deep > 0 => Error::ReentrancyLimit {
                key,
                limit: options.max_reentrancy,
            },
            // The outer hold this one nests in is gone from a quorum.
            Verdict::Refused if self.parent_missing > 0 => Error::NotHeld { key },
            Verdict::Refused if self.wrong_kind.is_some() => Error::WrongKind {
                key,
                in_use_as: self.wrong_kind.unwrap_or_default().to_owned(),
                wanted: hold.mode().resource_kind(),
            },
            Verdict::Refused if self.mismatch.is_some() => Error::PermitsMismatch {
                key,
                ours: permits_of(hold),
                theirs: self.mismatch.unwrap_or_default(),
            },
            Verdict::Refused => Error::NotObtained {
                key,
                expires_in: self.held_ttl,
            },
            Verdict::Undecided | Verdict::Quorum => Error::QuorumUnavailable {
                confirmed: self.best().1,
                refused: self.refused(),
                needed: quorum,
                failures: self.failures,
            },
        }
    }
}

/// The number of permits a permit hold asks with (0 for other holds).
pub(super) fn permits_of(hold: &Hold) -> u32 {
    match hold.mode() {
        Mode::Permit { permits } => permits,
        _ => 0,
    }
}
