//! Integration tests of the real etcd fixtures (`fencelock::testing`).
//!
//! Every wait is bounded and ends on a probe (`/health`, a TCP connect or
//! `/proc`), never on a fixed sleep.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use fencelock::testing::{EtcdCluster, EtcdServer, FixtureError};

/// Bound for a member or cluster to become healthy again after a fault
/// (an election takes about one 500 ms election timeout).
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);
/// Bound for a member that lost its quorum to say so: one election timeout
/// to notice the leader is gone, plus `/health`'s own 1 s quorum read.
const UNHEALTHY_WITHIN: Duration = Duration::from_secs(10);
/// Socket timeouts of the raw HTTP client.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// One raw HTTP/1.0 exchange with `127.0.0.1:port`: status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, response.clone()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, head.to_owned()))?;
    Ok((status, body.to_owned()))
}

/// `GET /health` through the raw client, independent of the fixture's probe.
fn health(port: u16) -> (u16, String) {
    http(port, "GET", "/health", "", HTTP_TIMEOUT).expect("GET /health")
}

/// Standard base64, as the v3 JSON gateway wants keys and values.
fn b64(data: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.as_bytes().chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes `key` = `value` through the member on `port`.
fn put(port: u16, key: &str, value: &str) {
    let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
    let (status, reply) = http(port, "POST", "/v3/kv/put", &body, HTTP_TIMEOUT).expect("put");
    assert_eq!(status, 200, "{reply}");
}

/// Whether the member on `port` returns `key` with `value`.
fn has(port: u16, key: &str, value: &str) -> bool {
    let body = format!(r#"{{"key":"{}"}}"#, b64(key));
    let (status, reply) = http(port, "POST", "/v3/kv/range", &body, HTTP_TIMEOUT).expect("range");
    assert_eq!(status, 200, "{reply}");
    reply.contains(&format!(r#""value":"{}""#, b64(value)))
}

fn assert_refused(port: u16) {
    let err = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .err()
        .unwrap_or_else(|| panic!("port {port} still accepts connections"));
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

/// Whether `pid` still has a `/proc` entry (a zombie has one too, so this
/// also checks that the process was reaped).
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Calls `check` until it holds or `timeout` has passed.
fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_member_starts_answers_health_and_drop_leaves_nothing() {
    let server = EtcdServer::start().unwrap();
    let port = server.client_port();
    assert_eq!(server.endpoint(), format!("http://127.0.0.1:{port}"));
    assert_eq!(server.endpoints(), vec![server.endpoint()]);
    assert_eq!(
        server.peer_url(),
        format!("http://127.0.0.1:{}", server.peer_port())
    );
    assert_ne!(server.client_port(), server.peer_port());
    assert!(server.is_running());
    assert!(!server.is_paused());
    assert!(server.is_healthy());
    let (status, body) = health(port);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""health":"true""#), "{body}");
    assert!(server.data_dir().join("member").is_dir());
    assert!(!server.log().is_empty());

    let pid = server.pid().unwrap();
    let peer_port = server.peer_port();
    let dir = server.dir().to_owned();
    assert!(process_exists(pid));
    drop(server);
    assert!(!process_exists(pid), "etcd pid {pid} survived the drop");
    assert_refused(port);
    assert_refused(peer_port);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn kill_refuses_connections_and_restart_keeps_the_data() {
    let mut server = EtcdServer::start().unwrap();
    let port = server.client_port();
    put(port, "fencelock/fixture", "kept across restarts");
    let pid = server.pid().unwrap();

    server.kill();
    assert!(!server.is_running());
    assert!(!server.is_healthy());
    assert_eq!(server.pid(), None);
    assert!(!process_exists(pid));
    assert_refused(port);
    assert_refused(server.peer_port());
    server.kill(); // No-op when not running.

    server.restart().unwrap();
    assert_eq!(server.client_port(), port);
    assert!(server.is_healthy());
    assert_ne!(server.pid(), Some(pid));
    assert!(
        has(port, "fencelock/fixture", "kept across restarts"),
        "{}",
        server.log_tail(30)
    );
    // Restarting a running member works too.
    server.restart().unwrap();
    assert!(has(port, "fencelock/fixture", "kept across restarts"));
}

#[test]
fn pause_blocks_replies_and_resume_restores_them() {
    let mut server = EtcdServer::start().unwrap();
    let port = server.client_port();

    server.pause();
    assert!(server.is_paused());
    assert!(server.is_running());
    assert!(!server.is_healthy());
    // The kernel still accepts the connection, but nobody answers.
    let err = http(port, "GET", "/health", "", Duration::from_millis(300)).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );

    server.resume();
    assert!(!server.is_paused());
    assert!(
        server.wait_healthy(HEALTHY_WITHIN),
        "{}",
        server.log_tail(30)
    );
    assert_eq!(health(port).0, 200);
}

#[test]
fn kill_restart_and_drop_work_on_a_paused_member() {
    let mut server = EtcdServer::start().unwrap();
    let port = server.client_port();
    server.pause();
    server.kill();
    assert!(!server.is_running());
    assert!(!server.is_paused());
    assert_refused(port);

    server.restart().unwrap();
    server.pause();
    // Restart of a paused member kills it first.
    server.restart().unwrap();
    assert!(!server.is_paused());
    assert_eq!(health(port).0, 200);

    server.pause();
    let pid = server.pid().unwrap();
    drop(server);
    assert!(
        !process_exists(pid),
        "paused etcd pid {pid} survived the drop"
    );
    assert_refused(port);
}

#[test]
fn three_members_form_one_healthy_cluster() {
    let cluster = EtcdCluster::start(3).unwrap();
    assert_eq!(cluster.len(), 3);
    assert!(!cluster.is_empty());
    // Healthy when start returned; waiting (rather than one probe) only
    // rides out a spurious election on a loaded machine.
    assert!(cluster.wait_healthy(HEALTHY_WITHIN), "{}", cluster.logs());
    let endpoints = cluster.endpoints();
    assert_eq!(endpoints.len(), 3);
    let mut ports = HashSet::new();
    for member in &cluster {
        assert!(member.is_running());
        assert!(ports.insert(member.client_port()));
        assert!(ports.insert(member.peer_port()));
        assert!(endpoints.contains(&member.endpoint()));
    }
    // One cluster, not three: every member lists all three names, and a
    // write through one is read through another.
    let (status, list) = http(
        cluster.member(0).client_port(),
        "POST",
        "/v3/cluster/member/list",
        "{}",
        HTTP_TIMEOUT,
    )
    .unwrap();
    assert_eq!(status, 200, "{list}");
    for member in cluster.iter() {
        assert!(member.name().starts_with(cluster.token()));
        assert!(
            list.contains(&format!(r#""name":"{}""#, member.name())),
            "{list}"
        );
    }
    put(cluster.member(0).client_port(), "k", "v");
    assert!(has(cluster.member(2).client_port(), "k", "v"));
    assert!(cluster.logs().contains("[member 2]"));
}

#[test]
fn quorum_survives_one_member_down_but_not_two() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    put(cluster.member(0).client_port(), "fencelock/quorum", "v1");

    // One down: the other two still have a majority (after an election if
    // the killed member led).
    cluster.member_mut(0).kill();
    assert_refused(cluster.member(0).client_port());
    for i in [1, 2] {
        assert!(
            cluster.member(i).wait_healthy(HEALTHY_WITHIN),
            "member {i} not healthy with one member down\n{}",
            cluster.logs()
        );
    }
    assert!(!cluster.wait_healthy(Duration::ZERO));

    // Two down: the survivor has no quorum and must say so.
    cluster.member_mut(1).kill();
    let survivor = cluster.member(2);
    assert!(
        eventually(UNHEALTHY_WITHIN, || !survivor.is_healthy()),
        "the survivor still reports healthy without a quorum\n{}",
        cluster.logs()
    );
    let (status, body) = health(survivor.client_port());
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""health":"false""#), "{body}");

    // Bringing back one member restores the quorum; then the last one
    // rejoins too, and the data is all there.
    cluster.member_mut(1).restart().unwrap();
    assert!(
        cluster.member(2).wait_healthy(HEALTHY_WITHIN),
        "{}",
        cluster.logs()
    );
    cluster.member_mut(0).restart().unwrap();
    assert!(cluster.wait_healthy(HEALTHY_WITHIN), "{}", cluster.logs());
    for member in &cluster {
        assert!(has(member.client_port(), "fencelock/quorum", "v1"));
    }
}

#[test]
fn a_fully_killed_cluster_comes_back_with_restart_members() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    put(cluster.member(1).client_port(), "fencelock/all", "back");
    for member in cluster.iter_mut() {
        member.kill();
    }
    for member in &cluster {
        assert_refused(member.client_port());
    }
    // Duplicates count once.
    cluster.restart_members(&[2, 0, 1, 0]).unwrap();
    for member in &cluster {
        assert!(member.is_running());
    }
    assert!(cluster.wait_healthy(HEALTHY_WITHIN), "{}", cluster.logs());
    assert!(has(
        cluster.member(0).client_port(),
        "fencelock/all",
        "back"
    ));
}

#[test]
fn pause_and_resume_of_a_cluster_member() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    cluster.member_mut(1).pause();
    assert!(cluster.member(1).is_paused());
    assert!(!cluster.member(1).is_healthy());
    let err = http(
        cluster.member(1).client_port(),
        "GET",
        "/health",
        "",
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    for i in [0, 2] {
        assert!(
            cluster.member(i).wait_healthy(HEALTHY_WITHIN),
            "{}",
            cluster.logs()
        );
    }

    cluster.member_mut(1).resume();
    assert!(!cluster.member(1).is_paused());
    assert!(
        cluster.member(1).wait_healthy(HEALTHY_WITHIN),
        "{}",
        cluster.logs()
    );
    assert!(cluster.wait_healthy(HEALTHY_WITHIN), "{}", cluster.logs());
}

#[test]
fn dropping_a_cluster_leaves_no_etcd_process_behind() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    cluster.member_mut(2).pause();
    let pids: Vec<u32> = cluster.iter().map(|m| m.pid().unwrap()).collect();
    let ports: Vec<u16> = cluster
        .iter()
        .flat_map(|m| [m.client_port(), m.peer_port()])
        .collect();
    let dirs: Vec<_> = cluster.iter().map(|m| m.dir().to_owned()).collect();
    assert!(pids.iter().all(|&pid| process_exists(pid)));
    drop(cluster);
    for pid in pids {
        assert!(!process_exists(pid), "etcd pid {pid} survived the drop");
    }
    for port in ports {
        assert_refused(port);
    }
    for dir in dirs {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}

#[test]
fn missing_binary_is_an_error_naming_the_path_and_the_variable() {
    let err = EtcdServer::builder()
        .binary("/nonexistent/etcd")
        .start()
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::EtcdBinaryNotFound { ref binary } if binary == "/nonexistent/etcd"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/etcd"), "{msg}");
    assert!(msg.contains("FENCELOCK_ETCD"), "{msg}");

    let err = EtcdServer::builder()
        .binary("/nonexistent/etcd")
        .start_cluster(3)
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::EtcdBinaryNotFound { .. }),
        "{err:?}"
    );

    // A bare name is looked up on PATH.
    let err = EtcdServer::builder()
        .binary("fencelock-no-such-etcd")
        .start()
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::EtcdBinaryNotFound { .. }),
        "{err:?}"
    );
}

#[test]
fn a_binary_that_exits_is_a_start_failure() {
    let err = EtcdServer::builder().binary("false").start().unwrap_err();
    assert!(
        matches!(err, FixtureError::EtcdStartFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("exited"), "{err}");
}

#[test]
fn etcd_rejecting_its_flags_is_a_start_failure_with_its_log() {
    // etcd insists on an election timeout of at least 5 heartbeats.
    let err = EtcdServer::builder()
        .heartbeat_interval(Duration::from_millis(100))
        .election_timeout(Duration::from_millis(400))
        .start()
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::EtcdStartFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("5 times"), "{err}");
}

#[test]
fn timings_and_extra_args_are_passed_to_etcd() {
    let server = EtcdServer::builder()
        .heartbeat_interval(Duration::from_millis(60))
        .election_timeout(Duration::from_millis(600))
        .arg("--quota-backend-bytes=12345678")
        .start()
        .unwrap();
    // etcd logs its whole configuration at start-up.
    let log = server.log();
    assert!(log.contains(r#""heartbeat-interval":"60ms""#), "{log}");
    assert!(log.contains(r#""election-timeout":"600ms""#), "{log}");
    assert!(log.contains(r#""quota-backend-bytes":12345678"#), "{log}");
}

#[test]
fn restart_fails_cleanly_when_the_port_is_taken() {
    let mut server = EtcdServer::start().unwrap();
    let port = server.client_port();
    server.kill();
    let _squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    // The restart retries the same ports briefly, then gives up.
    let err = server.restart().unwrap_err();
    assert!(
        matches!(err, FixtureError::EtcdStartFailed { client_port, .. } if client_port == port),
        "{err:?}"
    );
    assert!(err.to_string().contains("address already in use"), "{err}");
    assert!(!server.is_running());
}

#[test]
#[should_panic(expected = "deliberate")]
fn drop_while_panicking_does_not_abort() {
    // The drop prints the members' log tails to stderr (visible with
    // --nocapture) and must not panic again.
    let _cluster = EtcdCluster::start(3).unwrap();
    let _server = EtcdServer::start().unwrap();
    panic!("deliberate");
}

#[tokio::test]
async fn usable_from_a_tokio_test() {
    let server = EtcdServer::start().unwrap();
    tokio::net::TcpStream::connect(server.client_addr())
        .await
        .unwrap();
    assert!(server.is_healthy());
}
