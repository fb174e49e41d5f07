//! Check 4: owner ids carry at least 128 random bits.

use super::*;

/// Hex digits as bits, most significant first.
fn bits(hex: &str) -> Vec<bool> {
    hex.chars()
        .flat_map(|c| {
            let v = c.to_digit(16).expect("a hex digit");
            (0..4).rev().map(move |b| v >> b & 1 == 1)
        })
        .collect()
}

/// Check 4 on a sample of ids: `None` when every id has at least 128 bits
/// and each of those bits took both values across the sample; else why
/// not. With 256 random ids, a bit stuck by chance has odds 2^-255.
fn random_bits_problem(ids: &[String]) -> Option<String> {
    let bits: Vec<Vec<bool>> = ids.iter().map(|id| bits(id)).collect();
    let width = bits.iter().map(Vec::len).min()?;
    if width < 128 {
        return Some(format!("ids of {width} bits; at least 128 are needed"));
    }
    let stuck: Vec<usize> = (0..width)
        .filter(|&b| bits.iter().all(|id| id[b]) || bits.iter().all(|id| !id[b]))
        .collect();
    (!stuck.is_empty()).then(|| format!("bits {stuck:?} never change"))
}

#[test]
fn owner_ids_carry_128_random_bits() {
    let ids: Vec<String> = (0..256).map(|_| Owner::random().to_string()).collect();
    for id in &ids {
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
    assert_eq!(random_bits_problem(&ids), None);
    // Shorter ids, which could be guessed, are refused as owners.
    assert!("0123456789abcdef0123456789abcde".parse::<Owner>().is_err());
}

#[test]
fn the_bit_check_catches_short_or_stuck_ids() {
    let random = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| Owner::random().to_string())
            .collect::<Vec<_>>()
    };
    // 64-bit ids.
    let short: Vec<String> = random(256).iter().map(|id| id[..16].to_owned()).collect();
    assert!(random_bits_problem(&short).is_some());
    // 128 bits, of which the top 32 are a fixed prefix (a counter, a pid).
    let stuck: Vec<String> = random(256)
        .iter()
        .map(|id| format!("0000beef{}", &id[8..]))
        .collect();
    assert!(
        random_bits_problem(&stuck)
            .unwrap()
            .contains("never change")
    );
    // One id seen many times.
    let same = vec![random(1).remove(0); 256];
    assert!(random_bits_problem(&same).is_some());
}
