//! What the `tracing` spans and events share across the front and the
//! backends (docs/metrics.md, "Tracing"): the failed node request, reported
//! the same way by every backend.
//!
//! Nothing recorded here or anywhere else names an owner id, a hold id, a
//! `Hold` (even redacted) or a password: node names are addresses, and
//! errors name resources and nodes only (tests/it/secrets.rs, tests/it/tracing_events.rs).

use crate::error::NodeFault;

/// One request to one node failed with `fault`. An outage (no answer, no
/// connection, an error reply) is DEBUG: the caller hears of it when it
/// costs the quorum, and it passes or shows in every call. A refusal of
/// this client or a reply this library cannot read is WARN: waiting does
/// not change it, and when the other nodes still make a quorum nobody else
/// is told.
#[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(dead_code))]
pub(crate) fn node_failed(node: &str, request: &'static str, fault: &NodeFault) {
    match fault {
        NodeFault::Denied(_) | NodeFault::Protocol(_) => {
            tracing::warn!(node, request, %fault, "node request failed");
        }
        _ => tracing::debug!(node, request, %fault, "node request failed"),
    }
}
