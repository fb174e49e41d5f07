//! What the clients did, as a history of timed events, and the checks run
//! over it once every client has stopped.
//!
//! Times are nanoseconds of the system's monotonic clock (`CLOCK_MONOTONIC`),
//! read by each client in its own process: one machine, one clock that no
//! time adjustment moves, so events of the test process and of the child
//! process compare directly.

use nix::time::{ClockId, clock_gettime};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Nanoseconds on the monotonic clock (since boot, shared by every process).
pub type Nanos = u64;

/// The time now, as [`Nanos`].
pub fn now() -> Nanos {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    let nanos = i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec());
    u64::try_from(nanos).unwrap()
}

/// How a fenced write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Accepted,
    /// The store had accepted this higher token before.
    Rejected(u64),
    /// The store did not answer: the write may or may not have happened.
    Failed,
}

/// How a release ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released,
    /// The lock was no longer this holder's (it expired meanwhile).
    NotHeld,
    Failed,
}

/// One thing a client did, between `start` and `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub client: String,
    pub start: Nanos,
    pub end: Nanos,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// The lock was granted with this token.
    Acquired {
        token: u64,
    },
    /// The lock was not granted; `why` is a short error kind.
    Refused {
        why: String,
    },
    Write {
        token: u64,
        outcome: WriteOutcome,
    },
    Release {
        token: u64,
        outcome: ReleaseOutcome,
    },
}

impl fmt::Display for Event {
    /// One line, the format the child process writes and [`Event::parse`]
    /// reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Event {
            client, start, end, ..
        } = self;
        match &self.what {
            What::Acquired { token } => write!(f, "acquired {client} {start} {end} {token}"),
            What::Refused { why } => write!(f, "refused {client} {start} {end} {why}"),
            What::Write { token, outcome } => {
                let outcome = match outcome {
                    WriteOutcome::Accepted => "accepted".to_owned(),
                    WriteOutcome::Rejected(highest) => format!("rejected:{highest}"),
                    WriteOutcome::Failed => "failed".to_owned(),
                };
                write!(f, "write {client} {start} {end} {token} {outcome}")
            }
            What::Release { token, outcome } => {
                let outcome = match outcome {
                    ReleaseOutcome::Released => "released",
                    ReleaseOutcome::NotHeld => "not-held",
                    ReleaseOutcome::Failed => "failed",
                };
                write!(f, "release {client} {start} {end} {token} {outcome}")
            }
        }
    }
}

impl Event {
    /// Reads a line written by `Display`.
    pub fn parse(line: &str) -> Result<Event, String> {
        let bad = || format!("bad history line {line:?}");
        let fields: Vec<&str> = line.split(' ').collect();
        let [kind, client, start, end, rest @ ..] = fields.as_slice() else {
            return Err(bad());
        };
        let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let what = match (*kind, rest) {
            ("acquired", [token]) => What::Acquired {
                token: number(token)?,
            },
            ("refused", [why]) => What::Refused {
                why: (*why).to_owned(),
            },
            ("write", [token, outcome]) => What::Write {
                token: number(token)?,
                outcome: match *outcome {
                    "accepted" => WriteOutcome::Accepted,
                    "failed" => WriteOutcome::Failed,
                    other => WriteOutcome::Rejected(number(
                        other.strip_prefix("rejected:").ok_or_else(bad)?,
                    )?),
                },
            },
            ("release", [token, outcome]) => What::Release {
                token: number(token)?,
                outcome: match *outcome {
                    "released" => ReleaseOutcome::Released,
                    "not-held" => ReleaseOutcome::NotHeld,
                    "failed" => ReleaseOutcome::Failed,
                    _ => return Err(bad()),
                },
            },
            _ => return Err(bad()),
        };
        Ok(Event {
            client: (*client).to_owned(),
            start: number(start)?,
            end: number(end)?,
            what,
        })
    }
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    pub acquisitions: usize,
    /// Refused acquires by error kind.
    pub refused: BTreeMap<String, usize>,
    pub writes_accepted: usize,
    pub writes_rejected: usize,
    pub writes_failed: usize,
    pub releases: BTreeMap<&'static str, usize>,
    /// Pairs of holds by different clients whose hold times overlap (a
    /// hold runs from the end of its acquire to the start of its release).
    pub overlaps: usize,
    /// Overlapping pairs in which the lower token's write was rejected: the
    /// fence stopped the stale holder.
    pub overlaps_fenced: usize,
    /// Acquisitions whose token is not above that of an acquisition that
    /// ended before they started, or repeats one (the token rule broken).
    pub token_violations: Vec<String>,
    /// Accepted writes whose token is below that of an accepted write that
    /// ended before they started (the fence broken), and writes with a
    /// token their client was never given.
    pub fence_violations: Vec<String>,
    /// The highest token of an accepted write.
    pub highest_accepted: Option<u64>,
}

impl Report {
    /// Runs every check over a whole history.
    pub fn check(events: &[Event]) -> Report {
        let mut report = Report::default();
        let mut acquired = Vec::new();
        let mut accepted = Vec::new();
        let mut given: HashSet<(&str, u64)> = HashSet::new();
        for event in events {
            match &event.what {
                What::Acquired { token } => {
                    acquired.push((event.start, event.end, *token, event));
                    given.insert((&event.client, *token));
                }
                What::Refused { why } => *report.refused.entry(why.clone()).or_default() += 1,
                What::Write { token, outcome } => match outcome {
                    WriteOutcome::Accepted => {
                        report.writes_accepted += 1;
                        accepted.push((event.start, event.end, *token, event));
                    }
                    WriteOutcome::Rejected(_) => report.writes_rejected += 1,
                    WriteOutcome::Failed => report.writes_failed += 1,
                },
                What::Release { outcome, .. } => {
                    let name = match outcome {
                        ReleaseOutcome::Released => "released",
                        ReleaseOutcome::NotHeld => "not held",
                        ReleaseOutcome::Failed => "failed",
                    };
                    *report.releases.entry(name).or_default() += 1;
                }
            }
        }
        report.acquisitions = acquired.len();
        report.highest_accepted = accepted.iter().map(|a| a.2).max();

        let mut seen = HashMap::new();
        for (_, _, token, event) in &acquired {
            if let Some(first) = seen.insert(*token, *event) {
                report
                    .token_violations
                    .push(format!("token {token} handed out twice: {first} / {event}"));
            }
        }
        // The token rule: an acquire that started after another ended got a
        // higher token.
        for (earlier, later) in precedence_breaks(&acquired, |a, b| a >= b) {
            report.token_violations.push(format!(
                "token not above an earlier acquisition's: {earlier} before {later}"
            ));
        }
        // The fence: an accepted write that started after another accepted
        // write ended has a token at least as high. (Equal tokens are the
        // same holder writing again.)
        for (earlier, later) in precedence_breaks(&accepted, |a, b| a > b) {
            report.fence_violations.push(format!(
                "accepted write below an earlier accepted one: {earlier} before {later}"
            ));
        }
        for event in events {
            if let What::Write { token, .. } = event.what
                && !given.contains(&(event.client.as_str(), token))
            {
                report
                    .fence_violations
                    .push(format!("write with a token its client never got: {event}"));
            }
        }
        let (overlaps, fenced) = overlaps(events);
        report.overlaps = overlaps;
        report.overlaps_fenced = fenced;
        report
    }

    /// No violation of either kind.
    pub fn violations(&self) -> usize {
        self.token_violations.len() + self.fence_violations.len()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "acquisitions:        {}", self.acquisitions)?;
        writeln!(f, "refused acquires:    {:?}", self.refused)?;
        writeln!(
            f,
            "fenced writes:       {} accepted, {} rejected, {} failed",
            self.writes_accepted, self.writes_rejected, self.writes_failed
        )?;
        writeln!(f, "releases:            {:?}", self.releases)?;
        writeln!(
            f,
            "overlapping holds:   {} pairs, {} with the stale write rejected",
            self.overlaps, self.overlaps_fenced
        )?;
        writeln!(
            f,
            "violations:          {} token, {} fence",
            self.token_violations.len(),
            self.fence_violations.len()
        )?;
        for v in self.token_violations.iter().chain(&self.fence_violations) {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

/// Pairs (a, b) where `a` ended before `b` started and `bad(a.token,
/// b.token)`: for each `b`, only the worst earlier `a` (highest token).
fn precedence_breaks<'a>(
    ops: &[(Nanos, Nanos, u64, &'a Event)],
    bad: impl Fn(u64, u64) -> bool,
) -> Vec<(&'a Event, &'a Event)> {
    let mut by_end: Vec<_> = ops.to_vec();
    by_end.sort_by_key(|op| op.1);
    let mut by_start: Vec<_> = ops.to_vec();
    by_start.sort_by_key(|op| op.0);
    let mut highest: Option<(u64, &Event)> = None;
    let mut done = 0;
    let mut breaks = Vec::new();
    for (start, _, token, event) in by_start {
        while done < by_end.len() && by_end[done].1 < start {
            let (_, _, t, e) = by_end[done];
            if highest.is_none_or(|(h, _)| t > h) {
                highest = Some((t, e));
            }
            done += 1;
        }
        if let Some((h, earlier)) = highest
            && bad(h, token)
        {
            breaks.push((earlier, event));
        }
    }
    breaks
}

/// A hold: from the end of the acquire to the start of the release (or to
/// the end of the client's last event with that token, when it never
/// released).
struct Hold {
    client: String,
    token: u64,
    from: Nanos,
    until: Nanos,
    stale_write_rejected: bool,
}

/// Overlapping pairs of holds of different clients, and how many of them
/// had the lower token's write rejected.
fn overlaps(events: &[Event]) -> (usize, usize) {
    let mut holds: HashMap<(&str, u64), Hold> = HashMap::new();
    for event in events {
        let key = match event.what {
            What::Acquired { token } | What::Write { token, .. } | What::Release { token, .. } => {
                (event.client.as_str(), token)
            }
            What::Refused { .. } => continue,
        };
        match &event.what {
            What::Acquired { token } => {
                holds.insert(
                    key,
                    Hold {
                        client: event.client.clone(),
                        token: *token,
                        from: event.end,
                        until: event.end,
                        stale_write_rejected: false,
                    },
                );
            }
            What::Write { outcome, .. } => {
                if let Some(hold) = holds.get_mut(&key) {
                    hold.until = hold.until.max(event.end);
                    hold.stale_write_rejected |= matches!(outcome, WriteOutcome::Rejected(_));
                }
            }
            What::Release { .. } => {
                if let Some(hold) = holds.get_mut(&key) {
                    hold.until = hold.until.max(event.start);
                }
            }
            What::Refused { .. } => {}
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

#[cfg(test)]
mod tests {
    //! The checks on small made-up histories: each violation is found, and a
    //! correct history passes.

    use super::*;

    fn ev(client: &str, start: Nanos, end: Nanos, what: What) -> Event {
        Event {
            client: client.to_owned(),
            start,
            end,
            what,
        }
    }

    fn acq(client: &str, start: Nanos, end: Nanos, token: u64) -> Event {
        ev(client, start, end, What::Acquired { token })
    }

    fn write(client: &str, start: Nanos, token: u64, outcome: WriteOutcome) -> Event {
        ev(client, start, start + 1, What::Write { token, outcome })
    }

    fn release(client: &str, start: Nanos, token: u64) -> Event {
        let outcome = ReleaseOutcome::Released;
        ev(client, start, start + 1, What::Release { token, outcome })
    }

    fn round(client: &str, at: Nanos, token: u64) -> Vec<Event> {
        vec![
            acq(client, at, at + 1, token),
            write(client, at + 2, token, WriteOutcome::Accepted),
            release(client, at + 4, token),
        ]
    }

    #[test]
    fn a_correct_history_passes() {
        let mut events = round("a", 0, 1);
        events.extend(round("b", 10, 2));
        events.extend(round("a", 20, 5));
        let report = Report::check(&events);
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!((report.acquisitions, report.writes_accepted), (3, 3));
        assert_eq!((report.overlaps, report.highest_accepted), (0, Some(5)));
    }

    #[test]
    fn a_token_below_an_earlier_one_is_a_violation() {
        let mut events = round("a", 0, 7);
        events.extend(round("b", 10, 3));
        let report = Report::check(&events);
        assert_eq!(report.token_violations.len(), 1, "{report}");
        // The store would have rejected b's write; here it "accepted" it.
        assert_eq!(report.fence_violations.len(), 1, "{report}");
    }

    #[test]
    fn a_repeated_token_is_a_violation_even_when_concurrent() {
        let events = vec![acq("a", 0, 5, 4), acq("b", 1, 6, 4)];
        let report = Report::check(&events);
        assert_eq!(report.token_violations.len(), 1, "{report}");
    }

    #[test]
    fn concurrent_acquires_may_end_in_either_order() {
        let events = vec![acq("a", 0, 10, 5), acq("b", 1, 9, 4)];
        assert_eq!(Report::check(&events).violations(), 0);
    }

    #[test]
    fn an_overlap_stopped_by_the_fence_is_counted_not_a_violation() {
        let events = vec![
            acq("slow", 0, 1, 1),
            acq("fast", 5, 6, 2),
            write("fast", 7, 2, WriteOutcome::Accepted),
            release("fast", 9, 2),
            write("slow", 20, 1, WriteOutcome::Rejected(2)),
            ev(
                "slow",
                21,
                22,
                What::Release {
                    token: 1,
                    outcome: ReleaseOutcome::NotHeld,
                },
            ),
        ];
        let report = Report::check(&events);
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!((report.overlaps, report.overlaps_fenced), (1, 1));
        assert_eq!(report.writes_rejected, 1);
    }

    #[test]
    fn a_stale_write_accepted_after_a_newer_one_is_a_violation() {
        let events = vec![
            acq("slow", 0, 1, 1),
            acq("fast", 5, 6, 2),
            write("fast", 7, 2, WriteOutcome::Accepted),
            write("slow", 20, 1, WriteOutcome::Accepted),
        ];
        let report = Report::check(&events);
        assert_eq!(report.fence_violations.len(), 1, "{report}");
        assert_eq!(report.overlaps, 1);
    }

    #[test]
    fn a_write_with_a_token_never_given_is_a_violation() {
        let mut events = round("a", 0, 1);
        events.push(write("b", 10, 9, WriteOutcome::Accepted));
        let report = Report::check(&events);
        assert_eq!(report.fence_violations.len(), 1, "{report}");
    }

    #[test]
    fn lines_round_trip() {
        let events = [
            acq("c1", 1, 2, 3),
            ev("c2", 4, 5, What::Refused { why: "busy".into() }),
            write("c3", 6, 7, WriteOutcome::Rejected(9)),
            write("c3", 6, 7, WriteOutcome::Failed),
            ev(
                "c4",
                8,
                9,
                What::Release {
                    token: 10,
                    outcome: ReleaseOutcome::NotHeld,
                },
            ),
        ];
        for event in events {
            assert_eq!(Event::parse(&event.to_string()), Ok(event));
        }
        assert!(Event::parse("acquired c1 1 2").is_err());
        assert!(Event::parse("write c1 1 2 3 rejected:x").is_err());
    }
}
