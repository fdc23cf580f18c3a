//! The background jobs of a serving node, started and stopped in one place: the audit
//! sequencer, audit checkpoints, expiry of requests and grants, removal of dead sessions
//! and collection of orphaned objects.
//!
//! Guarantees:
//! - Each periodic job runs once per interval across all the nodes that share the
//!   database, not once per node: a node runs a job only after claiming its turn
//!   ([`claim`]), one statement that moves the job's `next_run_at` one interval ahead if it
//!   is due. Of several nodes claiming at once exactly one wins (the row is locked and the
//!   condition rechecked on its newest version); every run is counted in
//!   `job_schedule.runs` and logged in `job_runs`, whose key (job, slot) forbids two runs
//!   under one number. A node that loses sleeps until the job is next due.
//! - The schedule lives in PostgreSQL, so nodes may start, stop and crash at any time: a
//!   job whose node died is run by another node at its next due time.
//! - The audit sequencer is not scheduled this way: it runs every
//!   [`crate::audit::SEQUENCE_INTERVAL`] on every node, and one advisory lock lets one
//!   pass chain at a time (a pass with nothing to chain costs one query).
//! - A clean stop chains what the last requests left and signs the chain's head.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::audit::checkpoint::{AuditSigner, Checkpointer};
use crate::config::Config;
use crate::storage::Store;

/// A losing node never waits less than this before claiming again.
const MIN_POLL: Duration = Duration::from_millis(50);
/// Claims between two prunings of a job's run log.
const PRUNE_EVERY: i64 = 1_000;

/// The running jobs; [`Jobs::stop`] ends them, chains the last audit events and signs
/// the chain's head.
pub struct Jobs {
    pool: PgPool,
    checkpoints: Checkpointer,
    tasks: Vec<JoinHandle<()>>,
}

/// This node's name in the job schedule: the `node_name` setting, or host:pid.
pub fn node_name(config: &Config) -> String {
    if let Some(name) = &config.node_name {
        return name.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".into());
    format!("{host}:{}", std::process::id())
}

/// Starts every background job of a serving node.
pub fn start(pool: &PgPool, store: &Store, config: &Config, signer: Arc<AuditSigner>) -> Jobs {
    let node = node_name(config);
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let grace = Duration::from_secs(u64::from(config.gc_grace_minutes) * 60);
    let checkpoints = Checkpointer::new(pool.clone(), store.clone(), signer);
    let idle = config.session_idle();
    let tasks = vec![
        tokio::spawn(crate::audit::run_sequencer(pool.clone())),
        periodic(
            "session-purge",
            secs(config.session_purge_interval_seconds),
            pool,
            &node,
            {
                let pool = pool.clone();
                move || purge_sessions(pool.clone(), idle)
            },
        ),
        periodic("gc", secs(config.gc_interval_seconds), pool, &node, {
            let (pool, store) = (pool.clone(), store.clone());
            move || collect_orphans(pool.clone(), store.clone(), grace)
        }),
        periodic(
            "expire",
            secs(config.expire_interval_seconds),
            pool,
            &node,
            {
                let pool = pool.clone();
                move || expire_requests(pool.clone())
            },
        ),
        periodic(
            "checkpoint",
            secs(config.checkpoint_interval_seconds),
            pool,
            &node,
            {
                let checkpoints = checkpoints.clone();
                move || write_checkpoint(checkpoints.clone())
            },
        ),
        periodic(
            "scrub",
            Duration::from_secs(u64::from(config.scrub_interval_hours) * 3600),
            pool,
            &node,
            {
                let (pool, store, config) = (pool.clone(), store.clone(), config.clone());
                move || scrub(pool.clone(), store.clone(), config.clone())
            },
        ),
    ];
    Jobs {
        pool: pool.clone(),
        checkpoints,
        tasks,
    }
}

impl Jobs {
    /// Stops the jobs, then chains what the last requests left (a clean stop leaves no
    /// event unchained) and signs the chain's head into a checkpoint.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        match crate::audit::sequence_all(&self.pool).await {
            Ok(n) => tracing::info!(chained = n, "audit events chained on stop"),
            Err(e) => tracing::warn!(error = %e, "chaining audit events on stop failed"),
        }
        write_checkpoint(self.checkpoints).await;
    }
}

/// Runs `f` every `every` across all nodes sharing `pool`'s database: on each node, a task
/// claims the job `name` when it is due ([`claim`]) and runs `f` only when it won. Abort the
/// returned task to stop it (as [`Jobs::stop`] does). A zero interval disables the job.
///
/// ```ignore
/// tasks.push(jobs::periodic("scrub", every, &pool, &node, move || scrub_once(pool.clone())));
/// ```
pub fn periodic<F, Fut>(
    name: &'static str,
    every: Duration,
    pool: &PgPool,
    node: &str,
    mut f: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pool = pool.clone();
    let node = node.to_string();
    tokio::spawn(async move {
        if every.is_zero() {
            tracing::info!(job = name, "job disabled (interval 0)");
            return;
        }
        loop {
            match claim(&pool, name, every, &node).await {
                Ok(Some(slot)) => {
                    tracing::debug!(job = name, slot, "job claimed");
                    f().await;
                    if slot % PRUNE_EVERY == 0 {
                        prune_log(&pool, name).await;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(job = name, error = %e, "claiming a job failed"),
            }
            let wait = match until_due(&pool, name).await {
                Ok(d) => d.clamp(MIN_POLL, every.max(MIN_POLL)),
                Err(_) => every.max(MIN_POLL),
            };
            // A little spread, so nodes that lost do not all come back at the same instant.
            let jitter = Duration::from_millis(u64::from(rand::random::<u8>() % 20));
            tokio::time::sleep(wait + jitter).await;
        }
    })
}

/// Claims this interval's run of `job` for `node`: returns the run's number (its slot) if
/// the job was due and this node won it, `None` if it is not due or another node won.
/// One statement, so exactly one of any number of concurrent claimants wins each interval.
/// A schedule further ahead than one interval (the interval was shortened) counts as due.
pub async fn claim(
    pool: &PgPool,
    job: &str,
    every: Duration,
    node: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH won AS ( \
           INSERT INTO job_schedule AS s (job, next_run_at, runs, last_node, last_run_at) \
           VALUES ($1, now() + make_interval(secs => $2), 1, $3, now()) \
           ON CONFLICT (job) DO UPDATE \
             SET next_run_at = now() + make_interval(secs => $2), runs = s.runs + 1, \
                 last_node = EXCLUDED.last_node, last_run_at = now() \
             WHERE s.next_run_at <= now() \
                OR s.next_run_at > now() + make_interval(secs => $2) \
           RETURNING s.runs) \
         INSERT INTO job_runs (job, slot, node) SELECT $1, runs, $3 FROM won RETURNING slot",
    )
    .bind(job)
    .bind(every.as_secs_f64())
    .bind(node)
    .fetch_optional(pool)
    .await
}

/// How long until `job` is next due (zero when due or never claimed).
async fn until_due(pool: &PgPool, job: &str) -> Result<Duration, sqlx::Error> {
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT greatest(extract(epoch FROM next_run_at - now()), 0)::float8 \
         FROM job_schedule WHERE job = $1",
    )
    .bind(job)
    .fetch_optional(pool)
    .await?;
    Ok(Duration::try_from_secs_f64(secs.unwrap_or(0.0)).unwrap_or(Duration::ZERO))
}

/// Keeps a job's run log to the last 30 days.
async fn prune_log(pool: &PgPool, job: &str) {
    let pruned = sqlx::query(
        "DELETE FROM job_runs WHERE job = $1 AND claimed_at < now() - interval '30 days'",
    )
    .bind(job)
    .execute(pool)
    .await;
    if let Err(e) = pruned {
        tracing::warn!(job, error = %e, "pruning the job run log failed");
    }
}

/// Removes dead sessions.
async fn purge_sessions(pool: PgPool, idle: chrono::Duration) {
    match crate::auth::session::purge_expired(&pool, idle).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions removed"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "removing expired sessions failed"),
    }
}

/// Removes objects that no file row references once they are older than the grace period
/// (uploads whose row never landed). The collection itself also holds an advisory lock,
/// so a run that outlasts its interval is never joined by the next.
async fn collect_orphans(pool: PgPool, store: Store, grace: Duration) {
    if let Err(e) = crate::storage::gc::run_once(&pool, &store, grace).await {
        tracing::warn!(error = %e, "object garbage collection failed");
    }
}

/// Expires pending requests and grants whose time has come (bookkeeping only: a grant
/// stops working at `valid_until` whether or not this has run).
async fn expire_requests(pool: PgPool) {
    match crate::requests::expire_due(&crate::tx::Db::new(pool)).await {
        Ok((r, g)) if r + g > 0 => tracing::info!(requests = r, grants = g, "expired"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "expiring requests and grants failed"),
    }
}

/// Signs the chain's head into a checkpoint if it moved.
/// Scrubs the store when the last recorded run is older than the interval (a node that
/// restarts does not scrub again at once).
async fn scrub(pool: PgPool, store: Store, config: Config) {
    if let Err(e) = crate::storage::scrub::run_once(&pool, &store, &config).await {
        tracing::warn!(error = %e, "scrub failed");
    }
}

async fn write_checkpoint(checkpoints: Checkpointer) {
    if let Err(e) = checkpoints.write_if_moved().await {
        tracing::warn!(error = %e, "writing the audit checkpoint failed");
    }
}
