//! One suite of the semantics every backend shares, written against the
//! `Backend`-generic API only (`Locker`, `LockGuard`, `is_locked`,
//! `list_all`) and run against each configuration through a `Harness`.
//!
//! Configurations: Redis with one node, Redlock with five, etcd with one
//! member and with a cluster of three; and through `AnyBackend` (a Locker
//! made from a URL list at run time) Redlock with three and etcd with one
//! member. A case a backend cannot honour is
//! listed in `Harness::UNSUPPORTED` with the reason, and the suite says so
//! when it skips it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::harness::{ConfiguredEtcd, ConfiguredRedis, EtcdMembers, Harness, Redis};
use crate::common::{bounded, wait_until};
use fencelock::{Backend, Error, Handoff, LockOptions, Locker, Owner, RetryPolicy, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// Options for the suite: quick retries, a short node timeout.
fn options() -> LockOptions {
    common::options()
}

/// Whether `H` runs `case`; prints the reason when it does not.
fn supported<H: Harness>(case: &str) -> bool {
    match H::UNSUPPORTED.iter().find(|(c, _)| *c == case) {
        Some((_, why)) => {
            println!("{case}: not run on this backend: {why}");
            false
        }
        None => true,
    }
}

/// Nothing is locked any more, as the backend's own listing says.
async fn nothing_locked<B: Backend>(locker: &Locker<B>) {
    wait_until(Duration::from_secs(5), async || {
        locker.list_all("").await.unwrap().is_empty()
    })
    .await;
}

async fn mutual_exclusion<H: Harness>() {
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

async fn try_lock_is_refused_while_held<H: Harness>() {
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

async fn lock_timeout_gives_up_in_time<H: Harness>() {
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

async fn a_foreign_hold_cannot_be_taken_over<H: Harness>() {
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

async fn release_after_expiry_is_not_held<H: Harness>() {
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

async fn reentrancy_depth_and_limit<H: Harness>() {
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

async fn the_watchdog_keeps_the_lock<H: Harness>() {
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

async fn loss_is_signalled_when_the_servers_go_away<H: Harness>() {
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

async fn tokens_strictly_increase<H: Harness>() {
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

async fn cancelled_acquires_leave_nothing_behind<H: Harness>() {
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

/// Introspection and admin: a lock on a resource whose name has the
/// characters backends escape is seen by `inspect` and `list`, a forced
/// release frees it (its holder finds out), and tokens go on increasing.
async fn inspect_list_and_force_release<H: Harness>() {
    if !supported::<H>("inspect_list_and_force_release") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let owner = Owner::random();
    let holder = locker.with_owner(owner.clone());
    bounded(LIMIT, async {
        let odd = "jobs/a%2F/b";
        let guard = holder.lock(odd).await.unwrap();
        let other = holder.lock("jobs/c").await.unwrap();
        let unrelated = holder.lock("jobsx").await.unwrap();
        // Every node's answer is in (Redlock returns at a quorum).
        holder.settled().await;
        let info = locker.inspect(odd).await.unwrap();
        let agreed = info.agreed.clone().expect("a holder all agree on");
        assert_eq!(agreed.token, guard.token());
        assert_eq!(agreed.owner, owner.to_string());
        assert_eq!(info.locked_nodes(), info.nodes.len());
        assert!(locker.is_locked(odd).await.unwrap());
        let mut listed = locker.list_all("jobs/").await.unwrap();
        listed.sort();
        assert_eq!(listed, vec![odd.to_owned(), "jobs/c".to_owned()]);

        let forced = locker.force_release(odd).await.unwrap();
        assert!(forced.failures.is_empty(), "{forced:?}");
        assert_eq!(forced.removed, info.nodes.len());
        assert!(!locker.is_locked(odd).await.unwrap());
        assert!(matches!(
            guard.release().await,
            Err(Error::NotHeld { .. } | Error::Lost { .. })
        ));
        let next = locker.try_lock(odd).await.unwrap();
        assert!(next.token() > agreed.token, "tokens go on increasing");
        // Nothing forced on a free lock.
        next.release().await.unwrap();
        locker.settled().await;
        assert_eq!(locker.force_release(odd).await.unwrap().removed, 0);
        other.release().await.unwrap();
        unrelated.release().await.unwrap();
        locker.settled().await;
        nothing_locked(&locker).await;
    })
    .await;
}

async fn bad_input_is_rejected<H: Harness>() {
    if !supported::<H>("bad_input") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    bounded(LIMIT, async {
        for key in [String::new(), "k".repeat(fencelock::MAX_KEY_LEN + 1)] {
            assert!(matches!(
                locker.try_lock(&key).await,
                Err(Error::InvalidKey(_))
            ));
            assert!(matches!(locker.lock(&key).await, Err(Error::InvalidKey(_))));
        }
        let bad = options().ttl(Duration::ZERO);
        assert!(matches!(
            locker.with_options(bad),
            Err(Error::InvalidOptions(_))
        ));
        let spin = options().retry(
            RetryPolicy::default()
                .delay(Duration::ZERO)
                .jitter(Duration::ZERO),
        );
        assert!(matches!(
            locker.with_options(spin),
            Err(Error::InvalidOptions(_))
        ));
    })
    .await;
}

/// Lock-delay: a holder that vanishes (its lock handed off to nobody: no
/// release, no renewal) keeps the name from everyone else until its ttl
/// and the delay have run out, not much longer; without a delay, the name
/// comes back after the ttl as before. Both side by side, on two names.
async fn a_vanished_holder_keeps_the_name_for_the_lock_delay<H: Harness>() {
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
async fn a_renewed_holder_that_vanishes_keeps_the_name_for_the_lock_delay<H: Harness>() {
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
async fn a_release_frees_the_name_at_once_despite_the_lock_delay<H: Harness>() {
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

/// Every case for one configuration, as separate tests.
macro_rules! conformance {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mutual_exclusion() {
                super::mutual_exclusion::<$harness>().await;
            }
            #[tokio::test]
            async fn try_lock_is_refused_while_held() {
                super::try_lock_is_refused_while_held::<$harness>().await;
            }
            #[tokio::test]
            async fn lock_timeout_gives_up_in_time() {
                super::lock_timeout_gives_up_in_time::<$harness>().await;
            }
            #[tokio::test]
            async fn a_foreign_hold_cannot_be_taken_over() {
                super::a_foreign_hold_cannot_be_taken_over::<$harness>().await;
            }
            #[tokio::test]
            async fn release_after_expiry_is_not_held() {
                super::release_after_expiry_is_not_held::<$harness>().await;
            }
            #[tokio::test]
            async fn reentrancy_depth_and_limit() {
                super::reentrancy_depth_and_limit::<$harness>().await;
            }
            #[tokio::test]
            async fn the_watchdog_keeps_the_lock() {
                super::the_watchdog_keeps_the_lock::<$harness>().await;
            }
            #[tokio::test]
            async fn loss_is_signalled_when_the_servers_go_away() {
                super::loss_is_signalled_when_the_servers_go_away::<$harness>().await;
            }
            #[tokio::test]
            async fn tokens_strictly_increase() {
                super::tokens_strictly_increase::<$harness>().await;
            }
            #[tokio::test]
            async fn cancelled_acquires_leave_nothing_behind() {
                super::cancelled_acquires_leave_nothing_behind::<$harness>().await;
            }
            #[tokio::test]
            async fn inspect_list_and_force_release() {
                super::inspect_list_and_force_release::<$harness>().await;
            }
            #[tokio::test]
            async fn bad_input_is_rejected() {
                super::bad_input_is_rejected::<$harness>().await;
            }
            #[tokio::test]
            async fn a_vanished_holder_keeps_the_name_for_the_lock_delay() {
                super::a_vanished_holder_keeps_the_name_for_the_lock_delay::<$harness>().await;
            }
            #[tokio::test]
            async fn a_renewed_holder_that_vanishes_keeps_the_name_for_the_lock_delay() {
                super::a_renewed_holder_that_vanishes_keeps_the_name_for_the_lock_delay::<$harness>()
                    .await;
            }
            #[tokio::test]
            async fn a_release_frees_the_name_at_once_despite_the_lock_delay() {
                super::a_release_frees_the_name_at_once_despite_the_lock_delay::<$harness>()
                    .await;
            }
        }
    };
}

conformance!(redis_single, Redis<1>);
conformance!(redlock_five, Redis<5>);
conformance!(etcd_single, EtcdMembers<1>);
conformance!(etcd_three, EtcdMembers<3>);
// `AnyBackend` forwards every call: the suite holds for it unchanged.
// (scripts/test's runs against each Redis server of its matrix skip
// `etcd_single::`, and so `any_etcd_single::` too.)
conformance!(any_redlock_three, ConfiguredRedis<3>);
conformance!(any_etcd_single, ConfiguredEtcd<1>);
