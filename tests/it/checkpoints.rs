//! Signed audit checkpoints: a superuser who deletes the newest events (and their chain
//! entries) or rewrites the chain leaves a chain that still walks, and the checkpoints in
//! the object store catch it.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::PutPayload;
use strongroom::audit::checkpoint::{self, AuditSigner, Checkpoint, Checkpointer, Finding};
use strongroom::audit::{self, Verification};
use strongroom::users::Role;

use crate::audit_trail::{chain, tamper};
use crate::common::{cluster, database_url, TestApp};

fn signer(app: &TestApp) -> Arc<AuditSigner> {
    Arc::new(AuditSigner::load_or_create(&app.config.audit_signing_key_path()).unwrap())
}

fn checkpointer(app: &TestApp) -> Checkpointer {
    Checkpointer::new(app.db.clone(), app.app().store.clone(), signer(app))
}

async fn head(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM audit_chain")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn checkpoint_objects(app: &TestApp) -> Vec<String> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut list = app
        .app()
        .store
        .object_store()
        .list(Some(&ObjectPath::from(checkpoint::PREFIX)));
    while let Some(m) = list.next().await {
        out.push(m.unwrap().location.to_string());
    }
    out.sort();
    out
}

/// Runs the binary against this test's database and data directory.
fn strongroom(app: &TestApp, db_url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("STRONGROOM_DATA_DIR", app.dir.path())
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn deleting_the_three_newest_events_passes_the_chain_walk_and_fails_the_checkpoints() {
    let app = TestApp::new().await;
    for _ in 0..3 {
        app.login_as(Role::Employee).await;
    }
    chain(&app).await;
    let written = checkpointer(&app).write_if_moved().await.unwrap().unwrap();
    let n = head(&app).await;
    assert!(n >= 6, "{n}");
    assert_eq!(written.seq, n);
    let trusted = [*signer(&app).public_key()];
    let report = checkpoint::verify(&app.db, &app.app().store, &trusted)
        .await
        .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.trusted, 1);

    // A superuser removes the three newest events and their chain entries.
    tamper(
        &app,
        &[
            &format!(
                "DELETE FROM audit_events WHERE id IN \
                 (SELECT event_id FROM audit_chain WHERE seq > {})",
                n - 3
            ),
            &format!("DELETE FROM audit_chain WHERE seq > {}", n - 3),
        ],
    )
    .await;

    // What is left still chains...
    match audit::verify(&app.db).await.unwrap() {
        Verification::Intact { events, pending } => {
            assert_eq!(events, (n - 3) as u64);
            assert_eq!(pending, 0);
        }
        other => panic!("the walk should pass: {other}"),
    }
    // ...but the checkpoint names the gap.
    let report = checkpoint::verify(&app.db, &app.app().store, &trusted)
        .await
        .unwrap();
    assert!(!report.ok());
    assert_eq!(
        report.findings,
        vec![Finding::Truncated {
            time: written.time.clone(),
            covers: n,
            chain_ends: n - 3
        }]
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "audit chain TRUNCATED: checkpoint of {} covers events up to {n}, the chain ends at {} (3 events missing)",
            written.time,
            n - 3
        )),
        "{text}"
    );

    // The command line says the same: the plain walk passes, --checkpoints fails.
    let url = database_url(cluster().await, &app.db_name);
    let (code, out) = strongroom(&app, &url, &["verify-audit"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = strongroom(&app, &url, &["verify-audit", "--checkpoints"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("audit chain OK"), "{out}");
    assert!(out.contains("(3 events missing)"), "{out}");

    // A third party holding only the public key gets the same verdict.
    let (code, key) = strongroom(&app, &url, &["audit-public-key"]);
    assert_eq!(code, Some(0), "{key}");
    let key = key.lines().next().unwrap().trim().to_string();
    assert_eq!(key, trusted[0].hex());
    std::fs::remove_file(app.config.audit_signing_key_path()).unwrap();
    let (code, out) = strongroom(&app, &url, &["verify-audit", "--checkpoints"]);
    assert_eq!(code, Some(2), "without a key there is no verdict: {out}");
    assert!(out.contains("--public-key"), "{out}");
    let (code, out) = strongroom(
        &app,
        &url,
        &["verify-audit", "--checkpoints", "--public-key", &key],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("(3 events missing)"), "{out}");
}

#[tokio::test]
async fn a_rewritten_chain_is_caught_at_the_checkpoint_that_covers_it() {
    let app = TestApp::new().await;
    let cp = checkpointer(&app);
    app.login_as(Role::Employee).await;
    chain(&app).await;
    let first = cp.write_if_moved().await.unwrap().unwrap();
    for _ in 0..2 {
        app.login_as(Role::Employee).await;
    }
    chain(&app).await;
    let second = cp.write_if_moved().await.unwrap().unwrap();
    assert!(second.seq > first.seq + 1);
    let trusted = [*signer(&app).public_key()];

    // A superuser alters an event after the first checkpoint, drops the chain from there
    // and lets the sequencer chain the altered events anew: the chain walks again.
    let k = first.seq + 1;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT event_id FROM audit_chain WHERE seq = $1")
        .bind(k)
        .fetch_one(&app.db)
        .await
        .unwrap();
    tamper(
        &app,
        &[
            &format!("UPDATE audit_events SET detail = '{{\"forged\": true}}' WHERE id = '{id}'"),
            &format!("DELETE FROM audit_chain WHERE seq >= {k}"),
        ],
    )
    .await;
    chain(&app).await;
    assert_eq!(head(&app).await, second.seq);
    assert!(matches!(
        audit::verify(&app.db).await.unwrap(),
        Verification::Intact { .. }
    ));

    let report = checkpoint::verify(&app.db, &app.app().store, &trusted)
        .await
        .unwrap();
    assert_eq!(
        report.findings,
        vec![Finding::Differs {
            time: second.time.clone(),
            seq: second.seq,
            last_good: Some(first.seq),
        }]
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!("DIFFERS from the checkpoint of {}", second.time)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the change lies in events {} to {}",
            first.seq + 1,
            second.seq
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_checkpoint_with_a_flipped_signature_byte_is_reported_and_not_trusted() {
    let app = TestApp::new().await;
    app.login_as(Role::Employee).await;
    chain(&app).await;
    let written = checkpointer(&app).write_if_moved().await.unwrap().unwrap();
    let trusted = [*signer(&app).public_key()];
    let store = app.app().store.object_store().clone();
    let path = ObjectPath::parse(written.object_path()).unwrap();

    let mut forged: Checkpoint =
        serde_json::from_slice(&store.get(&path).await.unwrap().bytes().await.unwrap()).unwrap();
    let mut sig = hex::decode(&forged.signature).unwrap();
    sig[0] ^= 0x01;
    forged.signature = hex::encode(sig);
    store
        .put(
            &path,
            PutPayload::from(serde_json::to_vec(&forged).unwrap()),
        )
        .await
        .unwrap();

    let report = checkpoint::verify(&app.db, &app.app().store, &trusted)
        .await
        .unwrap();
    assert!(!report.ok());
    assert_eq!(report.trusted, 0);
    assert_eq!(report.newest, None);
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "checkpoint {} NOT TRUSTED: the signature does NOT verify",
            written.object_path()
        )),
        "{text}"
    );
    assert!(text.contains("MISSING"), "{text}");

    // A checkpoint signed by a key nobody trusts is reported the same way.
    let stranger = AuditSigner::load_or_create(&app.dir.path().join("stranger.key")).unwrap();
    let other = stranger.sign(&[0; 32], 1, &[0; 32], chrono::Utc::now());
    store
        .put(
            &ObjectPath::parse(other.object_path()).unwrap(),
            PutPayload::from(serde_json::to_vec(&other).unwrap()),
        )
        .await
        .unwrap();
    let report = checkpoint::verify(&app.db, &app.app().store, &trusted)
        .await
        .unwrap();
    assert_eq!(report.findings.len(), 2, "{report}");
    assert!(
        report.to_string().contains(&format!(
            "signed by key {}, which is not a trusted public key",
            other.key_id
        )),
        "{report}"
    );
}

#[tokio::test]
async fn a_checkpoint_is_written_once_per_head_and_never_collected() {
    let app = TestApp::new().await;
    // An empty chain has nothing to sign.
    assert_eq!(checkpointer(&app).write_if_moved().await.unwrap(), None);
    app.login_as(Role::Employee).await;
    chain(&app).await;
    let a = checkpointer(&app);
    let b = checkpointer(&app); // another node, same store and key
    assert!(a.write_if_moved().await.unwrap().is_some());
    assert_eq!(a.write_if_moved().await.unwrap(), None);
    assert_eq!(b.write_if_moved().await.unwrap(), None);
    assert_eq!(checkpoint_objects(&app).await.len(), 1);
    app.login_as(Role::Employee).await;
    chain(&app).await;
    assert!(b.write_if_moved().await.unwrap().is_some());
    let objects = checkpoint_objects(&app).await;
    assert_eq!(objects.len(), 2, "{objects:?}");

    // Garbage collection, even with no grace at all, leaves checkpoints alone.
    let report =
        strongroom::storage::gc::run_once(&app.db, &app.app().store, std::time::Duration::ZERO)
            .await
            .unwrap();
    assert_eq!(report.removed, 0);
    assert_eq!(checkpoint_objects(&app).await, objects);
    let trusted = [*signer(&app).public_key()];
    let report = checkpoint::verify(&app.db, &app.app().store, &trusted)
        .await
        .unwrap();
    assert!(report.ok(), "{report}");
    assert_eq!(report.trusted, 2);
}
