//! Percentiles and medians, the statistics every figure is quoted in.

use std::pin::Pin;
use std::time::{Duration, Instant};

/// The value at rank `p` (0..=1) of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

/// The median of `values` (the upper one of an even count).
pub fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("comparable values"));
    values[values.len() / 2]
}

/// p50 and p99 of `round` over `runs` runs of `samples` timed rounds: the
/// medians over runs of each run's p50 and p99.
pub async fn tail_latency<F, Fut>(runs: usize, samples: usize, mut round: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            round().await;
            times.push(started.elapsed());
        }
        times.sort();
        p50s.push(percentile(&times, 0.50));
        p99s.push(percentile(&times, 0.99));
    }
    (median(p50s), median(p99s))
}

/// `a / b` of two durations.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// One variant's round, boxed so that variants of different types can take
/// turns in one loop.
pub type Round<'a> = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// p50 and p99 of each of `rounds`: `runs` runs of `samples` rounds of
/// each, one round of each in turn, the first of the turn rotating, so that
/// every variant sees the same moments of a noisy machine. Per variant, the
/// medians over runs of each run's p50 and p99. (The box costs every
/// variant the same allocation, tens of nanoseconds.)
pub async fn interleaved_tails(
    runs: usize,
    samples: usize,
    rounds: &mut [Round<'_>],
) -> Vec<(Duration, Duration)> {
    let k = rounds.len();
    let mut per_run: Vec<(Vec<Duration>, Vec<Duration>)> = vec![(Vec::new(), Vec::new()); k];
    for _ in 0..runs {
        let mut times = vec![Vec::with_capacity(samples); k];
        for i in 0..samples {
            for j in 0..k {
                let v = (i + j) % k;
                let started = Instant::now();
                (rounds[v])().await;
                times[v].push(started.elapsed());
            }
        }
        for (v, mut t) in times.into_iter().enumerate() {
            t.sort();
            per_run[v].0.push(percentile(&t, 0.50));
            per_run[v].1.push(percentile(&t, 0.99));
        }
    }
    per_run
        .into_iter()
        .map(|(p50s, p99s)| (median(p50s), median(p99s)))
        .collect()
}
