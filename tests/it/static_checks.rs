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
//!
//! Each checker is a plain function over source text, tested on bad samples
//! below too, so a check that can never fail would show.

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

/// Check 1: the lines where a string literal names the KEYS command (any
/// case, alone or followed by its pattern). Commands reach Redis as string
/// literals, in Rust (`cmd("KEYS")`, `.arg("keys")`) as in Lua
/// (`redis.call('KEYS', ...)`); `KEYS[1]` is not a literal, and comments
/// that say "never KEYS" are not code.
fn keys_command_uses(source: &str, lang: Lang) -> Vec<usize> {
    string_literals(source, lang)
        .into_iter()
        .filter(|(_, text)| {
            let words: Vec<String> = text
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect();
            words.first().is_some_and(|w| w == "keys")
        })
        .map(|(line, _)| line)
        .collect()
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

/// Check 2: problems with how `source` (a Rust file) makes scripts: every
/// `Script::new(X)` must take a constant `X` defined in the same file as
/// `include_str!("....lua")`, so a script's text is a file of the crate,
/// fixed at build time; and no script runs by EVAL (text sent at run time)
/// instead of by its hash.
fn script_source_problems(source: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (at, _) in source.match_indices("Script::new(") {
        let open = at + "Script::new".len();
        let Some(argument) = parenthesised(source, open) else {
            problems.push(format!("unclosed Script::new at byte {at}"));
            continue;
        };
        let argument = argument.trim();
        let is_constant = !argument.is_empty()
            && argument
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        let definition = format!("const {argument}: &str = include_str!(\"");
        let from_file = source
            .lines()
            .any(|l| l.trim_start().starts_with(&definition) && l.trim_end().ends_with(".lua\");"))
            || concatenated_files(source, argument);
        if !is_constant || !from_file {
            problems.push(format!(
                "Script::new({argument}) does not take a constant defined as include_str!(\"....lua\")"
            ));
        }
    }
    for (line, text) in string_literals(source, Lang::Rust) {
        if text.trim().eq_ignore_ascii_case("eval") {
            problems.push(format!("line {line}: a script sent by EVAL, as text"));
        }
    }
    problems
}

/// Whether `constant` is defined as `concat!` of `include_str!("lua/…")`
/// items and nothing else: a script made of files of the crate (a shared
/// prelude and the script itself).
fn concatenated_files(source: &str, constant: &str) -> bool {
    let definition = format!("const {constant}: &str = concat!");
    let Some(at) = source.find(&definition) else {
        return false;
    };
    let Some(items) = parenthesised(source, at + definition.len()) else {
        return false;
    };
    let items: Vec<&str> = items
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    !items.is_empty()
        && items.iter().all(|i| {
            i.strip_prefix("include_str!(\"lua/")
                .and_then(|rest| rest.strip_suffix(".lua\")"))
                .is_some_and(|name| !name.contains(['"', '(', ')']))
        })
}

/// Redis commands the scripts use, by where their key arguments are:
/// `Some(n)`: the first `n` arguments are key names; `None`: the command
/// takes no key. A command missing here fails the check until it is
/// classified, so a new command cannot slip past it.
const COMMANDS: &[(&str, Option<usize>)] = &[
    ("TYPE", Some(1)),
    ("GET", Some(1)),
    ("SET", Some(1)),
    ("INCR", Some(1)),
    ("DEL", Some(1)),
    ("PTTL", Some(1)),
    ("PEXPIRE", Some(1)),
    ("HGET", Some(1)),
    ("HMGET", Some(1)),
    ("HSET", Some(1)),
    ("HDEL", Some(1)),
    ("HEXISTS", Some(1)),
    ("HLEN", Some(1)),
    ("HGETALL", Some(1)),
    ("HINCRBY", Some(1)),
    ("EXISTS", Some(1)),
    ("PUBLISH", None),
    ("TIME", None),
];

/// Whether `arg` is exactly `KEYS[n]`, `KEYS[i]` with a variable index
/// (a semaphore's slots are declared keys walked in a loop) or
/// `KEYS[#KEYS]` (the last, where the node's marker is): whatever the
/// index, an element of KEYS is a declared key.
fn is_declared_key(arg: &str) -> bool {
    arg.strip_prefix("KEYS[")
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|n| {
            n == "#KEYS"
                || (!n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        })
}

/// Whether `arg` is `KEYS[n] .. '<literal>'`: a declared key with a fixed
/// suffix. Allowed only as a PUBLISH channel: release notifications go to
/// `<lock key>:released`, a channel (not a key) named after the lock, and
/// nothing from ARGV can change it.
fn is_key_with_fixed_suffix(arg: &str) -> bool {
    let Some((key, suffix)) = arg.split_once("..") else {
        return false;
    };
    let suffix = suffix.trim();
    let literal = (suffix.starts_with('\'') && suffix.ends_with('\''))
        || (suffix.starts_with('"') && suffix.ends_with('"'));
    is_declared_key(key.trim())
        && literal
        && suffix.len() >= 2
        && !suffix[1..suffix.len() - 1].contains(['\'', '"'])
}

/// Check 3: problems with the keys a Lua script touches. Every
/// `redis.call` / `redis.pcall` names its command as a literal of
/// [`COMMANDS`], passes exactly `KEYS[n]` where the command takes a key,
/// and builds a PUBLISH channel from nothing but a key and a fixed suffix.
/// ARGV never goes into a concatenation, so no name is built from it.
fn lua_key_problems(script: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let code: String = script
        .lines()
        .map(|l| match l.find("--") {
            Some(comment) => &l[..comment],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    for call in ["redis.call(", "redis.pcall("] {
        for (at, _) in code.match_indices(call) {
            let open = at + call.len() - 1;
            let Some(list) = parenthesised(&code, open) else {
                problems.push(format!("unclosed {call}"));
                continue;
            };
            let args = arguments(list);
            let Some(name) = args.first().and_then(|a| {
                a.strip_prefix('\'')
                    .and_then(|a| a.strip_suffix('\''))
                    .or_else(|| a.strip_prefix('"').and_then(|a| a.strip_suffix('"')))
            }) else {
                problems.push(format!("{call}{list}): the command is not a literal"));
                continue;
            };
            let name = name.to_ascii_uppercase();
            let Some(&(_, keys)) = COMMANDS.iter().find(|(c, _)| *c == name) else {
                problems.push(format!(
                    "{call}{list}): {name} is not classified in COMMANDS"
                ));
                continue;
            };
            match keys {
                Some(n) => {
                    for arg in args.iter().skip(1).take(n) {
                        if !is_declared_key(arg) {
                            problems.push(format!(
                                "{call}{list}): key argument {arg:?} is not KEYS[n]"
                            ));
                        }
                    }
                }
                None if name == "PUBLISH" => {
                    let channel = args.get(1).map_or("", String::as_str);
                    if !is_declared_key(channel) && !is_key_with_fixed_suffix(channel) {
                        problems.push(format!(
                            "{call}{list}): channel {channel:?} is not built from KEYS[n] and a fixed suffix"
                        ));
                    }
                }
                None => {}
            }
        }
    }
    for (i, line) in code.lines().enumerate() {
        let squeezed: String = line.split_whitespace().collect();
        if squeezed.contains("..ARGV[") || argv_before_concat(&squeezed) {
            problems.push(format!("line {}: ARGV concatenated: {line}", i + 1));
        }
    }
    problems
}

/// Whether an `ARGV[n]` is directly followed by `..` in `squeezed` (a line
/// without whitespace).
fn argv_before_concat(squeezed: &str) -> bool {
    squeezed.match_indices("ARGV[").any(|(at, _)| {
        squeezed[at..]
            .find(']')
            .is_some_and(|close| squeezed[at + close + 1..].starts_with(".."))
    })
}

/// Hex digits as bits, most significant first.
fn bits(hex: &str) -> Vec<bool> {
    hex.chars()
        .flat_map(|c| {
            let v = c.to_digit(16).expect("a hex digit");
            (0..4).rev().map(move |b| v >> b & 1 == 1)
        })
        .collect()
}

/// Check 4 on a sample of ids: `None` when every id has at least 128 bits
/// and each of those bits took both values across the sample; else why
/// not. With 256 random ids, a bit stuck by chance has odds 2^-255.
fn random_bits_problem(ids: &[String]) -> Option<String> {
    let bits: Vec<Vec<bool>> = ids.iter().map(|id| bits(id)).collect();
    let width = bits.iter().map(Vec::len).min()?;
    if width < 128 {
        return Some(format!("ids of {width} bits; at least 128 are needed"));
    }
    let stuck: Vec<usize> = (0..width)
        .filter(|&b| bits.iter().all(|id| id[b]) || bits.iter().all(|id| !id[b]))
        .collect();
    (!stuck.is_empty()).then(|| format!("bits {stuck:?} never change"))
}

#[test]
fn no_keys_command_in_the_sources() {
    let mut found = Vec::new();
    for (ext, lang) in [("rs", Lang::Rust), ("lua", Lang::Lua)] {
        for path in files(&root().join("src"), ext) {
            for line in keys_command_uses(&read(&path), lang) {
                found.push(format!("{}:{line}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "KEYS command used at {found:?}; use SCAN");
}

#[test]
fn the_keys_check_catches_keys_and_lets_keys_arguments_pass() {
    for bad in [
        "redis.call('KEYS', '*')",
        "return redis.call(\"keys\", ARGV[1])",
        "redis.pcall( 'Keys' , 'x*')",
    ] {
        assert_eq!(keys_command_uses(bad, Lang::Lua), [1], "{bad}");
    }
    for bad in [
        "let k: Vec<String> = redis::cmd(\"KEYS\").arg(\"*\").query(c)?;",
        "cmd.arg(\"keys *\");",
        "redis::cmd(r#\"KEYS\"#)",
    ] {
        assert_eq!(keys_command_uses(bad, Lang::Rust), [1], "{bad}");
    }
    let fine_lua =
        "-- never redis.call('KEYS')\nlocal t = redis.call('TYPE', KEYS[1])\nreturn #KEYS";
    assert!(keys_command_uses(fine_lua, Lang::Lua).is_empty());
    let fine_rust = "// not 'KEYS' but SCAN\nlet c = '\"'; let u = \"redis://h\"; // \"KEYS\"\n\
                     let s = redis::cmd(\"SCAN\"); let n = \"monkeys\";";
    assert!(keys_command_uses(fine_rust, Lang::Rust).is_empty());
    // Lines are counted across strings and comments.
    assert_eq!(
        keys_command_uses("let a = \"x\ny\";\n// c\nredis::cmd(\"KEYS\")", Lang::Rust),
        [4]
    );
}

#[test]
fn every_script_is_a_file_of_the_crate_run_by_its_hash() {
    let mut loaded = BTreeSet::new();
    let mut problems = Vec::new();
    for path in files(&root().join("src"), "rs") {
        let source = read(&path);
        for problem in script_source_problems(&source) {
            problems.push(format!("{}: {problem}", path.display()));
        }
        for (at, _) in source.match_indices("include_str!(\"lua/") {
            let rest = &source[at + "include_str!(\"".len()..];
            loaded.insert(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // Every script file is one of those constants (none is read another way).
    let lua_dir = root().join("src/redis");
    for path in files(&lua_dir.join("lua"), "lua") {
        let relative = path.strip_prefix(&lua_dir).unwrap().to_str().unwrap();
        assert!(loaded.contains(relative), "{relative} is not included");
    }
}

#[test]
fn the_script_check_catches_scripts_built_at_run_time() {
    let good = "const ACQUIRE_SOURCE: &str = include_str!(\"lua/acquire.lua\");\n\
                static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE_SOURCE));";
    assert_eq!(script_source_problems(good), Vec::<String>::new());
    for bad in [
        // Text put together at run time.
        "let s = Script::new(&format!(\"return redis.call('GET', '{key}')\"));",
        "let s = Script::new(source.as_str());",
        // A constant, but not from a file.
        "const X: &str = \"return 1\";\nlet s = Script::new(X);",
        // A constant from a file that is not a script.
        "const X: &str = include_str!(\"notes.txt\");\nlet s = Script::new(X);",
        // EVAL with the text instead of EVALSHA with the hash.
        "redis::cmd(\"EVAL\").arg(text).arg(1)",
    ] {
        assert!(!script_source_problems(bad).is_empty(), "{bad}");
    }
}

#[test]
fn lua_scripts_touch_only_declared_keys() {
    let mut problems = Vec::new();
    let scripts = files(&root().join("src/redis/lua"), "lua");
    assert!(scripts.len() >= 8, "{scripts:?}");
    for path in scripts {
        for problem in lua_key_problems(&read(&path)) {
            problems.push(format!("{}: {problem}", path.display()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_lua_check_catches_keys_built_from_arguments() {
    let good = "local kind = redis.call('TYPE', KEYS[1]).ok\n\
                redis.call('HSET', KEYS[1], ':owner', ARGV[1], ':token', 3)\n\
                redis.call('PUBLISH', KEYS[1] .. ':released', '')\n\
                for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end\n\
                -- redis.call('GET', ARGV[1]) is only a comment\n\
                return redis.error_reply('WRONGTYPE a ' .. kind)";
    assert_eq!(lua_key_problems(good), Vec::<String>::new());
    for bad in [
        // A key name from an argument, alone or with a prefix.
        "redis.call('GET', ARGV[1])",
        "redis.call('GET', KEYS[ARGV[1] .. 'x'])",
        "redis.call('GET', KEYS[i + 1])",
        "redis.call('DEL', 'fencelock:' .. ARGV[1])",
        "redis.call('HSET', KEYS[1] .. ARGV[2], 'f', 1)",
        // A key held in a variable: not visibly KEYS[n].
        "local k = KEYS[1]\nredis.call('GET', k)",
        // A command chosen at run time, and an unclassified one.
        "redis.call(ARGV[1], KEYS[1])",
        "redis.call('RENAME', KEYS[1], KEYS[2])",
        // A channel built from an argument.
        "redis.call('PUBLISH', KEYS[1] .. ARGV[1], '')",
        "redis.call('PUBLISH', ARGV[1], '')",
        // ARGV in any concatenation.
        "local name = ARGV[1] .. ':x'",
    ] {
        assert!(!lua_key_problems(bad).is_empty(), "{bad}");
    }
}

#[test]
fn owner_ids_carry_128_random_bits() {
    let ids: Vec<String> = (0..256).map(|_| Owner::random().to_string()).collect();
    for id in &ids {
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
    }
    assert_eq!(random_bits_problem(&ids), None);
    // Shorter ids, which could be guessed, are refused as owners.
    assert!("0123456789abcdef0123456789abcde".parse::<Owner>().is_err());
}

#[test]
fn the_bit_check_catches_short_or_stuck_ids() {
    let random = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| Owner::random().to_string())
            .collect::<Vec<_>>()
    };
    // 64-bit ids.
    let short: Vec<String> = random(256).iter().map(|id| id[..16].to_owned()).collect();
    assert!(random_bits_problem(&short).is_some());
    // 128 bits, of which the top 32 are a fixed prefix (a counter, a pid).
    let stuck: Vec<String> = random(256)
        .iter()
        .map(|id| format!("0000beef{}", &id[8..]))
        .collect();
    assert!(
        random_bits_problem(&stuck)
            .unwrap()
            .contains("never change")
    );
    // One id seen many times.
    let same = vec![random(1).remove(0); 256];
    assert!(random_bits_problem(&same).is_some());
}

/// The public functions of `source` that lack a doc section the API
/// promises: `# Cancel safety` on every async one (an `async fn`, or one
/// returning `impl Future`), `# Errors` on every fallible one (returning a
/// `Result`). Public here means `pub fn` outside `#[cfg(test)]`, plus the
/// methods of `pub trait` blocks. Each problem names the function.
fn doc_section_problems(source: &str) -> Vec<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut problems = Vec::new();
    let mut in_trait = false;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        if line.starts_with("pub trait ") {
            in_trait = true;
        } else if line.starts_with('}') {
            in_trait = false;
        }
        let item = line.trim_start();
        let public = item.starts_with("pub fn ") || item.starts_with("pub async fn ");
        let trait_method = in_trait
            && line.starts_with("    ")
            && (item.starts_with("fn ") || item.starts_with("async fn "));
        if !(public || trait_method) {
            continue;
        }
        // The signature runs to the line that opens the body or ends it.
        let mut signature = String::new();
        for next in &lines[i..lines.len().min(i + 20)] {
            signature.push_str(next);
            let end = next.trim_end();
            if end.ends_with('{') || end.ends_with(';') {
                break;
            }
        }
        let name = item
            .split("fn ")
            .nth(1)
            .and_then(|rest| rest.split(['(', '<']).next())
            .unwrap_or("?");
        let returns = signature.split_once("->").map_or("", |(_, r)| r);
        let returns = returns.split(" where").next().unwrap_or(returns);
        let is_async = item.contains("async fn ") || returns.contains("impl Future");
        let fallible = returns.contains("Result<");
        let docs: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("///") || l.starts_with("#[")
            })
            .copied()
            .collect();
        let has = |section: &str| {
            docs.iter()
                .any(|l| l.trim_start() == format!("/// {section}"))
        };
        if is_async && !has("# Cancel safety") {
            problems.push(format!("line {}: {name} lacks `# Cancel safety`", i + 1));
        }
        if fallible && !has("# Errors") {
            problems.push(format!("line {}: {name} lacks `# Errors`", i + 1));
        }
    }
    problems
}

#[test]
fn public_async_and_fallible_fns_document_cancel_safety_and_errors() {
    let mut problems = Vec::new();
    for path in files(&root().join("src"), "rs") {
        // The CLI is a binary: no public API.
        if path.components().any(|c| c.as_os_str() == "bin") {
            continue;
        }
        for problem in doc_section_problems(&read(&path)) {
            problems.push(format!("{}: {problem}", path.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_doc_section_check_catches_missing_sections() {
    let bad = "/// Does it.\npub async fn go(&self) -> Result<()> {\n}\n\
               pub trait T {\n    /// Waits.\n    fn wait(&self) -> impl Future<Output = ()>;\n}\n\
               /// Fine.\n///\n/// # Errors\n///\n/// Some.\npub fn parse(s: &str)\n    -> Result<u8>\n{\n}\n";
    let problems = doc_section_problems(bad);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].contains("go lacks `# Cancel safety`"));
    assert!(problems[1].contains("go lacks `# Errors`"));
    assert!(problems[2].contains("wait lacks `# Cancel safety`"));
    let good = "/// Does it.\n///\n/// # Cancel safety\n///\n/// Safe.\n///\n/// # Errors\n///\n/// None.\n\
                pub async fn go(&self) -> Result<()> {\n}\n\
                #[cfg(test)]\nmod tests {\n    pub async fn helper() -> Result<()> {}\n}\n";
    assert_eq!(doc_section_problems(good), Vec::<String>::new());
}
