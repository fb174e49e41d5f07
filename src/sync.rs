//! Locking the plain data the crate shares between tasks.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, also after a panic elsewhere poisoned it: everything the
/// crate keeps behind a std mutex is plain data changed in single steps, so
/// a panic cannot leave it half-written, and one failed task must not make
/// every later lock call panic too.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
