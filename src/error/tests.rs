//! The errors' messages and predicates.

use super::*;

fn failure(node: &str, fault: NodeFault) -> NodeFailure {
    NodeFailure {
        node: node.into(),
        fault,
    }
}

fn unavailable(answered: usize, needed: usize, failures: Vec<NodeFailure>) -> Error {
    Error::QuorumUnavailable {
        confirmed: answered.min(needed - 1),
        refused: answered - answered.min(needed - 1),
        needed,
        failures,
    }
}

#[test]
fn refusals_that_keep_a_quorum_out_of_reach_are_final() {
    let denied = |node| failure(node, NodeFault::Denied("WRONGPASS".into()));
    let down = |node| failure(node, NodeFault::Timeout(Duration::from_millis(200)));

    // One node, refused: final, and the message says why.
    let err = unavailable(0, 1, vec![denied("a:1")]);
    assert!(err.is_denied() && !err.is_retryable());
    let message = err.to_string();
    assert!(
        message.contains("a:1: refused this client: WRONGPASS"),
        "{message}"
    );
    assert!(message.contains("not retried"), "{message}");

    // 2 of 3 refused: the third alone is no quorum.
    let err = unavailable(1, 2, vec![denied("a:1"), denied("b:1")]);
    assert!(err.is_denied() && !err.is_retryable());

    // 1 refused and 1 down of 3: the down node may come back, and with
    // the one that answered make a quorum. Still an outage.
    let err = unavailable(1, 2, vec![denied("a:1"), down("b:1")]);
    assert!(!err.is_denied() && err.is_retryable());
    assert!(!err.to_string().contains("not retried"), "{err}");

    // Only nodes down: an outage as ever.
    let err = unavailable(0, 2, vec![down("a:1"), down("b:1"), down("c:1")]);
    assert!(!err.is_denied() && err.is_retryable());

    // 1 refused and 2 down of 5: the 2 that answered and the 2 down
    // ones may yet make 3.
    let err = unavailable(2, 3, vec![denied("a:1"), down("b:1"), down("c:1")]);
    assert!(err.is_retryable());
    // 3 refused of 5: 2 answered, none else to come.
    let err = unavailable(2, 3, vec![denied("a:1"), denied("b:1"), denied("c:1")]);
    assert!(!err.is_retryable());

    // Other variants are not denials.
    assert!(!Error::InvalidKey("x".into()).is_denied());
}

#[test]
fn configuration_errors_name_the_problem() {
    let accepted = vec!["redis", "etcd"];
    let scheme = |url: &str, scheme: &str, feature| Error::UnsupportedScheme {
        url: url.into(),
        scheme: scheme.into(),
        feature,
        accepted: accepted.clone(),
    };
    assert_eq!(
        scheme("http://h:1", "http", None).to_string(),
        "URL \"http://h:1\": no backend takes the scheme http://; this build takes \
         redis://, etcd://"
    );
    assert_eq!(
        scheme("h:1", "", None).to_string(),
        "URL \"h:1\" has no scheme; this build takes redis://, etcd://"
    );
    assert_eq!(
        scheme("rediss://h:1", "rediss", Some("tls")).to_string(),
        "URL \"rediss://h:1\": rediss:// needs fencelock's feature `tls`, which this build \
         lacks; this build takes redis://, etcd://"
    );
    let unknown = Error::UnknownLocker {
        name: "biling".into(),
        known: vec!["billing".into(), "migrations".into()],
    };
    assert_eq!(
        unknown.to_string(),
        "no locker named \"biling\"; configured: \"billing\", \"migrations\""
    );
    let none = Error::UnknownLocker {
        name: "x".into(),
        known: vec![],
    };
    assert_eq!(none.to_string(), "no locker named \"x\"; configured: none");
    for e in [unknown, none, scheme("h:1", "", None)] {
        assert!(!e.is_retryable() && !e.is_denied(), "{e}");
    }
}

#[test]
fn an_outage_is_no_quorum_without_a_node_that_says_held() {
    let down = |refused| Error::QuorumUnavailable {
        confirmed: 1,
        refused,
        needed: 2,
        failures: vec![failure("b", NodeFault::Connection("refused".into()))],
    };
    assert!(down(0).is_outage());
    // A node said "held": the lock may be held on the nodes that are down.
    assert!(!down(1).is_outage());
    assert!(
        !Error::NotObtained {
            key: "k".into(),
            expires_in: None
        }
        .is_outage()
    );
    assert!(
        !Error::Backend {
            message: "x".into(),
            source: None
        }
        .is_outage()
    );
}
