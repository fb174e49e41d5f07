//! The `fencelock` binary against real redis-server nodes: mutual exclusion
//! between processes, lock loss, signals, exit codes and `--json`.
#![cfg(feature = "cli")]

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{bounded, lock_keys, wait_until};
use fencelock::testing::RedisNodes;
use fencelock::{LockOptions, Locker, Redlock};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_fencelock");

/// The exit codes the README documents.
const USAGE: i32 = 2;
const UNAVAILABLE: i32 = 69;
const NOT_OBTAINED: i32 = 75;
const LOST: i32 = 76;
const NOT_FOUND: i32 = 127;

/// The bound for each test: generous, for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// `fencelock` with `nodes` in its environment and a node timeout that a
/// busy machine does not trip over.
fn fencelock(nodes: &RedisNodes) -> Command {
    let mut cmd = bare();
    cmd.env("FENCELOCK_NODES", nodes.urls().join(","))
        .env("FENCELOCK_NODE_TIMEOUT", "500ms");
    cmd
}

/// `fencelock` with none of its variables set.
fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "FENCELOCK_NODES",
        "FENCELOCK_NODE_TIMEOUT",
        "FENCELOCK_KEY_PREFIX",
        "FENCELOCK_ETCD",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Runs to the end and collects the output.
async fn run(cmd: &mut Command) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("run fencelock")
}

fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("fencelock died by a signal: {output:?}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn locker(nodes: &RedisNodes) -> Locker<Redlock> {
    common::locker(nodes, LockOptions::default())
}

/// Starts `fencelock exec` whose command prints `ready <pids...>` first;
/// returns the process, the pids and the rest of its stdout.
async fn start_exec(cmd: &mut Command) -> (Child, Vec<i32>, Lines<BufReader<ChildStdout>>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fencelock");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let Some(line) = lines.next_line().await.unwrap() else {
        let output = child.wait_with_output().await.unwrap();
        panic!("no ready line: {:?}\n{}", output.status, stderr(&output));
    };
    let pids = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect();
    (child, pids, lines)
}

/// Whether `pid` is a live process (a zombie is not: it has ended, only
/// its parent has not collected it).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

async fn wait_until_gone(pids: &[i32]) {
    wait_until(Duration::from_secs(10), async || {
        !pids.iter().any(|&pid| running(pid))
    })
    .await;
}

async fn assert_no_locks(nodes: &RedisNodes) {
    for node in nodes {
        assert_eq!(
            lock_keys(&node.url()).await,
            Vec::<String>::new(),
            "{}",
            node.url()
        );
    }
}

#[tokio::test]
async fn concurrent_execs_never_overlap_and_tokens_increase() {
    let nodes = common::start(3);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs");
    bounded(LIMIT, async {
        // Each run appends a start and an end line to one file. Appends
        // land in the order they happen, so overlapping runs would show as
        // two starts in a row.
        let runs: Vec<Child> = (0..4)
            .map(|_| {
                fencelock(&nodes)
                    .args(["exec", "--key", "shared", "--wait", "50s", "--"])
                    .args(["sh", "-c"])
                    .arg(
                        r#"echo "start $FENCELOCK_TOKEN" >> "$1"; sleep 0.2; echo "end $FENCELOCK_TOKEN" >> "$1""#,
                    )
                    .arg("sh")
                    .arg(&log)
                    .spawn()
                    .unwrap()
            })
            .collect();
        for run in runs {
            let output = run.wait_with_output().await.unwrap();
            assert_eq!(code(&output), 0, "{}", stderr(&output));
        }
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        let mut last = 0;
        for pair in lines.chunks(2) {
            let start = pair[0].strip_prefix("start ").expect(&text);
            let end = pair[1].strip_prefix("end ").expect(&text);
            assert_eq!(start, end, "runs overlapped:\n{text}");
            let token: u64 = start.parse().unwrap();
            assert!(token > last, "tokens must increase:\n{text}");
            last = token;
        }
        assert_no_locks(&nodes).await;
    })
    .await;
}

#[tokio::test]
async fn lost_lock_stops_the_command_and_exits_76() {
    let mut nodes = common::start(3);
    bounded(LIMIT, async {
        // The command ignores SIGTERM, so it takes the SIGKILL after the
        // grace period; its own child (sleep) is in its process group.
        let (child, pids, _) = start_exec(
            fencelock(&nodes)
                .args(["exec", "--key", "doomed", "--ttl", "3s", "--grace", "1s"])
                // The watchdog needs room for three node timeouts in a ttl.
                .args(["--node-timeout", "250ms"])
                .args(["--", "sh", "-c"])
                .arg(r#"trap "" TERM; sleep 60 & echo "ready $$ $!"; wait"#),
        )
        .await;
        let started = Instant::now();
        // No quorum can renew the lock now.
        nodes.node_mut(0).pause();
        nodes.node_mut(1).pause();
        let output = child.wait_with_output().await.unwrap();
        assert_eq!(code(&output), LOST, "{}", stderr(&output));
        assert!(stderr(&output).contains("lost"), "{}", stderr(&output));
        // ttl + grace + the release attempt, with room for a busy machine.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        wait_until_gone(&pids).await;
        nodes.node_mut(0).resume();
        nodes.node_mut(1).resume();
    })
    .await;
}

#[tokio::test]
async fn sigterm_stops_the_command_and_releases_the_lock() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let (child, pids, _) = start_exec(
            fencelock(&nodes)
                .args(["exec", "--key", "stopped", "--"])
                .args(["sh", "-c", r#"sleep 60 & echo "ready $$ $!"; wait"#]),
        )
        .await;
        assert!(locker(&nodes).is_locked("stopped").await.unwrap());
        kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let output = child.wait_with_output().await.unwrap();
        assert_eq!(code(&output), 128 + 15, "{}", stderr(&output));
        wait_until_gone(&pids).await;
        // fencelock waits for every node's answer before it exits.
        assert_no_locks(&nodes).await;
    })
    .await;
}

#[tokio::test]
async fn a_held_key_exits_75_without_running_the_command() {
    let nodes = common::start(3);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    bounded(LIMIT, async {
        let guard = locker(&nodes).try_lock("busy").await.unwrap();
        for wait in [&["--no-wait"][..], &["--wait", "300ms"]] {
            let output = run(fencelock(&nodes)
                .args(["exec", "--key", "busy"])
                .args(wait)
                .args(["--", "touch"])
                .arg(&marker))
            .await;
            assert_eq!(code(&output), NOT_OBTAINED, "{wait:?}: {}", stderr(&output));
            assert!(
                stderr(&output).contains("held elsewhere") || stderr(&output).contains("not free")
            );
            assert!(!marker.exists(), "the command ran without the lock");
        }
        guard.release().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_command_s_status_and_environment_come_through() {
    let nodes = common::start(1);
    bounded(LIMIT, async {
        let exec = |script: &str| {
            let mut cmd = fencelock(&nodes);
            cmd.args(["exec", "--key", "status", "--", "sh", "-c", script]);
            cmd
        };
        assert_eq!(code(&run(&mut exec("exit 3")).await), 3);
        assert_eq!(code(&run(&mut exec("exit 0")).await), 0);
        assert_eq!(code(&run(&mut exec("kill -KILL $$")).await), 128 + 9);
        let output = run(&mut exec(r#"echo "$FENCELOCK_KEY $FENCELOCK_TOKEN""#)).await;
        let text = stdout(&output);
        let (key, token) = text.trim().split_once(' ').unwrap();
        assert_eq!(key, "status");
        assert!(token.parse::<u64>().unwrap() > 0, "{text}");

        let output =
            run(fencelock(&nodes).args(["exec", "--key", "status", "--", "/no/such/command"]))
                .await;
        assert_eq!(code(&output), NOT_FOUND, "{}", stderr(&output));
        // Every path gave the lock back.
        assert_no_locks(&nodes).await;
    })
    .await;
}

#[tokio::test]
async fn no_quorum_exits_69_not_75() {
    let mut nodes = common::start(3);
    nodes.node_mut(0).kill();
    nodes.node_mut(1).kill();
    bounded(LIMIT, async {
        // An outage is not contention, also when the wait ran out.
        for wait in [&["--no-wait"][..], &["--wait", "1s"]] {
            let output = run(fencelock(&nodes)
                .args(["exec", "--key", "down"])
                .args(wait)
                .args(["--", "true"]))
            .await;
            assert_eq!(code(&output), UNAVAILABLE, "{wait:?}: {}", stderr(&output));
        }
        let output = run(fencelock(&nodes).args(["inspect", "down"])).await;
        assert_eq!(code(&output), UNAVAILABLE, "{}", stderr(&output));
    })
    .await;
}

#[tokio::test]
async fn bad_arguments_are_usage_errors() {
    bounded(LIMIT, async {
        let cases: &[&[&str]] = &[
            &["exec", "--key", "k", "--nodes", "redis://127.0.0.1:1"],
            &["exec", "--nodes", "redis://127.0.0.1:1", "--", "true"],
            &[
                "exec",
                "--key",
                "k",
                "--nodes",
                "redis://127.0.0.1:1",
                "--ttl",
                "soon",
                "--",
                "true",
            ],
            &[
                "exec",
                "--key",
                "k",
                "--nodes",
                "redis://127.0.0.1:1",
                "--no-wait",
                "--wait",
                "1s",
                "--",
                "true",
            ],
            &["exec", "--key", "k", "--", "true"],
            &["exec", "--key", "k", "--nodes", "not a url", "--", "true"],
            &[
                "exec",
                "--key",
                "",
                "--nodes",
                "redis://127.0.0.1:1",
                "--",
                "true",
            ],
            &["release", "k", "--nodes", "redis://127.0.0.1:1"],
            &[
                "exec",
                "--key",
                "k",
                "--nodes",
                "redis://127.0.0.1:1",
                "--quarantine",
                "0s",
                "--",
                "true",
            ],
            &[
                "exec",
                "--key",
                "k",
                "--etcd",
                "http://127.0.0.1:1",
                "--quarantine",
                "1m",
                "--",
                "true",
            ],
            &["inspect"],
            &["dev-cluster", "--nodes", "0"],
            &["no-such-command"],
        ];
        for args in cases {
            let output = run(bare().args(*args)).await;
            assert_eq!(code(&output), USAGE, "{args:?}: {}", stderr(&output));
            assert!(!stderr(&output).is_empty(), "{args:?}");
        }
    })
    .await;
}

/// Each line parsed as a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

#[tokio::test]
async fn json_output_parses() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let guard = locker(&nodes).try_lock("report").await.unwrap();
        let output = run(fencelock(&nodes).args(["inspect", "report", "--json"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let inspect = &json_lines(&stdout(&output))[0];
        assert_eq!(inspect["locked"], true);
        assert_eq!(inspect["holder"]["token"], guard.token().get());
        assert_eq!(inspect["nodes"].as_array().unwrap().len(), 3);

        let output = run(fencelock(&nodes).args(["--json", "list"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let list = &json_lines(&stdout(&output))[0];
        assert_eq!(list["resources"], serde_json::json!(["report"]));

        let output = run(fencelock(&nodes).args([
            "--json",
            "exec",
            "--key",
            "report",
            "--no-wait",
            "--",
            "true",
        ]))
        .await;
        assert_eq!(code(&output), NOT_OBTAINED);
        let events = json_lines(&stderr(&output));
        let last = events.last().unwrap();
        assert_eq!(last["event"], "exit");
        assert_eq!(last["outcome"], "not_obtained");
        assert_eq!(last["exit_code"], NOT_OBTAINED);
        guard.release().await.unwrap();

        let output = run(fencelock(&nodes).args([
            "--json",
            "exec",
            "--key",
            "report",
            "--",
            "sh",
            "-c",
            "echo $FENCELOCK_TOKEN",
        ]))
        .await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let token: u64 = stdout(&output).trim().parse().unwrap();
        let events = json_lines(&stderr(&output));
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0]["event"], "acquired");
        assert_eq!(events[0]["token"], token);
        assert_eq!(events[1]["event"], "exit");
        assert_eq!(events[1]["outcome"], "completed");
        assert_eq!(events[1]["exit_code"], 0);

        let output = run(fencelock(&nodes).args(["--json", "release", "--force", "report"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert_eq!(json_lines(&stdout(&output))[0]["removed"], 0);
    })
    .await;
}

#[tokio::test]
async fn release_force_frees_a_held_lock() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let locker = locker(&nodes);
        let guard = locker.try_lock("stuck").await.unwrap();
        // The acquire returned at quorum; let the last node have it too.
        locker.backend().settled().await;
        let output = run(fencelock(&nodes).args(["release", "--force", "stuck"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert!(
            stdout(&output).contains("removed from 3"),
            "{}",
            stdout(&output)
        );
        assert!(!locker.is_locked("stuck").await.unwrap());
        // The holder finds out at its release.
        assert!(guard.release().await.is_err());
    })
    .await;
}

#[tokio::test]
async fn dev_cluster_serves_locks_and_stops_its_nodes() {
    bounded(LIMIT, async {
        let mut cluster = bare()
            .args(["--json", "dev-cluster", "--nodes", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(cluster.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("the node list");
        let started: Value = serde_json::from_str(&first).unwrap();
        let urls: Vec<String> = serde_json::from_value(started["nodes"].clone()).unwrap();
        assert_eq!(urls.len(), 3);

        let output = run(bare()
            .env(
                "FENCELOCK_NODES",
                started["env"]["FENCELOCK_NODES"].as_str().unwrap(),
            )
            .args(["exec", "--key", "dev", "--", "true"]))
        .await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));

        kill(Pid::from_raw(cluster.id().unwrap() as i32), Signal::SIGTERM).unwrap();
        let output = cluster.wait_with_output().await.unwrap();
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        for url in urls {
            let addr = url.strip_prefix("redis://").unwrap();
            assert!(
                std::net::TcpStream::connect(addr).is_err(),
                "{addr} still answers"
            );
        }
    })
    .await;
}

/// `fencelock` with the members of `cluster` in its environment.
#[cfg(feature = "etcd")]
fn fencelock_on_etcd(cluster: &fencelock::testing::EtcdCluster) -> Command {
    let mut cmd = bare();
    cmd.env("FENCELOCK_ETCD", cluster.endpoints().join(","))
        .env("FENCELOCK_NODE_TIMEOUT", "500ms");
    cmd
}

/// The same commands on etcd (`--etcd`): a held key is refused, a free one
/// runs the command with its token, inspect and list see the lock, and a
/// forced release frees it.
#[cfg(feature = "etcd")]
#[tokio::test]
async fn the_commands_work_on_etcd_too() {
    let cluster = common::start_etcd(1);
    let on_etcd = || fencelock_on_etcd(&cluster);
    let locker = common::etcd_locker(&cluster, LockOptions::default());
    bounded(LIMIT, async {
        let output = run(on_etcd().args([
            "exec",
            "--key",
            "e",
            "--",
            "sh",
            "-c",
            "echo $FENCELOCK_TOKEN",
        ]))
        .await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let first: u64 = stdout(&output).trim().parse().unwrap();

        let guard = locker.try_lock("e").await.unwrap();
        assert!(guard.token().get() > first);
        let output = run(on_etcd().args(["exec", "--key", "e", "--no-wait", "--", "true"])).await;
        assert_eq!(code(&output), NOT_OBTAINED, "{}", stderr(&output));
        let output = run(on_etcd().args(["--json", "inspect", "e"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert_eq!(
            json_lines(&stdout(&output))[0]["holder"]["token"],
            guard.token().get()
        );
        let output = run(on_etcd().args(["--json", "list"])).await;
        assert_eq!(
            json_lines(&stdout(&output))[0]["resources"],
            serde_json::json!(["e"])
        );
        let output = run(on_etcd().args(["release", "--force", "e"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        assert!(!locker.is_locked("e").await.unwrap());
        assert!(matches!(
            guard.release().await,
            Err(fencelock::Error::NotHeld { .. } | fencelock::Error::Lost { .. })
        ));
        // Both backends at once is a usage error.
        let output =
            run(on_etcd().args(["--json", "list", "--nodes", "redis://127.0.0.1:1"])).await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
    })
    .await;
}

/// How an `exec --wait` on etcd stops waiting for a held lock.
#[cfg(feature = "etcd")]
enum WaitEnd {
    /// Its `--wait` runs out: it gives up (75).
    GivesUp,
    /// A SIGTERM while it waits: it exits at once (128 + 15).
    Signalled,
}

/// An `exec --wait` that stops waiting (`end`) on etcd takes its place in
/// the lock's queue away before the process exits. A ticket left behind
/// would hold the queue for its lease (up to 5 s): meanwhile the lock,
/// though free, would go to nobody, and an `exec --no-wait` run by cron
/// would be refused (fairness makes a try refused while anyone queues).
#[cfg(feature = "etcd")]
async fn an_ended_wait_on_etcd_leaves_no_ticket_behind(end: WaitEnd) {
    let cluster = common::start_etcd(1);
    let locker = common::etcd_locker(&cluster, LockOptions::default());
    let exec = |args: &[&str]| {
        let mut cmd = fencelock_on_etcd(&cluster);
        cmd.args(["exec", "--key", "queued"]).args(args);
        cmd
    };
    bounded(LIMIT, async {
        let guard = locker.try_lock("queued").await.unwrap();
        match end {
            WaitEnd::GivesUp => {
                let output = run(&mut exec(&["--wait", "1s", "--", "true"])).await;
                assert_eq!(code(&output), NOT_OBTAINED, "{}", stderr(&output));
            }
            WaitEnd::Signalled => {
                let child = exec(&["--wait", "60s", "--", "true"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                // Another process's state: nothing signals it, so it is polled.
                wait_until(Duration::from_secs(10), async || {
                    locker.inspect("queued").await.unwrap().queued == Some(1)
                })
                .await;
                kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
                let output = child.wait_with_output().await.unwrap();
                assert_eq!(code(&output), 128 + 15, "{}", stderr(&output));
            }
        }
        // Looked at once the process is gone: no waiting, no polling.
        let info = locker.inspect("queued").await.unwrap();
        assert_eq!(info.queued, Some(0), "a ticket outlived its process");
        guard.release().await.unwrap();
        let output = run(&mut exec(&["--no-wait", "--", "true"])).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    })
    .await;
}

#[cfg(feature = "etcd")]
#[tokio::test]
async fn a_wait_that_gives_up_on_etcd_leaves_no_ticket_behind() {
    an_ended_wait_on_etcd_leaves_no_ticket_behind(WaitEnd::GivesUp).await;
}

#[cfg(feature = "etcd")]
#[tokio::test]
async fn a_wait_ended_by_a_signal_on_etcd_leaves_no_ticket_behind() {
    an_ended_wait_on_etcd_leaves_no_ticket_behind(WaitEnd::Signalled).await;
}

/// `--permits N`: at most N runs at once, each told its slot; the N+1st
/// is refused while they hold, and another N is a usage error.
#[tokio::test]
async fn permits_bound_concurrent_runs() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let sem = locker(&nodes).semaphore("exports", 2).unwrap();
        let first = sem.try_acquire().await.unwrap();
        let exec = |extra: &[&str], script: &str| {
            let mut cmd = fencelock(&nodes);
            cmd.args(["exec", "--key", "exports", "--no-wait"])
                .args(extra)
                .args(["--", "sh", "-c", script]);
            cmd
        };
        // One permit left: the run gets it, in the other slot.
        let output = run(&mut exec(&["--permits", "2"], "echo $FENCELOCK_SLOT")).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
        let slot: u32 = stdout(&output).trim().parse().unwrap();
        assert_eq!(slot, 1 - first.slot());
        // Both out: refused without running.
        let second = sem.try_acquire().await.unwrap();
        let output = run(&mut exec(&["--permits", "2"], "echo ran")).await;
        assert_eq!(code(&output), NOT_OBTAINED, "{}", stderr(&output));
        assert!(stdout(&output).is_empty());
        assert!(
            stderr(&output).contains("all 2 permits of semaphore \"exports\" are held elsewhere"),
            "{}",
            stderr(&output)
        );
        let output = run(&mut exec(&["--permits", "3"], "echo ran")).await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
        assert!(stderr(&output).contains("2 permits"), "{}", stderr(&output));
        let output = run(&mut exec(&["--permits", "0"], "echo ran")).await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
        first.release().await.unwrap();
        second.release().await.unwrap();
    })
    .await;
    assert_no_locks(&nodes).await;
}

/// `--shared` runs beside a reader but not beside a writer; `--write`
/// runs alone.
#[tokio::test]
async fn shared_runs_go_together_and_writes_alone() {
    let nodes = common::start(3);
    bounded(LIMIT, async {
        let exec = |mode: &str| {
            let mut cmd = fencelock(&nodes);
            cmd.args(["exec", "--key", "report", "--no-wait", mode, "--", "true"]);
            cmd
        };
        let reader = locker(&nodes).try_read("report").await.unwrap();
        assert_eq!(code(&run(&mut exec("--shared")).await), 0);
        assert_eq!(code(&run(&mut exec("--write")).await), NOT_OBTAINED);
        // The plain lock is another kind: a usage error, not contention.
        let output =
            run(fencelock(&nodes).args(["exec", "--key", "report", "--no-wait", "--", "true"]))
                .await;
        assert_eq!(code(&output), USAGE, "{}", stderr(&output));
        reader.release().await.unwrap();
        let writer = locker(&nodes).try_write("report").await.unwrap();
        assert_eq!(code(&run(&mut exec("--shared")).await), NOT_OBTAINED);
        writer.release().await.unwrap();
        assert_eq!(code(&run(&mut exec("--write")).await), 0);
    })
    .await;
    assert_no_locks(&nodes).await;
}
