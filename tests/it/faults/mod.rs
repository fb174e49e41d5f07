//! Redlock with real faults: killed, paused (SIGSTOP) and restarted nodes.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bounded, locker, options, start, wait_until_no_locks};
use fencelock::deadpool_redis::redis;
use fencelock::testing::{Persistence, RedisNodes, Restart};
use fencelock::{Error, FencingToken, NodeFault};
use rand::{RngExt, SeedableRng, rngs::StdRng};

mod paused;
mod quorum;
mod tokens;

const LIMIT: Duration = Duration::from_secs(120);

/// The failed nodes named in a QuorumUnavailable, by URL port.
fn failed_ports(error: &Error) -> Vec<u16> {
    let Error::QuorumUnavailable { failures, .. } = error else {
        panic!("expected QuorumUnavailable, got {error:?}");
    };
    let mut ports: Vec<u16> = failures
        .iter()
        .map(|f| f.node.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    ports.sort_unstable();
    ports
}

fn ports(nodes: &RedisNodes, which: &[usize]) -> Vec<u16> {
    let mut ports: Vec<u16> = which.iter().map(|&i| nodes.node(i).port()).collect();
    ports.sort_unstable();
    ports
}

/// The holds each node stores for `key`, in node order (0: none; -1: the
/// node did not answer).
async fn holds_per_node(locker: &fencelock::Locker<fencelock::Redlock>, key: &str) -> Vec<i64> {
    let info = locker.inspect(key).await.unwrap();
    info.nodes
        .iter()
        .map(|v| match &v.lock {
            Ok(Some(record)) => i64::from(record.holds),
            Ok(None) => 0,
            Err(_) => -1,
        })
        .collect()
}
