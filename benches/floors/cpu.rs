//! Where the work of a round goes: CPU time of this process and of the
//! redis-server processes, and the commands the servers ran.
//!
//! CPU time is read from `/proc/<pid>/task/*/schedstat`, whose first field
//! is the nanoseconds a thread has spent on a CPU (the scheduler's own
//! account, ns resolution), summed over the process's threads. The clock
//! ticks of `/proc/<pid>/stat` (10 ms each, and sampled) would do over
//! seconds; schedstat is the scheduler's running sum, in nanoseconds. A
//! thread that exits between two readings takes its time with it, so a
//! reading keeps each thread's figure and [`Cpu::since`] reports threads
//! that vanished (tokio's workers live as long as the runtime; nothing in
//! the timed loops starts blocking threads).
//!
//! Commands come from `INFO commandstats`: every command's call count. In
//! Redis 7 the commands a script runs (`redis.call`) are counted there
//! under their own names, beside the `EVALSHA` that ran them, and so is
//! `total_commands_processed`; [`Commands`] therefore keeps both, every
//! command and the scripts alone.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

use fencelock::deadpool_redis::redis;
use redis::aio::MultiplexedConnection;

use super::Loops;

/// On-CPU nanoseconds of each thread of one process, at one moment.
#[derive(Clone)]
pub struct Cpu {
    threads: HashMap<u64, u64>,
}

impl Cpu {
    /// Reads process `pid` ("self" for this one).
    pub fn read(pid: &str) -> Self {
        let mut threads = HashMap::new();
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("read /proc/<pid>/task");
        for task in tasks.flatten() {
            let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
                continue;
            };
            // A thread can exit between the listing and the read.
            if let Ok(stat) = fs::read_to_string(task.path().join("schedstat")) {
                let on_cpu = stat.split_whitespace().next().and_then(|f| f.parse().ok());
                threads.insert(tid, on_cpu.expect("schedstat's first field"));
            }
        }
        Self { threads }
    }

    /// CPU time spent since `earlier`, and how many of `earlier`'s threads
    /// are gone (their time since `earlier` is missing from the figure).
    pub fn since(&self, earlier: &Cpu) -> (Duration, usize) {
        let spent = self
            .threads
            .iter()
            .map(|(tid, &now)| now - earlier.threads.get(tid).copied().unwrap_or(0))
            .sum();
        let gone = earlier
            .threads
            .keys()
            .filter(|tid| !self.threads.contains_key(tid))
            .count();
        (Duration::from_nanos(spent), gone)
    }
}

/// Command counts summed over nodes, from `INFO commandstats`.
#[derive(Clone, Copy, Default)]
pub struct Commands {
    /// Every command, those run inside scripts included.
    pub all: u64,
    /// `EVAL`, `EVALSHA` and their read-only variants alone.
    pub scripts: u64,
}

impl Commands {
    /// Connections to read the counts over: with no response timeout, as
    /// an overloaded server (4,096 polling waiters) can take seconds to
    /// answer, and the reading must not fail the bench.
    pub async fn connect(urls: &[String]) -> Vec<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let mut conns = Vec::new();
        for url in urls {
            let client = redis::Client::open(url.as_str()).unwrap();
            let conn = client.get_multiplexed_async_connection_with_config(&config);
            conns.push(conn.await.expect("connect to a node"));
        }
        conns
    }

    /// Reads every node's counts and sums them. The `INFO` calls of the
    /// bench's own readings are left out.
    pub async fn read(conns: &[MultiplexedConnection]) -> Self {
        let mut sum = Self::default();
        for conn in conns {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut conn.clone())
                .await
                .expect("INFO commandstats");
            for (name, calls) in info.lines().filter_map(parse_calls) {
                if name == "info" {
                    continue;
                }
                sum.all += calls;
                if name.starts_with("eval") {
                    sum.scripts += calls;
                }
            }
        }
        sum
    }

    /// Counts since `earlier`.
    pub fn since(self, earlier: Commands) -> Commands {
        Commands {
            all: self.all - earlier.all,
            scripts: self.scripts - earlier.scripts,
        }
    }
}

/// `("set", 12)` from `cmdstat_set:calls=12,usec=...`.
fn parse_calls(line: &str) -> Option<(&str, u64)> {
    let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
    let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
    Some((name, calls.parse().ok()?))
}

/// Everything [`Meter`] reads, at one moment.
pub struct Reading {
    client: Cpu,
    servers: Vec<Cpu>,
    commands: Commands,
}

/// Reads this process, the servers (by pid) and their command counts.
pub struct Meter {
    pids: Vec<String>,
    conns: Vec<MultiplexedConnection>,
}

/// What a measured window cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub client: Duration,
    pub servers: Duration,
    pub commands: Commands,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} commands ({} scripts)", self.all, self.scripts)
    }
}

impl Meter {
    /// A meter on the servers with these pids, reading their counts over
    /// `conns` (from [`Commands::connect`]: the bench's own, not the
    /// measured clients').
    pub fn new(pids: Vec<u32>, conns: Vec<MultiplexedConnection>) -> Self {
        let pids = pids.iter().map(u32::to_string).collect();
        Self { pids, conns }
    }

    /// Reads everything now.
    pub async fn read(&self) -> Reading {
        // The INFO calls cost each server some tens of microseconds per
        // reading, nothing against a window of seconds.
        let commands = Commands::read(&self.conns).await;
        Reading {
            client: Cpu::read("self"),
            servers: self.pids.iter().map(|p| Cpu::read(p)).collect(),
            commands,
        }
    }

    /// What was spent between `start` and `end`.
    pub fn between(start: &Reading, end: &Reading) -> Usage {
        let (client, gone) = end.client.since(&start.client);
        if gone > 0 {
            eprintln!("warning: {gone} client threads exited during a measured window");
        }
        let servers = end
            .servers
            .iter()
            .zip(&start.servers)
            .map(|(e, s)| e.since(s).0)
            .sum();
        Usage {
            client,
            servers,
            commands: end.commands.since(start.commands),
        }
    }
}

/// Rounds counted over a measured window, and their cost.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub rounds: u64,
    pub elapsed: Duration,
    pub usage: Usage,
}

impl Measured {
    /// Rounds per second.
    pub fn rate(&self) -> f64 {
        self.rounds as f64 / self.elapsed.as_secs_f64()
    }

    /// Microseconds of client and of server CPU per round, and commands
    /// (all, scripts) per round per node of `nodes`.
    pub fn per_round(&self, nodes: usize) -> (f64, f64, f64, f64) {
        let rounds = self.rounds.max(1) as f64;
        let per_node = rounds * nodes as f64;
        (
            self.usage.client.as_secs_f64() * 1e6 / rounds,
            self.usage.servers.as_secs_f64() * 1e6 / rounds,
            self.usage.commands.all as f64 / per_node,
            self.usage.commands.scripts as f64 / per_node,
        )
    }
}

/// `tasks` tasks loop `round(task)`; after `run / 5` of warm-up (steady
/// state: connections busy, allocator pools grown), the rounds completed
/// in the next `run` and what they cost.
pub async fn metered<F, Fut>(meter: &Meter, tasks: usize, run: Duration, round: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let loops = Loops::spawn(tasks, round);
    tokio::time::sleep(run / 5).await;
    let (start, from) = (meter.read().await, loops.done());
    let started = Instant::now();
    tokio::time::sleep(run).await;
    let (end, to) = (meter.read().await, loops.done());
    let elapsed = started.elapsed();
    loops.stop().await;
    Measured {
        rounds: to - from,
        elapsed,
        usage: Meter::between(&start, &end),
    }
}

/// This process's resident set size in bytes (`/proc/self/statm`).
pub fn resident_bytes() -> u64 {
    let statm = fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    // The page size of x86-64 and aarch64 Linux defaults.
    pages * 4096
}
