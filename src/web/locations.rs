//! The location register in the browser (`/locations`): storerooms with their shelves and
//! boxes and the number of paper files in each; forms that add a storeroom, a shelf or a
//! box and rename any of them (the code stays: it is the key filing uses); a page per
//! place listing the files it holds. The services decide (`register.manage`) and audit.

use minijinja::context;
use rocket::form::FromForm;
use rocket::http::CookieJar;
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};
use serde::Serialize;
use uuid::Uuid;

use super::forms::FormErrors;
use super::{me, Page};
use crate::auth::csrf::CsrfForm;
use crate::auth::Principal;
use crate::csrf_field;
use crate::error::{AppError, AppResult};
use crate::http::id;
use crate::i18n::flash;
use crate::records::register::{self, Level, NewEntry, Rename};
use crate::App;

pub fn routes() -> Vec<Route> {
    routes![
        locations_page,
        storeroom_create,
        storeroom_page,
        shelf_page,
        box_page,
        shelf_create,
        box_create,
        storeroom_rename,
        shelf_rename,
        box_rename
    ]
}

fn path_of(level: Level, id: Uuid) -> String {
    let seg = match level {
        Level::Storeroom => "storerooms",
        Level::Shelf => "shelves",
        Level::Box => "boxes",
    };
    format!("/locations/{seg}/{id}")
}

fn see_other(to: String) -> Page {
    Page::Redirect(Box::new(Redirect::to(to)))
}

/// What was typed in the form that adds a place.
#[derive(Serialize, Default)]
struct Typed {
    code: String,
    name: String,
}

async fn render_list(
    app: &App,
    who: &Principal,
    typed: Typed,
    errors: Option<FormErrors>,
) -> AppResult<RawHtml<String>> {
    let tree = register::tree(app, who).await?;
    app.templates.render(
        "locations.html",
        context! {
            me => me(who), csrf => who.csrf_token(), storerooms => tree,
            form => typed, errors => errors,
        },
    )
}

#[get("/locations")]
async fn locations_page(app: &State<App>, who: Principal) -> AppResult<RawHtml<String>> {
    render_list(app, &who, Typed::default(), None).await
}

#[derive(FromForm)]
pub struct EntryForm {
    code: String,
    name: String,
    csrf: String,
}

csrf_field!(EntryForm);

#[derive(FromForm)]
pub struct NameForm {
    name: String,
    csrf: String,
}

csrf_field!(NameForm);

fn is_shown(e: &AppError) -> bool {
    matches!(e, AppError::Invalid { .. } | AppError::Conflict(_))
}

#[post("/locations", data = "<form>")]
async fn storeroom_create(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    form: CsrfForm<EntryForm>,
) -> AppResult<Page> {
    let CsrfForm(f) = form;
    let new = NewEntry {
        code: f.code.clone(),
        name: Some(f.name.clone()),
    };
    match register::create_storeroom(app, &who, new).await {
        Ok(p) => {
            flash::set(cookies, "flash-loc-created", &[("code", &p.code)]);
            Ok(see_other(path_of(Level::Storeroom, p.id)))
        }
        Err(e) if is_shown(&e) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let typed = Typed {
                code: f.code,
                name: f.name,
            };
            let html = render_list(app, &who, typed, Some(errors)).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

/// The place page; after a refused form, with what was typed and what was wrong (the
/// rename form's fields are `name`, the add form's `code` and `child_name`).
#[derive(Default)]
struct Shown {
    rename: Option<(String, FormErrors)>,
    add: Option<(Typed, FormErrors)>,
}

async fn render_place(
    app: &App,
    who: &Principal,
    level: Level,
    pid: Uuid,
    page: Option<i64>,
    shown: Shown,
) -> AppResult<RawHtml<String>> {
    let c = register::contents(app, who, level, pid, page).await?;
    let (rename_value, rename_errors) = match shown.rename {
        Some((v, e)) => (v, Some(e)),
        None => (c.place.name.clone(), None),
    };
    let (add_form, add_errors) = match shown.add {
        Some((t, e)) => (t, Some(e)),
        None => (Typed::default(), None),
    };
    let here = path_of(level, pid);
    let prev_url = (c.page > 1).then(|| format!("{here}?page={}", c.page - 1));
    let next_url = c.has_more.then(|| format!("{here}?page={}", c.page + 1));
    app.templates.render(
        "location.html",
        context! {
            me => me(who), csrf => who.csrf_token(), c => c, here => here,
            rename_value => rename_value, rename_errors => rename_errors,
            add => add_form, add_errors => add_errors,
            prev_url => prev_url, next_url => next_url,
        },
    )
}

#[get("/locations/storerooms/<pid>?<page>")]
async fn storeroom_page(
    app: &State<App>,
    who: Principal,
    pid: &str,
    page: Option<i64>,
) -> AppResult<RawHtml<String>> {
    render_place(
        app,
        &who,
        Level::Storeroom,
        id(pid)?,
        page,
        Shown::default(),
    )
    .await
}

#[get("/locations/shelves/<pid>?<page>")]
async fn shelf_page(
    app: &State<App>,
    who: Principal,
    pid: &str,
    page: Option<i64>,
) -> AppResult<RawHtml<String>> {
    render_place(app, &who, Level::Shelf, id(pid)?, page, Shown::default()).await
}

#[get("/locations/boxes/<pid>?<page>")]
async fn box_page(
    app: &State<App>,
    who: Principal,
    pid: &str,
    page: Option<i64>,
) -> AppResult<RawHtml<String>> {
    render_place(app, &who, Level::Box, id(pid)?, page, Shown::default()).await
}

#[derive(FromForm)]
pub struct ChildForm {
    code: String,
    child_name: String,
    csrf: String,
}

csrf_field!(ChildForm);

async fn add_child(
    app: &App,
    who: &Principal,
    cookies: &CookieJar<'_>,
    parent: Level,
    pid: Uuid,
    f: ChildForm,
) -> AppResult<Page> {
    let new = NewEntry {
        code: f.code.clone(),
        name: Some(f.child_name.clone()),
    };
    let result = match parent {
        Level::Storeroom => register::create_shelf(app, who, pid, new).await,
        _ => register::create_box(app, who, pid, new).await,
    };
    match result {
        Ok(p) => {
            let key = match p.level {
                Level::Shelf => "flash-loc-shelf-created",
                _ => "flash-loc-box-created",
            };
            flash::set(cookies, key, &[("code", &p.code)]);
            Ok(see_other(path_of(parent, pid)))
        }
        Err(e) if is_shown(&e) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| match f {
                "name" => "child_name".to_string(),
                f => f.to_string(),
            });
            let typed = Typed {
                code: f.code,
                name: f.child_name,
            };
            let shown = Shown {
                add: Some((typed, errors)),
                ..Shown::default()
            };
            let html = render_place(app, who, parent, pid, None, shown).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[post("/locations/storerooms/<pid>/shelves", data = "<form>")]
async fn shelf_create(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    form: CsrfForm<ChildForm>,
) -> AppResult<Page> {
    add_child(app, &who, cookies, Level::Storeroom, id(pid)?, form.0).await
}

#[post("/locations/shelves/<pid>/boxes", data = "<form>")]
async fn box_create(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    form: CsrfForm<ChildForm>,
) -> AppResult<Page> {
    add_child(app, &who, cookies, Level::Shelf, id(pid)?, form.0).await
}

async fn rename(
    app: &App,
    who: &Principal,
    cookies: &CookieJar<'_>,
    level: Level,
    pid: Uuid,
    f: NameForm,
) -> AppResult<Page> {
    let r = Rename {
        name: f.name.clone(),
    };
    match register::rename(app, who, level, pid, r).await {
        Ok(p) => {
            flash::set(
                cookies,
                "flash-loc-renamed",
                &[("code", &p.code), ("name", &p.name)],
            );
            Ok(see_other(path_of(level, pid)))
        }
        Err(e) if is_shown(&e) => {
            let errors = FormErrors::from_error(who.ui().lang, &e, |f| f.to_string());
            let shown = Shown {
                rename: Some((f.name, errors)),
                ..Shown::default()
            };
            let html = render_place(app, who, level, pid, None, shown).await?;
            Ok(Page::Status((e.status(), html)))
        }
        Err(e) => Err(e),
    }
}

#[post("/locations/storerooms/<pid>/name", data = "<form>")]
async fn storeroom_rename(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    form: CsrfForm<NameForm>,
) -> AppResult<Page> {
    rename(app, &who, cookies, Level::Storeroom, id(pid)?, form.0).await
}

#[post("/locations/shelves/<pid>/name", data = "<form>")]
async fn shelf_rename(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    form: CsrfForm<NameForm>,
) -> AppResult<Page> {
    rename(app, &who, cookies, Level::Shelf, id(pid)?, form.0).await
}

#[post("/locations/boxes/<pid>/name", data = "<form>")]
async fn box_rename(
    app: &State<App>,
    who: Principal,
    cookies: &CookieJar<'_>,
    pid: &str,
    form: CsrfForm<NameForm>,
) -> AppResult<Page> {
    rename(app, &who, cookies, Level::Box, id(pid)?, form.0).await
}
