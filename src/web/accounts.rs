//! Account administration in the browser (`/admin/users`): the list and the form that
//! creates an account, and a page per account to change its name, department and roles,
//! disable it (after a step that shows what the person holds and takes a handover note;
//! the answer shows what was settled), enable it again, and reset its password (a
//! one-time password shown once). The services decide (`user.manage`) and audit.

use minijinja::{context, Value};
use rocket::form::FromForm;
use rocket::http::{CookieJar, Status};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::forms::FormErrors;
use super::{me, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::i18n::flash;
use crate::users::{self, NewUser, Role, User, UserChanges, UserId};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        users_page,
        users_create,
        user_page,
        user_update,
        user_disable,
        user_enable,
        user_reset,
        user_totp_reset
    ]
}

fn all_roles() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.as_str()).collect()
}

fn see_other(to: String) -> Page {
    Page::Redirect(Box::new(Redirect::to(to)))
}

/// What was typed in the form that creates an account (never the password).
#[derive(Serialize, Default)]
struct Typed {
    username: String,
    display_name: String,
    department: String,
    roles: Vec<String>,
}

async fn render_users(
    app: &App,
    who: &Principal,
    typed: Typed,
    errors: Option<FormErrors>,
) -> AppResult<RawHtml<String>> {
    let list = users::list(app, who).await?;
    app.templates.render(
        "users.html",
        context! {
            me => me(who), csrf => who.csrf_token(), users => list,
            all_roles => all_roles(), form => typed, errors => errors,
        },
    )
}

#[get("/admin/users")]
async fn users_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_users(app, &who, Typed::default(), None).await
}

#[derive(FromForm)]
pub struct NewUserForm {
    username: String,
    display_name: String,
    department: String,
    roles: Vec<String>,
    password: String,
    csrf: String,
}

csrf_field!(NewUserForm);

fn parse_roles(roles: &[String]) -> AppResult<Vec<Role>> {
    roles
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<Role>, String>>()
        .map_err(|e| AppError::invalid("roles", e))
}

#[post("/admin/users", data = "<form>")]
async fn users_create(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    form: CsrfForm<NewUserForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    let result = match parse_roles(&f.roles) {
        Err(e) => Err(e),
        Ok(roles) => {
            users::create(
                app,
                &who,
                NewUser {
                    username: f.username.trim().to_string(),
                    display_name: Some(f.display_name.clone()),
                    department: Some(f.department.clone()),
                    roles,
                    password: SecretString::from(f.password),
                    must_change_password: true,
                },
            )
            .await
        }
    };
    match result {
        Ok(u) => {
            flash::set(cookies, "flash-acct-created", &[("name", &u.username)]);
            Ok(see_other(format!("/admin/users/{}", u.id)))
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => {
            let lang = who.ui().lang;
            let mut errors = FormErrors::from_error(lang, &e, |f| f.to_string());
            if let AppError::Conflict(m) = &e {
                // The one conflict of this form is a username already taken.
                errors = FormErrors::default();
                errors.add(lang, "username", m);
            }
            let typed = Typed {
                username: f.username,
                display_name: f.display_name,
                department: f.department,
                roles: f.roles,
            };
            let html = render_users(app, &who, typed, Some(errors)).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

/// The account page and its parts: which step of a confirmation is shown, the one-time
/// password after a reset, what was typed and what was wrong.
#[derive(Default)]
struct Shown {
    confirm: Option<&'static str>,
    one_time_password: Option<String>,
    typed: Option<Value>,
    errors: Option<FormErrors>,
    /// Before disabling: what the person holds, and the handover note typed so far.
    holdings: Option<users::leavers::Holdings>,
    note: Option<String>,
}

async fn render_user(
    app: &App,
    who: &Principal,
    user: &User,
    shown: Shown,
) -> AppResult<RawHtml<String>> {
    let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
    let typed = shown.typed.unwrap_or_else(|| {
        Value::from_serialize(Typed {
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            department: user.department.clone(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        })
    });
    let handovers = users::handovers_for(app, who, user.id).await?;
    let totp = crate::auth::second_factor::status(&app.db, user.id).await?;
    app.templates.render(
        "user.html",
        context! {
            me => me(who), csrf => who.csrf_token(), u => user, roles => roles,
            all_roles => all_roles(), own => user.id == who.user().id,
            confirm => shown.confirm, one_time_password => shown.one_time_password,
            form => typed, errors => shown.errors, holdings => shown.holdings,
            note => shown.note, handovers => handovers,
            note_max => users::leavers::NOTE_MAX, totp => totp,
        },
    )
}

#[get("/admin/users/<id>")]
async fn user_page(app: &State<App>, who: Principal, id: UserId) -> AppResult<RawHtml<String>> {
    let user = users::get_for(app, &who, id).await?;
    render_user(app, &who, &user, Shown::default()).await
}

#[derive(FromForm)]
pub struct ProfileForm {
    display_name: String,
    department: String,
    roles: Vec<String>,
    csrf: String,
}

csrf_field!(ProfileForm);

#[post("/admin/users/<id>", data = "<form>")]
async fn user_update(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    id: UserId,
    form: CsrfForm<ProfileForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    let result = match parse_roles(&f.roles) {
        Err(e) => Err(e),
        Ok(roles) => {
            users::update(
                app,
                &who,
                id,
                UserChanges {
                    display_name: Some(f.display_name.clone()),
                    department: Some(f.department.clone()),
                    roles: Some(roles),
                },
            )
            .await
        }
    };
    match result {
        Ok(u) => {
            flash::set(cookies, "flash-acct-updated", &[("name", &u.display_name)]);
            Ok(see_other(format!("/admin/users/{id}")))
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => {
            let user = users::get_for(app, &who, id).await?;
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let typed = Value::from_serialize(Typed {
                username: user.username.clone(),
                display_name: f.display_name,
                department: f.department,
                roles: f.roles,
            });
            let shown = Shown {
                typed: Some(typed),
                errors: Some(errors),
                ..Shown::default()
            };
            let html = render_user(app, &who, &user, shown).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[derive(FromForm)]
pub struct ConfirmForm {
    confirm: Option<String>,
    csrf: String,
}

csrf_field!(ConfirmForm);

impl ConfirmForm {
    fn confirmed(&self) -> bool {
        self.confirm.as_deref() == Some("yes")
    }
}

/// A refusal of the service (a conflict: one's own account, the last administrator, an
/// account already in that state) shown on the account page with its status.
async fn refused(app: &App, who: &Principal, id: UserId, e: AppError) -> AppResult<Page> {
    match e {
        AppError::Conflict(_) | AppError::Invalid { .. } => {
            let user = users::get_for(app, who, id).await?;
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let shown = Shown {
                errors: Some(errors),
                ..Shown::default()
            };
            let html = render_user(app, who, &user, shown).await?;
            Ok(Page::Status((e.status(), html)))
        }
        e => Err(e),
    }
}

#[derive(FromForm)]
pub struct DisableForm {
    confirm: Option<String>,
    handover_note: Option<String>,
    csrf: String,
}

csrf_field!(DisableForm);

/// The first post shows what the person holds (pending requests, grants in force, loans
/// out) and asks for a handover note (nothing changes); only the confirmed post disables,
/// and the account page it leads to confirms what was settled (and lists the handover).
/// One's own account goes straight to the service, which refuses.
#[post("/admin/users/<id>/disable", data = "<form>")]
async fn user_disable(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    id: UserId,
    form: CsrfForm<DisableForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    let confirmed = f.confirm.as_deref() == Some("yes");
    if !confirmed && id != who.user().id {
        let user = users::get_for(app, &who, id).await?;
        let shown = Shown {
            confirm: Some("disable"),
            holdings: Some(users::holdings_for(app, &who, id).await?),
            ..Shown::default()
        };
        return Ok(Page::Html(render_user(app, &who, &user, shown).await?));
    }
    let result = users::disable_with(app, &who, id, f.handover_note.as_deref()).await;
    match result {
        Ok((user, settled)) => {
            flash::set(
                cookies,
                "flash-acct-disabled-settled",
                &[
                    ("name", &user.display_name),
                    ("requests", &settled.cancelled_requests.len().to_string()),
                    ("grants", &settled.revoked_grants.len().to_string()),
                    ("loans", &settled.flagged_loans.len().to_string()),
                ],
            );
            Ok(see_other(format!("/admin/users/{id}")))
        }
        Err(e @ AppError::Invalid { .. }) => {
            let user = users::get_for(app, &who, id).await?;
            let shown = Shown {
                confirm: Some("disable"),
                holdings: Some(users::holdings_for(app, &who, id).await?),
                note: f.handover_note,
                errors: Some(FormErrors::from_error(who.ui().lang, &e, |f| f.to_string())),
                ..Shown::default()
            };
            let html = render_user(app, &who, &user, shown).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => refused(app, &who, id, e).await,
    }
}

#[post("/admin/users/<id>/enable", data = "<_form>")]
async fn user_enable(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    id: UserId,
    _form: CsrfForm<ConfirmForm>,
) -> AppResult<Page> {
    match users::enable(app, &who, id).await {
        Ok(u) => {
            flash::set(cookies, "flash-acct-enabled", &[("name", &u.display_name)]);
            Ok(see_other(format!("/admin/users/{id}")))
        }
        Err(e) => refused(app, &who, id, e).await,
    }
}

/// The confirmation step `what` of an action on someone else's account; `None` once
/// confirmed. One's own account goes straight to the service, which refuses.
async fn ask_first(
    app: &App,
    who: &Principal,
    id: UserId,
    confirmed: bool,
    what: &'static str,
) -> AppResult<Option<Page>> {
    if confirmed || id == who.user().id {
        return Ok(None);
    }
    let user = users::get_for(app, who, id).await?;
    let shown = Shown {
        confirm: Some(what),
        ..Shown::default()
    };
    Ok(Some(Page::Html(render_user(app, who, &user, shown).await?)))
}

/// Like disabling, a reset asks first; the confirmed post shows the one-time password on
/// the page it answers with (once: it is stored only hashed, and the page is not cached).
#[post("/admin/users/<id>/password-reset", data = "<form>")]
async fn user_reset(
    app: &State<App>,
    who: Principal,
    id: UserId,
    form: CsrfForm<ConfirmForm>,
) -> AppResult<Page> {
    if let Some(page) = ask_first(app, &who, id, form.confirmed(), "reset").await? {
        return Ok(page);
    }
    match users::reset_password_for(app, &who, id).await {
        Ok((user, secret)) => {
            let shown = Shown {
                one_time_password: Some(secret.expose_secret().to_string()),
                ..Shown::default()
            };
            let html = render_user(app, &who, &user, shown).await?;
            Ok(Page::Status((Status::Ok, html)))
        }
        Err(e) => refused(app, &who, id, e).await,
    }
}

/// Like a password reset, turning off someone's two-factor sign-in asks first.
#[post("/admin/users/<id>/totp-reset", data = "<form>")]
async fn user_totp_reset(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    id: UserId,
    form: CsrfForm<ConfirmForm>,
) -> AppResult<Page> {
    if let Some(page) = ask_first(app, &who, id, form.confirmed(), "totp-reset").await? {
        return Ok(page);
    }
    match crate::auth::second_factor::reset(app, &who, id).await {
        Ok(u) => {
            flash::set(cookies, "flash-totp-reset", &[("name", &u.display_name)]);
            Ok(see_other(format!("/admin/users/{id}")))
        }
        Err(e) => refused(app, &who, id, e).await,
    }
}
