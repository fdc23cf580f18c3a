//! Legal holds: on one record, or on a whole category (every record filed under it or
//! below it in the tree). Placed and released by supervisors (`record.hold`), audited;
//! a hold in force stops the record's destruction and suspends its retention end.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{GrantState, HoldRecord};
use crate::records::model::{CategoryId, RecordId};
use crate::{unit, App};

/// A legal hold, as the record page and the API show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Hold {
    pub id: Uuid,
    /// The record held (a hold on one record).
    pub record_id: Option<Uuid>,
    /// The category held (a hold on a whole category), with its code.
    pub category_id: Option<Uuid>,
    pub category_code: Option<String>,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: DateTime<Utc>,
    pub released_by: Option<String>,
    pub released_at: Option<DateTime<Utc>>,
}

const HOLD_SELECT: &str =
    "SELECT h.id, h.record_id, h.category_id, c.code AS category_code, h.reason, \
     p.username AS placed_by, h.placed_at, rl.username AS released_by, h.released_at \
     FROM legal_holds h JOIN users p ON p.id = h.placed_by \
     LEFT JOIN users rl ON rl.id = h.released_by \
     LEFT JOIN categories c ON c.id = h.category_id";

/// The holds in force on record `record`: its own and those of its category and every
/// category above it. Oldest first.
pub(crate) async fn in_force(conn: &mut PgConnection, record: RecordId) -> AppResult<Vec<Hold>> {
    Ok(sqlx::query_as(&format!(
        "WITH RECURSIVE up(id) AS ( \
             SELECT category_id FROM records WHERE id = $1 \
             UNION SELECT c.parent_id FROM categories c JOIN up ON c.id = up.id \
             WHERE c.parent_id IS NOT NULL) \
         {HOLD_SELECT} WHERE h.released_at IS NULL \
           AND (h.record_id = $1 OR h.category_id IN (SELECT id FROM up)) \
         ORDER BY h.placed_at"
    ))
    .bind(record)
    .fetch_all(conn)
    .await?)
}

fn check_reason(reason: &str) -> AppResult<String> {
    let r = reason.trim();
    let n = r.chars().count();
    if !(3..=2000).contains(&n) {
        return Err(AppError::invalid(
            "reason",
            "say why the hold is placed, in 3 to 2000 characters",
        ));
    }
    Ok(r.to_string())
}

async fn one(conn: &mut PgConnection, id: Uuid) -> AppResult<Hold> {
    sqlx::query_as(&format!("{HOLD_SELECT} WHERE h.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(AppError::NotFound)
}

/// Places a legal hold on record `id`.
#[tracing::instrument(skip_all, fields(record = %id))]
pub async fn hold_record(
    app: &App,
    who: &Principal,
    id: RecordId,
    reason: &str,
) -> AppResult<Hold> {
    let reason = check_reason(reason)?;
    unit!(app.db, |tx| {
        let (_permit, record, _) =
            crate::records::load_in::<HoldRecord>(&mut tx, app, who, id, GrantState::None).await?;
        super::refuse_if_destroyed(&mut tx, id).await?;
        let hold_id = Uuid::new_v4();
        let placed = sqlx::query(
            "INSERT INTO legal_holds (id, record_id, reason, placed_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(hold_id)
        .bind(id)
        .bind(&reason)
        .bind(who.user().id)
        .execute(&mut *tx)
        .await?;
        if placed.rows_affected() == 0 {
            return Err(AppError::Conflict(
                "the record is already under a legal hold".into(),
            ));
        }
        tx.audit(
            &who.actor(),
            Event::new("record.hold", Outcome::Success)
                .object("record", id)
                .detail(json!({"hold": hold_id, "reference": record.reference, "reason": reason})),
        )
        .await?;
        one(&mut tx, hold_id).await
    })
}

/// Releases the legal hold on record `id`.
#[tracing::instrument(skip_all, fields(record = %id))]
pub async fn release_record(app: &App, who: &Principal, id: RecordId) -> AppResult<Hold> {
    unit!(app.db, |tx| {
        let (_permit, record, _) =
            crate::records::load_in::<HoldRecord>(&mut tx, app, who, id, GrantState::None).await?;
        let released: Option<Uuid> = sqlx::query_scalar(
            "UPDATE legal_holds SET released_by = $2, released_at = now() \
             WHERE record_id = $1 AND released_at IS NULL RETURNING id",
        )
        .bind(id)
        .bind(who.user().id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(hold_id) = released else {
            return Err(AppError::Conflict(
                "the record is not under a legal hold of its own".into(),
            ));
        };
        tx.audit(
            &who.actor(),
            Event::new("record.hold_release", Outcome::Success)
                .object("record", id)
                .detail(json!({"hold": hold_id, "reference": record.reference})),
        )
        .await?;
        one(&mut tx, hold_id).await
    })
}

/// Places a legal hold on category `id` (and so on every record under it).
#[tracing::instrument(skip_all, fields(category = %id))]
pub async fn hold_category(
    app: &App,
    who: &Principal,
    id: CategoryId,
    reason: &str,
) -> AppResult<Hold> {
    let reason = check_reason(reason)?;
    unit!(app.db, |tx| {
        tx.authorize::<HoldRecord>(&app.policies, who, None, Some(("category", id.to_string())))?;
        let category = match crate::records::categories::get_in(&mut tx, id).await {
            Ok(c) => c,
            Err(AppError::NotFound) => {
                return Err(tx.not_found(who, "category.hold", ("category", id.to_string())))
            }
            Err(e) => return Err(e),
        };
        let hold_id = Uuid::new_v4();
        let placed = sqlx::query(
            "INSERT INTO legal_holds (id, category_id, reason, placed_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(hold_id)
        .bind(id)
        .bind(&reason)
        .bind(who.user().id)
        .execute(&mut *tx)
        .await?;
        if placed.rows_affected() == 0 {
            return Err(AppError::Conflict(
                "the category is already under a legal hold".into(),
            ));
        }
        tx.audit(
            &who.actor(),
            Event::new("category.hold", Outcome::Success)
                .object("category", id)
                .detail(json!({"hold": hold_id, "code": category.code, "reason": reason})),
        )
        .await?;
        one(&mut tx, hold_id).await
    })
}

/// Releases the legal hold on category `id`.
#[tracing::instrument(skip_all, fields(category = %id))]
pub async fn release_category(app: &App, who: &Principal, id: CategoryId) -> AppResult<Hold> {
    unit!(app.db, |tx| {
        tx.authorize::<HoldRecord>(&app.policies, who, None, Some(("category", id.to_string())))?;
        match crate::records::categories::get_in(&mut tx, id).await {
            Ok(_) => {}
            Err(AppError::NotFound) => {
                return Err(tx.not_found(
                    who,
                    "category.hold_release",
                    ("category", id.to_string()),
                ))
            }
            Err(e) => return Err(e),
        }
        let released: Option<Uuid> = sqlx::query_scalar(
            "UPDATE legal_holds SET released_by = $2, released_at = now() \
             WHERE category_id = $1 AND released_at IS NULL RETURNING id",
        )
        .bind(id)
        .bind(who.user().id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(hold_id) = released else {
            return Err(AppError::Conflict(
                "the category is not under a legal hold".into(),
            ));
        };
        tx.audit(
            &who.actor(),
            Event::new("category.hold_release", Outcome::Success)
                .object("category", id)
                .detail(json!({"hold": hold_id})),
        )
        .await?;
        one(&mut tx, hold_id).await
    })
}
