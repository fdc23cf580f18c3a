//! The periodic access review: accounts with roles, department, status and last sign-in,
//! marked inactive after N days (never counts as inactive), for administrators and
//! auditors only; the page, its CSV and .xlsx, and the audited completion.

use std::io::{Cursor, Read};

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::common::browser::Browser;
use crate::common::{TestApp, PASSWORD};

/// An administrator, an auditor, one account that signed in 100 days ago, one that never
/// signed in; returns (admin token, auditor token).
async fn accounts(app: &TestApp) -> (String, String) {
    let admin = app.user_token("root.admin", &[Role::Admin], "IT").await;
    let auditor = app
        .user_token("audit.zhou", &[Role::Auditor], "Compliance")
        .await;
    app.add_user("old.li", &[Role::Employee, Role::Supervisor], "Retail")
        .await;
    let (s, _) = app.login("old.li", PASSWORD).await;
    assert_eq!(s, Status::Ok);
    sqlx::query(
        "UPDATE users SET last_sign_in_at = now() - interval '100 days', \
         created_at = now() - interval '400 days' WHERE username = 'old.li'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    app.add_user("never.wu", &[Role::Archivist], "Records")
        .await;
    (admin, auditor)
}

fn row<'a>(review: &'a Value, username: &str) -> &'a Value {
    review["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["username"] == username)
        .unwrap_or_else(|| panic!("{username} not in {review}"))
}

#[tokio::test]
async fn the_review_lists_accounts_and_marks_the_inactive() {
    let app = TestApp::new().await;
    let (admin, auditor) = accounts(&app).await;

    let (s, r) = app.get("/api/v1/access-review", &auditor).await;
    assert_eq!(s, Status::Ok, "{r}");
    assert_eq!(r["filter"]["inactive_days"], 90);
    assert_eq!(r["rows"].as_array().unwrap().len(), 4, "{r}");
    let old = row(&r, "old.li");
    assert_eq!(old["inactive"], true);
    assert_eq!(old["idle_days"], 100);
    assert_eq!(old["department"], "Retail");
    assert_eq!(old["roles"], json!(["employee", "supervisor"]));
    assert_eq!(row(&r, "never.wu")["inactive"], true, "never counts");
    assert!(row(&r, "never.wu")["last_sign_in_at"].is_null());
    assert_eq!(row(&r, "audit.zhou")["inactive"], false);
    assert_eq!(r["inactive"], 2);
    assert_eq!(old["second_factor"], false);

    // A confirmed second factor shows; one still pending does not.
    sqlx::query(
        "INSERT INTO user_totp (user_id, kek_id, secret_sealed, confirmed_at) \
         SELECT id, 'k', '\\x00'::bytea, CASE WHEN username = 'old.li' THEN now() END FROM users \
         WHERE username IN ('old.li', 'never.wu')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (_, r) = app.get("/api/v1/access-review", &auditor).await;
    assert_eq!(row(&r, "old.li")["second_factor"], true);
    assert_eq!(
        row(&r, "never.wu")["second_factor"],
        false,
        "pending is not on"
    );
    let csv = crate::common::browser::Browser::with_token(&app, &auditor)
        .get("/admin/access-review.csv")
        .await;
    let text = String::from_utf8(csv.body).unwrap();
    assert!(
        text.lines().next().unwrap().ends_with(",Second factor"),
        "{text}"
    );

    // N days: 120 keeps old.li active; only the inactive on request.
    let (_, r) = app.get("/api/v1/access-review?days=120", &admin).await;
    assert_eq!(row(&r, "old.li")["inactive"], false);
    let (_, r) = app
        .get("/api/v1/access-review?days=30&inactive=true", &admin)
        .await;
    let names: Vec<&str> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["never.wu", "old.li"]);
    let (s, e) = app.get("/api/v1/access-review?days=0", &admin).await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");

    // Others may not.
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    for t in [&emp, &sup] {
        let (s, _) = app.get("/api/v1/access-review", t).await;
        assert_eq!(s, Status::Forbidden);
    }
    let b = Browser::with_token(&app, &emp);
    assert_eq!(
        b.get("/admin/access-review").await.status,
        Status::Forbidden
    );
    assert_eq!(
        b.get("/admin/access-review.csv").await.status,
        Status::Forbidden
    );
    assert!(app.audit_count("user.review", "denied").await >= 3);
}

#[tokio::test]
async fn the_review_page_exports_and_completion_is_audited() {
    let app = TestApp::new().await;
    let (_admin, auditor) = accounts(&app).await;
    let b = Browser::with_token(&app, &auditor);

    let html = b.page("/admin/access-review").await;
    assert!(
        html.contains("old.li") && html.contains("never.wu") && html.contains("root.admin"),
        "{html}"
    );
    assert!(html.contains("inactive, 100 days"), "{html}");
    assert!(html.contains("never signed in"), "{html}");
    assert!(html.contains("No review has been completed yet."), "{html}");
    let bad = b.get("/admin/access-review?days=lots").await;
    assert_eq!(bad.status, Status::UnprocessableEntity);
    assert!(bad.html.contains("id=\"e-days\""), "{}", bad.html);
    let zh = Browser::with_token(&app, &auditor).in_language("zh-CN");
    assert!(zh.page("/admin/access-review").await.contains("权限审查"));

    // CSV: the person's language, BOM, only the inactive when asked.
    let csv = b.get("/admin/access-review.csv?days=90&inactive=1").await;
    assert_eq!(csv.status, Status::Ok);
    assert!(csv.content_type.as_deref().unwrap().starts_with("text/csv"));
    assert_eq!(&csv.body[..3], b"\xEF\xBB\xBF");
    let text = String::from_utf8(csv.body[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Account,Name,Department,Roles,Status,Created,Last sign-in"),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("never.wu,never.wu display,Records,Archivist,Active"),
        "{text}"
    );
    assert!(lines[2].starts_with("old.li,"), "{text}");
    assert!(lines[2].contains(",100,Yes"), "{text}");

    // The workbook, read back.
    let xlsx = b.get("/admin/access-review.xlsx").await;
    assert_eq!(xlsx.status, Status::Ok);
    let mut zip = zip::ZipArchive::new(Cursor::new(xlsx.body)).unwrap();
    let mut sheet = String::new();
    zip.by_name("xl/worksheets/sheet1.xml")
        .unwrap()
        .read_to_string(&mut sheet)
        .unwrap();
    assert_eq!(sheet.matches("<row ").count(), 5, "{sheet}");
    for name in [
        "audit.zhou",
        "never.wu",
        "old.li",
        "root.admin",
        "Last sign-in",
    ] {
        assert!(sheet.contains(name), "{name}: {sheet}");
    }
    assert_eq!(app.audit_count("access_review.export", "success").await, 2);

    // Completing the review: audited with the count and the filter, shown as the last one.
    let (to, shown) = b
        .post_follow(
            "/admin/access-review?days=90",
            "/admin/access-review/complete",
            &[("days", "90"), ("note", "old.li to be disabled")],
        )
        .await;
    assert!(to.starts_with("/admin/access-review?days=90"), "{to}");
    assert!(
        shown.contains("Review of 4 accounts marked complete."),
        "{shown}"
    );
    assert!(shown.contains("by audit.zhou"), "{shown}");
    assert!(shown.contains("old.li to be disabled"), "{shown}");
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE action = 'access_review.complete'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(detail["accounts"], 4);
    assert_eq!(detail["inactive"], 2);
    assert_eq!(detail["inactive_days"], 90);
    assert_eq!(detail["only_inactive"], false);
    assert_eq!(detail["note"], "old.li to be disabled");
    let (s, done) = app
        .post(
            "/api/v1/access-review/complete",
            &auditor,
            json!({"inactive_days": 30, "only_inactive": true}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{done}");
    assert_eq!(done["accounts"], 2);
    let (_, r) = app.get("/api/v1/access-review", &auditor).await;
    assert_eq!(r["last_completed"]["inactive_days"], 30, "{r}");
    assert_eq!(
        app.audit_count("access_review.complete", "success").await,
        2
    );
}

#[tokio::test]
async fn accounts_made_on_the_command_line_follow_the_same_text_rules() {
    let app = TestApp::new().await;
    for (display, department, field) in [
        ("\t=1+2", "Retail", "display_name"),
        ("A\rB\u{7}", "Retail", "display_name"),
        ("Wang Fang", "Ret\u{1b}[31mail", "department"),
    ] {
        let made = strongroom::users::create_by_operator(
            &app.app().db.pool().clone(),
            &app.app().hasher,
            &strongroom::audit::Actor::system("test"),
            strongroom::users::NewUser {
                username: "wang.fang".into(),
                display_name: Some(display.into()),
                department: Some(department.into()),
                roles: vec![Role::Employee],
                password: secrecy::SecretString::from(PASSWORD),
                must_change_password: false,
            },
        )
        .await;
        match made {
            Err(strongroom::error::AppError::Invalid { field: f, .. }) => {
                assert_eq!(f.as_deref(), Some(field))
            }
            other => panic!("{display:?}/{department:?}: {other:?}"),
        }
    }
}
