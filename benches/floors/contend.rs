//! The contended loop: tasks taking turns on one key through one Locker,
//! and what it is summarised by.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fencelock::{
    Backend, LockGuard, LockOptions, Locker, Permit, ReadGuard, RetryPolicy, WriteGuard,
};

use super::stats::{median, percentile};

/// What one run of the contended loop saw.
pub struct Run {
    pub acquisitions: usize,
    /// Acquisitions by a task other than the previous holder: for a
    /// semaphore of k permits, by a task other than the last k to acquire.
    pub handoffs: usize,
    /// When each hand-over happened (all of them, the run's first
    /// acquisitions too), to count those of a window of the run.
    pub handed_at: Vec<Instant>,
    /// Every wait for the lock, in seconds; waits still going at the end
    /// of the run count with their length so far.
    pub waits: Vec<f64>,
    /// Acquires and releases that failed (node timeouts under overload):
    /// counted, so that a bench that drives the servers past their limit
    /// can report it; [`Summary::add`] fails on any.
    pub failures: usize,
    pub elapsed: Duration,
}

impl Run {
    /// `count` per second of the run.
    pub fn per_second(&self, count: usize) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }
}

/// Polling only: no release notifications, and a 0-200 ms random pause
/// between attempts, the usual default of Redlock clients.
pub fn polling() -> LockOptions {
    LockOptions::default().wake_on_release(false).retry(
        RetryPolicy::default()
            .delay(Duration::ZERO)
            .jitter(Duration::from_millis(200)),
    )
}

/// What a contended round takes and gives back: a lock guard, a read or
/// write guard, a permit.
pub trait Held: Send + 'static {
    /// Releases it.
    fn try_give_back(self) -> impl Future<Output = fencelock::Result<()>> + Send;

    /// Releases it, and fails the bench if the release fails.
    fn give_back(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async move { self.try_give_back().await.expect("release") }
    }
}

macro_rules! held {
    ($($guard:ident),*) => {$(
        impl<B: Backend> Held for $guard<B> {
            async fn try_give_back(self) -> fencelock::Result<()> {
                self.release().await.map(drop)
            }
        }
    )*};
}

held!(LockGuard, ReadGuard, WriteGuard, Permit);

/// `tasks` tasks loop `lock` -> release on `key` for `run`.
pub async fn contend<B: Backend>(
    locker: &Locker<B>,
    key: &str,
    tasks: usize,
    run: Duration,
) -> Run {
    let (locker, key): (Locker<B>, Arc<str>) = (locker.clone(), key.into());
    contend_on(tasks, 1, run, move || {
        let (locker, key) = (locker.clone(), Arc::clone(&key));
        async move { locker.lock(&key).await }
    })
    .await
}

/// `tasks` tasks loop `take()` -> release for `run`; `take` waits for its
/// turn, and up to `holders` hold at once.
pub async fn contend_on<F, Fut, H>(tasks: usize, holders: usize, run: Duration, take: F) -> Run
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = fencelock::Result<H>> + Send,
    H: Held,
{
    // The last `holders` tasks to acquire, the latest at the back. A task
    // that gives a permit back and takes it again before any waiter does is
    // no hand-over: that is what polling without a line ends in.
    let last = Arc::new(Mutex::new(VecDeque::with_capacity(holders + 1)));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + run;
    let tasks: Vec<_> = (1..=tasks)
        .map(|me| {
            let (take, last) = (take.clone(), Arc::clone(&last));
            tokio::spawn(async move {
                let (mut acquisitions, mut handed_at, mut waits) = (0, Vec::new(), Vec::new());
                let mut failures = 0;
                loop {
                    let asked = Instant::now();
                    match tokio::time::timeout_at(deadline, take()).await {
                        Ok(Err(_)) => {
                            waits.push(asked.elapsed().as_secs_f64());
                            failures += 1;
                        }
                        Ok(Ok(held)) => {
                            waits.push(asked.elapsed().as_secs_f64());
                            acquisitions += 1;
                            {
                                let mut last = last.lock().unwrap();
                                match last.iter().position(|&t| t == me) {
                                    Some(at) => drop(last.remove(at)),
                                    None => handed_at.push(Instant::now()),
                                }
                                last.push_back(me);
                                if last.len() > holders {
                                    last.pop_front();
                                }
                            }
                            if held.try_give_back().await.is_err() {
                                failures += 1;
                            }
                        }
                        Err(_) => {
                            waits.push(asked.elapsed().as_secs_f64());
                            return (acquisitions, handed_at, waits, failures);
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return (acquisitions, handed_at, waits, failures);
                    }
                }
            })
        })
        .collect();
    let mut run = Run {
        acquisitions: 0,
        handoffs: 0,
        handed_at: Vec::new(),
        waits: Vec::new(),
        failures: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (a, h, w, f) = task.await.unwrap();
        run.failures += f;
        run.acquisitions += a;
        run.handed_at.extend(h);
        run.waits.extend(w);
    }
    run.elapsed = started.elapsed();
    // The first acquisitions of the run had no previous holder.
    run.handoffs = run.handed_at.len().saturating_sub(holders);
    run
}

/// Medians over runs of: acquisitions/s, handoffs/s, wait p50, p99, max (ms).
#[derive(Default)]
pub struct Summary {
    acquisitions: Vec<f64>,
    handoffs: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
}

impl Summary {
    /// Adds one run.
    pub fn add(&mut self, mut run: Run) {
        assert_eq!(run.failures, 0, "acquires or releases failed");
        run.waits.sort_by(f64::total_cmp);
        self.acquisitions.push(run.per_second(run.acquisitions));
        self.handoffs.push(run.per_second(run.handoffs));
        self.p50.push(percentile(&run.waits, 0.50) * 1e3);
        self.p99.push(percentile(&run.waits, 0.99) * 1e3);
        self.max
            .push(run.waits.last().copied().unwrap_or(0.0) * 1e3);
    }

    /// The medians, in the order of the struct's doc.
    pub fn medians(&self) -> [f64; 5] {
        [
            median(self.acquisitions.clone()),
            median(self.handoffs.clone()),
            median(self.p50.clone()),
            median(self.p99.clone()),
            median(self.max.clone()),
        ]
    }
}
