//! Retention ends: from filing, or from a date field the category names; the retention list
//! shows records whose end has passed, not held and not destroyed ones; a hold suspends it.

use rocket::http::Status;
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::common::{bearer, TestApp};

async fn record(
    app: &TestApp,
    token: &str,
    category: &Value,
    title: &str,
    signed: Option<&str>,
) -> String {
    let mut fields = json!({});
    if let Some(d) = signed {
        fields["signed_on"] = json!(d);
    }
    let (s, r) = app
        .post(
            "/api/v1/records",
            token,
            json!({"category_id": category["id"], "title": title, "fields": fields}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    r["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn retention_ends_from_filing_or_a_named_date_and_holds_suspend_it() {
    let app = TestApp::new().await;
    let archivist = app.user_token("arch", &[Role::Archivist], "Retail").await;
    let sup = app.user_token("sup", &[Role::Supervisor], "Retail").await;
    let employee = app.user_token("emp", &[Role::Employee], "Retail").await;
    let (s, now_cat) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({"code": "TMP", "name": "Temporary", "sensitivity": "internal",
              "department": "Retail", "retention_years": 0}),
        )
        .await;
    assert_eq!(s, Status::Created, "{now_cat}");
    let (s, dated) = app
        .post(
            "/api/v1/categories",
            &archivist,
            json!({"code": "LOAN", "name": "Loans", "sensitivity": "internal",
              "department": "Retail", "retention_years": 5,
              "fields": [{"name": "signed_on", "type": "date"}, {"name": "note", "type": "text"}]}),
        )
        .await;
    assert_eq!(s, Status::Created, "{dated}");
    // Only a date field of the category, by an archivist.
    let rpath = format!(
        "/api/v1/categories/{}/retention",
        dated["id"].as_str().unwrap()
    );
    let (s, _) = app
        .post(&rpath, &archivist, json!({"retention_from": "note"}))
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
    let (s, _) = app
        .post(&rpath, &sup, json!({"retention_from": "signed_on"}))
        .await;
    assert_eq!(s, Status::Forbidden);
    let (s, r) = app
        .post(&rpath, &archivist, json!({"retention_from": "signed_on"}))
        .await;
    assert_eq!(s, Status::Ok, "{r}");

    let filed = record(&app, &archivist, &now_cat, "Filed today", None).await;
    let old = record(
        &app,
        &archivist,
        &dated,
        "Signed long ago",
        Some("2001-03-04"),
    )
    .await;
    let recent = record(
        &app,
        &archivist,
        &dated,
        "Signed lately",
        Some("2090-01-01"),
    )
    .await;
    let undated = record(&app, &archivist, &dated, "Never signed", None).await;

    let life = |id: String| {
        let (app, t) = (&app, archivist.clone());
        async move {
            app.get(&format!("/api/v1/records/{id}/lifecycle"), &t)
                .await
                .1
        }
    };
    let today = chrono::Utc::now().date_naive();
    let l = life(filed.clone()).await;
    assert_eq!(l["retention"]["end"], today.to_string(), "{l}");
    assert_eq!(l["retention"]["from_field_used"], false);
    let l = life(old.clone()).await;
    assert_eq!(l["retention"]["end"], "2006-03-04", "{l}");
    assert_eq!(l["retention"]["from_field"], "signed_on");
    assert_eq!(life(recent.clone()).await["retention"]["end"], "2095-01-01");
    // No date in the field: counted from filing.
    let l = life(undated.clone()).await;
    assert_eq!(
        l["retention"]["end"],
        (today + chrono::Months::new(60)).to_string(),
        "{l}"
    );

    let due = |q: &str| {
        let (app, t, q) = (&app, archivist.clone(), q.to_string());
        async move {
            let (s, r) = app.get(&format!("/api/v1/retention{q}"), &t).await;
            assert_eq!(s, Status::Ok, "{r}");
            r["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["record_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let list = due("").await;
    assert!(list.contains(&filed) && list.contains(&old), "{list:?}");
    assert!(!list.contains(&recent) && !list.contains(&undated));
    let list = due("?due_before=2006-01-01").await;
    assert!(list.is_empty(), "{list:?}");
    let list = due("?within_days=1830").await;
    assert!(list.contains(&undated), "{list:?}");

    // A hold suspends the end: the record leaves the list.
    let (s, _) = app
        .post(
            &format!("/api/v1/records/{old}/hold"),
            &sup,
            json!({"reason": "dispute pending"}),
        )
        .await;
    assert_eq!(s, Status::Created);
    assert!(!due("").await.contains(&old));
    assert_eq!(life(old.clone()).await["retention"]["suspended"], true);
    let res = app
        .client
        .delete(format!("/api/v1/records/{old}/hold"))
        .header(bearer(&sup))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert!(due("").await.contains(&old));

    // Archivists and supervisors see the list; employees do not.
    let (s, _) = app.get("/api/v1/retention", &sup).await;
    assert_eq!(s, Status::Ok);
    let (s, _) = app.get("/api/v1/retention", &employee).await;
    assert_eq!(s, Status::Forbidden);
    let res = app
        .client
        .get("/retention")
        .header(bearer(&archivist))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let page = res.into_string().await.unwrap();
    assert!(
        page.contains("Signed long ago") && page.contains("Filed today"),
        "{page}"
    );
}

#[tokio::test]
async fn numbers_that_do_not_parse_are_refused_not_taken_as_the_default() {
    let app = crate::common::TestApp::new().await;
    let archivist = app
        .user_token("arch", &[strongroom::users::Role::Archivist], "Retail")
        .await;
    let admin = app
        .user_token("root", &[strongroom::users::Role::Admin], "IT")
        .await;
    for (path, token, field) in [
        (
            "/api/v1/retention?within_days=99999999999",
            &archivist,
            "within_days",
        ),
        (
            "/api/v1/retention?within_days=-1",
            &archivist,
            "within_days",
        ),
        ("/api/v1/access-review?days=999999999999", &admin, "days"),
        ("/api/v1/access-review?days=ninety", &admin, "days"),
    ] {
        let (s, e) = app.get(path, token).await;
        assert_eq!(s, rocket::http::Status::UnprocessableEntity, "{path}: {e}");
        assert_eq!(e["error"]["field"], field, "{path}: {e}");
    }
    let (s, _) = app
        .get("/api/v1/retention?within_days=30", &archivist)
        .await;
    assert_eq!(s, rocket::http::Status::Ok);
}
