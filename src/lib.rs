#![doc = include_str!("../README.md")]
// The lints are set in Cargo.toml, once.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admin;
mod backend;
mod background;
mod error;
mod fencing;
mod guard;
mod handoff;
mod lease;
mod locker;
pub mod metrics;
mod notify;
mod options;
mod owner;
mod queue;
mod sync;
mod telemetry;
mod watchdog;

#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use admin::{ForceReleased, Holder, ListCursor, ListPage, LockInfo, LockRecord, NodeView};
pub use backend::{Backend, Grant, Hold, Parent};
pub use error::{Error, NodeFailure, NodeFault, Result};
pub use fencing::FencingToken;
pub use guard::LockGuard;
pub use handoff::Handoff;
pub use locker::Locker;
pub use notify::{ReleaseWatch, Signal};
pub use options::{LockOptions, MAX_KEY_LEN, MAX_PREFIX_LEN, MAX_TTL, RetryPolicy, Watchdog};
pub use owner::Owner;
pub use telemetry::Statistics;

#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub use crate::etcd::Etcd;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use crate::redis::{Fenced, FencedStore, FencedWrite, RedisNode, Redlock};
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
