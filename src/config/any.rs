//! [`AnyBackend`]: whichever backend a URL list names, as one type, and
//! [`Locker::connect`], a Locker on it in one call.

use std::time::{Duration, Instant};

use super::{BackendConfig, Spec};
use crate::backend::{
    Backend, ForceReleased, Grant, Hold, ListCursor, ListPage, LockInfo, Mode, ReleaseWatch,
    Waiting,
};
use crate::error::Result;
use crate::locker::Locker;
use crate::options::LockOptions;

/// A backend chosen at run time: Redis (one node or a Redlock quorum) or
/// etcd, as a URL list names it ([`BackendConfig`]). `Locker<AnyBackend>`
/// is one type for both, so a program takes its locks without generics at
/// the call site and leaves the choice to its configuration.
///
/// Every [`Backend`] call goes to the backend inside, unchanged: locks,
/// tokens, waiting (Redis's release notifications, etcd's queue), metrics
/// labels (`backend="redis"` or `"etcd"`) and errors are exactly those of
/// `Locker<Redlock>` or `Locker<Etcd>`. The cost is a `match` per call,
/// and on etcd an allocation per call for its (large) futures: within
/// noise of `Locker<Redlock>` on Redis (docs/performance.md).
///
/// Made by [`connect`](AnyBackend::connect) from a configuration, or with
/// `From` from a backend made in code (say a [`Redlock`](crate::Redlock)
/// with another quorum). Match on it to reach the backend's own methods.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = fencelock::testing::RedisServer::start()?;
/// # let urls = server.url(); // or "etcd://10.0.1.1:2379,10.0.1.2:2379,10.0.1.3:2379"
/// use fencelock::{AnyBackend, BackendConfig, LockOptions, Locker};
///
/// let config: BackendConfig = urls.parse()?;
/// let locker: Locker<AnyBackend> =
///     Locker::new(AnyBackend::connect(&config).await?, LockOptions::default())?;
/// let guard = locker.lock("nightly-billing").await?;
/// println!("{} lock, token {}", config.backend(), guard.token());
/// guard.release().await?;
/// # Ok(()) }
/// ```
// An etcd client is a few KiB, a Redlock a few pointers. Boxing the etcd
// variant would save nothing: a backend is made once and lives in its
// Locker's `Arc`, as `Etcd` does in a `Locker<Etcd>`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyBackend {
    /// Redis: one node, or a Redlock quorum of several.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(crate::Redlock),
    /// An etcd cluster.
    #[cfg(feature = "etcd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
    Etcd(crate::Etcd),
}

impl AnyBackend {
    /// The backend `config` names. Redis nodes are made without I/O (they
    /// connect on first use); an etcd client without credentials too, and
    /// with a user it signs in here.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped connect leaves nothing behind but the
    /// sockets it opened, which close with it.
    ///
    /// # Errors
    ///
    /// As [`Etcd::connect`](crate::Etcd::connect) for etcd: with a user, a
    /// final [`Error::QuorumUnavailable`](crate::Error::QuorumUnavailable)
    /// when the cluster refused the credentials, [`Error::Backend`](crate::Error::Backend) when it
    /// could not be reached. A Redis configuration was checked when it was
    /// read, and connecting to it does not fail.
    pub async fn connect(config: &BackendConfig) -> Result<Self> {
        match &config.spec {
            #[cfg(feature = "redis")]
            Spec::Redis(urls) => {
                let redlock = crate::Redlock::from_urls(urls)?;
                Ok(Self::Redis(match config.quarantine {
                    Some(quarantine) => redlock.with_quarantine(quarantine)?,
                    None => redlock,
                }))
            }
            #[cfg(feature = "etcd")]
            Spec::Etcd(members) => {
                let options = members.user.as_ref().map(|(name, password)| {
                    etcd_client::ConnectOptions::new().with_user(name.as_str(), password.as_str())
                });
                let etcd = crate::Etcd::connect(&members.endpoints, options).await?;
                Ok(Self::Etcd(etcd))
            }
        }
    }
}

#[cfg(feature = "redis")]
impl From<crate::Redlock> for AnyBackend {
    fn from(redlock: crate::Redlock) -> Self {
        Self::Redis(redlock)
    }
}

#[cfg(feature = "etcd")]
impl From<crate::Etcd> for AnyBackend {
    fn from(etcd: crate::Etcd) -> Self {
        Self::Etcd(etcd)
    }
}

impl Locker<AnyBackend> {
    /// A Locker on the backend a comma-separated URL list names (see
    /// [`BackendConfig`]), with `options`: the one constructor of a
    /// program that leaves the backend to its configuration. The list and
    /// the options are checked before any I/O.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = fencelock::testing::RedisServer::start()?;
    /// # let from_config = server.url();
    /// use fencelock::{LockOptions, Locker};
    ///
    /// // "redis://a:6379,redis://b:6379,redis://c:6379" or "etcd://h1:2379,h2:2379,h3:2379"
    /// let locker = Locker::connect(&from_config, LockOptions::default()).await?;
    /// let guard = locker.lock("nightly-billing").await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`AnyBackend::connect`].
    ///
    /// # Errors
    ///
    /// As [`BackendConfig::parse`] for the list,
    /// [`LockOptions::validate`] for the options, then as
    /// [`AnyBackend::connect`].
    pub async fn connect(urls: &str, options: LockOptions) -> Result<Self> {
        let config = BackendConfig::parse(urls)?;
        options.validate()?;
        Locker::new(AnyBackend::connect(&config).await?, options)
    }
}

/// Runs `$call` on the backend inside `$self`, bound to `$backend`.
macro_rules! inside {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "redis")]
            AnyBackend::Redis($backend) => $call,
            #[cfg(feature = "etcd")]
            AnyBackend::Etcd($backend) => $call,
        }
    };
}

/// Awaits the future `$call` of the backend inside `$self`. etcd's
/// futures are boxed: a `try_lock` future on etcd is about 11.7 KiB
/// against 2.1 KiB on Redis, and unboxed it would make every call's
/// future (and every task that awaits one) that large on Redis too, to be
/// moved and copied at each step. The box is one allocation per call on
/// etcd, whose calls are Raft writes of a millisecond or more.
macro_rules! forward {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "redis")]
            AnyBackend::Redis($backend) => $call.await,
            #[cfg(feature = "etcd")]
            AnyBackend::Etcd($backend) => Box::pin($call).await,
        }
    };
}

impl Backend for AnyBackend {
    fn name(&self) -> &'static str {
        inside!(self, b => Backend::name(b))
    }

    fn check_options(&self, options: &LockOptions) -> Result<()> {
        inside!(self, b => Backend::check_options(b, options))
    }

    async fn try_acquire(
        &self,
        hold: &Hold,
        ttl: Duration,
        options: &LockOptions,
    ) -> Result<Grant> {
        forward!(self, b => Backend::try_acquire(b, hold, ttl, options))
    }

    async fn extend(&self, hold: &Hold, ttl: Duration, options: &LockOptions) -> Result<Instant> {
        forward!(self, b => Backend::extend(b, hold, ttl, options))
    }

    async fn extend_many(
        &self,
        holds: &[(&Hold, Duration)],
        options: &LockOptions,
    ) -> Vec<Result<Instant>> {
        forward!(self, b => Backend::extend_many(b, holds, options))
    }

    async fn release(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        forward!(self, b => Backend::release(b, hold, options))
    }

    async fn inspect(&self, key: &str, options: &LockOptions) -> Result<LockInfo> {
        forward!(self, b => Backend::inspect(b, key, options))
    }

    async fn list(
        &self,
        prefix: &str,
        cursor: Option<&ListCursor>,
        options: &LockOptions,
    ) -> Result<ListPage> {
        forward!(self, b => Backend::list(b, prefix, cursor, options))
    }

    async fn force_release(&self, key: &str, options: &LockOptions) -> Result<ForceReleased> {
        forward!(self, b => Backend::force_release(b, key, options))
    }

    fn waiting(&self) -> Waiting {
        inside!(self, b => Backend::waiting(b))
    }

    fn watch_releases(
        &self,
        key: &str,
        owner: &str,
        mode: Mode,
        options: &LockOptions,
    ) -> Option<ReleaseWatch> {
        inside!(self, b => Backend::watch_releases(b, key, owner, mode, options))
    }

    async fn downgrade(&self, hold: &Hold, options: &LockOptions) -> Result<()> {
        forward!(self, b => Backend::downgrade(b, hold, options))
    }

    async fn settled(&self) {
        forward!(self, b => Backend::settled(b))
    }
}
