//! Check 5: public async and fallible functions document `# Cancel
//! safety` and `# Errors`.

use super::*;

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
