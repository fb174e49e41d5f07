//! Acquiring a hold: a first hold creates the owner's holder key, a nested
//! one adds its id to it.

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

use super::Etcd;
use super::admin::prefix_end;
use super::holder::{CAS_ROUNDS, Seen, Term, not_held, revision, token_at, token_of};
use super::keys::{Kind, LockKeys, decode_holds, encode_holds, reencode};
use super::lease::RevokeOnDrop;
use super::renew::Renewal;
use super::tickets::Registered;
use crate::backend::{Grant, Hold, Mode, Parent};
use crate::error::{Error, Result};
use crate::options::LockOptions;

impl Etcd {
    /// A first hold: the holder key, on a lease of its own, created only
    /// while no holder key exists and no other owner's waiter is queued
    /// ahead.
    pub(super) async fn acquire_first(&self, keys: &LockKeys, term: &Term<'_>) -> Result<Grant> {
        let timeout = term.timeout();
        let lease = self.grant_lease(term.lease_secs(), timeout).await?;
        // Revoking the lease deletes whatever was attached to it: every way
        // out below that is not a grant (an error, a refusal, the caller
        // dropping this future) undoes the attempt this way.
        let mut undo = RevokeOnDrop::new(self, lease.id(), timeout);
        let Some(created) = self.create_holder(keys, term, lease.id()).await? else {
            // A lease tells how long a holder has at most, but reading it
            // costs another round trip; waiters hear of releases and
            // expiries through the queue instead.
            return Err(Error::NotObtained {
                key: term.hold.key().to_owned(),
                expires_in: None,
            });
        };
        let valid_until = term.valid_until()?;
        undo.disarm();
        Ok(Grant::new(token_at(created), valid_until))
    }

    /// Creates the holder key of the hold's owner on `lease`, with the hold
    /// in it, when it is the owner's turn; the key's create revision, or
    /// `None` when the lock is held or other waiters go first.
    async fn create_holder(
        &self,
        keys: &LockKeys,
        term: &Term<'_>,
        lease: i64,
    ) -> Result<Option<i64>> {
        let hold = term.hold;
        let put = TxnOp::put(
            keys.holder(hold.owner()).as_str(),
            encode_holds(&[hold.id().to_owned()]),
            Some(PutOptions::new().with_lease(lease)),
        );
        let ticket = self.tickets.get(keys, hold.owner());
        let reply = self
            .txn(first_try(keys, ticket, put.clone()), term.timeout())
            .await?;
        if reply.succeeded() {
            return Ok(Some(revision(&reply)));
        }
        let mut ranges = ranges(reply).into_iter();
        let (oldest, other_kind) = (ranges.next(), ranges.next());
        // In use as a read-write lock or a semaphore: waiting will not
        // change that while it is held.
        if let Some(other) = other_kind.into_iter().flatten().next() {
            return Err(wrong_kind(keys, &other, hold));
        }
        // Held, or waiters queue. The owner may go first only when the
        // oldest ticket is its own: its place in the queue came first.
        // The ticket goes in the same transaction, so the next waiter
        // hears at once that it is first now.
        match oldest.into_iter().flatten().next() {
            Some(ticket) if ticket.value() == hold.owner().as_bytes() => {
                let second = with_oldest_ticket(keys, &ticket, put);
                let reply = self.txn(second, term.timeout()).await?;
                Ok(reply.succeeded().then(|| revision(&reply)))
            }
            _ => Ok(None),
        }
    }

    /// A nested hold: its id added to the holder key, which must still
    /// carry the parent hold (and the parent's token).
    ///
    /// The id goes in by a compare-and-swap on the key's mod revision. If
    /// this future is dropped (or a request times out) with the swap on
    /// its way, the undo (a release of the hold) may read the key before
    /// etcd applies the swap; the release then writes the key even though
    /// it finds no id, which makes the late swap's compare fail (see
    /// `take_out` in `release.rs`). So a swap lands before the undo's write or never, and
    /// one that landed is found and removed by the undo.
    pub(super) async fn acquire_nested(
        &self,
        keys: &LockKeys,
        term: &Term<'_>,
        parent: &Parent,
    ) -> Result<Grant> {
        let mut sent = false;
        let granted = self.add_nested(keys, term, parent, &mut sent).await;
        if granted.is_err() && sent {
            // Once the id may be in, every failure takes it out again, in
            // the background (the release is idempotent by id).
            self.undo_in_background(term.hold, term.options);
        }
        granted
    }

    /// The rounds of [`acquire_nested`](Self::acquire_nested); `sent` is
    /// set once a swap adding the id may have been applied.
    async fn add_nested(
        &self,
        keys: &LockKeys,
        term: &Term<'_>,
        parent: &Parent,
        sent: &mut bool,
    ) -> Result<Grant> {
        let (hold, timeout) = (term.hold, term.timeout());
        let mut dead_lease = None;
        for _ in 0..CAS_ROUNDS {
            let (holder, kv) = match self.fetch_holder(keys, hold, &parent.id, timeout).await? {
                Some((holder, kv)) if dead_lease != Some(kv.lease()) => (holder, kv),
                _ => return Err(not_held(hold)),
            };
            let mut holds = decode_holds(kv.value());
            if token_of(&kv) != parent.token || !holds.contains(&parent.id) {
                return Err(not_held(hold));
            }
            // A write nests only in a write: a parent that is (or has
            // become, by a downgrade) a read hold would be upgraded.
            if hold.mode() == Mode::Write && holder != keys.writer(hold.owner()) {
                return Err(Error::UpgradeRefused {
                    key: hold.key().to_owned(),
                });
            }
            let mut seen = Seen::of(&kv);
            if !holds.iter().any(|h| h == hold.id()) {
                check_reentrancy(hold, &holds, term.options)?;
                holds.push(hold.id().to_owned());
                *sent = true;
                let Some(mod_revision) = self.swap(&holder, &kv, &holds, timeout).await? else {
                    continue;
                };
                seen = Seen {
                    mod_revision,
                    value: reencode(kv.value(), &holds).into_bytes(),
                    ..seen
                };
            }
            match self.keep(term, &holder, &seen).await? {
                Renewal::Kept(valid_until) => {
                    return Ok(Grant::new(parent.token, valid_until));
                }
                Renewal::Changed => {}
                Renewal::LeaseGone => dead_lease = Some(seen.lease),
            }
        }
        Err(self.contended(hold.key()))
    }

    /// Releases `hold` in the background.
    fn undo_in_background(&self, hold: &Hold, options: &LockOptions) {
        let (this, hold, options) = (self.clone(), hold.clone(), options.clone());
        self.background.spawn(async move {
            match this.release_hold(&hold, &options).await {
                // Gone already: nothing was left to undo.
                Ok(()) | Err(Error::NotHeld { .. }) => {}
                Err(e) => tracing::warn!(
                    key = hold.key(),
                    error = %e,
                    "undo of a failed nested acquire failed"
                ),
            }
        });
    }
}

/// The first try at a first hold, putting the holder key with `put`. When
/// it fails, it reads the oldest ticket of the queue instead.
fn first_try(keys: &LockKeys, ticket: Option<Registered>, put: TxnOp) -> Txn {
    let (when, then) = match ticket {
        // This owner queues: its turn is when its ticket is the oldest
        // (a compare over a range holds only if it holds for every
        // key); the ticket goes with the grant.
        Some(ticket) => (
            vec![
                no_holder(keys),
                Compare::create_revision(ticket.key.as_str(), CompareOp::Equal, ticket.created),
                Compare::create_revision(keys.tickets(), CompareOp::Greater, ticket.created - 1)
                    .with_prefix(),
            ],
            vec![put, TxnOp::delete(ticket.key.as_str(), None)],
        ),
        // Nobody may queue: over an empty range a compare sees create
        // revision 0.
        None => (
            vec![
                no_holder(keys),
                Compare::create_revision(keys.tickets(), CompareOp::Equal, 0).with_prefix(),
            ],
            vec![put],
        ),
    };
    let oldest_ticket = TxnOp::get(
        keys.tickets(),
        Some(
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend)
                .with_limit(1),
        ),
    );
    // The holder keys of the other kinds: every `h…` key but `h/…`
    // ('0' follows '/').
    let other_kinds = TxnOp::get(
        format!("{}h0", keys.base),
        Some(
            GetOptions::new()
                .with_range(prefix_end(keys.all_holders().as_bytes()))
                .with_keys_only()
                .with_limit(1),
        ),
    );
    Txn::new()
        .when(when)
        .and_then(then)
        .or_else([oldest_ticket, other_kinds])
}

/// The second try at a first hold, when the oldest ticket, `ticket`, is the
/// owner's: the holder key put with `put` and the ticket used up, in one
/// transaction.
fn with_oldest_ticket(keys: &LockKeys, ticket: &KeyValue, put: TxnOp) -> Txn {
    let mine = Compare::create_revision(ticket.key(), CompareOp::Equal, ticket.create_revision());
    let used = TxnOp::delete(ticket.key(), None);
    Txn::new()
        .when([no_holder(keys), mine])
        .and_then([put, used])
}

/// The name is free: no holder key of any kind exists (an exclusive
/// lock, read or write holds, permits). So an exclusive lock is never
/// granted over another kind's holds; a refusal tells which it was (see
/// `create_holder`).
fn no_holder(keys: &LockKeys) -> Compare {
    Compare::create_revision(keys.all_holders(), CompareOp::Equal, 0).with_prefix()
}

/// An error when one more hold than `holds` would pass the reentrancy
/// limit.
fn check_reentrancy(hold: &Hold, holds: &[String], options: &LockOptions) -> Result<()> {
    if holds.len() >= options.max_reentrancy as usize {
        return Err(Error::ReentrancyLimit {
            key: hold.key().to_owned(),
            limit: options.max_reentrancy,
        });
    }
    Ok(())
}

/// The keys of each range answer of a transaction, in order.
pub(super) fn ranges(reply: TxnResponse) -> Vec<Vec<KeyValue>> {
    reply
        .op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(mut get) => Some(get.take_kvs()),
            _ => None,
        })
        .collect()
}

/// The refusal of `hold` on a name whose holder key `found` is of another
/// kind.
pub(super) fn wrong_kind(keys: &LockKeys, found: &KeyValue, hold: &Hold) -> Error {
    let tail = found.key().get(keys.base.len()..).unwrap_or_default();
    let in_use_as = Kind::of_tail(&String::from_utf8_lossy(tail))
        .map_or("unknown kind", |kind| kind.resource_kind());
    Error::WrongKind {
        key: hold.key().to_owned(),
        in_use_as: in_use_as.to_owned(),
        wanted: hold.mode().resource_kind(),
    }
}
