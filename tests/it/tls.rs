//! TLS to Redis nodes, against a real redis-server serving TLS only, with
//! certificates made here for each test: locking, fencing and release
//! notifications over `rediss://`; a server certificate from another CA is
//! a final error naming the node and the certificate, in bounded time,
//! for `try_lock`, `lock_timeout` and a `lock` without a timeout; a plain
//! client at a TLS port and a TLS client at a plain port fail clearly and
//! in bounded time; client certificates when the server asks for them.
#![cfg(feature = "tls")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::bounded;
use fencelock::deadpool_redis::redis;
use fencelock::testing::RedisServer;
use fencelock::{
    ClientTlsConfig, Error, LockOptions, Locker, NodeFault, RedisNode, Redlock, RetryPolicy,
    TlsCertificates,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

const LIMIT: Duration = Duration::from_secs(20);
/// How soon a final error must come back; far below any wait in the tests,
/// and far above a few connection attempts on loopback.
const PROMPT: Duration = Duration::from_secs(5);

/// A test CA, named `name`, and its issuer for signing.
fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A leaf certificate signed by `issuer`: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "fencelock test");
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The certificates of one test: the CA the server's certificate comes
/// from, a client certificate from the same CA, and a stranger CA that
/// signed nothing here.
struct Pki {
    /// Holds the PEM files the server reads.
    dir: TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
    stranger_ca: String,
}

impl Pki {
    fn new() -> Self {
        let (ca, issuer) = new_ca("fencelock test CA");
        let (server_cert, server_key) = leaf(
            &issuer,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(&issuer, &["client"], ExtendedKeyUsagePurpose::ClientAuth);
        let (stranger_ca, _) = new_ca("a stranger CA");
        let dir = tempfile::tempdir().unwrap();
        for (name, pem) in [
            ("ca.pem", &ca),
            ("server.pem", &server_cert),
            ("server-key.pem", &server_key),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        Pki {
            dir,
            ca,
            client_cert,
            client_key,
            stranger_ca,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A redis-server serving TLS only, with the server certificate.
    fn server(&self, extra: &[&str]) -> RedisServer {
        let mut builder = RedisServer::builder().tls(
            self.file("server.pem"),
            self.file("server-key.pem"),
            self.file("ca.pem"),
        );
        for arg in extra {
            builder = builder.arg(*arg);
        }
        builder
            .start()
            .expect("start a TLS redis-server (run scripts/setup)")
    }

    /// Trusts only the test CA; no client certificate.
    fn trusting_ca(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: None,
            root_cert: Some(self.ca.clone().into_bytes()),
        }
    }

    /// Trusts the test CA and shows the client certificate.
    fn with_client_cert(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: Some(ClientTlsConfig {
                client_cert: self.client_cert.clone().into_bytes(),
                client_key: self.client_key.clone().into_bytes(),
            }),
            ..self.trusting_ca()
        }
    }

    /// Trusts only the stranger CA: the server's certificate cannot verify.
    fn trusting_a_stranger(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: None,
            root_cert: Some(self.stranger_ca.clone().into_bytes()),
        }
    }
}

/// The node timeout of these tests. It bounds a node's connection set-up
/// too, and a TLS one costs more than a plain one: redis-rs reads the
/// system's trust store for every TLS connection (even when given its own
/// roots), which takes a while in a debug build on a busy machine.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// The tests of this file take turns. A TLS connection's set-up (handshake
/// and loading the system's trust store, in a debug build) costs tens of
/// milliseconds of CPU, and redis-rs gives it 1 s: several at once on a
/// small, busy machine could run out of it, and a set-up that times out
/// is an outage, not the refusal a test waits for.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options() -> LockOptions {
    LockOptions::default().node_timeout(NODE_TIMEOUT)
}

fn tls_locker(url: &str, tls: TlsCertificates, options: LockOptions) -> Locker<Redlock> {
    let node = RedisNode::from_url_with_tls(url, tls).unwrap();
    Locker::new(Redlock::new(vec![node]).unwrap(), options).unwrap()
}

/// A plain connection over the node's unix socket, to look at its data.
async fn socket_conn(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let socket = server.socket().expect("a TLS node has a socket");
    common::conn(&format!("unix://{}", socket.display())).await
}

/// The one failure of a one-node quorum failure, checked to name `server`.
fn only_failure<'e>(err: &'e Error, server: &RedisServer) -> &'e NodeFault {
    let Error::QuorumUnavailable { failures, .. } = err else {
        panic!("expected QuorumUnavailable, got {err:?}");
    };
    assert_eq!(failures.len(), 1, "{err}");
    assert_eq!(failures[0].node, format!("127.0.0.1:{}", server.port()));
    &failures[0].fault
}

#[tokio::test]
async fn locks_fences_and_wakes_waiters_over_tls() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let pki = Pki::new();
    let server = pki.server(&[]);
    assert!(server.url().starts_with("rediss://"), "{}", server.url());
    // A poll would come only after a minute: the waiter must be woken by
    // the release announcement, which comes over its own TLS connection.
    let locker = tls_locker(
        &server.url(),
        pki.trusting_ca(),
        options().retry(RetryPolicy::default().delay(Duration::from_secs(60))),
    );
    let mut plain = socket_conn(&server).await;
    bounded(LIMIT, async {
        let guard = locker.lock("billing").await.unwrap();
        let fence: u64 = redis::cmd("GET")
            .arg("fencelock:{billing}:fence")
            .query_async(&mut plain)
            .await
            .unwrap();
        assert_eq!(
            fence,
            guard.token().get(),
            "the token is the node's counter"
        );
        let waiter = {
            let locker = locker.clone();
            tokio::spawn(async move { locker.lock("billing").await })
        };
        let channel = common::release_channel("billing");
        common::wait_until(Duration::from_secs(10), async || {
            common::subscribers(&mut plain, &channel).await == 1
        })
        .await;
        let first = guard.token();
        guard.release().await.unwrap();
        let woken = Instant::now();
        let second = waiter.await.unwrap().unwrap();
        assert!(second.token() > first, "{} after {first}", second.token());
        assert!(
            woken.elapsed() < PROMPT,
            "woken after {:?}",
            woken.elapsed()
        );
        let exists: bool = redis::cmd("EXISTS")
            .arg("fencelock:{billing}")
            .query_async(&mut plain)
            .await
            .unwrap();
        assert!(exists, "the waiter holds the lock now");
        second.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_a_final_error_naming_the_node() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let pki = Pki::new();
    let server = pki.server(&[]);
    let locker = tls_locker(&server.url(), pki.trusting_a_stranger(), options());
    bounded(LIMIT, async {
        let refused = locker.try_lock("billing").await.map(|_| ()).unwrap_err();
        let fault = only_failure(&refused, &server);
        assert!(
            matches!(fault, NodeFault::Denied(m) if m.contains("certificate")),
            "{fault:?}"
        );
        let message = refused.to_string();
        assert!(message.contains("TLS certificate"), "{message}");
        assert!(
            !refused.is_retryable() && refused.is_denied(),
            "{refused:?}"
        );

        // Waiting does not help, so neither form of waiting waits.
        let started = Instant::now();
        let waited = locker
            .lock_timeout("billing", Duration::from_secs(30))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(waited.is_denied(), "{waited:?}");
        only_failure(&waited, &server);
        let waited = locker.lock("billing").await.map(|_| ()).unwrap_err();
        assert!(waited.is_denied(), "{waited:?}");
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    })
    .await;
    // Nothing reached the node.
    let mut plain = socket_conn(&server).await;
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut plain).await.unwrap();
    assert_eq!(keys, 0, "keys were written");
}

#[tokio::test]
async fn plain_and_tls_mismatches_fail_clearly_and_in_time() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let pki = Pki::new();
    let tls_server = pki.server(&[]);
    let plain_server = RedisServer::start().expect("start redis-server");
    bounded(LIMIT, async {
        // Plain RESP at the TLS port: the server drops the connection.
        let plain_url = format!("redis://127.0.0.1:{}", tls_server.port());
        let locker = Locker::new(Redlock::from_urls([&plain_url]).unwrap(), options()).unwrap();
        let started = Instant::now();
        let err = locker.try_lock("k").await.map(|_| ()).unwrap_err();
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        let fault = only_failure(&err, &tls_server);
        assert!(
            matches!(
                fault,
                NodeFault::Connection(_) | NodeFault::Protocol(_) | NodeFault::Timeout(_)
            ),
            "{fault:?}"
        );
        // Not a refusal of this client: an outage, which waiting may outlast.
        let waited = locker
            .lock_timeout("k", Duration::from_millis(300))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(waited, Error::Timeout { .. }), "{waited:?}");

        // A TLS client at a plain port: redis-server takes the TLS hello
        // for the start of an inline command and waits for its end, so the
        // node does not answer within the node timeout (or, should the
        // server ever answer, the handshake fails and says so). Either way
        // it is bounded, and an outage rather than a refusal.
        let tls_url = format!("rediss://127.0.0.1:{}", plain_server.port());
        let locker = tls_locker(&tls_url, pki.trusting_ca(), options());
        let started = Instant::now();
        let err = locker.try_lock("k").await.map(|_| ()).unwrap_err();
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        let fault = only_failure(&err, &plain_server);
        assert!(
            match fault {
                NodeFault::Timeout(t) => *t == NODE_TIMEOUT,
                NodeFault::Connection(m) => {
                    m.contains("TLS handshake failed") || m.contains("timed out")
                }
                _ => false,
            },
            "{fault:?}"
        );
        assert!(err.is_retryable(), "{err:?}");
        let started = Instant::now();
        let waited = locker
            .lock_timeout("k", Duration::from_millis(300))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(waited, Error::Timeout { .. }), "{waited:?}");
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
    })
    .await;
}

#[tokio::test]
async fn client_certificates_when_the_server_asks_for_them() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let pki = Pki::new();
    let server = pki.server(&["--tls-auth-clients", "yes"]);
    bounded(LIMIT, async {
        let locker = tls_locker(&server.url(), pki.with_client_cert(), options());
        let guard = locker.try_lock("billing").await.unwrap();
        guard.release().await.unwrap();

        // Without one, the server refuses the handshake with an alert:
        // final, as a wrong password is.
        let locker = tls_locker(&server.url(), pki.trusting_ca(), options());
        let started = Instant::now();
        let err = locker.lock("billing").await.map(|_| ()).unwrap_err();
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        let fault = only_failure(&err, &server);
        assert!(
            matches!(fault, NodeFault::Denied(m) if m.contains("this client's certificate")),
            "{fault:?}"
        );
        assert!(err.is_denied(), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn a_tls_node_pauses_and_restarts_like_any_other() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let pki = Pki::new();
    let mut server = pki.server(&[]);
    let locker = tls_locker(&server.url(), pki.trusting_ca(), options());
    bounded(LIMIT, common::lock_once(&locker, "billing")).await;

    server.pause();
    bounded(LIMIT, async {
        let err = locker.try_lock("billing").await.map(|_| ()).unwrap_err();
        assert!(
            matches!(only_failure(&err, &server), NodeFault::Timeout(_)),
            "{err}"
        );
    })
    .await;
    server.resume();

    // Same port, same certificate, a fresh process (empty: no persistence).
    server
        .restart(fencelock::testing::Restart::KeepData)
        .unwrap();
    assert!(server.url().starts_with("rediss://"), "{}", server.url());
    // The kept connection broke with the old process: the node reconnects
    // over TLS within the same request.
    bounded(LIMIT, common::lock_once(&locker, "billing")).await;
}

#[test]
fn a_tls_node_needs_a_rediss_url_and_readable_pem() {
    let pki = Pki::new();
    let Err(Error::InvalidOptions(message)) =
        RedisNode::from_url_with_tls("redis://u:hunter2@127.0.0.1:6390", pki.trusting_ca())
    else {
        panic!("a plain URL cannot take TLS settings");
    };
    assert!(message.contains("rediss://"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let garbage = TlsCertificates {
        client_tls: None,
        root_cert: Some(b"-----BEGIN CERTIFICATE-----\nnot base64\n".to_vec()),
    };
    assert!(matches!(
        RedisNode::from_url_with_tls("rediss://127.0.0.1:6390", garbage),
        Err(Error::InvalidOptions(_))
    ));
    let node = RedisNode::from_url_with_tls("rediss://127.0.0.1:6390", pki.trusting_ca()).unwrap();
    assert_eq!(node.name(), "127.0.0.1:6390");
}
