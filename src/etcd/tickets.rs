//! The tickets this client's waiters hold in etcd's fair queue
//! (`queue.rs`), kept in memory so that an attempt of the same owner can
//! claim its turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::keys::LockKeys;

/// The tickets this client's waiters hold, by resource and owner: what an
/// attempt of the owner compares against to claim its turn.
#[derive(Default)]
pub(crate) struct Tickets(Mutex<HashMap<(String, String), Registered>>);

/// A ticket as its attempt needs it.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub(crate) key: String,
    pub(crate) created: i64,
}

impl Tickets {
    /// The ticket `owner` holds for the lock of `keys`, if any.
    pub(crate) fn get(&self, keys: &LockKeys, owner: &str) -> Option<Registered> {
        let slot = (keys.base.clone(), owner.to_owned());
        crate::sync::lock(&self.0).get(&slot).cloned()
    }

    pub(super) fn register(
        self: &Arc<Self>,
        keys: &LockKeys,
        owner: &str,
        ticket: Registered,
    ) -> Entry {
        let slot = (keys.base.clone(), owner.to_owned());
        let key = ticket.key.clone();
        crate::sync::lock(&self.0).insert(slot.clone(), ticket);
        Entry {
            tickets: Arc::clone(self),
            slot,
            key,
        }
    }
}

/// A ticket's entry in [`Tickets`], removed when dropped.
pub(super) struct Entry {
    tickets: Arc<Tickets>,
    slot: (String, String),
    key: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut tickets = crate::sync::lock(&self.tickets.0);
        // Two waiters of one owner (an explicit one, shared by tasks) may
        // take turns in the slot: remove only this ticket.
        if tickets.get(&self.slot).is_some_and(|t| t.key == self.key) {
            tickets.remove(&self.slot);
        }
    }
}
