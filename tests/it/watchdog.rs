//! The watchdog against real redis-server nodes: it keeps a short lock alive,
//! stops for good on release, and tells the holder when the lock is lost:
//! nodes stopped, the hold gone, or the hold-time cap reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bounded, locker, options, pttl, script_calls, start, wait_until_no_locks};
use fencelock::metrics::{LOCK_LOST, WATCHDOG_RENEW};
use fencelock::{Error, LockOptions, Watchdog};
use metrics_util::debugging::DebuggingRecorder;

const LIMIT: Duration = Duration::from_secs(60);

/// A 1 s ttl with the default watchdog (renewing every ~333 ms).
fn one_second() -> LockOptions {
    options()
        .ttl(Duration::from_secs(1))
        .node_timeout(Duration::from_millis(100))
}

// Current-thread runtime: the thread-local recorder sees every metric.
#[tokio::test(flavor = "current_thread")]
async fn the_watchdog_keeps_a_one_second_lock_for_five_and_stops_on_release() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let nodes = start(5);
    let locker = locker(&nodes, one_second());
    // Connections first: a slow first connect on a loaded machine must not
    // time a node out of the lock this test looks at on every node.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let acquired = Instant::now();
        let guard = locker.lock("kept").await.unwrap();
        // Acquires return once a quorum granted; the last nodes follow.
        locker.backend().settled().await;
        let original = guard.expires_at();
        // Five seconds, checked every 100 ms: held locally and on every node,
        // and another owner is refused throughout.
        while acquired.elapsed() < Duration::from_secs(5) {
            assert!(guard.is_held(), "lost after {:?}", acquired.elapsed());
            for node in nodes.iter() {
                let left = pttl(&node.url(), "fencelock:{kept}").await;
                assert!(
                    left > 0,
                    "expired on {} after {:?}",
                    node.url(),
                    acquired.elapsed()
                );
            }
            let busy = common::try_from_another_task(&locker, "kept").await;
            assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(guard.expires_at() > original + Duration::from_secs(3));
        assert!(
            recorded.counter(WATCHDOG_RENEW) >= 12,
            "about 15 renewals in 5 s"
        );
        assert_eq!(recorded.counter(LOCK_LOST), 0);

        guard.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(1)).await;
        // Nothing runs a script on these nodes any more: no late renewal.
        let mut calls = Vec::new();
        for node in nodes.iter() {
            calls.push(script_calls(&node.url()).await);
        }
        let renewals = recorded.counter(WATCHDOG_RENEW);
        // Absence of events has no signal: wait several renewal intervals.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for (node, before) in nodes.iter().zip(calls) {
            assert_eq!(
                script_calls(&node.url()).await,
                before,
                "{} ran scripts after release",
                node.url()
            );
        }
        assert_eq!(recorded.counter(WATCHDOG_RENEW), renewals);
        wait_until_no_locks(&nodes, Duration::ZERO).await;
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn pausing_three_of_five_nodes_signals_loss_before_the_validity_ends() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = start(5);
    let locker = locker(&nodes, one_second());
    common::warm_up(&locker).await;
    let guard = bounded(LIMIT, locker.lock("stopped")).await.unwrap();
    for i in 0..3 {
        nodes.node_mut(i).pause();
    }
    // No renewal can succeed from here on: this is the validity to beat.
    let validity = guard.expires_at();
    bounded(LIMIT, guard.lost()).await;
    let noticed = Instant::now();
    eprintln!(
        "lost() completed {:?} before the validity ended",
        validity.saturating_duration_since(noticed)
    );
    assert!(
        noticed < validity,
        "lost() completed {:?} after the validity ended",
        noticed - validity
    );
    assert!(!guard.is_held());
    assert_eq!(recorded.counter(LOCK_LOST), 1);
    let extended = guard.extend(Duration::from_secs(1)).await;
    assert!(matches!(extended, Err(Error::Lost { .. })), "{extended:?}");
    for i in 0..3 {
        nodes.node_mut(i).resume();
    }
    // A lost guard never reports a clean release.
    let released = bounded(LIMIT, guard.release()).await;
    assert!(
        matches!(released, Err(Error::Lost { .. } | Error::NotHeld { .. })),
        "{released:?}"
    );
    bounded(LIMIT, wait_until_no_locks(&nodes, Duration::from_secs(3))).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_hold_removed_behind_the_watchdogs_back_is_lost_at_the_next_renewal() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let nodes = start(3);
    let options = one_second();
    let interval = options.watchdog_interval().unwrap();
    let locker = locker(&nodes, options.clone());
    bounded(LIMIT, async {
        let guard = locker.lock("stolen").await.unwrap();
        for node in nodes.iter() {
            let mut c = common::conn(&node.url()).await;
            let _: () = fencelock::deadpool_redis::redis::cmd("DEL")
                .arg("fencelock:{stolen}")
                .query_async(&mut c)
                .await
                .unwrap();
        }
        let deleted = Instant::now();
        guard.lost().await;
        // At the next renewal, not after retries until the reserve runs out.
        let after = deleted.elapsed();
        assert!(
            after < interval + options.node_timeout + Duration::from_millis(50),
            "lost {after:?} after the hold was removed"
        );
        let renewals = recorded.counter_with(WATCHDOG_RENEW, "result", "not_held");
        assert_eq!(renewals, 1);
        assert_eq!(recorded.counter_with(WATCHDOG_RENEW, "result", "failed"), 0);
        let released = guard.release().await;
        assert!(
            matches!(released, Err(Error::NotHeld { .. })),
            "{released:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_extend_confirmed_after_the_validity_ended_is_too_late() {
    let mut nodes = start(3);
    // One node stopped: every extend waits its full node_timeout (300 ms)
    // for that node, though the other two confirm at once.
    let options = options()
        .ttl(Duration::from_secs(1))
        .node_timeout(Duration::from_millis(300))
        .watchdog(Watchdog::Off);
    let locker = locker(&nodes, options);
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let guard = locker.lock("late").await.unwrap();
        nodes.node_mut(0).pause();
        tokio::time::sleep_until((guard.expires_at() - Duration::from_millis(100)).into()).await;
        assert!(guard.is_held());
        let extended = guard.extend(Duration::from_secs(5)).await;
        assert!(matches!(extended, Err(Error::Lost { .. })), "{extended:?}");
        assert!(!guard.is_held(), "a lapsed guard came back");
        nodes.node_mut(0).resume();
        let released = guard.release().await;
        assert!(
            matches!(released, Err(Error::Lost { .. } | Error::NotHeld { .. })),
            "{released:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn max_hold_stops_renewing_and_the_lock_runs_out() {
    let nodes = start(3);
    let cap = Duration::from_millis(1500);
    let locker = locker(&nodes, one_second().max_hold(cap));
    // Connections first: a slow first connect on a loaded machine must not
    // time node 0 out of the lock this test looks at there.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let acquired = Instant::now();
        let guard = locker.lock("capped").await.unwrap();
        // Renewed past the 1 s ttl, up to the cap...
        tokio::time::sleep_until((acquired + cap - Duration::from_millis(300)).into()).await;
        assert!(guard.is_held());
        assert!(pttl(&nodes.node(0).url(), "fencelock:{capped}").await > 0);
        // ...and no further: the last renewal asked only for what was left,
        // so the lock is certain until just before the cap (less the drift
        // allowance) and gone from the nodes just after it.
        guard.lost().await;
        let held_for = acquired.elapsed();
        // The last renewal may fall up to a node_timeout before the cap, and
        // its validity is short of the cap by the drift allowance.
        let options = one_second();
        let earliest = cap
            - options.node_timeout
            - options.ttl.mul_f64(options.drift_factor)
            - Duration::from_millis(2)
            - Duration::from_millis(50);
        assert!(
            held_for >= earliest,
            "lost after {held_for:?}, before {earliest:?}"
        );
        assert!(
            held_for < cap + Duration::from_millis(500),
            "lost after {held_for:?}"
        );
        tokio::time::sleep_until((acquired + cap).into()).await;
        wait_until_no_locks(&nodes, Duration::from_millis(300)).await;
        let released = guard.release().await;
        assert!(
            matches!(released, Err(Error::NotHeld { .. })),
            "{released:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn without_a_watchdog_the_lock_runs_out_and_lost_says_so() {
    let nodes = start(3);
    // A large drift allowance: the guard's validity (0.6 s) ends well before
    // the nodes drop the lock (1 s), so the release still finds it there.
    let options = one_second().watchdog(Watchdog::Off).drift_factor(0.4);
    let locker = locker(&nodes, options);
    // Connections first: a slow first connect on a loaded machine must not
    // time node 0 out of the lock this test looks at there.
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let guard = locker.lock("unkept").await.unwrap();
        let validity = guard.expires_at();
        guard.lost().await;
        assert!(Instant::now() >= validity);
        assert!(!guard.is_held());
        assert!(pttl(&nodes.node(0).url(), "fencelock:{unkept}").await > 0);
        // The nodes still had it, but it was not certainly held throughout.
        let released = guard.release().await;
        assert!(matches!(released, Err(Error::Lost { .. })), "{released:?}");
        wait_until_no_locks(&nodes, Duration::ZERO).await;
    })
    .await;
}

#[tokio::test]
async fn with_lock_until_lost_cancels_the_work_and_returns_lost() {
    let mut nodes = start(5);
    let locker = locker(&nodes, one_second());
    common::warm_up(&locker).await;
    // Set when the work's future is dropped: it was cancelled, not finished.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let (inside_tx, inside_rx) = tokio::sync::oneshot::channel();
    let work = {
        let locker = locker.clone();
        let dropped = Arc::clone(&dropped);
        tokio::spawn(async move {
            locker
                .with_lock_until_lost("doomed", async |_guard| {
                    let _flag = Dropped(dropped);
                    inside_tx.send(()).unwrap();
                    std::future::pending::<()>().await;
                })
                .await
        })
    };
    bounded(LIMIT, inside_rx).await.unwrap();
    for i in 0..3 {
        nodes.node_mut(i).pause();
    }
    let result = bounded(LIMIT, work).await.unwrap();
    assert!(matches!(result, Err(Error::Lost { .. })), "{result:?}");
    assert!(dropped.load(Ordering::SeqCst), "the work was not cancelled");
    for i in 0..3 {
        nodes.node_mut(i).resume();
    }
    bounded(LIMIT, wait_until_no_locks(&nodes, Duration::from_secs(3))).await;

    // Work that finishes in time returns its value and releases.
    let value = bounded(
        LIMIT,
        locker.with_lock_until_lost("fine", async |g| g.token()),
    )
    .await
    .unwrap();
    assert!(value.get() > 0);
    wait_until_no_locks(&nodes, Duration::ZERO).await;
}
