//! The count: bounded permits in slots of their own, refusals and
//! wake-ups, tokens, leases (a crashed holder's permit comes back, the
//! watchdog keeps a live one), and the count's checks.

use super::*;

/// 32 tasks on two clients share a semaphore of 4: never more than 4 are
/// inside, and 4 are inside at once (each task's first permit is held until
/// three others hold one too); the slots of live permits are distinct and
/// below 4, and no two permits ever get the same token.
pub(super) async fn permits_are_bounded<H: Unsupported>() {
    if !supported::<H>("bound") {
        return;
    }
    const PERMITS: u32 = 4;
    const TASKS: usize = 32;
    let servers = H::start();
    let clients = [servers.locker(options()), servers.locker(options())];
    bounded(Duration::from_secs(120), async {
        let inside = Arc::new(AtomicUsize::new(0));
        let most_inside = Arc::new(AtomicUsize::new(0));
        let live_slots = Arc::new(Mutex::new(HashSet::new()));
        let tokens = Arc::new(Mutex::new(HashSet::new()));
        let four_at_once = Arc::new(Barrier::new(PERMITS as usize));
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let semaphore = clients[i % 2].semaphore("pool", PERMITS).unwrap();
                let (inside, most_inside, live_slots, tokens, four_at_once) = (
                    Arc::clone(&inside),
                    Arc::clone(&most_inside),
                    Arc::clone(&live_slots),
                    Arc::clone(&tokens),
                    Arc::clone(&four_at_once),
                );
                tokio::spawn(async move {
                    for round in 0..3 {
                        let permit = semaphore.acquire().await.unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        assert!(now <= PERMITS as usize, "{now} permits out of {PERMITS}");
                        most_inside.fetch_max(now, Ordering::SeqCst);
                        let slot = permit.slot();
                        assert!(slot < PERMITS, "slot {slot}");
                        assert!(
                            live_slots.lock().unwrap().insert(slot),
                            "slot {slot} held twice"
                        );
                        assert!(
                            tokens.lock().unwrap().insert(permit.token()),
                            "token {:?} given twice",
                            permit.token()
                        );
                        if round == 0 {
                            tokio::time::timeout(Duration::from_secs(60), four_at_once.wait())
                                .await
                                .expect("four permits were never out at once");
                        } else {
                            tokio::task::yield_now().await;
                        }
                        assert!(permit.is_held());
                        live_slots.lock().unwrap().remove(&slot);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        permit.release().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most_inside.load(Ordering::SeqCst), PERMITS as usize);
        assert_eq!(tokens.lock().unwrap().len(), TASKS * 3);
        clients[1].settled().await;
        nothing_locked(&clients[0]).await;
    })
    .await;
}

/// With every permit out, a try is refused (by the holder's client and by
/// another); the live permits have distinct slots, `0..permits`; a
/// released permit's slot is the one the next holder gets.
pub(super) async fn all_permits_out_refuses_a_try<H: Unsupported>() {
    if !supported::<H>("all_out") {
        return;
    }
    let servers = H::start();
    let (locker, other) = (servers.locker(options()), servers.locker(options()));
    bounded(LIMIT, async {
        let ours = locker.semaphore("four", 4).unwrap();
        let theirs = other.semaphore("four", 4).unwrap();
        let mut permits = Vec::new();
        for _ in 0..3 {
            permits.push(ours.try_acquire().await.unwrap());
        }
        permits.push(theirs.acquire().await.unwrap());
        assert_eq!(slots(&permits), [0, 1, 2, 3]);
        let tokens: HashSet<_> = permits.iter().map(Permit::token).collect();
        assert_eq!(tokens.len(), 4, "live permits share a token");
        refused(ours.try_acquire().await);
        refused(theirs.try_acquire().await);

        let given_back = permits.remove(1);
        let (slot, token) = (given_back.slot(), given_back.token());
        given_back.release().await.unwrap();
        let next = theirs.try_acquire().await.unwrap();
        assert_eq!(next.slot(), slot, "the only free slot");
        assert!(next.token() > token, "a slot's tokens increase");
        refused(ours.try_acquire().await);
        next.release().await.unwrap();
        for permit in permits {
            permit.release().await.unwrap();
        }
        all_free(&theirs).await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// A released permit wakes a waiter at once, long before its retry delay.
pub(super) async fn a_released_permit_wakes_a_waiter<H: Unsupported>() {
    if !supported::<H>("wake_on_release") {
        return;
    }
    let servers = H::start();
    let (holder, waiter) = (servers.locker(options()), servers.locker(slow_retry()));
    bounded(LIMIT, async {
        let ours = holder.semaphore("woken", 2).unwrap();
        let [first, second] = [ours.acquire().await.unwrap(), ours.acquire().await.unwrap()];
        let theirs = waiter.semaphore("woken", 2).unwrap();
        let waiting = tokio::spawn(async move {
            let permit = theirs.acquire_timeout(3 * RETRY).await.unwrap();
            let at = Instant::now();
            permit.release().await.unwrap();
            waiter.settled().await;
            at
        });
        until_queued(&holder, "woken", 1).await;
        let released = Instant::now();
        first.release().await.unwrap();
        let woken = waiting.await.unwrap() - released;
        assert!(
            woken < WAKE,
            "the waiter got a permit {woken:?} after a release"
        );
        second.release().await.unwrap();
        nothing_locked(&holder).await;
    })
    .await;
}

/// Permits taken one after another, by two clients in turn, get strictly
/// increasing tokens.
pub(super) async fn tokens_increase_per_semaphore<H: Unsupported>() {
    if !supported::<H>("tokens") {
        return;
    }
    let servers = H::start();
    let clients = [servers.locker(options()), servers.locker(options())];
    bounded(LIMIT, async {
        let semaphores = clients
            .each_ref()
            .map(|c| c.semaphore("counted", 3).unwrap());
        let mut last = None;
        for i in 0..40 {
            let permit = semaphores[i % 2].acquire().await.unwrap();
            assert!(
                Some(permit.token()) > last,
                "permit {i}: {:?} after {last:?}",
                permit.token()
            );
            last = Some(permit.token());
            permit.release().await.unwrap();
        }
        // With permits out, too: each new one above every earlier one.
        let held = semaphores[0].acquire().await.unwrap();
        assert!(Some(held.token()) > last);
        let next = semaphores[1].acquire().await.unwrap();
        assert!(next.token() > held.token());
        held.release().await.unwrap();
        next.release().await.unwrap();
        nothing_locked(&clients[0]).await;
    })
    .await;
}

/// A holder that crashes (its permit neither released nor renewed: the
/// guard is forgotten, with the watchdog off) gives the permit back when
/// its ttl runs out, not before.
pub(super) async fn a_crashed_holders_permit_comes_back<H: Unsupported>() {
    if !supported::<H>("crashed_holder") {
        return;
    }
    let servers = H::start();
    let ttl = Duration::from_millis(300);
    let short = options()
        .ttl(ttl)
        .node_timeout(Duration::from_millis(100))
        .watchdog(Watchdog::Off);
    let crashing = servers.locker(short);
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let asked = Instant::now();
        let permit = crashing
            .semaphore("lease", 1)
            .unwrap()
            .acquire()
            .await
            .unwrap();
        std::mem::forget(permit);
        let semaphore = other.semaphore("lease", 1).unwrap();
        refused(semaphore.try_acquire().await);
        let permit = semaphore
            .acquire_timeout(ttl + SOON)
            .await
            .expect("the crashed holder's permit did not come back");
        let took = asked.elapsed();
        assert!(
            took >= ttl,
            "the permit came back after {took:?}, before its ttl"
        );
        permit.release().await.unwrap();
        nothing_locked(&other).await;
    })
    .await;
}

/// The watchdog keeps a permit well past its ttl: another client is
/// refused all along, and the release finds it held throughout.
pub(super) async fn the_watchdog_keeps_a_permit<H: Unsupported>() {
    if !supported::<H>("watchdog") {
        return;
    }
    let servers = H::start();
    let kept = options()
        .ttl(Duration::from_millis(600))
        .node_timeout(Duration::from_millis(100));
    let locker = servers.locker(kept);
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let permit = locker
            .semaphore("kept", 1)
            .unwrap()
            .acquire()
            .await
            .unwrap();
        let theirs = other.semaphore("kept", 1).unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            assert!(permit.is_held());
            refused(theirs.try_acquire().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        permit.release().await.unwrap();
        all_free(&theirs).await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// A count of 0 or above `MAX_PERMITS` is refused before any request;
/// `MAX_PERMITS` itself works.
pub(super) async fn the_count_is_checked<H: Unsupported>() {
    if !supported::<H>("invalid_permits") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    bounded(LIMIT, async {
        for permits in [0, MAX_PERMITS + 1, u32::MAX] {
            let made = locker.semaphore("counted", permits);
            assert!(
                matches!(made, Err(Error::InvalidPermits { permits: p, max: MAX_PERMITS }) if p == permits),
                "{permits}: {made:?}"
            );
        }
        assert!(matches!(
            locker.semaphore("", 2),
            Err(Error::InvalidKey(_))
        ));
        let widest = locker.semaphore("widest", MAX_PERMITS).unwrap();
        let permit = widest.try_acquire().await.unwrap();
        assert!(permit.slot() < MAX_PERMITS);
        permit.release().await.unwrap();
        nothing_locked(&locker).await;
    })
    .await;
}

/// Two clients with different counts for one name: the second is refused
/// while the first one's permits are out (waiting calls too, at once),
/// and may use its count once they are all back.
pub(super) async fn different_counts_are_refused<H: Unsupported>() {
    if !supported::<H>("permits_mismatch") {
        return;
    }
    let servers = H::start();
    let (locker, other) = (servers.locker(options()), servers.locker(options()));
    #[track_caller]
    fn mismatch<T: std::fmt::Debug>(result: fencelock::Result<T>) {
        assert!(
            matches!(
                result,
                Err(Error::PermitsMismatch {
                    ours: 2,
                    theirs: 3,
                    ..
                })
            ),
            "expected PermitsMismatch {{ ours: 2, theirs: 3 }}, got {result:?}"
        );
    }
    bounded(LIMIT, async {
        let three = locker.semaphore("mixed", 3).unwrap();
        let two = other.semaphore("mixed", 2).unwrap();
        let held = three.acquire().await.unwrap();
        let asked = Instant::now();
        mismatch(two.try_acquire().await);
        mismatch(two.acquire().await);
        mismatch(two.acquire_timeout(SOON).await);
        assert!(asked.elapsed() < SOON, "a mismatch was waited for");
        // The same count from the other client is fine.
        let also = other
            .semaphore("mixed", 3)
            .unwrap()
            .try_acquire()
            .await
            .unwrap();
        mismatch(two.try_acquire().await);
        held.release().await.unwrap();
        mismatch(two.try_acquire().await);
        also.release().await.unwrap();
        // All back: the name is free for any count (a record of the old
        // count lasts at most a ttl).
        let ttl = options().ttl;
        wait_until(ttl + SOON, async || match two.try_acquire().await {
            Ok(permit) => {
                permit.release().await.unwrap();
                true
            }
            Err(Error::PermitsMismatch { .. }) => false,
            Err(e) => panic!("{e}"),
        })
        .await;
        nothing_locked(&locker).await;
    })
    .await;
}
