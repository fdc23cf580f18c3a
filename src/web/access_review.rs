//! `/admin/access-review`: the periodic access review for administrators and auditors
//! (`user.review`): accounts with roles, department, status and last sign-in, filtered by
//! inactivity; downloads as CSV and .xlsx; and the form that marks the review complete.

use minijinja::context;
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};

use super::forms::FormErrors;
use super::{me, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::http::SheetDownload;
use crate::i18n::flash;
use crate::users::review::{self, Filter};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![review_page, review_csv, review_xlsx, review_complete]
}

/// The filter as typed in the query (`days` empty: the default).
fn filter(days: Option<&str>, inactive: Option<&str>) -> AppResult<Filter> {
    Filter::typed(days, matches!(inactive, Some("1" | "on" | "true")))
}

async fn render(
    app: &App,
    who: &Principal,
    f: Filter,
    typed_days: Option<String>,
    errors: Option<FormErrors>,
) -> AppResult<RawHtml<String>> {
    let r = review::review(app, who, f).await?;
    let query = format!(
        "days={}{}",
        f.inactive_days,
        if f.only_inactive { "&inactive=1" } else { "" }
    );
    app.templates.render(
        "access_review.html",
        context! {
            me => me(who), csrf => who.csrf_token(), review => r,
            days => typed_days.unwrap_or_else(|| f.inactive_days.to_string()),
            only_inactive => f.only_inactive, query => query, errors => errors,
        },
    )
}

#[get("/admin/access-review?<days>&<inactive>")]
async fn review_page(
    app: &State<App>,
    who: Principal,
    days: Option<String>,
    inactive: Option<String>,
) -> AppResult<Page> {
    match filter(days.as_deref(), inactive.as_deref()) {
        Ok(f) => Ok(Page::Html(render(app, &who, f, None, None).await?)),
        Err(e @ AppError::Invalid { .. }) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let f = Filter::new(None, false)?;
            let html = render(app, &who, f, days, Some(errors)).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[get("/admin/access-review.csv?<days>&<inactive>")]
async fn review_csv(
    app: &State<App>,
    who: Principal,
    days: Option<String>,
    inactive: Option<String>,
) -> AppResult<SheetDownload> {
    let f = filter(days.as_deref(), inactive.as_deref())?;
    let r = review::export(app, &who, f, "csv").await?;
    Ok(SheetDownload::csv(
        &review::sheet(&r, Some(who.ui())),
        "access-review",
    ))
}

#[get("/admin/access-review.xlsx?<days>&<inactive>")]
async fn review_xlsx(
    app: &State<App>,
    who: Principal,
    days: Option<String>,
    inactive: Option<String>,
) -> AppResult<SheetDownload> {
    let f = filter(days.as_deref(), inactive.as_deref())?;
    let r = review::export(app, &who, f, "xlsx").await?;
    SheetDownload::xlsx(&review::sheet(&r, Some(who.ui())), "access-review")
}

#[derive(FromForm)]
pub struct CompleteForm {
    days: Option<String>,
    inactive: Option<String>,
    note: Option<String>,
    csrf: String,
}

csrf_field!(CompleteForm);

/// Marks the review listed with the form's filter complete; back to the page, which
/// shows it as the last completed review.
#[post("/admin/access-review/complete", data = "<form>")]
async fn review_complete(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    form: CsrfForm<CompleteForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    let result = match filter(f.days.as_deref(), f.inactive.as_deref()) {
        Ok(filter) => review::complete(app, &who, filter, f.note.as_deref())
            .await
            .map(|done| (filter, done)),
        Err(e) => Err(e),
    };
    match result {
        Ok((filter, done)) => {
            flash::set(
                cookies,
                "flash-review-completed",
                &[("count", &done.accounts.to_string())],
            );
            Ok(Page::Redirect(Box::new(Redirect::to(format!(
                "/admin/access-review?days={}{}",
                filter.inactive_days,
                if filter.only_inactive {
                    "&inactive=1"
                } else {
                    ""
                }
            )))))
        }
        Err(e @ AppError::Invalid { .. }) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let filter = Filter::new(None, false)?;
            let html = render(app, &who, filter, f.days, Some(errors)).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}
