//! Server CPU per request: what one redis-server spends on each request a
//! lock round sends it, measured from the server's threads' on-CPU time
//! (`/proc/<pid>/task/*/schedstat`, nanoseconds), so that time the server
//! spent waiting for a core does not count. The requests go in
//! pipelines of 64, as they arrive at a node under load, on one
//! connection.
//!
//! Each kind of request runs `OPS` times per sample; the kinds take turns
//! within a sample, and the figure is the median of `SAMPLES` samples:
//!
//! - `SET NX PX` and the compare-and-delete script, a plain Redlock round
//!   (what rslock and the benches' floors send);
//! - fencelock's acquire and release scripts on the same names, the
//!   fencing counters already there (names are locked again and again);
//! - an empty script (`return 1`), the part of every script call that
//!   does not depend on what the script does, and a script of one
//!   `EXISTS`, the cost of one `redis.call` beside it.
//!
//! `cargo bench --bench server --features testing` (about 30 s; see
//! docs/performance.md, "Where the time goes").

use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use redis::aio::MultiplexedConnection;

mod floors;
use floors::cpu::Cpu;

const OPS: usize = 65_536;
const PIPELINE: usize = 64;
const SAMPLES: usize = 7;

const ACQUIRE: &str = include_str!("../src/redis/lua/acquire.lua");
const RELEASE: &str = include_str!("../src/redis/lua/release.lua");
const EMPTY: &str = "return 1";
/// One command inside a script: with the empty script, the cost of one
/// `redis.call` (on a name that is not there, so the command itself does
/// next to nothing).
const ONE_CALL: &str = "return redis.call('EXISTS', KEYS[1])";

/// Sends `request(i)` for every `i` in `0..OPS`, in pipelines; the
/// server's CPU microseconds per request.
async fn per_request<F>(conn: &mut MultiplexedConnection, pid: &str, request: F) -> f64
where
    F: Fn(usize) -> redis::Cmd,
{
    let before = Cpu::read(pid);
    for chunk in (0..OPS).collect::<Vec<_>>().chunks(PIPELINE) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.add_command(request(i)).ignore();
        }
        let () = pipe.query_async(conn).await.unwrap();
    }
    let (spent, _) = Cpu::read(pid).since(&before);
    spent.as_secs_f64() * 1e6 / OPS as f64
}

fn evalsha(script: &redis::Script, keys: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

fn main() {
    let runtime = floors::runtime();
    let server = RedisServer::start().expect("start redis-server (run scripts/setup)");
    let pid = server.pid().expect("a running server").to_string();
    let scripts = [ACQUIRE, RELEASE, EMPTY, ONE_CALL].map(redis::Script::new);
    let [acquire, release, empty, one_call] = &scripts;
    let (mut set, mut cad, mut acq, mut rel) = (vec![], vec![], vec![], vec![]);
    let (mut nothing, mut one) = (vec![], vec![]);
    runtime.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        for source in [
            ACQUIRE,
            RELEASE,
            EMPTY,
            ONE_CALL,
            floors::COMPARE_AND_DELETE,
        ] {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(source)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let compare_and_delete = redis::Script::new(floors::COMPARE_AND_DELETE);
        let lock = |i: usize| {
            vec![
                format!("fencelock:{{r-{i}}}"),
                format!("fencelock:{{r-{i}}}:fence"),
            ]
        };
        // Warm-up: every fencing counter exists, as for names locked before.
        for round in 0..=SAMPLES {
            let a = per_request(&mut conn, &pid, |i| {
                let mut cmd = evalsha(acquire, &lock(i));
                cmd.arg("owner").arg(i).arg(30_000).arg(10).arg("");
                cmd
            })
            .await;
            let r = per_request(&mut conn, &pid, |i| {
                let mut cmd = evalsha(release, &lock(i)[..1]);
                cmd.arg("owner").arg(i).arg("1");
                cmd
            })
            .await;
            let s = per_request(&mut conn, &pid, |i| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(format!("raw:{{r-{i}}}"))
                    .arg("raw-owner")
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000);
                cmd
            })
            .await;
            let c = per_request(&mut conn, &pid, |i| {
                let mut cmd = evalsha(&compare_and_delete, &[format!("raw:{{r-{i}}}")]);
                cmd.arg("raw-owner");
                cmd
            })
            .await;
            let e = per_request(&mut conn, &pid, |i| evalsha(empty, &lock(i)[..1])).await;
            let o = per_request(&mut conn, &pid, |i| {
                evalsha(one_call, &[format!("none:{i}")])
            })
            .await;
            if round > 0 {
                acq.push(a);
                rel.push(r);
                set.push(s);
                cad.push(c);
                nothing.push(e);
                one.push(o);
            }
        }
    });
    let m = floors::stats::median;
    let (set, cad, acq, rel) = (m(set), m(cad), m(acq), m(rel));
    let (nothing, one) = (m(nothing), m(one));
    println!(
        "server CPU per request, one redis-server, pipelines of {PIPELINE}, median of {SAMPLES} samples of {OPS}:"
    );
    println!("| request | µs | of an empty script |");
    println!("| --- | --- | --- |");
    for (name, us) in [
        ("SET NX PX", set),
        ("compare-and-delete script", cad),
        ("fencelock acquire script", acq),
        ("fencelock release script", rel),
        ("empty script (return 1)", nothing),
        ("script of one EXISTS", one),
    ] {
        println!("| {name} | {us:.2} | {:.2}x |", us / nothing);
    }
    println!("one redis.call inside a script: {:.2} µs", one - nothing);
    println!(
        "round (acquire + release): plain Redlock {:.2} µs, fencelock {:.2} µs, ratio {:.2}x",
        set + cad,
        acq + rel,
        (acq + rel) / (set + cad)
    );
}
