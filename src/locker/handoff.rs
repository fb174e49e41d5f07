//! A held lock in transit between tasks or processes.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::fencing::FencingToken;
use crate::options::validate_key;

const TAG: &str = "fencelock-handoff/1";

/// A held lock given up by one guard for another to
/// [`adopt`](crate::Locker::adopt), possibly in another process: the
/// resource, the owner, the hold on the nodes, and its fencing token.
///
/// Adopt it once successfully: a second guard for the same hold would
/// release the first one's lock. Its text form is one line; whoever has it can release and extend the
/// lock, so pass it like a secret (`Debug` hides the owner). Until it is
/// adopted nothing renews the lock: the adopter must take it within the ttl.
#[derive(Clone, PartialEq, Eq)]
pub struct Handoff {
    pub(crate) key: String,
    pub(crate) owner: String,
    pub(crate) hold_id: String,
    pub(crate) token: FencingToken,
}

impl Handoff {
    /// The resource name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fencing token the lock was granted with; the adopter keeps it.
    pub fn token(&self) -> FencingToken {
        self.token
    }
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("key", &self.key)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Handoff {
    /// `fencelock-handoff/1 <token> <hold id> <owner> <key>`: the key comes
    /// last because it alone may contain spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TAG} {} {} {} {}",
            self.token.get(),
            self.hold_id,
            self.owner,
            self.key
        )
    }
}

impl FromStr for Handoff {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::InvalidOptions(format!("not a fencelock handoff: {why}"));
        let mut parts = s.splitn(5, ' ');
        if parts.next() != Some(TAG) {
            return Err(bad("it must start with \"fencelock-handoff/1 \""));
        }
        let token = parts
            .next()
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|&t| t > 0)
            .ok_or_else(|| bad("the token is not a positive integer"))?;
        let hold_id = parts
            .next()
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad("the hold id is not hexadecimal"))?;
        // Owners are 128 random bits in hex, optionally with a task suffix.
        let owner = parts
            .next()
            .filter(|o| o.len() >= 32 && o.as_bytes()[..32].iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| bad("the owner is not a fencelock owner id"))?;
        let key = parts.next().ok_or_else(|| bad("the key is missing"))?;
        validate_key(key)?;
        Ok(Self {
            key: key.to_owned(),
            owner: owner.to_owned(),
            hold_id: hold_id.to_owned(),
            token: FencingToken::new(token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips_and_rejects_garbage() {
        let handoff = Handoff {
            key: "reports: eu {daily}".into(),
            owner: format!("{:032x}:task-7", u128::MAX - 1),
            hold_id: "1f".into(),
            token: FencingToken::new(42),
        };
        let text = handoff.to_string();
        assert_eq!(text.parse::<Handoff>().unwrap(), handoff);
        assert!(!format!("{handoff:?}").contains("task-7"));
        let owner = format!("{:032x}", 7u128);
        for bad in [
            String::new(),
            "fencelock-handoff/2 1 1f x k".into(),
            format!("fencelock-handoff/1 0 1f {owner} k"),
            format!("fencelock-handoff/1 x 1f {owner} k"),
            format!("fencelock-handoff/1 1 zz {owner} k"),
            "fencelock-handoff/1 1 1f short k".into(),
            format!("fencelock-handoff/1 1 1f {owner}"),
            format!("fencelock-handoff/1 1 1f {owner} "),
        ] {
            assert!(bad.parse::<Handoff>().is_err(), "{bad:?}");
        }
    }
}
