//! How `fencelock exec` says how a run ended: a message on stderr, or the
//! `exit` event of `--json`.

use fencelock::FencingToken;
use serde_json::json;

use crate::output::Output;

/// How a run ended, for the final message and `--json`'s `"outcome"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and the lock was held throughout.
    Completed,
    /// The lock could not be had; the command did not run.
    NotRun(&'static str),
    /// The lock was lost during the run (or found gone at release).
    Lost,
    /// fencelock got a signal and stopped the command.
    Interrupted,
    /// The command could not be started.
    SpawnFailed,
    /// Waiting for the command failed.
    Internal,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::NotRun(kind) => kind,
            Outcome::Lost => "lost",
            Outcome::Interrupted => "interrupted",
            Outcome::SpawnFailed => "spawn_failed",
            Outcome::Internal => "internal",
        }
    }
}

/// Where the final word goes.
pub struct Report<'a> {
    pub output: &'a Output,
    pub key: &'a str,
}

impl Report<'_> {
    /// The final word: a message on stderr (human), or the `exit` event
    /// (JSON). Returns `code`.
    pub fn finish(
        &self,
        token: Option<FencingToken>,
        outcome: Outcome,
        code: u8,
        message: &str,
    ) -> u8 {
        if self.output.is_json() {
            self.output.event(&json!({
                "event": "exit",
                "key": self.key,
                "token": token.map(FencingToken::get),
                "outcome": outcome.name(),
                "exit_code": code,
                "message": (!message.is_empty()).then_some(message),
            }));
        } else if !message.is_empty() {
            self.output.say(message);
        }
        code
    }
}
