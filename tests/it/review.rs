//! Review before changes take effect: a filing or correction in a category under review is
//! a proposal, invisible until a second person approves it; the proposer cannot approve;
//! the revision history names proposer and reviewer; nothing typed is kept in clear.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::common::browser::Browser;
use crate::common::TestApp;

async fn reviewed_category(app: &TestApp, archivist: &str) -> Value {
    let (s, c) = app
        .post(
            "/api/v1/categories",
            archivist,
            json!({
            "code": "KYC", "name": "Customer due diligence", "sensitivity": "internal",
            "department": "Retail", "retention_years": 10, "review": true,
            "fields": [
                {"name": "company_name", "type": "text", "required": true},
                {"name": "phone", "type": "phone", "sensitive": true}
            ]}),
        )
        .await;
    assert_eq!(s, Status::Created, "{c}");
    assert_eq!(c["review"], true);
    c
}

/// Files a record in `cat` (a category under review) as `who`: a proposal; its id.
async fn propose_filing(
    app: &TestApp,
    who: &str,
    cat: &Value,
    title: &str,
    fields: Value,
) -> String {
    let (s, r) = app
        .post(
            "/api/v1/records",
            who,
            json!({"category_id": cat["id"], "title": title, "fields": fields}),
        )
        .await;
    assert_eq!(s, Status::Accepted, "{r}");
    r["proposal"]["id"].as_str().unwrap().to_string()
}

async fn search_count(app: &TestApp, token: &str, q: &str) -> usize {
    let (s, r) = app.get(&format!("/api/v1/records?q={q}"), token).await;
    assert_eq!(s, Status::Ok, "{r}");
    r["hits"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_proposal_is_invisible_until_another_person_approves_it() {
    let app = TestApp::new().await;
    let a = app.user_token("arch.a", &[Role::Archivist], "Retail").await;
    let b = app.user_token("arch.b", &[Role::Archivist], "Retail").await;
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let cat = reviewed_category(&app, &a).await;

    // Filing: kept as a proposal, nothing filed.
    let (s, r) = app
        .post(
            "/api/v1/records",
            &a,
            json!({"category_id": cat["id"], "title": "Due diligence Huaxin",
            "fields": {"company_name": "Huaxin Trading", "phone": "13812345678"}}),
        )
        .await;
    assert_eq!(s, Status::Accepted, "{r}");
    let p = r["proposal"].clone();
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(
        (p["kind"].as_str(), p["state"].as_str()),
        (Some("create"), Some("pending"))
    );
    assert_eq!(p["proposer"], "arch.a");
    let phone = p["summary"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "phone")
        .unwrap()
        .clone();
    assert_eq!(phone["sensitive"], true);
    assert_ne!(
        phone["value"], "13812345678",
        "masked in the summary: {phone}"
    );
    assert_eq!(
        search_count(&app, &a, "Huaxin").await,
        0,
        "nothing filed yet"
    );
    let db = app.superuser_pool().await;
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(records, 0);
    let dump: String = sqlx::query_scalar(
        "SELECT summary::text || encode(sealed, 'escape') FROM record_proposals",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        !dump.contains("13812345678"),
        "the phone is not kept in clear"
    );

    // The proposer cannot approve; an employee cannot; a supervisor is not the reviewing
    // role under the shipped setting.
    let path = format!("/api/v1/proposals/{pid}/approve");
    let (s, e) = app.post(&path, &a, json!({})).await;
    assert_eq!(s, Status::Conflict, "{e}");
    let (s, _) = app.post(&path, &emp, json!({})).await;
    assert!(s == Status::Forbidden || s == Status::NotFound, "{s}");
    let (s, _) = app.post(&path, &sup, json!({})).await;
    assert_eq!(s, Status::Forbidden);
    assert!(app.audit_count("record.review", "denied").await >= 2);
    let (s, list) = app.get("/api/v1/proposals", &b).await;
    assert_eq!(s, Status::Ok);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, _) = app.get("/api/v1/proposals", &emp).await;
    assert_eq!(s, Status::Forbidden, "employees review nothing");

    // Another archivist approves: the record exists, filed by the proposer, reviewed by B.
    let (s, done) = app
        .post(&path, &b, json!({"comment": "checked against the scan"}))
        .await;
    assert_eq!(s, Status::Ok, "{done}");
    assert_eq!(done["state"], "approved");
    assert_eq!(done["reviewer"], "arch.b");
    let rid = done["result_record_id"].as_str().unwrap().to_string();
    let (s, _) = app.post(&path, &b, json!({})).await;
    assert_eq!(s, Status::Conflict, "decided once");
    assert_eq!(search_count(&app, &a, "Huaxin").await, 1);
    let (_, revs) = app
        .get(&format!("/api/v1/records/{rid}/revisions"), &a)
        .await;
    assert_eq!(revs[0]["author"], "arch.a");
    assert_eq!(revs[0]["reviewer"], "arch.b");
    let sealed_len: i32 =
        sqlx::query_scalar("SELECT length(sealed) FROM record_proposals WHERE id = $1::uuid")
            .bind(&pid)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(sealed_len, 0, "what was typed is erased once decided");

    // A correction: the record stays as it was until approved; a rejection changes nothing.
    let fix = json!({"title": "Due diligence Huaxin Trading", "fields": {"company_name": "Huaxin Trading Co"}, "reason": "name as on the licence"});
    let (s, r) = app
        .patch(&format!("/api/v1/records/{rid}"), &a, fix.clone())
        .await;
    assert_eq!(s, Status::Accepted, "{r}");
    let fix1 = r["proposal"]["id"].as_str().unwrap().to_string();
    let (_, now) = app.get(&format!("/api/v1/records/{rid}"), &a).await;
    assert_eq!(now["title"], "Due diligence Huaxin");
    assert_eq!(now["revision"], 1);
    let (s, r) = app
        .post(
            &format!("/api/v1/proposals/{fix1}/reject"),
            &b,
            json!({"comment": "licence not attached"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let (_, now) = app.get(&format!("/api/v1/records/{rid}"), &a).await;
    assert_eq!(now["title"], "Due diligence Huaxin");
    let (_, r) = app.patch(&format!("/api/v1/records/{rid}"), &a, fix).await;
    let fix2 = r["proposal"]["id"].as_str().unwrap().to_string();
    let (s, r) = app
        .post(&format!("/api/v1/proposals/{fix2}/approve"), &b, json!({}))
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let (_, now) = app.get(&format!("/api/v1/records/{rid}"), &a).await;
    assert_eq!(now["title"], "Due diligence Huaxin Trading");
    assert_eq!(now["revision"], 2);
    let (_, revs) = app
        .get(&format!("/api/v1/records/{rid}/revisions"), &a)
        .await;
    assert_eq!(revs[1]["author"], "arch.a");
    assert_eq!(revs[1]["reviewer"], "arch.b");
    assert_eq!(revs[1]["reason"], "name as on the licence");

    // A refused change is refused as a proposal too (the same checks run).
    let (s, e) = app
        .patch(
            &format!("/api/v1/records/{rid}"),
            &a,
            json!({"fields": {"phone": "12345"}, "reason": "new number"}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(app.audit_count("record.propose", "success").await, 3);
    assert_eq!(app.audit_count("record.review", "success").await, 3);
    let v = strongroom::audit::verify(app.app().db.pool())
        .await
        .unwrap();
    assert!(
        matches!(v, strongroom::audit::Verification::Intact { .. }),
        "{v:?}"
    );
}

#[tokio::test]
async fn reviewing_in_the_browser_and_categories_without_review_file_at_once() {
    let app = TestApp::new().await;
    let a = Browser::new(&app, "arch.a", &[Role::Archivist]).await;
    let b = Browser::new(&app, "arch.b", &[Role::Archivist])
        .await
        .in_language("zh-CN");
    let cat = reviewed_category(&app, a.token()).await;
    let (s, _) = app
        .post(
            "/api/v1/records",
            a.token(),
            json!({"category_id": cat["id"], "title": "Due diligence Acme",
            "fields": {"company_name": "Acme"}}),
        )
        .await;
    assert_eq!(s, Status::Accepted);
    let own = a.page("/reviews").await;
    assert!(
        own.contains("Due diligence Acme") && !own.contains("/approve\""),
        "no buttons on one's own"
    );
    let page = b.page("/reviews").await;
    assert!(page.contains("待审核的变更") && page.contains("Due diligence Acme"));
    let pid = page
        .split("/reviews/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let done = b
        .post(
            "/reviews",
            &format!("/reviews/{pid}/approve"),
            &[("comment", "核对无误")],
        )
        .await;
    assert_eq!(done.status, Status::SeeOther);
    assert!(
        done.flash
            .as_deref()
            .is_some_and(|f| f.starts_with("flash-review-approved")),
        "{:?}",
        done.flash
    );
    // The proposer posting the form directly is refused with the reason, nothing applied.
    let (s, _) = app
        .post(
            "/api/v1/records",
            a.token(),
            json!({"category_id": cat["id"], "title": "Due diligence Beta",
            "fields": {"company_name": "Beta"}}),
        )
        .await;
    assert_eq!(s, Status::Accepted);
    let (_, list) = app.get("/api/v1/proposals", a.token()).await;
    let pid = list[0]["id"].as_str().unwrap().to_string();
    let own = a
        .post(
            "/reviews",
            &format!("/reviews/{pid}/approve"),
            &[("comment", "")],
        )
        .await;
    assert!(
        own.flash
            .as_deref()
            .is_some_and(|f| f.starts_with("flash-review-refused")),
        "{:?}",
        own.flash
    );
    let (_, list) = app.get("/api/v1/proposals", a.token()).await;
    assert_eq!(list[0]["state"], "pending");

    // Turning review off: records file at once again (201).
    let (s, c) = app
        .patch(
            &format!("/api/v1/categories/{}", cat["id"].as_str().unwrap()),
            a.token(),
            json!({"review": false}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{c}");
    assert_eq!(c["review"], false);
    let (s, r) = app
        .post(
            "/api/v1/records",
            a.token(),
            json!({"category_id": cat["id"], "title": "Due diligence Gamma",
            "fields": {"company_name": "Gamma"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
}

/// A proposal waiting for review is sealed under the vault's key: rotating the keys moves
/// it under the new key, so retiring the old one leaves it approvable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_proposal_survives_key_rotation_and_retirement() {
    let app = TestApp::new().await;
    let a = app.user_token("arch.a", &[Role::Archivist], "Retail").await;
    let b = app.user_token("arch.b", &[Role::Archivist], "Retail").await;
    let cat = reviewed_category(&app, &a).await;
    let pid = propose_filing(
        &app,
        &a,
        &cat,
        "Due diligence Delta",
        json!({"company_name": "Delta", "phone": "13912345678"}),
    )
    .await;
    let old = app.app().keys.active_kek_id();

    let (code, out, err) = crate::rotation::rotate_keys(&app, &[], None).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let kek: String = sqlx::query_scalar("SELECT kek_id FROM record_proposals")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_ne!(kek, old, "the proposal moved under the new key");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.app().keys.active_kek_id() == old {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never loaded the new key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (code, out, err) = crate::rotation::rotate_keys(&app, &["--retire", &old], None).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (s, done) = app
            .post(&format!("/api/v1/proposals/{pid}/approve"), &b, json!({}))
            .await;
        if s == Status::Ok {
            assert_eq!(done["state"], "approved");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s}: {done}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, hits) = app.get("/api/v1/records?phone=13912345678", &a).await;
    assert_eq!(hits["hits"].as_array().unwrap().len(), 1, "{hits}");
}

#[tokio::test]
async fn a_correction_proposed_against_an_older_revision_cannot_be_approved() {
    let app = TestApp::new().await;
    let a = app.user_token("arch.a", &[Role::Archivist], "Retail").await;
    let b = app.user_token("arch.b", &[Role::Archivist], "Retail").await;
    let cat = reviewed_category(&app, &a).await;
    let filed = propose_filing(
        &app,
        &a,
        &cat,
        "Due diligence Huaxin",
        json!({"company_name": "Huaxin Trading"}),
    )
    .await;
    let (_, done) = app
        .post(&format!("/api/v1/proposals/{filed}/approve"), &b, json!({}))
        .await;
    let rid = done["result_record_id"].as_str().unwrap().to_string();
    let propose = |who: &str, name: &str| {
        let body = json!({"fields": {"company_name": name}, "reason": "name as on the licence"});
        let (who, path) = (who.to_string(), format!("/api/v1/records/{rid}"));
        let app = &app;
        async move {
            let (s, r) = app.patch(&path, &who, body).await;
            assert_eq!(s, Status::Accepted, "{r}");
            r["proposal"]["id"].as_str().unwrap().to_string()
        }
    };
    // Both made against revision 1; the second is approved first.
    let first = propose(&a, "Huaxin Trading One").await;
    let second = propose(&b, "Huaxin Trading Two").await;
    let (s, r) = app
        .post(
            &format!("/api/v1/proposals/{second}/approve"),
            &a,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let (s, e) = app
        .post(&format!("/api/v1/proposals/{first}/approve"), &b, json!({}))
        .await;
    assert_eq!(s, Status::Conflict, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has changed since"),
        "{e}"
    );
    let (_, now) = app.get(&format!("/api/v1/records/{rid}"), &a).await;
    assert_eq!(now["revision"], 2);
    let shown = now.to_string();
    assert!(
        shown.contains("Huaxin Trading Two") && !shown.contains("Huaxin Trading One"),
        "{shown}"
    );
    let (_, pending) = app.get("/api/v1/proposals", &b).await;
    let ids: Vec<&str> = pending
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str()], "still pending, to be rejected");
    let (s, r) = app
        .post(
            &format!("/api/v1/proposals/{first}/reject"),
            &b,
            json!({"comment": "superseded"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
}

#[tokio::test]
async fn the_proposer_alone_withdraws_a_waiting_proposal() {
    let app = TestApp::new().await;
    let a = app.user_token("arch.a", &[Role::Archivist], "Retail").await;
    let b = app.user_token("arch.b", &[Role::Archivist], "Retail").await;
    let cat = reviewed_category(&app, &a).await;
    let pid = propose_filing(
        &app,
        &a,
        &cat,
        "Due diligence Huaxin",
        json!({"company_name": "Huaxin Trading", "phone": "13812345678"}),
    )
    .await;
    let path = format!("/api/v1/proposals/{pid}/withdraw");
    let (s, e) = app.post(&path, &b, json!({})).await;
    assert_eq!(s, Status::Conflict, "another archivist cannot: {e}");
    let (s, w) = app.post(&path, &a, json!({})).await;
    assert_eq!(s, Status::Ok, "{w}");
    assert_eq!(w["state"], "withdrawn");
    let (s, _) = app.post(&path, &a, json!({})).await;
    assert_eq!(s, Status::Conflict, "withdrawn once");
    let (s, e) = app
        .post(&format!("/api/v1/proposals/{pid}/approve"), &b, json!({}))
        .await;
    assert_eq!(s, Status::Conflict, "{e}");
    let (_, listed) = app.get("/api/v1/proposals?state=withdrawn", &a).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let db = app.superuser_pool().await;
    let sealed: i32 =
        sqlx::query_scalar("SELECT length(sealed) FROM record_proposals WHERE id = $1::uuid")
            .bind(&pid)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(sealed, 0, "what was typed is erased");
    assert_eq!(search_count(&app, &a, "Huaxin").await, 0);
    assert_eq!(app.audit_count("record.propose", "denied").await, 1);
}
