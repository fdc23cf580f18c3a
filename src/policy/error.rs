//! Policy load errors that say where: `policies/access.cedar:12:5: unexpected token ...`.
//!
//! Cedar reports locations as byte ranges into the text it parsed (through `miette`
//! labels, which `cedar_policy::ffi::DetailedError` flattens); they are turned into
//! 1-based line and column (in characters) here.

use std::fmt;

use cedar_policy::ffi::DetailedError;

/// A policy or schema file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{loc}: {reason}", loc = Location(*.line, *.column))]
pub struct PolicyError {
    pub file: String,
    /// 1-based; `None` when the problem is the file as a whole (missing, unreadable).
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    pub reason: String,
}

struct Location(Option<usize>, Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}"),
            (Some(l), None) => write!(f, ":{l}"),
            _ => Ok(()),
        }
    }
}

impl PolicyError {
    /// A problem with the file as a whole.
    pub(super) fn file(file: &str, reason: impl Into<String>) -> Self {
        PolicyError {
            file: file.to_string(),
            line: None,
            column: None,
            reason: reason.into(),
        }
    }

    /// From a Cedar diagnostic about `text` (the contents of `file`); `more` is how many
    /// further errors there were.
    pub(super) fn diagnostic(file: &str, text: &str, d: &DetailedError, more: usize) -> Self {
        let (line, column) = match d.source_locations.first() {
            Some(label) => {
                let (l, c) = line_col(text, label.loc.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        PolicyError {
            file: file.to_string(),
            line,
            column,
            reason: reason(d, more),
        }
    }
}

/// The message, Cedar's hint if it has one, and how many errors were left unsaid.
pub(super) fn reason(d: &DetailedError, more: usize) -> String {
    let mut s = d.message.clone();
    if let Some(help) = d.help.as_deref().filter(|h| !h.is_empty()) {
        s.push_str(" (");
        s.push_str(help);
        s.push(')');
    }
    match more {
        0 => {}
        1 => s.push_str("; and 1 more error"),
        n => s.push_str(&format!("; and {n} more errors")),
    }
    s
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncd\n\u{5f20}x";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 1), (1, 2));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 4), (2, 2));
        // After a three-byte character: column counts characters, not bytes.
        assert_eq!(line_col(text, 9), (3, 2));
        // Inside a character, or past the end: clamped, never a panic.
        assert_eq!(line_col(text, 7), (3, 1));
        assert_eq!(line_col(text, 1000), (3, 3));
    }

    #[test]
    fn display_names_file_line_and_column() {
        let e = PolicyError {
            file: "policies/access.cedar".into(),
            line: Some(12),
            column: Some(5),
            reason: "unexpected token".into(),
        };
        assert_eq!(
            e.to_string(),
            "policies/access.cedar:12:5: unexpected token"
        );
        let e = PolicyError::file("policies/access.cedar", "cannot read: not found");
        assert_eq!(
            e.to_string(),
            "policies/access.cedar: cannot read: not found"
        );
    }
}
