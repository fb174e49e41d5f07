//! The holder key of an owner: its value lists the owner's holds, its
//! create revision is their fencing token, and it changes only by
//! compare-and-swap on its mod revision. What the acquire, renewal and
//! release of a hold share.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp, TxnResponse};

use super::Etcd;
use super::keys::encode_holds;
use crate::backend::Hold;
use crate::backend::validity;
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
    /// (keeping its lease); the key's new mod revision, or `None` when it
    /// changed.
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
            encode_holds(holds),
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

/// The fencing token of a holder key: its create revision.
pub(super) fn token_of(kv: &KeyValue) -> FencingToken {
    token_at(kv.create_revision())
}

/// The fencing token of a holder key created at `revision`.
pub(super) fn token_at(revision: i64) -> FencingToken {
    FencingToken::new(u64::try_from(revision).unwrap_or(0))
}
