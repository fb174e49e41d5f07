//! Lock semantics against real redis-server nodes: exclusion, contention,
//! ownership, expiry, and release on every exit path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bounded, lock_keys, locker, options, start, wait_until_no_locks};
use fencelock::backend::Hold;
use fencelock::{Backend, Error};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_on_five_nodes_never_overlap() {
    let nodes = start(5);
    let locker = locker(&nodes, options());
    let inside = Arc::new(AtomicBool::new(false));
    let entries = Arc::new(AtomicUsize::new(0));
    let highest = Arc::new(AtomicU64::new(0));
    bounded(LIMIT, async {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (locker, inside, entries, highest) = (
                    locker.clone(),
                    Arc::clone(&inside),
                    Arc::clone(&entries),
                    Arc::clone(&highest),
                );
                tokio::spawn(async move {
                    for _ in 0..15 {
                        let guard = locker.lock("shared").await.unwrap();
                        assert!(
                            !inside.swap(true, Ordering::SeqCst),
                            "two holders inside the critical section"
                        );
                        entries.fetch_add(1, Ordering::SeqCst);
                        // Inside the critical section, so in acquisition order.
                        let token = guard.token().get();
                        let before = highest.swap(token, Ordering::SeqCst);
                        assert!(token > before, "token {token} after {before}");
                        // Stay inside long enough for others to try to barge in.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        inside.store(false, Ordering::SeqCst);
                        guard.release().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
    assert_eq!(entries.load(Ordering::SeqCst), 16 * 15);
    wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn try_lock_under_contention_is_not_obtained() {
    let nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let held = locker.try_lock("busy").await.unwrap();
        let attempt = common::try_from_another_task(&locker, "busy").await;
        assert!(
            matches!(&attempt, Err(Error::NotObtained { key, .. }) if key == "busy"),
            "{attempt:?}"
        );
        // The failed attempt left nothing behind: releasing frees the lock.
        held.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn lock_timeout_gives_up_in_bounded_time() {
    let nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let held = locker.try_lock("slow").await.unwrap();
        let other = locker.clone();
        let wait = Duration::from_millis(300);
        let started = Instant::now();
        let result =
            tokio::spawn(async move { other.lock_timeout("slow", wait).await.map(|_| ()) })
                .await
                .unwrap();
        let took = started.elapsed();
        assert!(
            matches!(result, Err(Error::Timeout { waited, .. }) if waited == wait),
            "{result:?}"
        );
        assert!(took >= wait, "gave up early: {took:?}");
        // One node round (250 ms timeout) at most may be in flight at the deadline.
        assert!(took < wait + Duration::from_millis(500), "took {took:?}");
        held.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn a_non_owner_can_neither_release_nor_extend() {
    let nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let guard = locker.try_lock("mine").await.unwrap();
        let backend = locker.backend();
        for intruder in [
            Hold::new("mine", "someone-else", "1"),
            Hold::new("mine", "someone-else", "deadbeef"),
        ] {
            let released = backend.release(&intruder, locker.options()).await;
            assert!(
                matches!(released, Err(Error::NotHeld { .. })),
                "{released:?}"
            );
            let extended = backend
                .extend(&intruder, Duration::from_secs(60), locker.options())
                .await;
            assert!(
                matches!(extended, Err(Error::NotHeld { .. })),
                "{extended:?}"
            );
        }
        for node in nodes.iter() {
            assert_eq!(lock_keys(&node.url()).await.len(), 1, "lock must survive");
        }
        // The owner still can.
        guard.extend(Duration::from_secs(20)).await.unwrap();
        assert!(guard.remaining() > Duration::from_secs(15));
        guard.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn release_after_expiry_is_not_held() {
    let nodes = start(3);
    let locker = locker(&nodes, common::short_ttl_options());
    bounded(LIMIT, async {
        let guard = locker.try_lock("brief").await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await; // expired on every node
        assert_eq!(guard.remaining(), Duration::ZERO);
        let released = guard.release().await;
        assert!(
            matches!(released, Err(Error::NotHeld { .. })),
            "{released:?}"
        );

        // Expired and taken over: still NotHeld, and the new holder keeps its lock.
        let stale = locker.try_lock("brief").await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
        let other = locker.clone();
        let taker = tokio::spawn(async move { other.try_lock("brief").await.unwrap() })
            .await
            .unwrap();
        locker.backend().settled().await;
        // Past its validity a guard is lost: extending is refused outright
        // (it would be too late to count), and the new holder's lock stays.
        let extended = stale.extend(Duration::from_secs(5)).await;
        assert!(matches!(extended, Err(Error::Lost { .. })), "{extended:?}");
        assert!(!stale.is_held());
        for node in nodes.iter() {
            assert!(common::pttl(&node.url(), "fencelock:{brief}").await > 0);
        }
        let released = stale.release().await;
        assert!(
            matches!(released, Err(Error::NotHeld { .. })),
            "{released:?}"
        );
        taker.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn dropping_a_guard_releases_in_the_background() {
    let nodes = start(3);
    let locker = locker(&nodes, options()); // 10 s ttl: only a release can free it fast
    // Connections first: a slow first connect on a loaded machine must not
    // time a node out of the lock this test looks at on every node.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let guard = locker.try_lock("dropped").await.unwrap();
        // The acquire returns at a quorum; node 0 may still be on its way.
        locker.backend().settled().await;
        assert!(!lock_keys(&nodes.node(0).url()).await.is_empty());
        drop(guard);
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn with_lock_releases_on_return_error_and_panic() {
    let nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let token = locker
            .with_lock("job", async |guard| guard.token())
            .await
            .unwrap();
        assert!(token.get() >= 1);
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;

        let failed: Result<(), &str> = locker
            .with_lock("job", async |_| Err("work failed"))
            .await
            .unwrap();
        assert_eq!(failed, Err("work failed"));
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;

        let panicking = locker.clone();
        let joined = tokio::spawn(async move {
            panicking
                .with_lock("job", async |_| panic!("work panicked"))
                .await
        })
        .await;
        assert!(joined.unwrap_err().is_panic());
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_acquires_leave_no_lock() {
    let nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        for i in 0..200u64 {
            // Cut the acquire off at a different point each time: before the
            // first request, in flight, or after it succeeded.
            let cut = Duration::from_micros((i * 37) % 1500);
            let _ = tokio::time::timeout(cut, locker.try_lock("cancelled")).await;
        }
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
        // And the lock is usable afterwards.
        common::lock_once(&locker, "cancelled").await;
    })
    .await;
}

#[tokio::test]
async fn one_node_is_the_same_coordinator() {
    let nodes = start(1);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let first = locker.try_lock("solo").await.unwrap();
        let busy = common::try_from_another_task(&locker, "solo").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        let t1 = first.token();
        first.release().await.unwrap();
        let second = locker.try_lock("solo").await.unwrap();
        assert!(second.token() > t1);
        second.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_same_task_re_enters_with_the_same_token() {
    let nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let outer = locker.try_lock("nested").await.unwrap();
        let inner = locker.try_lock("nested").await.unwrap();
        assert_eq!(outer.token(), inner.token());
        inner.release().await.unwrap();
        // Still held by the outer hold: another task is refused.
        let busy = common::try_from_another_task(&locker, "nested").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        outer.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn nodes_can_be_reached_over_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let node = fencelock::testing::RedisServer::builder()
        .arg("--unixsocket")
        .arg(&socket)
        .start()
        .unwrap();
    let url = format!("unix://{}", socket.display());
    let locker = fencelock::Locker::redis([url.as_str()]).unwrap();
    bounded(LIMIT, async {
        let guard = locker.try_lock("socket").await.unwrap();
        assert!(
            !lock_keys(&node.url()).await.is_empty(),
            "the lock is on the node"
        );
        guard.release().await.unwrap();
        assert!(lock_keys(&node.url()).await.is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_nested_acquire_keeps_the_outer_token_when_a_node_missed_the_outer() {
    let mut nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        // Node 2's counter for this resource is ahead of the others.
        let mut c = common::conn(&nodes.node(2).url()).await;
        let _: () = fencelock::deadpool_redis::redis::cmd("SET")
            .arg("fencelock:{nested-gap}:fence")
            .arg(5)
            .query_async(&mut c)
            .await
            .unwrap();
        // The outer acquire misses node 2 and gets a low token from 0 and 1.
        nodes.node_mut(2).pause();
        let outer = locker.try_lock("nested-gap").await.unwrap();
        nodes.node_mut(2).resume();
        // The nested acquires reach node 2, where the lock is missing and the
        // counter is ahead: they must still report the outer token.
        let inner = locker.try_lock("nested-gap").await.unwrap();
        let innermost = locker.try_lock("nested-gap").await.unwrap();
        assert_eq!(inner.token(), outer.token());
        assert_eq!(innermost.token(), outer.token());
        let outer_token = outer.token();
        innermost.release().await.unwrap();
        inner.release().await.unwrap();
        outer.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
        // The next holder still gets a higher token than the outer one.
        let next = locker.try_lock("nested-gap").await.unwrap();
        assert!(next.token() > outer_token);
        next.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn extending_one_hold_never_shortens_the_lock() {
    let nodes = start(3);
    let locker = locker(&nodes, options()); // 10 s ttl
    // Connections first: a slow first connect on a loaded machine must not
    // time a node out of the lock this test looks at on every node.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let outer = locker.try_lock("shared-lease").await.unwrap();
        let inner = locker.try_lock("shared-lease").await.unwrap();
        inner.extend(Duration::from_millis(300)).await.unwrap();
        locker.backend().settled().await;
        for node in nodes.iter() {
            let pttl = common::pttl(&node.url(), "fencelock:{shared-lease}").await;
            assert!(pttl > 5_000, "the outer hold's lease was cut to {pttl} ms");
        }
        inner.release().await.unwrap();
        outer.release().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_connection_per_node() {
    // Every request to a node must travel on one connection, in order: a
    // release on a second connection could overtake the acquire it undoes.
    let nodes = start(1);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let calls = (0..32).map(|i| {
            let locker = locker.clone();
            tokio::spawn(async move { common::lock_once(&locker, &format!("cold-{i}")).await })
        });
        for call in futures::future::join_all(calls).await {
            call.unwrap();
        }
        let mut probe = common::conn(&nodes.node(0).url()).await;
        let clients: String = fencelock::deadpool_redis::redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut probe)
            .await
            .unwrap();
        // Ours, plus this probe.
        assert_eq!(clients.lines().count(), 2, "{clients}");
    })
    .await;
}

/// Without faults, a round is one acquire script and one release script
/// on every node, however the replies interleave. Tasks on distinct keys
/// make replies come in together: a reply already in when the grant was
/// decided used to be taken for a lagging node's, and the fencing rule
/// then sent that node a needless raise (one round in seven under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_without_faults_send_each_node_two_scripts() {
    let nodes = start(5);
    let locker = locker(&nodes, options().watchdog(fencelock::Watchdog::Off));
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        locker.backend().settled().await;
        let mut before = Vec::new();
        for url in nodes.urls() {
            before.push(common::script_calls(&url).await);
        }
        const TASKS: u64 = 16;
        const ROUNDS: u64 = 50;
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let locker = locker.clone();
                tokio::spawn(async move {
                    for _ in 0..ROUNDS {
                        let guard = locker.try_lock(&format!("quiet-{t}")).await.unwrap();
                        guard.release().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        locker.backend().settled().await;
        for (url, before) in nodes.urls().iter().zip(before) {
            let ran = common::script_calls(url).await - before;
            assert_eq!(ran, 2 * TASKS * ROUNDS, "scripts run on {url}");
        }
    })
    .await;
}

/// Counts the polls of the future it wraps.
struct CountPolls<'a, F> {
    inner: std::pin::Pin<Box<F>>,
    polls: &'a AtomicUsize,
}

impl<F: std::future::Future> std::future::Future for CountPolls<'_, F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

/// An uncontended acquire or release on one node waits for one reply, so
/// its caller is polled twice: to send, and once the reply is in. A
/// `FuturesUnordered` of the requests gave the executor a turn on its
/// first poll, every time (it does whenever it has polled all it holds
/// and none was ready): a third poll, and on a multi-thread runtime a
/// wake-up of another worker thread, per call.
#[tokio::test]
async fn an_uncontended_call_polls_its_caller_once_per_reply() {
    let nodes = start(1);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        const ROUNDS: usize = 50;
        let (acquires, releases) = (AtomicUsize::new(0), AtomicUsize::new(0));
        for _ in 0..ROUNDS {
            let guard = CountPolls {
                inner: Box::pin(locker.try_lock("polled")),
                polls: &acquires,
            }
            .await
            .unwrap();
            CountPolls {
                inner: Box::pin(guard.release()),
                polls: &releases,
            }
            .await
            .unwrap();
        }
        let polls = |n: &AtomicUsize| n.load(Ordering::Relaxed) as f64 / ROUNDS as f64;
        assert!(
            polls(&acquires) <= 2.1 && polls(&releases) <= 2.1,
            "polls per call: acquire {:.2}, release {:.2}",
            polls(&acquires),
            polls(&releases)
        );
    })
    .await;
}
