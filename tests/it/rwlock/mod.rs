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

mod cleanup;
mod exclusion;
mod holds;

use cleanup::*;
use exclusion::*;
use holds::*;

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
