//! The renewer: one background task per Locker (per set of options) that
//! keeps every watched hold in one schedule, wakes at the earliest due
//! time, and renews the holds that fall due together with one
//! [`Backend::extend_many`] call. On Redis that is one script call per
//! node per tick (per 512 keys), however many locks are held.
//!
//! Each hold is still decided on its own (watchdog.rs): its own quorum,
//! its own validity, its own retry, cap, loss and metrics.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::time::{sleep_until, timeout_at};
use tracing::Instrument;

use super::shared::Shared;
use super::watchdog::{Next, Phase, Timing, Watched};
use crate::backend::{Backend, Hold};
use crate::sync::lock;

/// A watched hold's place in its renewer.
pub(crate) type WatchId = u64;

/// The renewal schedule of one Locker's watched holds, and its task.
#[derive(Default)]
pub(crate) struct Renewer {
    state: Mutex<State>,
    /// Wakes the task: a hold is due earlier than it sleeps for, or the
    /// last one left.
    wake: Notify,
}

impl std::fmt::Debug for Renewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewer")
            .field("watched", &lock(&self.state).watched.len())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    next_id: WatchId,
    watched: HashMap<WatchId, Entry>,
    /// The watched holds by due time; a hold whose renewal is in flight
    /// is not in it.
    queue: BTreeSet<(Instant, WatchId)>,
    /// The running task's number, if one runs.
    task: Option<u64>,
    tasks: u64,
}

struct Entry {
    watched: Arc<Watched>,
    /// `None` while its renewal is in flight.
    due: Option<Instant>,
    phase: Phase,
}

/// What the task is to do now.
enum Turn {
    /// Nothing is watched: the task ends (and is started again with the
    /// next watched hold).
    Stop,
    /// Sleep until then (or a wake-up).
    Wait(Instant),
    /// Renew these, taken out of the queue.
    Renew(Vec<(WatchId, Arc<Watched>, Phase)>),
}

impl Renewer {
    /// Adds a hold to the schedule, due at `due`; starts the task if none
    /// runs.
    pub(crate) fn watch<B: Backend>(
        self: &Arc<Self>,
        shared: &Shared<B>,
        watched: Arc<Watched>,
        due: Instant,
    ) -> WatchId {
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        let earliest = state.queue.first().map(|&(at, _)| at);
        state.watched.insert(
            id,
            Entry {
                watched,
                due: Some(due),
                phase: Phase::Renewing,
            },
        );
        state.queue.insert((due, id));
        if state.task.is_none() {
            state.tasks += 1;
            let number = state.tasks;
            state.task = Some(number);
            drop(state);
            tokio::spawn(run(shared.clone(), number));
        } else if earliest.is_none_or(|at| due < at) {
            self.wake.notify_one();
        }
        id
    }

    /// Takes a hold out of the schedule: it is never renewed again, and
    /// the outcome of a renewal of it still in flight is dropped.
    pub(crate) fn unwatch(&self, id: WatchId) {
        let mut state = lock(&self.state);
        if let Some(Entry { due: Some(due), .. }) = state.watched.remove(&id) {
            state.queue.remove(&(due, id));
        }
        if state.watched.is_empty() && state.task.is_some() {
            // Let the task end now rather than at its next due time.
            self.wake.notify_one();
        }
    }

    /// Replaces what a watched hold is renewed as (a downgrade). A
    /// renewal in flight finishes as what it was sent as.
    pub(crate) fn replace(&self, id: WatchId, with: impl FnOnce(&Watched) -> Watched) {
        if let Some(entry) = lock(&self.state).watched.get_mut(&id) {
            entry.watched = Arc::new(with(&entry.watched));
        }
    }

    /// The task's next turn at `now`: the holds due by then, with those
    /// in [`Phase::Renewing`] due within `early` of it.
    fn turn(&self, number: u64, now: Instant, early: Duration) -> Turn {
        let mut state = lock(&self.state);
        if state.watched.is_empty() {
            if state.task == Some(number) {
                state.task = None;
            }
            return Turn::Stop;
        }
        let mut taken = Vec::new();
        let due: Vec<(Instant, WatchId)> = state
            .queue
            .range(..=(now + early, WatchId::MAX))
            .copied()
            .collect();
        for (at, id) in due {
            let Some(entry) = state.watched.get_mut(&id) else {
                continue;
            };
            if at > now && entry.phase != Phase::Renewing {
                // Never early: a retry keeps its pause, a capped lock runs
                // out at its end.
                continue;
            }
            entry.due = None;
            taken.push((id, Arc::clone(&entry.watched), entry.phase));
            state.queue.remove(&(at, id));
        }
        if !taken.is_empty() {
            return Turn::Renew(taken);
        }
        // Nothing due: the earliest is later (a retry or a run-out within
        // the early window is due at its own time).
        let earliest = state.queue.first().map(|&(at, _)| at);
        Turn::Wait(earliest.unwrap_or(now + early).max(now))
    }

    /// Puts a hold back into the schedule after a look at it, unless it
    /// was unwatched meanwhile or is done.
    fn put_back(&self, id: WatchId, next: &Next) {
        let mut state = lock(&self.state);
        match next {
            Next::At(at, phase) => {
                let earliest = state.queue.first().map(|&(at, _)| at);
                if let Some(entry) = state.watched.get_mut(&id) {
                    entry.due = Some(*at);
                    entry.phase = *phase;
                    state.queue.insert((*at, id));
                    // Batches end in tasks of their own: the renewer may
                    // sleep until a later hold meanwhile (a retry is due
                    // a pause after its failure).
                    if earliest.is_none_or(|earliest| *at < earliest) {
                        self.wake.notify_one();
                    }
                }
            }
            Next::Done | Next::Renew(_) => {
                state.watched.remove(&id);
            }
        }
    }

    fn is_watched(&self, id: WatchId) -> bool {
        lock(&self.state).watched.contains_key(&id)
    }
}

/// Clears the task's mark when its future ends or is dropped (the
/// runtime shut down), so that the next watched hold starts a new one.
struct Running<'a> {
    renewer: &'a Renewer,
    number: u64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.renewer.state);
        if state.task == Some(self.number) {
            state.task = None;
        }
    }
}

/// How much early a hold may be renewed to ride in a batch with the holds
/// due before it: an eighth of the interval. Renewing early only moves
/// the validity further out, and costs at most an eighth more renewals;
/// in exchange the holds of a Locker fall into at most about eight
/// groups per interval, whatever their number, so the calls per node and
/// second are bounded by the interval, not by the count of held locks.
fn early(interval: Duration) -> Duration {
    interval / 8
}

/// The renewer's task: renews due holds until none is watched.
async fn run<B: Backend>(shared: Shared<B>, number: u64) {
    let renewer = Arc::clone(&shared.renewer);
    let _running = Running {
        renewer: &renewer,
        number,
    };
    let Some(interval) = shared.options.watchdog_interval() else {
        return;
    };
    let timing = Timing::new(interval, shared.options.node_timeout);
    loop {
        match renewer.turn(number, Instant::now(), early(interval)) {
            Turn::Stop => return,
            Turn::Wait(at) => {
                tokio::select! {
                    () = sleep_until(at.into()) => {}
                    () = renewer.wake.notified() => {}
                }
            }
            Turn::Renew(due) => {
                // In a task of its own: a batch waiting out a slow node
                // (up to a node timeout) must not hold up the holds that
                // fall due meanwhile. Its holds are out of the queue until
                // it puts them back, so none is in two batches at once.
                // Counted until it ends: `Locker::settled` waits for
                // renewals in flight, also those of guards released
                // meanwhile.
                let in_flight = shared.background.start();
                let (shared, timing) = (shared.clone(), timing);
                tokio::spawn(async move {
                    renew(&shared, &timing, due).await;
                    drop(in_flight);
                });
            }
        }
    }
}

/// Renews the holds `due` now as one batch, and puts each back into the
/// schedule for its next turn.
async fn renew<B: Backend>(
    shared: &Shared<B>,
    timing: &Timing,
    due: Vec<(WatchId, Arc<Watched>, Phase)>,
) {
    let renewer = &shared.renewer;
    let sent = Instant::now();
    let mut batch = Vec::with_capacity(due.len());
    for (id, watched, phase) in due {
        let span = watched.span(shared);
        match span.in_scope(|| watched.due(shared, phase, sent)) {
            Next::Renew(want) => batch.push((id, watched, want, span)),
            next => renewer.put_back(id, &next),
        }
    }
    if batch.is_empty() {
        return;
    }
    let holds: Vec<(&Hold, Duration)> = batch
        .iter()
        .map(|(_, w, want, _)| (&w.hold, *want))
        .collect();
    // Past the last validity in the batch no answer can count any more;
    // before it, each hold is judged against its own validity below.
    let last = batch
        .iter()
        .map(|(_, w, _, _)| w.lease.valid_until())
        .max()
        .unwrap_or(sent);
    let span = tracing::debug_span!(
        "renew_batch",
        backend = shared.backend.name(),
        holds = batch.len()
    );
    let extend = shared.backend.extend_many(&holds, &shared.options);
    let outcomes = timeout_at(last.into(), extend.instrument(span)).await;
    let returned = Instant::now();
    drop(holds);
    for (i, (id, watched, _, span)) in batch.into_iter().enumerate() {
        if !renewer.is_watched(id) {
            // Released or dropped while in flight: its outcome is nobody's.
            continue;
        }
        let outcome = outcomes.as_ref().ok().and_then(|o| o.get(i));
        let next = span.in_scope(|| watched.renewed(shared, timing, (sent, returned), outcome));
        renewer.put_back(id, &next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locker::lease::Lease;

    /// What a held lock costs the renewer, beside its guard: a schedule
    /// entry, a queue element and the shared `Watched` (docs/performance.md,
    /// "Held locks"). Bounds, so that growth is a decision.
    #[test]
    fn a_watched_hold_costs_little() {
        let sizes = [
            ("Entry", size_of::<Entry>()),
            ("(WatchId, Entry)", size_of::<(WatchId, Entry)>()),
            ("queue element", size_of::<(Instant, WatchId)>()),
            ("Watched", size_of::<Watched>()),
            ("Hold", size_of::<Hold>()),
            ("Lease", size_of::<Lease>()),
        ];
        eprintln!("{sizes:?}");
        assert!(size_of::<(WatchId, Entry)>() <= 48);
        assert!(size_of::<(Instant, WatchId)>() <= 24);
        assert!(size_of::<Watched>() <= 256);
    }
}
