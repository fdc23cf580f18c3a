//! Key rotation through the real binary (`strongroom rotate-keys`) against a test database,
//! with the in-process server reading before, during and after.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rand::RngCore;
use rocket::http::{ContentType, Status};
use rocket::local::asynchronous::Client;
use serde_json::{json, Value};
use strongroom::crypto::KeyRing;
use strongroom::storage::FileRef;
use strongroom::users::Role;

use crate::archive::{field, setup, upload};
use crate::common::{bearer, cluster, database_url, json_of, TestApp};

pub(crate) async fn rotate_keys(
    app: &TestApp,
    args: &[&str],
    env_key: Option<&str>,
) -> (i32, String, String) {
    let url = database_url(cluster().await, &app.db_name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    cmd.arg("rotate-keys")
        .args(args)
        .arg("--data-dir")
        .arg(app.dir.path())
        .env("DATABASE_URL", url)
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .env_remove("STRONGROOM_MASTER_KEY")
        .env_remove("STRONGROOM_MASTER_KEY_FILE");
    if let Some(text) = env_key {
        cmd.env("STRONGROOM_MASTER_KEY", text)
            // Proves the file is not read when the variable is set.
            .env("STRONGROOM_MASTER_KEY_FILE", "/nonexistent/master.key");
    }
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::task::block_in_place(|| cmd.output()).unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Every KEK id in use per table.
async fn kek_ids(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT 'files', kek_id FROM files \
         UNION SELECT 'record_sensitive_values', kek_id FROM record_sensitive_values \
         UNION SELECT 'record_revision_sensitive_values', kek_id FROM record_revision_sensitive_values \
         UNION SELECT 'exports', password_kek_id FROM exports WHERE password_kek_id IS NOT NULL \
         ORDER BY 1, 2",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// A `files` row: id, original name, object key, KEK id, wrapped key, size, SHA-256.
type FileRow = (uuid::Uuid, String, String, String, Vec<u8>, i64, Vec<u8>);

async fn file_refs(db: &sqlx::PgPool) -> Vec<(String, FileRef)> {
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT id, original_name, object_key, kek_id, wrapped_key, size, sha256 FROM files ORDER BY original_name",
    )
    .fetch_all(db)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, name, object_key, kek_id, wrapped_key, size, sha)| {
            (
                name,
                FileRef {
                    file_id: id,
                    object_key,
                    kek_id,
                    wrapped_key,
                    size: size as u64,
                    sha256: sha.try_into().unwrap(),
                },
            )
        })
        .collect()
}

fn key_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The key material (base64) of every line, to prove it never leaks.
fn secrets(text: &str) -> Vec<String> {
    key_lines(text)
        .iter()
        .filter_map(|l| l.split_once(':').map(|(_, k)| k.trim().to_string()))
        .collect()
}

struct Filed {
    id: String,
    phone: String,
}

/// Files `n` records with distinct phones, two uploads each (one spanning several
/// chunks), and corrects the first record's phone so a revision keeps a sealed value.
async fn fill(
    app: &TestApp,
    archivist: &str,
    contracts: &Value,
    n: usize,
) -> (Vec<Filed>, Vec<(String, Vec<u8>)>) {
    let mut filed = Vec::new();
    let mut contents = Vec::new();
    for i in 0..n {
        let phone = format!("1390000{:04}", 1000 + i);
        let (s, r) = app
            .post(
                "/api/v1/records",
                archivist,
                json!({
                    "category_id": contracts["id"], "title": format!("Rotation contract {i}"),
                    "fields": {"company_name": format!("Rotation Co {i}"), "holder_name": "张三丰",
                               "phone": phone, "id_number": "11010519491231002X"}
                }),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
        let id = r["id"].as_str().unwrap().to_string();
        for (j, len) in [(0, 1_000usize), (1, 200_000)] {
            let mut content = vec![0u8; len];
            rand::thread_rng().fill_bytes(&mut content);
            let name = format!("scan-{i}-{j}.bin");
            let (s, b) = upload(app, archivist, &id, &name, &content).await;
            assert_eq!(s, Status::Created, "{b}");
            contents.push((name, content));
        }
        filed.push(Filed { id, phone });
    }
    let first = &mut filed[0];
    let new_phone = "13911112222".to_string();
    let res = app
        .client
        .patch(format!("/api/v1/records/{}", first.id))
        .header(bearer(archivist))
        .header(ContentType::JSON)
        .body(json!({"fields": {"phone": new_phone}, "reason": "number changed"}).to_string())
        .dispatch()
        .await;
    let (s, b) = json_of(res).await;
    assert_eq!(s, Status::Ok, "{b}");
    first.phone = new_phone;
    contents.sort();
    (filed, contents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_retire_and_drop_the_old_key_and_the_vault_still_reads_and_searches() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (filed, contents) = fill(&app, &archivist, &contracts, 3).await;
    let key_path = app.dir.path().join("master.key");
    let before_text = std::fs::read_to_string(&key_path).unwrap();
    let old = app.app().keys.active_kek_id();
    let employee = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let sup2 = app.user_token("sup2", &[Role::Supervisor], "Retail").await;
    // A prepared, encrypted export: its password is kept sealed until the download.
    let (s, r) = app
        .post("/api/v1/requests", &employee, json!({"record_id": filed[2].id, "kind": "export", "purpose": "the auditors need a copy of the signed contract", "duration_hours": 4}))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let export = r["id"].as_str().unwrap().to_string();
    for token in [&sup, &sup2] {
        let (s, r) = app
            .post(
                &format!("/api/v1/requests/{export}/approve"),
                token,
                json!({"comment": "ok"}),
            )
            .await;
        assert_eq!(s, Status::Ok, "{r}");
    }
    let (s, p) = app
        .post(
            &format!("/api/v1/exports/{export}"),
            &employee,
            json!({"encrypt": true}),
        )
        .await;
    assert_eq!(s, Status::Created, "{p}");
    let password = p["password"].as_str().unwrap().to_string();
    let ids = kek_ids(&app).await;
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|(_, k)| *k == old));

    // Rotate: a new key is added (first, active) and everything moves under it.
    let (code, out, err) = rotate_keys(&app, &[], None).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("rotate-keys OK"), "{out}");
    let after_text = std::fs::read_to_string(&key_path).unwrap();
    let lines = key_lines(&after_text);
    let new = lines[0].split_once(':').unwrap().0.to_string();
    assert_ne!(new, old);
    for l in key_lines(&before_text) {
        assert!(lines.contains(&l), "a key line was lost");
    }
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let moved = kek_ids(&app).await;
    assert_eq!(moved.len(), 4, "{moved:?}");
    assert!(moved.iter().all(|(_, k)| *k == new), "{moved:?}");
    assert!(
        out.contains(&old),
        "the old key is named as retirable: {out}"
    );

    // The running server picks up the new key file on its own.
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.app().keys.active_kek_id() != new {
        assert!(
            Instant::now() < deadline,
            "the server never loaded the new key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A straggler: a value sealed under the old key after the pass (a server that had
    // not reloaded yet). Retiring the old key is refused, naming the table.
    let old_only = tempfile::tempdir().unwrap();
    let old_path = old_only.path().join("master.key");
    std::fs::write(&old_path, &before_text).unwrap();
    let old_ring = KeyRing::load_or_create(&old_path).unwrap();
    let rec: uuid::Uuid = filed[1].id.parse().unwrap();
    let (kid, ct) = old_ring.encrypt_field(rec, "holder_name", "李四");
    sqlx::query("UPDATE record_sensitive_values SET kek_id = $1, ciphertext = $2 WHERE record_id = $3 AND field = 'holder_name'")
        .bind(&kid)
        .bind(&ct)
        .bind(rec)
        .execute(&app.db)
        .await
        .unwrap();
    let (code, out, err) = rotate_keys(&app, &["--retire", &old], None).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("REFUSED") && out.contains("record_sensitive_values 1"),
        "{out}"
    );
    assert!(key_lines(&std::fs::read_to_string(&key_path).unwrap()).len() == 3);
    // The active key is never retired; an unknown one is refused too.
    let (code, out, _) = rotate_keys(&app, &["--retire", &new], None).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("active"), "{out}");
    let (code, _, _) = rotate_keys(&app, &["--retire", "k-unknown1"], None).await;
    assert_eq!(code, 1);

    // Resume moves the straggler (no new key), then retiring works.
    let (code, out, err) = rotate_keys(&app, &["--resume"], None).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 rows re-wrapped"), "{out}");
    assert_eq!(
        key_lines(&std::fs::read_to_string(&key_path).unwrap()).len(),
        3
    );
    let (code, out, err) = rotate_keys(&app, &["--retire", &old], None).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let final_text = std::fs::read_to_string(&key_path).unwrap();
    assert!(!final_text.contains(&format!("{old}:")), "{out}");
    assert_eq!(key_lines(&final_text).len(), 2);
    let kept = app.dir.path().join(format!("master.key.retired-{old}"));
    assert!(std::fs::read_to_string(&kept)
        .unwrap()
        .contains(&format!("{old}:")));
    // Take the retired line away entirely: only the new key file is left.
    std::fs::remove_file(&kept).unwrap();

    // A fresh server on the same database and data dir: it has only the new key.
    let vault = strongroom::cli::open_vault(&app.config).unwrap();
    assert_eq!(vault.keys.kek_ids(), vec![new.clone()]);
    let client = Client::untracked(strongroom::build(app.config.clone(), app.db.clone(), vault))
        .await
        .unwrap();
    let fresh: &strongroom::App = client.rocket().state().unwrap();
    // Every file reads back bit-exact (tags, length and SHA-256 checked on the way).
    let refs = file_refs(&app.db).await;
    assert_eq!(refs.len(), contents.len());
    for ((name, f), (want_name, want)) in refs.iter().zip(&contents) {
        assert_eq!(name, want_name);
        let got = fresh.store.read_to_vec(&fresh.keys, f).await.unwrap();
        assert!(got == *want, "{name} differs after rotation");
    }
    // Every sealed value (current and revisions) opens with the new key alone.
    let sealed: Vec<(uuid::Uuid, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT record_id, field, kek_id, ciphertext FROM record_sensitive_values \
         UNION ALL SELECT record_id, field, kek_id, ciphertext FROM record_revision_sensitive_values",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(sealed.len(), 3 * 3 + 1);
    for (r, f, k, c) in &sealed {
        fresh.keys.decrypt_field(*r, f, k, c).unwrap();
    }

    // The export password unseals with the new key alone.
    let (k, sealed): (String, Vec<u8>) = sqlx::query_as(
        "SELECT password_kek_id, password_sealed FROM exports WHERE request_id = $1",
    )
    .bind(export.parse::<uuid::Uuid>().unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(k, new);
    let unsealed = fresh
        .keys
        .decrypt_field(export.parse().unwrap(), "export.zip_password", &k, &sealed)
        .unwrap();
    assert_eq!(unsealed.as_str(), password);

    // Unmasked values through the audited path, and search by phone, on the fresh server.
    let get = |path: String, token: String| {
        let client = &client;
        async move {
            let res = client
                .get(path)
                .header(bearer(&token))
                .remote("10.9.8.7:4000".parse().unwrap())
                .dispatch()
                .await;
            json_of(res).await
        }
    };
    for f in &filed {
        let (s, hits) = get(
            format!("/api/v1/records?phone={}", f.phone),
            employee.clone(),
        )
        .await;
        assert_eq!(s, Status::Ok, "{hits}");
        let ids: Vec<&str> = hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [f.id.as_str()],
            "search by phone {} after rotation",
            f.phone
        );
    }
    let target = &filed[1];
    let (s, r) = app
        .post("/api/v1/requests", &employee, json!({"record_id": target.id, "kind": "lookup", "purpose": "customer called about the contract after the move", "duration_hours": 2}))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let (s, a) = app
        .post(
            &format!("/api/v1/requests/{}/approve", r["id"].as_str().unwrap()),
            &sup,
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{a}");
    let (s, rec) = get(format!("/api/v1/records/{}", target.id), employee.clone()).await;
    assert_eq!(s, Status::Ok, "{rec}");
    assert_eq!(field(&rec, "phone")["value"], target.phone.as_str());
    assert_eq!(field(&rec, "holder_name")["value"], "李四");
    assert_eq!(field(&rec, "phone")["masked"], false);

    // Audited with counts, never with key material.
    assert_eq!(app.audit_count("keys.rotate", "success").await, 2);
    assert_eq!(app.audit_count("keys.retire", "denied").await, 3);
    assert_eq!(app.audit_count("keys.retire", "success").await, 1);
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE action = 'keys.rotate' ORDER BY pos LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(detail["active"], new.as_str());
    assert_eq!(detail["rewrapped"]["files"], 6);
    assert_eq!(detail["rewrapped"]["record_sensitive_values"], 9);
    assert_eq!(detail["rewrapped"]["record_revision_sensitive_values"], 1);
    assert_eq!(detail["rewrapped"]["exports.password_sealed"], 1);
    let all: String = sqlx::query_scalar("SELECT string_agg(detail::text, '|') FROM audit_events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    for s in secrets(&after_text) {
        assert!(!all.contains(&s), "key material in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_key_in_the_environment_rotation_adds_no_key_itself_and_resumes() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (filed, _) = fill(&app, &archivist, &contracts, 1).await;
    let text = std::fs::read_to_string(app.dir.path().join("master.key")).unwrap();
    let old = app.app().keys.active_kek_id();

    // rotate-keys cannot change the variable: it says what to do, and names no key.
    let (code, out, err) = rotate_keys(&app, &[], Some(&text)).await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("STRONGROOM_MASTER_KEY") && err.contains("--resume"),
        "{err}"
    );
    for s in secrets(&text) {
        assert!(!out.contains(&s) && !err.contains(&s));
    }
    assert!(kek_ids(&app).await.iter().all(|(_, k)| *k == old));

    // The operator puts a new line first (one line, space-separated entries work too).
    let mut k = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    use base64::Engine as _;
    let line = format!(
        "k-envnew1:{}",
        base64::engine::general_purpose::STANDARD.encode(k)
    );
    let value = format!("{line} {}", key_lines(&text).join(" "));
    let (code, out, err) = rotate_keys(&app, &["--resume"], Some(&value)).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(kek_ids(&app).await.iter().all(|(_, k)| k == "k-envnew1"));
    // Retiring checks the database, then tells the operator to drop the line themselves.
    let (code, out, err) = rotate_keys(&app, &["--retire", &old], Some(&value)).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("remove its line"), "{out}");
    // The key file was never touched.
    assert_eq!(
        std::fs::read_to_string(app.dir.path().join("master.key")).unwrap(),
        text
    );
    // With only the new line and the blind-index line, the value still reads and searches.
    let blind = key_lines(&text)
        .into_iter()
        .find(|l| l.starts_with("blind-index:"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let only_new = dir.path().join("master.key");
    std::fs::write(&only_new, format!("{line}\n{blind}\n")).unwrap();
    let ring = KeyRing::load_or_create(&only_new).unwrap();
    let (r, f, kid, c): (uuid::Uuid, String, String, Vec<u8>) = sqlx::query_as(
        "SELECT record_id, field, kek_id, ciphertext FROM record_sensitive_values WHERE field = 'phone'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        ring.decrypt_field(r, &f, &kid, &c).unwrap().as_str(),
        filed[0].phone
    );
    assert_eq!(
        ring.blind_index("phone", &filed[0].phone),
        app.app().keys.blind_index("phone", &filed[0].phone)
    );
}

use std::os::unix::fs::PermissionsExt;
