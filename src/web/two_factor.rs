//! The enrolment page of two-factor sign-in (`/account/totp`): whether it is on, the
//! QR code (inline SVG) and key of a new enrolment with the field that confirms it, and
//! the recovery codes, shown once. Open to a signed-in person whose role still has to
//! enrol (it takes `Authenticated`); the request guard sends every other page of such a
//! person here.

use minijinja::context;
use rocket::form::FromForm;
use rocket::http::Status;
use rocket::response::content::RawHtml;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;

use super::forms::FormErrors;
use super::{me, CsrfOnly, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::second_factor::{self, Enrolment};
use crate::auth::Authenticated;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::i18n;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![totp_page, totp_start, totp_confirm]
}

/// What the page shows of a new enrolment.
#[derive(Serialize)]
struct Shown {
    qr_svg: String,
    secret: String,
    /// The key in groups of four, easier to type.
    secret_grouped: String,
}

/// The QR code of the `otpauth://` URI as an inline SVG element (no XML declaration),
/// labelled for screen readers.
fn qr_svg(uri: &str, label: &str) -> AppResult<String> {
    let code = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| AppError::internal(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let label: String = label
        .chars()
        .map(|c| match c {
            '"' => "&quot;".to_string(),
            '<' => "&lt;".to_string(),
            '&' => "&amp;".to_string(),
            c => c.to_string(),
        })
        .collect();
    let start = svg.find("<svg").unwrap_or(0);
    Ok(svg[start..].replacen(
        "<svg ",
        &format!(r#"<svg role="img" aria-label="{label}" class="qr" "#),
        1,
    ))
}

fn shown(who: &Authenticated, e: &Enrolment) -> AppResult<Shown> {
    let label = i18n::tr(who.ui().lang, "totp-qr-label", &[]);
    let secret = e.secret.to_string();
    let secret_grouped = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Shown {
        qr_svg: qr_svg(&e.otpauth_uri, &label)?,
        secret,
        secret_grouped,
    })
}

async fn render(
    app: &App,
    who: &Authenticated,
    enrolment: Option<Shown>,
    recovery_codes: Option<Vec<String>>,
    errors: Option<FormErrors>,
) -> AppResult<RawHtml<String>> {
    let status = second_factor::status(&app.db, who.user().id).await?;
    app.templates.render(
        "totp.html",
        context! {
            me => me(who), csrf => who.csrf_token(), status => status,
            required => who.second_factor_missing(),
            enrolment => enrolment, recovery_codes => recovery_codes, errors => errors,
        },
    )
}

#[get("/account/totp")]
async fn totp_page(app: &State<App>, who: Authenticated) -> AppResult<RawHtml<String>> {
    render(app, &who, None, None, None).await
}

/// Starts (or restarts) enrolment and shows the new key.
#[post("/account/totp", data = "<_form>")]
async fn totp_start(
    app: &State<App>,
    who: Authenticated,
    _form: CsrfForm<CsrfOnly>,
) -> AppResult<Page> {
    match second_factor::begin(app, &who).await {
        Ok(e) => {
            let s = shown(&who, &e)?;
            Ok(Page::Html(render(app, &who, Some(s), None, None).await?))
        }
        Err(e @ AppError::Conflict(_)) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let html = render(app, &who, None, None, Some(errors)).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[derive(FromForm)]
pub struct ConfirmForm {
    code: String,
    csrf: String,
}

csrf_field!(ConfirmForm);

/// Confirms with a code; shows the recovery codes once.
#[post("/account/totp/confirm", data = "<form>")]
async fn totp_confirm(
    app: &State<App>,
    who: Authenticated,
    form: CsrfForm<ConfirmForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    match second_factor::confirm(app, &who, &f.code).await {
        Ok(codes) => {
            let codes: Vec<String> = codes.iter().map(|c| c.to_string()).collect();
            let html = render(app, &who, None, Some(codes), None).await?;
            Ok(Page::Status((Status::Ok, html)))
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Conflict(_))) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            // A mistyped code: the same key again, to try the next code.
            let again = match second_factor::pending(app, &who).await? {
                Some(p) => Some(shown(&who, &p)?),
                None => None,
            };
            let html = render(app, &who, again, None, Some(errors)).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}
