//! One checker client: acquire, write through the fenced store, release,
//! again and again, recording each step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fencelock::{Error, FencedStore, FencedWrite, LockOptions, Locker, RetryPolicy, Watchdog};

use crate::history::{Event, Nanos, ReleaseOutcome, What, WriteOutcome, now};

/// The lock every client takes.
pub const RESOURCE: &str = "checker";
/// The fenced store's resource every holder writes.
pub const STORE_RESOURCE: &str = "checker-state";
/// The locks' ttl. Short, so that pauses beyond it are cheap to inject.
pub const TTL: Duration = Duration::from_millis(600);
/// How long an acquire waits for the lock before giving up and trying again.
const WAIT: Duration = Duration::from_secs(2);
/// The pause after an acquire that failed at once (no quorum), so clients do
/// not spin while nodes are down.
const BACKOFF: Duration = Duration::from_millis(50);

/// What a client is and does.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    /// The lock nodes (in the checker, the proxies in front of them).
    pub nodes: Vec<String>,
    pub store: String,
    /// When to stop (no new acquire after it).
    pub until: Nanos,
    /// With the watchdog, a holder's lock is kept alive until the holder
    /// releases or is paused as a whole process. Without it, a holder that
    /// stalls longer than the ttl loses the lock while it thinks it holds it.
    pub watchdog: bool,
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

impl Client {
    /// Runs until `until`, handing each event to `record` as it happens.
    pub async fn run(&self, stall: Arc<Stall>, mut record: impl FnMut(Event)) {
        let locker = Locker::new(
            fencelock::Redlock::from_urls(&self.nodes).unwrap(),
            options(self.watchdog),
        )
        .unwrap();
        let store = FencedStore::from_url(&self.store).unwrap();
        let mut seq = 0u64;
        while now() < self.until {
            let start = now();
            let result = locker.lock_timeout(RESOURCE, WAIT).await;
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
            record(self.event(start, end, What::Acquired { token }));

            // The critical section: a little work, or a long stall.
            if stall.take() {
                tokio::time::sleep(STALL).await;
            } else {
                tokio::time::sleep(Duration::from_millis(rand::random_range(0..5))).await;
            }
            seq += 1;
            let value = format!("{}:{token}:{seq}", self.name);
            let start = now();
            let outcome = match store.write(STORE_RESOURCE, guard.token(), value).await {
                Ok(FencedWrite::Accepted) => WriteOutcome::Accepted,
                Ok(FencedWrite::Rejected { highest_seen }) => {
                    WriteOutcome::Rejected(highest_seen.get())
                }
                Err(_) => WriteOutcome::Failed,
            };
            record(self.event(start, now(), What::Write { token, outcome }));

            let start = now();
            let outcome = match guard.release().await {
                Ok(()) => ReleaseOutcome::Released,
                Err(Error::NotHeld { .. } | Error::Lost { .. }) => ReleaseOutcome::NotHeld,
                Err(_) => ReleaseOutcome::Failed,
            };
            record(self.event(start, now(), What::Release { token, outcome }));
        }
    }

    fn event(&self, start: Nanos, end: Nanos, what: What) -> Event {
        Event {
            client: self.name.clone(),
            start,
            end,
            what,
        }
    }
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
