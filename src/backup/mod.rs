//! Backup, verification and restore of a whole vault: the database and every object it
//! references, in one encrypted, authenticated file (format: [`format`]).
//!
//! Guarantees:
//! - **One point in time.** The database is read in one `REPEATABLE READ READ ONLY`
//!   transaction (one snapshot) while the server keeps serving. Every table of the schema
//!   is dumped, found from the catalog (tables added by later migrations are included
//!   without code changes), in foreign-key order, as binary `COPY`; `_sqlx_migrations` is
//!   recorded as the schema version in the manifest. The objects copied are exactly those
//!   the snapshot's rows name (every `object_key` column); objects uploaded after the
//!   snapshot are not included, and the objects it names cannot be collected meanwhile
//!   (the storage GC removes only objects no row names, and file rows are immutable).
//! - **No plaintext, no key.** Objects are copied as stored (ciphertext under their
//!   files' data keys, which the database holds only wrapped) and the whole file is
//!   encrypted again under a key derived from the master key ([`crate::crypto::KeyRing::backup_keys`]).
//!   The master key file is never in a backup: keep it apart.
//! - **Any change is detected** (module [`format`]): a changed, cut or reordered byte
//!   fails a chunk's tag or the header MAC; a backup made under another vault's key is
//!   named FOREIGN. The manifest (last entry) carries counts, sizes, a SHA-256 per table,
//!   one over the list of objects, the migration versions and the audit chain's head.
//! - **Verify without a database** ([`verify_file`]): decrypts everything, checks every
//!   checksum and count against the manifest, and re-walks the dumped audit chain with
//!   the audit module's own hash ([`crate::audit::link_hash`]), in bounded memory (one
//!   digest per 4,096 events).
//! - **Restore writes nothing unless the whole file verifies first** ([`restore`]: a full
//!   verification pass, then the target checks: no account, record or audit event in the
//!   database, no object in the store, and the binary's migrations equal to the backup's).
//!   Then the tables are loaded in one transaction as the owner role (user triggers off for
//!   the load only, inside that transaction, so rows keep their values), the objects are
//!   written, sequences are set, and the transaction commits only after the second pass
//!   has authenticated the file to its last chunk; on any failure it rolls back and the
//!   objects written are removed.
//! - Audit positions: an event's `pos` and `xid` are bookkeeping of the cluster that
//!   inserted it (`xid` names one of its transactions), not part of any hash. Restore
//!   renumbers them in chaining order under transaction 0, as the audit-chain migration
//!   did for legacy events, so the chain's head stays behind every event the new cluster
//!   writes; every hashed field is kept byte for byte, and events that were not chained
//!   yet follow the head in their original order and are chained by the next sequencer.
//! - Memory is bounded by a chunk, a frame and an upload part, whatever the vault's size.

pub mod cli;
pub mod copy;
pub mod format;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::audit::{self, Actor, Event, Outcome, StoredEvent};
use crate::crypto::KeyRing;
use crate::db::Database;
use crate::pg::roles::quote_ident;
use crate::storage::Store;
use format::{
    AuditSummary, BackupError, BackupReader, BackupWriter, Column, Entry, Manifest, MigrationInfo,
    ObjectMeta, ObjectsSummary, SequenceState, TableMeta, TableSummary,
};

/// Events per digest block of the audit re-walk.
const AUDIT_BLOCK: u64 = 4096;
/// Objects smaller than this are written with one PUT on restore; larger ones in parts.
const RESTORE_PART: usize = 8 * 1024 * 1024;

/// Progress lines on stderr for long runs (at most one every two seconds, plus milestones).
pub struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
    pub fn stderr() -> Progress {
        Progress {
            enabled: true,
            last: Instant::now(),
        }
    }

    pub fn silent() -> Progress {
        Progress {
            enabled: false,
            last: Instant::now(),
        }
    }

    fn note(&mut self, force: bool, msg: impl FnOnce() -> String) {
        if self.enabled && (force || self.last.elapsed() >= Duration::from_secs(2)) {
            eprintln!("{}", msg());
            self.last = Instant::now();
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A table of the schema, as dumped.
struct Table {
    name: String,
    columns: Vec<Column>,
}

/// Every table of the current schema but `_sqlx_migrations`, parents before the tables
/// that reference them (ties by name).
async fn schema_tables(conn: &mut PgConnection) -> anyhow::Result<Vec<Table>> {
    let rels: Vec<(i64, String)> = sqlx::query_as(
        "SELECT c.oid::bigint, c.relname::text FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition \
           AND c.relname <> '_sqlx_migrations' ORDER BY c.relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    let fks: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT conrelid::bigint, confrelid::bigint FROM pg_constraint \
         WHERE contype = 'f' AND conrelid <> confrelid \
           AND connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
    )
    .fetch_all(&mut *conn)
    .await?;
    // Kahn's algorithm, always taking the first ready table by name.
    let mut left: Vec<(i64, String)> = rels;
    let mut order = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left.iter().position(|(oid, _)| {
            !fks.iter()
                .any(|(child, parent)| child == oid && left.iter().any(|(o, _)| o == parent))
        });
        let Some(i) = ready else {
            let names: Vec<&str> = left.iter().map(|(_, n)| n.as_str()).collect();
            bail!(
                "the tables {} reference each other in a cycle; backup cannot order them",
                names.join(", ")
            );
        };
        order.push(left.remove(i));
    }
    let mut tables = Vec::with_capacity(order.len());
    for (oid, name) in order {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attgenerated = '' ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&mut *conn)
        .await?;
        tables.push(Table {
            name,
            columns: columns
                .into_iter()
                .map(|(name, ty)| Column { name, ty })
                .collect(),
        });
    }
    Ok(tables)
}

fn column_list(columns: &[Column], prefix: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{prefix}{}", quote_ident(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The COPY that dumps a table. The audit tables are dumped in chain order, so the check
/// can re-walk the chain as it reads them.
fn copy_out_sql(t: &Table) -> String {
    let q = quote_ident(&t.name);
    match t.name.as_str() {
        "audit_events" => format!(
            "COPY (SELECT {} FROM audit_events e LEFT JOIN audit_chain c ON c.event_id = e.id \
             ORDER BY c.seq NULLS LAST, e.xid, e.pos) TO STDOUT (FORMAT binary)",
            column_list(&t.columns, "e.")
        ),
        "audit_chain" => format!(
            "COPY (SELECT {} FROM audit_chain ORDER BY seq) TO STDOUT (FORMAT binary)",
            column_list(&t.columns, "")
        ),
        _ => format!(
            "COPY {q} ({}) TO STDOUT (FORMAT binary)",
            column_list(&t.columns, "")
        ),
    }
}

/// What a backup wrote.
#[derive(Debug)]
pub struct BackupSummary {
    pub manifest: Manifest,
    pub file_bytes: u64,
    pub file_sha256: [u8; 32],
}

/// Writes a backup of the vault to `out` (which must not exist); see the module header.
/// The file appears under its name only once complete. Audited as `vault.backup`.
pub async fn backup(
    db: &Database,
    keys: &KeyRing,
    store: &Store,
    out: &Path,
    actor: &Actor,
    progress: &mut Progress,
) -> anyhow::Result<BackupSummary> {
    if out.exists() {
        bail!(
            "{} already exists: a backup never overwrites a file",
            out.display()
        );
    }
    let name = out
        .file_name()
        .with_context(|| format!("{} names no file", out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = out.with_file_name(format!(".{name}.partial-{}", Uuid::new_v4().simple()));
    // Chain what is committed, so the snapshot's head is as recent as it can be.
    audit::sequence(&db.pool)
        .await
        .map_err(|e| anyhow::anyhow!("chaining the audit trail: {e}"))?;
    let written = write_backup(db, keys, store, &tmp, progress).await;
    let summary = match written {
        Ok(s) => s,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if let Err(e) = tokio::fs::rename(&tmp, out).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e).with_context(|| format!("moving the backup into {}", out.display()));
    }
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let m = &summary.manifest;
    audit::record_alone(
        &db.pool,
        actor,
        Event::new("vault.backup", Outcome::Success)
            .object("backup", m.backup_id)
            .detail(serde_json::json!({
                "tables": m.tables.len(),
                "rows": m.tables.iter().map(|t| t.rows).sum::<u64>(),
                "objects": m.objects.count,
                "object_bytes": m.objects.bytes,
                "file_bytes": summary.file_bytes,
                "file_sha256": hex::encode(summary.file_sha256),
                "audit_head_seq": m.audit.head_seq,
            })),
    )
    .await
    .map_err(|e| anyhow::anyhow!("auditing the backup: {e}"))?;
    Ok(summary)
}

async fn write_backup(
    db: &Database,
    keys: &KeyRing,
    store: &Store,
    tmp: &Path,
    progress: &mut Progress,
) -> anyhow::Result<BackupSummary> {
    let mut conn = db.owner_connection().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let created_at = Utc::now();
    let tables = schema_tables(&mut tx).await?;
    let migrations: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT version, description, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&mut *tx)
    .await
    .context("reading the migration history")?;
    let sequences = sequence_states(&mut tx).await?;
    let audit = audit_summary(&mut tx).await?;
    let source = if db.is_embedded() {
        "embedded".to_string()
    } else {
        sqlx::query_scalar::<_, String>(
            "SELECT current_database()::text || ' on ' || COALESCE(inet_server_addr()::text, 'local socket')",
        )
        .fetch_one(&mut *tx)
        .await?
    };

    let mut w = BackupWriter::create(tmp, keys)
        .await
        .with_context(|| format!("creating {}", tmp.display()))?;
    let backup_id = w.header.backup_id;
    let mut summaries = Vec::with_capacity(tables.len());
    for t in &tables {
        let meta = TableMeta {
            name: t.name.clone(),
            columns: t.columns.clone(),
            chained: (t.name == "audit_events").then_some(audit.chained),
        };
        w.begin(b'T', &meta).await?;
        let mut parser = copy::CopyParser::new(false);
        {
            let mut data = tx.copy_out_raw(&copy_out_sql(t)).await?;
            while let Some(piece) = data.next().await {
                let piece = piece?;
                parser
                    .feed(&piece, &mut |_| Ok(()))
                    .map_err(|e| anyhow::anyhow!("table {}: {e}", t.name))?;
                w.data(&piece).await?;
            }
        }
        parser
            .finish()
            .map_err(|e| anyhow::anyhow!("table {}: {e}", t.name))?;
        let (sha, bytes) = w.end().await?;
        let rows = parser.rows();
        progress.note(true, || format!("backup: table {}: {rows} rows", t.name));
        summaries.push(TableSummary {
            name: t.name.clone(),
            rows,
            bytes,
            sha256: hex::encode(sha),
        });
    }

    // The objects the snapshot names, in key order.
    let mut objects = ObjectsSummary::default();
    let mut list_sha = Sha256::new();
    for t in &tables {
        for c in t
            .columns
            .iter()
            .filter(|c| c.name == "object_key" && c.ty == "text")
        {
            let sql = format!(
                "SELECT {col} FROM {tab} WHERE {col} IS NOT NULL ORDER BY {col}",
                col = quote_ident(&c.name),
                tab = quote_ident(&t.name)
            );
            let mut keys_in = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *tx);
            while let Some(key) = keys_in.next().await {
                let key = key?;
                let (sha, size) = copy_object(store, &mut w, &key, &t.name).await?;
                list_sha.update((key.len() as u32).to_be_bytes());
                list_sha.update(key.as_bytes());
                list_sha.update(size.to_be_bytes());
                list_sha.update(sha);
                objects.count += 1;
                objects.bytes += size;
                let (n, b) = (objects.count, objects.bytes);
                progress.note(false, || format!("backup: {n} objects, {}", mib(b)));
            }
        }
    }
    objects.list_sha256 = hex::encode(list_sha.finalize());
    // Nothing was written: ending the read-only transaction either way is the same.
    tx.rollback().await?;
    let _ = conn.close().await;
    let (count, bytes) = (objects.count, objects.bytes);
    progress.note(true, || {
        format!("backup: {count} objects, {} in all", mib(bytes))
    });

    let manifest = Manifest {
        format: u32::from(format::FORMAT_VERSION),
        backup_id,
        created_at,
        source,
        strongroom_version: env!("CARGO_PKG_VERSION").to_string(),
        migrations: migrations
            .into_iter()
            .map(|(version, description, checksum)| MigrationInfo {
                version,
                description,
                checksum: hex::encode(checksum),
            })
            .collect(),
        tables: summaries,
        sequences,
        objects,
        audit,
    };
    let (file_bytes, file_sha256) = w.finish(&manifest).await?;
    Ok(BackupSummary {
        manifest,
        file_bytes,
        file_sha256,
    })
}

async fn copy_object(
    store: &Store,
    w: &mut BackupWriter,
    key: &str,
    table: &str,
) -> anyhow::Result<([u8; 32], u64)> {
    let path = ObjectPath::parse(key)
        .map_err(|_| anyhow::anyhow!("{table} names an object key that is not a valid path"))?;
    let got = match store.object_store().get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => bail!(
            "object {key} (named by a row of {table}) is missing from the object store; \
             run `strongroom scrub` to list damaged files"
        ),
        Err(e) => return Err(e).with_context(|| format!("reading object {key}")),
    };
    let size = got.meta.size;
    w.begin(
        b'O',
        &ObjectMeta {
            key: key.to_string(),
            size,
        },
    )
    .await?;
    let mut n = 0u64;
    let mut data = got.into_stream();
    while let Some(piece) = data.next().await {
        let piece = piece.with_context(|| format!("reading object {key}"))?;
        n += piece.len() as u64;
        w.data(&piece).await?;
    }
    if n != size {
        bail!("object {key} changed while it was read ({n} bytes of {size})");
    }
    let (sha, _) = w.end().await?;
    Ok((sha, size))
}

async fn sequence_states(conn: &mut PgConnection) -> anyhow::Result<Vec<SequenceState>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'S' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let (last_value, is_called): (i64, bool) = sqlx::query_as(&format!(
            "SELECT last_value, is_called FROM {}",
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.push(SequenceState {
            name,
            last_value,
            is_called,
        });
    }
    Ok(out)
}

async fn audit_summary(conn: &mut PgConnection) -> anyhow::Result<AuditSummary> {
    let (events, chained): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM audit_chain)",
    )
    .fetch_one(&mut *conn)
    .await
    .context("reading the audit trail")?;
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(AuditSummary {
        events: events as u64,
        chained: chained as u64,
        head_seq: head.as_ref().map(|h| h.0),
        head_hash: head.map(|h| hex::encode(h.1)),
    })
}

// ---------------------------------------------------------------------------------------
// Checking a backup's content (shared by verify and restore)
// ---------------------------------------------------------------------------------------

/// Column positions of the audit rows in the dump.
struct AuditColumns {
    idx: Vec<usize>,
}

impl AuditColumns {
    fn find(meta: &TableMeta, names: &[&str]) -> Result<AuditColumns, BackupError> {
        let mut idx = Vec::with_capacity(names.len());
        for n in names {
            let Some(i) = meta.columns.iter().position(|c| c.name == *n) else {
                return Err(BackupError::Broken(format!(
                    "table {} has no column {n}",
                    meta.name
                )));
            };
            idx.push(i);
        }
        Ok(AuditColumns { idx })
    }
}

const EVENT_COLUMNS: [&str; 11] = [
    "id",
    "occurred_at",
    "actor_id",
    "actor",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "client_addr",
    "request_id",
    "detail",
];
const CHAIN_COLUMNS: [&str; 4] = ["seq", "event_id", "prev_hash", "hash"];

fn field(row: &copy::Row, i: usize) -> Result<Option<&[u8]>, String> {
    row.get(i)
        .map(|f| f.as_deref())
        .ok_or_else(|| "a row with too few fields".to_string())
}

fn req(row: &copy::Row, i: usize) -> Result<&[u8], String> {
    field(row, i)?.ok_or_else(|| "a required field is NULL".to_string())
}

fn dec_uuid(b: &[u8]) -> Result<Uuid, String> {
    Uuid::from_slice(b).map_err(|_| "a malformed uuid".to_string())
}

fn dec_i64(b: &[u8]) -> Result<i64, String> {
    let a: [u8; 8] = b.try_into().map_err(|_| "a malformed bigint".to_string())?;
    Ok(i64::from_be_bytes(a))
}

fn dec_text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "text that is not UTF-8".to_string())
}

fn dec_time(b: &[u8]) -> Result<DateTime<Utc>, String> {
    // Microseconds since 2000-01-01 00:00:00 UTC.
    const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
    let v = dec_i64(b)?;
    DateTime::from_timestamp_micros(PG_EPOCH_MICROS + v).ok_or_else(|| "a bad timestamp".into())
}

fn dec_jsonb(b: &[u8]) -> Result<Value, String> {
    match b.split_first() {
        Some((1, json)) => serde_json::from_slice(json).map_err(|_| "malformed jsonb".into()),
        _ => Err("jsonb in an unknown version".into()),
    }
}

fn event_from_row(row: &copy::Row, c: &AuditColumns, seq: i64) -> Result<StoredEvent, String> {
    let opt_text = |i: usize| -> Result<Option<String>, String> {
        field(row, c.idx[i])?.map(dec_text).transpose()
    };
    Ok(StoredEvent {
        pos: 0,
        seq: Some(seq),
        id: dec_uuid(req(row, c.idx[0])?)?,
        occurred_at: dec_time(req(row, c.idx[1])?)?,
        actor_id: field(row, c.idx[2])?.map(dec_uuid).transpose()?,
        actor: dec_text(req(row, c.idx[3])?)?,
        action: dec_text(req(row, c.idx[4])?)?,
        object_type: opt_text(5)?,
        object_id: opt_text(6)?,
        outcome: dec_text(req(row, c.idx[7])?)?,
        client_addr: opt_text(8)?,
        request_id: opt_text(9)?,
        detail: dec_jsonb(req(row, c.idx[10])?)?,
        prev_hash: None,
        hash: None,
    })
}

/// The audit chain re-walk: the events (in chain order) recompute every link; the chain
/// table's links must be the same. Both sides are folded into one digest per block of
/// [`AUDIT_BLOCK`] events, so memory stays small and a difference is located to a block.
#[derive(Default)]
struct AuditWalk {
    chained: u64,
    events_seen: u64,
    prev: Vec<u8>,
    a_blocks: Vec<[u8; 32]>,
    a_cur: Sha256,
    chain_rows: u64,
    chain_prev: Vec<u8>,
    b_blocks: Vec<[u8; 32]>,
    b_cur: Sha256,
    events_done: bool,
    chain_done: bool,
}

fn fold(h: &mut Sha256, seq: i64, id: &Uuid, prev: &[u8], hash: &[u8]) {
    h.update(seq.to_be_bytes());
    h.update(id.as_bytes());
    h.update(prev);
    h.update(hash);
}

impl AuditWalk {
    fn event(&mut self, row: copy::Row, cols: &AuditColumns) -> Result<(), String> {
        self.events_seen += 1;
        if self.events_seen > self.chained {
            return Ok(());
        }
        let seq = self.events_seen as i64;
        let e = event_from_row(&row, cols, seq).map_err(|r| format!("audit event {seq}: {r}"))?;
        let hash = audit::link_hash(&self.prev, &e);
        fold(&mut self.a_cur, seq, &e.id, &self.prev, &hash);
        self.prev = hash;
        if self.events_seen.is_multiple_of(AUDIT_BLOCK) {
            self.a_blocks
                .push(std::mem::take(&mut self.a_cur).finalize().into());
        }
        Ok(())
    }

    fn link(&mut self, row: copy::Row, cols: &AuditColumns) -> Result<(), String> {
        let seq = dec_i64(req(&row, cols.idx[0])?)?;
        let expected = self.chain_rows as i64 + 1;
        if seq != expected {
            return Err(format!(
                "audit chain BROKEN at event {expected}: event missing (next chained event is {seq})"
            ));
        }
        let id = dec_uuid(req(&row, cols.idx[1])?)?;
        let prev = req(&row, cols.idx[2])?;
        let hash = req(&row, cols.idx[3])?;
        if prev != self.chain_prev.as_slice() {
            return Err(format!(
                "audit chain BROKEN at event {seq} (id {id}): prev_hash does not match the previous event"
            ));
        }
        fold(&mut self.b_cur, seq, &id, prev, hash);
        self.chain_prev = hash.to_vec();
        self.chain_rows += 1;
        if self.chain_rows.is_multiple_of(AUDIT_BLOCK) {
            self.b_blocks
                .push(std::mem::take(&mut self.b_cur).finalize().into());
        }
        Ok(())
    }

    /// After both tables: the recomputed chain must be the stored one.
    fn finish(&mut self) -> Result<(), String> {
        if self.chain_rows != self.chained {
            return Err(format!(
                "audit chain BROKEN: the chain holds {} links but {} events are marked chained",
                self.chain_rows, self.chained
            ));
        }
        if self.events_seen < self.chained {
            return Err(format!(
                "audit chain BROKEN at event {}: event missing (its chain entry remains)",
                self.events_seen + 1
            ));
        }
        if !self.chained.is_multiple_of(AUDIT_BLOCK) {
            self.a_blocks
                .push(std::mem::take(&mut self.a_cur).finalize().into());
            self.b_blocks
                .push(std::mem::take(&mut self.b_cur).finalize().into());
        }
        if let Some(i) = (0..self.a_blocks.len()).find(|&i| self.a_blocks[i] != self.b_blocks[i]) {
            let from = i as u64 * AUDIT_BLOCK + 1;
            let to = ((i as u64 + 1) * AUDIT_BLOCK).min(self.chained);
            return Err(format!(
                "audit chain BROKEN between events {from} and {to}: an event's content does not \
                 match its hash (event altered, moved or missing)"
            ));
        }
        Ok(())
    }
}

enum Current {
    Table {
        meta: TableMeta,
        parser: copy::CopyParser,
        audit: Option<(bool, AuditColumns)>,
    },
    Object(ObjectMeta),
}

/// Checks a backup's content entry by entry, the same way for verify and restore.
struct Checker {
    tables: Vec<TableSummary>,
    objects: ObjectsSummary,
    list_sha: Sha256,
    current: Option<Current>,
    walk: AuditWalk,
    saw_events: bool,
}

fn broken(msg: impl Into<String>) -> BackupError {
    BackupError::Broken(msg.into())
}

impl Checker {
    fn new() -> Checker {
        Checker {
            tables: Vec::new(),
            objects: ObjectsSummary::default(),
            list_sha: Sha256::new(),
            current: None,
            walk: AuditWalk {
                prev: audit::GENESIS_HASH.to_vec(),
                chain_prev: audit::GENESIS_HASH.to_vec(),
                ..AuditWalk::default()
            },
            saw_events: false,
        }
    }

    fn table(&mut self, meta: &TableMeta) -> Result<(), BackupError> {
        if self.objects.count > 0 {
            return Err(broken("a table follows the objects"));
        }
        let audit = match meta.name.as_str() {
            "audit_events" => {
                self.saw_events = true;
                self.walk.chained = meta.chained.unwrap_or(0);
                Some((true, AuditColumns::find(meta, &EVENT_COLUMNS)?))
            }
            "audit_chain" => {
                if !self.saw_events {
                    return Err(broken("audit_chain comes before audit_events"));
                }
                Some((false, AuditColumns::find(meta, &CHAIN_COLUMNS)?))
            }
            _ => None,
        };
        self.current = Some(Current::Table {
            meta: meta.clone(),
            parser: copy::CopyParser::new(audit.is_some()),
            audit,
        });
        Ok(())
    }

    fn object(&mut self, meta: &ObjectMeta) {
        self.current = Some(Current::Object(meta.clone()));
    }

    fn data(&mut self, frame: &[u8]) -> Result<(), BackupError> {
        let walk = &mut self.walk;
        match &mut self.current {
            Some(Current::Table {
                meta,
                parser,
                audit,
            }) => {
                let name = meta.name.clone();
                parser
                    .feed(frame, &mut |row| match audit {
                        Some((true, cols)) => walk.event(row, cols),
                        Some((false, cols)) => walk.link(row, cols),
                        None => Ok(()),
                    })
                    .map_err(|e| {
                        if e.starts_with("audit chain") {
                            broken(format!("{e} (in the backup)"))
                        } else {
                            broken(format!("table {name}: {e}"))
                        }
                    })
            }
            Some(Current::Object(_)) => Ok(()),
            None => Err(broken("data outside an entry")),
        }
    }

    fn end(&mut self, digest: ([u8; 32], u64)) -> Result<(), BackupError> {
        match self.current.take() {
            Some(Current::Table {
                meta,
                parser,
                audit,
            }) => {
                parser
                    .finish()
                    .map_err(|e| broken(format!("table {}: {e}", meta.name)))?;
                if let Some((false, _)) = audit {
                    self.walk
                        .finish()
                        .map_err(|e| broken(format!("{e} (in the backup)")))?;
                    self.walk.chain_done = true;
                }
                if let Some((true, _)) = audit {
                    self.walk.events_done = true;
                }
                self.tables.push(TableSummary {
                    name: meta.name,
                    rows: parser.rows(),
                    bytes: digest.1,
                    sha256: hex::encode(digest.0),
                });
                Ok(())
            }
            Some(Current::Object(meta)) => {
                if digest.1 != meta.size {
                    return Err(broken(format!(
                        "object {} holds {} bytes, its entry says {}",
                        meta.key, digest.1, meta.size
                    )));
                }
                self.list_sha.update((meta.key.len() as u32).to_be_bytes());
                self.list_sha.update(meta.key.as_bytes());
                self.list_sha.update(meta.size.to_be_bytes());
                self.list_sha.update(digest.0);
                self.objects.count += 1;
                self.objects.bytes += meta.size;
                Ok(())
            }
            None => Err(broken("an entry ends that never began")),
        }
    }

    /// The manifest must describe exactly what was read.
    fn manifest(&mut self, m: &Manifest, backup_id: Uuid) -> Result<(), BackupError> {
        if m.format != u32::from(format::FORMAT_VERSION) || m.backup_id != backup_id {
            return Err(broken("the manifest does not belong to this file"));
        }
        if m.tables.len() != self.tables.len() {
            return Err(broken(format!(
                "the manifest lists {} tables, the file holds {}",
                m.tables.len(),
                self.tables.len()
            )));
        }
        for (want, got) in m.tables.iter().zip(&self.tables) {
            if want != got {
                return Err(broken(format!(
                    "table {}: {} rows, {} bytes, SHA-256 {} in the file, but the manifest says \
                     {} ({} rows, {} bytes, SHA-256 {})",
                    got.name,
                    got.rows,
                    got.bytes,
                    got.sha256,
                    want.name,
                    want.rows,
                    want.bytes,
                    want.sha256
                )));
            }
        }
        let list = hex::encode(std::mem::take(&mut self.list_sha).finalize());
        self.objects.list_sha256 = list;
        if m.objects != self.objects {
            return Err(broken(format!(
                "objects: {} ({} bytes) in the file, the manifest says {} ({} bytes), or their \
                 checksums differ",
                self.objects.count, self.objects.bytes, m.objects.count, m.objects.bytes
            )));
        }
        if m.migrations.is_empty() {
            return Err(broken("the manifest names no schema version"));
        }
        if self.saw_events {
            if !self.walk.chain_done {
                return Err(broken("audit_chain is missing"));
            }
            let events = self
                .tables
                .iter()
                .find(|t| t.name == "audit_events")
                .map_or(0, |t| t.rows);
            let head_hash = (self.walk.chained > 0).then(|| hex::encode(&self.walk.chain_prev));
            let head_seq = (self.walk.chained > 0).then_some(self.walk.chained as i64);
            if m.audit.events != events
                || m.audit.chained != self.walk.chained
                || m.audit.head_seq != head_seq
                || m.audit.head_hash != head_hash
            {
                return Err(broken(
                    "the audit chain's head in the manifest is not the one in the file",
                ));
            }
        }
        Ok(())
    }
}

/// What a verified backup holds.
#[derive(Debug, Clone)]
pub struct Report {
    pub manifest: Manifest,
    pub file_bytes: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        let rows = |name: &str| {
            m.tables
                .iter()
                .find(|t| t.name == name)
                .map_or(0, |t| t.rows)
        };
        writeln!(
            f,
            "backup OK: {} made {} from {} ({} bytes, format {}, schema version {})",
            m.backup_id,
            m.created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            m.source,
            self.file_bytes,
            m.format,
            m.migrations.last().map_or(0, |v| v.version)
        )?;
        writeln!(
            f,
            "  {} tables, {} rows: {} accounts, {} records, {} revisions, {} requests, {} grants, {} loans, {} files",
            m.tables.len(),
            m.tables.iter().map(|t| t.rows).sum::<u64>(),
            rows("users"),
            rows("records"),
            rows("record_revisions"),
            rows("access_requests"),
            rows("grants"),
            rows("loans"),
            rows("files"),
        )?;
        writeln!(
            f,
            "  {} objects, {} bytes",
            m.objects.count, m.objects.bytes
        )?;
        write!(
            f,
            "  audit chain OK: {} events ({} not chained yet), head {}",
            m.audit.chained,
            m.audit.events - m.audit.chained,
            m.audit.head_hash.as_deref().unwrap_or("(empty)")
        )
    }
}

/// Checks a backup file completely without touching any database: every chunk, every
/// checksum and count against the manifest, and the audit chain inside.
pub async fn verify_file(
    path: &Path,
    keys: &KeyRing,
    progress: &mut Progress,
) -> Result<Report, BackupError> {
    let mut r = BackupReader::open(path, keys).await?;
    let mut c = Checker::new();
    let mut manifest = None;
    let mut digest = ([0u8; 32], 0u64);
    while let Some(entry) = r.next_entry().await? {
        match entry {
            Entry::Table(meta) => {
                c.table(&meta)?;
                while let Some(frame) = r.next_data(&mut digest).await? {
                    c.data(&frame)?;
                }
                c.end(digest)?;
            }
            Entry::Object(meta) => {
                c.object(&meta);
                while let Some(frame) = r.next_data(&mut digest).await? {
                    c.data(&frame)?;
                }
                c.end(digest)?;
            }
            Entry::Manifest(m) => {
                c.manifest(&m, r.header.backup_id)?;
                manifest = Some(*m);
            }
        }
        let (read, len) = (r.read, r.len);
        progress.note(false, || {
            format!("verify: {} of {} read", mib(read), mib(len))
        });
    }
    let manifest = manifest.ok_or_else(|| broken("the manifest is missing"))?;
    Ok(Report {
        manifest,
        file_bytes: r.len,
    })
}

// ---------------------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------------------

/// Files of an embedded data dir that may be there before a restore: the key and the
/// settings the operator puts there, and what an empty vault's cluster and store leave.
const RESTORABLE_DIR_ENTRIES: &[&str] = &[
    "master.key",
    "strongroom.toml",
    "pg",
    "pg-socket",
    "pg-superuser.password",
    "pg-owner.password",
    "pg-runtime.password",
    "pg.start.lock",
    "pg.owner.lock",
    "objects",
];

/// Refuses an embedded data dir holding anything a new vault would not (called before
/// the cluster is started or created).
pub fn check_data_dir(dir: &Path) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !RESTORABLE_DIR_ENTRIES.contains(&name.as_str()) {
            bail!(
                "restore refused: the data directory {} is not empty (it holds {name}); restore \
                 into a new directory holding only master.key (and strongroom.toml)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Refuses a binary whose migrations are not exactly the backup's.
pub fn check_schema(m: &Manifest) -> anyhow::Result<()> {
    let ours: Vec<(i64, String)> = crate::db::MIGRATOR
        .iter()
        .filter(|x| x.migration_type.is_up_migration())
        .map(|x| (x.version, hex::encode(&x.checksum)))
        .collect();
    let theirs: Vec<(i64, String)> = m
        .migrations
        .iter()
        .map(|x| (x.version, x.checksum.clone()))
        .collect();
    if ours != theirs {
        bail!(
            "restore refused: the backup's schema is at migration {} ({} migrations), this \
             release's at {} ({} migrations), or their contents differ; restore with the \
             release that made the backup",
            theirs.last().map_or(0, |v| v.0),
            theirs.len(),
            ours.last().map_or(0, |v| v.0),
            ours.len()
        );
    }
    Ok(())
}

/// Refuses a store holding any object.
pub async fn check_store_empty(store: &Store) -> anyhow::Result<()> {
    let mut listing = store.object_store().list(None);
    if let Some(first) = listing.next().await {
        let first = first.context("listing the object store")?;
        bail!(
            "restore refused: the object store is not empty (it holds {}); restore needs an \
             empty store",
            first.location
        );
    }
    Ok(())
}

/// Loads a verified backup into the (migrated, empty) database and the empty store; see
/// the module header. Audited as `vault.restore`.
pub async fn restore(
    db: &Database,
    keys: &KeyRing,
    store: &Store,
    from: &Path,
    actor: &Actor,
    progress: &mut Progress,
) -> anyhow::Result<Report> {
    let mut conn = db.owner_connection().await?;
    // The database is migrated: these tables exist. A vault that ever ran has an account
    // (serve creates the administrator) and audit events.
    for t in ["users", "records", "audit_events"] {
        let any: bool =
            sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {})", quote_ident(t)))
                .fetch_one(&mut conn)
                .await?;
        if any {
            bail!(
                "restore refused: the target database is not empty (table {t} has rows); \
                 restore needs an empty database"
            );
        }
    }
    let result = load(&mut conn, keys, store, from, progress).await;
    let _ = conn.close().await;
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if let Err(clean) = remove_all_objects(store).await {
                tracing::warn!(error = %clean, "removing the objects of a failed restore");
            }
            return Err(e);
        }
    };
    let m = &report.manifest;
    audit::record_alone(
        &db.pool,
        actor,
        Event::new("vault.restore", Outcome::Success)
            .object("backup", m.backup_id)
            .detail(serde_json::json!({
                "created_at": m.created_at,
                "source": m.source,
                "tables": m.tables.len(),
                "rows": m.tables.iter().map(|t| t.rows).sum::<u64>(),
                "objects": m.objects.count,
                "object_bytes": m.objects.bytes,
                "audit_events": m.audit.events,
            })),
    )
    .await
    .map_err(|e| anyhow::anyhow!("auditing the restore: {e}"))?;
    audit::sequence_all(&db.pool)
        .await
        .map_err(|e| anyhow::anyhow!("chaining the restored audit trail: {e}"))?;
    Ok(report)
}

/// Refuses (before the restore commits) rows wrapped or sealed under a key-encryption key
/// the key ring does not hold: such a vault would restore, and then open nothing.
async fn require_keks(tx: &mut PgConnection, keys: &KeyRing) -> anyhow::Result<()> {
    let known = keys.kek_ids();
    let mut missing: std::collections::BTreeMap<String, u64> = Default::default();
    for place in crate::rotation::Place::ALL {
        let rows: Vec<(String, i64)> = sqlx::query_as(&place.count_by_kek())
            .fetch_all(&mut *tx)
            .await?;
        for (kek, n) in rows.into_iter().filter(|(k, _)| !known.contains(k)) {
            *missing.entry(kek).or_insert(0) += u64::try_from(n).unwrap_or(0);
        }
    }
    if !missing.is_empty() {
        let list: Vec<String> = missing
            .iter()
            .map(|(k, n)| format!("{k} ({n} rows)"))
            .collect();
        bail!(
            "restore refused: the backup's keys are wrapped under key-encryption keys the master \
             key file does not hold: {}; add their lines (a retired key is kept in \
             master.key.retired-ID) and restore again",
            list.join(", ")
        );
    }
    Ok(())
}

async fn load(
    conn: &mut PgConnection,
    keys: &KeyRing,
    store: &Store,
    from: &Path,
    progress: &mut Progress,
) -> anyhow::Result<Report> {
    let mut tx = conn.begin().await?;
    let tables = schema_tables(&mut tx).await?;
    // Rows a migration may have seeded are replaced by the backup's (which has them too).
    for t in tables.iter().rev() {
        let any: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {})",
            quote_ident(&t.name)
        ))
        .fetch_one(&mut *tx)
        .await?;
        if any {
            sqlx::query(&format!("DELETE FROM {}", quote_ident(&t.name)))
                .execute(&mut *tx)
                .await?;
        }
    }
    let mut r = BackupReader::open(from, keys).await?;
    let mut c = Checker::new();
    let mut manifest = None;
    let mut digest = ([0u8; 32], 0u64);
    while let Some(entry) = r.next_entry().await? {
        match entry {
            Entry::Table(meta) => {
                c.table(&meta)?;
                let q = quote_ident(&meta.name);
                set_user_triggers(&mut tx, &q, false).await?;
                let sql = format!(
                    "COPY {q} ({}) FROM STDIN (FORMAT binary)",
                    column_list(&meta.columns, "")
                );
                let mut copy = tx.copy_in_raw(&sql).await?;
                let sent: anyhow::Result<()> = async {
                    while let Some(frame) = r.next_data(&mut digest).await? {
                        c.data(&frame)?;
                        copy.send(frame).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = sent {
                    let _ = copy.abort("the backup failed its check").await;
                    return Err(e);
                }
                let rows = copy
                    .finish()
                    .await
                    .with_context(|| format!("loading table {}", meta.name))?;
                c.end(digest)?;
                set_user_triggers(&mut tx, &q, true).await?;
                if c.tables.last().map(|t| t.rows) != Some(rows) {
                    bail!("table {}: PostgreSQL loaded {rows} rows", meta.name);
                }
                progress.note(true, || {
                    format!("restore: table {}: {rows} rows", meta.name)
                });
            }
            Entry::Object(meta) => {
                c.object(&meta);
                put_object(store, &mut r, &mut c, &meta, &mut digest).await?;
                c.end(digest)?;
                let (n, b) = (c.objects.count, c.objects.bytes);
                progress.note(false, || format!("restore: {n} objects, {}", mib(b)));
            }
            Entry::Manifest(m) => {
                c.manifest(&m, r.header.backup_id)?;
                manifest = Some(*m);
            }
        }
    }
    let manifest = manifest.ok_or_else(|| broken("the manifest is missing"))?;
    for s in &manifest.sequences {
        sqlx::query(
            "SELECT setval(to_regclass(quote_ident($1)), $2, $3) \
             WHERE to_regclass(quote_ident($1)) IS NOT NULL",
        )
        .bind(&s.name)
        .bind(s.last_value)
        .bind(s.is_called)
        .execute(&mut *tx)
        .await?;
    }
    require_keks(&mut tx, keys).await?;
    renumber_audit(&mut tx).await?;
    tx.commit().await.context("committing the restore")?;
    progress.note(true, || {
        format!(
            "restore: {} objects, {} in all",
            manifest.objects.count,
            mib(manifest.objects.bytes)
        )
    });
    Ok(Report {
        manifest,
        file_bytes: r.len,
    })
}

async fn set_user_triggers(
    conn: &mut PgConnection,
    quoted: &str,
    enable: bool,
) -> anyhow::Result<()> {
    let verb = if enable { "ENABLE" } else { "DISABLE" };
    sqlx::query(&format!("ALTER TABLE {quoted} {verb} TRIGGER USER"))
        .execute(&mut *conn)
        .await
        .with_context(|| format!("{verb} TRIGGER USER on {quoted} (as the owner role)"))?;
    Ok(())
}

/// See the module header: positions in chaining order under transaction 0.
async fn renumber_audit(conn: &mut PgConnection) -> anyhow::Result<()> {
    set_user_triggers(conn, "audit_events", false).await?;
    sqlx::query("UPDATE audit_events SET pos = -pos")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE audit_events e SET pos = o.n, xid = '0'::xid8 \
         FROM (SELECT e2.id, row_number() OVER (ORDER BY c.seq NULLS LAST, e2.xid, -e2.pos) AS n \
               FROM audit_events e2 LEFT JOIN audit_chain c ON c.event_id = e2.id) o \
         WHERE o.id = e.id",
    )
    .execute(&mut *conn)
    .await?;
    set_user_triggers(conn, "audit_events", true).await?;
    sqlx::query(
        "SELECT setval('audit_events_pos_seq', (SELECT COALESCE(max(pos), 0) FROM audit_events) + 1, false)",
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn put_object(
    store: &Store,
    r: &mut BackupReader,
    c: &mut Checker,
    meta: &ObjectMeta,
    digest: &mut ([u8; 32], u64),
) -> anyhow::Result<()> {
    let path = ObjectPath::parse(&meta.key)
        .map_err(|_| broken(format!("object key {} is not a valid path", meta.key)))?;
    let inner = store.object_store();
    let mut buf: Vec<u8> = Vec::new();
    let mut parts: Option<WriteMultipart> = None;
    let result: anyhow::Result<()> = async {
        while let Some(frame) = r.next_data(digest).await? {
            c.data(&frame)?;
            match parts.as_mut() {
                Some(w) => {
                    w.wait_for_capacity(2).await?;
                    w.write(&frame);
                }
                None => {
                    buf.extend_from_slice(&frame);
                    if buf.len() >= RESTORE_PART {
                        let upload = inner.put_multipart(&path).await?;
                        let mut w = WriteMultipart::new_with_chunk_size(upload, RESTORE_PART);
                        w.write(&std::mem::take(&mut buf));
                        parts = Some(w);
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    match (result, parts) {
        (Ok(()), Some(w)) => {
            w.finish().await?;
        }
        (Ok(()), None) => {
            inner.put(&path, PutPayload::from(Bytes::from(buf))).await?;
        }
        (Err(e), Some(w)) => {
            let _ = w.abort().await;
            return Err(e);
        }
        (Err(e), None) => return Err(e),
    }
    Ok(())
}

/// Removes every object from the store (which was empty before the restore began).
async fn remove_all_objects(store: &Store) -> anyhow::Result<()> {
    let inner = store.object_store();
    let mut listing = inner.list(None);
    let mut keys: Vec<object_store::path::Path> = Vec::new();
    while let Some(meta) = listing.next().await {
        keys.push(meta?.location);
        if keys.len() >= 1000 {
            break;
        }
    }
    drop(listing);
    for k in &keys {
        match inner.delete(k).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if keys.len() >= 1000 {
        return Box::pin(remove_all_objects(store)).await;
    }
    Ok(())
}
