//! One owner's holds: nesting, downgrade, no upgrade, the tokens' rule,
//! one kind per name, scoped holds.

use super::*;

/// One owner nests: a read in a read, a read in a write and a write in a
/// write, each with the outer token; the outer hold keeps others out until
/// it is released itself.
pub(super) async fn holds_nest_with_the_outer_token<H: Unsupported>() {
    if !supported::<H>("reentrancy") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        // A read in a read.
        let outer = locker.read("nested").await.unwrap();
        let inner = locker.try_read("nested").await.unwrap();
        assert_eq!(inner.token(), outer.token());
        read_once(&other, "nested").await;
        refused(other.try_write("nested").await);
        inner.release().await.unwrap();
        assert!(outer.is_held());
        refused(other.try_write("nested").await);
        outer.release().await.unwrap();

        // A read and a write in a write.
        let outer = locker.write("nested").await.unwrap();
        let read = locker.read("nested").await.unwrap();
        let write = locker.try_write("nested").await.unwrap();
        assert_eq!(read.token(), outer.token());
        assert_eq!(write.token(), outer.token());
        refused(other.try_read("nested").await);
        write.release().await.unwrap();
        read.release().await.unwrap();
        assert!(outer.is_held());
        refused(other.try_read("nested").await);
        refused(other.try_write("nested").await);
        let outer_token = outer.token();
        outer.release().await.unwrap();
        let next = other.try_write("nested").await.unwrap();
        assert!(next.token() > outer_token);
        next.release().await.unwrap();
        nothing_locked(&locker).await;
    })
    .await;
}

/// A write hold downgrades to a read hold with the same token: another
/// reader gets in at once, another writer does not. With a hold nested in
/// it, the downgrade is refused and the write hold handed back intact.
pub(super) async fn a_write_hold_downgrades<H: Unsupported>() {
    if !supported::<H>("downgrade") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    let writer = servers.locker(options());
    bounded(LIMIT, async {
        let write = locker.write("lowered").await.unwrap();
        let token = write.token();
        let read = write.downgrade().await.unwrap();
        assert_eq!(read.token(), token);
        assert!(read.is_held());
        let joined = other.try_read("lowered").await.unwrap();
        assert!(joined.token() > token, "a read after the write");
        refused(writer.try_write("lowered").await);
        joined.release().await.unwrap();
        refused(writer.try_write("lowered").await);
        read.release().await.unwrap();
        let next = other.try_write("lowered").await.unwrap();
        assert!(next.token() > token);
        next.release().await.unwrap();

        // Refused while a hold is nested in it.
        let write = locker.write("lowered").await.unwrap();
        let nested = locker.read("lowered").await.unwrap();
        let failed = write.downgrade().await.unwrap_err();
        assert!(
            matches!(failed.error(), Error::DowngradeRefused { nested: 1, .. }),
            "{failed:?}"
        );
        let write = failed.into_guard();
        assert!(write.is_held());
        refused(other.try_read("lowered").await);
        nested.release().await.unwrap();
        let read = write.downgrade().await.unwrap();
        read_once(&other, "lowered").await;
        read.release().await.unwrap();
        nothing_locked(&locker).await;
    })
    .await;
}

/// A read hold never becomes a write hold: the same owner asking to write
/// is refused at once, by every way of asking, and the read hold stays.
pub(super) async fn an_upgrade_is_refused_at_once<H: Unsupported>() {
    if !supported::<H>("upgrade_refused") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let read = locker.read("raised").await.unwrap();
        let asked = Instant::now();
        let tried = locker.try_write("raised").await;
        assert!(
            matches!(tried, Err(Error::UpgradeRefused { .. })),
            "{tried:?}"
        );
        let waited = locker.write("raised").await;
        assert!(
            matches!(waited, Err(Error::UpgradeRefused { .. })),
            "{waited:?}"
        );
        let timed = locker.write_timeout("raised", SOON).await;
        assert!(
            matches!(timed, Err(Error::UpgradeRefused { .. })),
            "{timed:?}"
        );
        assert!(asked.elapsed() < Duration::from_secs(1), "waited to refuse");
        assert!(read.is_held());
        read_once(&other, "raised").await;
        refused(other.try_write("raised").await);
        read.release().await.unwrap();
        write_once(&locker, "raised").await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// The fencing rule: a write's token is above every earlier hold's,
/// readers' included; a read's is above every earlier write's.
pub(super) async fn tokens_follow_the_fencing_rule<H: Unsupported>() {
    if !supported::<H>("tokens") {
        return;
    }
    let servers = H::start();
    let (a, b) = (servers.locker(options()), servers.locker(options()));
    bounded(LIMIT, async {
        let mut any = None;
        for round in 0..10 {
            let write = a.write("fenced").await.unwrap();
            assert!(
                Some(write.token()) > any,
                "round {round}: write {:?} after a hold with {any:?}",
                write.token()
            );
            let last_write = write.token();
            any = Some(last_write);
            write.release().await.unwrap();

            // Two readers at once, then one alone.
            let r1 = a.read("fenced").await.unwrap();
            let r2 = b.read("fenced").await.unwrap();
            let r1_token = r1.token();
            r1.release().await.unwrap();
            let r3 = a.read("fenced").await.unwrap();
            for read in [r1_token, r2.token(), r3.token()] {
                assert!(
                    read > last_write,
                    "round {round}: read {read:?} after a write with {last_write:?}"
                );
                any = any.max(Some(read));
            }
            r2.release().await.unwrap();
            r3.release().await.unwrap();
        }
        nothing_locked(&a).await;
    })
    .await;
}

/// One name, one kind at a time: a read-write lock's name cannot be
/// locked, and a lock's name cannot be read or written, by another client
/// or by the holder itself; waiting calls say so at once too.
pub(super) async fn a_name_is_one_kind_at_a_time<H: Unsupported>() {
    if !supported::<H>("wrong_kind") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    #[track_caller]
    fn wrong<T: std::fmt::Debug>(result: fencelock::Result<T>, used: &str, wanted: &str) {
        match &result {
            Err(Error::WrongKind {
                in_use_as,
                wanted: w,
                ..
            }) if in_use_as == used && *w == wanted => {}
            _ => panic!("expected WrongKind {{ {used} as {wanted} }}, got {result:?}"),
        }
    }
    bounded(LIMIT, async {
        let asked = Instant::now();
        let lock = locker.lock("kind").await.unwrap();
        for client in [&locker, &other] {
            wrong(client.try_read("kind").await, "lock", "rwlock");
            wrong(client.try_write("kind").await, "lock", "rwlock");
            wrong(client.read("kind").await, "lock", "rwlock");
            wrong(client.write_timeout("kind", SOON).await, "lock", "rwlock");
        }
        lock.release().await.unwrap();

        let refused_as_a_lock = async || {
            for client in [&locker, &other] {
                wrong(client.try_lock("kind").await, "rwlock", "lock");
                wrong(client.lock("kind").await, "rwlock", "lock");
                wrong(client.lock_timeout("kind", SOON).await, "rwlock", "lock");
            }
        };
        let read = locker.read("kind").await.unwrap();
        refused_as_a_lock().await;
        read.release().await.unwrap();
        let write = locker.write("kind").await.unwrap();
        refused_as_a_lock().await;
        write.release().await.unwrap();
        assert!(asked.elapsed() < SOON, "a wrong kind was waited for");
        // Free again: any kind may have the name.
        common::lock_once(&other, "kind").await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// `with_read` and `with_write` hold the lock around the work, hand back
/// its value, and release on the way out.
pub(super) async fn scoped_reads_and_writes<H: Unsupported>() {
    if !supported::<H>("scoped") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let other = servers.locker(options());
    bounded(LIMIT, async {
        let token = locker
            .with_write("scoped", async |guard| {
                assert!(guard.is_held());
                refused(other.try_read("scoped").await);
                guard.token()
            })
            .await
            .unwrap();
        let (read_token, other_token) = locker
            .with_read("scoped", async |guard| {
                assert!(guard.is_held());
                let joined = other.try_read("scoped").await.unwrap();
                let joined_token = joined.token();
                joined.release().await.unwrap();
                refused(other.try_write("scoped").await);
                (guard.token(), joined_token)
            })
            .await
            .unwrap();
        assert!(read_token > token);
        assert!(other_token > token);
        let next = other.try_write("scoped").await.unwrap();
        assert!(next.token() > read_token.max(other_token));
        next.release().await.unwrap();
        nothing_locked(&locker).await;
    })
    .await;
}
