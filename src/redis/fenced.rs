//! A resource in Redis that only accepts writes fenced by a token at least
//! as high as any it accepted before.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::RedisNode;
use crate::error::{Error, NodeFault, Result};
use crate::fencing::FencingToken;
use crate::options::{MAX_PREFIX_LEN, validate_key};

const WRITE_SOURCE: &str = include_str!("lua/fenced_write.lua");
static WRITE: LazyLock<Script> = LazyLock::new(|| Script::new(WRITE_SOURCE));

const READ_SOURCE: &str = include_str!("lua/fenced_read.lua");
static READ: LazyLock<Script> = LazyLock::new(|| Script::new(READ_SOURCE));

const CHECK_READ_SOURCE: &str = include_str!("lua/fenced_check_read.lua");
static CHECK_READ: LazyLock<Script> = LazyLock::new(|| Script::new(CHECK_READ_SOURCE));

/// Redis-stored state guarded by fencing tokens: a write is accepted only
/// when its token is at least the highest token the resource has accepted,
/// so a holder whose lock ran out (a paused process, a long GC) cannot
/// overwrite what a later holder wrote.
///
/// Each resource is one Redis hash, `<prefix>{<resource>}`, with the fields
/// `fence` (the highest accepted token) and `value`; one Lua script compares
/// and writes atomically. An equal token is accepted: it is the same holder
/// writing again (nested holds share their token). The fence is never
/// lowered or removed by this type; deleting the hash by hand lets any token
/// write again.
///
/// The store is one Redis server: it need not be one of the lock's nodes.
/// Its failures are reported like those of a one-node Redlock:
/// [`Error::QuorumUnavailable`] with `needed: 1` and the node's
/// [`NodeFault`]. A write that timed out may or may not have been applied;
/// writing again with the same token and value is safe.
///
/// ```no_run
/// # async fn demo() -> fencelock::Result<()> {
/// use fencelock::{FencedStore, FencedWrite, Locker};
///
/// let locker = Locker::redis(["redis://127.0.0.1:6379"])?;
/// let store = FencedStore::from_url("redis://127.0.0.1:6379")?;
///
/// let guard = locker.lock("nightly-billing").await?;
/// match store.write("billing:last-run", guard.token(), "2024-06-01").await? {
///     FencedWrite::Accepted => println!("written under token {}", guard.token()),
///     FencedWrite::Rejected { highest_seen } => {
///         // A later holder (token `highest_seen`) has written: this
///         // holder's lock ran out. Stop, do not retry.
///         println!("fenced off by token {highest_seen}");
///     }
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FencedStore {
    node: RedisNode,
    prefix: String,
    timeout: Duration,
}

/// The outcome of [`FencedStore::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a rejected write means the lock was lost: the caller must stop"]
// Deliberately exhaustive: a new outcome of a fenced write must make every
// caller decide what it means, not fall into a wildcard arm.
pub enum FencedWrite {
    /// The value was written; the resource's fence is now the token.
    Accepted,
    /// Nothing was written: the resource has accepted a higher token.
    Rejected {
        /// The highest token the resource has accepted.
        highest_seen: FencingToken,
    },
}

impl FencedWrite {
    /// Whether the write was accepted.
    pub fn is_accepted(self) -> bool {
        self == FencedWrite::Accepted
    }
}

/// The outcome of [`FencedStore::read_fenced`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a refused read means the read lock was lost: the caller must stop"]
// Deliberately exhaustive, as FencedWrite.
pub enum FencedRead {
    /// The read is current: what the resource stores (`None` when nothing
    /// was written), and no holder with a lower token can write any more.
    Accepted(Option<Fenced>),
    /// Refused: a writer handed out after this reader has written, so the
    /// reader's hold is gone and what it would read is not what it locked.
    Rejected {
        /// The highest write token the resource has accepted.
        highest_write: FencingToken,
    },
}

/// What a fenced resource stores, from [`FencedStore::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fenced {
    /// The highest token the resource has accepted (the last writer's).
    pub fence: FencingToken,
    /// The value last written.
    pub value: Vec<u8>,
}

impl FencedStore {
    /// The default key prefix: resources live at `fencelock:fenced:{<resource>}`.
    pub const DEFAULT_PREFIX: &'static str = "fencelock:fenced:";
    /// The default bound on one call: 1 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// A store on `node`, with the default prefix and timeout.
    pub fn new(node: RedisNode) -> Self {
        Self {
            node,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// A store on the server at `url` (see [`RedisNode::from_url`]); nothing
    /// connects until first use.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a bad URL, as [`RedisNode::from_url`].
    pub fn from_url(url: &str) -> Result<Self> {
        RedisNode::from_url(url).map(Self::new)
    }

    /// The same store with resources under `prefix`: at most
    /// [`MAX_PREFIX_LEN`] bytes, else [`Error::InvalidOptions`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a prefix over [`MAX_PREFIX_LEN`] bytes.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::InvalidOptions(format!(
                "the fenced store prefix is {} bytes; at most {MAX_PREFIX_LEN} are allowed",
                prefix.len()
            )));
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// The same store with every call bounded by `timeout` (more than zero,
    /// else [`Error::InvalidOptions`]). Default: 1 s.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a zero timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self> {
        if timeout.is_zero() {
            return Err(Error::InvalidOptions(
                "the fenced store timeout must be more than zero".into(),
            ));
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// The server the store writes to.
    pub fn node(&self) -> &RedisNode {
        &self.node
    }

    /// The Redis key of `resource`'s hash.
    pub fn redis_key(&self, resource: &str) -> String {
        format!("{}{{{resource}}}", self.prefix)
    }

    /// Writes `value` to `resource` if `token` is at least the highest token
    /// it has accepted (or it has accepted none), and makes `token` its
    /// fence. Otherwise writes nothing and reports the highest token seen.
    ///
    /// An empty or oversized resource name is [`Error::InvalidKey`], before
    /// any I/O. A key holding data of another kind is a
    /// [`NodeFault::Server`] naming it.
    ///
    /// # Cancel safety
    ///
    /// One script call, atomic on the server: a dropped call either ran whole
    /// or not at all, but the caller cannot tell which. Read the resource to
    /// find out.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] as above; [`Error::Backend`] with the node's
    /// [`NodeFault`] when the server fails, times out or answers something else
    /// (the write may then have happened or not).
    pub async fn write(
        &self,
        resource: &str,
        token: FencingToken,
        value: impl AsRef<[u8]>,
    ) -> Result<FencedWrite> {
        validate_key(resource)?;
        let key = self.redis_key(resource);
        let mut call = WRITE.prepare_invoke();
        call.key(&key).arg(token.get()).arg(value.as_ref());
        let reply: Vec<String> = self.run(&call).await?;
        let bad = || {
            self.fault(NodeFault::Protocol(format!(
                "fenced write returned {reply:?}"
            )))
        };
        let [flag, fence] = &reply[..] else {
            return Err(bad());
        };
        let fence = fence.parse::<u64>().map_err(|_| bad())?;
        match flag.as_str() {
            "1" if fence == token.get() => Ok(FencedWrite::Accepted),
            "0" if fence > token.get() => Ok(FencedWrite::Rejected {
                highest_seen: FencingToken::new(fence),
            }),
            _ => Err(bad()),
        }
    }

    /// What `resource` stores: the last accepted value and its token, or
    /// `None` when nothing was written.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a bad resource name; [`Error::Backend`] with the
    /// node's [`NodeFault`] when the server fails or times out.
    pub async fn read(&self, resource: &str) -> Result<Option<Fenced>> {
        validate_key(resource)?;
        let key = self.redis_key(resource);
        let mut call = READ.prepare_invoke();
        call.key(&key);
        let mut reply: Vec<Vec<u8>> = self.run(&call).await?;
        match reply.len() {
            0 => Ok(None),
            2 => {
                let value = reply.pop().unwrap_or_default();
                let fence = std::str::from_utf8(&reply[0])
                    .ok()
                    .and_then(|f| f.parse::<u64>().ok())
                    .ok_or_else(|| {
                        self.fault(NodeFault::Protocol(format!(
                            "fenced read returned the fence {:?}",
                            String::from_utf8_lossy(&reply[0])
                        )))
                    })?;
                Ok(Some(Fenced {
                    fence: FencingToken::new(fence),
                    value,
                }))
            }
            n => Err(self.fault(NodeFault::Protocol(format!(
                "fenced read returned {n} items"
            )))),
        }
    }

    /// Reads `resource` under a read hold's `token` (see
    /// [`Locker::read`](crate::Locker::read)): accepted when `token` is at
    /// least the highest write token the resource has accepted, and then
    /// the resource's fence rises to `token`, so that no writer with a
    /// lower token (one handed out before this reader) can write after
    /// this read. A writer's [`write`](FencedStore::write) is accepted only
    /// at or above every accepted token, reads included. The rule and why
    /// it is enough are in docs/algorithm.md, section 12.
    ///
    /// # Cancel safety
    ///
    /// One script call, atomic on the server: a dropped call may or may
    /// not have raised the fence. Either way is safe: raising it only
    /// refuses writers older than this reader.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a bad resource name; [`Error::Backend`]
    /// with the node's [`NodeFault`] when the server fails, times out or
    /// answers something else.
    pub async fn read_fenced(&self, resource: &str, token: FencingToken) -> Result<FencedRead> {
        validate_key(resource)?;
        let key = self.redis_key(resource);
        let mut call = CHECK_READ.prepare_invoke();
        call.key(&key).arg(token.get());
        let reply: Vec<Vec<u8>> = self.run(&call).await?;
        let bad = || {
            self.fault(NodeFault::Protocol(format!(
                "fenced read returned {} items",
                reply.len()
            )))
        };
        let number = |raw: &[u8]| {
            std::str::from_utf8(raw)
                .ok()
                .and_then(|f| f.parse::<u64>().ok())
                .map(FencingToken::new)
        };
        match &reply[..] {
            [flag] if flag == b"1" => Ok(FencedRead::Accepted(None)),
            [flag, fence, value] if flag == b"1" => {
                let fence = number(fence).filter(|f| *f <= token).ok_or_else(bad)?;
                Ok(FencedRead::Accepted(Some(Fenced {
                    fence,
                    value: value.clone(),
                })))
            }
            [flag, fence] if flag == b"0" => {
                let highest_write = number(fence).filter(|f| *f > token).ok_or_else(bad)?;
                Ok(FencedRead::Rejected { highest_write })
            }
            _ => Err(bad()),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, call: &redis::ScriptInvocation<'_>) -> Result<T> {
        self.node
            .script(call, Some(self.timeout))
            .await
            .map_err(|fault| self.fault(fault))
    }

    fn fault(&self, fault: NodeFault) -> Error {
        Error::QuorumUnavailable {
            confirmed: 0,
            refused: 0,
            needed: 1,
            failures: vec![self.node.failure(fault)],
        }
    }
}
