use rocket::http::Status;
use serde_json::json;
use strongroom::audit::{self, Verification};
use strongroom::users::Role;

use crate::common::{cluster, database_url, TestApp, PASSWORD};

#[tokio::test]
async fn every_account_action_leaves_an_audit_event() {
    let app = TestApp::new().await;
    let (_, admin) = app.login_as(Role::Admin).await;
    let (s, body) = app
        .post(
            "/api/v1/users",
            &admin,
            json!({"username": "kim", "password": PASSWORD, "roles": ["employee"]}),
        )
        .await;
    assert_eq!(s, Status::Created);
    let kim = body["id"].as_str().unwrap().to_string();
    let (_, login) = app.login("kim", PASSWORD).await;
    let token = login["token"].as_str().unwrap().to_string();
    app.login("kim", "definitely wrong").await;
    app.post("/api/v1/logout", &token, json!({})).await;
    app.post(&format!("/api/v1/users/{kim}/disable"), &admin, json!({}))
        .await;
    let actions = app.audit_actions().await;
    let expected = [
        ("user.create", "success"),  // the admin (test fixture)
        ("auth.login", "success"),   // admin
        ("user.create", "success"),  // kim
        ("auth.login", "success"),   // kim
        ("auth.login", "failure"),   // kim, wrong password
        ("auth.logout", "success"),  // kim
        ("user.disable", "success"), // kim
    ];
    let got: Vec<(&str, &str)> = actions
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(got, expected);
    // Each event names actor, address and request id where there was a request.
    let (actor, addr, rid): (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT actor, client_addr, request_id FROM audit_events WHERE action = 'user.disable'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(actor.starts_with("admin"));
    assert_eq!(addr.as_deref(), Some("10.9.8.7"));
    assert!(rid.is_some());
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact { events: 7 }
    );
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    // The triggers hold even for a superuser (the runtime role has no such privileges at
    // all: tests/it/db_roles.rs).
    let superuser = app.superuser_pool().await;
    for sql in [
        "UPDATE audit_events SET outcome = 'failure'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let err = sqlx::query(sql).execute(&superuser).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact { events: 2 }
    );
}

#[tokio::test]
async fn tampering_with_triggers_disabled_is_detected_and_named() {
    let app = TestApp::new().await;
    for _ in 0..3 {
        app.login_as(Role::Employee).await;
    }
    // Six events; a superuser disables the triggers and rewrites the fourth.
    let (id4,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM audit_events WHERE seq = 4")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let superuser = app.superuser_pool().await;
    let mut tx = superuser.begin().await.unwrap();
    sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET detail = '{\"forged\": true}' WHERE seq = 4")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_events ENABLE TRIGGER ALL")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    match audit::verify(&app.db).await.unwrap() {
        Verification::Broken { seq, id, .. } => {
            assert_eq!(seq, 4);
            assert_eq!(id, Some(id4));
        }
        other => panic!("tampering not detected: {other}"),
    }

    // The command line says the same and exits non-zero.
    let c = cluster().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .arg("verify-audit")
        .env("DATABASE_URL", database_url(c, &app.db_name))
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("BROKEN at event 4"), "{stdout}");
    assert!(stdout.contains(&id4.to_string()), "{stdout}");
}

#[tokio::test]
async fn a_deleted_event_is_detected() {
    let app = TestApp::new().await;
    for _ in 0..2 {
        app.login_as(Role::Employee).await;
    }
    let superuser = app.superuser_pool().await;
    let mut tx = superuser.begin().await.unwrap();
    sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_events WHERE seq = 2")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE audit_events ENABLE TRIGGER ALL")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    match audit::verify(&app.db).await.unwrap() {
        Verification::Broken { seq, .. } => assert_eq!(seq, 2),
        other => panic!("deletion not detected: {other}"),
    }
}

#[tokio::test]
async fn verify_audit_command_reports_an_intact_chain() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    let c = cluster().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .arg("verify-audit")
        .env("DATABASE_URL", database_url(c, &app.db_name))
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "audit chain OK: 2 events");
}

#[tokio::test]
async fn fifty_concurrent_logins_leave_one_intact_chain() {
    let app = TestApp::new().await;
    let mut names = Vec::new();
    for i in 0..10 {
        let name = format!("conc{i}");
        app.add_user(&name, &[Role::Employee], "Retail").await;
        names.push(name);
    }
    let mut tasks = Vec::new();
    for i in 0..50 {
        let name = names[i % names.len()].clone();
        // The first round fails once for each account (no lockout), so successes and
        // failures interleave in the chain.
        let password = if i < names.len() {
            "wrong wrong wrong".to_string()
        } else {
            PASSWORD.to_string()
        };
        tasks.push(async move { (name, password) });
    }
    let futures = tasks.into_iter().map(|t| {
        let app = &app;
        async move {
            let (name, password) = t.await;
            app.login(&name, &password).await.0
        }
    });
    let statuses = futures_join_all(futures).await;
    assert_eq!(statuses.iter().filter(|s| **s == Status::Ok).count(), 40);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == Status::Unauthorized)
            .count(),
        10
    );
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact { events: 60 }
    );
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(seqs, (1..=60).collect::<Vec<i64>>());
}

/// Runs the futures concurrently on this task and collects their outputs in order.
pub async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}
