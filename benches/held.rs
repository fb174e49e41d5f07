//! Held locks: what keeping many locks alive costs. One process holds
//! 1,000, 10,000 and then 100,000 locks at once on five local
//! redis-server nodes started by the bench, with the watchdog on, and
//! over a steady window (at least 10 s and two renewal intervals)
//! measures:
//!
//! - the client's resident memory per held lock (/proc/self/statm, over
//!   the baseline before the locks were taken);
//! - the client's CPU per second (utime + stime of /proc/self/stat);
//! - per node and second: script calls (`cmdstat_evalsha`) and all
//!   commands (`total_commands_processed`, which counts the commands
//!   scripts run too);
//! - the renewer's ticks (its `renew_batch` spans, counted by a
//!   subscriber that enables nothing else) and renewals per second.
//!
//! The target: renewal calls per node and second do not grow with the
//! number of held locks beyond one call per renewal tick per batch of at
//! most 512 keys.
//!
//! The ttl is the default 30 s (a renewal every 10 s) unless
//! `FENCELOCK_HELD_TTL_SECS` says otherwise: 100,000 locks renewed every
//! second (ttl 3 s) are 500,000 extends a second over the five local
//! servers, more than the two shared cores of the smoke-run machine could
//! serve (at 3 s and at 15 s locks were lost there; try 3 on a machine
//! with a core per server). Node timeout 500 ms.
//!
//! `cargo bench --bench held --features testing` (see docs/performance.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::{LockGuard, LockOptions, Locker, Redlock};
use futures::StreamExt;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata};

mod floors;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const NODES: usize = 5;
const TTL_SECS: u64 = 30;
/// Acquires in flight at once, per acquiring task.
const IN_FLIGHT: usize = 64;
const ACQUIRING_TASKS: usize = 2;

/// Counts the renewer's batches and the holds they carry: a subscriber
/// interested in the `renew_batch` span alone, so no other span or event
/// costs more than its callsite check.
#[derive(Default)]
struct Ticks {
    batches: AtomicU64,
    holds: AtomicU64,
}

struct Counting(Arc<Ticks>);

struct Holds<'a>(&'a AtomicU64);

impl tracing::field::Visit for Holds<'_> {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "holds" {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

fn is_batch(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name() == "renew_batch"
}

impl tracing::Subscriber for Counting {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_batch(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        is_batch(meta)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.batches.fetch_add(1, Ordering::Relaxed);
        span.record(&mut Holds(&self.0.holds));
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The CPU time this process has used (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may hold spaces), from field 3:
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100
    // on Linux whatever the kernel's own tick rate).
    let after = &stat[stat.rfind(')').expect("(comm)") + 2..];
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((fields[11] + fields[12]) * 10)
}

/// A node's counters: EVALSHA calls and all commands processed.
async fn server_counts(conn: &mut redis::aio::MultiplexedConnection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query_async(conn)
        .await
        .unwrap();
    let field = |line: &str, prefix: &str, key: &str| -> Option<u64> {
        let rest = line.strip_prefix(prefix)?;
        let value = rest.split(key).nth(1)?;
        value.split([',', '\r']).next()?.trim().parse().ok()
    };
    let mut evalsha = 0;
    let mut total = 0;
    for line in info.lines() {
        if let Some(calls) = field(line, "cmdstat_evalsha:", "calls=") {
            evalsha = calls;
        }
        if let Some(count) = field(line, "total_commands_processed", ":") {
            total = count;
        }
    }
    (evalsha, total)
}

struct Snapshot {
    at: Instant,
    cpu: Duration,
    rss: u64,
    servers: Vec<(u64, u64)>,
    batches: u64,
    batch_holds: u64,
    renewals: u64,
}

async fn snapshot(
    conns: &mut [redis::aio::MultiplexedConnection],
    ticks: &Ticks,
    locker: &Locker<Redlock>,
) -> Snapshot {
    let mut servers = Vec::new();
    for conn in conns.iter_mut() {
        servers.push(server_counts(conn).await);
    }
    Snapshot {
        at: Instant::now(),
        cpu: cpu_time(),
        rss: floors::cpu::resident_bytes(),
        servers,
        batches: ticks.batches.load(Ordering::Relaxed),
        batch_holds: ticks.holds.load(Ordering::Relaxed),
        renewals: locker.statistics().renewals,
    }
}

/// Takes `count` locks with bounded concurrency.
async fn acquire(locker: &Locker<Redlock>, count: usize) -> Vec<LockGuard<Redlock>> {
    let tasks: Vec<_> = (0..ACQUIRING_TASKS)
        .map(|t| {
            let locker = locker.clone();
            tokio::spawn(async move {
                futures::stream::iter((t..count).step_by(ACQUIRING_TASKS))
                    .map(|i| {
                        let locker = locker.clone();
                        async move {
                            let key = format!("held-{count}-{i}");
                            // A loaded machine may time a node out; the
                            // failed attempt was undone, so try again.
                            loop {
                                match locker.try_lock(&key).await {
                                    Ok(guard) => return guard,
                                    Err(e) if e.is_retryable() => {
                                        tokio::time::sleep(Duration::from_millis(10)).await;
                                    }
                                    Err(e) => panic!("{key}: {e}"),
                                }
                            }
                        }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await
            })
        })
        .collect();
    let mut guards = Vec::with_capacity(count);
    for task in tasks {
        guards.extend(task.await.unwrap());
    }
    guards
}

fn main() {
    let ticks = Arc::new(Ticks::default());
    tracing::subscriber::set_global_default(Counting(Arc::clone(&ticks)))
        .expect("the only subscriber");
    let runtime = floors::runtime();
    let nodes = floors::nodes(NODES);
    let urls = nodes.urls();
    // A node timeout that a loaded two-core machine running five servers
    // meets while 100,000 holds are renewed every second.
    let ttl = std::env::var("FENCELOCK_HELD_TTL_SECS")
        .ok()
        .map_or(TTL_SECS, |s| {
            s.parse().expect("FENCELOCK_HELD_TTL_SECS: whole seconds")
        });
    let ttl = Duration::from_secs(ttl);
    let options = LockOptions::default()
        .ttl(ttl)
        .node_timeout(Duration::from_millis(500));
    let interval = options.watchdog_interval().expect("the watchdog is on");
    let window = (interval * 2).max(Duration::from_secs(10));
    println!(
        "held locks: N = {NODES} nodes, ttl {ttl:?} (renewal every {interval:?}), \
         window {window:?}, guard {} bytes",
        size_of::<LockGuard<Redlock>>()
    );
    println!(
        "{:>8} {:>9} {:>10} {:>10} {:>10} {:>9} {:>11} {:>12} {:>12} {:>6}",
        "held",
        "acquire",
        "rss/lock",
        "cpu ms/s",
        "renewals/s",
        "ticks/s",
        "holds/tick",
        "evalsha/s",
        "cmds/s",
        "lost"
    );
    runtime.block_on(async {
        let mut conns = floors::connect(&urls).await;
        for &count in &SIZES {
            let locker = Locker::new(Redlock::from_urls(&urls).unwrap(), options.clone()).unwrap();
            // Connections and scripts first: not part of the locks' cost.
            locker.try_lock("warm-up").await.unwrap().release().await.unwrap();
            let baseline = floors::cpu::resident_bytes();
            let started = Instant::now();
            let guards = acquire(&locker, count).await;
            let acquired = started.elapsed();
            locker.settled().await;
            // Every lock renewed at least once: the schedule is steady.
            tokio::time::sleep(interval + interval / 2).await;
            let before = snapshot(&mut conns, &ticks, &locker).await;
            tokio::time::sleep(window).await;
            let after = snapshot(&mut conns, &ticks, &locker).await;
            let secs = (after.at - before.at).as_secs_f64();
            let per_second = |a: u64, b: u64| (a - b) as f64 / secs;
            let nodes = before.servers.len() as f64;
            let evalsha: f64 = after
                .servers
                .iter()
                .zip(&before.servers)
                .map(|(a, b)| per_second(a.0, b.0))
                .sum::<f64>()
                / nodes;
            let commands: f64 = after
                .servers
                .iter()
                .zip(&before.servers)
                .map(|(a, b)| per_second(a.1, b.1))
                .sum::<f64>()
                / nodes;
            let batches = after.batches - before.batches;
            let lost = guards.iter().filter(|g| !g.is_held()).count();
            let statistics = locker.statistics();
            if statistics.renewal_failures > 0 || statistics.lost > 0 {
                println!(
                    "         ({} renewals failed, {} guards lost since the acquires began)",
                    statistics.renewal_failures, statistics.lost
                );
            }
            println!(
                "{count:>8} {:>8.1}s {:>9}B {:>10.1} {:>10.0} {:>9.2} {:>11.0} {:>12.1} {:>12.1} {lost:>6}",
                acquired.as_secs_f64(),
                after.rss.saturating_sub(baseline) / count as u64,
                (after.cpu - before.cpu).as_secs_f64() * 1000.0 / secs,
                per_second(after.renewals, before.renewals),
                per_second(after.batches, before.batches),
                (after.batch_holds - before.batch_holds) as f64 / batches.max(1) as f64,
                evalsha,
                commands,
            );
            // Out of the schedule without a release round each: the
            // servers are flushed instead.
            for guard in guards {
                drop(guard.hand_off());
            }
            for conn in conns.iter_mut() {
                let _: () = redis::cmd("FLUSHALL").query_async(conn).await.unwrap();
            }
            locker.settled().await;
        }
    });
    println!(
        "evalsha/s per node is about ticks/s x ceil(holds/tick / 512): one call per tick \
         per 512 keys, whatever the number of held locks"
    );
}
