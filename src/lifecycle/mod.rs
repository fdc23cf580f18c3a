//! A record's life cycle after filing: retention, legal hold and supervised destruction.
//!
//! - **Retention** ([`retention`]): a category's `retention_years` gives each record a
//!   retention end, counted from filing or from the date field the category names
//!   (`retention_from`); a legal hold suspends it. The retention list shows the records
//!   whose end has passed (or comes within some days), held and destroyed ones left out.
//! - **Legal hold** ([`holds`]): supervisors place a hold, with its reason, on one record or
//!   on a whole category (every record filed under it or below it), and release it. A held
//!   record cannot be destroyed: the refusal (409) names the hold, its reason and who
//!   placed it.
//! - **Destruction** ([`destruction`]): a `destroy` request (kind `destroy`, reason
//!   `retention` or `erasure`, routed by `workflows.toml`: two distinct supervisors by
//!   default), then the destruction itself, carried out by an archivist with a witness who
//!   is neither the executor nor the requester. In one unit of work the data keys of the
//!   record's files are erased with their rows (crypto-shredding: nothing decrypts the
//!   objects after the commit), the sensitive values (ciphertext and blind index, current
//!   and in past revisions) are erased, the paper file is marked destroyed, grants in
//!   force on the record end, other open requests on it are cancelled, the request is
//!   used, and a certificate is written to the destruction register. The objects are
//!   deleted from the store right after the commit; any that cannot be deleted then stay
//!   listed in `object_deletions` and the storage GC finishes them.
//! - **Certificates** ([`certificate`]): the register as JSON, CSV and .xlsx, and one PDF
//!   certificate per destruction.

pub mod certificate;
pub mod destruction;
pub mod holds;
pub mod retention;

use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::audit::{Actor, Event, Outcome};
use crate::error::{AppError, AppResult};
use crate::grants::Kind;
use crate::records::model::RecordId;
use crate::tx::Tx;

/// The reason a `destroy` request is recorded with (`retention` unless given), or `None`
/// for the other kinds, which take none.
pub fn destroy_reason(kind: Kind, given: Option<&str>) -> AppResult<Option<&'static str>> {
    let given = given.map(str::trim).filter(|s| !s.is_empty());
    match (kind, given) {
        (Kind::Destroy, None | Some("retention")) => Ok(Some("retention")),
        (Kind::Destroy, Some("erasure")) => Ok(Some("erasure")),
        (Kind::Destroy, Some(_)) => Err(AppError::invalid(
            "reason_type",
            "must be retention or erasure",
        )),
        (_, None) => Ok(None),
        (_, Some(_)) => Err(AppError::invalid(
            "reason_type",
            "is given only with a destroy request",
        )),
    }
}

/// Whether record `record` has been destroyed.
pub(crate) async fn is_destroyed(conn: &mut PgConnection, record: RecordId) -> AppResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM destructions WHERE record_id = $1)")
            .bind(record)
            .fetch_one(conn)
            .await?,
    )
}

/// 409 for a record that has been destroyed (no new file, correction, move or request).
pub(crate) async fn refuse_if_destroyed(
    conn: &mut PgConnection,
    record: RecordId,
) -> AppResult<()> {
    if is_destroyed(conn, record).await? {
        return Err(AppError::Conflict("the record has been destroyed".into()));
    }
    Ok(())
}

/// 409 naming the hold when record `record` is under a legal hold (its own or its
/// category's).
pub(crate) async fn refuse_if_held(conn: &mut PgConnection, record: RecordId) -> AppResult<()> {
    if let Some(h) = holds::in_force(conn, record).await?.into_iter().next() {
        let day = h.placed_at.format("%Y-%m-%d");
        return Err(match &h.category_code {
            Some(code) => AppError::Conflict(format!(
                "the record is under a legal hold on category {code}, placed by {} on {day}: {}",
                h.placed_by, h.reason
            )),
            None => AppError::Conflict(format!(
                "the record is under a legal hold, placed by {} on {day}: {}",
                h.placed_by, h.reason
            )),
        });
    }
    Ok(())
}

/// Completes the approval of `destroy` request `id` in the caller's unit of work: the
/// request becomes approved (no grant: it opens nothing) and waits to be used once.
pub(crate) async fn approve_destroy(
    tx: &mut Tx,
    id: Uuid,
    actor: &Actor,
    why: &str,
) -> AppResult<()> {
    let (record, purpose): (Uuid, String) = sqlx::query_as(
        "UPDATE access_requests SET state = 'approved', decided_at = now() \
         WHERE id = $1 AND kind = 'destroy' RETURNING record_id, purpose",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    tx.audit(
        actor,
        Event::new("request.approved", Outcome::Success)
            .object("request", id)
            .detail(json!({"record": record, "kind": "destroy", "purpose": purpose, "why": why})),
    )
    .await
}

/// A record's life cycle as its page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LifeCycle {
    /// Holds in force (the record's own and its categories').
    pub holds: Vec<holds::Hold>,
    pub retention: retention::Retention,
    pub destruction: Option<destruction::Certificate>,
    /// Destroy requests on the record still open: pending, or approved and not yet used.
    pub destroy_requests: Vec<OpenDestroyRequest>,
}

/// A destroy request still open, as the record page offers it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct OpenDestroyRequest {
    pub id: Uuid,
    pub requester: String,
    pub state: String,
    pub reason_type: Option<String>,
    pub purpose: String,
    pub required_approvals: i32,
    pub approvals: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The life cycle of record `id`, for whoever may read the record.
#[tracing::instrument(skip_all, fields(record = %id))]
pub async fn of_record(
    app: &crate::App,
    who: &crate::auth::Principal,
    id: RecordId,
) -> AppResult<LifeCycle> {
    crate::unit!(app.db, |tx| {
        crate::records::load_in::<crate::policy::ReadRecord>(
            &mut tx,
            app,
            who,
            id,
            crate::policy::GrantState::None,
        )
        .await?;
        Ok(LifeCycle {
            holds: holds::in_force(&mut tx, id).await?,
            retention: retention::of_record(&mut tx, id).await?,
            destruction: destruction::of_record(&mut tx, id).await?,
            destroy_requests: sqlx::query_as(
                "SELECT q.id, u.username AS requester, q.state, q.reason_type, q.purpose, \
                 q.required_approvals, (SELECT count(*) FROM request_decisions d \
                   WHERE d.request_id = q.id AND d.decision = 'approve') AS approvals, q.created_at \
                 FROM access_requests q JOIN users u ON u.id = q.requester_id \
                 WHERE q.record_id = $1 AND q.kind = 'destroy' AND q.used_at IS NULL \
                   AND (q.state = 'approved' OR (q.state = 'pending' AND q.expires_at > now())) \
                 ORDER BY q.created_at",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?,
        })
    })
}

/// The day before which retention ends are listed: `due_before` (YYYY-MM-DD), else
/// `within_days` from today, else tomorrow (everything ended by today).
pub fn due_limit(
    due_before: Option<&str>,
    within_days: Option<&str>,
) -> AppResult<Option<chrono::NaiveDate>> {
    let within_days = match within_days.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(d) => Some(d.parse::<u32>().map_err(|_| {
            AppError::invalid("within_days", "must be a number of days from 0 to 36600")
        })?),
    };
    if let Some(s) = due_before.map(str::trim).filter(|s| !s.is_empty()) {
        return chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| AppError::invalid("due_before", "must be a date (YYYY-MM-DD)"));
    }
    match within_days {
        Some(d) if d > 36_600 => Err(AppError::invalid(
            "within_days",
            "must be a number of days from 0 to 36600",
        )),
        Some(d) => Ok(Some(
            chrono::Utc::now().date_naive() + chrono::Days::new(u64::from(d) + 1),
        )),
        None => Ok(None),
    }
}

/// Sets the date field category `id`'s retention counts from (`None`: from filing).
#[tracing::instrument(skip_all, fields(category = %id))]
pub async fn set_retention_from(
    app: &crate::App,
    who: &crate::auth::Principal,
    id: crate::records::model::CategoryId,
    from: Option<String>,
) -> AppResult<Option<String>> {
    crate::unit!(app.db, |tx| {
        tx.authorize::<crate::policy::ManageCategory>(
            &app.policies,
            who,
            None,
            Some(("category", id.to_string())),
        )?;
        let category = match crate::records::categories::get_in(&mut tx, id).await {
            Ok(c) => c,
            Err(AppError::NotFound) => {
                return Err(tx.not_found(who, "category.update", ("category", id.to_string())))
            }
            Err(e) => return Err(e),
        };
        let from = retention::check_from_field(&category.fields, from.as_deref())?;
        sqlx::query("UPDATE categories SET retention_from = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(&from)
            .execute(&mut *tx)
            .await?;
        tx.audit(
            &who.actor(),
            Event::new("category.update", Outcome::Success)
                .object("category", id)
                .detail(json!({"code": category.code, "retention_from": from})),
        )
        .await?;
        Ok(from)
    })
}
