//! Percentiles and medians, the statistics every figure is quoted in.

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
