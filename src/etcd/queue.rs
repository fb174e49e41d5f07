//! The fair queue: waiters of a lock line up by create revision and each
//! watches only its predecessor.
//!
//! A waiter's place is a ticket key under the lock's range, on a lease of
//! its own that a background task keeps alive; the ticket's value is the id
//! of the backend instance that waits. The task watches the newest ticket
//! created before its own and, once there is none (this waiter is first),
//! the holder keys. Each deletion it sees is news for the Locker's waiter,
//! which then tries [`try_acquire`](crate::Backend::try_acquire) again.
//! `try_acquire` grants a first hold only while the oldest ticket, if any,
//! is its own instance's, so across processes the lock goes in queue order
//! (within a process the Locker's own line orders its waiters).
//!
//! The ticket belongs to the [`ReleaseWatch`], not to an acquire attempt: a
//! failed `try_acquire` leaves nothing behind, as the trait requires, and
//! the ticket goes when the waiter stops waiting (the watch is dropped: the
//! lease is revoked) or dies (the lease runs out).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{
    EventType, GetOptions, PutOptions, SortOrder, SortTarget, WatchFilterType, WatchOptions,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::keys::LockKeys;
use super::{Etcd, RevokeOnDrop, lease_secs};
use crate::error::{Error, NodeFault, Result};
use crate::notify::{ReleaseWatch, Signal};
use crate::options::LockOptions;

/// The longest a ticket outlives a waiter that died without revoking it:
/// tickets block the queue, so theirs is shorter than most lock ttls.
const MAX_TICKET_TTL: Duration = Duration::from_secs(5);

/// Joins the queue of `keys` in the background; the watch fires on news.
pub(crate) fn line_up(etcd: Etcd, keys: LockKeys, options: &LockOptions) -> ReleaseWatch {
    let (signal, watch) = watch::channel(Signal::default());
    let lease = Arc::new(AtomicI64::new(0));
    let timeout = options.get_node_timeout();
    let place = Place {
        etcd: etcd.clone(),
        keys,
        ttl: options.get_ttl().min(MAX_TICKET_TTL),
        timeout,
        signal,
        lease: Arc::clone(&lease),
    };
    let task = tokio::spawn(place.wait());
    ReleaseWatch::new(
        watch,
        Subscription {
            task,
            etcd,
            lease,
            timeout,
        },
    )
}

/// Ends the waiting when the last clone of the watch is dropped: stops the
/// task and revokes the ticket's lease, which deletes the ticket.
struct Subscription {
    task: JoinHandle<()>,
    etcd: Etcd,
    lease: Arc<AtomicI64>,
    timeout: Duration,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
        let lease = self.lease.swap(0, Ordering::SeqCst);
        if lease != 0 {
            drop(RevokeOnDrop::new(&self.etcd.client, lease, self.timeout));
        }
    }
}

/// One waiter's place in the queue.
struct Place {
    etcd: Etcd,
    keys: LockKeys,
    ttl: Duration,
    timeout: Duration,
    signal: watch::Sender<Signal>,
    /// The current ticket's lease (0: none yet), for the revoke on drop.
    lease: Arc<AtomicI64>,
}

impl Place {
    /// Holds a ticket until dropped. A ticket that is lost (its lease ran
    /// out during an outage, a watch broke) is replaced by a new one at the
    /// back of the queue, after a short pause; the waiter is told to try
    /// again meanwhile, since news may have been missed.
    async fn wait(self) {
        loop {
            let _ = self.hold_ticket().await;
            self.signal.send_modify(|s| {
                s.releases += 1;
                s.listening = 0;
            });
            tokio::time::sleep(self.timeout).await;
        }
    }

    /// Takes a ticket and follows the queue; returns only on failure.
    async fn hold_ticket(&self) -> Result<()> {
        let etcd = &self.etcd;
        let mut leases = etcd.client.lease_client();
        let lease = etcd
            .call(self.timeout, leases.grant(lease_secs(self.ttl), None))
            .await?;
        let old = self.lease.swap(lease.id(), Ordering::SeqCst);
        if old != 0 {
            drop(RevokeOnDrop::new(&etcd.client, old, self.timeout));
        }
        let ticket = self
            .keys
            .ticket(&format!("{:032x}", rand::random::<u128>()));
        let mut kv = etcd.client.kv_client();
        let put = etcd
            .call(
                self.timeout,
                kv.put(
                    ticket,
                    etcd.instance.as_bytes(),
                    Some(PutOptions::new().with_lease(lease.id())),
                ),
            )
            .await?;
        let mine = put.header().map_or(0, |h| h.revision());
        let (mut keeper, mut kept) = etcd
            .call(self.timeout, leases.keep_alive(lease.id()))
            .await?;
        let every = Duration::from_secs(u64::try_from(lease.ttl()).unwrap_or(1).max(1)) / 3;
        let keep_alive = async {
            loop {
                tokio::time::sleep(every).await;
                let answer = etcd
                    .call(self.timeout, async {
                        keeper.keep_alive().await?;
                        kept.message().await
                    })
                    .await?;
                if answer.is_none_or(|a| a.ttl() <= 0) {
                    return Err(gone("the ticket's lease ended"));
                }
            }
        };
        tokio::select! {
            result = keep_alive => result,
            result = self.follow(mine) => result,
        }
    }

    /// Watches the predecessor until it leaves, then the next one, and
    /// once first the holder keys; returns only on failure.
    async fn follow(&self, mine: i64) -> Result<()> {
        let etcd = &self.etcd;
        loop {
            let mut kv = etcd.client.kv_client();
            let newest_before = GetOptions::new()
                .with_prefix()
                .with_max_create_revision(mine - 1)
                .with_sort(SortTarget::Create, SortOrder::Descend)
                .with_limit(1)
                .with_keys_only();
            let reply = etcd
                .call(
                    self.timeout,
                    kv.get(self.keys.tickets(), Some(newest_before)),
                )
                .await?;
            let seen_at = reply.header().map_or(0, |h| h.revision());
            let predecessor = reply.kvs().first().map(|p| p.key().to_vec());
            let first = predecessor.is_none();
            // From the revision just read on, so no deletion in between is missed.
            let mut options = WatchOptions::new()
                .with_start_revision(seen_at + 1)
                .with_filters([WatchFilterType::NoPut]);
            let key = match predecessor {
                Some(key) => key,
                None => {
                    options = options.with_prefix();
                    self.keys.holders().into_bytes()
                }
            };
            let mut watcher = etcd.client.watch_client();
            let mut stream = etcd
                .call(self.timeout, watcher.watch(key, Some(options)))
                .await?;
            self.signal.send_if_modified(|s| {
                let was = s.listening;
                s.listening = 1;
                was == 0
            });
            'watching: loop {
                let Some(message) = stream.message().await.map_err(|e| gone(&e.to_string()))?
                else {
                    return Err(gone("the watch ended"));
                };
                if message.canceled() {
                    return Err(gone(message.cancel_reason()));
                }
                for event in message.events() {
                    if event.event_type() == EventType::Delete {
                        // The predecessor left (this waiter may be first
                        // now), or the holder released: worth a try.
                        self.signal.send_modify(|s| s.releases += 1);
                        if !first {
                            break 'watching;
                        }
                    }
                }
            }
        }
    }
}

fn gone(why: &str) -> Error {
    Error::QuorumUnavailable {
        reached: 0,
        needed: 1,
        failures: vec![crate::error::NodeFailure {
            node: "etcd".into(),
            fault: NodeFault::Connection(why.to_owned()),
        }],
    }
}
