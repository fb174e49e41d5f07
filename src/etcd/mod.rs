//! The etcd backend: one linearizable store instead of a quorum of
//! independent nodes (feature `etcd`).
//!
//! Each first hold is a holder key with its own lease, created in a
//! transaction only when no other holder key exists and no other process's
//! waiter is queued ahead; its create revision is the fencing token. Read,
//! write and permit holds are holder keys too, with names that tell their
//! kind, and queue as etcd's read-write mutex recipe does ([`kinds`],
//! [`keys`]). Nested
//! holds are ids added to the holder key's value in compare-and-swap
//! transactions. The watchdog's renewal is a keep-alive of the holder's
//! lease. Waiters queue by create revision and watch their predecessor
//! (see [`queue`]). `docs/backends.md` compares this with Redlock.
//!
//! The modules, from the bottom up: [`client`] sends requests and sorts
//! their failures, [`lease`] grants, renews and revokes leases, [`keys`]
//! names the keys of a lock, [`holder`] reads and swaps a holder key;
//! [`acquire`], [`renew`] and [`release`] are the three steps of a hold
//! ([`kinds`] the first holds of read-write locks and semaphores),
//! [`queue`] the fair queue of waiters, [`admin`] inspection and forced
//! release.

mod acquire;
mod admin;
mod client;
mod holder;
mod keys;
mod kinds;
mod lease;
mod queue;
mod release;
mod renew;
mod tickets;

/// What the fuzz targets reach (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    pub(crate) use super::keys::{LockKeys, decode_holds, escape, resource_of_holder, unescape};
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use crate::backend::Background;
use crate::backend::ReleaseWatch;
use crate::backend::{Backend, Grant, Hold, Mode};
use crate::backend::{ForceReleased, ListCursor, ListPage, LockInfo};
use crate::error::{Error, Result};
use crate::options::LockOptions;
use holder::Term;
use keys::LockKeys;

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
/// [`NodeFault::Denied`](crate::NodeFault::Denied) failure
/// ([`Error::is_denied`]), as on Redis.
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
    tickets: Arc<tickets::Tickets>,
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
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped connect leaves nothing behind but the sockets it
    /// opened, which close with it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for no endpoints or ones that do not parse;
    /// with credentials, a final [`Error::QuorumUnavailable`] whose fault is
    /// [`NodeFault::Denied`](crate::NodeFault::Denied) when the cluster
    /// refused them, and [`Error::Backend`] when it could not be reached.
    pub async fn connect<E, S>(endpoints: S, options: Option<ConnectOptions>) -> Result<Self>
    where
        E: AsRef<str>,
        S: AsRef<[E]>,
    {
        let endpoints = endpoints.as_ref();
        if endpoints.is_empty() {
            return Err(Error::InvalidOptions("no etcd endpoints given".into()));
        }
        // Named in errors and traces without any credentials in a URL.
        let names: Vec<String> = endpoints
            .iter()
            .map(|e| client::without_credentials(e.as_ref()))
            .collect();
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
            .map_err(|e| client::connect_failed(&name, &names, e))?;
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
        let term = Term {
            hold,
            ttl,
            options,
            started: Instant::now(),
        };
        match (hold.parent(), hold.mode()) {
            (Some(parent), _) => self.acquire_nested(&keys, &term, parent).await,
            (None, Mode::Exclusive) => self.acquire_first(&keys, &term).await,
            (None, _) => self.acquire_kind(&keys, &term).await,
        }
    }

    async fn extend(&self, hold: &Hold, ttl: Duration, options: &LockOptions) -> Result<Instant> {
        self.extend_hold(hold, ttl, options).await
    }

    async fn release(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        self.release_hold(hold, options).await
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

    /// One transaction moves the owner's write holder key to its read
    /// holder key, on the same lease and with the same token (see
    /// `kinds.rs`): there is no revision at which the name is free.
    async fn downgrade(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        self.downgrade_hold(hold, options).await
    }

    /// A place in the key's queue for `owner` (see `docs/backends.md`),
    /// ordered by `mode`: fires when this waiter's turn may have come (a
    /// predecessor that counts for it left, or a holder that kept it out
    /// released).
    fn watch_releases(
        &self,
        key: &str,
        owner: &str,
        mode: Mode,
        options: &LockOptions,
    ) -> Option<ReleaseWatch> {
        let keys = LockKeys::new(&options.key_prefix, key);
        Some(queue::line_up(self.clone(), keys, owner, mode, options))
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
