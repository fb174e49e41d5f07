//! Property tests of what turns outside input into values, through the
//! public API: options validation against an independent model of its
//! rules, owner ids, handoff strings, resource names, and the quorum.
//! (The validity and fencing arithmetic, key escaping and key checks have
//! module-private properties beside their code.)

use std::time::Duration;

use fencelock::{
    Error, Handoff, LockOptions, Locker, MAX_KEY_LEN, MAX_PREFIX_LEN, MAX_TTL, Owner, Redlock,
    RetryPolicy, Watchdog,
};
use proptest::prelude::*;

mod options;

/// Redlock over `n` distinct addresses; nothing connects until first use.
fn redlock(n: usize) -> Redlock {
    Redlock::from_urls((0..n).map(|i| format!("redis://127.0.0.1:{}", 1 + i))).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// The quorum in force is the explicit one or `N / 2 + 1`, and every
    /// accepted quorum makes any two quorums of the nodes intersect.
    #[test]
    fn accepted_quorums_intersect(n in 1usize..=9, explicit in prop::option::of(0usize..=10)) {
        let redlock = redlock(n);
        prop_assert_eq!(redlock.quorum(), n / 2 + 1);
        let redlock = match explicit {
            Some(q) => redlock.with_quorum(q),
            None => Ok(redlock),
        };
        if let Ok(redlock) = redlock {
            let quorum = redlock.quorum();
            prop_assert_eq!(quorum, explicit.unwrap_or(n / 2 + 1));
            prop_assert!(quorum <= n);
            // Two sets of `quorum` nodes out of n share at least this many.
            prop_assert!(2 * quorum > n, "quorum {} of {} lets two owners in", quorum, n);
        }
    }

    /// Owner ids: the text form of a random one parses back to it, any
    /// case; a string parses exactly when it is 32 hex digits.
    #[test]
    fn owner_ids_round_trip(upper in any::<bool>()) {
        let owner = Owner::random();
        let text = owner.to_string();
        prop_assert_eq!(text.len(), 32);
        let text = if upper { text.to_uppercase() } else { text };
        prop_assert_eq!(text.parse::<Owner>().unwrap(), owner);
    }

    #[test]
    fn owner_ids_are_exactly_32_hex_digits(s in "[0-9a-fA-Fg-z ]{0,40}") {
        let ok = s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match s.parse::<Owner>() {
            Ok(owner) => {
                prop_assert!(ok);
                prop_assert_eq!(owner.to_string(), s.to_ascii_lowercase());
            }
            Err(Error::InvalidOptions(_)) => prop_assert!(!ok),
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn any_string_parses_or_fails_cleanly(s in any::<String>()) {
        let _ = s.parse::<Owner>();
        let _ = s.parse::<Handoff>();
    }

    /// A handoff's text form round trips, whatever the key holds (spaces,
    /// any characters), and the parsed key is what was sent.
    #[test]
    fn handoffs_round_trip(
        token in 1u64..,
        hold in "[0-9a-f]{1,32}",
        owner in "[0-9a-f]{32}(:task-[0-9]{1,5})?",
        key in proptest::string::string_regex("(.|\n){1,60}").unwrap(),
    ) {
        let text = format!("fencelock-handoff/2 lock {token} {hold} {owner} {key}");
        let handoff: Handoff = text.parse().unwrap();
        prop_assert_eq!(handoff.key(), key.as_str());
        prop_assert_eq!(handoff.token().get(), token);
        prop_assert_eq!(handoff.to_string(), text.clone());
        prop_assert_eq!(handoff.to_string().parse::<Handoff>().unwrap(), handoff.clone());
        // Version 1 text, from before kinds, is the same lock.
        let v1 = format!("fencelock-handoff/1 {token} {hold} {owner} {key}");
        prop_assert_eq!(v1.parse::<Handoff>().unwrap(), handoff);
    }

    /// Each field broken in turn makes the whole string rejected with
    /// `InvalidOptions` (or `InvalidKey` for a bad key).
    #[test]
    fn mutated_handoffs_are_rejected(
        token in 1u64..1_000_000,
        hold in "[0-9a-f]{1,32}",
        owner in "[0-9a-f]{32}",
        key in "[a-z ]{1,20}",
        which in 0usize..7,
        junk in "[g-z]{1,4}",
    ) {
        let fields = [
            "fencelock-handoff/1".to_owned(),
            token.to_string(),
            hold.clone(),
            owner.clone(),
            key.clone(),
        ];
        let mut mutated = fields.to_vec();
        match which {
            0 => mutated[0] = "fencelock-handoff/2".into(),
            1 => mutated[1] = if junk.len() % 2 == 0 { "0".into() } else { format!("-{token}") },
            2 => mutated[2] = format!("{hold}{junk}"),
            3 => mutated[3] = owner[..31].to_owned(),
            4 => mutated[3] = format!("{junk}{}", &owner[junk.len()..]),
            5 => mutated[4] = "k".repeat(MAX_KEY_LEN + 1),
            _ => {
                mutated.pop();
            }
        }
        let text = mutated.join(" ");
        match text.parse::<Handoff>() {
            Err(Error::InvalidOptions(_)) => prop_assert!(which != 5),
            Err(Error::InvalidKey(_)) => prop_assert_eq!(which, 5),
            other => prop_assert!(false, "{:?} parsed: {:?}", text, other),
        }
    }

    /// Resource names reach `validate_key` through a handoff too: accepted
    /// exactly when non-empty and at most MAX_KEY_LEN bytes.
    #[test]
    fn handoff_keys_follow_the_key_rule(
        key in proptest::string::string_regex("(.|\n){0,200}").unwrap(),
        repeat in 1usize..5,
    ) {
        let key = key.repeat(repeat);
        let owner = "0".repeat(32);
        let text = format!("fencelock-handoff/1 7 ab {owner} {key}");
        let ok = !key.is_empty() && key.len() <= MAX_KEY_LEN;
        match text.parse::<Handoff>() {
            Ok(h) => {
                prop_assert!(ok);
                prop_assert_eq!(h.key(), key.as_str());
            }
            Err(Error::InvalidKey(_)) => prop_assert!(!ok),
            Err(other) => prop_assert!(false, "{:?}", other),
        }
    }
}
