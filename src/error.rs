//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

/// Everything that can go wrong when taking, keeping or giving back a lock.
///
/// Variants name what happened, so callers can match on them: contention
/// ([`Error::NotObtained`]) is not an outage ([`Error::QuorumUnavailable`]),
/// and a lock that was no longer ours at release ([`Error::NotHeld`]) is never
/// reported as success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock is held by another owner (a quorum of nodes said so).
    #[error("lock {key:?} is held by another owner")]
    NotObtained {
        /// The resource name.
        key: String,
        /// How long the holder's lock has left on the servers that refused,
        /// as they reported it, when they did: unless it is renewed or
        /// released first, the lock runs out then. Waiters use it to try
        /// again right at an expiry, which no server announces.
        expires_in: Option<Duration>,
    },

    /// Waiting for the lock took longer than allowed.
    #[error("gave up waiting for lock {key:?} after {waited:?}")]
    Timeout {
        /// The resource name.
        key: String,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The lock was no longer ours: it expired or was taken over before this
    /// call. Work done under it may have overlapped with another holder.
    #[error("lock {key:?} is no longer held by this owner (expired or taken over)")]
    NotHeld {
        /// The resource name.
        key: String,
    },

    /// The lock was lost while held (it could not be kept alive).
    #[error("lock {key:?} was lost while held")]
    Lost {
        /// The resource name.
        key: String,
    },

    /// Too few nodes answered to decide: `reached` of the `needed` quorum.
    #[error(
        "quorum unavailable: {reached} of {needed} needed nodes answered; {}",
        NodeFailures(failures)
    )]
    QuorumUnavailable {
        /// Nodes that answered in time.
        reached: usize,
        /// The quorum that was needed.
        needed: usize,
        /// What went wrong on each node that did not answer.
        failures: Vec<NodeFailure>,
    },

    /// The nodes granted the lock, but so slowly that no validity was left
    /// (elapsed time plus clock drift used up the whole TTL). Nothing is held.
    #[error("lock {key:?} was granted too late: {elapsed:?} elapsed of a {ttl:?} ttl")]
    ValidityExhausted {
        /// The resource name.
        key: String,
        /// Time spent acquiring.
        elapsed: Duration,
        /// The requested time to live.
        ttl: Duration,
    },

    /// The same owner already holds the lock as deeply as allowed.
    #[error("lock {key:?} is already held {limit} deep by this owner (the reentrancy limit)")]
    ReentrancyLimit {
        /// The resource name.
        key: String,
        /// The configured maximum depth.
        limit: u32,
    },

    /// The resource name cannot be used as a lock key.
    #[error("invalid lock key: {0}")]
    InvalidKey(String),

    /// The options or node configuration are not usable.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A backend failure that fits no variant above, with its source chain.
    #[error("backend error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl Error {
    /// Whether waiting and trying again may succeed (contention, an outage, a
    /// slow round). Bad input and reentrancy limits are final.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotObtained { .. }
                | Error::QuorumUnavailable { .. }
                | Error::ValidityExhausted { .. }
        )
    }
}

/// Why one node did not answer a request usefully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node's address (never its password).
    pub node: String,
    /// What went wrong.
    pub fault: NodeFault,
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.node, self.fault)
    }
}

/// The kind of failure on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeFault {
    /// No answer within the per-node timeout. The node may or may not have
    /// applied the request.
    Timeout(Duration),
    /// No connection could be used (refused, reset, closed, auth failed).
    Connection(String),
    /// The node answered with an error reply.
    Server(String),
    /// The node answered something this library does not understand.
    Protocol(String),
}

impl fmt::Display for NodeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeFault::Timeout(d) => write!(f, "no answer within {d:?}"),
            NodeFault::Connection(m) => write!(f, "connection failed: {m}"),
            NodeFault::Server(m) => write!(f, "error reply: {m}"),
            NodeFault::Protocol(m) => write!(f, "unexpected reply: {m}"),
        }
    }
}

struct NodeFailures<'a>(&'a [NodeFailure]);

impl fmt::Display for NodeFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no node failed");
        }
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
