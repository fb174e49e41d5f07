//! The client process: the checker starts this test binary again with a
//! client's spec in its environment, so the nemesis can pause a whole
//! process (SIGSTOP) and not only a task, and reads the history it wrote.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::{Child, Command};

use crate::client::{Client, Kind, Stall};
use crate::history::{Event, Role};

/// Set in the environment of the client process: its spec.
pub const SPEC_ENV: &str = "FENCELOCK_CHECKER_CHILD";

/// Runs the client process's client when this process is one; does
/// nothing otherwise.
pub fn main() {
    let Ok(spec) = std::env::var(SPEC_ENV) else {
        return;
    };
    let (client, out) = parse_spec(&spec);
    let mut out = File::create(out).expect("create the child's history file");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(client.run(Arc::new(Stall::default()), |event| {
        // One write per line, so a history cut short stays readable.
        writeln!(out, "{event}").expect("write the child's history");
    }));
}

/// Starts a client process that runs `client` and writes its history to
/// `out`, one event a line.
pub fn spawn(client: &Client, out: &Path) -> Child {
    let spec = format!(
        "name={};role={};backend={};until={};store={};database={};nodes={};clock_checks={};out={}",
        client.name,
        client.role.name(),
        client.backend.name(),
        client.until,
        client.store,
        client.database,
        client.nodes.join(","),
        client.clock_checks,
        out.display()
    );
    Command::new(std::env::current_exe().unwrap())
        .args([
            "checker_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SPEC_ENV, spec)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the client process")
}

fn parse_spec(spec: &str) -> (Client, String) {
    let field = |name: &str| {
        spec.split(';')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{name} missing from {spec:?}"))
            .to_owned()
    };
    let client = Client {
        name: field("name"),
        role: Role::parse(&field("role")).expect("a role"),
        backend: Kind::parse(&field("backend")).expect("a backend"),
        nodes: field("nodes").split(',').map(str::to_owned).collect(),
        store: field("store"),
        database: field("database"),
        until: field("until").parse().unwrap(),
        watchdog: true,
        clock_checks: field("clock_checks").parse().unwrap(),
    };
    (client, field("out"))
}

/// The history a client process wrote to `path`.
pub fn read_history(path: &Path) -> Vec<Event> {
    let file = File::open(path).expect("the child's history");
    BufReader::new(file)
        .lines()
        .map(|line| Event::parse(&line.unwrap()).unwrap())
        .collect()
}
