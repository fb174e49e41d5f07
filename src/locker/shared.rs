//! What a Locker shares with its clones, its guards and their watchdogs.
//!
//! Its own module so that the guard and the watchdog both depend on it and
//! not on each other.

use std::sync::{Arc, Weak};

use crate::backend::Background;
use crate::backend::{Backend, Hold, Mode};
use crate::options::LockOptions;

use super::line::WaitLines;
use super::reentry::LiveHolds;
use super::renewer::Renewer;
use super::renewers::Renewers;
use super::telemetry::{Key, Telemetry};

/// What a Locker shares with its clones, guards and watchdogs.
pub(crate) type Shared<B> = Parts<Arc<B>>;

/// A [`Shared`] that keeps everything but the backend: what a task that
/// may outlive every Locker and guard (an idle renewer) holds between its
/// turns, so that it never keeps the backend's connections open by itself.
pub(crate) type WeakShared<B> = Parts<Weak<B>>;

/// The backend, held as `P`, and what goes with it.
#[derive(Clone)]
pub(crate) struct Parts<P> {
    pub(crate) backend: P,
    pub(crate) options: Arc<LockOptions>,
    pub(crate) live: Arc<LiveHolds>,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) lines: Arc<WaitLines>,
    /// The watchdog of every guard taken with these options: one task
    /// renewing them in batches.
    pub(crate) renewer: Arc<Renewer>,
    /// The renewers of every set of options in use by this Locker's
    /// family, so that equal options share one.
    pub(crate) renewers: Arc<Renewers>,
    /// Dropped guards' releases and stopped watchdogs still running, for
    /// [`Locker::settled`](crate::Locker::settled).
    pub(crate) background: Background,
}

impl<P> Parts<P> {
    /// The same parts with the backend held as `f` makes it.
    fn map_backend<Q>(&self, f: impl FnOnce(&P) -> Q) -> Parts<Q> {
        Parts {
            backend: f(&self.backend),
            options: Arc::clone(&self.options),
            live: Arc::clone(&self.live),
            telemetry: Arc::clone(&self.telemetry),
            lines: Arc::clone(&self.lines),
            renewer: Arc::clone(&self.renewer),
            renewers: Arc::clone(&self.renewers),
            background: self.background.clone(),
        }
    }
}

impl<B> Shared<B> {
    pub(crate) fn downgrade(&self) -> WeakShared<B> {
        self.map_backend(Arc::downgrade)
    }
}

impl<B> WeakShared<B> {
    /// The Shared again, while anything else keeps the backend.
    pub(crate) fn upgrade(&self) -> Option<Shared<B>> {
        let backend = self.backend.upgrade()?;
        Some(self.map_backend(|_| backend))
    }
}

impl<B: Backend> Shared<B> {
    /// Settles a hold whose lease was just found lost (`newly_lost` when
    /// this caller was the one that marked it): nothing may nest inside it
    /// any more, so the owner's next acquire counts afresh, and the loss is
    /// counted once.
    pub(crate) fn forget_lost(&self, hold: &Hold, newly_lost: bool) {
        self.live.remove(&self.options.key_prefix, hold);
        if newly_lost {
            tracing::warn!(
                backend = self.backend.name(),
                key = hold.key(),
                "lock lost: it can no longer be counted on"
            );
            self.telemetry.lost(self.key(hold.key(), hold.mode()));
        }
    }

    /// The record key for `name` under these options.
    pub(crate) fn key<'a>(&'a self, name: &'a str, mode: Mode) -> Key<'a> {
        Key {
            name,
            kind: mode.name(),
            options: &self.options,
        }
    }
}
