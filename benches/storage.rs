//! Storage benchmark (`cargo bench --bench storage`).
//!
//! On one pseudo-random file (1 GiB by default; `STRONGROOM_BENCH_SIZE_MIB` changes it) it
//! measures, in one run:
//! 1. plain write and read of the file through the object store (`Store::put_plain`,
//!    `Store::get_plain`, local store in a temp dir);
//! 2. an encrypted upload through the HTTP API of the real release binary
//!    (`strongroom serve` on 127.0.0.1, a free port, its own data dir and embedded
//!    cluster), streamed from disk by a small HTTP/1.1 client, while the server's RSS is
//!    sampled from /proc every ~50 ms;
//! 3. a decrypting read of the stored file through the library (`Store::open_decrypted`
//!    with the server's key ring and its `files` row), checked against the original's
//!    SHA-256;
//! 4. `age` encryption of the same file, when `age` is installed.
//!
//! Figures are printed, never asserted: the machine is shared and noisy, so compare the
//! ratios printed at the end, which come from the same run.
//!
//! The binary is `STRONGROOM_BIN`, or `target/release/strongroom` (build it first with
//! `cargo build --release`; `scripts/bench` does). Everything lives in one temp dir that is
//! removed at the end, also on failure; the server is stopped with SIGTERM (it stops its
//! PostgreSQL cluster itself), and a watchdog stops the cluster and removes the dir if this
//! process dies first.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use strongroom::crypto::KeyRing;
use strongroom::pg::{EmbeddedPg, StartOptions};
use strongroom::storage::{FileRef, Store};
use uuid::Uuid;

const MIB: u64 = 1024 * 1024;
const PASSWORD: &str = "benchmark passphrase, long enough";
const USERNAME: &str = "bench.archivist";
/// How long the server may take to answer /healthz after start (initdb on first start).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Socket timeouts: every blocking read or write on the API ends by then.
const IO_TIMEOUT: Duration = Duration::from_secs(600);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(run());
    drop(rt);
    if let Err(e) = result {
        eprintln!("storage bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// Owns what the bench starts; dropping it (normal end, error or panic) stops the server
/// and removes the temp dir.
struct Cleanup {
    dir: PathBuf,
    server: Option<Child>,
    watchdog: Option<Child>,
}

impl Cleanup {
    fn server_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then up to 60 s for a clean stop (the server stops its cluster), then SIGKILL.
    fn stop_server(&mut self) -> Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            bail!("the server had already exited");
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not stop within 60 s of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = self.stop_server() {
            eprintln!("stopping the server: {e:#}");
        }
        if let Some(mut w) = self.watchdog.take() {
            // EOF on its stdin: it stops a cluster still running and removes the dir.
            drop(w.stdin.take());
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

fn line(label: &str, bytes: u64, d: Duration) -> f64 {
    let r = mb_per_s(bytes, d);
    println!("  {label:<34} {:>9.1} MB/s   ({:.2} s)", r, d.as_secs_f64());
    r
}

async fn run() -> Result<()> {
    let size_mib: u64 = match std::env::var("STRONGROOM_BENCH_SIZE_MIB") {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .context("STRONGROOM_BENCH_SIZE_MIB must be a positive number of MiB")?,
        Err(_) => 1024,
    };
    let size = size_mib * MIB;
    let bin = server_binary()?;

    let dir = std::env::temp_dir().join(format!("sr-bench-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 0711: when run as root the server's cluster runs as `postgres`, which must be able to
    // traverse this directory to reach its own.
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        server: None,
        watchdog: None,
    };
    let result = bench(&mut cleanup, &bin, size).await;
    if result.is_err() && dir.join("server.log").exists() {
        eprintln!(
            "last lines of the server log:\n{}",
            cleanup.server_log_tail()
        );
    }
    let stopped = cleanup.stop_server();
    drop(cleanup);
    result?;
    stopped.context("stopping the server")
}

fn server_binary() -> Result<PathBuf> {
    let bin = match std::env::var_os("STRONGROOM_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/strongroom"),
    };
    if !bin.is_file() {
        bail!(
            "no server binary at {} (run `cargo build --release` first, or set STRONGROOM_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

struct Figures {
    plain_write: f64,
    plain_read: f64,
    upload: f64,
    decrypt_read: f64,
    age: Option<f64>,
    rss_growth_kib: u64,
}

async fn bench(cleanup: &mut Cleanup, bin: &Path, size: u64) -> Result<()> {
    let dir = cleanup.dir.clone();
    println!(
        "storage bench: {} MiB pseudo-random file, temp dir {}",
        size / MIB,
        dir.display()
    );

    // ---- the test file ----------------------------------------------------------------
    let input = dir.join("input.bin");
    let t = Instant::now();
    let original_sha = tokio::task::spawn_blocking({
        let input = input.clone();
        move || write_random_file(&input, size)
    })
    .await??;
    println!(
        "  generated the file in {:.2} s, sha256 {}",
        t.elapsed().as_secs_f64(),
        hex::encode(original_sha)
    );

    // ---- 1. plain write / read ----------------------------------------------------------
    println!("1. plain object store (local directory, no encryption)");
    let plain_dir = dir.join("plain-store");
    let store = Store::from_settings(Some(&format!("file://{}", plain_dir.display())), &dir)?;
    let key = "bench/plain.bin";
    let file = tokio::fs::File::open(&input).await?;
    let t = Instant::now();
    let written = store.put_plain(key, file).await?;
    let plain_write = line("plain write (put_plain)", written, t.elapsed());
    if written != size {
        bail!("put_plain wrote {written} bytes, expected {size}");
    }
    let t = Instant::now();
    let mut s = std::pin::pin!(store.get_plain(key).await?);
    let mut read = 0u64;
    while let Some(b) = s.next().await {
        read += b?.len() as u64;
    }
    let plain_read = line("plain read (get_plain)", read, t.elapsed());
    if read != size {
        bail!("get_plain read {read} bytes, expected {size}");
    }
    store.delete(key).await?;

    // ---- 2. encrypted upload through the real server -----------------------------------
    println!("2. encrypted upload through the HTTP API (release binary)");
    let data_dir = dir.join("data");
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let max_upload = (size + 64 * MIB).max(4096 * MIB);
    let child = strongroom_cmd(bin)
        .args(["serve", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .env("STRONGROOM_MAX_UPLOAD_BYTES", max_upload.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let server_pid = child.id();
    cleanup.server = Some(child);
    wait_healthy(cleanup, port)?;

    let mut add = strongroom_cmd(bin)
        .args(["user", "add", "--username", USERNAME, "--role", "archivist"])
        .args([
            "--department",
            "Retail",
            "--display-name",
            "Bench Archivist",
        ])
        .arg("--password-stdin")
        .arg("--data-dir")
        .arg(&data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    add.stdin
        .take()
        .context("user add stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = add.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "strongroom user add failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let (status, body) = json_call(
        port,
        "POST",
        "/api/v1/login",
        None,
        &json!({"username": USERNAME, "password": PASSWORD}),
    )?;
    if status != 200 {
        bail!("login: {status} {body}");
    }
    let token = body["token"].as_str().context("login token")?.to_string();
    let (status, category) = json_call(
        port,
        "POST",
        "/api/v1/categories",
        Some(&token),
        &json!({"code": "SCANS", "name": "Scans", "sensitivity": "confidential",
                "department": "Retail", "retention_years": 10}),
    )?;
    if status != 201 {
        bail!("create category: {status} {category}");
    }
    let (status, record) = json_call(
        port,
        "POST",
        "/api/v1/records",
        Some(&token),
        &json!({"category_id": category["id"], "title": "Benchmark scan"}),
    )?;
    if status != 201 {
        bail!("create record: {status} {record}");
    }
    let record_id = record["id"].as_str().context("record id")?.to_string();

    let baseline_kib = vm_rss_kib(server_pid).context("reading the server's VmRSS")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let (mut peak, mut n) = (0u64, 0u32);
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(server_pid) {
                    peak = peak.max(kib);
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (peak, n)
        }
    });
    let t = Instant::now();
    let upload = tokio::task::spawn_blocking({
        let input = input.clone();
        move || upload_streaming(port, &token, &record_id, &input, size)
    })
    .await?;
    let elapsed = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (peak_kib, samples) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("RSS sampler panicked"))?;
    let (status, info) = upload?;
    if status != 201 {
        bail!("upload: {status} {info}");
    }
    let upload_rate = line("encrypted upload (HTTP, multipart)", size, elapsed);
    if info["size"].as_u64() != Some(size) || info["sha256"] != hex::encode(original_sha) {
        bail!("the server recorded another size or SHA-256: {info}");
    }
    let after_kib = vm_rss_kib(server_pid).unwrap_or(0);
    let peak_kib = peak_kib.max(baseline_kib);
    let growth_kib = peak_kib - baseline_kib;
    println!(
        "  server RSS: baseline {:.1} MiB, peak {:.1} MiB during upload ({samples} samples), \
         growth {:.1} MiB, after {:.1} MiB",
        kib_to_mib(baseline_kib),
        kib_to_mib(peak_kib),
        kib_to_mib(growth_kib),
        kib_to_mib(after_kib)
    );

    // ---- 3. decrypting read through the library -----------------------------------------
    println!("3. decrypting read (Store::open_decrypted, server's key ring and files row)");
    let file_id: Uuid = info["id"].as_str().context("file id")?.parse()?;
    let pg = EmbeddedPg::ensure_running(&data_dir, &StartOptions::default()).await?;
    cleanup.watchdog = Some(pg.stop_on_process_exit(Some(&dir))?);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pg.connect_options(strongroom::pg::DATABASE))
        .await?;
    let row: (String, String, Vec<u8>, i64, Vec<u8>) = sqlx::query_as(
        "SELECT object_key, kek_id, wrapped_key, size, sha256 FROM files WHERE id = $1",
    )
    .bind(file_id)
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    drop(pg); // not the owner: the server stops the cluster
    let sha256: [u8; 32] = row
        .4
        .as_slice()
        .try_into()
        .context("sha256 column length")?;
    if sha256 != original_sha {
        bail!("the files row's SHA-256 differs from the original's");
    }
    let fref = FileRef {
        file_id,
        object_key: row.0,
        kek_id: row.1,
        wrapped_key: row.2,
        size: u64::try_from(row.3)?,
        sha256,
    };
    let keys = KeyRing::load_or_create(&data_dir.join("master.key"))?;
    let vault = Store::from_settings(None, &data_dir)?;
    let t = Instant::now();
    let mut s = std::pin::pin!(vault.open_decrypted(&keys, &fref).await?);
    let mut read = 0u64;
    while let Some(b) = s.next().await {
        read += b?.len() as u64;
    }
    let decrypt_read = line("decrypting read", read, t.elapsed());
    if read != size {
        bail!("the decrypting read returned {read} bytes, expected {size}");
    }
    // Independent check, untimed: hash the plaintext ourselves. (The timed read already
    // verified size and SHA-256 against the row, or it would have failed.)
    let mut s = std::pin::pin!(vault.open_decrypted(&keys, &fref).await?);
    let mut hasher = Sha256::new();
    while let Some(b) = s.next().await {
        hasher.update(&b?);
    }
    let got: [u8; 32] = hasher.finalize().into();
    println!(
        "  SHA-256 of the decrypted content {} the original",
        if got == original_sha {
            "matches"
        } else {
            "DOES NOT MATCH"
        }
    );
    if got != original_sha {
        bail!("decrypted content differs from the original");
    }

    // ---- 4. age ---------------------------------------------------------------------------
    println!("4. age (X25519 recipient, same file)");
    let age = age_encrypt(&dir, &input, size)?;

    cleanup.stop_server().context("stopping the server")?;

    let figures = Figures {
        plain_write,
        plain_read,
        upload: upload_rate,
        decrypt_read,
        age,
        rss_growth_kib: growth_kib,
    };
    summary(&figures);
    Ok(())
}

fn summary(f: &Figures) {
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!("summary (ratios within this run; figures are informative, never asserted)");
    println!(
        "  plain write {:.1} MB/s, plain read {:.1} MB/s, encrypted upload {:.1} MB/s, decrypting read {:.1} MB/s{}",
        f.plain_write,
        f.plain_read,
        f.upload,
        f.decrypt_read,
        f.age.map(|a| format!(", age {a:.1} MB/s")).unwrap_or_default()
    );
    match f.age {
        Some(age) => {
            let r = f.upload / age;
            println!(
                "  encrypted upload / age          {r:>6.2}   (target >= 1)     {}",
                verdict(r >= 1.0)
            );
        }
        None => println!(
            "  encrypted upload / age             n/a   (age not installed (apt-get install age))"
        ),
    }
    let r = f.decrypt_read / f.plain_read;
    println!(
        "  decrypting read / plain read    {r:>6.2}   (target >= 0.8)   {}",
        verdict(r >= 0.8)
    );
    let g = kib_to_mib(f.rss_growth_kib);
    println!(
        "  server RSS growth during upload {g:>6.1} MiB (target < 64 MiB) {}",
        verdict(g < 64.0)
    );
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Writes `size` pseudo-random bytes (fixed seed) and returns their SHA-256.
fn write_random_file(path: &Path, size: u64) -> Result<[u8; 32]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5752_4f4f_4d42_454e);
    let mut out = std::io::BufWriter::with_capacity(
        MIB as usize,
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(MIB))?;
        rng.fill_bytes(&mut buf[..n]);
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(hasher.finalize().into())
}

/// The binary with an environment that cannot point it elsewhere than its data dir.
fn strongroom_cmd(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for var in [
        "DATABASE_URL",
        "STRONGROOM_DATA_DIR",
        "STRONGROOM_OBJECT_STORE",
        "STRONGROOM_MASTER_KEY_FILE",
        "STRONGROOM_ADDRESS",
        "STRONGROOM_PORT",
        "STRONGROOM_PUBLIC_URL",
        "STRONGROOM_LOG_FORMAT",
    ] {
        c.env_remove(var);
    }
    c.env("STRONGROOM_LOG_LEVEL", "warn");
    c
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

fn wait_healthy(cleanup: &mut Cleanup, port: u16) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(child) = cleanup.server.as_mut() {
            if let Some(status) = child.try_wait()? {
                cleanup.server = None;
                bail!("the server exited during start-up ({status})");
            }
        }
        if let Ok((200, _)) = http_call(port, "GET", "/healthz", &[], b"") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not answer /healthz within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn connect(port: u16) -> Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn request_head(
    method: &str,
    path: &str,
    port: u16,
    headers: &[(&str, &str)],
    content_length: u64,
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {content_length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// One request on a fresh connection (`Connection: close`); returns status and body.
fn http_call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let mut s = connect(port)?;
    s.write_all(request_head(method, path, port, headers, body.len() as u64).as_bytes())?;
    s.write_all(body)?;
    read_response(s)
}

fn json_call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value)> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let (status, bytes) = http_call(port, method, path, &headers, body.to_string().as_bytes())?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// POSTs the file as `multipart/form-data` (part `file`) with a Content-Length, streaming
/// it from disk 1 MiB at a time.
fn upload_streaming(
    port: u16,
    token: &str,
    record_id: &str,
    input: &Path,
    size: u64,
) -> Result<(u16, Value)> {
    let boundary = format!("strongroom-bench-{}", Uuid::new_v4().simple());
    let preamble = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"input.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let epilogue = format!("\r\n--{boundary}--\r\n");
    let total = preamble.len() as u64 + size + epilogue.len() as u64;
    let auth = format!("Bearer {token}");
    let ct = format!("multipart/form-data; boundary={boundary}");
    let path = format!("/api/v1/records/{record_id}/files");
    let mut s = connect(port)?;
    let head = request_head(
        "POST",
        &path,
        port,
        &[("Authorization", &auth), ("Content-Type", &ct)],
        total,
    );
    let sent: std::io::Result<()> = (|| {
        s.write_all(head.as_bytes())?;
        s.write_all(preamble.as_bytes())?;
        let mut f = std::fs::File::open(input)?;
        let mut buf = vec![0u8; MIB as usize];
        let mut left = size;
        while left > 0 {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "input file shorter than expected",
                ));
            }
            s.write_all(&buf[..n])?;
            left = left.saturating_sub(n as u64);
        }
        s.write_all(epilogue.as_bytes())?;
        s.flush()
    })();
    // The server may answer (and close) early, e.g. 413: read its answer either way.
    let answer = read_response(s);
    match (sent, answer) {
        (_, Ok((status, body))) => {
            Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
        }
        (Err(e), Err(_)) => Err(e).context("sending the upload"),
        (Ok(()), Err(e)) => Err(e).context("reading the upload's response"),
    }
}

/// Reads a whole HTTP/1.1 response from a connection the server closes after it.
fn read_response(s: TcpStream) -> Result<(u16, Vec<u8>)> {
    let mut r = std::io::BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            bail!("connection closed inside the response headers");
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line)?;
            let n = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if n == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((status, body))
}

fn on_path(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

/// `age -r RECIPIENT -o out in`, timed; None when age is not installed.
fn age_encrypt(dir: &Path, input: &Path, size: u64) -> Result<Option<f64>> {
    let (Some(age), Some(keygen)) = (on_path("age"), on_path("age-keygen")) else {
        println!("  age not installed (apt-get install age)");
        return Ok(None);
    };
    let key = dir.join("age.key");
    let out = Command::new(&keygen)
        .arg("-o")
        .arg(&key)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "age-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(&keygen).arg("-y").arg(&key).output()?;
    if !out.status.success() {
        bail!(
            "age-keygen -y failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let recipient = String::from_utf8(out.stdout)?.trim().to_string();
    let encrypted = dir.join("input.bin.age");
    let t = Instant::now();
    let status = Command::new(&age)
        .arg("-r")
        .arg(&recipient)
        .arg("-o")
        .arg(&encrypted)
        .arg(input)
        .stdin(Stdio::null())
        .status()?;
    let elapsed = t.elapsed();
    if !status.success() {
        bail!("age failed ({status})");
    }
    let rate = line("age -r (encrypt to file)", size, elapsed);
    let _ = std::fs::remove_file(&encrypted);
    Ok(Some(rate))
}
