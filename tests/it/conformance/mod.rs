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

mod admin;
mod lock_delay;
mod semantics;

use admin::*;
use lock_delay::*;
use semantics::*;

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
