//! Where every outcome is recorded: the `metrics` facade, for whatever
//! recorder the application installed, and the Locker's own counters, for
//! [`Locker::statistics`](crate::Locker::statistics) with no recorder at all.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use metrics::Label;

use crate::error::Error;
use crate::metrics::{
    ACQUIRE, ACQUIRE_SECONDS, EXTEND, FALLBACK, HOLD_SECONDS, LOCK_LOST, RELEASE, WAIT_SECONDS,
    WATCHDOG_RENEW,
};
use crate::options::LockOptions;

/// A plain snapshot of what one Locker (and its clones) did, counted since it
/// was made. Works without any metrics recorder installed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// Acquire calls that got the lock.
    pub acquired: u64,
    /// Acquire calls refused because another owner held the lock.
    pub contended: u64,
    /// Waiting acquires that gave up at their deadline.
    pub timed_out: u64,
    /// Acquire calls that failed because too few nodes answered.
    pub quorum_unavailable: u64,
    /// Acquire calls that failed otherwise (bad input, reentrancy limit, ...).
    pub acquire_errors: u64,
    /// Releases that found the lock held throughout.
    pub released: u64,
    /// Releases that did not (`NotHeld`, `Lost`, outage), drops included.
    pub release_failures: u64,
    /// Explicit extends that succeeded.
    pub extended: u64,
    /// Explicit extends that failed.
    pub extend_failures: u64,
    /// Watchdog renewals confirmed by a quorum in time.
    pub renewals: u64,
    /// Watchdog renewals that failed (retried while validity remained).
    pub renewal_failures: u64,
    /// Guards marked lost.
    pub lost: u64,
    /// Guards alive now (acquired or adopted, not yet released or dropped).
    pub held: u64,
}

/// What one acquire call ended with, as the `result` label says it.
pub(crate) fn acquire_result(outcome: &Result<(), &Error>) -> &'static str {
    match outcome {
        Ok(()) => "acquired",
        Err(Error::NotObtained { .. }) => "contended",
        Err(Error::Timeout { .. }) => "timeout",
        Err(Error::QuorumUnavailable { .. }) => "quorum_unavailable",
        Err(_) => "error",
    }
}

/// What a release, extend or renewal ended with, as the `result` label says it.
pub(crate) fn held_result(ok: &'static str, outcome: Result<(), &Error>) -> &'static str {
    match outcome {
        Ok(()) => ok,
        Err(Error::NotHeld { .. }) => "not_held",
        Err(Error::Lost { .. }) => "lost",
        Err(Error::QuorumUnavailable { .. }) => "quorum_unavailable",
        Err(_) => "error",
    }
}

/// The resource a record is about, and the options that say whether it
/// becomes a label.
#[derive(Clone, Copy)]
pub(crate) struct Key<'a> {
    pub(crate) name: &'a str,
    /// What was held or asked for: `lock`, `read`, `write` or `permit`.
    pub(crate) kind: &'static str,
    pub(crate) options: &'a LockOptions,
}

/// The recording side of one Locker: shared by its clones, its guards and
/// their watchdogs.
#[derive(Debug)]
pub(crate) struct Telemetry {
    backend: &'static str,
    acquired: AtomicU64,
    contended: AtomicU64,
    timed_out: AtomicU64,
    quorum_unavailable: AtomicU64,
    acquire_errors: AtomicU64,
    released: AtomicU64,
    release_failures: AtomicU64,
    extended: AtomicU64,
    extend_failures: AtomicU64,
    renewals: AtomicU64,
    renewal_failures: AtomicU64,
    lost: AtomicU64,
    dropped_or_released: AtomicU64,
    adopted: AtomicU64,
}

impl Telemetry {
    pub(crate) fn new(backend: &'static str) -> Self {
        Self {
            backend,
            acquired: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            quorum_unavailable: AtomicU64::new(0),
            acquire_errors: AtomicU64::new(0),
            released: AtomicU64::new(0),
            release_failures: AtomicU64::new(0),
            extended: AtomicU64::new(0),
            extend_failures: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            renewal_failures: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            dropped_or_released: AtomicU64::new(0),
            adopted: AtomicU64::new(0),
        }
    }

    fn labels(&self, key: Key<'_>, result: Option<&'static str>) -> Vec<Label> {
        let mut labels = vec![
            Label::new("backend", self.backend),
            Label::new("kind", key.kind),
        ];
        if let Some(result) = result {
            labels.push(Label::new("result", result));
        }
        // Opt-in: one series per resource can explode a metrics backend.
        if key.options.metrics_per_key {
            labels.push(Label::new("key", key.name.to_owned()));
        }
        labels
    }

    /// One acquire call (`try_lock`, `lock`, `lock_timeout`) ended; `took` is
    /// the whole call, waiting included.
    pub(crate) fn acquire(&self, key: Key<'_>, outcome: Result<(), &Error>, took: Duration) {
        let result = acquire_result(&outcome);
        let slot = match result {
            "acquired" => &self.acquired,
            "contended" => &self.contended,
            "timeout" => &self.timed_out,
            "quorum_unavailable" => &self.quorum_unavailable,
            _ => &self.acquire_errors,
        };
        slot.fetch_add(1, Relaxed);
        metrics::counter!(ACQUIRE, self.labels(key, Some(result))).increment(1);
        if outcome.is_ok() {
            metrics::histogram!(ACQUIRE_SECONDS, self.labels(key, None)).record(took);
        }
    }

    /// A waiting acquire (`lock`, `lock_timeout`) spent `waited` before its
    /// outcome, whatever it was.
    pub(crate) fn waited(&self, key: Key<'_>, waited: Duration) {
        metrics::histogram!(WAIT_SECONDS, self.labels(key, None)).record(waited);
    }

    /// A lock was adopted: it is held from now on, like an acquired one.
    pub(crate) fn adopted(&self) {
        self.adopted.fetch_add(1, Relaxed);
    }

    /// A guard ended, by release or drop, after holding for `held_for`.
    pub(crate) fn release(&self, key: Key<'_>, outcome: Result<(), &Error>, held_for: Duration) {
        let result = held_result("released", outcome);
        let slot = if outcome.is_ok() {
            &self.released
        } else {
            &self.release_failures
        };
        slot.fetch_add(1, Relaxed);
        self.dropped_or_released.fetch_add(1, Relaxed);
        metrics::counter!(RELEASE, self.labels(key, Some(result))).increment(1);
        metrics::histogram!(HOLD_SECONDS, self.labels(key, None)).record(held_for);
    }

    /// An explicit extend ended.
    pub(crate) fn extend(&self, key: Key<'_>, outcome: Result<(), &Error>) {
        let slot = if outcome.is_ok() {
            &self.extended
        } else {
            &self.extend_failures
        };
        slot.fetch_add(1, Relaxed);
        let result = held_result("extended", outcome);
        metrics::counter!(EXTEND, self.labels(key, Some(result))).increment(1);
    }

    /// A watchdog renewal ended with `result` (`renewed`, `failed`,
    /// `not_held` or `error`).
    pub(crate) fn renewal(&self, key: Key<'_>, result: &'static str) {
        let slot = if result == "renewed" {
            &self.renewals
        } else {
            &self.renewal_failures
        };
        slot.fetch_add(1, Relaxed);
        metrics::counter!(WATCHDOG_RENEW, self.labels(key, Some(result))).increment(1);
    }

    /// A guard was marked lost (called once per guard).
    pub(crate) fn lost(&self, key: Key<'_>) {
        self.lost.fetch_add(1, Relaxed);
        metrics::counter!(LOCK_LOST, self.labels(key, None)).increment(1);
    }

    /// A fallback ran instead of the work: the lock service was out.
    pub(crate) fn fallback(&self, key: Key<'_>) {
        metrics::counter!(FALLBACK, self.labels(key, None)).increment(1);
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> Statistics {
        // Ends first: a guard that starts and ends between the two loads is
        // then counted in neither, never in the ends alone.
        let ended = self.dropped_or_released.load(Relaxed);
        let adopted = self.adopted.load(Relaxed);
        let acquired = self.acquired.load(Relaxed);
        Statistics {
            acquired,
            contended: self.contended.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            quorum_unavailable: self.quorum_unavailable.load(Relaxed),
            acquire_errors: self.acquire_errors.load(Relaxed),
            released: self.released.load(Relaxed),
            release_failures: self.release_failures.load(Relaxed),
            extended: self.extended.load(Relaxed),
            extend_failures: self.extend_failures.load(Relaxed),
            renewals: self.renewals.load(Relaxed),
            renewal_failures: self.renewal_failures.load(Relaxed),
            lost: self.lost.load(Relaxed),
            held: (acquired + adopted).saturating_sub(ended),
        }
    }
}
