//! Two nodes on one database and one object store: each background job runs once per
//! interval across both, not once per node, and a session opened on one node serves on the
//! other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocket::local::asynchronous::Client;
use sqlx::postgres::PgPoolOptions;
use strongroom::audit::checkpoint::{self, AuditSigner};
use strongroom::pg::PgRole;
use strongroom::users::Role;

use crate::common::{bearer, cluster, TestApp};

const JOBS: [&str; 4] = ["expire", "session-purge", "gc", "checkpoint"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_run_each_job_once_per_interval() {
    let app = TestApp::with_config(|c| {
        c.expire_interval_seconds = 1;
        c.session_purge_interval_seconds = 1;
        c.gc_interval_seconds = 1;
        c.checkpoint_interval_seconds = 1;
        c.node_name = Some("node-a".into());
    })
    .await;
    // Node B: its own pool and server on the same database, data directory (object
    // store, master key, audit signing key) and settings.
    let mut config_b = app.config.clone();
    config_b.node_name = Some("node-b".into());
    let pool_b = PgPoolOptions::new()
        .max_connections(5)
        .connect_with(
            cluster()
                .await
                .pg
                .connect_options_as(PgRole::Runtime, &app.db_name),
        )
        .await
        .unwrap();
    let vault_b = strongroom::cli::open_vault(&config_b).unwrap();
    let store_b = vault_b.store.clone();
    let node_b = Client::untracked(strongroom::build(config_b.clone(), pool_b.clone(), vault_b))
        .await
        .unwrap();
    let signer =
        Arc::new(AuditSigner::load_or_create(&app.config.audit_signing_key_path()).unwrap());

    let started = Instant::now();
    let jobs_a = strongroom::jobs::start(&app.db, &app.app().store, &app.config, signer.clone());
    let jobs_b = strongroom::jobs::start(&pool_b, &store_b, &config_b, signer.clone());

    // Sessions live in PostgreSQL: signed in on node A, served by node B.
    let (_, token) = app.login_as(Role::Employee).await;
    let res = node_b
        .get("/api/v1/me")
        .header(bearer(&token))
        .dispatch()
        .await;
    assert_eq!(res.status(), rocket::http::Status::Ok);

    tokio::time::sleep(Duration::from_millis(4_500)).await;
    jobs_a.stop().await;
    jobs_b.stop().await;
    let elapsed = started.elapsed().as_secs_f64();

    for job in JOBS {
        let (runs,): (i64,) = sqlx::query_as("SELECT runs FROM job_schedule WHERE job = $1")
            .bind(job)
            .fetch_one(&app.db)
            .await
            .unwrap();
        let per_node: Vec<(String, i64)> = sqlx::query_as(
            "SELECT node, count(*) FROM job_runs WHERE job = $1 GROUP BY node ORDER BY node",
        )
        .bind(job)
        .fetch_all(&app.db)
        .await
        .unwrap();
        println!("{job}: {runs} runs in {elapsed:.1} s, by node {per_node:?}");
        // One node alone runs a 1 s job at most once per second slot, and a stretch of
        // `elapsed` seconds touches at most ceil(elapsed) + 1 slots (it may start just
        // before one second ends); two nodes that each ran it would come to about twice that.
        assert!(
            runs as f64 <= elapsed.ceil() + 1.0,
            "{job}: {runs} runs in {elapsed:.1} s ({per_node:?})"
        );
        assert!(runs >= 3, "{job} ran only {runs} times in {elapsed:.1} s");
        // Every run has its own slot, numbered 1..=runs, claimed by exactly one node.
        let slots: Vec<i64> =
            sqlx::query_scalar("SELECT slot FROM job_runs WHERE job = $1 ORDER BY slot")
                .bind(job)
                .fetch_all(&app.db)
                .await
                .unwrap();
        assert_eq!(slots, (1..=runs).collect::<Vec<_>>(), "{job}");
        assert!(per_node.iter().all(|(n, _)| n == "node-a" || n == "node-b"));
    }

    // The chain's final head is signed (nodes stopping at the same instant may both sign
    // it), and the checkpoints verify.
    let head: i64 = sqlx::query_scalar("SELECT max(seq) FROM audit_chain")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let dir = format!("{}/{head:020}", checkpoint::PREFIX);
    let at_head = std::fs::read_dir(app.dir.path().join("objects").join(&dir))
        .unwrap()
        .count();
    assert!(at_head >= 1, "{dir}");
    let report = checkpoint::verify(&app.db, &app.app().store, &[*signer.public_key()])
        .await
        .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.newest.map(|(s, _)| s), Some(head));
}

#[tokio::test]
async fn a_claim_is_won_by_one_node_and_due_again_after_the_interval() {
    let app = TestApp::new().await;
    let every = Duration::from_millis(600);
    let (a, b) = tokio::join!(
        strongroom::jobs::claim(&app.db, "probe", every, "node-a"),
        strongroom::jobs::claim(&app.db, "probe", every, "node-b"),
    );
    let mut won = [a.unwrap(), b.unwrap()];
    won.sort();
    assert_eq!(won, [None, Some(1)]);
    // Not due again within the interval, whoever asks.
    assert_eq!(
        strongroom::jobs::claim(&app.db, "probe", every, "node-a")
            .await
            .unwrap(),
        None
    );
    tokio::time::sleep(every + Duration::from_millis(100)).await;
    let claims = futures_util::future::join_all((0..8).map(|i| {
        strongroom::jobs::claim(
            &app.db,
            "probe",
            every,
            if i % 2 == 0 { "node-a" } else { "node-b" },
        )
    }))
    .await;
    let winners: Vec<i64> = claims.into_iter().filter_map(|c| c.unwrap()).collect();
    assert_eq!(winners, vec![2]);
}

#[tokio::test]
async fn a_clean_stop_chains_the_last_events_and_signs_the_head() {
    let app = TestApp::with_config(|c| c.checkpoint_interval_seconds = 3600).await;
    let signer =
        Arc::new(AuditSigner::load_or_create(&app.config.audit_signing_key_path()).unwrap());
    let jobs = strongroom::jobs::start(&app.db, &app.app().store, &app.config, signer.clone());
    // The first checkpoint run comes at once, on an empty chain: nothing to sign.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.login_as(Role::Employee).await;
    jobs.stop().await;
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM audit_chain")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events e \
         WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = e.id)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(pending, 0);
    assert!(head >= 2);
    let report = checkpoint::verify(&app.db, &app.app().store, &[*signer.public_key()])
        .await
        .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.newest.map(|(s, _)| s), Some(head));
}
