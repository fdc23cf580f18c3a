//! A person's own settings: interface language and time zone, and the language switch in
//! the header of every page (which saves the choice, so it follows the person).

use minijinja::context;
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};

use super::forms::FormErrors;
use super::{languages, me, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Authenticated;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::i18n::{self, Lang};
use crate::users;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![settings_page, settings_submit, language_submit]
}

/// What a refused settings form showed: its errors and the choices made.
struct Refused {
    errors: FormErrors,
    locale: String,
    time_zone: String,
}

async fn render_settings(
    app: &App,
    who: &Authenticated,
    refused: Option<Refused>,
) -> AppResult<RawHtml<String>> {
    let u = who.user();
    let ui = who.ui();
    let (errors, locale, time_zone) = match refused {
        Some(r) => (Some(r.errors), Some(r.locale), Some(r.time_zone)),
        None => (None, u.locale.clone(), u.time_zone.clone()),
    };
    let totp = crate::auth::second_factor::status(&app.db, u.id).await?;
    app.templates.render(
        "settings.html",
        context! {
            totp => totp,
            me => me(who), csrf => who.csrf_token(), languages => languages(),
            locale => locale, time_zone => time_zone,
            zones => i18n::COMMON_TIME_ZONES, vault_zone => app.config.default_tz().name(),
            now => i18n::format_time(ui, chrono::Utc::now()),
            errors => errors,
        },
    )
}

#[get("/account")]
async fn settings_page(app: &State<App>, who: Authenticated) -> AppResult<RawHtml<String>> {
    render_settings(app, &who, None).await
}

#[derive(FromForm)]
pub struct SettingsForm {
    locale: String,
    time_zone: String,
    csrf: String,
}

csrf_field!(SettingsForm);

#[post("/account", data = "<form>")]
async fn settings_submit(
    app: &State<App>,
    who: Authenticated,
    cookies: &CookieJar<'_>,
    form: CsrfForm<SettingsForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    let result = async {
        let locale = match f.locale.trim() {
            "" => None,
            l => Some(
                Lang::parse(l).ok_or_else(|| AppError::invalid("locale", "must be zh-CN or en"))?,
            ),
        };
        users::set_own_preferences(app, &who, locale, Some(&f.time_zone)).await
    }
    .await;
    match result {
        Ok(()) => {
            i18n::flash::set(cookies, "flash-settings-saved", &[]);
            Ok(Page::Redirect(Box::new(Redirect::to("/account"))))
        }
        Err(e @ AppError::Invalid { .. }) => {
            let refused = Refused {
                errors: FormErrors::from_error(who.ui().lang, &e, |f| f.to_string()),
                locale: f.locale.trim().to_string(),
                time_zone: f.time_zone.trim().to_string(),
            };
            let html = render_settings(app, &who, Some(refused)).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[derive(FromForm)]
pub struct LanguageForm {
    lang: String,
    next: Option<String>,
    csrf: String,
}

csrf_field!(LanguageForm);

/// Only a path of this site (`/…`, not `//…`) that is a valid URI path is followed after the
/// switch; anything else goes home (a redirect that cannot be built would fail the switch).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && p.len() <= 2000
                && !p.chars().any(|c| c.is_control())
                && rocket::http::uri::Origin::parse(p).is_ok() =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[post("/account/language", data = "<form>")]
async fn language_submit(
    app: &State<App>,
    who: Authenticated,
    form: CsrfForm<LanguageForm>,
) -> AppResult<Redirect> {
    let CsrfForm(f) = form;
    let lang =
        Lang::parse(&f.lang).ok_or_else(|| AppError::invalid("lang", "must be zh-CN or en"))?;
    let zone = who.user().time_zone.clone();
    users::set_own_preferences(app, &who, Some(lang), zone.as_deref()).await?;
    Ok(Redirect::to(local_path(f.next.as_deref())))
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/records/1?x=2")), "/records/1?x=2");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(None), "/");
        // Not a valid path: home, rather than a redirect that cannot be built.
        for bad in ["/a b", "/a\"b", "/<x>", "/\u{3000}/evil.example"] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(
            local_path(Some("/search?q=%E5%AE%8F")),
            "/search?q=%E5%AE%8F"
        );
    }
}
