//! Grants: what an approved request allows, to whom, on which record, until when.
//!
//! This domain sits below `records` and `requests`: records ask it whether a caller holds
//! a grant in force (to unmask, to view, to export), requests create grants when approval
//! completes, and supervisors revoke them here.
//!
//! Guarantees: a grant counts as active only while `now() < valid_until`, it is not revoked
//! and not returned, whatever the stored state says, so expiry and revocation take effect
//! on the very next request. Revoking is decided by the access policy against the grant's
//! record (`grant.revoke` on a `Grant` carrying its record's sensitivity and department);
//! a grant the caller may not revoke answers exactly like an unknown id (404) before any
//! state is looked at, and the refusal is audited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::audit::{Actor, Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{GrantState, Resource, RevokeGrant, Sensitivity};
use crate::records::model::RecordId;
use crate::tx::Tx;
use crate::{unit, App};

/// What a request asks for, and so what its grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Lookup,
    View,
    Borrow,
    Export,
    /// Destruction of the record: approval grants no access; the approved request is used
    /// once by the destruction it authorizes (`crate::lifecycle`).
    Destroy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lookup => "lookup",
            Kind::View => "view",
            Kind::Borrow => "borrow",
            Kind::Export => "export",
            Kind::Destroy => "destroy",
        }
    }
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "lookup" => Some(Kind::Lookup),
            "view" => Some(Kind::View),
            "borrow" => Some(Kind::Borrow),
            "export" => Some(Kind::Export),
            "destroy" => Some(Kind::Destroy),
            _ => None,
        }
    }
}

/// The state of grant `g` as of now (SQL).
pub(crate) const GRANT_STATE: &str = "CASE WHEN g.revoked_at IS NOT NULL THEN 'revoked' \
     WHEN g.state = 'returned' THEN 'returned' \
     WHEN g.valid_until <= now() THEN 'expired' ELSE 'active' END";

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct GrantView {
    pub id: Uuid,
    pub kind: String,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// `active` only while valid and not revoked, whatever the stored state says.
    pub state: String,
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

/// The grant `id` if `who` holds it and it is of `kind` (whatever its state); `None` for
/// someone else's grant, a grant of another kind, or no such grant.
#[tracing::instrument(skip_all, fields(grant = %id))]
pub(crate) async fn find_held(
    conn: &mut PgConnection,
    who: &Principal,
    id: Uuid,
    kind: Kind,
) -> AppResult<Option<HeldGrant>> {
    let held: Option<HeldGrant> = sqlx::query_as(&format!(
        "SELECT g.id, g.request_id, g.record_id, g.grantee_id, g.kind, g.valid_until, {GRANT_STATE} AS state \
         FROM grants g WHERE g.id = $1 AND g.grantee_id = $2 AND g.kind = $3"
    ))
    .bind(id)
    .bind(who.user().id)
    .bind(kind.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(held)
}

/// The grant of request `request_id` that `who` holds, if it is of `kind`.
#[tracing::instrument(skip_all)]
pub(crate) async fn held_for_request(
    conn: &mut PgConnection,
    who: &Principal,
    request_id: Uuid,
    kind: Kind,
) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT g.id FROM grants g WHERE g.request_id = $1 AND g.grantee_id = $2 AND g.kind = $3",
    )
    .bind(request_id)
    .bind(who.user().id)
    .bind(kind.as_str())
    .fetch_optional(conn)
    .await?)
}

/// The active grant of one of `kinds` that `who` holds on `record`, if any. Evaluated at
/// the moment of the call: an expired or revoked grant is never returned.
#[tracing::instrument(skip_all, fields(record = %record))]
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

/// The grants of requests `ids`, keyed by request (one query for a whole list).
#[tracing::instrument(skip_all)]
pub(crate) async fn of_requests(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> AppResult<Vec<(Uuid, GrantView)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        request_id: Uuid,
        #[sqlx(flatten)]
        grant: GrantView,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT g.request_id, g.id, g.kind, g.valid_from, g.valid_until, {GRANT_STATE} AS state \
         FROM grants g WHERE g.request_id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.request_id, r.grant)).collect())
}

/// Creates the grant of approved request `id`, in the caller's unit of work, and audits it.
#[tracing::instrument(skip_all, fields(request = %id))]
pub(crate) async fn create(tx: &mut Tx, id: Uuid, actor: &Actor, why: &str) -> AppResult<()> {
    let (record, grantee, kind, hours, purpose): (Uuid, Uuid, String, i32, String) =
        sqlx::query_as(
            "UPDATE access_requests SET state = 'approved', decided_at = now() WHERE id = $1 \
         RETURNING record_id, requester_id, kind, duration_hours, purpose",
        )
        .bind(id)
        .fetch_one(&mut **tx)
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
    .fetch_one(&mut **tx)
    .await?;
    tx.audit(
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

/// A grant with what the policy needs to decide on it: its record's sensitivity and
/// department as they are now.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Subject {
    request_id: Uuid,
    grantee_id: Uuid,
    kind: String,
    active: bool,
    sensitivity: String,
    department: String,
}

fn resource<'a>(s: &'a Subject, id: Uuid, who: &Principal) -> Resource<'a> {
    let level = Sensitivity::parse(&s.sensitivity).unwrap_or(Sensitivity::Secret);
    Resource::new(level, &s.department)
        .of(id)
        .owned(s.grantee_id == who.user().id.0)
}

/// Ends grant `grant_id` early. Decided against the grant's record; a grant the caller
/// may not revoke answers 404 like an unknown one, before its state is looked at.
#[tracing::instrument(skip_all, fields(grant = %grant_id))]
pub async fn revoke(
    app: &App,
    who: &Principal,
    grant_id: Uuid,
    reason: &str,
) -> AppResult<GrantView> {
    let reason = reason.trim().to_string();
    let revoked = unit!(app.db, |tx| {
        let subject: Option<Subject> = sqlx::query_as(
            "SELECT g.request_id, g.grantee_id, g.kind, \
             (g.revoked_at IS NULL AND g.valid_until > now() AND g.state = 'active') AS active, \
             c.sensitivity, c.department \
             FROM grants g JOIN records r ON r.id = g.record_id JOIN categories c ON c.id = r.category_id \
             WHERE g.id = $1 FOR UPDATE OF g",
        )
        .bind(grant_id)
        .fetch_optional(&mut *tx)
        .await?;
        let refusal = |why: &str| {
            Event::new("grant.revoke", Outcome::Denied)
                .object("grant", grant_id)
                .detail(json!({ "reason": why }))
        };
        let Some(subject) = subject else {
            tx.refuse(&who.actor(), refusal("not_found"));
            return Err(AppError::NotFound);
        };
        if let Err(e) = app
            .policies
            .authorize::<RevokeGrant>(who, Some(&resource(&subject, grant_id, who)))
        {
            tx.refuse(&who.actor(), refusal("denied"));
            return Err(e);
        }
        if reason.chars().count() < 5 {
            return Err(AppError::invalid("reason", "say why the grant is revoked"));
        }
        if !subject.active {
            return Err(AppError::Conflict("the grant is no longer active".into()));
        }
        sqlx::query(
            "UPDATE grants SET state = 'revoked', revoked_by = $2, revoked_at = now(), revoke_reason = $3 WHERE id = $1",
        )
        .bind(grant_id)
        .bind(who.user().id)
        .bind(&reason)
        .execute(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("grant.revoke", Outcome::Success)
                .object("grant", grant_id)
                .detail(
                    json!({"request": subject.request_id, "kind": subject.kind, "reason": reason}),
                ),
        )
        .await?;
        let g: GrantView = sqlx::query_as(&format!(
            "SELECT g.id, g.kind, g.valid_from, g.valid_until, {GRANT_STATE} AS state FROM grants g WHERE g.id = $1"
        ))
        .bind(grant_id)
        .fetch_one(&mut *tx)
        .await?;
        Ok(g)
    });
    if revoked.is_ok() {
        // Whatever the viewer keeps for the grant goes with it.
        app.viewer_cache.forget_grant(grant_id);
    }
    revoked
}

/// Whether `who` may revoke grant `g` (for showing the button; the action decides again).
pub fn may_revoke(app: &App, who: &Principal, g: &ActiveGrant) -> bool {
    let level = Sensitivity::parse(&g.sensitivity).unwrap_or(Sensitivity::Secret);
    app.policies
        .allows::<RevokeGrant>(who, &Resource::new(level, &g.department).of(g.id))
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

/// The grants in force that `who` may revoke, soonest to end first: what a supervisor
/// reviews. Grants the caller may not revoke are left out, so the list tells nobody of
/// records outside their charge.
#[tracing::instrument(skip_all)]
pub async fn active_grants(app: &App, who: &Principal) -> AppResult<Vec<ActiveGrant>> {
    unit!(app.db, |tx| {
        if let Err(e) = app.policies.authorize::<RevokeGrant>(who, None) {
            tx.refuse(
                &who.actor(),
                Event::new("grant.list", Outcome::Denied).detail(json!({"reason": "denied"})),
            );
            return Err(e);
        }
        let rows: Vec<ActiveGrant> = sqlx::query_as(
            "SELECT g.id, g.kind, g.valid_from, g.valid_until, q.id AS request_id, g.record_id, \
             r.reference, r.title, u.username AS grantee, q.purpose, c.department, c.sensitivity \
             FROM grants g JOIN access_requests q ON q.id = g.request_id \
             JOIN records r ON r.id = g.record_id JOIN categories c ON c.id = r.category_id \
             JOIN users u ON u.id = g.grantee_id \
             WHERE g.state = 'active' AND g.revoked_at IS NULL AND g.valid_until > now() \
             ORDER BY g.valid_until LIMIT 5000",
        )
        .fetch_all(&mut *tx)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|g| may_revoke(app, who, g))
            .collect())
    })
}

/// Marks grants whose time has passed as expired, in the caller's unit of work. Several
/// nodes may run it at once: rows are taken with `FOR UPDATE SKIP LOCKED`.
#[tracing::instrument(skip_all)]
pub(crate) async fn expire_due(tx: &mut Tx, system: &Actor) -> AppResult<u64> {
    let grants: Vec<(Uuid,)> = sqlx::query_as(
        "UPDATE grants SET state = 'expired' WHERE id IN \
         (SELECT id FROM grants WHERE state = 'active' AND valid_until <= now() \
          FOR UPDATE SKIP LOCKED LIMIT 1000) RETURNING id",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (id,) in &grants {
        tx.audit(
            system,
            Event::new("grant.expire", Outcome::Success).object("grant", id),
        )
        .await?;
    }
    Ok(grants.len() as u64)
}
