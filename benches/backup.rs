//! Backup and restore benchmark (`cargo bench --bench backup`).
//!
//! 1. `strongroom serve` on 127.0.0.1 (a free port) on a fresh embedded data dir in a temp
//!    dir; an archivist (`strongroom user add`) and one category through the API;
//! 2. `strongroom import` of `STRONGROOM_BENCH_BACKUP_RECORDS` records (default 10,000),
//!    the first of them with pseudo-random files of `STRONGROOM_BENCH_BACKUP_FILE_MIB` MiB
//!    (default 16) totalling `STRONGROOM_BENCH_BACKUP_MIB` MiB (default 2,048), while the
//!    server runs;
//! 3. `strongroom backup --out FILE` while the server keeps serving, timed;
//! 4. `strongroom backup verify FILE`, timed;
//! 5. the server stopped; `strongroom restore --from FILE` into a new data dir holding only
//!    `master.key`, timed (this includes creating and starting the new PostgreSQL cluster and
//!    migrating it; the time of `strongroom migrate` on another empty data dir is printed
//!    beside it as that fixed cost), then `strongroom verify-audit` on the restored vault.
//!
//! Printed: for backup, verify and restore the wall time, MB/s (backup file bytes, and
//! object bytes, per second; 1 MB = 10^6 bytes) and records/s. Figures are printed, never
//! asserted. The binary is `STRONGROOM_BIN` or the one cargo builds with this bench.
//! Everything lives in one temp dir removed at the end, also on failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure should stop it loudly

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;
use server::{free_port, strongroom_cmd, Cleanup};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};
use strongroom::pg::{EmbeddedPg, StartOptions};

const PASSWORD: &str = "benchmark passphrase, long enough";
const ARCHIVIST: &str = "bench.archivist";

fn main() {
    if let Err(e) = run() {
        eprintln!("backup bench failed: {e:#}");
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
    let records = env_number("STRONGROOM_BENCH_BACKUP_RECORDS", 10_000)?;
    let total_mib = env_number("STRONGROOM_BENCH_BACKUP_MIB", 2048)?;
    let file_mib = env_number("STRONGROOM_BENCH_BACKUP_FILE_MIB", 16)?.max(1);
    let bin = match std::env::var_os("STRONGROOM_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_strongroom")),
    };
    let dir = std::env::temp_dir().join(format!("sr-bench-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 0711: as root the clusters run as `postgres`, which must traverse this directory.
    std::fs::DirBuilder::new().mode(0o711).create(&dir)?;
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        server: None,
        watchdog: None,
    };
    let result = bench(&mut cleanup, &bin, records, total_mib, file_mib);
    if result.is_err() {
        eprintln!(
            "last lines of the server log:\n{}",
            cleanup.server_log_tail()
        );
    }
    drop(cleanup);
    result
}

fn bench(
    cleanup: &mut Cleanup,
    bin: &Path,
    records: u64,
    total_mib: u64,
    file_mib: u64,
) -> Result<()> {
    let dir = cleanup.dir.clone();
    let n_files = total_mib.div_ceil(file_mib).min(records);
    println!(
        "backup bench: {records} records, {n_files} files of {file_mib} MiB ({} MiB), temp dir {}",
        n_files * file_mib,
        dir.display()
    );
    let data = dir.join("data");
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = strongroom_cmd(bin)
        .args(["serve", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    cleanup.server = Some(child);
    wait_healthy(port)?;
    cleanup.watchdog = Some(watchdog(&data, &dir)?);

    run_ok(
        bin,
        &[
            "user",
            "add",
            "--username",
            ARCHIVIST,
            "--role",
            "archivist",
            "--department",
            "Retail",
            "--password-stdin",
        ],
        &data,
        Some(&format!("{PASSWORD}\n")),
    )?;
    let (s, b) = http(
        port,
        "POST",
        "/api/v1/login",
        None,
        &json!({"username": ARCHIVIST, "password": PASSWORD}),
    )?;
    if s != 200 {
        bail!("login: {s} {b}");
    }
    let token = b["token"].as_str().context("token")?.to_string();
    let (s, b) = http(
        port,
        "POST",
        "/api/v1/categories",
        Some(&token),
        &json!({"code": "BAK", "name": "Bench contracts", "sensitivity": "internal",
                "department": "Retail", "retention_years": 10,
                "fields": [{"name": "company_name", "label": "Company", "type": "text", "required": true}]}),
    )?;
    if s != 201 {
        bail!("category: {s} {b}");
    }

    // The batch: files first, then the CSV naming them.
    let files = dir.join("files");
    std::fs::create_dir(&files)?;
    let mut rng = StdRng::seed_from_u64(9);
    let mut buf = vec![0u8; 1024 * 1024];
    for i in 0..n_files {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(files.join(format!("f{i:05}.bin")))?);
        for _ in 0..file_mib {
            rng.fill_bytes(&mut buf);
            f.write_all(&buf)?;
        }
        f.flush()?;
    }
    let csv = dir.join("batch.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        writeln!(w, "external_id,title,files,company_name")?;
        for i in 0..records {
            let file = if i < n_files {
                format!("f{i:05}.bin")
            } else {
                String::new()
            };
            writeln!(w, "bench-{i:07},Agreement {i},{file},Lujiazui Trading {i}")?;
        }
        w.flush()?;
    }
    let t = Instant::now();
    run_ok(
        bin,
        &[
            "import",
            "--csv",
            csv.to_str().context("path")?,
            "--files",
            files.to_str().context("path")?,
            "--category",
            "BAK",
            "--as",
            ARCHIVIST,
            "--batch-size",
            "500",
        ],
        &data,
        None,
    )?;
    println!(
        "filled by `strongroom import` in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&files)?;

    // Backup while the server serves.
    let file = dir.join("vault.backup");
    let t = Instant::now();
    let out = run_ok(
        bin,
        &["backup", "--out", file.to_str().context("path")?],
        &data,
        None,
    )?;
    let backup_s = t.elapsed().as_secs_f64();
    let file_bytes = std::fs::metadata(&file)?.len();
    let object_bytes = number_after(&out, "objects (").unwrap_or(0);
    let rows = number_after(&out, "tables, ").unwrap_or(0);

    let t = Instant::now();
    let verified = run_ok(
        bin,
        &["backup", "verify", file.to_str().context("path")?],
        &data,
        None,
    )?;
    let verify_s = t.elapsed().as_secs_f64();
    cleanup.stop_server()?;

    // The fixed cost of a new cluster, then the restore into a new data dir.
    let empty = dir.join("empty");
    std::fs::DirBuilder::new().mode(0o711).create(&empty)?;
    let t = Instant::now();
    run_ok(bin, &["migrate"], &empty, None)?;
    let setup_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&empty);
    let restored = dir.join("restored");
    std::fs::DirBuilder::new().mode(0o711).create(&restored)?;
    std::fs::copy(data.join("master.key"), restored.join("master.key"))?;
    let t = Instant::now();
    run_ok(
        bin,
        &["restore", "--from", file.to_str().context("path")?],
        &restored,
        None,
    )?;
    let restore_s = t.elapsed().as_secs_f64();
    let audit = run_ok(bin, &["verify-audit"], &restored, None)?;

    let mb = |b: u64, s: f64| b as f64 / 1e6 / s;
    println!();
    println!("{}", verified.trim_end());
    println!();
    println!(
        "| backup bench, {records} records, {} MiB of files | time | MB/s (file) | MB/s (objects) | records/s |",
        object_bytes / (1024 * 1024)
    );
    println!("| --- | --- | --- | --- | --- |");
    for (what, s) in [
        ("backup (server serving)", backup_s),
        ("backup verify", verify_s),
        ("restore (new cluster included)", restore_s),
        (
            "restore minus a new cluster's set-up",
            (restore_s - setup_s).max(0.001),
        ),
    ] {
        println!(
            "| {what} | {s:.1} s | {:.0} | {:.0} | {:.0} |",
            mb(file_bytes, s),
            mb(object_bytes, s),
            records as f64 / s
        );
    }
    println!(
        "backup file: {} bytes for {} object bytes and {rows} rows; new cluster set-up (migrate): {setup_s:.1} s",
        file_bytes, object_bytes
    );
    println!("restored vault: {}", audit.trim());
    Ok(())
}

/// The number following `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<u64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn run_ok(bin: &Path, args: &[&str], data: &Path, stdin: Option<&str>) -> Result<String> {
    let mut child = strongroom_cmd(bin)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(s.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "strongroom {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.to_string();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn wait_healthy(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok((200, _)) = http(port, "GET", "/healthz", None, &Value::Null) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not answer /healthz");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops the server's cluster and removes `dir` if this process dies first.
fn watchdog(data_dir: &Path, dir: &Path) -> Result<Child> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let pg = EmbeddedPg::ensure_running(data_dir, &StartOptions::default()).await?;
        let w = pg.stop_on_process_exit(Some(dir))?;
        drop(pg);
        Ok::<_, anyhow::Error>(w)
    })
}
