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
