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
use crate::policy::{Action, EditRecord, GrantState, ManageRegister, Permit, ReadRecord};
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
    // The same rules as the register pages: a name given is not blank and at most 100
    // characters, a location at most 200, neither with control or bidirectional characters.
    let given_name = p
        .name
        .as_deref()
        .map(|n| display_name(n, true))
        .transpose()?;
    let location = match p.location.as_deref().map(str::trim) {
        Some(l) if l.chars().count() > 200 => {
            return Err(AppError::invalid(
                "location",
                "must be at most 200 characters",
            ))
        }
        Some(l) => {
            crate::text::check("location", l, crate::text::Lines::Single)?;
            l.to_string()
        }
        None => String::new(),
    };
    unit!(app.db, |tx| {
        let room_id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM storerooms WHERE code = $1")
            .bind(&room)
            .fetch_optional(&mut *tx)
            .await?;
        let (what, room_id) = match room_id {
            Some(id) => ("storeroom", id),
            None => {
                let id = Uuid::new_v4();
                let name = given_name.clone().unwrap_or_else(|| room.clone());
                sqlx::query(
                    "INSERT INTO storerooms (id, code, name, location) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(&room)
                .bind(&name)
                .bind(&location)
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
    if m.status == Some(PhysicalStatus::Destroyed) {
        // Destruction is supervised: it comes only from an approved destroy request, carried
        // out with a witness (`crate::lifecycle::destruction`).
        return Err(AppError::invalid(
            "status",
            "a paper file is marked destroyed only by a destruction under an approved destroy request",
        ));
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

// ---------------------------------------------------------------------------------------
// The register as people keep it: storerooms, shelves and boxes by id, each with a code
// (the stable key that filing, import, search and labels use, never changed) and a display
// name (free text, Chinese allowed, which may be changed: `register.rename`).

/// A level of the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Storeroom,
    Shelf,
    Box,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Storeroom => "storeroom",
            Level::Shelf => "shelf",
            Level::Box => "box",
        }
    }
    fn table(self) -> &'static str {
        match self {
            Level::Storeroom => "storerooms",
            Level::Shelf => "shelves",
            Level::Box => "boxes",
        }
    }
    /// The condition on `b` (boxes), `s` (shelves) and `r` (storerooms) that keeps the
    /// boxes under a place of this level whose id is `$1`.
    fn under(self) -> &'static str {
        match self {
            Level::Storeroom => "r.id = $1",
            Level::Shelf => "s.id = $1",
            Level::Box => "b.id = $1",
        }
    }
}

/// What it takes to add a storeroom, a shelf or a box.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub code: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A new display name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub name: String,
}

/// A box in the listing.
#[derive(Debug, Clone, Serialize)]
pub struct BoxNode {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub records: i64,
}

/// A shelf in the listing, with its boxes.
#[derive(Debug, Clone, Serialize)]
pub struct ShelfNode {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub records: i64,
    pub boxes: Vec<BoxNode>,
}

/// A storeroom in the listing, with its shelves.
#[derive(Debug, Clone, Serialize)]
pub struct StoreroomNode {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub records: i64,
    pub shelves: Vec<ShelfNode>,
}

/// One place of the register: where it is, its name, what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct Place {
    pub id: Uuid,
    pub level: Level,
    pub code: String,
    pub name: String,
    pub storeroom: PlaceRef,
    pub shelf: Option<PlaceRef>,
    /// Paper files in this place (all of them, whoever may see which).
    pub records: i64,
    /// The shelves of a storeroom, the boxes of a shelf (none for a box).
    pub children: Vec<BoxNode>,
}

/// A place above another, for the path and its links.
#[derive(Debug, Clone, Serialize)]
pub struct PlaceRef {
    pub id: Uuid,
    pub code: String,
    pub name: String,
}

/// A paper file in a place.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Content {
    pub record_id: Uuid,
    pub reference: String,
    pub title: String,
    pub status: String,
    pub shelf: String,
    #[serde(rename = "box")]
    pub box_code: String,
}

/// The paper files of a place that the caller may see, a page at a time.
#[derive(Debug, Clone, Serialize)]
pub struct Contents {
    pub place: Place,
    pub records: Vec<Content>,
    pub page: i64,
    pub has_more: bool,
    /// Files in the place the caller may not see (counted, not listed).
    pub hidden: i64,
}

/// Rows of a contents page.
pub const CONTENTS_PAGE: i64 = 100;

/// A display name: trimmed, at most 100 characters, no control characters; empty is
/// refused when `required`.
fn display_name(v: &str, required: bool) -> AppResult<String> {
    let v = v.trim();
    if required && v.is_empty() {
        return Err(AppError::invalid("name", "the name must not be empty"));
    }
    if v.chars().count() > 100 {
        return Err(AppError::invalid("name", "must be at most 100 characters"));
    }
    crate::text::check("name", v, crate::text::Lines::Single)?;
    Ok(v.to_string())
}

async fn authorize_register(
    app: &App,
    who: &Principal,
    object: Option<(Level, Uuid)>,
) -> AppResult<()> {
    app.db
        .authorize::<ManageRegister>(
            &app.policies,
            who,
            None,
            object.map(|(l, id)| (l.as_str(), id.to_string())),
        )
        .await
        .map(|_| ())
}

/// The whole register, storerooms with their shelves and boxes and the number of paper
/// files in each.
#[tracing::instrument(skip_all)]
pub async fn tree(app: &App, who: &Principal) -> AppResult<Vec<StoreroomNode>> {
    authorize_register(app, who, None).await?;
    unit!(app.db, |tx| tree_in(&mut tx).await)
}

type TreeRow = (
    Uuid,
    String,
    String,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    i64,
);

async fn tree_in(tx: &mut Tx) -> AppResult<Vec<StoreroomNode>> {
    let rows: Vec<TreeRow> = sqlx::query_as(
        "SELECT r.id, r.code, r.name, s.id, s.code, s.name, b.id, b.code, b.name, \
                (SELECT count(*) FROM record_physical p WHERE p.box_id = b.id) \
         FROM storerooms r LEFT JOIN shelves s ON s.storeroom_id = r.id \
         LEFT JOIN boxes b ON b.shelf_id = s.id ORDER BY r.code, s.code, b.code",
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut out: Vec<StoreroomNode> = Vec::new();
    for (rid, rcode, rname, sid, scode, sname, bid, bcode, bname, n) in rows {
        if out.last().is_none_or(|r| r.id != rid) {
            out.push(StoreroomNode {
                id: rid,
                code: rcode,
                name: rname,
                records: 0,
                shelves: Vec::new(),
            });
        }
        let Some(room) = out.last_mut() else { continue };
        room.records += n;
        let Some(sid) = sid else { continue };
        if room.shelves.last().is_none_or(|s| s.id != sid) {
            room.shelves.push(ShelfNode {
                id: sid,
                code: scode.unwrap_or_default(),
                name: sname.unwrap_or_default(),
                records: 0,
                boxes: Vec::new(),
            });
        }
        let Some(shelf) = room.shelves.last_mut() else {
            continue;
        };
        shelf.records += n;
        if let Some(bid) = bid {
            shelf.boxes.push(BoxNode {
                id: bid,
                code: bcode.unwrap_or_default(),
                name: bname.unwrap_or_default(),
                records: n,
            });
        }
    }
    Ok(out)
}

/// Adds a storeroom. A code already in the register is refused (on the `code` field).
#[tracing::instrument(skip_all)]
pub async fn create_storeroom(app: &App, who: &Principal, new: NewEntry) -> AppResult<Place> {
    authorize_register(app, who, None).await?;
    add(app, who, Level::Storeroom, None, new).await
}

/// Adds a shelf to a storeroom.
#[tracing::instrument(skip_all)]
pub async fn create_shelf(
    app: &App,
    who: &Principal,
    storeroom: Uuid,
    new: NewEntry,
) -> AppResult<Place> {
    authorize_register(app, who, Some((Level::Storeroom, storeroom))).await?;
    add(app, who, Level::Shelf, Some(storeroom), new).await
}

/// Adds a box to a shelf.
#[tracing::instrument(skip_all)]
pub async fn create_box(
    app: &App,
    who: &Principal,
    shelf: Uuid,
    new: NewEntry,
) -> AppResult<Place> {
    authorize_register(app, who, Some((Level::Shelf, shelf))).await?;
    add(app, who, Level::Box, Some(shelf), new).await
}

async fn add(
    app: &App,
    who: &Principal,
    level: Level,
    parent: Option<Uuid>,
    new: NewEntry,
) -> AppResult<Place> {
    let code = code("code", &new.code)?;
    let name = display_name(new.name.as_deref().unwrap_or(""), level == Level::Storeroom)?;
    let id = Uuid::new_v4();
    unit!(app.db, |tx| {
        let (sql, parent_level) = match level {
            Level::Storeroom => (
                "INSERT INTO storerooms (id, code, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (code) DO NOTHING RETURNING id",
                None,
            ),
            Level::Shelf => (
                "INSERT INTO shelves (id, code, name, storeroom_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (storeroom_id, code) DO NOTHING RETURNING id",
                Some(Level::Storeroom),
            ),
            Level::Box => (
                "INSERT INTO boxes (id, code, name, shelf_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (shelf_id, code) DO NOTHING RETURNING id",
                Some(Level::Shelf),
            ),
        };
        if let (Some(pl), Some(pid)) = (parent_level, parent) {
            let exists: Option<Uuid> = sqlx::query_scalar(&format!(
                "SELECT id FROM {} WHERE id = $1 FOR SHARE",
                pl.table()
            ))
            .bind(pid)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(tx.not_found(
                    who,
                    ManageRegister::NAME,
                    (pl.as_str(), pid.to_string()),
                ));
            }
        }
        let mut q = sqlx::query_scalar::<_, Uuid>(sql)
            .bind(id)
            .bind(&code)
            .bind(&name);
        if let Some(pid) = parent {
            q = q.bind(pid);
        }
        if q.fetch_optional(&mut *tx).await?.is_none() {
            let within = match level {
                Level::Storeroom => "in the register",
                Level::Shelf => "in this storeroom",
                Level::Box => "on this shelf",
            };
            return Err(AppError::invalid(
                "code",
                format!("{code} is already used {within}"),
            ));
        }
        let place = place_in(&mut tx, level, id)
            .await?
            .ok_or(AppError::NotFound)?;
        tx.audit(
            &who.actor(),
            Event::new("register.create", Outcome::Success)
                .object(level.as_str(), id)
                .detail(json!({
                    "level": level.as_str(), "code": code, "name": name,
                    "storeroom": place.storeroom.code,
                    "shelf": place.shelf.as_ref().map(|s| s.code.clone()),
                })),
        )
        .await?;
        Ok(place)
    })
}

/// Gives a storeroom, a shelf or a box a new display name (its code does not change).
#[tracing::instrument(skip_all)]
pub async fn rename(
    app: &App,
    who: &Principal,
    level: Level,
    id: Uuid,
    r: Rename,
) -> AppResult<Place> {
    authorize_register(app, who, Some((level, id))).await?;
    let name = display_name(&r.name, true)?;
    unit!(app.db, |tx| {
        let old: Option<String> = sqlx::query_scalar(&format!(
            "SELECT name FROM {} WHERE id = $1 FOR UPDATE",
            level.table()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(old) = old else {
            return Err(tx.not_found(who, ManageRegister::NAME, (level.as_str(), id.to_string())));
        };
        sqlx::query(&format!(
            "UPDATE {} SET name = $2 WHERE id = $1",
            level.table()
        ))
        .bind(id)
        .bind(&name)
        .execute(&mut *tx)
        .await?;
        let place = place_in(&mut tx, level, id)
            .await?
            .ok_or(AppError::NotFound)?;
        tx.audit(
            &who.actor(),
            Event::new("register.rename", Outcome::Success)
                .object(level.as_str(), id)
                .detail(json!({
                    "level": level.as_str(), "code": place.code, "from": old, "to": name,
                })),
        )
        .await?;
        Ok(place)
    })
}

/// One place, with the paper files in it that the caller may see (`page` from 1); the
/// reading is audited (`register.contents`).
#[tracing::instrument(skip_all)]
pub async fn contents(
    app: &App,
    who: &Principal,
    level: Level,
    id: Uuid,
    page: Option<i64>,
) -> AppResult<Contents> {
    authorize_register(app, who, Some((level, id))).await?;
    let page = page.unwrap_or(1).clamp(1, 100_000);
    unit!(app.db, |tx| {
        let Some(place) = place_in(&mut tx, level, id).await? else {
            return Err(tx.not_found(who, ManageRegister::NAME, (level.as_str(), id.to_string())));
        };
        let visible: Vec<Uuid> = super::categories::all_in(&mut tx)
            .await?
            .iter()
            .filter(|c| app.policies.allows::<ReadRecord>(who, &c.resource()))
            .map(|c| c.id.0)
            .collect();
        let from = "FROM record_physical p JOIN records x ON x.id = p.record_id \
                    JOIN boxes b ON b.id = p.box_id JOIN shelves s ON s.id = b.shelf_id \
                    JOIN storerooms r ON r.id = s.storeroom_id";
        let mut records: Vec<Content> = sqlx::query_as(&format!(
            "SELECT x.id AS record_id, x.reference, x.title, p.status, s.code AS shelf, \
                    b.code AS box_code {from} WHERE {} AND x.category_id = ANY($2) \
             ORDER BY s.code, b.code, x.reference LIMIT $3 OFFSET $4",
            level.under()
        ))
        .bind(id)
        .bind(&visible)
        .bind(CONTENTS_PAGE + 1)
        .bind((page - 1) * CONTENTS_PAGE)
        .fetch_all(&mut *tx)
        .await?;
        let has_more = records.len() as i64 > CONTENTS_PAGE;
        records.truncate(CONTENTS_PAGE as usize);
        let seen: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) {from} WHERE {} AND x.category_id = ANY($2)",
            level.under()
        ))
        .bind(id)
        .bind(&visible)
        .fetch_one(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("register.contents", Outcome::Success)
                .object(level.as_str(), id)
                .detail(json!({"code": place.code, "page": page, "listed": records.len()})),
        )
        .await?;
        Ok(Contents {
            hidden: (place.records - seen).max(0),
            place,
            records,
            page,
            has_more,
        })
    })
}

async fn place_in(tx: &mut Tx, level: Level, id: Uuid) -> AppResult<Option<Place>> {
    type Row = (
        Uuid,
        String,
        String,
        Uuid,
        String,
        String,
        Option<Uuid>,
        Option<String>,
        Option<String>,
    );
    let sql = match level {
        Level::Storeroom => {
            "SELECT r.id, r.code, r.name, r.id, r.code, r.name, NULL::uuid, NULL::text, NULL::text \
             FROM storerooms r WHERE r.id = $1"
        }
        Level::Shelf => {
            "SELECT s.id, s.code, s.name, r.id, r.code, r.name, NULL::uuid, NULL::text, NULL::text \
             FROM shelves s JOIN storerooms r ON r.id = s.storeroom_id WHERE s.id = $1"
        }
        Level::Box => {
            "SELECT b.id, b.code, b.name, r.id, r.code, r.name, s.id, s.code, s.name \
             FROM boxes b JOIN shelves s ON s.id = b.shelf_id \
             JOIN storerooms r ON r.id = s.storeroom_id WHERE b.id = $1"
        }
    };
    let row: Option<Row> = sqlx::query_as(sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    let Some((pid, code, name, rid, rcode, rname, sid, scode, sname)) = row else {
        return Ok(None);
    };
    let records: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM record_physical p JOIN boxes b ON b.id = p.box_id \
         JOIN shelves s ON s.id = b.shelf_id JOIN storerooms r ON r.id = s.storeroom_id WHERE {}",
        level.under()
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let children_sql = match level {
        Level::Storeroom => Some(
            "SELECT s.id, s.code, s.name, (SELECT count(*) FROM record_physical p \
               JOIN boxes b ON b.id = p.box_id WHERE b.shelf_id = s.id) \
             FROM shelves s WHERE s.storeroom_id = $1 ORDER BY s.code",
        ),
        Level::Shelf => Some(
            "SELECT b.id, b.code, b.name, (SELECT count(*) FROM record_physical p WHERE p.box_id = b.id) \
             FROM boxes b WHERE b.shelf_id = $1 ORDER BY b.code",
        ),
        Level::Box => None,
    };
    let children = match children_sql {
        Some(sql) => {
            let rows: Vec<(Uuid, String, String, i64)> =
                sqlx::query_as(sql).bind(id).fetch_all(&mut **tx).await?;
            rows.into_iter()
                .map(|(id, code, name, records)| BoxNode {
                    id,
                    code,
                    name,
                    records,
                })
                .collect()
        }
        None => Vec::new(),
    };
    let shelf = match (level, sid) {
        (Level::Box, Some(sid)) => Some(PlaceRef {
            id: sid,
            code: scode.unwrap_or_default(),
            name: sname.unwrap_or_default(),
        }),
        (Level::Shelf, _) => Some(PlaceRef {
            id: pid,
            code: code.clone(),
            name: name.clone(),
        }),
        _ => None,
    };
    Ok(Some(Place {
        id: pid,
        level,
        code,
        name,
        storeroom: PlaceRef {
            id: rid,
            code: rcode,
            name: rname,
        },
        shelf,
        records,
        children,
    }))
}

/// The register listing as CSV (UTF-8 with a byte-order mark, so spreadsheets read Chinese
/// names right): one line per box, and one per storeroom or shelf that holds none.
/// Audited as `register.export`.
#[tracing::instrument(skip_all)]
pub async fn csv(app: &App, who: &Principal) -> AppResult<String> {
    authorize_register(app, who, None).await?;
    unit!(app.db, |tx| {
        let tree = tree_in(&mut tx).await?;
        let mut out = String::from(
            "\u{feff}storeroom,storeroom_name,shelf,shelf_name,box,box_name,records\n",
        );
        let mut lines = 0usize;
        let mut line = |cells: [&str; 6], n: i64| {
            let row: Vec<String> = cells.iter().map(|c| crate::sheet::csv_field(c)).collect();
            out.push_str(&row.join(","));
            out.push(',');
            out.push_str(&n.to_string());
            out.push('\n');
            lines += 1;
        };
        for r in &tree {
            if r.shelves.is_empty() {
                line([&r.code, &r.name, "", "", "", ""], 0);
            }
            for s in &r.shelves {
                if s.boxes.is_empty() {
                    line([&r.code, &r.name, &s.code, &s.name, "", ""], 0);
                }
                for b in &s.boxes {
                    line(
                        [&r.code, &r.name, &s.code, &s.name, &b.code, &b.name],
                        b.records,
                    );
                }
            }
        }
        tx.audit(
            &who.actor(),
            Event::new("register.export", Outcome::Success).detail(json!({"rows": lines})),
        )
        .await?;
        Ok(out)
    })
}

#[cfg(test)]
mod register_tests {
    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            super::display_name("  一号库房 ", true).unwrap(),
            "一号库房"
        );
        assert!(super::display_name("  ", true).is_err());
        assert_eq!(super::display_name("", false).unwrap(), "");
        assert!(super::display_name(&"x".repeat(101), false).is_err());
    }
}
