//! Waiting for a lock: the retry loop of [`Locker::lock`] and
//! [`Locker::lock_timeout`], and how a waiter learns the lock may be free.
//!
//! Waiting comes in three rooms, all entered from here: the local line
//! ([`line`](super::line)) for backends that only announce releases, the
//! backend's release watch ([`ReleaseWatch`]), and a backend's own fair queue
//! (etcd's `queue.rs`), whose place the watch then is. Which of them a waiter
//! uses is decided by the predicates of [`Waiter`].

use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::backend::{Backend, Mode, ReleaseWatch, Waiting};
use crate::error::{Error, Result};
use crate::options::validate_key;

use super::Locker;
use super::held::Held;
use super::line::Place;
use super::owner::current_owner;

/// One waiter for one lock: its attempts so far and its release watch.
struct Waiter<'a, B: Backend> {
    locker: &'a Locker<B>,
    key: &'a str,
    mode: Mode,
    owner: String,
    /// The release watch, once subscribed.
    watch: Option<ReleaseWatch>,
    /// Whether to subscribe after the next refused attempt.
    subscribe: bool,
    attempts: u32,
    /// How long an outage may last before the wait gives up on it (see
    /// [`Error::is_outage`]); `None`: as long as it takes.
    patience: Option<Duration>,
    /// Since when every attempt has failed with an outage.
    outage_since: Option<Instant>,
}

impl<B: Backend> Locker<B> {
    /// Waits for a hold of `mode`, at most `wait` if given, recorded as the
    /// call `call`.
    pub(crate) async fn wait_hold(
        &self,
        key: &str,
        mode: Mode,
        call: &'static str,
        wait: Option<Duration>,
    ) -> Result<Held<B>> {
        self.wait_hold_patient(key, mode, call, wait, None).await
    }

    /// [`wait_hold`](Self::wait_hold) that gives up on an outage after
    /// `patience`.
    pub(crate) async fn wait_hold_patient(
        &self,
        key: &str,
        mode: Mode,
        call: &'static str,
        wait: Option<Duration>,
        patience: Option<Duration>,
    ) -> Result<Held<B>> {
        let span = self.acquire_span(call, key, mode);
        let started = Instant::now();
        let result = match wait {
            None => {
                self.wait_for(key, mode, patience)
                    .instrument(span.clone())
                    .await
            }
            Some(wait) => {
                let waited = tokio::time::timeout(wait, self.wait_for(key, mode, patience));
                match waited.instrument(span.clone()).await {
                    Ok(result) => result,
                    Err(_) => Err(Error::Timeout {
                        key: key.to_owned(),
                        waited: wait,
                    }),
                }
            }
        };
        self.record_wait(&span, (key, mode), &result, started);
        result
    }

    fn record_wait(
        &self,
        span: &tracing::Span,
        (key, mode): (&str, Mode),
        result: &Result<Held<B>>,
        started: Instant,
    ) {
        self.record_acquire(span, (key, mode), result, started);
        let key = self.shared.key(key, mode);
        self.shared.telemetry.waited(key, started.elapsed());
    }

    /// The retry loop of `lock` and `lock_timeout`, not recorded.
    ///
    /// With release notifications, a waiter tries again as soon as the lock
    /// may have been freed, and after the retry delay otherwise.
    ///
    /// With `patience`, an outage that lasts that long ends the wait with
    /// the last attempt's error; contention still waits.
    pub(super) async fn wait_for(
        &self,
        key: &str,
        mode: Mode,
        patience: Option<Duration>,
    ) -> Result<Held<B>> {
        validate_key(key)?;
        let mut waiter = Waiter::new(self, key, mode);
        waiter.patience = patience;
        let heads = match mode {
            Mode::Permit { permits } => permits,
            _ => 1,
        };
        let place = waiter
            .lines_up()
            .then(|| self.shared.lines.join(self.prefix(), key, heads));
        let _turn = match &place {
            Some(place) => Some(place.turn().await),
            None => None,
        };
        loop {
            let refused = match waiter.attempt().await {
                Ok(guard) => return Ok(guard),
                Err(e) if waiter.may_retry(&e) => e,
                Err(e) => return Err(e),
            };
            tracing::trace!(
                attempts = waiter.attempts,
                error = %refused,
                "attempt refused; waiting to try again"
            );
            if waiter.subscribe(place.as_ref(), &refused).await {
                continue;
            }
            waiter.pause(place.as_ref(), &refused).await;
        }
    }
}

impl<'a, B: Backend> Waiter<'a, B> {
    fn new(locker: &'a Locker<B>, key: &'a str, mode: Mode) -> Self {
        Self {
            locker,
            key,
            mode,
            owner: current_owner(locker.instance, locker.owner.as_ref()),
            watch: None,
            subscribe: locker.shared.options.wake_on_release
                && locker.shared.backend.waiting() != Waiting::Polling,
            attempts: 0,
            patience: None,
            outage_since: None,
        }
    }

    /// Whether this waiter takes a place in the Locker's local line for its
    /// key, where only the head of the line tries.
    ///
    /// Not with a backend that queues waiters itself (its queue orders them
    /// across processes, so each waiter takes its own place there), nor
    /// without release news (nothing would tell the head that it may try
    /// again sooner than its retry delay: lining up would only add waits).
    /// Not with an explicit owner: a task sharing the owner may take the
    /// lock meanwhile, and this waiter must then nest at once instead of
    /// queueing behind others that wait for that very lock. Not for a nested
    /// acquire, for the same reason. Not with an attempt limit: in the
    /// line it could wait any time behind others before its first try. And
    /// not a reader: readers do not exclude each other, so a line would
    /// only make each wait for the round trip of the one before; a
    /// writer's release lets all of them in at once, and a waiting writer
    /// keeps new ones out on the servers. And not a waiter with a
    /// patience for outages: behind a head that waits an outage out for
    /// ever, its own patience would never start.
    fn lines_up(&self) -> bool {
        let shared = &self.locker.shared;
        self.mode != Mode::Read
            && self.patience.is_none()
            && self.subscribe
            && shared.backend.waiting() == Waiting::Notified
            && self.locker.owner.is_none()
            && shared.options.retry.max_attempts.is_none()
            && shared
                .live
                .parent(&self.owner, self.locker.prefix(), self.key)
                .is_none()
    }

    /// Whether the backend's own queue is trusted to wake this waiter when
    /// its turn comes. One with an explicit owner polls too: a task sharing
    /// the owner may take the lock, and the waiter must then nest at once.
    fn trusts_queue(&self) -> bool {
        self.locker.shared.backend.waiting() == Waiting::Queued && self.locker.owner.is_none()
    }

    async fn attempt(&mut self) -> Result<Held<B>> {
        self.attempts = self.attempts.saturating_add(1);
        if let Some(watch) = &mut self.watch {
            watch.mark_seen();
        }
        self.locker
            .attempt_as(self.key, &self.owner, self.mode, true)
            .await
    }

    /// Whether a refusal is worth another attempt under the retry policy,
    /// and, for an outage, under the waiter's patience.
    fn may_retry(&mut self, e: &Error) -> bool {
        let retry = &self.locker.shared.options.retry;
        if !(e.is_retryable() && retry.max_attempts.is_none_or(|max| self.attempts < max)) {
            return false;
        }
        let Some(patience) = self.patience else {
            return true;
        };
        if !e.is_outage() {
            self.outage_since = None;
            return true;
        }
        self.outage_since.get_or_insert_with(Instant::now).elapsed() < patience
    }

    /// Subscribes to release news after the first refusal; `true` when the
    /// waiter should try again at once, before any pause.
    async fn subscribe(&mut self, place: Option<&Place>, refused: &Error) -> bool {
        if !std::mem::take(&mut self.subscribe) {
            return false;
        }
        let shared = &self.locker.shared;
        let make = || {
            shared
                .backend
                .watch_releases(self.key, &self.owner, self.mode, &shared.options)
        };
        let subscribed = match place {
            Some(place) => place.watch(make),
            None => make(),
        };
        let Some(mut subscribed) = subscribed else {
            return false;
        };
        // A release between the failed attempt and the subscription would
        // go unheard: once enough servers listen (or a node timeout passed),
        // try again.
        subscribed.listening(shared.options.node_timeout).await;
        self.watch = Some(subscribed);
        // A queue says itself when the turn comes (also if it came already);
        // a try before that is refused for sure.
        if self.trusts_queue() && matches!(refused, Error::NotObtained { .. }) {
            return false;
        }
        // This extra try does not count as an attempt.
        self.attempts -= 1;
        true
    }

    /// Waits until the lock may be free: release news, or the retry delay.
    async fn pause(&mut self, place: Option<&Place>, refused: &Error) {
        let delay = tokio::time::sleep(self.delay(refused));
        match &mut self.watch {
            Some(watch) => {
                tokio::select! {
                    () = claimed_news(watch, place) => {}
                    () = delay => {}
                }
            }
            None => delay.await,
        }
    }

    fn delay(&self, refused: &Error) -> Duration {
        let options = &self.locker.shared.options;
        let delay = options.retry.next_delay();
        match refused {
            Error::NotObtained {
                expires_in: Some(left),
                ..
            } => {
                // An expiry is announced by nobody: be there when the lock
                // runs out, if that comes first.
                delay.min(*left + Duration::from_millis(1))
            }
            Error::NotObtained { .. } if self.watch.is_some() && self.trusts_queue() => {
                // The queue tells this waiter when it is its turn, expiries
                // included, and takes a place anew after an outage; a try
                // before that is refused for sure and costs the servers
                // writes. Keep a slow poll as a safety net.
                delay.max(options.ttl)
            }
            _ => delay,
        }
    }
}

/// Completes at release news this waiter may act on: any news, for a
/// waiter outside a line; in a line, news that no other head claimed.
async fn claimed_news(watch: &mut ReleaseWatch, place: Option<&Place>) {
    loop {
        watch.released().await;
        match place {
            Some(place) if !place.claim(watch.releases()) => {}
            _ => return,
        }
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;
    use crate::{LockOptions, Redlock};

    #[tokio::test]
    async fn readers_do_not_line_up_and_everyone_else_does() {
        // Nothing is asked of the node: lining up is decided locally.
        let backend = Redlock::from_urls(["redis://127.0.0.1:9"]).unwrap();
        let locker = Locker::new(backend, LockOptions::default()).unwrap();
        for (mode, lines_up) in [
            (Mode::Exclusive, true),
            (Mode::Write, true),
            (Mode::Permit { permits: 4 }, true),
            (Mode::Read, false),
        ] {
            assert_eq!(
                Waiter::new(&locker, "k", mode).lines_up(),
                lines_up,
                "{mode:?}"
            );
        }
        // A waiter with a patience for outages waits outside the line: a
        // head that waits an outage out for ever would hold it back.
        let mut patient = Waiter::new(&locker, "k", Mode::Exclusive);
        patient.patience = Some(Duration::from_secs(1));
        assert!(!patient.lines_up());
    }
}
