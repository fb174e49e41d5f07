//! The checks on small made-up histories: each violation is found, and a
//! correct history passes.

use super::*;

const PERMITS: usize = 3;

fn check(events: &[Event]) -> Report {
    Report::check(events, PERMITS)
}

fn evr(role: Role, client: &str, start: Nanos, end: Nanos, what: What) -> Event {
    Event {
        client: client.to_owned(),
        role,
        start,
        end,
        what,
    }
}

fn ev(client: &str, start: Nanos, end: Nanos, what: What) -> Event {
    evr(Role::Lock, client, start, end, what)
}

fn acq(client: &str, start: Nanos, end: Nanos, token: u64) -> Event {
    ev(client, start, end, What::Acquired { token, slot: None })
}

fn write(client: &str, start: Nanos, token: u64, outcome: Outcome) -> Event {
    ev(client, start, start + 1, What::Write { token, outcome })
}

fn release_as(role: Role, client: &str, start: Nanos, token: u64) -> Event {
    let outcome = ReleaseOutcome::Released;
    let held_until = Nanos::MAX;
    let what = What::Release {
        token,
        outcome,
        held_until,
    };
    evr(role, client, start, start + 1, what)
}

fn release(client: &str, start: Nanos, token: u64) -> Event {
    release_as(Role::Lock, client, start, token)
}

fn round(client: &str, at: Nanos, token: u64) -> Vec<Event> {
    vec![
        acq(client, at, at + 1, token),
        write(client, at + 2, token, Outcome::Accepted),
        release(client, at + 4, token),
    ]
}

/// A read-write hold from `at` to `at + 4`: acquire, the fenced
/// operation at `at + 2` (a read sees `saw`), release.
fn rw(role: Role, client: &str, at: Nanos, token: u64, outcome: Outcome) -> Vec<Event> {
    let slot = None;
    let what = match role {
        Role::Read => What::Read {
            token,
            outcome,
            saw: None,
        },
        _ => What::Write { token, outcome },
    };
    vec![
        evr(role, client, at, at + 1, What::Acquired { token, slot }),
        evr(role, client, at + 2, at + 3, what),
        release_as(role, client, at + 4, token),
    ]
}

fn reading(client: &str, at: Nanos, token: u64, saw: Option<u64>) -> Vec<Event> {
    let mut events = rw(Role::Read, client, at, token, Outcome::Accepted);
    events[1].what = What::Read {
        token,
        outcome: Outcome::Accepted,
        saw,
    };
    events
}

/// A permit held from `at + 1` to `at + len` (its release), writing
/// its slot at `at + 2`.
fn permit(client: &str, at: Nanos, len: Nanos, token: u64, outcome: Outcome) -> Vec<Event> {
    let slot = Some(u32::try_from(token % 1000).unwrap());
    let p = Role::Permit;
    vec![
        evr(p, client, at, at + 1, What::Acquired { token, slot }),
        evr(p, client, at + 2, at + 3, What::Write { token, outcome }),
        release_as(p, client, at + len, token),
    ]
}

#[test]
fn a_correct_history_passes() {
    let mut events = round("a", 0, 1);
    events.extend(round("b", 10, 2));
    events.extend(round("a", 20, 5));
    let report = check(&events);
    assert_eq!(report.violations(), 0, "{report}");
    assert_eq!(
        (report.acquisitions, report.ops[&Role::Lock].accepted),
        (3, 3)
    );
    assert_eq!(report.overlaps, 0);
    assert_eq!(report.highest_accepted[&Target::Lock], 5);
}

#[test]
fn a_token_below_an_earlier_one_is_a_violation() {
    let mut events = round("a", 0, 7);
    events.extend(round("b", 10, 3));
    let report = check(&events);
    assert_eq!(report.token_violations.len(), 1, "{report}");
    // The store would have rejected b's write; here it "accepted" it.
    assert_eq!(report.fence_violations.len(), 1, "{report}");
}

#[test]
fn a_repeated_token_is_a_violation_even_when_concurrent() {
    let events = vec![acq("a", 0, 5, 4), acq("b", 1, 6, 4)];
    let report = check(&events);
    assert_eq!(report.token_violations.len(), 1, "{report}");
}

#[test]
fn concurrent_acquires_may_end_in_either_order() {
    let events = vec![acq("a", 0, 10, 5), acq("b", 1, 9, 4)];
    assert_eq!(check(&events).violations(), 0);
}

#[test]
fn an_overlap_stopped_by_the_fence_is_counted_not_a_violation() {
    let events = vec![
        acq("slow", 0, 1, 1),
        acq("fast", 5, 6, 2),
        write("fast", 7, 2, Outcome::Accepted),
        release("fast", 9, 2),
        write("slow", 20, 1, Outcome::Rejected(2)),
        ev(
            "slow",
            21,
            22,
            What::Release {
                token: 1,
                outcome: ReleaseOutcome::NotHeld,
                held_until: 3,
            },
        ),
    ];
    let report = check(&events);
    assert_eq!(report.violations(), 0, "{report}");
    assert_eq!((report.overlaps, report.overlaps_fenced), (1, 1));
    assert_eq!(report.ops[&Role::Lock].rejected, 1);
}

#[test]
fn a_stale_write_accepted_after_a_newer_one_is_a_violation() {
    let events = vec![
        acq("slow", 0, 1, 1),
        acq("fast", 5, 6, 2),
        write("fast", 7, 2, Outcome::Accepted),
        write("slow", 20, 1, Outcome::Accepted),
    ];
    let report = check(&events);
    assert_eq!(report.fence_violations.len(), 1, "{report}");
    assert_eq!(report.overlaps, 1);
}

#[test]
fn a_write_with_a_token_never_given_is_a_violation() {
    let mut events = round("a", 0, 1);
    events.push(write("b", 10, 9, Outcome::Accepted));
    // Given, but for another role.
    events.push(evr(
        Role::Write,
        "a",
        20,
        21,
        What::Write {
            token: 1,
            outcome: Outcome::Accepted,
        },
    ));
    let report = check(&events);
    assert_eq!(report.fence_violations.len(), 2, "{report}");
}

#[test]
fn a_correct_read_write_history_passes() {
    let mut events = rw(Role::Write, "w", 0, 10, Outcome::Accepted);
    // Two readers side by side, one token; then a writer above them.
    events.extend(reading("r1", 10, 11, Some(10)));
    events.extend(reading("r2", 11, 11, Some(10)));
    events.extend(rw(Role::Write, "w", 20, 12, Outcome::Accepted));
    // A reader stalled past its hold: refused by the newer write.
    let mut stale = rw(Role::Read, "r3", 30, 11, Outcome::Rejected(12));
    (stale[0].start, stale[0].end) = (12, 13);
    events.extend(stale);
    events.extend(reading("r1", 40, 13, Some(12)));
    let report = check(&events);
    assert_eq!(report.violations(), 0, "{report}");
    assert_eq!(report.acquired[&Role::Read], 4);
    assert_eq!(
        report.ops[&Role::Read],
        Ops {
            accepted: 3,
            rejected: 1,
            failed: 0
        }
    );
    assert_eq!(report.highest_accepted[&Target::ReadWrite], 12);
    assert_eq!(report.max_readers, 2);
}

#[test]
fn a_write_accepted_below_an_earlier_read_is_a_violation() {
    // The writer got its token before the reader, stalled, and its
    // write went through after the read: the read's token must stop it.
    let mut events = reading("r", 10, 6, None);
    events.insert(
        0,
        evr(
            Role::Write,
            "w",
            0,
            1,
            What::Acquired {
                token: 5,
                slot: None,
            },
        ),
    );
    events.push(evr(
        Role::Write,
        "w",
        20,
        21,
        What::Write {
            token: 5,
            outcome: Outcome::Accepted,
        },
    ));
    let report = check(&events);
    assert_eq!(report.fence_violations.len(), 1, "{report}");
    assert!(report.fence_violations[0].contains("below an earlier accepted read"));
    // Its acquisition came first: the tokens are in order.
    assert_eq!(report.token_violations.len(), 0, "{report}");
}

#[test]
fn a_read_accepted_below_an_earlier_write_is_a_violation() {
    let mut events = rw(Role::Read, "r", 0, 5, Outcome::Accepted);
    events.truncate(1);
    events.extend(rw(Role::Write, "w", 10, 6, Outcome::Accepted));
    events.push(evr(
        Role::Read,
        "r",
        20,
        21,
        What::Read {
            token: 5,
            outcome: Outcome::Accepted,
            saw: Some(6),
        },
    ));
    let report = check(&events);
    assert_eq!(report.fence_violations.len(), 1, "{report}");
    assert!(report.fence_violations[0].contains("read below an earlier accepted write"));
}

#[test]
fn a_read_of_an_older_or_unwritten_value_is_a_violation() {
    let mut events = rw(Role::Write, "w", 0, 5, Outcome::Accepted);
    events.extend(rw(Role::Write, "w", 10, 7, Outcome::Accepted));
    events.extend(reading("r1", 20, 8, Some(5)));
    events.extend(reading("r2", 30, 9, Some(6)));
    let report = check(&events);
    assert_eq!(report.fence_violations.len(), 3, "{report}");
}

#[test]
fn read_write_tokens_out_of_order_are_violations() {
    // A write not above an earlier read's token, a read not above an
    // earlier write's, and a write token given twice.
    let mut events = rw(Role::Read, "r", 0, 5, Outcome::Accepted);
    events.extend(rw(Role::Write, "w", 10, 5, Outcome::Rejected(5)));
    events.extend(rw(Role::Read, "r", 20, 5, Outcome::Rejected(5)));
    events.extend(rw(Role::Write, "v", 30, 5, Outcome::Rejected(5)));
    let report = check(&events);
    assert_eq!(report.token_violations.len(), 4, "{report}");
    assert_eq!(report.fence_violations.len(), 0, "{report}");
}

#[test]
fn permits_up_to_their_number_pass() {
    let mut events = permit("a", 0, 100, 1000, Outcome::Accepted);
    events.extend(permit("b", 1, 100, 1001, Outcome::Accepted));
    events.extend(permit("c", 2, 100, 1002, Outcome::Accepted));
    // The same slot, after its last holder released.
    events.extend(permit("d", 101, 10, 2000, Outcome::Accepted));
    let report = check(&events);
    assert_eq!(report.violations(), 0, "{report}");
    assert_eq!(report.max_permit_holders, 3);
    assert_eq!(report.highest_accepted[&Target::Slot(0)], 2000);
}

#[test]
fn more_holders_than_permits_is_a_violation() {
    let mut events = permit("a", 0, 100, 1000, Outcome::Accepted);
    events.extend(permit("b", 1, 100, 1001, Outcome::Accepted));
    events.extend(permit("c", 2, 100, 1002, Outcome::Accepted));
    events.extend(permit("d", 50, 10, 2000, Outcome::Accepted));
    let report = check(&events);
    assert_eq!(report.permit_violations.len(), 1, "{report}");
    assert_eq!(report.max_permit_holders, 4);
}

#[test]
fn a_fenced_or_expired_permit_holder_is_not_counted() {
    // a's write was rejected: it had lost its permit.
    let mut events = permit("a", 0, 100, 1000, Outcome::Rejected(2000));
    events.extend(permit("b", 1, 100, 1001, Outcome::Accepted));
    events.extend(permit("c", 2, 100, 1002, Outcome::Accepted));
    events.extend(permit("d", 50, 10, 2000, Outcome::Accepted));
    // e's validity ran out at 40, long before its release.
    let mut e = permit("e", 20, 100, 3001, Outcome::Accepted);
    e[2].what = What::Release {
        token: 3001,
        outcome: ReleaseOutcome::NotHeld,
        held_until: 40,
    };
    events.extend(e);
    let report = check(&events);
    assert_eq!(report.permit_violations.len(), 0, "{report}");
    assert_eq!(report.permit_holders_fenced, 1);
    assert_eq!(report.max_permit_holders, 3);
}

#[test]
fn slot_tokens_must_increase_and_match_the_slot() {
    let mut events = permit("a", 0, 5, 2001, Outcome::Accepted);
    // Slot 1 again, later, with a lower token.
    events.extend(permit("b", 10, 5, 1001, Outcome::Rejected(2001)));
    // Slot 2 with a token below slot 1's: fine, another slot.
    events.extend(permit("c", 20, 5, 1002, Outcome::Accepted));
    // A slot that does not match the token, and one out of range.
    events.push(evr(
        Role::Permit,
        "d",
        30,
        31,
        What::Acquired {
            token: 3001,
            slot: Some(2),
        },
    ));
    events.push(evr(
        Role::Permit,
        "e",
        40,
        41,
        What::Acquired {
            token: 3005,
            slot: Some(5),
        },
    ));
    let report = check(&events);
    assert_eq!(report.token_violations.len(), 3, "{report}");
    assert_eq!(report.fence_violations.len(), 0, "{report}");
}

#[test]
fn a_slot_write_below_an_earlier_one_of_that_slot_is_a_violation() {
    // Slot 0: 2000 then 1000 both accepted; slot 1 accepts 1001 after
    // slot 0's 2000 (its own fence).
    let mut events = permit("a", 0, 5, 2000, Outcome::Accepted);
    events.extend(permit("b", 10, 5, 1001, Outcome::Accepted));
    let mut stale = permit("c", 20, 5, 1000, Outcome::Accepted);
    stale[0].start = 0;
    stale[0].end = 1;
    events.extend(stale);
    let report = check(&events);
    assert_eq!(report.fence_violations.len(), 1, "{report}");
    assert!(report.fence_violations[0].contains("Slot(0)"));
}

#[test]
fn lines_round_trip() {
    let events = [
        acq("c1", 1, 2, 3),
        ev("c2", 4, 5, What::Refused { why: "busy".into() }),
        write("c3", 6, 7, Outcome::Rejected(9)),
        write("c3", 6, 7, Outcome::Failed),
        ev(
            "c4",
            8,
            9,
            What::Release {
                token: 10,
                outcome: ReleaseOutcome::NotHeld,
                held_until: 11,
            },
        ),
        evr(
            Role::Permit,
            "s",
            1,
            2,
            What::Acquired {
                token: 2001,
                slot: Some(1),
            },
        ),
        evr(
            Role::Read,
            "r",
            1,
            2,
            What::Read {
                token: 4,
                outcome: Outcome::Accepted,
                saw: Some(3),
            },
        ),
        evr(
            Role::Read,
            "r",
            1,
            2,
            What::Read {
                token: 4,
                outcome: Outcome::Rejected(5),
                saw: None,
            },
        ),
    ];
    for event in events {
        assert_eq!(Event::parse(&event.to_string()), Ok(event));
    }
    assert!(Event::parse("acquired c1 lock 1 2 3").is_err());
    assert!(Event::parse("acquired c1 nobody 1 2 3 -").is_err());
    assert!(Event::parse("write c1 lock 1 2 3 rejected:x").is_err());
}
