//! Integration tests of the real-server fixtures (`fencelock::testing`).

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use fencelock::testing::{FixtureError, Persistence, RedisNodes, RedisServer, Restart};

/// A RESP reply (the subset these tests need).
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

/// A minimal raw-TCP RESP client.
struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16, read_timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(read_timeout))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(Conn {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.writer.write_all(out.as_bytes())?;
        self.reply()
    }

    fn reply(&mut self) -> io::Result<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n");
        let bad = || io::Error::new(io::ErrorKind::InvalidData, line.to_owned());
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => match usize::try_from(rest.parse::<i64>().map_err(|_| bad())?) {
                Err(_) => Reply::Bulk(None),
                Ok(len) => {
                    let mut buf = vec![0; len + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(len);
                    Reply::Bulk(Some(String::from_utf8(buf).map_err(|_| bad())?))
                }
            },
            "*" => {
                let n: usize = rest.parse().map_err(|_| bad())?;
                Reply::Array((0..n).map(|_| self.reply()).collect::<io::Result<_>>()?)
            }
            _ => return Err(bad()),
        })
    }
}

fn conn(port: u16) -> Conn {
    Conn::open(port, Duration::from_secs(5)).expect("connect")
}

fn ping(port: u16) -> Reply {
    conn(port).cmd(&["PING"]).expect("PING")
}

fn pong() -> Reply {
    Reply::Simple("PONG".to_owned())
}

fn set(port: u16, key: &str, value: &str) {
    assert_eq!(
        conn(port).cmd(&["SET", key, value]).expect("SET"),
        Reply::Simple("OK".to_owned())
    );
}

fn get(port: u16, key: &str) -> Option<String> {
    match conn(port).cmd(&["GET", key]).expect("GET") {
        Reply::Bulk(v) => v,
        other => panic!("unexpected GET reply {other:?}"),
    }
}

fn assert_refused(port: u16) {
    let err = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .err()
        .unwrap_or_else(|| panic!("port {port} still accepts connections"));
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn start_answers_ping_and_drop_stops_the_process() {
    let server = RedisServer::start().unwrap();
    let port = server.port();
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    assert!(server.is_running());
    assert!(!server.is_paused());
    assert!(server.pid().is_some());
    assert_eq!(ping(port), pong());
    assert!(server.log().contains("Ready to accept connections"));
    assert_eq!(server.log_tail(1).lines().count(), 1);
    let dir = server.dir().to_owned();
    assert!(dir.exists());

    drop(server);
    assert_refused(port);
    assert!(!dir.exists(), "temp dir not removed");
}

#[test]
fn pause_blocks_replies_and_resume_restores_them() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    assert_eq!(ping(port), pong());

    server.pause();
    assert!(server.is_paused());
    assert!(server.is_running());
    let mut c = Conn::open(port, Duration::from_millis(300)).expect("connect while paused");
    let err = c.cmd(&["PING"]).expect_err("PING answered while paused");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );

    server.resume();
    assert!(!server.is_paused());
    assert_eq!(ping(port), pong());
}

#[test]
fn kill_refuses_connections_and_restart_wipe_comes_back_empty() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    set(port, "k", "v");
    assert_eq!(get(port, "k").as_deref(), Some("v"));

    server.kill();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert_refused(port);
    server.kill(); // no-op

    server.restart(Restart::WipeData).unwrap();
    assert_eq!(server.port(), port);
    assert!(server.is_running());
    assert_eq!(ping(port), pong());
    assert_eq!(get(port, "k"), None);
}

#[test]
fn aof_data_survives_sigkill_and_wipe_removes_it() {
    let mut server = RedisServer::start_with(Persistence::Aof).unwrap();
    let port = server.port();
    set(port, "fence", "42");

    server.kill();
    assert_refused(port);
    server.restart(Restart::KeepData).unwrap();
    assert_eq!(server.port(), port);
    assert_eq!(get(port, "fence").as_deref(), Some("42"));

    // Restart while running (no explicit kill) keeps the data too.
    server.restart(Restart::KeepData).unwrap();
    assert_eq!(get(port, "fence").as_deref(), Some("42"));

    server.restart(Restart::WipeData).unwrap();
    assert_eq!(get(port, "fence"), None);
}

/// A node restarted more often than its append-only file doubles keeps
/// the file short: Redis counts its own rewrite's growth from the size it
/// loaded, so without the fixture's rewrite after each restart the file
/// only grew, and an hour-long checker run died on a node that took over
/// 30 s to load it. Here the file is filled to just below the rewrite
/// threshold (4 MB) and then grows by 1.5 MB between restarts: 13 MB
/// after six of them without the rewrite on Redis 6.2, which the clock
/// runs use; Redis 7 counts from its base file alone and kept 3 MB. Run
/// on the default server and on every server of the matrix.
#[test]
fn restarts_keep_the_append_only_file_short() {
    let mut binaries = vec![None];
    binaries.extend(matrix_servers().into_iter().map(Some));
    for binary in binaries {
        let builder = RedisServer::builder().persistence(Persistence::Aof);
        let server = match &binary {
            Some(path) => builder.binary(path).start(),
            None => builder.start(),
        };
        restarts_keep_the_file_short(server.unwrap(), binary.as_deref());
    }
}

/// The servers scripts/setup fetched (target/servers/matrix); a missing
/// listing fails loudly.
fn matrix_servers() -> Vec<String> {
    let matrix = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/servers/matrix");
    let listing = std::fs::read_to_string(&matrix)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup", matrix.display()));
    listing
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(_, path)| path.to_owned()))
        .collect()
}

fn restarts_keep_the_file_short(mut server: RedisServer, binary: Option<&str>) {
    let value = "v".repeat(1000);
    let write = |port: u16, commands: usize| {
        let mut conn = conn(port);
        let mut out = String::new();
        for i in 0..commands {
            let key = format!("k{}", i % 10);
            out.push_str(&format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            ));
        }
        conn.writer
            .write_all(out.as_bytes())
            .expect("write the SETs");
        for _ in 0..commands {
            assert_eq!(conn.reply().expect("SET"), Reply::Simple("OK".to_owned()));
        }
    };
    write(server.port(), 3_800);
    for _ in 0..6 {
        server.restart(Restart::KeepData).unwrap();
        wait_for_no_rewrite(server.port());
        write(server.port(), 1_500);
    }
    let size = aof_size(server.dir());
    assert!(
        size < 4_000_000,
        "{binary:?}: the append-only files hold {size} bytes for 10 keys of 1 kB"
    );
    assert_eq!(get(server.port(), "k3").as_deref(), Some(value.as_str()));
}

/// Waits until no rewrite of the append-only file runs or is scheduled.
fn wait_for_no_rewrite(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let Reply::Bulk(Some(info)) = conn(port).cmd(&["INFO", "persistence"]).unwrap() else {
            panic!("INFO persistence is not a bulk string");
        };
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a rewrite still runs after 10 s:\n{info}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The bytes of the append-only files in `dir` (one file up to Redis 6.2,
/// a folder of them from 7.0).
fn aof_size(dir: &std::path::Path) -> u64 {
    let mut size = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("appendonly")
        {
            continue;
        }
        let meta = entry.metadata().unwrap();
        size += match meta.is_dir() {
            true => std::fs::read_dir(entry.path())
                .unwrap()
                .map(|f| f.unwrap().metadata().unwrap().len())
                .sum(),
            false => meta.len(),
        };
    }
    size
}

#[test]
fn nodes_start_on_distinct_ports_and_all_answer() {
    let nodes = RedisNodes::start(5).unwrap();
    assert_eq!(nodes.len(), 5);
    assert!(!nodes.is_empty());
    assert_eq!(nodes.urls().len(), 5);
    let ports: HashSet<u16> = nodes.iter().map(RedisServer::port).collect();
    assert_eq!(ports.len(), 5);
    for node in &nodes {
        assert_eq!(ping(node.port()), pong());
    }
    // Independent masters: a write to one node is not seen by another.
    set(nodes.node(0).port(), "only-on-0", "x");
    assert_eq!(get(nodes.node(1).port(), "only-on-0"), None);
    let logs = nodes.logs();
    for node in nodes.iter() {
        assert!(logs.contains(&node.port().to_string()));
    }
}

#[test]
fn nodes_can_be_killed_and_restarted_individually() {
    let mut nodes = RedisNodes::start_with(3, Persistence::Aof).unwrap();
    let port = nodes.node(1).port();
    set(port, "k", "v");
    nodes.node_mut(1).kill();
    assert_refused(port);
    assert_eq!(ping(nodes.node(0).port()), pong());
    nodes.node_mut(1).restart(Restart::KeepData).unwrap();
    assert_eq!(get(port, "k").as_deref(), Some("v"));
}

#[test]
fn kill_and_drop_work_on_a_paused_process() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    server.pause();
    server.kill();
    assert!(!server.is_running());
    assert!(!server.is_paused());
    assert_refused(port);

    server.restart(Restart::KeepData).unwrap();
    server.pause();
    // Restart of a paused node kills it first.
    server.restart(Restart::KeepData).unwrap();
    assert!(!server.is_paused());
    assert_eq!(ping(port), pong());

    server.pause();
    drop(server);
    assert_refused(port);
}

#[test]
fn missing_binary_is_an_error_naming_the_path() {
    let err = RedisServer::builder()
        .binary("/nonexistent/redis-server")
        .start()
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::BinaryNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/redis-server"), "{msg}");
    assert!(msg.contains("FENCELOCK_REDIS_SERVER"), "{msg}");

    let err = RedisServer::builder()
        .binary("/nonexistent/redis-server")
        .start_nodes(2)
        .unwrap_err();
    assert!(
        matches!(err, FixtureError::BinaryNotFound { .. }),
        "{err:?}"
    );
}

#[test]
fn a_binary_that_exits_is_a_start_failure() {
    let err = RedisServer::builder().binary("false").start().unwrap_err();
    assert!(matches!(err, FixtureError::StartFailed { .. }), "{err:?}");
}

#[test]
fn extra_args_are_passed_to_the_server() {
    let server = RedisServer::builder()
        .arg("--maxmemory")
        .arg("12345678")
        .start()
        .unwrap();
    let reply = conn(server.port())
        .cmd(&["CONFIG", "GET", "maxmemory"])
        .unwrap();
    assert_eq!(
        reply,
        Reply::Array(vec![
            Reply::Bulk(Some("maxmemory".to_owned())),
            Reply::Bulk(Some("12345678".to_owned())),
        ])
    );
}

#[test]
#[should_panic(expected = "deliberate")]
fn drop_while_panicking_does_not_abort() {
    // The drop prints the server's log tail to stderr (visible with
    // --nocapture) and must not panic again.
    let _nodes = RedisNodes::start(2).unwrap();
    let _server = RedisServer::start().unwrap();
    panic!("deliberate");
}

#[test]
fn restart_fails_cleanly_when_the_port_is_taken() {
    let mut server = RedisServer::start().unwrap();
    let port = server.port();
    server.kill();
    let _squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    // The restart retries the same port briefly, then gives up.
    let err = server.restart(Restart::KeepData).unwrap_err();
    assert!(matches!(err, FixtureError::StartFailed { port: p, .. } if p == port));
    assert!(err.to_string().contains("Address already in use"), "{err}");
    assert!(!server.is_running());
}
