//! Reentrancy and release as a state machine, checked against a model on
//! real servers: random sequences of acquires by two explicit owners,
//! releases and extends of any live guard, forced releases and inspections,
//! each step's outcome compared with what the model predicts.
//!
//! The model: at most one owner holds the lock, with a depth (its live
//! holds); a nested acquire keeps the holder's token and fails with
//! `ReentrancyLimit` at `max_reentrancy`; a first acquire gets a token above
//! every earlier one; a forced release makes every guard out stale, so its
//! release says `NotHeld`, its first extend `NotHeld` (the guard is then
//! lost) and later extends `Lost`, and its owner cannot nest in it
//! (`NotHeld`) until it has let go of those guards.
//!
//! It runs on one Redis node (where each node's own count is compared too),
//! on a Redlock of five nodes (the quorum's view) and on etcd.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{etcd_locker, locker, options, start, start_etcd};
use fencelock::{Backend, Error, LockGuard, LockOptions, Locker, Owner, Watchdog};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const MAX_DEPTH: u32 = 2;

/// How often each kind of outcome came up over a run, so a run that never
/// reached a branch of the model fails instead of passing vacuously.
#[derive(Debug, Default)]
struct Seen {
    first: AtomicUsize,
    nested: AtomicUsize,
    too_deep: AtomicUsize,
    contended: AtomicUsize,
    stale: AtomicUsize,
}

fn saw(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}
const CASES: u32 = 64;
/// One case (at most 30 steps and the clean-up) finishes far within this.
const CASE_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Op {
    /// `try_lock` by owner 0 or 1: a first acquire or a nested one.
    Acquire(usize),
    /// Release of the live guard at this index (modulo their number).
    Release(usize),
    /// Extend of the live guard at this index (modulo their number).
    Extend(usize),
    ForceRelease,
    Inspect,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        5 => (0usize..2).prop_map(Op::Acquire),
        3 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Extend),
        1 => Just(Op::ForceRelease),
        1 => Just(Op::Inspect),
    ];
    proptest::collection::vec(op, 1..=30)
}

/// What the model knows of one guard still out.
#[derive(Debug)]
struct Out {
    owner: usize,
    token: u64,
    /// Its hold was removed by a forced release.
    stale: bool,
    /// It found out (an extend said NotHeld); it no longer counts as live.
    lost: bool,
}

struct Model<B: Backend> {
    /// The holder and its token.
    holder: Option<(usize, u64)>,
    guards: Vec<(LockGuard<B>, Out)>,
    last_token: u64,
}

impl<B: Backend> Model<B> {
    fn depth(&self) -> usize {
        self.guards.iter().filter(|(_, g)| !g.stale).count()
    }

    /// The guards of `owner` this Locker still nests in (not released, not
    /// found lost), all stale or all not.
    fn registered(&self, owner: usize) -> Vec<&Out> {
        self.guards
            .iter()
            .map(|(_, g)| g)
            .filter(|g| g.owner == owner && !g.lost)
            .collect()
    }
}

fn check(cond: bool, step: usize, op: &Op, what: String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!("step {step} {op:?}: {what}")))
    }
}

async fn run_case<B: Backend>(
    lockers: &[Locker<B>; 2],
    owners: &[Owner; 2],
    key: &str,
    ops: &[Op],
    exact_nodes: bool,
    held_copies: usize,
    seen: &Seen,
) -> Result<(), TestCaseError> {
    let mut model = Model::<B> {
        holder: None,
        guards: Vec::new(),
        last_token: 0,
    };
    let mut tail: Vec<Op> = (0..ops.len() + 1).map(|_| Op::Release(0)).collect();
    let all: Vec<Op> = ops.iter().cloned().chain(tail.drain(..)).collect();
    for (step, op) in all.iter().enumerate() {
        let releasing_tail = step >= ops.len();
        if releasing_tail && model.guards.is_empty() {
            break;
        }
        match *op {
            Op::Acquire(o) => {
                let result = lockers[o].try_lock(key).await;
                let registered = model.registered(o);
                if let Some(first) = registered.first() {
                    if first.stale {
                        check(
                            matches!(result, Err(Error::NotHeld { .. })),
                            step,
                            op,
                            format!("nesting in a force-released hold: {result:?}"),
                        )?;
                        saw(&seen.stale);
                    } else if model.depth() as u32 >= MAX_DEPTH {
                        check(
                            matches!(
                                result,
                                Err(Error::ReentrancyLimit {
                                    limit: MAX_DEPTH,
                                    ..
                                })
                            ),
                            step,
                            op,
                            format!("at depth {}: {result:?}", model.depth()),
                        )?;
                        saw(&seen.too_deep);
                    } else {
                        let (holder, token) = model.holder.expect("a live guard has a holder");
                        check(holder == o, step, op, format!("holder {holder}"))?;
                        let guard = result.map_err(|e| {
                            TestCaseError::fail(format!("step {step} {op:?}: nested: {e:?}"))
                        })?;
                        check(
                            guard.token().get() == token,
                            step,
                            op,
                            format!("nested token {} != {token}", guard.token()),
                        )?;
                        saw(&seen.nested);
                        model.guards.push((
                            guard,
                            Out {
                                owner: o,
                                token,
                                stale: false,
                                lost: false,
                            },
                        ));
                    }
                } else if let Some((holder, _)) = model.holder {
                    check(holder != o, step, op, "the holder has no live guard".into())?;
                    check(
                        matches!(result, Err(Error::NotObtained { .. })),
                        step,
                        op,
                        format!("held by {holder}: {result:?}"),
                    )?;
                    saw(&seen.contended);
                } else {
                    let guard = result.map_err(|e| {
                        TestCaseError::fail(format!("step {step} {op:?}: free lock: {e:?}"))
                    })?;
                    let token = guard.token().get();
                    check(
                        token > model.last_token,
                        step,
                        op,
                        format!("token {token} after {}", model.last_token),
                    )?;
                    model.last_token = token;
                    saw(&seen.first);
                    model.holder = Some((o, token));
                    model.guards.push((
                        guard,
                        Out {
                            owner: o,
                            token,
                            stale: false,
                            lost: false,
                        },
                    ));
                }
            }
            Op::Release(i) if !model.guards.is_empty() => {
                let (guard, out) = model.guards.remove(i % model.guards.len());
                let result = guard.release().await;
                if out.stale {
                    check(
                        matches!(result, Err(Error::NotHeld { .. })),
                        step,
                        op,
                        format!("release of a force-released hold: {result:?}"),
                    )?;
                } else {
                    check(result.is_ok(), step, op, format!("release: {result:?}"))?;
                    if model.depth() == 0 {
                        model.holder = None;
                    }
                }
            }
            Op::Extend(i) if !model.guards.is_empty() => {
                let at = i % model.guards.len();
                let (guard, out) = &mut model.guards[at];
                let result = guard.extend(Duration::from_secs(10)).await;
                match (out.stale, out.lost) {
                    (false, _) => {
                        check(result.is_ok(), step, op, format!("extend: {result:?}"))?;
                        check(
                            guard.token().get() == out.token,
                            step,
                            op,
                            "the token changed".into(),
                        )?;
                    }
                    (true, false) => {
                        check(
                            matches!(result, Err(Error::NotHeld { .. })),
                            step,
                            op,
                            format!("extend of a force-released hold: {result:?}"),
                        )?;
                        out.lost = true;
                    }
                    (true, true) => check(
                        matches!(result, Err(Error::Lost { .. })),
                        step,
                        op,
                        format!("extend of a lost guard: {result:?}"),
                    )?,
                }
            }
            Op::Release(_) | Op::Extend(_) => {}
            Op::ForceRelease => {
                let result = lockers[0].force_release(key).await.map_err(|e| {
                    TestCaseError::fail(format!("step {step} force_release: {e:?}"))
                })?;
                check(result.failures.is_empty(), step, op, format!("{result:?}"))?;
                // Transient copies (a refused acquire's grant on a slow node,
                // undone in the background) may be removed too; a held lock
                // has at least `held_copies`.
                check(
                    (result.removed >= held_copies) == model.holder.is_some(),
                    step,
                    op,
                    format!("removed {} with holder {:?}", result.removed, model.holder),
                )?;
                for (_, out) in &mut model.guards {
                    out.stale = true;
                }
                model.holder = None;
            }
            Op::Inspect => {
                let info = lockers[1]
                    .inspect(key)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("step {step} inspect: {e:?}")))?;
                let agreed = info.agreed.map(|h| (h.owner, h.token.get()));
                let expected = model
                    .holder
                    .map(|(o, token)| (owners[o].to_string(), token));
                check(
                    agreed == expected,
                    step,
                    op,
                    format!("inspect agreed on {agreed:?}, model {expected:?}"),
                )?;
                if exact_nodes {
                    for view in &info.nodes {
                        let holds = view
                            .lock
                            .as_ref()
                            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                            .as_ref()
                            .map_or(0, |r| r.holds as usize);
                        check(
                            holds == model.depth(),
                            step,
                            op,
                            format!("{} holds on {}, model {}", holds, view.node, model.depth()),
                        )?;
                    }
                }
            }
        }
    }
    // Every guard was given back: nothing may be left.
    let locked = lockers[0]
        .is_locked(key)
        .await
        .map_err(|e| TestCaseError::fail(format!("is_locked: {e:?}")))?;
    check(!locked, all.len(), &Op::Inspect, "a lock was left".into())
}

/// The options of the model: no watchdog (so nothing changes a guard
/// behind the model's back), a small depth limit.
fn model_options() -> LockOptions {
    options().watchdog(Watchdog::Off).max_reentrancy(MAX_DEPTH)
}

fn run_model<B: Backend>(
    rt: &tokio::runtime::Runtime,
    base: &Locker<B>,
    name: &str,
    exact_nodes: bool,
    held_copies: usize,
) {
    let owners = [Owner::random(), Owner::random()];
    let lockers = [
        base.with_owner(owners[0].clone()),
        base.with_owner(owners[1].clone()),
    ];
    let case = AtomicUsize::new(0);
    let seen = Seen::default();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&ops(), |ops| {
        let key = format!("model-{name}-{}", case.fetch_add(1, Ordering::Relaxed));
        rt.block_on(async {
            tokio::time::timeout(
                CASE_LIMIT,
                run_case(
                    &lockers,
                    &owners,
                    &key,
                    &ops,
                    exact_nodes,
                    held_copies,
                    &seen,
                ),
            )
            .await
            .unwrap_or_else(|_| {
                Err(TestCaseError::fail(format!(
                    "{key}: no end within {CASE_LIMIT:?}"
                )))
            })
        })
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let counts = [
        &seen.first,
        &seen.nested,
        &seen.too_deep,
        &seen.contended,
        &seen.stale,
    ];
    assert!(
        counts.iter().all(|c| c.load(Ordering::Relaxed) > 0),
        "{name}: a branch of the model never came up: {seen:?}"
    );
    eprintln!("{name}: {seen:?}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The model on `n` Redis nodes. On one node, that node's own count is
/// compared too; on more, only the quorum's agreed view, since a node's own
/// count may trail while its reply is late. A held lock has a copy on at
/// least a quorum of nodes.
fn run_model_on_redis(n: usize) {
    let nodes = start(n);
    let rt = runtime();
    let base = {
        let _entered = rt.enter();
        locker(&nodes, model_options())
    };
    let quorum = base.backend().quorum();
    run_model(&rt, &base, &format!("redis-{n}"), n == 1, quorum);
}

#[test]
fn reentrancy_and_release_follow_the_model_on_redis() {
    run_model_on_redis(1);
}

#[test]
fn reentrancy_and_release_follow_the_model_on_redlock_of_five() {
    run_model_on_redis(5);
}

#[test]
fn reentrancy_and_release_follow_the_model_on_etcd() {
    let cluster = start_etcd(1);
    let rt = runtime();
    let base = {
        let _entered = rt.enter();
        etcd_locker(&cluster, model_options())
    };
    run_model(&rt, &base, "etcd", false, 1);
}
