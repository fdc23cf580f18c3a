//! The template side of the languages: `t("key", name=value…)`, and filters that write
//! times, dates, sizes and durations for the page's language and time zone.
//!
//! A template's language and time zone come from its context: `lang`/`tz` when the page
//! sets them (pages without a signed-in person), else `me.lang`/`me.tz`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use fluent_bundle::{FluentArgs, FluentValue};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

use super::{format_date, format_duration, format_naive_date, format_size, format_time};
use super::{tr, Lang, Ui};

/// The language and time zone a template is rendered in.
pub fn ui_of(state: &State) -> Ui {
    let me = state.lookup("me");
    let pick = |name: &str| -> Option<String> {
        state
            .lookup(name)
            .filter(|v| !v.is_undefined() && !v.is_none())
            .or_else(|| {
                me.as_ref()
                    .and_then(|m| m.get_attr(name).ok())
                    .filter(|v| !v.is_undefined() && !v.is_none())
            })
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let lang = pick("lang")
        .and_then(|l| Lang::parse(&l))
        .unwrap_or(Lang::ZhCn);
    let tz = pick("tz")
        .and_then(|z| super::parse_time_zone(&z))
        .unwrap_or(Tz::Asia__Shanghai);
    Ui { lang, tz }
}

fn t(state: &State, key: &str, kwargs: Kwargs) -> Result<String, Error> {
    let lang = ui_of(state).lang;
    let mut args = FluentArgs::new();
    for name in kwargs.args() {
        let v: Value = kwargs.get(name)?;
        let fv = match v.kind() {
            ValueKind::Number => match f64::try_from(v.clone()) {
                Ok(n) => FluentValue::from(n),
                Err(_) => FluentValue::from(v.to_string()),
            },
            ValueKind::None | ValueKind::Undefined => FluentValue::from(""),
            _ => FluentValue::from(v.to_string()),
        };
        args.set(name.to_string(), fv);
    }
    kwargs.assert_all_used()?;
    Ok(super::format_in(lang, key, &args)
        .or_else(|| super::format_in(Lang::En, key, &args))
        .unwrap_or_else(|| {
            super::note_missing(key, lang);
            key.to_string()
        }))
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A stored time (RFC 3339, as the views serialize it) in the page's zone and language;
/// a calendar date (`YYYY-MM-DD`) as a date; anything else as it is.
fn when(state: &State, v: Value) -> String {
    let ui = ui_of(state);
    if let Some(t) = parse_time(&v) {
        return format_time(ui, t);
    }
    if let Some(d) = v
        .as_str()
        .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    {
        return format_naive_date(ui.lang, d);
    }
    if v.is_none() || v.is_undefined() {
        return String::new();
    }
    v.to_string()
}

/// The calendar day of a stored time, in the page's zone and language.
fn day(state: &State, v: Value) -> String {
    let ui = ui_of(state);
    match parse_time(&v) {
        Some(t) => format_date(ui, t),
        None => when(state, v),
    }
}

/// Time from now until a stored time (`2 h 05 min`); an empty string once it has passed.
fn left(state: &State, v: Value) -> String {
    let lang = ui_of(state).lang;
    match parse_time(&v) {
        Some(t) if t > Utc::now() => format_duration(lang, (t - Utc::now()).num_seconds()),
        _ => String::new(),
    }
}

/// A number of seconds as a duration.
fn duration(state: &State, seconds: i64) -> String {
    format_duration(ui_of(state).lang, seconds)
}

/// Bytes as B/KB/MB/GB.
fn size(v: Value) -> String {
    match i64::try_from(v.clone()) {
        Ok(n) => format_size(n),
        Err(_) => v.to_string(),
    }
}

/// An English message (an error's, a validation's) in the page's language.
fn msg(state: &State, v: Value) -> String {
    match v.as_str() {
        Some(s) => super::message(ui_of(state).lang, s),
        None => v.to_string(),
    }
}

/// The word for a value of the archive's vocabulary (`kind-lookup`, `state-in_store`…):
/// `word("kind", "lookup")`; the value itself when the catalog has no word for it.
fn word(state: &State, prefix: &str, v: Value) -> Result<String, Error> {
    let lang = ui_of(state).lang;
    let Some(s) = v.as_str() else {
        return Ok(v.to_string());
    };
    let key = format!("{prefix}-{s}");
    if super::has(lang, &key) || super::has(Lang::En, &key) {
        Ok(tr(lang, &key, &[]))
    } else if key.len() > 200 {
        Err(Error::new(ErrorKind::InvalidOperation, "word too long"))
    } else {
        Ok(s.to_string())
    }
}

/// Adds `t`, `word`, `left`, `duration` and the filters `when`, `day`, `size`, `msg`.
pub fn register(env: &mut Environment<'static>) {
    env.add_function("t", t);
    env.add_function("word", word);
    env.add_function("left", left);
    env.add_function("duration", duration);
    env.add_filter("when", when);
    env.add_filter("day", day);
    env.add_filter("size", size);
    env.add_filter("msg", msg);
}
