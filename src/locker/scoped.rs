//! Work run under a lock, released on every exit path.

use std::time::Duration;

use crate::backend::{Backend, Mode};
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

    /// Runs `work` under the lock like [`with_lock`](Locker::with_lock),
    /// or, when the lock service cannot be reached, runs `fallback`
    /// instead: the fallback policy of the lock libraries that have a
    /// "fallback handler". The work never runs without the lock.
    ///
    /// An outage ([`Error::is_outage`]: no quorum answered, and none of the
    /// nodes that did said the lock is held) is waited out for `patience`
    /// first, as `lock` waits; if every attempt in that time failed so,
    /// the fallback gets the last error and its value is returned.
    /// Contention is not an outage: it is waited for as long as it takes,
    /// and an attempt that any node refused because the lock is held
    /// starts the patience over, even when too few nodes answered to
    /// decide (the lock may be legitimately held on the nodes that are
    /// down). The waiter does not queue in the process's local line, so
    /// another waiter that waits an outage out does not hold up its
    /// patience. Each fallback is counted in the metric
    /// [`FALLBACK`](crate::metrics::FALLBACK) and logged as a `warn`
    /// event. To fail on an outage instead (the default policy), use
    /// [`with_lock`](Locker::with_lock) or
    /// [`lock_timeout`](Locker::lock_timeout).
    ///
    /// # Cancel safety
    ///
    /// As [`with_lock`](Locker::with_lock); a dropped fallback is dropped
    /// at its await point.
    ///
    /// # Errors
    ///
    /// The errors of [`with_lock`](Locker::with_lock) that are not
    /// outages (bad input, a lock lost or no longer held after the work);
    /// outages after the work ran (a release that could not be confirmed)
    /// are errors too, since the work did run.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use fencelock::{LockOptions, Locker};
    ///
    /// // Nothing listens on port 9: the lock service is down.
    /// let options = LockOptions::default().node_timeout(Duration::from_millis(50));
    /// let locker = Locker::new(fencelock::Redlock::from_urls(["redis://127.0.0.1:9"])?, options)?;
    /// let ran = locker
    ///     .with_lock_or_fallback(
    ///         "nightly-report",
    ///         Duration::from_millis(200),
    ///         async |_guard| "report built",
    ///         async |outage| {
    ///             eprintln!("lock service down ({outage}); serving yesterday's report");
    ///             "served from cache"
    ///         },
    ///     )
    ///     .await?;
    /// assert_eq!(ran, "served from cache");
    /// # Ok(()) }
    /// ```
    pub async fn with_lock_or_fallback<T, F, G>(
        &self,
        key: &str,
        patience: Duration,
        work: F,
        fallback: G,
    ) -> Result<T>
    where
        F: AsyncFnOnce(&LockGuard<B>) -> T,
        G: AsyncFnOnce(&Error) -> T,
    {
        let held = self
            .wait_hold_patient(key, Mode::Exclusive, "lock", None, Some(patience))
            .await;
        match held {
            Ok(held) => {
                let guard = LockGuard::from_held(held);
                let value = work(&guard).await;
                guard.release().await?;
                Ok(value)
            }
            Err(outage) if outage.is_outage() => {
                tracing::warn!(
                    backend = self.shared.backend.name(),
                    key,
                    error = %outage,
                    "lock service unreachable: running the fallback instead of the work"
                );
                self.shared
                    .telemetry
                    .fallback(self.shared.key(key, Mode::Exclusive));
                Ok(fallback(&outage).await)
            }
            Err(e) => Err(e),
        }
    }
}
