//! Owner ids and hold ids are secrets: whoever knows them can extend and
//! release the locks they name. Errors name the resource, never an owner
//! or a hold; `Debug` shows at most the first digits of one. Here every
//! error kind that can be provoked against real servers is, on every
//! backend configuration, by owners whose ids the test knows (explicit
//! `Owner`s) and on a hold whose id it learns from a hand-off; no error's
//! message, source chain or `Debug` form, and no `Debug` of a Locker,
//! guard, hand-off or inspection, may contain one of them.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use crate::common;
use crate::common::harness::{EtcdMembers, Harness, Redis};
use crate::common::{bounded, options};
use fencelock::backend::Hold;
use fencelock::testing::{EtcdServer, RedisServer, TcpProxy};
use fencelock::{Error, Etcd, LockOptions, Locker, Owner, Redlock, Result, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// The secrets of one test, and the error kinds seen so far.
#[derive(Default)]
struct Secrets {
    hidden: Vec<String>,
    seen: BTreeSet<&'static str>,
}

impl Secrets {
    fn hide(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        assert!(secret.len() >= 16, "too short to search for: {secret:?}");
        self.hidden.push(secret);
    }

    fn in_text(&self, what: &str, text: &str) {
        for secret in &self.hidden {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows the secret {secret}: {text}"
            );
        }
    }

    fn in_debug(&self, what: &str, value: &impl Debug) {
        self.in_text(what, &format!("{value:?}"));
        self.in_text(what, &format!("{value:#?}"));
    }

    /// An error's message with its whole source chain, and its `Debug`.
    fn in_error(&mut self, what: &str, error: &Error) {
        self.in_debug(what, error);
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        self.in_text(what, &text);
        self.seen.insert(kind(error));
    }

    /// Checks the outcome of a call that must fail, and returns its kind.
    fn failure<T: Debug>(&mut self, what: &str, result: Result<T>) -> &'static str {
        match result {
            Ok(value) => panic!("{what} succeeded: {value:?}"),
            Err(e) => {
                self.in_error(what, &e);
                kind(&e)
            }
        }
    }

    fn saw_all(&self, kinds: &[&'static str]) {
        let missing: Vec<_> = kinds.iter().filter(|k| !self.seen.contains(*k)).collect();
        assert!(missing.is_empty(), "never provoked: {missing:?}");
    }
}

fn kind(error: &Error) -> &'static str {
    match error {
        Error::NotObtained { .. } => "NotObtained",
        Error::Timeout { .. } => "Timeout",
        Error::NotHeld { .. } => "NotHeld",
        Error::Lost { .. } => "Lost",
        Error::QuorumUnavailable { .. } if error.is_denied() => "Denied",
        Error::QuorumUnavailable { .. } => "QuorumUnavailable",
        Error::ValidityExhausted { .. } => "ValidityExhausted",
        Error::ReentrancyLimit { .. } => "ReentrancyLimit",
        Error::InvalidKey(_) => "InvalidKey",
        Error::InvalidOptions(_) => "InvalidOptions",
        Error::Backend { .. } => "Backend",
        _ => "other",
    }
}

/// The hold id inside a hand-off's text form
/// (`fencelock-handoff/2 <kind> <token> <hold id> <owner> <key>`).
fn hold_id(handoff: &fencelock::Handoff) -> String {
    handoff.to_string().split(' ').nth(3).unwrap().to_owned()
}

async fn no_error_or_debug_shows_an_owner_or_a_hold<H: Harness>() {
    let mut servers = H::start();
    let (a, b) = (Owner::random(), Owner::random());
    let mut secrets = Secrets::default();
    secrets.hide(a.to_string());
    secrets.hide(b.to_string());
    let mine = servers.locker(options()).with_owner(a.clone());
    let theirs = servers.locker(options()).with_owner(b);
    let handoff = bounded(LIMIT, async {
        // A guard whose hold id is known: taken, handed off, adopted back.
        let handoff = mine.lock("secret").await.unwrap().hand_off();
        secrets.hide(hold_id(&handoff));
        secrets.in_debug("a hand-off", &handoff);
        let guard = mine.adopt(&handoff).await.unwrap();
        let nested = mine.lock("secret").await.unwrap();
        secrets.in_debug("a Locker", &mine);
        secrets.in_debug("a guard", &guard);
        secrets.in_debug("a nested guard", &nested);
        let info = theirs.inspect("secret").await.unwrap();
        // Inspection tells operators who holds the lock, in its fields.
        assert_eq!(info.agreed.as_ref().unwrap().owner, a.to_string());
        secrets.in_debug("an inspection", &info);

        let capped = mine.with_options(options().max_reentrancy(2)).unwrap();
        let k = secrets.failure("a third hold, two allowed", capped.try_lock("secret").await);
        assert_eq!(k, "ReentrancyLimit");
        let k = secrets.failure("another owner's try", theirs.try_lock("secret").await);
        assert_eq!(k, "NotObtained");
        let waited = theirs
            .lock_timeout("secret", Duration::from_millis(200))
            .await;
        assert_eq!(secrets.failure("another owner's wait", waited), "Timeout");

        let forced = theirs.force_release("secret").await.unwrap();
        secrets.in_debug("a forced release", &forced);
        let gone = mine.adopt(&handoff).await;
        assert_eq!(secrets.failure("adopting a lock gone", gone), "NotHeld");
        // Gone from the servers (or found so by the watchdog first): the
        // guard is lost from then on.
        let extended = guard.extend(Duration::from_secs(5)).await;
        secrets.failure("extending a lock gone", extended);
        let extended = guard.extend(Duration::from_secs(5)).await;
        assert_eq!(secrets.failure("extending a lost lock", extended), "Lost");
        secrets.in_debug("a lost guard", &guard);
        secrets.failure("releasing a nested hold gone", nested.release().await);
        secrets.failure("releasing a lost lock", guard.release().await);
        mine.settled().await;
        theirs.settled().await;
        handoff
    })
    .await;

    servers.pause_all();
    bounded(LIMIT, async {
        let k = secrets.failure("a try with every server stopped", mine.try_lock("t").await);
        assert_eq!(k, "QuorumUnavailable");
        let k = secrets.failure(
            "an adopt with every server stopped",
            mine.adopt(&handoff).await,
        );
        assert_eq!(k, "QuorumUnavailable");
    })
    .await;
    servers.resume_all();
    secrets.saw_all(&[
        "NotObtained",
        "Timeout",
        "NotHeld",
        "Lost",
        "QuorumUnavailable",
        "ReentrancyLimit",
    ]);
}

macro_rules! on_every_backend {
    ($module:ident, $harness:ty) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn no_error_or_debug_shows_an_owner_or_a_hold() {
                super::no_error_or_debug_shows_an_owner_or_a_hold::<$harness>().await;
            }
        }
    };
}

on_every_backend!(redis_single, Redis<1>);
on_every_backend!(redlock_five, Redis<5>);
on_every_backend!(etcd_single, EtcdMembers<1>);
on_every_backend!(etcd_three, EtcdMembers<3>);

/// The plumbing types a backend sees are redacted too.
#[test]
fn holds_show_no_owner_or_id() {
    let (owner, id) = (Owner::random().to_string(), Owner::random().to_string());
    let mut secrets = Secrets::default();
    secrets.hide(owner.clone());
    secrets.hide(id.clone());
    let parent = fencelock::backend::Parent {
        id: Owner::random().to_string(),
        token: fencelock::FencingToken::new(7),
    };
    secrets.hide(parent.id.clone());
    let hold = Hold::new("k", owner, id).nested_in(parent.clone());
    secrets.in_debug("a hold", &hold);
    secrets.in_debug("a parent", &parent);
}

/// Tries `attempt` until it fails with `ValidityExhausted` (a slow link
/// makes it likely, not certain: a hiccup can also cost a node timeout),
/// checking every error on the way.
async fn until_exhausted<F, Fut, T>(secrets: &mut Secrets, what: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
    T: Debug,
{
    for _ in 0..20 {
        if secrets.failure(what, attempt().await) == "ValidityExhausted" {
            return;
        }
    }
    panic!("{what}: never ValidityExhausted in 20 tries");
}

/// Options for a lock of `ttl` whose validity (60% of it: the drift
/// allowance is 40%) a few slow round trips use up, while each request
/// has up to 95% of it before it times out.
fn exhausted_by(ttl: Duration) -> LockOptions {
    options()
        .ttl(ttl)
        .node_timeout(ttl.mul_f64(0.95))
        .drift_factor(0.4)
        .watchdog(Watchdog::Off)
}

/// A grant that comes too late names the resource only. On Redis, a round
/// trip through a link with 7 ms each way uses up the 10 ms of validity
/// of a 20 ms ttl.
#[tokio::test]
async fn validity_exhausted_on_redis_shows_no_owner() {
    let server = RedisServer::start().expect("start redis-server (run scripts/setup)");
    let proxy = TcpProxy::start(server.addr()).unwrap();
    let owner = Owner::random();
    let mut secrets = Secrets::default();
    secrets.hide(owner.to_string());
    let redlock = Redlock::from_urls([proxy.redis_url()]).unwrap();
    let locker = Locker::new(redlock, options().watchdog(Watchdog::Off))
        .unwrap()
        .with_owner(owner);
    let short = locker
        .with_options(exhausted_by(Duration::from_millis(20)))
        .unwrap();
    bounded(LIMIT, async {
        // Connected before the link slows down.
        common::lock_once(&locker, "warm").await;
        proxy.set_latency(Duration::from_millis(7));
        until_exhausted(&mut secrets, "a late grant", || short.try_lock("late")).await;
        proxy.heal();
        locker.settled().await;
    })
    .await;
}

/// The same on etcd, with 15 ms each way (a request takes 35 to 60 ms, its
/// frames passed on one after another), for a first hold (a lease grant
/// and a transaction against 54 ms of validity) and for a nested one (a
/// read, a compare-and-swap, then a keep-alive in two exchanges, against
/// 106 ms), whose error once named the holder key, which contains the
/// owner id.
#[tokio::test]
async fn validity_exhausted_on_etcd_shows_no_owner() {
    let server = EtcdServer::start().expect("start etcd (run scripts/setup)");
    let proxy = TcpProxy::start(server.client_addr()).unwrap();
    let owner = Owner::random();
    let mut secrets = Secrets::default();
    secrets.hide(owner.to_string());
    let etcd = Etcd::connect([format!("http://{}", proxy.addr())], None)
        .await
        .unwrap();
    let locker = Locker::new(etcd, options().watchdog(Watchdog::Off))
        .unwrap()
        .with_owner(owner);
    bounded(LIMIT, async {
        let outer = locker.lock("nested").await.unwrap();
        proxy.set_latency(Duration::from_millis(15));
        let first = locker
            .with_options(exhausted_by(Duration::from_millis(90)))
            .unwrap();
        until_exhausted(&mut secrets, "a late first hold", || {
            first.try_lock("first")
        })
        .await;
        let nested = locker
            .with_options(exhausted_by(Duration::from_millis(180)))
            .unwrap();
        until_exhausted(&mut secrets, "a late nested hold", || {
            nested.try_lock("nested")
        })
        .await;
        proxy.heal();
        outer.release().await.unwrap();
        locker.settled().await;
    })
    .await;
}

/// A listing's page cursor is shown to callers (`Display`, `Debug`). On
/// etcd a page can end at a holder key, whose name contains the owner id:
/// the cursor must not be that key. 1001 holder keys make two pages.
#[tokio::test]
async fn list_cursors_show_no_owner() {
    let cluster = common::start_etcd(1);
    let owner = Owner::random();
    let mut secrets = Secrets::default();
    secrets.hide(owner.to_string());
    let locker = common::etcd_locker(&cluster, options());
    let client = fencelock::etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    bounded(LIMIT, async {
        let puts = (0..1001).map(|i| {
            let mut kv = client.kv_client();
            let key = format!("fencelock:many-{i:04}/h/{owner}");
            async move { kv.put(key, Owner::random().to_string(), None).await }
        });
        for put in futures::future::join_all(puts).await {
            put.unwrap();
        }
        let page = locker.list("many-", None).await.unwrap();
        secrets.in_debug("a listing's page", &page);
        let next = page.next.clone().expect("a second page");
        secrets.in_text("a listing's cursor", &next.to_string());
        let second = locker.list("many-", Some(&next)).await.unwrap();
        assert_eq!(page.resources.len() + second.resources.len(), 1001);
        assert_eq!(second.next, None);
        assert_eq!(locker.list_all("many-").await.unwrap().len(), 1001);
    })
    .await;
}

/// A client the servers refuse (a final denial): wrong credentials on
/// Redis, a user without permissions on etcd.
#[tokio::test]
async fn refusals_show_no_owner() {
    let mut builder = RedisServer::builder();
    for arg in ["--user", "alice", "on", ">s3cret", "~*", "&*", "+@all"] {
        builder = builder.arg(arg);
    }
    let server = builder
        .start()
        .expect("start redis-server (run scripts/setup)");
    let cluster = common::start_etcd(1);
    let owner = Owner::random();
    let mut secrets = Secrets::default();
    secrets.hide(owner.to_string());
    bounded(LIMIT, async {
        let url = format!("redis://alice:wrong@{}", server.addr());
        let redis = Locker::new(Redlock::from_urls([url]).unwrap(), options())
            .unwrap()
            .with_owner(owner.clone());
        let refused = redis.try_lock("refused").await;
        assert_eq!(secrets.failure("a wrong password", refused), "Denied");

        common::enable_etcd_auth(&cluster).await;
        let etcd =
            common::etcd_locker_as(&cluster, Some(common::ETCD_NO_PERMISSIONS_USER), options())
                .await
                .unwrap()
                .with_owner(owner);
        let refused = etcd.try_lock("refused").await;
        assert_eq!(
            secrets.failure("a user without permissions", refused),
            "Denied"
        );
    })
    .await;
}
