//! Authentication and permissions: refusals that waiting does not cure are
//! final denials.

use super::*;

/// How soon a final refusal must come back: a few round trips on
/// loopback, with room for a busy machine.
const PROMPT: Duration = Duration::from_secs(5);

/// A refusal that waiting does not change, reported as on Redis: a
/// `QuorumUnavailable` whose one failure is a `NodeFault::Denied` naming
/// the cluster's members, final (`is_denied`, not retryable).
fn assert_denied(error: &Error, cluster: &fencelock::testing::EtcdCluster) {
    let Error::QuorumUnavailable { failures, .. } = error else {
        panic!("expected QuorumUnavailable, got {error:?}");
    };
    assert_eq!(failures.len(), 1, "{error}");
    assert!(matches!(failures[0].fault, NodeFault::Denied(_)), "{error}");
    for endpoint in cluster.endpoints() {
        assert!(failures[0].node.contains(&endpoint), "{error}");
    }
    assert!(error.is_denied() && !error.is_retryable(), "{error}");
    assert!(error.to_string().contains("not retried"), "{error}");
}

/// With authentication on, a wrong password, an unknown user, no
/// credentials and a user without permissions are refusals that waiting
/// does not cure: each is a final denial, and `lock` (even
/// `lock_timeout` with a long wait) returns it at once instead of
/// retrying. The right user locks and waits as usual.
#[tokio::test]
async fn refused_credentials_and_permissions_are_final_denials() {
    let cluster = start_etcd(1);
    enable_etcd_auth(&cluster).await;
    bounded(LIMIT, async {
        let locker = etcd_locker_as(&cluster, Some(ETCD_LOCK_USER), options())
            .await
            .unwrap();
        let other = etcd_locker_as(&cluster, Some(ETCD_LOCK_USER), options())
            .await
            .unwrap();
        let guard = locker.lock("guarded").await.unwrap();
        let waited = other
            .lock_timeout("guarded", Duration::from_millis(300))
            .await;
        assert!(matches!(waited, Err(Error::Timeout { .. })), "{waited:?}");
        guard.release().await.unwrap();
        other
            .try_lock("guarded")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();

        for user in [(ETCD_LOCK_USER.0, "wrong"), ("ghost", "pw")] {
            let asked = Instant::now();
            let refused = etcd_locker_as(&cluster, Some(user), options()).await;
            assert_denied(&refused.unwrap_err(), &cluster);
            assert!(asked.elapsed() < PROMPT, "{user:?}: {:?}", asked.elapsed());
        }

        for user in [None, Some(ETCD_NO_PERMISSIONS_USER)] {
            let locker = etcd_locker_as(&cluster, user, options()).await.unwrap();
            let asked = Instant::now();
            assert_denied(&locker.lock("guarded").await.unwrap_err(), &cluster);
            let waited = locker
                .lock_timeout("guarded", Duration::from_secs(30))
                .await;
            assert_denied(&waited.unwrap_err(), &cluster);
            assert!(asked.elapsed() < PROMPT, "{user:?}: {:?}", asked.elapsed());
        }
    })
    .await;
}

/// Credentials given to a cluster without authentication are refused by
/// etcd ("authentication is not enabled"): a denial too, not an outage.
#[tokio::test]
async fn credentials_for_a_cluster_without_auth_are_a_denial() {
    let cluster = start_etcd(1);
    bounded(LIMIT, async {
        let refused = etcd_locker_as(&cluster, Some(ETCD_LOCK_USER), options()).await;
        assert_denied(&refused.unwrap_err(), &cluster);
    })
    .await;
}
