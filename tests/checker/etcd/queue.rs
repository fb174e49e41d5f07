//! The fair queue's order, checked on etcd's own revision history of the
//! checker's three resources, read back after the run (the cluster keeps
//! every revision: the fixture does not compact).
//!
//! What the backend documents (src/etcd/queue.rs, docs/backends.md): a
//! waiter's place is its ticket `t/…`, ordered by create revision; a first
//! hold is granted, while anyone queues, only to the waiter whose turn it
//! is, and its ticket is deleted in the granting transaction. A ticket that
//! is gone (its lease ran out while its waiter was paused or cut off, or
//! the waiter gave up and revoked it) is no place any more: a waiter that
//! comes back takes a new ticket at the back of the queue. So the order is
//! owed to the tickets that are *live* at a grant, and the rule is stated on
//! them. For a grant at revision `T` (a holder key created at `T`), with
//! `L` the tickets of the resource live just before `T` (created before `T`,
//! not deleted before `T`):
//!
//! - at most one ticket is deleted at `T`, and if one is, its value (the
//!   waiting owner) is the owner of the new holder key: a grant uses no
//!   other waiter's place;
//! - the exclusive lock and a writer: the used ticket is the oldest of `L`
//!   (a writer counts every ticket ahead); with no ticket used, `L` is empty;
//! - a reader: no writer's ticket of `L` is older than the used ticket; with
//!   none used, `L` has no writer's ticket (readers wait only for writers);
//! - a permit: with no ticket used, `L` is empty. A permit that used its
//!   ticket went when fewer tickets were ahead of it than slots were free,
//!   as read at the attempt's snapshot, which the granting transaction does
//!   not compare as a whole; its place is not checked beyond its owner.
//!
//! In terms of waiters: among waiters of the lock that kept their ticket
//! until their grant, the grants (tokens) come in the order of the tickets,
//! and nobody is let in past a waiter that is still queued. The client
//! history is tied to the server's: every token a client recorded is the
//! revision at which a holder key of its kind (and, for a permit, of its
//! slot) was created.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fencelock::etcd_client::{Client, EventType, WatchOptions};

use crate::client::{RESOURCE, RW_LOCK, SEMAPHORE};
use crate::history::{Event, Role, What};

/// The key whose put ends the reading of the history: outside every
/// resource's range, under the watched prefix.
const END: &str = "fencelock:~checker-history-end";

/// One change of a key, as etcd recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    pub key: String,
    pub put: bool,
    /// The key's create revision (for a deletion: the deleted key's).
    pub created: i64,
    /// Its value (for a deletion: the deleted key's last).
    pub value: String,
}

/// Every change under `fencelock:` from revision 1 on, in revision order.
pub async fn read_history(endpoints: &[String]) -> Vec<Change> {
    let mut client = Client::connect(endpoints, None)
        .await
        .expect("connect to etcd");
    client.put(END, "", None).await.expect("put the end mark");
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(1)
        .with_prev_key();
    let mut stream = client
        .watch("fencelock:", Some(options))
        .await
        .expect("watch the history");
    let mut changes = Vec::new();
    let read = async {
        while let Some(message) = stream.message().await.expect("the history's watch") {
            for event in message.events() {
                let put = event.event_type() == EventType::Put;
                let kv = if put { event.kv() } else { event.prev_kv() };
                let (Some(kv), Some(now)) = (kv, event.kv()) else {
                    continue;
                };
                let key = String::from_utf8_lossy(now.key()).into_owned();
                if key == END {
                    return;
                }
                changes.push(Change {
                    revision: now.mod_revision(),
                    key,
                    put,
                    created: kv.create_revision(),
                    value: String::from_utf8_lossy(kv.value()).into_owned(),
                });
            }
        }
        panic!("the history's watch ended before its end mark");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("read etcd's history in time");
    changes
}

/// A first hold, as etcd recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    revision: i64,
    role: Role,
    owner: String,
    slot: Option<u32>,
}

/// A ticket of the queue.
#[derive(Debug, Clone)]
struct Ticket {
    key: String,
    created: i64,
    owner: String,
    writer: bool,
}

/// What the check of the history found.
#[derive(Debug, Default)]
pub struct QueueReport {
    /// First holds granted, by role.
    pub grants: BTreeMap<&'static str, usize>,
    /// Grants that used their waiter's ticket.
    pub through_queue: usize,
    /// Tickets taken, and those that left without a grant (the waiter gave
    /// up, or its lease ran out).
    pub tickets: usize,
    pub tickets_left: usize,
    /// The longest queue seen at a grant.
    pub longest: usize,
    pub violations: Vec<String>,
}

impl std::fmt::Display for QueueReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "etcd grants {:?}, {} through the queue; {} tickets, {} left without a grant; \
             at most {} queued at a grant; {} queue violations",
            self.grants,
            self.through_queue,
            self.tickets,
            self.tickets_left,
            self.longest,
            self.violations.len()
        )?;
        for v in &self.violations {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

/// The base of a resource's keys (the default key prefix, names the
/// checker uses need no escaping), and the role its holder key `tail`
/// names with its owner and slot.
fn resource_of(key: &str) -> Option<(&'static str, &str)> {
    [RESOURCE, RW_LOCK, SEMAPHORE].into_iter().find_map(|r| {
        let tail = key.strip_prefix("fencelock:")?.strip_prefix(r)?;
        Some((r, tail.strip_prefix('/')?))
    })
}

fn grant_of(change: &Change, tail: &str) -> Option<Grant> {
    let grant = |role, owner: &str, slot| Grant {
        revision: change.revision,
        role,
        owner: owner.to_owned(),
        slot,
    };
    if let Some(owner) = tail.strip_prefix("h/") {
        return Some(grant(Role::Lock, owner, None));
    }
    if let Some(owner) = tail.strip_prefix("hr/") {
        return Some(grant(Role::Read, owner, None));
    }
    if let Some(owner) = tail.strip_prefix("hw/") {
        return Some(grant(Role::Write, owner, None));
    }
    let (_, slot) = tail.strip_prefix("hp/")?.split_once('/')?;
    let owner = change.value.lines().find_map(|l| l.strip_prefix('#'))?;
    Some(grant(Role::Permit, owner, slot.parse().ok()))
}

/// Checks the queue rules (see the module docs) over `changes`, and that
/// each token of `events` is a grant etcd recorded.
pub fn check(changes: &[Change], events: &[Event]) -> QueueReport {
    let mut report = QueueReport::default();
    // Live tickets by resource, by create revision.
    let mut live: HashMap<&str, BTreeMap<i64, Ticket>> = HashMap::new();
    let mut granted: HashMap<(Role, i64), Grant> = HashMap::new();
    let mut i = 0;
    while i < changes.len() {
        let revision = changes[i].revision;
        let end = i + changes[i..]
            .iter()
            .take_while(|c| c.revision == revision)
            .count();
        let step = &changes[i..end];
        i = end;
        // Grants and used tickets of this revision, judged against the
        // tickets live before it.
        let mut grants = Vec::new();
        let mut gone: HashMap<&str, Vec<Ticket>> = HashMap::new();
        for change in step {
            let Some((resource, tail)) = resource_of(&change.key) else {
                continue;
            };
            let tickets = live.entry(resource).or_default();
            match (tail.strip_prefix("t/"), change.put) {
                (Some(kind), true) if change.created == revision => {
                    report.tickets += 1;
                    let ticket = Ticket {
                        key: change.key.clone(),
                        created: revision,
                        owner: change.value.clone(),
                        writer: kind.starts_with('w'),
                    };
                    tickets.insert(revision, ticket);
                }
                (Some(_), false) => {
                    if let Some(ticket) = tickets.remove(&change.created) {
                        gone.entry(resource).or_default().push(ticket);
                    }
                }
                (None, true) if change.created == revision => {
                    if let Some(grant) = grant_of(change, tail) {
                        grants.push((resource, grant));
                    }
                }
                _ => {}
            }
        }
        for (resource, grant) in grants {
            *report.grants.entry(grant.role.name()).or_default() += 1;
            let used = gone.remove(resource).unwrap_or_default();
            let mut before = live.get(resource).cloned().unwrap_or_default();
            for ticket in &used {
                before.insert(ticket.created, ticket.clone());
            }
            report.longest = report.longest.max(before.len());
            if let Some(why) = judge(&grant, &used, &before) {
                report.violations.push(format!(
                    "{} grant to {} at revision {revision}: {why}; queued then: {:?}",
                    grant.role.name(),
                    grant.owner,
                    before
                        .values()
                        .map(|t| (t.created, &t.owner))
                        .collect::<Vec<_>>()
                ));
            }
            report.through_queue += usize::from(!used.is_empty());
            granted.insert((grant.role, revision), grant);
        }
        report.tickets_left += gone.values().map(Vec::len).sum::<usize>();
    }
    for event in events {
        let What::Acquired { token, slot } = event.what else {
            continue;
        };
        let revision = i64::try_from(token).unwrap_or(i64::MAX);
        match granted.get(&(event.role, revision)) {
            Some(grant) if event.role != Role::Permit || grant.slot == slot => {}
            _ => report
                .violations
                .push(format!("a token etcd recorded no such grant at: {event}")),
        }
    }
    report
}

/// Why `grant` broke the queue's order, if it did: `used` are the tickets
/// deleted at its revision, `before` those live just before it.
fn judge(grant: &Grant, used: &[Ticket], before: &BTreeMap<i64, Ticket>) -> Option<String> {
    if used.len() > 1 {
        return Some(format!("{} tickets used by one grant", used.len()));
    }
    let counts = |t: &Ticket| grant.role != Role::Read || t.writer;
    match used.first() {
        Some(ticket) if ticket.owner != grant.owner => Some(format!(
            "used the ticket {} of {}",
            ticket.key, ticket.owner
        )),
        Some(_) if grant.role == Role::Permit => None,
        Some(ticket) => {
            before
                .range(..ticket.created)
                .find(|(_, t)| counts(t))
                .map(|(created, t)| {
                    format!(
                        "went with ticket {} while {} (created {created}) queued ahead",
                        ticket.created, t.key
                    )
                })
        }
        None => before
            .values()
            .find(|t| counts(t))
            .map(|t| format!("went without a ticket while {} queued", t.key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = "fencelock:checker/";
    const RW: &str = "fencelock:checker-rw/";

    fn put(revision: i64, key: &str, value: &str) -> Change {
        Change {
            revision,
            key: key.to_owned(),
            put: true,
            created: revision,
            value: value.to_owned(),
        }
    }

    fn delete(revision: i64, of: &Change) -> Change {
        Change {
            revision,
            put: false,
            ..of.clone()
        }
    }

    fn acquired(role: Role, token: u64) -> Event {
        Event {
            client: "c".to_owned(),
            role,
            start: 0,
            end: 1,
            what: What::Acquired { token, slot: None },
        }
    }

    /// Two waiters, `a` then `b`, queue behind a holder; the lock goes to
    /// `a` at revision 5 and to `b` at revision 7.
    fn in_order() -> Vec<Change> {
        let holder = put(1, &format!("{LOCK}h/x"), "1");
        let a = put(2, &format!("{LOCK}t/aa"), "a");
        let b = put(3, &format!("{LOCK}t/bb"), "b");
        let a_holds = put(5, &format!("{LOCK}h/a"), "2");
        vec![
            holder.clone(),
            a.clone(),
            b.clone(),
            delete(4, &holder),
            a_holds.clone(),
            delete(5, &a),
            delete(6, &a_holds),
            put(7, &format!("{LOCK}h/b"), "3"),
            delete(7, &b),
        ]
    }

    #[test]
    fn grants_in_ticket_order_pass() {
        let events = [acquired(Role::Lock, 5), acquired(Role::Lock, 7)];
        let report = check(&in_order(), &events);
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(report.through_queue, 2);
        assert_eq!(report.longest, 2);
    }

    #[test]
    fn a_later_ticket_granted_first_is_a_violation() {
        // `b` goes at revision 5 while `a`, older, still queues.
        let holder = put(1, &format!("{LOCK}h/x"), "1");
        let a = put(2, &format!("{LOCK}t/aa"), "a");
        let b = put(3, &format!("{LOCK}t/bb"), "b");
        let changes = [
            holder.clone(),
            a.clone(),
            b.clone(),
            delete(4, &holder),
            put(5, &format!("{LOCK}h/b"), "2"),
            delete(5, &b),
        ];
        let report = check(&changes, &[]);
        assert_eq!(report.violations.len(), 1, "{report}");
        assert!(report.violations[0].contains("queued ahead"), "{report}");
    }

    #[test]
    fn a_lost_ticket_loses_its_place() {
        // `a`'s ticket ran out (revision 4): `b` may go first.
        let a = put(2, &format!("{LOCK}t/aa"), "a");
        let b = put(3, &format!("{LOCK}t/bb"), "b");
        let changes = [
            a.clone(),
            b.clone(),
            delete(4, &a),
            put(5, &format!("{LOCK}h/b"), "2"),
            delete(5, &b),
        ];
        assert!(check(&changes, &[]).violations.is_empty());
    }

    #[test]
    fn a_grant_past_the_queue_or_with_anothers_ticket_is_a_violation() {
        let a = put(2, &format!("{LOCK}t/aa"), "a");
        let past = [a.clone(), put(3, &format!("{LOCK}h/z"), "1")];
        let report = check(&past, &[]);
        assert!(
            report.violations[0].contains("without a ticket"),
            "{report}"
        );
        let stolen = [a.clone(), put(3, &format!("{LOCK}h/z"), "1"), delete(3, &a)];
        let report = check(&stolen, &[]);
        assert!(report.violations[0].contains("used the ticket"), "{report}");
    }

    #[test]
    fn readers_pass_readers_but_not_writers() {
        let r = put(2, &format!("{RW}t/r01"), "r");
        let w = put(3, &format!("{RW}t/w02"), "w");
        // A reader without a ticket past a queued reader: allowed.
        let fine = [r.clone(), put(4, &format!("{RW}hr/s"), "1")];
        assert!(check(&fine, &[]).violations.is_empty());
        // A reader without a ticket past a queued writer: not allowed.
        let bad = [r.clone(), w.clone(), put(4, &format!("{RW}hr/s"), "1")];
        assert_eq!(check(&bad, &[]).violations.len(), 1);
        // A writer past a queued reader: not allowed.
        let bad = [
            r,
            w.clone(),
            put(4, &format!("{RW}hw/w"), "1"),
            delete(4, &w),
        ];
        assert_eq!(check(&bad, &[]).violations.len(), 1);
    }

    #[test]
    fn a_token_etcd_never_granted_is_a_violation() {
        let report = check(&in_order(), &[acquired(Role::Lock, 6)]);
        assert_eq!(report.violations.len(), 1, "{report}");
        // The right revision, the wrong kind.
        let report = check(&in_order(), &[acquired(Role::Write, 5)]);
        assert_eq!(report.violations.len(), 1, "{report}");
    }
}
