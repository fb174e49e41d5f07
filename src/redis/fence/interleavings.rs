//! The fencing rule under concurrency: a model of N nodes (counter + lock
//! holder each) and several acquires whose messages arrive in any order,
//! driven by the real `fence_candidate` / `fence_confirmed`. Each node
//! applies one message at a time, as a Redis script does; every step picks
//! one of the events enabled at that moment; a lock can expire
//! while its acquire is still running (that acquire then fails its validity
//! check). Checked: tokens handed out strictly increase in the order they
//! are handed out, and no two acquires hold at once.

use std::collections::HashSet;

use proptest::prelude::*;

use super::model_kit::weighted_pick;
use super::rule::{Raised, fence_candidate, fence_confirmed};

/// Something that happens: an acquire starts, or one of its messages arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Start,
    Grant(usize, usize),
    Decide(usize),
    Raise(usize, usize),
    Finalize(usize),
    Release(usize),
    Expire(usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Granting,
    Raising,
    Held,
    Over,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Acquire {
    phase: Phase,
    asked: Vec<bool>,
    votes: Vec<Option<u64>>,
    target: u64,
    raised: Vec<Raised>,
    raise_sent: Vec<bool>,
    expired: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct World {
    counters: Vec<u64>,
    holder: Vec<Option<usize>>,
    acquires: Vec<Acquire>,
    quorum: usize,
    max_acquires: usize,
    handed_out: Vec<u64>,
}

impl World {
    fn new(counters: Vec<u64>, max_acquires: usize) -> Self {
        let n = counters.len();
        Self {
            counters,
            holder: vec![None; n],
            acquires: Vec::new(),
            quorum: n / 2 + 1,
            max_acquires,
            handed_out: Vec::new(),
        }
    }

    fn votes(&self, a: usize) -> Vec<u64> {
        self.acquires[a].votes.iter().flatten().copied().collect()
    }

    /// The events that can happen next.
    fn enabled(&self) -> Vec<Event> {
        let n = self.counters.len();
        let mut events = Vec::new();
        if self.acquires.len() < self.max_acquires {
            events.push(Event::Start);
        }
        for (a, acq) in self.acquires.iter().enumerate() {
            let held_here = |node: usize| self.holder[node] == Some(a);
            match acq.phase {
                Phase::Granting => {
                    events.extend(
                        (0..n)
                            .filter(|&m| !acq.asked[m])
                            .map(|m| Event::Grant(a, m)),
                    );
                    events.push(Event::Decide(a));
                }
                Phase::Raising => {
                    let lagging = |m: usize| !acq.raise_sent[m] && acq.votes[m] != Some(acq.target);
                    events.extend((0..n).filter(|&m| lagging(m)).map(|m| Event::Raise(a, m)));
                    events.push(Event::Finalize(a));
                }
                Phase::Held => events.push(Event::Release(a)),
                Phase::Over => {}
            }
            if matches!(acq.phase, Phase::Granting | Phase::Raising) {
                events.extend(
                    (0..n)
                        .filter(|&m| held_here(m))
                        .map(|m| Event::Expire(a, m)),
                );
            }
        }
        events
    }

    /// Applies one enabled event.
    fn step(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Start => self.start(),
            Event::Grant(a, node) => self.grant(a, node),
            Event::Decide(a) => self.decide(a)?,
            Event::Raise(a, node) => self.raise(a, node),
            Event::Finalize(a) => self.finalize(a)?,
            // The holder releases everywhere.
            Event::Release(a) => self.fail(a),
            Event::Expire(a, node) => self.expire(a, node),
        }
        Ok(())
    }

    /// A new acquire begins.
    fn start(&mut self) {
        let n = self.counters.len();
        self.acquires.push(Acquire {
            phase: Phase::Granting,
            asked: vec![false; n],
            votes: vec![None; n],
            target: 0,
            raised: Vec::new(),
            raise_sent: vec![false; n],
            expired: false,
        });
    }

    /// The acquire script arrives at a node.
    fn grant(&mut self, a: usize, node: usize) {
        self.acquires[a].asked[node] = true;
        if self.holder[node].is_none() {
            self.counters[node] += 1;
            self.holder[node] = Some(a);
            self.acquires[a].votes[node] = Some(self.counters[node]);
        }
    }

    /// The coordinator counts the votes (unanswered nodes timed out).
    fn decide(&mut self, a: usize) -> Result<(), String> {
        let votes = self.votes(a);
        if votes.len() < self.quorum {
            self.fail(a);
            return Ok(());
        }
        let (target, fast) = fence_candidate(&votes, self.quorum);
        self.acquires[a].target = target;
        if fast {
            self.hand_out(a)?;
        } else {
            self.acquires[a].phase = Phase::Raising;
        }
        Ok(())
    }

    /// The raise script arrives at a node that did not vote the target.
    fn raise(&mut self, a: usize, node: usize) {
        let target = self.acquires[a].target;
        self.acquires[a].raise_sent[node] = true;
        self.counters[node] = self.counters[node].max(target);
        let raised = Raised {
            counter: self.counters[node],
            holds_lock: self.holder[node] == Some(a),
            was_missing: false,
        };
        self.acquires[a].raised.push(raised);
    }

    /// The coordinator counts the raise replies (the rest timed out).
    fn finalize(&mut self, a: usize) -> Result<(), String> {
        let votes = self.votes(a);
        let acq = &self.acquires[a];
        if fence_confirmed(acq.target, &votes, &acq.raised, self.quorum) {
            self.hand_out(a)
        } else {
            self.fail(a);
            Ok(())
        }
    }

    /// The lock expires on a node while its acquire still runs.
    fn expire(&mut self, a: usize, node: usize) {
        self.holder[node] = None;
        self.acquires[a].expired = true;
    }

    fn hand_out(&mut self, a: usize) -> Result<(), String> {
        if self.acquires[a].expired {
            // The validity check: a lock that may have expired is not handed out.
            self.fail(a);
            return Ok(());
        }
        let token = self.acquires[a].target;
        if let Some(&last) = self.handed_out.last()
            && token <= last
        {
            return Err(format!("token {token} handed out after {last}: {self:?}"));
        }
        if let Some(other) = self.acquires.iter().position(|x| x.phase == Phase::Held) {
            return Err(format!("acquires {other} and {a} hold at once: {self:?}"));
        }
        self.handed_out.push(token);
        self.acquires[a].phase = Phase::Held;
        Ok(())
    }

    fn fail(&mut self, a: usize) {
        for holder in &mut self.holder {
            if *holder == Some(a) {
                *holder = None;
            }
        }
        self.acquires[a].phase = Phase::Over;
    }
}

/// Visits every state reachable from `world`; the first violation found.
fn explore(world: World, seen: &mut HashSet<World>) -> Result<(), String> {
    if !seen.insert(world.clone()) {
        return Ok(());
    }
    for event in world.enabled() {
        let mut next = world.clone();
        next.step(event)?;
        explore(next, seen)?;
    }
    Ok(())
}

#[test]
fn tokens_increase_in_every_interleaving_of_two_acquires_on_three_nodes() {
    // Every start with counters in 0..3 (up to symmetry: sorted descending),
    // every order of every message of two acquires, expiries included.
    let mut states = 0;
    for x in 0..3u64 {
        for y in 0..=x {
            for z in 0..=y {
                let mut seen = HashSet::new();
                if let Err(violation) = explore(World::new(vec![x, y, z], 2), &mut seen) {
                    panic!("{violation}");
                }
                states += seen.len();
            }
        }
    }
    assert!(states > 10_000, "the search covered only {states} states");
}

/// Picks an event, messages four times as likely as decisions: coordinators
/// that decide before most replies arrive rarely reach the interesting states.
fn pick(enabled: &[Event], choice: u16) -> Option<Event> {
    let weight = |e: &Event| match e {
        Event::Grant(..) | Event::Raise(..) => 4,
        _ => 1,
    };
    weighted_pick(enabled, choice, weight)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn tokens_increase_under_any_interleaving(
        start in proptest::collection::vec(0u64..6, 1..6),
        choices in proptest::collection::vec(any::<u16>(), 1..120),
    ) {
        let mut world = World::new(start, 4);
        for choice in choices {
            let Some(event) = pick(&world.enabled(), choice) else {
                break;
            };
            if let Err(violation) = world.step(event) {
                prop_assert!(false, "{}", violation);
            }
        }
    }
}

#[test]
fn a_raise_on_a_node_held_by_another_acquire_does_not_count() {
    // The schedule that breaks the rule when every raise reply counts:
    // X=5, Y=3, Z=3. A is granted by X (6) and Y (4); B by Z (4). A's raise
    // reaches Z (held by B) but not Y; A must not hand out 6 on X and Z.
    let mut world = World::new(vec![5, 3, 3], 2);
    let (x, y, z) = (0, 1, 2);
    let (a, b) = (0, 1);
    for event in [
        Event::Start,
        Event::Start,
        Event::Grant(a, x),
        Event::Grant(a, y),
        Event::Grant(b, z),
        Event::Decide(a),
        Event::Raise(a, z),
        Event::Finalize(a),
    ] {
        world.step(event).unwrap();
    }
    assert_eq!(world.acquires[a].phase, Phase::Over, "A must fail");
    assert!(world.handed_out.is_empty());
}
