//! What a write to a fenced resource needs from a held lock, whichever
//! guard holds it.

use super::{LockGuard, WriteGuard};
use crate::backend::Backend;
use crate::fencing::{FencingToken, Sequencer};

/// A held lock that excludes every other holder of its name: a
/// [`LockGuard`] or a [`WriteGuard`]. Code that writes under a fencing
/// token takes one of these, so it serves both kinds of lock, and never a
/// [`ReadGuard`](crate::ReadGuard) or a [`Permit`](crate::Permit): their
/// holders share the name, so a write fenced by their token could
/// interleave with another holder's.
///
/// Sealed: implemented by this crate's exclusive guards only.
pub trait Exclusive: sealed::Sealed + Send + Sync {
    /// The resource name the lock holds.
    fn key(&self) -> &str;
    /// The fencing token of the hold.
    fn token(&self) -> FencingToken;
    /// Whether the lock is still certainly held (see
    /// [`LockGuard::is_held`]).
    fn is_held(&self) -> bool;
    /// The lock's name and the hold's token, for a resource that checks
    /// them with [`Locker::check_current`](crate::Locker::check_current).
    fn sequencer(&self) -> Sequencer {
        Sequencer::new(self.key(), self.token())
    }
}

mod sealed {
    pub trait Sealed {}
}

impl<B: Backend> sealed::Sealed for LockGuard<B> {}
impl<B: Backend> sealed::Sealed for WriteGuard<B> {}

impl<B: Backend> Exclusive for LockGuard<B> {
    fn key(&self) -> &str {
        LockGuard::key(self)
    }
    fn token(&self) -> FencingToken {
        LockGuard::token(self)
    }
    fn is_held(&self) -> bool {
        LockGuard::is_held(self)
    }
}

impl<B: Backend> Exclusive for WriteGuard<B> {
    fn key(&self) -> &str {
        WriteGuard::key(self)
    }
    fn token(&self) -> FencingToken {
        WriteGuard::token(self)
    }
    fn is_held(&self) -> bool {
        WriteGuard::is_held(self)
    }
}
