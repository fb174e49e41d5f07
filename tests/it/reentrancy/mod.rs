//! Reentrant locking against real redis-server nodes: one owner nests, other
//! owners (other tasks, spawned tasks) are excluded, depth is limited, and a
//! failed nested acquire leaves the outer hold exactly as it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common;
use crate::common::{
    bounded, hash, locker, options, start, try_from_another_task, wait_until_no_locks,
};
use fencelock::{Error, Handoff, Owner};

mod model;

const LIMIT: Duration = Duration::from_secs(60);

/// The number of holds (nesting depth) on every node, from the hash fields,
/// once the requests still out in the background have landed.
async fn depth_on_each_node(
    locker: &fencelock::Locker<fencelock::Redlock>,
    nodes: &fencelock::testing::RedisNodes,
    key: &str,
) -> Vec<usize> {
    locker.backend().settled().await;
    let mut depths = Vec::new();
    for node in nodes.iter() {
        let fields = hash(&node.url(), &format!("fencelock:{{{key}}}")).await;
        depths.push(fields.iter().filter(|(f, _)| !f.starts_with(':')).count());
    }
    depths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_deep_in_one_task_and_another_task_gets_it_only_after_the_outermost_release() {
    let nodes = start(5);
    let locker = locker(&nodes, options());
    // Connections set up first: a slow first connect on a loaded machine
    // must not time a node out of the lock this test inspects.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let outer = locker.lock("deep").await.unwrap();
        let middle = locker.lock("deep").await.unwrap();
        let inner = locker.lock("deep").await.unwrap();
        assert_eq!(outer.token(), middle.token());
        assert_eq!(outer.token(), inner.token());
        assert_eq!(
            depth_on_each_node(&locker, &nodes, "deep").await,
            vec![3; 5]
        );

        let outer_released = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (locker, released) = (locker.clone(), Arc::clone(&outer_released));
            tokio::spawn(async move {
                let guard = locker.lock("deep").await.unwrap();
                let after_outer = released.load(Ordering::SeqCst);
                let token = guard.token();
                guard.release().await.unwrap();
                (after_outer, token)
            })
        };

        inner.release().await.unwrap();
        assert_eq!(
            depth_on_each_node(&locker, &nodes, "deep").await,
            vec![2; 5]
        );
        let busy = try_from_another_task(&locker, "deep").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        middle.release().await.unwrap();
        let busy = try_from_another_task(&locker, "deep").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        assert!(
            !waiter.is_finished(),
            "the waiter got in while the outer hold lived"
        );

        outer_released.store(true, Ordering::SeqCst);
        let outer_token = outer.token();
        outer.release().await.unwrap();
        let (after_outer, token) = waiter.await.unwrap();
        assert!(
            after_outer,
            "the waiter acquired before the outermost release"
        );
        assert!(token > outer_token, "a new holder gets a new token");
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn tasks_never_re_enter_each_other_and_a_spawned_task_is_another_owner() {
    let nodes = start(3);
    let locker = locker(&nodes, options());
    // Connections set up first: a slow first connect on a loaded machine
    // must not time a node out of the lock this test inspects.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let guard = locker.try_lock("mine").await.unwrap();
        // A task spawned inside the critical section is excluded, however it asks.
        let child = {
            let locker = locker.clone();
            tokio::spawn(async move {
                let once = locker.try_lock("mine").await.map(|_| ());
                let waited = locker
                    .lock_timeout("mine", Duration::from_millis(300))
                    .await
                    .map(|_| ());
                (once, waited)
            })
        };
        let (once, waited) = child.await.unwrap();
        assert!(matches!(once, Err(Error::NotObtained { .. })), "{once:?}");
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        assert_eq!(
            depth_on_each_node(&locker, &nodes, "mine").await,
            vec![1; 3]
        );

        // Two tasks each holding their own key cannot enter the other's.
        let (taken_tx, taken_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let other = {
            let locker = locker.clone();
            tokio::spawn(async move {
                let theirs = locker.try_lock("theirs").await.unwrap();
                taken_tx.send(()).unwrap();
                let into_mine = locker.try_lock("mine").await.map(|_| ());
                done_rx.await.unwrap();
                theirs.release().await.unwrap();
                into_mine
            })
        };
        taken_rx.await.unwrap();
        let into_theirs = locker.try_lock("theirs").await.map(|_| ());
        assert!(
            matches!(into_theirs, Err(Error::NotObtained { .. })),
            "{into_theirs:?}"
        );
        done_tx.send(()).unwrap();
        let into_mine = other.await.unwrap();
        assert!(
            matches!(into_mine, Err(Error::NotObtained { .. })),
            "{into_mine:?}"
        );
        guard.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn tasks_sharing_an_explicit_owner_re_enter() {
    let nodes = start(3);
    let shared = locker(&nodes, options()).with_owner(Owner::random());
    common::warm_up(&shared).await;
    bounded(LIMIT, async {
        let outer = shared.try_lock("team").await.unwrap();
        let helper = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.try_lock("team").await })
        };
        let inner = helper.await.unwrap().unwrap();
        assert_eq!(inner.token(), outer.token());
        assert_eq!(
            depth_on_each_node(&shared, &nodes, "team").await,
            vec![2; 3]
        );
        // A default-owner Locker on the same nodes is still excluded.
        let stranger = locker(&nodes, options());
        let busy = stranger.try_lock("team").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        // The guard moves between tasks like any value.
        tokio::spawn(async move { inner.release().await })
            .await
            .unwrap()
            .unwrap();
        outer.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn the_depth_limit_is_reentrancy_limit_and_changes_nothing() {
    let nodes = start(3);
    let locker = locker(&nodes, options().max_reentrancy(3));
    // Connections set up first: a slow first connect on a loaded machine
    // must not time a node out of the lock this test inspects.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let holds = [
            locker.try_lock("limited").await.unwrap(),
            locker.try_lock("limited").await.unwrap(),
            locker.try_lock("limited").await.unwrap(),
        ];
        locker.backend().settled().await;
        let mut before = Vec::new();
        for node in nodes.iter() {
            before.push(hash(&node.url(), "fencelock:{limited}").await);
        }
        let too_deep = locker.try_lock("limited").await;
        assert!(
            matches!(too_deep, Err(Error::ReentrancyLimit { limit: 3, .. })),
            "{too_deep:?}"
        );
        // lock() does not wait on a limit: it is final.
        let waited = locker.lock("limited").await;
        assert!(
            matches!(waited, Err(Error::ReentrancyLimit { .. })),
            "{waited:?}"
        );
        locker.backend().settled().await;
        for (node, before) in nodes.iter().zip(&before) {
            assert_eq!(&hash(&node.url(), "fencelock:{limited}").await, before);
        }
        for hold in holds {
            hold.release().await.unwrap();
        }
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn a_nested_acquire_that_misses_quorum_leaves_the_outer_hold_alone() {
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let outer = locker.try_lock("steady").await.unwrap();
        locker.backend().settled().await;
        let mut before = Vec::new();
        for node in nodes.iter() {
            before.push(hash(&node.url(), "fencelock:{steady}").await);
        }
        for i in 0..3 {
            nodes.node_mut(i).pause();
        }
        let nested = locker.try_lock("steady").await;
        assert!(
            matches!(nested, Err(Error::QuorumUnavailable { .. })),
            "{nested:?}"
        );
        for i in 0..3 {
            nodes.node_mut(i).resume();
        }
        // Whatever the paused nodes applied late is undone by the background
        // release; the outer hold stays exactly as it was on every node.
        common::wait_until(Duration::from_secs(5), async || {
            let mut now = Vec::new();
            for node in nodes.iter() {
                now.push(hash(&node.url(), "fencelock:{steady}").await);
            }
            now == before
        })
        .await;
        outer.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn a_lock_handed_off_is_adopted_by_another_process_with_its_token() {
    let nodes = start(3);
    let owner = Owner::random();
    let here = locker(&nodes, options()).with_owner(owner.clone());
    // Connections first: a slow first connect on a loaded machine must not
    // time a node out of the lock this test looks at on every node.
    common::warm_up(&here).await;
    // Another Locker: its own instance id and registry, as in another process.
    let there = locker(&nodes, options()).with_owner(owner.to_string().parse().unwrap());
    bounded(LIMIT, async {
        let guard = here.try_lock("job").await.unwrap();
        let token = guard.token();
        let text = guard.hand_off().to_string();
        here.backend().settled().await;
        assert!(
            !hash(&nodes.node(0).url(), "fencelock:{job}")
                .await
                .is_empty()
        );

        let handoff: Handoff = text.parse().unwrap();
        let adopted = there.adopt(&handoff).await.unwrap();
        assert_eq!(adopted.token(), token);
        assert!(adopted.is_held());
        // The adopting side nests inside the adopted hold.
        let nested = there.try_lock("job").await.unwrap();
        assert_eq!(nested.token(), token);
        let busy = try_from_another_task(&locker(&nodes, options()), "job").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        nested.release().await.unwrap();
        adopted.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;

        // Adopting what was already released is NotHeld.
        let again = there.adopt(&handoff).await;
        assert!(matches!(again, Err(Error::NotHeld { .. })), "{again:?}");
        assert!(
            hash(&nodes.node(0).url(), "fencelock:{job}")
                .await
                .is_empty()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_one_owner_racing_lock_and_release_never_fail() {
    // A nested acquire whose outer hold is released by another task of the
    // same owner while it is on its way must become a first acquire, not
    // fail with NotHeld.
    let nodes = start(3);
    let shared = locker(&nodes, options()).with_owner(Owner::random());
    bounded(LIMIT, async {
        let tasks = (0..4).map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move {
                for _ in 0..1000 {
                    let guard = shared.lock("raced").await?;
                    guard.release().await?;
                }
                Ok::<_, Error>(())
            })
        });
        for task in futures::future::join_all(tasks).await {
            task.unwrap().unwrap();
        }
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_acquire_lands_on_every_node_its_early_returned_parent_reaches() {
    // An acquire returns once a quorum granted; a nested acquire right after
    // must not overtake the parent's late requests on the slow nodes (on a
    // fresh Locker, both wait for the same connection set-up).
    let nodes = start(5);
    bounded(LIMIT, async {
        for round in 0..30 {
            // Fresh on purpose (both requests wait for one connection
            // set-up); a node timeout that a slow connect on a loaded
            // machine cannot reach, since this test is about order.
            let locker = locker(&nodes, options().node_timeout(Duration::from_secs(1)));
            let key = format!("fresh-{round}");
            let outer = locker.lock(&key).await.unwrap();
            let inner = locker.lock(&key).await.unwrap();
            assert_eq!(
                depth_on_each_node(&locker, &nodes, &key).await,
                vec![2; 5],
                "round {round}"
            );
            inner.release().await.unwrap();
            outer.release().await.unwrap();
        }
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn the_same_name_under_another_prefix_is_another_lock_not_a_nested_one() {
    let nodes = start(3);
    let first = locker(&nodes, options().key_prefix("team-a:"));
    // Derived Lockers share the live-hold registry.
    let second = first.with_options(options().key_prefix("team-b:")).unwrap();
    bounded(LIMIT, async {
        let a = first.lock("job").await.unwrap();
        // Same task, same name, other prefix: a first acquire of its own.
        let b = second.try_lock("job").await.unwrap();
        let waited = second
            .lock_timeout("job", Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(waited.token(), b.token(), "nested inside b, not a");
        waited.release().await.unwrap();
        b.release().await.unwrap();
        // a is untouched by all of it.
        assert!(a.is_held());
        assert!(first.is_locked("job").await.unwrap());
        a.release().await.unwrap();
    })
    .await;
}
