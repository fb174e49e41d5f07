//! Shared helpers for the integration tests: real nodes, a Locker on them,
//! and direct looks at what the nodes store.
#![allow(dead_code)] // `it`, `prometheus` and the checker each use a part

mod delayed;
pub mod harness;
mod recorded;

// Not every test target uses these (see the `dead_code` allowance above).
#[allow(unused_imports)]
pub use delayed::Delayed;
#[allow(unused_imports)]
pub use recorded::Recorded;

use std::future::Future;
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisNodes;
use fencelock::{LockOptions, Locker, Redlock, RetryPolicy, Watchdog};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Every test body runs under this bound, so a hang fails instead of stalling CI.
pub async fn bounded<T>(limit: Duration, body: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, body)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
}

/// Options suited to tests: short per-node timeout and quick retries.
pub fn options() -> LockOptions {
    LockOptions::default()
        .ttl(Duration::from_secs(10))
        .node_timeout(Duration::from_millis(250))
        .retry(
            RetryPolicy::default()
                .delay(Duration::from_millis(2))
                .jitter(Duration::from_millis(8)),
        )
}

/// Options whose locks expire quickly, for tests that wait for expiry: no
/// watchdog keeps them alive.
pub fn short_ttl_options() -> LockOptions {
    options()
        .ttl(Duration::from_millis(300))
        .node_timeout(Duration::from_millis(100))
        .watchdog(Watchdog::Off)
}

/// Gives every node a live connection, as in a running service, before a
/// test injects faults: a lock taken and given back, then an `inspect`,
/// which asks every node and waits for each.
pub async fn warm_up(locker: &Locker<Redlock>) {
    lock_once(locker, "warm").await;
    for view in locker.inspect("warm").await.unwrap().nodes {
        view.lock.unwrap();
    }
}

/// Takes `key` and gives it back at once; panics if either fails.
pub async fn lock_once<B: fencelock::Backend>(locker: &Locker<B>, key: &str) {
    locker.try_lock(key).await.unwrap().release().await.unwrap();
}

/// Takes `key` as a writer and gives it back at once; panics if either
/// fails.
pub async fn lock_once_as_writer<B: fencelock::Backend>(locker: &Locker<B>, key: &str) {
    locker
        .try_write(key)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

/// The remaining time to live of `key` on one node, in milliseconds.
pub async fn pttl(url: &str, key: &str) -> i64 {
    let mut c = conn(url).await;
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// A real etcd cluster of `n` members.
pub fn start_etcd(n: usize) -> fencelock::testing::EtcdCluster {
    fencelock::testing::EtcdCluster::start(n).expect("start etcd members (run scripts/setup)")
}

/// A Locker with a client of its own on `cluster`. Connecting without
/// credentials makes no request (members are dialled on first use), so the
/// future completes at once, also inside a test's runtime.
pub fn etcd_locker(
    cluster: &fencelock::testing::EtcdCluster,
    options: LockOptions,
) -> Locker<fencelock::Etcd> {
    let etcd = futures::executor::block_on(fencelock::Etcd::connect(cluster.endpoints(), None))
        .expect("an etcd client");
    Locker::new(etcd, options).unwrap()
}

/// A Locker made as a program configured by a URL list makes it
/// (`Locker::connect`), on `AnyBackend`. Without credentials nothing
/// connects until first use, so the future completes at once, also inside
/// a test's runtime.
pub fn configured_locker(urls: &str, options: LockOptions) -> Locker<fencelock::AnyBackend> {
    futures::executor::block_on(Locker::connect(urls, options)).expect("a Locker from a URL list")
}

/// The URL list of `nodes`: `redis://...,redis://...`.
pub fn redis_list(nodes: &RedisNodes) -> String {
    nodes.urls().join(",")
}

/// The URL list of `cluster`: `etcd://` and each member's `host:port`.
pub fn etcd_list(cluster: &fencelock::testing::EtcdCluster) -> String {
    let members: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| {
            e.strip_prefix("http://")
                .expect("an http:// endpoint")
                .to_owned()
        })
        .collect();
    format!("etcd://{}", members.join(","))
}

/// A Locker on `AnyBackend` over `nodes`, from their URL list.
pub fn any_redis_locker(nodes: &RedisNodes, options: LockOptions) -> Locker<fencelock::AnyBackend> {
    configured_locker(&redis_list(nodes), options)
}

/// A Locker on `AnyBackend` over `cluster`, from its URL list.
pub fn any_etcd_locker(
    cluster: &fencelock::testing::EtcdCluster,
    options: LockOptions,
) -> Locker<fencelock::AnyBackend> {
    configured_locker(&etcd_list(cluster), options)
}

pub fn start(n: usize) -> RedisNodes {
    RedisNodes::start(n).expect("start redis-server nodes (run scripts/setup)")
}

pub fn locker(nodes: &RedisNodes, options: LockOptions) -> Locker<Redlock> {
    Locker::new(Redlock::from_urls(nodes.urls()).unwrap(), options).unwrap()
}

/// One `try_lock` from another tokio task, hence another owner.
pub async fn try_from_another_task(locker: &Locker<Redlock>, key: &str) -> fencelock::Result<()> {
    let (other, key) = (locker.clone(), key.to_owned());
    tokio::spawn(async move { other.try_lock(&key).await.map(|_| ()) })
        .await
        .unwrap()
}

/// A plain connection to one node, for looking at its keys.
pub async fn conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The channel on which releases of resource `key` (default prefix) are
/// announced.
pub fn release_channel(key: &str) -> String {
    format!("fencelock:{{{key}}}:released")
}

/// How many subscribers `channel` has on the server behind `conn`.
pub async fn subscribers(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> u64 {
    let (_, n): (String, u64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .unwrap();
    n
}

/// The lock keys (not fence counters, the node's marker, nor `FencedStore`
/// resources) present on one node.
pub async fn lock_keys(url: &str) -> Vec<String> {
    let mut c = conn(url).await;
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("fencelock:*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(batch.into_iter().filter(|k| {
            !k.ends_with(":fence") && k != "fencelock:node" && !k.starts_with("fencelock:fenced:")
        }));
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Waits until no node holds any lock key; panics with what is left after `limit`.
/// Background releases finish within a few round trips, far below any ttl
/// the tests use, so reaching the limit means a lock was left behind.
pub async fn wait_until_no_locks(nodes: &RedisNodes, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let mut left = Vec::new();
        for node in nodes.iter().filter(|n| n.is_running() && !n.is_paused()) {
            for key in lock_keys(&node.url()).await {
                left.push(format!("{}: {key}", node.url()));
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "locks left after {limit:?}: {left:?}\n{}",
            nodes.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A lock hash on one node, field by field, sorted (empty when absent).
pub async fn hash(url: &str, key: &str) -> Vec<(String, String)> {
    let mut c = conn(url).await;
    let mut fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    fields.sort();
    fields
}

/// How many scripts one node has run so far (EVAL and EVALSHA calls).
pub async fn script_calls(url: &str) -> u64 {
    let mut c = conn(url).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_eval:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Polls `condition` every 10 ms until it holds; panics after `limit`.
/// For states reached by background work that gives no signal of its own.
pub async fn wait_until(limit: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The users [`enable_etcd_auth`] makes, as `(name, password)`: one that
/// may use the locks (read and write under the default prefix
/// `fencelock:`), and one with no permission at all.
pub const ETCD_LOCK_USER: (&str, &str) = ("locker", "locker-pw");
pub const ETCD_NO_PERMISSIONS_USER: (&str, &str) = ("nobody", "nobody-pw");

/// Turns authentication on in `cluster` through etcd's own auth API (no
/// `etcdctl` needed): a `root` user with the root role, which etcd insists
/// on, and the users of [`ETCD_LOCK_USER`] and [`ETCD_NO_PERMISSIONS_USER`].
/// From then on a request without valid credentials is refused.
pub async fn enable_etcd_auth(cluster: &fencelock::testing::EtcdCluster) {
    use fencelock::etcd_client::{Client, Permission};
    let mut client = Client::connect(cluster.endpoints(), None).await.unwrap();
    client.user_add("root", "root-pw", None).await.unwrap();
    client.user_grant_role("root", "root").await.unwrap();
    client.role_add("locks").await.unwrap();
    client
        .role_grant_permission("locks", Permission::read_write("fencelock:").with_prefix())
        .await
        .unwrap();
    let (name, password) = ETCD_LOCK_USER;
    client.user_add(name, password, None).await.unwrap();
    client.user_grant_role(name, "locks").await.unwrap();
    let (name, password) = ETCD_NO_PERMISSIONS_USER;
    client.user_add(name, password, None).await.unwrap();
    client.auth_enable().await.unwrap();
}

/// An etcd Locker that signs in as `user` (`None`: no credentials).
pub async fn etcd_locker_as(
    cluster: &fencelock::testing::EtcdCluster,
    user: Option<(&str, &str)>,
    options: LockOptions,
) -> fencelock::Result<Locker<fencelock::Etcd>> {
    let connect = user.map(|(name, password)| {
        fencelock::etcd_client::ConnectOptions::new().with_user(name, password)
    });
    let etcd = fencelock::Etcd::connect(cluster.endpoints(), connect).await?;
    Ok(Locker::new(etcd, options).unwrap())
}

/// A builder of nodes with clocks of their own
/// (`RedisServerBuilder::fake_clock`): libfaketime needs a server built
/// with libc's malloc, so the first such server of the matrix that
/// scripts/setup fetched (target/servers/matrix), not Debian's
/// redis-server, which uses jemalloc. A missing matrix fails loudly.
pub fn fake_clock_servers() -> fencelock::testing::RedisServerBuilder {
    let matrix = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/servers/matrix");
    let listing = std::fs::read_to_string(&matrix)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup", matrix.display()));
    let binary = listing
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, path)| path.to_owned()))
        .find(|path| {
            std::process::Command::new(path)
                .arg("--version")
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("malloc=libc"))
        })
        .unwrap_or_else(|| panic!("no server built with libc's malloc in {}", matrix.display()));
    fencelock::testing::RedisServer::builder()
        .binary(binary)
        .fake_clock()
}
