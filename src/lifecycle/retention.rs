//! Retention ends. A record's retention end is its category's `retention_years` after its
//! filing date, or after the date in the field the category names (`retention_from`) when
//! the record has a valid date there. A legal hold in force (on the record or on a category
//! above it) suspends it: the record then has no end until the hold is released.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{ReadRecord, ReadRetention, Resource, Sensitivity};
use crate::records::model::RecordId;
use crate::{unit, App};

/// The SQL of a record's retention end (`r` the record, `c` its category), as a date.
const END: &str = "(COALESCE(CASE WHEN c.retention_from IS NOT NULL \
     THEN retention_date(r.fields ->> c.retention_from) END, \
     (r.created_at AT TIME ZONE 'UTC')::date) + make_interval(years => c.retention_years))::date";

/// Records under a hold in force (their own or a category's above them).
const HELD: &str =
    "(EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL AND h.record_id = r.id) \
     OR r.category_id IN (WITH RECURSIVE down(id) AS ( \
         SELECT category_id FROM legal_holds WHERE released_at IS NULL AND category_id IS NOT NULL \
         UNION SELECT c2.id FROM categories c2 JOIN down ON c2.parent_id = down.id) \
       SELECT id FROM down))";

/// A record's retention as the record page shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Retention {
    pub years: i32,
    /// The date field counted from; `None`: the filing date.
    pub from_field: Option<String>,
    /// Whether the end was counted from the named field (false: from filing, also when the
    /// field is empty).
    pub from_field_used: bool,
    pub end: NaiveDate,
    /// Under a legal hold: the end is suspended.
    pub suspended: bool,
}

/// The retention of record `record`.
pub(crate) async fn of_record(conn: &mut PgConnection, record: RecordId) -> AppResult<Retention> {
    sqlx::query_as(&format!(
        "SELECT c.retention_years AS years, c.retention_from AS from_field, \
         (c.retention_from IS NOT NULL AND retention_date(r.fields ->> c.retention_from) IS NOT NULL) AS from_field_used, \
         {END} AS end, {HELD} AS suspended \
         FROM records r JOIN categories c ON c.id = r.category_id WHERE r.id = $1"
    ))
    .bind(record)
    .fetch_optional(conn)
    .await?
    .ok_or(AppError::NotFound)
}

/// A record whose retention has ended (or ends soon).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Due {
    pub record_id: Uuid,
    pub reference: String,
    pub title: String,
    pub category_code: String,
    pub category_name: String,
    pub filed_at: DateTime<Utc>,
    pub retention_years: i32,
    pub retention_from: Option<String>,
    pub retention_end: NaiveDate,
    /// A destroy request is already pending or approved for it.
    pub destroy_requested: bool,
    #[serde(skip)]
    pub sensitivity: String,
    #[serde(skip)]
    pub department: String,
}

/// The records whose retention ends before `due_before` (default: tomorrow, i.e. ended by
/// today), not held, not destroyed, that `who` may see; soonest end first.
#[tracing::instrument(skip_all)]
pub async fn due(app: &App, who: &Principal, due_before: Option<NaiveDate>) -> AppResult<Vec<Due>> {
    const LIMIT: i64 = 5000;
    let before = due_before.unwrap_or_else(|| Utc::now().date_naive() + chrono::Days::new(1));
    unit!(app.db, |tx| {
        tx.authorize::<ReadRetention>(&app.policies, who, None, None)?;
        let rows: Vec<Due> = sqlx::query_as(&format!(
            "SELECT * FROM (SELECT r.id AS record_id, r.reference, r.title, c.code AS category_code, \
             c.name AS category_name, r.created_at AS filed_at, c.retention_years, c.retention_from, \
             {END} AS retention_end, \
             EXISTS (SELECT 1 FROM access_requests q WHERE q.record_id = r.id AND q.kind = 'destroy' \
                     AND q.used_at IS NULL AND (q.state = 'approved' OR (q.state = 'pending' AND q.expires_at > now()))) \
               AS destroy_requested, \
             c.sensitivity, c.department \
             FROM records r JOIN categories c ON c.id = r.category_id \
             WHERE NOT EXISTS (SELECT 1 FROM destructions d WHERE d.record_id = r.id) AND NOT {HELD}) due \
             WHERE retention_end < $1 ORDER BY retention_end, reference LIMIT $2"
        ))
        .bind(before)
        .bind(LIMIT)
        .fetch_all(&mut *tx)
        .await?;
        let rows: Vec<Due> = rows
            .into_iter()
            .filter(|d| {
                let s = Sensitivity::parse(&d.sensitivity).unwrap_or(Sensitivity::Secret);
                app.policies
                    .allows::<ReadRecord>(who, &Resource::new(s, &d.department).of(d.record_id))
            })
            .collect();
        tx.audit(
            &who.actor(),
            Event::new("retention.read", Outcome::Success)
                .detail(json!({"due_before": before, "returned": rows.len()})),
        )
        .await?;
        Ok(rows)
    })
}

/// Checks the date field a category's retention may count from: a field of type date of
/// that category, not sensitive (its value must be readable to count from).
pub fn check_from_field(
    fields: &[crate::records::schema::FieldDef],
    name: Option<&str>,
) -> AppResult<Option<String>> {
    let Some(name) = name.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let ok = fields.iter().any(|f| {
        f.name == name
            && matches!(f.kind, crate::records::schema::FieldType::Date)
            && !crate::records::sealed(f)
    });
    if !ok {
        return Err(AppError::invalid(
            "retention_from",
            "must name a date field of the category that is not sensitive",
        ));
    }
    Ok(Some(name.to_string()))
}
