//! The Lua scripts that are the only code changing lock state on a node.
//!
//! Resource names reach Redis only as `KEYS[]` and `ARGV[]`, never spliced
//! into script text, so the scripts' hashes are fixed and EVALSHA always hits
//! after the first load.

use std::sync::LazyLock;

use redis::{Cmd, Script};

use crate::backend::Hold;

/// Takes a hold (first or nested) and, for a first hold, bumps the fence.
const ACQUIRE_SOURCE: &str = include_str!("lua/acquire.lua");
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_SOURCE));

/// Resets the expiry of a lock through one of its holds.
const EXTEND_SOURCE: &str = include_str!("lua/extend.lua");
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_SOURCE));

/// Removes one hold, and the lock with its last hold.
const RELEASE_SOURCE: &str = include_str!("lua/release.lua");
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_SOURCE));

/// Raises a lagging fencing counter (the fencing rule's second step).
const RAISE_FENCE_SOURCE: &str = include_str!("lua/raise_fence.lua");
pub(crate) static RAISE_FENCE: LazyLock<Script> = LazyLock::new(|| Script::new(RAISE_FENCE_SOURCE));

/// Reads a lock (introspection).
const INSPECT_SOURCE: &str = include_str!("lua/inspect.lua");
pub(crate) static INSPECT: LazyLock<Script> = LazyLock::new(|| Script::new(INSPECT_SOURCE));

/// Removes a lock with all its holds (admin).
const FORCE_RELEASE_SOURCE: &str = include_str!("lua/force_release.lua");
pub(crate) static FORCE_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(FORCE_RELEASE_SOURCE));

/// Every script's source, for loading them on a new connection.
pub(crate) const SOURCES: [&str; 6] = [
    ACQUIRE_SOURCE,
    EXTEND_SOURCE,
    RELEASE_SOURCE,
    RAISE_FENCE_SOURCE,
    INSPECT_SOURCE,
    FORCE_RELEASE_SOURCE,
];

/// `EVALSHA` of `script` on `keys`; the caller adds the arguments. Built
/// once per request and sent to every node as is. (Every script is loaded
/// on each connection when it is made, and again on `NOSCRIPT`.)
fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// Takes `hold` for `ttl_ms` (see acquire.lua).
pub(crate) fn acquire(keys: &Keys, hold: &Hold, ttl_ms: u64, max_holds: u32) -> Cmd {
    let mut cmd = evalsha(&ACQUIRE, &[&keys.lock, &keys.fence]);
    cmd.arg(hold.owner())
        .arg(hold.id())
        .arg(ttl_ms)
        .arg(max_holds)
        .arg(hold.parent().map_or("", |p| p.id.as_str()));
    cmd
}

/// Lengthens the lock of `hold` to `ttl_ms` (see extend.lua).
pub(crate) fn extend(keys: &Keys, hold: &Hold, ttl_ms: u64) -> Cmd {
    let mut cmd = evalsha(&EXTEND, &[&keys.lock]);
    cmd.arg(hold.owner()).arg(hold.id()).arg(ttl_ms);
    cmd
}

/// Removes `hold` (see release.lua); `announce`: tell waiters when this
/// frees the lock.
pub(crate) fn release(keys: &Keys, hold: &Hold, announce: bool) -> Cmd {
    let mut cmd = evalsha(&RELEASE, &[&keys.lock]);
    cmd.arg(hold.owner())
        .arg(hold.id())
        .arg(if announce { "1" } else { "0" });
    cmd
}

/// The two keys of a resource: `<prefix>{<resource>}` (the lock hash) and
/// `<prefix>{<resource>}:fence` (the counter, which never expires). The hash
/// tag keeps both in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) lock: String,
    pub(crate) fence: String,
}

impl Keys {
    /// The lock hash's name alone.
    pub(crate) fn lock_key(prefix: &str, resource: &str) -> String {
        format!("{prefix}{{{resource}}}")
    }

    pub(crate) fn new(prefix: &str, resource: &str) -> Self {
        let lock = Self::lock_key(prefix, resource);
        let fence = format!("{lock}:fence");
        Self { lock, fence }
    }
}

/// The SCAN pattern for the lock keys of resources starting with
/// `resource_prefix`: glob characters in either prefix are escaped, so a
/// name is matched literally.
pub(crate) fn scan_pattern(key_prefix: &str, resource_prefix: &str) -> String {
    let mut pattern = String::new();
    for c in key_prefix
        .chars()
        .chain(['{'])
        .chain(resource_prefix.chars())
    {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// The resource name of a lock key found by SCAN; `None` for fence counters
/// and anything else under the prefix.
pub(crate) fn resource_of<'k>(key_prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(key_prefix)?
        .strip_prefix('{')?
        .strip_suffix('}')
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

    #[test]
    fn scan_patterns_match_names_literally() {
        assert_eq!(scan_pattern("fencelock:", "job"), "fencelock:{job*");
        assert_eq!(scan_pattern("a*", "b?[c]"), "a\\*{b\\?\\[c\\]*");
        let keys = Keys::new("fencelock:", "x}y");
        assert_eq!(resource_of("fencelock:", &keys.lock), Some("x}y"));
        assert_eq!(resource_of("fencelock:", &keys.fence), None);
        assert_eq!(resource_of("fencelock:", "other:{x}"), None);
    }
}
