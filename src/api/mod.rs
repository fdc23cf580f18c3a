//! The JSON API under `/api/v1`. Thin handlers: guards in, one service call, JSON out.
//! Errors are `{"error": {"code", "message"}}` with the status from `AppError`.

mod accounts;
mod archive;
mod lifecycle;
mod paced;
mod reports;
pub(crate) mod requests;
mod scrub;
mod totp;

use chrono::{DateTime, Utc};
use rocket::http::{Cookie, CookieJar, Status};
use rocket::serde::json::Json;
use rocket::{get, post, routes, Route, State};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit;
use crate::auth::{self, Authenticated, Principal, SESSION_COOKIE};
use crate::error::{AppError, AppResult};
use crate::telemetry::RequestMeta;
use crate::users::{self, NewUser, User};
use crate::App;

pub fn routes() -> Vec<Route> {
    let mut r = archive::routes();
    r.extend(requests::routes());
    r.extend(scrub::routes());
    r.extend(accounts::routes());
    r.extend(lifecycle::routes());
    r.extend(reports::routes());
    r.extend(totp::routes());
    r.extend(routes![
        login,
        logout,
        me,
        change_password,
        create_user,
        list_users,
        list_audit
    ]);
    r
}

/// A JSON request body. Unlike Rocket's `Json<T>`, it insists on
/// `Content-Type: application/json` (else 415), so a cross-site HTML form (which can send
/// only form or `text/plain` bodies) can never drive a JSON route with a person's cookie;
/// and every string in it passes `text::check_json` before `T` sees it, so control and
/// bidi characters are refused (422 naming the JSON path) at the edge, once for all routes.
pub(crate) struct JsonBody<T>(pub T);

/// What handlers take: the body, or the error that refusing it gives (answered by the
/// handler, after its guards, through the one `AppError` responder).
pub(crate) type Body<T> = Result<JsonBody<T>, AppError>;

#[rocket::async_trait]
impl<'r, T: serde::de::DeserializeOwned> rocket::data::FromData<'r> for JsonBody<T> {
    type Error = AppError;

    async fn from_data(
        req: &'r rocket::Request<'_>,
        data: rocket::Data<'r>,
    ) -> rocket::data::Outcome<'r, Self> {
        use rocket::data::{Outcome, ToByteUnit};
        let refuse = |e: AppError| Outcome::Error((e.status(), e));
        if !req.content_type().is_some_and(|ct| ct.is_json()) {
            return refuse(AppError::UnsupportedMediaType);
        }
        let limit = req.limits().get("json").unwrap_or(1.mebibytes());
        let raw = match data.open(limit).into_bytes().await {
            Ok(b) if b.is_complete() => b.into_inner(),
            Ok(_) => return refuse(AppError::TooLarge),
            Err(_) => return refuse(AppError::invalid("body", "could not be read")),
        };
        let value: Value = match serde_json::from_slice(&raw) {
            Ok(v) => v,
            Err(e) => {
                return refuse(AppError::Invalid {
                    field: None,
                    message: format!("invalid JSON body: {e}"),
                })
            }
        };
        if let Err(e) = crate::text::check_json(&value) {
            return refuse(e);
        }
        match serde_json::from_value(value) {
            Ok(v) => Outcome::Success(JsonBody(v)),
            Err(e) => refuse(AppError::Invalid {
                field: None,
                message: format!("invalid JSON body: {e}"),
            }),
        }
    }
}

/// A JSON body that may be left out: a request with neither a body nor a content type
/// gives `None`; anything else is taken or refused exactly as [`JsonBody`] does.
pub(crate) struct OptionalJson<T>(pub Option<T>);

#[rocket::async_trait]
impl<'r, T: serde::de::DeserializeOwned> rocket::data::FromData<'r> for OptionalJson<T> {
    type Error = AppError;

    async fn from_data(
        req: &'r rocket::Request<'_>,
        mut data: rocket::Data<'r>,
    ) -> rocket::data::Outcome<'r, Self> {
        use rocket::data::Outcome;
        if req.content_type().is_none() && data.peek(1).await.is_empty() {
            return Outcome::Success(OptionalJson(None));
        }
        match JsonBody::<T>::from_data(req, data).await {
            Outcome::Success(JsonBody(v)) => Outcome::Success(OptionalJson(Some(v))),
            Outcome::Error(e) => Outcome::Error(e),
            Outcome::Forward(f) => Outcome::Forward(f),
        }
    }
}

/// Unwraps a JSON body, or answers why it was refused (415, 413 or a 422 that says what is
/// wrong).
pub(crate) fn body<T>(b: Body<T>) -> AppResult<T> {
    b.map(|JsonBody(v)| v)
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "display_name": u.display_name,
        "department": u.department,
        "roles": u.roles,
        "status": u.status,
        "must_change_password": u.must_change_password,
        "created_at": u.created_at,
        "disabled_at": u.disabled_at,
        "last_sign_in_at": u.last_sign_in_at,
    })
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: SecretString,
    /// The second factor of an enrolled account: a current TOTP code or an unused
    /// recovery code.
    #[serde(default)]
    totp: Option<SecretString>,
}

#[post("/login", data = "<b>")]
async fn login(
    app: &State<App>,
    meta: RequestMeta,
    cookies: &CookieJar<'_>,
    b: Body<LoginBody>,
) -> AppResult<Json<Value>> {
    let b = body(b)?;
    let s = auth::login(
        &app.db,
        &app.config,
        &app.hasher,
        &app.keys,
        &meta,
        &b.username,
        b.password,
        b.totp,
    )
    .await?;
    cookies.add(crate::http::session_cookie(app, &s));
    Ok(Json(json!({
        "token": secrecy::ExposeSecret::expose_secret(&s.token),
        "expires_at": s.expires_at,
        "user": user_json(&s.user),
    })))
}

#[post("/logout")]
async fn logout(
    app: &State<App>,
    who: Authenticated,
    cookies: &CookieJar<'_>,
) -> AppResult<Json<Value>> {
    auth::logout(&app.db, &who).await?;
    cookies.remove(Cookie::from(SESSION_COOKIE));
    Ok(Json(json!({"status": "signed out"})))
}

/// Answers with a pending password change too, so a client knows it must change it; and
/// whether the person must set up two-factor sign-in first.
#[get("/me")]
fn me(who: Authenticated) -> Json<Value> {
    let mut u = user_json(who.user());
    u["totp_enrolment_required"] = json!(who.second_factor_missing());
    Json(u)
}

#[derive(Deserialize)]
struct PasswordBody {
    current_password: SecretString,
    new_password: SecretString,
}

#[post("/me/password", data = "<b>")]
async fn change_password(
    app: &State<App>,
    who: Authenticated,
    b: Body<PasswordBody>,
) -> AppResult<Json<Value>> {
    let b = body(b)?;
    users::change_own_password(
        &app.db,
        &app.config,
        &app.hasher,
        &who.actor(),
        who.user().id,
        who.session_id(),
        b.current_password,
        b.new_password,
    )
    .await?;
    Ok(Json(json!({"status": "password changed"})))
}

#[post("/users", data = "<b>")]
async fn create_user(
    app: &State<App>,
    who: Principal,
    b: Body<NewUser>,
) -> AppResult<(Status, Json<Value>)> {
    let u = users::create(app, &who, body(b)?).await?;
    Ok((Status::Created, Json(user_json(&u))))
}

#[get("/users")]
async fn list_users(app: &State<App>, who: Principal) -> AppResult<Json<Value>> {
    let list = users::list(app, &who).await?;
    Ok(Json(
        json!({"users": list.iter().map(user_json).collect::<Vec<_>>()}),
    ))
}

fn parse_time(field: &str, v: Option<&str>) -> AppResult<Option<DateTime<Utc>>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(Some(t.with_timezone(&Utc)));
            }
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| Some(d.and_utc()))
                .ok_or_else(|| {
                    AppError::invalid(field, "must be a date (YYYY-MM-DD) or RFC 3339 time")
                })
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[get("/audit?<actor>&<object>&<action>&<from>&<to>&<before>&<limit>")]
async fn list_audit(
    app: &State<App>,
    who: Principal,
    actor: Option<String>,
    object: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
) -> AppResult<Json<Value>> {
    let q = audit::Query {
        actor,
        object,
        action,
        from: parse_time("from", from.as_deref())?,
        to: parse_time("to", to.as_deref())?,
        before_pos: before,
        limit: limit.unwrap_or(100).clamp(1, 1000),
    };
    let events = audit::read(app, &who, q).await?;
    Ok(Json(json!({ "events": events })))
}
