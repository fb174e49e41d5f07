//! How a Redis failure counts for a lock: a broken connection (tried once
//! more on a fresh one), a refusal that waiting does not change
//! (credentials, permissions, certificates), or an ordinary fault.

#[cfg(feature = "tls")]
use std::sync::Arc;

use deadpool_redis::PoolError;
use redis::{ErrorKind, RedisError};

use crate::error::NodeFault;

/// Whether the connection must not be used again. A reply that cannot be
/// parsed (a peer that is not Redis, or one that closed mid-reply) leaves
/// the stream out of step with the requests, so it counts as broken too.
pub(crate) fn is_broken_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.kind() == ErrorKind::Parse
}

pub(crate) fn classify(e: &RedisError) -> NodeFault {
    if let Some(why) = denial(e) {
        return NodeFault::Denied(why);
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = tls_error(e) {
        return tls_fault(tls);
    }
    match e.kind() {
        // Error replies: redis-rs files unknown codes (WRONGTYPE, OOM, NOPERM,
        // our own script's errors) under Extension.
        ErrorKind::Server(_) | ErrorKind::Extension => NodeFault::Server(e.to_string()),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => NodeFault::Protocol(e.to_string()),
        _ => NodeFault::Connection(e.to_string()),
    }
}

/// Why the server refused this client, when it did for a reason that
/// trying again does not change: a wrong password (redis-rs files the
/// `WRONGPASS` reply to `AUTH` as an authentication failure), no password
/// where one is needed (`NOAUTH`), or a user not allowed the keys, channels
/// or commands (`NOPERM`). The reply may be the first of a pipeline's: the
/// scripts are loaded in one.
fn denial(e: &RedisError) -> Option<String> {
    if e.kind() == ErrorKind::AuthenticationFailed {
        return Some(format!(
            "authentication failed (wrong user name or password): {e}"
        ));
    }
    let replies = e.clone().into_server_errors()?;
    let (_, reply) = replies.first()?;
    let why = match reply.code() {
        "WRONGPASS" => "authentication failed (wrong user name or password)",
        "NOAUTH" => "authentication required (no password given)",
        "NOPERM" => "permission denied (the user may not use the lock keys, channels or commands)",
        _ => return None,
    };
    Some(format!(
        "{why}: {} {}",
        reply.code(),
        reply.details().unwrap_or_default()
    ))
}

/// The rustls error under a failed TLS connection, if that is what failed.
/// redis-rs keeps the I/O error of a failed handshake behind an `Arc`, and
/// the I/O error keeps rustls's: both are unwrapped by type, not by text.
#[cfg(feature = "tls")]
fn tls_error(e: &RedisError) -> Option<&rustls::Error> {
    use std::error::Error as _;
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let mut link: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(error) = link {
        let io = match error.downcast_ref::<Shared>() {
            Some(shared) => shared.downcast_ref::<std::io::Error>(),
            None => error.downcast_ref::<std::io::Error>(),
        };
        if let Some(found) = io
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        link = error.source();
    }
    None
}

/// A failed TLS handshake. A certificate that does not verify (the
/// server's, or this client's as the server judged it) is a refusal that
/// retrying does not change; anything else (say, a server that does not
/// speak TLS on that port) is a connection failure, named as a TLS one.
#[cfg(feature = "tls")]
fn tls_fault(e: &rustls::Error) -> NodeFault {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::InvalidCertificate(_) => NodeFault::Denied(format!(
            "TLS certificate problem: the server's certificate was not accepted ({e}); \
             check the root certificate this node trusts and the host name in the URL"
        )),
        rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::CertificateRequired
            | Alert::AccessDenied,
        ) => NodeFault::Denied(format!(
            "TLS certificate problem: the server refused this client's certificate ({e}); \
             check the client certificate and key given for this node"
        )),
        _ => NodeFault::Connection(format!("TLS handshake failed: {e}")),
    }
}

/// Makes sure rustls has a process-wide crypto provider before a TLS
/// connection is set up: redis-rs builds its rustls configuration with the
/// process default, and rustls picks one by itself only when exactly one
/// provider is compiled in. An application whose dependencies enable a
/// second one would otherwise panic at its first TLS connection.
#[cfg(feature = "tls")]
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

pub(crate) fn pool_fault(e: &PoolError) -> NodeFault {
    match e {
        PoolError::Backend(e) => classify(e),
        PoolError::Timeout(_) => {
            NodeFault::Connection("timed out waiting for a pooled connection".into())
        }
        other => NodeFault::Connection(other.to_string()),
    }
}

/// Hides the password of a URL for messages.
pub(crate) use crate::backend::without_credentials as redact;
