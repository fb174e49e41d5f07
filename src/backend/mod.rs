//! The seam: the trait every backend implements, what it takes and returns,
//! and the machinery the backends share (background work, release watches,
//! the reports of the admin calls).
//!
//! [`Locker`]: crate::Locker

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::fencing::FencingToken;
use crate::options::LockOptions;

mod background;
mod notify;
mod quorum;
mod redact;
mod report;
mod validity;

pub(crate) use background::{Background, Owned};
pub use notify::{ReleaseWatch, Signal};
pub(crate) use quorum::{Verdict, verdict};
pub(crate) use redact::Redacted;
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(unused_imports))]
pub(crate) use redact::without_credentials;
pub use report::{ForceReleased, Holder, ListCursor, ListPage, LockInfo, LockRecord, NodeView};
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(unused_imports))]
pub(crate) use validity::{drift, validity};

/// One hold on a lock: which resource, which owner, and the id of this
/// particular acquisition. Nested acquisitions by one owner are separate
/// holds with separate ids; the lock is free when its last hold is gone.
///
/// Owner and hold ids are secrets (whoever knows them can extend and
/// release the lock): `Debug` shows only their first digits, and a
/// backend's errors name the resource ([`key`](Hold::key)), never them.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Hold {
    key: String,
    owner: String,
    id: String,
    parent: Option<Parent>,
    mode: Mode,
    slot: Option<u32>,
    waiting: bool,
}

/// What a hold excludes, and so how a backend stores it.
///
/// The kinds share the resource namespace: a name in use as one kind
/// refuses every other kind with
/// [`Error::WrongKind`](crate::Error::WrongKind) while any hold of it is
/// live (an idle name can be taken as any kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// The exclusive lock: one owner at a time.
    Exclusive,
    /// A read (shared) hold of a read-write lock: any number of owners
    /// together, while no write hold is live.
    Read,
    /// The write hold of a read-write lock: one owner, and no readers.
    Write,
    /// One permit of a semaphore of `permits`: at most that many permit
    /// holds at once. Each permit occupies one of `permits` slots, an
    /// exclusive lock of its own (docs/algorithm.md, section 13).
    Permit {
        /// The semaphore's number of permits, as this client believes it.
        permits: u32,
    },
}

impl Mode {
    /// The name used in messages, metrics (`kind` label) and admin reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Exclusive => "lock",
            Mode::Read => "read",
            Mode::Write => "write",
            Mode::Permit { .. } => "permit",
        }
    }

    /// The kind of resource a hold of this mode uses: `"lock"`, `"rwlock"`
    /// or `"semaphore"`.
    pub fn resource_kind(self) -> &'static str {
        match self {
            Mode::Exclusive => "lock",
            Mode::Read | Mode::Write => "rwlock",
            Mode::Permit { .. } => "semaphore",
        }
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("key", &self.key)
            .field("owner", &Redacted(&self.owner))
            .field("id", &Redacted(&self.id))
            .field("parent", &self.parent)
            .field("mode", &self.mode)
            .field("slot", &self.slot)
            .finish()
    }
}

/// The hold a nested hold sits inside, and its token. `Debug` shows only
/// the first digits of the id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Parent {
    /// The parent hold's id.
    pub id: String,
    /// The parent hold's fencing token, which the nested hold shares.
    pub token: FencingToken,
}

impl std::fmt::Debug for Parent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parent")
            .field("id", &Redacted(&self.id))
            .field("token", &self.token)
            .finish()
    }
}

impl Hold {
    /// A hold of `owner` on the resource `key`, identified by `id`.
    pub fn new(key: impl Into<String>, owner: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            owner: owner.into(),
            id: id.into(),
            parent: None,
            mode: Mode::Exclusive,
            slot: None,
            waiting: false,
        }
    }

    /// The same hold, of another kind (the default is
    /// [`Mode::Exclusive`]).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The same hold, of a permit known to sit in `slot` (from its
    /// [`Grant`]): renewals and releases then go to that slot alone.
    pub fn in_slot(mut self, slot: u32) -> Self {
        self.slot = Some(slot);
        self
    }

    /// The same hold, asked for by a waiter that will try again
    /// (`lock`, not `try_lock`): a refused write hold then announces
    /// itself, so that new readers wait behind it (writer preference).
    pub fn waiting(mut self, waiting: bool) -> Self {
        self.waiting = waiting;
        self
    }

    /// What the hold excludes.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The slot of a granted permit.
    pub fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// Whether the attempt comes from a waiter (see [`waiting`](Hold::waiting)).
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// The id of the outermost hold this one belongs to: its parent's, or
    /// its own for a first hold.
    pub fn root_id(&self) -> &str {
        self.parent.as_ref().map_or(&self.id, |p| &p.id)
    }

    /// The same hold, nested inside `parent` (a live hold of the same owner
    /// on the same key).
    pub fn nested_in(mut self, parent: Parent) -> Self {
        self.parent = Some(parent);
        self
    }

    /// The parent hold, for a nested hold.
    pub fn parent(&self) -> Option<&Parent> {
        self.parent.as_ref()
    }

    /// The resource name, without any backend prefix.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The owner: who may re-enter, extend and release.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The id of this acquisition, unique among the owner's holds.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What a successful acquire hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The fencing token of this holder.
    pub token: FencingToken,
    /// Until when the lock is certainly ours (local monotonic clock, with the
    /// time spent acquiring and the clock-drift allowance already taken off).
    pub valid_until: Instant,
    /// The slot a permit occupies (`0..permits`); `None` for other holds.
    pub slot: Option<u32>,
}

impl Grant {
    /// A grant of `token`, certainly held until `valid_until`.
    pub fn new(token: FencingToken, valid_until: Instant) -> Self {
        Self {
            token,
            valid_until,
            slot: None,
        }
    }

    /// The same grant, of a permit in `slot`.
    pub fn in_slot(mut self, slot: u32) -> Self {
        self.slot = Some(slot);
        self
    }
}

/// How the waiters of a backend learn that the lock they wait for may have
/// been freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Waiting {
    /// No news of releases: waiters try again after their retry delay.
    Polling,
    /// News of releases per key ([`Backend::watch_releases`]), as Redis
    /// pub/sub gives. The Locker lines its own waiters for a key up, lets
    /// only the head try, and shares one watch between them.
    Notified,
    /// A fair queue of waiters across processes, kept by the backend (etcd):
    /// each waiter's watch is its own place in that queue, and it tries
    /// when the queue says its turn has come.
    Queued,
}

/// Only this crate's backends implement [`Backend`]: the types its methods
/// take and return (such as [`Hold`] and [`ReleaseWatch`]) and the contract
/// they keep are not yet a stable interface for others.
mod sealed {
    pub trait Sealed {}
    #[cfg(feature = "redis")]
    impl Sealed for crate::redis::Redlock {}
    #[cfg(feature = "etcd")]
    impl Sealed for crate::etcd::Etcd {}
    #[cfg(any(feature = "redis", feature = "etcd"))]
    impl Sealed for crate::config::AnyBackend {}
}

/// A store that keeps locks.
///
/// Sealed: the backends are [`Redlock`](crate::Redlock) (Redis, one node or
/// a quorum) and [`Etcd`](crate::Etcd), and [`AnyBackend`](crate::AnyBackend),
/// either of them as a URL list chose it. What they share, and how a new one
/// would plug in, is in `docs/architecture.md`.
///
/// # Contract
///
/// Every implementation guarantees:
/// - **Mutual exclusion**: while a [`Grant`] is valid (now < `valid_until`),
///   no hold of another owner on the same key is granted.
/// - **Reentrancy**: a nested hold (one with a [`Parent`]) is granted only
///   where its parent hold is still present, gets the parent's token, and
///   counts towards `options.max_reentrancy`; the key is free only when every
///   hold is released. A first hold is never granted over an existing lock,
///   not even a stale one of the same owner, so every first hold counts
///   afresh. When the parent is gone from a quorum the result is
///   [`Error::NotHeld`](crate::Error::NotHeld).
/// - **Fencing**: tokens of successive (non-nested) grants of a key strictly
///   increase.
/// - **Idempotent undo**: `release` of a hold that was never applied, was
///   applied only partly, or was already released, changes nothing else (in
///   particular it never removes another hold of the same owner). The
///   [`Locker`](crate::Locker) relies on this to clean up after cancelled or
///   failed acquires by releasing the hold unconditionally.
/// - **Honest release**: `release` and `extend` return
///   [`Error::NotHeld`](crate::Error::NotHeld) when the hold was no longer
///   present (expired or taken over); they never report success for a hold
///   that was gone.
/// - **Bounded**: every call finishes within a bound derived from the options
///   (for Redis, about one `node_timeout` per round trip).
/// - **No partial failure left behind**: `try_acquire` that returns an error
///   has already undone (or scheduled the undo of) whatever it got.
/// - **Kinds** ([`Mode`]): a first [`Mode::Read`] hold is granted while no
///   write hold of another root is live and no writer waits (writer
///   preference); a first [`Mode::Write`] hold only when no hold at all is
///   live. Nested holds: read inside read or write, write inside write;
///   write inside read is [`Error::UpgradeRefused`](crate::Error::UpgradeRefused).
///   A write hold's token is above every earlier first hold's, readers'
///   included; a read hold's token is above every earlier write hold's.
///   A [`Mode::Permit`] hold is a first hold in one of `permits` slots
///   (given in [`Grant::slot`]); at most `permits` are granted at once, and
///   tokens strictly increase per slot and per semaphore. A name in use
///   as another kind is [`Error::WrongKind`](crate::Error::WrongKind), a
///   semaphore in use with another count
///   [`Error::PermitsMismatch`](crate::Error::PermitsMismatch).
pub trait Backend: sealed::Sealed + Send + Sync + 'static {
    /// A short name for metrics and messages, such as `"redis"`.
    fn name(&self) -> &'static str;

    /// Checks options against this backend (e.g. the quorum against the node
    /// count). Called by [`Locker::new`](crate::Locker::new) before any I/O.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions) naming the rule
    /// broken.
    fn check_options(&self, options: &LockOptions) -> Result<()>;

    /// One attempt to acquire `hold` for `ttl`. Fails with
    /// [`Error::NotObtained`](crate::Error::NotObtained) when another owner
    /// holds the key.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point and leaves nothing
    /// that the Locker's undo (an idempotent `release`) cannot clean up; see
    /// the contract.
    ///
    /// # Errors
    ///
    /// As the contract says; a backend's own failures are
    /// [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) or [`Error::Backend`](crate::Error::Backend).
    fn try_acquire(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> impl Future<Output = Result<Grant>> + Send;

    /// Makes the lock of `hold` live for `ttl` from now; returns the new
    /// validity deadline.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point and leaves nothing
    /// that the Locker's undo (an idempotent `release`) cannot clean up; see
    /// the contract.
    ///
    /// # Errors
    ///
    /// As the contract says; a backend's own failures are
    /// [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) or [`Error::Backend`](crate::Error::Backend).
    fn extend(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> impl Future<Output = Result<Instant>> + Send;

    /// Removes `hold`. Idempotent (see the contract).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point and leaves nothing
    /// that the Locker's undo (an idempotent `release`) cannot clean up; see
    /// the contract.
    ///
    /// # Errors
    ///
    /// As the contract says; a backend's own failures are
    /// [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) or [`Error::Backend`](crate::Error::Backend).
    fn release(
        &self,
        hold: &Hold,
        options: &LockOptions,
    ) -> impl Future<Output = Result<()>> + Send;

    /// What each node stores for `key`, and the holder a quorum agrees on.
    /// Read-only; a node that fails is reported in its
    /// [`NodeView`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point and leaves nothing
    /// that the Locker's undo (an idempotent `release`) cannot clean up; see
    /// the contract.
    ///
    /// # Errors
    ///
    /// As the contract says; a backend's own failures are
    /// [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) or [`Error::Backend`](crate::Error::Backend).
    fn inspect(
        &self,
        key: &str,
        options: &LockOptions,
    ) -> impl Future<Output = Result<LockInfo>> + Send;

    /// One page of the resources whose name starts with `prefix` and that
    /// have a lock on some node, from `cursor` (`None`: the first page).
    /// Never a blocking full scan.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point and leaves nothing
    /// that the Locker's undo (an idempotent `release`) cannot clean up; see
    /// the contract.
    ///
    /// # Errors
    ///
    /// As the contract says; a backend's own failures are
    /// [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) or [`Error::Backend`](crate::Error::Backend).
    fn list(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> impl Future<Output = Result<ListPage>> + Send;

    /// Removes the lock on `key` on every node, whatever its holds; the
    /// fencing counter stays, so tokens keep increasing.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point and leaves nothing
    /// that the Locker's undo (an idempotent `release`) cannot clean up; see
    /// the contract.
    ///
    /// # Errors
    ///
    /// As the contract says; a backend's own failures are
    /// [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable) or [`Error::Backend`](crate::Error::Backend).
    fn force_release(
        &self,
        key: &str,
        options: &LockOptions,
    ) -> impl Future<Output = Result<ForceReleased>> + Send;

    /// How this backend's waiters learn that a lock may have been freed:
    /// the Locker's waiting follows from it (see [`Waiting`]).
    fn waiting(&self) -> Waiting;

    /// Release notifications for `key`, asked for by a waiter of `owner`: a
    /// watch that fires when the lock may have been freed, so the waiter
    /// tries again at once instead of after its retry delay. `None` when
    /// this backend cannot tell (it waits by [`Waiting::Polling`]) or
    /// cannot subscribe now; waiters then poll. The subscription ends when
    /// the last clone of the watch is dropped.
    ///
    /// For a backend that waits by [`Waiting::Queued`], the watch is the
    /// waiter's place in its queue: `try_acquire` for `owner` then succeeds
    /// only when that place comes first.
    ///
    /// `mode` is what the waiter wants: a queue orders readers, writers and
    /// permit holders by it (a reader waits only for earlier writers, a
    /// permit for all but `permits - 1` earlier places).
    fn watch_releases(
        &self,
        key: &str,
        owner: &str,
        mode: Mode,
        options: &LockOptions,
    ) -> Option<ReleaseWatch>;

    /// Turns the write hold `hold` (a first hold, [`Mode::Write`]) into a
    /// read hold of the same owner, without a moment in which the
    /// resource is free: readers may join at once, writers keep waiting.
    /// The hold keeps its token. Done when a quorum confirmed; the nodes
    /// that did not keep the write hold until the next renewal (which
    /// finishes the downgrade) or the release: stricter, never looser.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point: each node has
    /// the hold as a write or as a read hold, and a release removes either.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`](crate::Error::NotHeld) when the hold is gone from a
    /// quorum; [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable)
    /// when too few nodes answered.
    fn downgrade(
        &self,
        hold: &Hold,
        options: &LockOptions,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Waits until the work this backend left running in the background
    /// has finished: requests still out after a call returned (Redlock
    /// decides at a quorum and sees the slowest nodes through in the
    /// background), undos of failed or cancelled calls, lease revokes and
    /// the ending of waiters' places in a queue (etcd). A process that is
    /// about to exit awaits it (through
    /// [`Locker::settled`](crate::Locker::settled), which also waits for
    /// the Locker's own work, such as dropped guards' releases); otherwise
    /// the runtime's shutdown drops that work unsent, and what it would
    /// have removed stays on the servers until its ttl, refusing others
    /// meanwhile. Tests await it before looking at the servers.
    ///
    /// It waits for the work started before it is called and for work
    /// that work starts; work started meanwhile by other calls may make it
    /// wait longer, never for ever while no new calls come.
    ///
    /// Bounded: every piece of such work is bounded by the options it was
    /// started with (for both backends, about one `node_timeout` per round
    /// trip), so this returns within a few node timeouts of the last call.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits. Dropping it stops no work, and calling
    /// it again waits for what is still running.
    fn settled(&self) -> impl Future<Output = ()> + Send;
}
