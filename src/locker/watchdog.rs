//! The background task that keeps a held lock alive, and marks it lost when
//! it cannot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{sleep_until, timeout_at};
use tracing::Instrument;
use tracing::field::{Empty, display};

use super::lease::Lease;
use super::shared::Shared;
use crate::backend::{Backend, Hold};
use crate::error::Error;
use crate::fencing::FencingToken;

/// The running watchdog of one guard. Dropping it stops the task at once
/// (until its future is dropped, `Locker::settled` waits for it: a renewal
/// cut off may leave an undo to the backend); a renewal already on the wire
/// cannot bring a released hold back, because the extend script only
/// lengthens holds that are still present.
#[derive(Debug)]
pub(crate) struct WatchdogHandle {
    _task: crate::backend::Owned,
}

/// The watchdog's timing around a failed renewal, for a renewal interval
/// and a node timeout. [`LockOptions::validate`](crate::LockOptions::validate)
/// refuses intervals that leave no room for it within one validity.
pub(crate) struct Timing {
    /// After a failed renewal, try again this soon, but not in a tight loop.
    pub(crate) pause: Duration,
    /// What must remain of the validity for one more try: the pause, the
    /// try itself (up to a node_timeout), and a node_timeout of warning, so
    /// a holder told of a loss still has time to stop its work.
    pub(crate) reserve: Duration,
}

impl Timing {
    pub(crate) fn new(interval: Duration, node_timeout: Duration) -> Self {
        // (Validation keeps node_timeout at 1 ms or more; max() last anyway.)
        let pause = (interval / 4)
            .min(node_timeout)
            .max(Duration::from_millis(1));
        let reserve = pause.saturating_add(node_timeout.saturating_mul(2));
        Self { pause, reserve }
    }
}

/// What one watchdog needs to renew one hold.
pub(crate) struct Renewal<B: Backend> {
    pub(crate) shared: Shared<B>,
    pub(crate) hold: Hold,
    pub(crate) lease: Arc<Lease>,
    /// The hold's token, for its `tracing` spans.
    pub(crate) token: FencingToken,
    pub(crate) interval: Duration,
    /// When the lock was acquired: the start of `max_hold`.
    pub(crate) acquired_at: Instant,
}

impl<B: Backend> Renewal<B> {
    pub(crate) fn spawn(self) -> WatchdogHandle {
        let background = self.shared.background.clone();
        WatchdogHandle {
            _task: background.spawn_owned(self.run()),
        }
    }

    async fn run(self) {
        let timing = Timing::new(self.interval, self.shared.options.node_timeout);
        let mut next = self.schedule(&timing, self.acquired_at);
        loop {
            sleep_until(next.into()).await;
            let span = tracing::debug_span!(
                "renew",
                backend = self.shared.backend.name(),
                key = self.hold.key(),
                token = self.token.get(),
                outcome = Empty,
                lost = Empty,
                error = Empty,
            );
            match self.renew(&timing).instrument(span).await {
                Some(due) => next = due,
                None => return,
            }
        }
    }

    /// When to renew next, after a renewal (or the acquire) at `now`: an
    /// interval on, but early enough to keep the reserve for one more try.
    fn schedule(&self, timing: &Timing, now: Instant) -> Instant {
        let latest = self
            .lease
            .valid_until()
            .checked_sub(timing.reserve)
            .unwrap_or(now);
        (now + self.interval).min(latest).max(now + timing.pause)
    }

    /// The renewal that is due: when the next one is, or `None` once the
    /// lock is lost (and marked so).
    async fn renew(&self, timing: &Timing) -> Option<Instant> {
        if !self.lease.is_held() {
            // Lost or lapsed meanwhile (a manual extend found it gone, or
            // this task was starved): nothing left to keep.
            return self.lost();
        }
        let options = &self.shared.options;
        let now = Instant::now();
        let valid_until = self.lease.valid_until();
        let Some(want) = self.want(now) else {
            return self.run_out().await;
        };
        if valid_until.saturating_duration_since(now) <= options.node_timeout {
            // No try could finish in time (this task was starved).
            return self.lost();
        }
        // A renewal counts only if a quorum confirms it while the lock is
        // still certainly ours.
        let renewal = self.shared.backend.extend(&self.hold, want, options);
        let renewed = timeout_at(valid_until.into(), renewal).await;
        match renewed {
            Ok(Ok(until)) => {
                if let Err(newly_lost) = self.lease.renewed(until) {
                    // Confirmed only after the validity ended: too late.
                    // `renewed` marked the lease lost itself.
                    self.count("failed");
                    tracing::Span::current().record("lost", true);
                    self.shared.forget_lost(&self.hold, newly_lost);
                    return None;
                }
                self.count("renewed");
                Some(self.schedule(timing, now))
            }
            Ok(Err(e)) if !e.is_retryable() => {
                tracing::Span::current().record("error", display(&e));
                self.count(if matches!(e, Error::NotHeld { .. }) {
                    "not_held"
                } else {
                    "error"
                });
                self.lost()
            }
            Ok(Err(_)) | Err(_) => {
                if let Ok(Err(e)) = &renewed {
                    tracing::Span::current().record("error", display(e));
                }
                self.count("failed");
                // A manual extend may have moved the deadline meanwhile.
                let now = Instant::now();
                if self.lease.valid_until().saturating_duration_since(now) <= timing.reserve {
                    return self.lost();
                }
                Some(now + timing.pause)
            }
        }
    }

    /// The ttl to ask for at `now`; with a cap, the lock must end by the
    /// cap. `None` once the cap is reached.
    fn want(&self, now: Instant) -> Option<Duration> {
        let ttl = self.shared.options.ttl;
        let cap = self.shared.options.max_hold.map(|m| self.acquired_at + m);
        let want = cap.map_or(ttl, |end| ttl.min(end.saturating_duration_since(now)));
        (want >= Duration::from_millis(1)).then_some(want)
    }

    /// The cap is reached: lets the lock run out (a manual extend may still
    /// push it out), then says so.
    async fn run_out(&self) -> Option<Instant> {
        while Instant::now() < self.lease.valid_until() {
            sleep_until(self.lease.valid_until().into()).await;
        }
        self.lost()
    }

    /// Counts a renewal that ended with `result`, and records it on the
    /// renewal's span.
    fn count(&self, result: &'static str) {
        tracing::Span::current().record("outcome", result);
        let key = self.shared.key(self.hold.key(), self.hold.mode());
        self.shared.telemetry.renewal(key, result);
    }

    /// Marks the lease lost; `None`, for the renewal that found out.
    fn lost(&self) -> Option<Instant> {
        tracing::Span::current().record("lost", true);
        let newly_lost = self.lease.mark_lost();
        self.shared.forget_lost(&self.hold, newly_lost);
        None
    }
}
