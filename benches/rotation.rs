//! Key rotation benchmark (`cargo bench --bench rotation`): the time to re-wrap 100,000
//! keys.
//!
//! Fills a migrated database on a temporary embedded PostgreSQL cluster with
//! `STRONGROOM_BENCH_KEYS` (default 100,000) wrapped keys, half of them file data keys
//! (`files.wrapped_key`, real `KeyRing::wrap` output) and half sealed sensitive values
//! (`record_sensitive_values`, real `KeyRing::encrypt_field` ciphertext with a blind
//! index), then adds a KEK to the key file and times one re-wrap pass
//! (`rotation::rewrap_pass`, the code `strongroom rotate-keys` runs: batches of
//! 1,000 rows per unit of work, `FOR UPDATE SKIP LOCKED`). Objects are not needed: a
//! re-wrap never touches file content. Prints the time per place and the time per 100,000
//! keys; figures are printed, never asserted.
//!
//! Cluster settings: the test harness's (fsync, synchronous_commit and full_page_writes
//! off); the temp dir and the cluster are removed at the end, and by a watchdog if this
//! process dies first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure should stop it loudly

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use strongroom::crypto::{DataKey, KeyRing};
use strongroom::pg::{EmbeddedPg, StartOptions};
use strongroom::rotation::{self, Place, Progress};
use strongroom::tx::Db;
use uuid::Uuid;

const FILL_BATCH: usize = 5_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(run());
    drop(rt);
    if let Err(e) = result {
        eprintln!("rotation bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .filter(|n| *n > 1)
            .with_context(|| format!("{name} must be a number above 1")),
        Err(_) => Ok(default),
    }
}

/// Stops the cluster and removes the temp dir if the bench ends early.
struct Cleanup {
    dir: PathBuf,
    watchdog: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            drop(w.stdin.take());
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run() -> Result<()> {
    let n = env_number("STRONGROOM_BENCH_KEYS", 100_000)?;
    let batch = env_number("STRONGROOM_BENCH_ROTATE_BATCH", rotation::DEFAULT_BATCH)?;
    let dir = std::env::temp_dir().join(format!("sr-bench-rotation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        watchdog: None,
    };
    println!(
        "rotation bench: {n} wrapped keys, {batch} rows per transaction, temp dir {}",
        dir.display()
    );
    let opts = StartOptions {
        bin_dir: None,
        settings: [
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let t = Instant::now();
    let pg = EmbeddedPg::ensure_running(&dir, &opts)
        .await
        .context("starting the temporary cluster")?;
    cleanup.watchdog = Some(pg.stop_on_process_exit(Some(&dir))?);
    println!("  cluster started in {:.1} s", t.elapsed().as_secs_f64());
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pg.connect_options(strongroom::pg::DATABASE))
        .await?;
    let result = bench(&dir, &pool, n, batch).await;
    pool.close().await;
    let stopped = pg.stop().await;
    drop(cleanup);
    result?;
    stopped.context("stopping the cluster")?;
    Ok(())
}

/// Records when each batch of each place finished.
#[derive(Default)]
struct Clock {
    start: Option<Instant>,
    ends: BTreeMap<Place, (Instant, u64)>,
}

impl Progress for Clock {
    fn batch(&mut self, place: Place, done: u64, _total: u64) {
        self.ends.insert(place, (Instant::now(), done));
    }
}

async fn bench(dir: &std::path::Path, pool: &PgPool, n: usize, batch: usize) -> Result<()> {
    strongroom::db::MIGRATOR.run(pool).await?;
    let keys = KeyRing::load_or_create(&dir.join("vault").join("master.key"))?;
    let old = keys.active_kek_id();

    // ---- the fill -------------------------------------------------------------------------
    let t = Instant::now();
    let category = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO categories (id, code, name, sensitivity, department, retention_years) \
         VALUES ($1, 'BENCH', 'Bench', 'internal', 'Retail', 10)",
    )
    .bind(category)
    .execute(pool)
    .await?;
    let files = n / 2;
    let values = n - files;
    let records = files.max(values);
    let mut record_ids = Vec::with_capacity(records);
    for chunk_start in (0..records).step_by(FILL_BATCH) {
        let ids: Vec<Uuid> = (chunk_start..(chunk_start + FILL_BATCH).min(records))
            .map(|_| Uuid::new_v4())
            .collect();
        let refs: Vec<String> = ids
            .iter()
            .map(|id| format!("BENCH-{}", id.simple()))
            .collect();
        sqlx::query(
            "INSERT INTO records (id, category_id, reference, title, search_text, schema_version) \
             SELECT u.id, $1, u.r, 'Bench record', u.r, 1 FROM UNNEST($2::uuid[], $3::text[]) AS u(id, r)",
        )
        .bind(category)
        .bind(&ids)
        .bind(&refs)
        .execute(pool)
        .await?;
        record_ids.extend(ids);
    }
    for chunk in record_ids[..files].chunks(FILL_BATCH) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut wrapped = Vec::with_capacity(chunk.len());
        let mut object_keys = Vec::with_capacity(chunk.len());
        for _ in chunk {
            let id = Uuid::new_v4();
            wrapped.push(keys.wrap(&DataKey::generate(), id).wrapped);
            object_keys.push(format!("bench/{}", id.simple()));
            ids.push(id);
        }
        sqlx::query(
            "INSERT INTO files (id, record_id, version, object_key, kek_id, wrapped_key, size, media_type, original_name, sha256) \
             SELECT u.id, u.rec, 1, u.ok, $1, u.w, 0, 'application/octet-stream', 'bench.bin', decode(repeat('00', 32), 'hex') \
             FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::bytea[]) AS u(id, rec, ok, w)",
        )
        .bind(&old)
        .bind(&ids)
        .bind(chunk)
        .bind(&object_keys)
        .bind(&wrapped)
        .execute(pool)
        .await?;
    }
    for (i, chunk) in record_ids[..values].chunks(FILL_BATCH).enumerate() {
        let mut cts = Vec::with_capacity(chunk.len());
        let mut indexes = Vec::with_capacity(chunk.len());
        for (j, rec) in chunk.iter().enumerate() {
            let phone = format!("139{:08}", i * FILL_BATCH + j);
            cts.push(keys.encrypt_field(*rec, "phone", &phone).1);
            indexes.push(keys.blind_index("phone", &phone));
        }
        sqlx::query(
            "INSERT INTO record_sensitive_values (record_id, field, ciphertext, kek_id, blind_index) \
             SELECT u.rec, 'phone', u.ct, $1, u.bi FROM UNNEST($2::uuid[], $3::bytea[], $4::bytea[]) AS u(rec, ct, bi)",
        )
        .bind(&old)
        .bind(chunk)
        .bind(&cts)
        .bind(&indexes)
        .execute(pool)
        .await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    println!(
        "  filled {files} file data keys and {values} sealed values under {old} in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // ---- the rotation ---------------------------------------------------------------------
    let source = keys.source().context("the key ring has its key file")?;
    let new = source.add_kek()?;
    keys.reload()?;
    let db = Db::new(pool.clone());
    let mut clock = Clock {
        start: Some(Instant::now()),
        ..Clock::default()
    };
    let pass = rotation::rewrap_pass(&db, &keys, batch, &mut clock).await?;
    let secs = pass.elapsed.as_secs_f64();
    let moved = pass.total();
    if !pass.unreadable.is_empty() {
        bail!("{} rows could not be re-wrapped", pass.unreadable.len());
    }
    let left: u64 = rotation::not_under(&rotation::usage(pool).await?, &new)
        .values()
        .sum();
    if moved != n as u64 || left != 0 {
        bail!("re-wrapped {moved} of {n} rows, {left} left under an older key");
    }
    println!("re-wrap pass to {new} ({batch} rows per transaction):");
    let mut from = clock.start.context("clock started")?;
    for (place, (end, done)) in &clock.ends {
        let s = end.duration_since(from).as_secs_f64();
        println!(
            "  {:<26} {done:>8} rows in {s:>6.2} s   {:>9.0} rows/s   per 100,000: {:>6.2} s",
            place.name(),
            *done as f64 / s,
            s * 100_000.0 / *done as f64
        );
        from = *end;
    }
    println!(
        "  {:<26} {moved:>8} rows in {secs:>6.2} s   {:>9.0} rows/s   per 100,000: {:>6.2} s",
        "all",
        moved as f64 / secs,
        secs * 100_000.0 / moved as f64
    );
    // A second pass finds nothing to do: what a resumed run costs when all is done.
    let t = Instant::now();
    let again = rotation::rewrap_pass(&db, &keys, batch, &mut ()).await?;
    println!(
        "  a second pass (nothing left) took {:.3} s and moved {} rows",
        t.elapsed().as_secs_f64(),
        again.total()
    );
    Ok(())
}
