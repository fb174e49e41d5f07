//! `fencelock`: run any command under a distributed lock, like `flock(1)`
//! for a fleet, and look after the locks.
//!
//! ```text
//! fencelock exec --key nightly-billing --ttl 30s --wait 10s -- ./billing.sh
//! fencelock inspect nightly-billing
//! fencelock list [PREFIX]
//! fencelock release --force nightly-billing
//! fencelock dev-cluster --nodes 5
//! ```
//!
//! The nodes come from `--nodes` or `FENCELOCK_NODES` (comma-separated
//! `redis://`, `rediss://` or `unix://` URLs). `--json` makes the output
//! machine-readable. The exit codes are in [`exit`] and in `--help`.

mod admin;
mod connect;
mod dev_cluster;
mod exec;
mod exit;
mod held;
mod output;
mod report;
mod signals;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::connect::BackendArgs;
use crate::output::Output;

/// The exit-code table for `--help`; [`exit`] has the constants.
const EXIT_CODES: &str = "\
Exit codes:
  0-125  exec: the command's own exit status (it ran, and the lock was held throughout)
  2      usage error: bad arguments, options, key or node URL
  69     the nodes could not be reached: no quorum answered (or dev-cluster could not start them)
  70     internal error in fencelock
  75     exec: the lock could not be had (held elsewhere with --no-wait, or --wait ran out)
  76     exec: the lock was lost while the command ran (the command was stopped), or it was
         found gone at release: the run was not protected throughout
  126    exec: the command could not be executed
  127    exec: the command was not found
  128+N  exec: the command died by signal N, or fencelock itself got signal N
         (130 for Ctrl-C, 143 for SIGTERM) and stopped the command";

/// Run a command under a distributed lock, and inspect, list and release
/// locks (Redlock over N Redis nodes, with fencing tokens).
#[derive(Debug, Parser)]
#[command(name = "fencelock", version, after_long_help = EXIT_CODES)]
struct Cli {
    /// Machine-readable output: one JSON object per line (for `exec`, on stderr).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command while holding the lock on KEY.
    ///
    /// The lock is renewed in the background while the command runs. The
    /// command gets FENCELOCK_TOKEN (the fencing token: a number above every
    /// earlier holder's) and FENCELOCK_KEY in its environment, and runs in its
    /// own process group. If the lock is lost, the whole group gets SIGTERM,
    /// then SIGKILL after the grace period, and fencelock exits with 76. The
    /// same happens when fencelock itself gets SIGINT, SIGTERM or SIGHUP
    /// (exit 128 + the signal). The lock is released on every path.
    #[command(after_long_help = EXIT_CODES)]
    Exec(exec::ExecArgs),

    /// Show each node's view of the lock on KEY and who holds it by quorum.
    Inspect {
        /// The lock's resource name.
        key: String,
        #[command(flatten)]
        backend: BackendArgs,
    },

    /// List the resources that have a lock on some node.
    List {
        /// Only resources whose name starts with this (default: all).
        #[arg(default_value = "")]
        prefix: String,
        #[command(flatten)]
        backend: BackendArgs,
    },

    /// Remove the lock on KEY on every node, whoever holds it.
    ///
    /// For a lock whose holder is known to be gone. The holder (if it still
    /// runs) finds out at its next renewal; the fencing counter stays, so the
    /// next holder's token is higher.
    Release {
        /// The lock's resource name.
        key: String,
        /// Required: confirms that the lock is to be removed whoever holds it.
        #[arg(long, required = true)]
        force: bool,
        #[command(flatten)]
        backend: BackendArgs,
    },

    /// Start local redis-server nodes for trying fencelock out.
    ///
    /// Prints the node URLs and an `export FENCELOCK_NODES=...` line (the
    /// last line, flushed, for scripts to wait for), then runs until Ctrl-C
    /// or SIGTERM and stops the nodes. Their data lives in temporary
    /// directories and is gone afterwards.
    DevCluster {
        /// How many nodes to start.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
        nodes: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = Output::new(cli.json);
    // One thread is plenty for one lock and one child, and keeps the
    // watchdog's timing free of cross-thread scheduling.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output.error("internal", &format!("cannot start the async runtime: {e}"));
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Exec(args) => exec::run(args, &output).await,
            Command::Inspect { key, backend } => admin::inspect(&backend, &key, &output).await,
            Command::List { prefix, backend } => admin::list(&backend, &prefix, &output).await,
            Command::Release { key, backend, .. } => {
                admin::force_release(&backend, &key, &output).await
            }
            Command::DevCluster { nodes } => dev_cluster::run(usize::from(nodes), &output).await,
        }
    });
    // Every lock and server was given back inside `run`; the runtime's
    // leftover tasks (none that matter) end here.
    drop(runtime);
    ExitCode::from(code)
}

/// Parses `30s`, `500ms`, `2m`, `1h 30m` (humantime's format).
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 30s, 500ms, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
