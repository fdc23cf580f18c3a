//! Staging files a local-directory store leaves when a write never finishes.
//!
//! The local store (`object_store`'s `LocalFileSystem`) writes an object to `<key>#<n>` and
//! renames it into place when the write completes; a process killed in between (`kill -9`
//! during an upload) leaves the staging file behind, and the store's listing does not show
//! it. It is never referenced (a row is written only after its object is complete), so:
//! - the storage GC ([`remove_stale`]) deletes those older than its grace period, like any
//!   unreferenced object (a write in progress keeps touching its staging file, so its
//!   modification time stays recent);
//! - the scrub ([`find`]) reports them with the unreferenced objects.
//!
//! Only names of the exact form `ab/cd/<64 hex>#<digits>` whose stem is a vault object key
//! are considered; nothing else in the directory is touched. Stores other than a local
//! directory (S3) expire incomplete multipart uploads themselves (a lifecycle rule).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{StorageError, Store};

/// One staging file.
#[derive(Clone, Debug)]
pub struct Staged {
    /// `ab/cd/<64 hex>#<n>`: the key it was being written for, and its suffix.
    pub name: String,
    pub path: PathBuf,
    pub modified: SystemTime,
}

fn hex_dirs(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let hex = name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hex && entry.file_type()?.is_dir() {
            out.push((name, entry.path()));
        }
    }
    Ok(out)
}

fn scan(root: &Path) -> std::io::Result<Vec<Staged>> {
    let mut out = Vec::new();
    for (a, a_dir) in hex_dirs(root)? {
        for (b, b_dir) in hex_dirs(&a_dir)? {
            for entry in std::fs::read_dir(&b_dir)? {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Some((stem, n)) = name.split_once('#') else {
                    continue;
                };
                if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
                    continue;
                }
                if !super::is_object_key(&format!("{a}/{b}/{stem}")) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) if m.is_file() => m,
                    Ok(_) => continue,
                    // Renamed into place or removed meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                out.push(Staged {
                    name: format!("{a}/{b}/{name}"),
                    path: entry.path(),
                    modified: meta.modified()?,
                });
            }
        }
    }
    Ok(out)
}

/// The staging files of `store` (none unless it is a local directory).
pub async fn find(store: &Store) -> Result<Vec<Staged>, StorageError> {
    let Some(root) = store.local_root().map(Path::to_path_buf) else {
        return Ok(Vec::new());
    };
    tokio::task::spawn_blocking(move || scan(&root))
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?
        .map_err(StorageError::Io)
}

/// Deletes the staging files last modified before `cutoff`; returns how many.
pub async fn remove_stale(store: &Store, cutoff: SystemTime) -> Result<u64, StorageError> {
    let stale: Vec<Staged> = find(store)
        .await?
        .into_iter()
        .filter(|s| s.modified < cutoff)
        .collect();
    let mut removed = 0;
    for s in stale {
        match tokio::fs::remove_file(&s.path).await {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::Io(e)),
        }
        tracing::debug!(name = %s.name, "storage gc removed an interrupted write's staging file");
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "storage gc removed staging files of interrupted writes"
        );
    }
    Ok(removed)
}
