//! Metric names, recorded through the `metrics` facade: install any
//! recorder (for example a Prometheus exporter) to collect them. Every
//! metric carries a `backend` label.

/// Counter: nodes found, during an acquire, with a fencing counter that
/// started over while other nodes were ahead, a sign that a node lost its
/// data (restart without persistence). See `docs/algorithm.md`.
pub const FENCE_COUNTER_RESET: &str = "fencelock_fence_counter_reset_total";

/// Counter: watchdog renewals, by `result`: `renewed` (a quorum confirmed
/// within the validity), `failed` (too few nodes answered in time; retried
/// while validity remains), `not_held` (the hold was gone), `error`.
pub const WATCHDOG_RENEW: &str = "fencelock_watchdog_renew_total";

/// Counter: held locks marked lost, because the watchdog could not renew
/// them in time, found them gone, or reached the `max_hold` cap.
pub const LOCK_LOST: &str = "fencelock_lock_lost_total";
