//! A TCP proxy between clients and one server, for faults of the network
//! rather than of the server: added latency, a link that passes nothing
//! for a while (a partition, both ways or one way), and connections cut
//! mid-conversation.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::FixtureError;

/// Pump threads only copy bytes; a small stack keeps a few hundred of them
/// cheap.
const PUMP_STACK: usize = 64 * 1024;
/// How long connecting to the upstream server may take before the client's
/// connection is dropped (as if the server were unreachable).
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A TCP proxy on a free loopback port that forwards every connection to one
/// upstream address (typically a [`RedisServer`](super::RedisServer)), and
/// lets a test degrade the link while clients use it:
///
/// - [`set_latency`](Self::set_latency): every chunk of bytes waits this
///   long before it is passed on, in each direction;
/// - [`set_silent`](Self::set_silent): nothing passes in either direction,
///   on open connections and new ones, as in a partition (clients see
///   timeouts, not errors); what was sent meanwhile arrives once it heals;
/// - [`set_silent_toward`](Self::set_silent_toward): the same in one
///   [`Direction`] only, as an asymmetric partition: requests that reach
///   the server while its replies are held, or requests held while the
///   server's earlier replies still arrive;
/// - [`cut`](Self::cut): every open connection is closed at once (clients
///   see the connection end mid-conversation); new ones work again.
///
/// Each connection uses two threads, one per direction, so latency delays
/// a connection's chunks one after another, as a slow link would. When the
/// upstream server is down, a new connection is closed right after it is
/// accepted. Dropping the proxy stops it and closes every connection.
///
/// ```no_run
/// use std::time::Duration;
///
/// use fencelock::testing::{RedisServer, TcpProxy};
///
/// let server = RedisServer::start()?;
/// let proxy = TcpProxy::start(server.addr())?;
/// let url = proxy.redis_url(); // clients connect here
/// proxy.set_latency(Duration::from_millis(200));
/// proxy.cut();
/// # Ok::<(), fencelock::testing::FixtureError>(())
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// One direction of the bytes through a [`TcpProxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the clients to the server: requests.
    ToServer,
    /// From the server to the clients: replies.
    ToClient,
}

impl Direction {
    /// Both directions, requests first.
    pub const BOTH: [Direction; 2] = [Direction::ToServer, Direction::ToClient];

    fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    latency_us: AtomicU64,
    /// Whether the link passes nothing, toward the server and toward the
    /// client ([`Direction::index`]); `passing` is signalled when it
    /// changes, and when the proxy stops.
    silent: Mutex<[bool; 2]>,
    passing: Condvar,
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Both sockets of every open connection, to close them from outside.
    open: Mutex<HashMap<u64, [TcpStream; 2]>>,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, [TcpStream; 2]>> {
        // A pump that panicked cannot leave the map half-changed.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn silent(&self) -> MutexGuard<'_, [bool; 2]> {
        self.silent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while the link is silent toward `direction`; `false` when the
    /// proxy stops.
    fn wait_passing(&self, direction: Direction) -> bool {
        let mut silent = self.silent();
        while silent[direction.index()] && !self.stopping.load(Ordering::SeqCst) {
            silent = self
                .passing
                .wait(silent)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !self.stopping.load(Ordering::SeqCst)
    }

    fn close_all(&self) {
        for [a, b] in self.open().drain().map(|(_, pair)| pair) {
            // Errors mean the socket is already closed: nothing to do.
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    ///
    /// # Errors
    ///
    /// [`FixtureError`] when the listening socket cannot be bound (its log's last lines are in the message).
    pub fn start(upstream: SocketAddr) -> Result<Self, FixtureError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| FixtureError::io("binding the proxy to 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| FixtureError::io("reading the proxy's port", e))?;
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("proxy-{}", addr.port()))
                .spawn(move || accept_loop(listener, upstream, shared))
                .map_err(|e| FixtureError::io("spawning the proxy thread", e))?
        };
        Ok(Self {
            addr,
            upstream,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:<port>` of the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Delays every chunk passed on, in each direction, by `latency`
    /// (zero: none). Applies to open connections from their next chunk.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.shared.latency_us.store(micros, Ordering::SeqCst);
    }

    /// Makes the link pass nothing (`true`) or pass again (`false`), as a
    /// network partition does: bytes sent meanwhile are held, not lost, and
    /// arrive in order once the link passes again, as TCP's retransmissions
    /// would deliver them. (Losing bytes inside a connection that stays
    /// open is not something TCP does; it would desynchronise a pipelined
    /// Redis connection for good.) A [`cut`](Self::cut) still ends the
    /// connections, bytes held included.
    pub fn set_silent(&self, silent: bool) {
        *self.shared.silent() = [silent; 2];
        self.shared.passing.notify_all();
    }

    /// As [`set_silent`](Self::set_silent), in one direction only: with
    /// [`Direction::ToClient`] silent, requests still reach the server and
    /// run there, and their replies are held; with [`Direction::ToServer`]
    /// silent, requests are held and replies to earlier ones still arrive.
    /// The other direction keeps its own setting, so silencing both ways
    /// one after the other is [`set_silent(true)`](Self::set_silent).
    pub fn set_silent_toward(&self, direction: Direction, silent: bool) {
        self.shared.silent()[direction.index()] = silent;
        self.shared.passing.notify_all();
    }

    /// Whether the link is silent toward `direction` now.
    pub fn is_silent_toward(&self, direction: Direction) -> bool {
        self.shared.silent()[direction.index()]
    }

    /// Closes every open connection now.
    pub fn cut(&self) {
        self.shared.close_all();
    }

    /// No latency and no silence: the link as it was at the start. Open
    /// connections stay open.
    pub fn heal(&self) {
        self.set_latency(Duration::ZERO);
        self.set_silent(false);
    }

    /// How many connections are open through the proxy.
    pub fn connections(&self) -> usize {
        self.shared.open().len()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wakes the pumps holding bytes on a silent link.
        let _silent = self.shared.silent();
        self.shared.passing.notify_all();
        drop(_silent);
        // Wakes the blocking accept so the thread sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, UPSTREAM_CONNECT_TIMEOUT);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.shared.close_all();
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect_timeout(&upstream, UPSTREAM_CONNECT_TIMEOUT) else {
            // Upstream down: the client sees its connection end at once.
            continue;
        };
        if let Err(e) = start_pumps(client, server, &shared) {
            eprintln!("fencelock::testing: proxy to {upstream}: {e}");
        }
    }
}

fn start_pumps(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    // Redis requests are small: without this, a reply can wait for an ACK.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared
        .open()
        .insert(id, [client.try_clone()?, server.try_clone()?]);
    let pairs = [
        (
            client.try_clone()?,
            server.try_clone()?,
            Direction::ToServer,
        ),
        (server, client, Direction::ToClient),
    ];
    for (from, to, direction) in pairs {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name(format!("proxy-pump-{id}"))
            .stack_size(PUMP_STACK)
            .spawn(move || {
                pump(from, &to, direction, &shared);
                // Either side ending ends the connection, as TCP through a
                // middlebox that forgets the flow would.
                let _ = to.shutdown(Shutdown::Both);
                if let Some([a, b]) = shared.open().remove(&id) {
                    let _ = a.shutdown(Shutdown::Both);
                    let _ = b.shutdown(Shutdown::Both);
                }
            })?;
    }
    Ok(())
}

fn pump(mut from: TcpStream, mut to: &TcpStream, direction: Direction, shared: &Shared) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A partition holds what is in flight: TCP never loses bytes inside
        // a connection that stays open, it retransmits them once the path
        // is back (or the connection ends). Reading no more meanwhile lets
        // flow control stop the sender, as a real partition would.
        if !shared.wait_passing(direction) {
            return;
        }
        let latency = shared.latency_us.load(Ordering::SeqCst);
        if latency > 0 {
            thread::sleep(Duration::from_micros(latency));
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
