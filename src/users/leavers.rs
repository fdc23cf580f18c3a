//! Leavers: what a person holds, and how disabling their account settles it.
//!
//! Guarantees: disabling an account ([`super::disable_with`]) settles everything the
//! person holds in the same unit of work that disables it, so either all of it happens or
//! none: their pending requests are cancelled (`cancel_reason = account_disabled`), their
//! grants in force revoked (the viewer and every grant-bound path stop answering at once),
//! their loans still out flagged to the loans desk (`holder_left_at`, shown with the
//! holder's name until the file comes back), and their filings and corrections waiting
//! for review withdrawn, with what was typed in them erased. Each settled item leaves its
//! own audit event (`request.cancel`, `grant.revoke`, `loan.holder_left`, `record.review`)
//! and the disabling event lists the ids with the handover note; a handover row keeps the
//! note and the ids for the account page. Enabling the account again restores nothing
//! that was settled.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::UserId;
use crate::audit::{Actor, Event, Outcome};
use crate::error::{AppError, AppResult};
use crate::tx::Tx;

/// The longest handover note.
pub const NOTE_MAX: usize = 2000;

/// A pending request of the person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HeldRequest {
    pub id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
}

/// A grant in force of the person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HeldGrant {
    pub id: Uuid,
    pub request_id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    pub kind: String,
    pub valid_until: DateTime<Utc>,
}

/// A physical file out on loan in the person's name.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HeldLoan {
    pub id: Uuid,
    pub request_id: Uuid,
    pub record_id: Uuid,
    pub reference: String,
    pub due_date: NaiveDate,
}

/// Everything a person holds that disabling their account settles.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Holdings {
    pub requests: Vec<HeldRequest>,
    pub grants: Vec<HeldGrant>,
    pub loans: Vec<HeldLoan>,
}

impl Holdings {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.grants.is_empty() && self.loans.is_empty()
    }
}

/// What disabling an account settled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settlement {
    pub handover_id: Uuid,
    pub cancelled_requests: Vec<Uuid>,
    pub revoked_grants: Vec<Uuid>,
    pub flagged_loans: Vec<Uuid>,
    /// Their filings and corrections still waiting for review, withdrawn (and what was
    /// typed in them erased).
    pub withdrawn_proposals: Vec<Uuid>,
    pub sessions_ended: u64,
    pub note: String,
}

/// A handover as the account page shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Handover {
    pub id: Uuid,
    pub settled_by: String,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_requests: Vec<Uuid>,
    pub revoked_grants: Vec<Uuid>,
    pub flagged_loans: Vec<Uuid>,
}

/// Checks a handover note: trimmed, empty is none, at most [`NOTE_MAX`] characters.
pub fn check_note(note: Option<&str>) -> AppResult<String> {
    let note = note.map(str::trim).unwrap_or_default();
    if note.chars().count() > NOTE_MAX {
        return Err(AppError::invalid(
            "handover_note",
            "must be at most 2000 characters",
        ));
    }
    crate::text::check("handover_note", note, crate::text::Lines::Multi)?;
    Ok(note.to_string())
}

/// What `user` holds now. With `lock`, the rows are locked for the rest of the unit of
/// work, so what is settled is exactly what was listed.
pub(super) async fn holdings(
    conn: &mut PgConnection,
    user: UserId,
    lock: bool,
) -> AppResult<Holdings> {
    let lock_q = if lock { " FOR UPDATE OF q" } else { "" };
    let requests: Vec<HeldRequest> = sqlx::query_as(&format!(
        "SELECT q.id, q.record_id, r.reference, q.kind, q.created_at \
         FROM access_requests q JOIN records r ON r.id = q.record_id \
         WHERE q.requester_id = $1 AND q.state = 'pending' ORDER BY q.created_at{lock_q}"
    ))
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    let lock_g = if lock { " FOR UPDATE OF g" } else { "" };
    let grants: Vec<HeldGrant> = sqlx::query_as(&format!(
        "SELECT g.id, g.request_id, g.record_id, r.reference, g.kind, g.valid_until \
         FROM grants g JOIN records r ON r.id = g.record_id \
         WHERE g.grantee_id = $1 AND g.state = 'active' AND g.revoked_at IS NULL \
           AND g.valid_until > now() ORDER BY g.valid_until{lock_g}"
    ))
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    let lock_l = if lock { " FOR UPDATE OF l" } else { "" };
    let loans: Vec<HeldLoan> = sqlx::query_as(&format!(
        "SELECT l.id, l.request_id, l.record_id, r.reference, l.due_date \
         FROM loans l JOIN records r ON r.id = l.record_id \
         WHERE l.borrower_id = $1 AND l.returned_at IS NULL ORDER BY l.out_at{lock_l}"
    ))
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Holdings {
        requests,
        grants,
        loans,
    })
}

/// Settles what `user` holds, inside the unit of work that disables the account, and
/// audits each settled item. Returns the ids settled and the handover row's id.
pub(super) async fn settle(
    tx: &mut Tx,
    actor: &Actor,
    user: UserId,
    username: &str,
    note: &str,
) -> AppResult<Settlement> {
    let held = holdings(tx, user, true).await?;
    let mut s = Settlement {
        handover_id: Uuid::new_v4(),
        note: note.to_string(),
        ..Settlement::default()
    };
    for q in &held.requests {
        sqlx::query(
            "UPDATE access_requests SET state = 'cancelled', decided_at = now(), \
             cancel_reason = 'account_disabled' WHERE id = $1",
        )
        .bind(q.id)
        .execute(&mut **tx)
        .await?;
        tx.audit(
            actor,
            Event::new("request.cancel", Outcome::Success)
                .object("request", q.id)
                .detail(json!({
                    "reason": "account_disabled", "requester": username,
                    "reference": q.reference, "kind": q.kind,
                })),
        )
        .await?;
        s.cancelled_requests.push(q.id);
    }
    let reason = format!("account disabled: {username}");
    for g in &held.grants {
        sqlx::query(
            "UPDATE grants SET state = 'revoked', revoked_by = $2, revoked_at = now(), \
             revoke_reason = $3 WHERE id = $1",
        )
        .bind(g.id)
        .bind(actor.id)
        .bind(&reason)
        .execute(&mut **tx)
        .await?;
        tx.audit(
            actor,
            Event::new("grant.revoke", Outcome::Success)
                .object("grant", g.id)
                .detail(json!({
                    "request": g.request_id, "kind": g.kind, "reason": reason,
                    "account_disabled": true,
                })),
        )
        .await?;
        s.revoked_grants.push(g.id);
    }
    for l in &held.loans {
        sqlx::query("UPDATE loans SET holder_left_at = now() WHERE id = $1")
            .bind(l.id)
            .execute(&mut **tx)
            .await?;
        tx.audit(
            actor,
            Event::new("loan.holder_left", Outcome::Success)
                .object("loan", l.id)
                .detail(json!({
                    "request": l.request_id, "record": l.record_id,
                    "reference": l.reference, "holder": username,
                    "due_date": l.due_date,
                })),
        )
        .await?;
        s.flagged_loans.push(l.id);
    }
    s.withdrawn_proposals = sqlx::query_scalar(
        "UPDATE record_proposals SET state = 'withdrawn', decided_at = now(), \
         comment = 'account disabled', sealed = ''::bytea \
         WHERE proposer_id = $1 AND state = 'pending' RETURNING id",
    )
    .bind(user)
    .fetch_all(&mut **tx)
    .await?;
    for p in &s.withdrawn_proposals {
        tx.audit(
            actor,
            Event::new("record.review", Outcome::Success)
                .object("proposal", p)
                .detail(json!({
                    "decision": "withdrawn", "reason": "account_disabled", "proposer": username,
                })),
        )
        .await?;
    }
    sqlx::query(
        "INSERT INTO account_handovers (id, user_id, settled_by_id, settled_by, note, \
         cancelled_requests, revoked_grants, flagged_loans) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(s.handover_id)
    .bind(user)
    .bind(actor.id)
    .bind(&actor.name)
    .bind(note)
    .bind(&s.cancelled_requests)
    .bind(&s.revoked_grants)
    .bind(&s.flagged_loans)
    .execute(&mut **tx)
    .await?;
    Ok(s)
}

/// The handovers of `user`, newest first.
pub(super) async fn handovers(conn: &mut PgConnection, user: UserId) -> AppResult<Vec<Handover>> {
    Ok(sqlx::query_as(
        "SELECT id, settled_by, note, created_at, cancelled_requests, revoked_grants, \
         flagged_loans FROM account_handovers WHERE user_id = $1 \
         ORDER BY created_at DESC LIMIT 20",
    )
    .bind(user)
    .fetch_all(conn)
    .await?)
}
