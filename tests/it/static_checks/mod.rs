//! Checks on the sources themselves, for rules that no behaviour test sees
//! break until it is too late:
//!
//! 1. No `KEYS` command anywhere in `src/` (Rust or Lua): it blocks a
//!    server for the whole keyspace. Listing uses SCAN. `KEYS[1]` in Lua,
//!    the script's key arguments, is something else and is fine.
//! 2. Every Lua script comes from a file, through `include_str!`, and is
//!    run by its hash: no script text is built at run time, so nothing a
//!    caller passes can become code, and EVALSHA always finds the script.
//! 3. Lua scripts touch only keys given in `KEYS[...]`, never a key name
//!    put together from arguments, so a caller cannot reach other keys
//!    (and the keys a script touches are declared, as Redis requires).
//! 4. Owner ids carry at least 128 random bits.
//! 5. Every public async fn documents `# Cancel safety`, and every public
//!    fallible one `# Errors` (the standard of tokio and deadpool).
//! 6. Every path of the repository that README.md or docs/ names exists.
//!
//! Each checker is a plain function over source text, in a module of its
//! own beside the tests that feed it bad samples too, so a check that can
//! never fail would show.

mod docs;
mod ids;
mod keys;
mod paths;
mod scripts;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use fencelock::Owner;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` whose name ends in `.ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A language's comment and string syntax, as far as the checks need it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Lua,
}

/// The string literals of `source` with their line numbers (1-based),
/// comments skipped. Handles what our sources use: `"..."` with escapes,
/// Rust raw strings `r"..."` / `r#"..."#`, Rust char literals (so `'"'`
/// does not open a string), Lua `'...'`, and `//` / `--` line comments.
fn string_literals(source: &str, lang: Lang) -> Vec<(usize, String)> {
    let chars: Vec<char> = source.chars().collect();
    let mut literals = Vec::new();
    let (mut i, mut line) = (0, 1);
    let line_comment = match lang {
        Lang::Rust => ['/', '/'],
        Lang::Lua => ['-', '-'],
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == line_comment[0] && chars.get(i + 1) == Some(&line_comment[1]) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if lang == Lang::Rust
            && c == 'r'
            && matches!(chars.get(i + 1), Some('"' | '#'))
            && (i == 0 || !chars[i - 1].is_alphanumeric() && chars[i - 1] != '_')
        {
            // r"..." or r#"..."#: no escapes; ends at the quote and hashes.
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            let open = i + 1 + hashes;
            if chars.get(open) != Some(&'"') {
                i += 1;
                continue;
            }
            let start = open + 1;
            let mut end = start;
            while end < chars.len()
                && !(chars[end] == '"'
                    && chars[end + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&c| c == '#')
                        .count()
                        == hashes)
            {
                end += 1;
            }
            let text: String = chars[start..end.min(chars.len())].iter().collect();
            literals.push((line, text.clone()));
            line += text.matches('\n').count();
            i = end + 1 + hashes;
        } else if lang == Lang::Rust && c == '\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a).
            if chars.get(i + 1) == Some(&'\\') {
                let close = (i + 2..chars.len().min(i + 12)).find(|&j| chars[j] == '\'');
                i = close.map_or(i + 1, |j| j + 1);
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c == '"' || (lang == Lang::Lua && c == '\'') {
            let quote = c;
            let start_line = line;
            let mut text = String::new();
            i += 1;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    text.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                text.push(chars[i]);
                i += 1;
            }
            literals.push((start_line, text));
            i += 1;
        } else {
            i += 1;
        }
    }
    literals
}

/// The text inside the parentheses that open at `open` (the index of the
/// `(`), quotes respected; `None` if they do not close.
fn parenthesised(source: &str, open: usize) -> Option<&str> {
    let bytes = source.as_bytes();
    let (mut depth, mut quote) = (0usize, None::<u8>);
    let mut i = open;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'(' => depth += 1,
            None if b == b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&source[open + 1..i]);
                }
            }
            None => {}
        }
        i += 1;
    }
    None
}

/// Splits an argument list at its top-level commas.
fn arguments(list: &str) -> Vec<String> {
    let (mut parts, mut current) = (Vec::new(), String::new());
    let (mut depth, mut quote) = (0i32, None::<char>);
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(_) if c == '\\' => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '(' || c == '[' || c == '{' => depth += 1,
            None if c == ')' || c == ']' || c == '}' => depth -= 1,
            None if c == ',' && depth == 0 => {
                parts.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            None => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}
