//! Test harness: one temporary PostgreSQL cluster per test run (started with the same
//! embedded module the server uses, stopped and deleted when the test process exits), a
//! template database migrated once, and a fresh database cloned from it for each test.
//! Tests drive the real Rocket instance through its local asynchronous client.
//!
//! Privileges are the server's own: the template is migrated by the owner role (with the
//! same `db::grant_runtime` the server runs), and every test database and `TestApp::db`
//! connect as the runtime role. A test that must act as a superuser (to tamper with the
//! audit trail, say) asks for `TestApp::superuser_pool` explicitly.

#![allow(dead_code)]

pub mod browser;
pub mod s3;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use strongroom::audit::Actor;
use strongroom::config::Config;
use strongroom::pg::{EmbeddedPg, PgRole, StartOptions, OWNER_ROLE, RUNTIME_ROLE};
use strongroom::users::{self, NewUser, Role, User};
use tokio::sync::OnceCell;

pub const PASSWORD: &str = "a sturdy test passphrase";

pub struct Cluster {
    pub pg: EmbeddedPg,
    pub dir: PathBuf,
    template: String,
}

static CLUSTER: OnceCell<Cluster> = OnceCell::const_new();
static WATCHDOG: Mutex<Option<std::process::Child>> = Mutex::new(None);
static CREATE_DB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn cluster() -> &'static Cluster {
    CLUSTER
        .get_or_init(|| async {
            init_logs();
            let dir = std::env::temp_dir().join(format!("sr-it-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let opts = StartOptions {
                bin_dir: None,
                settings: vec![
                    ("fsync".into(), "off".into()),
                    ("synchronous_commit".into(), "off".into()),
                    ("full_page_writes".into(), "off".into()),
                    ("max_connections".into(), "300".into()),
                ],
            };
            let pg = EmbeddedPg::ensure_running(&dir, &opts)
                .await
                .expect("start the test cluster");
            let child = pg
                .stop_on_process_exit(Some(&dir))
                .expect("cluster watchdog");
            *WATCHDOG.lock().unwrap() = Some(child);
            // The cluster's roles are the embedded default's: strongroom_owner owns the
            // template (and so every clone), strongroom_runtime is what the tests connect as.
            let template = "strongroom_template".to_string();
            let mut admin = sqlx::PgConnection::connect_with(&pg.connect_options("postgres"))
                .await
                .expect("connect as superuser");
            sqlx::query(&format!("CREATE DATABASE {template} OWNER {OWNER_ROLE}"))
                .execute(&mut admin)
                .await
                .expect("create template");
            let _ = admin.close().await;
            let mut admin = sqlx::PgConnection::connect_with(&pg.connect_options(&template))
                .await
                .expect("connect to the template as superuser");
            strongroom::pg::roles::hand_over_to_owner(&mut admin, OWNER_ROLE)
                .await
                .expect("hand the template to the owner role");
            let _ = admin.close().await;
            let mut owner =
                sqlx::PgConnection::connect_with(&pg.connect_options_as(PgRole::Owner, &template))
                    .await
                    .expect("connect template as owner");
            strongroom::db::MIGRATOR
                .run(&mut owner)
                .await
                .expect("migrate template");
            strongroom::db::grant_runtime(&mut owner, RUNTIME_ROLE)
                .await
                .expect("grant the runtime role");
            let _ = owner.close().await;
            Cluster { pg, dir, template }
        })
        .await
}

/// A fresh database cloned from the migrated template, and how to reach it as the
/// runtime role.
pub async fn fresh_database() -> (String, PgConnectOptions) {
    let c = cluster().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    {
        let _guard = CREATE_DB.lock().await;
        let mut admin = sqlx::PgConnection::connect_with(&c.pg.connect_options("postgres"))
            .await
            .expect("connect as superuser");
        sqlx::query(&format!(
            "CREATE DATABASE {name} OWNER {OWNER_ROLE} TEMPLATE {}",
            c.template
        ))
        .execute(&mut admin)
        .await
        .expect("clone template");
        let _ = admin.close().await;
    }
    let opts = c.pg.connect_options_as(PgRole::Runtime, &name);
    (name, opts)
}

/// A `postgres://` URL for a test database as the superuser, for driving the binary with
/// DATABASE_URL.
pub fn database_url(c: &Cluster, db: &str) -> String {
    role_database_url(c, "strongroom", "pg-superuser.password", db)
}

/// A `postgres://` URL for a test database as `role`, whose password is in `password_file`
/// of the cluster's data dir.
pub fn role_database_url(c: &Cluster, role: &str, password_file: &str, db: &str) -> String {
    let password = std::fs::read_to_string(c.dir.join(password_file)).expect("role password file");
    let host: String =
        c.pg.socket_dir()
            .to_string_lossy()
            .bytes()
            .map(|b| match b {
                b'/' => "%2F".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
    format!("postgres://{role}:{}@{}/{}", password.trim(), host, db)
}

// ---- log capture -------------------------------------------------------------------------

#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<LogBuffer> = OnceLock::new();

fn init_logs() {
    let buf = LOGS.get_or_init(LogBuffer::default).clone();
    strongroom::telemetry::init(
        strongroom::config::LogFormat::Json,
        "debug,sqlx=info,hyper=info,rocket=info",
        move || buf.clone(),
    );
}

/// Everything logged so far by this test process.
pub fn captured_logs() -> String {
    let buf = LOGS.get_or_init(LogBuffer::default);
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---- the application -----------------------------------------------------------------------

pub struct TestApp {
    pub client: Client,
    pub db: PgPool,
    pub db_name: String,
    pub config: Config,
    /// Holds the object store and the master key; removed with the TestApp.
    pub dir: tempfile::TempDir,
}

/// The configuration of a `TestApp`: the shipped defaults, except as said here.
///
/// Two-factor sign-in: the shipped default holds supervisors, auditors and administrators
/// to enrolment (`totp_required_roles = "supervisor,auditor,admin"`). The harness turns that
/// off (`""`), so the tests that are about something else sign such people in with a
/// password alone, as before; the tests of two-factor sign-in (`tests/it/totp.rs`) opt back
/// in to the shipped default with `TestApp::with_config(|c| c.totp_required_roles =
/// Config::default().totp_required_roles)`.
pub fn test_config() -> Config {
    Config {
        data_dir: std::env::temp_dir().join("sr-unused"),
        // Requests without Accept-Language read English pages; the Chinese pages are tested
        // by asking for them (and the shipped default, zh-CN, by the i18n tests).
        default_locale: "en".into(),
        totp_required_roles: String::new(),
        ..Config::default()
    }
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    pub async fn with_config(f: impl FnOnce(&mut Config)) -> TestApp {
        let (db_name, opts) = fresh_database().await;
        let db = PgPoolOptions::new()
            .max_connections(20)
            .connect_with(opts)
            .await
            .expect("connect test database");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config();
        config.data_dir = dir.path().to_path_buf();
        f(&mut config);
        let vault = strongroom::cli::open_vault(&config).expect("keys, store and policies");
        let client = Client::untracked(strongroom::build(config.clone(), db.clone(), vault))
            .await
            .expect("rocket");
        TestApp {
            client,
            db,
            db_name,
            config,
            dir,
        }
    }

    /// A pool on this test's database as the cluster's superuser, for tests that must do
    /// what the server cannot (rewrite audit events to prove that verification notices).
    pub async fn superuser_pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(cluster().await.pg.connect_options(&self.db_name))
            .await
            .expect("connect as superuser")
    }

    pub fn app(&self) -> &strongroom::App {
        self.client
            .rocket()
            .state::<strongroom::App>()
            .expect("managed App")
    }

    pub async fn add_user(&self, username: &str, roles: &[Role], department: &str) -> User {
        users::create_by_operator(
            &self.db,
            &self.app().hasher,
            &Actor::system("test"),
            NewUser {
                username: username.into(),
                display_name: Some(format!("{username} display")),
                department: Some(department.into()),
                roles: roles.to_vec(),
                password: SecretString::from(PASSWORD),
                must_change_password: false,
            },
        )
        .await
        .expect("create user")
    }

    /// Signs in through the JSON API and returns the bearer token.
    pub async fn login(&self, username: &str, password: &str) -> (Status, Value) {
        let res = self
            .client
            .post("/api/v1/login")
            .header(ContentType::JSON)
            .remote("10.9.8.7:4000".parse().unwrap())
            .body(json!({"username": username, "password": password}).to_string())
            .dispatch()
            .await;
        let status = res.status();
        let body = res.into_json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Creates `name` with `roles` in `department`, signs them in and returns the token.
    pub async fn user_token(&self, name: &str, roles: &[Role], department: &str) -> String {
        self.add_user(name, roles, department).await;
        let (status, body) = self.login(name, PASSWORD).await;
        assert_eq!(status, Status::Ok, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Creates a user with `role` and signs them in; returns (user, token).
    pub async fn login_as(&self, role: Role) -> (User, String) {
        let name = format!(
            "{}{}",
            role.as_str(),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let user = self.add_user(&name, &[role], "Retail").await;
        let (status, body) = self.login(&name, PASSWORD).await;
        assert_eq!(status, Status::Ok, "{body}");
        (user, body["token"].as_str().unwrap().to_string())
    }

    pub async fn get(&self, path: &str, token: &str) -> (Status, Value) {
        let res = self
            .client
            .get(path.to_string())
            .header(bearer(token))
            .remote("10.9.8.7:4000".parse().unwrap())
            .dispatch()
            .await;
        json_of(res).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (Status, Value) {
        let res = self
            .client
            .post(path.to_string())
            .header(bearer(token))
            .remote("10.9.8.7:4000".parse().unwrap())
            .header(ContentType::JSON)
            .body(body.to_string())
            .dispatch()
            .await;
        json_of(res).await
    }

    /// PATCH with a JSON body (sent, unlike `get` and `post`, without a remote address).
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (Status, Value) {
        let res = self
            .client
            .patch(path.to_string())
            .header(bearer(token))
            .header(ContentType::JSON)
            .body(body.to_string())
            .dispatch()
            .await;
        json_of(res).await
    }

    /// (action, outcome) of every audit event, in order.
    pub async fn audit_actions(&self) -> Vec<(String, String)> {
        sqlx::query_as("SELECT action, outcome FROM audit_events ORDER BY pos")
            .fetch_all(&self.db)
            .await
            .unwrap()
    }

    pub async fn audit_count(&self, action: &str, outcome: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = $1 AND outcome = $2")
            .bind(action)
            .bind(outcome)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }
}

pub fn bearer(token: &str) -> Header<'static> {
    Header::new("Authorization", format!("Bearer {token}"))
}

pub async fn json_of(res: LocalResponse<'_>) -> (Status, Value) {
    let status = res.status();
    let body = res.into_json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}
