//! The background jobs of a serving node, started and stopped in one place: the audit
//! sequencer, expiry of requests and grants, removal of dead sessions and collection of
//! orphaned objects. Each is safe to run on several nodes at once (advisory locks or
//! `SKIP LOCKED` inside the job).

use std::time::Duration;

use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::storage::Store;

/// The running jobs; [`Jobs::stop`] ends them and chains the last audit events.
pub struct Jobs {
    pool: PgPool,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts every background job of a serving node.
pub fn start(pool: &PgPool, store: &Store, config: &Config) -> Jobs {
    let grace = Duration::from_secs(u64::from(config.gc_grace_minutes) * 60);
    let tasks = vec![
        tokio::spawn(crate::audit::run_sequencer(pool.clone())),
        tokio::spawn(purge_sessions(pool.clone(), config.session_idle())),
        tokio::spawn(collect_orphans(pool.clone(), store.clone(), grace)),
        tokio::spawn(expire_requests(pool.clone())),
        tokio::spawn(crate::storage::scrub::every(
            pool.clone(),
            store.clone(),
            config.clone(),
        )),
    ];
    Jobs {
        pool: pool.clone(),
        tasks,
    }
}

impl Jobs {
    /// Stops the jobs, then chains what the last requests left (a clean stop leaves no
    /// event unchained).
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
    }
}

/// Removes dead sessions now and then; harmless to run on several nodes.
async fn purge_sessions(pool: PgPool, idle: chrono::Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        match crate::auth::session::purge_expired(&pool, idle).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "removing expired sessions failed"),
        }
    }
}

/// Removes objects that no file row references once they are older than the grace period
/// (uploads whose row never landed). Across several nodes only one runs at a time.
async fn collect_orphans(pool: PgPool, store: Store, grace: Duration) {
    let mut every = tokio::time::interval(Duration::from_secs(900));
    loop {
        every.tick().await;
        if let Err(e) = crate::storage::gc::run_once(&pool, &store, grace).await {
            tracing::warn!(error = %e, "object garbage collection failed");
        }
    }
}

/// Expires pending requests and grants whose time has come (bookkeeping only: a grant
/// stops working at `valid_until` whether or not this has run).
async fn expire_requests(pool: PgPool) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        match crate::requests::expire_due(&crate::tx::Db::new(pool.clone())).await {
            Ok((r, g)) if r + g > 0 => tracing::info!(requests = r, grants = g, "expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "expiring requests and grants failed"),
        }
    }
}
