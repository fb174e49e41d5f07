//! Introspection and admin on etcd: one linearizable answer, reported as
//! the view of a single node whose quorum is 1.

use etcd_client::{DeleteOptions, GetOptions, SortOrder, SortTarget};

use super::keys::{LockKeys, decode_holds, escape, resource_of_holder};
use super::{Etcd, RevokeOnDrop, token_of};
use crate::admin::{ForceReleased, Holder, ListCursor, ListPage, LockInfo, LockRecord, NodeView};
use crate::error::{Error, Result};
use crate::options::LockOptions;

/// Keys read per listing page.
const PAGE: i64 = 1000;

impl Etcd {
    pub(crate) async fn inspect_lock(&self, key: &str, options: &LockOptions) -> Result<LockInfo> {
        let keys = LockKeys::new(options.get_key_prefix(), key);
        let lock = match self.holder_record(&keys, options).await {
            Ok(record) => Ok(record),
            Err(Error::QuorumUnavailable { mut failures, .. }) if !failures.is_empty() => {
                Err(failures.remove(0).fault)
            }
            Err(e) => return Err(e),
        };
        let agreed = match &lock {
            Ok(Some(record)) => Some(Holder {
                owner: record.owner.clone(),
                token: record.token,
            }),
            _ => None,
        };
        Ok(LockInfo {
            key: key.to_owned(),
            nodes: vec![NodeView {
                node: self.name.to_string(),
                lock,
            }],
            quorum: 1,
            agreed,
        })
    }

    /// The holder of a lock, with the time its lease has left.
    async fn holder_record(
        &self,
        keys: &LockKeys,
        options: &LockOptions,
    ) -> Result<Option<LockRecord>> {
        let timeout = options.get_node_timeout();
        let mut kv = self.client.kv_client();
        let oldest = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let mut reply = self
            .call(timeout, kv.get(keys.holders(), Some(oldest)))
            .await?;
        let Some(holder) = reply.take_kvs().into_iter().next() else {
            return Ok(None);
        };
        let owner = String::from_utf8_lossy(&holder.key()[keys.holders().len()..]).into_owned();
        let mut leases = self.client.lease_client();
        let left = self
            .call(timeout, leases.time_to_live(holder.lease(), None))
            .await?
            .ttl();
        Ok(Some(LockRecord {
            owner,
            token: token_of(&holder),
            holds: u32::try_from(decode_holds(holder.value()).len()).unwrap_or(u32::MAX),
            ttl: u64::try_from(left)
                .ok()
                .filter(|&s| s > 0)
                .map(std::time::Duration::from_secs),
        }))
    }

    pub(crate) async fn list_page(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> Result<ListPage> {
        let key_prefix = options.get_key_prefix();
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
        let mut kv = self.client.kv_client();
        let page = GetOptions::new()
            .with_range(prefix_end(range.as_bytes()))
            .with_keys_only()
            .with_limit(PAGE);
        let reply = self
            .call(options.get_node_timeout(), kv.get(start, Some(page)))
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
            Some(last) if reply.more() => {
                let last = String::from_utf8_lossy(last.key()).into_owned();
                Some(ListCursor(format!("{last}\0")))
            }
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
        let keys = LockKeys::new(options.get_key_prefix(), key);
        let timeout = options.get_node_timeout();
        let mut kv = self.client.kv_client();
        let delete = DeleteOptions::new().with_prefix().with_prev_key();
        match self
            .call(timeout, kv.delete(keys.holders(), Some(delete)))
            .await
        {
            Ok(reply) => {
                // The holders' leases have nothing else on them.
                for gone in reply.prev_kvs() {
                    drop(RevokeOnDrop::new(&self.client, gone.lease(), timeout));
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

/// The end of the key range of all keys starting with `prefix`: the prefix
/// with its last byte below 0xff incremented; `"\0"` (every key from the
/// start on) when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
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
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), b"\0");
    }
}
