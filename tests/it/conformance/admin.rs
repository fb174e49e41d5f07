//! Introspection, admin and bad input, the same on every backend.

use super::*;

/// Introspection and admin: a lock on a resource whose name has the
/// characters backends escape is seen by `inspect` and `list`, a forced
/// release frees it (its holder finds out), and tokens go on increasing.
pub(super) async fn inspect_list_and_force_release<H: Harness>() {
    if !supported::<H>("inspect_list_and_force_release") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let owner = Owner::random();
    let holder = locker.with_owner(owner.clone());
    bounded(LIMIT, async {
        let odd = "jobs/a%2F/b";
        let guard = holder.lock(odd).await.unwrap();
        let other = holder.lock("jobs/c").await.unwrap();
        let unrelated = holder.lock("jobsx").await.unwrap();
        // Every node's answer is in (Redlock returns at a quorum).
        holder.settled().await;
        let info = locker.inspect(odd).await.unwrap();
        let agreed = info.agreed.clone().expect("a holder all agree on");
        assert_eq!(agreed.token, guard.token());
        assert_eq!(agreed.owner, owner.to_string());
        assert_eq!(info.locked_nodes(), info.nodes.len());
        assert!(locker.is_locked(odd).await.unwrap());
        let mut listed = locker.list_all("jobs/").await.unwrap();
        listed.sort();
        assert_eq!(listed, vec![odd.to_owned(), "jobs/c".to_owned()]);

        let forced = locker.force_release(odd).await.unwrap();
        assert!(forced.failures.is_empty(), "{forced:?}");
        assert_eq!(forced.removed, info.nodes.len());
        assert!(!locker.is_locked(odd).await.unwrap());
        assert!(matches!(
            guard.release().await,
            Err(Error::NotHeld { .. } | Error::Lost { .. })
        ));
        let next = locker.try_lock(odd).await.unwrap();
        assert!(next.token() > agreed.token, "tokens go on increasing");
        // Nothing forced on a free lock.
        next.release().await.unwrap();
        locker.settled().await;
        assert_eq!(locker.force_release(odd).await.unwrap().removed, 0);
        other.release().await.unwrap();
        unrelated.release().await.unwrap();
        locker.settled().await;
        nothing_locked(&locker).await;
    })
    .await;
}

pub(super) async fn bad_input_is_rejected<H: Harness>() {
    if !supported::<H>("bad_input") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    bounded(LIMIT, async {
        for key in [String::new(), "k".repeat(fencelock::MAX_KEY_LEN + 1)] {
            assert!(matches!(
                locker.try_lock(&key).await,
                Err(Error::InvalidKey(_))
            ));
            assert!(matches!(locker.lock(&key).await, Err(Error::InvalidKey(_))));
        }
        let bad = options().ttl(Duration::ZERO);
        assert!(matches!(
            locker.with_options(bad),
            Err(Error::InvalidOptions(_))
        ));
        let spin = options().retry(
            RetryPolicy::default()
                .delay(Duration::ZERO)
                .jitter(Duration::ZERO),
        );
        assert!(matches!(
            locker.with_options(spin),
            Err(Error::InvalidOptions(_))
        ));
    })
    .await;
}
