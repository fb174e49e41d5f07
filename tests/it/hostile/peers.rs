//! The fake peers of the hostile tests: tiny TCP servers inside the test
//! that play a broken or foreign peer (never Redis's own behaviour, which
//! real servers play), and the fault each must produce. `hostile` runs
//! them through its table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fencelock::NodeFault;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The per-node timeout of the tests that use these peers: a silent
/// peer's fault names it.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_millis(250);

/// How a hostile peer behaves on every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// Not Redis: an HTTP server that answers anything with a 400 and closes.
    Http,
    /// Answers every command with `-ERR nope`.
    Errors,
    /// Answers set-up commands with `+OK`, then sends half of the first
    /// script's reply and closes the connection.
    HalfReply,
    /// Accepts and never answers.
    Silent,
    /// A "Redis" that says `+OK` to every command: the connection's
    /// set-up, `SCRIPT LOAD`, every script, every read. Each reply is
    /// well-formed RESP, and a yes to anything: none is a script's answer.
    SaysOk,
}

/// A hostile peer listening on a free loopback port; stops (and closes all
/// its connections) when dropped.
pub(crate) struct Hostile {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Hostile {
    pub(crate) async fn start(peer: Peer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let server = tokio::spawn(async move {
            // Dropped with this task: aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                connections.spawn(serve(peer, stream));
            }
        });
        Self {
            addr,
            accepted,
            server,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub(crate) fn name(&self) -> String {
        self.addr.to_string()
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(peer: Peer, stream: TcpStream) {
    // As Redis does: each reply is written as soon as it is made, and a
    // second small reply must not wait for the client's delayed ACK of the
    // first (Nagle), 40 ms a pipeline that a real server never costs.
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    match peer {
        Peer::Http => {
            let mut buf = [0u8; 1024];
            if let Ok(n) = stream.read(&mut buf).await
                && n > 0
            {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            }
        }
        Peer::Silent => {
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        Peer::Errors | Peer::SaysOk => {
            let reply: &[u8] = match peer {
                Peer::Errors => b"-ERR nope\r\n",
                _ => b"+OK\r\n",
            };
            while read_command(&mut stream).await.is_some() {
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
        Peer::HalfReply => {
            while let Some(command) = read_command(&mut stream).await {
                let name = command.first().map(|c| c.to_ascii_uppercase());
                if matches!(name.as_deref(), Some(b"EVALSHA" | b"EVAL")) {
                    // An array of three integers, cut after the first.
                    let _ = stream.write_all(b"*3\r\n:1\r\n:4").await;
                    let _ = stream.shutdown().await;
                    return;
                }
                if stream.write_all(b"+OK\r\n").await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One RESP command (an array of bulk strings), or `None` at the end or
/// on anything else.
async fn read_command(stream: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let count = read_header(stream, b'*').await?;
    let mut parts = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = read_header(stream, b'$').await?;
        let mut part = vec![0; len + 2];
        stream.read_exact(&mut part).await.ok()?;
        part.truncate(len);
        parts.push(part);
    }
    Some(parts)
}

async fn read_header(stream: &mut BufReader<TcpStream>, kind: u8) -> Option<usize> {
    let mut line = Vec::new();
    stream.read_until(b'\n', &mut line).await.ok()?;
    let text = std::str::from_utf8(line.strip_prefix(&[kind])?).ok()?;
    text.trim_end().parse().ok()
}

/// The fault each peer must produce.
pub(crate) fn expected_fault(peer: Peer, fault: &NodeFault) -> bool {
    match peer {
        // Not RESP: a parse error, or the peer's close, whichever the
        // client meets first; never a timeout.
        Peer::Http => matches!(fault, NodeFault::Protocol(_) | NodeFault::Connection(_)),
        Peer::Errors => matches!(fault, NodeFault::Server(m) if m.contains("nope")),
        // The cut reply fails to parse, or the close is seen first.
        Peer::HalfReply => matches!(fault, NodeFault::Protocol(_) | NodeFault::Connection(_)),
        // The call's own timeout, or the connection set-up's (which runs
        // on in the background and fails a later call that waits for it).
        Peer::Silent => match fault {
            NodeFault::Timeout(t) => *t == NODE_TIMEOUT,
            NodeFault::Connection(m) => m.contains("timed out"),
            _ => false,
        },
        // A yes that no script answers is not read as a grant.
        Peer::SaysOk => matches!(fault, NodeFault::Protocol(_)),
    }
}

pub(crate) const PEERS: [Peer; 5] = [
    Peer::Http,
    Peer::Errors,
    Peer::HalfReply,
    Peer::Silent,
    Peer::SaysOk,
];
