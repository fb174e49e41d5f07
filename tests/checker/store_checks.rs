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
//! - **no acknowledged write lost**: at the end, on every resource, the
//!   store's last write (its write fence and value) is an acknowledged or
//!   unknown write with a token at least that of every acknowledged write,
//!   and the value and the fence belong to the same write; the resource's
//!   fence (reads included) is at least every accepted operation's token
//!   and was set by an operation that may have been applied;
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

/// What the store holds for one resource at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Final {
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
    pub violations: Vec<String>,
}

impl fmt::Display for StoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.writes;
        writeln!(
            f,
            "store writes:        {} acknowledged, {} unknown, {} rejected ({} retried); \
             {} fenced reads unknown",
            w.acknowledged, w.unknown, w.rejected, w.retried, self.reads_unknown
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
    accepted: bool,
    failed: bool,
    /// The first try's start.
    start: Nanos,
    read: bool,
}

impl Logical {
    /// Whether the store may have applied it.
    fn may_be_applied(&self) -> bool {
        self.accepted || self.failed
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

/// Runs the store checks over the history and the store's final state,
/// by resource (`None`: the resource was never written nor read).
pub fn check(events: &[Event], finals: &BTreeMap<Target, Option<Final>>) -> StoreReport {
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
            Outcome::Accepted => op.accepted = true,
            Outcome::Failed => op.failed = true,
            Outcome::Rejected(highest) => rejections.push((target, highest, event)),
        }
    }
    for op in ops.values() {
        if op.read {
            report.reads_unknown += usize::from(!op.accepted && op.failed);
            continue;
        }
        let w = &mut report.writes;
        match (op.accepted, op.failed) {
            (true, _) => w.acknowledged += 1,
            (false, true) => w.unknown += 1,
            (false, false) => w.rejected += 1,
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

    for (target, last) in finals {
        report.check_final(*target, last.as_ref(), &ops);
    }
    report
}

type Ops<'a> = BTreeMap<(Target, &'a str, u64, bool), Logical>;

impl StoreReport {
    /// One resource's final state against every operation on it.
    fn check_final(&mut self, target: Target, last: Option<&Final>, ops: &Ops) {
        let on = |read: bool| {
            ops.iter()
                .filter(move |((t, _, _, r), _)| *t == target && (read || !*r))
                .map(|((_, client, token, r), op)| (*client, *token, *r, op))
        };
        // The highest acknowledged write, and operation of any kind.
        let acked = |read| {
            on(read)
                .filter(|(_, _, _, op)| op.accepted)
                .map(|(client, token, _, _)| (token, client))
                .max()
        };
        let (acked_write, acked_any) = (acked(false), acked(true));
        let mut fail = |what: String| self.violations.push(format!("{target:?}: {what}"));
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

/// The store's final state of every resource the clients use, read
/// straight from the server at `url` (not through its proxy).
pub async fn read_finals(url: &str) -> BTreeMap<Target, Option<Final>> {
    use fencelock::FencedStore;
    use fencelock::deadpool_redis::redis::{self, AsyncCommands};

    use crate::client::{PERMITS, RW_RESOURCE, STORE_RESOURCE, slot_resource};

    let store = FencedStore::from_url(url).unwrap();
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the store");
    let mut resources = vec![
        (Target::Lock, STORE_RESOURCE.to_owned()),
        (Target::ReadWrite, RW_RESOURCE.to_owned()),
    ];
    resources.extend((0..PERMITS).map(|slot| (Target::Slot(slot), slot_resource(slot))));
    let mut finals = BTreeMap::new();
    for (target, resource) in resources {
        let last = store.read(&resource).await.expect("read the store");
        let fence: Option<u64> = conn
            .hget(store.redis_key(&resource), "fence")
            .await
            .expect("read the store's fence");
        let last = last.map(|f| {
            (
                f.fence.get(),
                String::from_utf8_lossy(&f.value).into_owned(),
            )
        });
        let stored = match fence {
            Some(fence) => Some(Final { fence, last }),
            None => {
                assert!(last.is_none(), "{resource}: a value without a fence");
                None
            }
        };
        finals.insert(target, stored);
    }
    finals
}

#[cfg(test)]
mod tests {
    //! Made-up histories and final states that break each rule, and ones
    //! that keep them, with unknown outcomes.

    use super::*;

    fn ev(client: &str, start: Nanos, what: What) -> Event {
        let role = match what {
            What::Read { .. } => Role::Read,
            _ => Role::Lock,
        };
        Event {
            client: client.to_owned(),
            role,
            start,
            end: start + 1,
            what,
        }
    }

    fn write(client: &str, at: Nanos, token: u64, outcome: Outcome) -> Event {
        ev(client, at, What::Write { token, outcome })
    }

    fn last(token: u64, client: &str) -> Option<Final> {
        Some(Final {
            fence: token,
            last: Some((token, format!("{client}:{token}:1"))),
        })
    }

    fn check_lock(events: &[Event], stored: Option<Final>) -> StoreReport {
        check(events, &BTreeMap::from([(Target::Lock, stored)]))
    }

    #[test]
    fn the_last_acknowledged_write_passes() {
        let events = [
            write("a", 0, 1, Outcome::Accepted),
            write("b", 10, 2, Outcome::Failed),
            write("b", 12, 2, Outcome::Accepted),
            write("c", 20, 1, Outcome::Rejected(2)),
        ];
        let report = check_lock(&events, last(2, "b"));
        assert!(report.violations.is_empty(), "{report}");
        let w = report.writes;
        assert_eq!(
            (w.acknowledged, w.unknown, w.rejected, w.retried),
            (2, 0, 1, 1)
        );
    }

    #[test]
    fn an_unknown_write_may_be_the_last_or_not() {
        let events = [
            write("a", 0, 1, Outcome::Accepted),
            write("b", 10, 2, Outcome::Failed),
        ];
        for stored in [last(1, "a"), last(2, "b")] {
            let report = check_lock(&events, stored);
            assert!(report.violations.is_empty(), "{report}");
            assert_eq!(report.writes.unknown, 1);
        }
    }

    #[test]
    fn an_acknowledged_write_lost_is_a_violation() {
        let events = [
            write("a", 0, 1, Outcome::Accepted),
            write("b", 10, 2, Outcome::Accepted),
        ];
        // The store came back with a's write: b's is lost.
        let report = check_lock(&events, last(1, "a"));
        assert_eq!(report.violations.len(), 2, "{report}");
        // Or with nothing at all.
        let report = check_lock(&events, None);
        assert_eq!(report.violations.len(), 1, "{report}");
    }

    #[test]
    fn a_value_no_write_made_is_a_violation() {
        let events = [
            write("a", 0, 1, Outcome::Accepted),
            write("b", 10, 2, Outcome::Rejected(3)),
            write("c", 5, 3, Outcome::Accepted),
        ];
        // A rejected write's value, and one nobody wrote.
        for client in ["b", "z"] {
            let stored = Final {
                fence: 3,
                last: Some((3, format!("{client}:3:1"))),
            };
            let report = check_lock(&events, Some(stored));
            assert_eq!(report.violations.len(), 1, "{report}");
        }
        // A value that does not match its fence.
        let stored = Final {
            fence: 3,
            last: Some((3, "a:1:1".to_owned())),
        };
        assert_eq!(check_lock(&events, Some(stored)).violations.len(), 2);
    }

    #[test]
    fn a_fence_from_nowhere_is_a_violation() {
        // Rejected by a token nobody sent, or sent only after the rejection.
        let events = [
            write("a", 0, 1, Outcome::Accepted),
            write("b", 10, 1, Outcome::Rejected(7)),
            write("c", 20, 7, Outcome::Failed),
        ];
        let report = check_lock(&events, last(1, "a"));
        assert_eq!(report.violations.len(), 1, "{report}");
        // A final fence above every operation.
        let events = [write("a", 0, 1, Outcome::Accepted)];
        let stored = Final {
            fence: 9,
            last: Some((1, "a:1:1".to_owned())),
        };
        assert_eq!(check_lock(&events, Some(stored)).violations.len(), 1);
    }

    #[test]
    fn a_fence_below_an_acknowledged_read_is_a_violation() {
        let read = |token, outcome| What::Read {
            token,
            outcome,
            saw: None,
        };
        let mut events = vec![
            ev("r", 0, read(4, Outcome::Accepted)),
            ev("r", 5, read(6, Outcome::Failed)),
        ];
        events.push(Event {
            role: Role::Write,
            ..write("w", 2, 3, Outcome::Accepted)
        });
        let stored = |fence| {
            let last = Some((3, "w:3:1".to_owned()));
            BTreeMap::from([(Target::ReadWrite, Some(Final { fence, last }))])
        };
        for fence in [4, 6] {
            let report = check(&events, &stored(fence));
            assert!(report.violations.is_empty(), "{fence}: {report}");
        }
        assert_eq!(report_of(&events, stored(3)), 1);
        assert_eq!(check(&events, &stored(4)).reads_unknown, 1);

        fn report_of(events: &[Event], finals: BTreeMap<Target, Option<Final>>) -> usize {
            check(events, &finals).violations.len()
        }
    }
}
