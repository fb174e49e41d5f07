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
//! - `scripts_quorum`: fencelock's own acquire and release scripts sent
//!   the same way, resolved at a quorum: the servers' share of a library
//!   round, without the client's; `scripts_unmarked` the same without the
//!   check of the node's marker (docs/algorithm.md, section 15), to price
//!   that check.
//! - `fencelock_unclocked`: fencelock with `with_clock_checks(false)`, to
//!   price the `TIME` every acquire and extend sends after its script
//!   (docs/algorithm.md, section 16).
//!
//! Beside them the peer, rslock 0.10 (`lock` + `unlock`, see
//! benches/floors/peer.rs), in the same runs.
//!
//! `nodes` sweeps N = 1, 3, 5, 7, 9: p50 and p99 of fencelock, rslock and
//! both floors, interleaved round by round, and draws
//! docs/img/nodes-latency.svg.
//!
//! `indirection` times `Locker<AnyBackend>` (the backend chosen by a URL
//! list at run time) beside the generic `Locker<Redlock>` on the same
//! nodes, round for round, at N = 1 and 5.
//!
//! `cargo bench --bench latency --features testing` (see docs/performance.md);
//! `-- tails`, `-- nodes` or `-- indirection` runs only that part.

// criterion_group! and criterion_main! generate undocumented items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{AnyBackend, Backend, LockOptions, Locker, Redlock};

mod floors;
use floors::chart::{self, Panel, Series};
use floors::stats::{Round, interleaved_tails, median, percentile, ratio};
use floors::{
    COMPARE_AND_DELETE, LockScripts, connect, library_round, peer, raw_round, scripts_round,
    selected,
};
use redis::aio::MultiplexedConnection;

/// The nodes, the runtime, and the compare-and-delete script, shared by
/// every part of the bench.
struct Bench {
    runtime: tokio::runtime::Runtime,
    nodes: RedisNodes,
    script: redis::Script,
    lock_scripts: LockScripts,
}

/// What one node count needs: the Locker and the raw connections, both
/// warmed (connections made, scripts loaded) so no first-call cost is timed.
struct Size {
    n: usize,
    quorum: usize,
    locker: Locker<Redlock>,
    /// The same without the nodes' clocks judged, connections of its own.
    unclocked: Locker<Redlock>,
    /// The same nodes through `AnyBackend`, connections of its own.
    any: Locker<AnyBackend>,
    conns: Vec<MultiplexedConnection>,
    /// The peer, with connections of its own.
    rslock: rslock::LockManager,
}

impl Bench {
    fn start(nodes: usize) -> Self {
        Self {
            runtime: floors::runtime(),
            nodes: floors::nodes(nodes),
            script: redis::Script::new(COMPARE_AND_DELETE),
            lock_scripts: LockScripts::new(),
        }
    }

    fn size(&self, n: usize) -> Size {
        let urls: Vec<String> = self.nodes.urls().into_iter().take(n).collect();
        let locker =
            Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
        let unclocked = Redlock::from_urls(&urls).unwrap().with_clock_checks(false);
        let unclocked = Locker::new(unclocked, LockOptions::default()).unwrap();
        let (any, conns, rslock) = self.runtime.block_on(async {
            let any = Locker::connect(&urls.join(","), LockOptions::default())
                .await
                .unwrap();
            let conns = connect(&urls).await;
            raw_round(&conns, &self.script, "raw:{bench}", n).await;
            scripts_round(&conns, &self.lock_scripts, "scripts:{bench}", n, true).await;
            scripts_round(&conns, &self.lock_scripts, "scripts:{bench}", n, false).await;
            library_round(&locker, "bench").await;
            library_round(&unclocked, "bench-unclocked").await;
            library_round(&any, "bench-any").await;
            (any, conns, peer::manager(&urls).await)
        });
        Size {
            n,
            quorum: n / 2 + 1,
            locker,
            unclocked,
            any,
            conns,
            rslock,
        }
    }
}

fn uncontended(c: &mut Criterion) {
    let bench = Bench::start(5);
    let (runtime, script) = (&bench.runtime, &bench.script);
    let mut group = c.benchmark_group("uncontended_acquire_release");
    group.measurement_time(Duration::from_secs(5));
    for n in [1usize, 3, 5] {
        let size = bench.size(n);
        group.bench_with_input(BenchmarkId::new("fencelock", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| library_round(&size.locker, "bench"));
        });
        group.bench_with_input(BenchmarkId::new("fencelock_any", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| library_round(&size.any, "bench-any"));
        });
        group.bench_with_input(BenchmarkId::new("rslock", n), &n, |b, _| {
            b.to_async(runtime)
                .iter(|| peer::round(&size.rslock, "rslock:bench"));
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
    if !selected("tails") {
        return;
    }
    let bench = Bench::start(5);
    let (runs, samples) = (floors::run_count(ROUNDS), samples(SAMPLES));
    println!(
        "\nuncontended acquire+release, medians of {runs} runs x {samples} rounds, interleaved"
    );
    println!("N  variant          p50        p99   p50/quorum  p99/all");
    for n in [1usize, 3, 5] {
        let size = bench.size(n);
        let figures = bench
            .runtime
            .block_on(variants(&bench, &size, runs, samples));
        let (all, quo) = (figures[2], figures[3]);
        for (name, (p50, p99)) in VARIANTS.iter().zip(&figures) {
            println!(
                "{n}  {name:<14} {p50:>9.1?} {p99:>9.1?}   {:>9.2}x {:>8.2}x",
                ratio(*p50, quo.0),
                ratio(*p99, all.1)
            );
        }
        println!(
            "   fencelock / rslock: p50 {:.2}x, p99 {:.2}x",
            ratio(figures[0].0, figures[1].0),
            ratio(figures[0].1, figures[1].1)
        );
        println!(
            "   fencelock / scripts_quorum (the client's share): p50 {:.2}x",
            ratio(figures[0].0, figures[4].0),
        );
        println!(
            "   scripts_quorum / scripts_unmarked (the marker check): p50 {:.3}x, p99 {:.3}x",
            ratio(figures[4].0, figures[5].0),
            ratio(figures[4].1, figures[5].1),
        );
        println!(
            "   fencelock / fencelock_unclocked (the clock check): p50 {:.3}x, p99 {:.3}x",
            ratio(figures[0].0, figures[6].0),
            ratio(figures[0].1, figures[6].1),
        );
    }
}

/// The variants of `tails` and `nodes`, in the order [`variants`] gives.
const VARIANTS: [&str; 7] = [
    "fencelock",
    "rslock",
    "floor_all",
    "floor_quorum",
    "scripts_quorum",
    "scripts_unmarked",
    "fencelock_unclocked",
];

/// p50 and p99 of each of [`VARIANTS`] on `size`, interleaved.
async fn variants(
    bench: &Bench,
    size: &Size,
    runs: usize,
    samples: usize,
) -> Vec<(Duration, Duration)> {
    let (script, lock_scripts) = (&bench.script, &bench.lock_scripts);
    let mut rounds: [Round<'_>; 7] = [
        Box::new(|| Box::pin(library_round(&size.locker, "bench"))),
        Box::new(|| Box::pin(peer::round(&size.rslock, "rslock:bench"))),
        Box::new(|| Box::pin(raw_round(&size.conns, script, "raw:{bench}", size.n))),
        Box::new(|| Box::pin(raw_round(&size.conns, script, "raw:{bench}", size.quorum))),
        Box::new(|| {
            Box::pin(scripts_round(
                &size.conns,
                lock_scripts,
                "scripts:{bench}",
                size.quorum,
                true,
            ))
        }),
        Box::new(|| {
            Box::pin(scripts_round(
                &size.conns,
                lock_scripts,
                "scripts:{bench}",
                size.quorum,
                false,
            ))
        }),
        Box::new(|| Box::pin(library_round(&size.unclocked, "bench-unclocked"))),
    ];
    interleaved_tails(runs, samples, &mut rounds).await
}

/// Timed rounds per variant and run: `FENCELOCK_BENCH_SAMPLES` if set.
fn samples(default: usize) -> usize {
    std::env::var("FENCELOCK_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Node counts of the `nodes` sweep.
const SWEEP: [usize; 5] = [1, 3, 5, 7, 9];

/// p50 and p99 of every variant at N = 1 to 9, and their chart.
fn nodes(_: &mut Criterion) {
    if !selected("nodes") {
        return;
    }
    let bench = Bench::start(9);
    let (runs, samples) = (floors::run_count(3), samples(1_000));
    println!(
        "\nuncontended acquire+release by node count, medians of {runs} runs x {samples} rounds, interleaved"
    );
    println!("N  variant          p50        p99");
    let mut table = Vec::new();
    for n in SWEEP {
        let size = bench.size(n);
        let figures = bench
            .runtime
            .block_on(variants(&bench, &size, runs, samples));
        for (name, (p50, p99)) in VARIANTS.iter().zip(&figures) {
            println!("{n}  {name:<14} {p50:>9.1?} {p99:>9.1?}");
        }
        table.push(figures);
    }
    let panel = |title: &str, at: fn(&(Duration, Duration)) -> Duration| Panel {
        title: title.into(),
        x: "nodes (N)",
        y: "µs",
        log2_x: false,
        log10_y: false,
        series: VARIANTS
            .iter()
            .enumerate()
            .map(|(v, name)| Series {
                name: name.to_string(),
                points: SWEEP
                    .iter()
                    .zip(&table)
                    .map(|(&n, f)| (n as f64, at(&f[v]).as_secs_f64() * 1e6))
                    .collect(),
            })
            .collect(),
    };
    let path = chart::draw(
        "nodes-latency.svg",
        &[
            panel("uncontended acquire+release, p50", |f| f.0),
            panel("uncontended acquire+release, p99", |f| f.1),
        ],
    );
    println!("chart: {}", path.display());
}

/// Rounds per variant and run of `indirection`, and runs.
const INDIRECTION_RUNS: usize = 7;
const INDIRECTION_SAMPLES: usize = 3_000;

/// `Locker<AnyBackend>` beside `Locker<Redlock>`: one round of each in
/// turn (which goes first alternates), so both see the same moments of a
/// noisy machine. p50 and p99 per run; the medians over runs, and the
/// median of the runs' p50 ratios.
fn indirection(_: &mut Criterion) {
    if !selected("indirection") {
        return;
    }
    let bench = Bench::start(5);
    println!(
        "\nLocker<AnyBackend> / Locker<Redlock>, uncontended acquire+release, \
         {INDIRECTION_RUNS} runs x {INDIRECTION_SAMPLES} rounds each, interleaved"
    );
    println!("N  variant                   p50       p99   p50 ratio  p99 ratio (medians of runs)");
    for n in [1usize, 5] {
        let size = bench.size(n);
        let (generic, any) = bench.runtime.block_on(async {
            let (mut generic, mut any) = (Vec::new(), Vec::new());
            for _ in 0..INDIRECTION_RUNS {
                let (mut g, mut a) = (Vec::new(), Vec::new());
                for i in 0..INDIRECTION_SAMPLES {
                    if i % 2 == 0 {
                        timed(&size.locker, "bench", &mut g).await;
                        timed(&size.any, "bench-any", &mut a).await;
                    } else {
                        timed(&size.any, "bench-any", &mut a).await;
                        timed(&size.locker, "bench", &mut g).await;
                    }
                }
                generic.push(percentiles(g));
                any.push(percentiles(a));
            }
            (generic, any)
        });
        // Paired: each run's ratio, then their median.
        let ratios = |at: fn(&(Duration, Duration)) -> Duration| -> Vec<f64> {
            generic
                .iter()
                .zip(&any)
                .map(|(g, a)| ratio(at(a), at(g)))
                .collect()
        };
        let (p50_ratios, p99_ratios) = (ratios(|r| r.0), ratios(|r| r.1));
        let summary = |runs: &[(Duration, Duration)]| {
            (
                median(runs.iter().map(|r| r.0).collect()),
                median(runs.iter().map(|r| r.1).collect()),
            )
        };
        let ((gp50, gp99), (ap50, ap99)) = (summary(&generic), summary(&any));
        println!("{n}  Locker<Redlock>     {gp50:>9.1?} {gp99:>9.1?}");
        println!(
            "{n}  Locker<AnyBackend>  {ap50:>9.1?} {ap99:>9.1?}   {:>9.3}x {:>9.3}x",
            median(p50_ratios.clone()),
            median(p99_ratios)
        );
        let runs: Vec<String> = p50_ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!("   p50 ratio of each run: {}", runs.join(" "));
    }
}

/// One round on `locker`, its time added to `times`.
async fn timed<B: Backend>(locker: &Locker<B>, key: &str, times: &mut Vec<Duration>) {
    let started = Instant::now();
    library_round(locker, key).await;
    times.push(started.elapsed());
}

/// p50 and p99 of `times`.
fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (percentile(&times, 0.50), percentile(&times, 0.99))
}

criterion_group!(benches, uncontended, tails, nodes, indirection);
criterion_main!(benches);
