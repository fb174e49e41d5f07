//! Throughput: 64 tasks, each looping acquire + release on its own key, on
//! five local redis-server nodes started by the bench, beside the raw floors
//! of the same run (see benches/floors). Medians of repeated runs.
//!
//! `cargo bench --bench throughput --features testing` (see docs/performance.md).

use std::sync::Arc;
use std::time::Duration;

use fencelock::deadpool_redis::redis;
use fencelock::{LockOptions, Locker, Redlock, Watchdog};

mod floors;
use floors::stats::median;
use floors::{COMPARE_AND_DELETE, connect, library_round, rate, raw_round};

const TASKS: usize = 64;
const NODES: usize = 5;
const RUN: Duration = Duration::from_secs(3);
const RUNS: usize = 5;

fn main() {
    let runtime = floors::runtime();
    let nodes = floors::nodes(NODES);
    let urls = nodes.urls();
    let quorum = NODES / 2 + 1;
    runtime.block_on(async {
        let conns = Arc::new(connect(&urls).await);
        let script = Arc::new(redis::Script::new(COMPARE_AND_DELETE));
        let locker = Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default())
            .unwrap();
        let keys: Arc<Vec<String>> = Arc::new((0..TASKS).map(|t| format!("tp-{t}")).collect());
        let raw_keys: Arc<Vec<String>> =
            Arc::new((0..TASKS).map(|t| format!("raw:{{tp-{t}}}")).collect());
        // The same without the watchdog task each guard spawns, to show its
        // share of the cost.
        let bare = locker
            .with_options(LockOptions::default().watchdog(Watchdog::Off))
            .unwrap();
        let (mut lib, mut all, mut quo) = (Vec::new(), Vec::new(), Vec::new());
        let mut unwatched = Vec::new();
        for _ in 0..RUNS {
            for (locker, out) in [(&locker, &mut lib), (&bare, &mut unwatched)] {
                let (l, k) = (locker.clone(), Arc::clone(&keys));
                out.push(
                    rate(TASKS, RUN, move |t| {
                        let (l, k) = (l.clone(), Arc::clone(&k));
async move { library_round(&l, &k[t]).await }
                    })
                    .await,
                );
            }
            for (wait_for, out) in [(NODES, &mut all), (quorum, &mut quo)] {
                let (c, s, k) = (Arc::clone(&conns), Arc::clone(&script), Arc::clone(&raw_keys));
                out.push(
                    rate(TASKS, RUN, move |t| {
                        let (c, s, k) = (Arc::clone(&c), Arc::clone(&s), Arc::clone(&k));
                        async move { raw_round(&c, &s, &k[t], wait_for).await }
                    })
                    .await,
                );
            }
        }
        let (lib, all, quo) = (median(lib), median(all), median(quo));
        let unwatched = median(unwatched);
        println!("throughput, {TASKS} tasks on distinct keys, N = {NODES}, medians of {RUNS} runs of {RUN:?}");
        println!("fencelock     {lib:>9.0} acquire+release/s   {:.2}x all, {:.2}x quorum", lib / all, lib / quo);
        println!(
            "  no watchdog {unwatched:>9.0} acquire+release/s   {:.2}x all",
            unwatched / all
        );
        println!("floor_all     {all:>9.0} rounds/s");
        println!("floor_quorum  {quo:>9.0} rounds/s");
    });
}
