//! JSON routes of requests, approvals and grants.

use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{get, post, routes, Route, State};
use serde::Deserialize;

use super::{body, Body};
use crate::auth::Principal;
use crate::error::AppResult;
use crate::http::{id, SheetDownload, ZipDownload};
use crate::requests::{
    self, exports, loans, Filter, GrantView, NewRequest, RequestList, RequestView,
};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        create,
        list,
        get,
        approve,
        reject,
        cancel,
        grants,
        revoke,
        checkout,
        give_back,
        list_loans,
        loans_csv,
        loans_xlsx,
        prepare_export,
        download_export
    ]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    #[serde(default)]
    comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

#[post("/requests", data = "<b>")]
async fn create(
    app: &State<App>,
    who: Principal,
    b: Body<NewRequest>,
) -> AppResult<(Status, Json<RequestView>)> {
    Ok((
        Status::Created,
        Json(requests::create(app, &who, body(b)?).await?),
    ))
}

#[get("/requests?<filter..>")]
async fn list(app: &State<App>, who: Principal, filter: Filter) -> AppResult<Json<RequestList>> {
    Ok(Json(requests::list(app, &who, filter).await?))
}

#[get("/requests/<rid>")]
async fn get(app: &State<App>, who: Principal, rid: &str) -> AppResult<Json<RequestView>> {
    Ok(Json(requests::get(app, &who, id(rid)?).await?))
}

#[post("/requests/<rid>/approve", data = "<b>")]
async fn approve(
    app: &State<App>,
    who: Principal,
    rid: &str,
    b: Body<CommentBody>,
) -> AppResult<Json<RequestView>> {
    let b = body(b)?;
    Ok(Json(
        requests::decide(app, &who, id(rid)?, true, &b.comment).await?,
    ))
}

#[post("/requests/<rid>/reject", data = "<b>")]
async fn reject(
    app: &State<App>,
    who: Principal,
    rid: &str,
    b: Body<CommentBody>,
) -> AppResult<Json<RequestView>> {
    let b = body(b)?;
    Ok(Json(
        requests::decide(app, &who, id(rid)?, false, &b.comment).await?,
    ))
}

#[post("/requests/<rid>/cancel")]
async fn cancel(app: &State<App>, who: Principal, rid: &str) -> AppResult<Json<RequestView>> {
    Ok(Json(requests::cancel(app, &who, id(rid)?).await?))
}

#[get("/grants")]
async fn grants(app: &State<App>, who: Principal) -> AppResult<Json<Vec<requests::ActiveGrant>>> {
    Ok(Json(requests::active_grants(app, &who).await?))
}

#[post("/grants/<gid>/revoke", data = "<b>")]
async fn revoke(
    app: &State<App>,
    who: Principal,
    gid: &str,
    b: Body<ReasonBody>,
) -> AppResult<Json<GrantView>> {
    let b = body(b)?;
    Ok(Json(
        requests::revoke(app, &who, id(gid)?, &b.reason).await?,
    ))
}

#[post("/loans/<rid>/checkout", data = "<b>")]
async fn checkout(
    app: &State<App>,
    who: Principal,
    rid: &str,
    b: Body<loans::Checkout>,
) -> AppResult<(Status, Json<loans::Loan>)> {
    Ok((
        Status::Created,
        Json(loans::checkout(app, &who, id(rid)?, body(b)?).await?),
    ))
}

#[post("/loans/<rid>/return", data = "<b>")]
async fn give_back(
    app: &State<App>,
    who: Principal,
    rid: &str,
    b: Body<loans::Return>,
) -> AppResult<Json<loans::Loan>> {
    Ok(Json(loans::give_back(app, &who, id(rid)?, body(b)?).await?))
}

#[get("/loans?<overdue>")]
async fn list_loans(
    app: &State<App>,
    who: Principal,
    overdue: Option<bool>,
) -> AppResult<Json<Vec<loans::Loan>>> {
    Ok(Json(
        loans::list(app, &who, overdue.unwrap_or(false)).await?,
    ))
}

/// The loans register for programs: machine column names, RFC 3339 times; CSV (UTF-8
/// with a byte-order mark) or `.xlsx`.
#[get("/loans/register.csv")]
async fn loans_csv(app: &State<App>, who: Principal) -> AppResult<SheetDownload> {
    let loans = loans::register(app, &who, "csv").await?;
    Ok(SheetDownload::csv(
        &loans::register_sheet(&loans, None),
        "loans-register",
    ))
}

#[get("/loans/register.xlsx")]
async fn loans_xlsx(app: &State<App>, who: Principal) -> AppResult<SheetDownload> {
    let loans = loans::register(app, &who, "xlsx").await?;
    SheetDownload::xlsx(&loans::register_sheet(&loans, None), "loans-register")
}

#[post("/exports/<rid>", data = "<b>")]
async fn prepare_export(
    app: &State<App>,
    who: Principal,
    rid: &str,
    b: Body<exports::Prepare>,
) -> AppResult<(Status, Json<exports::Prepared>)> {
    Ok((
        Status::Created,
        Json(exports::prepare(app, &who, id(rid)?, body(b)?).await?),
    ))
}

#[get("/exports/<rid>/download")]
async fn download_export(app: &State<App>, who: Principal, rid: &str) -> AppResult<ZipDownload> {
    Ok(ZipDownload(exports::download(app, &who, id(rid)?).await?))
}
