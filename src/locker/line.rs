//! The local waiting line: waiters of one process for one lock take turns
//! in arrival order.
//!
//! Only the head of the line talks to the servers; the others wait for
//! their turn without any traffic. When the head gets the lock, the next
//! waiter becomes head. So a release in this process passes the lock on to
//! the longest waiter here instead of to whichever task asks first (often
//! the releasing task itself), and one release wakes one attempt per
//! process, not a herd. The line also keeps the key's release watch, so
//! heads hand the subscription on instead of each making their own.
//!
//! A semaphore's line has as many heads as the semaphore has permits: its
//! waiters can be granted side by side, and one head at a time would make
//! every grant wait for the one before. Heads then claim release news, one
//! head per announcement, so that a released permit still wakes one
//! attempt, not every head. (A Redlock release is announced by each node
//! that held it, so there it wakes up to one head per node.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::backend::ReleaseWatch;

/// The lines of one Locker (and its clones), by key prefix and resource:
/// what the backend tells apart, the line tells apart.
#[derive(Default)]
pub(crate) struct WaitLines {
    lines: Mutex<HashMap<(String, String), Slot>>,
}

struct Slot {
    /// Places taken in this line; the line goes when the last is dropped.
    places: usize,
    line: Arc<Line>,
}

struct Line {
    /// One permit per head: the heads' turns. Tokio's semaphore is fair
    /// (FIFO).
    turn: Semaphore,
    watch: Mutex<Option<ReleaseWatch>>,
    /// Release news claimed by heads so far, on the watch's count.
    claimed: AtomicU64,
}

impl WaitLines {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slot>> {
        crate::sync::lock(&self.lines)
    }

    /// Joins the line for `resource` under `prefix`, which has `heads`
    /// heads if this place makes it (at least one).
    pub(crate) fn join(self: &Arc<Self>, prefix: &str, resource: &str, heads: u32) -> Place {
        let key = (prefix.to_owned(), resource.to_owned());
        let line = {
            let mut lines = self.lock();
            let slot = lines.entry(key.clone()).or_insert_with(|| Slot {
                places: 0,
                line: Arc::new(Line {
                    turn: Semaphore::new(heads.max(1) as usize),
                    watch: Mutex::new(None),
                    claimed: AtomicU64::new(0),
                }),
            });
            slot.places += 1;
            Arc::clone(&slot.line)
        };
        Place {
            lines: Arc::clone(self),
            key,
            line,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A place in one line.
pub(crate) struct Place {
    lines: Arc<WaitLines>,
    key: (String, String),
    line: Arc<Line>,
}

impl Place {
    /// Waits until every waiter that joined before has had its turn.
    pub(crate) async fn turn(&self) -> SemaphorePermit<'_> {
        self.line
            .turn
            .acquire()
            .await
            .expect("the turn semaphore is never closed")
    }

    /// The line's release watch, made by `make` for the first head that
    /// needs one and kept while the line exists.
    pub(crate) fn watch(
        &self,
        make: impl FnOnce() -> Option<ReleaseWatch>,
    ) -> Option<ReleaseWatch> {
        let mut watch = crate::sync::lock(&self.line.watch);
        if watch.is_none() {
            *watch = make();
            if let Some(made) = watch.as_ref() {
                // News from before the line listened is nobody's to claim.
                self.line.claimed.store(made.releases(), Ordering::Relaxed);
            }
        }
        watch.clone()
    }

    /// Claims one piece of release news for this head, out of `releases`
    /// heard on the line's watch so far; whether there was one left.
    pub(crate) fn claim(&self, releases: u64) -> bool {
        self.line
            .claimed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |claimed| {
                (claimed < releases).then_some(claimed + 1)
            })
            .is_ok()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut lines = self.lines.lock();
        if let Some(slot) = lines.get_mut(&self.key) {
            slot.places -= 1;
            if slot.places == 0 {
                lines.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_come_in_arrival_order_and_lines_go_when_empty() {
        let lines = Arc::new(WaitLines::default());
        let first = lines.join("p:", "k", 1);
        let turn = first.turn().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for i in 0..5 {
            let place = lines.join("p:", "k", 1);
            let tx = tx.clone();
            let mut waiter = Box::pin(async move {
                let _turn = place.turn().await;
                tx.send(i).unwrap();
            });
            // Polled once here, so it is in the line before the next one.
            assert!(futures::poll!(&mut waiter).is_pending());
            waiters.push(tokio::spawn(waiter));
        }
        // Another resource, and the same one under another prefix, are
        // separate lines.
        let _ = lines.join("q:", "k", 1).turn().await;
        let _ = lines.join("p:", "other", 1).turn().await;
        drop(turn);
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(
                tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
        for w in waiters {
            w.await.unwrap();
        }
        drop(first);
        assert_eq!(lines.len(), 0, "no line outlives its places");
    }

    #[tokio::test]
    async fn a_semaphore_line_has_a_head_per_permit_and_one_claim_per_news() {
        let lines = Arc::new(WaitLines::default());
        let (a, b, c) = (
            lines.join("p:", "sem", 2),
            lines.join("p:", "sem", 2),
            lines.join("p:", "sem", 2),
        );
        let (turn_a, turn_b) = (a.turn().await, b.turn().await);
        let mut third = Box::pin(c.turn());
        assert!(
            futures::poll!(&mut third).is_pending(),
            "two permits, two heads"
        );
        // The heads share the line's watch; news from before it was made
        // is nobody's.
        let (tx, rx) = tokio::sync::watch::channel(crate::backend::Signal::default());
        tx.send_modify(|s| s.releases = 7);
        let watch = a.watch(|| Some(ReleaseWatch::new(rx, ()))).unwrap();
        assert!(b.watch(|| unreachable!("made once")).is_some());
        assert!(!a.claim(watch.releases()) && !b.claim(watch.releases()));
        // One piece of news: one head may try, not both.
        tx.send_modify(|s| s.releases += 1);
        assert!(a.claim(watch.releases()));
        assert!(!b.claim(watch.releases()));
        tx.send_modify(|s| s.releases += 2);
        assert!(b.claim(watch.releases()) && a.claim(watch.releases()));
        assert!(!a.claim(watch.releases()));
        drop(turn_a);
        let turn_c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third waiter's turn comes when a head leaves");
        drop((turn_b, turn_c));
    }
}
