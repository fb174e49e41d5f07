//! Nodes that lose their data (docs/algorithm.md, section 15), on real
//! servers restarted without it: a wiped node is found by its missing
//! marker, grants nothing while a lock it forgot may still be valid, and
//! counts towards a token only once a quorum of the nodes that remember
//! has repaired its counter. A new cluster and a durable restart cost
//! nothing.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::bounded;
use fencelock::metrics::NODE_DATA_LOST;
use fencelock::testing::{Persistence, RedisNodes, Restart};
use fencelock::{Error, FencingToken, LockOptions, Locker, NodeFault, Redlock, Watchdog};
use metrics_util::debugging::DebuggingRecorder;

const LIMIT: Duration = Duration::from_secs(60);
/// Short enough to wait out in a test; longer than the leases below.
const QUARANTINE: Duration = Duration::from_millis(1500);

fn options() -> LockOptions {
    common::options()
        .ttl(Duration::from_millis(1000))
        .node_timeout(Duration::from_millis(200))
        .watchdog(Watchdog::Off)
}

fn locker(nodes: &RedisNodes, quarantine: Duration) -> Locker<Redlock> {
    let redlock = Redlock::from_urls(nodes.urls())
        .unwrap()
        .with_quarantine(quarantine)
        .unwrap();
    Locker::new(redlock, options()).unwrap()
}

/// The node's marker fields, sorted.
async fn marker(url: &str) -> Vec<(String, String)> {
    let mut fields = common::hash(url, "fencelock:node").await;
    fields.retain(|(field, _)| field != "since");
    fields.sort();
    fields
}

/// The failures of a `QuorumUnavailable`: (node index, whether the fault is
/// `Recovering`).
fn recovering(nodes: &RedisNodes, error: &Error) -> Vec<(usize, bool)> {
    let Error::QuorumUnavailable { failures, .. } = error else {
        panic!("expected QuorumUnavailable, got {error:?}");
    };
    let mut out: Vec<(usize, bool)> = failures
        .iter()
        .map(|f| {
            let i = (0..nodes.len())
                .find(|&i| f.node.ends_with(&format!(":{}", nodes.node(i).port())))
                .unwrap_or_else(|| panic!("{} is none of the nodes", f.node));
            (i, matches!(f.fault, NodeFault::Recovering(_)))
        })
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test]
async fn a_new_cluster_grants_on_the_first_acquire_and_is_marked() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = RedisNodes::start(3).unwrap();
    // One node is down at the start: the two that answer are a quorum.
    nodes.node_mut(2).kill();
    let locker = locker(&nodes, Redlock::DEFAULT_QUARANTINE);
    bounded(LIMIT, async {
        let guard = locker.try_lock("first").await.unwrap();
        assert_eq!(guard.token(), FencingToken::new(1));
        guard.release().await.unwrap();
        for i in 0..2 {
            let fields = marker(&nodes.node(i).url()).await;
            let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
            assert_eq!(
                names,
                ["id"],
                "node {i} remembers, no quarantine: {fields:?}"
            );
        }
        assert_eq!(
            recorded.counter(NODE_DATA_LOST),
            0,
            "a new cluster lost nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn a_durable_restart_keeps_the_marker_and_votes_at_once() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = RedisNodes::start_with(3, Persistence::Aof).unwrap();
    let locker = locker(&nodes, Redlock::DEFAULT_QUARANTINE);
    bounded(LIMIT, async {
        common::lock_once(&locker, "durable").await;
        locker.backend().settled().await;
        let before = marker(&nodes.node(0).url()).await;
        nodes.node_mut(0).restart(Restart::KeepData).unwrap();
        nodes.node_mut(1).kill();
        // Node 0 must vote for the quorum: it does, at once.
        let guard = locker.try_lock("durable").await.unwrap();
        assert_eq!(guard.token(), FencingToken::new(2));
        guard.release().await.unwrap();
        assert_eq!(marker(&nodes.node(0).url()).await, before);
        assert_eq!(recorded.counter(NODE_DATA_LOST), 0);
    })
    .await;
}

#[tokio::test]
async fn a_wiped_node_grants_nothing_while_a_lock_it_forgot_may_be_valid() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = RedisNodes::start_with(3, Persistence::Aof).unwrap();
    let locker = locker(&nodes, QUARANTINE);
    bounded(LIMIT, async {
        common::lock_once(&locker, "forgot").await;
        locker.backend().settled().await;
        // A holds the lock on nodes 0 and 1 only.
        nodes.node_mut(2).kill();
        let held = locker.try_lock("forgot").await.unwrap();
        locker.backend().settled().await;
        nodes.node_mut(2).restart(Restart::KeepData).unwrap();
        // Node 1 forgets it. Without the quarantine, nodes 1 and 2 would
        // grant B while A's lock is valid.
        nodes.node_mut(1).restart(Restart::WipeData).unwrap();
        let refused = common::try_from_another_task(&locker, "forgot")
            .await
            .unwrap_err();
        assert_eq!(
            recovering(&nodes, &refused),
            [(1, true)],
            "node 1 is named, recovering: {refused}"
        );
        assert!(refused.to_string().contains("lost its data"), "{refused}");
        assert_eq!(recorded.counter(NODE_DATA_LOST), 1);
        let fields = marker(&nodes.node(1).url()).await;
        let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(names, ["id", "reborn", "until"], "{fields:?}");
        // Once A's lease is over, B gets the lock, with a token above A's.
        let other = locker.clone();
        let guard = tokio::spawn(async move {
            other
                .lock_timeout("forgot", Duration::from_secs(10))
                .await
                .map(|g| (g.token(), g))
        })
        .await
        .unwrap()
        .unwrap();
        assert!(guard.0 > held.token(), "{} after {}", guard.0, held.token());
        drop(held);
    })
    .await;
}

#[tokio::test]
async fn tokens_never_go_back_when_a_wiped_node_and_a_lagging_one_make_a_quorum() {
    // Node 2 lags (it missed acquires), node 1 forgets, node 0 (the only
    // one that remembers the last token) is down. Without the rule, nodes 1
    // and 2 would hand out a token below the last (docs/safety.md measured
    // it). With it: no token at all until node 0 is back, then a higher one.
    let mut nodes = RedisNodes::start_with(3, Persistence::Aof).unwrap();
    let locker = locker(&nodes, QUARANTINE);
    bounded(LIMIT, async {
        common::lock_once(&locker, "lagging").await;
        locker.backend().settled().await;
        nodes.node_mut(2).kill();
        let mut last = FencingToken::new(0);
        for _ in 0..5 {
            let guard = locker.try_lock("lagging").await.unwrap();
            last = guard.token();
            guard.release().await.unwrap();
        }
        locker.backend().settled().await;
        nodes.node_mut(2).restart(Restart::KeepData).unwrap();
        nodes.node_mut(1).restart(Restart::WipeData).unwrap();
        nodes.node_mut(0).kill();
        // Quarantined, then unrepaired: only node 2 remembers a counter,
        // and one node is not a quorum.
        let deadline = Instant::now() + QUARANTINE * 2;
        while Instant::now() < deadline {
            match locker.try_lock("lagging").await {
                Err(e @ Error::QuorumUnavailable { .. }) => {
                    assert!(recovering(&nodes, &e).contains(&(1, true)), "{e}");
                }
                Ok(guard) => panic!("token {} handed out after {last}", guard.token()),
                Err(e) => panic!("{e}"),
            }
            locker.backend().settled().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        nodes.node_mut(0).restart(Restart::KeepData).unwrap();
        let guard = locker
            .lock_timeout("lagging", Duration::from_secs(10))
            .await
            .unwrap();
        assert!(guard.token() > last, "{} after {last}", guard.token());
        guard.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_wiped_minority_is_reported_and_votes_again_once_repaired() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = RedisNodes::start_with(5, Persistence::Aof).unwrap();
    let locker = locker(&nodes, QUARANTINE);
    bounded(LIMIT, async {
        let mut last = FencingToken::new(0);
        for _ in 0..5 {
            let guard = locker.try_lock("wiped").await.unwrap();
            last = guard.token();
            guard.release().await.unwrap();
        }
        locker.backend().settled().await;
        nodes.node_mut(0).restart(Restart::WipeData).unwrap();
        nodes.node_mut(1).restart(Restart::WipeData).unwrap();
        // Nodes 2 to 4 remember: a quorum, and a higher token.
        let guard = locker.try_lock("wiped").await.unwrap();
        assert!(guard.token() > last, "{} after {last}", guard.token());
        last = guard.token();
        guard.release().await.unwrap();
        locker.backend().settled().await;
        assert_eq!(
            recorded.counter(NODE_DATA_LOST),
            2,
            "both wiped nodes are reported"
        );
        // Past the quarantine, an acquire finds nodes 0 and 1 without the
        // counter and has it repaired from nodes 2 to 4.
        tokio::time::sleep(QUARANTINE).await;
        common::lock_once(&locker, "wiped").await;
        locker.backend().settled().await;
        // Now they count: with nodes 2 and 3 down, 0, 1 and 4 are the only
        // quorum, and its token is above every earlier one.
        nodes.node_mut(2).kill();
        nodes.node_mut(3).kill();
        let guard = locker.try_lock("wiped").await.unwrap();
        assert!(guard.token() > last, "{} after {last}", guard.token());
        guard.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_lease_longer_than_the_quarantine_lengthens_it() {
    let mut nodes = RedisNodes::start_with(3, Persistence::Aof).unwrap();
    let redlock = Redlock::from_urls(nodes.urls())
        .unwrap()
        .with_quarantine(Duration::from_secs(1))
        .unwrap();
    let locker = Locker::new(redlock, options().ttl(Duration::from_secs(5))).unwrap();
    // 5 s and the drift allowance (1 % and 2 ms).
    assert_eq!(locker.backend().quarantine(), Duration::from_millis(5052));
    bounded(LIMIT, async {
        common::lock_once(&locker, "long").await;
        locker.backend().settled().await;
        nodes.node_mut(0).restart(Restart::WipeData).unwrap();
        common::lock_once(&locker, "long").await;
        // Nodes 1 and 2 decide; node 0's request may still be out.
        locker.backend().settled().await;
        let fields = common::hash(&nodes.node(0).url(), "fencelock:node").await;
        let at = |name: &str| -> i64 {
            let (_, v) = fields.iter().find(|(f, _)| f == name).unwrap();
            v.parse().unwrap()
        };
        assert_eq!(at("until") - at("since"), 5052, "{fields:?}");
    })
    .await;
    assert!(
        Redlock::from_urls(nodes.urls())
            .unwrap()
            .with_quarantine(Duration::ZERO)
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_cut_off_while_let_in_still_comes_in_whole() {
    // The first acquire on new nodes marks them and then lets them all in.
    // Cut off between the two (or between two nodes' let-in), it must not
    // leave some nodes remembering and the rest quarantined: no later
    // acquire would find a new cluster again, and the rest would wait out
    // the quarantine.
    bounded(LIMIT, async {
        for cut_us in (100..6000).step_by(100) {
            let nodes = RedisNodes::start(3).unwrap();
            let locker = locker(&nodes, Redlock::DEFAULT_QUARANTINE);
            let cut = Duration::from_micros(cut_us);
            let _ = tokio::time::timeout(cut, locker.try_lock("cut")).await;
            locker.backend().settled().await;
            // A guard cut off after its grant is released by a task of its
            // own, a little later.
            common::wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
            let mut standings = Vec::new();
            for node in nodes.iter() {
                let fields = marker(&node.url()).await;
                standings.push(fields.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>());
            }
            let quarantined = standings.iter().filter(|f| f.contains(&"until".into()));
            let remembering = standings.iter().filter(|f| *f == &["id".to_owned()]);
            assert!(
                quarantined.count() == 0 || remembering.count() == 0,
                "cut at {cut:?}: some nodes let in, some quarantined: {standings:?}"
            );
            common::lock_once(&locker, "cut").await;
        }
    })
    .await;
}
