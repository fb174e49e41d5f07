//! Introspection and admin on etcd: one linearizable answer, reported as
//! the view of a single node whose quorum is 1.

use etcd_client::{DeleteOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};

use super::Etcd;
use super::holder::token_of;
use super::keys::{Kind, LockKeys, decode_holds, escape, permit_owner, resource_of_holder};
use crate::backend::{
    ForceReleased, Holder, ListCursor, ListPage, LockInfo, LockRecord, Mode, NodeView,
};
use crate::error::{Error, Result};
use crate::options::LockOptions;

/// Keys read per listing page.
const PAGE: i64 = 1000;

impl Etcd {
    pub(crate) async fn inspect_lock(&self, key: &str, options: &LockOptions) -> Result<LockInfo> {
        let keys = LockKeys::new(&options.key_prefix, key);
        let (holders, queued) = match self.holder_records(&keys, options).await {
            Ok((records, queued)) => (Ok(records), Some(queued)),
            Err(Error::QuorumUnavailable { mut failures, .. }) if !failures.is_empty() => {
                (Err(failures.remove(0).fault), None)
            }
            Err(e) => return Err(e),
        };
        // etcd's answer is the cluster's: its first holder is agreed on.
        let agreed = match &holders {
            Ok(records) => records.first().map(|record| Holder {
                owner: record.owner.clone(),
                token: record.token,
            }),
            _ => None,
        };
        Ok(LockInfo {
            key: key.to_owned(),
            nodes: vec![NodeView::new(self.name.to_string(), holders)],
            quorum: 1,
            agreed,
            queued,
        })
    }

    /// Every holder of a lock (a read-write lock's writer first, then its
    /// readers oldest first; a semaphore's permits oldest first), each
    /// with the time its lease has left, and how many waiters queue (read
    /// together, at one revision).
    async fn holder_records(
        &self,
        keys: &LockKeys,
        options: &LockOptions,
    ) -> Result<(Vec<LockRecord>, usize)> {
        let timeout = options.node_timeout;
        let oldest_first = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(PAGE);
        let waiting = GetOptions::new().with_prefix().with_count_only();
        let read = Txn::new().and_then([
            TxnOp::get(keys.all_holders(), Some(oldest_first)),
            TxnOp::get(keys.tickets(), Some(waiting)),
        ]);
        let reply = self.txn(read, timeout).await?;
        let mut ranges = reply.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        });
        let holders = ranges
            .next()
            .map(|mut get| get.take_kvs())
            .unwrap_or_default();
        let queued = ranges
            .next()
            .map_or(0, |get| usize::try_from(get.count()).unwrap_or(usize::MAX));
        let mut records = Vec::with_capacity(holders.len());
        for holder in &holders {
            let tail = String::from_utf8_lossy(&holder.key()[keys.base.len()..]).into_owned();
            let (owner, mode, slot) = match Kind::of_tail(&tail) {
                Some(Kind::Exclusive(owner)) => (owner, Mode::Exclusive, None),
                Some(Kind::Reader(owner)) => (owner, Mode::Read, None),
                Some(Kind::Writer(owner)) => (owner, Mode::Write, None),
                // A permit's key names its slot; its value, its owner.
                Some(Kind::Permit { permits, slot }) => (
                    permit_owner(holder.value()).unwrap_or_default(),
                    Mode::Permit { permits },
                    Some(slot),
                ),
                None => continue,
            };
            let left = self
                .call_again(timeout, || {
                    let mut leases = self.client.lease_client();
                    let lease = holder.lease();
                    async move { leases.time_to_live(lease, None).await }
                })
                .await?
                .ttl();
            let record = LockRecord::new(
                owner,
                token_of(holder),
                u32::try_from(decode_holds(holder.value()).len()).unwrap_or(u32::MAX),
                u64::try_from(left)
                    .ok()
                    .filter(|&s| s > 0)
                    .map(std::time::Duration::from_secs),
            )
            .with_mode(mode, slot);
            records.push(record);
        }
        // The writer first: at most one, and the one a reader waits for.
        records.sort_by_key(|r| r.mode != Mode::Write);
        Ok((records, queued))
    }

    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> Result<ListPage> {
        let key_prefix = &options.key_prefix;
        let range = format!("{key_prefix}{}", escape(prefix));
        let start = match cursor {
            None => range.clone(),
            // A cursor is the next key to read; it must lie in this range.
            Some(ListCursor(next)) if next.starts_with(&range) => next.clone(),
            Some(ListCursor(next)) => {
                return Err(Error::InvalidOptions(format!(
                    "list cursor {next:?} does not come from this listing (same prefix)"
                )));
            }
        };
        let page = GetOptions::new()
            .with_range(prefix_end(range.as_bytes()))
            .with_keys_only()
            .with_limit(PAGE);
        let reply = self
            .call_again(options.node_timeout, || {
                let mut kv = self.client.kv_client();
                let (start, page) = (start.clone(), page.clone());
                async move { kv.get(start, Some(page)).await }
            })
            .await?;
        let mut resources: Vec<String> = reply
            .kvs()
            .iter()
            .filter_map(|k| std::str::from_utf8(k.key()).ok())
            .filter_map(|k| resource_of_holder(key_prefix, k))
            .collect();
        resources.sort();
        resources.dedup();
        let next = match reply.kvs().last() {
            Some(last) if reply.more() => Some(cursor_after(key_prefix, last.key())),
            _ => None,
        };
        Ok(ListPage {
            resources,
            next,
            failures: Vec::new(),
        })
    }

    pub(crate) async fn force_release_lock(
        &self,
        key: &str,
        options: &LockOptions,
    ) -> Result<ForceReleased> {
        let keys = LockKeys::new(&options.key_prefix, key);
        let timeout = options.node_timeout;
        let delete = DeleteOptions::new().with_prefix().with_prev_key();
        match self
            .call_again(timeout, || {
                let mut kv = self.client.kv_client();
                let (holders, delete) = (keys.all_holders(), delete.clone());
                async move { kv.delete(holders, Some(delete)).await }
            })
            .await
        {
            Ok(reply) => {
                // The holders' leases have nothing else on them.
                for gone in reply.prev_kvs() {
                    self.revoke_unused(gone.lease(), timeout);
                }
                Ok(ForceReleased {
                    removed: usize::from(reply.deleted() > 0),
                    failures: Vec::new(),
                })
            }
            Err(Error::QuorumUnavailable { failures, .. }) => Ok(ForceReleased {
                removed: 0,
                failures,
            }),
            Err(e) => Err(e),
        }
    }
}

/// Where the next page starts after a page that ended at `last`: past every
/// key of the resource `last` belongs to. Its keys that sort before `last`
/// were on this page, and this one is listed already, so the rest of its
/// range (more tickets, say) is not needed. Not `last` itself: a cursor is
/// shown to callers (`Display`, `Debug`), and a holder key's name contains
/// its owner's id, a secret. A key that is no resource's (no `/` after the
/// prefix) is passed as it is.
fn cursor_after(key_prefix: &str, last: &[u8]) -> ListCursor {
    let last = String::from_utf8_lossy(last);
    match last
        .strip_prefix(key_prefix)
        .and_then(|rest| rest.split_once('/'))
    {
        Some((escaped, _)) => {
            let base = format!("{key_prefix}{escaped}/");
            ListCursor(String::from_utf8_lossy(&prefix_end(base.as_bytes())).into_owned())
        }
        None => ListCursor(format!("{last}\0")),
    }
}

/// The end of the key range of all keys starting with `prefix`: the prefix
/// with its last byte below 0xff incremented; `"\0"` (every key from the
/// start on) when there is none.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::{cursor_after, prefix_end};

    #[test]
    fn cursors_skip_the_rest_of_a_resource_and_name_no_owner() {
        let owner = "0123456789abcdef0123456789abcdef";
        let holder = format!("p/x:jobs%2Fa/h/{owner}");
        let cursor = cursor_after("p/x:", holder.as_bytes()).to_string();
        assert_eq!(cursor, "p/x:jobs%2Fa0");
        assert!(cursor.as_str() > holder.as_str() && !cursor.contains(owner));
        assert!(cursor.as_str() > "p/x:jobs%2Fa/t/ffff" && cursor.as_str() < "p/x:jobs%2Fa0b/h/o");
        assert_eq!(cursor_after("p/x:", b"p/x:odd").to_string(), "p/x:odd\0");
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
