//! Releasing a hold: its id taken out of the holder key, and the key
//! deleted with the last one. The key's lease is its own, so once the key
//! is gone the lease is revoked too.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, DeleteOptions, KeyValue, Txn, TxnOp, TxnOpResponse};

use super::Etcd;
use super::holder::{CAS_ROUNDS, not_held};
use super::keys::{LockKeys, decode_holds, encode_holds};
use crate::backend::{Hold, Mode};
use crate::error::Result;
use crate::options::LockOptions;

/// The holder key as the first, one-transaction step of a release left it.
enum First {
    /// The hold was its only one: the key is deleted.
    Released,
    /// Other holds, or not this one: the key as read in the same
    /// transaction (`None` when there is no key).
    Read(Option<KeyValue>),
}

/// How one compare-and-swap round of a release ended.
enum Round {
    Released,
    NotHeld,
    /// The key changed under the round: read it again.
    Changed,
}

impl Etcd {
    /// Releases `hold`: an error if its id is not in the holder key.
    pub(super) async fn release_hold(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        let keys = LockKeys::new(&options.key_prefix, hold.key());
        let timeout = options.node_timeout;
        // The exclusive lock's key is known by name: its common case goes
        // in one transaction. The others' key is looked up first (see
        // `fetch_holder`).
        let mut read = None;
        if hold.mode() == Mode::Exclusive {
            let holder = keys.holder(hold.owner());
            match self.release_only_hold(&holder, hold, timeout).await? {
                First::Released => return Ok(()),
                First::Read(kv) => read = Some(kv.map(|kv| (holder, kv))),
            }
        }
        for _ in 0..CAS_ROUNDS {
            let found = match read.take() {
                Some(found) => found,
                None => self.fetch_holder(&keys, hold, hold.id(), timeout).await?,
            };
            let Some((holder, kv)) = found else {
                return Err(not_held(hold));
            };
            match self.take_out(&holder, hold, &kv, timeout).await? {
                Round::Released => return Ok(()),
                Round::NotHeld => return Err(not_held(hold)),
                Round::Changed => {}
            }
        }
        Err(self.contended(hold.key()))
    }

    /// The common case, the only hold goes, in one transaction; any other
    /// reads the key in the same one, for the compare-and-swap.
    async fn release_only_hold(
        &self,
        holder: &str,
        hold: &Hold,
        timeout: Duration,
    ) -> Result<First> {
        let only = Compare::value(
            holder,
            CompareOp::Equal,
            encode_holds(&[hold.id().to_owned()]),
        );
        let last = Txn::new()
            .when([only])
            .and_then([TxnOp::delete(
                holder,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(holder, None)]);
        let reply = self.txn(last, timeout).await?;
        for answer in reply.op_responses() {
            match answer {
                TxnOpResponse::Delete(deleted) => {
                    for gone in deleted.prev_kvs() {
                        self.revoke_unused(gone.lease(), timeout);
                    }
                    return Ok(First::Released);
                }
                TxnOpResponse::Get(mut got) => {
                    return Ok(First::Read(got.take_kvs().into_iter().next()));
                }
                _ => {}
            }
        }
        Ok(First::Read(self.get(holder, timeout).await?))
    }

    /// One round: takes `hold` out of the holder key as `kv` shows it, and
    /// deletes the key when no hold is left.
    async fn take_out(
        &self,
        holder: &str,
        hold: &Hold,
        kv: &KeyValue,
        timeout: Duration,
    ) -> Result<Round> {
        let mut holds = decode_holds(kv.value());
        let before = holds.len();
        holds.retain(|h| h != hold.id());
        if holds.len() == before {
            // Never applied, released already, or not applied *yet*:
            // this may be the undo of a nested acquire that was cut off
            // (or timed out) with its compare-and-swap on its way, and
            // etcd may apply that swap after this read (a request cut
            // off on its way can still reach etcd, after requests sent
            // later). The swap compares the key's mod
            // revision with one read before it was sent, hence before
            // this undo began: writing the key unchanged moves its mod
            // revision on, so that swap can no longer land and add an
            // id nobody will remove. An absent key needs no write: a
            // swap's compare never matches it, nor a key made anew.
            let written = self.swap(holder, kv, &holds, timeout).await?.is_some();
            return Ok(if written {
                Round::NotHeld
            } else {
                Round::Changed
            });
        }
        if !holds.is_empty() {
            let written = self.swap(holder, kv, &holds, timeout).await?.is_some();
            return Ok(if written {
                Round::Released
            } else {
                Round::Changed
            });
        }
        if !self.delete_unchanged(holder, kv, timeout).await? {
            return Ok(Round::Changed);
        }
        self.revoke_unused(kv.lease(), timeout);
        Ok(Round::Released)
    }
}
