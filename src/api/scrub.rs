//! The integrity scrub's results for administrators (`scrub.read`).

use rocket::serde::json::Json;
use rocket::{get, routes, Route, State};
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::error::AppResult;
use crate::storage::scrub;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![scrub_runs]
}

/// `{latest, runs}`: the newest run in full (with its problems) and the last `limit`
/// (default 10, at most 100), newest first.
#[get("/admin/scrub?<limit>")]
async fn scrub_runs(
    app: &State<App>,
    who: Principal,
    limit: Option<i64>,
) -> AppResult<Json<Value>> {
    let runs = scrub::latest(app, &who, limit.unwrap_or(10)).await?;
    Ok(Json(json!({ "latest": runs.first(), "runs": runs })))
}
