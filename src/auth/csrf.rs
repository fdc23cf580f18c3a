//! CSRF protection for HTML form posts. A form handler takes `CsrfForm<T>`, which parses the
//! form and then compares its `csrf` field, in constant time, with the session's token (or,
//! before sign-in, with the token of the sign-in page's cookie). Session cookies are also
//! `SameSite=Strict`; JSON routes need `Content-Type: application/json`, which a cross-site
//! form cannot send (`api::JsonBody` enforces it).
//!
//! The form body is read here, not by Rocket's `Form`, so that every decoded field passes
//! `text::check_form` (no control or bidi characters; 422 naming the field) before the
//! form is parsed: one check for every HTML form, which no handler can forget.

use rocket::data::{Data, FromData, Limits, Outcome};
use rocket::form::{Form, FromForm};
use rocket::http::{RawStr, Status};
use rocket::request::Request;
use subtle::ConstantTimeEq;

use super::guard::{remember_failure, Authenticated};
use crate::error::AppError;

pub const LOGIN_CSRF_COOKIE: &str = "strongroom_login_csrf";

/// A form that carries a `csrf` field.
pub trait CsrfField {
    fn csrf(&self) -> &str;
}

/// Implements `CsrfField` for a form struct whose token field is named `csrf`.
#[macro_export]
macro_rules! csrf_field {
    ($t:ty) => {
        impl $crate::auth::csrf::CsrfField for $t {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    };
}

pub struct CsrfForm<T>(pub T);

impl<T> std::ops::Deref for CsrfForm<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The field and message of a refused form, kept for the catcher: the refusal happens in
/// this data guard, so without it the page could not say which field was wrong.
struct Refused(std::sync::Mutex<Option<(Option<String>, String)>>);

pub(crate) fn refuse(req: &Request<'_>, err: AppError) -> (Status, AppError) {
    if let AppError::Invalid { field, message } = &err {
        let slot = req.local_cache(|| Refused(std::sync::Mutex::new(None)));
        if let Ok(mut s) = slot.0.lock() {
            *s = Some((field.clone(), message.clone()));
        }
    }
    remember_failure(req, err)
}

/// The precise error of a form refused by `CsrfForm`, if one was.
pub(crate) fn refused_form(req: &Request<'_>) -> Option<AppError> {
    let slot = req.local_cache(|| Refused(std::sync::Mutex::new(None)));
    let (field, message) = slot.0.lock().ok()?.clone()?;
    Some(AppError::Invalid { field, message })
}

/// Whether a form post comes from a page of this site, as the browser says in
/// `Sec-Fetch-Site`: `same-origin`, or `none` (typed or bookmarked by the person). A post
/// from a sibling subdomain (`same-site`) or another site is refused even when it carries
/// a matching token: whoever can set cookies on the site could otherwise pair a planted
/// `strongroom_login_csrf` cookie with its value and sign a browser into their own account.
/// Clients that do not send the header (scripts, older browsers) rely on the token and
/// `SameSite=Strict` as before.
fn from_this_origin(req: &Request<'_>) -> bool {
    match req.headers().get_one("Sec-Fetch-Site") {
        None => true,
        Some(site) => site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"),
    }
}

pub(crate) fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[rocket::async_trait]
impl<'r, T: for<'a> FromForm<'a> + CsrfField + Send + 'static> FromData<'r> for CsrfForm<T> {
    type Error = AppError;

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r, Self> {
        if !req.content_type().is_some_and(|ct| ct.is_form()) {
            return Outcome::Error(remember_failure(req, AppError::UnsupportedMediaType));
        }
        if !from_this_origin(req) {
            tracing::warn!(target: "security", "form post from another origin (Sec-Fetch-Site)");
            audit_failure(req, "another origin").await;
            return Outcome::Error(remember_failure(req, AppError::Csrf));
        }
        let limit = req.limits().get("form").unwrap_or(Limits::FORM);
        let raw = match data.open(limit).into_string().await {
            Ok(s) if s.is_complete() => s.into_inner(),
            Ok(_) => return Outcome::Error((Status::PayloadTooLarge, AppError::TooLarge)),
            Err(_) => {
                return Outcome::Error(remember_failure(
                    req,
                    AppError::invalid("form", "could not be read"),
                ))
            }
        };
        let decoded: Vec<(String, String)> = raw
            .split('&')
            .filter(|f| !f.is_empty())
            .map(|f| {
                let (n, v) = f.split_once('=').unwrap_or((f, ""));
                (
                    RawStr::new(n).url_decode_lossy().into_owned(),
                    RawStr::new(v).url_decode_lossy().into_owned(),
                )
            })
            .collect();
        let form = match Form::<T>::parse_encoded(RawStr::new(&raw)) {
            Ok(f) => f,
            Err(errors) => {
                let status = errors.status();
                let field = errors
                    .iter()
                    .next()
                    .and_then(|e| e.name.as_ref().map(|n| n.to_string()))
                    .unwrap_or_else(|| "form".into());
                tracing::debug!(%status, field, "form rejected");
                if status == Status::PayloadTooLarge {
                    return Outcome::Error((status, AppError::TooLarge));
                }
                // A form without its token is a CSRF failure, whatever else is wrong with it.
                if errors
                    .iter()
                    .any(|e| e.name.as_ref().is_some_and(|n| n == "csrf"))
                {
                    tracing::warn!(target: "security", "form post without a CSRF token");
                    audit_failure(req, "missing").await;
                    return Outcome::Error(remember_failure(req, AppError::Csrf));
                }
                return Outcome::Error(refuse(req, AppError::invalid(field, "missing or invalid")));
            }
        };
        let expected: Option<String> = match req.guard::<Authenticated>().await {
            rocket::outcome::Outcome::Success(a) => Some(a.csrf_token().to_string()),
            _ => req
                .cookies()
                .get(LOGIN_CSRF_COOKIE)
                .map(|c| c.value().to_string()),
        };
        match expected {
            Some(e) if tokens_match(form.csrf(), &e) => {
                // Only a form from this site gets as far as having its text judged.
                match crate::text::check_form(decoded.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                {
                    Ok(()) => Outcome::Success(CsrfForm(form)),
                    Err(e) => Outcome::Error(refuse(req, e)),
                }
            }
            _ => {
                tracing::warn!(target: "security", "form post without a valid CSRF token");
                audit_failure(req, "mismatch").await;
                Outcome::Error(remember_failure(req, AppError::Csrf))
            }
        }
    }
}

/// Audits a refused form post (who, if signed in, which path; never the form's content).
/// Best effort: the post is refused whether or not the event can be written.
async fn audit_failure(req: &Request<'_>, why: &'static str) {
    let Some(app) = req.rocket().state::<crate::App>() else {
        return;
    };
    let meta = crate::telemetry::meta(req);
    let actor = match req.guard::<Authenticated>().await {
        rocket::outcome::Outcome::Success(a) => a.actor(),
        _ => crate::audit::Actor::anonymous(&meta, ""),
    };
    let event = crate::audit::Event::new("auth.csrf", crate::audit::Outcome::Denied)
        .detail(serde_json::json!({"reason": why, "path": req.uri().path().as_str()}));
    if let Err(e) = app.db.record(&actor, event).await {
        tracing::warn!(error = %e, "a refused form post could not be audited");
    }
}

/// The `X-CSRF-Token` header, for non-JSON, non-form posts made by the pages' own scripts
/// (file uploads). Checked only when the session came in a cookie.
pub struct HeaderToken(Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for HeaderToken {
    type Error = std::convert::Infallible;
    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(HeaderToken(
            req.headers().get_one("X-CSRF-Token").map(str::to_string),
        ))
    }
}

impl HeaderToken {
    /// Checks the token; a refusal is audited (`auth.csrf`).
    pub async fn verify(&self, app: &crate::App, who: &Authenticated) -> Result<(), AppError> {
        let result = self.check(who);
        if result.is_err() {
            let event = crate::audit::Event::new("auth.csrf", crate::audit::Outcome::Denied)
                .detail(serde_json::json!({"reason": "upload without its token"}));
            app.db.record(&who.actor(), event).await?;
        }
        result
    }

    pub fn check(&self, who: &Authenticated) -> Result<(), AppError> {
        if !who.via_cookie() {
            return Ok(());
        }
        match &self.0 {
            Some(t) if tokens_match(t, who.csrf_token()) => Ok(()),
            _ => {
                tracing::warn!(target: "security", "cookie-authenticated upload without a CSRF token");
                Err(AppError::Csrf)
            }
        }
    }
}
