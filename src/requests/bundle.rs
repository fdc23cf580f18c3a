//! The streamed zip writer behind exports: an approved export becomes a zip holding the
//! record's files under `files/` and a `manifest.json` written last.
//!
//! Guarantees:
//! - **Streamed.** The zip is produced as a stream of chunks while the input files are read;
//!   it is never whole in memory and never written to disk (no temporary file). The writer
//!   runs `zip::ZipWriter::new_stream` (no seeking: sizes and checksums go into data
//!   descriptors) on a blocking thread.
//! - **Bounded memory.** Output goes through a bounded channel of [`CHANNEL_CHUNKS`] chunks of
//!   [`CHUNK_SIZE`] bytes; a slow client stops the writer, which stops reading the input. One
//!   bundle holds a few MiB at most, whatever the size of its files.
//! - **Failures are visible.** Any error (an input stream error, the client going away, a zip
//!   error, a panic) aborts the writer: nothing more is sent, the central directory is never
//!   written, and the output stream ends with an `Err`, so the HTTP response is cut short
//!   rather than ending as a truncated but valid-looking zip.
//! - **Names neutralised.** Stored file names become [`zip_name`]s: the last path component
//!   only, no `..`, no leading dot, no control, bidi or reserved characters, bounded length
//!   and a numeric prefix that makes each unique. No entry name can escape the extraction
//!   directory.
//! - **Optional encryption.** With a password every entry, the manifest included, is
//!   AES-256 encrypted (WinZip AE-2, a fresh random salt per entry). File contents and the
//!   password are never logged.

use std::cell::Cell;
use std::io::{self, Write};
use std::rc::Rc;

use bytes::Bytes;
use chrono::{Datelike, Timelike, Utc};
use futures_util::stream::{self, BoxStream, StreamExt};
use rand::rngs::OsRng;
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{AesMode, CompressionMethod, ZipWriter};

use crate::error::AppError;

/// Bytes gathered before a chunk is handed to the output stream.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Chunks that may wait in the output channel before the writer blocks.
pub const CHANNEL_CHUNKS: usize = 4;
/// Largest piece of an input chunk hashed and written at a time.
const WRITE_SIZE: usize = 64 * 1024;
/// Longest [`zip_name`], in characters (it is also kept within 255 UTF-8 bytes).
pub const MAX_NAME_CHARS: usize = 150;
const MAX_NAME_BYTES: usize = 255;
/// Longest extension kept when a long name is shortened.
const MAX_KEPT_EXTENSION: usize = 16;
/// Entries whose announced size comes this close to 4 GiB are written as ZIP64: AES adds a
/// few bytes per entry, and the limit applies to the stored size too.
const ZIP64_MARGIN: u64 = 1024 * 1024;
/// Folder of the record's files inside the zip.
pub const FILES_DIR: &str = "files/";
/// Name of the manifest inside the zip.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Length of a [`new_password`].
pub const PASSWORD_LEN: usize = 24;
/// Characters of a [`new_password`]: letters and digits less the ambiguous 0, O, 1, l and I.
pub const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// One file to put in a bundle.
pub struct Entry {
    /// The original file name as stored; neutralised by [`zip_name`] before use.
    pub name: String,
    /// The file's size if known (the stored plaintext size). It decides whether the entry
    /// needs ZIP64: an entry without one is always written as ZIP64, which every current
    /// unzip tool reads but costs 20 bytes. If given, the content must have exactly this
    /// length, or the bundle is aborted.
    pub size_hint: Option<u64>,
    /// The file's content; an `Err` aborts the bundle.
    pub content: BoxStream<'static, Result<Bytes, AppError>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("size_hint", &self.size_hint)
            .finish_non_exhaustive()
    }
}

/// What the manifest is told about one file written to the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// The entry's name inside the zip, without the `files/` folder.
    pub zip_name: String,
    /// The file name as stored.
    pub original_name: String,
    /// Bytes of content written.
    pub size: u64,
    /// SHA-256 of the content written, in lowercase hex.
    pub sha256: String,
}

/// Starts writing a zip bundle on a blocking thread and returns its bytes as a stream.
///
/// The files are written under `files/` (named by [`zip_name`], numbered from 1), in order,
/// stored uncompressed (documents are compressed already); `manifest(digests)` is called
/// after the last file to produce the manifest JSON value, which is written last, deflated,
/// as `manifest.json`. With `password`, every entry (manifest included) is AES-256
/// encrypted. Entries carry the time of this call (UTC) as their modification time.
///
/// The writer only runs as fast as the stream is read, and holds a few MiB at most. Any
/// failure ends the stream with an `Err` after the bytes already produced; dropping the
/// stream stops the writer at its next write. Called outside a Tokio runtime, the stream
/// yields a single `Err`.
pub fn write_zip(
    entries: Vec<Entry>,
    password: Option<String>,
    manifest: impl FnOnce(&[FileDigest]) -> serde_json::Value + Send + 'static,
) -> BoxStream<'static, Result<Bytes, io::Error>> {
    let password = password.map(Zeroizing::new);
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return stream::iter([Err(io::Error::other(
            "the zip writer needs a Tokio runtime",
        ))])
        .boxed();
    };
    let modified = zip_time(Utc::now());
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let bridge = handle.clone();
    let task = handle.spawn_blocking(move || {
        let result = write_all(
            &bridge,
            tx,
            entries,
            password.as_ref().map(|p| p.as_str()),
            modified,
            manifest,
        );
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                tracing::debug!(error = %e, "zip bundle abandoned by its reader");
            } else {
                tracing::warn!(error = %e, "zip bundle aborted");
            }
        }
        result
    });
    output(rx, task)
}

/// The output stream: every chunk sent, then the writer's verdict. Chunks are only ever
/// sent before a failure, so an `Err` (from the writer or a panic) always comes last.
fn output(
    rx: mpsc::Receiver<Bytes>,
    task: JoinHandle<io::Result<()>>,
) -> BoxStream<'static, Result<Bytes, io::Error>> {
    enum State {
        Sending(mpsc::Receiver<Bytes>, JoinHandle<io::Result<()>>),
        Done,
    }
    stream::unfold(State::Sending(rx, task), |state| async move {
        let State::Sending(mut rx, task) = state else {
            return None;
        };
        if let Some(chunk) = rx.recv().await {
            return Some((Ok(chunk), State::Sending(rx, task)));
        }
        // The channel is closed: the writer has returned or panicked.
        match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((Err(e), State::Done)),
            Err(e) => Some((
                Err(io::Error::other(format!("the zip writer failed: {e}"))),
                State::Done,
            )),
        }
    })
    .boxed()
}

/// The zip's modification time for `now`, or the zip epoch (1980) if out of range.
fn zip_time(now: chrono::DateTime<Utc>) -> zip::DateTime {
    let fields = (
        u16::try_from(now.year()),
        u8::try_from(now.month()),
        u8::try_from(now.day()),
        u8::try_from(now.hour()),
        u8::try_from(now.minute()),
        u8::try_from(now.second()),
    );
    match fields {
        (Ok(y), Ok(mo), Ok(d), Ok(h), Ok(mi), Ok(s)) => {
            zip::DateTime::from_date_and_time(y, mo, d, h, mi, s).unwrap_or_default()
        }
        _ => zip::DateTime::default(),
    }
}

/// Writes the whole bundle into `tx`; runs on a blocking thread.
fn write_all(
    handle: &tokio::runtime::Handle,
    tx: mpsc::Sender<Bytes>,
    entries: Vec<Entry>,
    password: Option<&str>,
    modified: zip::DateTime,
    manifest: impl FnOnce(&[FileDigest]) -> serde_json::Value,
) -> io::Result<()> {
    let aborted = Rc::new(Cell::new(false));
    let sink = ChannelSink {
        tx,
        buf: Vec::with_capacity(CHUNK_SIZE),
        aborted: Rc::clone(&aborted),
    };
    let mut zip = ZipWriter::new_stream(sink);
    // Dropping a `ZipWriter` finishes the archive (central directory and all). Declared after
    // `zip`, this guard is dropped first, on an error return or a panic alike, and makes the
    // sink swallow that ending: no valid-looking end is ever sent after a failure.
    let mut guard = AbortUnlessFinished {
        aborted,
        finished: false,
    };
    write_entries(handle, &mut zip, entries, password, modified, manifest)?;
    guard.finished = true;
    // Should `finish` itself fail, the writer it drops tries to finish again; the only
    // failures left at this point are the sink's (and a failed send aborts the sink), and
    // the output ends with the error either way.
    let mut sink = zip.finish().map_err(zip_error)?.into_inner();
    sink.send_buffered()
}

/// Aborts the sink when dropped, unless the bundle was written in full.
struct AbortUnlessFinished {
    aborted: Rc<Cell<bool>>,
    finished: bool,
}

impl Drop for AbortUnlessFinished {
    fn drop(&mut self) {
        if !self.finished {
            self.aborted.set(true);
        }
    }
}

fn write_entries(
    handle: &tokio::runtime::Handle,
    zip: &mut ZipWriter<StreamWriter<ChannelSink>>,
    entries: Vec<Entry>,
    password: Option<&str>,
    modified: zip::DateTime,
    manifest: impl FnOnce(&[FileDigest]) -> serde_json::Value,
) -> io::Result<()> {
    let mut base = SimpleFileOptions::default()
        .last_modified_time(modified)
        .unix_permissions(0o644);
    if let Some(password) = password {
        base = base.with_aes_encryption(AesMode::Aes256, password);
    }
    let count = entries.len();
    let mut digests = Vec::with_capacity(count);
    for (i, entry) in entries.into_iter().enumerate() {
        let n = i + 1;
        let name = zip_name(n, &entry.name);
        let large = entry
            .size_hint
            .is_none_or(|size| size >= zip::ZIP64_BYTES_THR - ZIP64_MARGIN);
        let options = base
            .compression_method(CompressionMethod::Stored)
            .large_file(large);
        zip.start_file(format!("{FILES_DIR}{name}"), options)
            .map_err(zip_error)?;
        // What `tokio_util::io::SyncIoBridge` does (its `io-util` feature is not enabled):
        // wait for each chunk on this blocking thread, within the runtime.
        let mut content = entry.content;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = handle.block_on(content.next()) {
            let chunk =
                chunk.map_err(|e| io::Error::other(format!("reading file {n} of {count}: {e}")))?;
            for piece in chunk.chunks(WRITE_SIZE) {
                hasher.update(piece);
                zip.write_all(piece)?;
            }
            size += chunk.len() as u64;
        }
        // The input is released before the next file is started.
        drop(content);
        if let Some(expected) = entry.size_hint {
            if size != expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file {n} of {count} has {size} bytes, {expected} were expected"),
                ));
            }
        }
        digests.push(FileDigest {
            zip_name: name,
            original_name: entry.name,
            size,
            sha256: hex::encode(hasher.finalize()),
        });
    }
    let json = serde_json::to_vec_pretty(&manifest(&digests)).map_err(io::Error::other)?;
    zip.start_file(
        MANIFEST_NAME,
        base.compression_method(CompressionMethod::Deflated),
    )
    .map_err(zip_error)?;
    zip.write_all(&json)
}

fn zip_error(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// The writer's output: gathers bytes into chunks of [`CHUNK_SIZE`] and sends them into the
/// bounded channel, blocking while it is full. Once `aborted`, it discards everything.
struct ChannelSink {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    aborted: Rc<Cell<bool>>,
}

impl ChannelSink {
    /// Sends what is buffered, if anything.
    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_SIZE));
        self.tx.blocking_send(Bytes::from(chunk)).map_err(|_| {
            self.aborted.set(true);
            io::Error::new(io::ErrorKind::BrokenPipe, "the bundle's reader went away")
        })
    }
}

impl Write for ChannelSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.aborted.get() {
            return Ok(data.len());
        }
        let take = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() >= CHUNK_SIZE {
            self.send_buffered()?;
        }
        Ok(take)
    }

    /// Does nothing: chunks go out when full and at the end, never half-empty.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A safe name inside the zip for a stored file name, prefixed by `index` (at least two
/// digits, `01_passwd`) so that names given distinct indexes are unique.
///
/// Keeps only the last non-empty path component (split on both `/` and `\`); turns control
/// characters, bidi and zero-width formatting characters and `<>:"|?*` into `_`; collapses
/// runs of dots, so no `..` remains; drops leading dots and leading or trailing spaces and
/// trailing dots; an empty result becomes `file`. The whole name is at most
/// [`MAX_NAME_CHARS`] characters and 255 UTF-8 bytes, cut on a character boundary, keeping a
/// short extension.
pub fn zip_name(index: usize, original: &str) -> String {
    let prefix = format!("{index:02}_");
    let last = original
        .split(['/', '\\'])
        .rev()
        .find(|c| !c.is_empty())
        .unwrap_or("");
    let mut clean = String::with_capacity(last.len());
    for c in last.chars() {
        let c = if c.is_control() || is_invisible_format(c) || "<>:\"|?*".contains(c) {
            '_'
        } else {
            c
        };
        if c == '.' && clean.ends_with('.') {
            continue;
        }
        clean.push(c);
    }
    let trimmed = tidy(&clean);
    let base = if trimmed.is_empty() { "file" } else { trimmed };
    let max_chars = MAX_NAME_CHARS.saturating_sub(prefix.chars().count());
    let max_bytes = MAX_NAME_BYTES.saturating_sub(prefix.len());
    format!("{prefix}{}", shorten(base, max_chars, max_bytes))
}

/// Drops leading dots and spaces and trailing dots and spaces.
fn tidy(name: &str) -> &str {
    name.trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
}

/// Formatting characters that can hide or reorder what a name shows (`invoice\u{202E}fdp.exe`).
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// `name` cut to at most `max_chars` characters and `max_bytes` bytes, keeping its
/// extension when that is short.
fn shorten(name: &str, max_chars: usize, max_bytes: usize) -> String {
    if name.chars().count() <= max_chars && name.len() <= max_bytes {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot)
            if dot > 0
                && name[dot..].chars().count() <= MAX_KEPT_EXTENSION
                && name[dot..].len() * 2 <= max_bytes =>
        {
            name.split_at(dot)
        }
        _ => (name, ""),
    };
    let max_chars = max_chars.saturating_sub(ext.chars().count());
    let max_bytes = max_bytes.saturating_sub(ext.len());
    let mut cut = String::new();
    for c in stem.chars().take(max_chars) {
        if cut.len() + c.len_utf8() > max_bytes {
            break;
        }
        cut.push(c);
    }
    let cut = tidy(&cut);
    let stem = if cut.is_empty() { "file" } else { cut };
    format!("{stem}{ext}")
}

/// A random password for an encrypted bundle: [`PASSWORD_LEN`] characters of
/// [`PASSWORD_ALPHABET`] (no 0/O/1/l/I) from the operating system's generator, about 140
/// bits.
pub fn new_password() -> String {
    (0..PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[OsRng.gen_range(0..PASSWORD_ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Cursor;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use std::io::Read;

    use rand::RngCore;
    use serde_json::json;
    use zip::ZipArchive;

    use super::*;

    fn chunks(data: &[u8], size: usize) -> BoxStream<'static, Result<Bytes, AppError>> {
        let parts: Vec<Result<Bytes, AppError>> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts).boxed()
    }

    fn entry(name: &str, data: &[u8], size_hint: Option<u64>) -> Entry {
        Entry {
            name: name.into(),
            size_hint,
            content: chunks(data, 10_000),
        }
    }

    fn random(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        rand::thread_rng().fill_bytes(&mut v);
        v
    }

    /// Collects the output: the bytes, and the error it ended with, if any.
    async fn collect(
        mut s: BoxStream<'static, Result<Bytes, io::Error>>,
    ) -> (Vec<u8>, Option<io::Error>) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => {
                    assert!(s.next().await.is_none(), "nothing may follow an error");
                    return (out, Some(e));
                }
            }
        }
        (out, None)
    }

    fn manifest_of(digests: &[FileDigest]) -> serde_json::Value {
        json!({ "export": "test", "files": digests })
    }

    fn three() -> (Vec<Entry>, Vec<(&'static str, Vec<u8>)>) {
        let big = random(1024 * 1024 + 123);
        let files = vec![
            ("Report 2024.pdf", b"%PDF-1.7 small".to_vec()),
            ("empty.txt", Vec::new()),
            ("../../etc/passwd", big),
        ];
        let entries = vec![
            entry(files[0].0, &files[0].1, Some(files[0].1.len() as u64)),
            entry(files[1].0, &files[1].1, Some(0)),
            // Unknown size: written as ZIP64.
            entry(files[2].0, &files[2].1, None),
        ];
        (entries, files)
    }

    const EXPECTED_NAMES: [&str; 4] = [
        "files/01_Report 2024.pdf",
        "files/02_empty.txt",
        "files/03_passwd",
        "manifest.json",
    ];

    fn read_entry(
        zip: &mut ZipArchive<Cursor<Vec<u8>>>,
        name: &str,
        password: Option<&str>,
    ) -> Vec<u8> {
        let mut f = match password {
            Some(p) => zip
                .by_name_decrypt(name, p.as_bytes())
                .expect("open with password"),
            None => zip.by_name(name).expect("open"),
        };
        let mut out = Vec::new();
        f.read_to_end(&mut out).expect("read");
        out
    }

    fn check_bundle(bytes: Vec<u8>, files: &[(&str, Vec<u8>)], password: Option<&str>) {
        let mut zip = ZipArchive::new(Cursor::new(bytes)).expect("a valid zip");
        let names: Vec<String> = zip
            .file_names()
            .map(|n| n.expect("name").into_owned())
            .collect();
        assert_eq!(names, EXPECTED_NAMES);
        for n in &names {
            assert!(!n.contains(".."), "{n}");
            assert!(!n.starts_with('/') && !n.contains('\\'), "{n}");
        }
        for i in 0..zip.len() {
            let f = zip.by_index_raw(i).expect("entry");
            assert_eq!(
                f.encrypted(),
                password.is_some(),
                "{}",
                f.name().expect("name")
            );
        }
        let mut by_sha = HashMap::new();
        for ((original, data), name) in files.iter().zip(&EXPECTED_NAMES) {
            assert_eq!(&read_entry(&mut zip, name, password), data, "{name}");
            by_sha.insert(*original, (name.trim_start_matches(FILES_DIR), data));
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&read_entry(&mut zip, MANIFEST_NAME, password)).expect("json");
        assert_eq!(manifest["export"], "test");
        let listed = manifest["files"].as_array().expect("files");
        assert_eq!(listed.len(), files.len());
        for d in listed {
            let original = d["original_name"].as_str().expect("original_name");
            let (zip_name, data) = by_sha[original];
            assert_eq!(d["zip_name"], zip_name);
            assert_eq!(d["size"], data.len() as u64);
            assert_eq!(d["sha256"], hex::encode(Sha256::digest(data)));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_files_then_manifest() {
        let (entries, files) = three();
        let (bytes, err) = collect(write_zip(entries, None, manifest_of)).await;
        assert!(err.is_none(), "{err:?}");
        check_bundle(bytes, &files, None);
    }

    #[tokio::test]
    async fn works_on_a_current_thread_runtime() {
        let (entries, files) = three();
        let (bytes, err) = collect(write_zip(entries, None, manifest_of)).await;
        assert!(err.is_none(), "{err:?}");
        check_bundle(bytes, &files, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn encrypts_every_entry_with_the_password() {
        let (entries, files) = three();
        let password = new_password();
        let (bytes, err) = collect(write_zip(entries, Some(password.clone()), manifest_of)).await;
        assert!(err.is_none(), "{err:?}");
        // The plaintext does not appear in the output.
        assert!(!bytes.windows(14).any(|w| w == b"%PDF-1.7 small"));
        assert!(!bytes.windows(11).any(|w| w == b"\"sha256\": \""));
        let mut zip = ZipArchive::new(Cursor::new(bytes.clone())).expect("a valid zip");
        for name in EXPECTED_NAMES {
            assert!(
                zip.by_name(name).is_err(),
                "{name} opened without a password"
            );
            // A wrong password is refused when opening (verifier) or at the end (HMAC).
            let wrong = zip.by_name_decrypt(name, b"not the password").map(|mut f| {
                let mut v = Vec::new();
                f.read_to_end(&mut v)
            });
            assert!(
                !matches!(wrong, Ok(Ok(_))),
                "{name} opened with a wrong password"
            );
        }
        check_bundle(bytes, &files, Some(&password));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_input_error_ends_the_output_with_an_error() {
        let (mut entries, _) = three();
        let mut bad = random(600 * 1024);
        let failing: Vec<Result<Bytes, AppError>> = vec![
            Ok(Bytes::from(bad.split_off(300 * 1024))),
            Ok(Bytes::from(bad)),
            Err(AppError::internal("integrity failure")),
        ];
        entries.insert(
            1,
            Entry {
                name: "bad.bin".into(),
                size_hint: None,
                content: stream::iter(failing).boxed(),
            },
        );
        let manifest_called = Arc::new(AtomicU64::new(0));
        let called = Arc::clone(&manifest_called);
        let (bytes, err) = collect(write_zip(entries, None, move |d| {
            called.fetch_add(1, Ordering::SeqCst);
            manifest_of(d)
        }))
        .await;
        let err = err.expect("the output ends with an error");
        assert!(err.to_string().contains("reading file 2 of 4"), "{err}");
        assert!(!bytes.is_empty(), "the first chunks were sent");
        assert!(
            ZipArchive::new(Cursor::new(bytes)).is_err(),
            "must not look like a zip"
        );
        assert_eq!(manifest_called.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_size_hint_ends_the_output_with_an_error() {
        let entries = vec![entry("a.txt", b"twelve bytes", Some(13))];
        let (bytes, err) = collect(write_zip(entries, None, manifest_of)).await;
        let err = err.expect("the output ends with an error");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(
            bytes.is_empty(),
            "less than a chunk was written: nothing is sent"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_is_bounded_and_a_dropped_reader_stops_the_writer() {
        struct Guard(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.send(());
                }
            }
        }
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
        let guard = Guard(Some(dropped_tx));
        let pulled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&pulled);
        let block = Bytes::from(vec![7u8; 64 * 1024]);
        // An endless file.
        let content = stream::repeat_with(move || {
            let _ = &guard;
            counter.fetch_add(block.len() as u64, Ordering::SeqCst);
            Ok(block.clone())
        })
        .boxed();
        let entries = vec![Entry {
            name: "endless.bin".into(),
            size_hint: None,
            content,
        }];
        let mut out = write_zip(entries, Some(new_password()), manifest_of);
        let first = out.next().await.expect("a chunk").expect("no error");
        assert_eq!(first.len(), CHUNK_SIZE);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ahead = pulled.load(Ordering::SeqCst);
        let bound = ((CHANNEL_CHUNKS + 3) * CHUNK_SIZE + 2 * WRITE_SIZE) as u64;
        assert!(
            ahead <= bound,
            "read {ahead} bytes ahead of a reader that took one chunk"
        );
        drop(out);
        tokio::time::timeout(Duration::from_secs(10), dropped_rx)
            .await
            .expect("the writer stopped and dropped its input")
            .expect("guard signalled");
    }

    #[test]
    fn after_a_failure_the_end_of_the_archive_is_never_sent() {
        // A dropped `ZipWriter` finishes its archive; the guard makes the sink swallow that.
        for finished in [false, true] {
            let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
            let aborted = Rc::new(Cell::new(false));
            let sink = ChannelSink {
                tx,
                buf: Vec::new(),
                aborted: Rc::clone(&aborted),
            };
            let mut zip = ZipWriter::new_stream(sink);
            {
                let mut guard = AbortUnlessFinished {
                    aborted: Rc::clone(&aborted),
                    finished: false,
                };
                let options =
                    SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
                zip.start_file("a", options).expect("start");
                // One chunk goes out; the buffer is left a few bytes short of a second.
                zip.write_all(&vec![1u8; 2 * CHUNK_SIZE - 60])
                    .expect("write");
                guard.finished = finished;
            }
            drop(zip);
            let mut sent = Vec::new();
            while let Ok(chunk) = rx.try_recv() {
                sent.push(chunk);
            }
            if finished {
                // Without the guard the ending crosses into a second chunk, which is sent.
                assert_eq!(sent.len(), 2);
            } else {
                assert_eq!(sent.len(), 1, "only the chunk sent before the failure");
            }
        }
    }

    #[tokio::test]
    async fn an_empty_bundle_has_only_the_manifest() {
        let (bytes, err) = collect(write_zip(Vec::new(), None, manifest_of)).await;
        assert!(err.is_none(), "{err:?}");
        let mut zip = ZipArchive::new(Cursor::new(bytes)).expect("a valid zip");
        assert_eq!(zip.len(), 1);
        let m: serde_json::Value =
            serde_json::from_slice(&read_entry(&mut zip, MANIFEST_NAME, None)).expect("json");
        assert_eq!(m["files"], json!([]));
    }

    #[test]
    fn outside_a_runtime_the_stream_is_an_error() {
        use futures_util::FutureExt;
        let mut s = write_zip(Vec::new(), None, manifest_of);
        let first = s.next().now_or_never().expect("ready at once");
        assert!(matches!(first, Some(Err(_))));
        assert!(matches!(s.next().now_or_never(), Some(None)));
    }

    #[test]
    fn zip_names_are_neutralised() {
        let table = [
            (1, "..\\..\\x", "01_x"),
            (1, "a/b/c.pdf", "01_c.pdf"),
            (2, ".hidden", "02_hidden"),
            (3, "con<>.txt", "03_con__.txt"),
            (4, "", "04_file"),
            (5, "../..", "05_file"),
            (6, "dir/sub/", "06_sub"),
            (7, "/etc/passwd", "07_passwd"),
            (8, "C:\\Users\\me\\report.docx", "08_report.docx"),
            (9, "a..b...pdf", "09_a.b.pdf"),
            (10, "what?*|\".txt", "10_what____.txt"),
            (11, "line\nbreak\t.txt", "11_line_break_.txt"),
            (12, "invoice\u{202E}fdp.exe", "12_invoice_fdp.exe"),
            (13, " trailing. . ", "13_trailing"),
            (100, "x", "100_x"),
            (1, "Übersicht – März.pdf", "01_Übersicht – März.pdf"),
        ];
        for (i, input, want) in table {
            assert_eq!(zip_name(i, input), want, "{input:?}");
        }
    }

    #[test]
    fn long_zip_names_are_cut_on_character_boundaries() {
        let long = format!("{}.pdf", "日本語の文書".repeat(60));
        let name = zip_name(1, &long);
        assert!(
            name.chars().count() <= MAX_NAME_CHARS,
            "{}",
            name.chars().count()
        );
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert!(name.starts_with("01_日本語"));
        assert!(name.ends_with(".pdf"), "{name}");

        let ascii = "a".repeat(1000);
        let name = zip_name(2, &ascii);
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);

        let emoji = "😀".repeat(200);
        let name = zip_name(3, &emoji);
        assert!(name.len() <= MAX_NAME_BYTES && name.chars().count() <= MAX_NAME_CHARS);
        assert!(name.trim_start_matches("03_").chars().all(|c| c == '😀'));

        // A long "extension" is not kept whole.
        let name = zip_name(4, &format!("a.{}", "b".repeat(500)));
        assert_eq!(name.chars().count(), MAX_NAME_CHARS);

        // Cutting never leaves a trailing dot or space.
        let name = zip_name(5, &format!("{}. x", "a".repeat(146)));
        assert!(!name.ends_with('.') && !name.ends_with(' '), "{name:?}");
    }

    #[test]
    fn zip_names_hold_no_traversal_for_any_input() {
        let nasty = [
            "..",
            "...",
            "./.",
            "..\\",
            "a/../..",
            "....//....",
            ". .",
            "\u{0}",
            "..\u{202E}..",
        ];
        for (i, input) in nasty.iter().enumerate() {
            let name = zip_name(i + 1, input);
            assert!(!name.contains(".."), "{input:?} -> {name:?}");
            assert!(
                !name.contains('/') && !name.contains('\\'),
                "{input:?} -> {name:?}"
            );
            assert!(!name.chars().any(char::is_control), "{input:?} -> {name:?}");
        }
    }

    #[test]
    fn passwords_are_long_random_and_unambiguous() {
        let a = new_password();
        let b = new_password();
        assert_ne!(a, b);
        for p in [a, b] {
            assert_eq!(p.chars().count(), PASSWORD_LEN);
            assert!(p.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)), "{p}");
            assert!(!p.contains(['0', 'O', '1', 'l', 'I']), "{p}");
        }
        for c in b"0O1lI" {
            assert!(!PASSWORD_ALPHABET.contains(c));
        }
        // Over many passwords every character of the alphabet shows up.
        let all: String = (0..200).map(|_| new_password()).collect();
        assert!(PASSWORD_ALPHABET.iter().all(|c| all.as_bytes().contains(c)));
    }
}
