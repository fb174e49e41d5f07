//! What a `metrics` debugging recorder saw, accumulated across snapshots.

use super::*;

/// One drained value: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, DebugValue);

/// What a debugging recorder saw, accumulated. Its snapshots drain counters
/// and histograms, so every query here first adds the latest snapshot to the
/// running totals: reading twice never loses counts.
pub struct Recorded {
    snapshotter: Snapshotter,
    seen: std::sync::Mutex<Vec<Sample>>,
}

impl Recorded {
    pub fn new(recorder: &DebuggingRecorder) -> Self {
        Self {
            snapshotter: recorder.snapshotter(),
            seen: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn absorb(&self) -> std::sync::MutexGuard<'_, Vec<Sample>> {
        let mut seen = self.seen.lock().unwrap();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            seen.push((key.key().name().to_owned(), labels, value));
        }
        seen
    }

    /// The total of a counter over all its labels.
    pub fn counter(&self, name: &str) -> u64 {
        self.counter_where(name, |_| true)
    }

    /// The total of a counter whose `label` is `value`.
    pub fn counter_with(&self, name: &str, label: &str, value: &str) -> u64 {
        self.counter_where(name, |labels| {
            labels.iter().any(|(k, v)| k == label && v == value)
        })
    }

    fn counter_where(&self, name: &str, keep: impl Fn(&[(String, String)]) -> bool) -> u64 {
        self.absorb()
            .iter()
            .filter(|(n, labels, _)| n == name && keep(labels))
            .map(|(.., value)| match value {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// How many values a histogram recorded.
    pub fn samples(&self, name: &str) -> usize {
        self.absorb()
            .iter()
            .filter(|(n, ..)| n == name)
            .map(|(.., value)| match value {
                DebugValue::Histogram(v) => v.len(),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .sum()
    }

    /// Whether any metric carried a label named `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.absorb()
            .iter()
            .any(|(_, labels, _)| labels.iter().any(|(k, _)| k == label))
    }
}
