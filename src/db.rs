//! Opening the database: the one named by `DATABASE_URL`, or the embedded private cluster
//! under the data dir. Migrations from `migrations/` are embedded in the binary.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::Config;
use crate::pg::{EmbeddedPg, StartOptions};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct Database {
    pub pool: PgPool,
    embedded: Option<EmbeddedPg>,
}

impl Database {
    pub async fn open(config: &Config, max_connections: u32) -> anyhow::Result<Database> {
        let (options, embedded) = match &config.database_url {
            Some(url) => (
                PgConnectOptions::from_str(url.expose_secret())
                    .context("setting `database_url` is not a valid PostgreSQL URL")?,
                None,
            ),
            None => {
                let opts = StartOptions {
                    bin_dir: config.pg_bin_dir.clone(),
                    settings: Vec::new(),
                };
                let pg = EmbeddedPg::ensure_running(&config.data_dir, &opts)
                    .await
                    .context("starting the embedded PostgreSQL cluster")?;
                (pg.connect_options("strongroom"), Some(pg))
            }
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.application_name("strongroom"))
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Database { pool, embedded })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("applying database migrations")
    }

    /// Closes the pool and stops the embedded cluster if this process owns it.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        if let Some(pg) = self.embedded {
            pg.stop()
                .await
                .context("stopping the embedded PostgreSQL cluster")?;
        }
        Ok(())
    }
}
