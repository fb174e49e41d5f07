//! What a guard and its watchdog share: until when the lock is certainly
//! held, and whether it has been lost.

use std::time::Instant;

use tokio::sync::watch;

/// The state of one held lock as this process knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// Until when the lock is certainly held (local monotonic clock).
    valid_until: Instant,
    /// Set once, never cleared: a lost lock may have had another holder in
    /// the meantime, so no later renewal can make it safe again.
    lost: bool,
}

/// The lease of one guard. Its watchdog pushes the validity forward or marks
/// it lost; `lost()` waiters are woken through the watch channel.
#[derive(Debug)]
pub(crate) struct Lease {
    state: watch::Sender<State>,
}

impl Lease {
    pub(crate) fn new(valid_until: Instant) -> Self {
        Self {
            state: watch::Sender::new(State {
                valid_until,
                lost: false,
            }),
        }
    }

    pub(crate) fn valid_until(&self) -> Instant {
        self.state.borrow().valid_until
    }

    /// Held: not marked lost and still within its validity.
    pub(crate) fn is_held(&self) -> bool {
        let state = *self.state.borrow();
        !state.lost && Instant::now() < state.valid_until
    }

    /// Records a renewal confirmed at `until`. Both the old and the new
    /// deadline are sound bounds, so the later one wins. A renewal that
    /// completes after the validity ran out comes too late: the lock was not
    /// certainly held in between, so the lease is marked lost instead (and
    /// stays lost). Returns `Err(newly_lost)` when the renewal was refused.
    pub(crate) fn renewed(&self, until: Instant) -> Result<(), bool> {
        let now = Instant::now();
        let mut outcome = Ok(());
        self.state.send_if_modified(|state| {
            if state.lost {
                outcome = Err(false);
                false
            } else if now >= state.valid_until {
                state.lost = true;
                outcome = Err(true);
                true
            } else if until > state.valid_until {
                state.valid_until = until;
                true
            } else {
                false
            }
        });
        outcome
    }

    /// Marks the lease lost; true when this call was the one that did.
    pub(crate) fn mark_lost(&self) -> bool {
        self.state
            .send_if_modified(|state| !std::mem::replace(&mut state.lost, true))
    }

    /// Completes when the lease is lost: marked so, or its validity ran out
    /// without a renewal (also when no watchdog is running).
    pub(crate) async fn lost(&self) {
        let mut changes = self.state.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            if state.lost || Instant::now() >= state.valid_until {
                return;
            }
            let expiry = tokio::time::Instant::from_std(state.valid_until);
            tokio::select! {
                // The sender lives as long as `self`, so this never errs.
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(expiry) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn lost_completes_on_mark_and_on_expiry_but_not_while_renewed() {
        let lease = Lease::new(Instant::now() + Duration::from_secs(60));
        assert!(lease.is_held());
        let waiter = lease.lost();
        tokio::pin!(waiter);
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        assert!(lease.mark_lost());
        assert!(!lease.mark_lost(), "marked once");
        waiter.await;
        assert!(!lease.is_held());

        let lease = Lease::new(Instant::now() + Duration::from_millis(30));
        lease
            .renewed(Instant::now() + Duration::from_millis(60))
            .unwrap();
        let started = Instant::now();
        lease.lost().await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(!lease.is_held());
    }

    #[test]
    fn renewals_never_shorten_and_never_revive() {
        let now = Instant::now();
        let lease = Lease::new(now + Duration::from_secs(10));
        lease.renewed(now + Duration::from_secs(5)).unwrap();
        assert_eq!(lease.valid_until(), now + Duration::from_secs(10));
        lease.mark_lost();
        assert_eq!(lease.renewed(now + Duration::from_secs(20)), Err(false));
        assert_eq!(lease.valid_until(), now + Duration::from_secs(10));
        assert!(!lease.is_held());

        // A renewal confirmed after the validity ended is refused, and loses.
        let lapsed = Lease::new(Instant::now());
        assert_eq!(
            lapsed.renewed(Instant::now() + Duration::from_secs(5)),
            Err(true)
        );
        assert!(!lapsed.is_held());
        assert_eq!(
            lapsed.renewed(Instant::now() + Duration::from_secs(5)),
            Err(false)
        );
    }
}
