//! The checker: clients (tasks of this process and two separate processes)
//! loop on an exclusive lock, a read-write lock (as readers or writers) and
//! a semaphore of 3 permits — acquire, write (or read) through a
//! `FencedStore` on a separate Redis, release — while a nemesis kills,
//! pauses and restarts the five lock nodes, slows, silences (both ways, one
//! way, flapping) and cuts the links to them, gives client groups different
//! views of the nodes (each group has its own proxies), faults the store
//! and the database too, and pauses clients past the ttl. Afterwards the
//! recorded history is checked (see `history.rs` and `store_checks.rs`):
//!
//! - no accepted fenced operation is out of token order: on the lock's
//!   resource and on each slot's, no write below an earlier accepted one;
//!   on the read-write resource, no write below an earlier accepted read or
//!   write, no read below an earlier accepted write, no read of an older
//!   value than one accepted before it;
//! - tokens are unique and increase in acquisition order (per slot for
//!   permits; a write above every earlier hold, a read above every earlier
//!   write) on nodes that keep their data;
//! - no more than 3 permit holders at once whose writes were all accepted;
//! - overlapping holders of the lock are counted, and so are the stale
//!   writes the fence stopped;
//! - no lock is left once the clients stop;
//! - no write the store acknowledged is lost, its restarts included.
//!
//! Each run prints its seed and its figures. `FENCELOCK_CHECKER_SECS` sets
//! the length of each run (default 40 s; docs/safety.md reports a long run)
//! and `FENCELOCK_CHECKER_SEED` replays a fault schedule (the timing of the
//! clients still differs from run to run).

#[path = "../it/common/mod.rs"]
mod common;

mod child;
mod client;
mod database;
mod etcd;
mod history;
mod links;
mod nemesis;
mod roster;
mod store_checks;

use std::time::{Duration, Instant};

use fencelock::testing::{Persistence, PostgresServer, RedisNodes, RedisServer, TcpProxy};

use client::{Client, Kind, PERMITS};
use history::{Event, Report, Role, now};
use links::{Links, View};
use nemesis::{Cluster, FaultLog, Plan};
use roster::Roster;

const SECS_ENV: &str = "FENCELOCK_CHECKER_SECS";
const SEED_ENV: &str = "FENCELOCK_CHECKER_SEED";
const DEFAULT_SECS: u64 = 40;
/// Lock nodes: with five, two may fail and a quorum remains.
const NODES: usize = 5;
/// The clients of each role: a name prefix, how many in-process clients
/// without a watchdog (the nemesis stalls them inside their hold) and with
/// one, and the name of a client process (with a watchdog; the nemesis
/// stops it with SIGSTOP) if any. Readers and writers share a group of the
/// nemesis: it stalls one of them at a time.
const CLIENTS: [(Role, &str, usize, usize, Option<&str>); 4] = [
    (Role::Lock, "t", 3, 3, Some("p0")),
    (Role::Read, "r", 1, 2, None),
    (Role::Write, "w", 1, 1, None),
    (Role::Permit, "s", 2, 3, Some("p1")),
];
/// Time for the clients and the nemesis to finish their last step after
/// the run ends: a wait for the lock, a stall, a node restart.
const WIND_DOWN: Duration = Duration::from_secs(60);

/// The bound on a whole run: its length, the wind-down, `setup` for the
/// servers to start and stop, and a tenth of its length for the checks at
/// the end, which read every event and every snapshot of the store: an
/// hour's history took more than the minute a short run needs.
pub fn run_limit(secs: u64, setup: Duration) -> Duration {
    Duration::from_secs(secs + secs / 10) + WIND_DOWN + setup
}

/// Nodes keep their data (AOF, fsync always) through every restart: the
/// token rules, the fences and the permit count must hold without
/// exception.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_nodes_keep_mutual_exclusion_fenced_and_tokens_increasing() {
    let (report, faults) = run("durable", Mode::default()).await;
    assert_eq!(
        report.violations(),
        0,
        "{report}\n{}",
        faults.lines.join("\n")
    );
}

/// Nodes may also come back without their data, fewer than a quorum within
/// one quarantine. A wiped node grants nothing until every lock it forgot
/// has run out, and counts towards a token only once a quorum that
/// remembers has repaired its counter (docs/algorithm.md, section 15): the
/// token rules, the fences and the permit count must hold as on durable
/// nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_restarted_without_data_keep_tokens_increasing_and_fenced() {
    let mode = Mode {
        wipes: true,
        ..Mode::default()
    };
    let (report, faults) = run("forgetful", mode).await;
    assert_eq!(
        report.violations(),
        0,
        "{report}\n{}",
        faults.lines.join("\n")
    );
}

/// Nodes' clocks jump ahead past the ttl, run fast and jump back, and the
/// clients trust them as Redlock does (no clock checks): locks expire early
/// on the nodes whose clocks ran ahead, and two holders at once follow, the
/// fault Redlock cannot survive by itself. They are counted (exclusive
/// holds that overlap, and permit holders beyond the permits). The tokens
/// must still increase and the fences refuse every stale operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_unchecked_overlap_but_every_stale_write_is_fenced() {
    let mode = Mode {
        clocks: true,
        clock_checks: false,
        ..Mode::default()
    };
    let (report, faults) = run("clocks-unchecked", mode).await;
    let broken = report.token_violations.len() + report.fence_violations.len();
    assert_eq!(broken, 0, "{report}\n{}", faults.lines.join("\n"));
}

/// The same clock faults, with the clients judging the nodes' clocks (the
/// default): a node whose clock ran ahead does not count until its early
/// expiries are harmless (docs/algorithm.md, section 16), so every rule
/// holds as on well-behaved nodes, the permit count included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_checked_keep_every_rule() {
    let mode = Mode {
        clocks: true,
        ..Mode::default()
    };
    let (report, faults) = run("clocks", mode).await;
    assert_eq!(
        report.violations(),
        0,
        "{report}\n{}",
        faults.lines.join("\n")
    );
}

/// The same clients lock through a 3-member etcd cluster whose members
/// are killed, paused and restarted (the leader included) and whose links
/// are faulted: every check as on Redis, tokens increasing across every
/// role (they are revisions), and grants in the fair queue's order
/// (`etcd/mod.rs`, `etcd/queue.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cluster_keeps_mutual_exclusion_fenced_and_in_queue_order() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (report, faults) = etcd::run().await;
    assert_eq!(
        report.violations(),
        0,
        "{report}\n{}",
        faults.lines.join("\n")
    );
}

/// What a run's nemesis may do to the nodes, and how the clients judge
/// them.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Nodes may come back without their data.
    wipes: bool,
    /// Nodes' clocks jump and run fast (the nodes run under libfaketime).
    clocks: bool,
    /// The clients judge the nodes' clocks (`Redlock::with_clock_checks`).
    clock_checks: bool,
}

impl Default for Mode {
    fn default() -> Self {
        Mode {
            wipes: false,
            clocks: false,
            clock_checks: true,
        }
    }
}

/// The entry point of the client process: does nothing unless started by
/// the checker with its spec in [`child::SPEC_ENV`].
#[test]
fn checker_child() {
    child::main();
}

/// One run at a time. Each run is sized to the machine: two side by side
/// on two cores starve each other's clients below the floors of real work
/// that every run asserts (one lock acquisition a second), without any
/// fault of the lock's. Held for the whole run, set-up and checks too.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(name: &str, mode: Mode) -> (Report, FaultLog) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let secs = env_u64(SECS_ENV).unwrap_or(DEFAULT_SECS);
    let seed = env_u64(SEED_ENV).unwrap_or_else(rand::random);
    eprintln!(
        "checker {name}: seed {seed}, {secs} s \
         (replay: {SEED_ENV}={seed} {SECS_ENV}={secs} cargo test --all-features --test checker)"
    );
    let limit = run_limit(secs, Duration::from_secs(60));
    common::bounded(limit, check_run(name, mode, secs, seed)).await
}

async fn check_run(name: &str, mode: Mode, secs: u64, seed: u64) -> (Report, FaultLog) {
    let nodes = match mode.clocks {
        true => common::fake_clock_servers()
            .persistence(Persistence::Aof)
            .start_nodes(NODES),
        false => RedisNodes::start_with(NODES, Persistence::Aof),
    }
    .expect("start redis-server nodes");
    // The store keeps every acknowledged write through SIGKILL, as the
    // lock's nodes do; clients reach it through a proxy the nemesis faults.
    let store_server = RedisServer::start_with(Persistence::Aof).unwrap();
    let store_proxy = TcpProxy::start(store_server.addr()).unwrap();
    let db_server = PostgresServer::start().expect("start postgres (run scripts/setup)");
    database::set_up(&db_server).await;
    let until = now() + secs * 1_000_000_000;
    let client = |name: String, role, watchdog, view: &View| Client {
        name,
        role,
        backend: Kind::Redis,
        nodes: view.urls(),
        store: store_proxy.redis_url(),
        database: db_server.url(),
        until,
        watchdog,
        clock_checks: mode.clock_checks,
    };

    // Each client reaches the nodes through the proxies of its view.
    let mut views: Vec<View> = Vec::new();
    let (mut roster, groups) = Roster::start(|view, name, role, watchdog| {
        client(name, role, watchdog, view_named(&mut views, view, &nodes))
    });

    let plan = Plan {
        seed,
        until: Instant::now() + Duration::from_secs(secs),
        wipes: mode.wipes,
        clocks: mode.clocks,
        groups,
    };
    let mut cluster = Cluster {
        nodes,
        links: Links::new(views),
        database: db_server,
        store: store_server,
        store_proxy,
    };
    let nemesis = tokio::task::spawn_blocking(move || {
        let log = nemesis::run(&mut cluster, plan);
        (cluster, log)
    });

    roster.join_tasks().await;
    let (cluster, mut faults) = nemesis.await.expect("the nemesis panicked");
    let snapshots = std::mem::take(&mut faults.snapshots);
    let events = roster.join().await;
    let checks = Instant::now();
    let report = Report::check(&events, PERMITS as usize);
    eprintln!(
        "checker {name} (seed {seed}, {secs} s): {} faults {:?}\n{report}",
        faults.total(),
        faults.counts
    );

    // The final state, after every client has stopped.
    check_work_and_store(
        name,
        &report,
        &faults,
        &events,
        snapshots,
        secs,
        &cluster.store.url(),
    )
    .await;
    check_database(&cluster.database, &report, secs).await;
    check_no_lock_left(&cluster.nodes).await;
    eprintln!("checker {name}: the checks took {:?}", checks.elapsed());
    (report, faults)
}

/// What every run asserts after its clients stopped, on Redis or etcd: it
/// did real work under real faults (on the lock at least one acquisition
/// a second, for each other role one every 4 s, a fault every 5 s, and
/// something from each client process), and the store kept every write it
/// acknowledged (check 9, on the snapshots and one taken now).
pub async fn check_work_and_store(
    name: &str,
    report: &Report,
    faults: &FaultLog,
    events: &[Event],
    mut snapshots: Vec<store_checks::Snapshot>,
    secs: u64,
    store_url: &str,
) {
    assert!(
        report.acquisitions as u64 >= secs,
        "too few acquisitions to mean anything:\n{report}"
    );
    for role in [Role::Read, Role::Write, Role::Permit] {
        let done = report.acquired.get(&role).copied().unwrap_or(0) as u64;
        assert!(
            done >= secs / 4,
            "too few {} acquisitions:\n{report}",
            role.name()
        );
    }
    assert!(
        faults.total() as u64 >= secs / 5,
        "too few faults: {faults:?}"
    );
    for (_, _, _, _, child) in CLIENTS {
        if let Some(child) = child {
            assert!(
                events.iter().any(|e| e.client == child),
                "the client process {child} recorded nothing"
            );
        }
    }
    let url = store_url.to_owned();
    let last = tokio::task::spawn_blocking(move || store_checks::snapshot(&url));
    snapshots.push(last.await.expect("the store's final snapshot"));
    let store = store_checks::check(events, &snapshots);
    eprintln!("checker {name} store: {store}");
    assert!(
        store.violations.is_empty(),
        "{store}\n{report}\n{}",
        faults.lines.join("\n")
    );
}

/// The database's verdict: no transaction committed below a token
/// committed before it, enough commits to mean something, and the fence
/// where the last commit left it.
async fn check_database(server: &PostgresServer, report: &Report, secs: u64) {
    let tally = database::tally(server, client::RESOURCE).await;
    eprintln!(
        "checker database: {} fenced commits, {} refused as stale, {} violations, last token {}",
        tally.committed, tally.refused, tally.violations, tally.last_token
    );
    assert_eq!(tally.violations, 0, "{tally:?}\n{report}");
    assert!(
        tally.committed as u64 >= secs / 4,
        "too few fenced commits to mean anything: {tally:?}"
    );
    assert_eq!(
        tally.fence,
        Some(tally.last_token as u64),
        "the fence and the last commit disagree: {tally:?}"
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

/// The view called `name`, started with its proxies if it is new.
fn view_named<'a>(views: &'a mut Vec<View>, name: &str, nodes: &RedisNodes) -> &'a View {
    let i = match views.iter().position(|v| v.name == name) {
        Some(i) => i,
        None => {
            views.push(View::start(name, nodes));
            views.len() - 1
        }
    };
    &views[i]
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}
