//! The holder key of an owner: its value lists the owner's holds, its
//! create revision is their fencing token, and it changes only by
//! compare-and-swap on its mod revision. What the acquire, renewal and
//! release of a hold share.

use std::time::{Duration, Instant};

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

use super::Etcd;
use super::keys::{LockKeys, decode_holds, kept_token, reencode};
use super::lease::lease_secs;
use crate::backend::validity;
use crate::backend::{Hold, Mode};
use crate::error::{Error, Result};
use crate::fencing::FencingToken;
use crate::options::LockOptions;

/// How often a read-modify-write of a holder key is tried when it keeps
/// changing underneath. Only tasks of the same owner change it, so more than
/// a few rounds mean something is wrong rather than busy.
pub(super) const CAS_ROUNDS: usize = 8;

/// A hold being granted or renewed: for how long, under which options,
/// from when.
#[derive(Clone, Copy)]
pub(super) struct Term<'a> {
    /// The hold. Errors name its resource, never the holder key, whose name
    /// contains the owner id (a secret: whoever knows it can extend and
    /// release the owner's locks).
    pub(super) hold: &'a Hold,
    pub(super) ttl: Duration,
    pub(super) options: &'a LockOptions,
    /// When the request began: the lease it refreshes or grants was asked
    /// for after this.
    pub(super) started: Instant,
}

impl Term<'_> {
    /// The bound of every request made for this hold.
    pub(super) fn timeout(&self) -> Duration {
        self.options.node_timeout
    }

    /// The lease the holder key sits on, in whole seconds: the ttl and the
    /// lock-delay (`LockOptions::lock_delay`), so that a holder that
    /// vanishes keeps the name taken for the delay after its validity
    /// (from the ttl alone, [`valid_until`](Self::valid_until)) ended. A
    /// release revokes it at once.
    pub(super) fn lease_secs(&self) -> i64 {
        lease_secs(self.ttl.saturating_add(self.options.lock_delay))
    }

    /// Until when the hold is certainly ours: the lease was refreshed after
    /// `started` for at least `ttl`, less the clock-drift allowance. An
    /// error when that moment has passed already.
    pub(super) fn valid_until(&self) -> Result<Instant> {
        validity(
            self.hold.key(),
            self.started,
            self.ttl,
            self.options.drift_factor,
        )
    }
}

/// What a renewal needs of a holder key as last seen.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) lease: i64,
    pub(super) mod_revision: i64,
    pub(super) value: Vec<u8>,
}

impl Seen {
    pub(super) fn of(kv: &KeyValue) -> Self {
        Self {
            lease: kv.lease(),
            mod_revision: kv.mod_revision(),
            value: kv.value().to_vec(),
        }
    }
}

impl Etcd {
    /// Writes `holds` into the holder key if it is still as `seen`
    /// (keeping its lease and its marks); the key's new mod revision, or
    /// `None` when it changed.
    pub(super) async fn swap(
        &self,
        holder: &str,
        seen: &KeyValue,
        holds: &[String],
        timeout: Duration,
    ) -> Result<Option<i64>> {
        let same = Compare::mod_revision(holder, CompareOp::Equal, seen.mod_revision());
        let put = TxnOp::put(
            holder,
            reencode(seen.value(), holds),
            Some(PutOptions::new().with_ignore_lease()),
        );
        let reply = self
            .txn(Txn::new().when([same]).and_then([put]), timeout)
            .await?;
        if !reply.succeeded() {
            return Ok(None);
        }
        Ok(Some(revision(&reply)))
    }

    /// Deletes the holder key if it is still as `seen`; whether it did.
    pub(super) async fn delete_unchanged(
        &self,
        holder: &str,
        seen: &KeyValue,
        timeout: Duration,
    ) -> Result<bool> {
        let same = Compare::mod_revision(holder, CompareOp::Equal, seen.mod_revision());
        let delete = TxnOp::delete(holder, None);
        let reply = self
            .txn(Txn::new().when([same]).and_then([delete]), timeout)
            .await?;
        Ok(reply.succeeded())
    }

    /// The error when the holder key of `key` kept changing for
    /// [`CAS_ROUNDS`].
    pub(super) fn contended(&self, key: &str) -> Error {
        Error::Backend {
            message: format!(
                "the holder key of {key:?} changed {CAS_ROUNDS} times in a row under one request"
            ),
            source: None,
        }
    }
}

impl Etcd {
    /// The holder key that carries `id` (a hold's own id, or a nested
    /// hold's parent's), with its name, as read now.
    ///
    /// An exclusive hold's key is its owner's `h/` key. A permit's is its
    /// slot's key; without a slot (the undo of an acquire whose grant never
    /// came back) the permit keys of its count are searched for the id. A
    /// read or write hold's id may be in either of its owner's `hr/` and
    /// `hw/` keys: a nested read sits in a write key, and a downgrade moves
    /// the write key to the read key, also under a renewal or release that
    /// still calls the hold a write. Both are read at one revision; when
    /// neither has `id`, the one with the hold's root (where an undone
    /// nested hold would have gone) or else the one its mode names is
    /// returned, so that a release can write it (see `take_out`).
    pub(super) async fn fetch_holder(
        &self,
        keys: &LockKeys,
        hold: &Hold,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<(String, KeyValue)>> {
        let found = |key: String, kv: Option<KeyValue>| kv.map(|kv| (key, kv));
        match hold.mode() {
            Mode::Exclusive => {
                let key = keys.holder(hold.owner());
                Ok(found(key.clone(), self.get(&key, timeout).await?))
            }
            Mode::Permit { permits } => match hold.slot() {
                Some(slot) => {
                    let key = keys.permit(permits, slot);
                    Ok(found(key.clone(), self.get(&key, timeout).await?))
                }
                None => {
                    let all = self.get_prefix(&keys.permits_of(permits), timeout).await?;
                    Ok(all
                        .into_iter()
                        .find(|kv| decode_holds(kv.value()).iter().any(|h| h == id))
                        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv)))
                }
            },
            Mode::Read | Mode::Write => {
                let (reader, writer) = (keys.reader(hold.owner()), keys.writer(hold.owner()));
                let read = Txn::new().and_then([
                    TxnOp::get(reader.as_str(), None),
                    TxnOp::get(writer.as_str(), None),
                ]);
                let reply = self.txn(read, timeout).await?;
                let mut got = reply.op_responses().into_iter().map(|r| match r {
                    TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
                    _ => None,
                });
                let candidates = [
                    (reader, got.next().flatten()),
                    (writer, got.next().flatten()),
                ];
                let has = |kv: &Option<KeyValue>, id: &str| {
                    kv.as_ref()
                        .is_some_and(|kv| decode_holds(kv.value()).iter().any(|h| h == id))
                };
                let natural = usize::from(hold.mode() == Mode::Write);
                let pick = [id, hold.root_id()]
                    .into_iter()
                    .find_map(|id| candidates.iter().position(|(_, kv)| has(kv, id)))
                    .or_else(|| {
                        [natural, 1 - natural]
                            .into_iter()
                            .find(|&i| candidates[i].1.is_some())
                    });
                Ok(pick.and_then(|i| {
                    let [reader, writer] = candidates;
                    let (key, kv) = if i == 0 { reader } else { writer };
                    found(key, kv)
                }))
            }
        }
    }

    /// Every key under `prefix`, oldest first.
    pub(super) async fn get_prefix(
        &self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Vec<KeyValue>> {
        let mut reply = self
            .call_again(timeout, || {
                let mut kv = self.client.kv_client();
                let options = GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend);
                let prefix = prefix.to_owned();
                async move { kv.get(prefix, Some(options)).await }
            })
            .await?;
        Ok(reply.take_kvs())
    }
}

/// The error for a hold that is not (or no longer) in its holder key.
pub(super) fn not_held(hold: &Hold) -> Error {
    Error::NotHeld {
        key: hold.key().to_owned(),
    }
}

/// The revision a transaction's writes were made at.
pub(super) fn revision(reply: &TxnResponse) -> i64 {
    reply.header().map_or(0, |h| h.revision())
}

/// The fencing token of a holder key: its create revision, or the token
/// it kept through a downgrade.
pub(super) fn token_of(kv: &KeyValue) -> FencingToken {
    match kept_token(kv.value()) {
        Some(kept) => FencingToken::new(kept),
        None => token_at(kv.create_revision()),
    }
}

/// The fencing token of a holder key created at `revision`.
pub(super) fn token_at(revision: i64) -> FencingToken {
    FencingToken::new(u64::try_from(revision).unwrap_or(0))
}
