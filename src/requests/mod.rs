//! Requests for access and the grants approval creates.
//!
//! Guarantees: a request names a record the requester may see, a purpose of meaningful
//! length and a duration within its route's maximum; it is routed by `workflows.toml`;
//! approval needs N distinct eligible approvers, never the requester, never the same
//! person twice, and only while the request is pending and not past its expiry; approval
//! creates a grant valid until a fixed time; a grant counts as active only while
//! `now() < valid_until` and it is not revoked, so expiry and revocation take effect on the
//! very next request. Every transition is audited with the purpose.

pub mod bundle;
pub mod exports;
pub mod loans;
pub mod workflow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

pub use workflow::{Kind, Route, Workflows};

use crate::audit::{self, Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{
    Action, ApproveRequest, GrantState, Permit, RequestAccess, Resource, RevokeGrant, Sensitivity,
};
use crate::records::model::RecordId;
use crate::records::model::{Category, Record};
use crate::users::Role;
use crate::App;

/// The shortest purpose, in visible characters (`text::visible_len`).
pub const MIN_PURPOSE: usize = 15;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub record_id: RecordId,
    pub kind: Kind,
    pub purpose: String,
    pub duration_hours: u32,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Decision {
    pub approver: String,
    pub decision: String,
    pub comment: String,
    pub decided_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct GrantView {
    pub id: Uuid,
    pub kind: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// `active` only while valid and not revoked, whatever the stored state says.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RequestView {
    pub id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    pub title: String,
    pub kind: String,
    pub purpose: String,
    pub duration_hours: i32,
    pub state: String,
    pub required_approvals: i32,
    pub approver_role: String,
    pub same_department: bool,
    pub department: String,
    pub sensitivity: String,
    pub requester: String,
    pub requester_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub decisions: Vec<Decision>,
    #[sqlx(skip)]
    pub grant: Option<GrantView>,
}

const REQUEST_SELECT: &str = "SELECT q.id, q.record_id, r.reference, r.title, q.kind, q.purpose, q.duration_hours, \
     CASE WHEN q.state = 'pending' AND q.expires_at <= now() THEN 'expired' ELSE q.state END AS state, \
     q.required_approvals, q.approver_role, q.same_department, q.department, q.sensitivity, u.username AS requester, \
     q.requester_id, q.created_at, q.expires_at \
     FROM access_requests q JOIN records r ON r.id = q.record_id JOIN users u ON u.id = q.requester_id";

const GRANT_STATE: &str = "CASE WHEN g.revoked_at IS NOT NULL THEN 'revoked' \
     WHEN g.state = 'returned' THEN 'returned' \
     WHEN g.valid_until <= now() THEN 'expired' ELSE 'active' END";

async fn fill(conn: &mut PgConnection, mut v: RequestView) -> AppResult<RequestView> {
    v.decisions = sqlx::query_as(
        "SELECT u.username AS approver, d.decision, d.comment, d.decided_at FROM request_decisions d \
         JOIN users u ON u.id = d.approver_id WHERE d.request_id = $1 ORDER BY d.decided_at",
    )
    .bind(v.id)
    .fetch_all(&mut *conn)
    .await?;
    v.grant = sqlx::query_as(&format!(
        "SELECT g.id, g.kind, g.valid_from, g.valid_until, {GRANT_STATE} AS state FROM grants g WHERE g.request_id = $1"
    ))
    .bind(v.id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(v)
}

async fn load(conn: &mut PgConnection, id: Uuid) -> AppResult<RequestView> {
    let v: RequestView = sqlx::query_as(&format!("{REQUEST_SELECT} WHERE q.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(AppError::NotFound)?;
    fill(conn, v).await
}

/// The record a request is about, as the access policy sees it.
fn object(v: &RequestView) -> Resource<'_> {
    let s = Sensitivity::parse(&v.sensitivity).unwrap_or(Sensitivity::Secret);
    Resource::new(s, &v.department)
}

/// Whether `who` could decide this request, ignoring its state: the route's approver role
/// and department rule (`workflows.toml`), never the requester, and `request.approve` on
/// the record allowed by the access policy.
fn eligible(app: &App, who: &Principal, v: &RequestView) -> bool {
    let role: Option<Role> = v.approver_role.parse().ok();
    let user = who.user();
    role.is_some_and(|r| who.has_role(r))
        && (!v.same_department || user.department == v.department)
        && user.id.0 != v.requester_id
        && app.policies.decide(
            ApproveRequest::NAME,
            &user.roles,
            &user.department,
            Some(&object(v)),
        )
}

fn may_see(app: &App, who: &Principal, v: &RequestView) -> bool {
    who.user().id.0 == v.requester_id || eligible(app, who, v) || who.has_role(Role::Auditor)
}

pub async fn create(app: &App, who: &Principal, new: NewRequest) -> AppResult<RequestView> {
    let (_permit, record, category) =
        crate::records::load_for::<RequestAccess>(app, who, new.record_id).await?;
    let purpose = new.purpose.trim().to_string();
    // The minimum counts what a reader sees: zero-width and blank padding does not count.
    if crate::text::visible_len(&purpose) < MIN_PURPOSE || purpose.chars().count() > 2000 {
        return Err(AppError::invalid(
            "purpose",
            format!("say why you need it, in {MIN_PURPOSE} to 2000 characters"),
        ));
    }
    let route = app
        .workflows
        .route(new.kind, category.sensitivity, &category.code)
        .ok_or_else(|| {
            AppError::invalid(
                "kind",
                format!(
                    "no workflow allows a {} request on {} records",
                    new.kind.as_str(),
                    category.sensitivity.as_str()
                ),
            )
        })?;
    if new.duration_hours == 0 || new.duration_hours > route.max_hours {
        return Err(AppError::invalid(
            "duration_hours",
            format!(
                "must be between 1 and {} hours for this request",
                route.max_hours
            ),
        ));
    }
    let id = Uuid::new_v4();
    let mut tx = app.db.begin().await?;
    sqlx::query(
        "INSERT INTO access_requests (id, record_id, requester_id, kind, purpose, duration_hours, \
         required_approvals, approver_role, same_department, department, sensitivity, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now() + $12 * interval '1 hour')",
    )
    .bind(id)
    .bind(record.id)
    .bind(who.user().id)
    .bind(new.kind.as_str())
    .bind(&purpose)
    .bind(new.duration_hours as i32)
    .bind(route.approvals as i32)
    .bind(route.approver_role.as_str())
    .bind(route.same_department)
    .bind(&category.department)
    .bind(category.sensitivity.as_str())
    .bind(f64::from(route.pending_expiry_hours))
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &who.actor(),
        Event::new("request.create", Outcome::Success)
            .object("request", id)
            .detail(json!({
                "record": record.id, "reference": record.reference, "kind": new.kind.as_str(),
                "purpose": purpose, "duration_hours": new.duration_hours,
                "required_approvals": route.approvals,
            })),
    )
    .await?;
    if route.approvals == 0 {
        grant(&mut tx, id, &who.actor(), "auto-approved by workflow").await?;
    }
    let v = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(v)
}

/// Marks a request approved and creates its grant, in the caller's transaction.
async fn grant(tx: &mut PgConnection, id: Uuid, actor: &audit::Actor, why: &str) -> AppResult<()> {
    let (record, grantee, kind, hours, purpose): (Uuid, Uuid, String, i32, String) =
        sqlx::query_as(
            "UPDATE access_requests SET state = 'approved', decided_at = now() WHERE id = $1 \
         RETURNING record_id, requester_id, kind, duration_hours, purpose",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let grant_id = Uuid::new_v4();
    let until: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO grants (id, request_id, record_id, grantee_id, kind, valid_until) \
         VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 hour') RETURNING valid_until",
    )
    .bind(grant_id)
    .bind(id)
    .bind(record)
    .bind(grantee)
    .bind(&kind)
    .bind(f64::from(hours))
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        tx,
        actor,
        Event::new("grant.create", Outcome::Success)
            .object("grant", grant_id)
            .detail(json!({
                "request": id, "record": record, "grantee": grantee, "kind": kind,
                "valid_until": until, "purpose": purpose, "why": why,
            })),
    )
    .await
}

pub async fn get(app: &App, who: &Principal, id: Uuid) -> AppResult<RequestView> {
    let mut conn = app.db.acquire().await?;
    let v = load(&mut conn, id).await?;
    if !may_see(app, who, &v) {
        return Err(AppError::NotFound);
    }
    Ok(v)
}

#[derive(Debug, Clone, Default, Deserialize, rocket::FromForm)]
pub struct Filter {
    pub mine: Option<bool>,
    pub to_approve: Option<bool>,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
    /// With `to_approve`: how many wait for this person's decision.
    pub waiting: Option<usize>,
}

pub async fn list(app: &App, who: &Principal, f: Filter) -> AppResult<RequestList> {
    let mut conn = app.db.acquire().await?;
    let rows: Vec<RequestView> = if f.to_approve.unwrap_or(false) {
        // Pending, not expired, not the caller's own, not yet decided by the caller.
        sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE q.state = 'pending' AND q.expires_at > now() AND q.requester_id <> $1 \
             AND NOT EXISTS (SELECT 1 FROM request_decisions d WHERE d.request_id = q.id AND d.approver_id = $1) \
             ORDER BY q.created_at LIMIT 500"
        ))
        .bind(who.user().id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .filter(|v| eligible(app, who, v))
        .collect()
    } else {
        sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE q.requester_id = $1 ORDER BY q.created_at DESC LIMIT 500"
        ))
        .bind(who.user().id)
        .fetch_all(&mut *conn)
        .await?
    };
    let mut out = Vec::new();
    for v in rows {
        if f.state.as_deref().is_some_and(|s| s != v.state) {
            continue;
        }
        out.push(fill(&mut conn, v).await?);
    }
    let waiting = f.to_approve.unwrap_or(false).then_some(out.len());
    Ok(RequestList {
        requests: out,
        waiting,
    })
}

/// Ends a transaction at once and returns `e`. A dropped transaction only queues its
/// ROLLBACK; sqlx sends it when the connection goes back to the pool, in a spawned task,
/// so a row lock taken with `FOR UPDATE` could still be held when the answer reaches the
/// client (and a `SKIP LOCKED` job could pass the row by). Failures roll back before
/// answering.
pub(crate) async fn fail<T>(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    e: AppError,
) -> AppResult<T> {
    if let Err(r) = tx.rollback().await {
        tracing::warn!(error = %r, "rollback failed");
    }
    Err(e)
}

/// Locks a request for a decision and checks it can still be decided.
async fn lock_pending(tx: &mut PgConnection, id: Uuid) -> AppResult<RequestView> {
    let state: Option<(String, bool)> = sqlx::query_as(
        "SELECT state, expires_at <= now() FROM access_requests WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (state, expired) = state.ok_or(AppError::NotFound)?;
    let v = load(tx, id).await?;
    if state != "pending" {
        return Err(AppError::Conflict(format!("the request is {state}")));
    }
    if expired {
        return Err(AppError::Conflict("the request has expired".into()));
    }
    Ok(v)
}

fn check_comment(comment: &str) -> AppResult<String> {
    let c = comment.trim();
    if c.chars().count() > 2000 {
        return Err(AppError::invalid(
            "comment",
            "must be at most 2000 characters",
        ));
    }
    Ok(c.to_string())
}

pub async fn decide(
    app: &App,
    who: &Principal,
    id: Uuid,
    approve: bool,
    comment: &str,
) -> AppResult<RequestView> {
    let comment = check_comment(comment)?;
    if !approve && comment.is_empty() {
        return Err(AppError::invalid(
            "comment",
            "say why the request is rejected",
        ));
    }
    let mut tx = app.db.begin().await?;
    let v = match lock_pending(&mut tx, id).await {
        Ok(v) => v,
        Err(e) => return fail(tx, e).await,
    };
    let action = if approve {
        "request.approve"
    } else {
        "request.reject"
    };
    let refuse = |why: &str| {
        Event::new(action, Outcome::Denied)
            .object("request", id)
            .detail(json!({"reason": why, "purpose": v.purpose}))
    };
    if who.user().id.0 == v.requester_id {
        tx.rollback().await?;
        audit::record_alone(&app.db, &who.actor(), refuse("own request")).await?;
        return Err(AppError::Forbidden);
    }
    let permitted = app
        .policies
        .authorize::<ApproveRequest>(who, Some(&object(&v)))
        .is_ok();
    if !permitted || !eligible(app, who, &v) {
        tx.rollback().await?;
        audit::record_alone(&app.db, &who.actor(), refuse("not an eligible approver")).await?;
        return Err(if may_see(app, who, &v) {
            AppError::Forbidden
        } else {
            AppError::NotFound
        });
    }
    let inserted = sqlx::query(
        "INSERT INTO request_decisions (request_id, approver_id, decision, comment) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(who.user().id)
    .bind(if approve { "approve" } else { "reject" })
    .bind(&comment)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        let e = AppError::Conflict("you have already decided on this request".into());
        return fail(tx, e).await;
    }
    audit::record(
        &mut tx,
        &who.actor(),
        Event::new(action, Outcome::Success)
            .object("request", id)
            .detail(json!({"comment": comment, "purpose": v.purpose, "reference": v.reference})),
    )
    .await?;
    if approve {
        let approvals: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM request_decisions WHERE request_id = $1 AND decision = 'approve'",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if approvals >= i64::from(v.required_approvals) {
            grant(&mut tx, id, &who.actor(), "approved").await?;
        }
    } else {
        sqlx::query(
            "UPDATE access_requests SET state = 'rejected', decided_at = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let v = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(v)
}

pub async fn cancel(app: &App, who: &Principal, id: Uuid) -> AppResult<RequestView> {
    let mut tx = app.db.begin().await?;
    let v = match lock_pending(&mut tx, id).await {
        Err(AppError::Conflict(m)) => {
            tx.rollback().await?;
            let mut conn = app.db.acquire().await?;
            let v = load(&mut conn, id).await?;
            if v.requester_id != who.user().id.0 {
                return Err(AppError::NotFound);
            }
            return Err(AppError::Conflict(m));
        }
        Err(e) => return fail(tx, e).await,
        Ok(v) => v,
    };
    if v.requester_id != who.user().id.0 {
        let e = if may_see(app, who, &v) {
            AppError::Forbidden
        } else {
            AppError::NotFound
        };
        return fail(tx, e).await;
    }
    sqlx::query("UPDATE access_requests SET state = 'cancelled', decided_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &who.actor(),
        Event::new("request.cancel", Outcome::Success)
            .object("request", id)
            .detail(json!({"purpose": v.purpose, "reference": v.reference})),
    )
    .await?;
    let v = load(&mut tx, id).await?;
    tx.commit().await?;
    Ok(v)
}

pub async fn revoke(
    app: &App,
    who: &Principal,
    grant_id: Uuid,
    reason: &str,
) -> AppResult<GrantView> {
    let reason = reason.trim();
    if reason.chars().count() < 5 {
        return Err(AppError::invalid("reason", "say why the grant is revoked"));
    }
    app.policies.authorize::<RevokeGrant>(who, None)?;
    let mut tx = app.db.begin().await?;
    let row: Option<(Uuid, String, bool)> = sqlx::query_as(
        "SELECT g.request_id, g.kind, (g.revoked_at IS NULL AND g.valid_until > now() AND g.state = 'active') \
         FROM grants g WHERE g.id = $1 FOR UPDATE",
    )
    .bind(grant_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((request, kind, active)) = row else {
        return fail(tx, AppError::NotFound).await;
    };
    if !active {
        let e = AppError::Conflict("the grant is no longer active".into());
        return fail(tx, e).await;
    }
    sqlx::query(
        "UPDATE grants SET state = 'revoked', revoked_by = $2, revoked_at = now(), revoke_reason = $3 WHERE id = $1",
    )
    .bind(grant_id)
    .bind(who.user().id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &who.actor(),
        Event::new("grant.revoke", Outcome::Success)
            .object("grant", grant_id)
            .detail(json!({"request": request, "kind": kind, "reason": reason})),
    )
    .await?;
    let g: GrantView = sqlx::query_as(&format!(
        "SELECT g.id, g.kind, g.valid_from, g.valid_until, {GRANT_STATE} AS state FROM grants g WHERE g.id = $1"
    ))
    .bind(grant_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(g)
}

/// A grant in force, as a supervisor reviews it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ActiveGrant {
    pub id: Uuid,
    pub kind: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub request_id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    pub title: String,
    pub grantee: String,
    pub purpose: String,
    #[serde(skip)]
    pub department: String,
    #[serde(skip)]
    pub sensitivity: String,
}

/// The grants in force on records `who` may see, soonest to end first: what a supervisor
/// reviews and may revoke. Records the caller may not see are left out, so the list tells
/// nobody of records outside their sight.
pub async fn active_grants(app: &App, who: &Principal) -> AppResult<Vec<ActiveGrant>> {
    app.policies.authorize::<RevokeGrant>(who, None)?;
    let rows: Vec<ActiveGrant> = sqlx::query_as(
        "SELECT g.id, g.kind, g.valid_from, g.valid_until, q.id AS request_id, g.record_id, \
         r.reference, r.title, u.username AS grantee, q.purpose, q.department, q.sensitivity \
         FROM grants g JOIN access_requests q ON q.id = g.request_id \
         JOIN records r ON r.id = g.record_id JOIN users u ON u.id = g.grantee_id \
         WHERE g.state = 'active' AND g.revoked_at IS NULL AND g.valid_until > now() \
         ORDER BY g.valid_until LIMIT 2000",
    )
    .fetch_all(&app.db)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|g| {
            let s = Sensitivity::parse(&g.sensitivity).unwrap_or(Sensitivity::Secret);
            app.policies.may_read(who, &Resource::new(s, &g.department))
        })
        .collect())
}

/// The active grant of one of `kinds` that `who` holds on `record`, if any. Evaluated at
/// the moment of the call: an expired or revoked grant is never returned.
pub async fn active_grant(
    conn: &mut PgConnection,
    who: &Principal,
    record: RecordId,
    kinds: &[Kind],
) -> AppResult<Option<GrantView>> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    Ok(sqlx::query_as(&format!(
        "SELECT g.id, g.kind, g.valid_from, g.valid_until, {GRANT_STATE} AS state FROM grants g \
         WHERE g.grantee_id = $1 AND g.record_id = $2 AND g.kind = ANY($3) \
           AND g.revoked_at IS NULL AND g.state = 'active' AND g.valid_until > now() \
         ORDER BY g.valid_until DESC LIMIT 1"
    ))
    .bind(who.user().id)
    .bind(record)
    .bind(&kinds)
    .fetch_optional(conn)
    .await?)
}

/// A grant as the one who holds it uses it: its state is computed now, so an expired or
/// revoked grant is never `Active`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HeldGrant {
    pub id: Uuid,
    pub request_id: Uuid,
    pub record_id: RecordId,
    pub grantee_id: Uuid,
    pub kind: String,
    pub valid_until: DateTime<Utc>,
    pub state: String,
}

impl HeldGrant {
    pub fn grant_state(&self) -> GrantState {
        match self.state.as_str() {
            "active" => GrantState::Active,
            "revoked" => GrantState::Revoked,
            _ => GrantState::Expired,
        }
    }
}

/// Uses grant `id` of kind `kind` held by `who` for action A on the grant's record: the
/// access policy decides A with the grant's state as of now, so A is refused the moment the
/// grant expires or is revoked. Someone else's grant, or a grant of another kind, is
/// `NotFound` (and audited as a refusal).
pub(crate) async fn use_grant<A: Action>(
    app: &App,
    who: &Principal,
    id: Uuid,
    kind: Kind,
) -> AppResult<(Permit<A>, HeldGrant, Record, Category)> {
    let held: Option<HeldGrant> = sqlx::query_as(&format!(
        "SELECT g.id, g.request_id, g.record_id, g.grantee_id, g.kind, g.valid_until, {GRANT_STATE} AS state \
         FROM grants g WHERE g.id = $1"
    ))
    .bind(id)
    .fetch_optional(&app.db)
    .await?;
    let held = match held {
        Some(g) if g.grantee_id == who.user().id.0 && g.kind == kind.as_str() => g,
        _ => {
            audit::record_alone(
                &app.db,
                &who.actor(),
                Event::new(A::NAME, Outcome::Denied)
                    .object("grant", id)
                    .detail(json!({"reason": "not the caller's grant of this kind"})),
            )
            .await?;
            return Err(AppError::NotFound);
        }
    };
    let (permit, record, category) =
        crate::records::load_with::<A>(app, who, held.record_id, held.grant_state()).await?;
    Ok((permit, held, record, category))
}

/// Expires pending requests and grants whose time has passed. Several nodes may run it at
/// once: rows are taken with `FOR UPDATE SKIP LOCKED`, so none is handled twice.
pub async fn expire_due(pool: &sqlx::PgPool) -> AppResult<(u64, u64)> {
    let mut tx = pool.begin().await?;
    let requests: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE access_requests SET state = 'expired', decided_at = now() WHERE id IN \
         (SELECT id FROM access_requests WHERE state = 'pending' AND expires_at <= now() \
          FOR UPDATE SKIP LOCKED LIMIT 1000) RETURNING id, purpose",
    )
    .fetch_all(&mut *tx)
    .await?;
    let grants: Vec<(Uuid,)> = sqlx::query_as(
        "UPDATE grants SET state = 'expired' WHERE id IN \
         (SELECT id FROM grants WHERE state = 'active' AND valid_until <= now() \
          FOR UPDATE SKIP LOCKED LIMIT 1000) RETURNING id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let system = audit::Actor::system("system");
    for (id, purpose) in &requests {
        audit::record(
            &mut tx,
            &system,
            Event::new("request.expire", Outcome::Success)
                .object("request", id)
                .detail(json!({"purpose": purpose})),
        )
        .await?;
    }
    for (id,) in &grants {
        audit::record(
            &mut tx,
            &system,
            Event::new("grant.expire", Outcome::Success).object("grant", id),
        )
        .await?;
    }
    tx.commit().await?;
    Ok((requests.len() as u64, grants.len() as u64))
}
