//! `/stats`: the statistics of the archive's work for supervisors and auditors, with
//! charts drawn on the server and the figures as CSV and Excel.

use minijinja::context;
use rocket::response::content::RawHtml;
use rocket::{get, routes, Route, State};

use super::forms::FormErrors;
use super::{me, Page};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::http::SheetDownload;
use crate::i18n::{has, tr, Lang};
use crate::reports::chart::{self, Bar};
use crate::reports::{self, Bucket, Period, Stats, FLAT_COLUMNS};
use crate::sheet::{Cell, Sheet};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![stats_page, stats_csv, stats_xlsx]
}

/// A machine word in the reader's language (`kind-view` → "view"/"调阅"), or the word.
fn word(lang: Lang, prefix: &str, v: &str) -> String {
    let key = format!("{prefix}-{}", v.replace('_', "-"));
    if has(lang, &key) || has(Lang::En, &key) {
        tr(lang, &key, &[])
    } else {
        v.to_string()
    }
}

fn department(lang: Lang, d: &str) -> String {
    if d.trim().is_empty() {
        tr(lang, "stats-no-department", &[])
    } else {
        d.to_string()
    }
}

/// The charts of the page, as SVG, with their headings.
fn charts(s: &Stats, lang: Lang) -> Vec<(String, String)> {
    let unit = match s.bucket {
        Bucket::Day => "stats-per-day",
        Bucket::Week => "stats-per-week",
        Bucket::Month => "stats-per-month",
    };
    let label_of = |d: chrono::NaiveDate| match s.bucket {
        Bucket::Month => d.format("%Y-%m").to_string(),
        _ => d.format("%m-%d").to_string(),
    };
    let timeline = |pick: fn(&reports::PeriodCount) -> i64| -> Vec<Bar> {
        s.timeline
            .iter()
            .map(|t| Bar::new(label_of(t.period), pick(t)))
            .collect()
    };
    let mut out = Vec::new();
    let unit = tr(lang, unit, &[]);
    let title = tr(
        lang,
        "stats-chart-requests-over-time",
        &[("unit", (&unit).into())],
    );
    out.push((
        title.clone(),
        chart::columns(&title, &timeline(|t| t.requests)),
    ));
    let title = tr(
        lang,
        "stats-chart-records-over-time",
        &[("unit", (&unit).into())],
    );
    out.push((
        title.clone(),
        chart::columns(&title, &timeline(|t| t.records)),
    ));
    let title = tr(lang, "stats-chart-by-department", &[]);
    let by_department: Vec<Bar> = s
        .requests_by(|r| &r.department)
        .into_iter()
        .map(|(d, n)| Bar::new(department(lang, &d), n))
        .collect();
    out.push((title.clone(), chart::bars(&title, &by_department)));
    let title = tr(lang, "stats-chart-by-kind", &[]);
    let by_kind: Vec<Bar> = s
        .requests_by(|r| &r.kind)
        .into_iter()
        .map(|(k, n)| Bar::new(word(lang, "kind", &k), n))
        .collect();
    out.push((title.clone(), chart::bars(&title, &by_kind)));
    let title = tr(lang, "stats-chart-by-category", &[]);
    let by_category: Vec<Bar> = s
        .records
        .iter()
        .map(|r| Bar::new(format!("{} {}", r.category, r.name), r.count))
        .collect();
    out.push((title.clone(), chart::bars(&title, &by_category)));
    let title = tr(lang, "stats-chart-by-person", &[]);
    let by_person: Vec<Bar> = s
        .people
        .iter()
        .take(15)
        .map(|p| Bar::new(p.display_name.clone(), p.requests))
        .collect();
    out.push((title.clone(), chart::bars(&title, &by_person)));
    out
}

/// One row of the kind-by-state table: the kind's word, a count per state, the total.
type KindRow = (String, Vec<i64>, i64);

/// Requests as a table of kind (rows) by state (columns).
fn kind_state_table(s: &Stats, lang: Lang) -> (Vec<String>, Vec<KindRow>) {
    let states = ["pending", "approved", "rejected", "cancelled", "expired"];
    let mut rows: Vec<KindRow> = Vec::new();
    for (kind, total) in s.requests_by(|r| &r.kind) {
        let cells = states
            .iter()
            .map(|st| {
                s.requests
                    .iter()
                    .filter(|r| r.kind == kind && r.state == *st)
                    .map(|r| r.count)
                    .sum()
            })
            .collect();
        rows.push((word(lang, "kind", &kind), cells, total));
    }
    (
        states.iter().map(|st| word(lang, "state", st)).collect(),
        rows,
    )
}

#[derive(rocket::FromForm, Default, serde::Serialize)]
struct Query {
    from: Option<String>,
    to: Option<String>,
}

impl Query {
    fn period(&self, who: &Principal) -> AppResult<Period> {
        Period::parse(self.from.as_deref(), self.to.as_deref(), who.ui().tz)
    }
}

fn render(
    app: &App,
    who: &Principal,
    q: &Query,
    stats: Option<&Stats>,
    errors: Option<FormErrors>,
) -> AppResult<RawHtml<String>> {
    let lang = who.ui().lang;
    let drawn = stats.map(|s| charts(s, lang)).unwrap_or_default();
    let table = stats.map(|s| kind_state_table(s, lang));
    let departments: Vec<(String, i64)> = stats
        .map(|s| {
            s.requests_by(|r| &r.department)
                .into_iter()
                .map(|(d, n)| (department(lang, &d), n))
                .collect()
        })
        .unwrap_or_default();
    let query = stats
        .map(|s| format!("from={}&to={}", s.from, s.to))
        .unwrap_or_default();
    app.templates.render(
        "stats.html",
        context! {
            me => me(who), csrf => who.csrf_token(), errors => errors,
            from => stats.map(|s| s.from.to_string()).or_else(|| q.from.clone()),
            to => stats.map(|s| s.to.to_string()).or_else(|| q.to.clone()),
            s => stats, query => query,
            requests_total => stats.map(Stats::requests_total),
            records_total => stats.map(Stats::records_total),
            charts => drawn.into_iter().map(|(t, svg)| context! { title => t, svg => svg }).collect::<Vec<_>>(),
            states => table.as_ref().map(|t| t.0.clone()),
            kinds => table.map(|t| t.1.into_iter().map(|(k, cells, total)| context! { kind => k, cells => cells, total => total }).collect::<Vec<_>>()),
            departments => departments,
        },
    )
}

#[get("/stats?<q..>")]
async fn stats_page(app: &State<App>, who: Principal, q: Query) -> AppResult<Page> {
    let result = match q.period(&who) {
        Ok(p) => reports::stats(app, &who, p).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(s) => Ok(Page::Html(render(app, &who, &q, Some(&s), None)?)),
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

/// The statistics as one flat table with headers and words in the reader's language.
fn flat(s: &Stats, lang: Lang) -> Sheet {
    let headers = FLAT_COLUMNS
        .iter()
        .map(|c| tr(lang, &format!("stats-col-{c}"), &[]))
        .collect();
    let label = move |section: &str, v: &str| -> String {
        match section {
            "section" => word(lang, "stats-section", v),
            "kind" => word(lang, "kind", v),
            "state" => word(lang, "state", v),
            _ => word(lang, "stats-measure", v),
        }
    };
    reports::flat_sheet(s, tr(lang, "stats-title", &[]), headers, &label)
}

#[get("/stats.csv?<q..>")]
async fn stats_csv(app: &State<App>, who: Principal, q: Query) -> AppResult<SheetDownload> {
    let s = reports::export(app, &who, q.period(&who)?, "csv").await?;
    Ok(SheetDownload::csv(&flat(&s, who.ui().lang), "statistics"))
}

/// The workbook: the flat table first, then one worksheet per view of the figures.
#[get("/stats.xlsx?<q..>")]
async fn stats_xlsx(app: &State<App>, who: Principal, q: Query) -> AppResult<SheetDownload> {
    let lang = who.ui().lang;
    let s = reports::export(app, &who, q.period(&who)?, "xlsx").await?;
    let h = |keys: &[&str]| -> Vec<String> { keys.iter().map(|k| tr(lang, k, &[])).collect() };
    let mut by_department = Sheet::new(
        tr(lang, "stats-chart-by-department", &[]),
        h(&["stats-col-department", "stats-col-count"]),
    );
    for (d, n) in s.requests_by(|r| &r.department) {
        by_department.push(vec![Cell::from(department(lang, &d)), Cell::from(n)]);
    }
    let mut by_category = Sheet::new(
        tr(lang, "stats-chart-by-category", &[]),
        h(&["stats-col-category", "stats-col-name", "stats-col-count"]),
    );
    for r in &s.records {
        by_category.push(vec![
            Cell::from(r.category.as_str()),
            Cell::from(r.name.as_str()),
            Cell::from(r.count),
        ]);
    }
    let mut people = Sheet::new(
        tr(lang, "stats-people", &[]),
        h(&[
            "stats-col-person",
            "stats-col-name",
            "stats-col-department",
            "stats-col-requests",
            "stats-col-approved",
            "stats-col-rejected",
        ]),
    );
    for p in &s.people {
        people.push(vec![
            Cell::from(p.person.as_str()),
            Cell::from(p.display_name.as_str()),
            Cell::from(department(lang, &p.department)),
            Cell::from(p.requests),
            Cell::from(p.approved),
            Cell::from(p.rejected),
        ]);
    }
    let mut timeline = Sheet::new(
        tr(lang, "stats-timeline", &[]),
        h(&[
            "stats-col-period",
            "stats-col-requests",
            "stats-col-records",
            "stats-col-loans",
        ]),
    );
    for t in &s.timeline {
        timeline.push(vec![
            Cell::from(t.period.to_string()),
            Cell::from(t.requests),
            Cell::from(t.records),
            Cell::from(t.loans),
        ]);
    }
    let bytes = crate::sheet::workbook_xlsx(&[
        flat(&s, lang),
        by_department,
        by_category,
        people,
        timeline,
    ])?;
    Ok(SheetDownload::bytes(
        bytes,
        crate::sheet::XLSX_MEDIA_TYPE,
        "statistics",
        "xlsx",
    ))
}
