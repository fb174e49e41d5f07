//! Named lockers from configuration: "billing" on a Redlock of three Redis
//! nodes and "migrations" on an etcd cluster, in one registry and one
//! binary, with no generics at the call site. Workers take turns on each
//! name; every acquisition prints its backend and fencing token. Then the
//! registry refuses a name it does not know.
//!
//! Run it with `cargo run --example registry --features testing,etcd`;
//! it starts its own redis-server nodes and etcd member (set
//! `FENCELOCK_REGISTRY` to a file of `name = URL,URL,...` lines naming
//! running servers, with a "billing" and a "migrations" locker, to use
//! them instead).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fencelock::testing::{EtcdCluster, RedisNodes};
use fencelock::{Backend, Error, LockOptions, Registry, RegistryConfig, RetryPolicy};

const WORKERS: usize = 3;
const ROUNDS: usize = 2;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The servers live as long as `_local`; dropping it stops them.
    let (_local, text) = match std::env::var("FENCELOCK_REGISTRY") {
        Ok(path) => (None, std::fs::read_to_string(path)?),
        Err(_) => {
            let nodes = RedisNodes::start(3)?;
            let etcd = EtcdCluster::start(1)?;
            let members: Vec<String> = etcd
                .endpoints()
                .iter()
                .map(|e| e.trim_start_matches("http://").to_owned())
                .collect();
            let text = format!(
                "# name = the URL list of its backend\n\
                 billing    = {}\n\
                 migrations = etcd://{}\n",
                nodes.urls().join(","),
                members.join(",")
            );
            (Some((nodes, etcd)), text)
        }
    };
    println!("configuration:\n{text}");

    let quick = RetryPolicy::default()
        .delay(Duration::from_millis(5))
        .jitter(Duration::from_millis(20));
    let config = RegistryConfig::parse(&text)?
        .options("billing", LockOptions::default().retry(quick.clone()))?
        .options(
            "migrations",
            LockOptions::default()
                .ttl(Duration::from_secs(60))
                .retry(quick),
        )?;
    let registry = Registry::connect(&config).await?;

    for name in ["billing", "migrations"] {
        let busy = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let (registry, busy) = (registry.clone(), Arc::clone(&busy));
                tokio::spawn(async move {
                    // The same code whichever backend the name is on.
                    let locker = registry.get(name)?;
                    for _ in 0..ROUNDS {
                        let guard = locker
                            .lock_timeout("nightly", Duration::from_secs(10))
                            .await?;
                        assert!(!busy.swap(true, Ordering::SeqCst), "two holders at once");
                        println!(
                            "{name:<10} on {:<5}  worker {worker} holds \"nightly\"  token {}",
                            locker.backend().name(),
                            guard.token()
                        );
                        tokio::time::sleep(Duration::from_millis(5)).await; // the work
                        busy.store(false, Ordering::SeqCst);
                        guard.release().await?;
                    }
                    Ok::<(), Error>(())
                })
            })
            .collect();
        for worker in workers {
            worker.await??;
        }
    }

    match registry.get("payroll") {
        Err(e @ Error::UnknownLocker { .. }) => println!("\nas expected: {e}"),
        other => panic!("expected UnknownLocker, got {other:?}"),
    }
    // Whatever was left running in the background (the slowest nodes'
    // replies, etcd lease revokes) is done before the servers stop.
    registry.settled().await;
    Ok(())
}
