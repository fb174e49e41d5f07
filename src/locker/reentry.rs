//! Which holds are live in this Locker: what decides whether an acquire
//! nests inside an earlier one of the same owner.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::{Hold, Mode, Parent};
use crate::error::{Error, Result};
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
    holds: Mutex<HashMap<Slot, Vec<Live>>>,
}

/// A live hold that later acquires of its owner may nest in: its id and
/// token, and what kind of hold it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) parent: Parent,
    pub(crate) mode: Mode,
}

impl Live {
    /// Whether an acquire of `wanted` may nest in this hold of `key`:
    /// an exclusive lock in an exclusive lock, a read in a read or a
    /// write, a write in a write. A write in a read would wait for itself.
    pub(crate) fn admits(&self, wanted: Mode, key: &str) -> Result<()> {
        match (self.mode, wanted) {
            (Mode::Exclusive, Mode::Exclusive)
            | (Mode::Read | Mode::Write, Mode::Read)
            | (Mode::Write, Mode::Write) => Ok(()),
            (Mode::Read, Mode::Write) => Err(Error::UpgradeRefused {
                key: key.to_owned(),
            }),
            (held, wanted) => Err(Error::WrongKind {
                key: key.to_owned(),
                in_use_as: held.resource_kind().to_owned(),
                wanted: wanted.resource_kind(),
            }),
        }
    }
}

/// Owner, key prefix, resource.
type Slot = (String, String, String);

fn slot(owner: &str, prefix: &str, key: &str) -> Slot {
    (owner.to_owned(), prefix.to_owned(), key.to_owned())
}

impl LiveHolds {
    /// The outermost live hold of `owner` on `key` under `prefix`, if any.
    pub(crate) fn parent(&self, owner: &str, prefix: &str, key: &str) -> Option<Live> {
        let map = self.map();
        map.get(&slot(owner, prefix, key))
            .and_then(|holds| holds.first().cloned())
    }

    /// How many holds of `hold`'s owner on its key are live besides it.
    pub(crate) fn others(&self, prefix: &str, hold: &Hold) -> usize {
        let map = self.map();
        map.get(&slot(hold.owner(), prefix, hold.key()))
            .map_or(0, |holds| {
                holds.iter().filter(|h| h.parent.id != hold.id()).count()
            })
    }

    /// Records `hold` as live. Permits are not: a semaphore's permits never
    /// nest, each acquire takes one more.
    pub(crate) fn insert(&self, prefix: &str, hold: &Hold, token: FencingToken) {
        if matches!(hold.mode(), Mode::Permit { .. }) {
            return;
        }
        let live = Live {
            parent: Parent {
                id: hold.id().to_owned(),
                token,
            },
            mode: hold.mode(),
        };
        self.map()
            .entry(slot(hold.owner(), prefix, hold.key()))
            .or_default()
            .push(live);
    }

    /// Records that the live `hold` is now of `mode` (a downgrade).
    pub(crate) fn set_mode(&self, prefix: &str, hold: &Hold, mode: Mode) {
        let mut map = self.map();
        if let Some(holds) = map.get_mut(&slot(hold.owner(), prefix, hold.key())) {
            for live in holds.iter_mut().filter(|h| h.parent.id == hold.id()) {
                live.mode = mode;
            }
        }
    }

    pub(crate) fn remove(&self, prefix: &str, hold: &Hold) {
        let mut map = self.map();
        let slot = slot(hold.owner(), prefix, hold.key());
        if let Some(holds) = map.get_mut(&slot) {
            holds.retain(|h| h.parent.id != hold.id());
            if holds.is_empty() {
                map.remove(&slot);
            }
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Slot, Vec<Live>>> {
        crate::sync::lock(&self.holds)
    }
}
