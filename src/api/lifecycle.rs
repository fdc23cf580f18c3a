//! JSON routes of retention, legal hold and destruction.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{delete, get, post, routes, Route, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, Body};
use crate::auth::Principal;
use crate::error::AppResult;
use crate::http::id;
use crate::lifecycle::destruction::{self, Destroy, Filter};
use crate::lifecycle::{holds, retention};
use crate::records::model::{CategoryId, RecordId};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        destroy_record,
        hold_record,
        release_record,
        hold_category,
        release_category,
        record_lifecycle,
        list_destructions,
        get_destruction,
        retention_due,
        set_retention_from,
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

#[post("/records/<rid>/destroy", data = "<b>")]
async fn destroy_record(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
    b: Body<Destroy>,
) -> AppResult<Json<Value>> {
    let c = destruction::destroy(app, &who, rid, body(b)?).await?;
    Ok(Json(destruction::to_json(&c)))
}

#[post("/records/<rid>/hold", data = "<b>")]
async fn hold_record(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
    b: Body<ReasonBody>,
) -> AppResult<(Status, Json<holds::Hold>)> {
    let h = holds::hold_record(app, &who, rid, &body(b)?.reason).await?;
    Ok((Status::Created, Json(h)))
}

#[delete("/records/<rid>/hold")]
async fn release_record(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
) -> AppResult<Json<holds::Hold>> {
    Ok(Json(holds::release_record(app, &who, rid).await?))
}

#[post("/categories/<cid>/hold", data = "<b>")]
async fn hold_category(
    app: &State<App>,
    who: Principal,
    cid: CategoryId,
    b: Body<ReasonBody>,
) -> AppResult<(Status, Json<holds::Hold>)> {
    let h = holds::hold_category(app, &who, cid, &body(b)?.reason).await?;
    Ok((Status::Created, Json(h)))
}

#[delete("/categories/<cid>/hold")]
async fn release_category(
    app: &State<App>,
    who: Principal,
    cid: CategoryId,
) -> AppResult<Json<holds::Hold>> {
    Ok(Json(holds::release_category(app, &who, cid).await?))
}

/// A record's holds in force, retention and destruction (if destroyed).
#[get("/records/<rid>/lifecycle")]
async fn record_lifecycle(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
) -> AppResult<Json<Value>> {
    let l = crate::lifecycle::of_record(app, &who, rid).await?;
    Ok(Json(json!({
        "holds": l.holds,
        "retention": l.retention,
        "destruction": l.destruction.as_ref().map(destruction::to_json),
    })))
}

#[get("/destructions?<filter..>")]
async fn list_destructions(
    app: &State<App>,
    who: Principal,
    filter: Filter,
) -> AppResult<Json<Value>> {
    let list = destruction::register(app, &who, &filter, "json").await?;
    Ok(Json(
        json!({"destructions": list.iter().map(destruction::to_json).collect::<Vec<_>>()}),
    ))
}

#[get("/destructions/<did>")]
async fn get_destruction(app: &State<App>, who: Principal, did: &str) -> AppResult<Json<Value>> {
    let c = destruction::certificate(app, &who, id(did)?, "json").await?;
    Ok(Json(destruction::to_json(&c)))
}

#[get("/retention?<due_before>&<within_days>")]
async fn retention_due(
    app: &State<App>,
    who: Principal,
    due_before: Option<String>,
    within_days: Option<&str>,
) -> AppResult<Json<Value>> {
    let before = crate::lifecycle::due_limit(due_before.as_deref(), within_days)?;
    let list = retention::due(app, &who, before).await?;
    Ok(Json(json!({"records": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFromBody {
    /// The name of a date field of the category; null or empty: from filing.
    retention_from: Option<String>,
}

/// Sets the date field a category's retention counts from.
#[post("/categories/<cid>/retention", data = "<b>")]
async fn set_retention_from(
    app: &State<App>,
    who: Principal,
    cid: CategoryId,
    b: Body<RetentionFromBody>,
) -> AppResult<Json<Value>> {
    let from =
        crate::lifecycle::set_retention_from(app, &who, cid, body(b)?.retention_from).await?;
    Ok(Json(json!({"category_id": cid, "retention_from": from})))
}
