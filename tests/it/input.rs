//! Input rules at the edge: JSON routes take `application/json` only (a cross-site form
//! cannot drive them), and no text with control or bidi characters reaches a service, from
//! a JSON body or an HTML form; a refusal is a 422 naming the field, never the value, and
//! the value is never logged. File names are neutralised; a purpose's minimum counts
//! visible characters.

use rocket::http::{ContentType, Cookie, Header, Method, RawStr, Status};
use serde_json::{json, Value};
use strongroom::users::Role;

use crate::archive::{setup, upload};
use crate::common::{bearer, captured_logs, json_of, TestApp, PASSWORD};

const PURPOSE: &str = "customer complaint #4711 needs the signed contract";

/// API routes that take no JSON body: no body at all, or a multipart upload.
const NO_JSON_BODY: &[(&str, &str)] = &[
    ("POST", "/api/v1/logout"),
    ("POST", "/api/v1/users/<id>/enable"),
    ("POST", "/api/v1/users/<id>/password-reset"),
    ("POST", "/api/v1/requests/<rid>/cancel"),
    ("POST", "/api/v1/proposals/<pid>/withdraw"),
    ("POST", "/api/v1/me/totp"),
    ("POST", "/api/v1/records/<id>/files"),
];

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('<') {
                uuid::Uuid::new_v4().to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A contract record; returns (archivist token, record id).
async fn record(app: &TestApp) -> (String, String) {
    let (archivist, contracts) = setup(app).await;
    let (s, r) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": contracts["id"], "title": "Framework agreement",
                   "fields": {"company_name": "Huaxin"}}),
        )
        .await;
    assert_eq!(s, Status::Created, "{r}");
    (archivist, r["id"].as_str().unwrap().to_string())
}

async fn category(app: &TestApp, token: &str, code: &str) -> Value {
    let (s, list) = app.get("/api/v1/categories", token).await;
    assert_eq!(s, Status::Ok, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == code)
        .unwrap()
        .clone()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&app.db)
        .await
        .unwrap()
}

fn assert_invalid(status: Status, body: &Value, field: &str) {
    assert_eq!(status, Status::UnprocessableEntity, "{body}");
    assert_eq!(body["error"]["code"], "invalid", "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}

#[tokio::test]
async fn every_json_route_refuses_other_content_types_with_415() {
    let app = TestApp::new().await;
    app.add_user("everyone", &Role::ALL, "Retail").await;
    let (s, b) = app.login("everyone", PASSWORD).await;
    assert_eq!(s, Status::Ok, "{b}");
    let token = b["token"].as_str().unwrap().to_string();
    let routes: Vec<(Method, String)> = app
        .client
        .rocket()
        .routes()
        .filter(|r| matches!(r.method, Method::Post | Method::Put | Method::Patch))
        .map(|r| (r.method, r.uri.to_string()))
        .filter(|(_, uri)| uri.starts_with("/api/"))
        .collect();
    for (m, p) in NO_JSON_BODY {
        assert!(
            routes.iter().any(|(rm, rp)| rm.as_str() == *m && rp == p),
            "exempt route {m} {p} no longer exists"
        );
    }
    let mut checked = 0;
    for (method, uri) in &routes {
        let path = uri.split('?').next().unwrap();
        if NO_JSON_BODY
            .iter()
            .any(|(m, p)| *m == method.as_str() && *p == path)
        {
            continue;
        }
        let target = concrete(path);
        // The probe's case: valid JSON in a body a cross-site form can send, with the cookie;
        // then the same with a bearer token, a form type, and no type at all.
        let attempts: Vec<(Option<ContentType>, bool)> = vec![
            (Some(ContentType::Plain), true),
            (Some(ContentType::Plain), false),
            (Some(ContentType::Form), true),
            (None, false),
        ];
        for (ct, cookie) in attempts {
            let mut req = app
                .client
                .req(*method, target.clone())
                .remote("10.9.8.7:4000".parse().unwrap())
                .body("{}");
            if let Some(ct) = ct.clone() {
                req = req.header(ct);
            }
            req = if cookie {
                req.cookie(Cookie::new("strongroom_session", token.clone()))
            } else {
                req.header(bearer(&token))
            };
            let (s, body) = json_of(req.dispatch().await).await;
            assert_eq!(
                s,
                Status::UnsupportedMediaType,
                "{method} {path} with {ct:?} (cookie: {cookie}): {body}"
            );
            assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
        }
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} JSON routes found");
}

#[tokio::test]
async fn a_text_plain_request_body_files_nothing() {
    let app = TestApp::new().await;
    let (_, record) = record(&app).await;
    let (_, employee) = app.login_as(Role::Employee).await;
    let body =
        json!({"record_id": record, "kind": "view", "purpose": PURPOSE, "duration_hours": 4})
            .to_string();
    let res = app
        .client
        .post("/api/v1/requests")
        .header(bearer(&employee))
        .header(ContentType::Plain)
        .body(body.clone())
        .dispatch()
        .await;
    let (s, b) = json_of(res).await;
    assert_eq!(s, Status::UnsupportedMediaType, "{b}");
    assert_eq!(count(&app, "access_requests").await, 0);
    // `application/json` with a charset parameter is JSON.
    let res = app
        .client
        .post("/api/v1/requests")
        .header(bearer(&employee))
        .header(Header::new(
            "Content-Type",
            "application/json; charset=utf-8",
        ))
        .body(body)
        .dispatch()
        .await;
    let (s, b) = json_of(res).await;
    assert_eq!(s, Status::Created, "{b}");
}

#[tokio::test]
async fn nul_and_control_characters_are_422_naming_the_field_and_never_logged() {
    let app = TestApp::new().await;
    let (archivist, record) = record(&app).await;
    let contracts = category(&app, &archivist, "CONTR").await;
    let marker = format!("nulmarker{}", uuid::Uuid::new_v4().simple());
    let records_before = count(&app, "records").await;

    let (s, b) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": contracts["id"], "title": format!("{marker}\u{0}x"),
                   "fields": {"company_name": "Huaxin"}}),
        )
        .await;
    assert_invalid(s, &b, "title");
    assert!(!b.to_string().contains(&marker), "{b}");
    let (s, b) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": contracts["id"], "title": "Fine",
                   "fields": {"company_name": format!("{marker}\u{0}")}}),
        )
        .await;
    assert_invalid(s, &b, "fields.company_name");
    // Other controls too; a title is one line.
    let (s, b) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": contracts["id"], "title": format!("{marker}\u{1b}[2J"),
                   "fields": {"company_name": "Huaxin"}}),
        )
        .await;
    assert_invalid(s, &b, "title");
    let (s, b) = app
        .post(
            "/api/v1/records",
            &archivist,
            json!({"category_id": contracts["id"], "title": "two\nlines",
                   "fields": {"company_name": "Huaxin"}}),
        )
        .await;
    assert_invalid(s, &b, "title");
    assert_eq!(count(&app, "records").await, records_before);

    let (_, employee) = app.login_as(Role::Employee).await;
    let (s, b) = app
        .post(
            "/api/v1/requests",
            &employee,
            json!({"record_id": record, "kind": "view", "duration_hours": 4,
                   "purpose": format!("{PURPOSE} {marker}\u{0}")}),
        )
        .await;
    assert_invalid(s, &b, "purpose");
    // Line breaks are fine in a purpose.
    let (s, req) = app
        .post(
            "/api/v1/requests",
            &employee,
            json!({"record_id": record, "kind": "view", "duration_hours": 4,
                   "purpose": format!("{PURPOSE}\r\nsecond line\twith a tab")}),
        )
        .await;
    assert_eq!(s, Status::Created, "{req}");
    let (_, supervisor) = app.login_as(Role::Supervisor).await;
    let (s, b) = app
        .post(
            &format!("/api/v1/requests/{}/approve", req["id"].as_str().unwrap()),
            &supervisor,
            json!({"comment": format!("{marker}\u{0}")}),
        )
        .await;
    assert_invalid(s, &b, "comment");

    // The web form: the same rule, the field named on the page.
    app.add_user("webemp", &[Role::Employee], "Retail").await;
    let (s, b) = app.login("webemp", PASSWORD).await;
    assert_eq!(s, Status::Ok, "{b}");
    let cookie = Cookie::new(
        "strongroom_session",
        b["token"].as_str().unwrap().to_string(),
    );
    let page = app
        .client
        .get(format!("/records/{record}"))
        .cookie(cookie.clone())
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let requests_before = count(&app, "access_requests").await;
    let res = app
        .client
        .post(format!("/records/{record}/requests"))
        .cookie(cookie.clone())
        .header(ContentType::Form)
        .body(format!(
            "csrf={csrf}&kind=view&duration_hours=4&purpose={}",
            RawStr::new(&format!("{PURPOSE} {marker}\u{0}")).percent_encode()
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
    let html = res.into_string().await.unwrap();
    assert!(html.contains("purpose"), "{html}");
    assert!(!html.contains(&marker));
    // A raw %00 in the body is decoded and refused the same way.
    let res = app
        .client
        .post(format!("/records/{record}/requests"))
        .cookie(cookie.clone())
        .header(ContentType::Form)
        .body(format!(
            "csrf={csrf}&kind=view&duration_hours=4&purpose=abcdefghijklmnopq%00{marker}"
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::UnprocessableEntity);
    assert_eq!(count(&app, "access_requests").await, requests_before);
    // A forged form is a CSRF failure first, whatever its text.
    let res = app
        .client
        .post(format!("/records/{record}/requests"))
        .cookie(cookie)
        .header(ContentType::Form)
        .body("csrf=forged&kind=view&duration_hours=4&purpose=a%00b")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);

    let logs = captured_logs();
    assert!(!logs.contains(&marker), "a refused value reached the logs");
    assert!(!logs.contains("\\u0000"), "a NUL reached the logs");
}

#[tokio::test]
async fn bidi_controls_are_refused_in_text_and_stripped_from_file_names() {
    let app = TestApp::new().await;
    let (archivist, record) = record(&app).await;
    let contracts = category(&app, &archivist, "CONTR").await;
    for (i, c) in [
        '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200F}', '\u{061C}',
    ]
    .into_iter()
    .enumerate()
    {
        let (s, b) = app
            .post(
                "/api/v1/records",
                &archivist,
                json!({"category_id": contracts["id"], "title": format!("report{c}fdp.exe {i}"),
                       "fields": {"company_name": "Huaxin"}}),
            )
            .await;
        assert_invalid(s, &b, "title");
    }
    let res = app
        .client
        .patch(format!("/api/v1/records/{record}"))
        .header(bearer(&archivist))
        .header(ContentType::JSON)
        .body(
            json!({"fields": {"company_name": "Hua\u{202E}xin"}, "reason": "typo fixed"})
                .to_string(),
        )
        .dispatch()
        .await;
    let (s, b) = json_of(res).await;
    assert_invalid(s, &b, "fields.company_name");
    let res = app
        .client
        .patch(format!("/api/v1/records/{record}"))
        .header(bearer(&archivist))
        .header(ContentType::JSON)
        .body(
            json!({"fields": {"company_name": "Huaxin Ltd"}, "reason": "typo \u{2067}fixed"})
                .to_string(),
        )
        .dispatch()
        .await;
    let (s, b) = json_of(res).await;
    assert_invalid(s, &b, "reason");
    // Ordinary multilingual text, with a zero-width joiner, is fine.
    let res = app
        .client
        .patch(format!("/api/v1/records/{record}"))
        .header(bearer(&archivist))
        .header(ContentType::JSON)
        .body(
            json!({"fields": {"company_name": "华信 می\u{200C}خواهم"}, "reason": "renamed 更名"})
                .to_string(),
        )
        .dispatch()
        .await;
    let (s, b) = json_of(res).await;
    assert_eq!(s, Status::Ok, "{b}");

    // A file name that would display as `rtlexe.pdf` is stored as what it is.
    let (s, f) = upload(
        &app,
        &archivist,
        &record,
        "rtl\u{202E}fdp.exe",
        &crate::viewer::pdf(1),
    )
    .await;
    assert_eq!(s, Status::Created, "{f}");
    let (s, files) = app
        .get(&format!("/api/v1/records/{record}/files"), &archivist)
        .await;
    assert_eq!(s, Status::Ok);
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["original_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["rtlfdp.exe"], "{files}");
}

#[tokio::test]
async fn a_purpose_counts_only_visible_characters() {
    let app = TestApp::new().await;
    let (_, record) = record(&app).await;
    let (_, employee) = app.login_as(Role::Employee).await;
    for purpose in [
        "\u{200B}".repeat(20),
        format!("audit{}", "\u{200B}\u{FEFF}\u{2060}".repeat(10)),
        format!("short {}", " ".repeat(30)),
        format!("ab{}", "\u{3000}\u{3164}\u{2800}".repeat(8)),
    ] {
        let (s, b) = app
            .post(
                "/api/v1/requests",
                &employee,
                json!({"record_id": record, "kind": "view", "purpose": purpose, "duration_hours": 4}),
            )
            .await;
        assert_invalid(s, &b, "purpose");
    }
    assert_eq!(count(&app, "access_requests").await, 0);
    // Fifteen CJK characters are fifteen characters.
    let (s, b) = app
        .post(
            "/api/v1/requests",
            &employee,
            json!({"record_id": record, "kind": "view", "purpose": "客户投诉需要核对已签署的合同原件", "duration_hours": 4}),
        )
        .await;
    assert_eq!(s, Status::Created, "{b}");
}
