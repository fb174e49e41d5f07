//! The one error type of the crate.

use std::fmt;
use std::time::Duration;

use crate::fencing::FencingToken;

mod messages;
mod node;

use messages::{Names, SchemeMessage};
use node::NodeFailures;
pub use node::{NodeFailure, NodeFault};

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
    /// this client: no quorum answered, and no node that did answer said
    /// the lock is held ([`Error::QuorumUnavailable`] with `refused == 0`;
    /// the nodes down, paused, cut off, or refusing this client's
    /// credentials). A round in which some node said "held" is contention
    /// as far as anyone can tell, and so are timeouts of a wait; bad
    /// input, lost locks and backend errors are not outages either.
    /// [`Locker::with_lock_or_fallback`](crate::Locker::with_lock_or_fallback)
    /// runs its fallback for outages only.
    pub fn is_outage(&self) -> bool {
        matches!(self, Error::QuorumUnavailable { refused: 0, .. })
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

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
