//! The links between the clients and the lock nodes. Each client group
//! (a half of the in-process clients of one primitive, or one client
//! process) reaches the five nodes through its own five proxies: its
//! *view*. A fault of a node's link silences or slows that node's proxy
//! in every view; a per-client partition silences proxies of some views
//! only, so that client A sees nodes 0–2 while client B sees nodes 2–4.
//!
//! Silence is kept as a set of rules for the step under way, each on one
//! node's link, in every view or in one, in one direction or both, steady
//! or flapping (silent and passing by turns, 50–300 ms each). A proxy is
//! silent in a direction when a rule covering it says so; the step ends
//! with every link passing again.

use std::thread;
use std::time::{Duration, Instant};

use fencelock::testing::{Direction, RedisNodes, TcpProxy};
use rand::RngExt;
use rand::rngs::StdRng;

/// How long a flapping link stays silent, or passing, at a time.
const FLAP_MS: std::ops::Range<u64> = 50..300;

/// One client group's proxies, one per node, in the nodes' order.
#[derive(Debug)]
pub struct View {
    pub name: String,
    pub proxies: Vec<TcpProxy>,
}

impl View {
    /// A proxy in front of each of `nodes`.
    pub fn start(name: &str, nodes: &RedisNodes) -> View {
        let proxies = nodes
            .iter()
            .map(|node| TcpProxy::start(node.addr()).expect("start a proxy"))
            .collect();
        View {
            name: name.to_owned(),
            proxies,
        }
    }

    /// The URLs a client of this view connects to.
    pub fn urls(&self) -> Vec<String> {
        self.proxies.iter().map(TcpProxy::redis_url).collect()
    }
}

/// A flapping rule's phase: silent or passing, until `next`.
#[derive(Debug, Clone, Copy)]
struct Flap {
    silent: bool,
    next: Instant,
}

/// Silence on one node's link for the step under way.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The view it applies to; `None`: every view.
    pub view: Option<usize>,
    pub node: usize,
    /// The direction silenced; `None`: both.
    pub direction: Option<Direction>,
    flap: Option<Flap>,
}

impl Rule {
    /// A steady silence.
    pub fn silent(view: Option<usize>, node: usize, direction: Option<Direction>) -> Rule {
        Rule {
            view,
            node,
            direction,
            flap: None,
        }
    }

    /// A silence in both directions that comes and goes, silent first.
    pub fn flapping(view: Option<usize>, node: usize, rng: &mut StdRng) -> Rule {
        let flap = Flap {
            silent: true,
            next: Instant::now() + Duration::from_millis(rng.random_range(FLAP_MS)),
        };
        Rule {
            flap: Some(flap),
            ..Rule::silent(view, node, None)
        }
    }

    fn silences(&self, view: usize, node: usize, direction: Direction) -> bool {
        self.view.is_none_or(|v| v == view)
            && self.node == node
            && self.direction.is_none_or(|d| d == direction)
            && self.flap.is_none_or(|f| f.silent)
    }
}

/// The links of every view, and the silence rules of the step under way.
#[derive(Debug)]
pub struct Links {
    pub views: Vec<View>,
    rules: Vec<Rule>,
}

impl Links {
    pub fn new(views: Vec<View>) -> Links {
        Links {
            views,
            rules: Vec::new(),
        }
    }

    /// Every view's proxy of `node`.
    pub fn of_node(&self, node: usize) -> impl Iterator<Item = &TcpProxy> {
        self.views.iter().map(move |v| &v.proxies[node])
    }

    /// Adds a rule for the step and applies it.
    pub fn add(&mut self, rule: Rule) {
        self.rules.push(rule);
        self.apply();
    }

    /// Gives each view its own window of `seen` consecutive nodes (from a
    /// random first node, wrapping round): the other nodes' links are
    /// silent in that view. Returns the windows' first nodes.
    pub fn split(&mut self, seen: usize, rng: &mut StdRng) -> Vec<usize> {
        let n = self.views.first().map_or(0, |v| v.proxies.len());
        let mut firsts = Vec::new();
        for view in 0..self.views.len() {
            let first = rng.random_range(0..n);
            for node in (0..n).filter(|node| (node + n - first) % n >= seen) {
                self.rules.push(Rule::silent(Some(view), node, None));
            }
            firsts.push(first);
        }
        self.apply();
        firsts
    }

    /// Sets every proxy's silence from the rules.
    fn apply(&self) {
        for (v, view) in self.views.iter().enumerate() {
            for (node, proxy) in view.proxies.iter().enumerate() {
                for direction in Direction::BOTH {
                    let silent = self.rules.iter().any(|r| r.silences(v, node, direction));
                    proxy.set_silent_toward(direction, silent);
                }
            }
        }
    }

    /// Lets `hold` pass, turning the flapping links over as their phases
    /// end. Sleeping is the point here: it is the fault's duration.
    pub fn hold(&mut self, hold: Duration, rng: &mut StdRng) {
        let end = Instant::now() + hold;
        loop {
            let next = self
                .rules
                .iter()
                .filter_map(|r| r.flap.map(|f| f.next))
                .min();
            let until = next.map_or(end, |next| next.min(end));
            thread::sleep(until.saturating_duration_since(Instant::now()));
            let now = Instant::now();
            if now >= end {
                return;
            }
            for rule in &mut self.rules {
                if let Some(flap) = &mut rule.flap
                    && flap.next <= now
                {
                    flap.silent = !flap.silent;
                    flap.next = now + Duration::from_millis(rng.random_range(FLAP_MS));
                }
            }
            self.apply();
        }
    }

    /// Ends the step: no rule, no silence and no latency on any link.
    pub fn heal(&mut self) {
        self.rules.clear();
        for proxy in self.views.iter().flat_map(|v| &v.proxies) {
            proxy.heal();
        }
    }
}
