//! The semaphore: a name with N permits, each a lease of its own in one of
//! N slots (docs/algorithm.md, section 13).

use std::time::Duration;

use crate::backend::{Backend, Mode};
use crate::error::{Error, Result};
use crate::options::{MAX_PERMITS, validate_key};

use super::guard::held_methods;
use super::held::Held;
use super::{Handoff, Locker};

impl<B: Backend> Locker<B> {
    /// The semaphore `name` with `permits` permits: at most that many
    /// [`Permit`]s of it are held at once, across every process that uses
    /// the same name and count. Makes no request.
    ///
    /// Every client must use the same count for a name: one that asks with
    /// another count while permits are held gets
    /// [`Error::PermitsMismatch`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPermits`] for 0 or more than [`MAX_PERMITS`];
    /// [`Error::InvalidKey`] for an empty or oversized name.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = fencelock::testing::RedisServer::start()?;
    /// # let url = server.url();
    /// use fencelock::Locker;
    ///
    /// let locker = Locker::redis([url.as_str()])?;
    /// let exports = locker.semaphore("exports", 2)?;
    /// let first = exports.acquire().await?;
    /// let second = exports.acquire().await?;
    /// assert!(exports.try_acquire().await.is_err()); // both permits are out
    /// assert_ne!(first.slot(), second.slot());
    /// first.release().await?;
    /// second.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: &str, permits: u32) -> Result<Semaphore<B>> {
        if permits == 0 || permits > MAX_PERMITS {
            return Err(Error::InvalidPermits {
                permits,
                max: MAX_PERMITS,
            });
        }
        validate_key(name)?;
        Ok(Semaphore {
            locker: self.clone(),
            name: name.to_owned(),
            permits,
        })
    }
}

/// A semaphore of N permits on a Locker's backend; see
/// [`Locker::semaphore`]. Cheap to clone.
///
/// Each permit is a lease: a holder that crashes gives its permit back
/// when its ttl runs out, a watchdog renews held permits, and
/// [`Permit::lost`] says when one could not be kept. Permits do not nest:
/// every acquire takes one more, also by the same task.
pub struct Semaphore<B: Backend> {
    locker: Locker<B>,
    name: String,
    permits: u32,
}

// Not derived: a derive would ask `B: Clone`, and backends are shared,
// not cloned.
impl<B: Backend> Clone for Semaphore<B> {
    fn clone(&self) -> Self {
        Self {
            locker: self.locker.clone(),
            name: self.name.clone(),
            permits: self.permits,
        }
    }
}

impl<B: Backend> std::fmt::Debug for Semaphore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name)
            .field("permits", &self.permits)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Semaphore<B> {
    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many permits it has.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    fn mode(&self) -> Mode {
        Mode::Permit {
            permits: self.permits,
        }
    }

    /// One attempt at a permit: one now, or [`Error::NotObtained`] when
    /// all are held.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any await point leaves no
    /// permit behind (whatever the nodes granted is released in the
    /// background).
    ///
    /// # Errors
    ///
    /// [`Error::NotObtained`] when every permit is held;
    /// [`Error::PermitsMismatch`] when the live permits were taken with
    /// another count; [`Error::WrongKind`] when the name is in use as a
    /// lock; otherwise as [`Locker::try_lock`].
    pub async fn try_acquire(&self) -> Result<Permit<B>> {
        let held = self
            .locker
            .try_hold(&self.name, self.mode(), "try_acquire")
            .await?;
        Ok(Permit { held })
    }

    /// Waits for a permit. A released permit wakes the waiters of each
    /// process one at a time, in the order they came.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Locker::lock`]: no permit is left behind and the
    /// waiter's place is given up.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Semaphore::try_acquire), for the errors that
    /// waiting does not outlast.
    pub async fn acquire(&self) -> Result<Permit<B>> {
        let held = self
            .locker
            .wait_hold(&self.name, self.mode(), "acquire", None)
            .await?;
        Ok(Permit { held })
    }

    /// Waits at most `wait` for a permit.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`acquire`](Semaphore::acquire).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `wait` ran out; otherwise as
    /// [`acquire`](Semaphore::acquire).
    pub async fn acquire_timeout(&self, wait: Duration) -> Result<Permit<B>> {
        let held = self
            .locker
            .wait_hold(&self.name, self.mode(), "acquire_timeout", Some(wait))
            .await?;
        Ok(Permit { held })
    }

    /// Runs `work` holding a permit and gives it back on every exit path,
    /// as [`Locker::with_lock`] does for a lock.
    ///
    /// # Cancel safety
    ///
    /// As [`Locker::with_lock`].
    ///
    /// # Errors
    ///
    /// The errors of [`acquire`](Semaphore::acquire); after the work,
    /// [`Error::Lost`] or [`Error::NotHeld`] when the permit did not last.
    pub async fn with_permit<T, F>(&self, work: F) -> Result<T>
    where
        F: AsyncFnOnce(&Permit<B>) -> T,
    {
        let permit = self.acquire().await?;
        let value = work(&permit).await;
        permit.release().await?;
        Ok(value)
    }

    /// Takes over a permit of this semaphore that another guard
    /// [handed off](Permit::hand_off), as [`Locker::adopt`] does for a
    /// lock: renews it for a ttl and keeps its owner, slot and token.
    ///
    /// # Cancel safety
    ///
    /// As [`Locker::adopt`].
    ///
    /// # Errors
    ///
    /// [`Error::WrongKind`] when `handoff` is not of a permit, or of
    /// another name; [`Error::PermitsMismatch`] when it was taken with
    /// another count; otherwise as [`Locker::adopt`].
    pub async fn adopt(&self, handoff: &Handoff) -> Result<Permit<B>> {
        let mode = handoff.mode();
        match mode {
            Mode::Permit { permits } if permits != self.permits => {
                return Err(Error::PermitsMismatch {
                    key: self.name.clone(),
                    ours: self.permits,
                    theirs: permits,
                });
            }
            Mode::Permit { .. } if handoff.key() != self.name => {
                return Err(Error::WrongKind {
                    key: handoff.key().to_owned(),
                    in_use_as: "another semaphore".to_owned(),
                    wanted: "semaphore",
                });
            }
            _ => {}
        }
        let wanted = Mode::Permit {
            permits: self.permits,
        };
        let held = self
            .locker
            .adopt_as(handoff, wanted, "adopt_permit")
            .await?;
        Ok(Permit { held })
    }
}

/// Proof of one held permit of a [`Semaphore`].
///
/// It occupies one [`slot`](Permit::slot) of the semaphore: no other live
/// permit has the same slot. Its fencing token is unique for the semaphore,
/// and strictly increases from one holder of a slot to the next, so a
/// resource fences a permit per slot (docs/fencing.md).
#[must_use = "dropping the permit gives it back at once"]
pub struct Permit<B: Backend> {
    held: Held<B>,
}

impl<B: Backend> std::fmt::Debug for Permit<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.held.describe(f, "Permit")
    }
}

impl<B: Backend> Permit<B> {
    held_methods!(Permit, "permit");

    /// The slot this permit occupies, in `0..permits`.
    pub fn slot(&self) -> u32 {
        self.held.slot().unwrap_or_default()
    }
}
