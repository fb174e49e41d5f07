//! etcd beside Redis, in one run: uncontended acquire + release latency on
//! one and three etcd members (started by the bench with the fixtures),
//! against the raw etcd floors of the same run, and Redis with one and
//! three nodes beside them; then contention on one key, etcd's queue
//! against Redis's release announcements.
//!
//! The floors (benches/floors/etcd.rs), sent with plain etcd-client:
//! - `floor_min`: create the key if absent, then delete it (two Raft
//!   writes, what any lock on etcd needs);
//! - `floor_lease`: the same on a lease granted first and revoked last
//!   (four writes), what a lock that runs out when its holder dies needs.
//!
//! `cargo bench --bench etcd --features testing,etcd` (see docs/performance.md).

// criterion_group! and criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fencelock::etcd_client::Client;
use fencelock::testing::{EtcdCluster, RedisNodes};
use fencelock::{Etcd, LockOptions, Locker, Redlock};

mod floors;
use floors::contend::{Summary, contend};
use floors::etcd::{members, raw_lease_round, raw_round};
use floors::library_round;
use floors::stats::{median, ratio, tail_latency};

/// Percentiles: `RUNS` runs of `SAMPLES` timed rounds per variant.
const RUNS: usize = 3;
const SAMPLES: usize = 500;
/// The lock ttl, and the floor's lease, in seconds.
const TTL_SECS: i64 = 30;
/// Contention: tasks on one key, runs of this length.
const TASKS: usize = 16;
const RUN: Duration = Duration::from_secs(5);
const CONTENDED_RUNS: usize = 3;

/// Both backends' servers and the runtime.
struct Bench {
    runtime: tokio::runtime::Runtime,
    redis: RedisNodes,
    etcd: [EtcdCluster; 2],
}

/// One etcd configuration: the Locker and a plain client, both warmed.
struct EtcdSize {
    members: usize,
    locker: Locker<Etcd>,
    client: Client,
}

impl Bench {
    fn start() -> Self {
        Self {
            runtime: floors::runtime(),
            redis: floors::nodes(3),
            etcd: [members(1), members(3)],
        }
    }

    fn options() -> LockOptions {
        LockOptions::default().ttl(Duration::from_secs(TTL_SECS as u64))
    }

    fn etcd(&self, which: usize) -> EtcdSize {
        let cluster = &self.etcd[which];
        self.runtime.block_on(async {
            let etcd = Etcd::connect(cluster.endpoints(), None).await.unwrap();
            let locker = Locker::new(etcd, Self::options()).unwrap();
            let client = Client::connect(cluster.endpoints(), None).await.unwrap();
            library_round(&locker, "bench").await;
            raw_round(&client, "raw/bench").await;
            EtcdSize {
                members: cluster.len(),
                locker,
                client,
            }
        })
    }

    fn redis(&self, n: usize) -> Locker<Redlock> {
        let urls: Vec<String> = self.redis.urls().into_iter().take(n).collect();
        let locker = Locker::new(Redlock::from_urls(&urls).unwrap(), Self::options()).unwrap();
        self.runtime.block_on(library_round(&locker, "bench"));
        locker
    }
}

fn uncontended(c: &mut Criterion) {
    let bench = Bench::start();
    let runtime = &bench.runtime;
    let mut group = c.benchmark_group("etcd_uncontended_acquire_release");
    group.measurement_time(Duration::from_secs(5));
    for which in 0..2 {
        let size = bench.etcd(which);
        let n = size.members;
        group.bench_with_input(BenchmarkId::new("fencelock_etcd", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| library_round(&size.locker, "bench"));
        });
        group.bench_with_input(BenchmarkId::new("floor_min", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| raw_round(&size.client, "raw/bench"));
        });
        group.bench_with_input(BenchmarkId::new("floor_lease", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| raw_lease_round(&size.client, "raw/bench", TTL_SECS));
        });
        let redis = bench.redis(n);
        group.bench_with_input(BenchmarkId::new("fencelock_redis", n), &n, |b, _| {
            b.to_async(runtime).iter(|| library_round(&redis, "bench"));
        });
    }
    group.finish();
}

/// p50 / p99 of every variant, with the ratios to the floors.
fn tails(_: &mut Criterion) {
    let bench = Bench::start();
    println!("\nuncontended acquire+release, medians of {RUNS} runs x {SAMPLES} rounds");
    println!("N  variant           p50        p99   p50/floor_min  p50/floor_lease");
    for which in 0..2 {
        let size = bench.etcd(which);
        let n = size.members;
        let redis = bench.redis(n);
        let (lib, min, lease, red) = bench.runtime.block_on(async {
            let lib = tail_latency(RUNS, SAMPLES, || library_round(&size.locker, "bench")).await;
            let min = tail_latency(RUNS, SAMPLES, || raw_round(&size.client, "raw/bench")).await;
            let lease = tail_latency(RUNS, SAMPLES, || {
                raw_lease_round(&size.client, "raw/bench", TTL_SECS)
            })
            .await;
            let red = tail_latency(RUNS, SAMPLES, || library_round(&redis, "bench")).await;
            (lib, min, lease, red)
        });
        for (name, (p50, p99)) in [
            ("fencelock_etcd", lib),
            ("floor_min", min),
            ("floor_lease", lease),
            ("fencelock_redis", red),
        ] {
            println!(
                "{n}  {name:<15} {p50:>9.1?} {p99:>9.1?}   {:>12.2}x {:>15.2}x",
                ratio(p50, min.0),
                ratio(p50, lease.0)
            );
        }
    }
}

/// Raw create + delete rounds per second on one key, one task: every
/// hand-over needs at least a release and an acquire, one after the other.
async fn raw_limit(client: &Client) -> f64 {
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < RUN {
        raw_round(client, "raw/contended").await;
        rounds += 1;
    }
    rounds as f64 / started.elapsed().as_secs_f64()
}

/// `TASKS` tasks on one key: etcd (three members, its queue) and Redis
/// (three nodes, release announcements), against etcd's raw limit.
fn contended(_: &mut Criterion) {
    let bench = Bench::start();
    let size = bench.etcd(1);
    let redis = bench.redis(3);
    let (mut on_etcd, mut on_redis, mut limits) =
        (Summary::default(), Summary::default(), Vec::new());
    bench.runtime.block_on(async {
        for run in 1..=CONTENDED_RUNS {
            let result = contend(&size.locker, "contended", TASKS, RUN).await;
            println!(
                "run {run} etcd:  {} acquisitions, {} hand-overs",
                result.acquisitions, result.handoffs
            );
            on_etcd.add(result);
            let result = contend(&redis, "contended", TASKS, RUN).await;
            println!(
                "run {run} redis: {} acquisitions, {} hand-overs",
                result.acquisitions, result.handoffs
            );
            on_redis.add(result);
            limits.push(raw_limit(&size.client).await);
        }
    });
    let limit = median(limits);
    println!(
        "\ncontended, {TASKS} tasks on one key, 3 members / nodes, medians of {CONTENDED_RUNS} runs of {RUN:?}"
    );
    println!(
        "{:>7} | {:>10} | {:>11} | {:>8} | {:>8} | {:>8}",
        "", "acquire/s", "hand-over/s", "wait p50", "wait p99", "wait max"
    );
    for (name, summary) in [("etcd", &on_etcd), ("redis", &on_redis)] {
        let [a, h, p50, p99, max] = summary.medians();
        println!("{name:>7} | {a:>10.0} | {h:>11.0} | {p50:>6.1}ms | {p99:>6.1}ms | {max:>6.1}ms");
    }
    let [_, etcd_handoffs, ..] = on_etcd.medians();
    println!(
        "etcd raw limit: {limit:.0} create+delete rounds/s, one task; etcd hand-overs / limit = {:.2}x",
        etcd_handoffs / limit
    );
}

criterion_group!(benches, uncontended, tails, contended);
criterion_main!(benches);
