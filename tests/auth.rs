//! Nodes that require a password: real redis-server with ACL users. The
//! right credentials lock (waiting on release notifications included); a
//! wrong password or a user without the keys gives a clear, typed error
//! naming the node, in bounded time, and never shows the password.
//!
//! Not yet: an authentication failure is an outage like any other, so a
//! `lock` without a timeout retries it for ever; `lock_timeout` ends.

mod common;

use std::time::Duration;

use common::bounded;
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use fencelock::{Error, LockOptions, Locker, NodeFault, Redlock, RetryPolicy};

const LIMIT: Duration = Duration::from_secs(30);

/// A server whose users are `alice` (password `s3cret`, the lock keys and
/// every channel) and `bob` (password `pw`, only keys under `other:`).
fn server() -> RedisServer {
    let mut builder = RedisServer::builder();
    for arg in [
        "--user",
        "alice",
        "on",
        ">s3cret",
        "~fencelock:*",
        "&*",
        "+@all",
        "--user",
        "bob",
        "on",
        ">pw",
        "~other:*",
        "&*",
        "+@all",
    ] {
        builder = builder.arg(arg);
    }
    builder
        .start()
        .expect("start redis-server (run scripts/setup)")
}

fn locker_as(server: &RedisServer, credentials: &str) -> Locker<Redlock> {
    let url = format!("redis://{credentials}@{}", server.addr());
    let options = LockOptions::default().node_timeout(Duration::from_millis(500));
    Locker::new(Redlock::from_urls([url]).unwrap(), options).unwrap()
}

#[tokio::test]
async fn the_right_user_locks_and_waits_on_release_notifications() {
    let server = server();
    // A poll would come only after a minute: the waiter is woken by the
    // release announcement, over its own subscriber connection as alice.
    let locker = locker_as(&server, "alice:s3cret")
        .with_options(
            LockOptions::default()
                .node_timeout(Duration::from_millis(500))
                .retry(RetryPolicy::default().delay(Duration::from_secs(60))),
        )
        .unwrap();
    let mut watcher = common::conn(&format!("redis://alice:s3cret@{}", server.addr())).await;
    bounded(LIMIT, async {
        let guard = locker.lock("billing").await.unwrap();
        let waiter = {
            let locker = locker.clone();
            tokio::spawn(async move { locker.lock("billing").await.map(|g| g.token()) })
        };
        common::wait_until(Duration::from_secs(10), async || {
            let (_, listening): (String, u32) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("fencelock:{billing}:released")
                .query_async(&mut watcher)
                .await
                .unwrap();
            listening == 1
        })
        .await;
        let first = guard.token();
        guard.release().await.unwrap();
        let second = waiter.await.unwrap().unwrap();
        assert!(second > first);
    })
    .await;
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_naming_the_node() {
    let server = server();
    let locker = locker_as(&server, "alice:wrong-pass");
    bounded(LIMIT, async {
        let refused = locker.try_lock("billing").await;
        let Err(Error::QuorumUnavailable { failures, .. }) = &refused else {
            panic!("expected an outage, got {refused:?}");
        };
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].node.contains(&server.port().to_string()),
            "{failures:?}"
        );
        let message = refused.as_ref().unwrap_err().to_string();
        assert!(
            message.to_lowercase().contains("authentication failed"),
            "{message}"
        );
        assert!(!message.contains("wrong-pass"), "password shown: {message}");
        // Waiting gives up in time rather than hanging.
        let waited = locker
            .lock_timeout("billing", Duration::from_millis(500))
            .await;
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
    })
    .await;
    // Nothing reached the keys.
    let alice = locker_as(&server, "alice:s3cret");
    assert!(!bounded(LIMIT, alice.is_locked("billing")).await.unwrap());
}

#[tokio::test]
async fn a_user_without_the_keys_gets_noperm_and_leaves_nothing() {
    let server = server();
    let locker = locker_as(&server, "bob:pw");
    bounded(LIMIT, async {
        let refused = locker.try_lock("billing").await;
        let Err(Error::QuorumUnavailable { failures, .. }) = &refused else {
            panic!("expected the node to refuse, got {refused:?}");
        };
        assert!(
            matches!(&failures[0].fault, NodeFault::Server(m) if m.to_lowercase().contains("noperm")),
            "{failures:?}"
        );
        let alice = locker_as(&server, "alice:s3cret");
        assert!(!alice.is_locked("billing").await.unwrap());
    })
    .await;
}
