//! Key management and the cryptographic primitives of the vault.
//!
//! Guarantees:
//! - Every file is encrypted under its own random 256-bit [`DataKey`] (see [`stream`]); the
//!   data key is only ever stored wrapped (AES-256-GCM) by a key-encryption key (KEK) from
//!   the [`KeyRing`]. A wrapped key is bound to its file id and KEK id: it cannot be
//!   unwrapped for another file or under another KEK id.
//! - Sensitive field values are encrypted with AES-256-GCM under a key derived from a KEK
//!   (HKDF-SHA256, info `strongroom field encryption v1`), with a random 96-bit nonce and
//!   the record id and field name as associated data, so a ciphertext cannot be moved to
//!   another record or field.
//! - Exact-match search on sensitive values goes through a keyed blind index
//!   (HMAC-SHA256), whose key does not change when KEKs are added or retired.
//! - Key material is zeroized on drop, never appears in `Debug` output and never appears in
//!   an error message.
//!
//! # Master key file format (version 1)
//!
//! A UTF-8 text file, mode 0600, one entry per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! k-3f9a0c1d:<base64 of 32 bytes>      <- first KEK line: wraps everything new
//! k-77e1b2aa:<base64 of 32 bytes>      <- older KEKs: still unwrap what they wrapped
//! blind-index:<base64 of 32 bytes>     <- the blind-index secret (exactly one)
//! ```
//!
//! Each line is `id:base64(32 bytes)` (standard base64 with padding). Key ids are 1 to 64
//! characters from `[A-Za-z0-9_-]` and unique. The reserved id `blind-index` names the
//! secret from which the blind-index key is derived; it is never used to wrap or encrypt,
//! and its position in the file does not matter. Every other line is a KEK; the first one
//! is the *active* KEK, used for all new wraps and field encryptions.
//!
//! Rotation (`strongroom rotate-keys`, see [`crate::rotation`]): a new KEK line is inserted
//! at the top and becomes active; data keys and field values wrapped by older KEKs stay
//! readable because each stored wrap records its KEK id; re-wrapping ([`KeyRing::rewrap`],
//! [`KeyRing::reseal_field`]) moves them to the active KEK without touching file content,
//! after which the old line can be removed. The blind-index line is never rotated by this
//! procedure, so existing blind indexes stay valid.
//!
//! # Where the keys come from
//!
//! A [`KeyRing`] is loaded from a [`KeySource`] (see [`source`]): the key file above, or
//! the environment variable `STRONGROOM_MASTER_KEY` holding the same text; a KMS can
//! implement the trait later. A key ring that came from a source can be reloaded in place
//! ([`KeyRing::reload_if_changed`]): every clone made with [`KeyRing::share`] sees the new
//! keys, each call works on one consistent snapshot, and a reload that would change the
//! blind-index secret is refused. A KEK id the ring does not know triggers a reload before
//! the lookup fails, so a server reads rows another process re-wrapped under a KEK it added
//! a moment ago.

pub mod source;
pub mod stream;

pub use source::{KeySource, Removed};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length in bytes of every key handled here (AES-256, HMAC-SHA256).
pub const KEY_LEN: usize = 32;
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// The reserved key-file id of the blind-index secret.
pub const BLIND_INDEX_ID: &str = "blind-index";

const FIELD_KEY_INFO: &[u8] = b"strongroom field encryption v1";
const BLIND_INDEX_INFO: &[u8] = b"strongroom blind index v1";
const BACKUP_INFO: &[u8] = b"strongroom backup v1";
const BACKUP_VAULT_ID_INFO: &[u8] = b"strongroom backup vault id v1";
/// Domain label in the data-key wrap AAD, so a wrap can never be confused with a field
/// ciphertext even if both were ever made under the same key.
const WRAP_AAD_LABEL: &[u8] = b"strongroom data key v1";
pub(crate) const KEY_FILE_HEADER: &str = "# strongroom key ring v1: see src/crypto/mod.rs for the format. Keep this file secret and backed up.\n";

/// Errors from key handling and decryption. They carry ids, paths and reasons, never key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key source other than a file (the environment, a KMS) that cannot be read or
    /// holds something invalid.
    #[error("{origin}: {reason}")]
    Source { origin: String, reason: String },
    /// The key source cannot be changed by this program (e.g. the environment).
    #[error("{origin} cannot be changed by strongroom: {hint}")]
    ReadOnly { origin: String, hint: String },
    #[error("invalid key ring: {0}")]
    InvalidKeyRing(String),
    #[error("no key-encryption key with id {0:?} in the key ring")]
    UnknownKek(String),
    /// Authentication failed: wrong key, wrong context (file id, record, field) or tampering.
    #[error("decryption failed: wrong key or context, or the data was altered")]
    Decrypt,
    /// A malformed encrypted object (bad header, bad lengths).
    #[error("malformed encrypted data: {0}")]
    Format(&'static str),
    /// The stream API was used out of order (data after the last chunk, a short chunk
    /// that is not the last, counter exhausted...).
    #[error("encrypted stream misuse: {0}")]
    Stream(&'static str),
}

/// A per-file data key: random, 256 bits, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_LEN]);

impl DataKey {
    pub fn generate() -> DataKey {
        let mut k = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut k);
        DataKey(k)
    }

    /// Only for fixed test vectors: production keys come from [`DataKey::generate`] or an
    /// unwrap.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A data key wrapped by the KEK `kek_id`: `wrapped` = nonce (12) ‖ ciphertext (32) ‖ tag (16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

struct Kek {
    id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
    /// HKDF(key, FIELD_KEY_INFO), derived once at load.
    field_key: Zeroizing<[u8; KEY_LEN]>,
}

/// One consistent set of keys: what a key source held when it was loaded.
struct Ring {
    /// Never empty; `keks[0]` is the active KEK.
    keks: Vec<Kek>,
    /// HKDF(blind-index secret, BLIND_INDEX_INFO).
    index_key: Zeroizing<[u8; KEY_LEN]>,
}

impl Ring {
    fn active(&self) -> &Kek {
        // `KeyRing::build` refuses an empty ring.
        &self.keks[0]
    }

    fn find(&self, id: &str) -> Option<&Kek> {
        self.keks.iter().find(|k| k.id == id)
    }
}

/// The key-encryption keys and the blind-index key.
///
/// Every method works on one snapshot of the keys, so a reload in the middle of a call
/// cannot mix two rings: a wrap and the KEK id it reports always belong together.
pub struct KeyRing {
    shared: Arc<Shared>,
}

struct Shared {
    ring: RwLock<Arc<Ring>>,
    /// Where the keys came from (None: built in memory, never reloaded).
    source: Option<Arc<dyn KeySource>>,
    seen: Mutex<Seen>,
}

/// The source's version token at the last load, and when the source was last asked.
#[derive(Default)]
struct Seen {
    version: Option<String>,
    at: Option<Instant>,
}

/// A source without a version token is asked at most this often when an unknown KEK id
/// shows up.
const UNVERSIONED_RELOAD_GAP: Duration = Duration::from_secs(1);

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("kek_ids", &self.kek_ids())
            .field("keys", &"<redacted>")
            .finish()
    }
}

fn hkdf32(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    // A 32-byte output is far below HKDF-SHA256's 255*32-byte limit, so this cannot fail.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(info, out.as_mut());
    out
}

pub(crate) fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(k.as_mut());
    k
}

pub(crate) fn random_kek_id() -> String {
    let mut b = [0u8; 4];
    OsRng.fill_bytes(&mut b);
    format!("k-{}", hex::encode(b))
}

impl KeyRing {
    /// Builds a key ring from KEKs (first = active) and the blind-index secret.
    pub fn from_keys(
        keks: Vec<(String, [u8; KEY_LEN])>,
        blind_index_secret: [u8; KEY_LEN],
    ) -> Result<KeyRing, CryptoError> {
        let keks = keks
            .into_iter()
            .map(|(id, key)| (id, Zeroizing::new(key)))
            .collect();
        KeyRing::build(keks, Zeroizing::new(blind_index_secret))
    }

    /// A key ring with one fresh random KEK and a fresh blind-index secret, held in memory
    /// only: for tests and tools that never persist anything.
    pub fn generate() -> KeyRing {
        KeyRing::from_parts(vec![(random_kek_id(), random_key())], random_key())
    }

    fn from_parts(
        keks: Vec<(String, Zeroizing<[u8; KEY_LEN]>)>,
        index_secret: Zeroizing<[u8; KEY_LEN]>,
    ) -> KeyRing {
        let keks = keks
            .into_iter()
            .map(|(id, key)| {
                let field_key = hkdf32(key.as_ref(), FIELD_KEY_INFO);
                Kek { id, key, field_key }
            })
            .collect();
        KeyRing::wrap_ring(
            Ring {
                keks,
                index_key: hkdf32(index_secret.as_ref(), BLIND_INDEX_INFO),
            },
            None,
        )
    }

    fn wrap_ring(ring: Ring, source: Option<Arc<dyn KeySource>>) -> KeyRing {
        KeyRing {
            shared: Arc::new(Shared {
                ring: RwLock::new(Arc::new(ring)),
                source,
                seen: Mutex::new(Seen::default()),
            }),
        }
    }

    pub(crate) fn build(
        keks: Vec<(String, Zeroizing<[u8; KEY_LEN]>)>,
        index_secret: Zeroizing<[u8; KEY_LEN]>,
    ) -> Result<KeyRing, CryptoError> {
        if keks.is_empty() {
            return Err(CryptoError::InvalidKeyRing(
                "no key-encryption key".to_string(),
            ));
        }
        for (i, (id, _)) in keks.iter().enumerate() {
            if !valid_key_id(id) || id == BLIND_INDEX_ID {
                return Err(CryptoError::InvalidKeyRing(format!(
                    "key id {id:?} is not valid (1-64 characters from A-Z a-z 0-9 - _, not {BLIND_INDEX_ID:?})"
                )));
            }
            if keks[..i].iter().any(|(other, _)| other == id) {
                return Err(CryptoError::InvalidKeyRing(format!(
                    "key id {id:?} appears twice"
                )));
            }
        }
        Ok(KeyRing::from_parts(keks, index_secret))
    }

    /// Loads the master key file, creating it (one fresh KEK and a blind-index secret,
    /// mode 0600) if it does not exist. Creation is atomic: the complete file is written
    /// under a temporary name and hard-linked into place, which fails if another process
    /// got there first, in which case that process's file is loaded. The ring remembers
    /// the file, so it can be reloaded when the file changes.
    pub fn load_or_create(path: &Path) -> Result<KeyRing, CryptoError> {
        let file = source::KeyFile::new(path);
        file.create_if_missing()?;
        file.warn_if_readable_by_others();
        KeyRing::from_source(Arc::new(file))
    }

    /// The key ring of a deployment: from the environment variable
    /// [`source::MASTER_KEY_ENV`] when it is set (the file is then not read), else from the
    /// key file at `path` (created if missing), as [`KeyRing::load_or_create`].
    pub fn open(path: &Path) -> Result<KeyRing, CryptoError> {
        match source::EnvKeys::take(source::MASTER_KEY_ENV) {
            Some(env) => KeyRing::from_source(Arc::new(env)),
            None => KeyRing::load_or_create(path),
        }
    }

    /// Loads the keys of `source` and remembers it for reloads.
    pub fn from_source(source: Arc<dyn KeySource>) -> Result<KeyRing, CryptoError> {
        let version = source.version();
        let loaded = source.load()?;
        let ring = loaded.ring();
        let keys = KeyRing {
            shared: Arc::new(Shared {
                ring: RwLock::new(ring),
                source: Some(source),
                seen: Mutex::new(Seen {
                    version,
                    at: Some(Instant::now()),
                }),
            }),
        };
        Ok(keys)
    }

    /// Another handle on the same keys: a reload through either is seen by both.
    pub fn share(&self) -> KeyRing {
        KeyRing {
            shared: self.shared.clone(),
        }
    }

    /// Where the keys come from (for messages), if they came from a source.
    pub fn source(&self) -> Option<Arc<dyn KeySource>> {
        self.shared.source.clone()
    }

    fn ring(&self) -> Arc<Ring> {
        match self.shared.ring.read() {
            Ok(r) => r.clone(),
            // A writer only ever stores a complete ring, so a poisoned lock still holds one.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the keys from the source again and puts them in place (the next call of any
    /// method uses them). Refused, keeping the keys in use, when the blind-index secret
    /// differs (stored blind indexes would stop matching). Returns whether the KEK ids
    /// (or their order) changed. A ring built in memory has nothing to reload: `Ok(false)`.
    pub fn reload(&self) -> Result<bool, CryptoError> {
        let Some(source) = &self.shared.source else {
            return Ok(false);
        };
        let version = source.version();
        let fresh = source.load()?.ring();
        let current = self.ring();
        if !bool::from(fresh.index_key.ct_eq(current.index_key.as_ref())) {
            return Err(CryptoError::InvalidKeyRing(format!(
                "{}: the blind-index secret differs from the one in use; keeping the keys in use \
                 (the {BLIND_INDEX_ID} line must never change)",
                source.describe()
            )));
        }
        let ids = |r: &Ring| r.keks.iter().map(|k| k.id.clone()).collect::<Vec<_>>();
        let changed = ids(&fresh) != ids(&current);
        match self.shared.ring.write() {
            Ok(mut r) => *r = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        let mut seen = self.shared.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.version = version;
        seen.at = Some(Instant::now());
        drop(seen);
        if changed {
            tracing::info!(
                source = %source.describe(),
                active = %self.active_kek_id(),
                kek_ids = ?self.kek_ids(),
                "key ring reloaded"
            );
        }
        Ok(changed)
    }

    /// Reloads when the source says it changed (its version token differs), or, for a
    /// source without a version token, at most once per second. Returns whether the KEK
    /// ids changed.
    pub fn reload_if_changed(&self) -> Result<bool, CryptoError> {
        let Some(source) = &self.shared.source else {
            return Ok(false);
        };
        let version = source.version();
        {
            let mut seen = self.shared.seen.lock().unwrap_or_else(|p| p.into_inner());
            match &version {
                Some(v) if seen.version.as_ref() == Some(v) => return Ok(false),
                Some(_) => {}
                None => {
                    if seen
                        .at
                        .is_some_and(|t| t.elapsed() < UNVERSIONED_RELOAD_GAP)
                    {
                        return Ok(false);
                    }
                    seen.at = Some(Instant::now());
                }
            }
        }
        self.reload()
    }

    /// Runs `f` with the KEK `id`; when the ring does not know it, the source is asked
    /// again first (another process may have just added it).
    fn with_kek<T>(
        &self,
        id: &str,
        f: impl FnOnce(&Kek) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        let ring = self.ring();
        if let Some(k) = ring.find(id) {
            return f(k);
        }
        match self.reload_if_changed() {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reloading the key ring failed"),
        }
        let ring = self.ring();
        match ring.find(id) {
            Some(k) => f(k),
            None => Err(CryptoError::UnknownKek(id.to_string())),
        }
    }

    /// Parses the key file format; `bad` turns a reason into the caller's error (it names
    /// line numbers, never line content).
    pub(crate) fn parse_text(
        text: &str,
        bad: impl Fn(String) -> CryptoError,
    ) -> Result<KeyRing, CryptoError> {
        let mut keks = Vec::new();
        let mut index = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Messages name the line number only: the line itself holds a key.
            let lineno = n + 1;
            let Some((id, b64)) = line.split_once(':') else {
                return Err(bad(format!("line {lineno}: expected id:base64")));
            };
            let id = id.trim();
            let decoded = Zeroizing::new(
                BASE64
                    .decode(b64.trim())
                    .map_err(|_| bad(format!("line {lineno}: the key is not valid base64")))?,
            );
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            if decoded.len() != KEY_LEN {
                return Err(bad(format!("line {lineno}: the key is not 32 bytes")));
            }
            key.copy_from_slice(&decoded);
            if id == BLIND_INDEX_ID {
                if index.is_some() {
                    return Err(bad(format!(
                        "line {lineno}: a second {BLIND_INDEX_ID} line"
                    )));
                }
                index = Some(key);
            } else {
                keks.push((id.to_string(), key));
            }
        }
        let index = index.ok_or_else(|| bad(format!("no {BLIND_INDEX_ID} line")))?;
        KeyRing::build(keks, index).map_err(|e| bad(e.to_string()))
    }

    /// The id of the KEK used for new wraps and field encryptions.
    pub fn active_kek_id(&self) -> String {
        self.ring().active().id.clone()
    }

    /// All KEK ids, active first.
    pub fn kek_ids(&self) -> Vec<String> {
        self.ring().keks.iter().map(|k| k.id.clone()).collect()
    }

    fn wrap_aad(file_id: Uuid, kek_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + 16 + kek_id.len());
        aad.extend_from_slice(WRAP_AAD_LABEL);
        aad.extend_from_slice(file_id.as_bytes());
        aad.extend_from_slice(kek_id.as_bytes());
        aad
    }

    /// Wraps a file's data key with the active KEK.
    pub fn wrap(&self, dk: &DataKey, file_id: Uuid) -> WrappedKey {
        let ring = self.ring();
        let kek = ring.active();
        let aad = KeyRing::wrap_aad(file_id, &kek.id);
        let wrapped = seal(&kek.key, &aad, dk.as_bytes());
        WrappedKey {
            kek_id: kek.id.clone(),
            wrapped,
        }
    }

    /// Unwraps a data key wrapped for `file_id` by the KEK `kek_id`.
    pub fn unwrap(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        file_id: Uuid,
    ) -> Result<DataKey, CryptoError> {
        self.with_kek(kek_id, |kek| {
            let aad = KeyRing::wrap_aad(file_id, kek_id);
            let plain = open(&kek.key, &aad, wrapped)?;
            if plain.len() != KEY_LEN {
                return Err(CryptoError::Decrypt);
            }
            let mut dk = DataKey([0u8; KEY_LEN]);
            dk.0.copy_from_slice(&plain);
            Ok(dk)
        })
    }

    /// Re-wraps a data key under the active KEK (key rotation); the content is untouched.
    pub fn rewrap(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        file_id: Uuid,
    ) -> Result<WrappedKey, CryptoError> {
        let dk = self.unwrap(kek_id, wrapped, file_id)?;
        Ok(self.wrap(&dk, file_id))
    }

    fn field_aad(record_id: Uuid, field: &str) -> Vec<u8> {
        // The record id has a fixed length, so record ‖ field is unambiguous.
        let mut aad = Vec::with_capacity(16 + field.len());
        aad.extend_from_slice(record_id.as_bytes());
        aad.extend_from_slice(field.as_bytes());
        aad
    }

    /// Encrypts a sensitive field value with the active KEK's field key. Returns the KEK id
    /// to store next to the ciphertext (nonce (12) ‖ ciphertext ‖ tag (16)).
    pub fn encrypt_field(
        &self,
        record_id: Uuid,
        field: &str,
        plaintext: &str,
    ) -> (String, Vec<u8>) {
        let ring = self.ring();
        let kek = ring.active();
        let ct = seal(
            &kek.field_key,
            &KeyRing::field_aad(record_id, field),
            plaintext.as_bytes(),
        );
        (kek.id.clone(), ct)
    }

    /// Decrypts a value made by [`KeyRing::encrypt_field`] for the same record and field.
    pub fn decrypt_field(
        &self,
        record_id: Uuid,
        field: &str,
        kek_id: &str,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<String>, CryptoError> {
        let plain = self.with_kek(kek_id, |kek| {
            open(
                &kek.field_key,
                &KeyRing::field_aad(record_id, field),
                ciphertext,
            )
        })?;
        // The tag verified, so this is what encrypt_field was given: valid UTF-8.
        match String::from_utf8(plain.to_vec()) {
            Ok(s) => Ok(Zeroizing::new(s)),
            Err(e) => {
                e.into_bytes().zeroize();
                Err(CryptoError::Decrypt)
            }
        }
    }

    /// Re-encrypts a sealed field value under the active KEK (key rotation): the same
    /// record and field (associated data), a fresh nonce. The plaintext lives only in a
    /// zeroized buffer for the length of the call.
    pub fn reseal_field(
        &self,
        record_id: Uuid,
        field: &str,
        kek_id: &str,
        ciphertext: &[u8],
    ) -> Result<(String, Vec<u8>), CryptoError> {
        let plain = self.decrypt_field(record_id, field, kek_id, ciphertext)?;
        Ok(self.encrypt_field(record_id, field, &plain))
    }

    /// The blind index of a (caller-normalized) value in a search domain: HMAC-SHA256 under
    /// the blind-index key of `domain ‖ 0x00 ‖ normalized`. Domains are code constants and
    /// must not contain a NUL byte. 32 bytes.
    pub fn blind_index(&self, domain: &str, normalized: &str) -> Vec<u8> {
        debug_assert!(!domain.contains('\0'), "blind-index domain contains NUL");
        // HMAC accepts keys of any length, so this cannot fail.
        let ring = self.ring();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(ring.index_key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// The keys of one backup file (see `src/backup/format.rs`): the stream key of its
    /// body and the key of its header MAC, from HKDF-SHA256 with the backup's random salt
    /// over the blind-index key, info `strongroom backup v1`. The blind-index secret is the
    /// one line of the key file that is never rotated, so a backup stays readable after
    /// KEK rotation; the key file itself is never in a backup.
    pub fn backup_keys(&self, salt: &[u8]) -> (DataKey, Zeroizing<[u8; KEY_LEN]>) {
        let mut okm = Zeroizing::new([0u8; 2 * KEY_LEN]);
        // 64 bytes are far below HKDF-SHA256's limit, so this cannot fail.
        let ring = self.ring();
        let _ = Hkdf::<Sha256>::new(Some(salt), ring.index_key.as_ref())
            .expand(BACKUP_INFO, okm.as_mut());
        let mut stream = DataKey([0u8; KEY_LEN]);
        stream.0.copy_from_slice(&okm[..KEY_LEN]);
        let mut mac = Zeroizing::new([0u8; KEY_LEN]);
        mac.copy_from_slice(&okm[KEY_LEN..]);
        (stream, mac)
    }

    /// A public 16-byte name of this key ring for backup headers (HKDF of the blind-index
    /// key, info `strongroom backup vault id v1`): it tells a backup made under another
    /// vault's key apart from a damaged one, and reveals nothing about the key.
    pub fn backup_vault_id(&self) -> [u8; 16] {
        let full = hkdf32(self.ring().index_key.as_ref(), BACKUP_VAULT_ID_INFO);
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        id
    }
}

/// AES-256-GCM with a fresh random nonce: returns nonce ‖ ciphertext ‖ tag.
fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    // Encryption fails only for inputs beyond 64 GiB, which no caller passes here.
    match cipher.encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: plaintext,
            aad,
        },
    ) {
        Ok(ct) => out.extend_from_slice(&ct),
        Err(_) => unreachable!("AES-GCM input size limit exceeded by a key or field value"),
    }
    out
}

/// Inverse of [`seal`].
fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn ring() -> KeyRing {
        KeyRing::from_keys(vec![("k-00000001".into(), [7u8; 32])], [9u8; 32]).unwrap()
    }

    #[test]
    fn wrap_round_trip_and_binding() {
        let keys = ring();
        let dk = DataKey::generate();
        let file = Uuid::new_v4();
        let w = keys.wrap(&dk, file);
        assert_eq!(w.kek_id, "k-00000001");
        assert_eq!(w.wrapped.len(), 60);
        let back = keys.unwrap(&w.kek_id, &w.wrapped, file).unwrap();
        assert_eq!(back.as_bytes(), dk.as_bytes());
        // Another file id, a flipped byte, an unknown KEK: refused.
        assert!(matches!(
            keys.unwrap(&w.kek_id, &w.wrapped, Uuid::new_v4()),
            Err(CryptoError::Decrypt)
        ));
        let mut bad = w.wrapped.clone();
        bad[20] ^= 1;
        assert!(keys.unwrap(&w.kek_id, &bad, file).is_err());
        assert!(matches!(
            keys.unwrap("k-nope", &w.wrapped, file),
            Err(CryptoError::UnknownKek(_))
        ));
        // The same KEK bytes under another id do not unwrap it: the id is bound.
        let renamed =
            KeyRing::from_keys(vec![("k-00000002".into(), [7u8; 32])], [9u8; 32]).unwrap();
        assert!(renamed.unwrap("k-00000002", &w.wrapped, file).is_err());
    }

    #[test]
    fn rotation_keeps_old_wraps_readable() {
        let old = ring();
        let file = Uuid::new_v4();
        let dk = DataKey::generate();
        let w = old.wrap(&dk, file);
        let (fk, fct) = old.encrypt_field(file, "phone", "555");
        let rotated = KeyRing::from_keys(
            vec![
                ("k-00000002".into(), [8u8; 32]),
                ("k-00000001".into(), [7u8; 32]),
            ],
            [9u8; 32],
        )
        .unwrap();
        assert_eq!(rotated.active_kek_id(), "k-00000002");
        let w2 = rotated.rewrap(&w.kek_id, &w.wrapped, file).unwrap();
        assert_eq!(w2.kek_id, "k-00000002");
        let dk2 = rotated.unwrap(&w2.kek_id, &w2.wrapped, file).unwrap();
        assert_eq!(dk2.as_bytes(), dk.as_bytes());
        assert_eq!(
            rotated
                .decrypt_field(file, "phone", &fk, &fct)
                .unwrap()
                .as_str(),
            "555"
        );
        assert_eq!(
            rotated.blind_index("phone", "555"),
            old.blind_index("phone", "555")
        );
    }

    #[test]
    fn field_encryption_is_bound_to_record_and_field() {
        let keys = ring();
        let rec = Uuid::new_v4();
        let (kid, ct) = keys.encrypt_field(rec, "national_id", "AB123456");
        assert_eq!(
            keys.decrypt_field(rec, "national_id", &kid, &ct)
                .unwrap()
                .as_str(),
            "AB123456"
        );
        assert!(keys.decrypt_field(rec, "phone", &kid, &ct).is_err());
        assert!(keys
            .decrypt_field(Uuid::new_v4(), "national_id", &kid, &ct)
            .is_err());
        // Random nonces: the same value encrypts differently each time.
        assert_ne!(keys.encrypt_field(rec, "national_id", "AB123456").1, ct);
        // The field key is derived, not the KEK itself: the data-key wrap cannot open it.
        assert!(keys.unwrap(&kid, &ct, rec).is_err());
        assert!(keys
            .decrypt_field(rec, "national_id", &kid, &ct[..10])
            .is_err());
    }

    #[test]
    fn blind_index_is_deterministic_keyed_and_domain_separated() {
        let keys = ring();
        let a = keys.blind_index("phone", "5551234");
        assert_eq!(a.len(), 32);
        assert_eq!(a, keys.blind_index("phone", "5551234"));
        assert_ne!(a, keys.blind_index("national_id", "5551234"));
        assert_ne!(a, keys.blind_index("phone", "5551235"));
        let other = KeyRing::from_keys(vec![("k-00000001".into(), [7u8; 32])], [10u8; 32]).unwrap();
        assert_ne!(a, other.blind_index("phone", "5551234"));
        // Regression vector (first run, cross-checked with Python `cryptography`): pins the
        // derivation (HKDF info, separator, HMAC) so stored indexes stay searchable.
        assert_eq!(
            hex::encode(&a),
            "8be9191d291bd873a88d6cfead29ab5785bd809fb4b4fc14bd3a5f220666f454"
        );
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("master.key");
        let a = KeyRing::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = KeyRing::load_or_create(&path).unwrap();
        assert_eq!(a.active_kek_id(), b.active_kek_id());
        assert!(a.active_kek_id().starts_with("k-") && a.active_kek_id().len() == 10);
        let file = Uuid::new_v4();
        let w = a.wrap(&DataKey::generate(), file);
        assert!(b.unwrap(&w.kek_id, &w.wrapped, file).is_ok());
        assert_eq!(a.blind_index("d", "x"), b.blind_index("d", "x"));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn concurrent_creation_yields_one_key_ring() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        KeyRing::load_or_create(&path)
                            .unwrap()
                            .active_kek_id()
                            .to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| id == &ids[0]));
    }

    #[test]
    fn key_file_errors_never_echo_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let secret = BASE64.encode([42u8; 31]);
        fs::write(&path, format!("k-1:{secret}\nblind-index:{secret}\n")).unwrap();
        let err = KeyRing::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains(&secret), "{err}");
        fs::write(&path, format!("k-1:{}\n", BASE64.encode([1u8; 32]))).unwrap();
        let err = KeyRing::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("blind-index"), "{err}");
        fs::write(&path, "k-1:!!!not base64 SECRETSECRET\n").unwrap();
        let err = KeyRing::load_or_create(&path).unwrap_err().to_string();
        assert!(!err.contains("SECRETSECRET"), "{err}");
        let k = BASE64.encode([1u8; 32]);
        fs::write(&path, format!("k-1:{k}\nk-1:{k}\nblind-index:{k}\n")).unwrap();
        assert!(KeyRing::load_or_create(&path).is_err());
    }

    #[test]
    fn debug_output_hides_keys() {
        let keys = ring();
        let s = format!("{keys:?} {:?}", DataKey::from_bytes([0xab; 32]));
        assert!(s.contains("k-00000001"));
        assert!(!s.contains("171") && !s.contains("ab, ab") && !s.contains("7, 7"));
        assert!(s.contains("redacted"));
    }
}
