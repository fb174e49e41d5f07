//! Holds as their clients believed them, from the history: how many at
//! once, and which overlapped.

use std::collections::HashMap;
use std::fmt;

use super::{Event, Nanos, Outcome, Role, What, opt_str};

/// A hold, as its client believed it.
pub(super) struct Span {
    pub client: String,
    pub token: u64,
    pub slot: Option<u32>,
    pub from: Nanos,
    pub until: Nanos,
    pub rejected: bool,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} token {} slot {} held {}..{}",
            self.client,
            self.token,
            opt_str(self.slot),
            self.from,
            self.until
        )
    }
}

/// Each hold of `role`: from the end of the acquire to the start of the
/// release or the end of the validity it counted on, whichever came first
/// (to the end of its last event if it never released), and whether one of
/// its fenced operations was rejected.
pub(super) fn spans(events: &[Event], role: Role) -> Vec<Span> {
    let mut spans: HashMap<(&str, u64), Span> = HashMap::new();
    for event in events.iter().filter(|e| e.role == role) {
        let Some(token) = event.what.token() else {
            continue;
        };
        let key = (event.client.as_str(), token);
        match &event.what {
            What::Acquired { slot, .. } => {
                spans.insert(
                    key,
                    Span {
                        client: event.client.clone(),
                        token,
                        slot: *slot,
                        from: event.end,
                        until: event.end,
                        rejected: false,
                    },
                );
            }
            What::Write { outcome, .. } | What::Read { outcome, .. } => {
                if let Some(span) = spans.get_mut(&key) {
                    span.until = span.until.max(event.end);
                    span.rejected |= matches!(outcome, Outcome::Rejected(_));
                }
            }
            What::Release { held_until, .. } => {
                if let Some(span) = spans.get_mut(&key) {
                    span.until = event.start.min(*held_until);
                }
            }
            What::Refused { .. } => {}
        }
    }
    let mut spans: Vec<Span> = spans.into_values().collect();
    spans.sort_by_key(|s| (s.from, s.token));
    spans
}

/// The most spans at once, leaving out rejected ones, and each time the
/// count went above `limit`, the spans then live.
pub(super) fn most_at_once(spans: &[Span], limit: usize) -> (usize, Vec<String>) {
    // Ends before starts at the same instant: touching is not overlapping.
    let mut points: Vec<(Nanos, bool, usize)> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        if !span.rejected && span.until > span.from {
            points.push((span.from, true, i));
            points.push((span.until, false, i));
        }
    }
    points.sort_unstable();
    let (mut most, mut crowds) = (0, Vec::new());
    let mut live: Vec<usize> = Vec::new();
    for (_, starts, i) in points {
        if !starts {
            live.retain(|&j| j != i);
            continue;
        }
        live.push(i);
        most = most.max(live.len());
        if live.len() == limit.saturating_add(1) {
            let crowd: Vec<String> = live.iter().map(|&j| spans[j].to_string()).collect();
            crowds.push(crowd.join("; "));
        }
    }
    (most, crowds)
}

/// An exclusive hold: from the end of the acquire to the start of the
/// release (or to the end of the client's last event with that token, when
/// it never released).
struct Hold {
    client: String,
    token: u64,
    from: Nanos,
    until: Nanos,
    stale_write_rejected: bool,
}

/// Overlapping pairs of exclusive holds of different clients, and how many
/// of them had the lower token's write rejected.
pub(super) fn overlaps(events: &[Event]) -> (usize, usize) {
    let mut holds: HashMap<(&str, u64), Hold> = HashMap::new();
    for event in events.iter().filter(|e| e.role == Role::Lock) {
        let Some(token) = event.what.token() else {
            continue;
        };
        let key = (event.client.as_str(), token);
        match &event.what {
            What::Acquired { .. } => {
                holds.insert(
                    key,
                    Hold {
                        client: event.client.clone(),
                        token,
                        from: event.end,
                        until: event.end,
                        stale_write_rejected: false,
                    },
                );
            }
            What::Write { outcome, .. } => {
                if let Some(hold) = holds.get_mut(&key) {
                    hold.until = hold.until.max(event.end);
                    hold.stale_write_rejected |= matches!(outcome, Outcome::Rejected(_));
                }
            }
            What::Release { .. } => {
                if let Some(hold) = holds.get_mut(&key) {
                    hold.until = hold.until.max(event.start);
                }
            }
            What::Read { .. } | What::Refused { .. } => {}
        }
    }
    let mut holds: Vec<Hold> = holds.into_values().collect();
    holds.sort_by_key(|h| h.from);
    let (mut pairs, mut fenced) = (0, 0);
    for (i, a) in holds.iter().enumerate() {
        for b in holds[i + 1..].iter().take_while(|b| b.from < a.until) {
            if a.client == b.client {
                continue;
            }
            pairs += 1;
            let lower = if a.token < b.token { a } else { b };
            fenced += usize::from(lower.stale_write_rejected);
        }
    }
    (pairs, fenced)
}
