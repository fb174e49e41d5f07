//! Releases and nested acquires when a hold lapses or a node is paused,
//! and busy rounds behind a paused node.

use super::*;

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
