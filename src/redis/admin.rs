//! Introspection and admin on Redlock: every call goes to all nodes at once
//! and reports each node's answer beside the quorum's view.

use std::collections::BTreeSet;

use futures::future::join_all;

use super::Redlock;
use super::scripts::{Keys, resource_of, scan_pattern};
use crate::admin::{ForceReleased, Holder, ListCursor, ListPage, LockInfo, NodeView};
use crate::error::{Error, Result};
use crate::options::LockOptions;

/// Keys asked of each node per SCAN step: a hint to Redis, which may return
/// somewhat more or fewer.
const SCAN_COUNT: usize = 1000;

/// A node that has been scanned to the end (or skipped after a failure).
const DONE: &str = "-";

impl Redlock {
    pub(crate) async fn inspect_lock(&self, key: &str, options: &LockOptions) -> Result<LockInfo> {
        let keys = Keys::new(options.get_key_prefix(), key);
        let timeout = options.get_node_timeout();
        let replies = join_all(self.nodes.iter().map(|n| n.inspect(&keys, timeout))).await;
        let nodes: Vec<NodeView> = self
            .nodes
            .iter()
            .zip(replies)
            .map(|(node, lock)| NodeView {
                node: node.name().to_owned(),
                lock,
            })
            .collect();
        let quorum = options.quorum_for(self.nodes.len());
        let agreed = nodes.iter().find_map(|view| {
            let record = view.lock.as_ref().ok()?.as_ref()?;
            let same = nodes
                .iter()
                .filter(|v| {
                    matches!(&v.lock, Ok(Some(r)) if r.owner == record.owner && r.token == record.token)
                })
                .count();
            (same >= quorum).then(|| Holder {
                owner: record.owner.clone(),
                token: record.token,
            })
        });
        Ok(LockInfo {
            key: key.to_owned(),
            nodes,
            quorum,
            agreed,
        })
    }

    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> Result<ListPage> {
        let mut cursors = match cursor {
            None => vec![Some(0u64); self.nodes.len()],
            Some(cursor) => self.parse_cursor(cursor)?,
        };
        let key_prefix = options.get_key_prefix();
        let pattern = scan_pattern(key_prefix, prefix);
        let timeout = options.get_node_timeout();
        let steps = join_all(self.nodes.iter().zip(&cursors).map(|(node, cursor)| {
            let pattern = &pattern;
            async move {
                match cursor {
                    Some(at) => Some(node.scan(*at, pattern, SCAN_COUNT, timeout).await),
                    None => None,
                }
            }
        }))
        .await;
        let mut resources = BTreeSet::new();
        let mut failures = Vec::new();
        let mut answered = 0;
        for ((node, cursor), step) in self.nodes.iter().zip(cursors.iter_mut()).zip(steps) {
            match step {
                None => {}
                Some(Ok((next, keys))) => {
                    answered += 1;
                    resources.extend(
                        keys.iter()
                            .filter_map(|k| resource_of(key_prefix, k))
                            .map(str::to_owned),
                    );
                    *cursor = (next != 0).then_some(next);
                }
                Some(Err(fault)) => {
                    failures.push(node.failure(fault));
                    *cursor = None;
                }
            }
        }
        if answered == 0 && !failures.is_empty() {
            return Err(Error::QuorumUnavailable {
                reached: 0,
                needed: options.quorum_for(self.nodes.len()),
                failures,
            });
        }
        let next = cursors.iter().any(Option::is_some).then(|| {
            let parts: Vec<String> = cursors
                .iter()
                .map(|c| c.map_or_else(|| DONE.to_owned(), |c| c.to_string()))
                .collect();
            ListCursor(parts.join(","))
        });
        Ok(ListPage {
            resources: resources.into_iter().collect(),
            next,
            failures,
        })
    }

    fn parse_cursor(&self, cursor: &ListCursor) -> Result<Vec<Option<u64>>> {
        let parsed: Option<Vec<Option<u64>>> = cursor
            .0
            .split(',')
            .map(|part| match part {
                DONE => Some(None),
                n => n.parse().ok().map(Some),
            })
            .collect();
        match parsed {
            Some(c) if c.len() == self.nodes.len() => Ok(c),
            _ => Err(Error::InvalidOptions(format!(
                "list cursor {:?} does not come from a listing of these {} nodes",
                cursor.0,
                self.nodes.len()
            ))),
        }
    }

    pub(crate) async fn force_release_lock(
        &self,
        key: &str,
        options: &LockOptions,
    ) -> Result<ForceReleased> {
        let keys = Keys::new(options.get_key_prefix(), key);
        let timeout = options.get_node_timeout();
        let replies = join_all(self.nodes.iter().map(|n| n.force_release(&keys, timeout))).await;
        let mut removed = 0;
        let mut failures = Vec::new();
        for (node, reply) in self.nodes.iter().zip(replies) {
            match reply {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(fault) => failures.push(node.failure(fault)),
            }
        }
        Ok(ForceReleased { removed, failures })
    }
}
