//! The registry of a Locker family's renewers, one per set of options.

use std::sync::{Arc, Mutex, Weak};

use super::renewer::Renewer;
use crate::backend::Background;
use crate::options::LockOptions;
use crate::sync::lock;

/// The renewers of a Locker's sets of options: Lockers derived with equal
/// options (`with_options`, called per lock say) share one schedule and
/// batch together, where each set of options needs its own (the interval,
/// the node timeout and the key prefix shape a batch).
#[derive(Default)]
pub(crate) struct Renewers(Mutex<Vec<(Arc<LockOptions>, Weak<Renewer>)>>);

impl std::fmt::Debug for Renewers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewers")
            .field("sets", &lock(&self.0).len())
            .finish()
    }
}

impl Renewers {
    /// The renewer of `options`: the one in use, or a new one.
    pub(crate) fn of(&self, options: &Arc<LockOptions>, background: &Background) -> Arc<Renewer> {
        let mut sets = lock(&self.0);
        sets.retain(|(_, renewer)| renewer.strong_count() > 0);
        let found = sets
            .iter()
            .find(|(theirs, _)| **theirs == **options)
            .and_then(|(_, renewer)| renewer.upgrade());
        found.unwrap_or_else(|| {
            let renewer = Arc::new(Renewer::new(background.clone()));
            sets.push((Arc::clone(options), Arc::downgrade(&renewer)));
            renewer
        })
    }
}
