//! The upload pipeline: plaintext in, ciphertext parts out, in constant memory.
//!
//! Three stages run at once, linked by bounded channels:
//! 1. the reader (async, in the caller's task) fills 64 KiB chunk buffers from the source,
//!    one chunk ahead so it knows which chunk is the last, and enforces the size limit;
//! 2. a blocking worker on another thread hashes each chunk (SHA-256 of the plaintext) and
//!    encrypts it in place in the same buffer (the tag appended into spare capacity);
//! 3. the writer (async, in the caller's task) hands each encrypted buffer to the [`Sink`]
//!    as a `Bytes` that owns it, without copying, and the sink sends parts to the store.
//!
//! Guarantees:
//! - Memory per upload is bounded by the [`ChunkPool`]: every chunk buffer comes from it
//!   and goes back to it when the store has written it, so the reader waits for the store
//!   instead of buffering; the pool is sized for the parts in flight plus the chunks
//!   between the stages ([`pool_capacity`]), whatever the file size.
//! - Buffers are reused for the whole upload: after the first pass no chunk allocates.
//! - Plaintext stays in pool buffers only between the reader and the worker; the pool
//!   zeroes every buffer when the upload ends.
//! - On any failure (reader error, size limit, store error) the stages stop, and the caller
//!   aborts the sink, so no object is left behind.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroize;

use super::StorageError;
use crate::crypto::stream::{Encryptor, CHUNK_SIZE, CHUNK_TAG_LEN};

/// Parts uploaded at once per file.
pub const PART_CONCURRENCY: usize = 2;
/// Chunks each channel between two stages holds.
const STAGE_DEPTH: usize = 2;
/// Chunks held by the stages themselves: the reader's current and lookahead chunk, and
/// the one the worker is encrypting.
const STAGE_HELD: usize = 3;

/// How many chunk buffers one upload may hold: the parts the sink may hold (one being
/// filled and [`PART_CONCURRENCY`] in flight, one more for an instant while a finished
/// part waits for a slot) plus the chunks between and inside the stages.
///
/// The pipeline cannot stall on the pool: parts in flight always finish and return their
/// buffers, and the sink never needs more than one part's chunks plus the stages' to make
/// progress, far less than this.
pub(super) fn pool_capacity(part_size: usize) -> usize {
    let per_part = part_size.div_ceil(CHUNK_SIZE) + 1;
    per_part * (PART_CONCURRENCY + 2) + 2 * STAGE_DEPTH + STAGE_HELD
}

/// A fixed set of reusable chunk buffers (allocated on first use).
pub(super) struct ChunkPool {
    free: Mutex<Vec<Vec<u8>>>,
    permits: Arc<Semaphore>,
}

impl ChunkPool {
    pub(super) fn new(capacity: usize) -> Arc<ChunkPool> {
        Arc::new(ChunkPool {
            free: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(capacity.max(1))),
        })
    }

    /// A buffer of capacity chunk + tag, empty; waits while all buffers are in use.
    pub(super) async fn take(self: &Arc<Self>) -> Result<PooledBuf, StorageError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Io(std::io::Error::other("the chunk pool closed")))?;
        let recycled = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buf = recycled.unwrap_or_else(|| Vec::with_capacity(CHUNK_SIZE + CHUNK_TAG_LEN));
        buf.clear();
        Ok(PooledBuf {
            buf,
            pool: self.clone(),
            _permit: permit,
        })
    }

    /// Buffers allocated so far (tests).
    #[cfg(test)]
    fn allocated(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for ChunkPool {
    fn drop(&mut self) {
        let free = self.free.get_mut().unwrap_or_else(PoisonError::into_inner);
        for buf in free.iter_mut() {
            buf.zeroize();
        }
    }
}

/// A chunk buffer on loan from a [`ChunkPool`]; it goes back when dropped, so a `Bytes`
/// made from it ([`Bytes::from_owner`]) returns it once the store has written it.
pub(super) struct PooledBuf {
    buf: Vec<u8>,
    pool: Arc<ChunkPool>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        // Back before the permit (dropped after this) lets another taker in.
        let buf = std::mem::take(&mut self.buf);
        self.pool
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(buf);
    }
}

/// What the pipeline produced: plaintext size and SHA-256.
pub(super) struct Encrypted {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// Runs the three stages (see the module header) until the source ends with its last
/// chunk pushed to `sink`, or until the first failure. The caller finishes or aborts the
/// sink.
pub(super) async fn encrypt_into<R>(
    reader: &mut R,
    mut enc: Encryptor,
    sink: &mut Sink,
    pool: &Arc<ChunkPool>,
    max_size: u64,
) -> Result<Encrypted, StorageError>
where
    R: AsyncRead + Unpin + Send,
{
    let (to_worker, mut from_reader) = mpsc::channel::<(PooledBuf, bool)>(STAGE_DEPTH);
    let (to_writer, mut from_worker) =
        mpsc::channel::<Result<PooledBuf, StorageError>>(STAGE_DEPTH);

    // Stage 2: hash and encrypt in place, on a thread of its own.
    let worker = tokio::task::spawn_blocking(move || -> Option<[u8; 32]> {
        let mut hasher = Sha256::new();
        while let Some((mut chunk, last)) = from_reader.blocking_recv() {
            hasher.update(&chunk.buf);
            if let Err(e) = enc.encrypt_chunk_in_place(&mut chunk.buf, last) {
                chunk.buf.zeroize();
                let err = StorageError::Io(std::io::Error::other(e.to_string()));
                let _ = to_writer.blocking_send(Err(err));
                return None;
            }
            if to_writer.blocking_send(Ok(chunk)).is_err() {
                return None;
            }
            if last {
                return Some(hasher.finalize().into());
            }
        }
        None
    });

    // Stage 1: read chunks, one ahead.
    let read = async move {
        let mut size: u64 = 0;
        let mut cur = pool.take().await?;
        fill_chunk(reader, &mut cur.buf).await?;
        loop {
            let next = if cur.buf.len() == CHUNK_SIZE {
                let mut next = pool.take().await?;
                fill_chunk(reader, &mut next.buf).await?;
                Some(next).filter(|n| !n.buf.is_empty())
            } else {
                None
            };
            size += cur.buf.len() as u64;
            if size > max_size {
                cur.buf.zeroize();
                return Err(StorageError::TooLarge { limit: max_size });
            }
            let last = next.is_none();
            if to_worker.send((cur, last)).await.is_err() {
                // The worker stopped: the writer reports why.
                return Ok(size);
            }
            match next {
                Some(n) => cur = n,
                None => return Ok(size),
            }
        }
    };

    // Stage 3: hand encrypted chunks to the sink.
    let write = async {
        while let Some(chunk) = from_worker.recv().await {
            sink.push(Bytes::from_owner(chunk?)).await?;
        }
        Ok::<(), StorageError>(())
    };

    let joined = tokio::try_join!(read, write);
    // The writer only borrowed its receiver: close it, or a worker blocked on a full
    // channel after a reader failure would wait for it forever.
    drop(from_worker);
    // The channels are gone now, so the worker ends at once if it has not already.
    let digest = worker
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?;
    let (size, ()) = joined?;
    let sha256 = digest.ok_or_else(|| {
        StorageError::Io(std::io::Error::other(
            "the encryption stage ended before the last chunk",
        ))
    })?;
    Ok(Encrypted { size, sha256 })
}

/// Fills `buf` (emptied first) with up to one chunk from `reader`; fewer bytes only at the
/// end of the source.
async fn fill_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    // Reused buffers keep their length from the last use: no zero-filling after the first.
    buf.resize(CHUNK_SIZE, 0);
    let n = fill(reader, buf).await?;
    buf.truncate(n);
    Ok(())
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
pub(super) async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where an upload's bytes go: buffered until they exceed one part (then a single PUT at
/// the end suffices), a multipart upload after that.
///
/// A part is sent as the list of the 64 KiB chunks it is made of (`PutPayload::from_iter`),
/// never copied into one large buffer. At most [`PART_CONCURRENCY`] parts are in flight.
pub(super) enum Sink {
    Small {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        part_size: usize,
        parts: Vec<Bytes>,
        len: usize,
    },
    Multipart {
        upload: Box<dyn object_store::MultipartUpload>,
        part_size: usize,
        pending: Vec<Bytes>,
        len: usize,
        in_flight: tokio::task::JoinSet<object_store::Result<()>>,
    },
    Done,
}

impl Sink {
    pub(super) fn new(store: Arc<dyn ObjectStore>, path: ObjectPath, part_size: usize) -> Sink {
        Sink::Small {
            store,
            path,
            part_size,
            parts: Vec::new(),
            len: 0,
        }
    }

    pub(super) async fn push(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        match self {
            Sink::Small {
                store,
                path,
                part_size,
                parts,
                len,
            } => {
                *len += bytes.len();
                parts.push(bytes);
                if *len > *part_size {
                    let upload = store.put_multipart(path).await?;
                    *self = Sink::Multipart {
                        upload,
                        part_size: *part_size,
                        pending: std::mem::take(parts),
                        len: *len,
                        in_flight: tokio::task::JoinSet::new(),
                    };
                    self.send_part(false).await?;
                }
                Ok(())
            }
            Sink::Multipart { pending, len, .. } => {
                *len += bytes.len();
                pending.push(bytes);
                self.send_part(false).await
            }
            Sink::Done => Err(StorageError::Io(std::io::Error::other(
                "write after the upload ended",
            ))),
        }
    }

    /// Sends the pending chunks as one part once they reach the part size (or at the
    /// end), then waits while more than `PART_CONCURRENCY` parts are in flight.
    async fn send_part(&mut self, force: bool) -> Result<(), StorageError> {
        let Sink::Multipart {
            upload,
            part_size,
            pending,
            len,
            in_flight,
        } = self
        else {
            return Ok(());
        };
        if (*len >= *part_size || (force && *len > 0)) && !pending.is_empty() {
            let payload = PutPayload::from_iter(std::mem::take(pending));
            *len = 0;
            in_flight.spawn(upload.put_part(payload));
        }
        while in_flight.len() > PART_CONCURRENCY || (force && !in_flight.is_empty()) {
            match in_flight.join_next().await {
                Some(Ok(r)) => r?,
                Some(Err(e)) => return Err(StorageError::Io(std::io::Error::other(e.to_string()))),
                None => break,
            }
        }
        Ok(())
    }

    pub(super) async fn finish(&mut self) -> Result<(), StorageError> {
        if let Sink::Multipart { .. } = self {
            if let Err(e) = self.send_part(true).await {
                self.abort().await;
                return Err(e);
            }
        }
        match std::mem::replace(self, Sink::Done) {
            Sink::Small {
                store, path, parts, ..
            } => {
                store.put(&path, PutPayload::from_iter(parts)).await?;
                Ok(())
            }
            Sink::Multipart { mut upload, .. } => match upload.complete().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    if let Err(a) = upload.abort().await {
                        tracing::warn!(error = %a, "aborting a multipart upload failed");
                    }
                    Err(e.into())
                }
            },
            Sink::Done => Ok(()),
        }
    }

    pub(super) async fn abort(&mut self) {
        if let Sink::Multipart {
            mut upload,
            mut in_flight,
            ..
        } = std::mem::replace(self, Sink::Done)
        {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            if let Err(e) = upload.abort().await {
                // The orphaned parts are the store's to expire (an S3 lifecycle rule for
                // incomplete multipart uploads); nothing readable was completed.
                tracing::warn!(error = %e, "aborting a multipart upload failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::stream::{encrypted_len, HEADER_LEN};
    use crate::crypto::KeyRing;
    use crate::storage::{FileRef, Store, StoredObject, LOCAL_PART_SIZE};
    use std::path::{Path, PathBuf};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;
    use uuid::Uuid;

    /// Deterministic content, handed out in pieces of an awkward size (so chunk boundaries
    /// never line up with reads), optionally failing after `fail_at` bytes.
    struct Source {
        data: Vec<u8>,
        pos: usize,
        piece: usize,
        fail_at: Option<usize>,
    }

    impl Source {
        fn new(size: usize) -> Source {
            Source {
                data: (0..size).map(|i| (i * 131 % 251) as u8).collect(),
                pos: 0,
                piece: 12_345,
                fail_at: None,
            }
        }
    }

    impl AsyncRead for Source {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.fail_at.is_some_and(|f| self.pos >= f) {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the client went away",
                )));
            }
            let end = self
                .data
                .len()
                .min(self.pos + self.piece)
                .min(self.pos + buf.remaining());
            let end = self.fail_at.map_or(end, |f| end.min(f.max(self.pos + 1)));
            buf.put_slice(&self.data[self.pos..end]);
            self.pos = end;
            Poll::Ready(Ok(()))
        }
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips_at_chunk_and_part_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_settings(None, dir.path()).unwrap();
        let keys = KeyRing::generate();
        for size in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            2 * CHUNK_SIZE,
            LOCAL_PART_SIZE,
            LOCAL_PART_SIZE + 1,
            3 * LOCAL_PART_SIZE + 5 * CHUNK_SIZE + 7,
        ] {
            let src = Source::new(size);
            let expected: [u8; 32] = Sha256::digest(&src.data).into();
            let file_id = Uuid::new_v4();
            let stored = store
                .put_encrypted(&keys, file_id, src, size as u64)
                .await
                .unwrap();
            assert_eq!(stored.size, size as u64);
            assert_eq!(stored.sha256, expected, "size {size}");
            let on_disk = dir.path().join("objects").join(&stored.object_key);
            let len = std::fs::metadata(&on_disk).unwrap().len();
            assert_eq!(len, encrypted_len(size as u64), "size {size}");
            assert!(len >= HEADER_LEN as u64);
            let back = store
                .read_to_vec(&keys, &file_ref(file_id, &stored))
                .await
                .unwrap();
            assert_eq!(back, Source::new(size).data, "size {size}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_leave_no_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_settings(None, dir.path()).unwrap();
        let keys = KeyRing::generate();
        // The reader fails in the first chunk, at a chunk boundary, and once the multipart
        // upload is under way with parts written.
        for fail_at in [10, CHUNK_SIZE, 3 * LOCAL_PART_SIZE + 100] {
            let mut src = Source::new(4 * LOCAL_PART_SIZE);
            src.fail_at = Some(fail_at);
            let err = store
                .put_encrypted(&keys, Uuid::new_v4(), src, u64::MAX)
                .await
                .unwrap_err();
            assert!(
                matches!(&err, StorageError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
                "{err:?}"
            );
            assert!(files_under(dir.path()).is_empty(), "fail at {fail_at}");
        }
        // Too large: one byte over, in the first chunk, at a chunk boundary and after parts.
        for (size, limit) in [
            (1, 0),
            (CHUNK_SIZE + 1, CHUNK_SIZE as u64),
            (4 * LOCAL_PART_SIZE, 3 * LOCAL_PART_SIZE as u64),
        ] {
            let err = store
                .put_encrypted(&keys, Uuid::new_v4(), Source::new(size), limit)
                .await
                .unwrap_err();
            assert!(
                matches!(err, StorageError::TooLarge { limit: l } if l == limit),
                "{err:?}"
            );
            assert!(files_under(dir.path()).is_empty(), "size {size}");
        }
    }

    #[tokio::test]
    async fn the_pool_lends_a_fixed_number_of_reused_buffers() {
        let pool = ChunkPool::new(3);
        let a = pool.take().await.unwrap();
        let b = pool.take().await.unwrap();
        let mut c = pool.take().await.unwrap();
        c.buf.extend_from_slice(b"secret plaintext");
        let c_ptr = c.buf.as_ptr();
        // All three out: the fourth waits.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), pool.take());
        assert!(waiting.await.is_err());
        // One back (through a Bytes that owns it): the next taker gets that very buffer,
        // emptied.
        let bytes = Bytes::from_owner(c);
        assert_eq!(&bytes[..], b"secret plaintext");
        drop(bytes);
        let d = pool.take().await.unwrap();
        assert_eq!(d.buf.as_ptr(), c_ptr);
        assert!(d.buf.is_empty());
        assert!(d.buf.capacity() >= CHUNK_SIZE + CHUNK_TAG_LEN);
        drop((a, b, d));
        assert_eq!(pool.allocated(), 3);
    }

    #[test]
    fn the_pool_covers_the_sink_and_the_stages() {
        for part in [LOCAL_PART_SIZE, crate::storage::PART_SIZE] {
            let per_part = part.div_ceil(CHUNK_SIZE);
            // Enough for the sink's parts plus every stage, so the reader never waits for
            // a buffer the sink holds back until more arrive.
            assert!(
                pool_capacity(part)
                    >= per_part * (PART_CONCURRENCY + 1) + 2 * STAGE_DEPTH + STAGE_HELD
            );
        }
        // About 4 MiB per upload on a local store.
        assert!(pool_capacity(LOCAL_PART_SIZE) * (CHUNK_SIZE + CHUNK_TAG_LEN) < 5 << 20);
    }
}
