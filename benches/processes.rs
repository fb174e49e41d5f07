//! Contention across processes: 4 processes x 4 tasks loop `lock` ->
//! release on one key, N = 5 local redis-server nodes, with release
//! notifications (the default) and with polling only
//! (`wake_on_release(false)`, a 0-200 ms random pause between attempts).
//!
//! The bench re-executes itself as the worker processes
//! (`FENCELOCK_BENCH_WORKER` set). A worker connects, warms up, says
//! `ready` and waits for `go` on its stdin, so that all four start
//! together; after the run it prints one line of JSON: the fencing token
//! of each of its acquisitions with the task that made it, and every wait.
//! Fencing tokens grow with every new holder, so sorting the tokens of all
//! processes gives the global order of acquisitions without a shared
//! clock, and from it the hand-overs: acquisitions by a task (of any
//! process) other than the previous holder.
//!
//! A process's waiters queue in one line and only its head asks the
//! servers; across processes there is no line, only the release news on
//! each node's channel, and the heads of the four processes race for it.
//!
//! `cargo bench --bench processes --features testing` (see docs/performance.md).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use fencelock::{LockOptions, Locker, Redlock};
use serde_json::{Value, json};

mod floors;
use floors::contend::polling;
use floors::cpu::Commands;
use floors::stats::{median, percentile};

const PROCESSES: usize = 4;
const TASKS: usize = 4;
const NODES: usize = 5;
/// Tells a process to be a worker, and with which waiting.
const WORKER: &str = "FENCELOCK_BENCH_WORKER";
const URLS: &str = "FENCELOCK_BENCH_URLS";
/// The key of one run: each run has its own, so that nothing a run leaves
/// on the servers can stall the next.
const KEY: &str = "FENCELOCK_BENCH_KEY";

fn main() {
    let run = floors::run_length(Duration::from_secs(5));
    match std::env::var(WORKER) {
        Ok(variant) => worker(&variant, run),
        Err(_) => parent(run),
    }
}

/// One worker's acquisitions, as (fencing token, task), and waits (s).
struct Report {
    acquisitions: Vec<(u64, u64)>,
    waits: Vec<f64>,
}

fn parent(run: Duration) {
    let runs = floors::run_count(3);
    let nodes = floors::nodes(NODES);
    let urls = nodes.urls().join(",");
    // The servers' command counts, read by the parent around each run.
    let runtime = floors::runtime();
    let conns = runtime.block_on(Commands::connect(&nodes.urls()));
    let count = || runtime.block_on(Commands::read(&conns));
    // [variant] -> per run: hand-overs/s, cross-process hand-overs/s,
    // wait p99 (ms), wait max (ms), commands per hand-over (all nodes);
    // and acquisitions per process.
    let mut table = Vec::new();
    for variant in ["notifications", "polling"] {
        let mut figures = Vec::new();
        for r in 1..=runs {
            let key = format!("processes-{variant}-{r}");
            let (reports, commands) = run_workers(variant, &urls, &key, run, &count);
            let (f, per_process) = figures_of(&reports, run, commands);
            println!(
                "run {r} {variant:>13}: {:.0} hand-overs/s ({:.0}/s between processes), wait p99 {:.1} ms, max {:.1} ms, {:.1} commands per hand-over, acquisitions per process {per_process:?}",
                f[0], f[1], f[2], f[3], f[4]
            );
            figures.push(f);
        }
        let medians: [f64; 5] =
            std::array::from_fn(|i| median(figures.iter().map(|f| f[i]).collect()));
        table.push((variant, medians));
    }
    println!(
        "\n{PROCESSES} processes x {TASKS} tasks on one key, N = {NODES}, medians of {runs} runs of {run:?}"
    );
    println!(
        "variant        hand-overs/s  between processes/s  wait p99  wait max  commands/hand-over"
    );
    for (variant, [h, x, p99, max, commands]) in &table {
        println!("{variant:<13} {h:>13.0} {x:>20.0} {p99:>7.1}ms {max:>7.1}ms {commands:>19.1}");
    }
    let (with, without) = (table[0].1, table[1].1);
    println!(
        "hand-overs/s: notifications / polling = {:.1}x; max wait with notifications {:.1} ms",
        with[0] / without[0].max(f64::MIN_POSITIVE),
        with[3]
    );
}

/// Starts the workers, lets them go together, and collects their reports
/// and the commands the servers ran from the go to the last report (by
/// `count`, summed over nodes).
fn run_workers(
    variant: &str,
    urls: &str,
    key: &str,
    run: Duration,
    count: &impl Fn() -> Commands,
) -> (Vec<Report>, Commands) {
    let exe = std::env::current_exe().expect("the bench's own executable");
    let mut workers: Vec<(Child, BufReader<ChildStdout>)> = (0..PROCESSES)
        .map(|_| {
            let mut child = Command::new(&exe)
                .env(WORKER, variant)
                .env(URLS, urls)
                .env(KEY, key)
                .env("FENCELOCK_BENCH_SECS", run.as_secs_f64().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker");
            let stdout = BufReader::new(child.stdout.take().unwrap());
            (child, stdout)
        })
        .collect();
    for (_, stdout) in &mut workers {
        assert_eq!(read_line(stdout), "ready");
    }
    let before = count();
    for (child, _) in &mut workers {
        writeln!(child.stdin.as_mut().unwrap(), "go").expect("tell a worker to go");
    }
    let reports = workers
        .into_iter()
        .map(|(mut child, mut stdout)| {
            let report: Value = serde_json::from_str(&read_line(&mut stdout)).expect("a report");
            assert!(child.wait().expect("a worker's exit").success());
            let pairs = report["acquisitions"].as_array().unwrap();
            Report {
                acquisitions: pairs
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
                    .collect(),
                waits: report["waits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_f64().unwrap())
                    .collect(),
            }
        })
        .collect();
    (reports, count().since(before))
}

fn read_line(from: &mut impl BufRead) -> String {
    let mut line = String::new();
    from.read_line(&mut line).expect("read a worker's output");
    line.trim().to_string()
}

/// Hand-overs/s, those between processes per second, wait p99 and max
/// (ms), the servers' commands per hand-over; and acquisitions per process.
fn figures_of(reports: &[Report], run: Duration, commands: Commands) -> ([f64; 5], Vec<usize>) {
    let mut order: Vec<(u64, usize, u64)> = reports
        .iter()
        .enumerate()
        .flat_map(|(p, r)| {
            r.acquisitions
                .iter()
                .map(move |&(token, task)| (token, p, task))
        })
        .collect();
    order.sort_unstable();
    // Tokens are strictly greater for every new holder: two equal ones
    // would be two holders at once.
    let mut seen = HashMap::new();
    for &(token, p, _) in &order {
        if let Some(other) = seen.insert(token, p) {
            panic!("token {token} was given to processes {other} and {p}");
        }
    }
    let (mut handoffs, mut between) = (0, 0);
    for pair in order.windows(2) {
        let ((_, p1, t1), (_, p2, t2)) = (pair[0], pair[1]);
        if (p1, t1) != (p2, t2) {
            handoffs += 1;
        }
        if p1 != p2 {
            between += 1;
        }
    }
    let mut waits: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.waits.iter().copied())
        .collect();
    waits.sort_by(f64::total_cmp);
    let secs = run.as_secs_f64();
    let figures = [
        handoffs as f64 / secs,
        between as f64 / secs,
        percentile(&waits, 0.99) * 1e3,
        waits.last().copied().unwrap_or(0.0) * 1e3,
        commands.all as f64 / handoffs as f64,
    ];
    (
        figures,
        reports.iter().map(|r| r.acquisitions.len()).collect(),
    )
}

/// A worker: `TASKS` tasks loop `lock` -> release on the key for `run`
/// after the parent's `go`, then report.
fn worker(variant: &str, run: Duration) {
    let urls: Vec<String> = std::env::var(URLS)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect();
    let key: std::sync::Arc<str> = std::env::var(KEY).unwrap().into();
    let options = match variant {
        "polling" => polling(),
        _ => LockOptions::default(),
    };
    let runtime = floors::runtime();
    let locker = Locker::new(Redlock::from_urls(&urls).unwrap(), options).unwrap();
    runtime.block_on(floors::library_round(
        &locker,
        &format!("warm-up-{}", std::process::id()),
    ));
    println!("ready");
    assert_eq!(read_line(&mut std::io::stdin().lock()), "go");
    let report = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + run;
        let tasks: Vec<_> = (0..TASKS as u64)
            .map(|task| {
                let (locker, key) = (locker.clone(), std::sync::Arc::clone(&key));
                tokio::spawn(async move {
                    let (mut acquisitions, mut waits) = (Vec::new(), Vec::new());
                    loop {
                        let asked = Instant::now();
                        let held = tokio::time::timeout_at(deadline, locker.lock(&key)).await;
                        waits.push(asked.elapsed().as_secs_f64());
                        let Ok(guard) = held else {
                            // A wait still going at the end counts with
                            // its length so far.
                            return (acquisitions, waits);
                        };
                        let guard = guard.expect("lock");
                        acquisitions.push((guard.token().get(), task));
                        guard.release().await.expect("release");
                        if tokio::time::Instant::now() >= deadline {
                            return (acquisitions, waits);
                        }
                    }
                })
            })
            .collect();
        let (mut acquisitions, mut waits) = (Vec::new(), Vec::new());
        for task in tasks {
            let (a, w) = task.await.unwrap();
            acquisitions.extend(a);
            waits.extend(w);
        }
        // A wait cancelled at the deadline may have left an undo to run in
        // the background, and the process exits right after its report:
        // let it finish, or the lock would stay on the servers for its ttl.
        locker.settled().await;
        json!({ "acquisitions": acquisitions, "waits": waits })
    });
    println!("{report}");
}
