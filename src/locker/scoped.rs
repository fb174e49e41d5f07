//! Work run under a lock, released on every exit path.

use crate::backend::Backend;
use crate::error::{Error, Result};

use super::{LockGuard, Locker};

impl<B: Backend> Locker<B> {
    /// Runs `work` under the lock and releases it on every exit path: normal
    /// return, panic (released in the background) and cancellation.
    ///
    /// Returns the closure's value, or an error when the lock did not last:
    /// [`Error::Lost`] when the watchdog lost it, [`Error::NotHeld`] when the
    /// release found it gone. The work may then have overlapped with another
    /// holder, and the caller must know. To stop the work as soon as the lock
    /// is lost, use [`with_lock_until_lost`](Locker::with_lock_until_lost).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops the work at its current await point
    /// and releases the lock in the background, like a dropped guard.
    ///
    /// # Errors
    ///
    /// The errors of [`lock`](Locker::lock) before the work runs; after it,
    /// [`Error::Lost`] or [`Error::NotHeld`] as described above, and
    /// [`Error::QuorumUnavailable`] when the release could not be confirmed.
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
    /// let total = locker
    ///     .with_lock("ledger", async |guard| {
    ///         // Pass guard.token() to every write the lock protects.
    ///         assert!(guard.is_held());
    ///         40 + 2
    ///     })
    ///     .await?;
    /// assert_eq!(total, 42);
    /// # Ok(()) }
    /// ```
    pub async fn with_lock<T, F>(&self, key: &str, work: F) -> Result<T>
    where
        F: AsyncFnOnce(&LockGuard<B>) -> T,
    {
        let guard = self.lock(key).await?;
        let value = work(&guard).await;
        guard.release().await?;
        Ok(value)
    }

    /// Like [`with_lock`](Locker::with_lock), but the work is cancelled
    /// (its future dropped at its next await point) the moment the lock is
    /// lost, and the result is [`Error::Lost`]. The lock is released on
    /// every exit path.
    ///
    /// Cancellation stops the work only at an await point, and a write may
    /// already be on its way: keep passing the fencing token to the resource.
    ///
    /// # Cancel safety
    ///
    /// As [`with_lock`](Locker::with_lock).
    ///
    /// # Errors
    ///
    /// As [`with_lock`](Locker::with_lock); [`Error::Lost`] when the lock was lost
    /// and the work cancelled.
    pub async fn with_lock_until_lost<T, F>(&self, key: &str, work: F) -> Result<T>
    where
        F: AsyncFnOnce(&LockGuard<B>) -> T,
    {
        let guard = self.lock(key).await?;
        let value = tokio::select! {
            value = work(&guard) => Some(value),
            () = guard.lost() => None,
        };
        match value {
            Some(value) => guard.release().await.map(|()| value),
            None => {
                // Clean up what is left; the loss is the news, whatever the
                // nodes that still answer say.
                let _ = guard.release().await;
                Err(Error::Lost {
                    key: key.to_owned(),
                })
            }
        }
    }
}
