//! The loans desk: an archivist hands out a physical file under an approved `borrow`
//! request whose grant is active, and takes it back with a condition note. A record is
//! never lent twice at once (a unique index on open loans backs the status check). The
//! register (who, what, when out, due, back, approved by) is listed and exported as CSV.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{Action, ManageLoans, Permit};
use crate::{unit, App};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkout {
    pub due_date: NaiveDate,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Return {
    pub condition: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Loan {
    pub id: Uuid,
    pub request_id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    pub title: String,
    pub borrower: String,
    pub checked_out_by: String,
    pub out_at: DateTime<Utc>,
    pub due_date: NaiveDate,
    pub returned_at: Option<DateTime<Utc>>,
    pub condition: Option<String>,
    pub approved_by: String,
    pub overdue: bool,
    /// The borrower's account was disabled while the file was out: flagged to the loans
    /// desk until the file is returned.
    pub holder_left: bool,
    /// The borrower's display name, for the flag.
    pub borrower_name: String,
}

/// The archive's calendar day now: due dates are days of the vault's time zone
/// (`time_zone`, shipped Asia/Shanghai), not of UTC or the database server's.
pub fn archive_today(app: &App) -> NaiveDate {
    Utc::now()
        .with_timezone(&app.config.default_tz())
        .date_naive()
}

/// `LOAN_SELECT` with `overdue` counted against `today` (a date chrono wrote, so it is
/// safe to place in the statement).
fn loan_select(today: NaiveDate) -> String {
    LOAN_SELECT.replace("current_date", &format!("DATE '{today}'"))
}

const LOAN_SELECT: &str = "SELECT l.id, l.request_id, l.record_id, r.reference, r.title, b.username AS borrower, \
     c.username AS checked_out_by, l.out_at, l.due_date, l.returned_at, l.condition, \
     COALESCE((SELECT string_agg(u.username, ', ' ORDER BY d.decided_at) FROM request_decisions d \
               JOIN users u ON u.id = d.approver_id WHERE d.request_id = l.request_id AND d.decision = 'approve'), 'workflow') AS approved_by, \
     (l.returned_at IS NULL AND l.due_date < current_date) AS overdue, \
     (l.holder_left_at IS NOT NULL AND l.returned_at IS NULL) AS holder_left, b.display_name AS borrower_name \
     FROM loans l JOIN records r ON r.id = l.record_id JOIN users b ON b.id = l.borrower_id \
     JOIN users c ON c.id = l.checked_out_by";

#[tracing::instrument(skip_all)]
pub async fn checkout(app: &App, who: &Principal, request: Uuid, c: Checkout) -> AppResult<Loan> {
    desk(app, who).await?;
    let today = archive_today(app);
    if c.due_date < today {
        return Err(AppError::invalid("due_date", "must not be in the past"));
    }
    unit!(app.db, |tx| {
        #[derive(sqlx::FromRow)]
        struct Row {
            record_id: Uuid,
            requester_id: Uuid,
            kind: String,
            state: String,
            valid_until: Option<DateTime<Utc>>,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT q.record_id, q.requester_id, q.kind, q.state, \
                    (SELECT g.valid_until FROM grants g WHERE g.request_id = q.id AND g.revoked_at IS NULL \
                       AND g.state = 'active' AND g.valid_until > now()) AS valid_until \
             FROM access_requests q WHERE q.id = $1 FOR UPDATE",
        )
        .bind(request)
        .fetch_optional(&mut *tx)
        .await?;
        let Row {
            record_id: record,
            requester_id: borrower,
            kind,
            state,
            valid_until,
        } = match row {
            Some(r) => r,
            None => {
                return Err(tx.not_found(who, ManageLoans::NAME, ("request", request.to_string())))
            }
        };
        // The loan is decided on the record lent.
        let category = crate::records::category_of_record(&mut tx, record).await?;
        tx.authorize::<ManageLoans>(
            &app.policies,
            who,
            Some(&category.resource().of(record)),
            Some(("request", request.to_string())),
        )?;
        if kind != "borrow" {
            return Err(AppError::Conflict("this is not a borrow request".into()));
        }
        let valid_until = match (state.as_str(), valid_until) {
            ("approved", Some(v)) => v,
            ("approved", None) => {
                return Err(AppError::Conflict(
                    "the borrow grant has expired or was revoked".into(),
                ))
            }
            ("pending", _) => {
                return Err(AppError::Conflict(
                    "the request is still waiting for approval".into(),
                ))
            }
            _ => return Err(AppError::Conflict("the request was not approved".into())),
        };
        let last_day = valid_until
            .with_timezone(&app.config.default_tz())
            .date_naive();
        if c.due_date > last_day {
            return Err(AppError::invalid(
                "due_date",
                format!("must be on or before {last_day}, when the grant ends"),
            ));
        }
        let status: Option<(String, Option<Uuid>)> = sqlx::query_as(
            "SELECT status, box_id FROM record_physical WHERE record_id = $1 FOR UPDATE",
        )
        .bind(record)
        .fetch_optional(&mut *tx)
        .await?;
        let (status, box_id) =
            status.ok_or_else(|| AppError::Conflict("the record has no physical file".into()))?;
        match status.as_str() {
            "in_store" => {}
            "on_loan" => return Err(AppError::Conflict("the file is already on loan".into())),
            "missing" => {
                return Err(AppError::Conflict(
                    "the physical file is reported missing".into(),
                ))
            }
            "destroyed" => {
                return Err(AppError::Conflict(
                    "the physical file has been destroyed".into(),
                ))
            }
            _ => {
                return Err(AppError::Conflict(
                    "the physical file is not in store".into(),
                ))
            }
        }
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO loans (id, request_id, record_id, borrower_id, checked_out_by, due_date) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(request)
            .bind(record)
            .bind(borrower)
            .bind(who.user().id)
            .bind(c.due_date)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => AppError::Conflict("the file is already on loan".into()),
                e => e.into(),
            })?;
        move_status(&mut tx, who, record, box_id, "in_store", "on_loan", "lent").await?;
        tx.audit(
            &who.actor(),
            Event::new("loan.checkout", Outcome::Success)
                .object("loan", id)
                .detail(json!({"request": request, "record": record, "borrower": borrower, "due_date": c.due_date})),
        )
        .await?;
        get_in(&mut tx, app, id).await
    })
}

/// The loans desk's permit (archivists); a refusal is audited.
async fn desk(app: &App, who: &Principal) -> AppResult<Permit<ManageLoans>> {
    app.db
        .authorize::<ManageLoans>(&app.policies, who, None, None)
        .await
}

async fn move_status(
    tx: &mut sqlx::PgConnection,
    who: &Principal,
    record: Uuid,
    box_id: Option<Uuid>,
    from: &str,
    to: &str,
    reason: &str,
) -> AppResult<()> {
    sqlx::query("UPDATE record_physical SET status = $2, updated_at = now() WHERE record_id = $1")
        .bind(record)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO physical_moves (id, record_id, from_box_id, to_box_id, from_status, to_status, reason, moved_by) \
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::new_v4())
    .bind(record)
    .bind(box_id)
    .bind(from)
    .bind(to)
    .bind(reason)
    .bind(who.user().id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn get_in(conn: &mut sqlx::PgConnection, app: &App, id: Uuid) -> AppResult<Loan> {
    Ok(sqlx::query_as(&format!(
        "{} WHERE l.id = $1",
        loan_select(archive_today(app))
    ))
    .bind(id)
    .fetch_one(conn)
    .await?)
}

#[tracing::instrument(skip_all)]
pub async fn give_back(app: &App, who: &Principal, request: Uuid, r: Return) -> AppResult<Loan> {
    desk(app, who).await?;
    let condition = r.condition.trim();
    if condition.is_empty() || condition.chars().count() > 1000 {
        return Err(AppError::invalid(
            "condition",
            "describe the file's condition (up to 1000 characters)",
        ));
    }
    unit!(app.db, |tx| {
        // The loan is decided on the record lent; an unknown request is 404, audited.
        let record: Option<Uuid> =
            sqlx::query_scalar("SELECT record_id FROM access_requests WHERE id = $1")
                .bind(request)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(record) = record else {
            return Err(tx.not_found(who, ManageLoans::NAME, ("request", request.to_string())));
        };
        let category = crate::records::category_of_record(&mut tx, record).await?;
        tx.authorize::<ManageLoans>(
            &app.policies,
            who,
            Some(&category.resource().of(record)),
            Some(("request", request.to_string())),
        )?;
        let open: Option<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT id, record_id FROM loans WHERE request_id = $1 AND returned_at IS NULL FOR UPDATE",
        )
        .bind(request)
        .fetch_optional(&mut *tx)
        .await?;
        let (id, record) =
            open.ok_or_else(|| AppError::Conflict("no open loan for this request".into()))?;
        sqlx::query(
            "UPDATE loans SET returned_at = now(), returned_to = $2, condition = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(who.user().id)
        .bind(condition)
        .execute(&mut *tx)
        .await?;
        let box_id: Option<Uuid> =
            sqlx::query_scalar("SELECT box_id FROM record_physical WHERE record_id = $1")
                .bind(record)
                .fetch_one(&mut *tx)
                .await?;
        move_status(
            &mut tx, who, record, box_id, "on_loan", "in_store", "returned",
        )
        .await?;
        sqlx::query(
            "UPDATE grants SET state = 'returned' WHERE request_id = $1 AND state = 'active'",
        )
        .bind(request)
        .execute(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("loan.return", Outcome::Success)
                .object("loan", id)
                .detail(json!({"request": request, "record": record, "condition": condition})),
        )
        .await?;
        get_in(&mut tx, app, id).await
    })
}

/// An approved borrow request whose file may be handed out now.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Ready {
    pub request_id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    pub title: String,
    pub borrower: String,
    pub approved_by: String,
    pub valid_until: DateTime<Utc>,
    /// The latest due date the grant allows.
    pub latest_due: NaiveDate,
}

/// Approved borrow requests with their grant in force and no loan yet: what the loans
/// desk can hand out.
#[tracing::instrument(skip_all)]
pub async fn ready(app: &App, who: &Principal) -> AppResult<Vec<Ready>> {
    desk(app, who).await?;
    unit!(app.db, |tx| {
        Ok(sqlx::query_as(
        "SELECT q.id AS request_id, q.record_id, r.reference, r.title, b.username AS borrower, \
         COALESCE((SELECT string_agg(u.username, ', ' ORDER BY d.decided_at) FROM request_decisions d \
                   JOIN users u ON u.id = d.approver_id WHERE d.request_id = q.id AND d.decision = 'approve'), 'workflow') AS approved_by, \
         g.valid_until, (g.valid_until AT TIME ZONE 'UTC')::date AS latest_due \
         FROM access_requests q JOIN grants g ON g.request_id = q.id JOIN records r ON r.id = q.record_id \
         JOIN users b ON b.id = q.requester_id \
         WHERE q.kind = 'borrow' AND g.state = 'active' AND g.revoked_at IS NULL AND g.valid_until > now() \
           AND NOT EXISTS (SELECT 1 FROM loans l WHERE l.request_id = q.id) \
         ORDER BY g.valid_from LIMIT 500",
    )
    .fetch_all(&mut *tx)
    .await?)
    })
}

#[tracing::instrument(skip_all)]
pub async fn list(app: &App, who: &Principal, overdue_only: bool) -> AppResult<Vec<Loan>> {
    desk(app, who).await?;
    let today = archive_today(app);
    let filter = if overdue_only {
        format!(" WHERE l.returned_at IS NULL AND l.due_date < DATE '{today}'")
    } else {
        String::new()
    };
    unit!(app.db, |tx| Ok(sqlx::query_as(&format!(
        "{}{filter} ORDER BY l.out_at DESC LIMIT 5000",
        loan_select(today)
    ))
    .fetch_all(&mut *tx)
    .await?))
}

/// The loans register (every loan, newest first), for a download; the export is audited.
#[tracing::instrument(skip_all)]
pub async fn register(app: &App, who: &Principal, format: &str) -> AppResult<Vec<Loan>> {
    let loans = list(app, who, false).await?;
    unit!(app.db, |tx| {
        tx.audit(
            &who.actor(),
            Event::new("loan.register_export", Outcome::Success)
                .detail(json!({"rows": loans.len(), "format": format})),
        )
        .await
    })?;
    Ok(loans)
}

/// The columns of the register, as machine names (the API's CSV) and catalog keys.
const REGISTER_COLUMNS: [&str; 11] = [
    "reference",
    "title",
    "borrower",
    "approved_by",
    "checked_out_by",
    "out_at",
    "due_date",
    "returned_at",
    "condition",
    "overdue",
    "holder_left",
];

/// The register as a table. With `ui`, for people: headers in their language, times in
/// their zone, `overdue` as a word; without, for programs: the column names above,
/// RFC 3339 times and `true`/`false`.
pub fn register_sheet(loans: &[Loan], ui: Option<crate::i18n::Ui>) -> crate::sheet::Sheet {
    use crate::i18n::{format_time, tr};
    use crate::sheet::{Cell, Sheet};
    let (name, headers) = match ui {
        Some(ui) => (
            tr(ui.lang, "req-loans-sheet-name", &[]),
            REGISTER_COLUMNS
                .iter()
                .map(|c| tr(ui.lang, &format!("req-loans-col-{c}"), &[]))
                .collect(),
        ),
        None => (
            "loans".to_string(),
            REGISTER_COLUMNS.iter().map(|c| c.to_string()).collect(),
        ),
    };
    let mut sheet = Sheet::new(name, headers);
    let time = |t: DateTime<Utc>| match ui {
        Some(ui) => format_time(ui, t),
        None => t.to_rfc3339(),
    };
    for l in loans {
        let overdue = match ui {
            Some(ui) if l.overdue => tr(ui.lang, "yes", &[]),
            Some(_) => String::new(),
            None => l.overdue.to_string(),
        };
        let holder_left = match ui {
            Some(ui) if l.holder_left => tr(ui.lang, "yes", &[]),
            Some(_) => String::new(),
            None => l.holder_left.to_string(),
        };
        sheet.push(vec![
            Cell::from(l.reference.as_str()),
            Cell::from(l.title.as_str()),
            Cell::from(l.borrower.as_str()),
            Cell::from(l.approved_by.as_str()),
            Cell::from(l.checked_out_by.as_str()),
            Cell::from(time(l.out_at)),
            Cell::from(l.due_date.to_string()),
            Cell::from(l.returned_at.map(time)),
            Cell::from(l.condition.clone()),
            Cell::from(overdue),
            Cell::from(holder_left),
        ]);
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_sheet_is_translated_for_people_and_stable_for_programs() {
        let loan = Loan {
            id: Uuid::nil(),
            request_id: Uuid::nil(),
            record_id: Uuid::nil(),
            reference: "CONTR-1".into(),
            title: "=cmd".into(),
            borrower: "emp".into(),
            checked_out_by: "arch".into(),
            out_at: DateTime::parse_from_rfc3339("2026-11-29T01:30:00Z")
                .unwrap()
                .with_timezone(&Utc),
            due_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            returned_at: None,
            condition: None,
            approved_by: "sup".into(),
            overdue: true,
            holder_left: false,
            borrower_name: "Emp".into(),
        };
        let machine = register_sheet(std::slice::from_ref(&loan), None);
        let csv = String::from_utf8(machine.to_csv()).unwrap();
        assert!(csv.starts_with("\u{FEFF}reference,title,borrower,approved_by"));
        assert!(csv.contains(",'=cmd,") && csv.contains("2026-11-29T01:30:00+00:00"));
        let ui = crate::i18n::Ui::new(crate::i18n::Lang::ZhCn, chrono_tz::Tz::Asia__Shanghai);
        let people = register_sheet(&[loan], Some(ui));
        assert_eq!(people.headers[0], "档号");
        assert_eq!(
            people.rows[0][5],
            crate::sheet::Cell::from("2026-11-29 09:30")
        );
    }
}
