//! The integration tests, as one binary: one module per concern (each was
//! a test binary of its own, and each of those linked the whole
//! tokio/redis/etcd/tonic stack again), sharing the helpers of `common`.
//! Run one concern with a filter on its module, e.g.
//! `cargo test --test it -- conformance::` (libtest filters are substrings
//! of the test's path, `module::test_name`).
//!
//! Tests here run side by side, so none may change what the whole process
//! shares: no process-wide `metrics` recorder (a test that counts metrics
//! sets a thread-local one, on a current-thread runtime, and sees only its
//! own), no environment variables set (read-only is fine), no process-wide
//! state whose absence another test relies on. The rustls crypto provider
//! is process-wide, but fencelock itself installs the same one the first
//! time any TLS node is set up, whoever asks first, so `tls` is fine here.
//!
//! What stays a binary of its own, and why:
//!
//! - `tests/prometheus.rs` installs the process-wide Prometheus recorder,
//!   which cannot be removed again. Here it would record every other test's
//!   metrics too: its exact deltas of the `backend="redis"` counters would
//!   count other tests' locks, and the tests that check what happens with
//!   no recorder would run with one, depending on the order.
//! - `tests/checker/` runs a long (40 s a run by default,
//!   `FENCELOCK_CHECKER_SECS`) fault-injection checker that re-executes its
//!   own test binary as a client process (`current_exe()`, selected by an
//!   environment variable); its clients, with a 600 ms ttl, are best not
//!   starved of the CPU by the rest of the suite (see docs/safety.md).

mod common;

mod admin;
mod amnesia;
mod auth;
mod bad_input;
mod cancellation;
mod cli; // only with the `cli` feature (its `#![cfg]`)
mod clocks;
mod config;
mod conformance;
mod etcd;
mod fallback;
mod faults;
mod fenced_store;
mod fixtures;
mod hostile;
mod locking;
mod metrics;
mod notifications;
mod postgres;
mod properties;
mod reentrancy;
mod renewal;
mod rwlock;
mod secrets;
mod semaphore;
mod send_sync;
mod static_checks;
mod tls; // only with the `tls` feature (its `#![cfg]`)
mod tracing_events;
mod watchdog;
