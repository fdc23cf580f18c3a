//! Requests for access and their approval.
//!
//! Guarantees: a request names a record the requester may see, a purpose of meaningful
//! length and a duration within its route's maximum; it is routed by `workflows.toml`;
//! approval needs N distinct approvers whom the access policy lets decide it
//! (`request.approve` on the request, which carries its route), never the requester, never
//! the same person twice, and only while the request is pending and not past its expiry;
//! approval creates a grant (`crate::grants`). Who may see, decide or cancel a request is
//! the policy's decision, taken before the request's state is looked at: a request the
//! caller may not see answers exactly like an unknown id, and every refusal is audited.
//! Every transition is audited with the purpose, in the unit of work that makes it.

pub mod bundle;
pub mod exports;
pub mod loans;
pub mod purpose;
pub mod waiting;
pub mod workflow;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

pub use workflow::{Kind, Route, Workflows};

pub use crate::grants::{active_grant, active_grants, revoke, ActiveGrant, GrantView};

use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{
    ApproveRequest, CancelRequest, ReadRequest, RequestAccess, Resource, RevokeGrant, Sensitivity,
};
use crate::records::model::RecordId;
use crate::tx::Tx;
use crate::users::{Role, UserId};
use crate::{unit, App};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub record_id: RecordId,
    pub kind: Kind,
    pub purpose: String,
    /// Required for every kind but `destroy` (which grants no access for a time).
    #[serde(default)]
    pub duration_hours: u32,
    /// For `destroy`: why, `retention` (the default) or `erasure` (the customer asked).
    #[serde(default)]
    pub reason_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Decision {
    pub approver: String,
    pub decision: String,
    pub comment: String,
    pub decided_at: DateTime<Utc>,
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
    /// For `destroy`: `retention` or `erasure`.
    pub reason_type: Option<String>,
    /// For `destroy`: when the destruction it authorized was carried out.
    pub used_at: Option<DateTime<Utc>>,
    /// Why a request was cancelled other than by its requester (`account_disabled`).
    #[sqlx(default)]
    pub cancel_reason: Option<String>,
    #[sqlx(skip)]
    pub decisions: Vec<Decision>,
    #[sqlx(skip)]
    pub grant: Option<GrantView>,
    /// What the caller may do with it now (the policy's answer, for the interface; each
    /// action decides again when it is taken).
    #[sqlx(skip)]
    pub may: Abilities,
}

/// What the caller may do with a request now.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Abilities {
    pub decide: bool,
    pub cancel: bool,
    pub revoke: bool,
}

const REQUEST_SELECT: &str = "SELECT q.id, q.record_id, r.reference, r.title, q.kind, q.purpose, q.duration_hours, \
     CASE WHEN q.state = 'pending' AND q.expires_at <= now() THEN 'expired' ELSE q.state END AS state, \
     q.required_approvals, q.approver_role, q.same_department, q.department, q.sensitivity, u.username AS requester, \
     q.requester_id, q.created_at, q.expires_at, q.reason_type, q.used_at, q.cancel_reason \
     FROM access_requests q JOIN records r ON r.id = q.record_id JOIN users u ON u.id = q.requester_id";

/// The request's state as of now (a pending request past its expiry is `expired`).
const STATE: &str =
    "CASE WHEN q.state = 'pending' AND q.expires_at <= now() THEN 'expired' ELSE q.state END";

/// Fills decisions and grants of a list of requests: two queries, whatever its length.
async fn fill_all(
    conn: &mut PgConnection,
    app: &App,
    who: &Principal,
    mut list: Vec<RequestView>,
) -> AppResult<Vec<RequestView>> {
    let ids: Vec<Uuid> = list.iter().map(|v| v.id).collect();
    #[derive(sqlx::FromRow)]
    struct Row {
        request_id: Uuid,
        #[sqlx(flatten)]
        decision: Decision,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT d.request_id, u.username AS approver, d.decision, d.comment, d.decided_at \
         FROM request_decisions d JOIN users u ON u.id = d.approver_id \
         WHERE d.request_id = ANY($1) ORDER BY d.decided_at",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut decisions: HashMap<Uuid, Vec<Decision>> = HashMap::new();
    for r in rows {
        decisions.entry(r.request_id).or_default().push(r.decision);
    }
    let mut grants: HashMap<Uuid, GrantView> = crate::grants::of_requests(conn, &ids)
        .await?
        .into_iter()
        .collect();
    for v in &mut list {
        v.decisions = decisions.remove(&v.id).unwrap_or_default();
        v.grant = grants.remove(&v.id);
        v.may = abilities(app, who, v);
    }
    Ok(list)
}

async fn fill(
    conn: &mut PgConnection,
    app: &App,
    who: &Principal,
    v: RequestView,
) -> AppResult<RequestView> {
    let mut list = fill_all(conn, app, who, vec![v]).await?;
    list.pop().ok_or(AppError::NotFound)
}

/// The request `id`, locked for the rest of the unit of work when `lock` is set.
async fn find(conn: &mut PgConnection, id: Uuid, lock: bool) -> AppResult<Option<RequestView>> {
    let lock = if lock { " FOR UPDATE OF q" } else { "" };
    Ok(
        sqlx::query_as(&format!("{REQUEST_SELECT} WHERE q.id = $1{lock}"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// The request as the access policy sees it: its record's sensitivity and department, its
/// route, and whether it is the caller's own.
fn object<'a>(who: &Principal, v: &'a RequestView) -> AppResult<Resource<'a>> {
    let s = Sensitivity::parse(&v.sensitivity).unwrap_or(Sensitivity::Secret);
    let role: Role = v
        .approver_role
        .parse()
        .map_err(|_| AppError::internal("a request routed to an unknown role"))?;
    Ok(Resource::new(s, &v.department)
        .of(v.id)
        .owned(who.user().id.0 == v.requester_id)
        .routed(role, v.same_department))
}

fn abilities(app: &App, who: &Principal, v: &RequestView) -> Abilities {
    let Ok(r) = object(who, v) else {
        return Abilities::default();
    };
    let pending = v.state == "pending";
    let decided = v
        .decisions
        .iter()
        .any(|d| d.approver == who.user().username);
    let revocable = v.grant.as_ref().is_some_and(|g| g.state == "active") && {
        let s = Sensitivity::parse(&v.sensitivity).unwrap_or(Sensitivity::Secret);
        app.policies
            .allows::<RevokeGrant>(who, &Resource::new(s, &v.department))
    };
    Abilities {
        decide: pending && !decided && app.policies.allows::<ApproveRequest>(who, &r),
        cancel: pending && app.policies.allows::<CancelRequest>(who, &r),
        revoke: revocable,
    }
}

/// Loads request `id` and checks action `A` on it. A missing request or a refusal is
/// noted for the audit trail (written even though the unit rolls back) and answered as
/// the policy says: 404 when the caller may not see the request, else 403.
async fn load_for<A: crate::policy::Action>(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: Uuid,
    lock: bool,
    audit_action: &'static str,
) -> AppResult<RequestView> {
    let refusal = |why: &str| {
        Event::new(audit_action, Outcome::Denied)
            .object("request", id)
            .detail(json!({ "reason": why }))
    };
    let Some(v) = find(tx, id, lock).await? else {
        tx.refuse(&who.actor(), refusal("not_found"));
        return Err(AppError::NotFound);
    };
    if let Err(e) = app.policies.authorize::<A>(who, Some(&object(who, &v)?)) {
        tx.refuse(&who.actor(), refusal("denied"));
        return Err(e);
    }
    Ok(v)
}

#[tracing::instrument(skip_all, fields(record = %new.record_id))]
pub async fn create(app: &App, who: &Principal, new: NewRequest) -> AppResult<RequestView> {
    let (record, category) = if new.kind == Kind::Destroy {
        let (_permit, record, category) =
            crate::records::load_for::<crate::policy::DestroyRecord>(app, who, new.record_id)
                .await?;
        (record, category)
    } else {
        let (_permit, record, category) =
            crate::records::load_for::<RequestAccess>(app, who, new.record_id).await?;
        (record, category)
    };
    let reason_type = crate::lifecycle::destroy_reason(new.kind, new.reason_type.as_deref())?;
    let purpose = new.purpose.trim().to_string();
    // The minimum counts what a reader sees, a CJK character as 2.5 Latin ones.
    purpose::check(&purpose)?;
    let route = app
        .workflows
        .route(new.kind, category.sensitivity, &category.code)
        .ok_or_else(|| {
            AppError::invalid(
                "kind",
                "no workflow allows this kind of request on this record",
            )
        })?;
    let mut new = new;
    if new.kind == Kind::Destroy && new.duration_hours == 0 {
        new.duration_hours = route.max_hours;
    }
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
    unit!(app.db, |tx| {
        // Not in the name of an account being disabled at this moment.
        crate::users::hold_actor(&mut tx, who).await?;
        // No new access to, or second destruction of, a destroyed record; no destruction
        // asked for while a legal hold stands.
        crate::lifecycle::refuse_if_destroyed(&mut tx, record.id).await?;
        if new.kind == Kind::Destroy {
            crate::lifecycle::refuse_if_held(&mut tx, record.id).await?;
        }
        sqlx::query(
            "INSERT INTO access_requests (id, record_id, requester_id, kind, purpose, duration_hours, \
             required_approvals, approver_role, same_department, department, sensitivity, expires_at, \
             reason_type) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now() + $12 * interval '1 hour', $13)",
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
        .bind(reason_type)
        .execute(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("request.create", Outcome::Success)
                .object("request", id)
                .detail(json!({
                    "record": record.id, "reference": record.reference, "kind": new.kind.as_str(),
                    "purpose": purpose, "duration_hours": new.duration_hours,
                    "required_approvals": route.approvals, "reason_type": reason_type,
                })),
        )
        .await?;
        if route.approvals == 0 {
            approved(
                &mut tx,
                id,
                new.kind,
                &who.actor(),
                "auto-approved by workflow",
            )
            .await?;
        }
        let v = find(&mut tx, id, false).await?.ok_or(AppError::NotFound)?;
        fill(&mut tx, app, who, v).await
    })
}

/// Request `id`, if the policy lets `who` see it (`request.read`); else 404, audited.
#[tracing::instrument(skip_all, fields(request = %id))]
pub async fn get(app: &App, who: &Principal, id: Uuid) -> AppResult<RequestView> {
    unit!(app.db, |tx| {
        let v = load_for::<ReadRequest>(&mut tx, app, who, id, false, "request.read").await?;
        fill(&mut tx, app, who, v).await
    })
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

/// The caller's own requests, or (`to_approve`) the queue of requests waiting for the
/// caller's decision. Filters apply in SQL before the limit; decisions and grants are
/// read for the whole page at once.
#[tracing::instrument(skip_all)]
pub async fn list(app: &App, who: &Principal, f: Filter) -> AppResult<RequestList> {
    const LIMIT: i64 = 500;
    let to_approve = f.to_approve.unwrap_or(false);
    let user = who.user();
    unit!(app.db, |tx| {
        let rows: Vec<RequestView> = if to_approve {
            queue(&mut tx, app, who, f.state.as_deref(), LIMIT).await?
        } else {
            sqlx::query_as(&format!(
                "{REQUEST_SELECT} WHERE q.requester_id = $1 AND ($2::text IS NULL OR {STATE} = $2) \
                 ORDER BY q.created_at DESC LIMIT $3"
            ))
            .bind(user.id)
            .bind(&f.state)
            .bind(LIMIT)
            .fetch_all(&mut *tx)
            .await?
        };
        let out = fill_all(&mut tx, app, who, rows).await?;
        let waiting = to_approve.then_some(out.len());
        Ok(RequestList {
            requests: out,
            waiting,
        })
    })
}

/// The requests waiting for `who`'s decision, oldest first (at most `limit`): pending, not
/// expired, not their own, not yet decided by them, routed to one of their roles (and
/// department, where the route says so); then the policy's own decision on each. The
/// approvals queue and the count in the navigation ([`waiting`]) both read it.
async fn queue(
    conn: &mut PgConnection,
    app: &App,
    who: &Principal,
    state: Option<&str>,
    limit: i64,
) -> AppResult<Vec<RequestView>> {
    let user = who.user();
    let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
    let rows: Vec<RequestView> = sqlx::query_as(&format!(
        "{REQUEST_SELECT} WHERE q.state = 'pending' AND q.expires_at > now() AND q.requester_id <> $1 \
         AND q.approver_role = ANY($2) AND (NOT q.same_department OR q.department = $3) \
         AND NOT EXISTS (SELECT 1 FROM request_decisions d WHERE d.request_id = q.id AND d.approver_id = $1) \
         AND ($4::text IS NULL OR {STATE} = $4) \
         ORDER BY q.created_at LIMIT $5"
    ))
    .bind(user.id)
    .bind(&roles)
    .bind(&user.department)
    .bind(state)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|v| object(who, v).is_ok_and(|r| app.policies.allows::<ApproveRequest>(who, &r)))
        .collect())
}

/// Everything the record page shows, from one unit of work that reads the record once.
#[derive(Debug, Serialize)]
pub struct RecordPage {
    pub record: crate::records::model::RecordView,
    pub revisions: Vec<crate::records::model::Revision>,
    pub files: Vec<crate::records::model::FileInfo>,
    pub moves: Vec<crate::records::register::MoveEntry>,
    /// The caller's view grant in force on the record, if any.
    pub view_grant: Option<GrantView>,
    /// The caller's own requests on the record.
    pub my_requests: Vec<RequestView>,
}

/// The record page for `who`: the record (masked, or unmasked under a grant and then
/// audited), its revisions, files and moves, the caller's view grant and requests on it.
#[tracing::instrument(skip_all, fields(record = %id))]
pub async fn record_page(app: &App, who: &Principal, id: RecordId) -> AppResult<RecordPage> {
    use crate::records::{self, files, register};
    unit!(app.db, |tx| {
        let (permit, record, category) = records::load_in::<crate::policy::ReadRecord>(
            &mut tx,
            app,
            who,
            id,
            crate::policy::GrantState::None,
        )
        .await?;
        let shown = records::shown(&mut tx, app, who, &permit, &record, &category).await?;
        let revisions = records::revisions_of(&mut tx, &permit, &record).await?;
        let files = files::list_in(&mut tx, &permit).await?;
        let moves = register::moves_of(&mut tx, &permit).await?;
        let view_grant = crate::grants::active_grant(&mut tx, who, id, &[Kind::View]).await?;
        let mine: Vec<RequestView> = sqlx::query_as(&format!(
            "{REQUEST_SELECT} WHERE q.requester_id = $1 AND q.record_id = $2 \
             ORDER BY q.created_at DESC LIMIT 100"
        ))
        .bind(who.user().id)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let my_requests = fill_all(&mut tx, app, who, mine).await?;
        Ok(RecordPage {
            record: shown,
            revisions,
            files,
            moves,
            view_grant,
            my_requests,
        })
    })
}

/// Checks that a request (already authorized) can still be decided or cancelled.
fn still_pending(v: &RequestView) -> AppResult<()> {
    match v.state.as_str() {
        "pending" => Ok(()),
        "expired" => Err(AppError::Conflict("the request has expired".into())),
        "approved" => Err(AppError::Conflict(
            "the request has already been approved".into(),
        )),
        "rejected" => Err(AppError::Conflict(
            "the request has already been rejected".into(),
        )),
        "cancelled" => Err(AppError::Conflict("the request has been cancelled".into())),
        _ => Err(AppError::Conflict(
            "the request is no longer pending".into(),
        )),
    }
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

/// Approves or rejects request `id`. The policy decides first (404 for a request the
/// caller may not see, 403 for one they see but may not decide, both audited); only then
/// is its state checked (409 when no longer pending).
#[tracing::instrument(skip_all, fields(request = %id, approve))]
pub async fn decide(
    app: &App,
    who: &Principal,
    id: Uuid,
    approve: bool,
    comment: &str,
) -> AppResult<RequestView> {
    let comment = check_comment(comment)?;
    let action = if approve {
        "request.approve"
    } else {
        "request.reject"
    };
    unit!(app.db, |tx| {
        let v = load_for::<ApproveRequest>(&mut tx, app, who, id, true, action).await?;
        still_pending(&v)?;
        // Disabling cancels what is pending; a decision racing it finds the account gone.
        if approve && !crate::users::hold_account(&mut tx, UserId(v.requester_id)).await? {
            return Err(AppError::Conflict(
                "the requester's account is disabled".into(),
            ));
        }
        if !approve && comment.is_empty() {
            return Err(AppError::invalid(
                "comment",
                "say why the request is rejected",
            ));
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
            return Err(AppError::Conflict(
                "you have already decided on this request".into(),
            ));
        }
        tx.audit(
            &who.actor(),
            Event::new(action, Outcome::Success)
                .object("request", id)
                .detail(
                    json!({"comment": comment, "purpose": v.purpose, "reference": v.reference}),
                ),
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
                let kind = Kind::parse(&v.kind).unwrap_or(Kind::Lookup);
                approved(&mut tx, id, kind, &who.actor(), "approved").await?;
            }
        } else {
            sqlx::query(
                "UPDATE access_requests SET state = 'rejected', decided_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        let v = find(&mut tx, id, false).await?.ok_or(AppError::NotFound)?;
        fill(&mut tx, app, who, v).await
    })
}

/// Completes the approval of request `id`: a grant for the kinds that open something, and
/// for `destroy` only the approved state (the destruction itself uses the request once).
async fn approved(
    tx: &mut Tx,
    id: Uuid,
    kind: Kind,
    actor: &crate::audit::Actor,
    why: &str,
) -> AppResult<()> {
    if kind == Kind::Destroy {
        crate::lifecycle::approve_destroy(tx, id, actor, why).await
    } else {
        crate::grants::create(tx, id, actor, why).await
    }
}

/// Withdraws the caller's own pending request.
#[tracing::instrument(skip_all, fields(request = %id))]
pub async fn cancel(app: &App, who: &Principal, id: Uuid) -> AppResult<RequestView> {
    unit!(app.db, |tx| {
        let v = load_for::<CancelRequest>(&mut tx, app, who, id, true, "request.cancel").await?;
        still_pending(&v)?;
        sqlx::query(
            "UPDATE access_requests SET state = 'cancelled', decided_at = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("request.cancel", Outcome::Success)
                .object("request", id)
                .detail(json!({"purpose": v.purpose, "reference": v.reference})),
        )
        .await?;
        let v = find(&mut tx, id, false).await?.ok_or(AppError::NotFound)?;
        fill(&mut tx, app, who, v).await
    })
}

/// Expires pending requests and grants whose time has passed. Several nodes may run it at
/// once: rows are taken with `FOR UPDATE SKIP LOCKED`, so none is handled twice.
#[tracing::instrument(skip_all)]
pub async fn expire_due(db: &crate::tx::Db) -> AppResult<(u64, u64)> {
    let system = crate::audit::Actor::system("system");
    unit!(db, |tx| {
        let requests: Vec<(Uuid, String)> = sqlx::query_as(
            "UPDATE access_requests SET state = 'expired', decided_at = now() WHERE id IN \
             (SELECT id FROM access_requests WHERE state = 'pending' AND expires_at <= now() \
              FOR UPDATE SKIP LOCKED LIMIT 1000) RETURNING id, purpose",
        )
        .fetch_all(&mut *tx)
        .await?;
        for (id, purpose) in &requests {
            tx.audit(
                &system,
                Event::new("request.expire", Outcome::Success)
                    .object("request", id)
                    .detail(json!({"purpose": purpose})),
            )
            .await?;
        }
        let grants = crate::grants::expire_due(&mut tx, &system).await?;
        Ok((requests.len() as u64, grants))
    })
}
