//! Which holds are live in this Locker: what decides whether an acquire
//! nests inside an earlier one of the same owner.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::{Hold, Parent};
use crate::fencing::FencingToken;

/// The holds this Locker (and its clones) currently has, by owner, key
/// prefix and resource: Lockers derived with `with_options` share the
/// registry, and the same resource name under another prefix is another
/// lock.
///
/// Whether an acquire is nested is decided here, not guessed on the nodes:
/// a lock of the same owner found on a node may be a stale leftover of a
/// release that missed that node, and treating it as an outer hold would
/// hand out an old token again.
#[derive(Debug, Default)]
pub(crate) struct LiveHolds {
    holds: Mutex<HashMap<Slot, Vec<Parent>>>,
}

/// Owner, key prefix, resource.
type Slot = (String, String, String);

fn slot(owner: &str, prefix: &str, key: &str) -> Slot {
    (owner.to_owned(), prefix.to_owned(), key.to_owned())
}

impl LiveHolds {
    /// The outermost live hold of `owner` on `key` under `prefix`, if any.
    pub(crate) fn parent(&self, owner: &str, prefix: &str, key: &str) -> Option<Parent> {
        let map = self.map();
        map.get(&slot(owner, prefix, key))
            .and_then(|holds| holds.first().cloned())
    }

    pub(crate) fn insert(&self, prefix: &str, hold: &Hold, token: FencingToken) {
        let parent = Parent {
            id: hold.id().to_owned(),
            token,
        };
        self.map()
            .entry(slot(hold.owner(), prefix, hold.key()))
            .or_default()
            .push(parent);
    }

    pub(crate) fn remove(&self, prefix: &str, hold: &Hold) {
        let mut map = self.map();
        let slot = slot(hold.owner(), prefix, hold.key());
        if let Some(holds) = map.get_mut(&slot) {
            holds.retain(|h| h.id != hold.id());
            if holds.is_empty() {
                map.remove(&slot);
            }
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Slot, Vec<Parent>>> {
        crate::sync::lock(&self.holds)
    }
}
