//! Leases: how long one is for a lock's ttl, and their grant, refresh and
//! revoke. Every key this backend writes sits on a lease of its own, so a
//! revoke deletes exactly that key, and a dead client's keys go when their
//! leases run out.

use std::time::Duration;

use etcd_client::{Client, LeaseGrantResponse};

use super::Etcd;
use crate::backend::Background;
use crate::error::Result;

impl Etcd {
    /// A new lease of `secs` seconds (etcd may make it longer).
    pub(super) async fn grant_lease(
        &self,
        secs: i64,
        timeout: Duration,
    ) -> Result<LeaseGrantResponse> {
        self.call_again(timeout, || {
            let mut leases = self.client.lease_client();
            async move { leases.grant(secs, None).await }
        })
        .await
    }

    /// Refreshes `lease` once; the ttl it has from now, 0 when it is gone.
    pub(super) async fn refresh_lease(&self, lease: i64, timeout: Duration) -> Result<i64> {
        // Opening the keep-alive stream refreshes the lease once (the
        // client reads that first answer itself and fails with "lease not
        // found" when it is gone); one more exchange tells its ttl.
        // Tried again within the timeout when it never reached a member (a
        // dead one the client still balances to).
        self.call_again(timeout, || {
            let mut leases = self.client.lease_client();
            async move {
                let (mut keeper, mut stream) = match leases.keep_alive(lease).await {
                    Ok(opened) => opened,
                    Err(e) if lease_not_found(&e) => return Ok(0),
                    Err(e) => return Err(e),
                };
                keeper.keep_alive().await?;
                match stream.message().await? {
                    Some(reply) => Ok(reply.ttl()),
                    None => Err(etcd_client::Error::WatchError(
                        "the keep-alive stream closed without an answer".into(),
                    )),
                }
            }
        })
        .await
    }

    /// Revokes, in the background, a lease that has nothing on it any
    /// more: ending it now saves the server a ttl of bookkeeping. If this
    /// fails it simply runs out.
    pub(super) fn revoke_unused(&self, lease: i64, timeout: Duration) {
        drop(RevokeOnDrop::new(self, lease, timeout));
    }
}

/// The lease ttl for a lock ttl: whole seconds (etcd's unit), rounded up,
/// so the lease never ends before the lock's ttl. etcd may raise it further
/// to its minimum (1.5 election timeouts); a longer lease only keeps a dead
/// holder's lock a little longer, never a live one's shorter.
pub(super) fn lease_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// Whether an error says the lease asked about no longer exists.
pub(super) fn lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        // etcd-client's own reading of a keep-alive answer with no ttl.
        etcd_client::Error::LeaseKeepAliveError(m) => m == "lease not found",
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::NotFound && status.message().contains("lease not found")
        }
        _ => false,
    }
}

/// Revokes a lease when dropped unless disarmed: the undo of a half-done
/// acquire, also when its future is dropped. Never blocks: the revoke runs
/// as a task, bounded by the node timeout and counted for
/// [`settled`](crate::Backend::settled). Without a runtime the lease ends
/// by its ttl.
pub(super) struct RevokeOnDrop {
    armed: Option<(Client, Background)>,
    /// The cluster's name, for a revoke that fails.
    name: std::sync::Arc<str>,
    lease: i64,
    timeout: Duration,
}

impl RevokeOnDrop {
    pub(super) fn new(etcd: &Etcd, lease: i64, timeout: Duration) -> Self {
        Self {
            armed: Some((etcd.client.clone(), etcd.background.clone())),
            name: std::sync::Arc::clone(&etcd.name),
            lease,
            timeout,
        }
    }

    pub(super) fn disarm(&mut self) {
        self.armed = None;
    }
}

impl Drop for RevokeOnDrop {
    fn drop(&mut self) {
        let Some((client, background)) = self.armed.take() else {
            return;
        };
        let (lease, timeout, name) = (self.lease, self.timeout, self.name.clone());
        background.spawn(async move {
            let mut leases = client.lease_client();
            let revoked = tokio::time::timeout(timeout, leases.revoke(lease)).await;
            // Nobody waits for this answer. The lease (never named: it is
            // the handle to the keys on it) runs out by its ttl instead.
            match revoked {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if lease_not_found(&e) => {}
                Ok(Err(e)) => tracing::warn!(
                    node = &*name,
                    error = %e,
                    "lease revoke failed: its key stays until the lease's ttl"
                ),
                Err(_) => tracing::warn!(
                    node = &*name,
                    ?timeout,
                    "lease revoke timed out: its key stays until the lease's ttl"
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_lease_reads_as_one() {
        let gone = etcd_client::Error::LeaseKeepAliveError("lease not found".into());
        assert!(lease_not_found(&gone));
        let broken = etcd_client::Error::LeaseKeepAliveError("channel closed".into());
        assert!(!lease_not_found(&broken));
        let status = tonic::Status::new(
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        );
        assert!(lease_not_found(&etcd_client::Error::GRpcStatus(status)));
    }

    #[test]
    fn leases_round_up_to_whole_seconds() {
        assert_eq!(lease_secs(Duration::from_millis(300)), 1);
        assert_eq!(lease_secs(Duration::from_secs(2)), 2);
        assert_eq!(lease_secs(Duration::from_millis(2001)), 3);
    }
}
