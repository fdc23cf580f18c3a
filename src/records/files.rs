//! A record's files. Content goes to the object store only as ciphertext (see `storage`);
//! the row holds the wrapped data key, size, media type, original name and the SHA-256 of
//! the plaintext. Files are immutable: a new upload is a new version. The object is written
//! first and the row second; an object whose row never came is removed by the storage GC.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde_json::json;
use sqlx::PgConnection;
use tokio::io::AsyncRead;
use uuid::Uuid;

use super::model::{FileId, FileInfo, RecordId};
use crate::audit::{Actor, Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::{Action, GrantState, Permit, ReadRecord, ReadsContent, UploadFile};
use crate::storage::{FileRef, StorageError};
use crate::tx::Tx;
use crate::{unit, App};

const FILE_COLUMNS: &str =
    "id, record_id, version, original_name, media_type, size, sha256, uploaded_at";

/// The last path component of a client-supplied name, without control, bidi or invisible
/// characters.
pub fn clean_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    // Controls, bidi overrides and invisible characters go: `rtl\u{202E}fdp.exe` must not
    // display as `rtlexe.pdf`.
    let cleaned: String = crate::text::strip_hidden(last).chars().take(255).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        "file".into()
    } else {
        cleaned
    }
}

pub(crate) fn clean_media_type(raw: Option<&str>) -> String {
    let ok = |s: &str| {
        let mut parts = s.splitn(2, '/');
        let token = |t: &str| {
            !t.is_empty()
                && t.len() <= 100
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        };
        matches!((parts.next(), parts.next()), (Some(a), Some(b)) if token(a) && token(b))
    };
    match raw.map(|r| {
        r.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }) {
        Some(m) if ok(&m) => m,
        _ => "application/octet-stream".into(),
    }
}

/// Encrypts and stores one uploaded file as a new version of the record's files.
#[tracing::instrument(skip_all)]
pub async fn upload<R: AsyncRead + Unpin + Send>(
    app: &App,
    who: &Principal,
    record: RecordId,
    original_name: &str,
    media_type: Option<&str>,
    reader: R,
) -> AppResult<FileInfo> {
    let (_permit, rec, _) = super::load_for::<UploadFile>(app, who, record).await?;
    let file_id = FileId(Uuid::new_v4());
    let name = clean_name(original_name);
    // A known extension decides (browsers and scripts label files loosely); otherwise the
    // type the client gave. The viewer checks the content itself before showing anything.
    let media_type = match media_type_for(&name) {
        "application/octet-stream" => clean_media_type(media_type),
        known => known.to_string(),
    };
    let stored = match app
        .store
        .put_encrypted(&app.keys, file_id.0, reader, app.config.max_upload_bytes)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let (outcome_reason, err) = match e {
                StorageError::TooLarge { .. } => ("too_large", AppError::TooLarge),
                StorageError::Io(_) => (
                    "interrupted",
                    AppError::invalid("file", "the upload was interrupted"),
                ),
                other => ("storage_error", AppError::internal(other)),
            };
            app.db
                .record(
                    &who.actor(),
                    Event::new("file.upload", Outcome::Failure)
                        .object("record", record)
                        .detail(json!({"reason": outcome_reason, "reference": rec.reference})),
                )
                .await?;
            return Err(err);
        }
    };
    let result: AppResult<FileInfo> = unit!(app.db, |tx| {
        insert_row(
            &mut tx,
            who,
            record,
            &rec.reference,
            file_id,
            &stored,
            &name,
            &media_type,
        )
        .await
    });
    if result.is_err() {
        // The row did not land: remove the object now rather than wait for the GC.
        if let Err(e) = app.store.delete(&stored.object_key).await {
            tracing::warn!(error = %e, "could not remove the object of a failed upload; the GC will");
        }
    }
    result
}

/// Records a stored object as the next version of the record's files, with its audit event,
/// in the caller's transaction.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all)]
pub(crate) async fn insert_row(
    tx: &mut Tx,
    who: &Principal,
    record: RecordId,
    reference: &str,
    file_id: FileId,
    stored: &crate::storage::StoredObject,
    name: &str,
    media_type: &str,
) -> AppResult<FileInfo> {
    sqlx::query("SELECT 1 FROM records WHERE id = $1 FOR UPDATE")
        .bind(record)
        .execute(&mut **tx)
        .await?;
    crate::lifecycle::refuse_if_destroyed(tx, record).await?;
    let info: FileInfo = sqlx::query_as(&format!(
        "INSERT INTO files (id, record_id, version, object_key, kek_id, wrapped_key, size, media_type, \
         original_name, sha256, uploaded_by) \
         VALUES ($1, $2, (SELECT COALESCE(max(version), 0) + 1 FROM files WHERE record_id = $2), \
                 $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {FILE_COLUMNS}"
    ))
    .bind(file_id)
    .bind(record)
    .bind(&stored.object_key)
    .bind(&stored.kek_id)
    .bind(&stored.wrapped_key)
    .bind(stored.size as i64)
    .bind(media_type)
    .bind(name)
    .bind(stored.sha256.as_slice())
    .bind(who.user().id)
    .fetch_one(&mut **tx)
    .await?;
    tx.audit(
        &who.actor(),
        Event::new("file.upload", Outcome::Success)
            .object("file", file_id)
            .detail(json!({
                "record": record, "reference": reference, "version": info.version,
                "size": info.size, "media_type": media_type,
            })),
    )
    .await?;
    Ok(info)
}

/// A media type from a file name's extension, for files that arrive without one.
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "tif" | "tiff" => "image/tiff",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[tracing::instrument(skip_all, fields(record = %record))]
pub async fn list(app: &App, who: &Principal, record: RecordId) -> AppResult<Vec<FileInfo>> {
    unit!(app.db, |tx| {
        let (permit, _, _) =
            super::load_in::<ReadRecord>(&mut tx, app, who, record, GrantState::None).await?;
        list_in(&mut tx, &permit).await
    })
}

/// The files of the record a permit was issued for.
#[tracing::instrument(skip_all)]
pub(crate) async fn list_in<A: Action>(
    conn: &mut PgConnection,
    permit: &Permit<A>,
) -> AppResult<Vec<FileInfo>> {
    let record = permit.object().ok_or(AppError::NotFound)?;
    Ok(sqlx::query_as(&format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE record_id = $1 ORDER BY version"
    ))
    .bind(record)
    .fetch_all(conn)
    .await?)
}

/// The files of the record a permit was issued for.
#[tracing::instrument(skip_all)]
pub(crate) async fn list_unchecked<A: Action>(
    app: &App,
    permit: &Permit<A>,
) -> AppResult<Vec<FileInfo>> {
    unit!(app.db, |tx| list_in(&mut tx, permit).await)
}

/// File `file` of the record a permit was issued for (NotFound when it belongs to another
/// record).
#[tracing::instrument(skip_all)]
pub(crate) async fn find<A: Action>(
    app: &App,
    permit: &Permit<A>,
    file: FileId,
) -> AppResult<FileInfo> {
    let record = permit.object().ok_or(AppError::NotFound)?;
    unit!(app.db, |tx| {
        sqlx::query_as(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE id = $1 AND record_id = $2"
        ))
        .bind(file)
        .bind(record)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AppError::NotFound)
    })
}

/// Streams a file's decrypted content with bounded memory. Any integrity failure ends the
/// stream with an error (no unauthenticated byte is ever yielded) and is audited as
/// `file.integrity_failure`. Used by the viewer and exports, under a checked grant: the
/// file must belong to the record the permit was issued for (else NotFound).
#[tracing::instrument(skip_all)]
pub async fn open_content(
    app: &App,
    permit: &impl ReadsContent,
    actor: &Actor,
    file: FileId,
) -> AppResult<BoxStream<'static, AppResult<Bytes>>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        object_key: String,
        kek_id: String,
        wrapped_key: Vec<u8>,
        size: i64,
        sha256: Vec<u8>,
    }
    let record = permit.record().ok_or(AppError::NotFound)?;
    let row: Row = unit!(app.db, |tx| {
        sqlx::query_as(
            "SELECT object_key, kek_id, wrapped_key, size, sha256 FROM files \
             WHERE id = $1 AND record_id = $2",
        )
        .bind(file)
        .bind(record)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AppError::NotFound)
    })?;
    let mut sha = [0u8; 32];
    if row.sha256.len() == 32 {
        sha.copy_from_slice(&row.sha256);
    }
    let fref = FileRef {
        file_id: file.0,
        object_key: row.object_key,
        kek_id: row.kek_id,
        wrapped_key: row.wrapped_key,
        size: row.size as u64,
        sha256: sha,
    };
    let db = app.db.clone();
    let actor = actor.clone();
    let stream = match app.store.open_decrypted(&app.keys, &fref).await {
        Ok(s) => s,
        Err(e) => {
            integrity_event(&db, &actor, file, &e).await?;
            return Err(storage_error(e));
        }
    };
    Ok(stream
        .then(move |item| {
            let db = db.clone();
            let actor = actor.clone();
            async move {
                match item {
                    Ok(b) => Ok(b),
                    Err(e) => {
                        integrity_event(&db, &actor, file, &e).await?;
                        Err(storage_error(e))
                    }
                }
            }
        })
        .boxed())
}

fn storage_error(e: StorageError) -> AppError {
    match e {
        StorageError::Integrity { .. } => AppError::internal("file integrity check failed"),
        other => AppError::internal(other),
    }
}

async fn integrity_event(
    db: &crate::tx::Db,
    actor: &Actor,
    file: FileId,
    e: &StorageError,
) -> AppResult<()> {
    if !matches!(e, StorageError::Integrity { .. }) {
        return Ok(());
    }
    tracing::error!(target: "security", file_id = %file, "file integrity failure");
    db.record(
        actor,
        Event::new("file.integrity_failure", Outcome::Failure)
            .object("file", file)
            .detail(json!({"error": e.to_string()})),
    )
    .await
}
