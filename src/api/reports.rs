//! The statistics of the archive's work (`report.read`: supervisors and auditors).

use rocket::serde::json::Json;
use rocket::{get, routes, Route, State};

use crate::auth::Principal;
use crate::error::AppResult;
use crate::reports::{self, Period, Stats};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![stats]
}

/// `GET /stats?from=YYYY-MM-DD&to=YYYY-MM-DD`: whole days in the caller's time zone, both
/// included (default: the last 30 days); 422 naming the field for a bad date or period.
#[get("/stats?<from>&<to>")]
async fn stats(
    app: &State<App>,
    who: Principal,
    from: Option<&str>,
    to: Option<&str>,
) -> AppResult<Json<Stats>> {
    let period = Period::parse(from, to, who.ui().tz)?;
    Ok(Json(reports::stats(app, &who, period).await?))
}
