//! What went wrong on one node.

use std::fmt;
use std::time::Duration;

/// Why one node did not answer a request usefully.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeFailure {
    /// The node's address (never its password).
    pub node: String,
    /// What went wrong.
    pub fault: NodeFault,
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.node, self.fault)
    }
}

/// The kind of failure on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeFault {
    /// No answer within the per-node timeout. The node may or may not have
    /// applied the request.
    Timeout(Duration),
    /// No connection could be used (refused, reset, closed, a TLS
    /// handshake that failed for a reason other than a certificate).
    Connection(String),
    /// The node answered with an error reply.
    Server(String),
    /// The node answered something this library does not understand.
    Protocol(String),
    /// The node refused this client, for a reason that trying again does
    /// not change: wrong or missing credentials (`WRONGPASS`, `NOAUTH`), a
    /// user without the permissions the locks need (`NOPERM`), or a TLS
    /// certificate that did not verify (the server's, against the roots
    /// this client trusts, or this client's, refused by the server). When
    /// such refusals keep a quorum out of reach, the error is final (see
    /// [`Error::is_denied`](super::Error::is_denied)).
    Denied(String),
    /// The node lost its data (it was found without the marker every node
    /// keeps) and votes again once that is safe: after its quarantine, and
    /// for a fencing counter, once a quorum of the nodes that remember has
    /// repaired it (docs/algorithm.md, section 15).
    Recovering(String),
    /// The node's clock moved further than this client's could have
    /// between two of its answers, beyond the drift allowance: a jump
    /// forward or a fast clock, which may have ended locks there early.
    /// Its votes count again once every lock it may have dropped would
    /// have run out anyway (docs/algorithm.md, section 16).
    Clock(String),
}

impl fmt::Display for NodeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeFault::Timeout(d) => write!(f, "no answer within {d:?}"),
            NodeFault::Connection(m) => write!(f, "connection failed: {m}"),
            NodeFault::Server(m) => write!(f, "error reply: {m}"),
            NodeFault::Protocol(m) => write!(f, "unexpected reply: {m}"),
            NodeFault::Denied(m) => write!(f, "refused this client: {m}"),
            NodeFault::Recovering(m) => write!(f, "lost its data, recovering: {m}"),
            NodeFault::Clock(m) => write!(f, "clock not trusted: {m}"),
        }
    }
}

pub(super) struct NodeFailures<'a>(pub(super) &'a [NodeFailure]);

impl fmt::Display for NodeFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}
