//! JSON routes of two-factor sign-in: a person's own enrolment (open to a signed-in person
//! whose role still has to enrol, so they take `Authenticated`) and an administrator's
//! reset of someone else's (`user.manage`).

use rocket::serde::json::Json;
use rocket::{delete, post, routes, Route, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, user_json, Body};
use crate::auth::{second_factor, Authenticated, Principal};
use crate::error::AppResult;
use crate::users::UserId;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![enrol, confirm, reset]
}

/// Starts (or restarts, while unconfirmed) enrolment: the secret and its `otpauth://` URI,
/// shown this once.
#[post("/me/totp")]
async fn enrol(app: &State<App>, who: Authenticated) -> AppResult<Json<Value>> {
    let e = second_factor::begin(app, &who).await?;
    Ok(Json(json!({
        "secret": e.secret.as_str(),
        "otpauth_uri": e.otpauth_uri.as_str(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    code: String,
}

/// Confirms enrolment with a current code; answers the ten recovery codes, this once.
#[post("/me/totp/confirm", data = "<b>")]
async fn confirm(
    app: &State<App>,
    who: Authenticated,
    b: Body<ConfirmBody>,
) -> AppResult<Json<Value>> {
    let b = body(b)?;
    let codes = second_factor::confirm(app, &who, &b.code).await?;
    Ok(Json(json!({
        "recovery_codes": codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    })))
}

/// An administrator turns off someone's second factor (they enrol again if their role
/// requires it); their sessions end.
#[delete("/users/<id>/totp")]
async fn reset(app: &State<App>, who: Principal, id: UserId) -> AppResult<Json<Value>> {
    let u = second_factor::reset(app, &who, id).await?;
    let mut out = user_json(&u);
    out["totp_enrolled"] = json!(false);
    Ok(Json(out))
}
