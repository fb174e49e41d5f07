//! The core of the shared semantics: exclusion, refusal and timeouts,
//! expiry, reentrancy, the watchdog and loss, tokens, and cancellation.

use super::*;

pub(super) async fn mutual_exclusion<H: Harness>() {
    if !supported::<H>("mutual_exclusion") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    bounded(LIMIT, async {
        let inside = Arc::new(AtomicUsize::new(0));
        let entries = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (locker, inside, entries) =
                    (locker.clone(), Arc::clone(&inside), Arc::clone(&entries));
                tokio::spawn(async move {
                    for _ in 0..10 {
                        let guard = locker.lock("exclusive").await.unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two inside");
                        entries.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                        guard.release().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(entries.load(Ordering::SeqCst), 80);
        locker.settled().await;
        nothing_locked(&locker).await;
    })
    .await;
}

pub(super) async fn try_lock_is_refused_while_held<H: Harness>() {
    if !supported::<H>("try_lock_contention") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let guard = locker.try_lock("busy").await.unwrap();
        let refused = other.try_lock("busy").await;
        assert!(
            matches!(refused, Err(Error::NotObtained { .. })),
            "{refused:?}"
        );
        assert!(other.is_locked("busy").await.unwrap());
        guard.release().await.unwrap();
        common::lock_once(&other, "busy").await;
    })
    .await;
}

pub(super) async fn lock_timeout_gives_up_in_time<H: Harness>() {
    if !supported::<H>("lock_timeout") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let guard = locker.lock("patient").await.unwrap();
        let asked = Instant::now();
        let waited = other
            .lock_timeout("patient", Duration::from_millis(300))
            .await;
        let took = asked.elapsed();
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        guard.release().await.unwrap();
        // Released: a waiter gets it well within its timeout.
        other
            .lock_timeout("patient", Duration::from_secs(5))
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    })
    .await;
}

pub(super) async fn a_foreign_hold_cannot_be_taken_over<H: Harness>() {
    if !supported::<H>("foreign_release_rejected") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let intruder = servers.locker(options());
    bounded(LIMIT, async {
        let guard = locker.lock("owned").await.unwrap();
        // A hand-off forged with the right key and token but another owner
        // and hold: adopting it must not touch the real lock.
        let forged: Handoff = format!(
            "fencelock-handoff/1 {} {} {} owned",
            guard.token().get(),
            Owner::random(),
            Owner::random()
        )
        .parse()
        .unwrap();
        let adopted = intruder.adopt(&forged).await;
        assert!(matches!(adopted, Err(Error::NotHeld { .. })), "{adopted:?}");
        assert!(guard.is_held());
        assert!(intruder.is_locked("owned").await.unwrap());
        guard.release().await.unwrap();
    })
    .await;
}

pub(super) async fn release_after_expiry_is_not_held<H: Harness>() {
    if !supported::<H>("release_after_expiry") {
        return;
    }
    let servers = H::start();
    let short = options()
        .ttl(Duration::from_millis(300))
        .node_timeout(Duration::from_millis(100))
        .watchdog(Watchdog::Off);
    let locker = servers.locker(short);
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let guard = locker.lock("fleeting").await.unwrap();
        guard.lost().await;
        locker.settled().await;
        wait_until(Duration::from_secs(5), async || {
            matches!(other.is_locked("fleeting").await, Ok(false))
        })
        .await;
        let released = guard.release().await;
        assert!(
            matches!(released, Err(Error::NotHeld { .. })),
            "{released:?}"
        );
    })
    .await;
}

pub(super) async fn reentrancy_depth_and_limit<H: Harness>() {
    if !supported::<H>("reentrancy") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options().max_reentrancy(3));
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let outer = locker.lock("nested").await.unwrap();
        let middle = locker.lock("nested").await.unwrap();
        let inner = locker.try_lock("nested").await.unwrap();
        assert_eq!(outer.token(), middle.token());
        assert_eq!(outer.token(), inner.token());
        let too_deep = locker.try_lock("nested").await;
        assert!(
            matches!(too_deep, Err(Error::ReentrancyLimit { limit: 3, .. })),
            "{too_deep:?}"
        );
        inner.release().await.unwrap();
        middle.release().await.unwrap();
        assert!(matches!(
            other.try_lock("nested").await,
            Err(Error::NotObtained { .. })
        ));
        let outer_token = outer.token();
        outer.release().await.unwrap();
        let next = other.try_lock("nested").await.unwrap();
        assert!(next.token() > outer_token);
        next.release().await.unwrap();
    })
    .await;
}

pub(super) async fn the_watchdog_keeps_the_lock<H: Harness>() {
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
        let guard = locker.lock("kept").await.unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            assert!(guard.is_held());
            assert!(matches!(
                other.try_lock("kept").await,
                Err(Error::NotObtained { .. })
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        guard.release().await.unwrap();
    })
    .await;
}

pub(super) async fn loss_is_signalled_when_the_servers_go_away<H: Harness>() {
    if !supported::<H>("loss_signalled") {
        return;
    }
    let mut servers = H::start();
    let short = options()
        .ttl(Duration::from_millis(600))
        .node_timeout(Duration::from_millis(100));
    let locker = servers.locker(short);
    let guard = bounded(LIMIT, locker.lock("doomed")).await.unwrap();
    bounded(LIMIT, locker.settled()).await;
    let validity = guard.expires_at();
    servers.pause_all();
    // lost() completes before the lock could have run out on the servers.
    bounded(Duration::from_secs(5), guard.lost()).await;
    assert!(
        Instant::now() <= validity,
        "lost() came after the validity ended"
    );
    assert!(!guard.is_held());
    servers.resume_all();
    bounded(LIMIT, async {
        let released = guard.release().await;
        assert!(released.is_err(), "{released:?}");
    })
    .await;
}

pub(super) async fn tokens_strictly_increase<H: Harness>() {
    if !supported::<H>("tokens_increase") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    bounded(LIMIT, async {
        let mut last = None;
        for _ in 0..50 {
            let guard = locker.lock("counted").await.unwrap();
            assert!(
                last < Some(guard.token()),
                "{:?} after {last:?}",
                guard.token()
            );
            last = Some(guard.token());
            guard.release().await.unwrap();
        }
    })
    .await;
}

pub(super) async fn cancelled_acquires_leave_nothing_behind<H: Harness>() {
    if !supported::<H>("cancellation") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    bounded(LIMIT, async {
        for i in 0..100u64 {
            // Cut at a point that moves through the whole acquire.
            let cut = Duration::from_micros(i * 20);
            let _ = tokio::time::timeout(cut, locker.lock("cut")).await;
        }
        locker.settled().await;
        nothing_locked(&locker).await;
        common::lock_once(&locker, "cut").await;
    })
    .await;
}
