//! Introspection and admin on Redlock: every call goes to all nodes at once
//! and reports each node's answer beside the quorum's view.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;

use super::Redlock;
use super::fanout::after;
use super::scripts::{Keys, resource_of, scan_pattern};
use crate::backend::{ForceReleased, Holder, ListCursor, ListPage, LockInfo, NodeView};
use crate::error::{Error, NodeFault, Result};
use crate::options::LockOptions;

/// Keys asked of each node per SCAN step: a hint to Redis, which may return
/// somewhat more or fewer.
const SCAN_COUNT: usize = 1000;

/// A node that has been scanned to the end (or skipped after a failure).
const DONE: &str = "-";

impl Redlock {
    pub(crate) async fn inspect_lock(&self, key: &str, options: &LockOptions) -> Result<LockInfo> {
        let keys = Keys::new(&options.key_prefix, key);
        let timeout = options.node_timeout;
        let replies = join_all(self.nodes.iter().map(|n| n.inspect(&keys, timeout))).await;
        let nodes: Vec<NodeView> = self
            .nodes
            .iter()
            .zip(replies)
            .map(|(node, holders)| NodeView::new(node.name().to_owned(), holders))
            .collect();
        let quorum = self.quorum;
        // The first holder a quorum stores (a writer comes first on each
        // node; readers and permits are each a holder of their own).
        let agreed = nodes
            .iter()
            .flat_map(|view| &view.holders)
            .find_map(|record| {
                let same = nodes
                    .iter()
                    .filter(|v| {
                        v.holders
                            .iter()
                            .any(|r| r.owner == record.owner && r.token == record.token)
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
            queued: None,
        })
    }

    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> Result<ListPage> {
        let key_prefix = &options.key_prefix;
        let listing = self.listing_id(key_prefix, prefix);
        let mut cursors = match cursor {
            None => vec![Some(0u64); self.nodes.len()],
            Some(cursor) => self.parse_cursor(cursor, &listing)?,
        };
        let pattern = scan_pattern(key_prefix, prefix);
        let steps = self
            .scan_step(&cursors, &pattern, options.node_timeout)
            .await;
        let mut resources = BTreeSet::new();
        let mut failures = Vec::new();
        let mut answered = 0;
        for ((node, cursor), step) in self.nodes.iter().zip(cursors.iter_mut()).zip(steps) {
            match step {
                None => {}
                Some(Ok((next, keys))) => {
                    answered += 1;
                    resources.extend(resources_in(&keys, key_prefix, prefix));
                    *cursor = (next != 0).then_some(next);
                }
                Some(Err(fault)) => {
                    failures.push(node.failure(fault));
                    *cursor = None;
                }
            }
        }
        // Only a first page with no answer at all is an error; later, a
        // failing node is skipped and the listing goes on without it.
        if cursor.is_none() && answered == 0 && !failures.is_empty() {
            return Err(Error::QuorumUnavailable {
                confirmed: 0,
                refused: 0,
                needed: self.quorum,
                failures,
            });
        }
        Ok(ListPage {
            resources: resources.into_iter().collect(),
            next: next_cursor(&listing, &cursors),
            failures,
        })
    }

    /// One SCAN step on each node from its cursor, all at once: the next
    /// cursor and the keys found, or `None` for a node already done.
    async fn scan_step(
        &self,
        cursors: &[Option<u64>],
        pattern: &str,
        timeout: Duration,
    ) -> Vec<Option<Result<(u64, Vec<Vec<u8>>), NodeFault>>> {
        join_all(
            self.nodes
                .iter()
                .zip(cursors)
                .map(|(node, cursor)| async move {
                    match cursor {
                        Some(at) => Some(node.scan(*at, pattern, SCAN_COUNT, timeout).await),
                        None => None,
                    }
                }),
        )
        .await
    }

    /// Names one listing (key prefix, name prefix, nodes), so a cursor is
    /// only ever resumed by the listing that made it.
    fn listing_id(&self, key_prefix: &str, prefix: &str) -> String {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        (key_prefix, prefix).hash(&mut hasher);
        for node in self.nodes.iter() {
            node.name().hash(&mut hasher);
        }
        format!("{:016x}", hasher.finish())
    }

    fn parse_cursor(&self, cursor: &ListCursor, listing: &str) -> Result<Vec<Option<u64>>> {
        let parsed: Option<Vec<Option<u64>>> = cursor
            .0
            .strip_prefix(listing)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| {
                rest.split(',')
                    .map(|part| match part {
                        DONE => Some(None),
                        n => n.parse().ok().map(Some),
                    })
                    .collect()
            });
        match parsed {
            Some(c) if c.len() == self.nodes.len() => Ok(c),
            _ => Err(Error::InvalidOptions(format!(
                "list cursor {:?} does not come from this listing (same prefix, same nodes)",
                cursor.0
            ))),
        }
    }

    pub(crate) async fn force_release_lock(
        &self,
        key: &str,
        options: &LockOptions,
    ) -> Result<ForceReleased> {
        let keys = Keys::new(&options.key_prefix, key);
        let timeout = options.node_timeout;
        // Acquires and releases of the key from this process that returned
        // on a quorum may still be on their way to the slowest nodes.
        let before = self.before_force_release(key, &keys);
        let replies = join_all(self.nodes.iter().enumerate().map(|(i, n)| {
            let (keys, mut before) = (&keys, before.clone());
            async move {
                after(&mut before, i).await;
                n.force_release(keys, timeout).await
            }
        }))
        .await;
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

/// The resource names among one node's SCAN keys that belong to the
/// listing.
fn resources_in<'k>(
    keys: &'k [Vec<u8>],
    key_prefix: &'k str,
    prefix: &'k str,
) -> impl Iterator<Item = String> + 'k {
    keys.iter()
        // Not ours if not UTF-8: every name we write is.
        .filter_map(|k| std::str::from_utf8(k).ok())
        .filter_map(move |k| resource_of(key_prefix, k))
        // The pattern's '{' + prefix + '*' also matches
        // shorter names when the prefix holds a '}'.
        .filter(move |name| name.starts_with(prefix))
        .map(str::to_owned)
}

/// The cursor that resumes `listing` where `cursors` stand (the form
/// `parse_cursor` reads); `None` when every node is done.
fn next_cursor(listing: &str, cursors: &[Option<u64>]) -> Option<ListCursor> {
    cursors.iter().any(Option::is_some).then(|| {
        let parts: Vec<String> = cursors
            .iter()
            .map(|c| c.map_or_else(|| DONE.to_owned(), |c| c.to_string()))
            .collect();
        ListCursor(format!("{listing}:{}", parts.join(",")))
    })
}
