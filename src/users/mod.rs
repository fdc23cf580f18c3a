//! Accounts and roles. Every change to an account is audited in the unit of work that makes
//! it; disabling an account ends all its sessions in that same transaction.
//!
//! People manage accounts through [`create`], [`list`] and [`disable`], which ask the
//! access policy (`user.manage`) themselves and audit a refusal. The `*_by_operator`
//! functions serve the command line: its user is the machine's operator, who holds the
//! database credentials and the master key, not a person under the vault's policy.

pub mod leavers;
pub mod model;
mod repo;
pub mod review;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::auth::Principal;
use crate::policy::{Action, ManageUsers};
use crate::tx::{Db, Tx};
use crate::{unit, App};

pub use model::{NewUser, Role, User, UserChanges, UserId};

use crate::audit::{Actor, Event, Outcome};
use crate::auth::password;
use crate::error::{AppError, AppResult};

fn check_username(username: &str) -> AppResult<()> {
    let ok = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(AppError::invalid(
            "username",
            "must be 1 to 64 characters: letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(())
}

/// An administrator creates an account (`user.manage`).
#[tracing::instrument(skip_all)]
pub async fn create(app: &App, who: &Principal, new: NewUser) -> AppResult<User> {
    manage(app, who, None).await?;
    insert(&app.db, &app.hasher, &who.actor(), new).await
}

/// The accounts, for an administrator (`user.manage`).
#[tracing::instrument(skip_all)]
pub async fn list(app: &App, who: &Principal) -> AppResult<Vec<User>> {
    manage(app, who, None).await?;
    unit!(app.db, |tx| Ok(repo::list(&mut tx).await?))
}

/// An administrator disables an account (`user.manage`), settling what the person holds
/// (see [`disable_with`]) with no handover note.
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn disable(app: &App, who: &Principal, id: UserId) -> AppResult<User> {
    disable_with(app, who, id, None).await.map(|(u, _)| u)
}

/// What the person holds now (pending requests, grants in force, loans out), for the
/// administrator about to disable the account (`user.manage`).
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn holdings_for(app: &App, who: &Principal, id: UserId) -> AppResult<leavers::Holdings> {
    manage(app, who, Some(id)).await?;
    unit!(app.db, |tx| match repo::find(&mut tx, id).await? {
        Some(_) => leavers::holdings(&mut tx, id, false).await,
        None => Err(tx.not_found(who, ManageUsers::NAME, ("user", id.to_string()))),
    })
}

/// The handovers recorded when the account was disabled, newest first (`user.manage`).
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn handovers_for(
    app: &App,
    who: &Principal,
    id: UserId,
) -> AppResult<Vec<leavers::Handover>> {
    manage(app, who, Some(id)).await?;
    unit!(app.db, |tx| leavers::handovers(&mut tx, id).await)
}

/// Notes a successful sign-in, in the sign-in's unit of work.
pub(crate) async fn note_sign_in(conn: &mut PgConnection, id: UserId) -> AppResult<()> {
    Ok(repo::set_last_sign_in(conn, id).await?)
}

/// An administrator disables an account (`user.manage`): in one unit of work the account
/// is disabled, its sessions end, and what the person holds is settled (pending requests
/// cancelled, grants revoked, loans out flagged to the loans desk) with the handover note
/// recorded. Answers the account and the settlement.
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn disable_with(
    app: &App,
    who: &Principal,
    id: UserId,
    handover_note: Option<&str>,
) -> AppResult<(User, leavers::Settlement)> {
    manage(app, who, Some(id)).await?;
    // An unknown account is 404, audited like any refusal.
    unit!(app.db, |tx| match repo::find(&mut tx, id).await? {
        Some(_) => Ok(()),
        None => Err(tx.not_found(who, ManageUsers::NAME, ("user", id.to_string()))),
    })?;
    if id == who.user().id {
        return Err(refuse_own(app, who, id, "user.disable", SELF_DISABLE).await);
    }
    let note = leavers::check_note(handover_note)?;
    let (user, settled) = disable_as(&app.db, &who.actor(), id, &note).await?;
    // Whatever the viewer keeps for a revoked grant goes with it.
    for g in &settled.revoked_grants {
        app.viewer_cache.forget_grant(*g);
    }
    Ok((user, settled))
}

/// The account-management permit; a refusal is audited.
async fn manage(app: &App, who: &Principal, id: Option<UserId>) -> AppResult<()> {
    app.db
        .authorize::<ManageUsers>(
            &app.policies,
            who,
            None,
            id.map(|id| ("user", id.to_string())),
        )
        .await
        .map(|_| ())
}

/// Creates an account from the command line.
#[tracing::instrument(skip_all)]
pub async fn create_by_operator(
    pool: &PgPool,
    hasher: &password::Hasher,
    actor: &Actor,
    new: NewUser,
) -> AppResult<User> {
    insert(&Db::new(pool.clone()), hasher, actor, new).await
}

/// Disables an account from the command line, settling what the person holds like
/// [`disable_with`].
#[tracing::instrument(skip_all)]
pub async fn disable_by_operator(
    pool: &PgPool,
    actor: &Actor,
    id: UserId,
    handover_note: Option<&str>,
) -> AppResult<(User, leavers::Settlement)> {
    let note = leavers::check_note(handover_note)?;
    disable_as(&Db::new(pool.clone()), actor, id, &note).await
}

/// Creates an account. The password must meet the strength rules.
async fn insert(
    db: &Db,
    hasher: &password::Hasher,
    actor: &Actor,
    new: NewUser,
) -> AppResult<User> {
    check_username(&new.username)?;
    if new.roles.is_empty() {
        return Err(AppError::invalid("roles", "at least one role is required"));
    }
    password::check_strength(&new.username, &new.password)?;
    let display_name = new
        .display_name
        .clone()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| new.username.clone());
    if display_name.chars().count() > 200 {
        return Err(AppError::invalid(
            "display_name",
            "must be at most 200 characters",
        ));
    }
    let department = new.department.clone().unwrap_or_default();
    if department.chars().count() > 100 {
        return Err(AppError::invalid(
            "department",
            "must be at most 100 characters",
        ));
    }
    // The command line too: what the JSON body guard refuses, the account never holds.
    crate::text::check("display_name", &display_name, crate::text::Lines::Single)?;
    crate::text::check("department", &department, crate::text::Lines::Single)?;
    let hash = hasher.hash(new.password.clone()).await?;
    let mut roles: Vec<Role> = new.roles.clone();
    roles.sort_by_key(|r| r.as_str());
    roles.dedup();
    let user = unit!(db, |tx| {
        let user = repo::insert(
            &mut tx,
            &repo::Insert {
                username: &new.username,
                display_name: &display_name,
                department: &department,
                roles: &roles,
                password_hash: &hash,
                must_change_password: new.must_change_password,
            },
        )
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                AppError::Conflict("an account with this username already exists".into())
            }
            e => e.into(),
        })?;
        tx.audit(
            actor,
            Event::new("user.create", Outcome::Success)
                .object("user", user.id)
                .detail(json!({
                    "username": user.username,
                    "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "department": user.department,
                })),
        )
        .await?;
        Ok(user)
    })?;
    tracing::info!(target: "security", user_id = %user.id, "account created");
    Ok(user)
}

/// On first start with no accounts at all, creates `admin` with a random one-time password
/// that must be changed at first sign-in. Returns the password only when it created the
/// account; several nodes starting at once create it once.
#[tracing::instrument(skip_all)]
pub async fn bootstrap_admin(
    pool: &PgPool,
    hasher: &password::Hasher,
) -> AppResult<Option<SecretString>> {
    unit!(Db::new(pool.clone()), |tx| {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('strongroom.bootstrap_admin'))")
            .execute(&mut *tx)
            .await?;
        if repo::count(&mut tx).await? > 0 {
            return Ok(None);
        }
        let secret = password::generate();
        let hash = hasher.hash(secret.clone()).await?;
        let user = repo::insert(
            &mut tx,
            &repo::Insert {
                username: "admin",
                display_name: "Administrator",
                department: "",
                roles: &[Role::Admin],
                password_hash: &hash,
                must_change_password: true,
            },
        )
        .await?;
        tx.audit(
            &Actor::system("system"),
            Event::new("user.create", Outcome::Success)
                .object("user", user.id)
                .detail(json!({"username": "admin", "roles": ["admin"], "bootstrap": true})),
        )
        .await?;
        Ok(Some(secret))
    })
}

#[tracing::instrument(skip_all)]
pub async fn get(pool: &PgPool, id: UserId) -> AppResult<User> {
    unit!(Db::new(pool.clone()), |tx| repo::find(&mut tx, id)
        .await?
        .ok_or(AppError::NotFound))
}

#[tracing::instrument(skip_all)]
pub async fn find_by_username(pool: &PgPool, username: &str) -> AppResult<Option<User>> {
    unit!(Db::new(pool.clone()), |tx| Ok(repo::find_by_username(
        &mut tx, username
    )
    .await?))
}

/// The account and its password hash, for sign-in only.
#[tracing::instrument(skip_all)]
pub(crate) async fn credentials(
    conn: &mut PgConnection,
    username: &str,
) -> AppResult<Option<(User, String)>> {
    Ok(repo::credentials(conn, username).await?)
}

/// Holds account `id`'s row for the rest of the unit of work (`FOR SHARE`) and answers
/// whether the account is active. Disabling takes the row for update first, so what the
/// unit then writes in that person's name either commits before the disabling (which then
/// settles it) or waits for it and sees the account disabled.
pub async fn hold_account(tx: &mut Tx, id: UserId) -> AppResult<bool> {
    let active: Option<bool> =
        sqlx::query_scalar("SELECT disabled_at IS NULL FROM users WHERE id = $1 FOR SHARE")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(active == Some(true))
}

/// [`hold_account`] for the person acting: a disabled account is signed out (401).
pub async fn hold_actor(tx: &mut Tx, who: &Principal) -> AppResult<()> {
    if hold_account(tx, who.user().id).await? {
        Ok(())
    } else {
        Err(AppError::Unauthenticated)
    }
}

/// Disables an account, ends all its sessions at once and settles what the person holds.
/// Refuses to disable the last active administrator, which would lock everyone out of
/// account management.
async fn disable_as(
    db: &Db,
    actor: &Actor,
    id: UserId,
    note: &str,
) -> AppResult<(User, leavers::Settlement)> {
    let user = unit!(db, |tx| {
        // The author's row too, in id order: the handover row and revoked grants name them.
        let rows: Vec<uuid::Uuid> = std::iter::once(id.0).chain(actor.id).collect();
        repo::lock_in_order(&mut tx, &rows).await?;
        let user = repo::lock(&mut tx, id).await?.ok_or(AppError::NotFound)?;
        if !user.is_active() {
            return Err(AppError::Conflict("the account is already disabled".into()));
        }
        if user.has_role(Role::Admin) && repo::count_active_admins(&mut tx).await? <= 1 {
            return Err(AppError::Conflict(
                "this is the last active administrator; create another first".into(),
            ));
        }
        let user = repo::set_disabled(&mut tx, id).await?;
        let ended = crate::auth::session::end_all_for_user(&mut tx, id).await?;
        let mut settled = leavers::settle(&mut tx, actor, id, &user.username, note).await?;
        settled.sessions_ended = ended;
        tx.audit(
            actor,
            Event::new("user.disable", Outcome::Success)
                .object("user", id)
                .detail(json!({
                    "username": user.username, "sessions_ended": ended,
                    "handover": settled.handover_id, "handover_note": settled.note,
                    "cancelled_requests": settled.cancelled_requests,
                    "revoked_grants": settled.revoked_grants,
                    "flagged_loans": settled.flagged_loans,
                    "withdrawn_proposals": settled.withdrawn_proposals,
                })),
        )
        .await?;
        tracing::info!(
            target: "security", user_id = %id, sessions_ended = ended,
            requests_cancelled = settled.cancelled_requests.len(),
            grants_revoked = settled.revoked_grants.len(),
            loans_flagged = settled.flagged_loans.len(),
            "account disabled"
        );
        Ok((user, settled))
    })?;
    Ok(user)
}

/// Sets a new password chosen by an administrator; the person must change it at next
/// sign-in, and their current sessions end.
#[tracing::instrument(skip_all)]
pub async fn reset_password(
    pool: &PgPool,
    hasher: &password::Hasher,
    actor: &Actor,
    id: UserId,
    new_password: SecretString,
) -> AppResult<User> {
    let user = get(pool, id).await?;
    password::check_strength(&user.username, &new_password)?;
    let hash = hasher.hash(new_password).await?;
    unit!(Db::new(pool.clone()), |tx| {
        repo::set_password(&mut tx, id, &hash, true).await?;
        let ended = crate::auth::session::end_all_for_user(&mut tx, id).await?;
        tx.audit(
            actor,
            Event::new("user.password_reset", Outcome::Success)
                .object("user", id)
                .detail(json!({"username": user.username, "sessions_ended": ended})),
        )
        .await?;
        Ok(())
    })?;
    get(pool, id).await
}

/// A person changes their own password, proving the current one (throttled like sign-in).
/// Their other sessions end.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all)]
pub async fn change_own_password(
    db: &Db,
    config: &crate::config::Config,
    hasher: &password::Hasher,
    actor: &Actor,
    id: UserId,
    keep_session: uuid::Uuid,
    current: SecretString,
    new_password: SecretString,
) -> AppResult<()> {
    let pool = db.pool();
    let user = get(pool, id).await?;
    crate::auth::check_current_password(db, config, hasher, actor, &user, current.clone()).await?;
    password::check_strength(&user.username, &new_password)?;
    if current.expose_secret() == new_password.expose_secret() {
        return Err(AppError::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    let hash = hasher.hash(new_password).await?;
    unit!(db, |tx| {
        repo::set_password(&mut tx, id, &hash, false).await?;
        let ended = crate::auth::session::end_others_for_user(&mut tx, id, keep_session).await?;
        tx.audit(
            actor,
            Event::new("user.password_change", Outcome::Success)
                .object("user", id)
                .detail(json!({"other_sessions_ended": ended})),
        )
        .await
    })
}

/// A person sets their own interface language and time zone (none: the browser's language,
/// the vault's time zone). Anyone signed in may; audited as `user.preferences`.
#[tracing::instrument(skip_all)]
pub async fn set_own_preferences(
    app: &App,
    who: &crate::auth::Authenticated,
    locale: Option<crate::i18n::Lang>,
    time_zone: Option<&str>,
) -> AppResult<()> {
    let time_zone = match time_zone.map(str::trim).filter(|z| !z.is_empty()) {
        None => None,
        Some(z) => Some(crate::i18n::parse_time_zone(z).ok_or_else(|| {
            AppError::invalid("time_zone", "is not a time zone name such as Asia/Shanghai")
        })?),
    };
    let id = who.user().id;
    let locale = locale.map(|l| l.tag());
    unit!(app.db, |tx| {
        repo::set_preferences(&mut tx, id, locale, time_zone.map(|z| z.name())).await?;
        tx.audit(
            &who.actor(),
            Event::new("user.preferences", Outcome::Success)
                .object("user", id)
                .detail(json!({ "locale": locale, "time_zone": time_zone.map(|z| z.name()) })),
        )
        .await?;
        Ok(())
    })
}

const SELF_DISABLE: &str = "you cannot disable your own account; ask another administrator";
const SELF_UNADMIN: &str =
    "you cannot remove your own administrator role; ask another administrator";
const SELF_RESET: &str = "you cannot reset your own password here; change it in your settings";

/// Refuses an administrator's action on their own account: audited as denied, 409.
async fn refuse_own(
    app: &App,
    who: &Principal,
    id: UserId,
    action: &'static str,
    why: &'static str,
) -> AppError {
    let event = Event::new(action, Outcome::Denied)
        .object("user", id)
        .detail(json!({"reason": "own_account"}));
    match app.db.record(&who.actor(), event).await {
        Ok(()) => AppError::Conflict(why.into()),
        Err(e) => e,
    }
}

/// One account, for an administrator (`user.manage`); an unknown id is 404, audited.
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn get_for(app: &App, who: &Principal, id: UserId) -> AppResult<User> {
    manage(app, who, Some(id)).await?;
    unit!(app.db, |tx| match repo::find(&mut tx, id).await? {
        Some(u) => Ok(u),
        None => Err(tx.not_found(who, ManageUsers::NAME, ("user", id.to_string()))),
    })
}

/// An administrator changes an account's display name, department and roles
/// (`user.manage`, audited `user.update` with what changed). Nobody removes their own
/// administrator role, and the last active administrator keeps theirs.
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn update(app: &App, who: &Principal, id: UserId, c: UserChanges) -> AppResult<User> {
    manage(app, who, Some(id)).await?;
    let display_name = match &c.display_name {
        Some(d) => {
            let d = d.trim();
            if d.is_empty() {
                return Err(AppError::invalid(
                    "display_name",
                    "the display name must not be empty",
                ));
            }
            if d.chars().count() > 200 {
                return Err(AppError::invalid(
                    "display_name",
                    "must be at most 200 characters",
                ));
            }
            Some(d.to_string())
        }
        None => None,
    };
    let department = match &c.department {
        Some(d) => {
            let d = d.trim();
            if d.chars().count() > 100 {
                return Err(AppError::invalid(
                    "department",
                    "must be at most 100 characters",
                ));
            }
            Some(d.to_string())
        }
        None => None,
    };
    let roles = match &c.roles {
        Some(r) if r.is_empty() => {
            return Err(AppError::invalid("roles", "at least one role is required"))
        }
        Some(r) => {
            let mut r = r.clone();
            r.sort_by_key(|r| r.as_str());
            r.dedup();
            Some(r)
        }
        None => None,
    };
    if id == who.user().id
        && who.user().has_role(Role::Admin)
        && roles.as_ref().is_some_and(|r| !r.contains(&Role::Admin))
    {
        return Err(refuse_own(app, who, id, "user.update", SELF_UNADMIN).await);
    }
    unit!(app.db, |tx| {
        let Some(before) = repo::lock(&mut tx, id).await? else {
            return Err(tx.not_found(who, ManageUsers::NAME, ("user", id.to_string())));
        };
        let mut before_roles = before.roles.clone();
        before_roles.sort_by_key(|r| r.as_str());
        let new_roles = roles.clone().unwrap_or_else(|| before_roles.clone());
        if before.is_active()
            && before.has_role(Role::Admin)
            && !new_roles.contains(&Role::Admin)
            && repo::count_active_admins(&mut tx).await? <= 1
        {
            return Err(AppError::Conflict(
                "this is the last active administrator; create another first".into(),
            ));
        }
        let new_name = display_name
            .clone()
            .unwrap_or_else(|| before.display_name.clone());
        let new_department = department
            .clone()
            .unwrap_or_else(|| before.department.clone());
        let user = repo::set_profile(&mut tx, id, &new_name, &new_department, &new_roles).await?;
        let names = |r: &[Role]| r.iter().map(|r| r.as_str()).collect::<Vec<_>>();
        let mut changed = serde_json::Map::new();
        if new_name != before.display_name {
            changed.insert(
                "display_name".into(),
                json!({"from": before.display_name, "to": new_name}),
            );
        }
        if new_department != before.department {
            changed.insert(
                "department".into(),
                json!({"from": before.department, "to": new_department}),
            );
        }
        if new_roles != before_roles {
            changed.insert(
                "roles".into(),
                json!({"from": names(&before_roles), "to": names(&new_roles)}),
            );
        }
        tx.audit(
            &who.actor(),
            Event::new("user.update", Outcome::Success)
                .object("user", id)
                .detail(json!({"username": user.username, "changed": changed})),
        )
        .await?;
        Ok(user)
    })
}

/// An administrator enables a disabled account again (`user.manage`, audited
/// `user.enable`). The person signs in with the password they had.
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn enable(app: &App, who: &Principal, id: UserId) -> AppResult<User> {
    manage(app, who, Some(id)).await?;
    unit!(app.db, |tx| {
        let Some(user) = repo::lock(&mut tx, id).await? else {
            return Err(tx.not_found(who, ManageUsers::NAME, ("user", id.to_string())));
        };
        if user.is_active() {
            return Err(AppError::Conflict("the account is already active".into()));
        }
        let user = repo::set_enabled(&mut tx, id).await?;
        tx.audit(
            &who.actor(),
            Event::new("user.enable", Outcome::Success)
                .object("user", id)
                .detail(json!({"username": user.username})),
        )
        .await?;
        tracing::info!(target: "security", user_id = %id, "account enabled");
        Ok(user)
    })
}

/// An administrator resets a person's password (`user.manage`, audited
/// `user.password_reset`): a generated one-time password, returned once to be handed over;
/// the person must choose a new one at next sign-in, and their sessions end now.
#[tracing::instrument(skip_all, fields(user = %id))]
pub async fn reset_password_for(
    app: &App,
    who: &Principal,
    id: UserId,
) -> AppResult<(User, SecretString)> {
    manage(app, who, Some(id)).await?;
    if id == who.user().id {
        return Err(refuse_own(app, who, id, "user.password_reset", SELF_RESET).await);
    }
    let secret = password::generate();
    let hash = app.hasher.hash(secret.clone()).await?;
    let user = unit!(app.db, |tx| {
        let Some(user) = repo::lock(&mut tx, id).await? else {
            return Err(tx.not_found(who, ManageUsers::NAME, ("user", id.to_string())));
        };
        repo::set_password(&mut tx, id, &hash, true).await?;
        let ended = crate::auth::session::end_all_for_user(&mut tx, id).await?;
        tx.audit(
            &who.actor(),
            Event::new("user.password_reset", Outcome::Success)
                .object("user", id)
                .detail(json!({"username": user.username, "sessions_ended": ended})),
        )
        .await?;
        Ok(repo::find(&mut tx, id).await?.unwrap_or(user))
    })?;
    tracing::info!(target: "security", user_id = %id, "password reset by an administrator");
    Ok((user, secret))
}
