//! Viewer latency benchmark (`cargo bench --bench viewer`).
//!
//! The real release server (`strongroom serve` on 127.0.0.1, a free port, its own data dir
//! and embedded cluster) with a generated 20-page PDF (US letter, 40 lines of text a page)
//! on a confidential record and an employee holding a view grant. For each round (a fresh
//! grant, so nothing is cached for it yet):
//! - **first page**: the viewer page (`GET /view/{grant}/files/{file}`, which decrypts the
//!   file and counts its pages) and then page 1's image, timed separately and together:
//!   what a reader waits for after clicking "view";
//! - **next pages**: pages 2 to 20 asked for one after the other, each as soon as the
//!   previous one arrived (the fastest a reader could turn pages), and then the same 19
//!   pages again at a reading pace (`STRONGROOM_BENCH_READ_MS`, default 300 ms between pages);
//! - **again**: pages 1 to 20 once more (all cached by then).
//!
//! The same rounds run twice: with the viewer cache on (the default 256 MiB) and with it
//! off (`STRONGROOM_VIEWER_CACHE_MIB=0`: every page decrypts the file and renders, as
//! before the cache). Rounds: `STRONGROOM_BENCH_VIEWER_ROUNDS` (default 3). Needs
//! poppler-utils (`pdftoppm`, `pdfinfo`).
//!
//! Figures are printed (median and max), never asserted: the machine is shared and noisy.
//! The binary is `STRONGROOM_BIN`, or `target/release/strongroom`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure should stop it loudly

#[path = "../tests/fixtures/pdf.rs"]
mod pdf_fixture;

#[path = "common/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use server::{free_port, strongroom_cmd, Cleanup};

const PASSWORD: &str = "benchmark passphrase, long enough";
const ARCHIVIST: &str = "bench.archivist";
const EMPLOYEE: &str = "bench.employee";
const SUPERVISORS: [&str; 2] = ["bench.supervisor.one", "bench.supervisor.two"];
const DEPARTMENT: &str = "Retail";
const PAGES: u32 = 20;
const START_TIMEOUT: Duration = Duration::from_secs(180);
const IO_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    if let Err(e) = run() {
        eprintln!("viewer bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

fn run() -> Result<()> {
    let rounds = env_number("STRONGROOM_BENCH_VIEWER_ROUNDS", 3)?.max(1);
    let read_ms = env_number("STRONGROOM_BENCH_READ_MS", 300)?;
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
    for tool in ["pdftoppm", "pdfinfo"] {
        if !on_path(tool) {
            bail!("{tool} is not installed (apt-get install poppler-utils)");
        }
    }
    let dir = std::env::temp_dir().join(format!("sr-bench-viewer-{}", std::process::id()));
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
    let result = bench(&mut cleanup, &bin, rounds, read_ms);
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

/// What one configuration measured, in ms.
#[derive(Default)]
struct Figures {
    open: Vec<f64>,
    first_image: Vec<f64>,
    first_page: Vec<f64>,
    next_back_to_back: Vec<f64>,
    next_reading: Vec<f64>,
    again: Vec<f64>,
    png_bytes: Vec<usize>,
}

fn bench(cleanup: &mut Cleanup, bin: &Path, rounds: u64, read_ms: u64) -> Result<()> {
    let dir = cleanup.dir.clone();
    let data_dir = dir.join("data");
    println!(
        "viewer bench: {PAGES}-page PDF, {rounds} round(s) per configuration, temp dir {}",
        dir.display()
    );
    let port = free_port()?;
    start(cleanup, bin, &data_dir, port, None)?;
    add_user(bin, &data_dir, ARCHIVIST, "archivist")?;
    add_user(bin, &data_dir, EMPLOYEE, "employee")?;
    for name in SUPERVISORS {
        add_user(bin, &data_dir, name, "supervisor")?;
    }
    let archivist = login(port, ARCHIVIST)?;
    let (status, category) = json_call(
        port,
        "POST",
        "/api/v1/categories",
        Some(&archivist),
        &json!({"code": "VIEW", "name": "Viewer bench", "sensitivity": "confidential",
                "department": DEPARTMENT, "retention_years": 10}),
    )?;
    if status != 201 {
        bail!("create category: {status} {category}");
    }
    let (status, record) = json_call(
        port,
        "POST",
        "/api/v1/records",
        Some(&archivist),
        &json!({"category_id": category["id"], "title": "Viewer benchmark document"}),
    )?;
    if status != 201 {
        bail!("create record: {status} {record}");
    }
    let record_id = record["id"].as_str().context("record id")?.to_string();
    let doc = pdf(PAGES);
    let (status, info) = upload(port, &archivist, &record_id, "bench.pdf", &doc)?;
    if status != 201 {
        bail!("upload: {status} {info}");
    }
    let file_id = info["id"].as_str().context("file id")?.to_string();
    println!(
        "  uploaded a {PAGES}-page PDF ({:.1} KiB)",
        doc.len() as f64 / 1024.0
    );

    let mut results = Vec::new();
    for (label, cache_mib) in [("cache on (256 MiB)", None), ("cache off", Some(0))] {
        if cache_mib.is_some() {
            cleanup.stop_server()?;
            start(cleanup, bin, &data_dir, port, cache_mib)?;
        }
        println!("{label}");
        let mut f = Figures::default();
        let employee = login(port, EMPLOYEE)?;
        let supervisors: Vec<String> = SUPERVISORS
            .iter()
            .map(|s| login(port, s))
            .collect::<Result<_>>()?;
        for round in 1..=rounds {
            let grant = view_grant(port, &employee, &supervisors, &record_id)?;
            let base = format!("/view/{grant}/files/{file_id}");
            let (open, html) = timed_get(port, &employee, &base)?;
            if !String::from_utf8_lossy(&html).contains(&format!("{base}/pages/1?zoom=100")) {
                bail!("the viewer page does not show page 1");
            }
            let (first, png) = page(port, &employee, &base, 1)?;
            f.png_bytes.push(png);
            f.open.push(open);
            f.first_image.push(first);
            f.first_page.push(open + first);
            let mut next = Vec::new();
            for p in 2..=PAGES {
                let (ms, png) = page(port, &employee, &base, p)?;
                next.push(ms);
                f.png_bytes.push(png);
            }
            // A second grant, paged at a reading pace.
            let grant = view_grant(port, &employee, &supervisors, &record_id)?;
            let paced = format!("/view/{grant}/files/{file_id}");
            timed_get(port, &employee, &paced)?;
            page(port, &employee, &paced, 1)?;
            let mut reading = Vec::new();
            for p in 2..=PAGES {
                std::thread::sleep(Duration::from_millis(read_ms));
                reading.push(page(port, &employee, &paced, p)?.0);
            }
            let mut again = Vec::new();
            for p in 1..=PAGES {
                again.push(page(port, &employee, &base, p)?.0);
            }
            let (n, r, a) = (stats(&next), stats(&reading), stats(&again));
            println!(
                "  round {round}: viewer page {open:.0} ms + page 1 {first:.0} ms = {:.0} ms; \
                 next pages {:.0} ms median, {:.0} ms max; at a reading pace {:.0} / {:.0} ms; \
                 again {:.0} / {:.0} ms",
                open + first,
                n.0,
                n.1,
                r.0,
                r.1,
                a.0,
                a.1
            );
            f.next_back_to_back.extend(next);
            f.next_reading.extend(reading);
            f.again.extend(again);
        }
        results.push((label, f));
    }

    println!(
        "summary ({rounds} round(s) each; median / max in ms; targets: first page < 400 ms, \
         next pages < 150 ms each)"
    );
    for (label, f) in &results {
        let line = |name: &str, v: &[f64], target: Option<f64>| {
            let (median, max) = stats(v);
            let verdict = match target {
                Some(t) if max < t => "   met (max)",
                Some(t) if median < t => "   met (median), max over",
                Some(_) => "   MISSED",
                None => "",
            };
            println!("  {label:<20} {name:<34} {median:>7.0} / {max:>5.0}{verdict}",);
        };
        line("viewer page (open)", &f.open, None);
        line("page 1 image", &f.first_image, None);
        line("first page (open + page 1)", &f.first_page, Some(400.0));
        line(
            "next pages, back to back",
            &f.next_back_to_back,
            Some(150.0),
        );
        line(
            &format!("next pages, every {read_ms} ms"),
            &f.next_reading,
            Some(150.0),
        );
        line("pages again", &f.again, None);
        let avg = f.png_bytes.iter().sum::<usize>() as f64 / f.png_bytes.len().max(1) as f64;
        println!(
            "  {label:<20} {:<34} {:>7.0} KiB",
            "average page image",
            avg / 1024.0
        );
    }
    Ok(())
}

/// Starts the server on the data dir (first time: initdb) and waits for /healthz.
fn start(
    cleanup: &mut Cleanup,
    bin: &Path,
    data_dir: &Path,
    port: u16,
    cache_mib: Option<u32>,
) -> Result<()> {
    if cleanup.server.is_some() {
        bail!("a server is already running");
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cleanup.dir.join("server.log"))?;
    let mut cmd = strongroom_cmd(bin);
    cmd.args(["serve", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("STRONGROOM_VIEWER_CACHE_MIB")
        .env_remove("STRONGROOM_VIEWER_CACHE_IDLE_SECONDS")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(mib) = cache_mib {
        cmd.env("STRONGROOM_VIEWER_CACHE_MIB", mib.to_string());
    }
    cleanup.server = Some(
        cmd.spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    );
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
            bail!("the server did not answer /healthz within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn add_user(bin: &Path, data_dir: &Path, username: &str, role: &str) -> Result<()> {
    let mut add = strongroom_cmd(bin)
        .args(["user", "add", "--username", username, "--role", role])
        .args(["--department", DEPARTMENT, "--display-name", username])
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

/// A view request by the employee, approved by as many supervisors as it needs; its grant.
fn view_grant(
    port: u16,
    employee: &str,
    supervisors: &[String],
    record_id: &str,
) -> Result<String> {
    let (status, mut request) = json_call(
        port,
        "POST",
        "/api/v1/requests",
        Some(employee),
        &json!({"record_id": record_id, "kind": "view",
                "purpose": "viewer benchmark: time the pages", "duration_hours": 4}),
    )?;
    if status != 201 {
        bail!("view request: {status} {request}");
    }
    let id = request["id"].as_str().context("request id")?.to_string();
    for supervisor in supervisors {
        if request["state"] != "pending" {
            break;
        }
        let (status, body) = json_call(
            port,
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            Some(supervisor),
            &json!({"comment": "approved for the viewer benchmark"}),
        )?;
        if status != 200 {
            bail!("approving the view request: {status} {body}");
        }
        request = body;
    }
    request["grant"]["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("the view request is not approved: {request}"))
}

/// Page `n`'s image at zoom 100, timed; checks it is a PNG. Returns ms and its size.
fn page(port: u16, token: &str, base: &str, n: u32) -> Result<(f64, usize)> {
    let (ms, png) = timed_get(port, token, &format!("{base}/pages/{n}?zoom=100"))?;
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
        bail!("page {n} is not a PNG");
    }
    Ok((ms, png.len()))
}

/// GETs `path`; the time to the whole answer, which must be a 200, and its body.
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

/// Median and max.
fn stats(ms: &[f64]) -> (f64, f64) {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    (median, v.last().copied().unwrap_or(f64::NAN))
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

/// POSTs `content` as the multipart part `file`.
fn upload(
    port: u16,
    token: &str,
    record_id: &str,
    name: &str,
    content: &[u8],
) -> Result<(u16, Value)> {
    let boundary = "strongroom-viewer-bench-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let auth = format!("Bearer {token}");
    let ct = format!("multipart/form-data; boundary={boundary}");
    let (status, bytes) = http_call(
        port,
        "POST",
        &format!("/api/v1/records/{record_id}/files"),
        &[("Authorization", &auth), ("Content-Type", &ct)],
        &body,
    )?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// One request on a fresh connection (`Connection: close`); returns status and body.
fn http_call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
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
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.trim().eq_ignore_ascii_case("chunked");
            }
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line)?;
            let n = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            if n == 0 {
                break;
            }
            let at = out.len();
            out.resize(at + n, 0);
            r.read_exact(&mut out[at..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, out))
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(cmd).is_file()))
}

/// A PDF of `pages` US-letter pages of Helvetica text (as the storage bench's).
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
