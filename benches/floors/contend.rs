//! The contended loop: tasks taking turns on one key through one Locker,
//! and what it is summarised by.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fencelock::{Backend, Locker};

use super::stats::{median, percentile};

/// What one run of the contended loop saw.
pub struct Run {
    pub acquisitions: usize,
    /// Acquisitions by a task other than the previous holder.
    pub handoffs: usize,
    /// Every wait for the lock, in seconds; waits still going at the end
    /// of the run count with their length so far.
    pub waits: Vec<f64>,
    pub elapsed: Duration,
}

impl Run {
    /// `count` per second of the run.
    pub fn per_second(&self, count: usize) -> f64 {
        count as f64 / self.elapsed.as_secs_f64()
    }
}

/// `tasks` tasks loop acquire -> release on `key` for `run`.
pub async fn contend<B: Backend>(
    locker: &Locker<B>,
    key: &str,
    tasks: usize,
    run: Duration,
) -> Run {
    // The task that took the lock last, plus one (0: nobody yet).
    let last = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + run;
    let key: Arc<str> = key.into();
    let tasks: Vec<_> = (1..=tasks)
        .map(|me| {
            let (locker, last, key) = (locker.clone(), Arc::clone(&last), Arc::clone(&key));
            tokio::spawn(async move {
                let (mut acquisitions, mut handoffs, mut waits) = (0, 0, Vec::new());
                loop {
                    let asked = Instant::now();
                    match tokio::time::timeout_at(deadline, locker.lock(&key)).await {
                        Ok(guard) => {
                            let guard = guard.expect("lock");
                            waits.push(asked.elapsed().as_secs_f64());
                            acquisitions += 1;
                            if last.swap(me, Ordering::Relaxed) != me {
                                handoffs += 1;
                            }
                            guard.release().await.expect("release");
                        }
                        Err(_) => {
                            waits.push(asked.elapsed().as_secs_f64());
                            return (acquisitions, handoffs, waits);
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return (acquisitions, handoffs, waits);
                    }
                }
            })
        })
        .collect();
    let mut run = Run {
        acquisitions: 0,
        handoffs: 0,
        waits: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (a, h, w) = task.await.unwrap();
        run.acquisitions += a;
        run.handoffs += h;
        run.waits.extend(w);
    }
    run.elapsed = started.elapsed();
    // The first acquisition of the run had no previous holder.
    run.handoffs = run.handoffs.saturating_sub(1);
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
