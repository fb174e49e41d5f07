//! The Prometheus path end to end: a real exporter on a loopback port,
//! scraped over real HTTP, while locks are taken, contended and released on
//! real redis-server nodes. (The same wiring as examples/metrics_server.rs.)
//! One test in this binary: it installs the process-wide recorder.

#[path = "it/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{bounded, locker, options, start, try_from_another_task};
use fencelock::Error;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET /metrics over a plain HTTP/1.0 connection; the body.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_owned()
}

/// The value of one series, 0 when it is not there yet.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_counters_move_as_locks_are_taken_contended_and_released() {
    // A free loopback port for the exporter.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .unwrap();
    fencelock::metrics::describe();
    let nodes = start(3);
    let locker = locker(&nodes, options());
    bounded(Duration::from_secs(60), async {
        // The listener starts in the background: wait for its first answer.
        let mut before = String::new();
        common::wait_until(
            Duration::from_secs(5),
            async || match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => {
                    before = scrape(addr).await;
                    true
                }
                Err(_) => false,
            },
        )
        .await;

        let acquired = r#"fencelock_acquire_total{backend="redis",kind="lock",result="acquired"}"#;
        let contended =
            r#"fencelock_acquire_total{backend="redis",kind="lock",result="contended"}"#;
        let released = r#"fencelock_release_total{backend="redis",kind="lock",result="released"}"#;
        for _ in 0..3 {
            let guard = locker.lock("scraped").await.unwrap();
            let busy = try_from_another_task(&locker, "scraped").await;
            assert!(matches!(busy, Err(Error::NotObtained { .. })));
            guard.release().await.unwrap();
        }
        let after = scrape(addr).await;
        assert_eq!(
            value(&after, acquired) - value(&before, acquired),
            3.0,
            "{after}"
        );
        assert_eq!(
            value(&after, contended) - value(&before, contended),
            3.0,
            "{after}"
        );
        assert_eq!(
            value(&after, released) - value(&before, released),
            3.0,
            "{after}"
        );
        assert!(after.contains("# HELP fencelock_acquire_total"), "{after}");
        assert!(
            after.contains(r#"fencelock_hold_seconds_count{backend="redis",kind="lock"} 3"#),
            "{after}"
        );
    })
    .await;
}
