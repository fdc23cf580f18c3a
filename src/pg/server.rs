//! Running initdb and pg_ctl, and reading the state PostgreSQL leaves on disk.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;

use super::account::Account;
use super::error::PgError;
use super::files::{self, Paths};

/// The port only names the socket file (`.s.PGSQL.5432`); there is no TCP listener.
pub(crate) const PORT: u16 = 5432;
pub(crate) const SUPERUSER: &str = "strongroom";

/// A crashed postmaster's children can hold its shared memory for a moment after it
/// dies, making an immediate restart fail; these bound how long we keep trying.
const START_ATTEMPTS: u32 = 10;
const START_BACKOFF: Duration = Duration::from_millis(500);

/// Settings that would undo the "private Unix socket only" guarantee.
const MANAGED_SETTINGS: &[&str] = &[
    "listen_addresses",
    "unix_socket_directories",
    "port",
    "unix_socket_group",
    "unix_socket_permissions",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidFile {
    Absent,
    Pid(i32),
    /// Empty or garbled: a startup that died before writing it fully.
    Garbled,
}

/// First line of a PostgreSQL lock file (postmaster.pid or the socket's .lock file).
pub(crate) fn read_pid_file(path: &Path) -> Result<PidFile, PgError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 0)
            .map_or(PidFile::Garbled, PidFile::Pid)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PidFile::Absent),
        Err(e) => Err(PgError::io("read", path, e)),
    }
}

/// Whether a process with this pid exists. A zombie counts as dead: in containers
/// whose init does not reap, a killed postmaster stays a zombie forever.
pub(crate) fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => !is_zombie(pid),
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_comm = &stat[stat.rfind(')')? + 1..];
            after_comm
                .split_whitespace()
                .next()
                .map(|s| s == "Z" || s == "X")
        })
        .unwrap_or(false)
}

/// Whether `pid` plausibly is a PostgreSQL server rather than an unrelated process that
/// reused the pid of a postmaster that died (e.g. across a reboot). Without /proc we
/// cannot tell and assume it is, which errs on the side of not starting a second server.
pub(crate) fn looks_like_postgres(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim() == "postgres",
        Err(_) => true,
    }
}

/// Removes lock files whose process is gone so the new postmaster does not refuse to
/// start. PostgreSQL 12+ still protects the data directory through its shared-memory
/// interlock (keyed on the directory's inode), so this cannot let two servers share it.
pub(crate) fn clear_stale_lock(path: &Path) -> Result<(), PgError> {
    let stale = match read_pid_file(path)? {
        PidFile::Absent => false,
        PidFile::Garbled => true,
        PidFile::Pid(pid) => !pid_alive(pid),
    };
    if stale {
        tracing::info!(path = %path.display(), "removing stale PostgreSQL lock file");
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PgError::io("remove stale lock file", path, e)),
        }
    }
    Ok(())
}

pub(crate) fn validate_settings(settings: &[(String, String)]) -> Result<(), PgError> {
    for (key, value) in settings {
        let bad = |reason| {
            Err(PgError::InvalidSetting {
                key: key.clone(),
                reason,
            })
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return bad("names may only contain letters, digits, `_` and `.`");
        }
        if MANAGED_SETTINGS.contains(&key.to_ascii_lowercase().as_str()) {
            return bad(
                "it is managed by strongroom, which keeps the server on its private Unix socket",
            );
        }
        if value.contains(['\n', '\r', '\0']) {
            return bad("values may not contain line breaks or NUL");
        }
    }
    Ok(())
}

/// The `-o` string for pg_ctl. pg_ctl pastes it unquoted into a /bin/sh command line,
/// so every argument is single-quoted for the shell.
pub(crate) fn server_options(paths: &Paths, settings: &[(String, String)]) -> String {
    let socket_dir = paths.socket_dir.to_string_lossy().replace('"', "\"\"");
    let mut args = vec![
        "listen_addresses=".to_owned(),
        format!("port={PORT}"),
        // Double quotes keep a comma in the path from splitting PostgreSQL's list.
        format!("unix_socket_directories=\"{socket_dir}\""),
        // The server's log never holds the values a failed statement carried (a refused
        // row's DETAIL, the statement itself): they may be a customer's data.
        "log_error_verbosity=terse".to_owned(),
        "log_min_error_statement=panic".to_owned(),
    ];
    args.extend(settings.iter().map(|(k, v)| format!("{k}={v}")));
    args.iter()
        .map(|a| format!("-c {}", shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn stderr_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs initdb into `paths.staging_dir` (which must exist, empty, owned by the account).
/// On failure the staging directory is removed.
///
/// With `no_sync` initdb skips flushing the new cluster to disk; callers pass it when the
/// server itself runs with fsync=off, i.e. when durability was given up anyway.
pub(crate) async fn initdb(
    paths: &Paths,
    account: &Account,
    bin_dir: &Path,
    password: &SecretString,
    no_sync: bool,
) -> Result<(), PgError> {
    let mut out = run_initdb(
        paths,
        account,
        bin_dir,
        password,
        "--locale=C.UTF-8",
        no_sync,
    )
    .await?;
    if !out.status.success() && stderr_text(&out).contains("locale") {
        // Not every system ships C.UTF-8 (e.g. older macOS); plain C still stores UTF-8.
        tracing::warn!("initdb rejected locale C.UTF-8; retrying with --no-locale");
        files::remove_dir_if_exists(&paths.staging_dir)?;
        files::ensure_private_dir(&paths.staging_dir, account)?;
        out = run_initdb(paths, account, bin_dir, password, "--no-locale", no_sync).await?;
    }
    if out.status.success() {
        tracing::debug!(output = %String::from_utf8_lossy(&out.stdout), "initdb finished");
        return Ok(());
    }
    let cleanup = files::remove_dir_if_exists(&paths.staging_dir);
    if let Err(e) = cleanup {
        tracing::error!(error = %e, "could not remove the half-made cluster");
    }
    Err(PgError::InitDb {
        cluster_dir: paths.cluster_dir.clone(),
        status: out.status.to_string(),
        stderr: stderr_text(&out),
    })
}

async fn run_initdb(
    paths: &Paths,
    account: &Account,
    bin_dir: &Path,
    password: &SecretString,
    locale_arg: &str,
    no_sync: bool,
) -> Result<Output, PgError> {
    let initdb = bin_dir.join("initdb");
    // initdb reads the password by opening --pwfile. Re-opening our pipe through
    // /dev/stdin fails for the postgres account (a pipe is owned by its creator, mode
    // 0600), so a shell running as that account relays it through a pipe of its own.
    let mut cmd = account.command("/bin/sh", bin_dir);
    cmd.arg("-c")
        .arg(r#"cat | exec "$0" "$@""#)
        .arg(&initdb)
        .arg("-D")
        .arg(&paths.staging_dir)
        .args([
            "-U",
            SUPERUSER,
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "--pwfile=/dev/stdin",
            "-E",
            "UTF8",
            locale_arg,
        ])
        .args(no_sync.then_some("--no-sync"))
        .stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| PgError::Spawn {
        program: initdb.clone(),
        source: e,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        let written = async {
            stdin.write_all(password.expose_secret().as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.shutdown().await
        }
        .await;
        // A write error means initdb died early; its exit status and stderr say why.
        if let Err(e) = written {
            tracing::debug!(error = %e, "could not hand the password to initdb");
        }
    }
    child.wait_with_output().await.map_err(|e| PgError::Spawn {
        program: initdb,
        source: e,
    })
}

/// Major version of the server binaries, as PostgreSQL writes it to PG_VERSION.
async fn binary_major_version(account: &Account, bin_dir: &Path) -> Result<String, PgError> {
    let postgres = bin_dir.join("postgres");
    let out = account
        .command(&postgres, bin_dir)
        .arg("--version")
        .output()
        .await
        .map_err(|e| PgError::Spawn {
            program: postgres.clone(),
            source: e,
        })?;
    // "postgres (PostgreSQL) 15.10 (Debian 15.10-0+deb12u1)"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split(')')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("");
    let parts: Vec<&str> = version.split('.').collect();
    let major = match parts.first().and_then(|p| p.parse::<u32>().ok()) {
        // Before PostgreSQL 10 the major version had two components (9.6).
        Some(m) if m < 10 && parts.len() > 1 => format!("{}.{}", parts[0], parts[1]),
        Some(m) => m.to_string(),
        None => text.trim().to_owned(),
    };
    Ok(major)
}

/// Fails clearly when the cluster was made by another major version than the binaries,
/// instead of letting the server refuse to start ten times over.
pub(crate) async fn check_version(
    paths: &Paths,
    account: &Account,
    bin_dir: &Path,
) -> Result<(), PgError> {
    let version_file = paths.cluster_dir.join("PG_VERSION");
    let cluster_version = std::fs::read_to_string(&version_file)
        .map_err(|e| PgError::io("read", &version_file, e))?
        .trim()
        .to_owned();
    let bin_version = binary_major_version(account, bin_dir).await?;
    if cluster_version != bin_version {
        return Err(PgError::VersionMismatch {
            cluster_dir: paths.cluster_dir.clone(),
            cluster_version,
            bin_dir: bin_dir.to_path_buf(),
            bin_version,
        });
    }
    Ok(())
}

pub(crate) async fn start(
    paths: &Paths,
    account: &Account,
    bin_dir: &Path,
    options: &str,
) -> Result<(), PgError> {
    let pg_ctl = bin_dir.join("pg_ctl");
    let mut detail = String::new();
    for attempt in 1..=START_ATTEMPTS {
        clear_stale_lock(&paths.pid_file)?;
        clear_stale_lock(&paths.socket_dir.join(format!(".s.PGSQL.{PORT}.lock")))?;
        let log_offset = std::fs::metadata(&paths.log_file).map_or(0, |m| m.len());
        let out = account
            .command(&pg_ctl, bin_dir)
            .arg("-D")
            .arg(&paths.cluster_dir)
            .arg("-l")
            .arg(&paths.log_file)
            .args(["-w", "-t", "60", "-o", options, "start"])
            .output()
            .await
            .map_err(|e| PgError::Spawn {
                program: pg_ctl.clone(),
                source: e,
            })?;
        if out.status.success() {
            return Ok(());
        }
        detail = format!("pg_ctl start {}: {}", out.status, stderr_text(&out));
        if let PidFile::Pid(pid) = read_pid_file(&paths.pid_file)? {
            if pid_alive(pid) {
                // pg_ctl gave up waiting but the server lives on (long crash recovery);
                // starting again would only collide with it.
                return Err(start_error(paths, attempt, detail));
            }
        }
        if !leftovers_of_crash(&files::read_from(&paths.log_file, log_offset)) {
            // A bad setting or a broken cluster will not fix itself by waiting.
            return Err(start_error(paths, attempt, detail));
        }
        if attempt < START_ATTEMPTS {
            tracing::warn!(attempt, cluster = %paths.cluster_dir.display(), "PostgreSQL is still blocked by its crashed predecessor; retrying shortly");
            tokio::time::sleep(START_BACKOFF).await;
        }
    }
    Err(start_error(paths, START_ATTEMPTS, detail))
}

/// Whether the server refused to start only because processes of a crashed predecessor
/// are still around (they exit once they notice the postmaster is gone). The server's
/// messages are in English: initdb set lc_messages to C/C.UTF-8.
fn leftovers_of_crash(log: &str) -> bool {
    log.contains("pre-existing shared memory block")
        || (log.contains("lock file") && log.contains("already exists"))
}

fn start_error(paths: &Paths, attempts: u32, detail: String) -> PgError {
    PgError::Start {
        cluster_dir: paths.cluster_dir.clone(),
        attempts,
        detail,
        log: paths.log_file.clone(),
        log_tail: files::tail(&paths.log_file, 20),
    }
}

/// Fast shutdown: disconnects clients, checkpoints, exits. A server that is already
/// gone counts as stopped.
pub(crate) async fn stop(paths: &Paths, account: &Account, bin_dir: &Path) -> Result<(), PgError> {
    let pg_ctl = bin_dir.join("pg_ctl");
    let out = account
        .command(&pg_ctl, bin_dir)
        .arg("-D")
        .arg(&paths.cluster_dir)
        .args(["-m", "fast", "-w", "-t", "60", "stop"])
        .output()
        .await
        .map_err(|e| PgError::Spawn {
            program: pg_ctl.clone(),
            source: e,
        })?;
    if out.status.success() {
        return Ok(());
    }
    match read_pid_file(&paths.pid_file)? {
        PidFile::Pid(pid) if pid_alive(pid) => Err(PgError::Stop {
            cluster_dir: paths.cluster_dir.clone(),
            detail: format!("pg_ctl stop {}: {}", out.status, stderr_text(&out)),
        }),
        _ => Ok(()),
    }
}
