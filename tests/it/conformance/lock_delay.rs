//! Lock-delay: a name whose holder vanished stays taken for the ttl and
//! the delay; a release of any kind frees it at once.

use super::*;

/// Lock-delay: a holder that vanishes (its lock handed off to nobody: no
/// release, no renewal) keeps the name from everyone else until its ttl
/// and the delay have run out, not much longer; without a delay, the name
/// comes back after the ttl as before. Both side by side, on two names.
pub(super) async fn a_vanished_holder_keeps_the_name_for_the_lock_delay<H: Harness>() {
    if !supported::<H>("lock_delay") {
        return;
    }
    let servers = H::start();
    let other = servers.locker(options());
    let timing = common::Delayed::after_grant(other.backend().name());
    let vanish = async |key: &str, delay: Duration| {
        let holder = servers.locker(timing.options(delay));
        let asked = Instant::now();
        let guard = holder.lock(key).await.unwrap();
        let answered = Instant::now();
        let token = guard.token();
        drop(guard.hand_off());
        let next = timing
            .outlasted(
                (asked, answered),
                delay,
                async || other.try_lock(key).await,
                async |wait| other.lock_timeout(key, wait).await,
            )
            .await;
        assert!(next.token() > token);
        next.release().await.unwrap();
    };
    bounded(LIMIT, async {
        tokio::join!(
            vanish("vanished", timing.delay),
            vanish("vanished-at-once", Duration::ZERO)
        );
        other.settled().await;
        nothing_locked(&other).await;
    })
    .await;
}

/// Lock-delay after renewals: every renewal keeps the lock on the servers
/// for ttl + delay, not only the grant. The holder is renewed by its
/// watchdog (on Redis for longer than a grant's ttl and delay), extended
/// once more by hand, and vanishes.
pub(super) async fn a_renewed_holder_that_vanishes_keeps_the_name_for_the_lock_delay<H: Harness>() {
    if !supported::<H>("lock_delay") {
        return;
    }
    let servers = H::start();
    let other = servers.locker(options());
    let timing = common::Delayed::after_renewals(other.backend().name());
    let holder = servers.locker(timing.options(timing.delay).watchdog(Watchdog::Auto));
    bounded(LIMIT, async {
        let guard = holder.lock("renewed").await.unwrap();
        tokio::time::sleep(timing.hold).await;
        assert!(guard.is_held());
        let asked = Instant::now();
        guard.extend(timing.ttl).await.unwrap();
        let answered = Instant::now();
        assert!(
            guard.expires_at() <= answered + timing.ttl,
            "the holder's validity counts the ttl alone"
        );
        let token = guard.token();
        drop(guard.hand_off());
        let next = timing
            .outlasted(
                (asked, answered),
                timing.delay,
                async || other.try_lock("renewed").await,
                async |wait| other.lock_timeout("renewed", wait).await,
            )
            .await;
        assert!(next.token() > token);
        next.release().await.unwrap();
        other.settled().await;
        nothing_locked(&other).await;
    })
    .await;
}

/// Lock-delay is for holders that vanish: a release, a dropped guard's
/// release in the background and a forced release free the name at once,
/// for every kind (a delay of ten minutes would show).
pub(super) async fn a_release_frees_the_name_at_once_despite_the_lock_delay<H: Harness>() {
    if !supported::<H>("lock_delay") {
        return;
    }
    let servers = H::start();
    let delayed = servers.locker(options().lock_delay(Duration::from_secs(600)));
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let guard = delayed.lock("released").await.unwrap();
        assert!(
            guard.remaining() <= options().ttl,
            "validity from the ttl alone"
        );
        guard.release().await.unwrap();
        common::lock_once(&other, "released").await;

        drop(delayed.lock("dropped").await.unwrap());
        other
            .lock_timeout("dropped", Duration::from_secs(10))
            .await
            .expect("a dropped guard's release frees the name")
            .release()
            .await
            .unwrap();

        let forced = delayed.lock("forced").await.unwrap();
        delayed.settled().await;
        assert!(other.force_release("forced").await.unwrap().removed > 0);
        common::lock_once(&other, "forced").await;
        assert!(forced.release().await.is_err(), "it was forced out");

        delayed
            .write("written")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        other
            .try_write("written")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        delayed.read("read").await.unwrap().release().await.unwrap();
        other
            .try_write("read")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        let permit = delayed
            .semaphore("permits", 1)
            .unwrap()
            .acquire()
            .await
            .unwrap();
        permit.release().await.unwrap();
        let semaphore = other.semaphore("permits", 1).unwrap();
        semaphore
            .try_acquire()
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        delayed.settled().await;
        other.settled().await;
    })
    .await;
}
