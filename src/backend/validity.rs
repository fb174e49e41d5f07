//! The validity rule every backend keeps: a lock counts as held only until
//! its ttl, measured from the moment the first request went out, less an
//! allowance for clock drift. Pure, so unit- and property-tested.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The clock-drift allowance for a TTL: `ttl * factor + 2 ms` (the 2 ms
/// cover the granularity of Redis expiry).
pub(crate) fn drift(ttl: Duration, factor: f64) -> Duration {
    ttl.mul_f64(factor) + Duration::from_millis(2)
}

/// Until when a lock whose first request went out at `started` is certainly
/// held: `started + ttl - drift`. Measuring from the start (not from the
/// replies) charges the whole round trip against the lease.
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(dead_code))]
fn valid_until(started: Instant, ttl: Duration, drift_factor: f64) -> Instant {
    started + ttl.saturating_sub(drift(ttl, drift_factor))
}

/// The validity of a grant of `key` whose first request went out at
/// `started`: until [`valid_until`], or [`Error::ValidityExhausted`] when
/// that moment has passed already (the round took the whole ttl).
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(dead_code))]
pub(crate) fn validity(
    key: &str,
    started: Instant,
    ttl: Duration,
    drift_factor: f64,
) -> Result<Instant> {
    let until = valid_until(started, ttl, drift_factor);
    if Instant::now() >= until {
        return Err(Error::ValidityExhausted {
            key: key.to_owned(),
            elapsed: started.elapsed(),
            ttl,
        });
    }
    Ok(until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn validity_takes_off_drift() {
        let start = Instant::now();
        let until = valid_until(start, Duration::from_secs(10), 0.01);
        assert_eq!(until - start, Duration::from_millis(10_000 - 100 - 2));
    }

    proptest! {
        /// `valid_until - started` is exactly `ttl - drift`, never more than
        /// the ttl less 2 ms, and the validity left after `elapsed`
        /// (`ttl - elapsed - drift`) only shrinks as `elapsed` grows.
        #[test]
        fn validity_is_ttl_less_drift_and_shrinks_with_elapsed(
            ttl_ms in 3u64..86_400_000,
            k in 0u32..32,
            e1 in 0u64..100_000,
            e2 in 0u64..100_000,
        ) {
            let factor = f64::from(k) / 64.0;
            let start = Instant::now();
            let ttl = Duration::from_millis(ttl_ms);
            let until = valid_until(start, ttl, factor);
            let drift_ns = u128::from(ttl_ms) * 1_000_000 * u128::from(k) / 64 + 2_000_000;
            let expected = (u128::from(ttl_ms) * 1_000_000).saturating_sub(drift_ns);
            prop_assert!((until - start).as_nanos().abs_diff(expected) <= 1);
            prop_assert!(until - start <= ttl - Duration::from_millis(2));
            let left = |elapsed: u64| until.saturating_duration_since(start + Duration::from_millis(elapsed));
            let (early, late) = (e1.min(e2), e1.max(e2));
            prop_assert!(left(early) >= left(late));
            prop_assert!(left(early) <= until - start);
        }

        #[test]
        fn validity_never_exceeds_ttl(ttl_ms in 1u64..100_000, factor in 0.0f64..0.5) {
            let start = Instant::now();
            let ttl = Duration::from_millis(ttl_ms);
            let until = valid_until(start, ttl, factor);
            prop_assert!(until - start <= ttl);
            prop_assert!(until - start <= ttl.saturating_sub(Duration::from_millis(2)));
        }
    }
}
