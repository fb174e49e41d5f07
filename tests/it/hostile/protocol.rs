//! Hostile situations, table-driven: a node that is not Redis, a node that
//! answers every command with an error, a node that cuts its reply in half,
//! a node that never answers, lock keys holding data of another kind, and
//! oversized input. Each gives a typed error, nothing panics or hangs, and
//! nothing is left locked on the real servers.
//!
//! The hostile peers are tiny TCP servers inside the test (they play a
//! broken or foreign peer, not Redis's behaviour; see `peers`);
//! every Redis here is a real redis-server.

use std::time::Duration;

use super::peers::{Hostile, NODE_TIMEOUT, PEERS, Peer, expected_fault};
use crate::common;
use crate::common::{bounded, conn, wait_until};
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use fencelock::{
    Error, FencedStore, FencingToken, LockOptions, Locker, MAX_KEY_LEN, MAX_PREFIX_LEN, NodeFault,
    Redlock, RetryPolicy, Watchdog,
};

const LIMIT: Duration = Duration::from_secs(60);
/// A short wait for `lock_timeout`: long enough for a few attempts.
const SHORT_WAIT: Duration = Duration::from_millis(400);

fn options() -> LockOptions {
    LockOptions::default()
        .ttl(Duration::from_secs(10))
        .node_timeout(NODE_TIMEOUT)
        .watchdog(Watchdog::Off)
        .retry(
            RetryPolicy::default()
                .delay(Duration::from_millis(20))
                .jitter(Duration::from_millis(10)),
        )
}

/// Checks `err` is `QuorumUnavailable` with `(confirmed, refused, needed)`
/// as given, whose failures are exactly `hostile`, each with the fault
/// `peer` causes.
fn assert_outage(
    err: &Error,
    (confirmed, refused, needed): (usize, usize, usize),
    hostile: &[&Hostile],
    peer: Peer,
) {
    let Error::QuorumUnavailable {
        confirmed: c,
        refused: r,
        needed: n,
        failures,
    } = err
    else {
        panic!("{peer:?}: expected QuorumUnavailable, got {err:?}");
    };
    assert_eq!(
        (*c, *r, *n),
        (confirmed, refused, needed),
        "{peer:?}: {err}"
    );
    let mut failed: Vec<&str> = failures.iter().map(|f| f.node.as_str()).collect();
    let mut names: Vec<String> = hostile.iter().map(|h| h.name()).collect();
    failed.sort_unstable();
    names.sort_unstable();
    assert_eq!(failed, names, "{peer:?}: {err}");
    for failure in failures {
        assert!(
            expected_fault(peer, &failure.fault),
            "{peer:?}: unexpected fault {failure}"
        );
    }
}

/// The fencelock lock hashes (with an owner) on one real node.
async fn lock_hashes(url: &str) -> Vec<String> {
    let mut c = conn(url).await;
    let mut found = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("fencelock:*")
            .arg("TYPE")
            .arg("hash")
            .query_async(&mut c)
            .await
            .unwrap();
        for key in batch {
            let owned: bool = redis::cmd("HEXISTS")
                .arg(&key)
                .arg(":owner")
                .query_async(&mut c)
                .await
                .unwrap();
            if owned {
                found.push(key);
            }
        }
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Waits (bounded) until the coordinator's background work is done, then
/// checks that no real node holds a lock.
async fn assert_nothing_locked(redlock: &Redlock, real: &[&RedisServer]) {
    redlock.settled().await;
    for server in real {
        let left = lock_hashes(&server.url()).await;
        assert!(left.is_empty(), "{}: locks left: {left:?}", server.url());
    }
}

#[tokio::test]
async fn a_hostile_node_alone_is_an_outage_on_every_call() {
    bounded(LIMIT, async {
        for peer in PEERS {
            let hostile = Hostile::start(peer).await;
            let locker =
                Locker::new(Redlock::from_urls([hostile.url()]).unwrap(), options()).unwrap();

            let err = locker.try_lock("k").await.map(|_| ()).unwrap_err();
            assert_outage(&err, (0, 0, 1), &[&hostile], peer);

            let err = locker
                .lock_timeout("k", SHORT_WAIT)
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "{peer:?}: {err:?}");

            let info = locker.inspect("k").await.unwrap();
            assert!(info.agreed.is_none(), "{peer:?}: {info:?}");
            match &info.nodes[0].lock {
                Err(fault) => assert!(expected_fault(peer, fault), "{peer:?}: {fault}"),
                Ok(view) => panic!("{peer:?}: inspect read {view:?}"),
            }
            let err = locker.is_locked("k").await.unwrap_err();
            assert_outage(&err, (0, 0, 1), &[&hostile], peer);

            let forced = locker.force_release("k").await.unwrap();
            assert_eq!(forced.removed, 0, "{peer:?}");
            assert_eq!(forced.failures.len(), 1, "{peer:?}");
            assert!(expected_fault(peer, &forced.failures[0].fault), "{peer:?}");

            let err = locker.list_all("").await.unwrap_err();
            assert_outage(&err, (0, 0, 1), &[&hostile], peer);
            locker.backend().settled().await;
            assert!(hostile.accepted() > 0, "{peer:?}: the peer was never asked");
        }
    })
    .await;
}

#[tokio::test]
async fn two_real_nodes_outvote_a_hostile_one() {
    let real = [RedisServer::start().unwrap(), RedisServer::start().unwrap()];
    bounded(LIMIT, async {
        for peer in PEERS {
            let hostile = Hostile::start(peer).await;
            let urls = [real[0].url(), hostile.url(), real[1].url()];
            let locker = Locker::new(Redlock::from_urls(urls).unwrap(), options()).unwrap();
            let key = format!("mixed-{peer:?}");

            let guard = locker.try_lock(&key).await.unwrap();
            let info = locker.inspect(&key).await.unwrap();
            let agreed = info.agreed.as_ref().expect("a quorum agrees");
            assert_eq!(agreed.token, guard.token(), "{peer:?}");
            assert_eq!(info.locked_nodes(), 2, "{peer:?}: {info:?}");
            match &info.nodes[1].lock {
                Err(fault) => assert!(expected_fault(peer, fault), "{peer:?}: {fault}"),
                Ok(view) => panic!("{peer:?}: inspect read {view:?}"),
            }
            assert!(locker.is_locked(&key).await.unwrap(), "{peer:?}");
            guard.release().await.unwrap();

            // Waiting works too, and a forced release reaches the real nodes.
            let guard = locker.lock_timeout(&key, SHORT_WAIT).await.unwrap();
            let forced = locker.force_release(&key).await.unwrap();
            assert_eq!(forced.removed, 2, "{peer:?}: {forced:?}");
            assert_eq!(forced.failures.len(), 1, "{peer:?}: {forced:?}");
            let late = guard.release().await;
            assert!(
                matches!(late, Err(Error::NotHeld { .. })),
                "{peer:?}: {late:?}"
            );

            assert_nothing_locked(locker.backend(), &[&real[0], &real[1]]).await;
        }
    })
    .await;
}

#[tokio::test]
async fn two_hostile_nodes_make_a_quorum_unavailable_naming_them() {
    let real = RedisServer::start().unwrap();
    bounded(LIMIT, async {
        // A new node that alone cannot make a quorum is not taken for a new
        // cluster (docs/algorithm.md, section 15): let a one-node
        // coordinator mark it first, so that here it votes.
        let alone = Locker::new(Redlock::from_urls([real.url()]).unwrap(), options()).unwrap();
        alone
            .try_lock("warm")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        for peer in PEERS {
            let (a, b) = (Hostile::start(peer).await, Hostile::start(peer).await);
            let urls = [a.url(), real.url(), b.url()];
            let locker = Locker::new(Redlock::from_urls(urls).unwrap(), options()).unwrap();

            let err = locker.try_lock("outvoted").await.map(|_| ()).unwrap_err();
            assert_outage(&err, (1, 0, 2), &[&a, &b], peer);
            let err = locker
                .lock_timeout("outvoted", SHORT_WAIT)
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "{peer:?}: {err:?}");
            // The attempt lock_timeout cut off is undone by a release of
            // its own, in the background; once it has landed, the real
            // node holds no lock and answers no.
            let url = real.url();
            wait_until(Duration::from_secs(5), async || {
                lock_hashes(&url).await.is_empty()
            })
            .await;
            let err = locker.is_locked("outvoted").await.unwrap_err();
            assert_outage(&err, (0, 1, 2), &[&a, &b], peer);

            // The real node granted every attempt; each was undone.
            assert_nothing_locked(locker.backend(), &[&real]).await;
        }
    })
    .await;
}

/// Data of another kind planted where fencelock keeps a lock or its
/// fencing counter: `(name, key suffix after the lock key, command, args,
/// what the node's error must say)`.
type Planted = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

const PLANTED: [Planted; 5] = [
    ("lock-string", "", "SET", &["x"], "WRONGTYPE"),
    ("lock-list", "", "RPUSH", &["x", "y"], "WRONGTYPE"),
    (
        "lock-foreign-hash",
        "",
        "HSET",
        &["a", "b"],
        "not a fencelock lock",
    ),
    (
        "fence-not-a-number",
        ":fence",
        "SET",
        &["abc"],
        "not an integer",
    ),
    ("fence-hash", ":fence", "HSET", &["a", "b"], "WRONGTYPE"),
];

fn plant(key: &str, (_, suffix, command, args, _): Planted) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(format!("fencelock:{{{key}}}{suffix}")).arg(args);
    cmd
}

async fn dump(url: &str, key: &str, suffix: &str) -> Option<Vec<u8>> {
    let mut c = conn(url).await;
    redis::cmd("DUMP")
        .arg(format!("fencelock:{{{key}}}{suffix}"))
        .query_async(&mut c)
        .await
        .unwrap()
}

fn server_fault(fault: &NodeFault, needle: &str) -> bool {
    matches!(fault, NodeFault::Server(m) if m.contains(needle))
}

#[tokio::test]
async fn data_of_another_kind_at_a_lock_key_is_a_typed_error() {
    let server = RedisServer::start().unwrap();
    let mut c = conn(&server.url()).await;
    let locker = Locker::new(Redlock::from_urls([server.url()]).unwrap(), options()).unwrap();
    bounded(LIMIT, async {
        for case @ (name, suffix, _, _, needle) in PLANTED {
            let () = plant(name, case).query_async(&mut c).await.unwrap();
            let before = dump(&server.url(), name, suffix).await;

            let err = locker.try_lock(name).await.map(|_| ()).unwrap_err();
            let Error::QuorumUnavailable { failures, .. } = &err else {
                panic!("{name}: expected a node failure, got {err:?}");
            };
            assert!(server_fault(&failures[0].fault, needle), "{name}: {err}");
            let err = locker
                .lock_timeout(name, SHORT_WAIT)
                .await
                .map(|_| ())
                .unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "{name}: {err:?}");

            let info = locker.inspect(name).await.unwrap();
            match (suffix, &info.nodes[0].lock) {
                // Foreign data at the lock key: a clear error for this node.
                ("", Err(fault)) => assert!(
                    server_fault(fault, "not a fencelock lock"),
                    "{name}: {fault}"
                ),
                // A broken counter does not show in the lock's view.
                (":fence", Ok(None)) => {}
                (_, other) => panic!("{name}: inspect read {other:?}"),
            }
            // force_release leaves foreign data alone, and says so.
            let forced = locker.force_release(name).await.unwrap();
            assert_eq!(forced.removed, 0, "{name}: {forced:?}");
            match suffix {
                "" => assert!(
                    forced.failures.len() == 1
                        && server_fault(&forced.failures[0].fault, "not a fencelock lock"),
                    "{name}: {forced:?}"
                ),
                _ => assert!(forced.failures.is_empty(), "{name}: {forced:?}"),
            }

            locker.backend().settled().await;
            assert_eq!(
                dump(&server.url(), name, suffix).await,
                before,
                "{name}: the planted data was changed"
            );
            assert!(lock_hashes(&server.url()).await.is_empty(), "{name}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_node_with_foreign_data_is_outvoted() {
    let nodes = common::start(3);
    let mut c = conn(&nodes.node(1).url()).await;
    let locker = Locker::new(Redlock::from_urls(nodes.urls()).unwrap(), options()).unwrap();
    bounded(LIMIT, async {
        for case @ (name, ..) in PLANTED {
            let () = plant(name, case).query_async(&mut c).await.unwrap();
            let guard = locker.try_lock(name).await.unwrap();
            let info = locker.inspect(name).await.unwrap();
            assert_eq!(info.agreed.map(|h| h.token), Some(guard.token()), "{name}");
            guard.release().await.unwrap();
            assert_nothing_locked(locker.backend(), &nodes.iter().collect::<Vec<_>>()).await;
        }
    })
    .await;
}

#[tokio::test]
async fn oversized_input_is_rejected_before_any_io() {
    bounded(LIMIT, async {
        // Any I/O would reach this peer (and then time out).
        let peer = Hostile::start(Peer::Silent).await;
        let redlock = || Redlock::from_urls([peer.url()]).unwrap();
        let locker = Locker::new(redlock(), options()).unwrap();
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let key = long.as_str();

        let calls: Vec<(&str, fencelock::Result<()>)> = vec![
            ("try_lock", locker.try_lock(key).await.map(|_| ())),
            ("lock", locker.lock(key).await.map(|_| ())),
            (
                "lock_timeout",
                locker.lock_timeout(key, SHORT_WAIT).await.map(|_| ()),
            ),
            ("with_lock", locker.with_lock(key, async |_| ()).await),
            ("inspect", locker.inspect(key).await.map(|_| ())),
            ("is_locked", locker.is_locked(key).await.map(|_| ())),
            ("force_release", locker.force_release(key).await.map(|_| ())),
            ("list", locker.list(key, None).await.map(|_| ())),
        ];
        for (call, result) in calls {
            assert!(
                matches!(result, Err(Error::InvalidKey(_))),
                "{call}: {result:?}"
            );
        }

        let prefix = "p".repeat(MAX_PREFIX_LEN + 1);
        let made = Locker::new(redlock(), options().key_prefix(prefix.as_str()));
        assert!(matches!(made, Err(Error::InvalidOptions(_))), "{made:?}");
        let changed = locker.with_options(options().key_prefix(prefix.as_str()));
        assert!(
            matches!(changed, Err(Error::InvalidOptions(_))),
            "{changed:?}"
        );

        let store = FencedStore::from_url(&peer.url()).unwrap();
        let write = store.write(key, FencingToken::new(1), "v").await;
        assert!(matches!(write, Err(Error::InvalidKey(_))), "{write:?}");
        let store = store.with_prefix(prefix);
        assert!(matches!(store, Err(Error::InvalidOptions(_))), "{store:?}");

        assert_eq!(peer.accepted(), 0, "bad input reached the network");
    })
    .await;
}

#[tokio::test]
async fn a_value_beyond_the_servers_bulk_limit_is_a_typed_error() {
    // The smallest limit Redis accepts.
    let server = RedisServer::builder()
        .arg("--proto-max-bulk-len")
        .arg("1mb")
        .start()
        .unwrap();
    let store = FencedStore::from_url(&server.url()).unwrap();
    bounded(LIMIT, async {
        let token = FencingToken::new(3);
        assert!(
            store
                .write("big", token, "small")
                .await
                .unwrap()
                .is_accepted()
        );
        let huge = vec![b'x'; 2 << 20];
        let err = store
            .write("big", FencingToken::new(4), &huge)
            .await
            .unwrap_err();
        let Error::QuorumUnavailable { failures, .. } = &err else {
            panic!("expected a node failure, got {err:?}");
        };
        assert!(
            matches!(
                failures[0].fault,
                NodeFault::Server(_) | NodeFault::Connection(_)
            ),
            "{err}"
        );
        // Nothing was written, and the store works on afterwards.
        let stored = store.read("big").await.unwrap().unwrap();
        assert_eq!(
            (stored.fence, stored.value.as_slice()),
            (token, &b"small"[..])
        );
        assert!(
            store
                .write("big", FencingToken::new(4), "fine")
                .await
                .unwrap()
                .is_accepted()
        );
    })
    .await;
}
