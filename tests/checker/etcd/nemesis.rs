//! The etcd cluster's nemesis: each step faults one or two members (the
//! leader on purpose about a third of the time) or the links to them,
//! sometimes the store, the database and a client too, holds the faults
//! and heals them, as the Redis nemesis does for its nodes.
//!
//! Member faults: SIGKILL and a restart with its data; SIGSTOP longer than
//! the ttl; the same two aimed at the member that leads (asked through the
//! maintenance status API); and two or all three members killed and
//! restarted together, the cluster without a quorum meanwhile. Link faults
//! (on the proxies clients reach the members through; the members' own
//! raft traffic does not pass them): latency, silence both ways or one
//! way, in every client group's view or in one, and cut connections.

use std::thread;
use std::time::{Duration, Instant};

use fencelock::etcd_client::{Client, ConnectOptions};
use fencelock::testing::{Direction, EtcdCluster, PostgresServer, RedisServer, Restart, TcpProxy};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::client::TTL;
use crate::nemesis::{DatabaseFault, FaultLog, Group, StoreFault};
use crate::store_checks;

/// The cluster, each client group's proxies in front of its members
/// (`views[v][m]`), and the protected resources.
pub struct World {
    pub cluster: EtcdCluster,
    pub views: Vec<Vec<TcpProxy>>,
    pub database: PostgresServer,
    pub store: RedisServer,
    pub store_proxy: TcpProxy,
}

/// How long the cluster has to be whole again after a step's healing:
/// restarts wait for their members already, a resumed one needs an
/// election round or two.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL; restarted with its data when healed.
    Kill,
    /// SIGSTOP for longer than the ttl.
    Pause,
    /// Every chunk through the member's proxies waits this long.
    Latency(Duration),
    /// The member's proxy passes nothing, in one direction or both, in
    /// every view or in one.
    Silent(Option<Direction>, Option<usize>),
    /// The member's proxies close every open connection.
    Cut,
}

impl Fault {
    fn name(self, leader: bool) -> &'static str {
        match (self, leader) {
            (Fault::Kill, false) => "member: kill, restart with data",
            (Fault::Kill, true) => "leader: kill, restart with data",
            (Fault::Pause, false) => "member: pause (SIGSTOP) > ttl",
            (Fault::Pause, true) => "leader: pause (SIGSTOP) > ttl",
            (Fault::Latency(_), _) => "link: latency",
            (Fault::Silent(None, _), _) => "link: silent",
            (Fault::Silent(Some(Direction::ToServer), _), _) => "link: silent toward the member",
            (Fault::Silent(Some(Direction::ToClient), _), _) => "link: silent toward the clients",
            (Fault::Cut, _) => "link: cut connections",
        }
    }
}

/// What the nemesis may do.
pub struct Plan {
    pub seed: u64,
    pub until: Instant,
    /// The clients it may stall, by primitive.
    pub groups: Vec<Group>,
}

/// Runs faults until `plan.until`; returns with every member running and
/// every link healed.
pub fn run(world: &mut World, plan: Plan) -> FaultLog {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut log = FaultLog::default();
    let began = Instant::now();
    let n = world.cluster.len();
    while Instant::now() < plan.until {
        thread::sleep(Duration::from_millis(rng.random_range(100..600)));
        let at = began.elapsed().as_secs_f64();
        let note = |log: &mut FaultLog, name: &'static str, line: String| {
            *log.counts.entry(name).or_default() += 1;
            log.lines.push(format!("t={at:6.1}s {name}: {line}"));
        };
        // Killed members are restarted together when the step heals.
        let mut killed: Vec<usize> = Vec::new();
        let mut paused: Vec<usize> = Vec::new();
        let mut step: Vec<(usize, Fault)> = Vec::new();
        if rng.random_bool(0.1) {
            // Two members or all three at once: no quorum until they are
            // back, and every lease outlives the outage.
            let count = if rng.random_bool(0.5) { 2 } else { n };
            let mut members: Vec<usize> = (0..n).collect();
            while members.len() > count {
                members.swap_remove(rng.random_range(0..members.len()));
            }
            let name = if count == n {
                "cluster: kill every member, restart together"
            } else {
                "cluster: kill two members, restart together"
            };
            note(&mut log, name, format!("members {members:?}"));
            for &m in &members {
                world.cluster.member_mut(m).kill();
            }
            killed = members;
        } else {
            let mut targets: Vec<usize> = (0..n).collect();
            let faulted = if rng.random_bool(0.3) { 2 } else { 1 };
            let views = world.views.len();
            for _ in 0..faulted {
                let view = rng.random_bool(0.5).then(|| rng.random_range(0..views));
                let fault = match rng.random_range(0..9) {
                    0 | 1 => Fault::Kill,
                    2 | 3 => Fault::Pause,
                    4 => Fault::Latency(Duration::from_millis(rng.random_range(20..250))),
                    5 => Fault::Silent(None, view),
                    6 => Fault::Silent(Some(Direction::ToServer), view),
                    7 => Fault::Silent(Some(Direction::ToClient), view),
                    _ => Fault::Cut,
                };
                // The leader on purpose, a third of the process faults.
                let leader = matches!(fault, Fault::Kill | Fault::Pause) && rng.random_bool(0.35);
                let lead = if leader {
                    leader_of(&world.cluster)
                } else {
                    None
                };
                let (member, aimed) = match lead {
                    Some(m) if targets.contains(&m) => (m, true),
                    _ => (targets[rng.random_range(0..targets.len())], false),
                };
                targets.retain(|&t| t != member);
                note(
                    &mut log,
                    fault.name(aimed),
                    format!("member {member} {fault:?}"),
                );
                step.push((member, fault));
            }
        }
        let hold = if step.iter().any(|(_, f)| matches!(f, Fault::Pause)) {
            Duration::from_millis(rng.random_range(2 * TTL.as_millis()..4 * TTL.as_millis()) as u64)
        } else {
            Duration::from_millis(rng.random_range(200..2500))
        };
        let store_fault = rng.random_bool(0.5).then(|| StoreFault::pick(&mut rng));
        let database_fault = rng.random_bool(0.3).then(|| {
            if rng.random_bool(0.5) {
                DatabaseFault::Pause
            } else {
                DatabaseFault::Crash
            }
        });
        let hold = match database_fault {
            Some(DatabaseFault::Pause) => hold.max(2 * TTL),
            _ => hold,
        };
        let pause_client = rng.random_bool(0.25);

        for &(member, fault) in &step {
            match fault {
                Fault::Kill => {
                    world.cluster.member_mut(member).kill();
                    killed.push(member);
                }
                Fault::Pause => {
                    world.cluster.member_mut(member).pause();
                    paused.push(member);
                }
                Fault::Latency(latency) => {
                    for view in &world.views {
                        view[member].set_latency(latency);
                    }
                }
                Fault::Silent(direction, which) => {
                    for (v, view) in world.views.iter().enumerate() {
                        if which.is_none_or(|w| w == v) {
                            match direction {
                                Some(d) => view[member].set_silent_toward(d, true),
                                None => view[member].set_silent(true),
                            }
                        }
                    }
                }
                Fault::Cut => world.views.iter().for_each(|view| view[member].cut()),
            }
        }
        if let Some(fault) = store_fault {
            store_apply(fault, world);
            note(&mut log, fault.name(), format!("{fault:?} for {hold:?}"));
        }
        if let Some(fault) = database_fault {
            match fault {
                DatabaseFault::Pause => world.database.pause(),
                DatabaseFault::Crash => world.database.kill(),
            }
            note(&mut log, fault.name(), format!("for {hold:?}"));
        }
        let mut resumes = Vec::new();
        if pause_client {
            for (g, group) in plan.groups.iter().enumerate() {
                resumes.extend(crate::etcd::stall_a_client(
                    group, g, &mut rng, &mut log, at,
                ));
            }
        }

        thread::sleep(hold);

        for &member in &paused {
            world.cluster.member_mut(member).resume();
        }
        if !killed.is_empty() {
            world
                .cluster
                .restart_members(&killed)
                .unwrap_or_else(|e| panic!("restart members {killed:?}: {e}"));
        }
        for view in &world.views {
            view.iter().for_each(TcpProxy::heal);
        }
        if let Some(fault) = store_fault {
            store_heal(fault, world);
        }
        log.snapshots
            .push(store_checks::snapshot(&world.store.url()));
        match database_fault {
            Some(DatabaseFault::Pause) => world.database.resume(),
            Some(DatabaseFault::Crash) => world.database.restart().expect("restart the database"),
            None => {}
        }
        for resume in resumes {
            resume.join().expect("the client pause thread");
        }
        assert!(
            world.cluster.wait_healthy(HEALTHY_WITHIN),
            "the cluster is not whole again after a step:\n{}\n{}",
            log.lines.join("\n"),
            world.cluster.logs()
        );
    }
    log
}

/// The member that leads, as the members say, if one answers in time
/// (a paused member never does).
fn leader_of(cluster: &EtcdCluster) -> Option<usize> {
    let endpoints = cluster.endpoints();
    let ask = async {
        for (i, endpoint) in endpoints.iter().enumerate() {
            let options = ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(200))
                .with_timeout(Duration::from_millis(300));
            let Ok(mut client) = Client::connect([endpoint], Some(options)).await else {
                continue;
            };
            if let Ok(Ok(status)) =
                tokio::time::timeout(Duration::from_millis(400), client.status()).await
                && status.header().map(|h| h.member_id()) == Some(status.leader())
            {
                return Some(i);
            }
        }
        None
    };
    tokio::runtime::Handle::current().block_on(ask)
}

/// A store fault, as the Redis nemesis applies it.
fn store_apply(fault: StoreFault, world: &mut World) {
    let proxy = &world.store_proxy;
    match fault {
        StoreFault::Pause => world.store.pause(),
        StoreFault::Latency(latency) => proxy.set_latency(latency),
        StoreFault::Silent(None) => proxy.set_silent(true),
        StoreFault::Silent(Some(direction)) => proxy.set_silent_toward(direction, true),
        StoreFault::Cut => proxy.cut(),
        StoreFault::Kill => world.store.kill(),
    }
}

fn store_heal(fault: StoreFault, world: &mut World) {
    match fault {
        StoreFault::Pause => world.store.resume(),
        StoreFault::Kill => world
            .store
            .restart(Restart::KeepData)
            .expect("restart the store from its AOF"),
        StoreFault::Latency(_) | StoreFault::Silent(_) => world.store_proxy.heal(),
        StoreFault::Cut => {}
    }
}
