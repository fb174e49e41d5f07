//! One Redis server: its constructors, its one connection, the per-call
//! timeout, and the scripts that run on it. What the replies mean is in
//! `replies`, how failures count in `faults`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::{Manager, Pool, Runtime};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo,
    ServerErrorKind,
};

use super::clock::{ClockWatch, Reading};
#[cfg(feature = "tls")]
use super::faults::ensure_crypto_provider;
use super::faults::{classify, is_broken_connection, pool_fault, redact};
use super::requests::Call;
use crate::error::{Error, NodeFailure, NodeFault, Result};
use crate::redis::scripts;
use crate::sync::lock;

/// One independent Redis server that Redlock counts as one vote.
///
/// Requests go over one multiplexed connection taken from a deadpool pool and
/// kept for reuse, so the hot path pays no connection set-up and no pool
/// health-check round trip; the pool hands out a checked or new connection
/// when the kept one breaks.
///
/// Waiters hear of releases over one more connection per node, a pub/sub
/// subscriber (see [`with_notifications`](Self::with_notifications)).
///
/// Cloning is cheap and shares the pool and the kept connection.
#[derive(Clone)]
pub struct RedisNode {
    name: String,
    pool: Pool,
    kept: Arc<Mutex<Slot>>,
    /// Opens the pub/sub connection for release notifications.
    notifications: Option<redis::Client>,
    /// What this node's clock did, as this client saw it.
    clock: Arc<ClockWatch>,
}

impl std::fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNode")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How many times one request loads the scripts again after `NOSCRIPT`.
/// Once is not enough: a second `SCRIPT FLUSH` can land between the reload
/// and the retry (an operator flushing twice while a request that its round
/// no longer waited for is still out), and the retry then meets `NOSCRIPT`
/// again, which would count as a failed node though nothing is wrong with
/// it. A few reloads outlast any such race; the bound keeps a peer that
/// answers `NOSCRIPT` to everything from being asked for ever.
const RELOADS: u32 = 3;

/// How many connections a node's pool keeps when this crate builds the pool.
const POOL_SIZE: usize = 8;

impl RedisNode {
    /// A node from a `redis://`, `rediss://` (feature `tls`) or
    /// `redis+unix://` / `unix://` URL. The URL is checked here; nothing
    /// connects until first use.
    ///
    /// Connections are made with no response timeout of their own: the
    /// per-node timeout of [`LockOptions`](crate::LockOptions) bounds every
    /// call instead.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a URL that does not parse, an unsupported
    /// scheme, or `rediss://` without the `tls` feature. The message never shows
    /// a password.
    pub fn from_url(url: &str) -> Result<Self> {
        if cfg!(not(feature = "tls")) && url.starts_with("rediss://") {
            return Err(Error::InvalidOptions(format!(
                "bad node URL {}: TLS (rediss://) needs fencelock's `tls` feature",
                redact(url)
            )));
        }
        let info = url
            .into_connection_info()
            .map_err(|e| Error::InvalidOptions(format!("bad node URL {}: {e}", redact(url))))?;
        Self::from_connection_info(info, url)
    }

    /// A node from a `rediss://` URL whose TLS connections use `tls`: the
    /// root certificates that the server's certificate must chain to
    /// (`root_cert`, PEM; `None`: the system's trust store, as with
    /// [`from_url`](Self::from_url)), and a client certificate and key for
    /// servers that ask for one (`client_tls`, PEM). Both the connections
    /// for commands and the one for release notifications use them. The
    /// PEM is checked here; nothing connects until first use.
    ///
    /// A server whose certificate does not verify (another CA, another
    /// host name) fails every request with [`NodeFault::Denied`](crate::NodeFault::Denied) naming the
    /// certificate problem, and such refusals make quorum failures final
    /// (see [`Error::is_denied`]).
    ///
    /// rustls needs a process-wide crypto provider: if the process has not
    /// installed one yet, this installs rustls's `ring` provider (what
    /// rustls itself does when `ring` is its only provider). To use another
    /// one, install it before making nodes.
    ///
    /// ```no_run
    /// # fn demo() -> fencelock::Result<()> {
    /// use fencelock::{ClientTlsConfig, LockOptions, Locker, RedisNode, Redlock, TlsCertificates};
    ///
    /// let read = |path: &str| std::fs::read(path).expect("readable PEM file");
    /// let tls = TlsCertificates {
    ///     root_cert: Some(read("/etc/fencelock/ca.pem")),
    ///     // Only for servers started with `--tls-auth-clients yes`.
    ///     client_tls: Some(ClientTlsConfig {
    ///         client_cert: read("/etc/fencelock/client.pem"),
    ///         client_key: read("/etc/fencelock/client-key.pem"),
    ///     }),
    /// };
    /// let nodes = ["rediss://10.0.0.1:6380", "rediss://10.0.0.2:6380", "rediss://10.0.0.3:6380"]
    ///     .into_iter()
    ///     .map(|url| RedisNode::from_url_with_tls(url, tls.clone()))
    ///     .collect::<fencelock::Result<Vec<_>>>()?;
    /// let locker = Locker::new(Redlock::new(nodes)?, LockOptions::default())?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for a bad URL or certificates redis-rs refuses.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn from_url_with_tls(url: &str, tls: redis::TlsCertificates) -> Result<Self> {
        let client = redis::Client::build_with_tls(url, tls)
            .map_err(|e| Error::InvalidOptions(format!("bad TLS node {}: {e}", redact(url))))?;
        Self::from_connection_info(client.get_connection_info().clone(), url)
    }

    /// A node on `info` (which carries any TLS settings), with its own pool
    /// and a client for notifications; `url` only names it in errors.
    fn from_connection_info(info: ConnectionInfo, url: &str) -> Result<Self> {
        #[cfg(feature = "tls")]
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            ensure_crypto_provider();
        }
        let name = info.addr().to_string();
        let client = redis::Client::open(info.clone())
            .map_err(|e| Error::InvalidOptions(format!("bad node URL {}: {e}", redact(url))))?;
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        let manager = Manager::new_with_config(info, config)
            .map_err(|e| Error::InvalidOptions(format!("bad node URL {}: {e}", redact(url))))?;
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::InvalidOptions(format!("node {name}: {e}")))?;
        Ok(Self::from_pool(name, pool).with_notifications(client))
    }

    /// A node from a deadpool-redis configuration.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] when the configuration has neither a URL nor
    /// connection settings, or they do not make a pool.
    pub fn from_config(config: &deadpool_redis::Config) -> Result<Self> {
        let info: ConnectionInfo = match (&config.url, &config.connection) {
            (Some(url), _) => url
                .as_str()
                .into_connection_info()
                .map_err(|e| Error::InvalidOptions(format!("bad node URL {}: {e}", redact(url))))?,
            (None, Some(connection)) => connection.clone().into(),
            (None, None) => "redis://127.0.0.1:6379"
                .into_connection_info()
                .map_err(|e| Error::InvalidOptions(e.to_string()))?,
        };
        #[cfg(feature = "tls")]
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            ensure_crypto_provider();
        }
        let name = info.addr().to_string();
        let client = redis::Client::open(info)
            .map_err(|e| Error::InvalidOptions(format!("node {name}: {e}")))?;
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| Error::InvalidOptions(format!("node {name}: {e}")))?;
        Ok(Self::from_pool(name, pool).with_notifications(client))
    }

    /// A node from an existing pool; `name` identifies it in errors and
    /// metrics (give an address, never a password).
    ///
    /// The pool does not reveal how to reach the server, so waiters on such
    /// a node poll unless [`with_notifications`](Self::with_notifications)
    /// adds a client for pub/sub.
    pub fn from_pool(name: impl Into<String>, pool: Pool) -> Self {
        Self {
            name: name.into(),
            pool,
            kept: Arc::default(),
            notifications: None,
            clock: Arc::default(),
        }
    }

    /// The same node, with `client` (for the same server) opening the one
    /// pub/sub connection on which this process hears of releases, so
    /// waiters try again as soon as a lock is freed instead of after their
    /// retry delay. Nodes made from a URL or a config have one already.
    pub fn with_notifications(mut self, client: redis::Client) -> Self {
        self.notifications = Some(client);
        self
    }

    /// The client for release notifications, if any.
    pub(crate) fn notifications(&self) -> Option<&redis::Client> {
        self.notifications.as_ref()
    }

    /// The node's address, as used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A failure of this node, for error reports.
    pub(crate) fn failure(&self, fault: NodeFault) -> NodeFailure {
        NodeFailure {
            node: self.name.clone(),
            fault,
        }
    }

    /// Runs a script (see [`run`](Self::run)); every script here is
    /// idempotent.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
        timeout: Option<Duration>,
    ) -> Result<T, NodeFault> {
        self.run(timeout, |mut conn| async move {
            call.invoke_async(&mut conn).await
        })
        .await
    }

    /// Sends a prepared command (see [`run`](Self::run)).
    pub(super) async fn query<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        timeout: Option<Duration>,
    ) -> Result<T, NodeFault> {
        self.run(timeout, |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    /// Sends a prepared call; when it is timed, judges the node's clock by
    /// the `TIME` that follows the script (see `clock`): the script's
    /// reply, or [`NodeFault::Clock`] while the node's votes do not count,
    /// whatever it replied.
    pub(super) async fn timed_query<T: FromRedisValue>(
        &self,
        call: &Call,
        timeout: Option<Duration>,
    ) -> Result<T, NodeFault> {
        let (pipe, rule) = match call {
            Call::Plain(cmd) => return self.query(cmd, timeout).await,
            Call::Timed(pipe, rule) => (pipe, rule),
        };
        let sent = Instant::now();
        let (reply, (secs, micros)): (T, (i64, i64)) = self
            .run(timeout, |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        let reading = Reading {
            sent,
            received: Instant::now(),
            node_us: secs.saturating_mul(1_000_000).saturating_add(micros),
        };
        self.clock.observe(&self.name, reading, rule)?;
        Ok(reply)
    }

    /// Runs `op` within `timeout` (`None`: the caller bounds it, as a
    /// fan-out does for all its nodes at once). Every request sent here is
    /// idempotent, so one whose kept connection turns out to be broken is
    /// tried once more on a fresh connection within the same time budget: a
    /// node restart then costs one reconnect, not a lost vote. A server that
    /// lost its scripts (`SCRIPT FLUSH`) gets them again, up to
    /// [`RELOADS`] times.
    async fn run<T, F, Fut>(&self, timeout: Option<Duration>, mut op: F) -> Result<T, NodeFault>
    where
        F: FnMut(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let (mut reconnected, mut reloads) = (false, 0);
            loop {
                // A clone of the multiplexed connection: same socket.
                let mut conn = self.connection().await?;
                match op(conn.clone()).await {
                    Ok(value) => return Ok(value),
                    Err(e) if is_broken_connection(&e) && !reconnected => {
                        self.forget_connection();
                        reconnected = true;
                    }
                    Err(e) if is_broken_connection(&e) => {
                        self.forget_connection();
                        return Err(classify(&e));
                    }
                    // Not run at all, so trying again is safe.
                    Err(e)
                        if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
                            && reloads < RELOADS =>
                    {
                        load_scripts(&mut conn).await.map_err(|e| classify(&e))?;
                        reloads += 1;
                    }
                    Err(e) => return Err(classify(&e)),
                }
            }
        };
        let Some(timeout) = timeout else {
            return attempt.await;
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(NodeFault::Timeout(timeout)),
        }
    }

    /// The node's one connection: the kept one, or the one being set up.
    ///
    /// Set-up is single-flight and runs in a task of its own. Single-flight,
    /// because every request to this node must travel on one connection, in
    /// the order it was issued: a release on a second connection could
    /// overtake the acquire it undoes and leave a stray hold (two concurrent
    /// first calls used to open two). Its own task, because a caller that
    /// stops waiting (a cancelled or timed-out acquire) must not cancel the
    /// set-up that the next request needs.
    async fn connection(&self) -> Result<MultiplexedConnection, NodeFault> {
        let setup = {
            let mut slot = lock(&self.kept);
            match &*slot {
                Slot::Ready(conn) => return Ok(conn.clone()),
                Slot::Connecting(setup) => setup.clone(),
                Slot::Empty => {
                    let setup = self.start_setup();
                    *slot = Slot::Connecting(setup.clone());
                    setup
                }
            }
        };
        setup.await
    }

    fn start_setup(&self) -> Setup {
        let (pool, kept) = (self.pool.clone(), Arc::clone(&self.kept));
        let task = tokio::spawn(async move {
            let result = async {
                let pooled = pool.get().await.map_err(|e| pool_fault(&e))?;
                let mut conn: MultiplexedConnection = (*pooled).clone();
                // Every script before first use: requests are then plain
                // EVALSHA, one message each, shared by all nodes.
                load_scripts(&mut conn).await.map_err(|e| classify(&e))?;
                Ok(conn)
            }
            .await;
            *lock(&kept) = match &result {
                Ok(conn) => Slot::Ready(conn.clone()),
                // The next request tries again.
                Err(_) => Slot::Empty,
            };
            result
        });
        let joined = async move {
            task.await.unwrap_or_else(|e| {
                Err(NodeFault::Connection(format!(
                    "connection set-up failed: {e}"
                )))
            })
        };
        joined.boxed().shared()
    }

    fn forget_connection(&self) {
        *lock(&self.kept) = Slot::Empty;
    }
}

/// A connection set-up that every waiting request shares.
type Setup = Shared<BoxFuture<'static, Result<MultiplexedConnection, NodeFault>>>;

/// The state of a node's one connection.
#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    Connecting(Setup),
    Ready(MultiplexedConnection),
}

/// Loads every script on `conn`.
async fn load_scripts(conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let mut load = redis::pipe();
    for source in scripts::SOURCES {
        load.cmd("SCRIPT").arg("LOAD").arg(source).ignore();
    }
    load.query_async(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_hidden() {
        let node = RedisNode::from_url("redis://127.0.0.1:6390").unwrap();
        assert_eq!(node.name(), "127.0.0.1:6390");
        for bad in ["", "http://x", "redis://host:notaport", "not a url"] {
            assert!(
                matches!(RedisNode::from_url(bad), Err(Error::InvalidOptions(_))),
                "{bad:?} should be rejected"
            );
        }
        let Err(Error::InvalidOptions(msg)) = RedisNode::from_url("redis://u:hunter2@host:xx")
        else {
            panic!("a bad port must be rejected");
        };
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_urls_are_accepted_with_the_tls_feature() {
        let node = RedisNode::from_url("rediss://127.0.0.1:6390").unwrap();
        assert_eq!(node.name(), "127.0.0.1:6390");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_urls_name_the_missing_feature() {
        let Err(Error::InvalidOptions(msg)) = RedisNode::from_url("rediss://127.0.0.1:6390") else {
            panic!("rediss:// needs the tls feature");
        };
        assert!(msg.contains("`tls` feature"), "{msg}");
    }
}
