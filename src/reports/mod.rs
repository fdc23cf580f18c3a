//! Statistics of the archive's work for supervisors and auditors (`report.read`): requests
//! by kind, state and department, records filed by category, loans, views and exports, per
//! person and over time, for a period of days.
//!
//! Guarantees:
//! - Counted from the data itself (requests, grants, loans, exports, records), in one
//!   transaction so the figures belong to one moment. Viewer openings and page views exist
//!   only as audit events, so those two figures are counted from the audit trail.
//! - A period is whole days in the reader's time zone, `from` and `to` included; the
//!   answer names the zone. Something counts in a period by when it happened there: a
//!   request by when it was made (its state is its state now), a record by when it was
//!   filed, a loan as `out` by when it was handed out and as `returned` by when it came
//!   back, a grant by when it began, an export by when it was built and when downloaded.
//! - Every reading and every export of the statistics is audited (`report.stats`,
//!   `report.export`), and a refusal too.
//! - Counts only: no titles, purposes or field values appear, so the statistics reveal
//!   nothing a masked search would not.

pub mod chart;

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::json;

use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::ReadReports;
use crate::sheet::{Cell, Sheet};
use crate::{unit, App};

/// The longest period one reading covers (about ten years).
pub const MAX_DAYS: i64 = 3660;
/// The period when none is given: the last 30 days, today included.
pub const DEFAULT_DAYS: i64 = 30;
/// The most people listed by number of requests.
pub const PEOPLE_LIMIT: i64 = 50;

/// How the timeline groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Day,
    Week,
    Month,
}

impl Bucket {
    /// Days for up to two months, ISO weeks (from Monday) up to a year, months beyond.
    pub fn for_span(days: i64) -> Bucket {
        if days <= 62 {
            Bucket::Day
        } else if days <= 366 {
            Bucket::Week
        } else {
            Bucket::Month
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }

    /// The first day of the bucket holding `d`.
    fn start(self, d: NaiveDate) -> NaiveDate {
        match self {
            Bucket::Day => d,
            Bucket::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Bucket::Month => d.with_day(1).unwrap_or(d),
        }
    }

    fn next(self, d: NaiveDate) -> Option<NaiveDate> {
        match self {
            Bucket::Day => d.succ_opt(),
            Bucket::Week => d.checked_add_signed(Duration::days(7)),
            Bucket::Month => d.checked_add_months(chrono::Months::new(1)),
        }
    }
}

/// A period of whole days in one time zone, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub tz: Tz,
}

impl Period {
    /// The period asked for, checked: dates as `YYYY-MM-DD`, `from` not after `to`, at most
    /// [`MAX_DAYS`]. Missing ends default to today and 29 days before the end.
    pub fn parse(from: Option<&str>, to: Option<&str>, tz: Tz) -> AppResult<Period> {
        let today = Utc::now().with_timezone(&tz).date_naive();
        let date = |field: &str, v: Option<&str>| -> AppResult<Option<NaiveDate>> {
            match v.map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|_| AppError::invalid(field, "must be a date (YYYY-MM-DD)")),
            }
        };
        let to_day = date("to", to)?;
        let from_day = date("from", from)?;
        let to = to_day.unwrap_or(today);
        let from = from_day.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
        if from > to {
            return Err(AppError::invalid("from", "must not be after the end date"));
        }
        if (to - from).num_days() + 1 > MAX_DAYS {
            return Err(AppError::invalid(
                "from",
                "the period is longer than ten years",
            ));
        }
        Ok(Period { from, to, tz })
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The first instant of the period and the first instant after it.
    fn bounds(&self) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
        let start = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0).and_then(|m| {
                self.tz
                    .from_local_datetime(&m)
                    .earliest()
                    .or_else(|| {
                        self.tz
                            .from_local_datetime(&(m + Duration::hours(1)))
                            .earliest()
                    })
                    .map(|t| t.with_timezone(&Utc))
            })
        };
        let end = self.to.succ_opt().and_then(start);
        match (start(self.from), end) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(AppError::invalid("to", "is outside the calendar")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RequestCount {
    pub kind: String,
    pub state: String,
    /// The requester's department.
    pub department: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RecordCount {
    /// The category's code.
    pub category: String,
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LoanCounts {
    /// Handed out in the period.
    pub out: i64,
    /// Of those, not back yet.
    pub still_out: i64,
    /// Of those, back after their due date or past it and not back.
    pub overdue: i64,
    /// Taken back in the period (wherever they were handed out).
    pub returned: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ViewCounts {
    /// View grants that began in the period.
    pub granted: i64,
    /// Viewer openings (from the audit trail).
    pub opened: i64,
    /// Pages shown in the viewer (from the audit trail).
    pub pages: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ExportCounts {
    /// Export grants that began in the period.
    pub granted: i64,
    /// Bundles built.
    pub created: i64,
    /// Bundles downloaded.
    pub downloaded: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PersonCount {
    pub person: String,
    pub display_name: String,
    pub department: String,
    pub requests: i64,
    pub approved: i64,
    pub rejected: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodCount {
    /// The first day of the bucket.
    pub period: NaiveDate,
    pub requests: i64,
    pub records: i64,
    pub loans: i64,
}

/// The statistics of one period.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub time_zone: String,
    pub bucket: Bucket,
    pub requests: Vec<RequestCount>,
    pub records: Vec<RecordCount>,
    pub loans: LoanCounts,
    pub views: ViewCounts,
    pub exports: ExportCounts,
    pub people: Vec<PersonCount>,
    pub timeline: Vec<PeriodCount>,
}

impl Stats {
    /// Requests in all, and per value of one dimension (sorted by count, then name).
    pub fn requests_by(&self, key: impl Fn(&RequestCount) -> &str) -> Vec<(String, i64)> {
        let mut m: BTreeMap<String, i64> = BTreeMap::new();
        for r in &self.requests {
            *m.entry(key(r).to_string()).or_default() += r.count;
        }
        let mut v: Vec<(String, i64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    pub fn requests_total(&self) -> i64 {
        self.requests.iter().map(|r| r.count).sum()
    }

    pub fn records_total(&self) -> i64 {
        self.records.iter().map(|r| r.count).sum()
    }
}

/// The statistics of `period`, for a supervisor or an auditor; the reading is audited.
#[tracing::instrument(skip_all)]
pub async fn stats(app: &App, who: &Principal, period: Period) -> AppResult<Stats> {
    unit!(app.db, |tx| {
        tx.authorize::<ReadReports>(&app.policies, who, None, None)?;
        let s = count(&mut tx, period).await?;
        tx.audit(
            &who.actor(),
            Event::new("report.stats", Outcome::Success).detail(json!({
                "from": period.from, "to": period.to, "time_zone": s.time_zone,
            })),
        )
        .await?;
        Ok(s)
    })
}

/// The statistics of `period` as a download; the export is audited with its format.
#[tracing::instrument(skip_all)]
pub async fn export(app: &App, who: &Principal, period: Period, format: &str) -> AppResult<Stats> {
    unit!(app.db, |tx| {
        tx.authorize::<ReadReports>(&app.policies, who, None, None)?;
        let s = count(&mut tx, period).await?;
        tx.audit(
            &who.actor(),
            Event::new("report.export", Outcome::Success).detail(json!({
                "from": period.from, "to": period.to, "time_zone": s.time_zone, "format": format,
            })),
        )
        .await?;
        Ok(s)
    })
}

async fn count(conn: &mut sqlx::PgConnection, period: Period) -> AppResult<Stats> {
    let (start, end) = period.bounds()?;
    let tz = period.tz.name();
    let today = Utc::now().with_timezone(&period.tz).date_naive();
    let bucket = Bucket::for_span(period.days());

    let requests: Vec<RequestCount> = sqlx::query_as(
        "SELECT q.kind, q.state, u.department, count(*) AS count \
         FROM access_requests q JOIN users u ON u.id = q.requester_id \
         WHERE q.created_at >= $1 AND q.created_at < $2 \
         GROUP BY q.kind, q.state, u.department ORDER BY q.kind, q.state, u.department",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;

    let records: Vec<RecordCount> = sqlx::query_as(
        "SELECT c.code AS category, c.name, count(*) AS count \
         FROM records r JOIN categories c ON c.id = r.category_id \
         WHERE r.created_at >= $1 AND r.created_at < $2 \
         GROUP BY c.code, c.name ORDER BY count(*) DESC, c.code",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;

    let loans: LoanCounts = sqlx::query_as(
        "SELECT \
           count(*) FILTER (WHERE out_at >= $1 AND out_at < $2) AS out, \
           count(*) FILTER (WHERE out_at >= $1 AND out_at < $2 AND returned_at IS NULL) AS still_out, \
           count(*) FILTER (WHERE out_at >= $1 AND out_at < $2 AND due_date < \
               COALESCE((returned_at AT TIME ZONE $3)::date, $4)) AS overdue, \
           count(*) FILTER (WHERE returned_at >= $1 AND returned_at < $2) AS returned \
         FROM loans",
    )
    .bind(start)
    .bind(end)
    .bind(tz)
    .bind(today)
    .fetch_one(&mut *conn)
    .await?;

    let (view_grants, export_grants): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE kind = 'view'), count(*) FILTER (WHERE kind = 'export') \
         FROM grants WHERE valid_from >= $1 AND valid_from < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;

    let (opened, pages): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE action = 'file.view.open'), \
                count(*) FILTER (WHERE action = 'file.view.page') \
         FROM audit_events \
         WHERE action IN ('file.view.open', 'file.view.page') AND outcome = 'success' \
           AND occurred_at >= $1 AND occurred_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;

    let (created, downloaded): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE created_at >= $1 AND created_at < $2), \
                count(*) FILTER (WHERE downloaded_at >= $1 AND downloaded_at < $2) \
         FROM exports",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;

    let people: Vec<PersonCount> = sqlx::query_as(
        "SELECT u.username AS person, u.display_name, u.department, count(*) AS requests, \
                count(*) FILTER (WHERE q.state = 'approved') AS approved, \
                count(*) FILTER (WHERE q.state = 'rejected') AS rejected \
         FROM access_requests q JOIN users u ON u.id = q.requester_id \
         WHERE q.created_at >= $1 AND q.created_at < $2 \
         GROUP BY u.username, u.display_name, u.department \
         ORDER BY count(*) DESC, u.username LIMIT $3",
    )
    .bind(start)
    .bind(end)
    .bind(PEOPLE_LIMIT)
    .fetch_all(&mut *conn)
    .await?;

    // The timeline: each source counted per bucket in the reader's zone, then laid over
    // every bucket of the period so empty ones show as zero.
    let per_bucket = |table: &str, column: &str| {
        format!(
            "SELECT (date_trunc('{b}', {column} AT TIME ZONE $3))::date AS d, count(*) \
             FROM {table} WHERE {column} >= $1 AND {column} < $2 GROUP BY 1",
            b = bucket.as_str()
        )
    };
    let mut timeline: BTreeMap<NaiveDate, PeriodCount> = BTreeMap::new();
    let mut d = bucket.start(period.from);
    while d <= period.to {
        timeline.insert(
            d,
            PeriodCount {
                period: d,
                requests: 0,
                records: 0,
                loans: 0,
            },
        );
        match bucket.next(d) {
            Some(n) => d = n,
            None => break,
        }
    }
    for (i, (table, column)) in [
        ("access_requests", "created_at"),
        ("records", "created_at"),
        ("loans", "out_at"),
    ]
    .into_iter()
    .enumerate()
    {
        let rows: Vec<(NaiveDate, i64)> = sqlx::query_as(&per_bucket(table, column))
            .bind(start)
            .bind(end)
            .bind(tz)
            .fetch_all(&mut *conn)
            .await?;
        for (day, n) in rows {
            let slot = timeline.entry(day).or_insert(PeriodCount {
                period: day,
                requests: 0,
                records: 0,
                loans: 0,
            });
            match i {
                0 => slot.requests = n,
                1 => slot.records = n,
                _ => slot.loans = n,
            }
        }
    }

    Ok(Stats {
        from: period.from,
        to: period.to,
        time_zone: tz.to_string(),
        bucket,
        requests,
        records,
        loans,
        views: ViewCounts {
            granted: view_grants,
            opened,
            pages,
        },
        exports: ExportCounts {
            granted: export_grants,
            created,
            downloaded,
        },
        people,
        timeline: timeline.into_values().collect(),
    })
}

/// The column names of the flat table (the CSV, and the machine form of the headers).
pub const FLAT_COLUMNS: [&str; 8] = [
    "section",
    "kind",
    "state",
    "department",
    "category",
    "person",
    "period",
    "count",
];

/// Everything as one flat table (the CSV): one row per figure, the columns that do not
/// apply to a section left empty. `label` turns a machine word (`section`, value) into the
/// reader's word; `None` leaves machine words (for programs).
pub fn flat_sheet(
    s: &Stats,
    name: String,
    headers: Vec<String>,
    label: &dyn Fn(&str, &str) -> String,
) -> Sheet {
    let mut sheet = Sheet::new(name, headers);
    let e = || Cell::Empty;
    let text = |v: &str| Cell::from(v);
    let sec = |k: &str| Cell::from(label("section", k));
    for r in &s.requests {
        sheet.push(vec![
            sec("requests"),
            Cell::from(label("kind", &r.kind)),
            Cell::from(label("state", &r.state)),
            text(&r.department),
            e(),
            e(),
            e(),
            Cell::from(r.count),
        ]);
    }
    for r in &s.records {
        sheet.push(vec![
            sec("records"),
            e(),
            e(),
            e(),
            Cell::from(format!("{} {}", r.category, r.name)),
            e(),
            e(),
            Cell::from(r.count),
        ]);
    }
    let one = |sheet: &mut Sheet, section: &str, kind: &str, n: i64| {
        sheet.push(vec![
            Cell::from(label("section", section)),
            Cell::from(label("measure", kind)),
            e(),
            e(),
            e(),
            e(),
            e(),
            Cell::from(n),
        ]);
    };
    one(&mut sheet, "loans", "out", s.loans.out);
    one(&mut sheet, "loans", "still_out", s.loans.still_out);
    one(&mut sheet, "loans", "overdue", s.loans.overdue);
    one(&mut sheet, "loans", "returned", s.loans.returned);
    one(&mut sheet, "views", "granted", s.views.granted);
    one(&mut sheet, "views", "opened", s.views.opened);
    one(&mut sheet, "views", "pages", s.views.pages);
    one(&mut sheet, "exports", "granted", s.exports.granted);
    one(&mut sheet, "exports", "created", s.exports.created);
    one(&mut sheet, "exports", "downloaded", s.exports.downloaded);
    for p in &s.people {
        sheet.push(vec![
            sec("people"),
            e(),
            e(),
            text(&p.department),
            e(),
            Cell::from(format!("{} ({})", p.display_name, p.person)),
            e(),
            Cell::from(p.requests),
        ]);
    }
    for t in &s.timeline {
        for (kind, n) in [
            ("requests", t.requests),
            ("records", t.records),
            ("loans", t.loans),
        ] {
            sheet.push(vec![
                sec("timeline"),
                Cell::from(label("measure", kind)),
                e(),
                e(),
                e(),
                e(),
                Cell::from(t.period.to_string()),
                Cell::from(n),
            ]);
        }
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_checked_and_default_to_the_last_thirty_days() {
        let tz = chrono_tz::Asia::Shanghai;
        let p = Period::parse(None, None, tz).unwrap();
        assert_eq!(p.days(), DEFAULT_DAYS);
        let p = Period::parse(Some("2026-11-01"), Some("2026-11-30"), tz).unwrap();
        assert_eq!(p.days(), 30);
        let (a, b) = p.bounds().unwrap();
        // Midnight in Shanghai is 16:00 UTC the day before.
        assert_eq!(a.to_rfc3339(), "2026-10-31T16:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        for (from, to, field) in [
            (Some("2026-11-31"), None, "from"),
            (None, Some("30/11/2026"), "to"),
            (Some("2026-12-01"), Some("2026-11-01"), "from"),
            (Some("2000-01-01"), Some("2026-11-01"), "from"),
        ] {
            match Period::parse(from, to, tz) {
                Err(AppError::Invalid { field: Some(f), .. }) => assert_eq!(f, field),
                other => panic!("{from:?}..{to:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn buckets_follow_the_span() {
        assert_eq!(Bucket::for_span(1), Bucket::Day);
        assert_eq!(Bucket::for_span(62), Bucket::Day);
        assert_eq!(Bucket::for_span(63), Bucket::Week);
        assert_eq!(Bucket::for_span(367), Bucket::Month);
        let sun = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert_eq!(Bucket::Week.start(sun).to_string(), "2026-11-23");
        assert_eq!(Bucket::Month.start(sun).to_string(), "2026-11-01");
        assert_eq!(
            Bucket::Month.next(NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()),
            NaiveDate::from_ymd_opt(2026, 2, 28)
        );
    }
}
