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

/// A lock's name with a holder's fencing token: what a resource that can
/// ask the lock service, but cannot store a fence, is given with a request
/// and checks with [`Locker::check_current`](crate::Locker::check_current)
/// (Chubby's sequencer). Unlike a bare token, it says whose token it is:
/// tokens of two locks are unrelated numbers.
///
/// Its text form, for a header or a message, is `<token>@<name>`:
///
/// ```
/// use fencelock::{FencingToken, Sequencer};
///
/// let sequencer = Sequencer::new("billing", FencingToken::new(42));
/// assert_eq!(sequencer.to_string(), "42@billing");
/// assert_eq!("42@billing".parse::<Sequencer>().unwrap(), sequencer);
/// assert!("billing".parse::<Sequencer>().is_err());
/// assert!("+42@billing".parse::<Sequencer>().is_err());
/// assert!("042@billing".parse::<Sequencer>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sequencer {
    key: String,
    token: FencingToken,
}

impl Sequencer {
    /// The sequencer of the holder of `key` with `token`.
    pub fn new(key: impl Into<String>, token: FencingToken) -> Self {
        Self {
            key: key.into(),
            token,
        }
    }

    /// The lock's name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The holder's fencing token.
    pub fn token(&self) -> FencingToken {
        self.token
    }
}

impl fmt::Display for Sequencer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.token, self.key)
    }
}

impl std::str::FromStr for Sequencer {
    type Err = crate::Error;

    /// Parses `<token>@<name>`; the name may contain `@`, the token is the
    /// digits before the first one.
    fn from_str(text: &str) -> crate::Result<Self> {
        let bad = || {
            crate::Error::InvalidKey(format!(
                "{text:?} is not a sequencer: expected <token>@<lock name>"
            ))
        };
        let (token, key) = text.split_once('@').ok_or_else(bad)?;
        // Canonical digits only, as `Display` writes them: one sequencer,
        // one text (no sign, no leading zeros).
        let canonical = !token.is_empty()
            && token.bytes().all(|b| b.is_ascii_digit())
            && (token == "0" || !token.starts_with('0'));
        if !canonical {
            return Err(bad());
        }
        let token = token.parse::<u64>().map_err(|_| bad())?;
        crate::options::validate_key(key)?;
        Ok(Self::new(key, FencingToken::new(token)))
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
