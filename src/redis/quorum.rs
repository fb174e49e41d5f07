//! The pure part of Redlock's rounds: counting votes and the validity
//! arithmetic (the fencing rule's pure part is `fence::rule`). No I/O here,
//! so all of it is unit- and property-tested.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::options::drift;

/// Until when a lock whose first request went out at `started` is certainly
/// held: `started + ttl - drift`. Measuring from the start (not from the
/// replies) charges the whole round trip against the lease.
pub(crate) fn valid_until(started: Instant, ttl: Duration, drift_factor: f64) -> Instant {
    started + ttl.saturating_sub(drift(ttl, drift_factor))
}

/// The validity of a grant of `key` whose first request went out at
/// `started`: until [`valid_until`], or [`Error::ValidityExhausted`] when
/// that moment has passed already (the round took the whole ttl).
pub(crate) fn validity(
    key: &str,
    started: Instant,
    ttl: Duration,
    drift_factor: f64,
) -> Result<Instant> {
    let until = valid_until(started, ttl, drift_factor);
    if Instant::now() >= until {
        return Err(Error::ValidityExhausted {
            key: key.to_owned(),
            elapsed: started.elapsed(),
            ttl,
        });
    }
    Ok(until)
}

/// The verdict of one round of votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// At least a quorum said yes.
    Quorum,
    /// So many said no that a quorum was impossible even had every silent
    /// node said yes: the answer is a real no.
    Refused,
    /// Too few answered to know.
    Undecided,
}

/// Decides a round: `yes` nodes agreed, `no` nodes refused, the rest failed.
pub(crate) fn verdict(yes: usize, no: usize, nodes: usize, quorum: usize) -> Verdict {
    if yes >= quorum {
        Verdict::Quorum
    } else if no > nodes.saturating_sub(quorum) {
        Verdict::Refused
    } else {
        Verdict::Undecided
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn validity_takes_off_drift() {
        let start = Instant::now();
        let until = valid_until(start, Duration::from_secs(10), 0.01);
        assert_eq!(until - start, Duration::from_millis(10_000 - 100 - 2));
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(3, 0, 5, 3), Verdict::Quorum);
        assert_eq!(verdict(2, 3, 5, 3), Verdict::Refused);
        assert_eq!(verdict(2, 1, 5, 3), Verdict::Undecided);
        assert_eq!(verdict(2, 0, 5, 3), Verdict::Undecided);
        assert_eq!(verdict(0, 1, 1, 1), Verdict::Refused);
        assert_eq!(verdict(0, 0, 1, 1), Verdict::Undecided);
    }

    proptest! {
        /// `valid_until - started` is exactly `ttl - drift`, never more than
        /// the ttl less 2 ms, and the validity left after `elapsed`
        /// (`ttl - elapsed - drift`) only shrinks as `elapsed` grows.
        #[test]
        fn validity_is_ttl_less_drift_and_shrinks_with_elapsed(
            ttl_ms in 3u64..86_400_000,
            k in 0u32..32,
            e1 in 0u64..100_000,
            e2 in 0u64..100_000,
        ) {
            let factor = f64::from(k) / 64.0;
            let start = Instant::now();
            let ttl = Duration::from_millis(ttl_ms);
            let until = valid_until(start, ttl, factor);
            let drift_ns = u128::from(ttl_ms) * 1_000_000 * u128::from(k) / 64 + 2_000_000;
            let expected = (u128::from(ttl_ms) * 1_000_000).saturating_sub(drift_ns);
            prop_assert!((until - start).as_nanos().abs_diff(expected) <= 1);
            prop_assert!(until - start <= ttl - Duration::from_millis(2));
            let left = |elapsed: u64| until.saturating_duration_since(start + Duration::from_millis(elapsed));
            let (early, late) = (e1.min(e2), e1.max(e2));
            prop_assert!(left(early) >= left(late));
            prop_assert!(left(early) <= until - start);
        }

        /// Two sets of at least a majority of the same nodes always share a
        /// node, so two owners can never both reach a quorum.
        #[test]
        fn majorities_intersect(n in 1usize..=12, a in any::<u16>(), b in any::<u16>()) {
            let quorum = n / 2 + 1;
            let all = (1u32 << n) - 1;
            let (a, b) = (u32::from(a) & all, u32::from(b) & all);
            if a.count_ones() as usize >= quorum && b.count_ones() as usize >= quorum {
                prop_assert!(a & b != 0, "{:b} and {:b} of {} nodes", a, b, n);
            }
        }

        /// A verdict is Quorum exactly when `quorum` said yes, Refused
        /// exactly when the silent nodes could no longer make a quorum, and
        /// never changes once decided as more nodes answer.
        #[test]
        fn verdicts_match_their_definition(
            n in 1usize..=9,
            answers in proptest::collection::vec(0u8..3, 9),
        ) {
            let quorum = n / 2 + 1;
            let (mut yes, mut no) = (0, 0);
            let mut decided: Option<Verdict> = None;
            for &answer in &answers[..n] {
                match answer {
                    0 => yes += 1,
                    1 => no += 1,
                    _ => {} // failed: stays silent
                }
                let v = verdict(yes, no, n, quorum);
                let silent = n - yes - no;
                let expected = if yes >= quorum {
                    Verdict::Quorum
                } else if yes + silent < quorum {
                    Verdict::Refused
                } else {
                    Verdict::Undecided
                };
                prop_assert_eq!(v, expected);
                if let Some(before) = decided {
                    prop_assert_eq!(v, before, "a decided round changed its mind");
                }
                if v != Verdict::Undecided {
                    decided = Some(v);
                }
            }
        }

        #[test]
        fn validity_never_exceeds_ttl(ttl_ms in 1u64..100_000, factor in 0.0f64..0.5) {
            let start = Instant::now();
            let ttl = Duration::from_millis(ttl_ms);
            let until = valid_until(start, ttl, factor);
            prop_assert!(until - start <= ttl);
            prop_assert!(until - start <= ttl.saturating_sub(Duration::from_millis(2)));
        }
    }
}
