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
}

const LOAN_SELECT: &str = "SELECT l.id, l.request_id, l.record_id, r.reference, r.title, b.username AS borrower, \
     c.username AS checked_out_by, l.out_at, l.due_date, l.returned_at, l.condition, \
     COALESCE((SELECT string_agg(u.username, ', ' ORDER BY d.decided_at) FROM request_decisions d \
               JOIN users u ON u.id = d.approver_id WHERE d.request_id = l.request_id AND d.decision = 'approve'), 'workflow') AS approved_by, \
     (l.returned_at IS NULL AND l.due_date < current_date) AS overdue \
     FROM loans l JOIN records r ON r.id = l.record_id JOIN users b ON b.id = l.borrower_id \
     JOIN users c ON c.id = l.checked_out_by";

#[tracing::instrument(skip_all)]
pub async fn checkout(app: &App, who: &Principal, request: Uuid, c: Checkout) -> AppResult<Loan> {
    desk(app, who).await?;
    if c.due_date < Utc::now().date_naive() {
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
            (s, _) => {
                return Err(AppError::Conflict(format!(
                    "the request is {s}, not approved"
                )))
            }
        };
        if c.due_date > valid_until.date_naive() {
            return Err(AppError::invalid(
                "due_date",
                format!(
                    "must be on or before {}, when the grant ends",
                    valid_until.date_naive()
                ),
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
        if status != "in_store" {
            return Err(AppError::Conflict(format!("the physical file is {status}")));
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
        get_in(&mut tx, id).await
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

async fn get_in(conn: &mut sqlx::PgConnection, id: Uuid) -> AppResult<Loan> {
    Ok(sqlx::query_as(&format!("{LOAN_SELECT} WHERE l.id = $1"))
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
        get_in(&mut tx, id).await
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
    let filter = if overdue_only {
        " WHERE l.returned_at IS NULL AND l.due_date < current_date"
    } else {
        ""
    };
    unit!(app.db, |tx| Ok(sqlx::query_as(&format!(
        "{LOAN_SELECT}{filter} ORDER BY l.out_at DESC LIMIT 5000"
    ))
    .fetch_all(&mut *tx)
    .await?))
}

/// A cell a spreadsheet will not run as a formula.
fn cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The loans register as CSV.
#[tracing::instrument(skip_all)]
pub async fn register_csv(app: &App, who: &Principal) -> AppResult<String> {
    let loans = list(app, who, false).await?;
    let mut out = String::from("reference,title,borrower,approved_by,checked_out_by,out_at,due_date,returned_at,condition,overdue\n");
    for l in &loans {
        let row = [
            cell(&l.reference),
            cell(&l.title),
            cell(&l.borrower),
            cell(&l.approved_by),
            cell(&l.checked_out_by),
            l.out_at.to_rfc3339(),
            l.due_date.to_string(),
            l.returned_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            cell(l.condition.as_deref().unwrap_or("")),
            l.overdue.to_string(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    unit!(app.db, |tx| {
        tx.audit(
            &who.actor(),
            Event::new("loan.register_export", Outcome::Success)
                .detail(json!({"rows": loans.len()})),
        )
        .await
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_cells_are_neither_formulas_nor_broken() {
        assert_eq!(
            super::cell("=HYPERLINK(\"x\")"),
            "\"'=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(super::cell("a,b"), "\"a,b\"");
        assert_eq!(super::cell("plain"), "plain");
    }
}
