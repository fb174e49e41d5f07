//! The requests a node runs for the backend: one per script, each bounded
//! and decoded here, and each failure noted for tracing.

use std::time::Duration;

use redis::{Cmd, Pipeline};

use super::RedisNode;
use super::clock::ClockRule;
use super::fence::Raised;
use super::replies::{
    AcquireReply, decode_batched_extend, decode_extend, decode_fence_read, decode_inspect,
    decode_raise, decode_release,
};
use super::scripts::{self, Keys};
use crate::backend::LockRecord;
use crate::error::NodeFault;
use crate::options::MAX_PERMITS;

/// A prepared script call, built once per round and sent to every node:
/// the script alone, or, when the nodes' clocks are judged, the script and
/// `TIME` after it in one pipeline (see `clock`).
#[derive(Debug)]
pub(crate) enum Call {
    Plain(Cmd),
    Timed(Pipeline, ClockRule),
}

impl Call {
    /// `cmd`, timed and judged by `rule` if there is one.
    pub(crate) fn new(cmd: Cmd, rule: Option<ClockRule>) -> Self {
        match rule {
            None => Self::Plain(cmd),
            Some(rule) => {
                let mut pipe = redis::pipe();
                pipe.add_command(cmd).cmd("TIME");
                Self::Timed(pipe, rule)
            }
        }
    }
}

impl RedisNode {
    /// Runs a prepared acquire ([`scripts::acquire`]), judging the node's
    /// clock if the call is timed (see [`RedisNode::timed_query`]).
    pub(crate) async fn acquire(
        &self,
        call: &Call,
        timeout: Option<Duration>,
    ) -> Result<AcquireReply, NodeFault> {
        let reply =
            async { AcquireReply::parse(&self.timed_query::<Vec<i64>>(call, timeout).await?) };
        self.noted("acquire", reply.await)
    }

    /// Runs a prepared extend ([`scripts::extend`]); whether the hold was
    /// present (and is now lengthened). A timed call judges the node's
    /// clock too (see [`RedisNode::timed_query`]).
    pub(crate) async fn extend(
        &self,
        call: &Call,
        timeout: Option<Duration>,
    ) -> Result<bool, NodeFault> {
        let reply = async { decode_extend(self.timed_query(call, timeout).await?) };
        self.noted("extend", reply.await)
    }

    /// Runs a prepared batched extend ([`scripts::extend_batch`]) of
    /// `holds` holds; for each, whether it was present (and is now
    /// lengthened), or the error its own extend met on this node: one
    /// hold's error is that hold's alone (extend_batch.lua). A timed call
    /// judges the node's clock too (see [`RedisNode::timed_query`]).
    pub(crate) async fn extend_batch(
        &self,
        call: &Call,
        holds: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<Result<bool, NodeFault>>, NodeFault> {
        let reply = async {
            let replies: Vec<redis::Value> = self.timed_query(call, timeout).await?;
            if replies.len() != holds {
                return Err(NodeFault::Protocol(format!(
                    "extend_batch returned {} replies for {holds} holds",
                    replies.len()
                )));
            }
            Ok(replies.into_iter().map(decode_batched_extend).collect())
        };
        let replies: Vec<Result<bool, NodeFault>> = self.noted("extend", reply.await)?;
        for fault in replies.iter().filter_map(|r| r.as_ref().err()) {
            crate::trace::node_failed(self.name(), "extend", fault);
        }
        Ok(replies)
    }

    /// Runs a prepared release ([`scripts::release`]); whether the hold was
    /// present (and is now gone).
    pub(crate) async fn release(
        &self,
        cmd: &Cmd,
        timeout: Option<Duration>,
    ) -> Result<bool, NodeFault> {
        let reply = async { decode_release(self.query(cmd, timeout).await?) };
        self.noted("release", reply.await)
    }

    /// Raises the fence counter to at least `token`; returns the counter and
    /// whether the first hold `id` of `owner` is on this node.
    pub(crate) async fn raise_fence(
        &self,
        keys: &Keys,
        owner: &str,
        id: &str,
        token: u64,
        timeout: Duration,
    ) -> Result<Raised, NodeFault> {
        let mut call = scripts::RAISE_FENCE.prepare_invoke();
        call.key(&keys.lock)
            .key(&keys.fence)
            .key(keys.node_marker())
            .arg(owner)
            .arg(token)
            .arg(id);
        let reply = async { decode_raise(&self.script::<Vec<i64>>(&call, Some(timeout)).await?) };
        self.noted("raise_fence", reply.await)
    }

    /// The fencing counter of `keys` for a repair: `None` where this node
    /// does not trust it (docs/algorithm.md, section 15).
    pub(crate) async fn read_fence(
        &self,
        keys: &Keys,
        timeout: Duration,
    ) -> Result<Option<u64>, NodeFault> {
        let mut call = scripts::FENCE_READ.prepare_invoke();
        call.key(keys.node_marker()).key(&keys.fence);
        let reply =
            async { decode_fence_read(&self.script::<Vec<i64>>(&call, Some(timeout)).await?) };
        self.noted("fence_read", reply.await)
    }

    /// Writes `counter` into this node's fencing counter of `keys` if the
    /// node is still the incarnation `incarnation`; whether it did.
    pub(crate) async fn repair_fence(
        &self,
        keys: &Keys,
        incarnation: u64,
        counter: u64,
        timeout: Duration,
    ) -> Result<bool, NodeFault> {
        let mut call = scripts::FENCE_REPAIR.prepare_invoke();
        call.key(keys.node_marker())
            .key(&keys.fence)
            .arg(incarnation)
            .arg(counter);
        let reply = async { decode_extend(self.script::<i64>(&call, Some(timeout)).await?) };
        self.noted("fence_repair", reply.await)
    }

    /// Ends the quarantine of this node if it is still the incarnation
    /// `incarnation` (a new cluster's node); whether it did.
    pub(crate) async fn trust_marker(
        &self,
        keys: &Keys,
        incarnation: u64,
        timeout: Duration,
    ) -> Result<bool, NodeFault> {
        let mut call = scripts::FENCE_TRUST.prepare_invoke();
        call.key(keys.node_marker()).arg(incarnation);
        let reply = async { decode_extend(self.script::<i64>(&call, Some(timeout)).await?) };
        self.noted("fence_trust", reply.await)
    }

    /// The holders of the lock stored here under `keys`, if any. A
    /// semaphore takes a second request, with its slots.
    pub(crate) async fn inspect(
        &self,
        keys: &Keys,
        timeout: Duration,
    ) -> Result<Vec<LockRecord>, NodeFault> {
        let reply = async {
            let mut declared = vec![keys.lock.clone()];
            loop {
                let mut call = scripts::INSPECT.prepare_invoke();
                for key in &declared {
                    call.key(key);
                }
                let reply: Vec<redis::Value> = self.script(&call, Some(timeout)).await?;
                match semaphore_of(&reply, declared.len())? {
                    Some(permits) => declared = keys.with_slots(permits),
                    None => return decode_inspect(reply),
                }
            }
        };
        self.noted("inspect", reply.await)
    }

    /// Removes the lock under `keys` whatever its holds (a semaphore with
    /// its slots, in a second request); whether one was here.
    pub(crate) async fn force_release(
        &self,
        keys: &Keys,
        timeout: Duration,
    ) -> Result<bool, NodeFault> {
        let reply = async {
            let mut declared = vec![keys.lock.clone()];
            loop {
                let mut call = scripts::FORCE_RELEASE.prepare_invoke();
                for key in &declared {
                    call.key(key);
                }
                let reply: i64 = self.script(&call, Some(timeout)).await?;
                match reply {
                    0 | 1 => return Ok(reply == 1),
                    permits if declared.len() == 1 => {
                        declared = keys.with_slots(permits_in(-permits)?);
                    }
                    other => {
                        return Err(NodeFault::Protocol(format!(
                            "force_release returned {other}"
                        )));
                    }
                }
            }
        };
        self.noted("force_release", reply.await)
    }

    /// One SCAN step from `cursor` over hashes whose name matches
    /// `pattern`: the next cursor (0 at the end) and the names found, raw
    /// (a foreign key need not be UTF-8).
    pub(crate) async fn scan(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(u64, Vec<Vec<u8>>), NodeFault> {
        let mut cmd = redis::cmd("SCAN");
        // TYPE hash: fence counters (strings) are filtered out on the server.
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count)
            .arg("TYPE")
            .arg("hash");
        // SCAN is read-only, so the retry on a broken connection is safe.
        let cmd = &cmd;
        let reply = self.query(cmd, Some(timeout)).await;
        self.noted("scan", reply)
    }

    /// `reply` to a `request` sent here, told to a `tracing` subscriber
    /// when it failed. (A request whose fan-out's own timeout ran out never
    /// gets here: the fan-out tells of it.)
    fn noted<T>(&self, request: &'static str, reply: Result<T, NodeFault>) -> Result<T, NodeFault> {
        if let Err(fault) = &reply {
            crate::trace::node_failed(self.name(), request, fault);
        }
        reply
    }
}

/// The count of permits an admin script asks to be called with, when it
/// found a semaphore: in range, and asked for only once.
fn semaphore_of(reply: &[redis::Value], declared: usize) -> Result<Option<u32>, NodeFault> {
    match reply {
        [redis::Value::Int(permits)] if declared == 1 => permits_in(*permits).map(Some),
        [redis::Value::Int(permits)] => Err(NodeFault::Protocol(format!(
            "inspect asked again for {permits} slots"
        ))),
        _ => Ok(None),
    }
}

fn permits_in(permits: i64) -> Result<u32, NodeFault> {
    u32::try_from(permits)
        .ok()
        .filter(|p| (1..=MAX_PERMITS).contains(p))
        .ok_or_else(|| NodeFault::Protocol(format!("a semaphore of {permits} permits")))
}
