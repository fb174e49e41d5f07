//! Semaphores, against real servers, on every backend configuration of the
//! conformance suite (Redis with one node, Redlock with five, etcd with one
//! member and with three): never more permits out than the count, each in
//! a slot of its own, tokens that increase, permits that are leases (a
//! crashed holder's comes back, the watchdog keeps a live one), the
//! count's and the kind's checks, waiting in time, and cut-off acquires
//! that leave nothing behind.
//!
//! A case a configuration cannot honour is listed in
//! `Unsupported::SEMAPHORE` (in `rwlock`) with the reason, and the suite
//! says so when it skips it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Barrier;

use crate::common;
use crate::common::harness::{EtcdMembers, Redis};
use crate::common::{bounded, wait_until};
use crate::rwlock::{
    LIMIT, RETRY, SOON, Unsupported, WAKE, cut_points, nothing_locked, options, refused, rounds,
    runs, slow_retry, typical, until_queued, within,
};
use fencelock::{Backend, Error, Handoff, MAX_PERMITS, Owner, Permit, Semaphore, Watchdog};

fn supported<H: Unsupported>(case: &str) -> bool {
    runs(H::SEMAPHORE, case)
}

/// Takes every permit of `semaphore` at once (each try must succeed), and
/// gives them back: none was left out by an earlier holder or waiter.
async fn all_free<B: Backend>(semaphore: &Semaphore<B>) {
    let mut permits = Vec::new();
    for _ in 0..semaphore.permits() {
        match semaphore.try_acquire().await {
            Ok(permit) => permits.push(permit),
            Err(e) => panic!(
                "{} of {} permits free: {e}",
                permits.len(),
                semaphore.permits()
            ),
        }
    }
    for permit in permits {
        permit.release().await.unwrap();
    }
}

/// The slots of `permits`, sorted.
fn slots<B: Backend>(permits: &[Permit<B>]) -> Vec<u32> {
    let mut slots: Vec<u32> = permits.iter().map(Permit::slot).collect();
    slots.sort_unstable();
    slots
}

/// 32 tasks on two clients share a semaphore of 4: never more than 4 are
/// inside, and 4 are inside at once (each task's first permit is held until
/// three others hold one too); the slots of live permits are distinct and
/// below 4, and no two permits ever get the same token.
async fn permits_are_bounded<H: Unsupported>() {
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
async fn all_permits_out_refuses_a_try<H: Unsupported>() {
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
async fn a_released_permit_wakes_a_waiter<H: Unsupported>() {
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
async fn tokens_increase_per_semaphore<H: Unsupported>() {
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
async fn a_crashed_holders_permit_comes_back<H: Unsupported>() {
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
async fn the_watchdog_keeps_a_permit<H: Unsupported>() {
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
async fn the_count_is_checked<H: Unsupported>() {
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
async fn different_counts_are_refused<H: Unsupported>() {
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

/// One name, one kind at a time: a lock's or a read-write lock's name is
/// not a semaphore, and a semaphore's name is neither of them, for another
/// client and for the holder's own.
async fn a_name_is_one_kind_at_a_time<H: Unsupported>() {
    if !supported::<H>("wrong_kind") {
        return;
    }
    let servers = H::start();
    let (locker, other) = (servers.locker(options()), servers.locker(options()));
    #[track_caller]
    fn wrong<T: std::fmt::Debug>(result: fencelock::Result<T>, used: &str, wanted: &str) {
        match &result {
            Err(Error::WrongKind {
                in_use_as,
                wanted: w,
                ..
            }) if in_use_as == used && *w == wanted => {}
            _ => panic!("expected WrongKind {{ {used} as {wanted} }}, got {result:?}"),
        }
    }
    bounded(LIMIT, async {
        let asked = Instant::now();
        let semaphores = [&locker, &other].map(|c| c.semaphore("kind", 2).unwrap());

        let lock = locker.lock("kind").await.unwrap();
        for semaphore in &semaphores {
            wrong(semaphore.try_acquire().await, "lock", "semaphore");
            wrong(semaphore.acquire().await, "lock", "semaphore");
        }
        lock.release().await.unwrap();

        let read = locker.read("kind").await.unwrap();
        for semaphore in &semaphores {
            wrong(semaphore.try_acquire().await, "rwlock", "semaphore");
            wrong(semaphore.acquire_timeout(SOON).await, "rwlock", "semaphore");
        }
        read.release().await.unwrap();

        let permit = semaphores[0].acquire().await.unwrap();
        for client in [&locker, &other] {
            wrong(client.try_lock("kind").await, "semaphore", "lock");
            wrong(client.lock("kind").await, "semaphore", "lock");
            wrong(client.try_read("kind").await, "semaphore", "rwlock");
            wrong(client.write("kind").await, "semaphore", "rwlock");
        }
        permit.release().await.unwrap();
        assert!(asked.elapsed() < SOON, "a wrong kind was waited for");
        // Free again: any kind may have the name.
        common::lock_once(&other, "kind").await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// `acquire_timeout` gives up at its deadline while every permit is out,
/// and gets one well within it once a permit is back.
async fn acquire_timeout_gives_up_in_time<H: Unsupported>() {
    if !supported::<H>("acquire_timeout") {
        return;
    }
    let servers = H::start();
    let (locker, other) = (servers.locker(options()), servers.locker(options()));
    bounded(LIMIT, async {
        let ours = locker.semaphore("patient", 2).unwrap();
        let held = [ours.acquire().await.unwrap(), ours.acquire().await.unwrap()];
        let theirs = other.semaphore("patient", 2).unwrap();
        let asked = Instant::now();
        let waited = theirs.acquire_timeout(Duration::from_millis(300)).await;
        let took = asked.elapsed();
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        let [first, second] = held;
        first.release().await.unwrap();
        let permit = theirs.acquire_timeout(SOON).await.unwrap();
        second.release().await.unwrap();
        permit.release().await.unwrap();
        all_free(&theirs).await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// `with_permit` holds a permit around the work, hands back its value, and
/// gives the permit back on the way out.
async fn scoped_permits<H: Unsupported>() {
    if !supported::<H>("scoped") {
        return;
    }
    let servers = H::start();
    let (locker, other) = (servers.locker(options()), servers.locker(options()));
    bounded(LIMIT, async {
        let ours = locker.semaphore("scoped", 2).unwrap();
        let theirs = other.semaphore("scoped", 2).unwrap();
        let (slot, token) = ours
            .with_permit(async |permit| {
                assert!(permit.is_held());
                let second = theirs.try_acquire().await.unwrap();
                assert_ne!(second.slot(), permit.slot());
                refused(theirs.try_acquire().await);
                second.release().await.unwrap();
                (permit.slot(), permit.token())
            })
            .await
            .unwrap();
        assert!(slot < 2);
        all_free(&theirs).await;
        let next = theirs
            .with_permit(async |permit| permit.token())
            .await
            .unwrap();
        assert!(next > token);
        nothing_locked(&locker).await;
    })
    .await;
}

/// Cancellation: acquires cut off at every scheduler round (free, and
/// waiting while every permit is out) leave no permit and no waiter
/// behind.
async fn cut_off_acquires_leave_nothing<H: Unsupported>() {
    if !supported::<H>("cancellation") {
        return;
    }
    let servers = H::start();
    let cut_options = options()
        .ttl(Duration::from_secs(30))
        .watchdog(Watchdog::Every(Duration::from_millis(20)));
    let locker = servers.locker(cut_options);
    let other = servers.locker(options());
    bounded(Duration::from_secs(240), async {
        let ours = locker.semaphore("cut", 2).unwrap();
        let theirs = other.semaphore("cut", 2).unwrap();
        all_free(&ours).await;
        // Free: cut at every round, then every permit is free. Most cuts
        // must land before the end, or the case proves little. Load that
        // dropped since the calibration (a test beside this one ended)
        // finishes the acquires in fewer rounds: calibrate and cut again
        // then, up to three times.
        let mut span = 0;
        for attempt in 1..=3 {
            let mut acquires = Vec::new();
            for _ in 0..9 {
                let (permit, n) = rounds(ours.acquire()).await;
                permit.unwrap().release().await.unwrap();
                acquires.push(n);
            }
            span = typical(&acquires) + 2;
            let points = cut_points(span);
            eprintln!("rounds: acquire {acquires:?}; cutting at {points:?}");
            let mut cut = 0;
            for &t in &points {
                cut += usize::from(within(t, ours.acquire()).await.is_none());
                locker.settled().await;
                all_free(&theirs).await;
                // With one permit out, the cut one takes the other slot.
                let held = theirs.try_acquire().await.unwrap();
                cut += usize::from(within(t, ours.acquire()).await.is_none());
                locker.settled().await;
                let last = theirs.try_acquire().await.unwrap();
                assert_ne!(last.slot(), held.slot());
                held.release().await.unwrap();
                last.release().await.unwrap();
            }
            if cut > points.len() / 2 {
                break;
            }
            assert!(
                attempt < 3,
                "only {cut} of {} cut off, three times",
                2 * points.len()
            );
        }

        // Waiting while every permit is out.
        let held = [
            theirs.acquire().await.unwrap(),
            theirs.acquire().await.unwrap(),
        ];
        for &t in &cut_points(2 * span) {
            assert!(within(t, ours.acquire()).await.is_none());
        }
        for permit in held {
            permit.release().await.unwrap();
        }
        locker.settled().await;
        // No permit and no waiter's place is left: both permits at once.
        all_free(&theirs).await;
        other.settled().await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// A permit travels like a lock: the adopter keeps its slot and token,
/// and the semaphore it is adopted into must agree on the permits.
async fn a_permit_is_handed_off<H: Unsupported>() {
    if !supported::<H>("hand_off") {
        return;
    }
    let servers = H::start();
    let owner = Owner::random();
    let here = servers.locker(options()).with_owner(owner.clone());
    let there = servers.locker(options()).with_owner(owner);
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let permit = here
            .semaphore("jobs", 2)
            .unwrap()
            .try_acquire()
            .await
            .unwrap();
        let (slot, token) = (permit.slot(), permit.token());
        let handoff: Handoff = permit.hand_off().to_string().parse().unwrap();
        let mismatch = there.semaphore("jobs", 3).unwrap().adopt(&handoff).await;
        assert!(
            matches!(mismatch, Err(Error::PermitsMismatch { .. })),
            "{mismatch:?}"
        );
        let wrong = there.adopt_read(&handoff).await;
        assert!(matches!(wrong, Err(Error::WrongKind { .. })), "{wrong:?}");
        let adopted = there
            .semaphore("jobs", 2)
            .unwrap()
            .adopt(&handoff)
            .await
            .unwrap();
        assert_eq!((adopted.slot(), adopted.token()), (slot, token));
        // One permit left for others, not two.
        let theirs = other.semaphore("jobs", 2).unwrap();
        let last = theirs.try_acquire().await.unwrap();
        refused(theirs.try_acquire().await);
        last.release().await.unwrap();
        adopted.release().await.unwrap();
        here.settled().await;
        all_free(&theirs).await;
        nothing_locked(&other).await;
    })
    .await;
}

/// Lock-delay for semaphores: a permit whose holder vanished (handed off
/// to nobody) keeps its slot until its ttl and the delay have run out.
async fn a_vanished_permit_keeps_its_slot_for_the_lock_delay<H: Unsupported>() {
    if !supported::<H>("lock_delay") {
        return;
    }
    let servers = H::start();
    let other = servers.locker(options());
    let timing = common::Delayed::after_grant(other.backend().name());
    let holder = servers.locker(timing.options(timing.delay));
    bounded(LIMIT, async {
        let asked = Instant::now();
        let permit = holder
            .semaphore("vanished", 1)
            .unwrap()
            .acquire()
            .await
            .unwrap();
        let answered = Instant::now();
        let vanished = permit.hand_off();
        let semaphore = other.semaphore("vanished", 1).unwrap();
        let next = timing
            .outlasted(
                (asked, answered),
                timing.delay,
                async || semaphore.try_acquire().await,
                async |wait| semaphore.acquire_timeout(wait).await,
            )
            .await;
        assert!(next.token() > vanished.token());
        next.release().await.unwrap();
        nothing_locked(&other).await;
    })
    .await;
}

/// Every case for one configuration, as separate tests.
macro_rules! semaphore_cases {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn permits_are_bounded() {
                super::permits_are_bounded::<$harness>().await;
            }
            #[tokio::test]
            async fn a_permit_is_handed_off() {
                super::a_permit_is_handed_off::<$harness>().await;
            }
            #[tokio::test]
            async fn all_permits_out_refuses_a_try() {
                super::all_permits_out_refuses_a_try::<$harness>().await;
            }
            #[tokio::test]
            async fn a_released_permit_wakes_a_waiter() {
                super::a_released_permit_wakes_a_waiter::<$harness>().await;
            }
            #[tokio::test]
            async fn tokens_increase_per_semaphore() {
                super::tokens_increase_per_semaphore::<$harness>().await;
            }
            #[tokio::test]
            async fn a_crashed_holders_permit_comes_back() {
                super::a_crashed_holders_permit_comes_back::<$harness>().await;
            }
            #[tokio::test]
            async fn the_watchdog_keeps_a_permit() {
                super::the_watchdog_keeps_a_permit::<$harness>().await;
            }
            #[tokio::test]
            async fn the_count_is_checked() {
                super::the_count_is_checked::<$harness>().await;
            }
            #[tokio::test]
            async fn different_counts_are_refused() {
                super::different_counts_are_refused::<$harness>().await;
            }
            #[tokio::test]
            async fn a_name_is_one_kind_at_a_time() {
                super::a_name_is_one_kind_at_a_time::<$harness>().await;
            }
            #[tokio::test]
            async fn acquire_timeout_gives_up_in_time() {
                super::acquire_timeout_gives_up_in_time::<$harness>().await;
            }
            #[tokio::test]
            async fn scoped_permits() {
                super::scoped_permits::<$harness>().await;
            }
            #[tokio::test]
            async fn cut_off_acquires_leave_nothing() {
                super::cut_off_acquires_leave_nothing::<$harness>().await;
            }
            #[tokio::test]
            async fn a_vanished_permit_keeps_its_slot_for_the_lock_delay() {
                super::a_vanished_permit_keeps_its_slot_for_the_lock_delay::<$harness>().await;
            }
        }
    };
}

semaphore_cases!(redis_single, Redis<1>);
semaphore_cases!(redlock_five, Redis<5>);
semaphore_cases!(etcd_single, EtcdMembers<1>);
semaphore_cases!(etcd_three, EtcdMembers<3>);
