//! Leases: concurrent renewals of nested guards, a dead client's lock
//! running out with its lease, and `settled` finishing background work.

use super::*;

/// Nested guards of one owner share a holder key; an extend with a longer
/// ttl moves it to a new lease while the other guard renews the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_renewals_never_report_a_held_lock_as_lost() {
    let cluster = start_etcd(1);
    let locker = etcd_locker(&cluster, options()).with_owner(Owner::random());
    bounded(LIMIT, async {
        let outer = locker.lock("moving").await.unwrap();
        let inner = locker.lock("moving").await.unwrap();
        for i in 0..200u64 {
            let delay = Duration::from_micros((i % 20) * 150);
            let (a, b) = tokio::join!(outer.extend(Duration::from_secs(11 + i)), async {
                tokio::time::sleep(delay).await;
                inner.extend(Duration::from_secs(10)).await
            });
            assert!(a.is_ok() && b.is_ok(), "round {i}: {a:?}, {b:?}");
        }
        inner.release().await.unwrap();
        outer.release().await.unwrap();
        assert!(!locker.is_locked("moving").await.unwrap());
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

/// What a call leaves to the background on etcd (a dropped guard's release
/// and the revoke of its lease; a waiter's ticket, revoked when the waiter
/// gives up) is done when `Locker::settled` returns: looked at right
/// after, with no polling, nothing of it is left.
#[tokio::test]
async fn settled_waits_for_dropped_guards_and_abandoned_tickets() {
    let cluster = start_etcd(1);
    let locker = etcd_locker(&cluster, options());
    let other = etcd_locker(&cluster, options());
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    bounded(LIMIT, async {
        let guard = locker.lock("dropped").await.unwrap();
        let holders = GetOptions::new().with_prefix();
        let reply = client
            .get("fencelock:dropped/h/", Some(holders.clone()))
            .await
            .unwrap();
        let lease = reply.kvs()[0].lease();

        // A waiter that gives up: its ticket's lease is revoked when its
        // place in the queue is dropped, in the background.
        let waited = other
            .lock_timeout("dropped", Duration::from_millis(300))
            .await;
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        other.settled().await;
        assert_eq!(queued(&mut client, "dropped").await, 0);

        drop(guard);
        locker.settled().await;
        let reply = client
            .get("fencelock:dropped/h/", Some(holders))
            .await
            .unwrap();
        assert!(reply.kvs().is_empty(), "{:?}", reply.kvs());
        // etcd answers -1 for a lease it no longer has.
        let left = client.lease_time_to_live(lease, None).await.unwrap();
        assert_eq!(left.ttl(), -1, "the holder's lease is still there");
    })
    .await;
}
