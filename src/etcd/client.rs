//! Requests to the cluster: each bounded by a timeout, sent again when it
//! certainly never left this client, and its failures sorted into outages
//! (which waiters retry) and final refusals.

use std::time::Duration;

use etcd_client::{KeyValue, Txn, TxnResponse};

use super::Etcd;
use crate::error::{Error, NodeFailure, NodeFault, Result};

impl Etcd {
    /// An outage: the request did not get an answer that decides (final
    /// when `fault` is a denial, see [`Error::is_denied`]).
    pub(super) fn unavailable(&self, fault: NodeFault) -> Error {
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
        let result = match tokio::time::timeout(timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(etcd_client::Error::GRpcStatus(status))) => Err(self.refused(&status)),
            Ok(Err(e)) => Err(self.unavailable(NodeFault::Connection(e.to_string()))),
            Err(_) => Err(self.unavailable(NodeFault::Timeout(timeout))),
        };
        if let Err(e) = &result {
            self.tell_failure(e);
        }
        result
    }

    /// Tells a `tracing` subscriber of one failed request: as a node fault
    /// (see [`crate::trace::node_failed`]), or, for a request etcd will
    /// never take, at WARN.
    fn tell_failure(&self, error: &Error) {
        match error {
            Error::QuorumUnavailable { failures, .. } => {
                for failure in failures {
                    crate::trace::node_failed(&failure.node, "etcd", &failure.fault);
                }
            }
            other => tracing::warn!(node = &*self.name, error = %other, "etcd refused a request"),
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
    pub(super) async fn call_again<T, F, Fut>(&self, timeout: Duration, mut request: F) -> Result<T>
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
    pub(super) async fn get(&self, key: &str, timeout: Duration) -> Result<Option<KeyValue>> {
        let mut reply = self
            .call_again(timeout, || {
                let mut kv = self.client.kv_client();
                let key = key.to_owned();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(reply.take_kvs().into_iter().next())
    }

    /// Runs a transaction.
    pub(super) async fn txn(&self, txn: Txn, timeout: Duration) -> Result<TxnResponse> {
        self.call_again(timeout, || {
            let mut kv = self.client.kv_client();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
    }
}

/// The error of a failed [`Client::connect`](etcd_client::Client::connect)
/// to the cluster called `name` at `endpoints`.
pub(super) fn connect_failed(name: &str, endpoints: &[String], e: etcd_client::Error) -> Error {
    match e {
        etcd_client::Error::InvalidArgs(_)
        | etcd_client::Error::InvalidUri(_)
        | etcd_client::Error::EndpointError(_) => {
            Error::InvalidOptions(format!("bad etcd endpoint in {endpoints:?}: {e}"))
        }
        // With credentials, connecting signs in: a refused sign-in
        // is a denial, like any refused request.
        etcd_client::Error::GRpcStatus(status) if denies_client(&status) => {
            unavailable(name, NodeFault::Denied(describe(&status)))
        }
        e => Error::Backend {
            message: format!("cannot connect to etcd at {endpoints:?}"),
            source: Some(Box::new(e)),
        },
    }
}

/// `endpoint` as it may be shown: the user name and password of a URL
/// (`http://user:password@host:2379`) replaced by `***`.
pub(super) use crate::backend::without_credentials;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_credentials_are_never_shown() {
        assert_eq!(
            without_credentials("http://u:hunter2@127.0.0.1:9"),
            "http://***@127.0.0.1:9"
        );
        assert_eq!(without_credentials("127.0.0.1:9"), "127.0.0.1:9");
        // The name (in errors and traces) or the error, whichever comes.
        let shown = match Etcd::connect(["http://u:hunter2@127.0.0.1:9"], None).await {
            Ok(etcd) => format!("{etcd:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        assert!(!shown.contains("hunter2"), "{shown}");
    }

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
}
