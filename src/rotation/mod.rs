//! Key rotation: moving every stored wrap to the active key-encryption key, and counting
//! what still uses an older one before it is retired (`strongroom rotate-keys`).
//!
//! Where KEK ids are stored ([`Place`]):
//! - `files.kek_id` / `wrapped_key`: each file's data key, wrapped for its file id. A
//!   re-wrap unwraps and wraps the 32-byte data key again; the object is not touched.
//! - `record_sensitive_values.kek_id` / `ciphertext` and the same columns of
//!   `record_revision_sensitive_values`: sensitive field values, sealed under the KEK's
//!   field key with the record id and field name as associated data. A re-seal decrypts
//!   and encrypts again under the active KEK's field key, same record and field, fresh
//!   nonce. The blind index is left alone: its key comes from the `blind-index` secret,
//!   which rotation never changes, so searches keep finding the same rows.
//! - `exports.password_kek_id` / `password_sealed`: the sealed password of a prepared but
//!   not yet downloaded export (bound to the request id), re-sealed the same way.
//! - `user_totp.kek_id` / `secret_sealed`: each account's two-factor secret (bound to the
//!   account id and `totp.secret`), re-sealed the same way.
//!
//! Guarantees:
//! - Online and resumable: rows are taken in primary-key order in batches, each batch one
//!   unit of work that locks its rows `FOR UPDATE SKIP LOCKED` (rows a request holds are
//!   left for the next pass) and rewrites them under the active KEK. Rows already under the
//!   active KEK are skipped, so a run stopped at any point is continued by running again.
//! - A row that cannot be opened (unknown KEK, failed authentication) is left exactly as
//!   it is and reported by table and key; the run carries on with the others.
//! - [`usage`] counts every row per place and KEK id, live, at the time it runs: what
//!   `--retire` checks before it removes anything.
//! - Plaintext of field values exists only in zeroized buffers during a re-seal; nothing
//!   here logs or returns key material or values.

pub mod command;
pub mod reload;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::crypto::{CryptoError, KeyRing};
use crate::error::{AppError, AppResult};
use crate::tx::Db;

/// Rows per unit of work unless told otherwise.
pub const DEFAULT_BATCH: usize = 1_000;

/// The associated-data field name of a sealed export password (see `requests::exports`).
const EXPORT_PASSWORD_FIELD: &str = "export.zip_password";

/// One place a KEK id is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    Files,
    SensitiveValues,
    RevisionSensitiveValues,
    ExportPasswords,
    TotpSecrets,
    ProposalPayloads,
}

impl Place {
    pub const ALL: [Place; 6] = [
        Place::Files,
        Place::SensitiveValues,
        Place::RevisionSensitiveValues,
        Place::ExportPasswords,
        Place::TotpSecrets,
        Place::ProposalPayloads,
    ];

    /// The table (and, for exports, the column) as named in messages and audit details.
    pub fn name(self) -> &'static str {
        match self {
            Place::Files => "files",
            Place::SensitiveValues => "record_sensitive_values",
            Place::RevisionSensitiveValues => "record_revision_sensitive_values",
            Place::ExportPasswords => "exports.password_sealed",
            Place::TotpSecrets => "user_totp",
            Place::ProposalPayloads => "record_proposals",
        }
    }

    /// The columns of a place whose rows are keyed by one uuid; `None` for the sensitive
    /// values, keyed by record and field (and revision).
    fn by_id(self) -> Option<ById> {
        let (table, id, kek, blob, only) = match self {
            Place::Files => ("files", "id", "kek_id", "wrapped_key", "TRUE"),
            Place::ExportPasswords => (
                "exports",
                "request_id",
                "password_kek_id",
                "password_sealed",
                "password_kek_id IS NOT NULL AND password_sealed IS NOT NULL",
            ),
            Place::TotpSecrets => ("user_totp", "user_id", "kek_id", "secret_sealed", "TRUE"),
            // A decided proposal's sealed copy is erased (empty): nothing left to re-seal.
            Place::ProposalPayloads => (
                "record_proposals",
                "id",
                "kek_id",
                "sealed",
                "length(sealed) > 0",
            ),
            Place::SensitiveValues | Place::RevisionSensitiveValues => return None,
        };
        Some(ById {
            table,
            id,
            kek,
            blob,
            only,
        })
    }

    pub(crate) fn count_by_kek(self) -> String {
        match self.by_id() {
            Some(c) => format!(
                "SELECT {kek}, count(*) FROM {table} WHERE {only} GROUP BY {kek}",
                kek = c.kek,
                table = c.table,
                only = c.only
            ),
            None => format!(
                "SELECT kek_id, count(*) FROM {} GROUP BY kek_id",
                self.name()
            ),
        }
    }
}

/// Where a place keyed by one uuid keeps its KEK id and sealed blob (names, never input).
struct ById {
    table: &'static str,
    id: &'static str,
    kek: &'static str,
    blob: &'static str,
    /// The rows that hold something sealed.
    only: &'static str,
}

/// Rows under one KEK id in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub place: Place,
    pub kek_id: String,
    pub rows: u64,
}

/// Every (place, KEK id) with its row count, as the database holds it now.
pub async fn usage(pool: &PgPool) -> AppResult<Vec<Usage>> {
    let mut out = Vec::new();
    for place in Place::ALL {
        let rows: Vec<(String, i64)> = sqlx::query_as(&place.count_by_kek())
            .fetch_all(pool)
            .await?;
        for (kek_id, n) in rows {
            out.push(Usage {
                place,
                kek_id,
                rows: u64::try_from(n).unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// Rows per place that are not under `active`.
pub fn not_under(usage: &[Usage], active: &str) -> BTreeMap<Place, u64> {
    let mut out = BTreeMap::new();
    for u in usage.iter().filter(|u| u.kek_id != active) {
        *out.entry(u.place).or_insert(0) += u.rows;
    }
    out
}

/// Rows per place under `kek_id`.
pub fn under(usage: &[Usage], kek_id: &str) -> BTreeMap<Place, u64> {
    let mut out = BTreeMap::new();
    for u in usage.iter().filter(|u| u.kek_id == kek_id) {
        *out.entry(u.place).or_insert(0) += u.rows;
    }
    out
}

/// A row that could not be re-wrapped, named by place and key (never by content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub place: Place,
    pub key: String,
    pub kek_id: String,
    pub reason: String,
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    /// Rows moved to the active KEK, per place.
    pub rewrapped: BTreeMap<Place, u64>,
    /// Rows that could not be opened (left as they are).
    pub unreadable: Vec<Unreadable>,
    pub elapsed: Duration,
}

impl Pass {
    pub fn total(&self) -> u64 {
        self.rewrapped.values().sum()
    }
}

/// Told about progress after every batch.
pub trait Progress {
    /// `done` rows of `place` re-wrapped so far in this pass, of about `total` to do.
    fn batch(&mut self, place: Place, done: u64, total: u64);
}

impl Progress for () {
    fn batch(&mut self, _: Place, _: u64, _: u64) {}
}

/// A row's primary key, for keyset paging.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Id(Uuid),
    Field(Uuid, String),
    Revision(Uuid, i32, String),
}

impl Key {
    fn first(place: Place) -> Key {
        match place {
            Place::Files
            | Place::ExportPasswords
            | Place::TotpSecrets
            | Place::ProposalPayloads => Key::Id(Uuid::nil()),
            Place::SensitiveValues => Key::Field(Uuid::nil(), String::new()),
            Place::RevisionSensitiveValues => Key::Revision(Uuid::nil(), i32::MIN, String::new()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Key::Id(id) => id.to_string(),
            Key::Field(r, f) => format!("record {r}, field {f}"),
            Key::Revision(r, n, f) => format!("record {r}, revision {n}, field {f}"),
        }
    }

    fn uuid(&self) -> Uuid {
        match self {
            Key::Id(u) | Key::Field(u, _) | Key::Revision(u, _, _) => *u,
        }
    }
}

struct Sealed {
    key: Key,
    kek_id: String,
    blob: Vec<u8>,
}

/// The next batch of `place` after `after` whose KEK is not `active`, locked for update
/// (rows locked by others are skipped).
async fn next_batch(
    conn: &mut PgConnection,
    place: Place,
    active: &str,
    after: &Key,
    limit: i64,
) -> sqlx::Result<Vec<Sealed>> {
    let rows = match (place.by_id(), place, after) {
        (Some(c), _, Key::Id(id)) => {
            let sql = format!(
                "SELECT {id}, {kek}, {blob} FROM {table} \
                 WHERE {only} AND {kek} <> $1 AND {id} > $2 \
                 ORDER BY {id} LIMIT $3 FOR UPDATE SKIP LOCKED",
                id = c.id,
                kek = c.kek,
                blob = c.blob,
                table = c.table,
                only = c.only
            );
            sqlx::query(&sql)
                .bind(active)
                .bind(id)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        }
        (None, Place::SensitiveValues, Key::Field(r, f)) => {
            sqlx::query(
                "SELECT record_id, field, kek_id, ciphertext FROM record_sensitive_values \
                 WHERE kek_id <> $1 AND (record_id, field) > ($2, $3) \
                 ORDER BY record_id, field LIMIT $4 FOR UPDATE SKIP LOCKED",
            )
            .bind(active)
            .bind(r)
            .bind(f)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
        }
        (None, Place::RevisionSensitiveValues, Key::Revision(r, n, f)) => {
            sqlx::query(
                "SELECT record_id, revision, field, kek_id, ciphertext \
                 FROM record_revision_sensitive_values \
                 WHERE kek_id <> $1 AND (record_id, revision, field) > ($2, $3, $4) \
                 ORDER BY record_id, revision, field LIMIT $5 FOR UPDATE SKIP LOCKED",
            )
            .bind(active)
            .bind(r)
            .bind(n)
            .bind(f)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
        }
        // `Key::first` and the rows below always pair a place with its key shape.
        _ => return Ok(Vec::new()),
    };
    rows.iter()
        .map(|row| {
            Ok(match place {
                Place::Files
                | Place::ExportPasswords
                | Place::TotpSecrets
                | Place::ProposalPayloads => Sealed {
                    key: Key::Id(row.try_get(0)?),
                    kek_id: row.try_get(1)?,
                    blob: row.try_get(2)?,
                },
                Place::SensitiveValues => Sealed {
                    key: Key::Field(row.try_get(0)?, row.try_get(1)?),
                    kek_id: row.try_get(2)?,
                    blob: row.try_get(3)?,
                },
                Place::RevisionSensitiveValues => Sealed {
                    key: Key::Revision(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                    kek_id: row.try_get(3)?,
                    blob: row.try_get(4)?,
                },
            })
        })
        .collect()
}

/// The row under the active KEK: (new kek id, new blob).
fn rewrap_one(keys: &KeyRing, place: Place, s: &Sealed) -> Result<(String, Vec<u8>), CryptoError> {
    match (place, &s.key) {
        (Place::Files, Key::Id(file)) => {
            let w = keys.rewrap(&s.kek_id, &s.blob, *file)?;
            Ok((w.kek_id, w.wrapped))
        }
        (Place::ExportPasswords, Key::Id(request)) => {
            keys.reseal_field(*request, EXPORT_PASSWORD_FIELD, &s.kek_id, &s.blob)
        }
        (Place::TotpSecrets, Key::Id(user)) => keys.reseal_field(
            *user,
            crate::auth::second_factor::SECRET_FIELD,
            &s.kek_id,
            &s.blob,
        ),
        (Place::ProposalPayloads, Key::Id(proposal)) => keys.reseal_field(
            *proposal,
            crate::records::review::SEALED_AS,
            &s.kek_id,
            &s.blob,
        ),
        (Place::SensitiveValues, Key::Field(record, field))
        | (Place::RevisionSensitiveValues, Key::Revision(record, _, field)) => {
            keys.reseal_field(*record, field, &s.kek_id, &s.blob)
        }
        _ => Err(CryptoError::Format("a row of an unexpected shape")),
    }
}

/// Writes a batch of re-wrapped rows (all under `kek_id`) in one statement.
async fn write_batch(
    conn: &mut PgConnection,
    place: Place,
    kek_id: &str,
    done: &[(Key, Vec<u8>)],
) -> sqlx::Result<()> {
    let blobs: Vec<&[u8]> = done.iter().map(|(_, b)| b.as_slice()).collect();
    let ids: Vec<Uuid> = done.iter().map(|(k, _)| k.uuid()).collect();
    if let Some(c) = place.by_id() {
        let sql = format!(
            "UPDATE {table} t SET {kek} = $1, {blob} = u.blob \
             FROM UNNEST($2::uuid[], $3::bytea[]) AS u(id, blob) WHERE t.{id} = u.id",
            table = c.table,
            kek = c.kek,
            blob = c.blob,
            id = c.id
        );
        sqlx::query(&sql)
            .bind(kek_id)
            .bind(&ids)
            .bind(&blobs)
            .execute(conn)
            .await?;
        return Ok(());
    }
    match place {
        Place::Files | Place::ExportPasswords | Place::TotpSecrets | Place::ProposalPayloads => {}
        Place::SensitiveValues => {
            let fields: Vec<&str> = done
                .iter()
                .map(|(k, _)| match k {
                    Key::Field(_, f) => f.as_str(),
                    _ => "",
                })
                .collect();
            sqlx::query(
                "UPDATE record_sensitive_values t SET kek_id = $1, ciphertext = u.blob \
                 FROM UNNEST($2::uuid[], $3::text[], $4::bytea[]) AS u(record_id, field, blob) \
                 WHERE t.record_id = u.record_id AND t.field = u.field",
            )
            .bind(kek_id)
            .bind(&ids)
            .bind(&fields)
            .bind(&blobs)
            .execute(conn)
            .await?;
        }
        Place::RevisionSensitiveValues => {
            let (revisions, fields): (Vec<i32>, Vec<&str>) = done
                .iter()
                .map(|(k, _)| match k {
                    Key::Revision(_, n, f) => (*n, f.as_str()),
                    _ => (0, ""),
                })
                .unzip();
            sqlx::query(
                "UPDATE record_revision_sensitive_values t SET kek_id = $1, ciphertext = u.blob \
                 FROM UNNEST($2::uuid[], $3::int4[], $4::text[], $5::bytea[]) \
                   AS u(record_id, revision, field, blob) \
                 WHERE t.record_id = u.record_id AND t.revision = u.revision AND t.field = u.field",
            )
            .bind(kek_id)
            .bind(&ids)
            .bind(&revisions)
            .bind(&fields)
            .bind(&blobs)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// One pass over every place: re-wraps every row not under the active KEK, `batch` rows
/// per unit of work. Rows locked by a request at that moment, and rows written under an
/// older KEK after their batch went by, are left for the next pass.
pub async fn rewrap_pass(
    db: &Db,
    keys: &KeyRing,
    batch: usize,
    progress: &mut dyn Progress,
) -> AppResult<Pass> {
    let started = Instant::now();
    let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
    let mut pass = Pass::default();
    let active = keys.active_kek_id();
    let todo = not_under(&usage(db.pool()).await?, &active);
    for place in Place::ALL {
        let total = todo.get(&place).copied().unwrap_or(0);
        let mut after = Key::first(place);
        let mut done_here = 0u64;
        if total == 0 {
            continue;
        }
        loop {
            let (fetched, moved, failed, last) = crate::unit!(db, |tx| {
                let rows = next_batch(&mut tx, place, &active, &after, limit).await?;
                let fetched = rows.len();
                let last = rows.last().map(|r| r.key.clone());
                let mut done = Vec::with_capacity(rows.len());
                let mut failed = Vec::new();
                for r in &rows {
                    match rewrap_one(keys, place, r) {
                        // A reload between batches could change the active KEK: only rows
                        // that landed under the KEK this pass targets are written.
                        Ok((kek, blob)) if kek == active => done.push((r.key.clone(), blob)),
                        Ok((kek, _)) => {
                            return Err(AppError::Conflict(format!(
                                "the active key-encryption key changed from {active} to {kek} during the pass; run rotate-keys again"
                            )))
                        }
                        Err(e) => failed.push(Unreadable {
                            place,
                            key: r.key.describe(),
                            kek_id: r.kek_id.clone(),
                            reason: e.to_string(),
                        }),
                    }
                }
                if !done.is_empty() {
                    write_batch(&mut tx, place, &active, &done).await?;
                }
                Ok((fetched, done.len() as u64, failed, last))
            })?;
            done_here += moved;
            pass.unreadable.extend(failed);
            progress.batch(place, done_here, total.max(done_here));
            match last {
                Some(k) if fetched >= batch.max(1) => after = k,
                _ => break,
            }
        }
        if done_here > 0 {
            pass.rewrapped.insert(place, done_here);
        }
    }
    pass.elapsed = started.elapsed();
    Ok(pass)
}
