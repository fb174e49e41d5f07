//! Checks 2 and 3: every Lua script is a file of the crate run by its
//! hash, and touches only the keys it is given.

use super::*;

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
