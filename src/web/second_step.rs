//! The second step of a sign-in in the browser: after the right password, a person with
//! two-factor sign-in gets this page for the code (or a recovery code). The half-done
//! sign-in is carried server-side (`auth::second_factor`'s challenge, a few minutes, bound
//! to the account, closed when it leads to a session); the browser holds only its random
//! token in an HttpOnly, SameSite=Strict cookie scoped to `/login`. It is not a session:
//! it opens nothing but this form. The form carries the sign-in page's CSRF token.

use minijinja::context;
use rocket::form::FromForm;
use rocket::http::{Cookie, CookieJar, SameSite};
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};
use secrecy::{ExposeSecret, SecretString};

use super::{languages, login_csrf, Page};
use crate::auth::csrf::{CsrfForm, LOGIN_CSRF_COOKIE};
use crate::auth::{self, second_factor};
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::i18n::Ui;
use crate::telemetry::RequestMeta;
use crate::App;

pub const CHALLENGE_COOKIE: &str = "strongroom_login_code";

pub fn routes() -> Vec<Route> {
    routes![code_page, code_submit]
}

/// Hands the browser the token of its half-done sign-in.
pub(super) fn set_challenge(app: &App, cookies: &CookieJar<'_>, token: &SecretString) {
    cookies.add(
        Cookie::build((CHALLENGE_COOKIE, token.expose_secret().to_string()))
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(app.config.secure_cookies())
            .path("/login")
            .max_age(rocket::time::Duration::minutes(
                second_factor::CHALLENGE_MINUTES,
            ))
            .build(),
    );
}

fn drop_challenge(cookies: &CookieJar<'_>) {
    cookies.remove(Cookie::build(CHALLENGE_COOKIE).path("/login").build());
}

fn render(
    app: &App,
    cookies: &CookieJar<'_>,
    ui: Ui,
    error: Option<String>,
) -> AppResult<rocket::response::content::RawHtml<String>> {
    let csrf = login_csrf(app, cookies);
    app.templates.render(
        "login_code.html",
        context! {
            csrf => csrf, error => error, lang => ui.lang.tag(), tz => ui.tz.name(),
            languages => languages(),
        },
    )
}

#[get("/login/code")]
async fn code_page(app: &State<App>, cookies: &CookieJar<'_>, ui: Ui) -> AppResult<Page> {
    let token = cookies
        .get(CHALLENGE_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    if second_factor::challenge_user(&app.db, &token)
        .await?
        .is_none()
    {
        drop_challenge(cookies);
        return Ok(Page::Redirect(Box::new(Redirect::to("/login"))));
    }
    Ok(Page::Html(render(app, cookies, ui, None)?))
}

#[derive(FromForm)]
pub struct CodeForm {
    code: String,
    csrf: String,
}

csrf_field!(CodeForm);

#[post("/login/code", data = "<form>")]
async fn code_submit(
    app: &State<App>,
    meta: RequestMeta,
    cookies: &CookieJar<'_>,
    ui: Ui,
    form: CsrfForm<CodeForm>,
) -> AppResult<Page> {
    let CsrfForm(CodeForm { code, .. }) = form;
    let token = cookies
        .get(CHALLENGE_COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    match auth::finish_with_code(
        &app.db,
        &app.config,
        &app.keys,
        &meta,
        &token,
        SecretString::from(code),
    )
    .await
    {
        Ok(signed_in) => {
            cookies.add(crate::http::session_cookie(app, &signed_in));
            cookies.remove(Cookie::from(LOGIN_CSRF_COOKIE));
            drop_challenge(cookies);
            let to = if signed_in.user.must_change_password {
                "/account/password"
            } else {
                "/"
            };
            Ok(Page::Redirect(Box::new(Redirect::to(to))))
        }
        Err(AppError::Unauthenticated) => {
            // Unknown or expired: the password step again.
            drop_challenge(cookies);
            Ok(Page::Redirect(Box::new(Redirect::to("/login"))))
        }
        Err(e @ (AppError::TotpInvalid | AppError::TooManyAttempts | AppError::Invalid { .. })) => {
            if matches!(e, AppError::TooManyAttempts) {
                drop_challenge(cookies);
            }
            let message = match &e {
                AppError::Invalid { message, .. } => message.clone(),
                other => other.to_string(),
            };
            let html = render(
                app,
                cookies,
                ui,
                Some(crate::i18n::message(ui.lang, &message)),
            )?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}
