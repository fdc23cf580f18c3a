//! Sign-in, sign-out and the request guards that every non-public route takes.
//!
//! Guarantees: wrong password, unknown account and disabled account are refused with one
//! message and comparable cost; failures are throttled per account name and per client
//! address; every sign-in, failure, lockout and sign-out is audited; passwords and tokens
//! never reach logs, errors or the audit trail.

pub mod csrf;
pub mod guard;
pub mod password;
pub mod session;
pub mod throttle;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

pub use guard::{Authenticated, Principal, Require};

use crate::audit::{self, Actor, Event, Outcome};
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::telemetry::RequestMeta;
use crate::users::{self, User};

pub const SESSION_COOKIE: &str = "strongroom_session";

pub struct SignedIn {
    pub token: SecretString,
    pub session_id: uuid::Uuid,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

pub async fn login(
    db: &crate::tx::Db,
    config: &Config,
    meta: &RequestMeta,
    username: &str,
    password: SecretString,
) -> AppResult<SignedIn> {
    let pool = db.pool();
    let username = username.trim();
    let mut keys = vec![throttle::account_key(username)];
    if let Some(addr) = &meta.client_addr {
        keys.push(throttle::address_key(addr));
    }
    let actor = Actor::anonymous(meta, username);
    {
        let mut conn = pool.acquire().await?;
        if throttle::is_locked(&mut conn, &keys).await? {
            drop(conn);
            audit::record_alone(
                pool,
                &actor,
                Event::new("auth.login", Outcome::Denied).detail(json!({"reason": "locked"})),
            )
            .await?;
            tracing::warn!(target: "security", "sign-in refused: locked out");
            return Err(AppError::TooManyAttempts);
        }
    }
    let found = {
        let mut conn = pool.acquire().await?;
        users::credentials(&mut conn, username).await?
    };
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), Some(h)),
        None => (None, None),
    };
    let password_ok = password::verify(hash, password).await?;
    let reason = match &user {
        None => Some("unknown_account"),
        Some(_) if !password_ok => Some("wrong_password"),
        Some(u) if !u.is_active() => Some("account_disabled"),
        Some(_) => None,
    };
    let mut tx = pool.begin().await?;
    if let (None, Some(user)) = (reason, user) {
        throttle::clear(&mut tx, &keys[0]).await?;
        let s = session::create(
            &mut tx,
            user.id,
            meta.client_addr.as_deref(),
            config.session_absolute(),
        )
        .await?;
        let actor = Actor::user(user.id.0, &user.username, meta);
        audit::record(
            &mut tx,
            &actor,
            Event::new("auth.login", Outcome::Success)
                .object("session", s.id)
                .detail(json!({"user_id": user.id})),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(target: "security", user_id = %user.id, "signed in");
        return Ok(SignedIn {
            token: s.token,
            session_id: s.id,
            expires_at: s.expires_at,
            user,
        });
    }
    let reason = reason.unwrap_or("unknown");
    let limits_account = throttle::Limits {
        max_failures: config.login_max_failures as i32,
        window_seconds: f64::from(config.login_failure_window_seconds),
        lockout_seconds: f64::from(config.lockout_seconds),
    };
    let limits_address = throttle::Limits {
        max_failures: config.login_address_max_failures as i32,
        ..limits_account
    };
    let mut locked = Vec::new();
    if throttle::register_failure(&mut tx, &keys[0], &limits_account).await? {
        locked.push("account");
    }
    if let Some(k) = keys.get(1) {
        if throttle::register_failure(&mut tx, k, &limits_address).await? {
            locked.push("address");
        }
    }
    audit::record(
        &mut tx,
        &actor,
        Event::new("auth.login", Outcome::Failure).detail(json!({"reason": reason})),
    )
    .await?;
    for scope in &locked {
        audit::record(
            &mut tx,
            &actor,
            Event::new("auth.lockout", Outcome::Success).detail(json!({
                "scope": scope,
                "lockout_seconds": config.lockout_seconds,
            })),
        )
        .await?;
    }
    tx.commit().await?;
    tracing::warn!(target: "security", reason, "sign-in failed");
    Err(AppError::InvalidCredentials)
}

pub async fn logout(db: &crate::tx::Db, who: &Authenticated) -> AppResult<()> {
    crate::unit!(db, |tx| {
        session::end(&mut tx, who.session_id()).await?;
        tx.audit(
            &who.actor(),
            Event::new("auth.logout", Outcome::Success).object("session", who.session_id()),
        )
        .await
    })
}
