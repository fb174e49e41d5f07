//! Throughput: 64 tasks, each looping acquire + release on its own key, on
//! local redis-server nodes started by the bench, beside the peer (rslock
//! 0.10) and the raw floors of the same run (see benches/floors). Medians
//! of repeated runs.
//!
//! Each run is measured in steady state (after a fifth of its length of
//! warm-up), and with it what a round costs: CPU time of this process and
//! of the redis-server processes, and the commands the servers ran (see
//! benches/floors/cpu.rs for how each is read).
//!
//! `distinct`: N = 5, every variant. `nodes`: N = 1, 3, 5, 7, 9, drawing
//! docs/img/nodes-throughput.svg.
//!
//! `cargo bench --bench throughput --features testing [-- distinct|nodes]`
//! (see docs/performance.md).

use std::sync::Arc;
use std::time::Duration;

use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{LockOptions, Locker, Redlock, Watchdog};
use redis::aio::MultiplexedConnection;

mod floors;
use floors::chart::{self, Panel, Series};
use floors::cpu::{Commands, Measured, Meter, metered};
use floors::stats::median;
use floors::{COMPARE_AND_DELETE, connect, library_round, peer, raw_round, selected};

const TASKS: usize = 64;

/// The variants, in the order of the tables.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Fencelock,
    /// fencelock without the watchdog task each guard spawns, to show its
    /// share of the cost.
    Unwatched,
    Rslock,
    FloorAll,
    FloorQuorum,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Fencelock => "fencelock",
            Self::Unwatched => "  no watchdog",
            Self::Rslock => "rslock",
            Self::FloorAll => "floor_all",
            Self::FloorQuorum => "floor_quorum",
        }
    }
}

/// Clients of every variant on the first `n` nodes, and the meter.
struct Setup {
    n: usize,
    locker: Locker<Redlock>,
    unwatched: Locker<Redlock>,
    rslock: rslock::LockManager,
    conns: Arc<Vec<MultiplexedConnection>>,
    script: Arc<redis::Script>,
    meter: Meter,
}

impl Setup {
    async fn new(nodes: &RedisNodes, n: usize) -> Self {
        let urls: Vec<String> = nodes.urls().into_iter().take(n).collect();
        let pids = nodes
            .iter()
            .take(n)
            .map(|s| s.pid().expect("a running node"));
        let locker =
            Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
        let unwatched = locker
            .with_options(LockOptions::default().watchdog(Watchdog::Off))
            .unwrap();
        Self {
            n,
            locker,
            unwatched,
            rslock: peer::manager(&urls).await,
            conns: Arc::new(connect(&urls).await),
            script: Arc::new(redis::Script::new(COMPARE_AND_DELETE)),
            meter: Meter::new(pids.collect(), Commands::connect(&urls).await),
        }
    }

    /// One steady-state run of `variant`, `run` long.
    async fn measure(&self, variant: Variant, run: Duration) -> Measured {
        // fencelock wraps a name in braces itself; the others' keys are
        // as sent.
        let keys = |name: fn(usize) -> String| -> Arc<Vec<String>> {
            Arc::new((0..TASKS).map(name).collect())
        };
        let meter = &self.meter;
        match variant {
            Variant::Fencelock | Variant::Unwatched => {
                let locker = match variant {
                    Variant::Fencelock => self.locker.clone(),
                    _ => self.unwatched.clone(),
                };
                let keys = keys(|t| format!("tp-{t}"));
                metered(meter, TASKS, run, move |t| {
                    let (l, k) = (locker.clone(), Arc::clone(&keys));
                    async move { library_round(&l, &k[t]).await }
                })
                .await
            }
            Variant::Rslock => {
                let (manager, keys) = (self.rslock.clone(), keys(|t| format!("rslock:tp-{t}")));
                metered(meter, TASKS, run, move |t| {
                    let (m, k) = (manager.clone(), Arc::clone(&keys));
                    async move { peer::round(&m, &k[t]).await }
                })
                .await
            }
            Variant::FloorAll | Variant::FloorQuorum => {
                let wait_for = match variant {
                    Variant::FloorAll => self.n,
                    _ => self.n / 2 + 1,
                };
                let (c, s, k) = (
                    Arc::clone(&self.conns),
                    Arc::clone(&self.script),
                    keys(|t| format!("raw:{{tp-{t}}}")),
                );
                metered(meter, TASKS, run, move |t| {
                    let (c, s, k) = (Arc::clone(&c), Arc::clone(&s), Arc::clone(&k));
                    async move { raw_round(&c, &s, &k[t], wait_for).await }
                })
                .await
            }
        }
    }

    /// Medians over `runs` runs of every figure of each variant: rounds/s,
    /// client µs, server µs, commands and scripts per round per node.
    async fn medians(&self, variants: &[Variant], runs: usize, run: Duration) -> Vec<[f64; 5]> {
        let mut all: Vec<Vec<[f64; 5]>> = vec![Vec::new(); variants.len()];
        for _ in 0..runs {
            for (v, &variant) in variants.iter().enumerate() {
                let m = self.measure(variant, run).await;
                let (client, servers, commands, scripts) = m.per_round(self.n);
                all[v].push([m.rate(), client, servers, commands, scripts]);
            }
        }
        all.iter()
            .map(|runs| std::array::from_fn(|i| median(runs.iter().map(|r| r[i]).collect())))
            .collect()
    }
}

fn main() {
    let runtime = floors::runtime();
    if selected("distinct") {
        runtime.block_on(distinct());
    }
    if selected("nodes") {
        runtime.block_on(sweep());
    }
}

/// N = 5, every variant, with CPU and commands per round.
async fn distinct() {
    const NODES: usize = 5;
    let (runs, run) = (
        floors::run_count(5),
        floors::run_length(Duration::from_secs(3)),
    );
    let nodes = floors::nodes(NODES);
    let setup = Setup::new(&nodes, NODES).await;
    use Variant::*;
    let variants = [Fencelock, Unwatched, Rslock, FloorAll, FloorQuorum];
    let figures = setup.medians(&variants, runs, run).await;
    println!(
        "\nthroughput, {TASKS} tasks on distinct keys, N = {NODES}, medians of {runs} runs of {run:?}"
    );
    println!("CPU per round: this process (client) and the {NODES} redis-servers together, µs;");
    println!("commands per round per node: all (those run inside scripts included) / scripts");
    println!("variant          rounds/s  to all  client µs  servers µs  commands  scripts");
    let all = figures[3][0];
    for (variant, [rate, client, servers, commands, scripts]) in variants.iter().zip(&figures) {
        println!(
            "{:<14} {rate:>10.0} {:>6.2}x {client:>10.1} {servers:>11.1} {commands:>9.2} {scripts:>8.2}",
            variant.name(),
            rate / all
        );
    }
    let (lib, peer) = (figures[0], figures[2]);
    println!(
        "fencelock / rslock: rounds/s {:.2}x, client CPU {:.2}x, server CPU {:.2}x, commands {:.2}x",
        lib[0] / peer[0],
        lib[1] / peer[1],
        lib[2] / peer[2],
        lib[3] / peer[3]
    );
}

/// N = 1, 3, 5, 7, 9: rounds/s of fencelock, rslock and both floors.
async fn sweep() {
    const SWEEP: [usize; 5] = [1, 3, 5, 7, 9];
    let (runs, run) = (
        floors::run_count(3),
        floors::run_length(Duration::from_secs(2)),
    );
    let nodes = floors::nodes(9);
    use Variant::*;
    let variants = [Fencelock, Rslock, FloorAll, FloorQuorum];
    println!(
        "\nthroughput by node count, {TASKS} tasks on distinct keys, medians of {runs} runs of {run:?}"
    );
    println!("N  variant        rounds/s  client µs  servers µs");
    let mut table = Vec::new();
    for n in SWEEP {
        let figures = Setup::new(&nodes, n)
            .await
            .medians(&variants, runs, run)
            .await;
        for (variant, [rate, client, servers, ..]) in variants.iter().zip(&figures) {
            println!(
                "{n}  {:<12} {rate:>10.0} {client:>10.1} {servers:>11.1}",
                variant.name()
            );
        }
        table.push(figures);
    }
    let series = variants
        .iter()
        .enumerate()
        .map(|(v, variant)| Series {
            name: variant.name().to_string(),
            points: SWEEP
                .iter()
                .zip(&table)
                .map(|(&n, f)| (n as f64, f[v][0]))
                .collect(),
        })
        .collect();
    let panel = Panel {
        title: format!("{TASKS} tasks, distinct keys"),
        x: "nodes (N)",
        y: "acquire+release rounds/s",
        log2_x: false,
        log10_y: false,
        series,
    };
    println!(
        "chart: {}",
        chart::draw("nodes-throughput.svg", &[panel]).display()
    );
}
