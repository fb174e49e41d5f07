//! The TCP proxy fixture (`fencelock::testing::TcpProxy`) in front of a real
//! redis-server: each fault it injects is seen by a client, and healing it
//! brings the link back.

use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use fencelock::testing::{Direction, RedisServer, Restart, TcpProxy};

/// Long enough for a round trip with the latency test's 2 x 100 ms on a
/// loaded machine, short enough to keep the silent-link case quick.
const READ_TIMEOUT: Duration = Duration::from_millis(1500);

fn connect(proxy: &TcpProxy) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(proxy.redis_url()).unwrap();
    let conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    conn.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(conn)
}

fn ping(conn: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(conn)
}

fn setup() -> (RedisServer, TcpProxy) {
    let server = RedisServer::start().expect("start redis-server (run scripts/setup)");
    let proxy = TcpProxy::start(server.addr()).unwrap();
    assert_ne!(proxy.addr(), server.addr());
    assert_eq!(proxy.upstream(), server.addr());
    (server, proxy)
}

#[test]
fn commands_pass_through_and_connections_are_counted() {
    let (_server, proxy) = setup();
    let mut conn = connect(&proxy).unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let value: String = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(value, "v");
    assert_eq!(proxy.connections(), 1);
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.connections() != 0 {
        assert!(Instant::now() < deadline, "closed connection still counted");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn latency_delays_each_round_trip_in_both_directions() {
    let (_server, proxy) = setup();
    let mut conn = connect(&proxy).unwrap();
    let latency = Duration::from_millis(100);
    proxy.set_latency(latency);
    let started = Instant::now();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
    // A lower bound only: the request and the reply each waited once.
    assert!(started.elapsed() >= 2 * latency, "{:?}", started.elapsed());
    proxy.heal();
}

#[test]
fn a_silent_link_times_out_and_healing_restores_new_connections() {
    let (_server, proxy) = setup();
    let mut conn = connect(&proxy).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
    proxy.set_silent(true);
    let err = ping(&mut conn).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    proxy.set_silent(false);
    let mut fresh = connect(&proxy).unwrap();
    assert_eq!(ping(&mut fresh).unwrap(), "PONG");
}

/// A partition holds bytes, it does not lose them: a request sent while the
/// link is silent gets no answer until the link heals, then its answer, in
/// order, on the same connection (as TCP would deliver it). A link that lost
/// bytes would leave a pipelined connection answering the wrong requests.
#[test]
fn a_silent_link_holds_bytes_and_delivers_them_in_order_once_healed() {
    use std::io::{Read, Write};
    let (_server, proxy) = setup();
    let mut raw = std::net::TcpStream::connect(proxy.addr()).unwrap();
    raw.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut reply = [0u8; 64];
    raw.write_all(b"ECHO one\r\n").unwrap();
    let n = raw.read(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"$3\r\none\r\n");
    proxy.set_silent(true);
    raw.write_all(b"ECHO two\r\nECHO three\r\n").unwrap();
    let err = raw.read(&mut reply).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    proxy.set_silent(false);
    let expected = b"$3\r\ntwo\r\n$5\r\nthree\r\n";
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let n = raw.read(&mut reply).unwrap();
        assert!(n > 0, "the connection ended");
        got.extend_from_slice(&reply[..n]);
    }
    assert_eq!(got, expected);
}

/// Reads from `raw` until `expected` came, whole.
fn read_exactly(raw: &mut std::net::TcpStream, expected: &[u8]) {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < expected.len() {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "the connection ended");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, expected);
}

/// What `raw` reads within the read timeout: `None` when nothing comes,
/// else the bytes that came (none: the connection ended).
fn arrives(raw: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::{ErrorKind, Read};
    let mut buf = [0u8; 64];
    match raw.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("{e}"),
        Ok(n) => Some(buf[..n].to_vec()),
    }
}

/// Silence toward the client alone: the request reaches the server and
/// runs (another connection, straight to the server, sees its write) while
/// its reply is held; the reply arrives once the link heals.
#[test]
fn silence_toward_the_client_runs_requests_and_holds_their_replies() {
    use std::io::Write;
    let (server, proxy) = setup();
    let mut raw = std::net::TcpStream::connect(proxy.addr()).unwrap();
    raw.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    proxy.set_silent_toward(Direction::ToClient, true);
    assert!(proxy.is_silent_toward(Direction::ToClient));
    assert!(!proxy.is_silent_toward(Direction::ToServer));
    raw.write_all(b"SET k one\r\n").unwrap();
    let direct = redis::Client::open(server.url()).unwrap();
    let mut direct = direct.get_connection().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value: Option<String> = redis::cmd("GET").arg("k").query(&mut direct).unwrap();
        if value.as_deref() == Some("one") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the server"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(arrives(&mut raw), None, "a reply passed a silent link");
    proxy.heal();
    assert!(!proxy.is_silent_toward(Direction::ToClient));
    read_exactly(&mut raw, b"+OK\r\n");
}

/// Silence toward the server alone: the request is held (the server never
/// sees it) until the link heals; then it runs and its reply comes back.
#[test]
fn silence_toward_the_server_holds_requests_until_healed() {
    use std::io::Write;
    let (server, proxy) = setup();
    let mut raw = std::net::TcpStream::connect(proxy.addr()).unwrap();
    raw.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    raw.write_all(b"ECHO one\r\n").unwrap();
    read_exactly(&mut raw, b"$3\r\none\r\n");
    proxy.set_silent_toward(Direction::ToServer, true);
    raw.write_all(b"SET k two\r\n").unwrap();
    assert_eq!(arrives(&mut raw), None, "a request passed a silent link");
    let direct = redis::Client::open(server.url()).unwrap();
    let mut direct = direct.get_connection().unwrap();
    let value: Option<String> = redis::cmd("GET").arg("k").query(&mut direct).unwrap();
    assert_eq!(value, None, "the server ran a held request");
    proxy.set_silent_toward(Direction::ToServer, false);
    read_exactly(&mut raw, b"+OK\r\n");
    let value: Option<String> = redis::cmd("GET").arg("k").query(&mut direct).unwrap();
    assert_eq!(value.as_deref(), Some("two"));
}

#[test]
fn cut_ends_open_connections_and_new_ones_work() {
    let (_server, proxy) = setup();
    let mut conn = connect(&proxy).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
    proxy.cut();
    let err = ping(&mut conn).unwrap_err();
    assert!(!err.is_timeout(), "a cut must end the connection: {err}");
    assert_eq!(proxy.connections(), 0);
    let mut fresh = connect(&proxy).unwrap();
    assert_eq!(ping(&mut fresh).unwrap(), "PONG");
}

#[test]
fn a_dead_upstream_ends_connections_until_it_is_back() {
    let (mut server, proxy) = setup();
    let mut conn = connect(&proxy).unwrap();
    assert_eq!(ping(&mut conn).unwrap(), "PONG");
    server.kill();
    let err = ping(&mut conn).unwrap_err();
    assert!(!err.is_timeout(), "{err}");
    // A new connection is accepted by the proxy, then closed.
    let closed = connect(&proxy).and_then(|mut c| ping(&mut c));
    assert!(closed.is_err(), "{closed:?}");
    server.restart(Restart::KeepData).unwrap();
    let mut fresh = connect(&proxy).unwrap();
    assert_eq!(ping(&mut fresh).unwrap(), "PONG");
}
