//! What the models' searches share: the set of visited states, the bit
//! masks that sets of nodes and holds are kept in, and the weighted pick
//! of an event that drives their random schedules.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// The set of visited states. Hashing them is most of the search's work,
/// so it uses a multiply-rotate hash (the idea of rustc's FxHash) instead
/// of SipHash; nothing here is adversarial.
pub(super) type Visited<T> = HashSet<T, BuildHasherDefault<QuickHash>>;

#[derive(Default)]
pub(super) struct QuickHash(u64);

impl QuickHash {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for QuickHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }
}

pub(super) const fn bit(i: usize) -> u8 {
    1 << i
}

/// `mask` with bit `i` moved to `to[i]`.
pub(super) fn move_bits(mask: u8, to: &[usize]) -> u8 {
    to.iter()
        .enumerate()
        .filter(|&(i, _)| mask & bit(i) != 0)
        .fold(0, |acc, (_, &j)| acc | bit(j))
}

/// Picks one of `enabled` by `choice`, each as likely as its `weight`;
/// `None` when all weigh nothing.
pub(super) fn weighted_pick<E: Copy>(
    enabled: &[E],
    choice: u16,
    weight: impl Fn(&E) -> usize,
) -> Option<E> {
    let total: usize = enabled.iter().map(&weight).sum();
    if total == 0 {
        return None;
    }
    let mut at = usize::from(choice) % total;
    enabled.iter().copied().find(|e| {
        let w = weight(e);
        if at < w {
            true
        } else {
            at -= w;
            false
        }
    })
}
