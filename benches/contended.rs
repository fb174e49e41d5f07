//! Contention: 16 tasks loop acquire -> release on one key, on five local
//! redis-server nodes started by the bench, with release notifications
//! (the default) and with polling only (a 0-200 ms random retry delay, the
//! usual default of Redlock clients), and the peer, rslock 0.10, waiting
//! with its own `acquire` loop and default retries (see
//! benches/floors/peer.rs). Beside them, the raw limit of the
//! same run: one task looping the raw acquire + release round on one key
//! (see benches/floors), since every hand-over needs at least a release
//! and an acquire, one after the other.
//!
//! `cargo bench --bench contended --features testing` (see docs/performance.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::{LockOptions, Locker, Redlock};

mod floors;
use floors::contend::{Run, Summary, contend, contend_on, polling};
use floors::stats::median;
use floors::{COMPARE_AND_DELETE, connect, peer, raw_round};

const TASKS: usize = 16;
const NODES: usize = 5;
const KEY: &str = "contended";

/// `TASKS` tasks taking turns on one key through rslock's `acquire`.
async fn rslock_contend(manager: &rslock::LockManager, run: Duration) -> Run {
    let (manager, key): (_, Arc<str>) = (manager.clone(), format!("rslock:{KEY}").into());
    contend_on(TASKS, 1, run, move || {
        let (manager, key) = (manager.clone(), Arc::clone(&key));
        async move { peer::acquire(&manager, &key).await }
    })
    .await
}

/// Raw acquire + release rounds per second on one key, one task.
async fn raw_limit(
    conns: &[redis::aio::MultiplexedConnection],
    script: &redis::Script,
    wait_for: usize,
    run: Duration,
) -> f64 {
    let started = Instant::now();
    let mut rounds = 0u64;
    while started.elapsed() < run {
        raw_round(conns, script, "raw:{contended}", wait_for).await;
        rounds += 1;
    }
    rounds as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let (runs, run) = (
        floors::run_count(3),
        floors::run_length(Duration::from_secs(5)),
    );
    let runtime = floors::runtime();
    let nodes = floors::nodes(NODES);
    let urls = nodes.urls();
    runtime.block_on(async {
        let conns = connect(&urls).await;
        let script = redis::Script::new(COMPARE_AND_DELETE);
        let notified = Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default())
            .unwrap();
        let polling = notified
            .with_options(polling())
            .unwrap();
        let manager = peer::manager(&urls).await;
        let (mut with, mut without, mut peer) =
            (Summary::default(), Summary::default(), Summary::default());
        let (mut all, mut quorum) = (Vec::new(), Vec::new());
        for r in 1..=runs {
            for (name, locker, summary) in [
                ("notifications", Some(&notified), &mut with),
                ("polling only", Some(&polling), &mut without),
                ("rslock", None, &mut peer),
            ] {
                let result = match locker {
                    Some(locker) => contend(locker, KEY, TASKS, run).await,
                    None => rslock_contend(&manager, run).await,
                };
                println!(
                    "run {r} {name:>13}: {} acquisitions, {} hand-overs, {} waits",
                    result.acquisitions,
                    result.handoffs,
                    result.waits.len()
                );
                summary.add(result);
            }
            all.push(raw_limit(&conns, &script, NODES, run).await);
            quorum.push(raw_limit(&conns, &script, NODES / 2 + 1, run).await);
        }
        let (all, quorum) = (median(all), median(quorum));
        println!(
            "\ncontended, {TASKS} tasks on one key, N = {NODES}, medians of {runs} runs of {run:?}"
        );
        println!(
            "{:>13} | {:>10} | {:>11} | {:>8} | {:>8} | {:>8}",
            "", "acquire/s", "hand-over/s", "wait p50", "wait p99", "wait max"
        );
        let [a1, h1, p50_1, p99_1, max_1] = with.medians();
        let [a2, h2, p50_2, p99_2, max_2] = without.medians();
        let [_, h3, _, p99_3, _] = peer.medians();
        for (name, [a, h, p50, p99, max]) in [
            ("notifications", [a1, h1, p50_1, p99_1, max_1]),
            ("polling only", [a2, h2, p50_2, p99_2, max_2]),
            ("rslock", peer.medians()),
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
        println!(
            "against rslock's acquire: hand-overs/s {:.1}x, wait p99 1/{:.1}",
            h1 / h3.max(f64::MIN_POSITIVE),
            p99_3 / p99_1
        );
    });
}
