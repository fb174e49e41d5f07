//! The seam: the trait every backend implements, what it takes and returns,
//! and the machinery the backends share (background work, release watches,
//! the reports of the admin calls).
//!
//! [`Locker`]: crate::Locker

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::options::LockOptions;

mod background;
mod hold;
mod notify;
mod quorum;
mod redact;
mod report;
mod validity;

pub(crate) use background::{Background, Task};

/// How many extends [`Backend::extend_many`]'s default runs at a time.
const EXTENDS_AT_ONCE: usize = 64;
pub use hold::{Grant, Hold, Mode, Parent};
pub use notify::{ReleaseWatch, Signal};
pub(crate) use quorum::{Verdict, verdict};
pub(crate) use redact::Redacted;
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(unused_imports))]
pub(crate) use redact::without_credentials;
pub use report::{ForceReleased, Holder, ListCursor, ListPage, LockInfo, LockRecord, NodeView};
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(unused_imports))]
pub(crate) use validity::{drift, validity};

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

    /// Makes the lock of each of `holds` live for its ttl from now, as
    /// [`extend`](Backend::extend) does for one hold: one result per hold,
    /// in order, each decided on its own (a hold gone, or refused by a
    /// quorum, fails alone). The watchdog renews every hold of a Locker
    /// that falls due at about the same time with one call.
    ///
    /// A backend that can carry many extends in one request per server
    /// does so (Redis: one script call per node for up to 512 keys); the
    /// default runs the extends side by side, at most 64 at a time. Either way each hold keeps
    /// the semantics of its own extend: only ever lengthened, never
    /// re-created, its validity measured from before the first request.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is allowed at any await point: an extend that
    /// reached a server only lengthened a hold that was still there, and
    /// the Locker's undo (an idempotent `release`) removes it as ever.
    ///
    /// # Errors
    ///
    /// Each result as [`extend`](Backend::extend)'s; a server that fails
    /// or times out fails that server's vote for every hold the request
    /// carried.
    fn extend_many(
        &self,
        holds: &[(&Hold, Duration)],
        options: &LockOptions,
    ) -> impl Future<Output = Vec<Result<Instant>>> + Send {
        use futures::StreamExt;
        // Bounded, so that a tick of many thousand holds does not open as
        // many requests at once; `buffered` keeps the results in order.
        futures::stream::iter(
            holds
                .iter()
                .map(|&(hold, ttl)| self.extend(hold, ttl, options)),
        )
        .buffered(EXTENDS_AT_ONCE)
        .collect()
    }

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
