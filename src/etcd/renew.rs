//! Renewing a hold (the watchdog's extend, and the check of a nested
//! acquire): a keep-alive of the holder key's lease, or a move of the key
//! onto a longer one.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::Etcd;
use super::holder::{CAS_ROUNDS, Seen, Term, not_held};
use super::keys::{LockKeys, decode_holds};
use crate::backend::Hold;
use crate::error::Result;
use crate::options::LockOptions;

/// How a renewal of a holder key went.
#[derive(Debug)]
pub(super) enum Renewal {
    /// Kept alive: certainly ours until then.
    Kept(Instant),
    /// The key changed meanwhile: read it again.
    Changed,
    /// Its lease is gone: the key went with it, unless another renewal
    /// moved it to a new lease meanwhile. Read it again to tell.
    LeaseGone,
}

impl Etcd {
    /// Extends `hold` by `ttl` from now, while its id is in its holder key.
    pub(super) async fn extend_hold(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> Result<Instant> {
        let keys = LockKeys::new(&options.key_prefix, hold.key());
        let mut dead_lease = None;
        for _ in 0..CAS_ROUNDS {
            let term = Term {
                hold,
                ttl,
                options,
                started: Instant::now(),
            };
            let found = self
                .fetch_holder(&keys, hold, hold.id(), term.timeout())
                .await?;
            let Some((holder, kv)) = found else {
                return Err(not_held(hold));
            };
            if dead_lease == Some(kv.lease())
                || !decode_holds(kv.value()).iter().any(|h| h == hold.id())
            {
                return Err(not_held(hold));
            }
            match self.keep(&term, &holder, &Seen::of(&kv)).await? {
                Renewal::Kept(valid_until) => return Ok(valid_until),
                Renewal::Changed => {}
                // Gone for good only if the key still names that lease.
                Renewal::LeaseGone => dead_lease = Some(kv.lease()),
            }
        }
        Err(self.contended(hold.key()))
    }

    /// Keeps the holder key as `kv` shows it alive for the term's `ttl`
    /// and lock-delay from its `started` ([`Term::lease_secs`]): a
    /// keep-alive of its lease, or, when the lease's ttl is shorter, a
    /// move of the key onto a new, longer lease. A lease is never
    /// shortened: another hold of the owner may count on it. The validity
    /// returned counts the ttl alone.
    pub(super) async fn keep(&self, term: &Term<'_>, holder: &str, kv: &Seen) -> Result<Renewal> {
        let secs = term.lease_secs();
        let granted = self.refresh_lease(kv.lease, term.timeout()).await?;
        if granted <= 0 {
            // The lease is gone. Either the key went with it, or another
            // renewal of this holder key (a nested hold's, a longer extend)
            // just moved it onto a new lease: the caller reads it again to
            // tell which.
            return Ok(Renewal::LeaseGone);
        }
        // A longer ttl than the lease was made for: move the key onto a
        // new lease (its create revision, the token, stays).
        if granted < secs && !self.move_to_lease(holder, kv, secs, term.timeout()).await? {
            return Ok(Renewal::Changed);
        }
        Ok(Renewal::Kept(term.valid_until()?))
    }

    /// Moves the holder key as `kv` shows it onto a new lease of `secs`;
    /// `false` when the key changed meanwhile.
    async fn move_to_lease(
        &self,
        holder: &str,
        kv: &Seen,
        secs: i64,
        timeout: Duration,
    ) -> Result<bool> {
        let lease = self.grant_lease(secs, timeout).await?;
        // No revoke of the new lease when this is cut off or fails
        // without an answer: the move may still land after the revoke
        // would, or have landed already, and the revoke would then
        // delete a live holder key, freeing the lock under a guard
        // that still counts on it. Unused, the new lease only runs out
        // by its ttl; used, the key sits on it and renewals keep it
        // (they follow the key's lease), while the old one runs out.
        let same = Compare::mod_revision(holder, CompareOp::Equal, kv.mod_revision);
        let put = TxnOp::put(
            holder,
            kv.value.clone(),
            Some(PutOptions::new().with_lease(lease.id())),
        );
        let reply = self
            .txn(Txn::new().when([same]).and_then([put]), timeout)
            .await?;
        if !reply.succeeded() {
            // Answered no: the move can never land, so the new lease
            // has nothing on it for good.
            self.revoke_unused(lease.id(), timeout);
            return Ok(false);
        }
        // The old lease has no key left.
        self.revoke_unused(kv.lease, timeout);
        Ok(true)
    }
}
