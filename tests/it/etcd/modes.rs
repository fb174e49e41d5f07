//! Read-write locks and semaphores on etcd, against a real member: who
//! may hold together, writer preference, reentrancy and downgrade, kinds
//! that refuse each other, the permit bound, a vanished permit holder,
//! mismatched counts, tokens, and the admin calls on the new keys.
//!
//! Each Locker here has a client of its own, as a separate process would;
//! tasks of one Locker are separate owners too.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{bounded, etcd_locker, options, short_ttl_options, start_etcd, wait_until};
use fencelock::etcd_client::{Client, GetOptions};
use fencelock::{Error, Etcd, Locker};

const LIMIT: Duration = Duration::from_secs(60);

/// How many waiters queue for `resource` (tickets under its range).
async fn queued(cluster: &fencelock::testing::EtcdCluster, resource: &str) -> i64 {
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    client
        .get(
            format!("fencelock:{resource}/t/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

fn refused<T: std::fmt::Debug>(result: fencelock::Result<T>) -> bool {
    matches!(result, Err(Error::NotObtained { .. }))
}

#[tokio::test]
async fn readers_hold_together_and_writers_alone() {
    let cluster = start_etcd(1);
    let [a, b, c]: [Locker<Etcd>; 3] = std::array::from_fn(|_| etcd_locker(&cluster, options()));
    bounded(LIMIT, async {
        let r1 = a.try_read("shared").await.unwrap();
        let r2 = b.try_read("shared").await.unwrap();
        assert!(refused(c.try_write("shared").await));
        r1.release().await.unwrap();
        assert!(refused(c.try_write("shared").await), "one reader is left");
        r2.release().await.unwrap();

        let w = c.try_write("shared").await.unwrap();
        assert!(refused(a.try_read("shared").await));
        assert!(refused(b.try_write("shared").await));
        w.release().await.unwrap();
        a.try_read("shared").await.unwrap().release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn write_tokens_are_above_every_earlier_hold_and_reads_above_writes() {
    let cluster = start_etcd(1);
    let [a, b, c]: [Locker<Etcd>; 3] = std::array::from_fn(|_| etcd_locker(&cluster, options()));
    bounded(LIMIT, async {
        let r1 = a.try_read("fenced").await.unwrap();
        let r2 = b.try_read("fenced").await.unwrap();
        let highest_read = r1.token().max(r2.token());
        r1.release().await.unwrap();
        r2.release().await.unwrap();
        let w1 = c.try_write("fenced").await.unwrap();
        assert!(w1.token() > highest_read);
        let w1_token = w1.token();
        w1.release().await.unwrap();
        let w2 = a.try_write("fenced").await.unwrap();
        assert!(w2.token() > w1_token);
        let w2_token = w2.token();
        w2.release().await.unwrap();
        let r3 = b.try_read("fenced").await.unwrap();
        assert!(r3.token() > w2_token);
        r3.release().await.unwrap();
    })
    .await;
}

/// A writer that waits keeps new readers out, while the reader that
/// holds keeps its hold (and may nest in it); the writer goes next, and
/// the refused reader after it.
#[tokio::test]
async fn a_waiting_writer_blocks_new_readers_not_current_ones() {
    let cluster = start_etcd(1);
    // A long ttl: waiters poll only after it, so the bound holds only if
    // each release woke the waiter whose turn it was.
    let slow_poll = options().ttl(Duration::from_secs(30));
    let [a, b, c]: [Locker<Etcd>; 3] =
        std::array::from_fn(|_| etcd_locker(&cluster, slow_poll.clone()));
    bounded(Duration::from_secs(20), async {
        let held = a.try_read("pref").await.unwrap();
        let writer = tokio::spawn(async move {
            let w = b.write("pref").await.unwrap();
            let token = w.token();
            w.release().await.unwrap();
            token
        });
        wait_until(Duration::from_secs(10), async || {
            queued(&cluster, "pref").await >= 1
        })
        .await;
        assert!(refused(c.try_read("pref").await), "a new reader waits");
        // The reader that holds keeps its hold and may nest in it.
        let nested = a.try_read("pref").await.unwrap();
        assert_eq!(nested.token(), held.token());
        assert!(held.is_held());
        // A reader that waits from now on comes after the writer.
        let late = {
            let c = c.clone();
            tokio::spawn(async move {
                let r = c.read("pref").await.unwrap();
                let token = r.token();
                r.release().await.unwrap();
                token
            })
        };
        wait_until(Duration::from_secs(10), async || {
            queued(&cluster, "pref").await >= 2
        })
        .await;
        let read_token = held.token();
        nested.release().await.unwrap();
        held.release().await.unwrap();
        let written = writer.await.unwrap();
        assert!(written > read_token);
        let read = late.await.unwrap();
        assert!(read > written, "the late reader went after the writer");
    })
    .await;
}

#[tokio::test]
async fn nesting_downgrade_and_refused_upgrade() {
    let cluster = start_etcd(1);
    let a = etcd_locker(&cluster, options().max_reentrancy(3));
    let b = etcd_locker(&cluster, options());
    let c = etcd_locker(&cluster, options());
    bounded(LIMIT, async {
        let w = a.try_write("nest").await.unwrap();
        let w2 = a.try_write("nest").await.unwrap();
        let r = a.try_read("nest").await.unwrap();
        assert_eq!((w2.token(), r.token()), (w.token(), w.token()));
        assert!(matches!(
            a.try_read("nest").await,
            Err(Error::ReentrancyLimit { limit: 3, .. })
        ));
        assert!(refused(b.try_read("nest").await));
        // Holds nested in it: no downgrade, and the write guard comes back.
        let err = w.downgrade().await.unwrap_err();
        assert!(
            matches!(err.error(), Error::DowngradeRefused { .. }),
            "{err}"
        );
        let w = err.into_guard();
        r.release().await.unwrap();
        w2.release().await.unwrap();
        let token = w.token();
        let r = w.downgrade().await.unwrap();
        assert_eq!(r.token(), token, "a downgrade keeps the token");
        // Readers join at once; writers still wait; no upgrade.
        let joined = b.try_read("nest").await.unwrap();
        assert!(joined.token() > token);
        assert!(refused(c.try_write("nest").await));
        assert!(matches!(
            a.try_write("nest").await,
            Err(Error::UpgradeRefused { .. })
        ));
        // The downgraded hold renews, nests and releases as a read.
        r.extend(Duration::from_secs(10)).await.unwrap();
        let inner = a.try_read("nest").await.unwrap();
        assert_eq!(inner.token(), token);
        inner.release().await.unwrap();
        r.release().await.unwrap();
        joined.release().await.unwrap();
        assert!(!a.is_locked("nest").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn a_name_is_one_kind_at_a_time_both_ways() {
    let cluster = start_etcd(1);
    let a = etcd_locker(&cluster, options());
    let b = etcd_locker(&cluster, options());
    let wrong = |r: fencelock::Result<()>, as_: &str| match r {
        Err(Error::WrongKind { in_use_as, .. }) => assert_eq!(in_use_as, as_),
        other => panic!("expected WrongKind({as_}), got {other:?}"),
    };
    bounded(LIMIT, async {
        let lock = a.try_lock("k-lock").await.unwrap();
        wrong(b.try_read("k-lock").await.map(drop), "lock");
        wrong(b.try_write("k-lock").await.map(drop), "lock");
        let sem = b.semaphore("k-lock", 2).unwrap();
        wrong(sem.try_acquire().await.map(drop), "lock");
        lock.release().await.unwrap();

        let read = a.try_read("k-rw").await.unwrap();
        wrong(b.try_lock("k-rw").await.map(drop), "rwlock");
        let sem = b.semaphore("k-rw", 2).unwrap();
        wrong(sem.try_acquire().await.map(drop), "rwlock");
        read.release().await.unwrap();
        let write = a.try_write("k-rw").await.unwrap();
        wrong(b.try_lock("k-rw").await.map(drop), "rwlock");
        write.release().await.unwrap();

        let permit = a
            .semaphore("k-sem", 2)
            .unwrap()
            .try_acquire()
            .await
            .unwrap();
        wrong(b.try_lock("k-sem").await.map(drop), "semaphore");
        wrong(b.try_read("k-sem").await.map(drop), "semaphore");
        wrong(b.try_write("k-sem").await.map(drop), "semaphore");
        permit.release().await.unwrap();

        // Idle again: any kind may take it.
        b.try_lock("k-sem").await.unwrap().release().await.unwrap();
        b.try_write("k-lock")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    })
    .await;
}

/// 32 tasks on four Lockers share a semaphore of 4: never more than 4
/// hold at once, no two live permits share a slot, and all get theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_tasks_never_exceed_four_permits() {
    let cluster = start_etcd(1);
    // Waiters that miss the news of a release poll only after a ttl:
    // with a long one, the bound below fails if any wake-up went unheard.
    let slow_poll = options().ttl(Duration::from_secs(30));
    let lockers: Vec<Locker<Etcd>> = (0..4)
        .map(|_| etcd_locker(&cluster, slow_poll.clone()))
        .collect();
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(Mutex::new(HashSet::new()));
    bounded(Duration::from_secs(20), async {
        let mut tasks = Vec::new();
        for i in 0..32 {
            let sem = lockers[i % 4].semaphore("pool", 4).unwrap();
            let (now, most, done, slots) = (now.clone(), most.clone(), done.clone(), slots.clone());
            tasks.push(tokio::spawn(async move {
                let permit = sem.acquire().await.unwrap();
                assert!(permit.slot() < 4);
                assert!(
                    slots.lock().unwrap().insert(permit.slot()),
                    "slot {} given twice",
                    permit.slot()
                );
                let holding = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(holding, Ordering::SeqCst);
                // Held a moment, so that holds overlap.
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                slots.lock().unwrap().remove(&permit.slot());
                permit.release().await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
    assert_eq!(done.load(Ordering::SeqCst), 32);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} permits held at once");
    assert!(most >= 2, "holds never overlapped ({most})");
}

/// A permit whose holder vanished (the guard forgotten, no watchdog)
/// comes back when its lease runs out; meanwhile it counts.
#[tokio::test]
async fn a_vanished_holders_permit_returns_after_its_ttl() {
    let cluster = start_etcd(1);
    let gone = etcd_locker(&cluster, short_ttl_options());
    // A long ttl for the waiter: its fallback poll comes too late for the
    // bound, so the permit's expiry must wake it.
    let other = etcd_locker(&cluster, options().ttl(Duration::from_secs(30)));
    bounded(Duration::from_secs(20), async {
        let permit = gone
            .semaphore("lonely", 1)
            .unwrap()
            .acquire()
            .await
            .unwrap();
        let taken = Instant::now();
        std::mem::forget(permit);
        let sem = other.semaphore("lonely", 1).unwrap();
        assert!(refused(sem.try_acquire().await));
        let back = sem.acquire_timeout(Duration::from_secs(15)).await.unwrap();
        assert!(taken.elapsed() >= Duration::from_millis(300));
        back.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn another_count_is_a_permits_mismatch_and_tokens_increase() {
    let cluster = start_etcd(1);
    let a = etcd_locker(&cluster, options());
    let b = etcd_locker(&cluster, options());
    bounded(LIMIT, async {
        let three = a.semaphore("counted", 3).unwrap();
        let first = three.try_acquire().await.unwrap();
        let second = three.try_acquire().await.unwrap();
        assert_ne!(first.slot(), second.slot());
        assert!(second.token() > first.token());
        match b.semaphore("counted", 2).unwrap().try_acquire().await {
            Err(Error::PermitsMismatch { ours, theirs, .. }) => assert_eq!((ours, theirs), (2, 3)),
            other => panic!("expected PermitsMismatch, got {other:?}"),
        }
        let third = three.try_acquire().await.unwrap();
        assert!(refused(
            b.semaphore("counted", 3).unwrap().try_acquire().await
        ));
        let mut last = third.token();
        for p in [first, second, third] {
            p.release().await.unwrap();
        }
        // Idle: another count may take it now, and tokens keep rising.
        for _ in 0..3 {
            let p = b
                .semaphore("counted", 2)
                .unwrap()
                .try_acquire()
                .await
                .unwrap();
            assert!(p.token() > last);
            last = p.token();
            p.release().await.unwrap();
        }
    })
    .await;
}

/// Listing sees read, write and permit holders, inspect reports one of
/// them, and a forced release removes them all.
#[tokio::test]
async fn admin_sees_and_removes_the_new_kinds() {
    let cluster = start_etcd(1);
    let a = etcd_locker(&cluster, options());
    let b = etcd_locker(&cluster, options());
    bounded(LIMIT, async {
        let r1 = a.try_read("adm-rw").await.unwrap();
        let r2 = b.try_read("adm-rw").await.unwrap();
        let w = a.try_write("adm-w").await.unwrap();
        let p = a
            .semaphore("adm-sem", 2)
            .unwrap()
            .try_acquire()
            .await
            .unwrap();
        let listed = a.list_all("adm-").await.unwrap();
        assert_eq!(listed, vec!["adm-rw", "adm-sem", "adm-w"]);
        let info = a.inspect("adm-rw").await.unwrap();
        let agreed = info.agreed.expect("a holder");
        assert_eq!(agreed.token, r1.token().min(r2.token()));
        let info = a.inspect("adm-sem").await.unwrap();
        assert_eq!(info.agreed.expect("a holder").token, p.token());
        for key in ["adm-rw", "adm-w", "adm-sem"] {
            assert_eq!(a.force_release(key).await.unwrap().removed, 1, "{key}");
            assert!(!a.is_locked(key).await.unwrap(), "{key}");
        }
        assert!(a.list_all("adm-").await.unwrap().is_empty());
        let highest = r1.token().max(r2.token());
        assert!(matches!(r1.release().await, Err(Error::NotHeld { .. })));
        assert!(matches!(r2.release().await, Err(Error::NotHeld { .. })));
        assert!(matches!(w.release().await, Err(Error::NotHeld { .. })));
        assert!(matches!(p.release().await, Err(Error::NotHeld { .. })));
        // A fresh writer gets a token above the forced-out ones.
        let again = b.try_write("adm-rw").await.unwrap();
        assert!(again.token() > highest);
        again.release().await.unwrap();
    })
    .await;
}
