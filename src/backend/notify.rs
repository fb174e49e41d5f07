//! Release notifications: how a waiter learns, without polling, that the
//! lock it waits for may have been freed.
//!
//! A backend that can push such news (Redis pub/sub, an etcd watch) hands
//! out a [`ReleaseWatch`] per key; the Locker's waiters try again as soon as
//! it fires, and fall back to the retry delay for news that never comes
//! (an expiry, a lost message).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The state a backend publishes to the waiters of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Signal {
    /// How many times the lock may have been freed so far: releases heard,
    /// plus reconnects of a listener that may have missed one. Waiters only
    /// look at whether it moved.
    pub releases: u64,
    /// On how many servers the subscription is confirmed at the moment.
    pub listening: u32,
}

/// One waiter's view of the release notifications for one key.
///
/// Clones share the subscription, which ends when the last clone is dropped.
#[derive(Clone)]
pub struct ReleaseWatch {
    signal: watch::Receiver<Signal>,
    seen: u64,
    /// How many servers must confirm before the subscription counts as in
    /// place.
    enough: u32,
    _subscription: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for ReleaseWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseWatch")
            .field("signal", &*self.signal.borrow())
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl ReleaseWatch {
    /// A watch fed by `signal`. `subscription` is kept alive as long as any
    /// clone of the watch: its `Drop` is where a backend ends the
    /// subscription.
    pub fn new(signal: watch::Receiver<Signal>, subscription: impl Send + Sync + 'static) -> Self {
        let seen = signal.borrow().releases;
        Self {
            signal,
            seen,
            enough: 1,
            _subscription: Arc::new(subscription),
        }
    }

    /// The subscription counts as in place once `servers` servers confirmed
    /// it (default 1). A quorum backend asks for enough that every quorum
    /// that can hold the lock includes a listening server: a release is
    /// announced only by the servers that held the lock.
    pub fn in_place_with(mut self, servers: u32) -> Self {
        self.enough = servers.max(1);
        self
    }

    /// Waits at most `within` until enough servers confirmed the
    /// subscription (see [`in_place_with`](Self::in_place_with)); whether
    /// they did. Until then a release can go unheard.
    pub(crate) async fn listening(&mut self, within: Duration) -> bool {
        let enough = self.enough;
        let confirmed = self.signal.wait_for(|s| s.listening >= enough);
        matches!(tokio::time::timeout(within, confirmed).await, Ok(Ok(_)))
    }

    /// Release news heard so far (the count only ever grows).
    pub(crate) fn releases(&self) -> u64 {
        self.signal.borrow().releases
    }

    /// Forgets the news so far: [`released`](Self::released) then waits for
    /// news that comes after this call. Call it before each attempt, so a
    /// release between the attempt and the wait is not missed.
    pub(crate) fn mark_seen(&mut self) {
        self.seen = self.signal.borrow_and_update().releases;
    }

    /// Completes at the next release news after [`mark_seen`](Self::mark_seen).
    /// Never completes once the backend stopped listening.
    pub(crate) async fn released(&mut self) {
        loop {
            // Look before waiting: `listening` may have taken in news along
            // with the confirmation it waited for.
            let releases = self.signal.borrow_and_update().releases;
            if releases != self.seen {
                self.seen = releases;
                return;
            }
            if self.signal.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn news_before_the_wait_is_kept_and_news_before_mark_seen_is_not() {
        let (tx, rx) = watch::channel(Signal::default());
        let mut watch = ReleaseWatch::new(rx, ());
        tx.send_modify(|s| s.releases += 1);
        // Sent after the watch was made: heard.
        tokio::time::timeout(Duration::from_secs(5), watch.released())
            .await
            .expect("news kept");
        tx.send_modify(|s| s.releases += 1);
        watch.mark_seen();
        // Only a listener change: not news.
        tx.send_modify(|s| s.listening += 1);
        let quiet = tokio::time::timeout(Duration::from_millis(20), watch.released()).await;
        assert!(quiet.is_err(), "news before mark_seen must not wake");
        assert!(watch.listening(Duration::from_secs(5)).await);
        let mut two = watch.clone().in_place_with(2);
        assert!(!two.listening(Duration::from_millis(5)).await);
        tx.send_modify(|s| s.listening += 1);
        assert!(two.listening(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn news_that_came_with_the_confirmation_is_heard() {
        let (tx, rx) = watch::channel(Signal::default());
        let mut watch = ReleaseWatch::new(rx, ());
        // A backend that confirms and has news in one update (etcd's queue:
        // in place, and it is this waiter's turn already).
        tx.send_modify(|s| {
            s.listening = 1;
            s.releases += 1;
        });
        assert!(watch.listening(Duration::from_secs(5)).await);
        tokio::time::timeout(Duration::from_secs(5), watch.released())
            .await
            .expect("the news is not lost");
    }

    #[tokio::test]
    async fn a_watch_whose_backend_is_gone_never_fires() {
        let (tx, rx) = watch::channel(Signal::default());
        let mut watch = ReleaseWatch::new(rx, ());
        drop(tx);
        let quiet = tokio::time::timeout(Duration::from_millis(20), watch.released()).await;
        assert!(quiet.is_err());
        assert!(!watch.listening(Duration::from_millis(5)).await);
    }
}
