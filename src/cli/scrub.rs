//! `strongroom scrub`: one integrity scrub from the command line, recorded and audited like
//! the background job's, its verdict printed one problem per line.

use crate::audit::Actor;
use crate::config::Config;
use crate::storage::scrub::{self, Options};
use crate::tx::Db;

pub(super) async fn run(
    config: Config,
    pool: sqlx::PgPool,
    vault: crate::Vault,
    rate: Option<u32>,
    actor: Actor,
) -> anyhow::Result<i32> {
    let mut opts = Options::from_config(&config);
    if let Some(mib) = rate {
        opts.rate_limit_bytes_per_sec = scrub::rate_from_mib(mib);
    }
    let db = Db::new(pool.clone());
    let origin = actor.name.clone();
    let report = match scrub::run(&pool, &vault.store, &vault.keys, &opts).await {
        Ok(r) => r,
        Err(e) => {
            let message = e.to_string();
            scrub::record_failure(&db, &actor, &origin, &message)
                .await
                .map_err(|a| anyhow::anyhow!("{a}"))?;
            anyhow::bail!("scrub could not finish: {message}");
        }
    };
    scrub::record(&db, &actor, &origin, &report)
        .await
        .map_err(|e| anyhow::anyhow!("recording the scrub: {e}"))?;
    for p in &report.problems {
        if p.is_failure() {
            println!("{p}");
        } else {
            println!("warning: {p}");
        }
    }
    println!("{}", report.verdict());
    Ok(if report.is_clean() { 0 } else { 1 })
}
