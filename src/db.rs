//! Opening the database: the one named by `DATABASE_URL`, or the embedded private cluster
//! under the data dir. Migrations from `migrations/` are embedded in the binary.
//!
//! Guarantees (least privilege):
//! * Migrations run as an owner role; the server and the commands connect as a runtime
//!   role that is not a superuser and owns nothing, so it cannot disable the audit
//!   triggers or alter the audit tables. The embedded default always works this way;
//!   with `DATABASE_URL` it does when `DATABASE_OWNER_URL` names the owner, or when
//!   `strongroom migrate` could create the runtime role itself.
//! * [`grant_runtime`] runs after every migration, so tables added later get their grants:
//!   every `audit_*` table only SELECT and INSERT, every other table SELECT, INSERT,
//!   UPDATE and DELETE; sequences USAGE; the owner's routines EXECUTE.
//! * Acquiring a connection gives up after a few seconds, so a request during a database
//!   outage answers 503 promptly; the pool reconnects by itself once PostgreSQL is back.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::Config;
use crate::pg::roles::{self, quote_ident};
use crate::pg::{EmbeddedPg, PgRole, StartOptions, DATABASE, RUNTIME_ROLE};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a request waits for a database connection before it answers 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a `DATABASE_URL` vault keeps the password of the runtime role `migrate` created.
pub const RUNTIME_PASSWORD_FILE: &str = "db-runtime.password";

/// The pool settings the server uses (the tests use them too).
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// Who runs migrations.
enum Migrations {
    /// A separate owner role; afterwards the runtime role `runtime` gets its grants.
    AsOwner {
        options: Box<PgConnectOptions>,
        runtime: String,
    },
    /// On the pool itself: `DATABASE_URL` alone, without a runtime role.
    OnPool,
}

pub struct Database {
    /// Connected as the runtime role (or, without a split, as the one configured role).
    pub pool: PgPool,
    migrations: Migrations,
    embedded: Option<EmbeddedPg>,
}

impl Database {
    pub async fn open(config: &Config, max_connections: u32) -> anyhow::Result<Database> {
        let (runtime, migrations, embedded) = match &config.database_url {
            Some(url) => {
                let url_options = parse_url(url, "database_url")?;
                let (runtime, migrations) = match &config.database_owner_url {
                    Some(owner_url) => {
                        let owner = parse_url(owner_url, "database_owner_url")?;
                        let runtime = url_options.get_username().to_owned();
                        if runtime == owner.get_username() {
                            bail!(
                                "settings `database_url` and `database_owner_url` name the same \
                                 role `{runtime}`; `database_url` must name the runtime role \
                                 (README: Database roles)"
                            );
                        }
                        let migrations = Migrations::AsOwner {
                            options: Box::new(owner),
                            runtime,
                        };
                        (url_options, migrations)
                    }
                    None => match runtime_split(config, &url_options)? {
                        Some((runtime_options, runtime)) => (
                            runtime_options,
                            Migrations::AsOwner {
                                options: Box::new(url_options),
                                runtime,
                            },
                        ),
                        None => (url_options, Migrations::OnPool),
                    },
                };
                (runtime, migrations, None)
            }
            None => {
                let opts = StartOptions {
                    bin_dir: config.pg_bin_dir.clone(),
                    settings: Vec::new(),
                };
                let pg = EmbeddedPg::ensure_running(&config.data_dir, &opts)
                    .await
                    .context("starting the embedded PostgreSQL cluster")?;
                let migrations = Migrations::AsOwner {
                    options: Box::new(pg.connect_options_as(PgRole::Owner, DATABASE)),
                    runtime: RUNTIME_ROLE.to_owned(),
                };
                (
                    pg.connect_options_as(PgRole::Runtime, DATABASE),
                    migrations,
                    Some(pg),
                )
            }
        };
        let pool = pool_options(max_connections)
            .connect_with(runtime.application_name("strongroom"))
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Database {
            pool,
            migrations,
            embedded,
        })
    }

    /// Applies the migrations as the owner role and re-applies the runtime role's grants.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.migrations {
            Migrations::OnPool => MIGRATOR
                .run(&self.pool)
                .await
                .context("applying database migrations"),
            Migrations::AsOwner { options, runtime } => {
                let mut conn = options
                    .as_ref()
                    .clone()
                    .application_name("strongroom-migrate")
                    .connect()
                    .await
                    .context("connecting to PostgreSQL as the owner role to migrate")?;
                let result = async {
                    MIGRATOR
                        .run(&mut conn)
                        .await
                        .context("applying database migrations")?;
                    grant_runtime(&mut conn, runtime)
                        .await
                        .context("granting the runtime role its privileges")
                }
                .await;
                let _ = conn.close().await;
                result
            }
        }
    }

    /// A connection as the role that owns the tables (the migrating role): backup reads
    /// every table and the migration history in one snapshot, restore loads them.
    pub async fn owner_connection(&self) -> anyhow::Result<PgConnection> {
        let options = match &self.migrations {
            Migrations::AsOwner { options, .. } => options.as_ref().clone(),
            Migrations::OnPool => self.pool.connect_options().as_ref().clone(),
        };
        options
            .application_name("strongroom-backup")
            .connect()
            .await
            .context("connecting to PostgreSQL as the owner role")
    }

    /// Whether this database is the embedded cluster under the data dir.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    /// Warns when the server's own connection could rewrite the audit trail: a superuser,
    /// or the role that owns the tables.
    pub async fn warn_if_privileged(&self) -> anyhow::Result<()> {
        let (user, superuser, owns): (String, bool, bool) = sqlx::query_as(
            "SELECT current_user::text, \
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
                    EXISTS (SELECT 1 FROM pg_class c \
                            JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname = current_schema() \
                              AND c.relkind IN ('r', 'p') \
                              AND pg_has_role(current_user, c.relowner, 'USAGE'))",
        )
        .fetch_one(&self.pool)
        .await
        .context("checking the privileges of the server's database role")?;
        if superuser || owns {
            tracing::warn!(
                target: "security",
                role = %user,
                superuser,
                owns_tables = owns,
                "the server connects to PostgreSQL as a role that could rewrite the audit trail; \
                 run `strongroom migrate` as a role that can create roles, or set \
                 DATABASE_OWNER_URL and point DATABASE_URL at a runtime role (README: Database roles)"
            );
        }
        Ok(())
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

/// What `strongroom migrate` did about the runtime role of a `DATABASE_URL` vault.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// The embedded cluster, or `database_owner_url` is set: nothing to do here.
    Configured,
    /// The runtime role exists (created now or before) and its password is in the data dir.
    Ready {
        role: String,
        password_file: PathBuf,
    },
    /// The connecting role may not create roles: everything runs as that one role.
    NotPossible { role: String },
}

/// For `DATABASE_URL` alone: creates (or refreshes) the runtime role `<database>_runtime`
/// with a random password kept 0600 in `DATA_DIR/db-runtime.password`, when the
/// connecting role may create roles. Run by `strongroom migrate` before it migrates.
pub async fn prepare_runtime_role(config: &Config) -> anyhow::Result<Split> {
    let Some(url) = &config.database_url else {
        return Ok(Split::Configured);
    };
    if config.database_owner_url.is_some() {
        return Ok(Split::Configured);
    }
    let options = parse_url(url, "database_url")?;
    let role = runtime_role_name(&options)?;
    let mut conn = options
        .clone()
        .application_name("strongroom-migrate")
        .connect()
        .await
        .context("connecting to PostgreSQL")?;
    let result: anyhow::Result<Split> = async {
        if !roles::can_create_roles(&mut conn).await? {
            return Ok(Split::NotPossible {
                role: options.get_username().to_owned(),
            });
        }
        let password_file = config.data_dir.join(RUNTIME_PASSWORD_FILE);
        let password = if password_file.exists() {
            crate::pg::read_password_file(&password_file, &config.data_dir)?
        } else {
            if roles::role_exists(&mut conn, &role).await? {
                bail!(
                    "the runtime role `{role}` already exists, but its password is not in {}; \
                     copy that file from the data directory of the vault that created the role, \
                     or drop the role so it is made afresh (README: Database roles)",
                    password_file.display()
                );
            }
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("creating the data directory {}", config.data_dir.display())
            })?;
            let password = crate::pg::generate_password();
            crate::pg::write_password_file(&password_file, &password)?;
            password
        };
        roles::ensure_login_role(&mut conn, &role, &password).await?;
        Ok(Split::Ready {
            role: role.clone(),
            password_file,
        })
    }
    .await;
    let _ = conn.close().await;
    result
}

/// The runtime connection of a `DATABASE_URL` vault whose runtime role `migrate` created:
/// the same server and database, as `<database>_runtime` with the password from the data dir.
fn runtime_split(
    config: &Config,
    url_options: &PgConnectOptions,
) -> anyhow::Result<Option<(PgConnectOptions, String)>> {
    let password_file = config.data_dir.join(RUNTIME_PASSWORD_FILE);
    if !password_file.exists() {
        return Ok(None);
    }
    let role = runtime_role_name(url_options)?;
    let password = crate::pg::read_password_file(&password_file, config.data_dir())?;
    let options = url_options
        .clone()
        .username(&role)
        .password(password.expose_secret());
    Ok(Some((options, role)))
}

/// `<database>_runtime`, shortened to PostgreSQL's 63-byte identifier limit.
fn runtime_role_name(options: &PgConnectOptions) -> anyhow::Result<String> {
    let database = options
        .get_database()
        .unwrap_or_else(|| options.get_username());
    let mut base: String = database.to_ascii_lowercase();
    base.truncate(63 - "_runtime".len());
    let name = format!("{base}_runtime");
    roles::checked_name(&name).with_context(|| {
        format!(
            "the runtime role is named after the database `{database}`; create it by hand and \
             set DATABASE_OWNER_URL (README: Database roles)"
        )
    })?;
    Ok(name)
}

fn parse_url(url: &SecretString, setting: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url.expose_secret())
        .with_context(|| format!("setting `{setting}` is not a valid PostgreSQL URL"))
}

/// Gives `runtime` exactly what the server needs on every table in the current schema, as
/// the role that owns them (run after every migration, so later tables are covered):
///
/// * tables whose name starts with `audit_`: SELECT and INSERT only (no UPDATE, DELETE,
///   TRUNCATE, REFERENCES or TRIGGER), also taken away from PUBLIC;
/// * every other table and view: SELECT, INSERT, UPDATE, DELETE;
/// * the migration bookkeeping table: nothing;
/// * sequences: USAGE and SELECT; the owner's functions and procedures: EXECUTE;
///   the schema: USAGE.
///
/// Runs in one transaction, so other nodes never see a table without its grants.
/// Does nothing when `runtime` is the connected role itself.
pub async fn grant_runtime(owner: &mut PgConnection, runtime: &str) -> anyhow::Result<()> {
    let me: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *owner)
        .await?;
    if me == runtime {
        return Ok(());
    }
    let who = quote_ident(runtime);
    let mut tx = owner.begin().await?;
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, format('%I.%I', n.nspname, c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
           AND pg_has_role(current_user, c.relowner, 'USAGE') \
         ORDER BY c.relname",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (name, qualified) in &tables {
        sqlx::query(&format!("REVOKE ALL ON TABLE {qualified} FROM {who}"))
            .execute(&mut *tx)
            .await?;
        let grant = if name.starts_with("audit_") {
            sqlx::query(&format!("REVOKE ALL ON TABLE {qualified} FROM PUBLIC"))
                .execute(&mut *tx)
                .await?;
            Some("SELECT, INSERT")
        } else if name.starts_with("_sqlx_") {
            None
        } else {
            Some("SELECT, INSERT, UPDATE, DELETE")
        };
        if let Some(privileges) = grant {
            sqlx::query(&format!("GRANT {privileges} ON TABLE {qualified} TO {who}"))
                .execute(&mut *tx)
                .await?;
        }
    }
    let sequences: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'S' \
           AND pg_has_role(current_user, c.relowner, 'USAGE')",
    )
    .fetch_all(&mut *tx)
    .await?;
    for seq in &sequences {
        sqlx::query(&format!("GRANT USAGE, SELECT ON SEQUENCE {seq} TO {who}"))
            .execute(&mut *tx)
            .await?;
    }
    let routines: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = current_schema() \
           AND pg_has_role(current_user, p.proowner, 'USAGE') \
           AND p.prokind IN ('f', 'p')",
    )
    .fetch_all(&mut *tx)
    .await?;
    for routine in &routines {
        sqlx::query(&format!("GRANT EXECUTE ON ROUTINE {routine} TO {who}"))
            .execute(&mut *tx)
            .await?;
    }
    let owns_schema: bool = sqlx::query_scalar(
        "SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace \
         WHERE nspname = current_schema()",
    )
    .fetch_one(&mut *tx)
    .await?;
    if owns_schema {
        sqlx::query(&format!(
            "GRANT USAGE ON SCHEMA {} TO {who}",
            quote_ident(&current_schema(&mut tx).await?)
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn current_schema(conn: &mut PgConnection) -> sqlx::Result<String> {
    sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(conn)
        .await
}
