//! The requests a node runs for the backend: one per script, each bounded
//! and decoded here, and each failure noted for tracing.

use std::time::Duration;

use redis::Cmd;

use super::RedisNode;
use super::fence::Raised;
use super::replies::{AcquireReply, decode_extend, decode_inspect, decode_raise, decode_release};
use super::scripts::{self, Keys};
use crate::backend::LockRecord;
use crate::error::NodeFault;

impl RedisNode {
    /// Runs a prepared acquire ([`scripts::acquire`]).
    pub(crate) async fn acquire(
        &self,
        cmd: &Cmd,
        timeout: Option<Duration>,
    ) -> Result<AcquireReply, NodeFault> {
        let reply = async { AcquireReply::parse(&self.query::<Vec<i64>>(cmd, timeout).await?) };
        self.noted("acquire", reply.await)
    }

    /// Runs a prepared extend ([`scripts::extend`]); whether the hold was
    /// present (and is now lengthened).
    pub(crate) async fn extend(
        &self,
        cmd: &Cmd,
        timeout: Option<Duration>,
    ) -> Result<bool, NodeFault> {
        let reply = async { decode_extend(self.query(cmd, timeout).await?) };
        self.noted("extend", reply.await)
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
    /// whether the owner's lock is on this node.
    pub(crate) async fn raise_fence(
        &self,
        keys: &Keys,
        owner: &str,
        token: u64,
        timeout: Duration,
    ) -> Result<Raised, NodeFault> {
        let mut call = scripts::RAISE_FENCE.prepare_invoke();
        call.key(&keys.lock).key(&keys.fence).arg(owner).arg(token);
        let reply = async { decode_raise(&self.script::<Vec<i64>>(&call, Some(timeout)).await?) };
        self.noted("raise_fence", reply.await)
    }

    /// The lock stored here under `keys`, if any.
    pub(crate) async fn inspect(
        &self,
        keys: &Keys,
        timeout: Duration,
    ) -> Result<Option<LockRecord>, NodeFault> {
        let mut call = scripts::INSPECT.prepare_invoke();
        call.key(&keys.lock);
        let reply = async { decode_inspect(self.script(&call, Some(timeout)).await?) };
        self.noted("inspect", reply.await)
    }

    /// Removes the lock under `keys` whatever its holds; whether one was here.
    pub(crate) async fn force_release(
        &self,
        keys: &Keys,
        timeout: Duration,
    ) -> Result<bool, NodeFault> {
        let mut call = scripts::FORCE_RELEASE.prepare_invoke();
        call.key(&keys.lock);
        let reply = self.script::<i64>(&call, Some(timeout)).await;
        self.noted("force_release", reply).map(|reply| reply == 1)
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
