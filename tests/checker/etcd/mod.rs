//! etcd under the nemesis: the checker's clients (the lock, the read-write
//! lock, the semaphore; tasks of this process and two client processes)
//! lock through a 3-member etcd cluster instead of the Redis nodes, while
//! [`nemesis`] kills, pauses and restarts members (the leader on purpose,
//! several together), slows, silences and cuts the links to them, faults
//! the store and the database, and stalls clients past the ttl. The same
//! checks as on Redis then run over the history, with two additions and
//! one adaptation:
//!
//! - tokens are create revisions of one linearizable store, so they are
//!   unique across every kind and resource, and an acquisition that ended
//!   before another started has the lower one: checked across all roles
//!   at once, a rule stronger than the per-primitive ones;
//! - the fair queue's order, checked on etcd's own revision history of the
//!   resources, joined to the client history by token ([`queue`] states
//!   the rule);
//! - a permit's token is a revision, not `counter * 1000 + slot` as on
//!   Redlock: its slot is the one the guard reports, checked below the
//!   permit count, and tokens must increase per slot as recorded
//!   ([`Slots::Apart`](crate::history::Slots)).
//!
//! Clients reach the members through proxies, one per member in each
//! client group's view, so the nemesis can fault the links of one group.

mod nemesis;
mod queue;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use fencelock::etcd_client::{Client as EtcdClient, GetOptions};
use fencelock::testing::{EtcdCluster, Persistence, PostgresServer, RedisServer, TcpProxy};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::client::{Client, Kind, PERMITS, STALL};
use crate::history::{Event, Report, Role, Slots, What, now, precedence_breaks};
use crate::nemesis::{FaultLog, Group};
use crate::roster::Roster;
use crate::{SECS_ENV, SEED_ENV, common, database};

/// Members: one may fail and a quorum remains.
const MEMBERS: usize = 3;

/// Runs the clients and the nemesis against an etcd cluster for the
/// configured length and checks everything but the report's violations,
/// which the caller asserts.
pub async fn run() -> (Report, FaultLog) {
    let secs = crate::env_u64(SECS_ENV).unwrap_or(crate::DEFAULT_SECS);
    let seed = crate::env_u64(SEED_ENV).unwrap_or_else(rand::random);
    eprintln!(
        "checker etcd: seed {seed}, {secs} s \
         (replay: {SEED_ENV}={seed} {SECS_ENV}={secs} cargo test --all-features --test checker etcd_cluster)"
    );
    let limit = crate::run_limit(secs, Duration::from_secs(90));
    common::bounded(limit, check_run(secs, seed)).await
}

async fn check_run(secs: u64, seed: u64) -> (Report, FaultLog) {
    // Fails, never skips, without etcd: CI must run this.
    let cluster = EtcdCluster::start(MEMBERS).expect("start etcd members (run scripts/setup)");
    let store = RedisServer::start_with(Persistence::Aof).unwrap();
    let store_proxy = TcpProxy::start(store.addr()).unwrap();
    let database = PostgresServer::start().expect("start postgres (run scripts/setup)");
    database::set_up(&database).await;
    let until = now() + secs * 1_000_000_000;
    let client = |name: String, role, watchdog, view: &[TcpProxy]| Client {
        name,
        role,
        backend: Kind::Etcd,
        nodes: view
            .iter()
            .map(|p| format!("http://{}", p.addr()))
            .collect(),
        store: store_proxy.redis_url(),
        database: database.url(),
        until,
        watchdog,
        // A Redlock option: etcd's leases run on its leader's clock alone.
        clock_checks: true,
    };

    // Each client group's proxies, by name, as on Redis.
    let mut names: Vec<String> = Vec::new();
    let mut views: Vec<Vec<TcpProxy>> = Vec::new();
    let (mut roster, groups) = Roster::start(|view, name, role, watchdog| {
        let v = view_of(&mut names, &mut views, &cluster, view);
        client(name, role, watchdog, &views[v])
    });

    let plan = nemesis::Plan {
        seed,
        until: Instant::now() + Duration::from_secs(secs),
        groups,
    };
    let mut world = nemesis::World {
        cluster,
        views,
        database,
        store,
        store_proxy,
    };
    let nemesis = tokio::task::spawn_blocking(move || {
        let log = nemesis::run(&mut world, plan);
        (world, log)
    });
    roster.join_tasks().await;
    let (world, mut faults) = nemesis.await.expect("the nemesis panicked");
    let snapshots = std::mem::take(&mut faults.snapshots);
    let events = roster.join().await;

    let checks = Instant::now();
    let mut report = Report::check_slots(&events, PERMITS as usize, Slots::Apart);
    let revision_breaks = revision_order(&events);
    report.token_violations.extend(revision_breaks);
    let valid = overlaps_within_validity(&events);
    eprintln!(
        "checker etcd (seed {seed}, {secs} s): {} faults {:?}\n{report}\
         lock holds overlapping within their validity: {}",
        faults.total(),
        faults.counts,
        valid.len()
    );
    for pair in &valid {
        eprintln!("  {pair}");
    }
    crate::check_work_and_store(
        "etcd",
        &report,
        &faults,
        &events,
        snapshots,
        secs,
        &world.store.url(),
    )
    .await;
    crate::check_database(&world.database, &report, secs).await;
    let endpoints = world.cluster.endpoints();
    check_no_lock_left(&endpoints).await;

    let queue = queue::check(&queue::read_history(&endpoints).await, &events);
    eprintln!(
        "checker etcd queue: {queue}\nchecker etcd: the checks took {:?}",
        checks.elapsed()
    );
    assert!(
        queue.violations.is_empty(),
        "{queue}\n{report}\n{}",
        faults.lines.join("\n")
    );
    (report, faults)
}

/// The index of the view called `name`, its proxies started if it is new.
fn view_of(
    names: &mut Vec<String>,
    views: &mut Vec<Vec<TcpProxy>>,
    cluster: &EtcdCluster,
    name: &str,
) -> usize {
    if let Some(i) = names.iter().position(|n| n == name) {
        return i;
    }
    names.push(name.to_owned());
    let proxies = cluster.iter().map(|m| TcpProxy::start(m.client_addr()));
    views.push(proxies.collect::<Result<_, _>>().expect("start a proxy"));
    views.len() - 1
}

/// The etcd rule for tokens, across every role and resource: each is a
/// revision, so no two acquisitions share one (nested holds would, and
/// the clients take none), and one that ended before another started is
/// below it.
fn revision_order(events: &[Event]) -> Vec<String> {
    let acquired: Vec<_> = events
        .iter()
        .filter_map(|e| match e.what {
            What::Acquired { token, .. } => Some((e.start, e.end, token, e)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    let mut seen: HashMap<u64, &Event> = HashMap::new();
    for (_, _, token, event) in &acquired {
        if let Some(first) = seen.insert(*token, event) {
            out.push(format!(
                "revision {token} handed out twice: {first} / {event}"
            ));
        }
    }
    for (earlier, later) in precedence_breaks(&acquired, &acquired, |a, b| a >= b) {
        out.push(format!(
            "revision not above an earlier acquisition's (any role): {earlier} before {later}"
        ));
    }
    out
}

/// Pairs of lock holds by different clients that overlap while both
/// holders' validity lasted: each hold from the end of its acquire to the
/// start of its release or the end of the validity it counted on, whichever
/// came first. A figure, not asserted: on etcd a holder key outlives its
/// holder's validity (the lease is granted after the attempt started, for
/// a whole second or more), so a pair means a lease ended early, which the
/// etcd 3.4.23 the tests run can do around a leader change
/// (docs/backends.md, "Server version"); the fence still stops the stale
/// holder, and the fence checks are asserted.
fn overlaps_within_validity(events: &[Event]) -> Vec<String> {
    let mut holds: HashMap<(&str, u64), (u64, u64)> = HashMap::new();
    for event in events.iter().filter(|e| e.role == Role::Lock) {
        match event.what {
            What::Acquired { token, .. } => {
                holds.insert((&event.client, token), (event.end, u64::MAX));
            }
            What::Release {
                token, held_until, ..
            } => {
                if let Some(hold) = holds.get_mut(&(event.client.as_str(), token)) {
                    hold.1 = event.start.min(held_until);
                }
            }
            _ => {}
        }
    }
    let mut holds: Vec<_> = holds.into_iter().collect();
    holds.sort_by_key(|(_, (from, _))| *from);
    let mut pairs = Vec::new();
    for (i, ((a, ta), (_, until))) in holds.iter().enumerate() {
        for ((b, tb), (from, _)) in holds[i + 1..].iter().map(|(k, v)| (k, v)) {
            if from >= until {
                break;
            }
            if a != b {
                pairs.push(format!("{a} token {ta} and {b} token {tb}"));
            }
        }
    }
    pairs
}

/// Every key left under the lock prefix is on a lease (none can stay for
/// ever), and all are gone once the leases of the last holds and tickets
/// ran out.
async fn check_no_lock_left(endpoints: &[String]) {
    let mut etcd = EtcdClient::connect(endpoints, None).await.unwrap();
    let all = || Some(GetOptions::new().with_prefix());
    for kv in etcd.get("fencelock:", all()).await.unwrap().kvs() {
        let key = String::from_utf8_lossy(kv.key());
        assert!(kv.lease() != 0, "{key} is on no lease");
    }
    // A lease of the 600 ms ttl is 1 s, and the leader reaps expired
    // leases every 500 ms; a release revoked at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = etcd.get("fencelock:", all()).await.unwrap();
        if left.kvs().is_empty() {
            return;
        }
        let keys: Vec<_> = left
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        assert!(Instant::now() < deadline, "locks left: {keys:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stalls one client of `group` past the ttl, as the Redis nemesis does:
/// the client process by SIGSTOP, resumed by the returned thread after
/// [`STALL`], or an in-process client without a watchdog at its next hold.
pub(crate) fn stall_a_client(
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
    if let Some(stall) = group.stalls.get(pick) {
        stall.request();
        *log.counts
            .entry("stall client in its hold > ttl")
            .or_default() += 1;
        log.lines.push(format!(
            "t={at:6.1}s group {g} client {pick}: stall for {STALL:?}"
        ));
        return None;
    }
    let pid = group.child.expect("picked the child process");
    let pid = Pid::from_raw(i32::try_from(pid).unwrap());
    *log.counts
        .entry("pause client process (SIGSTOP) > ttl")
        .or_default() += 1;
    log.lines.push(format!(
        "t={at:6.1}s client process {pid}: SIGSTOP for {STALL:?}"
    ));
    // The child may have exited already: nothing to pause or resume then.
    let _ = kill(pid, Signal::SIGSTOP);
    Some(thread::spawn(move || {
        thread::sleep(STALL);
        let _ = kill(pid, Signal::SIGCONT);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Outcome, ReleaseOutcome};

    fn acquired(role: Role, client: &str, at: u64, token: u64, slot: Option<u32>) -> Event {
        Event {
            client: client.to_owned(),
            role,
            start: at,
            end: at + 1,
            what: What::Acquired { token, slot },
        }
    }

    #[test]
    fn revisions_must_rise_across_roles() {
        let fine = [
            acquired(Role::Lock, "a", 0, 10, None),
            acquired(Role::Permit, "b", 5, 12, Some(1)),
            acquired(Role::Read, "c", 10, 15, None),
        ];
        assert!(revision_order(&fine).is_empty());
        // A reader after a lock holder, with a lower revision.
        let late = [
            acquired(Role::Lock, "a", 0, 10, None),
            acquired(Role::Read, "c", 10, 9, None),
        ];
        assert_eq!(revision_order(&late).len(), 1);
        // Two roles, one revision.
        let twice = [
            acquired(Role::Lock, "a", 0, 10, None),
            acquired(Role::Permit, "b", 0, 10, Some(0)),
        ];
        assert_eq!(revision_order(&twice).len(), 1);
    }

    #[test]
    fn permit_slots_apart_from_the_token_are_checked_as_recorded() {
        let hold = |client: &str, at: u64, token: u64, slot: u32| {
            let write = What::Write {
                token,
                outcome: Outcome::Accepted,
            };
            let release = What::Release {
                token,
                outcome: ReleaseOutcome::Released,
                held_until: at + 50,
            };
            vec![
                acquired(Role::Permit, client, at, token, Some(slot)),
                Event {
                    what: write,
                    ..acquired(Role::Permit, client, at + 2, 0, None)
                },
                Event {
                    what: release,
                    ..acquired(Role::Permit, client, at + 4, 0, None)
                },
            ]
        };
        // Revisions as tokens: slot 2 with token 17 is fine on etcd, not
        // on Redlock.
        let events = [hold("a", 0, 17, 2), hold("b", 100, 23, 2)].concat();
        let report = Report::check_slots(&events, 3, Slots::Apart);
        assert_eq!(report.violations(), 0, "{report}");
        assert!(Report::check(&events, 3).violations() > 0);
        // A slot's tokens fall: a violation on etcd too.
        let events = [hold("a", 0, 23, 2), hold("b", 100, 17, 2)].concat();
        assert!(Report::check_slots(&events, 3, Slots::Apart).violations() > 0);
        // A slot beyond the permits.
        let events = hold("a", 0, 17, 3);
        assert!(Report::check_slots(&events, 3, Slots::Apart).violations() > 0);
    }
}
