//! Backup, `backup verify` and restore through the real binary: a backup taken while
//! uploads continue restores into a new data dir holding only the master key with every
//! file, record, revision, request and the audit chain back; a backup with one byte
//! changed (or made under another vault's key) is refused by both, and restore then
//! writes nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use strongroom::config::Config;
use strongroom::crypto::KeyRing;
use strongroom::pg::{OWNER_ROLE, RUNTIME_ROLE};
use strongroom::storage::{FileRef, Store};

use crate::common::{cluster, fresh_database, role_database_url, TestApp};

/// The binary under test; `STRONGROOM_TEST_BIN` points at a copy when several worktrees
/// share one target directory (and so one `target/debug/strongroom`).
fn bin() -> String {
    std::env::var("STRONGROOM_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_strongroom").to_string())
}
const PASSWORD: &str = "a sturdy backup passphrase";

/// The binary with the environment cleared of database and store settings, plus `env`.
fn strongroom(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_OWNER_URL")
        .env_remove("STRONGROOM_OBJECT_STORE")
        .env_remove("STRONGROOM_MASTER_KEY_FILE")
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One HTTP/1.1 exchange with the server on 127.0.0.1.
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn post_json(port: u16, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    http(
        port,
        "POST",
        path,
        token,
        "application/json",
        body.to_string().as_bytes(),
    )
}

fn upload(port: u16, token: &str, record: &str, content: &[u8]) -> (u16, Value) {
    let boundary = "----strongroombackuptestboundary";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    http(
        port,
        "POST",
        &format!("/api/v1/records/{record}/files"),
        Some(token),
        &format!("multipart/form-data; boundary={boundary}"),
        &body,
    )
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Stops a test's clusters and removes its directories, whatever happens.
struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for dir in &self.0 {
            let pid = std::fs::read_to_string(dir.join("pg/postmaster.pid"))
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
            if let Some(pid) = pid {
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
                let deadline = Instant::now() + Duration::from_secs(30);
                while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if dir.is_dir() {
                let _ = std::fs::remove_dir_all(dir);
            } else {
                let _ = std::fs::remove_file(dir);
            }
        }
    }
}

/// `audit chain OK: N events` or `… (M not chained yet)` of `backup verify`: N + M.
fn backup_events(verify_stdout: &str) -> u64 {
    let line = verify_stdout
        .lines()
        .find(|l| l.trim_start().starts_with("audit chain OK:"))
        .unwrap();
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    nums[0] + nums[1]
}

/// Counts and files of a vault, read with the library (the embedded cluster of `dir`, or
/// the running one).
#[derive(Debug, PartialEq)]
struct Contents {
    records: i64,
    revisions: i64,
    requests: i64,
    users: i64,
    /// (file id, SHA-256 hex as the database has it)
    files: Vec<(String, String)>,
}

async fn contents(pool: &sqlx::PgPool) -> Contents {
    let count = |t: &'static str| async move {
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {t}"))
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let files: Vec<(uuid::Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT id, sha256 FROM files ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    Contents {
        records: count("records").await,
        revisions: count("record_revisions").await,
        requests: count("access_requests").await,
        users: count("users").await,
        files: files
            .into_iter()
            .map(|(id, sha)| (id.to_string(), hex::encode(sha)))
            .collect(),
    }
}

/// Reads every file back from the store and checks its SHA-256 against the database's.
async fn read_back_every_file(pool: &sqlx::PgPool, store: &Store, keys: &KeyRing) -> usize {
    type Row = (uuid::Uuid, String, String, Vec<u8>, i64, Vec<u8>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, object_key, kek_id, wrapped_key, size, sha256 FROM files ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (file_id, object_key, kek_id, wrapped_key, size, sha) in &rows {
        let f = FileRef {
            file_id: *file_id,
            object_key: object_key.clone(),
            kek_id: kek_id.clone(),
            wrapped_key: wrapped_key.clone(),
            size: *size as u64,
            sha256: sha.clone().try_into().unwrap(),
        };
        let mut s = std::pin::pin!(store.open_decrypted(keys, &f).await.unwrap());
        let mut h = Sha256::new();
        while let Some(b) = s.next().await {
            h.update(b.unwrap());
        }
        assert_eq!(
            h.finalize().to_vec(),
            *sha,
            "file {file_id} reads back changed"
        );
    }
    rows.len()
}

fn embedded_config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

#[test]
fn backup_while_uploads_continue_then_restore_into_a_new_data_dir_brings_everything_back() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let src = std::env::temp_dir().join(format!("sr-bk-src-{tag}"));
    let dst = std::env::temp_dir().join(format!("sr-bk-dst-{tag}"));
    let file = std::env::temp_dir().join(format!("sr-bk-{tag}.backup"));
    let _cleanup = Cleanup(vec![src.clone(), dst.clone(), file.clone()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = |p: &Path| p.to_str().unwrap().to_string();

    // The real server on the embedded default.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(bin())
        .args(["serve", "--port", &port.to_string(), "--data-dir", &d(&src)])
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_OWNER_URL")
        .env_remove("STRONGROOM_OBJECT_STORE")
        .env_remove("STRONGROOM_MASTER_KEY_FILE")
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            if self.0.try_wait().ok().flatten().is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let server_guard = Kill(&mut server);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http(port, "GET", "/healthz", None, "application/json", b"").0 == 200;
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(250));
    }

    // Accounts (a second command uses the running cluster), a category, records with a
    // correction each, requests, and files.
    for (name, role) in [("archie", "archivist"), ("emma", "employee")] {
        let o = strongroom(
            &[
                "user",
                "add",
                "--username",
                name,
                "--role",
                role,
                "--department",
                "Retail",
                "--password-stdin",
                "--data-dir",
                &d(&src),
            ],
            &[],
            Some(&format!("{PASSWORD}\n")),
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let login = |name: &str| {
        let (s, b) = post_json(
            port,
            "/api/v1/login",
            None,
            json!({"username": name, "password": PASSWORD}),
        );
        assert_eq!(s, 200, "{b}");
        b["token"].as_str().unwrap().to_string()
    };
    let archie = login("archie");
    let emma = login("emma");
    let (s, cat) = post_json(
        port,
        "/api/v1/categories",
        Some(&archie),
        json!({"code": "BKP", "name": "Contracts", "sensitivity": "internal", "department": "Retail",
               "retention_years": 10, "fields": [
                   {"name": "company_name", "label": "Company", "type": "text", "required": true},
                   {"name": "phone", "type": "phone", "sensitive": true}]}),
    );
    assert_eq!(s, 201, "{cat}");
    let mut records = Vec::new();
    for i in 0..4 {
        let (s, r) = post_json(
            port,
            "/api/v1/records",
            Some(&archie),
            json!({"category_id": cat["id"], "title": format!("Agreement {i}"),
                   "fields": {"company_name": format!("Pudong Trading {i}"), "phone": "13812345678"}}),
        );
        assert_eq!(s, 201, "{r}");
        let id = r["id"].as_str().unwrap().to_string();
        let (s, b) = http(
            port,
            "PATCH",
            &format!("/api/v1/records/{id}"),
            Some(&archie),
            "application/json",
            json!({"fields": {"company_name": format!("Pudong Trading {i} Ltd")}, "reason": "name corrected after audit"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(s, 200, "{b}");
        let (s, b) = post_json(
            port,
            "/api/v1/requests",
            Some(&emma),
            json!({"record_id": id, "kind": "lookup", "purpose": "customer complaint needs the contract", "duration_hours": 4}),
        );
        assert_eq!(s, 201, "{b}");
        records.push(id);
    }
    let mut before: Vec<(String, String)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let content = random(150_000 + i * 70_001);
        let (s, b) = upload(port, &archie, r, &content);
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["sha256"], sha_hex(&content));
        before.push((b["id"].as_str().unwrap().to_string(), sha_hex(&content)));
    }

    // Uploads keep going while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let uploader = {
        let (stop, during, records, token) = (
            stop.clone(),
            during.clone(),
            records.clone(),
            archie.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) && i < 400 {
                let content = random(300_000 + (i % 7) * 10_000);
                let (s, b) = upload(port, &token, &records[i % records.len()], &content);
                assert_eq!(s, 201, "{b}");
                during
                    .lock()
                    .unwrap()
                    .push((b["id"].as_str().unwrap().to_string(), sha_hex(&content)));
                i += 1;
            }
        })
    };
    while during.lock().unwrap().len() < 3 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = strongroom(
        &["backup", "--out", &d(&file), "--data-dir", &d(&src)],
        &[],
        None,
    );
    let during_backup = during.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    uploader.join().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        during.lock().unwrap().len() > during_backup,
        "uploads went on while and after the backup ran"
    );

    // What the source holds (a second command's view of the running cluster).
    let source = rt.block_on(async {
        let db = strongroom::db::Database::open(&embedded_config(&src), 2)
            .await
            .unwrap();
        let c = contents(&db.pool).await;
        db.close().await.unwrap();
        c
    });
    assert_eq!(source.records, 4);
    assert!(source.revisions >= 4 && source.requests == 4);
    let mut stop_server = || {
        kill(Pid::from_raw(server_guard.0.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while server_guard.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    stop_server();

    let o = strongroom(
        &["backup", "verify", &d(&file), "--data-dir", &d(&src)],
        &[],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let verified = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(verified.starts_with("backup OK:"), "{verified}");
    let events = backup_events(&verified);
    assert!(events > 10, "{verified}");
    // The backup holds no plaintext: the file's bytes do not contain an uploaded
    // content's first bytes nor a record's title.
    let raw = std::fs::read(&file).unwrap();
    assert!(!raw.windows(14).any(|w| w == b"Pudong Trading"));

    // Wipe: the new data dir holds only the master key.
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(src.join("master.key"), dst.join("master.key")).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    let o = strongroom(
        &["restore", "--from", &d(&file), "--data-dir", &d(&dst)],
        &[],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("restored backup"),
        "{}",
        text(&o)
    );
    let o = strongroom(&["verify-audit", "--data-dir", &d(&dst)], &[], None);
    assert!(o.status.success(), "{}", text(&o));
    // Every event of the backup, and the restore's own.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("audit chain OK: {} events", events + 1),
        "{}",
        text(&o)
    );

    let (restored, read) = rt.block_on(async {
        let config = embedded_config(&dst);
        let db = strongroom::db::Database::open(&config, 2).await.unwrap();
        let c = contents(&db.pool).await;
        let keys = KeyRing::load_or_create(&dst.join("master.key")).unwrap();
        let store = Store::from_settings(None, &dst).unwrap();
        let n = read_back_every_file(&db.pool, &store, &keys).await;
        db.close().await.unwrap();
        (c, n)
    });
    assert_eq!(restored.records, source.records);
    assert_eq!(restored.revisions, source.revisions);
    assert_eq!(restored.requests, source.requests);
    assert_eq!(restored.users, source.users);
    assert_eq!(read, restored.files.len());
    // Every file uploaded before the backup began is back with its SHA-256; files
    // uploaded during it are back only as they were stored; none is invented.
    let uploaded: Vec<(String, String)> = before
        .iter()
        .chain(during.lock().unwrap().iter())
        .cloned()
        .collect();
    for f in &before {
        assert!(restored.files.contains(f), "file {} is missing", f.0);
    }
    for f in &restored.files {
        assert!(uploaded.contains(f), "file {} was never uploaded", f.0);
        assert!(source.files.contains(f));
    }
    assert!(restored.files.len() <= source.files.len());

    // The restored vault serves: the archivist signs in and sees a record's files.
    let port2 = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server2 = Command::new(bin())
        .args([
            "serve",
            "--port",
            &port2.to_string(),
            "--data-dir",
            &d(&dst),
        ])
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_OWNER_URL")
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard2 = Kill(&mut server2);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(TcpStream::connect(("127.0.0.1", port2)).is_ok()
        && http(port2, "GET", "/healthz", None, "application/json", b"").0 == 200)
    {
        assert!(Instant::now() < deadline, "restored server did not start");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (s, b) = post_json(
        port2,
        "/api/v1/login",
        None,
        json!({"username": "archie", "password": PASSWORD}),
    );
    assert_eq!(s, 200, "{b}");
    let token = b["token"].as_str().unwrap().to_string();
    let (s, listed) = http(
        port2,
        "GET",
        &format!("/api/v1/records/{}/files", records[0]),
        Some(&token),
        "application/json",
        b"",
    );
    assert_eq!(s, 200, "{listed}");
    assert!(listed.to_string().contains(&before[0].1), "{listed}");
    kill(Pid::from_raw(guard2.0.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while guard2.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "restored server did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The harness database of `app` (or `db`) as the binary reaches it: the runtime role in
/// DATABASE_URL, the owner in DATABASE_OWNER_URL.
async fn database_env(db: &str) -> Vec<(String, String)> {
    let c = cluster().await;
    vec![
        (
            "DATABASE_URL".into(),
            role_database_url(c, RUNTIME_ROLE, "pg-runtime.password", db),
        ),
        (
            "DATABASE_OWNER_URL".into(),
            role_database_url(c, OWNER_ROLE, "pg-owner.password", db),
        ),
    ]
}

fn run_env(args: &[&str], env: &[(String, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    strongroom(args, &env, None)
}

async fn rows(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

fn objects_in(dir: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        match std::fs::read_dir(p) {
            Ok(entries) => entries
                .map(|e| {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        1
                    }
                })
                .sum(),
            Err(_) => 0,
        }
    }
    walk(&dir.join("objects"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_one_byte_changed_is_refused_by_verify_and_restore_which_write_nothing() {
    let app = TestApp::new().await;
    let (archivist, category) = crate::archive::setup(&app).await;
    let (s, record) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": category["id"], "title": "Loan file",
                   "fields": {"company_name": "Minhang Holdings"}}),
        )
        .await;
    assert_eq!(s, rocket::http::Status::Created, "{record}");
    let content = random(200_000);
    let (s, up) = crate::archive::upload(
        &app,
        &archivist,
        record["id"].as_str().unwrap(),
        "scan.bin",
        &content,
    )
    .await;
    assert_eq!(s, rocket::http::Status::Created, "{up}");

    // A backup through DATABASE_URL (the harness database) and the app's own store.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("vault.backup");
    let src_env = database_env(&app.db_name).await;
    let src_dir = app.dir.path().to_str().unwrap().to_string();
    let (f, sd) = (file.to_str().unwrap().to_string(), src_dir.clone());
    let env = src_env.clone();
    let o = tokio::task::spawn_blocking(move || {
        run_env(&["backup", "--out", &f, "--data-dir", &sd], &env)
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let intact = std::fs::read(&file).unwrap();

    // The target: a second, empty (migrated) database and a data dir with only the key.
    let (target_db, target_opts) = fresh_database().await;
    let target = tempfile::tempdir().unwrap();
    std::fs::copy(
        app.dir.path().join("master.key"),
        target.path().join("master.key"),
    )
    .unwrap();
    let target_pool = sqlx::PgPool::connect_with(target_opts).await.unwrap();
    let target_env = database_env(&target_db).await;
    let target_dir = target.path().to_str().unwrap().to_string();

    // Another vault's key: FOREIGN, refused.
    let stranger = tempfile::tempdir().unwrap();
    KeyRing::load_or_create(&stranger.path().join("master.key")).unwrap();
    let stranger_dir = stranger.path().to_str().unwrap().to_string();

    let len = intact.len();
    let cases: Vec<(usize, &str)> = vec![
        (2, "not a strongroom backup"),
        (30, "the header is damaged"),
        (len / 2, "fails authentication (altered or truncated)"),
        (len - 1, "fails authentication (altered or truncated)"),
    ];
    let damaged = work.path().join("damaged.backup");
    let d = damaged.to_str().unwrap().to_string();
    for (pos, expected) in cases {
        let mut bytes = intact.clone();
        bytes[pos] ^= 0x01;
        std::fs::write(&damaged, &bytes).unwrap();
        let (d2, sd, env) = (d.clone(), src_dir.clone(), src_env.clone());
        let o = tokio::task::spawn_blocking(move || {
            run_env(&["backup", "verify", &d2, "--data-dir", &sd], &env)
        })
        .await
        .unwrap();
        assert_eq!(o.status.code(), Some(1), "byte {pos}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            out.starts_with("backup BROKEN:") && out.contains(expected),
            "byte {pos}: {out}"
        );
        let (d2, td, env) = (d.clone(), target_dir.clone(), target_env.clone());
        let o = tokio::task::spawn_blocking(move || {
            run_env(&["restore", "--from", &d2, "--data-dir", &td], &env)
        })
        .await
        .unwrap();
        assert!(!o.status.success(), "byte {pos}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("nothing was written"),
            "byte {pos}: {}",
            text(&o)
        );
        assert_eq!(rows(&target_pool, "users").await, 0, "byte {pos}");
        assert_eq!(rows(&target_pool, "records").await, 0, "byte {pos}");
        assert_eq!(rows(&target_pool, "audit_events").await, 0, "byte {pos}");
        assert_eq!(objects_in(target.path()), 0, "byte {pos}");
    }
    // Cut short: refused too.
    std::fs::write(&damaged, &intact[..len - 100]).unwrap();
    let (d2, sd, env) = (d.clone(), src_dir.clone(), src_env.clone());
    let o = tokio::task::spawn_blocking(move || {
        run_env(&["backup", "verify", &d2, "--data-dir", &sd], &env)
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("backup BROKEN"));

    let (f, st, env) = (
        file.to_str().unwrap().to_string(),
        stranger_dir,
        target_env.clone(),
    );
    let o = tokio::task::spawn_blocking(move || {
        let v = run_env(&["backup", "verify", &f, "--data-dir", &st], &env);
        let r = run_env(&["restore", "--from", &f, "--data-dir", &st], &env);
        (v, r)
    })
    .await
    .unwrap();
    assert_eq!(o.0.status.code(), Some(1), "{}", text(&o.0));
    assert!(
        String::from_utf8_lossy(&o.0.stdout)
            .starts_with("backup FOREIGN: made by another vault's key"),
        "{}",
        text(&o.0)
    );
    assert!(!o.1.status.success(), "{}", text(&o.1));
    assert!(String::from_utf8_lossy(&o.1.stderr).contains("backup FOREIGN"));
    assert_eq!(rows(&target_pool, "users").await, 0);

    // The intact backup restores into the second database; the file reads back.
    let (f, td, env) = (
        file.to_str().unwrap().to_string(),
        target_dir.clone(),
        target_env.clone(),
    );
    let o = tokio::task::spawn_blocking(move || {
        let r = run_env(&["restore", "--from", &f, "--data-dir", &td], &env);
        let v = run_env(&["verify-audit", "--data-dir", &td], &env);
        let again = run_env(&["restore", "--from", &f, "--data-dir", &td], &env);
        (r, v, again)
    })
    .await
    .unwrap();
    assert!(o.0.status.success(), "{}", text(&o.0));
    assert!(o.1.status.success(), "{}", text(&o.1));
    assert!(String::from_utf8_lossy(&o.1.stdout).starts_with("audit chain OK"));
    // A second restore into the now full target is refused.
    assert_eq!(o.2.status.code(), Some(1), "{}", text(&o.2));
    assert!(String::from_utf8_lossy(&o.2.stderr).contains("not empty"));
    let keys = KeyRing::load_or_create(&target.path().join("master.key")).unwrap();
    let store = Store::from_settings(None, target.path()).unwrap();
    assert_eq!(read_back_every_file(&target_pool, &store, &keys).await, 1);
    let sha: Vec<u8> = sqlx::query_scalar("SELECT sha256 FROM files")
        .fetch_one(&target_pool)
        .await
        .unwrap();
    assert_eq!(hex::encode(sha), sha_hex(&content));
    assert_eq!(
        rows(&target_pool, "records").await,
        rows(&app.db, "records").await
    );
    // The source has the backup's events and its own `vault.backup`; the target the same
    // events and its `vault.restore`.
    assert_eq!(
        rows(&target_pool, "audit_events").await,
        rows(&app.db, "audit_events").await
    );
}
