//! A database outage answers truthfully: a signed-in person gets 503 "unavailable" (not 401
//! and a trip to the sign-in page) while PostgreSQL is down, promptly, and everything works
//! again once it is back, without restarting the server. The test runs its own cluster,
//! since it stops it.

use std::time::{Duration, Instant};

use rocket::http::{Cookie, Status};
use rocket::local::asynchronous::Client;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use strongroom::audit::Actor;
use strongroom::pg::{EmbeddedPg, PgRole, DATABASE, RUNTIME_ROLE};
use strongroom::users::{self, NewUser, Role};

use crate::common::{bearer, test_config, PASSWORD};
use crate::embedded_pg::{fast_opts, short_tempdir, Watchdog};

struct Calls<'a> {
    client: &'a Client,
    token: &'a str,
}

impl Calls<'_> {
    async fn api(&self) -> (Status, Value) {
        let res = self
            .client
            .get("/api/v1/me")
            .header(bearer(self.token))
            .dispatch()
            .await;
        let status = res.status();
        (status, res.into_json().await.unwrap_or(Value::Null))
    }

    async fn page(&self) -> (Status, Option<String>, String) {
        let res = self
            .client
            .get("/")
            .cookie(Cookie::new(
                strongroom::auth::SESSION_COOKIE,
                self.token.to_string(),
            ))
            .dispatch()
            .await;
        let status = res.status();
        let location = res.headers().get_one("Location").map(str::to_owned);
        (
            status,
            location,
            res.into_string().await.unwrap_or_default(),
        )
    }

    async fn health(&self) -> Status {
        self.client.get("/healthz").dispatch().await.status()
    }
}

#[tokio::test]
async fn signed_in_requests_answer_503_during_an_outage_and_recover_after() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let pg = EmbeddedPg::ensure_running(&data, &fast_opts())
        .await
        .unwrap();
    let _watchdog = Watchdog(pg.stop_on_process_exit(Some(tmp.path())).unwrap());
    let mut owner = PgConnection::connect_with(&pg.connect_options_as(PgRole::Owner, DATABASE))
        .await
        .unwrap();
    strongroom::db::MIGRATOR.run(&mut owner).await.unwrap();
    strongroom::db::grant_runtime(&mut owner, RUNTIME_ROLE)
        .await
        .unwrap();
    owner.close().await.unwrap();
    // The server's own pool settings (short acquire timeout), as the runtime role.
    let pool = strongroom::db::pool_options(8)
        .connect_with(pg.connect_options_as(PgRole::Runtime, DATABASE))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.data_dir = dir.path().to_path_buf();
    let vault = strongroom::cli::open_vault(&config).unwrap();
    let client = Client::untracked(strongroom::build(config, pool.clone(), vault))
        .await
        .unwrap();
    users::create_by_operator(
        &pool,
        &client.rocket().state::<strongroom::App>().unwrap().hasher,
        &Actor::system("test"),
        NewUser {
            username: "mei".into(),
            display_name: Some("Mei".into()),
            department: Some("Retail".into()),
            roles: vec![Role::Employee],
            password: SecretString::from(PASSWORD),
            must_change_password: false,
        },
    )
    .await
    .unwrap();
    let res = client
        .post("/api/v1/login")
        .header(rocket::http::ContentType::JSON)
        .remote("10.9.8.7:4000".parse().unwrap())
        .body(json!({"username": "mei", "password": PASSWORD}).to_string())
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let body: Value = res.into_json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    let calls = Calls {
        client: &client,
        token: &token,
    };
    let (status, me) = calls.api().await;
    assert_eq!(status, Status::Ok, "{me}");
    assert_eq!(calls.page().await.0, Status::Ok);

    // PostgreSQL goes away.
    pg.stop().await.unwrap();

    let started = Instant::now();
    let (status, body) = calls.api().await;
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let (status, location, html) = calls.page().await;
    assert_eq!(status, Status::ServiceUnavailable, "{html}");
    assert_eq!(location, None, "not sent to the sign-in page");
    assert!(
        html.contains("temporarily unavailable"),
        "the page says the service is unavailable: {html}"
    );
    assert_eq!(calls.health().await, Status::ServiceUnavailable);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered after {:?}",
        started.elapsed()
    );

    // It comes back: the same calls succeed, with the same server and the same session.
    let pg = EmbeddedPg::ensure_running(&data, &fast_opts())
        .await
        .unwrap();
    let (status, me) = calls.api().await;
    assert_eq!(status, Status::Ok, "{me}");
    assert_eq!(me["username"], "mei", "{me}");
    assert_eq!(calls.page().await.0, Status::Ok);
    assert_eq!(calls.health().await, Status::Ok);

    drop(client);
    pool.close().await;
    pg.stop().await.unwrap();
}
