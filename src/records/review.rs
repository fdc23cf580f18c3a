//! Review before changes take effect. In a category with `review: true`, a new record or a
//! correction is kept as a proposal and takes effect only when a second person approves
//! it: an archivist, or a supervisor of the record's department, as `[review]` in
//! `workflows.toml` says (`record.review` in the access policy).
//!
//! Guarantees:
//! - A proposal is checked exactly as the change itself: the filing or correction runs in
//!   a savepoint that is rolled back, so whatever would refuse the change refuses the
//!   proposal, and nothing of it is visible (no record, no revision, no search text).
//! - What was typed, sensitive values included, is sealed with the vault's field key
//!   (bound to the proposal's id); the summary names fields and shows non-sensitive
//!   values only. The sealed copy is erased when the proposal is decided.
//! - The proposer never decides their own proposal; a proposal is decided once (the row is
//!   locked while it is decided). Approving applies the change as it was proposed, with
//!   the proposer as its author and the reviewer named in the revision history; if the
//!   record changed meanwhile so that the change no longer applies, approving fails and the
//!   proposal stays pending.
//! - Proposing, approving, rejecting and each refusal are audited.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::masking::Unmask;
use super::model::{Category, CategoryId, NewRecord, RecordChanges, RecordId};
use super::schema::Checked;
use super::{categories, create_in, repo, update_in};
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{EditRecord, FileRecord, ReviewChange};
use crate::tx::Tx;
use crate::users::Role;
use crate::{unit, App};

/// The name the sealed payload is bound to (with the proposal's id).
pub(crate) const SEALED_AS: &str = "proposal";

/// A proposal as reviewers and proposers see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Proposal {
    pub id: Uuid,
    /// `create` or `update`
    pub kind: String,
    pub state: String,
    pub category_id: CategoryId,
    pub category: String,
    pub department: String,
    pub record_id: Option<Uuid>,
    pub reference: Option<String>,
    pub proposer: String,
    pub created_at: DateTime<Utc>,
    pub reviewer: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub comment: String,
    /// `{title, reason?, fields: [{field, sensitive, value}]}`: sensitive values masked.
    pub summary: Value,
    /// The record filed or corrected, once approved.
    pub result_record_id: Option<Uuid>,
}

const SELECT: &str =
    "SELECT p.id, p.kind, p.state, p.category_id, c.code AS category, c.department, \
     p.record_id, r.reference, u.username AS proposer, p.created_at, v.username AS reviewer, \
     p.decided_at, p.comment, p.summary, p.result_record_id \
     FROM record_proposals p JOIN categories c ON c.id = p.category_id \
     JOIN users u ON u.id = p.proposer_id LEFT JOIN users v ON v.id = p.reviewer_id \
     LEFT JOIN records r ON r.id = COALESCE(p.record_id, p.result_record_id)";

/// The decision on a proposal.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    #[serde(default)]
    pub comment: String,
}

pub(super) async fn savepoint(tx: &mut Tx) -> AppResult<()> {
    sqlx::query("SAVEPOINT proposal_check")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn rollback_to_savepoint(tx: &mut Tx) -> AppResult<()> {
    sqlx::query("ROLLBACK TO SAVEPOINT proposal_check")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The fields of a proposal as its summary shows them: sensitive values masked as the
/// proposer's role would see them.
fn shown_fields(
    app: &App,
    who: &Principal,
    category: &Category,
    values: impl Iterator<Item = (String, Option<String>)>,
) -> Vec<Value> {
    let unmask = Unmask {
        policy: &app.masking,
        roles: &who.user().roles,
        grant: false,
    };
    values
        .map(|(name, value)| match (category.field(&name), value) {
            (Some(def), Some(v)) if def.sensitive => {
                json!({"field": name, "sensitive": true, "value": unmask.show(def, &v).0})
            }
            (_, v) => json!({"field": name, "sensitive": false, "value": v}),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn insert(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    category: &Category,
    record: Option<RecordId>,
    kind: &str,
    summary: Value,
    payload: &Value,
) -> AppResult<Proposal> {
    // Not in the name of an account being disabled at this moment (disabling withdraws
    // the proposals already made).
    crate::users::hold_actor(tx, who).await?;
    let id = Uuid::new_v4();
    let (kek_id, sealed) = app.keys.encrypt_field(id, SEALED_AS, &payload.to_string());
    sqlx::query(
        "INSERT INTO record_proposals (id, kind, category_id, record_id, proposer_id, summary, kek_id, sealed, \
         base_revision) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, (SELECT revision FROM records WHERE id = $4))",
    )
    .bind(id)
    .bind(kind)
    .bind(category.id)
    .bind(record)
    .bind(who.user().id)
    .bind(&summary)
    .bind(&kek_id)
    .bind(&sealed)
    .execute(&mut **tx)
    .await?;
    tx.audit(
        &who.actor(),
        Event::new("record.propose", Outcome::Success)
            .object("proposal", id)
            .detail(json!({
                "kind": kind, "category": category.code, "record": record,
                "fields": summary["fields"].as_array().map(|f| f.iter().map(|x| x["field"].clone()).collect::<Vec<_>>()),
            })),
    )
    .await?;
    one(tx, id).await
}

async fn one(tx: &mut Tx, id: Uuid) -> AppResult<Proposal> {
    sqlx::query_as(&format!("{SELECT} WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(AppError::NotFound)
}

/// Keeps a filing (already checked) as a proposal.
pub(super) async fn propose_create(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    category: &Category,
    title: &str,
    checked: &std::collections::BTreeMap<String, Checked>,
    new: &NewRecord,
) -> AppResult<Proposal> {
    let fields = shown_fields(
        app,
        who,
        category,
        checked
            .iter()
            .map(|(k, c)| (k.clone(), Some(c.value.clone()))),
    );
    let summary = json!({"title": title, "fields": fields, "physical": new.physical});
    let payload = serde_json::to_value(new).map_err(AppError::internal)?;
    insert(tx, app, who, category, None, "create", summary, &payload).await
}

/// Keeps a correction (already checked) as a proposal.
pub(super) async fn propose_update(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    category: &Category,
    id: RecordId,
    changes: &RecordChanges,
) -> AppResult<Proposal> {
    let fields = shown_fields(
        app,
        who,
        category,
        changes.fields.iter().map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .filter(|s| !s.trim().is_empty()),
            )
        }),
    );
    let summary =
        json!({"title": changes.title, "reason": changes.reason.trim(), "fields": fields});
    let payload = serde_json::to_value(changes).map_err(AppError::internal)?;
    insert(
        tx,
        app,
        who,
        category,
        Some(id),
        "update",
        summary,
        &payload,
    )
    .await
}

/// Whether `who` may review in this vault's setting (the role `[review]` names).
fn reviewer_role(app: &App, who: &Principal) -> bool {
    who.user().roles.contains(&app.workflows.review_role)
}

/// Proposals in `state` (default pending) that `who` may review: all for archivists,
/// their department's for supervisors; oldest first. Proposers see their own too.
#[tracing::instrument(skip_all)]
pub async fn list(app: &App, who: &Principal, state: Option<&str>) -> AppResult<Vec<Proposal>> {
    let state = state.unwrap_or("pending");
    if !["pending", "approved", "rejected", "withdrawn"].contains(&state) {
        return Err(AppError::invalid(
            "state",
            "must be pending, approved, rejected or withdrawn",
        ));
    }
    unit!(app.db, |tx| {
        let all_departments = who.user().roles.contains(&Role::Archivist);
        let reviewer = if all_departments {
            // An archivist lists at least their own proposals: whether they also review is
            // a question to the policy, not a refusal to audit.
            reviewer_role(app, who) && app.policies.authorize::<ReviewChange>(who, None).is_ok()
        } else {
            tx.authorize::<ReviewChange>(&app.policies, who, None, None)?;
            reviewer_role(app, who)
        };
        let rows: Vec<Proposal> = sqlx::query_as(&format!(
            "{SELECT} WHERE p.state = $1 AND (p.proposer_id = $2 OR ($3 AND ($4 OR c.department = $5))) \
             ORDER BY p.created_at LIMIT 500"
        ))
        .bind(state)
        .bind(who.user().id)
        .bind(reviewer)
        .bind(all_departments)
        .bind(&who.user().department)
        .fetch_all(&mut *tx)
        .await?;
        Ok(rows)
    })
}

/// Pending proposals for one record (its page shows that a change awaits review).
pub async fn pending_for_record(app: &App, id: RecordId) -> AppResult<i64> {
    unit!(app.db, |tx| {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM record_proposals WHERE record_id = $1 AND state = 'pending'",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?)
    })
}

/// Locks a pending proposal for a decision by `who`, after the checks every decision
/// needs: it exists, `who` may review its record, is not its proposer, and holds the
/// reviewing role; it is still pending.
async fn for_decision(
    tx: &mut Tx,
    app: &App,
    who: &Principal,
    id: Uuid,
) -> AppResult<(Proposal, Uuid, Category)> {
    let row: Option<(Uuid, Uuid, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT proposer_id, category_id, record_id, state FROM record_proposals WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((proposer, category_id, record, state)) = row else {
        return Err(tx.not_found(who, "record.review", ("proposal", id.to_string())));
    };
    let category = categories::get_in(tx, CategoryId(category_id)).await?;
    let resource = match record {
        Some(r) => category.resource().of(r),
        None => category.resource(),
    };
    tx.authorize::<ReviewChange>(
        &app.policies,
        who,
        Some(&resource),
        Some(("proposal", id.to_string())),
    )?;
    let refuse = |tx: &mut Tx, reason: &str| {
        tx.refuse(
            &who.actor(),
            Event::new("record.review", Outcome::Denied)
                .object("proposal", id)
                .detail(json!({ "reason": reason })),
        );
    };
    if proposer == who.user().id.0 {
        refuse(tx, "own_proposal");
        return Err(AppError::Conflict(
            "nobody reviews their own proposal: another person must".into(),
        ));
    }
    if !reviewer_role(app, who) {
        refuse(tx, "not_the_reviewing_role");
        return Err(AppError::Forbidden);
    }
    if state != "pending" {
        return Err(AppError::Conflict(format!(
            "this proposal was already decided ({state})"
        )));
    }
    Ok((one(tx, id).await?, proposer, category))
}

/// Approves a proposal: the change takes effect as proposed, with the proposer as its
/// author and `who` as its reviewer.
#[tracing::instrument(skip_all, fields(proposal = %id))]
pub async fn approve(app: &App, who: &Principal, id: Uuid, d: Decision) -> AppResult<Proposal> {
    let comment = check_comment(&d.comment)?;
    unit!(app.db, |tx| {
        let (p, proposer, category) = for_decision(&mut tx, app, who, id).await?;
        let (kek_id, sealed, base): (String, Vec<u8>, Option<i32>) = sqlx::query_as(
            "SELECT kek_id, sealed, base_revision FROM record_proposals WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let plain = app
            .keys
            .decrypt_field(id, SEALED_AS, &kek_id, &sealed)
            .map_err(|_| AppError::internal("a proposal could not be unsealed"))?;
        let proposer_name: String = sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
            .bind(proposer)
            .fetch_one(&mut *tx)
            .await?;
        let (record, revision) = match p.record_id {
            None => {
                let new: NewRecord = serde_json::from_str(&plain).map_err(AppError::internal)?;
                let title = super::check_title(&new.title)?;
                let checked = super::check_all(&category.fields, &new.fields)?;
                if !new.allow_title_with_sensitive {
                    let values = checked
                        .iter()
                        .map(|(k, c)| (k.clone(), c.value.clone()))
                        .collect();
                    super::title_reveals(&category, &title, &values)?;
                }
                let rid = create_in(&mut tx, app, who, &category, &title, &checked, &new).await?;
                (rid, 1)
            }
            Some(r) => {
                // A correction applies to the record as it was proposed against; approving
                // it over a later change would silently undo that change.
                let now: i32 =
                    sqlx::query_scalar("SELECT revision FROM records WHERE id = $1 FOR UPDATE")
                        .bind(r)
                        .fetch_one(&mut *tx)
                        .await?;
                if let Some(base) = base.filter(|b| *b != now) {
                    return Err(AppError::Conflict(format!(
                        "the record has changed since this correction was proposed (revision {now}, \
                         proposed against {base}); reject it and propose the correction again"
                    )));
                }
                let changes: RecordChanges =
                    serde_json::from_str(&plain).map_err(AppError::internal)?;
                let (rev, _) =
                    update_in::<ReviewChange>(&mut tx, app, who, RecordId(r), &changes).await?;
                (RecordId(r), rev)
            }
        };
        repo::mark_reviewed(
            &mut tx,
            record,
            revision,
            (crate::users::UserId(proposer), &proposer_name),
            &who.user().username,
        )
        .await?;
        decide(&mut tx, id, who, "approved", &comment, Some(record)).await?;
        tx.audit(
            &who.actor(),
            Event::new("record.review", Outcome::Success)
                .object("proposal", id)
                .detail(json!({
                    "decision": "approve", "kind": p.kind, "proposer": proposer_name,
                    "record": record, "revision": revision, "comment": comment,
                })),
        )
        .await?;
        one(&mut tx, id).await
    })
}

/// Rejects a proposal: nothing of it takes effect.
#[tracing::instrument(skip_all, fields(proposal = %id))]
pub async fn reject(app: &App, who: &Principal, id: Uuid, d: Decision) -> AppResult<Proposal> {
    let comment = check_comment(&d.comment)?;
    unit!(app.db, |tx| {
        let (p, _, _) = for_decision(&mut tx, app, who, id).await?;
        decide(&mut tx, id, who, "rejected", &comment, None).await?;
        tx.audit(
            &who.actor(),
            Event::new("record.review", Outcome::Success)
                .object("proposal", id)
                .detail(json!({
                    "decision": "reject", "kind": p.kind, "proposer": p.proposer,
                    "record": p.record_id, "comment": comment,
                })),
        )
        .await?;
        one(&mut tx, id).await
    })
}

/// The proposer takes back their own proposal while it waits (a mistake seen after
/// sending). Decided on the proposal's category or record by the action that let them
/// propose it (`record.create` or `record.update`); anyone else's proposal is refused.
#[tracing::instrument(skip_all, fields(proposal = %id))]
pub async fn withdraw(app: &App, who: &Principal, id: Uuid) -> AppResult<Proposal> {
    unit!(app.db, |tx| {
        let row: Option<(Uuid, Uuid, Option<Uuid>, String)> = sqlx::query_as(
            "SELECT proposer_id, category_id, record_id, state FROM record_proposals \
             WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((proposer, category_id, record, state)) = row else {
            return Err(tx.not_found(who, "record.propose", ("proposal", id.to_string())));
        };
        let category = categories::get_in(&mut tx, CategoryId(category_id)).await?;
        let object = Some(("proposal", id.to_string()));
        match record {
            Some(r) => {
                tx.authorize::<EditRecord>(
                    &app.policies,
                    who,
                    Some(&category.resource().of(r)),
                    object,
                )?;
            }
            None => {
                tx.authorize::<FileRecord>(&app.policies, who, Some(&category.resource()), object)?;
            }
        }
        if proposer != who.user().id.0 {
            tx.refuse(
                &who.actor(),
                Event::new("record.propose", Outcome::Denied)
                    .object("proposal", id)
                    .detail(json!({ "reason": "not_the_proposer" })),
            );
            return Err(AppError::Conflict(
                "only the person who proposed a change can withdraw it".into(),
            ));
        }
        if state != "pending" {
            return Err(AppError::Conflict(format!(
                "this proposal was already decided ({state})"
            )));
        }
        decide(&mut tx, id, who, "withdrawn", "", None).await?;
        tx.audit(
            &who.actor(),
            Event::new("record.review", Outcome::Success)
                .object("proposal", id)
                .detail(json!({
                    "decision": "withdrawn", "reason": "withdrawn_by_proposer",
                    "record": record, "category": category.code,
                })),
        )
        .await?;
        one(&mut tx, id).await
    })
}

fn check_comment(c: &str) -> AppResult<String> {
    let c = c.trim();
    if c.chars().count() > 1000 {
        return Err(AppError::invalid(
            "comment",
            "must be at most 1000 characters",
        ));
    }
    crate::text::check("comment", c, crate::text::Lines::Multi)?;
    Ok(c.to_string())
}

/// Records the decision and erases the sealed copy of what was typed.
async fn decide(
    tx: &mut Tx,
    id: Uuid,
    who: &Principal,
    state: &str,
    comment: &str,
    record: Option<RecordId>,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE record_proposals SET state = $2, reviewer_id = $3, decided_at = now(), \
         comment = $4, result_record_id = $5, sealed = ''::bytea WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(who.user().id)
    .bind(comment)
    .bind(record)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
