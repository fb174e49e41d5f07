//! The watchdog keeping many held locks of one Locker: renewed in batches,
//! one script call per node per renewal tick (per 512 keys) whatever the
//! number of guards; every kind kept; each hold decided on its own quorum;
//! nothing renewed after release.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;

use crate::common::{
    bounded, lock_keys, locker, options, pttl, script_calls, start, wait_until, wait_until_no_locks,
};
use fencelock::testing::RedisNodes;
use fencelock::{LockGuard, LockOptions, Locker, Redlock};

const LIMIT: Duration = Duration::from_secs(60);

/// A 1 s ttl: the watchdog renews every ~333 ms.
fn short() -> LockOptions {
    options()
        .ttl(Duration::from_secs(1))
        .node_timeout(Duration::from_millis(150))
}

fn lock_key(name: &str) -> String {
    format!("fencelock:{{{name}}}")
}

/// `count` guards on `prefix-0`, `prefix-1`, ..., taken together.
async fn hold_many(
    locker: &Locker<Redlock>,
    prefix: &str,
    count: usize,
) -> Vec<LockGuard<Redlock>> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let guards = join_all(names.iter().map(|name| locker.lock(name))).await;
    let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
    // Acquires return at a quorum; the slowest node follows.
    locker.backend().settled().await;
    guards
}

async fn calls(nodes: &RedisNodes) -> Vec<u64> {
    let mut calls = Vec::new();
    for node in nodes.iter() {
        calls.push(script_calls(&node.url()).await);
    }
    calls
}

#[tokio::test]
async fn renewal_calls_per_node_are_bounded_by_ticks_not_by_guards() {
    let nodes = start(3);
    let locker = locker(&nodes, short());
    crate::common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let guards = hold_many(&locker, "many", 200).await;
        assert_renewed_in_batches(&nodes, &locker, guards).await;
    })
    .await;
}

/// A Locker made per call with the same options (`with_options` in a
/// helper, say) shares the renewer of those options: its guards batch
/// together too, instead of each getting a schedule of its own.
#[tokio::test]
async fn lockers_with_equal_options_batch_together() {
    let nodes = start(3);
    let locker = locker(&nodes, options());
    crate::common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let per_call = |name: String| {
            let locker = locker.with_options(short()).unwrap();
            async move { locker.lock(&name).await }
        };
        let guards = join_all((0..200).map(|i| per_call(format!("per-call-{i}")))).await;
        let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
        locker.backend().settled().await;
        assert_renewed_in_batches(&nodes, &locker, guards).await;
    })
    .await;
}

/// Watches `guards` (of ttl 1 s) for several renewal intervals: each is
/// kept and renewed every interval, with one script call per node per
/// tick, not one per guard; then releases them.
async fn assert_renewed_in_batches(
    nodes: &RedisNodes,
    locker: &Locker<Redlock>,
    guards: Vec<LockGuard<Redlock>>,
) {
    let interval = short().watchdog_interval().unwrap();
    let count = guards.len() as u64;
    let before = calls(nodes).await;
    let renewed_before = locker.statistics().renewals;
    // A measuring window of several renewal intervals; nothing else runs
    // scripts on these nodes meanwhile.
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let after = calls(nodes).await;
    let renewals = locker.statistics().renewals - renewed_before;
    assert!(guards.iter().all(LockGuard::is_held));
    assert_eq!(locker.statistics().lost, 0);
    // Every guard renewed about window / interval = 9 times.
    let ticks = (window.as_secs_f64() / interval.as_secs_f64()) as u64;
    assert!(
        renewals >= count * (ticks - 2),
        "{renewals} renewals of {count} guards in {window:?}"
    );
    // One call per node per tick (a tick renews every guard due within an
    // eighth of the interval), not one per guard: at most a few ticks per
    // interval, far below one call per guard and renewal.
    for ((node, before), after) in nodes.iter().zip(before).zip(after) {
        let made = after - before;
        eprintln!(
            "{}: {made} script calls for {renewals} renewals",
            node.url()
        );
        assert!(
            made <= 4 * (ticks + 1),
            "{}: {made} script calls in {window:?} for {count} guards renewed every \
             {interval:?}: renewals are not batched",
            node.url()
        );
    }
    join_all(guards.into_iter().map(LockGuard::release)).await;
    wait_until_no_locks(nodes, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn kinds_mixed_in_one_batch_are_all_kept() {
    let nodes = start(3);
    let locker = locker(&nodes, short());
    crate::common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let locks = hold_many(&locker, "mixed-lock", 20).await;
        let read = locker.read("mixed-read").await.unwrap();
        let other_read = locker.read("mixed-read").await.unwrap();
        let write = locker.write("mixed-write").await.unwrap();
        let semaphore = locker.semaphore("mixed-sem", 3).unwrap();
        let permits = [
            semaphore.acquire().await.unwrap(),
            semaphore.acquire().await.unwrap(),
        ];
        locker.backend().settled().await;
        let started = Instant::now();
        // Three ttls: every kind lives only by its renewals.
        while started.elapsed() < Duration::from_secs(3) {
            assert!(locks.iter().all(LockGuard::is_held));
            assert!(read.is_held() && other_read.is_held() && write.is_held());
            assert!(permits.iter().all(|p| p.is_held()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for node in nodes.iter() {
            for name in ["mixed-lock-0", "mixed-read", "mixed-write"] {
                let left = pttl(&node.url(), &lock_key(name)).await;
                assert!(left > 0, "{name} on {}: pttl {left}", node.url());
            }
        }
        assert_eq!(locker.statistics().renewal_failures, 0);
        assert_eq!(locker.statistics().lost, 0);
        join_all(locks.into_iter().map(LockGuard::release)).await;
        read.release().await.unwrap();
        other_read.release().await.unwrap();
        write.release().await.unwrap();
        for permit in permits {
            permit.release().await.unwrap();
        }
        wait_until_no_locks(&nodes, Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn a_stopped_node_leaves_the_batch_renewed_by_the_others() {
    let mut nodes = start(3);
    let locker = locker(&nodes, short());
    crate::common::warm_up(&locker).await;
    let guards = bounded(LIMIT, hold_many(&locker, "quorum", 50)).await;
    nodes.node_mut(2).pause();
    bounded(LIMIT, async {
        // Each renewal waits out node 2's timeout; two nodes confirm.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            assert!(
                guards.iter().all(LockGuard::is_held),
                "lost after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(locker.statistics().lost, 0);
        assert_eq!(locker.statistics().renewal_failures, 0);
    })
    .await;
    nodes.node_mut(2).resume();
    bounded(LIMIT, async {
        join_all(guards.into_iter().map(LockGuard::release)).await;
        wait_until_no_locks(&nodes, Duration::from_secs(3)).await;
    })
    .await;
}

#[tokio::test]
async fn each_hold_in_a_batch_is_decided_on_its_own() {
    let nodes = start(3);
    let locker = locker(&nodes, short());
    crate::common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let guards = hold_many(&locker, "own", 30).await;
        let del = async |node: usize, name: &str| {
            let mut c = crate::common::conn(&nodes.node(node).url()).await;
            let _: () = fencelock::deadpool_redis::redis::cmd("DEL")
                .arg(lock_key(name))
                .query_async(&mut c)
                .await
                .unwrap();
        };
        // own-0 gone from one node: still held by the other two. own-1
        // gone from two: lost. Both ride in the same batches as the rest.
        del(0, "own-0").await;
        del(0, "own-1").await;
        del(1, "own-1").await;
        bounded(Duration::from_secs(5), guards[1].lost()).await;
        // Two more rounds of renewals of every other guard.
        let renewed = locker.statistics().renewals;
        wait_until(Duration::from_secs(5), async || {
            locker.statistics().renewals >= renewed + 2 * 29
        })
        .await;
        assert!(!guards[1].is_held());
        assert_eq!(locker.statistics().lost, 1);
        assert!(guards[0].is_held(), "one node's 0 lost a quorum's hold");
        assert!(guards.iter().skip(2).all(LockGuard::is_held));
        // Node 0 answered 0 for own-0 and never brought it back; it still
        // renews the others of the same batch.
        let node0 = nodes.node(0).url();
        assert_eq!(pttl(&node0, &lock_key("own-0")).await, -2);
        for i in 2..30 {
            let left = pttl(&node0, &lock_key(&format!("own-{i}"))).await;
            assert!(left > 0, "own-{i} on node 0: pttl {left}");
        }
        for node in nodes.iter().skip(1) {
            assert!(pttl(&node.url(), &lock_key("own-0")).await > 0);
        }
        drop(guards);
        locker.settled().await;
        wait_until_no_locks(&nodes, Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn released_and_dropped_guards_are_not_renewed() {
    let nodes = start(3);
    let options = short();
    let interval = options.watchdog_interval().unwrap();
    let locker = locker(&nodes, options);
    crate::common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let mut guards = hold_many(&locker, "gone", 40).await;
        let kept = guards.split_off(20);
        let dropped = guards.split_off(10);
        join_all(guards.into_iter().map(LockGuard::release)).await;
        drop(dropped);
        locker.settled().await;
        // No signal for an absence: several renewal intervals.
        tokio::time::sleep(interval * 4).await;
        for node in nodes.iter() {
            let keys = lock_keys(&node.url()).await;
            for i in 0..20 {
                assert!(
                    !keys.contains(&lock_key(&format!("gone-{i}"))),
                    "gone-{i} came back on {}",
                    node.url()
                );
            }
            for i in 20..40 {
                assert!(keys.contains(&lock_key(&format!("gone-{i}"))));
            }
        }
        assert!(kept.iter().all(LockGuard::is_held));
        drop(kept);
        locker.settled().await;
        wait_until_no_locks(&nodes, Duration::from_secs(1)).await;
        // Nothing runs a script on these nodes any more: no late renewal.
        let before = calls(&nodes).await;
        tokio::time::sleep(interval * 4).await;
        assert_eq!(
            calls(&nodes).await,
            before,
            "scripts ran after the last release"
        );
    })
    .await;
}

#[tokio::test]
async fn a_force_released_lock_in_a_batch_signals_its_loss_alone() {
    let nodes = start(3);
    let options = short();
    let interval = options.watchdog_interval().unwrap();
    let node_timeout = options.node_timeout;
    let locker = locker(&nodes, options);
    crate::common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let guards = hold_many(&locker, "forced", 30).await;
        locker.force_release("forced-7").await.unwrap();
        let removed = Instant::now();
        guards[7].lost().await;
        let after = removed.elapsed();
        // At the next renewal tick (up to an eighth of an interval early).
        assert!(
            after < interval + node_timeout + Duration::from_millis(100),
            "lost {after:?} after the lock was removed"
        );
        assert_eq!(locker.statistics().lost, 1);
        for (i, guard) in guards.iter().enumerate() {
            assert_eq!(guard.is_held(), i != 7, "forced-{i}");
        }
        drop(guards);
        locker.settled().await;
        wait_until_no_locks(&nodes, Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn extend_many_splits_into_calls_of_at_most_512_keys_and_decides_each_hold() {
    use fencelock::Error;
    use fencelock::backend::{Backend, Hold, Mode};
    let nodes = start(3);
    let options = options();
    let locker = locker(&nodes, options.clone());
    crate::common::warm_up(&locker).await;
    let backend = locker.backend();
    bounded(LIMIT, async {
        let holds: Vec<Hold> = (0..700)
            .map(|i| Hold::new(format!("split-{i}"), "owner-x", format!("id-{i}")))
            .collect();
        let short = Duration::from_secs(2);
        // A few at a time: 700 at once, three requests each, outlast the
        // node timeout on a busy machine, and this test is about the
        // extend, not about acquires in a crowd.
        let granted: Vec<_> = futures::stream::iter(&holds)
            .map(|h| backend.try_acquire(h, short, &options))
            .buffer_unordered(16)
            .collect()
            .await;
        let refused: Vec<_> = granted.iter().filter_map(|g| g.as_ref().err()).collect();
        assert!(
            refused.is_empty(),
            "{} refused, as {:?}",
            refused.len(),
            refused.first()
        );
        // A permit: two keys (its slot and the semaphore's marker).
        let permit =
            Hold::new("split-sem", "owner-x", "id-sem").with_mode(Mode::Permit { permits: 2 });
        let grant = backend.try_acquire(&permit, short, &options).await.unwrap();
        let permit = permit.in_slot(grant.slot.unwrap());
        backend.settled().await;
        // split-0 gone from node 0 alone; a hold never taken is nowhere.
        let mut c = crate::common::conn(&nodes.node(0).url()).await;
        let _: () = fencelock::deadpool_redis::redis::cmd("DEL")
            .arg(lock_key("split-0"))
            .query_async(&mut c)
            .await
            .unwrap();
        let absent = Hold::new("split-absent", "owner-x", "id-absent");
        let mut batch: Vec<(&Hold, Duration)> =
            holds.iter().map(|h| (h, Duration::from_secs(20))).collect();
        batch.push((&permit, Duration::from_secs(20)));
        batch.push((&absent, Duration::from_secs(20)));
        let before = calls(&nodes).await;
        let started = Instant::now();
        let results = backend.extend_many(&batch, &options).await;
        let after = calls(&nodes).await;
        assert_eq!(results.len(), 702);
        // 703 keys: two calls per node, not one per hold.
        for (before, after) in before.iter().zip(&after) {
            assert_eq!(after - before, 2);
        }
        for (i, result) in results.iter().enumerate().take(701) {
            let until = result
                .as_ref()
                .unwrap_or_else(|e| panic!("hold {i}: {e:?}"));
            // The validity of an extend, from before the first request.
            assert!(*until <= started + Duration::from_secs(20));
            assert!(*until > started + Duration::from_secs(19));
        }
        assert!(
            matches!(results[701], Err(Error::NotHeld { .. })),
            "{:?}",
            results[701]
        );
        assert_eq!(pttl(&nodes.node(0).url(), &lock_key("split-0")).await, -2);
        for node in nodes.iter() {
            assert!(pttl(&node.url(), &lock_key("split-699")).await > 10_000);
            assert!(pttl(&node.url(), &lock_key("split-sem")).await > 10_000);
            assert_eq!(pttl(&node.url(), &lock_key("split-absent")).await, -2);
        }
        for hold in holds.iter().chain([&permit]) {
            let _ = backend.release(hold, &options).await;
        }
        backend.settled().await;
        wait_until_no_locks(&nodes, Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn the_renewal_after_a_downgrade_completes_it_on_a_node_that_missed_it() {
    let nodes = start(3);
    let locker = locker(&nodes, short());
    crate::common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let writer = locker.write("downgraded").await.unwrap();
        locker.backend().settled().await;
        let node0 = nodes.node(0).url();
        let field = |fields: &[(String, String)], name: &str| {
            fields
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v.clone())
        };
        let root = field(
            &crate::common::hash(&node0, &lock_key("downgraded")).await,
            ":w",
        )
        .expect("the writer is marked");
        let reader = writer
            .downgrade()
            .await
            .map_err(|e| e.into_error())
            .unwrap();
        locker.backend().settled().await;
        // Node 0 as if the downgrade had missed it: still the writer there.
        let mut c = crate::common::conn(&node0).await;
        let _: () = fencelock::deadpool_redis::redis::cmd("HSET")
            .arg(lock_key("downgraded"))
            .arg(":w")
            .arg(&root)
            .query_async(&mut c)
            .await
            .unwrap();
        let renewed = locker.statistics().renewals;
        wait_until(Duration::from_secs(5), async || {
            locker.statistics().renewals > renewed
        })
        .await;
        let fields = crate::common::hash(&node0, &lock_key("downgraded")).await;
        assert_eq!(
            field(&fields, ":w"),
            None,
            "still the writer on node 0: {fields:?}"
        );
        assert!(reader.is_held());
        reader.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(1)).await;
    })
    .await;
}
