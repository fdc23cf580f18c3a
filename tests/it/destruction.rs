//! Supervised destruction, end to end: the destroy request and its two approvals, the
//! refusals (legal hold on the record and on its category, before approval, with one
//! approval, the requester or the executor as witness, a non-archivist), then the
//! crypto-shredding itself: objects gone from the store, no read path left, sensitive
//! values gone from the tables, the certificate with each file's SHA-256, the register
//! (API, CSV), the PDF certificate, and the audit chain intact.

use rocket::http::Status;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use strongroom::audit::{self, Verification};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::{bearer, TestApp};

const PURPOSE: &str = "retention period of thirty years has ended for this contract";

pub struct World {
    pub app: TestApp,
    pub record: String,
    pub category: String,
    pub archivist: String,
    pub arch2: String,
    pub employee: String,
    pub sup1: String,
    pub sup2: String,
    pub auditor: String,
    pub files: Vec<(String, Vec<u8>)>,
}

pub async fn world() -> World {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (s, r) = app
        .post("/api/v1/records", &archivist, json!({
            "category_id": contracts["id"], "title": "Framework agreement",
            "fields": {"company_name": "Huaxin", "phone": "13812345678", "holder_name": "张三丰",
                       "id_number": "11010519491231002X", "signed_on": "2001-03-04"},
            "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}
        }))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let record = r["id"].as_str().unwrap().to_string();
    let files = vec![
        ("contract.pdf".to_string(), crate::viewer::pdf(2)),
        (
            "annex.bin".to_string(),
            (0..200_000u32).map(|i| (i % 251) as u8).collect(),
        ),
    ];
    for (name, content) in &files {
        let (s, f) = upload(&app, &archivist, &record, name, content).await;
        assert_eq!(s, Status::Created, "{f}");
    }
    World {
        arch2: app.user_token("arch2", &[Role::Archivist], "Retail").await,
        employee: app.user_token("emp", &[Role::Employee], "Retail").await,
        sup1: app.user_token("sup1", &[Role::Supervisor], "Retail").await,
        sup2: app.user_token("sup2", &[Role::Supervisor], "Retail").await,
        auditor: app.user_token("aud", &[Role::Auditor], "Retail").await,
        category: contracts["id"].as_str().unwrap().to_string(),
        app,
        record,
        archivist,
        files,
    }
}

impl World {
    /// A destroy request by the first archivist (its username starts with `archivist`).
    pub async fn destroy_request(&self, reason: &str) -> String {
        let (s, r) = self
            .app
            .post(
                "/api/v1/requests",
                &self.archivist,
                json!({"record_id": self.record, "kind": "destroy", "purpose": PURPOSE, "reason_type": reason}),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
        assert_eq!(r["required_approvals"], 2, "{r}");
        assert_eq!(r["reason_type"], reason);
        r["id"].as_str().unwrap().to_string()
    }

    pub async fn approve(&self, request: &str, token: &str) -> Value {
        let (s, r) = self
            .app
            .post(
                &format!("/api/v1/requests/{request}/approve"),
                token,
                json!({"comment": "checked against the retention schedule"}),
            )
            .await;
        assert_eq!(s, Status::Ok, "{r}");
        r
    }

    pub async fn destroy(&self, token: &str, request: &str, witness: &str) -> (Status, Value) {
        self.app
            .post(
                &format!("/api/v1/records/{}/destroy", self.record),
                token,
                json!({"request_id": request, "witness": witness, "method": "cross-cut shredder (DIN 66399 P-4)"}),
            )
            .await
    }

    async fn requester_name(&self) -> String {
        let (_, me) = self.app.get("/api/v1/me", &self.archivist).await;
        me["username"].as_str().unwrap().to_string()
    }

    /// A grant of `kind` for the employee, approved by the needed supervisors.
    async fn grant(&self, kind: &str) -> (String, String) {
        let (s, r) = self
            .app
            .post(
                "/api/v1/requests",
                &self.employee,
                json!({"record_id": self.record, "kind": kind, "purpose": "customer dispute needs the signed contract", "duration_hours": 4}),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
        let id = r["id"].as_str().unwrap().to_string();
        let mut last = Value::Null;
        for sup in [&self.sup1, &self.sup2] {
            if last["state"] == "approved" {
                break;
            }
            last = self.approve(&id, sup).await;
        }
        assert_eq!(last["state"], "approved", "{last}");
        (id, last["grant"]["id"].as_str().unwrap().to_string())
    }

    async fn raw_get(&self, path: &str, token: &str) -> (Status, Vec<u8>) {
        let res = self
            .app
            .client
            .get(path.to_string())
            .header(bearer(token))
            .dispatch()
            .await;
        let s = res.status();
        (s, res.into_bytes().await.unwrap_or_default())
    }
}

/// Whether `key` is in the object store.
async fn stored(app: &TestApp, key: &str) -> bool {
    let path = object_store::path::Path::from(key);
    app.app().store.object_store().head(&path).await.is_ok()
}

/// Every key in the object store.
async fn all_keys(app: &TestApp) -> Vec<String> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut list = app.app().store.object_store().list(None);
    while let Some(m) = list.next().await {
        out.push(m.unwrap().location.to_string());
    }
    out
}

/// Checks a PDF's structure: header, every xref offset at its `N 0 obj`, startxref at the
/// table, the trailer, and each stream's /Length.
pub fn check_pdf(pdf: &[u8]) {
    let text = String::from_utf8_lossy(pdf);
    assert!(pdf.starts_with(b"%PDF-1.4\n"), "header");
    assert!(text.ends_with("%%EOF\n"));
    let sx = text.rfind("startxref\n").expect("startxref");
    let xref: usize = text[sx + 10..].lines().next().unwrap().parse().unwrap();
    assert_eq!(&pdf[xref..xref + 5], b"xref\n");
    let mut lines = text[xref..].lines().skip(1);
    let count: usize = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let entries: Vec<&str> = lines.take(count).collect();
    assert_eq!(entries.len(), count);
    for (n, e) in entries.iter().enumerate().skip(1) {
        let off: usize = e[..10].parse().unwrap();
        let want = format!("{n} 0 obj\n");
        assert_eq!(&pdf[off..off + want.len()], want.as_bytes(), "object {n}");
    }
    assert!(text.contains(&format!("trailer\n<< /Size {count} /Root 1 0 R")));
}

#[tokio::test]
async fn destruction_is_supervised_and_leaves_nothing_readable() {
    let w = world().await;
    let app = &w.app;
    let requester = w.requester_name().await;

    // Only archivists ask for a destruction and carry it out.
    let (s, r) = app
        .post(
            "/api/v1/requests",
            &w.employee,
            json!({"record_id": w.record, "kind": "destroy", "purpose": PURPOSE}),
        )
        .await;
    assert_eq!(s, Status::Forbidden, "{r}");

    // Grants in force before the destruction: a view and an export.
    let (_, view_grant) = w.grant("view").await;
    let (export_request, _) = w.grant("export").await;
    let (s, p) = app
        .post(
            &format!("/api/v1/exports/{export_request}"),
            &w.employee,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Created, "{p}");
    let (s, files) = app
        .get(&format!("/api/v1/records/{}/files", w.record), &w.archivist)
        .await;
    assert_eq!(s, Status::Ok);
    let file_id = files[0]["id"].as_str().unwrap().to_string();
    let (s, _) = w
        .raw_get(&format!("/view/{view_grant}/files/{file_id}"), &w.employee)
        .await;
    assert_eq!(s, Status::Ok, "the viewer works before");

    let request = w.destroy_request("erasure").await;
    // Before approval, with one approval.
    let (s, r) = w.destroy(&w.arch2, &request, "emp").await;
    assert_eq!(s, Status::Conflict, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("0 of 2"),
        "{r}"
    );
    let r = w.approve(&request, &w.sup1).await;
    assert_eq!(r["state"], "pending");
    let (s, r) = w.destroy(&w.arch2, &request, "emp").await;
    assert_eq!(s, Status::Conflict, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("1 of 2"),
        "{r}"
    );
    let r = w.approve(&request, &w.sup2).await;
    assert_eq!(r["state"], "approved", "{r}");
    assert!(r["grant"].is_null(), "a destroy request opens nothing: {r}");

    // The witness is another person: not the requester, not the executor, an account.
    let (s, r) = w.destroy(&w.arch2, &request, &requester).await;
    assert_eq!(s, Status::UnprocessableEntity, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requested"),
        "{r}"
    );
    let (s, r) = w.destroy(&w.arch2, &request, "arch2").await;
    assert_eq!(s, Status::UnprocessableEntity, "{r}");
    let (s, r) = w.destroy(&w.arch2, &request, "nobody-here").await;
    assert_eq!(s, Status::UnprocessableEntity, "{r}");
    // Not by a non-archivist, even with an approved request.
    let (s, r) = w.destroy(&w.sup1, &request, "emp").await;
    assert_eq!(s, Status::Forbidden, "{r}");

    // A legal hold on the record, then on its category, stops it: 409 naming the hold.
    let (s, h) = app
        .post(
            &format!("/api/v1/records/{}/hold", w.record),
            &w.sup1,
            json!({"reason": "litigation 2026-117 pending"}),
        )
        .await;
    assert_eq!(s, Status::Created, "{h}");
    let (s, r) = w.destroy(&w.arch2, &request, "emp").await;
    assert_eq!(s, Status::Conflict, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("litigation 2026-117") && msg.contains("sup1"),
        "{msg}"
    );
    let res = app
        .client
        .delete(format!("/api/v1/records/{}/hold", w.record))
        .header(bearer(&w.sup1))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let (s, _) = app
        .post(
            &format!("/api/v1/categories/{}/hold", w.category),
            &w.sup2,
            json!({"reason": "regulator inquiry on contracts"}),
        )
        .await;
    assert_eq!(s, Status::Created);
    let (s, r) = w.destroy(&w.arch2, &request, "emp").await;
    assert_eq!(s, Status::Conflict, "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("CONTR") && msg.contains("regulator inquiry") && msg.contains("sup2"),
        "{msg}"
    );
    let res = app
        .client
        .delete(format!("/api/v1/categories/{}/hold", w.category))
        .header(bearer(&w.sup2))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);

    // What exists before: the objects and the sealed values.
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT object_key FROM files WHERE record_id = $1::uuid")
            .bind(&w.record)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(keys.len(), 2);
    for k in &keys {
        assert!(stored(app, k).await);
    }
    let sealed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM record_sensitive_values WHERE record_id = $1::uuid",
    )
    .bind(&w.record)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(sealed >= 3, "{sealed}");
    // A correction keeps the old sealed value in the revision.
    let (s, r) = app
        .patch(
            &format!("/api/v1/records/{}", w.record),
            &w.archivist,
            json!({"fields": {"phone": "13900001111"}, "reason": "customer's new number"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");

    // The destruction.
    let (s, cert) = w.destroy(&w.arch2, &request, "emp").await;
    assert_eq!(s, Status::Ok, "{cert}");
    assert_eq!(cert["reason_type"], "erasure");
    assert_eq!(cert["requester"], requester.as_str());
    assert_eq!(cert["executor"], "arch2");
    assert_eq!(cert["witness"], "emp");
    assert_eq!(cert["paper"], true);
    let approvers: Vec<&str> = cert["approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["username"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["sup1", "sup2"]);
    let listed = cert["files"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for ((name, content), f) in w.files.iter().zip(listed) {
        assert_eq!(f["name"], name.as_str());
        assert_eq!(f["size"], content.len());
        assert_eq!(f["sha256"], hex::encode(Sha256::digest(content)), "{f}");
    }
    for field in ["holder_name", "phone", "id_number"] {
        assert!(
            cert["erased_fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{cert}"
        );
    }
    let cert_id = cert["id"].as_str().unwrap().to_string();

    // The objects are gone from the store, and nothing is left pending.
    let everything = all_keys(app).await;
    for k in &keys {
        assert!(!stored(app, k).await, "{k} still stored");
        assert!(!everything.contains(k));
    }
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM object_deletions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(pending, 0);

    // The database holds no key, ciphertext or blind index of it any more.
    for table in [
        "files",
        "record_sensitive_values",
        "record_revision_sensitive_values",
    ] {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE record_id = $1::uuid"
        ))
        .bind(&w.record)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let wrapped: i64 =
        sqlx::query_scalar("SELECT count(*) FROM files f WHERE f.object_key = ANY($1)")
            .bind(&keys)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(wrapped, 0);
    // An exact search by the erased phone number finds nothing.
    let (s, hits) = app
        .get("/api/v1/records?phone=13812345678", &w.archivist)
        .await;
    assert_eq!(s, Status::Ok, "{hits}");
    assert!(!hits.to_string().contains(&w.record), "{hits}");

    // No read path is left: the viewer, the export, the file list, a new upload.
    let (s, _) = w
        .raw_get(&format!("/view/{view_grant}/files/{file_id}"), &w.employee)
        .await;
    assert_ne!(s, Status::Ok, "the viewer still answers");
    let (s, _) = w
        .raw_get(
            &format!("/api/v1/exports/{export_request}/download"),
            &w.employee,
        )
        .await;
    assert_ne!(s, Status::Ok, "the export still answers");
    let (s, list) = app
        .get(&format!("/api/v1/records/{}/files", w.record), &w.archivist)
        .await;
    assert_eq!((s, list.as_array().map(Vec::len)), (Status::Ok, Some(0)));
    let (s, _) = upload(app, &w.archivist, &w.record, "late.pdf", b"late").await;
    assert_eq!(s, Status::Conflict);
    // No second destruction, no new request.
    let (s, _) = w.destroy(&w.arch2, &request, "emp").await;
    assert_eq!(s, Status::Conflict);
    let (s, _) = app
        .post("/api/v1/requests", &w.employee, json!({"record_id": w.record, "kind": "view", "purpose": "customer dispute needs the signed contract", "duration_hours": 4}))
        .await;
    assert_eq!(s, Status::Conflict);

    // The skeleton stays: reference, category, the paper file destroyed, the certificate.
    let (s, rec) = app
        .get(&format!("/api/v1/records/{}", w.record), &w.archivist)
        .await;
    assert_eq!(s, Status::Ok, "{rec}");
    assert_eq!(rec["physical"]["status"], "destroyed", "{rec}");
    let (s, l) = app
        .get(
            &format!("/api/v1/records/{}/lifecycle", w.record),
            &w.archivist,
        )
        .await;
    assert_eq!(s, Status::Ok, "{l}");
    assert_eq!(l["destruction"]["id"], cert_id.as_str());
    let (s, page) = w
        .raw_get(&format!("/records/{}", w.record), &w.archivist)
        .await;
    assert_eq!(s, Status::Ok);
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains(&format!("/destructions/{cert_id}/certificate.pdf")),
        "{page}"
    );

    // The register: supervisors, auditors and archivists; not employees.
    for token in [&w.sup1, &w.auditor, &w.archivist] {
        let (s, reg) = app
            .get(
                &format!("/api/v1/destructions?record_id={}", w.record),
                token,
            )
            .await;
        assert_eq!(s, Status::Ok, "{reg}");
        assert_eq!(reg["destructions"].as_array().unwrap().len(), 1);
        assert_eq!(reg["destructions"][0]["id"], cert_id.as_str());
    }
    let (s, _) = app.get("/api/v1/destructions", &w.employee).await;
    assert_eq!(s, Status::Forbidden);
    // A supervisor of another department sees a confidential record's destruction no more
    // than the record itself: not in the register, its certificate unknown.
    let other = app
        .user_token("sup.corp", &[Role::Supervisor], "Corporate")
        .await;
    let (s, reg) = app.get("/api/v1/destructions", &other).await;
    assert_eq!(
        (s, reg["destructions"].as_array().unwrap().len()),
        (Status::Ok, 0),
        "{reg}"
    );
    let (s, _) = w
        .raw_get(&format!("/destructions/{cert_id}/certificate.pdf"), &other)
        .await;
    assert_eq!(s, Status::NotFound);
    let (s, reg) = app
        .get(
            "/api/v1/destructions?from=2000-01-01&to=2000-12-31",
            &w.sup1,
        )
        .await;
    assert_eq!(
        (s, reg["destructions"].as_array().unwrap().len()),
        (Status::Ok, 0)
    );
    let (s, csv) = w.raw_get("/destructions/register.csv", &w.auditor).await;
    assert_eq!(s, Status::Ok);
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with('\u{feff}'));
    for (_, content) in &w.files {
        assert!(csv.contains(&hex::encode(Sha256::digest(content))), "{csv}");
    }
    let (s, xlsx) = w.raw_get("/destructions/register.xlsx", &w.auditor).await;
    assert_eq!(s, Status::Ok);
    assert!(xlsx.starts_with(b"PK"));

    // The PDF certificate: well formed, with every file's SHA-256.
    let (s, pdf) = w
        .raw_get(&format!("/destructions/{cert_id}/certificate.pdf"), &w.sup2)
        .await;
    assert_eq!(s, Status::Ok);
    check_pdf(&pdf);
    let text = String::from_utf8_lossy(&pdf);
    for (_, content) in &w.files {
        assert!(text.contains(&hex::encode(Sha256::digest(content))));
    }
    let (s, _) = w
        .raw_get(
            &format!("/destructions/{cert_id}/certificate.pdf"),
            &w.employee,
        )
        .await;
    assert_eq!(s, Status::Forbidden);

    // The register cannot be rewritten, even by the database's superuser.
    let superuser = app.superuser_pool().await;
    let err = sqlx::query("UPDATE destructions SET witness = 'someone'")
        .execute(&superuser)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");

    // Audited, and the chain verifies.
    assert_eq!(app.audit_count("record.destroy", "success").await, 1);
    assert!(app.audit_count("record.destroy", "denied").await >= 1);
    audit::sequence_all(&app.db).await.unwrap();
    assert!(matches!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact { pending: 0, .. }
    ));
}

#[tokio::test]
async fn a_paper_file_is_never_marked_destroyed_by_hand() {
    let w = world().await;
    let (s, r) = w
        .app
        .post(
            &format!("/api/v1/records/{}/physical", w.record),
            &w.archivist,
            json!({"status": "destroyed", "reason": "shredded it"}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{r}");
    let (_, rec) = w
        .app
        .get(&format!("/api/v1/records/{}", w.record), &w.archivist)
        .await;
    assert_eq!(rec["physical"]["status"], "in_store");
}

#[tokio::test]
async fn a_destroy_request_is_used_once_and_rejected_ones_never() {
    let w = world().await;
    let request = w.destroy_request("retention").await;
    let (s, r) = w
        .app
        .post(
            &format!("/api/v1/requests/{request}/reject"),
            &w.sup1,
            json!({"comment": "still needed for the audit"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let (s, r) = w.destroy(&w.arch2, &request, "emp").await;
    assert_eq!(s, Status::Conflict, "{r}");
    // The requester cannot approve their own destroy request (an archivist and supervisor).
    let (s, _) = w
        .app
        .post(
            &format!("/api/v1/requests/{request}/approve"),
            &w.archivist,
            json!({}),
        )
        .await;
    assert!(s == Status::Forbidden || s == Status::NotFound, "{s}");
    // Unknown reason types are refused.
    let (s, r) = w
        .app
        .post("/api/v1/requests", &w.archivist,
              json!({"record_id": w.record, "kind": "destroy", "purpose": PURPOSE, "reason_type": "whim"}))
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{r}");
}

#[tokio::test]
async fn objects_left_behind_are_deleted_by_the_gc() {
    let app = TestApp::new().await;
    let store = &app.app().store;
    let stored_obj = store
        .put_encrypted(
            &app.app().keys,
            uuid::Uuid::new_v4(),
            &b"leftover"[..],
            1 << 20,
        )
        .await
        .unwrap();
    sqlx::query("INSERT INTO object_deletions (store_key) VALUES ($1)")
        .bind(&stored_obj.object_key)
        .execute(&app.db)
        .await
        .unwrap();
    assert!(stored(&app, &stored_obj.object_key).await);
    // A grace period far longer than the object's age: only the pending list removes it.
    let r =
        strongroom::storage::gc::run_once(&app.db, store, std::time::Duration::from_secs(86_400))
            .await
            .unwrap();
    assert_eq!(r.removed, 1);
    assert!(!stored(&app, &stored_obj.object_key).await);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM object_deletions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(pending, 0);
}
