//! The server-rendered interface. Handlers are thin: guards in, one service call, a page or
//! a redirect out. Templates are embedded in the binary and auto-escape all values.

use minijinja::{context, Environment, Value};
use rocket::form::FromForm;
use rocket::http::{ContentType, Cookie, CookieJar, SameSite, Status};
use rocket::response::content::RawHtml;
use rocket::response::{Redirect, Responder};
use rocket::{get, post, routes, Route, State};
use secrecy::SecretString;
use serde::Serialize;

use crate::auth::csrf::{CsrfForm, LOGIN_CSRF_COOKIE};
use crate::auth::{self, password, session, Authenticated, SESSION_COOKIE};
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::telemetry::RequestMeta;
use crate::users;
use crate::App;

mod access_review;
mod account;
mod accounts;
mod archive;
mod audit;
mod catalog;
pub(crate) mod forms;
mod home;
mod lifecycle;
mod locations;
mod record;
mod requests;
mod review;
mod scrub;
mod second_step;
mod stats;
#[cfg(test)]
mod template_tests;
mod two_factor;
pub mod viewer;

pub struct Templates {
    env: Environment<'static>,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("forms.html", include_str!("../../templates/forms.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("home.html", include_str!("../../templates/home.html")),
    (
        "password.html",
        include_str!("../../templates/password.html"),
    ),
    ("users.html", include_str!("../../templates/users.html")),
    ("user.html", include_str!("../../templates/user.html")),
    (
        "locations.html",
        include_str!("../../templates/locations.html"),
    ),
    (
        "location.html",
        include_str!("../../templates/location.html"),
    ),
    ("audit.html", include_str!("../../templates/audit.html")),
    ("stats.html", include_str!("../../templates/stats.html")),
    ("reviews.html", include_str!("../../templates/reviews.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("viewer.html", include_str!("../../templates/viewer.html")),
    (
        "categories.html",
        include_str!("../../templates/categories.html"),
    ),
    (
        "category.html",
        include_str!("../../templates/category.html"),
    ),
    (
        "record_new.html",
        include_str!("../../templates/record_new.html"),
    ),
    ("record.html", include_str!("../../templates/record.html")),
    ("search.html", include_str!("../../templates/search.html")),
    (
        "requests.html",
        include_str!("../../templates/requests.html"),
    ),
    ("request.html", include_str!("../../templates/request.html")),
    (
        "request_macros.html",
        include_str!("../../templates/request_macros.html"),
    ),
    (
        "approvals.html",
        include_str!("../../templates/approvals.html"),
    ),
    ("grants.html", include_str!("../../templates/grants.html")),
    ("export.html", include_str!("../../templates/export.html")),
    ("loans.html", include_str!("../../templates/loans.html")),
    ("scrub.html", include_str!("../../templates/scrub.html")),
    (
        "lifecycle.html",
        include_str!("../../templates/lifecycle.html"),
    ),
    (
        "destructions.html",
        include_str!("../../templates/destructions.html"),
    ),
    (
        "retention.html",
        include_str!("../../templates/retention.html"),
    ),
    (
        "access_review.html",
        include_str!("../../templates/access_review.html"),
    ),
    (
        "settings.html",
        include_str!("../../templates/settings.html"),
    ),
    (
        "login_code.html",
        include_str!("../../templates/login_code.html"),
    ),
    ("totp.html", include_str!("../../templates/totp.html")),
];

const STYLE_CSS: &str = include_str!("../../templates/static/style.css");

impl Templates {
    pub fn new() -> Result<Templates, minijinja::Error> {
        let mut env = Environment::new();
        crate::i18n::register(&mut env);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Templates { env })
    }

    pub fn render(&self, name: &str, ctx: Value) -> AppResult<RawHtml<String>> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map(RawHtml)
            .map_err(|e| AppError::internal(format!("template {name}: {e}")))
    }
}

/// The HTML error pages, handed to the one error responder (which does not know the
/// templates: it is given this at build time).
pub fn error_pages() -> Result<crate::error::ErrorPages, minijinja::Error> {
    let templates = Templates::new()?;
    Ok(crate::error::ErrorPages::new(
        move |status, message, ui, who| {
            templates
                .render(
                    "error.html",
                    context! {
                        status => status.code, message => message,
                        lang => ui.lang.tag(), tz => ui.tz.name(),
                        me => who.map(me), csrf => who.map(|w| w.csrf_token()),
                        languages => languages(),
                    },
                )
                .ok()
                .map(|RawHtml(s)| s)
        },
    ))
}

pub fn routes() -> Vec<Route> {
    let mut r = archive::routes();
    r.extend(account::routes());
    r.extend(catalog::routes());
    r.extend(record::routes());
    r.extend(requests::routes());
    r.extend(viewer::routes());
    r.extend(scrub::routes());
    r.extend(accounts::routes());
    r.extend(access_review::routes());
    r.extend(locations::routes());
    r.extend(home::routes());
    r.extend(audit::routes());
    r.extend(lifecycle::routes());
    r.extend(stats::routes());
    r.extend(review::routes());
    r.extend(second_step::routes());
    r.extend(two_factor::routes());
    r.extend(routes![
        style,
        login_page,
        login_submit,
        logout,
        password_page,
        password_submit,
        healthz,
    ]);
    r
}

/// The paths anyone may reach without a session. The route sweep test holds every other
/// route to answering 401 or a redirect to the sign-in page.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/static/style.css"),
    ("GET", "/static/upload.js"),
    ("GET", "/static/viewer.js"),
    ("GET", "/static/viewer.css"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/login/code"),
    ("POST", "/login/code"),
    ("GET", "/healthz"),
    ("POST", "/api/v1/login"),
];

/// The person as templates see them, with the language and time zone of their pages and
/// the confirmation of their last form post.
#[derive(Serialize)]
struct Me<'a> {
    username: &'a str,
    display_name: &'a str,
    department: &'a str,
    roles: Vec<&'static str>,
    must_change_password: bool,
    lang: &'static str,
    tz: &'static str,
    flash: Option<&'a str>,
    languages: Vec<LangChoice>,
    path: &'a str,
    waiting: Option<usize>,
}

#[derive(Serialize)]
struct LangChoice {
    tag: &'static str,
    name: &'static str,
}

fn languages() -> Vec<LangChoice> {
    crate::i18n::Lang::ALL
        .iter()
        .map(|l| LangChoice {
            tag: l.tag(),
            name: l.native_name(),
        })
        .collect()
}

pub(crate) fn me(a: &Authenticated) -> Value {
    let u = a.user();
    let ui = a.ui();
    Value::from_serialize(Me {
        username: &u.username,
        display_name: &u.display_name,
        department: &u.department,
        roles: u.roles.iter().map(|r| r.as_str()).collect(),
        must_change_password: u.must_change_password,
        lang: ui.lang.tag(),
        tz: ui.tz.name(),
        flash: a.flash(),
        languages: languages(),
        path: a.path(),
        waiting: a.waiting(),
    })
}

#[get("/static/style.css")]
fn style() -> (ContentType, &'static str) {
    (ContentType::CSS, STYLE_CSS)
}

#[get("/healthz")]
async fn healthz(app: &State<App>) -> (Status, rocket::serde::json::Json<serde_json::Value>) {
    match app.db.ping().await {
        Ok(_) => (
            Status::Ok,
            rocket::serde::json::Json(serde_json::json!({"status": "ok", "database": "ok"})),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                Status::ServiceUnavailable,
                rocket::serde::json::Json(
                    serde_json::json!({"status": "unavailable", "database": "unreachable"}),
                ),
            )
        }
    }
}

fn login_csrf(app: &App, cookies: &CookieJar<'_>) -> String {
    if let Some(c) = cookies.get(LOGIN_CSRF_COOKIE) {
        return c.value().to_string();
    }
    let token = session::random_token();
    cookies.add(
        Cookie::build((LOGIN_CSRF_COOKIE, token.clone()))
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(app.config.secure_cookies())
            .path("/")
            .build(),
    );
    token
}

#[derive(Responder)]
pub enum Page {
    Html(RawHtml<String>),
    Redirect(Box<Redirect>),
    Status((Status, RawHtml<String>)),
}

#[get("/login?<lang>")]
fn login_page(
    app: &State<App>,
    who: Option<Authenticated>,
    cookies: &CookieJar<'_>,
    lang: Option<&str>,
    ui: crate::i18n::Ui,
) -> AppResult<Page> {
    if who.is_some() {
        return Ok(Page::Redirect(Box::new(Redirect::to("/"))));
    }
    // The language switch of the sign-in page: remembered in a cookie until the person
    // signs in and, if they wish, saves a language in their settings.
    let mut ui = ui;
    if let Some(l) = lang.and_then(crate::i18n::Lang::parse) {
        cookies.add(
            Cookie::build((crate::i18n::LANG_COOKIE, l.tag()))
                .same_site(SameSite::Lax)
                .path("/")
                .max_age(rocket::time::Duration::days(365))
                .build(),
        );
        ui.lang = l;
    }
    let csrf = login_csrf(app, cookies);
    Ok(Page::Html(app.templates.render(
        "login.html",
        context! { csrf => csrf, lang => ui.lang.tag(), tz => ui.tz.name(), languages => languages() },
    )?))
}

#[derive(FromForm)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

csrf_field!(LoginForm);

#[post("/login", data = "<form>")]
async fn login_submit(
    app: &State<App>,
    meta: RequestMeta,
    cookies: &CookieJar<'_>,
    ui: crate::i18n::Ui,
    form: CsrfForm<LoginForm>,
) -> AppResult<Page> {
    let CsrfForm(LoginForm {
        username, password, ..
    }) = form;
    match auth::begin_login(
        &app.db,
        &app.config,
        &app.hasher,
        &app.keys,
        &meta,
        &username,
        SecretString::from(password),
    )
    .await
    {
        Ok(auth::Attempt::CodeNeeded { challenge }) => {
            second_step::set_challenge(app, cookies, &challenge);
            Ok(Page::Redirect(Box::new(Redirect::to("/login/code"))))
        }
        Ok(auth::Attempt::SignedIn(signed_in)) => {
            cookies.add(crate::http::session_cookie(app, &signed_in));
            cookies.remove(Cookie::from(LOGIN_CSRF_COOKIE));
            let to = if signed_in.user.must_change_password {
                "/account/password"
            } else {
                "/"
            };
            Ok(Page::Redirect(Box::new(Redirect::to(to))))
        }
        Err(e @ (AppError::InvalidCredentials | AppError::TooManyAttempts)) => {
            let csrf = login_csrf(app, cookies);
            let html = app.templates.render(
                "login.html",
                context! {
                    csrf => csrf, error => crate::i18n::message(ui.lang, &e.to_string()),
                    username => username, lang => ui.lang.tag(), tz => ui.tz.name(),
                    languages => languages(),
                },
            )?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[derive(FromForm)]
pub struct CsrfOnly {
    csrf: String,
}

csrf_field!(CsrfOnly);

#[post("/logout", data = "<_form>")]
async fn logout(
    app: &State<App>,
    who: Authenticated,
    cookies: &CookieJar<'_>,
    _form: CsrfForm<CsrfOnly>,
) -> AppResult<Redirect> {
    auth::logout(&app.db, &who).await?;
    cookies.remove(Cookie::from(SESSION_COOKIE));
    Ok(Redirect::to("/login"))
}

#[get("/account/password")]
fn password_page(app: &State<App>, who: Authenticated) -> AppResult<RawHtml<String>> {
    app.templates.render(
        "password.html",
        context! { me => me(&who), csrf => who.csrf_token(), min_length => password::MIN_LENGTH },
    )
}

#[derive(FromForm)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
    csrf: String,
}

csrf_field!(PasswordForm);

#[post("/account/password", data = "<form>")]
async fn password_submit(
    app: &State<App>,
    who: Authenticated,
    cookies: &CookieJar<'_>,
    form: CsrfForm<PasswordForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    let result = if f.new_password != f.confirm_password {
        Err(AppError::invalid(
            "confirm_password",
            "does not match the new password",
        ))
    } else {
        users::change_own_password(
            &app.db,
            &app.config,
            &app.hasher,
            &who.actor(),
            who.user().id,
            who.session_id(),
            SecretString::from(f.current_password),
            SecretString::from(f.new_password),
        )
        .await
    };
    match result {
        Ok(()) => {
            crate::i18n::flash::set(cookies, "flash-password-changed", &[]);
            Ok(Page::Redirect(Box::new(Redirect::to("/"))))
        }
        Err(e @ AppError::Invalid { .. }) => {
            let errors = forms::FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let html = app.templates.render(
                "password.html",
                context! {
                    me => me(&who), csrf => who.csrf_token(),
                    min_length => password::MIN_LENGTH, errors => errors,
                },
            )?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_renders() {
        let t = Templates::new().unwrap();
        for (name, _) in TEMPLATES {
            if ![
                "login.html",
                "home.html",
                "password.html",
                "audit.html",
                "error.html",
            ]
            .contains(name)
            {
                continue;
            }
            t.render(name, context! { me => context! { username => "u", display_name => "U", department => "", roles => vec!["admin", "auditor"], must_change_password => true }, csrf => "x", status => "404", message => "m", users => Vec::<String>::new(), events => Vec::<String>::new(), q => <crate::audit::browse::Browse as Default>::default(), min_length => 12 })
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
    }

    #[test]
    fn values_are_escaped() {
        let t = Templates::new().unwrap();
        let html = t
            .render(
                "error.html",
                context! { status => "400", message => "<script>x</script>" },
            )
            .unwrap();
        assert!(!html.0.contains("<script>x"));
    }
}
