//! The rounds the benches time: the library's acquire + release, and the
//! raw floors it is compared against, the same Redis commands a lock needs
//! through the plain redis crate with no library logic (and in [`etcd`],
//! the same for etcd).

#![allow(dead_code)] // each bench uses a different part

pub mod chart;
pub mod contend;
pub mod cpu;
pub mod etcd;
pub mod peer;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{Backend, Locker};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;

/// The runtime every bench runs on: two workers, one per core of the
/// machine the figures in docs/performance.md come from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `n` local redis-server nodes, started by the fixtures and stopped on drop,
/// and marked as one new cluster by a first lock over all of them: a bench
/// that then times fewer of them, or all, meets nodes that remember, never
/// a new node joining nodes that remember (which waits out a quarantine,
/// docs/algorithm.md, section 15).
pub fn nodes(n: usize) -> RedisNodes {
    let nodes = RedisNodes::start(n).expect("start redis-server nodes (run scripts/setup)");
    let urls = nodes.urls();
    let marking = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    marking.block_on(async {
        let redlock = fencelock::Redlock::from_urls(&urls).expect("node URLs");
        let locker = Locker::new(redlock, fencelock::LockOptions::default()).expect("a Locker");
        library_round(&locker, "bench-marking").await;
        locker.backend().settled().await;
    });
    nodes
}

/// One uncontended acquire + release through the library.
pub async fn library_round<B: Backend>(locker: &Locker<B>, key: &str) {
    locker.try_lock(key).await.unwrap().release().await.unwrap();
}

/// Rounds per second of `tasks` tasks looping `round(task)` for `run`.
pub async fn rate<F, Fut>(tasks: usize, run: Duration, round: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let loops = Loops::spawn(tasks, round);
    let started = Instant::now();
    tokio::time::sleep(run).await;
    let counted = loops.done();
    let elapsed = started.elapsed();
    loops.stop().await;
    counted as f64 / elapsed.as_secs_f64()
}

/// `tasks` tasks looping `round(task)` until stopped, counting the rounds
/// they complete.
pub struct Loops {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Loops {
    /// Starts the tasks.
    pub fn spawn<F, Fut>(tasks: usize, round: F) -> Self
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let round = Arc::new(round);
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks = (0..tasks)
            .map(|t| {
                let (round, stop, done) =
                    (Arc::clone(&round), Arc::clone(&stop), Arc::clone(&done));
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        round(t).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self { stop, done, tasks }
    }

    /// Rounds completed so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the tasks and waits for the rounds in flight to finish.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// Whether the command line's filters (criterion's, such as `-- tails`)
/// select the part `name`. Criterion applies them to its own benchmarks
/// only, and a `harness = false` bench gets them as plain arguments, so
/// the parts that print their own tables ask here; no filter selects all.
pub fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// The length of one timed run: `FENCELOCK_BENCH_SECS` (seconds, may be
/// fractional) if set, for short smoke runs, else `default`.
pub fn run_length(default: Duration) -> Duration {
    std::env::var("FENCELOCK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(default, Duration::from_secs_f64)
}

/// How many timed runs each figure is the median of:
/// `FENCELOCK_BENCH_RUNS` if set, else `default`.
pub fn run_count(default: usize) -> usize {
    std::env::var("FENCELOCK_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Deletes the key only if it still holds our value.
pub const COMPARE_AND_DELETE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// One plain connection per node.
pub async fn connect(urls: &[String]) -> Vec<MultiplexedConnection> {
    let mut conns = Vec::new();
    for url in urls {
        let client = redis::Client::open(url.as_str()).unwrap();
        conns.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    conns
}

/// One raw acquire + release round on `key`, waiting for `wait_for`
/// replies per step: `SET key value NX PX`, then compare-and-delete.
pub async fn raw_round(
    conns: &[MultiplexedConnection],
    script: &redis::Script,
    key: &str,
    wait_for: usize,
) {
    let value = "raw-owner";
    first_replies(
        wait_for,
        conns.iter().map(|c| {
            let mut c = c.clone();
            async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async::<Option<String>>(&mut c)
                    .await
            }
        }),
    )
    .await;
    first_replies(
        wait_for,
        conns.iter().map(|c| {
            let mut c = c.clone();
            let mut call = script.prepare_invoke();
            call.key(key).arg(value);
            async move { call.invoke_async::<i64>(&mut c).await }
        }),
    )
    .await;
}

/// Sends every request at once and waits for the first `wait_for`
/// replies, which must be successes; the rest are dropped (on their
/// connections, they still run on the servers).
async fn first_replies<T, F>(wait_for: usize, requests: impl Iterator<Item = F>)
where
    F: Future<Output = redis::RedisResult<T>>,
{
    let mut replies: FuturesUnordered<F> = requests.collect();
    for _ in 0..wait_for {
        replies.next().await.unwrap().unwrap();
    }
}

/// fencelock's own acquire and release scripts, sent raw (see
/// [`scripts_round`]); `unmarked` is the acquire without the check of the
/// node's marker (docs/algorithm.md, section 15), to price that check.
pub struct LockScripts {
    acquire: redis::Script,
    unmarked: redis::Script,
    release: redis::Script,
}

impl LockScripts {
    pub fn new() -> Self {
        const ACQUIRE: &str = include_str!("../../src/redis/lua/acquire.lua");
        let standing = include_str!("../../src/redis/lua/standing.lua");
        Self {
            acquire: redis::Script::new(&format!("{standing}{ACQUIRE}")),
            unmarked: redis::Script::new(&format!(
                "local function standing() return nil end\n{ACQUIRE}"
            )),
            release: redis::Script::new(include_str!("../../src/redis/lua/release.lua")),
        }
    }
}

/// One raw round of fencelock's own scripts on `key`, resolved at
/// `wait_for` replies per step like [`raw_round`]: the servers do what a
/// library round makes them do (token, hash, reentrancy check, release
/// notice), the client nothing but send and count. What a library round
/// takes beyond this is the client's own work; what this takes beyond
/// `raw_round` is the scripts' price on the servers.
/// `checked`: with the check of the node's marker, as the library sends it
/// (the nodes are marked by [`nodes`]).
pub async fn scripts_round(
    conns: &[MultiplexedConnection],
    scripts: &LockScripts,
    key: &str,
    wait_for: usize,
    checked: bool,
) {
    let (owner, hold) = ("raw-owner", "1");
    let counter = format!("{key}:fence");
    let counter = &counter;
    let acquire = if checked {
        &scripts.acquire
    } else {
        &scripts.unmarked
    };
    first_replies(
        wait_for,
        conns.iter().map(|c| {
            let mut c = c.clone();
            let mut call = acquire.prepare_invoke();
            call.key(key)
                .key(counter)
                .key("fencelock:node")
                .arg(owner)
                .arg(hold)
                .arg(30_000)
                .arg(16)
                .arg("")
                .arg(600_000)
                .arg(1);
            async move { call.invoke_async::<redis::Value>(&mut c).await }
        }),
    )
    .await;
    first_replies(
        wait_for,
        conns.iter().map(|c| {
            let mut c = c.clone();
            let mut call = scripts.release.prepare_invoke();
            call.key(key).arg(owner).arg(hold).arg("1");
            async move { call.invoke_async::<i64>(&mut c).await }
        }),
    )
    .await;
}
