//! Semaphores on a quorum (docs/algorithm.md, section 13): a model of N
//! nodes, each keeping `permits` slots (each slot an exclusive lock: free or
//! held by one client) and one fencing counter shared by the slots, and
//! several clients acquiring a permit, whose messages arrive in any order,
//! driven by the real `fence_candidate` / `fence_confirmed`. A client sends
//! one slot order to every node; a node grants the first free slot in that
//! order and counts; the client wins the slot that a quorum granted, with
//! token `c * 1000 + slot` where `c` comes out of the fencing rule over that
//! slot's grants. Holds leave the nodes one node at a time: the client's
//! grants in other slots once it has decided, all of them once it failed or
//! released, each whenever its undo or release reaches that node. As in
//! `interleavings`, each node applies one message at a time, a hold can
//! expire while its acquire runs (the acquire then fails its validity
//! check), and nodes keep their data. Checked at every hand-out: never more
//! than `permits` holders, never two in one slot, and tokens in each slot
//! strictly increase.
//!
//! The naive design, one counter of holders per node admitting up to
//! `permits`, is modelled too: the search finds 5 holders of 3 permits on 5
//! nodes.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::model_kit::{Visited, bit, move_bits};
use super::rule::{Raised, fence_candidate, fence_confirmed};

const MAX_NODES: usize = 5;
const MAX_PERMITS: usize = 3;
const MAX_CLIENTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    /// More holders than permits.
    TooManyHolders,
    /// Two holders in one slot.
    SlotShared,
    /// A slot's token not above the one handed out before in that slot.
    TokenOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Client `c`'s acquire arrives at a node and takes the given slot.
    Grant(usize, usize, u8),
    Decide(usize),
    Raise(usize, usize),
    Finalize(usize),
    Release(usize),
    /// The undo or release of client `c` reaches a node.
    Leave(usize, usize),
    Expire(usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Phase {
    Granting,
    Raising,
    Held,
    Over,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
struct Node {
    counter: u8,
    /// The client holding each slot.
    slots: [Option<u8>; MAX_PERMITS],
}

/// One client's acquire: per node the slot granted and the counter's value
/// (only the winning slot's values at the target once it raises), the slot
/// won, the candidate `c`, and the raise replies that count (from nodes
/// holding the client in the winning slot). An acquire whose hold expired
/// keeps only the nodes it took and its highest value, as in
/// `rw_interleavings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Client {
    phase: Phase,
    granted: u8,
    votes: [Option<(u8, u8)>; MAX_NODES],
    slot: Option<u8>,
    target: u8,
    raised_holding: u8,
    expired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct World {
    nodes: [Node; MAX_NODES],
    clients: [Client; MAX_CLIENTS],
    /// The last `c` handed out in each slot (0: none yet).
    last: [u8; MAX_PERMITS],
}

struct Model {
    nodes: usize,
    quorum: usize,
    permits: usize,
    clients: usize,
    /// Client `c` sends `orders[c]`, the same to every node.
    orders: Vec<[u8; MAX_PERMITS]>,
    /// Whether holds may expire while their acquire runs.
    expiry: bool,
}

impl Model {
    fn new(nodes: usize, permits: usize, clients: usize, orders: Vec<[u8; MAX_PERMITS]>) -> Self {
        assert!(nodes <= MAX_NODES && permits <= MAX_PERMITS && clients <= MAX_CLIENTS);
        Self {
            nodes,
            quorum: nodes / 2 + 1,
            permits,
            clients,
            orders,
            expiry: true,
        }
    }

    fn with_quorum(mut self, quorum: usize) -> Self {
        self.quorum = quorum;
        self
    }

    fn without_expiry(mut self) -> Self {
        self.expiry = false;
        self
    }

    fn start(&self) -> World {
        let idle = Client {
            phase: Phase::Over,
            granted: 0,
            votes: [None; MAX_NODES],
            slot: None,
            target: 0,
            raised_holding: 0,
            expired: false,
        };
        let mut clients = [idle; MAX_CLIENTS];
        for client in &mut clients[..self.clients] {
            client.phase = Phase::Granting;
        }
        World {
            nodes: [Node::default(); MAX_NODES],
            clients,
            last: [0; MAX_PERMITS],
        }
    }

    /// The state with the nodes sorted by everything known about them: the
    /// nodes are alike, so the search visits each order of them once.
    fn canonical(&self, world: &World) -> World {
        let k = self.clients;
        let column = |m: usize| {
            let mut key = [0u8; 1 + MAX_PERMITS + 4 * MAX_CLIENTS];
            let node = &world.nodes[m];
            key[0] = node.counter;
            for (s, holder) in node.slots.iter().enumerate() {
                key[1 + s] = holder.map_or(0, |c| c + 1);
            }
            for (c, client) in world.clients[..k].iter().enumerate() {
                let at = 1 + MAX_PERMITS + 4 * c;
                key[at] = u8::from(client.granted & bit(m) != 0);
                let (slot, value) = client.votes[m].map_or((0, 0), |(s, v)| (s + 1, v));
                key[at + 1] = slot;
                key[at + 2] = value;
                key[at + 3] = u8::from(client.raised_holding & bit(m) != 0);
            }
            key
        };
        let keys: Vec<_> = (0..self.nodes).map(column).collect();
        let mut order: Vec<usize> = (0..self.nodes).collect();
        order.sort_by_key(|&m| keys[m]);
        let mut place = [0usize; MAX_NODES];
        for (i, &m) in order.iter().enumerate() {
            place[m] = i;
        }
        let mut v = *world;
        for (i, &m) in order.iter().enumerate() {
            v.nodes[i] = world.nodes[m];
        }
        for (client, old) in v.clients[..k].iter_mut().zip(&world.clients[..k]) {
            for (i, &m) in order.iter().enumerate() {
                client.votes[i] = old.votes[m];
            }
            client.granted = move_bits(old.granted, &place[..self.nodes]);
            client.raised_holding = move_bits(old.raised_holding, &place[..self.nodes]);
        }
        v
    }

    /// Whether the hold of client `c` in `slot` is still wanted: it is
    /// running and has not picked another slot, or holds this one.
    fn wanted(world: &World, c: usize, slot: u8) -> bool {
        let client = &world.clients[c];
        client.phase != Phase::Over && client.slot.is_none_or(|s| s == slot)
    }

    /// The slots of `node` held by client `c`.
    fn slots_of(world: &World, node: usize, c: usize) -> impl Iterator<Item = u8> + '_ {
        (0..MAX_PERMITS as u8)
            .filter(move |&s| world.nodes[node].slots[usize::from(s)] == Some(c as u8))
    }

    /// The slot `node` grants client `c` now: the first free one in its
    /// order. None free is a refusal, which changes nothing.
    fn grantable(&self, world: &World, c: usize, node: usize) -> Option<u8> {
        self.orders[c][..self.permits]
            .iter()
            .copied()
            .find(|&s| world.nodes[node].slots[usize::from(s)].is_none())
    }

    fn enabled(&self, world: &World) -> Vec<Event> {
        let mut events = Vec::new();
        for (c, client) in world.clients[..self.clients].iter().enumerate() {
            match client.phase {
                Phase::Granting => {
                    for m in (0..self.nodes).filter(|&m| client.granted & bit(m) == 0) {
                        events.extend(self.grantable(world, c, m).map(|s| Event::Grant(c, m, s)));
                    }
                    events.push(Event::Decide(c));
                }
                Phase::Raising => {
                    let lagging = |m: usize| {
                        let holds = client
                            .slot
                            .is_some_and(|s| world.nodes[m].slots[usize::from(s)] == Some(c as u8));
                        if !client.expired && holds {
                            client.raised_holding & bit(m) == 0
                                && client.votes[m].map(|(_, v)| v) != Some(client.target)
                        } else {
                            world.nodes[m].counter < client.target
                        }
                    };
                    events.extend(
                        (0..self.nodes)
                            .filter(|&m| lagging(m))
                            .map(|m| Event::Raise(c, m)),
                    );
                    events.push(Event::Finalize(c));
                }
                Phase::Held => events.push(Event::Release(c)),
                Phase::Over => {}
            }
            for m in 0..self.nodes {
                if Self::slots_of(world, m, c).any(|s| !Self::wanted(world, c, s)) {
                    events.push(Event::Leave(c, m));
                }
                let running = matches!(client.phase, Phase::Granting | Phase::Raising);
                if self.expiry
                    && running
                    && Self::slots_of(world, m, c).any(|s| Self::wanted(world, c, s))
                {
                    events.push(Event::Expire(c, m));
                }
            }
        }
        events
    }

    /// The undo or release of client `c` reaches `node`.
    fn leave(world: &mut World, c: usize, node: usize) {
        for s in 0..MAX_PERMITS {
            if world.nodes[node].slots[s] == Some(c as u8) && !Self::wanted(world, c, s as u8) {
                world.nodes[node].slots[s] = None;
            }
        }
    }

    /// Applies one enabled event; the client it hands a permit to, if any.
    fn step(&self, world: &mut World, event: Event) -> Option<usize> {
        match event {
            Event::Grant(c, node, slot) => {
                let n = &mut world.nodes[node];
                n.counter += 1;
                n.slots[usize::from(slot)] = Some(c as u8);
                let client = &mut world.clients[c];
                client.granted |= bit(node);
                if client.expired {
                    client.target = client.target.max(n.counter);
                } else {
                    client.votes[node] = Some((slot, n.counter));
                }
            }
            Event::Decide(c) => return self.decide(world, c),
            Event::Raise(c, node) => {
                let client = &world.clients[c];
                let target = client.target;
                let holds = client
                    .slot
                    .is_some_and(|s| world.nodes[node].slots[usize::from(s)] == Some(c as u8));
                let counter = &mut world.nodes[node].counter;
                *counter = (*counter).max(target);
                if !client.expired && holds {
                    world.clients[c].raised_holding |= bit(node);
                }
            }
            Event::Finalize(c) => return self.finalize(world, c),
            Event::Release(c) => Self::fail(world, c),
            Event::Leave(c, node) => Self::leave(world, c, node),
            Event::Expire(c, node) => {
                for s in 0..MAX_PERMITS {
                    if world.nodes[node].slots[s] == Some(c as u8)
                        && Self::wanted(world, c, s as u8)
                    {
                        world.nodes[node].slots[s] = None;
                    }
                }
                let client = &mut world.clients[c];
                if !client.expired {
                    client.expired = true;
                    if client.phase == Phase::Granting {
                        client.target = client
                            .votes
                            .iter()
                            .flatten()
                            .map(|&(_, v)| v)
                            .max()
                            .unwrap_or(0);
                    }
                    client.votes = [None; MAX_NODES];
                    client.raised_holding = 0;
                }
            }
        }
        None
    }

    /// The coordinator counts the grants per slot (unanswered nodes timed
    /// out); a slot with a quorum wins, the other grants are undone.
    fn decide(&self, world: &mut World, c: usize) -> Option<usize> {
        let client = &mut world.clients[c];
        if (client.granted.count_ones() as usize) < self.quorum {
            Self::fail(world, c);
            return None;
        }
        if client.expired {
            // It fails in the end; meanwhile it may raise counters.
            client.phase = Phase::Raising;
            return None;
        }
        let winner = (0..self.permits as u8).find(|&s| {
            client
                .votes
                .iter()
                .flatten()
                .filter(|&&(slot, _)| slot == s)
                .count()
                >= self.quorum
        });
        let Some(slot) = winner else {
            Self::fail(world, c);
            return None;
        };
        client.slot = Some(slot);
        let votes: Vec<u64> = client
            .votes
            .iter()
            .flatten()
            .filter(|&&(s, _)| s == slot)
            .map(|&(_, v)| u64::from(v))
            .collect();
        let (target, fast) = fence_candidate(&votes, self.quorum);
        client.target = u8::try_from(target).unwrap();
        for vote in &mut client.votes {
            vote.take_if(|&mut (s, v)| s != slot || v != client.target);
        }
        if fast {
            Self::hand_out(world, c)
        } else {
            client.phase = Phase::Raising;
            None
        }
    }

    fn finalize(&self, world: &mut World, c: usize) -> Option<usize> {
        let client = &world.clients[c];
        if client.expired {
            Self::fail(world, c);
            return None;
        }
        let target = u64::from(client.target);
        let votes: Vec<u64> = client.votes.iter().flatten().map(|_| target).collect();
        let raised: Vec<Raised> = (0..client.raised_holding.count_ones())
            .map(|_| Raised {
                counter: target,
                holds_lock: true,
                was_missing: false,
            })
            .collect();
        if fence_confirmed(target, &votes, &raised, self.quorum) {
            Self::hand_out(world, c)
        } else {
            Self::fail(world, c);
            None
        }
    }

    fn hand_out(world: &mut World, c: usize) -> Option<usize> {
        let client = &mut world.clients[c];
        if client.expired {
            Self::fail(world, c);
            return None;
        }
        client.phase = Phase::Held;
        client.granted = 0;
        client.votes = [None; MAX_NODES];
        client.raised_holding = 0;
        Some(c)
    }

    /// Failed or released: every hold of the client is to leave its nodes.
    fn fail(world: &mut World, c: usize) {
        let client = &mut world.clients[c];
        client.phase = Phase::Over;
        client.granted = 0;
        client.votes = [None; MAX_NODES];
        client.slot = None;
        client.target = 0;
        client.raised_holding = 0;
        client.expired = false;
    }
}

mod search;
