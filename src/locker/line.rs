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

use std::collections::HashMap;
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
    /// One permit: the head's turn. Tokio's semaphore is fair (FIFO).
    turn: Semaphore,
    watch: Mutex<Option<ReleaseWatch>>,
}

impl WaitLines {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slot>> {
        crate::sync::lock(&self.lines)
    }

    /// Joins the line for `resource` under `prefix`.
    pub(crate) fn join(self: &Arc<Self>, prefix: &str, resource: &str) -> Place {
        let key = (prefix.to_owned(), resource.to_owned());
        let line = {
            let mut lines = self.lock();
            let slot = lines.entry(key.clone()).or_insert_with(|| Slot {
                places: 0,
                line: Arc::new(Line {
                    turn: Semaphore::new(1),
                    watch: Mutex::new(None),
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
        }
        watch.clone()
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
        let first = lines.join("p:", "k");
        let turn = first.turn().await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for i in 0..5 {
            let place = lines.join("p:", "k");
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
        let _ = lines.join("q:", "k").turn().await;
        let _ = lines.join("p:", "other").turn().await;
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
}
