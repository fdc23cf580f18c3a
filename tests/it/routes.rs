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
