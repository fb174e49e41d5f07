//! Real redis-servers whose scripts are flushed (`SCRIPT FLUSH`) while a
//! client uses them: between acquire and release, between any two calls,
//! and while the watchdog renews. The client loads them again by itself:
//! `NOSCRIPT` never reaches the caller, and no node counts as failed for
//! it. On one node any failure would fail the call; on three, each node is
//! checked to have done its part.

use std::time::Duration;

use std::time::Instant;

use super::redis::assert_granted_on;
use crate::common::{bounded, conn, lock_keys, lock_once, pttl, start, wait_until};
use fencelock::deadpool_redis::redis;
use fencelock::testing::{RedisNodes, RedisServer, TcpProxy};
use fencelock::{Error, LockOptions, Locker, Redlock, RetryPolicy, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

fn options() -> LockOptions {
    LockOptions::default()
        .ttl(Duration::from_secs(10))
        .node_timeout(Duration::from_millis(250))
        .watchdog(Watchdog::Off)
        .retry(
            RetryPolicy::default()
                .delay(Duration::from_millis(20))
                .jitter(Duration::from_millis(10)),
        )
}

/// `SCRIPT FLUSH` on every node.
async fn flush(nodes: &RedisNodes) {
    for node in nodes {
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn(&node.url()).await)
            .await
            .unwrap();
    }
}

/// How many scripts the node at `url` has loaded.
async fn cached_scripts(url: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn(url).await)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("number_of_cached_scripts:"))
        .expect("INFO memory names the cached scripts")
        .trim()
        .parse()
        .unwrap()
}

/// Every call of a lock's life, of each kind, with the scripts flushed on
/// every node before each: all succeed, and each node did its part.
async fn every_call_after_a_flush(n: usize) {
    let nodes = start(n);
    let real: Vec<_> = nodes.iter().collect();
    let locker = Locker::new(Redlock::from_urls(nodes.urls()).unwrap(), options()).unwrap();
    for round in 0..3 {
        let key = format!("flushed-{round}");
        flush(&nodes).await;
        let guard = locker.try_lock(&key).await.unwrap();
        // A quorum answered; the rest may still be on their way.
        locker.settled().await;
        assert_granted_on(&real, &key, guard.token(), None).await;
        flush(&nodes).await;
        guard.extend(Duration::from_secs(20)).await.unwrap();
        for node in &nodes {
            let left = pttl(&node.url(), &format!("fencelock:{{{key}}}")).await;
            assert!(left > 10_000, "{}: pttl {left}", node.url());
        }
        flush(&nodes).await;
        let nested = locker.try_lock(&key).await.unwrap();
        flush(&nodes).await;
        nested.release().await.unwrap();
        flush(&nodes).await;
        let info = locker.inspect(&key).await.unwrap();
        assert_eq!(info.locked_nodes(), n, "{info:?}");
        flush(&nodes).await;
        assert!(locker.is_locked(&key).await.unwrap());
        flush(&nodes).await;
        guard.release().await.unwrap();

        flush(&nodes).await;
        let write = locker.try_write(&key).await.unwrap();
        locker.settled().await;
        assert_granted_on(&real, &key, write.token(), None).await;
        flush(&nodes).await;
        write.extend(Duration::from_secs(20)).await.unwrap();
        flush(&nodes).await;
        let read = write.downgrade().await.map_err(|e| e.into_error()).unwrap();
        flush(&nodes).await;
        read.release().await.unwrap();

        let semaphore = locker.semaphore(&format!("{key}-sem"), 2).unwrap();
        flush(&nodes).await;
        let permit = semaphore.try_acquire().await.unwrap();
        let slot = Some(permit.slot());
        locker.settled().await;
        assert_granted_on(&real, &format!("{key}-sem"), permit.token(), slot).await;
        flush(&nodes).await;
        permit.extend(Duration::from_secs(20)).await.unwrap();
        flush(&nodes).await;
        permit.release().await.unwrap();

        let forgotten = locker.try_lock(&key).await.unwrap();
        flush(&nodes).await;
        let forced = locker.force_release(&key).await.unwrap();
        assert_eq!(
            (forced.removed, forced.failures.len()),
            (n, 0),
            "{forced:?}"
        );
        // Counted as a failed release, one a round.
        let late = forgotten.release().await;
        assert!(matches!(late, Err(Error::NotHeld { .. })), "{late:?}");

        locker.settled().await;
        for node in &nodes {
            let left = lock_keys(&node.url()).await;
            assert!(left.is_empty(), "{n} nodes, round {round}: {left:?}");
        }
    }
    let stats = locker.statistics();
    assert_eq!(
        (
            stats.quorum_unavailable,
            stats.acquire_errors,
            stats.release_failures,
            stats.extend_failures
        ),
        (0, 0, 3, 0),
        "{n} nodes: {stats:?}"
    );
}

#[tokio::test]
async fn scripts_flushed_between_calls_are_loaded_again() {
    bounded(LIMIT, async {
        every_call_after_a_flush(1).await;
        every_call_after_a_flush(3).await;
    })
    .await;
}

/// The watchdog renews a hold (every 400 ms) while the scripts are
/// flushed, three times: each time a renewal finds them gone and loads
/// them again (the only request that runs; its reload is the signal),
/// and no renewal fails.
async fn renewals_after_a_flush(n: usize) {
    let nodes = start(n);
    let options = options()
        .ttl(Duration::from_millis(1200))
        .node_timeout(Duration::from_millis(200))
        .watchdog(Watchdog::Auto);
    let locker = Locker::new(Redlock::from_urls(nodes.urls()).unwrap(), options).unwrap();
    let guard = locker.try_lock("renewed").await.unwrap();
    for _ in 0..3 {
        let before = locker.statistics().renewals;
        flush(&nodes).await;
        for node in &nodes {
            let url = node.url();
            wait_until(Duration::from_secs(5), async || {
                cached_scripts(&url).await > 0
            })
            .await;
        }
        // The renewal that loaded them has finished, and another after it.
        wait_until(Duration::from_secs(5), async || {
            locker.statistics().renewals >= before + 2
        })
        .await;
    }
    let stats = locker.statistics();
    assert_eq!(
        (stats.renewal_failures, stats.lost),
        (0, 0),
        "{n} nodes: {stats:?}"
    );
    assert!(guard.is_held());
    for node in &nodes {
        let left = pttl(&node.url(), "fencelock:{renewed}").await;
        assert!(left > 0, "{}: pttl {left}", node.url());
    }
    guard.release().await.unwrap();
    locker.settled().await;
    for node in &nodes {
        assert!(lock_keys(&node.url()).await.is_empty(), "{}", node.url());
    }
}

#[tokio::test]
async fn scripts_flushed_while_the_watchdog_renews_are_loaded_again() {
    bounded(LIMIT, async {
        renewals_after_a_flush(1).await;
        renewals_after_a_flush(3).await;
    })
    .await;
}

/// A flush that lands between the client's reload of the scripts and its
/// retry of the request (an operator flushing twice, while a request of a
/// round that returned without it is still out): the retry meets
/// `NOSCRIPT` again, and the client loads them once more. A proxy delays
/// the link by 100 ms each way, so that the flush, sent straight to the
/// server as soon as the reload has landed there, is well ahead of the
/// retry.
#[tokio::test]
async fn a_flush_between_the_reload_and_the_retry_is_survived() {
    let server = RedisServer::start().unwrap();
    let proxy = TcpProxy::start(server.addr()).unwrap();
    let options = options().node_timeout(Duration::from_secs(5));
    let locker = Locker::new(Redlock::from_urls([proxy.redis_url()]).unwrap(), options).unwrap();
    // The acquire script as the library sends it: the check of the node's
    // standing, then the script itself.
    let acquire = redis::Script::new(concat!(
        include_str!("../../../src/redis/lua/standing.lua"),
        include_str!("../../../src/redis/lua/acquire.lua")
    ));
    bounded(LIMIT, async {
        // The connection is set up, with the scripts loaded.
        lock_once(&locker, "warm").await;
        let mut c = conn(&server.url()).await;
        proxy.set_latency(Duration::from_millis(100));
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut c)
            .await
            .unwrap();
        let flush_after_the_reload = async {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let loaded: Vec<bool> = redis::cmd("SCRIPT")
                    .arg("EXISTS")
                    .arg(acquire.get_hash())
                    .query_async(&mut c)
                    .await
                    .unwrap();
                if loaded[0] {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the scripts were never loaded again"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut c)
                .await
                .unwrap();
        };
        let (guard, ()) = tokio::join!(locker.try_lock("raced"), flush_after_the_reload);
        let guard = guard.unwrap();
        proxy.set_latency(Duration::ZERO);
        guard.release().await.unwrap();
        locker.settled().await;
        assert!(lock_keys(&server.url()).await.is_empty());
    })
    .await;
}
