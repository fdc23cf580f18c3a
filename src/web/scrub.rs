//! `/admin/scrub`: the integrity scrub's latest results, for administrators.

use minijinja::context;
use rocket::response::content::RawHtml;
use rocket::{get, routes, Route, State};

use super::me;
use crate::auth::Principal;
use crate::error::AppResult;
use crate::storage::scrub;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![scrub_page]
}

#[get("/admin/scrub")]
async fn scrub_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    let runs = scrub::latest(app, &who, 20).await?;
    app.templates.render(
        "scrub.html",
        context! {
            me => me(&who), csrf => who.csrf_token(),
            latest => runs.first(), runs => runs,
            interval_hours => app.config.scrub_interval_hours,
        },
    )
}
