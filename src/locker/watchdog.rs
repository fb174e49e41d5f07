//! The watchdog's rules for one held hold: when to renew it, what to ask
//! for, and what a renewal's outcome means for its lease. The Locker's
//! renewer (`renewer.rs`) applies them to every watched hold, renewing
//! those that fall due together in one batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::field::{Empty, display};

use super::lease::Lease;
use super::renewer::{Renewer, WatchId};
use super::shared::Shared;
use crate::backend::{Backend, Hold};
use crate::error::{Error, Result};
use crate::fencing::FencingToken;

/// The watchdog of one guard: its entry in the Locker's renewal schedule.
/// Dropping it takes the entry out at once, so no renewal of the hold
/// starts from then on. A renewal already on the wire (in a batch with
/// others) cannot bring a released hold back, because the extend scripts
/// only lengthen holds that are still present, and its outcome is
/// ignored; until it has ended, `Locker::settled` waits for it.
#[derive(Debug)]
pub(crate) struct WatchdogHandle {
    renewer: Arc<Renewer>,
    id: WatchId,
}

impl WatchdogHandle {
    /// Renews `hold` from now on, as a hold acquired at `acquired_at`.
    pub(crate) fn watch<B: Backend>(
        shared: &Shared<B>,
        hold: Hold,
        lease: Arc<Lease>,
        token: FencingToken,
        acquired_at: Instant,
    ) -> Option<Self> {
        let interval = shared.options.watchdog_interval()?;
        let timing = Timing::new(interval, shared.options.node_timeout);
        let watched = Watched {
            hold,
            lease,
            token,
            acquired_at,
        };
        let due = watched.schedule(&timing, interval, acquired_at);
        let renewer = Arc::clone(&shared.renewer);
        let id = renewer.watch(shared, Arc::new(watched), due);
        Some(Self { renewer, id })
    }

    /// From now on renews `hold`, the same hold in another mode (a
    /// downgrade): the next renewal tells the nodes (one that missed the
    /// downgrade completes it then), and is counted under the new kind.
    pub(crate) fn set_hold(&self, hold: Hold) {
        self.renewer.replace(self.id, |old| Watched {
            hold,
            lease: Arc::clone(&old.lease),
            token: old.token,
            acquired_at: old.acquired_at,
        });
    }
}

impl Drop for WatchdogHandle {
    fn drop(&mut self) {
        self.renewer.unwatch(self.id);
    }
}

/// The watchdog's timing around a failed renewal, for a renewal interval
/// and a node timeout. [`LockOptions::validate`](crate::LockOptions::validate)
/// refuses intervals that leave no room for it within one validity.
#[derive(Clone, Copy)]
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

/// One watched hold: what renewing it needs.
pub(crate) struct Watched {
    pub(crate) hold: Hold,
    pub(crate) lease: Arc<Lease>,
    /// The hold's token, for its `tracing` spans.
    token: FencingToken,
    /// When the lock was acquired: the start of `max_hold`.
    acquired_at: Instant,
}

/// Where a watched hold stands in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Renewed when due, or a little early, together with others.
    Renewing,
    /// Renewed when due, and not earlier: a retry after a failed renewal
    /// keeps its pause.
    Retrying,
    /// The `max_hold` cap is reached: no more renewals; when due, the
    /// lock has run out (unless a manual extend pushed it out).
    RunningOut,
}

/// What comes next for a watched hold after a look at it.
pub(crate) enum Next {
    /// Look again at this time.
    At(Instant, Phase),
    /// Ask the backend to renew it for this ttl.
    Renew(Duration),
    /// Lost (and marked so), or run out: out of the schedule.
    Done,
}

impl Watched {
    /// The `tracing` span of one renewal of this hold.
    pub(crate) fn span<B: Backend>(&self, shared: &Shared<B>) -> tracing::Span {
        tracing::debug_span!(
            "renew",
            backend = shared.backend.name(),
            key = self.hold.key(),
            token = self.token.get(),
            outcome = Empty,
            lost = Empty,
            error = Empty,
        )
    }

    /// When to renew next, after a renewal (or the acquire) at `now`: an
    /// interval on, but early enough to keep the reserve for one more try.
    fn schedule(&self, timing: &Timing, interval: Duration, now: Instant) -> Instant {
        let latest = self
            .lease
            .valid_until()
            .checked_sub(timing.reserve)
            .unwrap_or(now);
        (now + interval).min(latest).max(now + timing.pause)
    }

    /// The look at a hold that is due at `now` (in `phase`): renew it, or
    /// not (lost meanwhile, starved, or capped).
    pub(crate) fn due<B: Backend>(&self, shared: &Shared<B>, phase: Phase, now: Instant) -> Next {
        let valid_until = self.lease.valid_until();
        if phase == Phase::RunningOut {
            // A manual extend may still push the end out.
            return if now < valid_until {
                Next::At(valid_until, Phase::RunningOut)
            } else {
                self.lost(shared)
            };
        }
        if !self.lease.is_held() {
            // Lost or lapsed meanwhile (a manual extend found it gone, or
            // the renewer was starved): nothing left to keep.
            return self.lost(shared);
        }
        let Some(want) = self.want(shared, now) else {
            // The cap is reached: let the lock run out, then say so.
            return Next::At(valid_until, Phase::RunningOut);
        };
        if valid_until.saturating_duration_since(now) <= shared.options.node_timeout {
            // No try could finish in time (the renewer was starved).
            return self.lost(shared);
        }
        Next::Renew(want)
    }

    /// What a renewal sent at `sent` and answered at `returned` came to:
    /// `None` when it did not end before every hold of its batch had run
    /// out of validity. A renewal counts only if a quorum confirmed it
    /// while the lock was still certainly ours. The holds of one batch get
    /// the same next due time from the same outcome, so they stay one
    /// batch, retries included.
    pub(crate) fn renewed<B: Backend>(
        &self,
        shared: &Shared<B>,
        timing: &Timing,
        (sent, returned): (Instant, Instant),
        outcome: Option<&Result<Instant>>,
    ) -> Next {
        let interval = shared.options.watchdog_interval().unwrap_or(timing.pause);
        match outcome {
            Some(Ok(until)) => {
                if let Err(newly_lost) = self.lease.renewed(*until) {
                    // Confirmed only after the validity ended: too late.
                    // `renewed` marked the lease lost itself.
                    self.count(shared, "failed");
                    tracing::Span::current().record("lost", true);
                    shared.forget_lost(&self.hold, newly_lost);
                    return Next::Done;
                }
                self.count(shared, "renewed");
                Next::At(self.schedule(timing, interval, sent), Phase::Renewing)
            }
            Some(Err(e)) if !e.is_retryable() => {
                tracing::Span::current().record("error", display(e));
                self.count(
                    shared,
                    if matches!(e, Error::NotHeld { .. }) {
                        "not_held"
                    } else {
                        "error"
                    },
                );
                self.lost(shared)
            }
            Some(Err(_)) | None => {
                if let Some(Err(e)) = outcome {
                    tracing::Span::current().record("error", display(e));
                }
                self.count(shared, "failed");
                // A manual extend may have moved the deadline meanwhile.
                let left = self.lease.valid_until().saturating_duration_since(returned);
                if left <= timing.reserve {
                    return self.lost(shared);
                }
                Next::At(returned + timing.pause, Phase::Retrying)
            }
        }
    }

    /// The ttl to ask for at `now`; with a cap, the lock must end by the
    /// cap. `None` once the cap is reached.
    fn want<B: Backend>(&self, shared: &Shared<B>, now: Instant) -> Option<Duration> {
        let ttl = shared.options.ttl;
        let cap = shared.options.max_hold.map(|m| self.acquired_at + m);
        let want = cap.map_or(ttl, |end| ttl.min(end.saturating_duration_since(now)));
        (want >= Duration::from_millis(1)).then_some(want)
    }

    /// Counts a renewal that ended with `result`, and records it on the
    /// renewal's span.
    fn count<B: Backend>(&self, shared: &Shared<B>, result: &'static str) {
        tracing::Span::current().record("outcome", result);
        let key = shared.key(self.hold.key(), self.hold.mode());
        shared.telemetry.renewal(key, result);
    }

    /// Marks the lease lost; out of the schedule.
    fn lost<B: Backend>(&self, shared: &Shared<B>) -> Next {
        tracing::Span::current().record("lost", true);
        let newly_lost = self.lease.mark_lost();
        shared.forget_lost(&self.hold, newly_lost);
        Next::Done
    }
}
