//! Lock-delay timings that hold on every backend, and the checks of a
//! name kept for the delay.

use super::*;

/// A ttl and a lock-delay that a backend's servers keep apart on a loaded
/// machine, for the lock-delay cases (`conformance`, `rwlock`,
/// `semaphore`). Redis ends a key to the millisecond. etcd's leases are
/// whole seconds (a 300 ms ttl is a 1 s lease already, with a delay or
/// without) and its leader reaps the expired ones every 500 ms, so there
/// the delay must outlast that rounding by far.
#[derive(Debug, Clone, Copy)]
pub struct Delayed {
    pub ttl: Duration,
    pub delay: Duration,
    /// How long past its due time the servers may still keep a lease.
    pub late: Duration,
    /// How long the holder is kept (renewed) before it vanishes.
    pub hold: Duration,
}

/// Far above a waiter's wake-up and a few round trips: the bound on how
/// long after the name is free again a waiter has it.
pub const DELAY_SLACK: Duration = Duration::from_secs(3);

impl Delayed {
    /// For a holder that vanishes right after its grant.
    pub fn after_grant(backend: &str) -> Self {
        match backend {
            "etcd" => Self {
                ttl: Duration::from_secs(1),
                delay: Duration::from_secs(3),
                late: Duration::from_millis(700),
                hold: Duration::ZERO,
            },
            _ => Self {
                ttl: Duration::from_millis(300),
                delay: Duration::from_millis(700),
                late: Duration::from_millis(100),
                hold: Duration::ZERO,
            },
        }
    }

    /// For a holder that the watchdog renews for `hold` before it
    /// vanishes. On Redis the hold outlasts a grant's ttl and delay, so
    /// that only the renewals can keep the name taken at the end.
    pub fn after_renewals(backend: &str) -> Self {
        match backend {
            "etcd" => Self {
                ttl: Duration::from_secs(2),
                delay: Duration::from_secs(3),
                late: Duration::from_millis(700),
                hold: Duration::from_secs(1),
            },
            _ => Self {
                ttl: Duration::from_millis(600),
                delay: Duration::from_millis(1000),
                late: Duration::from_millis(100),
                hold: Duration::from_secs(2),
            },
        }
    }

    /// The options of the holder that will vanish: this ttl, `delay`,
    /// no watchdog, and a node timeout well below the ttl.
    pub fn options(&self, delay: Duration) -> LockOptions {
        options()
            .ttl(self.ttl)
            .node_timeout(Duration::from_millis(100))
            .watchdog(Watchdog::Off)
            .lock_delay(delay)
    }

    /// What another client sees of a name whose holder vanished (its last
    /// grant or renewal asked for at `asked`, with `delay` in force; the
    /// last reply in at `answered`): half-way through the delay the name
    /// is still refused, and the refusal tells of the real expiry on the
    /// servers; a waiter then has it once the ttl and the delay have run
    /// out, not before and not much later. With no delay, a waiter has it
    /// by that half-way point (of `self.delay`), after the ttl.
    pub async fn outlasted<T: std::fmt::Debug>(
        &self,
        (asked, answered): (Instant, Instant),
        delay: Duration,
        mut try_once: impl AsyncFnMut() -> fencelock::Result<T>,
        wait: impl AsyncFnOnce(Duration) -> fencelock::Result<T>,
    ) -> T {
        // The servers started the lease after `asked`: it cannot end before.
        let free_at = asked + self.ttl + delay;
        // Half-way between the latest moment a lease of the ttl alone could
        // end (from the last reply, plus the servers' lateness) and the
        // earliest the delay can: a wide margin on either side.
        let halfway = answered + self.ttl + self.late + self.delay.saturating_sub(self.late) / 2;
        let deadline = if delay.is_zero() {
            halfway
        } else {
            tokio::time::sleep_until(halfway.into()).await;
            let refused = try_once().await;
            let told = Instant::now();
            match refused {
                Err(fencelock::Error::NotObtained { expires_in, .. }) => {
                    // Told the real expiry on the servers (PTTL on Redis):
                    // a lease of the ttl alone has run out, and a waiter
                    // told so would try again and again until the delay
                    // is over. (A few ms of leeway: PTTL is in whole ms,
                    // and the servers keep another clock.)
                    if let Some(left) = expires_in {
                        assert!(
                            told + left + Duration::from_millis(20) >= free_at,
                            "told it expires in {left:?}, {:?} before its ttl and delay run out",
                            free_at.saturating_duration_since(told + left)
                        );
                    }
                }
                other => panic!(
                    "{:?} after the vanished holder's grant, within its ttl {:?} and lock-delay \
                     {delay:?}: expected NotObtained, got {other:?}",
                    asked.elapsed(),
                    self.ttl
                ),
            }
            free_at + self.late + DELAY_SLACK
        };
        let got = wait(deadline.saturating_duration_since(Instant::now()))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the name did not come back within {:?} of the vanished holder's grant \
                     (ttl {:?}, lock-delay {delay:?}): {e}",
                    deadline - asked,
                    self.ttl
                )
            });
        let took = asked.elapsed();
        // A few ms of leeway: the servers keep another clock.
        assert!(
            took + Duration::from_millis(20) >= self.ttl + delay,
            "the name came back {took:?} after the vanished holder's grant, before its ttl {:?} \
             and lock-delay {delay:?} ran out",
            self.ttl
        );
        got
    }
}
