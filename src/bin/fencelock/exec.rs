//! `fencelock exec`: take the lock, run the command, give the lock back.
//!
//! The command runs in its own process group, so that stopping it stops
//! everything it started (a shell script's children too). It is stopped
//! when the lock is lost and when fencelock itself is told to stop:
//! SIGTERM to the group, then SIGKILL to the group when the grace period
//! ends or the command has exited, whichever comes first. The lock is
//! released on every path once the command is gone.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use clap::Args;
use fencelock::{Backend, Error, LockOptions, Locker};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::connect::{self, BackendArgs, Job};
use crate::held::{Held, Kind};
use crate::output::Output;
use crate::report::{Outcome, Report};
use crate::signals::Signals;
use crate::{exit, parse_duration};

/// `fencelock exec` options.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The lock's resource name: every run that must not overlap uses the same key.
    #[arg(long, short)]
    key: String,

    /// How long the lock lives on the nodes unless renewed. fencelock renews
    /// it every ttl/3 while the command runs; if it dies, others can take
    /// the lock after at most this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    ttl: Duration,

    /// How long to wait for the lock when it is held elsewhere (exit 75
    /// after that).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    wait: Duration,

    /// Try once and exit 75 at once when the lock is held elsewhere.
    #[arg(long, conflicts_with = "wait")]
    no_wait: bool,

    /// Take the key's read-write lock for reading: runs with `--shared`
    /// go together, and none runs beside a `--write` run, which goes first
    /// once it waits. (A run with neither takes the plain lock, another
    /// kind: it refuses to mix with these on one key.)
    #[arg(long, conflicts_with_all = ["permits", "write"])]
    shared: bool,

    /// Take the key's read-write lock for writing: alone, with no
    /// `--shared` run beside it.
    #[arg(long, conflicts_with = "permits")]
    write: bool,

    /// Treat the key as a semaphore of N permits: at most N runs at once
    /// across every host (every run must give the same N). The command
    /// gets its slot, 0 to N-1, in FENCELOCK_SLOT.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(fencelock::MAX_PERMITS)))]
    permits: Option<u32>,

    /// How long the command gets to exit after SIGTERM (on lock loss or when
    /// fencelock is stopped) before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    grace: Duration,

    #[command(flatten)]
    backend: BackendArgs,

    /// The command and its arguments (put `--` before it).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

/// Runs `fencelock exec`; returns the exit code.
pub async fn run(args: ExecArgs, output: &Output) -> u8 {
    let options = LockOptions::default().ttl(args.ttl);
    let backend = args.backend.clone();
    let exec = Exec {
        args,
        output: *output,
    };
    connect::run(&backend, options, exec, output).await
}

struct Exec {
    args: ExecArgs,
    output: Output,
}

/// What ends the wait for the command.
enum Event {
    Exited(io::Result<ExitStatus>),
    Lost,
    Signal(Signal),
}

impl Job for Exec {
    async fn run<B: Backend>(self, locker: Locker<B>) -> u8 {
        // Installed before the wait for the lock, so that a Ctrl-C while
        // waiting cancels the wait cleanly instead of killing the process.
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(e) => {
                let message = format!("cannot handle signals: {e}");
                return self
                    .report()
                    .finish(None, Outcome::Internal, exit::INTERNAL, &message);
            }
        };
        let guard = match self.acquire(&locker, &mut signals).await {
            Ok(guard) => guard,
            Err(code) => return code,
        };
        let child = match spawn(&self.args.command, &guard) {
            Ok(child) => child,
            Err(e) => return self.spawn_failed(guard, &e).await,
        };
        self.supervise(child, guard, &mut signals).await
    }
}

impl Exec {
    /// What the run holds while the command runs.
    fn kind(&self) -> Kind {
        match (self.args.permits, self.args.shared, self.args.write) {
            (Some(n), _, _) => Kind::Permits(n),
            (None, true, _) => Kind::Shared,
            (None, false, true) => Kind::Write,
            (None, false, false) => Kind::Lock,
        }
    }

    /// Where this run's final word goes.
    fn report(&self) -> Report<'_> {
        Report {
            output: &self.output,
            key: &self.args.key,
        }
    }

    /// Takes the lock, at once (`--no-wait`) or waiting up to `--wait`,
    /// and announces it. `Err` is the exit code when the command is not to
    /// run: the lock was not had, or a signal came first (both reported).
    async fn acquire<B: Backend>(
        &self,
        locker: &Locker<B>,
        signals: &mut Signals,
    ) -> Result<Held<B>, u8> {
        let args = &self.args;
        let wait = (!args.no_wait).then_some(args.wait);
        let acquire = self.kind().acquire(locker, &args.key, wait);
        // Dropping the acquire on a signal is safe: the library undoes
        // whatever the nodes granted.
        let acquired = tokio::select! {
            acquired = acquire => Ok(acquired),
            signal = signals.recv() => Err(signal),
        };
        let guard = match acquired {
            Ok(Ok(guard)) => guard,
            Ok(Err(e)) => {
                return Err(not_obtained(locker, &args.key, self.kind(), e, &self.output).await);
            }
            Err(signal) => {
                let message =
                    format!("got {signal} while waiting for the lock; not running the command");
                let code = exit::signalled(signal as i32);
                return Err(self
                    .report()
                    .finish(None, Outcome::Interrupted, code, &message));
            }
        };
        let mut event = json!({
            "event": "acquired",
            "key": args.key,
            "kind": self.kind().noun(),
            "token": guard.token().get(),
            "valid_ms": guard.remaining().as_millis(),
        });
        if let Some(slot) = guard.slot() {
            event["slot"] = json!(slot);
        }
        self.output.event(&event);
        Ok(guard)
    }

    /// The command could not be started: gives the lock back and exits as
    /// shells do (127 not found, 126 otherwise).
    async fn spawn_failed<B: Backend>(&self, guard: Held<B>, error: &io::Error) -> u8 {
        let token = guard.token();
        let code = match error.kind() {
            io::ErrorKind::NotFound => exit::NOT_FOUND,
            _ => exit::CANNOT_EXECUTE,
        };
        let message = format!(
            "cannot run {}: {error}",
            self.args.command[0].to_string_lossy()
        );
        let _ = release(guard, &self.output).await;
        self.report()
            .finish(Some(token), Outcome::SpawnFailed, code, &message)
    }

    /// Waits for whichever comes first: the command's exit, the lock's
    /// loss or a signal to fencelock; then ends the run accordingly.
    async fn supervise<B: Backend>(
        &self,
        mut child: Child,
        guard: Held<B>,
        signals: &mut Signals,
    ) -> u8 {
        let event = tokio::select! {
            status = child.wait() => Event::Exited(status),
            () = guard.lost() => Event::Lost,
            signal = signals.recv() => Event::Signal(signal),
        };
        match event {
            Event::Exited(Ok(status)) => self.command_exited(status, guard).await,
            Event::Exited(Err(e)) => self.wait_failed(&e, child, guard, signals).await,
            Event::Lost => self.lock_lost(child, guard, signals).await,
            Event::Signal(signal) => self.stopped_by(signal, child, guard, signals).await,
        }
    }

    /// The command exited by itself: its status is the exit code, unless
    /// the release finds that the lock had been lost meanwhile.
    async fn command_exited<B: Backend>(&self, status: ExitStatus, guard: Held<B>) -> u8 {
        let token = guard.token();
        match release(guard, &self.output).await {
            Released::Yes => {
                let code = status_code(status);
                self.report()
                    .finish(Some(token), Outcome::Completed, code, "")
            }
            Released::WasLost => {
                let message = format!(
                    "the lock on {:?} was lost before the command finished ({}): \
                     the run was not protected throughout",
                    self.args.key,
                    describe(status)
                );
                self.report()
                    .finish(Some(token), Outcome::Lost, exit::LOST, &message)
            }
        }
    }

    /// Waiting for the command failed: stops it and gives the lock back.
    async fn wait_failed<B: Backend>(
        &self,
        error: &io::Error,
        mut child: Child,
        guard: Held<B>,
        signals: &mut Signals,
    ) -> u8 {
        let token = guard.token();
        let message = format!("lost track of the command: {error}");
        let _ = stop(&mut child, self.args.grace, signals).await;
        let _ = release(guard, &self.output).await;
        self.report()
            .finish(Some(token), Outcome::Internal, exit::INTERNAL, &message)
    }

    /// The lock was lost while the command ran: stops the command.
    async fn lock_lost<B: Backend>(
        &self,
        mut child: Child,
        guard: Held<B>,
        signals: &mut Signals,
    ) -> u8 {
        let (key, token) = (&self.args.key, guard.token());
        self.output.say(&format!(
            "lost the lock on {key:?} (token {token}): stopping the command \
             (SIGTERM, SIGKILL after {})",
            humantime::format_duration(self.args.grace)
        ));
        self.output
            .event(&json!({"event": "lost", "key": key, "token": token.get()}));
        let status = stop(&mut child, self.args.grace, signals).await;
        // Only cleanup of what is left: the loss is the news, and
        // whatever the nodes that still answer say adds nothing.
        let _ = guard.release().await;
        let message = format!(
            "the lock on {key:?} was lost while the command ran; the command was stopped ({})",
            status.map_or_else(|e| e.to_string(), describe)
        );
        self.report()
            .finish(Some(token), Outcome::Lost, exit::LOST, &message)
    }

    /// fencelock got `signal`: stops the command and gives the lock back;
    /// the exit code is the signal's.
    async fn stopped_by<B: Backend>(
        &self,
        signal: Signal,
        mut child: Child,
        guard: Held<B>,
        signals: &mut Signals,
    ) -> u8 {
        let token = guard.token();
        self.output.say(&format!(
            "got {signal}: stopping the command (SIGTERM, SIGKILL after {})",
            humantime::format_duration(self.args.grace)
        ));
        self.output
            .event(&json!({"event": "signal", "signal": signal.as_str()}));
        let status = stop(&mut child, self.args.grace, signals).await;
        let released = release(guard, &self.output).await;
        let mut message = format!(
            "stopped by {signal}; the command was stopped ({})",
            status.map_or_else(|e| e.to_string(), describe)
        );
        if released == Released::WasLost {
            message.push_str("; the lock had been lost before");
        }
        let code = exit::signalled(signal as i32);
        self.report()
            .finish(Some(token), Outcome::Interrupted, code, &message)
    }
}

/// Explains why the lock was not had and returns the exit code. A wait
/// that ran out is told apart from an outage: the nodes are asked once
/// whether a quorum of them answers at all.
async fn not_obtained<B: Backend>(
    locker: &Locker<B>,
    key: &str,
    asked: Kind,
    error: Error,
    output: &Output,
) -> u8 {
    let what = asked.describe(key);
    let (mut code, mut kind) = exit::for_error(&error);
    let mut message = match &error {
        Error::NotObtained {
            expires_in: Some(left),
            ..
        } => format!(
            "{} (for {} more unless renewed); not running the command",
            asked.taken(key),
            humantime::format_duration(round_ms(*left))
        ),
        Error::NotObtained { .. } => {
            format!("{}; not running the command", asked.taken(key))
        }
        Error::Timeout { waited, .. } => format!(
            "{what} was not free within {}; not running the command",
            humantime::format_duration(*waited)
        ),
        other => format!("cannot take {what}: {other}; not running the command"),
    };
    if let Error::Timeout { .. } = error
        && let Ok(info) = locker.inspect(key).await
        && info.locked_nodes() + info.free_nodes() < info.quorum
    {
        (code, kind) = (exit::UNAVAILABLE, "unavailable");
        message = format!(
            "gave up on {what}: only {} of {} nodes answer, {} needed; not running the command",
            info.locked_nodes() + info.free_nodes(),
            info.nodes.len(),
            info.quorum
        );
    }
    Report { output, key }.finish(None, Outcome::NotRun(kind), code, &message)
}

/// Starts the command with the lock's key and token in its environment, in
/// a process group of its own.
fn spawn<B: Backend>(command: &[OsString], held: &Held<B>) -> io::Result<Child> {
    let mut command_line = Command::new(&command[0]);
    if let Some(slot) = held.slot() {
        command_line.env("FENCELOCK_SLOT", slot.to_string());
    }
    command_line
        .args(&command[1..])
        .env("FENCELOCK_TOKEN", held.token().get().to_string())
        .env("FENCELOCK_KEY", held.key())
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .process_group(0)
        // Only if fencelock itself panics: the normal paths wait for it.
        .kill_on_drop(true)
        .spawn()
}

/// Stops the command: SIGTERM to its process group, SIGKILL to the group
/// when the grace period ends, when the command has exited (to whatever it
/// left behind), or at a second signal to fencelock. Returns the command's
/// status.
async fn stop(child: &mut Child, grace: Duration, signals: &mut Signals) -> io::Result<ExitStatus> {
    // `id` is gone once the child was reaped: then there is nothing to stop.
    let Some(group) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
    else {
        return child.wait().await;
    };
    // ESRCH only: the group is gone already.
    let _ = killpg(group, Signal::SIGTERM);
    let exited = tokio::select! {
        status = child.wait() => Some(status),
        () = tokio::time::sleep(grace) => None,
        _ = signals.recv() => None,
    };
    let _ = killpg(group, Signal::SIGKILL);
    match exited {
        Some(status) => status,
        None => child.wait().await,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Released {
    /// The lock was held until the release (or the release could not tell
    /// otherwise: the ttl ends it).
    Yes,
    /// The lock had been lost, or was gone from the nodes.
    WasLost,
}

/// Releases the lock; an outage is a warning (the ttl frees the lock), a
/// lock that was no longer ours is [`Released::WasLost`].
async fn release<B: Backend>(guard: Held<B>, output: &Output) -> Released {
    let key = guard.key().to_owned();
    // An outage at release hides whether the lease had run out: ask first.
    let held = guard.is_held();
    match guard.release().await {
        Ok(()) => Released::Yes,
        Err(Error::Lost { .. } | Error::NotHeld { .. }) => Released::WasLost,
        Err(e) if !held => {
            output.warning(&format!("could not release lock {key:?}: {e}"));
            Released::WasLost
        }
        Err(e) => {
            output.warning(&format!(
                "could not release lock {key:?} ({e}); it ends by itself when its ttl runs out"
            ));
            Released::Yes
        }
    }
}

/// The exit code that reports the command's status, as shells do.
fn status_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(u8::MAX),
        (None, Some(signal)) => exit::signalled(signal),
        (None, None) => exit::INTERNAL,
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("it exited with {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("it died by {signal}"),
            Err(_) => format!("it died by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
