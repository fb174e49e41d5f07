//! One request sent to every node at once, with the replies taken as they
//! come: the coordinator decides as soon as enough are in and leaves the
//! rest to a background task, which still sees every request through.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};

use super::RedisNode;
use crate::error::NodeFault;

/// A node's index and its reply.
pub(crate) type Reply<T> = (usize, Result<T, NodeFault>);

/// The requests of one fan-out still out, and the deadline they share.
pub(crate) struct FanOut<T> {
    pending: FuturesUnordered<BoxFuture<'static, Reply<T>>>,
    /// One timer for the whole round instead of one per node: every node
    /// gets the same `timeout` from the same start.
    deadline: Instant,
    timeout: Duration,
    /// Indexes of the nodes that have answered.
    answered: Vec<bool>,
    /// Told each node that answers, as a bit mask, once asked for.
    announce: Option<watch::Sender<u64>>,
}

/// The nodes (bit `i` for node `i`) that have answered one fan-out; see
/// [`FanOut::answers`]. When the fan-out is gone, every node has.
pub(crate) type Answers = watch::Receiver<u64>;

/// Waits until node `i` has answered.
pub(crate) async fn answered(answers: &mut Answers, i: usize) {
    // An error means the fan-out ended: every node answered or timed out.
    let _ = answers.wait_for(|mask| mask & (1 << i) != 0).await;
}

impl<T: Send + 'static> FanOut<T> {
    /// Sends `request(nodes, i)` for every node `i`, each allowed `timeout`.
    /// The requests own what they use, so they can outlive the caller.
    pub(crate) fn new<F, Fut>(nodes: &Arc<[RedisNode]>, timeout: Duration, request: F) -> Self
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
        Self {
            pending,
            deadline: Instant::now() + timeout,
            timeout,
            answered: vec![false; nodes.len()],
            announce: None,
        }
    }

    /// From now on, which nodes have answered: a request that must reach
    /// a node after this one waits for the node's bit. At most 64 nodes
    /// (the Redlock checks it).
    pub(crate) fn answers(&mut self) -> Answers {
        let mask = self
            .answered
            .iter()
            .enumerate()
            .filter(|&(_, &a)| a)
            .fold(0u64, |mask, (i, _)| mask | 1 << i);
        let (tx, rx) = watch::channel(mask);
        self.announce = Some(tx);
        rx
    }

    /// The next reply, `None` once every node answered or timed out. After
    /// the deadline, every node still out answers `Timeout`.
    pub(crate) async fn next(&mut self) -> Option<Reply<T>> {
        let unanswered = self.answered.iter().position(|a| !a)?;
        let reply = match tokio::time::timeout_at(self.deadline.into(), self.pending.next()).await {
            Ok(Some(reply)) => reply,
            // Out of time: the requests still out are dropped.
            Ok(None) | Err(_) => {
                self.pending.clear();
                (unanswered, Err(NodeFault::Timeout(self.timeout)))
            }
        };
        self.answered[reply.0] = true;
        if let Some(announce) = &self.announce {
            announce.send_modify(|mask| *mask |= 1 << reply.0);
        }
        Some(reply)
    }

    /// Which nodes have answered (or timed out) so far, by index.
    pub(crate) fn answered(&self) -> &[bool] {
        &self.answered
    }

    /// Whether every node answered (or timed out).
    pub(crate) fn is_done(&self) -> bool {
        self.answered.iter().all(|&a| a)
    }

    /// Sees the requests still out through in a task of its own, then runs
    /// `then` on their replies. Every request is bounded by the node
    /// timeout, so the task is too.
    ///
    /// Dropping them instead would leave unsent any request not yet handed
    /// to its connection when the caller stops polling (tokio's cooperative
    /// budget can hold back even a first poll): a release would then never
    /// reach that node, and a late grant there would stay until its ttl.
    pub(crate) fn finish_in_background<F, Fut>(self, background: &Background, then: F)
    where
        F: FnOnce(Vec<Reply<T>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let running = background.start();
        tokio::spawn(async move {
            let mut this = self;
            let mut replies = Vec::new();
            while let Some(reply) = this.next().await {
                replies.push(reply);
            }
            then(replies).await;
            drop(running);
        });
    }
}

/// Counts the background work of one coordinator, so callers can wait for
/// it to end.
#[derive(Default)]
pub(crate) struct Background {
    running: Arc<Running>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("tasks", &self.running.tasks.load(Ordering::Relaxed))
            .finish()
    }
}

#[derive(Default)]
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
    /// Counts one more piece of background work, until the result is dropped.
    pub(crate) fn start(&self) -> Task {
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
