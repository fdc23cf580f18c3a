//! Files and directories the module keeps in the vault's data directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use secrecy::{ExposeSecret, SecretString};

use super::account::Account;
use super::error::PgError;

/// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// The layout of our part of the data directory.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub data_dir: PathBuf,
    pub cluster_dir: PathBuf,
    /// initdb works here and the result is renamed to `cluster_dir`, so a cluster
    /// directory only ever exists complete.
    pub staging_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub password_file: PathBuf,
    pub owner_password_file: PathBuf,
    pub runtime_password_file: PathBuf,
    pub start_lock: PathBuf,
    pub owner_lock: PathBuf,
    pub log_file: PathBuf,
    pub pid_file: PathBuf,
}

impl Paths {
    pub fn new(data_dir: PathBuf) -> Self {
        let cluster_dir = data_dir.join("pg");
        Paths {
            staging_dir: data_dir.join("pg.initdb-incomplete"),
            socket_dir: data_dir.join("pg-socket"),
            password_file: data_dir.join("pg-superuser.password"),
            owner_password_file: data_dir.join("pg-owner.password"),
            runtime_password_file: data_dir.join("pg-runtime.password"),
            start_lock: data_dir.join("pg.start.lock"),
            owner_lock: data_dir.join("pg.owner.lock"),
            log_file: cluster_dir.join("server.log"),
            pid_file: cluster_dir.join("postmaster.pid"),
            cluster_dir,
            data_dir,
        }
    }

    pub fn socket_file(&self, port: u16) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{port}"))
    }

    /// Rejects paths that pg_ctl or the kernel cannot handle before anything is created.
    pub fn validate(&self, port: u16) -> Result<(), PgError> {
        // pg_ctl pastes the data directory into a /bin/sh command line inside double quotes.
        let bytes = self.data_dir.as_os_str().as_bytes();
        if bytes
            .iter()
            .any(|b| matches!(b, b'"' | b'$' | b'`' | b'\\' | b'\n' | b'\r'))
        {
            return Err(PgError::UnsafePath {
                path: self.data_dir.clone(),
            });
        }
        let socket = self.socket_file(port);
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(PgError::SocketPathTooLong { path: socket, len });
        }
        Ok(())
    }
}

/// Creates the data directory if needed and returns its canonical path.
///
/// It is 0700, except when PostgreSQL runs under another account: then it must be
/// 0711 so that account can traverse to the cluster and socket directories it owns
/// (it still cannot list or read anything else here).
pub(crate) fn prepare_data_dir(data_dir: &Path, account: &Account) -> Result<PathBuf, PgError> {
    let mode = if account.switch { 0o711 } else { 0o700 };
    match std::fs::metadata(data_dir) {
        Ok(meta) if meta.is_dir() => {
            if account.switch && meta.mode() & 0o001 == 0 {
                let new_mode = (meta.mode() & 0o7777) | 0o011;
                std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(new_mode))
                    .map_err(|e| {
                        PgError::io("make searchable for the postgres account", data_dir, e)
                    })?;
            }
        }
        Ok(_) => {
            return Err(PgError::io(
                "use as data directory",
                data_dir,
                std::io::Error::other("not a directory"),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(data_dir)
                .map_err(|e| PgError::io("create data directory", data_dir, e))?;
            // DirBuilder's mode is filtered by the umask.
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(mode))
                .map_err(|e| PgError::io("set permissions of", data_dir, e))?;
        }
        Err(e) => return Err(PgError::io("inspect data directory", data_dir, e)),
    }
    let canonical = std::fs::canonicalize(data_dir)
        .map_err(|e| PgError::io("resolve data directory", data_dir, e))?;
    if account.switch {
        check_reachable(&canonical, account)?;
    }
    Ok(canonical)
}

/// PostgreSQL under the `postgres` account fails late and obscurely when some parent
/// directory is closed to it; find the blocking directory up front instead.
fn check_reachable(data_dir: &Path, account: &Account) -> Result<(), PgError> {
    for dir in data_dir.ancestors() {
        let meta = std::fs::metadata(dir).map_err(|e| PgError::io("inspect", dir, e))?;
        if !account.can_search(&meta) {
            return Err(PgError::DataDirUnreachable {
                data_dir: data_dir.to_path_buf(),
                blocking: dir.to_path_buf(),
                mode: meta.mode() & 0o7777,
            });
        }
    }
    Ok(())
}

/// A 0700 directory owned by the PostgreSQL account (created if missing).
pub(crate) fn ensure_private_dir(dir: &Path, account: &Account) -> Result<(), PgError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(PgError::io("create directory", dir, e)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| PgError::io("set permissions of", dir, e))?;
    account.give(dir)
}

pub(crate) fn remove_dir_if_exists(dir: &Path) -> Result<(), PgError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PgError::io("remove", dir, e)),
    }
}

/// 32 random bytes from the OS, hex encoded.
pub(crate) fn generate_password() -> SecretString {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    secrecy::zeroize::Zeroize::zeroize(&mut bytes);
    SecretString::from(hex)
}

/// Writes the password via a temporary file and rename so a crash never leaves a
/// truncated password behind; the file is 0600 from the moment it exists.
pub(crate) fn write_password_file(path: &Path, password: &SecretString) -> Result<(), PgError> {
    let tmp = path.with_extension("password.tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PgError::io("remove stale", &tmp, e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| PgError::io("create password file", &tmp, e))?;
    file.write_all(password.expose_secret().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| PgError::io("write password file", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| PgError::io("install password file", path, e))?;
    sync_parent(path);
    Ok(())
}

pub(crate) fn read_password_file(path: &Path, cluster_dir: &Path) -> Result<SecretString, PgError> {
    let missing = || PgError::PasswordFileMissing {
        cluster_dir: cluster_dir.to_path_buf(),
        path: path.to_path_buf(),
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(PgError::io("open password file", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| PgError::io("inspect password file", path, e))?;
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "password file was readable by others; restricting it to 0600");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| PgError::io("restrict permissions of", path, e))?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| PgError::io("read password file", path, e))?;
    let secret = SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned());
    secrecy::zeroize::Zeroize::zeroize(&mut text);
    if secret.expose_secret().is_empty() {
        return Err(missing());
    }
    Ok(secret)
}

/// Best effort: makes a rename durable. Failure only weakens crash safety.
pub(crate) fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File, PgError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| PgError::io("open lock file", path, e))
}

/// Takes an exclusive flock, waiting for other holders (off the async runtime).
pub(crate) async fn lock_exclusive(path: &Path) -> Result<Flock<File>, PgError> {
    if let Some(lock) = try_lock_exclusive(path)? {
        return Ok(lock);
    }
    tracing::info!(lock = %path.display(), "another strongroom process is starting or stopping PostgreSQL; waiting for it");
    let owned = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        let file = open_lock_file(&owned)?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| PgError::Lock {
            path: owned.clone(),
            source: e,
        })
    })
    .await;
    match result {
        Ok(r) => r,
        Err(join) => Err(PgError::io(
            "wait for lock",
            path,
            std::io::Error::other(join.to_string()),
        )),
    }
}

/// Takes an exclusive flock if nobody else holds it.
pub(crate) fn try_lock_exclusive(path: &Path) -> Result<Option<Flock<File>>, PgError> {
    let file = open_lock_file(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(PgError::Lock {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// What was appended to a (log) file after `offset`, at most 64 KiB of it.
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut buf = Vec::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.take(64 * 1024).read_to_end(&mut buf);
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last `max_lines` lines of a (log) file, for error messages.
pub(crate) fn tail(path: &Path, max_lines: usize) -> String {
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut file) = File::open(path) else {
        return "(log file not readable)".to_owned();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file
        .seek(SeekFrom::Start(len.saturating_sub(WINDOW)))
        .is_err()
    {
        return "(log file not readable)".to_owned();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).is_err() {
        return "(log file not readable)".to_owned();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    if lines.is_empty() {
        "(log is empty)".to_owned()
    } else {
        lines[start..].join("\n")
    }
}
