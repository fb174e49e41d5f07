//! Options validation against an independent model of its rules: every
//! generated option set is accepted exactly when the model accepts it.

use super::*;

const MS: u128 = 1_000_000;

/// One generated option set, in plain numbers, so the model below can judge
/// it without the library's own arithmetic.
#[derive(Debug, Clone)]
struct Generated {
    nodes: usize,
    ttl_ns: u128,
    node_timeout_ns: u128,
    /// `k / 64`, or one of the floats no factor may be.
    factor: Factor,
    prefix_len: usize,
    quorum: Option<usize>,
    max_reentrancy: u32,
    /// `None`: Auto; `Some(None)`: Off; `Some(Some(ns))`: Every.
    watchdog: Option<Option<u128>>,
    max_hold_ns: Option<u128>,
    delay_ns: u128,
    jitter_ns: u128,
    max_attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
enum Factor {
    Sixtyfourths(u32),
    Odd(f64),
}

impl Factor {
    fn value(self) -> f64 {
        match self {
            Factor::Sixtyfourths(k) => f64::from(k) / 64.0,
            Factor::Odd(f) => f,
        }
    }
}

fn dur(ns: u128) -> Duration {
    Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
}

/// Durations spread over the interesting range: zero, sub-millisecond,
/// whole milliseconds up to past a day, and the extremes.
fn duration_ns() -> impl Strategy<Value = u128> {
    prop_oneof![
        3 => (1u128..2_000).prop_map(|ms| ms * MS),
        3 => (1u128..200_000).prop_map(|ms| ms * MS),
        1 => 0u128..2 * MS,
        1 => Just(0u128),
        1 => prop::sample::select(vec![
            MAX_TTL.as_nanos(),
            MAX_TTL.as_nanos() + MS,
            3_600_000 * MS,
            3_600_001 * MS,
            Duration::MAX.as_nanos(),
        ]),
    ]
}

/// A sound option set with one field (or none) taken from a wild one:
/// sets near the accepted region, where the rules meet.
fn generated() -> impl Strategy<Value = Generated> {
    let sound = (
        1usize..8,
        1u128..60_000,
        1u128..400,
        0u32..8,
        1u32..64,
        any::<bool>(),
        1u128..300,
        0u128..300,
    )
        .prop_map(
            |(nodes, ttl, timeout, k, depth, auto, delay, jitter)| Generated {
                nodes,
                ttl_ns: ttl * MS,
                node_timeout_ns: timeout * MS,
                factor: Factor::Sixtyfourths(k),
                prefix_len: 10,
                quorum: None,
                max_reentrancy: depth,
                watchdog: if auto { None } else { Some(None) },
                max_hold_ns: None,
                delay_ns: delay * MS,
                jitter_ns: jitter * MS,
                max_attempts: None,
            },
        );
    (sound, wild(), 0usize..16).prop_map(|(mut g, w, field)| {
        match field {
            0 => g.nodes = w.nodes,
            1 => g.ttl_ns = w.ttl_ns,
            2 => g.node_timeout_ns = w.node_timeout_ns,
            3 => g.factor = w.factor,
            4 => g.prefix_len = w.prefix_len,
            5 => g.quorum = w.quorum,
            6 => g.max_reentrancy = w.max_reentrancy,
            7 => g.watchdog = w.watchdog,
            8 => g.max_hold_ns = w.max_hold_ns,
            9 => g.delay_ns = w.delay_ns,
            10 => g.jitter_ns = w.jitter_ns,
            11 => g.max_attempts = w.max_attempts,
            12 => return w,
            _ => {}
        }
        g
    })
}

/// Any option set, mostly far from the accepted region.
fn wild() -> impl Strategy<Value = Generated> {
    let factor = prop_oneof![
        6 => (0u32..40).prop_map(Factor::Sixtyfourths),
        1 => prop::sample::select(vec![-0.01, 0.5, 0.7, f64::NAN, f64::INFINITY, -0.0])
            .prop_map(Factor::Odd),
    ];
    (
        (
            0usize..8,
            duration_ns(),
            duration_ns(),
            factor,
            prop_oneof![0usize..20, MAX_PREFIX_LEN - 2..MAX_PREFIX_LEN + 3],
            prop::option::of(0usize..9),
            prop_oneof![1 => Just(0u32), 5 => 1u32..64],
        ),
        (
            prop_oneof![
                2 => Just(None),
                1 => Just(Some(None)),
                2 => duration_ns().prop_map(|ns| Some(Some(ns))),
            ],
            prop::option::of(duration_ns()),
            duration_ns(),
            duration_ns(),
            prop::option::of(0u32..4),
        ),
    )
        .prop_map(
            |(
                (nodes, ttl_ns, node_timeout_ns, factor, prefix_len, quorum, max_reentrancy),
                (watchdog, max_hold_ns, delay_ns, jitter_ns, max_attempts),
            )| Generated {
                nodes,
                ttl_ns,
                node_timeout_ns,
                factor,
                prefix_len,
                quorum,
                max_reentrancy,
                watchdog,
                max_hold_ns,
                delay_ns,
                jitter_ns,
                max_attempts,
            },
        )
}

impl Generated {
    fn options(&self) -> LockOptions {
        let mut retry = RetryPolicy::default()
            .delay(dur(self.delay_ns))
            .jitter(dur(self.jitter_ns));
        if let Some(n) = self.max_attempts {
            retry = retry.max_attempts(n);
        }
        let mut options = LockOptions::default()
            .ttl(dur(self.ttl_ns))
            .node_timeout(dur(self.node_timeout_ns))
            .drift_factor(self.factor.value())
            .key_prefix("p".repeat(self.prefix_len))
            .max_reentrancy(self.max_reentrancy)
            .retry(retry)
            .watchdog(match self.watchdog {
                None => Watchdog::Auto,
                Some(None) => Watchdog::Off,
                Some(Some(ns)) => Watchdog::Every(dur(ns)),
            });
        if let Some(cap) = self.max_hold_ns {
            options = options.max_hold(dur(cap));
        }
        options
    }

    /// The model: every documented rule this set breaks, each as a word the
    /// error message must contain, or `None` when the set sits within a
    /// nanosecond of a boundary that the library computes in floating point
    /// (there either answer is right).
    fn broken_rules(&self) -> Option<Vec<&'static str>> {
        let mut broken = Vec::new();
        let (ttl, timeout) = (self.ttl_ns, self.node_timeout_ns);
        if timeout < MS {
            broken.push("node_timeout");
        }
        if ttl < MS || ttl > MAX_TTL.as_nanos() {
            broken.push("ttl");
        }
        // The drift allowance, exact: ttl * k / 64 + 2 ms.
        let drift = match self.factor {
            Factor::Sixtyfourths(k) if k < 32 => Some(ttl * u128::from(k) / 64 + 2 * MS),
            // [0, 0.5) holds -0.0 as well (the pattern compares with ==).
            Factor::Odd(0.0) => Some(2 * MS),
            _ => {
                broken.push("drift_factor");
                None
            }
        };
        if timeout >= ttl {
            broken.push("node_timeout");
        }
        let ttl_ok = broken.is_empty();
        if let Some(drift) = drift
            && ttl_ok
            && drift.abs_diff(ttl) <= 2
        {
            return None;
        }
        if let Some(drift) = drift
            && ttl_ok
            && drift >= ttl
        {
            broken.push("drift");
        }
        if self.prefix_len > MAX_PREFIX_LEN {
            broken.push("key_prefix");
        }
        if self.max_reentrancy == 0 {
            broken.push("max_reentrancy");
        }
        // The watchdog needs, within one validity (ttl - drift): its
        // interval, a pause of interval/4 (at most a node_timeout, at least
        // 1 ms), and three node timeouts. Judged only on a sound ttl.
        let interval = match self.watchdog {
            None => Some(ttl / 3),
            Some(None) => None,
            Some(Some(ns)) => Some(ns),
        };
        if let (Some(interval), Some(drift)) = (interval, drift)
            && broken.is_empty()
        {
            let validity = ttl - drift;
            let pause = (interval / 4).min(timeout).max(MS);
            let needed = interval + pause + 3 * timeout;
            if interval < MS || needed >= validity {
                // Duration division and the float drift may each be a
                // nanosecond off the exact figures.
                if needed.abs_diff(validity) <= 8 && interval >= MS {
                    return None;
                }
                broken.push("watchdog");
            }
        }
        if let Some(cap) = self.max_hold_ns
            && cap < ttl
        {
            broken.push("max_hold");
        }
        let pause_limit = 3_600_000 * MS;
        if self.delay_ns > pause_limit || self.jitter_ns > pause_limit {
            broken.push("retry");
        }
        if self.max_attempts == Some(0) {
            broken.push("max_attempts");
        }
        if self.delay_ns == 0 && self.jitter_ns == 0 {
            broken.push("retry");
        }
        Some(broken)
    }

    /// The rules the Redlock itself breaks: its nodes and its quorum.
    fn broken_redlock_rules(&self) -> Vec<&'static str> {
        if self.nodes == 0 {
            return vec!["no nodes"];
        }
        let quorum = self.quorum.unwrap_or(self.nodes / 2 + 1);
        if quorum == 0 {
            vec!["at least 1"]
        } else if quorum > self.nodes || 2 * quorum <= self.nodes {
            vec!["quorum"]
        } else {
            Vec::new()
        }
    }

    /// The Redlock of this set, with its explicit quorum if it has one.
    fn redlock(&self) -> fencelock::Result<Redlock> {
        let urls = (0..self.nodes).map(|i| format!("redis://127.0.0.1:{}", 1 + i));
        let redlock = Redlock::from_urls(urls)?;
        match self.quorum {
            Some(q) => redlock.with_quorum(q),
            None => Ok(redlock),
        }
    }
}

/// The error of a refused Redlock, for [`check_verdict`].
fn clone_invalid(e: &Error) -> Error {
    match e {
        Error::InvalidOptions(msg) => Error::InvalidOptions(msg.clone()),
        other => Error::InvalidOptions(format!("not InvalidOptions: {other:?}")),
    }
}

fn check_verdict(
    result: fencelock::Result<()>,
    broken: &[&'static str],
    what: &str,
) -> Result<(), TestCaseError> {
    match result {
        Ok(()) => prop_assert!(broken.is_empty(), "{what} accepted, but breaks {broken:?}"),
        Err(Error::InvalidOptions(msg)) => {
            prop_assert!(!broken.is_empty(), "{what} rejected a valid set: {msg}");
            prop_assert!(
                broken.iter().any(|rule| msg.contains(rule)),
                "{what}: message {msg:?} names none of {broken:?}"
            );
        }
        Err(other) => prop_assert!(false, "{what}: not InvalidOptions: {other:?}"),
    }
    Ok(())
}

/// Generated option sets are accepted exactly when they satisfy the
/// documented rules, and a rejection names one rule the set breaks;
/// `Locker::new` judges them the same way, before any I/O. Both outcomes
/// must come up often enough for the comparison to mean something.
#[test]
fn options_are_accepted_iff_the_model_accepts() {
    let accepted = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&generated(), |g| {
        let Some(broken) = g.broken_rules() else {
            return Ok(());
        };
        accepted.set(accepted.get() + u32::from(broken.is_empty()));
        let options = g.options();
        check_verdict(options.validate(), &broken, "validate")?;
        // A Locker is refused for the Redlock's faults first, then for the
        // options'.
        let redlock = g.redlock();
        let redlock_broken = g.broken_redlock_rules();
        check_verdict(
            redlock.as_ref().map(|_| ()).map_err(clone_invalid),
            &redlock_broken,
            "Redlock",
        )?;
        if let Ok(redlock) = redlock {
            let locker = Locker::new(redlock, options);
            check_verdict(locker.map(|_| ()), &broken, "Locker::new")?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let accepted = accepted.get();
    assert!(
        (200..1800).contains(&accepted),
        "{accepted} of 2000 sets accepted: the generator misses one side"
    );
}
