//! `fencelock dev-cluster`: local redis-server nodes for trying things out,
//! started and stopped with the library's test fixtures.

use fencelock::testing::{FixtureError, RedisNodes};
use serde_json::json;

use crate::exit;
use crate::output::Output;
use crate::signals::Signals;

/// Starts `count` nodes, prints where they are, and waits for SIGINT,
/// SIGTERM or SIGHUP to stop them. Exit 0 when stopped that way, 69 when
/// the nodes could not be started.
pub async fn run(count: usize, output: &Output) -> u8 {
    // Signal handlers first: a stop request during start-up must still
    // reach the code that stops the nodes.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            output.error("internal", &format!("cannot handle signals: {e}"));
            return exit::INTERNAL;
        }
    };
    // The fixtures block while the servers start (at most seconds).
    let nodes = match tokio::task::spawn_blocking(move || RedisNodes::start(count)).await {
        Ok(Ok(nodes)) => nodes,
        Ok(Err(e)) => {
            output.error("unavailable", &start_failed(&e));
            return exit::UNAVAILABLE;
        }
        Err(e) => {
            output.error("internal", &format!("starting the nodes failed: {e}"));
            return exit::INTERNAL;
        }
    };
    let urls = nodes.urls();
    let list = urls.join(",");
    output.result(
        &json!({"nodes": urls, "env": {"FENCELOCK_NODES": list}}),
        || {
            let mut text = format!("{} redis-server nodes:\n", urls.len());
            for url in &urls {
                text.push_str(&format!("  {url}\n"));
            }
            // Last and flushed: scripts wait for this line.
            text.push_str(&format!("export FENCELOCK_NODES={list}"));
            text
        },
    );
    output.say("running; Ctrl-C or SIGTERM stops the nodes");

    let signal = signals.recv().await.as_str();
    let count = nodes.len();
    // Dropping the fixtures kills and reaps every server and removes its
    // temporary directory.
    let _ = tokio::task::spawn_blocking(move || drop(nodes)).await;
    output.say(&format!("got {signal}: stopped {count} nodes"));
    output.event(&json!({"event": "stopped", "signal": signal, "nodes": count}));
    0
}

fn start_failed(error: &FixtureError) -> String {
    match error {
        FixtureError::BinaryNotFound { .. } => format!("{error}"),
        other => format!("could not start the nodes: {other}"),
    }
}
