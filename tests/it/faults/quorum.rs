//! Killed and paused minorities and majorities: what still locks, what
//! fails, how fast, and which nodes the error names.

use super::*;

#[tokio::test]
async fn two_of_five_killed_still_locks() {
    let mut nodes = start(5);
    nodes.node_mut(1).kill();
    nodes.node_mut(3).kill();
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        for _ in 0..20 {
            let guard = locker.try_lock("survivor").await.unwrap();
            guard.release().await.unwrap();
        }
        let held = locker.try_lock("survivor").await.unwrap();
        let busy = common::try_from_another_task(&locker, "survivor").await;
        assert!(matches!(busy, Err(Error::NotObtained { .. })), "{busy:?}");
        held.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn three_of_five_killed_is_quorum_unavailable_naming_them() {
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        for i in [0, 2, 4] {
            nodes.node_mut(i).kill();
        }
        let node_timeout = locker.options().node_timeout;
        let started = Instant::now();
        let err = locker.try_lock("doomed").await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(failed_ports(&err), ports(&nodes, &[0, 2, 4]), "{err}");
        assert!(
            matches!(
                err,
                Error::QuorumUnavailable {
                    confirmed: 2,
                    refused: 0,
                    needed: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(took < 2 * node_timeout, "took {took:?}");
        assert!(err.to_string().contains(&nodes.node(2).port().to_string()));
    })
    .await;
    // The two live nodes kept nothing.
    wait_until_no_locks(&nodes, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn three_of_five_paused_fails_within_two_node_timeouts() {
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        for i in [1, 2, 3] {
            nodes.node_mut(i).pause();
        }
        let node_timeout = locker.options().node_timeout;
        let started = Instant::now();
        let err = locker.try_lock("frozen").await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(failed_ports(&err), ports(&nodes, &[1, 2, 3]), "{err}");
        let Error::QuorumUnavailable { failures, .. } = &err else {
            unreachable!()
        };
        assert!(
            failures
                .iter()
                .all(|f| matches!(f.fault, NodeFault::Timeout(t) if t == node_timeout)),
            "{err}"
        );
        // One round to acquire, one to undo on every node: two timeouts.
        assert!(
            took < 2 * node_timeout + Duration::from_millis(100),
            "took {took:?}"
        );
        for i in [1, 2, 3] {
            nodes.node_mut(i).resume();
        }
        // The undo also reaches the paused nodes once they wake: nothing stays locked.
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test]
async fn two_of_five_paused_still_acquires_within_the_node_timeout() {
    let mut nodes = start(5);
    let locker = locker(&nodes, options());
    bounded(LIMIT, async {
        common::warm_up(&locker).await;
        nodes.node_mut(0).pause();
        nodes.node_mut(4).pause();
        let node_timeout = locker.options().node_timeout;
        for _ in 0..3 {
            let started = Instant::now();
            let guard = locker.try_lock("stalled").await.unwrap();
            let took = started.elapsed();
            assert!(
                took < node_timeout + Duration::from_millis(100),
                "took {took:?}"
            );
            assert!(guard.remaining() > Duration::from_secs(9));
            guard.release().await.unwrap();
        }
        nodes.node_mut(0).resume();
        nodes.node_mut(4).resume();
        wait_until_no_locks(&nodes, Duration::from_secs(5)).await;
    })
    .await;
}
