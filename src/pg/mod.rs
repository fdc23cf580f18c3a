//! A private PostgreSQL cluster for a vault that has no `DATABASE_URL`.
//!
//! Guarantees:
//! * The cluster lives in `DATA_DIR/pg` and is created by one complete `initdb` run:
//!   initdb works in a staging directory that is renamed into place only on success,
//!   so a failed or interrupted first run leaves nothing half-made behind.
//! * The server listens on no TCP port at all, only on a Unix socket in
//!   `DATA_DIR/pg-socket` (0700). Settings that could change that are rejected.
//! * Every connection needs the superuser password (scram-sha-256, also on the socket).
//!   The password is 32 random bytes, kept in `DATA_DIR/pg-superuser.password`
//!   (0600, owned by the vault's account), handed to initdb through a pipe and held in
//!   memory as a `SecretString`; it is never logged or put in an error message.
//! * PostgreSQL never runs as root: when we are root, initdb and pg_ctl run as the
//!   `postgres` system account, which owns only the cluster and socket directories.
//! * At most one server runs per data directory. `pg.start.lock` serialises the
//!   check-and-start sequence of concurrent commands; `pg.owner.lock` is held by the
//!   one process responsible for stopping the server, so other commands connect to it
//!   without owning it, and a server whose owner died (e.g. `kill -9`) is adopted.
//! * A server that crashed is restarted, retrying while its dying children still hold
//!   its shared memory.
//! * The vault's database belongs to an owner role (`strongroom_owner`) that runs the
//!   migrations; the server connects as a runtime role (`strongroom_runtime`) that owns
//!   nothing. Neither is a superuser. Their random passwords are kept like the superuser's,
//!   in `DATA_DIR/pg-owner.password` and `DATA_DIR/pg-runtime.password` (0600), and are
//!   (re)applied on every start. A database made before the split is handed over to the
//!   owner role on start.

mod account;
mod bins;
mod error;
mod files;
pub mod roles;
mod server;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};

use account::Account;
use files::Paths;
use server::{PidFile, PORT, SUPERUSER};

pub use bins::{find_bin_dir, find_bin_dir_in, DEFAULT_ROOTS};
pub use error::{PgError, BIN_DIR_ENV};
pub use roles::{OWNER_ROLE, RUNTIME_ROLE};

/// Password files for roles kept outside the embedded cluster (a `DATABASE_URL` vault's
/// runtime role): 0600, written atomically, never logged.
pub(crate) use files::{generate_password, read_password_file, write_password_file};

/// The application database created inside the cluster.
pub const DATABASE: &str = "strongroom";

/// How long a running server may refuse connections (e.g. during crash recovery)
/// before we report it instead of waiting on.
const ACCEPT_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which role a connection to the embedded cluster signs in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    /// The cluster's bootstrap superuser: setting up roles and databases only.
    Superuser,
    /// Owns the vault's tables; runs migrations and grants.
    Owner,
    /// What the server and the commands connect as.
    Runtime,
}

#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Directory with initdb, pg_ctl and postgres; searched for when `None`.
    pub bin_dir: Option<PathBuf>,
    /// Extra `-c key=value` server settings, e.g. `fsync=off` for tests. Settings that
    /// control where the server listens are refused.
    pub settings: Vec<(String, String)>,
}

/// A running private cluster, owned by this process or shared with the process that owns it.
///
/// Dropping it without [`EmbeddedPg::stop`] leaves the server running and releases
/// ownership; the next [`EmbeddedPg::ensure_running`] adopts it.
pub struct EmbeddedPg {
    paths: Paths,
    bin_dir: PathBuf,
    account: Account,
    password: SecretString,
    owner_password: SecretString,
    runtime_password: SecretString,
    owner_lock: Option<Flock<File>>,
}

impl std::fmt::Debug for EmbeddedPg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPg")
            .field("cluster_dir", &self.paths.cluster_dir)
            .field("socket_dir", &self.paths.socket_dir)
            .field("bin_dir", &self.bin_dir)
            .field("owns_cluster", &self.owns_cluster())
            .finish_non_exhaustive()
    }
}

enum Probe {
    Running,
    Stopped,
}

impl EmbeddedPg {
    /// Creates the cluster on first use, starts it if it is not running, or connects to
    /// the one already running on this data dir. Also creates the `strongroom` database.
    pub async fn ensure_running(
        data_dir: &Path,
        opts: &StartOptions,
    ) -> Result<EmbeddedPg, PgError> {
        server::validate_settings(&opts.settings)?;
        let bin_dir = find_bin_dir(opts.bin_dir.as_deref())?;
        let account = Account::detect()?;

        // Check before creating anything, and again once symlinks are resolved.
        let absolute = std::path::absolute(data_dir)
            .map_err(|e| PgError::io("resolve data directory", data_dir, e))?;
        Paths::new(absolute).validate(PORT)?;
        let paths = Paths::new(files::prepare_data_dir(data_dir, &account)?);
        paths.validate(PORT)?;

        let start_lock = files::lock_exclusive(&paths.start_lock).await?;

        if !paths.cluster_dir.join("PG_VERSION").exists() {
            let no_sync = opts.settings.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("fsync")
                    && matches!(
                        v.to_ascii_lowercase().as_str(),
                        "off" | "false" | "0" | "no"
                    )
            });
            create_cluster(&paths, &account, &bin_dir, no_sync).await?;
        }
        let password = files::read_password_file(&paths.password_file, &paths.cluster_dir)?;
        let owner_password = role_password(&paths.owner_password_file, &paths.cluster_dir)?;
        let runtime_password = role_password(&paths.runtime_password_file, &paths.cluster_dir)?;
        server::check_version(&paths, &account, &bin_dir).await?;

        let mut pg = EmbeddedPg {
            paths,
            bin_dir,
            account,
            password,
            owner_password,
            runtime_password,
            owner_lock: None,
        };

        match pg.probe().await? {
            Probe::Running => {
                pg.owner_lock = files::try_lock_exclusive(&pg.paths.owner_lock)?;
                if pg.owner_lock.is_some() {
                    tracing::info!(cluster = %pg.paths.cluster_dir.display(), "adopting PostgreSQL left running by a previous owner");
                } else {
                    tracing::debug!(cluster = %pg.paths.cluster_dir.display(), "using PostgreSQL owned by another strongroom process");
                }
            }
            Probe::Stopped => {
                files::ensure_private_dir(&pg.paths.socket_dir, &pg.account)?;
                let options = server::server_options(&pg.paths, &opts.settings);
                server::start(&pg.paths, &pg.account, &pg.bin_dir, &options).await?;
                pg.owner_lock = files::try_lock_exclusive(&pg.paths.owner_lock)?;
                if pg.owner_lock.is_none() {
                    // Its owner is alive but lost its server; it will stop this one on exit.
                    tracing::warn!(cluster = %pg.paths.cluster_dir.display(), "started PostgreSQL, but another strongroom process owns it");
                }
                tracing::info!(cluster = %pg.paths.cluster_dir.display(), "PostgreSQL started");
            }
        }

        if let Err(e) = pg.ensure_database().await {
            if pg.owns_cluster() {
                if let Err(stop_err) = server::stop(&pg.paths, &pg.account, &pg.bin_dir).await {
                    tracing::error!(error = %stop_err, "could not stop PostgreSQL after a failed start");
                }
            }
            return Err(e);
        }
        drop(start_lock);
        Ok(pg)
    }

    /// Connection options for `database` over the private socket as the superuser.
    /// They contain the password: do not log them (`Debug` would print it).
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        self.connect_options_as(PgRole::Superuser, database)
    }

    /// Connection options for `database` over the private socket as `role`.
    /// They contain the password: do not log them (`Debug` would print it).
    pub fn connect_options_as(&self, role: PgRole, database: &str) -> PgConnectOptions {
        let (user, password) = match role {
            PgRole::Superuser => (SUPERUSER, &self.password),
            PgRole::Owner => (OWNER_ROLE, &self.owner_password),
            PgRole::Runtime => (RUNTIME_ROLE, &self.runtime_password),
        };
        PgConnectOptions::new_without_pgpass()
            .host(&self.paths.socket_dir.to_string_lossy())
            .socket(&self.paths.socket_dir)
            .port(PORT)
            .username(user)
            .password(password.expose_secret())
            .database(database)
            .ssl_mode(PgSslMode::Disable)
    }

    /// True when this process started (or adopted) the cluster and must stop it.
    pub fn owns_cluster(&self) -> bool {
        self.owner_lock.is_some()
    }

    /// Shuts the server down cleanly (fast mode) if this process owns it; otherwise only
    /// lets go of it.
    pub async fn stop(mut self) -> Result<(), PgError> {
        let Some(owner_lock) = self.owner_lock.take() else {
            return Ok(());
        };
        // Holding the start lock keeps a concurrent ensure_running from seeing a
        // half-stopped server and starting one it could not own.
        let start_lock = files::lock_exclusive(&self.paths.start_lock).await?;
        let result = server::stop(&self.paths, &self.account, &self.bin_dir).await;
        drop(owner_lock);
        drop(start_lock);
        if result.is_ok() {
            tracing::info!(cluster = %self.paths.cluster_dir.display(), "PostgreSQL stopped");
        }
        result
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.paths.cluster_dir
    }

    pub fn socket_dir(&self) -> &Path {
        &self.paths.socket_dir
    }

    /// For test harnesses: starts a watchdog that, once the calling process exits for
    /// any reason, shuts the cluster down (immediate mode) and removes `remove_dir`.
    ///
    /// The watchdog waits for EOF on its stdin, a pipe whose only writer is the returned
    /// `Child`; keep it alive for as long as the cluster should run. Dropping it (or its
    /// stdin) triggers the shutdown at once. The watchdog signals the postmaster named by
    /// postmaster.pid at that moment (what `pg_ctl stop -m immediate` does), so it also
    /// covers a server restarted meanwhile, and it needs no account switch.
    pub fn stop_on_process_exit(
        &self,
        remove_dir: Option<&Path>,
    ) -> Result<std::process::Child, PgError> {
        const SCRIPT: &str = r#"
read -r _ignored
pidfile="$1"; remove="$2"; pid=
[ -r "$pidfile" ] && read -r pid < "$pidfile"
case "$pid" in ''|*[!0-9]*) pid= ;; esac
if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
  i=0
  while [ $i -lt 300 ] && kill -0 "$pid" 2>/dev/null; do
    case "$(cat /proc/$pid/stat 2>/dev/null)" in *") Z "*) break ;; esac
    sleep 0.1 2>/dev/null || sleep 1
    i=$((i+1))
  done
fi
[ -n "$remove" ] && rm -rf -- "$remove"
exit 0
"#;
        use std::os::unix::process::CommandExt;
        let remove = remove_dir.map(Path::as_os_str).unwrap_or_default();
        std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("strongroom-pg-watchdog")
            .arg(&self.paths.pid_file)
            .arg(remove)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so a Ctrl-C aimed at the caller does not kill the
            // watchdog before it has cleaned up.
            .process_group(0)
            .spawn()
            .map_err(|e| PgError::Spawn {
                program: PathBuf::from("/bin/sh"),
                source: e,
            })
    }

    /// Running means: postmaster.pid names a live postgres process that accepts our
    /// connection. A live server that is still recovering is waited for.
    async fn probe(&self) -> Result<Probe, PgError> {
        let pid = match server::read_pid_file(&self.paths.pid_file)? {
            PidFile::Pid(pid) if server::pid_alive(pid) && server::looks_like_postgres(pid) => pid,
            _ => return Ok(Probe::Stopped),
        };
        let deadline = Instant::now() + ACCEPT_WAIT;
        loop {
            let detail = match self.connect("postgres").await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(Probe::Running);
                }
                Err(e) if is_transient(&e) => e.to_string(),
                Err(e) => {
                    return Err(PgError::Sql {
                        action: "connect to the running server",
                        socket_dir: self.paths.socket_dir.clone(),
                        source: e,
                    })
                }
            };
            if !server::pid_alive(pid) {
                return Ok(Probe::Stopped);
            }
            if Instant::now() >= deadline {
                return Err(PgError::NotAccepting {
                    pid,
                    cluster_dir: self.paths.cluster_dir.clone(),
                    detail,
                    log: self.paths.log_file.clone(),
                    log_tail: files::tail(&self.paths.log_file, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn connect(&self, database: &str) -> Result<PgConnection, sqlx::Error> {
        let opts = self.connect_options(database);
        match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
            Ok(result) => result,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting timed out",
            ))),
        }
    }

    /// Creates (or repairs) the owner and runtime roles with the passwords from their files,
    /// the `strongroom` database owned by the owner role, and hands over whatever an older
    /// release left owned by the superuser.
    async fn ensure_database(&self) -> Result<(), PgError> {
        let sql_err = |action| {
            let socket_dir = self.paths.socket_dir.clone();
            move |source| PgError::Sql {
                action,
                socket_dir,
                source,
            }
        };
        let role_err = |e: roles::RoleError| PgError::Roles {
            socket_dir: self.paths.socket_dir.clone(),
            source: e,
        };
        let mut conn = self
            .connect("postgres")
            .await
            .map_err(sql_err("connect to the maintenance database"))?;
        roles::ensure_login_role(&mut conn, OWNER_ROLE, &self.owner_password)
            .await
            .map_err(role_err)?;
        roles::ensure_login_role(&mut conn, RUNTIME_ROLE, &self.runtime_password)
            .await
            .map_err(role_err)?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await
                .map_err(sql_err("look up the strongroom database"))?;
        if !exists {
            // DATABASE and OWNER_ROLE are constant identifiers; CREATE DATABASE takes no
            // bind parameters.
            let created = sqlx::query(&format!("CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}"))
                .execute(&mut conn)
                .await;
            match created {
                Ok(_) => tracing::info!("created database {DATABASE}"),
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
                Err(e) => return Err(sql_err("create the strongroom database")(e)),
            }
        }
        let _ = conn.close().await;

        let mut conn = self
            .connect(DATABASE)
            .await
            .map_err(sql_err("connect to the strongroom database"))?;
        roles::hand_over_to_owner(&mut conn, OWNER_ROLE)
            .await
            .map_err(role_err)?;
        let _ = conn.close().await;
        Ok(())
    }
}

/// The password of a role of the cluster: read from its file, or made and saved on first use
/// (also for clusters created before the role existed).
fn role_password(path: &Path, cluster_dir: &Path) -> Result<SecretString, PgError> {
    match files::read_password_file(path, cluster_dir) {
        Ok(p) => Ok(p),
        Err(PgError::PasswordFileMissing { .. }) => {
            let password = files::generate_password();
            files::write_password_file(path, &password)?;
            Ok(password)
        }
        Err(e) => Err(e),
    }
}

/// Errors that mean "not ready yet" rather than "wrong": no socket, refused, or the
/// server saying it is starting up or recovering (57P03).
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57P03"),
        _ => false,
    }
}

async fn create_cluster(
    paths: &Paths,
    account: &Account,
    bin_dir: &Path,
    no_sync: bool,
) -> Result<(), PgError> {
    match std::fs::read_dir(&paths.cluster_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(PgError::NotACluster {
                    path: paths.cluster_dir.clone(),
                });
            }
            std::fs::remove_dir(&paths.cluster_dir)
                .map_err(|e| PgError::io("remove empty", &paths.cluster_dir, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PgError::io("inspect", &paths.cluster_dir, e)),
    }
    tracing::info!(cluster = %paths.cluster_dir.display(), "creating the PostgreSQL cluster");
    files::remove_dir_if_exists(&paths.staging_dir)?;
    let password = files::generate_password();
    files::write_password_file(&paths.password_file, &password)?;
    files::ensure_private_dir(&paths.staging_dir, account)?;
    server::initdb(paths, account, bin_dir, &password, no_sync).await?;

    // Also in the configuration file, so that a server started by hand (without our
    // -c options) does not open a TCP port either.
    let conf = paths.staging_dir.join("postgresql.conf");
    let appended = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(b"\n# strongroom: Unix socket only\nlisten_addresses = ''\n")
        });
    if let Err(e) = appended {
        let _ = files::remove_dir_if_exists(&paths.staging_dir);
        return Err(PgError::io("configure", conf, e));
    }

    std::fs::rename(&paths.staging_dir, &paths.cluster_dir)
        .map_err(|e| PgError::io("move the new cluster into place at", &paths.cluster_dir, e))?;
    files::sync_parent(&paths.cluster_dir);
    Ok(())
}
