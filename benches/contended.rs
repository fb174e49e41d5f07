//! Contention: 16 tasks loop acquire -> release on one key, on five local
//! redis-server nodes started by the bench, with release notifications
//! (the default) and with polling only (a 0-200 ms random retry delay, the
//! usual default of Redlock clients). Beside them, the raw limit of the
//! same run: one task looping the raw acquire + release round on one key
//! (see benches/floors), since every hand-over needs at least a release
//! and an acquire, one after the other.
//!
//! `cargo bench --bench contended --features testing` (see docs/performance.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::{LockOptions, Locker, Redlock, RetryPolicy};

mod floors;
use floors::{COMPARE_AND_DELETE, connect, raw_round};

const TASKS: usize = 16;
const NODES: usize = 5;
const RUN: Duration = Duration::from_secs(5);
const RUNS: usize = 3;
const KEY: &str = "contended";

/// What one run of the contended loop saw.
struct Run {
    acquisitions: usize,
    /// Acquisitions by a task other than the previous holder.
    handoffs: usize,
    /// Every wait for the lock, in seconds; waits still going at the end
    /// of the run count with their length so far.
    waits: Vec<f64>,
    elapsed: Duration,
}

impl Run {
    fn per_second(&self, count: usize) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }
}

async fn contend(locker: &Locker<Redlock>) -> Run {
    // The task that took the lock last, plus one (0: nobody yet).
    let last = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + RUN;
    let tasks: Vec<_> = (1..=TASKS)
        .map(|me| {
            let (locker, last) = (locker.clone(), Arc::clone(&last));
            tokio::spawn(async move {
                let (mut acquisitions, mut handoffs, mut waits) = (0, 0, Vec::new());
                loop {
                    let asked = Instant::now();
                    match tokio::time::timeout_at(deadline, locker.lock(KEY)).await {
                        Ok(guard) => {
                            let guard = guard.expect("lock");
                            waits.push(asked.elapsed().as_secs_f64());
                            acquisitions += 1;
                            if last.swap(me, Ordering::Relaxed) != me {
                                handoffs += 1;
                            }
                            guard.release().await.expect("release");
                        }
                        Err(_) => {
                            waits.push(asked.elapsed().as_secs_f64());
                            return (acquisitions, handoffs, waits);
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return (acquisitions, handoffs, waits);
                    }
                }
            })
        })
        .collect();
    let mut run = Run {
        acquisitions: 0,
        handoffs: 0,
        waits: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (a, h, w) = task.await.unwrap();
        run.acquisitions += a;
        run.handoffs += h;
        run.waits.extend(w);
    }
    run.elapsed = started.elapsed();
    // The first acquisition of the run had no previous holder.
    run.handoffs = run.handoffs.saturating_sub(1);
    run
}

/// Raw acquire + release rounds per second on one key, one task.
async fn raw_limit(
    conns: &[redis::aio::MultiplexedConnection],
    script: &redis::Script,
    wait_for: usize,
) -> f64 {
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < RUN {
        raw_round(conns, script, "raw:{contended}", wait_for).await;
        rounds += 1;
    }
    rounds as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Medians over runs of: acquisitions/s, handoffs/s, wait p50, p99, max (ms).
#[derive(Default)]
struct Summary {
    acquisitions: Vec<f64>,
    handoffs: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
}

impl Summary {
    fn add(&mut self, mut run: Run) {
        run.waits.sort_by(f64::total_cmp);
        self.acquisitions.push(run.per_second(run.acquisitions));
        self.handoffs.push(run.per_second(run.handoffs));
        self.p50.push(percentile(&run.waits, 0.50) * 1e3);
        self.p99.push(percentile(&run.waits, 0.99) * 1e3);
        self.max
            .push(run.waits.last().copied().unwrap_or(0.0) * 1e3);
    }

    fn medians(&self) -> [f64; 5] {
        [
            median(self.acquisitions.clone()),
            median(self.handoffs.clone()),
            median(self.p50.clone()),
            median(self.p99.clone()),
            median(self.max.clone()),
        ]
    }
}

fn main() {
    let runtime = floors::runtime();
    let nodes = floors::nodes(NODES);
    let urls = nodes.urls();
    runtime.block_on(async {
        let conns = connect(&urls).await;
        let script = redis::Script::new(COMPARE_AND_DELETE);
        let notified = Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default())
            .unwrap();
        let polling = notified
            .with_options(
                LockOptions::default().wake_on_release(false).retry(
                    RetryPolicy::default()
                        .delay(Duration::ZERO)
                        .jitter(Duration::from_millis(200)),
                ),
            )
            .unwrap();
        let (mut with, mut without) = (Summary::default(), Summary::default());
        let (mut all, mut quorum) = (Vec::new(), Vec::new());
        for run in 1..=RUNS {
            for (name, locker, summary) in [
                ("notifications", &notified, &mut with),
                ("polling only", &polling, &mut without),
            ] {
                let result = contend(locker).await;
                println!(
                    "run {run} {name:>13}: {} acquisitions, {} hand-overs, {} waits",
                    result.acquisitions,
                    result.handoffs,
                    result.waits.len()
                );
                summary.add(result);
            }
            all.push(raw_limit(&conns, &script, NODES).await);
            quorum.push(raw_limit(&conns, &script, NODES / 2 + 1).await);
        }
        let (all, quorum) = (median(all), median(quorum));
        println!(
            "\ncontended, {TASKS} tasks on one key, N = {NODES}, medians of {RUNS} runs of {RUN:?}"
        );
        println!(
            "{:>13} | {:>10} | {:>11} | {:>8} | {:>8} | {:>8}",
            "", "acquire/s", "hand-over/s", "wait p50", "wait p99", "wait max"
        );
        let [a1, h1, p50_1, p99_1, max_1] = with.medians();
        let [a2, h2, p50_2, p99_2, max_2] = without.medians();
        for (name, [a, h, p50, p99, max]) in [
            ("notifications", [a1, h1, p50_1, p99_1, max_1]),
            ("polling only", [a2, h2, p50_2, p99_2, max_2]),
        ] {
            println!(
                "{name:>13} | {a:>10.0} | {h:>11.0} | {p50:>6.1}ms | {p99:>6.1}ms | {max:>6.1}ms"
            );
        }
        println!("raw limit: {all:.0} rounds/s (all), {quorum:.0} rounds/s (quorum), one task");
        println!(
            "hand-overs/s: notifications / polling = {:.1}x; notifications / raw all limit = {:.2}x",
            h1 / h2.max(f64::MIN_POSITIVE),
            h1 / all
        );
        println!(
            "wait p99: polling / notifications = {:.1}x; max wait with notifications {max_1:.1} ms",
            p99_2 / p99_1
        );
    });
}
