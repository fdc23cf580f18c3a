//! Where the key ring comes from: the [`KeySource`] interface and its two implementations,
//! the master key file ([`KeyFile`]) and the environment variable `STRONGROOM_MASTER_KEY`
//! ([`EnvKeys`]). A KMS can implement the same trait later: the server and
//! `strongroom rotate-keys` only speak to the trait.
//!
//! Guarantees:
//! - The key file is only ever replaced whole: the new text is written to a temporary file
//!   (mode 0600) in the same directory, flushed to disk, and renamed over the old one, and
//!   the directory is flushed. A crash leaves the old file or the new one, never a mix.
//! - Adding a KEK keeps every existing line (comments included) and inserts the new KEK
//!   line before the first KEK line, so it becomes active. Removing a KEK refuses the
//!   active KEK, the blind-index line and unknown ids, and first writes the removed line to
//!   `<key file>.retired-<id>` (mode 0600): backups made before the rotation still need it,
//!   and the operator decides where it goes (see README, Key rotation).
//! - `STRONGROOM_MASTER_KEY` is read once and removed from the process environment, so
//!   programs the server starts (renderers, the database's helpers) never inherit it.
//! - Errors name the source and line numbers, never key material.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore;
use zeroize::Zeroizing;

use super::{
    random_kek_id, random_key, CryptoError, KeyRing, BASE64, BLIND_INDEX_ID, KEY_FILE_HEADER,
};

/// The environment variable that, when set, holds the key file's text (and the file is
/// then not read).
pub const MASTER_KEY_ENV: &str = "STRONGROOM_MASTER_KEY";

/// What [`KeySource::remove_kek`] did besides removing the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Where the removed key line was kept (for restoring older backups), if anywhere.
    pub kept_at: Option<PathBuf>,
}

/// A place the key ring is loaded from, and (when it can be changed) where KEKs are added
/// and removed.
pub trait KeySource: Send + Sync {
    /// Names the source in messages ("key file /x/master.key"); never key material.
    fn describe(&self) -> String;
    /// Reads the current keys.
    fn load(&self) -> Result<KeyRing, CryptoError>;
    /// A cheap token that changes whenever [`KeySource::load`] would return other keys
    /// (for a file: inode, size and modification time). `None`: unknown, so a reload must
    /// load.
    fn version(&self) -> Option<String> {
        None
    }
    /// Generates a new KEK, stores it as the active one and returns its id.
    fn add_kek(&self) -> Result<String, CryptoError>;
    /// Removes the KEK `id`, which must not be the active one.
    fn remove_kek(&self, id: &str) -> Result<Removed, CryptoError>;
}

/// The master key file (format: see [`crate::crypto`]).
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    pub fn new(path: &Path) -> KeyFile {
        KeyFile {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, source: std::io::Error) -> CryptoError {
        CryptoError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn bad(&self, reason: String) -> CryptoError {
        CryptoError::KeyFile {
            path: self.path.clone(),
            reason,
        }
    }

    fn read(&self) -> Result<Zeroizing<String>, CryptoError> {
        fs::read_to_string(&self.path)
            .map(Zeroizing::new)
            .map_err(|e| self.io_err(e))
    }

    /// Logs a warning when the file may be read by other accounts.
    pub fn warn_if_readable_by_others(&self) {
        if let Ok(meta) = fs::metadata(&self.path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %self.path.display(), "the master key file is readable by other users; it should be mode 0600");
            }
        }
    }

    /// Creates the file (one fresh KEK and a blind-index secret, mode 0600) if it does not
    /// exist; returns the new KEK's id when it did. Atomic: the complete file is written
    /// under a temporary name and hard-linked into place, which fails if another process
    /// got there first (whose file then stands).
    pub fn create_if_missing(&self) -> Result<Option<String>, CryptoError> {
        let path = &self.path;
        match fs::metadata(path) {
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_err(e)),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| self.io_err(e))?;
        }
        let kek_id = random_kek_id();
        let kek = random_key();
        let index = random_key();
        let mut text = Zeroizing::new(String::new());
        text.push_str(KEY_FILE_HEADER);
        text.push_str(&format!("{kek_id}:{}\n", BASE64.encode(kek.as_ref())));
        text.push_str(&format!(
            "{BLIND_INDEX_ID}:{}\n",
            BASE64.encode(index.as_ref())
        ));
        let tmp = temp_name(path);
        if let Err(e) = write_new(&tmp, text.as_bytes()) {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_err(e));
        }
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_parent(path);
                tracing::info!(kek_id = %kek_id, path = %path.display(), "created a new master key file");
                Ok(Some(kek_id))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(self.io_err(e)),
        }
    }

    /// Replaces the file's content atomically (temporary file 0600, fsync, rename, fsync
    /// of the directory).
    fn replace(&self, text: &str) -> Result<(), CryptoError> {
        write_atomically(&self.path, text.as_bytes()).map_err(|e| self.io_err(e))
    }
}

impl KeySource for KeyFile {
    fn describe(&self) -> String {
        format!("key file {}", self.path.display())
    }

    fn load(&self) -> Result<KeyRing, CryptoError> {
        let text = self.read()?;
        KeyRing::parse_text(&text, |reason| self.bad(reason))
    }

    fn version(&self) -> Option<String> {
        let m = fs::metadata(&self.path).ok()?;
        Some(format!(
            "{}:{}:{}:{}.{}",
            m.dev(),
            m.ino(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ))
    }

    fn add_kek(&self) -> Result<String, CryptoError> {
        let text = self.read()?;
        let ring = KeyRing::parse_text(&text, |reason| self.bad(reason))?;
        let taken = ring.kek_ids();
        let id = loop {
            let id = random_kek_id();
            if !taken.contains(&id) {
                break id;
            }
        };
        let key = random_key();
        let line = Zeroizing::new(format!("{id}:{}", BASE64.encode(key.as_ref())));
        let mut out = Zeroizing::new(String::with_capacity(text.len() + line.len() + 1));
        let mut placed = false;
        for l in text.lines() {
            if !placed && is_kek_line(l) {
                out.push_str(&line);
                out.push('\n');
                placed = true;
            }
            out.push_str(l);
            out.push('\n');
        }
        if !placed {
            // `parse_text` refuses a file without a KEK, so this is not reached; keep the
            // new key anyway rather than lose it.
            out.push_str(&line);
            out.push('\n');
        }
        // Never write what would not load back.
        let check = KeyRing::parse_text(&out, |reason| self.bad(reason))?;
        if check.active_kek_id() != id {
            return Err(self.bad("the new key would not be the active one".into()));
        }
        self.replace(&out)?;
        tracing::info!(kek_id = %id, path = %self.path.display(), "added a key-encryption key");
        Ok(id)
    }

    fn remove_kek(&self, id: &str) -> Result<Removed, CryptoError> {
        let text = self.read()?;
        let ring = KeyRing::parse_text(&text, |reason| self.bad(reason))?;
        check_removable(&ring, id, &self.describe())?;
        let mut out = Zeroizing::new(String::with_capacity(text.len()));
        let mut removed = Zeroizing::new(String::new());
        for l in text.lines() {
            if line_id(l) == Some(id) {
                removed.push_str(l.trim());
                removed.push('\n');
            } else {
                out.push_str(l);
                out.push('\n');
            }
        }
        let check = KeyRing::parse_text(&out, |reason| self.bad(reason))?;
        if check.kek_ids().iter().any(|k| k == id) || check.active_kek_id() != ring.active_kek_id()
        {
            return Err(self.bad(format!("removing {id:?} would change more than that key")));
        }
        // Keep the removed line first: if anything fails after this, the key still exists.
        let mut kept = self.path.as_os_str().to_owned();
        kept.push(format!(".retired-{id}"));
        let kept = PathBuf::from(kept);
        let mut kept_text = Zeroizing::new(String::from(
            "# a retired strongroom key-encryption key: needed only to restore backups made before it was retired\n",
        ));
        kept_text.push_str(&removed);
        write_atomically(&kept, kept_text.as_bytes()).map_err(|e| CryptoError::Io {
            path: kept.clone(),
            source: e,
        })?;
        self.replace(&out)?;
        tracing::info!(kek_id = %id, path = %self.path.display(), "removed a key-encryption key");
        Ok(Removed {
            kept_at: Some(kept),
        })
    }
}

/// The keys given in an environment variable: the key file's text, with entries separated
/// by newlines (or, on one line, by spaces). Read-only: rotation adds the new KEK line to
/// the variable's value in the secret store, then restarts the servers.
pub struct EnvKeys {
    var: String,
    text: Zeroizing<String>,
}

impl EnvKeys {
    /// Reads `var` and removes it from the process environment (so child processes never
    /// inherit it). `None` when the variable is unset or empty.
    pub fn take(var: &str) -> Option<EnvKeys> {
        let value = Zeroizing::new(std::env::var(var).ok()?);
        std::env::remove_var(var);
        if value.trim().is_empty() {
            return None;
        }
        let text = if value.contains('\n') {
            value
        } else {
            Zeroizing::new(value.split_whitespace().collect::<Vec<_>>().join("\n"))
        };
        Some(EnvKeys {
            var: var.to_string(),
            text,
        })
    }
}

impl KeySource for EnvKeys {
    fn describe(&self) -> String {
        format!("environment variable {}", self.var)
    }

    fn load(&self) -> Result<KeyRing, CryptoError> {
        KeyRing::parse_text(&self.text, |reason| CryptoError::Source {
            origin: self.describe(),
            reason,
        })
    }

    fn version(&self) -> Option<String> {
        // Read once at start: it never changes while the process runs.
        Some(String::from("env"))
    }

    fn add_kek(&self) -> Result<String, CryptoError> {
        Err(CryptoError::ReadOnly {
            origin: self.describe(),
            hint: "put a new KEK line first in its value (for example `k-$(openssl rand -hex 4):$(openssl rand -base64 32)`), \
                 restart every server with it, then run `strongroom rotate-keys --resume` with the new value set (see README, Key rotation)"
                .to_string(),
        })
    }

    fn remove_kek(&self, id: &str) -> Result<Removed, CryptoError> {
        let ring = self.load()?;
        check_removable(&ring, id, &self.describe())?;
        Err(CryptoError::ReadOnly {
            origin: self.describe(),
            hint: format!("nothing uses {id:?} any more: remove its line from the value in your secret store and restart the servers"),
        })
    }
}

/// Refuses removing the active KEK, the blind-index secret, or a KEK the ring lacks.
fn check_removable(ring: &KeyRing, id: &str, origin: &str) -> Result<(), CryptoError> {
    if id == BLIND_INDEX_ID {
        return Err(CryptoError::InvalidKeyRing(format!(
            "the {BLIND_INDEX_ID} secret is never retired (stored blind indexes depend on it)"
        )));
    }
    let ids = ring.kek_ids();
    if !ids.iter().any(|k| k == id) {
        return Err(CryptoError::UnknownKek(id.to_string()));
    }
    if ring.active_kek_id() == id {
        return Err(CryptoError::InvalidKeyRing(format!(
            "{id:?} is the active key-encryption key in {origin}; rotate first (`strongroom rotate-keys`)"
        )));
    }
    Ok(())
}

/// The id of a key line (`id:base64`), None for comments and blank lines.
fn line_id(line: &str) -> Option<&str> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    l.split_once(':').map(|(id, _)| id.trim())
}

fn is_kek_line(line: &str) -> bool {
    line_id(line).is_some_and(|id| id != BLIND_INDEX_ID)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".tmp-{}",
        hex::encode(rand::rngs::OsRng.next_u64().to_be_bytes())
    ));
    PathBuf::from(name)
}

/// Writes a new file (mode 0600, refusing to follow or replace anything) and flushes it.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Best effort: makes a new or renamed directory entry durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Replaces `path` with `bytes` atomically: temporary file 0600 in the same directory,
/// fsync, rename, fsync of the directory. On failure the old file is untouched and no
/// temporary file is left.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_name(path);
    let result = write_new(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::DataKey;
    use std::sync::Arc;
    use uuid::Uuid;

    fn file_in(dir: &Path) -> (PathBuf, KeyRing) {
        let path = dir.join("master.key");
        let ring = KeyRing::load_or_create(&path).unwrap();
        (path, ring)
    }

    #[test]
    fn add_and_remove_rewrite_the_file_atomically_and_keep_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ring) = file_in(dir.path());
        let old = ring.active_kek_id();
        let file = Uuid::new_v4();
        let w = ring.wrap(&DataKey::generate(), file);
        let (fk, fct) = ring.encrypt_field(file, "phone", "13812345678");
        let index_before = ring.blind_index("phone", "13812345678");
        let src = KeyFile::new(&path);

        let new = src.add_kek().unwrap();
        assert_ne!(new, old);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# strongroom key ring v1"), "{text}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let reloaded = src.load().unwrap();
        assert_eq!(reloaded.kek_ids(), vec![new.clone(), old.clone()]);
        // The ring loaded before the change sees it after a reload, through every share.
        let shared = ring.share();
        assert!(ring.reload_if_changed().unwrap());
        assert_eq!(shared.active_kek_id(), new);
        assert!(!ring.reload_if_changed().unwrap());
        // Old wraps still open; re-wraps land under the new KEK; the blind index is kept.
        let w2 = ring.rewrap(&w.kek_id, &w.wrapped, file).unwrap();
        assert_eq!(w2.kek_id, new);
        let (fk2, fct2) = ring.reseal_field(file, "phone", &fk, &fct).unwrap();
        assert_eq!(fk2, new);
        assert_eq!(ring.blind_index("phone", "13812345678"), index_before);

        // The active KEK, the blind-index line and unknown ids are refused.
        assert!(src.remove_kek(&new).is_err());
        assert!(src.remove_kek(BLIND_INDEX_ID).is_err());
        assert!(matches!(
            src.remove_kek("k-nothere"),
            Err(CryptoError::UnknownKek(_))
        ));
        let removed = src.remove_kek(&old).unwrap();
        let kept = removed.kept_at.unwrap();
        assert_eq!(
            fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(fs::read_to_string(&kept)
            .unwrap()
            .contains(&format!("{old}:")));
        let after = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(after.kek_ids(), vec![new.clone()]);
        assert!(after.unwrap(&w2.kek_id, &w2.wrapped, file).is_ok());
        assert_eq!(
            after
                .decrypt_field(file, "phone", &fk2, &fct2)
                .unwrap()
                .as_str(),
            "13812345678"
        );
        assert!(matches!(
            after.unwrap(&w.kek_id, &w.wrapped, file),
            Err(CryptoError::UnknownKek(_))
        ));
        assert_eq!(after.blind_index("phone", "13812345678"), index_before);
        // Only the key file and the retired line are left: no temporary files.
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "master.key".to_string(),
                format!("master.key.retired-{old}")
            ]
        );
    }

    #[test]
    fn a_reload_that_changes_the_blind_index_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ring) = file_in(dir.path());
        let before = ring.blind_index("phone", "1");
        let k = BASE64.encode([3u8; 32]);
        let other = BASE64.encode([4u8; 32]);
        write_atomically(&path, format!("k-9:{k}\nblind-index:{other}\n").as_bytes()).unwrap();
        let err = ring.reload().unwrap_err().to_string();
        assert!(err.contains("blind-index"), "{err}");
        assert!(!err.contains(&other) && !err.contains(&k), "{err}");
        assert_eq!(ring.blind_index("phone", "1"), before);
        assert_ne!(ring.active_kek_id(), "k-9");
    }

    #[test]
    fn an_unknown_kek_id_makes_the_ring_look_at_its_source_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ring) = file_in(dir.path());
        // Another process adds a KEK and wraps under it.
        let other = KeyFile::new(&path);
        other.add_kek().unwrap();
        let theirs = KeyRing::load_or_create(&path).unwrap();
        let file = Uuid::new_v4();
        let w = theirs.wrap(&DataKey::generate(), file);
        // This ring has not reloaded yet, but the lookup does.
        assert!(ring.unwrap(&w.kek_id, &w.wrapped, file).is_ok());
        assert_eq!(ring.active_kek_id(), w.kek_id);
    }

    #[test]
    fn env_source_loads_the_same_format_and_is_read_only() {
        let var = format!("STRONGROOM_TEST_MASTER_KEY_{}", std::process::id());
        let a = BASE64.encode([1u8; 32]);
        let b = BASE64.encode([2u8; 32]);
        let i = BASE64.encode([9u8; 32]);
        std::env::set_var(&var, format!("k-new:{a} k-old:{b} blind-index:{i}"));
        let env = EnvKeys::take(&var).unwrap();
        // Taken out of the environment: children never inherit it.
        assert!(std::env::var(&var).is_err());
        let src: Arc<dyn KeySource> = Arc::new(env);
        let ring = KeyRing::from_source(src.clone()).unwrap();
        assert_eq!(
            ring.kek_ids(),
            vec!["k-new".to_string(), "k-old".to_string()]
        );
        let file_ring = KeyRing::from_keys(vec![("k-x".into(), [5u8; 32])], [9u8; 32]).unwrap();
        assert_eq!(ring.blind_index("d", "v"), file_ring.blind_index("d", "v"));
        assert!(!ring.reload_if_changed().unwrap());

        let err = src.add_kek().unwrap_err().to_string();
        assert!(err.contains(&var) && err.contains("--resume"), "{err}");
        assert!(src.remove_kek("k-new").is_err());
        let err = src.remove_kek("k-old").unwrap_err().to_string();
        assert!(err.contains("remove its line"), "{err}");
        assert!(!err.contains(&a) && !err.contains(&b), "{err}");

        // Newline-separated text with comments works too; bad text names the variable only.
        std::env::set_var(&var, format!("# keys\nk-1:{a}\nblind-index:{i}\n"));
        let env = EnvKeys::take(&var).unwrap();
        assert_eq!(env.load().unwrap().active_kek_id(), "k-1");
        std::env::set_var(&var, format!("k-1:{a}"));
        let err = EnvKeys::take(&var).unwrap().load().unwrap_err().to_string();
        assert!(err.contains(&var) && err.contains("blind-index"), "{err}");
        assert!(!err.contains(&a), "{err}");
        std::env::set_var(&var, "  ");
        assert!(EnvKeys::take(&var).is_none());
    }

    #[test]
    fn a_broken_key_file_is_never_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ring) = file_in(dir.path());
        let old = ring.active_kek_id();
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("k-broken:not-base64\n");
        fs::write(&path, &text).unwrap();
        let src = KeyFile::new(&path);
        assert!(src.add_kek().is_err());
        assert!(src.remove_kek(&old).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        // A ring in use keeps its keys when the file it came from turns bad.
        assert!(ring.reload().is_err());
        assert_eq!(ring.active_kek_id(), old);
    }
}
