//! The `fencelock` binary against real redis-server nodes: mutual exclusion
//! between processes, lock loss, signals, exit codes and `--json`.
#![cfg(feature = "cli")]

mod commands;
mod etcd;
mod exec;
mod primitives;

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

/// Each line parsed as a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}
