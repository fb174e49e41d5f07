//! The rounds the benches time: the library's acquire + release, and the
//! raw floors it is compared against, the same Redis commands a lock needs
//! through the plain redis crate with no library logic (and in [`etcd`],
//! the same for etcd).

#![allow(dead_code)] // each bench uses a different part

pub mod contend;
pub mod etcd;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{Backend, Locker};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;

/// The runtime every bench runs on: two workers, one per core of the
/// machine the figures in docs/performance.md come from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `n` local redis-server nodes, started by the fixtures and stopped on drop.
pub fn nodes(n: usize) -> RedisNodes {
    RedisNodes::start(n).expect("start redis-server nodes (run scripts/setup)")
}

/// One uncontended acquire + release through the library.
pub async fn library_round<B: Backend>(locker: &Locker<B>, key: &str) {
    locker.try_lock(key).await.unwrap().release().await.unwrap();
}

/// Rounds per second of `tasks` tasks looping `round(task)` for `run`.
pub async fn rate<F, Fut>(tasks: usize, run: Duration, round: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let round = Arc::new(round);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..tasks)
        .map(|t| {
            let (round, stop, done) = (Arc::clone(&round), Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    round(t).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    let counted = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    for task in tasks {
        task.await.unwrap();
    }
    counted as f64 / elapsed.as_secs_f64()
}

/// Deletes the key only if it still holds our value.
pub const COMPARE_AND_DELETE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// One plain connection per node.
pub async fn connect(urls: &[String]) -> Vec<MultiplexedConnection> {
    let mut conns = Vec::new();
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        conns.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    conns
}

/// One raw acquire + release round on `key`, waiting for `wait_for`
/// replies per step: `SET key value NX PX`, then compare-and-delete.
pub async fn raw_round(
    conns: &[MultiplexedConnection],
    script: &redis::Script,
    key: &str,
    wait_for: usize,
) {
    let value = "raw-owner";
    let mut acquires: FuturesUnordered<_> = conns
        .iter()
        .map(|c| {
            let mut c = c.clone();
            async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async::<Option<String>>(&mut c)
                    .await
            }
        })
        .collect();
    for _ in 0..wait_for {
        acquires.next().await.unwrap().unwrap();
    }
    drop(acquires);
    let mut releases: FuturesUnordered<_> = conns
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let mut call = script.prepare_invoke();
            call.key(key).arg(value);
            async move { call.invoke_async::<i64>(&mut c).await }
        })
        .collect();
    for _ in 0..wait_for {
        releases.next().await.unwrap().unwrap();
    }
}
