//! The pure part of the fencing rule (docs/algorithm.md, section 8): the
//! candidate token from the grants, and when it is final. No I/O, so it is
//! unit-, property- and model-tested here and in `interleavings`.

/// A node's answer to a fence raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Raised {
    /// The node's counter after the raise.
    pub(crate) counter: u64,
    /// Whether the owner's lock is on the node.
    pub(crate) holds_lock: bool,
    /// Whether the node had no counter before (lost data, or new).
    pub(crate) was_missing: bool,
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
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        // The counter-example of docs/algorithm.md, section 8: A=10, B=5, C=5.
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
    }
}
