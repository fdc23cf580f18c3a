//! Request guards. `Authenticated` is the only way to obtain the signed-in person, and it
//! can only be built here, from a live session. `Principal` additionally requires that the
//! person is not still holding a one-time password; routes state what they need in their
//! signature, so authentication cannot be forgotten. `Principal` also requires a second
//! factor of a person whose role `totp_required_roles` names. What a person may do is not a guard's
//! business: the services ask the access policy (`crate::policy`), which audits refusals.
//!
//! Failures answer truthfully: no or an unknown/expired session is 401, but a session that
//! could not be checked because the database failed is 503 (`unavailable`), so a signed-in
//! person is not sent to the sign-in page during an outage.

use std::ops::Deref;

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use secrecy::SecretString;
use uuid::Uuid;

use super::{session, SESSION_COOKIE};
use crate::audit::Actor;
use crate::error::AppError;
use crate::telemetry::{self, RequestMeta};
use crate::users::{Role, User};
use crate::App;

/// A person with a live session (possibly still required to change their password).
#[derive(Clone)]
pub struct Authenticated {
    user: User,
    session_id: Uuid,
    csrf_token: String,
    meta: RequestMeta,
    /// Whether the session came in a cookie (which a browser sends by itself) rather than
    /// an `Authorization` header (which only a deliberate client sends).
    via_cookie: bool,
    /// The language and time zone of the person's pages.
    ui: crate::i18n::Ui,
    /// The confirmation of the previous form post, translated, shown once.
    flash: Option<String>,
    /// The path and query of the request (where the language switch comes back to).
    path: String,
    /// For a supervisor's pages: how many requests wait for their decision.
    waiting: Option<usize>,
    /// The person's role requires a second factor they have not set up: until they do,
    /// only enrolment and their own account are open to them (`Principal` refuses).
    second_factor_missing: bool,
}

impl Authenticated {
    pub fn user(&self) -> &User {
        &self.user
    }
    pub fn session_id(&self) -> Uuid {
        self.session_id
    }
    pub fn csrf_token(&self) -> &str {
        &self.csrf_token
    }
    pub fn via_cookie(&self) -> bool {
        self.via_cookie
    }
    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }
    pub fn actor(&self) -> Actor {
        Actor::user(self.user.id.0, &self.user.username, &self.meta)
    }
    pub fn ui(&self) -> crate::i18n::Ui {
        self.ui
    }
    pub fn flash(&self) -> Option<&str> {
        self.flash.as_deref()
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    /// How many requests wait for this supervisor's decision (pages only).
    pub fn waiting(&self) -> Option<usize> {
        self.waiting
    }
    /// Whether the person must set up two-factor sign-in before anything else.
    pub fn second_factor_missing(&self) -> bool {
        self.second_factor_missing
    }
}

fn bearer(req: &Request<'_>) -> Option<String> {
    let h = req.headers().get_one("Authorization")?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Remembers why a guard failed so the catcher can answer precisely.
pub(crate) fn remember_failure(req: &Request<'_>, err: AppError) -> (Status, AppError) {
    let status = err.status();
    let slot = req.local_cache(|| std::sync::Mutex::new(None::<&'static str>));
    if let Ok(mut s) = slot.lock() {
        *s = Some(err.code());
    }
    (status, err)
}

/// The code of the error a guard failed with, if any.
pub(crate) fn failure_code(req: &Request<'_>) -> Option<&'static str> {
    let slot = req.local_cache(|| std::sync::Mutex::new(None::<&'static str>));
    slot.lock().ok().and_then(|s| *s)
}

/// Why no `Authenticated` could be made for a request.
#[derive(Clone, Copy)]
enum NoSession {
    /// No token, or one that names no live session: 401.
    Absent,
    /// The session could not be checked (database unreachable or failing): 503.
    Unchecked,
}

/// Checks every parameter of the query string (names and percent-decoded values) with the
/// text rules of `crate::text`.
fn check_query(req: &Request<'_>) -> Result<(), AppError> {
    let Some(q) = req.uri().query() else {
        return Ok(());
    };
    let decode = |s: &str| {
        rocket::http::RawStr::new(&s.replace('+', " "))
            .percent_decode_lossy()
            .into_owned()
    };
    let pairs: Vec<(String, String)> = q
        .as_str()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (decode(n), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    crate::text::check_form(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Authenticated {
    type Error = AppError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        // Query strings follow the same text rules as bodies: a NUL or a bidi control in a
        // parameter is a 422 naming it, before anything reaches the database or the trail.
        if let Err(e) = check_query(req) {
            return Outcome::Error(super::csrf::refuse(req, e));
        }
        // Cached so that several guards on one request look the session up once.
        let cached: &Result<Authenticated, NoSession> = req
            .local_cache_async(async {
                let Some(app) = req.rocket().state::<App>() else {
                    return Err(NoSession::Unchecked);
                };
                let from_header = bearer(req);
                let via_cookie = from_header.is_none();
                let token = from_header
                    .or_else(|| {
                        req.cookies()
                            .get(SESSION_COOKIE)
                            .map(|c| c.value().to_string())
                    })
                    .ok_or(NoSession::Absent)?;
                if token.is_empty() || token.len() > 128 {
                    return Err(NoSession::Absent);
                }
                let token = SecretString::from(token);
                match session::lookup(app.db.pool(), &token, app.config.session_idle()).await {
                    Ok(Some(s)) => {
                        let ui = crate::i18n::Ui::for_request(req, Some(&s.user));
                        // A confirmation is shown by the next page, not taken by an API call.
                        let flash = (req.method() == rocket::http::Method::Get
                            && !crate::error::is_api(req))
                        .then(|| crate::i18n::flash::take(req.cookies(), ui.lang))
                        .flatten();
                        let mut a = Authenticated {
                            user: s.user,
                            session_id: s.id,
                            csrf_token: s.csrf_token,
                            meta: telemetry::meta(req),
                            via_cookie,
                            ui,
                            flash,
                            path: req.uri().to_string(),
                            waiting: None,
                            second_factor_missing: false,
                        };
                        if super::second_factor::required_for(&app.config, &a.user) {
                            match super::second_factor::is_enrolled(app.db.pool(), a.user.id).await
                            {
                                Ok(enrolled) => a.second_factor_missing = !enrolled,
                                Err(e) => {
                                    tracing::error!(
                                        request_id = %telemetry::request_id(req),
                                        error = %e,
                                        "second-factor lookup failed; answering 503"
                                    );
                                    return Err(NoSession::Unchecked);
                                }
                            }
                        }
                        // The supervisor's count in the navigation, once per page.
                        if req.method() == rocket::http::Method::Get
                            && !crate::error::is_api(req)
                            && req
                                .accept()
                                .is_none_or(|acc| acc.preferred().media_type().is_html())
                            && a.user.has_role(Role::Supervisor)
                            && !a.user.must_change_password
                            && !a.second_factor_missing
                        {
                            match crate::requests::waiting::count(app, &Principal(a.clone())).await
                            {
                                Ok(n) => a.waiting = Some(n),
                                Err(e) => tracing::warn!(
                                    error = %e,
                                    "counting the requests waiting for a decision failed"
                                ),
                            }
                        }
                        Ok(a)
                    }
                    Ok(None) => Err(NoSession::Absent),
                    Err(e) => {
                        tracing::error!(
                            request_id = %telemetry::request_id(req),
                            error = %e,
                            "session lookup failed; answering 503"
                        );
                        Err(NoSession::Unchecked)
                    }
                }
            })
            .await;
        match cached {
            Ok(a) if !cookie_api_write_allowed(req, a) => {
                tracing::warn!(target: "security", path = %req.uri().path(), "cookie-authenticated API write without JSON or its CSRF header");
                // A body of another type is refused as the JSON routes refuse it (415); an
                // upload or a body-less post without the page's token, as a forged form.
                let e = match req.content_type() {
                    Some(c) if !c.is_form_data() => AppError::UnsupportedMediaType,
                    _ => AppError::Csrf,
                };
                Outcome::Error(remember_failure(req, e))
            }
            Ok(a) => Outcome::Success(a.clone()),
            Err(NoSession::Absent) => {
                Outcome::Error(remember_failure(req, AppError::Unauthenticated))
            }
            Err(NoSession::Unchecked) => {
                Outcome::Error(remember_failure(req, AppError::Unavailable))
            }
        }
    }
}

/// A write to the JSON API (POST, PUT, PATCH, DELETE) that a browser sends with the session
/// cookie must show that a page of this site made it: a JSON body (which no cross-site form
/// can send) or the session's `X-CSRF-Token` header (the pages' upload script). A form or a
/// `text/plain` post to a route without a body is refused like any forged form. Callers
/// with a bearer token are not browsers and pass.
fn cookie_api_write_allowed(req: &Request<'_>, a: &Authenticated) -> bool {
    use rocket::http::Method;
    if !a.via_cookie
        || !crate::error::is_api(req)
        || !matches!(
            req.method(),
            Method::Post | Method::Put | Method::Patch | Method::Delete
        )
    {
        return true;
    }
    if req.content_type().is_some_and(|c| c.is_json()) {
        return true;
    }
    req.headers()
        .get_one("X-CSRF-Token")
        .is_some_and(|t| super::csrf::tokens_match(t, &a.csrf_token))
}

/// The person signed in on this request, if a guard has already looked the session up.
pub(crate) fn cached(req: &Request<'_>) -> Option<Authenticated> {
    let cached: &Result<Authenticated, NoSession> = req.local_cache(|| Err(NoSession::Absent));
    cached.as_ref().ok().cloned()
}

/// A signed-in person who has set their own password.
#[derive(Clone)]
pub struct Principal(Authenticated);

impl Deref for Principal {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.0.user.has_role(role)
    }

    /// The person a command-line job acts as (e.g. `import --as NAME`): the account must
    /// exist and be active; every action still goes through the policy like a request's.
    pub(crate) fn for_command_line(user: User) -> Result<Principal, AppError> {
        if !user.is_active() {
            return Err(AppError::Forbidden);
        }
        Ok(Principal(Authenticated {
            meta: RequestMeta {
                request_id: format!("cli-{}", uuid::Uuid::new_v4().simple()),
                client_addr: None,
            },
            user,
            session_id: Uuid::nil(),
            csrf_token: String::new(),
            via_cookie: false,
            ui: crate::i18n::Ui::new(crate::i18n::Lang::En, chrono_tz::Tz::UTC),
            flash: None,
            path: String::new(),
            waiting: None,
            second_factor_missing: false,
        }))
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Principal {
    type Error = AppError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        match Authenticated::from_request(req).await {
            Outcome::Success(a) if a.user.must_change_password => {
                Outcome::Error(remember_failure(req, AppError::PasswordChangeRequired))
            }
            // Held centrally here, so no route can forget it: an account whose role
            // requires a second factor reaches only what takes `Authenticated` (enrolment,
            // its own account and password, the language switch, sign-out) until it has one.
            Outcome::Success(a) if a.second_factor_missing => {
                Outcome::Error(remember_failure(req, AppError::TotpEnrolmentRequired))
            }
            Outcome::Success(a) => Outcome::Success(Principal(a)),
            Outcome::Error(e) => Outcome::Error(e),
            Outcome::Forward(s) => Outcome::Forward(s),
        }
    }
}
