//! Several workers contend for one resource on a 5-node Redlock and print
//! every acquisition's fencing token and validity. Half-way through, two
//! nodes are killed: the quorum of three keeps the lock working.
//!
//! Run it with `cargo run --example demo --features testing`; it starts
//! its own redis-server nodes (set `FENCELOCK_NODES` to a comma-separated
//! list of redis:// URLs to use running nodes instead). `scripts/demo`
//! shows the same job through the command-line tool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fencelock::testing::RedisNodes;
use fencelock::{LockOptions, Locker, Redlock, RetryPolicy};

const WORKERS: usize = 4;
const ROUNDS: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut local, urls) = match std::env::var("FENCELOCK_NODES") {
        Ok(list) => (None, list.split(',').map(str::to_owned).collect()),
        Err(_) => {
            let nodes = RedisNodes::start(5)?;
            let urls = nodes.urls();
            (Some(nodes), urls)
        }
    };
    println!("Redlock over {} nodes: {}", urls.len(), urls.join(", "));

    let options = LockOptions::default()
        .ttl(Duration::from_secs(5))
        .node_timeout(Duration::from_millis(100))
        .retry(
            RetryPolicy::default()
                .delay(Duration::from_millis(5))
                .jitter(Duration::from_millis(20)),
        );
    let locker = Locker::new(Redlock::from_urls(&urls)?, options)?;

    // The "protected resource": it remembers the highest token it accepted
    // and refuses older ones, as a real store guarded by fencing would.
    let highest = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicBool::new(false));

    for phase in ["all nodes up", "two nodes killed"] {
        if phase == "two nodes killed" {
            if let Some(nodes) = local.as_mut() {
                nodes.node_mut(0).kill();
                nodes.node_mut(3).kill();
                println!(
                    "\n-- killed {} and {}: 3 of 5 nodes remain, still a quorum --",
                    nodes.node(0).url(),
                    nodes.node(3).url()
                );
            } else {
                break; // remote nodes are not ours to kill
            }
        }
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let (locker, highest, busy) =
                    (locker.clone(), Arc::clone(&highest), Arc::clone(&busy));
                tokio::spawn(async move {
                    for _ in 0..ROUNDS {
                        let guard = locker.lock_timeout("report", Duration::from_secs(10)).await?;
                        let token = guard.token().get();
                        assert!(!busy.swap(true, Ordering::SeqCst), "two holders at once");
                        let previous = highest.fetch_max(token, Ordering::SeqCst);
                        assert!(token > previous, "token {token} not above {previous}");
                        println!(
                            "worker {worker} holds \"report\"  token {token:>3}  valid for {:>7.1?}",
                            guard.remaining()
                        );
                        tokio::time::sleep(Duration::from_millis(3)).await; // the work
                        busy.store(false, Ordering::SeqCst);
                        guard.release().await?;
                    }
                    Ok::<(), fencelock::Error>(())
                })
            })
            .collect();
        for worker in workers {
            worker.await??;
        }
    }
    println!(
        "\nDone: every acquisition was exclusive and its token above all before it (last token {}).",
        highest.load(Ordering::SeqCst)
    );
    Ok(()) // dropping the fixtures stops the nodes
}
