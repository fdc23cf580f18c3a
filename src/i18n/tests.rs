use super::*;

fn keys(lang: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (l, name, source) in FILES {
        if *l != lang {
            continue;
        }
        for line in source.lines() {
            let Some((k, _)) = line.split_once(" =") else {
                continue;
            };
            if !k.starts_with(|c: char| c.is_ascii_lowercase()) || k.contains(' ') {
                continue;
            }
            assert!(
                out.insert(k.to_string()),
                "{lang}/{name}.ftl: {k} defined twice"
            );
        }
    }
    out
}

#[test]
fn catalogs_load_without_problems() {
    assert_eq!(catalog_problems(), Vec::<String>::new());
}

#[test]
fn both_languages_have_the_same_keys() {
    let en = keys("en");
    let zh = keys("zh-CN");
    let only_en: Vec<_> = en.difference(&zh).collect();
    let only_zh: Vec<_> = zh.difference(&en).collect();
    assert!(only_en.is_empty(), "missing in zh-CN: {only_en:?}");
    assert!(only_zh.is_empty(), "missing in en: {only_zh:?}");
}

/// Every `t("literal")` and `word("prefix", …)`-free literal key used by a template or by
/// the Rust code is in both catalogs.
#[test]
fn every_literal_key_exists() {
    let en = keys("en");
    let sources = crate::source_scan::files(
        &[
            "templates",
            "src/web",
            "src/api",
            "src/records",
            "src/requests",
        ],
        &["html", "rs"],
    );
    let mut missing = Vec::new();
    for (path, text) in &sources {
        for marker in [
            "t(\"",
            "t('",
            "tr(lang, \"",
            "tr(ui.lang, \"",
            "flash::set(cookies, \"",
        ] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(marker) {
                // `t(` only as a name of its own (not `set(`, `split(`…).
                let standalone = i == 0
                    || !rest[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                rest = &rest[i + marker.len()..];
                if !standalone && marker.starts_with("t(") {
                    continue;
                }
                let quote = if marker.ends_with('\'') { '\'' } else { '"' };
                let Some(end) = rest.find(quote) else { break };
                let key = &rest[..end];
                let base = key.split('.').next().unwrap_or(key);
                if !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
                    && !en.contains(base)
                {
                    missing.push(format!("{path}: {key}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys used but not in the catalogs: {missing:#?}"
    );
}

#[test]
fn accept_language_is_negotiated_by_quality() {
    assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Some(Lang::ZhCn));
    assert_eq!(
        Lang::negotiate("en-US,en;q=0.9,zh-CN;q=0.8"),
        Some(Lang::En)
    );
    assert_eq!(
        Lang::negotiate("fr-FR, en;q=0.5, zh;q=0.7"),
        Some(Lang::ZhCn)
    );
    assert_eq!(Lang::negotiate("zh-TW"), Some(Lang::ZhCn));
    assert_eq!(Lang::negotiate("de, fr"), None);
    assert_eq!(Lang::negotiate("zh;q=0, en"), Some(Lang::En));
    assert_eq!(Lang::negotiate(""), None);
}

#[test]
fn times_are_shown_in_the_zone_to_the_minute() {
    let t = DateTime::parse_from_rfc3339("2026-11-29T04:00:35.139236Z")
        .unwrap()
        .with_timezone(&Utc);
    let zh = Ui::new(Lang::ZhCn, Tz::Asia__Shanghai);
    assert_eq!(format_time(zh, t), "2026-11-29 12:00");
    let en = Ui::new(Lang::En, Tz::Asia__Shanghai);
    assert_eq!(format_time(en, t), "29 Nov 2026, 12:00");
    let london = Ui::new(Lang::En, parse_time_zone("Europe/London").unwrap());
    assert_eq!(format_time(london, t), "29 Nov 2026, 04:00");
    assert_eq!(format_date(zh, t), "2026-11-29");
    assert!(parse_time_zone("Mars/Olympus").is_none());
    assert!(parse_time_zone("").is_none());
}

#[test]
fn messages_are_translated_by_pattern_with_field_words() {
    assert_eq!(message(Lang::ZhCn, "not found"), "未找到");
    assert_eq!(message(Lang::En, "not found"), "not found");
    assert_eq!(
        message(
            Lang::ZhCn,
            "confirm_password: does not match the new password"
        ),
        "确认密码：与新密码不一致"
    );
    // Unknown messages stay as they are rather than vanish.
    assert_eq!(message(Lang::ZhCn, "something new"), "something new");
}

#[test]
fn durations_and_sizes() {
    assert_eq!(
        format_duration(Lang::En, 2 * 3600 + 5 * 60 + 3),
        "2 h 5 min"
    );
    assert_eq!(
        format_duration(Lang::ZhCn, 2 * 3600 + 5 * 60),
        "2 小时 5 分钟"
    );
    assert_eq!(format_duration(Lang::ZhCn, 30), "不到 1 分钟");
    assert_eq!(format_duration(Lang::En, 3 * 86_400 + 3600), "3 d 1 h");
    assert_eq!(format_size(512), "512 B");
    assert_eq!(format_size(1536), "1.5 KB");
    assert_eq!(format_size(5 * 1024 * 1024), "5.0 MB");
}

#[test]
fn pattern_matching_binds_holes() {
    let pieces: Vec<String> = "no box {} in the register"
        .split("{}")
        .map(String::from)
        .collect();
    assert_eq!(
        match_pattern(&pieces, "no box B-7 in the register"),
        Some(vec!["B-7"])
    );
    assert_eq!(match_pattern(&pieces, "no box B-7 in the registers"), None);
}

/// The message literals the code refuses with (`AppError::invalid(field, "…")`, also inside
/// `format!`, and `AppError::Conflict("…")`), each with `{…}` placeholders filled in.
fn refusal_messages() -> Vec<(String, String)> {
    fn literal_at(s: &str) -> Option<String> {
        let s = s.trim_start();
        let s = s.strip_prefix("format!(").map(str::trim_start).unwrap_or(s);
        let body = s.strip_prefix('"')?;
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    '\n' => {
                        // A continued line: the next line's leading spaces are not text.
                        let rest: String = chars.clone().collect();
                        let skip = rest.len() - rest.trim_start().len();
                        for _ in 0..rest[..skip].chars().count() {
                            chars.next();
                        }
                    }
                    'n' => out.push('\n'),
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    }
    fn fill(m: &str) -> String {
        let mut out = String::new();
        let mut rest = m;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            match rest[i..].find('}') {
                Some(j) => {
                    out.push('7');
                    rest = &rest[i + j + 1..];
                }
                None => {
                    rest = &rest[i..];
                    break;
                }
            }
        }
        out.push_str(rest);
        out
    }
    let mut found = Vec::new();
    for (name, text) in crate::source_scan::files(&["src"], &["rs"]) {
        // Command-line tools speak English; this file holds the scan itself.
        if ["i18n/tests.rs", "/cli/", "rotation/", "records/import.rs"]
            .iter()
            .any(|p| name.contains(p))
        {
            continue;
        }
        // Not the unit tests' own made-up refusals.
        let text = crate::source_scan::without_tests(&text);
        for (at, _) in text.match_indices("AppError::invalid(") {
            let args = &text[at + "AppError::invalid(".len()..];
            // The second argument: after the first top-level comma.
            let mut depth = 0;
            let mut comma = None;
            let mut in_str = false;
            for (i, c) in args.char_indices() {
                match c {
                    '"' => in_str = !in_str,
                    '(' | '[' | '{' if !in_str => depth += 1,
                    ')' | ']' | '}' if !in_str => {
                        if depth == 0 {
                            break;
                        }
                        depth -= 1
                    }
                    ',' if !in_str && depth == 0 => {
                        comma = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            if let Some(m) = comma.and_then(|i| literal_at(&args[i + 1..])) {
                found.push((name.clone(), fill(&m)));
            }
        }
        for (at, _) in text.match_indices("AppError::Conflict(") {
            let args = &text[at + "AppError::Conflict(".len()..];
            if let Some(m) = literal_at(args) {
                found.push((name.clone(), fill(&m)));
            }
        }
    }
    found
}

#[test]
fn every_refusal_the_code_writes_has_a_chinese_form() {
    let found = refusal_messages();
    assert!(
        found.len() > 100,
        "the scan found only {} messages",
        found.len()
    );
    // Built from pieces the catalog knows one by one (`{code} is already used {within}`).
    let composed = ["7 is already used 7"];
    let missing: Vec<String> = found
        .iter()
        .filter(|(_, m)| !composed.contains(&m.as_str()))
        .filter(|(_, m)| !m.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
        .filter(|(_, m)| {
            let zh = message(Lang::ZhCn, m);
            !zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        })
        .map(|(file, m)| format!("{file}: {m:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "{} messages have no entry in locales/zh-CN/messages.toml:\n{}",
        missing.len(),
        missing.join("\n")
    );
}
