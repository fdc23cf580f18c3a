//! Crash safety of uploads, with the real binary on its embedded default: `kill -9` of the
//! server while 16 uploads stream in, then a restart on the same data dir. Every upload
//! that was answered 201 must be listed with its SHA-256 and read back bit-exact, no row
//! may point at a missing object, the orphans of the interrupted uploads must be collected
//! and `strongroom scrub` must be clean.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use strongroom::crypto::KeyRing;
use strongroom::pg::{EmbeddedPg, PgRole, StartOptions};
use strongroom::storage::{FileRef, Store};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const UPLOADS: usize = 16;
const PASSWORD: &str = "the night archivist's passphrase";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange on 127.0.0.1 (`Connection: close`). The body is written in
/// pieces of `piece` bytes with `pause` between them, so an upload takes a while.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    piece: usize,
    pause: Duration,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    for part in body.chunks(piece.max(1)) {
        s.write_all(part).ok()?;
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn json_call(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    if let Some(t) = token {
        headers.push(("Authorization", format!("Bearer {t}")));
    }
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, text) = request(
        port,
        method,
        path,
        &headers,
        &body,
        usize::MAX,
        Duration::ZERO,
    )
    .unwrap_or_else(|| panic!("{method} {path}: no answer"));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Deterministic content for upload `i` of this run.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let port = free_port();
        let mut child = Command::new(BIN)
            .args(["serve", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .env_remove("DATABASE_URL")
            .env("STRONGROOM_LOG_LEVEL", "warn")
            .env("STRONGROOM_SCRUB_INTERVAL_HOURS", "0")
            // Collection runs once per interval across nodes, not at each start: a short
            // interval lets the restarted server collect the backdated orphans at once.
            .env("STRONGROOM_GC_INTERVAL_SECONDS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut s = Server { child, lines, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let healthy = request(port, "GET", "/healthz", &[], b"", 1, Duration::ZERO)
                .is_some_and(|(st, _)| st == 200);
            if healthy {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                let out: Vec<String> = s.lines.try_iter().collect();
                panic!("server exited with {status}: {}", out.join("\n"));
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn signal(&mut self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("pg/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Stops whatever cluster a failed test leaves behind, and removes its directory.
struct Cleanup<'a>(&'a Path);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(pid) = postmaster_pid(self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = std::fs::remove_dir_all(self.0);
    }
}

fn strongroom(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn login(port: u16) -> String {
    let (status, body) = json_call(
        port,
        "POST",
        "/api/v1/login",
        None,
        json!({"username": "night.archivist", "password": PASSWORD}),
    );
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_string()
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.map_while(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

struct Sent {
    seed: u64,
    len: usize,
    sha256: String,
    /// The 201 answer's body, if the upload got one.
    created: Option<Value>,
}

#[test]
fn kill_9_during_16_uploads_loses_no_acknowledged_file_and_leaves_a_clean_store() {
    let dir = std::env::temp_dir().join(format!("sr-crash-{}", Uuid::new_v4().simple()));
    let _cleanup = Cleanup(&dir);
    let server = Server::start(&dir);
    let port = server.port;
    let out = strongroom(
        &dir,
        &[
            "user",
            "add",
            "--username",
            "night.archivist",
            "--role",
            "archivist",
            "--department",
            "Retail",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = login(port);
    let (s, category) = json_call(
        port,
        "POST",
        "/api/v1/categories",
        Some(&token),
        json!({"code": "CRASH", "name": "Crash tests", "sensitivity": "internal",
               "department": "Retail", "retention_years": 1}),
    );
    assert_eq!(s, 201, "{category}");
    let (s, record) = json_call(
        port,
        "POST",
        "/api/v1/records",
        Some(&token),
        json!({"category_id": category["id"], "title": "Scans in flight", "fields": {}}),
    );
    assert_eq!(s, 201, "{record}");
    let record_id = record["id"].as_str().unwrap().to_string();

    // 16 uploads at once, of 256 KiB to 12 MiB (the larger ones go to the store in
    // several parts), each body trickled in 256 KiB pieces so they overlap.
    let run_seed = u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap());
    let (done_tx, done_rx) = mpsc::channel::<(usize, Sent)>();
    let mut threads = Vec::new();
    for i in 0..UPLOADS {
        let done_tx = done_tx.clone();
        let token = token.clone();
        let record_id = record_id.clone();
        threads.push(std::thread::spawn(move || {
            let seed = run_seed.wrapping_add(i as u64 * 0x9E37_79B9);
            let len = 256 * 1024 + (i * 751 * 1024) % (12 * 1024 * 1024);
            let data = content(seed, len);
            let sha256 = hex::encode(Sha256::digest(&data));
            let boundary = "----crashtestboundary0f9a8b7c";
            let mut body = Vec::with_capacity(len + 256);
            body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan{i}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            body.extend_from_slice(&data);
            drop(data);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let answer = request(
                port,
                "POST",
                &format!("/api/v1/records/{record_id}/files"),
                &[
                    ("Authorization", format!("Bearer {token}")),
                    (
                        "Content-Type",
                        format!("multipart/form-data; boundary={boundary}"),
                    ),
                ],
                &body,
                256 * 1024,
                Duration::from_millis(15),
            );
            let created = match answer {
                Some((201, text)) => Some(serde_json::from_str(&text).unwrap()),
                _ => None,
            };
            let _ = done_tx.send((
                i,
                Sent {
                    seed,
                    len,
                    sha256,
                    created,
                },
            ));
        }));
    }
    drop(done_tx);

    // Once a few uploads are acknowledged, the others are still streaming: kill -9.
    let mut server = server;
    let mut sent: Vec<Option<Sent>> = (0..UPLOADS).map(|_| None).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acknowledged = 0;
    while acknowledged < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        let (i, s) = done_rx
            .recv_timeout(left)
            .expect("four uploads acknowledged in time");
        acknowledged += usize::from(s.created.is_some());
        sent[i] = Some(s);
    }
    let pg_before = postmaster_pid(&dir).expect("cluster running");
    server.signal(Signal::SIGKILL);
    server.wait_exit();
    for t in threads {
        t.join().unwrap();
    }
    for (i, s) in done_rx.try_iter() {
        sent[i] = Some(s);
    }
    let sent: Vec<Sent> = sent.into_iter().map(Option::unwrap).collect();
    let created: Vec<&Sent> = sent.iter().filter(|s| s.created.is_some()).collect();
    assert!(
        created.len() >= 4 && created.len() < UPLOADS,
        "{} acknowledged: the kill came too late",
        created.len()
    );

    // Let the GC grace pass for what the killed uploads left: every object is backdated
    // two hours (the referenced ones too; only unreferenced ones may be collected).
    let mut objects = Vec::new();
    walk(&dir.join("objects"), &mut objects);
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for p in &objects {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_modified(two_hours_ago).unwrap();
    }

    // Restart: the server takes back the cluster its killed predecessor owned.
    let server = Server::start(&dir);
    let port = server.port;
    assert_eq!(
        postmaster_pid(&dir),
        Some(pg_before),
        "the cluster was adopted, not replaced"
    );
    let token = login(port);
    let (s, listed) = json_call(
        port,
        "GET",
        &format!("/api/v1/records/{record_id}/files"),
        Some(&token),
        Value::Null,
    );
    assert_eq!(s, 200, "{listed}");
    let listed: Vec<Value> = listed
        .as_array()
        .cloned()
        .or_else(|| listed["files"].as_array().cloned())
        .unwrap_or_else(|| panic!("no file list in {listed}"));
    for s in &created {
        let c = s.created.as_ref().unwrap();
        assert_eq!(c["sha256"], json!(s.sha256));
        let entry = listed
            .iter()
            .find(|f| f["id"] == c["id"])
            .unwrap_or_else(|| panic!("acknowledged upload {} is not listed", c["id"]));
        assert_eq!(entry["sha256"], json!(s.sha256));
        assert_eq!(entry["size"], json!(s.len));
    }
    // Files that committed without their answer getting out are whole too.
    for f in &listed {
        assert!(
            sent.iter().any(|s| json!(s.sha256) == f["sha256"]),
            "a listed file matches no upload: {f}"
        );
    }

    // Read every acknowledged file back through the vault's own store and keys: bit-exact.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pg = EmbeddedPg::ensure_running(
            &dir,
            &StartOptions {
                bin_dir: None,
                settings: vec![],
            },
        )
        .await
        .unwrap();
        assert!(!pg.owns_cluster(), "the server owns its cluster");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(pg.connect_options_as(PgRole::Runtime, strongroom::pg::DATABASE))
            .await
            .unwrap();
        let keys = KeyRing::load_or_create(&dir.join("master.key")).unwrap();
        let store = Store::from_settings(None, &dir).unwrap();
        for s in &created {
            let id: Uuid = s.created.as_ref().unwrap()["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let (object_key, kek_id, wrapped_key, size, sha256): (
                String,
                String,
                Vec<u8>,
                i64,
                Vec<u8>,
            ) = sqlx::query_as(
                "SELECT object_key, kek_id, wrapped_key, size, sha256 FROM files WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            let f = FileRef {
                file_id: id,
                object_key,
                kek_id,
                wrapped_key,
                size: size as u64,
                sha256: sha256.try_into().unwrap(),
            };
            let back = store.read_to_vec(&keys, &f).await.unwrap();
            assert!(
                back == content(s.seed, s.len),
                "file {id} does not read back bit-exact"
            );
        }
        pool.close().await;
        pg.stop().await.unwrap();
    });

    // The GC collects the orphans within its 1 s interval (give it a moment);
    // then the scrub finds every file whole, no row without its object, no orphan.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stdout = loop {
        let out = strongroom(&dir, &["scrub", "--rate", "0"], "");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && !stdout.contains("UNREFERENCED") {
            break stdout;
        }
        assert!(
            Instant::now() < deadline,
            "scrub not clean: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        stdout.contains(&format!("scrub OK: {} files verified", listed.len())),
        "{stdout}"
    );
    // Nothing is left of the interrupted uploads, not even the store's staging files
    // (signed audit checkpoints live beside the objects and are not uploads).
    let mut left = Vec::new();
    walk(&dir.join("objects"), &mut left);
    left.retain(|p| !p.starts_with(dir.join("objects").join("checkpoints")));
    assert_eq!(left.len(), listed.len(), "{left:?}");

    let mut server = server;
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
}
