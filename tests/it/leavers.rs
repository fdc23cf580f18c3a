//! Leavers: disabling an account settles what the person holds in one unit of work: the
//! pending request cancelled (saying why), the grants in force revoked (and not restored
//! when the account is enabled again), the loan still out flagged to the loans desk with
//! the holder's name until the file is back, the handover note recorded; each settled item
//! audited and the chain intact. Also the page that shows the holdings first, and the last
//! sign-in.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::audit::{self, Verification};
use strongroom::users::Role;

use crate::archive::setup;
use crate::common::browser::Browser;
use crate::common::{TestApp, PASSWORD};

const PURPOSE: &str = "customer complaint #4711 needs the signed contract";

async fn record(app: &TestApp, archivist: &str, category: &Value, title: &str) -> String {
    let (s, r) = app
        .post(
            "/api/v1/records",
            archivist,
            json!({"category_id": category["id"], "title": title,
            "fields": {"company_name": "Huaxin", "phone": "13812345678"},
            "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

async fn ask(app: &TestApp, who: &str, record: &str, kind: &str) -> String {
    let (s, r) = app
        .post(
            "/api/v1/requests",
            who,
            json!({"record_id": record, "kind": kind, "purpose": PURPOSE, "duration_hours": 24}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

async fn approve(app: &TestApp, sup: &str, id: &str) -> Value {
    let (s, a) = app
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            sup,
            json!({"comment": "fine"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{a}");
    assert_eq!(a["state"], "approved", "{a}");
    a
}

struct Scene {
    app: TestApp,
    admin: String,
    archivist: String,
    sup: String,
    leaver: strongroom::users::User,
    leaver_token: String,
    pending: String,
    lookup: String,
    lookup_record: String,
    borrow: String,
}

/// A person with a pending request, an active lookup grant and a file out on loan.
async fn scene() -> Scene {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let admin = app.user_token("root.admin", &[Role::Admin], "IT").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let leaver = app.add_user("wang.fang", &[Role::Employee], "Retail").await;
    let (s, body) = app.login("wang.fang", PASSWORD).await;
    assert_eq!(s, Status::Ok, "{body}");
    let leaver_token = body["token"].as_str().unwrap().to_string();

    let lent = record(&app, &archivist, &contracts, "Lease Huaxin").await;
    let looked = record(&app, &archivist, &contracts, "Loan Huaxin").await;
    let asked = record(&app, &archivist, &contracts, "Guarantee Huaxin").await;

    let borrow = ask(&app, &leaver_token, &lent, "borrow").await;
    approve(&app, &sup, &borrow).await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let (s, loan) = app
        .post(
            &format!("/api/v1/loans/{borrow}/checkout"),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Created, "{loan}");
    let lookup = ask(&app, &leaver_token, &looked, "lookup").await;
    approve(&app, &sup, &lookup).await;
    // The grant opens the value now.
    let (_, r) = app
        .get(&format!("/api/v1/records/{looked}"), &leaver_token)
        .await;
    assert!(r.to_string().contains("13812345678"), "{r}");
    let pending = ask(&app, &leaver_token, &asked, "view").await;
    Scene {
        app,
        admin,
        archivist,
        sup,
        leaver,
        leaver_token,
        pending,
        lookup,
        lookup_record: looked,
        borrow,
    }
}

#[tokio::test]
async fn disabling_a_leaver_cancels_revokes_flags_and_records_the_handover() {
    let Scene {
        app,
        admin,
        archivist,
        sup,
        leaver,
        leaver_token,
        pending,
        lookup,
        lookup_record,
        borrow,
    } = scene().await;
    let id = leaver.id;

    // A note too long is refused and nothing is settled.
    let (s, e) = app
        .post(
            &format!("/api/v1/users/{id}/disable"),
            &admin,
            json!({"handover_note": "x".repeat(2001)}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    assert_eq!(e["error"]["code"], "invalid", "{e}");
    let (s, _) = app.get("/api/v1/me", &leaver_token).await;
    assert_eq!(s, Status::Ok, "nothing changed");

    let (s, out) = app
        .post(
            &format!("/api/v1/users/{id}/disable"),
            &admin,
            json!({"handover_note": "Ma Lin takes over the Huaxin files"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{out}");
    assert_eq!(out["status"], "disabled");
    let settled = &out["settlement"];
    assert_eq!(settled["requests_cancelled"], 1, "{out}");
    // The lookup grant and the borrow grant of the loan out.
    assert_eq!(settled["grants_revoked"], 2, "{out}");
    assert_eq!(settled["loans_flagged"], 1, "{out}");
    assert_eq!(settled["cancelled_requests"], json!([pending]));
    assert_eq!(
        settled["handover_note"],
        "Ma Lin takes over the Huaxin files"
    );
    assert!(settled["sessions_ended"].as_u64().unwrap() >= 1);

    // Sessions end at once.
    let (s, _) = app.get("/api/v1/me", &leaver_token).await;
    assert_eq!(s, Status::Unauthorized);

    // The request is cancelled, saying why; the grants are revoked.
    let (_, q) = app.get(&format!("/api/v1/requests/{pending}"), &sup).await;
    assert_eq!(q["state"], "cancelled", "{q}");
    assert_eq!(q["cancel_reason"], "account_disabled", "{q}");
    let (_, q) = app.get(&format!("/api/v1/requests/{lookup}"), &sup).await;
    assert_eq!(q["grant"]["state"], "revoked", "{q}");
    let (_, q) = app.get(&format!("/api/v1/requests/{borrow}"), &sup).await;
    assert_eq!(q["grant"]["state"], "revoked", "{q}");
    let sup_page = Browser::with_token(&app, &sup);
    let html = sup_page.page(&format!("/requests/{pending}")).await;
    assert!(
        html.contains("cancelled because the requester&#x27;s account was disabled")
            || html.contains("cancelled because the requester's account was disabled"),
        "{html}"
    );

    // The loans desk sees the holder has left, on the desk and on the archivist's home.
    let desk = Browser::with_token(&app, &archivist);
    let loans = desk.page("/loans").await;
    assert!(
        loans.contains("holder has left: wang.fang display"),
        "{loans}"
    );
    let home = desk.page("/").await;
    assert!(
        home.contains("holder has left: wang.fang display"),
        "{home}"
    );
    let (s, csv) = {
        let a = desk.get("/loans/register.csv").await;
        (a.status, a.html)
    };
    assert_eq!(s, Status::Ok);
    assert!(csv.contains("Holder has left"), "{csv}");

    // Enabled again: nothing settled comes back. The lookup grant stays revoked, so the
    // value is masked again; the request stays cancelled.
    let (s, _) = app
        .post(&format!("/api/v1/users/{id}/enable"), &admin, json!({}))
        .await;
    assert_eq!(s, Status::Ok);
    let (s, body) = app.login("wang.fang", PASSWORD).await;
    assert_eq!(s, Status::Ok, "{body}");
    let again = body["token"].as_str().unwrap().to_string();
    let (s, r) = app
        .get(&format!("/api/v1/records/{lookup_record}"), &again)
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    assert!(!r.to_string().contains("13812345678"), "{r}");
    assert!(r.to_string().contains("138****5678"), "{r}");
    let (_, q) = app
        .get(&format!("/api/v1/requests/{pending}"), &again)
        .await;
    assert_eq!(q["state"], "cancelled");
    // Still flagged while the file is out; the flag goes when it comes back.
    assert!(desk.page("/loans").await.contains("holder has left"));
    let (s, r) = app
        .post(
            &format!("/api/v1/loans/{borrow}/return"),
            &archivist,
            json!({"condition": "intact"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{r}");
    assert_eq!(r["holder_left"], false, "{r}");
    assert!(!desk.page("/loans").await.contains("holder has left"));

    // Each settled item is audited, and the disabling lists the ids with the note.
    assert_eq!(app.audit_count("request.cancel", "success").await, 1);
    assert_eq!(app.audit_count("grant.revoke", "success").await, 2);
    assert_eq!(app.audit_count("loan.holder_left", "success").await, 1);
    let detail: Value = sqlx::query_scalar(
        "SELECT detail FROM audit_events WHERE action = 'user.disable' AND outcome = 'success'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        detail["handover_note"],
        "Ma Lin takes over the Huaxin files"
    );
    assert_eq!(detail["cancelled_requests"], json!([pending]));
    assert_eq!(detail["revoked_grants"].as_array().unwrap().len(), 2);
    assert_eq!(detail["flagged_loans"].as_array().unwrap().len(), 1);
    let reason: Value =
        sqlx::query_scalar("SELECT detail FROM audit_events WHERE action = 'request.cancel'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(reason["reason"], "account_disabled");
    let note: String = sqlx::query_scalar("SELECT note FROM account_handovers WHERE user_id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(note, "Ma Lin takes over the Huaxin files");
    audit::sequence_all(&app.db).await.unwrap();
    assert!(matches!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact { pending: 0, .. }
    ));
}

#[tokio::test]
async fn the_disable_page_shows_the_holdings_first_then_what_was_settled() {
    let Scene {
        app, admin, leaver, ..
    } = scene().await;
    let b = Browser::with_token(&app, &admin);
    let page = format!("/admin/users/{}", leaver.id);
    let ask = b.post(&page, &format!("{page}/disable"), &[]).await;
    assert_eq!(ask.status, Status::Ok, "{}", ask.html);
    assert!(
        ask.html
            .contains("pending requests: 1; grants in force: 2; files out on loan: 1"),
        "{}",
        ask.html
    );
    assert!(ask.html.contains("id=\"f-handover_note\""), "{}", ask.html);
    // Asking changes nothing.
    let active: bool = sqlx::query_scalar("SELECT status = 'active' FROM users WHERE id = $1")
        .bind(leaver.id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(active);

    // A note too long: the error beside the field, the note kept, nothing disabled.
    let long = "长".repeat(2001);
    let bad = b
        .post(
            &page,
            &format!("{page}/disable"),
            &[("confirm", "yes"), ("handover_note", &long)],
        )
        .await;
    assert_eq!(bad.status, Status::UnprocessableEntity, "{}", bad.html);
    assert!(bad.html.contains("id=\"e-handover_note\""), "{}", bad.html);

    let (to, shown) = b
        .post_follow(
            &page,
            &format!("{page}/disable"),
            &[("confirm", "yes"), ("handover_note", "李雷接手")],
        )
        .await;
    assert_eq!(to, page);
    assert!(
        shown.contains("Settled: pending requests cancelled: 1; grants revoked: 2; loans flagged"),
        "{shown}"
    );
    assert!(shown.contains("李雷接手"), "{shown}");
    // In Chinese too.
    let zh = Browser::with_token(&app, &admin).in_language("zh-CN");
    let html = zh.page(&page).await;
    assert!(
        html.contains("移交记录") && html.contains("李雷接手"),
        "{html}"
    );
}

#[tokio::test]
async fn last_sign_in_is_kept_and_shown_on_the_account_page() {
    let app = TestApp::new().await;
    let admin = app.user_token("root.admin", &[Role::Admin], "IT").await;
    let kim = app.add_user("kim", &[Role::Employee], "Retail").await;
    let (_, u) = app.get(&format!("/api/v1/users/{}", kim.id), &admin).await;
    assert!(u["last_sign_in_at"].is_null(), "{u}");
    let b = Browser::with_token(&app, &admin);
    let page = format!("/admin/users/{}", kim.id);
    assert!(b.page(&page).await.contains("never signed in"));

    // A failed sign-in changes nothing; a successful one (API or web) is noted.
    let (s, _) = app.login("kim", "not the password at all").await;
    assert_eq!(s, Status::Unauthorized);
    let (_, u) = app.get(&format!("/api/v1/users/{}", kim.id), &admin).await;
    assert!(u["last_sign_in_at"].is_null(), "{u}");
    let (s, _) = app.login("kim", PASSWORD).await;
    assert_eq!(s, Status::Ok);
    let (_, u) = app.get(&format!("/api/v1/users/{}", kim.id), &admin).await;
    let first: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(u["last_sign_in_at"].clone()).unwrap();
    assert!((chrono::Utc::now() - first).num_seconds() < 60);
    assert!(b.page(&page).await.contains("last signed in"));

    // Through the sign-in page as well.
    app.add_user("web.user", &[Role::Employee], "Retail").await;
    let page = app.client.get("/login").dispatch().await;
    let csrf = page
        .cookies()
        .get("strongroom_login_csrf")
        .unwrap()
        .value()
        .to_string();
    let res = app
        .client
        .post("/login")
        .header(rocket::http::ContentType::Form)
        .cookie(rocket::http::Cookie::new(
            "strongroom_login_csrf",
            csrf.clone(),
        ))
        .body(format!(
            "username=web.user&password={}&csrf={csrf}",
            PASSWORD.replace(' ', "+")
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_sign_in_at FROM users WHERE username = 'web.user'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(at.is_some(), "a sign-in through the web page is noted too");
}

#[tokio::test]
async fn a_request_racing_the_disabling_of_its_account_is_refused() {
    let s = scene().await;
    let app = &s.app;
    // A disabling under way: the account row is updated but not yet committed. The
    // request passed its sign-in check before; it must wait for the disabling and be
    // refused, not slip in after the settlement as a pending request nobody cancels.
    let db = app.superuser_pool().await;
    let mut disabling = db.begin().await.unwrap();
    sqlx::query("UPDATE users SET status = 'disabled', disabled_at = now() WHERE id = $1")
        .bind(s.leaver.id)
        .execute(&mut *disabling)
        .await
        .unwrap();
    let body = json!({"record_id": s.lookup_record, "kind": "view",
                      "purpose": "checking the guarantee terms again", "duration_hours": 4});
    let ask = app.post("/api/v1/requests", &s.leaver_token, body);
    let commit = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        disabling.commit().await.unwrap();
    };
    let ((status, r), ()) = tokio::join!(ask, commit);
    assert_eq!(status, Status::Unauthorized, "{r}");
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_requests WHERE requester_id = $1 AND state = 'pending' \
         AND id <> $2::uuid",
    )
    .bind(s.leaver.id)
    .bind(&s.pending)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn disabling_withdraws_the_proposals_waiting_for_review() {
    let app = TestApp::new().await;
    let admin = app.user_token("root.admin", &[Role::Admin], "IT").await;
    let a = app.user_token("arch.a", &[Role::Archivist], "Retail").await;
    let leaver = app
        .add_user("arch.left", &[Role::Archivist], "Retail")
        .await;
    let (_, body) = app.login("arch.left", PASSWORD).await;
    let token = body["token"].as_str().unwrap().to_string();
    let (s, cat) = app
        .post(
            "/api/v1/categories",
            &a,
            json!({"code": "KYC", "name": "Due diligence", "sensitivity": "internal",
                   "department": "Retail", "retention_years": 10, "review": true,
                   "fields": [{"name": "phone", "type": "phone", "sensitive": true}]}),
        )
        .await;
    assert_eq!(s, Status::Created, "{cat}");
    let (s, r) = app
        .post(
            "/api/v1/records",
            &token,
            json!({"category_id": cat["id"], "title": "Due diligence Huaxin",
                   "fields": {"phone": "13812345678"}}),
        )
        .await;
    assert_eq!(s, Status::Accepted, "{r}");
    let pid = r["proposal"]["id"].as_str().unwrap().to_string();
    let (s, out) = app
        .post(
            &format!("/api/v1/users/{}/disable", leaver.id),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{out}");
    let (s, e) = app
        .post(&format!("/api/v1/proposals/{pid}/approve"), &a, json!({}))
        .await;
    assert_eq!(s, Status::Conflict, "{e}");
    let db = app.superuser_pool().await;
    let (state, sealed): (String, i32) =
        sqlx::query_as("SELECT state, length(sealed) FROM record_proposals WHERE id = $1::uuid")
            .bind(&pid)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((state.as_str(), sealed), ("withdrawn", 0));
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(records, 0);
}
