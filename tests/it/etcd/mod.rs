//! etcd-specific behaviour against real members: member failures, the
//! cross-process queue, and a dead client's lock running out with its lease.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    ETCD_LOCK_USER, ETCD_NO_PERMISSIONS_USER, bounded, enable_etcd_auth, etcd_locker,
    etcd_locker_as, start_etcd, wait_until,
};
use fencelock::etcd_client::{Client, GetOptions, PutOptions};
use fencelock::{Error, LockOptions, NodeFault, Owner, RetryPolicy};

mod denials;
mod leases;
mod members;
mod modes;
mod queue;

const LIMIT: Duration = Duration::from_secs(60);

fn options() -> LockOptions {
    common::options()
}

/// How many waiters are queued for `resource` (tickets under its range).
async fn queued(client: &mut Client, resource: &str) -> i64 {
    client
        .get(
            format!("fencelock:{resource}/t/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

/// The index of the member that leads, as the members themselves say.
async fn leader(cluster: &fencelock::testing::EtcdCluster) -> usize {
    for i in 0..cluster.len() {
        let Ok(mut client) = Client::connect([cluster.member(i).endpoint()], None).await else {
            continue;
        };
        if let Ok(status) = client.status().await
            && status.header().map(|h| h.member_id()) == Some(status.leader())
        {
            return i;
        }
    }
    panic!("no member leads");
}
