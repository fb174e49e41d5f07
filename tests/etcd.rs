//! etcd-specific behaviour against real members: member failures, the
//! cross-process queue, and a dead client's lock running out with its lease.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bounded, etcd_locker, start_etcd, wait_until};
use fencelock::etcd_client::{Client, GetOptions};
use fencelock::{Error, LockOptions, RetryPolicy};

const LIMIT: Duration = Duration::from_secs(60);

fn options() -> LockOptions {
    common::options()
}

/// How many waiters are queued for `resource` (tickets under its range).
async fn queued(client: &mut Client, resource: &str) -> i64 {
    client
        .get(
            format!("fencelock:{resource}/t/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

#[tokio::test]
async fn losing_one_of_three_members_keeps_locks_working() {
    let mut cluster = start_etcd(3);
    let locker = etcd_locker(&cluster, options().ttl(Duration::from_secs(3)));
    let other = etcd_locker(&cluster, options());
    bounded(LIMIT, async {
        let held = locker.lock("sturdy").await.unwrap();
        cluster.member_mut(0).kill();
        // Whichever member led, the other two elect a leader within about
        // an election timeout; meanwhile requests fail and are retried.
        for i in 0..5 {
            let key = format!("after-{i}");
            let guard = other
                .lock_timeout(&key, Duration::from_secs(10))
                .await
                .unwrap();
            guard.release().await.unwrap();
        }
        // The watchdog kept the lock held across the failover (more than
        // a ttl has passed by now only if renewals went through).
        assert!(matches!(
            other.try_lock("sturdy").await,
            Err(Error::NotObtained { .. })
        ));
        assert!(held.is_held());
        held.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn losing_two_of_three_members_signals_loss_and_fails_acquires_in_time() {
    let mut cluster = start_etcd(3);
    let short = options()
        .ttl(Duration::from_secs(2))
        .node_timeout(Duration::from_millis(200));
    let locker = etcd_locker(&cluster, short.clone());
    let guard = bounded(LIMIT, locker.lock("doomed")).await.unwrap();
    let validity = guard.expires_at();
    cluster.member_mut(1).kill();
    cluster.member_mut(2).kill();
    // No quorum: renewals cannot be confirmed, so the loss is told before
    // the lock could have run out.
    bounded(Duration::from_secs(10), guard.lost()).await;
    assert!(Instant::now() <= validity, "lost() after the validity");
    let other = etcd_locker(&cluster, short);
    let asked = Instant::now();
    let refused = bounded(
        Duration::from_secs(10),
        other.lock_timeout("fresh", Duration::from_secs(1)),
    )
    .await;
    assert!(matches!(refused, Err(Error::Timeout { .. })), "{refused:?}");
    assert!(asked.elapsed() < Duration::from_secs(3));
    let once = bounded(Duration::from_secs(5), other.try_lock("fresh")).await;
    assert!(
        matches!(once, Err(Error::QuorumUnavailable { .. })),
        "{once:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_of_separate_lockers_get_the_lock_in_arrival_order() {
    let cluster = start_etcd(1);
    // Polling alone would hand the lock to whoever retries first: a long
    // retry delay leaves the queue's wake-ups as the only quick path.
    let slow_polls = options().retry(
        RetryPolicy::default()
            .delay(Duration::from_secs(30))
            .jitter(Duration::ZERO),
    );
    let holder = etcd_locker(&cluster, options());
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    bounded(LIMIT, async {
        let guard = holder.lock("fifo").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..4 {
            let (locker, order) = (
                etcd_locker(&cluster, slow_polls.clone()),
                Arc::clone(&order),
            );
            waiters.push(tokio::spawn(async move {
                let guard = locker.lock("fifo").await.unwrap();
                order.lock().unwrap().push(i);
                guard.release().await.unwrap();
            }));
            // The next waiter arrives only once this one is queued.
            wait_until(Duration::from_secs(10), async || {
                queued(&mut client, "fifo").await == i + 1
            })
            .await;
        }
        guard.release().await.unwrap();
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
        wait_until(Duration::from_secs(10), async || {
            queued(&mut client, "fifo").await == 0
        })
        .await;
    })
    .await;
}

#[test]
fn a_dead_clients_lock_frees_when_its_lease_runs_out() {
    let cluster = start_etcd(1);
    let ttl = Duration::from_secs(2);
    // The client lives in a runtime of its own, which is then shut down
    // with the guard leaked: no release, no renewal, as if the process died.
    let dying = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let taken = dying.block_on(async {
        let locker = etcd_locker(&cluster, options().ttl(ttl));
        let guard = bounded(LIMIT, locker.lock("orphan")).await.unwrap();
        let at = Instant::now();
        std::mem::forget(guard);
        at
    });
    dying.shutdown_background();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(bounded(LIMIT, async {
        let other = etcd_locker(&cluster, options());
        assert!(matches!(
            other.try_lock("orphan").await,
            Err(Error::NotObtained { .. })
        ));
        let guard = other
            .lock_timeout("orphan", Duration::from_secs(10))
            .await
            .unwrap();
        let freed_after = taken.elapsed();
        // Not before the ttl; not much after the lease's end (etcd checks
        // expiries every 500 ms).
        assert!(freed_after >= ttl, "{freed_after:?}");
        assert!(
            freed_after < ttl + Duration::from_secs(3),
            "{freed_after:?}"
        );
        guard.release().await.unwrap();
    }));
}
