//! Contending workers on a Redlock, with their metrics served as Prometheus
//! text at `http://<addr>/metrics`.
//!
//! `cargo run --example metrics_server --features testing -- [--addr 127.0.0.1:9898]
//! [--nodes redis://a,redis://b,...] [--workers 8] [--seconds N]`
//!
//! Without `--nodes` (or `FENCELOCK_NODES`) it starts five local
//! redis-server nodes and stops them on exit. It runs until Ctrl-C, or for
//! `--seconds`. Then scrape it: `curl -s 127.0.0.1:9898/metrics | grep fencelock`.

use std::net::SocketAddr;
use std::time::Duration;

use fencelock::testing::RedisNodes;
use fencelock::{Error, LockOptions, Locker, Redlock, RetryPolicy};
use metrics_exporter_prometheus::PrometheusBuilder;

/// The command line, parsed by hand: four flags do not need a parser crate.
struct Args {
    addr: SocketAddr,
    nodes: Option<Vec<String>>,
    workers: usize,
    seconds: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:9898".parse().expect("a valid default"),
        nodes: std::env::var("FENCELOCK_NODES")
            .ok()
            .map(|list| list.split(',').map(str::to_owned).collect()),
        workers: 8,
        seconds: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--nodes" => args.nodes = Some(value()?.split(',').map(str::to_owned).collect()),
            "--workers" => {
                args.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?
            }
            "--seconds" => {
                args.seconds = Some(value()?.parse().map_err(|e| format!("--seconds: {e}"))?)
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; expected --addr, --nodes, --workers, --seconds"
                ));
            }
        }
    }
    if args.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| {
        eprintln!("metrics_server: {e}");
        std::process::exit(2)
    })?;
    // Keep the local nodes alive until the end of main.
    let (_local, urls) = match args.nodes {
        Some(urls) => (None, urls),
        None => {
            let nodes = RedisNodes::start(5)?;
            let urls = nodes.urls();
            (Some(nodes), urls)
        }
    };

    PrometheusBuilder::new()
        .with_http_listener(args.addr)
        .install()?;
    fencelock::metrics::describe();
    println!("serving http://{}/metrics", args.addr);
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

    // Workers on three resources: some lock (waiting), some try_lock
    // (counted as contended when busy), all hold briefly.
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let locker = locker.clone();
        workers.push(tokio::spawn(async move {
            let key = format!("report-{}", w % 3);
            loop {
                let guard = if w % 2 == 0 {
                    locker.lock(&key).await
                } else {
                    locker.try_lock(&key).await
                };
                match guard {
                    Ok(guard) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if let Err(e) = guard.release().await {
                            eprintln!("worker {w}: {e}");
                        }
                    }
                    Err(Error::NotObtained { .. }) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => {
                        eprintln!("worker {w}: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }

    match args.seconds {
        Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
        None => tokio::signal::ctrl_c().await?,
    }
    // Stop the workers (their guards release in the background) before the
    // local nodes go away with `_local`.
    for worker in &workers {
        worker.abort();
    }
    futures::future::join_all(workers).await;
    let stats = locker.statistics();
    println!(
        "acquired {}, contended {}, released {}, lost {}",
        stats.acquired, stats.contended, stats.released, stats.lost
    );
    Ok(())
}
