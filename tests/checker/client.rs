//! One checker client: acquire, write (or, as a reader, read) through the
//! fenced store, release, again and again, recording each step. A client
//! holds one of three things: the exclusive lock, the read-write lock (as
//! a reader or as a writer), or a permit of the semaphore, whose holder
//! writes the fenced resource of its slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fencelock::{
    AnyBackend, Error, Etcd, FencedRead, FencedStore, FencedWrite, FencingToken, LockGuard,
    LockOptions, Locker, Permit, ReadGuard, Redlock, RetryPolicy, Watchdog, WriteGuard,
};

use crate::database::Database;
use crate::history::{Event, Nanos, Outcome, ReleaseOutcome, Role, What, now};

/// The lock every lock client takes.
pub const RESOURCE: &str = "checker";
/// The fenced store's resource every lock holder writes.
pub const STORE_RESOURCE: &str = "checker-state";
/// The read-write lock every reader and writer takes.
pub const RW_LOCK: &str = "checker-rw";
/// The fenced resource readers read and writers write.
pub const RW_RESOURCE: &str = "checker-rw-state";
/// The semaphore every permit client takes, and its permits.
pub const SEMAPHORE: &str = "checker-sem";
pub const PERMITS: u32 = 3;
/// The locks' ttl. Short, so that pauses beyond it are cheap to inject.
pub const TTL: Duration = Duration::from_millis(600);
/// How long a node that lost its data waits before it votes again
/// (docs/algorithm.md, section 15): two ttls, so that a wiped node is back
/// within a nemesis step or two.
pub const QUARANTINE: Duration = Duration::from_millis(1200);
/// How long an acquire waits for the lock before giving up and trying again.
const WAIT: Duration = Duration::from_secs(2);
/// The pause after an acquire that failed at once (no quorum), so clients do
/// not spin while nodes are down.
const BACKOFF: Duration = Duration::from_millis(50);
/// The bound on one call to the fenced store: well below the ttl, so a
/// holder whose write got no answer can write again within its hold.
const STORE_TIMEOUT: Duration = Duration::from_millis(300);
/// The pause before a write that got no answer is sent again.
const STORE_RETRY_DELAY: Duration = Duration::from_millis(20);
/// How long a holder goes on writing again, at most, even while its hold
/// lasts (a watchdog keeps it): the store may be down for seconds.
const STORE_RETRY_FOR: Duration = Duration::from_secs(3);
/// How long a writer of the read-write lock waits between its holds. The
/// lock prefers writers: a waiting writer keeps new readers out, so two
/// writers that came back at once would leave the readers almost nothing.
const WRITER_IDLE: std::ops::Range<u64> = 50..200;

/// What a client is and does.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    /// What it holds, and what it does to the store under it.
    pub role: Role,
    /// Which backend `nodes` are.
    pub backend: Kind,
    /// The lock nodes or etcd members (in the checker, the proxies in
    /// front of them).
    pub nodes: Vec<String>,
    pub store: String,
    /// The PostgreSQL database every lock holder also commits to.
    pub database: String,
    /// When to stop (no new acquire after it).
    pub until: Nanos,
    /// With the watchdog, a holder's lock is kept alive until the holder
    /// releases or is paused as a whole process. Without it, a holder that
    /// stalls longer than the ttl loses the lock while it thinks it holds it.
    pub watchdog: bool,
    /// Whether it judges the nodes' clocks (`Redlock::with_clock_checks`).
    pub clock_checks: bool,
}

/// The backend a client locks with: the same loop and the same records on
/// either, through one `Locker<AnyBackend>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Redlock over Redis nodes (`redis://` URLs), with a quarantine for
    /// nodes that lost their data.
    Redis,
    /// An etcd cluster (`http://` endpoints).
    Etcd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Etcd => "etcd",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        [Kind::Redis, Kind::Etcd]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// Set by the nemesis: the client's next hold stalls for this long between
/// acquire and write, as in a long garbage-collection pause.
#[derive(Debug, Default)]
pub struct Stall(AtomicBool);

impl Stall {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// How long a stall lasts: well past the ttl, so the lock expires under it.
pub const STALL: Duration = TTL.saturating_mul(3);

/// The same options on either backend. The node timeout bounds one
/// request to a node or member: the watchdog needs three of them and a
/// renewal interval to fit in the ttl, so it stays at 100 ms, also for
/// etcd's transactions through raft.
pub fn options(watchdog: bool) -> LockOptions {
    LockOptions::default()
        .ttl(TTL)
        .node_timeout(Duration::from_millis(100))
        .watchdog(if watchdog {
            Watchdog::Auto
        } else {
            Watchdog::Off
        })
        .retry(
            RetryPolicy::default()
                .delay(Duration::from_millis(20))
                .jitter(Duration::from_millis(20)),
        )
}

/// A hold of any of the three primitives.
enum Guard {
    Lock(LockGuard<AnyBackend>),
    Read(ReadGuard<AnyBackend>),
    Write(WriteGuard<AnyBackend>),
    Permit(Permit<AnyBackend>),
}

impl Guard {
    fn token(&self) -> FencingToken {
        match self {
            Guard::Lock(g) => g.token(),
            Guard::Read(g) => g.token(),
            Guard::Write(g) => g.token(),
            Guard::Permit(g) => g.token(),
        }
    }

    fn slot(&self) -> Option<u32> {
        match self {
            Guard::Permit(g) => Some(g.slot()),
            _ => None,
        }
    }

    fn expires_at(&self) -> Instant {
        match self {
            Guard::Lock(g) => g.expires_at(),
            Guard::Read(g) => g.expires_at(),
            Guard::Write(g) => g.expires_at(),
            Guard::Permit(g) => g.expires_at(),
        }
    }

    async fn release(self) -> Result<(), Error> {
        match self {
            Guard::Lock(g) => g.release().await,
            Guard::Read(g) => g.release().await,
            Guard::Write(g) => g.release().await,
            Guard::Permit(g) => g.release().await,
        }
    }
}

/// An `Instant` (the standard library's monotonic clock, `CLOCK_MONOTONIC`
/// on Linux) as [`Nanos`] of the history's clock.
fn nanos_of(instant: Instant) -> Nanos {
    let (here, nanos) = (Instant::now(), now());
    let nanos_of = |d: Duration| u64::try_from(d.as_nanos()).unwrap();
    match instant.checked_duration_since(here) {
        Some(ahead) => nanos + nanos_of(ahead),
        None => nanos.saturating_sub(nanos_of(here - instant)),
    }
}

impl Client {
    /// Runs until `until`, handing each event to `record` as it happens.
    pub async fn run(&self, stall: Arc<Stall>, mut record: impl FnMut(Event)) {
        let backend = match self.backend {
            Kind::Redis => AnyBackend::from(
                Redlock::from_urls(&self.nodes)
                    .unwrap()
                    .with_quarantine(QUARANTINE)
                    .unwrap()
                    .with_clock_checks(self.clock_checks),
            ),
            // Without credentials this makes no request: members are
            // dialled on first use.
            Kind::Etcd => AnyBackend::from(Etcd::connect(&self.nodes, None).await.unwrap()),
        };
        let locker = Locker::new(backend, options(self.watchdog)).unwrap();
        let semaphore = locker.semaphore(SEMAPHORE, PERMITS).unwrap();
        let store = FencedStore::from_url(&self.store)
            .unwrap()
            .with_timeout(STORE_TIMEOUT)
            .unwrap();
        let database = Database::new(&self.database);
        let mut seq = 0u64;
        while now() < self.until {
            let start = now();
            let result = match self.role {
                Role::Lock => locker.lock_timeout(RESOURCE, WAIT).await.map(Guard::Lock),
                Role::Read => locker.read_timeout(RW_LOCK, WAIT).await.map(Guard::Read),
                Role::Write => locker.write_timeout(RW_LOCK, WAIT).await.map(Guard::Write),
                Role::Permit => semaphore.acquire_timeout(WAIT).await.map(Guard::Permit),
            };
            let end = now();
            let guard = match result {
                Ok(guard) => guard,
                Err(e) => {
                    let quick = matches!(e, Error::QuorumUnavailable { .. });
                    record(self.event(start, end, What::Refused { why: kind(&e) }));
                    if quick {
                        tokio::time::sleep(BACKOFF).await;
                    }
                    continue;
                }
            };
            let token = guard.token().get();
            let slot = guard.slot();
            record(self.event(start, end, What::Acquired { token, slot }));

            // A lock holder also opens a fenced transaction on the database
            // before its work, so a stall or a SIGSTOP lands inside it: the
            // commit after it must be refused if a newer holder committed.
            let mut conn = match &guard {
                Guard::Lock(_) => database.connection().await,
                _ => None,
            };
            let tx = match (&guard, conn.as_mut()) {
                (Guard::Lock(lock), Some(conn)) => Database::begin(conn, lock).await,
                _ => None,
            };

            // The critical section: a little work, or a long stall.
            if stall.take() {
                tokio::time::sleep(STALL).await;
            } else {
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..5))).await;
            }
            seq += 1;
            let value = format!("{}:{token}:{seq}", self.name);
            match (self.role, slot) {
                (Role::Read, _) => {
                    let start = now();
                    let (outcome, saw) = match store.read_fenced(RW_RESOURCE, guard.token()).await {
                        Ok(FencedRead::Accepted(seen)) => {
                            (Outcome::Accepted, seen.map(|s| s.fence.get()))
                        }
                        Ok(FencedRead::Rejected { highest_write }) => {
                            (Outcome::Rejected(highest_write.get()), None)
                        }
                        Err(_) => (Outcome::Failed, None),
                    };
                    let what = What::Read {
                        token,
                        outcome,
                        saw,
                    };
                    record(self.event(start, now(), what));
                }
                (role, slot) => {
                    let resource = match (role, slot) {
                        (Role::Permit, Some(slot)) => slot_resource(slot),
                        (Role::Write, _) => RW_RESOURCE.to_owned(),
                        _ => STORE_RESOURCE.to_owned(),
                    };
                    self.write(&store, &guard, &resource, &value, &mut record)
                        .await;
                }
            }
            if let Some(tx) = tx {
                // The database's own tally judges these commits; the
                // outcome is not part of the history.
                let _ = database.finish(tx).await;
            }

            // Until when the guard counted on its hold (the watchdog may have
            // moved it on since the acquire).
            let held_until = nanos_of(guard.expires_at());
            let start = now();
            let outcome = match guard.release().await {
                Ok(()) => ReleaseOutcome::Released,
                Err(Error::NotHeld { .. } | Error::Lost { .. }) => ReleaseOutcome::NotHeld,
                Err(_) => ReleaseOutcome::Failed,
            };
            let what = What::Release {
                token,
                outcome,
                held_until,
            };
            record(self.event(start, now(), what));
            if self.role == Role::Write {
                let idle = rand::random_range(WRITER_IDLE);
                tokio::time::sleep(Duration::from_millis(idle)).await;
            }
        }
    }

    /// The holder's fenced write, recorded try by try. A try that got no
    /// answer may or may not have been applied; as docs/fencing.md says,
    /// the holder writes again with the same token and value while its
    /// hold lasts (and for [`STORE_RETRY_FOR`] at most). The first try is
    /// always made, even past the hold: the fence must refuse it then.
    async fn write(
        &self,
        store: &FencedStore,
        guard: &Guard,
        resource: &str,
        value: &str,
        record: &mut impl FnMut(Event),
    ) {
        let (token, first) = (guard.token(), Instant::now());
        loop {
            let start = now();
            let outcome = match store.write(resource, token, value).await {
                Ok(FencedWrite::Accepted) => Outcome::Accepted,
                Ok(FencedWrite::Rejected { highest_seen }) => Outcome::Rejected(highest_seen.get()),
                Err(_) => Outcome::Failed,
            };
            let token = token.get();
            record(self.event(start, now(), What::Write { token, outcome }));
            let later = Instant::now() + STORE_RETRY_DELAY;
            if outcome != Outcome::Failed
                || later >= guard.expires_at()
                || first.elapsed() >= STORE_RETRY_FOR
            {
                return;
            }
            tokio::time::sleep(STORE_RETRY_DELAY).await;
        }
    }

    fn event(&self, start: Nanos, end: Nanos, what: What) -> Event {
        Event {
            client: self.name.clone(),
            role: self.role,
            start,
            end,
            what,
        }
    }
}

/// The fenced resource of one slot of the semaphore.
pub fn slot_resource(slot: u32) -> String {
    format!("{SEMAPHORE}/{slot}")
}

/// A short name for an error, for the counts of refused acquires.
fn kind(error: &Error) -> String {
    match error {
        Error::NotObtained { .. } => "busy",
        Error::Timeout { .. } => "timeout",
        Error::QuorumUnavailable { .. } => "no-quorum",
        Error::ValidityExhausted { .. } => "validity-exhausted",
        _ => "other",
    }
    .to_owned()
}
