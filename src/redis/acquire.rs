//! One acquire round (docs/algorithm.md, section 2): the request to every
//! node, the votes as they come, the token of a grant, and the undo of
//! whatever a failed attempt got.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use redis::Cmd;

use super::amnesia;
use super::fanout::FanOut;
use super::replies::AcquireReply;
use super::requests::Call;
use super::scripts::{self, Keys, Marking};
use super::votes::{Votes, permits_of};
use super::{RedisNode, Redlock, fence, lease_ms, ttl_ms};
use crate::backend::{Grant, Hold};
use crate::backend::{Verdict, validity};
use crate::error::{Error, NodeFault, Result};
use crate::fencing::FencingToken;
use crate::options::{LockOptions, MAX_PERMITS};

/// What one acquire round works with.
struct Round<'a> {
    hold: &'a Hold,
    keys: Keys,
    ttl: Duration,
    quorum: usize,
    timeout: Duration,
    started: Instant,
    /// The quarantine its requests mark nodes with.
    quarantine_ms: u64,
}

impl Redlock {
    /// One attempt to acquire `hold` on a quorum (see [`Backend::try_acquire`]).
    ///
    /// [`Backend::try_acquire`]: crate::Backend::try_acquire
    pub(super) async fn acquire(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> Result<Grant> {
        self.note_lease(ttl, options);
        match self.acquire_round(hold, ttl, options).await {
            // A new cluster, let in: this round's nodes only just became
            // able to grant.
            (Err(_), true) => self.acquire_round(hold, ttl, options).await.0,
            (outcome, _) => outcome,
        }
    }

    /// One round of [`acquire`](Self::acquire), and whether it found a new
    /// cluster and let it in (docs/algorithm.md, section 15).
    async fn acquire_round(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> (Result<Grant>, bool) {
        let _running = self.rounds.start();
        let round = Round {
            hold,
            keys: Keys::new(&options.key_prefix, hold.key()),
            ttl,
            quorum: self.quorum,
            timeout: options.node_timeout,
            started: Instant::now(),
            quarantine_ms: self.quarantine_ms(),
        };
        let marking = Marking::new(round.quarantine_ms);
        let request = Arc::new(Call::new(
            scripts::acquire(
                &round.keys,
                hold,
                (lease_ms(ttl, options), ttl_ms(ttl)),
                options.max_reentrancy,
                marking,
            ),
            self.clock_rule(ttl, options),
        ));
        let before = self.before_acquire(hold, &round.keys);
        let mut acquire = FanOut::new(
            &self.nodes,
            "acquire",
            round.timeout,
            &before,
            |nodes, i| {
                let request = Arc::clone(&request);
                async move { nodes[i].acquire(&request, None).await }
            },
        );
        let mut votes = self.vote(&mut acquire, round.quorum).await;
        // The nodes whose request has ended by now: the fencing rule deals
        // with them, the late replies with the rest.
        let answered = acquire.answered().to_vec();
        // Every reply of those nodes counts: the fencing rule takes a node
        // that answered as lagging unless its grant is in the votes, and
        // would lift it for nothing. (Under load, replies come in together;
        // this was a needless raise in one round of seven.)
        for reply in acquire.in_hand() {
            votes.add(&self.nodes, reply);
        }
        let values = votes.values();
        let contested = !votes.granted.is_empty();
        let answered_ok = votes.answered();
        let standings = std::mem::take(&mut votes.standings);
        let outcome = match votes.verdict(self.nodes.len(), round.quorum) {
            Verdict::Quorum => self.grant(&round, &votes, &answered, options).await,
            _ => Err(votes.failure(hold, self.nodes.len(), round.quorum, options)),
        };
        match outcome {
            Ok(grant) => {
                self.settle_when_busy(&mut acquire, round.started, round.timeout)
                    .await;
                // The fencing rule's own count, not a permit's scaled token.
                let count = match grant.slot {
                    Some(_) => FencingToken::new(grant.token.get() / u64::from(MAX_PERMITS)),
                    None => grant.token,
                };
                self.keep_late_replies(acquire, &round, values, &answered, count);
                self.after_standings(&round.keys, standings, answered_ok, marking, round.timeout)
                    .await;
                (Ok(grant), false)
            }
            Err(e) => {
                // Not announced: no lock was freed, and waiters elsewhere
                // woken by it would only try, fail and undo in turn.
                let release = scripts::release(&round.keys, hold, false);
                self.undo(acquire, release, &round).await;
                if contested && matches!(e, Error::NotObtained { .. }) {
                    self.retry_soon(&round, options);
                }
                let let_in = self
                    .after_standings(&round.keys, standings, answered_ok, marking, round.timeout)
                    .await;
                (Err(e), let_in)
            }
        }
    }

    /// After a contested round (some nodes granted, too few, and the rest
    /// refused), tells this process's waiters of the key to try again
    /// after a short random pause.
    ///
    /// Such a round usually means that the lock was free and that waiters
    /// of several processes, woken by the same release, split the nodes
    /// between them so that none reached a quorum. Each undoes its part,
    /// unannounced, and nothing else would wake any of them before its
    /// retry delay (100-200 ms by default): measured with 4 processes on
    /// 5 nodes, that pause made most of the longest waits. The pause here
    /// is drawn from up to twice the round's own time, so that the
    /// contenders, which all undo at about the same moment, come back one
    /// after another rather than split the nodes again; the first back
    /// finds them free. Announcing the undo instead would wake every
    /// contender at once, in every process, for another split.
    fn retry_soon(&self, round: &Round<'_>, options: &LockOptions) {
        let spread = round.started.elapsed().saturating_mul(2);
        let after = spread
            .mul_f64(rand::random::<f64>())
            .min(options.retry.delay + options.retry.jitter);
        let channel = super::subscriber::channel_of(&round.keys.lock);
        self.subscriptions.news_soon(&channel, after);
    }

    /// Takes replies until they decide; the slowest nodes are left to the
    /// background.
    async fn vote(&self, acquire: &mut FanOut<AcquireReply>, quorum: usize) -> Votes {
        let mut votes = Votes::default();
        while let Some(reply) = acquire.next().await {
            votes.add(&self.nodes, reply);
            if votes.verdict(self.nodes.len(), quorum) != Verdict::Undecided {
                break;
            }
        }
        votes
    }

    /// The grant of a round a quorum said yes to: its token (a nested hold
    /// shares its parent's; a first hold's comes from the fencing rule)
    /// and its validity, if any is left. A permit's token is its slot's
    /// count times [`MAX_PERMITS`] plus the slot, so that permits held
    /// side by side with one count still differ; the nodes that gave it
    /// other slots give them back.
    async fn grant(
        &self,
        round: &Round<'_>,
        votes: &Votes,
        answered: &[bool],
        options: &LockOptions,
    ) -> Result<Grant> {
        let (slot, _) = votes.best();
        let token = match round.hold.parent() {
            Some(parent) => parent.token,
            None => {
                let keys = match slot {
                    Some(slot) => round.keys.slot(slot),
                    None => round.keys.clone(),
                };
                self.final_token(
                    &keys,
                    round.hold,
                    &votes.granted_in(slot),
                    answered,
                    round.quorum,
                    round.timeout,
                )
                .await?
            }
        };
        if let Some(slot) = slot {
            self.trim_other_slots(round, votes, slot);
        }
        let valid_until = validity(
            round.hold.key(),
            round.started,
            round.ttl,
            options.drift_factor,
        )?;
        Ok(match slot {
            Some(slot) => Grant::new(
                FencingToken::new(token.get() * u64::from(MAX_PERMITS) + u64::from(slot)),
                valid_until,
            )
            .in_slot(slot),
            None => Grant::new(token, valid_until),
        })
    }

    /// Gives back, off the caller's path, the slots other than `keep` that
    /// some nodes granted the permit of `round`: nobody else could use them
    /// there until their ttl ran out.
    fn trim_other_slots(&self, round: &Round<'_>, votes: &Votes, keep: u32) {
        let others: Vec<RedisNode> = votes
            .granted
            .iter()
            .filter(|g| g.2 != Some(keep))
            .map(|&(i, _, _)| self.nodes[i].clone())
            .collect();
        if others.is_empty() {
            return;
        }
        let trim = scripts::trim(&round.keys, round.hold, permits_of(round.hold), keep);
        let timeout = round.timeout;
        let running = self.background.start();
        tokio::spawn(async move {
            join_all(others.iter().map(|n| n.release(&trim, Some(timeout)))).await;
            drop(running);
        });
    }

    /// A late grant is part of the lock: released with it (after it, see
    /// `order`) and renewed with it; a late refusal changes nothing. A first
    /// hold's late replies, those of nodes not `answered` when the token
    /// was decided, also feed the fencing rule's bookkeeping.
    fn keep_late_replies(
        &self,
        mut acquire: FanOut<AcquireReply>,
        round: &Round<'_>,
        values: Vec<u64>,
        answered: &[bool],
        token: FencingToken,
    ) {
        let first = round.hold.parent().is_none();
        if acquire.is_done() {
            // Every reply is in: the late ones need a request only when
            // they leave a node's counter behind (rare), not a task.
            if first {
                let late: Vec<_> = acquire
                    .take_untaken()
                    .into_iter()
                    .filter(|&(i, _)| !answered[i])
                    .collect();
                let unrepaired = amnesia::note_late(&self.nodes, &late, round.quarantine_ms);
                self.repair_in_background(&round.keys, unrepaired, round.timeout);
                let behind = fence::late_behind(values, &late, token.get());
                let lagging: Vec<&RedisNode> = behind.iter().map(|&i| &self.nodes[i]).collect();
                self.lift_in_background(&round.keys, token.get(), &lagging, round.timeout);
            }
            return;
        }
        let (nodes, keys, timeout) = (Arc::clone(&self.nodes), round.keys.clone(), round.timeout);
        let answered = answered.to_vec();
        let quarantine_ms = round.quarantine_ms;
        self.settle_late(acquire, round.hold, move |late| async move {
            if first {
                let late: Vec<_> = late.into_iter().filter(|&(i, _)| !answered[i]).collect();
                let unrepaired = amnesia::note_late(&nodes, &late, quarantine_ms);
                amnesia::repair(&nodes, &keys, &unrepaired, timeout).await;
                fence::after_late_replies(nodes, keys, token.get(), values, late, timeout).await;
            }
        });
    }

    /// Sends a prepared release to every node (also those that failed or
    /// timed out: any of them may have applied the acquire) and waits for
    /// all. Returns the nodes it failed on.
    async fn release_everywhere<'n>(
        nodes: &'n [RedisNode],
        release: &Cmd,
        timeout: Duration,
    ) -> Vec<&'n str> {
        let replies = join_all(nodes.iter().map(|n| n.release(release, Some(timeout)))).await;
        nodes
            .iter()
            .zip(replies)
            .filter(|(_, reply)| undo_missed(reply))
            .map(|(node, _)| node.name())
            .collect()
    }

    /// Undoes a failed acquire on every node with `release`: at once when
    /// every node's request has ended. Otherwise in the background, so the
    /// caller is not held up by the slowest node: each node gets the
    /// release once the acquire's request there has ended, and the next
    /// acquire of the key from this process waits for it node by node, as
    /// after any release.
    async fn undo(&self, mut acquire: FanOut<AcquireReply>, release: Cmd, round: &Round<'_>) {
        let timeout = round.timeout;
        if acquire.is_done() {
            let failed = Self::release_everywhere(&self.nodes, &release, timeout).await;
            return undo_failed(round.hold.key(), &failed, self.nodes.len(), self.quorum);
        }
        let late = acquire.answers();
        acquire.finish_in_background(&self.background, |_| async {});
        let release = Arc::new(release);
        let undo = FanOut::new(
            &self.nodes,
            "release",
            timeout,
            &[Some(late)],
            |nodes, i| {
                let release = Arc::clone(&release);
                async move { nodes[i].release(&release, None).await }
            },
        );
        self.settle_release(undo, &round.keys.lock, Some(round.hold.key()));
    }
}

/// Whether an undo's `reply` leaves its node possibly holding the failed
/// acquire: it failed, other than by refusing this client (a node that
/// refuses the undo refused the acquire before it).
pub(super) fn undo_missed(reply: &Result<bool, NodeFault>) -> bool {
    reply
        .as_ref()
        .is_err_and(|fault| !matches!(fault, NodeFault::Denied(_)))
}

/// Tells a `tracing` subscriber of an undo (of a failed acquire of `key`)
/// that failed on the nodes named in `failed`, of `n`: the hold may stay
/// on them until its ttl, and nobody else hears of it. WARN when those
/// nodes alone keep every owner (this one too) from a quorum meanwhile;
/// DEBUG when the others still make one (each failed request was told of
/// already, and an outage of one node would otherwise warn on every
/// contended attempt).
pub(super) fn undo_failed(key: &str, failed: &[&str], n: usize, quorum: usize) {
    if failed.is_empty() {
        return;
    }
    let nodes = failed.join(", ");
    if failed.len() > n - quorum {
        tracing::warn!(
            key,
            failed = failed.len(),
            nodes,
            "undo of a failed acquire did not reach enough nodes: \
             the lock may stay unavailable until its ttl"
        );
    } else {
        tracing::debug!(
            key,
            failed = failed.len(),
            nodes,
            "undo of a failed acquire did not reach every node"
        );
    }
}
