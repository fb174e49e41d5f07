//! Check 1: no `KEYS` command in `src/`, Rust or Lua.

use super::*;

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
