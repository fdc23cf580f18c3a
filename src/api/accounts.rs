//! JSON routes of account administration beyond creating: changing an account, disabling
//! it (settling what the person holds), enabling it again and resetting its password
//! (`user.manage`); the access review (`user.review`).

use rocket::serde::json::Json;
use rocket::{get, patch, post, routes, Route, State};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{body, user_json, Body, OptionalJson};
use crate::auth::Principal;
use crate::error::AppResult;
use crate::users::{self, review, UserChanges, UserId};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        get_user,
        update_user,
        disable_user,
        enable_user,
        reset_password,
        access_review,
        access_review_complete
    ]
}

#[get("/users/<id>")]
async fn get_user(app: &State<App>, who: Principal, id: UserId) -> AppResult<Json<Value>> {
    Ok(Json(user_json(&users::get_for(app, &who, id).await?)))
}

#[patch("/users/<id>", data = "<b>")]
async fn update_user(
    app: &State<App>,
    who: Principal,
    id: UserId,
    b: Body<UserChanges>,
) -> AppResult<Json<Value>> {
    Ok(Json(user_json(
        &users::update(app, &who, id, body(b)?).await?,
    )))
}

#[post("/users/<id>/enable")]
async fn enable_user(app: &State<App>, who: Principal, id: UserId) -> AppResult<Json<Value>> {
    Ok(Json(user_json(&users::enable(app, &who, id).await?)))
}

/// Answers the one-time password once; it is stored only hashed.
#[post("/users/<id>/password-reset")]
async fn reset_password(app: &State<App>, who: Principal, id: UserId) -> AppResult<Json<Value>> {
    let (user, secret) = users::reset_password_for(app, &who, id).await?;
    Ok(Json(json!({
        "user": user_json(&user),
        "one_time_password": secret.expose_secret(),
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableBody {
    #[serde(default)]
    handover_note: Option<String>,
}

/// Disables the account and answers it with what was settled: the pending requests
/// cancelled, the grants revoked and the loans flagged, as counts and ids. The body
/// (`{handover_note}`) may be left out.
#[post("/users/<id>/disable", data = "<b>")]
async fn disable_user(
    app: &State<App>,
    who: Principal,
    id: UserId,
    b: Result<OptionalJson<DisableBody>, crate::error::AppError>,
) -> AppResult<Json<Value>> {
    let note = b?.0.and_then(|b| b.handover_note);
    let (user, s) = users::disable_with(app, &who, id, note.as_deref()).await?;
    let mut answer = user_json(&user);
    answer["settlement"] = json!({
        "handover_id": s.handover_id,
        "handover_note": s.note,
        "sessions_ended": s.sessions_ended,
        "requests_cancelled": s.cancelled_requests.len(),
        "grants_revoked": s.revoked_grants.len(),
        "loans_flagged": s.flagged_loans.len(),
        "cancelled_requests": s.cancelled_requests,
        "revoked_grants": s.revoked_grants,
        "flagged_loans": s.flagged_loans,
    });
    Ok(Json(answer))
}

/// The access review: every account with its roles, department, status and last sign-in,
/// `inactive` when not signed in for `days` (default 90; never counts); with
/// `inactive=true`, only those.
#[get("/access-review?<days>&<inactive>")]
async fn access_review(
    app: &State<App>,
    who: Principal,
    days: Option<&str>,
    inactive: Option<bool>,
) -> AppResult<Json<Value>> {
    let f = review::Filter::typed(days, inactive.unwrap_or(false))?;
    let r = review::review(app, &who, f).await?;
    Ok(Json(json!(r)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    inactive_days: Option<i32>,
    #[serde(default)]
    only_inactive: bool,
    #[serde(default)]
    note: Option<String>,
}

/// Marks the review for the filter complete; answers the completed review.
#[post("/access-review/complete", data = "<b>")]
async fn access_review_complete(
    app: &State<App>,
    who: Principal,
    b: Body<CompleteBody>,
) -> AppResult<Json<Value>> {
    let b = body(b)?;
    let f = review::Filter::new(b.inactive_days, b.only_inactive)?;
    let done = review::complete(app, &who, f, b.note.as_deref()).await?;
    Ok(Json(json!(done)))
}
