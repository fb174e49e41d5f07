//! Distributed locks for work that must never run twice.
//!
//! fencelock takes a lock on a quorum of independent Redis nodes (Redlock;
//! one node is the N = 1 case of the same code), hands every new holder a
//! [`FencingToken`] that strictly grows so the protected resource can turn
//! away a holder whose lock ran out, and gives the lock back on every exit
//! path.
//!
//! ```no_run
//! # async fn demo() -> fencelock::Result<()> {
//! use std::time::Duration;
//! use fencelock::{Locker, LockOptions, Redlock};
//!
//! let nodes = Redlock::from_urls(["redis://127.0.0.1:7001", "redis://127.0.0.1:7002", "redis://127.0.0.1:7003"])?;
//! let locker = Locker::new(nodes, LockOptions::default().ttl(Duration::from_secs(10)))?;
//!
//! let guard = locker.lock_timeout("nightly-billing", Duration::from_secs(5)).await?;
//! // Pass guard.token() along with every write the lock protects.
//! println!("holding {} with token {}", guard.key(), guard.token());
//! guard.release().await?; // Err(NotHeld) if it had expired: never a silent success
//! # Ok(()) }
//! ```
//!
//! See `docs/algorithm.md` for how acquire, extend, release and the fencing
//! rule work, and which faults they tolerate.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod error;
mod fencing;
mod guard;
mod locker;
pub mod metrics;
mod options;
mod owner;

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{Backend, Grant, Hold};
pub use error::{Error, NodeFailure, NodeFault, Result};
pub use fencing::FencingToken;
pub use guard::LockGuard;
pub use locker::Locker;
pub use options::{LockOptions, MAX_KEY_LEN, MAX_PREFIX_LEN, MAX_TTL, RetryPolicy};

#[cfg(feature = "redis")]
pub use crate::redis::{RedisNode, Redlock};
#[cfg(feature = "redis")]
pub use deadpool_redis;
