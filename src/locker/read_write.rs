//! The read-write lock: the Locker's `read` and `write` calls and their
//! guards. Many readers or one writer; a waiting writer keeps new readers
//! out, so writers never starve (docs/algorithm.md, section 12).

use std::time::Duration;

use crate::backend::{Backend, Mode};
use crate::error::{Error, Result};

use super::guard::held_methods;
use super::held::Held;
use super::{Handoff, Locker};

impl<B: Backend> Locker<B> {
    /// One attempt at a read (shared) hold of `key`: granted while no
    /// other owner holds it for writing and no writer waits for it.
    ///
    /// Nests (sharing the outer token) when this owner already holds `key`
    /// for reading or writing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any await point leaves no hold
    /// behind (whatever the nodes granted is released in the background).
    ///
    /// # Errors
    ///
    /// [`Error::NotObtained`] when a writer holds or waits for the lock;
    /// [`Error::WrongKind`] when `key` is in use as an exclusive lock or a
    /// semaphore; otherwise as [`try_lock`](Locker::try_lock).
    pub async fn try_read(&self, key: &str) -> Result<ReadGuard<B>> {
        let held = self.try_hold(key, Mode::Read, "try_read").await?;
        Ok(ReadGuard { held })
    }

    /// Waits for a read hold of `key`, as [`lock`](Locker::lock) waits for
    /// a lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Locker::lock): no hold is left behind and
    /// the waiter's place is given up.
    ///
    /// # Errors
    ///
    /// As [`try_read`](Locker::try_read), for the errors that waiting does
    /// not outlast.
    pub async fn read(&self, key: &str) -> Result<ReadGuard<B>> {
        let held = self.wait_hold(key, Mode::Read, "read", None).await?;
        Ok(ReadGuard { held })
    }

    /// Waits at most `wait` for a read hold of `key`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`read`](Locker::read).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `wait` ran out; otherwise as
    /// [`read`](Locker::read).
    pub async fn read_timeout(&self, key: &str, wait: Duration) -> Result<ReadGuard<B>> {
        let held = self
            .wait_hold(key, Mode::Read, "read_timeout", Some(wait))
            .await?;
        Ok(ReadGuard { held })
    }

    /// One attempt at the write (exclusive) hold of `key`: granted only
    /// when nobody holds it, for reading or writing.
    ///
    /// Nests (sharing the outer token) when this owner already holds `key`
    /// for writing. An owner that holds `key` for reading cannot upgrade:
    /// that is refused at once, before any request.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any await point leaves no hold
    /// behind.
    ///
    /// # Errors
    ///
    /// [`Error::NotObtained`] when anyone holds the lock;
    /// [`Error::UpgradeRefused`] when this owner holds it for reading;
    /// [`Error::WrongKind`] when `key` is in use as another kind; otherwise
    /// as [`try_lock`](Locker::try_lock).
    pub async fn try_write(&self, key: &str) -> Result<WriteGuard<B>> {
        let held = self.try_hold(key, Mode::Write, "try_write").await?;
        Ok(WriteGuard { held })
    }

    /// Waits for the write hold of `key`. While it waits, readers that
    /// arrive after it wait too (writer preference); readers that hold
    /// the lock already keep it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`lock`](Locker::lock). A writer that gives up may
    /// keep new readers waiting for up to a ttl on the nodes it announced
    /// itself to.
    ///
    /// # Errors
    ///
    /// As [`try_write`](Locker::try_write), for the errors that waiting
    /// does not outlast.
    pub async fn write(&self, key: &str) -> Result<WriteGuard<B>> {
        let held = self.wait_hold(key, Mode::Write, "write", None).await?;
        Ok(WriteGuard { held })
    }

    /// Waits at most `wait` for the write hold of `key`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`write`](Locker::write).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `wait` ran out; otherwise as
    /// [`write`](Locker::write).
    pub async fn write_timeout(&self, key: &str, wait: Duration) -> Result<WriteGuard<B>> {
        let held = self
            .wait_hold(key, Mode::Write, "write_timeout", Some(wait))
            .await?;
        Ok(WriteGuard { held })
    }

    /// Runs `work` under a read hold of `key` and releases it on every exit
    /// path, as [`with_lock`](Locker::with_lock) does for a lock.
    ///
    /// # Cancel safety
    ///
    /// As [`with_lock`](Locker::with_lock).
    ///
    /// # Errors
    ///
    /// The errors of [`read`](Locker::read); after the work, [`Error::Lost`]
    /// or [`Error::NotHeld`] when the hold did not last.
    pub async fn with_read<T, F>(&self, key: &str, work: F) -> Result<T>
    where
        F: AsyncFnOnce(&ReadGuard<B>) -> T,
    {
        let guard = self.read(key).await?;
        let value = work(&guard).await;
        guard.release().await?;
        Ok(value)
    }

    /// Runs `work` under the write hold of `key` and releases it on every
    /// exit path, as [`with_lock`](Locker::with_lock) does for a lock.
    ///
    /// # Cancel safety
    ///
    /// As [`with_lock`](Locker::with_lock).
    ///
    /// # Errors
    ///
    /// The errors of [`write`](Locker::write); after the work,
    /// [`Error::Lost`] or [`Error::NotHeld`] when the hold did not last.
    pub async fn with_write<T, F>(&self, key: &str, work: F) -> Result<T>
    where
        F: AsyncFnOnce(&WriteGuard<B>) -> T,
    {
        let guard = self.write(key).await?;
        let value = work(&guard).await;
        guard.release().await?;
        Ok(value)
    }

    /// Takes over a read hold another guard
    /// [handed off](ReadGuard::hand_off), as [`adopt`](Locker::adopt) does
    /// for a lock: renews it for a ttl and keeps its owner and token.
    ///
    /// # Cancel safety
    ///
    /// As [`adopt`](Locker::adopt).
    ///
    /// # Errors
    ///
    /// [`Error::WrongKind`] when `handoff` is not of a read hold; otherwise
    /// as [`adopt`](Locker::adopt).
    pub async fn adopt_read(&self, handoff: &Handoff) -> Result<ReadGuard<B>> {
        let held = self.adopt_as(handoff, Mode::Read, "adopt_read").await?;
        Ok(ReadGuard { held })
    }

    /// Takes over a write hold another guard
    /// [handed off](WriteGuard::hand_off), as [`adopt`](Locker::adopt)
    /// does for a lock.
    ///
    /// # Cancel safety
    ///
    /// As [`adopt`](Locker::adopt).
    ///
    /// # Errors
    ///
    /// [`Error::WrongKind`] when `handoff` is not of a write hold;
    /// otherwise as [`adopt`](Locker::adopt).
    pub async fn adopt_write(&self, handoff: &Handoff) -> Result<WriteGuard<B>> {
        let held = self.adopt_as(handoff, Mode::Write, "adopt_write").await?;
        Ok(WriteGuard { held })
    }
}

/// Proof of a read (shared) hold of a read-write lock.
///
/// Other readers may hold the lock at the same time; no writer can. Its
/// fencing token is above every earlier write hold's: a fenced resource
/// refuses its reads once a later writer has written (docs/fencing.md).
/// Give it back with [`release`](ReadGuard::release); dropping it releases
/// in the background. A watchdog renews it, as a lock's.
#[must_use = "dropping the guard releases the read hold at once"]
pub struct ReadGuard<B: Backend> {
    held: Held<B>,
}

/// Proof of the write (exclusive) hold of a read-write lock.
///
/// No other owner holds the lock, for reading or writing. Its fencing
/// token is above every earlier hold's, readers' included.
/// [`downgrade`](WriteGuard::downgrade) turns it into a read hold without
/// letting another writer in between.
#[must_use = "dropping the guard releases the write hold at once"]
pub struct WriteGuard<B: Backend> {
    held: Held<B>,
}

impl<B: Backend> std::fmt::Debug for ReadGuard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.held.describe(f, "ReadGuard")
    }
}

impl<B: Backend> std::fmt::Debug for WriteGuard<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.held.describe(f, "WriteGuard")
    }
}

impl<B: Backend> ReadGuard<B> {
    held_methods!(ReadGuard, "read hold");
}

impl<B: Backend> WriteGuard<B> {
    held_methods!(WriteGuard, "write hold");

    /// Turns this write hold into a read hold of the same owner, with the
    /// same token, without a moment in which another writer could enter:
    /// readers may join at once.
    ///
    /// Only an outermost write hold with no other live holds of this owner
    /// nested in it can be downgraded. On failure the write hold is handed
    /// back in the error, untouched or (after an outage) possibly
    /// downgraded on some nodes: release it or try again.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future releases the hold in the
    /// background, whatever the nodes had applied.
    ///
    /// # Errors
    ///
    /// [`Error::DowngradeRefused`] when holds of this owner are nested in
    /// this one (or this one is nested); [`Error::NotHeld`] when the hold is
    /// gone from a quorum; [`Error::Lost`] when it had been lost;
    /// [`Error::QuorumUnavailable`] when too few nodes answered.
    pub async fn downgrade(mut self) -> std::result::Result<ReadGuard<B>, DowngradeError<B>> {
        match self.held.downgrade().await {
            Ok(()) => Ok(ReadGuard { held: self.held }),
            Err(error) => Err(DowngradeError {
                error,
                guard: Box::new(self),
            }),
        }
    }
}

/// A [`WriteGuard::downgrade`] that failed: why, and the write guard back.
pub struct DowngradeError<B: Backend> {
    error: Error,
    guard: Box<WriteGuard<B>>,
}

impl<B: Backend> DowngradeError<B> {
    /// Why the downgrade failed.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The write guard, still holding what it held.
    pub fn into_guard(self) -> WriteGuard<B> {
        *self.guard
    }

    /// The error alone; the write guard is dropped (and released in the
    /// background).
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<B: Backend> std::fmt::Debug for DowngradeError<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DowngradeError")
            .field("error", &self.error)
            .field("guard", &self.guard)
            .finish()
    }
}

impl<B: Backend> std::fmt::Display for DowngradeError<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "downgrade failed: {}", self.error)
    }
}

impl<B: Backend> std::error::Error for DowngradeError<B> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
