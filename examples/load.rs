//! A steady load for profiling: 64 tasks (or `--tasks N`) loop acquire +
//! release on their own keys on five local redis-server nodes (or `--nodes N`,
//! started here) for a while, through the library or, with `--floor`, as the
//! raw "all" floor of the benches. One task shows the uncontended round's own
//! client work; many show the cost under load.
//!
//! ```text
//! cargo build --release --features testing --example load
//! perf record -a -g -- target/release/examples/load --seconds 10
//! perf report --sort comm --no-children
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{LockOptions, Locker, Redlock};
use futures::future::join_all;

/// The kernel's clock ticks in /proc/<pid>/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
const COMPARE_AND_DELETE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut floor, mut tasks_wanted, mut node_count) = (10u64, false, 64, 5);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--floor" => floor = true,
            "--seconds" => seconds = number(&mut args, "--seconds"),
            "--tasks" => tasks_wanted = number(&mut args, "--tasks") as usize,
            "--nodes" => node_count = number(&mut args, "--nodes") as usize,
            other => panic!(
                "unknown argument {other}; use --seconds N, --tasks N, --nodes N and --floor"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes =
        RedisNodes::start(node_count).expect("start redis-server nodes (run scripts/setup)");
    let urls = nodes.urls();
    runtime.block_on(async {
        let locker =
            Locker::new(Redlock::from_urls(&urls).unwrap(), LockOptions::default()).unwrap();
        let mut conns = Vec::new();
        for url in &urls {
            let client = redis::Client::open(url.as_str()).unwrap();
            conns.push(client.get_multiplexed_async_connection().await.unwrap());
        }
        let conns = Arc::new(conns);
        let script = Arc::new(redis::Script::new(COMPARE_AND_DELETE));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..tasks_wanted {
            let (locker, done) = (locker.clone(), Arc::clone(&done));
            let (failed, stop) = (Arc::clone(&failed), Arc::clone(&stop));
            let (conns, script) = (Arc::clone(&conns), Arc::clone(&script));
            tasks.push(tokio::spawn(async move {
                let key = format!("load-{t}");
                while !stop.load(Ordering::Relaxed) {
                    if floor {
                        join_all(conns.iter().map(|c| {
                            let mut c = c.clone();
                            let mut set = redis::cmd("SET");
                            set.arg(&key).arg("v").arg("NX").arg("PX").arg(30_000);
                            async move { set.query_async::<Option<String>>(&mut c).await }
                        }))
                        .await;
                        join_all(conns.iter().map(|c| {
                            let mut c = c.clone();
                            let mut call = script.prepare_invoke();
                            call.key(&key).arg("v");
                            async move { call.invoke_async::<i64>(&mut c).await }
                        }))
                        .await;
                    } else {
                        // A failed round is counted, not a reason to stop.
                        let Ok(guard) = locker.try_lock(&key).await else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        if guard.release().await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Warm-up: connections, scripts, allocator pools.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pids: Vec<u32> = nodes.iter().filter_map(|n| n.pid()).collect();
        let (client_before, servers_before) = (cpu_ticks("self"), servers_ticks(&pids));
        let mut first = conns[0].clone();
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut first)
            .await
            .unwrap();
        let counted_before = done.load(Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let rounds = done.load(Ordering::Relaxed) - counted_before;
        let elapsed = started.elapsed();
        let client = cpu_ticks("self") - client_before;
        let servers = servers_ticks(&pids) - servers_before;
        let rate = rounds as f64 / elapsed.as_secs_f64();
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut first)
            .await
            .unwrap();
        let calls: Vec<String> = stats
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
                let n: f64 = rest.split(',').next()?.parse().ok()?;
                Some(format!("{name} {:.2}", n / rounds as f64))
            })
            .collect();
        let what = if floor {
            "raw floor rounds"
        } else {
            "acquire+release"
        };
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        println!("{rate:.0} {what}/s");
        let failed = failed.load(Ordering::Relaxed);
        if failed > 0 {
            println!("{failed} rounds failed");
        }
        println!("commands per round on the first node: {}", calls.join(", "));
        let per_round = |ticks: u64| ticks as f64 * 1e6 / TICKS_PER_SECOND / rounds as f64;
        println!(
            "CPU per round: client {:.1} µs, servers {:.1} µs",
            per_round(client),
            per_round(servers)
        );
    });
    // The nodes stop on drop.
    drop(runtime);
}

fn number(args: &mut impl Iterator<Item = String>, name: &str) -> u64 {
    args.next()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| panic!("{name} takes a positive number"))
}

/// User and system CPU ticks of a process so far, all its threads
/// (/proc/<pid>/stat fields 14 and 15).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // Fields 14 and 15 are the 12th and 13th after the name.
    fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
}

fn servers_ticks(pids: &[u32]) -> u64 {
    pids.iter().map(|p| cpu_ticks(&p.to_string())).sum()
}
