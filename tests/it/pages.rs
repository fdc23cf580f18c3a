//! The HTML pages of requests, end to end, driven as a browser would: a session cookie, the
//! CSRF token read from the page, form posts and the redirects they answer with. The record
//! page's request form, "My requests", the approval queue, one request's page, the viewer
//! links a view grant opens, an encrypted export prepared through the form, and the loans
//! desk.

use std::io::{Cursor, Read};

use rocket::http::{ContentType, RawStr, Status};
use serde_json::json;
use strongroom::users::Role;

use crate::archive::upload;
use crate::common::browser::Browser;
use crate::common::TestApp;

const PURPOSE: &str = "customer complaint #4711 needs the signed contract";

/// The text between `start` and the next `end` after it.
fn between<'h>(html: &'h str, start: &str, end: &str) -> Option<&'h str> {
    let rest = &html[html.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// A confidential contract (department Retail) with a PDF and a physical file, its
/// archivist's token, and its id.
async fn record(app: &TestApp) -> (String, String, String) {
    let (archivist, id) = crate::request_pages::record(app).await;
    let (s, f) = upload(app, &archivist, &id, "contract.pdf", &crate::viewer::pdf(2)).await;
    assert_eq!(s, Status::Created, "{f}");
    (archivist, id, f["id"].as_str().unwrap().to_string())
}

/// Files a request through the record page's form; returns the request's id.
async fn file_request(b: &Browser<'_>, record: &str, kind: &str, hours: &str) -> String {
    let page = format!("/records/{record}");
    let to = b
        .post_ok(
            &page,
            &format!("{page}/requests"),
            &[
                ("kind", kind),
                ("purpose", PURPOSE),
                ("duration_hours", hours),
            ],
        )
        .await;
    let id = between(&to, "/requests/", "?notice=filed")
        .unwrap_or_else(|| panic!("redirect to the request page: {to}"))
        .to_string();
    assert!(b.page(&to).await.contains("Your request has been filed."));
    id
}

async fn count_requests(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM access_requests")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_filed_on_the_record_page_is_approved_in_the_queue_and_opens_the_viewer() {
    let app = TestApp::new().await;
    let (_, rec, file) = record(&app).await;
    let emp = Browser::new(&app, "emp", &[Role::Employee]).await;
    let sup1 = Browser::new(&app, "sup1", &[Role::Supervisor]).await;
    let sup2 = Browser::new(&app, "sup2", &[Role::Supervisor]).await;
    let page = format!("/records/{rec}");

    // The form, with what each kind needs for this (confidential) record.
    let html = emp.page(&page).await;
    assert!(html.contains("action=\"/records/") && html.contains("name=\"purpose\""));
    assert!(html.contains("minlength=\"6\""), "{html}");
    assert!(
        html.contains("Needs 2 approvals by a supervisor"),
        "export: {html}"
    );
    assert!(!html.contains("Open in viewer"), "no view grant yet");
    assert!(html.contains("href=\"/requests\">My requests"));
    assert!(!html.contains("href=\"/approvals\"") && !html.contains("href=\"/loans\""));

    // Too short a purpose: the form again, with the message and what was typed; nothing filed.
    let a = emp
        .post(
            &page,
            &format!("{page}/requests"),
            &[
                ("kind", "view"),
                ("purpose", "need it"),
                ("duration_hours", "4"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity, "{}", a.html);
    assert!(
        a.html.contains("id=\"e-ask-purpose\"")
            && a.html
                .contains("say why you need it: at least 6 Chinese characters or 15 letters"),
        "{}",
        a.html
    );
    assert!(a.html.contains(">need it</textarea>") && a.html.contains("value=\"4\""));
    // A duration that is not a number is refused the same way.
    let a = emp
        .post(
            &page,
            &format!("{page}/requests"),
            &[
                ("kind", "view"),
                ("purpose", PURPOSE),
                ("duration_hours", "a day"),
            ],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(a
        .html
        .contains("id=\"e-ask-duration_hours\">enter a whole number of hours"));
    // A form without the session's token is refused outright.
    let res = app
        .client
        .post(format!("{page}/requests"))
        .cookie(emp.session_cookie())
        .header(ContentType::Form)
        .body(format!(
            "csrf=forged&kind=view&purpose={}&duration_hours=4",
            RawStr::new(PURPOSE).percent_encode()
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(count_requests(&app).await, 0);

    let id = file_request(&emp, &rec, "view", "4").await;
    let mine = emp.page("/requests").await;
    assert!(mine.contains("CONTR-") && mine.contains(PURPOSE), "{mine}");
    assert!(mine.contains("state-pending\">pending</strong>") && mine.contains("0 of 1"));
    assert!(mine.contains(&format!("action=\"/requests/{id}/cancel\"")));
    // The record page lists it too.
    assert!(emp
        .page(&page)
        .await
        .contains(&format!("href=\"/requests/{id}\"")));
    // The requester is offered no decision on their own request.
    let own = emp.page(&format!("/requests/{id}")).await;
    assert!(!own.contains("/approve\"") && !own.contains("Revoke"));

    // The queue: the count, the record, the requester, the purpose.
    let queue = sup1.page("/approvals").await;
    assert!(
        queue.contains("href=\"/approvals\""),
        "supervisors see the link"
    );
    assert!(
        queue.contains("1 request waits for your decision."),
        "{queue}"
    );
    assert!(queue.contains("Framework agreement") && queue.contains("emp,"));
    assert!(queue.contains(PURPOSE) && queue.contains("view, for 4 hours"));
    assert!(queue.contains("0 of 1"));
    // A rejection needs a reason: the queue again, with the message by the request.
    let a = sup2
        .post(
            "/approvals",
            &format!("/requests/{id}/reject"),
            &[("comment", "  ")],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(a.html.contains("say why the request is rejected"));
    assert!(a.html.contains("card failed"), "{}", a.html);
    // Approved through the form: back to the queue, with a confirmation and nothing waiting.
    let (to, queue) = sup1
        .post_follow(
            "/approvals",
            &format!("/requests/{id}/approve"),
            &[("comment", "seen the complaint")],
        )
        .await;
    assert_eq!(to, "/approvals");
    assert!(
        queue.contains("You approved the view request of emp for CONTR-")
            && queue.contains("1 of 1 approvals, now approved."),
        "{queue}"
    );
    assert!(queue.contains("Nothing waits for your decision."));
    assert_eq!(app.audit_count("request.approve", "success").await, 1);
    assert_eq!(app.audit_count("request.reject", "success").await, 0);

    // The employee now holds the grant, and its links open the viewer.
    let grant: uuid::Uuid = sqlx::query_scalar("SELECT id FROM grants WHERE request_id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let link = format!("/view/{grant}/files/{file}");
    let mine = emp.page("/requests").await;
    assert!(mine.contains("state-approved\">approved</strong>") && mine.contains("1 of 1"));
    assert!(mine.contains("active<br><small>until"), "{mine}");
    assert!(mine.contains(&format!("href=\"{link}\">Open contract.pdf in the viewer")));
    assert!(!mine.contains(&format!("action=\"/requests/{id}/cancel\"")));
    let html = emp.page(&page).await;
    assert!(
        html.contains(&format!("href=\"{link}\">Open in viewer")),
        "{html}"
    );
    let viewer = emp.page(&link).await;
    assert!(
        viewer.contains(&format!("{link}/pages/1?zoom=100")),
        "{viewer}"
    );
    // The link is the employee's alone.
    assert_eq!(sup1.get(&link).await.status, Status::NotFound);
    let request = emp.page(&format!("/requests/{id}")).await;
    assert!(request.contains("seen the complaint") && request.contains("sup1"));
}

#[tokio::test]
async fn pending_requests_are_cancelled_and_grants_revoked_through_the_forms() {
    let app = TestApp::new().await;
    let (_, rec, file) = record(&app).await;
    let emp = Browser::new(&app, "emp", &[Role::Employee]).await;
    let sup = Browser::new(&app, "sup", &[Role::Supervisor]).await;

    let lookup = file_request(&emp, &rec, "lookup", "8").await;
    let (to, mine) = emp
        .post_follow("/requests", &format!("/requests/{lookup}/cancel"), &[])
        .await;
    assert_eq!(to, "/requests");
    assert!(
        mine.contains("Your lookup request for CONTR-") && mine.contains("is cancelled."),
        "{mine}"
    );
    // Cancelling twice: the page again, with why.
    let a = emp
        .post("/requests", &format!("/requests/{lookup}/cancel"), &[])
        .await;
    assert_eq!(a.status, Status::Conflict);
    assert!(
        a.html.contains("the request has been cancelled"),
        "{}",
        a.html
    );
    assert_eq!(app.audit_count("request.cancel", "success").await, 1);

    // Approved from the request's own page, then revoked there by a supervisor.
    let view = file_request(&emp, &rec, "view", "4").await;
    let page = format!("/requests/{view}");
    assert!(sup.page(&page).await.contains("Your decision"));
    let (to, html) = sup
        .post_follow(
            &page,
            &format!("{page}/approve"),
            &[("comment", ""), ("back", "request")],
        )
        .await;
    assert_eq!(to, page);
    assert!(
        html.contains("You approved the view request of emp"),
        "{html}"
    );
    assert!(!html.contains("Your decision</h3>"), "decided once");
    assert!(html.contains("Revoke the grant"), "{html}");
    let grant: uuid::Uuid = sqlx::query_scalar("SELECT id FROM grants WHERE request_id = $1::uuid")
        .bind(&view)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let link = format!("/view/{grant}/files/{file}");
    assert_eq!(emp.get(&link).await.status, Status::Ok);
    // The employee is offered no revocation.
    assert!(!emp.page(&page).await.contains("Revoke the grant"));
    let a = sup
        .post(&page, &format!("{page}/revoke"), &[("reason", "no")])
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(a.html.contains("say why the grant is revoked"));
    let (_, html) = sup
        .post_follow(
            &page,
            &format!("{page}/revoke"),
            &[("reason", "complaint withdrawn")],
        )
        .await;
    assert!(html.contains("The view grant of emp on CONTR-"), "{html}");
    assert_eq!(app.audit_count("grant.revoke", "success").await, 1);
    // At once: no link on the pages, and the viewer refuses.
    let mine = emp.page("/requests").await;
    assert!(mine.contains("revoked<br><small>was valid until") && !mine.contains(&link));
    assert!(!emp
        .page(&format!("/records/{rec}"))
        .await
        .contains("Open in viewer"));
    assert_eq!(emp.get(&link).await.status, Status::Forbidden);
}

#[tokio::test]
async fn an_encrypted_export_is_prepared_through_the_form_and_its_password_shown_once() {
    let app = TestApp::new().await;
    let (_, rec, _) = record(&app).await;
    let emp = Browser::new(&app, "emp", &[Role::Employee]).await;
    let sup1 = Browser::new(&app, "sup1", &[Role::Supervisor]).await;
    let sup2 = Browser::new(&app, "sup2", &[Role::Supervisor]).await;
    let id = file_request(&emp, &rec, "export", "4").await;
    for sup in [&sup1, &sup2] {
        sup.post_ok(
            "/approvals",
            &format!("/requests/{id}/approve"),
            &[("comment", "court order seen")],
        )
        .await;
        let queue = sup.page("/approvals").await;
        assert!(queue.contains("Nothing waits for your decision."));
    }
    let mine = emp.page("/requests").await;
    assert!(mine.contains("2 of 2") && mine.contains("state-approved\">approved</strong>"));
    assert!(mine.contains(&format!("action=\"/requests/{id}/export\"")));
    assert!(mine.contains("name=\"encrypt\""));

    let a = emp
        .post(
            "/requests",
            &format!("/requests/{id}/export"),
            &[("encrypt", "true")],
        )
        .await;
    assert_eq!(a.status, Status::Ok, "{}", a.html);
    assert_eq!(a.cache_control.as_deref(), Some("no-store"));
    assert!(a.html.contains("shown only this once") && a.html.contains("will not be shown again"));
    let password = between(&a.html, "<code class=\"password\">", "</code>")
        .unwrap()
        .to_string();
    assert_eq!(password.len(), 24, "{password}");
    let download = format!("/exports/{id}/download");
    assert!(a.html.contains(&format!("href=\"{download}\"")));
    // Shown once: not on the requests page, not on the request page.
    for path in ["/requests".to_string(), format!("/requests/{id}")] {
        assert!(!emp.page(&path).await.contains(&password), "{path}");
    }
    // Someone else cannot prepare it.
    let a = sup1
        .post(
            "/approvals",
            &format!("/requests/{id}/export"),
            &[("encrypt", "true")],
        )
        .await;
    assert_eq!(a.status, Status::NotFound);

    // The link works once, with the session cookie, and the zip opens with the password.
    let res = app
        .client
        .get(download.clone())
        .cookie(emp.session_cookie())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(
        res.headers().get_one("Content-Type"),
        Some("application/zip")
    );
    let body = res.into_bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(Cursor::new(body)).unwrap();
    let mut manifest = Vec::new();
    zip.by_name_decrypt("manifest.json", password.as_bytes())
        .unwrap()
        .read_to_end(&mut manifest)
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["request"]["purpose"], PURPOSE);
    assert!(zip
        .by_name_decrypt("manifest.json", b"wrong password")
        .is_err());
    let again = app
        .client
        .get(download)
        .cookie(emp.session_cookie())
        .dispatch()
        .await;
    assert_eq!(again.status(), Status::Conflict);
    let page = again.into_string().await.unwrap_or_default();
    assert!(
        page.contains("<html") && page.contains("already been downloaded"),
        "{page}"
    );
    // Preparing again after the download: My requests again, with why.
    let a = emp
        .post("/requests", &format!("/requests/{id}/export"), &[])
        .await;
    assert_eq!(a.status, Status::Conflict);
    assert!(a.html.contains("already been downloaded"), "{}", a.html);
    assert_eq!(app.audit_count("export.download", "success").await, 1);
    assert!(!crate::common::captured_logs().contains(&password));
}

#[tokio::test]
async fn the_loans_desk_hands_out_and_takes_back_through_its_forms() {
    let app = TestApp::new().await;
    let (archivist, rec, _) = record(&app).await;
    let desk = Browser::with_token(&app, &archivist);
    let emp = Browser::new(&app, "emp", &[Role::Employee]).await;
    let sup = Browser::new(&app, "sup", &[Role::Supervisor]).await;
    let id = file_request(&emp, &rec, "borrow", "96").await;
    sup.post_ok(
        "/approvals",
        &format!("/requests/{id}/approve"),
        &[("comment", "")],
    )
    .await;
    let mine = emp.page("/requests").await;
    assert!(
        mine.contains(&format!("request number: <code>{id}</code>")),
        "{mine}"
    );
    // The desk is the archivists': the service refuses anyone else.
    assert_eq!(emp.get("/loans").await.status, Status::Forbidden);

    let html = desk.page("/loans").await;
    assert!(html.contains("href=\"/loans\">Loans desk"));
    assert!(html.contains("No file is out on loan."));
    // The approved request waits under "Ready to hand out", with its own checkout form.
    assert!(
        html.contains(&format!("name=\"request\" value=\"{id}\"")),
        "{html}"
    );
    assert!(!html.contains("No approved loan request is waiting."));
    assert!(html.contains("href=\"/loans/register.csv\""));
    assert!(html.contains("href=\"/loans/register.xlsx\""));
    // A due date past the grant: the form again, keeping the request number.
    let a = desk
        .post(
            "/loans",
            "/loans",
            &[("request", &id), ("due_date", "2999-01-01")],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(a.html.contains("must be on or before"), "{}", a.html);
    assert!(
        a.html
            .contains(&format!("id=\"f-due-{id}\" aria-invalid=\"true\""))
            || a.html.contains("id=\"f-due_date\" aria-invalid=\"true\""),
        "{}",
        a.html
    );
    assert!(a.html.contains(&format!("value=\"{id}\"")));
    let a = desk
        .post(
            "/loans",
            "/loans",
            &[("request", "B0042"), ("due_date", "2999-01-01")],
        )
        .await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(a.html.contains("enter the request number"));
    assert!(
        a.html.contains("id=\"f-request\" aria-invalid=\"true\""),
        "{}",
        a.html
    );

    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let (_, html) = desk
        .post_follow(
            "/loans",
            "/loans",
            &[("request", &id), ("due_date", &tomorrow)],
        )
        .await;
    let due = chrono::NaiveDate::parse_from_str(&tomorrow, "%Y-%m-%d")
        .unwrap()
        .format("%-d %b %Y")
        .to_string();
    assert!(
        html.contains(&format!("lent to emp, due back on {due}")),
        "{html}"
    );
    assert!(html.contains(&format!("action=\"/loans/{id}/return\"")));
    assert!(!html.contains("class=\"overdue\""));
    assert!(html.contains("No approved loan request is waiting."));
    // Overdue loans stand out.
    sqlx::query("UPDATE loans SET due_date = current_date - 2")
        .execute(&app.db)
        .await
        .unwrap();
    let html = desk.page("/loans").await;
    assert!(
        html.contains("class=\"overdue\">") && html.contains("1 overdue"),
        "{html}"
    );

    // Taking it back needs a condition note.
    let ret = format!("/loans/{id}/return");
    let a = desk.post("/loans", &ret, &[("condition", " ")]).await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(a.html.contains("describe the file"));
    let (_, html) = desk
        .post_follow("/loans", &ret, &[("condition", "good, one staple loose")])
        .await;
    assert!(html.contains("taken back from emp"), "{html}");
    assert!(html.contains("No file is out on loan.") && html.contains("one staple loose"));
    assert_eq!(app.audit_count("loan.checkout", "success").await, 1);
    assert_eq!(app.audit_count("loan.return", "success").await, 1);
    // The register the page links to answers the desk's session.
    let res = app
        .client
        .get("/api/v1/loans/register.csv")
        .cookie(desk.session_cookie())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let csv = res.into_string().await.unwrap();
    assert!(
        csv.contains("emp") && csv.contains("one staple loose"),
        "{csv}"
    );
}

#[tokio::test]
async fn supervisors_review_active_grants_they_may_see_and_revoke_them_there() {
    let app = TestApp::new().await;
    let (_, rec, _) = record(&app).await;
    let emp = Browser::new(&app, "emp", &[Role::Employee]).await;
    let sup = Browser::new(&app, "sup", &[Role::Supervisor]).await;
    let id = file_request(&emp, &rec, "lookup", "4").await;
    sup.post_ok(
        "/approvals",
        &format!("/requests/{id}/approve"),
        &[("comment", "")],
    )
    .await;
    let grant: String =
        sqlx::query_scalar("SELECT id::text FROM grants WHERE request_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    // The JSON list: the supervisor sees it; a supervisor of another department does not
    // learn of the confidential record; an employee may not list grants at all.
    let (s, list) = app.get("/api/v1/grants", sup.token()).await;
    assert_eq!(s, Status::Ok, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], grant.as_str());
    assert_eq!(list[0]["grantee"], "emp");
    assert_eq!(list[0]["purpose"], PURPOSE);
    let outsider = app
        .user_token("claims_sup", &[Role::Supervisor], "Claims")
        .await;
    let (s, list) = app.get("/api/v1/grants", &outsider).await;
    assert_eq!((s, list), (Status::Ok, json!([])));
    let (s, _) = app.get("/api/v1/grants", emp.token()).await;
    assert_eq!(s, Status::Forbidden);
    // The page lists it with a revoke form; a reason is required.
    let html = sup.page("/grants").await;
    assert!(html.contains("href=\"/grants\">Active grants"));
    let action = format!("/grants/{grant}/revoke");
    assert!(html.contains(&format!("action=\"{action}\"")), "{html}");
    let a = sup.post("/grants", &action, &[("reason", "no")]).await;
    assert_eq!(a.status, Status::UnprocessableEntity);
    assert!(
        a.html.contains("say why the grant is revoked"),
        "{}",
        a.html
    );
    let (_, html) = sup
        .post_follow("/grants", &action, &[("reason", "complaint closed")])
        .await;
    assert!(html.contains("The lookup grant of emp on CONTR-"), "{html}");
    assert!(html.contains("No grant is in force"));
    // Revoked at once: the record is masked again for the employee.
    let (_, r) = app
        .get(&format!("/api/v1/records/{rec}"), emp.token())
        .await;
    assert_eq!(crate::archive::field(&r, "phone")["value"], "138****5678");
    assert_eq!(
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM audit_events WHERE action = 'grant.revoke' AND detail->>'reason' = 'complaint closed'"
        )
        .fetch_one(&app.db)
        .await
        .unwrap(),
        1
    );
}
