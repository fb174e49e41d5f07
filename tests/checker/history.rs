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

fn opt_str<T: fmt::Display>(value: Option<T>) -> String {
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

/// Accepted, rejected and failed fenced operations of one role.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ops {
    pub accepted: usize,
    pub rejected: usize,
    pub failed: usize,
}

/// Where a backend puts a permit's slot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Slots {
    /// In the token: the token is a counter times 1000 plus the slot
    /// (Redlock's semaphore), checked as such.
    #[default]
    InToken,
    /// Beside the token, which is a revision that says nothing of the
    /// slot (etcd): the slot the client was given is checked below the
    /// permit count, and the tokens increase per slot as recorded.
    Apart,
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    /// The semaphore's permits.
    pub permits: usize,
    /// Where the permits' slots are.
    pub slots: Slots,
    /// Acquisitions of the exclusive lock.
    pub acquisitions: usize,
    /// Acquisitions by role.
    pub acquired: BTreeMap<Role, usize>,
    /// Refused acquires by role and error kind.
    pub refused: BTreeMap<Role, BTreeMap<String, usize>>,
    /// Fenced operations by role: writes, and the readers' fenced reads.
    pub ops: BTreeMap<Role, Ops>,
    pub releases: BTreeMap<&'static str, usize>,
    /// Pairs of exclusive holds by different clients whose hold times
    /// overlap (a hold runs from the end of its acquire to the start of its
    /// release).
    pub overlaps: usize,
    /// Overlapping pairs in which the lower token's write was rejected: the
    /// fence stopped the stale holder.
    pub overlaps_fenced: usize,
    /// The most permit holders at once, not counting those with a rejected
    /// write (a hold runs from the end of its acquire to the start of its
    /// release or the end of its validity, whichever came first).
    pub max_permit_holders: usize,
    /// Permit holders left out of that count: their write was rejected.
    pub permit_holders_fenced: usize,
    /// The most read holders at once (counted as permit holders are): a
    /// figure, not a check, that readers did share the lock.
    pub max_readers: usize,
    /// Tokens handed out twice or out of order: by the exclusive lock (an
    /// acquisition not above one that ended before it started), by the
    /// read-write lock (a write not above every earlier hold, a read not
    /// above every earlier write) and by the semaphore (a slot's tokens not
    /// increasing, a token whose slot is not `token % 1000`).
    pub token_violations: Vec<String>,
    /// Accepted operations out of token order on a fenced resource (the
    /// fence broken): on the lock's resource and on each slot's, a write
    /// below an earlier accepted write; on the read-write resource, a write
    /// below an earlier accepted operation of either kind, a read below an
    /// earlier accepted write, or a read that saw an older write than one
    /// accepted before it. Also operations with a token their client was
    /// never given.
    pub fence_violations: Vec<String>,
    /// Moments with more than `permits` permit holders none of whose
    /// writes was rejected.
    pub permit_violations: Vec<String>,
    /// The highest token of an accepted write, by resource: the last
    /// write's token, as the store should show it at the end.
    pub highest_accepted: BTreeMap<Target, u64>,
}

/// An operation with its interval and the token it is compared by.
pub(crate) type Op<'a> = (Nanos, Nanos, u64, &'a Event);

fn op(event: &Event, token: u64) -> Op<'_> {
    (event.start, event.end, token, event)
}

impl Report {
    /// Runs every check over a whole history of clients of a semaphore of
    /// `permits` permits (and of the two locks).
    pub fn check(events: &[Event], permits: usize) -> Report {
        Report::check_slots(events, permits, Slots::InToken)
    }

    /// [`check`](Report::check) for a backend whose permit tokens carry
    /// their slot as `slots` says.
    pub fn check_slots(events: &[Event], permits: usize, slots: Slots) -> Report {
        let mut report = Report {
            permits,
            slots,
            ..Report::default()
        };
        let mut acquired: BTreeMap<Role, Vec<Op>> = BTreeMap::new();
        let mut given: HashSet<(&str, Role, u64)> = HashSet::new();
        // The slot of each permit, by (client, token).
        let mut slot_of: HashMap<(&str, u64), u32> = HashMap::new();
        for event in events {
            match &event.what {
                What::Acquired { token, slot } => {
                    acquired
                        .entry(event.role)
                        .or_default()
                        .push(op(event, *token));
                    given.insert((&event.client, event.role, *token));
                    if event.role == Role::Permit {
                        match slot {
                            Some(slot) => {
                                slot_of.insert((&event.client, *token), *slot);
                                let (named, rule) = match slots {
                                    Slots::InToken => {
                                        (u64::from(*slot) == token % 1000, "token % 1000 ")
                                    }
                                    Slots::Apart => (true, ""),
                                };
                                if *slot as usize >= permits || !named {
                                    report.token_violations.push(format!(
                                        "permit slot not {rule}below {permits}: {event}"
                                    ));
                                }
                            }
                            None => report
                                .token_violations
                                .push(format!("permit without a slot: {event}")),
                        }
                    }
                }
                What::Refused { why } => {
                    *report
                        .refused
                        .entry(event.role)
                        .or_default()
                        .entry(why.clone())
                        .or_default() += 1;
                }
                What::Release { outcome, .. } => {
                    let name = match outcome {
                        ReleaseOutcome::Released => "released",
                        ReleaseOutcome::NotHeld => "not held",
                        ReleaseOutcome::Failed => "failed",
                    };
                    *report.releases.entry(name).or_default() += 1;
                }
                What::Write { .. } | What::Read { .. } => {}
            }
        }
        for (role, list) in &acquired {
            report.acquired.insert(*role, list.len());
        }
        report.acquisitions = report.acquired.get(&Role::Lock).copied().unwrap_or(0);

        // Accepted operations, by resource; reads apart.
        let mut writes: BTreeMap<Target, Vec<Op>> = BTreeMap::new();
        let mut reads: Vec<Op> = Vec::new();
        // Reads as the write they saw (0: none).
        let mut seen: Vec<Op> = Vec::new();
        // Write tokens of the read-write resource that may have been applied.
        let mut rw_written: HashSet<u64> = HashSet::new();
        for event in events {
            let (token, outcome) = match event.what {
                What::Write { token, outcome } | What::Read { token, outcome, .. } => {
                    (token, outcome)
                }
                _ => continue,
            };
            let ops = report.ops.entry(event.role).or_default();
            match outcome {
                Outcome::Accepted => ops.accepted += 1,
                Outcome::Rejected(_) => ops.rejected += 1,
                Outcome::Failed => ops.failed += 1,
            }
            if !given.contains(&(event.client.as_str(), event.role, token)) {
                report.fence_violations.push(format!(
                    "operation with a token its client never got: {event}"
                ));
                continue;
            }
            let target = match event.role {
                Role::Lock => Target::Lock,
                Role::Read | Role::Write => Target::ReadWrite,
                Role::Permit => Target::Slot(slot_of[&(event.client.as_str(), token)]),
            };
            if event.role == Role::Write && !matches!(outcome, Outcome::Rejected(_)) {
                rw_written.insert(token);
            }
            if outcome != Outcome::Accepted {
                continue;
            }
            match event.what {
                What::Read { saw, .. } => {
                    reads.push(op(event, token));
                    seen.push(op(event, saw.unwrap_or(0)));
                }
                _ => {
                    let highest = report.highest_accepted.entry(target).or_default();
                    *highest = (*highest).max(token);
                    writes.entry(target).or_default().push(op(event, token));
                }
            }
        }

        report.check_tokens(&acquired);

        // The fence: on every resource, an accepted write that started after
        // another accepted write ended has a token at least as high. (Equal
        // tokens are the same holder writing again.)
        for (target, list) in &writes {
            for (earlier, later) in precedence_breaks(list, list, |a, b| a > b) {
                report.fence_violations.push(format!(
                    "accepted write below an earlier accepted one on {target:?}: \
                     {earlier} before {later}"
                ));
            }
        }
        // The read-write resource: a write is accepted at or above every
        // accepted token, reads' included; a read at or above every accepted
        // write's.
        let rw_writes = writes.remove(&Target::ReadWrite).unwrap_or_default();
        for (earlier, later) in precedence_breaks(&reads, &rw_writes, |a, b| a > b) {
            report.fence_violations.push(format!(
                "accepted write below an earlier accepted read: {earlier} before {later}"
            ));
        }
        for (earlier, later) in precedence_breaks(&rw_writes, &reads, |a, b| a > b) {
            report.fence_violations.push(format!(
                "accepted read below an earlier accepted write: {earlier} before {later}"
            ));
        }
        // What a read returns is the latest write: no older than one
        // accepted before the read started, and one that was made.
        for (earlier, later) in precedence_breaks(&rw_writes, &seen, |a, b| a > b) {
            report.fence_violations.push(format!(
                "read saw an older write than one accepted before it: {earlier} before {later}"
            ));
        }
        for (_, _, saw, event) in &seen {
            if *saw != 0 && !rw_written.contains(saw) {
                report
                    .fence_violations
                    .push(format!("read saw a write token nobody wrote: {event}"));
            }
        }

        let (overlaps, fenced) = overlaps(events);
        report.overlaps = overlaps;
        report.overlaps_fenced = fenced;
        report.check_permit_holders(events);
        report
    }

    /// The token rules of the three primitives.
    fn check_tokens(&mut self, acquired: &BTreeMap<Role, Vec<Op>>) {
        let empty = Vec::new();
        let of = |role| acquired.get(&role).unwrap_or(&empty);
        let twice = |list: &[Op], what: &str, out: &mut Vec<String>| {
            let mut seen = HashMap::new();
            for (_, _, token, event) in list {
                if let Some(first) = seen.insert(*token, *event) {
                    out.push(format!(
                        "{what} token {token} handed out twice: {first} / {event}"
                    ));
                }
            }
        };
        // The exclusive lock: unique, and an acquire that started after
        // another ended got a higher token.
        twice(of(Role::Lock), "lock", &mut self.token_violations);
        for (earlier, later) in precedence_breaks(of(Role::Lock), of(Role::Lock), |a, b| a >= b) {
            self.token_violations.push(format!(
                "token not above an earlier acquisition's: {earlier} before {later}"
            ));
        }
        // The read-write lock: a write's token is above every earlier
        // hold's, a read's above every earlier write's. Readers may share a
        // token; writers may not.
        twice(of(Role::Write), "write", &mut self.token_violations);
        let holds: Vec<Op> = of(Role::Read)
            .iter()
            .chain(of(Role::Write))
            .copied()
            .collect();
        for (earlier, later) in precedence_breaks(&holds, of(Role::Write), |a, b| a >= b) {
            self.token_violations.push(format!(
                "write token not above an earlier hold's: {earlier} before {later}"
            ));
        }
        for (earlier, later) in precedence_breaks(of(Role::Write), of(Role::Read), |a, b| a >= b) {
            self.token_violations.push(format!(
                "read token not above an earlier write's: {earlier} before {later}"
            ));
        }
        // The semaphore: unique tokens, strictly increasing per slot in
        // grant order.
        twice(of(Role::Permit), "permit", &mut self.token_violations);
        let mut by_slot: BTreeMap<u64, Vec<Op>> = BTreeMap::new();
        for permit in of(Role::Permit) {
            let slot = match (self.slots, &permit.3.what) {
                (Slots::Apart, What::Acquired { slot: Some(s), .. }) => u64::from(*s),
                _ => permit.2 % 1000,
            };
            by_slot.entry(slot).or_default().push(*permit);
        }
        for (slot, list) in &by_slot {
            for (earlier, later) in precedence_breaks(list, list, |a, b| a >= b) {
                self.token_violations.push(format!(
                    "slot {slot}: token not above an earlier grant's: {earlier} before {later}"
                ));
            }
        }
    }

    /// Counts the permit holders at each moment, leaving out those whose
    /// write was rejected (the fence took their permit away); and the
    /// readers, likewise.
    fn check_permit_holders(&mut self, events: &[Event]) {
        let permits = spans(events, Role::Permit);
        self.permit_holders_fenced = permits.iter().filter(|s| s.rejected).count();
        let (most, crowds) = most_at_once(&permits, self.permits);
        self.max_permit_holders = most;
        for crowd in crowds {
            self.permit_violations.push(format!(
                "{} permit holders at once, none fenced: {crowd}",
                self.permits + 1
            ));
        }
        self.max_readers = most_at_once(&spans(events, Role::Read), usize::MAX).0;
    }

    /// Violations of every kind.
    pub fn violations(&self) -> usize {
        self.token_violations.len() + self.fence_violations.len() + self.permit_violations.len()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by_role = |count: &dyn Fn(Role) -> String| {
            Role::ALL
                .iter()
                .map(|&r| format!("{} {}", r.name(), count(r)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "acquisitions:        {}",
            by_role(&|r| self.acquired.get(&r).copied().unwrap_or(0).to_string())
        )?;
        writeln!(
            f,
            "refused acquires:    {}",
            by_role(&|r| format!("{:?}", self.refused.get(&r).cloned().unwrap_or_default()))
        )?;
        writeln!(
            f,
            "fenced ops:          {} (accepted/rejected/failed)",
            by_role(&|r| {
                let o = self.ops.get(&r).copied().unwrap_or_default();
                format!("{}/{}/{}", o.accepted, o.rejected, o.failed)
            })
        )?;
        writeln!(f, "releases:            {:?}", self.releases)?;
        writeln!(
            f,
            "overlapping holds:   {} pairs, {} with the stale write rejected (lock)",
            self.overlaps, self.overlaps_fenced
        )?;
        writeln!(
            f,
            "permit holders:      at most {} at once of {} permits ({} holders fenced, not counted)",
            self.max_permit_holders, self.permits, self.permit_holders_fenced
        )?;
        writeln!(
            f,
            "readers:             at most {} at once",
            self.max_readers
        )?;
        writeln!(
            f,
            "violations:          {} token, {} fence, {} permit",
            self.token_violations.len(),
            self.fence_violations.len(),
            self.permit_violations.len()
        )?;
        for v in self
            .token_violations
            .iter()
            .chain(&self.fence_violations)
            .chain(&self.permit_violations)
        {
            writeln!(f, "  {v}")?;
        }
        Ok(())
    }
}

/// Pairs (a, b), `a` from `earlier` and `b` from `later`, where `a` ended
/// before `b` started and `bad(a.token, b.token)`: for each `b`, only the
/// worst earlier `a` (highest token).
pub(crate) fn precedence_breaks<'a>(
    earlier: &[Op<'a>],
    later: &[Op<'a>],
    bad: impl Fn(u64, u64) -> bool,
) -> Vec<(&'a Event, &'a Event)> {
    let mut by_end: Vec<_> = earlier.to_vec();
    by_end.sort_by_key(|op| op.1);
    let mut by_start: Vec<_> = later.to_vec();
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

/// A hold, as its client believed it.
struct Span {
    client: String,
    token: u64,
    slot: Option<u32>,
    from: Nanos,
    until: Nanos,
    rejected: bool,
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
fn spans(events: &[Event], role: Role) -> Vec<Span> {
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
fn most_at_once(spans: &[Span], limit: usize) -> (usize, Vec<String>) {
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
fn overlaps(events: &[Event]) -> (usize, usize) {
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

#[cfg(test)]
mod tests {
    //! The checks on small made-up histories: each violation is found, and a
    //! correct history passes.

    use super::*;

    const PERMITS: usize = 3;

    fn check(events: &[Event]) -> Report {
        Report::check(events, PERMITS)
    }

    fn evr(role: Role, client: &str, start: Nanos, end: Nanos, what: What) -> Event {
        Event {
            client: client.to_owned(),
            role,
            start,
            end,
            what,
        }
    }

    fn ev(client: &str, start: Nanos, end: Nanos, what: What) -> Event {
        evr(Role::Lock, client, start, end, what)
    }

    fn acq(client: &str, start: Nanos, end: Nanos, token: u64) -> Event {
        ev(client, start, end, What::Acquired { token, slot: None })
    }

    fn write(client: &str, start: Nanos, token: u64, outcome: Outcome) -> Event {
        ev(client, start, start + 1, What::Write { token, outcome })
    }

    fn release_as(role: Role, client: &str, start: Nanos, token: u64) -> Event {
        let outcome = ReleaseOutcome::Released;
        let held_until = Nanos::MAX;
        let what = What::Release {
            token,
            outcome,
            held_until,
        };
        evr(role, client, start, start + 1, what)
    }

    fn release(client: &str, start: Nanos, token: u64) -> Event {
        release_as(Role::Lock, client, start, token)
    }

    fn round(client: &str, at: Nanos, token: u64) -> Vec<Event> {
        vec![
            acq(client, at, at + 1, token),
            write(client, at + 2, token, Outcome::Accepted),
            release(client, at + 4, token),
        ]
    }

    /// A read-write hold from `at` to `at + 4`: acquire, the fenced
    /// operation at `at + 2` (a read sees `saw`), release.
    fn rw(role: Role, client: &str, at: Nanos, token: u64, outcome: Outcome) -> Vec<Event> {
        let slot = None;
        let what = match role {
            Role::Read => What::Read {
                token,
                outcome,
                saw: None,
            },
            _ => What::Write { token, outcome },
        };
        vec![
            evr(role, client, at, at + 1, What::Acquired { token, slot }),
            evr(role, client, at + 2, at + 3, what),
            release_as(role, client, at + 4, token),
        ]
    }

    fn reading(client: &str, at: Nanos, token: u64, saw: Option<u64>) -> Vec<Event> {
        let mut events = rw(Role::Read, client, at, token, Outcome::Accepted);
        events[1].what = What::Read {
            token,
            outcome: Outcome::Accepted,
            saw,
        };
        events
    }

    /// A permit held from `at + 1` to `at + len` (its release), writing
    /// its slot at `at + 2`.
    fn permit(client: &str, at: Nanos, len: Nanos, token: u64, outcome: Outcome) -> Vec<Event> {
        let slot = Some(u32::try_from(token % 1000).unwrap());
        let p = Role::Permit;
        vec![
            evr(p, client, at, at + 1, What::Acquired { token, slot }),
            evr(p, client, at + 2, at + 3, What::Write { token, outcome }),
            release_as(p, client, at + len, token),
        ]
    }

    #[test]
    fn a_correct_history_passes() {
        let mut events = round("a", 0, 1);
        events.extend(round("b", 10, 2));
        events.extend(round("a", 20, 5));
        let report = check(&events);
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!(
            (report.acquisitions, report.ops[&Role::Lock].accepted),
            (3, 3)
        );
        assert_eq!(report.overlaps, 0);
        assert_eq!(report.highest_accepted[&Target::Lock], 5);
    }

    #[test]
    fn a_token_below_an_earlier_one_is_a_violation() {
        let mut events = round("a", 0, 7);
        events.extend(round("b", 10, 3));
        let report = check(&events);
        assert_eq!(report.token_violations.len(), 1, "{report}");
        // The store would have rejected b's write; here it "accepted" it.
        assert_eq!(report.fence_violations.len(), 1, "{report}");
    }

    #[test]
    fn a_repeated_token_is_a_violation_even_when_concurrent() {
        let events = vec![acq("a", 0, 5, 4), acq("b", 1, 6, 4)];
        let report = check(&events);
        assert_eq!(report.token_violations.len(), 1, "{report}");
    }

    #[test]
    fn concurrent_acquires_may_end_in_either_order() {
        let events = vec![acq("a", 0, 10, 5), acq("b", 1, 9, 4)];
        assert_eq!(check(&events).violations(), 0);
    }

    #[test]
    fn an_overlap_stopped_by_the_fence_is_counted_not_a_violation() {
        let events = vec![
            acq("slow", 0, 1, 1),
            acq("fast", 5, 6, 2),
            write("fast", 7, 2, Outcome::Accepted),
            release("fast", 9, 2),
            write("slow", 20, 1, Outcome::Rejected(2)),
            ev(
                "slow",
                21,
                22,
                What::Release {
                    token: 1,
                    outcome: ReleaseOutcome::NotHeld,
                    held_until: 3,
                },
            ),
        ];
        let report = check(&events);
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!((report.overlaps, report.overlaps_fenced), (1, 1));
        assert_eq!(report.ops[&Role::Lock].rejected, 1);
    }

    #[test]
    fn a_stale_write_accepted_after_a_newer_one_is_a_violation() {
        let events = vec![
            acq("slow", 0, 1, 1),
            acq("fast", 5, 6, 2),
            write("fast", 7, 2, Outcome::Accepted),
            write("slow", 20, 1, Outcome::Accepted),
        ];
        let report = check(&events);
        assert_eq!(report.fence_violations.len(), 1, "{report}");
        assert_eq!(report.overlaps, 1);
    }

    #[test]
    fn a_write_with_a_token_never_given_is_a_violation() {
        let mut events = round("a", 0, 1);
        events.push(write("b", 10, 9, Outcome::Accepted));
        // Given, but for another role.
        events.push(evr(
            Role::Write,
            "a",
            20,
            21,
            What::Write {
                token: 1,
                outcome: Outcome::Accepted,
            },
        ));
        let report = check(&events);
        assert_eq!(report.fence_violations.len(), 2, "{report}");
    }

    #[test]
    fn a_correct_read_write_history_passes() {
        let mut events = rw(Role::Write, "w", 0, 10, Outcome::Accepted);
        // Two readers side by side, one token; then a writer above them.
        events.extend(reading("r1", 10, 11, Some(10)));
        events.extend(reading("r2", 11, 11, Some(10)));
        events.extend(rw(Role::Write, "w", 20, 12, Outcome::Accepted));
        // A reader stalled past its hold: refused by the newer write.
        let mut stale = rw(Role::Read, "r3", 30, 11, Outcome::Rejected(12));
        (stale[0].start, stale[0].end) = (12, 13);
        events.extend(stale);
        events.extend(reading("r1", 40, 13, Some(12)));
        let report = check(&events);
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!(report.acquired[&Role::Read], 4);
        assert_eq!(
            report.ops[&Role::Read],
            Ops {
                accepted: 3,
                rejected: 1,
                failed: 0
            }
        );
        assert_eq!(report.highest_accepted[&Target::ReadWrite], 12);
        assert_eq!(report.max_readers, 2);
    }

    #[test]
    fn a_write_accepted_below_an_earlier_read_is_a_violation() {
        // The writer got its token before the reader, stalled, and its
        // write went through after the read: the read's token must stop it.
        let mut events = reading("r", 10, 6, None);
        events.insert(
            0,
            evr(
                Role::Write,
                "w",
                0,
                1,
                What::Acquired {
                    token: 5,
                    slot: None,
                },
            ),
        );
        events.push(evr(
            Role::Write,
            "w",
            20,
            21,
            What::Write {
                token: 5,
                outcome: Outcome::Accepted,
            },
        ));
        let report = check(&events);
        assert_eq!(report.fence_violations.len(), 1, "{report}");
        assert!(report.fence_violations[0].contains("below an earlier accepted read"));
        // Its acquisition came first: the tokens are in order.
        assert_eq!(report.token_violations.len(), 0, "{report}");
    }

    #[test]
    fn a_read_accepted_below_an_earlier_write_is_a_violation() {
        let mut events = rw(Role::Read, "r", 0, 5, Outcome::Accepted);
        events.truncate(1);
        events.extend(rw(Role::Write, "w", 10, 6, Outcome::Accepted));
        events.push(evr(
            Role::Read,
            "r",
            20,
            21,
            What::Read {
                token: 5,
                outcome: Outcome::Accepted,
                saw: Some(6),
            },
        ));
        let report = check(&events);
        assert_eq!(report.fence_violations.len(), 1, "{report}");
        assert!(report.fence_violations[0].contains("read below an earlier accepted write"));
    }

    #[test]
    fn a_read_of_an_older_or_unwritten_value_is_a_violation() {
        let mut events = rw(Role::Write, "w", 0, 5, Outcome::Accepted);
        events.extend(rw(Role::Write, "w", 10, 7, Outcome::Accepted));
        events.extend(reading("r1", 20, 8, Some(5)));
        events.extend(reading("r2", 30, 9, Some(6)));
        let report = check(&events);
        assert_eq!(report.fence_violations.len(), 3, "{report}");
    }

    #[test]
    fn read_write_tokens_out_of_order_are_violations() {
        // A write not above an earlier read's token, a read not above an
        // earlier write's, and a write token given twice.
        let mut events = rw(Role::Read, "r", 0, 5, Outcome::Accepted);
        events.extend(rw(Role::Write, "w", 10, 5, Outcome::Rejected(5)));
        events.extend(rw(Role::Read, "r", 20, 5, Outcome::Rejected(5)));
        events.extend(rw(Role::Write, "v", 30, 5, Outcome::Rejected(5)));
        let report = check(&events);
        assert_eq!(report.token_violations.len(), 4, "{report}");
        assert_eq!(report.fence_violations.len(), 0, "{report}");
    }

    #[test]
    fn permits_up_to_their_number_pass() {
        let mut events = permit("a", 0, 100, 1000, Outcome::Accepted);
        events.extend(permit("b", 1, 100, 1001, Outcome::Accepted));
        events.extend(permit("c", 2, 100, 1002, Outcome::Accepted));
        // The same slot, after its last holder released.
        events.extend(permit("d", 101, 10, 2000, Outcome::Accepted));
        let report = check(&events);
        assert_eq!(report.violations(), 0, "{report}");
        assert_eq!(report.max_permit_holders, 3);
        assert_eq!(report.highest_accepted[&Target::Slot(0)], 2000);
    }

    #[test]
    fn more_holders_than_permits_is_a_violation() {
        let mut events = permit("a", 0, 100, 1000, Outcome::Accepted);
        events.extend(permit("b", 1, 100, 1001, Outcome::Accepted));
        events.extend(permit("c", 2, 100, 1002, Outcome::Accepted));
        events.extend(permit("d", 50, 10, 2000, Outcome::Accepted));
        let report = check(&events);
        assert_eq!(report.permit_violations.len(), 1, "{report}");
        assert_eq!(report.max_permit_holders, 4);
    }

    #[test]
    fn a_fenced_or_expired_permit_holder_is_not_counted() {
        // a's write was rejected: it had lost its permit.
        let mut events = permit("a", 0, 100, 1000, Outcome::Rejected(2000));
        events.extend(permit("b", 1, 100, 1001, Outcome::Accepted));
        events.extend(permit("c", 2, 100, 1002, Outcome::Accepted));
        events.extend(permit("d", 50, 10, 2000, Outcome::Accepted));
        // e's validity ran out at 40, long before its release.
        let mut e = permit("e", 20, 100, 3001, Outcome::Accepted);
        e[2].what = What::Release {
            token: 3001,
            outcome: ReleaseOutcome::NotHeld,
            held_until: 40,
        };
        events.extend(e);
        let report = check(&events);
        assert_eq!(report.permit_violations.len(), 0, "{report}");
        assert_eq!(report.permit_holders_fenced, 1);
        assert_eq!(report.max_permit_holders, 3);
    }

    #[test]
    fn slot_tokens_must_increase_and_match_the_slot() {
        let mut events = permit("a", 0, 5, 2001, Outcome::Accepted);
        // Slot 1 again, later, with a lower token.
        events.extend(permit("b", 10, 5, 1001, Outcome::Rejected(2001)));
        // Slot 2 with a token below slot 1's: fine, another slot.
        events.extend(permit("c", 20, 5, 1002, Outcome::Accepted));
        // A slot that does not match the token, and one out of range.
        events.push(evr(
            Role::Permit,
            "d",
            30,
            31,
            What::Acquired {
                token: 3001,
                slot: Some(2),
            },
        ));
        events.push(evr(
            Role::Permit,
            "e",
            40,
            41,
            What::Acquired {
                token: 3005,
                slot: Some(5),
            },
        ));
        let report = check(&events);
        assert_eq!(report.token_violations.len(), 3, "{report}");
        assert_eq!(report.fence_violations.len(), 0, "{report}");
    }

    #[test]
    fn a_slot_write_below_an_earlier_one_of_that_slot_is_a_violation() {
        // Slot 0: 2000 then 1000 both accepted; slot 1 accepts 1001 after
        // slot 0's 2000 (its own fence).
        let mut events = permit("a", 0, 5, 2000, Outcome::Accepted);
        events.extend(permit("b", 10, 5, 1001, Outcome::Accepted));
        let mut stale = permit("c", 20, 5, 1000, Outcome::Accepted);
        stale[0].start = 0;
        stale[0].end = 1;
        events.extend(stale);
        let report = check(&events);
        assert_eq!(report.fence_violations.len(), 1, "{report}");
        assert!(report.fence_violations[0].contains("Slot(0)"));
    }

    #[test]
    fn lines_round_trip() {
        let events = [
            acq("c1", 1, 2, 3),
            ev("c2", 4, 5, What::Refused { why: "busy".into() }),
            write("c3", 6, 7, Outcome::Rejected(9)),
            write("c3", 6, 7, Outcome::Failed),
            ev(
                "c4",
                8,
                9,
                What::Release {
                    token: 10,
                    outcome: ReleaseOutcome::NotHeld,
                    held_until: 11,
                },
            ),
            evr(
                Role::Permit,
                "s",
                1,
                2,
                What::Acquired {
                    token: 2001,
                    slot: Some(1),
                },
            ),
            evr(
                Role::Read,
                "r",
                1,
                2,
                What::Read {
                    token: 4,
                    outcome: Outcome::Accepted,
                    saw: Some(3),
                },
            ),
            evr(
                Role::Read,
                "r",
                1,
                2,
                What::Read {
                    token: 4,
                    outcome: Outcome::Rejected(5),
                    saw: None,
                },
            ),
        ];
        for event in events {
            assert_eq!(Event::parse(&event.to_string()), Ok(event));
        }
        assert!(Event::parse("acquired c1 lock 1 2 3").is_err());
        assert!(Event::parse("acquired c1 nobody 1 2 3 -").is_err());
        assert!(Event::parse("write c1 lock 1 2 3 rejected:x").is_err());
    }
}
