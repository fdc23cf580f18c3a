//! The audit trail page renders the events it lists: it answered 500 (`unknown filter:
//! tojson`) as soon as one event matched, because no test rendered it with events.

use rocket::http::{Cookie, Status};
use serde_json::json;
use strongroom::users::Role;

use crate::archive::setup;
use crate::common::TestApp;

async fn audit_page(app: &TestApp, token: &str, query: &str) -> (Status, String) {
    let res = app
        .client
        .get(format!("/audit{query}"))
        .cookie(Cookie::new(
            strongroom::auth::SESSION_COOKIE,
            token.to_string(),
        ))
        .dispatch()
        .await;
    let status = res.status();
    (status, res.into_string().await.unwrap_or_default())
}

#[tokio::test]
async fn the_audit_page_shows_events_of_every_kind() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (s, record) = app
        .post("/api/v1/records", &archivist, json!({
            "category_id": contracts["id"], "title": "Framework agreement <Huaxin>",
            "fields": {"company_name": "Huaxin", "holder_name": "张三丰", "phone": "13812345678"}
        }))
        .await;
    assert_eq!(s, Status::Created, "{record}");
    let employee = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup1 = app.user_token("sup1", &[Role::Supervisor], "Retail").await;
    let sup2 = app.user_token("sup2", &[Role::Supervisor], "Retail").await;
    let outsider = app.user_token("sup3", &[Role::Supervisor], "Claims").await;
    assert_eq!(
        app.login("emp", "not the password").await.0,
        Status::Unauthorized
    );
    let (s, _) = app.get("/api/v1/records?q=huaxin", &employee).await;
    assert_eq!(s, Status::Ok);

    let request = |kind: &'static str| {
        let body = json!({"record_id": record["id"], "kind": kind,
                          "purpose": "customer complaint #4711 needs the signed contract",
                          "duration_hours": 8});
        let app = &app;
        let employee = &employee;
        async move {
            let (s, r) = app.post("/api/v1/requests", employee, body).await;
            assert_eq!(s, Status::Created, "{r}");
            r["id"].as_str().unwrap().to_string()
        }
    };
    let view = request("view").await;
    // Refused: a supervisor of another department may not see it.
    let (s, _) = app
        .post(
            &format!("/api/v1/requests/{view}/approve"),
            &outsider,
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(s, Status::NotFound);
    for sup in [&sup1, &sup2] {
        let (s, r) = app
            .post(
                &format!("/api/v1/requests/{view}/approve"),
                sup,
                json!({"comment": "ok & <fine>"}),
            )
            .await;
        assert!(s == Status::Ok || s == Status::Conflict, "{s} {r}");
    }
    let rejected = request("export").await;
    let (s, r) = app
        .post(
            &format!("/api/v1/requests/{rejected}/reject"),
            &sup1,
            json!({"comment": "not needed"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    let (s, _) = app
        .get(
            &format!("/api/v1/records/{}", record["id"].as_str().unwrap()),
            &employee,
        )
        .await;
    assert_eq!(s, Status::Ok);

    let (_, auditor) = app.login_as(Role::Auditor).await;
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT action FROM audit_events ORDER BY action")
            .fetch_all(&app.db)
            .await
            .unwrap();
    for expected in [
        "auth.login",
        "record.create",
        "record.search",
        "request.create",
        "request.approve",
        "request.reject",
        "grant.create",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} not among {actions:?}"
        );
    }
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT DISTINCT outcome FROM audit_events")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(
        outcomes.iter().any(|o| o == "failure") && outcomes.iter().any(|o| o == "denied"),
        "{outcomes:?}"
    );

    let (status, html) = audit_page(&app, &auditor, "").await;
    assert_eq!(status, Status::Ok, "{html}");
    for action in &actions {
        assert!(
            html.contains(&format!("title=\"{action}\"")),
            "{action} missing from the page"
        );
    }
    assert!(html.contains("class=\"denied\""), "refusals are shown");
    assert!(
        !html.contains("<fine>"),
        "event details are escaped on the page"
    );

    // Filtered to one action, only that action's events show.
    let (status, html) = audit_page(&app, &auditor, "?action=request.reject").await;
    assert_eq!(status, Status::Ok, "{html}");
    assert!(html.contains("title=\"request.reject\""));
    assert!(!html.contains("title=\"request.approve\""));
}
