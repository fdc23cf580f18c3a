//! Carrying out a destruction, and the destruction register. See the module header of
//! [`super`] for what a destruction does and in which order.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{
    DestroyRecord, GrantState, ReadDestructions, ReadRecord, Resource, Sensitivity,
};
use crate::records::model::RecordId;
use crate::storage::Store;
use crate::users::Role;
use crate::{unit, App};

/// `POST /records/{id}/destroy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destroy {
    pub request_id: Uuid,
    /// The username of the person who witnesses the destruction.
    pub witness: String,
    /// How the paper file was destroyed (e.g. cross-cut shredding), and that the digital
    /// files were crypto-shredded.
    pub method: String,
}

/// One destroyed file as its certificate names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestroyedFile {
    pub file_id: Uuid,
    pub version: i32,
    pub name: String,
    pub media_type: String,
    pub size: i64,
    /// SHA-256 of the file's plaintext as recorded at upload, in hex.
    pub sha256: String,
    pub uploaded_at: DateTime<Utc>,
}

/// An approver of the destroy request.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Approver {
    pub username: String,
    pub decided_at: DateTime<Utc>,
    pub comment: String,
}

/// A certificate of destruction: one entry of the register.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Certificate {
    pub id: Uuid,
    pub record_id: Uuid,
    pub request_id: Uuid,
    pub reference: String,
    pub title: String,
    pub category_code: String,
    pub category_path: String,
    pub filed_at: DateTime<Utc>,
    /// `retention` or `erasure`.
    pub reason_type: String,
    /// The destroy request's purpose: why.
    pub purpose: String,
    pub requester: String,
    #[sqlx(json)]
    pub approvers: Vec<Approver>,
    pub executor: String,
    pub witness: String,
    pub method: String,
    #[sqlx(json)]
    pub files: Vec<DestroyedFile>,
    /// The sensitive fields whose values were erased (names only).
    #[sqlx(json)]
    pub erased_fields: Vec<String>,
    /// Whether the record had a paper file (now marked destroyed).
    pub paper: bool,
    pub destroyed_at: DateTime<Utc>,
}

const CERT_SELECT: &str =
    "SELECT id, record_id, request_id, reference, title, category_code, category_path, \
     filed_at, reason_type, purpose, requester, approvers, executor, witness, method, files, \
     erased_fields, paper, destroyed_at FROM destructions";

fn check_method(method: &str) -> AppResult<String> {
    let m = method.trim();
    let n = m.chars().count();
    if !(3..=500).contains(&n) {
        return Err(AppError::invalid(
            "method",
            "say how the file was destroyed, in 3 to 500 characters",
        ));
    }
    Ok(m.to_string())
}

#[derive(sqlx::FromRow)]
struct DestroyRequest {
    record_id: Uuid,
    kind: String,
    state: String,
    used_at: Option<DateTime<Utc>>,
    requester_id: Uuid,
    requester: String,
    purpose: String,
    reason_type: Option<String>,
    required_approvals: i32,
    approvals: i64,
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: Uuid,
    version: i32,
    original_name: String,
    media_type: String,
    size: i64,
    sha256: Vec<u8>,
    uploaded_at: DateTime<Utc>,
    object_key: String,
}

/// Carries out the destruction of record `id` under approved destroy request
/// `d.request_id`, witnessed by `d.witness`. Returns the certificate.
#[tracing::instrument(skip_all, fields(record = %id))]
pub async fn destroy(
    app: &App,
    who: &Principal,
    id: RecordId,
    d: Destroy,
) -> AppResult<Certificate> {
    let method = check_method(&d.method)?;
    let witness_name = d.witness.trim().to_string();
    let (cert, keys, grants) = unit!(app.db, |tx| {
        let (_permit, record, category) =
            crate::records::load_in::<DestroyRecord>(&mut tx, app, who, id, GrantState::None)
                .await?;
        // One destruction at a time per record: the record row is locked to the end.
        sqlx::query("SELECT 1 FROM records WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        super::refuse_if_destroyed(&mut tx, id).await?;
        super::refuse_if_held(&mut tx, id).await?;
        let q: Option<DestroyRequest> = sqlx::query_as(
            "SELECT q.record_id, q.kind, \
             CASE WHEN q.state = 'pending' AND q.expires_at <= now() THEN 'expired' ELSE q.state END AS state, \
             q.used_at, q.requester_id, u.username AS requester, q.purpose, q.reason_type, q.required_approvals, \
             (SELECT count(*) FROM request_decisions d WHERE d.request_id = q.id AND d.decision = 'approve') AS approvals \
             FROM access_requests q JOIN users u ON u.id = q.requester_id WHERE q.id = $1 FOR UPDATE OF q",
        )
        .bind(d.request_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(q) = q.filter(|q| q.kind == "destroy" && q.record_id == id.0) else {
            return Err(AppError::invalid(
                "request_id",
                "is not a destroy request for this record",
            ));
        };
        if q.used_at.is_some() {
            return Err(AppError::Conflict(
                "the destroy request has already been used".into(),
            ));
        }
        if q.state == "pending" {
            return Err(AppError::Conflict(format!(
                "the destroy request is not approved yet ({} of {} approvals)",
                q.approvals, q.required_approvals
            )));
        }
        if q.state != "approved" {
            return Err(AppError::Conflict(format!(
                "the destroy request was not approved (it is {})",
                q.state
            )));
        }
        let witness = witness_of(&mut tx, &witness_name).await?;
        if witness == who.user().id.0 {
            return Err(AppError::invalid(
                "witness",
                "must be someone other than the person carrying out the destruction",
            ));
        }
        if witness == q.requester_id {
            return Err(AppError::invalid(
                "witness",
                "must be someone other than the person who requested the destruction",
            ));
        }
        let paper: Option<String> = sqlx::query_scalar(
            "SELECT status FROM record_physical WHERE record_id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if paper.as_deref() == Some("on_loan") {
            return Err(AppError::Conflict(
                "the paper file is on loan: take it back through the loans desk first".into(),
            ));
        }
        let approvers: Vec<Approver> = sqlx::query_as(
            "SELECT u.username, d.decided_at, d.comment FROM request_decisions d \
             JOIN users u ON u.id = d.approver_id \
             WHERE d.request_id = $1 AND d.decision = 'approve' ORDER BY d.decided_at",
        )
        .bind(d.request_id)
        .fetch_all(&mut *tx)
        .await?;

        // Files: the rows (and with them the wrapped data keys) go now, the objects are
        // queued for deletion.
        let files: Vec<FileRow> = sqlx::query_as(
            "DELETE FROM files WHERE record_id = $1 RETURNING id, version, original_name, media_type, \
             size, sha256, uploaded_at, object_key",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let keys: Vec<String> = files.iter().map(|f| f.object_key.clone()).collect();
        sqlx::query(
            "INSERT INTO object_deletions (store_key) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
        let mut listed: Vec<DestroyedFile> = files
            .iter()
            .map(|f| DestroyedFile {
                file_id: f.id,
                version: f.version,
                name: f.original_name.clone(),
                media_type: f.media_type.clone(),
                size: f.size,
                sha256: hex::encode(&f.sha256),
                uploaded_at: f.uploaded_at,
            })
            .collect();
        listed.sort_by_key(|f| f.version);

        // Sensitive values: ciphertext and blind index, current and kept in revisions.
        let mut erased: Vec<String> = sqlx::query_scalar(
            "DELETE FROM record_sensitive_values WHERE record_id = $1 RETURNING field",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let old: Vec<String> = sqlx::query_scalar(
            "DELETE FROM record_revision_sensitive_values WHERE record_id = $1 RETURNING field",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        erased.extend(old);
        erased.sort();
        erased.dedup();
        // Corrections still waiting for review hold what was typed, sealed: withdrawn and
        // erased with the record's other values.
        sqlx::query(
            "UPDATE record_proposals SET state = 'withdrawn', decided_at = now(), \
             comment = 'record destroyed', sealed = ''::bytea \
             WHERE record_id = $1 AND state = 'pending'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;

        // The paper file.
        if let Some(from) = &paper {
            sqlx::query(
                "UPDATE record_physical SET status = 'destroyed', updated_at = now() WHERE record_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO physical_moves (id, record_id, from_box_id, to_box_id, from_status, to_status, reason, moved_by) \
                 SELECT $1, $2, box_id, box_id, $3, 'destroyed', $4, $5 FROM record_physical WHERE record_id = $2",
            )
            .bind(Uuid::new_v4())
            .bind(id)
            .bind(from)
            .bind(format!("destroyed: {method}"))
            .bind(who.user().id)
            .execute(&mut *tx)
            .await?;
        }

        // Nothing stays open on it: grants in force end, other open requests are cancelled.
        let grants: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE grants SET state = 'revoked', revoked_by = $2, revoked_at = now(), \
             revoke_reason = 'record destroyed' \
             WHERE record_id = $1 AND revoked_at IS NULL AND state = 'active' RETURNING id",
        )
        .bind(id)
        .bind(who.user().id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE access_requests SET state = 'cancelled', decided_at = now() \
             WHERE record_id = $1 AND state = 'pending' AND id <> $2",
        )
        .bind(id)
        .bind(d.request_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE access_requests SET used_at = now() WHERE id = $1")
            .bind(d.request_id)
            .execute(&mut *tx)
            .await?;

        let cert_id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO destructions (id, record_id, request_id, reference, title, category_code, \
             category_path, filed_at, reason_type, purpose, requester_id, requester, approvers, \
             executor_id, executor, witness_id, witness, method, files, erased_fields, paper) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        )
        .bind(cert_id)
        .bind(id)
        .bind(d.request_id)
        .bind(&record.reference)
        .bind(&record.title)
        .bind(&category.code)
        .bind(&category.path)
        .bind(record.created_at)
        .bind(q.reason_type.as_deref().unwrap_or("retention"))
        .bind(&q.purpose)
        .bind(q.requester_id)
        .bind(&q.requester)
        .bind(sqlx::types::Json(&approvers))
        .bind(who.user().id)
        .bind(&who.user().username)
        .bind(witness)
        .bind(&witness_name)
        .bind(&method)
        .bind(sqlx::types::Json(&listed))
        .bind(sqlx::types::Json(&erased))
        .bind(paper.is_some())
        .execute(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("record.destroy", Outcome::Success)
                .object("record", id)
                .detail(json!({
                    "certificate": cert_id, "request": d.request_id, "reference": record.reference,
                    "reason_type": q.reason_type, "witness": witness_name, "method": method,
                    "files": listed.len(), "erased_fields": erased, "paper": paper.is_some(),
                    "grants_revoked": grants,
                })),
        )
        .await?;
        let cert = one(&mut tx, cert_id).await?;
        Ok((cert, keys, grants))
    })?;
    // The keys are gone with the commit; what the viewer holds in memory goes now, and the
    // objects after it. Whatever cannot be deleted now the storage GC deletes later.
    for g in grants {
        app.viewer_cache.forget_grant(g);
    }
    delete_objects(&app.store, app.db.pool(), &keys).await;
    Ok(cert)
}

/// The id of the active account `name`, to witness a destruction.
async fn witness_of(conn: &mut PgConnection, name: &str) -> AppResult<Uuid> {
    let found: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE username = $1 AND status = 'active'")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    found.ok_or_else(|| AppError::invalid("witness", "must be the username of an active account"))
}

/// Deletes the objects `keys` from the store and takes each deleted one off the pending
/// list. A failure is logged and left on the list for the storage GC. Returns how many
/// were deleted.
pub async fn delete_objects(store: &Store, pool: &sqlx::PgPool, keys: &[String]) -> u64 {
    let mut done = 0;
    for key in keys {
        match store.delete(key).await {
            Ok(()) => {
                done += 1;
                if let Err(e) = sqlx::query("DELETE FROM object_deletions WHERE store_key = $1")
                    .bind(key)
                    .execute(pool)
                    .await
                {
                    tracing::warn!(error = %e, "a deleted object stays on the pending list; the GC will clear it");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a destroyed file's object could not be deleted yet; the GC will");
                let _ = sqlx::query(
                    "UPDATE object_deletions SET attempts = attempts + 1 WHERE store_key = $1",
                )
                .bind(key)
                .execute(pool)
                .await;
            }
        }
    }
    done
}

/// Finishes the pending deletions (objects of destroyed files not yet deleted): called by
/// the storage GC. Returns how many objects were deleted.
pub async fn finish_pending(store: &Store, pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT store_key FROM object_deletions ORDER BY queued_at LIMIT 10000")
            .fetch_all(pool)
            .await?;
    Ok(delete_objects(store, pool, &keys).await)
}

async fn one(conn: &mut PgConnection, id: Uuid) -> AppResult<Certificate> {
    sqlx::query_as(&format!("{CERT_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(AppError::NotFound)
}

/// The destruction of record `record`, if it was destroyed (for its page; the caller has
/// read the record under the policy).
pub(crate) async fn of_record(
    conn: &mut PgConnection,
    record: RecordId,
) -> AppResult<Option<Certificate>> {
    Ok(
        sqlx::query_as(&format!("{CERT_SELECT} WHERE record_id = $1"))
            .bind(record)
            .fetch_optional(conn)
            .await?,
    )
}

/// What the register is asked for.
#[derive(Debug, Clone, Default, Deserialize, Serialize, rocket::FromForm)]
pub struct Filter {
    pub record_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

fn date(field: &str, v: Option<&str>) -> AppResult<Option<NaiveDate>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| AppError::invalid(field, "must be a date (YYYY-MM-DD)")),
    }
}

/// The destruction register (`destruction.read`), newest first; `from` and `to` are days
/// (inclusive, UTC). `how` says what the read is for (json, page, csv, xlsx), for the
/// audit trail.
#[tracing::instrument(skip_all)]
pub async fn register(
    app: &App,
    who: &Principal,
    f: &Filter,
    how: &str,
) -> AppResult<Vec<Certificate>> {
    let record = match f
        .record_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(s) => Some(
            Uuid::parse_str(s)
                .map_err(|_| AppError::invalid("record_id", "must be a record id"))?,
        ),
    };
    let from = date("from", f.from.as_deref())?;
    let to = date("to", f.to.as_deref())?;
    unit!(app.db, |tx| {
        tx.authorize::<ReadDestructions>(&app.policies, who, None, None)?;
        let rows: Vec<Certificate> = sqlx::query_as(&format!(
            "{CERT_SELECT} WHERE ($1::uuid IS NULL OR record_id = $1) \
             AND ($2::date IS NULL OR destroyed_at >= $2::date) \
             AND ($3::date IS NULL OR destroyed_at < $3::date + 1) \
             ORDER BY destroyed_at DESC LIMIT 10000"
        ))
        .bind(record)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *tx)
        .await?;
        let ids: Vec<Uuid> = rows.iter().map(|c| c.id).collect();
        let shown = readable(&mut tx, app, who, &ids).await?;
        let rows: Vec<Certificate> = rows.into_iter().filter(|c| shown.contains(&c.id)).collect();
        tx.audit(
            &who.actor(),
            Event::new("destruction.read", Outcome::Success).detail(json!({
                "record": record, "from": from, "to": to, "as": how, "returned": rows.len(),
            })),
        )
        .await?;
        Ok(rows)
    })
}

/// Of the destructions `ids`, those `who` may see in the register: all of them for
/// auditors and archivists (who carry out destructions in every department); for a
/// supervisor, those whose record they may read, by the rule every read of a record
/// follows (another department's confidential and secret records no more than in the
/// archive).
async fn readable(
    tx: &mut PgConnection,
    app: &App,
    who: &Principal,
    ids: &[Uuid],
) -> AppResult<std::collections::HashSet<Uuid>> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT d.id, c.sensitivity, c.department FROM destructions d \
         JOIN records r ON r.id = d.record_id JOIN categories c ON c.id = r.category_id \
         WHERE d.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(tx)
    .await?;
    let everything = who.has_role(Role::Auditor) || who.has_role(Role::Archivist);
    Ok(rows
        .into_iter()
        .filter(|(_, level, department)| {
            everything
                || Sensitivity::parse(level).is_some_and(|level| {
                    app.policies
                        .allows::<ReadRecord>(who, &Resource::new(level, department))
                })
        })
        .map(|(id, _, _)| id)
        .collect())
}

/// One certificate (`destruction.read`), audited.
#[tracing::instrument(skip_all, fields(destruction = %id))]
pub async fn certificate(
    app: &App,
    who: &Principal,
    id: Uuid,
    how: &str,
) -> AppResult<Certificate> {
    unit!(app.db, |tx| {
        tx.authorize::<ReadDestructions>(
            &app.policies,
            who,
            None,
            Some(("destruction", id.to_string())),
        )?;
        let Some(cert) = sqlx::query_as::<_, Certificate>(&format!("{CERT_SELECT} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(tx.not_found(who, "destruction.read", ("destruction", id.to_string())));
        };
        if !readable(&mut tx, app, who, &[id]).await?.contains(&id) {
            return Err(tx.not_found(who, "destruction.read", ("destruction", id.to_string())));
        }
        tx.audit(
            &who.actor(),
            Event::new("destruction.read", Outcome::Success)
                .object("destruction", id)
                .detail(json!({"reference": cert.reference, "as": how})),
        )
        .await?;
        Ok(cert)
    })
}

/// The register as a table for CSV and .xlsx: one row per destroyed file (a destruction
/// without files gives one row with the file columns empty).
pub fn register_sheet(list: &[Certificate], ui: Option<crate::i18n::Ui>) -> crate::sheet::Sheet {
    use crate::i18n::{format_time, tr};
    use crate::sheet::{Cell, Sheet};
    const COLUMNS: [&str; 16] = [
        "certificate",
        "destroyed_at",
        "reference",
        "title",
        "category",
        "reason_type",
        "purpose",
        "requester",
        "approvers",
        "executor",
        "witness",
        "method",
        "file",
        "size",
        "sha256",
        "erased_fields",
    ];
    let (name, headers) = match ui {
        Some(ui) => (
            tr(ui.lang, "destr-sheet-name", &[]),
            COLUMNS
                .iter()
                .map(|c| tr(ui.lang, &format!("destr-col-{}", c.replace('_', "-")), &[]))
                .collect(),
        ),
        None => (
            "destructions".to_string(),
            COLUMNS.iter().map(|c| c.to_string()).collect(),
        ),
    };
    let mut sheet = Sheet::new(name, headers);
    let time = |t: DateTime<Utc>| match ui {
        Some(ui) => format_time(ui, t),
        None => t.to_rfc3339(),
    };
    for c in list {
        let approvers = c
            .approvers
            .iter()
            .map(|a| a.username.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let base = |file: Option<&DestroyedFile>| {
            vec![
                Cell::from(c.id.to_string()),
                Cell::from(time(c.destroyed_at)),
                Cell::from(c.reference.as_str()),
                Cell::from(c.title.as_str()),
                Cell::from(c.category_path.as_str()),
                Cell::from(c.reason_type.as_str()),
                Cell::from(c.purpose.as_str()),
                Cell::from(c.requester.as_str()),
                Cell::from(approvers.as_str()),
                Cell::from(c.executor.as_str()),
                Cell::from(c.witness.as_str()),
                Cell::from(c.method.as_str()),
                file.map_or(Cell::Empty, |f| Cell::from(f.name.as_str())),
                file.map_or(Cell::Empty, |f| Cell::from(f.size)),
                file.map_or(Cell::Empty, |f| Cell::from(f.sha256.as_str())),
                Cell::from(c.erased_fields.join(", ")),
            ]
        };
        if c.files.is_empty() {
            sheet.push(base(None));
        }
        for f in &c.files {
            sheet.push(base(Some(f)));
        }
    }
    sheet
}

/// The certificate as JSON for the API (the struct itself, plus the record's page).
pub fn to_json(c: &Certificate) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    v["certificate_pdf"] = Value::String(format!("/destructions/{}/certificate.pdf", c.id));
    v
}
