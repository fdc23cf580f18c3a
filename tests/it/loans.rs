use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::setup;
use crate::common::{bearer, TestApp};

const PURPOSE: &str = "court hearing needs the original signed contract";

async fn approved_borrow(app: &TestApp, record: &str, requester: &str, sup: &str) -> String {
    let (s, r) = app
        .post("/api/v1/requests", requester, json!({"record_id": record, "kind": "borrow", "purpose": PURPOSE, "duration_hours": 96}))
        .await;
    assert_eq!(s, Status::Created, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let (s, a) = app
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            sup,
            json!({"comment": "fine"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{a}");
    assert_eq!(a["state"], "approved");
    id
}

#[tokio::test]
async fn loan_life_cycle_double_checkout_refused_and_overdue_listed() {
    let app = TestApp::new().await;
    let (archivist, contracts) = setup(&app).await;
    let (_, r) = app
        .post("/api/v1/records", &archivist, json!({"category_id": contracts["id"], "title": "=cmd|' /C calc'!A0",
            "fields": {"company_name": "Acme"}, "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}}))
        .await;
    let record = r["id"].as_str().unwrap().to_string();
    let emp1 = app.user_token("emp1", &[Role::Employee], "Retail").await;
    let emp2 = app.user_token("emp2", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let req1 = approved_borrow(&app, &record, &emp1, &sup).await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();

    // Only archivists run the desk.
    let (s, _) = app
        .post(
            &format!("/api/v1/loans/{req1}/checkout"),
            &emp1,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Forbidden);
    // The due date may not outlast the grant.
    let (s, e) = app
        .post(
            &format!("/api/v1/loans/{req1}/checkout"),
            &archivist,
            json!({"due_date": "2999-01-01"}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{e}");
    let (s, loan) = app
        .post(
            &format!("/api/v1/loans/{req1}/checkout"),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Created, "{loan}");
    assert_eq!(loan["borrower"], "emp1");
    assert_eq!(loan["approved_by"], "sup");
    let (_, rec) = app
        .get(&format!("/api/v1/records/{record}"), &archivist)
        .await;
    assert_eq!(rec["physical"]["status"], "on_loan");

    // Not twice: neither the same request nor another approved one while it is out.
    let (s, _) = app
        .post(
            &format!("/api/v1/loans/{req1}/checkout"),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Conflict);
    let req2 = approved_borrow(&app, &record, &emp2, &sup).await;
    let (s, e) = app
        .post(
            &format!("/api/v1/loans/{req2}/checkout"),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Conflict, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already on loan"));

    // Overdue loans are listed.
    let (_, overdue) = app.get("/api/v1/loans?overdue=true", &archivist).await;
    assert_eq!(overdue.as_array().unwrap().len(), 0);
    sqlx::query("UPDATE loans SET due_date = current_date - 1")
        .execute(&app.db)
        .await
        .unwrap();
    let (_, overdue) = app.get("/api/v1/loans?overdue=true", &archivist).await;
    let overdue = overdue.as_array().unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0]["overdue"], true);

    // The register as CSV, safe to open in a spreadsheet.
    let res = app
        .client
        .get("/api/v1/loans/register.csv")
        .header(bearer(&archivist))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let csv = res.into_string().await.unwrap();
    assert!(
        csv.starts_with("\u{FEFF}reference,title,borrower,approved_by"),
        "{csv}"
    );
    assert!(csv.contains("emp1") && csv.contains(",sup,"), "{csv}");
    assert!(
        csv.contains("\"'=cmd|' /C calc'!A0\"") || csv.contains("'=cmd"),
        "formula neutralised: {csv}"
    );

    // Back in store, with the condition noted; the grant is done.
    let (s, back) = app
        .post(
            &format!("/api/v1/loans/{req1}/return"),
            &archivist,
            json!({"condition": "good, one corner creased"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{back}");
    assert!(back["returned_at"].is_string());
    let (_, rec) = app
        .get(&format!("/api/v1/records/{record}"), &archivist)
        .await;
    assert_eq!(rec["physical"]["status"], "in_store");
    let (s, _) = app
        .post(
            &format!("/api/v1/loans/{req1}/return"),
            &archivist,
            json!({"condition": "again"}),
        )
        .await;
    assert_eq!(s, Status::Conflict);
    let (_, req): (Status, Value) = app.get(&format!("/api/v1/requests/{req1}"), &emp1).await;
    assert_eq!(req["grant"]["state"], "returned");
    // Now the second borrower can have it.
    let (s, _) = app
        .post(
            &format!("/api/v1/loans/{req2}/checkout"),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Created);
    assert_eq!(app.audit_count("loan.checkout", "success").await, 2);
    assert_eq!(app.audit_count("loan.return", "success").await, 1);
    // A request that is not an approved borrow cannot be checked out.
    let (_, lookup) = app
        .post(
            "/api/v1/requests",
            &emp1,
            json!({"record_id": record, "kind": "lookup", "purpose": PURPOSE, "duration_hours": 4}),
        )
        .await;
    let (s, _) = app
        .post(
            &format!("/api/v1/loans/{}/checkout", lookup["id"].as_str().unwrap()),
            &archivist,
            json!({"due_date": tomorrow}),
        )
        .await;
    assert_eq!(s, Status::Conflict);
}

/// Due dates are days of the archive's time zone, not of UTC: in a zone ahead of UTC,
/// UTC's date may already be yesterday there (refused as past); in a zone behind it, the
/// archive's today may still be UTC's yesterday (accepted, and not overdue).
#[tokio::test]
async fn due_dates_are_days_of_the_archives_time_zone() {
    let now = chrono::Utc::now();
    let ahead = chrono::Timelike::hour(&now) >= 10;
    // UTC+14 from 10:00 UTC on, UTC-11 before 11:00 UTC: either way the zone's date is
    // not UTC's.
    let zone = if ahead {
        "Pacific/Kiritimati"
    } else {
        "Pacific/Pago_Pago"
    };
    let app = TestApp::with_config(|c| c.time_zone = zone.to_string()).await;
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let archive_today = now.with_timezone(&tz).date_naive();
    let utc_today = now.date_naive();
    assert_ne!(
        archive_today, utc_today,
        "the test needs a zone on another date"
    );
    let (archivist, contracts) = setup(&app).await;
    let (_, r) = app
        .post("/api/v1/records", &archivist, json!({"category_id": contracts["id"], "title": "Lease",
            "fields": {"company_name": "Acme"}, "physical": {"storeroom": "SR1", "shelf": "A3", "box": "B0042"}}))
        .await;
    let record = r["id"].as_str().unwrap().to_string();
    let emp = app.user_token("emp1", &[Role::Employee], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let req = approved_borrow(&app, &record, &emp, &sup).await;
    let path = format!("/api/v1/loans/{req}/checkout");
    let checkout =
        |day: chrono::NaiveDate| app.post(&path, &archivist, json!({"due_date": day.to_string()}));
    if ahead {
        // UTC's today is the archive's yesterday.
        let (s, e) = checkout(utc_today).await;
        assert_eq!(s, Status::UnprocessableEntity, "{e}");
        assert_eq!(e["error"]["field"], "due_date");
        let (s, loan) = checkout(archive_today).await;
        assert_eq!(s, Status::Created, "{loan}");
        assert_eq!(loan["overdue"], false);
    } else {
        // The archive's today is UTC's yesterday: a loan due today is not overdue.
        let (s, loan) = checkout(archive_today).await;
        assert_eq!(s, Status::Created, "{loan}");
        assert_eq!(loan["overdue"], false, "{loan}");
        let (_, overdue) = app.get("/api/v1/loans?overdue=true", &archivist).await;
        assert_eq!(
            overdue["loans"].as_array().map(Vec::len),
            Some(0),
            "{overdue}"
        );
    }
}
