//! The probe's findings on authorization and transactions, each reproduced: strangers get
//! the same 404 as for an unknown id before any state is revealed, refusals leave audit
//! events, a permit opens only its own record's files, and a failure after a row lock
//! releases the lock before the answer.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::TestApp;

const PURPOSE: &str = "customer complaint #4711 needs the signed contract";
const UNKNOWN: &str = "6d1f0b6e-3a49-4f6f-9d55-1f1c2a0e0b7a";

struct World {
    app: TestApp,
    archivist: String,
    contracts: Value,
    record: String,
    employee: String,
    sup: String,
    /// A supervisor of another department: the confidential record is not theirs to see.
    outsider: String,
}

async fn world() -> World {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let record = file(&app, &archivist, &contracts, "Framework agreement").await;
    World {
        employee: app.user_token("emp", &[Role::Employee], "Retail").await,
        sup: app.user_token("sup", &[Role::Supervisor], "Retail").await,
        outsider: app
            .user_token("claims_sup", &[Role::Supervisor], "Claims")
            .await,
        app,
        archivist,
        contracts,
        record,
    }
}

async fn file(app: &TestApp, archivist: &str, contracts: &Value, title: &str) -> String {
    let (s, r) = app
        .post(
            "/api/v1/records",
            archivist,
            json!({"category_id": contracts["id"], "title": title,
                   "fields": {"company_name": "Huaxin", "phone": "13812345678"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

impl World {
    async fn request(&self, record: &str, kind: &str) -> String {
        let (s, r) = self
            .app
            .post(
                "/api/v1/requests",
                &self.employee,
                json!({"record_id": record, "kind": kind, "purpose": PURPOSE, "duration_hours": 4}),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
        r["id"].as_str().unwrap().to_string()
    }

    async fn approve(&self, id: &str) -> Value {
        let (s, r) = self
            .app
            .post(
                &format!("/api/v1/requests/{id}/approve"),
                &self.sup,
                json!({"comment": "ok"}),
            )
            .await;
        assert_eq!(s, Status::Ok, "{r}");
        r
    }
}

#[tokio::test]
async fn a_supervisor_of_another_department_gets_the_same_404_as_for_an_unknown_id() {
    let w = world().await;
    let pending = w.request(&w.record, "lookup").await;
    let approved = w.request(&w.record, "view").await;
    let g = w.approve(&approved).await;
    let grant = g["grant"]["id"].as_str().unwrap().to_string();

    let unknown_read = w
        .app
        .get(&format!("/api/v1/requests/{UNKNOWN}"), &w.outsider)
        .await;
    assert_eq!(unknown_read.0, Status::NotFound);
    for id in [&pending, &approved] {
        // Reading, approving, rejecting: the same 404 and body as an unknown id, for a
        // pending request and for one already decided (no 409 telling its state).
        let read = w
            .app
            .get(&format!("/api/v1/requests/{id}"), &w.outsider)
            .await;
        assert_eq!(read, unknown_read, "read {id}");
        for verb in ["approve", "reject"] {
            let body = json!({"comment": "looks fine to me"});
            let got = w
                .app
                .post(
                    &format!("/api/v1/requests/{id}/{verb}"),
                    &w.outsider,
                    body.clone(),
                )
                .await;
            let unknown = w
                .app
                .post(
                    &format!("/api/v1/requests/{UNKNOWN}/{verb}"),
                    &w.outsider,
                    body,
                )
                .await;
            assert_eq!(got, unknown, "{verb} {id}");
            assert_eq!(got.0, Status::NotFound);
        }
    }
    // Revoking someone else's grant on another department's record: 404 like an unknown
    // grant, and the grant stays in force.
    let body = json!({"reason": "not mine to end"});
    let got = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.outsider,
            body.clone(),
        )
        .await;
    let unknown = w
        .app
        .post(
            &format!("/api/v1/grants/{UNKNOWN}/revoke"),
            &w.outsider,
            body,
        )
        .await;
    assert_eq!(got, unknown);
    assert_eq!(got.0, Status::NotFound);
    let (s, list) = w.app.get("/api/v1/grants", &w.sup).await;
    assert_eq!(s, Status::Ok);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // The department's own supervisor may; then a stranger still learns nothing.
    let (s, r) = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.sup,
            json!({"reason": "complaint closed"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let again = w
        .app
        .post(
            &format!("/api/v1/grants/{grant}/revoke"),
            &w.outsider,
            json!({"reason": "not mine to end"}),
        )
        .await;
    assert_eq!(again.0, Status::NotFound);
    // Every one of these refusals is in the audit trail.
    let denied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events e JOIN users u ON u.id = e.actor_id \
         WHERE u.username = 'claims_sup' AND e.outcome = 'denied'",
    )
    .fetch_one(&w.app.db)
    .await
    .unwrap();
    // 3 reads, 8 decisions, 3 revokes.
    assert!(denied >= 14, "{denied} refusals audited");
}

#[tokio::test]
async fn refused_actions_are_audited() {
    let w = world().await;
    let pending = w.request(&w.record, "lookup").await;
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE outcome = 'denied'")
            .fetch_one(&w.app.db)
            .await
            .unwrap();
    let e = &w.employee;
    let refused: Vec<(Status, Value)> = vec![
        w.app.get("/api/v1/audit", e).await,
        w.app.get("/api/v1/users", e).await,
        w.app
            .post("/api/v1/users", e, json!({"username": "x1", "password": "a sturdy test passphrase", "roles": ["admin"]}))
            .await,
        w.app.get("/api/v1/grants", e).await,
        w.app.get("/api/v1/loans", e).await,
        w.app
            .post("/api/v1/categories", e, json!({"code": "NEW", "name": "New", "sensitivity": "public", "department": "Retail", "retention_years": 1}))
            .await,
        w.app.get(&format!("/api/v1/requests/{pending}"), &w.outsider).await,
        w.app
            .post(&format!("/api/v1/requests/{pending}/approve"), e, json!({"comment": "mine"}))
            .await,
        w.app
            .post(&format!("/api/v1/requests/{pending}/cancel"), &w.sup, json!({}))
            .await,
    ];
    for (i, (s, body)) in refused.iter().enumerate() {
        assert!(
            *s == Status::Forbidden || *s == Status::NotFound,
            "case {i}: {s} {body}"
        );
    }
    let (s, _) = w
        .app
        .post(
            &format!("/api/v1/users/{}/disable", uuid::Uuid::new_v4()),
            e,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Forbidden);
    // A form post without its CSRF token.
    let res = w
        .app
        .client
        .post(format!("/requests/{pending}/cancel"))
        .header(rocket::http::ContentType::Form)
        .header(crate::common::bearer(e))
        .body("csrf=wrong")
        .dispatch()
        .await;
    let csrf_status = res.status();
    let after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE outcome = 'denied'")
            .fetch_one(&w.app.db)
            .await
            .unwrap();
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT action FROM audit_events WHERE outcome = 'denied' ORDER BY action",
    )
    .fetch_all(&w.app.db)
    .await
    .unwrap();
    for a in [
        "audit.read",
        "user.manage",
        "grant.list",
        "loan.manage",
        "category.manage",
        "request.read",
        "request.approve",
        "request.cancel",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
    assert!(after - before >= 10, "{} refusals audited", after - before);
    if csrf_status == Status::Forbidden {
        assert!(actions.iter().any(|x| x == "auth.csrf"), "{actions:?}");
    }
}

#[tokio::test]
async fn a_view_grant_on_one_record_cannot_open_a_file_of_another() {
    let w = world().await;
    let other = file(&w.app, &w.archivist, &w.contracts, "Another agreement").await;
    let pdf = crate::viewer::pdf(1);
    let (s, mine) = upload(&w.app, &w.archivist, &w.record, "mine.pdf", &pdf).await;
    assert_eq!(s, Status::Created, "{mine}");
    let (s, theirs) = upload(&w.app, &w.archivist, &other, "theirs.pdf", &pdf).await;
    assert_eq!(s, Status::Created, "{theirs}");
    let request = w.request(&w.record, "view").await;
    let g = w.approve(&request).await;
    let grant = g["grant"]["id"].as_str().unwrap();
    let open = |file: &str| format!("/view/{grant}/files/{file}/pages/1");
    let (s, _) = w
        .app
        .get(&open(mine["id"].as_str().unwrap()), &w.employee)
        .await;
    assert_eq!(s, Status::Ok, "the grant's own record");
    let (s, _) = w
        .app
        .get(&open(theirs["id"].as_str().unwrap()), &w.employee)
        .await;
    assert_eq!(
        s,
        Status::NotFound,
        "another record's file under this grant"
    );
}

#[tokio::test]
async fn a_failure_after_a_row_lock_releases_the_lock_before_the_answer() {
    let w = world().await;
    let id = w.request(&w.record, "lookup").await;
    for _ in 0..5 {
        // Locks the request row, then fails (a rejection needs a reason).
        let (s, r) = w
            .app
            .post(
                &format!("/api/v1/requests/{id}/reject"),
                &w.sup,
                json!({"comment": ""}),
            )
            .await;
        assert_eq!(s, Status::UnprocessableEntity, "{r}");
        // The very next statement on the row does not wait: the lock is gone.
        let locked =
            sqlx::query("SELECT 1 FROM access_requests WHERE id = $1::uuid FOR UPDATE NOWAIT")
                .bind(&id)
                .execute(&w.app.db)
                .await;
        assert!(locked.is_ok(), "the row is still locked: {locked:?}");
    }
    // And a second decision proceeds at once.
    let r = w.approve(&id).await;
    assert_eq!(r["state"], "approved");
}

#[tokio::test]
async fn a_nul_in_a_query_string_is_a_422_naming_the_parameter() {
    let w = world().await;
    let (s, e) = w.app.get("/api/v1/records?q=ab%00cd", &w.employee).await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(e["error"]["field"], "q");
    let auditor = w.app.user_token("aud", &[Role::Auditor], "Retail").await;
    let (s, e) = w.app.get("/api/v1/audit?actor=x%00y", &auditor).await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(e["error"]["field"], "actor");
    // Every route's query string, bidi controls and line breaks included.
    for (path, field) in [
        ("/api/v1/requests?state=%00", "state"),
        ("/api/v1/records?q=Zh%E2%80%AEang", "q"),
        ("/api/v1/records?box=%0A", "box"),
    ] {
        let (s, e) = w.app.get(path, &w.employee).await;
        assert_eq!(s, Status::UnprocessableEntity, "{path}: {e}");
        assert_eq!(e["error"]["field"], field, "{path}");
    }
    assert!(!crate::common::captured_logs().contains("ab\u{0}cd"));
}
