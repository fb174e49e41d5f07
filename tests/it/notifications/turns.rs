//! Waiters take turns: in arrival order within one process, fairly across
//! several Lockers, and a waiter whose owner meanwhile took the lock nests.

use super::*;

#[tokio::test]
async fn waiters_of_one_process_take_turns_in_arrival_order() {
    for n in [1, 5] {
        let nodes = start(n);
        let locker = locker(&nodes, slow_retry());
        common::warm_up(&locker).await;
        bounded(LIMIT, async {
            let holder = locker.lock("queue").await.unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let mut waiters = Vec::new();
            for i in 0..6 {
                // Each waiter in a task of its own (its owner), and in the
                // line before the next one starts.
                let (me, tx) = (locker.clone(), tx.clone());
                let (joined, in_line) = tokio::sync::oneshot::channel();
                waiters.push(tokio::spawn(async move {
                    let mut waiting = std::pin::pin!(me.lock_timeout("queue", 3 * RETRY));
                    assert!(futures::poll!(&mut waiting).is_pending());
                    joined.send(()).unwrap();
                    let guard = waiting.await.unwrap();
                    tx.send((i, guard.token())).unwrap();
                    guard.release().await.unwrap();
                }));
                in_line.await.unwrap();
            }
            let started = Instant::now();
            let mut last = holder.token();
            holder.release().await.unwrap();
            let mut order = Vec::new();
            for _ in 0..6 {
                let (i, token) = rx.recv().await.unwrap();
                assert!(token > last, "tokens increase along the line");
                last = token;
                order.push(i);
            }
            let took = started.elapsed();
            assert_eq!(order, (0..6).collect::<Vec<_>>(), "N = {n}");
            // Six hand-overs, each on a notification: far below one retry delay.
            assert!(took < RETRY / 2, "N = {n}: six hand-overs took {took:?}");
            for w in waiters {
                w.await.unwrap();
            }
            wait_until(Duration::from_secs(5), async || {
                open_channels(&nodes).await.is_empty()
            })
            .await;
        })
        .await;
    }
}

#[tokio::test]
async fn a_waiter_whose_owner_takes_the_lock_meanwhile_nests_instead_of_queueing() {
    let nodes = start(3);
    let base = locker(&nodes, slow_retry());
    let owner = Owner::random();
    // The owner's lock starts out in another process.
    let elsewhere = locker(&nodes, options()).with_owner(owner.clone());
    bounded(LIMIT, async {
        let held = elsewhere.lock("shared").await.unwrap();
        // A task-bound waiter at the head of base's line; it polls only
        // every 10 s and hears of no release until the end.
        let head = {
            let base = base.clone();
            tokio::spawn(async move {
                let guard = base.lock_timeout("shared", 3 * RETRY).await.unwrap();
                guard.release().await.unwrap();
            })
        };
        until_listening(&nodes, &channel("shared")).await;
        // A waiter of the same owner in this process, retrying quickly: a
        // first acquire, refused while the lock is the other process's.
        let waiter = base
            .with_options(options())
            .unwrap()
            .with_owner(owner.clone());
        let nested = tokio::spawn(async move {
            let guard = waiter.lock_timeout("shared", 3 * RETRY).await.unwrap();
            let token = guard.token();
            guard.release().await.unwrap();
            token
        });
        // The lock moves into this process, under the same owner.
        let outer = base
            .with_owner(owner)
            .adopt(&held.hand_off())
            .await
            .unwrap();
        // The waiter must nest now, not sit in the line behind the head,
        // which waits for this very lock.
        let token = tokio::time::timeout(Duration::from_secs(5), nested)
            .await
            .expect("the waiter queued behind a waiter for its own owner's lock")
            .unwrap();
        assert_eq!(token, outer.token());
        outer.release().await.unwrap();
        head.await.unwrap();
    })
    .await;
}

/// Waiters of several Lockers (each with its own connections and line, as
/// in several processes) take turns on one key. Each release is a race
/// between the Lockers' heads, and it must be a fair one that ends without
/// a retry pause: the releasing Locker's next waiter used to reach every
/// node right behind the release, before the others had heard of it, and
/// kept the lock in its Locker; and a race that split the nodes so that
/// nobody had a quorum left every contender sitting out its retry delay.
#[tokio::test]
async fn waiters_of_several_lockers_take_turns_without_retry_pauses() {
    const LOCKERS: usize = 4;
    const TASKS: usize = 3;
    const ACQUISITIONS: usize = 1000;
    let nodes = start(5);
    let lockers: Vec<_> = (0..LOCKERS).map(|_| locker(&nodes, slow_retry())).collect();
    for l in &lockers {
        common::warm_up(l).await;
    }
    bounded(LIMIT, async {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stop = std::sync::Arc::new(stop);
        let mut tasks = Vec::new();
        for (l, locker) in lockers.iter().enumerate() {
            for _ in 0..TASKS {
                let (locker, count, stop) = (locker.clone(), count.clone(), stop.clone());
                let mut stopped = stopped.clone();
                tasks.push(tokio::spawn(async move {
                    let mut acquired = Vec::new();
                    loop {
                        // Half a retry delay: only a retry pause takes that long.
                        let held = tokio::select! {
                            held = locker.lock_timeout("race", RETRY / 2) => held,
                            _ = stopped.wait_for(|s| *s) => return (acquired, false),
                        };
                        match held {
                            Ok(guard) => {
                                acquired.push((guard.token(), l));
                                guard.release().await.unwrap();
                                let done = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                if done + 1 >= ACQUISITIONS {
                                    stop.send_replace(true);
                                }
                            }
                            Err(Error::Timeout { .. }) => {
                                stop.send_replace(true);
                                return (acquired, true);
                            }
                            Err(e) => panic!("lock: {e}"),
                        }
                    }
                }));
            }
        }
        let (mut acquired, mut paused) = (Vec::new(), 0);
        for task in tasks {
            let (a, p) = task.await.unwrap();
            acquired.extend(a);
            paused += usize::from(p);
        }
        for l in &lockers {
            l.settled().await;
        }
        assert_eq!(
            paused,
            0,
            "{paused} waits ran for half the retry delay ({} acquisitions before): \
             waiters sat out a retry pause",
            acquired.len()
        );
        acquired.sort();
        let between = acquired.windows(2).filter(|w| w[0].1 != w[1].1).count();
        let per_locker: Vec<usize> = (0..LOCKERS)
            .map(|l| acquired.iter().filter(|a| a.1 == l).count())
            .collect();
        // The longest run of acquisitions by one Locker.
        let longest = acquired
            .chunk_by(|a, b| a.1 == b.1)
            .map(<[_]>::len)
            .max()
            .unwrap_or(0);
        eprintln!("between {between}, longest run {longest}, per Locker {per_locker:?}");
        // One release in four is a fair race, which another Locker wins
        // most of the time: about a fifth of the acquisitions change
        // Locker (measured 21-23%), and a Locker's run ends within a few
        // fours (longest measured 24; 64 needs a Locker to win some
        // fifteen races in a row). The releasing Locker keeping the lock
        // had 1-2% and runs of hundreds.
        assert!(
            between * 10 >= acquired.len() && longest <= 64,
            "only {between} of {} acquisitions went to another Locker than the one before, \
             the longest run by one Locker was {longest} (per Locker: {per_locker:?})",
            acquired.len()
        );
        assert!(
            per_locker
                .iter()
                .all(|&n| n * 2 * LOCKERS >= acquired.len()),
            "a Locker got less than half its share: {per_locker:?}"
        );
    })
    .await;
}
