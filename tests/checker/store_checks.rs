//! The checks of the protected resource itself, once it is faulted too
//! (paused, slowed, silenced, cut, killed and restarted from its AOF): a
//! fenced operation may then end without an answer, its outcome unknown,
//! and the holder writes again with the same token and value while its
//! hold lasts (docs/fencing.md).
//!
//! One hold's write is one *logical write*, tried one or more times; each
//! try is a `Write` event of the history. A logical write is
//! *acknowledged* when a try was accepted, *unknown* when it was not but a
//! try ended without an answer (it may have been applied, then or later),
//! and *rejected* otherwise. The order checks on accepted operations are
//! `history.rs`'s; here:
//!
//! - **no acknowledged write lost**: after every step of the nemesis
//!   (after each restart of the store, in particular) and at the end, the
//!   state of every resource is read straight from the server. The last
//!   write it shows (write fence and value) is an acknowledged or unknown
//!   write, sent before the read ended, with a token at least that of
//!   every write acknowledged before the read began, and the value and
//!   the fence name the same write; the resource's fence (reads included)
//!   is at least every token acknowledged before the read began and was
//!   sent by an operation that may have been applied;
//! - **no fence from nowhere**: a rejected try names a highest token that
//!   an operation which may have been applied had sent before the
//!   rejection came back.
//!
//! `FencedStore` keeps the last value only, so these are the strongest
//! checks its state allows: an acknowledged write that a later one
//! overwrote leaves no trace to look for, and its loss would show as a
//! later write accepted below it (the order check) or as a fence that went
//! back (rejections naming a lower token than one acknowledged before).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::history::{Event, Nanos, Outcome, Role, Target, What};

/// The state of every resource, read between `at` and `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub at: Nanos,
    pub until: Nanos,
    /// By resource; `None`: never written nor read.
    pub states: BTreeMap<Target, Option<Stored>>,
}

/// What the store holds for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The resource's fence field: the highest token accepted, reads
    /// included.
    pub fence: u64,
    /// The last write (`None` when only fenced reads left a fence): its
    /// token (the write fence) and its value, `client:token:seq`.
    pub last: Option<(u64, String)>,
}

/// Logical writes, by how they ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Writes {
    pub acknowledged: usize,
    pub unknown: usize,
    pub rejected: usize,
    /// Logical writes tried more than once.
    pub retried: usize,
}

/// What the store checks found.
#[derive(Debug, Default)]
pub struct StoreReport {
    pub writes: Writes,
    /// Fenced reads that got no answer.
    pub reads_unknown: usize,
    /// Snapshots of the store checked, the final one included.
    pub snapshots: usize,
    pub violations: Vec<String>,
}

impl fmt::Display for StoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.writes;
        writeln!(
            f,
            "store writes:        {} acknowledged, {} unknown, {} rejected ({} retried); \
             {} fenced reads unknown; {} snapshots",
            w.acknowledged, w.unknown, w.rejected, w.retried, self.reads_unknown, self.snapshots
        )?;
        writeln!(f, "store violations:    {}", self.violations.len())?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

/// One hold's fenced operation, over all its tries.
#[derive(Debug, Default)]
struct Logical {
    tries: usize,
    /// When the first accepted try ended.
    acked_at: Option<Nanos>,
    failed: bool,
    /// The first try's start.
    start: Nanos,
    read: bool,
}

impl Logical {
    /// Whether the store may have applied it.
    fn may_be_applied(&self) -> bool {
        self.acked_at.is_some() || self.failed
    }

    /// Whether it was acknowledged before `at`.
    fn acked_before(&self, at: Nanos) -> bool {
        self.acked_at.is_some_and(|t| t < at)
    }
}

/// The resource of each fenced operation: permits write their slot's.
fn targets(events: &[Event]) -> HashMap<(&str, u64), u32> {
    let mut slots = HashMap::new();
    for event in events {
        if let What::Acquired {
            token,
            slot: Some(slot),
        } = event.what
        {
            slots.insert((event.client.as_str(), token), slot);
        }
    }
    slots
}

/// Runs the store checks over the history and the snapshots of the store.
pub fn check(events: &[Event], snapshots: &[Snapshot]) -> StoreReport {
    let slots = targets(events);
    let target_of = |event: &Event, token| match event.role {
        Role::Lock => Some(Target::Lock),
        Role::Read | Role::Write => Some(Target::ReadWrite),
        Role::Permit => slots
            .get(&(event.client.as_str(), token))
            .map(|s| Target::Slot(*s)),
    };
    let mut report = StoreReport::default();
    let mut ops: BTreeMap<(Target, &str, u64, bool), Logical> = BTreeMap::new();
    let mut rejections: Vec<(Target, u64, &Event)> = Vec::new();
    for event in events {
        let (token, outcome, read) = match event.what {
            What::Write { token, outcome } => (token, outcome, false),
            What::Read { token, outcome, .. } => (token, outcome, true),
            _ => continue,
        };
        let Some(target) = target_of(event, token) else {
            continue; // history.rs reports a token its client never got
        };
        let op = ops
            .entry((target, event.client.as_str(), token, read))
            .or_insert_with(|| Logical {
                start: event.start,
                read,
                ..Logical::default()
            });
        op.tries += 1;
        op.start = op.start.min(event.start);
        match outcome {
            Outcome::Accepted => {
                op.acked_at = Some(op.acked_at.map_or(event.end, |t| t.min(event.end)));
            }
            Outcome::Failed => op.failed = true,
            Outcome::Rejected(highest) => rejections.push((target, highest, event)),
        }
    }
    for op in ops.values() {
        if op.read {
            report.reads_unknown += usize::from(op.acked_at.is_none() && op.failed);
            continue;
        }
        let w = &mut report.writes;
        match (op.acked_at, op.failed) {
            (Some(_), _) => w.acknowledged += 1,
            (None, true) => w.unknown += 1,
            (None, false) => w.rejected += 1,
        }
        w.retried += usize::from(op.tries > 1);
    }

    // No fence from nowhere: a rejection names a token sent before it ended.
    for (target, highest, event) in rejections {
        let sent = ops.iter().any(|((t, _, token, _), op)| {
            *t == target && *token == highest && op.may_be_applied() && op.start < event.end
        });
        if !sent {
            report.violations.push(format!(
                "rejected by token {highest}, which no operation on {target:?} sent before: {event}"
            ));
        }
    }

    for snapshot in snapshots {
        for (target, stored) in &snapshot.states {
            report.check_state(*target, stored.as_ref(), snapshot, &ops);
        }
    }
    report.snapshots = snapshots.len();
    report
}

type Ops<'a> = BTreeMap<(Target, &'a str, u64, bool), Logical>;

impl StoreReport {
    /// One resource's state in a snapshot against every operation on it:
    /// what was acknowledged before the snapshot began must be there,
    /// and what is there must have been sent before it ended.
    fn check_state(&mut self, target: Target, last: Option<&Stored>, at: &Snapshot, ops: &Ops) {
        let on = |read: bool| {
            ops.iter()
                .filter(move |((t, _, _, r), op)| {
                    *t == target && (read || !*r) && op.start < at.until
                })
                .map(|((_, client, token, r), op)| (*client, *token, *r, op))
        };
        // The highest acknowledged write, and operation of any kind.
        let acked = |read| {
            on(read)
                .filter(|(_, _, _, op)| op.acked_before(at.at))
                .map(|(client, token, _, _)| (token, client))
                .max()
        };
        let (acked_write, acked_any) = (acked(false), acked(true));
        let when = format!("{target:?} read at {}..{}", at.at, at.until);
        let mut fail = |what: String| self.violations.push(format!("{when}: {what}"));
        let Some(last) = last else {
            if let Some((token, client)) = acked_any {
                fail(format!(
                    "nothing stored, yet {client}'s token {token} was acknowledged"
                ));
            }
            return;
        };
        if let Some((token, client)) = acked_any
            && last.fence < token
        {
            fail(format!(
                "fence {} below {client}'s acknowledged token {token}: a write was lost",
                last.fence
            ));
        }
        if !on(true).any(|(_, token, _, op)| token == last.fence && op.may_be_applied()) {
            fail(format!("fence {} set by no operation", last.fence));
        }
        let Some((token, value)) = &last.last else {
            if let Some((token, client)) = acked_write {
                fail(format!(
                    "no value stored, yet {client}'s write {token} was acknowledged"
                ));
            }
            return;
        };
        if let Some((acked, client)) = acked_write
            && *token < acked
        {
            fail(format!(
                "last write {token} ({value}) below {client}'s acknowledged write {acked}: \
                 a write was lost"
            ));
        }
        // The value is `client:token:seq`, and names its write.
        let mut parts = value.split(':');
        let (writer, written) = (parts.next(), parts.next().and_then(|t| t.parse().ok()));
        if written != Some(*token) {
            fail(format!(
                "value {value} stored under the write fence {token}"
            ));
        }
        let made = on(false).any(|(client, t, r, op)| {
            !r && Some(client) == writer && t == *token && op.may_be_applied()
        });
        if !made {
            fail(format!(
                "last value {value} is no write that may have been applied"
            ));
        }
    }
}

/// Reads the state of every resource the clients use straight from the
/// store's server at `url` (not through its proxy): one `HMGET` of the
/// hash's fields per resource (docs/fencing.md: `fence`, the highest
/// token accepted; `wfence`, the highest write token, absent on hashes
/// written before reads were fenced; `value`). Blocking: the nemesis
/// calls it between its steps.
pub fn snapshot(url: &str) -> Snapshot {
    use fencelock::FencedStore;
    use fencelock::deadpool_redis::redis;

    use crate::client::{PERMITS, RW_RESOURCE, STORE_RESOURCE, slot_resource};
    use crate::history::now;

    let bound = std::time::Duration::from_secs(5);
    let store = FencedStore::from_url(url).unwrap();
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(bound)
        .expect("connect to the store");
    conn.set_read_timeout(Some(bound)).unwrap();
    let mut resources = vec![
        (Target::Lock, STORE_RESOURCE.to_owned()),
        (Target::ReadWrite, RW_RESOURCE.to_owned()),
    ];
    resources.extend((0..PERMITS).map(|slot| (Target::Slot(slot), slot_resource(slot))));
    let at = now();
    let mut states = BTreeMap::new();
    for (target, resource) in resources {
        let (fence, wfence, value): (Option<u64>, Option<u64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(store.redis_key(&resource))
                .arg(&["fence", "wfence", "value"][..])
                .query(&mut conn)
                .expect("read the store");
        let stored = match fence {
            Some(fence) => Some(Stored {
                fence,
                last: value.map(|value| (wfence.unwrap_or(fence), value)),
            }),
            None => {
                assert!(value.is_none(), "{resource}: a value without a fence");
                None
            }
        };
        states.insert(target, stored);
    }
    Snapshot {
        at,
        until: now(),
        states,
    }
}

#[cfg(test)]
mod tests;
