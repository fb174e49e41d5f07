//! Release notifications against real redis-server nodes: waiters wake on a
//! release (or a forced one) long before their retry delay, even when the
//! subscriber connection was cut; waiters of one process take turns in
//! arrival order; and no subscription outlives its waiters.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bounded, locker, options, start, wait_until};
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{Error, LockOptions, Owner, RetryPolicy, Watchdog};
use rand::{RngExt, SeedableRng, rngs::StdRng};

mod subscriptions;
mod turns;
mod wakeups;

const LIMIT: Duration = Duration::from_secs(120);
/// The waiters' retry delay: any wake-up far below it came from a notification.
const RETRY: Duration = Duration::from_secs(10);
/// How soon after a release a notified waiter must hold the lock. Loose for
/// a loaded CI machine, and still a tenth of the retry delay.
const WAKE: Duration = Duration::from_secs(1);

/// Waiters that would poll only every 10 s.
fn slow_retry() -> LockOptions {
    options().retry(RetryPolicy::default().delay(RETRY).jitter(Duration::ZERO))
}

use crate::common::release_channel as channel;

/// How many subscribers `channel` has on each node.
async fn subscribers(nodes: &RedisNodes, channel: &str) -> Vec<u64> {
    let mut counts = Vec::new();
    for url in nodes.urls() {
        let mut c = common::conn(&url).await;
        counts.push(common::subscribers(&mut c, channel).await);
    }
    counts
}

/// Every channel with a subscriber, on any node.
async fn open_channels(nodes: &RedisNodes) -> Vec<String> {
    let mut all = Vec::new();
    for url in nodes.urls() {
        let mut c = common::conn(&url).await;
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut c)
            .await
            .unwrap();
        all.extend(channels);
    }
    all
}

/// Waits until every node has exactly one subscriber on `channel`: the
/// waiter is listening.
async fn until_listening(nodes: &RedisNodes, channel: &str) {
    wait_until(Duration::from_secs(10), async || {
        subscribers(nodes, channel).await.iter().all(|&n| n == 1)
    })
    .await;
}
