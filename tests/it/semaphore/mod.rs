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

mod lifecycle;
mod permits;

use lifecycle::*;
use permits::*;

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
