//! Hostile peers that answer well-formed replies that are wrong for a lock
//! node: a "Redis" that says `+OK` to everything (a fake, from
//! `peers`), and real redis-servers in a state that makes them
//! refuse or forget: a replica (read-only, its data replaced by its
//! primary's; more in `replica`), a node out of memory under
//! `noeviction`, and a node whose scripts are flushed while in use
//! (`scripts`).
//!
//! What each must give: a typed error naming the node and the cause,
//! nothing that panics or hangs, and no false grant: a lock, a write or
//! read hold, or a permit is granted only when a quorum of honest nodes
//! really holds it, which the tests check on those servers directly, and
//! nothing is left on any server afterwards.

use std::time::Duration;

use super::peers::{Hostile, NODE_TIMEOUT, Peer};
use crate::common::{bounded, conn, hash, lock_keys, pttl, wait_until};
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use fencelock::{
    Error, FencingToken, LockOptions, Locker, MAX_PERMITS, NodeFault, Redlock, RetryPolicy,
    Watchdog,
};

pub(crate) const LIMIT: Duration = Duration::from_secs(60);
/// A short wait for `lock_timeout`: long enough for a few attempts.
const SHORT_WAIT: Duration = Duration::from_millis(400);
/// What a replica's refusal says (redis-rs names the `READONLY` code
/// `ReadOnly`).
pub(crate) const READ_ONLY: &str = "read only replica";
/// How long a replica may take to load its primary's data.
const SYNC_LIMIT: Duration = Duration::from_secs(15);

pub(crate) fn options() -> LockOptions {
    LockOptions::default()
        .ttl(Duration::from_secs(10))
        .node_timeout(NODE_TIMEOUT)
        .watchdog(Watchdog::Off)
        .retry(
            RetryPolicy::default()
                .delay(Duration::from_millis(20))
                .jitter(Duration::from_millis(10)),
        )
}

/// A primary for replicas: it sends its data at once (the default waits
/// 5 s for more replicas before a diskless sync).
pub(crate) fn primary() -> RedisServer {
    RedisServer::builder()
        .arg("--repl-diskless-sync-delay")
        .arg("0")
        .start()
        .unwrap()
}

pub(crate) async fn command(url: &str, cmd: &mut redis::Cmd) -> redis::Value {
    cmd.query_async(&mut conn(url).await).await.unwrap()
}

/// One `field:value` line of `INFO section` on the node at `url`.
pub(crate) async fn info_field(url: &str, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn(url).await)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

/// Makes the node at `url` a replica of `primary`, and waits (bounded)
/// until it has loaded the primary's data: its own is gone then.
pub(crate) async fn make_replica(url: &str, primary: &RedisServer) {
    command(
        url,
        redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary.port()),
    )
    .await;
    wait_until(SYNC_LIMIT, async || {
        info_field(url, "replication", "master_link_status")
            .await
            .as_deref()
            == Some("up")
    })
    .await;
}

/// Fills the node at `url` until writes fail with `OOM`: `noeviction`, a
/// `maxmemory` a little above what it uses, then data until a write is
/// refused. The limit then goes 1 MiB below what the node uses, so that a
/// few bytes freed (a client's buffer) do not let a write through.
async fn fill_up(url: &str) {
    let mut c = conn(url).await;
    let used = |c: &mut redis::aio::MultiplexedConnection| {
        let mut c = c.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut c)
                .await
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        }
    };
    let config = |name: &str, value: String| {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("SET").arg(name).arg(value);
        cmd
    };
    let () = config("maxmemory-policy", "noeviction".into())
        .query_async(&mut c)
        .await
        .unwrap();
    let limit = used(&mut c).await + (2 << 20);
    let () = config("maxmemory", limit.to_string())
        .query_async(&mut c)
        .await
        .unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut refused = None;
    for i in 0..200 {
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("filler:{i}"))
            .arg(&chunk)
            .query_async(&mut c)
            .await;
        if let Err(e) = set {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("200 writes of 64 KiB fit under a 2 MiB margin");
    assert!(refused.contains("OOM"), "{refused}");
    let limit = used(&mut c).await - (1 << 20);
    let () = config("maxmemory", limit.to_string())
        .query_async(&mut c)
        .await
        .unwrap();
}

pub(crate) fn name(server: &RedisServer) -> String {
    server.addr().to_string()
}

/// A hostile node of one kind, ready, with what its faults must say.
pub(crate) struct Case {
    what: &'static str,
    url: String,
    name: String,
    /// In every fault of this node's.
    cause: &'static str,
    expected: fn(&NodeFault) -> bool,
    /// What keeps it hostile: the fake, or its servers.
    _peer: Option<Hostile>,
    servers: Vec<RedisServer>,
}

impl Case {
    async fn says_ok() -> Self {
        let peer = Hostile::start(Peer::SaysOk).await;
        Self {
            what: "says OK",
            url: peer.url(),
            name: peer.name(),
            cause: "Incompatible type",
            expected: |f| matches!(f, NodeFault::Protocol(m) if m.contains("Incompatible type")),
            _peer: Some(peer),
            servers: Vec::new(),
        }
    }

    async fn replica() -> Self {
        let (node, primary) = (RedisServer::start().unwrap(), primary());
        make_replica(&node.url(), &primary).await;
        Self {
            what: "replica",
            url: node.url(),
            name: name(&node),
            cause: READ_ONLY,
            expected: |f| matches!(f, NodeFault::Server(m) if m.contains(READ_ONLY)),
            _peer: None,
            servers: vec![node, primary],
        }
    }

    async fn out_of_memory() -> Self {
        let node = RedisServer::start().unwrap();
        fill_up(&node.url()).await;
        Self {
            what: "out of memory",
            url: node.url(),
            name: name(&node),
            cause: "OOM",
            expected: |f| matches!(f, NodeFault::Server(m) if m.contains("OOM")),
            _peer: None,
            servers: vec![node],
        }
    }

    /// A node that refuses writes as a replica does; its servers are the
    /// caller's.
    pub(crate) fn read_only(node: &RedisServer) -> Self {
        Self {
            what: "read-only",
            url: node.url(),
            name: name(node),
            cause: READ_ONLY,
            expected: |f| matches!(f, NodeFault::Server(m) if m.contains(READ_ONLY)),
            _peer: None,
            servers: Vec::new(),
        }
    }

    /// `err` is `QuorumUnavailable` with `(confirmed, refused, needed)`,
    /// whose one failure is this node's, with its fault, and whose message
    /// names the node and the cause.
    pub(crate) fn assert_outage(&self, err: &Error, counts: (usize, usize, usize)) {
        let what = self.what;
        let Error::QuorumUnavailable {
            confirmed,
            refused,
            needed,
            failures,
        } = err
        else {
            panic!("{what}: expected QuorumUnavailable, got {err:?}");
        };
        assert_eq!((*confirmed, *refused, *needed), counts, "{what}: {err}");
        assert_eq!(failures.len(), 1, "{what}: {err}");
        assert_eq!(failures[0].node, self.name, "{what}: {err}");
        assert!((self.expected)(&failures[0].fault), "{what}: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&self.name) && message.contains(self.cause),
            "{what}: {message}"
        );
    }

    /// Neither this node nor its servers hold any lock key.
    async fn assert_clean(&self) {
        for server in &self.servers {
            let left = lock_keys(&server.url()).await;
            assert!(
                left.is_empty(),
                "{}: {}: left {left:?}",
                self.what,
                server.url()
            );
        }
    }
}

/// Whether the real node at `url` holds the hold of `token` on `key`: the
/// lock hash carries the token (a lock's `:token`, a read-write lock's
/// `t:<root>`), or for a permit in `slot`, the slot's hash its count.
async fn holds(url: &str, key: &str, token: FencingToken, slot: Option<u32>) -> bool {
    let lock = format!("fencelock:{{{key}}}");
    match slot {
        Some(slot) => {
            let count = (token.get() / u64::from(MAX_PERMITS)).to_string();
            let fields = hash(url, &format!("{lock}:permit:{slot}")).await;
            fields.iter().any(|(f, v)| f == ":token" && *v == count)
        }
        None => hash(url, &lock)
            .await
            .iter()
            .any(|(f, v)| (f == ":token" || f.starts_with("t:")) && *v == token.to_string()),
    }
}

/// A grant is real only if every honest node of `honest` (with one hostile
/// node beside them, all of them make the quorum) holds it.
pub(crate) async fn assert_granted_on(
    honest: &[&RedisServer],
    key: &str,
    token: FencingToken,
    slot: Option<u32>,
) {
    for server in honest {
        assert!(
            holds(&server.url(), key, token, slot).await,
            "{key}: token {token} granted, but {} does not hold it: {:?}",
            server.url(),
            hash(&server.url(), &format!("fencelock:{{{key}}}")).await
        );
    }
}

pub(crate) async fn assert_no_locks(servers: &[&RedisServer]) {
    for server in servers {
        let left = lock_keys(&server.url()).await;
        assert!(left.is_empty(), "{}: left {left:?}", server.url());
    }
}

/// Every first acquire on `case`'s node alone: a lock, a write and a read
/// hold, a permit. Each is an outage naming the node and the cause, a
/// wait for it times out, and nothing is taken anywhere.
async fn alone(case: &Case) {
    let locker = Locker::new(Redlock::from_urls([case.url.clone()]).unwrap(), options()).unwrap();
    let outage = (0, 0, 1);
    let err = locker.try_lock("alone").await.map(|_| ()).unwrap_err();
    case.assert_outage(&err, outage);
    let err = locker.try_write("alone-rw").await.map(|_| ()).unwrap_err();
    case.assert_outage(&err, outage);
    let err = locker.try_read("alone-rw").await.map(|_| ()).unwrap_err();
    case.assert_outage(&err, outage);
    let semaphore = locker.semaphore("alone-sem", 2).unwrap();
    let err = semaphore.try_acquire().await.map(|_| ()).unwrap_err();
    case.assert_outage(&err, outage);
    let err = locker
        .lock_timeout("alone", SHORT_WAIT)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { .. }),
        "{}: {err:?}",
        case.what
    );
    locker.settled().await;
    case.assert_clean().await;
}

/// `case`'s node between two honest ones: every kind of hold is granted
/// (and held by both), and released, leaving nothing anywhere.
async fn outvoted(case: &Case) {
    let honest = [RedisServer::start().unwrap(), RedisServer::start().unwrap()];
    let honest: Vec<&RedisServer> = honest.iter().collect();
    let urls = [honest[0].url(), case.url.clone(), honest[1].url()];
    let locker = Locker::new(Redlock::from_urls(urls).unwrap(), options()).unwrap();

    let guard = locker.try_lock("outvoted").await.unwrap();
    assert_granted_on(&honest, "outvoted", guard.token(), None).await;
    guard.extend(Duration::from_secs(20)).await.unwrap();
    guard.release().await.unwrap();

    let write = locker.try_write("outvoted-rw").await.unwrap();
    assert_granted_on(&honest, "outvoted-rw", write.token(), None).await;
    write.release().await.unwrap();
    let read = locker.try_read("outvoted-rw").await.unwrap();
    assert_granted_on(&honest, "outvoted-rw", read.token(), None).await;
    read.release().await.unwrap();

    let semaphore = locker.semaphore("outvoted-sem", 2).unwrap();
    let permit = semaphore.try_acquire().await.unwrap();
    let slot = Some(permit.slot());
    assert_granted_on(&honest, "outvoted-sem", permit.token(), slot).await;
    permit.release().await.unwrap();

    locker.settled().await;
    assert_no_locks(&honest).await;
    case.assert_clean().await;
}

#[tokio::test]
async fn a_peer_that_says_ok_to_everything_grants_nothing() {
    bounded(LIMIT, async {
        let case = Case::says_ok().await;
        alone(&case).await;
        outvoted(&case).await;
    })
    .await;
}

#[tokio::test]
async fn a_replica_refuses_every_grant_and_is_outvoted() {
    bounded(LIMIT, async {
        let case = Case::replica().await;
        alone(&case).await;
        outvoted(&case).await;
    })
    .await;
}

#[tokio::test]
async fn a_node_out_of_memory_refuses_every_grant_and_is_outvoted() {
    bounded(LIMIT, async {
        let case = Case::out_of_memory().await;
        alone(&case).await;
        outvoted(&case).await;
    })
    .await;
}

/// Holds taken before the node filled up: a nested acquire (which adds a
/// field) is refused with `OOM`; lengthening any hold (`PEXPIRE` first,
/// then for a read-write hold the `HSET` of its expiry field, which a
/// script that has written already may do) and releasing any of them
/// (`DEL`, `HDEL`: they free memory) go through, and the node ends empty.
#[tokio::test]
async fn holds_taken_before_the_node_filled_up_are_released() {
    let node = RedisServer::start().unwrap();
    let locker = Locker::new(Redlock::from_urls([node.url()]).unwrap(), options()).unwrap();
    let case = Case {
        what: "filled up",
        url: node.url(),
        name: name(&node),
        cause: "OOM",
        expected: |f| matches!(f, NodeFault::Server(m) if m.contains("OOM")),
        _peer: None,
        servers: Vec::new(),
    };
    bounded(LIMIT, async {
        let guard = locker.try_lock("full").await.unwrap();
        let write = locker.try_write("full-rw").await.unwrap();
        let permit = locker
            .semaphore("full-sem", 2)
            .unwrap()
            .try_acquire()
            .await
            .unwrap();
        fill_up(&node.url()).await;

        let err = locker.try_lock("full").await.map(|_| ()).unwrap_err();
        case.assert_outage(&err, (0, 0, 1));
        guard.extend(Duration::from_secs(20)).await.unwrap();
        assert!(pttl(&node.url(), "fencelock:{full}").await > 10_000);
        guard.release().await.unwrap();
        permit.extend(Duration::from_secs(20)).await.unwrap();
        permit.release().await.unwrap();
        // A write hold's expiry is a field of its hash (`x:<root>`): the
        // script lengthens the key first, and Redis then lets the field's
        // `HSET` through.
        write.extend(Duration::from_secs(20)).await.unwrap();
        assert!(pttl(&node.url(), "fencelock:{full-rw}").await > 10_000);
        write.extend(Duration::from_secs(30)).await.unwrap();
        assert!(pttl(&node.url(), "fencelock:{full-rw}").await > 20_000);
        write.release().await.unwrap();

        locker.settled().await;
        assert_no_locks(&[&node]).await;
    })
    .await;
}
