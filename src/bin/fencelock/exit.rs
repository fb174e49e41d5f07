//! The exit codes, kept stable: scripts and cron wrappers branch on them.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0–125 | `exec`: the command's own exit status; it ran and the lock was held throughout |
//! | 2 | usage error: bad arguments, options, key or node URL (clap's code) |
//! | 69 | the nodes could not be reached: no quorum answered (`EX_UNAVAILABLE`) |
//! | 70 | internal error in fencelock (`EX_SOFTWARE`) |
//! | 75 | `exec`: the lock could not be had: held elsewhere (`--no-wait`) or `--wait` ran out (`EX_TEMPFAIL`: try again later) |
//! | 76 | `exec`: the lock was lost while the command ran (it was stopped), or found gone at release |
//! | 126 | `exec`: the command could not be executed (as in shells) |
//! | 127 | `exec`: the command was not found (as in shells) |
//! | 128+N | `exec`: the command died by signal N, or fencelock got signal N and stopped the command |
//!
//! 75 and 76 sit next to each other on purpose: both are about the lock,
//! not the command. A command can return them itself too; `--json` tells
//! the cases apart.

use fencelock::Error;

/// Bad arguments or bad input (clap uses 2 for its own usage errors).
pub const USAGE: u8 = 2;
/// No quorum of nodes answered, or the servers could not be started.
pub const UNAVAILABLE: u8 = 69;
/// A failure inside fencelock that is none of the above.
pub const INTERNAL: u8 = 70;
/// The lock was held elsewhere and could not be had in time.
pub const NOT_OBTAINED: u8 = 75;
/// The lock was not held throughout the command's run.
pub const LOST: u8 = 76;
/// The command exists but could not be executed.
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;

/// The conventional code for a process ended by `signal`.
pub fn signalled(signal: i32) -> u8 {
    u8::try_from(128 + signal.clamp(1, 127)).unwrap_or(u8::MAX)
}

/// The exit code for a library error, and a short name for `--json`.
pub fn for_error(error: &Error) -> (u8, &'static str) {
    match error {
        Error::NotObtained { .. } => (NOT_OBTAINED, "not_obtained"),
        Error::Timeout { .. } => (NOT_OBTAINED, "wait_elapsed"),
        Error::NotHeld { .. } | Error::Lost { .. } => (LOST, "lost"),
        // Nodes too slow to grant within the ttl are an outage, not
        // contention.
        Error::QuorumUnavailable { .. }
        | Error::ValidityExhausted { .. }
        | Error::Backend { .. } => (UNAVAILABLE, "unavailable"),
        // A key used as another kind, or with another count of permits, by
        // other runs: a mistake in how the command is called.
        Error::InvalidKey(_)
        | Error::InvalidOptions(_)
        | Error::InvalidPermits { .. }
        | Error::WrongKind { .. }
        | Error::PermitsMismatch { .. } => (USAGE, "usage"),
        _ => (INTERNAL, "internal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_follow_the_shell_convention() {
        assert_eq!(signalled(2), 130);
        assert_eq!(signalled(9), 137);
        assert_eq!(signalled(15), 143);
    }

    #[test]
    fn contention_and_outage_differ() {
        let held = Error::NotObtained {
            key: "k".into(),
            expires_in: None,
        };
        let down = Error::QuorumUnavailable {
            confirmed: 1,
            refused: 0,
            needed: 3,
            failures: Vec::new(),
        };
        assert_eq!(for_error(&held).0, NOT_OBTAINED);
        assert_eq!(for_error(&down).0, UNAVAILABLE);
        assert_eq!(for_error(&Error::InvalidKey("".into())).0, USAGE);
    }
}
