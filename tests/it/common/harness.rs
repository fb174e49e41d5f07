//! The backend configurations every backend-generic suite runs against
//! (`conformance.rs`, `cancellation.rs`): Redis with one node, Redlock with
//! five, etcd with one member and with a cluster of three, each behind a
//! `Harness`.

use fencelock::testing::{EtcdCluster, RedisNodes};
use fencelock::{Backend, Etcd, LockOptions, Locker, Redlock};

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

/// Redis: one node (N = 1) or a Redlock quorum of N nodes.
pub struct Redis<const N: usize>(pub RedisNodes);

impl<const N: usize> Harness for Redis<N> {
    type B = Redlock;

    fn start() -> Self {
        Self(super::start(N))
    }

    fn locker(&self, options: LockOptions) -> Locker<Redlock> {
        super::locker(&self.0, options)
    }

    fn pause_all(&mut self) {
        for node in self.0.iter_mut() {
            node.pause();
        }
    }

    fn resume_all(&mut self) {
        for node in self.0.iter_mut() {
            node.resume();
        }
    }
}

/// etcd: one member (N = 1) or a cluster of N members, each Locker with a
/// client of its own (as separate processes would have).
pub struct EtcdMembers<const N: usize>(pub EtcdCluster);

impl<const N: usize> Harness for EtcdMembers<N> {
    type B = Etcd;

    fn start() -> Self {
        Self(super::start_etcd(N))
    }

    fn locker(&self, options: LockOptions) -> Locker<Etcd> {
        super::etcd_locker(&self.0, options)
    }

    fn pause_all(&mut self) {
        for member in self.0.iter_mut() {
            member.pause();
        }
    }

    fn resume_all(&mut self) {
        for member in self.0.iter_mut() {
            member.resume();
        }
    }
}
