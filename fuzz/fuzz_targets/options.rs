//! Option sets from arbitrary bytes: validation answers `Ok` or
//! `InvalidOptions` without panicking (no overflow, no float trap), and an
//! accepted set keeps the promises the rest of the library relies on. The
//! same for a Redlock's node count and quorum.
#![no_main]

use std::time::Duration;

use fencelock::{Error, LockOptions, Redlock, RetryPolicy, Watchdog};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// A duration biased towards the interesting range, with the extremes.
fn duration(u: &mut Unstructured) -> Result<Duration> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => Duration::from_millis(u.int_in_range(0..=100_000)?),
        1 => Duration::from_nanos(u.int_in_range(0..=3_000_000)?),
        2 => Duration::MAX,
        3 => Duration::new(u.arbitrary()?, u.int_in_range(0..=999_999_999)?),
        _ => Duration::from_secs(u.int_in_range(0..=200_000)?),
    })
}

fn options(u: &mut Unstructured) -> Result<(LockOptions, usize, Duration)> {
    let mut retry = RetryPolicy::default()
        .delay(duration(u)?)
        .jitter(duration(u)?);
    if u.arbitrary()? {
        retry = retry.max_attempts(u.arbitrary()?);
    }
    let factor = if u.arbitrary()? {
        f64::from(u.int_in_range(0u32..=80)?) / 128.0
    } else {
        u.arbitrary()?
    };
    let mut options = LockOptions::default()
        .ttl(duration(u)?)
        .node_timeout(duration(u)?)
        .drift_factor(factor)
        .key_prefix("p".repeat(u.int_in_range(0..=200)?))
        .max_reentrancy(u.arbitrary()?)
        .metrics_per_key(u.arbitrary()?)
        .wake_on_release(u.arbitrary()?)
        .retry(retry)
        .watchdog(match u.int_in_range(0u8..=2)? {
            0 => Watchdog::Auto,
            1 => Watchdog::Off,
            _ => Watchdog::Every(duration(u)?),
        });
    if u.arbitrary()? {
        options = options.max_hold(duration(u)?);
    }
    let quorum = if u.arbitrary()? {
        Some(u.int_in_range(0..=70)?)
    } else {
        None
    };
    Ok((options, (u.int_in_range(0..=70)?, quorum), duration(u)?))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((options, (nodes, quorum), extend_ttl)) = options(&mut u) else {
        return;
    };
    let urls = (0..nodes).map(|i| format!("redis://127.0.0.1:{}", 1 + i));
    match Redlock::from_urls(urls).and_then(|r| match quorum {
        Some(q) => r.with_quorum(q),
        None => Ok(r),
    }) {
        Ok(redlock) => {
            let quorum = redlock.quorum();
            assert!(quorum <= nodes && 2 * quorum > nodes, "{quorum} of {nodes}");
        }
        Err(Error::InvalidOptions(msg)) => assert!(!msg.is_empty()),
        Err(other) => panic!("not InvalidOptions: {other:?}"),
    }
    match options.validate() {
        Ok(()) => {
            let ttl = options.ttl;
            assert!(!ttl.is_zero() && options.node_timeout < ttl);
            if let Some(interval) = options.watchdog_interval() {
                assert!(!interval.is_zero() && interval < ttl);
            }
            // A waiter's pause is bounded and computed without overflow.
            let _ = options.retry.next_delay();
        }
        Err(Error::InvalidOptions(msg)) => assert!(!msg.is_empty()),
        Err(other) => panic!("not InvalidOptions: {other:?}"),
    }
    match options.validate_ttl(extend_ttl) {
        Ok(()) | Err(Error::InvalidOptions(_)) => {}
        Err(other) => panic!("not InvalidOptions: {other:?}"),
    }
});
