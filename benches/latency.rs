//! Uncontended acquire + release latency on N = 1, 3, 5 local redis-server
//! nodes (started by the bench with the fixtures), beside two raw floors
//! measured in the same run with the plain redis crate and no library
//! logic:
//!
//! - `floor_all`: SET NX PX fanned out to all nodes, waiting for every reply,
//!   then a compare-and-delete script fanned out likewise;
//! - `floor_quorum`: the same commands, each round resolved as soon as a
//!   quorum of replies is in.
//!
//! `cargo bench --bench latency --features testing` (see docs/performance.md).

// criterion_group! and criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{LockOptions, Locker, Redlock};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;

const COMPARE_AND_DELETE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// One plain connection per node.
async fn connect(urls: &[String]) -> Vec<MultiplexedConnection> {
    let mut conns = Vec::new();
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        conns.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    conns
}

/// One raw acquire + release round, waiting for `wait_for` replies per step.
async fn raw_round(conns: &[MultiplexedConnection], script: &redis::Script, wait_for: usize) {
    let value = "raw-owner";
    let mut acquires: FuturesUnordered<_> = conns
        .iter()
        .map(|c| {
            let mut c = c.clone();
            async move {
                redis::cmd("SET")
                    .arg("raw:{bench}")
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
            call.key("raw:{bench}").arg(value);
            async move { call.invoke_async::<i64>(&mut c).await }
        })
        .collect();
    for _ in 0..wait_for {
        releases.next().await.unwrap().unwrap();
    }
}

fn uncontended(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes = RedisNodes::start(5).expect("start redis-server nodes (run scripts/setup)");
    let script = redis::Script::new(COMPARE_AND_DELETE);
    let mut group = c.benchmark_group("uncontended_acquire_release");
    group.measurement_time(Duration::from_secs(5));
    for n in [1usize, 3, 5] {
        let urls: Vec<String> = nodes.urls().into_iter().take(n).collect();
        let quorum = n / 2 + 1;
        let conns = runtime.block_on(connect(&urls));
        let locker =
            Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
        // Warm both paths: connections made, scripts loaded.
        runtime.block_on(async {
            raw_round(&conns, &script, n).await;
            locker
                .try_lock("bench")
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        });
        group.bench_with_input(BenchmarkId::new("fencelock", n), &n, |b, _| {
            b.to_async(&runtime).iter(|| async {
                locker
                    .try_lock("bench")
                    .await
                    .unwrap()
                    .release()
                    .await
                    .unwrap();
            });
        });
        group.bench_with_input(BenchmarkId::new("floor_all", n), &n, |b, _| {
            b.to_async(&runtime).iter(|| raw_round(&conns, &script, n));
        });
        group.bench_with_input(BenchmarkId::new("floor_quorum", n), &n, |b, _| {
            b.to_async(&runtime)
                .iter(|| raw_round(&conns, &script, quorum));
        });
    }
    group.finish();
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
