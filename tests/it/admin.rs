//! Introspection and admin against real redis-server nodes: inspect,
//! is_locked, list (SCAN, paged, merged across nodes) and force_release,
//! with every node up and with one down.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bounded, locker, options, start, wait_until_no_locks};
use fencelock::deadpool_redis::redis;
use fencelock::metrics::WATCHDOG_RENEW;
use fencelock::{Error, LockOptions, NodeFault, Watchdog};
use metrics_util::debugging::DebuggingRecorder;

const LIMIT: Duration = Duration::from_secs(120);

/// Locks that stay put for the test: long ttl, no watchdog.
fn parked() -> LockOptions {
    options()
        .ttl(Duration::from_secs(60))
        .watchdog(Watchdog::Off)
}

// Current-thread runtime: the thread-local recorder sees the watchdog too.
#[tokio::test(flavor = "current_thread")]
async fn inspect_list_and_force_release_on_five_nodes() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let recorded = common::Recorded::new(&recorder);
    let nodes = start(5);
    // A short ttl so the watchdog notices the forced release quickly; the
    // node timeout is the tests' usual 250 ms, so a loaded machine does not
    // turn a slow reply into a failure.
    let locker = locker(
        &nodes,
        options()
            .ttl(Duration::from_secs(2))
            .node_timeout(Duration::from_millis(250)),
    );
    common::warm_up(&locker).await;
    bounded(LIMIT, async {
        let outer = locker.lock("report:daily").await.unwrap();
        let inner = locker.lock("report:daily").await.unwrap();
        let other = locker.lock("billing").await.unwrap();
        // Acquires return once a quorum granted; the last nodes follow.
        locker.backend().settled().await;

        let info = locker.inspect("report:daily").await.unwrap();
        assert_eq!(info.nodes.len(), 5);
        assert_eq!(info.quorum, 3);
        for view in &info.nodes {
            let record = view.lock.as_ref().unwrap().as_ref().expect("locked here");
            assert_eq!(record.token, outer.token());
            assert_eq!(record.holds, 2, "outer + nested");
            let ttl = record.ttl.expect("an expiry");
            assert!(
                ttl > Duration::ZERO && ttl <= Duration::from_secs(2),
                "{ttl:?}"
            );
        }
        let holder = info.agreed.expect("a quorum agrees");
        assert_eq!(holder.token, outer.token());
        assert!(locker.is_locked("report:daily").await.unwrap());
        assert!(!locker.is_locked("report:weekly").await.unwrap());
        let free = locker.inspect("report:weekly").await.unwrap();
        assert!(free.agreed.is_none() && free.free_nodes() == 5);

        assert_eq!(locker.list_all("report:").await.unwrap(), ["report:daily"]);
        assert_eq!(
            locker.list_all("").await.unwrap(),
            ["billing", "report:daily"]
        );
        // Glob characters in a prefix are literal.
        assert!(locker.list_all("report*").await.unwrap().is_empty());

        // Forced release: gone everywhere, the holder is told, tokens go on.
        let forced = locker.force_release("report:daily").await.unwrap();
        assert_eq!((forced.removed, forced.failures.len()), (5, 0));
        assert!(!locker.is_locked("report:daily").await.unwrap());
        outer.lost().await;
        inner.lost().await;
        // Found gone at the next renewal, not retried as an outage.
        assert_eq!(
            recorded.counter_with(WATCHDOG_RENEW, "result", "not_held"),
            2,
            "the outer and the inner guard's watchdogs"
        );
        assert_eq!(recorded.counter_with(WATCHDOG_RENEW, "result", "failed"), 0);
        // The same task takes it afresh: nothing nests inside a lost hold.
        let after = locker.try_lock("report:daily").await.unwrap();
        assert!(after.token() > outer.token());
        assert!(matches!(
            inner.release().await,
            Err(Error::NotHeld { .. } | Error::Lost { .. })
        ));
        assert!(outer.release().await.is_err());
        after.release().await.unwrap();
        other.release().await.unwrap();
        wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test]
async fn with_one_node_down_the_quorum_view_holds_and_the_node_is_named() {
    let mut nodes = start(5);
    let locker = locker(&nodes, parked());
    common::warm_up(&locker).await;
    let guard = bounded(LIMIT, locker.lock("survivor")).await.unwrap();
    bounded(LIMIT, locker.backend().settled()).await;
    let down = nodes
        .node(0)
        .url()
        .trim_start_matches("redis://")
        .to_owned();
    nodes.node_mut(0).kill();
    bounded(LIMIT, async {
        let info = locker.inspect("survivor").await.unwrap();
        let dead = info.nodes.iter().find(|v| v.node == down).unwrap();
        assert!(
            matches!(
                dead.lock,
                Err(NodeFault::Connection(_) | NodeFault::Timeout(_))
            ),
            "{dead:?}"
        );
        assert_eq!(info.locked_nodes(), 4);
        assert_eq!(info.agreed.as_ref().unwrap().token, guard.token());
        assert!(locker.is_locked("survivor").await.unwrap());

        let page = locker.list("", None).await.unwrap();
        assert!(page.resources.contains(&"survivor".to_owned()), "{page:?}");
        assert_eq!(page.failures.len(), 1);
        assert_eq!(page.failures[0].node, down);

        let forced = locker.force_release("survivor").await.unwrap();
        assert_eq!(forced.removed, 4);
        assert_eq!(forced.failures.len(), 1);
        assert!(!locker.is_locked("survivor").await.unwrap());
        // Three of five down: nobody can tell.
        nodes.node_mut(1).kill();
        nodes.node_mut(2).kill();
        let unknown = locker.is_locked("survivor").await;
        assert!(
            matches!(unknown, Err(Error::QuorumUnavailable { .. })),
            "{unknown:?}"
        );
        drop(guard);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_ten_thousand_locks_is_paged() {
    const LOCKS: usize = 10_000;
    const TASKS: usize = 50;
    let nodes = start(3);
    let locker = locker(&nodes, parked());
    bounded(LIMIT, async {
        let started = Instant::now();
        let takers = (0..TASKS).map(|t| {
            let locker = locker.clone();
            tokio::spawn(async move {
                for i in (t..LOCKS).step_by(TASKS) {
                    // Handed off, not released: the lock stays for the listing.
                    let _ = locker
                        .try_lock(&format!("bulk:{i:05}"))
                        .await
                        .unwrap()
                        .hand_off();
                }
            })
        });
        for taker in futures::future::join_all(takers).await {
            taker.unwrap();
        }
        eprintln!("{LOCKS} locks taken in {:?}", started.elapsed());

        let mut pages = 0;
        let mut largest = 0;
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = None;
        loop {
            let page = locker.list("bulk:", cursor.as_ref()).await.unwrap();
            pages += 1;
            largest = largest.max(page.resources.len());
            assert!(page.failures.is_empty());
            seen.extend(page.resources);
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        eprintln!("{pages} pages, the largest {largest} names");
        assert_eq!(seen.len(), LOCKS);
        assert!(seen.iter().all(|name| name.starts_with("bulk:")));
        assert!(pages >= 5, "{pages} pages: not paged");
        assert!(
            largest < LOCKS / 2,
            "a page of {largest} names is not a page"
        );
        // Unrelated names are not listed.
        assert!(locker.list_all("other").await.unwrap().is_empty());
        // A cursor from elsewhere is refused, not misread.
        let foreign = locker.list("bulk:", None).await.unwrap().next.unwrap();
        let five = common::locker(&start(5), parked());
        assert!(matches!(
            locker.list("bulk:0", Some(&foreign)).await,
            Err(Error::InvalidOptions(_))
        ));
        assert!(matches!(
            five.list("bulk:", Some(&foreign)).await,
            Err(Error::InvalidOptions(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn odd_names_and_foreign_keys_are_listed_right() {
    let nodes = start(1);
    let locker = locker(&nodes, parked());
    bounded(LIMIT, async {
        let names = ["a", "a}b", "a*c", "x{y", "é:fence", "q}:fence"];
        let mut guards = Vec::new();
        for name in names {
            guards.push(locker.try_lock(name).await.unwrap());
        }
        // Keys under the prefix that are not fencelock locks.
        let mut c = common::conn(&nodes.node(0).url()).await;
        let _: () = redis::cmd("SET")
            .arg("fencelock:{plain}")
            .arg("1")
            .query_async(&mut c)
            .await
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg(&b"fencelock:{raw\xfe}"[..])
            .arg("f")
            .arg("v")
            .query_async(&mut c)
            .await
            .unwrap();

        let mut all = names.map(str::to_owned).to_vec();
        all.sort();
        assert_eq!(locker.list_all("").await.unwrap(), all);
        assert_eq!(locker.list_all("a}").await.unwrap(), ["a}b"]);
        assert_eq!(locker.list_all("a*").await.unwrap(), ["a*c"]);
        assert_eq!(locker.list_all("x{").await.unwrap(), ["x{y"]);
        for guard in guards {
            guard.release().await.unwrap();
        }
        assert!(locker.list_all("").await.unwrap().is_empty());
    })
    .await;
}
