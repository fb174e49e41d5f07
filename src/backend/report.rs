//! What introspection and admin calls report: a lock as each node stores it,
//! the quorum's view, pages of a listing, and the outcome of a forced
//! release.

use std::fmt;
use std::time::Duration;

use super::{Mode, Redacted};
use crate::error::{NodeFailure, NodeFault};
use crate::fencing::FencingToken;

/// A lock as one node stores it. `Debug` shows only the first digits of
/// the owner id, a secret (see [`Owner`](crate::Owner)).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockRecord {
    /// The owner id (instance id and task, or an explicit [`Owner`](crate::Owner)).
    pub owner: String,
    /// The fencing token of the holder.
    pub token: FencingToken,
    /// How many holds the owner has on it (1 + nesting depth).
    pub holds: u32,
    /// Time to live left on this node; `None` if it has no expiry.
    pub ttl: Option<Duration>,
    /// What kind of hold it is: [`Mode::Exclusive`] for a lock, a read or
    /// write hold of a read-write lock, or a permit.
    pub mode: Mode,
    /// The slot of a permit.
    pub slot: Option<u32>,
}

impl LockRecord {
    /// A record of an exclusive lock.
    pub fn new(owner: String, token: FencingToken, holds: u32, ttl: Option<Duration>) -> Self {
        Self {
            owner,
            token,
            holds,
            ttl,
            mode: Mode::Exclusive,
            slot: None,
        }
    }

    /// The same record, of a hold of `mode` (in `slot`, for a permit).
    pub fn with_mode(mut self, mode: Mode, slot: Option<u32>) -> Self {
        self.mode = mode;
        self.slot = slot;
        self
    }
}

impl fmt::Debug for LockRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockRecord")
            .field("owner", &Redacted(&self.owner))
            .field("token", &self.token)
            .field("holds", &self.holds)
            .field("ttl", &self.ttl)
            .field("mode", &self.mode)
            .field("slot", &self.slot)
            .finish()
    }
}

/// One node's answer about a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeView {
    /// The node's address.
    pub node: String,
    /// What it stores (`None`: no lock), or why it did not answer. For a
    /// read-write lock, its writer or else one of its readers; for a
    /// semaphore, one of its permits: [`holders`](NodeView::holders) has
    /// them all.
    pub lock: Result<Option<LockRecord>, NodeFault>,
    /// Every holder the node stores: the exclusive lock's one, a
    /// read-write lock's writer or readers (the writer first), a
    /// semaphore's permits by slot. Empty when the node did not answer.
    pub holders: Vec<LockRecord>,
}

impl NodeView {
    /// The view of `node`, which answered with `holders` (the first one
    /// shown as [`lock`](NodeView::lock)) or failed.
    pub fn new(node: String, holders: Result<Vec<LockRecord>, NodeFault>) -> Self {
        match holders {
            Ok(holders) => Self {
                node,
                lock: Ok(holders.first().cloned()),
                holders,
            },
            Err(fault) => Self {
                node,
                lock: Err(fault),
                holders: Vec::new(),
            },
        }
    }
}

/// Who holds a lock according to a quorum. `Debug` shows only the first
/// digits of the owner id, a secret (see [`Owner`](crate::Owner)).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The owner id.
    pub owner: String,
    /// The fencing token.
    pub token: FencingToken,
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holder")
            .field("owner", &Redacted(&self.owner))
            .field("token", &self.token)
            .finish()
    }
}

/// A lock across all nodes, from [`Locker::inspect`](crate::Locker::inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The resource name.
    pub key: String,
    /// Each node's answer, in node order.
    pub nodes: Vec<NodeView>,
    /// How many nodes make a quorum.
    pub quorum: usize,
    /// The owner and token a quorum of nodes agree on, if any.
    pub agreed: Option<Holder>,
    /// How many waiters are queued for the lock, for a backend that keeps
    /// a queue (etcd); `None` for one that does not (Redis). While any
    /// waiter is queued, the lock goes to the first of them even when it is
    /// free, so `try_lock` is refused.
    pub queued: Option<usize>,
}

impl LockInfo {
    /// How many nodes answered that they store a lock (of any owner).
    pub fn locked_nodes(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.lock, Ok(Some(_))))
            .count()
    }

    /// How many nodes answered that they store none.
    pub fn free_nodes(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n.lock, Ok(None)))
            .count()
    }
}

/// Where a listing goes on from: opaque, pass it back to
/// [`Locker::list`](crate::Locker::list) for the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor(pub(crate) String);

impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListPage {
    /// Resource names with a lock on at least one node, sorted, without
    /// duplicates within the page (a name can come again on a later page:
    /// each node is scanned on its own).
    pub resources: Vec<String>,
    /// The next page, or `None` when every node was scanned to the end.
    pub next: Option<ListCursor>,
    /// Nodes that failed during this page; they are skipped from then on.
    pub failures: Vec<NodeFailure>,
}

/// The outcome of [`Locker::force_release`](crate::Locker::force_release).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForceReleased {
    /// On how many nodes a lock was removed.
    pub removed: usize,
    /// Nodes that did not answer (the lock may still be there, until its
    /// ttl), and nodes that keep data other than a fencelock lock under the
    /// name: it is left as it is and reported as a
    /// [`NodeFault::Server`](crate::NodeFault::Server) naming it.
    pub failures: Vec<NodeFailure>,
}
