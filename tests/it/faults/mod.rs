//! Redlock with real faults: killed, paused (SIGSTOP) and restarted nodes.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bounded, locker, options, start, wait_until_no_locks};
use fencelock::deadpool_redis::redis;
use fencelock::testing::{Persistence, RedisNodes, Restart};
use fencelock::{Error, FencingToken, NodeFault};
use rand::{RngExt, SeedableRng, rngs::StdRng};

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn two_of_five_killed_still_locks() {
    let mut nodes = start(5);
    nodes.node_mut(1).kill();
    nodes.node_mut(3).kill();
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        for _ in 0..20 {
            let guard = locker.try_lock("survivor").await.unwrap();
            guard.release().await.unwrap();
        }
        let held = locker.try_lock("survivor").await.unwrap();
        let busy = common::try_from_another_task(&locker, "survivor").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        held.release().await.unwrap();
    })
    .await;
}

/// The failed nodes named in a QuorumUnavailable, by URL port.
fn failed_ports(error: &Error) -> Vec<u16> {
    let Error::QuorumUnavailable { failures, .. } = error else {
        panic!("expected QuorumUnavailable, got {error:?}");
    };
    let mut ports: Vec<u16> = failures
        .iter()
        .map(|f| f.node.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    ports.sort_unstable();
    ports
}

fn ports(nodes: &RedisNodes, which: &[usize]) -> Vec<u16> {
    let mut ports: Vec<u16> = which.iter().map(|&i| nodes.node(i).port()).collect();
    ports.sort_unstable();
    ports
}

#[tokio::test]
async fn three_of_five_killed_is_quorum_unavailable_naming_them() {
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        for i in [0, 2, 4] {
            nodes.node_mut(i).kill();
        }
        let node_timeout = locker.options().node_timeout;
        let started = Instant::now();
        let err = locker.try_lock("doomed").await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(failed_ports(&err), ports(&nodes, &[0, 2, 4]), "{err}");
        assert!(
            matches!(
                err,
                Error::QuorumUnavailable {
                    confirmed: 2,
                    refused: 0,
                    needed: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(took < 2 * node_timeout, "took {took:?}");
        assert!(err.to_string().contains(&nodes.node(2).port().to_string()));
    })
    .await;
    // The two live nodes kept nothing.
    wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn three_of_five_paused_fails_within_two_node_timeouts() {
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        for i in [1, 2, 3] {
            nodes.node_mut(i).pause();
        }
        let node_timeout = locker.options().node_timeout;
        let started = Instant::now();
        let err = locker.try_lock("frozen").await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(failed_ports(&err), ports(&nodes, &[1, 2, 3]), "{err}");
        let Error::QuorumUnavailable { failures, .. } = &err else {
            unreachable!()
        };
        assert!(
            failures
                .iter()
                .all(|f| matches!(f.fault, NodeFault::Timeout(t) if t == node_timeout)),
            "{err}"
        );
        // One round to acquire, one to undo on every node: two timeouts.
        assert!(
            took < 2 * node_timeout + Duration::from_millis(100),
            "took {took:?}"
        );
        for i in [1, 2, 3] {
            nodes.node_mut(i).resume();
        }
        // The undo also reaches the paused nodes once they wake: nothing stays locked.
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn two_of_five_paused_still_acquires_within_the_node_timeout() {
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        nodes.node_mut(0).pause();
        nodes.node_mut(4).pause();
        let node_timeout = locker.options().node_timeout;
        for _ in 0..3 {
            let started = Instant::now();
            let guard = locker.try_lock("stalled").await.unwrap();
            let took = started.elapsed();
            assert!(
                took < node_timeout + Duration::from_millis(100),
                "took {took:?}"
            );
            assert!(guard.remaining() > Duration::from_secs(9));
            guard.release().await.unwrap();
        }
        nodes.node_mut(0).resume();
        nodes.node_mut(4).resume();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_increase_while_minorities_die_and_return() {
    // Append-only files with fsync on every write: the fault model under which
    // the fencing rule is monotonic (docs/algorithm.md).
    let mut nodes = RedisNodes::start_with(5, Persistence::Aof).unwrap();
    let locker = locker(&nodes, options().node_timeout(Duration::from_millis(200)));
    let seed: u64 = rand::random();
    println!("fault schedule seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dead: Vec<usize> = Vec::new();
    let mut last: Option<FencingToken> = None;
    let (mut kills, mut restarts) = (0, 0);
    bounded(Duration::from_secs(240), async {
        for i in 0..1000 {
            if i % 20 == 10 {
                // Kill a live node while at most two are down, else bring one back.
                if dead.len() < 2 && rng.random_bool(0.6) {
                    let victim = loop {
                        let n = rng.random_range(0..5);
                        if !dead.contains(&n) {
                            break n;
                        }
                    };
                    nodes.node_mut(victim).kill();
                    dead.push(victim);
                    kills += 1;
                } else if !dead.is_empty() {
                    let back = dead.swap_remove(rng.random_range(0..dead.len()));
                    nodes.node_mut(back).restart(Restart::KeepData).unwrap();
                    restarts += 1;
                }
            }
            let guard = locker
                .lock_timeout("fenced", Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("acquire {i} (seed {seed}): {e}\n{}", nodes.logs()));
            let token = guard.token();
            assert!(
                last < Some(token),
                "token {token} after {last:?} at acquire {i} (seed {seed})"
            );
            last = Some(token);
            guard.release().await.unwrap();
        }
    })
    .await;
    // 50 fault steps: both kinds must have happened many times for the run
    // to mean anything (seeded, so a failure here is reproducible).
    assert!(
        kills >= 10 && restarts >= 10,
        "kills {kills}, restarts {restarts} (seed {seed})"
    );
}

#[tokio::test]
async fn lagging_nodes_are_lifted_after_a_fast_acquire_so_a_later_wipe_cannot_send_tokens_back() {
    // Nodes 3 and 4 missed acquires (they were unreachable): their counters
    // lag. The next acquire with every node up is decided on the fast path
    // by nodes 0..=2; lifting 3 and 4 anyway is what keeps a later quorum of
    // them plus a wiped node from handing out a token below the last one.
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    let fence = "fencelock:{lagging}:fence";
    bounded(LIMIT, async {
        for (i, node) in nodes.iter().enumerate() {
            let count = if i < 3 { 10 } else { 2 };
            let mut c = common::conn(&node.url()).await;
            let () = redis::cmd("SET")
                .arg(fence)
                .arg(count)
                .query_async(&mut c)
                .await
                .unwrap();
        }
        let g = locker.try_lock("lagging").await.unwrap();
        let last = g.token();
        assert_eq!(last, FencingToken::new(11), "decided by the three in step");
        g.release().await.unwrap();
        locker.backend().settled().await;
        for node in nodes.iter().skip(3) {
            let mut c = common::conn(&node.url()).await;
            let count: u64 = redis::cmd("GET")
                .arg(fence)
                .query_async(&mut c)
                .await
                .unwrap();
            assert!(count >= 11, "{} still lags at {count}", node.url());
        }
        // A wiped node with the two lifted ones: no token at all, not one
        // below the last; the wiped node is named (docs/algorithm.md,
        // section 15; tests/it/amnesia.rs has it vote again).
        nodes.node_mut(2).restart(Restart::WipeData).unwrap();
        nodes.node_mut(0).kill();
        nodes.node_mut(1).kill();
        let refused = locker.try_lock("lagging").await.unwrap_err();
        let Error::QuorumUnavailable { failures, .. } = &refused else {
            panic!("{refused}");
        };
        let port = nodes.node(2).port();
        assert!(
            failures
                .iter()
                .any(|f| f.node.ends_with(&format!(":{port}"))
                    && matches!(f.fault, NodeFault::Recovering(_))),
            "{refused}"
        );
        assert!(last > FencingToken::new(0));
    })
    .await;
}

#[tokio::test]
async fn a_majority_losing_its_counters_breaks_monotonicity_as_documented() {
    // The stated fault model: counters must not go back on a majority. This
    // test shows what happens when they do, so the docs' warning is tested:
    // the two wiped nodes answer, a quorum, and none remembers anything, so
    // they are taken for a new cluster (docs/algorithm.md, section 15).
    let mut nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let mut last = FencingToken::new(0);
        for _ in 0..5 {
            let g = locker.try_lock("amnesia").await.unwrap();
            last = g.token();
            g.release().await.unwrap();
        }
        assert_eq!(last, FencingToken::new(5));
        // The slowest nodes' requests must land before the wipe, or they
        // would count on the wiped nodes after it.
        locker.backend().settled().await;
        nodes.node_mut(0).restart(Restart::WipeData).unwrap();
        nodes.node_mut(1).restart(Restart::WipeData).unwrap();
        nodes.node_mut(2).kill();
        let g = locker.try_lock("amnesia").await.unwrap();
        assert_eq!(
            g.token(),
            FencingToken::new(1),
            "with a majority wiped and the rest down, the counter starts over"
        );
        g.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_release_that_missed_a_node_never_lets_an_old_token_return() {
    // One task loops acquire -> release. One release misses node 0, which
    // keeps a stale hold of that task; the task's next acquire is a first
    // one, not a nested one, and must count afresh.
    let mut nodes = RedisNodes::start_with(3, Persistence::Aof).unwrap();
    let locker = locker(&nodes, options());
    // Connections first: a slow first connect on a loaded machine must not
    // time a node out of the lock this test looks at on every node.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let first = locker.try_lock("looped").await.unwrap();
        let first_token = first.token();
        // On node 0 too before it dies (the acquire returns at a quorum).
        locker.backend().settled().await;
        nodes.node_mut(0).kill();
        first.release().await.unwrap(); // nodes 1 and 2: a quorum
        nodes.node_mut(0).restart(Restart::KeepData).unwrap();
        let stale_ttl = common::pttl(&nodes.node(0).url(), "fencelock:{looped}").await;
        assert!(stale_ttl > 0, "node 0 keeps the stale hold");

        let other = locker.clone();
        let between = tokio::spawn(async move {
            let g = other.try_lock("looped").await.unwrap();
            let t = g.token();
            g.release().await.unwrap();
            t
        })
        .await
        .unwrap();
        assert!(between > first_token);

        let again = locker.try_lock("looped").await.unwrap();
        assert!(
            again.token() > between,
            "token {} handed out after {between}",
            again.token()
        );
        // The stale hold was not taken for ours: nothing extended it.
        assert!(common::pttl(&nodes.node(0).url(), "fencelock:{looped}").await <= stale_ttl);
        again.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_nested_acquire_after_the_outer_hold_expired_is_not_held() {
    let nodes = start(3);
    let locker = locker(&nodes, common::short_ttl_options());
    bounded(LIMIT, async {
        let outer = locker.try_lock("lapsed").await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
        let other = locker.clone();
        tokio::spawn(async move { other.try_lock("lapsed").await.unwrap().release().await })
            .await
            .unwrap()
            .unwrap();
        let nested = locker.try_lock("lapsed").await.map(|g| g.token());
        assert!(
            matches!(nested, Err(Error::NotHeld { .. })),
            "nested inside an expired hold: {nested:?} (outer token {})",
            outer.token()
        );
        assert!(matches!(outer.release().await, Err(Error::NotHeld { .. })));
    })
    .await;
}

/// A release that is undecided says what each node said: how many still
/// had the hold, how many did not, how many failed, and the quorum. It
/// used to read "2 of 2 needed nodes answered" for this very case, a
/// quorum claimed where the verdict was that none decided.
#[tokio::test]
async fn an_undecided_release_counts_yes_no_and_failed_apart() {
    let mut nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        let guard = locker.try_lock("split").await.unwrap();
        locker.backend().settled().await;
        let mut c = common::conn(&nodes.node(2).url()).await;
        let () = redis::cmd("DEL")
            .arg("fencelock:{split}")
            .query_async(&mut c)
            .await
            .unwrap();
        nodes.node_mut(1).kill();
        let err = guard.release().await.unwrap_err();
        let Error::QuorumUnavailable {
            confirmed,
            refused,
            needed,
            ref failures,
        } = err
        else {
            panic!("expected QuorumUnavailable, got {err:?}");
        };
        assert_eq!((confirmed, refused, needed), (1, 1, 2), "{err}");
        assert_eq!(failures.len(), 1, "{err}");
        assert!(
            failures[0]
                .node
                .ends_with(&nodes.node(1).port().to_string())
        );
        let message = err.to_string();
        assert!(
            message.starts_with(
                "quorum unavailable: 1 of 2 needed nodes confirmed, 1 answered no, 1 failed: "
            ),
            "{message}"
        );
    })
    .await;
}

/// The holds each node stores for `key`, in node order (0: none; -1: the
/// node did not answer).
async fn holds_per_node(locker: &fencelock::Locker<fencelock::Redlock>, key: &str) -> Vec<i64> {
    let info = locker.inspect(key).await.unwrap();
    info.nodes
        .iter()
        .map(|v| match &v.lock {
            Ok(Some(record)) => i64::from(record.holds),
            Ok(None) => 0,
            Err(_) => -1,
        })
        .collect()
}

/// A release issued the moment an acquire returns, while one node is
/// paused, waits there behind the acquire it undoes; it must still be
/// sent once the acquire's request ends. It used to share the caller's
/// deadline, about a millisecond after the acquire's, and was dropped
/// unsent when both timers fired in one tick: the resumed node then
/// applied the acquire and kept the released hold for the whole ttl.
#[tokio::test]
async fn a_release_right_after_an_acquire_reaches_a_paused_node() {
    let mut nodes = start(3);
    let locker = locker(&nodes, options());
    let node_timeout = locker.options().node_timeout;
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        for round in 0..6 {
            let key = format!("paused-{round}");
            nodes.node_mut(2).pause();
            let guard = locker.try_lock(&key).await.unwrap();
            guard.release().await.unwrap();
            // The fault: the node stays stopped past both deadlines.
            tokio::time::sleep(2 * node_timeout).await;
            nodes.node_mut(2).resume();
            locker.backend().settled().await;
            assert_eq!(
                holds_per_node(&locker, &key).await,
                [0, 0, 0],
                "round {round}: a released hold stayed on a node"
            );
        }
        // The lock is free for another owner even when a node then dies.
        nodes.node_mut(0).kill();
        let other = locker.with_owner(fencelock::Owner::random());
        other
            .try_lock("paused-3")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    })
    .await;
}

/// Nested acquires wait on each node behind the hold they nest in. With
/// one node paused past every deadline, each level is still sent there
/// once the level below has ended, so the resumed node stores as many
/// holds as the others; before, a level could be dropped unsent at its
/// caller's deadline and the node stored fewer.
#[tokio::test]
async fn nested_acquires_behind_a_paused_node_all_land_there() {
    let mut nodes = start(3);
    let options = options().max_reentrancy(3);
    let locker = locker(&nodes, options.clone());
    let node_timeout = options.node_timeout;
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        for round in 0..3 {
            let key = format!("deep-{round}");
            nodes.node_mut(2).pause();
            let outer = locker.lock(&key).await.unwrap();
            let middle = locker.lock(&key).await.unwrap();
            let inner = locker.lock(&key).await.unwrap();
            // The fault: the node stays stopped past the deadlines of all
            // three levels (each waits up to one node timeout behind the
            // one below it).
            tokio::time::sleep(4 * node_timeout).await;
            nodes.node_mut(2).resume();
            locker.backend().settled().await;
            assert_eq!(
                holds_per_node(&locker, &key).await,
                [3, 3, 3],
                "round {round}"
            );
            inner.release().await.unwrap();
            middle.release().await.unwrap();
            outer.release().await.unwrap();
            locker.backend().settled().await;
            assert_eq!(
                holds_per_node(&locker, &key).await,
                [0, 0, 0],
                "round {round}"
            );
        }
    })
    .await;
}

/// Rounds that run beside others wait a little for their slowest nodes
/// instead of leaving them to a task of their own (docs/performance.md,
/// "Where the time goes"). A paused node must not hold such a round for
/// the node timeout: each waits at most about as long as its quorum took,
/// then leaves the paused node to the background as a lone round does, and
/// everything reaches the node once it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_rounds_wait_for_a_paused_node_only_briefly() {
    let mut nodes = start(5);
    let node_timeout = Duration::from_secs(2);
    let locker = locker(
        &nodes,
        options()
            .ttl(Duration::from_secs(30))
            .node_timeout(node_timeout),
    );
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        nodes.node_mut(1).pause();
        nodes.node_mut(3).pause();
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let locker = locker.clone();
                tokio::spawn(async move {
                    let mut slowest = Duration::ZERO;
                    for _ in 0..10 {
                        let started = Instant::now();
                        let guard = locker.try_lock(&format!("busy-{t}")).await.unwrap();
                        guard.release().await.unwrap();
                        slowest = slowest.max(started.elapsed());
                    }
                    slowest
                })
            })
            .collect();
        for task in tasks {
            let slowest = task.await.unwrap();
            assert!(
                slowest < node_timeout / 4,
                "a round took {slowest:?} with two of five nodes paused"
            );
        }
        nodes.node_mut(1).resume();
        nodes.node_mut(3).resume();
        locker.backend().settled().await;
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}
