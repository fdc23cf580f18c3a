use rocket::http::{ContentType, Cookie, Header, Status};
use serde_json::json;
use sha2::{Digest, Sha256};
use strongroom::users::Role;

use crate::common::{bearer, TestApp, PASSWORD};

#[tokio::test]
async fn right_password_signs_in_and_me_answers() {
    let app = TestApp::new().await;
    app.add_user("Alice", &[Role::Employee, Role::Archivist], "Retail")
        .await;
    // Usernames are case-insensitive.
    let (status, body) = app.login("alice", PASSWORD).await;
    assert_eq!(status, Status::Ok, "{body}");
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["user"]["username"], "Alice");
    let (status, me) = app.get("/api/v1/me", token).await;
    assert_eq!(status, Status::Ok);
    assert_eq!(me["username"], "Alice");
    assert_eq!(me["roles"], json!(["archivist", "employee"]));
    assert_eq!(app.audit_count("auth.login", "success").await, 1);
}

#[tokio::test]
async fn wrong_password_unknown_user_and_disabled_user_get_the_same_answer() {
    let app = TestApp::new().await;
    app.add_user("bob", &[Role::Employee], "Retail").await;
    let carol = app.add_user("carol", &[Role::Employee], "Retail").await;
    let (_, admin_token) = app.login_as(Role::Admin).await;
    let (s, _) = app
        .post(
            &format!("/api/v1/users/{}/disable", carol.id),
            &admin_token,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Ok);

    let wrong = app.login("bob", "not the password at all").await;
    let unknown = app.login("nobody", PASSWORD).await;
    let disabled = app.login("carol", PASSWORD).await;
    for (status, body) in [&wrong, &unknown, &disabled] {
        assert_eq!(*status, Status::Unauthorized, "{body}");
    }
    assert_eq!(wrong.1, unknown.1);
    assert_eq!(wrong.1, disabled.1);
    assert_eq!(wrong.1["error"]["code"], "invalid_credentials");
    assert_eq!(app.audit_count("auth.login", "failure").await, 3);
    // The audit trail (for auditors) does say why.
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT detail->>'reason' FROM audit_events WHERE action = 'auth.login' AND outcome = 'failure' ORDER BY pos",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        reasons,
        ["wrong_password", "unknown_account", "account_disabled"]
    );
}

#[tokio::test]
async fn lockout_kicks_in_after_repeated_failures_and_expires() {
    let app = TestApp::with_config(|c| {
        c.login_max_failures = 3;
        c.lockout_seconds = 600;
    })
    .await;
    app.add_user("dave", &[Role::Employee], "Retail").await;
    for _ in 0..3 {
        let (s, _) = app.login("dave", "wrong wrong wrong").await;
        assert_eq!(s, Status::Unauthorized);
    }
    // Locked: even the right password is refused now, with a distinct, non-revealing code.
    let (s, body) = app.login("dave", PASSWORD).await;
    assert_eq!(s, Status::TooManyRequests, "{body}");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    assert_eq!(app.audit_count("auth.lockout", "success").await, 1);
    assert_eq!(app.audit_count("auth.login", "denied").await, 1);

    // An unknown name locks the same way, so a lockout does not reveal that an account exists.
    for _ in 0..3 {
        app.login("ghost", "whatever it is").await;
    }
    assert_eq!(
        app.login("ghost", PASSWORD).await.0,
        Status::TooManyRequests
    );

    // Time passes: move the lock into the past rather than sleeping.
    sqlx::query("UPDATE login_throttle SET locked_until = now() - interval '1 second' WHERE key = 'user:dave'")
        .execute(&app.db)
        .await
        .unwrap();
    let (s, body) = app.login("dave", PASSWORD).await;
    assert_eq!(s, Status::Ok, "{body}");
    // And the counter starts over after the lock ended.
    let (s, _) = app.login("dave", "wrong again").await;
    assert_eq!(s, Status::Unauthorized);
}

#[tokio::test]
async fn lockout_per_client_address() {
    let app = TestApp::with_config(|c| {
        c.login_address_max_failures = 4;
    })
    .await;
    app.add_user("erin", &[Role::Employee], "Retail").await;
    // Four different names from one address: each name stays under its own limit.
    for i in 0..4 {
        assert_eq!(
            app.login(&format!("spray{i}"), "guess guess").await.0,
            Status::Unauthorized
        );
    }
    let (s, _) = app.login("erin", PASSWORD).await;
    assert_eq!(s, Status::TooManyRequests);
    // Another address is not affected.
    let res = app
        .client
        .post("/api/v1/login")
        .header(ContentType::JSON)
        .remote("10.1.1.1:1".parse().unwrap())
        .body(json!({"username": "erin", "password": PASSWORD}).to_string())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
}

#[tokio::test]
async fn disabling_a_user_ends_their_live_session() {
    let app = TestApp::new().await;
    let (frank, token) = app.login_as(Role::Employee).await;
    assert_eq!(app.get("/api/v1/me", &token).await.0, Status::Ok);
    let (_, admin_token) = app.login_as(Role::Admin).await;
    let (s, body) = app
        .post(
            &format!("/api/v1/users/{}/disable", frank.id),
            &admin_token,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{body}");
    assert_eq!(body["status"], "disabled");
    let (s, body) = app.get("/api/v1/me", &token).await;
    assert_eq!(s, Status::Unauthorized);
    assert_eq!(body["error"]["code"], "not_authenticated");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1")
        .bind(frank.id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(app.audit_count("user.disable", "success").await, 1);
}

#[tokio::test]
async fn a_session_token_is_stored_only_as_its_hash() {
    let app = TestApp::new().await;
    let (_, token) = app.login_as(Role::Employee).await;
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT token_hash FROM sessions")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, Sha256::digest(token.as_bytes()).to_vec());
    // The token appears nowhere in the table's text.
    let dump: String = sqlx::query_scalar("SELECT string_agg(s::text, '|') FROM sessions s")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!dump.contains(&token));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::new().await;
    let (_, token) = app.login_as(Role::Employee).await;
    let (s, _) = app.post("/api/v1/logout", &token, json!({})).await;
    assert_eq!(s, Status::Ok);
    assert_eq!(app.get("/api/v1/me", &token).await.0, Status::Unauthorized);
    assert_eq!(app.audit_count("auth.logout", "success").await, 1);
}

#[tokio::test]
async fn idle_and_absolute_expiry_end_sessions() {
    let app = TestApp::new().await;
    let (u, token) = app.login_as(Role::Employee).await;
    sqlx::query(
        "UPDATE sessions SET last_seen_at = now() - interval '31 minutes' WHERE user_id = $1",
    )
    .bind(u.id)
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(app.get("/api/v1/me", &token).await.0, Status::Unauthorized);

    let (u, token) = app.login_as(Role::Employee).await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_id = $1")
        .bind(u.id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.get("/api/v1/me", &token).await.0, Status::Unauthorized);
}

#[tokio::test]
async fn form_posts_without_csrf_token_are_refused() {
    let app = TestApp::new().await;
    app.add_user("gina", &[Role::Employee], "Retail").await;
    // Sign-in form without the token from the sign-in page.
    let res = app
        .client
        .post("/login")
        .header(ContentType::Form)
        .body(format!(
            "username=gina&password={}",
            PASSWORD.replace(' ', "+")
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    // With a token that does not match the cookie.
    let page = app.client.get("/login").dispatch().await;
    assert_eq!(page.status(), Status::Ok);
    let csrf_cookie = page
        .cookies()
        .get("strongroom_login_csrf")
        .unwrap()
        .value()
        .to_string();
    let res = app
        .client
        .post("/login")
        .header(ContentType::Form)
        .cookie(Cookie::new("strongroom_login_csrf", csrf_cookie.clone()))
        .body(format!(
            "username=gina&password={}&csrf=forged",
            PASSWORD.replace(' ', "+")
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    // A planted cookie posted back with its own value from a sibling subdomain or another
    // site (the browser says so in Sec-Fetch-Site): refused, token or not.
    for site in ["same-site", "cross-site"] {
        let res = app
            .client
            .post("/login")
            .header(ContentType::Form)
            .header(rocket::http::Header::new("Sec-Fetch-Site", site))
            .cookie(Cookie::new("strongroom_login_csrf", "attackerchosen"))
            .body(format!(
                "username=gina&password={}&csrf=attackerchosen",
                PASSWORD.replace(' ', "+")
            ))
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Forbidden, "{site}");
    }
    // With the right token it works and sets an HttpOnly, SameSite=Strict session cookie
    // (from the sign-in page itself, as the browser says).
    let res = app
        .client
        .post("/login")
        .header(ContentType::Form)
        .header(rocket::http::Header::new("Sec-Fetch-Site", "same-origin"))
        .cookie(Cookie::new("strongroom_login_csrf", csrf_cookie.clone()))
        .body(format!(
            "username=gina&password={}&csrf={csrf_cookie}",
            PASSWORD.replace(' ', "+")
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::SeeOther);
    let set_cookie: Vec<&str> = res.headers().get("Set-Cookie").collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("strongroom_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(!session.contains("Secure"), "plain http: {session}");
    let token = session
        .trim_start_matches("strongroom_session=")
        .split(';')
        .next()
        .unwrap()
        .to_string();

    // A signed-in form post (sign-out) without the session's CSRF token is refused.
    let res = app
        .client
        .post("/logout")
        .header(ContentType::Form)
        .cookie(Cookie::new("strongroom_session", token.clone()))
        .body("csrf=wrong")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Forbidden);
    assert_eq!(app.get("/api/v1/me", &token).await.0, Status::Ok);
}

#[tokio::test]
async fn secure_cookie_when_served_over_tls() {
    let app = TestApp::with_config(|c| c.public_url = Some("https://vault.example".into())).await;
    app.add_user("hank", &[Role::Employee], "Retail").await;
    let res = app
        .client
        .post("/api/v1/login")
        .header(ContentType::JSON)
        .body(json!({"username": "hank", "password": PASSWORD}).to_string())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let c: Vec<&str> = res.headers().get("Set-Cookie").collect();
    assert!(
        c.iter()
            .any(|c| c.starts_with("strongroom_session=") && c.contains("Secure")),
        "{c:?}"
    );
}

#[tokio::test]
async fn one_time_password_must_be_changed_before_anything_else() {
    let app = TestApp::new().await;
    let password = strongroom::users::bootstrap_admin(&app.db, &app.app().hasher)
        .await
        .unwrap()
        .unwrap();
    let password = secrecy::ExposeSecret::expose_secret(&password).to_string();
    // Bootstrap happens once.
    assert!(
        strongroom::users::bootstrap_admin(&app.db, &app.app().hasher)
            .await
            .unwrap()
            .is_none()
    );
    let (s, body) = app.login("admin", &password).await;
    assert_eq!(s, Status::Ok, "{body}");
    assert_eq!(body["user"]["must_change_password"], true);
    let token = body["token"].as_str().unwrap().to_string();
    let (s, body) = app.get("/api/v1/users", &token).await;
    assert_eq!(s, Status::Forbidden);
    assert_eq!(body["error"]["code"], "password_change_required");
    // The HTML start page sends the person to the password form.
    let res = app.client.get("/").header(bearer(&token)).dispatch().await;
    assert_eq!(res.status(), Status::SeeOther);
    assert_eq!(res.headers().get_one("Location"), Some("/account/password"));

    let (s, body) = app
        .post(
            "/api/v1/me/password",
            &token,
            json!({"current_password": "nope", "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{body}");
    let (s, body) = app
        .post(
            "/api/v1/me/password",
            &token,
            json!({"current_password": password, "new_password": "short"}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("12"));
    let (s, body) = app
        .post(
            "/api/v1/me/password",
            &token,
            json!({"current_password": password, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(s, Status::Ok, "{body}");
    assert_eq!(app.get("/api/v1/users", &token).await.0, Status::Ok);
    assert_eq!(app.login("admin", &password).await.0, Status::Unauthorized);
    assert_eq!(
        app.login("admin", "a brand new passphrase").await.0,
        Status::Ok
    );
    assert_eq!(app.audit_count("user.password_change", "success").await, 1);
    assert_eq!(app.audit_count("user.password_change", "failure").await, 1);
}

#[tokio::test]
async fn only_admins_manage_accounts() {
    let app = TestApp::new().await;
    let (_, employee) = app.login_as(Role::Employee).await;
    let new_user = json!({"username": "ivy", "password": "a long passphrase for her", "roles": ["employee"], "department": "Retail", "display_name": "Ivy"});
    let (s, body) = app.post("/api/v1/users", &employee, new_user.clone()).await;
    assert_eq!(s, Status::Forbidden, "{body}");
    let (_, admin) = app.login_as(Role::Admin).await;
    let (s, body) = app.post("/api/v1/users", &admin, new_user.clone()).await;
    assert_eq!(s, Status::Created, "{body}");
    assert_eq!(body["roles"], json!(["employee"]));
    assert!(body.get("password_hash").is_none());
    // Case-insensitive uniqueness.
    let mut dup = new_user.clone();
    dup["username"] = json!("IVY");
    let (s, body) = app.post("/api/v1/users", &admin, dup).await;
    assert_eq!(s, Status::Conflict, "{body}");
    // Bad input names the field.
    let (s, body) = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "bad name!", "password": "long enough pass", "roles": ["employee"]}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity);
    assert_eq!(body["error"]["field"], "username");
    let (s, body) = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "jo", "password": "long enough pass", "roles": ["wizard"]}),
        )
        .await;
    assert_eq!(s, Status::UnprocessableEntity, "{body}");
    assert_eq!(app.audit_count("user.create", "success").await, 3);
}

#[tokio::test]
async fn the_last_admin_cannot_be_disabled() {
    let app = TestApp::new().await;
    let (admin, token) = app.login_as(Role::Admin).await;
    let (s, body) = app
        .post(
            &format!("/api/v1/users/{}/disable", admin.id),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(s, Status::Conflict, "{body}");
}

/// Two administrators taking each other's role (or account) away at the same moment: one
/// change goes through, the other is refused as leaving no administrator, every time.
#[tokio::test]
async fn two_administrators_removing_each_other_at_once_leave_one() {
    let app = TestApp::new().await;
    for round in 0..6 {
        let a = app
            .add_user(&format!("adm.a{round}"), &[Role::Admin], "IT")
            .await;
        let b = app
            .add_user(&format!("adm.b{round}"), &[Role::Admin], "IT")
            .await;
        let ta = app.login(&a.username, PASSWORD).await.1["token"]
            .as_str()
            .unwrap()
            .to_string();
        let tb = app.login(&b.username, PASSWORD).await.1["token"]
            .as_str()
            .unwrap()
            .to_string();
        // The admins of earlier rounds are out of the way: only a and b hold the role.
        sqlx::query(
            "UPDATE users SET roles = '{employee}' WHERE 'admin' = ANY(roles) AND id <> ALL($1)",
        )
        .bind(vec![a.id, b.id])
        .execute(&app.db)
        .await
        .unwrap();
        // Both changes are held at the door (their accounts' rows locked by a third party)
        // and let go together, so they check the count at the same moment.
        let mut door = app.db.begin().await.unwrap();
        sqlx::query("SELECT id FROM users WHERE id = ANY($1) FOR UPDATE")
            .bind(vec![a.id, b.id])
            .execute(&mut *door)
            .await
            .unwrap();
        let open_door = async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            door.commit().await.unwrap();
        };
        let (ra, rb) = if round % 2 == 0 {
            let patch = |token: &str, id| {
                app.client
                    .patch(format!("/api/v1/users/{id}"))
                    .header(bearer(token))
                    .header(ContentType::JSON)
                    .body(json!({"roles": ["employee"]}).to_string())
            };
            let (x, y, ()) = tokio::join!(
                patch(&ta, b.id).dispatch(),
                patch(&tb, a.id).dispatch(),
                open_door
            );
            (x.status(), y.status())
        } else {
            let disable = |token: &str, id| {
                app.client
                    .post(format!("/api/v1/users/{id}/disable"))
                    .header(bearer(token))
                    .header(ContentType::JSON)
                    .body("{}")
            };
            let (x, y, ()) = tokio::join!(
                disable(&ta, b.id).dispatch(),
                disable(&tb, a.id).dispatch(),
                open_door
            );
            (x.status(), y.status())
        };
        // The second is refused: as the last administrator (409), or because its author is
        // no longer an administrator (403) or no longer signed in (401) by then.
        let mut answers = [ra.code, rb.code];
        answers.sort();
        assert!(
            answers[0] == 200 && [401, 403, 409].contains(&answers[1]),
            "round {round}: {ra} and {rb}"
        );
        let admins: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE status = 'active' AND 'admin' = ANY(roles)",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(admins, 1, "round {round}");
    }
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs() {
    let app = TestApp::new().await;
    let marker = format!("pw-marker-{}", uuid::Uuid::new_v4().simple());
    let name = format!(
        "logcheck{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let res = app
        .client
        .post("/api/v1/users")
        .header(ContentType::JSON)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Unauthorized);
    let (_, admin) = app.login_as(Role::Admin).await;
    let (s, _) = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": name, "password": marker, "roles": ["employee"]}),
        )
        .await;
    assert_eq!(s, Status::Created);
    let (s, body) = app.login(&name, &marker).await;
    assert_eq!(s, Status::Ok);
    let token = body["token"].as_str().unwrap().to_string();
    app.login(&name, &format!("{marker}-wrong")).await;
    app.get("/api/v1/me", &token).await;
    let logs = crate::common::captured_logs();
    // The capture works: the sign-in was logged, with a request id.
    assert!(logs.contains("signed in"), "no sign-in line captured");
    assert!(logs.contains("request_id"));
    assert!(!logs.contains(&marker), "password found in logs");
    assert!(!logs.contains(&token), "session token found in logs");
    assert!(!logs.contains("$argon2id$"), "password hash found in logs");
    // Nor in the audit trail.
    let audit: String = sqlx::query_scalar("SELECT string_agg(a::text, '|') FROM audit_events a")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!audit.contains(&marker) && !audit.contains(&token));
}

/// Dispatches `n` sign-ins at once (all polled together, as parallel clients would be);
/// returns each answer's status, error code and `Retry-After` header.
async fn parallel_logins(
    app: &TestApp,
    n: usize,
    name: impl Fn(usize) -> String,
    password: &str,
) -> Vec<(Status, String, Option<String>)> {
    let requests = (0..n).map(|i| {
        app.client
            .post("/api/v1/login")
            .header(ContentType::JSON)
            .remote("10.9.8.7:4000".parse().unwrap())
            .body(json!({"username": name(i), "password": password}).to_string())
            .dispatch()
    });
    let mut out = Vec::new();
    for res in futures_util::future::join_all(requests).await {
        let status = res.status();
        let retry = res.headers().get_one("Retry-After").map(str::to_string);
        let body: serde_json::Value = res.into_json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("").to_string();
        out.push((status, code, retry));
    }
    out
}

#[tokio::test]
async fn a_full_hashing_gate_answers_503_with_retry_after_and_counts_no_failure() {
    let app = TestApp::with_config(|c| {
        c.hash_concurrency = 2;
        c.hash_wait_ms = 0;
    })
    .await;
    app.add_user("ivan", &[Role::Employee], "Retail").await;
    let hasher = app.app().hasher.clone();
    let held = hasher.occupy_all().await.expect("the gate's permits");
    let res = app
        .client
        .post("/api/v1/login")
        .header(ContentType::JSON)
        .remote("10.9.8.7:4000".parse().unwrap())
        .body(json!({"username": "ivan", "password": PASSWORD}).to_string())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert_eq!(res.headers().get_one("Retry-After"), Some("2"));
    let body: serde_json::Value = res.into_json().await.unwrap();
    assert_eq!(body["error"]["code"], "busy");
    // The HTML sign-in answers the same way.
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
        .header(ContentType::Form)
        .cookie(Cookie::new("strongroom_login_csrf", csrf.clone()))
        .body(format!(
            "username=ivan&password={}&csrf={csrf}",
            PASSWORD.replace(' ', "+")
        ))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert_eq!(res.headers().get_one("Retry-After"), Some("2"));
    // Account creation and password changes pass the same gate.
    drop(held);
    let (_, admin) = app.login_as(Role::Admin).await;
    let held = hasher.occupy_all().await.expect("the gate's permits");
    let (s, body) = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "judy", "password": "another sturdy passphrase", "roles": ["employee"]}),
        )
        .await;
    assert_eq!(s, Status::ServiceUnavailable, "{body}");
    // Ran: the two accounts' creation and the administrator's sign-in; nothing else.
    assert_eq!(hasher.stats().computed, 3);
    assert_eq!(hasher.stats().refused, 3);
    // A refused attempt was never a guess: nothing counted, no failure audited.
    let failures: Option<i32> =
        sqlx::query_scalar("SELECT failures FROM login_throttle WHERE key = 'user:ivan'")
            .fetch_optional(&app.db)
            .await
            .unwrap();
    assert_eq!(failures.unwrap_or(0), 0);
    assert_eq!(app.audit_count("auth.login", "failure").await, 0);
    drop(held);
    assert_eq!(app.login("ivan", PASSWORD).await.0, Status::Ok);
}

#[tokio::test]
async fn parallel_sign_ins_never_run_more_hashes_than_the_cap() {
    let app = TestApp::with_config(|c| {
        c.hash_concurrency = 1;
        c.hash_wait_ms = 0;
    })
    .await;
    let answers = parallel_logins(&app, 40, |i| format!("nobody{i}"), "some wrong guess").await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|(s, _, _)| *s == Status::ServiceUnavailable)
        .collect();
    for (s, code, retry) in &answers {
        match *s {
            Status::Unauthorized => assert_eq!(code, "invalid_credentials"),
            Status::ServiceUnavailable => {
                assert_eq!(code, "busy");
                assert_eq!(retry.as_deref(), Some("2"));
            }
            other => panic!("unexpected {other}: {code}"),
        }
    }
    let stats = app.app().hasher.stats();
    assert_eq!(stats.peak, 1, "{stats:?}");
    assert_eq!(stats.refused as usize, busy.len(), "{stats:?}");
    assert_eq!(stats.computed as usize, 40 - busy.len(), "{stats:?}");
    assert!(
        !busy.is_empty(),
        "40 sign-ins at once through one slot: some must be refused"
    );
}

#[tokio::test]
async fn parallel_wrong_passwords_are_checked_no_more_than_the_limit() {
    let app = TestApp::with_config(|c| {
        c.login_max_failures = 5;
        // Generous, so no attempt is refused for capacity here.
        c.hash_wait_ms = 600_000;
    })
    .await;
    app.add_user("kate", &[Role::Employee], "Retail").await;
    let before = app.app().hasher.stats().computed;
    let answers = parallel_logins(&app, 30, |_| "kate".into(), "wrong guess 12345").await;
    let checked = answers
        .iter()
        .filter(|(s, _, _)| *s == Status::Unauthorized)
        .count();
    let refused = answers
        .iter()
        .filter(|(s, c, _)| *s == Status::TooManyRequests && c == "too_many_attempts")
        .count();
    assert_eq!(checked, 5, "{answers:?}");
    assert_eq!(refused, 25, "{answers:?}");
    assert_eq!(app.app().hasher.stats().computed - before, 5);
    assert_eq!(app.audit_count("auth.login", "failure").await, 5);
    assert_eq!(app.audit_count("auth.login", "denied").await, 25);
    assert_eq!(app.audit_count("auth.lockout", "success").await, 1);
    // Locked now, for the right password too.
    assert_eq!(app.login("kate", PASSWORD).await.0, Status::TooManyRequests);
}

#[tokio::test]
async fn a_success_clears_the_count_but_failures_add_up_to_the_lockout() {
    let app = TestApp::with_config(|c| c.login_max_failures = 3).await;
    app.add_user("liam", &[Role::Employee], "Retail").await;
    for _ in 0..2 {
        assert_eq!(
            app.login("liam", "wrong wrong").await.0,
            Status::Unauthorized
        );
    }
    assert_eq!(app.login("liam", PASSWORD).await.0, Status::Ok);
    for _ in 0..2 {
        assert_eq!(
            app.login("liam", "wrong wrong").await.0,
            Status::Unauthorized
        );
    }
    assert_eq!(app.login("liam", PASSWORD).await.0, Status::Ok);
    assert_eq!(app.audit_count("auth.lockout", "success").await, 0);
    // The address counter does not count successes.
    let addr: i32 =
        sqlx::query_scalar("SELECT failures FROM login_throttle WHERE key = 'addr:10.9.8.7'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(addr, 4);
}

async fn change_password(
    app: &TestApp,
    token: &str,
    current: &str,
    new: &str,
) -> (Status, serde_json::Value) {
    app.post(
        "/api/v1/me/password",
        token,
        json!({"current_password": current, "new_password": new}),
    )
    .await
}

#[tokio::test]
async fn a_stolen_session_cannot_guess_the_current_password() {
    let app = TestApp::with_config(|c| c.login_max_failures = 3).await;
    let (mona, token) = app.login_as(Role::Employee).await;
    for i in 0..3 {
        let (s, body) = change_password(
            &app,
            &token,
            &format!("guess number {i}"),
            "a brand new passphrase",
        )
        .await;
        assert_eq!(s, Status::UnprocessableEntity, "{body}");
        assert_eq!(body["error"]["field"], "current_password");
    }
    // Locked: the right password is refused too, here and at sign-in.
    let (s, body) = change_password(&app, &token, PASSWORD, "a brand new passphrase").await;
    assert_eq!(s, Status::TooManyRequests, "{body}");
    assert_eq!(body["error"]["code"], "too_many_attempts");
    assert_eq!(
        app.login(&mona.username, PASSWORD).await.0,
        Status::TooManyRequests
    );
    assert_eq!(app.audit_count("user.password_change", "failure").await, 3);
    assert_eq!(app.audit_count("user.password_change", "denied").await, 1);
    assert_eq!(app.audit_count("auth.lockout", "success").await, 1);
    assert_eq!(app.audit_count("user.password_change", "success").await, 0);
    let failures: Vec<String> = sqlx::query_scalar(
        "SELECT object_id FROM audit_events WHERE action = 'user.password_change' AND outcome = 'failure'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(failures, vec![mona.id.0.to_string(); 3]);
}

#[tokio::test]
async fn parallel_guesses_of_the_current_password_are_capped_too() {
    let app = TestApp::with_config(|c| {
        c.login_max_failures = 4;
        c.hash_wait_ms = 600_000;
    })
    .await;
    let (_, token) = app.login_as(Role::Employee).await;
    let requests = (0..20).map(|i| {
        app.client
            .post("/api/v1/me/password")
            .header(ContentType::JSON)
            .header(bearer(&token))
            .body(
                json!({"current_password": format!("guess {i}"), "new_password": "a brand new passphrase"})
                    .to_string(),
            )
            .dispatch()
    });
    let statuses: Vec<Status> = futures_util::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == Status::UnprocessableEntity)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == Status::TooManyRequests)
        .count();
    assert_eq!((checked, refused), (4, 16), "{statuses:?}");
    assert_eq!(app.audit_count("user.password_change", "failure").await, 4);
}

#[tokio::test]
async fn a_right_current_password_changes_it_and_clears_the_count() {
    let app = TestApp::with_config(|c| c.login_max_failures = 3).await;
    let (nora, token) = app.login_as(Role::Employee).await;
    let (s, _) = change_password(&app, &token, "not it at all", "a brand new passphrase").await;
    assert_eq!(s, Status::UnprocessableEntity);
    let (s, body) = change_password(&app, &token, PASSWORD, "a brand new passphrase").await;
    assert_eq!(s, Status::Ok, "{body}");
    let left: Option<i32> =
        sqlx::query_scalar("SELECT failures FROM login_throttle WHERE key = $1")
            .bind(format!("user:{}", nora.username.to_lowercase()))
            .fetch_optional(&app.db)
            .await
            .unwrap();
    assert_eq!(left, None);
    assert_eq!(
        app.login(&nora.username, "a brand new passphrase").await.0,
        Status::Ok
    );
}

/// A browser sends the session cookie with any post, a forged cross-site form included; so
/// a cookie-authenticated write to the JSON API must carry a JSON body or the page's CSRF
/// header, even on routes that take no body. Bearer callers are not browsers.
#[tokio::test]
async fn cookie_writes_to_the_api_need_json_or_the_csrf_header() {
    let app = TestApp::new().await;
    let admin = app.user_token("root.admin", &[Role::Admin], "IT").await;
    let target = app.add_user("lena", &[Role::Employee], "Retail").await;
    let disable = format!("/api/v1/users/{}/disable", target.id);
    let enable = format!("/api/v1/users/{}/enable", target.id);
    let active = |app: &TestApp| {
        let id = target.id;
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT disabled_at IS NULL FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let session = Cookie::new("strongroom_session", admin.clone());
    // As a forged form would: a form body, a text/plain body, or none at all.
    // Another body type is refused as the JSON routes refuse it (415); none at all, as a
    // forged form (403).
    for (ct, body, refused) in [
        (Some(ContentType::Form), "x=1", Status::UnsupportedMediaType),
        (Some(ContentType::Plain), "{}", Status::UnsupportedMediaType),
        (None, "", Status::Forbidden),
    ] {
        let mut req = app
            .client
            .post(disable.clone())
            .cookie(session.clone())
            .body(body);
        if let Some(ct) = ct.clone() {
            req = req.header(ct);
        }
        let res = req.dispatch().await;
        assert_eq!(res.status(), refused, "{ct:?}");
        assert!(active(&app).await, "{ct:?}: the account was disabled");
    }
    // A page's script: JSON, or the session's CSRF header.
    let res = app
        .client
        .post(disable.clone())
        .cookie(session.clone())
        .header(ContentType::JSON)
        .body("{}")
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert!(!active(&app).await);
    let csrf: String = sqlx::query_scalar("SELECT csrf_token FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = 'root.admin')")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let res = app
        .client
        .post(enable.clone())
        .cookie(session.clone())
        .header(Header::new("X-CSRF-Token", csrf))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert!(active(&app).await);
    // A bearer token needs neither.
    let res = app
        .client
        .post(disable.clone())
        .header(bearer(&admin))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert!(!active(&app).await);
}
