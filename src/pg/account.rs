//! The operating-system account PostgreSQL runs as.
//!
//! PostgreSQL refuses to run as root, so when we are root every PostgreSQL program is
//! started as the `postgres` system account (uid and gid switched in the child by std,
//! which also drops root's supplementary groups) with a minimal environment.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::unistd::{getegid, geteuid, Gid, Uid, User};

use super::error::PgError;

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub uid: Uid,
    pub gid: Gid,
    home: PathBuf,
    /// True when PostgreSQL runs under another account than this process.
    pub switch: bool,
}

impl Account {
    pub fn detect() -> Result<Self, PgError> {
        if geteuid().is_root() {
            let user = User::from_name("postgres")
                .map_err(PgError::AccountLookup)?
                .filter(|u| !u.uid.is_root())
                .ok_or(PgError::NoPostgresAccount)?;
            Ok(Account {
                uid: user.uid,
                gid: user.gid,
                home: user.dir,
                switch: true,
            })
        } else {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            Ok(Account {
                uid: geteuid(),
                gid: getegid(),
                home,
                switch: false,
            })
        }
    }

    /// A command for a PostgreSQL program. The environment is cleared so that PG*
    /// variables of the caller (PGPORT, PGDATA, ...) cannot redirect the server, and
    /// messages come out in English for our error reports. The working directory is `/`
    /// because the caller's (e.g. /root) may be unreadable to the `postgres` account.
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        bin_dir: &Path,
    ) -> tokio::process::Command {
        let mut path = std::ffi::OsString::from(bin_dir.as_os_str());
        path.push(":/usr/local/bin:/usr/bin:/bin");
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("LC_ALL", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.switch {
            cmd.uid(self.uid.as_raw()).gid(self.gid.as_raw());
        }
        cmd
    }

    /// Makes `path` belong to the PostgreSQL account (a no-op when we are that account).
    pub fn give(&self, path: &Path) -> Result<(), PgError> {
        if self.switch {
            nix::unistd::chown(path, Some(self.uid), Some(self.gid))
                .map_err(|e| PgError::io("hand over to the postgres account", path, e.into()))?;
        }
        Ok(())
    }

    /// Whether this account may traverse a directory with metadata `meta`.
    pub fn can_search(&self, meta: &Metadata) -> bool {
        let mode = meta.mode();
        if meta.uid() == self.uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == self.gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    }
}
