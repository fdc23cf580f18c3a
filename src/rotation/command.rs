//! `strongroom rotate-keys`: add a KEK and re-wrap everything under it, continue an
//! unfinished rotation (`--resume`), or retire an old KEK (`--retire KEY_ID`).
//!
//! - Without `--resume`, a new KEK is added (and made active) only when every row is
//!   already under the active KEK; when some are not, an earlier rotation did not finish,
//!   and the run continues it instead of stacking another key.
//! - Passes: one pass re-wraps what is there; rows written meanwhile under an older KEK (by
//!   servers that have not loaded the new key yet, which they do within
//!   [`RELOAD_INTERVAL`]) are caught by up to two more passes, the last after that
//!   interval. Exit 0 only when no row is left under an older KEK.
//! - `--retire` counts every use of the KEK in the database at that moment and refuses
//!   (exit 1, naming the count per table) while anything uses it, and always refuses the
//!   active KEK.
//! - One rotation at a time per database (a session advisory lock).
//! - Audited: `keys.rotate` and `keys.retire` (actor `cli:USER`) with ids and counts only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::PgPool;

use super::reload::RELOAD_INTERVAL;
use super::{not_under, rewrap_pass, under, usage, Pass, Place, Progress, Unreadable};
use crate::audit::{self, Actor, Event, Outcome};
use crate::crypto::{CryptoError, KeyRing};
use crate::tx::Db;

/// Advisory-lock key held by the one `rotate-keys` run ("rotkey" in ASCII).
const ROTATE_LOCK: i64 = 0x726f_746b_6579;
/// Passes at most per run.
const MAX_PASSES: usize = 3;

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Never add a KEK: only move rows to the active one.
    pub resume: bool,
    /// Retire this KEK instead of rotating.
    pub retire: Option<String>,
    /// Rows per unit of work.
    pub batch_size: usize,
}

/// Progress on standard error, at most about once a second.
struct Stderr {
    last: Option<Instant>,
}

impl Progress for Stderr {
    fn batch(&mut self, place: Place, done: u64, total: u64) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due || done >= total {
            eprintln!("  {}: {done}/{total} re-wrapped", place.name());
            self.last = Some(Instant::now());
        }
    }
}

fn counts_json(m: &BTreeMap<Place, u64>) -> serde_json::Value {
    serde_json::Value::Object(
        m.iter()
            .map(|(p, n)| (p.name().to_string(), json!(n)))
            .collect(),
    )
}

fn counts_text(m: &BTreeMap<Place, u64>) -> String {
    m.iter()
        .map(|(p, n)| format!("{} {n}", p.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn err(e: crate::error::AppError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.public_message())
}

/// Runs the command; returns the exit code.
pub async fn run(pool: PgPool, keys: KeyRing, actor: Actor, opts: Options) -> anyhow::Result<i32> {
    // One rotation at a time: a session lock on a connection held for the whole run.
    let mut lock = pool.acquire().await.context("connecting to the database")?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(ROTATE_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !got {
        eprintln!("rotate-keys: another rotate-keys is running on this database; try again when it has finished");
        return Ok(1);
    }
    let result = match &opts.retire {
        Some(id) => retire(&pool, &keys, &actor, id).await,
        None => rotate(&pool, &keys, &actor, &opts).await,
    };
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(ROTATE_LOCK)
        .execute(&mut *lock)
        .await;
    result
}

async fn rotate(
    pool: &PgPool,
    keys: &KeyRing,
    actor: &Actor,
    opts: &Options,
) -> anyhow::Result<i32> {
    let source = keys
        .source()
        .context("the key ring has no source to rotate")?;
    let started = Instant::now();
    let mut active = keys.active_kek_id();
    let pending = not_under(&usage(pool).await.map_err(err)?, &active);
    let pending_total: u64 = pending.values().sum();
    let mut added = false;
    if opts.resume {
        eprintln!(
            "rotate-keys: moving {pending_total} rows to the active key-encryption key {active}"
        );
    } else if pending_total > 0 {
        eprintln!(
            "rotate-keys: an earlier rotation did not finish ({pending_total} rows not under the active key-encryption key {active}: {}); continuing it without adding a key",
            counts_text(&pending)
        );
    } else {
        match source.add_kek() {
            Ok(id) => {
                keys.reload()
                    .with_context(|| format!("reloading {}", source.describe()))?;
                active = keys.active_kek_id();
                if active != id {
                    anyhow::bail!(
                        "{} did not make the new key {id} active (the active one is {active})",
                        source.describe()
                    );
                }
                added = true;
                eprintln!(
                    "rotate-keys: added the key-encryption key {id} to {}; it is active now",
                    source.describe()
                );
            }
            Err(e @ CryptoError::ReadOnly { .. }) => {
                eprintln!("rotate-keys: {e}");
                return Ok(1);
            }
            Err(e) => return Err(e).context("adding a key-encryption key"),
        }
    }

    let db = Db::new(pool.clone());
    let mut rewrapped: BTreeMap<Place, u64> = BTreeMap::new();
    let mut unreadable: Vec<Unreadable>;
    let mut passes = 0;
    let mut remaining;
    loop {
        passes += 1;
        let pass: Pass = rewrap_pass(&db, keys, opts.batch_size, &mut Stderr { last: None })
            .await
            .map_err(err)?;
        for (p, n) in &pass.rewrapped {
            *rewrapped.entry(*p).or_insert(0) += n;
        }
        eprintln!(
            "rotate-keys: pass {passes}: {} rows re-wrapped in {:.1} s",
            pass.total(),
            pass.elapsed.as_secs_f64()
        );
        unreadable = pass.unreadable;
        remaining = not_under(&usage(pool).await.map_err(err)?, &active);
        let left: u64 = remaining.values().sum();
        if left == 0 || passes >= MAX_PASSES || left <= unreadable.len() as u64 {
            break;
        }
        // Rows written under an older KEK meanwhile: servers that have not looked at the
        // key source since it changed. Give them the reload interval, then go again.
        let wait = (RELOAD_INTERVAL + Duration::from_secs(1)).saturating_sub(started.elapsed());
        let wait = wait.max(Duration::from_secs(1));
        eprintln!(
            "rotate-keys: {left} rows under an older key appeared meanwhile ({}); another pass in {:.0} s",
            counts_text(&remaining),
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }

    let left: u64 = remaining.values().sum();
    let ok = left == 0 && unreadable.is_empty();
    let detail = json!({
        "active": active,
        "added": added,
        "rewrapped": counts_json(&rewrapped),
        "remaining": counts_json(&remaining),
        "unreadable": unreadable.len(),
        "passes": passes,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    audit::record_alone(
        pool,
        actor,
        Event::new(
            "keys.rotate",
            if ok {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .object("kek", &active)
        .detail(detail),
    )
    .await
    .map_err(err)?;

    let total: u64 = rewrapped.values().sum();
    for u in &unreadable {
        println!(
            "UNREADABLE {} ({}) under {}: {}",
            u.place.name(),
            u.key,
            u.kek_id,
            u.reason
        );
    }
    if ok {
        let older: Vec<String> = keys
            .kek_ids()
            .into_iter()
            .filter(|k| *k != active)
            .collect();
        println!(
            "rotate-keys OK: {total} rows re-wrapped to {active} in {:.1} s ({}); every row is under the active key",
            started.elapsed().as_secs_f64(),
            if rewrapped.is_empty() { "nothing to move".to_string() } else { counts_text(&rewrapped) }
        );
        if !older.is_empty() {
            println!(
                "older keys nothing uses any more (retire with `strongroom rotate-keys --retire KEY_ID`): {}",
                older.join(", ")
            );
        }
        Ok(0)
    } else {
        println!(
            "rotate-keys INCOMPLETE: {total} rows re-wrapped to {active}; still under older keys: {}{}",
            if remaining.is_empty() { "none".to_string() } else { counts_text(&remaining) },
            if unreadable.is_empty() {
                "; they were written by servers that have not loaded the new key yet: run `strongroom rotate-keys --resume` again".to_string()
            } else {
                format!("; {} rows could not be opened (listed above)", unreadable.len())
            }
        );
        Ok(1)
    }
}

async fn retire(pool: &PgPool, keys: &KeyRing, actor: &Actor, id: &str) -> anyhow::Result<i32> {
    let source = keys
        .source()
        .context("the key ring has no source to retire a key from")?;
    // The ring may be older than the source (another run just changed it).
    keys.reload()
        .with_context(|| format!("reloading {}", source.describe()))?;
    let active = keys.active_kek_id();
    let uses = under(&usage(pool).await.map_err(err)?, id);
    let in_use: u64 = uses.values().sum();
    let refuse = |reason: String, detail: serde_json::Value| async move {
        println!("rotate-keys --retire {id} REFUSED: {reason}");
        audit::record_alone(
            pool,
            actor,
            Event::new("keys.retire", Outcome::Denied)
                .object("kek", id)
                .detail(detail),
        )
        .await
        .map_err(err)?;
        Ok::<i32, anyhow::Error>(1)
    };
    if id == active {
        return refuse(
            format!(
                "{id} is the active key-encryption key; rotate first (`strongroom rotate-keys`)"
            ),
            json!({"reason": "active"}),
        )
        .await;
    }
    if in_use > 0 {
        return refuse(
            format!(
                "{in_use} rows still use it ({}); run `strongroom rotate-keys --resume` first",
                counts_text(&uses)
            ),
            json!({"reason": "in_use", "uses": counts_json(&uses)}),
        )
        .await;
    }
    if !keys.kek_ids().iter().any(|k| k == id) {
        return refuse(
            format!("{} has no key-encryption key {id}", source.describe()),
            json!({"reason": "unknown"}),
        )
        .await;
    }
    let (removed, kept_at, note) = match source.remove_kek(id) {
        Ok(r) => (true, r.kept_at, None),
        Err(e @ CryptoError::ReadOnly { .. }) => (false, None, Some(e.to_string())),
        Err(e) => {
            return Err(e).with_context(|| format!("removing {id} from {}", source.describe()))
        }
    };
    audit::record_alone(
        pool,
        actor,
        Event::new("keys.retire", Outcome::Success)
            .object("kek", id)
            .detail(json!({"removed_from_source": removed, "active": active})),
    )
    .await
    .map_err(err)?;
    if removed {
        keys.reload()
            .with_context(|| format!("reloading {}", source.describe()))?;
        println!(
            "retired {id}: nothing uses it; removed from {}",
            source.describe()
        );
        if let Some(p) = kept_at {
            println!(
                "its line was kept in {} (mode 0600): keep it with the backups made before this rotation, apart from the vault, or delete it once those backups are gone",
                p.display()
            );
        }
    } else if let Some(note) = note {
        println!("retired {id}: nothing uses it. {note}");
    }
    Ok(0)
}
