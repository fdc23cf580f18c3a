//! Failed-login throttling per account name and per client address. Counters are keyed by
//! the name as typed (lower-cased), whether or not such an account exists, so a lockout
//! never tells an attacker which names are real.

use sqlx::PgConnection;

pub struct Limits {
    pub max_failures: i32,
    pub window_seconds: f64,
    pub lockout_seconds: f64,
}

pub fn account_key(username: &str) -> String {
    let name: String = username.trim().to_lowercase().chars().take(64).collect();
    format!("user:{name}")
}

pub fn address_key(addr: &str) -> String {
    format!("addr:{addr}")
}

/// Whether any of the keys is locked right now.
pub async fn is_locked(conn: &mut PgConnection, keys: &[String]) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM login_throttle WHERE key = ANY($1) AND locked_until > now())",
    )
    .bind(keys)
    .fetch_one(conn)
    .await
}

/// Counts one failure for `key`; returns true when this failure starts a lockout.
pub async fn register_failure(
    conn: &mut PgConnection,
    key: &str,
    limits: &Limits,
) -> sqlx::Result<bool> {
    // A counter restarts when its window has passed or its lockout has ended.
    let (failures, locked): (i32, bool) = sqlx::query_as(
        "INSERT INTO login_throttle AS t (key, failures, first_failure_at) VALUES ($1, 1, now()) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN t.first_failure_at <= now() - $2 * interval '1 second' \
                             OR t.locked_until <= now() THEN 1 ELSE t.failures + 1 END, \
           first_failure_at = CASE WHEN t.first_failure_at <= now() - $2 * interval '1 second' \
                             OR t.locked_until <= now() THEN now() ELSE t.first_failure_at END, \
           locked_until = CASE WHEN t.locked_until <= now() THEN NULL ELSE t.locked_until END \
         RETURNING failures, locked_until IS NOT NULL",
    )
    .bind(key)
    .bind(limits.window_seconds)
    .fetch_one(&mut *conn)
    .await?;
    if locked || failures < limits.max_failures {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE login_throttle SET locked_until = now() + $2 * interval '1 second' WHERE key = $1",
    )
    .bind(key)
    .bind(limits.lockout_seconds)
    .execute(conn)
    .await?;
    Ok(true)
}

pub async fn clear(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1 AND (locked_until IS NULL OR locked_until <= now())")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}
