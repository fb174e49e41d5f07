//! What every server fixture shares: its process (spawned into a temporary
//! directory, with a log file there, killed, paused and resumed), and the
//! start of a batch of them (spawn, then wait until every one is ready,
//! over again on fresh ports or on the same ones when a port was taken).

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::FixtureError;

/// Upper bound for reaping a killed process.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// Number of log lines printed when a server is dropped during a panic.
pub(super) const PANIC_LOG_LINES: usize = 30;
/// How many fresh sets of ports a new server (or batch) tries when a port
/// was taken.
const FRESH_PORT_ATTEMPTS: usize = 5;
/// How long a restart keeps retrying its (fixed) ports when they are in use.
const SAME_PORT_RETRY: Duration = Duration::from_secs(1);
/// The pause before a server whose port was taken is spawned on it again.
const RESPAWN_PAUSE: Duration = Duration::from_millis(20);

/// Which output of a server goes to its log file (the rest is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Capture {
    /// Only stderr: the server writes its log file itself.
    Stderr,
    /// Both stdout and stderr.
    All,
}

/// A server's process, in a temporary directory of its own that also holds
/// its log file.
///
/// Dropping it kills the process (also while paused), reaps it and removes
/// the directory. If the drop happens while the thread is panicking (a
/// failing test), the last [`PANIC_LOG_LINES`] lines of the log are printed
/// to stderr.
pub(super) struct Process {
    /// Names the server in warnings and log dumps, e.g.
    /// `redis-server 127.0.0.1:6379`.
    label: String,
    /// The log file's name in the directory.
    log_file: &'static str,
    child: Mutex<Option<Child>>,
    paused: bool,
    /// Size of the log file when the current process was spawned.
    log_offset: usize,
    // Declared last so it is removed after the process is gone.
    dir: TempDir,
}

impl Process {
    /// Creates the directory (`dir_prefix` and a random name); nothing runs
    /// until [`spawn`](Self::spawn).
    pub(super) fn new(
        label: String,
        dir_prefix: &str,
        log_file: &'static str,
    ) -> Result<Self, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix(dir_prefix)
            .tempdir()
            .map_err(|e| FixtureError::io(format!("creating the temp dir for {label}"), e))?;
        Ok(Self {
            label,
            log_file,
            child: Mutex::new(None),
            paused: false,
            log_offset: 0,
            dir,
        })
    }

    /// Spawns `cmd` in the directory (the previous process must be gone),
    /// with the `capture`d output appended to the log file. `not_found`
    /// makes the error for a binary that is not there out of its name.
    pub(super) fn spawn(
        &mut self,
        cmd: &mut Command,
        capture: Capture,
        not_found: impl FnOnce(String) -> FixtureError,
    ) -> Result<(), FixtureError> {
        let log_path = self.log_path();
        let opening = |e| FixtureError::io(format!("opening {}", log_path.display()), e);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(opening)?;
        let log_offset = log.metadata().map_or(0, |m| m.len() as usize);
        let stdout = match capture {
            Capture::Stderr => Stdio::null(),
            Capture::All => Stdio::from(log.try_clone().map_err(opening)?),
        };
        // A server that refuses its arguments says why on stderr, before
        // it opens a log of its own: kept in the log for the panic.
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| {
            let binary = Path::new(cmd.get_program()).display().to_string();
            if e.kind() == io::ErrorKind::NotFound {
                not_found(binary)
            } else {
                FixtureError::io(format!("spawning {binary}"), e)
            }
        })?;
        *self.child.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.log_offset = log_offset;
        self.paused = false;
        Ok(())
    }

    /// Waits for the spawned program to end (one that runs to its end, such
    /// as `initdb`), and forgets it.
    pub(super) fn wait(&mut self) -> io::Result<std::process::ExitStatus> {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match child {
            Some(mut child) => child.wait(),
            None => Err(io::Error::other("nothing was spawned")),
        }
    }

    /// The directory.
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, or `None` when the process is not running (killed or
    /// exited on its own).
    pub(super) fn pid(&self) -> Option<u32> {
        let mut child = self.lock_child();
        alive(&mut child)
            .then(|| child.as_ref().map(Child::id))
            .flatten()
    }

    /// The id of the spawned process, even if it has exited since (it is
    /// not reaped here, so [`exit_status`](Self::exit_status) can tell how).
    fn spawned_pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Whether the process is alive. A paused process counts as running.
    pub(super) fn is_running(&self) -> bool {
        alive(&mut self.lock_child())
    }

    /// Whether [`pause`](Self::pause) was the last signal, whether or not the
    /// process still runs.
    pub(super) fn pause_requested(&self) -> bool {
        self.paused
    }

    /// Whether the process is alive and paused by [`pause`](Self::pause).
    pub(super) fn is_paused(&self) -> bool {
        self.paused && self.is_running()
    }

    /// Kills the process with SIGKILL and reaps it. Works while paused.
    /// No-op if it is not running.
    pub(super) fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = child.take() {
            kill_and_reap(&mut child, &self.label);
        }
        self.paused = false;
    }

    /// Pauses the process with SIGSTOP. No-op if not running.
    pub(super) fn pause(&mut self) {
        if let Some(pid) = self.raw_pid_if_running()
            && signal::kill(pid, Signal::SIGSTOP).is_ok()
        {
            self.paused = true;
        }
    }

    /// Resumes a paused process with SIGCONT. No-op if not running.
    pub(super) fn resume(&mut self) {
        if let Some(pid) = self.raw_pid_if_running() {
            // Ignoring the error: the process may have died in the meantime.
            let _ = signal::kill(pid, Signal::SIGCONT);
        }
        self.paused = false;
    }

    /// If the process has exited, reaps it and says how; `None` while it
    /// runs.
    fn exit_status(&mut self) -> Option<String> {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => {
                *child = None;
                Some(status.to_string())
            }
            Some(Err(e)) => Some(format!("waiting for the process failed: {e}")),
            None => Some("the process is gone".to_owned()),
        }
    }

    /// The whole log file (read from disk; empty if unreadable).
    pub(super) fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The last `lines` lines of the log.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// What the current process has logged so far: the log is appended to
    /// across restarts.
    fn log_since_spawn(&self) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(log.get(self.log_offset..).unwrap_or(&[])).into_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(self.log_file)
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn raw_pid_if_running(&self) -> Option<Pid> {
        let pid = self.pid()?;
        Some(Pid::from_raw(i32::try_from(pid).ok()?))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- {label} log (last {PANIC_LOG_LINES} lines) ----\n{}\n\
                 ---- end of {label} log ----",
                self.log_tail(PANIC_LOG_LINES).trim_end(),
                label = self.label,
            );
        }
    }
}

/// A server fixture as the shared start logic sees it.
pub(super) trait Server {
    /// What the server logs when a port it is to listen on is taken.
    const ADDR_IN_USE: &'static str;
    /// How long a spawned server may take to be ready.
    const READY_TIMEOUT: Duration;
    /// The pause between two rounds of readiness probes.
    const POLL_INTERVAL: Duration;
    /// What a server that is not ready in time failed to do, for the error.
    const NOT_READY: &'static str;

    fn process(&self) -> &Process;

    fn process_mut(&mut self) -> &mut Process;

    /// Spawns the process again (the previous one must be gone): on the
    /// same ports, with the same data.
    fn respawn(&mut self) -> Result<(), FixtureError>;

    /// One readiness probe of the spawned process `pid`, which must be the
    /// one answering: not another server that took the port meanwhile.
    fn probe_ready(&self, pid: u32) -> bool;

    /// The error for server `i` of `batch`, which did not start: `reason`.
    fn start_failed(batch: &[&mut Self], i: usize, reason: &str) -> FixtureError;
}

/// Outcome of waiting for spawned servers.
pub(super) enum ReadyError {
    /// A server exited because one of its ports was taken.
    AddrInUse(FixtureError),
    /// Any other failure.
    Other(FixtureError),
}

impl ReadyError {
    fn into_inner(self) -> FixtureError {
        match self {
            ReadyError::AddrInUse(e) | ReadyError::Other(e) => e,
        }
    }
}

impl From<FixtureError> for ReadyError {
    fn from(e: FixtureError) -> Self {
        ReadyError::Other(e)
    }
}

/// Runs `start` (which picks fresh ports, spawns servers on them and waits
/// until they are ready) until no port was taken meanwhile by another
/// process, at most [`FRESH_PORT_ATTEMPTS`] times. A failed attempt's
/// servers are dropped by `start`: killed, their directories removed.
pub(super) fn start_on_fresh_ports<T>(
    mut start: impl FnMut() -> Result<T, ReadyError>,
) -> Result<T, FixtureError> {
    let mut attempt = 1;
    loop {
        match start() {
            Ok(started) => return Ok(started),
            Err(ReadyError::AddrInUse(_)) if attempt < FRESH_PORT_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e.into_inner()),
        }
    }
}

/// Kills every server of `batch`, respawns them all with their data, and
/// waits until all are ready; kills them again on failure.
pub(super) fn restart<S: Server>(batch: &mut [&mut S]) -> Result<(), FixtureError> {
    // Starts before the kills: the ports a killed server held are free at
    // once (SIGKILL closes its listeners), so a conflict means another
    // process took them, which is worth retrying only briefly.
    let respawn_until = Instant::now() + SAME_PORT_RETRY;
    for server in batch.iter_mut() {
        server.process_mut().kill();
    }
    let result = batch
        .iter_mut()
        .try_for_each(|server| server.respawn())
        .and_then(|()| wait_ready(batch, Some(respawn_until)).map_err(ReadyError::into_inner));
    if result.is_err() {
        for server in batch.iter_mut() {
            server.process_mut().kill();
        }
    }
    result
}

/// Waits until every spawned server of `batch` is ready, with one deadline
/// for all: a member of a forming cluster is ready only once a quorum of
/// them is up, so they are polled in turn rather than one after the other.
/// A server that exits fails the wait at once. If its port was taken and
/// `respawn_until` is given and not yet passed, it is respawned on the
/// same ports instead.
pub(super) fn wait_ready<S: Server>(
    batch: &mut [&mut S],
    respawn_until: Option<Instant>,
) -> Result<(), ReadyError> {
    let deadline = Instant::now() + S::READY_TIMEOUT;
    let mut ready = vec![false; batch.len()];
    loop {
        for (i, ready) in ready.iter_mut().enumerate() {
            if !*ready {
                *ready = look(batch, i, respawn_until)?;
            }
        }
        let Some(waiting) = ready.iter().position(|&r| !r) else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            let reason = format!("{} within {:?}", S::NOT_READY, S::READY_TIMEOUT);
            return Err(ReadyError::Other(S::start_failed(batch, waiting, &reason)));
        }
        thread::sleep(S::POLL_INTERVAL);
    }
}

/// One look at server `i` of `batch`: whether it is ready. An error when it
/// exited, unless its port was taken and it may be respawned (then it is,
/// and it is not ready yet).
fn look<S: Server>(
    batch: &mut [&mut S],
    i: usize,
    respawn_until: Option<Instant>,
) -> Result<bool, ReadyError> {
    let server = &mut batch[i];
    if let Some(pid) = server.process().spawned_pid()
        && server.probe_ready(pid)
    {
        return Ok(true);
    }
    let Some(status) = server.process_mut().exit_status() else {
        return Ok(false);
    };
    // Only this start's part of the log matters.
    let addr_in_use = server.process().log_since_spawn().contains(S::ADDR_IN_USE);
    if addr_in_use && respawn_until.is_some_and(|until| Instant::now() < until) {
        thread::sleep(RESPAWN_PAUSE);
        server.respawn()?;
        return Ok(false);
    }
    let error = S::start_failed(batch, i, &format!("the process exited ({status})"));
    Err(if addr_in_use {
        ReadyError::AddrInUse(error)
    } else {
        ReadyError::Other(error)
    })
}

/// Whether the child is alive; reaps it (and forgets it) if it has exited.
fn alive(child: &mut Option<Child>) -> bool {
    let exited = match child.as_mut() {
        None => return false,
        Some(c) => !matches!(c.try_wait(), Ok(None)),
    };
    if exited {
        *child = None;
    }
    !exited
}

/// SIGKILL (which also ends a stopped process), then reap, bounded. `label`
/// only names the server in the warning printed if the process does not go.
fn kill_and_reap(child: &mut Child, label: &str) {
    // Fails only if the process was already reaped; nothing to do then.
    let _ = child.kill();
    let deadline = Instant::now() + REAP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!(
                    "fencelock::testing: {label} (pid {}) did not exit within \
                     {REAP_TIMEOUT:?} of SIGKILL",
                    child.id()
                );
                return;
            }
            Ok(None) => thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut out = all[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}
