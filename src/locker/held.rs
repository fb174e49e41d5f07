//! One granted hold kept alive: the part every guard shares, and the
//! drop-time release that never blocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use tracing::field::{Empty, display};

use super::handoff::Handoff;
use super::lease::Lease;
use super::shared::Shared;
use super::telemetry::held_result;
use super::watchdog::WatchdogHandle;
use crate::backend::{Backend, Hold, Mode};
use crate::error::{Error, Result};
use crate::fencing::FencingToken;

/// A hold that is released in the background if it is dropped while armed.
///
/// The Locker arms one before the first request of an acquire goes out, so a
/// cancelled acquire (its future dropped at any await point) still undoes
/// whatever the nodes granted; the guard keeps it armed until `release`.
pub(crate) struct ReleaseOnDrop<B: Backend> {
    shared: Shared<B>,
    hold: Option<Hold>,
    /// Since when the hold is granted and live; `None` while acquiring.
    held_since: Option<Instant>,
}

impl<B: Backend> ReleaseOnDrop<B> {
    pub(crate) fn arm(shared: &Shared<B>, hold: Hold) -> Self {
        Self {
            shared: shared.clone(),
            hold: Some(hold),
            held_since: None,
        }
    }

    /// Records the hold as live, so acquires by its owner nest inside it.
    pub(crate) fn register(&mut self, token: FencingToken) {
        let prefix = &self.shared.options.key_prefix;
        self.shared.live.insert(prefix, self.hold(), token);
        self.held_since = Some(Instant::now());
    }

    pub(crate) fn hold(&self) -> &Hold {
        self.hold.as_ref().expect("armed until disarmed")
    }

    /// Records the slot a granted permit occupies, so that its renewals
    /// and release go there.
    pub(crate) fn place(&mut self, slot: u32) {
        if let Some(hold) = self.hold.take() {
            self.hold = Some(hold.in_slot(slot));
        }
    }

    /// Records that the hold is now of `mode` (a downgrade).
    fn set_mode(&mut self, mode: Mode) {
        if let Some(hold) = self.hold.take() {
            self.shared
                .live
                .set_mode(&self.shared.options.key_prefix, &hold, mode);
            self.hold = Some(hold.with_mode(mode));
        }
    }

    pub(crate) fn disarm(&mut self) -> Hold {
        self.hold.take().expect("disarmed once")
    }

    fn held_for(&self) -> Duration {
        self.held_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }
}

impl<B: Backend> Drop for ReleaseOnDrop<B> {
    fn drop(&mut self) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        self.shared
            .live
            .remove(&self.shared.options.key_prefix, &hold);
        let held_for = self.held_since.map(|since| since.elapsed());
        // Never block in drop: hand the release to the runtime, counted
        // until it is done so that `Locker::settled` can wait for it.
        // Without a runtime (dropped after shutdown) the lock simply expires
        // by its ttl.
        if tokio::runtime::Handle::try_current().is_ok() {
            let shared = self.shared.clone();
            let span = release_span(&shared, hold.key(), "drop");
            let release = async move {
                // No caller is left to tell; an error here means the hold is
                // gone already or will expire. It is still counted, and
                // told to a `tracing` subscriber.
                let result = shared.backend.release(&hold, &shared.options).await;
                let outcome = result.as_ref().map(|_| ());
                trace_released(&tracing::Span::current(), outcome);
                match &result {
                    Ok(()) => {}
                    // A cancelled acquire (or a release retried after an
                    // unknown outcome, not counted again) may well have
                    // left nothing behind.
                    Err(Error::NotHeld { .. }) if held_for.is_none() => {}
                    Err(e) => tracing::warn!(
                        key = hold.key(),
                        error = %e,
                        "release of a dropped guard failed"
                    ),
                }
                if let Some(held_for) = held_for {
                    let key = shared.key(hold.key(), hold.mode());
                    shared.telemetry.release(key, outcome, held_for);
                }
            };
            self.shared.background.spawn(release.instrument(span));
        } else if let Some(held_for) = held_for {
            // No runtime: the lock expires by its ttl. The guard still ended.
            tracing::warn!(
                backend = self.shared.backend.name(),
                key = hold.key(),
                "guard dropped without a runtime: the lock stays until its ttl"
            );
            let error = Error::Lost {
                key: hold.key().to_owned(),
            };
            let key = self.shared.key(hold.key(), hold.mode());
            self.shared.telemetry.release(key, Err(&error), held_for);
        }
    }
}

/// One granted hold, kept alive and watched: what every guard is made of.
///
/// It owns the hold armed for release on drop, the lease (the validity and
/// the loss signal) and the watchdog that renews it, and does what every
/// guard does with them: extend, release, hand off, tell whether it is held
/// and when it is lost, with the counts and metrics of each. A guard of a
/// new primitive wraps one (see `docs/architecture.md`).
pub(crate) struct Held<B: Backend> {
    // Declared first so it is stopped before the drop-time release starts.
    watchdog: Option<WatchdogHandle>,
    hold: ReleaseOnDrop<B>,
    token: FencingToken,
    lease: Arc<Lease>,
}

impl<B: Backend> Held<B> {
    pub(crate) fn new(hold: ReleaseOnDrop<B>, token: FencingToken, valid_until: Instant) -> Self {
        let lease = Arc::new(Lease::new(valid_until));
        let watchdog = WatchdogHandle::watch(
            &hold.shared,
            hold.hold().clone(),
            Arc::clone(&lease),
            token,
            Instant::now(),
        );
        Self {
            watchdog,
            hold,
            token,
            lease,
        }
    }

    pub(crate) fn has_watchdog(&self) -> bool {
        self.watchdog.is_some()
    }

    /// The `Debug` form of a guard named `name` around this hold.
    pub(crate) fn describe(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        let mut out = f.debug_struct(name);
        out.field("key", &self.key())
            .field("token", &self.token)
            .field("valid_until", &self.expires_at());
        if let Some(slot) = self.slot() {
            out.field("slot", &slot);
        }
        out.field("watchdog", &self.has_watchdog())
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }

    /// The slot of a permit.
    pub(crate) fn slot(&self) -> Option<u32> {
        self.hold.hold().slot()
    }

    /// Turns a root write hold into a read hold (see
    /// [`WriteGuard::downgrade`](crate::WriteGuard::downgrade)); bounded by
    /// the validity, like an extend.
    pub(crate) async fn downgrade(&mut self) -> Result<()> {
        let shared = self.hold.shared.clone();
        let hold = self.hold.hold().clone();
        let nested = shared.live.others(&shared.options.key_prefix, &hold);
        if nested > 0 || hold.parent().is_some() {
            return Err(Error::DowngradeRefused {
                key: hold.key().to_owned(),
                nested: nested.max(1),
            });
        }
        if !self.lease.is_held() {
            self.mark_lost();
            return Err(self.lost_error());
        }
        let span = tracing::debug_span!(
            "downgrade",
            backend = shared.backend.name(),
            key = hold.key(),
            token = self.token.get(),
        );
        let downgrade = shared.backend.downgrade(&hold, &shared.options);
        let deadline = self.lease.valid_until();
        let outcome = tokio::time::timeout_at(deadline.into(), downgrade.instrument(span)).await;
        self.within_validity(outcome)?;
        self.hold.set_mode(Mode::Read);
        if let Some(watchdog) = &self.watchdog {
            watchdog.set_hold(self.hold.hold().clone());
        }
        Ok(())
    }

    /// The outcome of a call about the held hold that had to finish while
    /// it was still certainly held (an extend, a downgrade): a hold found
    /// gone, or a call that outran the validity, loses the guard.
    fn within_validity<T>(
        &self,
        outcome: std::result::Result<Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e @ Error::NotHeld { .. })) => {
                self.mark_lost();
                Err(e)
            }
            Ok(Err(e)) => Err(e),
            Err(_elapsed) => {
                self.mark_lost();
                Err(self.lost_error())
            }
        }
    }

    pub(crate) fn key(&self) -> &str {
        self.hold.hold().key()
    }

    pub(crate) fn token(&self) -> FencingToken {
        self.token
    }

    pub(crate) fn expires_at(&self) -> Instant {
        self.lease.valid_until()
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.expires_at().saturating_duration_since(Instant::now())
    }

    pub(crate) fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    pub(crate) async fn lost(&self) {
        self.lease.lost().await;
    }

    pub(crate) async fn extend(&self, ttl: Duration) -> Result<()> {
        let span = tracing::debug_span!(
            "extend",
            backend = self.hold.shared.backend.name(),
            key = self.key(),
            token = self.token.get(),
            ?ttl,
            outcome = Empty,
            error = Empty,
        );
        let result = self.try_extend(ttl).instrument(span.clone()).await;
        let outcome = result.as_ref().map(|_| ());
        span.record("outcome", held_result("extended", outcome));
        if let Err(e) = outcome {
            span.record("error", display(e));
        }
        let key = self.hold.shared.key(self.key(), self.hold.hold().mode());
        self.hold.shared.telemetry.extend(key, outcome);
        result
    }

    async fn try_extend(&self, ttl: Duration) -> Result<()> {
        let shared = &self.hold.shared;
        shared.options.validate_ttl(ttl)?;
        if !self.lease.is_held() {
            self.mark_lost();
            return Err(self.lost_error());
        }
        // Like a watchdog renewal, an extend counts only if it is confirmed
        // while the lock is still certainly held.
        let deadline = self.lease.valid_until();
        let extend = shared
            .backend
            .extend(self.hold.hold(), ttl, &shared.options);
        let outcome = tokio::time::timeout_at(deadline.into(), extend).await;
        let until = self.within_validity(outcome)?;
        match self.lease.renewed(until) {
            Ok(()) => Ok(()),
            Err(newly_lost) => {
                shared.forget_lost(self.hold.hold(), newly_lost);
                Err(self.lost_error())
            }
        }
    }

    pub(crate) async fn release(self) -> Result<()> {
        let span = release_span(&self.hold.shared, self.key(), "release");
        span.record("token", self.token.get());
        self.release_in(span.clone()).instrument(span).await
    }

    async fn release_in(mut self, span: tracing::Span) -> Result<()> {
        // No renewal may start from now on; one already sent finds the hold
        // gone (the extend script never recreates a hold).
        self.watchdog.take();
        let held_until_now = self.lease.is_held();
        let shared = self.hold.shared.clone();
        // From now on nothing may nest inside this hold.
        shared
            .live
            .remove(&shared.options.key_prefix, self.hold.hold());
        // The hold stays armed until the nodes answered, so a release whose
        // future is dropped half-way is finished in the background.
        let result = shared
            .backend
            .release(self.hold.hold(), &shared.options)
            .await;
        // Nodes that still had the hold do not prove it was certainly held
        // all along once the validity lapsed: the holder must hear of it.
        let result = match result {
            Ok(()) if !held_until_now => {
                self.mark_lost();
                Err(self.lost_error())
            }
            other => other,
        };
        // Counted once, with what the caller sees.
        trace_released(&span, result.as_ref().map(|_| ()));
        let held_for = self.hold.held_for();
        shared.telemetry.release(
            shared.key(self.key(), self.hold.hold().mode()),
            result.as_ref().map(|_| ()),
            held_for,
        );
        if matches!(result, Err(Error::QuorumUnavailable { .. })) {
            // The retry on drop is not counted again: its answer would
            // mostly say NotHeld for a release that in fact went through.
            self.hold.held_since = None;
        } else {
            self.hold.disarm();
        }
        // Still armed after an unknown outcome on too many nodes: dropping
        // `self` tries once more in the background (and counts it there);
        // the ttl is the last resort.
        result
    }

    pub(crate) fn hand_off(mut self) -> Handoff {
        self.watchdog.take();
        let shared = self.hold.shared.clone();
        shared
            .live
            .remove(&shared.options.key_prefix, self.hold.hold());
        let held_for = self.hold.held_for();
        let hold = self.hold.disarm();
        tracing::debug!(
            backend = shared.backend.name(),
            key = hold.key(),
            token = self.token.get(),
            "lock handed off"
        );
        // This guard ends here; the adopter counts its own.
        shared
            .telemetry
            .release(shared.key(hold.key(), hold.mode()), Ok(()), held_for);
        Handoff {
            key: hold.key().to_owned(),
            owner: hold.owner().to_owned(),
            hold_id: hold.id().to_owned(),
            token: self.token,
            mode: hold.mode(),
            slot: hold.slot(),
        }
    }

    fn mark_lost(&self) {
        let newly_lost = self.lease.mark_lost();
        self.hold.shared.forget_lost(self.hold.hold(), newly_lost);
    }

    fn lost_error(&self) -> Error {
        Error::Lost {
            key: self.key().to_owned(),
        }
    }
}

/// The `tracing` span of one release of `key`: by the guard's `release`,
/// or in the background after a `drop` (docs/metrics.md, "Tracing").
fn release_span<B: Backend>(shared: &Shared<B>, key: &str, call: &'static str) -> tracing::Span {
    tracing::debug_span!(
        "release",
        backend = shared.backend.name(),
        key,
        call,
        token = Empty,
        outcome = Empty,
        error = Empty,
    )
}

/// Records how a release ended on its span: the outcome (the `result`
/// label of the release metric), and the error.
fn trace_released(span: &tracing::Span, outcome: Result<(), &Error>) {
    span.record("outcome", held_result("released", outcome));
    if let Err(e) = outcome {
        span.record("error", display(e));
    }
}
