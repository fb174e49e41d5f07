//! A fenced transaction run under a lock taken for it.

use deadpool_postgres::Pool;

use super::transaction::{FencedTransaction, begin};
use crate::backend::Backend;
use crate::error::Error;
use crate::locker::Locker;

/// Takes the lock `key` (waiting as [`Locker::lock`] does), runs `work`
/// in a transaction fenced by its token on a connection from `pool`,
/// commits only while the lock is held, and releases the lock on every
/// exit path. The resource fenced is named like the lock.
///
/// The work gets the transaction (it dereferences to
/// [`tokio_postgres::Transaction`]) and returns `Ok` to commit or `Err`
/// to roll back; its error type only needs `From<fencelock::Error>`, and
/// `fencelock::Error` itself converts tokio-postgres's errors, so `?`
/// works on the work's statements.
///
/// When the lock is lost while the work runs, the work is cancelled at its
/// next await point and the transaction rolled back: [`Error::Lost`].
/// When it ran out after the work but before the commit, nothing is
/// committed: [`Error::NotHeld`]. Past that point the database's fence
/// decides: a commit it accepted stands even if the lock runs out before
/// the release, and a release that fails then is not reported (the lock
/// expires by itself), since reporting it would read as a failed commit.
///
/// # Cancel safety
///
/// Cancel safe: dropping the future rolls the transaction back unless its
/// `COMMIT` was sent (see [`FencedTransaction::commit`]) and releases the
/// lock in the background, like a dropped guard.
///
/// # Errors
///
/// The work's own error (the transaction rolled back); and, converted
/// into the work's error type: the errors of [`Locker::lock`];
/// [`Error::Lost`] and [`Error::NotHeld`] as above; those of
/// [`begin`](super::begin) and [`FencedTransaction::commit`], above all
/// [`Error::StaleToken`] when a newer holder committed first;
/// [`Error::Database`] when the pool has no connection to give.
pub async fn with_transaction<B, T, E, F>(
    locker: &Locker<B>,
    pool: &Pool,
    key: &str,
    work: F,
) -> Result<T, E>
where
    B: Backend,
    E: From<Error>,
    F: AsyncFnOnce(&FencedTransaction<'_>) -> Result<T, E>,
{
    let guard = locker.lock(key).await?;
    let mut client = pool.get().await.map_err(Error::from)?;
    let tx = begin(&mut client, &guard).await?;
    let done = tokio::select! {
        done = work(&tx) => Some(done),
        () = guard.lost() => None,
    };
    let value = match done {
        Some(Ok(value)) => value,
        Some(Err(e)) => {
            let _ = tx.rollback().await;
            let _ = guard.release().await;
            return Err(e);
        }
        None => {
            drop(tx);
            let _ = guard.release().await;
            return Err(Error::Lost {
                key: key.to_owned(),
            }
            .into());
        }
    };
    if !guard.is_held() {
        let _ = tx.rollback().await;
        let _ = guard.release().await;
        return Err(Error::NotHeld {
            key: key.to_owned(),
        }
        .into());
    }
    let committed = tx.commit().await;
    let released = guard.release().await;
    committed?;
    if let Err(e) = released {
        tracing::debug!(key, error = %e, "release after a fenced commit failed; the lock expires by itself");
    }
    Ok(value)
}
