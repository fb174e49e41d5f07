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

mod floors;
use floors::stats::{ratio, tail_latency};
use floors::{COMPARE_AND_DELETE, connect, library_round, raw_round};
use redis::aio::MultiplexedConnection;

/// The five nodes, the runtime, and the compare-and-delete script, shared by
/// both parts of the bench.
struct Bench {
    runtime: tokio::runtime::Runtime,
    nodes: RedisNodes,
    script: redis::Script,
}

/// What one node count needs: the Locker and the raw connections, both
/// warmed (connections made, scripts loaded) so no first-call cost is timed.
struct Size {
    n: usize,
    quorum: usize,
    locker: Locker<Redlock>,
    conns: Vec<MultiplexedConnection>,
}

impl Bench {
    fn start() -> Self {
        Self {
            runtime: floors::runtime(),
            nodes: floors::nodes(5),
            script: redis::Script::new(COMPARE_AND_DELETE),
        }
    }

    fn size(&self, n: usize) -> Size {
        let urls: Vec<String> = self.nodes.urls().into_iter().take(n).collect();
        let locker =
            Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
        let conns = self.runtime.block_on(async {
            let conns = connect(&urls).await;
            raw_round(&conns, &self.script, "raw:{bench}", n).await;
            library_round(&locker, "bench").await;
            conns
        });
        Size {
            n,
            quorum: n / 2 + 1,
            locker,
            conns,
        }
    }
}

fn uncontended(c: &mut Criterion) {
    let bench = Bench::start();
    let (runtime, script) = (&bench.runtime, &bench.script);
    let mut group = c.benchmark_group("uncontended_acquire_release");
    group.measurement_time(Duration::from_secs(5));
    for n in [1usize, 3, 5] {
        let size = bench.size(n);
        group.bench_with_input(BenchmarkId::new("fencelock", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| library_round(&size.locker, "bench"));
        });
        group.bench_with_input(BenchmarkId::new("floor_all", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| raw_round(&size.conns, script, "raw:{bench}", size.n));
        });
        group.bench_with_input(BenchmarkId::new("floor_quorum", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| raw_round(&size.conns, script, "raw:{bench}", size.quorum));
        });
    }
    group.finish();
}

/// Percentiles of one variant: `ROUNDS` runs of `SAMPLES` timed rounds each;
/// the medians over runs of each run's p50 and p99.
const ROUNDS: usize = 5;
const SAMPLES: usize = 2_000;

/// Prints p50 / p99 of every variant beside the floors, with the ratios the
/// issue's targets are stated in (criterion reports means only).
fn tails(_: &mut Criterion) {
    let bench = Bench::start();
    let script = &bench.script;
    println!("\nuncontended acquire+release, medians of {ROUNDS} runs x {SAMPLES} rounds");
    println!("N  variant        p50        p99   p50/quorum  p99/all");
    for n in [1usize, 3, 5] {
        let size = bench.size(n);
        let (lib, all, quo) = bench.runtime.block_on(async {
            let lib = tail_latency(ROUNDS, SAMPLES, || library_round(&size.locker, "bench")).await;
            let all = tail_latency(ROUNDS, SAMPLES, || {
                raw_round(&size.conns, script, "raw:{bench}", n)
            })
            .await;
            let quo = tail_latency(ROUNDS, SAMPLES, || {
                raw_round(&size.conns, script, "raw:{bench}", size.quorum)
            })
            .await;
            (lib, all, quo)
        });
        for (name, (p50, p99)) in [
            ("fencelock", lib),
            ("floor_all", all),
            ("floor_quorum", quo),
        ] {
            println!(
                "{n}  {name:<12} {p50:>9.1?} {p99:>9.1?}   {:>9.2}x {:>8.2}x",
                ratio(p50, quo.0),
                ratio(p99, all.1)
            );
        }
    }
}

criterion_group!(benches, uncontended, tails);
criterion_main!(benches);
