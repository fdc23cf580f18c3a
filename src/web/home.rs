//! `/`: the home page, one section per role listing the work waiting: the supervisor's
//! approval queue, the archivist's loans due and files to hand out, the employee's own
//! requests and grants in force, the auditor's recent events and chain status, the
//! administrator's accounts and last scrub. Every section comes from the services, which
//! ask the policy; a section the policy refuses is left out rather than failing the page.

use chrono::Utc;
use minijinja::context;
use rocket::response::content::RawHtml;
use rocket::{get, routes, Route, State};
use serde::Serialize;
use uuid::Uuid;

use super::me;
use crate::audit::browse;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::records::files;
use crate::records::model::RecordId;
use crate::requests::{self, loans, Filter, Kind, RequestView};
use crate::storage::scrub;
use crate::users::{self, Role};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![home]
}

/// Loans due within this many days are listed with the overdue ones.
const DUE_SOON_DAYS: i64 = 7;
/// Rows per section.
const SECTION_ROWS: usize = 20;

/// A section's content, or none when the policy refuses it to this person.
fn section<T>(r: AppResult<T>) -> AppResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(AppError::Forbidden | AppError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A request waiting for the supervisor, with how long it has waited.
#[derive(Serialize)]
struct Waiting<'a> {
    r: &'a RequestView,
    age_seconds: i64,
}

/// One of the employee's grants in force, with the files to open when it is a view grant.
#[derive(Serialize)]
struct Held<'a> {
    r: &'a RequestView,
    files: Vec<(Uuid, String)>,
}

#[get("/")]
async fn home(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    let now = Utc::now();
    let today = now.with_timezone(&who.ui().tz).date_naive();

    let queue = if who.has_role(Role::Supervisor) {
        section(
            requests::list(
                app,
                &who,
                Filter {
                    to_approve: Some(true),
                    ..Default::default()
                },
            )
            .await,
        )?
    } else {
        None
    };
    let waiting: Option<Vec<Waiting<'_>>> = queue.as_ref().map(|q| {
        q.requests
            .iter()
            .take(SECTION_ROWS)
            .map(|r| Waiting {
                r,
                age_seconds: (now - r.created_at).num_seconds().max(0),
            })
            .collect()
    });

    let (due, ready) = if who.has_role(Role::Archivist) {
        let due = section(loans::list(app, &who, false).await)?.map(|list| {
            let soon = today + chrono::Duration::days(DUE_SOON_DAYS);
            let mut out: Vec<loans::Loan> = list
                .into_iter()
                .filter(|l| {
                    l.returned_at.is_none() && (l.overdue || l.holder_left || l.due_date <= soon)
                })
                .collect();
            out.sort_by_key(|l| l.due_date);
            out
        });
        (due, section(loans::ready(app, &who).await)?)
    } else {
        (None, None)
    };

    let mine = if who.has_role(Role::Employee) {
        section(requests::list(app, &who, Filter::default()).await)?
    } else {
        None
    };
    let own: Option<Vec<&RequestView>> = mine.as_ref().map(|m| {
        m.requests
            .iter()
            .filter(|r| r.state == "pending" || r.state == "approved")
            .take(SECTION_ROWS)
            .collect()
    });
    let mut held: Option<Vec<Held<'_>>> = None;
    if let Some(m) = &mine {
        let mut out = Vec::new();
        for r in m
            .requests
            .iter()
            .filter(|r| r.grant.as_ref().is_some_and(|g| g.state == "active"))
        {
            let files = if r.kind == Kind::View.as_str() {
                match files::list(app, &who, RecordId(r.record_id)).await {
                    Ok(f) => f.into_iter().map(|f| (f.id.0, f.original_name)).collect(),
                    // The record has gone out of the person's sight since.
                    Err(AppError::NotFound | AppError::Forbidden) => Vec::new(),
                    Err(e) => return Err(e),
                }
            } else {
                Vec::new()
            };
            out.push(Held { r, files });
        }
        held = Some(out);
    }

    let audit = if who.has_role(Role::Auditor) {
        section(browse::overview(app, &who, 10).await)?
    } else {
        None
    };

    let (accounts, last_scrub) = if who.has_role(Role::Admin) {
        let accounts = section(users::list(app, &who).await)?.map(|list| {
            let active = list.iter().filter(|u| u.is_active()).count();
            (list.len(), active)
        });
        let runs = section(scrub::latest(app, &who, 1).await)?;
        (accounts, runs.and_then(|r| r.into_iter().next()))
    } else {
        (None, None)
    };

    app.templates.render(
        "home.html",
        context! {
            me => me(&who), csrf => who.csrf_token(),
            waiting => waiting, waiting_total => queue.as_ref().map(|q| q.requests.len()),
            due => due, ready => ready,
            own => own, held => held,
            audit => audit, labels => super::audit::actions(who.ui().lang).1,
            accounts => accounts.map(|(total, active)| context! { total => total, active => active }),
            is_admin => who.has_role(Role::Admin),
            last_scrub => last_scrub,
        },
    )
}
