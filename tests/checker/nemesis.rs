//! The nemesis: faults injected at random (from a printed seed) into the
//! lock nodes, the links to them (all clients' or some clients' only), the
//! protected resources, and the clients, while the clients run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fencelock::testing::{Direction, PostgresServer, RedisNodes, RedisServer, Restart, TcpProxy};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::client::{QUARANTINE, STALL, Stall, TTL};
use crate::links::{Links, Rule};
use crate::store_checks::{self, Snapshot};

/// The lock nodes and each client group's proxies in front of them
/// (clients use the proxies), and the protected resources.
pub struct Cluster {
    pub nodes: RedisNodes,
    pub links: Links,
    /// The second protected resource, faulted too.
    pub database: PostgresServer,
    /// The fenced store's server (AOF, fsync always), and the proxy every
    /// client writes through.
    pub store: RedisServer,
    pub store_proxy: TcpProxy,
}

/// A fault of the fenced store.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StoreFault {
    /// SIGSTOP for the step (0.2–2.5 s: mostly longer than the ttl).
    Pause,
    /// Every chunk through its proxy waits this long, each way.
    Latency(Duration),
    /// Its link passes nothing, both ways or one way.
    Silent(Option<Direction>),
    /// Its proxy closes every open connection.
    Cut,
    /// SIGKILL; restarted from its AOF when healed.
    Kill,
}

impl StoreFault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StoreFault::Pause => "store: pause (SIGSTOP)",
            StoreFault::Latency(_) => "store: latency on its link",
            StoreFault::Silent(None) => "store: silent link",
            StoreFault::Silent(Some(Direction::ToServer)) => "store: silent toward the store",
            StoreFault::Silent(Some(Direction::ToClient)) => "store: silent toward the clients",
            StoreFault::Cut => "store: cut connections",
            StoreFault::Kill => "store: kill, restart from its AOF",
        }
    }

    /// Pauses and kills twice as often as each fault of the link: they
    /// are what leaves writes unknown for longest, and what a restart
    /// from the AOF must not lose.
    pub(crate) fn pick(rng: &mut StdRng) -> StoreFault {
        match rng.random_range(0..9) {
            0 | 1 => StoreFault::Pause,
            2 | 3 => StoreFault::Kill,
            4 => StoreFault::Latency(Duration::from_millis(rng.random_range(20..200))),
            5 => StoreFault::Silent(None),
            6 => StoreFault::Silent(Some(Direction::ToServer)),
            7 => StoreFault::Silent(Some(Direction::ToClient)),
            _ => StoreFault::Cut,
        }
    }

    fn apply(self, cluster: &mut Cluster) {
        let proxy = &cluster.store_proxy;
        match self {
            StoreFault::Pause => cluster.store.pause(),
            StoreFault::Latency(latency) => proxy.set_latency(latency),
            StoreFault::Silent(None) => proxy.set_silent(true),
            StoreFault::Silent(Some(direction)) => proxy.set_silent_toward(direction, true),
            StoreFault::Cut => proxy.cut(),
            StoreFault::Kill => cluster.store.kill(),
        }
    }

    fn heal(self, cluster: &mut Cluster) {
        match self {
            StoreFault::Pause => cluster.store.resume(),
            StoreFault::Kill => cluster
                .store
                .restart(Restart::KeepData)
                .expect("restart the store from its AOF"),
            StoreFault::Latency(_) | StoreFault::Silent(_) => cluster.store_proxy.heal(),
            StoreFault::Cut => {}
        }
    }
}

/// A fault of the database.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DatabaseFault {
    /// SIGSTOP of every server process, longer than the ttl.
    Pause,
    /// SIGKILL of every server process; restarted (crash recovery) when
    /// healed.
    Crash,
}

impl DatabaseFault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            DatabaseFault::Pause => "pause database (SIGSTOP) > ttl",
            DatabaseFault::Crash => "kill database, restart",
        }
    }
}

/// How long after a wipe the node counts as having just lost its data: its
/// quarantine, which starts when a client first meets it after the restart
/// at the end of the step (at most 2.5 s later), and a second for the
/// restart itself.
const WIPE_WINDOW: Duration = Duration::from_millis(QUARANTINE.as_millis() as u64 + 3500);

/// The nodes other than `node` wiped within [`WIPE_WINDOW`].
fn recently_wiped(wiped: &[Option<Instant>], node: usize) -> usize {
    wiped
        .iter()
        .enumerate()
        .filter(|&(i, at)| i != node && at.is_some_and(|at| at.elapsed() < WIPE_WINDOW))
        .count()
}

/// What the nemesis may do.
pub struct Plan {
    pub seed: u64,
    pub until: Instant,
    /// Whether nodes may come back without their data.
    pub wipes: bool,
    /// Whether nodes' clocks may jump and run fast (the nodes run under
    /// libfaketime).
    pub clocks: bool,
    /// The clients, by what they hold: a step that pauses clients pauses
    /// one of each group, so that adding groups does not make the clients
    /// of the others stall less often.
    pub groups: Vec<Group>,
}

/// Clients of one primitive that the nemesis may pause.
#[derive(Debug, Default)]
pub struct Group {
    /// A client running as a separate process, to pause with SIGSTOP.
    pub child: Option<u32>,
    /// In-process clients without a watchdog, to stall inside their hold.
    pub stalls: Vec<Arc<Stall>>,
}

/// The faults injected, by kind, and a line for each.
#[derive(Debug, Default)]
pub struct FaultLog {
    pub counts: BTreeMap<&'static str, usize>,
    pub lines: Vec<String>,
    /// The store's state, read after every step (everything healed).
    pub snapshots: Vec<Snapshot>,
}

impl FaultLog {
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL; restarted with its data (AOF, fsync always) when healed.
    Kill,
    /// SIGKILL; restarted without its data when healed.
    Wipe,
    /// SIGSTOP for longer than the ttl.
    Pause,
    /// Every chunk through the node's proxies waits this long, each way.
    Latency(Duration),
    /// The node's proxies pass nothing, both ways.
    Silent,
    /// The node's proxies close every open connection (at once; no healing).
    Cut,
    /// The node's proxy passes nothing in one direction, in every view or
    /// in one client group's.
    OneWay(Direction, Option<usize>),
    /// The node's proxy is silent and passing by turns, in every view or in
    /// one client group's.
    Flap(Option<usize>),
    /// The node's clock jumps this far forward (past the ttl: its locks
    /// expire early), and stays there.
    ClockAhead(Duration),
    /// The node's clock runs this many times as fast while the step lasts.
    ClockFast(u32),
    /// The node's clock jumps this far back (its locks last longer).
    ClockBehind(Duration),
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill, restart with data",
            Fault::Wipe => "kill, restart without data",
            Fault::Pause => "pause node (SIGSTOP) > ttl",
            Fault::Latency(_) => "latency on the link",
            Fault::Silent => "silent link",
            Fault::Cut => "cut connections",
            Fault::OneWay(Direction::ToServer, _) => "silent toward the node (one way)",
            Fault::OneWay(Direction::ToClient, _) => "silent toward the clients (one way)",
            Fault::Flap(_) => "flapping link",
            Fault::ClockAhead(_) => "clock jumps ahead past the ttl",
            Fault::ClockFast(_) => "clock runs fast",
            Fault::ClockBehind(_) => "clock jumps back",
        }
    }
}

/// Runs faults until `plan.until`, one step after another: each step faults
/// one or two nodes (sometimes also a client), holds the faults for a while
/// and heals them. Returns with every node running and every link healed.
pub fn run(cluster: &mut Cluster, plan: Plan) -> FaultLog {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut log = FaultLog::default();
    let began = Instant::now();
    let n = cluster.nodes.len();
    // When each node was last wiped: the rule of docs/algorithm.md, section
    // 15 holds while fewer than a quorum lose their data within one
    // quarantine, so a wipe that would break that is a plain kill instead.
    let mut wiped: Vec<Option<Instant>> = vec![None; n];
    while Instant::now() < plan.until {
        thread::sleep(Duration::from_millis(rng.random_range(100..600)));
        let mut targets: Vec<usize> = (0..n).collect();
        let faulted = if rng.random_bool(0.3) { 2 } else { 1 };
        let views = cluster.links.views.len();
        let mut step = Vec::new();
        for _ in 0..faulted {
            let node = targets.swap_remove(rng.random_range(0..targets.len()));
            // One-way and flapping links: in every view, or in one.
            let view = rng.random_bool(0.5).then(|| rng.random_range(0..views));
            // The kinds of fault: the clocks' come last, so that runs
            // without them replay the schedules of earlier versions.
            let kinds = 8 + usize::from(plan.wipes) + if plan.clocks { 3 } else { 0 };
            let fault = match rng.random_range(0..kinds) {
                0 => Fault::Kill,
                1 => Fault::Pause,
                2 => Fault::Latency(Duration::from_millis(rng.random_range(20..250))),
                3 => Fault::Silent,
                4 => Fault::Cut,
                5 => Fault::OneWay(Direction::ToServer, view),
                6 => Fault::OneWay(Direction::ToClient, view),
                7 => Fault::Flap(view),
                8 if plan.wipes && recently_wiped(&wiped, node) < n - (n / 2 + 1) => {
                    wiped[node] = Some(Instant::now());
                    Fault::Wipe
                }
                8 if plan.wipes => Fault::Kill,
                k => match k - 8 - usize::from(plan.wipes) {
                    0 => Fault::ClockAhead(Duration::from_millis(
                        rng.random_range(TTL.as_millis()..4 * TTL.as_millis()) as u64,
                    )),
                    1 => Fault::ClockFast(rng.random_range(2..5)),
                    _ => Fault::ClockBehind(Duration::from_millis(rng.random_range(50..1000))),
                },
            };
            step.push((node, fault));
        }
        // Clients partitioned each their own way: every view sees its own
        // three consecutive nodes.
        let split = rng.random_bool(0.2);
        let store_fault = rng.random_bool(0.5).then(|| StoreFault::pick(&mut rng));
        // The flapping links' phases, apart: their number depends on timing.
        let mut flap_rng = StdRng::seed_from_u64(rng.random());
        // Pauses must outlast the ttl; the rest last from a few round trips
        // to several ttls.
        let hold = if step.iter().any(|(_, f)| matches!(f, Fault::Pause)) {
            Duration::from_millis(rng.random_range(2 * TTL.as_millis()..4 * TTL.as_millis()) as u64)
        } else {
            Duration::from_millis(rng.random_range(200..2500))
        };
        let pause_client = rng.random_bool(0.25);
        let database_fault = rng.random_bool(0.3).then(|| {
            if rng.random_bool(0.5) {
                DatabaseFault::Pause
            } else {
                DatabaseFault::Crash
            }
        });
        // A paused database must outlast the ttl too.
        let hold = match database_fault {
            Some(DatabaseFault::Pause) => hold.max(2 * TTL),
            _ => hold,
        };
        let at = began.elapsed().as_secs_f64();
        for &(node, fault) in &step {
            apply(cluster, node, fault, &mut rng);
            *log.counts.entry(fault.name()).or_default() += 1;
            log.lines.push(format!(
                "t={at:6.1}s node {node}: {} {fault:?} for {hold:?}",
                fault.name()
            ));
        }
        if split {
            let firsts = cluster.links.split(3, &mut rng);
            let name = "clients see different majorities";
            *log.counts.entry(name).or_default() += 1;
            log.lines.push(format!(
                "t={at:6.1}s {name}: each view's first node {firsts:?} for {hold:?}"
            ));
        }
        if let Some(fault) = store_fault {
            fault.apply(cluster);
            *log.counts.entry(fault.name()).or_default() += 1;
            log.lines.push(format!(
                "t={at:6.1}s {} {fault:?} for {hold:?}",
                fault.name()
            ));
        }
        if let Some(fault) = database_fault {
            match fault {
                DatabaseFault::Pause => cluster.database.pause(),
                DatabaseFault::Crash => cluster.database.kill(),
            }
            *log.counts.entry(fault.name()).or_default() += 1;
            log.lines.push(format!(
                "t={at:6.1}s database: {} for {hold:?}",
                fault.name()
            ));
        }
        let mut paused = Vec::new();
        if pause_client {
            for (g, group) in plan.groups.iter().enumerate() {
                paused.extend(pause_a_client(group, g, &mut rng, &mut log, at));
            }
        }
        hold_step(cluster, &step, hold, &mut flap_rng);
        for &(node, fault) in &step {
            heal(cluster, node, fault);
        }
        cluster.links.heal();
        if let Some(fault) = store_fault {
            fault.heal(cluster);
        }
        log.snapshots
            .push(store_checks::snapshot(&cluster.store.url()));
        match database_fault {
            Some(DatabaseFault::Pause) => cluster.database.resume(),
            Some(DatabaseFault::Crash) => {
                cluster.database.restart().expect("restart the database");
            }
            None => {}
        }
        for paused in paused {
            paused.join().expect("the client pause thread");
        }
    }
    log
}

/// Stalls one client of `group` past the ttl while it may hold the lock: the child
/// process by SIGSTOP, resumed by the returned thread after [`STALL`]
/// whatever the node faults do meanwhile, or an in-process client without a
/// watchdog, at its next hold.
fn pause_a_client(
    group: &Group,
    g: usize,
    rng: &mut StdRng,
    log: &mut FaultLog,
    at: f64,
) -> Option<thread::JoinHandle<()>> {
    let clients = group.stalls.len() + usize::from(group.child.is_some());
    if clients == 0 {
        return None;
    }
    let pick = rng.random_range(0..clients);
    match group.stalls.get(pick) {
        Some(stall) => {
            stall.request();
            *log.counts
                .entry("stall client in its hold > ttl")
                .or_default() += 1;
            log.lines.push(format!(
                "t={at:6.1}s group {g} client {pick}: stall for {STALL:?}"
            ));
            None
        }
        None => {
            let pid = group.child.expect("picked the child process");
            *log.counts
                .entry("pause client process (SIGSTOP) > ttl")
                .or_default() += 1;
            log.lines.push(format!(
                "t={at:6.1}s client process {pid}: SIGSTOP for {STALL:?}"
            ));
            signal(pid, Signal::SIGSTOP);
            Some(thread::spawn(move || {
                thread::sleep(STALL);
                signal(pid, Signal::SIGCONT);
            }))
        }
    }
}

fn signal(pid: u32, sig: Signal) {
    // The child may have exited already: nothing to pause or resume then.
    let _ = kill(Pid::from_raw(i32::try_from(pid).unwrap()), sig);
}

/// How often a fast clock is moved on.
const CLOCK_TICK: Duration = Duration::from_millis(25);

/// Lets the step's `hold` pass: the links' flapping goes on, and a fast
/// clock is moved on by what it gains every [`CLOCK_TICK`].
fn hold_step(cluster: &mut Cluster, step: &[(usize, Fault)], hold: Duration, rng: &mut StdRng) {
    let fast: Vec<(usize, u32)> = step
        .iter()
        .filter_map(|&(node, fault)| match fault {
            Fault::ClockFast(rate) => Some((node, rate)),
            _ => None,
        })
        .collect();
    if fast.is_empty() {
        return cluster.links.hold(hold, rng);
    }
    let end = Instant::now() + hold;
    while Instant::now() < end {
        let tick = CLOCK_TICK.min(end.saturating_duration_since(Instant::now()));
        cluster.links.hold(tick, rng);
        for &(node, rate) in &fast {
            let gain = tick.as_millis() as i64 * i64::from(rate - 1);
            move_clock(cluster, node, gain);
        }
    }
}

fn move_clock(cluster: &mut Cluster, node: usize, by_ms: i64) {
    let server = cluster.nodes.node_mut(node);
    let offset = server
        .clock_offset()
        .expect("a node with a clock of its own");
    server
        .set_clock_offset(offset + by_ms)
        .expect("move the node's clock");
}

fn apply(cluster: &mut Cluster, node: usize, fault: Fault, rng: &mut StdRng) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap();
    match fault {
        Fault::ClockAhead(by) => return move_clock(cluster, node, ms(by)),
        Fault::ClockBehind(by) => return move_clock(cluster, node, -ms(by)),
        _ => {}
    }
    let links = &mut cluster.links;
    match fault {
        Fault::Kill | Fault::Wipe => cluster.nodes.node_mut(node).kill(),
        Fault::Pause => cluster.nodes.node_mut(node).pause(),
        Fault::Latency(latency) => links.of_node(node).for_each(|p| p.set_latency(latency)),
        Fault::Silent => links.add(Rule::silent(None, node, None)),
        Fault::Cut => links.of_node(node).for_each(TcpProxy::cut),
        Fault::OneWay(direction, view) => links.add(Rule::silent(view, node, Some(direction))),
        Fault::Flap(view) => links.add(Rule::flapping(view, node, rng)),
        Fault::ClockAhead(_) | Fault::ClockFast(_) | Fault::ClockBehind(_) => {}
    }
}

fn heal(cluster: &mut Cluster, node: usize, fault: Fault) {
    let server = cluster.nodes.node_mut(node);
    match fault {
        Fault::Kill => server
            .restart(Restart::KeepData)
            .expect("restart with data"),
        Fault::Wipe => server
            .restart(Restart::WipeData)
            .expect("restart without data"),
        Fault::Pause => server.resume(),
        // Links heal together at the end of the step; a clock stays where
        // it was moved to, as a stepped clock does.
        Fault::Latency(_)
        | Fault::Silent
        | Fault::Cut
        | Fault::OneWay(..)
        | Fault::Flap(_)
        | Fault::ClockAhead(_)
        | Fault::ClockFast(_)
        | Fault::ClockBehind(_) => {}
    }
}
