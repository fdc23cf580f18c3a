//! HTML pages of requests and what they grant: "My requests" (cancel while pending, prepare
//! an approved export, open files under a view grant), one request with its decisions
//! (approve, reject, revoke), the approval queue, and the loans desk.
//!
//! Guarantees: these handlers decide nothing. Every change is one service call that
//! authorizes through the access policy and the request's workflow route; whether a form is
//! shown is presentation only. Every POST carries the session's CSRF token (`CsrfForm`).
//! Confirmations never take text from the URL: after a successful form a confirmation
//! (`flash-req-…`, with the reference and names read from the stored request) is set and
//! the browser redirected; a refused form comes back (422/409) with its errors beside the
//! field, the values typed kept and the focus on the first error. An export password
//! appears only in the answer to the form that generates it, under
//! `Cache-Control: no-store`, and never in a URL or a log.

use chrono::NaiveDate;
use minijinja::{context, Value};
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;
use uuid::Uuid;

use super::forms::FormErrors;
use super::viewer::Guarded;
use super::{me, CsrfOnly, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::http::{id, SheetDownload};
use crate::i18n::{flash, tr, Arg, Lang};
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
        loans_register_csv,
        loans_register_xlsx,
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

/// The word for a request kind (`kind-view` → "view" / "调阅").
fn kind_word(lang: Lang, kind: &str) -> String {
    tr(lang, &format!("kind-{kind}"), &[])
}

/// Turns a refused form into the errors shown beside it: a field error is put under
/// `name` (the input's id within the page), anything else is the form's general error.
fn form_errors(lang: Lang, e: &AppError, name: &str) -> FormErrors {
    FormErrors::from_error(lang, e, |_| name.to_string())
}

/// The usual end of a form post on these pages: on success a confirmation (flash) and a
/// redirect; on invalid input or a conflict the page again, with the errors at the form
/// (status 422/409); any other error propagates.
async fn done_or_show<T, F, Fut>(
    result: AppResult<T>,
    cookies: &CookieJar<'_>,
    on_success: impl FnOnce(&T) -> (String, &'static str, Vec<(&'static str, String)>),
    show: F,
) -> AppResult<Page>
where
    F: FnOnce(AppError) -> Fut,
    Fut: std::future::Future<Output = AppResult<RawHtml<String>>>,
{
    match result {
        Ok(v) => {
            let (to, key, args) = on_success(&v);
            let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
            flash::set(cookies, key, &args);
            Ok(Page::Redirect(Box::new(Redirect::to(to))))
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => {
            let status = e.status();
            Ok(Page::Status((status, show(e).await?)))
        }
        Err(e) => Err(e),
    }
}

// ---- My requests ------------------------------------------------------------------------

async fn render_mine(
    app: &App,
    who: &Principal,
    failed: Option<Uuid>,
    errors: Option<FormErrors>,
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
    // An error about a request no longer listed is shown above the table.
    let failed = failed.filter(|f| rows.iter().any(|r| r.request.id == *f));
    app.templates.render(
        "requests.html",
        context! { me => me(who), csrf => who.csrf_token(), requests => rows,
        errors => errors, failed => failed.map(|f| f.to_string()) },
    )
}

#[get("/requests")]
async fn my_requests(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_mine(app, &who, None, None).await
}

#[post("/requests/<rid>/cancel", data = "<_form>")]
async fn cancel(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    rid: &str,
    _form: CsrfForm<CsrfOnly>,
) -> AppResult<Page> {
    let rid = id(rid)?;
    let lang = who.ui().lang;
    done_or_show(
        requests::cancel(app, &who, rid).await,
        cookies,
        |v| {
            (
                "/requests".to_string(),
                "flash-req-cancelled",
                vec![
                    ("kind", kind_word(lang, &v.kind)),
                    ("reference", v.reference.clone()),
                ],
            )
        },
        |e| render_mine(app, &who, Some(rid), Some(form_errors(lang, &e, "cancel"))),
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
    let lang = who.ui().lang;
    let opts = exports::Prepare {
        encrypt: form.encrypt,
    };
    let page = match exports::prepare(app, &who, rid, opts).await {
        Ok(prepared) => {
            let request = requests::get(app, &who, rid).await?;
            // This answer is the page itself (the password cannot go through a redirect),
            // so the confirmation is part of it rather than a flash.
            let notice = tr(
                lang,
                "flash-req-export-created",
                &[("reference", Arg::from(&request.reference))],
            );
            Page::Html(app.templates.render(
                "export.html",
                context! { me => me(&who), csrf => who.csrf_token(), export => prepared,
                request => request, minutes => exports::LINK_MINUTES, notice => notice },
            )?)
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => Page::Status((
            e.status(),
            render_mine(app, &who, Some(rid), Some(form_errors(lang, &e, "export"))).await?,
        )),
        Err(e) => return Err(e),
    };
    Ok(Guarded::page(page))
}

// ---- one request ------------------------------------------------------------------------

/// Fixed notices for the request page, named in its URL after a form of another page.
fn fixed_notice(code: &str) -> Option<&'static str> {
    match code {
        "filed" => Some("req-notice-filed"),
        _ => None,
    }
}

/// A refused form of the request page: which section, the errors, and what was typed.
struct Refused {
    section: &'static str,
    failed: Uuid,
    errors: FormErrors,
    typed: Value,
}

async fn render_request(
    app: &App,
    who: &Principal,
    rid: Uuid,
    notice: Option<String>,
    refused: Option<Refused>,
) -> AppResult<RawHtml<String>> {
    let v = requests::get(app, who, rid).await?;
    let mine = v.requester_id == who.user().id.0;
    // What the buttons offer is the service's answer (the policy's); each action decides
    // again when it is taken.
    let (can_decide, can_revoke) = (v.may.decide, v.may.revoke);
    let r = row(app, who, &v).await?;
    let (section, failed, errors, typed) = match refused {
        Some(f) => (
            Some(f.section),
            Some(f.failed.to_string()),
            Some(f.errors),
            f.typed,
        ),
        None => (None, None, None, Value::from(())),
    };
    app.templates.render(
        "request.html",
        context! { me => me(who), csrf => who.csrf_token(), r => r, mine => mine,
        can_decide => can_decide, can_revoke => can_revoke, notice => notice,
        section => section, failed => failed, errors => errors, typed => typed },
    )
}

#[get("/requests/<rid>?<notice>")]
async fn request_page(
    app: &State<App>,
    who: Principal,
    rid: &str,
    notice: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let lang = who.ui().lang;
    let notice = notice.and_then(fixed_notice).map(|key| tr(lang, key, &[]));
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
    cookies: &CookieJar<'_>,
    rid: &str,
    approve: bool,
    f: DecisionForm,
) -> AppResult<Page> {
    let rid = id(rid)?;
    let lang = who.ui().lang;
    let to_request = f.back.as_deref() == Some("request");
    let result = requests::decide(app, who, rid, approve, &f.comment).await;
    let decision = if approve { "approve" } else { "reject" };
    done_or_show(
        result,
        cookies,
        |v| {
            let to = if to_request {
                format!("/requests/{}", v.id)
            } else {
                "/approvals".to_string()
            };
            let mut args = vec![
                ("kind", kind_word(lang, &v.kind)),
                ("reference", v.reference.clone()),
                ("requester", v.requester.clone()),
            ];
            let key = if approve {
                args.push(("done", approvals(v).to_string()));
                args.push(("needed", v.required_approvals.to_string()));
                args.push(("state", tr(lang, &format!("state-{}", v.state), &[])));
                "flash-req-approved"
            } else {
                "flash-req-rejected"
            };
            (to, key, args)
        },
        |e| async move {
            let errors = form_errors(lang, &e, &format!("{decision}-{rid}"));
            let typed = Value::from_serialize(
                serde_json::json!({"decision": decision, "comment": f.comment}),
            );
            if to_request {
                let refused = Refused {
                    section: "decide",
                    failed: rid,
                    errors,
                    typed,
                };
                render_request(app, who, rid, None, Some(refused)).await
            } else {
                render_queue(app, who, Some((rid, errors, typed))).await
            }
        },
    )
    .await
}

#[post("/requests/<rid>/approve", data = "<form>")]
async fn approve(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    rid: &str,
    form: CsrfForm<DecisionForm>,
) -> AppResult<Page> {
    decide(app, &who, cookies, rid, true, form.0).await
}

#[post("/requests/<rid>/reject", data = "<form>")]
async fn reject(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    rid: &str,
    form: CsrfForm<DecisionForm>,
) -> AppResult<Page> {
    decide(app, &who, cookies, rid, false, form.0).await
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
    cookies: &CookieJar<'_>,
    rid: &str,
    form: CsrfForm<RevokeForm>,
) -> AppResult<Page> {
    let rid = id(rid)?;
    let lang = who.ui().lang;
    let v = requests::get(app, &who, rid).await?;
    let gid = v.grant.as_ref().map(|g| g.id);
    let result = match gid {
        Some(g) => requests::revoke(app, &who, g, &form.reason).await,
        None => Err(AppError::Conflict(
            "this request has no grant to revoke".into(),
        )),
    };
    let reason = form.0.reason;
    done_or_show(
        result,
        cookies,
        |_| {
            (
                format!("/requests/{rid}"),
                "flash-req-revoked",
                vec![
                    ("kind", kind_word(lang, &v.kind)),
                    ("reference", v.reference.clone()),
                    ("holder", v.requester.clone()),
                ],
            )
        },
        |e| async move {
            let failed = gid.unwrap_or(rid);
            let refused = Refused {
                section: "revoke",
                failed,
                errors: form_errors(lang, &e, &format!("revoke-{failed}")),
                typed: Value::from(reason),
            };
            render_request(app, &who, rid, None, Some(refused)).await
        },
    )
    .await
}

// ---- the approval queue -----------------------------------------------------------------

async fn render_queue(
    app: &App,
    who: &Principal,
    refused: Option<(Uuid, FormErrors, Value)>,
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
    let (failed, errors, typed) = match refused {
        Some((rid, errors, typed)) => (Some(rid.to_string()), Some(errors), typed),
        None => (None, None, Value::from(())),
    };
    app.templates.render(
        "approvals.html",
        context! { me => me(who), csrf => who.csrf_token(), requests => rows,
        waiting => list.waiting.unwrap_or(rows.len()),
        errors => errors, failed => failed, typed => typed },
    )
}

#[get("/approvals")]
async fn approvals_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_queue(app, &who, None).await
}

// ---- active grants ----------------------------------------------------------------------

async fn render_grants(
    app: &App,
    who: &Principal,
    refused: Option<(Uuid, FormErrors, String)>,
) -> AppResult<RawHtml<String>> {
    let grants = requests::active_grants(app, who).await?;
    let (failed, errors, typed) = match refused {
        Some((g, e, t)) => (Some(g.to_string()), Some(e), Some(t)),
        None => (None, None, None),
    };
    app.templates.render(
        "grants.html",
        context! { me => me(who), csrf => who.csrf_token(), grants => grants,
        errors => errors, failed => failed, typed => typed },
    )
}

#[get("/grants")]
async fn grants_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_grants(app, &who, None).await
}

#[post("/grants/<gid>/revoke", data = "<form>")]
async fn grant_revoke(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    gid: &str,
    form: CsrfForm<RevokeForm>,
) -> AppResult<Page> {
    let gid = id(gid)?;
    let lang = who.ui().lang;
    // What the confirmation names, read before the grant ends.
    let before = requests::active_grants(app, &who)
        .await?
        .into_iter()
        .find(|g| g.id == gid);
    let reason = form.0.reason;
    let result = requests::revoke(app, &who, gid, &reason).await;
    done_or_show(
        result,
        cookies,
        |g| {
            let (reference, holder) = before
                .as_ref()
                .map(|b| (b.reference.clone(), b.grantee.clone()))
                .unwrap_or_default();
            (
                "/grants".to_string(),
                "flash-req-revoked",
                vec![
                    ("kind", kind_word(lang, &g.kind)),
                    ("reference", reference),
                    ("holder", holder),
                ],
            )
        },
        |e| async move {
            let errors = form_errors(lang, &e, &format!("revoke-{gid}"));
            render_grants(app, &who, Some((gid, errors, reason))).await
        },
    )
    .await
}

// ---- the loans desk ---------------------------------------------------------------------

/// A refused form of the loans desk: `section` is `row` (a ready request's form), `number`
/// (hand out by request number), `return` or `general`; `failed` the request concerned.
struct LoanRefusal {
    section: &'static str,
    failed: Option<Uuid>,
    errors: FormErrors,
    form: Value,
}

async fn render_loans(
    app: &App,
    who: &Principal,
    refused: Option<LoanRefusal>,
) -> AppResult<RawHtml<String>> {
    let all = loans::list(app, who, false).await?;
    let ready = loans::ready(app, who).await?;
    let (open, mut returned): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|l| l.returned_at.is_none());
    returned.truncate(50);
    let overdue = open.iter().filter(|l| l.overdue).count();
    // The earliest due date the desk accepts: today in the archive's zone.
    let today = loans::archive_today(app).to_string();
    let (section, failed, errors, form) = match refused {
        Some(r) => (
            Some(r.section),
            r.failed.map(|f| f.to_string()),
            Some(r.errors),
            r.form,
        ),
        None => (
            None,
            None,
            None,
            Value::from_serialize(serde_json::json!({})),
        ),
    };
    app.templates.render(
        "loans.html",
        context! { me => me(who), csrf => who.csrf_token(), open => open, returned => returned,
        ready => ready, overdue => overdue, today => today,
        section => section, failed => failed, errors => errors, form => form },
    )
}

#[get("/loans")]
async fn loans_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_loans(app, &who, None).await
}

#[derive(FromForm, Serialize)]
pub struct CheckoutForm {
    request: String,
    due_date: String,
    /// Set by the forms of the "ready to hand out" table.
    #[serde(skip)]
    row: Option<String>,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(CheckoutForm);

#[post("/loans", data = "<form>")]
async fn loan_checkout(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    form: CsrfForm<CheckoutForm>,
) -> AppResult<Page> {
    let f = form.0;
    let lang = who.ui().lang;
    let rid: Option<Uuid> = f.request.trim().parse().ok();
    let result = async {
        let rid = rid.ok_or_else(|| {
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
    let in_row = f.row.is_some() && rid.is_some();
    done_or_show(
        result,
        cookies,
        |l| {
            (
                "/loans".to_string(),
                "flash-req-lent",
                vec![
                    ("reference", l.reference.clone()),
                    ("borrower", l.borrower.clone()),
                    ("due", crate::i18n::format_naive_date(lang, l.due_date)),
                ],
            )
        },
        |e| {
            let (section, errors) = match (in_row, rid) {
                (true, Some(r)) => ("row", form_errors(lang, &e, &format!("due-{r}"))),
                _ => (
                    "number",
                    FormErrors::from_error(lang, &e, |field| field.to_string()),
                ),
            };
            let refusal = LoanRefusal {
                section,
                failed: rid,
                errors,
                form: Value::from_serialize(&f),
            };
            render_loans(app, &who, Some(refusal))
        },
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
    cookies: &CookieJar<'_>,
    rid: &str,
    form: CsrfForm<ReturnForm>,
) -> AppResult<Page> {
    let rid = id(rid)?;
    let lang = who.ui().lang;
    let condition = form.0.condition;
    let back = loans::Return {
        condition: condition.clone(),
    };
    done_or_show(
        loans::give_back(app, &who, rid, back).await,
        cookies,
        |l| {
            (
                "/loans".to_string(),
                "flash-req-returned",
                vec![
                    ("reference", l.reference.clone()),
                    ("borrower", l.borrower.clone()),
                ],
            )
        },
        |e| async move {
            let refusal = LoanRefusal {
                section: "return",
                failed: Some(rid),
                errors: form_errors(lang, &e, &format!("condition-{rid}")),
                form: Value::from_serialize(serde_json::json!({ "condition": condition })),
            };
            render_loans(app, &who, Some(refusal)).await
        },
    )
    .await
}

/// The loans register for people: headers in their language, times in their zone.
#[get("/loans/register.csv")]
async fn loans_register_csv(app: &State<App>, who: Principal) -> AppResult<SheetDownload> {
    let loans = loans::register(app, &who, "csv").await?;
    Ok(SheetDownload::csv(
        &loans::register_sheet(&loans, Some(who.ui())),
        "loans-register",
    ))
}

#[get("/loans/register.xlsx")]
async fn loans_register_xlsx(app: &State<App>, who: Principal) -> AppResult<SheetDownload> {
    let loans = loans::register(app, &who, "xlsx").await?;
    SheetDownload::xlsx(
        &loans::register_sheet(&loans, Some(who.ui())),
        "loans-register",
    )
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
