//! etcd-specific behaviour against real members: member failures, the
//! cross-process queue, and a dead client's lock running out with its lease.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    ETCD_LOCK_USER, ETCD_NO_PERMISSIONS_USER, bounded, enable_etcd_auth, etcd_locker,
    etcd_locker_as, start_etcd, wait_until,
};
use fencelock::etcd_client::{Client, GetOptions, PutOptions};
use fencelock::{Error, LockOptions, NodeFault, Owner, RetryPolicy};

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

/// The index of the member that leads, as the members themselves say.
async fn leader(cluster: &fencelock::testing::EtcdCluster) -> usize {
    for i in 0..cluster.len() {
        let Ok(mut client) = Client::connect([cluster.member(i).endpoint()], None).await else {
            continue;
        };
        if let Ok(status) = client.status().await
            && status.header().map(|h| h.member_id()) == Some(status.leader())
        {
            return i;
        }
    }
    panic!("no member leads");
}

/// The leader dies while a lock is held: the other two elect another, and
/// the watchdog's renewals, retried meanwhile, go through it in time.
///
/// The failover must finish before the lock's validity, less the
/// watchdog's reserve (a retry pause and two node timeouts, 0.75 s here),
/// runs out: the watchdog gives up then. The leader is killed right after
/// a renewal, so that leaves about ttl - 0.75 s = 3.25 s; killed at any
/// moment, as this test used to, a renewal interval (ttl/3) less. The
/// fixture's elections take 0.5 to 1 s a round and a split vote needs
/// another: with the former 2 s ttl, which left 0.67 to 1.33 s, a failover
/// on a loaded machine took 1.4 s and the lock was lost. 3.25 s is three
/// rounds or more.
#[tokio::test]
async fn losing_the_leader_keeps_locks_working_across_renewals() {
    let mut cluster = start_etcd(3);
    let ttl = Duration::from_secs(4);
    let locker = etcd_locker(&cluster, options().ttl(ttl));
    let other = etcd_locker(&cluster, options());
    bounded(LIMIT, async {
        let held = locker.lock("sturdy").await.unwrap();
        let leader = leader(&cluster).await;
        // Renewals leave no trace but the count: polled for.
        let before = locker.statistics().renewals;
        wait_until(ttl, async || locker.statistics().renewals > before).await;
        let renewed = locker.statistics().renewals;
        let killed = Instant::now();
        cluster.member_mut(leader).kill();
        let survived = async {
            // The other two elect a leader within an election round or
            // a few; meanwhile requests fail and are retried.
            for i in 0..5 {
                let key = format!("after-{i}");
                let guard = other
                    .lock_timeout(&key, Duration::from_secs(10))
                    .await
                    .unwrap();
                guard.release().await.unwrap();
            }
            // Renewals every ttl/3: three more span a whole ttl after the
            // kill, so the lock lives only if they went through the new
            // leader.
            wait_until(Duration::from_secs(20), async || {
                locker.statistics().renewals >= renewed + 3
            })
            .await;
        };
        tokio::select! {
            () = survived => {}
            () = held.lost() => panic!(
                "lost {:?} after the leader was killed: {:?}\n{}",
                killed.elapsed(),
                locker.statistics(),
                cluster.logs()
            ),
        }
        assert!(matches!(
            other.try_lock("sturdy").await,
            Err(Error::NotObtained { .. })
        ));
        assert!(held.is_held());
        assert_eq!(locker.statistics().lost, 0);
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

/// Waiters of two Lockers (as of two processes), two each, arrive in
/// turns while the lock is held; with `kill_leader`, the leader dies while
/// they queue. They get the lock in arrival order: within a Locker and
/// across, and through the failover.
async fn waiters_take_turns_in_arrival_order(members: usize, kill_leader: bool) {
    let mut cluster = start_etcd(members);
    // Polling alone would hand the lock to whoever retries first: a long
    // retry delay leaves the queue's wake-ups as the only quick path.
    let slow_polls = options().retry(
        RetryPolicy::default()
            .delay(Duration::from_secs(30))
            .jitter(Duration::ZERO),
    );
    let holder = etcd_locker(&cluster, options());
    let lockers = [
        etcd_locker(&cluster, slow_polls.clone()),
        etcd_locker(&cluster, slow_polls),
    ];
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    let guard = bounded(LIMIT, holder.lock("fifo")).await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..4 {
        let (locker, order) = (lockers[i % 2].clone(), Arc::clone(&order));
        waiters.push(tokio::spawn(async move {
            let guard = locker.lock("fifo").await.unwrap();
            order.lock().unwrap().push(i);
            guard.release().await.unwrap();
        }));
        // The next waiter arrives only once this one is queued.
        wait_until(Duration::from_secs(10), async || {
            queued(&mut client, "fifo").await == i as i64 + 1
        })
        .await;
    }
    // A waiter of the first Locker that comes now may not jump the queue.
    assert!(matches!(
        lockers[0].try_lock("fifo").await,
        Err(Error::NotObtained { .. })
    ));
    if kill_leader {
        let leader = leader(&cluster).await;
        cluster.member_mut(leader).kill();
        // The test's own reads go to the members that live.
        let living: Vec<String> = (0..members)
            .filter(|&i| i != leader)
            .map(|i| cluster.member(i).endpoint())
            .collect();
        client = Client::connect(living, None).await.unwrap();
        // A ttl's worth of the tickets' renewals go through the new leader.
        let ttl = options().ttl.min(Duration::from_secs(5));
        let since = Instant::now();
        wait_until(ttl + Duration::from_secs(10), async || {
            since.elapsed() > ttl && queued(&mut client, "fifo").await == 4
        })
        .await;
    }
    bounded(LIMIT, guard.release()).await.unwrap();
    bounded(LIMIT, async {
        for waiter in waiters {
            waiter.await.unwrap();
        }
    })
    .await;
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    wait_until(Duration::from_secs(10), async || {
        queued(&mut client, "fifo").await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_get_the_lock_in_arrival_order() {
    waiters_take_turns_in_arrival_order(1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_keep_their_places_when_the_leader_dies() {
    waiters_take_turns_in_arrival_order(3, true).await;
}

/// Many tasks of one Locker loop on one lock, so waiters join the queue
/// while it moves and find their turn has come already when their watch is
/// in place. Each hand-over must come from the queue: waiters on a backend
/// with a queue do not poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_waiters_hands_the_lock_on() {
    let cluster = start_etcd(3);
    // A waiter that missed its turn would wait out the safety poll, a ttl:
    // far longer than the bound below.
    let locker = etcd_locker(&cluster, options().ttl(Duration::from_secs(120)));
    bounded(Duration::from_secs(30), async {
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let locker = locker.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        let guard = locker.lock("crowd").await.unwrap();
                        guard.release().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
    assert_eq!(locker.statistics().acquired, 60);
}

/// One Locker's tasks take turns on a lock without pause, so it always
/// has a waiter queued; another Locker's waiter still gets its turn after
/// the ones queued ahead of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_process_does_not_starve_another() {
    let cluster = start_etcd(1);
    let busy = etcd_locker(&cluster, options());
    let other = etcd_locker(&cluster, options());
    bounded(LIMIT, async {
        let stop = Arc::new(AtomicBool::new(false));
        let taken = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (busy, stop, taken) = (busy.clone(), stop.clone(), taken.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let guard = busy.lock("busy").await.unwrap();
                    taken.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    guard.release().await.unwrap();
                }
            }));
        }
        wait_until(Duration::from_secs(10), async || {
            taken.load(Ordering::SeqCst) >= 3
        })
        .await;
        let before = taken.load(Ordering::SeqCst);
        let guard = other
            .lock_timeout("busy", Duration::from_secs(10))
            .await
            .unwrap();
        let meanwhile = taken.load(Ordering::SeqCst) - before;
        stop.store(true, Ordering::SeqCst);
        guard.release().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        // At most the busy Locker's other two tasks were queued ahead,
        // plus one that may have queued while the waiter took its place.
        assert!(meanwhile <= 3, "waited behind {meanwhile} holds");
    })
    .await;
}

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

/// A waiter that died leaves its ticket until the ticket's lease runs out:
/// meanwhile the free lock goes to nobody else, and inspect shows why.
#[tokio::test]
async fn a_dead_waiters_ticket_holds_the_queue_until_its_lease_ends() {
    let cluster = start_etcd(1);
    let locker = etcd_locker(&cluster, options());
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    bounded(LIMIT, async {
        let lease = client.lease_grant(2, None).await.unwrap();
        let granted = Instant::now();
        client
            .put(
                "fencelock:free/t/00000000000000000000000000000001",
                "a-waiter-that-died",
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await
            .unwrap();
        let info = locker.inspect("free").await.unwrap();
        assert_eq!((info.agreed, info.queued), (None, Some(1)));
        assert!(matches!(
            locker.try_lock("free").await,
            Err(Error::NotObtained { .. })
        ));
        let guard = locker
            .lock_timeout("free", Duration::from_secs(10))
            .await
            .unwrap();
        let waited = granted.elapsed();
        assert!(waited >= Duration::from_secs(2), "{waited:?}");
        guard.release().await.unwrap();
        assert_eq!(locker.inspect("free").await.unwrap().queued, Some(0));
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

/// How soon a final refusal must come back: a few round trips on
/// loopback, with room for a busy machine.
const PROMPT: Duration = Duration::from_secs(5);

/// A refusal that waiting does not change, reported as on Redis: a
/// `QuorumUnavailable` whose one failure is a `NodeFault::Denied` naming
/// the cluster's members, final (`is_denied`, not retryable).
fn assert_denied(error: &Error, cluster: &fencelock::testing::EtcdCluster) {
    let Error::QuorumUnavailable { failures, .. } = error else {
        panic!("expected QuorumUnavailable, got {error:?}");
    };
    assert_eq!(failures.len(), 1, "{error}");
    assert!(matches!(failures[0].fault, NodeFault::Denied(_)), "{error}");
    for endpoint in cluster.endpoints() {
        assert!(failures[0].node.contains(&endpoint), "{error}");
    }
    assert!(error.is_denied() && !error.is_retryable(), "{error}");
    assert!(error.to_string().contains("not retried"), "{error}");
}

/// With authentication on, a wrong password, an unknown user, no
/// credentials and a user without permissions are refusals that waiting
/// does not cure: each is a final denial, and `lock` (even
/// `lock_timeout` with a long wait) returns it at once instead of
/// retrying. The right user locks and waits as usual.
#[tokio::test]
async fn refused_credentials_and_permissions_are_final_denials() {
    let cluster = start_etcd(1);
    enable_etcd_auth(&cluster).await;
    bounded(LIMIT, async {
        let locker = etcd_locker_as(&cluster, Some(ETCD_LOCK_USER), options())
            .await
            .unwrap();
        let other = etcd_locker_as(&cluster, Some(ETCD_LOCK_USER), options())
            .await
            .unwrap();
        let guard = locker.lock("guarded").await.unwrap();
        let waited = other
            .lock_timeout("guarded", Duration::from_millis(300))
            .await;
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        guard.release().await.unwrap();
        other
            .try_lock("guarded")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();

        for user in [(ETCD_LOCK_USER.0, "wrong"), ("ghost", "pw")] {
            let asked = Instant::now();
            let refused = etcd_locker_as(&cluster, Some(user), options()).await;
            assert_denied(&refused.unwrap_err(), &cluster);
            assert!(asked.elapsed() < PROMPT, "{user:?}: {:?}", asked.elapsed());
        }

        for user in [None, Some(ETCD_NO_PERMISSIONS_USER)] {
            let locker = etcd_locker_as(&cluster, user, options()).await.unwrap();
            let asked = Instant::now();
            assert_denied(&locker.lock("guarded").await.unwrap_err(), &cluster);
            let waited = locker
                .lock_timeout("guarded", Duration::from_secs(30))
                .await;
            assert_denied(&waited.unwrap_err(), &cluster);
            assert!(asked.elapsed() < PROMPT, "{user:?}: {:?}", asked.elapsed());
        }
    })
    .await;
}

/// Credentials given to a cluster without authentication are refused by
/// etcd ("authentication is not enabled"): a denial too, not an outage.
#[tokio::test]
async fn credentials_for_a_cluster_without_auth_are_a_denial() {
    let cluster = start_etcd(1);
    bounded(LIMIT, async {
        let refused = etcd_locker_as(&cluster, Some(ETCD_LOCK_USER), options()).await;
        assert_denied(&refused.unwrap_err(), &cluster);
    })
    .await;
}
