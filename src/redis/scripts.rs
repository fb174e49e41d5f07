//! The Lua scripts that are the only code changing lock state on a node.
//!
//! Resource names reach Redis only as `KEYS[]` and `ARGV[]`, never spliced
//! into script text, so the scripts' hashes are fixed and EVALSHA always hits
//! after the first load.

use std::sync::LazyLock;

use redis::Script;

/// Takes a hold (first or nested) and, for a first hold, bumps the fence.
pub(crate) static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/acquire.lua")));

/// Resets the expiry of a lock through one of its holds.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/extend.lua")));

/// Removes one hold, and the lock with its last hold.
pub(crate) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release.lua")));

/// Raises a lagging fencing counter (the fencing rule's second step).
pub(crate) static RAISE_FENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/raise_fence.lua")));

/// The two keys of a resource: `<prefix>{<resource>}` (the lock hash) and
/// `<prefix>{<resource>}:fence` (the counter, which never expires). The hash
/// tag keeps both in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) lock: String,
    pub(crate) fence: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str, resource: &str) -> Self {
        let lock = format!("{prefix}{{{resource}}}");
        let fence = format!("{lock}:fence");
        Self { lock, fence }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag() {
        let keys = Keys::new("fencelock:", "billing");
        assert_eq!(keys.lock, "fencelock:{billing}");
        assert_eq!(keys.fence, "fencelock:{billing}:fence");
    }
}
