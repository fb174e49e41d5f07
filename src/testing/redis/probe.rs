//! How the redis-server fixtures talk to a node without a client library:
//! the readiness probe (`PING`, answered by the node's own process) and
//! one-line commands such as `BGREWRITEAOF`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Socket timeouts used by the probe and by [`send`].
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// The two halves of one connection: commands go out on the first,
/// replies are read, line by line, from the second.
type Halves = (Box<dyn Write>, BufReader<Box<dyn Read>>);

/// Where the fixture reaches a node in plain RESP: its TCP port, or a TLS
/// node's unix socket (a TLS port would need a TLS client here).
pub(super) enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Endpoint {
    /// One connection, both halves bounded by [`PROBE_TIMEOUT`].
    fn connect(&self) -> io::Result<Halves> {
        match self {
            Endpoint::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(addr, PROBE_TIMEOUT)?;
                stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
                stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
                Ok((
                    Box::new(stream.try_clone()?),
                    BufReader::new(Box::new(stream)),
                ))
            }
            Endpoint::Unix(socket) => {
                let stream = UnixStream::connect(socket)?;
                stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
                stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
                Ok((
                    Box::new(stream.try_clone()?),
                    BufReader::new(Box::new(stream)),
                ))
            }
        }
    }
}

/// One readiness probe: `PING` must answer `+PONG` and `INFO server` must
/// report our process id. `-LOADING` (AOF being loaded) counts as not ready.
pub(super) fn probe(endpoint: &Endpoint, pid: u32) -> bool {
    endpoint
        .connect()
        .and_then(|(writer, reader)| ping_and_check_pid(writer, reader, pid))
        .unwrap_or(false)
}

/// `PING` must answer `+PONG`, and `INFO server` report `pid`.
fn ping_and_check_pid(
    mut writer: impl Write,
    mut reader: impl BufRead,
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

/// Sends `command` (inline, no arguments with spaces) and returns the
/// first line of the reply.
pub(super) fn send(endpoint: &Endpoint, command: &str) -> io::Result<String> {
    let (mut writer, mut reader) = endpoint.connect()?;
    writer.write_all(format!("{command}\r\n").as_bytes())?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok(line.trim_end().to_owned())
}
