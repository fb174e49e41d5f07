//! A held lock in transit between tasks or processes: its text form, and
//! the Locker's adopt calls that take it over.

use std::fmt;
use std::str::FromStr;

use tracing::Instrument;

use super::guard::LockGuard;
use super::held::{Held, ReleaseOnDrop};
use super::{Locker, trace_acquired};
use crate::backend::{Backend, Hold, Mode};
use crate::error::{Error, Result};
use crate::fencing::FencingToken;
use crate::options::{MAX_PERMITS, validate_key};

/// The text form's first word. Version 1 carried exclusive locks only;
/// version 2 adds the kind, and version 1 text still parses (as a lock).
const TAG_V1: &str = "fencelock-handoff/1";
const TAG: &str = "fencelock-handoff/2";

/// A held lock given up by one guard for another to
/// [`adopt`](crate::Locker::adopt), possibly in another process: the
/// resource, the owner, the hold on the nodes, and its fencing token.
///
/// Adopt it once successfully: a second guard for the same hold would
/// release the first one's lock. Its text form is one line; whoever has it can release and extend the
/// lock, so pass it like a secret (`Debug` hides the owner). Until it is
/// adopted nothing renews the lock: the adopter must take it within the ttl.
/// One that nobody adopts is a holder that vanished: the servers keep the
/// name taken for the ttl and the
/// [`lock_delay`](crate::LockOptions#structfield.lock_delay).
#[derive(Clone, PartialEq, Eq)]
pub struct Handoff {
    pub(crate) key: String,
    pub(crate) owner: String,
    pub(crate) hold_id: String,
    pub(crate) token: FencingToken,
    pub(crate) mode: Mode,
    pub(crate) slot: Option<u32>,
}

impl Handoff {
    /// The resource name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What kind of hold it is: which adopt call takes it
    /// ([`Locker::adopt`](crate::Locker::adopt) for a lock,
    /// [`adopt_read`](crate::Locker::adopt_read),
    /// [`adopt_write`](crate::Locker::adopt_write),
    /// [`Semaphore::adopt`](crate::Semaphore::adopt)).
    pub fn mode(&self) -> Mode {
        self.mode
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

impl Handoff {
    /// The kind word of the text form: `lock`, `read`, `write` or
    /// `permit:<permits>:<slot>`.
    fn kind_word(&self) -> String {
        match (self.mode, self.slot) {
            (Mode::Permit { permits }, Some(slot)) => format!("permit:{permits}:{slot}"),
            (mode, _) => mode.name().to_owned(),
        }
    }

    /// The kind of hold a kind word names.
    fn parse_kind(word: &str) -> Option<(Mode, Option<u32>)> {
        match word {
            "lock" => Some((Mode::Exclusive, None)),
            "read" => Some((Mode::Read, None)),
            "write" => Some((Mode::Write, None)),
            _ => {
                let (permits, slot) = word.strip_prefix("permit:")?.split_once(':')?;
                let permits: u32 = permits.parse().ok()?;
                let slot: u32 = slot.parse().ok()?;
                (1..=MAX_PERMITS)
                    .contains(&permits)
                    .then_some(())
                    .filter(|()| slot < permits)?;
                Some((Mode::Permit { permits }, Some(slot)))
            }
        }
    }
}

impl fmt::Display for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TAG} {} {} {} {} {}",
            self.kind_word(),
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
        let (rest, (mode, slot)) =
            if let Some(rest) = s.strip_prefix(TAG).and_then(|r| r.strip_prefix(' ')) {
                let (kind, rest) = rest
                    .split_once(' ')
                    .ok_or_else(|| bad("the kind is missing"))?;
                let kind = Self::parse_kind(kind).ok_or_else(|| {
                    bad("the kind is not lock, read, write or permit:<permits>:<slot>")
                })?;
                (rest, kind)
            } else if let Some(rest) = s.strip_prefix(TAG_V1).and_then(|r| r.strip_prefix(' ')) {
                (rest, (Mode::Exclusive, None))
            } else {
                return Err(bad("it must start with \"fencelock-handoff/2 \""));
            };
        let mut parts = rest.splitn(4, ' ');
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
            mode,
            slot,
        })
    }
}

impl<B: Backend> Locker<B> {
    /// Takes over a lock another guard [handed off](LockGuard::hand_off),
    /// here or in another process: renews it for a ttl on a quorum and
    /// returns a guard (with a watchdog, as the options say) that keeps the
    /// hold's owner and fencing token. Acquires through this Locker (and its
    /// clones) nest inside it when it acts as the same owner (see
    /// [`with_owner`](Locker::with_owner)); a handoff of a default, task-bound
    /// owner can be adopted but not nested in.
    ///
    /// Fails with [`Error::NotHeld`] when the lock is gone (it expired before
    /// it was adopted). After a failure or a cancellation the lock is as it
    /// was, or renewed by one ttl if the renewal reached the nodes: adopt the
    /// same handoff again to take it. Adopt each handoff once successfully:
    /// two guards for one hold would release each other's lock.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense above: the lock is as it was, or renewed by one
    /// ttl; adopt the same handoff again to take it.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] when the lock is gone; [`Error::InvalidKey`],
    /// [`Error::QuorumUnavailable`] and [`Error::Lost`] (the renewal came too late)
    /// as for [`LockGuard::extend`].
    pub async fn adopt(&self, handoff: &Handoff) -> Result<LockGuard<B>> {
        let held = self.adopt_as(handoff, Mode::Exclusive, "adopt").await?;
        Ok(LockGuard::from_held(held))
    }

    /// Adopts `handoff`, which must be a hold of `wanted`'s kind (any
    /// permit count for a permit: the caller checks it), in a span named
    /// `call`.
    pub(crate) async fn adopt_as(
        &self,
        handoff: &Handoff,
        wanted: Mode,
        call: &'static str,
    ) -> Result<Held<B>> {
        let span = self.acquire_span(call, &handoff.key, handoff.mode);
        let result = self
            .adopt_hold(handoff, wanted)
            .instrument(span.clone())
            .await;
        trace_acquired(&span, result.as_ref().map(Held::token));
        result
    }

    /// What [`adopt_as`](Locker::adopt_as) does, in its span.
    async fn adopt_hold(&self, handoff: &Handoff, wanted: Mode) -> Result<Held<B>> {
        validate_key(&handoff.key)?;
        let same_kind = match (handoff.mode, wanted) {
            (Mode::Permit { .. }, Mode::Permit { .. }) => true,
            (mode, wanted) => mode == wanted,
        };
        if !same_kind {
            return Err(Error::WrongKind {
                key: handoff.key.clone(),
                in_use_as: handoff.mode.name().to_owned(),
                wanted: wanted.name(),
            });
        }
        let shared = &self.shared;
        let mut hold =
            Hold::new(&handoff.key, &handoff.owner, &handoff.hold_id).with_mode(handoff.mode);
        if let Some(slot) = handoff.slot {
            hold = hold.in_slot(slot);
        }
        let valid_until = shared
            .backend
            .extend(&hold, shared.options.ttl, &shared.options)
            .await?;
        let mut armed = ReleaseOnDrop::arm(shared, hold);
        armed.register(handoff.token);
        shared.telemetry.adopted();
        Ok(Held::new(armed, handoff.token, valid_until))
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
            mode: Mode::Exclusive,
            slot: None,
        };
        let text = handoff.to_string();
        assert_eq!(text.parse::<Handoff>().unwrap(), handoff);
        for (mode, slot) in [
            (Mode::Read, None),
            (Mode::Write, None),
            (Mode::Permit { permits: 4 }, Some(3)),
        ] {
            let other = Handoff {
                mode,
                slot,
                ..handoff.clone()
            };
            assert_eq!(other.to_string().parse::<Handoff>().unwrap(), other);
        }
        // Version 1 text (before kinds) is an exclusive lock.
        let v1 = text.replacen("fencelock-handoff/2 lock", "fencelock-handoff/1", 1);
        assert_eq!(v1.parse::<Handoff>().unwrap(), handoff);
        assert!(!format!("{handoff:?}").contains("task-7"));
        let owner = format!("{:032x}", 7u128);
        for bad in [
            String::new(),
            "fencelock-handoff/3 lock 1 1f x k".into(),
            format!("fencelock-handoff/2 1 1f {owner} k"),
            format!("fencelock-handoff/2 permit:4:4 1 1f {owner} k"),
            format!("fencelock-handoff/2 permit:0:0 1 1f {owner} k"),
            format!("fencelock-handoff/2 shared 1 1f {owner} k"),
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
