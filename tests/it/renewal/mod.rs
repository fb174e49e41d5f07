//! The watchdog's batched renewals: one script call per node per tick for
//! any number of guards (`batch`), and where batching could fail its guards
//! (`faults`).

mod batch;
mod faults;
