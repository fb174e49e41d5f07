//! No subscription outlives its waiters: not after a waiter gives up, not
//! for polling waiters, not when waiters are cut off at random points.

use super::*;

#[tokio::test]
async fn a_waiter_that_gives_up_leaves_no_subscription_behind() {
    let nodes = start(5);
    let holder = locker(&nodes, options());
    let waiter = locker(&nodes, slow_retry());
    bounded(LIMIT, async {
        let guard = holder.lock("export").await.unwrap();
        let waiting = tokio::spawn(async move {
            waiter
                .lock_timeout("export", Duration::from_secs(2))
                .await
                .map(|_| ())
        });
        until_listening(&nodes, &channel("export")).await;
        assert!(matches!(waiting.await.unwrap(), Err(Error::Timeout { .. })));
        // The unsubscribe goes out in the background right after.
        wait_until(Duration::from_secs(5), async || {
            open_channels(&nodes).await.is_empty()
        })
        .await;
        guard.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn polling_waiters_subscribe_to_nothing() {
    let nodes = start(3);
    let holder = locker(&nodes, options());
    let poller = locker(
        &nodes,
        options()
            .wake_on_release(false)
            .retry(RetryPolicy::default().delay(Duration::from_millis(20))),
    );
    common::warm_up(&poller).await;
    bounded(LIMIT, async {
        let guard = holder.lock("poll").await.unwrap();
        let url = nodes.urls()[0].clone();
        let before = common::script_calls(&url).await;
        let waiting = tokio::spawn(async move {
            poller
                .lock_timeout("poll", Duration::from_secs(30))
                .await
                .map(|g| g.token())
        });
        // Three tries seen on a node: it polls.
        wait_until(Duration::from_secs(10), async || {
            common::script_calls(&url).await >= before + 3
        })
        .await;
        assert!(open_channels(&nodes).await.is_empty());
        guard.release().await.unwrap();
        waiting.await.unwrap().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_cut_off_at_random_points_leave_no_lock_and_no_subscription() {
    let nodes = start(3);
    let waiting = locker(&nodes, options());
    // The holder is another process: its releases reach the waiters over
    // pub/sub.
    let holding = locker(&nodes, options());
    common::warm_up(&waiting).await;
    let seed: u64 = rand::random();
    println!("cut schedule seed: {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    bounded(LIMIT, async {
        for _ in 0..40 {
            let held = holding.lock("cut").await.unwrap();
            // Eight waiters, each dropped after a random time: in the line,
            // subscribing, attempting, or holding the lock it just got.
            let waiters: Vec<_> = (0..8)
                .map(|_| {
                    let (locker, cut) = (
                        waiting.clone(),
                        Duration::from_micros(rng.random_range(0..20_000)),
                    );
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(cut, locker.lock("cut")).await;
                    })
                })
                .collect();
            // Not a synchronisation: a random point in the waiters' lives.
            tokio::time::sleep(Duration::from_micros(rng.random_range(0..10_000))).await;
            held.release().await.unwrap();
            for waiter in waiters {
                waiter.await.unwrap();
            }
        }
        waiting.backend().settled().await;
        holding.backend().settled().await;
        common::wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
        wait_until(Duration::from_secs(5), async || {
            open_channels(&nodes).await.is_empty()
        })
        .await;
        // And the lock is still there to be had, at once.
        let guard = waiting
            .lock_timeout("cut", Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        guard.release().await.unwrap();
    })
    .await;
}
