//! A cluster of etcd fixtures: one raft group, members addressed by index.

use std::time::Duration;

use super::EtcdServer;
use super::probe::poll_until;
use crate::testing::FixtureError;
use crate::testing::process;

/// An etcd cluster of N members on 127.0.0.1: one raft group, one keyspace,
/// available while a majority of its members runs.
///
/// Members are addressed by index (`0..len()`), and killed, paused, resumed
/// and restarted through [`member_mut`](Self::member_mut). Dropping the
/// cluster drops every member.
///
/// ```no_run
/// use std::time::Duration;
///
/// use fencelock::testing::EtcdCluster;
///
/// let mut cluster = EtcdCluster::start(3)?;
/// cluster.member_mut(1).kill();
/// cluster.member_mut(2).kill();
/// // No quorum: the survivor cannot serve.
/// assert!(!cluster.member(0).wait_healthy(Duration::from_secs(5)));
/// cluster.restart_members(&[1, 2])?;
/// assert!(cluster.wait_healthy(Duration::from_secs(10)));
/// # Ok::<(), fencelock::testing::FixtureError>(())
/// ```
#[derive(Debug)]
pub struct EtcdCluster {
    pub(super) token: String,
    pub(super) members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts an `n`-member cluster with the default settings and waits
    /// until every member reports healthy.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start(n: usize) -> Result<Self, FixtureError> {
        EtcdServer::builder().start_cluster(n)
    }

    /// The client URL of every member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// The cluster's `--initial-cluster-token`, unique to this fixture.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn member(&self, i: usize) -> &EtcdServer {
        &self.members[i]
    }

    /// Member `i`, mutably (to kill, pause, resume or restart it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn member_mut(&mut self, i: usize) -> &mut EtcdServer {
        &mut self.members[i]
    }

    /// Iterates over the members.
    pub fn iter(&self) -> impl Iterator<Item = &EtcdServer> {
        self.members.iter()
    }

    /// Iterates mutably over the members.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut EtcdServer> {
        self.members.iter_mut()
    }

    /// Restarts the given members together, like
    /// [`EtcdServer::restart`] but spawning all of them before waiting for
    /// any: needed to bring back a majority (e.g. every member of a killed
    /// cluster). Duplicate indices count once. On error the given members
    /// are killed.
    ///
    /// # Panics
    /// If an index is `>= self.len()`.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn restart_members(&mut self, indices: &[usize]) -> Result<(), FixtureError> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.members.len()) {
            panic!(
                "member index {i} out of range for a cluster of {}",
                self.members.len()
            );
        }
        let mut batch: Vec<&mut EtcdServer> = self
            .members
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| indices.contains(i))
            .map(|(_, member)| member)
            .collect();
        process::restart(&mut batch)
    }

    /// Probes until every member is healthy in the same round, or until
    /// `timeout` has passed (plus at most one round), and returns the last
    /// answer. A killed or paused member is never healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        poll_until(timeout, || self.members.iter().all(EtcdServer::is_healthy))
    }

    /// The tail (last 30 lines) of every member's log, labelled with the
    /// member index, name and ports, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, member) in self.members.iter().enumerate() {
            out.push_str(&format!("[member {i}] "));
            out.push_str(&member.labelled_log_tail());
        }
        out
    }
}

impl<'a> IntoIterator for &'a EtcdCluster {
    type Item = &'a EtcdServer;
    type IntoIter = std::slice::Iter<'a, EtcdServer>;

    fn into_iter(self) -> Self::IntoIter {
        self.members.iter()
    }
}
