//! Least privilege in PostgreSQL: the server connects as a runtime role that is not a
//! superuser, owns nothing, and may only read and append to the audit tables, so it cannot
//! disable the audit triggers, rewrite an event and recompute the chain behind it.

use std::os::unix::fs::MetadataExt;

use rocket::http::Status;
use rocket::local::asynchronous::Client;
use sqlx::{Connection, PgConnection, PgPool};
use strongroom::config::Config;
use strongroom::db::Database;
use strongroom::pg::{PgRole, OWNER_ROLE, RUNTIME_ROLE};
use strongroom::users::Role;

use crate::common::{cluster, database_url, role_database_url, test_config, TestApp};
use crate::embedded_pg::short_tempdir;

/// The SQLSTATE of a statement that failed.
fn sqlstate(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.to_string()).unwrap_or_default(),
        other => format!("not a database error: {other}"),
    }
}

async fn role_of(pool: &PgPool) -> (String, bool) {
    sqlx::query_as("SELECT current_user::text, usesuper FROM pg_user WHERE usename = current_user")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Objects of any kind in the database owned by the connected role.
async fn owned_relations(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relowner = \
         (SELECT oid FROM pg_roles WHERE rolname = current_user)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn runtime_role_cannot_disable_triggers_or_rewrite_audit_events() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    let events = app.audit_actions().await.len();
    assert!(events >= 2, "the sign-in left its events");

    let (user, superuser) = role_of(&app.db).await;
    assert_eq!(user, RUNTIME_ROLE);
    assert!(!superuser);
    assert_eq!(
        owned_relations(&app.db).await,
        0,
        "the runtime role owns nothing"
    );

    let err = sqlx::query("ALTER TABLE audit_events DISABLE TRIGGER ALL")
        .execute(&app.db)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");
    assert!(err.to_string().contains("must be owner"), "{err}");
    for sql in [
        "UPDATE audit_events SET detail = '{\"forged\": true}' WHERE pos = 1",
        "DELETE FROM audit_events WHERE pos = 1",
        "TRUNCATE audit_events",
        "UPDATE audit_chain SET hash = prev_hash",
        "DELETE FROM audit_chain",
        "TRUNCATE audit_chain",
        "ALTER TABLE audit_chain DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
        "CREATE TABLE public.sneaky (v int)",
    ] {
        let err = sqlx::query(sql).execute(&app.db).await.unwrap_err();
        // Refused by privileges (42501), not merely by the append-only triggers.
        assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
    }
    // What it needs it still has: reading the trail and appending to it (a sign-in).
    app.login_as(Role::Auditor).await;
    assert!(app.audit_actions().await.len() > events);
    // And chaining it, which the sequencer does as this role.
    strongroom::audit::sequence_all(&app.db).await.unwrap();
    assert_eq!(
        strongroom::audit::verify(&app.db).await.unwrap(),
        strongroom::audit::Verification::Intact {
            events: app.audit_actions().await.len() as u64,
            pending: 0
        }
    );
}

#[tokio::test]
async fn grants_cover_tables_added_by_later_migrations() {
    let app = TestApp::new().await;
    let c = cluster().await;
    // What a later migration does, as the owner role; then what `migrate` runs after it.
    let mut owner =
        PgConnection::connect_with(&c.pg.connect_options_as(PgRole::Owner, &app.db_name))
            .await
            .unwrap();
    sqlx::query("CREATE TABLE audit_later (id bigint PRIMARY KEY, note text)")
        .execute(&mut owner)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE later_things (id bigserial PRIMARY KEY, note text)")
        .execute(&mut owner)
        .await
        .unwrap();
    strongroom::db::grant_runtime(&mut owner, RUNTIME_ROLE)
        .await
        .unwrap();
    owner.close().await.unwrap();

    // An audit table: read and append only.
    sqlx::query("INSERT INTO audit_later VALUES (1, 'a')")
        .execute(&app.db)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_later")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
    for sql in [
        "UPDATE audit_later SET note = 'b'",
        "DELETE FROM audit_later",
        "TRUNCATE audit_later",
        "ALTER TABLE audit_later DISABLE TRIGGER ALL",
        "SELECT * FROM audit_later FOR UPDATE",
    ] {
        let err = sqlx::query(sql).execute(&app.db).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
    }
    // Any other table: the full DML, its sequence included.
    for sql in [
        "INSERT INTO later_things (note) VALUES ('a')",
        "UPDATE later_things SET note = 'b'",
        "DELETE FROM later_things",
    ] {
        sqlx::query(sql).execute(&app.db).await.unwrap();
    }
    let err = sqlx::query("TRUNCATE later_things")
        .execute(&app.db)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");
    // And the migration bookkeeping is not the server's business.
    let err = sqlx::query("SELECT count(*) FROM _sqlx_migrations")
        .execute(&app.db)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "{err}");
}

#[tokio::test]
async fn a_fresh_embedded_data_dir_serves_as_the_runtime_role() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let config = Config {
        data_dir: data.clone(),
        ..test_config()
    };
    let db = Database::open(&config, 4).await.unwrap();
    let _watchdog = crate::embedded_pg::Watchdog(
        strongroom::pg::EmbeddedPg::ensure_running(&data, &Default::default())
            .await
            .unwrap()
            .stop_on_process_exit(Some(tmp.path()))
            .unwrap(),
    );
    db.migrate().await.unwrap();

    let (user, superuser) = role_of(&db.pool).await;
    assert_eq!(user, RUNTIME_ROLE);
    assert!(!superuser);
    assert_eq!(owned_relations(&db.pool).await, 0);
    let (db_owner, table_owner, owner_super): (String, String, bool) = sqlx::query_as(
        "SELECT pg_get_userbyid(d.datdba)::text, \
                (SELECT tableowner::text FROM pg_tables WHERE tablename = 'audit_events'), \
                (SELECT rolsuper FROM pg_roles WHERE rolname = $1) \
         FROM pg_database d WHERE d.datname = current_database()",
    )
    .bind(OWNER_ROLE)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (db_owner.as_str(), table_owner.as_str()),
        (OWNER_ROLE, OWNER_ROLE)
    );
    assert!(!owner_super, "the owner role is no superuser either");
    for file in ["pg-owner.password", "pg-runtime.password"] {
        let meta = std::fs::metadata(data.join(file)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "{file}");
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw(), "{file}");
    }

    // The server built on it answers, and its requests run as the runtime role.
    let vault = strongroom::cli::open_vault(&config).unwrap();
    let client = Client::untracked(strongroom::build(config.clone(), db.pool.clone(), vault))
        .await
        .unwrap();
    assert_eq!(client.get("/healthz").dispatch().await.status(), Status::Ok);
    let app = client.rocket().state::<strongroom::App>().unwrap();
    assert_eq!(role_of(app.db.pool()).await.0, RUNTIME_ROLE);
    drop(client);
    db.close().await.unwrap();

    // A second start on the same data dir keeps the roles working (passwords re-applied).
    let db = Database::open(&config, 2).await.unwrap();
    db.migrate().await.unwrap();
    assert_eq!(role_of(&db.pool).await.0, RUNTIME_ROLE);
    db.close().await.unwrap();
}

#[tokio::test]
async fn database_owner_url_migrates_as_owner_and_connects_as_runtime() {
    let app = TestApp::new().await;
    let c = cluster().await;
    let config = Config {
        database_url: Some(
            role_database_url(c, RUNTIME_ROLE, "pg-runtime.password", &app.db_name).into(),
        ),
        database_owner_url: Some(
            role_database_url(c, OWNER_ROLE, "pg-owner.password", &app.db_name).into(),
        ),
        ..test_config()
    };
    let db = Database::open(&config, 2).await.unwrap();
    db.migrate().await.unwrap();
    assert_eq!(role_of(&db.pool).await, (RUNTIME_ROLE.to_string(), false));
    db.close().await.unwrap();
}

#[tokio::test]
async fn migrate_with_database_url_sets_up_a_runtime_role_when_it_may() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    let c = cluster().await;
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str], url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(args)
            .arg("--data-dir")
            .arg(data.path())
            .env("DATABASE_URL", url)
            .env("STRONGROOM_LOG_LEVEL", "warn")
            .output()
            .unwrap()
    };

    // The owner role may not create roles: migrations still run, and it says why the
    // server would connect as the owner.
    let owner_url = role_database_url(c, OWNER_ROLE, "pg-owner.password", &app.db_name);
    let out = run(&["migrate"], &owner_url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("may not create roles"), "{stderr}");
    assert!(stderr.contains("DATABASE_OWNER_URL"), "{stderr}");
    assert!(!data.path().join("db-runtime.password").exists());

    // A role that may (here the superuser) creates `<database>_runtime`.
    let url = database_url(c, &app.db_name);
    let out = run(&["migrate"], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role = format!("{}_runtime", app.db_name);
    assert!(stdout.contains(&role), "{stdout}");
    let file = data.path().join("db-runtime.password");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let password = std::fs::read_to_string(&file).unwrap();
    assert!(
        !stdout.contains(password.trim()),
        "the password was printed"
    );

    let superuser = app.superuser_pool().await;
    let (is_super, can_create): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1")
            .bind(&role)
            .fetch_one(&superuser)
            .await
            .unwrap();
    assert!(!is_super && !can_create);
    let may_update: bool = sqlx::query_scalar(
        "SELECT has_table_privilege($1, 'audit_events', 'UPDATE') \
             OR has_table_privilege($1, 'audit_events', 'DELETE') \
             OR has_table_privilege($1, 'audit_events', 'TRUNCATE')",
    )
    .bind(&role)
    .fetch_one(&superuser)
    .await
    .unwrap();
    assert!(!may_update);
    let may_insert: bool =
        sqlx::query_scalar("SELECT has_table_privilege($1, 'audit_events', 'INSERT')")
            .bind(&role)
            .fetch_one(&superuser)
            .await
            .unwrap();
    assert!(may_insert);

    // Commands on that data dir connect as the runtime role, and it works.
    let out = run(&["verify-audit"], &url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit chain OK"), "{stdout}");
    // It really was the runtime role: without its password the command cannot connect.
    sqlx::query(&format!("ALTER ROLE {role} PASSWORD NULL"))
        .execute(&superuser)
        .await
        .unwrap();
    let out = run(&["verify-audit"], &url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&role), "{stderr}");
    assert!(
        !stderr.contains(password.trim()),
        "the password was printed"
    );
}
