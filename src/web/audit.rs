//! `/audit`: the audit browser of auditors. Filters (person, department, record by
//! reference or id, action, days in the person's zone), pages of 50 rows newest first with
//! the viewer's page views folded into one row per viewing session, the filtered events
//! as CSV, and the chain checked on demand.

use std::collections::BTreeMap;

use minijinja::context;
use rocket::http::{CookieJar, Header};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Responder, Route, State};
use serde::Serialize;

use super::forms::FormErrors;
use super::{me, CsrfOnly, Page};
use crate::audit::browse::{self, Browse, BrowsePage};
use crate::audit::Verification;
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::i18n::{tr, Lang};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![audit_page, audit_csv, audit_verify]
}

#[derive(Serialize)]
pub(super) struct ActionChoice {
    value: &'static str,
    label: String,
}

/// The known actions with their labels, sorted by label, and the label of each action.
pub(super) fn actions(lang: Lang) -> (Vec<ActionChoice>, BTreeMap<&'static str, String>) {
    let labels: BTreeMap<&'static str, String> = browse::ACTIONS
        .iter()
        .map(|a| (*a, tr(lang, &browse::action_key(a), &[])))
        .collect();
    let mut choices: Vec<ActionChoice> = labels
        .iter()
        .map(|(value, label)| ActionChoice {
            value,
            label: label.clone(),
        })
        .collect();
    choices.sort_by(|a, b| a.label.cmp(&b.label));
    (choices, labels)
}

/// The filter as a query string (for paging links and the CSV link), page left out.
fn query_of(q: &Browse) -> String {
    let pairs = [
        ("person", &q.person),
        ("department", &q.department),
        ("record", &q.record),
        ("action", &q.action),
        ("from", &q.from),
        ("to", &q.to),
    ];
    pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", encode(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A query-string value, percent-encoded (all but letters, digits and `-._~`).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn render(
    app: &App,
    who: &Principal,
    q: &Browse,
    page: Option<&BrowsePage>,
    errors: Option<FormErrors>,
) -> AppResult<RawHtml<String>> {
    let (choices, labels) = actions(who.ui().lang);
    app.templates.render(
        "audit.html",
        context! {
            me => me(who), csrf => who.csrf_token(), q => q, query => query_of(q),
            result => page, actions => choices, labels => labels, errors => errors,
        },
    )
}

#[get("/audit?<q..>")]
async fn audit_page(app: &State<App>, who: Principal, q: Browse) -> AppResult<Page> {
    match browse::browse(app, &who, &q, true).await {
        Ok(page) => Ok(Page::Html(render(app, &who, &q, Some(&page), None)?)),
        Err(e @ AppError::Invalid { .. }) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            Ok(Page::Status((
                e.status(),
                render(app, &who, &q, None, Some(errors))?,
            )))
        }
        Err(e) => Err(e),
    }
}

#[derive(Responder)]
#[response(content_type = "text/csv; charset=utf-8")]
struct Csv {
    body: String,
    disposition: Header<'static>,
}

#[get("/audit/export.csv?<q..>")]
async fn audit_csv(app: &State<App>, who: Principal, q: Browse) -> AppResult<Csv> {
    let body = browse::export_csv(app, &who, &q).await?;
    let name = format!("audit-{}.csv", chrono::Utc::now().format("%Y%m%d-%H%M"));
    Ok(Csv {
        body,
        disposition: Header::new(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ),
    })
}

#[post("/audit/verify", data = "<_form>")]
async fn audit_verify(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    _form: CsrfForm<CsrfOnly>,
) -> AppResult<Redirect> {
    match browse::verify_chain(app, &who).await? {
        Verification::Intact { events, pending } => crate::i18n::flash::set(
            cookies,
            "flash-audit-verified",
            &[
                ("events", &events.to_string()),
                ("pending", &pending.to_string()),
            ],
        ),
        Verification::Broken { seq, .. } => {
            crate::i18n::flash::set(cookies, "flash-audit-broken", &[("seq", &seq.to_string())])
        }
    }
    Ok(Redirect::to("/audit"))
}
