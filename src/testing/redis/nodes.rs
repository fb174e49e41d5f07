//! Independent redis-server nodes, as Redlock needs them.

use super::{Persistence, RedisServer};
use crate::testing::FixtureError;
use crate::testing::process::PANIC_LOG_LINES;

/// N independent redis-server nodes.
///
/// This is **not** a Redis Cluster: every node is a separate master with its
/// own data, as Redlock needs. Dropping it drops every node.
#[derive(Debug)]
pub struct RedisNodes {
    pub(super) nodes: Vec<RedisServer>,
}

impl RedisNodes {
    /// Starts `n` nodes with [`Persistence::None`], in parallel.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start(n: usize) -> Result<Self, FixtureError> {
        RedisServer::builder().start_nodes(n)
    }

    /// Starts `n` nodes with the given persistence, in parallel.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the server binary is missing, cannot start, or does
    /// not answer in time (its log's last lines are in the message).
    pub fn start_with(n: usize, persistence: Persistence) -> Result<Self, FixtureError> {
        RedisServer::builder()
            .persistence(persistence)
            .start_nodes(n)
    }

    /// The URL of every node, in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn node(&self, i: usize) -> &RedisServer {
        &self.nodes[i]
    }

    /// Node `i`, mutably (to kill, pause or restart it).
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// Iterates over the nodes.
    pub fn iter(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter()
    }

    /// Iterates mutably over the nodes.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut RedisServer> {
        self.nodes.iter_mut()
    }

    /// The tail (last 30 lines) of every node's log, labelled with the node
    /// index and port, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!(
                "---- node {i} (127.0.0.1:{}) log tail ----\n",
                node.port
            ));
            let tail = node.log_tail(PANIC_LOG_LINES);
            out.push_str(tail.trim_end());
            out.push('\n');
        }
        out
    }
}

impl<'a> IntoIterator for &'a RedisNodes {
    type Item = &'a RedisServer;
    type IntoIter = std::slice::Iter<'a, RedisServer>;

    fn into_iter(self) -> Self::IntoIter {
        self.nodes.iter()
    }
}
