//! The integrity scrub against the real store, database and crypto: a byte flipped in a
//! stored object, an object deleted, an object no row references and a key outside the
//! vault's form; the library, the command line, the recorded run, its audit event and
//! what administrators see.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::audit::Actor;
use strongroom::storage::scrub::{self, Options, ProblemKind};
use strongroom::users::Role;
use uuid::Uuid;

use crate::archive::{setup, upload};
use crate::common::{bearer, cluster, database_url, TestApp};

fn opts(grace: Duration) -> Options {
    Options {
        rate_limit_bytes_per_sec: None,
        unreferenced_grace: grace,
    }
}

/// Deterministic, incompressible-looking content of `len` bytes.
fn content(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A record in `category` with `n` files of different sizes (one spans several chunks);
/// returns the record's reference and its files as (id, object key), oldest first.
async fn record_with_files(
    app: &TestApp,
    token: &str,
    category: &Value,
    n: u8,
) -> (String, Vec<(Uuid, String)>) {
    let (s, rec) = app
        .post(
            "/api/v1/records",
            token,
            json!({"category_id": category["id"], "title": "Scrubbed contract",
                   "fields": {"company_name": "Acme Scrub Ltd"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{rec}");
    let id = rec["id"].as_str().unwrap().to_string();
    for i in 0..n {
        let len = [200 * 1024, 10, 70_000, 1][usize::from(i) % 4];
        let (s, body) = upload(app, token, &id, &format!("scan{i}.bin"), &content(i, len)).await;
        assert_eq!(s, Status::Created, "{body}");
    }
    let files: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, object_key FROM files WHERE record_id = $1::uuid ORDER BY version",
    )
    .bind(&id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    (rec["reference"].as_str().unwrap().to_string(), files)
}

fn object_path(app: &TestApp, key: &str) -> std::path::PathBuf {
    app.dir.path().join("objects").join(key)
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn scrub_names_exactly_the_damaged_missing_and_unreferenced_objects() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (reference, files) = record_with_files(&app, &archivist, &contracts, 4).await;
    let vault = app.app();

    // All is well at first.
    let clean = scrub::run(&app.db, &vault.store, &vault.keys, &opts(Duration::ZERO))
        .await
        .unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    assert_eq!(clean.files_verified, 4);
    assert_eq!(clean.bytes_verified, 200 * 1024 + 10 + 70_000 + 1);
    assert_eq!(clean.objects_listed, 4);
    assert!(clean.verdict().starts_with("scrub OK: 4 files verified"));

    // One byte flipped in the second chunk of the large file; the 10-byte file's object
    // deleted; an object that no row references; a key of another kind (a signed audit
    // checkpoint kept in the same store) that the scrub must leave alone.
    let (damaged_id, damaged_key) = files[0].clone();
    let (missing_id, missing_key) = files[1].clone();
    flip_byte(&object_path(&app, &damaged_key), 100_000);
    std::fs::remove_file(object_path(&app, &missing_key)).unwrap();
    let orphan = vault
        .store
        .put_encrypted(
            &vault.keys,
            Uuid::new_v4(),
            std::io::Cursor::new(content(9, 5000)),
            u64::MAX,
        )
        .await
        .unwrap();
    // What a write cut short by a crash leaves in a local store: a staging file.
    let staged_key = format!("77/77/{}#1", "7".repeat(64));
    std::fs::create_dir_all(object_path(&app, "77/77")).unwrap();
    std::fs::write(object_path(&app, &staged_key), b"half an upload").unwrap();
    let checkpoints = app.dir.path().join("objects/checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::write(checkpoints.join("000001.json"), b"{}").unwrap();

    let report = scrub::run(&app.db, &vault.store, &vault.keys, &opts(Duration::ZERO))
        .await
        .unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.files_checked, 4);
    assert_eq!(report.files_verified, 2);
    assert_eq!(report.objects_listed, 4, "the checkpoint is not counted");
    let mut found: Vec<(ProblemKind, Option<Uuid>, String)> = report
        .problems
        .iter()
        .map(|p| (p.kind, p.file_id, p.object_key.clone()))
        .collect();
    found.sort_by_key(|(k, _, key)| (k.label(), key.contains('#')));
    assert_eq!(
        found,
        vec![
            (ProblemKind::Damaged, Some(damaged_id), damaged_key.clone()),
            (ProblemKind::Missing, Some(missing_id), missing_key.clone()),
            (ProblemKind::Unreferenced, None, orphan.object_key.clone()),
            (ProblemKind::Unreferenced, None, staged_key.clone()),
        ]
    );
    let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        lines.contains(&format!(
            "DAMAGED file {damaged_id} (record {reference}, object {damaged_key}): \
             decryption failed: wrong key or context, or the data was altered"
        )),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!(
            "MISSING file {missing_id} (record {reference}, object {missing_key}): the object is missing"
        )),
        "{lines:?}"
    );
    // Within the GC grace the orphan may be an upload in flight: a warning only.
    let within_grace = scrub::run(
        &app.db,
        &vault.store,
        &vault.keys,
        &opts(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let orphan_problem = within_grace
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::Unreferenced)
        .unwrap();
    assert!(orphan_problem.young && !orphan_problem.is_failure());
    // The scrub deleted nothing.
    assert!(object_path(&app, &orphan.object_key).exists());
    assert!(checkpoints.join("000001.json").exists());

    // Recorded and audited in one unit of work.
    scrub::record(&vault.db, &Actor::system("test"), "test", &report)
        .await
        .unwrap();
    let (clean_flag, damaged, missing, unreferenced): (bool, i32, i32, i32) = sqlx::query_as(
        "SELECT clean, damaged, missing, unreferenced FROM scrub_runs WHERE id = $1",
    )
    .bind(report.id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        (clean_flag, damaged, missing, unreferenced),
        (false, 1, 1, 2)
    );
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE action = 'storage.scrub' AND outcome = 'failure' \
         AND object_id = $1",
    )
    .bind(report.id.to_string())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(detail["damaged"], json!([damaged_id]));
    assert_eq!(detail["missing"], json!([missing_id]));
    assert_eq!(detail["unreferenced"], json!(2));

    // Administrators see the results (JSON and the page); others are refused; reads are
    // audited.
    let (_, admin) = app.login_as(Role::Admin).await;
    let (s, body) = app.get("/api/v1/admin/scrub", &admin).await;
    assert_eq!(s, Status::Ok, "{body}");
    assert_eq!(body["latest"]["id"], json!(report.id));
    assert_eq!(body["latest"]["clean"], json!(false));
    let kinds: Vec<&str> = body["latest"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4, "{body}");
    assert!(body.to_string().contains(&damaged_id.to_string()));
    let page = app
        .client
        .get("/admin/scrub")
        .header(bearer(&admin))
        .dispatch()
        .await;
    assert_eq!(page.status(), Status::Ok);
    let html = page.into_string().await.unwrap();
    assert!(
        html.contains(&reference) && html.contains(&missing_key[6..]),
        "{html}"
    );
    assert!(app.audit_count("scrub.read", "success").await >= 2);
    let (s, _) = app.get("/api/v1/admin/scrub", &archivist).await;
    assert_eq!(s, Status::Forbidden);
    assert_eq!(app.audit_count("scrub.read", "denied").await, 1);

    // The storage GC collects both orphans once past its grace; the scrub then names only
    // the damaged and the missing file.
    strongroom::storage::gc::run_once(&app.db, &vault.store, Duration::ZERO)
        .await
        .unwrap();
    assert!(!object_path(&app, &orphan.object_key).exists());
    assert!(!object_path(&app, &staged_key).exists());
    assert!(
        checkpoints.join("000001.json").exists(),
        "GC keeps foreign keys"
    );
    let after = scrub::run(&app.db, &vault.store, &vault.keys, &opts(Duration::ZERO))
        .await
        .unwrap();
    let kinds: Vec<ProblemKind> = after.problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds.len(), 2, "{:?}", after.problems);
    assert!(!kinds.contains(&ProblemKind::Unreferenced));
}

#[tokio::test]
async fn the_command_line_exits_1_naming_each_problem_and_0_when_clean() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (reference, files) = record_with_files(&app, &archivist, &contracts, 3).await;
    let c = cluster().await;
    let scrub_cmd = || {
        Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["scrub", "--rate", "0", "--data-dir"])
            .arg(app.dir.path())
            .env("DATABASE_URL", database_url(c, &app.db_name))
            .env("STRONGROOM_LOG_LEVEL", "warn")
            .output()
            .unwrap()
    };
    let out = scrub_cmd();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("scrub OK: 3 files verified"), "{stdout}");

    let (damaged_id, damaged_key) = files[2].clone();
    let (missing_id, missing_key) = files[0].clone();
    // The 70,000-byte file: flip a byte of its last chunk's tag.
    let path = object_path(&app, &damaged_key);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    flip_byte(&path, len - 1);
    std::fs::remove_file(object_path(&app, &missing_key)).unwrap();
    let out = scrub_cmd();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "DAMAGED file {damaged_id} (record {reference}, object {damaged_key}): "
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "MISSING file {missing_id} (record {reference}, object {missing_key}): the object is missing"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("scrub FAILED: 1 of 3 files verified"),
        "{stdout}"
    );
    assert!(!stdout.contains("UNREFERENCED"), "{stdout}");
    // Both runs were recorded and audited.
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM scrub_runs")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(app.audit_count("storage.scrub", "success").await, 1);
    assert_eq!(app.audit_count("storage.scrub", "failure").await, 1);
}

#[tokio::test]
async fn the_scheduled_scrub_runs_once_per_interval() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    record_with_files(&app, &archivist, &contracts, 2).await;
    let vault = app.app();
    let mut config = app.config.clone();
    config.scrub_interval_hours = 24;
    let first = scrub::run_once(&app.db, &vault.store, &config)
        .await
        .unwrap()
        .expect("due: no run recorded yet");
    assert!(first.is_clean());
    assert_eq!(first.files_verified, 2);
    // Just ran: not due again.
    assert!(scrub::run_once(&app.db, &vault.store, &config)
        .await
        .unwrap()
        .is_none());
    config.scrub_interval_hours = 0;
    assert!(scrub::run_once(&app.db, &vault.store, &config)
        .await
        .unwrap()
        .is_none());
    assert_eq!(app.audit_count("storage.scrub", "success").await, 1);
}
