//! The raw etcd floors: the requests an etcd lock needs, sent with plain
//! etcd-client and no library logic.

use fencelock::etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};

/// `n` local etcd members, started by the fixtures and stopped on drop.
pub fn members(n: usize) -> fencelock::testing::EtcdCluster {
    fencelock::testing::EtcdCluster::start(n).expect("start etcd members (run scripts/setup)")
}

/// Create `key` if absent, then delete it: two Raft writes, what any lock
/// on etcd needs at the least.
pub async fn raw_round(client: &Client, key: &str) {
    let mut kv = client.kv_client();
    let create = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, "raw-owner", None)]);
    assert!(kv.txn(create).await.unwrap().succeeded());
    kv.delete(key, None).await.unwrap();
}

/// The same for a lock that runs out when its holder dies: a lease first,
/// the key on it, and the lease revoked after the delete. Four writes.
pub async fn raw_lease_round(client: &Client, key: &str, ttl_secs: i64) {
    let mut kv = client.kv_client();
    let mut leases = client.lease_client();
    let lease = leases.grant(ttl_secs, None).await.unwrap().id();
    let create = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            "raw-owner",
            Some(PutOptions::new().with_lease(lease)),
        )]);
    assert!(kv.txn(create).await.unwrap().succeeded());
    kv.delete(key, None).await.unwrap();
    leases.revoke(lease).await.unwrap();
}
