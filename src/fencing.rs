//! Fencing tokens: numbers that grow with every new holder of a lock.
//!
//! A lock alone cannot stop a holder that was paused (GC, swap, a stopped VM)
//! past its expiry from writing after someone else took over. The token can:
//! the protected resource remembers the highest token it has accepted and
//! rejects writes carrying a lower one. See `docs/algorithm.md` for why the
//! tokens stay monotonic across a changing quorum of Redis nodes, and
//! `docs/fencing.md` for the check on the resource's side: `FencedStore`
//! (feature `redis`) for state kept in Redis, and the same pattern in SQL.

use std::fmt;

/// A fencing token: strictly greater for every new (not re-entrant) holder of
/// the same resource, equal for nested acquisitions by the same holder.
///
/// Pass it along with every write to the protected resource and let the
/// resource reject any token lower than the highest it has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token value.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The raw value, for storing next to the protected data.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether a write carrying this token may be accepted by a resource whose
    /// highest accepted token is `highest_seen` (`None`: nothing accepted yet).
    pub fn admits_after(self, highest_seen: Option<FencingToken>) -> bool {
        highest_seen.is_none_or(|seen| self >= seen)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<FencingToken> for u64 {
    fn from(token: FencingToken) -> u64 {
        token.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_check_rejects_older_tokens() {
        let t5 = FencingToken::new(5);
        assert!(t5.admits_after(None));
        assert!(t5.admits_after(Some(FencingToken::new(5))));
        assert!(t5.admits_after(Some(FencingToken::new(4))));
        assert!(!t5.admits_after(Some(FencingToken::new(6))));
    }
}
