//! The front: what a user holds (the Locker, its guards) and the machinery
//! behind them (watchdog, waiting, owners, hand-off, telemetry).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use tracing::field::{Empty, display};

use crate::backend::{Backend, Background, Hold, Mode, Parent};
use crate::error::{Error, Result};
use crate::options::{LockOptions, validate_key};

mod admin;
mod exclusive;
mod guard;
mod handoff;
mod held;
mod lease;
mod line;
mod owner;
mod read_write;
mod reentry;
mod renewer;
mod renewers;
mod scoped;
mod semaphore;
mod shared;
mod telemetry;
mod wait;
mod watchdog;

pub use exclusive::Exclusive;
pub use guard::LockGuard;
pub use handoff::Handoff;
pub use owner::Owner;
pub use read_write::{DowngradeError, ReadGuard, WriteGuard};
pub use semaphore::{Permit, Semaphore};
pub use telemetry::Statistics;

use held::{Held, ReleaseOnDrop};
use owner::{current_owner, new_instance_id, next_hold_id};
use renewers::Renewers;
use shared::Shared;
use telemetry::Telemetry;

pub(crate) use watchdog::Timing;

/// Takes locks on a backend. Cheap to clone: clones share the backend, the
/// options and the instance identity.
///
/// # Owners
///
/// The owner of each acquire is this Locker's random 128-bit instance id
/// plus the current tokio task: nested acquires in one task re-enter (and
/// share the outer fencing token), different tasks exclude each other, and
/// a task spawned inside a critical section is another owner. Outside a
/// tokio task (the future given to `block_on`), the current thread stands
/// in for the task. A guard moved to another task still belongs to the task
/// that took it; for locks that travel, use [`with_owner`](Locker::with_owner).
/// See `docs/reentrancy-and-watchdog.md`.
///
/// # Examples
///
/// Take a lock, write under its fencing token, give it back. (The hidden
/// lines start a private redis-server for the example.)
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = fencelock::testing::RedisServer::start()?;
/// # let url = server.url();
/// use fencelock::Locker;
///
/// let locker = Locker::redis([url.as_str()])?;
/// let guard = locker.lock("nightly-report").await?;
/// println!("writing with fencing token {}", guard.token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct Locker<B: Backend> {
    shared: Shared<B>,
    instance: u128,
    owner: Option<Owner>,
}

impl<B: Backend> Clone for Locker<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            instance: self.instance,
            owner: self.owner.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for Locker<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locker")
            .field("backend", &self.shared.backend.name())
            .field("options", &self.shared.options)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
impl Locker<crate::redis::Redlock> {
    /// A Locker over Redis nodes given by URL, with default options.
    /// One URL is a single-instance lock; several form a Redlock quorum.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a bad or repeated URL, no URLs, or more than
    /// [`Redlock::MAX_NODES`](crate::Redlock::MAX_NODES).
    pub fn redis<I, S>(urls: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::new(
            crate::redis::Redlock::from_urls(urls)?,
            LockOptions::default(),
        )
    }
}

impl<B: Backend> Locker<B> {
    /// A Locker on `backend`. The options are checked here, before any I/O.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] naming the first rule the options break (see
    /// [`LockOptions::validate`]).
    pub fn new(backend: B, options: LockOptions) -> Result<Self> {
        backend.check_options(&options)?;
        let options = Arc::new(options);
        let background = Background::default();
        let renewers = Arc::new(Renewers::default());
        Ok(Self {
            shared: Shared {
                telemetry: Arc::new(Telemetry::new(backend.name())),
                backend: Arc::new(backend),
                renewer: renewers.of(&options, &background),
                renewers,
                options,
                live: Arc::default(),
                lines: Arc::default(),
                background,
            },
            instance: new_instance_id(),
            owner: None,
        })
    }

    /// The same Locker (backend and owner identity) with other options, for
    /// locks that need, say, another ttl.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] as [`new`](Locker::new).
    pub fn with_options(&self, options: LockOptions) -> Result<Self> {
        self.shared.backend.check_options(&options)?;
        let mut locker = self.clone();
        locker.shared.options = Arc::new(options);
        let shared = &mut locker.shared;
        shared.renewer = shared.renewers.of(&shared.options, &shared.background);
        Ok(locker)
    }

    /// The same Locker taking every lock as `owner`, whichever task calls
    /// it: tasks sharing it re-enter each other's locks instead of excluding
    /// each other, and a guard it gave out can move between them.
    pub fn with_owner(&self, owner: Owner) -> Self {
        Self {
            owner: Some(owner),
            ..self.clone()
        }
    }

    /// The explicit owner, if this Locker has one.
    pub fn owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    /// The options in force.
    pub fn options(&self) -> &LockOptions {
        &self.shared.options
    }

    fn prefix(&self) -> &str {
        &self.shared.options.key_prefix
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.shared.backend
    }

    /// What this Locker, its clones and the Lockers derived from it
    /// (`with_options`, `with_owner`) did so far: plain counts, available
    /// with or without a metrics recorder.
    pub fn statistics(&self) -> Statistics {
        self.shared.telemetry.snapshot()
    }

    /// Waits until the background work of this Locker (and its clones and
    /// derived Lockers) and of its backend has finished: the releases of
    /// guards that were dropped instead of released, the undo of cancelled
    /// calls, watchdogs stopping, and what the backend left running (see
    /// [`Backend::settled`]). A process awaits it before it exits, after
    /// its last call: the runtime's shutdown would drop that work unsent,
    /// and a dropped guard's lock (or, on etcd, a waiter's place in the
    /// queue) would stay on the servers until its ttl, refusing others
    /// meanwhile.
    ///
    /// Guards still held are not waited for: only what they left behind
    /// once dropped. Bounded: each piece of that work is bounded by about a
    /// node timeout per round trip, so this returns within a few node
    /// timeouts of the last call (or drop) made before it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits, and dropping it stops no work.
    pub async fn settled(&self) {
        // The Locker's own work (a dropped guard's release) may start
        // backend work (etcd revokes the lease), never the other way round:
        // this order sees both through.
        self.shared.background.idle().await;
        self.shared.backend.settled().await;
    }

    /// One attempt: the lock now, or [`Error::NotObtained`] when another
    /// owner holds it.
    ///
    /// Cancellation safe: dropping the returned future at any point leaves no
    /// lock behind (whatever was granted is released in the background).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any await point leaves no lock
    /// behind. The hold is armed for release before the first request goes
    /// out, and whatever the nodes granted is released in the background
    /// ([`settled`](Locker::settled) waits for that).
    ///
    /// # Errors
    ///
    /// - [`Error::NotObtained`] when another owner holds the lock;
    /// - [`Error::InvalidKey`] for an empty or oversized key, before any I/O;
    /// - [`Error::QuorumUnavailable`] when too few nodes answered to decide;
    /// - [`Error::ValidityExhausted`] when the round took the whole ttl;
    /// - [`Error::ReentrancyLimit`] when this owner already holds the key
    ///   `max_reentrancy` deep;
    /// - [`Error::NotHeld`] for a nested acquire whose outer hold is gone from the
    ///   servers.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = fencelock::testing::RedisServer::start()?;
    /// # let url = server.url();
    /// use fencelock::{Error, Locker};
    ///
    /// let locker = Locker::redis([url.as_str()])?;
    /// let held = locker.try_lock("invoices").await?;
    /// // Another task is another owner: it is refused at once.
    /// let other = locker.clone();
    /// let refused = tokio::spawn(async move { other.try_lock("invoices").await }).await?;
    /// assert!(matches!(refused, Err(Error::NotObtained { .. })));
    /// held.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn try_lock(&self, key: &str) -> Result<LockGuard<B>> {
        self.try_hold(key, Mode::Exclusive, "try_lock")
            .await
            .map(LockGuard::from_held)
    }

    /// One attempt at a hold of `mode`, recorded as the call `call`.
    pub(crate) async fn try_hold(
        &self,
        key: &str,
        mode: Mode,
        call: &'static str,
    ) -> Result<Held<B>> {
        let span = self.acquire_span(call, key, mode);
        let started = Instant::now();
        let result = self.attempt(key, mode).instrument(span.clone()).await;
        self.record_acquire(&span, (key, mode), &result, started);
        result
    }

    /// The `tracing` span of one acquire call (docs/metrics.md, "Tracing"):
    /// the resource, never the owner or the hold.
    fn acquire_span(&self, call: &'static str, key: &str, mode: Mode) -> tracing::Span {
        tracing::debug_span!(
            "acquire",
            backend = self.shared.backend.name(),
            key,
            call,
            kind = mode.name(),
            outcome = Empty,
            token = Empty,
            nested = Empty,
            error = Empty,
        )
    }

    /// One attempt, not recorded (the public calls record their outcome once).
    async fn attempt(&self, key: &str, mode: Mode) -> Result<Held<B>> {
        validate_key(key)?;
        let owner = current_owner(self.instance, self.owner.as_ref());
        self.attempt_as(key, &owner, mode, false).await
    }

    /// One attempt by `owner` on a valid key; `waiting` when a waiter makes
    /// it (see [`Hold::waiting`]).
    async fn attempt_as(
        &self,
        key: &str,
        owner: &str,
        mode: Mode,
        waiting: bool,
    ) -> Result<Held<B>> {
        let mut parent = self.nesting(key, owner, mode)?;
        loop {
            match self
                .acquire_once(key, owner, mode, waiting, parent.clone())
                .await
            {
                // The outer hold was released (by another task of the same
                // explicit owner) between looking it up and the nodes
                // answering. Go again with whatever is live now, a first
                // acquire if nothing: each round follows progress by the
                // other task, so this cannot spin on its own.
                Err(Error::NotHeld { .. })
                    if parent.is_some() && self.nesting(key, owner, mode)? != parent =>
                {
                    parent = self.nesting(key, owner, mode)?;
                }
                other => return other,
            }
        }
    }

    /// The live hold an acquire of `mode` by `owner` nests in, if any; an
    /// error when the owner's live hold cannot take it (an upgrade, another
    /// kind). Permits never nest.
    fn nesting(&self, key: &str, owner: &str, mode: Mode) -> Result<Option<Parent>> {
        if matches!(mode, Mode::Permit { .. }) {
            return Ok(None);
        }
        match self.shared.live.parent(owner, self.prefix(), key) {
            None => Ok(None),
            Some(live) => {
                live.admits(mode, key)?;
                Ok(Some(live.parent))
            }
        }
    }

    async fn acquire_once(
        &self,
        key: &str,
        owner: &str,
        mode: Mode,
        waiting: bool,
        parent: Option<Parent>,
    ) -> Result<Held<B>> {
        let shared = &self.shared;
        let mut hold = Hold::new(key, owner, next_hold_id())
            .with_mode(mode)
            .waiting(waiting);
        if let Some(parent) = parent {
            hold = hold.nested_in(parent);
        }
        let mut armed = ReleaseOnDrop::arm(shared, hold);
        let ttl = shared.options.ttl;
        match shared
            .backend
            .try_acquire(armed.hold(), ttl, &shared.options)
            .await
        {
            Ok(grant) => {
                if let Some(slot) = grant.slot {
                    armed.place(slot);
                }
                armed.register(grant.token);
                let nested = armed.hold().parent().is_some();
                tracing::Span::current().record("nested", nested);
                Ok(Held::new(armed, grant.token, grant.valid_until))
            }
            Err(e) => {
                // The backend already undid the attempt on every node.
                armed.disarm();
                Err(e)
            }
        }
    }

    fn record_acquire(
        &self,
        span: &tracing::Span,
        (key, mode): (&str, Mode),
        result: &Result<Held<B>>,
        started: Instant,
    ) {
        let outcome = result.as_ref().map(|_| ());
        let took = started.elapsed();
        self.shared
            .telemetry
            .acquire(self.shared.key(key, mode), outcome, took);
        trace_acquired(span, result.as_ref().map(Held::token));
    }

    /// Waits for the lock, trying again after the retry policy's delay while
    /// the failure is retryable (contention, an outage). Without
    /// `max_attempts` in the policy this waits as long as it takes; see
    /// [`lock_timeout`](Locker::lock_timeout) for a bounded wait.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any await point leaves no lock
    /// behind. The hold is armed for release before the first request goes
    /// out, and whatever the nodes granted is released in the background
    /// ([`settled`](Locker::settled) waits for that).
    ///
    /// A waiter's place in a waiting line (local, or etcd's queue) is given up
    /// when the future is dropped.
    ///
    /// # Errors
    ///
    /// - [`Error::NotObtained`] or [`Error::QuorumUnavailable`] when the retry
    ///   policy's `max_attempts` ran out (the last attempt's error);
    /// - [`Error::InvalidKey`] for an empty or oversized key, before any I/O;
    /// - the errors of [`try_lock`](Locker::try_lock) that are not retryable.
    pub async fn lock(&self, key: &str) -> Result<LockGuard<B>> {
        self.wait_hold(key, Mode::Exclusive, "lock", None)
            .await
            .map(LockGuard::from_held)
    }

    /// Waits at most `wait` for the lock, then fails with [`Error::Timeout`].
    /// An attempt still in flight at the deadline is cancelled and undone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future at any await point leaves no lock
    /// behind. The hold is armed for release before the first request goes
    /// out, and whatever the nodes granted is released in the background
    /// ([`settled`](Locker::settled) waits for that).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `wait` ran out; otherwise as [`lock`](Locker::lock).
    pub async fn lock_timeout(&self, key: &str, wait: Duration) -> Result<LockGuard<B>> {
        self.wait_hold(key, Mode::Exclusive, "lock_timeout", Some(wait))
            .await
            .map(LockGuard::from_held)
    }
}

/// Records how an acquire call ended on its span: the outcome (the
/// `result` label of the acquire metric), and the token or the error. A
/// span closed without an outcome is a call whose future was dropped.
fn trace_acquired(span: &tracing::Span, result: Result<crate::fencing::FencingToken, &Error>) {
    let outcome = result.map(|_| ());
    span.record("outcome", telemetry::acquire_result(&outcome));
    match result {
        Ok(token) => span.record("token", token.get()),
        Err(e) => span.record("error", display(e)),
    };
}
