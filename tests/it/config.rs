//! A backend chosen by configuration (`AnyBackend`, `Locker::connect`) and
//! the registry of named lockers, on real servers: Redis with one node,
//! Redlock with three, etcd with three members (and one with
//! authentication); then every bad input, refused with its typed error
//! before any I/O. The conformance suite runs through `AnyBackend` too
//! (`conformance::any_*`).

use std::time::Duration;

use crate::common::{
    self, ETCD_LOCK_USER, bounded, enable_etcd_auth, etcd_list, redis_list, start, start_etcd,
};
use fencelock::backend::Waiting;
use fencelock::testing::RedisServer;
use fencelock::{
    AnyBackend, Backend, BackendConfig, Error, LockOptions, Locker, Registry, RegistryConfig,
};

const LIMIT: Duration = Duration::from_secs(60);

/// `Locker::connect` on `urls`, with the tests' options.
async fn connect(urls: &str) -> Locker<AnyBackend> {
    Locker::connect(urls, common::options()).await.unwrap()
}

/// Takes `key` on `locker`, checks that a second owner (another Locker,
/// as another process would have) is refused while it is held and gets it
/// once it is released, with a higher token. Returns the second owner's
/// token.
async fn excludes_a_second_owner(
    locker: &Locker<AnyBackend>,
    other: &Locker<AnyBackend>,
    key: &str,
) -> u64 {
    let guard = locker.try_lock(key).await.unwrap();
    let refused = other.try_lock(key).await;
    assert!(
        matches!(refused, Err(Error::NotObtained { .. })),
        "{refused:?}"
    );
    assert!(other.is_locked(key).await.unwrap());
    let first = guard.token().get();
    guard.release().await.unwrap();
    let second = other.try_lock(key).await.unwrap();
    let token = second.token().get();
    assert!(token > first, "token {token} not above {first}");
    second.release().await.unwrap();
    assert!(!locker.is_locked(key).await.unwrap());
    token
}

#[tokio::test]
async fn redis_single_node_from_a_url() {
    let server = RedisServer::start().expect("start redis-server (run scripts/setup)");
    bounded(LIMIT, async {
        let (locker, other) = (connect(&server.url()).await, connect(&server.url()).await);
        assert_eq!(locker.backend().name(), "redis");
        match locker.backend() {
            AnyBackend::Redis(redlock) => assert_eq!(redlock.nodes().len(), 1),
            other => panic!("not Redis: {other:?}"),
        }
        excludes_a_second_owner(&locker, &other, "single").await;
    })
    .await;
}

#[tokio::test]
async fn redlock_of_three_from_a_url_list() {
    let nodes = start(3);
    bounded(LIMIT, async {
        let list = redis_list(&nodes);
        let (locker, other) = (connect(&list).await, connect(&list).await);
        match locker.backend() {
            AnyBackend::Redis(redlock) => {
                assert_eq!((redlock.nodes().len(), redlock.quorum()), (3, 2));
            }
            other => panic!("not Redis: {other:?}"),
        }
        assert_eq!(locker.backend().waiting(), Waiting::Notified);
        excludes_a_second_owner(&locker, &other, "quorum").await;
        // Every node has the lock: the list made a Redlock of all three.
        let guard = locker.try_lock("everywhere").await.unwrap();
        let info = locker.inspect("everywhere").await.unwrap();
        assert_eq!(info.nodes.len(), 3);
        for view in &info.nodes {
            assert!(view.lock.as_ref().unwrap().is_some(), "{view:?}");
        }
        guard.release().await.unwrap();
        locker.settled().await;
    })
    .await;
}

#[tokio::test]
async fn etcd_of_three_members_from_a_url_list() {
    let cluster = start_etcd(3);
    bounded(LIMIT, async {
        let list = etcd_list(&cluster);
        let (locker, other) = (connect(&list).await, connect(&list).await);
        assert_eq!(locker.backend().name(), "etcd");
        assert!(matches!(locker.backend(), AnyBackend::Etcd(_)));
        // etcd's own waiting: the fair queue, not the Redis notifications.
        assert_eq!(locker.backend().waiting(), Waiting::Queued);
        excludes_a_second_owner(&locker, &other, "members").await;

        // A waiter queues, and gets the lock when it is released.
        let guard = locker.lock("queued").await.unwrap();
        let waiter = {
            let other = other.clone();
            tokio::spawn(async move { other.lock_timeout("queued", LIMIT / 2).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "the waiter got a held lock");
        guard.release().await.unwrap();
        waiter.await.unwrap().unwrap().release().await.unwrap();
        locker.settled().await;
        other.settled().await;
    })
    .await;
}

/// The user of an etcd list signs in (percent-encoding and all); a wrong
/// password is a final denial at connect, and never shows.
#[tokio::test]
async fn etcd_credentials_from_the_url() {
    let cluster = start_etcd(1);
    enable_etcd_auth(&cluster).await;
    bounded(LIMIT, async {
        let members = etcd_list(&cluster);
        let host = members.strip_prefix("etcd://").unwrap();
        let (user, password) = ETCD_LOCK_USER;
        // "locker-pw" with its `-` percent-encoded, as a password with a
        // `,` or an `@` would have to be.
        let encoded = password.replace('-', "%2D");
        let signed = format!("etcd://{user}:{encoded}@{host}");
        let (locker, other) = (connect(&signed).await, connect(&signed).await);
        excludes_a_second_owner(&locker, &other, "signed").await;

        let wrong = format!("etcd://{user}:not-the-password@{host}");
        let refused = Locker::connect(&wrong, common::options()).await;
        let error = refused.unwrap_err();
        assert!(error.is_denied() && !error.is_retryable(), "{error}");
        assert!(!format!("{error} {error:?}").contains("not-the-password"));
        let config = BackendConfig::parse(&signed).unwrap();
        let shown = format!("{config} {config:?}");
        assert!(
            !shown.contains(password) && !shown.contains(&encoded),
            "{shown}"
        );
        locker.settled().await;
        other.settled().await;
    })
    .await;
}

/// The registry of the issue: "billing" on Redlock, "migrations" on etcd,
/// read from the text form, with options for one name.
#[tokio::test]
async fn a_registry_of_redlock_and_etcd_lockers() {
    let nodes = start(3);
    let cluster = start_etcd(1);
    bounded(LIMIT, async {
        let text = format!(
            "# two backends, one binary\nbilling = {}\nmigrations = {}\n",
            redis_list(&nodes),
            etcd_list(&cluster)
        );
        let ttl = Duration::from_secs(7);
        let config = RegistryConfig::parse(&text)
            .unwrap()
            .options("billing", common::options().ttl(ttl))
            .unwrap();
        let registry = Registry::connect(&config).await.unwrap();
        assert_eq!(
            registry.names().collect::<Vec<_>>(),
            ["billing", "migrations"]
        );
        let billing = registry.get("billing").unwrap();
        let migrations = registry.get("migrations").unwrap();
        assert_eq!(billing.backend().name(), "redis");
        assert_eq!(migrations.backend().name(), "etcd");
        assert_eq!(billing.options().ttl, ttl);
        assert_eq!(migrations.options().ttl, LockOptions::default().ttl);

        // Each name is its own store: the same resource is free in the other.
        let invoices = billing.try_lock("run").await.unwrap();
        let schema = migrations.try_lock("run").await.unwrap();
        // A clone shares the lockers; a second registry is another owner.
        let shared = registry.clone();
        let held = shared.get("billing").unwrap().statistics().held;
        assert_eq!(held, 1);
        let second = Registry::connect(&config).await.unwrap();
        for name in ["billing", "migrations"] {
            let refused = second.get(name).unwrap().try_lock("run").await;
            assert!(
                matches!(refused, Err(Error::NotObtained { .. })),
                "{name}: {refused:?}"
            );
        }
        invoices.release().await.unwrap();
        schema.release().await.unwrap();

        match registry.get("payroll") {
            Err(Error::UnknownLocker { name, known }) => {
                assert_eq!(name, "payroll");
                assert_eq!(known, ["billing", "migrations"]);
            }
            other => panic!("{other:?}"),
        }
        registry.settled().await;
        second.settled().await;
    })
    .await;
}

/// What `Error::UnsupportedScheme` is expected to say.
#[tokio::test]
async fn a_configured_quarantine_reaches_the_redlock() {
    let config =
        BackendConfig::parse("redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3")
            .unwrap()
            .with_quarantine(Duration::from_secs(30))
            .unwrap();
    let backend = AnyBackend::connect(&config).await.unwrap();
    let AnyBackend::Redis(redlock) = &backend else {
        panic!("a Redis list makes a Redlock: {backend:?}");
    };
    assert_eq!(redlock.quarantine(), Duration::from_secs(30));
}

fn unsupported(result: fencelock::Result<impl std::fmt::Debug>) -> (String, String) {
    match result {
        Err(Error::UnsupportedScheme {
            url,
            scheme,
            accepted,
            ..
        }) => {
            assert!(accepted.contains(&"redis") && accepted.contains(&"etcd"));
            (url, scheme)
        }
        other => panic!("expected UnsupportedScheme, got {other:?}"),
    }
}

fn invalid(result: fencelock::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::InvalidOptions(message)) => message,
        other => panic!("expected InvalidOptions, got {other:?}"),
    }
}

/// Every bad input is refused by type, naming the problem, before any I/O
/// (nothing listens at the addresses: a call that went out would fail
/// otherwise, and slowly).
#[tokio::test]
async fn bad_configuration_is_refused_by_type_before_any_io() {
    bounded(Duration::from_secs(10), async {
        for (list, scheme) in [
            ("http://127.0.0.1:2379", "http"),
            ("mysql://127.0.0.1:3306", "mysql"),
            ("127.0.0.1:6379", ""),
            ("redis://127.0.0.1:1,127.0.0.1:2", ""),
            ("etcd://127.0.0.1:1,https://127.0.0.1:2", "https"),
        ] {
            let (url, found) = unsupported(Locker::connect(list, LockOptions::default()).await);
            assert_eq!(found, scheme, "{list}");
            assert!(list.contains(&url), "{list}: {url}");
            unsupported(RegistryConfig::new().add("a", list));
        }
        let message = BackendConfig::parse("mysql://u:s3cret@db:3306")
            .unwrap_err()
            .to_string();
        assert!(message.contains("mysql://***@db:3306"), "{message}");
        assert!(message.contains("redis://, rediss://"), "{message}");

        for list in [
            "redis://127.0.0.1:1,etcd://127.0.0.1:2",
            "etcd://127.0.0.1:2,redis://127.0.0.1:1",
            "unix:///tmp/r.sock,etcd://127.0.0.1:2",
        ] {
            let mixed = BackendConfig::parse(list);
            assert!(
                matches!(mixed, Err(Error::MixedBackends { .. })),
                "{list}: {mixed:?}"
            );
        }
        let rediss = BackendConfig::parse("rediss://127.0.0.1:1");
        if cfg!(feature = "tls") {
            assert_eq!(rediss.unwrap().backend(), "redis");
        } else {
            let (_, scheme) = unsupported(rediss);
            assert_eq!(scheme, "rediss");
        }

        for (list, needle) in [
            ("", "no backend URLs"),
            ("redis://127.0.0.1:1,", "URL 2 of 2 in the list is empty"),
            ("redis://127.0.0.1:1,redis://127.0.0.1:1", "listed twice"),
            ("etcd://127.0.0.1:1,127.0.0.1:1", "listed twice"),
            ("etcd://127.0.0.1:1/prefix", "no path"),
        ] {
            let message = invalid(Locker::connect(list, LockOptions::default()).await);
            assert!(message.contains(needle), "{list:?}: {message}");
        }
        // Bad options are refused before connecting, too.
        let zero = LockOptions::default().ttl(Duration::ZERO);
        invalid(Locker::connect("etcd://127.0.0.1:1", zero).await);

        for (text, needle) in [
            (
                "billing redis://127.0.0.1:1",
                "line 1: expected `name = URL",
            ),
            (" = redis://127.0.0.1:1", "locker name \"\" is empty"),
            ("bill ing = redis://127.0.0.1:1", "may hold only"),
        ] {
            let message = invalid(RegistryConfig::parse(text));
            assert!(message.contains(needle), "{text:?}: {message}");
        }
        let twice = RegistryConfig::parse("a = redis://127.0.0.1:1\na = etcd://127.0.0.1:2");
        assert!(matches!(twice, Err(Error::DuplicateLocker { name }) if name == "a"));
        invalid(Registry::connect(&RegistryConfig::new()).await);

        let config = RegistryConfig::parse("a = redis://127.0.0.1:1").unwrap();
        let unknown = config.clone().options("b", LockOptions::default());
        assert!(
            matches!(unknown, Err(Error::UnknownLocker { .. })),
            "{unknown:?}"
        );
        let registry = Registry::connect(&config).await.unwrap();
        let error = registry.get("b").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no locker named \"b\"; configured: \"a\""
        );
    })
    .await;
}
