//! Pages of retention, legal hold and destruction: a record's life-cycle page (request a
//! destruction, carry it out with a witness, place or release a legal hold), the
//! destruction register with its CSV and .xlsx, the PDF certificates, and the retention
//! list.

use minijinja::context;
use rocket::form::FromForm;
use rocket::http::{CookieJar, Header};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Responder, Route, State};
use serde::Serialize;

use super::forms::FormErrors;
use super::{me, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::http::{id, SheetDownload};
use crate::i18n::flash;
use crate::lifecycle::destruction::{self, Destroy, Filter};
use crate::lifecycle::{self, certificate, holds, retention};
use crate::records::model::{CategoryId, RecordId};
use crate::requests::{self, Kind, NewRequest};
use crate::users::Role;
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        life_page,
        ask_destroy,
        carry_out,
        place_hold,
        release_hold,
        place_category_hold,
        release_category_hold,
        register_page,
        register_csv,
        register_xlsx,
        certificate_pdf,
        retention_page,
    ]
}

/// What was typed into the destroy-request form.
#[derive(Default, FromForm, Serialize)]
pub struct AskForm {
    reason_type: String,
    purpose: String,
    #[serde(skip)]
    csrf: String,
}
csrf_field!(AskForm);

/// What was typed into the carry-out form.
#[derive(Default, FromForm, Serialize)]
pub struct CarryOutForm {
    request_id: String,
    witness: String,
    method: String,
    #[serde(skip)]
    csrf: String,
}
csrf_field!(CarryOutForm);

/// What was typed into the hold form.
#[derive(Default, FromForm, Serialize)]
pub struct HoldForm {
    reason: String,
    #[serde(skip)]
    csrf: String,
}
csrf_field!(HoldForm);

/// The forms of the page a refused post shows again.
#[derive(Default)]
struct Shown<'a> {
    ask: Option<&'a AskForm>,
    ask_errors: FormErrors,
    carry: Option<&'a CarryOutForm>,
    carry_errors: FormErrors,
    hold: Option<&'a HoldForm>,
    hold_errors: FormErrors,
}

fn refused(e: &AppError) -> bool {
    matches!(e, AppError::Invalid { .. } | AppError::Conflict(_))
}

/// Back to the record's lifecycle page, with `flash` shown there.
fn done(cookies: &CookieJar<'_>, rid: RecordId, flash: &str, args: &[(&str, &str)]) -> Page {
    flash::set(cookies, flash, args);
    Page::Redirect(Box::new(Redirect::to(format!("/records/{rid}/lifecycle"))))
}

/// The lifecycle page again, with the form as typed and why it was refused.
async fn again(
    app: &App,
    who: &Principal,
    rid: RecordId,
    e: &AppError,
    shown: Shown<'_>,
) -> AppResult<Page> {
    let html = render_life(app, who, rid, shown).await?;
    Ok(Page::Status((e.status(), html)))
}

async fn render_life(
    app: &App,
    who: &Principal,
    id: RecordId,
    shown: Shown<'_>,
) -> AppResult<RawHtml<String>> {
    let record = crate::records::get(app, who, id).await?;
    let life = lifecycle::of_record(app, who, id).await?;
    let empty_ask = AskForm {
        reason_type: "retention".into(),
        ..<AskForm as Default>::default()
    };
    let empty_carry = <CarryOutForm as Default>::default();
    let empty_hold = <HoldForm as Default>::default();
    app.templates.render(
        "lifecycle.html",
        context! {
            me => me(who), csrf => who.csrf_token(), record => record, life => life,
            is_archivist => who.has_role(Role::Archivist),
            is_supervisor => who.has_role(Role::Supervisor),
            ask => shown.ask.unwrap_or(&empty_ask), ask_errors => shown.ask_errors,
            carry => shown.carry.unwrap_or(&empty_carry), carry_errors => shown.carry_errors,
            hold => shown.hold.unwrap_or(&empty_hold), hold_errors => shown.hold_errors,
            min_purpose => requests::purpose::MIN_WEIGHT,
            min_purpose_cjk => requests::purpose::MIN_CJK,
            max_purpose => requests::purpose::MAX_CHARS,
        },
    )
}

/// A record's retention, holds and destruction, with the forms for them.
#[get("/records/<rid>/lifecycle")]
async fn life_page(app: &State<App>, who: Principal, rid: RecordId) -> AppResult<RawHtml<String>> {
    render_life(app, &who, rid, Shown::default()).await
}

#[post("/records/<rid>/destroy-request", data = "<form>")]
async fn ask_destroy(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
    cookies: &CookieJar<'_>,
    form: CsrfForm<AskForm>,
) -> AppResult<Page> {
    let f = form.0;
    let result = requests::create(
        app,
        &who,
        NewRequest {
            record_id: rid,
            kind: Kind::Destroy,
            purpose: f.purpose.clone(),
            duration_hours: 0,
            reason_type: Some(f.reason_type.clone()),
        },
    )
    .await;
    match result {
        Ok(r) => {
            let args = [("reference", r.reference.as_str())];
            Ok(done(cookies, rid, "flash-destr-requested", &args))
        }
        Err(e) if refused(&e) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| match f {
                "reason_type" => "ask-reason-type".into(),
                _ => "ask-purpose".into(),
            });
            again(
                app,
                &who,
                rid,
                &e,
                Shown {
                    ask: Some(&f),
                    ask_errors: errors,
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => Err(e),
    }
}

#[post("/records/<rid>/destroy", data = "<form>")]
async fn carry_out(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
    cookies: &CookieJar<'_>,
    form: CsrfForm<CarryOutForm>,
) -> AppResult<Page> {
    let f = form.0;
    let result = async {
        let request_id = uuid::Uuid::parse_str(f.request_id.trim()).map_err(|_| {
            AppError::invalid("request_id", "is not a destroy request for this record")
        })?;
        destruction::destroy(
            app,
            &who,
            rid,
            Destroy {
                request_id,
                witness: f.witness.clone(),
                method: f.method.clone(),
            },
        )
        .await
    }
    .await;
    match result {
        Ok(c) => {
            let args = [("reference", c.reference.as_str())];
            Ok(done(cookies, rid, "flash-destr-done", &args))
        }
        Err(e) if refused(&e) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| match f {
                "witness" => "carry-witness".into(),
                "method" => "carry-method".into(),
                _ => "carry-request".into(),
            });
            again(
                app,
                &who,
                rid,
                &e,
                Shown {
                    carry: Some(&f),
                    carry_errors: errors,
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => Err(e),
    }
}

#[post("/records/<rid>/hold", data = "<form>")]
async fn place_hold(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
    cookies: &CookieJar<'_>,
    form: CsrfForm<HoldForm>,
) -> AppResult<Page> {
    let f = form.0;
    match holds::hold_record(app, &who, rid, &f.reason).await {
        Ok(_) => Ok(done(cookies, rid, "flash-hold-placed", &[])),
        Err(e) if refused(&e) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |_| "hold-reason".into());
            again(
                app,
                &who,
                rid,
                &e,
                Shown {
                    hold: Some(&f),
                    hold_errors: errors,
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => Err(e),
    }
}

/// The release form carries only the CSRF token.
#[derive(Default, FromForm)]
pub struct ReleaseForm {
    csrf: String,
}
csrf_field!(ReleaseForm);

#[post("/records/<rid>/hold/release", data = "<_form>")]
async fn release_hold(
    app: &State<App>,
    who: Principal,
    rid: RecordId,
    cookies: &CookieJar<'_>,
    _form: CsrfForm<ReleaseForm>,
) -> AppResult<Page> {
    match holds::release_record(app, &who, rid).await {
        Ok(_) => Ok(done(cookies, rid, "flash-hold-released", &[])),
        Err(e) if refused(&e) => {
            let mut errors = FormErrors::default();
            errors.add_general(who.ui().lang, &e.public_message());
            again(
                app,
                &who,
                rid,
                &e,
                Shown {
                    hold_errors: errors,
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => Err(e),
    }
}

/// The destruction register.
#[get("/destructions?<filter..>")]
async fn register_page(app: &State<App>, who: Principal, filter: Filter) -> AppResult<Page> {
    match destruction::register(app, &who, &filter, "page").await {
        Ok(list) => Ok(Page::Html(app.templates.render(
            "destructions.html",
            context! { me => me(&who), csrf => who.csrf_token(), list => list, filter => filter, errors => FormErrors::default() },
        )?)),
        Err(e) if matches!(e, AppError::Invalid { .. }) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| format!("reg-{f}"));
            let html = app.templates.render(
                "destructions.html",
                context! { me => me(&who), csrf => who.csrf_token(), list => Vec::<()>::new(), filter => filter, errors => errors },
            )?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[get("/destructions/register.csv?<filter..>")]
async fn register_csv(
    app: &State<App>,
    who: Principal,
    filter: Filter,
) -> AppResult<SheetDownload> {
    let list = destruction::register(app, &who, &filter, "csv").await?;
    Ok(SheetDownload::csv(
        &destruction::register_sheet(&list, Some(who.ui())),
        "destruction-register",
    ))
}

#[get("/destructions/register.xlsx?<filter..>")]
async fn register_xlsx(
    app: &State<App>,
    who: Principal,
    filter: Filter,
) -> AppResult<SheetDownload> {
    let list = destruction::register(app, &who, &filter, "xlsx").await?;
    SheetDownload::xlsx(
        &destruction::register_sheet(&list, Some(who.ui())),
        "destruction-register",
    )
}

/// A PDF certificate, as an attachment, never cached.
#[derive(Responder)]
#[response(content_type = "application/pdf")]
struct PdfDownload {
    body: Vec<u8>,
    disposition: Header<'static>,
    cache: Header<'static>,
}

#[get("/destructions/<did>/certificate.pdf")]
async fn certificate_pdf(app: &State<App>, who: Principal, did: &str) -> AppResult<PdfDownload> {
    let c = destruction::certificate(app, &who, id(did)?, "pdf").await?;
    Ok(PdfDownload {
        body: certificate::pdf(&c, who.ui()),
        disposition: Header::new(
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", certificate::file_name(&c)),
        ),
        cache: Header::new("Cache-Control", "no-store"),
    })
}

/// The records whose retention has ended (or ends within the days asked for).
#[get("/retention?<within_days>")]
async fn retention_page(
    app: &State<App>,
    who: Principal,
    within_days: Option<&str>,
) -> AppResult<RawHtml<String>> {
    let before = lifecycle::due_limit(None, within_days)?;
    let list = retention::due(app, &who, before).await?;
    let within_days: u32 = within_days.and_then(|d| d.trim().parse().ok()).unwrap_or(0);
    let category_holds = holds::on_categories(app, &who).await?;
    // A supervisor holds the categories of their own department.
    let holdable: Vec<_> = if who.has_role(Role::Supervisor) {
        crate::records::categories::list(app, &who)
            .await?
            .into_iter()
            .filter(|c| c.department == who.user().department)
            .map(|c| context! { id => c.id, code => c.code, path => c.path })
            .collect()
    } else {
        Vec::new()
    };
    app.templates.render(
        "retention.html",
        context! {
            me => me(&who), csrf => who.csrf_token(), list => list, within_days => within_days,
            category_holds => category_holds, holdable => holdable,
            my_department => who.user().department.clone(),
        },
    )
}

/// A hold on a whole category, placed from the retention page.
#[derive(Default, FromForm)]
pub struct CategoryHoldForm {
    category: String,
    reason: String,
    csrf: String,
}
csrf_field!(CategoryHoldForm);

/// Back to the retention page with `flash`, or with why the hold was refused.
fn after_hold<T>(
    who: &Principal,
    cookies: &CookieJar<'_>,
    r: AppResult<T>,
    flash: &str,
) -> AppResult<Page> {
    match r {
        Ok(_) => flash::set(cookies, flash, &[]),
        Err(e) if refused(&e) || matches!(e, AppError::Forbidden | AppError::NotFound) => {
            let reason = crate::i18n::message(who.ui().lang, &e.public_message());
            flash::set(cookies, "flash-cat-hold-refused", &[("reason", &reason)]);
        }
        Err(e) => return Err(e),
    }
    Ok(Page::Redirect(Box::new(Redirect::to("/retention"))))
}

#[post("/retention/holds", data = "<form>")]
async fn place_category_hold(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    form: CsrfForm<CategoryHoldForm>,
) -> AppResult<Page> {
    let f = form.0;
    let r = match uuid::Uuid::parse_str(f.category.trim()) {
        Ok(c) => {
            let category = CategoryId(c);
            holds::hold_category(app, &who, category, &f.reason).await
        }
        Err(_) => Err(AppError::invalid("category", "choose a category")),
    };
    after_hold(&who, cookies, r, "flash-cat-hold-placed")
}

#[post("/retention/holds/<cid>/release", data = "<_form>")]
async fn release_category_hold(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    cid: CategoryId,
    _form: CsrfForm<ReleaseForm>,
) -> AppResult<Page> {
    let r = holds::release_category(app, &who, cid).await;
    after_hold(&who, cookies, r, "flash-cat-hold-released")
}
