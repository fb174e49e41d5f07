//! How the redis-server fixtures tell that a node is up: `PING`, answered
//! by the node's own process.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Socket timeouts used by the readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// One readiness probe: `PING` must answer `+PONG` and `INFO server` must
/// report our process id. `-LOADING` (AOF being loaded) counts as not ready.
pub(super) fn probe(addr: SocketAddr, pid: u32) -> bool {
    probe_io(addr, pid).unwrap_or(false)
}

/// The same probe over a TLS node's unix socket (a TLS port would need a
/// TLS client here).
pub(super) fn probe_unix(socket: &Path, pid: u32) -> bool {
    let probe = || -> io::Result<bool> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        let writer = stream.try_clone()?;
        ping_and_check_pid(writer, BufReader::new(stream), pid)
    };
    probe().unwrap_or(false)
}

fn probe_io(addr: SocketAddr, pid: u32) -> io::Result<bool> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let writer = stream.try_clone()?;
    ping_and_check_pid(writer, BufReader::new(stream), pid)
}

/// `PING` must answer `+PONG`, and `INFO server` report `pid`.
fn ping_and_check_pid(
    mut writer: impl Write,
    mut reader: BufReader<impl Read>,
    pid: u32,
) -> io::Result<bool> {
    writer.write_all(b"PING\r\n")?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("+PONG") {
        return Ok(false);
    }

    writer.write_all(b"INFO server\r\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    let Some(len) = line
        .strip_prefix('$')
        .and_then(|n| n.trim_end().parse::<usize>().ok())
    else {
        return Ok(false);
    };
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body);
    let reported = body
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse::<u32>().ok());
    Ok(reported == Some(pid))
}

/// Sends `command` (inline, no arguments with spaces) over TCP and returns
/// the first line of the reply.
pub(super) fn send(addr: SocketAddr, command: &str) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let writer = stream.try_clone()?;
    first_line(writer, BufReader::new(stream), command)
}

/// [`send`] over a TLS node's unix socket.
pub(super) fn send_unix(socket: &Path, command: &str) -> io::Result<String> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let writer = stream.try_clone()?;
    first_line(writer, BufReader::new(stream), command)
}

fn first_line(
    mut writer: impl Write,
    mut reader: BufReader<impl Read>,
    command: &str,
) -> io::Result<String> {
    writer.write_all(format!("{command}\r\n").as_bytes())?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}
