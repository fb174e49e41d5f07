//! Nodes that require a password: real redis-server with ACL users. The
//! right credentials lock (waiting on release notifications included); a
//! wrong password, no password or a user without the keys gives a clear,
//! typed error naming the node, in bounded time, and never shows the
//! password. Such a refusal does not go away by waiting, so it is final:
//! `lock` and `lock_timeout` return it at once instead of retrying, as long
//! as the refusing nodes keep a quorum out of reach (and only then).

use std::time::{Duration, Instant};

use crate::common;
use crate::common::bounded;
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use fencelock::{Error, LockOptions, Locker, NodeFault, Redlock, RetryPolicy};

const LIMIT: Duration = Duration::from_secs(30);
/// How soon a final error must come back: a few round trips on loopback,
/// with room for a busy machine.
const PROMPT: Duration = Duration::from_secs(5);

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
        let channel = common::release_channel("billing");
        common::wait_until(Duration::from_secs(10), async || {
            common::subscribers(&mut watcher, &channel).await == 1
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
        assert!(
            matches!(&failures[0].fault, NodeFault::Denied(_)),
            "{failures:?}"
        );
        assert!(!refused.as_ref().unwrap_err().is_retryable());
        // Waiting cannot help: both forms of waiting return the refusal at
        // once, `lock` without a timeout included.
        let started = Instant::now();
        let waited = locker
            .lock_timeout("billing", Duration::from_secs(20))
            .await;
        assert!(
            matches!(&waited, Err(e @ Error::QuorumUnavailable { .. }) if e.is_denied()),
            "{waited:?}"
        );
        let waited = locker.lock("billing").await;
        assert!(
            matches!(&waited, Err(e @ Error::QuorumUnavailable { .. }) if e.is_denied()),
            "{waited:?}"
        );
        let message = waited.unwrap_err().to_string();
        assert!(message.contains("not retried"), "{message}");
        assert!(!message.contains("wrong-pass"), "password shown: {message}");
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
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
            matches!(&failures[0].fault, NodeFault::Denied(m) if m.to_lowercase().contains("noperm")),
            "{failures:?}"
        );
        // Final too: `lock` does not retry what the server will refuse again.
        let started = Instant::now();
        let waited = locker.lock("billing").await;
        assert!(
            matches!(&waited, Err(e @ Error::QuorumUnavailable { .. }) if e.is_denied()),
            "{waited:?}"
        );
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        let alice = locker_as(&server, "alice:s3cret");
        assert!(!alice.is_locked("billing").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn no_password_where_one_is_needed_is_final() {
    let server = RedisServer::start().expect("start redis-server (run scripts/setup)");
    // Set once the server is up: the fixture's readiness check does not log in.
    let mut admin = common::conn(&server.url()).await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query_async(&mut admin)
        .await
        .unwrap();
    let locker = Locker::new(
        Redlock::from_urls([server.url()]).unwrap(),
        LockOptions::default().node_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    bounded(LIMIT, async {
        let started = Instant::now();
        let refused = locker.lock("billing").await.map(|_| ()).unwrap_err();
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        let Error::QuorumUnavailable { failures, .. } = &refused else {
            panic!("expected the node to refuse, got {refused:?}");
        };
        assert!(
            matches!(&failures[0].fault, NodeFault::Denied(m) if m.contains("NOAUTH")),
            "{failures:?}"
        );
        assert!(refused.is_denied(), "{refused:?}");
    })
    .await;
}

/// Three servers with the same users; `credentials[i]` for node `i`.
fn redlock_as(servers: &[RedisServer], credentials: [&str; 3]) -> Locker<Redlock> {
    let urls = servers
        .iter()
        .zip(credentials)
        .map(|(server, credentials)| format!("redis://{credentials}@{}", server.addr()));
    let options = LockOptions::default()
        .node_timeout(Duration::from_millis(300))
        .retry(RetryPolicy::default().delay(Duration::from_millis(20)));
    Locker::new(Redlock::from_urls(urls).unwrap(), options).unwrap()
}

#[tokio::test]
async fn refusals_are_final_only_when_they_keep_the_quorum_out_of_reach() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| server()).collect();
    bounded(LIMIT, async {
        // One node of three refuses: the other two are a quorum.
        let locker = redlock_as(&servers, ["alice:s3cret", "alice:s3cret", "alice:nope"]);
        locker
            .lock("billing")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();

        // Two refuse: no quorum can be had, final at once, naming both.
        let locker = redlock_as(&servers, ["alice:s3cret", "alice:nope", "alice:nope"]);
        let started = Instant::now();
        let refused = locker.lock("billing").await.map(|_| ()).unwrap_err();
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        assert!(refused.is_denied(), "{refused:?}");
        let Error::QuorumUnavailable { failures, .. } = &refused else {
            panic!("{refused:?}");
        };
        let mut named: Vec<&str> = failures.iter().map(|f| f.node.as_str()).collect();
        named.sort_unstable();
        let mut expected = [servers[1].addr().to_string(), servers[2].addr().to_string()];
        expected.sort_unstable();
        assert_eq!(named, expected, "{refused}");
    })
    .await;

    // One refuses and one is down: the down one may come back, so this is
    // an outage as ever, and waiting ends at its deadline, not before.
    servers[1].kill();
    bounded(LIMIT, async {
        let locker = redlock_as(&servers, ["alice:s3cret", "alice:s3cret", "alice:nope"]);
        let refused = locker.try_lock("billing").await.map(|_| ()).unwrap_err();
        assert!(
            refused.is_retryable() && !refused.is_denied(),
            "{refused:?}"
        );
        let waited = locker
            .lock_timeout("billing", Duration::from_millis(500))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(waited, Error::Timeout { .. }), "{waited:?}");
    })
    .await;
}
