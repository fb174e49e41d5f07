//! The guard of an exclusive lock: a thin public face on [`Held`], which
//! does the work every guard shares.

use std::time::{Duration, Instant};

use super::handoff::Handoff;
use super::held::Held;
use crate::backend::Backend;
use crate::error::Result;
// Named in the docs only.
#[cfg(doc)]
use crate::error::Error;
use crate::fencing::FencingToken;

/// Proof of a held lock.
///
/// Give it back with [`release`](LockGuard::release), which tells whether the
/// lock was still ours. Dropping it instead releases in the background,
/// best-effort, without blocking. Unless the options turn it off, a watchdog
/// renews the lock while the guard lives; [`lost`](LockGuard::lost) tells
/// when it could not.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard<B: Backend> {
    held: Held<B>,
}

impl<B: Backend> std::fmt::Debug for LockGuard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key())
            .field("token", &self.token())
            .field("valid_until", &self.expires_at())
            .field("watchdog", &self.held.has_watchdog())
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> LockGuard<B> {
    /// The guard of a granted exclusive hold.
    pub(crate) fn from_held(held: Held<B>) -> Self {
        Self { held }
    }

    /// The resource name this guard holds.
    pub fn key(&self) -> &str {
        self.held.key()
    }

    /// The fencing token: pass it with every write to the protected resource.
    pub fn token(&self) -> FencingToken {
        self.held.token()
    }

    /// The lock's name and token, for a resource that checks them with
    /// [`Locker::check_current`](crate::Locker::check_current).
    pub fn sequencer(&self) -> crate::Sequencer {
        crate::Sequencer::new(self.key(), self.token())
    }

    /// Until when the lock is certainly held, on this process's monotonic
    /// clock (acquire time and clock drift already taken off). The watchdog
    /// and [`extend`](LockGuard::extend) move it forward.
    pub fn expires_at(&self) -> Instant {
        self.held.expires_at()
    }

    /// How much of the validity is left (zero once it has run out).
    pub fn remaining(&self) -> Duration {
        self.held.remaining()
    }

    /// Whether the lock is still certainly held: not lost, and within its
    /// validity. Once false it stays false (a lapsed guard can no longer be
    /// extended).
    pub fn is_held(&self) -> bool {
        self.held.is_held()
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
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits; call it again to wait again.
    pub async fn lost(&self) {
        self.held.lost().await
    }

    /// Makes the lock live for `ttl` from now on a quorum of nodes.
    ///
    /// Fails with [`Error::NotHeld`](crate::Error::NotHeld) when the lock was already gone (the
    /// guard is then lost), with [`Error::Lost`](crate::Error::Lost) when it had been lost or its
    /// validity had run out (too late: another owner may have held it in
    /// between), and with [`Error::InvalidOptions`](crate::Error::InvalidOptions) for a ttl the options
    /// would reject.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped extend leaves the lock held as before, or extended
    /// on the nodes it reached; the validity this guard counts on only moves
    /// when a quorum confirmed in time.
    ///
    /// # Errors
    ///
    /// As listed above, and [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) when too few nodes
    /// answered (the lock is then still held until its current validity).
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        self.held.extend(ttl).await
    }

    /// Gives the lock back on every node, after stopping the watchdog.
    ///
    /// `Ok` only when the lock was held throughout: returns
    /// [`Error::NotHeld`](crate::Error::NotHeld) when a quorum no longer had it (it expired or was
    /// taken over), and [`Error::Lost`](crate::Error::Lost) when the nodes still had it but the
    /// guard had been lost or its validity had run out before the release.
    /// Either way work done under it may have overlapped with another
    /// holder. Never a silent success.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a release whose future is dropped half-way is finished in
    /// the background, as if the guard had been dropped.
    ///
    /// # Errors
    ///
    /// As listed above, and [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) when too few nodes
    /// answered; the release is then tried once more in the background, and the
    /// ttl is the last resort.
    pub async fn release(self) -> Result<()> {
        self.held.release().await
    }

    /// Gives the lock up to be [adopted](crate::Locker::adopt) elsewhere,
    /// without releasing it: the watchdog stops and nothing renews the lock
    /// until the adopter does, so it must be adopted within its ttl.
    pub fn hand_off(self) -> Handoff {
        self.held.hand_off()
    }
}

/// The methods every guard has, delegated to its [`Held`]: the docs name
/// the primitive (`$what`, such as "read lock") and the guard (`$guard`).
macro_rules! held_methods {
    ($guard:ident, $what:literal) => {
        #[doc = concat!("Gives the ", $what, " up to be adopted elsewhere (see")]
        /// [`LockGuard::hand_off`](crate::LockGuard::hand_off)), without
        /// releasing it: it must be adopted within its ttl, by the adopt
        /// call of its kind.
        pub fn hand_off(self) -> $crate::Handoff {
            self.held.hand_off()
        }

        /// The resource name this guard holds.
        pub fn key(&self) -> &str {
            self.held.key()
        }

        #[doc = concat!("The fencing token of this ", $what, ": pass it with every ")]
        /// access to the protected resource (docs/fencing.md says how a
        /// resource checks it).
        pub fn token(&self) -> $crate::FencingToken {
            self.held.token()
        }

        /// The lock's name and token, for a resource that checks them with
        /// [`Locker::check_current`](crate::Locker::check_current).
        pub fn sequencer(&self) -> $crate::Sequencer {
            $crate::Sequencer::new(self.key(), self.token())
        }

        #[doc = concat!("Until when the ", $what, " is certainly held, on this process's")]
        /// monotonic clock (acquire time and clock drift already taken
        /// off). The watchdog and `extend` move it forward.
        pub fn expires_at(&self) -> std::time::Instant {
            self.held.expires_at()
        }

        /// How much of the validity is left (zero once it has run out).
        pub fn remaining(&self) -> std::time::Duration {
            self.held.remaining()
        }

        #[doc = concat!("Whether the ", $what, " is still certainly held: not lost, and")]
        /// within its validity. Once false it stays false.
        pub fn is_held(&self) -> bool {
            self.held.is_held()
        }

        #[doc = concat!("Completes when the ", $what, " can no longer be counted on: the")]
        /// watchdog could not renew it in time, found it gone, or reached
        /// the `max_hold` cap; or the validity ran out. Race it against the
        /// work it protects, as with [`LockGuard::lost`](crate::LockGuard::lost).
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: it only waits; call it again to wait again.
        pub async fn lost(&self) {
            self.held.lost().await
        }

        #[doc = concat!("Makes the ", $what, " live for `ttl` from now, as")]
        /// [`LockGuard::extend`](crate::LockGuard::extend) does for a lock.
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: a dropped extend leaves the hold as before, or
        /// extended on the nodes it reached; the validity this guard counts
        /// on only moves when a quorum confirmed in time.
        ///
        /// # Errors
        ///
        /// [`Error::NotHeld`](crate::Error::NotHeld) when the hold was gone,
        /// [`Error::Lost`](crate::Error::Lost) when it had been lost or its
        /// validity had run out, [`Error::InvalidOptions`](crate::Error::InvalidOptions)
        /// for a ttl the options reject, and
        /// [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) when
        /// too few nodes answered.
        pub async fn extend(&self, ttl: std::time::Duration) -> $crate::Result<()> {
            self.held.extend(ttl).await
        }

        #[doc = concat!("Gives the ", $what, " back on every node, after stopping the")]
        /// watchdog. `Ok` only when it was held throughout, never a silent
        /// success (see [`LockGuard::release`](crate::LockGuard::release)).
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: a release whose future is dropped half-way is
        /// finished in the background, as if the guard had been dropped.
        ///
        /// # Errors
        ///
        /// [`Error::NotHeld`](crate::Error::NotHeld) when a quorum no longer
        /// had it, [`Error::Lost`](crate::Error::Lost) when the guard had
        /// been lost before, [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable)
        /// when too few nodes answered (tried once more in the background).
        pub async fn release(self) -> $crate::Result<()> {
            self.held.release().await
        }
    };
}

pub(crate) use held_methods;
