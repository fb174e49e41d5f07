//! The exhaustive search over the read-write model, what it checks at every
//! hand-out, and the tests that run it (with the negative controls that
//! show it catches a broken design).

use std::collections::HashSet;

use super::*;

/// Whether some order of operations by the holders in `history` (kind and
/// token, in the order they were handed out; each may send its operation
/// or not, at any time) makes the resource accept a stale one: a write from
/// a holder after an operation of a later holder, or a read after a write of
/// a later holder. Only accepted operations change the resource, so only
/// they are followed.
fn stale_operation(history: &[(Kind, u8)]) -> Option<String> {
    fn go(history: &[(Kind, u8)], done: &mut Vec<usize>, w: u8, f: u8) -> Option<String> {
        let latest = done.iter().copied().max();
        let latest_write = done
            .iter()
            .copied()
            .filter(|&j| history[j].0 == Kind::Write)
            .max();
        for (i, &(kind, t)) in history.iter().enumerate() {
            if done.contains(&i) {
                continue;
            }
            let (accepted, stale) = match kind {
                Kind::Write => (t >= f, latest.is_some_and(|j| j > i)),
                Kind::Read => (t >= w, latest_write.is_some_and(|j| j > i)),
            };
            if !accepted {
                continue;
            }
            done.push(i);
            if stale {
                let order: Vec<String> = done
                    .iter()
                    .map(|&j| {
                        let (kind, token) = history[j];
                        format!("{kind:?} {token} (hand-out {})", j + 1)
                    })
                    .collect();
                return Some(format!(
                    "the resource accepts {} (hand-outs {history:?})",
                    order.join(", then ")
                ));
            }
            let w = if kind == Kind::Write { w.max(t) } else { w };
            if let Some(found) = go(history, done, w, f.max(t)) {
                return Some(found);
            }
            done.pop();
        }
        None
    }
    go(history, &mut Vec::new(), 0, 0)
}

/// A depth-first search over every reachable state, each visited once.
/// Violations do not stop it; the first schedule of each kind is kept.
struct Search<'m> {
    model: &'m Model,
    seen: Visited<World>,
    histories: HashSet<Vec<(Kind, u8)>>,
    found: BTreeMap<Violation, String>,
    path: Vec<Event>,
}

impl<'m> Search<'m> {
    fn new(model: &'m Model) -> Self {
        Self {
            model,
            seen: Visited::default(),
            histories: HashSet::new(),
            found: BTreeMap::new(),
            path: Vec::new(),
        }
    }

    fn run(&mut self, counters: &[u8]) {
        let world = self.model.start(counters);
        self.visit(world);
    }

    fn visit(&mut self, world: World) {
        if !self.seen.insert(self.model.canonical(&world)) {
            return;
        }
        for event in self.model.enabled(&world) {
            let mut next = world;
            let handed = self.model.step(&mut next, event);
            self.path.push(event);
            if let Some(a) = handed {
                self.check(&next, a);
            }
            self.visit(next);
            self.path.pop();
        }
    }

    fn report(&mut self, violation: Violation, what: String) {
        let path = &self.path;
        let kinds = &self.model.kinds;
        self.found
            .entry(violation)
            .or_insert_with(|| format!("{what}; kinds {kinds:?}, schedule {path:?}"));
    }

    /// The checks at the hand-out of acquire `a`.
    fn check(&mut self, world: &World, a: usize) {
        let kinds = &self.model.kinds;
        let mine = &world.acquires[a];
        let others = || {
            (0..kinds.len())
                .filter(move |&b| b != a)
                .map(|b| (b, kinds[b], &world.acquires[b]))
        };
        let conflicts = |k: Kind| kinds[a] == Kind::Write || k == Kind::Write;
        let mut found = Vec::new();
        for (b, kind, other) in others() {
            if other.phase == Phase::Held && conflicts(kind) {
                found.push((
                    Violation::Exclusion,
                    format!("{:?} #{a} handed out while {kind:?} #{b} holds", kinds[a]),
                ));
            }
            let earlier = other.rank != 0 && other.rank < mine.rank;
            if earlier && conflicts(kind) && mine.target <= other.target {
                found.push((
                    Violation::TokenOrder,
                    format!(
                        "{:?} #{a} got token {} after {kind:?} #{b} got {}",
                        kinds[a], mine.target, other.target
                    ),
                ));
            }
        }
        let mut history: Vec<(u8, Kind, u8)> = (0..kinds.len())
            .filter(|&b| world.acquires[b].rank != 0)
            .map(|b| (world.acquires[b].rank, kinds[b], world.acquires[b].target))
            .collect();
        history.sort_unstable_by_key(|&(rank, _, _)| rank);
        let history: Vec<(Kind, u8)> = history.into_iter().map(|(_, k, t)| (k, t)).collect();
        if self.histories.insert(history.clone())
            && let Some(stale) = stale_operation(&history)
        {
            found.push((Violation::StaleOperation, stale));
        }
        for (violation, what) in found {
            self.report(violation, what);
        }
    }
}

use Kind::{Read, Write};

/// Searches from every start in `starts` (the nodes' counters); the states
/// visited, summed, and the first violation of each kind.
fn search(model: &Model, starts: &[&[u8]]) -> (usize, BTreeMap<Violation, String>) {
    let mut states = 0;
    let mut found = BTreeMap::new();
    for counters in starts {
        let mut search = Search::new(model);
        search.run(counters);
        states += search.seen.len();
        for (violation, what) in search.found {
            found.entry(violation).or_insert(what);
        }
    }
    (states, found)
}

/// Asserts that no state reachable from counters at 0 breaks anything, and
/// that the search went through at least `at_least` states.
fn assert_safe(model: &Model, at_least: usize) {
    let (states, found) = search(model, &[&[0; MAX_NODES][..model.nodes]]);
    assert!(found.is_empty(), "{found:#?}");
    assert!(states >= at_least, "only {states} states");
    println!(
        "{} nodes, {:?}, expiry {}: {states} states",
        model.nodes, model.kinds, model.expiry
    );
}

/// The violations a broken design leads to, with one schedule each.
fn violations(model: &Model) -> BTreeMap<Violation, String> {
    let (_, found) = search(model, &[&[0; MAX_NODES][..model.nodes]]);
    for what in found.values() {
        println!("{what}");
    }
    found
}

#[test]
fn reads_and_writes_exclude_and_order_tokens_on_one_node() {
    // Two writers and two readers, every start with the counter below 3.
    let model = Model::new(1, &[Write, Write, Read, Read]);
    let (states, found) = search(&model, &[&[0], &[1], &[2]]);
    assert!(found.is_empty(), "{found:#?}");
    assert!(states > 5_000, "only {states} states");
}

#[test]
fn reads_and_writes_exclude_and_order_tokens_on_three_nodes() {
    // Three holds with expiries (four make tens of millions of states),
    // and two writers with two readers without them.
    assert_safe(&Model::new(3, &[Write, Write, Read]), 100_000);
    assert_safe(&Model::new(3, &[Write, Read, Read]), 200_000);
    assert_safe(
        &Model::new(3, &[Write, Write, Read, Read]).without_expiry(),
        10_000,
    );
}

#[test]
fn reads_and_writes_exclude_and_order_tokens_on_five_nodes() {
    assert_safe(&Model::new(5, &[Write, Read]), 30_000);
    assert_safe(
        &Model::new(5, &[Write, Write, Read]).without_expiry(),
        3_000,
    );
    assert_safe(
        &Model::new(5, &[Write, Read, Read]).without_expiry(),
        50_000,
    );
}

#[test]
fn a_read_granted_next_to_a_write_is_caught() {
    let model = Model::new(3, &[Write, Read])
        .without_expiry()
        .with_design(Design::ReadsIgnoreWriter);
    assert!(violations(&model).contains_key(&Violation::Exclusion));
}

#[test]
fn a_read_quorum_below_a_majority_is_caught() {
    // One node of three for a read, two for a write: the two sets need not
    // meet.
    let model = Model::new(3, &[Write, Read])
        .without_expiry()
        .with_read_quorum(1);
    assert!(violations(&model).contains_key(&Violation::Exclusion));
}

#[test]
fn readers_that_do_not_count_let_a_stale_write_through() {
    // A reader that takes the last writer's token unchanged: once its read
    // has set F to that token, the old writer's write passes `t >= F`.
    let model = Model::new(3, &[Write, Read])
        .without_expiry()
        .with_design(Design::ReadsDoNotCount);
    let found = violations(&model);
    assert!(found.contains_key(&Violation::StaleOperation), "{found:#?}");
    assert!(found.contains_key(&Violation::TokenOrder), "{found:#?}");
}

/// Picks an event, messages four times as likely as decisions (as in
/// `interleavings`).
fn pick(enabled: &[Event], choice: u16) -> Option<Event> {
    let weight = |e: &Event| match e {
        Event::Grant(..) | Event::Raise(..) => 4,
        _ => 1,
    };
    weighted_pick(enabled, choice, weight)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Two writers and two readers on up to five nodes, expiries included:
    /// too many states to visit all, so random schedules.
    #[test]
    fn reads_and_writes_stay_safe_under_random_interleavings(
        start in proptest::collection::vec(0u8..6, 1..=MAX_NODES),
        choices in proptest::collection::vec(any::<u16>(), 1..150),
    ) {
        let model = Model::new(start.len(), &[Write, Write, Read, Read]);
        let mut search = Search::new(&model);
        let mut world = model.start(&start);
        for choice in choices {
            let Some(event) = pick(&model.enabled(&world), choice) else {
                break;
            };
            search.path.push(event);
            if let Some(a) = model.step(&mut world, event) {
                search.check(&world, a);
            }
        }
        prop_assert!(search.found.is_empty(), "{:#?}", search.found);
    }
}
