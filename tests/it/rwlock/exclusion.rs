//! Who may hold at once: writers alone, readers together, a waiting
//! writer ahead of new readers, and waiters woken by a release.

use super::*;

/// Writers never overlap with each other nor with readers, and each
/// writer's token is above the one before it.
pub(super) async fn writers_are_mutually_exclusive<H: Unsupported>() {
    if !supported::<H>("writers_exclusive") {
        return;
    }
    let servers = H::start();
    let locker = servers.locker(options());
    let reader_locker = servers.locker(options());
    bounded(LIMIT, async {
        let writers = Arc::new(AtomicUsize::new(0));
        let readers = Arc::new(AtomicUsize::new(0));
        let entries = Arc::new(AtomicUsize::new(0));
        let last_write = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (locker, writers, readers, entries, last_write) = (
                locker.clone(),
                Arc::clone(&writers),
                Arc::clone(&readers),
                Arc::clone(&entries),
                Arc::clone(&last_write),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let guard = locker.write("shared").await.unwrap();
                    assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0, "two writers");
                    assert_eq!(readers.load(Ordering::SeqCst), 0, "a reader with a writer");
                    let token = guard.token().get();
                    let before = last_write.swap(token, Ordering::SeqCst);
                    assert!(token > before, "write token {token} after {before}");
                    entries.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    writers.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            }));
        }
        for _ in 0..3 {
            let (locker, writers, readers) = (
                reader_locker.clone(),
                Arc::clone(&writers),
                Arc::clone(&readers),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let guard = locker.read("shared").await.unwrap();
                    readers.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(writers.load(Ordering::SeqCst), 0, "a writer with a reader");
                    tokio::task::yield_now().await;
                    readers.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(entries.load(Ordering::SeqCst), 80);
        reader_locker.settled().await;
        nothing_locked(&locker).await;
    })
    .await;
}

/// Several readers, each another client, hold the lock at the same time:
/// they all meet at a barrier inside their read holds, and a writer is
/// refused meanwhile.
pub(super) async fn readers_hold_together<H: Unsupported>() {
    if !supported::<H>("readers_together") {
        return;
    }
    const READERS: usize = 5;
    let servers = H::start();
    let writer = servers.locker(options());
    bounded(LIMIT, async {
        let inside = Arc::new(Barrier::new(READERS + 1));
        let (leave, may_leave) = watch::channel(false);
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let locker = servers.locker(options());
                let (inside, mut may_leave) = (Arc::clone(&inside), may_leave.clone());
                tokio::spawn(async move {
                    let guard = locker.read("together").await.unwrap();
                    tokio::time::timeout(SOON, inside.wait())
                        .await
                        .expect("the readers were never all inside at once");
                    may_leave.wait_for(|&go| go).await.unwrap();
                    assert!(guard.is_held());
                    guard.release().await.unwrap();
                    locker.settled().await;
                })
            })
            .collect();
        tokio::time::timeout(SOON, inside.wait())
            .await
            .expect("the readers were never all inside at once");
        refused(writer.try_write("together").await);
        leave.send(true).unwrap();
        for reader in readers {
            reader.await.unwrap();
        }
        write_once(&writer, "together").await;
        nothing_locked(&writer).await;
    })
    .await;
}

/// A writer waits while readers hold the lock, stays out until the last of
/// them has released, and then gets in with a token above theirs.
pub(super) async fn a_writer_waits_for_the_readers<H: Unsupported>() {
    if !supported::<H>("writer_waits_for_readers") {
        return;
    }
    let servers = H::start();
    let (first, second) = (servers.locker(options()), servers.locker(options()));
    let writer = servers.locker(options());
    let probe = servers.locker(options());
    bounded(LIMIT, async {
        let r1 = first.read("queue").await.unwrap();
        let r2 = second.read("queue").await.unwrap();
        let readers_top = r1.token().max(r2.token());
        let entered = Arc::new(AtomicBool::new(false));
        let waiting = {
            let entered = Arc::clone(&entered);
            tokio::spawn(async move {
                let guard = writer.write("queue").await.unwrap();
                entered.store(true, Ordering::SeqCst);
                let token = guard.token();
                guard.release().await.unwrap();
                writer.settled().await;
                token
            })
        };
        until_a_writer_waits(&probe, "queue").await;
        assert!(
            !entered.load(Ordering::SeqCst),
            "a writer in with two readers"
        );
        r1.release().await.unwrap();
        // One reader still holds it.
        refused(probe.try_write("queue").await);
        assert!(!entered.load(Ordering::SeqCst), "a writer in with a reader");
        r2.release().await.unwrap();
        let token = tokio::time::timeout(SOON, waiting)
            .await
            .expect("the writer did not get in once the readers left")
            .unwrap();
        assert!(
            token > readers_top,
            "write token {token:?} not above the readers' {readers_top:?}"
        );
        nothing_locked(&probe).await;
    })
    .await;
}

/// Writer preference: while a writer waits, a new reader is refused even
/// though only readers hold the lock; when they leave, the writer gets in
/// before the new reader.
pub(super) async fn a_waiting_writer_keeps_new_readers_out<H: Unsupported>() {
    if !supported::<H>("writer_preference") {
        return;
    }
    let servers = H::start();
    let first = servers.locker(options());
    let writer = servers.locker(options());
    let late = servers.locker(options());
    bounded(LIMIT, async {
        let r1 = first.read("preferred").await.unwrap();
        // Before any writer waits, a second reader joins.
        read_once(&late, "preferred").await;

        let order = Arc::new(Mutex::new(Vec::new()));
        let (entered, writer_in) = oneshot::channel();
        let (leave, may_leave) = oneshot::channel::<()>();
        let waiting_writer = {
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                let guard = writer.write("preferred").await.unwrap();
                order.lock().unwrap().push("writer");
                entered.send(guard.token()).unwrap();
                may_leave.await.unwrap();
                guard.release().await.unwrap();
                writer.settled().await;
            })
        };
        until_a_writer_waits(&late, "preferred").await;
        // Not a passing refusal: the writer keeps readers out while it waits.
        refused(late.try_read("preferred").await);
        refused(late.try_read("preferred").await);

        let new_reader = {
            let (late, order) = (late.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let guard = late.read("preferred").await.unwrap();
                order.lock().unwrap().push("reader");
                let token = guard.token();
                guard.release().await.unwrap();
                token
            })
        };
        let r1_token = r1.token();
        r1.release().await.unwrap();
        let write_token = tokio::time::timeout(SOON, writer_in)
            .await
            .expect("the waiting writer did not get in once the reader left")
            .unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["writer"],
            "a new reader went first"
        );
        assert!(write_token > r1_token);
        leave.send(()).unwrap();
        let read_token = tokio::time::timeout(SOON, new_reader)
            .await
            .expect("the new reader did not get in after the writer")
            .unwrap();
        waiting_writer.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["writer", "reader"]);
        assert!(read_token > write_token);
        nothing_locked(&late).await;
    })
    .await;
}

/// A release wakes the waiters at once, long before their retry delay: a
/// writer waiting for a reader, readers waiting for a writer.
pub(super) async fn a_release_wakes_the_waiters<H: Unsupported>() {
    if !supported::<H>("wake_on_release") {
        return;
    }
    let servers = H::start();
    let holder = servers.locker(options());
    let probe = servers.locker(options());
    let (writer, reader) = (servers.locker(slow_retry()), servers.locker(slow_retry()));
    bounded(LIMIT, async {
        let read = holder.read("woken").await.unwrap();
        let waiting = tokio::spawn(async move {
            let guard = writer.write_timeout("woken", 3 * RETRY).await.unwrap();
            let at = Instant::now();
            guard.release().await.unwrap();
            writer.settled().await;
            at
        });
        until_a_writer_waits(&probe, "woken").await;
        let released = Instant::now();
        read.release().await.unwrap();
        let woken = waiting.await.unwrap() - released;
        assert!(
            woken < WAKE,
            "the writer got in {woken:?} after the release"
        );

        let write = holder.write("woken").await.unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move {
                    let guard = reader.read_timeout("woken", 3 * RETRY).await.unwrap();
                    let at = Instant::now();
                    guard.release().await.unwrap();
                    at
                })
            })
            .collect();
        until_queued(&holder, "woken", 2).await;
        let released = Instant::now();
        write.release().await.unwrap();
        for reader in waiting {
            let woken = reader.await.unwrap() - released;
            assert!(woken < WAKE, "a reader got in {woken:?} after the release");
        }
        reader.settled().await;
        nothing_locked(&holder).await;
    })
    .await;
}
