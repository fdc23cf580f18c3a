//! The `strongroom` command line. Start-up and one-shot commands use `anyhow`; request
//! paths never do.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::audit::checkpoint::{AuditSigner, PublicKey};
use crate::audit::{self, Actor, Verification};
use crate::config::{Config, Overrides};
use crate::db::Database;
use crate::users::{self, NewUser, Role};

mod scrub;

#[derive(Parser, Debug)]
#[command(
    name = "strongroom",
    version,
    about = "Strongroom: a secure document-archive vault"
)]
pub struct Cli {
    /// Data directory (default ./strongroom-data, or STRONGROOM_DATA_DIR).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the server (on the embedded PostgreSQL unless DATABASE_URL is set).
    Serve {
        #[arg(long)]
        address: Option<std::net::IpAddr>,
        #[arg(long)]
        port: Option<u16>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Walk the audit chain; exit 0 when intact, 1 naming the first broken event.
    VerifyAudit {
        /// Also check the chain against the signed checkpoints in the object store: exit 1
        /// naming the gap when events a checkpoint covers are missing or differ, or when a
        /// checkpoint's signature does not verify.
        #[arg(long)]
        checkpoints: bool,
        /// A trusted public key (64 hex digits, as `audit-public-key` prints); repeat for
        /// earlier keys. Default: the key of the audit signing key file.
        #[arg(long = "public-key", value_name = "HEX", requires = "checkpoints")]
        public_key: Vec<String>,
    },
    /// Print the public key (hex) that verifies the audit checkpoints, creating the audit
    /// signing key file if there is none yet.
    AuditPublicKey,
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// File a digitization batch from a CSV (and a directory of scans). Every row is
    /// checked first; rejected rows are listed with the reason; a re-run skips rows
    /// already filed (by `external_id`). Exit 1 when any row was rejected.
    Import {
        #[arg(long)]
        csv: PathBuf,
        /// Directory holding the files named in the `files` column.
        #[arg(long)]
        files: Option<PathBuf>,
        /// Code of the category to file into.
        #[arg(long)]
        category: String,
        /// The archivist the records are filed as.
        #[arg(long = "as", value_name = "USERNAME")]
        as_user: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 200)]
        batch_size: usize,
        /// Check every row and report, but file nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write an encrypted, authenticated backup of the vault (one snapshot of the
    /// database and every object it names) while the server keeps serving; or, with
    /// `verify FILE`, check a backup completely without restoring it.
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(subcommand)]
        action: Option<BackupCommand>,
        /// The file to write (must not exist).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Restore a backup into an empty data dir or database (the vault's master.key must
    /// be in place): the whole file is verified before anything is written.
    Restore {
        #[arg(long)]
        from: PathBuf,
    },
    /// Add a key-encryption key and re-wrap every data key and sealed field value under
    /// it, in batches, while the server serves (resumable); or retire an old key.
    RotateKeys {
        /// Retire this key: refused while anything still uses it, and for the active key.
        #[arg(long, value_name = "KEY_ID", conflicts_with = "resume")]
        retire: Option<String>,
        /// Add no key: only move what is not under the active key yet.
        #[arg(long)]
        resume: bool,
        /// Rows per transaction.
        #[arg(long, default_value_t = crate::rotation::DEFAULT_BATCH)]
        batch_size: usize,
    },
    /// Decrypt and check every stored file, find missing and unreferenced objects; exit 0
    /// with "scrub OK: N files verified", else 1 naming each damaged or missing file.
    Scrub {
        /// Read rate in MiB of content per second (default: the `scrub_rate_mib_per_sec`
        /// setting); 0: unlimited.
        #[arg(long, value_name = "MIB_PER_SEC")]
        rate: Option<u32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Check every checksum and the audit chain inside; exit 0 with counts, else 1 naming
    /// what is wrong. Touches no database.
    Verify { file: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Load and validate the policy files; exit 1 naming the file, line and reason of the
    /// first error.
    Check {
        /// The policy directory (default: the `policies` setting).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; the password is read from standard input.
    Add {
        #[arg(long)]
        username: String,
        /// One or more of archivist, employee, supervisor, auditor, admin (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        role: Vec<Role>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Make the person choose a new password at first sign-in.
        #[arg(long)]
        must_change_password: bool,
    },
    /// Disable an account and end its sessions at once; the person's pending requests are
    /// cancelled, grants revoked and loans out flagged to the loans desk.
    Disable {
        #[arg(long)]
        username: String,
        /// Who takes over, or anything else the handover should record.
        #[arg(long)]
        handover_note: Option<String>,
    },
    /// Set a new password (from standard input, or generated and printed once); the
    /// person must change it at next sign-in.
    ResetPassword {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

fn read_password_stdin() -> anyhow::Result<SecretString> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        bail!("no password on standard input");
    }
    Ok(SecretString::from(pw))
}

/// Who acts on the command line: the operating-system account, for the audit trail.
pub(crate) fn cli_actor() -> Actor {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor::system(&format!("cli:{who}"))
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let mut overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        ..Default::default()
    };
    if let Command::Serve { address, port } = &cli.command {
        overrides.address = *address;
        overrides.port = *port;
    }
    let config = Config::load(&overrides)?;
    crate::telemetry::init(config.log_format, &config.log_level, std::io::stderr);
    match cli.command {
        Command::Serve { .. } => serve(config).await.map(|_| 0),
        Command::Migrate => {
            let split = crate::db::prepare_runtime_role(&config).await?;
            let db = Database::open(&config, 2).await?;
            let r = db.migrate().await;
            db.close().await?;
            r?;
            println!("migrations applied");
            match split {
                crate::db::Split::Configured => {}
                crate::db::Split::Ready {
                    role,
                    password_file,
                } => println!(
                    "the server connects as the runtime role {role} (password in {}); \
                     it may not alter the audit trail",
                    password_file.display()
                ),
                crate::db::Split::NotPossible { role } => eprintln!(
                    "warning: the role {role} may not create roles, so the server will connect \
                     as {role}, which owns the tables and could rewrite the audit trail. Create \
                     a runtime role by hand and set DATABASE_OWNER_URL (see README, Database roles)."
                ),
            }
            Ok(0)
        }
        Command::User(cmd) => with_db(&config, |pool| user_command(pool, cmd)).await,
        Command::Policy(PolicyCommand::Check { policies }) => {
            let dir = policies.unwrap_or_else(|| config.policies.clone());
            if !dir.is_dir() {
                eprintln!("policy check: {} is not a directory", dir.display());
                return Ok(1);
            }
            let access = match crate::policy::Policies::load(&dir) {
                Ok(p) => p,
                Err(e) => {
                    println!("{e}");
                    return Ok(1);
                }
            };
            let workflows = match crate::requests::Workflows::load(&dir)
                .and_then(|w| w.check_against(&access).map(|()| w))
            {
                Ok(w) => w,
                Err(e) => {
                    println!("{e}");
                    return Ok(1);
                }
            };
            match crate::records::masking::MaskingPolicy::load(&dir) {
                Ok(m) => {
                    println!("{}: OK", access.origin());
                    println!("{}: OK", workflows.source.display());
                    println!("{}: OK", m.source.display());
                    Ok(0)
                }
                Err(e) => {
                    println!("{e}");
                    Ok(1)
                }
            }
        }
        Command::Import {
            csv,
            files,
            category,
            as_user,
            batch_size,
            dry_run,
        } => {
            let vault = open_vault(&config)?;
            let cfg = config.clone();
            with_db(&config, |pool| async move {
                let opts = crate::records::import::Options {
                    csv,
                    files_dir: files,
                    category,
                    batch_size,
                    dry_run,
                };
                import(cfg, pool, vault, &as_user, opts).await
            })
            .await
        }
        Command::Backup { action, out } => crate::backup::cli::backup(&config, action, out).await,
        Command::Restore { from } => crate::backup::cli::restore(&config, &from).await,
        Command::RotateKeys {
            retire,
            resume,
            batch_size,
        } => {
            let keys = crate::crypto::KeyRing::open(&config.master_key_path()).context(
                "loading the master key (setting `master_key_file`, or STRONGROOM_MASTER_KEY)",
            )?;
            let opts = crate::rotation::command::Options {
                resume,
                retire,
                batch_size,
            };
            with_db(&config, |pool| {
                crate::rotation::command::run(pool, keys, cli_actor(), opts)
            })
            .await
        }
        Command::AuditPublicKey => {
            let path = config.audit_signing_key_path();
            let signer = AuditSigner::load_or_create(&path)
                .context("loading the audit signing key (setting `audit_signing_key_file`)")?;
            println!("{}", signer.public_key().hex());
            eprintln!(
                "audit checkpoint public key, id {} (signing key file {})",
                signer.public_key().id(),
                path.display()
            );
            Ok(0)
        }
        Command::VerifyAudit {
            checkpoints: true,
            public_key,
        } => {
            let trusted = trusted_keys(&config, &public_key)?;
            let store = crate::storage::Store::from_settings(
                config.object_store.as_deref(),
                &config.data_dir,
            )
            .context("opening the object store (setting `object_store`)")?;
            with_db(&config, |pool| async move {
                audit::sequence_all(&pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let v = audit::verify(&pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("{v}");
                let report = audit::checkpoint::verify(&pool, &store, &trusted).await?;
                println!("{report}");
                Ok(match v {
                    Verification::Intact { .. } if report.ok() => 0,
                    _ => 1,
                })
            })
            .await
        }
        Command::Scrub { rate } => {
            let vault = open_vault(&config)?;
            let cfg = config.clone();
            with_db(&config, |pool| {
                scrub::run(cfg, pool, vault, rate, cli_actor())
            })
            .await
        }
        Command::VerifyAudit {
            checkpoints: false, ..
        } => {
            with_db(&config, |pool| async move {
                // Chain what is committed first (as a serving node would within a second),
                // so the verdict covers every finished action.
                audit::sequence_all(&pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let v = audit::verify(&pool)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("{v}");
                Ok(match v {
                    Verification::Intact { .. } => 0,
                    Verification::Broken { .. } => 1,
                })
            })
            .await
        }
    }
}

/// The public keys `verify-audit --checkpoints` trusts: those given, or the one of the
/// audit signing key file (which is never created here).
fn trusted_keys(config: &Config, given: &[String]) -> anyhow::Result<Vec<PublicKey>> {
    if !given.is_empty() {
        return given
            .iter()
            .map(|k| PublicKey::from_hex(k).context("--public-key"))
            .collect();
    }
    let path = config.audit_signing_key_path();
    match AuditSigner::load(&path)? {
        Some(signer) => Ok(vec![*signer.public_key()]),
        None => bail!(
            "no audit signing key at {}: pass --public-key HEX or set `audit_signing_key_file`",
            path.display()
        ),
    }
}

/// Opens the database (migrated), runs `f`, and closes it again, stopping the embedded
/// cluster if this command had to start it.
async fn with_db<F, Fut>(config: &Config, f: F) -> anyhow::Result<i32>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    let db = Database::open(config, 4).await?;
    let result = match db.migrate().await {
        Ok(()) => f(db.pool.clone()).await,
        Err(e) => Err(e),
    };
    db.close().await?;
    result
}

async fn user_command(pool: sqlx::PgPool, cmd: UserCommand) -> anyhow::Result<i32> {
    let actor = cli_actor();
    let err = |e: crate::error::AppError| anyhow::anyhow!("{}", e.public_message());
    // One command hashes one password: a gate of one, waited on as long as it takes.
    let hasher = crate::auth::password::Hasher::new(1, std::time::Duration::from_secs(600));
    match cmd {
        UserCommand::Add {
            username,
            role,
            department,
            display_name,
            password_stdin: _,
            must_change_password,
        } => {
            let password = read_password_stdin()?;
            let u = users::create_by_operator(
                &pool,
                &hasher,
                &actor,
                NewUser {
                    username,
                    display_name,
                    department,
                    roles: role,
                    password,
                    must_change_password,
                },
            )
            .await
            .map_err(err)?;
            println!("created account {} ({})", u.username, u.id);
        }
        UserCommand::Disable {
            username,
            handover_note,
        } => {
            let u = users::find_by_username(&pool, &username)
                .await
                .map_err(err)?
                .with_context(|| format!("no account named {username}"))?;
            let (_, s) = users::disable_by_operator(&pool, &actor, u.id, handover_note.as_deref())
                .await
                .map_err(err)?;
            println!("disabled account {} and ended its sessions", u.username);
            println!(
                "settled: {} pending requests cancelled, {} grants revoked, {} loans out flagged to the loans desk",
                s.cancelled_requests.len(),
                s.revoked_grants.len(),
                s.flagged_loans.len()
            );
        }
        UserCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            let u = users::find_by_username(&pool, &username)
                .await
                .map_err(err)?
                .with_context(|| format!("no account named {username}"))?;
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, false)
            } else {
                (crate::auth::password::generate(), true)
            };
            users::reset_password(&pool, &hasher, &actor, u.id, password.clone())
                .await
                .map_err(err)?;
            if generated {
                println!(
                    "one-time password for {}: {}",
                    u.username,
                    secrecy::ExposeSecret::expose_secret(&password)
                );
            }
            println!(
                "password reset for {}; it must be changed at next sign-in",
                u.username
            );
        }
    }
    Ok(0)
}

/// The key ring and object store of the configured data dir.
pub fn open_vault(config: &Config) -> anyhow::Result<crate::Vault> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let keys = crate::crypto::KeyRing::open(&config.master_key_path())
        .context("loading the master key (setting `master_key_file`)")?;
    let store =
        crate::storage::Store::from_settings(config.object_store.as_deref(), &config.data_dir)
            .context("opening the object store (setting `object_store`)")?;
    let workflows = crate::requests::Workflows::load(&config.policies)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let policies = crate::policy::Policies::load(&config.policies)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let masking = crate::records::masking::MaskingPolicy::load(&config.policies)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    workflows
        .check_against(&policies)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    Ok(crate::Vault {
        store,
        keys,
        workflows,
        policies,
        masking,
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Keys and store first: a bad setting must stop the start before anything else runs.
    let vault = open_vault(&config)?;
    let signer = AuditSigner::load_or_create(&config.audit_signing_key_path())
        .context("loading the audit signing key (setting `audit_signing_key_file`)")?;
    let db = Database::open(&config, 16).await?;
    let result = serve_on(&config, &db, vault, signer).await;
    db.close().await?;
    result
}

async fn serve_on(
    config: &Config,
    db: &Database,
    vault: crate::Vault,
    signer: AuditSigner,
) -> anyhow::Result<()> {
    db.migrate().await?;
    db.warn_if_privileged().await?;
    // Data migrations that need the keys, each once, after the SQL migrations.
    if let Some(r) =
        crate::records::phones::reindex(&crate::tx::Db::new(db.pool.clone()), &vault.keys)
            .await
            .map_err(|e| anyhow::anyhow!("re-indexing phone numbers: {e}"))?
    {
        tracing::info!(
            reindexed = r.reindexed,
            resealed = r.resealed,
            unparsable = r.unparsable,
            "phone numbers re-indexed by their E.164 form"
        );
    }
    let url = format!("http://{}:{}", config.address, config.port);
    if let Some(password) = users::bootstrap_admin(
        &db.pool,
        &crate::auth::password::Hasher::from_config(config),
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the first administrator: {e}"))?
    {
        // Printed once, on the terminal only: never through tracing.
        println!();
        println!("  First start: created the administrator account.");
        println!("    username: admin");
        println!(
            "    one-time password: {}",
            secrecy::ExposeSecret::expose_secret(&password)
        );
        println!("  Sign in at {url}/login; you will be asked to choose a new password.");
        println!();
    }
    let jobs = crate::jobs::start(&db.pool, &vault.store, config, std::sync::Arc::new(signer));
    let rocket = crate::build(config.clone(), db.pool.clone(), vault);
    println!("Strongroom listening on {url}");
    if !std::io::stdout().is_terminal() {
        tracing::info!(%url, "listening");
    }
    let result = rocket.launch().await;
    jobs.stop().await;
    result.map(|_| ()).context("server failed")
}

struct Bar(indicatif::ProgressBar);

impl crate::records::import::Progress for Bar {
    fn start(&self, phase: &str, total: u64) {
        self.0.reset();
        self.0.set_length(total);
        self.0.set_message(phase.to_string());
        let style = if total == 0 {
            indicatif::ProgressStyle::with_template("{msg} {pos} rows [{elapsed}]")
        } else {
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} rows, eta {eta}")
        };
        if let Ok(style) = style {
            self.0.set_style(style.progress_chars("=> "));
        }
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}

async fn import(
    config: Config,
    pool: sqlx::PgPool,
    vault: crate::Vault,
    as_user: &str,
    opts: crate::records::import::Options,
) -> anyhow::Result<i32> {
    let user = users::find_by_username(&pool, as_user)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.public_message()))?
        .with_context(|| format!("no account named {as_user}"))?;
    let who = crate::auth::Principal::for_command_line(user)
        .map_err(|_| anyhow::anyhow!("the account {as_user} is disabled"))?;
    let app = crate::App {
        db: crate::tx::Db::new(pool),
        store: vault.store,
        keys: vault.keys,
        workflows: vault.workflows,
        policies: vault.policies,
        masking: vault.masking,
        hasher: crate::auth::password::Hasher::from_config(&config),
        viewer_cache: crate::viewer::cache::ViewerCache::from_config(&config),
        config,
        templates: crate::web::Templates::new().context("templates")?,
    };
    let bar = Bar(indicatif::ProgressBar::new(0));
    let report = crate::records::import::run(&app, &who, &opts, &bar)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.public_message()))?;
    bar.0.finish_and_clear();
    for r in &report.rejected {
        println!(
            "rejected line {} (external_id {}): {}",
            r.line, r.external_id, r.reason
        );
    }
    if opts.dry_run {
        println!(
            "checked {} rows: {} valid, {} rejected (dry run: nothing filed)",
            report.rows,
            report.rows - report.rejected.len() as u64,
            report.rejected.len()
        );
    } else {
        println!(
            "{} rows: {} filed ({} files), {} already filed before, {} rejected",
            report.rows,
            report.imported,
            report.files,
            report.already_imported,
            report.rejected.len()
        );
    }
    Ok(if report.rejected.is_empty() { 0 } else { 1 })
}
