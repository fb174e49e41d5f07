//! Each node's clock, watched from this client (docs/algorithm.md, section
//! 16).
//!
//! A node expires a lock by its own clock. Redlock's validity assumes that
//! clock keeps time with the client's within the drift allowance: a node
//! whose clock jumps forward, or runs fast, drops a lock early, and another
//! owner may then count its vote while the first still holds. Nothing on
//! the node can see that; only a second clock can. So every acquire and
//! extend also asks the node its time (`TIME`, in the same pipeline as the
//! script), and the client compares how far the node's clock moved between
//! two of its answers with how far its own monotonic clock moved between
//! the same requests.
//!
//! The comparison never blames a node for slow replies: a node's time is
//! read somewhere between the request's sending and its reply, so the real
//! time between two readings is at most the later reply less the earlier
//! sending. Only a node clock that moved further than that, by more than
//! the drift allowance of a lease, is ahead. Then its votes do not count
//! until every lock it may have dropped early has run out anyway: the
//! coordinator's quarantine, which covers every lease it was asked for.
//!
//! A node clock that falls behind keeps locks longer than asked: that
//! delays others, never lets two in. It is reported, and its votes count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::NodeFault;
use crate::metrics::NODE_CLOCK_JUMP;
use crate::sync::lock;

/// The least a node's clock may gain or lose between two readings without
/// being reported, as in the validity's drift (`backend::drift`).
const SLACK: Duration = Duration::from_millis(2);

/// One reading of a node's clock: the node's time, and when the request
/// that read it was sent and answered, on this client's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub(crate) sent: Instant,
    pub(crate) received: Instant,
    /// The node's `TIME`, in µs since the epoch.
    pub(crate) node_us: i64,
}

/// How one request judges the node's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClockRule {
    /// The drift factor of the request's options.
    pub(crate) drift_factor: f64,
    /// The shortest lease the request is for: a gain that fits in its
    /// drift allowance (`ttl × drift_factor + 2 ms`) cannot end it early.
    pub(crate) ttl: Duration,
    /// How long a node found ahead does not count: the coordinator's
    /// quarantine.
    pub(crate) hold_off: Duration,
}

/// What one node's clock did between two readings, beyond the allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// It moved on further than real time could have, by this much, over
    /// at most that long.
    Ahead(Duration, Duration),
    /// It moved on less than real time did, by this much, over at least
    /// that long.
    Behind(Duration, Duration),
}

/// The watch over one node's clock; shared by the clones of the node.
#[derive(Debug, Default)]
pub(crate) struct ClockWatch(Mutex<Watch>);

#[derive(Debug, Default)]
struct Watch {
    /// The latest reading: a jump shows against it at once.
    last: Option<Reading>,
    /// The first reading since the node's clock last misbehaved: a clock
    /// that runs fast by a little shows against it over time.
    anchor: Option<Reading>,
    /// Until when the node's votes do not count, and why.
    out: Option<(Instant, String)>,
}

impl ClockWatch {
    /// Judges `reading` against the earlier ones. `Err` while the node's
    /// votes do not count: the request's reply, whatever it was, must not
    /// count towards a quorum.
    pub(crate) fn observe(
        &self,
        node: &str,
        reading: Reading,
        rule: &ClockRule,
    ) -> Result<(), NodeFault> {
        let mut watch = lock(&self.0);
        let gaps = [watch.last, watch.anchor]
            .into_iter()
            .flatten()
            .filter_map(|earlier| compare(&earlier, &reading, rule));
        let worst = gaps.max_by_key(|gap| match *gap {
            Gap::Ahead(by, _) => (1, by),
            Gap::Behind(by, _) => (0, by),
        });
        watch.last = Some(reading);
        match worst {
            Some(Gap::Ahead(by, over)) => {
                let until = reading.received + rule.hold_off;
                let why = format!(
                    "its clock ran {by:.1?} ahead of this client's over {over:.1?}, \
                     more than the drift allowance"
                );
                ahead(node, by, over, rule.hold_off);
                watch.anchor = Some(reading);
                watch.out = Some((until, why));
            }
            Some(Gap::Behind(by, over)) => {
                behind(node, by, over);
                watch.anchor = Some(reading);
            }
            None => {
                watch.anchor.get_or_insert(reading);
            }
        }
        match &watch.out {
            Some((until, why)) if reading.received < *until => Err(NodeFault::Clock(format!(
                "{why}; its votes count again in {:.1?}",
                *until - reading.received
            ))),
            Some(_) => {
                watch.out = None;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// How `later`'s node time moved since `earlier`'s, set against the real
/// time that can have passed between the two readings.
fn compare(earlier: &Reading, later: &Reading, rule: &ClockRule) -> Option<Gap> {
    let moved = later.node_us.saturating_sub(earlier.node_us);
    // Each node time was read between its request's sending and reply.
    let most = signed_us(earlier.sent, later.received);
    let least = signed_us(earlier.received, later.sent);
    let allowance = |span: i64| {
        let span = Duration::from_micros(span.unsigned_abs()).max(rule.ttl);
        micros(span.mul_f64(rule.drift_factor) + SLACK)
    };
    if moved > most.saturating_add(allowance(most)) {
        let by = (moved - most).unsigned_abs();
        return Some(Gap::Ahead(
            Duration::from_micros(by),
            Duration::from_micros(most.unsigned_abs()),
        ));
    }
    if moved < least.saturating_sub(allowance(least)) {
        let by = (least - moved).unsigned_abs();
        return Some(Gap::Behind(
            Duration::from_micros(by),
            Duration::from_micros(least.unsigned_abs()),
        ));
    }
    None
}

/// `to - from` in µs, negative when `to` came first.
fn signed_us(from: Instant, to: Instant) -> i64 {
    match to.checked_duration_since(from) {
        Some(d) => micros(d),
        None => -micros(from - to),
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Tells of a node clock found ahead: a metric and a WARN event, since
/// locks on that node may have ended early.
fn ahead(node: &str, by: Duration, over: Duration, hold_off: Duration) {
    metrics::counter!(NODE_CLOCK_JUMP, "backend" => "redis", "direction" => "ahead").increment(1);
    tracing::warn!(
        node,
        ahead_ms = by.as_millis() as u64,
        over_ms = over.as_millis() as u64,
        votes_count_again_in_ms = hold_off.as_millis() as u64,
        "node clock ran ahead of this client's beyond the drift allowance: \
         locks there may have expired early, so its votes do not count for a while"
    );
}

/// Tells of a node clock found behind: a metric and an INFO event (locks
/// there last longer than asked, which delays others but is safe).
fn behind(node: &str, by: Duration, over: Duration) {
    metrics::counter!(NODE_CLOCK_JUMP, "backend" => "redis", "direction" => "behind").increment(1);
    tracing::info!(
        node,
        behind_ms = by.as_millis() as u64,
        over_ms = over.as_millis() as u64,
        "node clock fell behind this client's beyond the drift allowance: \
         locks there last longer than asked"
    );
}

#[cfg(test)]
mod tests;
