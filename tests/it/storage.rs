//! Encrypted file storage: round trips, confidentiality at rest, tamper detection, upload
//! limits and failures, and garbage collection. Every scenario is written once and run
//! against both a local directory store and an S3 store (moto).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use strongroom::crypto::stream::{CHUNK_SIZE, CHUNK_TAG_LEN, HEADER_LEN};
use strongroom::crypto::KeyRing;
use strongroom::storage::gc::{self, GcReport, GC_LOCK_KEY};
use strongroom::storage::{is_object_key, FileRef, StorageError, Store, StoredObject};
use tempfile::TempDir;
use tokio::io::{AsyncRead, ReadBuf};
use uuid::Uuid;

use crate::common::s3::{self, S3Bucket};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

// ---- fixtures ------------------------------------------------------------------------------

struct Fx {
    store: Store,
    keys: KeyRing,
    dir: TempDir,
    s3: Option<S3Bucket>,
}

fn local() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::from_settings(None, dir.path()).unwrap();
    Fx {
        store,
        keys: KeyRing::generate(),
        dir,
        s3: None,
    }
}

/// `None` when S3 tests are skipped (see `common::s3`).
fn s3() -> Option<Fx> {
    let bucket = s3::bucket()?;
    let dir = tempfile::tempdir().unwrap();
    let store = bucket.store(dir.path());
    Some(Fx {
        store,
        keys: KeyRing::generate(),
        dir,
        s3: Some(bucket),
    })
}

impl Fx {
    fn os(&self) -> &dyn ObjectStore {
        self.store.object_store().as_ref()
    }

    async fn keys_in_store(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .os()
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        out.sort();
        out
    }

    async fn get(&self, key: &str) -> Vec<u8> {
        let p = ObjectPath::parse(key).unwrap();
        self.os()
            .get(&p)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    async fn overwrite(&self, key: &str, bytes: Vec<u8>) {
        let p = ObjectPath::parse(key).unwrap();
        self.os().put(&p, PutPayload::from(bytes)).await.unwrap();
    }

    /// Every regular file under the tempdir (the local store's directory): catches staging
    /// files a failed upload might leave, which the store's listing hides.
    fn files_on_disk(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }

    /// Nothing stored and nothing half-stored.
    async fn assert_nothing_stored(&self) {
        assert_eq!(self.keys_in_store().await, Vec::<String>::new());
        assert_eq!(self.files_on_disk(), Vec::<PathBuf>::new());
        if let Some(b) = &self.s3 {
            assert_eq!(b.pending_uploads(), 0, "a multipart upload was left open");
        }
    }

    async fn put(
        &self,
        file_id: Uuid,
        content: SeededReader,
    ) -> Result<StoredObject, StorageError> {
        self.store
            .put_encrypted(&self.keys, file_id, content, u64::MAX)
            .await
    }

    /// (bytes, SHA-256) of the decrypted stream, or the error it ended with and the byte
    /// count released before it.
    async fn read(&self, f: &FileRef) -> Result<(u64, [u8; 32]), (u64, StorageError)> {
        let mut s = std::pin::pin!(self
            .store
            .open_decrypted(&self.keys, f)
            .await
            .map_err(|e| (0, e))?);
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => {
                    n += b.len() as u64;
                    h.update(&b);
                }
                Err(e) => {
                    // The stream ends after an error.
                    assert!(s.next().await.is_none());
                    return Err((n, e));
                }
            }
        }
        Ok((n, h.finalize().into()))
    }
}

fn file_ref(file_id: Uuid, s: &StoredObject) -> FileRef {
    FileRef {
        file_id,
        object_key: s.object_key.clone(),
        kek_id: s.kek_id.clone(),
        wrapped_key: s.wrapped_key.clone(),
        size: s.size,
        sha256: s.sha256,
    }
}

/// Deterministic pseudo-random content generated on the fly, so a 200 MiB file never sits
/// in memory. Can be made to fail after some bytes (a client that disconnects).
struct SeededReader {
    rng: u64,
    block: Vec<u8>,
    pos: usize,
    remaining: u64,
    fail_after: Option<u64>,
    emitted: u64,
    /// Largest read served, to exercise short reads.
    max_read: usize,
}

impl SeededReader {
    fn new(seed: u64, size: u64) -> SeededReader {
        SeededReader {
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            block: Vec::new(),
            pos: 0,
            remaining: size,
            fail_after: None,
            emitted: 0,
            max_read: 7001,
        }
    }

    fn failing_after(mut self, n: u64) -> SeededReader {
        self.fail_after = Some(n);
        self
    }

    fn refill(&mut self) {
        self.block.clear();
        for _ in 0..8192 {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let w = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
            self.block.extend_from_slice(&w.to_le_bytes());
        }
        self.pos = 0;
    }

    fn next_piece(&mut self, max: usize) -> &[u8] {
        if self.pos == self.block.len() {
            self.refill();
        }
        let n = max
            .min(self.block.len() - self.pos)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let start = self.pos;
        self.pos += n;
        self.remaining -= n as u64;
        self.emitted += n as u64;
        &self.block[start..start + n]
    }

    /// SHA-256 of the whole content, computed without the store.
    fn digest(seed: u64, size: u64) -> [u8; 32] {
        let mut r = SeededReader::new(seed, size);
        let mut h = Sha256::new();
        while r.remaining > 0 {
            h.update(r.next_piece(usize::MAX));
        }
        h.finalize().into()
    }
}

impl AsyncRead for SeededReader {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.fail_after.is_some_and(|f| this.emitted >= f) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the client went away",
            )));
        }
        let mut max = buf.remaining().min(this.max_read);
        if let Some(f) = this.fail_after {
            max = max.min(usize::try_from(f - this.emitted).unwrap_or(usize::MAX));
        }
        if this.remaining > 0 {
            let piece = this.next_piece(max);
            buf.put_slice(piece);
        }
        Poll::Ready(Ok(()))
    }
}

/// An in-memory reader over fixed bytes.
fn bytes_reader(b: Vec<u8>) -> io::Cursor<Vec<u8>> {
    io::Cursor::new(b)
}

// ---- scenarios -------------------------------------------------------------------------------

async fn round_trips(fx: &Fx, sizes: &[u64]) {
    for (i, &size) in sizes.iter().enumerate() {
        let seed = 1000 + i as u64;
        let file_id = Uuid::new_v4();
        let stored = fx
            .put(file_id, SeededReader::new(seed, size))
            .await
            .unwrap();
        let expected = SeededReader::digest(seed, size);
        assert_eq!(stored.size, size);
        assert_eq!(stored.sha256, expected, "size {size}: upload digest");
        assert_eq!(stored.kek_id, fx.keys.active_kek_id());
        assert!(is_object_key(&stored.object_key), "{}", stored.object_key);
        assert!(!stored.object_key.contains(&file_id.simple().to_string()));
        let (n, sha) = fx.read(&file_ref(file_id, &stored)).await.unwrap();
        assert_eq!(n, size);
        assert_eq!(sha, expected, "size {size}: read-back digest");
    }
    assert_eq!(fx.keys_in_store().await.len(), sizes.len());
}

async fn plaintext_never_reaches_the_store(fx: &Fx) {
    let marker = b"STRONGROOM-PLAINTEXT-MARKER-5f1c";
    let mut content = Vec::new();
    while content.len() < 300 * KIB as usize {
        content.extend_from_slice(marker);
        content.extend_from_slice(b" some filler text between markers\n");
    }
    let file_id = Uuid::new_v4();
    let stored = fx
        .store
        .put_encrypted(&fx.keys, file_id, bytes_reader(content.clone()), u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        fx.store
            .read_to_vec(&fx.keys, &file_ref(file_id, &stored))
            .await
            .unwrap(),
        content
    );
    let found = |hay: &[u8]| hay.windows(marker.len()).any(|w| w == marker);
    let keys = fx.keys_in_store().await;
    assert_eq!(keys, vec![stored.object_key.clone()]);
    for k in &keys {
        let body = fx.get(k).await;
        assert!(
            body.len() > content.len(),
            "the object holds the ciphertext"
        );
        assert!(!found(&body), "plaintext marker found in object {k}");
    }
    for p in fx.files_on_disk() {
        assert!(
            !found(&std::fs::read(&p).unwrap()),
            "plaintext marker found in {}",
            p.display()
        );
    }
}

async fn expect_integrity(fx: &Fx, f: &FileRef) -> u64 {
    match fx.read(f).await {
        Err((n, StorageError::Integrity { object_key, reason })) => {
            assert_eq!(object_key, f.object_key);
            assert!(!reason.is_empty());
            n
        }
        Err((_, e)) => panic!("expected an integrity error, got {e:?}"),
        Ok(_) => panic!("tampered object read without error"),
    }
}

async fn tampering_is_detected(fx: &Fx) {
    let size = 2 * CHUNK_SIZE as u64 + 100;
    let file_id = Uuid::new_v4();
    let stored = fx.put(file_id, SeededReader::new(7, size)).await.unwrap();
    let f = file_ref(file_id, &stored);
    let key = stored.object_key.clone();
    let original = fx.get(&key).await;
    let full = CHUNK_SIZE + CHUNK_TAG_LEN;
    assert_eq!(
        original.len(),
        HEADER_LEN + 3 * CHUNK_TAG_LEN + size as usize
    );

    // One flipped ciphertext byte in the second chunk: the first chunk (verified) may have
    // been released, nothing of the second.
    let mut t = original.clone();
    t[HEADER_LEN + full + 1234] ^= 0x20;
    fx.overwrite(&key, t).await;
    let released = expect_integrity(fx, &f).await;
    assert!(released <= CHUNK_SIZE as u64, "released {released} bytes");

    // A flipped tag byte in the last chunk: nothing of it is released, and nothing at all
    // past the verified chunks.
    let mut t = original.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    fx.overwrite(&key, t).await;
    assert!(expect_integrity(fx, &f).await <= 2 * CHUNK_SIZE as u64);

    // A flipped header byte.
    let mut t = original.clone();
    t[12] ^= 1;
    fx.overwrite(&key, t).await;
    assert_eq!(expect_integrity(fx, &f).await, 0);

    // Truncated: the object no longer matches the recorded size.
    fx.overwrite(&key, original[..original.len() - 10].to_vec())
        .await;
    expect_integrity(fx, &f).await;

    // Truncated at a chunk boundary with the recorded size "fixed" to match (as if the
    // database were altered too): the stream has no last chunk.
    fx.overwrite(&key, original[..HEADER_LEN + 2 * full].to_vec())
        .await;
    let cut = FileRef {
        size: 2 * CHUNK_SIZE as u64,
        ..f.clone()
    };
    assert!(expect_integrity(fx, &cut).await <= CHUNK_SIZE as u64);

    // The first two chunks swapped.
    let mut t = original[..HEADER_LEN].to_vec();
    t.extend_from_slice(&original[HEADER_LEN + full..HEADER_LEN + 2 * full]);
    t.extend_from_slice(&original[HEADER_LEN..HEADER_LEN + full]);
    t.extend_from_slice(&original[HEADER_LEN + 2 * full..]);
    assert_eq!(t.len(), original.len());
    fx.overwrite(&key, t).await;
    assert_eq!(expect_integrity(fx, &f).await, 0);

    // Intact again: reads fine; but not as another file, and not against another digest.
    fx.overwrite(&key, original.clone()).await;
    assert!(fx.read(&f).await.is_ok());
    let other_file = FileRef {
        file_id: Uuid::new_v4(),
        ..f.clone()
    };
    expect_integrity(fx, &other_file).await;
    let mut wrong_sha = f.clone();
    wrong_sha.sha256[0] ^= 1;
    // The digest is only known at the end: the last chunk is withheld.
    assert_eq!(
        expect_integrity(fx, &wrong_sha).await,
        2 * CHUNK_SIZE as u64
    );

    // Another file's object under this file's row (same key ring): refused.
    let other_id = Uuid::new_v4();
    let other = fx.put(other_id, SeededReader::new(7, size)).await.unwrap();
    let swapped = FileRef {
        object_key: other.object_key.clone(),
        ..f.clone()
    };
    expect_integrity(fx, &swapped).await;
}

async fn over_limit_leaves_nothing(fx: &Fx) {
    // Small: refused before anything is sent.
    let err = fx
        .store
        .put_encrypted(&fx.keys, Uuid::new_v4(), SeededReader::new(1, 5000), 4999)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooLarge { limit: 4999 }),
        "{err:?}"
    );
    fx.assert_nothing_stored().await;
    // Large: a multipart upload is under way when the limit is crossed.
    let err = fx
        .store
        .put_encrypted(
            &fx.keys,
            Uuid::new_v4(),
            SeededReader::new(2, 30 * MIB),
            20 * MIB,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { .. }), "{err:?}");
    fx.assert_nothing_stored().await;
    // Exactly at the limit is fine.
    let at = fx
        .store
        .put_encrypted(&fx.keys, Uuid::new_v4(), SeededReader::new(3, 5000), 5000)
        .await
        .unwrap();
    assert_eq!(at.size, 5000);
}

async fn reader_failure_leaves_nothing(fx: &Fx) {
    for (size, fail_at) in [(100 * KIB, 10 * KIB), (30 * MIB, 12 * MIB)] {
        let err = fx
            .store
            .put_encrypted(
                &fx.keys,
                Uuid::new_v4(),
                SeededReader::new(4, size).failing_after(fail_at),
                u64::MAX,
            )
            .await
            .unwrap_err();
        match err {
            StorageError::Io(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            other => panic!("expected Io, got {other:?}"),
        }
        fx.assert_nothing_stored().await;
    }
}

async fn test_pool() -> PgPool {
    let (_, opts) = crate::common::fresh_database().await;
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .unwrap()
}

/// Inserts the minimal category → record → file rows that reference `s`.
async fn insert_file_row(db: &PgPool, file_id: Uuid, s: &StoredObject) {
    let category = Uuid::new_v4();
    let record = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO categories (id, code, name, sensitivity, department, retention_years)
         VALUES ($1, 'GCTEST', 'GC test', 'internal', 'Retail', 1)",
    )
    .bind(category)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO records (id, category_id, reference, title, search_text, schema_version)
         VALUES ($1, $2, 'GCTEST-2026-000001', 'GC test', 'gc test', 1)",
    )
    .bind(record)
    .bind(category)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO files (id, record_id, version, object_key, kek_id, wrapped_key, size,
                            media_type, original_name, sha256)
         VALUES ($1, $2, 1, $3, $4, $5, $6, 'application/octet-stream', 'gc.bin', $7)",
    )
    .bind(file_id)
    .bind(record)
    .bind(&s.object_key)
    .bind(&s.kek_id)
    .bind(&s.wrapped_key)
    .bind(s.size as i64)
    .bind(s.sha256.as_slice())
    .execute(db)
    .await
    .unwrap();
}

async fn gc_removes_only_old_unreferenced_objects(fx: &Fx) {
    let db = test_pool().await;
    let orphan = fx
        .put(Uuid::new_v4(), SeededReader::new(1, 10))
        .await
        .unwrap();
    let kept_id = Uuid::new_v4();
    let kept = fx.put(kept_id, SeededReader::new(2, 10)).await.unwrap();
    insert_file_row(&db, kept_id, &kept).await;
    // Not a vault key: GC must never touch what it did not write.
    let foreign = "notes/readme.txt";
    fx.overwrite(foreign, b"not ours".to_vec()).await;
    // Object timestamps may have one-second resolution (S3): leave a margin either side.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let young = fx
        .put(Uuid::new_v4(), SeededReader::new(3, 10))
        .await
        .unwrap();

    // Another node holds the lock: this one skips.
    let mut other_node = db.acquire().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(GC_LOCK_KEY)
        .fetch_one(&mut *other_node)
        .await
        .unwrap();
    assert!(locked);
    let r = gc::run_once(&db, &fx.store, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        r,
        GcReport {
            examined: 0,
            removed: 0,
            skipped: true
        }
    );
    assert_eq!(fx.keys_in_store().await.len(), 4);
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(GC_LOCK_KEY)
        .execute(&mut *other_node)
        .await
        .unwrap();

    let r = gc::run_once(&db, &fx.store, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        r,
        GcReport {
            examined: 3,
            removed: 1,
            skipped: false
        }
    );
    let mut expected = vec![
        kept.object_key.clone(),
        young.object_key.clone(),
        foreign.to_string(),
    ];
    expected.sort();
    assert_eq!(fx.keys_in_store().await, expected);
    assert!(!fx.keys_in_store().await.contains(&orphan.object_key));
    // The lock was released: a second run goes ahead and finds nothing more to remove.
    let r = gc::run_once(&db, &fx.store, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(!r.skipped);
    assert_eq!(r.removed, 0);
    // The kept file still reads.
    assert!(fx.read(&file_ref(kept_id, &kept)).await.is_ok());
    db.close().await;
}

// ---- local directory store -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trips() {
    let fx = local();
    round_trips(&fx, &[0, 1, 64 * KIB, 64 * KIB + 1, 20 * MIB]).await;
    // Only the store's directory holds anything, and only ciphertext-sized files.
    assert!(fx
        .files_on_disk()
        .iter()
        .all(|p| p.starts_with(fx.dir.path().join("objects"))));
}

/// 200 MiB through the stream in both directions, never held in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_round_trip_200_mib() {
    let fx = local();
    round_trips(&fx, &[200 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plaintext_never_reaches_the_store() {
    plaintext_never_reaches_the_store(&local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tampering_is_detected() {
    tampering_is_detected(&local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_over_limit_leaves_nothing() {
    over_limit_leaves_nothing(&local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_reader_failure_leaves_nothing() {
    reader_failure_leaves_nothing(&local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_gc_removes_only_old_unreferenced_objects() {
    gc_removes_only_old_unreferenced_objects(&local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_store_from_settings_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("vault-objects");
    let store =
        Store::from_settings(Some(&format!("file://{}", target.display())), dir.path()).unwrap();
    let keys = KeyRing::generate();
    let id = Uuid::new_v4();
    let s = store
        .put_encrypted(&keys, id, bytes_reader(b"hello".to_vec()), 100)
        .await
        .unwrap();
    assert!(target.join(&s.object_key).is_file());
    assert_eq!(
        store.read_to_vec(&keys, &file_ref(id, &s)).await.unwrap(),
        b"hello"
    );
    store.delete(&s.object_key).await.unwrap();
    store.delete(&s.object_key).await.unwrap();
    assert!(!target.join(&s.object_key).exists());
}

// ---- S3 (moto) -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trips() {
    let Some(fx) = s3() else { return };
    // 20 MiB goes through a three-part multipart upload.
    round_trips(&fx, &[0, 1, 64 * KIB, 64 * KIB + 1, 20 * MIB]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_plaintext_never_reaches_the_store() {
    let Some(fx) = s3() else { return };
    plaintext_never_reaches_the_store(&fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_tampering_is_detected() {
    let Some(fx) = s3() else { return };
    tampering_is_detected(&fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_over_limit_leaves_nothing() {
    let Some(fx) = s3() else { return };
    over_limit_leaves_nothing(&fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_reader_failure_leaves_nothing() {
    let Some(fx) = s3() else { return };
    reader_failure_leaves_nothing(&fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_gc_removes_only_old_unreferenced_objects() {
    let Some(fx) = s3() else { return };
    gc_removes_only_old_unreferenced_objects(&fx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_objects_live_under_the_configured_prefix() {
    let Some(fx) = s3() else { return };
    let bucket = fx.s3.as_ref().unwrap();
    let id = Uuid::new_v4();
    let s = fx
        .store
        .put_encrypted(&fx.keys, id, bytes_reader(b"x".to_vec()), 10)
        .await
        .unwrap();
    let (status, listing) = bucket
        .moto
        .http("GET", &format!("/{}?list-type=2", bucket.name))
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        listing.contains(&format!("<Key>vault/{}</Key>", s.object_key)),
        "{listing}"
    );
}
