//! The pure part of Redlock: counting votes, the validity arithmetic and the
//! fencing rule. No I/O here, so all of it is unit- and property-tested.

use std::time::{Duration, Instant};

use super::node::Raised;
use crate::options::drift;

/// Until when a lock whose first request went out at `started` is certainly
/// held: `started + ttl - drift`. Measuring from the start (not from the
/// replies) charges the whole round trip against the lease.
pub(crate) fn valid_until(started: Instant, ttl: Duration, drift_factor: f64) -> Instant {
    started + ttl.saturating_sub(drift(ttl, drift_factor))
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

/// The first step of the fencing rule, from the values `granted` returned by
/// the granting nodes of a first acquire (non-empty): the candidate token
/// `T = max v`, and whether it is already final because a quorum returned
/// exactly `T`.
pub(crate) fn fence_candidate(granted: &[u64], quorum: usize) -> (u64, bool) {
    let target = granted.iter().copied().max().unwrap_or(0);
    let at_target = granted.iter().filter(|&&v| v == target).count();
    (target, at_target >= quorum)
}

/// The second step: `T` is final once a quorum of nodes that hold the
/// owner's lock have a counter of at least `T`, counting the grants that
/// returned `T` and the raise replies.
///
/// A raised node counts only while it holds the lock: a later acquire can be
/// granted there only after this lock is gone, so after the raise, and its
/// count on that node exceeds `T`. Elsewhere another acquire may have counted
/// past the node before the raise arrived, so its count says nothing.
pub(crate) fn fence_confirmed(
    target: u64,
    granted: &[u64],
    raised: &[Raised],
    quorum: usize,
) -> bool {
    let holding = granted.iter().filter(|&&v| v == target).count()
        + raised
            .iter()
            .filter(|r| r.holds_lock && r.counter >= target)
            .count();
    holding >= quorum
}

#[cfg(test)]
mod interleavings;

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

    /// A simulated cluster of fencing counters driven by the real rule.
    struct Model {
        counters: Vec<u64>,
        quorum: usize,
        raise_step: bool,
    }

    impl Model {
        /// One acquire: `grant` nodes INCR, `reach` nodes answer the raise.
        /// Returns the token if one is handed out.
        fn acquire(&mut self, grant: &[usize], reach: &[usize]) -> Option<u64> {
            let votes: Vec<u64> = grant
                .iter()
                .map(|&n| {
                    self.counters[n] += 1;
                    self.counters[n]
                })
                .collect();
            if votes.len() < self.quorum {
                return None;
            }
            let (target, fast) = fence_candidate(&votes, self.quorum);
            if fast || !self.raise_step {
                return Some(target);
            }
            let at_target: Vec<usize> = grant
                .iter()
                .zip(&votes)
                .filter(|&(_, &v)| v == target)
                .map(|(&n, _)| n)
                .collect();
            let raised: Vec<Raised> = reach
                .iter()
                .filter(|n| !at_target.contains(n))
                .map(|&n| {
                    self.counters[n] = self.counters[n].max(target);
                    Raised {
                        counter: self.counters[n],
                        holds_lock: grant.contains(&n),
                        was_missing: false,
                    }
                })
                .collect();
            fence_confirmed(target, &votes, &raised, self.quorum).then_some(target)
        }
    }

    #[test]
    fn incr_max_without_the_raise_step_goes_backwards() {
        // DESIGN.md's counter-example: A=10, B=5, C=5.
        let mut model = Model {
            counters: vec![10, 5, 5],
            quorum: 2,
            raise_step: false,
        };
        let first = model.acquire(&[0, 1], &[]).unwrap();
        let second = model.acquire(&[1, 2], &[]).unwrap();
        assert_eq!((first, second), (11, 7), "without raising, tokens go back");

        // The same schedule with the raise step: B is raised to 11 before 11
        // is handed out, so the next quorum {B, C} must go above it.
        let mut model = Model {
            counters: vec![10, 5, 5],
            quorum: 2,
            raise_step: true,
        };
        let first = model.acquire(&[0, 1], &[0, 1, 2]).unwrap();
        let second = model.acquire(&[1, 2], &[0, 1, 2]).unwrap();
        assert_eq!(first, 11);
        assert!(second > first, "{second} after {first}");
    }

    #[test]
    fn a_raise_that_reaches_too_few_nodes_hands_out_nothing() {
        let mut model = Model {
            counters: vec![10, 5, 5],
            quorum: 2,
            raise_step: true,
        };
        // Only node 0 (already at T) answers the raise: T is not final.
        assert_eq!(model.acquire(&[0, 1], &[0]), None);
    }

    /// Random subsets: a granting set of at least `quorum` nodes and any set
    /// of nodes reached by the raise.
    fn schedule(n: usize) -> impl Strategy<Value = Vec<(Vec<bool>, Vec<bool>)>> {
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(any::<bool>(), n),
            ),
            1..60,
        )
    }

    fn pick(mask: &[bool]) -> Vec<usize> {
        mask.iter()
            .enumerate()
            .filter(|&(_, &on)| on)
            .map(|(i, _)| i)
            .collect()
    }

    proptest! {
        #[test]
        fn handed_out_tokens_strictly_increase(
            n in 1usize..8,
            lag in proptest::collection::vec(0u64..50, 8),
            steps in schedule(8),
        ) {
            let quorum = n / 2 + 1;
            let mut model = Model {
                counters: lag[..n].to_vec(),
                quorum,
                raise_step: true,
            };
            let mut last: Option<u64> = None;
            for (grant, reach) in steps {
                let grant = pick(&grant[..n]);
                let reach = pick(&reach[..n]);
                if let Some(token) = model.acquire(&grant, &reach) {
                    if let Some(prev) = last {
                        prop_assert!(token > prev, "token {} after {} (counters {:?})", token, prev, model.counters);
                    }
                    last = Some(token);
                }
            }
        }

        #[test]
        fn fast_path_needs_a_quorum_at_the_max(values in proptest::collection::vec(1u64..20, 1..8)) {
            let quorum = values.len() / 2 + 1;
            let (target, fast) = fence_candidate(&values, quorum);
            prop_assert_eq!(target, *values.iter().max().unwrap());
            prop_assert_eq!(fast, values.iter().filter(|&&v| v == target).count() >= quorum);
        }

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
