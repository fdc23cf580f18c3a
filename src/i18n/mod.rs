//! The interface's languages (Simplified Chinese and English) and time zones.
//!
//! Every visible string comes from the Fluent catalogs under `locales/<lang>/*.ftl`,
//! embedded in the binary. Templates call `t("key", name=value…)`; Rust code calls [`tr`].
//! The language of a request is, in order: the signed-in person's saved choice, the
//! `strongroom_lang` cookie (the switch on the sign-in page), the browser's
//! `Accept-Language`, the vault's `default_locale`. Times are shown in the person's time
//! zone (else the vault's `time_zone`, shipped as `Asia/Shanghai`), to the minute, in one
//! format per language.
//!
//! Messages of errors are written in English where they arise (services, validation) and
//! translated at the edge by [`message`], from `locales/zh-CN/messages.toml`: patterns in
//! which `{}` stands for any text. API error codes never change with the language.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use rocket::request::{FromRequest, Outcome, Request};
use serde::Serialize;

pub mod flash;
mod templates;
#[cfg(test)]
mod tests;

pub use templates::register;

/// The cookie the language switch on the sign-in page sets (no session yet).
pub const LANG_COOKIE: &str = "strongroom_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Lang {
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::ZhCn, Lang::En];

    /// The BCP 47 tag, as in `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's own name, for the switch.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    /// `en`, `en-GB`, `zh`, `zh-CN`, `zh-Hans`… (case-insensitive); anything else: none.
    pub fn parse(s: &str) -> Option<Lang> {
        let s = s.trim().to_ascii_lowercase();
        let primary = s.split(['-', '_']).next().unwrap_or("");
        match primary {
            "en" => Some(Lang::En),
            // Only Simplified Chinese is written; readers of zh-TW/zh-HK get it too.
            "zh" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The best language an `Accept-Language` header asks for, by its q-values.
    pub fn negotiate(header: &str) -> Option<Lang> {
        let mut best: Option<(f32, usize, Lang)> = None;
        for (i, part) in header.split(',').enumerate().take(32) {
            let mut bits = part.split(';');
            let tag = bits.next().unwrap_or("").trim();
            let q = bits
                .filter_map(|b| b.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            let Some(lang) = Lang::parse(tag) else {
                continue;
            };
            if q <= 0.0 || !q.is_finite() {
                continue;
            }
            // Highest q wins; on a tie, the earlier entry.
            if best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
                best = Some((q, i, lang));
            }
        }
        best.map(|(_, _, l)| l)
    }
}

/// How a request's pages are written: language and time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ui {
    pub lang: Lang,
    pub tz: Tz,
}

impl Ui {
    pub const fn new(lang: Lang, tz: Tz) -> Ui {
        Ui { lang, tz }
    }

    /// The language and time zone for a request: the signed-in person's saved choices first.
    pub fn for_request(req: &Request<'_>, user: Option<&crate::users::User>) -> Ui {
        let (default_lang, default_tz) = defaults(req);
        let lang = user
            .and_then(|u| u.locale.as_deref())
            .and_then(Lang::parse)
            .or_else(|| {
                req.cookies()
                    .get(LANG_COOKIE)
                    .and_then(|c| Lang::parse(c.value()))
            })
            .or_else(|| {
                req.headers()
                    .get_one("Accept-Language")
                    .and_then(Lang::negotiate)
            })
            .unwrap_or(default_lang);
        let tz = user
            .and_then(|u| u.time_zone.as_deref())
            .and_then(parse_time_zone)
            .unwrap_or(default_tz);
        Ui { lang, tz }
    }
}

fn defaults(req: &Request<'_>) -> (Lang, Tz) {
    match req.rocket().state::<crate::App>() {
        Some(app) => (app.config.default_lang(), app.config.default_tz()),
        None => (Lang::ZhCn, Tz::Asia__Shanghai),
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Ui {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let user = match req.guard::<crate::auth::Authenticated>().await {
            Outcome::Success(a) => Some(a.user().clone()),
            _ => None,
        };
        Outcome::Success(Ui::for_request(req, user.as_ref()))
    }
}

/// An IANA time zone name (`Asia/Shanghai`, `UTC`…).
pub fn parse_time_zone(name: &str) -> Option<Tz> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    name.parse::<Tz>().ok()
}

/// The time zones offered in the settings (any IANA name is accepted).
pub const COMMON_TIME_ZONES: &[&str] = &[
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Macau",
    "Asia/Taipei",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Moscow",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Australia/Sydney",
    "UTC",
];

// ---------------------------------------------------------------------------------------
// Catalogs

/// The catalog files, per language, in the order they are loaded.
const FILES: &[(&str, &str, &str)] = &[
    ("en", "common", include_str!("../../locales/en/common.ftl")),
    (
        "en",
        "accounts",
        include_str!("../../locales/en/accounts.ftl"),
    ),
    (
        "en",
        "register",
        include_str!("../../locales/en/register.ftl"),
    ),
    (
        "en",
        "records",
        include_str!("../../locales/en/records.ftl"),
    ),
    (
        "en",
        "requests",
        include_str!("../../locales/en/requests.ftl"),
    ),
    ("en", "viewer", include_str!("../../locales/en/viewer.ftl")),
    ("en", "audit", include_str!("../../locales/en/audit.ftl")),
    ("en", "home", include_str!("../../locales/en/home.ftl")),
    (
        "en",
        "catalog",
        include_str!("../../locales/en/catalog.ftl"),
    ),
    ("en", "totp", include_str!("../../locales/en/totp.ftl")),
    (
        "en",
        "lifecycle",
        include_str!("../../locales/en/lifecycle.ftl"),
    ),
    (
        "en",
        "reports",
        include_str!("../../locales/en/reports.ftl"),
    ),
    ("en", "review", include_str!("../../locales/en/review.ftl")),
    (
        "zh-CN",
        "common",
        include_str!("../../locales/zh-CN/common.ftl"),
    ),
    (
        "zh-CN",
        "accounts",
        include_str!("../../locales/zh-CN/accounts.ftl"),
    ),
    (
        "zh-CN",
        "register",
        include_str!("../../locales/zh-CN/register.ftl"),
    ),
    (
        "zh-CN",
        "records",
        include_str!("../../locales/zh-CN/records.ftl"),
    ),
    (
        "zh-CN",
        "requests",
        include_str!("../../locales/zh-CN/requests.ftl"),
    ),
    (
        "zh-CN",
        "viewer",
        include_str!("../../locales/zh-CN/viewer.ftl"),
    ),
    (
        "zh-CN",
        "audit",
        include_str!("../../locales/zh-CN/audit.ftl"),
    ),
    (
        "zh-CN",
        "home",
        include_str!("../../locales/zh-CN/home.ftl"),
    ),
    (
        "zh-CN",
        "catalog",
        include_str!("../../locales/zh-CN/catalog.ftl"),
    ),
    (
        "zh-CN",
        "lifecycle",
        include_str!("../../locales/zh-CN/lifecycle.ftl"),
    ),
    (
        "zh-CN",
        "reports",
        include_str!("../../locales/zh-CN/reports.ftl"),
    ),
    (
        "zh-CN",
        "review",
        include_str!("../../locales/zh-CN/review.ftl"),
    ),
    (
        "zh-CN",
        "totp",
        include_str!("../../locales/zh-CN/totp.ftl"),
    ),
];

/// English patterns of error and validation messages, translated (`{}`: any text).
const ZH_MESSAGES: &str = include_str!("../../locales/zh-CN/messages.toml");

struct Catalogs {
    en: FluentBundle<FluentResource>,
    zh: FluentBundle<FluentResource>,
    /// (English pattern split at `{}`, Chinese pattern), longest patterns first.
    zh_messages: Vec<(Vec<String>, String)>,
    /// Problems found while loading (reported by a test; logged at start).
    problems: Vec<String>,
}

static CATALOGS: LazyLock<Catalogs> = LazyLock::new(load);

fn load() -> Catalogs {
    let mut problems = Vec::new();
    let mut bundle = |tag: &str| {
        let id: unic_langid::LanguageIdentifier = tag
            .parse()
            .unwrap_or_else(|_| unic_langid::LanguageIdentifier::default());
        let mut b = FluentBundle::new_concurrent(vec![id]);
        // Values go into HTML (escaped by the templates); no bidi isolation marks.
        b.set_use_isolating(false);
        for (lang, name, source) in FILES.iter().filter(|(l, _, _)| *l == tag) {
            let res = match FluentResource::try_new(source.to_string()) {
                Ok(r) => r,
                Err((r, errs)) => {
                    problems.push(format!("{lang}/{name}.ftl: {errs:?}"));
                    r
                }
            };
            if let Err(errs) = b.add_resource(res) {
                problems.push(format!("{lang}/{name}.ftl: {errs:?}"));
            }
        }
        b
    };
    let en = bundle("en");
    let zh = bundle("zh-CN");
    let mut zh_messages = Vec::new();
    match toml::from_str::<HashMap<String, String>>(ZH_MESSAGES) {
        Ok(map) => {
            for (en_pattern, zh_pattern) in map {
                let pieces = en_pattern.split("{}").map(str::to_string).collect();
                zh_messages.push((pieces, zh_pattern));
            }
        }
        Err(e) => problems.push(format!("zh-CN/messages.toml: {e}")),
    }
    zh_messages.sort_by_key(|(p, _): &(Vec<String>, String)| {
        std::cmp::Reverse(p.iter().map(String::len).sum::<usize>())
    });
    Catalogs {
        en,
        zh,
        zh_messages,
        problems,
    }
}

/// Problems in the embedded catalogs (none in a good build).
pub fn catalog_problems() -> Vec<String> {
    CATALOGS.problems.clone()
}

/// An argument of a message.
pub enum Arg<'a> {
    Str(&'a str),
    Num(f64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Str(s)
    }
}
impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Num(n as f64)
    }
}
impl From<usize> for Arg<'_> {
    fn from(n: usize) -> Self {
        Arg::Num(n as f64)
    }
}

/// Keys asked for that no catalog has (a bug; the tests fail on any).
static MISSING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn note_missing(key: &str, lang: Lang) {
    tracing::warn!(key, lang = lang.tag(), "message missing from the catalogs");
    if let Ok(mut m) = MISSING.lock() {
        if m.len() < 100 && !m.iter().any(|k| k == key) {
            m.push(key.to_string());
        }
    }
}

/// The keys asked for that no catalog has, since the start.
pub fn missing_keys() -> Vec<String> {
    MISSING.lock().map(|m| m.clone()).unwrap_or_default()
}

/// Whether the catalog of `lang` has `key`.
pub fn has(lang: Lang, key: &str) -> bool {
    bundle(lang).has_message(key)
}

fn bundle(lang: Lang) -> &'static FluentBundle<FluentResource> {
    match lang {
        Lang::En => &CATALOGS.en,
        Lang::ZhCn => &CATALOGS.zh,
    }
}

/// The message `key` in `lang` (else in English, else the key itself).
pub fn tr(lang: Lang, key: &str, args: &[(&str, Arg<'_>)]) -> String {
    let mut fargs = FluentArgs::new();
    for (name, value) in args {
        match value {
            Arg::Str(s) => fargs.set(*name, FluentValue::from(*s)),
            Arg::Num(n) => fargs.set(*name, FluentValue::from(*n)),
        }
    }
    format_in(lang, key, &fargs)
        .or_else(|| format_in(Lang::En, key, &fargs))
        .unwrap_or_else(|| {
            note_missing(key, lang);
            key.to_string()
        })
}

pub(crate) fn format_in(lang: Lang, key: &str, args: &FluentArgs<'_>) -> Option<String> {
    let b = bundle(lang);
    let (id, attr) = match key.split_once('.') {
        Some((id, attr)) => (id, Some(attr)),
        None => (key, None),
    };
    let msg = b.get_message(id)?;
    let pattern = match attr {
        Some(a) => msg.get_attribute(a)?.value(),
        None => msg.value()?,
    };
    let mut errors = vec![];
    let s = b.format_pattern(pattern, Some(args), &mut errors);
    Some(s.into_owned())
}

/// An error or validation message (written in English) in `lang`: translated from
/// `messages.toml` when a pattern matches, else as it is.
pub fn message(lang: Lang, english: &str) -> String {
    if lang == Lang::En {
        return english.to_string();
    }
    for (pieces, zh) in &CATALOGS.zh_messages {
        if let Some(holes) = match_pattern(pieces, english) {
            let mut out = String::new();
            let mut holes = holes.into_iter();
            let mut rest = zh.as_str();
            while let Some(i) = rest.find("{}") {
                out.push_str(&rest[..i]);
                out.push_str(
                    &holes
                        .next()
                        .map(|h| field_word(lang, h))
                        .unwrap_or_default(),
                );
                rest = &rest[i + 2..];
            }
            out.push_str(rest);
            return out;
        }
    }
    // `field: message`, as validation errors read: the field's word, then the message.
    if let Some((field, rest)) = english.split_once(": ") {
        if !field.is_empty()
            && field
                .chars()
                .all(|c| c.is_ascii_lowercase() || "_.[]".contains(c))
        {
            return format!("{}：{}", field_word(lang, field), message(lang, rest));
        }
    }
    english.to_string()
}

/// A field name inside a message: its catalog label (`field-<name>`) when there is one.
fn field_word(lang: Lang, s: &str) -> String {
    let key = format!("field-{s}");
    if s.chars().all(|c| c.is_ascii_lowercase() || c == '_') && has(lang, &key) {
        tr(lang, &key, &[])
    } else {
        s.to_string()
    }
}

/// The texts standing for the `{}` of a pattern, if `s` matches it entirely.
fn match_pattern<'s>(pieces: &[String], s: &'s str) -> Option<Vec<&'s str>> {
    let (first, rest) = pieces.split_first()?;
    let mut s = s.strip_prefix(first.as_str())?;
    let mut holes = Vec::new();
    for (i, piece) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let at = if last {
            if piece.is_empty() {
                s.len()
            } else if s.ends_with(piece.as_str()) {
                s.len() - piece.len()
            } else {
                return None;
            }
        } else {
            s.find(piece.as_str())?
        };
        holes.push(&s[..at]);
        s = &s[at + piece.len()..];
    }
    (s.is_empty()).then_some(holes)
}

// ---------------------------------------------------------------------------------------
// Formats

/// A moment as people read it: in the time zone, to the minute.
pub fn format_time(ui: Ui, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&ui.tz);
    match ui.lang {
        Lang::ZhCn => local.format("%Y-%m-%d %H:%M").to_string(),
        Lang::En => local.format("%-d %b %Y, %H:%M").to_string(),
    }
}

/// The calendar date of a moment in the time zone.
pub fn format_date(ui: Ui, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&ui.tz);
    match ui.lang {
        Lang::ZhCn => local.format("%Y-%m-%d").to_string(),
        Lang::En => local.format("%-d %b %Y").to_string(),
    }
}

/// A calendar date (no time zone) in the language's format.
pub fn format_naive_date(lang: Lang, d: chrono::NaiveDate) -> String {
    match lang {
        Lang::ZhCn => d.format("%Y-%m-%d").to_string(),
        Lang::En => d.format("%-d %b %Y").to_string(),
    }
}

/// A length of time, to the minute (`2 h 05 min` / `2小时5分钟`); under a minute: `< 1 min`.
pub fn format_duration(lang: Lang, seconds: i64) -> String {
    let seconds = seconds.max(0);
    let days = seconds / 86_400;
    let hours = (seconds % 86_400) / 3_600;
    let minutes = (seconds % 3_600) / 60;
    let n = |v: i64| Arg::Num(v as f64);
    if days > 0 {
        tr(
            lang,
            "duration-days-hours",
            &[("days", n(days)), ("hours", n(hours))],
        )
    } else if hours > 0 {
        tr(
            lang,
            "duration-hours-minutes",
            &[("hours", n(hours)), ("minutes", n(minutes))],
        )
    } else if minutes > 0 {
        tr(lang, "duration-minutes", &[("minutes", n(minutes))])
    } else {
        tr(lang, "duration-under-a-minute", &[])
    }
}

/// A size in bytes as people read it: B, KB, MB, GB (1024-based, one decimal).
pub fn format_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    const K: f64 = 1024.0;
    if b < K {
        format!("{} B", bytes.max(0))
    } else if b < K * K {
        format!("{:.1} KB", b / K)
    } else if b < K * K * K {
        format!("{:.1} MB", b / (K * K))
    } else {
        format!("{:.2} GB", b / (K * K * K))
    }
}
