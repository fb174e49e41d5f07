//! The guard of a held lock, and the drop-time release that never blocks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Hold};
use crate::error::{Error, Result};
use crate::fencing::FencingToken;
use crate::options::LockOptions;
use crate::owner::LiveHolds;

/// A hold that is released in the background if it is dropped while armed.
///
/// The Locker arms one before the first request of an acquire goes out, so a
/// cancelled acquire (its future dropped at any await point) still undoes
/// whatever the nodes granted; the guard keeps it armed until `release`.
pub(crate) struct ReleaseOnDrop<B: Backend> {
    backend: Arc<B>,
    options: Arc<LockOptions>,
    live: Arc<LiveHolds>,
    hold: Option<Hold>,
}

impl<B: Backend> ReleaseOnDrop<B> {
    pub(crate) fn arm(
        backend: Arc<B>,
        options: Arc<LockOptions>,
        live: Arc<LiveHolds>,
        hold: Hold,
    ) -> Self {
        Self {
            backend,
            options,
            live,
            hold: Some(hold),
        }
    }

    /// Records the hold as live, so acquires by its owner nest inside it.
    pub(crate) fn register(&self, token: FencingToken) {
        self.live.insert(self.hold(), token);
    }

    pub(crate) fn hold(&self) -> &Hold {
        self.hold.as_ref().expect("armed until disarmed")
    }

    pub(crate) fn disarm(&mut self) -> Hold {
        self.hold.take().expect("disarmed once")
    }
}

impl<B: Backend> Drop for ReleaseOnDrop<B> {
    fn drop(&mut self) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        self.live.remove(&hold);
        // Never block in drop: hand the release to the runtime. Without a
        // runtime (dropped after shutdown) the lock simply expires by its ttl.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let backend = Arc::clone(&self.backend);
            let options = Arc::clone(&self.options);
            runtime.spawn(async move {
                // No caller is left to tell; an error here means the hold is
                // gone already or will expire.
                let _ = backend.release(&hold, &options).await;
            });
        }
    }
}

/// Proof of a held lock.
///
/// Give it back with [`release`](LockGuard::release), which tells whether the
/// lock was still ours. Dropping it instead releases in the background,
/// best-effort, without blocking.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard<B: Backend> {
    hold: ReleaseOnDrop<B>,
    token: FencingToken,
    valid_until: Instant,
}

impl<B: Backend> std::fmt::Debug for LockGuard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key())
            .field("token", &self.token)
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> LockGuard<B> {
    pub(crate) fn new(hold: ReleaseOnDrop<B>, token: FencingToken, valid_until: Instant) -> Self {
        Self {
            hold,
            token,
            valid_until,
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
    /// clock (acquire time and clock drift already taken off).
    pub fn expires_at(&self) -> Instant {
        self.valid_until
    }

    /// How much of the validity is left (zero once it has run out).
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Makes the lock live for `ttl` from now on a quorum of nodes.
    ///
    /// Fails with [`Error::NotHeld`] when the lock was already gone, and with
    /// [`Error::InvalidOptions`] for a ttl the options would reject.
    pub async fn extend(&mut self, ttl: Duration) -> Result<()> {
        let options = self.hold.options.as_ref().clone().ttl(ttl);
        options.validate()?;
        let valid_until = self
            .hold
            .backend
            .extend(self.hold.hold(), ttl, &self.hold.options)
            .await?;
        self.valid_until = valid_until;
        Ok(())
    }

    /// Gives the lock back on every node.
    ///
    /// Returns [`Error::NotHeld`] when a quorum no longer had it (it expired
    /// or was taken over), so work done under it may have overlapped with
    /// another holder: never a silent success.
    pub async fn release(mut self) -> Result<()> {
        // From now on nothing may nest inside this hold.
        self.hold.live.remove(self.hold.hold());
        // The hold stays armed until the nodes answered, so a release whose
        // future is dropped half-way is finished in the background.
        let result = self
            .hold
            .backend
            .release(self.hold.hold(), &self.hold.options)
            .await;
        if !matches!(result, Err(Error::QuorumUnavailable { .. })) {
            self.hold.disarm();
        }
        // Still armed after an unknown outcome on too many nodes: dropping
        // `self` tries once more in the background; the ttl is the last resort.
        result
    }
}
