use proptest::prelude::*;

use super::*;

const RULE: ClockRule = ClockRule {
    drift_factor: 0.01,
    ttl: Duration::from_millis(600),
    hold_off: Duration::from_secs(10),
};

/// A request sent `sent_ms` after `t0`, answered `rtt_ms` later, whose
/// node read its clock at `node_ms` (ms since the epoch of the test).
fn reading(t0: Instant, sent_ms: f64, rtt_ms: f64, node_ms: f64) -> Reading {
    let sent = t0 + Duration::from_secs_f64(sent_ms / 1e3);
    Reading {
        sent,
        received: sent + Duration::from_secs_f64(rtt_ms / 1e3),
        node_us: (node_ms * 1e3) as i64,
    }
}

#[test]
fn a_clock_that_keeps_time_counts_however_slow_the_replies() {
    let (t0, watch) = (Instant::now(), ClockWatch::default());
    // The node reads its clock early in one request, late in the next.
    for (sent, rtt, read_at) in [(0.0, 50.0, 0.0), (60.0, 80.0, 140.0), (150.0, 1.0, 150.5)] {
        let r = reading(t0, sent, rtt, 1_000_000.0 + read_at);
        assert_eq!(watch.observe("n", r, &RULE), Ok(()));
    }
}

#[test]
fn a_jump_ahead_beyond_the_allowance_stops_the_votes_for_the_hold_off() {
    let (t0, watch) = (Instant::now(), ClockWatch::default());
    let base = 5_000_000.0;
    assert_eq!(
        watch.observe("n", reading(t0, 0.0, 1.0, base), &RULE),
        Ok(())
    );
    // 100 ms later the node says 100 ms + 9 ms later: the allowance of a
    // 600 ms lease is 6 ms + 2 ms.
    let jumped = reading(t0, 100.0, 1.0, base + 100.0 + 1.0 + 9.0);
    let Err(NodeFault::Clock(why)) = watch.observe("n", jumped, &RULE) else {
        panic!("a 9 ms jump must stop the votes");
    };
    assert!(why.contains("ahead"), "{why}");
    // Keeping time since, it still does not count within the hold-off...
    let steady = reading(t0, 5_000.0, 1.0, base + 5_000.0 + 10.0);
    assert!(watch.observe("n", steady, &RULE).is_err());
    // ...and counts again after it.
    let later = reading(t0, 10_200.0, 1.0, base + 10_200.0 + 10.0);
    assert_eq!(watch.observe("n", later, &RULE), Ok(()));
}

#[test]
fn a_jump_within_the_allowance_is_not_held_against_the_node() {
    let (t0, watch) = (Instant::now(), ClockWatch::default());
    let base = 5_000_000.0;
    watch
        .observe("n", reading(t0, 0.0, 1.0, base), &RULE)
        .unwrap();
    let r = reading(t0, 100.0, 1.0, base + 100.0 + 1.0 + 7.5);
    assert_eq!(watch.observe("n", r, &RULE), Ok(()));
}

#[test]
fn a_clock_running_fast_shows_against_the_anchor() {
    let (t0, watch) = (Instant::now(), ClockWatch::default());
    let base = 5_000_000.0;
    // 3 % fast: each step alone (20 ms, gaining 0.6 ms) is within the
    // allowance; over a few seconds the gain is not.
    let mut stopped = None;
    for step in 0..1000 {
        let at = f64::from(step) * 20.0;
        let r = reading(t0, at, 0.5, base + at * 1.03);
        if watch.observe("n", r, &RULE).is_err() {
            stopped = Some(at);
            break;
        }
    }
    let at = stopped.expect("a clock 3 % fast must be found out");
    // The allowance over a span of s ms is max(s, 600) × 1 % + 2 ms, and
    // the gain 3 % of s: found after about 100 ms, within a few steps.
    assert!((60.0..400.0).contains(&at), "found after {at} ms");
}

#[test]
fn a_clock_that_falls_behind_is_reported_but_counts() {
    let (t0, watch) = (Instant::now(), ClockWatch::default());
    let base = 5_000_000.0;
    watch
        .observe("n", reading(t0, 0.0, 1.0, base), &RULE)
        .unwrap();
    let r = reading(t0, 100.0, 1.0, base - 2_000.0);
    assert_eq!(watch.observe("n", r, &RULE), Ok(()));
    let gap = compare(&reading(t0, 0.0, 1.0, base), &r, &RULE);
    assert!(matches!(gap, Some(Gap::Behind(..))), "{gap:?}");
}

proptest! {
    /// A node clock that keeps time within the drift factor is never
    /// found ahead or behind, whatever the replies' delays and wherever
    /// within its request the node read its clock.
    #[test]
    fn clocks_within_the_drift_are_never_blamed(
        rate in 0.991f64..1.009,
        steps in prop::collection::vec((0.0f64..2_000.0, 0.0f64..300.0, 0.0f64..1.0), 1..40),
    ) {
        let (t0, watch) = (Instant::now(), ClockWatch::default());
        let (base, mut at) = (1_800_000_000_000.0, 0.0);
        let first = reading(t0, 0.0, 0.0, base);
        prop_assert_eq!(watch.observe("n", first, &RULE), Ok(()));
        for (gap, rtt, where_read) in steps {
            at += gap;
            let read_at = at + rtt * where_read;
            let r = reading(t0, at, rtt, base + read_at * rate);
            prop_assert!(compare(&first, &r, &RULE).is_none());
            prop_assert_eq!(watch.observe("n", r, &RULE), Ok(()));
        }
    }
}

/// Exhaustive over a grid of two readings (their round trips, where in
/// each the node read its clock, the time between them) and of what the
/// node's clock did between the reads (its rate, a jump): a clock within
/// the drift factor is never blamed, and a gain beyond the drift
/// allowance plus the two round trips is always caught. (Gains below that
/// bound can hide in slow replies: docs/algorithm.md, section 16.)
#[test]
fn caught_beyond_allowance_and_round_trips_never_blamed_within_drift() {
    let t0 = Instant::now();
    let ttl_ms = RULE.ttl.as_secs_f64() * 1e3;
    let f = RULE.drift_factor;
    let rtts = [0.0, 1.0, 5.0, 40.0, 100.0];
    let wheres = [0.0, 0.5, 1.0];
    let gaps = [0.0, 10.0, 300.0, 600.0, 2_000.0, 60_000.0];
    let rates = [1.0 - f, 0.995, 1.0, 1.005, 1.0 + f, 1.03, 2.0];
    let jumps = [-1_000.0, -20.0, 0.0, 8.0, 9.0, 20.0, 150.0, 1_000.0];
    let mut cases = 0;
    for (&d1, &w1, &gap, &d2, &w2) in iproduct(&rtts, &wheres, &gaps, &rtts, &wheres) {
        let (t1, s2) = (d1 * w1, d1 + gap);
        let t2 = s2 + d2 * w2;
        let real = t2 - t1;
        for (&rate, &jump) in rates.iter().flat_map(|r| jumps.iter().map(move |j| (r, j))) {
            cases += 1;
            let base = 1_800_000_000_000.0;
            let first = reading(t0, 0.0, d1, base + t1);
            let second = reading(t0, s2, d2, base + t1 + real * rate + jump);
            let gap_found = compare(&first, &second, &RULE);
            let gain = real * (rate - 1.0) + jump;
            let allowance = real.max(ttl_ms) * f + 2.0;
            if jump == 0.0 && (rate - 1.0).abs() <= f + 1e-9 {
                assert_eq!(gap_found, None, "blamed: {d1} {w1} {gap} {d2} {w2} {rate}");
            }
            // 1 µs of rounding in the readings.
            if gain > allowance + d1 + d2 + 0.002 {
                assert!(
                    matches!(gap_found, Some(Gap::Ahead(..))),
                    "missed a gain of {gain} ms: {d1} {w1} {gap} {d2} {w2} {rate} {jump}"
                );
            }
        }
    }
    assert_eq!(cases, 5 * 3 * 6 * 5 * 3 * 7 * 8);
}

/// The cartesian product of five slices.
fn iproduct<'a, A, B, C, D, E>(
    a: &'a [A],
    b: &'a [B],
    c: &'a [C],
    d: &'a [D],
    e: &'a [E],
) -> impl Iterator<Item = (&'a A, &'a B, &'a C, &'a D, &'a E)> {
    a.iter().flat_map(move |a| {
        b.iter().flat_map(move |b| {
            c.iter().flat_map(move |c| {
                d.iter()
                    .flat_map(move |d| e.iter().map(move |e| (a, b, c, d, e)))
            })
        })
    })
}
