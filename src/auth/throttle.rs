//! Failed-password throttling per account name and per client address. Counters are keyed
//! by the name as typed (lower-cased), whether or not such an account exists, so a lockout
//! never tells an attacker which names are real.
//!
//! Guarantees: an attempt is counted *before* its password is checked (`reserve`, under
//! the counter's row lock) and is checked only while failures plus attempts being checked
//! stay below the limit; so however many guesses arrive at once, at most `max_failures` of
//! them reach argon2 per window. Attempts being checked are not failures: only a failed
//! check adds a failure, and the failure that reaches the limit starts the lockout
//! (`confirm_failure`), so good attempts in flight never lock an account. Only a successful
//! check clears the account's count; an attempt that could not be checked at all (hashing
//! busy, an error) gives its reservation back (`release`).
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
/// attempt may go on to the check: the key is not locked, and its failures plus the
/// attempts being checked right now stay below the limit; the attempt is then counted as
/// being checked (`in_flight`). A refused attempt changes nothing. Run it in its own short
/// unit of work: the row lock serialises concurrent attempts.
pub async fn reserve(conn: &mut PgConnection, key: &str, limits: &Limits) -> sqlx::Result<bool> {
    sqlx::query(
        "INSERT INTO login_throttle (key, failures, in_flight, first_failure_at) \
         VALUES ($1, 0, 0, now()) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .execute(&mut *conn)
    .await?;
    #[derive(sqlx::FromRow)]
    struct Row {
        failures: i32,
        in_flight: i32,
        locked: bool,
        /// The lockout has ended, or (unlocked) the window has passed: the count restarts.
        restart: bool,
    }
    let r: Row = sqlx::query_as(
        "SELECT failures, in_flight, (locked_until > now()) IS TRUE AS locked, \
           (locked_until <= now()) IS TRUE \
             OR (locked_until IS NULL AND first_failure_at <= now() - $2 * interval '1 second') \
             AS restart \
         FROM login_throttle WHERE key = $1 FOR UPDATE",
    )
    .bind(key)
    .bind(limits.window_seconds)
    .fetch_one(&mut *conn)
    .await?;
    if r.locked {
        return Ok(false);
    }
    let failures = if r.restart { 0 } else { r.failures };
    let allowed = failures.saturating_add(r.in_flight) < limits.max_failures;
    sqlx::query(
        "UPDATE login_throttle SET \
           failures = $2, \
           first_failure_at = CASE WHEN $3 THEN now() ELSE first_failure_at END, \
           locked_until = CASE WHEN $3 THEN NULL ELSE locked_until END, \
           in_flight = in_flight + $4 \
         WHERE key = $1",
    )
    .bind(key)
    .bind(failures)
    .bind(r.restart)
    .bind(i32::from(allowed))
    .execute(&mut *conn)
    .await?;
    Ok(allowed)
}

/// Gives back a reservation whose password was never checked, or whose check succeeded
/// (for the address key).
pub async fn release(conn: &mut PgConnection, key: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE login_throttle SET in_flight = in_flight - 1 WHERE key = $1 AND in_flight > 0",
    )
    .bind(key)
    .execute(conn)
    .await?;
    Ok(())
}

/// The reserved attempt failed its check: it becomes a failure. Returns true when this
/// failure starts a lockout (the failures reach the limit).
pub async fn confirm_failure(
    conn: &mut PgConnection,
    key: &str,
    limits: &Limits,
) -> sqlx::Result<bool> {
    let started: Option<bool> = sqlx::query_scalar(
        "UPDATE login_throttle t SET \
           in_flight = GREATEST(t.in_flight - 1, 0), \
           failures = t.failures + 1, \
           locked_until = CASE WHEN t.locked_until IS NULL AND t.failures + 1 >= $2 \
                               THEN now() + $3 * interval '1 second' ELSE t.locked_until END \
         FROM login_throttle old WHERE t.key = $1 AND old.key = $1 \
         RETURNING old.locked_until IS NULL AND t.locked_until IS NOT NULL",
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
