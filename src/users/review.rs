//! The periodic access review (`user.review`: administrators and auditors): every account
//! with its roles, department, status and last sign-in, marked inactive when it has not
//! signed in for N days (never counts as inactive); exported as CSV and .xlsx, and marked
//! complete with an optional note. Exports and completions are audited; a completion
//! records who, when, the filter and how many accounts it listed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::model::Role;
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::ReviewAccess;
use crate::{unit, App};

/// The inactivity the review looks for unless told otherwise.
pub const DEFAULT_INACTIVE_DAYS: i32 = 90;
/// The longest inactivity one may ask for (ten years).
pub const MAX_INACTIVE_DAYS: i32 = 3650;

/// What the review lists: accounts inactive for `inactive_days` are marked; with
/// `only_inactive`, only those are listed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Filter {
    pub inactive_days: i32,
    pub only_inactive: bool,
}

impl Filter {
    /// Checks the filter as typed (none: the default of 90 days).
    pub fn new(inactive_days: Option<i32>, only_inactive: bool) -> AppResult<Filter> {
        let days = inactive_days.unwrap_or(DEFAULT_INACTIVE_DAYS);
        if !(1..=MAX_INACTIVE_DAYS).contains(&days) {
            return Err(AppError::invalid(
                "days",
                "must be a number of days from 1 to 3650",
            ));
        }
        Ok(Filter {
            inactive_days: days,
            only_inactive,
        })
    }

    /// The filter as typed in a query (`days` empty: the default); a number that does not
    /// parse is refused, never taken as the default.
    pub fn typed(days: Option<&str>, only_inactive: bool) -> AppResult<Filter> {
        let days = match days.map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(d) => Some(d.parse::<i32>().map_err(|_| {
                AppError::invalid("days", "must be a number of days from 1 to 3650")
            })?),
        };
        Filter::new(days, only_inactive)
    }
}

/// One account as the review shows it. New columns (a second factor, …) are new fields
/// here and in [`COLUMNS`] / [`sheet`].
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ReviewRow {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub department: String,
    #[sqlx(try_from = "Vec<String>")]
    pub roles: RoleList,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub last_sign_in_at: Option<DateTime<Utc>>,
    /// Whole days since the last sign-in (since the account was made, when never).
    pub idle_days: i64,
    /// Not signed in for the filter's number of days, or never.
    pub inactive: bool,
    /// A confirmed second factor (TOTP).
    pub second_factor: bool,
}

/// An account's roles, read from the database's text array.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RoleList(pub Vec<Role>);

impl From<Vec<String>> for RoleList {
    fn from(v: Vec<String>) -> Self {
        RoleList(v.iter().filter_map(|s| s.parse().ok()).collect())
    }
}

/// A completed review.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Completed {
    pub id: Uuid,
    pub completed_by: String,
    pub completed_at: DateTime<Utc>,
    pub inactive_days: i32,
    pub only_inactive: bool,
    pub accounts: i32,
    pub inactive: i32,
    pub note: String,
}

/// The review as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub filter: Filter,
    pub rows: Vec<ReviewRow>,
    pub inactive: usize,
    pub last_completed: Option<Completed>,
}

async fn permit(app: &App, who: &Principal) -> AppResult<()> {
    app.db
        .authorize::<ReviewAccess>(&app.policies, who, None, None)
        .await
        .map(|_| ())
}

async fn rows(conn: &mut sqlx::PgConnection, f: Filter) -> AppResult<Vec<ReviewRow>> {
    let only = if f.only_inactive {
        " WHERE inactive"
    } else {
        ""
    };
    Ok(sqlx::query_as(&format!(
        "SELECT * FROM (SELECT id, username, display_name, department, roles, status, created_at, \
         last_sign_in_at, \
         floor(extract(epoch FROM now() - COALESCE(last_sign_in_at, created_at)) / 86400)::bigint AS idle_days, \
         (last_sign_in_at IS NULL OR last_sign_in_at <= now() - $1 * interval '1 day') AS inactive, \
         EXISTS (SELECT 1 FROM user_totp t WHERE t.user_id = users.id AND t.confirmed_at IS NOT NULL) AS second_factor \
         FROM users) a{only} ORDER BY lower(username)"
    ))
    .bind(f64::from(f.inactive_days))
    .fetch_all(conn)
    .await?)
}

async fn last_completed(conn: &mut sqlx::PgConnection) -> AppResult<Option<Completed>> {
    Ok(sqlx::query_as(
        "SELECT a.id, u.username AS completed_by, a.completed_at, a.inactive_days, a.only_inactive, \
         a.accounts, a.inactive, a.note FROM access_reviews a JOIN users u ON u.id = a.completed_by \
         ORDER BY a.completed_at DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await?)
}

/// The review for `f` (`user.review`).
#[tracing::instrument(skip_all)]
pub async fn review(app: &App, who: &Principal, f: Filter) -> AppResult<Review> {
    permit(app, who).await?;
    unit!(app.db, |tx| {
        let rows = rows(&mut tx, f).await?;
        let inactive = rows.iter().filter(|r| r.inactive).count();
        Ok(Review {
            filter: f,
            inactive,
            rows,
            last_completed: last_completed(&mut tx).await?,
        })
    })
}

/// The review for a download (`user.review`); the export is audited.
#[tracing::instrument(skip_all)]
pub async fn export(app: &App, who: &Principal, f: Filter, format: &str) -> AppResult<Review> {
    let r = review(app, who, f).await?;
    unit!(app.db, |tx| {
        tx.audit(
            &who.actor(),
            Event::new("access_review.export", Outcome::Success).detail(json!({
                "format": format, "accounts": r.rows.len(), "inactive": r.inactive,
                "inactive_days": f.inactive_days, "only_inactive": f.only_inactive,
            })),
        )
        .await
    })?;
    Ok(r)
}

/// Marks the review for `f` complete (`user.review`), with an optional note: recorded
/// with the number of accounts it listed, and audited (`access_review.complete`).
#[tracing::instrument(skip_all)]
pub async fn complete(
    app: &App,
    who: &Principal,
    f: Filter,
    note: Option<&str>,
) -> AppResult<Completed> {
    permit(app, who).await?;
    let note = note.map(str::trim).unwrap_or_default().to_string();
    if note.chars().count() > 2000 {
        return Err(AppError::invalid("note", "must be at most 2000 characters"));
    }
    crate::text::check("note", &note, crate::text::Lines::Multi)?;
    unit!(app.db, |tx| {
        let rows = rows(&mut tx, f).await?;
        let accounts = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        let inactive =
            i32::try_from(rows.iter().filter(|r| r.inactive).count()).unwrap_or(i32::MAX);
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO access_reviews (id, completed_by, inactive_days, only_inactive, accounts, inactive, note) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(who.user().id)
        .bind(f.inactive_days)
        .bind(f.only_inactive)
        .bind(accounts)
        .bind(inactive)
        .bind(&note)
        .execute(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("access_review.complete", Outcome::Success)
                .object("access_review", id)
                .detail(json!({
                    "accounts": accounts, "inactive": inactive,
                    "inactive_days": f.inactive_days, "only_inactive": f.only_inactive,
                    "note": note,
                    "account_ids": rows.iter().map(|r| r.id).collect::<Vec<_>>(),
                })),
        )
        .await?;
        last_completed(&mut tx)
            .await?
            .ok_or_else(|| AppError::internal("a completed review was not found"))
    })
}

/// The columns of the review, as machine names (the API's CSV) and catalog keys
/// (`review-col-…`).
pub const COLUMNS: [&str; 10] = [
    "username",
    "display_name",
    "department",
    "roles",
    "status",
    "created_at",
    "last_sign_in_at",
    "idle_days",
    "inactive",
    "second_factor",
];

/// The review as a table. With `ui`, for people: headers in their language, times in their
/// zone, roles and states as words; without, for programs: the column names above,
/// RFC 3339 times and `true`/`false`.
pub fn sheet(r: &Review, ui: Option<crate::i18n::Ui>) -> crate::sheet::Sheet {
    use crate::i18n::{format_time, tr};
    use crate::sheet::{Cell, Sheet};
    let (name, headers) = match ui {
        Some(ui) => (
            tr(ui.lang, "review-sheet-name", &[]),
            COLUMNS
                .iter()
                .map(|c| tr(ui.lang, &format!("review-col-{c}"), &[]))
                .collect(),
        ),
        None => (
            "access-review".to_string(),
            COLUMNS.iter().map(|c| c.to_string()).collect(),
        ),
    };
    let mut sheet = Sheet::new(name, headers);
    for row in &r.rows {
        let time = |t: DateTime<Utc>| match ui {
            Some(ui) => format_time(ui, t),
            None => t.to_rfc3339(),
        };
        let roles = row
            .roles
            .0
            .iter()
            .map(|role| match ui {
                Some(ui) => tr(ui.lang, &format!("role-{}", role.as_str()), &[]),
                None => role.as_str().to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let second_factor = match ui {
            Some(ui) if row.second_factor => tr(ui.lang, "yes", &[]),
            Some(_) => String::new(),
            None => row.second_factor.to_string(),
        };
        let (status, inactive) = match ui {
            Some(ui) => (
                tr(ui.lang, &format!("acct-status-{}", row.status), &[]),
                if row.inactive {
                    tr(ui.lang, "yes", &[])
                } else {
                    String::new()
                },
            ),
            None => (row.status.clone(), row.inactive.to_string()),
        };
        sheet.push(vec![
            Cell::from(row.username.as_str()),
            Cell::from(row.display_name.as_str()),
            Cell::from(row.department.as_str()),
            Cell::from(roles),
            Cell::from(status),
            Cell::from(time(row.created_at)),
            Cell::from(row.last_sign_in_at.map(time)),
            Cell::from(row.idle_days),
            Cell::from(inactive),
            Cell::from(second_factor),
        ]);
    }
    sheet
}
