//! The peer: rslock 0.10, a plain Redlock crate, run beside fencelock and
//! the floors in the same runs, on the same nodes.
//!
//! An rslock round is `lock` + `unlock`: `SET key value NX PX ttl` on every
//! node, waiting for every reply, then its compare-and-delete script on
//! every node, again waiting for every reply: the all floor's commands,
//! through rslock's code (a fresh random value per lock, a lock manager
//! behind a mutex, the unlock script's SHA computed per call).
//!
//! Waiting is rslock's own: `acquire` loops `lock`, and `lock` makes up to
//! `retry_count` attempts (default 3) with a random pause of 0 to
//! `retry_delay` (default 200 ms) between them, and unlocks every node
//! after each refused attempt. `acquire` starts the next `lock` at once,
//! so every third attempt follows the one before without a pause: on
//! average about one attempt per 67 ms per waiter.

use std::time::Duration;

use rslock::{LockGuard, LockManager};

use super::contend::Held;

/// The ttl every rslock lock asks for: fencelock's default.
pub const TTL: Duration = Duration::from_secs(30);

/// A lock manager on `urls` with rslock's default retries, its connections
/// made by one round so that no connect is timed.
pub async fn manager(urls: &[String]) -> LockManager {
    let manager = LockManager::new(urls.to_vec());
    round(&manager, "rslock:warm-up").await;
    manager
}

/// One uncontended `lock` + `unlock` of `key`.
pub async fn round(manager: &LockManager, key: &str) {
    let lock = manager.lock(key, TTL).await.expect("rslock lock");
    manager.unlock(&lock).await;
}

/// Waits for `key` with rslock's own retry loop (`acquire`).
pub async fn acquire(manager: &LockManager, key: &str) -> fencelock::Result<LockGuard> {
    Ok(manager.acquire(key, TTL).await.expect("rslock acquire"))
}

impl Held for LockGuard {
    async fn try_give_back(self) -> fencelock::Result<()> {
        // Best effort, as rslock's release is: it reports nothing.
        self.release().await;
        Ok(())
    }
}
