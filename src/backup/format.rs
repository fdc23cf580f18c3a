//! The backup file format (version 1): one file, encrypted and authenticated end to end.
//!
//! ```text
//! header (121 bytes, in the clear):
//!   magic       8 bytes  "SRBACKUP"
//!   version     1 byte   0x01
//!   vault id   16 bytes  KeyRing::backup_vault_id(): names the key ring, reveals nothing
//!   backup id  16 bytes  random UUID
//!   salt       32 bytes  random; HKDF salt of this backup's keys
//!   header MAC 32 bytes  HMAC-SHA256(mac key, the 73 bytes above)
//!   checksum   16 bytes  SHA-256 of the 105 bytes above, first 16 bytes (unkeyed: tells
//!                        accidental damage of the header apart from another vault's file)
//! body: the STREAM construction of `crypto::stream` (a 16-byte stream header, then
//!   64 KiB chunks each with its tag, a last-chunk flag in the nonce) under the stream key,
//!   with the backup id as the stream's file id, over the plaintext below.
//! ```
//!
//! The stream key and the MAC key come from [`KeyRing::backup_keys`] (HKDF-SHA256 with the
//! salt over the vault's never-rotated blind-index key, info `strongroom backup v1`), so
//! the master key file opens every backup of its vault and nothing else does. Reading
//! checks, in order: the magic, the header checksum and the version; the vault id
//! (another vault's backup is reported FOREIGN); the header MAC (an altered header is BROKEN); then every chunk's tag
//! before its plaintext is used (an altered, reordered, dropped or truncated chunk is
//! BROKEN, naming the chunk).
//!
//! The plaintext is a sequence of entries, ending with the manifest:
//!
//! ```text
//! entry    = kind (1 byte: 'T' table, 'O' object, 'M' manifest)
//!            ‖ u32 length ‖ JSON metadata (TableMeta, ObjectMeta or Manifest)
//!            then, for 'T' and 'O': frames, each u32 length (1..=1 MiB) ‖ bytes,
//!            a u32 0, and the 32-byte SHA-256 of the entry's data bytes
//! ```
//!
//! A table's data is its `COPY … TO STDOUT (FORMAT binary)` output; an object's data is
//! the stored object as it is (ciphertext under its file's data key). The manifest comes
//! last, and nothing may follow it. All integers are big-endian. Memory while reading or
//! writing is a chunk and a frame, whatever the size of the vault.

use std::path::Path;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::crypto::stream::{Decryptor, Encryptor, CHUNK_SIZE, CHUNK_TAG_LEN, HEADER_LEN};
use crate::crypto::{CryptoError, KeyRing};

pub const MAGIC: &[u8; 8] = b"SRBACKUP";
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of the clear header (see the module header).
pub const FILE_HEADER_LEN: usize = 8 + 1 + 16 + 16 + 32 + 32 + 16;
const MACED_LEN: usize = 8 + 1 + 16 + 16 + 32;
const CHECKED_LEN: usize = MACED_LEN + 32;
/// The largest frame of entry data.
pub const MAX_FRAME: usize = 1024 * 1024;
/// The largest JSON metadata of an entry (the manifest included).
const MAX_META: usize = 64 * 1024 * 1024;

/// Why a backup cannot be used. `Display` is the line `backup verify` prints.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup FOREIGN: {0}")]
    Foreign(String),
    #[error("backup BROKEN: {0}")]
    Broken(String),
    #[error("backup unreadable: {0}")]
    Io(String),
}

fn broken(msg: impl Into<String>) -> BackupError {
    BackupError::Broken(msg.into())
}

fn io(e: std::io::Error) -> BackupError {
    BackupError::Io(e.to_string())
}

/// A column of a dumped table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// The metadata of a table entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableMeta {
    pub name: String,
    pub columns: Vec<Column>,
    /// For `audit_events`: how many rows (the first ones, in chain order) are chained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chained: Option<u64>,
}

/// The metadata of an object entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
    /// Hex of the migration's SHA-384 checksum as sqlx records it.
    pub checksum: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableSummary {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SequenceState {
    pub name: String,
    pub last_value: i64,
    pub is_called: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectsSummary {
    pub count: u64,
    pub bytes: u64,
    /// SHA-256 over every object's (key, size, SHA-256) in file order.
    pub list_sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditSummary {
    /// Events in the snapshot.
    pub events: u64,
    /// Of which chained.
    pub chained: u64,
    /// The chain's head in the snapshot.
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
}

/// The last entry: what the backup holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// Where it was taken from: `embedded` or the database's host and name.
    pub source: String,
    pub strongroom_version: String,
    pub migrations: Vec<MigrationInfo>,
    pub tables: Vec<TableSummary>,
    pub sequences: Vec<SequenceState>,
    pub objects: ObjectsSummary,
    pub audit: AuditSummary,
}

/// The clear header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub vault_id: [u8; 16],
    pub backup_id: Uuid,
    pub salt: [u8; 32],
}

impl Header {
    fn maced(&self) -> [u8; MACED_LEN] {
        let mut b = [0u8; MACED_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8] = FORMAT_VERSION;
        b[9..25].copy_from_slice(&self.vault_id);
        b[25..41].copy_from_slice(self.backup_id.as_bytes());
        b[41..73].copy_from_slice(&self.salt);
        b
    }

    fn mac(&self, key: &[u8; 32]) -> [u8; 32] {
        // HMAC takes keys of any length.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(&self.maced());
        m.finalize().into_bytes().into()
    }
}

/// Writes a backup file: entries in, one encrypted file out.
pub struct BackupWriter {
    out: BufWriter<tokio::fs::File>,
    enc: Encryptor,
    /// Plaintext not yet encrypted (at most one chunk).
    buf: Vec<u8>,
    written: u64,
    file_sha: Sha256,
    entry: Option<(Sha256, u64)>,
    pub header: Header,
}

impl BackupWriter {
    /// Creates `path` (which must not exist) and writes the header.
    pub async fn create(path: &Path, keys: &KeyRing) -> std::io::Result<BackupWriter> {
        let mut salt = [0u8; 32];
        OsRng.fill_bytes(&mut salt);
        let header = Header {
            vault_id: keys.backup_vault_id(),
            backup_id: Uuid::new_v4(),
            salt,
        };
        let (stream_key, mac_key) = keys.backup_keys(&salt);
        let (enc, stream_header) = Encryptor::new(&stream_key, header.backup_id);
        drop(stream_key);
        let mac = header.mac(&mac_key);
        drop(mac_key);
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true).mode(0o600);
            tokio::fs::OpenOptions::from(o).open(path).await?
        };
        let mut w = BackupWriter {
            out: BufWriter::with_capacity(256 * 1024, file),
            enc,
            buf: Vec::with_capacity(CHUNK_SIZE),
            written: 0,
            file_sha: Sha256::new(),
            entry: None,
            header,
        };
        let mut head = Vec::with_capacity(FILE_HEADER_LEN);
        head.extend_from_slice(&header.maced());
        head.extend_from_slice(&mac);
        let check = Sha256::digest(&head);
        head.extend_from_slice(&check[..16]);
        w.raw(&head).await?;
        w.raw(&stream_header).await?;
        Ok(w)
    }

    async fn raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.out.write_all(b).await?;
        self.file_sha.update(b);
        self.written += b.len() as u64;
        Ok(())
    }

    async fn plain(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.buf.len() == CHUNK_SIZE {
                // More follows, so this chunk is not the last.
                let ct = self
                    .enc
                    .encrypt_chunk(&self.buf, false)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                self.buf.clear();
                self.raw(&ct).await?;
            }
            let take = (CHUNK_SIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    async fn meta(&mut self, kind: u8, meta: &impl Serialize) -> std::io::Result<()> {
        if self.entry.is_some() {
            return Err(std::io::Error::other("an entry is still open"));
        }
        let json = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
        if json.len() > MAX_META {
            return Err(std::io::Error::other("entry metadata too large"));
        }
        self.plain(&[kind]).await?;
        self.plain(&(json.len() as u32).to_be_bytes()).await?;
        self.plain(&json).await
    }

    /// Starts a table or object entry.
    pub async fn begin(&mut self, kind: u8, meta: &impl Serialize) -> std::io::Result<()> {
        self.meta(kind, meta).await?;
        self.entry = Some((Sha256::new(), 0));
        Ok(())
    }

    /// Appends data to the open entry.
    pub async fn data(&mut self, data: &[u8]) -> std::io::Result<()> {
        for piece in data.chunks(MAX_FRAME) {
            let Some((sha, n)) = self.entry.as_mut() else {
                return Err(std::io::Error::other("no entry is open"));
            };
            sha.update(piece);
            *n += piece.len() as u64;
            self.plain(&(piece.len() as u32).to_be_bytes()).await?;
            self.plain(piece).await?;
        }
        Ok(())
    }

    /// Ends the open entry; returns its data's SHA-256 and length.
    pub async fn end(&mut self) -> std::io::Result<([u8; 32], u64)> {
        let Some((sha, n)) = self.entry.take() else {
            return Err(std::io::Error::other("no entry is open"));
        };
        let digest: [u8; 32] = sha.finalize().into();
        self.plain(&0u32.to_be_bytes()).await?;
        self.plain(&digest).await?;
        Ok((digest, n))
    }

    /// Writes the manifest, the last chunk, and flushes the file to disk. Returns the file's
    /// length and SHA-256.
    pub async fn finish(mut self, manifest: &Manifest) -> std::io::Result<(u64, [u8; 32])> {
        self.meta(b'M', manifest).await?;
        let last = std::mem::take(&mut self.buf);
        let ct = self
            .enc
            .encrypt_chunk(&last, true)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.raw(&ct).await?;
        self.out.flush().await?;
        self.out.get_mut().sync_all().await?;
        Ok((self.written, self.file_sha.finalize().into()))
    }
}

/// One entry's start, as read.
#[derive(Debug, Clone)]
pub enum Entry {
    Table(TableMeta),
    Object(ObjectMeta),
    Manifest(Box<Manifest>),
}

/// Reads and authenticates a backup file; see the module header for the order of checks.
pub struct BackupReader {
    file: BufReader<tokio::fs::File>,
    dec: Decryptor,
    /// The next ciphertext chunk, read ahead so the last one is known.
    cur: Vec<u8>,
    next: Vec<u8>,
    chunk: u64,
    finished: bool,
    plain: Zeroizing<Vec<u8>>,
    pos: usize,
    entry: Option<(Sha256, u64)>,
    after_manifest: bool,
    /// Ciphertext bytes read so far, and the file's length (for progress).
    pub read: u64,
    pub len: u64,
    pub header: Header,
}

impl BackupReader {
    pub async fn open(path: &Path, keys: &KeyRing) -> Result<BackupReader, BackupError> {
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let len = file.metadata().await.map_err(io)?.len();
        let mut file = BufReader::with_capacity(256 * 1024, file);
        let mut head = [0u8; FILE_HEADER_LEN + HEADER_LEN];
        let n = read_full(&mut file, &mut head).await.map_err(io)?;
        if n < MAGIC.len() || &head[..8] != MAGIC {
            return Err(broken("not a strongroom backup (no SRBACKUP header)"));
        }
        if n < head.len() {
            return Err(broken("the file ends inside its header (truncated)"));
        }
        if Sha256::digest(&head[..CHECKED_LEN])[..16] != head[CHECKED_LEN..FILE_HEADER_LEN] {
            return Err(broken("the header is damaged (its checksum fails)"));
        }
        if head[8] != FORMAT_VERSION {
            return Err(broken(format!(
                "format version {} is not supported (this release reads version {FORMAT_VERSION})",
                head[8]
            )));
        }
        let mut header = Header {
            vault_id: [0; 16],
            backup_id: Uuid::nil(),
            salt: [0; 32],
        };
        header.vault_id.copy_from_slice(&head[9..25]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&head[25..41]);
        header.backup_id = Uuid::from_bytes(id);
        header.salt.copy_from_slice(&head[41..73]);
        if header.vault_id != keys.backup_vault_id() {
            return Err(BackupError::Foreign(format!(
                "made by another vault's key (vault id {}, this master key's is {}); \
                 restoring it needs that vault's master.key",
                hex::encode(header.vault_id),
                hex::encode(keys.backup_vault_id())
            )));
        }
        let (stream_key, mac_key) = keys.backup_keys(&header.salt);
        let expected = header.mac(&mac_key);
        let got = &head[MACED_LEN..CHECKED_LEN];
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], got)) {
            return Err(broken("the header fails authentication (altered)"));
        }
        let dec = Decryptor::new(&stream_key, header.backup_id, &head[FILE_HEADER_LEN..])
            .map_err(|e| broken(format!("the stream header is damaged: {e}")))?;
        let mut r = BackupReader {
            file,
            dec,
            cur: Vec::with_capacity(CHUNK_SIZE + CHUNK_TAG_LEN),
            next: Vec::with_capacity(CHUNK_SIZE + CHUNK_TAG_LEN),
            chunk: 0,
            finished: false,
            plain: Zeroizing::new(Vec::new()),
            pos: 0,
            entry: None,
            after_manifest: false,
            read: head.len() as u64,
            len,
            header,
        };
        let mut cur = std::mem::take(&mut r.cur);
        r.read_chunk(&mut cur).await?;
        r.cur = cur;
        if r.cur.is_empty() {
            return Err(broken("the file ends after its header (truncated)"));
        }
        Ok(r)
    }

    async fn read_chunk(&mut self, buf: &mut Vec<u8>) -> Result<(), BackupError> {
        buf.resize(CHUNK_SIZE + CHUNK_TAG_LEN, 0);
        let n = read_full(&mut self.file, buf).await.map_err(io)?;
        buf.truncate(n);
        self.read += n as u64;
        Ok(())
    }

    /// Decrypts the next chunk into `plain`; false once the stream has ended.
    async fn fill(&mut self) -> Result<bool, BackupError> {
        if self.finished {
            return Ok(false);
        }
        let mut next = std::mem::take(&mut self.next);
        self.read_chunk(&mut next).await?;
        let last = next.is_empty();
        let chunk = self.chunk;
        let pt = self
            .dec
            .decrypt_chunk(&self.cur, last)
            .map_err(|e| match e {
                CryptoError::Decrypt => broken(format!(
                    "chunk {chunk} fails authentication (altered or truncated)"
                )),
                other => broken(format!("chunk {chunk}: {other}")),
            })?;
        self.next = std::mem::replace(&mut self.cur, next);
        self.chunk += 1;
        self.plain = Zeroizing::new(pt);
        self.pos = 0;
        if last {
            self.finished = true;
        }
        Ok(true)
    }

    /// Whether the plaintext has ended (exactly at this point).
    async fn at_end(&mut self) -> Result<bool, BackupError> {
        while self.pos == self.plain.len() {
            if !self.fill().await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn exact(&mut self, out: &mut [u8]) -> Result<(), BackupError> {
        let mut off = 0;
        while off < out.len() {
            if self.at_end().await? {
                return Err(broken("the content ends in the middle of an entry"));
            }
            let take = (self.plain.len() - self.pos).min(out.len() - off);
            out[off..off + take].copy_from_slice(&self.plain[self.pos..self.pos + take]);
            self.pos += take;
            off += take;
        }
        Ok(())
    }

    async fn u32(&mut self) -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        self.exact(&mut b).await?;
        Ok(u32::from_be_bytes(b))
    }

    /// The next entry; None when the content ended after the manifest.
    pub async fn next_entry(&mut self) -> Result<Option<Entry>, BackupError> {
        if self.entry.is_some() {
            return Err(broken("an entry's data was not read to its end"));
        }
        if self.at_end().await? {
            if !self.after_manifest {
                return Err(broken("the manifest is missing"));
            }
            return Ok(None);
        }
        if self.after_manifest {
            return Err(broken("data follows the manifest"));
        }
        let mut kind = [0u8; 1];
        self.exact(&mut kind).await?;
        let len = self.u32().await? as usize;
        if len > MAX_META {
            return Err(broken("an entry's metadata is too large"));
        }
        let mut json = vec![0u8; len];
        self.exact(&mut json).await?;
        let parse_err = |e: serde_json::Error| broken(format!("an entry's metadata: {e}"));
        let entry = match kind[0] {
            b'T' => Entry::Table(serde_json::from_slice(&json).map_err(parse_err)?),
            b'O' => Entry::Object(serde_json::from_slice(&json).map_err(parse_err)?),
            b'M' => {
                self.after_manifest = true;
                return Ok(Some(Entry::Manifest(Box::new(
                    serde_json::from_slice(&json).map_err(parse_err)?,
                ))));
            }
            other => return Err(broken(format!("unknown entry kind {other:#04x}"))),
        };
        self.entry = Some((Sha256::new(), 0));
        Ok(Some(entry))
    }

    /// The next frame of the open entry's data; None at its end, once the entry's
    /// checksum has been checked. `digest` then holds its SHA-256 and length.
    pub async fn next_data(
        &mut self,
        digest: &mut ([u8; 32], u64),
    ) -> Result<Option<Vec<u8>>, BackupError> {
        if self.entry.is_none() {
            return Err(broken("entry data outside an entry"));
        }
        let len = self.u32().await? as usize;
        if len == 0 {
            let mut stored = [0u8; 32];
            self.exact(&mut stored).await?;
            let Some((sha, n)) = self.entry.take() else {
                return Err(broken("entry data outside an entry"));
            };
            let computed: [u8; 32] = sha.finalize().into();
            if computed != stored {
                return Err(broken("an entry's checksum does not match its data"));
            }
            *digest = (computed, n);
            return Ok(None);
        }
        if len > MAX_FRAME {
            return Err(broken("a frame larger than the format allows"));
        }
        let mut frame = vec![0u8; len];
        self.exact(&mut frame).await?;
        if let Some((sha, n)) = self.entry.as_mut() {
            sha.update(&frame);
            *n += len as u64;
        }
        Ok(Some(frame))
    }
}

async fn read_full<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: Uuid) -> Manifest {
        Manifest {
            format: 1,
            backup_id: id,
            created_at: Utc::now(),
            source: "test".into(),
            strongroom_version: "0".into(),
            migrations: Vec::new(),
            tables: Vec::new(),
            sequences: Vec::new(),
            objects: ObjectsSummary::default(),
            audit: AuditSummary::default(),
        }
    }

    async fn write(path: &Path, keys: &KeyRing, data: &[u8]) {
        let mut w = BackupWriter::create(path, keys).await.unwrap();
        let id = w.header.backup_id;
        w.begin(
            b'O',
            &ObjectMeta {
                key: "ab/cd/x".into(),
                size: data.len() as u64,
            },
        )
        .await
        .unwrap();
        w.data(data).await.unwrap();
        w.end().await.unwrap();
        w.finish(&manifest(id)).await.unwrap();
    }

    /// Reads every entry to the end; the object's bytes.
    async fn read(path: &Path, keys: &KeyRing) -> Result<Vec<u8>, BackupError> {
        let mut r = BackupReader::open(path, keys).await?;
        let mut out = Vec::new();
        let mut digest = ([0u8; 32], 0);
        while let Some(e) = r.next_entry().await? {
            if let Entry::Object(_) = e {
                while let Some(f) = r.next_data(&mut digest).await? {
                    out.extend(f);
                }
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn round_trip_and_every_changed_or_cut_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::generate();
        let path = dir.path().join("b");
        // Spans two chunks, so chunk order and the last-chunk flag are exercised.
        let data: Vec<u8> = (0..CHUNK_SIZE + 1000).map(|i| (i % 251) as u8).collect();
        write(&path, &keys, &data).await;
        assert_eq!(read(&path, &keys).await.unwrap(), data);
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(64).any(|w| w == &data[..64]),
            "plaintext in the file"
        );
        let bad = dir.path().join("bad");
        let step = 97;
        for pos in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
            let mut b = bytes.clone();
            b[pos] ^= 0x20;
            std::fs::write(&bad, &b).unwrap();
            let e = read(&bad, &keys).await.unwrap_err();
            assert!(
                matches!(e, BackupError::Broken(_) | BackupError::Foreign(_)),
                "{pos}: {e}"
            );
        }
        for cut in [
            1,
            16,
            CHUNK_SIZE + CHUNK_TAG_LEN,
            bytes.len() - FILE_HEADER_LEN,
        ] {
            std::fs::write(&bad, &bytes[..bytes.len() - cut]).unwrap();
            assert!(read(&bad, &keys).await.is_err(), "cut {cut}");
        }
        // Another vault's key: FOREIGN, before anything is decrypted.
        let e = read(&path, &KeyRing::generate()).await.unwrap_err();
        assert!(e.to_string().starts_with("backup FOREIGN:"), "{e}");
    }
}
