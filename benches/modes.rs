//! Read-write locks and semaphores beside the exclusive lock, in one run,
//! on local redis-server nodes started by the bench, with the raw floors
//! of the same run (see benches/floors). Medians of repeated runs.
//!
//! - uncontended: one task, `try_lock`, `try_read`, `try_write` and a
//!   4-permit `try_acquire`, each followed by its release, N = 1 and 5;
//! - readers: 64 tasks loop `read` + release on one key (all may hold at
//!   once), beside 64 tasks taking exclusive locks on 64 distinct keys,
//!   N = 1 and 5;
//! - permits: 16 tasks loop `acquire` + release on a semaphore of 4
//!   permits, with release notifications and with polling only.
//!
//! `cargo bench --bench modes --features testing` (see docs/performance.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fencelock::deadpool_redis::redis;
use fencelock::{LockOptions, Locker, Redlock, RetryPolicy, Semaphore};

mod floors;
use floors::contend::{Held, Summary, contend, contend_on};
use floors::stats::{median, ratio, tail_latency};
use floors::{COMPARE_AND_DELETE, connect, rate, raw_round};

/// Timed runs per uncontended variant, interleaved, and rounds in each.
const RUNS: usize = 5;
const SAMPLES: usize = 1_000;
/// The readers' and the exclusive throughput runs.
const READERS: usize = 64;
const READ_RUN: Duration = Duration::from_secs(3);
/// The semaphore under contention.
const PERMITS: u32 = 4;
const TASKS: usize = 16;
const CONTENDED_RUN: Duration = Duration::from_secs(5);
const CONTENDED_RUNS: usize = 3;

fn main() {
    let runtime = floors::runtime();
    for n in [1, 5] {
        let nodes = floors::nodes(n);
        let urls = nodes.urls();
        runtime.block_on(async {
            let locker =
                Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
            uncontended(&locker, &urls).await;
            readers(&locker, &urls).await;
            permits(&locker, &urls).await;
        });
    }
}

/// One acquire + release.
async fn round<H: Held>(take: impl Future<Output = fencelock::Result<H>>) {
    take.await.expect("acquire").give_back().await;
}

/// p50 and p99 of each kind's acquire + release round, beside the floors.
async fn uncontended(locker: &Locker<Redlock>, urls: &[String]) {
    let n = urls.len();
    let conns = connect(urls).await;
    let script = redis::Script::new(COMPARE_AND_DELETE);
    let semaphore = locker.semaphore("u-permit", PERMITS).unwrap();
    let names = [
        "lock",
        "read",
        "write",
        "permit",
        "floor_all",
        "floor_quorum",
    ];
    let mut p50s = vec![Vec::new(); names.len()];
    let mut p99s = vec![Vec::new(); names.len()];
    for _ in 0..RUNS {
        for (i, name) in names.iter().enumerate() {
            let (p50, p99) = match *name {
                "lock" => tail_latency(1, SAMPLES, || round(locker.try_lock("u-lock"))).await,
                "read" => tail_latency(1, SAMPLES, || round(locker.try_read("u-read"))).await,
                "write" => tail_latency(1, SAMPLES, || round(locker.try_write("u-write"))).await,
                "permit" => tail_latency(1, SAMPLES, || round(semaphore.try_acquire())).await,
                "floor_all" => {
                    tail_latency(1, SAMPLES, || raw_round(&conns, &script, "raw:{u}", n)).await
                }
                _ => {
                    tail_latency(1, SAMPLES, || {
                        raw_round(&conns, &script, "raw:{u}", n / 2 + 1)
                    })
                    .await
                }
            };
            p50s[i].push(p50);
            p99s[i].push(p99);
        }
    }
    let p50: Vec<_> = p50s.into_iter().map(median).collect();
    let p99: Vec<_> = p99s.into_iter().map(median).collect();
    println!("\nuncontended acquire + release, N = {n}, medians of {RUNS} runs x {SAMPLES} rounds");
    println!(
        "| N | variant | p50 | p99 | p50 / lock | p99 / lock | p50 / floor_quorum | p99 / floor_all |"
    );
    for (i, name) in names.iter().enumerate() {
        println!(
            "| {n} | {name} | {:.1} µs | {:.1} µs | {:.2}x | {:.2}x | {:.2}x | {:.2}x |",
            p50[i].as_secs_f64() * 1e6,
            p99[i].as_secs_f64() * 1e6,
            ratio(p50[i], p50[0]),
            ratio(p99[i], p99[0]),
            ratio(p50[i], p50[5]),
            ratio(p99[i], p99[4]),
        );
    }
}

/// 64 readers of one key against 64 exclusive holders of distinct keys.
async fn readers(locker: &Locker<Redlock>, urls: &[String]) {
    let n = urls.len();
    let conns = Arc::new(connect(urls).await);
    let script = Arc::new(redis::Script::new(COMPARE_AND_DELETE));
    let keys: Arc<Vec<String>> = Arc::new((0..READERS).map(|t| format!("x-{t}")).collect());
    let raw_keys: Arc<Vec<String>> =
        Arc::new((0..READERS).map(|t| format!("raw:{{x-{t}}}")).collect());
    let (mut read, mut exclusive, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let most = Arc::new(AtomicUsize::new(0));
    for _ in 0..RUNS {
        // Readers count themselves while they hold, to show they overlap.
        let (l, holding, m) = (
            locker.clone(),
            Arc::new(AtomicUsize::new(0)),
            Arc::clone(&most),
        );
        read.push(
            rate(READERS, READ_RUN, move |_| {
                let (l, holding, m) = (l.clone(), Arc::clone(&holding), Arc::clone(&m));
                async move {
                    let guard = l.read("readers").await.unwrap();
                    m.fetch_max(
                        holding.fetch_add(1, Ordering::Relaxed) + 1,
                        Ordering::Relaxed,
                    );
                    // Held across a scheduler round, as real work would be.
                    tokio::task::yield_now().await;
                    holding.fetch_sub(1, Ordering::Relaxed);
                    guard.release().await.unwrap();
                }
            })
            .await,
        );
        let (l, k) = (locker.clone(), Arc::clone(&keys));
        exclusive.push(
            rate(READERS, READ_RUN, move |t| {
                let (l, k) = (l.clone(), Arc::clone(&k));
                async move { l.try_lock(&k[t]).await.unwrap().release().await.unwrap() }
            })
            .await,
        );
        let (c, s, k) = (
            Arc::clone(&conns),
            Arc::clone(&script),
            Arc::clone(&raw_keys),
        );
        floor.push(
            rate(READERS, READ_RUN, move |t| {
                let (c, s, k) = (Arc::clone(&c), Arc::clone(&s), Arc::clone(&k));
                async move { raw_round(&c, &s, &k[t], n).await }
            })
            .await,
        );
    }
    let (read, exclusive, floor) = (median(read), median(exclusive), median(floor));
    println!(
        "\n{READERS} tasks, N = {n}, medians of {RUNS} runs of {READ_RUN:?} (acquire + release/s)"
    );
    println!("| N | variant | rounds/s | ratio to lock, distinct keys | ratio to floor_all |");
    for (name, value) in [
        ("read, one key", read),
        ("lock, distinct keys", exclusive),
        ("floor_all, distinct keys", floor),
    ] {
        println!(
            "| {n} | {name} | {value:.0} | {:.2}x | {:.2}x |",
            value / exclusive,
            value / floor
        );
    }
    println!(
        "most readers holding at once: {}",
        most.load(Ordering::Relaxed)
    );
}

/// 16 tasks on 4 permits, with notifications and polling only, beside 16
/// tasks on one exclusive lock and the raw limit of 4 holders.
async fn permits(locker: &Locker<Redlock>, urls: &[String]) {
    let n = urls.len();
    let conns = Arc::new(connect(urls).await);
    let script = Arc::new(redis::Script::new(COMPARE_AND_DELETE));
    let polling = locker
        .with_options(
            LockOptions::default().wake_on_release(false).retry(
                RetryPolicy::default()
                    .delay(Duration::ZERO)
                    .jitter(Duration::from_millis(200)),
            ),
        )
        .unwrap();
    let notified = locker.semaphore("permits", PERMITS).unwrap();
    let polled = polling.semaphore("permits", PERMITS).unwrap();
    let (mut with, mut without, mut lock) =
        (Summary::default(), Summary::default(), Summary::default());
    let mut raw = Vec::new();
    for run in 1..=CONTENDED_RUNS {
        for (name, semaphore, summary) in [
            ("notifications", &notified, &mut with),
            ("polling only", &polled, &mut without),
        ] {
            let semaphore = Semaphore::clone(semaphore);
            let result = contend_on(TASKS, PERMITS as usize, CONTENDED_RUN, move || {
                let semaphore = semaphore.clone();
                async move { semaphore.acquire().await }
            })
            .await;
            println!(
                "run {run} N = {n} {name:>13}: {} acquisitions, {} hand-overs, {} waits",
                result.acquisitions,
                result.handoffs,
                result.waits.len()
            );
            summary.add(result);
        }
        lock.add(contend(locker, "contended", TASKS, CONTENDED_RUN).await);
        // Four holders that never wait for each other: the most a
        // semaphore of four permits could hand out.
        let (c, s) = (Arc::clone(&conns), Arc::clone(&script));
        raw.push(
            rate(PERMITS as usize, CONTENDED_RUN, move |t| {
                let (c, s) = (Arc::clone(&c), Arc::clone(&s));
                async move { raw_round(&c, &s, &format!("raw:{{p-{t}}}"), n).await }
            })
            .await,
        );
    }
    let raw = median(raw);
    println!(
        "\n{TASKS} tasks, {PERMITS} permits, N = {n}, medians of {CONTENDED_RUNS} runs of {CONTENDED_RUN:?}"
    );
    println!(
        "| N | variant | acquisitions/s | hand-overs/s | wait p50 | wait p99 | wait max | acquisitions / raw |"
    );
    let rows = [
        ("semaphore, notifications", with.medians()),
        ("semaphore, polling only", without.medians()),
        ("lock, notifications", lock.medians()),
    ];
    for (name, [a, h, p50, p99, max]) in rows {
        println!(
            "| {n} | {name} | {a:.0} | {h:.0} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms | {:.2}x |",
            a / raw
        );
    }
    let (h1, h2) = (rows[0].1[1], rows[1].1[1]);
    println!(
        "raw limit, {PERMITS} tasks on their own keys (floor_all): {raw:.0} rounds/s; \
         hand-overs notifications / polling: {:.1}x",
        h1 / h2.max(f64::MIN_POSITIVE)
    );
}
