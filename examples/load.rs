//! A steady load for profiling: 64 tasks loop acquire + release on their own
//! keys on five local redis-server nodes (started here) for a while, through
//! the library or, with `--floor`, as the raw "all" floor of the benches.
//!
//! ```text
//! cargo build --release --features testing --example load
//! perf record -a -g -- target/release/examples/load --seconds 10
//! perf report --sort comm --no-children
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{LockOptions, Locker, Redlock};
use futures::future::join_all;

const TASKS: usize = 64;
const COMPARE_AND_DELETE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut floor) = (10u64, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--floor" => floor = true,
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds N")
            }
            other => panic!("unknown argument {other}; use --seconds N and --floor"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes = RedisNodes::start(5).expect("start redis-server nodes (run scripts/setup)");
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
        for t in 0..TASKS {
            let (locker, done) = (locker.clone(), Arc::clone(&done));
            let (conns, script) = (Arc::clone(&conns), Arc::clone(&script));
            tokio::spawn(async move {
                let key = format!("load-{t}");
                loop {
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
                        locker
                            .try_lock(&key)
                            .await
                            .unwrap()
                            .release()
                            .await
                            .unwrap();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        let what = if floor {
            "raw floor rounds"
        } else {
            "acquire+release"
        };
        println!("{rate:.0} {what}/s");
    });
    // The looping tasks end with the runtime; the nodes stop on drop.
    drop(runtime);
}
