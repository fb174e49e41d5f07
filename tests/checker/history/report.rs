//! The checks over a whole history, and what they found.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use super::holds::{most_at_once, overlaps, spans};
use super::{Event, Nanos, Outcome, ReleaseOutcome, Role, Target, What};

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
pub fn precedence_breaks<'a>(
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
