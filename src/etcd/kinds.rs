//! First holds of the kinds beside the exclusive lock: the read and write
//! holds of a read-write lock and the permits of a semaphore, and the
//! downgrade of a write hold.
//!
//! Their rules compare more than an exclusive lock's (which kinds hold,
//! which tickets queue ahead, which slots are free), so an attempt reads
//! the resource's keys at one revision, decides from them, and then
//! creates its holder key in a transaction that compares exactly what may
//! have changed since: that no holder key it would conflict with was made
//! meanwhile, and that its ticket, if it queues, is still there. What was
//! read that cannot change for the worse needs no compare: tickets only
//! ever join at the back of the queue, so none can appear ahead of a
//! ticket that was read. When the transaction fails, the attempt reads
//! again, for a few rounds.
//!
//! Readers and writers queue as in etcd's own read-write mutex recipe: a
//! reader goes when no write hold is live and no writer's ticket is ahead
//! of it, a writer when nothing is held and no ticket at all is ahead. A
//! writer's ticket thus keeps every later reader out (writer preference),
//! while readers that hold keep their holds. A permit goes when fewer
//! tickets are ahead of it than slots are free, and takes the free slot
//! at its place among them, so that waiters let in by one release do not
//! race for one slot.

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp};

use super::Etcd;
use super::acquire::wrong_kind;
use super::admin::prefix_end;
use super::holder::{CAS_ROUNDS, Term, not_held, revision, token_at, token_of};
use super::keys::{Kind, LockKeys, decode_holds, encode_holds};
use super::lease::RevokeOnDrop;
use super::tickets::Registered;
use crate::backend::{Grant, Hold, Mode};
use crate::error::{Error, Result};
use crate::options::LockOptions;

/// A resource's keys at one revision.
struct Snapshot {
    /// The holder keys and their kinds.
    holders: Vec<(Kind, KeyValue)>,
    /// The tickets: their full key, the part after `t/`, and their create
    /// revision.
    tickets: Vec<(Vec<u8>, String, i64)>,
}

/// What an attempt puts, under which compares.
struct Plan {
    compares: Vec<Compare>,
    /// The holder key to create.
    key: String,
    value: String,
    /// The slot, for a permit.
    slot: Option<u32>,
}

impl Etcd {
    /// A first read, write or permit hold (see the module docs).
    pub(super) async fn acquire_kind(&self, keys: &LockKeys, term: &Term<'_>) -> Result<Grant> {
        let (hold, timeout) = (term.hold, term.timeout());
        let ticket = self.tickets.get(keys, hold.owner());
        // Granted once, for all rounds; revoked on every way out but a
        // grant (a refusal, an error, this future dropped), which deletes
        // whatever a transaction put on it.
        let mut lease: Option<(i64, RevokeOnDrop)> = None;
        for _ in 0..CAS_ROUNDS {
            let snapshot = self.snapshot(keys, timeout).await?;
            let plan = plan(keys, hold, ticket.as_ref(), &snapshot)?;
            let lease_id = match &lease {
                Some((id, _)) => *id,
                None => {
                    let granted = self.grant_lease(term.lease_secs(), timeout).await?;
                    let undo = RevokeOnDrop::new(self, granted.id(), timeout);
                    lease.insert((granted.id(), undo)).0
                }
            };
            let mut then = vec![TxnOp::put(
                plan.key.as_str(),
                plan.value.as_str(),
                Some(PutOptions::new().with_lease(lease_id)),
            )];
            if let Some(ticket) = snapshot.own_ticket(ticket.as_ref()) {
                // The turn is used: the next waiter hears at once.
                then.push(TxnOp::delete(ticket.key.as_str(), None));
            }
            let reply = self
                .txn(Txn::new().when(plan.compares).and_then(then), timeout)
                .await?;
            if !reply.succeeded() {
                continue;
            }
            let valid_until = term.valid_until()?;
            if let Some((_, undo)) = &mut lease {
                undo.disarm();
            }
            let grant = Grant::new(token_at(revision(&reply)), valid_until);
            return Ok(match plan.slot {
                Some(slot) => grant.in_slot(slot),
                None => grant,
            });
        }
        // Others kept changing the resource under this attempt: taken as
        // busy, which a waiter outlasts.
        Err(busy(hold))
    }

    /// Every key of the resource (names only), at one revision.
    async fn snapshot(&self, keys: &LockKeys, timeout: std::time::Duration) -> Result<Snapshot> {
        let mut reply = self
            .call_again(timeout, || {
                let mut kv = self.client.kv_client();
                let options = GetOptions::new().with_prefix().with_keys_only();
                let base = keys.base.clone();
                async move { kv.get(base, Some(options)).await }
            })
            .await?;
        let mut snapshot = Snapshot {
            holders: Vec::new(),
            tickets: Vec::new(),
        };
        for kv in reply.take_kvs() {
            let tail = String::from_utf8_lossy(&kv.key()[keys.base.len().min(kv.key().len())..])
                .into_owned();
            if let Some(ticket) = tail.strip_prefix("t/") {
                let created = kv.create_revision();
                snapshot
                    .tickets
                    .push((kv.key().to_vec(), ticket.to_owned(), created));
            } else if let Some(kind) = Kind::of_tail(&tail) {
                snapshot.holders.push((kind, kv));
            }
        }
        Ok(snapshot)
    }

    /// Turns the root write hold `hold` into a read hold in one
    /// transaction: its `hw/` key is deleted and an `hr/` key put on the
    /// same lease, with the same ids and the token kept as a mark. Readers
    /// may then join; writers still find a holder and wait.
    ///
    /// Done already (the hold is in its owner's read key) counts as done,
    /// so a downgrade cut off after etcd applied it can be asked again.
    pub(super) async fn downgrade_hold(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        match hold.mode() {
            Mode::Write | Mode::Read => {}
            other => {
                return Err(Error::WrongKind {
                    key: hold.key().to_owned(),
                    in_use_as: other.resource_kind().to_owned(),
                    wanted: Mode::Write.resource_kind(),
                });
            }
        }
        if hold.parent().is_some() {
            return Err(Error::DowngradeRefused {
                key: hold.key().to_owned(),
                nested: 1,
            });
        }
        let keys = LockKeys::new(&options.key_prefix, hold.key());
        let (reader, writer) = (keys.reader(hold.owner()), keys.writer(hold.owner()));
        let timeout = options.node_timeout;
        for _ in 0..CAS_ROUNDS {
            let Some((key, kv)) = self.fetch_holder(&keys, hold, hold.id(), timeout).await? else {
                return Err(not_held(hold));
            };
            let holds = decode_holds(kv.value());
            if !holds.iter().any(|h| h == hold.id()) {
                return Err(not_held(hold));
            }
            if key == reader {
                return Ok(());
            }
            if holds.len() > 1 {
                return Err(Error::DowngradeRefused {
                    key: hold.key().to_owned(),
                    nested: holds.len() - 1,
                });
            }
            let value = format!("{}\n@{}", encode_holds(&holds), token_of(&kv).get());
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(writer.as_str(), CompareOp::Equal, kv.mod_revision()),
                    Compare::create_revision(reader.as_str(), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(
                        reader.as_str(),
                        value,
                        Some(PutOptions::new().with_lease(kv.lease())),
                    ),
                    TxnOp::delete(writer.as_str(), None),
                ]);
            if self.txn(txn, timeout).await?.succeeded() {
                return Ok(());
            }
        }
        Err(self.contended(hold.key()))
    }
}

impl Snapshot {
    /// The owner's registered ticket, if it is still in the queue.
    fn own_ticket<'a>(&self, ticket: Option<&'a Registered>) -> Option<&'a Registered> {
        ticket.filter(|t| {
            self.tickets
                .iter()
                .any(|(key, _, created)| *created == t.created && key == t.key.as_bytes())
        })
    }

    /// How many tickets passing `filter` are ahead of `mine` (all of them
    /// for an attempt that does not queue).
    fn ahead(&self, mine: Option<&Registered>, filter: impl Fn(&str) -> bool) -> usize {
        self.tickets
            .iter()
            .filter(|(_, tail, created)| mine.is_none_or(|m| *created < m.created) && filter(tail))
            .count()
    }
}

/// What an attempt of `hold` puts under which compares, or why it is
/// refused, from what `snapshot` shows.
fn plan(
    keys: &LockKeys,
    hold: &Hold,
    ticket: Option<&Registered>,
    snapshot: &Snapshot,
) -> Result<Plan> {
    for (kind, kv) in &snapshot.holders {
        match (kind, hold.mode()) {
            (Kind::Exclusive(_), _)
            | (Kind::Reader(_) | Kind::Writer(_), Mode::Permit { .. })
            | (Kind::Permit { .. }, Mode::Read | Mode::Write) => {
                return Err(wrong_kind(keys, kv, hold));
            }
            (
                Kind::Permit {
                    permits: theirs, ..
                },
                Mode::Permit { permits: ours },
            ) if theirs != &ours => {
                return Err(Error::PermitsMismatch {
                    key: hold.key().to_owned(),
                    ours,
                    theirs: *theirs,
                });
            }
            _ => {}
        }
    }
    let mine = snapshot.own_ticket(ticket);
    let none_under =
        |prefix: String| Compare::create_revision(prefix, CompareOp::Equal, 0).with_prefix();
    let mut compares = vec![none_under(keys.holders())];
    compares.push(match mine {
        // Still queued: nothing can have come ahead of it since.
        Some(t) => Compare::create_revision(t.key.as_str(), CompareOp::Equal, t.created),
        // Not queued: no waiter of the kinds that go first may have come.
        None => match hold.mode() {
            Mode::Read => none_under(keys.write_tickets()),
            _ => none_under(keys.tickets()),
        },
    });
    let (key, value, slot) = match hold.mode() {
        Mode::Read => {
            let reader = keys.reader(hold.owner());
            let writing = snapshot.holders.iter().any(|(kind, _)| match kind {
                Kind::Writer(_) => true,
                // A first hold is never granted over one of the same owner,
                // not even a stale one.
                Kind::Reader(owner) => owner == hold.owner(),
                _ => false,
            });
            if writing || snapshot.ahead(mine, |t| t.starts_with('w')) > 0 {
                return Err(busy(hold));
            }
            compares.push(none_under(keys.writers()));
            compares.push(none_under(keys.permits()));
            compares.push(Compare::create_revision(
                reader.as_str(),
                CompareOp::Equal,
                0,
            ));
            (reader, encode_holds(&[hold.id().to_owned()]), None)
        }
        Mode::Write => {
            if !snapshot.holders.is_empty() || snapshot.ahead(mine, |_| true) > 0 {
                return Err(busy(hold));
            }
            compares[0] = none_under(keys.all_holders());
            (
                keys.writer(hold.owner()),
                encode_holds(&[hold.id().to_owned()]),
                None,
            )
        }
        Mode::Permit { permits } => {
            let used: Vec<u32> = snapshot
                .holders
                .iter()
                .filter_map(|(kind, _)| match kind {
                    Kind::Permit { slot, .. } => Some(*slot),
                    _ => None,
                })
                .collect();
            let free: Vec<u32> = (0..permits).filter(|s| !used.contains(s)).collect();
            let ahead = snapshot.ahead(mine, |_| true);
            let Some(&slot) = free.get(ahead) else {
                return Err(busy(hold));
            };
            let ours = keys.permits_of(permits);
            let all = keys.permits();
            compares.push(none_under(keys.readers()));
            compares.push(none_under(keys.writers()));
            // No permit of another count: nothing under `hp/` outside
            // `hp/<permits>/`.
            compares.push(
                Compare::create_revision(all.as_str(), CompareOp::Equal, 0)
                    .with_range(ours.as_str()),
            );
            compares.push(
                Compare::create_revision(prefix_end(ours.as_bytes()), CompareOp::Equal, 0)
                    .with_range(prefix_end(all.as_bytes())),
            );
            let key = keys.permit(permits, slot);
            compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
            let value = format!("{}\n#{}", hold.id(), hold.owner());
            (key, value, Some(slot))
        }
        // Exclusive holds go through `acquire_first`; never sent here.
        Mode::Exclusive => {
            return Err(Error::Backend {
                message: "an exclusive hold sent to the other kinds' acquire".to_owned(),
                source: None,
            });
        }
    };
    Ok(Plan {
        compares,
        key,
        value,
        slot,
    })
}

/// The refusal of an attempt while others hold or go first.
fn busy(hold: &Hold) -> Error {
    Error::NotObtained {
        key: hold.key().to_owned(),
        expires_in: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two ranges that must be empty for a permit of 4 hold every
    /// other count's keys and none of its own.
    #[test]
    fn other_counts_fall_in_the_mismatch_ranges() {
        let keys = LockKeys::new("p:", "s");
        let (ours, all) = (keys.permits_of(4), keys.permits());
        let below = all.clone()..ours.clone();
        let end = String::from_utf8(prefix_end(ours.as_bytes())).unwrap();
        let above = end..String::from_utf8(prefix_end(all.as_bytes())).unwrap();
        let outside = |k: &str| below.contains(&k.to_owned()) || above.contains(&k.to_owned());
        for other in [1, 3, 5, 12, 40, 400, 1000] {
            assert!(outside(&keys.permit(other, 0)), "{other}");
        }
        for slot in [0, 3, 9, 10, 99] {
            assert!(!outside(&keys.permit(4, slot)), "{slot}");
        }
        assert!(!outside(&keys.reader("o")) && !outside(&keys.ticket("p1")));
    }

    /// The backend's own checks of a downgrade, below the front's: only a
    /// root write hold without nested holds, once done it stays done, and
    /// a renewal that still calls the hold a write finds it.
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn downgrades_are_checked_by_the_backend_too() {
        use crate::backend::{Backend, Parent};
        use std::time::Duration;
        let cluster = crate::testing::EtcdCluster::start(1).expect("an etcd member");
        let etcd = Etcd::connect(cluster.endpoints(), None).await.unwrap();
        let options = LockOptions::default().node_timeout(Duration::from_secs(2));
        let ttl = Duration::from_secs(10);
        let write = Hold::new("dg", "owner-a", "0a").with_mode(Mode::Write);
        let grant = etcd.try_acquire(&write, ttl, &options).await.unwrap();
        let nested = Hold::new("dg", "owner-a", "0b")
            .with_mode(Mode::Read)
            .nested_in(Parent {
                id: "0a".into(),
                token: grant.token,
            });
        assert_eq!(
            etcd.try_acquire(&nested, ttl, &options)
                .await
                .unwrap()
                .token,
            grant.token
        );
        let refused = etcd.downgrade(&write, &options).await;
        assert!(
            matches!(refused, Err(Error::DowngradeRefused { nested: 1, .. })),
            "{refused:?}"
        );
        assert!(matches!(
            etcd.downgrade(&nested, &options).await,
            Err(Error::DowngradeRefused { .. })
        ));
        let exclusive = Hold::new("dg", "owner-a", "0a");
        assert!(matches!(
            etcd.downgrade(&exclusive, &options).await,
            Err(Error::WrongKind { .. })
        ));
        let stranger = Hold::new("dg", "owner-b", "0c").with_mode(Mode::Write);
        assert!(matches!(
            etcd.downgrade(&stranger, &options).await,
            Err(Error::NotHeld { .. })
        ));
        etcd.release(&nested, &options).await.unwrap();
        etcd.downgrade(&write, &options).await.unwrap();
        etcd.downgrade(&write, &options).await.unwrap();
        etcd.extend(&write, ttl, &options).await.unwrap();
        let info = etcd.inspect("dg", &options).await.unwrap();
        assert_eq!(info.agreed.map(|h| h.token), Some(grant.token));
        let reader = Hold::new("dg", "owner-b", "0d").with_mode(Mode::Read);
        etcd.try_acquire(&reader, ttl, &options).await.unwrap();
        etcd.release(&write, &options).await.unwrap();
        etcd.release(&reader, &options).await.unwrap();
        assert!(matches!(
            etcd.release(&write, &options).await,
            Err(Error::NotHeld { .. })
        ));
        etcd.settled().await;
    }
}
