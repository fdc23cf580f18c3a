//! Legal holds: placed and released by supervisors only, on a record or a whole category,
//! audited, shown with reason and who placed them, and blocking a destroy request.

use rocket::http::Status;
use serde_json::json;

use crate::common::bearer;
use crate::destruction::world;
use strongroom::users::Role;

#[tokio::test]
async fn holds_are_for_supervisors_audited_and_shown() {
    let w = world().await;
    let app = &w.app;
    let path = format!("/api/v1/records/{}/hold", w.record);
    for token in [&w.archivist, &w.employee, &w.auditor] {
        let (s, r) = app
            .post(&path, token, json!({"reason": "litigation hold"}))
            .await;
        assert!(s == Status::Forbidden || s == Status::NotFound, "{s} {r}");
    }
    let (s, r) = app.post(&path, &w.sup1, json!({"reason": " "})).await;
    assert_eq!(s, Status::UnprocessableEntity, "{r}");
    let (s, h) = app
        .post(&path, &w.sup1, json!({"reason": "litigation 2026-117"}))
        .await;
    assert_eq!(s, Status::Created, "{h}");
    assert_eq!(h["placed_by"], "sup1");
    assert_eq!(h["reason"], "litigation 2026-117");
    let (s, _) = app
        .post(&path, &w.sup2, json!({"reason": "second hold"}))
        .await;
    assert_eq!(s, Status::Conflict);

    // Shown on the record (API and page) with its reason and who placed it.
    let (s, l) = app
        .get(
            &format!("/api/v1/records/{}/lifecycle", w.record),
            &w.employee,
        )
        .await;
    assert_eq!(s, Status::Ok, "{l}");
    assert_eq!(l["holds"][0]["reason"], "litigation 2026-117");
    assert_eq!(l["retention"]["suspended"], true);
    let res = app
        .client
        .get(format!("/records/{}", w.record))
        .header(bearer(&w.archivist))
        .dispatch()
        .await;
    let page = res.into_string().await.unwrap();
    assert!(
        page.contains("litigation 2026-117") && page.contains("sup1"),
        "{page}"
    );

    // A destroy request cannot even be made while held.
    let (s, r) = app
        .post(
            "/api/v1/requests",
            &w.archivist,
            json!({"record_id": w.record, "kind": "destroy",
              "purpose": "retention period of thirty years has ended"}),
        )
        .await;
    assert_eq!(s, Status::Conflict, "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("litigation 2026-117"));

    // Released by a supervisor (not by others); then released twice is a conflict.
    let del = |token: String, p: String| {
        let c = &app.client;
        async move { c.delete(p).header(bearer(&token)).dispatch().await.status() }
    };
    assert_eq!(
        del(w.archivist.clone(), path.clone()).await,
        Status::Forbidden
    );
    assert_eq!(del(w.sup2.clone(), path.clone()).await, Status::Ok);
    assert_eq!(del(w.sup2.clone(), path.clone()).await, Status::Conflict);
    let (_, l) = app
        .get(
            &format!("/api/v1/records/{}/lifecycle", w.record),
            &w.employee,
        )
        .await;
    assert_eq!(l["holds"].as_array().unwrap().len(), 0);
    assert_eq!(l["retention"]["suspended"], false);

    // A category hold covers the records under it.
    let cpath = format!("/api/v1/categories/{}/hold", w.category);
    let (s, _) = app
        .post(&cpath, &w.archivist, json!({"reason": "regulator inquiry"}))
        .await;
    assert_eq!(s, Status::Forbidden);
    let (s, h) = app
        .post(&cpath, &w.sup1, json!({"reason": "regulator inquiry"}))
        .await;
    assert_eq!(s, Status::Created, "{h}");
    let (_, l) = app
        .get(
            &format!("/api/v1/records/{}/lifecycle", w.record),
            &w.employee,
        )
        .await;
    assert_eq!(l["holds"][0]["category_code"], "CONTR", "{l}");
    assert_eq!(del(w.sup1.clone(), cpath.clone()).await, Status::Ok);

    for (action, n) in [
        ("record.hold", 1),
        ("record.hold_release", 1),
        ("category.hold", 1),
        ("category.hold_release", 1),
    ] {
        assert_eq!(app.audit_count(action, "success").await, n, "{action}");
    }
    assert!(app.audit_count("record.hold", "denied").await >= 3);
}

#[tokio::test]
async fn a_supervisor_of_another_department_neither_places_nor_releases_holds() {
    let w = world().await;
    let app = &w.app;
    let other = app
        .user_token("sup.corp", &[Role::Supervisor], "Corporate")
        .await;
    let path = format!("/api/v1/records/{}/hold", w.record);
    let cpath = format!("/api/v1/categories/{}/hold", w.category);
    let release = |token: &str, p: &str| {
        let c = &app.client;
        let (token, p) = (token.to_string(), p.to_string());
        async move { c.delete(p).header(bearer(&token)).dispatch().await.status() }
    };

    // Contracts are confidential to Retail: hidden from them, as on every other path (a
    // hidden record answers as an unknown id does).
    for p in [&path, &cpath] {
        let (s, r) = app
            .post(p, &other, json!({"reason": "not my department"}))
            .await;
        assert_eq!(s, Status::NotFound, "{r}");
    }
    let (s, _) = app
        .post(
            &format!("/api/v1/records/{}/hold", uuid::Uuid::new_v4()),
            &other,
            json!({"reason": "not my department"}),
        )
        .await;
    assert_eq!(s, Status::NotFound);

    // Holds placed by Retail's supervisor stay until Retail releases them.
    for p in [&path, &cpath] {
        let (s, r) = app
            .post(p, &w.sup1, json!({"reason": "litigation 2026-200"}))
            .await;
        assert_eq!(s, Status::Created, "{r}");
    }
    assert_eq!(release(&other, &path).await, Status::NotFound);
    assert_eq!(release(&other, &cpath).await, Status::NotFound);
    let (_, l) = app
        .get(
            &format!("/api/v1/records/{}/lifecycle", w.record),
            &w.employee,
        )
        .await;
    assert_eq!(l["holds"].as_array().unwrap().len(), 2, "{l}");
    assert_eq!(release(&w.sup1, &path).await, Status::Ok);
    assert_eq!(release(&w.sup1, &cpath).await, Status::Ok);
    assert_eq!(app.audit_count("record.hold_release", "success").await, 1);
    assert_eq!(app.audit_count("category.hold_release", "success").await, 1);
}

#[tokio::test]
async fn a_supervisor_holds_a_category_of_their_department_from_the_retention_page() {
    use crate::common::browser::Browser;
    let w = world().await;
    let app = &w.app;
    let sup = Browser::with_token(app, &w.sup1);
    let page = sup.page("/retention").await;
    assert!(page.contains("action=\"/retention/holds\""), "{page}");
    assert!(
        page.contains(&format!("value=\"{}\"", w.category)),
        "Contracts is offered: {page}"
    );
    let (to, shown) = sup
        .post_follow(
            "/retention",
            "/retention/holds",
            &[
                ("category", &w.category),
                ("reason", "regulator inquiry 2026-31"),
            ],
        )
        .await;
    assert!(to.starts_with("/retention"), "{to}");
    assert!(shown.contains("regulator inquiry 2026-31"), "{shown}");
    let (_, l) = app
        .get(
            &format!("/api/v1/records/{}/lifecycle", w.record),
            &w.employee,
        )
        .await;
    assert_eq!(l["holds"][0]["category_code"], "CONTR", "{l}");

    // Another department's supervisor does not see the hold on a category confidential to
    // Retail, is offered nothing to release, and a forged post changes nothing.
    let other = app
        .user_token("sup.corp", &[Role::Supervisor], "Corporate")
        .await;
    let corp = Browser::with_token(app, &other);
    let seen = corp.page("/retention").await;
    assert!(!seen.contains("regulator inquiry 2026-31"), "{seen}");
    assert!(!seen.contains("/release\""), "{seen}");
    let (_, refused) = corp
        .post_follow(
            "/retention",
            &format!("/retention/holds/{}/release", w.category),
            &[],
        )
        .await;
    assert!(refused.contains("The hold was not changed"), "{refused}");
    let (_, l) = app
        .get(
            &format!("/api/v1/records/{}/lifecycle", w.record),
            &w.employee,
        )
        .await;
    assert_eq!(l["holds"].as_array().unwrap().len(), 1, "{l}");

    // Its own supervisor releases it.
    let (_, after) = sup
        .post_follow(
            "/retention",
            &format!("/retention/holds/{}/release", w.category),
            &[],
        )
        .await;
    assert!(!after.contains("regulator inquiry 2026-31"), "{after}");
    assert_eq!(app.audit_count("category.hold", "success").await, 1);
    assert_eq!(app.audit_count("category.hold_release", "success").await, 1);
}
