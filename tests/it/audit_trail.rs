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
    chain(&app).await;
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact {
            events: 7,
            pending: 0
        }
    );
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    chain(&app).await;
    // The triggers hold even for a superuser (the runtime role has no such privileges at
    // all: tests/it/db_roles.rs).
    let superuser = app.superuser_pool().await;
    for sql in [
        "UPDATE audit_events SET outcome = 'failure'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_chain SET hash = prev_hash",
        "DELETE FROM audit_chain",
        "TRUNCATE audit_chain",
    ] {
        let err = sqlx::query(sql).execute(&superuser).await.unwrap_err();
        // TRUNCATE of the events meets the chain's foreign key before the trigger.
        assert!(
            err.to_string().contains("append-only") || err.to_string().contains("foreign key"),
            "{sql}: {err}"
        );
    }
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact {
            events: 2,
            pending: 0
        }
    );
}

/// Chains every committed event, as the server's sequencer does within a second.
pub async fn chain(app: &TestApp) -> u64 {
    audit::sequence_all(&app.db).await.unwrap()
}

/// The id of the event at chain position `seq`.
async fn event_at(app: &TestApp, seq: i64) -> uuid::Uuid {
    sqlx::query_scalar("SELECT event_id FROM audit_chain WHERE seq = $1")
        .bind(seq)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Runs `sqls` as a superuser would, with every trigger of the audit tables disabled.
pub async fn tamper(app: &TestApp, sqls: &[&str]) {
    let superuser = app.superuser_pool().await;
    let mut tx = superuser.begin().await.unwrap();
    for t in ["audit_events", "audit_chain"] {
        sqlx::query(&format!("ALTER TABLE {t} DISABLE TRIGGER ALL"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    for sql in sqls {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    for t in ["audit_events", "audit_chain"] {
        sqlx::query(&format!("ALTER TABLE {t} ENABLE TRIGGER ALL"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn tampering_with_triggers_disabled_is_detected_and_named() {
    let app = TestApp::new().await;
    for _ in 0..3 {
        app.login_as(Role::Employee).await;
    }
    chain(&app).await;
    // Six events; a superuser disables the triggers and rewrites the fourth.
    let id4 = event_at(&app, 4).await;
    tamper(
        &app,
        &[&format!(
            "UPDATE audit_events SET detail = '{{\"forged\": true}}' WHERE id = '{id4}'"
        )],
    )
    .await;
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
    chain(&app).await;
    let id2 = event_at(&app, 2).await;
    tamper(
        &app,
        &[&format!("DELETE FROM audit_events WHERE id = '{id2}'")],
    )
    .await;
    match audit::verify(&app.db).await.unwrap() {
        Verification::Broken { seq, id, .. } => {
            assert_eq!(seq, 2);
            assert_eq!(id, Some(id2));
        }
        other => panic!("deletion not detected: {other}"),
    }
}

#[tokio::test]
async fn an_event_removed_with_its_chain_entry_is_detected() {
    let app = TestApp::new().await;
    for _ in 0..2 {
        app.login_as(Role::Employee).await;
    }
    chain(&app).await;
    let id2 = event_at(&app, 2).await;
    tamper(
        &app,
        &[
            "DELETE FROM audit_chain WHERE seq = 2",
            &format!("DELETE FROM audit_events WHERE id = '{id2}'"),
        ],
    )
    .await;
    match audit::verify(&app.db).await.unwrap() {
        Verification::Broken { seq, reason, .. } => {
            assert_eq!(seq, 2);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("removal not detected: {other}"),
    }
}

#[tokio::test]
async fn reordered_events_are_detected() {
    let app = TestApp::new().await;
    for _ in 0..2 {
        app.login_as(Role::Employee).await;
    }
    chain(&app).await;
    let (id2, id3) = (event_at(&app, 2).await, event_at(&app, 3).await);
    // Swap which event sits at positions 2 and 3, keeping the stored hashes.
    tamper(
        &app,
        &[
            "UPDATE audit_chain SET event_id = '00000000-0000-0000-0000-000000000000' WHERE seq = 2",
            &format!("UPDATE audit_chain SET event_id = '{id2}' WHERE seq = 3"),
            &format!("UPDATE audit_chain SET event_id = '{id3}' WHERE seq = 2"),
        ],
    )
    .await;
    match audit::verify(&app.db).await.unwrap() {
        Verification::Broken { seq, id, .. } => {
            assert_eq!(seq, 2);
            assert_eq!(id, Some(id3));
        }
        other => panic!("reordering not detected: {other}"),
    }
}

#[tokio::test]
async fn an_event_slipped_in_behind_the_head_is_detected() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    chain(&app).await;
    // An event inserted around the sequencer, placed before the head's position.
    tamper(
        &app,
        &[
            "INSERT INTO audit_events (id, occurred_at, actor, action, outcome, detail, pos, xid)              VALUES ('11111111-1111-1111-1111-111111111111', now(), 'x', 'auth.login', 'success', '{}', -1, '0')",
        ],
    )
    .await;
    match audit::verify(&app.db).await.unwrap() {
        Verification::Broken { id, reason, .. } => {
            assert_eq!(
                id,
                Some("11111111-1111-1111-1111-111111111111".parse().unwrap())
            );
            assert!(reason.contains("not in the chain"), "{reason}");
        }
        other => panic!("stray event not detected: {other}"),
    }
}

#[tokio::test]
async fn the_database_assigns_an_events_position() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    chain(&app).await;
    // With the triggers on, a caller cannot choose where its event sits.
    sqlx::query(
        "INSERT INTO audit_events (id, occurred_at, actor, action, outcome, detail, pos, xid) \
         VALUES ('22222222-2222-2222-2222-222222222222', now(), 'x', 'auth.login', 'success', '{}', -5, '0')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (pos, xid): (i64, String) = sqlx::query_as(
        "SELECT pos, xid::text FROM audit_events WHERE id = '22222222-2222-2222-2222-222222222222'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(pos > 2 && xid != "0", "{pos} {xid}");
    chain(&app).await;
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact {
            events: 3,
            pending: 0
        }
    );
}

#[tokio::test]
async fn unchained_events_are_reported_then_chained() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact {
            events: 0,
            pending: 2
        }
    );
    assert_eq!(chain(&app).await, 2);
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact {
            events: 2,
            pending: 0
        }
    );
}

#[tokio::test]
async fn a_hundred_concurrent_audited_actions_leave_one_intact_chain() {
    let app = TestApp::new().await;
    let (_, token) = app.login_as(Role::Archivist).await;
    // 20 tasks, 5 audited category reads each, chained while they run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sequencer = {
        let pool = app.db.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                audit::sequence(&pool).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let tasks = (0..20).map(|_| {
        let app = &app;
        let token = token.clone();
        async move {
            let mut ok = 0;
            for _ in 0..5 {
                let (s, _) = app.get("/api/v1/records?q=anything", &token).await;
                ok += usize::from(s == Status::Ok);
            }
            ok
        }
    });
    let oks: usize = futures_join_all(tasks).await.into_iter().sum();
    assert_eq!(oks, 100);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sequencer.await.unwrap();
    chain(&app).await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(after - before, 100);
    let chained: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_chain")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(chained, after);
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact {
            events: after as u64,
            pending: 0
        }
    );
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
    // Sign-ins wait for a hashing slot as long as it takes here: this test is about the
    // chain, not the hashing cap.
    let app = TestApp::with_config(|c| {
        c.hash_wait_ms = 120_000;
        c.hash_concurrency = 8;
    })
    .await;
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
    chain(&app).await;
    let logins = |outcome: &'static str| app.audit_count("auth.login", outcome);
    assert_eq!((logins("success").await, logins("failure").await), (40, 10));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact {
            events: events as u64,
            pending: 0
        }
    );
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit_chain ORDER BY seq")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(seqs, (1..=events).collect::<Vec<i64>>());
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
