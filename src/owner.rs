//! Who holds a lock: the identity that may re-enter, extend and release it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::{Hold, Parent};

/// The default owner of an acquire made now: the Locker's random 128-bit
/// instance id plus the current tokio task id, so nested code in one task
/// re-enters and two tasks (even of one Locker) exclude each other. Outside
/// a tokio task (e.g. the future passed to `block_on`), the current thread
/// stands in for the task.
pub(crate) fn current_owner(instance: u128) -> String {
    match tokio::task::try_id() {
        Some(task) => format!("{instance:032x}:task-{task}"),
        None => format!("{instance:032x}:{:?}", std::thread::current().id()),
    }
}

/// A fresh hold id, unique within this process (and so among one owner's
/// holds, since owners carry the instance id).
pub(crate) fn next_hold_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A new unguessable instance id.
pub(crate) fn new_instance_id() -> u128 {
    rand::random()
}

/// The holds this Locker (and its clones) currently has, by owner and key.
///
/// Whether an acquire is nested is decided here, not guessed on the nodes:
/// a lock of the same owner found on a node may be a stale leftover of a
/// release that missed that node, and treating it as an outer hold would
/// hand out an old token again.
#[derive(Debug, Default)]
pub(crate) struct LiveHolds {
    by_owner_key: Mutex<HashMap<(String, String), Vec<Parent>>>,
}

impl LiveHolds {
    /// The outermost live hold of `owner` on `key`, if any.
    pub(crate) fn parent(&self, owner: &str, key: &str) -> Option<Parent> {
        let map = self.map();
        map.get(&(owner.to_owned(), key.to_owned()))
            .and_then(|holds| holds.first().cloned())
    }

    pub(crate) fn insert(&self, hold: &Hold, token: crate::FencingToken) {
        let parent = Parent {
            id: hold.id().to_owned(),
            token,
        };
        self.map()
            .entry((hold.owner().to_owned(), hold.key().to_owned()))
            .or_default()
            .push(parent);
    }

    pub(crate) fn remove(&self, hold: &Hold) {
        let mut map = self.map();
        let slot = (hold.owner().to_owned(), hold.key().to_owned());
        if let Some(holds) = map.get_mut(&slot) {
            holds.retain(|h| h.id != hold.id());
            if holds.is_empty() {
                map.remove(&slot);
            }
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<Parent>>> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.by_owner_key
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_and_holds_are_unique() {
        assert_ne!(new_instance_id(), new_instance_id());
        assert_ne!(next_hold_id(), next_hold_id());
    }

    #[tokio::test]
    async fn tasks_are_distinct_owners() {
        let id = new_instance_id();
        let here = current_owner(id);
        assert_eq!(here, current_owner(id), "same task, same owner");
        let there = tokio::spawn(async move { current_owner(id) })
            .await
            .unwrap();
        assert_ne!(here, there);
        assert!(here.starts_with(&format!("{id:032x}:")));
    }
}
