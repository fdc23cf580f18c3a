//! Sign-in, sign-out and the request guards that every non-public route takes.
//!
//! Guarantees: wrong password, unknown account and disabled account are refused with one
//! message and comparable cost; attempts are counted before the password is checked and
//! throttled per account name and per client address (see `throttle`), so parallel guesses
//! cannot exceed the limit; the current password given to change it is throttled on the
//! same account key; every sign-in, failure, lockout and sign-out is audited; passwords and
//! tokens never reach logs, errors or the audit trail.

pub mod csrf;
pub mod guard;
pub mod password;
pub mod session;
pub mod throttle;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

pub use guard::{Authenticated, Principal};

use crate::audit::{Actor, Event, Outcome};
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::telemetry::RequestMeta;
use crate::tx::Db;
use crate::unit;
use crate::users::{self, User};
use password::Hasher;

pub const SESSION_COOKIE: &str = "strongroom_session";

pub struct SignedIn {
    pub token: SecretString,
    pub session_id: uuid::Uuid,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[tracing::instrument(skip_all)]
pub async fn login(
    db: &Db,
    config: &Config,
    hasher: &Hasher,
    meta: &RequestMeta,
    username: &str,
    password: SecretString,
) -> AppResult<SignedIn> {
    let username = username.trim();
    let account_key = throttle::account_key(username);
    let address_key = meta.client_addr.as_deref().map(throttle::address_key);
    let limits_account = throttle::Limits::for_account(config);
    let limits_address = throttle::Limits::for_address(config);
    let actor = Actor::anonymous(meta, username);
    // The attempt is counted before the password is checked, so parallel guesses cannot
    // all slip in under the limit.
    let allowed = unit!(db, |tx| {
        let mut allowed = true;
        if let Some(k) = &address_key {
            allowed = throttle::reserve(&mut tx, k, &limits_address).await?;
        }
        if allowed {
            allowed = throttle::reserve(&mut tx, &account_key, &limits_account).await?;
            if !allowed {
                // Refused for the account: the address's reservation is not used.
                if let Some(k) = &address_key {
                    throttle::release(&mut tx, k).await?;
                }
            }
        }
        Ok(allowed)
    })?;
    if !allowed {
        db.record(
            &actor,
            Event::new("auth.login", Outcome::Denied).detail(json!({"reason": "locked"})),
        )
        .await?;
        tracing::warn!(target: "security", "sign-in refused: locked out");
        return Err(AppError::TooManyAttempts);
    }
    // Address first, then account: the order every unit locks the counters in.
    let reserved: Vec<&str> = address_key
        .as_deref()
        .into_iter()
        .chain(std::iter::once(account_key.as_str()))
        .collect();
    let checked = async {
        let found = unit!(db, |tx| users::credentials(&mut tx, username).await)?;
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), Some(h)),
            None => (None, None),
        };
        let ok = hasher.verify(hash, password).await?;
        Ok::<_, AppError>((user, ok))
    }
    .await;
    let (user, password_ok) = match checked {
        Ok(c) => c,
        Err(e) => {
            // Not a failed guess: the password was never checked.
            give_back(db, &reserved).await;
            return Err(e);
        }
    };
    let reason = match &user {
        None => Some("unknown_account"),
        Some(_) if !password_ok => Some("wrong_password"),
        Some(u) if !u.is_active() => Some("account_disabled"),
        Some(_) => None,
    };
    if let (None, Some(user)) = (reason, user) {
        let s = unit!(db, |tx| {
            // Counters are always locked address first, then account (as `reserve` does),
            // so concurrent sign-ins cannot deadlock. A success is not a failure from this
            // address either.
            if let Some(k) = &address_key {
                throttle::release(&mut tx, k).await?;
            }
            throttle::clear(&mut tx, &account_key).await?;
            let s = session::create(
                &mut tx,
                user.id,
                meta.client_addr.as_deref(),
                config.session_absolute(),
            )
            .await?;
            users::note_sign_in(&mut tx, user.id).await?;
            let actor = Actor::user(user.id.0, &user.username, meta);
            tx.audit(
                &actor,
                Event::new("auth.login", Outcome::Success)
                    .object("session", s.id)
                    .detail(json!({"user_id": user.id})),
            )
            .await?;
            Ok(s)
        })?;
        tracing::info!(target: "security", user_id = %user.id, "signed in");
        return Ok(SignedIn {
            token: s.token,
            session_id: s.id,
            expires_at: s.expires_at,
            user,
        });
    }
    let reason = reason.unwrap_or("unknown");
    unit!(db, |tx| {
        let mut locked = Vec::new();
        if let Some(k) = &address_key {
            if throttle::confirm_failure(&mut tx, k, &limits_address).await? {
                locked.push("address");
            }
        }
        if throttle::confirm_failure(&mut tx, &account_key, &limits_account).await? {
            locked.push("account");
        }
        tx.audit(
            &actor,
            Event::new("auth.login", Outcome::Failure).detail(json!({"reason": reason})),
        )
        .await?;
        record_lockouts(&mut tx, &actor, config, &locked).await
    })?;
    tracing::warn!(target: "security", reason, "sign-in failed");
    Err(AppError::InvalidCredentials)
}

/// Checks the current password a signed-in person gives to change it, under the same
/// throttle and account key as sign-in: a stolen session cannot guess more than the
/// sign-in limit allows, and each failure and lockout is audited. `Ok(())` only when the
/// password is right.
#[tracing::instrument(skip_all)]
pub async fn check_current_password(
    db: &Db,
    config: &Config,
    hasher: &Hasher,
    actor: &Actor,
    user: &User,
    current: SecretString,
) -> AppResult<()> {
    let key = throttle::account_key(&user.username);
    let limits = throttle::Limits::for_account(config);
    let allowed = unit!(
        db,
        |tx| Ok(throttle::reserve(&mut tx, &key, &limits).await?)
    )?;
    if !allowed {
        db.record(
            actor,
            Event::new("user.password_change", Outcome::Denied)
                .object("user", user.id)
                .detail(json!({"reason": "locked"})),
        )
        .await?;
        tracing::warn!(target: "security", user_id = %user.id, "password change refused: locked out");
        return Err(AppError::TooManyAttempts);
    }
    let checked = async {
        let stored =
            unit!(db, |tx| users::credentials(&mut tx, &user.username).await)?.map(|(_, h)| h);
        hasher.verify(stored, current).await
    }
    .await;
    let ok = match checked {
        Ok(ok) => ok,
        Err(e) => {
            give_back(db, &[key.as_str()]).await;
            return Err(e);
        }
    };
    if ok {
        return unit!(db, |tx| Ok(throttle::clear(&mut tx, &key).await?));
    }
    unit!(db, |tx| {
        let locked = throttle::confirm_failure(&mut tx, &key, &limits).await?;
        tx.audit(
            actor,
            Event::new("user.password_change", Outcome::Failure)
                .object("user", user.id)
                .detail(json!({"reason": "current password wrong"})),
        )
        .await?;
        if locked {
            record_lockouts(&mut tx, actor, config, &["account"]).await?;
        }
        Ok(())
    })?;
    tracing::warn!(target: "security", user_id = %user.id, "password change: current password wrong");
    Err(AppError::invalid("current_password", "is not correct"))
}

async fn record_lockouts(
    tx: &mut crate::tx::Tx,
    actor: &Actor,
    config: &Config,
    scopes: &[&str],
) -> AppResult<()> {
    for scope in scopes {
        tx.audit(
            actor,
            Event::new("auth.lockout", Outcome::Success).detail(json!({
                "scope": scope,
                "lockout_seconds": config.lockout_seconds,
            })),
        )
        .await?;
    }
    Ok(())
}

/// Returns reservations of attempts whose password was never checked. Best effort: when
/// the database itself failed, the attempt stays counted, which errs on the safe side.
async fn give_back(db: &Db, keys: &[&str]) {
    let released: AppResult<()> = async {
        unit!(db, |tx| {
            for k in keys {
                throttle::release(&mut tx, k).await?;
            }
            Ok(())
        })
    }
    .await;
    if let Err(e) = released {
        tracing::debug!(error = %e, "throttle reservation not released");
    }
}

#[tracing::instrument(skip_all)]
pub async fn logout(db: &Db, who: &Authenticated) -> AppResult<()> {
    unit!(db, |tx| {
        session::end(&mut tx, who.session_id()).await?;
        tx.audit(
            &who.actor(),
            Event::new("auth.logout", Outcome::Success).object("session", who.session_id()),
        )
        .await
    })
}
