//! The checker: clients (tasks of this process and one separate process)
//! loop on one lock — acquire, write through a `FencedStore` on a separate
//! Redis, release — while a nemesis kills, pauses and restarts the five
//! lock nodes, slows and cuts the links to them, and pauses clients past the
//! ttl. Afterwards the recorded history is checked (see `history.rs`):
//!
//! - no accepted fenced write has a token below an earlier accepted one;
//! - tokens are unique and increase in acquisition order (on nodes that keep
//!   their data);
//! - overlapping holders are counted, and so are the stale writes the fence
//!   stopped;
//! - no lock is left once the clients stop.
//!
//! Each run prints its seed and its figures. `FENCELOCK_CHECKER_SECS` sets
//! the length of each run (default 40 s; docs/safety.md reports a long run)
//! and `FENCELOCK_CHECKER_SEED` replays a fault schedule (the timing of the
//! clients still differs from run to run).

#[path = "../it/common/mod.rs"]
mod common;

mod client;
mod history;
mod nemesis;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fencelock::FencedStore;
use fencelock::testing::{Persistence, RedisNodes, RedisServer, TcpProxy};
use tokio::process::{Child, Command};

use client::{Client, STORE_RESOURCE, Stall};
use history::{Event, Report, What, WriteOutcome, now};
use nemesis::{Cluster, FaultLog, Plan};

/// Set in the environment of the client process: its spec.
const CHILD_ENV: &str = "FENCELOCK_CHECKER_CHILD";
const SECS_ENV: &str = "FENCELOCK_CHECKER_SECS";
const SEED_ENV: &str = "FENCELOCK_CHECKER_SEED";
const DEFAULT_SECS: u64 = 40;
/// Lock nodes: with five, two may fail and a quorum remains.
const NODES: usize = 5;
/// In-process clients without a watchdog (the nemesis stalls them inside
/// their hold) and with one.
const STALLABLE_CLIENTS: usize = 3;
const WATCHED_CLIENTS: usize = 3;
/// Time for the clients and the nemesis to finish their last step after
/// the run ends: a wait for the lock, a stall, a node restart.
const WIND_DOWN: Duration = Duration::from_secs(60);

/// Nodes keep their data (AOF, fsync always) through every restart: both
/// the token rule and the fence must hold without exception.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_nodes_keep_mutual_exclusion_fenced_and_tokens_increasing() {
    let (report, faults) = run("durable", false).await;
    assert_eq!(
        report.violations(),
        0,
        "{report}\n{}",
        faults.lines.join("\n")
    );
}

/// Nodes may also come back without their data. That can forget a held lock
/// (overlaps) and a fence counter (a token that repeats or goes back when
/// the forgetful nodes and ones that lag form a quorum; docs/safety.md).
/// The fence must still hold: no accepted write goes below an earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_restarted_without_data_are_stopped_by_the_fence() {
    let (report, faults) = run("forgetful", true).await;
    assert!(
        report.fence_violations.is_empty(),
        "{report}\n{}",
        faults.lines.join("\n")
    );
}

/// The entry point of the client process: does nothing unless started by
/// the checker with its spec in [`CHILD_ENV`].
#[test]
fn checker_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (client, out) = parse_spec(&spec);
    let mut out = File::create(out).expect("create the child's history file");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(client.run(Arc::new(Stall::default()), |event| {
        // One write per line, so a history cut short stays readable.
        writeln!(out, "{event}").expect("write the child's history");
    }));
}

async fn run(name: &str, wipes: bool) -> (Report, FaultLog) {
    let secs = env_u64(SECS_ENV).unwrap_or(DEFAULT_SECS);
    let seed = env_u64(SEED_ENV).unwrap_or_else(rand::random);
    eprintln!(
        "checker {name}: seed {seed}, {secs} s \
         (replay: {SEED_ENV}={seed} {SECS_ENV}={secs} cargo test --all-features --test checker)"
    );
    let limit = Duration::from_secs(secs) + WIND_DOWN + Duration::from_secs(60);
    common::bounded(limit, check_run(name, wipes, secs, seed)).await
}

async fn check_run(name: &str, wipes: bool, secs: u64, seed: u64) -> (Report, FaultLog) {
    let nodes = RedisNodes::start_with(NODES, Persistence::Aof).expect("start redis-server nodes");
    let proxies: Vec<TcpProxy> = nodes
        .iter()
        .map(|node| TcpProxy::start(node.addr()).unwrap())
        .collect();
    let store_server = RedisServer::start().unwrap();
    let urls: Vec<String> = proxies.iter().map(TcpProxy::redis_url).collect();
    let until = now() + secs * 1_000_000_000;
    let client = |name: String, watchdog| Client {
        name,
        nodes: urls.clone(),
        store: store_server.url(),
        until,
        watchdog,
    };

    let dir = tempfile::tempdir().unwrap();
    let child_out = dir.path().join("child.history");
    let mut child = spawn_child(&client("p0".into(), true), &child_out);

    let events = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut stalls = Vec::new();
    for i in 0..STALLABLE_CLIENTS + WATCHED_CLIENTS {
        let watchdog = i >= STALLABLE_CLIENTS;
        let stall = Arc::new(Stall::default());
        if !watchdog {
            stalls.push(Arc::clone(&stall));
        }
        let client = client(format!("t{i}"), watchdog);
        let events = Arc::clone(&events);
        tasks.push(tokio::spawn(async move {
            client
                .run(stall, |event| events.lock().unwrap().push(event))
                .await;
        }));
    }

    let plan = Plan {
        seed,
        until: Instant::now() + Duration::from_secs(secs),
        wipes,
        child: Some(child.id().expect("the client process is running")),
        stalls,
    };
    let mut cluster = Cluster { nodes, proxies };
    let nemesis = tokio::task::spawn_blocking(move || {
        let log = nemesis::run(&mut cluster, plan);
        (cluster, log)
    });

    for task in tasks {
        task.await.expect("a client task panicked");
    }
    let (cluster, faults) = nemesis.await.expect("the nemesis panicked");
    let status = tokio::time::timeout(WIND_DOWN, child.wait())
        .await
        .expect("the client process did not stop in time")
        .unwrap();
    assert!(status.success(), "the client process failed: {status}");

    let mut events = std::mem::take(&mut *events.lock().unwrap());
    events.extend(read_history(&child_out));
    let report = Report::check(&events);
    eprintln!(
        "checker {name} (seed {seed}, {secs} s): {} faults {:?}\n{report}",
        faults.total(),
        faults.counts
    );

    // The run did real work under real faults.
    assert!(
        report.acquisitions as u64 >= secs,
        "too few acquisitions to mean anything:\n{report}"
    );
    assert!(
        faults.total() as u64 >= secs / 5,
        "too few faults: {faults:?}"
    );
    assert!(
        events.iter().any(|e| e.client == "p0"),
        "the client process recorded nothing"
    );

    check_store(&store_server, &events, &report).await;
    check_no_lock_left(&cluster.nodes).await;
    (report, faults)
}

/// The store's fence is the highest accepted token, or that of a write
/// whose outcome is unknown.
async fn check_store(server: &RedisServer, events: &[Event], report: &Report) {
    let store = FencedStore::from_url(&server.url()).unwrap();
    let Some(stored) = store.read(STORE_RESOURCE).await.unwrap() else {
        assert_eq!(report.writes_accepted, 0, "accepted writes left no trace");
        return;
    };
    let fence = stored.fence.get();
    let unknown = events.iter().any(|e| {
        matches!(e.what, What::Write { token, outcome: WriteOutcome::Failed } if token == fence)
    });
    assert!(
        Some(fence) == report.highest_accepted || unknown,
        "store fence {fence}, highest accepted write {:?}",
        report.highest_accepted
    );
}

/// Every lock key has a ttl (none can stay for ever), and all are gone
/// once every hold has been released or has expired.
async fn check_no_lock_left(nodes: &RedisNodes) {
    for node in nodes.iter() {
        for key in common::lock_keys(&node.url()).await {
            let ttl = common::pttl(&node.url(), &key).await;
            assert!(ttl != -1, "{key} on {} has no ttl", node.url());
        }
    }
    common::wait_until_no_locks(nodes, 2 * client::TTL + Duration::from_secs(2)).await;
}

fn spawn_child(client: &Client, out: &Path) -> Child {
    let spec = format!(
        "name={};until={};store={};nodes={};out={}",
        client.name,
        client.until,
        client.store,
        client.nodes.join(","),
        out.display()
    );
    Command::new(std::env::current_exe().unwrap())
        .args([
            "checker_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the client process")
}

fn parse_spec(spec: &str) -> (Client, String) {
    let field = |name: &str| {
        spec.split(';')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{name} missing from {spec:?}"))
            .to_owned()
    };
    let client = Client {
        name: field("name"),
        nodes: field("nodes").split(',').map(str::to_owned).collect(),
        store: field("store"),
        until: field("until").parse().unwrap(),
        watchdog: true,
    };
    (client, field("out"))
}

fn read_history(path: &Path) -> Vec<Event> {
    let file = File::open(path).expect("the child's history");
    BufReader::new(file)
        .lines()
        .map(|line| Event::parse(&line.unwrap()).unwrap())
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}
