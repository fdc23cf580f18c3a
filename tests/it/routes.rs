use rocket::http::{Method, Status};

use crate::common::TestApp;

/// Every route outside the short public list answers 401 (JSON) or a redirect to the sign-in
/// page (HTML) to a caller without a session: no route can forget to authenticate.
#[tokio::test]
async fn every_non_public_route_requires_a_session() {
    let app = TestApp::new().await;
    let routes: Vec<(Method, String)> = app
        .client
        .rocket()
        .routes()
        .map(|r| (r.method, r.uri.to_string()))
        .collect();
    assert!(routes.len() >= 15, "routes: {routes:?}");
    let mut checked = 0;
    for (method, uri) in routes {
        let path = uri.split('?').next().unwrap().to_string();
        if strongroom::web::PUBLIC_ROUTES
            .iter()
            .any(|(m, p)| *m == method.as_str() && *p == path)
        {
            continue;
        }
        // Fill every dynamic segment with a plausible id.
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('<') {
                    uuid::Uuid::new_v4().to_string()
                } else {
                    seg.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let res = app
            .client
            .req(method, concrete.clone())
            .header(rocket::http::ContentType::JSON)
            .body("{}")
            .dispatch()
            .await;
        let status = res.status();
        if concrete.starts_with("/api/") {
            assert_eq!(status, Status::Unauthorized, "{method} {concrete}");
        } else {
            assert_eq!(status, Status::SeeOther, "{method} {concrete}");
            assert_eq!(
                res.headers().get_one("Location"),
                Some("/login"),
                "{method} {concrete}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10);
}

#[tokio::test]
async fn public_routes_answer_and_carry_security_headers() {
    let app = TestApp::new().await;
    let res = app.client.get("/healthz").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let res = app.client.get("/login").dispatch().await;
    assert_eq!(res.status(), Status::Ok);
    let h = res.headers();
    assert!(h.get_one("X-Request-Id").is_some());
    assert_eq!(h.get_one("X-Frame-Options"), Some("DENY"));
    assert_eq!(h.get_one("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(h.get_one("Cache-Control"), Some("no-store"));
    assert!(h
        .get_one("Content-Security-Policy")
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let body = res.into_string().await.unwrap();
    assert!(body.contains("name=\"csrf\""));
    // Unknown API paths answer JSON errors.
    let res = app.client.get("/api/v1/nope").dispatch().await;
    assert_eq!(res.status(), Status::NotFound);
    let body = res.into_string().await.unwrap();
    assert!(body.contains("\"not_found\""), "{body}");
}

#[tokio::test]
async fn malformed_json_is_a_clear_422() {
    let app = TestApp::new().await;
    let res = app
        .client
        .post("/api/v1/login")
        .header(rocket::http::ContentType::JSON)
        .body("{\"username\": \"x\"}")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
    let body = res.into_string().await.unwrap();
    assert!(body.contains("password"), "{body}");
}

/// Every API route that names an object by id reaches the one authorization path: for an
/// id that names nothing, a person holding every role gets 404, and the refusal is in the
/// audit trail with that id. A new route with an id must be added to `body_for`, so it
/// cannot be forgotten.
#[tokio::test]
async fn every_api_route_with_an_id_reaches_the_policy_and_audits_an_unknown_id() {
    let app = TestApp::new().await;
    let token = app
        .user_token(
            "everyone",
            &[
                strongroom::users::Role::Archivist,
                strongroom::users::Role::Employee,
                strongroom::users::Role::Supervisor,
                strongroom::users::Role::Auditor,
                strongroom::users::Role::Admin,
            ],
            "Retail",
        )
        .await;
    let routes: Vec<(Method, String)> = app
        .client
        .rocket()
        .routes()
        .map(|r| (r.method, r.uri.to_string()))
        .filter(|(_, uri)| {
            let path = uri.split('?').next().unwrap_or("");
            path.starts_with("/api/") && path.contains('<')
        })
        .collect();
    assert!(routes.len() >= 15, "{routes:?}");
    for (method, uri) in routes {
        let path = uri.split('?').next().unwrap().to_string();
        let id = uuid::Uuid::new_v4().to_string();
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('<') {
                    id.as_str()
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let Some(body) = body_for(method, &path) else {
            panic!("{method} {path}: add this route (and a valid body) to body_for");
        };
        let status = if path.ends_with("/files") && method == Method::Post {
            let rec = concrete
                .trim_start_matches("/api/v1/records/")
                .trim_end_matches("/files");
            crate::archive::upload(&app, &token, rec, "scan.pdf", b"%PDF-1.4")
                .await
                .0
        } else {
            let mut req = app
                .client
                .req(method, concrete.clone())
                .header(crate::common::bearer(&token));
            if let Some(b) = body {
                req = req.header(rocket::http::ContentType::JSON).body(b);
            }
            req.dispatch().await.status()
        };
        assert_eq!(status, Status::NotFound, "{method} {concrete}");
        let audited: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events WHERE outcome = 'denied' AND object_id = $1",
        )
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert!(
            audited >= 1,
            "{method} {path}: the refusal of an unknown id is not audited"
        );
    }
}

/// A valid body for each API route that takes an id (`Some(None)`: no body).
fn body_for(method: Method, path: &str) -> Option<Option<&'static str>> {
    let b = match (method, path) {
        (Method::Get, _) => None,
        (Method::Post, "/api/v1/requests/<rid>/approve") => Some(r#"{"comment": "ok"}"#),
        (Method::Post, "/api/v1/requests/<rid>/reject") => Some(r#"{"comment": "not needed"}"#),
        (Method::Post, "/api/v1/requests/<rid>/cancel") => None,
        (Method::Post, "/api/v1/grants/<gid>/revoke") => Some(r#"{"reason": "complaint closed"}"#),
        (Method::Post, "/api/v1/loans/<rid>/checkout") => Some(r#"{"due_date": "2099-01-01"}"#),
        (Method::Post, "/api/v1/loans/<rid>/return") => Some(r#"{"condition": "intact"}"#),
        (Method::Post, "/api/v1/exports/<rid>") => Some(r#"{"encrypt": false}"#),
        (Method::Post, "/api/v1/records/<id>/physical") => {
            Some(r#"{"status": "missing", "reason": "not on its shelf"}"#)
        }
        (Method::Post, "/api/v1/records/<id>/files") => None,
        (Method::Post, "/api/v1/users/<id>/disable") => None,
        (Method::Post, "/api/v1/proposals/<pid>/withdraw") => None,
        (Method::Post, "/api/v1/users/<id>/enable") => None,
        (Method::Post, "/api/v1/users/<id>/password-reset") => None,
        (Method::Delete, "/api/v1/users/<id>/totp") => None,
        (Method::Patch, "/api/v1/users/<id>") => Some(r#"{"department": "Legal"}"#),
        (Method::Post, "/api/v1/register/storerooms/<sid>/shelves") => {
            Some(r#"{"code": "S1", "name": "一号架"}"#)
        }
        (Method::Post, "/api/v1/register/shelves/<sid>/boxes") => Some(r#"{"code": "B1"}"#),
        (Method::Patch, "/api/v1/register/storerooms/<pid>")
        | (Method::Patch, "/api/v1/register/shelves/<pid>")
        | (Method::Patch, "/api/v1/register/boxes/<pid>") => Some(r#"{"name": "二号库房"}"#),
        (Method::Patch, "/api/v1/records/<id>") => {
            Some(r#"{"title": "Corrected title", "reason": "typo in the title"}"#)
        }
        (Method::Patch, "/api/v1/categories/<id>") => Some(r#"{"name": "Renamed"}"#),
        (Method::Post, "/api/v1/proposals/<pid>/approve")
        | (Method::Post, "/api/v1/proposals/<pid>/reject") => Some(r#"{"comment": "checked"}"#),
        (Method::Post, "/api/v1/records/<rid>/destroy") => Some(
            r#"{"request_id": "6b1f1c1e-2f57-4a43-9d0b-1d3c8a9e2b10", "witness": "wang", "method": "shredder"}"#,
        ),
        (Method::Post, "/api/v1/records/<rid>/hold")
        | (Method::Post, "/api/v1/categories/<cid>/hold") => Some(r#"{"reason": "litigation"}"#),
        (Method::Delete, "/api/v1/records/<rid>/hold")
        | (Method::Delete, "/api/v1/categories/<cid>/hold") => None,
        (Method::Post, "/api/v1/categories/<cid>/retention") => Some(r#"{"retention_from": null}"#),
        _ => return None,
    };
    Some(b)
}
