//! JSON routes of account administration beyond creating and disabling: changing an
//! account, enabling it again and resetting its password (`user.manage`).

use rocket::serde::json::Json;
use rocket::{get, patch, post, routes, Route, State};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{body, user_json, Body};
use crate::auth::Principal;
use crate::error::AppResult;
use crate::users::{self, UserChanges, UserId};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![get_user, update_user, enable_user, reset_password]
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
