//! Metric names, recorded through the `metrics` facade: install any
//! recorder (for example a Prometheus exporter) to collect them. Every
//! metric carries a `backend` label.

/// Counter: nodes found, during an acquire, with a fencing counter that
/// started over while other nodes were ahead, a sign that a node lost its
/// data (restart without persistence). See `docs/algorithm.md`.
pub const FENCE_COUNTER_RESET: &str = "fencelock_fence_counter_reset_total";
