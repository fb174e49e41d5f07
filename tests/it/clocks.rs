//! Node clocks that jump or run fast (docs/algorithm.md, section 16), on
//! real servers whose wall clocks libfaketime moves: a node whose clock ran
//! ahead beyond the drift allowance is reported and does not count until
//! every lock it may have dropped early has run out; one whose clock fell
//! behind is reported and counts. Without the checks, a jump forward lets a
//! second owner in beside the first, and only the fence stops the first.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::bounded;
use fencelock::metrics::NODE_CLOCK_JUMP;
use fencelock::testing::{RedisNodes, RedisServer};
use fencelock::{
    Error, FencedStore, FencedWrite, LockOptions, Locker, NodeFault, Redlock, Watchdog,
};
use metrics_util::debugging::DebuggingRecorder;

const LIMIT: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_millis(1000);
/// How long a node found ahead does not count: longer than the leases.
const QUARANTINE: Duration = Duration::from_millis(1500);
/// A jump well past the ttl: every lock on the node expires at once.
const JUMP_MS: i64 = 3000;

fn options() -> LockOptions {
    common::options()
        .ttl(TTL)
        .node_timeout(Duration::from_millis(200))
        .watchdog(Watchdog::Off)
}

fn locker(nodes: &RedisNodes, clock_checks: bool) -> Locker<Redlock> {
    let redlock = Redlock::from_urls(nodes.urls())
        .unwrap()
        .with_quarantine(QUARANTINE)
        .unwrap()
        .with_clock_checks(clock_checks);
    Locker::new(redlock, options()).unwrap()
}

fn start() -> RedisNodes {
    common::fake_clock_servers()
        .start_nodes(3)
        .expect("start nodes under libfaketime (run scripts/setup)")
}

/// One acquire and release: the client's first reading of every clock.
async fn warm_up(locker: &Locker<Redlock>) {
    locker
        .try_lock("warm-up")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

fn jump(nodes: &mut RedisNodes, i: usize, by_ms: i64) {
    let node = nodes.node_mut(i);
    let offset = node.clock_offset().unwrap();
    node.set_clock_offset(offset + by_ms).unwrap();
}

/// The nodes (by index) that a `QuorumUnavailable` names with a clock
/// fault.
fn clock_faults(nodes: &RedisNodes, error: &Error) -> Vec<usize> {
    let Error::QuorumUnavailable { failures, .. } = error else {
        panic!("expected QuorumUnavailable, got {error:?}");
    };
    let mut out: Vec<usize> = failures
        .iter()
        .filter(|f| matches!(f.fault, NodeFault::Clock(_)))
        .map(|f| {
            (0..nodes.len())
                .find(|&i| f.node.ends_with(&format!(":{}", nodes.node(i).port())))
                .unwrap_or_else(|| panic!("{} is none of the nodes", f.node))
        })
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test]
async fn a_node_clock_that_jumps_ahead_is_reported_and_sits_out_its_hold_off() {
    let (events, _subscriber) = crate::tracing_events::capture();
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = start();
    let locker = locker(&nodes, true);
    bounded(LIMIT, async {
        warm_up(&locker).await;
        jump(&mut nodes, 0, JUMP_MS);
        // Two nodes that keep time still make a quorum.
        locker.try_lock("a").await.unwrap().release().await.unwrap();
        assert_eq!(
            recorded.counter_with(NODE_CLOCK_JUMP, "direction", "ahead"),
            1
        );
        let warned = events.text();
        let warning = warned
            .lines()
            .find(|line| line.contains("node clock ran ahead"))
            .unwrap_or_else(|| panic!("no clock event in:\n{warned}"));
        assert!(warning.contains("WARN"), "{warning}");
        let port = nodes.node(0).port().to_string();
        assert!(
            warning.contains(&port),
            "the event names the node: {warning}"
        );

        jump(&mut nodes, 1, JUMP_MS);
        let refused = Instant::now();
        let error = locker.try_lock("b").await.unwrap_err();
        assert_eq!(clock_faults(&nodes, &error), [0, 1], "{error}");
        assert!(error.to_string().contains("ahead"), "{error}");

        // Keeping time since, they count again once their hold-off ends.
        common::wait_until(LIMIT, async || locker.try_lock("b").await.is_ok()).await;
        assert!(
            refused.elapsed() >= QUARANTINE - Duration::from_millis(300),
            "back after {:?}, before the hold-off of node 1 ended",
            refused.elapsed()
        );
        assert_eq!(
            recorded.counter_with(NODE_CLOCK_JUMP, "direction", "ahead"),
            2
        );
    })
    .await;
}

#[tokio::test]
async fn a_jump_ahead_lets_an_unchecked_owner_in_beside_the_holder_and_the_fence_stops_it() {
    let mut nodes = start();
    let store_server = RedisServer::start().unwrap();
    let store = FencedStore::from_url(&store_server.url()).unwrap();
    let (holder, checked, unchecked) = (
        locker(&nodes, true),
        locker(&nodes, true),
        locker(&nodes, false),
    );
    bounded(LIMIT, async {
        for locker in [&holder, &checked, &unchecked] {
            warm_up(locker).await;
        }
        let first = holder.try_lock("res").await.unwrap();
        // An acquire returns at a quorum; the slowest node's grant may still
        // be on its way, and would land after the jump, fresh.
        holder.backend().settled().await;
        // The lock expires at once on two nodes of three, by their clocks.
        jump(&mut nodes, 0, JUMP_MS);
        jump(&mut nodes, 1, JUMP_MS);

        let error = checked.try_lock("res").await.unwrap_err();
        assert_eq!(clock_faults(&nodes, &error), [0, 1], "{error}");
        // The refused round's grants on nodes 0 and 1 are released in the
        // background; until then they would refuse the next owner too.
        checked.backend().settled().await;

        // Redlock alone counts the two votes: a second owner while the
        // first still holds, as far as it can tell.
        let second = unchecked.try_lock("res").await.unwrap();
        assert!(
            first.expires_at() > Instant::now(),
            "the first hold is still valid"
        );
        assert!(second.token() > first.token());
        assert_eq!(
            store
                .write("res-data", second.token(), "second")
                .await
                .unwrap(),
            FencedWrite::Accepted
        );
        let stale = store
            .write("res-data", first.token(), "first")
            .await
            .unwrap();
        assert!(
            matches!(stale, FencedWrite::Rejected { .. }),
            "the fence must refuse the older owner: {stale:?}"
        );
        second.release().await.unwrap();
        let _ = first.release().await;
    })
    .await;
}

#[tokio::test]
async fn a_node_clock_that_falls_behind_is_reported_and_still_counts() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = start();
    let locker = locker(&nodes, true);
    bounded(LIMIT, async {
        warm_up(&locker).await;
        // Locks there last longer than asked: late for others, never two
        // owners. A quorum needs one of these two nodes.
        jump(&mut nodes, 0, -JUMP_MS);
        jump(&mut nodes, 1, -JUMP_MS);
        nodes.node_mut(2).kill();
        locker.try_lock("a").await.unwrap().release().await.unwrap();
        assert_eq!(
            recorded.counter_with(NODE_CLOCK_JUMP, "direction", "behind"),
            2
        );
        assert_eq!(
            recorded.counter_with(NODE_CLOCK_JUMP, "direction", "ahead"),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn clock_checks_can_be_turned_off() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let mut nodes = start();
    let locker = locker(&nodes, false);
    bounded(LIMIT, async {
        warm_up(&locker).await;
        jump(&mut nodes, 0, JUMP_MS);
        jump(&mut nodes, 1, JUMP_MS);
        locker.try_lock("a").await.unwrap().release().await.unwrap();
        assert_eq!(recorded.counter(NODE_CLOCK_JUMP), 0);
    })
    .await;
}
