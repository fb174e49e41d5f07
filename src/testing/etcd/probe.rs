//! How the etcd fixtures tell that a member is up: its HTTP endpoints,
//! polled.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Poll interval while waiting for readiness or health.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Connect timeout of a probe (on loopback a listener accepts at once, and
/// a closed port refuses at once).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// Upper bound of one whole HTTP exchange of a probe. When a member still
/// knows a leader but the cluster has lost its quorum, `/health` waits for a
/// quorum read with a 1 s timeout of its own before answering `false`; this
/// must be longer than that, so that such a member is reported unhealthy
/// rather than timing out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest HTTP response a probe reads (a member list of a few members is
/// well under a kilobyte).
const MAX_RESPONSE: usize = 64 * 1024;

/// Calls `probe` until it returns true or `timeout` has passed (checked
/// after each call), and returns its last answer.
pub(super) fn poll_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// `GET /health` answers 200 with `"health":"true"` (503 with `"false"`
/// when the member has no leader or the quorum read fails).
pub(super) fn probe_health(addr: SocketAddr) -> bool {
    matches!(
        http(addr, "GET", "/health", ""),
        Ok((200, body)) if body.contains(r#""health":"true""#)
    )
}

/// The member list served at `addr` (through the v3 JSON gateway) names the
/// member `name`.
pub(super) fn probe_identity(addr: SocketAddr, name: &str) -> bool {
    matches!(
        http(addr, "POST", "/v3/cluster/member/list", "{}"),
        Ok((200, body)) if body.contains(&format!(r#""name":"{name}""#))
    )
}

/// One HTTP/1.0 exchange, bounded by [`PROBE_TIMEOUT`] as a whole: the
/// status code and the body. HTTP/1.0 because the server then closes the
/// connection after the response, so the response is simply everything up
/// to EOF (no keep-alive, no chunked encoding).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> io::Result<(u16, String)> {
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut response = Vec::new();
    let mut buf = [0; 4096];
    loop {
        // Per-read timeouts alone would let a trickling server go on for
        // ever; the remaining time bounds the whole exchange.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf)? {
            0 => break,
            n => response.extend_from_slice(&buf[..n]),
        }
        if response.len() > MAX_RESPONSE {
            return Err(invalid("HTTP response too large"));
        }
    }
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of the HTTP headers"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no HTTP status"))?;
    Ok((status, body.to_owned()))
}
