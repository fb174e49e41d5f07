#![doc = include_str!("../README.md")]
// The lints are set in Cargo.toml, once.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
#[cfg(any(feature = "redis", feature = "etcd"))]
mod config;
mod error;
mod fencing;
mod locker;
pub mod metrics;
mod options;
mod retry;
mod sync;
mod trace;

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use backend::{
    Backend, ForceReleased, Holder, ListCursor, ListPage, LockInfo, LockRecord, Mode, NodeView,
};
pub use error::{Error, NodeFailure, NodeFault, Result};
pub use fencing::{FencingToken, Sequencer};
pub use locker::{
    DowngradeError, Exclusive, Handoff, LockGuard, Locker, Owner, Permit, ReadGuard, Semaphore,
    Statistics, WriteGuard,
};
pub use options::{LockOptions, MAX_KEY_LEN, MAX_PERMITS, MAX_PREFIX_LEN, MAX_TTL, Watchdog};
pub use retry::{MAX_RETRY_PAUSE, RetryPolicy};

#[cfg(any(feature = "redis", feature = "etcd"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "redis", feature = "etcd"))))]
pub use crate::config::{AnyBackend, BackendConfig, Registry, RegistryConfig};
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use crate::etcd::Etcd;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use crate::redis::{Fenced, FencedRead, FencedStore, FencedWrite, RedisNode, Redlock};
/// TLS settings for [`RedisNode::from_url_with_tls`]: the root certificates
/// to trust and an optional client certificate (redis-rs's types).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use ::redis::{ClientTlsConfig, TlsCertificates};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use deadpool_redis;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use etcd_client;

// The end-to-end guide's Rust examples compile with the crate's doc-tests.
#[cfg(all(doctest, feature = "postgres", feature = "redis"))]
#[doc = include_str!("../docs/fencing.md")]
struct FencingGuide;
