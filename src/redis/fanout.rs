//! One request sent to every node at once, with the replies taken as they
//! come: the coordinator decides as soon as enough are in and leaves the
//! rest to a background task, which still sees every request through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};

use super::RedisNode;
use crate::backend::Background;
use crate::error::NodeFault;

/// A node's index and its reply.
pub(crate) type Reply<T> = (usize, Result<T, NodeFault>);

/// The requests of one fan-out still out, and the replies in hand.
///
/// Two clocks run here. The caller's: by `deadline` it has an answer for
/// every node, a timeout for those still out, so one stopped node costs
/// it at most the node timeout. And each request's own: a request is never
/// dropped at the caller's deadline, only at its own, which starts once
/// the requests it must follow on its node (see [`FanOut::new`]) have
/// answered there. A request that waits behind a slow acquire is still
/// sent, with a full node timeout of its own; otherwise a release issued
/// right after an acquire would be dropped unsent while the acquire it
/// undoes lands on a node that was paused, leaving the hold there.
pub(crate) struct FanOut<T> {
    pending: Requests<T>,
    /// The caller's deadline: one timer for the whole round.
    deadline: Instant,
    timeout: Duration,
    /// The nodes whose request ended (answered, failed or ran out of its
    /// own time).
    finished: Vec<bool>,
    /// The nodes the caller has been given a reply for (a timeout, for
    /// those still out at its deadline).
    reported: Vec<bool>,
    /// Replies in hand the caller has not taken: of nodes not reported
    /// yet, and late ones of nodes it was told had timed out.
    buffered: Vec<Reply<T>>,
    /// Told each node whose request ended, as a bit mask, once asked for.
    announce: Option<watch::Sender<u64>>,
}

/// The nodes (bit `i` for node `i`) whose request in one fan-out has ended;
/// see [`FanOut::answers`]. When the fan-out is gone, every node's has.
pub(crate) type Answers = watch::Receiver<u64>;

/// Waits until node `i`'s request has ended.
pub(crate) async fn answered(answers: &mut Answers, i: usize) {
    // An error means the fan-out ended: every request did.
    let _ = answers.wait_for(|mask| mask & (1 << i) != 0).await;
}

/// Waits until every fan-out in `before` is done with node `i`; whether
/// it had to wait at all.
pub(crate) async fn after(before: &mut [Option<Answers>], i: usize) -> bool {
    let mut waited = false;
    for answers in before.iter_mut().flatten() {
        if *answers.borrow() & (1 << i) == 0 {
            waited = true;
            answered(answers, i).await;
        }
    }
    waited
}

impl<T: Send + 'static> FanOut<T> {
    /// Sends `request(nodes, i)` to every node `i`, each once the fan-outs
    /// in `before` are done with that node (ordering requests about one
    /// hold on each node), and each allowed `timeout` from then. The
    /// requests own what they use, so they can outlive the caller.
    pub(crate) fn new<F, Fut>(
        nodes: &Arc<[RedisNode]>,
        what: &'static str,
        timeout: Duration,
        before: &[Option<Answers>],
        request: F,
    ) -> Self
    where
        F: Fn(Arc<[RedisNode]>, usize) -> Fut,
        Fut: Future<Output = Result<T, NodeFault>> + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let pending = (0..nodes.len())
            .map(|i| {
                let reply = request(Arc::clone(nodes), i);
                let nodes = Arc::clone(nodes);
                let mut before = before.to_vec();
                async move {
                    // A request sent at once ends with the caller's
                    // deadline, so a round that times out has every
                    // request ended when the caller hears of it.
                    let own = if after(&mut before, i).await {
                        deadline.max(Instant::now() + timeout)
                    } else {
                        deadline
                    };
                    match tokio::time::timeout_at(own.into(), reply).await {
                        Ok(reply) => (i, reply),
                        Err(_) => {
                            let fault = NodeFault::Timeout(timeout);
                            crate::trace::node_failed(nodes[i].name(), what, &fault);
                            (i, Err(fault))
                        }
                    }
                }
                .boxed()
            })
            .collect();
        let pending = Requests(pending);
        Self {
            pending,
            deadline,
            timeout,
            finished: vec![false; nodes.len()],
            reported: vec![false; nodes.len()],
            buffered: Vec::new(),
            announce: None,
        }
    }

    /// From now on, which nodes' requests have ended: a request that must
    /// reach a node after this one waits for the node's bit. At most 64
    /// nodes (the Redlock checks it). Every call shares one channel: a
    /// receiver handed out earlier must not see its sender dropped (which
    /// reads as "every request ended") while requests are still out.
    pub(crate) fn answers(&mut self) -> Answers {
        if let Some(announce) = &self.announce {
            return announce.subscribe();
        }
        self.take_ready();
        let mask = self
            .finished
            .iter()
            .enumerate()
            .filter(|&(_, &a)| a)
            .fold(0u64, |mask, (i, _)| mask | 1 << i);
        let (tx, rx) = watch::channel(mask);
        self.announce = Some(tx);
        rx
    }

    /// The next reply for the caller, `None` once it has one for every
    /// node. After the caller's deadline, every node still out is reported
    /// as `Timeout`; its request goes on (see [`finish_in_background`]).
    ///
    /// [`finish_in_background`]: Self::finish_in_background
    pub(crate) async fn next(&mut self) -> Option<Reply<T>> {
        loop {
            let reported = &self.reported;
            if let Some(at) = self.buffered.iter().position(|&(i, _)| !reported[i]) {
                let reply = self.buffered.swap_remove(at);
                self.reported[reply.0] = true;
                return Some(reply);
            }
            let unreported = self.reported.iter().position(|r| !r)?;
            // The timer polls the requests first: replies already in are
            // taken even past the deadline.
            match tokio::time::timeout_at(self.deadline.into(), self.pending.next()).await {
                Ok(Some(reply)) => self.collect(reply),
                Ok(None) | Err(_) => {
                    self.reported[unreported] = true;
                    return Some((unreported, Err(NodeFault::Timeout(self.timeout))));
                }
            }
        }
    }

    fn collect(&mut self, reply: Reply<T>) {
        self.finished[reply.0] = true;
        if let Some(announce) = &self.announce {
            announce.send_modify(|mask| *mask |= 1 << reply.0);
        }
        self.buffered.push(reply);
    }

    /// The replies in hand (taken in by an earlier call, such as
    /// [`answered`](Self::answered)) that the caller has not been given:
    /// given now. Takes in nothing new.
    pub(crate) fn in_hand(&mut self) -> Vec<Reply<T>> {
        let reported = &mut self.reported;
        // On the acquire's hot path: the buffer is kept, and the result
        // allocates only when it has something.
        let ready: Vec<_> = self
            .buffered
            .extract_if(.., |(i, _)| !reported[*i])
            .collect();
        for &(i, _) in &ready {
            reported[i] = true;
        }
        ready
    }

    /// Takes in the replies that are ready, without waiting.
    fn take_ready(&mut self) {
        while let Some(Some(reply)) = self.pending.next().now_or_never() {
            self.collect(reply);
        }
    }

    /// Takes in the replies still out for up to `grace`, or until every
    /// node's request has ended; whether they all have. Late replies are
    /// then in hand (see [`take_untaken`](Self::take_untaken)) and the caller can
    /// finish the round without a background task.
    pub(crate) async fn settle_within(&mut self, grace: Duration) -> bool {
        let pending = &mut self.pending;
        let mut ended = Vec::new();
        // One timer for all of them; a reply already in is taken even if
        // the grace has run out.
        let _ = tokio::time::timeout(grace, async {
            while let Some(reply) = pending.next().await {
                ended.push(reply);
            }
        })
        .await;
        for reply in ended {
            self.collect(reply);
        }
        self.is_done()
    }

    /// Which nodes' requests have ended so far, by index. A node reported
    /// to the caller as timed out may still be waiting to send.
    pub(crate) fn answered(&mut self) -> &[bool] {
        self.take_ready();
        &self.finished
    }

    /// Whether every node's request has ended.
    pub(crate) fn is_done(&mut self) -> bool {
        self.take_ready();
        self.finished.iter().all(|&a| a)
    }

    /// Hands over the replies in hand the caller has not taken: of nodes
    /// it has no reply for, and the late ones of nodes it was told timed
    /// out.
    pub(crate) fn take_untaken(&mut self) -> Vec<Reply<T>> {
        std::mem::take(&mut self.buffered)
    }

    /// Sees the requests still out through in a task of its own, then runs
    /// `then` on the replies the caller did not take: those of nodes it
    /// has no reply for, and the late ones of nodes it was told timed out.
    /// Every request is bounded by its own timeout, so the task is too.
    ///
    /// Dropping them instead would leave unsent any request not yet handed
    /// to its connection when the caller stops polling (tokio's cooperative
    /// budget can hold back even a first poll, and a request may still wait
    /// for the one it follows): a release would then never reach that
    /// node, and a late grant there would stay until its ttl.
    pub(crate) fn finish_in_background<F, Fut>(self, background: &Background, then: F)
    where
        F: FnOnce(Vec<Reply<T>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let running = background.start();
        tokio::spawn(async move {
            let mut this = self;
            while let Some(reply) = this.pending.next().await {
                this.collect(reply);
            }
            then(std::mem::take(&mut this.buffered)).await;
            drop(running);
        });
    }
}

/// The requests of a fan-out still out, one future per node, polled
/// together: the stream of their replies in the order they come.
///
/// Not a `FuturesUnordered`, which gives the executor a turn whenever it
/// has polled every future it holds and none is ready (futures-rs #2333).
/// A fan-out does that on its very first poll, so each round woke its own
/// task once more, and on a multi-thread runtime another worker thread
/// too: measured, the caller's task was polled 3.75 times per
/// acquire + release on one node where two replies need 2. With one
/// future per node, polling each one still out at every wake-up is cheap.
struct Requests<T>(Vec<BoxFuture<'static, Reply<T>>>);

impl<T> Stream for Requests<T> {
    type Item = Reply<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reply<T>>> {
        let requests = &mut self.get_mut().0;
        if requests.is_empty() {
            return Poll::Ready(None);
        }
        for i in 0..requests.len() {
            if let Poll::Ready(reply) = requests[i].poll_unpin(cx) {
                drop(requests.remove(i));
                return Poll::Ready(Some(reply));
            }
        }
        Poll::Pending
    }
}
