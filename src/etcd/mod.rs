//! The etcd backend: one linearizable store instead of a quorum of
//! independent nodes (feature `etcd`).
//!
//! Each first hold is a holder key with its own lease, created in a
//! transaction only when no other holder key exists and no other process's
//! waiter is queued ahead; its create revision is the fencing token. Nested
//! holds are ids added to the holder key's value in compare-and-swap
//! transactions. The watchdog's renewal is a keep-alive of the holder's
//! lease. Waiters queue by create revision and watch their predecessor
//! (see [`queue`]). `docs/backends.md` compares this with Redlock.

mod admin;
mod keys;
mod queue;

/// What the fuzz targets reach (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    pub(crate) use super::keys::{LockKeys, decode_holds, escape, resource_of_holder, unescape};
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use crate::admin::{ForceReleased, ListCursor, ListPage, LockInfo};
use crate::backend::{Backend, Grant, Hold, Parent};
use crate::background::Background;
use crate::error::{Error, NodeFailure, NodeFault, Result};
use crate::fencing::FencingToken;
use crate::notify::ReleaseWatch;
use crate::options::{LockOptions, drift};
use keys::{LockKeys, decode_holds, encode_holds};

/// How often a read-modify-write of a holder key is tried when it keeps
/// changing underneath. Only tasks of the same owner change it, so more than
/// a few rounds mean something is wrong rather than busy.
const CAS_ROUNDS: usize = 8;

/// Locks kept in an etcd cluster (etcd v3 API).
///
/// ```no_run
/// # async fn demo() -> fencelock::Result<()> {
/// use fencelock::{Etcd, LockOptions, Locker};
///
/// let etcd = Etcd::connect(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], None).await?;
/// let locker = Locker::new(etcd, LockOptions::default())?;
/// let guard = locker.lock("nightly-billing").await?;
/// println!("fencing token {}", guard.token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
///
/// Authentication and TLS are set with [`etcd_client::ConnectOptions`]
/// (`with_user`, and `with_tls` with the feature `etcd-tls`). Every request
/// is bounded by the options' `node_timeout`. A refused user, password or
/// permission is a final [`Error::QuorumUnavailable`] with a
/// [`NodeFault::Denied`] failure ([`Error::is_denied`]), as on Redis.
///
/// Waiters queue fairly across processes: the lock goes to the waiter that
/// queued first, even while it is momentarily free, so `try_lock` is
/// refused while anyone waits ([`LockInfo::queued`] tells how many).
///
/// Use etcd 3.4.31+, 3.5.13+ or 3.6: older servers have lease bugs that can
/// let two holders overlap around a leader change (`docs/backends.md`).
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    /// How the cluster is named in errors and inspections.
    name: Arc<str>,
    /// The queue tickets this client's waiters hold, so a waiter's
    /// attempt can claim its turn in one transaction.
    tickets: Arc<queue::Tickets>,
    /// The lease revokes, undos and queue waiters it left running, for
    /// [`settled`](Backend::settled).
    background: Background,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// Connects to the cluster at `endpoints` (`http://host:port`, or
    /// `https://` with the feature `etcd-tls`). Without credentials in
    /// `options` no request is made here: members are dialled on first use.
    pub async fn connect<E, S>(endpoints: S, options: Option<ConnectOptions>) -> Result<Self>
    where
        E: AsRef<str>,
        S: AsRef<[E]>,
    {
        let endpoints = endpoints.as_ref();
        if endpoints.is_empty() {
            return Err(Error::InvalidOptions("no etcd endpoints given".into()));
        }
        let names: Vec<&str> = endpoints.iter().map(AsRef::as_ref).collect();
        let name = format!("etcd[{}]", names.join(","));
        // A member cut off from the leader fails requests at once instead
        // of leaving watches silent and keep-alives unanswered. With
        // credentials, an expired token (etcd's simple tokens last 5
        // minutes) is renewed and the request sent again, instead of the
        // refusal reading as denied credentials, which it is not.
        let options = options
            .unwrap_or_default()
            .with_require_leader(true)
            .with_auto_token_refresh(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| match e {
                etcd_client::Error::InvalidArgs(_)
                | etcd_client::Error::InvalidUri(_)
                | etcd_client::Error::EndpointError(_) => {
                    Error::InvalidOptions(format!("bad etcd endpoint in {names:?}: {e}"))
                }
                // With credentials, connecting signs in: a refused sign-in
                // is a denial, like any refused request.
                etcd_client::Error::GRpcStatus(status) if denies_client(&status) => {
                    unavailable(&name, NodeFault::Denied(describe(&status)))
                }
                e => Error::Backend {
                    message: format!("cannot connect to etcd at {names:?}"),
                    source: Some(Box::new(e)),
                },
            })?;
        Ok(Self::named(client, name))
    }

    /// A backend on a client the caller already has (and configured).
    pub fn from_client(client: Client) -> Self {
        Self::named(client, "etcd".to_owned())
    }

    fn named(client: Client, name: String) -> Self {
        Self {
            client,
            name: name.into(),
            tickets: Arc::default(),
            background: Background::default(),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An outage: the request did not get an answer that decides (final
    /// when `fault` is a denial, see [`Error::is_denied`]).
    fn unavailable(&self, fault: NodeFault) -> Error {
        unavailable(&self.name, fault)
    }

    /// Runs one request, bounded by `timeout`. A failure that may pass (no
    /// leader, a member down, a timeout) is an outage, which waiters retry:
    /// the request may or may not have been applied. One that will not pass
    /// by waiting is final: a refusal of this client (credentials,
    /// permissions) as a denial, as on Redis; a request etcd cannot take or
    /// a full database as [`Error::Backend`].
    async fn call<T>(
        &self,
        timeout: Duration,
        request: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(etcd_client::Error::GRpcStatus(status))) => Err(self.refused(&status)),
            Ok(Err(e)) => Err(self.unavailable(NodeFault::Connection(e.to_string()))),
            Err(_) => Err(self.unavailable(NodeFault::Timeout(timeout))),
        }
    }

    /// The error for a request etcd answered with `status`.
    fn refused(&self, status: &tonic::Status) -> Error {
        use tonic::Code;
        let what = describe(status);
        if denies_client(status) {
            return self.unavailable(NodeFault::Denied(what));
        }
        if status.message().contains(AUTH_STORE_CHANGED) {
            return self.unavailable(NodeFault::Server(what));
        }
        match status.code() {
            Code::PermissionDenied
            | Code::Unauthenticated
            | Code::InvalidArgument
            | Code::ResourceExhausted
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::AlreadyExists => Error::Backend {
                message: format!("{} refused the request ({what})", self.name),
                source: None,
            },
            _ => self.unavailable(NodeFault::Server(what)),
        }
    }

    /// Runs `request` until it gets an answer, for at most `timeout`,
    /// trying again after failures that prove the request never reached a
    /// member (a refused connection to a dead member the balancer still
    /// picks): those are safe to repeat, and a live member is usually a
    /// retry away.
    async fn call_again<T, F, Fut>(&self, timeout: Duration, mut request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .call(left.max(Duration::from_millis(1)), request())
                .await
            {
                Err(Error::QuorumUnavailable { failures, .. })
                    if failures.iter().any(|f| never_sent(&f.fault))
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(5).min(left)).await;
                }
                Err(e @ Error::QuorumUnavailable { .. })
                    if !e.is_denied() && tokio::time::Instant::now() >= deadline =>
                {
                    return Err(self.unavailable(NodeFault::Timeout(timeout)));
                }
                other => return other,
            }
        }
    }

    /// The value stored at `key`, if any.
    async fn get(&self, key: &str, timeout: Duration) -> Result<Option<KeyValue>> {
        let mut reply = self
            .call_again(timeout, || {
                let mut kv = self.client.kv_client();
                let key = key.to_owned();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(reply.take_kvs().into_iter().next())
    }

    async fn txn(&self, txn: Txn, timeout: Duration) -> Result<TxnResponse> {
        self.call_again(timeout, || {
            let mut kv = self.client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }

    /// A first hold: the holder key, on a lease of its own, created only
    /// while no holder key exists and no other owner's waiter is queued
    /// ahead.
    async fn acquire_first(
        &self,
        keys: &LockKeys,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
        started: Instant,
    ) -> Result<Grant> {
        let timeout = options.node_timeout;
        let leases = self.client.lease_client();
        let lease = self
            .call_again(timeout, || {
                let mut leases = leases.clone();
                async move { leases.grant(lease_secs(ttl), None).await }
            })
            .await?;
        // Revoking the lease deletes whatever was attached to it: every way
        // out below that is not a grant (an error, a refusal, the caller
        // dropping this future) undoes the attempt this way.
        let mut undo = RevokeOnDrop::new(self, lease.id(), timeout);
        let holder = keys.holder(hold.owner());
        let put = TxnOp::put(
            holder.as_str(),
            encode_holds(&[hold.id().to_owned()]),
            Some(PutOptions::new().with_lease(lease.id())),
        );
        let free = Compare::create_revision(keys.holders(), CompareOp::Equal, 0).with_prefix();
        let head = TxnOp::get(
            keys.tickets(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1),
            ),
        );
        let (when, then) = match self.tickets.get(keys, hold.owner()) {
            // This owner queues: its turn is when its ticket is the oldest
            // (a compare over a range holds only if it holds for every
            // key); the ticket goes with the grant.
            Some(ticket) => (
                vec![
                    free.clone(),
                    Compare::create_revision(ticket.key.as_str(), CompareOp::Equal, ticket.created),
                    Compare::create_revision(
                        keys.tickets(),
                        CompareOp::Greater,
                        ticket.created - 1,
                    )
                    .with_prefix(),
                ],
                vec![put.clone(), TxnOp::delete(ticket.key.as_str(), None)],
            ),
            // Nobody may queue: over an empty range a compare sees create
            // revision 0.
            None => (
                vec![
                    free.clone(),
                    Compare::create_revision(keys.tickets(), CompareOp::Equal, 0).with_prefix(),
                ],
                vec![put.clone()],
            ),
        };
        let first = Txn::new().when(when).and_then(then).or_else([head]);
        let reply = self.txn(first, timeout).await?;
        let granted = if reply.succeeded() {
            Some(revision(&reply))
        } else {
            // Held, or waiters queue. The owner may go first only when the
            // oldest ticket is its own: its place in the queue came first.
            // The ticket goes in the same transaction, so the next waiter
            // hears at once that it is first now.
            match first_kv(&reply) {
                Some(ticket) if ticket.value() == hold.owner().as_bytes() => {
                    let mine = Compare::create_revision(
                        ticket.key(),
                        CompareOp::Equal,
                        ticket.create_revision(),
                    );
                    let used = TxnOp::delete(ticket.key(), None);
                    let second = Txn::new().when([free, mine]).and_then([put, used]);
                    let reply = self.txn(second, timeout).await?;
                    reply.succeeded().then(|| revision(&reply))
                }
                _ => None,
            }
        };
        let Some(token) = granted else {
            // A lease tells how long a holder has at most, but reading it
            // costs another round trip; waiters hear of releases and
            // expiries through the queue instead.
            return Err(Error::NotObtained {
                key: hold.key().to_owned(),
                expires_in: None,
            });
        };
        let valid_until = valid_until(started, ttl, options.drift_factor);
        if Instant::now() >= valid_until {
            return Err(Error::ValidityExhausted {
                key: hold.key().to_owned(),
                elapsed: started.elapsed(),
                ttl,
            });
        }
        undo.disarm();
        Ok(Grant {
            token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
            valid_until,
        })
    }

    /// A nested hold: its id added to the holder key, which must still
    /// carry the parent hold (and the parent's token).
    ///
    /// The id goes in by a compare-and-swap on the key's mod revision. If
    /// this future is dropped (or a request times out) with the swap on
    /// its way, the undo (a release of the hold) may read the key before
    /// etcd applies the swap; the release then writes the key even though
    /// it finds no id, which makes the late swap's compare fail (see
    /// `release`). So a swap lands before the undo's write or never, and
    /// one that landed is found and removed by the undo.
    async fn acquire_nested(
        &self,
        keys: &LockKeys,
        hold: &Hold,
        parent: &Parent,
        ttl: Duration,
        options: &LockOptions,
        started: Instant,
    ) -> Result<Grant> {
        let timeout = options.node_timeout;
        let holder = keys.holder(hold.owner());
        let not_held = || Error::NotHeld {
            key: hold.key().to_owned(),
        };
        // Once the id may be in, every failure takes it out again, in the
        // background (the release is idempotent by id).
        let mut sent = false;
        let fail = |sent: bool, e: Error| {
            if sent {
                let (this, hold, options) = (self.clone(), hold.clone(), options.clone());
                self.background.spawn(async move {
                    let _ = this.release(&hold, &options).await;
                });
            }
            Err(e)
        };
        let mut dead_lease = None;
        for _ in 0..CAS_ROUNDS {
            let kv = match self.get(&holder, timeout).await {
                Ok(Some(kv)) if dead_lease != Some(kv.lease()) => kv,
                Ok(_) => return fail(sent, not_held()),
                Err(e) => return fail(sent, e),
            };
            let mut holds = decode_holds(kv.value());
            if token_of(&kv) != parent.token || !holds.contains(&parent.id) {
                return fail(sent, not_held());
            }
            let mut seen = Seen::of(&kv);
            if !holds.iter().any(|h| h == hold.id()) {
                if holds.len() >= options.max_reentrancy as usize {
                    return fail(
                        sent,
                        Error::ReentrancyLimit {
                            key: hold.key().to_owned(),
                            limit: options.max_reentrancy,
                        },
                    );
                }
                holds.push(hold.id().to_owned());
                sent = true;
                let mod_revision = match self.swap(&holder, &kv, &holds, timeout).await {
                    Ok(Some(mod_revision)) => mod_revision,
                    Ok(None) => continue,
                    Err(e) => return fail(sent, e),
                };
                seen = Seen {
                    mod_revision,
                    value: encode_holds(&holds).into_bytes(),
                    ..seen
                };
            }
            match self.keep(hold, &holder, &seen, ttl, options, started).await {
                Ok(Renewal::Kept(valid_until)) => {
                    return Ok(Grant {
                        token: parent.token,
                        valid_until,
                    });
                }
                Ok(Renewal::Changed) => {}
                Ok(Renewal::LeaseGone) => dead_lease = Some(seen.lease),
                Err(e) => return fail(sent, e),
            }
        }
        fail(sent, self.contended(hold.key()))
    }

    /// Writes `holds` into the holder key if it is still as `seen`
    /// (keeping its lease); the key's new mod revision, or `None` when it
    /// changed.
    async fn swap(
        &self,
        holder: &str,
        seen: &KeyValue,
        holds: &[String],
        timeout: Duration,
    ) -> Result<Option<i64>> {
        let same = Compare::mod_revision(holder, CompareOp::Equal, seen.mod_revision());
        let put = TxnOp::put(
            holder,
            encode_holds(holds),
            Some(PutOptions::new().with_ignore_lease()),
        );
        let reply = self
            .txn(Txn::new().when([same]).and_then([put]), timeout)
            .await?;
        if !reply.succeeded() {
            return Ok(None);
        }
        Ok(Some(revision(&reply)))
    }

    /// Keeps the holder key as `kv` shows it alive for `ttl` from `started`: a
    /// keep-alive of its lease, or, when the lease's ttl is shorter than
    /// `ttl`, a move of the key onto a new, longer lease. A lease is never
    /// shortened: another hold of the owner may count on it.
    ///
    /// `hold` is the hold being kept, for errors: they name its resource,
    /// never the holder key, whose name contains the owner id (a secret:
    /// whoever knows it can extend and release the owner's locks).
    async fn keep(
        &self,
        hold: &Hold,
        holder: &str,
        kv: &Seen,
        ttl: Duration,
        options: &LockOptions,
        started: Instant,
    ) -> Result<Renewal> {
        let timeout = options.node_timeout;
        let secs = lease_secs(ttl);
        // Opening the keep-alive stream refreshes the lease once (the
        // client reads that first answer itself and fails with "lease not
        // found" when it is gone); one more exchange tells its ttl.
        // Tried again within the timeout when it never reached a member (a
        // dead one the client still balances to).
        let granted = self
            .call_again(timeout, || {
                let mut leases = self.client.lease_client();
                let lease = kv.lease;
                async move {
                    let (mut keeper, mut stream) = match leases.keep_alive(lease).await {
                        Ok(opened) => opened,
                        Err(e) if lease_not_found(&e) => return Ok(0),
                        Err(e) => return Err(e),
                    };
                    keeper.keep_alive().await?;
                    match stream.message().await? {
                        Some(reply) => Ok(reply.ttl()),
                        None => Err(etcd_client::Error::WatchError(
                            "the keep-alive stream closed without an answer".into(),
                        )),
                    }
                }
            })
            .await?;
        if granted <= 0 {
            // The lease is gone. Either the key went with it, or another
            // renewal of this holder key (a nested hold's, a longer extend)
            // just moved it onto a new lease: the caller reads it again to
            // tell which.
            return Ok(Renewal::LeaseGone);
        }
        if granted < secs {
            // A longer ttl than the lease was made for: move the key onto a
            // new lease (its create revision, the token, stays).
            let lease = self
                .call_again(timeout, || {
                    let mut leases = self.client.lease_client();
                    async move { leases.grant(secs, None).await }
                })
                .await?;
            // No revoke of the new lease when this is cut off or fails
            // without an answer: the move may still land after the revoke
            // would, or have landed already, and the revoke would then
            // delete a live holder key, freeing the lock under a guard
            // that still counts on it. Unused, the new lease only runs out
            // by its ttl; used, the key sits on it and renewals keep it
            // (they follow the key's lease), while the old one runs out.
            let same = Compare::mod_revision(holder, CompareOp::Equal, kv.mod_revision);
            let put = TxnOp::put(
                holder,
                kv.value.clone(),
                Some(PutOptions::new().with_lease(lease.id())),
            );
            let reply = self
                .txn(Txn::new().when([same]).and_then([put]), timeout)
                .await?;
            if !reply.succeeded() {
                // Answered no: the move can never land, so the new lease
                // has nothing on it for good.
                drop(RevokeOnDrop::new(self, lease.id(), timeout));
                return Ok(Renewal::Changed);
            }
            // The old lease has no key left.
            drop(RevokeOnDrop::new(self, kv.lease, timeout));
        }
        let valid_until = valid_until(started, ttl, options.drift_factor);
        if Instant::now() >= valid_until {
            return Err(Error::ValidityExhausted {
                key: hold.key().to_owned(),
                elapsed: started.elapsed(),
                ttl,
            });
        }
        Ok(Renewal::Kept(valid_until))
    }

    fn contended(&self, key: &str) -> Error {
        Error::Backend {
            message: format!(
                "the holder key of {key:?} changed {CAS_ROUNDS} times in a row under one request"
            ),
            source: None,
        }
    }
}

/// An outage of the cluster called `name`: a request without an answer
/// that decides. Final when `fault` is a denial (see [`Error::is_denied`]).
fn unavailable(name: &str, fault: NodeFault) -> Error {
    Error::QuorumUnavailable {
        confirmed: 0,
        refused: 0,
        needed: 1,
        failures: vec![NodeFailure {
            node: name.to_owned(),
            fault,
        }],
    }
}

/// How a refusal reads in errors: etcd's code and message.
fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// What etcd answers when the auth store changed under a request (a user
/// or role was edited meanwhile): sent again it passes, so an outage.
const AUTH_STORE_CHANGED: &str = "revision of auth store is old";

/// Whether etcd refused this client itself, for a reason waiting does not
/// change: a user without the permission (`PermissionDenied`), a token
/// etcd does not accept (`Unauthenticated`, left after the client's own
/// renewal of an expired one), a wrong user name or password, no user
/// where authentication is on, or a user where it is off (etcd's
/// `InvalidArgument` and `FailedPrecondition` with these messages). The
/// same as Redis's `WRONGPASS`, `NOAUTH` and `NOPERM`, and reported the
/// same way: [`NodeFault::Denied`].
fn denies_client(status: &tonic::Status) -> bool {
    use tonic::Code;
    const REFUSALS: [&str; 5] = [
        "authentication failed",
        "user name is empty",
        "user name not found",
        "authentication is not enabled",
        "permission denied",
    ];
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => true,
        Code::InvalidArgument | Code::FailedPrecondition => {
            REFUSALS.iter().any(|m| status.message().contains(m))
        }
        _ => false,
    }
}

/// Whether a failure shows the request never left this client (no
/// connection to the member it was sent to), so it cannot have been applied.
fn never_sent(fault: &NodeFault) -> bool {
    match fault {
        NodeFault::Server(m) | NodeFault::Connection(m) => {
            m.contains("tcp connect error") || m.contains("Connection refused")
        }
        _ => false,
    }
}

/// How a renewal of a holder key went.
#[derive(Debug)]
enum Renewal {
    /// Kept alive: certainly ours until then.
    Kept(Instant),
    /// The key changed meanwhile: read it again.
    Changed,
    /// Its lease is gone: the key went with it, unless another renewal
    /// moved it to a new lease meanwhile. Read it again to tell.
    LeaseGone,
}

/// Whether an error says the lease asked about no longer exists.
fn lease_not_found(e: &etcd_client::Error) -> bool {
    match e {
        // etcd-client's own reading of a keep-alive answer with no ttl.
        etcd_client::Error::LeaseKeepAliveError(m) => m == "lease not found",
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::NotFound && status.message().contains("lease not found")
        }
        _ => false,
    }
}

/// What a renewal needs of a holder key as last seen.
#[derive(Debug, Clone)]
struct Seen {
    lease: i64,
    mod_revision: i64,
    value: Vec<u8>,
}

impl Seen {
    fn of(kv: &KeyValue) -> Self {
        Self {
            lease: kv.lease(),
            mod_revision: kv.mod_revision(),
            value: kv.value().to_vec(),
        }
    }
}

/// The lease ttl for a lock ttl: whole seconds (etcd's unit), rounded up,
/// so the lease never ends before the lock's ttl. etcd may raise it further
/// to its minimum (1.5 election timeouts); a longer lease only keeps a dead
/// holder's lock a little longer, never a live one's shorter.
fn lease_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// Until when a lock renewed (or granted) for `ttl` after `started` is
/// certainly ours: the lease was refreshed after `started` for at least
/// `ttl`, less the clock-drift allowance.
fn valid_until(started: Instant, ttl: Duration, drift_factor: f64) -> Instant {
    started + ttl.saturating_sub(drift(ttl, drift_factor))
}

/// The revision a transaction's writes were made at.
fn revision(reply: &TxnResponse) -> i64 {
    reply.header().map_or(0, |h| h.revision())
}

/// The fencing token of a holder key: its create revision.
fn token_of(kv: &KeyValue) -> FencingToken {
    FencingToken::new(u64::try_from(kv.create_revision()).unwrap_or(0))
}

/// The first key of a transaction's first range answer.
fn first_kv(reply: &TxnResponse) -> Option<KeyValue> {
    reply.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
        _ => None,
    })
}

/// Revokes a lease when dropped unless disarmed: the undo of a half-done
/// acquire, also when its future is dropped. Never blocks: the revoke runs
/// as a task, bounded by the node timeout and counted for
/// [`settled`](Backend::settled). Without a runtime the lease ends by its
/// ttl.
struct RevokeOnDrop {
    armed: Option<(Client, Background)>,
    lease: i64,
    timeout: Duration,
}

impl RevokeOnDrop {
    fn new(etcd: &Etcd, lease: i64, timeout: Duration) -> Self {
        Self {
            armed: Some((etcd.client.clone(), etcd.background.clone())),
            lease,
            timeout,
        }
    }

    fn disarm(&mut self) {
        self.armed = None;
    }
}

impl Drop for RevokeOnDrop {
    fn drop(&mut self) {
        let Some((client, background)) = self.armed.take() else {
            return;
        };
        let (lease, timeout) = (self.lease, self.timeout);
        background.spawn(async move {
            let mut leases = client.lease_client();
            let _ = tokio::time::timeout(timeout, leases.revoke(lease)).await;
        });
    }
}

impl Backend for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    /// The options on their own, and as for one node: etcd keeps its own
    /// quorum, so an explicit `quorum` above 1 is refused.
    fn check_options(&self, options: &LockOptions) -> Result<()> {
        options.validate()
    }

    async fn try_acquire(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> Result<Grant> {
        let keys = LockKeys::new(&options.key_prefix, hold.key());
        let started = Instant::now();
        match hold.parent() {
            Some(parent) => {
                self.acquire_nested(&keys, hold, parent, ttl, options, started)
                    .await
            }
            None => self.acquire_first(&keys, hold, ttl, options, started).await,
        }
    }

    async fn extend(&self, hold: &Hold, ttl: Duration, options: &LockOptions) -> Result<Instant> {
        let keys = LockKeys::new(&options.key_prefix, hold.key());
        let holder = keys.holder(hold.owner());
        let timeout = options.node_timeout;
        let not_held = || Error::NotHeld {
            key: hold.key().to_owned(),
        };
        let mut dead_lease = None;
        for _ in 0..CAS_ROUNDS {
            let started = Instant::now();
            let Some(kv) = self.get(&holder, timeout).await? else {
                return Err(not_held());
            };
            if dead_lease == Some(kv.lease())
                || !decode_holds(kv.value()).iter().any(|h| h == hold.id())
            {
                return Err(not_held());
            }
            match self
                .keep(hold, &holder, &Seen::of(&kv), ttl, options, started)
                .await?
            {
                Renewal::Kept(valid_until) => return Ok(valid_until),
                Renewal::Changed => {}
                // Gone for good only if the key still names that lease.
                Renewal::LeaseGone => dead_lease = Some(kv.lease()),
            }
        }
        Err(self.contended(hold.key()))
    }

    async fn release(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        let keys = LockKeys::new(&options.key_prefix, hold.key());
        let holder = keys.holder(hold.owner());
        let timeout = options.node_timeout;
        // The common case, the only hold goes, takes one transaction; any
        // other reads the key in the same one, for the compare-and-swap.
        let only = Compare::value(
            holder.as_str(),
            CompareOp::Equal,
            encode_holds(&[hold.id().to_owned()]),
        );
        let last = Txn::new()
            .when([only])
            .and_then([TxnOp::delete(
                holder.as_str(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(holder.as_str(), None)]);
        let reply = self.txn(last, timeout).await?;
        let mut read = None;
        for answer in reply.op_responses() {
            match answer {
                TxnOpResponse::Delete(deleted) => {
                    for gone in deleted.prev_kvs() {
                        // The lease has nothing else on it; ending it now
                        // saves the server a ttl of bookkeeping. If this
                        // fails it simply runs out.
                        drop(RevokeOnDrop::new(self, gone.lease(), timeout));
                    }
                    return Ok(());
                }
                TxnOpResponse::Get(mut got) => read = Some(got.take_kvs().into_iter().next()),
                _ => {}
            }
        }
        for _ in 0..CAS_ROUNDS {
            let found = match read.take() {
                Some(found) => found,
                None => self.get(&holder, timeout).await?,
            };
            let Some(kv) = found else {
                return Err(Error::NotHeld {
                    key: hold.key().to_owned(),
                });
            };
            let mut holds = decode_holds(kv.value());
            let before = holds.len();
            holds.retain(|h| h != hold.id());
            if holds.len() == before {
                // Never applied, released already, or not applied *yet*:
                // this may be the undo of a nested acquire that was cut off
                // (or timed out) with its compare-and-swap on its way, and
                // etcd may apply that swap after this read (a request cut
                // off on its way can still reach etcd, after requests sent
                // later). The swap compares the key's mod
                // revision with one read before it was sent, hence before
                // this undo began: writing the key unchanged moves its mod
                // revision on, so that swap can no longer land and add an
                // id nobody will remove. An absent key needs no write: a
                // swap's compare never matches it, nor a key made anew.
                if self.swap(&holder, &kv, &holds, timeout).await?.is_some() {
                    return Err(Error::NotHeld {
                        key: hold.key().to_owned(),
                    });
                }
                continue;
            }
            if !holds.is_empty() {
                if self.swap(&holder, &kv, &holds, timeout).await?.is_some() {
                    return Ok(());
                }
                continue;
            }
            let same = Compare::mod_revision(holder.as_str(), CompareOp::Equal, kv.mod_revision());
            let delete = TxnOp::delete(holder.as_str(), None);
            let reply = self
                .txn(Txn::new().when([same]).and_then([delete]), timeout)
                .await?;
            if reply.succeeded() {
                // The lease has nothing else on it; ending it now saves the
                // server a ttl of bookkeeping. If this fails it simply runs out.
                drop(RevokeOnDrop::new(self, kv.lease(), timeout));
                return Ok(());
            }
        }
        Err(self.contended(hold.key()))
    }

    async fn inspect(&self, key: &str, options: &LockOptions) -> Result<LockInfo> {
        self.inspect_lock(key, options).await
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> Result<ListPage> {
        self.list_page(prefix, cursor, options).await
    }

    async fn force_release(&self, key: &str, options: &LockOptions) -> Result<ForceReleased> {
        self.force_release_lock(key, options).await
    }

    /// A place in the key's queue for `owner` (see `docs/backends.md`):
    /// fires when this waiter's predecessor leaves, and, once it is first,
    /// when the holder releases.
    fn watch_releases(
        &self,
        key: &str,
        owner: &str,
        options: &LockOptions,
    ) -> Option<ReleaseWatch> {
        let keys = LockKeys::new(&options.key_prefix, key);
        Some(queue::line_up(self.clone(), keys, owner, options))
    }

    /// etcd keeps the queue: waiters get the lock in the order they
    /// joined it, across processes.
    fn waiting(&self) -> crate::backend::Waiting {
        crate::backend::Waiting::Queued
    }

    /// Every request of a call is answered before the call returns; what
    /// goes on afterwards is the revoke of leases that have nothing left on
    /// them (after a release, a refused or cancelled acquire, a move to a
    /// longer lease), the undo of a failed nested acquire, and the end of
    /// a waiter's place in the queue: its task is aborted when the waiter
    /// stops, and its ticket's lease revoked. This waits for all of them
    /// (each revoke is bounded by the node timeout it was started with).
    async fn settled(&self) {
        self.background.idle().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn final_refusals_are_not_retried_and_outages_are() {
        // No request is made: the client dials on first use.
        let etcd = Etcd::connect(["http://127.0.0.1:9"], None).await.unwrap();
        for (code, message) in [
            (
                tonic::Code::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                tonic::Code::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            (
                tonic::Code::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                tonic::Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
        ] {
            let e = etcd.refused(&tonic::Status::new(code, message));
            assert!(e.is_denied() && !e.is_retryable(), "{code:?}: {e:?}");
            assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
            assert!(e.to_string().contains(message), "{e}");
        }
        for code in [
            tonic::Code::InvalidArgument,
            tonic::Code::ResourceExhausted,
            tonic::Code::FailedPrecondition,
        ] {
            let e = etcd.refused(&tonic::Status::new(code, "etcdserver: no"));
            assert!(matches!(e, Error::Backend { .. }), "{code:?}: {e:?}");
            assert!(!e.is_retryable(), "{code:?}");
            assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
        }
        let changed = tonic::Status::new(
            tonic::Code::InvalidArgument,
            "etcdserver: revision of auth store is old",
        );
        assert!(etcd.refused(&changed).is_retryable());
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Unknown,
            tonic::Code::Aborted,
        ] {
            let e = etcd.refused(&tonic::Status::new(code, "etcdserver: no leader"));
            assert!(
                matches!(e, Error::QuorumUnavailable { .. }),
                "{code:?}: {e:?}"
            );
            assert!(e.is_retryable(), "{code:?}");
        }
    }

    #[test]
    fn only_a_missing_lease_reads_as_one() {
        let gone = etcd_client::Error::LeaseKeepAliveError("lease not found".into());
        assert!(lease_not_found(&gone));
        let broken = etcd_client::Error::LeaseKeepAliveError("channel closed".into());
        assert!(!lease_not_found(&broken));
        let status = tonic::Status::new(
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        );
        assert!(lease_not_found(&etcd_client::Error::GRpcStatus(status)));
    }

    #[test]
    fn leases_round_up_to_whole_seconds() {
        assert_eq!(lease_secs(Duration::from_millis(300)), 1);
        assert_eq!(lease_secs(Duration::from_secs(2)), 2);
        assert_eq!(lease_secs(Duration::from_millis(2001)), 3);
    }
}
