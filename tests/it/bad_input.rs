//! Every bad input is rejected with its typed error before any I/O, and
//! nothing panics.

use std::time::Duration;

use fencelock::{Error, LockOptions, Locker, MAX_KEY_LEN, RedisNode, Redlock, RetryPolicy};

/// No server listens here: a call that reached the network would fail with a
/// connection error, not with the input error the tests expect.
const NOWHERE: &str = "redis://127.0.0.1:1";

fn invalid_options(result: fencelock::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::InvalidOptions(msg)) => msg,
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
}

/// `n` distinct addresses where nothing listens (ports 1, 2, ... on loopback).
fn redlock(n: usize) -> Redlock {
    Redlock::from_urls((1..=n).map(|port| format!("redis://127.0.0.1:{port}"))).unwrap()
}

#[test]
fn bad_options_are_rejected_by_name() {
    let cases: Vec<(LockOptions, usize, &str)> = vec![
        (LockOptions::default().ttl(Duration::ZERO), 1, "ttl"),
        (
            LockOptions::default().ttl(Duration::from_micros(10)),
            1,
            "ttl",
        ),
        (
            LockOptions::default().ttl(Duration::from_secs(90_000)),
            1,
            "ttl",
        ),
        (LockOptions::default().drift_factor(-0.1), 1, "drift"),
        (
            LockOptions::default().node_timeout(Duration::ZERO),
            1,
            "node_timeout",
        ),
        (
            LockOptions::default()
                .ttl(Duration::from_secs(1))
                .node_timeout(Duration::from_secs(2)),
            1,
            "node_timeout",
        ),
        (
            LockOptions::default().max_reentrancy(0),
            1,
            "max_reentrancy",
        ),
        (
            LockOptions::default().retry(RetryPolicy::default().max_attempts(0)),
            1,
            "max_attempts",
        ),
        (
            LockOptions::default().retry(RetryPolicy::default().delay(Duration::MAX)),
            1,
            "retry delay",
        ),
        (
            LockOptions::default().retry(RetryPolicy::default().jitter(Duration::MAX)),
            1,
            "retry delay",
        ),
    ];
    for (options, nodes, needle) in cases {
        let msg = invalid_options(Locker::new(redlock(nodes), options.clone()));
        assert!(
            msg.contains(needle),
            "{options:?}: {msg:?} lacks {needle:?}"
        );
    }
}

#[test]
fn no_nodes_and_bad_urls_are_rejected() {
    assert!(invalid_options(Redlock::new(Vec::new())).contains("no nodes"));
    assert!(invalid_options(Redlock::from_urls(Vec::<String>::new())).contains("no nodes"));
    for url in [
        "",
        "localhost:6379",
        "http://127.0.0.1:6379",
        "redis://127.0.0.1:99999",
    ] {
        let msg = invalid_options(RedisNode::from_url(url));
        assert!(msg.contains("bad node URL"), "{url:?}: {msg}");
        invalid_options(Locker::redis([NOWHERE, url]));
    }
    let twice = Redlock::from_urls([
        "redis://127.0.0.1:7001",
        "redis://127.0.0.1:7002",
        "redis://127.0.0.1:7001",
    ]);
    assert!(invalid_options(twice).contains("listed twice"));
    let too_many = (0..=Redlock::MAX_NODES).map(|i| format!("redis://127.0.0.1:{}", 7000 + i));
    assert!(invalid_options(Redlock::from_urls(too_many)).contains("at most 64"));
    for (quorum, needle) in [(4, "quorum 4 exceeds"), (0, "at least 1"), (1, "majority")] {
        let msg = invalid_options(redlock(3).with_quorum(quorum));
        assert!(
            msg.contains(needle),
            "quorum {quorum}: {msg:?} lacks {needle:?}"
        );
    }
    assert_eq!(redlock(3).with_quorum(3).unwrap().quorum(), 3);
    let msg = invalid_options(RedisNode::from_url("redis://user:s3cret@127.0.0.1:port"));
    assert!(!msg.contains("s3cret"), "password leaked: {msg}");
}

#[tokio::test]
async fn bad_keys_are_rejected_before_any_io() {
    let locker = Locker::new(redlock(3), LockOptions::default()).unwrap();
    let long = "k".repeat(MAX_KEY_LEN + 1);
    // Bounded: were a key let through, `lock` would retry the dead node forever.
    let checks = async {
        for key in ["", long.as_str()] {
            let wait = Duration::from_secs(1);
            assert!(matches!(
                locker.try_lock(key).await,
                Err(Error::InvalidKey(_))
            ));
            assert!(matches!(locker.lock(key).await, Err(Error::InvalidKey(_))));
            assert!(matches!(
                locker.lock_timeout(key, wait).await,
                Err(Error::InvalidKey(_))
            ));
            let with = locker.with_lock(key, async |_| ()).await;
            assert!(matches!(with, Err(Error::InvalidKey(_))), "{with:?}");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), checks)
        .await
        .expect("bad keys must be rejected at once");
}

#[tokio::test]
async fn an_unreachable_node_is_an_outage_not_bad_input() {
    // The other side of the previous test: valid input does reach the network.
    let options = LockOptions::default().node_timeout(Duration::from_millis(100));
    let locker = Locker::new(redlock(1), options).unwrap();
    let err = locker.try_lock("k").await.map(|_| ()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::QuorumUnavailable {
                confirmed: 0,
                refused: 0,
                needed: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn a_bad_ttl_in_extend_is_rejected() {
    // extend validates its ttl before touching the nodes; a guard is needed,
    // so this runs against a real node.
    let node = fencelock::testing::RedisServer::start().unwrap();
    let locker = Locker::redis([node.url()]).unwrap();
    let guard = locker.try_lock("k").await.unwrap();
    let err = guard.extend(Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    guard.release().await.unwrap();
}
