//! The exhaustive search over the model with wipes, the random schedules on
//! larger clusters, and the variants that show each part of the rule is
//! needed.

use proptest::prelude::*;

use super::super::model_kit::{QuickHash, weighted_pick};
use super::*;

/// The search keeps a 128-bit fingerprint of each state it visited, not
/// the state (as TLC does): millions of states fit in tens of megabytes.
/// Two states that share one are a collision of two independent 64-bit
/// hashes, which would only prune a branch, never report a violation.
struct Search {
    seen: Visited<u128>,
    path: Vec<Event>,
}

fn fingerprint(world: &World) -> u128 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let sip = BuildHasherDefault::<DefaultHasher>::default().hash_one(world);
    let quick = BuildHasherDefault::<QuickHash>::default().hash_one(world);
    (u128::from(sip) << 64) | u128::from(quick)
}

impl Search {
    fn new() -> Self {
        Self {
            seen: Visited::default(),
            path: Vec::new(),
        }
    }

    /// Visits every state reachable from `world`; the first violation found,
    /// with the events that led to it.
    fn visit(&mut self, world: World) -> Result<(), String> {
        if !self.seen.insert(fingerprint(&world)) {
            return Ok(());
        }
        for event in world.enabled() {
            let mut next = world.clone();
            self.path.push(event);
            if let Err(violation) = next.step(event) {
                return Err(format!("{violation} after {:?}", self.path));
            }
            self.visit(next)?;
            self.path.pop();
        }
        Ok(())
    }
}

/// Every interleaving from two starts of three nodes: counters level, and
/// counters all apart (lags of 1 and 2); the number of states visited, or
/// the first violation. (Every start in `0..3`, as section 8's model
/// searches, takes minutes here: two or three million states each.)
fn search_all(bounds: Bounds, variant: Variant) -> Result<usize, String> {
    let mut states = 0;
    for start in [[0, 0, 0], [2, 1, 0]] {
        let mut search = Search::new();
        search.visit(World::new(&start, bounds, variant))?;
        states += search.seen.len();
    }
    Ok(states)
}

const ONE_WIPE: Bounds = Bounds {
    acquires: 2,
    wipes: 1,
    repairs: 1,
};

#[test]
fn tokens_increase_and_holds_exclude_in_every_interleaving_with_a_wipe() {
    let states = search_all(ONE_WIPE, Variant::FULL).unwrap_or_else(|v| panic!("{v}"));
    assert!(
        states > 1_000_000,
        "the search covered only {states} states"
    );
}

#[test]
fn without_the_quarantine_a_wiped_node_grants_a_lock_still_held() {
    let variant = Variant {
        quarantine: false,
        ..Variant::FULL
    };
    let violation = search_all(ONE_WIPE, variant).expect_err("a violation");
    assert!(violation.contains("hold at once"), "{violation}");
}

#[test]
fn without_trust_a_wiped_counter_sends_tokens_back() {
    let variant = Variant {
        trust: false,
        ..Variant::FULL
    };
    let violation = search_all(ONE_WIPE, variant).expect_err("a violation");
    assert!(violation.contains("handed out after"), "{violation}");
}

/// A repair read in one incarnation must not write into the next: the node
/// was wiped again after the read, so the read may predate tokens counted
/// on the node in between. Two wipes make the exhaustive search too large;
/// this is the schedule, with and without the check.
#[test]
fn a_repair_read_before_a_second_wipe_must_not_write_after_it() {
    let run = |variant: Variant| -> Result<Option<u64>, String> {
        let bounds = Bounds {
            acquires: 2,
            wipes: 2,
            repairs: 2,
        };
        let mut world = World::new(&[0, 0, 0], bounds, variant);
        let (x, y, z) = (0, 1, 2);
        for event in [
            // Y is wiped and comes back; two repairs of it start, and
            // both read X and Z at 0. The first writes: Y is trusted at 0.
            Event::Wipe(y),
            Event::Touch(y),
            Event::Rejoin(y),
            Event::Touch(y),
            Event::Touch(y),
            Event::Read(0, x),
            Event::Read(0, z),
            Event::Read(1, x),
            Event::Read(1, z),
            Event::Repair(0),
            // Acquire 0 counts X and Y at 1: token 1. Z lags at 0.
            Event::Start,
            Event::Grant(0, x),
            Event::Grant(0, y),
            Event::Decide(0),
            Event::Release(0),
            // Y is wiped again and comes back; the second repair, read
            // before token 1, writes 0 into the new incarnation.
            Event::Wipe(y),
            Event::Touch(y),
            Event::Rejoin(y),
            Event::Repair(1),
            // Acquire 1 asks Y and Z.
            Event::Start,
            Event::Grant(1, y),
            Event::Grant(1, z),
            Event::Decide(1),
        ] {
            world.step(event)?;
        }
        Ok(world.last)
    };
    assert_eq!(run(Variant::FULL), Ok(Some(1)), "Y refuses acquire 1");
    let without = Variant {
        incarnation: false,
        ..Variant::FULL
    };
    let violation = run(without).expect_err("token 1 again");
    assert!(
        violation.contains("token 1 handed out after 1"),
        "{violation}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn tokens_increase_and_holds_exclude_under_random_schedules(
        start in proptest::collection::vec(0u64..6, 1..6),
        choices in proptest::collection::vec(any::<u16>(), 1..200),
    ) {
        let bounds = Bounds { acquires: 4, wipes: 2, repairs: 3 };
        let mut world = World::new(&start, bounds, Variant::FULL);
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

/// Picks an event for a random schedule: messages four times as likely as
/// decisions, wipes rare, so that schedules get far enough to matter.
fn pick(enabled: &[Event], choice: u16) -> Option<Event> {
    let weight = |e: &Event| match e {
        Event::Grant(..) | Event::Raise(..) | Event::Read(..) => 4,
        Event::Wipe(_) => 1,
        _ => 2,
    };
    weighted_pick(enabled, choice, weight)
}
