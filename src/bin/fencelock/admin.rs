//! `fencelock inspect`, `list` and `release --force`: the operator's view.

use std::fmt::Write as _;

use fencelock::{Backend, LockInfo, LockOptions, LockRecord, Locker, Mode, NodeFailure};
use serde::Serialize;

use crate::connect::{self, BackendArgs, Job};
use crate::exit;
use crate::output::Output;

/// `fencelock inspect KEY`: exit 0 when a quorum of nodes answered, 69
/// (after printing what was seen) when too few did to tell.
pub async fn inspect(backend: &BackendArgs, key: &str, output: &Output) -> u8 {
    let job = Inspect {
        key: key.to_owned(),
        output: *output,
    };
    connect::run(backend, LockOptions::default(), job, output).await
}

/// `fencelock list [PREFIX]`: exit 0 with what the answering nodes store
/// (failed nodes are warned about), 69 when the listing failed.
pub async fn list(backend: &BackendArgs, prefix: &str, output: &Output) -> u8 {
    let job = List {
        prefix: prefix.to_owned(),
        output: *output,
    };
    connect::run(backend, LockOptions::default(), job, output).await
}

/// `fencelock release --force KEY`: exit 0 when every node answered, 69
/// when some did not (the lock may stay there until its ttl).
pub async fn force_release(backend: &BackendArgs, key: &str, output: &Output) -> u8 {
    let job = ForceRelease {
        key: key.to_owned(),
        output: *output,
    };
    connect::run(backend, LockOptions::default(), job, output).await
}

struct Inspect {
    key: String,
    output: Output,
}

/// `inspect`'s JSON.
#[derive(Debug, Serialize)]
struct InspectView {
    key: String,
    /// `true`: a quorum stores a lock; `false`: no quorum can hold one;
    /// `null`: too few nodes answered to tell.
    locked: Option<bool>,
    quorum: usize,
    holder: Option<HolderView>,
    nodes: Vec<NodeState>,
}

#[derive(Debug, Serialize)]
struct HolderView {
    owner: String,
    token: u64,
}

#[derive(Debug, Serialize)]
struct NodeState {
    node: String,
    /// `"locked"`, `"free"` or `"error"`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    holds: Option<u32>,
    /// Remaining time to live in milliseconds (absent: no expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What the first holder holds: `lock`, `write`, `read` or `permit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// Every holder, for a read-write lock or a semaphore (readers and
    /// permits are many); absent for a plain lock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    holders: Vec<Entry>,
}

/// One holder of a read-write lock or a semaphore on one node.
#[derive(Debug, Serialize)]
struct Entry {
    kind: &'static str,
    owner: String,
    token: u64,
    holds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<u32>,
}

impl Entry {
    fn new(record: &LockRecord) -> Self {
        Self {
            kind: record.mode.name(),
            owner: record.owner.clone(),
            token: record.token.get(),
            holds: record.holds,
            ttl_ms: record.ttl.map(|ttl| ttl.as_millis()),
            slot: record.slot,
        }
    }

    fn human(&self) -> String {
        let ttl = ttl_text(self.ttl_ms);
        let slot = self.slot.map(|s| format!(" slot {s}")).unwrap_or_default();
        format!(
            "{}{slot}  token {}  holds {}  {ttl}  owner {}",
            self.kind, self.token, self.holds, self.owner
        )
    }
}

fn ttl_text(ttl_ms: Option<u128>) -> String {
    ttl_ms.map_or_else(
        || "no expiry".to_owned(),
        |ms| format!("ttl {:.1}s", ms as f64 / 1000.0),
    )
}

impl InspectView {
    fn new(info: LockInfo) -> Self {
        let (locked, free) = (info.locked_nodes(), info.free_nodes());
        // The same rule as `Locker::is_locked`.
        let locked = if locked >= info.quorum {
            Some(true)
        } else if free > info.nodes.len() - info.quorum {
            Some(false)
        } else {
            None
        };
        let nodes = info
            .nodes
            .into_iter()
            .map(|view| {
                let mut state = NodeState {
                    node: view.node,
                    state: "free",
                    owner: None,
                    token: None,
                    holds: None,
                    ttl_ms: None,
                    error: None,
                    kind: None,
                    holders: Vec::new(),
                };
                if view.holders.iter().any(|r| r.mode != Mode::Exclusive) {
                    state.holders = view.holders.iter().map(Entry::new).collect();
                }
                match view.lock {
                    Ok(None) => {}
                    Ok(Some(record)) => {
                        state.state = "locked";
                        state.owner = Some(record.owner);
                        state.token = Some(record.token.get());
                        state.holds = Some(record.holds);
                        state.ttl_ms = record.ttl.map(|ttl| ttl.as_millis());
                        state.kind = Some(record.mode.name());
                    }
                    Err(fault) => {
                        state.state = "error";
                        state.error = Some(fault.to_string());
                    }
                }
                state
            })
            .collect();
        Self {
            key: info.key,
            locked,
            quorum: info.quorum,
            holder: info.agreed.map(|h| HolderView {
                owner: h.owner,
                token: h.token.get(),
            }),
            nodes,
        }
    }

    fn human(&self) -> String {
        let locked = self.nodes.iter().filter(|n| n.state == "locked").count();
        let mut text = match (&self.holder, self.locked) {
            (Some(holder), _) => format!(
                "{:?}: held with token {} by {} ({locked} of {} nodes, quorum {})",
                self.key,
                holder.token,
                holder.owner,
                self.nodes.len(),
                self.quorum
            ),
            (None, Some(true)) => format!(
                "{:?}: locked on {locked} of {} nodes, but no quorum agrees on the holder",
                self.key,
                self.nodes.len()
            ),
            (None, Some(false)) => format!(
                "{:?}: free ({locked} of {} nodes store a lock, quorum {})",
                self.key,
                self.nodes.len(),
                self.quorum
            ),
            (None, None) => format!(
                "{:?}: unknown: too few nodes answered (quorum {})",
                self.key, self.quorum
            ),
        };
        for node in &self.nodes {
            let _ = write!(text, "\n  {:<22} ", node.node);
            match node.state {
                "locked" if !node.holders.is_empty() => {
                    let _ = write!(text, "{} holder(s)", node.holders.len());
                    for entry in &node.holders {
                        let _ = write!(text, "\n    {}", entry.human());
                    }
                }
                "locked" => {
                    let ttl = ttl_text(node.ttl_ms);
                    let _ = write!(
                        text,
                        "locked  token {}  holds {}  {ttl}  owner {}",
                        node.token.unwrap_or_default(),
                        node.holds.unwrap_or_default(),
                        node.owner.as_deref().unwrap_or_default()
                    );
                }
                "free" => text.push_str("free"),
                _ => {
                    let _ = write!(text, "error: {}", node.error.as_deref().unwrap_or_default());
                }
            }
        }
        text
    }
}

impl Job for Inspect {
    async fn run<B: Backend>(self, locker: Locker<B>) -> u8 {
        match locker.inspect(&self.key).await {
            Ok(info) => {
                let view = InspectView::new(info);
                self.output.result(&view, || view.human());
                if view.locked.is_none() {
                    self.output.error(
                        "unavailable",
                        "too few nodes answered to tell who holds the lock",
                    );
                    exit::UNAVAILABLE
                } else {
                    0
                }
            }
            Err(e) => fail(&self.output, &e),
        }
    }
}

struct List {
    prefix: String,
    output: Output,
}

/// `list`'s JSON.
#[derive(Debug, Serialize)]
struct ListView {
    prefix: String,
    resources: Vec<String>,
    /// Nodes that failed during the listing: a lock held only there is
    /// missing from `resources`.
    failures: Vec<FailureView>,
}

#[derive(Debug, Serialize)]
struct FailureView {
    node: String,
    error: String,
}

impl From<&NodeFailure> for FailureView {
    fn from(failure: &NodeFailure) -> Self {
        Self {
            node: failure.node.clone(),
            error: failure.fault.to_string(),
        }
    }
}

impl Job for List {
    async fn run<B: Backend>(self, locker: Locker<B>) -> u8 {
        // Page by page rather than `list_all`, to keep the failed nodes.
        let mut resources = std::collections::BTreeSet::new();
        let mut failures = Vec::new();
        let mut cursor = None;
        loop {
            match locker.list(&self.prefix, cursor.as_ref()).await {
                Ok(page) => {
                    resources.extend(page.resources);
                    failures.extend(page.failures.iter().map(FailureView::from));
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                Err(e) => return fail(&self.output, &e),
            }
        }
        let view = ListView {
            prefix: self.prefix,
            resources: resources.into_iter().collect(),
            failures,
        };
        if !self.output.is_json() {
            for failure in &view.failures {
                self.output.warning(&format!(
                    "node {} failed ({}); locks held only there are not listed",
                    failure.node, failure.error
                ));
            }
        }
        // Human: one name per line, for `while read`; nothing when empty.
        if self.output.is_json() || !view.resources.is_empty() {
            self.output.result(&view, || view.resources.join("\n"));
        }
        0
    }
}

struct ForceRelease {
    key: String,
    output: Output,
}

/// `release --force`'s JSON.
#[derive(Debug, Serialize)]
struct ReleasedView {
    key: String,
    /// On how many nodes a lock was removed.
    removed: usize,
    /// Nodes that did not answer: the lock may stay there until its ttl.
    failures: Vec<FailureView>,
}

impl Job for ForceRelease {
    async fn run<B: Backend>(self, locker: Locker<B>) -> u8 {
        match locker.force_release(&self.key).await {
            Ok(released) => {
                let view = ReleasedView {
                    key: self.key,
                    removed: released.removed,
                    failures: released.failures.iter().map(FailureView::from).collect(),
                };
                self.output.result(&view, || {
                    if view.removed == 0 {
                        format!("{:?}: no lock found on the nodes that answered", view.key)
                    } else {
                        format!("{:?}: lock removed from {} node(s)", view.key, view.removed)
                    }
                });
                if view.failures.is_empty() {
                    0
                } else {
                    let nodes: Vec<String> = view
                        .failures
                        .iter()
                        .map(|f| format!("{} ({})", f.node, f.error))
                        .collect();
                    self.output.error(
                        "unavailable",
                        &format!(
                            "some nodes did not answer; the lock may stay there until its ttl \
                             runs out: {}",
                            nodes.join(", ")
                        ),
                    );
                    exit::UNAVAILABLE
                }
            }
            Err(e) => fail(&self.output, &e),
        }
    }
}

/// Reports a library error and returns its exit code.
fn fail(output: &Output, error: &fencelock::Error) -> u8 {
    let (code, kind) = exit::for_error(error);
    output.error(kind, &error.to_string());
    code
}
