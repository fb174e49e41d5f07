//! Read and write holds on a quorum (docs/algorithm.md, section 12): a model
//! of N nodes, each keeping one write root or a set of read roots next to
//! its fencing counter, and several first holds, read or write, whose
//! messages arrive in any order, driven by the real `fence_candidate` /
//! `fence_confirmed`. As in `interleavings`, each node applies one message at
//! a time, as a Redis script does; a hold can expire on a node while its
//! acquire still runs (that acquire then fails its validity check); a
//! release or an undo takes the hold off every node in one step; nodes keep
//! their data (section 9 says what losing it costs). The search visits every
//! reachable state once. Checked at every hand-out: no write is handed out
//! while another hold is held, no read while a write is; a write's token is
//! above every token handed out before it, a read's above every earlier
//! write's; and the resource rule (a write passes iff `t >= F`, a read iff
//! `t >= W`) accepts no stale operation, whatever the order in which the
//! holders handed out so far reach the resource.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::model_kit::{Visited, bit, move_bits, weighted_pick};
use super::rule::{Raised, fence_candidate, fence_confirmed};

const MAX_NODES: usize = 5;
const MAX_HOLDS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Read,
    Write,
}

/// The rule the nodes follow. Everything but `Sound` is a negative control:
/// a broken design the search must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Design {
    /// As built: a read is granted where no write root is, a write where no
    /// hold is; every first grant counts (`INCR`).
    Sound,
    /// A read is granted next to another root's write.
    ReadsIgnoreWriter,
    /// A read takes the counter as it is, without counting: readers share
    /// the last writer's token.
    ReadsDoNotCount,
}

/// What a hand-out can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    /// A write held next to another hold, or a read next to a write.
    Exclusion,
    /// A write's token not above an earlier hold's, or a read's not above an
    /// earlier write's.
    TokenOrder,
    /// The resource accepted a write, or a read, that a later holder's
    /// accepted operation had superseded.
    StaleOperation,
}

/// Something that happens: a message of acquire `a` arrives, or its
/// coordinator decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Grant(usize, usize),
    Decide(usize),
    Raise(usize, usize),
    Finalize(usize),
    Release(usize),
    Expire(usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Phase {
    Granting,
    Raising,
    Held,
    Over,
}

/// One node: the write root or the read roots (a bit per acquire), and the
/// fencing counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
struct Node {
    counter: u8,
    writer: Option<u8>,
    readers: u8,
}

/// One first hold's acquire: the nodes that granted it and their values
/// (once it raises, only the values at the target still matter), the
/// candidate token, and the raise replies that count: from nodes that held
/// its root, whose counter is then at least the target. A raise that
/// reaches a node without its root only lifts the counter (and repeating
/// it changes nothing). A node that refused is as one the request has not
/// reached yet: a refusal changes nothing, and the request may as well
/// have come later.
///
/// Once its hold has expired on a node, an acquire can no longer be handed
/// out; what it still does to the nodes is take more of them, count there,
/// and raise counters to its target. So it keeps only the nodes it took and
/// the highest value it got (`target`), and may raise any node below that:
/// more than it can do, which only makes the search wider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Acquire {
    phase: Phase,
    granted: u8,
    votes: [Option<u8>; MAX_NODES],
    target: u8,
    raised_holding: u8,
    expired: bool,
    /// 0 until handed out, then its place in the order of hand-outs.
    rank: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct World {
    nodes: [Node; MAX_NODES],
    acquires: [Acquire; MAX_HOLDS],
    handed_out: u8,
}

/// The fixed part: the nodes, the quorums, one acquire per entry of `kinds`.
struct Model {
    nodes: usize,
    quorum: usize,
    read_quorum: usize,
    kinds: Vec<Kind>,
    design: Design,
    /// Whether holds may expire while their acquire runs.
    expiry: bool,
    /// The relabellings of acquires of the same kind (symmetric).
    relabellings: Vec<Vec<usize>>,
}

impl Model {
    fn new(nodes: usize, kinds: &[Kind]) -> Self {
        assert!(nodes <= MAX_NODES && kinds.len() <= MAX_HOLDS);
        let mut relabellings: Vec<Vec<usize>> = vec![Vec::new()];
        for _ in kinds {
            let mut longer = Vec::new();
            for to in &relabellings {
                for j in (0..kinds.len()).filter(|j| !to.contains(j)) {
                    longer.push([to.as_slice(), &[j]].concat());
                }
            }
            relabellings = longer;
        }
        relabellings.retain(|to| to.iter().enumerate().all(|(i, &j)| kinds[i] == kinds[j]));
        Self {
            nodes,
            quorum: nodes / 2 + 1,
            read_quorum: nodes / 2 + 1,
            kinds: kinds.to_vec(),
            design: Design::Sound,
            expiry: true,
            relabellings,
        }
    }

    fn with_design(mut self, design: Design) -> Self {
        self.design = design;
        self
    }

    fn without_expiry(mut self) -> Self {
        self.expiry = false;
        self
    }

    fn with_read_quorum(mut self, read_quorum: usize) -> Self {
        self.read_quorum = read_quorum;
        self
    }

    fn quorum_of(&self, a: usize) -> usize {
        match self.kinds[a] {
            Kind::Read => self.read_quorum,
            Kind::Write => self.quorum,
        }
    }

    /// Every acquire under way, the nodes' counters at `counters`.
    fn start(&self, counters: &[u8]) -> World {
        let mut nodes = [Node::default(); MAX_NODES];
        for (node, &counter) in nodes.iter_mut().zip(counters) {
            node.counter = counter;
        }
        let idle = Acquire {
            phase: Phase::Over,
            granted: 0,
            votes: [None; MAX_NODES],
            target: 0,
            raised_holding: 0,
            expired: false,
            rank: 0,
        };
        let mut acquires = [idle; MAX_HOLDS];
        for acquire in &mut acquires[..self.kinds.len()] {
            acquire.phase = Phase::Granting;
        }
        World {
            nodes,
            acquires,
            handed_out: 0,
        }
    }

    /// One representative of the states equal to `world` up to the order of
    /// the nodes and of acquires of the same kind; the search visits each
    /// such class once.
    fn canonical(&self, world: &World) -> World {
        let k = self.kinds.len();
        let mut best: Option<World> = None;
        for to in &self.relabellings {
            // Acquire a becomes to[a].
            let mut w = *world;
            for (a, &b) in to.iter().enumerate() {
                w.acquires[b] = world.acquires[a];
            }
            for node in &mut w.nodes[..self.nodes] {
                node.writer = node.writer.map(|a| to[usize::from(a)] as u8);
                node.readers = move_bits(node.readers, to);
            }
            // Nodes sorted by everything known about them.
            let column = |m: usize| {
                let mut key = [0u8; 3 + 3 * MAX_HOLDS];
                let node = &w.nodes[m];
                key[0] = node.counter;
                key[1] = node.writer.map_or(0, |a| a + 1);
                key[2] = node.readers;
                for (b, acq) in w.acquires[..k].iter().enumerate() {
                    key[3 + 3 * b] = u8::from(acq.granted & bit(m) != 0);
                    key[4 + 3 * b] = acq.votes[m].map_or(0, |v| v + 1);
                    key[5 + 3 * b] = u8::from(acq.raised_holding & bit(m) != 0);
                }
                key
            };
            let mut order: Vec<usize> = (0..self.nodes).collect();
            order.sort_by_key(|&m| column(m));
            // Node order[i] becomes i.
            let mut place = [0usize; MAX_NODES];
            for (i, &m) in order.iter().enumerate() {
                place[m] = i;
            }
            let mut v = w;
            for (i, &m) in order.iter().enumerate() {
                v.nodes[i] = w.nodes[m];
            }
            for (acq, old) in v.acquires[..k].iter_mut().zip(&w.acquires[..k]) {
                for (i, &m) in order.iter().enumerate() {
                    acq.votes[i] = old.votes[m];
                }
                acq.granted = move_bits(old.granted, &place[..self.nodes]);
                acq.raised_holding = move_bits(old.raised_holding, &place[..self.nodes]);
            }
            if best.is_none_or(|b| v < b) {
                best = Some(v);
            }
        }
        best.unwrap_or(*world)
    }

    fn holds(world: &World, node: usize, a: usize) -> bool {
        let node = &world.nodes[node];
        node.writer == Some(a as u8) || node.readers & bit(a) != 0
    }

    fn votes(world: &World, a: usize) -> Vec<u64> {
        world.acquires[a]
            .votes
            .iter()
            .flatten()
            .map(|&v| u64::from(v))
            .collect()
    }

    /// The events that can happen next.
    fn enabled(&self, world: &World) -> Vec<Event> {
        let mut events = Vec::new();
        for (a, acq) in world.acquires[..self.kinds.len()].iter().enumerate() {
            match acq.phase {
                Phase::Granting => {
                    events.extend(
                        (0..self.nodes)
                            .filter(|&m| acq.granted & bit(m) == 0 && self.free(world, a, m))
                            .map(|m| Event::Grant(a, m)),
                    );
                    events.push(Event::Decide(a));
                }
                Phase::Raising => {
                    let lagging = |m: usize| {
                        if !acq.expired && Self::holds(world, m, a) {
                            acq.raised_holding & bit(m) == 0 && acq.votes[m] != Some(acq.target)
                        } else {
                            world.nodes[m].counter < acq.target
                        }
                    };
                    events.extend(
                        (0..self.nodes)
                            .filter(|&m| lagging(m))
                            .map(|m| Event::Raise(a, m)),
                    );
                    events.push(Event::Finalize(a));
                }
                Phase::Held => events.push(Event::Release(a)),
                Phase::Over => {}
            }
            if self.expiry && matches!(acq.phase, Phase::Granting | Phase::Raising) {
                events.extend(
                    (0..self.nodes)
                        .filter(|&m| Self::holds(world, m, a))
                        .map(|m| Event::Expire(a, m)),
                );
            }
        }
        events
    }

    /// Whether `node` grants acquire `a` now; a refusal changes nothing.
    fn free(&self, world: &World, a: usize, node: usize) -> bool {
        let n = &world.nodes[node];
        match self.kinds[a] {
            Kind::Write => n.writer.is_none() && n.readers == 0,
            Kind::Read => n.writer.is_none() || self.design == Design::ReadsIgnoreWriter,
        }
    }

    /// Applies one enabled event; the acquire it hands out, if any.
    fn step(&self, world: &mut World, event: Event) -> Option<usize> {
        match event {
            Event::Grant(a, node) => self.grant(world, a, node),
            Event::Decide(a) => return self.decide(world, a),
            Event::Raise(a, node) => Self::raise(world, a, node),
            Event::Finalize(a) => return self.finalize(world, a),
            // The holder releases everywhere.
            Event::Release(a) => Self::fail(world, a),
            Event::Expire(a, node) => Self::expire(world, a, node),
        }
        None
    }

    /// The acquire script arrives at a node that grants it.
    fn grant(&self, world: &mut World, a: usize, node: usize) {
        let kind = self.kinds[a];
        let n = &mut world.nodes[node];
        if !(kind == Kind::Read && self.design == Design::ReadsDoNotCount) {
            n.counter += 1;
        }
        match kind {
            Kind::Write => n.writer = Some(a as u8),
            Kind::Read => n.readers |= bit(a),
        }
        let acq = &mut world.acquires[a];
        acq.granted |= bit(node);
        if acq.expired {
            acq.target = acq.target.max(n.counter);
        } else {
            acq.votes[node] = Some(n.counter);
        }
    }

    /// The hold of acquire `a` expires on `node` while the acquire runs.
    fn expire(world: &mut World, a: usize, node: usize) {
        let n = &mut world.nodes[node];
        if n.writer == Some(a as u8) {
            n.writer = None;
        }
        n.readers &= !bit(a);
        let acq = &mut world.acquires[a];
        if !acq.expired {
            acq.expired = true;
            if acq.phase == Phase::Granting {
                acq.target = acq.votes.iter().flatten().copied().max().unwrap_or(0);
            }
            acq.votes = [None; MAX_NODES];
            acq.raised_holding = 0;
        }
    }

    /// The coordinator counts the votes (unanswered nodes timed out).
    fn decide(&self, world: &mut World, a: usize) -> Option<usize> {
        let votes = Self::votes(world, a);
        let quorum = self.quorum_of(a);
        let acq = &mut world.acquires[a];
        if (acq.granted.count_ones() as usize) < quorum {
            Self::fail(world, a);
            return None;
        }
        if acq.expired {
            // Whichever way it goes, it fails in the end; meanwhile it may
            // raise counters to its target.
            acq.phase = Phase::Raising;
            return None;
        }
        let (target, fast) = fence_candidate(&votes, quorum);
        let acq = &mut world.acquires[a];
        acq.target = u8::try_from(target).unwrap();
        if fast {
            Self::hand_out(world, a)
        } else {
            acq.phase = Phase::Raising;
            for vote in &mut acq.votes {
                vote.take_if(|v| *v != acq.target);
            }
            None
        }
    }

    /// The raise script arrives at a node that did not vote the target.
    fn raise(world: &mut World, a: usize, node: usize) {
        let target = world.acquires[a].target;
        world.nodes[node].counter = world.nodes[node].counter.max(target);
        if !world.acquires[a].expired && Self::holds(world, node, a) {
            world.acquires[a].raised_holding |= bit(node);
        }
    }

    /// The coordinator counts the raise replies (the rest timed out).
    fn finalize(&self, world: &mut World, a: usize) -> Option<usize> {
        let votes = Self::votes(world, a);
        let acq = &world.acquires[a];
        let target = u64::from(acq.target);
        let raised: Vec<Raised> = (0..self.nodes)
            .filter(|&m| acq.raised_holding & bit(m) != 0)
            .map(|_| Raised {
                counter: target,
                holds_lock: true,
                was_missing: false,
            })
            .collect();
        if fence_confirmed(target, &votes, &raised, self.quorum_of(a)) {
            Self::hand_out(world, a)
        } else {
            Self::fail(world, a);
            None
        }
    }

    fn hand_out(world: &mut World, a: usize) -> Option<usize> {
        if world.acquires[a].expired {
            // The validity check: a hold that may have expired is not handed out.
            Self::fail(world, a);
            return None;
        }
        world.handed_out += 1;
        let acq = &mut world.acquires[a];
        acq.rank = world.handed_out;
        acq.phase = Phase::Held;
        Self::forget_messages(acq);
        Some(a)
    }

    /// Release or undo: the hold leaves every node.
    fn fail(world: &mut World, a: usize) {
        for node in &mut world.nodes {
            if node.writer == Some(a as u8) {
                node.writer = None;
            }
            node.readers &= !bit(a);
        }
        let acq = &mut world.acquires[a];
        acq.phase = Phase::Over;
        acq.expired = false;
        if acq.rank == 0 {
            acq.target = 0;
        }
        Self::forget_messages(acq);
    }

    /// Drops what only a running acquire needs, so that states differing
    /// only there are visited once.
    fn forget_messages(acq: &mut Acquire) {
        acq.granted = 0;
        acq.votes = [None; MAX_NODES];
        acq.raised_holding = 0;
    }
}

mod search;
