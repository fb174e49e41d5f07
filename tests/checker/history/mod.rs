//! What the clients did, as a history of timed events, and the checks run
//! over it once every client has stopped.
//!
//! Times are nanoseconds of the system's monotonic clock (`CLOCK_MONOTONIC`),
//! read by each client in its own process: one machine, one clock that no
//! time adjustment moves, so events of the test process and of the child
//! process compare directly.
//!
//! The store is one Redis server, so it applies its operations one after
//! the other. That order is not observed directly; what the history has is
//! each operation's interval, and an operation that ended before another
//! started was applied before it. Every order check below ("an earlier
//! accepted operation") uses that: it only reports what is certainly out of
//! order, whatever order the store chose for operations side by side.

mod holds;
mod report;
#[cfg(test)]
mod tests;

use nix::time::{ClockId, clock_gettime};
use std::fmt;

pub use report::{Ops, Report, Slots, precedence_breaks};

/// Nanoseconds on the monotonic clock (since boot, shared by every process).
pub type Nanos = u64;

/// The time now, as [`Nanos`].
pub fn now() -> Nanos {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC");
    let nanos = i128::from(now.tv_sec()) * 1_000_000_000 + i128::from(now.tv_nsec());
    u64::try_from(nanos).unwrap()
}

/// What a client holds, and what it does to the store under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The exclusive lock; writes the lock's resource.
    Lock,
    /// A read hold of the read-write lock; reads its resource, fenced.
    Read,
    /// A write hold of the read-write lock; writes its resource.
    Write,
    /// A permit of the semaphore; writes the resource of its slot.
    Permit,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Lock, Role::Read, Role::Write, Role::Permit];

    pub fn name(self) -> &'static str {
        match self {
            Role::Lock => "lock",
            Role::Read => "read",
            Role::Write => "write",
            Role::Permit => "permit",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// The fenced resource an operation went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// The exclusive lock's resource.
    Lock,
    /// The read-write lock's resource.
    ReadWrite,
    /// The resource of one slot of the semaphore.
    Slot(u32),
}

/// How a fenced operation (write, or read under a read hold) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// The store had accepted this higher token before (for a read: this
    /// higher write token).
    Rejected(u64),
    /// The store did not answer: the operation may or may not have happened.
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
    pub role: Role,
    pub start: Nanos,
    pub end: Nanos,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Granted with this token; a permit also in this slot.
    Acquired { token: u64, slot: Option<u32> },
    /// Not granted; `why` is a short error kind.
    Refused { why: String },
    /// A fenced write: to the lock's resource, the read-write lock's, or
    /// the slot's.
    Write { token: u64, outcome: Outcome },
    /// A fenced read of the read-write lock's resource. `saw` is the write
    /// token the store answered with the value (`None` when nothing was
    /// written yet or the read was not accepted).
    Read {
        token: u64,
        outcome: Outcome,
        saw: Option<u64>,
    },
    /// `held_until` is the end of the hold's validity as the guard counted
    /// it just before the release (the watchdog moves it on): until then
    /// the client believed it held.
    Release {
        token: u64,
        outcome: ReleaseOutcome,
        held_until: Nanos,
    },
}

impl What {
    fn token(&self) -> Option<u64> {
        match *self {
            What::Acquired { token, .. }
            | What::Write { token, .. }
            | What::Read { token, .. }
            | What::Release { token, .. } => Some(token),
            What::Refused { .. } => None,
        }
    }
}

fn outcome_str(outcome: Outcome) -> String {
    match outcome {
        Outcome::Accepted => "accepted".to_owned(),
        Outcome::Rejected(highest) => format!("rejected:{highest}"),
        Outcome::Failed => "failed".to_owned(),
    }
}

pub(super) fn opt_str<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl fmt::Display for Event {
    /// One line, the format the child process writes and [`Event::parse`]
    /// reads: `kind client role start end ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Event {
            client,
            role,
            start,
            end,
            ..
        } = self;
        let head = |kind: &str| format!("{kind} {client} {} {start} {end}", role.name());
        match &self.what {
            What::Acquired { token, slot } => {
                write!(f, "{} {token} {}", head("acquired"), opt_str(*slot))
            }
            What::Refused { why } => write!(f, "{} {why}", head("refused")),
            What::Write { token, outcome } => {
                write!(f, "{} {token} {}", head("write"), outcome_str(*outcome))
            }
            What::Read {
                token,
                outcome,
                saw,
            } => write!(
                f,
                "{} {token} {} {}",
                head("read"),
                outcome_str(*outcome),
                opt_str(*saw)
            ),
            What::Release {
                token,
                outcome,
                held_until,
            } => {
                let outcome = match outcome {
                    ReleaseOutcome::Released => "released",
                    ReleaseOutcome::NotHeld => "not-held",
                    ReleaseOutcome::Failed => "failed",
                };
                write!(f, "{} {token} {outcome} {held_until}", head("release"))
            }
        }
    }
}

impl Event {
    /// Reads a line written by `Display`.
    pub fn parse(line: &str) -> Result<Event, String> {
        let bad = || format!("bad history line {line:?}");
        let fields: Vec<&str> = line.split(' ').collect();
        let [kind, client, role, start, end, rest @ ..] = fields.as_slice() else {
            return Err(bad());
        };
        let number = |s: &str| s.parse::<u64>().map_err(|_| bad());
        let optional = |s: &str| match s {
            "-" => Ok(None),
            s => number(s).map(Some),
        };
        let outcome = |s: &str| -> Result<Outcome, String> {
            match s {
                "accepted" => Ok(Outcome::Accepted),
                "failed" => Ok(Outcome::Failed),
                other => Ok(Outcome::Rejected(number(
                    other.strip_prefix("rejected:").ok_or_else(bad)?,
                )?)),
            }
        };
        let what = match (*kind, rest) {
            ("acquired", [token, slot]) => What::Acquired {
                token: number(token)?,
                slot: optional(slot)?
                    .map(|s| u32::try_from(s).map_err(|_| bad()))
                    .transpose()?,
            },
            ("refused", [why]) => What::Refused {
                why: (*why).to_owned(),
            },
            ("write", [token, done]) => What::Write {
                token: number(token)?,
                outcome: outcome(done)?,
            },
            ("read", [token, done, saw]) => What::Read {
                token: number(token)?,
                outcome: outcome(done)?,
                saw: optional(saw)?,
            },
            ("release", [token, done, held_until]) => What::Release {
                token: number(token)?,
                outcome: match *done {
                    "released" => ReleaseOutcome::Released,
                    "not-held" => ReleaseOutcome::NotHeld,
                    "failed" => ReleaseOutcome::Failed,
                    _ => return Err(bad()),
                },
                held_until: number(held_until)?,
            },
            _ => return Err(bad()),
        };
        Ok(Event {
            client: (*client).to_owned(),
            role: Role::parse(role).ok_or_else(bad)?,
            start: number(start)?,
            end: number(end)?,
            what,
        })
    }
}
