//! Metric names, recorded through the `metrics` facade: install any
//! recorder (for example `metrics-exporter-prometheus`) to collect them, and
//! call [`describe`] once to give them help texts and units. Every metric
//! carries a `backend` label; a `key` label with the resource name only when
//! [`LockOptions::metrics_per_key`](crate::LockOptions::metrics_per_key) is
//! on. `docs/metrics.md` lists them all.
//!
//! The same counts are available without any recorder, per Locker, from
//! [`Locker::statistics`](crate::Locker::statistics).

/// Counter: acquire calls (`try_lock`, `lock`, `lock_timeout`, the lock
/// taken by `with_lock`), one per call however many attempts it made, by
/// `result`: `acquired`, `contended`, `timeout`, `quorum_unavailable`,
/// `error`.
pub const ACQUIRE: &str = "fencelock_acquire_total";

/// Counter: guards ended, by `release()` or by drop, by `result`:
/// `released` (held throughout), `not_held`, `lost`, `quorum_unavailable`,
/// `error`.
pub const RELEASE: &str = "fencelock_release_total";

/// Counter: explicit `extend()` calls, by `result`: `extended`,
/// `not_held`, `lost`, `quorum_unavailable`, `error`.
pub const EXTEND: &str = "fencelock_extend_total";

/// Counter: watchdog renewals, by `result`: `renewed` (a quorum confirmed
/// within the validity), `failed` (too few nodes answered in time; retried
/// while validity remains), `not_held` (the hold was gone), `error`.
pub const WATCHDOG_RENEW: &str = "fencelock_watchdog_renew_total";

/// Counter: held locks marked lost: the watchdog could not renew them in
/// time, found them gone, or reached the `max_hold` cap; or an `extend` or
/// `release` found the validity already run out.
pub const LOCK_LOST: &str = "fencelock_lock_lost_total";

/// Histogram, seconds: how long acquire calls that got the lock took, from
/// the call to the grant, waiting included.
pub const ACQUIRE_SECONDS: &str = "fencelock_acquire_seconds";

/// Histogram, seconds: how long waiting acquires (`lock`, `lock_timeout`)
/// waited before their outcome, whatever it was.
pub const WAIT_SECONDS: &str = "fencelock_wait_seconds";

/// Histogram, seconds: how long guards were held, from the grant to the
/// release or drop.
pub const HOLD_SECONDS: &str = "fencelock_hold_seconds";

/// Counter: nodes found, during an acquire, with a fencing counter that
/// started over while other nodes were ahead, a sign that a node lost its
/// data (restart without persistence). See `docs/algorithm.md`.
pub const FENCE_COUNTER_RESET: &str = "fencelock_fence_counter_reset_total";

/// Counter: nodes found without the marker every node keeps, so after they
/// lost their data, and quarantined (label `backend="redis"`). A new
/// cluster's nodes, marked together by one acquire, are not counted. See
/// `docs/algorithm.md`, section 15.
pub const NODE_DATA_LOST: &str = "fencelock_node_data_lost_total";

/// Counter: node clocks found, across two requests, to have moved further
/// than this client's monotonic clock could have (`direction="ahead"`: a
/// jump forward or a fast clock, after which the node's votes do not count
/// for a quarantine) or less (`direction="behind"`), beyond the drift
/// allowance (label `backend="redis"`). See `docs/algorithm.md`, section 16.
pub const NODE_CLOCK_JUMP: &str = "fencelock_node_clock_jump_total";

/// Counter: fallbacks run instead of the work because the lock service
/// could not be reached (`Locker::with_lock_or_fallback`).
pub const FALLBACK: &str = "fencelock_fallback_total";

/// Registers help texts and units for every metric with the installed
/// recorder (exporters show them, e.g. as Prometheus `# HELP` lines). Call
/// it once, after installing the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(ACQUIRE, "Acquire calls by result.");
    describe_counter!(RELEASE, "Guards ended (release or drop) by result.");
    describe_counter!(EXTEND, "Explicit extend calls by result.");
    describe_counter!(WATCHDOG_RENEW, "Watchdog renewals by result.");
    describe_counter!(LOCK_LOST, "Held locks marked lost.");
    describe_counter!(
        FALLBACK,
        "Fallbacks run instead of the work: the lock service was unreachable."
    );
    describe_counter!(
        FENCE_COUNTER_RESET,
        "Nodes whose fencing counter started over while others were ahead."
    );
    describe_counter!(
        NODE_DATA_LOST,
        "Nodes found without their marker (they lost their data) and quarantined."
    );
    describe_counter!(
        NODE_CLOCK_JUMP,
        "Node clocks found ahead of (or behind) this client's beyond the drift allowance."
    );
    describe_histogram!(
        ACQUIRE_SECONDS,
        Unit::Seconds,
        "Time from an acquire call to its grant."
    );
    describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "Time waiting acquires waited before their outcome."
    );
    describe_histogram!(HOLD_SECONDS, Unit::Seconds, "Time guards were held.");
}
