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
use crate::policy::{GrantState, HoldRecord, ReadRecord, ReadRetention};
use crate::records::model::{CategoryId, RecordId};
use crate::tx::Tx;
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

/// What a hold is on: the column of `legal_holds` that names it, and its audit object.
#[derive(Clone, Copy)]
enum On {
    Record,
    Category,
}

impl On {
    fn kind(self) -> &'static str {
        match self {
            On::Record => "record",
            On::Category => "category",
        }
    }

    fn column(self) -> &'static str {
        match self {
            On::Record => "record_id",
            On::Category => "category_id",
        }
    }

    /// The refusals: already held; no hold of its own to release.
    fn conflicts(self) -> (&'static str, &'static str) {
        match self {
            On::Record => (
                "the record is already under a legal hold",
                "the record is not under a legal hold of its own",
            ),
            On::Category => (
                "the category is already under a legal hold",
                "the category is not under a legal hold",
            ),
        }
    }

    fn actions(self) -> (&'static str, &'static str) {
        match self {
            On::Record => ("record.hold", "record.hold_release"),
            On::Category => ("category.hold", "category.hold_release"),
        }
    }
}

/// Records a hold on `id` and audits it; 409 when one is already in force there.
async fn place(
    tx: &mut Tx,
    who: &Principal,
    on: On,
    id: Uuid,
    reason: &str,
    label: (&'static str, String),
) -> AppResult<Hold> {
    let hold_id = Uuid::new_v4();
    let placed = sqlx::query(&format!(
        "INSERT INTO legal_holds (id, {}, reason, placed_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
        on.column()
    ))
    .bind(hold_id)
    .bind(id)
    .bind(reason)
    .bind(who.user().id)
    .execute(&mut **tx)
    .await?;
    if placed.rows_affected() == 0 {
        return Err(AppError::Conflict(on.conflicts().0.into()));
    }
    let mut detail = json!({"hold": hold_id, "reason": reason});
    detail[label.0] = json!(label.1);
    tx.audit(
        &who.actor(),
        Event::new(on.actions().0, Outcome::Success)
            .object(on.kind(), id)
            .detail(detail),
    )
    .await?;
    one(tx, hold_id).await
}

/// Ends the hold in force on `id` and audits it; 409 when there is none of its own.
async fn release(
    tx: &mut Tx,
    who: &Principal,
    on: On,
    id: Uuid,
    label: (&'static str, String),
) -> AppResult<Hold> {
    let released: Option<Uuid> = sqlx::query_scalar(&format!(
        "UPDATE legal_holds SET released_by = $2, released_at = now() \
         WHERE {} = $1 AND released_at IS NULL RETURNING id",
        on.column()
    ))
    .bind(id)
    .bind(who.user().id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(hold_id) = released else {
        return Err(AppError::Conflict(on.conflicts().1.into()));
    };
    let mut detail = json!({"hold": hold_id});
    detail[label.0] = json!(label.1);
    tx.audit(
        &who.actor(),
        Event::new(on.actions().1, Outcome::Success)
            .object(on.kind(), id)
            .detail(detail),
    )
    .await?;
    one(tx, hold_id).await
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
        let label = ("reference", record.reference);
        place(&mut tx, who, On::Record, id.0, &reason, label).await
    })
}

/// Releases the legal hold on record `id`.
#[tracing::instrument(skip_all, fields(record = %id))]
pub async fn release_record(app: &App, who: &Principal, id: RecordId) -> AppResult<Hold> {
    unit!(app.db, |tx| {
        let (_permit, record, _) =
            crate::records::load_in::<HoldRecord>(&mut tx, app, who, id, GrantState::None).await?;
        let label = ("reference", record.reference);
        release(&mut tx, who, On::Record, id.0, label).await
    })
}

/// The category `id`'s code, once the caller may hold it: a supervisor of its department
/// (404, audited, when there is none).
async fn held_category(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: CategoryId,
    action: &'static str,
) -> AppResult<(&'static str, String)> {
    let category = match crate::records::categories::get_in(tx, id).await {
        Ok(c) => c,
        Err(AppError::NotFound) => {
            return Err(tx.not_found(who, action, ("category", id.to_string())))
        }
        Err(e) => return Err(e),
    };
    tx.authorize::<HoldRecord>(
        &app.policies,
        who,
        Some(&category.resource()),
        Some(("category", id.to_string())),
    )?;
    Ok(("code", category.code))
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
        let label = held_category(&mut tx, app, who, id, "category.hold").await?;
        place(&mut tx, who, On::Category, id.0, &reason, label).await
    })
}

/// Releases the legal hold on category `id`.
#[tracing::instrument(skip_all, fields(category = %id))]
pub async fn release_category(app: &App, who: &Principal, id: CategoryId) -> AppResult<Hold> {
    unit!(app.db, |tx| {
        let label = held_category(&mut tx, app, who, id, "category.hold_release").await?;
        release(&mut tx, who, On::Category, id.0, label).await
    })
}

/// The holds in force on whole categories, oldest first: shown beside the retention list
/// (`retention.read`), whose records they keep from destruction. Only those on categories
/// whose records `who` may read (a hold's reason may name the matter).
#[tracing::instrument(skip_all)]
pub async fn on_categories(app: &App, who: &Principal) -> AppResult<Vec<Hold>> {
    unit!(app.db, |tx| {
        tx.authorize::<ReadRetention>(&app.policies, who, None, None)?;
        let holds: Vec<Hold> = sqlx::query_as(&format!(
            "{HOLD_SELECT} WHERE h.released_at IS NULL AND h.category_id IS NOT NULL \
             ORDER BY h.placed_at"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let categories = crate::records::categories::all_in(&mut tx).await?;
        Ok(holds
            .into_iter()
            .filter(|h| {
                categories.iter().any(|c| {
                    Some(c.id.0) == h.category_id
                        && app.policies.allows::<ReadRecord>(who, &c.resource())
                })
            })
            .collect())
    })
}
