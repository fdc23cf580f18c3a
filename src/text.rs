//! What text the vault accepts from people, decided in one place.
//!
//! Guarantees: no string that reaches a service from a JSON body or an HTML form carries a
//! NUL byte or another control character (line breaks and tabs only in multi-line text:
//! purposes, comments, reasons, conditions, notes and record field values), nor a
//! bidirectional-override or isolate control, which would make a name or title display as
//! something it is not. A refusal is a 422 that names the field (its JSON path or form
//! name), never the value, and nothing here logs a value. `visible_len` counts only what a
//! reader sees, so minimum lengths cannot be met with zero-width or blank characters.
//! Secret fields (passwords) are not inspected: they are never stored or shown as text.

use serde_json::Value;

use crate::error::{AppError, AppResult};

/// Whether a line break or tab is acceptable in a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    Single,
    Multi,
}

/// Field names whose values are free text that may span lines.
const MULTILINE_FIELDS: &[&str] = &[
    "purpose",
    "comment",
    "reason",
    "condition",
    "description",
    "note",
    "notes",
];

/// Bidirectional formatting controls: embeddings and overrides (U+202A–U+202E), isolates
/// (U+2066–U+2069), the implicit marks (U+200E, U+200F) and the Arabic letter mark.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that occupy no visible space on their own: format characters (general
/// category Cf), variation selectors, fillers and blanks that render as nothing. Controls
/// and whitespace are separate questions (`char::is_control`, `char::is_whitespace`).
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                      // soft hyphen
        | '\u{034F}'                    // combining grapheme joiner
        | '\u{061C}'                    // Arabic letter mark
        | '\u{115F}' | '\u{1160}'       // Hangul choseong/jungseong fillers
        | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'       // Mongolian variation selectors, vowel separator
        | '\u{200B}'..='\u{200F}'       // zero-width space, non-joiner, joiner, marks
        | '\u{202A}'..='\u{202E}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates, …
        | '\u{2800}'                    // braille pattern blank
        | '\u{3164}'                    // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'       // variation selectors
        | '\u{FEFF}'                    // zero-width no-break space (BOM)
        | '\u{FFA0}'                    // halfwidth Hangul filler
        | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotation controls
        | '\u{110BD}' | '\u{110CD}'     // Kaithi number signs
        | '\u{1BCA0}'..='\u{1BCA3}'     // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}'     // musical symbol format controls
        | '\u{E0000}'..='\u{E007F}'     // tags
        | '\u{E0100}'..='\u{E01EF}'     // variation selectors supplement
    )
}

/// The number of characters a reader sees: whitespace, controls and invisible characters
/// do not count; every other character (a CJK ideograph, a letter with its accent
/// precomposed) counts once.
pub fn visible_len(s: &str) -> usize {
    s.chars()
        .filter(|&c| !c.is_whitespace() && !c.is_control() && !is_invisible(c))
        .count()
}

/// Why a value is refused, if it is.
pub fn problem(value: &str, lines: Lines) -> Option<&'static str> {
    for c in value.chars() {
        if c.is_control() {
            let allowed = lines == Lines::Multi && matches!(c, '\n' | '\r' | '\t');
            if !allowed {
                return Some("must not contain control characters");
            }
        } else if is_bidi_control(c) {
            return Some("must not contain bidirectional text controls");
        }
    }
    None
}

/// Refuses a value with a 422 naming `field` (never the value).
pub fn check(field: &str, value: &str, lines: Lines) -> AppResult<()> {
    match problem(value, lines) {
        None => Ok(()),
        Some(why) => Err(AppError::invalid(field, why)),
    }
}

/// The parts of a field path: `fields.address`, `fields[address]` and `items[0].comment`
/// all split into their names and indices.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split(['.', '[', ']']).filter(|s| !s.is_empty())
}

fn is_secret(path: &str) -> bool {
    segments(path)
        .last()
        .is_some_and(|s| s.to_ascii_lowercase().contains("password"))
}

/// Whether the field at `path` is free text: a multi-line field name, or the value of a
/// record field (`fields.NAME` / `fields[NAME]`, whose names the categories define).
pub fn lines_for(path: &str) -> Lines {
    let parts: Vec<&str> = segments(path).collect();
    let last = parts.last().copied().unwrap_or("");
    let record_value = parts.len() >= 2
        && parts[parts.len() - 2] == "fields"
        && !last.bytes().all(|b| b.is_ascii_digit());
    if record_value || MULTILINE_FIELDS.contains(&last) {
        Lines::Multi
    } else {
        Lines::Single
    }
}

/// Checks every string in a parsed JSON body, keys included; a refusal names the JSON
/// path of the value (`fields.address`, `items[2].comment`).
pub fn check_json(value: &Value) -> AppResult<()> {
    fn walk(v: &Value, path: &mut String) -> AppResult<()> {
        match v {
            Value::String(s) => {
                if is_secret(path) {
                    return Ok(());
                }
                let field = if path.is_empty() {
                    "body"
                } else {
                    path.as_str()
                };
                check(field, s, lines_for(path))
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (k, item) in map {
                    // A key that is itself unacceptable is named by its parent.
                    if problem(k, Lines::Single).is_some() {
                        let field = if path.is_empty() {
                            "body"
                        } else {
                            path.as_str()
                        };
                        return Err(AppError::invalid(
                            field,
                            "has a name with control or bidirectional characters",
                        ));
                    }
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }
    walk(value, &mut String::new())
}

/// Checks every field of a form, given as percent-decoded (name, value) pairs; a refusal
/// names the form field.
pub fn check_form<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> AppResult<()> {
    for (name, value) in fields {
        if problem(name, Lines::Single).is_some() {
            return Err(AppError::invalid(
                "form",
                "has a field name with control or bidirectional characters",
            ));
        }
        if is_secret(name) {
            continue;
        }
        check(name, value, lines_for(name))?;
    }
    Ok(())
}

/// Makes a name safe to display and to offer as a download name: controls and invisible
/// characters (bidi overrides among them) are removed, so `rtl\u{202E}fdp.exe` shows as
/// the `rtlfdp.exe` it really is.
pub fn strip_hidden(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() && !is_invisible(c) && !is_bidi_control(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn field_of(e: AppError) -> Option<String> {
        match e {
            AppError::Invalid { field, .. } => field,
            _ => None,
        }
    }

    #[test]
    fn bidi_controls_are_all_recognised() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        ] {
            assert!(is_bidi_control(c), "{:04X}", c as u32);
            assert!(is_invisible(c), "{:04X}", c as u32);
            assert_eq!(
                problem(&format!("a{c}b"), Lines::Multi),
                Some("must not contain bidirectional text controls")
            );
        }
        assert!(!is_bidi_control('a'));
        assert!(!is_bidi_control('\u{200B}'));
    }

    #[test]
    fn controls_are_refused_except_line_breaks_in_free_text() {
        assert!(problem("a\0b", Lines::Multi).is_some());
        assert!(problem("a\u{7}b", Lines::Multi).is_some());
        assert!(problem("a\u{85}b", Lines::Multi).is_some());
        assert!(problem("a\u{7F}b", Lines::Multi).is_some());
        assert!(problem("line\r\nline\tx", Lines::Multi).is_none());
        assert!(problem("line\nline", Lines::Single).is_some());
        assert!(problem("plain title 标题 é", Lines::Single).is_none());
        // Zero-width joiners are part of ordinary writing (emoji, Indic and Persian text).
        assert!(problem("👩\u{200D}💻 می\u{200C}خواهم", Lines::Single).is_none());
    }

    #[test]
    fn visible_length_ignores_what_cannot_be_seen() {
        assert_eq!(visible_len(&"\u{200B}".repeat(20)), 0);
        assert_eq!(
            visible_len("\u{FEFF}\u{2060}\u{00AD}\u{3164}\u{2800} \u{3000}\t"),
            0
        );
        assert_eq!(visible_len("audit of 2023"), 11);
        assert_eq!(visible_len("审计需要查阅该档案"), 9);
        assert_eq!(visible_len("e\u{FE0F}"), 1);
    }

    #[test]
    fn fields_are_classified_by_name() {
        assert_eq!(lines_for("purpose"), Lines::Multi);
        assert_eq!(lines_for("comment"), Lines::Multi);
        assert_eq!(lines_for("fields.address"), Lines::Multi);
        assert_eq!(lines_for("fields[address]"), Lines::Multi);
        assert_eq!(lines_for("title"), Lines::Single);
        assert_eq!(lines_for("fields[0].name"), Lines::Single);
        assert_eq!(lines_for("username"), Lines::Single);
    }

    #[test]
    fn json_refusals_name_the_path_and_not_the_value() {
        let e = check_json(&json!({"title": "a\u{0}b"})).unwrap_err();
        assert_eq!(field_of(e), Some("title".into()));
        let e = check_json(&json!({"fields": {"address": "x\u{202E}y"}})).unwrap_err();
        assert_eq!(field_of(e), Some("fields.address".into()));
        let e = check_json(&json!({"fields": [{"name": "ok"}, {"name": "n\u{1}"}]})).unwrap_err();
        assert_eq!(field_of(e), Some("fields[1].name".into()));
        let e = check_json(&json!({"fields": {"secret\u{0}": "v"}})).unwrap_err();
        assert!(!e.public_message().contains("secret"));
        assert_eq!(field_of(e), Some("fields".into()));
        assert!(check_json(&json!({"purpose": "line one\nline two", "n": 3, "b": null})).is_ok());
        // Passwords are never inspected (nor stored as text).
        assert!(check_json(&json!({"password": "tab\tand\u{0}nul"})).is_ok());
        assert!(check_json(&json!({"new_password": "\u{202E}"})).is_ok());
    }

    #[test]
    fn form_refusals_name_the_field() {
        let e = check_form([("csrf", "t"), ("title", "a\u{0}")]).unwrap_err();
        assert_eq!(field_of(e), Some("title".into()));
        let e = check_form([("fields[name]", "\u{2067}x")]).unwrap_err();
        assert_eq!(field_of(e), Some("fields[name]".into()));
        assert!(check_form([("purpose", "two\r\nlines"), ("password", "\u{0}")]).is_ok());
    }

    #[test]
    fn hidden_characters_are_stripped_from_names() {
        assert_eq!(strip_hidden("rtl\u{202E}fdp.exe"), "rtlfdp.exe");
        assert_eq!(strip_hidden("a\u{200B}b\u{0}c\u{2066}.pdf"), "abc.pdf");
        assert_eq!(strip_hidden("报告 2024.pdf"), "报告 2024.pdf");
    }

    proptest! {
        #[test]
        fn accepted_text_has_no_hidden_controls(s in any::<String>()) {
            if problem(&s, Lines::Single).is_none() {
                prop_assert!(!s.chars().any(|c| c.is_control() || is_bidi_control(c)));
            }
            if problem(&s, Lines::Multi).is_none() {
                prop_assert!(!s.chars().any(|c| is_bidi_control(c)
                    || (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))));
            }
        }

        #[test]
        fn stripped_names_are_acceptable_and_keep_visible_length(s in any::<String>()) {
            let clean = strip_hidden(&s);
            prop_assert!(problem(&clean, Lines::Single).is_none());
            prop_assert_eq!(visible_len(&clean), visible_len(&s));
            prop_assert!(visible_len(&s) <= s.chars().count());
        }

        #[test]
        fn padding_with_invisibles_adds_nothing(
            s in "[a-z\u{4e00}-\u{4e20}]{0,20}",
            pad in proptest::collection::vec(
                prop::sample::select(vec!['\u{200B}', '\u{200C}', '\u{200D}', '\u{FEFF}', '\u{2060}', ' ', '\u{3000}', '\u{202E}']),
                0..30,
            ),
        ) {
            let padded: String = pad.iter().collect::<String>() + &s;
            prop_assert_eq!(visible_len(&padded), s.chars().count());
        }
    }
}
