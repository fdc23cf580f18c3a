//! For tests that check a rule on the project's own sources (no transaction begun outside
//! `tx.rs`, every catalog key present, every refusal translated, every audited action
//! named): the files under some folders of the crate, with their text.

use std::path::{Path, PathBuf};

/// Every file under `dirs` (relative to the crate) whose extension is one of `exts`, as
/// (full path, text), in a stable order.
pub(crate) fn files(dirs: &[&str], exts: &[&str]) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source folder") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| exts.iter().any(|x| e == *x))
            {
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                out.push((path.display().to_string(), text));
            }
        }
    }
    out.sort();
    out
}

/// The part of a source file before its unit tests (`#[cfg(test)]`), whose made-up
/// values are not the program's.
pub(crate) fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or_default()
}
