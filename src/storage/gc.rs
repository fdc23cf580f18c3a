//! Garbage collection of orphaned objects.
//!
//! A file's object is written before its `files` row (so a row never points at a missing
//! object); an upload whose transaction then fails leaves an object nothing references.
//! [`run_once`] removes such objects, and finishes the deletions a destruction could not
//! complete (`object_deletions`, see [`crate::lifecycle`]).
//!
//! Guarantees:
//! - An object is deleted only if its key has the form the vault generates
//!   ([`super::is_object_key`]), it is older than the grace period, and no `files` row
//!   names it. The grace period must exceed the longest time between an upload finishing
//!   and its row committing; anything younger is never touched.
//! - The staging files a local store leaves when a write is interrupted (a crash during an
//!   upload) are removed under the same grace period ([`super::staging`]).
//! - At most one node collects at a time: a run proceeds only if it wins the PostgreSQL
//!   advisory lock [`GC_LOCK_KEY`]; the others return a report marked `skipped`.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::ObjectMeta;
use sqlx::PgPool;

use super::{StorageError, Store};

/// The advisory-lock key of the storage GC ("strgc" in ASCII, any unique constant would do).
pub const GC_LOCK_KEY: i64 = 0x0073_7472_6763;
/// Keys looked up in the database per query.
const BATCH: usize = 500;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Objects with a vault key that were listed.
    pub examined: u64,
    pub removed: u64,
    /// Another node held the lock; nothing was done.
    pub skipped: bool,
}

/// One collection pass; see the module header.
pub async fn run_once(
    pool: &PgPool,
    store: &Store,
    grace: Duration,
) -> Result<GcReport, StorageError> {
    let mut conn = pool.acquire().await?;
    let won: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(GC_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !won {
        tracing::info!("storage gc skipped: another node is collecting");
        return Ok(GcReport {
            skipped: true,
            ..GcReport::default()
        });
    }
    let result = collect(pool, store, grace).await;
    let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(GC_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await;
    if !matches!(unlocked, Ok(true)) {
        // A session lock lives as long as the connection: closing it is the sure release,
        // where returning it to the pool would block every later run.
        let _ = conn.close().await;
    }
    match &result {
        Ok(r) => tracing::info!(
            examined = r.examined,
            removed = r.removed,
            "storage gc done"
        ),
        Err(e) => tracing::warn!(error = %e, "storage gc failed"),
    }
    result
}

async fn collect(pool: &PgPool, store: &Store, grace: Duration) -> Result<GcReport, StorageError> {
    let grace = chrono::Duration::from_std(grace)
        .map_err(|_| StorageError::Config("the gc grace period is too long".into()))?;
    let cutoff = chrono::Utc::now() - grace;
    let mut report = GcReport::default();
    // Objects of destroyed files whose deletion right after the destruction failed: their
    // keys are already erased, they go now whatever their age.
    report.removed += crate::lifecycle::destruction::finish_pending(store, pool).await?;
    let mut listing = store.object_store().list(None);
    let mut batch: Vec<ObjectMeta> = Vec::with_capacity(BATCH);
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        if !super::is_object_key(meta.location.as_ref()) {
            continue;
        }
        report.examined += 1;
        if meta.last_modified < cutoff {
            batch.push(meta);
            if batch.len() == BATCH {
                report.removed += remove_unreferenced(pool, store, &mut batch).await?;
            }
        }
    }
    report.removed += remove_unreferenced(pool, store, &mut batch).await?;
    super::staging::remove_stale(store, cutoff.into()).await?;
    Ok(report)
}

async fn remove_unreferenced(
    pool: &PgPool,
    store: &Store,
    batch: &mut Vec<ObjectMeta>,
) -> Result<u64, StorageError> {
    if batch.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = batch.iter().map(|m| m.location.to_string()).collect();
    let referenced: HashSet<String> =
        sqlx::query_scalar("SELECT object_key FROM files WHERE object_key = ANY($1)")
            .bind(&keys)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let mut removed = 0;
    for key in keys.iter().filter(|k| !referenced.contains(*k)) {
        store.delete(key).await?;
        tracing::debug!(object_key = %key, "storage gc removed an unreferenced object");
        removed += 1;
    }
    batch.clear();
    Ok(removed)
}
