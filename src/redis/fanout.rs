//! One request sent to every node at once, with the replies taken as they
//! come: the coordinator decides as soon as enough are in and leaves the
//! rest to a background task, which still sees every request through.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use super::RedisNode;
use crate::error::NodeFault;

/// A node's index and its reply.
pub(crate) type Reply<T> = (usize, Result<T, NodeFault>);

/// The requests of one fan-out still out.
pub(crate) struct FanOut<T> {
    pending: FuturesUnordered<BoxFuture<'static, Reply<T>>>,
}

impl<T: Send + 'static> FanOut<T> {
    /// Sends `request(nodes, i)` for every node `i`. The requests own what
    /// they use, so they can outlive the caller.
    pub(crate) fn new<F, Fut>(nodes: &Arc<[RedisNode]>, request: F) -> Self
    where
        F: Fn(Arc<[RedisNode]>, usize) -> Fut,
        Fut: Future<Output = Result<T, NodeFault>> + Send + 'static,
    {
        let pending = (0..nodes.len())
            .map(|i| {
                let reply = request(Arc::clone(nodes), i);
                async move { (i, reply.await) }.boxed()
            })
            .collect();
        Self { pending }
    }

    /// The next reply, `None` once every node answered (or timed out).
    pub(crate) async fn next(&mut self) -> Option<Reply<T>> {
        self.pending.next().await
    }

    /// Whether every node answered.
    pub(crate) fn is_done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sees the requests still out through in a task of its own, then runs
    /// `then` on their replies. Every request is bounded by the node
    /// timeout, so the task is too.
    ///
    /// Dropping the requests instead could leave one unsent (a request
    /// that has not yet been queued on its connection when the caller stops
    /// polling), and a later request, such as the release of a lock, could
    /// then reach the node before it.
    pub(crate) fn finish_in_background<F, Fut>(self, background: &Background, then: F)
    where
        F: FnOnce(Vec<Reply<T>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let running = background.start();
        tokio::spawn(async move {
            let replies = self.pending.collect::<Vec<_>>().await;
            then(replies).await;
            drop(running);
        });
    }
}

/// Counts the background work of one coordinator, so callers can wait for
/// it to end.
#[derive(Debug, Default)]
pub(crate) struct Background {
    running: Arc<Running>,
}

#[derive(Debug, Default)]
struct Running {
    tasks: AtomicUsize,
    idle: Notify,
}

/// One piece of background work; it ends when this is dropped (also when
/// its task is aborted at runtime shutdown).
pub(crate) struct Task(Arc<Running>);

impl Drop for Task {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Background {
    fn start(&self) -> Task {
        self.running.tasks.fetch_add(1, Ordering::AcqRel);
        Task(Arc::clone(&self.running))
    }

    /// Waits until no background work is running.
    pub(crate) async fn idle(&self) {
        loop {
            let idle = self.running.idle.notified();
            tokio::pin!(idle);
            // Registered before the check, so a wake-up in between is kept.
            idle.as_mut().enable();
            if self.running.tasks.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}
