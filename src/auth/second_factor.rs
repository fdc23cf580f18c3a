//! Two-factor sign-in: enrolment of a TOTP authenticator (see [`super::totp`]), its
//! recovery codes, the check at sign-in, the web's half-done sign-in between the password
//! and the code, and an administrator's reset.
//!
//! Guarantees:
//! - The secret is stored only sealed under the active key-encryption key (AES-256-GCM,
//!   the account id and `totp.secret` as associated data, so a sealed secret cannot be
//!   moved to another account); it is shown once, at enrolment, and never logged or
//!   audited. Recovery codes are stored only as keyed hashes (HMAC-SHA256 under the
//!   blind-index key, bound to the account) and shown once.
//! - An enrolment is pending until a code from it is proven; starting again replaces a
//!   pending secret but never a confirmed one (409: an administrator resets it).
//! - A code is accepted once: the time step it matched is stored, under the row's lock,
//!   and that step and every earlier one are refused from then on; a recovery code is
//!   marked used in the same statement that accepts it.
//! - Whether a code was right is decided here; the caller (`auth::login`) counts refused
//!   codes in the sign-in throttle like wrong passwords and audits them.
//! - Accounts holding a role of `totp_required_roles` without a confirmed second factor
//!   are held to enrolment by the request guard (`guard::Principal`).

use chrono::{Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgConnection;
use zeroize::Zeroizing;

use super::totp::{self, Secret};
use super::{session, Authenticated, Principal};
use crate::audit::{Actor, Event, Outcome};
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::error::{AppError, AppResult};
use crate::policy::{Action, ManageUsers};
use crate::tx::Db;
use crate::users::{Role, User, UserId};
use crate::{unit, App};

/// The issuer named in authenticator apps.
pub const ISSUER: &str = "Strongroom";
/// The associated-data field name of a sealed secret (with the account id as "record").
pub const SECRET_FIELD: &str = "totp.secret";
/// The blind-index domain of recovery-code hashes.
const RECOVERY_DOMAIN: &str = "totp.recovery";
/// How long the web's second step waits for its code.
pub const CHALLENGE_MINUTES: i64 = 5;

const ALREADY_ENROLLED: &str =
    "two-factor sign-in is already set up for this account; an administrator can reset it";
const NOTHING_PENDING: &str =
    "no two-factor setup is waiting for confirmation; start the setup again";
const WRONG_CODE: &str = "is not the current code of your authenticator app";
const SELF_RESET: &str = "you cannot reset your own two-factor sign-in; ask another administrator";
const NOT_ENROLLED: &str = "this account has no two-factor sign-in to reset";

/// A new, pending enrolment: what the person types or scans into their app. Shown once.
pub struct Enrolment {
    pub secret: Zeroizing<String>,
    pub otpauth_uri: Zeroizing<String>,
}

/// Where an account stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// A confirmed second factor.
    pub enrolled: bool,
    /// An enrolment begun and not yet confirmed.
    pub pending: bool,
}

/// The roles the configuration holds to a second factor.
pub fn required_roles(config: &Config) -> Vec<Role> {
    config
        .totp_required_roles
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect()
}

/// Whether `user` must have a second factor before doing anything but enrol.
pub fn required_for(config: &Config, user: &User) -> bool {
    required_roles(config).iter().any(|r| user.has_role(*r))
}

/// Where the account stands.
pub async fn status(db: &Db, user: UserId) -> AppResult<Status> {
    unit!(db, |tx| Ok(repo::status(&mut tx, user).await?))
}

/// Whether the account has a confirmed second factor (for the request guard).
pub async fn is_enrolled(pool: &sqlx::PgPool, user: UserId) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL)",
    )
    .bind(user)
    .fetch_one(pool)
    .await
}

fn seal(keys: &KeyRing, user: UserId, secret: &Secret) -> (String, Vec<u8>) {
    keys.encrypt_field(user.0, SECRET_FIELD, &secret.to_base32())
}

fn open(keys: &KeyRing, user: UserId, kek_id: &str, sealed: &[u8]) -> AppResult<Secret> {
    let text = keys
        .decrypt_field(user.0, SECRET_FIELD, kek_id, sealed)
        .map_err(|e| AppError::internal(format!("two-factor secret of {user}: {e}")))?;
    Secret::from_base32(&text)
        .ok_or_else(|| AppError::internal(format!("two-factor secret of {user} is malformed")))
}

fn recovery_hash(keys: &KeyRing, user: UserId, normalized: &str) -> Vec<u8> {
    keys.blind_index(RECOVERY_DOMAIN, &format!("{user}:{normalized}"))
}

fn enrolment(secret: &Secret, user: &User) -> Enrolment {
    Enrolment {
        secret: secret.to_base32(),
        otpauth_uri: secret.otpauth_uri(ISSUER, &user.username),
    }
}

/// Starts (or starts again) the signed-in person's enrolment: a new secret, pending until
/// [`confirm`]. Refused (409) when a confirmed second factor exists. Audited `totp.enrol`.
#[tracing::instrument(skip_all)]
pub async fn begin(app: &App, who: &Authenticated) -> AppResult<Enrolment> {
    let user = who.user();
    let secret = Secret::generate();
    let (kek_id, sealed) = seal(&app.keys, user.id, &secret);
    unit!(app.db, |tx| {
        if repo::status(&mut tx, user.id).await?.enrolled {
            tx.refuse(
                &who.actor(),
                Event::new("totp.enrol", Outcome::Denied)
                    .object("user", user.id)
                    .detail(json!({"reason": "already_enrolled"})),
            );
            return Err(AppError::Conflict(ALREADY_ENROLLED.into()));
        }
        let replaced = repo::put_pending(&mut tx, user.id, &kek_id, &sealed).await?;
        tx.audit(
            &who.actor(),
            Event::new("totp.enrol", Outcome::Success)
                .object("user", user.id)
                .detail(json!({"replaced_pending": replaced})),
        )
        .await
    })?;
    tracing::info!(target: "security", user_id = %user.id, "two-factor enrolment started");
    Ok(enrolment(&secret, user))
}

/// The pending enrolment of the signed-in person, to show again (after a mistyped code).
pub async fn pending(app: &App, who: &Authenticated) -> AppResult<Option<Enrolment>> {
    let user = who.user();
    let row = unit!(app.db, |tx| Ok(repo::pending(&mut tx, user.id).await?))?;
    match row {
        None => Ok(None),
        Some((kek_id, sealed)) => {
            let secret = open(&app.keys, user.id, &kek_id, &sealed)?;
            Ok(Some(enrolment(&secret, user)))
        }
    }
}

/// Confirms the pending enrolment with a code from the app: the second factor is on from
/// now, and ten recovery codes are returned (once; only their hashes are kept). A wrong
/// code is 422 on the field `code`, audited `totp.confirm` failed.
#[tracing::instrument(skip_all)]
pub async fn confirm(
    app: &App,
    who: &Authenticated,
    code: &str,
) -> AppResult<Vec<Zeroizing<String>>> {
    let user = who.user();
    let actor = who.actor();
    let codes = totp::recovery_codes();
    let hashes: Vec<Vec<u8>> = codes
        .iter()
        .filter_map(|c| totp::normalize_recovery_code(c))
        .map(|n| recovery_hash(&app.keys, user.id, &n))
        .collect();
    unit!(app.db, |tx| {
        let Some((kek_id, sealed)) = repo::lock_pending(&mut tx, user.id).await? else {
            let status = repo::status(&mut tx, user.id).await?;
            return Err(AppError::Conflict(
                if status.enrolled {
                    ALREADY_ENROLLED
                } else {
                    NOTHING_PENDING
                }
                .into(),
            ));
        };
        let secret = open(&app.keys, user.id, &kek_id, &sealed)?;
        let Some(step) = secret.verify(code, Utc::now().timestamp()) else {
            tx.refuse(
                &actor,
                Event::new("totp.confirm", Outcome::Failure)
                    .object("user", user.id)
                    .detail(json!({"reason": "wrong_code"})),
            );
            return Err(AppError::invalid("code", WRONG_CODE));
        };
        repo::confirm(&mut tx, user.id, step, &hashes).await?;
        tx.audit(
            &actor,
            Event::new("totp.confirm", Outcome::Success)
                .object("user", user.id)
                .detail(json!({"recovery_codes": hashes.len()})),
        )
        .await
    })?;
    tracing::info!(target: "security", user_id = %user.id, "two-factor sign-in confirmed");
    Ok(codes)
}

/// An administrator turns off a person's second factor (`user.manage`), e.g. after a lost
/// phone: the secret and recovery codes are deleted and the person's sessions end; if
/// their role requires a second factor, they enrol again at next sign-in. Not for one's
/// own account. Audited `totp.reset`.
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn reset(app: &App, who: &Principal, id: UserId) -> AppResult<User> {
    app.db
        .authorize::<ManageUsers>(&app.policies, who, None, Some(("user", id.to_string())))
        .await?;
    let user = unit!(app.db, |tx| {
        let Some(user) = repo::find_user(&mut tx, id).await? else {
            return Err(tx.not_found(who, ManageUsers::NAME, ("user", id.to_string())));
        };
        if id == who.user().id {
            tx.refuse(
                &who.actor(),
                Event::new("totp.reset", Outcome::Denied)
                    .object("user", id)
                    .detail(json!({"reason": "own_account"})),
            );
            return Err(AppError::Conflict(SELF_RESET.into()));
        }
        if !repo::delete(&mut tx, id).await? {
            return Err(AppError::Conflict(NOT_ENROLLED.into()));
        }
        let ended = session::end_all_for_user(&mut tx, id).await?;
        tx.audit(
            &who.actor(),
            Event::new("totp.reset", Outcome::Success)
                .object("user", id)
                .detail(json!({"username": user.username, "sessions_ended": ended})),
        )
        .await?;
        Ok(user)
    })?;
    tracing::info!(target: "security", user_id = %id, "two-factor sign-in reset by an administrator");
    Ok(user)
}

/// What the second factor says about a sign-in whose password was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The account has no confirmed second factor: the password is enough.
    NotEnrolled,
    /// The account has one and no code came.
    Missing,
    /// A right code (`totp`) or an unused recovery code (`recovery_code`).
    Passed(&'static str),
    /// A wrong, replayed or used code: why, for the audit trail.
    Refused(&'static str),
}

/// Checks the code of a sign-in whose password was right, consuming it when it passes
/// (the time step, or the recovery code). A used recovery code is audited
/// `totp.recovery_code_used` in the same unit of work.
pub(crate) async fn check_at_sign_in(
    db: &Db,
    keys: &KeyRing,
    actor: &Actor,
    user: &User,
    code: Option<&SecretString>,
) -> AppResult<Check> {
    let code = code.map(|c| c.expose_secret().trim()).unwrap_or("");
    unit!(db, |tx| {
        let Some((kek_id, sealed, last_step)) = repo::lock_confirmed(&mut tx, user.id).await?
        else {
            return Ok(Check::NotEnrolled);
        };
        if code.is_empty() {
            return Ok(Check::Missing);
        }
        if totp::normalize_code(code).is_some() {
            let secret = open(keys, user.id, &kek_id, &sealed)?;
            return Ok(match secret.verify(code, Utc::now().timestamp()) {
                None => Check::Refused("wrong_totp"),
                Some(step) if last_step.is_some_and(|l| step <= l) => {
                    Check::Refused("totp_replayed")
                }
                Some(step) => {
                    repo::set_last_step(&mut tx, user.id, step).await?;
                    Check::Passed("totp")
                }
            });
        }
        let Some(normalized) = totp::normalize_recovery_code(code) else {
            return Ok(Check::Refused("wrong_totp"));
        };
        let hash = recovery_hash(keys, user.id, &normalized);
        match repo::use_recovery_code(&mut tx, user.id, &hash).await? {
            Some(left) => {
                tx.audit(
                    actor,
                    Event::new("totp.recovery_code_used", Outcome::Success)
                        .object("user", user.id)
                        .detail(json!({"recovery_codes_left": left})),
                )
                .await?;
                Ok(Check::Passed("recovery_code"))
            }
            None if repo::recovery_code_exists(&mut tx, user.id, &hash).await? => {
                Ok(Check::Refused("recovery_code_used"))
            }
            None => Ok(Check::Refused("wrong_recovery_code")),
        }
    })
}

/// Opens the web's second step for `user` (whose password was just proven): a random
/// token for a cookie, valid [`CHALLENGE_MINUTES`]. Expired ones are cleared on the way.
pub(crate) async fn open_challenge(db: &Db, user: UserId) -> AppResult<SecretString> {
    let token = session::random_token();
    let hash = session::hash_token(&token);
    unit!(db, |tx| {
        repo::purge_challenges(&mut tx).await?;
        repo::insert_challenge(&mut tx, &hash, user, Duration::minutes(CHALLENGE_MINUTES)).await?;
        Ok(())
    })?;
    Ok(SecretString::from(token))
}

/// The account a live challenge token stands for (the account must still be active).
pub(crate) async fn challenge_user(db: &Db, token: &str) -> AppResult<Option<User>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let hash = session::hash_token(token);
    unit!(db, |tx| Ok(repo::challenge_user(&mut tx, &hash).await?))
}

/// Ends a challenge (used, or its account locked out).
pub(crate) async fn close_challenge(conn: &mut PgConnection, token: &str) -> AppResult<()> {
    repo::delete_challenge(conn, &session::hash_token(token)).await?;
    Ok(())
}

mod repo {
    use super::*;
    use crate::users::model::UserRow;

    pub(super) async fn status(conn: &mut PgConnection, user: UserId) -> sqlx::Result<Status> {
        let confirmed: Option<bool> =
            sqlx::query_scalar("SELECT confirmed_at IS NOT NULL FROM user_totp WHERE user_id = $1")
                .bind(user)
                .fetch_optional(conn)
                .await?;
        Ok(Status {
            enrolled: confirmed == Some(true),
            pending: confirmed == Some(false),
        })
    }

    /// Stores a pending secret, replacing a pending one (never a confirmed one: the caller
    /// checked under the same transaction, and the `WHERE` refuses it anyway). Returns
    /// whether a pending one was replaced.
    pub(super) async fn put_pending(
        conn: &mut PgConnection,
        user: UserId,
        kek_id: &str,
        sealed: &[u8],
    ) -> sqlx::Result<bool> {
        let replaced: Option<bool> = sqlx::query_scalar(
            "INSERT INTO user_totp (user_id, kek_id, secret_sealed) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET kek_id = EXCLUDED.kek_id, \
               secret_sealed = EXCLUDED.secret_sealed, created_at = now(), last_step = NULL \
             WHERE user_totp.confirmed_at IS NULL \
             RETURNING NOT (xmax = 0)",
        )
        .bind(user)
        .bind(kek_id)
        .bind(sealed)
        .fetch_optional(conn)
        .await?;
        Ok(replaced.unwrap_or(false))
    }

    pub(super) async fn pending(
        conn: &mut PgConnection,
        user: UserId,
    ) -> sqlx::Result<Option<(String, Vec<u8>)>> {
        sqlx::query_as(
            "SELECT kek_id, secret_sealed FROM user_totp \
             WHERE user_id = $1 AND confirmed_at IS NULL",
        )
        .bind(user)
        .fetch_optional(conn)
        .await
    }

    pub(super) async fn lock_pending(
        conn: &mut PgConnection,
        user: UserId,
    ) -> sqlx::Result<Option<(String, Vec<u8>)>> {
        sqlx::query_as(
            "SELECT kek_id, secret_sealed FROM user_totp \
             WHERE user_id = $1 AND confirmed_at IS NULL FOR UPDATE",
        )
        .bind(user)
        .fetch_optional(conn)
        .await
    }

    pub(super) async fn lock_confirmed(
        conn: &mut PgConnection,
        user: UserId,
    ) -> sqlx::Result<Option<(String, Vec<u8>, Option<i64>)>> {
        sqlx::query_as(
            "SELECT kek_id, secret_sealed, last_step FROM user_totp \
             WHERE user_id = $1 AND confirmed_at IS NOT NULL FOR UPDATE",
        )
        .bind(user)
        .fetch_optional(conn)
        .await
    }

    pub(super) async fn confirm(
        conn: &mut PgConnection,
        user: UserId,
        step: i64,
        hashes: &[Vec<u8>],
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE user_totp SET confirmed_at = now(), last_step = $2 WHERE user_id = $1")
            .bind(user)
            .bind(step)
            .execute(&mut *conn)
            .await?;
        sqlx::query("DELETE FROM user_recovery_codes WHERE user_id = $1")
            .bind(user)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO user_recovery_codes (user_id, code_hash) \
             SELECT $1, h FROM unnest($2::bytea[]) AS h",
        )
        .bind(user)
        .bind(hashes)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(super) async fn set_last_step(
        conn: &mut PgConnection,
        user: UserId,
        step: i64,
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE user_totp SET last_step = $2 WHERE user_id = $1")
            .bind(user)
            .bind(step)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Marks an unused recovery code used; the number left, or `None` when no unused
    /// code has that hash.
    pub(super) async fn use_recovery_code(
        conn: &mut PgConnection,
        user: UserId,
        hash: &[u8],
    ) -> sqlx::Result<Option<i64>> {
        let used = sqlx::query(
            "UPDATE user_recovery_codes SET used_at = now() \
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user)
        .bind(hash)
        .execute(&mut *conn)
        .await?;
        if used.rows_affected() == 0 {
            return Ok(None);
        }
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM user_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user)
        .fetch_one(conn)
        .await?;
        Ok(Some(left))
    }

    pub(super) async fn recovery_code_exists(
        conn: &mut PgConnection,
        user: UserId,
        hash: &[u8],
    ) -> sqlx::Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM user_recovery_codes \
             WHERE user_id = $1 AND code_hash = $2)",
        )
        .bind(user)
        .bind(hash)
        .fetch_one(conn)
        .await
    }

    /// Deletes the account's second factor (and, by cascade, its recovery codes).
    pub(super) async fn delete(conn: &mut PgConnection, user: UserId) -> sqlx::Result<bool> {
        let r = sqlx::query("DELETE FROM user_totp WHERE user_id = $1")
            .bind(user)
            .execute(conn)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    const USER_COLUMNS: &str = "u.id, u.username, u.display_name, u.department, u.roles, \
        u.status, u.must_change_password, u.created_at, u.disabled_at, u.locale, u.time_zone";

    pub(super) async fn find_user(
        conn: &mut PgConnection,
        user: UserId,
    ) -> sqlx::Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
        ))
        .bind(user)
        .fetch_optional(conn)
        .await?;
        Ok(row.map(Into::into))
    }

    pub(super) async fn purge_challenges(conn: &mut PgConnection) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM login_challenges WHERE expires_at <= now()")
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(super) async fn insert_challenge(
        conn: &mut PgConnection,
        hash: &[u8],
        user: UserId,
        lifetime: Duration,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO login_challenges (token_hash, user_id, expires_at) \
             VALUES ($1, $2, now() + $3 * interval '1 second')",
        )
        .bind(hash)
        .bind(user)
        .bind(lifetime.num_seconds() as f64)
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(super) async fn challenge_user(
        conn: &mut PgConnection,
        hash: &[u8],
    ) -> sqlx::Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM login_challenges c JOIN users u ON u.id = c.user_id \
             WHERE c.token_hash = $1 AND c.expires_at > now() AND u.status = 'active'"
        ))
        .bind(hash)
        .fetch_optional(conn)
        .await?;
        Ok(row.map(Into::into))
    }

    pub(super) async fn delete_challenge(conn: &mut PgConnection, hash: &[u8]) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM login_challenges WHERE token_hash = $1")
            .bind(hash)
            .execute(conn)
            .await?;
        Ok(())
    }
}
