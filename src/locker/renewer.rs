//! The renewer: the renewal schedule of every watched hold of a Locker
//! (per set of options), kept by one background task per runtime that
//! holds were taken on. The task wakes at the earliest due time and
//! renews the holds that fall due together with one
//! [`Backend::extend_many`] call: on Redis one script call per node per
//! tick (per 512 keys), however many locks are held.
//!
//! Each hold is still decided on its own (watchdog.rs): its own quorum,
//! its own validity, its own retry, cap, loss and metrics.
//!
//! The schedule is shared by the tasks of every runtime, and any of them
//! may renew any hold: a hold taken on a runtime that is idle, or gone, is
//! renewed by the task of another that runs. A batch cut off with its
//! runtime puts its holds back as due at once, for another task to take.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Id};
use tokio::sync::Notify;
use tokio::time::{sleep_until, timeout_at};
use tracing::Instrument;

use super::shared::Shared;
use super::watchdog::{Next, Phase, Timing, Watched};
use crate::backend::{Backend, Background, Hold, Task};
use crate::sync::lock;

/// A watched hold's place in its renewer.
pub(crate) type WatchId = u64;

/// The renewal schedule of one Locker's watched holds, and its tasks.
pub(crate) struct Renewer {
    state: Mutex<State>,
    /// Wakes every task: a hold is due earlier than they look next, or
    /// they have nothing left to look at.
    wake: Notify,
    /// The Locker's background work: a renewal in flight for a hold that
    /// was released meanwhile counts as such until it ends.
    background: Background,
}

impl std::fmt::Debug for Renewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Renewer")
            .field("watched", &state.watched.len())
            .field("tasks", &state.tasks.len())
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
    /// The running task of each runtime, by its number.
    tasks: HashMap<Id, u64>,
    next_task: u64,
    /// Holds unwatched while their renewal was in flight: background work
    /// until their batch ends.
    orphans: HashMap<WatchId, Task>,
    /// When the tasks look at the schedule next of their own accord
    /// (`None`: only when woken). A hold due no earlier needs no wake-up:
    /// a Locker that takes and frees locks in a loop then costs its
    /// renewer nothing per lock.
    looks_at: Option<Instant>,
    /// Since when nothing has been watched, as the tasks first saw it.
    idle_since: Option<Instant>,
}

impl State {
    /// After a hold left the schedule: with none left, the tasks' linger
    /// counts from now (not from their next look), and whether they must
    /// be woken to see it, having no time to look at (every hold was in
    /// flight).
    fn left(&mut self) -> bool {
        if !self.watched.is_empty() {
            return false;
        }
        self.idle_since.get_or_insert_with(Instant::now);
        self.looks_at.is_none()
    }
}

struct Entry {
    watched: Arc<Watched>,
    /// `None` while its renewal is in flight.
    due: Option<Instant>,
    phase: Phase,
}

/// What a task is to do now.
enum Turn {
    /// Nothing is watched: the task ends (and is started again with the
    /// next watched hold).
    Stop,
    /// Sleep until then, or without a time until a wake-up (every watched
    /// hold is in flight).
    Wait(Option<Instant>),
    /// Renew these, taken out of the queue.
    Renew(InFlight),
}

impl Renewer {
    pub(crate) fn new(background: Background) -> Self {
        Self {
            state: Mutex::default(),
            wake: Notify::new(),
            background,
        }
    }

    /// Adds a hold to the schedule, due at `due`; starts a task on the
    /// current runtime if none runs there.
    pub(crate) fn watch<B: Backend>(
        self: &Arc<Self>,
        shared: &Shared<B>,
        watched: Arc<Watched>,
        due: Instant,
    ) -> WatchId {
        let mut state = lock(&self.state);
        let id = state.next_id;
        state.next_id += 1;
        state.idle_since = None;
        state.watched.insert(
            id,
            Entry {
                watched,
                due: Some(due),
                phase: Phase::Renewing,
            },
        );
        state.queue.insert((due, id));
        // Without a runtime (a guard made outside one) the tasks of others
        // keep it; with none at all it runs out, and says so when looked at.
        let here = Handle::try_current().ok();
        if let Some(runtime) = here.filter(|h| !state.tasks.contains_key(&h.id())) {
            state.next_task += 1;
            let number = state.next_task;
            state.tasks.insert(runtime.id(), number);
            drop(state);
            runtime.spawn(run(shared.clone(), runtime.id(), number));
        } else if state.looks_at.is_none_or(|at| due < at) {
            drop(state);
            self.wake.notify_waiters();
        }
        id
    }

    /// Takes a hold out of the schedule: it is never renewed again, and
    /// the outcome of a renewal of it still in flight is dropped.
    pub(crate) fn unwatch(&self, id: WatchId) {
        let mut state = lock(&self.state);
        match state.watched.remove(&id) {
            Some(Entry { due: Some(due), .. }) => {
                state.queue.remove(&(due, id));
            }
            Some(Entry { due: None, .. }) => {
                let task = self.background.start();
                state.orphans.insert(id, task);
            }
            None => {}
        }
        let stranded = state.left();
        drop(state);
        if stranded {
            self.wake.notify_waiters();
        }
    }

    /// Replaces what a watched hold is renewed as (a downgrade). A
    /// renewal in flight finishes as what it was sent as.
    pub(crate) fn replace(&self, id: WatchId, with: impl FnOnce(&Watched) -> Watched) {
        if let Some(entry) = lock(&self.state).watched.get_mut(&id) {
            entry.watched = Arc::new(with(&entry.watched));
        }
    }

    /// A task's next turn at `now`: the holds due by then, with those in
    /// [`Phase::Renewing`] due within `early` of it. With nothing watched
    /// the tasks wait `linger` for more before they end (or a Locker that
    /// frees each lock before the next would start one for every lock).
    fn turn(
        self: &Arc<Self>,
        task: (Id, u64),
        now: Instant,
        (early, linger): (Duration, Duration),
    ) -> Turn {
        let mut state = lock(&self.state);
        if state.watched.is_empty() {
            let ends = *state.idle_since.get_or_insert(now) + linger;
            if now < ends {
                state.looks_at = Some(ends);
                return Turn::Wait(Some(ends));
            }
            if state.tasks.get(&task.0) == Some(&task.1) {
                state.tasks.remove(&task.0);
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
            // The task looks again right after it sends these.
            state.looks_at = Some(now);
            return Turn::Renew(InFlight {
                renewer: Arc::clone(self),
                holds: taken,
                ended: false,
            });
        }
        // Nothing due: the earliest is later (a retry or a run-out within
        // the early window is due at its own time).
        let next = state.queue.first().map(|&(at, _)| at.max(now));
        state.looks_at = next;
        Turn::Wait(next)
    }

    /// Puts a hold back into the schedule after a look at it, unless it
    /// was unwatched meanwhile or is done.
    fn put_back(&self, id: WatchId, next: &Next) {
        let mut state = lock(&self.state);
        let wake = match next {
            Next::At(at, phase) => match state.watched.get_mut(&id) {
                Some(entry) => {
                    entry.due = Some(*at);
                    entry.phase = *phase;
                    state.queue.insert((*at, id));
                    state.looks_at.is_none_or(|looks| *at < looks)
                }
                // Unwatched meanwhile (`unwatch` did the rest).
                None => state.left(),
            },
            Next::Done | Next::Renew(_) => {
                state.watched.remove(&id);
                state.left()
            }
        };
        drop(state);
        if wake {
            // Batches end in tasks of their own: the tasks may sleep until
            // a later hold meanwhile (a retry is due a pause after its
            // failure), or without a time.
            self.wake.notify_waiters();
        }
    }

    fn is_watched(&self, id: WatchId) -> bool {
        lock(&self.state).watched.contains_key(&id)
    }
}

/// The holds of one batch, out of the queue from the turn that took them
/// until each is put back. Dropped unfinished (its runtime shut down, even
/// before the batch began), it puts those still watched back as due now,
/// for the task of another runtime; either way it ends the background
/// count of those released meanwhile.
struct InFlight {
    renewer: Arc<Renewer>,
    holds: Vec<(WatchId, Arc<Watched>, Phase)>,
    /// Every hold was put back (or is done).
    ended: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut state = lock(&self.renewer.state);
        let mut requeued = false;
        for &(id, _, phase) in &self.holds {
            state.orphans.remove(&id);
            if self.ended {
                continue;
            }
            if let Some(entry) = state.watched.get_mut(&id).filter(|e| e.due.is_none()) {
                entry.due = Some(now);
                entry.phase = phase;
                state.queue.insert((now, id));
                requeued = true;
            }
        }
        drop(state);
        if requeued {
            self.renewer.wake.notify_waiters();
        }
    }
}

/// Clears the task's mark when its future ends or is dropped (the
/// runtime shut down), so that the next hold watched on that runtime
/// starts a new one.
struct Running<'a> {
    renewer: &'a Renewer,
    runtime: Id,
    number: u64,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.renewer.state);
        if state.tasks.get(&self.runtime) == Some(&self.number) {
            state.tasks.remove(&self.runtime);
        }
        // Nobody may be left to look when it said it would.
        state.looks_at = None;
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

/// A runtime's renewer task: renews due holds until none has been
/// watched for an interval.
async fn run<B: Backend>(shared: Shared<B>, runtime: Id, number: u64) {
    let renewer = Arc::clone(&shared.renewer);
    let _running = Running {
        renewer: &renewer,
        runtime,
        number,
    };
    let Some(interval) = shared.options.watchdog_interval() else {
        return;
    };
    let timing = Timing::new(interval, shared.options.node_timeout);
    // Lingering, the task must not be what keeps the backend alive.
    let weak = shared.downgrade();
    drop(shared);
    tracing::debug!("watchdog renewer task started");
    loop {
        let woken = renewer.wake.notified();
        tokio::pin!(woken);
        // Registered before the look, so a wake-up in between is kept.
        woken.as_mut().enable();
        // With every Locker and guard gone nothing more can be watched:
        // no lingering then.
        let linger = match weak.backend.strong_count() {
            0 => Duration::ZERO,
            _ => interval,
        };
        let windows = (early(interval), linger);
        match renewer.turn((runtime, number), Instant::now(), windows) {
            Turn::Stop => {
                tracing::debug!("watchdog renewer task ended: nothing held for an interval");
                return;
            }
            Turn::Wait(Some(at)) => {
                tokio::select! {
                    () = sleep_until(at.into()) => {}
                    () = woken => {}
                }
            }
            Turn::Wait(None) => woken.await,
            Turn::Renew(due) => {
                // In a task of its own: a batch waiting out a slow node
                // (up to a node timeout) must not hold up the holds that
                // fall due meanwhile. Its holds are out of the queue until
                // it puts them back, so none is in two batches at once.
                // Without a backend no guard is left; `due` requeues what
                // is still watched as it drops.
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                tokio::spawn(async move { renew(&shared, &timing, due).await });
            }
        }
    }
}

/// Renews the holds `due` now as one batch, and puts each back into the
/// schedule for its next turn.
async fn renew<B: Backend>(shared: &Shared<B>, timing: &Timing, mut due: InFlight) {
    let renewer = &shared.renewer;
    let sent = Instant::now();
    let mut batch = Vec::with_capacity(due.holds.len());
    for (id, watched, phase) in &due.holds {
        if !renewer.is_watched(*id) {
            // Released since its turn: nothing to send.
            continue;
        }
        let span = watched.span(shared);
        match span.in_scope(|| watched.due(shared, *phase, sent)) {
            Next::Renew(want) => batch.push((*id, Arc::clone(watched), want, span)),
            next => renewer.put_back(*id, &next),
        }
    }
    if !batch.is_empty() {
        extend(shared, timing, sent, batch).await;
    }
    due.ended = true;
}

/// Sends one batch, and judges each hold on the outcome.
async fn extend<B: Backend>(
    shared: &Shared<B>,
    timing: &Timing,
    sent: Instant,
    batch: Vec<(WatchId, Arc<Watched>, Duration, tracing::Span)>,
) {
    let renewer = &shared.renewer;
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
