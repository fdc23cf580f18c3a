//! Errors of the embedded PostgreSQL module.
//!
//! Every message names what failed, the path involved and what to do about it.
//! None of them ever carries the superuser password: the password only lives in
//! a `SecretString`, the 0600 password file and initdb's stdin pipe.

use std::io;
use std::path::PathBuf;

/// Environment variable that points at a directory holding `initdb`, `pg_ctl`
/// and `postgres`; overrides every other way of finding them.
pub const BIN_DIR_ENV: &str = "STRONGROOM_PG_BIN_DIR";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found {searched}; install them: \
         apt-get install postgresql (Debian/Ubuntu), dnf install postgresql-server (Fedora/RHEL), \
         brew install postgresql (macOS); or set STRONGROOM_PG_BIN_DIR"
    )]
    BinariesNotFound {
        /// Human description of where we looked, e.g. "on PATH, via pg_config or under /usr/lib/postgresql/*/bin".
        searched: String,
    },

    #[error(
        "{dir} was given as the PostgreSQL binary directory but lacks {missing}; point \
         STRONGROOM_PG_BIN_DIR (or the bin dir option) at the directory holding initdb, pg_ctl and \
         postgres, e.g. /usr/lib/postgresql/15/bin; if they are not installed: apt-get install \
         postgresql (Debian/Ubuntu), dnf install postgresql-server (Fedora/RHEL), brew install \
         postgresql (macOS)"
    )]
    IncompleteBinDir { dir: PathBuf, missing: String },

    #[error(
        "running as root, but there is no `postgres` system account to run PostgreSQL as \
         (PostgreSQL refuses to run as root); create it: useradd --system --home /var/lib/postgresql postgres"
    )]
    NoPostgresAccount,

    #[error("could not look up the `postgres` account: {0}")]
    AccountLookup(#[source] nix::Error),

    #[error(
        "PostgreSQL runs as the `postgres` account, which cannot reach the data directory {data_dir}: \
         {blocking} (mode {mode:04o}) is not searchable by it; run `chmod o+x {blocking}` or use a \
         data directory below world-searchable directories (e.g. /var/lib/strongroom)"
    )]
    DataDirUnreachable {
        data_dir: PathBuf,
        blocking: PathBuf,
        mode: u32,
    },

    #[error(
        "the data directory path {path} contains a character (one of \" $ ` \\ or a newline) that \
         pg_ctl cannot pass through its shell safely; choose a plainer path"
    )]
    UnsafePath { path: PathBuf },

    #[error(
        "the PostgreSQL socket path {path} is {len} bytes long, but Unix socket paths are limited \
         to 107 bytes; choose a shorter data directory path"
    )]
    SocketPathTooLong { path: PathBuf, len: usize },

    #[error("invalid PostgreSQL setting `{key}`: {reason}")]
    InvalidSetting { key: String, reason: &'static str },

    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not run {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error(
        "{path} exists but is not a PostgreSQL cluster (it has no PG_VERSION); move it away or \
         delete it so a fresh cluster can be created"
    )]
    NotACluster { path: PathBuf },

    #[error(
        "the PostgreSQL cluster in {cluster_dir} exists but its superuser password file {path} is \
         missing or empty; restore it from a backup of the data directory"
    )]
    PasswordFileMissing { cluster_dir: PathBuf, path: PathBuf },

    #[error(
        "the cluster in {cluster_dir} was created by PostgreSQL {cluster_version}, but the binaries \
         in {bin_dir} are PostgreSQL {bin_version}; install the PostgreSQL {cluster_version} server \
         binaries and set STRONGROOM_PG_BIN_DIR to them, or upgrade the cluster with pg_upgrade"
    )]
    VersionMismatch {
        cluster_dir: PathBuf,
        cluster_version: String,
        bin_dir: PathBuf,
        bin_version: String,
    },

    #[error(
        "initdb failed to create the cluster in {cluster_dir} ({status}); the half-made cluster was \
         removed so the next run starts afresh. initdb said:\n{stderr}"
    )]
    InitDb {
        cluster_dir: PathBuf,
        status: String,
        stderr: String,
    },

    #[error(
        "PostgreSQL in {cluster_dir} did not start after {attempts} attempt(s): {detail}\n\
         last lines of {log}:\n{log_tail}"
    )]
    Start {
        cluster_dir: PathBuf,
        attempts: u32,
        detail: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error(
        "PostgreSQL (pid {pid}) is running on {cluster_dir} but does not accept connections: \
         {detail}; stop it (pg_ctl -D {cluster_dir} stop) or check the log.\n\
         last lines of {log}:\n{log_tail}"
    )]
    NotAccepting {
        pid: i32,
        cluster_dir: PathBuf,
        detail: String,
        log: PathBuf,
        log_tail: String,
    },

    #[error("could not stop PostgreSQL in {cluster_dir}: {detail}")]
    Stop {
        cluster_dir: PathBuf,
        detail: String,
    },

    #[error(
        "could not {action} on the embedded PostgreSQL (socket directory {socket_dir}): {source}"
    )]
    Sql {
        action: &'static str,
        socket_dir: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "could not set up the vault's roles on the embedded PostgreSQL (socket directory \
         {socket_dir}): {source}"
    )]
    Roles {
        socket_dir: PathBuf,
        #[source]
        source: super::roles::RoleError,
    },
}

impl PgError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PgError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
