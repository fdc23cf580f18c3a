//! `/reviews`: proposals in categories under review, for the people who review them (and
//! each proposer's own), with approve and reject.

use minijinja::context;
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;

use super::{me, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::http::id;
use crate::i18n::flash;
use crate::records::review::{self, Decision};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![reviews_page, review_approve, review_reject, review_withdraw]
}

#[get("/reviews?<state>")]
async fn reviews_page(app: &State<App>, who: Principal, state: Option<&str>) -> AppResult<Page> {
    let state = state.filter(|s| !s.is_empty()).unwrap_or("pending");
    let list = review::list(app, &who, Some(state)).await?;
    let html = app.templates.render(
        "reviews.html",
        context! {
            me => me(&who), csrf => who.csrf_token(), proposals => list, state => state,
            my_id => who.user().username.clone(),
            reviewer_role => app.workflows.review_role.as_str(),
        },
    )?;
    Ok(Page::Html(html))
}

#[derive(FromForm, Serialize)]
pub struct DecisionForm {
    comment: String,
    #[serde(skip)]
    csrf: String,
}

csrf_field!(DecisionForm);

async fn decided(
    who: &Principal,
    cookies: &CookieJar<'_>,
    result: AppResult<review::Proposal>,
    key: &str,
) -> AppResult<Redirect> {
    match result {
        Ok(p) => {
            flash::set(cookies, key, &[("category", &p.category)]);
            Ok(Redirect::to("/reviews"))
        }
        Err(e @ (AppError::Conflict(_) | AppError::Invalid { .. })) => {
            let reason = crate::i18n::message(who.ui().lang, &e.public_message());
            flash::set(cookies, "flash-review-refused", &[("reason", &reason)]);
            Ok(Redirect::to("/reviews"))
        }
        Err(e) => Err(e),
    }
}

#[post("/reviews/<pid>/approve", data = "<form>")]
async fn review_approve(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    form: CsrfForm<DecisionForm>,
) -> AppResult<Redirect> {
    let d = Decision {
        comment: form.0.comment,
    };
    let result = review::approve(app, &who, id(pid)?, d).await;
    decided(&who, cookies, result, "flash-review-approved").await
}

#[post("/reviews/<pid>/reject", data = "<form>")]
async fn review_reject(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    form: CsrfForm<DecisionForm>,
) -> AppResult<Redirect> {
    let d = Decision {
        comment: form.0.comment,
    };
    let result = review::reject(app, &who, id(pid)?, d).await;
    decided(&who, cookies, result, "flash-review-rejected").await
}

/// The withdraw form carries only the CSRF token.
#[derive(rocket::FromForm)]
pub struct WithdrawForm {
    csrf: String,
}
crate::csrf_field!(WithdrawForm);

#[post("/reviews/<pid>/withdraw", data = "<_form>")]
async fn review_withdraw(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    _form: CsrfForm<WithdrawForm>,
) -> AppResult<Redirect> {
    let result = review::withdraw(app, &who, id(pid)?).await;
    decided(&who, cookies, result, "flash-review-withdrawn").await
}
