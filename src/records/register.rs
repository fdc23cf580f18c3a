//! The physical register: storerooms, shelves and boxes, where each record's paper file
//! is, and its status. Every move and status change is recorded and audited.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Location, PhysicalStatus, RecordId};
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{EditRecord, GrantState, ManageRegister, Permit, ReadRecord};
use crate::tx::Tx;
use crate::{unit, App};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlace {
    pub storeroom: String,
    #[serde(default)]
    pub shelf: Option<String>,
    #[serde(rename = "box", default)]
    pub box_code: Option<String>,
    /// For a new storeroom.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BoxEntry {
    pub storeroom: String,
    pub storeroom_name: String,
    pub shelf: Option<String>,
    #[serde(rename = "box")]
    pub box_code: Option<String>,
    pub records: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    #[serde(default)]
    pub to: Option<Location>,
    #[serde(default)]
    pub status: Option<PhysicalStatus>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MoveEntry {
    pub moved_at: chrono::DateTime<chrono::Utc>,
    pub from_location: Option<String>,
    pub to_location: Option<String>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    pub moved_by: Option<String>,
}

fn code(field: &str, v: &str) -> AppResult<String> {
    let v = v.trim();
    if v.is_empty()
        || v.len() > 32
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(AppError::invalid(
            field,
            "must be 1 to 32 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(v.to_string())
}

/// Creates a storeroom, a shelf in it, or a box on a shelf (whichever the deepest code given
/// names); the levels above must exist, except that a storeroom is created with its name.
#[tracing::instrument(skip_all)]
pub async fn create_place(app: &App, who: &Principal, p: NewPlace) -> AppResult<Vec<BoxEntry>> {
    app.db
        .authorize::<ManageRegister>(&app.policies, who, None, None)
        .await?;
    let room = code("storeroom", &p.storeroom)?;
    unit!(app.db, |tx| {
        let room_id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM storerooms WHERE code = $1")
            .bind(&room)
            .fetch_optional(&mut *tx)
            .await?;
        let (what, room_id) = match room_id {
            Some(id) => ("storeroom", id),
            None => {
                let id = Uuid::new_v4();
                let name = p.name.clone().unwrap_or_else(|| room.clone());
                sqlx::query(
                    "INSERT INTO storerooms (id, code, name, location) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(&room)
                .bind(name.trim())
                .bind(p.location.clone().unwrap_or_default())
                .execute(&mut *tx)
                .await?;
                ("storeroom", id)
            }
        };
        let mut created = vec![what];
        if let Some(shelf) = &p.shelf {
            let shelf = code("shelf", shelf)?;
            let shelf_id: Uuid = sqlx::query_scalar(
                "INSERT INTO shelves (id, storeroom_id, code) VALUES ($1, $2, $3) \
             ON CONFLICT (storeroom_id, code) DO UPDATE SET code = EXCLUDED.code RETURNING id",
            )
            .bind(Uuid::new_v4())
            .bind(room_id)
            .bind(&shelf)
            .fetch_one(&mut *tx)
            .await?;
            created.push("shelf");
            if let Some(b) = &p.box_code {
                let b = code("box", b)?;
                sqlx::query(
                "INSERT INTO boxes (id, shelf_id, code) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(Uuid::new_v4())
            .bind(shelf_id)
            .bind(&b)
            .execute(&mut *tx)
            .await?;
                created.push("box");
            }
        } else if p.box_code.is_some() {
            return Err(AppError::invalid(
                "shelf",
                "a box needs the shelf it stands on",
            ));
        }
        tx.audit(
            &who.actor(),
            Event::new("register.create", Outcome::Success).detail(json!({
                "storeroom": room, "shelf": p.shelf, "box": p.box_code,
            })),
        )
        .await?;
        Ok(())
    })?;
    list(app, who).await
}

#[tracing::instrument(skip_all)]
pub async fn list(app: &App, who: &Principal) -> AppResult<Vec<BoxEntry>> {
    app.db
        .authorize::<ManageRegister>(&app.policies, who, None, None)
        .await?;
    unit!(app.db, |tx| {
        Ok(sqlx::query_as(
        "SELECT r.code AS storeroom, r.name AS storeroom_name, s.code AS shelf, b.code AS box_code, \
                (SELECT count(*) FROM record_physical p WHERE p.box_id = b.id) AS records \
         FROM storerooms r LEFT JOIN shelves s ON s.storeroom_id = r.id \
         LEFT JOIN boxes b ON b.shelf_id = s.id ORDER BY r.code, s.code, b.code",
    )
    .fetch_all(&mut *tx)
    .await?)
    })
}

#[tracing::instrument(skip_all)]
pub(crate) async fn find_box(conn: &mut PgConnection, loc: &Location) -> AppResult<Uuid> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT b.id FROM boxes b JOIN shelves s ON s.id = b.shelf_id \
         JOIN storerooms r ON r.id = s.storeroom_id \
         WHERE r.code = $1 AND s.code = $2 AND b.code = $3",
    )
    .bind(loc.storeroom.trim())
    .bind(loc.shelf.trim())
    .bind(loc.box_code.trim())
    .fetch_optional(conn)
    .await?;
    id.ok_or_else(|| {
        AppError::invalid(
            "physical.box",
            format!(
                "no box {} on shelf {} in storeroom {} in the register",
                loc.box_code, loc.shelf, loc.storeroom
            ),
        )
    })
}

/// Puts a newly filed record's paper file in a box.
#[tracing::instrument(skip_all)]
pub(crate) async fn place(
    conn: &mut PgConnection,
    who: &Principal,
    record: RecordId,
    box_id: Uuid,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO record_physical (record_id, box_id, status) VALUES ($1, $2, 'in_store')",
    )
    .bind(record)
    .bind(box_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO physical_moves (id, record_id, from_box_id, to_box_id, from_status, to_status, reason, moved_by) \
         VALUES ($1, $2, NULL, $3, NULL, 'in_store', 'filed', $4)",
    )
    .bind(Uuid::new_v4())
    .bind(record)
    .bind(box_id)
    .bind(who.user().id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a record's paper file to another box and/or changes its status.
#[tracing::instrument(skip_all)]
pub async fn move_file(app: &App, who: &Principal, id: RecordId, m: Move) -> AppResult<()> {
    let reason = m.reason.trim();
    if reason.chars().count() < 3 {
        return Err(AppError::invalid("reason", "must say why"));
    }
    if m.to.is_none() && m.status.is_none() {
        return Err(AppError::invalid(
            "to",
            "give a new location, a new status, or both",
        ));
    }
    unit!(app.db, |tx| {
        let (_permit, record, _) =
            super::load_in::<EditRecord>(&mut tx, app, who, id, GrantState::None).await?;
        let current: Option<(Option<Uuid>, String)> = sqlx::query_as(
            "SELECT box_id, status FROM record_physical WHERE record_id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let to_box = match &m.to {
            Some(loc) => Some(find_box(&mut tx, loc).await?),
            None => current.as_ref().and_then(|c| c.0),
        };
        let from_status = current.as_ref().map(|c| c.1.clone());
        let to_status = m
            .status
            .map(|s| s.as_str().to_string())
            .or_else(|| from_status.clone())
            .unwrap_or_else(|| "in_store".into());
        if from_status.as_deref() == Some("on_loan")
            && m.status.is_some_and(|s| s != PhysicalStatus::OnLoan)
            && m.status != Some(PhysicalStatus::Missing)
        {
            return Err(AppError::Conflict(
                "the file is on loan: take it back through the loans desk".into(),
            ));
        }
        if from_status.as_deref() == Some("destroyed") {
            return Err(AppError::Conflict("the file was destroyed".into()));
        }
        sqlx::query(
        "INSERT INTO record_physical (record_id, box_id, status, updated_at) VALUES ($1, $2, $3, now()) \
         ON CONFLICT (record_id) DO UPDATE SET box_id = $2, status = $3, updated_at = now()",
    )
    .bind(id)
    .bind(to_box)
    .bind(&to_status)
    .execute(&mut *tx)
    .await?;
        sqlx::query(
        "INSERT INTO physical_moves (id, record_id, from_box_id, to_box_id, from_status, to_status, reason, moved_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::new_v4())
    .bind(id)
    .bind(current.as_ref().and_then(|c| c.0))
    .bind(to_box)
    .bind(&from_status)
    .bind(&to_status)
    .bind(reason)
    .bind(who.user().id)
    .execute(&mut *tx)
    .await?;
        tx.audit(
            &who.actor(),
            Event::new("record.physical_move", Outcome::Success)
                .object("record", id)
                .detail(json!({
                    "reference": record.reference, "to": m.to, "from_status": from_status,
                    "to_status": to_status, "reason": reason,
                })),
        )
        .await
    })
}

#[tracing::instrument(skip_all)]
pub async fn moves(app: &App, who: &Principal, id: RecordId) -> AppResult<Vec<MoveEntry>> {
    unit!(app.db, |tx| moves_in(&mut tx, app, who, id).await)
}

/// [`moves`] inside the caller's unit of work.
#[tracing::instrument(skip_all)]
pub(crate) async fn moves_in(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: RecordId,
) -> AppResult<Vec<MoveEntry>> {
    let (permit, _, _) = super::load_in::<ReadRecord>(tx, app, who, id, GrantState::None).await?;
    moves_of(tx, &permit).await
}

/// The moves of the record a permit was issued for.
#[tracing::instrument(skip_all)]
pub(crate) async fn moves_of(
    tx: &mut Tx,
    permit: &Permit<ReadRecord>,
) -> AppResult<Vec<MoveEntry>> {
    let record = permit.object().ok_or(AppError::NotFound)?;
    Ok(sqlx::query_as(
        "SELECT m.moved_at, \
           (SELECT r.code || ' / ' || s.code || ' / ' || b.code FROM boxes b JOIN shelves s ON s.id = b.shelf_id JOIN storerooms r ON r.id = s.storeroom_id WHERE b.id = m.from_box_id) AS from_location, \
           (SELECT r.code || ' / ' || s.code || ' / ' || b.code FROM boxes b JOIN shelves s ON s.id = b.shelf_id JOIN storerooms r ON r.id = s.storeroom_id WHERE b.id = m.to_box_id) AS to_location, \
           m.from_status, m.to_status, m.reason, u.username AS moved_by \
         FROM physical_moves m LEFT JOIN users u ON u.id = m.moved_by \
         WHERE m.record_id = $1 ORDER BY m.moved_at, m.id",
    )
    .bind(record)
    .fetch_all(&mut **tx)
    .await?)
}
