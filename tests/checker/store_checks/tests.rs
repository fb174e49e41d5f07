//! Made-up histories and final states that break each rule, and ones
//! that keep them, with unknown outcomes.

use super::*;

fn ev(client: &str, start: Nanos, what: What) -> Event {
    let role = match what {
        What::Read { .. } => Role::Read,
        _ => Role::Lock,
    };
    Event {
        client: client.to_owned(),
        role,
        start,
        end: start + 1,
        what,
    }
}

fn write(client: &str, at: Nanos, token: u64, outcome: Outcome) -> Event {
    ev(client, at, What::Write { token, outcome })
}

fn last(token: u64, client: &str) -> Option<Stored> {
    Some(Stored {
        fence: token,
        last: Some((token, format!("{client}:{token}:1"))),
    })
}

/// A snapshot after every event.
fn at_end(states: BTreeMap<Target, Option<Stored>>) -> Vec<Snapshot> {
    vec![Snapshot {
        at: 1000,
        until: 1001,
        states,
    }]
}

fn check_lock(events: &[Event], stored: Option<Stored>) -> StoreReport {
    check(events, &at_end(BTreeMap::from([(Target::Lock, stored)])))
}

#[test]
fn the_last_acknowledged_write_passes() {
    let events = [
        write("a", 0, 1, Outcome::Accepted),
        write("b", 10, 2, Outcome::Failed),
        write("b", 12, 2, Outcome::Accepted),
        write("c", 20, 1, Outcome::Rejected(2)),
    ];
    let report = check_lock(&events, last(2, "b"));
    assert!(report.violations.is_empty(), "{report}");
    let w = report.writes;
    assert_eq!(
        (w.acknowledged, w.unknown, w.rejected, w.retried),
        (2, 0, 1, 1)
    );
}

#[test]
fn an_unknown_write_may_be_the_last_or_not() {
    let events = [
        write("a", 0, 1, Outcome::Accepted),
        write("b", 10, 2, Outcome::Failed),
    ];
    for stored in [last(1, "a"), last(2, "b")] {
        let report = check_lock(&events, stored);
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(report.writes.unknown, 1);
    }
}

#[test]
fn an_acknowledged_write_lost_is_a_violation() {
    let events = [
        write("a", 0, 1, Outcome::Accepted),
        write("b", 10, 2, Outcome::Accepted),
    ];
    // The store came back with a's write: b's is lost.
    let report = check_lock(&events, last(1, "a"));
    assert_eq!(report.violations.len(), 2, "{report}");
    // Or with nothing at all.
    let report = check_lock(&events, None);
    assert_eq!(report.violations.len(), 1, "{report}");
}

#[test]
fn a_value_no_write_made_is_a_violation() {
    let events = [
        write("a", 0, 1, Outcome::Accepted),
        write("b", 10, 2, Outcome::Rejected(3)),
        write("c", 5, 3, Outcome::Accepted),
    ];
    // A rejected write's value, and one nobody wrote.
    for client in ["b", "z"] {
        let stored = Stored {
            fence: 3,
            last: Some((3, format!("{client}:3:1"))),
        };
        let report = check_lock(&events, Some(stored));
        assert_eq!(report.violations.len(), 1, "{report}");
    }
    // A value that does not match its fence.
    let stored = Stored {
        fence: 3,
        last: Some((3, "a:1:1".to_owned())),
    };
    assert_eq!(check_lock(&events, Some(stored)).violations.len(), 2);
}

#[test]
fn a_fence_from_nowhere_is_a_violation() {
    // Rejected by a token nobody sent, or sent only after the rejection.
    let events = [
        write("a", 0, 1, Outcome::Accepted),
        write("b", 10, 1, Outcome::Rejected(7)),
        write("c", 20, 7, Outcome::Failed),
    ];
    let report = check_lock(&events, last(1, "a"));
    assert_eq!(report.violations.len(), 1, "{report}");
    // A final fence above every operation.
    let events = [write("a", 0, 1, Outcome::Accepted)];
    let stored = Stored {
        fence: 9,
        last: Some((1, "a:1:1".to_owned())),
    };
    assert_eq!(check_lock(&events, Some(stored)).violations.len(), 1);
}

#[test]
fn a_fence_below_an_acknowledged_read_is_a_violation() {
    let read = |token, outcome| What::Read {
        token,
        outcome,
        saw: None,
    };
    let mut events = vec![
        ev("r", 0, read(4, Outcome::Accepted)),
        ev("r", 5, read(6, Outcome::Failed)),
    ];
    events.push(Event {
        role: Role::Write,
        ..write("w", 2, 3, Outcome::Accepted)
    });
    let stored = |fence| {
        let last = Some((3, "w:3:1".to_owned()));
        at_end(BTreeMap::from([(
            Target::ReadWrite,
            Some(Stored { fence, last }),
        )]))
    };
    for fence in [4, 6] {
        let report = check(&events, &stored(fence));
        assert!(report.violations.is_empty(), "{fence}: {report}");
    }
    assert_eq!(check(&events, &stored(3)).violations.len(), 1);
    assert_eq!(check(&events, &stored(4)).reads_unknown, 1);
}

/// A snapshot taken mid-run (after a restart of the store) holds only
/// what was acknowledged before it began, and shows only what was
/// sent before it ended.
#[test]
fn a_snapshot_is_judged_by_what_came_before_it() {
    let events = [
        write("a", 0, 1, Outcome::Accepted),
        write("b", 10, 2, Outcome::Accepted),
        write("c", 30, 3, Outcome::Accepted),
    ];
    let snapshot = |at, token: u64, client: &str| Snapshot {
        at,
        until: at + 5,
        states: BTreeMap::from([(
            Target::Lock,
            Some(Stored {
                fence: token,
                last: Some((token, format!("{client}:{token}:1"))),
            }),
        )]),
    };
    // Between b's write and c's: b's must be there, c's cannot be.
    assert!(
        check(&events, &[snapshot(20, 2, "b")])
            .violations
            .is_empty()
    );
    // b's acknowledged write lost by a restart, though c wrote later.
    let report = check(&events, &[snapshot(20, 1, "a"), snapshot(40, 3, "c")]);
    assert_eq!(report.violations.len(), 2, "{report}");
    assert_eq!(report.snapshots, 2);
    // c's write shown before c sent it.
    assert_eq!(check(&events, &[snapshot(20, 3, "c")]).violations.len(), 2);
}
