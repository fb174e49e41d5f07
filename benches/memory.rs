//! Memory: the client's resident set over 1,000,000 acquire/release cycles
//! on five local redis-server nodes started by the bench. The cycles touch
//! everything that keeps state per lock: 16,384 distinct keys in turn
//! (per-key state), a watchdog task per guard, and every 16th cycle a
//! contended `lock` on one of four hot keys (waiting lines, pub/sub
//! subscriptions, late replies). The resident set is read from
//! /proc/self/statm every 100,000 cycles; after the first 100,000 (warm-up:
//! connections, allocator pools) it must stay flat.
//!
//! `cargo bench --bench memory --features testing` (see docs/performance.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::{LockOptions, Locker, Redlock};

mod floors;

const CYCLES: u64 = 1_000_000;
const SAMPLE_EVERY: u64 = 100_000;
const TASKS: u64 = 32;
const KEYS: u64 = 16_384;

fn main() {
    let runtime = floors::runtime();
    let nodes = floors::nodes(5);
    let urls = nodes.urls();
    runtime.block_on(async {
        let locker =
            Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let (locker, done) = (locker.clone(), Arc::clone(&done));
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while done.fetch_add(1, Ordering::Relaxed) < CYCLES {
                        i += 1;
                        let guard = if i.is_multiple_of(16) {
                            let hot = format!("hot-{}", t % 4);
                            locker.lock_timeout(&hot, Duration::from_secs(30)).await
                        } else {
                            let key = format!("mem-{}", (t * 7919 + i) % KEYS);
                            locker.try_lock(&key).await
                        };
                        // A distinct key can be taken by another task right now.
                        if let Ok(guard) = guard {
                            guard.release().await.unwrap();
                        }
                    }
                })
            })
            .collect();
        let mut samples = Vec::new();
        let mut next = SAMPLE_EVERY;
        while next <= CYCLES {
            while done.load(Ordering::Relaxed) < next {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let rss = floors::cpu::resident_bytes() / 1024;
            println!(
                "{next:>9} cycles  rss {rss:>7} KiB  ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            samples.push(rss);
            next += SAMPLE_EVERY;
        }
        for task in tasks {
            task.await.unwrap();
        }
        locker.backend().settled().await;
        let after_warm_up = samples[0];
        let last = *samples.last().unwrap();
        let peak = *samples.iter().max().unwrap();
        println!(
            "\nrss after warm-up {after_warm_up} KiB, after {CYCLES} cycles {last} KiB \
             (growth {} KiB), peak {peak} KiB",
            last as i64 - after_warm_up as i64
        );
        println!("coordinator state at the end: {:?}", locker.backend());
        let mut channels = 0;
        for url in &urls {
            let mut c = redis::Client::open(url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let open: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .query_async(&mut c)
                .await
                .unwrap();
            channels += open.len();
        }
        println!("pub/sub channels still subscribed on the nodes: {channels}");
    });
}
