//! A node that becomes a replica while locks are held on it: synced, its
//! holds vanish (replaced by its primary's data), and extend and release
//! count it as a node without them; cut off from its primary, it keeps them
//! but can change nothing, and says so (`READONLY`, typed). See
//! `redis` for a replica from the start.

use std::time::Duration;

use super::redis::{
    Case, LIMIT, assert_no_locks, command, info_field, make_replica, options, primary,
};
use crate::common::{bounded, lock_keys, locker, pttl, start};
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use fencelock::{Error, Locker, Redlock};

/// Makes the node at `url` a replica of a primary that is not there: it
/// refuses writes at once, and keeps its own data.
async fn make_orphan_replica(url: &str) {
    // A port nothing listens on: bound, then closed again.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    command(url, redis::cmd("REPLICAOF").arg("127.0.0.1").arg(port)).await;
    let role = info_field(url, "replication", "role").await;
    assert_eq!(role.as_deref(), Some("slave"), "{url}");
}

/// A node that becomes a replica while a lock is held on it has its data
/// replaced by its primary's: the hold is gone there. Extend and release
/// count it as a node without the hold (a no, not a failure): with one of
/// three nodes turned, the lock is still held on the two others and both
/// succeed; with two of three, the lock is no longer held, and both say so.
#[tokio::test]
async fn a_node_turned_replica_while_held_loses_its_holds() {
    let nodes = start(3);
    let primary = primary();
    let locker = locker(&nodes, options());
    let urls = nodes.urls();
    bounded(LIMIT, async {
        let guard = locker.try_lock("turned").await.unwrap();
        let permit = locker
            .semaphore("turned-sem", 2)
            .unwrap()
            .try_acquire()
            .await
            .unwrap();

        make_replica(&urls[2], &primary).await;
        assert!(
            lock_keys(&urls[2]).await.is_empty(),
            "the sync kept the holds"
        );
        guard.extend(Duration::from_secs(20)).await.unwrap();
        for url in &urls[..2] {
            assert!(pttl(url, "fencelock:{turned}").await > 10_000, "{url}");
        }
        let info = locker.inspect("turned").await.unwrap();
        assert_eq!(info.locked_nodes(), 2, "{info:?}");
        assert!(matches!(info.nodes[2].lock, Ok(None)), "{info:?}");
        assert_eq!(info.agreed.map(|h| h.token), Some(guard.token()));
        guard.release().await.unwrap();

        make_replica(&urls[1], &primary).await;
        let err = permit.extend(Duration::from_secs(20)).await.unwrap_err();
        assert!(matches!(err, Error::NotHeld { .. }), "{err:?}");
        let err = permit.release().await.unwrap_err();
        assert!(matches!(err, Error::NotHeld { .. }), "{err:?}");

        locker.settled().await;
        assert_no_locks(&nodes.iter().chain([&primary]).collect::<Vec<_>>()).await;
    })
    .await;
}

/// A node made a replica of a primary it cannot reach keeps its data but
/// refuses every write: a lock held there can neither be lengthened nor
/// removed. Alone, extend and release are outages naming the node and
/// `READONLY`; the hold stays on the node until its ttl runs out (the
/// node reads it as gone from then on), and a node back to primary can
/// have it removed.
#[tokio::test]
async fn a_replica_cut_off_from_its_primary_cannot_release() {
    let node = RedisServer::start().unwrap();
    let locker = Locker::new(Redlock::from_urls([node.url()]).unwrap(), options()).unwrap();
    let case = Case::read_only(&node);
    bounded(LIMIT, async {
        let guard = locker.try_lock("orphan").await.unwrap();
        make_orphan_replica(&node.url()).await;
        let err = guard.extend(Duration::from_secs(20)).await.unwrap_err();
        case.assert_outage(&err, (0, 0, 1));
        let err = guard.release().await.unwrap_err();
        case.assert_outage(&err, (0, 0, 1));
        let left = pttl(&node.url(), "fencelock:{orphan}").await;
        assert!((1..=10_000).contains(&left), "pttl {left}");

        command(&node.url(), redis::cmd("REPLICAOF").arg("NO").arg("ONE")).await;
        let forced = locker.force_release("orphan").await.unwrap();
        assert_eq!(
            (forced.removed, forced.failures.len()),
            (1, 0),
            "{forced:?}"
        );
        locker.settled().await;
        assert_no_locks(&[&node]).await;
    })
    .await;
}
