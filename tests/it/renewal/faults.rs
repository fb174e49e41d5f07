//! The batched renewer where it could fail its guards: live guards'
//! renewals and `Locker::settled`, holds taken on several runtimes (one
//! idle, one shut down), and one hold in a batch whose key now holds
//! something else.

use std::time::{Duration, Instant};

use crate::common::{bounded, locker, options, start, warm_up};
use fencelock::LockOptions;

fn short() -> LockOptions {
    options()
        .ttl(Duration::from_secs(1))
        .node_timeout(Duration::from_millis(150))
}

/// `Locker::settled` does not wait for guards still held, and returns
/// within a few node timeouts. With one node paused every batch lasts a
/// node timeout; holds acquired 50 ms apart fall in different batches (the
/// early window is interval/8 = 41 ms), so batches overlap: were they
/// counted as background work, the count would never reach zero.
#[tokio::test]
async fn settled_is_not_held_up_by_live_guards_renewals() {
    let mut nodes = start(3);
    let locker = locker(&nodes, short());
    warm_up(&locker).await;
    let mut guards = Vec::new();
    for i in 0..8 {
        guards.push(locker.lock(&format!("stagger-{i}")).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    locker.backend().settled().await;
    locker.settled().await;
    nodes.node_mut(2).pause();
    // Let the renewals run into the paused node.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    let settled = tokio::time::timeout(Duration::from_secs(3), locker.settled()).await;
    let took = started.elapsed();
    nodes.node_mut(2).resume();
    let stats = locker.statistics();
    assert!(guards.iter().all(|g| g.is_held()));
    assert!(
        settled.is_ok(),
        "settled() did not return in {took:?} with {} live guards and no dropped one \
         (renewals {}, failures {})",
        guards.len(),
        stats.renewals,
        stats.renewal_failures
    );
    drop(guards);
    locker.settled().await;
}

/// A multi-thread runtime ("main", one worker), a current-thread one
/// ("side", driven only inside its `block_on`s), and a warmed-up Locker of
/// 1 s ttl made on main (its connections are main's).
fn two_runtimes(
    nodes: &fencelock::testing::RedisNodes,
) -> (
    tokio::runtime::Runtime,
    tokio::runtime::Runtime,
    fencelock::Locker<fencelock::Redlock>,
) {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let side = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let locker = main.block_on(async {
        let locker = locker(nodes, short());
        warm_up(&locker).await;
        locker
    });
    (main, side, locker)
}

/// Watches `guard` (ttl 1 s) for three ttls on the running runtime: it
/// must still be held, so renewed meanwhile.
async fn kept_for_three_ttls(
    locker: &fencelock::Locker<fencelock::Redlock>,
    guard: &fencelock::LockGuard<fencelock::Redlock>,
) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = locker.statistics();
    assert!(
        guard.is_held(),
        "a guard on the running runtime lost after 3 s (ttl 1 s): renewals {}, lost {}",
        stats.renewals,
        stats.lost
    );
}

/// A hold taken on one runtime is renewed while another runtime, on which
/// an earlier hold was taken, is not driven (a current-thread runtime
/// between its `block_on`s): each runtime with holds has a renewer task.
#[test]
fn a_hold_on_one_runtime_is_renewed_while_another_runtime_idles() {
    let nodes = start(3);
    let (main, side, locker) = two_runtimes(&nodes);
    // A hold taken on the side runtime (its connections are the main
    // runtime's): the renewer starts there.
    let side_guard = side.block_on(locker.lock("side")).unwrap();
    main.block_on(bounded(Duration::from_secs(20), async {
        let guard = locker.lock("main").await.unwrap();
        kept_for_three_ttls(&locker, &guard).await;
        guard.release().await.unwrap();
    }));
    drop(side_guard);
    // The side runtime's tasks (its watchdog on main) end with it.
    drop(side);
    main.block_on(locker.settled());
}

/// A renewer task ends with the runtime it was spawned on; the holds of
/// other runtimes, already watched, are still renewed by theirs.
#[test]
fn holds_stay_renewed_after_the_first_holds_runtime_shuts_down() {
    let nodes = start(3);
    let (main, side, locker) = two_runtimes(&nodes);
    let side_guard = side.block_on(locker.lock("side2")).unwrap();
    let guard = main.block_on(locker.lock("main2")).unwrap();
    drop(side_guard);
    drop(side);
    main.block_on(bounded(Duration::from_secs(20), async {
        kept_for_three_ttls(&locker, &guard).await;
        guard.release().await.unwrap();
        locker.settled().await;
    }));
}

/// A hold whose key now holds foreign data fails its renewal with an
/// error reply on each node, as its own extend would; the holds renewed in
/// the same batch keep theirs (extend_batch.lua runs each under pcall).
#[tokio::test]
async fn a_hold_whose_key_holds_foreign_data_fails_alone() {
    use fencelock::deadpool_redis::redis;
    let nodes = start(3);
    let locker = locker(&nodes, short());
    warm_up(&locker).await;
    bounded(Duration::from_secs(30), async {
        let names: Vec<String> = (0..20).map(|i| format!("foreign-{i}")).collect();
        let guards = futures::future::join_all(names.iter().map(|name| locker.lock(name))).await;
        let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
        locker.backend().settled().await;
        // foreign-5 lost and its name overwritten by something else.
        for node in nodes.iter() {
            let mut c = crate::common::conn(&node.url()).await;
            let _: () = redis::cmd("SET")
                .arg("fencelock:{foreign-5}")
                .arg("not a lock")
                .query_async(&mut c)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let held: Vec<usize> = (0..20).filter(|&i| guards[i].is_held()).collect();
        let stats = locker.statistics();
        assert_eq!(
            held.len(),
            19,
            "held after 3 s: {held:?}; lost {}, renewal failures {}",
            stats.lost,
            stats.renewal_failures
        );
    })
    .await;
}

/// An idle renewer task lingers for more holds, but not past an interval
/// after the last release, and once every Locker and guard is gone it
/// ends at its next look. A hold taken at t0 is due at t0 + 1 s; released
/// at t0 + 0.6 s with its Locker dropped, the task ends at that look,
/// 0.4 s after the release. Counting the linger from the task's look
/// instead of the release, it ended at t0 + 2 s (1.4 s after); from the
/// release but ignoring the drop, at t0 + 1.6 s (1 s after).
#[tokio::test]
async fn an_idle_renewer_ends_at_its_next_look_once_its_lockers_are_gone() {
    let nodes = start(1);
    let interval = Duration::from_secs(1);
    let options = short()
        .ttl(Duration::from_secs(3))
        .watchdog(fencelock::Watchdog::Every(interval));
    let locker = locker(&nodes, options);
    bounded(Duration::from_secs(30), async {
        let taken = Instant::now();
        let guard = locker.try_lock("lingering").await.unwrap();
        tokio::time::sleep_until((taken + interval * 6 / 10).into()).await;
        guard.release().await.unwrap();
        let released = Instant::now();
        drop(locker);
        let metrics = tokio::runtime::Handle::current().metrics();
        // No signal tells a task's end; the runtime's count of live tasks
        // is looked at until it reaches zero.
        while metrics.num_alive_tasks() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let lingered = released.elapsed();
        assert!(
            lingered < interval * 7 / 10,
            "the renewer's task ended {lingered:?} after the last release"
        );
    })
    .await;
}
