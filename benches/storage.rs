//! Storage benchmark (`cargo bench --bench storage`).
//!
//! On one pseudo-random file (1 GiB by default; `STRONGROOM_BENCH_SIZE_MIB` changes it) it
//! measures, in one run:
//! 1. plain write and read of the file through the object store (`Store::put_plain`,
//!    `Store::get_plain`, local store in a temp dir);
//! 2. an encrypted upload through the HTTP API of the real release binary
//!    (`strongroom serve` on 127.0.0.1, a free port, its own data dir and embedded
//!    cluster), streamed from disk by a small HTTP/1.1 client, while the server's RSS is
//!    sampled from /proc every ~50 ms; then, on the restarted server, four concurrent
//!    uploads of the file's first quarter (256 MiB each by default), aggregate MB/s and RSS;
//! 3. a decrypting read of the stored file through the library (`Store::open_decrypted`
//!    with the server's key ring and its `files` row), checked against the original's
//!    SHA-256;
//! 4. `age` encryption of the same file, when `age` is installed;
//! 5. an export download through the HTTP API: an employee's export request on the record,
//!    approved by two supervisors of its department (confidential exports need two), then
//!    `GET /api/v1/exports/{request}/download` streamed to a file in the temp dir while
//!    hashed, with the server's RSS sampled; the zip is then opened with the `zip` crate and
//!    its manifest's and its entry's SHA-256 checked against the original's. Then the same
//!    with an AES-encrypted zip (a second request: a link works once), figure only, its
//!    password checked on the manifest;
//! 6. the viewer: a generated 5-page PDF (US letter, text) and a generated 4000 x 3000 JPEG
//!    on a second record, a view grant for the employee, then the viewer page
//!    (`GET /view/{grant}/files/{file}`) and the rendered page images
//!    (`.../pages/{n}?zoom=100` for every PDF page, zoom 200 once, the JPEG a few times),
//!    timed per call. PDF pages need poppler-utils (`pdftoppm`, `pdfinfo`); without them
//!    only the JPEG is timed.
//!
//! Figures are printed, never asserted: the machine is shared and noisy, so compare the
//! ratios printed at the end, which come from the same run. `STRONGROOM_BENCH_UPLOAD_ONLY=1`
//! stops after step 4 (the upload figures without the export and viewer steps).
//!
//! The binary is `STRONGROOM_BIN`, or `target/release/strongroom` (build it first with
//! `cargo build --release`; `scripts/bench` does). Everything lives in one temp dir that is
//! removed at the end, also on failure; the server is stopped with SIGTERM (it stops its
//! PostgreSQL cluster itself), and a watchdog stops the cluster and removes the dir if this
//! process dies first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop it loudly

#[path = "../tests/fixtures/pdf.rs"]
mod pdf_fixture;

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;
use server::{free_port, strongroom_cmd, Cleanup};

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
const EMPLOYEE: &str = "bench.employee";
const SUPERVISORS: [&str; 2] = ["bench.supervisor.one", "bench.supervisor.two"];
/// The department of the bench's category and of everyone the bench creates.
const DEPARTMENT: &str = "Retail";
/// Pages of the generated PDF (US letter).
const PDF_PAGES: u32 = 5;
/// Size of the generated JPEG scan, in pixels.
const JPEG_SIZE: (u32, u32) = (4000, 3000);
/// How often the JPEG's page image is asked for.
const JPEG_CALLS: usize = 3;
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
    /// Aggregate MB/s of four concurrent uploads of a quarter of the file.
    concurrent: f64,
    concurrent_rss_growth_kib: u64,
    /// None with STRONGROOM_BENCH_UPLOAD_ONLY=1.
    export: Option<ExportFigures>,
    viewer: Option<ViewerFigures>,
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
    let max_upload = (size + 64 * MIB).max(4096 * MIB);
    let mut server_pid = start_server(cleanup, bin, &data_dir, port, max_upload)?;

    add_user(bin, &data_dir, USERNAME, "archivist", "Bench Archivist")?;
    let token = login(port, USERNAME)?;
    let (status, category) = json_call(
        port,
        "POST",
        "/api/v1/categories",
        Some(&token),
        &json!({"code": "SCANS", "name": "Scans", "sensitivity": "confidential",
                "department": DEPARTMENT, "retention_years": 10}),
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

    let sampler = RssSampler::start(server_pid)?;
    let t = Instant::now();
    let upload = tokio::task::spawn_blocking({
        let (input, token, record_id) = (input.clone(), token.clone(), record_id.clone());
        move || {
            upload_streaming(
                port,
                &token,
                &record_id,
                &input,
                size,
                "application/octet-stream",
            )
        }
    })
    .await?;
    let elapsed = t.elapsed();
    let upload_rss = sampler.finish()?;
    let (status, info) = upload?;
    if status != 201 {
        bail!("upload: {status} {info}");
    }
    let upload_rate = line("encrypted upload (HTTP, multipart)", size, elapsed);
    if info["size"].as_u64() != Some(size) || info["sha256"] != hex::encode(original_sha) {
        bail!("the server recorded another size or SHA-256: {info}");
    }
    upload_rss.print("upload");

    // ---- 2b. four concurrent uploads of a quarter of the file each ----------------------
    // On a restarted server, so that memory the single upload left to the allocator does
    // not hide this step's growth.
    let quarter = size / 4;
    println!(
        "2b. four concurrent encrypted uploads of {} MiB each (HTTP API, restarted server)",
        quarter / MIB
    );
    cleanup.stop_server().context("stopping the server")?;
    server_pid = start_server(cleanup, bin, &data_dir, port, max_upload)?;
    // Their own record: the export step expects the first record to hold one file.
    let (status, record2) = json_call(
        port,
        "POST",
        "/api/v1/records",
        Some(&token),
        &json!({"category_id": category["id"], "title": "Benchmark scan, concurrent uploads"}),
    )?;
    if status != 201 {
        bail!("create record: {status} {record2}");
    }
    let record2_id = record2["id"].as_str().context("record id")?.to_string();
    let quarter_sha = tokio::task::spawn_blocking({
        let input = input.clone();
        move || sha256_of_prefix(&input, quarter)
    })
    .await??;
    let sampler = RssSampler::start(server_pid)?;
    let t = Instant::now();
    let uploads: Vec<_> = (0..4)
        .map(|_| {
            let (input, token, record_id) = (input.clone(), token.clone(), record2_id.clone());
            tokio::task::spawn_blocking(move || {
                upload_streaming(
                    port,
                    &token,
                    &record_id,
                    &input,
                    quarter,
                    "application/octet-stream",
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for u in uploads {
        answers.push(u.await?);
    }
    let elapsed = t.elapsed();
    let concurrent_rss = sampler.finish()?;
    for answer in answers {
        let (status, info) = answer?;
        if status != 201 {
            bail!("concurrent upload: {status} {info}");
        }
        if info["size"].as_u64() != Some(quarter) || info["sha256"] != hex::encode(quarter_sha) {
            bail!("the server recorded another size or SHA-256: {info}");
        }
    }
    let concurrent = line("4 concurrent uploads, aggregate", 4 * quarter, elapsed);
    concurrent_rss.print("the concurrent uploads");

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

    if std::env::var_os("STRONGROOM_BENCH_UPLOAD_ONLY").is_some_and(|v| v == "1") {
        println!("5., 6. skipped (STRONGROOM_BENCH_UPLOAD_ONLY=1)");
        cleanup.stop_server().context("stopping the server")?;
        summary(&Figures {
            plain_write,
            plain_read,
            upload: upload_rate,
            decrypt_read,
            age,
            rss_growth_kib: upload_rss.growth_kib(),
            concurrent,
            concurrent_rss_growth_kib: concurrent_rss.growth_kib(),
            export: None,
            viewer: None,
        });
        return Ok(());
    }

    // ---- 5. export download through the real server -------------------------------------
    println!("5. export download through the HTTP API (approved export, streamed zip)");
    add_user(bin, &data_dir, EMPLOYEE, "employee", "Bench Employee")?;
    for (i, name) in SUPERVISORS.iter().enumerate() {
        add_user(
            bin,
            &data_dir,
            name,
            "supervisor",
            &format!("Bench Supervisor {}", i + 1),
        )?;
    }
    let ctx = Ctx {
        port,
        pid: server_pid,
        dir: dir.clone(),
        employee: login(port, EMPLOYEE)?,
        supervisors: SUPERVISORS
            .iter()
            .map(|name| login(port, name))
            .collect::<Result<_>>()?,
    };
    let export = tokio::task::block_in_place(|| {
        export_step(&ctx, &record_id, original_sha, size, decrypt_read)
    })?;

    // ---- 6. the viewer -------------------------------------------------------------------
    println!("6. viewer (view grant, pages rendered by the server)");
    let viewer = tokio::task::block_in_place(|| viewer_step(&ctx, &token, &category))?;

    cleanup.stop_server().context("stopping the server")?;

    let figures = Figures {
        plain_write,
        plain_read,
        upload: upload_rate,
        decrypt_read,
        age,
        rss_growth_kib: upload_rss.growth_kib(),
        concurrent,
        concurrent_rss_growth_kib: concurrent_rss.growth_kib(),
        export: Some(export),
        viewer: Some(viewer),
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
            println!(
                "  4 concurrent uploads / age      {:>6.2}   (no target)",
                f.concurrent / age
            );
        }
        None => println!(
            "  encrypted upload / age             n/a   (age not installed (apt-get install age))"
        ),
    }
    println!(
        "  encrypted upload / plain write  {:>6.2}   (no target)",
        f.upload / f.plain_write
    );
    let r = f.decrypt_read / f.plain_read;
    println!(
        "  decrypting read / plain read    {r:>6.2}   (target >= 0.8)   {}",
        verdict(r >= 0.8)
    );
    let g = kib_to_mib(f.rss_growth_kib);
    println!(
        "  server RSS growth during upload {g:>6.1} MiB (target < 16 MiB) {}",
        verdict(g < 16.0)
    );
    let g = kib_to_mib(f.concurrent_rss_growth_kib);
    println!(
        "  RSS growth, 4 concurrent uploads {g:>5.1} MiB (target < 48 MiB) {}  ({:.1} MB/s aggregate)",
        verdict(g < 48.0),
        f.concurrent
    );
    let Some(e) = &f.export else { return };
    println!(
        "  export download {:.1} MB/s (plain zip), {:.1} MB/s (AES-256 zip)",
        e.plain, e.encrypted
    );
    if let Some(v) = &f.viewer {
        println!(
            "  viewer page images at zoom 100: {}; JPEG {:.0} ms median, {:.0} ms max",
            match v.pdf_pages {
                Some(p) => format!("PDF {:.0} ms median, {:.0} ms max", p.median_ms, p.max_ms),
                None => "PDF n/a (poppler-utils not installed)".to_string(),
            },
            v.jpeg_page.median_ms,
            v.jpeg_page.max_ms
        );
    }
    let r = e.plain / f.decrypt_read;
    println!("  export download / decrypting read {r:>5.2}   (no target)");
    let r = e.encrypted / e.plain;
    println!("  AES-256 export / plain export    {r:>6.2}   (no target)");
    println!(
        "  server RSS growth during export  {:>5.1} MiB (plain), {:.1} MiB (AES-256) (no target)",
        kib_to_mib(e.rss.growth_kib()),
        kib_to_mib(e.encrypted_rss.growth_kib())
    );
    if let Some(v) = &f.viewer {
        println!(
            "  server RSS growth in the viewer  {:>5.1} MiB (no target)",
            kib_to_mib(v.rss.growth_kib())
        );
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `strongroom user add` against the running server's data dir (it uses the server's
/// cluster), in [`DEPARTMENT`], with [`PASSWORD`].
fn add_user(bin: &Path, data_dir: &Path, username: &str, role: &str, display: &str) -> Result<()> {
    let mut add = strongroom_cmd(bin)
        .args(["user", "add", "--username", username, "--role", role])
        .args(["--department", DEPARTMENT, "--display-name", display])
        .arg("--password-stdin")
        .arg("--data-dir")
        .arg(data_dir)
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
            "strongroom user add {username} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Signs in through the API; returns the bearer token.
fn login(port: u16, username: &str) -> Result<String> {
    let (status, body) = json_call(
        port,
        "POST",
        "/api/v1/login",
        None,
        &json!({"username": username, "password": PASSWORD}),
    )?;
    if status != 200 {
        bail!("login as {username}: {status} {body}");
    }
    Ok(body["token"].as_str().context("login token")?.to_string())
}

/// Samples a process's VmRSS every ~50 ms on a thread until [`RssSampler::finish`] (or
/// drop, on an error path).
struct RssSampler {
    pid: u32,
    baseline_kib: u64,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u32)>>,
}

/// What an [`RssSampler`] saw.
struct Rss {
    baseline_kib: u64,
    peak_kib: u64,
    samples: u32,
    after_kib: u64,
}

impl RssSampler {
    fn start(pid: u32) -> Result<RssSampler> {
        let baseline_kib = vm_rss_kib(pid).context("reading the server's VmRSS")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let (mut peak, mut n) = (0u64, 0u32);
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = vm_rss_kib(pid) {
                        peak = peak.max(kib);
                        n += 1;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                (peak, n)
            }
        });
        Ok(RssSampler {
            pid,
            baseline_kib,
            stop,
            thread: Some(thread),
        })
    }

    fn finish(mut self) -> Result<Rss> {
        self.stop.store(true, Ordering::Relaxed);
        let (peak_kib, samples) = self
            .thread
            .take()
            .context("RSS sampler already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("RSS sampler panicked"))?;
        Ok(Rss {
            baseline_kib: self.baseline_kib,
            peak_kib: peak_kib.max(self.baseline_kib),
            samples,
            after_kib: vm_rss_kib(self.pid).unwrap_or(0),
        })
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Rss {
    fn growth_kib(&self) -> u64 {
        self.peak_kib - self.baseline_kib
    }

    fn print(&self, during: &str) {
        println!(
            "  server RSS: baseline {:.1} MiB, peak {:.1} MiB during {during} ({} samples), \
             growth {:.1} MiB, after {:.1} MiB",
            kib_to_mib(self.baseline_kib),
            kib_to_mib(self.peak_kib),
            self.samples,
            kib_to_mib(self.growth_kib()),
            kib_to_mib(self.after_kib)
        );
    }
}

/// The running server and the people steps 5 and 6 act as.
struct Ctx {
    port: u16,
    pid: u32,
    dir: PathBuf,
    employee: String,
    /// Two supervisors of the category's department.
    supervisors: Vec<String>,
}

/// The employee's request of `kind` on `record_id`, approved by as many of the supervisors
/// as its route needs; returns the request (with its grant).
fn approved_request(ctx: &Ctx, record_id: &str, kind: &str, purpose: &str) -> Result<Value> {
    let (status, mut request) = json_call(
        ctx.port,
        "POST",
        "/api/v1/requests",
        Some(&ctx.employee),
        &json!({"record_id": record_id, "kind": kind, "purpose": purpose, "duration_hours": 4}),
    )?;
    if status != 201 {
        bail!("{kind} request: {status} {request}");
    }
    let id = request["id"].as_str().context("request id")?.to_string();
    for supervisor in &ctx.supervisors {
        if request["state"] != "pending" {
            break;
        }
        let (status, body) = json_call(
            ctx.port,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            Some(supervisor),
            &json!({"comment": "approved for the storage benchmark"}),
        )?;
        if status != 200 {
            bail!("approving the {kind} request: {status} {body}");
        }
        request = body;
    }
    if request["state"] != "approved" || request["grant"]["id"].as_str().is_none() {
        bail!(
            "the {kind} request is not approved after {} approvals: {request}",
            ctx.supervisors.len()
        );
    }
    Ok(request)
}

/// A body received by [`download`].
struct Downloaded {
    bytes: u64,
    sha256: [u8; 32],
}

/// GETs `path` and streams a 200 answer's body into a new file `out` while hashing it.
fn download(port: u16, token: &str, path: &str, out: &Path) -> Result<Downloaded> {
    let auth = format!("Bearer {token}");
    let mut s = connect(port)?;
    s.write_all(request_head("GET", path, port, &[("Authorization", &auth)], 0).as_bytes())?;
    let mut r = std::io::BufReader::with_capacity(256 * 1024, s);
    let head = read_head(&mut r)?;
    if head.status != 200 {
        let mut body = Vec::new();
        read_body(&mut r, &head, &mut |b| {
            body.extend_from_slice(b);
            Ok(())
        })?;
        bail!(
            "GET {path}: {} {}",
            head.status,
            String::from_utf8_lossy(&body)
        );
    }
    let mut file =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut hasher = Sha256::new();
    let bytes = read_body(&mut r, &head, &mut |b| {
        hasher.update(b);
        file.write_all(b)?;
        Ok(())
    })?;
    Ok(Downloaded {
        bytes,
        sha256: hasher.finalize().into(),
    })
}

/// Opens an export zip with the `zip` crate and checks that its manifest lists one file of
/// the original's size and SHA-256; with `check_content`, also hashes that entry's content.
/// Returns the entry's name.
fn verify_export(
    zip_path: &Path,
    password: Option<&str>,
    original_sha: [u8; 32],
    size: u64,
    check_content: bool,
) -> Result<String> {
    let file = std::fs::File::open(zip_path)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).context("reading the zip")?;
    let manifest: Value = {
        let entry = match password {
            Some(p) => zip.by_name_decrypt("manifest.json", p.as_bytes()),
            None => zip.by_name("manifest.json"),
        }
        .context("manifest.json in the zip")?;
        serde_json::from_reader(entry).context("parsing manifest.json")?
    };
    let files = manifest["files"]
        .as_array()
        .context("the manifest has no files list")?;
    let [listed] = files.as_slice() else {
        bail!("the manifest lists {} files, expected 1", files.len());
    };
    if listed["sha256"] != hex::encode(original_sha) || listed["size"].as_u64() != Some(size) {
        bail!("the manifest's size or SHA-256 differs from the original's: {listed}");
    }
    let name = format!(
        "files/{}",
        listed["zip_name"]
            .as_str()
            .context("the manifest's zip_name")?
    );
    if check_content {
        let mut entry = match password {
            Some(p) => zip.by_name_decrypt(&name, p.as_bytes()),
            None => zip.by_name(&name),
        }
        .with_context(|| format!("{name} in the zip"))?;
        let mut hasher = Sha256::new();
        // The zip crate checks the entry's CRC-32 at its end.
        let n = std::io::copy(&mut entry, &mut hasher)?;
        let got: [u8; 32] = hasher.finalize().into();
        if n != size || got != original_sha {
            bail!("the content of {name} in the zip differs from the original ({n} bytes)");
        }
    }
    Ok(name)
}

/// What step 5 measured.
struct ExportFigures {
    plain: f64,
    encrypted: f64,
    rss: Rss,
    encrypted_rss: Rss,
}

/// Step 5: an approved export of the record (its one big file), downloaded plain and, under
/// a second request, AES-encrypted; both zips are written to the temp dir and removed.
fn export_step(
    ctx: &Ctx,
    record_id: &str,
    original_sha: [u8; 32],
    size: u64,
    decrypt_read: f64,
) -> Result<ExportFigures> {
    const PURPOSE: &str = "storage benchmark: throughput of an export download";
    let request = approved_request(ctx, record_id, "export", PURPOSE)?;
    let rid = request["id"].as_str().context("request id")?;
    println!(
        "  export request approved by {} supervisors ({} category); each zip is streamed to a \
         file in the temp dir while hashed",
        request["required_approvals"],
        request["sensitivity"].as_str().unwrap_or("?")
    );
    let zip_path = ctx.dir.join("export.zip");
    let sampler = RssSampler::start(ctx.pid)?;
    let t = Instant::now();
    let got = download(
        ctx.port,
        &ctx.employee,
        &format!("/api/v1/exports/{rid}/download"),
        &zip_path,
    );
    let elapsed = t.elapsed();
    let rss = sampler.finish()?;
    let got = got.context("downloading the export")?;
    let plain = line("export download, plain zip", got.bytes, elapsed);
    println!(
        "  zip {:.1} MiB ({} bytes besides the file), sha256 {}",
        got.bytes as f64 / MIB as f64,
        got.bytes.saturating_sub(size),
        hex::encode(got.sha256)
    );
    println!(
        "  export download / decrypting read (step 3): {:.2}",
        plain / decrypt_read
    );
    rss.print("download");
    let entry = verify_export(&zip_path, None, original_sha, size, true)?;
    println!(
        "  manifest SHA-256 of {entry} matches the original, and so does its content in the zip"
    );
    std::fs::remove_file(&zip_path)?;

    // The encrypted variant: a new request (a link works once), prepared with encryption.
    let request = approved_request(ctx, record_id, "export", PURPOSE)?;
    let rid = request["id"].as_str().context("request id")?;
    let (status, prepared) = json_call(
        ctx.port,
        "POST",
        &format!("/api/v1/exports/{rid}"),
        Some(&ctx.employee),
        &json!({"encrypt": true}),
    )?;
    if status != 201 {
        bail!("preparing the encrypted export: {status} {prepared}");
    }
    let password = prepared["password"]
        .as_str()
        .context("the prepared export has no password")?
        .to_string();
    let url = prepared["download_url"]
        .as_str()
        .context("download_url")?
        .to_string();
    let zip_path = ctx.dir.join("export-aes.zip");
    let sampler = RssSampler::start(ctx.pid)?;
    let t = Instant::now();
    let got = download(ctx.port, &ctx.employee, &url, &zip_path);
    let elapsed = t.elapsed();
    let encrypted_rss = sampler.finish()?;
    let got = got.context("downloading the encrypted export")?;
    let encrypted = line("export download, AES-256 zip", got.bytes, elapsed);
    encrypted_rss.print("download");
    verify_export(&zip_path, Some(&password), original_sha, size, false)?;
    println!("  the password opens its manifest, which lists the original's SHA-256");
    std::fs::remove_file(&zip_path)?;
    Ok(ExportFigures {
        plain,
        encrypted,
        rss,
        encrypted_rss,
    })
}

/// Median and maximum of some timings.
#[derive(Clone, Copy)]
struct Stats {
    median_ms: f64,
    max_ms: f64,
}

fn stats(ms: &[f64]) -> Stats {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let median_ms = match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    Stats {
        median_ms,
        max_ms: v.last().copied().unwrap_or(f64::NAN),
    }
}

fn ms_line(label: &str, s: Stats, n: usize, extra: &str) {
    if n == 1 {
        println!("  {label:<34} {:>9.0} ms{extra}", s.median_ms);
    } else {
        println!(
            "  {label:<34} {:>9.0} ms median, {:.0} ms max ({n} calls){extra}",
            s.median_ms, s.max_ms
        );
    }
}

/// GETs a viewer route as `token`; returns the time to the whole answer and its body,
/// which must be a 200.
fn timed_get(port: u16, token: &str, path: &str) -> Result<(f64, Vec<u8>)> {
    let auth = format!("Bearer {token}");
    let t = Instant::now();
    let (status, body) = http_call(port, "GET", path, &[("Authorization", &auth)], b"")?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if status != 200 {
        bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok((ms, body))
}

/// Width and height of a PNG, from its header.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap_or_default());
    (png.len() >= 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR")
        .then(|| (be(&png[16..20]), be(&png[20..24])))
}

/// Times one page image `calls` times; checks each is a PNG.
fn time_page(
    ctx: &Ctx,
    base: &str,
    page: u32,
    zoom: u32,
    calls: usize,
) -> Result<(Vec<f64>, (u32, u32), usize)> {
    let path = format!("{base}/pages/{page}?zoom={zoom}");
    let mut ms = Vec::with_capacity(calls);
    let mut last = ((0, 0), 0);
    for _ in 0..calls {
        let (t, png) = timed_get(ctx.port, &ctx.employee, &path)?;
        let dims = png_size(&png).with_context(|| format!("GET {path} did not answer a PNG"))?;
        ms.push(t);
        last = (dims, png.len());
    }
    Ok((ms, last.0, last.1))
}

/// The viewer page of a file, timed; fails if it says the file cannot be shown.
fn time_viewer_page(ctx: &Ctx, base: &str) -> Result<f64> {
    let (ms, html) = timed_get(ctx.port, &ctx.employee, base)?;
    if String::from_utf8_lossy(&html).contains("cannot be shown in the viewer") {
        bail!("the viewer cannot show {base}");
    }
    Ok(ms)
}

/// What step 6 measured.
struct ViewerFigures {
    pdf_pages: Option<Stats>,
    jpeg_page: Stats,
    rss: Rss,
}

/// Step 6: a PDF and a JPEG on a second record, a view grant, and the viewer's routes timed.
fn viewer_step(ctx: &Ctx, archivist: &str, category: &Value) -> Result<ViewerFigures> {
    let (status, record) = json_call(
        ctx.port,
        "POST",
        "/api/v1/records",
        Some(archivist),
        &json!({"category_id": category["id"], "title": "Benchmark viewer documents"}),
    )?;
    if status != 201 {
        bail!("create record: {status} {record}");
    }
    let record_id = record["id"].as_str().context("record id")?.to_string();
    let pdf_path = ctx.dir.join("bench.pdf");
    std::fs::write(&pdf_path, pdf(PDF_PAGES))?;
    let t = Instant::now();
    let (w, h) = JPEG_SIZE;
    let jpeg_path = ctx.dir.join("scan.jpg");
    std::fs::write(&jpeg_path, jpeg(w, h)?)?;
    let pdf_len = std::fs::metadata(&pdf_path)?.len();
    let jpeg_len = std::fs::metadata(&jpeg_path)?.len();
    println!(
        "  generated a {PDF_PAGES}-page PDF ({:.1} KiB) and a {w}x{h} JPEG ({:.1} MiB, in {:.2} s)",
        pdf_len as f64 / 1024.0,
        jpeg_len as f64 / MIB as f64,
        t.elapsed().as_secs_f64()
    );
    let mut ids = Vec::new();
    for (path, len, media_type) in [
        (&pdf_path, pdf_len, "application/pdf"),
        (&jpeg_path, jpeg_len, "image/jpeg"),
    ] {
        let (status, info) =
            upload_streaming(ctx.port, archivist, &record_id, path, len, media_type)?;
        if status != 201 {
            bail!("upload of {}: {status} {info}", path.display());
        }
        ids.push(info["id"].as_str().context("file id")?.to_string());
    }
    let request = approved_request(
        ctx,
        &record_id,
        "view",
        "storage benchmark: time the viewer's pages",
    )?;
    let grant = request["grant"]["id"].as_str().context("grant id")?;
    println!(
        "  view request approved by {} supervisor(s)",
        request["required_approvals"]
    );
    let pdf_base = format!("/view/{grant}/files/{}", ids[0]);
    let jpeg_base = format!("/view/{grant}/files/{}", ids[1]);

    let sampler = RssSampler::start(ctx.pid)?;
    let poppler = on_path("pdftoppm").is_some() && on_path("pdfinfo").is_some();
    let mut pdf_pages = None;
    if poppler {
        let ms = time_viewer_page(ctx, &pdf_base)?;
        ms_line("PDF viewer page (HTML, page count)", stats(&[ms]), 1, "");
        let mut all = Vec::new();
        let mut dims = (0, 0);
        let mut bytes = 0;
        for page in 1..=PDF_PAGES {
            let (ms, d, n) = time_page(ctx, &pdf_base, page, 100, 1)?;
            all.extend(ms);
            dims = d;
            bytes += n;
        }
        let s = stats(&all);
        ms_line(
            "PDF page image, zoom 100",
            s,
            all.len(),
            &format!(
                "; {}x{} PNG, {:.0} KiB average",
                dims.0,
                dims.1,
                bytes as f64 / 1024.0 / f64::from(PDF_PAGES)
            ),
        );
        pdf_pages = Some(s);
        let (ms, d, n) = time_page(ctx, &pdf_base, 1, 200, 1)?;
        ms_line(
            "PDF page image, zoom 200",
            stats(&ms),
            1,
            &format!("; {}x{} PNG, {:.0} KiB", d.0, d.1, n as f64 / 1024.0),
        );
    } else {
        println!("  poppler-utils not installed (pdftoppm, pdfinfo): PDF pages not timed");
    }
    let ms = time_viewer_page(ctx, &jpeg_base)?;
    ms_line("JPEG viewer page (HTML)", stats(&[ms]), 1, "");
    let (ms, d, n) = time_page(ctx, &jpeg_base, 1, 100, JPEG_CALLS)?;
    let jpeg_page = stats(&ms);
    ms_line(
        "JPEG page image, zoom 100",
        jpeg_page,
        ms.len(),
        &format!("; {}x{} PNG, {:.0} KiB", d.0, d.1, n as f64 / 1024.0),
    );
    let rss = sampler.finish()?;
    rss.print("the viewer calls");
    Ok(ViewerFigures {
        pdf_pages,
        jpeg_page,
        rss,
    })
}

/// A PDF of `pages` US-letter pages of Helvetica text.
fn pdf(pages: u32) -> Vec<u8> {
    let pages: Vec<pdf_fixture::Page> = (0..pages)
        .map(|i| {
            let mut text = format!(
                "BT /F1 24 Tf 72 720 Td (Strongroom benchmark, page {} of {pages}) Tj ET\n\
                 BT /F1 11 Tf 14 TL 72 680 Td\n",
                i + 1
            );
            for l in 0..40 {
                text.push_str(&format!(
                    "(Line {:02}: the quick brown fox jumps over the lazy dog, 0123456789.) Tj T*\n",
                    l + 1
                ));
            }
            text.push_str("ET");
            pdf_fixture::Page {
                width: 612,
                height: 792,
                content: text,
            }
        })
        .collect();
    pdf_fixture::document(&pages)
}

/// A `width` x `height` JPEG of gradients, a fine pattern and pixel noise (a few MiB at the
/// default quality, like a photographed page, rather than the few hundred KiB of a flat one).
fn jpeg(width: u32, height: u32) -> Result<Vec<u8>> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        // A cheap integer hash of the position: deterministic noise of +-16.
        let mut h = x.wrapping_mul(0x9e37_79b1) ^ y.wrapping_mul(0x85eb_ca77);
        h ^= h >> 15;
        h = h.wrapping_mul(0x2c1b_3c6d);
        h ^= h >> 12;
        let noise = |shift: u32| ((h >> shift) & 0x1f) as i32 - 16;
        let px = |base: u32, shift: u32| (base as i32 + noise(shift)).clamp(0, 255) as u8;
        image::Rgb([
            px(x * 255 / width, 0),
            px(y * 255 / height, 5),
            px((x ^ y) & 0xff, 10),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)?;
    Ok(out.into_inner())
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

/// Starts `strongroom serve` on `port` with `data_dir` (logging to `server.log` in the
/// temp dir, appended) and waits until it answers; returns its pid.
fn start_server(
    cleanup: &mut Cleanup,
    bin: &Path,
    data_dir: &Path,
    port: u16,
    max_upload: u64,
) -> Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cleanup.dir.join("server.log"))?;
    let child = strongroom_cmd(bin)
        .args(["serve", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .env("STRONGROOM_MAX_UPLOAD_BYTES", max_upload.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    cleanup.server = Some(child);
    wait_healthy(cleanup, port)?;
    Ok(pid)
}

/// SHA-256 of the first `len` bytes of a file.
fn sha256_of_prefix(path: &Path, len: u64) -> Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?.take(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
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

/// POSTs the file as `multipart/form-data` (part `file`, named as on disk, of type
/// `content_type`) with a Content-Length, streaming it from disk 1 MiB at a time.
fn upload_streaming(
    port: u16,
    token: &str,
    record_id: &str,
    input: &Path,
    size: u64,
    content_type: &str,
) -> Result<(u16, Value)> {
    let file_name = input
        .file_name()
        .and_then(|n| n.to_str())
        .context("upload file name")?;
    let boundary = format!("strongroom-bench-{}", Uuid::new_v4().simple());
    let preamble = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         Content-Type: {content_type}\r\n\r\n"
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
            let want = usize::try_from(left.min(MIB)).unwrap_or(buf.len());
            let n = f.read(&mut buf[..want])?;
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
    let head = read_head(&mut r)?;
    let mut body = Vec::new();
    read_body(&mut r, &head, &mut |b| {
        body.extend_from_slice(b);
        Ok(())
    })?;
    Ok((head.status, body))
}

/// A response's status and how its body is delimited.
struct Head {
    status: u16,
    length: Option<u64>,
    chunked: bool,
}

/// Reads the status line and the headers.
fn read_head(r: &mut impl BufRead) -> Result<Head> {
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length: Option<u64> = None;
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
    Ok(Head {
        status,
        length,
        chunked,
    })
}

/// Hands the body to `sink` piece by piece (at most 256 KiB at a time) as it arrives:
/// chunked, by Content-Length, or up to the end of the connection. Returns its length; a
/// connection cut inside the body is an error.
fn read_body(
    r: &mut impl BufRead,
    head: &Head,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    const PIECE: u64 = 256 * 1024;
    let mut buf = vec![0u8; PIECE as usize];
    let mut total = 0u64;
    // Exactly `n` bytes into the sink.
    let mut copy = |r: &mut dyn BufRead, mut n: u64| -> Result<()> {
        while n > 0 {
            let k = usize::try_from(n.min(PIECE))?;
            r.read_exact(&mut buf[..k])
                .context("connection closed inside the response body")?;
            sink(&buf[..k])?;
            n -= k as u64;
            total += k as u64;
        }
        Ok(())
    };
    if head.chunked {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line)?;
            let n = u64::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if n == 0 {
                break;
            }
            copy(r, n)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = head.length {
        copy(r, n)?;
    } else {
        loop {
            let got = r.fill_buf()?;
            if got.is_empty() {
                break;
            }
            let k = got.len();
            sink(got)?;
            r.consume(k);
            total += k as u64;
        }
    }
    Ok(total)
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
