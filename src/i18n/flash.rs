//! The one-line confirmation shown on the page a form post redirects to ("Record filed.").
//! The post sets a short-lived cookie naming a catalog message (`flash-…`) and its
//! arguments; the next page a signed-in person opens shows it once, in their language.

use rocket::http::{Cookie, CookieJar, SameSite};

use super::{tr, Arg, Lang};

pub const FLASH_COOKIE: &str = "strongroom_flash";

/// Sets the confirmation the next page shows. `key` must be a `flash-…` message.
pub fn set(cookies: &CookieJar<'_>, key: &str, args: &[(&str, &str)]) {
    let mut value = key.to_string();
    for (name, v) in args {
        value.push('&');
        value.push_str(name);
        value.push('=');
        value.push_str(&encode(v));
    }
    cookies.add(
        Cookie::build((FLASH_COOKIE, value))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(rocket::time::Duration::seconds(60))
            .build(),
    );
}

/// Takes (and removes) the confirmation, translated; none when there is none or it does
/// not name a confirmation message.
pub fn take(cookies: &CookieJar<'_>, lang: Lang) -> Option<String> {
    let c = cookies.get(FLASH_COOKIE)?;
    let value = c.value().to_string();
    cookies.remove(Cookie::build(FLASH_COOKIE).path("/").build());
    let mut parts = value.split('&');
    let key = parts.next()?;
    if !key.starts_with("flash-")
        || key.len() > 64
        || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || !super::has(Lang::En, key)
    {
        return None;
    }
    let pairs: Vec<(String, String)> = parts
        .take(8)
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.to_string(), decode(v)))
        .collect();
    // The cookie comes back from the browser: its values follow the rules every input
    // follows (no control or bidirectional characters), or nothing is shown.
    if pairs
        .iter()
        .any(|(_, v)| crate::text::check("flash", v, crate::text::Lines::Single).is_err())
    {
        return None;
    }
    let args: Vec<(&str, Arg<'_>)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), Arg::Str(v.as_str())))
        .collect();
    let shown = tr(lang, key, &args);
    // A message missing one of its values is not shown half-filled.
    (!shown.contains("{$") && !shown.contains("{ $")).then_some(shown)
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes().take(400) {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> String {
    rocket::http::RawStr::new(s)
        .percent_decode_lossy()
        .into_owned()
}
