//! Who holds a lock: the identity that may re-enter, extend and release it.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// An explicit lock owner: 128 random bits, for locks that are handed over
/// between tasks or processes.
///
/// By default a lock belongs to the task that took it (see
/// [`Locker`](crate::Locker)). A Locker made with
/// [`with_owner`](crate::Locker::with_owner) takes every lock as this owner
/// instead, from whatever task: all tasks using it re-enter each other's
/// locks. Its text form ([`Display`](fmt::Display) / [`FromStr`]) carries it
/// to another process, which can then [`adopt`](crate::Locker::adopt) a
/// handed-over lock and nest inside it.
///
/// Whoever knows an owner id can release and extend its locks, so treat it
/// as a secret; `Debug` shows only its first digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// A new owner with 128 bits from the thread-local CSPRNG.
    pub fn random() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }

    /// The id as stored on the servers.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({}…)", &self.0[..8])
    }
}

impl FromStr for Owner {
    type Err = Error;

    /// Parses the text form of [`Owner::random`]: exactly 32 hex digits.
    /// Anything shorter could be guessed, so it is refused.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(Error::InvalidOptions(
                "an owner id is 32 hex digits (128 random bits), as Owner::random makes".into(),
            ))
        }
    }
}

/// The owner of an acquire made now: the explicit one if given; else the
/// Locker's random 128-bit instance id plus the current tokio task id, so
/// nested code in one task re-enters and two tasks (even of one Locker)
/// exclude each other. Outside a tokio task (e.g. the future passed to
/// `block_on`), the current thread stands in for the task.
pub(crate) fn current_owner(instance: u128, explicit: Option<&Owner>) -> String {
    if let Some(owner) = explicit {
        return owner.0.clone();
    }
    match tokio::task::try_id() {
        Some(task) => format!("{instance:032x}:task-{task}"),
        None => format!("{instance:032x}:{:?}", std::thread::current().id()),
    }
}

/// A fresh hold id: 128 random bits. A counter would do within one process,
/// but processes that share an explicit [`Owner`] (hand-over, `adopt`) would
/// then hand out the same ids, and two holds on one hash field would release
/// each other.
pub(crate) fn next_hold_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A new unguessable instance id.
pub(crate) fn new_instance_id() -> u128 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_holds_are_unique() {
        assert_ne!(new_instance_id(), new_instance_id());
        assert_ne!(next_hold_id(), next_hold_id());
        let id = next_hold_id();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }

    /// Every one of the 128 bits changes across 256 ids: a bit stuck by
    /// chance has odds of 2^-255, a counter or a fixed prefix shows at once.
    fn all_bits_vary(ids: impl IntoIterator<Item = u128>) -> bool {
        let (mut ones, mut zeros) = (0u128, 0u128);
        for id in ids {
            ones |= id;
            zeros |= !id;
        }
        ones == u128::MAX && zeros == u128::MAX
    }

    #[tokio::test]
    async fn ids_carry_128_random_bits() {
        let instances: Vec<u128> = (0..256).map(|_| new_instance_id()).collect();
        assert!(all_bits_vary(instances.iter().copied()));
        let holds = (0..256).map(|_| u128::from_str_radix(&next_hold_id(), 16).unwrap());
        assert!(all_bits_vary(holds));
        let owners = (0..256).map(|_| u128::from_str_radix(Owner::random().as_str(), 16).unwrap());
        assert!(all_bits_vary(owners));
        // The default owner carries its Locker's instance id in full.
        let owner = current_owner(instances[0], None);
        assert!(
            owner.starts_with(&format!("{:032x}:", instances[0])),
            "{owner}"
        );
        // The check itself fails on ids with a fixed part.
        assert!(!all_bits_vary(instances.iter().map(|id| id >> 1)));
        assert!(!all_bits_vary(0..256));
    }

    #[tokio::test]
    async fn tasks_are_distinct_owners() {
        let id = new_instance_id();
        let here = current_owner(id, None);
        assert_eq!(here, current_owner(id, None), "same task, same owner");
        let there = tokio::spawn(async move { current_owner(id, None) })
            .await
            .unwrap();
        assert_ne!(here, there);
        assert!(here.starts_with(&format!("{id:032x}:")));
    }

    #[tokio::test]
    async fn an_explicit_owner_is_the_same_in_every_task() {
        let owner = Owner::random();
        let here = current_owner(1, Some(&owner));
        let moved = owner.clone();
        let there = tokio::spawn(async move { current_owner(2, Some(&moved)) })
            .await
            .unwrap();
        assert_eq!(here, there);
        assert_eq!(here, owner.to_string());
    }

    #[test]
    fn owner_ids_round_trip_and_short_ones_are_refused() {
        let owner = Owner::random();
        assert_eq!(owner.to_string().parse::<Owner>().unwrap(), owner);
        assert_eq!(
            owner.to_string().to_uppercase().parse::<Owner>().unwrap(),
            owner
        );
        for bad in [
            "",
            "job-42",
            "0123456789abcdef",
            &"g".repeat(32),
            &"a".repeat(33),
        ] {
            assert!(
                matches!(bad.parse::<Owner>(), Err(Error::InvalidOptions(_))),
                "{bad:?}"
            );
        }
        assert!(!format!("{owner:?}").contains(&owner.to_string()));
        assert_ne!(Owner::random(), Owner::random());
    }
}
