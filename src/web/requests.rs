//! HTML pages of requests and what they grant: "My requests" (cancel while pending, prepare
//! an approved export, open files under a view grant), one request with its decisions
//! (approve, reject, revoke), the approval queue, and the loans desk.
//!
//! Guarantees: these handlers decide nothing. Every change is one service call that
//! authorizes through the access policy and the request's workflow route; whether a form is
//! shown is presentation only. Every POST carries the session's CSRF token (`CsrfForm`).
//! Notices after a redirect are read back from the stored request, never taken as text from
//! the URL. An export password appears only in the answer to the form that generates it,
//! under `Cache-Control: no-store`, and never in a URL or a log.

use chrono::NaiveDate;
use minijinja::{context, Value};
use rocket::form::FromForm;
use rocket::response::content::RawHtml;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;
use uuid::Uuid;

use super::viewer::Guarded;
use super::{me, redirect_or_show, CsrfOnly, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::http::id;
use crate::records::files;
use crate::records::model::{FileInfo, RecordId};
use crate::requests::{self, exports, loans, Filter, Kind, RequestView};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        my_requests,
        request_page,
        cancel,
        approve,
        reject,
        revoke,
        prepare_export,
        export_download,
        approvals_page,
        grants_page,
        grant_revoke,
        loans_page,
        loan_checkout,
        loan_return,
    ]
}

/// A request as the pages show it: with its approvals so far and, for the caller's own
/// active view grant, the files to open in the viewer.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    request: &'a RequestView,
    approvals: usize,
    active: bool,
    files: Vec<FileInfo>,
}

fn approvals(r: &RequestView) -> usize {
    r.decisions
        .iter()
        .filter(|d| d.decision == "approve")
        .count()
}

fn grant_active(r: &RequestView) -> bool {
    r.grant.as_ref().is_some_and(|g| g.state == "active")
}

async fn row<'a>(app: &App, who: &Principal, r: &'a RequestView) -> AppResult<Row<'a>> {
    let active = grant_active(r);
    let files = if active && r.kind == Kind::View.as_str() && r.requester_id == who.user().id.0 {
        match files::list(app, who, RecordId(r.record_id)).await {
            Ok(f) => f,
            // The record has gone out of the person's sight since: nothing to offer.
            Err(AppError::NotFound | AppError::Forbidden) => Vec::new(),
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    Ok(Row {
        request: r,
        approvals: approvals(r),
        active,
        files,
    })
}

/// What just happened to request `done`, told from the request as stored.
async fn notice(app: &App, who: &Principal, done: Option<&str>) -> AppResult<Option<String>> {
    let Some(rid) = done.and_then(|d| d.parse::<Uuid>().ok()) else {
        return Ok(None);
    };
    let v = match requests::get(app, who, rid).await {
        Ok(v) => v,
        Err(AppError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mine = v
        .decisions
        .iter()
        .rev()
        .find(|d| d.approver == who.user().username);
    Ok(Some(match mine {
        Some(d) if d.decision == "approve" => format!(
            "You approved {} ({} request by {}): {} of {} approvals, the request is {}.",
            v.reference,
            v.kind,
            v.requester,
            approvals(&v),
            v.required_approvals,
            v.state
        ),
        Some(_) => format!(
            "You rejected {} ({} request by {}).",
            v.reference, v.kind, v.requester
        ),
        None => format!("{} ({} request) is now {}.", v.reference, v.kind, v.state),
    }))
}

// ---- My requests ------------------------------------------------------------------------

async fn render_mine(
    app: &App,
    who: &Principal,
    notice: Option<String>,
    error: Option<String>,
) -> AppResult<RawHtml<String>> {
    let list = requests::list(
        app,
        who,
        Filter {
            mine: Some(true),
            ..Default::default()
        },
    )
    .await?;
    let mut rows = Vec::with_capacity(list.requests.len());
    for r in &list.requests {
        rows.push(row(app, who, r).await?);
    }
    app.templates.render(
        "requests.html",
        context! { me => me(who), csrf => who.csrf_token(), requests => rows,
        notice => notice, error => error },
    )
}

#[get("/requests?<done>")]
async fn my_requests(
    app: &State<App>,
    who: Principal,
    done: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let notice = notice(app, &who, done).await?;
    render_mine(app, &who, notice, None).await
}

#[post("/requests/<rid>/cancel", data = "<_form>")]
async fn cancel(
    app: &State<App>,
    who: Principal,
    rid: &str,
    _form: CsrfForm<CsrfOnly>,
) -> AppResult<Page> {
    let rid = id(rid)?;
    redirect_or_show(
        requests::cancel(app, &who, rid).await,
        |v| format!("/requests?done={}", v.id),
        |msg| render_mine(app, &who, None, Some(msg)),
    )
    .await
}

#[derive(FromForm)]
pub struct ExportForm {
    encrypt: bool,
    csrf: String,
}

csrf_field!(ExportForm);

/// Prepares the download of an approved export and shows its link, and the password if
/// one was asked for: the only time it is ever shown.
#[post("/requests/<rid>/export", data = "<form>")]
async fn prepare_export(
    app: &State<App>,
    who: Principal,
    rid: &str,
    form: CsrfForm<ExportForm>,
) -> AppResult<Guarded<Page>> {
    let rid = id(rid)?;
    let opts = exports::Prepare {
        encrypt: form.encrypt,
    };
    let page = match exports::prepare(app, &who, rid, opts).await {
        Ok(prepared) => {
            let request = requests::get(app, &who, rid).await?;
            Page::Html(app.templates.render(
                "export.html",
                context! { me => me(&who), csrf => who.csrf_token(), export => prepared,
                request => request, minutes => exports::LINK_MINUTES },
            )?)
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => Page::Status((
            e.status(),
            render_mine(app, &who, None, Some(e.public_message())).await?,
        )),
        Err(e) => return Err(e),
    };
    Ok(Guarded::page(page))
}

// ---- one request ------------------------------------------------------------------------

/// Fixed notices for the request page, named in its URL after a form.
fn fixed_notice(code: &str) -> Option<&'static str> {
    match code {
        "filed" => Some("Your request has been filed."),
        "decided" => Some("Your decision has been recorded."),
        "revoked" => Some("The grant has been revoked: it no longer opens anything."),
        _ => None,
    }
}

async fn render_request(
    app: &App,
    who: &Principal,
    rid: Uuid,
    notice: Option<String>,
    error: Option<String>,
) -> AppResult<RawHtml<String>> {
    let v = requests::get(app, who, rid).await?;
    let mine = v.requester_id == who.user().id.0;
    // What the buttons offer is the service's answer (the policy's); each action decides
    // again when it is taken.
    let (can_decide, can_revoke) = (v.may.decide, v.may.revoke);
    let r = row(app, who, &v).await?;
    app.templates.render(
        "request.html",
        context! { me => me(who), csrf => who.csrf_token(), r => r, mine => mine,
        can_decide => can_decide, can_revoke => can_revoke,
        notice => notice, error => error },
    )
}

#[get("/requests/<rid>?<notice>")]
async fn request_page(
    app: &State<App>,
    who: Principal,
    rid: &str,
    notice: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let notice = notice.and_then(fixed_notice).map(str::to_string);
    render_request(app, &who, id(rid)?, notice, None).await
}

#[derive(FromForm)]
pub struct DecisionForm {
    comment: String,
    /// `request` to come back to the request's page rather than to the queue.
    back: Option<String>,
    csrf: String,
}

csrf_field!(DecisionForm);

async fn decide(
    app: &App,
    who: &Principal,
    rid: &str,
    approve: bool,
    f: DecisionForm,
) -> AppResult<Page> {
    let rid = id(rid)?;
    let to_request = f.back.as_deref() == Some("request");
    let result = requests::decide(app, who, rid, approve, &f.comment).await;
    redirect_or_show(
        result,
        |v| {
            if to_request {
                format!("/requests/{}?notice=decided", v.id)
            } else {
                format!("/approvals?done={}", v.id)
            }
        },
        |msg| async move {
            if to_request {
                render_request(app, who, rid, None, Some(msg)).await
            } else {
                render_queue(app, who, None, Some((rid, msg))).await
            }
        },
    )
    .await
}

#[post("/requests/<rid>/approve", data = "<form>")]
async fn approve(
    app: &State<App>,
    who: Principal,
    rid: &str,
    form: CsrfForm<DecisionForm>,
) -> AppResult<Page> {
    decide(app, &who, rid, true, form.0).await
}

#[post("/requests/<rid>/reject", data = "<form>")]
async fn reject(
    app: &State<App>,
    who: Principal,
    rid: &str,
    form: CsrfForm<DecisionForm>,
) -> AppResult<Page> {
    decide(app, &who, rid, false, form.0).await
}

#[derive(FromForm)]
pub struct RevokeForm {
    reason: String,
    csrf: String,
}

csrf_field!(RevokeForm);

#[post("/requests/<rid>/revoke", data = "<form>")]
async fn revoke(
    app: &State<App>,
    who: Principal,
    rid: &str,
    form: CsrfForm<RevokeForm>,
) -> AppResult<Page> {
    let rid = id(rid)?;
    let v = requests::get(app, &who, rid).await?;
    let result = match &v.grant {
        Some(g) => requests::revoke(app, &who, g.id, &form.reason).await,
        None => Err(AppError::Conflict(
            "this request has no grant to revoke".into(),
        )),
    };
    redirect_or_show(
        result,
        |_| format!("/requests/{rid}?notice=revoked"),
        |msg| render_request(app, &who, rid, None, Some(msg)),
    )
    .await
}

// ---- the approval queue -----------------------------------------------------------------

async fn render_queue(
    app: &App,
    who: &Principal,
    notice: Option<String>,
    error: Option<(Uuid, String)>,
) -> AppResult<RawHtml<String>> {
    let list = requests::list(
        app,
        who,
        Filter {
            to_approve: Some(true),
            ..Default::default()
        },
    )
    .await?;
    let mut rows = Vec::with_capacity(list.requests.len());
    for r in &list.requests {
        rows.push(row(app, who, r).await?);
    }
    let (error_id, error) = match error {
        Some((rid, msg)) => (Some(rid.to_string()), Some(msg)),
        None => (None, None),
    };
    app.templates.render(
        "approvals.html",
        context! { me => me(who), csrf => who.csrf_token(), requests => rows,
        waiting => list.waiting.unwrap_or(rows.len()),
        notice => notice, error => error, error_id => error_id },
    )
}

#[get("/approvals?<done>")]
async fn approvals_page(
    app: &State<App>,
    who: Principal,
    done: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let notice = notice(app, &who, done).await?;
    render_queue(app, &who, notice, None).await
}

// ---- active grants ----------------------------------------------------------------------

async fn render_grants(
    app: &App,
    who: &Principal,
    notice: Option<&str>,
    error: Option<(Uuid, String)>,
) -> AppResult<RawHtml<String>> {
    let grants = requests::active_grants(app, who).await?;
    let (error_for, error) = match error {
        Some((g, m)) => (Some(g), Some(m)),
        None => (None, None),
    };
    app.templates.render(
        "grants.html",
        context! { me => me(who), csrf => who.csrf_token(), grants => grants,
        notice => notice, error => error, error_for => error_for },
    )
}

#[get("/grants?<done>")]
async fn grants_page(
    app: &State<App>,
    who: Principal,
    done: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let notice = done
        .is_some_and(|d| d == "revoked")
        .then_some("The grant is revoked: it stopped working at once.");
    render_grants(app, &who, notice, None).await
}

#[post("/grants/<gid>/revoke", data = "<form>")]
async fn grant_revoke(
    app: &State<App>,
    who: Principal,
    gid: &str,
    form: CsrfForm<RevokeForm>,
) -> AppResult<Page> {
    let gid = id(gid)?;
    let result = requests::revoke(app, &who, gid, &form.reason).await;
    redirect_or_show(
        result,
        |_| "/grants?done=revoked".to_string(),
        |msg| render_grants(app, &who, None, Some((gid, msg))),
    )
    .await
}

// ---- the loans desk ---------------------------------------------------------------------

async fn render_loans(
    app: &App,
    who: &Principal,
    done: Option<Uuid>,
    error: Option<String>,
    form: Value,
) -> AppResult<RawHtml<String>> {
    let all = loans::list(app, who, false).await?;
    let ready = loans::ready(app, who).await?;
    let notice = done
        .and_then(|rid| all.iter().find(|l| l.request_id == rid))
        .map(|l| match l.returned_at {
            Some(_) => format!(
                "{} taken back from {}; its condition is noted.",
                l.reference, l.borrower
            ),
            None => format!(
                "{} lent to {}, due back on {}.",
                l.reference, l.borrower, l.due_date
            ),
        });
    let (open, mut returned): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|l| l.returned_at.is_none());
    returned.truncate(50);
    let overdue = open.iter().filter(|l| l.overdue).count();
    app.templates.render(
        "loans.html",
        context! { me => me(who), csrf => who.csrf_token(), open => open, returned => returned, ready => ready,
        overdue => overdue, notice => notice, error => error, form => form,
        today => chrono::Utc::now().date_naive().to_string() },
    )
}

#[get("/loans?<done>")]
async fn loans_page(
    app: &State<App>,
    who: Principal,
    done: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let done = done.and_then(|d| d.parse().ok());
    render_loans(
        app,
        &who,
        done,
        None,
        Value::from_serialize(serde_json::json!({})),
    )
    .await
}

#[derive(FromForm, Serialize)]
pub struct CheckoutForm {
    request: String,
    due_date: String,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(CheckoutForm);

#[post("/loans", data = "<form>")]
async fn loan_checkout(
    app: &State<App>,
    who: Principal,
    form: CsrfForm<CheckoutForm>,
) -> AppResult<Page> {
    let f = form.0;
    let result = async {
        let rid: Uuid = f.request.trim().parse().map_err(|_| {
            AppError::invalid(
                "request",
                "enter the request number from the borrower's request page",
            )
        })?;
        let due_date = NaiveDate::parse_from_str(f.due_date.trim(), "%Y-%m-%d")
            .map_err(|_| AppError::invalid("due_date", "enter a date as YYYY-MM-DD"))?;
        loans::checkout(app, &who, rid, loans::Checkout { due_date }).await
    }
    .await;
    redirect_or_show(
        result,
        |l| format!("/loans?done={}", l.request_id),
        |msg| render_loans(app, &who, None, Some(msg), Value::from_serialize(&f)),
    )
    .await
}

#[derive(FromForm)]
pub struct ReturnForm {
    condition: String,
    csrf: String,
}

csrf_field!(ReturnForm);

#[post("/loans/<rid>/return", data = "<form>")]
async fn loan_return(
    app: &State<App>,
    who: Principal,
    rid: &str,
    form: CsrfForm<ReturnForm>,
) -> AppResult<Page> {
    let rid = id(rid)?;
    let back = loans::Return {
        condition: form.0.condition,
    };
    redirect_or_show(
        loans::give_back(app, &who, rid, back).await,
        |l| format!("/loans?done={}", l.request_id),
        |msg| {
            render_loans(
                app,
                &who,
                None,
                Some(msg),
                Value::from_serialize(serde_json::json!({})),
            )
        },
    )
    .await
}

/// The export's one download, for people: the same zip as the JSON route, but a refusal
/// (already downloaded, expired) comes back as a page rather than a JSON body the browser
/// would save as the "zip".
#[get("/exports/<rid>/download")]
async fn export_download(
    app: &State<App>,
    who: Principal,
    rid: &str,
) -> AppResult<crate::http::ZipDownload> {
    Ok(crate::http::ZipDownload(
        exports::download(app, &who, id(rid)?).await?,
    ))
}
