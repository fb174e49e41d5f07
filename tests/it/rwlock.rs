//! The read-write lock, against real servers, on every backend
//! configuration of the conformance suite (Redis with one node, Redlock
//! with five, etcd with one member and with three): writers exclude
//! everyone, readers share, a waiting writer keeps new readers out, holds
//! nest (but a read never becomes a write), a write hold downgrades, the
//! tokens follow the fencing rule, a name is one kind at a time, and a
//! cut-off read or write leaves nothing behind.
//!
//! A case a configuration cannot honour is listed in
//! [`Unsupported::RWLOCK`] with the reason, and the suite says so when it
//! skips it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Barrier, oneshot, watch};

use crate::common;
use crate::common::harness::{EtcdMembers, Harness, Redis};
use crate::common::{bounded, wait_until};
use fencelock::{Backend, Error, Handoff, LockOptions, Locker, Owner, RetryPolicy, Watchdog};

pub(crate) const LIMIT: Duration = Duration::from_secs(60);
/// How long a cut-off operation's cleanup or a waiter's wake-up may take
/// before the test calls it a leak or a hang: far above a few round trips.
pub(crate) const SOON: Duration = Duration::from_secs(10);

/// The cases of this module and of `semaphore` that a configuration cannot
/// honour, each with the reason (as `Harness::UNSUPPORTED` for
/// `conformance`).
pub(crate) trait Unsupported: Harness {
    const RWLOCK: &'static [(&'static str, &'static str)] = &[];
    const SEMAPHORE: &'static [(&'static str, &'static str)] = &[];
}

impl<const N: usize> Unsupported for Redis<N> {}
impl<const N: usize> Unsupported for EtcdMembers<N> {}

/// Whether `case` runs, given the configuration's list; prints the reason
/// when it does not.
pub(crate) fn runs(unsupported: &[(&str, &str)], case: &str) -> bool {
    match unsupported.iter().find(|(c, _)| *c == case) {
        Some((_, why)) => {
            println!("{case}: not run on this backend: {why}");
            false
        }
        None => true,
    }
}

fn supported<H: Unsupported>(case: &str) -> bool {
    runs(H::RWLOCK, case)
}

/// Options for the suite: quick retries, a short node timeout.
pub(crate) fn options() -> LockOptions {
    common::options()
}

/// Nothing is locked any more, as the backend's own listing says, once the
/// background work of `locker` is done.
pub(crate) async fn nothing_locked<B: Backend>(locker: &Locker<B>) {
    locker.settled().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = locker.list_all("").await.unwrap();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still locked after 5 s: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `op` for at most `polls` scheduler rounds, then drops it: `None`
/// when it was cut off. Each round lets the I/O driver run once, so the cut
/// lands between round trips (as in `cancellation`).
pub(crate) async fn within<F: Future>(polls: usize, op: F) -> Option<F::Output> {
    let mut op = std::pin::pin!(op);
    if polls == 0 {
        return futures::FutureExt::now_or_never(op.as_mut());
    }
    for _ in 0..polls {
        tokio::select! {
            biased;
            out = op.as_mut() => return Some(out),
            () = tokio::task::yield_now() => {}
        }
    }
    None
}

/// How many scheduler rounds `op` takes to finish.
pub(crate) async fn rounds<F: Future>(op: F) -> (F::Output, usize) {
    let mut op = std::pin::pin!(op);
    let mut n = 0;
    loop {
        tokio::select! {
            biased;
            out = op.as_mut() => return (out, n),
            () = tokio::task::yield_now() => n += 1,
        }
    }
}

/// The fewest rounds any of `samples` took, at least 1. Not the median
/// or the largest: a first call on a new connection, or a busy moment,
/// takes many times the usual rounds, and on a loaded machine replies
/// arrive between polls, so the same call later takes fewer rounds than
/// while calibrating; cuts past an operation's end cut nothing, and the
/// suite ran full (its check that most cuts land failed with 5 of 22).
pub(crate) fn typical(samples: &[usize]) -> usize {
    samples.iter().copied().min().unwrap_or(0).max(1)
}

/// Where to cut an operation that typically takes `span` rounds: at every
/// round up to 64 (where most of an operation's awaits are on a fast
/// backend, which is all of it there), then every quarter more up to
/// `span`: on a loaded machine an etcd acquire takes thousands of rounds,
/// mostly waiting on the network, and cutting at each would take minutes.
pub(crate) fn cut_points(span: usize) -> Vec<usize> {
    let mut points: Vec<usize> = (0..=span.min(64)).collect();
    let mut t = 64;
    while t < span {
        t = (t + t / 4).min(span);
        points.push(t);
    }
    points
}

/// Asserts that `result` is the refusal of a held lock.
#[track_caller]
pub(crate) fn refused<T: std::fmt::Debug>(result: fencelock::Result<T>) {
    assert!(
        matches!(result, Err(Error::NotObtained { .. })),
        "expected NotObtained, got {result:?}"
    );
}

/// The waiters' retry delay: any wake-up far below it came from the
/// backend's news of a release.
pub(crate) const RETRY: Duration = Duration::from_secs(10);
/// How soon after a release a woken waiter must hold the lock: loose for a
/// loaded machine, and still a tenth of the retry delay.
pub(crate) const WAKE: Duration = Duration::from_secs(1);

/// Waiters that would try again only every 10 s on their own.
pub(crate) fn slow_retry() -> LockOptions {
    options().retry(RetryPolicy::default().delay(RETRY).jitter(Duration::ZERO))
}

/// Waits until `n` waiters are queued for `key`, on a backend that keeps a
/// queue (etcd); one that does not (Redis) shows no waiters, and the test
/// goes on at once (its waiters may then not have tried yet, which only
/// makes the case weaker).
pub(crate) async fn until_queued<B: Backend>(locker: &Locker<B>, key: &str, n: usize) {
    wait_until(SOON, async || {
        locker
            .inspect(key)
            .await
            .unwrap()
            .queued
            .is_none_or(|queued| queued >= n)
    })
    .await;
}

/// Takes a read hold of `key` and gives it back at once; panics if either
/// fails.
async fn read_once<B: Backend>(locker: &Locker<B>, key: &str) {
    locker.try_read(key).await.unwrap().release().await.unwrap();
}

/// Takes the write hold of `key` and gives it back at once; panics if
/// either fails.
async fn write_once<B: Backend>(locker: &Locker<B>, key: &str) {
    locker
        .try_write(key)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// Waits until a writer waiting for `key` keeps new readers out: `probe`'s
/// `try_read` is refused. A read granted meanwhile (the writer has not
/// announced itself yet) is given back at once. Only call it while the
/// write hold cannot be granted (readers hold the lock), so that a refusal
/// can only come from the waiting writer.
pub(crate) async fn until_a_writer_waits<B: Backend>(probe: &Locker<B>, key: &str) {
    wait_until(SOON, async || match probe.try_read(key).await {
        Ok(guard) => {
            guard.release().await.unwrap();
            false
        }
        Err(Error::NotObtained { .. }) => true,
        Err(e) => panic!("probe read of {key:?}: {e}"),
    })
    .await;
}

/// Writers never overlap with each other nor with readers, and each
/// writer's token is above the one before it.
async fn writers_are_mutually_exclusive<H: Unsupported>() {
    if !supported::<H>("writers_exclusive") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let reader_locker = servers.locker(options());
    bounded(LIMIT, async {
        let writers = Arc::new(AtomicUsize::new(0));
        let readers = Arc::new(AtomicUsize::new(0));
        let entries = Arc::new(AtomicUsize::new(0));
        let last_write = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (locker, writers, readers, entries, last_write) = (
                locker.clone(),
                Arc::clone(&writers),
                Arc::clone(&readers),
                Arc::clone(&entries),
                Arc::clone(&last_write),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let guard = locker.write("shared").await.unwrap();
                    assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0, "two writers");
                    assert_eq!(readers.load(Ordering::SeqCst), 0, "a reader with a writer");
                    let token = guard.token().get();
                    let before = last_write.swap(token, Ordering::SeqCst);
                    assert!(token > before, "write token {token} after {before}");
                    entries.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    writers.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            }));
        }
        for _ in 0..3 {
            let (locker, writers, readers) = (
                reader_locker.clone(),
                Arc::clone(&writers),
                Arc::clone(&readers),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let guard = locker.read("shared").await.unwrap();
                    readers.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(writers.load(Ordering::SeqCst), 0, "a writer with a reader");
                    tokio::task::yield_now().await;
                    readers.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(entries.load(Ordering::SeqCst), 80);
        reader_locker.settled().await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// Several readers, each another client, hold the lock at the same time:
/// they all meet at a barrier inside their read holds, and a writer is
/// refused meanwhile.
async fn readers_hold_together<H: Unsupported>() {
    if !supported::<H>("readers_together") {
        return;
    }
    const READERS: usize = 5;
    let servers = H::start();
    let writer = servers.locker(options());
    bounded(LIMIT, async {
        let inside = Arc::new(Barrier::new(READERS + 1));
        let (leave, may_leave) = watch::channel(false);
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let locker = servers.locker(options());
                let (inside, mut may_leave) = (Arc::clone(&inside), may_leave.clone());
                tokio::spawn(async move {
                    let guard = locker.read("together").await.unwrap();
                    tokio::time::timeout(SOON, inside.wait())
                        .await
                        .expect("the readers were never all inside at once");
                    may_leave.wait_for(|&go| go).await.unwrap();
                    assert!(guard.is_held());
                    guard.release().await.unwrap();
                    locker.settled().await;
                })
            })
            .collect();
        tokio::time::timeout(SOON, inside.wait())
            .await
            .expect("the readers were never all inside at once");
        refused(writer.try_write("together").await);
        leave.send(true).unwrap();
        for reader in readers {
            reader.await.unwrap();
        }
        write_once(&writer, "together").await;
        nothing_locked(&writer).await;
    })
    .await;
}

/// A writer waits while readers hold the lock, stays out until the last of
/// them has released, and then gets in with a token above theirs.
async fn a_writer_waits_for_the_readers<H: Unsupported>() {
    if !supported::<H>("writer_waits_for_readers") {
        return;
    }
    let servers = H::start();
    let (first, second) = (servers.locker(options()), servers.locker(options()));
    let writer = servers.locker(options());
    let probe = servers.locker(options());
    bounded(LIMIT, async {
        let r1 = first.read("queue").await.unwrap();
        let r2 = second.read("queue").await.unwrap();
        let readers_top = r1.token().max(r2.token());
        let entered = Arc::new(AtomicBool::new(false));
        let waiting = {
            let entered = Arc::clone(&entered);
            tokio::spawn(async move {
                let guard = writer.write("queue").await.unwrap();
                entered.store(true, Ordering::SeqCst);
                let token = guard.token();
                guard.release().await.unwrap();
                writer.settled().await;
                token
            })
        };
        until_a_writer_waits(&probe, "queue").await;
        assert!(
            !entered.load(Ordering::SeqCst),
            "a writer in with two readers"
        );
        r1.release().await.unwrap();
        // One reader still holds it.
        refused(probe.try_write("queue").await);
        assert!(!entered.load(Ordering::SeqCst), "a writer in with a reader");
        r2.release().await.unwrap();
        let token = tokio::time::timeout(SOON, waiting)
            .await
            .expect("the writer did not get in once the readers left")
            .unwrap();
        assert!(
            token > readers_top,
            "write token {token:?} not above the readers' {readers_top:?}"
        );
        nothing_locked(&probe).await;
    })
    .await;
}

/// Writer preference: while a writer waits, a new reader is refused even
/// though only readers hold the lock; when they leave, the writer gets in
/// before the new reader.
async fn a_waiting_writer_keeps_new_readers_out<H: Unsupported>() {
    if !supported::<H>("writer_preference") {
        return;
    }
    let servers = H::start();
    let first = servers.locker(options());
    let writer = servers.locker(options());
    let late = servers.locker(options());
    bounded(LIMIT, async {
        let r1 = first.read("preferred").await.unwrap();
        // Before any writer waits, a second reader joins.
        read_once(&late, "preferred").await;

        let order = Arc::new(Mutex::new(Vec::new()));
        let (entered, writer_in) = oneshot::channel();
        let (leave, may_leave) = oneshot::channel::<()>();
        let waiting_writer = {
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                let guard = writer.write("preferred").await.unwrap();
                order.lock().unwrap().push("writer");
                entered.send(guard.token()).unwrap();
                may_leave.await.unwrap();
                guard.release().await.unwrap();
                writer.settled().await;
            })
        };
        until_a_writer_waits(&late, "preferred").await;
        // Not a passing refusal: the writer keeps readers out while it waits.
        refused(late.try_read("preferred").await);
        refused(late.try_read("preferred").await);

        let new_reader = {
            let (late, order) = (late.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let guard = late.read("preferred").await.unwrap();
                order.lock().unwrap().push("reader");
                let token = guard.token();
                guard.release().await.unwrap();
                token
            })
        };
        let r1_token = r1.token();
        r1.release().await.unwrap();
        let write_token = tokio::time::timeout(SOON, writer_in)
            .await
            .expect("the waiting writer did not get in once the reader left")
            .unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["writer"],
            "a new reader went first"
        );
        assert!(write_token > r1_token);
        leave.send(()).unwrap();
        let read_token = tokio::time::timeout(SOON, new_reader)
            .await
            .expect("the new reader did not get in after the writer")
            .unwrap();
        waiting_writer.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["writer", "reader"]);
        assert!(read_token > write_token);
        nothing_locked(&late).await;
    })
    .await;
}

/// A release wakes the waiters at once, long before their retry delay: a
/// writer waiting for a reader, readers waiting for a writer.
async fn a_release_wakes_the_waiters<H: Unsupported>() {
    if !supported::<H>("wake_on_release") {
        return;
    }
    let servers = H::start();
    let holder = servers.locker(options());
    let probe = servers.locker(options());
    let (writer, reader) = (servers.locker(slow_retry()), servers.locker(slow_retry()));
    bounded(LIMIT, async {
        let read = holder.read("woken").await.unwrap();
        let waiting = tokio::spawn(async move {
            let guard = writer.write_timeout("woken", 3 * RETRY).await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            writer.settled().await;
            at
        });
        until_a_writer_waits(&probe, "woken").await;
        let released = Instant::now();
        read.release().await.unwrap();
        let woken = waiting.await.unwrap() - released;
        assert!(
            woken < WAKE,
            "the writer got in {woken:?} after the release"
        );

        let write = holder.write("woken").await.unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move {
                    let guard = reader.read_timeout("woken", 3 * RETRY).await.unwrap();
                    let at = Instant::now();
                    guard.release().await.unwrap();
                    at
                })
            })
            .collect();
        until_queued(&holder, "woken", 2).await;
        let released = Instant::now();
        write.release().await.unwrap();
        for reader in waiting {
            let woken = reader.await.unwrap() - released;
            assert!(woken < WAKE, "a reader got in {woken:?} after the release");
        }
        reader.settled().await;
        nothing_locked(&holder).await;
    })
    .await;
}

/// One owner nests: a read in a read, a read in a write and a write in a
/// write, each with the outer token; the outer hold keeps others out until
/// it is released itself.
async fn holds_nest_with_the_outer_token<H: Unsupported>() {
    if !supported::<H>("reentrancy") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        // A read in a read.
        let outer = locker.read("nested").await.unwrap();
        let inner = locker.try_read("nested").await.unwrap();
        assert_eq!(inner.token(), outer.token());
        read_once(&other, "nested").await;
        refused(other.try_write("nested").await);
        inner.release().await.unwrap();
        assert!(outer.is_held());
        refused(other.try_write("nested").await);
        outer.release().await.unwrap();

        // A read and a write in a write.
        let outer = locker.write("nested").await.unwrap();
        let read = locker.read("nested").await.unwrap();
        let write = locker.try_write("nested").await.unwrap();
        assert_eq!(read.token(), outer.token());
        assert_eq!(write.token(), outer.token());
        refused(other.try_read("nested").await);
        write.release().await.unwrap();
        read.release().await.unwrap();
        assert!(outer.is_held());
        refused(other.try_read("nested").await);
        refused(other.try_write("nested").await);
        let outer_token = outer.token();
        outer.release().await.unwrap();
        let next = other.try_write("nested").await.unwrap();
        assert!(next.token() > outer_token);
        next.release().await.unwrap();
        nothing_locked(&locker).await;
    })
    .await;
}

/// A write hold downgrades to a read hold with the same token: another
/// reader gets in at once, another writer does not. With a hold nested in
/// it, the downgrade is refused and the write hold handed back intact.
async fn a_write_hold_downgrades<H: Unsupported>() {
    if !supported::<H>("downgrade") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    let writer = servers.locker(options());
    bounded(LIMIT, async {
        let write = locker.write("lowered").await.unwrap();
        let token = write.token();
        let read = write.downgrade().await.unwrap();
        assert_eq!(read.token(), token);
        assert!(read.is_held());
        let joined = other.try_read("lowered").await.unwrap();
        assert!(joined.token() > token, "a read after the write");
        refused(writer.try_write("lowered").await);
        joined.release().await.unwrap();
        refused(writer.try_write("lowered").await);
        read.release().await.unwrap();
        let next = other.try_write("lowered").await.unwrap();
        assert!(next.token() > token);
        next.release().await.unwrap();

        // Refused while a hold is nested in it.
        let write = locker.write("lowered").await.unwrap();
        let nested = locker.read("lowered").await.unwrap();
        let failed = write.downgrade().await.unwrap_err();
        assert!(
            matches!(failed.error(), Error::DowngradeRefused { nested: 1, .. }),
            "{failed:?}"
        );
        let write = failed.into_guard();
        assert!(write.is_held());
        refused(other.try_read("lowered").await);
        nested.release().await.unwrap();
        let read = write.downgrade().await.unwrap();
        read_once(&other, "lowered").await;
        read.release().await.unwrap();
        nothing_locked(&locker).await;
    })
    .await;
}

/// A read hold never becomes a write hold: the same owner asking to write
/// is refused at once, by every way of asking, and the read hold stays.
async fn an_upgrade_is_refused_at_once<H: Unsupported>() {
    if !supported::<H>("upgrade_refused") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let read = locker.read("raised").await.unwrap();
        let asked = Instant::now();
        let tried = locker.try_write("raised").await;
        assert!(
            matches!(tried, Err(Error::UpgradeRefused { .. })),
            "{tried:?}"
        );
        let waited = locker.write("raised").await;
        assert!(
            matches!(waited, Err(Error::UpgradeRefused { .. })),
            "{waited:?}"
        );
        let timed = locker.write_timeout("raised", SOON).await;
        assert!(
            matches!(timed, Err(Error::UpgradeRefused { .. })),
            "{timed:?}"
        );
        assert!(asked.elapsed() < Duration::from_secs(1), "waited to refuse");
        assert!(read.is_held());
        read_once(&other, "raised").await;
        refused(other.try_write("raised").await);
        read.release().await.unwrap();
        write_once(&locker, "raised").await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// The fencing rule: a write's token is above every earlier hold's,
/// readers' included; a read's is above every earlier write's.
async fn tokens_follow_the_fencing_rule<H: Unsupported>() {
    if !supported::<H>("tokens") {
        return;
    }
    let servers = H::start();
    let (a, b) = (servers.locker(options()), servers.locker(options()));
    bounded(LIMIT, async {
        let mut any = None;
        for round in 0..10 {
            let write = a.write("fenced").await.unwrap();
            assert!(
                Some(write.token()) > any,
                "round {round}: write {:?} after a hold with {any:?}",
                write.token()
            );
            let last_write = write.token();
            any = Some(last_write);
            write.release().await.unwrap();

            // Two readers at once, then one alone.
            let r1 = a.read("fenced").await.unwrap();
            let r2 = b.read("fenced").await.unwrap();
            let r1_token = r1.token();
            r1.release().await.unwrap();
            let r3 = a.read("fenced").await.unwrap();
            for read in [r1_token, r2.token(), r3.token()] {
                assert!(
                    read > last_write,
                    "round {round}: read {read:?} after a write with {last_write:?}"
                );
                any = any.max(Some(read));
            }
            r2.release().await.unwrap();
            r3.release().await.unwrap();
        }
        nothing_locked(&a).await;
    })
    .await;
}

/// One name, one kind at a time: a read-write lock's name cannot be
/// locked, and a lock's name cannot be read or written, by another client
/// or by the holder itself; waiting calls say so at once too.
async fn a_name_is_one_kind_at_a_time<H: Unsupported>() {
    if !supported::<H>("wrong_kind") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
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
        let lock = locker.lock("kind").await.unwrap();
        for client in [&locker, &other] {
            wrong(client.try_read("kind").await, "lock", "rwlock");
            wrong(client.try_write("kind").await, "lock", "rwlock");
            wrong(client.read("kind").await, "lock", "rwlock");
            wrong(client.write_timeout("kind", SOON).await, "lock", "rwlock");
        }
        lock.release().await.unwrap();

        let refused_as_a_lock = async || {
            for client in [&locker, &other] {
                wrong(client.try_lock("kind").await, "rwlock", "lock");
                wrong(client.lock("kind").await, "rwlock", "lock");
                wrong(client.lock_timeout("kind", SOON).await, "rwlock", "lock");
            }
        };
        let read = locker.read("kind").await.unwrap();
        refused_as_a_lock().await;
        read.release().await.unwrap();
        let write = locker.write("kind").await.unwrap();
        refused_as_a_lock().await;
        write.release().await.unwrap();
        assert!(asked.elapsed() < SOON, "a wrong kind was waited for");
        // Free again: any kind may have the name.
        common::lock_once(&other, "kind").await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// `with_read` and `with_write` hold the lock around the work, hand back
/// its value, and release on the way out.
async fn scoped_reads_and_writes<H: Unsupported>() {
    if !supported::<H>("scoped") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let token = locker
            .with_write("scoped", async |guard| {
                assert!(guard.is_held());
                refused(other.try_read("scoped").await);
                guard.token()
            })
            .await
            .unwrap();
        let (read_token, other_token) = locker
            .with_read("scoped", async |guard| {
                assert!(guard.is_held());
                let joined = other.try_read("scoped").await.unwrap();
                let joined_token = joined.token();
                joined.release().await.unwrap();
                refused(other.try_write("scoped").await);
                (guard.token(), joined_token)
            })
            .await
            .unwrap();
        assert!(read_token > token);
        assert!(other_token > token);
        let next = other.try_write("scoped").await.unwrap();
        assert!(next.token() > read_token.max(other_token));
        next.release().await.unwrap();
        nothing_locked(&locker).await;
    })
    .await;
}

/// Rounds (a little more than) a read and a write take here: where to
/// cut them.
async fn rounds_of_read_and_write<B: Backend>(locker: &Locker<B>) -> usize {
    let (mut reads, mut writes) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        let (guard, n) = rounds(locker.read("calibrate")).await;
        guard.unwrap().release().await.unwrap();
        reads.push(n);
        let (guard, n) = rounds(locker.write("calibrate")).await;
        guard.unwrap().release().await.unwrap();
        writes.push(n);
    }
    let span = typical(&reads).max(typical(&writes)) + 2;
    eprintln!("rounds: read {reads:?}, write {writes:?}; cutting up to {span}");
    span
}

/// Cancellation: reads and writes cut off at every scheduler round (free,
/// nested in a held write, and waiting behind another holder) leave no
/// hold and no waiter behind.
async fn cut_off_reads_and_writes_leave_nothing<H: Unsupported>() {
    if !supported::<H>("cancellation") {
        return;
    }
    let servers = H::start();
    // A long ttl, so that a leaked hold is seen (not expired), and a
    // watchdog that renews often, so that cuts land mid-renewal too.
    let cut_options = options()
        .ttl(Duration::from_secs(30))
        .watchdog(Watchdog::Every(Duration::from_millis(20)));
    let locker = servers.locker(cut_options.clone());
    let other = servers.locker(options());
    bounded(Duration::from_secs(240), async {
        // Live connections first.
        write_once(&locker, "calibrate").await;
        read_once(&locker, "calibrate").await;
        // Free: cut at every round, then nothing of it may be left. Most
        // cuts must land before the end, or the case proves little. Load
        // that dropped since the calibration (a test beside this one
        // ended) finishes the operations in fewer rounds: calibrate and
        // cut again then, up to three times.
        let mut span = 0;
        let mut points = Vec::new();
        for attempt in 1..=3 {
            span = rounds_of_read_and_write(&locker).await;
            points = cut_points(span);
            let mut cut = 0;
            for &t in &points {
                cut += usize::from(within(t, locker.read("cut")).await.is_none());
                locker.settled().await;
                write_once(&other, "cut").await;
                cut += usize::from(within(t, locker.write("cut")).await.is_none());
                locker.settled().await;
                write_once(&other, "cut").await;
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

        // Nested in a held write: the outer hold comes out whole.
        let outer = locker.write("cut").await.unwrap();
        for &t in &points {
            let _ = within(t, locker.read("cut")).await;
            let _ = within(t, locker.write("cut")).await;
            locker.settled().await;
            assert!(outer.is_held(), "outer hold lost after cuts at round {t}");
            refused(other.try_read("cut").await);
        }
        outer.release().await.unwrap();
        locker.settled().await;
        write_once(&other, "cut").await;

        // Waiting: a read behind a writer.
        let writer = other.write("cut").await.unwrap();
        for &t in &cut_points(2 * span) {
            assert!(within(t, locker.read("cut")).await.is_none());
        }
        writer.release().await.unwrap();
        locker.settled().await;
        // No hold and no reader's place is left: a writer gets in at once.
        write_once(&other, "cut").await;
        nothing_locked(&locker).await;

        // Waiting: a write behind a reader. A waiting writer that gives up
        // may keep new readers out for up to its ttl (docs of
        // `Locker::write`), so these writers have a short one.
        let mark_ttl = Duration::from_secs(2);
        let giving_up = locker.with_options(cut_options.ttl(mark_ttl)).unwrap();
        let reader = other.read("cut").await.unwrap();
        for &t in &cut_points(2 * span) {
            assert!(within(t, giving_up.write("cut")).await.is_none());
        }
        reader.release().await.unwrap();
        giving_up.settled().await;
        // No hold and no writer's place is left: a writer gets in at once.
        write_once(&other, "cut").await;
        // And readers within the ttl of the last writer's mark.
        wait_until(mark_ttl + SOON, async || {
            match other.try_read("cut").await {
                Ok(guard) => {
                    guard.release().await.unwrap();
                    true
                }
                Err(Error::NotObtained { .. }) => false,
                Err(e) => panic!("{e}"),
            }
        })
        .await;
        other.settled().await;
        wait_until(mark_ttl + SOON, async || {
            locker.list_all("").await.unwrap().is_empty()
        })
        .await;
    })
    .await;
}

/// Read and write holds travel like locks (docs of `LockGuard::hand_off`):
/// the adopter keeps the token, the hold keeps out what it kept out, and
/// the adopt call of another kind is refused.
async fn read_and_write_holds_are_handed_off<H: Unsupported>() {
    if !supported::<H>("hand_off") {
        return;
    }
    let servers = H::start();
    let owner = Owner::random();
    let here = servers.locker(options()).with_owner(owner.clone());
    let there = servers.locker(options()).with_owner(owner);
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let writer = here.try_write("doc").await.unwrap();
        let token = writer.token();
        let handoff: Handoff = writer.hand_off().to_string().parse().unwrap();
        for wrong in [
            there.adopt_read(&handoff).await.map(drop),
            there.adopt(&handoff).await.map(drop),
        ] {
            assert!(matches!(wrong, Err(Error::WrongKind { .. })), "{wrong:?}");
        }
        let adopted = there.adopt_write(&handoff).await.unwrap();
        assert_eq!(adopted.token(), token);
        refused(other.try_read("doc").await);
        // Downgraded after the move, it is a reader that others can join.
        let reader = adopted
            .downgrade()
            .await
            .map_err(|e| e.into_error())
            .unwrap();
        let handoff: Handoff = reader.hand_off().to_string().parse().unwrap();
        let reader = here.adopt_read(&handoff).await.unwrap();
        assert_eq!(reader.token(), token);
        other
            .try_read("doc")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        refused(other.try_write("doc").await);
        reader.release().await.unwrap();
        other
            .try_write("doc")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        here.settled().await;
        nothing_locked(&other).await;
    })
    .await;
}

/// Lock-delay for read-write locks: a reader and a writer that vanish
/// (handed off to nobody) keep their names until their ttl and the delay
/// have run out. Each root keeps its own expiry inside the hash, which a
/// later acquire sweeps: the delay must hold there too, or the writer
/// waiting for the vanished reader would sweep its root out at the ttl.
async fn vanished_readers_and_writers_keep_the_name_for_the_lock_delay<H: Unsupported>() {
    if !supported::<H>("lock_delay") {
        return;
    }
    let servers = H::start();
    let other = servers.locker(options());
    let timing = common::Delayed::after_grant(other.backend().name());
    let holder = servers.locker(timing.options(timing.delay));
    bounded(LIMIT, async {
        let asked = Instant::now();
        let (reader, writer) = tokio::join!(
            holder.read("vanished-reader"),
            holder.write("vanished-writer")
        );
        let answered = Instant::now();
        let (reader, writer) = (reader.unwrap().hand_off(), writer.unwrap().hand_off());
        let (after_reader, after_writer) = tokio::join!(
            timing.outlasted(
                (asked, answered),
                timing.delay,
                async || other.try_write("vanished-reader").await,
                async |wait| other.write_timeout("vanished-reader", wait).await,
            ),
            timing.outlasted(
                (asked, answered),
                timing.delay,
                async || other.try_read("vanished-writer").await,
                async |wait| other.read_timeout("vanished-writer", wait).await,
            )
        );
        assert!(after_reader.token() > reader.token());
        assert!(after_writer.token() > writer.token());
        after_reader.release().await.unwrap();
        after_writer.release().await.unwrap();
        // On a quorum, a node may have refused the waiting writer's last
        // attempt by a few ms (the vanished root still live there) and
        // kept its expired root, which only the next sweep removes: the
        // key, lengthened by the writer's waiting mark, is listed until
        // that mark's ttl. A writer sweeps it, and is alone.
        for name in ["vanished-reader", "vanished-writer"] {
            common::lock_once_as_writer(&other, name).await;
        }
        nothing_locked(&other).await;
    })
    .await;
}

/// Every case for one configuration, as separate tests.
macro_rules! rwlock_cases {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn writers_are_mutually_exclusive() {
                super::writers_are_mutually_exclusive::<$harness>().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn readers_hold_together() {
                super::readers_hold_together::<$harness>().await;
            }
            #[tokio::test]
            async fn a_writer_waits_for_the_readers() {
                super::a_writer_waits_for_the_readers::<$harness>().await;
            }
            #[tokio::test]
            async fn a_waiting_writer_keeps_new_readers_out() {
                super::a_waiting_writer_keeps_new_readers_out::<$harness>().await;
            }
            #[tokio::test]
            async fn a_release_wakes_the_waiters() {
                super::a_release_wakes_the_waiters::<$harness>().await;
            }
            #[tokio::test]
            async fn holds_nest_with_the_outer_token() {
                super::holds_nest_with_the_outer_token::<$harness>().await;
            }
            #[tokio::test]
            async fn a_write_hold_downgrades() {
                super::a_write_hold_downgrades::<$harness>().await;
            }
            #[tokio::test]
            async fn read_and_write_holds_are_handed_off() {
                super::read_and_write_holds_are_handed_off::<$harness>().await;
            }
            #[tokio::test]
            async fn an_upgrade_is_refused_at_once() {
                super::an_upgrade_is_refused_at_once::<$harness>().await;
            }
            #[tokio::test]
            async fn tokens_follow_the_fencing_rule() {
                super::tokens_follow_the_fencing_rule::<$harness>().await;
            }
            #[tokio::test]
            async fn a_name_is_one_kind_at_a_time() {
                super::a_name_is_one_kind_at_a_time::<$harness>().await;
            }
            #[tokio::test]
            async fn scoped_reads_and_writes() {
                super::scoped_reads_and_writes::<$harness>().await;
            }
            #[tokio::test]
            async fn cut_off_reads_and_writes_leave_nothing() {
                super::cut_off_reads_and_writes_leave_nothing::<$harness>().await;
            }
            #[tokio::test]
            async fn vanished_readers_and_writers_keep_the_name_for_the_lock_delay() {
                super::vanished_readers_and_writers_keep_the_name_for_the_lock_delay::<$harness>()
                    .await;
            }
        }
    };
}

rwlock_cases!(redis_single, Redis<1>);
rwlock_cases!(redlock_five, Redis<5>);
rwlock_cases!(etcd_single, EtcdMembers<1>);
rwlock_cases!(etcd_three, EtcdMembers<3>);
