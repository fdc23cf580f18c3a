//! Failed-password throttling per account name and per client address. Counters are keyed
//! by the name as typed (lower-cased), whether or not such an account exists, so a lockout
//! never tells an attacker which names are real.
//!
//! Guarantees: an attempt is counted *before* its password is checked, in one atomic
//! statement (`reserve`), and is checked only when that count stays within the limit; so
//! however many guesses arrive at once, at most `max_failures` of them reach argon2 per
//! window. Only a successful check clears the account's count; an attempt that could not be
//! checked at all (hashing busy, an error) gives its reservation back (`release`). A failed
//! check that brings the count to the limit starts the lockout (`confirm_failure`).
//! Sign-in and the current-password check of a password change share the account key.

use sqlx::PgConnection;

use crate::config::Config;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_failures: i32,
    pub window_seconds: f64,
    pub lockout_seconds: f64,
}

impl Limits {
    pub fn for_account(config: &Config) -> Limits {
        Limits {
            max_failures: i32::try_from(config.login_max_failures).unwrap_or(i32::MAX),
            window_seconds: f64::from(config.login_failure_window_seconds),
            lockout_seconds: f64::from(config.lockout_seconds),
        }
    }

    pub fn for_address(config: &Config) -> Limits {
        Limits {
            max_failures: i32::try_from(config.login_address_max_failures).unwrap_or(i32::MAX),
            ..Limits::for_account(config)
        }
    }
}

pub fn account_key(username: &str) -> String {
    let name: String = username.trim().to_lowercase().chars().take(64).collect();
    format!("user:{name}")
}

pub fn address_key(addr: &str) -> String {
    format!("addr:{addr}")
}

/// Counts one attempt for `key` before its password is checked. Returns true when the
/// attempt may go on to the check: the key is not locked and this attempt is within the
/// limit. Run it outside any longer transaction, so concurrent attempts see each other.
pub async fn reserve(conn: &mut PgConnection, key: &str, limits: &Limits) -> sqlx::Result<bool> {
    // A counter restarts when its lockout has ended, or, unlocked, when its window has
    // passed. The row lock taken by ON CONFLICT DO UPDATE serialises concurrent attempts,
    // so each one sees every earlier reservation.
    sqlx::query_scalar(
        "INSERT INTO login_throttle AS t (key, failures, first_failure_at) VALUES ($1, 1, now()) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN t.locked_until <= now() \
                             OR (t.locked_until IS NULL \
                                 AND t.first_failure_at <= now() - $2 * interval '1 second') \
                           THEN 1 ELSE t.failures + 1 END, \
           first_failure_at = CASE WHEN t.locked_until <= now() \
                             OR (t.locked_until IS NULL \
                                 AND t.first_failure_at <= now() - $2 * interval '1 second') \
                           THEN now() ELSE t.first_failure_at END, \
           locked_until = CASE WHEN t.locked_until <= now() THEN NULL ELSE t.locked_until END \
         RETURNING failures <= $3 AND locked_until IS NULL",
    )
    .bind(key)
    .bind(limits.window_seconds)
    .bind(limits.max_failures)
    .fetch_one(conn)
    .await
}

/// Gives back a reservation whose password was never checked.
pub async fn release(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
    )
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// The reserved attempt failed its check (it is already counted). Returns true when this
/// failure starts a lockout.
pub async fn confirm_failure(
    conn: &mut PgConnection,
    key: &str,
    limits: &Limits,
) -> sqlx::Result<bool> {
    let started: Option<bool> = sqlx::query_scalar(
        "UPDATE login_throttle SET locked_until = now() + $3 * interval '1 second' \
         WHERE key = $1 AND failures >= $2 AND locked_until IS NULL RETURNING true",
    )
    .bind(key)
    .bind(limits.max_failures)
    .bind(limits.lockout_seconds)
    .fetch_optional(conn)
    .await?;
    Ok(started.unwrap_or(false))
}

/// A successful check: the account's count starts again.
pub async fn clear(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}
