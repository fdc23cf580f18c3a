//! Role home pages list the work waiting (supervisor's queue and navigation count,
//! archivist's loans due and files to hand out, employee's requests and grants in force,
//! auditor's recent events and chain status, administrator's accounts); the audit browser
//! filters by person, department, record, action and day, folds page views into one row
//! per viewing session, exports CSV safely, and checks the chain on demand.

use rocket::http::{ContentType, Cookie, RawStr, Status};
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::audit_trail::tamper;
use crate::common::browser::{Answer, Browser};
use crate::common::TestApp;
use crate::viewer::pdf;

const PURPOSE: &str = "customer complaint #4711 needs the signed contract";

async fn get_as(app: &TestApp, token: &str, path: &str, lang: Option<&str>) -> Answer {
    Browser::with_token(app, token).get_in(path, lang).await
}

async fn page(app: &TestApp, token: &str, path: &str) -> String {
    Browser::with_token(app, token).page(path).await
}

/// The rows of the audit browser's table (each from its `<tr class=` on).
fn rows(html: &str) -> Vec<String> {
    let Some(body) = html.split("<table class=\"audit\">").nth(1) else {
        return Vec::new();
    };
    let body = body.split("</tbody>").next().unwrap_or("");
    body.split("<tr class=\"")
        .skip(1)
        .map(str::to_string)
        .collect()
}

fn badge(html: &str) -> Option<String> {
    let rest = html.split("<span class=\"badge\"").nth(1)?;
    let n = rest.split('>').nth(1)?.split('<').next()?;
    Some(n.to_string())
}

async fn new_record(app: &TestApp, archivist: &str, contracts: &Value, title: &str) -> Value {
    let (s, r) = app
        .post(
            "/api/v1/records",
            archivist,
            json!({"category_id": contracts["id"], "title": title,
                   "fields": {"company_name": "Huaxin"},
                   "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r
}

async fn ask(app: &TestApp, token: &str, record: &Value, kind: &str) -> String {
    let (s, r) = app
        .post(
            "/api/v1/requests",
            token,
            json!({"record_id": record["id"], "kind": kind, "purpose": PURPOSE,
                   "duration_hours": if kind == "borrow" { 96 } else { 8 }}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

async fn approve(app: &TestApp, token: &str, id: &str) -> Value {
    let (s, r) = app
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            token,
            json!({"comment": "fine"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    r
}

#[tokio::test]
async fn each_role_sees_its_waiting_work_at_home() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let lent = new_record(&app, &archivist, &contracts, "Lease of the Nanjing branch").await;
    let to_hand = new_record(&app, &archivist, &contracts, "Deed of the Wuxi branch").await;
    let viewed = new_record(&app, &archivist, &contracts, "Framework agreement").await;
    let (s, f) = upload(
        &app,
        &archivist,
        viewed["id"].as_str().unwrap(),
        "contract.pdf",
        &pdf(2),
    )
    .await;
    assert_eq!(s, Status::Created, "{f}");
    let file = f["id"].as_str().unwrap().to_string();
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let other_sup = app.user_token("sup9", &[Role::Supervisor], "Claims").await;

    // A loan out and due tomorrow; an approved loan not handed out yet.
    let borrow = ask(&app, &emp, &lent, "borrow").await;
    approve(&app, &sup, &borrow).await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let (s, l) = app
        .post(
            &format!("/api/v1/loans/{borrow}/checkout"),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Created, "{l}");
    let ready = ask(&app, &emp, &to_hand, "borrow").await;
    approve(&app, &sup, &ready).await;
    // An active view grant; a pending request.
    let view = ask(&app, &emp, &viewed, "view").await;
    let grant = approve(&app, &sup, &view).await["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = ask(&app, &emp, &lent, "lookup").await;

    // Supervisor: the queue with requester, kind, purpose and a link to decide; the count
    // in the navigation.
    let html = page(&app, &sup, "/").await;
    assert!(html.contains("id=\"home-approvals\""), "{html}");
    assert!(html.contains(&format!("/requests/{pending}")), "{html}");
    assert!(
        html.contains(PURPOSE) && html.contains("<td>emp</td>"),
        "{html}"
    );
    assert!(
        html.contains("One request waits for your decision"),
        "{html}"
    );
    assert_eq!(badge(&html).as_deref(), Some("1"), "navigation count");
    assert!(!html.contains("id=\"home-loans\"") && !html.contains("id=\"home-audit\""));
    // The count is on every page, and follows the queue.
    assert_eq!(
        badge(&page(&app, &sup, "/search").await).as_deref(),
        Some("1")
    );
    let second = ask(&app, &emp, &to_hand, "view").await;
    assert_eq!(badge(&page(&app, &sup, "/").await).as_deref(), Some("2"));
    approve(&app, &sup, &second).await;
    assert_eq!(badge(&page(&app, &sup, "/").await).as_deref(), Some("1"));
    // Another department's supervisor may not decide: no count, nothing listed.
    let html = page(&app, &other_sup, "/").await;
    assert_eq!(badge(&html), None, "{html}");
    assert!(!html.contains(&format!("/requests/{pending}")));

    // Archivist: the loan due tomorrow and the file to hand out.
    let html = page(&app, &archivist, "/").await;
    assert!(html.contains("id=\"home-loans\""), "{html}");
    let due = html.split("Loans due and overdue").nth(1).unwrap_or("");
    assert!(due.contains(lent["reference"].as_str().unwrap()), "{html}");
    let to_hand_out = html
        .split("Files to hand out")
        .nth(1)
        .unwrap_or("")
        .split("Loans due and overdue")
        .next()
        .unwrap();
    assert!(
        to_hand_out.contains(to_hand["reference"].as_str().unwrap()),
        "{html}"
    );
    assert!(!to_hand_out.contains(lent["reference"].as_str().unwrap()));

    // Employee: own pending and approved requests, the grant in force with the time left
    // and a link into the viewer.
    let html = page(&app, &emp, "/").await;
    assert!(html.contains("id=\"home-mine\""), "{html}");
    assert!(html.contains(&format!("/requests/{pending}")), "{html}");
    assert!(html.contains("Waiting for approval"), "{html}");
    assert!(
        html.contains(&format!("/view/{grant}/files/{file}")),
        "{html}"
    );
    assert!(html.contains(" left"), "{html}");
    assert_eq!(badge(&html), None);
    assert!(!html.contains("id=\"home-approvals\""));

    // Auditor: recent events without page views, the chain and a check button.
    let (_, auditor) = app.login_as(Role::Auditor).await;
    strongroom::audit::sequence_all(&app.db).await.unwrap();
    let html = page(&app, &auditor, "/").await;
    assert!(html.contains("id=\"home-audit\""), "{html}");
    assert!(html.contains("The chain holds"), "{html}");
    assert!(html.contains("action=\"/audit/verify\""), "{html}");
    assert!(html.contains("Request approved"), "{html}");

    // Administrator and a person with several roles: each section.
    let multi = app
        .user_token(
            "multi",
            &[Role::Employee, Role::Auditor, Role::Admin, Role::Archivist],
            "Retail",
        )
        .await;
    let html = page(&app, &multi, "/").await;
    for section in ["home-mine", "home-audit", "home-admin", "home-loans"] {
        assert!(
            html.contains(&format!("id=\"{section}\"")),
            "{section}: {html}"
        );
    }
    assert!(html.contains("accounts,"), "{html}");
    assert!(html.contains("No integrity scrub has run yet."), "{html}");
}

#[tokio::test]
async fn home_and_audit_pages_in_chinese() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let record = new_record(&app, &archivist, &contracts, "Framework agreement").await;
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    ask(&app, &emp, &record, "view").await;
    let (_, auditor) = app.login_as(Role::Auditor).await;

    let a = get_as(&app, &sup, "/", Some("zh-CN")).await;
    assert_eq!(a.status, Status::Ok);
    let html = a.html;
    assert!(html.contains("<html lang=\"zh-CN\">"), "{html}");
    assert!(
        html.contains("待您审批的申请") && html.contains("调阅"),
        "{html}"
    );
    let a = get_as(&app, &auditor, "/audit", Some("zh-CN")).await;
    assert_eq!(a.status, Status::Ok);
    let html = a.html;
    assert!(html.contains("<html lang=\"zh-CN\">"), "{html}");
    assert!(
        html.contains("审计日志") && html.contains("提交申请"),
        "{html}"
    );
    let a = get_as(&app, &auditor, "/", Some("zh-CN")).await;
    assert!(a.html.contains("审计链共有"), "{}", a.html);
    // A bad date is answered next to its field, in Chinese.
    let a = get_as(&app, &auditor, "/audit?from=2026-13-45", Some("zh-CN")).await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(a.html.contains("须为日期"), "{}", a.html);
}

#[tokio::test]
async fn the_audit_browser_filters_by_person_department_record_action_and_day() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let a = new_record(&app, &archivist, &contracts, "Lease A").await;
    let b = new_record(&app, &archivist, &contracts, "Lease B").await;
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    app.user_token("claims.li", &[Role::Employee], "Claims")
        .await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let ra = ask(&app, &emp, &a, "view").await;
    approve(&app, &sup, &ra).await;
    ask(&app, &emp, &b, "view").await;
    let (_, auditor) = app.login_as(Role::Auditor).await;

    // Person.
    let html = page(&app, &auditor, "/audit?person=emp").await;
    let r = rows(&html);
    assert!(!r.is_empty(), "{html}");
    assert!(r.iter().all(|row| row.contains("<td>emp</td>")), "{html}");
    // Department: only the Claims employee's sign-in.
    let html = page(&app, &auditor, "/audit?department=Claims").await;
    let r = rows(&html);
    assert_eq!(r.len(), 1, "{html}");
    assert!(r[0].contains("<td>claims.li</td>") && r[0].contains("title=\"auth.login\""));
    // Record, by reference and by id: its events only.
    let (ida, idb) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    for key in [a["reference"].as_str().unwrap(), ida] {
        let html = page(
            &app,
            &auditor,
            &format!("/audit?record={}", RawStr::new(key).percent_encode()),
        )
        .await;
        let r = rows(&html);
        assert!(r.len() >= 4, "create, request, approve, grant: {html}");
        assert!(!html.contains(idb), "{html}");
        assert!(r
            .iter()
            .any(|row| row.contains("title=\"request.approve\"")));
    }
    // Action.
    let html = page(&app, &auditor, "/audit?action=request.create").await;
    let r = rows(&html);
    assert_eq!(r.len(), 2, "{html}");
    assert!(r.iter().all(|row| row.contains("title=\"request.create\"")));
    assert!(html.contains("<option value=\"request.create\" selected>"));
    // Days: everything lies between yesterday and tomorrow, nothing after tomorrow or
    // before yesterday.
    let day = |d: i64| {
        (chrono::Utc::now() + chrono::Duration::days(d))
            .format("%Y-%m-%d")
            .to_string()
    };
    let all = rows(&page(&app, &auditor, "/audit?action=request.create").await).len();
    let html = page(
        &app,
        &auditor,
        &format!(
            "/audit?action=request.create&from={}&to={}",
            day(-1),
            day(1)
        ),
    )
    .await;
    assert_eq!(rows(&html).len(), all, "{html}");
    let html = page(&app, &auditor, &format!("/audit?from={}", day(2))).await;
    assert!(rows(&html).is_empty(), "{html}");
    assert!(html.contains("No event matches."));
    let html = page(&app, &auditor, &format!("/audit?to={}", day(-2))).await;
    assert!(rows(&html).is_empty(), "{html}");
    // Bad input: a clear message next to the field, the values kept.
    for (q, field) in [
        ("action=record.nonsense", "action"),
        ("record=NO-SUCH-REF", "record"),
        ("from=2026-11-30&to=2026-11-01", "to"),
        ("from=yesterday", "from"),
    ] {
        let a = get_as(&app, &auditor, &format!("/audit?{q}"), None).await;
        assert_eq!(a.status, Status::UnprocessableEntity, "{q}");
        let html = a.html;
        assert!(html.contains(&format!("id=\"e-{field}\"")), "{q}: {html}");
        assert!(html.contains("aria-invalid=\"true\""), "{q}");
    }
    let a = get_as(&app, &auditor, "/audit?record=NO-SUCH-REF", None).await;
    assert!(a.html.contains("value=\"NO-SUCH-REF\""));
    // Not for others.
    let a = get_as(&app, &emp, "/audit", None).await;
    assert_eq!(a.status, Status::Forbidden);
    // Paging: 50 rows a page.
    for _ in 0..30 {
        app.get("/api/v1/records?q=lease", &emp).await;
    }
    let html = page(&app, &auditor, "/audit").await;
    assert_eq!(rows(&html).len(), 50, "{html}");
    assert!(html.contains("rel=\"next\""), "{html}");
    let html = page(&app, &auditor, "/audit?page=2").await;
    assert!(!rows(&html).is_empty() && html.contains("rel=\"prev\""));
}

#[tokio::test]
async fn ten_page_views_are_one_viewing_session_row() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let record = new_record(&app, &archivist, &contracts, "Framework agreement").await;
    let (s, f) = upload(
        &app,
        &archivist,
        record["id"].as_str().unwrap(),
        "contract.pdf",
        &pdf(10),
    )
    .await;
    assert_eq!(s, Status::Created, "{f}");
    let file = f["id"].as_str().unwrap().to_string();
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let view = ask(&app, &emp, &record, "view").await;
    let grant = approve(&app, &sup, &view).await["grant"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for p in 1..=10 {
        let a = get_as(
            &app,
            &emp,
            &format!("/view/{grant}/files/{file}/pages/{p}"),
            None,
        )
        .await;
        assert_eq!(a.status, Status::Ok, "page {p}");
    }
    let (_, auditor) = app.login_as(Role::Auditor).await;
    assert_eq!(app.audit_count("file.view.page", "success").await, 10);

    let html = page(&app, &auditor, "/audit").await;
    let sessions: Vec<String> = rows(&html)
        .into_iter()
        .filter(|r| r.contains("title=\"file.view.page\""))
        .collect();
    assert_eq!(sessions.len(), 1, "{html}");
    assert!(
        sessions[0].contains("Pages 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"),
        "{}",
        sessions[0]
    );
    assert!(sessions[0].contains("10 page views") && sessions[0].contains("<td>emp</td>"));
    assert!(sessions[0].contains(&file) && sessions[0].contains(&grant));
    // The action filter shows the one session too.
    let html = page(&app, &auditor, "/audit?action=file.view.page").await;
    assert_eq!(rows(&html).len(), 1, "{html}");
    // The CSV has every page view.
    let a = get_as(
        &app,
        &auditor,
        "/audit/export.csv?action=file.view.page",
        None,
    )
    .await;
    let csv = String::from_utf8(a.body).unwrap();
    assert_eq!(csv.lines().count(), 11, "{csv}");
}

#[tokio::test]
async fn the_csv_export_has_a_bom_and_no_formulas() {
    let app = TestApp::new().await;
    let (_, auditor) = app.login_as(Role::Auditor).await;
    // A sign-in attempt under a name that a spreadsheet would run.
    let (s, _) = app
        .login("=HYPERLINK(\"http://x\",\"y\")", "not the password")
        .await;
    assert_eq!(s, Status::Unauthorized);
    let (s, _) = app.login("@SUM(1+1)", "not the password").await;
    assert_eq!(s, Status::Unauthorized);

    let a = get_as(&app, &auditor, "/audit/export.csv?action=auth.login", None).await;
    assert_eq!(a.status, Status::Ok);
    assert!(
        a.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("text/csv"),
        "{:?}",
        a.content_type
    );
    assert_eq!(&a.body[..3], b"\xEF\xBB\xBF", "UTF-8 byte-order mark");
    let csv = String::from_utf8(a.body[3..].to_vec()).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("#,Time,Person,Action"));
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""),
        "{csv}"
    );
    assert!(csv.contains(",'@SUM(1+1),"), "{csv}");
    for line in csv.lines() {
        for cell in line.split(',') {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell} in {line}");
        }
    }
    // Chinese headers for a Chinese reader; the export itself is audited.
    let a = get_as(&app, &auditor, "/audit/export.csv", Some("zh-CN")).await;
    let csv = String::from_utf8(a.body[3..].to_vec()).unwrap();
    assert!(csv.starts_with("序号,时间,人员,操作"), "{csv}");
    assert_eq!(app.audit_count("audit.export", "success").await, 2);
    // Refused to others, and the refusal audited.
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let a = get_as(&app, &emp, "/audit/export.csv", None).await;
    assert_eq!(a.status, Status::Forbidden);
    assert!(app.audit_count("audit.read", "denied").await >= 1);
}

/// Runs the chain check from the audit browser's form; the page it returns to, with its
/// confirmation (the cookie the post set, carried to the next page).
async fn verify_now(app: &TestApp, token: &str) -> String {
    let (to, html) = Browser::with_token(app, token)
        .post_follow("/audit", "/audit/verify", &[])
        .await;
    assert_eq!(to, "/audit");
    html
}

#[tokio::test]
async fn verify_now_shows_ok_then_broken() {
    let app = TestApp::new().await;
    let (_, auditor) = app.login_as(Role::Auditor).await;
    for _ in 0..3 {
        app.login_as(Role::Employee).await;
    }
    strongroom::audit::sequence_all(&app.db).await.unwrap();
    let html = verify_now(&app, &auditor).await;
    assert!(
        html.contains("Audit chain intact: verified up to event"),
        "{html}"
    );
    assert_eq!(app.audit_count("audit.verify", "success").await, 1);
    // Without the token, nothing is checked.
    let res = app
        .client
        .post("/audit/verify")
        .cookie(Cookie::new(
            strongroom::auth::SESSION_COOKIE,
            auditor.clone(),
        ))
        .header(ContentType::Form)
        .body("csrf=forged")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(app.audit_count("audit.verify", "success").await, 1);
    // The home page names the last check.
    let html = page(&app, &auditor, "/").await;
    assert!(html.contains("Last check: intact up to event"), "{html}");

    // A superuser rewrites the second event: the check names it.
    let id: uuid::Uuid = sqlx::query_scalar("SELECT event_id FROM audit_chain WHERE seq = 2")
        .fetch_one(&app.db)
        .await
        .unwrap();
    tamper(
        &app,
        &[&format!(
            "UPDATE audit_events SET detail = '{{\"forged\": true}}' WHERE id = '{id}'"
        )],
    )
    .await;
    let html = verify_now(&app, &auditor).await;
    assert!(html.contains("Audit chain BROKEN at event 2."), "{html}");
    assert_eq!(app.audit_count("audit.verify", "failure").await, 1);
    let html = page(&app, &auditor, "/").await;
    assert!(html.contains("Last check: BROKEN at event 2"), "{html}");
    // Others may not run it.
    let emp = app.user_token("emp", &[Role::Employee], "Retail").await;
    let a = Browser::with_token(&app, &emp)
        .post("/", "/audit/verify", &[])
        .await;
    assert_eq!(a.status, Status::Forbidden);
}
