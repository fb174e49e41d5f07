//! The backend configurations every backend-generic suite runs against
//! (`conformance.rs`, `cancellation.rs`): Redis with one node, Redlock with
//! five, etcd with one member and with a cluster of three, each behind a
//! `Harness`; and `AnyBackend` (a Locker made from a URL list) on Redis and
//! on etcd.

use fencelock::testing::{EtcdCluster, RedisNodes};
use fencelock::{AnyBackend, Backend, Etcd, LockOptions, Locker, Redlock};

/// What the suite needs from a configuration: real servers, a Locker on
/// them, and a way to make the servers go away.
pub trait Harness: Sized + Send + 'static {
    type B: Backend;
    /// Cases this configuration cannot honour, each with the reason.
    const UNSUPPORTED: &'static [(&'static str, &'static str)] = &[];
    fn start() -> Self;
    fn locker(&self, options: LockOptions) -> Locker<Self::B>;
    /// Takes every server away (stopped, not killed: no data is lost).
    fn pause_all(&mut self);
    fn resume_all(&mut self);
}

/// A configuration of `N` servers of one kind: the harness of each kind is
/// the same but for the type of its server set, the backend, and how they
/// start.
macro_rules! harness {
    ($(#[$doc:meta])* $name:ident($servers:ty): $backend:ty, $start:path, $locker:path) => {
        $(#[$doc])*
        pub struct $name<const N: usize>(pub $servers);

        impl<const N: usize> Harness for $name<N> {
            type B = $backend;

            fn start() -> Self {
                Self($start(N))
            }

            fn locker(&self, options: LockOptions) -> Locker<$backend> {
                $locker(&self.0, options)
            }

            fn pause_all(&mut self) {
                for server in self.0.iter_mut() {
                    server.pause();
                }
            }

            fn resume_all(&mut self) {
                for server in self.0.iter_mut() {
                    server.resume();
                }
            }
        }
    };
}

harness!(
    /// Redis: one node (N = 1) or a Redlock quorum of N nodes.
    Redis(RedisNodes): Redlock, super::start, super::locker
);

harness!(
    /// etcd: one member (N = 1) or a cluster of N members, each Locker with
    /// a client of its own (as separate processes would have).
    EtcdMembers(EtcdCluster): Etcd, super::start_etcd, super::etcd_locker
);

harness!(
    /// Redis through `AnyBackend`, the Locker made from the nodes' URL list
    /// (`redis://...,redis://...`).
    ConfiguredRedis(RedisNodes): AnyBackend, super::start, super::any_redis_locker
);

harness!(
    /// etcd through `AnyBackend`, the Locker made from the members' URL
    /// list (`etcd://host:port,host:port`).
    ConfiguredEtcd(EtcdCluster): AnyBackend, super::start_etcd, super::any_etcd_locker
);
