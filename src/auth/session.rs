//! Server-side sessions. A session token is 256 random bits handed to the client once;
//! only its SHA-256 is stored, so reading the table does not let anyone ride a session.
//! A session ends at its absolute expiry, after the idle timeout, at logout, or at once when
//! its account is disabled (the lookup joins the account and requires it active).

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::users::model::UserRow;
use crate::users::{User, UserId};

pub struct NewSession {
    pub id: Uuid,
    pub token: SecretString,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

pub struct ActiveSession {
    pub id: Uuid,
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub async fn create(
    conn: &mut PgConnection,
    user: UserId,
    client_addr: Option<&str>,
    lifetime: Duration,
) -> sqlx::Result<NewSession> {
    let token = random_token();
    let csrf_token = random_token();
    let id = Uuid::new_v4();
    let now = Utc::now();
    let expires_at = now + lifetime;
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, last_seen_at, \
         expires_at, client_addr) VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
    )
    .bind(id)
    .bind(hash_token(&token))
    .bind(user)
    .bind(&csrf_token)
    .bind(now)
    .bind(expires_at)
    .bind(client_addr)
    .execute(conn)
    .await?;
    Ok(NewSession {
        id,
        token: SecretString::from(token),
        csrf_token,
        expires_at,
    })
}

/// How stale `last_seen_at` may get before a request refreshes it. Refreshing on every
/// request made every read a write (a commit and a WAL flush per request, and concurrent
/// requests of one session queued on its row); the idle timeout is counted in minutes, so
/// a refresh at most once a minute loses nothing that matters.
const TOUCH_AFTER_SECONDS: f64 = 60.0;

/// Finds the live session for a token, and marks it used (at most once a minute).
/// Expired, idle and disabled sessions are not found.
pub async fn lookup(
    pool: &PgPool,
    token: &SecretString,
    idle: Duration,
) -> sqlx::Result<Option<ActiveSession>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        session_id: Uuid,
        csrf_token: String,
        expires_at: DateTime<Utc>,
        stale: bool,
        #[sqlx(flatten)]
        user: UserRow,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT s.id AS session_id, s.csrf_token, s.expires_at, \
           (s.last_seen_at < now() - $3 * interval '1 second') AS stale, \
           u.id, u.username, u.display_name, u.department, u.roles, u.status, \
           u.must_change_password, u.created_at, u.disabled_at, u.locale, u.time_zone \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND u.status = 'active' \
           AND s.expires_at > now() AND s.last_seen_at > now() - $2 * interval '1 second'",
    )
    .bind(hash_token(token.expose_secret()))
    .bind(idle.num_seconds() as f64)
    .bind(TOUCH_AFTER_SECONDS)
    .fetch_optional(pool)
    .await?;
    if let Some(r) = &row {
        if r.stale {
            sqlx::query("UPDATE sessions SET last_seen_at = now() WHERE id = $1")
                .bind(r.session_id)
                .execute(pool)
                .await?;
        }
    }
    Ok(row.map(|r| ActiveSession {
        id: r.session_id,
        user: r.user.into(),
        csrf_token: r.csrf_token,
        expires_at: r.expires_at,
    }))
}

pub async fn end(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn end_all_for_user(conn: &mut PgConnection, user: UserId) -> sqlx::Result<u64> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

pub async fn end_others_for_user(
    conn: &mut PgConnection,
    user: UserId,
    keep: Uuid,
) -> sqlx::Result<u64> {
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(user)
        .bind(keep)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// Removes sessions that can no longer be used. Safe to run on several nodes at once.
pub async fn purge_expired(pool: &PgPool, idle: Duration) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM sessions WHERE expires_at <= now() \
         OR last_seen_at <= now() - $1 * interval '1 second'",
    )
    .bind(idle.num_seconds() as f64)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}
