//! Locating the PostgreSQL server binaries.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::{PgError, BIN_DIR_ENV};

/// The binaries this module runs; a directory qualifies only if it holds all of them,
/// because pg_ctl starts the `postgres` found next to itself.
const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where distribution packages put versioned server binaries (`<root>/<major>/bin`).
pub const DEFAULT_ROOTS: &[&str] = &["/usr/lib/postgresql"];

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// `explicit` (or else the `STRONGROOM_PG_BIN_DIR` environment variable) is used
/// exclusively when given; otherwise PATH, then `pg_config --bindir`, then
/// `/usr/lib/postgresql/*/bin` with the highest major version first.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf, PgError> {
    let from_env = std::env::var_os(BIN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some(dir) = explicit.map(Path::to_path_buf).or(from_env) {
        let missing = missing_in(&dir);
        if !missing.is_empty() {
            return Err(PgError::IncompleteBinDir {
                dir,
                missing: missing.join(", "),
            });
        }
        return Ok(dir);
    }
    let path_var = std::env::var_os("PATH");
    let roots: Vec<PathBuf> = DEFAULT_ROOTS.iter().map(PathBuf::from).collect();
    find_bin_dir_in(path_var.as_deref(), true, &roots)
}

/// The search behind [`find_bin_dir`] with every input explicit, so callers (and tests)
/// can control it: `path_var` is a PATH-style list, `use_pg_config` runs the `pg_config`
/// found on that list, and each of `roots` is scanned as `<root>/*/bin`.
pub fn find_bin_dir_in(
    path_var: Option<&OsStr>,
    use_pg_config: bool,
    roots: &[PathBuf],
) -> Result<PathBuf, PgError> {
    let path_dirs: Vec<PathBuf> = path_var
        .map(|p| {
            std::env::split_paths(p)
                .filter(|d| d.is_absolute())
                .collect()
        })
        .unwrap_or_default();

    for dir in &path_dirs {
        if let Some(found) = qualify_path_entry(dir) {
            return Ok(found);
        }
    }

    if use_pg_config {
        if let Some(found) = via_pg_config(&path_dirs) {
            return Ok(found);
        }
    }

    for root in roots {
        for dir in versioned_bin_dirs(root) {
            if missing_in(&dir).is_empty() {
                return Ok(dir);
            }
        }
    }

    let mut places = vec!["on PATH"];
    if use_pg_config {
        places.push("via pg_config");
    }
    let roots_desc = roots
        .iter()
        .map(|r| format!("{}/*/bin", r.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let searched = if roots.is_empty() {
        places.join(" or ")
    } else {
        format!("{} or under {roots_desc}", places.join(", "))
    };
    Err(PgError::BinariesNotFound { searched })
}

/// A PATH entry often holds symlinks (e.g. /usr/local/bin/initdb) to the real
/// versioned directory; prefer that directory so all three binaries match.
fn qualify_path_entry(dir: &Path) -> Option<PathBuf> {
    let initdb = dir.join("initdb");
    if !is_executable(&initdb) {
        return None;
    }
    if let Some(real_dir) = std::fs::canonicalize(&initdb)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        if missing_in(&real_dir).is_empty() {
            return Some(real_dir);
        }
    }
    missing_in(dir).is_empty().then(|| dir.to_path_buf())
}

fn via_pg_config(path_dirs: &[PathBuf]) -> Option<PathBuf> {
    let pg_config = path_dirs
        .iter()
        .map(|d| d.join("pg_config"))
        .find(|p| is_executable(p))?;
    let out = std::process::Command::new(&pg_config)
        .arg("--bindir")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (dir.is_absolute() && missing_in(&dir).is_empty()).then_some(dir)
}

/// `<root>/*/bin`, newest major version first; non-numeric names sort last.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name
                .split('.')
                .map(|part| part.parse::<u64>())
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_default();
            (key, e.path().join("bin"))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn missing_in(dir: &Path) -> Vec<&'static str> {
    REQUIRED
        .iter()
        .copied()
        .filter(|name| !is_executable(&dir.join(name)))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
