//! The quorum verdict: what a round of votes from the nodes decides. Every
//! backend counts its nodes' answers with it, and so does
//! [`Locker::is_locked`](crate::Locker::is_locked). Pure, so unit- and
//! property-tested.

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
    fn verdicts() {
        assert_eq!(verdict(3, 0, 5, 3), Verdict::Quorum);
        assert_eq!(verdict(2, 3, 5, 3), Verdict::Refused);
        assert_eq!(verdict(2, 1, 5, 3), Verdict::Undecided);
        assert_eq!(verdict(2, 0, 5, 3), Verdict::Undecided);
        assert_eq!(verdict(0, 1, 1, 1), Verdict::Refused);
        assert_eq!(verdict(0, 0, 1, 1), Verdict::Undecided);
    }

    proptest! {
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

    }
}
