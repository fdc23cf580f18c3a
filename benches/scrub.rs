//! Scrub benchmark (`cargo bench --bench scrub`).
//!
//! A vault on its embedded default in a temp dir (its own PostgreSQL cluster, a local object
//! store, a generated master key); one record filed through the real app; then files stored
//! the way uploads store them (`Store::put_encrypted`, pseudo-random content, a `files` row
//! each). It measures `storage::scrub::run` (decrypt every object, check every tag and the
//! plaintext SHA-256, list the store for unreferenced objects) in three passes:
//! 1. many small files (`STRONGROOM_BENCH_SCRUB_SMALL` files of 256 KiB, default 400):
//!    files/s;
//! 2. after adding large files (`STRONGROOM_BENCH_SCRUB_LARGE` files of 64 MiB, default 4):
//!    the whole store, and the large files' share (the difference of the two passes): MB/s;
//! 3. the whole store again at the default rate limit (`scrub_rate_mib_per_sec`, 20 MiB/s):
//!    the rate the token bucket lets through.
//!
//! For scale it also reads every object as stored, without decryption (`Store::get_plain`).
//! Figures are printed, never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure should stop it loudly

use std::os::unix::fs::DirBuilderExt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use rand::{RngCore, SeedableRng};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use strongroom::audit::Actor;
use strongroom::config::Config;
use strongroom::storage::scrub::{self, Options};
use strongroom::users::{self, NewUser, Role};
use uuid::Uuid;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const SMALL_SIZE: usize = 256 * KIB;
const LARGE_SIZE: usize = 64 * MIB;
const PASSWORD: &str = "benchmark passphrase, long enough";

fn env_count(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("scrub bench failed: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let small = env_count("STRONGROOM_BENCH_SCRUB_SMALL", 400)?;
    let large = env_count("STRONGROOM_BENCH_SCRUB_LARGE", 4)?;
    let dir = std::env::temp_dir().join(format!("sr-bench-scrub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 0711: run as root, the cluster runs as `postgres`, which must traverse this directory.
    std::fs::DirBuilder::new().mode(0o711).create(&dir)?;
    let config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let db = strongroom::db::Database::open(&config, 8).await?;
    let result = async {
        db.migrate().await?;
        bench(&config, &db.pool, small, large).await
    }
    .await;
    let closed = db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    closed
}

async fn bench(config: &Config, pool: &sqlx::PgPool, small: usize, large: usize) -> Result<()> {
    println!(
        "scrub bench: {small} files of {} KiB, then {large} of {} MiB; temp dir {}",
        SMALL_SIZE / KIB,
        LARGE_SIZE / MIB,
        config.data_dir.display()
    );
    let vault = strongroom::cli::open_vault(config)?;
    let (store, keys) = (
        vault.store.clone(),
        strongroom::cli::open_vault(config)?.keys,
    );
    let record_id = file_a_record(config, pool, vault).await?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5c7b);
    let mut version = 0;
    let t = Instant::now();
    for _ in 0..small {
        version += 1;
        store_file(
            pool, &store, &keys, record_id, version, SMALL_SIZE, &mut rng,
        )
        .await?;
    }
    println!(
        "  stored {small} small files in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let unlimited = Options {
        rate_limit_bytes_per_sec: None,
        unreferenced_grace: Duration::from_secs(3600),
    };

    println!("1. scrub, small files only (no rate limit)");
    let first = scrub_pass(pool, &store, &keys, &unlimited).await?;

    let t = Instant::now();
    for _ in 0..large {
        version += 1;
        store_file(
            pool, &store, &keys, record_id, version, LARGE_SIZE, &mut rng,
        )
        .await?;
    }
    println!(
        "  stored {large} large files in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!("2. scrub, small and large files (no rate limit)");
    let second = scrub_pass(pool, &store, &keys, &unlimited).await?;
    let (bytes, secs) = (
        second.bytes - first.bytes,
        (second.seconds - first.seconds).max(1e-6),
    );
    println!(
        "  large files alone (pass 2 - pass 1): {:>8.1} MB/s",
        bytes as f64 / 1e6 / secs
    );

    println!("   plain read of every object (no decryption, for scale)");
    let t = Instant::now();
    let mut plain = 0u64;
    let mut listing = store.object_store().list(None);
    while let Some(meta) = listing.next().await {
        let meta = meta?;
        let mut s = std::pin::pin!(store.get_plain(meta.location.as_ref()).await?);
        while let Some(b) = s.next().await {
            plain += b?.len() as u64;
        }
    }
    let plain_secs = t.elapsed().as_secs_f64();
    println!(
        "  {:>8.1} MB/s  ({:.1} MiB in {plain_secs:.2} s); scrub / plain read {:.2}",
        plain as f64 / 1e6 / plain_secs,
        plain as f64 / MIB as f64,
        (second.bytes as f64 / second.seconds) / (plain as f64 / plain_secs)
    );

    let limited = Options::from_config(config);
    let limit = limited.rate_limit_bytes_per_sec.unwrap_or(0);
    println!(
        "3. scrub at the default rate limit ({} MiB/s)",
        limit / MIB as u64
    );
    let third = scrub_pass(pool, &store, &keys, &limited).await?;
    println!(
        "  achieved {:.1} MiB/s of a {} MiB/s limit",
        third.bytes as f64 / MIB as f64 / third.seconds,
        limit / MIB as u64
    );
    Ok(())
}

struct Pass {
    bytes: u64,
    seconds: f64,
}

async fn scrub_pass(
    pool: &sqlx::PgPool,
    store: &strongroom::storage::Store,
    keys: &strongroom::crypto::KeyRing,
    opts: &Options,
) -> Result<Pass> {
    let t = Instant::now();
    let report = scrub::run(pool, store, keys, opts).await?;
    let seconds = t.elapsed().as_secs_f64();
    if !report.is_clean() {
        bail!("the scrub found problems: {:?}", report.problems);
    }
    println!(
        "  {} files, {:.1} MiB in {seconds:.2} s: {:>8.1} files/s {:>8.1} MB/s",
        report.files_verified,
        report.bytes_verified as f64 / MIB as f64,
        report.files_verified as f64 / seconds,
        report.bytes_verified as f64 / 1e6 / seconds
    );
    Ok(Pass {
        bytes: report.bytes_verified,
        seconds,
    })
}

/// An archivist, a category and one record, through the real app; returns the record id.
async fn file_a_record(
    config: &Config,
    pool: &sqlx::PgPool,
    vault: strongroom::Vault,
) -> Result<Uuid> {
    let hasher = strongroom::auth::password::Hasher::from_config(config);
    users::create_by_operator(
        pool,
        &hasher,
        &Actor::system("bench"),
        NewUser {
            username: "bench.archivist".into(),
            display_name: Some("Bench Archivist".into()),
            department: Some("Retail".into()),
            roles: vec![Role::Archivist],
            password: SecretString::from(PASSWORD),
            must_change_password: false,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = Client::untracked(strongroom::build(config.clone(), pool.clone(), vault)).await?;
    let post = |path: &'static str, token: Option<String>, body: Value| {
        let client = &client;
        async move {
            let mut req = client
                .post(path)
                .header(ContentType::JSON)
                .body(body.to_string());
            if let Some(t) = token {
                req = req.header(Header::new("Authorization", format!("Bearer {t}")));
            }
            let res = req.dispatch().await;
            let status = res.status();
            let body: Value = res.into_json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    let (s, login) = post(
        "/api/v1/login",
        None,
        json!({"username": "bench.archivist", "password": PASSWORD}),
    )
    .await;
    if s != Status::Ok {
        bail!("login: {s} {login}");
    }
    let token = login["token"].as_str().context("token")?.to_string();
    let (s, category) = post(
        "/api/v1/categories",
        Some(token.clone()),
        json!({"code": "SCRUB", "name": "Scrub bench", "sensitivity": "internal",
               "department": "Retail", "retention_years": 1}),
    )
    .await;
    if s != Status::Created {
        bail!("category: {s} {category}");
    }
    let (s, record) = post(
        "/api/v1/records",
        Some(token),
        json!({"category_id": category["id"], "title": "Scrub bench record", "fields": {}}),
    )
    .await;
    if s != Status::Created {
        bail!("record: {s} {record}");
    }
    Ok(record["id"].as_str().context("record id")?.parse()?)
}

/// Stores `size` pseudo-random bytes as the upload path does and records its `files` row.
async fn store_file(
    pool: &sqlx::PgPool,
    store: &strongroom::storage::Store,
    keys: &strongroom::crypto::KeyRing,
    record_id: Uuid,
    version: i32,
    size: usize,
    rng: &mut rand::rngs::StdRng,
) -> Result<()> {
    let mut data = vec![0u8; size];
    rng.fill_bytes(&mut data);
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let file_id = Uuid::new_v4();
    let stored = store
        .put_encrypted(keys, file_id, std::io::Cursor::new(data), u64::MAX)
        .await?;
    if stored.sha256 != sha {
        bail!("the stored SHA-256 differs from the content's");
    }
    sqlx::query(
        "INSERT INTO files (id, record_id, version, object_key, kek_id, wrapped_key, size, \
         media_type, original_name, sha256) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'application/octet-stream', $8, $9)",
    )
    .bind(file_id)
    .bind(record_id)
    .bind(version)
    .bind(&stored.object_key)
    .bind(&stored.kek_id)
    .bind(&stored.wrapped_key)
    .bind(stored.size as i64)
    .bind(format!("scan{version}.bin"))
    .bind(stored.sha256.as_slice())
    .execute(pool)
    .await?;
    Ok(())
}
