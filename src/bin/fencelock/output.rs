//! Human-readable or JSON output, chosen once by `--json`.
//!
//! Results go to stdout; fencelock's own messages (errors, warnings, and
//! everything `exec` says, since stdout belongs to the command) go to
//! stderr. With `--json`, both are one JSON object per line.

use std::io::Write;

use serde::Serialize;
use serde_json::json;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A result on stdout: `value` as JSON, or `human` as text.
    pub fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        let text = if self.json { to_line(value) } else { human() };
        write_line(&mut std::io::stdout().lock(), &text);
    }

    /// An error on stderr: `fencelock: message`, or
    /// `{"event":"error","kind":..,"message":..}`.
    pub fn error(&self, kind: &str, message: &str) {
        if self.json {
            self.event(&json!({"event": "error", "kind": kind, "message": message}));
        } else {
            self.say(message);
        }
    }

    /// A warning on stderr (`"event":"warning"` in JSON).
    pub fn warning(&self, message: &str) {
        if self.json {
            self.event(&json!({"event": "warning", "message": message}));
        } else {
            self.say(&format!("warning: {message}"));
        }
    }

    /// A JSON event on stderr; nothing in human mode.
    pub fn event<T: Serialize>(&self, value: &T) {
        if self.json {
            write_line(&mut std::io::stderr().lock(), &to_line(value));
        }
    }

    /// A human message on stderr; nothing in JSON mode.
    pub fn say(&self, message: &str) {
        if !self.json {
            write_line(
                &mut std::io::stderr().lock(),
                &format!("fencelock: {message}"),
            );
        }
    }
}

fn to_line<T: Serialize>(value: &T) -> String {
    // Our values are plain data (strings, numbers, maps with string keys):
    // serialising them cannot fail.
    serde_json::to_string(value).expect("plain data serialises")
}

/// Writes and flushes one line. A closed pipe (`fencelock list | head -1`)
/// is not an error worth a panic: the reader has what it wanted.
fn write_line(out: &mut impl Write, text: &str) {
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
