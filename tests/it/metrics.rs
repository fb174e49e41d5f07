//! Metrics and statistics against real redis-server nodes: every outcome is
//! counted once, under the right result label, with and without a recorder.

use std::time::Duration;

use crate::common;
use crate::common::{bounded, locker, options, start, try_from_another_task};
use fencelock::Error;
use fencelock::metrics::{ACQUIRE, EXTEND, HOLD_SECONDS, RELEASE, WAIT_SECONDS};
use metrics_util::debugging::DebuggingRecorder;

const LIMIT: Duration = Duration::from_secs(60);

// Current-thread runtime: the thread-local recorder sees every metric,
// background tasks included.
#[tokio::test(flavor = "current_thread")]
async fn every_outcome_is_counted_once_with_its_result() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        let guard = locker.lock("counted").await.unwrap();
        let busy = try_from_another_task(&locker, "counted").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })));
        let other = locker.clone();
        let timed_out = tokio::spawn(async move {
            other
                .lock_timeout("counted", Duration::from_millis(50))
                .await
                .map(|_| ())
        })
        .await
        .unwrap();
        assert!(matches!(timed_out, Err(Error::Timeout { .. })));
        guard.extend(Duration::from_secs(20)).await.unwrap();
        guard.release().await.unwrap();
        // A dropped guard is counted when its background release finishes.
        drop(locker.try_lock("dropped").await.unwrap());
        common::wait_until(Duration::from_secs(2), async || {
            locker.statistics().held == 0
        })
        .await;

        let acquire = |result| recorded.counter_with(ACQUIRE, "result", result);
        assert_eq!(acquire("acquired"), 2, "lock + try_lock");
        assert_eq!(acquire("contended"), 1);
        assert_eq!(acquire("timeout"), 1, "one per call, not per attempt");
        assert_eq!(recorded.counter_with(RELEASE, "result", "released"), 2);
        assert_eq!(recorded.counter_with(EXTEND, "result", "extended"), 1);
        assert_eq!(recorded.counter_with(ACQUIRE, "backend", "redis"), 4);
        assert_eq!(recorded.samples(WAIT_SECONDS), 2, "lock + lock_timeout");
        assert_eq!(recorded.samples(HOLD_SECONDS), 2);
        assert!(!recorded.has_label("key"), "no per-key label unless asked");

        let stats = locker.statistics();
        assert_eq!(
            (stats.acquired, stats.contended, stats.timed_out),
            (2, 1, 1),
            "{stats:?}"
        );
        assert_eq!((stats.released, stats.extended), (2, 1), "{stats:?}");
        assert_eq!(
            (
                stats.quorum_unavailable,
                stats.acquire_errors,
                stats.release_failures
            ),
            (0, 0, 0)
        );
        assert_eq!((stats.lost, stats.held), (0, 0));
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_key_label_is_opt_in_and_statistics_need_no_recorder() {
    let nodes = start(1);
    // No recorder installed here at all: the statistics still count.
    let plain = locker(&nodes, options());
    bounded(LIMIT, async {
        common::lock_once(&plain, "bare").await;
        let stats = plain.statistics();
        assert_eq!((stats.acquired, stats.released, stats.held), (1, 1, 0));
        // Clones and derived Lockers share the counts.
        let derived = plain.with_owner(fencelock::Owner::random());
        common::lock_once(&derived, "bare").await;
        assert_eq!(plain.statistics().acquired, 2);
    })
    .await;

    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let per_key = locker(&nodes, options().metrics_per_key(true));
    bounded(LIMIT, async {
        common::lock_once(&per_key, "labelled").await;
        assert_eq!(recorded.counter_with(ACQUIRE, "key", "labelled"), 1);
        assert!(recorded.has_label("key"));
    })
    .await;
}

/// Every series a guard or an acquire records carries its `kind`: `lock`,
/// `read`, `write` or `permit`, and a downgraded guard's later events are
/// `read`'s.
#[tokio::test(flavor = "current_thread")]
async fn each_kind_of_hold_is_labelled() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let nodes = start(1);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        locker.try_lock("a").await.unwrap().release().await.unwrap();
        locker.try_read("b").await.unwrap().release().await.unwrap();
        let writer = locker.try_write("c").await.unwrap();
        let reader = writer
            .downgrade()
            .await
            .map_err(|e| e.into_error())
            .unwrap();
        reader.release().await.unwrap();
        let sem = locker.semaphore("d", 2).unwrap();
        sem.try_acquire().await.unwrap().release().await.unwrap();

        let acquired = |kind| recorded.counter_with(ACQUIRE, "kind", kind);
        assert_eq!(
            (
                acquired("lock"),
                acquired("read"),
                acquired("write"),
                acquired("permit")
            ),
            (1, 1, 1, 1)
        );
        let released = |kind| recorded.counter_with(RELEASE, "kind", kind);
        assert_eq!(
            (
                released("lock"),
                released("read"),
                released("write"),
                released("permit")
            ),
            (1, 2, 0, 1),
            "the downgraded writer ends as a reader"
        );
    })
    .await;
}
