//! The fencing rule and the lock on nodes that can lose their data
//! (docs/algorithm.md, section 15): the interleavings model of
//! `interleavings`, with nodes that are wiped at any moment and the rule that
//! keeps such a node from voting until it is safe again.
//!
//! A node's *standing*:
//! - `Original`: it kept its marker, so it never lost data; a missing
//!   counter is a resource it never saw, counted from 0.
//! - `Unmarked`: wiped, and nothing has touched it since.
//! - `Quarantined`: a script found it unmarked and marked it; it grants
//!   nothing until the quarantine (the longest ttl, on its own clock) ends.
//!   Every acquire that started before the quarantine began has by then
//!   lost its validity, unless it still holds a quorum elsewhere and keeps
//!   extending there (`Rejoin` plays that passage of time).
//! - `Reborn`: the quarantine is over. Its counters are trusted only where
//!   they exist, and they exist only where a *repair* wrote them: the
//!   highest counter read from a quorum of trusted nodes after its grant
//!   was refused, which is after the quarantine ended. A first acquire
//!   there without a counter is refused and starts such a repair; a raise
//!   there without a counter changes nothing and does not count.
//!
//! The model is driven by the real `fence_candidate` and `fence_confirmed`.
//! Checked at every hand-out: tokens strictly increase in hand-out order,
//! and no two acquires hold at once. Each part of the rule is shown to be
//! needed by a [`Variant`] without it, on which the search finds a
//! violation.

mod search;

use super::model_kit::Visited;
use super::rule::{Raised, fence_candidate, fence_confirmed};

/// Something that happens: an acquire starts or one of its messages
/// arrives, a node is wiped, a script touches a wiped node, a quarantine
/// ends, or a repair reads a node or writes its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Start,
    Grant(usize, usize),
    Decide(usize),
    Raise(usize, usize),
    Finalize(usize),
    Release(usize),
    Expire(usize, usize),
    Wipe(usize),
    Touch(usize),
    Rejoin(usize),
    Read(usize, usize),
    Repair(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Standing {
    Original,
    Unmarked,
    Quarantined,
    Reborn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Granting,
    Raising,
    Held,
    Over,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    /// `None`: no counter for the resource.
    counter: Option<u64>,
    holder: Option<usize>,
    standing: Standing,
    /// Grows with every wipe; a repair writes only into the incarnation
    /// whose refusal started it.
    incarnation: u8,
    /// The acquires that had started when the quarantine began.
    started_before: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Acquire {
    phase: Phase,
    asked: Vec<bool>,
    votes: Vec<Option<u64>>,
    target: u64,
    /// Each node's raise reply, by node: the order replies came in does not
    /// matter, so it is not part of the state.
    raised: Vec<Option<Raised>>,
    raise_sent: Vec<bool>,
    expired: bool,
}

impl Acquire {
    fn new(n: usize) -> Self {
        Self {
            phase: Phase::Granting,
            asked: vec![false; n],
            votes: vec![None; n],
            target: 0,
            raised: vec![None; n],
            raise_sent: vec![false; n],
            expired: false,
        }
    }

    /// The same acquire with what its phase no longer reads forgotten, so
    /// that states differing only there are one.
    fn settle(&mut self, phase: Phase) {
        let n = self.asked.len();
        *self = Self {
            phase,
            ..Self::new(n)
        };
    }
}

/// A repair of `node`'s counter: what each node answered to its read
/// (`Some(None)`: not trusted), then one write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Repair {
    node: usize,
    incarnation: u8,
    reads: Vec<Option<Option<u64>>>,
    done: bool,
}

/// Which parts of the rule are on. [`Variant::FULL`] is the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Variant {
    /// A wiped node waits out the longest ttl before it grants.
    quarantine: bool,
    /// A reborn node's missing counter is unknown (refuse and repair), not 0.
    trust: bool,
    /// A repair writes only into the incarnation that asked for it.
    incarnation: bool,
}

impl Variant {
    const FULL: Self = Self {
        quarantine: true,
        trust: true,
        incarnation: true,
    };
}

/// How much may happen in one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Bounds {
    acquires: usize,
    wipes: usize,
    repairs: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct World {
    nodes: Vec<Node>,
    acquires: Vec<Acquire>,
    repairs: Vec<Repair>,
    wipes: usize,
    quorum: usize,
    bounds: Bounds,
    variant: Variant,
    /// The last token handed out.
    last: Option<u64>,
}

impl World {
    fn new(counters: &[u64], bounds: Bounds, variant: Variant) -> Self {
        let nodes = counters
            .iter()
            .map(|&c| Node {
                counter: Some(c),
                holder: None,
                standing: Standing::Original,
                incarnation: 0,
                started_before: Vec::new(),
            })
            .collect();
        Self {
            nodes,
            acquires: Vec::new(),
            repairs: Vec::new(),
            wipes: 0,
            quorum: counters.len() / 2 + 1,
            bounds,
            variant,
            last: None,
        }
    }

    fn n(&self) -> usize {
        self.nodes.len()
    }

    fn votes(&self, a: usize) -> Vec<u64> {
        self.acquires[a].votes.iter().flatten().copied().collect()
    }

    /// A node's counter as a read reports it: `None` where it is not trusted.
    fn trusted_counter(&self, m: usize) -> Option<u64> {
        let node = &self.nodes[m];
        match node.standing {
            Standing::Original => Some(node.counter.unwrap_or(0)),
            Standing::Reborn => node.counter,
            Standing::Unmarked | Standing::Quarantined => None,
        }
    }

    /// Whether a touch of `m` would change something: mark a wiped node, or
    /// start a repair of a reborn node's missing counter.
    fn touchable(&self, m: usize) -> bool {
        let node = &self.nodes[m];
        match node.standing {
            Standing::Unmarked => true,
            Standing::Reborn => node.counter.is_none() && self.repairs.len() < self.bounds.repairs,
            _ => false,
        }
    }

    /// The events that can happen next.
    fn enabled(&self) -> Vec<Event> {
        let n = self.n();
        let mut events = Vec::new();
        if self.acquires.len() < self.bounds.acquires {
            events.push(Event::Start);
        }
        for (a, acq) in self.acquires.iter().enumerate() {
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
                        .filter(|&m| self.nodes[m].holder == Some(a))
                        .map(|m| Event::Expire(a, m)),
                );
            }
        }
        for m in 0..n {
            if self.wipes < self.bounds.wipes {
                events.push(Event::Wipe(m));
            }
            if self.touchable(m) {
                events.push(Event::Touch(m));
            }
            if self.nodes[m].standing == Standing::Quarantined {
                events.push(Event::Rejoin(m));
            }
        }
        for (r, repair) in self.repairs.iter().enumerate() {
            if repair.done {
                continue;
            }
            // The node repaired has no trusted counter: reading it is moot.
            events.extend(
                (0..n)
                    .filter(|&m| m != repair.node && repair.reads[m].is_none())
                    .map(|m| Event::Read(r, m)),
            );
            if repair.reads.iter().flatten().flatten().count() >= self.quorum {
                events.push(Event::Repair(r));
            }
        }
        events
    }

    /// Applies one enabled event.
    fn step(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Start => self.start(),
            Event::Grant(a, m) => self.grant(a, m),
            Event::Decide(a) => self.decide(a)?,
            Event::Raise(a, m) => self.raise(a, m),
            Event::Finalize(a) => self.finalize(a)?,
            Event::Release(a) => self.fail(a),
            Event::Expire(a, m) => {
                self.nodes[m].holder = None;
                self.acquires[a].expired = true;
            }
            Event::Wipe(m) => self.wipe(m),
            Event::Touch(m) => self.touch(m),
            Event::Rejoin(m) => self.rejoin(m),
            Event::Read(r, m) => self.repairs[r].reads[m] = Some(self.trusted_counter(m)),
            Event::Repair(r) => self.repair(r),
        }
        Ok(())
    }

    fn start(&mut self) {
        self.acquires.push(Acquire::new(self.n()));
    }

    /// A node loses everything it had, its marker included.
    fn wipe(&mut self, m: usize) {
        self.wipes += 1;
        let node = &mut self.nodes[m];
        node.counter = None;
        node.holder = None;
        node.standing = Standing::Unmarked;
        node.incarnation += 1;
        node.started_before.clear();
    }

    /// A script (an acquire's, of any client) meets `m`: an unmarked node is
    /// marked and its quarantine begins; a reborn node without the counter
    /// starts a repair of it.
    fn touch(&mut self, m: usize) {
        match self.nodes[m].standing {
            Standing::Unmarked if self.variant.quarantine => {
                let started: Vec<usize> = (0..self.acquires.len()).collect();
                let node = &mut self.nodes[m];
                node.standing = Standing::Quarantined;
                node.started_before = started;
            }
            Standing::Unmarked => self.become_reborn(m),
            Standing::Reborn
                if self.nodes[m].counter.is_none() && self.repairs.len() < self.bounds.repairs =>
            {
                let n = self.n();
                self.repairs.push(Repair {
                    node: m,
                    incarnation: self.nodes[m].incarnation,
                    reads: vec![None; n],
                    done: false,
                });
            }
            _ => {}
        }
    }

    fn become_reborn(&mut self, m: usize) {
        let node = &mut self.nodes[m];
        node.standing = Standing::Reborn;
        if !self.variant.trust {
            node.counter = Some(0);
        }
    }

    /// The quarantine of `m` ends: the longest ttl has passed since it began.
    /// Every acquire that had started by then has lost what it held, unless
    /// it is held on a quorum of other nodes and goes on extending there;
    /// one still running fails its validity check.
    fn rejoin(&mut self, m: usize) {
        let started = std::mem::take(&mut self.nodes[m].started_before);
        for a in started {
            let held_on = self.nodes.iter().filter(|x| x.holder == Some(a)).count();
            let acq = &mut self.acquires[a];
            let lost = match acq.phase {
                Phase::Granting | Phase::Raising => {
                    acq.expired = true;
                    true
                }
                Phase::Held if held_on < self.quorum => {
                    acq.settle(Phase::Over);
                    true
                }
                _ => false,
            };
            if lost {
                for node in &mut self.nodes {
                    if node.holder == Some(a) {
                        node.holder = None;
                    }
                }
            }
        }
        self.become_reborn(m);
    }

    /// The acquire script arrives at a node.
    fn grant(&mut self, a: usize, m: usize) {
        self.acquires[a].asked[m] = true;
        if self.nodes[m].standing == Standing::Unmarked || self.nodes[m].counter.is_none() {
            self.touch(m);
        }
        let node = &mut self.nodes[m];
        let counter = match (node.standing, node.counter) {
            (Standing::Original, c) => c.unwrap_or(0),
            (Standing::Reborn, Some(c)) => c,
            // Quarantined, or reborn without the counter: refused.
            _ => return,
        };
        if node.holder.is_none() {
            node.counter = Some(counter + 1);
            node.holder = Some(a);
            self.acquires[a].votes[m] = Some(counter + 1);
        }
    }

    fn decide(&mut self, a: usize) -> Result<(), String> {
        let votes = self.votes(a);
        if votes.len() < self.quorum {
            self.fail(a);
            return Ok(());
        }
        let (target, fast) = fence_candidate(&votes, self.quorum);
        self.acquires[a].target = target;
        if fast {
            self.hand_out(a)
        } else {
            self.acquires[a].phase = Phase::Raising;
            Ok(())
        }
    }

    /// The raise script arrives at a node that did not vote the target. It
    /// never creates a counter that would not be trusted.
    fn raise(&mut self, a: usize, m: usize) {
        let target = self.acquires[a].target;
        self.acquires[a].raise_sent[m] = true;
        let trusted = self.trusted_counter(m);
        let node = &mut self.nodes[m];
        let raised = match trusted {
            Some(c) => {
                node.counter = Some(c.max(target));
                Raised {
                    counter: c.max(target),
                    holds_lock: node.holder == Some(a),
                    was_missing: false,
                }
            }
            None => Raised {
                counter: 0,
                holds_lock: node.holder == Some(a),
                was_missing: true,
            },
        };
        self.acquires[a].raised[m] = Some(raised);
    }

    fn finalize(&mut self, a: usize) -> Result<(), String> {
        let votes = self.votes(a);
        let acq = &self.acquires[a];
        let raised: Vec<Raised> = acq.raised.iter().flatten().copied().collect();
        if fence_confirmed(acq.target, &votes, &raised, self.quorum) {
            self.hand_out(a)
        } else {
            self.fail(a);
            Ok(())
        }
    }

    /// The repair's write: the highest trusted counter it read, into the
    /// node it repairs, if that node is still the reborn incarnation whose
    /// refusal asked for it.
    fn repair(&mut self, r: usize) {
        let repair = &mut self.repairs[r];
        repair.done = true;
        let highest = repair.reads.iter().flatten().flatten().copied().max();
        repair.reads.fill(None);
        let node = &mut self.nodes[repair.node];
        let same = !self.variant.incarnation || node.incarnation == repair.incarnation;
        if let (Some(v), Standing::Reborn, true) = (highest, node.standing, same) {
            node.counter = Some(node.counter.unwrap_or(0).max(v));
        }
    }

    fn hand_out(&mut self, a: usize) -> Result<(), String> {
        if self.acquires[a].expired {
            self.fail(a);
            return Ok(());
        }
        let token = self.acquires[a].target;
        if let Some(last) = self.last
            && token <= last
        {
            return Err(format!("token {token} handed out after {last}"));
        }
        if let Some(other) = self.acquires.iter().position(|x| x.phase == Phase::Held) {
            return Err(format!("acquires {other} and {a} hold at once"));
        }
        self.last = Some(token);
        self.acquires[a].settle(Phase::Held);
        Ok(())
    }

    fn fail(&mut self, a: usize) {
        for node in &mut self.nodes {
            if node.holder == Some(a) {
                node.holder = None;
            }
        }
        self.acquires[a].settle(Phase::Over);
    }
}
