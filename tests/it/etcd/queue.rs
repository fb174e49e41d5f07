//! The cross-process queue: arrival order, across a failover too; a crowd
//! handing the lock on; no starvation; a dead waiter's ticket.

use super::*;

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
