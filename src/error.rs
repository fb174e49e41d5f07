//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

use crate::fencing::FencingToken;

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

    /// No quorum decided: fewer than `needed` nodes confirmed, and too few
    /// answered against for a certain no. `confirmed + refused +
    /// failures.len()` is at most the number of nodes (a node whose answer
    /// was still on its way when the round was decided is in none).
    ///
    /// Usually an outage (nodes down, paused or slow), which waiting can
    /// outlast: [`is_retryable`](Error::is_retryable) is then `true`, and
    /// [`Locker::lock`](crate::Locker::lock) tries again. But when so many
    /// nodes refused this client ([`NodeFault::Denied`]: a wrong password,
    /// a user without the permissions, a TLS certificate that does not
    /// verify) that no quorum could be had even if every other node
    /// answered, trying again cannot help until the configuration changes:
    /// the error is then final (`is_retryable` is `false`, see
    /// [`is_denied`](Error::is_denied)), `lock` returns it at once instead
    /// of retrying for ever, and its message says so.
    #[error(
        "quorum unavailable: {confirmed} of {needed} needed nodes confirmed, {refused} \
         answered no, {} failed{}{}",
        failures.len(),
        NodeFailures(failures),
        DeniedHint(*confirmed + *refused, *needed, failures)
    )]
    QuorumUnavailable {
        /// Nodes that said yes: granted the lock, or still had the hold.
        /// Always below `needed`.
        confirmed: usize,
        /// Nodes that answered no: the lock held by another owner, the hold
        /// not (or no longer) on the node, a nested hold's parent missing.
        refused: usize,
        /// The quorum that was needed.
        needed: usize,
        /// Each node that gave no usable answer, and why.
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

    /// A read hold cannot become a write hold: waiting for the write lock
    /// while holding a read lock of the same resource would wait for
    /// ourselves. Release the read hold, then take the write lock.
    #[error(
        "lock {key:?} is held for reading by this owner: a read hold cannot be upgraded to a \
         write hold (release it, then take the write lock)"
    )]
    UpgradeRefused {
        /// The resource name.
        key: String,
    },

    /// A write hold cannot be downgraded while other holds of this owner
    /// nest inside it: they were granted as part of the write hold.
    #[error(
        "lock {key:?} cannot be downgraded: {nested} nested hold(s) of this owner are still live"
    )]
    DowngradeRefused {
        /// The resource name.
        key: String,
        /// How many nested holds are still live.
        nested: usize,
    },

    /// The resource name is in use as another kind of primitive (an
    /// exclusive lock, a read-write lock or a semaphore) while this call
    /// wanted `wanted`. Each name is one kind at a time.
    #[error("{key:?} is in use as a {in_use_as}, not as a {wanted}")]
    WrongKind {
        /// The resource name.
        key: String,
        /// What the servers (or this process) hold it as: `"lock"`,
        /// `"rwlock"` or `"semaphore"`.
        in_use_as: String,
        /// What the call wanted.
        wanted: &'static str,
    },

    /// Another client uses this semaphore with a different number of
    /// permits. Mixing them would break both bounds, so it is refused.
    #[error("semaphore {key:?} is in use with {theirs} permits, not {ours}")]
    PermitsMismatch {
        /// The semaphore's name.
        key: String,
        /// The number this client asked for.
        ours: u32,
        /// The number the live permits were taken with.
        theirs: u32,
    },

    /// A semaphore's number of permits must be between 1 and
    /// [`MAX_PERMITS`](crate::MAX_PERMITS).
    #[error("a semaphore has 1 to {max} permits, not {permits}")]
    InvalidPermits {
        /// The number asked for.
        permits: u32,
        /// The largest number allowed.
        max: u32,
    },

    /// The database refused to commit a fenced transaction: it has
    /// accepted a higher token for the resource, so a newer holder of the
    /// lock wrote after this one's lock ran out. Nothing of the
    /// transaction was written. Stop: retrying under the same token is
    /// refused again.
    #[error(
        "stale fencing token {token} for {resource:?}: the database has accepted token \
         {highest} from a newer holder; nothing was committed"
    )]
    StaleToken {
        /// The fenced resource.
        resource: String,
        /// This holder's token.
        token: FencingToken,
        /// The highest token the database has accepted for the resource.
        highest: FencingToken,
    },

    /// A fenced resource counts the tokens of another lock: tokens of two
    /// locks are unrelated numbers, and comparing them would let a stale
    /// holder of either through. A resource is fenced by the lock of its
    /// first fenced write, for good.
    #[error(
        "{resource:?} is fenced by the tokens of lock {fenced_by:?}, not of {lock:?}: \
         tokens of two locks cannot be compared"
    )]
    ForeignToken {
        /// The fenced resource.
        resource: String,
        /// The lock whose token was offered.
        lock: String,
        /// The lock whose tokens the resource counts.
        fenced_by: String,
    },

    /// The database has no fence, or not all of it: install it first
    /// (`fencelock::postgres::install`, or `src/postgres/fence.sql`).
    #[error("the fence is not installed in the database: {missing}")]
    FenceNotInstalled {
        /// What is missing.
        missing: String,
    },

    /// A table or function by the fence's name exists in the database but
    /// is not fencelock's; it is left alone.
    #[error("the database's fencelock_fence is not fencelock's fence: {found}")]
    ForeignFence {
        /// What was found instead.
        found: String,
    },

    /// The database failed or refused a statement for a reason that fits
    /// no variant above (connection lost, a constraint of the caller's
    /// tables, a serialization failure), with its source chain.
    #[error("database error: {message}")]
    Database {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },

    /// The resource name cannot be used as a lock key.
    #[error("invalid lock key: {0}")]
    InvalidKey(String),

    /// The options or node configuration are not usable.
    #[error("invalid options: {0}")]
    InvalidOptions(String),

    /// A URL in a backend's configuration (see
    /// [`BackendConfig`](crate::BackendConfig)) has a scheme this build does
    /// not take: one of no backend (`http://`, `mysql://`, or none at all),
    /// or one whose backend is a cargo feature this build lacks (`etcd://`
    /// without `etcd`, `rediss://` without `tls`).
    #[error("{}", SchemeMessage { url, scheme, feature: *feature, accepted })]
    UnsupportedScheme {
        /// The URL, its password hidden.
        url: String,
        /// Its scheme as written, without `://`; empty when it has none.
        scheme: String,
        /// The cargo feature of fencelock that takes this scheme, when one
        /// does.
        feature: Option<&'static str>,
        /// The schemes this build takes, without `://`.
        accepted: Vec<&'static str>,
    },

    /// One URL list names two backends: a list is the nodes of one Redis
    /// deployment or the members of one etcd cluster, never both.
    #[error(
        "{first:?} and {other:?} are URLs of different backends; one URL list is one backend \
         (Redis nodes or etcd members)"
    )]
    MixedBackends {
        /// The list's first URL, its password hidden.
        first: String,
        /// The first URL of another backend, its password hidden.
        other: String,
    },

    /// No locker of this name is configured in the
    /// [`Registry`](crate::Registry).
    #[error("no locker named {name:?}; configured: {}", Names(known))]
    UnknownLocker {
        /// The name asked for.
        name: String,
        /// The names configured, in order.
        known: Vec<String>,
    },

    /// Two lockers of a [`RegistryConfig`](crate::RegistryConfig) have the
    /// same name.
    #[error("locker {name:?} is configured twice")]
    DuplicateLocker {
        /// The name given twice.
        name: String,
    },

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
    /// slow round). Bad input, reentrancy limits and a quorum that nodes
    /// refuse this client (see [`is_denied`](Error::is_denied)) are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::NotObtained { .. } | Error::ValidityExhausted { .. } => true,
            Error::QuorumUnavailable { .. } => !self.is_denied(),
            _ => false,
        }
    }

    /// Whether the lock service could not be reached or would not serve
    /// this client: no quorum answered ([`Error::QuorumUnavailable`], an
    /// outage or a denial) or the backend failed ([`Error::Backend`]).
    /// Contention, timeouts of a wait, bad input and lost locks are not
    /// outages. [`Locker::with_lock_or_fallback`](crate::Locker::with_lock_or_fallback)
    /// runs its fallback for these.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            Error::QuorumUnavailable { .. } | Error::Backend { .. }
        )
    }

    /// Whether a quorum is out of reach because nodes refused this client
    /// ([`NodeFault::Denied`]: credentials, permissions, TLS certificates):
    /// a [`QuorumUnavailable`](Error::QuorumUnavailable) in which even the
    /// nodes that failed for other reasons (down, slow) could not make up
    /// the quorum, were they to answer. Such a refusal does not go away by
    /// waiting, so the error is final.
    pub fn is_denied(&self) -> bool {
        match self {
            Error::QuorumUnavailable {
                confirmed,
                refused,
                needed,
                failures,
            } => quorum_denied(confirmed + refused, *needed, failures),
            _ => false,
        }
    }
}

/// Whether the nodes that refused this client keep a quorum out of reach:
/// at least one refused, and the nodes that answered (`answered`, yes or
/// no: a no can turn into a yes later) plus those that may still answer
/// once they are back (every failure but a refusal) are too few.
fn quorum_denied(answered: usize, needed: usize, failures: &[NodeFailure]) -> bool {
    let denied = failures
        .iter()
        .filter(|f| matches!(f.fault, NodeFault::Denied(_)))
        .count();
    let may_answer = answered + (failures.len() - denied);
    denied > 0 && may_answer < needed
}

/// The tail of a final quorum failure's message.
struct DeniedHint<'a>(usize, usize, &'a [NodeFailure]);

impl fmt::Display for DeniedHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DeniedHint(answered, needed, failures) = *self;
        if quorum_denied(answered, needed, failures) {
            f.write_str(
                "; not retried: the nodes refused this client (credentials, \
                 permissions or TLS certificate), which waiting does not change",
            )?;
        }
        Ok(())
    }
}

/// The message of [`Error::UnsupportedScheme`].
struct SchemeMessage<'a> {
    url: &'a str,
    scheme: &'a str,
    feature: Option<&'static str>,
    accepted: &'a [&'static str],
}

impl fmt::Display for SchemeMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            url,
            scheme,
            feature,
            accepted,
        } = *self;
        match feature {
            _ if scheme.is_empty() => write!(f, "URL {url:?} has no scheme")?,
            Some(feature) => write!(
                f,
                "URL {url:?}: {scheme}:// needs fencelock's feature `{feature}`, which this \
                 build lacks"
            )?,
            None => write!(f, "URL {url:?}: no backend takes the scheme {scheme}://")?,
        }
        f.write_str("; this build takes ")?;
        for (i, scheme) in accepted.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{scheme}://")?;
        }
        Ok(())
    }
}

/// Names as a list in a message: `"a", "b"`, or `none`.
struct Names<'a>(&'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name:?}")?;
        }
        Ok(())
    }
}

/// Why one node did not answer a request usefully.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// No connection could be used (refused, reset, closed, a TLS
    /// handshake that failed for a reason other than a certificate).
    Connection(String),
    /// The node answered with an error reply.
    Server(String),
    /// The node answered something this library does not understand.
    Protocol(String),
    /// The node refused this client, for a reason that trying again does
    /// not change: wrong or missing credentials (`WRONGPASS`, `NOAUTH`), a
    /// user without the permissions the locks need (`NOPERM`), or a TLS
    /// certificate that did not verify (the server's, against the roots
    /// this client trusts, or this client's, refused by the server). When
    /// such refusals keep a quorum out of reach, the error is final (see
    /// [`Error::is_denied`]).
    Denied(String),
}

impl fmt::Display for NodeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeFault::Timeout(d) => write!(f, "no answer within {d:?}"),
            NodeFault::Connection(m) => write!(f, "connection failed: {m}"),
            NodeFault::Server(m) => write!(f, "error reply: {m}"),
            NodeFault::Protocol(m) => write!(f, "unexpected reply: {m}"),
            NodeFault::Denied(m) => write!(f, "refused this client: {m}"),
        }
    }
}

struct NodeFailures<'a>(&'a [NodeFailure]);

impl fmt::Display for NodeFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(node: &str, fault: NodeFault) -> NodeFailure {
        NodeFailure {
            node: node.into(),
            fault,
        }
    }

    fn unavailable(answered: usize, needed: usize, failures: Vec<NodeFailure>) -> Error {
        Error::QuorumUnavailable {
            confirmed: answered.min(needed - 1),
            refused: answered - answered.min(needed - 1),
            needed,
            failures,
        }
    }

    #[test]
    fn refusals_that_keep_a_quorum_out_of_reach_are_final() {
        let denied = |node| failure(node, NodeFault::Denied("WRONGPASS".into()));
        let down = |node| failure(node, NodeFault::Timeout(Duration::from_millis(200)));

        // One node, refused: final, and the message says why.
        let err = unavailable(0, 1, vec![denied("a:1")]);
        assert!(err.is_denied() && !err.is_retryable());
        let message = err.to_string();
        assert!(
            message.contains("a:1: refused this client: WRONGPASS"),
            "{message}"
        );
        assert!(message.contains("not retried"), "{message}");

        // 2 of 3 refused: the third alone is no quorum.
        let err = unavailable(1, 2, vec![denied("a:1"), denied("b:1")]);
        assert!(err.is_denied() && !err.is_retryable());

        // 1 refused and 1 down of 3: the down node may come back, and with
        // the one that answered make a quorum. Still an outage.
        let err = unavailable(1, 2, vec![denied("a:1"), down("b:1")]);
        assert!(!err.is_denied() && err.is_retryable());
        assert!(!err.to_string().contains("not retried"), "{err}");

        // Only nodes down: an outage as ever.
        let err = unavailable(0, 2, vec![down("a:1"), down("b:1"), down("c:1")]);
        assert!(!err.is_denied() && err.is_retryable());

        // 1 refused and 2 down of 5: the 2 that answered and the 2 down
        // ones may yet make 3.
        let err = unavailable(2, 3, vec![denied("a:1"), down("b:1"), down("c:1")]);
        assert!(err.is_retryable());
        // 3 refused of 5: 2 answered, none else to come.
        let err = unavailable(2, 3, vec![denied("a:1"), denied("b:1"), denied("c:1")]);
        assert!(!err.is_retryable());

        // Other variants are not denials.
        assert!(!Error::InvalidKey("x".into()).is_denied());
    }

    #[test]
    fn configuration_errors_name_the_problem() {
        let accepted = vec!["redis", "etcd"];
        let scheme = |url: &str, scheme: &str, feature| Error::UnsupportedScheme {
            url: url.into(),
            scheme: scheme.into(),
            feature,
            accepted: accepted.clone(),
        };
        assert_eq!(
            scheme("http://h:1", "http", None).to_string(),
            "URL \"http://h:1\": no backend takes the scheme http://; this build takes \
             redis://, etcd://"
        );
        assert_eq!(
            scheme("h:1", "", None).to_string(),
            "URL \"h:1\" has no scheme; this build takes redis://, etcd://"
        );
        assert_eq!(
            scheme("rediss://h:1", "rediss", Some("tls")).to_string(),
            "URL \"rediss://h:1\": rediss:// needs fencelock's feature `tls`, which this build \
             lacks; this build takes redis://, etcd://"
        );
        let unknown = Error::UnknownLocker {
            name: "biling".into(),
            known: vec!["billing".into(), "migrations".into()],
        };
        assert_eq!(
            unknown.to_string(),
            "no locker named \"biling\"; configured: \"billing\", \"migrations\""
        );
        let none = Error::UnknownLocker {
            name: "x".into(),
            known: vec![],
        };
        assert_eq!(none.to_string(), "no locker named \"x\"; configured: none");
        for e in [unknown, none, scheme("h:1", "", None)] {
            assert!(!e.is_retryable() && !e.is_denied(), "{e}");
        }
    }
}
