//! The guard of a held lock, and the drop-time release that never blocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handoff::Handoff;
use super::lease::Lease;
use super::shared::Shared;
use super::watchdog::{Renewal, WatchdogHandle};
use crate::backend::{Backend, Hold};
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
            self.shared.background.spawn(async move {
                // No caller is left to tell; an error here means the hold is
                // gone already or will expire. It is still counted.
                let result = shared.backend.release(&hold, &shared.options).await;
                if let Some(held_for) = held_for {
                    let key = shared.key(hold.key());
                    shared
                        .telemetry
                        .release(key, result.as_ref().map(|_| ()), held_for);
                }
            });
        } else if let Some(held_for) = held_for {
            // No runtime: the lock expires by its ttl. The guard still ended.
            let error = Error::Lost {
                key: hold.key().to_owned(),
            };
            let key = self.shared.key(hold.key());
            self.shared.telemetry.release(key, Err(&error), held_for);
        }
    }
}

/// Proof of a held lock.
///
/// Give it back with [`release`](LockGuard::release), which tells whether the
/// lock was still ours. Dropping it instead releases in the background,
/// best-effort, without blocking. Unless the options turn it off, a watchdog
/// renews the lock while the guard lives; [`lost`](LockGuard::lost) tells
/// when it could not.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard<B: Backend> {
    // Declared first so it is stopped before the drop-time release starts.
    watchdog: Option<WatchdogHandle>,
    hold: ReleaseOnDrop<B>,
    token: FencingToken,
    lease: Arc<Lease>,
}

impl<B: Backend> std::fmt::Debug for LockGuard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key())
            .field("token", &self.token)
            .field("valid_until", &self.lease.valid_until())
            .field("watchdog", &self.watchdog.is_some())
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> LockGuard<B> {
    /// A guard for a granted hold; starts its watchdog when the options ask
    /// for one.
    pub(crate) fn new(hold: ReleaseOnDrop<B>, token: FencingToken, valid_until: Instant) -> Self {
        let lease = Arc::new(Lease::new(valid_until));
        let watchdog = hold.shared.options.watchdog_interval().map(|interval| {
            Renewal {
                shared: hold.shared.clone(),
                hold: hold.hold().clone(),
                lease: Arc::clone(&lease),
                interval,
                acquired_at: Instant::now(),
            }
            .spawn()
        });
        Self {
            watchdog,
            hold,
            token,
            lease,
        }
    }

    /// The resource name this guard holds.
    pub fn key(&self) -> &str {
        self.hold.hold().key()
    }

    /// The fencing token: pass it with every write to the protected resource.
    pub fn token(&self) -> FencingToken {
        self.token
    }

    /// Until when the lock is certainly held, on this process's monotonic
    /// clock (acquire time and clock drift already taken off). The watchdog
    /// and [`extend`](LockGuard::extend) move it forward.
    pub fn expires_at(&self) -> Instant {
        self.lease.valid_until()
    }

    /// How much of the validity is left (zero once it has run out).
    pub fn remaining(&self) -> Duration {
        self.expires_at().saturating_duration_since(Instant::now())
    }

    /// Whether the lock is still certainly held: not lost, and within its
    /// validity. Once false it stays false (a lapsed guard can no longer be
    /// extended).
    pub fn is_held(&self) -> bool {
        self.lease.is_held()
    }

    /// Completes when the lock can no longer be counted on: the watchdog
    /// could not renew it on a quorum in time (it then gives up about a node
    /// timeout early, so there is normally still a moment to stop), found it
    /// gone, or reached the `max_hold` cap; or the validity ran out (without
    /// a watchdog, or with one starved of CPU). The validity is a
    /// conservative bound, so the nodes may still have the lock when this
    /// completes; it never stays pending once the lock is gone.
    ///
    /// Race it against the work the lock protects and stop that work when
    /// it completes; the fencing token covers the moment in between.
    ///
    /// ```no_run
    /// # async fn demo(locker: fencelock::Locker<fencelock::Redlock>) -> fencelock::Result<()> {
    /// let guard = locker.lock("reports").await?;
    /// tokio::select! {
    ///     () = guard.lost() => eprintln!("lock lost, stopping"),
    ///     () = async { /* the work */ } => {}
    /// }
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) {
        self.lease.lost().await;
    }

    /// Makes the lock live for `ttl` from now on a quorum of nodes.
    ///
    /// Fails with [`Error::NotHeld`] when the lock was already gone (the
    /// guard is then lost), with [`Error::Lost`] when it had been lost or its
    /// validity had run out (too late: another owner may have held it in
    /// between), and with [`Error::InvalidOptions`] for a ttl the options
    /// would reject.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let result = self.try_extend(ttl).await;
        let key = self.hold.shared.key(self.key());
        self.hold
            .shared
            .telemetry
            .extend(key, result.as_ref().map(|_| ()));
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
        match tokio::time::timeout_at(deadline.into(), extend).await {
            Ok(Ok(until)) => match self.lease.renewed(until) {
                Ok(()) => Ok(()),
                Err(newly_lost) => {
                    shared.forget_lost(self.hold.hold(), newly_lost);
                    Err(self.lost_error())
                }
            },
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

    /// Gives the lock back on every node, after stopping the watchdog.
    ///
    /// `Ok` only when the lock was held throughout: returns
    /// [`Error::NotHeld`] when a quorum no longer had it (it expired or was
    /// taken over), and [`Error::Lost`] when the nodes still had it but the
    /// guard had been lost or its validity had run out before the release.
    /// Either way work done under it may have overlapped with another
    /// holder. Never a silent success.
    pub async fn release(mut self) -> Result<()> {
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
        let held_for = self.hold.held_for();
        shared.telemetry.release(
            shared.key(self.key()),
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

    /// Gives the lock up to be [adopted](crate::Locker::adopt) elsewhere,
    /// without releasing it: the watchdog stops and nothing renews the lock
    /// until the adopter does, so it must be adopted within its ttl.
    pub fn hand_off(mut self) -> Handoff {
        self.watchdog.take();
        let shared = self.hold.shared.clone();
        shared
            .live
            .remove(&shared.options.key_prefix, self.hold.hold());
        let held_for = self.hold.held_for();
        let hold = self.hold.disarm();
        // This guard ends here; the adopter counts its own.
        shared
            .telemetry
            .release(shared.key(hold.key()), Ok(()), held_for);
        Handoff {
            key: hold.key().to_owned(),
            owner: hold.owner().to_owned(),
            hold_id: hold.id().to_owned(),
            token: self.token,
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
