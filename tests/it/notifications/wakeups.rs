//! A waiter wakes on a release, a forced release, a cut subscriber
//! connection or the lock's expiry, not a retry delay later.

use super::*;

#[tokio::test]
async fn a_waiter_wakes_on_release_long_before_its_retry_delay() {
    let nodes = start(5);
    let holder = locker(&nodes, options());
    // Another Locker: another process as far as the waiting line goes, so
    // the news must come over pub/sub.
    let waiter = locker(&nodes, slow_retry());
    common::warm_up(&holder).await;
    common::warm_up(&waiter).await;
    bounded(LIMIT, async {
        let guard = holder.lock("report").await.unwrap();
        let first = guard.token();
        let waiting = tokio::spawn(async move {
            let guard = waiter.lock_timeout("report", 3 * RETRY).await.unwrap();
            let at = Instant::now();
            let token = guard.token();
            guard.release().await.unwrap();
            (token, at)
        });
        until_listening(&nodes, &channel("report")).await;
        let released = Instant::now();
        guard.release().await.unwrap();
        let (token, acquired) = waiting.await.unwrap();
        let woke = acquired - released;
        println!("woke {woke:?} after the release (retry delay {RETRY:?})");
        assert!(woke < WAKE, "woke {woke:?} after the release");
        assert!(token > first);
        common::wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn a_cut_subscriber_connection_still_wakes_the_waiter() {
    let nodes = start(3);
    let holder = locker(&nodes, options());
    let waiter = locker(&nodes, slow_retry());
    common::warm_up(&holder).await;
    bounded(LIMIT, async {
        let guard = holder.lock("sync").await.unwrap();
        let waiting = tokio::spawn(async move {
            let guard = waiter.lock_timeout("sync", 3 * RETRY).await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            at
        });
        until_listening(&nodes, &channel("sync")).await;
        // Cut every subscriber connection, then release at once: the
        // release's messages reach nobody. The listeners reconnect and wake
        // their waiters, who look for themselves.
        for url in nodes.urls() {
            let mut c = common::conn(&url).await;
            let killed: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(killed, 1, "one subscriber connection per node");
        }
        let released = Instant::now();
        guard.release().await.unwrap();
        let woke = waiting.await.unwrap() - released;
        println!("woke {woke:?} after a release nobody heard");
        assert!(woke < WAKE, "woke {woke:?} after the release");
    })
    .await;
}

#[tokio::test]
async fn a_forced_release_wakes_the_waiter() {
    let nodes = start(3);
    let parked = options()
        .ttl(Duration::from_secs(60))
        .watchdog(Watchdog::Off);
    let holder = locker(&nodes, parked);
    let waiter = locker(&nodes, slow_retry());
    let admin = locker(&nodes, options());
    // Connections first: a slow first connect on a loaded machine must not
    // time a node out of the lock this test looks at on every node.
    common::warm_up(&holder).await;
    bounded(LIMIT, async {
        let stuck = holder.lock("nightly").await.unwrap();
        // On every node, not just a quorum, before it is forced off.
        holder.backend().settled().await;
        let waiting = tokio::spawn(async move {
            let guard = waiter.lock_timeout("nightly", 3 * RETRY).await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            at
        });
        until_listening(&nodes, &channel("nightly")).await;
        let forced = Instant::now();
        let report = admin.force_release("nightly").await.unwrap();
        assert_eq!(report.removed, 3);
        let woke = waiting.await.unwrap() - forced;
        assert!(woke < WAKE, "woke {woke:?} after the forced release");
        assert!(matches!(stuck.release().await, Err(Error::NotHeld { .. })));
    })
    .await;
}

#[tokio::test]
async fn a_lock_that_runs_out_is_taken_when_it_expires_not_a_retry_delay_later() {
    let nodes = start(3);
    // No watchdog, no release: the lock just runs out after 1 s.
    let crashed = locker(
        &nodes,
        options()
            .ttl(Duration::from_secs(1))
            .watchdog(Watchdog::Off),
    );
    let waiter = locker(&nodes, slow_retry());
    common::warm_up(&waiter).await;
    bounded(LIMIT, async {
        let taken = Instant::now();
        let _abandoned = crashed.lock("orphan").await.unwrap();
        let guard = waiter.lock_timeout("orphan", 3 * RETRY).await.unwrap();
        let after_expiry = taken.elapsed().saturating_sub(Duration::from_secs(1));
        println!("taken {after_expiry:?} after the expiry (retry delay {RETRY:?})");
        assert!(
            after_expiry < WAKE,
            "taken {after_expiry:?} after the expiry"
        );
        guard.release().await.unwrap();
    })
    .await;
}
