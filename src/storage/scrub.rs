//! The integrity scrub: every stored file decrypted and checked, every object accounted for.
//!
//! Guarantees:
//! - Every `files` row is read back through [`Store::open_decrypted`], which checks every
//!   chunk's tag, the object's length, the last-chunk marker, the size and the plaintext
//!   SHA-256 recorded in the row. The plaintext is dropped as it streams; it never reaches
//!   a log, an error, the database or the disk.
//! - A row whose object is gone is reported MISSING (after checking that the row still
//!   exists, so a file removed while the scrub ran is not a false alarm); one whose object
//!   fails verification DAMAGED, with the verifier's reason; one that cannot be read for
//!   another reason (no such key-encryption key, a store error) UNREADABLE.
//! - Every object in the store with a key of the vault's form ([`super::is_object_key`]) that
//!   no row references is reported UNREFERENCED. Other keys (signed audit checkpoints and
//!   anything else kept under its own prefix) are never reported. The scrub deletes
//!   nothing: orphans are the storage GC's ([`super::gc`]) to collect after its grace
//!   period. An unreferenced object younger than that grace may be an upload whose row is
//!   about to commit, so it is only a warning and does not make the run unclean. The
//!   staging files interrupted writes leave in a local store are reported the same way
//!   ([`super::staging`]).
//! - Reads are rate-limited by a token bucket ([`Options::rate_limit_bytes_per_sec`], bytes
//!   of content per second), so a scrub can run beside users.
//! - A run is recorded in `scrub_runs` and audited (`storage.scrub`, with its counts and
//!   the ids of damaged and missing files) in one unit of work; a run that itself fails
//!   (database or store unreachable) is audited with its error. The background job
//!   ([`run_once`]) runs at most one scrub at a time across nodes (an advisory lock) and
//!   only when the last recorded run is older than `scrub_interval_hours`.
//! - Administrators read the results (`scrub.read`, itself audited) through [`latest`].

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{FileRef, StorageError, Store};
use crate::audit::{Actor, Event, Outcome};
use crate::auth::Principal;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::error::{AppError, AppResult};
use crate::policy::ReadScrub;
use crate::tx::Db;
use crate::{unit, App};

/// The advisory-lock key of the scheduled scrub ("strscr" in ASCII).
pub const SCRUB_LOCK_KEY: i64 = 0x7374_7273_6372;
/// File rows read per query.
const PAGE: i64 = 200;
/// Object keys looked up per query.
const KEY_BATCH: usize = 500;
/// Problems stored with a run (all are counted; the rest are only counted).
const STORED_PROBLEMS: usize = 1000;
/// File ids named in a run's audit event.
const AUDITED_IDS: usize = 100;
/// How a scrub runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Content bytes read per second at most; `None`: as fast as the store answers.
    pub rate_limit_bytes_per_sec: Option<u64>,
    /// Unreferenced objects younger than this are taken for uploads in flight: reported as
    /// a warning only (the storage GC's grace period).
    pub unreferenced_grace: Duration,
}

impl Options {
    /// The configured rate (`scrub_rate_mib_per_sec`, 0: unlimited) and GC grace.
    pub fn from_config(config: &Config) -> Options {
        Options {
            rate_limit_bytes_per_sec: rate_from_mib(config.scrub_rate_mib_per_sec),
            unreferenced_grace: Duration::from_secs(u64::from(config.gc_grace_minutes) * 60),
        }
    }
}

/// MiB/s as bytes/s; 0 means no limit.
pub fn rate_from_mib(mib_per_sec: u32) -> Option<u64> {
    (mib_per_sec > 0).then(|| u64::from(mib_per_sec) * 1024 * 1024)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProblemKind {
    /// The object exists but fails verification.
    Damaged,
    /// The row names an object the store does not have.
    Missing,
    /// The object could not be read (no such key-encryption key, a store error).
    Unreadable,
    /// An object no row references.
    Unreferenced,
}

impl ProblemKind {
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::Damaged => "DAMAGED",
            ProblemKind::Missing => "MISSING",
            ProblemKind::Unreadable => "UNREADABLE",
            ProblemKind::Unreferenced => "UNREFERENCED",
        }
    }
}

/// One thing wrong. Names the file (id, record reference) and object key; never content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub file_id: Option<Uuid>,
    pub record_id: Option<Uuid>,
    pub reference: Option<String>,
    pub object_key: String,
    pub reason: String,
    /// An unreferenced object younger than the GC grace period (a warning only).
    #[serde(default)]
    pub young: bool,
}

impl Problem {
    /// Whether this makes the run unclean (everything but a young unreferenced object).
    pub fn is_failure(&self) -> bool {
        !(self.kind == ProblemKind::Unreferenced && self.young)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.file_id) {
            (ProblemKind::Unreferenced, _) | (_, None) => write!(
                f,
                "{} object {}: {}",
                self.kind.label(),
                self.object_key,
                self.reason
            ),
            (kind, Some(id)) => write!(
                f,
                "{} file {id} (record {}, object {}): {}",
                kind.label(),
                self.reference.as_deref().unwrap_or("?"),
                self.object_key,
                self.reason
            ),
        }
    }
}

/// What one scrub found.
#[derive(Clone, Debug, Serialize)]
pub struct ScrubReport {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// File rows looked at (rows removed while the scrub ran are not counted).
    pub files_checked: u64,
    /// Files whose object decrypted and matched its row.
    pub files_verified: u64,
    /// Plaintext bytes of the verified files.
    pub bytes_verified: u64,
    /// Objects of the vault's key form listed in the store.
    pub objects_listed: u64,
    pub problems: Vec<Problem>,
}

impl ScrubReport {
    pub fn count(&self, kind: ProblemKind) -> usize {
        self.problems.iter().filter(|p| p.kind == kind).count()
    }

    /// Unreferenced objects younger than the grace period (warnings).
    pub fn young_unreferenced(&self) -> usize {
        self.problems.iter().filter(|p| !p.is_failure()).count()
    }

    /// No damaged, missing or unreadable file and no unreferenced object past the grace.
    pub fn is_clean(&self) -> bool {
        self.problems.iter().all(|p| !p.is_failure())
    }

    pub fn seconds(&self) -> f64 {
        (self.finished_at - self.started_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0
    }

    /// The one-line verdict the command line prints.
    pub fn verdict(&self) -> String {
        let mib = self.bytes_verified as f64 / (1024.0 * 1024.0);
        if self.is_clean() {
            format!(
                "scrub OK: {} files verified ({mib:.1} MiB in {:.1} s)",
                self.files_verified,
                self.seconds()
            )
        } else {
            format!(
                "scrub FAILED: {} of {} files verified; {} damaged, {} missing, {} unreadable, {} unreferenced objects",
                self.files_verified,
                self.files_checked,
                self.count(ProblemKind::Damaged),
                self.count(ProblemKind::Missing),
                self.count(ProblemKind::Unreadable),
                self.count(ProblemKind::Unreferenced) - self.young_unreferenced(),
            )
        }
    }
}

/// A token bucket over content bytes: at most `rate` per second on average, bursts of at
/// most a quarter of a second's worth (and at least one chunk).
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64) -> Bucket {
        let rate = rate.max(1) as f64;
        let capacity = (rate / 4.0).max(crate::crypto::stream::CHUNK_SIZE as f64);
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: Instant::now(),
        }
    }

    async fn take(&mut self, n: usize) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.capacity) - n as f64;
        self.last = now;
        if self.tokens < 0.0 {
            // Sleep off the debt; the next refill pays it back.
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / self.rate)).await;
        }
    }
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: Uuid,
    record_id: Uuid,
    reference: String,
    object_key: String,
    kek_id: String,
    wrapped_key: Vec<u8>,
    size: i64,
    sha256: Vec<u8>,
}

/// Scrubs the whole store once and returns what it found; records nothing (see [`record`]).
#[tracing::instrument(skip_all)]
pub async fn run(
    pool: &PgPool,
    store: &Store,
    keys: &KeyRing,
    opts: &Options,
) -> Result<ScrubReport, StorageError> {
    let started_at = Utc::now();
    let mut report = ScrubReport {
        id: Uuid::new_v4(),
        started_at,
        finished_at: started_at,
        files_checked: 0,
        files_verified: 0,
        bytes_verified: 0,
        objects_listed: 0,
        problems: Vec::new(),
    };
    let mut bucket = opts.rate_limit_bytes_per_sec.map(Bucket::new);
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<FileRow> = sqlx::query_as(
            "SELECT f.id, f.record_id, r.reference, f.object_key, f.kek_id, f.wrapped_key, \
                    f.size, f.sha256 \
             FROM files f JOIN records r ON r.id = f.record_id \
             WHERE f.id > $1 ORDER BY f.id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            check_file(pool, store, keys, &mut bucket, row, &mut report).await?;
        }
    }
    find_unreferenced(pool, store, opts.unreferenced_grace, &mut report).await?;
    report.finished_at = Utc::now();
    tracing::info!(
        files_verified = report.files_verified,
        bytes = report.bytes_verified,
        problems = report.problems.len(),
        clean = report.is_clean(),
        "scrub done"
    );
    Ok(report)
}

async fn check_file(
    pool: &PgPool,
    store: &Store,
    keys: &KeyRing,
    bucket: &mut Option<Bucket>,
    row: FileRow,
    report: &mut ScrubReport,
) -> Result<(), StorageError> {
    let problem = |kind: ProblemKind, reason: String| Problem {
        kind,
        file_id: Some(row.id),
        record_id: Some(row.record_id),
        reference: Some(row.reference.clone()),
        object_key: row.object_key.clone(),
        reason,
        young: false,
    };
    let Ok(sha256) = <[u8; 32]>::try_from(row.sha256.as_slice()) else {
        report.files_checked += 1;
        report.problems.push(problem(
            ProblemKind::Damaged,
            "the row's SHA-256 is not 32 bytes".into(),
        ));
        return Ok(());
    };
    let f = FileRef {
        file_id: row.id,
        object_key: row.object_key.clone(),
        kek_id: row.kek_id.clone(),
        wrapped_key: row.wrapped_key.clone(),
        size: u64::try_from(row.size).unwrap_or(0),
        sha256,
    };
    let verdict: Result<u64, (ProblemKind, String)> = async {
        let stream = store.open_decrypted(keys, &f).await.map_err(classify)?;
        let mut stream = std::pin::pin!(stream);
        let mut n = 0u64;
        while let Some(item) = stream.next().await {
            let bytes = item.map_err(classify)?;
            n += bytes.len() as u64;
            if let Some(b) = bucket.as_mut() {
                b.take(bytes.len()).await;
            }
        }
        Ok(n)
    }
    .await;
    match verdict {
        Ok(n) => {
            report.files_checked += 1;
            report.files_verified += 1;
            report.bytes_verified += n;
        }
        Err((ProblemKind::Missing, reason)) => {
            // A file removed while the scrub ran (its row and object gone) is no problem.
            let still: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM files WHERE id = $1)")
                    .bind(row.id)
                    .fetch_one(pool)
                    .await?;
            if still {
                report.files_checked += 1;
                tracing::warn!(file = %row.id, object_key = %row.object_key, "scrub: object missing");
                report.problems.push(problem(ProblemKind::Missing, reason));
            }
        }
        Err((kind, reason)) => {
            report.files_checked += 1;
            tracing::warn!(file = %row.id, object_key = %row.object_key, %reason, "scrub: {}", kind.label());
            report.problems.push(problem(kind, reason));
        }
    }
    Ok(())
}

/// Sorts a read failure into the scrub's kinds. Reasons come from the verifier and the
/// store and never contain content or key material.
fn classify(e: StorageError) -> (ProblemKind, String) {
    match e {
        StorageError::Store(object_store::Error::NotFound { .. }) => {
            (ProblemKind::Missing, "the object is missing".into())
        }
        StorageError::Integrity { reason, .. } => (ProblemKind::Damaged, reason),
        StorageError::Config(reason) => (ProblemKind::Unreadable, reason),
        other => (ProblemKind::Unreadable, other.to_string()),
    }
}

async fn find_unreferenced(
    pool: &PgPool,
    store: &Store,
    grace: Duration,
    report: &mut ScrubReport,
) -> Result<(), StorageError> {
    let grace = chrono::Duration::from_std(grace)
        .map_err(|_| StorageError::Config("the gc grace period is too long".into()))?;
    let mut listing = store.object_store().list(None);
    let mut batch: Vec<object_store::ObjectMeta> = Vec::with_capacity(KEY_BATCH);
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        if !super::is_object_key(meta.location.as_ref()) {
            continue;
        }
        report.objects_listed += 1;
        batch.push(meta);
        if batch.len() == KEY_BATCH {
            unreferenced_in(pool, &mut batch, grace, report).await?;
        }
    }
    unreferenced_in(pool, &mut batch, grace, report).await?;
    // What interrupted writes left in a local store (its listing does not show them).
    let now = Utc::now();
    for staged in super::staging::find(store).await? {
        let age = now - DateTime::<Utc>::from(staged.modified);
        let young = age < grace;
        report.problems.push(Problem {
            kind: ProblemKind::Unreferenced,
            file_id: None,
            record_id: None,
            reference: None,
            object_key: staged.name,
            reason: format!(
                "the staging file of a write that never finished (an upload cut short by a \
                 crash); {} min old, {}",
                age.num_minutes().max(0),
                if young {
                    "within the GC grace period (a write in progress?): a warning"
                } else {
                    "past the GC grace period (the storage GC removes it)"
                }
            ),
            young,
        });
    }
    Ok(())
}

async fn unreferenced_in(
    pool: &PgPool,
    batch: &mut Vec<object_store::ObjectMeta>,
    grace: chrono::Duration,
    report: &mut ScrubReport,
) -> Result<(), StorageError> {
    if batch.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = batch.iter().map(|m| m.location.to_string()).collect();
    let referenced: HashSet<String> =
        sqlx::query_scalar("SELECT object_key FROM files WHERE object_key = ANY($1)")
            .bind(&keys)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let now = Utc::now();
    for meta in batch.drain(..) {
        let key = meta.location.to_string();
        if referenced.contains(&key) {
            continue;
        }
        let age = now - meta.last_modified;
        let young = age < grace;
        let minutes = age.num_minutes().max(0);
        report.problems.push(Problem {
            kind: ProblemKind::Unreferenced,
            file_id: None,
            record_id: None,
            reference: None,
            object_key: key,
            reason: if young {
                format!(
                    "no file row references it; {minutes} min old, within the GC grace period \
                     (an upload in flight?): a warning"
                )
            } else {
                format!(
                    "no file row references it; {minutes} min old, past the GC grace period \
                     (the storage GC removes it)"
                )
            },
            young,
        });
    }
    Ok(())
}

/// Records a finished run in `scrub_runs` and audits it (`storage.scrub`: success when
/// clean, failure otherwise), in one unit of work.
#[tracing::instrument(skip_all)]
pub async fn record(db: &Db, actor: &Actor, origin: &str, report: &ScrubReport) -> AppResult<()> {
    let stored: Vec<&Problem> = report.problems.iter().take(STORED_PROBLEMS).collect();
    let omitted = report.problems.len() - stored.len();
    let ids = |kind: ProblemKind| -> Vec<Uuid> {
        report
            .problems
            .iter()
            .filter(|p| p.kind == kind)
            .filter_map(|p| p.file_id)
            .take(AUDITED_IDS)
            .collect()
    };
    let unreferenced = report.count(ProblemKind::Unreferenced);
    let young = report.young_unreferenced();
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let detail = json!({
        "origin": origin,
        "files_checked": report.files_checked,
        "files_verified": report.files_verified,
        "bytes_verified": report.bytes_verified,
        "objects_listed": report.objects_listed,
        "damaged": ids(ProblemKind::Damaged),
        "missing": ids(ProblemKind::Missing),
        "unreadable": ids(ProblemKind::Unreadable),
        "unreferenced": unreferenced - young,
        "unreferenced_young": young,
        "seconds": report.seconds(),
    });
    let outcome = if report.is_clean() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let problems = serde_json::to_value(&stored).map_err(AppError::internal)?;
    unit!(db, |tx| {
        sqlx::query(
            "INSERT INTO scrub_runs (id, started_at, finished_at, origin, files_checked, \
             files_verified, bytes_verified, objects_listed, damaged, missing, unreferenced, \
             unreferenced_young, clean, problems, problems_omitted) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(report.id)
        .bind(report.started_at)
        .bind(report.finished_at)
        .bind(origin)
        .bind(to_i64(report.files_checked))
        .bind(to_i64(report.files_verified))
        .bind(to_i64(report.bytes_verified))
        .bind(to_i64(report.objects_listed))
        .bind(to_i32(
            report.count(ProblemKind::Damaged) + report.count(ProblemKind::Unreadable),
        ))
        .bind(to_i32(report.count(ProblemKind::Missing)))
        .bind(to_i32(unreferenced - young))
        .bind(to_i32(young))
        .bind(report.is_clean())
        .bind(&problems)
        .bind(to_i32(omitted))
        .execute(&mut *tx)
        .await?;
        tx.audit(
            actor,
            Event::new("storage.scrub", outcome)
                .object("scrub_run", report.id)
                .detail(detail),
        )
        .await?;
        Ok(())
    })
}

/// Audits a scrub that could not finish (the database or the store failed under it).
pub async fn record_failure(db: &Db, actor: &Actor, origin: &str, error: &str) -> AppResult<()> {
    db.record(
        actor,
        Event::new("storage.scrub", Outcome::Failure)
            .detail(json!({ "origin": origin, "error": error })),
    )
    .await
}

/// The key ring for a scheduled scrub: the master key file as it is now (so keys added
/// by a rotation are known). It is never created here: the server created it at start.
fn load_keys(config: &Config) -> Result<KeyRing, StorageError> {
    let path = config.master_key_path();
    if !path.exists() {
        return Err(StorageError::Config(format!(
            "the master key file {} is missing",
            path.display()
        )));
    }
    KeyRing::load_or_create(&path)
        .map_err(|e| StorageError::Config(format!("loading the master key: {e}")))
}

/// One scheduled pass, safe on several nodes at once: if `scrub_interval_hours` is not 0,
/// no other node is scrubbing (advisory lock [`SCRUB_LOCK_KEY`]) and the last recorded run
/// finished at least that long ago, scrubs at the configured rate, records and audits the
/// run. Returns the report of a run made, `None` when none was due.
pub async fn run_once(
    pool: &PgPool,
    store: &Store,
    config: &Config,
) -> AppResult<Option<ScrubReport>> {
    if config.scrub_interval_hours == 0 {
        return Ok(None);
    }
    let mut conn = pool.acquire().await?;
    let won: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SCRUB_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !won {
        return Ok(None);
    }
    let result = scheduled(pool, store, config).await;
    let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(SCRUB_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await;
    if !matches!(unlocked, Ok(true)) {
        // A session lock lives as long as its connection: closing it is the sure release.
        let _ = conn.close().await;
    }
    result
}

async fn scheduled(
    pool: &PgPool,
    store: &Store,
    config: &Config,
) -> AppResult<Option<ScrubReport>> {
    let last: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT max(finished_at) FROM scrub_runs")
        .fetch_one(pool)
        .await?;
    let interval = chrono::Duration::hours(i64::from(config.scrub_interval_hours));
    if last.is_some_and(|t| Utc::now() - t < interval) {
        return Ok(None);
    }
    let db = Db::new(pool.clone());
    let actor = Actor::system("scrub");
    let run = async {
        let keys = load_keys(config)?;
        run(pool, store, &keys, &Options::from_config(config)).await
    };
    match run.await {
        Ok(report) => {
            record(&db, &actor, "job", &report).await?;
            if !report.is_clean() {
                tracing::error!(
                    run = %report.id,
                    damaged = report.count(ProblemKind::Damaged),
                    missing = report.count(ProblemKind::Missing),
                    unreadable = report.count(ProblemKind::Unreadable),
                    "scrub found problems; see /admin/scrub"
                );
            }
            Ok(Some(report))
        }
        Err(e) => {
            record_failure(&db, &actor, "job", &e.to_string()).await?;
            Err(AppError::internal(e))
        }
    }
}

/// A recorded run, as administrators see it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct ScrubRun {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub origin: String,
    pub files_checked: i64,
    pub files_verified: i64,
    pub bytes_verified: i64,
    pub objects_listed: i64,
    pub damaged: i32,
    pub missing: i32,
    pub unreferenced: i32,
    pub unreferenced_young: i32,
    pub clean: bool,
    #[sqlx(json)]
    pub problems: Vec<Problem>,
    pub problems_omitted: i32,
}

/// The latest `limit` runs, newest first, for an administrator (`scrub.read`); the read is
/// audited, and so is a refusal.
#[tracing::instrument(skip_all)]
pub async fn latest(app: &App, who: &Principal, limit: i64) -> AppResult<Vec<ScrubRun>> {
    unit!(app.db, |tx| {
        tx.authorize::<ReadScrub>(&app.policies, who, None, None)?;
        let runs: Vec<ScrubRun> = sqlx::query_as(
            "SELECT id, started_at, finished_at, origin, files_checked, files_verified, \
                    bytes_verified, objects_listed, damaged, missing, unreferenced, \
                    unreferenced_young, clean, problems, problems_omitted \
             FROM scrub_runs ORDER BY finished_at DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 100))
        .fetch_all(&mut *tx)
        .await?;
        tx.audit(
            &who.actor(),
            Event::new("scrub.read", Outcome::Success).detail(json!({ "returned": runs.len() })),
        )
        .await?;
        Ok(runs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: ProblemKind, young: bool) -> Problem {
        Problem {
            kind,
            file_id: (kind != ProblemKind::Unreferenced).then(Uuid::nil),
            record_id: None,
            reference: Some("CONTR-2026-000001".into()),
            object_key: "ab/cd/abcd".into(),
            reason: "r".into(),
            young,
        }
    }

    #[test]
    fn young_unreferenced_objects_are_warnings_and_the_rest_fail() {
        let mut r = ScrubReport {
            id: Uuid::nil(),
            started_at: Utc::now(),
            finished_at: Utc::now(),
            files_checked: 2,
            files_verified: 2,
            bytes_verified: 10,
            objects_listed: 3,
            problems: vec![problem(ProblemKind::Unreferenced, true)],
        };
        assert!(r.is_clean());
        assert!(
            r.verdict().starts_with("scrub OK: 2 files verified"),
            "{}",
            r.verdict()
        );
        r.problems.push(problem(ProblemKind::Unreferenced, false));
        assert!(!r.is_clean());
        assert!(r.verdict().contains("1 unreferenced"), "{}", r.verdict());
        r.problems.push(problem(ProblemKind::Damaged, false));
        assert_eq!(
            r.problems[2].to_string(),
            format!(
                "DAMAGED file {} (record CONTR-2026-000001, object ab/cd/abcd): r",
                Uuid::nil()
            )
        );
        assert_eq!(
            r.problems[1].to_string(),
            "UNREFERENCED object ab/cd/abcd: r"
        );
    }

    #[tokio::test]
    async fn the_bucket_holds_the_rate() {
        let mut b = Bucket::new(4 * 1024 * 1024);
        let start = Instant::now();
        // 4 MiB/s with a 1 MiB burst: 3 MiB take at least about half a second.
        for _ in 0..48 {
            b.take(64 * 1024).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
    }
}
