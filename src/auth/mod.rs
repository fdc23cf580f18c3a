//! Sign-in, sign-out and the request guards that every non-public route takes.
//!
//! Guarantees: wrong password, unknown account and disabled account are refused with one
//! message and comparable cost; attempts are counted before the password is checked and
//! throttled per account name and per client address (see `throttle`), so parallel guesses
//! cannot exceed the limit; the current password given to change it is throttled on the
//! same account key; every sign-in, failure, lockout and sign-out is audited; passwords and
//! tokens never reach logs, errors or the audit trail. An account with a second factor
//! (`second_factor`, `totp`) needs its code too: a wrong, replayed or used code is counted
//! and audited exactly like a wrong password, and a right password alone opens no session
//! (the API answers `totp_required`; the web keeps a short-lived, single-account challenge
//! for its second step).

pub mod csrf;
pub mod guard;
pub mod password;
pub mod second_factor;
pub mod session;
pub mod throttle;
pub mod totp;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

pub use guard::{Authenticated, Principal};

use crate::audit::{Actor, Event, Outcome};
use crate::config::Config;
use crate::crypto::KeyRing;
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

/// Signs in with a password and, for an account with a second factor, its code (`totp`:
/// a current TOTP code or an unused recovery code). An enrolled account without a code is
/// refused with `TotpRequired` (the password is not counted as a failure); a wrong,
/// replayed or used code is counted by the throttle like a wrong password and answered
/// `TotpInvalid`.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all)]
pub async fn login(
    db: &Db,
    config: &Config,
    hasher: &Hasher,
    keys: &KeyRing,
    meta: &RequestMeta,
    username: &str,
    password: SecretString,
    totp: Option<SecretString>,
) -> AppResult<SignedIn> {
    match attempt(
        db, config, hasher, keys, meta, username, password, totp, false,
    )
    .await?
    {
        Attempt::SignedIn(s) => Ok(*s),
        Attempt::CodeNeeded { .. } => Err(AppError::TotpRequired),
    }
}

/// How the web's password step ended: signed in, or the account wants its second factor
/// and a half-done sign-in (`challenge`, for a short-lived cookie) waits for the code.
pub enum Attempt {
    SignedIn(Box<SignedIn>),
    CodeNeeded { challenge: SecretString },
}

/// The web's first step: the password. See [`finish_with_code`] for the second.
#[tracing::instrument(skip_all)]
pub async fn begin_login(
    db: &Db,
    config: &Config,
    hasher: &Hasher,
    keys: &KeyRing,
    meta: &RequestMeta,
    username: &str,
    password: SecretString,
) -> AppResult<Attempt> {
    attempt(
        db, config, hasher, keys, meta, username, password, None, true,
    )
    .await
}

/// The counters one sign-in attempt is held to: the client address's and the account
/// name's.
struct Keys {
    address: Option<String>,
    account: String,
}

impl Keys {
    fn new(meta: &RequestMeta, username: &str) -> Keys {
        Keys {
            address: meta.client_addr.as_deref().map(throttle::address_key),
            account: throttle::account_key(username),
        }
    }

    /// Address first, then account: the order every unit locks the counters in.
    fn all(&self) -> Vec<&str> {
        self.address
            .as_deref()
            .into_iter()
            .chain(std::iter::once(self.account.as_str()))
            .collect()
    }

    /// Counts one attempt before anything is checked; false: locked out (audited as
    /// `action` denied).
    async fn reserve(
        &self,
        db: &Db,
        config: &Config,
        actor: &Actor,
        action: &'static str,
    ) -> AppResult<bool> {
        let limits_account = throttle::Limits::for_account(config);
        let limits_address = throttle::Limits::for_address(config);
        // The attempt is counted before the password is checked, so parallel guesses cannot
        // all slip in under the limit.
        let allowed = unit!(db, |tx| {
            let mut allowed = true;
            if let Some(k) = &self.address {
                allowed = throttle::reserve(&mut tx, k, &limits_address).await?;
            }
            if allowed {
                allowed = throttle::reserve(&mut tx, &self.account, &limits_account).await?;
                if !allowed {
                    // Refused for the account: the address's reservation is not used.
                    if let Some(k) = &self.address {
                        throttle::release(&mut tx, k).await?;
                    }
                }
            }
            Ok(allowed)
        })?;
        if !allowed {
            db.record(
                actor,
                Event::new(action, Outcome::Denied).detail(json!({"reason": "locked"})),
            )
            .await?;
            tracing::warn!(target: "security", "sign-in refused: locked out");
        }
        Ok(allowed)
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    db: &Db,
    config: &Config,
    hasher: &Hasher,
    keys: &KeyRing,
    meta: &RequestMeta,
    username: &str,
    password: SecretString,
    totp: Option<SecretString>,
    want_challenge: bool,
) -> AppResult<Attempt> {
    let username = username.trim();
    let counters = Keys::new(meta, username);
    let actor = Actor::anonymous(meta, username);
    if !counters.reserve(db, config, &actor, "auth.login").await? {
        return Err(AppError::TooManyAttempts);
    }
    let reserved = counters.all();
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
    let mut reason = match &user {
        None => Some("unknown_account"),
        Some(_) if !password_ok => Some("wrong_password"),
        Some(u) if !u.is_active() => Some("account_disabled"),
        Some(_) => None,
    };
    let mut method = "password";
    if let (None, Some(u)) = (reason, &user) {
        let who = Actor::user(u.id.0, &u.username, meta);
        match second_factor::check_at_sign_in(db, keys, &who, u, totp.as_ref()).await {
            Ok(second_factor::Check::NotEnrolled) => {}
            Ok(second_factor::Check::Passed(m)) => method = m,
            Ok(second_factor::Check::Refused(why)) => reason = Some(why),
            Ok(second_factor::Check::Missing) => {
                // The password was right: not a failure, but not a success either (the
                // account's count is not cleared until the code is proven too).
                give_back(db, &reserved).await;
                if want_challenge {
                    let challenge = second_factor::open_challenge(db, u.id).await?;
                    return Ok(Attempt::CodeNeeded { challenge });
                }
                return Err(AppError::TotpRequired);
            }
            Err(e) => {
                give_back(db, &reserved).await;
                return Err(e);
            }
        }
    }
    if let (None, Some(user)) = (reason, user) {
        return succeed(db, config, meta, &counters, user, method, None)
            .await
            .map(|s| Attempt::SignedIn(Box::new(s)));
    }
    let reason = reason.unwrap_or("unknown");
    fail(db, config, &actor, &counters, reason).await?;
    tracing::warn!(target: "security", reason, "sign-in failed");
    Err(if is_code_failure(reason) {
        AppError::TotpInvalid
    } else {
        AppError::InvalidCredentials
    })
}

fn is_code_failure(reason: &str) -> bool {
    matches!(
        reason,
        "wrong_totp" | "totp_replayed" | "recovery_code_used" | "wrong_recovery_code"
    )
}

/// The web's second step: the code for the half-done sign-in `challenge` (from
/// [`begin_login`]). Counted and throttled like a password attempt on the same account
/// and address; the challenge is closed when it leads to a session or the account is
/// locked out. `Unauthenticated` when the challenge is unknown or has expired.
#[tracing::instrument(skip_all)]
pub async fn finish_with_code(
    db: &Db,
    config: &Config,
    keys: &KeyRing,
    meta: &RequestMeta,
    challenge: &str,
    code: SecretString,
) -> AppResult<SignedIn> {
    let Some(user) = second_factor::challenge_user(db, challenge).await? else {
        return Err(AppError::Unauthenticated);
    };
    let counters = Keys::new(meta, &user.username);
    let actor = Actor::user(user.id.0, &user.username, meta);
    if !counters.reserve(db, config, &actor, "auth.login").await? {
        unit!(db, |tx| second_factor::close_challenge(&mut tx, challenge)
            .await)?;
        return Err(AppError::TooManyAttempts);
    }
    let reserved = counters.all();
    let method = match second_factor::check_at_sign_in(db, keys, &actor, &user, Some(&code)).await {
        // Reset by an administrator since the password step: the password stands.
        Ok(second_factor::Check::NotEnrolled) => "password",
        Ok(second_factor::Check::Passed(m)) => m,
        Ok(second_factor::Check::Missing) => {
            give_back(db, &reserved).await;
            return Err(AppError::invalid("code", "enter the code"));
        }
        Ok(second_factor::Check::Refused(why)) => {
            let locked = fail(db, config, &actor, &counters, why).await?;
            if locked {
                unit!(db, |tx| second_factor::close_challenge(&mut tx, challenge)
                    .await)?;
            }
            tracing::warn!(target: "security", reason = why, "sign-in failed at the second step");
            return Err(AppError::TotpInvalid);
        }
        Err(e) => {
            give_back(db, &reserved).await;
            return Err(e);
        }
    };
    succeed(db, config, meta, &counters, user, method, Some(challenge)).await
}

/// A sign-in that passed: the counters are cleared, a session is made and the sign-in is
/// audited, in one unit of work (with the web's half-done sign-in closed, if any).
async fn succeed(
    db: &Db,
    config: &Config,
    meta: &RequestMeta,
    counters: &Keys,
    user: User,
    method: &'static str,
    challenge: Option<&str>,
) -> AppResult<SignedIn> {
    let s = unit!(db, |tx| {
        // Counters are always locked address first, then account (as `reserve` does),
        // so concurrent sign-ins cannot deadlock. A success is not a failure from this
        // address either.
        if let Some(k) = &counters.address {
            throttle::release(&mut tx, k).await?;
        }
        throttle::clear(&mut tx, &counters.account).await?;
        if let Some(c) = challenge {
            second_factor::close_challenge(&mut tx, c).await?;
        }
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
                .detail(json!({"user_id": user.id, "second_factor": method})),
        )
        .await?;
        Ok(s)
    })?;
    tracing::info!(target: "security", user_id = %user.id, "signed in");
    Ok(SignedIn {
        token: s.token,
        session_id: s.id,
        expires_at: s.expires_at,
        user,
    })
}

/// A refused attempt: counted as a failure on both counters and audited (with any lockout
/// it starts). Returns whether the account is now locked out.
async fn fail(
    db: &Db,
    config: &Config,
    actor: &Actor,
    counters: &Keys,
    reason: &'static str,
) -> AppResult<bool> {
    let limits_account = throttle::Limits::for_account(config);
    let limits_address = throttle::Limits::for_address(config);
    unit!(db, |tx| {
        let mut locked = Vec::new();
        if let Some(k) = &counters.address {
            if throttle::confirm_failure(&mut tx, k, &limits_address).await? {
                locked.push("address");
            }
        }
        let account_locked =
            throttle::confirm_failure(&mut tx, &counters.account, &limits_account).await?;
        if account_locked {
            locked.push("account");
        }
        tx.audit(
            actor,
            Event::new("auth.login", Outcome::Failure).detail(json!({"reason": reason})),
        )
        .await?;
        record_lockouts(&mut tx, actor, config, &locked).await?;
        Ok(account_locked)
    })
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
