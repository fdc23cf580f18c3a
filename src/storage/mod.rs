//! Encrypted file storage on an object store (local directory or S3-compatible).
//!
//! Guarantees:
//! - Only ciphertext reaches the object store: content is encrypted chunk by chunk
//!   ([`crate::crypto::stream`]) under a fresh data key per file, and the data key leaves this
//!   module only wrapped by the key ring's active KEK.
//! - Object keys are random (`ab/cd/<64 hex>`) and say nothing about the file, its record or
//!   its name.
//! - Uploads and downloads stream with bounded memory whatever the file size: on the way
//!   in, a fixed pool of reused 64 KiB chunk buffers per upload ([`pipeline`]): the parts
//!   in flight and one being filled ([`LOCAL_PART_SIZE`] × ([`PART_CONCURRENCY`] + 2), about
//!   4 MiB, for a local directory; [`PART_SIZE`] × ([`PART_CONCURRENCY`] + 2), about 32 MiB,
//!   for S3, whose parts must be at least 5 MiB); about two chunks on the way out.
//! - An upload that fails (over the size limit, reader error, store error) leaves no object
//!   behind: the multipart upload is aborted (small files are written with one PUT at
//!   the end, so nothing is started for them before the content is complete).
//! - A download yields plaintext only after the chunk's tag verifies; at the end it checks
//!   that the object ended with its last chunk and that the size and SHA-256 match the
//!   database's. On any failure the stream yields one error and ends.
//! - Errors never contain key material or plaintext.
//!
//! Unreferenced objects (an upload whose database row was never written) are removed by
//! [`gc::run_once`].

pub mod gc;
mod pipeline;

pub use pipeline::PART_CONCURRENCY;
pub mod scrub;
pub mod staging;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, Stream, StreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::AsyncRead;
use uuid::Uuid;

use crate::crypto::stream::{self, Decryptor, Encryptor, CHUNK_SIZE, CHUNK_TAG_LEN, HEADER_LEN};
use crate::crypto::{CryptoError, KeyRing};

/// Multipart part size of remote stores: above S3's 5 MiB minimum, small enough to keep
/// memory bounded.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Multipart part size of a local directory store, which has no minimum: a part is only a
/// batch of writes to the staged file, and each part's chunks stay in memory until written.
pub const LOCAL_PART_SIZE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the file exceeds the size limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Reading the content to store failed (typically the client went away).
    #[error("reading the file content failed: {0}")]
    Io(#[from] std::io::Error),
    /// A stored object failed verification; the reason never includes content.
    #[error("stored object {object_key} failed verification: {reason}")]
    Integrity { object_key: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("invalid setting object_store: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// What [`Store::put_encrypted`] stored; the caller records it in `files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub object_key: String,
    pub kek_id: String,
    pub wrapped_key: Vec<u8>,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A stored file as the database describes it: what [`Store::open_decrypted`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub file_id: Uuid,
    pub object_key: String,
    pub kek_id: String,
    pub wrapped_key: Vec<u8>,
    pub size: u64,
    pub sha256: [u8; 32],
}

/// The object store holding encrypted file content.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    part_size: usize,
    /// The directory of a local store (for the staging files of interrupted writes).
    local_root: Option<std::path::PathBuf>,
}

/// Settings of the S3 builder set explicitly, overriding the `AWS_*` environment.
pub type S3Options<'a> = &'a [(AmazonS3ConfigKey, &'a str)];

fn config_err(msg: impl Into<String>) -> StorageError {
    StorageError::Config(msg.into())
}

fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| config_err(format!("cannot create {}: {e}", dir.display())))
}

impl Store {
    /// A store writing multipart uploads in [`PART_SIZE`] parts (valid for any backend).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Store {
        Store {
            inner,
            part_size: PART_SIZE,
            local_root: None,
        }
    }

    /// A local-directory store rooted at `dir`: [`LOCAL_PART_SIZE`] parts.
    fn local(fs: LocalFileSystem, dir: &Path) -> Store {
        Store {
            inner: Arc::new(fs),
            part_size: LOCAL_PART_SIZE,
            local_root: Some(dir.to_path_buf()),
        }
    }

    /// The directory of a local store; `None` for other stores.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// The store named by the `object_store` setting:
    /// - unset: the directory `<data_dir>/objects` (created, mode 0700);
    /// - `file:///absolute/path`: that directory (created, mode 0700);
    /// - `s3://bucket[/prefix]`: an S3 bucket, configured from the `AWS_*` environment
    ///   (credentials, `AWS_REGION`, `AWS_ENDPOINT_URL` for S3-compatible stores; plain
    ///   HTTP is allowed when that endpoint is `http://`).
    pub fn from_settings(
        object_store: Option<&str>,
        data_dir: &Path,
    ) -> Result<Store, StorageError> {
        Store::from_settings_with(object_store, data_dir, &[])
    }

    /// [`Store::from_settings`] with S3 options given explicitly; they override the
    /// environment. Tests use this rather than mutating the process environment.
    pub fn from_settings_with(
        object_store: Option<&str>,
        data_dir: &Path,
        s3_options: S3Options<'_>,
    ) -> Result<Store, StorageError> {
        let Some(value) = object_store.map(str::trim).filter(|v| !v.is_empty()) else {
            let dir = data_dir.join("objects");
            create_private_dir(&dir)?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| config_err(format!("{}: {e}", dir.display())))?;
            return Ok(Store::local(fs, &dir));
        };
        if let Some(path) = value.strip_prefix("file://") {
            let dir = Path::new(path);
            if !dir.is_absolute() {
                return Err(config_err(
                    "a file:// URL needs an absolute path (file:///var/lib/strongroom/objects)",
                ));
            }
            create_private_dir(dir)?;
            let fs = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| config_err(format!("{}: {e}", dir.display())))?;
            return Ok(Store::local(fs, dir));
        }
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // Credentials in the URL would end up in logs and process listings.
            if bucket.is_empty() || bucket.contains(['@', ':', '?', '#']) {
                return Err(config_err(
                    "expected s3://bucket[/prefix]; credentials come from the AWS_* environment",
                ));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for (key, v) in s3_options {
                builder = builder.with_config(*key, *v);
            }
            let http = builder
                .get_config_value(&AmazonS3ConfigKey::Endpoint)
                .is_some_and(|e| e.starts_with("http://"));
            if http {
                builder = builder.with_allow_http(true);
            }
            let s3 = builder
                .build()
                .map_err(|e| config_err(format!("S3 configuration: {e}")))?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                let prefix = ObjectPath::parse(prefix)
                    .map_err(|_| config_err("the S3 prefix is not a valid object path"))?;
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Store::new(store));
        }
        Err(config_err(
            "expected file:///absolute/path or s3://bucket[/prefix]",
        ))
    }

    /// The underlying object store (tests, diagnostics).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Encrypts `reader`'s content for `file_id` and stores it under a new random key.
    /// Fails with [`StorageError::TooLarge`] as soon as more than `max_size` bytes arrive,
    /// and with [`StorageError::Io`] if the reader fails; either way no object is left.
    pub async fn put_encrypted<R>(
        &self,
        keys: &KeyRing,
        file_id: Uuid,
        mut reader: R,
        max_size: u64,
    ) -> Result<StoredObject, StorageError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let dk = crate::crypto::DataKey::generate();
        let wrapped = keys.wrap(&dk, file_id);
        let object_key = random_object_key();
        let path = ObjectPath::parse(&object_key)
            .map_err(|_| config_err("generated an invalid object key"))?;
        let (enc, header) = Encryptor::new(&dk, file_id);
        drop(dk);

        let pool = pipeline::ChunkPool::new(pipeline::pool_capacity(self.part_size));
        let mut sink = pipeline::Sink::new(self.inner.clone(), path, self.part_size);
        let result = async {
            sink.push(Bytes::copy_from_slice(&header)).await?;
            pipeline::encrypt_into(&mut reader, enc, &mut sink, &pool, max_size).await
        }
        .await;
        let done = match result {
            Ok(done) => {
                sink.finish().await?;
                done
            }
            Err(e) => {
                sink.abort().await;
                return Err(e);
            }
        };
        Ok(StoredObject {
            object_key,
            kek_id: wrapped.kek_id,
            wrapped_key: wrapped.wrapped,
            size: done.size,
            sha256: done.sha256,
        })
    }

    /// Streams a stored file's plaintext, verifying as it goes (see the module header).
    pub async fn open_decrypted(
        &self,
        keys: &KeyRing,
        f: &FileRef,
    ) -> Result<impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static, StorageError>
    {
        let integrity = |reason: &str| StorageError::Integrity {
            object_key: f.object_key.clone(),
            reason: reason.to_string(),
        };
        let dk = match keys.unwrap(&f.kek_id, &f.wrapped_key, f.file_id) {
            Ok(dk) => dk,
            Err(CryptoError::UnknownKek(id)) => {
                return Err(config_err(format!(
                    "the key ring has no key-encryption key {id:?}"
                )))
            }
            Err(_) => return Err(integrity("the wrapped data key does not open")),
        };
        let path = parse_key(&f.object_key)?;
        let got = self.inner.get(&path).await?;
        if got.meta.size != stream::encrypted_len(f.size) {
            return Err(integrity("the object length does not match the file size"));
        }
        let reader = DecryptingStream {
            src: got.into_stream(),
            buf: BytesMut::with_capacity(2 * (CHUNK_SIZE + CHUNK_TAG_LEN)),
            dk: Some(dk),
            dec: None,
            src_done: false,
            done: false,
            hasher: Sha256::new(),
            size: 0,
            file_id: f.file_id,
            expected_size: f.size,
            expected_sha: f.sha256,
            object_key: f.object_key.clone(),
        };
        Ok(reader)
    }

    /// Reads a whole stored file into memory: for tests and small files.
    pub async fn read_to_vec(&self, keys: &KeyRing, f: &FileRef) -> Result<Vec<u8>, StorageError> {
        let mut s = std::pin::pin!(self.open_decrypted(keys, f).await?);
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    /// Deletes an object; deleting an absent object succeeds.
    pub async fn delete(&self, object_key: &str) -> Result<(), StorageError> {
        let path = parse_key(object_key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `reader`'s content unencrypted, the same way `put_encrypted` stores ciphertext.
    /// Only for the storage benchmark's plain baseline; returns the byte count.
    #[doc(hidden)]
    pub async fn put_plain<R>(&self, object_key: &str, mut reader: R) -> Result<u64, StorageError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let path = parse_key(object_key)?;
        let mut sink = pipeline::Sink::new(self.inner.clone(), path, self.part_size);
        let mut size = 0u64;
        let result: Result<(), StorageError> = async {
            loop {
                let mut buf = vec![0u8; CHUNK_SIZE];
                let n = pipeline::fill(&mut reader, &mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                size += n as u64;
                sink.push(Bytes::from(buf)).await?;
            }
        }
        .await;
        match result {
            Ok(()) => sink.finish().await?,
            Err(e) => {
                sink.abort().await;
                return Err(e);
            }
        }
        Ok(size)
    }

    /// Streams an object's bytes as stored. Only for the storage benchmark.
    #[doc(hidden)]
    pub async fn get_plain(
        &self,
        object_key: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static, StorageError>
    {
        let path = parse_key(object_key)?;
        let got = self.inner.get(&path).await?;
        Ok(got.into_stream().map(|r| r.map_err(StorageError::from)))
    }
}

/// `ab/cd/<64 hex>`: 256 random bits, spread over two directory levels so a local store
/// never puts millions of files in one directory.
fn random_object_key() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let h = hex::encode(b);
    format!("{}/{}/{}", &h[..2], &h[2..4], h)
}

/// True for keys of the form [`random_object_key`] makes (what GC may delete).
pub fn is_object_key(key: &str) -> bool {
    let mut parts = key.split('/');
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let hex = |s: &str| s.bytes().all(|x| matches!(x, b'0'..=b'9' | b'a'..=b'f'));
    a.len() == 2
        && b.len() == 2
        && c.len() == 64
        && hex(c)
        && c.starts_with(a)
        && c[2..].starts_with(b)
}

fn parse_key(object_key: &str) -> Result<ObjectPath, StorageError> {
    ObjectPath::parse(object_key).map_err(|_| StorageError::Integrity {
        object_key: object_key.to_string(),
        reason: "the object key is malformed".into(),
    })
}

/// The plaintext stream of [`Store::open_decrypted`].
struct DecryptingStream {
    src: BoxStream<'static, object_store::Result<Bytes>>,
    buf: BytesMut,
    /// Held until the header arrives.
    dk: Option<crate::crypto::DataKey>,
    dec: Option<Decryptor>,
    src_done: bool,
    done: bool,
    hasher: Sha256,
    size: u64,
    file_id: Uuid,
    expected_size: u64,
    expected_sha: [u8; 32],
    object_key: String,
}

impl DecryptingStream {
    fn integrity(&self, reason: impl Into<String>) -> StorageError {
        StorageError::Integrity {
            object_key: self.object_key.clone(),
            reason: reason.into(),
        }
    }

    /// Called with whatever is buffered; returns Ready(Some) when it can make progress
    /// without more input, Ready(None) when it needs more.
    fn step(&mut self) -> Option<Result<Bytes, StorageError>> {
        if self.dec.is_none() {
            if self.buf.len() < HEADER_LEN {
                return self
                    .src_done
                    .then(|| Err(self.integrity("the object is truncated")));
            }
            let header = self.buf.split_to(HEADER_LEN);
            let Some(dk) = self.dk.take() else {
                return Some(Err(self.integrity("the stream lost its key")));
            };
            match Decryptor::new(&dk, self.file_id, &header) {
                Ok(d) => self.dec = Some(d),
                Err(e) => return Some(Err(self.integrity(e.to_string()))),
            }
        }
        let full = CHUNK_SIZE + CHUNK_TAG_LEN;
        // A full chunk with more bytes after it cannot be the last one.
        let (take, last) = if self.buf.len() > full {
            (full, false)
        } else if self.src_done {
            (self.buf.len(), true)
        } else {
            return None;
        };
        let chunk = self.buf.split_to(take);
        let Some(dec) = self.dec.as_mut() else {
            return Some(Err(self.integrity("the stream ended twice")));
        };
        let plain = match dec.decrypt_chunk(&chunk, last) {
            Ok(p) => p,
            Err(e) => return Some(Err(self.integrity(e.to_string()))),
        };
        self.size += plain.len() as u64;
        if self.size > self.expected_size {
            return Some(Err(self.integrity("the content is longer than recorded")));
        }
        self.hasher.update(&plain);
        if last {
            if let Some(dec) = self.dec.take() {
                if let Err(e) = dec.finish() {
                    return Some(Err(self.integrity(e.to_string())));
                }
            }
            if self.size != self.expected_size {
                return Some(Err(self.integrity("the content is shorter than recorded")));
            }
            let sha: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
            if sha != self.expected_sha {
                return Some(Err(self.integrity("the SHA-256 does not match")));
            }
            self.done = true;
        }
        Some(Ok(Bytes::from(plain)))
    }
}

impl Stream for DecryptingStream {
    type Item = Result<Bytes, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(item) = this.step() {
                if item.is_err() {
                    this.done = true;
                    this.buf.clear();
                }
                return Poll::Ready(Some(item));
            }
            match this.src.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => this.buf.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => this.src_done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_are_random_and_recognised() {
        let a = random_object_key();
        let b = random_object_key();
        assert_ne!(a, b);
        assert!(is_object_key(&a), "{a}");
        assert_eq!(a.len(), 2 + 1 + 2 + 1 + 64);
        assert!(!is_object_key("ab/cd/ef"));
        assert!(!is_object_key(&a.replace('/', "_")));
        assert!(!is_object_key(&format!("x/{a}")));
        assert!(!is_object_key(&format!("00/00/{}", "a".repeat(64))));
    }

    #[test]
    fn settings_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "http://x",
            "file://relative/path",
            "s3://",
            "s3://key:secret@bucket/p",
            "/abs",
        ] {
            let err = Store::from_settings(Some(bad), dir.path())
                .unwrap_err()
                .to_string();
            assert!(err.contains("object_store"), "{bad}: {err}");
            assert!(!err.contains("secret"), "{bad}: {err}");
        }
        Store::from_settings(None, dir.path()).unwrap();
        let objects = dir.path().join("objects");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&objects).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let other = dir.path().join("elsewhere");
        Store::from_settings(Some(&format!("file://{}", other.display())), dir.path()).unwrap();
        assert!(other.is_dir());
        Store::from_settings_with(
            Some("s3://bucket/some/prefix"),
            dir.path(),
            &[
                (AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:1"),
                (AmazonS3ConfigKey::Region, "us-east-1"),
            ],
        )
        .unwrap();
    }
}
