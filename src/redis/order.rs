//! The order of one coordinator's requests on each node: acquires and
//! releases that returned before every node answered are kept here until
//! they end, and later requests about the same hold or key wait behind
//! them node by node (docs/algorithm.md, section 6).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Redlock;
use super::acquire::{undo_failed, undo_missed};
use super::fanout::{Answers, FanOut, Reply};
use super::replies::AcquireReply;
use super::scripts::Keys;
use crate::backend::Hold;

/// Requests of this coordinator that returned before every node answered,
/// with the nodes that have answered since. A later request that must not
/// overtake one of them on a node waits, node by node, for its answer.
#[derive(Default)]
pub(super) struct Inflight {
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
pub(super) struct InflightTable(Mutex<Inflight>);

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

/// Of each run of releases of one key by this coordinator, the last of
/// [`YIELD_EVERY`] lets the nodes answer it before this process's next
/// acquire of the key goes out (see [`Redlock::releasing`]).
const YIELD_EVERY: u32 = 4;

/// Counts this coordinator's releases per key (in 64 slots, by hash: keys
/// that share a slot share a count, which only moves when one yields).
pub(super) struct Releases {
    slots: [AtomicU32; 64],
    hasher: RandomState,
}

impl Default for Releases {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU32::new(0)),
            hasher: RandomState::new(),
        }
    }
}

impl std::fmt::Debug for Releases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Releases").finish_non_exhaustive()
    }
}

impl Releases {
    /// Counts a release of `lock_key`; whether it is one that yields.
    pub(super) fn yields(&self, lock_key: &str) -> bool {
        let slot = (self.hasher.hash_one(lock_key) % 64) as usize;
        self.slots[slot].fetch_add(1, Ordering::Relaxed) % YIELD_EVERY == YIELD_EVERY - 1
    }
}

/// How many acquire and release rounds of one coordinator are under way
/// in callers' tasks.
#[derive(Debug, Default)]
pub(super) struct Rounds(AtomicUsize);

/// One round under way, counted until dropped.
pub(super) struct Running<'a>(&'a AtomicUsize);

impl Rounds {
    pub(super) fn start(&self) -> Running<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Running(&self.0)
    }

    /// Whether other rounds run beside the caller's.
    fn others(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 1
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The least a decided round waits for its slowest nodes when it waits at
/// all: one tick of tokio's timer, which counts in milliseconds.
const MIN_GRACE: Duration = Duration::from_millis(1);

impl Redlock {
    /// Whether every node's request of a round that has its answer has
    /// ended: those still out are waited for, for as long as the round took
    /// so far (at least [`MIN_GRACE`], at most `timeout`), when other rounds
    /// run beside this one.
    ///
    /// A round returns once its replies decide and leaves the slowest nodes
    /// to a task of their own: the fastest answer for one caller. When many
    /// rounds run at once, that task costs more than the wait: its spawn,
    /// the channel that tells later requests when each node has answered,
    /// and their wake-ups, measured at about a third of the client's CPU
    /// per round with 64 tasks on 5 nodes (docs/performance.md); and the
    /// slowest replies are due soon, as the other rounds keep the cores
    /// busy anyway. A node that is down or paused still costs a busy
    /// round at most the grace, then goes to the background as before.
    pub(super) async fn settle_when_busy<T: Send + 'static>(
        &self,
        fanout: &mut FanOut<T>,
        started: Instant,
        timeout: Duration,
    ) -> bool {
        if fanout.is_done() {
            return true;
        }
        if !self.rounds.others() {
            return false;
        }
        let grace = started.elapsed().max(MIN_GRACE).min(timeout);
        fanout.settle_within(grace).await
    }

    /// What an acquire of `hold` must follow on each node: its parent's
    /// acquire (a nested hold is granted only where its parent already
    /// is), and the latest release of the key.
    pub(super) fn before_acquire(&self, hold: &Hold, keys: &Keys) -> [Option<Answers>; 2] {
        let inflight = self.inflight.lock();
        [
            hold.parent()
                .and_then(|p| inflight.acquires.get(&p.id))
                .map(|(_, answers)| answers.clone()),
            inflight.releases.get(&keys.lock).cloned(),
        ]
    }

    /// What the release of `hold` must follow on each node: its acquire.
    pub(super) fn before_release(&self, hold: &Hold) -> Option<Answers> {
        let inflight = self.inflight.lock();
        inflight.acquires.get(hold.id()).map(|(_, a)| a.clone())
    }

    /// What a forced release of `resource` must follow on each node: every
    /// acquire of the resource still out and the latest release of its key.
    /// A late grant landing after it would leave a copy behind, and a late
    /// release would make it report a lock that was going anyway.
    pub(super) fn before_force_release(&self, resource: &str, keys: &Keys) -> Vec<Option<Answers>> {
        let inflight = self.inflight.lock();
        inflight
            .acquires
            .values()
            .filter(|(key, _)| key == resource)
            .map(|(_, answers)| Some(answers.clone()))
            .chain([inflight.releases.get(&keys.lock).cloned()])
            .collect()
    }

    /// Lets the acquire of a granted hold finish in the background; until
    /// it has, later requests about the hold wait, node by node, for the
    /// node's answer (see [`Inflight`]). `then` runs on the late replies.
    pub(super) fn settle_late<F, Fut>(
        &self,
        mut acquire: FanOut<AcquireReply>,
        hold: &Hold,
        then: F,
    ) where
        F: FnOnce(Vec<Reply<AcquireReply>>) -> Fut + Send + 'static,
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

    /// Records `release` of `lock_key` as under way, from before its first
    /// request goes out until the returned record is dropped (or handed
    /// over to [`settle_release`](Self::settle_release)): acquires of the
    /// key from this process wait for it node by node meanwhile.
    ///
    /// Without this, an acquire made while the caller's round was still
    /// out (the next waiter of this process's line, which takes its turn
    /// as the holder returns) went down each node's connection right
    /// behind the release, and ran there microseconds after it, before
    /// any other process could have heard the release announced: the lock
    /// stayed in the releasing process as long as its line had waiters
    /// (docs/performance.md, "Contention across processes"). Waiting for
    /// the node's answer puts this process one hop behind the release, as
    /// the news puts everyone else.
    ///
    /// Only one release of a key in [`YIELD_EVERY`] does so: the wait costs
    /// the next local holder a round trip, which took a quarter off the
    /// hand-over rate of one process's line when every release paid it. A
    /// process then passes the lock to its own waiters at most three times
    /// in a row before the others get an even chance at it (`None`: this
    /// release does not yield).
    pub(super) fn releasing(
        &self,
        release: &mut FanOut<bool>,
        lock_key: &str,
    ) -> Option<Releasing> {
        if !self.releases.yields(lock_key) {
            return None;
        }
        let mine = release.answers();
        self.inflight
            .lock()
            .releases
            .insert(lock_key.to_owned(), mine.clone());
        Some(Releasing {
            inflight: Arc::clone(&self.inflight),
            key: lock_key.to_owned(),
            mine,
            handed_over: false,
        })
    }

    /// Lets a release finish in the background; until it has, acquires of
    /// the key wait, node by node, for the node's answer. `undo_of` names
    /// the resource when the release undoes a failed acquire, whose
    /// failures nobody else hears of.
    pub(super) fn settle_release(
        &self,
        mut release: FanOut<bool>,
        lock_key: &str,
        undo_of: Option<&str>,
    ) {
        let mine = release.answers();
        let key = lock_key.to_owned();
        let undo_of = undo_of.map(str::to_owned);
        let (nodes, quorum) = (Arc::clone(&self.nodes), self.quorum);
        self.inflight
            .lock()
            .releases
            .insert(key.clone(), mine.clone());
        let inflight = Arc::clone(&self.inflight);
        release.finish_in_background(&self.background, move |late| async move {
            if let Some(resource) = undo_of {
                let failed: Vec<&str> = late
                    .iter()
                    .filter(|(_, reply)| undo_missed(reply))
                    .map(|&(i, _)| nodes[i].name())
                    .collect();
                undo_failed(&resource, &failed, nodes.len(), quorum);
            }
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

/// A release round under way in its caller's task, recorded in the
/// coordinator's [`Inflight`] table until dropped.
pub(super) struct Releasing {
    inflight: Arc<InflightTable>,
    key: String,
    mine: Answers,
    /// Set when the round's background task took over the record.
    handed_over: bool,
}

impl Releasing {
    /// Leaves the record to [`Redlock::settle_release`], which registered
    /// the same fan-out and removes it when its last node has answered.
    pub(super) fn hand_over(mut self) {
        self.handed_over = true;
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        // A later release of the key may have taken the slot.
        let mut inflight = self.inflight.lock();
        if inflight
            .releases
            .get(&self.key)
            .is_some_and(|a| a.same_channel(&self.mine))
        {
            inflight.releases.remove(&self.key);
        }
    }
}
