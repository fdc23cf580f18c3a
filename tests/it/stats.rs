//! Statistics: a scripted scenario counted back exactly, the counts agreeing with the
//! audit trail, who may read them, bad periods, and the page, CSV and workbook.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::browser::Browser;
use crate::common::TestApp;

const PURPOSE: &str = "customer complaint 2026-331 needs the signed original";

fn count(v: &Value, kind: &str, state: &str) -> i64 {
    v["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind && r["state"] == state)
        .map(|r| r["count"].as_i64().unwrap())
        .sum()
}

async fn request(app: &TestApp, token: &str, record: &str, kind: &str) -> String {
    let (s, r) = app
        .post(
            "/api/v1/requests",
            token,
            json!({"record_id": record, "kind": kind, "purpose": PURPOSE, "duration_hours": 4}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

async fn decide(app: &TestApp, id: &str, token: &str, decision: &str) {
    let (s, r) = app
        .post(
            &format!("/api/v1/requests/{id}/{decision}"),
            token,
            json!({"comment": "seen"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
}

#[tokio::test]
async fn statistics_of_a_scripted_scenario_equal_the_scenario_and_the_audit_trail() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let mut records = Vec::new();
    for company in ["Huaxin", "Acme", "Zhongyuan"] {
        let (s, r) = app
            .post(
                "/api/v1/records",
                &archivist,
                json!({
                "category_id": contracts["id"], "title": format!("Agreement {company}"),
                "fields": {"company_name": company},
                "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}}),
            )
            .await;
        assert_eq!(s, Status::Created, "{r}");
        records.push(r["id"].as_str().unwrap().to_string());
    }
    let (s, f) = upload(
        &app,
        &archivist,
        &records[0],
        "a.pdf",
        &crate::viewer::pdf(1),
    )
    .await;
    assert_eq!(s, Status::Created, "{f}");
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let emp2 = app.user_token("emp2", &[Role::Employee], "Credit").await;
    let sup1 = app.user_token("sup1", &[Role::Supervisor], "Retail").await;
    let sup2 = app.user_token("sup2", &[Role::Supervisor], "Retail").await;
    let auditor = app.user_token("aud", &[Role::Auditor], "").await;

    // 3 lookups approved (the records are confidential: one approval each).
    for r in &records {
        let id = request(&app, &emp, r, "lookup").await;
        decide(&app, &id, &sup1, "approve").await;
    }
    // 2 rejected, one of them asked by someone of another department.
    let id = request(&app, &emp, &records[1], "view").await;
    decide(&app, &id, &sup1, "reject").await;
    let (s, _) = app
        .post("/api/v1/requests", &emp2, json!({"record_id": records[2], "kind": "lookup", "purpose": PURPOSE, "duration_hours": 4}))
        .await;
    // A confidential record of Retail is not visible to Credit: the request is refused
    // and counts nowhere.
    assert_eq!(s, Status::NotFound);
    let id = request(&app, &emp, &records[2], "lookup").await;
    decide(&app, &id, &sup2, "reject").await;
    // 1 loan out and returned.
    let id = request(&app, &emp, &records[0], "borrow").await;
    decide(&app, &id, &sup1, "approve").await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let (s, r) = app
        .post(
            &format!("/api/v1/loans/{id}/checkout"),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let (s, r) = app
        .post(
            &format!("/api/v1/loans/{id}/return"),
            &archivist,
            json!({"condition": "good"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    // 1 export (confidential: two approvers), built and downloaded.
    let id = request(&app, &emp, &records[0], "export").await;
    decide(&app, &id, &sup1, "approve").await;
    decide(&app, &id, &sup2, "approve").await;
    let (s, r) = app
        .post(&format!("/api/v1/exports/{id}"), &emp, json!({}))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let b = Browser::with_token(&app, &emp);
    let dl = b.get(&format!("/api/v1/exports/{id}/download")).await;
    assert_eq!(dl.status, Status::Ok);

    let (s, st) = app.get("/api/v1/stats", &auditor).await;
    assert_eq!(s, Status::Ok, "{st}");
    assert_eq!(count(&st, "lookup", "approved"), 3, "{st}");
    assert_eq!(
        count(&st, "lookup", "rejected") + count(&st, "view", "rejected"),
        2
    );
    assert_eq!(count(&st, "borrow", "approved"), 1);
    assert_eq!(count(&st, "export", "approved"), 1);
    let total: i64 = st["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 7, "{st}");
    assert!(st["requests"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["department"] == "Retail"));
    assert_eq!(
        st["records"],
        json!([{"category": "CONTR", "name": "Contracts", "count": 3}])
    );
    assert_eq!(
        st["loans"],
        json!({"out": 1, "still_out": 0, "overdue": 0, "returned": 1})
    );
    assert_eq!(
        st["exports"],
        json!({"granted": 1, "created": 1, "downloaded": 1})
    );
    assert_eq!(st["views"]["granted"], 0);
    assert_eq!(st["people"][0]["person"], "emp");
    assert_eq!(st["people"][0]["requests"], 7);
    assert_eq!(st["people"][0]["approved"], 5);
    assert_eq!(st["people"][0]["rejected"], 2);
    let days = st["timeline"].as_array().unwrap();
    assert_eq!(days.len(), 30, "the last 30 days, one bucket each");
    assert_eq!(
        days.iter()
            .map(|d| d["requests"].as_i64().unwrap())
            .sum::<i64>(),
        7
    );
    assert_eq!(days.last().unwrap()["records"], 3);

    // The counts agree with the audit trail.
    assert_eq!(app.audit_count("request.create", "success").await, total);
    assert_eq!(app.audit_count("record.create", "success").await, 3);
    assert_eq!(
        app.audit_count("loan.checkout", "success").await,
        st["loans"]["out"].as_i64().unwrap()
    );
    assert_eq!(
        app.audit_count("loan.return", "success").await,
        st["loans"]["returned"].as_i64().unwrap()
    );
    assert_eq!(
        app.audit_count("export.create", "success").await,
        st["exports"]["created"].as_i64().unwrap()
    );
    assert_eq!(app.audit_count("report.stats", "success").await, 1);

    // A supervisor reads them too; an employee, an archivist and an admin do not.
    let (s, sv) = app.get("/api/v1/stats", &sup2).await;
    assert_eq!(s, Status::Ok);
    assert_eq!(sv["requests"], st["requests"]);
    let admin = app.user_token("adm", &[Role::Admin], "").await;
    for t in [&emp, &archivist, &admin] {
        let (s, e) = app.get("/api/v1/stats", t).await;
        assert_eq!(s, Status::Forbidden, "{e}");
    }
    assert!(app.audit_count("report.read", "denied").await >= 3);

    // A period before any of it counts nothing; a period of one day has one bucket.
    let (s, old) = app
        .get("/api/v1/stats?from=2020-01-01&to=2020-12-31", &auditor)
        .await;
    assert_eq!(s, Status::Ok);
    assert_eq!(old["requests"], json!([]));
    assert_eq!(old["bucket"], "week");
    assert_eq!(old["loans"]["out"], 0);
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d")
        .to_string();
    let (_, one) = app
        .get(&format!("/api/v1/stats?from={today}&to={today}"), &auditor)
        .await;
    assert_eq!(one["timeline"].as_array().unwrap().len(), 1);
    assert_eq!(one["timeline"][0]["requests"], 7);

    // Bad periods name the field.
    for (q, field) in [
        ("from=2026-02-30", "from"),
        ("to=tomorrow", "to"),
        ("from=2026-12-01&to=2026-11-01", "from"),
        ("from=1990-01-01&to=2026-01-01", "from"),
    ] {
        let (s, e) = app.get(&format!("/api/v1/stats?{q}"), &auditor).await;
        assert_eq!(s, Status::UnprocessableEntity, "{q}: {e}");
        assert_eq!(e["error"]["field"], field, "{q}: {e}");
    }
}

#[tokio::test]
async fn the_statistics_page_draws_charts_and_exports_csv_and_xlsx_in_the_readers_language() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({
            "category_id": contracts["id"], "title": "Agreement <b>Huaxin</b>",
            "fields": {"company_name": "Huaxin"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let record = r["id"].as_str().unwrap().to_string();
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = Browser::new(&app, "sup", &[Role::Supervisor]).await;
    request(&app, &emp, &record, "lookup").await;

    let html = sup.page("/stats").await;
    assert!(
        html.contains("<svg") && html.contains("role=\"img\""),
        "charts drawn"
    );
    assert!(html.contains("/stats.csv?from=") && html.contains("/stats.xlsx?from="));
    assert!(
        !html.contains("<b>Huaxin"),
        "no titles, and nothing unescaped"
    );

    let zh = Browser::new(&app, "sup2", &[Role::Supervisor])
        .await
        .in_language("zh-CN");
    let html = zh.page("/stats").await;
    assert!(
        html.contains("统计报表") && html.contains("按部门统计申请"),
        "Chinese page"
    );

    // A bad date is shown beside its field and keeps what was typed.
    let bad = sup.get("/stats?from=2026-13-01&to=2026-11-30").await;
    assert_eq!(bad.status, Status::UnprocessableEntity);
    assert!(
        bad.html.contains("2026-13-01") && bad.html.contains("aria-invalid"),
        "{}",
        bad.html
    );

    let csv = sup.get("/stats.csv").await;
    assert_eq!(csv.status, Status::Ok);
    assert!(
        csv.body.starts_with(b"\xEF\xBB\xBF"),
        "a byte-order mark for Excel"
    );
    let text = String::from_utf8(csv.body).unwrap();
    assert!(
        text.contains("Requests,lookup,pending,Retail,,,,1"),
        "{text}"
    );
    assert!(
        text.contains("Records filed,,,,CONTR Contracts,,,1"),
        "{text}"
    );

    let x = zh.get("/stats.xlsx").await;
    assert_eq!(x.status, Status::Ok);
    let bytes = x.body;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert!(
        zip.by_name("xl/worksheets/sheet5.xml").is_ok(),
        "five worksheets"
    );
    let mut wb = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("xl/workbook.xml").unwrap(), &mut wb).unwrap();
    assert!(wb.contains("按部门统计申请"), "{wb}");
    assert_eq!(app.audit_count("report.export", "success").await, 2);

    // Employees neither see the link nor reach the page.
    let e = Browser::new(&app, "emp3", &[Role::Employee]).await;
    assert!(!e.page("/").await.contains("href=\"/stats\""));
    assert_eq!(e.get("/stats").await.status, Status::Forbidden);
    assert_eq!(e.get("/stats.csv").await.status, Status::Forbidden);
}
