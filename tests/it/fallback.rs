//! The fallback policy (`with_lock_or_fallback`) and the sequencer check
//! (`is_current`, `check_current`) on real nodes: the fallback runs only
//! for an outage, never for contention, and never beside the work; a
//! sequencer is current while its hold lives on a quorum, and not after.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fencelock::testing::{Persistence, RedisNodes, Restart};
use fencelock::{Error, FencingToken, Locker, Owner, Redlock, Sequencer};
use metrics_util::debugging::DebuggingRecorder;

use crate::common::{
    self, bounded, etcd_locker, options, short_ttl_options, start_etcd, wait_until,
};

const LIMIT: Duration = Duration::from_secs(60);

fn locker(nodes: &RedisNodes) -> Locker<Redlock> {
    common::locker(nodes, options().node_timeout(Duration::from_millis(100)))
}

// Current-thread runtime: the thread-local recorder sees every metric.
#[tokio::test(flavor = "current_thread")]
async fn an_outage_runs_the_fallback_and_never_the_work() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    // With their data kept: a node that comes back without it would wait
    // out its quarantine (docs/algorithm.md, section 15).
    let mut nodes = RedisNodes::start_with(3, Persistence::Aof).unwrap();
    let locker = locker(&nodes);
    bounded(LIMIT, async {
        // Up: the work runs, the fallback does not.
        let ran = locker
            .with_lock_or_fallback(
                "job",
                Duration::from_millis(300),
                async |_| "work",
                async |_| "fallback",
            )
            .await
            .unwrap();
        assert_eq!(ran, "work");
        // Two of three nodes down: no quorum, an outage.
        nodes.node_mut(0).kill();
        nodes.node_mut(1).kill();
        let started = Instant::now();
        let ran = locker
            .with_lock_or_fallback(
                "job",
                Duration::from_millis(300),
                async |_| "work",
                async |outage| {
                    assert!(outage.is_outage(), "{outage}");
                    assert!(
                        matches!(outage, Error::QuorumUnavailable { .. }),
                        "{outage}"
                    );
                    "fallback"
                },
            )
            .await
            .unwrap();
        assert_eq!(ran, "fallback");
        // The outage was waited out for the patience first.
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(recorded.counter(fencelock::metrics::FALLBACK), 1);
        // Back: the work again.
        nodes.node_mut(0).restart(Restart::KeepData).unwrap();
        let ran = locker
            .with_lock_or_fallback(
                "job",
                Duration::from_secs(5),
                async |_| "work",
                async |_| "fallback",
            )
            .await
            .unwrap();
        assert_eq!(ran, "work");
        assert_eq!(recorded.counter(fencelock::metrics::FALLBACK), 1);
    })
    .await;
}

#[tokio::test]
async fn contention_is_waited_for_and_never_falls_back() {
    let nodes = RedisNodes::start(1).unwrap();
    let locker = locker(&nodes);
    bounded(LIMIT, async {
        let holder = locker
            .with_owner(Owner::random())
            .lock("job")
            .await
            .unwrap();
        let fallbacks = AtomicU32::new(0);
        let waiter = locker.with_lock_or_fallback(
            "job",
            Duration::from_millis(50),
            async |guard| guard.token(),
            async |_| {
                fallbacks.fetch_add(1, Ordering::Relaxed);
                FencingToken::new(0)
            },
        );
        tokio::pin!(waiter);
        // Held far longer than the patience: still waiting, no fallback.
        let held_for = tokio::time::sleep(Duration::from_millis(500));
        tokio::select! {
            done = &mut waiter => panic!("did not wait for the holder: {done:?}"),
            () = held_for => {}
        }
        let first = holder.token();
        holder.release().await.unwrap();
        let token = waiter.await.unwrap();
        assert!(token > first);
        assert_eq!(fallbacks.load(Ordering::Relaxed), 0);
    })
    .await;
}

#[tokio::test]
async fn a_sequencer_is_current_while_its_hold_lives_on_a_quorum() {
    let mut nodes = RedisNodes::start(3).unwrap();
    let locker = common::locker(
        &nodes,
        short_ttl_options().node_timeout(Duration::from_millis(100)),
    );
    bounded(LIMIT, async {
        let guard = locker.lock("billing").await.unwrap();
        let sequencer = guard.sequencer();
        // The text form travels with a request and parses back.
        let received: Sequencer = sequencer.to_string().parse().unwrap();
        assert!(locker.is_current(&received).await.unwrap());
        locker.check_current("billing", &received).await.unwrap();
        // One node down leaves a quorum that still stores it.
        nodes.node_mut(0).kill();
        assert!(locker.is_current(&received).await.unwrap());
        // Another lock's name: refused as foreign, whatever the number.
        match locker.check_current("payroll", &received).await {
            Err(Error::ForeignToken { resource, lock, .. }) => {
                assert_eq!((resource.as_str(), lock.as_str()), ("payroll", "billing"));
            }
            other => panic!("{other:?}"),
        }
        // Another token of the right lock: not current.
        let older = Sequencer::new("billing", FencingToken::new(guard.token().get() + 1));
        assert!(!locker.is_current(&older).await.unwrap());
        // Ran out: no longer current, and a newer holder's is.
        wait_until(LIMIT, async || !guard.is_held()).await;
        // The two nodes left end the hold a few ms apart; in between one
        // still has it and the other not, which is no quorum either way
        // (QuorumUnavailable, rightly): only a "no" from both ends this.
        wait_until(LIMIT, async || {
            matches!(locker.is_current(&received).await, Ok(false))
        })
        .await;
        assert!(matches!(
            locker.check_current("billing", &received).await,
            Err(Error::NotHeld { .. })
        ));
        let next = locker
            .with_owner(Owner::random())
            .lock("billing")
            .await
            .unwrap();
        assert!(locker.is_current(&next.sequencer()).await.unwrap());
        assert!(!locker.is_current(&received).await.unwrap());
        // Too few nodes to tell: an error, not a guess.
        nodes.node_mut(1).kill();
        assert!(matches!(
            locker.is_current(&next.sequencer()).await,
            Err(Error::QuorumUnavailable { .. })
        ));
        // Malformed text.
        for bad in ["billing", "x@billing", "12@", "-1@billing"] {
            assert!(bad.parse::<Sequencer>().is_err(), "{bad}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_sequencer_is_checked_on_etcd_too() {
    let cluster = start_etcd(1);
    bounded(LIMIT, async {
        let locker = etcd_locker(&cluster, options());
        let guard = locker.lock("billing").await.unwrap();
        assert!(locker.is_current(&guard.sequencer()).await.unwrap());
        let token = guard.token();
        guard.release().await.unwrap();
        assert!(
            !locker
                .is_current(&Sequencer::new("billing", token))
                .await
                .unwrap()
        );
    })
    .await;
}
