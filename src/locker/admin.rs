//! The admin calls of a Locker: look at locks and remove them, whoever
//! holds them. Each passes through to the backend after checking its input.

use crate::backend::{Backend, ForceReleased, ListCursor, ListPage, LockInfo, Verdict, verdict};
use crate::error::{Error, NodeFailure, Result};
use crate::fencing::Sequencer;
use crate::options::{MAX_KEY_LEN, validate_key};

use super::Locker;

impl<B: Backend> Locker<B> {
    /// Each node's view of the lock on `key` (owner, fencing token, holds,
    /// remaining ttl) and the holder a quorum agrees on, if any. Read-only.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a bad key; a node that fails is reported in its
    /// [`NodeView`](crate::NodeView), not as an error.
    pub async fn inspect(&self, key: &str) -> Result<LockInfo> {
        validate_key(key)?;
        self.shared.backend.inspect(key, &self.shared.options).await
    }

    /// Whether `key` is locked: `true` when a quorum of nodes store a lock
    /// on it (no other owner could take it now), `false` when so many store
    /// none that no quorum can hold it, and [`Error::QuorumUnavailable`]
    /// when too few answered to tell.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; [`Error::QuorumUnavailable`] when too few nodes
    /// answered to tell.
    pub async fn is_locked(&self, key: &str) -> Result<bool> {
        let info = self.inspect(key).await?;
        let (locked, free) = (info.locked_nodes(), info.free_nodes());
        match verdict(locked, free, info.nodes.len(), info.quorum) {
            Verdict::Quorum => Ok(true),
            Verdict::Refused => Ok(false),
            Verdict::Undecided => Err(undecided(info, locked, free)),
        }
    }

    /// One page of the resources whose name starts with `prefix` (`""` for
    /// all) that have a lock on some node, merged across nodes. Pass the
    /// page's `next` cursor back for the next page. Uses SCAN, never KEYS,
    /// so a large keyspace is never blocked.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for an oversized prefix, [`Error::InvalidOptions`]
    /// for a cursor of another listing, and [`Error::QuorumUnavailable`] when too
    /// few nodes answered for the page to be complete.
    pub async fn list(&self, prefix: &str, cursor: Option<&ListCursor>) -> Result<ListPage> {
        if prefix.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey(format!(
                "the prefix is {} bytes; at most {} are allowed",
                prefix.len(),
                MAX_KEY_LEN
            )));
        }
        self.shared
            .backend
            .list(prefix, cursor, &self.shared.options)
            .await
    }

    /// Every resource starting with `prefix` that has a lock on some node,
    /// sorted and without duplicates: [`list`](Locker::list) page by page.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads. A dropped call leaves nothing behind.
    ///
    /// # Errors
    ///
    /// As [`list`](Locker::list), for any page.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        let mut all = std::collections::BTreeSet::new();
        let mut cursor = None;
        loop {
            let page = self.list(prefix, cursor.as_ref()).await?;
            all.extend(page.resources);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(all.into_iter().collect()),
            }
        }
    }

    /// Removes the lock on `key` on every node, whatever owner and holds it
    /// has: an explicit admin operation for a lock whose holder is known to
    /// be gone. The holder's guard finds out at its next renewal (it is then
    /// lost); the fencing counter stays, so the next holder's token is
    /// higher. Nodes that do not answer are listed in the result.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe in effect: the removal may have reached some nodes and
    /// not others. Call it again to finish it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; nodes that fail are listed in the result, not as an
    /// error.
    pub async fn force_release(&self, key: &str) -> Result<ForceReleased> {
        validate_key(key)?;
        self.shared
            .backend
            .force_release(key, &self.shared.options)
            .await
    }

    /// Whether the sequencer's token is still held: a quorum of nodes
    /// store a hold of its lock with that token. For a resource that can
    /// ask the lock service but cannot store a fence (Chubby's
    /// CheckSequencer).
    ///
    /// `true` is a snapshot: the hold may run out right after. Check just
    /// before acting and keep the act shorter than the ttl's margin; where
    /// the resource can store a fence, fence instead (docs/fencing.md).
    /// With a [`lock_delay`](crate::LockOptions#structfield.lock_delay), a
    /// node's hold counts only while more than the delay is left on it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`]; [`Error::QuorumUnavailable`] when too few
    /// nodes answered to tell.
    pub async fn is_current(&self, sequencer: &Sequencer) -> Result<bool> {
        let info = self.inspect(sequencer.key()).await?;
        // A hold whose holder vanished lives on the servers for the
        // lock-delay past its validity: within that tail it is no longer
        // current, only not yet free.
        let delay = self.shared.options.lock_delay;
        let holds = |view: &crate::NodeView| {
            view.holders.iter().any(|holder| {
                holder.token == sequencer.token() && holder.ttl.is_none_or(|left| left > delay)
            })
        };
        let current = info.nodes.iter().filter(|v| holds(v)).count();
        let other = info
            .nodes
            .iter()
            .filter(|v| v.lock.is_ok() && !holds(v))
            .count();
        match verdict(current, other, info.nodes.len(), info.quorum) {
            Verdict::Quorum => Ok(true),
            Verdict::Refused => Ok(false),
            Verdict::Undecided => Err(undecided(info, current, other)),
        }
    }

    /// Checks a sequencer that came with a request for the resource
    /// guarded by the lock `key`: it must be of that lock, and current.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Errors
    ///
    /// [`Error::ForeignToken`] when the sequencer is of another lock;
    /// [`Error::NotHeld`] when its token is no longer held; those of
    /// [`is_current`](Locker::is_current).
    pub async fn check_current(&self, key: &str, sequencer: &Sequencer) -> Result<()> {
        validate_key(key)?;
        if sequencer.key() != key {
            return Err(Error::ForeignToken {
                resource: key.to_owned(),
                lock: sequencer.key().to_owned(),
                fenced_by: key.to_owned(),
            });
        }
        if self.is_current(sequencer).await? {
            Ok(())
        } else {
            Err(Error::NotHeld {
                key: key.to_owned(),
            })
        }
    }
}

/// The error of a read of `info` that too few nodes answered to decide:
/// `confirmed` said yes, `refused` said no, and each node that failed is
/// named with its fault.
fn undecided(info: LockInfo, confirmed: usize, refused: usize) -> Error {
    Error::QuorumUnavailable {
        confirmed,
        refused,
        needed: info.quorum,
        failures: info
            .nodes
            .into_iter()
            .filter_map(|v| {
                v.lock.err().map(|fault| NodeFailure {
                    node: v.node,
                    fault,
                })
            })
            .collect(),
    }
}
