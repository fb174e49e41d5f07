//! The futures of the public async API are `Send`, and the handles are
//! `Send + Sync`, so they can be spawned on a multi-threaded runtime and
//! shared between tasks. Checked at compile time: a future that stops being
//! `Send` fails the build of this file, not a user's.
#![allow(dead_code, clippy::unused_async)] // compiled, never run

use std::time::Duration;

use fencelock::{
    Backend, Handoff, LockGuard, Locker, Permit, ReadGuard, Redlock, Semaphore, WriteGuard,
};

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>() {}

async fn work(_: &LockGuard<impl Backend>) -> u64 {
    1
}

/// Every async method of a Locker on `B` and of its guard.
fn futures_are_send<B: Backend>(locker: &Locker<B>, guard: LockGuard<B>, handoff: &Handoff) {
    send(&locker.try_lock("k"));
    send(&locker.lock("k"));
    send(&locker.lock_timeout("k", Duration::from_secs(1)));
    send(&locker.inspect("k"));
    send(&locker.is_locked("k"));
    send(&locker.list("k", None));
    send(&locker.list_all("k"));
    send(&locker.force_release("k"));
    send(&locker.adopt(handoff));
    send(&locker.with_lock("k", async |g| work(g).await));
    send(&locker.with_lock_until_lost("k", async |g| work(g).await));
    send(&guard.lost());
    send(&guard.extend(Duration::from_secs(1)));
    send(&guard.release());
}

/// The same for read-write locks and semaphores. A semaphore is cloned
/// into each task that takes permits, whatever its backend.
fn shared_kinds_are_send<B: Backend>(
    locker: &Locker<B>,
    semaphore: &Semaphore<B>,
    read: ReadGuard<B>,
    write: WriteGuard<B>,
    permit: Permit<B>,
    handoff: &Handoff,
) {
    send(&locker.try_read("k"));
    send(&locker.read("k"));
    send(&locker.read_timeout("k", Duration::from_secs(1)));
    send(&locker.try_write("k"));
    send(&locker.write("k"));
    send(&locker.write_timeout("k", Duration::from_secs(1)));
    send(&locker.adopt_read(handoff));
    send(&locker.adopt_write(handoff));
    let _: Semaphore<B> = semaphore.clone();
    send(&semaphore.try_acquire());
    send(&semaphore.acquire());
    send(&semaphore.acquire_timeout(Duration::from_secs(1)));
    send(&semaphore.adopt(handoff));
    send(&read.lost());
    send(&read.release());
    send(&write.lost());
    send(&write.downgrade());
    send(&permit.extend(Duration::from_secs(1)));
    send(&permit.release());
}

fn shared_handles_are_send_sync<B: Backend>() {
    send_sync::<Semaphore<B>>();
    send_sync::<ReadGuard<B>>();
    send_sync::<WriteGuard<B>>();
    send_sync::<Permit<B>>();
}

#[test]
fn redlock_futures_and_handles_are_send() {
    send_sync::<Locker<Redlock>>();
    send_sync::<LockGuard<Redlock>>();
    send_sync::<Redlock>();
    shared_handles_are_send_sync::<Redlock>();
    let _ = futures_are_send::<Redlock>;
    let _ = shared_kinds_are_send::<Redlock>;
}

#[cfg(feature = "etcd")]
#[test]
fn etcd_futures_and_handles_are_send() {
    send_sync::<Locker<fencelock::Etcd>>();
    send_sync::<LockGuard<fencelock::Etcd>>();
    shared_handles_are_send_sync::<fencelock::Etcd>();
    let _ = futures_are_send::<fencelock::Etcd>;
    let _ = shared_kinds_are_send::<fencelock::Etcd>;
}

#[test]
fn fenced_store_futures_are_send() {
    fn check(store: &fencelock::FencedStore) {
        send(&store.write("r", fencelock::FencingToken::new(1), "v"));
        send(&store.read("r"));
    }
    send_sync::<fencelock::FencedStore>();
    let _ = check;
}

#[test]
fn configured_backends_futures_and_handles_are_send() {
    use fencelock::{AnyBackend, BackendConfig, Registry, RegistryConfig};
    fn check(config: &BackendConfig, registry: &RegistryConfig, lockers: &Registry) {
        send(&AnyBackend::connect(config));
        send(&Locker::connect(
            "redis://h:1",
            fencelock::LockOptions::default(),
        ));
        send(&Registry::connect(registry));
        send(&lockers.settled());
    }
    send_sync::<AnyBackend>();
    send_sync::<Locker<AnyBackend>>();
    send_sync::<LockGuard<AnyBackend>>();
    send_sync::<BackendConfig>();
    send_sync::<RegistryConfig>();
    send_sync::<Registry>();
    shared_handles_are_send_sync::<AnyBackend>();
    let _ = futures_are_send::<AnyBackend>;
    let _ = shared_kinds_are_send::<AnyBackend>;
    let _ = check;
}
