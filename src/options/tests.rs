//! The options' defaults and validation.

use super::*;

fn invalid(options: LockOptions) -> String {
    match options.validate() {
        Err(Error::InvalidOptions(msg)) => msg,
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
}

#[test]
fn defaults_are_valid() {
    LockOptions::default().validate().unwrap();
}

#[test]
fn bad_options_name_the_problem() {
    assert!(invalid(LockOptions::default().ttl(Duration::ZERO)).contains("ttl"));
    assert!(invalid(LockOptions::default().drift_factor(0.7)).contains("drift"));
    assert!(invalid(LockOptions::default().drift_factor(f64::NAN)).contains("drift"));
    let slow = LockOptions::default()
        .ttl(Duration::from_millis(100))
        .node_timeout(Duration::from_millis(100));
    assert!(invalid(slow).contains("node_timeout"));
    assert!(invalid(LockOptions::default().key_prefix("p".repeat(200))).contains("prefix"));
    let late = LockOptions::default().watchdog(Watchdog::Every(Duration::from_secs(30)));
    assert!(invalid(late).contains("watchdog"));
    let zero = LockOptions::default().watchdog(Watchdog::Every(Duration::ZERO));
    assert!(invalid(zero).contains("watchdog"));
    // Auto renews at ttl/3, which a slow node_timeout can outgrow.
    let tight = LockOptions::default()
        .ttl(Duration::from_millis(300))
        .node_timeout(Duration::from_millis(200));
    assert!(invalid(tight.clone()).contains("watchdog"));
    tight.watchdog(Watchdog::Off).validate().unwrap();
    assert!(invalid(LockOptions::default().max_hold(Duration::ZERO)).contains("max_hold"));
    let cap_below_ttl = LockOptions::default().max_hold(Duration::from_secs(10));
    assert!(invalid(cap_below_ttl).contains("max_hold"));
    // One failed renewal must not lose the lock: ttl 1 s with a 300 ms
    // node_timeout leaves no room to retry.
    let no_retry = LockOptions::default()
        .ttl(Duration::from_secs(1))
        .node_timeout(Duration::from_millis(300));
    assert!(invalid(no_retry).contains("retry"));
    let sub_ms = LockOptions::default().node_timeout(Duration::from_micros(500));
    assert!(invalid(sub_ms).contains("node_timeout"));
    let spin = RetryPolicy::default()
        .delay(Duration::ZERO)
        .jitter(Duration::ZERO);
    assert!(invalid(LockOptions::default().retry(spin)).contains("spin"));
}

#[test]
fn an_extend_ttl_is_checked_as_a_ttl_only() {
    let capped = LockOptions::default().max_hold(Duration::from_secs(60));
    capped.validate_ttl(Duration::from_secs(120)).unwrap();
    assert!(capped.validate_ttl(Duration::ZERO).is_err());
    assert!(
        capped.validate_ttl(Duration::from_millis(100)).is_err(),
        "below node_timeout"
    );
    assert!(
        capped
            .validate_ttl(MAX_TTL + Duration::from_secs(1))
            .is_err()
    );
}

#[test]
fn the_lock_delay_is_off_by_default_and_bounded_with_the_ttl() {
    assert_eq!(LockOptions::default().lock_delay, Duration::ZERO);
    let delayed = LockOptions::default().lock_delay(Duration::from_secs(60));
    delayed.validate().unwrap();
    // The servers keep a lock for ttl + delay: together within MAX_TTL.
    let at_most = LockOptions::default()
        .ttl(Duration::from_secs(3600))
        .lock_delay(MAX_TTL - Duration::from_secs(3600));
    at_most.validate().unwrap();
    let over = at_most.lock_delay(MAX_TTL - Duration::from_secs(3599));
    let msg = invalid(over.clone());
    assert!(msg.contains("lock_delay") && msg.contains("ttl"), "{msg}");
    assert!(invalid(LockOptions::default().lock_delay(Duration::MAX)).contains("lock_delay"));
    // An extend's ttl is checked with the delay too.
    let within = over.ttl(Duration::from_secs(30));
    within.validate().unwrap();
    assert!(within.validate_ttl(Duration::from_secs(3600)).is_err());
    within.validate_ttl(Duration::from_secs(3599)).unwrap();
    let sub_ms = LockOptions::default().lock_delay(Duration::from_micros(500));
    assert!(invalid(sub_ms).contains("lock_delay"));
    // The watchdog and max_hold are checked against the ttl alone: the
    // holder's validity does not grow with the delay.
    let tight = LockOptions::default()
        .ttl(Duration::from_millis(300))
        .node_timeout(Duration::from_millis(200))
        .lock_delay(Duration::from_secs(10));
    assert!(invalid(tight).contains("watchdog"));
    let cap = LockOptions::default()
        .lock_delay(Duration::from_secs(60))
        .max_hold(Duration::from_secs(10));
    assert!(invalid(cap).contains("max_hold"));
}

#[test]
fn keys_are_checked() {
    assert!(matches!(validate_key(""), Err(Error::InvalidKey(_))));
    assert!(matches!(
        validate_key(&"k".repeat(MAX_KEY_LEN + 1)),
        Err(Error::InvalidKey(_))
    ));
    validate_key(&"k".repeat(MAX_KEY_LEN)).unwrap();
    validate_key("billing:{eu}").unwrap();
}

#[test]
fn jitter_stays_in_range() {
    let policy = RetryPolicy::default()
        .delay(Duration::from_millis(10))
        .jitter(Duration::from_millis(5));
    for _ in 0..1000 {
        let d = policy.next_delay();
        assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(15));
    }
}

#[test]
fn a_huge_watchdog_interval_is_refused_not_a_panic() {
    // Found by the options property test: interval + pause overflowed.
    let huge = LockOptions::default().watchdog(Watchdog::Every(Duration::MAX));
    assert!(invalid(huge).contains("watchdog"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Exactly the non-empty names of at most MAX_KEY_LEN bytes.
        #[test]
        fn keys_are_accepted_iff_non_empty_and_short(
            key in proptest::string::string_regex("(.|\n){0,600}").unwrap(),
        ) {
            let ok = !key.is_empty() && key.len() <= MAX_KEY_LEN;
            match validate_key(&key) {
                Ok(()) => prop_assert!(ok),
                Err(Error::InvalidKey(_)) => prop_assert!(!ok),
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        /// Around the byte limit, with multi-byte characters.
        #[test]
        fn the_limit_is_in_bytes(n in 120usize..140, c in prop::sample::select(vec!['k', 'é', '€', '🔒'])) {
            let key: String = std::iter::repeat_n(c, n).collect();
            prop_assert_eq!(validate_key(&key).is_ok(), key.len() <= MAX_KEY_LEN);
        }

        /// The drift is `ttl * factor + 2 ms`, grows with the ttl and the
        /// factor, and stays below the ttl for every ttl the options accept.
        #[test]
        fn drift_follows_the_formula(
            ttl_ms in 1u64..=MAX_TTL.as_millis() as u64,
            k in 0u32..32,
            more in 0u64..1000,
        ) {
            let factor = f64::from(k) / 64.0;
            let ttl = Duration::from_millis(ttl_ms);
            let d = drift(ttl, factor);
            let exact = u128::from(ttl_ms) * 1_000_000 * u128::from(k) / 64 + 2_000_000;
            prop_assert!(d.as_nanos().abs_diff(exact) <= 1, "{:?} vs {} ns", d, exact);
            prop_assert!(drift(ttl + Duration::from_millis(more), factor) >= d);
            prop_assert!(drift(ttl, f64::from(k + 1) / 64.0) >= d);
            let options = LockOptions::default().drift_factor(factor).node_timeout(Duration::from_millis(1));
            if options.validate_ttl(ttl).is_ok() {
                prop_assert!(d < ttl);
            }
        }
    }
}
