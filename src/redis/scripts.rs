//! The Lua scripts that are the only code changing lock state on a node.
//!
//! Resource names reach Redis only as `KEYS[]` and `ARGV[]`, never spliced
//! into script text, so the scripts' hashes are fixed and EVALSHA always hits
//! after the first load.

use std::sync::LazyLock;

use redis::{Cmd, Script};

use crate::backend::{Hold, Mode};

/// Takes a hold (first or nested) and, for a first hold, bumps the fence.
/// Every script that grants a first hold starts with standing.lua: the
/// check of the node's marker (docs/algorithm.md, section 15).
const ACQUIRE_SOURCE: &str = concat!(
    include_str!("lua/standing.lua"),
    include_str!("lua/acquire.lua")
);
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_SOURCE));

/// Resets the expiry of a lock through one of its holds.
const EXTEND_SOURCE: &str = include_str!("lua/extend.lua");
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(EXTEND_SOURCE));

/// Resets the expiry of many holds' locks, of any kind, in one call.
const EXTEND_BATCH_SOURCE: &str = include_str!("lua/extend_batch.lua");
pub(crate) static EXTEND_BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(EXTEND_BATCH_SOURCE));

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

/// Takes a read or write hold of a read-write lock.
const RW_ACQUIRE_SOURCE: &str = concat!(
    include_str!("lua/standing.lua"),
    include_str!("lua/rw_acquire.lua")
);
pub(crate) static RW_ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(RW_ACQUIRE_SOURCE));

/// Lengthens a read or write hold's lease.
const RW_EXTEND_SOURCE: &str = include_str!("lua/rw_extend.lua");
pub(crate) static RW_EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(RW_EXTEND_SOURCE));

/// Removes a read or write hold.
const RW_RELEASE_SOURCE: &str = include_str!("lua/rw_release.lua");
pub(crate) static RW_RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RW_RELEASE_SOURCE));

/// Turns a write hold into a read hold.
const RW_DOWNGRADE_SOURCE: &str = include_str!("lua/rw_downgrade.lua");
pub(crate) static RW_DOWNGRADE: LazyLock<Script> =
    LazyLock::new(|| Script::new(RW_DOWNGRADE_SOURCE));

/// Takes one permit of a semaphore in the first free slot.
const SEM_ACQUIRE_SOURCE: &str = concat!(
    include_str!("lua/standing.lua"),
    include_str!("lua/sem_acquire.lua")
);
pub(crate) static SEM_ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(SEM_ACQUIRE_SOURCE));

/// Lengthens a permit's lease in its slot.
const SEM_EXTEND_SOURCE: &str = include_str!("lua/sem_extend.lua");
pub(crate) static SEM_EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(SEM_EXTEND_SOURCE));

/// Gives a permit back (from its slot, or from any).
const SEM_RELEASE_SOURCE: &str = include_str!("lua/sem_release.lua");
pub(crate) static SEM_RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(SEM_RELEASE_SOURCE));

/// Reads a fencing counter, if the node trusts it (a repair's read).
const FENCE_READ_SOURCE: &str = include_str!("lua/fence_read.lua");
pub(crate) static FENCE_READ: LazyLock<Script> = LazyLock::new(|| Script::new(FENCE_READ_SOURCE));

/// Writes a repaired fencing counter into a node that lost its data.
const FENCE_REPAIR_SOURCE: &str = include_str!("lua/fence_repair.lua");
pub(crate) static FENCE_REPAIR: LazyLock<Script> =
    LazyLock::new(|| Script::new(FENCE_REPAIR_SOURCE));

/// Ends the quarantine of a node of a new cluster.
const FENCE_TRUST_SOURCE: &str = include_str!("lua/fence_trust.lua");
pub(crate) static FENCE_TRUST: LazyLock<Script> = LazyLock::new(|| Script::new(FENCE_TRUST_SOURCE));

/// Every script's source, for loading them on a new connection.
pub(crate) const SOURCES: [&str; 17] = [
    ACQUIRE_SOURCE,
    EXTEND_SOURCE,
    EXTEND_BATCH_SOURCE,
    RELEASE_SOURCE,
    RAISE_FENCE_SOURCE,
    INSPECT_SOURCE,
    FORCE_RELEASE_SOURCE,
    RW_ACQUIRE_SOURCE,
    RW_EXTEND_SOURCE,
    RW_RELEASE_SOURCE,
    RW_DOWNGRADE_SOURCE,
    SEM_ACQUIRE_SOURCE,
    SEM_EXTEND_SOURCE,
    SEM_RELEASE_SOURCE,
    FENCE_READ_SOURCE,
    FENCE_REPAIR_SOURCE,
    FENCE_TRUST_SOURCE,
];

/// `EVALSHA` of `script` on `keys`; the caller adds the arguments. Built
/// once per request and sent to every node as is. (Every script is loaded
/// on each connection when it is made, and again on `NOSCRIPT`.)
fn evalsha<K: AsRef<str>>(script: &Script, keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(key.as_ref());
    }
    cmd
}

/// Takes `hold` for `lease_ms`, its ttl and the lock-delay (see
/// acquire.lua, rw_acquire.lua and sem_acquire.lua); a refused writer's
/// waiting mark lives `ttl_ms`, the ttl alone: it holds nothing. A
/// permit's request carries a fresh random order of the slots, the same
/// for every node it is sent to, and every first hold's request what a
/// node found without its marker is marked with (`marking`).
pub(crate) fn acquire(
    keys: &Keys,
    hold: &Hold,
    (lease_ms, ttl_ms): (u64, u64),
    max_holds: u32,
    marking: Marking,
) -> Cmd {
    let parent = hold.parent().map_or("", |p| p.id.as_str());
    match hold.mode() {
        Mode::Permit { permits } => {
            let slots = keys.slots(permits);
            let mut declared = vec![keys.lock.as_str(), keys.fence.as_str()];
            declared.extend(slots.iter().map(String::as_str));
            let marker = keys.node_marker();
            declared.push(&marker);
            let mut cmd = evalsha(&SEM_ACQUIRE, &declared);
            cmd.arg(hold.owner())
                .arg(hold.id())
                .arg(lease_ms)
                .arg(permits)
                .arg(slot_order(permits));
            marking.add_to(&mut cmd);
            cmd
        }
        Mode::Read | Mode::Write => {
            let mut cmd = evalsha(&RW_ACQUIRE, &[&keys.lock, &keys.fence, &keys.node_marker()]);
            cmd.arg(hold.owner())
                .arg(hold.id())
                .arg(lease_ms)
                .arg(max_holds)
                .arg(parent)
                .arg(rw_mode(hold.mode()))
                .arg(if hold.is_waiting() { "1" } else { "0" })
                .arg(ttl_ms);
            marking.add_to(&mut cmd);
            cmd
        }
        _ => {
            let mut cmd = evalsha(&ACQUIRE, &[&keys.lock, &keys.fence, &keys.node_marker()]);
            cmd.arg(hold.owner())
                .arg(hold.id())
                .arg(lease_ms)
                .arg(max_holds)
                .arg(parent);
            marking.add_to(&mut cmd);
            cmd
        }
    }
}

/// What a first acquire marks a node found without its marker with
/// (standing.lua): the quarantine it then waits out, and the new
/// incarnation's id, the same for every node of one request (so that the
/// request can tell it marked all of them: a new cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marking {
    pub(crate) quarantine_ms: u64,
    pub(crate) id: u64,
}

impl Marking {
    /// A fresh id: 48 random bits, not 0, so that Lua's numbers (doubles)
    /// return it exactly.
    pub(crate) fn new(quarantine_ms: u64) -> Self {
        let id = rand::random::<u64>() >> 16;
        Self {
            quarantine_ms,
            id: id.max(1),
        }
    }

    fn add_to(self, cmd: &mut Cmd) {
        cmd.arg(self.quarantine_ms).arg(self.id);
    }
}

/// `0..permits` shuffled, comma-separated: clients that start together
/// try different slots first, so that fewer of them split a quorum.
fn slot_order(permits: u32) -> String {
    let mut slots: Vec<u32> = (0..permits).collect();
    rand::seq::SliceRandom::shuffle(&mut slots[..], &mut rand::rng());
    let slots: Vec<String> = slots.iter().map(u32::to_string).collect();
    slots.join(",")
}

fn rw_mode(mode: Mode) -> &'static str {
    if mode == Mode::Write { "w" } else { "r" }
}

/// A permit whose slot is unknown has none to extend or keep: this slot
/// does not exist, so the node answers "not here".
const NO_SLOT: u32 = u32::MAX;

/// Lengthens the lock of `hold` to `lease_ms`, its ttl and the
/// lock-delay (see extend.lua, rw_extend.lua, sem_extend.lua).
pub(crate) fn extend(keys: &Keys, hold: &Hold, lease_ms: u64) -> Cmd {
    let mut cmd = match hold.mode() {
        Mode::Permit { .. } => {
            let slot = keys.slot(hold.slot().unwrap_or(NO_SLOT));
            evalsha(&SEM_EXTEND, &[&slot.lock, &keys.lock])
        }
        Mode::Read | Mode::Write => evalsha(&RW_EXTEND, &[&keys.lock]),
        _ => evalsha(&EXTEND, &[&keys.lock]),
    };
    cmd.arg(hold.owner()).arg(hold.id()).arg(lease_ms);
    if matches!(hold.mode(), Mode::Read | Mode::Write) {
        cmd.arg(rw_mode(hold.mode()));
    }
    cmd
}

/// The most keys one batched extend carries: the script runs atomically,
/// so a call must stay short enough not to hold a server up for long (a
/// few hundred microseconds at this size); more holds go as more calls.
pub(crate) const BATCH_KEYS: usize = 512;

/// The keys a hold's extend names: its lock hash, and for a permit its
/// slot's hash and then the semaphore's marker (the order extend_batch.lua
/// and sem_extend.lua read them in).
fn batch_keys(prefix: &str, hold: &Hold) -> (String, Option<String>) {
    let lock = Keys::lock_key(prefix, hold.key());
    match hold.mode() {
        Mode::Permit { .. } => {
            let slot = format!("{lock}:permit:{}", hold.slot().unwrap_or(NO_SLOT));
            (slot, Some(lock))
        }
        _ => (lock, None),
    }
}

/// Lengthens the locks of `holds`, each to its `lease_ms` (see
/// extend_batch.lua): one call per at most [`BATCH_KEYS`] keys, each with
/// the range of `holds` it carries.
pub(crate) fn extend_batch(
    prefix: &str,
    holds: &[(&Hold, u64)],
) -> Vec<(std::ops::Range<usize>, Cmd)> {
    let mut calls = Vec::new();
    let (mut keys, mut args) = (Vec::new(), Vec::new());
    let mut first = 0;
    for (i, &(hold, lease_ms)) in holds.iter().enumerate() {
        let (key, marker) = batch_keys(prefix, hold);
        if keys.len() + 1 + usize::from(marker.is_some()) > BATCH_KEYS {
            calls.push((first..i, batch_call(&keys, &args)));
            (keys, args, first) = (Vec::new(), Vec::new(), i);
        }
        keys.push(key);
        keys.extend(marker);
        let kind = match hold.mode() {
            Mode::Permit { .. } => "p",
            Mode::Read => "r",
            Mode::Write => "w",
            _ => "l",
        };
        args.push((kind, hold.owner(), hold.id(), lease_ms));
    }
    if !args.is_empty() {
        calls.push((first..holds.len(), batch_call(&keys, &args)));
    }
    calls
}

fn batch_call(keys: &[String], args: &[(&str, &str, &str, u64)]) -> Cmd {
    let mut cmd = evalsha(&EXTEND_BATCH, keys);
    for &(kind, owner, id, lease_ms) in args {
        cmd.arg(kind).arg(owner).arg(id).arg(lease_ms);
    }
    cmd
}

/// Removes `hold` (see release.lua, rw_release.lua, sem_release.lua);
/// `announce`: tell waiters when this frees the lock.
pub(crate) fn release(keys: &Keys, hold: &Hold, announce: bool) -> Cmd {
    let announce = if announce { "1" } else { "0" };
    match hold.mode() {
        // Every slot: nodes that answered late may have given the permit
        // another slot than the one it won, and that one goes too.
        Mode::Permit { permits } => sem_release(keys, hold, permits, -1, announce),
        Mode::Read | Mode::Write => {
            let mut cmd = evalsha(&RW_RELEASE, &[&keys.lock]);
            cmd.arg(hold.owner()).arg(hold.id()).arg(announce);
            cmd
        }
        _ => {
            let mut cmd = evalsha(&RELEASE, &[&keys.lock]);
            cmd.arg(hold.owner()).arg(hold.id()).arg(announce);
            cmd
        }
    }
}

/// Drops the slots other than `keep` that some nodes gave the permit
/// `hold` (see sem_release.lua); waiters hear of each slot freed.
pub(crate) fn trim(keys: &Keys, hold: &Hold, permits: u32, keep: u32) -> Cmd {
    sem_release(keys, hold, permits, i64::from(keep), "1")
}

fn sem_release(keys: &Keys, hold: &Hold, permits: u32, keep: i64, announce: &str) -> Cmd {
    let mut cmd = evalsha(&SEM_RELEASE, &keys.with_slots(permits));
    cmd.arg(hold.owner()).arg(hold.id()).arg(keep).arg(announce);
    cmd
}

/// Turns the write root `hold` into a read root (see rw_downgrade.lua).
pub(crate) fn downgrade(keys: &Keys, hold: &Hold) -> Cmd {
    let mut cmd = evalsha(&RW_DOWNGRADE, &[&keys.lock]);
    cmd.arg(hold.owner()).arg(hold.id());
    cmd
}

/// The two keys of a resource: `<prefix>{<resource>}` (the lock hash) and
/// `<prefix>{<resource>}:fence` (the counter, which never expires). The hash
/// tag keeps both in one slot. Beside them, the node's marker under the
/// prefix, `<prefix>node` (docs/algorithm.md, section 15): no braces, so no
/// resource's key is ever named so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) lock: String,
    pub(crate) fence: String,
    /// The prefix's length in `lock`: the marker's name is made only by
    /// the requests that use it, not by every release and extend.
    prefix_len: usize,
}

impl Keys {
    /// The lock hash's name alone.
    pub(crate) fn lock_key(prefix: &str, resource: &str) -> String {
        format!("{prefix}{{{resource}}}")
    }

    pub(crate) fn new(prefix: &str, resource: &str) -> Self {
        let lock = Self::lock_key(prefix, resource);
        let fence = format!("{lock}:fence");
        Self {
            lock,
            fence,
            prefix_len: prefix.len(),
        }
    }

    /// The node's marker, `<prefix>node`.
    pub(crate) fn node_marker(&self) -> String {
        format!("{}node", &self.lock[..self.prefix_len])
    }

    /// The names of a semaphore's `permits` slots, in order.
    pub(crate) fn slots(&self, permits: u32) -> Vec<String> {
        (0..permits).map(|i| self.slot(i).lock).collect()
    }

    /// The lock key (a semaphore's marker) followed by `permits` slots.
    pub(crate) fn with_slots(&self, permits: u32) -> Vec<String> {
        let mut keys = vec![self.lock.clone()];
        keys.extend(self.slots(permits));
        keys
    }

    /// The keys of a semaphore's slot: its own hash, and the semaphore's
    /// counter (shared by all slots, so that tokens order every permit).
    pub(crate) fn slot(&self, slot: u32) -> Keys {
        Keys {
            lock: format!("{}:permit:{slot}", self.lock),
            fence: self.fence.clone(),
            prefix_len: self.prefix_len,
        }
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
        assert_eq!(keys.node_marker(), "fencelock:node");
        assert_eq!(keys.slot(2).node_marker(), "fencelock:node");
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

    /// A batched extend fills each call up to the key cap exactly: a lock
    /// names one key, a permit two, and a permit never straddles calls.
    #[test]
    fn batched_extends_carry_up_to_the_key_cap() {
        let lock = |i: usize| Hold::new(format!("k{i}"), "o", "i");
        let permit = |i: usize| lock(i).with_mode(Mode::Permit { permits: 3 }).in_slot(1);
        let ranges = |holds: &[Hold]| {
            let holds: Vec<(&Hold, u64)> = holds.iter().map(|h| (h, 1000)).collect();
            let calls = extend_batch("p:", &holds);
            calls
                .into_iter()
                .map(|(range, _)| (range.start, range.end))
                .collect::<Vec<_>>()
        };
        let locks: Vec<Hold> = (0..2 * BATCH_KEYS + 1).map(lock).collect();
        assert_eq!(ranges(&locks[..BATCH_KEYS]), [(0, BATCH_KEYS)]);
        assert_eq!(
            ranges(&locks[..BATCH_KEYS + 1]),
            [(0, BATCH_KEYS), (BATCH_KEYS, BATCH_KEYS + 1)]
        );
        let permits: Vec<Hold> = (0..BATCH_KEYS / 2 + 1).map(permit).collect();
        let half = BATCH_KEYS / 2;
        assert_eq!(ranges(&permits[..half]), [(0, half)]);
        assert_eq!(ranges(&permits), [(0, half), (half, half + 1)]);
        // A lock then permits: the permit that would make 513 keys moves on.
        let mixed: Vec<Hold> = std::iter::once(lock(0))
            .chain((1..=half).map(permit))
            .collect();
        assert_eq!(ranges(&mixed), [(0, half), (half, half + 1)]);
        assert!(ranges(&[]).is_empty());
    }
}
