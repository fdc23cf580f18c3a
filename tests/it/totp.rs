//! Two-factor sign-in (TOTP, RFC 6238) under the shipped default, where supervisors,
//! auditors and administrators must enrol (the harness turns that off for every other
//! test; these opt back in). Codes are computed here, independently of the server's code,
//! from HMAC-SHA1 as RFC 6238 says, and that computation is checked against the RFC's own
//! test vector first.

use hmac::{Hmac, Mac};
use rocket::http::{ContentType, Cookie, Header, Status};
use serde_json::{json, Value};
use sha1::Sha1;
use strongroom::config::Config;
use strongroom::users::Role;

use crate::common::browser::{csrf_of, Browser};
use crate::common::{bearer, TestApp, PASSWORD};

// ---- RFC 6238, written out for the tests -------------------------------------------------

/// RFC 6238 TOTP with HMAC-SHA1 and 30-second steps: the code of Unix time `t`.
fn totp_at(secret: &[u8], t: i64, digits: u32) -> String {
    let counter = (t / 30) as u64;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).unwrap();
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let bin = ((u32::from(h[o]) & 0x7f) << 24)
        | (u32::from(h[o + 1]) << 16)
        | (u32::from(h[o + 2]) << 8)
        | u32::from(h[o + 3]);
    format!(
        "{:0width$}",
        bin % 10u32.pow(digits),
        width = digits as usize
    )
}

/// RFC 4648 base32 (no padding), as the `otpauth://` URI carries the secret.
fn base32(text: &str) -> Vec<u8> {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0);
    for c in text.chars().filter(|c| *c != '=') {
        buf = (buf << 5) | alphabet.find(c).expect("base32 letter") as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The code of the current step, and of the next one (which the server accepts as within
/// its drift window, and which is later than any step it has already accepted).
fn code_now(secret: &[u8]) -> String {
    totp_at(secret, now(), 6)
}
fn code_next(secret: &[u8]) -> String {
    totp_at(secret, now() + 30, 6)
}

#[test]
fn the_tests_totp_matches_rfc_6238() {
    // RFC 6238 appendix B, SHA-1, secret "12345678901234567890" (8 digits).
    let key = b"12345678901234567890";
    assert_eq!(totp_at(key, 59, 8), "94287082");
    assert_eq!(totp_at(key, 1111111109, 8), "07081804");
    assert_eq!(totp_at(key, 1234567890, 8), "89005924");
    assert_eq!(totp_at(key, 20000000000, 8), "65353130");
    assert_eq!(
        base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
        b"12345678901234567890"
    );
}

// ---- helpers -------------------------------------------------------------------------------

async fn default_app() -> TestApp {
    TestApp::with_config(|c| c.totp_required_roles = Config::default().totp_required_roles).await
}

async fn login_with(app: &TestApp, name: &str, totp: Option<&str>) -> (Status, Value) {
    let mut body = json!({"username": name, "password": PASSWORD});
    if let Some(t) = totp {
        body["totp"] = json!(t);
    }
    let res = app
        .client
        .post("/api/v1/login")
        .header(ContentType::JSON)
        .remote("10.9.8.7:4000".parse().unwrap())
        .body(body.to_string())
        .dispatch()
        .await;
    let status = res.status();
    (
        status,
        res.into_json::<Value>().await.unwrap_or(Value::Null),
    )
}

/// Enrols the person of `token` through the API; their secret and recovery codes.
async fn enrol(app: &TestApp, token: &str) -> (Vec<u8>, Vec<String>) {
    let (s, e) = app.post("/api/v1/me/totp", token, json!({})).await;
    assert_eq!(s, Status::Ok, "{e}");
    let secret = base32(e["secret"].as_str().unwrap());
    let (s, c) = app
        .post(
            "/api/v1/me/totp/confirm",
            token,
            json!({"code": code_now(&secret)}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{c}");
    let codes = c["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

fn code_of(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

async fn audit_details(app: &TestApp, action: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT coalesce(detail, '{}'::jsonb) FROM audit_events WHERE action = $1 ORDER BY pos",
    )
    .bind(action)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

// ---- the API -------------------------------------------------------------------------------

#[tokio::test]
async fn enrolment_then_sign_in_with_an_independently_computed_code() {
    let app = default_app().await;
    let (sup, token) = app.login_as(Role::Supervisor).await;
    let (s, me) = app.get("/api/v1/me", &token).await;
    assert_eq!(s, Status::Ok);
    assert_eq!(me["totp_enrolment_required"], true, "{me}");

    // A first enrolment, confirmed with a wrong code: refused, still pending.
    let (s, first) = app.post("/api/v1/me/totp", &token, json!({})).await;
    assert_eq!(s, Status::Ok, "{first}");
    let secret_text = first["secret"].as_str().unwrap().to_string();
    assert_eq!(secret_text.len(), 32, "160 bits in base32");
    assert_eq!(
        first["otpauth_uri"].as_str().unwrap(),
        format!(
            "otpauth://totp/Strongroom:{}?secret={secret_text}&issuer=Strongroom&algorithm=SHA1&digits=6&period=30",
            sup.username
        )
    );
    let wrong = if code_now(&base32(&secret_text)) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (s, body) = app
        .post("/api/v1/me/totp/confirm", &token, json!({"code": wrong}))
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{body}");
    assert_eq!(body["error"]["field"], "code");

    // Starting again replaces the pending secret: a code of the first one no longer works.
    let (s, second) = app.post("/api/v1/me/totp", &token, json!({})).await;
    assert_eq!(s, Status::Ok);
    let secret = base32(second["secret"].as_str().unwrap());
    assert_ne!(second["secret"], first["secret"]);
    let old = code_now(&base32(&secret_text));
    if old != code_now(&secret) && old != code_next(&secret) {
        let (s, _) = app
            .post("/api/v1/me/totp/confirm", &token, json!({"code": old}))
            .await;
        assert_eq!(s, Status::UnprocessableEntity);
    }

    // The secret is stored sealed, never readable.
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret_sealed FROM user_totp")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let secret_b32 = second["secret"].as_str().unwrap();
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_slice()));
    assert!(!sealed
        .windows(secret_b32.len())
        .any(|w| w == secret_b32.as_bytes()));

    // Confirmed with the app's current code: ten recovery codes, readable groups.
    let (s, c) = app
        .post(
            "/api/v1/me/totp/confirm",
            &token,
            json!({"code": code_now(&secret)}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{c}");
    let codes: Vec<&str> = c["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 10);
    assert!(codes
        .iter()
        .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'));
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT code_hash FROM user_recovery_codes")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
    for code in &codes {
        assert!(!stored
            .iter()
            .any(|h| h.windows(code.len()).any(|w| w == code.as_bytes())));
    }
    // Now the queue is open, and enrolling again is a conflict.
    let (s, _) = app.get("/api/v1/requests?to_approve=1", &token).await;
    assert_eq!(s, Status::Ok);
    let (s, body) = app.post("/api/v1/me/totp", &token, json!({})).await;
    assert_eq!(s, Status::Conflict, "{body}");

    // Sign-in: without a code 401 totp_required; with the next step's code, signed in.
    let (s, body) = login_with(&app, &sup.username, None).await;
    assert_eq!(s, Status::Unauthorized, "{body}");
    assert_eq!(code_of(&body), "totp_required");
    let next = code_next(&secret);
    let (s, body) = login_with(&app, &sup.username, Some(&next)).await;
    assert_eq!(s, Status::Ok, "{body}");
    let fresh = body["token"].as_str().unwrap().to_string();
    let (s, _) = app.get("/api/v1/requests?to_approve=1", &fresh).await;
    assert_eq!(s, Status::Ok);
    // The same code again (its step already used) is refused, as is the current step's.
    let (s, body) = login_with(&app, &sup.username, Some(&next)).await;
    assert_eq!(s, Status::Unauthorized, "{body}");
    assert_eq!(code_of(&body), "totp_invalid");
    let current = code_now(&secret);
    if current != next {
        let (s, _) = login_with(&app, &sup.username, Some(&current)).await;
        assert_eq!(s, Status::Unauthorized);
    }
    // A wrong password with a right code is a wrong password.
    let res = app
        .client
        .post("/api/v1/login")
        .header(ContentType::JSON)
        .body(
            json!({"username": sup.username, "password": "not the password at all", "totp": next})
                .to_string(),
        )
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Unauthorized);

    // The trail: the enrolments, the refused confirmation, the confirmation, the refused
    // replay; no secret or code in any of it.
    assert_eq!(app.audit_count("totp.enrol", "success").await, 2);
    assert_eq!(app.audit_count("totp.enrol", "denied").await, 1);
    assert!(app.audit_count("totp.confirm", "failure").await >= 1);
    assert_eq!(app.audit_count("totp.confirm", "success").await, 1);
    let reasons: Vec<String> = audit_details(&app, "auth.login")
        .await
        .iter()
        .filter_map(|d| d["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        reasons.contains(&"totp_replayed".to_string()),
        "{reasons:?}"
    );
    let trail: String =
        sqlx::query_scalar("SELECT string_agg(coalesce(detail::text, ''), ' ') FROM audit_events")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!trail.contains(secret_b32), "secret in the trail");
    assert!(!trail.contains(&next), "code in the trail");
    for code in &codes {
        assert!(!trail.contains(code));
    }
    assert!(!strongroom_logs_contain(secret_b32));
}

fn strongroom_logs_contain(s: &str) -> bool {
    crate::common::captured_logs().contains(s)
}

#[tokio::test]
async fn recovery_codes_work_once_each() {
    let app = default_app().await;
    let (auditor, token) = app.login_as(Role::Auditor).await;
    let (_, codes) = enrol(&app, &token).await;
    let (s, body) = login_with(&app, &auditor.username, Some(&codes[0])).await;
    assert_eq!(s, Status::Ok, "{body}");
    // Used: refused, and counted.
    let (s, body) = login_with(&app, &auditor.username, Some(&codes[0])).await;
    assert_eq!(s, Status::Unauthorized, "{body}");
    assert_eq!(code_of(&body), "totp_invalid");
    // Another, typed in lower case with a space for the dash: fine.
    let typed = codes[1].to_lowercase().replace('-', " ");
    let (s, body) = login_with(&app, &auditor.username, Some(&typed)).await;
    assert_eq!(s, Status::Ok, "{body}");
    // A made-up one is refused.
    let (s, _) = login_with(&app, &auditor.username, Some("ABCDE-FGHJK")).await;
    assert_eq!(s, Status::Unauthorized);
    assert_eq!(
        app.audit_count("totp.recovery_code_used", "success").await,
        2
    );
    let left: Vec<Value> = audit_details(&app, "totp.recovery_code_used").await;
    assert_eq!(left[1]["recovery_codes_left"], 8);
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_recovery_codes WHERE used_at IS NOT NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(used, 2);
}

#[tokio::test]
async fn wrong_codes_count_toward_the_lockout_like_wrong_passwords() {
    let app = TestApp::with_config(|c| {
        c.totp_required_roles = Config::default().totp_required_roles;
        c.login_max_failures = 3;
    })
    .await;
    let (sup, token) = app.login_as(Role::Supervisor).await;
    let (secret, _) = enrol(&app, &token).await;
    let right = code_next(&secret);
    let wrong: Vec<String> = (0..3)
        .map(|i| format!("{:06}", (right.parse::<u32>().unwrap() + 1 + i) % 1_000_000))
        .collect();
    for (i, w) in wrong.iter().enumerate() {
        let (s, body) = login_with(&app, &sup.username, Some(w)).await;
        assert_eq!(s, Status::Unauthorized, "attempt {i}: {body}");
    }
    // Locked: even the right code is refused now.
    let (s, body) = login_with(&app, &sup.username, Some(&right)).await;
    assert_eq!(s, Status::TooManyRequests, "{body}");
    assert_eq!(app.audit_count("auth.lockout", "success").await, 1);
    let failures: i32 = sqlx::query_scalar("SELECT failures FROM login_throttle WHERE key = $1")
        .bind(format!("user:{}", sup.username.to_lowercase()))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(failures, 3);
}

#[tokio::test]
async fn a_supervisor_without_a_second_factor_cannot_reach_the_approval_queue() {
    let app = default_app().await;
    let browser = Browser::new(&app, "sara", &[Role::Supervisor]).await;
    // The API: 403 totp_enrolment_required, for every route but enrolment and one's own.
    for path in [
        "/api/v1/requests?to_approve=1",
        "/api/v1/records?q=x",
        "/api/v1/users",
    ] {
        let (s, body) = app.get(path, browser.token()).await;
        assert_eq!(s, Status::Forbidden, "{path}: {body}");
        assert_eq!(code_of(&body), "totp_enrolment_required", "{path}");
    }
    let (s, _) = app.get("/api/v1/me", browser.token()).await;
    assert_eq!(s, Status::Ok);
    // The pages lead to enrolment, which explains why.
    for path in ["/approvals", "/", "/search"] {
        let a = browser.get(path).await;
        assert_eq!(a.status, Status::SeeOther, "{path}");
        assert_eq!(a.location.as_deref(), Some("/account/totp"), "{path}");
    }
    let page = browser.page("/account/totp").await;
    assert!(
        page.contains("Your role requires two-factor sign-in"),
        "{page}"
    );
    browser.page("/account").await;
    browser.page("/account/password").await;

    // Enrolled in the browser: the page shows the QR code and the key, then the codes.
    let page = browser.post("/account/totp", "/account/totp", &[]).await;
    assert_eq!(page.status, Status::Ok, "{}", page.html);
    assert!(page.html.contains("<svg role=\"img\""), "{}", page.html);
    let secret_text = page
        .html
        .split("data-secret=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let secret = base32(&secret_text);
    // A wrong code shows the same key again with the error beside the field.
    let wrong = if code_now(&secret) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let again = browser
        .post("/account/totp", "/account/totp/confirm", &[("code", wrong)])
        .await;
    assert_eq!(again.status, Status::UnprocessableEntity);
    assert!(again
        .html
        .contains(&format!("data-secret=\"{secret_text}\"")));
    assert!(again.html.contains("id=\"e-code\""), "{}", again.html);
    let done = browser
        .post(
            "/account/totp",
            "/account/totp/confirm",
            &[("code", &code_now(&secret))],
        )
        .await;
    assert_eq!(done.status, Status::Ok, "{}", done.html);
    assert_eq!(done.html.matches("class=\"recovery-code\"").count(), 10);
    // Now the queue opens.
    browser.page("/approvals").await;
    let (s, _) = app
        .get("/api/v1/requests?to_approve=1", browser.token())
        .await;
    assert_eq!(s, Status::Ok);
    assert!(browser.page("/account").await.contains("/account/totp"));
}

#[tokio::test]
async fn the_harness_default_forces_nobody() {
    // Under `totp_required_roles = ""` (the harness's setting), a supervisor reaches the
    // queue with a password alone.
    let app = TestApp::new().await;
    let (_, token) = app.login_as(Role::Supervisor).await;
    let (s, _) = app.get("/api/v1/requests?to_approve=1", &token).await;
    assert_eq!(s, Status::Ok);
}

#[tokio::test]
async fn an_administrator_resets_a_second_factor() {
    let app = default_app().await;
    let (admin, admin_token) = app.login_as(Role::Admin).await;
    enrol(&app, &admin_token).await;
    let (sup, sup_token) = app.login_as(Role::Supervisor).await;
    let (_, _) = enrol(&app, &sup_token).await;
    let (_, emp_token) = app.login_as(Role::Employee).await;

    // Not by a non-administrator; not one's own; an unknown account is 404.
    let res = app
        .client
        .delete(format!("/api/v1/users/{}/totp", sup.id))
        .header(bearer(&emp_token))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    let res = app
        .client
        .delete(format!("/api/v1/users/{}/totp", admin.id))
        .header(bearer(&admin_token))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Conflict);
    let res = app
        .client
        .delete(format!("/api/v1/users/{}/totp", uuid::Uuid::new_v4()))
        .header(bearer(&admin_token))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::NotFound);

    let res = app
        .client
        .delete(format!("/api/v1/users/{}/totp", sup.id))
        .header(bearer(&admin_token))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    // Their sessions ended; they sign in with the password and must enrol again.
    let (s, _) = app.get("/api/v1/me", &sup_token).await;
    assert_eq!(s, Status::Unauthorized);
    let (s, body) = login_with(&app, &sup.username, None).await;
    assert_eq!(s, Status::Ok, "{body}");
    let token = body["token"].as_str().unwrap();
    let (s, body) = app.get("/api/v1/requests?to_approve=1", token).await;
    assert_eq!(s, Status::Forbidden);
    assert_eq!(code_of(&body), "totp_enrolment_required");
    // A second reset finds nothing to reset.
    let res = app
        .client
        .delete(format!("/api/v1/users/{}/totp", sup.id))
        .header(bearer(&admin_token))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Conflict);
    assert_eq!(app.audit_count("totp.reset", "success").await, 1);
    assert_eq!(app.audit_count("totp.reset", "denied").await, 1);

    // The account page shows the state and offers the reset (after a confirmation).
    let b = Browser::with_token(&app, &admin_token);
    let (_, sup2_token) = (0, token.to_string());
    enrol(&app, &sup2_token).await;
    let page = b.page(&format!("/admin/users/{}", sup.id)).await;
    assert!(page.contains("data-enrolled=\"yes\""), "{page}");
    let from = format!("/admin/users/{}", sup.id);
    let action = format!("/admin/users/{}/totp-reset", sup.id);
    let ask = b.post(&from, &action, &[]).await;
    assert_eq!(ask.status, Status::Ok);
    assert!(ask.html.contains("role=\"alertdialog\""));
    let (_, page) = b.post_follow(&from, &action, &[("confirm", "yes")]).await;
    assert!(page.contains("data-enrolled=\"no\""), "{page}");
    assert_eq!(app.audit_count("totp.reset", "success").await, 2);
}

// ---- the browser's second step ---------------------------------------------------------

/// Posts a form to `path` as the sign-in pages do, with the cookies given.
async fn post_form(
    app: &TestApp,
    path: &str,
    cookies: &[Cookie<'static>],
    body: String,
) -> (Status, Option<String>, Vec<String>, String) {
    let mut req = app
        .client
        .post(path.to_string())
        .header(ContentType::Form)
        .header(Header::new("Sec-Fetch-Site", "same-origin"))
        .remote("10.9.8.7:4000".parse().unwrap())
        .body(body);
    for c in cookies {
        req = req.cookie(c.clone());
    }
    let res = req.dispatch().await;
    let status = res.status();
    let location = res.headers().get_one("Location").map(str::to_string);
    let set: Vec<String> = res
        .headers()
        .get("Set-Cookie")
        .map(str::to_string)
        .collect();
    let html = res.into_string().await.unwrap_or_default();
    (status, location, set, html)
}

fn cookie_value(set: &[String], name: &str) -> Option<String> {
    set.iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c[name.len() + 1..].split(';').next().unwrap().to_string())
}

#[tokio::test]
async fn the_web_sign_in_asks_for_the_code_on_a_second_page() {
    let app = default_app().await;
    let (sup, token) = app.login_as(Role::Supervisor).await;
    let (secret, codes) = enrol(&app, &token).await;

    let page = app.client.get("/login").dispatch().await;
    let csrf = page
        .cookies()
        .get("strongroom_login_csrf")
        .unwrap()
        .value()
        .to_string();
    let csrf_cookie = Cookie::new("strongroom_login_csrf", csrf.clone());
    let pw = PASSWORD.replace(' ', "+");
    let (s, to, set, _) = post_form(
        &app,
        "/login",
        std::slice::from_ref(&csrf_cookie),
        format!("username={}&password={pw}&csrf={csrf}", sup.username),
    )
    .await;
    assert_eq!(s, Status::SeeOther);
    assert_eq!(to.as_deref(), Some("/login/code"));
    assert!(
        cookie_value(&set, "strongroom_session").is_none(),
        "no session yet"
    );
    let challenge = cookie_value(&set, "strongroom_login_code").expect("the half-done sign-in");
    let header = set
        .iter()
        .find(|c| c.starts_with("strongroom_login_code="))
        .unwrap();
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    let challenge_cookie = Cookie::new("strongroom_login_code", challenge.clone());
    // The challenge is no session: the API does not take it.
    let (s, _) = app.get("/api/v1/me", &challenge).await;
    assert_eq!(s, Status::Unauthorized);

    // The second page, with the sign-in page's CSRF token.
    let res = app
        .client
        .get("/login/code")
        .cookie(csrf_cookie.clone())
        .cookie(challenge_cookie.clone())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let html = res.into_string().await.unwrap();
    assert_eq!(csrf_of(&html), csrf);
    assert!(html.contains("autocomplete=\"one-time-code\""));
    // Without its cookie, back to the password.
    let res = app.client.get("/login/code").dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);

    // A forged post (no token) is refused; a wrong code answers 401 and counts.
    let (s, _, _, _) = post_form(
        &app,
        "/login/code",
        &[csrf_cookie.clone(), challenge_cookie.clone()],
        "code=123456".into(),
    )
    .await;
    assert_eq!(s, Status::Forbidden);
    let right = code_next(&secret);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (s, _, _, html) = post_form(
        &app,
        "/login/code",
        &[csrf_cookie.clone(), challenge_cookie.clone()],
        format!("code={wrong}&csrf={csrf}"),
    )
    .await;
    assert_eq!(s, Status::Unauthorized);
    assert!(html.contains("role=\"alert\""), "{html}");
    let failures: i32 = sqlx::query_scalar("SELECT failures FROM login_throttle WHERE key = $1")
        .bind(format!("user:{}", sup.username.to_lowercase()))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(failures, 1);

    // The right code: signed in, the challenge closed.
    let (s, to, set, _) = post_form(
        &app,
        "/login/code",
        &[csrf_cookie.clone(), challenge_cookie.clone()],
        format!("code={right}&csrf={csrf}"),
    )
    .await;
    assert_eq!(s, Status::SeeOther);
    assert_eq!(to.as_deref(), Some("/"));
    let session = cookie_value(&set, "strongroom_session").expect("a session");
    let (s, _) = app.get("/api/v1/requests?to_approve=1", &session).await;
    assert_eq!(s, Status::Ok);
    let (s, to, _, _) = post_form(
        &app,
        "/login/code",
        &[csrf_cookie.clone(), challenge_cookie.clone()],
        format!("code={}&csrf={csrf}", codes[0]),
    )
    .await;
    assert_eq!(s, Status::SeeOther);
    assert_eq!(to.as_deref(), Some("/login"), "a used challenge is gone");
    assert_eq!(
        app.audit_count("totp.recovery_code_used", "success").await,
        0
    );
    let methods: Vec<Value> = audit_details(&app, "auth.login").await;
    assert!(methods.iter().any(|d| d["second_factor"] == "totp"));
}
