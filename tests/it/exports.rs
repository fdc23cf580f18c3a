//! Exports, end to end: the two-person rule for confidential exports, the zip and its
//! manifest, the one-time link, the optional password, expiry and revocation.

use std::io::{Cursor, Read};

use rocket::http::Status;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::{bearer, captured_logs, TestApp};

const PURPOSE: &str = "court order 2026/118 requires copies of the contract";

struct World {
    app: TestApp,
    record: String,
    employee: String,
    sup1: String,
    sup2: String,
    files: Vec<(String, Vec<u8>)>,
}

async fn world() -> World {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (s, r) = app
        .post("/api/v1/records", &archivist, json!({
            "category_id": contracts["id"], "title": "Framework agreement",
            "fields": {"company_name": "Huaxin", "phone": "13812345678", "holder_name": "张三丰"}
        }))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let record = r["id"].as_str().unwrap().to_string();
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let files = vec![
        ("contract.pdf".to_string(), crate::viewer::pdf(2)),
        ("annex.bin".to_string(), big),
        ("empty.txt".to_string(), Vec::new()),
    ];
    for (name, content) in &files {
        let (s, f) = upload(&app, &archivist, &record, name, content).await;
        assert_eq!(s, Status::Created, "{f}");
    }
    World {
        employee: app.user_token("emp", &[Role::Employee], "Retail").await,
        sup1: app.user_token("sup1", &[Role::Supervisor], "Retail").await,
        sup2: app.user_token("sup2", &[Role::Supervisor], "Retail").await,
        app,
        record,
        files,
    }
}

impl World {
    /// An export request approved by both supervisors (confidential: two-person rule).
    async fn approved_export(&self) -> String {
        let (s, r) = self
            .app
            .post("/api/v1/requests", &self.employee, json!({"record_id": self.record, "kind": "export", "purpose": PURPOSE, "duration_hours": 4}))
            .await;
        assert_eq!(s, Status::Created, "{r}");
        assert_eq!(r["required_approvals"], 2);
        let id = r["id"].as_str().unwrap().to_string();
        let path = format!("/api/v1/requests/{id}/approve");
        let (s, r) = self
            .app
            .post(&path, &self.sup1, json!({"comment": "ok"}))
            .await;
        assert_eq!(
            (s, r["state"].as_str()),
            (Status::Ok, Some("pending")),
            "{r}"
        );
        // One approval is not enough: nothing to download yet.
        let (s, _) = self.download(&id, &self.employee).await;
        assert_eq!(s, Status::NotFound);
        let (s, r) = self
            .app
            .post(&path, &self.sup2, json!({"comment": "court order seen"}))
            .await;
        assert_eq!(
            (s, r["state"].as_str()),
            (Status::Ok, Some("approved")),
            "{r}"
        );
        id
    }

    async fn download(&self, request: &str, token: &str) -> (Status, Vec<u8>) {
        let res = self
            .app
            .client
            .get(format!("/api/v1/exports/{request}/download"))
            .header(bearer(token))
            .dispatch()
            .await;
        let s = res.status();
        if s == Status::Ok {
            assert_eq!(
                res.headers().get_one("Content-Type"),
                Some("application/zip")
            );
            let cd = res
                .headers()
                .get_one("Content-Disposition")
                .unwrap()
                .to_string();
            assert!(
                cd.starts_with("attachment; filename=\"") && cd.ends_with("-export.zip\""),
                "{cd}"
            );
            assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
        }
        (s, res.into_bytes().await.unwrap_or_default())
    }
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn entry(
    zip: &mut zip::ZipArchive<Cursor<Vec<u8>>>,
    name: &str,
    password: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::new();
    match password {
        Some(p) => zip
            .by_name_decrypt(name, p.as_bytes())
            .unwrap()
            .read_to_end(&mut out),
        None => zip.by_name(name).unwrap().read_to_end(&mut out),
    }
    .unwrap();
    out
}

#[tokio::test]
async fn an_approved_export_is_a_zip_whose_manifest_matches_and_the_link_works_once() {
    let w = world().await;
    // A name from before names were cleaned on upload: neutralised inside the zip.
    sqlx::query(
        "UPDATE files SET original_name = '../../etc/passwd' WHERE original_name = 'annex.bin'",
    )
    .execute(&w.app.db)
    .await
    .unwrap();
    let id = w.approved_export().await;
    let (s, body) = w.download(&id, &w.employee).await;
    assert_eq!(s, Status::Ok, "{}", String::from_utf8_lossy(&body));
    let mut zip = zip::ZipArchive::new(Cursor::new(body)).unwrap();
    let names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index_raw(i).unwrap().name().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "files/01_contract.pdf",
            "files/02_passwd",
            "files/03_empty.txt",
            "manifest.json"
        ]
    );
    assert!(names
        .iter()
        .all(|n| !n.contains("..") && !n.starts_with('/') && !n.contains("etc")));
    let manifest: Value = serde_json::from_slice(&entry(&mut zip, "manifest.json", None)).unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (i, (_, original)) in w.files.iter().enumerate() {
        let zipped = entry(
            &mut zip,
            &format!("files/{}", listed[i]["zip_name"].as_str().unwrap()),
            None,
        );
        assert_eq!(&zipped, original);
        assert_eq!(listed[i]["sha256"], sha(original));
        assert_eq!(listed[i]["size"], original.len());
    }
    assert_eq!(listed[1]["original_name"], "../../etc/passwd");
    assert_eq!(manifest["request"]["purpose"], PURPOSE);
    assert_eq!(manifest["request"]["requester"], "emp");
    let approvers: Vec<&str> = manifest["request"]["approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["approver"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["sup1", "sup2"]);
    assert!(manifest["reference"]
        .as_str()
        .unwrap()
        .starts_with("CONTR-"));
    assert!(manifest["exported_at"].is_string());
    // Metadata as the requester may see it: no lookup grant, so masked.
    assert_eq!(manifest["metadata"]["phone"]["value"], "138****5678");
    assert_eq!(manifest["metadata"]["phone"]["masked"], true);
    // The link works once.
    let (s, body) = w.download(&id, &w.employee).await;
    assert_eq!(s, Status::Conflict);
    assert!(String::from_utf8_lossy(&body).contains("already been downloaded"));
    // Audited: the download with its files, and the refused second one.
    let events: Vec<(String, String, Value)> = sqlx::query_as(
        "SELECT action, outcome, detail FROM audit_events WHERE action LIKE 'export.%' ORDER BY pos",
    )
    .fetch_all(&w.app.db)
    .await
    .unwrap();
    // The attempt while one approval was missing, the download, the refused second one.
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("export.download", "denied"),
            ("export.download", "success"),
            ("export.download", "denied")
        ]
    );
    assert_eq!(events[1].2["files"][0]["sha256"], sha(&w.files[0].1));
    assert_eq!(events[2].2["reason"], "already downloaded");
}

#[tokio::test]
async fn an_encrypted_export_needs_the_password_shown_once() {
    let w = world().await;
    let id = w.approved_export().await;
    // Only the requester prepares or downloads.
    let (s, _) = w
        .app
        .post(&format!("/api/v1/exports/{id}"), &w.sup1, json!({}))
        .await;
    assert_eq!(s, Status::NotFound);
    let (s, p) = w
        .app
        .post(
            &format!("/api/v1/exports/{id}"),
            &w.employee,
            json!({"encrypt": true}),
        )
        .await;
    assert_eq!(s, Status::Created, "{p}");
    let password = p["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 24);
    assert_eq!(p["download_url"], format!("/api/v1/exports/{id}/download"));
    let (s, _) = w.download(&id, &w.sup2).await;
    assert_eq!(s, Status::NotFound);
    // The password is kept only sealed, and never lands in the audit trail or the logs.
    let stored: String = sqlx::query_scalar("SELECT row_to_json(e)::text FROM exports e")
        .fetch_one(&w.app.db)
        .await
        .unwrap();
    assert!(!stored.contains(&password));
    let (s, body) = w.download(&id, &w.employee).await;
    assert_eq!(s, Status::Ok);
    let mut zip = zip::ZipArchive::new(Cursor::new(body)).unwrap();
    assert!(
        zip.by_name("manifest.json").is_err(),
        "readable without the password"
    );
    let manifest: Value =
        serde_json::from_slice(&entry(&mut zip, "manifest.json", Some(&password))).unwrap();
    let name = manifest["files"][0]["zip_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        entry(&mut zip, &format!("files/{name}"), Some(&password)),
        w.files[0].1
    );
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT password_sealed FROM exports")
        .fetch_one(&w.app.db)
        .await
        .unwrap();
    assert!(sealed.is_none(), "the sealed password is wiped at download");
    let trail: String =
        sqlx::query_scalar("SELECT string_agg(detail::text, '|') FROM audit_events")
            .fetch_one(&w.app.db)
            .await
            .unwrap();
    assert!(!trail.contains(&password));
    assert!(!captured_logs().contains(&password));
    // Preparing again after the download is refused.
    let (s, e) = w
        .app
        .post(&format!("/api/v1/exports/{id}"), &w.employee, json!({}))
        .await;
    assert_eq!(s, Status::Conflict, "{e}");
}

#[tokio::test]
async fn expired_links_and_revoked_grants_stop_the_download() {
    let w = world().await;
    let id = w.approved_export().await;
    let (s, _) = w
        .app
        .post(&format!("/api/v1/exports/{id}"), &w.employee, json!({}))
        .await;
    assert_eq!(s, Status::Created);
    sqlx::query("UPDATE exports SET expires_at = now() - interval '1 second'")
        .execute(&w.app.db)
        .await
        .unwrap();
    let (s, body) = w.download(&id, &w.employee).await;
    assert_eq!(s, Status::Conflict);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    // Prepared again: a fresh link.
    let (s, _) = w
        .app
        .post(&format!("/api/v1/exports/{id}"), &w.employee, json!({}))
        .await;
    assert_eq!(s, Status::Created);
    let grant: String =
        sqlx::query_scalar("SELECT id::text FROM grants WHERE request_id = $1::uuid")
            .bind(&id)
            .fetch_one(&w.app.db)
            .await
            .unwrap();
    let (s, _) = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.sup1,
            json!({"reason": "order withdrawn"}),
        )
        .await;
    assert_eq!(s, Status::Ok);
    let (s, _) = w.download(&id, &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    // A lookup or view request id is no export.
    let (_, r) = w
        .app
        .post(
            "/api/v1/requests",
            &w.employee,
            json!({"record_id": w.record, "kind": "view", "purpose": PURPOSE, "duration_hours": 4}),
        )
        .await;
    let (s, _) = w.download(r["id"].as_str().unwrap(), &w.employee).await;
    assert_eq!(s, Status::NotFound);
}

/// Content leaves only under a grant's permit, read through the same decrypting stream the
/// viewer uses; a flipped byte in the stored object cuts the download and is audited.
#[tokio::test]
async fn a_tampered_object_cuts_the_export_and_is_audited() {
    let w = world().await;
    let id = w.approved_export().await;
    // Flip one byte in every stored object.
    for path in crate::archive::walk(&w.app.dir.path().join("objects")) {
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
    }
    let (s, body) = w.download(&id, &w.employee).await;
    // The claim committed before streaming; the stream then fails and never ends as a
    // complete zip.
    assert_eq!(s, Status::Ok);
    assert!(
        zip::ZipArchive::new(Cursor::new(body)).is_err(),
        "a tampered export must not end as a complete zip"
    );
    assert!(
        w.app.audit_count("file.integrity_failure", "failure").await >= 1,
        "the integrity failure is audited"
    );
}
