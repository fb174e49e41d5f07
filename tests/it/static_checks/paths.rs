//! Check 6: every file or folder of the repository that the documentation
//! names exists. Modules move as they grow (a suite becomes a folder), and
//! a reader sent to a path that is gone is left to guess.

use super::*;

/// The top-level folders whose paths the check follows. Paths elsewhere
/// (`target/`, a server's data folder) are made at run time.
const ROOTS: [&str; 8] = [
    "src/",
    "tests/",
    "benches/",
    "examples/",
    "scripts/",
    "docs/",
    "fuzz/",
    ".ci/",
];

/// The repository paths `text` names: a word starting with one of
/// [`ROOTS`], up to the first character no path here has, with a line
/// number (`:12`) and trailing punctuation cut off. Patterns (`*`, `<`)
/// and paths given as examples of a shape (`{`) are not paths.
fn named_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (start, _) in text.char_indices() {
        let rest = &text[start..];
        let at_word_start = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || "_-./".contains(c)));
        if !at_word_start || !ROOTS.iter().any(|r| rest.starts_with(r)) {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || "_-./:*<>{}".contains(c)))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if word.contains(['*', '<', '{']) {
            continue;
        }
        let word = word.split(':').next().unwrap_or(word);
        let word = word.trim_end_matches(['.', ',', ':']);
        found.push(word.to_owned());
    }
    found
}

/// The paths named in `text` that do not exist under `root`. A Cargo
/// target named by its path (`examples/load`) is its file.
fn missing_paths(text: &str, root: &Path) -> Vec<String> {
    named_paths(text)
        .into_iter()
        .filter(|p| !root.join(p).exists() && !root.join(format!("{p}.rs")).exists())
        .collect()
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = root();
    let mut docs = files(&root.join("docs"), "md");
    docs.push(root.join("README.md"));
    let mut problems = BTreeSet::new();
    for doc in &docs {
        for missing in missing_paths(&read(doc), &root) {
            let doc = doc.strip_prefix(&root).unwrap().display();
            problems.insert(format!("{doc} names {missing}, which does not exist"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_path_check_catches_paths_that_are_gone() {
    let root = root();
    let text = "See `tests/it/conformance.rs` (moved), tests/it/faults/ and \
                src/lib.rs:12, examples/demo, then `docs/no-such.md`. Not paths: \
                src/redis/lua/*.lua, tests/<suite>.rs, my-tests/x.rs, \
                target/long-runs/run.log.";
    assert_eq!(
        named_paths(text),
        [
            "tests/it/conformance.rs",
            "tests/it/faults/",
            "src/lib.rs",
            "examples/demo",
            "docs/no-such.md"
        ]
    );
    assert_eq!(
        missing_paths(text, &root),
        ["tests/it/conformance.rs", "docs/no-such.md"]
    );
}
