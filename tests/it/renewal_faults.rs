//! Review probes of the batched renewer (review/renew).

use std::time::{Duration, Instant};

use crate::common::{bounded, locker, options, start, warm_up};
use fencelock::LockOptions;

fn short() -> LockOptions {
    options()
        .ttl(Duration::from_secs(1))
        .node_timeout(Duration::from_millis(150))
}

/// `Locker::settled` says guards still held are not waited for and that it
/// returns within a few node timeouts. With one node paused every batch
/// lasts a node timeout; holds acquired 50 ms apart fall in different
/// batches (the early window is interval/8 = 41 ms), so batches overlap and
/// the background count never reaches zero.
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

/// The renewer task lives on the runtime of the first watched hold. A hold
/// taken on another runtime is never renewed while that first runtime is
/// not driven (a current-thread runtime between its `block_on`s).
#[test]
fn a_hold_on_one_runtime_is_renewed_while_another_runtime_idles() {
    let nodes = start(3);
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
        let locker = locker(&nodes, short());
        warm_up(&locker).await;
        locker
    });
    // A hold taken on the side runtime (its connections are the main
    // runtime's): the renewer starts there.
    let side_guard = side.block_on(locker.lock("side")).unwrap();
    main.block_on(bounded(Duration::from_secs(20), async {
        let guard = locker.lock("main").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stats = locker.statistics();
        assert!(
            guard.is_held(),
            "a guard on the running runtime lost after 3 s (ttl 1 s): renewals {}, lost {}",
            stats.renewals,
            stats.lost
        );
        guard.release().await.unwrap();
    }));
    drop(side_guard);
    // The side runtime's tasks (its watchdog on main) end with it.
    drop(side);
    main.block_on(locker.settled());
}

/// The renewer task is dropped with the runtime it was spawned on; holds
/// of other runtimes that are already watched get no new task until some
/// other hold is watched.
#[test]
fn holds_stay_renewed_after_the_first_holds_runtime_shuts_down() {
    let nodes = start(3);
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
        let locker = locker(&nodes, short());
        warm_up(&locker).await;
        locker
    });
    let side_guard = side.block_on(locker.lock("side2")).unwrap();
    let guard = main.block_on(locker.lock("main2")).unwrap();
    drop(side_guard);
    drop(side);
    main.block_on(bounded(Duration::from_secs(20), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stats = locker.statistics();
        assert!(
            guard.is_held(),
            "a guard on the running runtime lost after 3 s (ttl 1 s): renewals {}, lost {}",
            stats.renewals,
            stats.lost
        );
        guard.release().await.unwrap();
        locker.settled().await;
    }));
}

/// extend.lua on a key holding foreign data fails that one hold's extend
/// (an error reply from that node). In a batch the script aborts, so the
/// node's reply to every hold of the call is an error: one bad key costs
/// every co-batched hold that node's vote; on a quorum, all are lost.
#[tokio::test]
async fn a_hold_whose_key_holds_foreign_data_fails_alone() {
    use fencelock::deadpool_redis::redis;
    let nodes = start(3);
    let locker = locker(&nodes, short());
    warm_up(&locker).await;
    bounded(Duration::from_secs(30), async {
        let guards =
            futures::future::join_all((0..20).map(|i| locker.lock_owned_for_review(i))).await;
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

trait ReviewExt {
    async fn lock_owned_for_review(
        &self,
        i: usize,
    ) -> fencelock::Result<fencelock::LockGuard<fencelock::Redlock>>;
}

impl ReviewExt for fencelock::Locker<fencelock::Redlock> {
    async fn lock_owned_for_review(
        &self,
        i: usize,
    ) -> fencelock::Result<fencelock::LockGuard<fencelock::Redlock>> {
        self.lock(&format!("foreign-{i}")).await
    }
}
